//! Set commands.

use rand::Rng;

use super::keys::{parse_cursor, parse_scan_opts};
use super::typed::{lookup, removed_events, settle, Typed};
use super::{eq_ic, ev, Args, Ctx, SYNTAX, WRONGTYPE};
use crate::glob::glob_match;
use crate::keyspace::{SetObj, SlotRef, Value};
use crate::resp::parse_i64;

fn log_args(s: &SlotRef, a: &Args) {
    if s.db.log.is_active() {
        let v: Vec<&[u8]> = a.iter().collect();
        s.log(&v);
    }
}

fn reply_members(ctx: &mut Ctx, members: &[Vec<u8>]) {
    ctx.r.set(members.len());
    for m in members {
        ctx.r.bulk(m);
    }
}

pub fn sadd(ctx: &mut Ctx, a: &Args) {
    let key = a.get(1);
    let events = ctx.events();
    let mut s = ctx.locks.key(key);
    let added = match lookup::<SetObj>(&mut s, key) {
        Typed::Wrong => return ctx.r.error(WRONGTYPE),
        Typed::Found(x) => a.iter().skip(2).filter(|m| x.add(m)).count(),
        Typed::Missing => {
            let mut x = SetObj::default();
            let n = a.iter().skip(2).filter(|m| x.add(m)).count();
            s.set(key, Value::Set(Box::new(x)), false);
            n
        }
    };
    if added > 0 {
        s.touch(key);
        log_args(&s, a);
        events.emit(ev::SET, "sadd", key);
        drop(s);
        ctx.dirty(added as u64);
    }
    ctx.r.int(added as i64);
}

pub fn srem(ctx: &mut Ctx, a: &Args) {
    let key = a.get(1);
    let events = ctx.events();
    let mut s = ctx.locks.key(key);
    let removed = match lookup::<SetObj>(&mut s, key) {
        Typed::Wrong => return ctx.r.error(WRONGTYPE),
        Typed::Missing => 0,
        Typed::Found(x) => a.iter().skip(2).filter(|m| x.remove(m)).count(),
    };
    if removed > 0 {
        let deleted = settle::<SetObj>(&mut s, key);
        log_args(&s, a);
        removed_events(&events, ev::SET, "srem", key, deleted);
        drop(s);
        ctx.dirty(removed as u64);
    }
    ctx.r.int(removed as i64);
}

/// Reads a set's members (None: missing key). Err when not a set.
fn members_of(s: &mut SlotRef, key: &[u8]) -> Result<Option<Vec<Vec<u8>>>, ()> {
    match s.get(key) {
        None => Ok(None),
        Some(Value::Set(x)) => Ok(Some(x.members())),
        Some(_) => Err(()),
    }
}

pub fn smembers(ctx: &mut Ctx, a: &Args) {
    let key = a.get(1);
    let mut s = ctx.locks.key(key);
    match members_of(&mut s, key) {
        Err(()) => ctx.r.error(WRONGTYPE),
        Ok(m) => {
            drop(s);
            reply_members(ctx, &m.unwrap_or_default())
        }
    }
}

pub fn sismember(ctx: &mut Ctx, a: &Args) {
    let key = a.get(1);
    let mut s = ctx.locks.key(key);
    match s.get(key) {
        None => ctx.r.int(0),
        Some(Value::Set(x)) => ctx.r.int(x.contains(a.get(2)) as i64),
        Some(_) => ctx.r.error(WRONGTYPE),
    }
}

pub fn smismember(ctx: &mut Ctx, a: &Args) {
    let key = a.get(1);
    let mut s = ctx.locks.key(key);
    let hits: Vec<bool> = match s.get(key) {
        None => vec![false; a.len() - 2],
        Some(Value::Set(x)) => a.iter().skip(2).map(|m| x.contains(m)).collect(),
        Some(_) => return ctx.r.error(WRONGTYPE),
    };
    drop(s);
    ctx.r.array(hits.len());
    for h in hits {
        ctx.r.int(h as i64);
    }
}

pub fn scard(ctx: &mut Ctx, a: &Args) {
    let key = a.get(1);
    let mut s = ctx.locks.key(key);
    match s.get(key) {
        None => ctx.r.int(0),
        Some(Value::Set(x)) => ctx.r.int(x.len() as i64),
        Some(_) => ctx.r.error(WRONGTYPE),
    }
}

fn parse_count(ctx: &mut Ctx, a: &Args) -> Result<Option<i64>, ()> {
    if a.len() == 3 {
        match parse_i64(a.get(2)) {
            Some(i64::MIN) => {
                ctx.r.error(super::COUNT_RANGE);
                Err(())
            }
            Some(n) => Ok(Some(n)),
            None => {
                ctx.r.error(super::NOT_INT);
                Err(())
            }
        }
    } else if a.len() > 3 {
        ctx.r.error(SYNTAX);
        Err(())
    } else {
        Ok(None)
    }
}

pub fn spop(ctx: &mut Ctx, a: &Args) {
    let key = a.get(1);
    if a.len() > 3 {
        return ctx.r.error(SYNTAX);
    }
    let count = if a.len() == 3 {
        match parse_i64(a.get(2)) {
            Some(n) if n >= 0 => Some(n),
            _ => return ctx.r.error("ERR value is out of range, must be positive"),
        }
    } else {
        None
    };
    let events = ctx.events();
    let mut s = ctx.locks.key(key);
    let want = count.unwrap_or(1) as usize;
    let mut rng = rand::rng();
    let picked: Vec<Vec<u8>> = match lookup::<SetObj>(&mut s, key) {
        Typed::Wrong => return ctx.r.error(WRONGTYPE),
        Typed::Missing => {
            drop(s);
            return match count {
                None => ctx.r.null(),
                Some(_) => ctx.r.set(0),
            };
        }
        Typed::Found(x) => {
            if want >= x.len() {
                let all = x.members();
                for m in &all {
                    x.remove(m);
                }
                all
            } else {
                // Each pick is O(1): no copy of the whole set.
                (0..want).filter_map(|_| x.pop_random(&mut rng)).collect()
            }
        }
    };
    if !picked.is_empty() {
        let deleted = settle::<SetObj>(&mut s, key);
        removed_events(&events, ev::SET, "spop", key, deleted);
        // Replicas and the AOF get the members actually popped.
        let mut eff: Vec<&[u8]> = vec![b"SREM", key];
        eff.extend(picked.iter().map(|m| m.as_slice()));
        s.log(&eff);
    }
    drop(s);
    ctx.dirty(picked.len() as u64);
    match count {
        None => match picked.first() {
            Some(m) => ctx.r.bulk(m),
            None => ctx.r.null(),
        },
        Some(_) => reply_members(ctx, &picked),
    }
}

pub fn srandmember(ctx: &mut Ctx, a: &Args) {
    let key = a.get(1);
    let Ok(count) = parse_count(ctx, a) else {
        return;
    };
    let mut s = ctx.locks.key(key);
    let mut rng = rand::rng();
    if count.is_none() {
        return match s.get(key) {
            None => ctx.r.null(),
            Some(Value::Set(x)) => match x.random_member(&mut rng) {
                Some(m) => ctx.r.bulk(&m),
                None => ctx.r.null(),
            },
            Some(_) => ctx.r.error(WRONGTYPE),
        };
    }
    let members = match members_of(&mut s, key) {
        Err(()) => return ctx.r.error(WRONGTYPE),
        Ok(m) => m,
    };
    drop(s);
    let Some(members) = members else {
        return match count {
            None => ctx.r.null(),
            Some(_) => ctx.r.array(0),
        };
    };
    match count {
        None => {
            let m = &members[rng.random_range(0..members.len())];
            ctx.r.bulk(m)
        }
        Some(c) if c >= 0 => {
            let c = c as usize;
            let picks: Vec<usize> = if c >= members.len() {
                (0..members.len()).collect()
            } else {
                rand::seq::index::sample(&mut rng, members.len(), c).into_vec()
            };
            ctx.r.array(picks.len());
            for i in picks {
                ctx.r.bulk(&members[i]);
            }
        }
        Some(c) => {
            let n = c.unsigned_abs() as usize;
            ctx.r.array(n);
            for j in 0..n {
                if j % 1024 == 1023 && super::reply_over_limit(ctx.client, &ctx.r) {
                    break;
                }
                ctx.r.bulk(&members[rng.random_range(0..members.len())]);
            }
        }
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Op {
    Inter,
    Union,
    Diff,
}

/// Computes an operation over the sets at `keys` (missing keys are empty).
/// Err(()) after replying WRONGTYPE.
fn combine(
    ctx: &mut Ctx,
    keys: &[&[u8]],
    op: Op,
    extra: Option<&[u8]>,
) -> Result<Vec<Vec<u8>>, ()> {
    let mut m = ctx.locks.keys(keys.iter().copied().chain(extra));
    let mut sets: Vec<Option<Vec<Vec<u8>>>> = Vec::with_capacity(keys.len());
    for k in keys {
        match members_of(m.key(k), k) {
            Err(()) => {
                drop(m);
                ctx.r.error(WRONGTYPE);
                return Err(());
            }
            Ok(x) => sets.push(x),
        }
    }
    drop(m);
    let as_set = |v: &Option<Vec<Vec<u8>>>| -> std::collections::HashSet<Vec<u8>> {
        v.iter().flatten().cloned().collect()
    };
    let result: Vec<Vec<u8>> = match op {
        Op::Union => {
            let mut seen = std::collections::HashSet::new();
            sets.iter()
                .flatten()
                .flatten()
                .filter(|x| seen.insert((*x).clone()))
                .cloned()
                .collect()
        }
        Op::Inter => {
            if sets.iter().any(|s| s.is_none()) {
                Vec::new()
            } else {
                let others: Vec<_> = sets[1..].iter().map(as_set).collect();
                sets[0]
                    .iter()
                    .flatten()
                    .filter(|x| others.iter().all(|o| o.contains(*x)))
                    .cloned()
                    .collect()
            }
        }
        Op::Diff => {
            let others: Vec<_> = sets[1..].iter().map(as_set).collect();
            sets[0]
                .iter()
                .flatten()
                .filter(|x| !others.iter().any(|o| o.contains(*x)))
                .cloned()
                .collect()
        }
    };
    Ok(result)
}

fn set_op(ctx: &mut Ctx, a: &Args, op: Op) {
    let keys: Vec<&[u8]> = a.iter().skip(1).collect();
    if let Ok(mut r) = combine(ctx, &keys, op, None) {
        // Redis replies by walking the result set it built. Only integers,
        // few enough for an intset, come out in an order of their own
        // (sorted); a hash table's order is its own anyway.
        if SetObj::fits_intset(&r) {
            r.sort_by_cached_key(|m| SetObj::int_member(m));
        }
        reply_members(ctx, &r)
    }
}

pub fn sinter(ctx: &mut Ctx, a: &Args) {
    set_op(ctx, a, Op::Inter)
}
pub fn sunion(ctx: &mut Ctx, a: &Args) {
    set_op(ctx, a, Op::Union)
}
pub fn sdiff(ctx: &mut Ctx, a: &Args) {
    set_op(ctx, a, Op::Diff)
}

fn store_op(ctx: &mut Ctx, a: &Args, op: Op, event: &'static str) {
    let dst = a.get(1);
    let keys: Vec<&[u8]> = a.iter().skip(2).collect();
    let Ok(r) = combine(ctx, &keys, op, Some(dst)) else {
        return;
    };
    let events = ctx.events();
    let mut s = ctx.locks.key(dst);
    if r.is_empty() {
        if s.delete_freeing(dst, &crate::keyspace::lazyfree::SERVER_DEL) {
            events.emit(ev::GENERIC, "del", dst);
            s.log(&[b"DEL".as_slice(), dst]);
        }
        // Nothing there and nothing to store: no change to propagate.
        drop(s);
        return ctx.r.int(0);
    } else {
        let mut x = SetObj::default();
        for m in &r {
            x.add(m);
        }
        s.set(dst, Value::Set(Box::new(x)), false);
        events.emit(ev::SET, event, dst);
    }
    // The result, not the operation: the inputs may differ on replay order.
    s.log(&[b"DEL".as_slice(), dst]);
    let mut eff: Vec<&[u8]> = vec![b"SADD", dst];
    eff.extend(r.iter().map(|m| m.as_slice()));
    s.log(&eff);
    drop(s);
    ctx.dirty(1);
    ctx.r.int(r.len() as i64);
}

pub fn sinterstore(ctx: &mut Ctx, a: &Args) {
    store_op(ctx, a, Op::Inter, "sinterstore")
}
pub fn sunionstore(ctx: &mut Ctx, a: &Args) {
    store_op(ctx, a, Op::Union, "sunionstore")
}
pub fn sdiffstore(ctx: &mut Ctx, a: &Args) {
    store_op(ctx, a, Op::Diff, "sdiffstore")
}

/// Key positions of SINTERCARD: `numkeys` keys after the numkeys argument.
pub fn sintercard_keys(a: &Args) -> Vec<usize> {
    super::lists::lmpop_keys(a)
}

pub fn sintercard(ctx: &mut Ctx, a: &Args) {
    let n = match parse_i64(a.get(1)) {
        Some(n) if n > 0 => n as usize,
        _ => return ctx.r.error("ERR numkeys should be greater than 0"),
    };
    if n > a.len() - 2 {
        return ctx
            .r
            .error("ERR Number of keys can't be greater than number of args");
    }
    let mut limit = 0usize;
    let mut i = 2 + n;
    while i < a.len() {
        if eq_ic(a.get(i), "LIMIT") && i + 1 < a.len() {
            match parse_i64(a.get(i + 1)) {
                Some(l) if l >= 0 => limit = l as usize,
                // Redis gives this one message for both cases.
                _ => return ctx.r.error("ERR LIMIT can't be negative"),
            }
            i += 2;
        } else {
            return ctx.r.error(SYNTAX);
        }
    }
    let keys: Vec<&[u8]> = (2..2 + n).map(|i| a.get(i)).collect();
    if let Ok(r) = combine(ctx, &keys, Op::Inter, None) {
        let c = if limit > 0 {
            r.len().min(limit)
        } else {
            r.len()
        };
        ctx.r.int(c as i64);
    }
}

pub fn smove(ctx: &mut Ctx, a: &Args) {
    let (src, dst, member) = (a.get(1), a.get(2), a.get(3));
    let events = ctx.events();
    let mut m = ctx.locks.keys([src, dst].into_iter());
    let src_ok = match m.key(src).get(src) {
        None => None,
        Some(Value::Set(_)) => Some(()),
        Some(_) => return ctx.r.error(WRONGTYPE),
    };
    if !matches!(m.key(dst).get(dst), None | Some(Value::Set(_))) {
        return ctx.r.error(WRONGTYPE);
    }
    if src_ok.is_none() {
        return ctx.r.int(0);
    }
    if src == dst {
        let has = matches!(m.key(src).get(src), Some(Value::Set(x)) if x.contains(member));
        return ctx.r.int(has as i64);
    }
    let s = m.key(src);
    let removed = match lookup::<SetObj>(s, src) {
        Typed::Found(x) => x.remove(member),
        _ => false,
    };
    if !removed {
        return ctx.r.int(0);
    }
    let deleted = settle::<SetObj>(s, src);
    removed_events(&events, ev::SET, "srem", src, deleted);
    let d = m.key(dst);
    let added = match lookup::<SetObj>(d, dst) {
        Typed::Found(x) => {
            // A member already there leaves the destination unchanged:
            // no WATCH is broken and no event published (as in Redis).
            let added = x.add(member);
            if added {
                d.touch(dst);
            }
            added
        }
        _ => {
            let mut x = SetObj::default();
            x.add(member);
            d.set(dst, Value::Set(Box::new(x)), false);
            true
        }
    };
    if added {
        events.emit(ev::SET, "sadd", dst);
    }
    d.log(&[b"SMOVE".as_slice(), src, dst, member]);
    drop(m);
    ctx.dirty(1);
    ctx.r.int(1);
}

/// SSCAN: integer sets come back whole (cursor 0); hash sets are walked
/// with the resize-safe cursor.
pub fn sscan(ctx: &mut Ctx, a: &Args) {
    let Some(cursor) = parse_cursor(ctx, a.get(2)) else {
        return;
    };
    let Some(o) = parse_scan_opts(ctx, a, 3, false) else {
        return;
    };
    let key = a.get(1);
    let mut s = ctx.locks.key(key);
    let (items, next) = match s.get(key) {
        None => (Vec::new(), 0),
        Some(Value::Set(x)) => {
            let members = x.members();
            let len = members.len();
            if matches!(**x, SetObj::Ints(..)) {
                (members, 0)
            } else {
                let hashed = members
                    .into_iter()
                    .map(|m| (crate::keyspace::slot::hash(&m), m));
                super::cursor::step(hashed, len, cursor, o.count)
            }
        }
        Some(_) => return ctx.r.error(WRONGTYPE),
    };
    drop(s);
    let kept: Vec<Vec<u8>> = items
        .into_iter()
        .filter(|m| o.pattern.is_none_or(|p| glob_match(p, m, false)))
        .collect();
    ctx.r.array(2);
    let mut b = itoa::Buffer::new();
    ctx.r.bulk(b.format(next).as_bytes());
    ctx.r.array(kept.len());
    for m in kept {
        ctx.r.bulk(&m);
    }
}
