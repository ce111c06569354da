//! List commands (the blocking ones come with the blocking machinery).

use super::typed::{lookup, removed_events, settle, with_typed, Typed};
use super::{eq_ic, ev, int_arg, Args, Ctx, NOT_INT, NO_SUCH_KEY, SYNTAX, WRONGTYPE};
use crate::keyspace::plist::PackedList;
use crate::keyspace::{SlotRef, Value};
use crate::resp::parse_i64;

type List = PackedList;

fn pop_event(left: bool) -> &'static str {
    if left {
        "lpop"
    } else {
        "rpop"
    }
}

fn push_event(left: bool) -> &'static str {
    if left {
        "lpush"
    } else {
        "rpush"
    }
}

fn log_args(s: &SlotRef, a: &Args) {
    if s.db.log.is_active() {
        let v: Vec<&[u8]> = a.iter().collect();
        s.log(&v);
    }
}

fn push(ctx: &mut Ctx, a: &Args, left: bool, only_existing: bool) {
    let key = a.get(1);
    let events = ctx.events();
    let mut s = ctx.locks.key(key);
    let len = match lookup::<List>(&mut s, key) {
        Typed::Wrong => return ctx.r.error(WRONGTYPE),
        Typed::Missing if only_existing => return ctx.r.int(0),
        Typed::Missing => {
            let mut l = List::new();
            for e in a.iter().skip(2) {
                if left {
                    l.push_front(e);
                } else {
                    l.push_back(e);
                }
            }
            let n = l.len();
            s.set(key, Value::List(Box::new(l)), false);
            n
        }
        Typed::Found(l) => {
            for e in a.iter().skip(2) {
                if left {
                    l.push_front(e);
                } else {
                    l.push_back(e);
                }
            }
            let n = l.len();
            s.touch(key);
            s.signal_ready(key);
            n
        }
    };
    log_args(&s, a);
    events.emit(ev::LIST, push_event(left), key);
    drop(s);
    ctx.dirty((a.len() - 2) as u64);
    ctx.r.int(len as i64);
}

pub fn lpush(ctx: &mut Ctx, a: &Args) {
    push(ctx, a, true, false)
}
pub fn rpush(ctx: &mut Ctx, a: &Args) {
    push(ctx, a, false, false)
}
pub fn lpushx(ctx: &mut Ctx, a: &Args) {
    push(ctx, a, true, true)
}
pub fn rpushx(ctx: &mut Ctx, a: &Args) {
    push(ctx, a, false, true)
}

fn pop(ctx: &mut Ctx, a: &Args, left: bool) {
    let key = a.get(1);
    if a.len() > 3 {
        return ctx.r.error(&format!(
            "ERR wrong number of arguments for '{}' command",
            if left { "lpop" } else { "rpop" }
        ));
    }
    let count = if a.len() == 3 {
        match parse_i64(a.get(2)) {
            Some(n) if n >= 0 => Some(n as usize),
            _ => return ctx.r.error("ERR value is out of range, must be positive"),
        }
    } else {
        None
    };
    let events = ctx.events();
    let mut s = ctx.locks.key(key);
    let l = match lookup::<List>(&mut s, key) {
        Typed::Wrong => return ctx.r.error(WRONGTYPE),
        Typed::Missing => {
            drop(s);
            return match count {
                None => ctx.r.null(),
                Some(_) => ctx.r.null_array(),
            };
        }
        Typed::Found(l) => l,
    };
    let take = count.unwrap_or(1).min(l.len());
    let mut popped = Vec::with_capacity(take);
    for _ in 0..take {
        let e = if left { l.pop_front() } else { l.pop_back() };
        popped.extend(e);
    }
    if take > 0 {
        let deleted = settle::<List>(&mut s, key);
        let mut b = itoa::Buffer::new();
        let cmd: &[u8] = if left { b"LPOP" } else { b"RPOP" };
        s.log(&[cmd, key, b.format(take).as_bytes()]);
        removed_events(&events, ev::LIST, pop_event(left), key, deleted);
    }
    drop(s);
    ctx.dirty(take as u64);
    match count {
        None => match popped.first() {
            Some(e) => ctx.r.bulk(e),
            None => ctx.r.null(),
        },
        Some(_) => {
            ctx.r.array(popped.len());
            for e in &popped {
                ctx.r.bulk(e);
            }
        }
    }
}

pub fn lpop(ctx: &mut Ctx, a: &Args) {
    pop(ctx, a, true)
}
pub fn rpop(ctx: &mut Ctx, a: &Args) {
    pop(ctx, a, false)
}

pub fn llen(ctx: &mut Ctx, a: &Args) {
    with_typed!(ctx, List, a.get(1), ctx.r.int(0), |l| ctx
        .r
        .int(l.len() as i64))
}

/// Resolves a possibly negative index.
fn index(i: i64, len: usize) -> Option<usize> {
    let i = if i < 0 { len as i64 + i } else { i };
    (i >= 0 && (i as usize) < len).then_some(i as usize)
}

/// The key is looked at before the index is parsed, as in Redis: a
/// missing key answers nil (LINDEX) or "no such key" (LSET) whatever the
/// index, and a wrong type wins over a bad index.
pub fn lindex(ctx: &mut Ctx, a: &Args) {
    with_typed!(ctx, List, a.get(1), ctx.r.null(), |l| {
        let Some(i) = parse_i64(a.get(2)) else {
            return ctx.r.error(NOT_INT);
        };
        match index(i, l.len()) {
            Some(i) => match l.get(i) {
                Some(e) => ctx.r.bulk(&e),
                None => ctx.r.null(),
            },
            None => ctx.r.null(),
        }
    })
}

pub fn lset(ctx: &mut Ctx, a: &Args) {
    let (key, v) = (a.get(1), a.get(3));
    let events = ctx.events();
    let mut s = ctx.locks.key(key);
    match lookup::<List>(&mut s, key) {
        Typed::Wrong => return ctx.r.error(WRONGTYPE),
        Typed::Missing => return ctx.r.error(NO_SUCH_KEY),
        Typed::Found(l) => match parse_i64(a.get(2)).map(|i| index(i, l.len())) {
            None => {
                drop(s);
                return ctx.r.error(NOT_INT);
            }
            Some(Some(i)) => l.set(i, v),
            Some(None) => return ctx.r.error("ERR index out of range"),
        },
    }
    s.touch(key);
    log_args(&s, a);
    events.emit(ev::LIST, "lset", key);
    drop(s);
    ctx.dirty(1);
    ctx.r.ok();
}

/// Redis's range normalisation for LRANGE/LTRIM: returns (start, end)
/// inclusive, or None when the range is empty.
fn range(start: i64, end: i64, len: usize) -> Option<(usize, usize)> {
    let len = len as i64;
    let mut start = if start < 0 { len + start } else { start };
    let mut end = if end < 0 { len + end } else { end };
    if start < 0 {
        start = 0;
    }
    if start > end || start >= len {
        return None;
    }
    if end >= len {
        end = len - 1;
    }
    Some((start as usize, end as usize))
}

pub fn lrange(ctx: &mut Ctx, a: &Args) {
    let (Some(start), Some(end)) = (parse_i64(a.get(2)), parse_i64(a.get(3))) else {
        return ctx.r.error(NOT_INT);
    };
    with_typed!(
        ctx,
        List,
        a.get(1),
        ctx.r.array(0),
        |l| match range(start, end, l.len()) {
            None => ctx.r.array(0),
            Some((s0, e0)) => {
                ctx.r.array(e0 - s0 + 1);
                for e in l.iter_from(s0).take(e0 - s0 + 1) {
                    ctx.r.bulk(&e);
                }
            }
        }
    )
}

pub fn ltrim(ctx: &mut Ctx, a: &Args) {
    let key = a.get(1);
    let (Some(start), Some(end)) = (parse_i64(a.get(2)), parse_i64(a.get(3))) else {
        return ctx.r.error(NOT_INT);
    };
    let events = ctx.events();
    let mut s = ctx.locks.key(key);
    let changed = match lookup::<List>(&mut s, key) {
        Typed::Wrong => return ctx.r.error(WRONGTYPE),
        Typed::Missing => return ctx.r.ok(),
        Typed::Found(l) => {
            let before = l.len();
            match range(start, end, l.len()) {
                None => l.clear(),
                Some((s0, e0)) => {
                    l.trim(s0, e0);
                }
            }
            l.len() != before
        }
    };
    let deleted = settle::<List>(&mut s, key);
    // Nothing trimmed is no change to propagate (Redis's dirty stays 0),
    // though the event and WATCH still see the command.
    if changed {
        log_args(&s, a);
    }
    removed_events(&events, ev::LIST, "ltrim", key, deleted);
    drop(s);
    ctx.dirty(1);
    ctx.r.ok();
}

pub fn linsert(ctx: &mut Ctx, a: &Args) {
    let (key, pivot, v) = (a.get(1), a.get(3), a.get(4));
    let before = if eq_ic(a.get(2), "BEFORE") {
        true
    } else if eq_ic(a.get(2), "AFTER") {
        false
    } else {
        return ctx.r.error(SYNTAX);
    };
    let events = ctx.events();
    let mut s = ctx.locks.key(key);
    let n = match lookup::<List>(&mut s, key) {
        Typed::Wrong => return ctx.r.error(WRONGTYPE),
        Typed::Missing => return ctx.r.int(0),
        Typed::Found(l) => match l.iter().position(|e| e == pivot) {
            None => return ctx.r.int(-1),
            Some(i) => {
                l.insert_at(i, v, !before);
                l.len()
            }
        },
    };
    s.touch(key);
    log_args(&s, a);
    events.emit(ev::LIST, "linsert", key);
    drop(s);
    ctx.dirty(1);
    ctx.r.int(n as i64);
}

pub fn lrem(ctx: &mut Ctx, a: &Args) {
    let (key, v) = (a.get(1), a.get(3));
    let Some(count) = int_arg(ctx, a.get(2)) else {
        return;
    };
    let events = ctx.events();
    let mut s = ctx.locks.key(key);
    let removed = match lookup::<List>(&mut s, key) {
        Typed::Wrong => return ctx.r.error(WRONGTYPE),
        Typed::Missing => return ctx.r.int(0),
        Typed::Found(l) => {
            let limit = if count == 0 {
                usize::MAX
            } else {
                count.unsigned_abs() as usize
            };
            l.remove_matching(v, limit, count < 0)
        }
    };
    if removed > 0 {
        let deleted = settle::<List>(&mut s, key);
        log_args(&s, a);
        removed_events(&events, ev::LIST, "lrem", key, deleted);
        drop(s);
        ctx.dirty(removed as u64);
    }
    ctx.r.int(removed as i64);
}

pub fn lpos(ctx: &mut Ctx, a: &Args) {
    let (key, v) = (a.get(1), a.get(2));
    let mut rank: i64 = 1;
    let mut count: Option<usize> = None;
    let mut maxlen: usize = 0;
    let mut i = 3;
    while i < a.len() {
        let opt = a.get(i);
        if i + 1 >= a.len() {
            return ctx.r.error(SYNTAX);
        }
        let Some(n) = int_arg(ctx, a.get(i + 1)) else {
            return;
        };
        if eq_ic(opt, "RANK") {
            if n == 0 {
                return ctx.r.error("ERR RANK can't be zero: use 1 to start from the first match, 2 from the second ... or use negative to start from the end of the list");
            }
            if n == i64::MIN {
                return ctx.r.error("ERR value is out of range, value must between -9223372036854775807 and 9223372036854775807");
            }
            rank = n;
        } else if eq_ic(opt, "COUNT") {
            if n < 0 {
                return ctx.r.error("ERR COUNT can't be negative");
            }
            count = Some(n as usize);
        } else if eq_ic(opt, "MAXLEN") {
            if n < 0 {
                return ctx.r.error("ERR MAXLEN can't be negative");
            }
            maxlen = n as usize;
        } else {
            return ctx.r.error(SYNTAX);
        }
        i += 2;
    }
    let missing = |ctx: &mut Ctx| {
        if count.is_some() {
            ctx.r.array(0)
        } else {
            ctx.r.null()
        }
    };
    with_typed!(ctx, List, key, missing(ctx), |l| {
        let want = match count {
            Some(0) => usize::MAX,
            Some(c) => c,
            None => 1,
        };
        let mut skip = rank.unsigned_abs() as usize - 1;
        let mut found = Vec::new();
        let len = l.len();
        let scan = if maxlen == 0 { len } else { maxlen.min(len) };
        // Walk once from the chosen end (indexing a packed list is not O(1)).
        let walk: Box<dyn Iterator<Item = std::borrow::Cow<'_, [u8]>>> = if rank > 0 {
            Box::new(l.iter())
        } else {
            Box::new(l.iter_rev())
        };
        for (step, e) in walk.take(scan).enumerate() {
            let idx = if rank > 0 { step } else { len - 1 - step };
            if *e == *v {
                if skip > 0 {
                    skip -= 1;
                    continue;
                }
                found.push(idx);
                if found.len() >= want {
                    break;
                }
            }
        }
        match count {
            None => match found.first() {
                Some(&p) => ctx.r.int(p as i64),
                None => ctx.r.null(),
            },
            Some(_) => {
                ctx.r.array(found.len());
                for p in found {
                    ctx.r.int(p as i64);
                }
            }
        }
    })
}

fn side(a: &[u8]) -> Option<bool> {
    if eq_ic(a, "LEFT") {
        Some(true)
    } else if eq_ic(a, "RIGHT") {
        Some(false)
    } else {
        None
    }
}

/// Moves one element between lists (LMOVE, RPOPLPUSH). `rpoplpush`: the
/// move is logged as RPOPLPUSH (RPOPLPUSH and BRPOPLPUSH), as Redis
/// propagates them, else as LMOVE.
fn lmove_generic(
    ctx: &mut Ctx,
    src: &[u8],
    dst: &[u8],
    (from_left, to_left): (bool, bool),
    rpoplpush: bool,
) {
    let events = ctx.events();
    let mut m = ctx.locks.keys([src, dst].into_iter());
    // Check the destination's type before taking anything.
    if !matches!(m.key(dst).get(dst), None | Some(Value::List(_)))
        && matches!(m.key(src).get(src), Some(Value::List(_)))
    {
        return ctx.r.error(WRONGTYPE);
    }
    let s = m.key(src);
    let e = match lookup::<List>(s, src) {
        Typed::Wrong => return ctx.r.error(WRONGTYPE),
        Typed::Missing => {
            drop(m);
            return ctx.r.null();
        }
        Typed::Found(l) => {
            let e = if from_left {
                l.pop_front()
            } else {
                l.pop_back()
            };
            match e {
                Some(e) => e,
                None => return ctx.r.null(),
            }
        }
    };
    // The source is settled after the push: with src == dst a one-element
    // list must not be deleted and recreated (Redis keeps the key, and its
    // TTL).
    let d = m.key(dst);
    match lookup::<List>(d, dst) {
        Typed::Found(l) => {
            if to_left {
                l.push_front(&e);
            } else {
                l.push_back(&e);
            }
            d.touch(dst);
            d.signal_ready(dst);
        }
        _ => {
            let mut l = List::new();
            l.push_back(&e);
            d.set(dst, Value::List(Box::new(l)), false);
        }
    }
    // Redis announces the push before the pop.
    events.emit(ev::LIST, push_event(to_left), dst);
    let deleted = settle::<List>(m.key(src), src);
    removed_events(&events, ev::LIST, pop_event(from_left), src, deleted);
    let (f, t): (&[u8], &[u8]) = (
        if from_left { b"LEFT" } else { b"RIGHT" },
        if to_left { b"LEFT" } else { b"RIGHT" },
    );
    if rpoplpush {
        m.key(src).log(&[b"RPOPLPUSH".as_slice(), src, dst]);
    } else {
        m.key(src).log(&[b"LMOVE".as_slice(), src, dst, f, t]);
    }
    drop(m);
    ctx.dirty(1);
    ctx.r.bulk(&e);
}

pub fn lmove(ctx: &mut Ctx, a: &Args) {
    let (Some(f), Some(t)) = (side(a.get(3)), side(a.get(4))) else {
        return ctx.r.error(SYNTAX);
    };
    lmove_generic(ctx, a.get(1), a.get(2), (f, t), false)
}

pub fn rpoplpush(ctx: &mut Ctx, a: &Args) {
    lmove_generic(ctx, a.get(1), a.get(2), (false, true), true)
}

/// Key positions of LMPOP: `numkeys` keys after the numkeys argument.
pub fn lmpop_keys(a: &Args) -> Vec<usize> {
    match a.len().checked_sub(1).and_then(|_| parse_i64(a.get(1))) {
        Some(n) if n > 0 && (n as usize) + 2 <= a.len() => (2..2 + n as usize).collect(),
        _ => Vec::new(),
    }
}

pub fn lmpop(ctx: &mut Ctx, a: &Args) {
    let n = match parse_i64(a.get(1)) {
        Some(n) if n > 0 => n as usize,
        Some(_) => return ctx.r.error("ERR numkeys should be greater than 0"),
        None => return ctx.r.error("ERR numkeys should be greater than 0"),
    };
    if n + 3 > a.len() {
        return ctx.r.error(SYNTAX);
    }
    let Some(left) = side(a.get(2 + n)) else {
        return ctx.r.error(SYNTAX);
    };
    let mut count = 1usize;
    let rest = a.len() - (3 + n);
    if rest == 2 && eq_ic(a.get(3 + n), "COUNT") {
        match parse_i64(a.get(4 + n)) {
            Some(c) if c > 0 => count = c as usize,
            _ => return ctx.r.error("ERR count should be greater than 0"),
        }
    } else if rest != 0 {
        return ctx.r.error(SYNTAX);
    }
    let keys: Vec<&[u8]> = (2..2 + n).map(|i| a.get(i)).collect();
    let events = ctx.events();
    let mut m = ctx.locks.keys(keys.iter().copied());
    for key in &keys {
        let s = m.key(key);
        let l = match lookup::<List>(s, key) {
            // A woken blocked client is not served from a key that changed
            // type meanwhile: it stays blocked (as in Redis).
            Typed::Wrong if ctx.client.block_retry => continue,
            Typed::Wrong => return ctx.r.error(WRONGTYPE),
            Typed::Missing => continue,
            Typed::Found(l) => l,
        };
        let take = count.min(l.len());
        let popped: Vec<Vec<u8>> = (0..take)
            .filter_map(|_| if left { l.pop_front() } else { l.pop_back() })
            .collect();
        let deleted = settle::<List>(s, key);
        let mut b = itoa::Buffer::new();
        let cmd: &[u8] = if left { b"LPOP" } else { b"RPOP" };
        s.log(&[cmd, key, b.format(take).as_bytes()]);
        removed_events(&events, ev::LIST, pop_event(left), key, deleted);
        drop(m);
        ctx.dirty(take as u64);
        ctx.r.array(2);
        ctx.r.bulk(key);
        ctx.r.array(popped.len());
        for e in &popped {
            ctx.r.bulk(e);
        }
        return;
    }
    drop(m);
    ctx.r.null_array();
}

/// Parses a blocking timeout (seconds, fractional) into milliseconds.
fn timeout_ms(ctx: &mut Ctx, a: &[u8]) -> Option<u64> {
    match super::parse_float(a) {
        Some(t) if t < 0.0 => {
            ctx.r.error("ERR timeout is negative");
            None
        }
        Some(t) if t.is_finite() && t * 1000.0 < u64::MAX as f64 => Some((t * 1000.0) as u64),
        _ => {
            ctx.r.error("ERR timeout is not a float or out of range");
            None
        }
    }
}

/// What a blocking command does when nothing is there: reply null inside
/// a transaction or on a retry that found nothing (the retry then stays
/// silent), else ask the connection to block.
fn block_or_null(ctx: &mut Ctx, a: &Args, keys: Vec<Vec<u8>>, timeout: u64, null_array: bool) {
    if ctx.client.block_retry {
        return;
    }
    if ctx.locks.in_batch() {
        return if null_array {
            ctx.r.null_array()
        } else {
            ctx.r.null()
        };
    }
    ctx.actions.push(super::Action::Block(super::Block {
        keys,
        timeout_ms: timeout,
        args: a.to_owned(),
        null_array,
    }));
}

fn bpop(ctx: &mut Ctx, a: &Args, left: bool) {
    let Some(timeout) = timeout_ms(ctx, a.get(a.len() - 1)) else {
        return;
    };
    let keys: Vec<&[u8]> = (1..a.len() - 1).map(|i| a.get(i)).collect();
    let events = ctx.events();
    let mut m = ctx.locks.keys(keys.iter().copied());
    for key in &keys {
        let s = m.key(key);
        let l = match lookup::<List>(s, key) {
            Typed::Wrong if ctx.client.block_retry => continue,
            Typed::Wrong => return ctx.r.error(WRONGTYPE),
            Typed::Missing => continue,
            Typed::Found(l) => l,
        };
        let Some(e) = (if left { l.pop_front() } else { l.pop_back() }) else {
            continue;
        };
        let more = !l.is_empty();
        let deleted = settle::<List>(s, key);
        let cmd: &[u8] = if left { b"LPOP" } else { b"RPOP" };
        s.log(&[cmd, key]);
        removed_events(&events, ev::LIST, pop_event(left), key, deleted);
        if more {
            // Elements remain: the next blocked client may take one.
            s.signal_ready(key);
        }
        drop(m);
        ctx.dirty(1);
        ctx.r.array(2);
        ctx.r.bulk(key);
        ctx.r.bulk(&e);
        return;
    }
    drop(m);
    let owned = keys.iter().map(|k| k.to_vec()).collect();
    block_or_null(ctx, a, owned, timeout, true)
}

pub fn blpop(ctx: &mut Ctx, a: &Args) {
    bpop(ctx, a, true)
}
pub fn brpop(ctx: &mut Ctx, a: &Args) {
    bpop(ctx, a, false)
}

fn bmove(ctx: &mut Ctx, a: &Args, src: &[u8], dst: &[u8], f: bool, t: bool, timeout: u64) {
    let has = {
        let mut s = ctx.locks.key(src);
        match s.get(src) {
            Some(Value::List(l)) => !l.is_empty(),
            Some(_) if ctx.client.block_retry => false,
            Some(_) => return ctx.r.error(WRONGTYPE),
            None => false,
        }
    };
    if has {
        let rpoplpush = a.get(0).eq_ignore_ascii_case(b"brpoplpush");
        return lmove_generic(ctx, src, dst, (f, t), rpoplpush);
    }
    block_or_null(ctx, a, vec![src.to_vec()], timeout, false)
}

pub fn blmove(ctx: &mut Ctx, a: &Args) {
    let (Some(f), Some(t)) = (side(a.get(3)), side(a.get(4))) else {
        return ctx.r.error(SYNTAX);
    };
    let Some(timeout) = timeout_ms(ctx, a.get(5)) else {
        return;
    };
    bmove(ctx, a, a.get(1), a.get(2), f, t, timeout)
}

pub fn brpoplpush(ctx: &mut Ctx, a: &Args) {
    let Some(timeout) = timeout_ms(ctx, a.get(3)) else {
        return;
    };
    bmove(ctx, a, a.get(1), a.get(2), false, true, timeout)
}

/// Key positions of BLMPOP: `numkeys` keys after timeout and numkeys.
pub fn blmpop_keys(a: &Args) -> Vec<usize> {
    match (a.len() > 2).then(|| parse_i64(a.get(2))).flatten() {
        Some(n) if n > 0 && (n as usize) + 3 <= a.len() => (3..3 + n as usize).collect(),
        _ => Vec::new(),
    }
}

pub fn blmpop(ctx: &mut Ctx, a: &Args) {
    let Some(timeout) = timeout_ms(ctx, a.get(1)) else {
        return;
    };
    // Run LMPOP's parsing and pop on the arguments after the timeout.
    let rest: Vec<&[u8]> = std::iter::once(b"LMPOP".as_slice())
        .chain(a.iter().skip(2))
        .collect();
    let owned = super::OwnedArgs::from_slices(&rest);
    let sub = owned.args();
    let before = ctx.r.out.len();
    let was_retry = ctx.client.block_retry;
    // LMPOP answers null when every list is empty; detect that case.
    lmpop(ctx, &sub);
    let null = ctx.r.out.len() > before && {
        let o = &ctx.r.out[before..];
        o == b"*-1\r\n" || o == b"_\r\n"
    };
    if !null {
        return;
    }
    ctx.r.out.truncate(before);
    let keys = blmpop_keys(a)
        .into_iter()
        .map(|i| a.get(i).to_vec())
        .collect();
    if was_retry {
        return;
    }
    block_or_null(ctx, a, keys, timeout, true)
}
