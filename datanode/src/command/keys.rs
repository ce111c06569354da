//! Generic key commands: deletion, existence, expiry, renaming, iteration.

use rand::Rng;

use super::strings::clone_value;
use super::{eq_ic, ev, int_arg, Args, Ctx, NO_SUCH_KEY, SYNTAX};
use crate::glob::glob_match;
use crate::keyspace::{Value, SLOTS};

/// DEL and UNLINK: the same, but UNLINK (and DEL with
/// `lazyfree-lazy-user-del`) frees large values in the background.
pub fn del(ctx: &mut Ctx, a: &Args) {
    let lazy = eq_ic(a.get(0), "UNLINK")
        || crate::keyspace::lazyfree::USER_DEL.load(std::sync::atomic::Ordering::Relaxed);
    let events = ctx.events();
    let mut m = ctx.locks.keys(a.iter().skip(1));
    let mut n = 0;
    for key in a.iter().skip(1) {
        let s = m.key(key);
        if let Some(v) = s.remove(key) {
            if lazy {
                crate::keyspace::lazyfree::free(v);
            }
            s.log(&[b"DEL".as_slice(), key]);
            events.emit(ev::GENERIC, "del", key);
            n += 1;
        }
    }
    drop(m);
    ctx.dirty(n as u64);
    ctx.r.int(n);
}

pub fn exists(ctx: &mut Ctx, a: &Args) {
    let mut m = ctx.locks.keys(a.iter().skip(1));
    // As Redis: EXISTS and TTL do not count as an access (LRU/LFU).
    let n = a
        .iter()
        .skip(1)
        .filter(|k| m.key(k).peek(k).is_some())
        .count();
    ctx.r.int(n as i64);
}

/// Like EXISTS, but records an access.
pub fn touch(ctx: &mut Ctx, a: &Args) {
    let mut m = ctx.locks.keys(a.iter().skip(1));
    let n = a.iter().skip(1).filter(|k| m.key(k).access(k)).count();
    ctx.r.int(n as i64);
}

pub fn type_(ctx: &mut Ctx, a: &Args) {
    let key = a.get(1);
    let mut s = ctx.locks.key(key);
    let t = s.peek(key).map(|(v, _)| v.kind().name()).unwrap_or("none");
    ctx.r.simple(t);
}

/// EXPIRE/PEXPIRE/EXPIREAT/PEXPIREAT. `seconds`: the unit; `relative`:
/// whether the time is added to now.
fn expire_generic(ctx: &mut Ctx, a: &Args, seconds: bool, relative: bool, name: &str) {
    let (mut nx, mut xx, mut gt, mut lt) = (false, false, false, false);
    for opt in a.iter().skip(3) {
        if eq_ic(opt, "NX") {
            nx = true;
        } else if eq_ic(opt, "XX") {
            xx = true;
        } else if eq_ic(opt, "GT") {
            gt = true;
        } else if eq_ic(opt, "LT") {
            lt = true;
        } else {
            ctx.r.error(&format!(
                "ERR Unsupported option {}",
                String::from_utf8_lossy(opt)
            ));
            return;
        }
    }
    if nx && (xx || gt || lt) {
        ctx.r
            .error("ERR NX and XX, GT or LT options at the same time are not compatible");
        return;
    }
    if gt && lt {
        ctx.r
            .error("ERR GT and LT options at the same time are not compatible");
        return;
    }
    let Some(mut when) = int_arg(ctx, a.get(2)) else {
        return;
    };
    let invalid = format!("ERR invalid expire time in '{name}' command");
    if seconds {
        if !(i64::MIN / 1000..=i64::MAX / 1000).contains(&when) {
            ctx.r.error(&invalid);
            return;
        }
        when *= 1000;
    }
    let base = if relative { ctx.locks.now } else { 0 };
    if when > i64::MAX - base {
        ctx.r.error(&invalid);
        return;
    }
    when += base;
    let key = a.get(1);
    let events = ctx.events();
    let mut s = ctx.locks.key(key);
    if !s.exists(key) {
        ctx.r.int(0);
        return;
    }
    let cur = s.expire_of(key);
    if (nx && cur.is_some())
        || (xx && cur.is_none())
        || (gt && cur.is_none_or(|c| when <= c))
        || (lt && cur.is_some_and(|c| when >= c))
    {
        ctx.r.int(0);
        return;
    }
    if when <= s.now && !crate::keyspace::loading() {
        s.delete_freeing(key, &crate::keyspace::lazyfree::EXPIRE);
        s.log(&[b"DEL".as_slice(), key]);
        events.emit(ev::GENERIC, "del", key);
    } else {
        s.set_expire(key, when);
        let mut b = itoa::Buffer::new();
        s.log(&[b"PEXPIREAT".as_slice(), key, b.format(when).as_bytes()]);
        events.emit(ev::GENERIC, "expire", key);
    }
    drop(s);
    ctx.dirty(1);
    ctx.r.int(1);
}

pub fn expire(ctx: &mut Ctx, a: &Args) {
    expire_generic(ctx, a, true, true, "expire")
}
pub fn pexpire(ctx: &mut Ctx, a: &Args) {
    expire_generic(ctx, a, false, true, "pexpire")
}
pub fn expireat(ctx: &mut Ctx, a: &Args) {
    expire_generic(ctx, a, true, false, "expireat")
}
pub fn pexpireat(ctx: &mut Ctx, a: &Args) {
    expire_generic(ctx, a, false, false, "pexpireat")
}

fn ttl_generic(ctx: &mut Ctx, a: &Args, ms: bool, absolute: bool) {
    let key = a.get(1);
    let mut s = ctx.locks.key(key);
    if s.peek(key).is_none() {
        ctx.r.int(-2);
        return;
    }
    let Some(at) = s.expire_of(key) else {
        ctx.r.int(-1);
        return;
    };
    let t = if absolute { at } else { (at - s.now).max(0) };
    ctx.r.int(if ms { t } else { (t + 500) / 1000 });
}

pub fn ttl(ctx: &mut Ctx, a: &Args) {
    ttl_generic(ctx, a, false, false)
}
pub fn pttl(ctx: &mut Ctx, a: &Args) {
    ttl_generic(ctx, a, true, false)
}
pub fn expiretime(ctx: &mut Ctx, a: &Args) {
    ttl_generic(ctx, a, false, true)
}
pub fn pexpiretime(ctx: &mut Ctx, a: &Args) {
    ttl_generic(ctx, a, true, true)
}

pub fn persist(ctx: &mut Ctx, a: &Args) {
    let key = a.get(1);
    let events = ctx.events();
    let mut s = ctx.locks.key(key);
    if s.exists(key) && s.persist(key) {
        s.log(&[b"PERSIST".as_slice(), key]);
        events.emit(ev::GENERIC, "persist", key);
        drop(s);
        ctx.dirty(1);
        ctx.r.int(1);
    } else {
        ctx.r.int(0);
    }
}

fn rename_generic(ctx: &mut Ctx, a: &Args, nx: bool) {
    let (src, dst) = (a.get(1), a.get(2));
    let events = ctx.events();
    let mut m = ctx.locks.keys([src, dst].into_iter());
    if !m.key(src).exists(src) {
        ctx.r.error(NO_SUCH_KEY);
        return;
    }
    if src == dst {
        if nx {
            ctx.r.int(0);
        } else {
            ctx.r.ok();
        }
        return;
    }
    if nx && m.key(dst).exists(dst) {
        ctx.r.int(0);
        return;
    }
    let s = m.key(src);
    let ttl = s.expire_of(src);
    let Some(v) = s.remove(src) else {
        return;
    };
    let d = m.key(dst);
    d.delete_freeing(dst, &crate::keyspace::lazyfree::SERVER_DEL);
    d.set(dst, v, false);
    if let Some(at) = ttl {
        d.set_expire(dst, at);
    }
    d.log(&[
        if nx {
            b"RENAMENX".as_slice()
        } else {
            b"RENAME"
        },
        src,
        dst,
    ]);
    events.emit(ev::GENERIC, "rename_from", src);
    events.emit(ev::GENERIC, "rename_to", dst);
    drop(m);
    ctx.dirty(1);
    if nx {
        ctx.r.int(1);
    } else {
        ctx.r.ok();
    }
}

pub fn rename(ctx: &mut Ctx, a: &Args) {
    rename_generic(ctx, a, false)
}
pub fn renamenx(ctx: &mut Ctx, a: &Args) {
    rename_generic(ctx, a, true)
}

pub fn copy(ctx: &mut Ctx, a: &Args) {
    let (src, dst) = (a.get(1), a.get(2));
    let mut dbi = ctx.locks.db.index;
    let mut replace = false;
    let mut i = 3;
    while i < a.len() {
        let t = a.get(i);
        if eq_ic(t, "REPLACE") {
            replace = true;
        } else if eq_ic(t, "DB") && i + 1 < a.len() {
            let Some(n) = int_arg(ctx, a.get(i + 1)) else {
                return;
            };
            if n < 0 || n as usize >= ctx.srv.ks.count() {
                ctx.r.error("ERR DB index is out of range");
                return;
            }
            if n as usize != ctx.locks.db.index && ctx.srv.cluster_enabled() {
                ctx.r
                    .error("ERR Copying to another database is not allowed in cluster mode");
                return;
            }
            dbi = n as usize;
            i += 1;
        } else {
            ctx.r.error(SYNTAX);
            return;
        }
        i += 1;
    }
    let src_db = ctx.locks.db;
    if src == dst && dbi == src_db.index {
        ctx.r
            .error("ERR source and destination objects are the same");
        return;
    }
    let dst_db = ctx.srv.ks.db(dbi);
    let events = ctx.events().db(dbi);
    let (mut gs, gd) = ctx.locks.keys_two_dbs((src_db, src), (dst_db, dst));
    let Some(v) = gs.get(src).map(clone_value) else {
        ctx.r.int(0);
        return;
    };
    let ttl = gs.expire_of(src);
    let mut gd = gd;
    let d = match gd.as_mut() {
        Some(g) => &mut **g,
        None => &mut *gs,
    };
    if d.exists(dst) {
        if !replace {
            ctx.r.int(0);
            return;
        }
        d.delete_freeing(dst, &crate::keyspace::lazyfree::SERVER_DEL);
    }
    d.set(dst, v, false);
    if let Some(at) = ttl {
        d.set_expire(dst, at);
    }
    if d.db.log.is_active() {
        let mut b = itoa::Buffer::new();
        let mut eff: Vec<&[u8]> = vec![b"COPY", src, dst];
        let dbs = b.format(dbi);
        if dbi != src_db.index {
            eff.push(b"DB");
            eff.push(dbs.as_bytes());
        }
        if replace {
            eff.push(b"REPLACE");
        }
        gs.log(&eff);
    }
    events.emit(ev::GENERIC, "copy_to", dst);
    drop(gs);
    drop(gd);
    ctx.dirty(1);
    ctx.r.int(1);
}

pub fn keys(ctx: &mut Ctx, a: &Args) {
    let pat = a.get(1);
    let all = pat == b"*";
    let mut out = Vec::new();
    let db = ctx.locks.db;
    let mut slot = 0usize;
    while let Some(s) = db.next_nonempty_slot(slot) {
        let g = ctx.locks.slot(s);
        g.for_each_live(|k, _, _| {
            if all || glob_match(pat, k, false) {
                out.push(k.to_vec());
            }
        });
        slot = s as usize + 1;
    }
    ctx.r.array(out.len());
    for (j, k) in out.iter().enumerate() {
        if j % 1024 == 1023 && super::reply_over_limit(ctx.client, &ctx.r) {
            break;
        }
        ctx.r.bulk(k);
    }
}

/// Parses the cursor, replying `ERR invalid cursor` when it is not one.
pub fn parse_cursor(ctx: &mut Ctx, a: &[u8]) -> Option<u64> {
    let s = std::str::from_utf8(a).ok().filter(|s| !s.starts_with('+'));
    match s.and_then(|s| s.parse::<u64>().ok()) {
        Some(c) => Some(c),
        None => {
            ctx.r.error("ERR invalid cursor");
            None
        }
    }
}

pub struct ScanOpts<'a> {
    pub pattern: Option<&'a [u8]>,
    pub count: usize,
    pub kind: Option<&'a [u8]>,
}

/// Parses MATCH/COUNT (and TYPE when allowed) from `from` on.
pub fn parse_scan_opts<'a>(
    ctx: &mut Ctx,
    a: &Args<'a>,
    from: usize,
    allow_type: bool,
) -> Option<ScanOpts<'a>> {
    let mut o = ScanOpts {
        pattern: None,
        count: 10,
        kind: None,
    };
    let mut i = from;
    while i < a.len() {
        let t = a.get(i);
        let has = i + 1 < a.len();
        if eq_ic(t, "COUNT") && has {
            let n = int_arg(ctx, a.get(i + 1))?;
            if n < 1 {
                ctx.r.error(SYNTAX);
                return None;
            }
            o.count = n as usize;
        } else if eq_ic(t, "MATCH") && has {
            let p = a.get(i + 1);
            o.pattern = if p == b"*" { None } else { Some(p) };
        } else if allow_type && eq_ic(t, "TYPE") && has {
            o.kind = Some(a.get(i + 1));
        } else {
            ctx.r.error(SYNTAX);
            return None;
        }
        i += 2;
    }
    Some(o)
}

/// SCAN. The cursor's low 14 bits are the slot to visit next, the bits
/// above are the position inside that slot (see `cursor`): small slots are
/// returned whole, large ones in at most 64 steps, and a key present for
/// the whole scan is never missed, whatever happens to the table meanwhile.
pub fn scan(ctx: &mut Ctx, a: &Args) {
    let Some(cursor) = parse_cursor(ctx, a.get(1)) else {
        return;
    };
    let Some(o) = parse_scan_opts(ctx, a, 2, true) else {
        return;
    };
    let db = ctx.locks.db;
    let mut out: Vec<Vec<u8>> = Vec::new();
    let mut next = 0u64;
    let mut slot = (cursor % SLOTS as u64) as usize;
    let mut inner = cursor / SLOTS as u64;
    while slot < SLOTS {
        let Some(s) = db.next_nonempty_slot(slot) else {
            break;
        };
        if s as usize != slot {
            inner = 0;
        }
        let mut g = ctx.locks.slot(s);
        g.expire_matching(|k| o.pattern.is_none_or(|p| glob_match(p, k, false)));
        let mut live = Vec::with_capacity(g.len());
        g.for_each_live(|k, v, _| live.push((crate::keyspace::slot::hash(k), (k, v.kind()))));
        let len = live.len();
        let (items, rest) = super::cursor::step(
            live.into_iter(),
            len,
            inner,
            o.count.saturating_sub(out.len()),
        );
        for (k, kind) in items {
            if o.pattern.is_some_and(|p| !glob_match(p, k, false)) {
                continue;
            }
            if o.kind
                .is_some_and(|t| !t.eq_ignore_ascii_case(kind.name().as_bytes()))
            {
                continue;
            }
            out.push(k.to_vec());
        }
        if rest != 0 {
            next = s as u64 + rest * SLOTS as u64;
            break;
        }
        slot = s as usize + 1;
        inner = 0;
        if out.len() >= o.count && slot < SLOTS {
            next = slot as u64;
            break;
        }
    }
    ctx.r.array(2);
    let mut b = itoa::Buffer::new();
    ctx.r.bulk(b.format(next).as_bytes());
    ctx.r.array(out.len());
    for k in &out {
        ctx.r.bulk(k);
    }
}

pub fn randomkey(ctx: &mut Ctx, _a: &Args) {
    let db = ctx.locks.db;
    let mut rng = rand::rng();
    for _ in 0..100 {
        let start = rng.random_range(0..SLOTS);
        let Some(s) = db
            .next_nonempty_slot(start)
            .or_else(|| db.next_nonempty_slot(0))
        else {
            break;
        };
        let mut g = ctx.locks.slot(s);
        let keys = g.all_keys();
        if keys.is_empty() {
            continue;
        }
        let k = &keys[rng.random_range(0..keys.len())];
        // A pick past its TTL is deleted (and the deletion propagated),
        // then another key is tried, as in Redis.
        if g.is_logically_expired(k) {
            g.exists(k);
            continue;
        }
        ctx.r.bulk(k);
        return;
    }
    ctx.r.null();
}

pub fn dbsize(ctx: &mut Ctx, _a: &Args) {
    let n = ctx.locks.db.size();
    ctx.r.int(n as i64);
}

/// Whether a FLUSHALL/FLUSHDB frees in the background: ASYNC, SYNC, or
/// `lazyfree-lazy-user-flush` when neither is given. None: a syntax error
/// was replied.
fn flush_flag(ctx: &mut Ctx, a: &Args) -> Option<bool> {
    match a.len() {
        1 => Some(crate::keyspace::lazyfree::USER_FLUSH.load(std::sync::atomic::Ordering::Relaxed)),
        2 if eq_ic(a.get(1), "ASYNC") => Some(true),
        2 if eq_ic(a.get(1), "SYNC") => Some(false),
        _ => {
            ctx.r.error(SYNTAX);
            None
        }
    }
}

/// Empties one database; returns the number of keys removed.
fn flush_db(ctx: &mut Ctx, dbi: usize, lazy: bool) -> usize {
    let saved = ctx.locks.db;
    ctx.locks.db = ctx.srv.ks.db(dbi);
    let mut n = 0;
    for s in 0..SLOTS as u16 {
        let mut g = ctx.locks.slot(s);
        if !g.is_empty() {
            n += g.clear(lazy);
        }
    }
    ctx.locks.db = saved;
    // Blocked XREADGROUP clients learn their stream is gone (as Redis's
    // flush does); the others find nothing and wait on.
    let blocking = &ctx.srv.ks.blocking;
    if blocking.any_waiting() {
        for k in blocking.keys_of(dbi) {
            blocking.signal_all(dbi, &k);
        }
    }
    n
}

pub fn flushdb(ctx: &mut Ctx, a: &Args) {
    let Some(lazy) = flush_flag(ctx, a) else {
        return;
    };
    let dbi = ctx.locks.db.index;
    let n = flush_db(ctx, dbi, lazy);
    crate::server::tracking::flushed(ctx.srv);
    ctx.log(&[b"FLUSHDB".as_slice()]);
    ctx.dirty(n as u64 + 1);
    ctx.r.ok();
}

pub fn flushall(ctx: &mut Ctx, a: &Args) {
    let Some(lazy) = flush_flag(ctx, a) else {
        return;
    };
    let mut n = 0;
    let existing: Vec<usize> = ctx.srv.ks.existing().map(|d| d.index).collect();
    for d in existing {
        n += flush_db(ctx, d, lazy);
    }
    crate::server::tracking::flushed(ctx.srv);
    ctx.srv.repl.own_expires.clear();
    ctx.log(&[b"FLUSHALL".as_slice()]);
    ctx.dirty(n as u64 + 1);
    // With save points set, the emptied dataset is saved at once, as Redis
    // does: the file no longer holds the flushed keys and the count of
    // changes starts over. (A BGSAVE running now would replace that file
    // with its older snapshot; redis-server kills its child, here it is
    // left to finish and the save is skipped.)
    let save_points = !ctx.srv.config.read().value("save").trim().is_empty();
    if save_points
        && !ctx
            .srv
            .bgsave_running
            .load(std::sync::atomic::Ordering::Relaxed)
    {
        ctx.client.pending_dirty = 0;
        if let Err(e) = crate::persistence::save(ctx.srv) {
            tracing::warn!("Saving the flushed dataset failed: {e}");
        }
    }
    ctx.r.ok();
}

/// Runs `f` on a key's value and access data without counting an access.
fn object_lookup(ctx: &mut Ctx, a: &Args, f: impl FnOnce(&Value, u32, i64) -> ObjReply) {
    let key = a.get(2);
    let mut s = ctx.locks.key(key);
    let now = s.now;
    let rep = s.peek(key).map(|(v, meta)| f(v, meta, now));
    drop(s);
    match rep {
        None => ctx.r.null(),
        Some(ObjReply::Bulk(b)) => ctx.r.bulk(b.as_bytes()),
        Some(ObjReply::Int(n)) => ctx.r.int(n),
        Some(ObjReply::Err(e)) => ctx.r.error(e),
    }
}

enum ObjReply {
    Bulk(&'static str),
    Int(i64),
    Err(&'static str),
}

fn lfu_policy() -> bool {
    crate::keyspace::access::LFU.load(std::sync::atomic::Ordering::Relaxed)
}

pub fn object_encoding(ctx: &mut Ctx, a: &Args) {
    object_lookup(ctx, a, |v, _, _| ObjReply::Bulk(v.encoding()))
}

pub fn object_freq(ctx: &mut Ctx, a: &Args) {
    let lfu = lfu_policy();
    object_lookup(ctx, a, |_, meta, now| {
        if lfu {
            ObjReply::Int(crate::keyspace::access::frequency(meta, now) as i64)
        } else {
            ObjReply::Err("ERR An LFU maxmemory policy is not selected, access frequency not tracked. Please note that when switching between policies at runtime LRU and LFU data will take some time to adjust.")
        }
    })
}

pub fn object_idletime(ctx: &mut Ctx, a: &Args) {
    let lfu = lfu_policy();
    object_lookup(ctx, a, |_, meta, now| {
        if lfu {
            ObjReply::Err("ERR An LFU maxmemory policy is selected, idle time not tracked. Please note that when switching between policies at runtime LRU and LFU data will take some time to adjust.")
        } else {
            ObjReply::Int(crate::keyspace::access::idle_seconds(meta, now) as i64)
        }
    })
}

pub fn object_refcount(ctx: &mut Ctx, a: &Args) {
    // Redis shares the objects of small integers, except under maxmemory
    // with an LRU or LFU policy, where each key needs its own access clock.
    use std::sync::atomic::Ordering::Relaxed;
    let hot = &ctx.srv.hot;
    let shared = hot.maxmemory.load(Relaxed) == 0
        || !crate::keyspace::evict::Policy::from_code(hot.maxmemory_policy.load(Relaxed))
            .uses_access_clock();
    object_lookup(ctx, a, move |v, _, _| match v {
        Value::Int(n) if shared && (0..10000).contains(n) => ObjReply::Int(i32::MAX as i64),
        _ => ObjReply::Int(1),
    })
}

pub fn object_help(ctx: &mut Ctx, _a: &Args) {
    super::connection::help_reply(
        ctx,
        "OBJECT",
        &[
            "ENCODING <key>",
            "    Return the kind of internal representation used in order to store the value",
            "    associated with a <key>.",
            "FREQ <key>",
            "    Return the access frequency index of the <key>. The returned integer is",
            "    proportional to the logarithm of the recent access frequency of the key.",
            "IDLETIME <key>",
            "    Return the idle time of the <key>, that is the approximated number of",
            "    seconds elapsed since the last access to the key.",
            "REFCOUNT <key>",
            "    Return the number of references of the value associated with the specified",
            "    <key>.",
        ],
    );
}

/// Deletes every key of a slot, logging each as `DEL` (a slot another node
/// took over, CLUSTER RESET on a replica).
pub fn clear_slot(s: &mut crate::keyspace::SlotRef) -> usize {
    let keys = s.live_keys();
    for k in &keys {
        s.delete_freeing(k, &crate::keyspace::lazyfree::SERVER_DEL);
        s.log(&[&b"DEL"[..], &k[..]]);
    }
    keys.len()
}

/// [`clear_slot`] from outside a command (the cluster side).
pub fn delete_slot_keys(srv: &crate::server::Shared, slot: u16) -> usize {
    let db = srv.ks.db(0);
    let mut s = db.lock_slot(slot, crate::keyspace::now_ms());
    clear_slot(&mut s)
}

/// Parses a database index as Redis's getIntFromObjectOrReply does (a C
/// int), replying `msg` when it is not one, or by default Redis's two
/// messages (not an integer / out of the int range).
fn db_index_arg(ctx: &mut Ctx, a: &[u8], msg: Option<&str>) -> Option<i64> {
    let err = match crate::resp::parse_i64(a) {
        Some(n) if i32::try_from(n).is_ok() => return Some(n),
        Some(_) => "ERR value is out of range, value must between -2147483648 and 2147483647",
        None => super::NOT_INT,
    };
    ctx.r.error(msg.unwrap_or(err));
    None
}

pub fn move_(ctx: &mut Ctx, a: &Args) {
    if ctx.srv.cluster_enabled() {
        return ctx.r.error("ERR MOVE is not allowed in cluster mode");
    }
    let key = a.get(1);
    let Some(n) = db_index_arg(ctx, a.get(2), None) else {
        return;
    };
    if n < 0 || n as usize >= ctx.srv.ks.count() {
        return ctx.r.error("ERR DB index is out of range");
    }
    let src_db = ctx.locks.db;
    if n as usize == src_db.index {
        return ctx
            .r
            .error("ERR source and destination objects are the same");
    }
    let dst_db = ctx.srv.ks.db(n as usize);
    let (mut gs, gd) = ctx.locks.keys_two_dbs((src_db, key), (dst_db, key));
    let Some(mut gd) = gd else {
        return ctx.r.int(0);
    };
    if !gs.exists(key) {
        return ctx.r.int(0);
    }
    let ttl = gs.expire_of(key);
    if gd.exists(key) {
        return ctx.r.int(0);
    }
    let Some(v) = gs.remove(key) else {
        return ctx.r.int(0);
    };
    gd.set(key, v, false);
    if let Some(at) = ttl {
        gd.set_expire(key, at);
    }
    let mut b = itoa::Buffer::new();
    gs.log(&[b"MOVE".as_slice(), key, b.format(n).as_bytes()]);
    let events = crate::server::notify::Events::new(ctx.srv, ctx.srv.hot.notify.load());
    events
        .db(src_db.index)
        .emit(crate::server::notify::class::GENERIC, "move_from", key);
    events
        .db(n as usize)
        .emit(crate::server::notify::class::GENERIC, "move_to", key);
    drop(gs);
    drop(gd);
    ctx.dirty(1);
    ctx.r.int(1);
}

/// SWAPDB a b. Every slot of both databases is locked at once (lower
/// database first, the global lock order) and the two tables of each slot
/// exchange their contents. Swapping whole `Db` values instead would not
/// do: clients hold references to their `Db`, and keep their database
/// across the swap (as in Redis, where only the dictionaries move), along
/// with their WATCHes and blocked keys, which live in the slot tables and
/// the blocking registry by database index.
pub fn swapdb(ctx: &mut Ctx, a: &Args) {
    if ctx.srv.cluster_enabled() {
        return ctx.r.error("ERR SWAPDB is not allowed in cluster mode");
    }
    let Some(x) = db_index_arg(ctx, a.get(1), Some("ERR invalid first DB index")) else {
        return;
    };
    let Some(y) = db_index_arg(ctx, a.get(2), Some("ERR invalid second DB index")) else {
        return;
    };
    let count = ctx.srv.ks.count() as i64;
    if !(0..count).contains(&x) || !(0..count).contains(&y) {
        return ctx.r.error("ERR DB index is out of range");
    }
    let (x, y) = (x as usize, y as usize);
    let mut gen = u64::MAX;
    if x != y {
        let (dx, dy) = (ctx.srv.ks.db(x), ctx.srv.ks.db(y));
        let blocking = &ctx.srv.ks.blocking;
        let mut blocked: Vec<(usize, crate::keyspace::SBytes)> = Vec::new();
        for d in [x, y] {
            blocked.extend(blocking.keys_of(d).into_iter().map(|k| (d, k)));
        }
        blocked.sort_unstable_by_key(|(_, k)| crate::keyspace::key_slot(k));
        let mut next = 0;
        gen = ctx.locks.with_two_dbs(dx, dy, |p, q| {
            let mut end = next;
            while end < blocked.len() && crate::keyspace::key_slot(&blocked[end].1) == p.slot {
                end += 1;
            }
            let here = &blocked[next..end];
            let side = |p: &crate::keyspace::SlotRef, d: usize| p.db.index == d;
            let was_stream: Vec<bool> = here
                .iter()
                .map(|(d, k)| {
                    if side(p, *d) {
                        p.holds_stream(k)
                    } else {
                        q.holds_stream(k)
                    }
                })
                .collect();
            p.swap_contents(q);
            // Wake clients blocked on keys that now hold a list, zset or
            // stream, and those whose stream went away (XREADGROUP then
            // fails, as in Redis).
            for ((d, k), was_stream) in here.iter().zip(was_stream) {
                let s = if side(p, *d) { &*p } else { &*q };
                if s.holds_stream(k) || was_stream {
                    s.signal_all_ready(k);
                } else if s.holds_blocking_kind(k) {
                    s.signal_ready(k);
                }
            }
            next = end;
        });
    }
    let log = &ctx.srv.log;
    if log.is_active() {
        let (mut b1, mut b2) = (itoa::Buffer::new(), itoa::Buffer::new());
        ctx.client.last_write_offset = log.append_gen(
            ctx.locks.db.index,
            gen,
            &[
                b"SWAPDB".as_slice(),
                b1.format(x).as_bytes(),
                b2.format(y).as_bytes(),
            ],
        );
    }
    ctx.dirty(1);
    ctx.r.ok();
}
