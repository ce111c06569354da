//! MULTI / EXEC / DISCARD / WATCH / UNWATCH.
//!
//! EXEC locks every slot its queued commands and watched keys touch, in
//! ascending order, before checking the watches and running the queue, so
//! no other client can interleave.

use super::table::{self, flags};
use super::{dispatch, Args, Ctx};
use crate::keyspace::key_slot;
use crate::server::client::{Multi, Watched};

pub fn multi(ctx: &mut Ctx, _a: &Args) {
    if ctx.client.multi.is_some() {
        return ctx.r.error("ERR MULTI calls can not be nested");
    }
    ctx.client.multi = Some(Multi::default());
    ctx.r.ok();
}

pub fn discard(ctx: &mut Ctx, _a: &Args) {
    if ctx.client.multi.take().is_none() {
        return ctx.r.error("ERR DISCARD without MULTI");
    }
    unwatch_all(ctx);
    ctx.r.ok();
}

pub fn watch(ctx: &mut Ctx, a: &Args) {
    if ctx.client.multi.is_some() {
        return ctx.r.error("ERR WATCH inside MULTI is not allowed");
    }
    let dbi = ctx.locks.db.index;
    for key in a.iter().skip(1) {
        if ctx
            .client
            .watched
            .iter()
            .any(|w| w.db == dbi && w.key.as_slice() == key)
        {
            continue;
        }
        let mut s = ctx.locks.key(key);
        let version = s.watch(key);
        let expired_at_watch = s.is_logically_expired(key);
        drop(s);
        ctx.client.watched.push(Watched {
            db: dbi,
            key: crate::keyspace::SBytes::new(key),
            version,
            expired_at_watch,
        });
    }
    ctx.r.ok();
}

pub fn unwatch(ctx: &mut Ctx, _a: &Args) {
    unwatch_all(ctx);
    ctx.r.ok();
}

/// Drops every WATCH of this client.
pub fn unwatch_all(ctx: &mut Ctx) {
    let watched = std::mem::take(&mut ctx.client.watched);
    let now = ctx.locks.now;
    for w in watched {
        let db = ctx.srv.ks.db(w.db);
        if ctx.locks.holding() {
            // Inside EXEC the slot is already locked by us.
            let saved = ctx.locks.db;
            ctx.locks.db = db;
            ctx.locks.slot(key_slot(&w.key)).unwatch(&w.key);
            ctx.locks.db = saved;
        } else {
            db.lock_key(&w.key, now).unwatch(&w.key);
        }
    }
}

/// A database index argument, when it is one of ours.
fn db_arg_in(count: usize, a: &[u8]) -> Option<usize> {
    crate::resp::parse_i64(a)
        .filter(|&n| n >= 0 && (n as usize) < count)
        .map(|n| n as usize)
}

pub fn exec(ctx: &mut Ctx, a: &Args) {
    let Some(mut m) = ctx.client.multi.take() else {
        return ctx.r.error("ERR EXEC without MULTI");
    };
    if m.dirty {
        unwatch_all(ctx);
        return ctx
            .r
            .error("EXECABORT Transaction discarded because of previous errors.");
    }
    // Work out every (db, slot) the transaction touches.
    let mut slots: Vec<(usize, u16)> = Vec::new();
    let mut all_dbs: Vec<usize> = Vec::new();
    let mut db = ctx.locks.db.index;
    for q in &m.queue {
        let args = q.args();
        let Some(cmd) = table::lookup(args.get(0)) else {
            continue;
        };
        let cmd = if !cmd.subs.is_empty() && args.len() >= 2 {
            table::lookup_sub(cmd, args.get(1)).unwrap_or(cmd)
        } else {
            cmd
        };
        slots_of(&ctx.srv.ks, cmd, &args, &mut db, &mut slots, &mut all_dbs);
    }
    for w in &ctx.client.watched {
        slots.push((w.db, key_slot(&w.key)));
    }
    all_dbs.sort_unstable();
    all_dbs.dedup();
    ctx.locks.hold(slots, &all_dbs);
    // Routed again under the locks: a MIGRATE may have moved a key since
    // the check before EXEC ran (see `dispatch`).
    let routing = ctx.srv.cluster.get().filter(|_| !ctx.client.is_master);
    if let (Some(cl), Some(exec_cmd)) = (routing, super::table::lookup_any(b"exec")) {
        ctx.client.multi = Some(m);
        let redirect = super::cluster_redirect(ctx, cl, exec_cmd, a);
        let Some(back) = ctx.client.multi.take() else {
            ctx.locks.release();
            return;
        };
        if let Some(r) = redirect {
            ctx.locks.release();
            unwatch_all(ctx);
            ctx.client.asking = false;
            return ctx.r.error(&r.message());
        }
        m = back;
    }

    // A watched key changed (or expired) since WATCH: abort.
    let mut aborted = false;
    let saved = ctx.locks.db;
    for w in &ctx.client.watched {
        ctx.locks.db = ctx.srv.ks.db(w.db);
        let g = ctx.locks.slot(key_slot(&w.key));
        let now = g.watch_version(&w.key);
        // A key that had already expired at WATCH may be removed without
        // aborting; any other change, or expiring since, aborts.
        if now.version != w.version.version
            || (!w.expired_at_watch
                && (now.gone != w.version.gone
                    || (g.is_logically_expired(&w.key) && !g.watch_stale_ok(&w.key))))
        {
            aborted = true;
            break;
        }
    }
    ctx.locks.db = saved;
    if aborted {
        unwatch_all(ctx);
        ctx.locks.release();
        return ctx.r.null_array();
    }
    unwatch_all(ctx);
    let logging = ctx.srv.log.is_active();
    if logging {
        crate::persistence::effects::begin_capture();
    }
    ctx.r.array(m.queue.len());
    ctx.client.in_exec = true;
    for q in &m.queue {
        let start = ctx.r.out.len();
        dispatch(ctx, &q.args());
        // An error inside the transaction's reply counts as an error reply
        // (errorstats, total_error_replies), as in Redis; EXEC's own
        // reply, an array, does not.
        if ctx.r.out.get(start) == Some(&b'-') && !std::mem::take(&mut ctx.client.error_counted) {
            crate::server::cmdstats::count_error_reply(ctx.srv, &ctx.r.out[start..]);
        }
    }
    ctx.client.in_exec = false;
    if logging {
        // Still under the transaction's locks, so per-key order holds.
        let gen = ctx.locks.held_gen();
        ctx.srv.log.end_capture(gen);
    }
    ctx.locks.release();
}

/// The (db, slot) pairs and whole databases `cmd` touches when run in
/// database `*db` (which SELECT changes for the commands after it).
pub fn slots_of(
    ks: &crate::keyspace::Keyspace,
    cmd: &table::Cmd,
    args: &super::Args,
    db: &mut usize,
    slots: &mut Vec<(usize, u16)>,
    all_dbs: &mut Vec<usize>,
) {
    let db_arg = |a: &[u8]| db_arg_in(ks.count(), a);
    if cmd.name == "select" {
        if let Some(n) = db_arg(args.get(1)) {
            *db = n;
        }
    }
    let db = *db;
    if cmd.flags & flags::ALL_DBS != 0 {
        all_dbs.extend(ks.existing().map(|d| d.index));
    } else if cmd.flags & flags::ALL_SLOTS != 0 {
        all_dbs.push(db);
    } else if cmd.name == "copy" {
        // COPY may name another database; lock that slot too.
        for i in cmd.key_indexes(args) {
            slots.push((db, key_slot(args.get(i))));
        }
        let mut i = 3;
        while i + 1 < args.len() {
            if args.get(i).eq_ignore_ascii_case(b"DB") {
                if let Some(n) = db_arg(args.get(i + 1)) {
                    slots.push((n, key_slot(args.get(2))));
                }
            }
            i += 1;
        }
    } else if cmd.name == "move" {
        // The key's slot in both databases.
        let k = key_slot(args.get(1));
        slots.push((db, k));
        if let Some(n) = db_arg(args.get(2)) {
            slots.push((n, k));
        }
    } else if cmd.name == "swapdb" {
        // Both databases whole.
        if let (Some(x), Some(y)) = (db_arg(args.get(1)), db_arg(args.get(2))) {
            if x != y {
                all_dbs.extend([x, y]);
            }
        }
    } else {
        if matches!(cmd.name, "sort" | "sort_ro") && super::sort::reaches_other_keys(args) {
            // BY/GET patterns may read any key of the database.
            all_dbs.push(db);
        }
        for i in cmd.key_indexes(args) {
            slots.push((db, key_slot(args.get(i))));
        }
    }
}
