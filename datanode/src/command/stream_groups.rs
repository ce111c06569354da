//! Consumer groups of streams: XGROUP, XACK, XPENDING, XCLAIM, XAUTOCLAIM
//! and XINFO, with Redis 7.0's parsing, replies and errors. XCLAIM and
//! XAUTOCLAIM log one idempotent `XCLAIM … FORCE JUSTID LASTID` per entry
//! they changed, as Redis propagates them, so replicas and the AOF agree.

use super::streams::{interval_id, parse_id, BAD_ID};
use super::{eq_ic, ev, Args, Ctx, NOT_INT, SYNTAX, WRONGTYPE};
use crate::keyspace::stream::{Group, Pending, Stream, StreamId, ENTRIES_READ_UNKNOWN};
use crate::keyspace::Value;
use crate::resp::parse_i64;

fn sub_syntax(ctx: &mut Ctx, a: &Args, cmd: &str) {
    let sub = String::from_utf8_lossy(a.get(1));
    let sub: String = sub.chars().take(128).collect();
    ctx.r.error(&format!(
        "ERR unknown subcommand or wrong number of arguments for '{sub}'. Try {cmd} HELP."
    ));
}

fn no_group_for_key(ctx: &mut Ctx, key: &[u8], group: &[u8]) {
    ctx.r.error(&format!(
        "NOGROUP No such consumer group '{}' for key name '{}'",
        String::from_utf8_lossy(group),
        String::from_utf8_lossy(key)
    ));
}

fn no_key_or_group(ctx: &mut Ctx, key: &[u8], group: &[u8]) {
    ctx.r.error(&format!(
        "NOGROUP No such key '{}' or consumer group '{}'",
        String::from_utf8_lossy(key),
        String::from_utf8_lossy(group)
    ));
}

/// The idempotent form Redis propagates a claim or delivery in.
pub(super) fn claim_effect(
    key: &[u8],
    group: &[u8],
    id: StreamId,
    p: &Pending,
    last: StreamId,
) -> Vec<Vec<u8>> {
    vec![
        b"XCLAIM".to_vec(),
        key.to_vec(),
        group.to_vec(),
        p.consumer.clone(),
        b"0".to_vec(),
        id.format().into_bytes(),
        b"TIME".to_vec(),
        p.delivery_time.to_string().into_bytes(),
        b"RETRYCOUNT".to_vec(),
        p.delivery_count.to_string().into_bytes(),
        b"FORCE".to_vec(),
        b"JUSTID".to_vec(),
        b"LASTID".to_vec(),
        last.format().into_bytes(),
    ]
}

/// `XGROUP SETID key group id ENTRIESREAD n`, which Redis propagates when
/// a group's last ID moves without an XCLAIM to carry it.
pub(super) fn setid_effect(key: &[u8], group: &[u8], g: &Group) -> Vec<Vec<u8>> {
    vec![
        b"XGROUP".to_vec(),
        b"SETID".to_vec(),
        key.to_vec(),
        group.to_vec(),
        g.last_id.format().into_bytes(),
        b"ENTRIESREAD".to_vec(),
        g.entries_read.to_string().into_bytes(),
    ]
}

// ---- XGROUP ----

pub fn xgroup_help(ctx: &mut Ctx, _a: &Args) {
    super::connection::help_reply(
        ctx,
        "XGROUP",
        &[
            "CREATE <key> <groupname> <id|$> [option]",
            "    Create a new consumer group. Options are:",
            "    * MKSTREAM",
            "      Create the empty stream if it does not exist.",
            "    * ENTRIESREAD entries_read",
            "      Set the group's entries_read counter (internal use).",
            "CREATECONSUMER <key> <groupname> <consumer>",
            "    Create a new consumer in the specified group.",
            "DELCONSUMER <key> <groupname> <consumer>",
            "    Remove the specified consumer.",
            "DESTROY <key> <groupname>",
            "    Remove the specified group.",
            "SETID <key> <groupname> <id|$> [ENTRIESREAD entries_read]",
            "    Set the current group ID and entries_read counter.",
        ],
    );
}

/// XGROUP CREATE|SETID|DESTROY|CREATECONSUMER|DELCONSUMER, one handler
/// as in Redis: the checks run in the same order for all of them.
pub fn xgroup(ctx: &mut Ctx, a: &Args) {
    let sub = a.get(1);
    let create = eq_ic(sub, "CREATE");
    let setid = eq_ic(sub, "SETID");
    let mut mkstream = false;
    let mut entries_read = ENTRIES_READ_UNKNOWN;
    let mut i = 5;
    while i < a.len() {
        if create && eq_ic(a.get(i), "MKSTREAM") {
            mkstream = true;
            i += 1;
        } else if (create || setid) && eq_ic(a.get(i), "ENTRIESREAD") && i + 1 < a.len() {
            match parse_i64(a.get(i + 1)) {
                None => return ctx.r.error(NOT_INT),
                Some(n) if n < 0 && n != ENTRIES_READ_UNKNOWN => {
                    return ctx
                        .r
                        .error("ERR value for ENTRIESREAD must be positive or -1")
                }
                Some(n) => entries_read = n,
            }
            i += 2;
        } else {
            return sub_syntax(ctx, a, "XGROUP");
        }
    }
    let (key, group) = (a.get(2), a.get(3));
    let now = crate::keyspace::now_ms();
    let events = ctx.events();
    let mut s = ctx.locks.key(key);
    let exists = match s.get(key) {
        None => false,
        Some(Value::Stream(_)) => true,
        Some(_) => return ctx.r.error(WRONGTYPE),
    };
    if !mkstream {
        if !exists {
            drop(s);
            return ctx.r.error(
                "ERR The XGROUP subcommand requires the key to exist. Note that for CREATE you may want to use the MKSTREAM option to create an empty stream automatically.",
            );
        }
        let has_group =
            matches!(s.get(key), Some(Value::Stream(st)) if st.groups.contains_key(group));
        let needs_group = setid || eq_ic(sub, "CREATECONSUMER") || eq_ic(sub, "DELCONSUMER");
        if needs_group && !has_group {
            drop(s);
            return no_group_for_key(ctx, key, group);
        }
    }
    let argc = a.len();
    if create && (5..=8).contains(&argc) {
        let id = if a.get(4) == b"$" {
            match s.get(key) {
                Some(Value::Stream(st)) => st.last_id,
                _ => StreamId::MIN,
            }
        } else {
            match parse_id(a.get(4), 0, true, false) {
                Some((id, _)) => id,
                None => return ctx.r.error(BAD_ID),
            }
        };
        if !exists {
            s.set(key, Value::Stream(Box::new(Stream::new())), false);
            s.touch(key);
        }
        let Some(Value::Stream(st)) = s.get_mut(key) else {
            return ctx.r.error(WRONGTYPE);
        };
        if st.groups.contains_key(group) {
            drop(s);
            return ctx.r.error("BUSYGROUP Consumer Group name already exists");
        }
        st.groups
            .insert(group.to_vec(), Group::new(id, entries_read));
        s.log(&a.iter().collect::<Vec<_>>());
        events.emit(ev::STREAM, "xgroup-create", key);
        drop(s);
        ctx.dirty(1);
        return ctx.r.ok();
    }
    let Some(Value::Stream(st)) = s.get_mut(key) else {
        drop(s);
        return sub_syntax(ctx, a, "XGROUP");
    };
    if setid && (argc == 5 || argc == 7) {
        let id = if a.get(4) == b"$" {
            st.last_id
        } else {
            match parse_id(a.get(4), 0, false, false) {
                Some((id, _)) => id,
                None => return ctx.r.error(BAD_ID),
            }
        };
        let Some(g) = st.groups.get_mut(group) else {
            return ctx.r.error(WRONGTYPE);
        };
        g.last_id = id;
        g.entries_read = entries_read;
        s.log(&a.iter().collect::<Vec<_>>());
        events.emit(ev::STREAM, "xgroup-setid", key);
        drop(s);
        ctx.dirty(1);
        ctx.r.ok();
    } else if eq_ic(sub, "DESTROY") && argc == 4 {
        if st.groups.remove(group).is_some() {
            s.log(&a.iter().collect::<Vec<_>>());
            // Readers blocked on the group learn it is gone.
            s.signal_all_ready(key);
            events.emit(ev::STREAM, "xgroup-destroy", key);
            drop(s);
            ctx.dirty(1);
            ctx.r.int(1);
        } else {
            drop(s);
            ctx.r.int(0);
        }
    } else if eq_ic(sub, "CREATECONSUMER") && argc == 5 {
        let created = st
            .groups
            .get_mut(group)
            .is_some_and(|g| g.create_consumer(a.get(4), now));
        if created {
            s.log(&a.iter().collect::<Vec<_>>());
            events.emit(ev::STREAM, "xgroup-createconsumer", key);
            drop(s);
            ctx.dirty(1);
        } else {
            drop(s);
        }
        ctx.r.int(created as i64);
    } else if eq_ic(sub, "DELCONSUMER") && argc == 5 {
        let pending = st
            .groups
            .get_mut(group)
            .and_then(|g| g.delete_consumer(a.get(4)));
        if let Some(n) = pending {
            s.log(&a.iter().collect::<Vec<_>>());
            events.emit(ev::STREAM, "xgroup-delconsumer", key);
            drop(s);
            ctx.dirty(1);
            ctx.r.int(n as i64);
        } else {
            drop(s);
            ctx.r.int(0);
        }
    } else {
        drop(s);
        sub_syntax(ctx, a, "XGROUP");
    }
}

// ---- XACK ----

pub fn xack(ctx: &mut Ctx, a: &Args) {
    let (key, group) = (a.get(1), a.get(2));
    let mut s = ctx.locks.key(key);
    match s.get(key) {
        Some(Value::Stream(st)) if st.groups.contains_key(group) => {}
        Some(Value::Stream(_)) | None => {
            drop(s);
            return ctx.r.int(0);
        }
        Some(_) => return ctx.r.error(WRONGTYPE),
    }
    // All IDs first: an ack is all or nothing.
    let mut ids = Vec::with_capacity(a.len() - 3);
    for arg in a.iter().skip(3) {
        match parse_id(arg, 0, true, false) {
            Some((id, _)) => ids.push(id),
            None => return ctx.r.error(BAD_ID),
        }
    }
    let Some(Value::Stream(st)) = s.get_mut(key) else {
        return ctx.r.int(0);
    };
    let Some(g) = st.groups.get_mut(group) else {
        return ctx.r.int(0);
    };
    let acked = ids.into_iter().filter(|&id| g.ack(id)).count();
    if acked > 0 {
        s.log(&a.iter().collect::<Vec<_>>());
        drop(s);
        ctx.dirty(acked as u64);
    } else {
        drop(s);
    }
    ctx.r.int(acked as i64);
}

// ---- XPENDING ----

pub fn xpending(ctx: &mut Ctx, a: &Args) {
    let argc = a.len();
    if argc != 3 && !(6..=9).contains(&argc) {
        return ctx.r.error(SYNTAX);
    }
    let (key, group) = (a.get(1), a.get(2));
    let mut range = None;
    if argc >= 6 {
        let mut at = 3;
        let mut min_idle = 0i64;
        if eq_ic(a.get(3), "IDLE") {
            match parse_i64(a.get(4)) {
                Some(n) => min_idle = n,
                None => return ctx.r.error(NOT_INT),
            }
            if argc < 8 {
                return ctx.r.error(SYNTAX);
            }
            at += 2;
        }
        let count = match parse_i64(a.get(at + 2)) {
            Some(n) => n.max(0) as usize,
            None => return ctx.r.error(NOT_INT),
        };
        let Some(start) = interval_id(ctx, a.get(at), 0, true) else {
            return;
        };
        let Some(end) = interval_id(ctx, a.get(at + 1), u64::MAX, false) else {
            return;
        };
        let consumer = (at + 3 < argc).then(|| a.get(at + 3));
        range = Some((start, end, count, min_idle, consumer));
    }
    let now = crate::keyspace::now_ms();
    let mut s = ctx.locks.key(key);
    let g = match s.get(key) {
        Some(Value::Stream(st)) => st.groups.get(group),
        None => None,
        Some(_) => return ctx.r.error(WRONGTYPE),
    };
    let Some(g) = g else {
        drop(s);
        return no_key_or_group(ctx, key, group);
    };
    let Some((start, end, count, min_idle, consumer)) = range else {
        // The summary: how many, the first and last IDs, per consumer.
        let first = g.pel.keys().next().copied();
        let last = g.pel.keys().next_back().copied();
        let per: Vec<(Vec<u8>, usize)> = g
            .consumers
            .iter()
            .filter(|(_, c)| !c.pel.is_empty())
            .map(|(n, c)| (n.clone(), c.pel.len()))
            .collect();
        let total = g.pel.len();
        drop(s);
        ctx.r.array(4);
        ctx.r.int(total as i64);
        match (first, last) {
            (Some(f), Some(l)) => {
                id_reply(&mut ctx.r, f);
                id_reply(&mut ctx.r, l);
                ctx.r.array(per.len());
                for (name, n) in per {
                    ctx.r.array(2);
                    ctx.r.bulk(&name);
                    ctx.r.bulk_int(n as i64);
                }
            }
            _ => {
                ctx.r.null();
                ctx.r.null();
                ctx.r.null_array();
            }
        }
        return;
    };
    // Walked lazily: only as far as the first `count` rows.
    let mut ids: Box<dyn Iterator<Item = StreamId> + '_> = match consumer {
        Some(name) => match g.consumers.get(name) {
            Some(c) => Box::new(c.pel.range(start..).copied()),
            None => {
                drop(s);
                return ctx.r.array(0);
            }
        },
        None => Box::new(g.pel.range(start..).map(|(id, _)| *id)),
    };
    let mut rows = Vec::with_capacity(count.min(64));
    if start <= end {
        for id in &mut ids {
            if rows.len() >= count || id > end {
                break;
            }
            let Some(p) = g.pel.get(&id) else {
                continue;
            };
            if min_idle != 0 && now - p.delivery_time < min_idle {
                continue;
            }
            rows.push((
                id,
                p.consumer.clone(),
                (now - p.delivery_time).max(0),
                p.delivery_count,
            ));
        }
    }
    drop(ids);
    drop(s);
    ctx.r.array(rows.len());
    for (id, consumer, idle, count) in rows {
        ctx.r.array(4);
        id_reply(&mut ctx.r, id);
        ctx.r.bulk(&consumer);
        ctx.r.int(idle);
        ctx.r.int(count as i64);
    }
}

// ---- XCLAIM and XAUTOCLAIM ----

/// What one claimed entry puts in the reply.
enum Claimed {
    Id(StreamId),
    Entry(crate::keyspace::stream::Entry),
}

/// The reply items for claimed entries: IDs, or the entries (each was
/// checked to exist under the same lock).
fn claimed_of(st: &Stream, ids: Vec<StreamId>, justid: bool) -> Vec<Claimed> {
    ids.into_iter()
        .filter_map(|id| {
            if justid {
                Some(Claimed::Id(id))
            } else {
                st.range(id, id, 1, false).pop().map(Claimed::Entry)
            }
        })
        .collect()
}

fn reply_claimed(r: &mut crate::resp::Reply, claimed: &[Claimed]) {
    r.array(claimed.len());
    for c in claimed {
        match c {
            Claimed::Id(id) => id_reply(r, *id),
            Claimed::Entry(e) => entry_reply(r, e),
        }
    }
}

fn opt_int(r: &mut crate::resp::Reply, arg: &[u8], msg: &str) -> Option<i64> {
    let v = parse_i64(arg);
    if v.is_none() {
        r.error(&format!("ERR {msg}"));
    }
    v
}

pub fn xclaim(ctx: &mut Ctx, a: &Args) {
    let (key, group, name) = (a.get(1), a.get(2), a.get(3));
    let now = crate::keyspace::now_ms();
    let mut s = ctx.locks.key(key);
    match s.get(key) {
        Some(Value::Stream(st)) if st.groups.contains_key(group) => {}
        Some(Value::Stream(_)) | None => {
            drop(s);
            return no_key_or_group(ctx, key, group);
        }
        Some(_) => return ctx.r.error(WRONGTYPE),
    }
    let Some(min_idle) = opt_int(
        &mut ctx.r,
        a.get(4),
        "Invalid min-idle-time argument for XCLAIM",
    ) else {
        return;
    };
    let min_idle = min_idle.max(0);
    let mut ids = Vec::new();
    let mut j = 5;
    while j < a.len() {
        match parse_id(a.get(j), 0, true, false) {
            Some((id, _)) => ids.push(id),
            None => break,
        }
        j += 1;
    }
    let (mut force, mut justid) = (false, false);
    let mut delivery: Option<i64> = None;
    let mut retry: Option<i64> = None;
    let mut last_id = StreamId::MIN;
    while j < a.len() {
        let more = j + 1 < a.len();
        let opt = a.get(j);
        if eq_ic(opt, "FORCE") {
            force = true;
        } else if eq_ic(opt, "JUSTID") {
            justid = true;
        } else if eq_ic(opt, "IDLE") && more {
            j += 1;
            let Some(v) = opt_int(
                &mut ctx.r,
                a.get(j),
                "Invalid IDLE option argument for XCLAIM",
            ) else {
                return;
            };
            delivery = Some(now.wrapping_sub(v));
        } else if eq_ic(opt, "TIME") && more {
            j += 1;
            let Some(v) = opt_int(
                &mut ctx.r,
                a.get(j),
                "Invalid TIME option argument for XCLAIM",
            ) else {
                return;
            };
            delivery = Some(v);
        } else if eq_ic(opt, "RETRYCOUNT") && more {
            j += 1;
            let Some(v) = opt_int(
                &mut ctx.r,
                a.get(j),
                "Invalid RETRYCOUNT option argument for XCLAIM",
            ) else {
                return;
            };
            retry = Some(v);
        } else if eq_ic(opt, "LASTID") && more {
            j += 1;
            match parse_id(a.get(j), 0, true, false) {
                Some((id, _)) => last_id = id,
                None => return ctx.r.error(BAD_ID),
            }
        } else {
            return ctx.r.error(&format!(
                "ERR Unrecognized XCLAIM option '{}'",
                String::from_utf8_lossy(opt)
            ));
        }
        j += 1;
    }
    // A bogus time (negative or in the future) becomes now, as in Redis.
    let delivery = match delivery {
        Some(t) if t >= 0 && t <= now => t,
        _ => now,
    };
    let Some(Value::Stream(st)) = s.get_mut(key) else {
        return ctx.r.error(WRONGTYPE);
    };
    let st: &mut Stream = st;
    let exists: Vec<bool> = ids.iter().map(|&id| st.entry_exists(id)).collect();
    let Some(g) = st.groups.get_mut(group) else {
        return ctx.r.error(WRONGTYPE);
    };
    let mut propagate_last = false;
    if last_id > g.last_id {
        g.last_id = last_id;
        propagate_last = true;
    }
    let mut effects: Vec<Vec<Vec<u8>>> = Vec::new();
    let mut claimed_ids = Vec::new();
    let mut have_consumer = false;
    let mut created_consumer = false;
    for (&id, &live) in ids.iter().zip(&exists) {
        if !live {
            // The entry is gone: its pending entry goes too.
            if let Some(p) = g.pel.get(&id) {
                effects.push(claim_effect(key, group, id, p, g.last_id));
                propagate_last = false;
                g.ack(id);
            }
            continue;
        }
        let pending = g.pel.get(&id);
        let fresh = pending.is_none();
        if fresh && !force {
            continue;
        }
        // Idle time is checked only for an entry someone owned.
        if let Some(p) = pending {
            if min_idle > 0 && now - p.delivery_time < min_idle {
                continue;
            }
        }
        if !have_consumer {
            created_consumer = g.see_consumer(name, now);
            have_consumer = true;
        }
        let last = g.last_id;
        let p = g.assign(id, name);
        if fresh {
            // A forced entry starts as delivered once, as Redis's does.
            p.delivery_count = 1;
        }
        p.delivery_time = delivery;
        match retry {
            Some(n) if n >= 0 => p.delivery_count = n as u64,
            _ if !justid => p.delivery_count += 1,
            _ => {}
        }
        effects.push(claim_effect(key, group, id, p, last));
        propagate_last = false;
        claimed_ids.push(id);
    }
    if propagate_last {
        effects.push(setid_effect(key, group, g));
    }
    let claimed = claimed_of(st, claimed_ids, justid);
    let dirty = effects.len() as u64 + created_consumer as u64;
    for e in &effects {
        s.log(e);
    }
    drop(s);
    if created_consumer {
        ctx.notify(ev::STREAM, "xgroup-createconsumer", key);
    }
    ctx.dirty(dirty);
    reply_claimed(&mut ctx.r, &claimed);
}

pub fn xautoclaim(ctx: &mut Ctx, a: &Args) {
    let (key, group, name) = (a.get(1), a.get(2), a.get(3));
    let Some(min_idle) = opt_int(
        &mut ctx.r,
        a.get(4),
        "Invalid min-idle-time argument for XAUTOCLAIM",
    ) else {
        return;
    };
    let min_idle = min_idle.max(0);
    let Some(start) = interval_id(ctx, a.get(5), 0, true) else {
        return;
    };
    let mut count: i64 = 100;
    let mut justid = false;
    let mut j = 6;
    while j < a.len() {
        let more = j + 1 < a.len();
        if eq_ic(a.get(j), "COUNT") && more {
            let max = i64::MAX / 16;
            match parse_i64(a.get(j + 1)) {
                Some(n) if (1..=max).contains(&n) => count = n,
                _ => return ctx.r.error("ERR COUNT must be > 0"),
            }
            j += 1;
        } else if eq_ic(a.get(j), "JUSTID") {
            justid = true;
        } else {
            return ctx.r.error(SYNTAX);
        }
        j += 1;
    }
    let now = crate::keyspace::now_ms();
    let mut s = ctx.locks.key(key);
    match s.get(key) {
        Some(Value::Stream(st)) if st.groups.contains_key(group) => {}
        Some(Value::Stream(_)) | None => {
            drop(s);
            return no_key_or_group(ctx, key, group);
        }
        Some(_) => return ctx.r.error(WRONGTYPE),
    }
    let Some(Value::Stream(st)) = s.get_mut(key) else {
        return ctx.r.error(WRONGTYPE);
    };
    let st: &mut Stream = st;
    // At most `count * 10` are tried, and one more gives the next cursor.
    let candidates: Vec<StreamId> = st
        .groups
        .get(group)
        .map(|g| {
            g.pel
                .range(start..)
                .map(|(id, _)| *id)
                .take(count.saturating_mul(10).saturating_add(1) as usize)
                .collect()
        })
        .unwrap_or_default();
    let live: Vec<bool> = candidates.iter().map(|&id| st.entry_exists(id)).collect();
    let Some(g) = st.groups.get_mut(group) else {
        return ctx.r.error(WRONGTYPE);
    };
    let mut attempts = count.saturating_mul(10);
    let mut left = count;
    let mut effects: Vec<Vec<Vec<u8>>> = Vec::new();
    let mut deleted = Vec::new();
    let mut claimed_ids = Vec::new();
    let mut created_consumer = false;
    let mut have_consumer = false;
    let mut next = 0;
    while next < candidates.len() && attempts > 0 && left > 0 {
        attempts -= 1;
        let id = candidates[next];
        next += 1;
        if !live[next - 1] {
            if let Some(p) = g.pel.get(&id) {
                effects.push(claim_effect(key, group, id, p, g.last_id));
            }
            g.ack(id);
            deleted.push(id);
            left -= 1;
            continue;
        }
        let Some(p) = g.pel.get(&id) else {
            continue;
        };
        if min_idle > 0 && now - p.delivery_time < min_idle {
            continue;
        }
        if !have_consumer {
            created_consumer = g.see_consumer(name, now);
            have_consumer = true;
        }
        let last = g.last_id;
        let p = g.assign(id, name);
        p.delivery_time = now;
        if !justid {
            p.delivery_count += 1;
        }
        effects.push(claim_effect(key, group, id, p, last));
        claimed_ids.push(id);
        left -= 1;
    }
    // The cursor: the next pending ID after the ones looked at, or 0-0.
    let cursor = candidates
        .get(next..)
        .unwrap_or_default()
        .iter()
        .find(|id| g.pel.contains_key(id))
        .copied()
        .unwrap_or(StreamId::MIN);
    let claimed = claimed_of(st, claimed_ids, justid);
    let dirty = effects.len() as u64 + created_consumer as u64;
    for e in &effects {
        s.log(e);
    }
    drop(s);
    if created_consumer {
        ctx.notify(ev::STREAM, "xgroup-createconsumer", key);
    }
    ctx.dirty(dirty);
    ctx.r.array(3);
    id_reply(&mut ctx.r, cursor);
    reply_claimed(&mut ctx.r, &claimed);
    ctx.r.array(deleted.len());
    for id in deleted {
        id_reply(&mut ctx.r, id);
    }
}

// ---- XINFO ----

pub fn xinfo_help(ctx: &mut Ctx, _a: &Args) {
    super::connection::help_reply(
        ctx,
        "XINFO",
        &[
            "CONSUMERS <key> <groupname>",
            "    Show consumers of <groupname>.",
            "GROUPS <key>",
            "    Show the stream consumer groups.",
            "STREAM <key> [FULL [COUNT <count>]",
            "    Show information about the stream.",
        ],
    );
}

pub fn xinfo_consumers(ctx: &mut Ctx, a: &Args) {
    let (key, group) = (a.get(2), a.get(3));
    let now = crate::keyspace::now_ms();
    let mut s = ctx.locks.key(key);
    let st = match s.get(key) {
        None => {
            drop(s);
            return ctx.r.error(super::NO_SUCH_KEY);
        }
        Some(Value::Stream(st)) => st,
        Some(_) => return ctx.r.error(WRONGTYPE),
    };
    let Some(g) = st.groups.get(group) else {
        drop(s);
        return no_group_for_key(ctx, key, group);
    };
    let rows: Vec<(Vec<u8>, usize, i64)> = g
        .consumers
        .iter()
        .map(|(n, c)| (n.clone(), c.pel.len(), (now - c.seen_time).max(0)))
        .collect();
    drop(s);
    ctx.r.array(rows.len());
    for (name, pending, idle) in rows {
        ctx.r.map(3);
        ctx.r.bulk(b"name");
        ctx.r.bulk(&name);
        ctx.r.bulk(b"pending");
        ctx.r.int(pending as i64);
        ctx.r.bulk(b"idle");
        ctx.r.int(idle);
    }
}

fn opt_int_reply(ctx: &mut Ctx, v: Option<i64>) {
    match v {
        Some(n) => ctx.r.int(n),
        None => ctx.r.null(),
    }
}

fn entries_read(g: &Group) -> Option<i64> {
    (g.entries_read != ENTRIES_READ_UNKNOWN).then_some(g.entries_read)
}

pub fn xinfo_groups(ctx: &mut Ctx, a: &Args) {
    let key = a.get(2);
    let mut s = ctx.locks.key(key);
    let st = match s.get(key) {
        None => {
            drop(s);
            return ctx.r.error(super::NO_SUCH_KEY);
        }
        Some(Value::Stream(st)) => st,
        Some(_) => return ctx.r.error(WRONGTYPE),
    };
    type Row = (Vec<u8>, usize, usize, StreamId, Option<i64>, Option<i64>);
    let rows: Vec<Row> = st
        .groups
        .iter()
        .map(|(n, g)| {
            (
                n.clone(),
                g.consumers.len(),
                g.pel.len(),
                g.last_id,
                entries_read(g),
                st.lag(g),
            )
        })
        .collect();
    drop(s);
    ctx.r.array(rows.len());
    for (name, consumers, pending, last, read, lag) in rows {
        ctx.r.map(6);
        ctx.r.bulk(b"name");
        ctx.r.bulk(&name);
        ctx.r.bulk(b"consumers");
        ctx.r.int(consumers as i64);
        ctx.r.bulk(b"pending");
        ctx.r.int(pending as i64);
        ctx.r.bulk(b"last-delivered-id");
        id_reply(&mut ctx.r, last);
        ctx.r.bulk(b"entries-read");
        opt_int_reply(ctx, read);
        ctx.r.bulk(b"lag");
        opt_int_reply(ctx, lag);
    }
}

pub fn xinfo_stream(ctx: &mut Ctx, a: &Args) {
    let key = a.get(2);
    let opts = a.len() - 3;
    let mut full = false;
    let mut count: i64 = 10;
    if opts > 0 {
        if (opts != 1 && opts != 3) || !eq_ic(a.get(3), "FULL") {
            return sub_syntax(ctx, a, "XINFO");
        }
        full = true;
        if opts == 3 {
            if !eq_ic(a.get(4), "COUNT") {
                return sub_syntax(ctx, a, "XINFO");
            }
            match parse_i64(a.get(5)) {
                Some(n) => count = if n < 0 { 10 } else { n },
                None => return ctx.r.error(NOT_INT),
            }
        }
    }
    let mut s = ctx.locks.key(key);
    let st = match s.get(key) {
        None => {
            drop(s);
            return ctx.r.error(super::NO_SUCH_KEY);
        }
        Some(Value::Stream(st)) => st,
        Some(_) => return ctx.r.error(WRONGTYPE),
    };
    // Written under the lock: the reply borrows the stream's entries.
    let r = &mut ctx.r;
    r.map(if full { 9 } else { 10 });
    r.bulk(b"length");
    r.int(st.length as i64);
    r.bulk(b"radix-tree-keys");
    r.int(st.nodes.len() as i64);
    r.bulk(b"radix-tree-nodes");
    r.int(st.rax_nodes() as i64);
    r.bulk(b"last-generated-id");
    id_reply(r, st.last_id);
    r.bulk(b"max-deleted-entry-id");
    id_reply(r, st.max_deleted_id);
    r.bulk(b"entries-added");
    r.int(st.entries_added as i64);
    r.bulk(b"recorded-first-entry-id");
    id_reply(r, st.first_id);
    let limit = count.max(0) as usize;
    if !full {
        r.bulk(b"groups");
        r.int(st.groups.len() as i64);
        for (label, rev) in [(&b"first-entry"[..], false), (b"last-entry", true)] {
            r.bulk(label);
            match st.range(StreamId::MIN, StreamId::MAX, 1, rev).first() {
                Some(e) => entry_reply(r, e),
                None => r.null(),
            }
        }
        return;
    }
    r.bulk(b"entries");
    let entries = st.range(StreamId::MIN, StreamId::MAX, limit, false);
    r.array(entries.len());
    for e in &entries {
        entry_reply(r, e);
    }
    r.bulk(b"groups");
    r.array(st.groups.len());
    let within = |n: usize| limit == 0 || n < limit;
    for (name, g) in &st.groups {
        r.map(7);
        r.bulk(b"name");
        r.bulk(name);
        r.bulk(b"last-delivered-id");
        id_reply(r, g.last_id);
        r.bulk(b"entries-read");
        match entries_read(g) {
            Some(n) => r.int(n),
            None => r.null(),
        }
        r.bulk(b"lag");
        match st.lag(g) {
            Some(n) => r.int(n),
            None => r.null(),
        }
        r.bulk(b"pel-count");
        r.int(g.pel.len() as i64);
        r.bulk(b"pending");
        let shown: Vec<_> = g
            .pel
            .iter()
            .enumerate()
            .take_while(|(i, _)| within(*i))
            .collect();
        r.array(shown.len());
        for (_, (id, p)) in shown {
            r.array(4);
            id_reply(r, *id);
            r.bulk(&p.consumer);
            r.int(p.delivery_time);
            r.int(p.delivery_count as i64);
        }
        r.bulk(b"consumers");
        r.array(g.consumers.len());
        for (cname, c) in &g.consumers {
            r.map(4);
            r.bulk(b"name");
            r.bulk(cname);
            r.bulk(b"seen-time");
            r.int(c.seen_time);
            r.bulk(b"pel-count");
            r.int(c.pel.len() as i64);
            r.bulk(b"pending");
            let shown: Vec<_> = c
                .pel
                .iter()
                .enumerate()
                .take_while(|(i, _)| within(*i))
                .collect();
            r.array(shown.len());
            for (_, id) in shown {
                let p = g.pel.get(id);
                r.array(3);
                id_reply(r, *id);
                r.int(p.map_or(0, |p| p.delivery_time));
                r.int(p.map_or(0, |p| p.delivery_count as i64));
            }
        }
    }
}

fn id_reply(r: &mut crate::resp::Reply, id: StreamId) {
    let mut b = itoa::Buffer::new();
    let mut s = Vec::with_capacity(42);
    s.extend_from_slice(b.format(id.ms).as_bytes());
    s.push(b'-');
    s.extend_from_slice(b.format(id.seq).as_bytes());
    r.bulk(&s);
}

fn entry_reply(r: &mut crate::resp::Reply, e: &crate::keyspace::stream::Entry) {
    r.array(2);
    id_reply(r, e.id);
    r.array(e.fields.len() * 2);
    for (f, v) in &e.fields {
        r.bulk(f);
        r.bulk(v);
    }
}
