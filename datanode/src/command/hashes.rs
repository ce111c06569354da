//! Hash commands.

use rand::Rng;

use super::keys::{parse_cursor, parse_scan_opts};
use super::typed::{lookup, with_typed, Typed};
use super::{eq_ic, ev, int_arg, Args, Ctx, OVERFLOW, WRONGTYPE};
use crate::glob::glob_match;
use crate::keyspace::{HashObj, SlotRef, Value};
use crate::resp::parse_i64;

pub fn hset(ctx: &mut Ctx, a: &Args) {
    hset_generic(ctx, a, "hset")
}

pub fn hmset(ctx: &mut Ctx, a: &Args) {
    hset_generic(ctx, a, "hmset")
}

fn hset_generic(ctx: &mut Ctx, a: &Args, name: &str) {
    if !a.len().is_multiple_of(2) {
        ctx.r.error(&format!(
            "ERR wrong number of arguments for '{name}' command"
        ));
        return;
    }
    let key = a.get(1);
    let events = ctx.events();
    let mut s = ctx.locks.key(key);
    let mut added = 0;
    match lookup::<HashObj>(&mut s, key) {
        Typed::Wrong => {
            ctx.r.error(WRONGTYPE);
            return;
        }
        Typed::Found(h) => {
            let mut i = 2;
            while i < a.len() {
                added += h.set(a.get(i), a.get(i + 1)) as i64;
                i += 2;
            }
            s.touch(key);
        }
        Typed::Missing => {
            let mut h = HashObj::default();
            let mut i = 2;
            while i < a.len() {
                added += h.set(a.get(i), a.get(i + 1)) as i64;
                i += 2;
            }
            s.set(key, Value::Hash(Box::new(h)), false);
        }
    }
    if s.db.log.is_active() {
        let mut eff: Vec<&[u8]> = vec![b"HSET"];
        eff.extend(a.iter().skip(1));
        s.log(&eff);
    }
    events.emit(ev::HASH, "hset", key);
    drop(s);
    ctx.dirty(((a.len() - 2) / 2) as u64);
    if name == "hmset" {
        ctx.r.ok();
    } else {
        ctx.r.int(added);
    }
}

pub fn hsetnx(ctx: &mut Ctx, a: &Args) {
    let (key, f, v) = (a.get(1), a.get(2), a.get(3));
    let events = ctx.events();
    let mut s = ctx.locks.key(key);
    match lookup::<HashObj>(&mut s, key) {
        Typed::Wrong => return ctx.r.error(WRONGTYPE),
        Typed::Found(h) => {
            if h.get(f).is_some() {
                return ctx.r.int(0);
            }
            h.set(f, v);
            s.touch(key);
        }
        Typed::Missing => {
            let mut h = HashObj::default();
            h.set(f, v);
            s.set(key, Value::Hash(Box::new(h)), false);
        }
    }
    s.log(&[b"HSET".as_slice(), key, f, v]);
    events.emit(ev::HASH, "hset", key);
    drop(s);
    ctx.dirty(1);
    ctx.r.int(1);
}

pub fn hget(ctx: &mut Ctx, a: &Args) {
    with_typed!(
        ctx,
        HashObj,
        a.get(1),
        ctx.r.null(),
        |h| match h.get(a.get(2)) {
            Some(v) => ctx.r.bulk(v),
            None => ctx.r.null(),
        }
    )
}

pub fn hmget(ctx: &mut Ctx, a: &Args) {
    let n = a.len() - 2;
    with_typed!(
        ctx,
        HashObj,
        a.get(1),
        {
            ctx.r.array(n);
            for _ in 0..n {
                ctx.r.null();
            }
        },
        |h| {
            ctx.r.array(n);
            for f in a.iter().skip(2) {
                match h.get(f) {
                    Some(v) => ctx.r.bulk(v),
                    None => ctx.r.null(),
                }
            }
        }
    )
}

pub fn hdel(ctx: &mut Ctx, a: &Args) {
    let key = a.get(1);
    let events = ctx.events();
    let mut s = ctx.locks.key(key);
    let (n, empty) = match lookup::<HashObj>(&mut s, key) {
        Typed::Wrong => return ctx.r.error(WRONGTYPE),
        Typed::Missing => return ctx.r.int(0),
        Typed::Found(h) => {
            let n = a.iter().skip(2).filter(|f| h.remove(f)).count();
            (n, h.is_empty())
        }
    };
    if n > 0 {
        if empty {
            s.remove(key);
        } else {
            s.touch(key);
        }
        if s.db.log.is_active() {
            let mut eff: Vec<&[u8]> = vec![b"HDEL"];
            eff.extend(a.iter().skip(1));
            s.log(&eff);
        }
        events.emit(ev::HASH, "hdel", key);
        if empty {
            events.emit(ev::GENERIC, "del", key);
        }
        drop(s);
        ctx.dirty(n as u64);
    }
    ctx.r.int(n as i64);
}

pub fn hexists(ctx: &mut Ctx, a: &Args) {
    with_typed!(ctx, HashObj, a.get(1), ctx.r.int(0), |h| ctx
        .r
        .int(h.get(a.get(2)).is_some() as i64))
}

pub fn hlen(ctx: &mut Ctx, a: &Args) {
    with_typed!(ctx, HashObj, a.get(1), ctx.r.int(0), |h| ctx
        .r
        .int(h.len() as i64))
}

pub fn hstrlen(ctx: &mut Ctx, a: &Args) {
    with_typed!(ctx, HashObj, a.get(1), ctx.r.int(0), |h| ctx
        .r
        .int(h.get(a.get(2)).map_or(0, |v| v.len()) as i64))
}

pub fn hkeys(ctx: &mut Ctx, a: &Args) {
    with_typed!(ctx, HashObj, a.get(1), ctx.r.array(0), |h| {
        ctx.r.array(h.len());
        let r = &mut ctx.r;
        h.for_each(|k, _| r.bulk(k));
    })
}

pub fn hvals(ctx: &mut Ctx, a: &Args) {
    with_typed!(ctx, HashObj, a.get(1), ctx.r.array(0), |h| {
        ctx.r.array(h.len());
        let r = &mut ctx.r;
        h.for_each(|_, v| r.bulk(v));
    })
}

pub fn hgetall(ctx: &mut Ctx, a: &Args) {
    with_typed!(ctx, HashObj, a.get(1), ctx.r.map(0), |h| {
        ctx.r.map(h.len());
        let r = &mut ctx.r;
        h.for_each(|k, v| {
            r.bulk(k);
            r.bulk(v);
        });
    })
}

pub fn hincrby(ctx: &mut Ctx, a: &Args) {
    let (key, f) = (a.get(1), a.get(2));
    let Some(by) = int_arg(ctx, a.get(3)) else {
        return;
    };
    let events = ctx.events();
    let mut s = ctx.locks.key(key);
    let cur = match lookup::<HashObj>(&mut s, key) {
        Typed::Wrong => return ctx.r.error(WRONGTYPE),
        Typed::Missing => 0,
        Typed::Found(h) => match h.get(f) {
            None => 0,
            Some(v) => match parse_i64(v) {
                Some(n) => n,
                None => return ctx.r.error("ERR hash value is not an integer"),
            },
        },
    };
    let Some(new) = cur.checked_add(by) else {
        return ctx.r.error(OVERFLOW);
    };
    let mut b = itoa::Buffer::new();
    let text = b.format(new).as_bytes();
    store_field(&mut s, key, f, text);
    s.log(&[b"HSET".as_slice(), key, f, text]);
    events.emit(ev::HASH, "hincrby", key);
    drop(s);
    ctx.dirty(1);
    ctx.r.int(new);
}

fn store_field(s: &mut SlotRef, key: &[u8], f: &[u8], v: &[u8]) {
    match lookup::<HashObj>(s, key) {
        Typed::Found(h) => {
            h.set(f, v);
            s.touch(key);
        }
        _ => {
            let mut h = HashObj::default();
            h.set(f, v);
            s.set(key, Value::Hash(Box::new(h)), false);
        }
    }
}

pub fn hincrbyfloat(ctx: &mut Ctx, a: &Args) {
    use crate::util::{incr_float, IncrFloatError};
    let (key, f, by) = (a.get(1), a.get(2), a.get(3));
    // Validate the increment before looking at the key, as Redis does.
    match incr_float(None, by) {
        Err(IncrFloatError::IncrNotFinite) => return ctx.r.error("ERR value is NaN or Infinity"),
        Err(_) => return ctx.r.error(super::NOT_FLOAT),
        Ok(_) => {}
    }
    let events = ctx.events();
    let mut s = ctx.locks.key(key);
    let cur = match lookup::<HashObj>(&mut s, key) {
        Typed::Wrong => return ctx.r.error(WRONGTYPE),
        Typed::Missing => None,
        Typed::Found(h) => h.get(f).map(|v| v.to_vec()),
    };
    let text = match incr_float(cur.as_deref(), by) {
        Ok(t) => t,
        Err(IncrFloatError::CurrentNotFloat) => {
            return ctx.r.error("ERR hash value is not a float")
        }
        Err(_) => return ctx.r.error("ERR increment would produce NaN or Infinity"),
    };
    store_field(&mut s, key, f, &text);
    s.log(&[b"HSET".as_slice(), key, f, &text]);
    events.emit(ev::HASH, "hincrbyfloat", key);
    drop(s);
    ctx.dirty(1);
    ctx.r.bulk(&text);
}

/// HSCAN: small hashes come back whole (cursor 0); large ones are walked
/// with the resize-safe cursor of `cursor`.
pub fn hscan(ctx: &mut Ctx, a: &Args) {
    let Some(cursor) = parse_cursor(ctx, a.get(2)) else {
        return;
    };
    let Some(o) = parse_scan_opts(ctx, a, 3, false) else {
        return;
    };
    let key = a.get(1);
    let mut s = ctx.locks.key(key);
    let (pairs, next) = match s.get(key) {
        None => (Vec::new(), 0),
        Some(Value::Hash(h)) => {
            let all = h.pairs();
            let len = all.len();
            let (items, next) = if matches!(**h, HashObj::Small(_)) {
                (all, 0)
            } else {
                let hashed = all
                    .into_iter()
                    .map(|(f, v)| (crate::keyspace::slot::hash(f), (f, v)));
                super::cursor::step(hashed, len, cursor, o.count)
            };
            let kept: Vec<(Vec<u8>, Vec<u8>)> = items
                .into_iter()
                .filter(|(f, _)| o.pattern.is_none_or(|p| glob_match(p, f, false)))
                .map(|(f, v)| (f.to_vec(), v.to_vec()))
                .collect();
            (kept, next)
        }
        Some(_) => return ctx.r.error(WRONGTYPE),
    };
    drop(s);
    ctx.r.array(2);
    let mut b = itoa::Buffer::new();
    ctx.r.bulk(b.format(next).as_bytes());
    ctx.r.array(pairs.len() * 2);
    for (k, v) in pairs {
        ctx.r.bulk(&k);
        ctx.r.bulk(&v);
    }
}

pub fn hrandfield(ctx: &mut Ctx, a: &Args) {
    let key = a.get(1);
    let mut count: Option<i64> = None;
    let mut withvalues = false;
    if a.len() >= 3 {
        let Some(c) = int_arg(ctx, a.get(2)) else {
            return;
        };
        if c == i64::MIN {
            return ctx.r.error(super::COUNT_RANGE);
        }
        count = Some(c);
        if a.len() == 4 && eq_ic(a.get(3), "WITHVALUES") {
            withvalues = true;
        } else if a.len() >= 4 {
            return ctx.r.error(super::SYNTAX);
        }
        if withvalues && !(-(i64::MAX / 2)..=i64::MAX / 2).contains(&c) {
            return ctx.r.error("ERR value is out of range");
        }
    }
    let mut s = ctx.locks.key(key);
    let h = match s.get(key) {
        None => {
            drop(s);
            return match count {
                None => ctx.r.null(),
                Some(_) => ctx.r.array(0),
            };
        }
        Some(Value::Hash(h)) => h,
        Some(_) => return ctx.r.error(WRONGTYPE),
    };
    let mut rng = rand::rng();
    let len = h.len();
    let Some(c) = count else {
        let (k, _) = h.nth(rng.random_range(0..len)).unwrap_or((b"", b""));
        return ctx.r.bulk(k);
    };
    let pairs = h.pairs();
    // A negative count repeats picks: they are drawn while writing, so the
    // client's number never sizes an allocation up front.
    let n = if c >= 0 {
        (c as usize).min(len)
    } else {
        c.unsigned_abs() as usize
    };
    let distinct = if c >= 0 && n < len {
        Some(rand::seq::index::sample(&mut rng, len, n).into_vec())
    } else {
        None
    };
    let mut pick = |j: usize| match (&distinct, c >= 0) {
        (Some(d), _) => d[j],
        (None, true) => j,
        (None, false) => rng.random_range(0..len),
    };
    let resp3 = ctx.r.is_resp3();
    if withvalues && resp3 {
        ctx.r.array(n);
    } else {
        ctx.r.array(n * if withvalues { 2 } else { 1 });
    }
    for j in 0..n {
        if j % 1024 == 1023 && super::reply_over_limit(ctx.client, &ctx.r) {
            break;
        }
        let i = pick(j);
        if withvalues && resp3 {
            ctx.r.array(2);
        }
        ctx.r.bulk(pairs[i].0);
        if withvalues {
            ctx.r.bulk(pairs[i].1);
        }
    }
}
