//! String commands.

use super::{eq_ic, ev, int_arg, Args, Ctx, NOT_FLOAT, NOT_INT, OVERFLOW, SYNTAX, WRONGTYPE};
use crate::keyspace::Value;
use crate::resp::parse_i64;
use crate::resp::reply::Reply;

/// Largest string SETRANGE/APPEND may build (Redis: proto-max-bulk-len).
fn max_string(ctx: &Ctx) -> usize {
    ctx.srv
        .hot
        .proto_max_bulk_len
        .load(std::sync::atomic::Ordering::Relaxed) as usize
}

/// Replies with the string at `key`, nil, or WRONGTYPE. Returns false on WRONGTYPE.
fn reply_string(ctx_r: &mut crate::resp::Reply, v: Option<&Value>) -> bool {
    match v {
        None => ctx_r.null(),
        Some(Value::Int(n)) => ctx_r.bulk_int(*n),
        Some(Value::Str(s)) => ctx_r.bulk(s),
        Some(Value::Raw(s)) => ctx_r.bulk(s),
        Some(_) => {
            ctx_r.error(WRONGTYPE);
            return false;
        }
    }
    true
}

pub fn get(ctx: &mut Ctx, a: &Args) {
    let key = a.get(1);
    let mut s = ctx.locks.key(key);
    reply_string(&mut ctx.r, s.get(key));
}

#[derive(Default)]
struct SetOpts {
    nx: bool,
    xx: bool,
    get: bool,
    keepttl: bool,
    persist: bool,
    /// Absolute expiry in unix ms.
    expire_at: Option<i64>,
}

#[derive(PartialEq)]
enum Flavor {
    Set,
    GetEx,
}

/// Parses SET/GETEX options starting at `from`, as Redis does: the same
/// expiry option may repeat (the last one counts), two different ones may
/// not. Returns the options and the expiry still to check: (kind, index of
/// its argument). Replies on error.
fn parse_opts(
    ctx: &mut Ctx,
    a: &Args,
    from: usize,
    flavor: Flavor,
) -> Option<(SetOpts, Option<(u8, usize)>)> {
    let mut o = SetOpts::default();
    let mut unit: Option<(u8, usize)> = None;
    let mut i = from;
    while i < a.len() {
        let t = a.get(i);
        let has_next = i + 1 < a.len();
        // b'e' EX, b'p' PX, b'E' EXAT, b'P' PXAT.
        let kind = if eq_ic(t, "EX") {
            Some(b'e')
        } else if eq_ic(t, "PX") {
            Some(b'p')
        } else if eq_ic(t, "EXAT") {
            Some(b'E')
        } else if eq_ic(t, "PXAT") {
            Some(b'P')
        } else {
            None
        };
        if flavor == Flavor::Set && eq_ic(t, "NX") && !o.xx {
            o.nx = true;
        } else if flavor == Flavor::Set && eq_ic(t, "XX") && !o.nx {
            o.xx = true;
        } else if flavor == Flavor::Set && eq_ic(t, "GET") {
            o.get = true;
        } else if flavor == Flavor::Set && eq_ic(t, "KEEPTTL") && unit.is_none() {
            o.keepttl = true;
        } else if flavor == Flavor::GetEx && eq_ic(t, "PERSIST") && unit.is_none() {
            o.persist = true;
        } else if let Some(k) = kind
            .filter(|&k| has_next && !o.keepttl && !o.persist && unit.is_none_or(|(u, _)| u == k))
        {
            unit = Some((k, i + 1));
            i += 1;
        } else {
            ctx.r.error(SYNTAX);
            return None;
        }
        i += 1;
    }
    Some((o, unit))
}

/// Converts an EX/PX/EXAT/PXAT argument to absolute ms, with Redis's errors.
/// `kind`: b'e' EX, b'p' PX, b'E' EXAT, b'P' PXAT.
fn expire_at(ctx: &mut Ctx, kind: u8, v: &[u8], cmd: &str) -> Option<i64> {
    let now = ctx.locks.now;
    expire_at_from(&mut ctx.r, now, kind, v, cmd)
}

fn expire_at_from(r: &mut Reply, now: i64, kind: u8, v: &[u8], cmd: &str) -> Option<i64> {
    let Some(n) = parse_i64(v) else {
        r.error(NOT_INT);
        return None;
    };
    let seconds = kind == b'e' || kind == b'E';
    let invalid = |r: &mut Reply| {
        r.error(&format!("ERR invalid expire time in '{cmd}' command"));
        None
    };
    if n <= 0 || (seconds && n > i64::MAX / 1000) {
        return invalid(r);
    }
    let mut ms = if seconds { n * 1000 } else { n };
    if kind == b'e' || kind == b'p' {
        match ms.checked_add(now) {
            Some(v) => ms = v,
            None => return invalid(r),
        }
    }
    Some(ms)
}

fn bytes_of(v: &Value) -> Vec<u8> {
    let mut b = itoa::Buffer::new();
    v.str_bytes(&mut b).map(|s| s.to_vec()).unwrap_or_default()
}

pub fn set(ctx: &mut Ctx, a: &Args) {
    let Some((mut o, unit)) = parse_opts(ctx, a, 3, Flavor::Set) else {
        return;
    };
    if let Some((kind, at)) = unit {
        let Some(ms) = expire_at(ctx, kind, a.get(at), "set") else {
            return;
        };
        o.expire_at = Some(ms);
    }
    let key = a.get(1);
    let val = a.get(2);
    let events = ctx.events();
    let mut s = ctx.locks.key(key);
    // A plain SET needs nothing from the old value: skip the lookup.
    if o.get || o.nx || o.xx {
        let old = s.get(key);
        let found = old.is_some();
        if o.get && !reply_string(&mut ctx.r, old) {
            return;
        }
        if (o.nx && found) || (o.xx && !found) {
            if !o.get {
                ctx.r.null();
            }
            return;
        }
    }
    s.set(key, Value::string(val), o.keepttl);
    if let Some(at) = o.expire_at {
        s.set_expire(key, at);
    }
    if s.db.log.is_active() {
        let mut b = itoa::Buffer::new();
        match o.expire_at {
            Some(at) => s.log(&[
                b"SET".as_slice(),
                key,
                val,
                b"PXAT",
                b.format(at).as_bytes(),
            ]),
            None if o.keepttl => s.log(&[b"SET".as_slice(), key, val, b"KEEPTTL"]),
            None => s.log(&[b"SET".as_slice(), key, val]),
        }
    }
    events.emit(ev::STRING, "set", key);
    if o.expire_at.is_some() {
        events.emit(ev::GENERIC, "expire", key);
    }
    drop(s);
    ctx.dirty(1);
    if !o.get {
        ctx.r.ok();
    }
}

pub fn setnx(ctx: &mut Ctx, a: &Args) {
    let (key, val) = (a.get(1), a.get(2));
    let events = ctx.events();
    let mut s = ctx.locks.key(key);
    if s.exists(key) {
        ctx.r.int(0);
        return;
    }
    s.set(key, Value::string(val), false);
    s.log(&[b"SET".as_slice(), key, val]);
    events.emit(ev::STRING, "set", key);
    drop(s);
    ctx.dirty(1);
    ctx.r.int(1);
}

fn setex_generic(ctx: &mut Ctx, a: &Args, kind: u8, name: &str) {
    let (key, val) = (a.get(1), a.get(3));
    let Some(at) = expire_at(ctx, kind, a.get(2), name) else {
        return;
    };
    let events = ctx.events();
    let mut s = ctx.locks.key(key);
    s.set(key, Value::string(val), false);
    s.set_expire(key, at);
    let mut b = itoa::Buffer::new();
    s.log(&[
        b"SET".as_slice(),
        key,
        val,
        b"PXAT",
        b.format(at).as_bytes(),
    ]);
    events.emit(ev::STRING, "set", key);
    events.emit(ev::GENERIC, "expire", key);
    drop(s);
    ctx.dirty(1);
    ctx.r.ok();
}

pub fn setex(ctx: &mut Ctx, a: &Args) {
    setex_generic(ctx, a, b'e', "setex")
}

pub fn psetex(ctx: &mut Ctx, a: &Args) {
    setex_generic(ctx, a, b'p', "psetex")
}

pub fn getset(ctx: &mut Ctx, a: &Args) {
    let (key, val) = (a.get(1), a.get(2));
    let events = ctx.events();
    let mut s = ctx.locks.key(key);
    if !reply_string(&mut ctx.r, s.get(key)) {
        return;
    }
    s.set(key, Value::string(val), false);
    s.log(&[b"SET".as_slice(), key, val]);
    events.emit(ev::STRING, "set", key);
    drop(s);
    ctx.dirty(1);
}

pub fn getdel(ctx: &mut Ctx, a: &Args) {
    let key = a.get(1);
    let events = ctx.events();
    let mut s = ctx.locks.key(key);
    if !reply_string(&mut ctx.r, s.get(key)) {
        return;
    }
    if s.remove(key).is_some() {
        s.log(&[b"DEL".as_slice(), key]);
        events.emit(ev::GENERIC, "del", key);
        drop(s);
        ctx.dirty(1);
    }
}

pub fn getex(ctx: &mut Ctx, a: &Args) {
    let Some((mut o, unit)) = parse_opts(ctx, a, 2, Flavor::GetEx) else {
        return;
    };
    let key = a.get(1);
    let events = ctx.events();
    let mut s = ctx.locks.key(key);
    let now = s.now;
    // One lookup (it counts a keyspace hit or miss); the key and its type
    // come before the expiry's value, as in Redis.
    let v = s.get(key);
    match v {
        None => return ctx.r.null(),
        Some(Value::Int(_) | Value::Str(_) | Value::Raw(_)) => {}
        Some(_) => return ctx.r.error(WRONGTYPE),
    }
    if let Some((kind, at)) = unit {
        let Some(ms) = expire_at_from(&mut ctx.r, now, kind, a.get(at), "getex") else {
            return;
        };
        o.expire_at = Some(ms);
    }
    if !reply_string(&mut ctx.r, v) {
        return;
    }
    let mut b = itoa::Buffer::new();
    if let Some(at) = o.expire_at {
        if at <= s.now && !crate::keyspace::loading() {
            s.delete_freeing(key, &crate::keyspace::lazyfree::EXPIRE);
            s.log(&[b"DEL".as_slice(), key]);
            events.emit(ev::GENERIC, "del", key);
        } else {
            s.set_expire(key, at);
            s.log(&[b"PEXPIREAT".as_slice(), key, b.format(at).as_bytes()]);
            events.emit(ev::GENERIC, "expire", key);
        }
        drop(s);
        ctx.dirty(1);
    } else if o.persist && s.persist(key) {
        s.log(&[b"PERSIST".as_slice(), key]);
        events.emit(ev::GENERIC, "persist", key);
        drop(s);
        ctx.dirty(1);
    }
}

pub fn mget(ctx: &mut Ctx, a: &Args) {
    let n = a.len() - 1;
    let mut m = ctx.locks.keys(a.iter().skip(1));
    ctx.r.array(n);
    for key in a.iter().skip(1) {
        let s = m.key(key);
        match s.get(key) {
            Some(Value::Int(n)) => ctx.r.bulk_int(*n),
            Some(Value::Str(v)) => ctx.r.bulk(v),
            Some(Value::Raw(v)) => ctx.r.bulk(v),
            _ => ctx.r.null(),
        }
    }
}

fn mset_generic(ctx: &mut Ctx, a: &Args, nx: bool) {
    if a.len().is_multiple_of(2) {
        let name = if nx { "msetnx" } else { "mset" };
        ctx.r.error(&format!(
            "ERR wrong number of arguments for '{name}' command"
        ));
        return;
    }
    let keys = || a.iter().skip(1).step_by(2);
    let events = ctx.events();
    let mut m = ctx.locks.keys(keys());
    if nx && keys().any(|k| m.key(k).exists(k)) {
        ctx.r.int(0);
        return;
    }
    let mut i = 1;
    while i < a.len() {
        let (k, v) = (a.get(i), a.get(i + 1));
        let s = m.key(k);
        s.set(k, Value::string(v), false);
        events.emit(ev::STRING, "set", k);
        i += 2;
    }
    if ctx.srv.log.is_active() {
        let all: Vec<&[u8]> = std::iter::once(b"MSET".as_slice())
            .chain(a.iter().skip(1))
            .collect();
        m.key(a.get(1)).log(&all);
    }
    drop(m);
    ctx.dirty(((a.len() - 1) / 2) as u64);
    if nx {
        ctx.r.int(1);
    } else {
        ctx.r.ok();
    }
}

pub fn mset(ctx: &mut Ctx, a: &Args) {
    mset_generic(ctx, a, false)
}

pub fn msetnx(ctx: &mut Ctx, a: &Args) {
    mset_generic(ctx, a, true)
}

fn check_size(ctx: &mut Ctx, total: usize) -> bool {
    if total > max_string(ctx) {
        ctx.r
            .error("ERR string exceeds maximum allowed size (proto-max-bulk-len)");
        return false;
    }
    true
}

pub fn append(ctx: &mut Ctx, a: &Args) {
    let (key, val) = (a.get(1), a.get(2));
    let max = max_string(ctx);
    let events = ctx.events();
    let mut s = ctx.locks.key(key);
    let len = match s.get_mut(key) {
        None => {
            s.set(key, Value::string(val), true);
            val.len()
        }
        Some(v) => {
            let Some(cur) = v.str_len() else {
                ctx.r.error(WRONGTYPE);
                return;
            };
            if cur + val.len() > max {
                drop(s);
                check_size(ctx, usize::MAX);
                return;
            }
            let Some(buf) = v.make_raw() else {
                return;
            };
            buf.extend_from_slice(val);
            let n = buf.len();
            s.touch(key);
            n
        }
    };
    s.log(&[b"APPEND".as_slice(), key, val]);
    events.emit(ev::STRING, "append", key);
    drop(s);
    ctx.dirty(1);
    ctx.r.int(len as i64);
}

pub fn strlen(ctx: &mut Ctx, a: &Args) {
    let key = a.get(1);
    let mut s = ctx.locks.key(key);
    match s.get(key) {
        None => ctx.r.int(0),
        Some(v) => match v.str_len() {
            Some(n) => ctx.r.int(n as i64),
            None => ctx.r.error(WRONGTYPE),
        },
    }
}

/// The integer value of a string, if it is one.
fn as_int(v: &Value) -> Option<i64> {
    match v {
        Value::Int(n) => Some(*n),
        Value::Str(s) => parse_i64(s),
        Value::Raw(s) => parse_i64(s),
        _ => None,
    }
}

fn incr_generic(ctx: &mut Ctx, key: &[u8], by: i64) {
    let events = ctx.events();
    let mut s = ctx.locks.key(key);
    // One lookup: the value is checked and replaced where it is.
    let updated = match s.get_mut(key) {
        None => None,
        Some(v) => {
            if v.str_len().is_none() {
                ctx.r.error(WRONGTYPE);
                return;
            }
            let Some(cur) = as_int(v) else {
                ctx.r.error(NOT_INT);
                return;
            };
            let Some(new) = cur.checked_add(by) else {
                ctx.r.error(OVERFLOW);
                return;
            };
            *v = Value::Int(new);
            Some(new)
        }
    };
    let new = match updated {
        Some(n) => {
            s.touch(key);
            n
        }
        None => {
            s.set(key, Value::Int(by), false);
            by
        }
    };
    let mut b = itoa::Buffer::new();
    s.log(&[b"SET".as_slice(), key, b.format(new).as_bytes(), b"KEEPTTL"]);
    events.emit(ev::STRING, "incrby", key);
    drop(s);
    ctx.dirty(1);
    ctx.r.int(new);
}

pub fn incr(ctx: &mut Ctx, a: &Args) {
    incr_generic(ctx, a.get(1), 1)
}

pub fn decr(ctx: &mut Ctx, a: &Args) {
    incr_generic(ctx, a.get(1), -1)
}

pub fn incrby(ctx: &mut Ctx, a: &Args) {
    if let Some(by) = int_arg(ctx, a.get(2)) {
        incr_generic(ctx, a.get(1), by)
    }
}

pub fn decrby(ctx: &mut Ctx, a: &Args) {
    if let Some(by) = int_arg(ctx, a.get(2)) {
        if by == i64::MIN {
            ctx.r.error("ERR decrement would overflow");
            return;
        }
        incr_generic(ctx, a.get(1), -by)
    }
}

pub fn incrbyfloat(ctx: &mut Ctx, a: &Args) {
    use crate::util::{incr_float, IncrFloatError};
    let key = a.get(1);
    let events = ctx.events();
    let mut s = ctx.locks.key(key);
    let cur = match s.get(key) {
        None => None,
        Some(v) if v.str_len().is_none() => return ctx.r.error(WRONGTYPE),
        Some(v) => Some(bytes_of(v)),
    };
    let text = match incr_float(cur.as_deref(), a.get(2)) {
        Ok(t) => t,
        Err(IncrFloatError::CurrentNotFloat | IncrFloatError::IncrNotFloat) => {
            return ctx.r.error(NOT_FLOAT)
        }
        Err(_) => return ctx.r.error("ERR increment would produce NaN or Infinity"),
    };
    // A string, even when the text reads as an integer: Redis keeps
    // INCRBYFLOAT's result as it printed it (OBJECT ENCODING embstr).
    s.set(
        key,
        Value::Str(crate::keyspace::sbytes::SBytes::new(&text)),
        true,
    );
    s.log(&[b"SET".as_slice(), key, &text, b"KEEPTTL"]);
    events.emit(ev::STRING, "incrbyfloat", key);
    drop(s);
    ctx.dirty(1);
    ctx.r.bulk(&text);
}

pub fn getrange(ctx: &mut Ctx, a: &Args) {
    let key = a.get(1);
    let (Some(mut start), Some(mut end)) = (parse_i64(a.get(2)), parse_i64(a.get(3))) else {
        ctx.r.error(NOT_INT);
        return;
    };
    let mut s = ctx.locks.key(key);
    let mut b = itoa::Buffer::new();
    let v = match s.get(key) {
        None => {
            ctx.r.bulk(b"");
            return;
        }
        Some(v) => v,
    };
    let Some(bytes) = v.str_bytes(&mut b) else {
        ctx.r.error(WRONGTYPE);
        return;
    };
    let len = bytes.len() as i64;
    if start < 0 && end < 0 && start > end {
        ctx.r.bulk(b"");
        return;
    }
    if start < 0 {
        start += len;
    }
    if end < 0 {
        end += len;
    }
    start = start.max(0);
    end = end.max(0);
    if end >= len {
        end = len - 1;
    }
    if start > end || len == 0 {
        ctx.r.bulk(b"");
        return;
    }
    ctx.r.bulk(&bytes[start as usize..=end as usize]);
}

pub fn setrange(ctx: &mut Ctx, a: &Args) {
    let (key, val) = (a.get(1), a.get(3));
    let Some(offset) = int_arg(ctx, a.get(2)) else {
        return;
    };
    if offset < 0 {
        ctx.r.error("ERR offset is out of range");
        return;
    }
    let offset = offset as usize;
    let max = max_string(ctx);
    let events = ctx.events();
    let mut s = ctx.locks.key(key);
    let newlen = match s.get_mut(key) {
        None => {
            if val.is_empty() {
                ctx.r.int(0);
                return;
            }
            if offset.saturating_add(val.len()) > max {
                drop(s);
                check_size(ctx, usize::MAX);
                return;
            }
            let mut buf = vec![0u8; offset + val.len()];
            buf[offset..].copy_from_slice(val);
            let n = buf.len();
            s.set(key, Value::Raw(Box::new(buf)), false);
            n
        }
        Some(v) => {
            let Some(cur) = v.str_len() else {
                ctx.r.error(WRONGTYPE);
                return;
            };
            if val.is_empty() {
                ctx.r.int(cur as i64);
                return;
            }
            if offset.saturating_add(val.len()) > max {
                drop(s);
                check_size(ctx, usize::MAX);
                return;
            }
            let Some(buf) = v.make_raw() else {
                return;
            };
            if buf.len() < offset + val.len() {
                buf.resize(offset + val.len(), 0);
            }
            buf[offset..offset + val.len()].copy_from_slice(val);
            let n = buf.len();
            s.touch(key);
            n
        }
    };
    s.log(&[b"SETRANGE".as_slice(), key, a.get(2), val]);
    events.emit(ev::STRING, "setrange", key);
    drop(s);
    ctx.dirty(1);
    ctx.r.int(newlen as i64);
}

/// Used by other families (COPY) to duplicate a value.
pub fn clone_value(v: &Value) -> Value {
    match v {
        Value::Int(n) => Value::Int(*n),
        Value::Str(s) => Value::Str(s.clone()),
        Value::Raw(r) => Value::Raw(r.clone()),
        Value::List(l) => Value::List(l.clone()),
        Value::ZSet(z) => Value::ZSet(Box::new(z.clone_obj())),
        Value::Set(s) => Value::Set(Box::new(match &**s {
            crate::keyspace::SetObj::Ints(v, w) => crate::keyspace::SetObj::Ints(v.clone(), *w),
            crate::keyspace::SetObj::Hash(h) => crate::keyspace::SetObj::Hash(h.clone()),
        })),
        Value::Hash(h) => Value::Hash(Box::new(match &**h {
            crate::keyspace::HashObj::Small(v) => crate::keyspace::HashObj::Small(v.clone()),
            crate::keyspace::HashObj::Large(m) => crate::keyspace::HashObj::Large(m.clone()),
        })),
        Value::Stream(st) => Value::Stream(st.clone()),
    }
}

/// A string value's bytes for LCS: missing keys are empty; Err for
/// another type.
fn lcs_input(s: &mut crate::keyspace::SlotRef, key: &[u8]) -> Result<Vec<u8>, ()> {
    let mut b = itoa::Buffer::new();
    match s.get(key) {
        None => Ok(Vec::new()),
        Some(v) => v.str_bytes(&mut b).map(|x| x.to_vec()).ok_or(()),
    }
}

/// One run of matching bytes: `a` and `b` are inclusive ranges.
struct LcsMatch {
    a: (u32, u32),
    b: (u32, u32),
    len: u32,
}

/// LCS key1 key2 [LEN] [IDX] [MINMATCHLEN n] [WITHMATCHLEN]: the longest
/// common subsequence of two strings, by the classic dynamic-programming
/// table, as Redis computes it (so ties resolve to the same answer).
pub fn lcs(ctx: &mut Ctx, a: &Args) {
    let (k1, k2) = (a.get(1), a.get(2));
    let mut m = ctx.locks.keys([k1, k2].into_iter());
    let x = lcs_input(m.key(k1), k1);
    let y = lcs_input(m.key(k2), k2);
    drop(m);
    let (Ok(x), Ok(y)) = (x, y) else {
        return ctx
            .r
            .error("ERR The specified keys must contain string values");
    };
    let (mut get_len, mut get_idx, mut with_len) = (false, false, false);
    let mut min_len: i64 = 0;
    let mut j = 3;
    while j < a.len() {
        let o = a.get(j);
        if eq_ic(o, "IDX") {
            get_idx = true;
        } else if eq_ic(o, "LEN") {
            get_len = true;
        } else if eq_ic(o, "WITHMATCHLEN") {
            with_len = true;
        } else if eq_ic(o, "MINMATCHLEN") && j + 1 < a.len() {
            let Some(n) = int_arg(ctx, a.get(j + 1)) else {
                return;
            };
            min_len = n.max(0);
            j += 1;
        } else {
            return ctx.r.error(SYNTAX);
        }
        j += 1;
    }
    if get_idx && get_len {
        return ctx
            .r
            .error("ERR If you want both the length and indexes, please just use IDX.");
    }
    if x.len() as u64 >= u32::MAX as u64 - 1 || y.len() as u64 >= u32::MAX as u64 - 1 {
        return ctx.r.error("ERR String too long for LCS");
    }
    let (alen, blen) = (x.len(), y.len());
    let cells = (alen as u64 + 1) * (blen as u64 + 1);
    let bytes = cells.checked_mul(4);
    if bytes.is_some_and(|b| b > max_string(ctx) as u64) {
        return ctx
            .r
            .error("ERR Insufficient memory, transient memory for LCS exceeds proto-max-bulk-len");
    }
    let mut t: Vec<u32> = Vec::new();
    let fits = usize::try_from(cells)
        .ok()
        .filter(|_| bytes.is_some())
        .is_some_and(|n| t.try_reserve_exact(n).is_ok());
    if !fits {
        return ctx
            .r
            .error("ERR Insufficient memory, failed allocating transient memory for LCS");
    }
    let w = blen + 1;
    t.resize(w * (alen + 1), 0);
    for i in 1..=alen {
        for k in 1..=blen {
            t[i * w + k] = if x[i - 1] == y[k - 1] {
                t[(i - 1) * w + k - 1] + 1
            } else {
                t[(i - 1) * w + k].max(t[i * w + k - 1])
            };
        }
    }
    let total = t[alen * w + blen];
    if get_len {
        return ctx.r.int(total as i64);
    }
    // Walk back from the end, collecting the string and the runs.
    let mut out = vec![0u8; total as usize];
    let mut idx = total as usize;
    let mut runs: Vec<LcsMatch> = Vec::new();
    let unset = alen as u32;
    let (mut a_start, mut a_end, mut b_start, mut b_end) = (unset, 0u32, 0u32, 0u32);
    let (mut i, mut k) = (alen, blen);
    while i > 0 && k > 0 {
        let mut emit = false;
        if x[i - 1] == y[k - 1] {
            out[idx - 1] = x[i - 1];
            if a_start == unset {
                a_start = (i - 1) as u32;
                a_end = a_start;
                b_start = (k - 1) as u32;
                b_end = b_start;
            } else if a_start as usize == i && b_start as usize == k {
                // Contiguous with the run so far: extend it backwards.
                a_start -= 1;
                b_start -= 1;
            } else {
                emit = true;
            }
            if a_start == 0 || b_start == 0 {
                emit = true;
            }
            idx -= 1;
            i -= 1;
            k -= 1;
        } else {
            if t[(i - 1) * w + k] > t[i * w + k - 1] {
                i -= 1;
            } else {
                k -= 1;
            }
            if a_start != unset {
                emit = true;
            }
        }
        if emit {
            let len = a_end.wrapping_sub(a_start).wrapping_add(1);
            if min_len == 0 || len as i64 >= min_len {
                runs.push(LcsMatch {
                    a: (a_start, a_end),
                    b: (b_start, b_end),
                    len,
                });
            }
            a_start = unset;
        }
    }
    if !get_idx {
        return ctx.r.bulk(&out);
    }
    ctx.r.map(2);
    ctx.r.bulk(b"matches");
    ctx.r.array(runs.len());
    for run in &runs {
        ctx.r.array(2 + with_len as usize);
        ctx.r.array(2);
        ctx.r.int(run.a.0 as i64);
        ctx.r.int(run.a.1 as i64);
        ctx.r.array(2);
        ctx.r.int(run.b.0 as i64);
        ctx.r.int(run.b.1 as i64);
        if with_len {
            ctx.r.int(run.len as i64);
        }
    }
    ctx.r.bulk(b"len");
    ctx.r.int(total as i64);
}
