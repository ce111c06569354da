//! HyperLogLog commands: PFADD, PFCOUNT, PFMERGE, PFDEBUG, PFSELFTEST,
//! on string values in Redis's HLL layout (`keyspace::hll`).

use std::sync::atomic::Ordering;

use super::{eq_ic, ev, Args, Ctx, WRONGTYPE};
use crate::keyspace::hll::{self, REGISTERS};
use crate::keyspace::{SBytes, Value};

const NOT_HLL: &str = "WRONGTYPE Key is not a valid HyperLogLog string value.";
const CORRUPT: &str = "INVALIDOBJ Corrupted HLL object detected";

fn sparse_max(ctx: &Ctx) -> usize {
    ctx.srv.hot.hll_sparse_max_bytes.load(Ordering::Relaxed) as usize
}

/// Redis's check of a value used as an HLL: the error to reply, if any.
fn check(v: &Value) -> Result<(), &'static str> {
    match v {
        Value::Str(s) if hll::is_valid(s) => Ok(()),
        Value::Raw(r) if hll::is_valid(r) => Ok(()),
        // An integer-encoded string is never one.
        Value::Int(_) | Value::Str(_) | Value::Raw(_) => Err(NOT_HLL),
        _ => Err(WRONGTYPE),
    }
}

/// The HLL bytes of a value, checked and made growable.
fn hll_mut(v: &mut Value) -> Result<&mut Vec<u8>, &'static str> {
    check(v)?;
    v.make_raw().ok_or(WRONGTYPE)
}

/// The HLL bytes of a value, checked and writable where they are, at their
/// length: enough for a dense value's registers and any cached count.
fn hll_in_place(v: &mut Value) -> Result<&mut [u8], &'static str> {
    check(v)?;
    v.bytes_mut().ok_or(WRONGTYPE)
}

/// A value that became dense never changes size again: it is kept as an
/// exact-size string, without the growable string's second allocation.
fn settle(v: &mut Value) {
    if let Value::Raw(r) = v {
        if !hll::is_sparse(r) {
            *v = Value::Str(SBytes::from_vec(std::mem::take(&mut **r)));
        }
    }
}

/// Adds PFADD's elements to a checked value.
fn add_to(v: &mut Value, a: &Args, max: usize, updated: &mut u64) -> Result<(), &'static str> {
    if let Some(regs) = v.bytes_mut().filter(|b| !hll::is_sparse(b)) {
        for ele in a.iter().skip(2) {
            *updated += hll::add_dense(regs, ele) as u64;
        }
        if *updated > 0 {
            hll::invalidate(regs);
        }
        return Ok(());
    }
    let buf = v.make_raw().ok_or(WRONGTYPE)?;
    let r = add_all(buf, a, max, updated);
    settle(v);
    r
}

fn bytes(v: &Value) -> &[u8] {
    match v {
        Value::Str(s) => s,
        Value::Raw(r) => r,
        _ => &[],
    }
}

pub fn pfadd(ctx: &mut Ctx, a: &Args) {
    let key = a.get(1);
    let max = sparse_max(ctx);
    let events = ctx.events();
    let mut s = ctx.locks.key(key);
    let mut updated = 0u64;
    let result = match s.get_mut(key) {
        Some(v) => check(v).and_then(|()| add_to(v, a, max, &mut updated)),
        None => {
            let mut v = Value::Raw(Box::new(hll::new()));
            updated = 1;
            let r = add_to(&mut v, a, max, &mut updated);
            if r.is_ok() {
                s.set(key, v, false);
            }
            r
        }
    };
    if let Err(e) = result {
        // As Redis: registers raised before the corrupt part stay raised.
        drop(s);
        return ctx.r.error(e);
    }
    if updated > 0 {
        s.touch(key);
        s.log(&a.iter().collect::<Vec<_>>());
        events.emit(ev::STRING, "pfadd", key);
        drop(s);
        ctx.dirty(updated);
    } else {
        drop(s);
    }
    ctx.r.int((updated > 0) as i64);
}

fn add_all(v: &mut Vec<u8>, a: &Args, max: usize, updated: &mut u64) -> Result<(), &'static str> {
    for ele in a.iter().skip(2) {
        match hll::add(v, ele, max) {
            Ok(true) => *updated += 1,
            Ok(false) => {}
            Err(_) => return Err(CORRUPT),
        }
    }
    if *updated > 0 {
        hll::invalidate(v);
    }
    Ok(())
}

pub fn pfcount(ctx: &mut Ctx, a: &Args) {
    if a.len() > 2 {
        return pfcount_union(ctx, a);
    }
    let key = a.get(1);
    let mut s = ctx.locks.key(key);
    let Some(v) = s.get_mut(key) else {
        drop(s);
        return ctx.r.int(0);
    };
    let buf = match hll_in_place(v) {
        Ok(buf) => buf,
        Err(e) => {
            drop(s);
            return ctx.r.error(e);
        }
    };
    if let Some(card) = hll::cached(buf) {
        drop(s);
        return ctx.r.int(card as i64);
    }
    let Ok(card) = hll::count(buf) else {
        drop(s);
        return ctx.r.error(CORRUPT);
    };
    // Caching the count changes the string, so (as Redis) it is a change
    // replicas and the AOF see.
    hll::store_cache(buf, card);
    s.touch(key);
    s.log(&a.iter().collect::<Vec<_>>());
    drop(s);
    ctx.dirty(1);
    ctx.r.int(card as i64);
}

fn pfcount_union(ctx: &mut Ctx, a: &Args) {
    let mut max = Box::new([0u8; REGISTERS]);
    let keys: Vec<&[u8]> = a.iter().skip(1).collect();
    let mut m = ctx.locks.keys(keys.iter().copied());
    for k in &keys {
        let Some(v) = m.key(k).get(k) else {
            continue;
        };
        let err = match check(v) {
            Err(e) => Some(e),
            Ok(()) => hll::merge_into(&mut max, bytes(v)).err().map(|_| CORRUPT),
        };
        if let Some(e) = err {
            drop(m);
            return ctx.r.error(e);
        }
    }
    drop(m);
    ctx.r.int(hll::count_registers(&max) as i64);
}

pub fn pfmerge(ctx: &mut Ctx, a: &Args) {
    let dst = a.get(1);
    let sparse = sparse_max(ctx);
    let keys: Vec<&[u8]> = a.iter().skip(1).collect();
    let mut max = Box::new([0u8; REGISTERS]);
    let mut dense = false;
    let events = ctx.events();
    // Sources and destination under one set of locks, so replaying the
    // command (as Redis propagates it) rebuilds the same value.
    let mut m = ctx.locks.keys(keys.iter().copied());
    for k in &keys {
        let Some(v) = m.key(k).get(k) else {
            continue;
        };
        let err = match check(v) {
            Err(e) => Some(e),
            Ok(()) => {
                dense |= !hll::is_sparse(bytes(v));
                hll::merge_into(&mut max, bytes(v)).err().map(|_| CORRUPT)
            }
        };
        if let Some(e) = err {
            drop(m);
            return ctx.r.error(e);
        }
    }
    let s = m.key(dst);
    let created = s.get_mut(dst).is_none();
    if created {
        s.set(dst, Value::Raw(Box::new(hll::new())), false);
    }
    let Some(Ok(buf)) = s.get_mut(dst).map(hll_mut) else {
        drop(m);
        return ctx.r.error(CORRUPT);
    };
    if dense && hll::to_dense(buf).is_err() {
        drop(m);
        return ctx.r.error(CORRUPT);
    }
    for (i, &r) in max.iter().enumerate() {
        if r != 0 {
            // Redis ignores a corrupt destination here: it was read above.
            let _ = hll::set(buf, i, r, sparse);
        }
    }
    hll::invalidate(buf);
    if let Some(v) = s.get_mut(dst) {
        settle(v);
    }
    s.touch(dst);
    s.log(&a.iter().collect::<Vec<_>>());
    events.emit(ev::STRING, "pfadd", dst);
    drop(m);
    ctx.dirty(1);
    ctx.r.ok();
}

pub fn pfdebug(ctx: &mut Ctx, a: &Args) {
    let sub = a.get(1);
    let key = a.get(2);
    let mut s = ctx.locks.key(key);
    let Some(v) = s.get_mut(key) else {
        drop(s);
        return ctx.r.error("ERR The specified key does not exist");
    };
    let buf = match hll_mut(v) {
        Ok(buf) => buf,
        Err(e) => {
            drop(s);
            return ctx.r.error(e);
        }
    };
    let arity = |ctx: &mut Ctx| {
        ctx.r.error(&format!(
            "ERR Wrong number of arguments for the '{}' subcommand",
            String::from_utf8_lossy(sub)
        ))
    };
    if eq_ic(sub, "GETREG") || eq_ic(sub, "TODENSE") {
        if a.len() != 3 {
            drop(s);
            return arity(ctx);
        }
        let converted = hll::is_sparse(buf);
        if converted {
            if hll::to_dense(buf).is_err() {
                drop(s);
                return ctx.r.error(CORRUPT);
            }
            settle(v);
            // The encoding change reaches replicas and the AOF.
            s.touch(key);
            s.log(&a.iter().collect::<Vec<_>>());
        }
        let regs: Option<Vec<u8>> = if eq_ic(sub, "GETREG") {
            s.get(key).map(|v| hll::registers(bytes(v)).collect())
        } else {
            None
        };
        drop(s);
        if converted {
            ctx.dirty(1);
        }
        match regs {
            Some(regs) => {
                ctx.r.array(regs.len());
                for r in regs {
                    ctx.r.int(r as i64);
                }
            }
            None => ctx.r.int(converted as i64),
        }
    } else if eq_ic(sub, "DECODE") {
        if a.len() != 3 {
            drop(s);
            return arity(ctx);
        }
        if !hll::is_sparse(buf) {
            drop(s);
            return ctx.r.error("ERR HLL encoding is not sparse");
        }
        let text = hll::decode(buf);
        drop(s);
        ctx.r.bulk(text.as_bytes());
    } else if eq_ic(sub, "ENCODING") {
        if a.len() != 3 {
            drop(s);
            return arity(ctx);
        }
        let enc = if hll::is_sparse(buf) {
            "sparse"
        } else {
            "dense"
        };
        drop(s);
        ctx.r.simple(enc);
    } else {
        drop(s);
        ctx.r.error(&format!(
            "ERR Unknown PFDEBUG subcommand '{}'",
            String::from_utf8_lossy(sub)
        ));
    }
}

pub fn pfselftest(ctx: &mut Ctx, _a: &Args) {
    let max = sparse_max(ctx);
    let mut rng = rand::rng();
    let mut next = || rand::Rng::random::<u64>(&mut rng);
    // Ten million additions: off the worker where the runtime allows, so
    // the connections sharing it go on.
    let r = crate::server::off_worker(|| hll::self_test(max, &mut next));
    match r {
        Ok(()) => ctx.r.ok(),
        Err(e) => ctx.r.error(&e),
    }
}
