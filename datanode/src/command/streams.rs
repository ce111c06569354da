//! Stream commands: XADD, XRANGE, XREVRANGE, XLEN, XDEL, XTRIM, XSETID,
//! over `keyspace::stream` with Redis 7.0's parsing, replies and errors.
//! XADD and XTRIM log what they did with explicit IDs and exact trims (as
//! Redis rewrites them), so replicas and the AOF end up equal.

use super::{eq_ic, ev, Args, Ctx, NOT_INT, SYNTAX, WRONGTYPE};
use crate::keyspace::stream::{AddError, Entry, Limits, Stream, StreamId, Trim};
use crate::keyspace::Value;
use crate::resp::parse_i64;

pub(super) const BAD_ID: &str = "ERR Invalid stream ID specified as stream command argument";

/// C's strtoull as Redis's string2ull falls back to it: optional leading
/// space and sign ('-' wraps), digits to the end, no overflow.
fn c_strtoull(s: &[u8]) -> Option<u64> {
    if let Some(v) = parse_i64(s) {
        return u64::try_from(v).ok();
    }
    let mut i = 0;
    while i < s.len() && matches!(s[i], b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r') {
        i += 1;
    }
    let mut neg = false;
    if i < s.len() && (s[i] == b'+' || s[i] == b'-') {
        neg = s[i] == b'-';
        i += 1;
    }
    if i == s.len() {
        return None;
    }
    let mut v: u64 = 0;
    for &c in &s[i..] {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?.checked_add((c - b'0') as u64)?;
    }
    Some(if neg { v.wrapping_neg() } else { v })
}

/// Parses a stream ID as Redis does: `-`, `+` (unless `strict`), `ms`,
/// `ms-seq`, and with `seq_star` also `ms-*` (then the bool is false).
pub(super) fn parse_id(
    a: &[u8],
    missing_seq: u64,
    strict: bool,
    seq_star: bool,
) -> Option<(StreamId, bool)> {
    if a.len() > 127 {
        return None;
    }
    if a == b"-" || a == b"+" {
        if strict {
            return None;
        }
        return Some((
            if a == b"-" {
                StreamId::MIN
            } else {
                StreamId::MAX
            },
            true,
        ));
    }
    // Redis works on a C string: a NUL ends it.
    let a = match a.iter().position(|&c| c == 0) {
        Some(z) => &a[..z],
        None => a,
    };
    let (ms_part, seq_part) = match a.iter().position(|&c| c == b'-') {
        Some(d) => (&a[..d], Some(&a[d + 1..])),
        None => (a, None),
    };
    let ms = c_strtoull(ms_part)?;
    match seq_part {
        Some(b"*") if seq_star => Some((StreamId::new(ms, 0), false)),
        Some(s) => Some((StreamId::new(ms, c_strtoull(s)?), true)),
        None => Some((StreamId::new(ms, missing_seq), true)),
    }
}

fn id_bulk(ctx: &mut Ctx, id: StreamId) {
    let mut b = itoa::Buffer::new();
    let mut s = Vec::with_capacity(42);
    s.extend_from_slice(b.format(id.ms).as_bytes());
    s.push(b'-');
    s.extend_from_slice(b.format(id.seq).as_bytes());
    ctx.r.bulk(&s);
}

fn reply_entries(ctx: &mut Ctx, entries: &[Entry]) {
    ctx.r.array(entries.len());
    for e in entries {
        ctx.r.array(2);
        id_bulk(ctx, e.id);
        ctx.r.array(e.fields.len() * 2);
        for (f, v) in &e.fields {
            ctx.r.bulk(f);
            ctx.r.bulk(v);
        }
    }
}

fn limits(ctx: &Ctx) -> Limits {
    let c = ctx.srv.config.read();
    Limits {
        max_bytes: c.int("stream-node-max-bytes").max(0) as usize,
        max_entries: c.int("stream-node-max-entries").max(0) as u64,
    }
}

/// XADD's and XTRIM's options.
struct TrimArgs {
    trim: Option<Trim>,
    approx: bool,
    limit: u64,
    nomkstream: bool,
    /// XADD: the ID (None for `*`), and where the fields start.
    id: Option<(StreamId, bool)>,
    next: usize,
}

fn parse_trim_args(ctx: &mut Ctx, a: &Args, xadd: bool) -> Option<TrimArgs> {
    let mut t = TrimArgs {
        trim: None,
        approx: false,
        limit: 0,
        nomkstream: false,
        id: None,
        next: a.len(),
    };
    let mut limit_given = false;
    let mut i = 2;
    while i < a.len() {
        let more = a.len() - 1 - i;
        let opt = a.get(i);
        if xadd && opt == b"*" {
            break;
        } else if (eq_ic(opt, "MAXLEN") || eq_ic(opt, "MINID")) && more > 0 {
            if t.trim.is_some() {
                ctx.r.error("ERR syntax error, MAXLEN and MINID options at the same time are not compatible");
                return None;
            }
            t.approx = false;
            let next = a.get(i + 1);
            if more >= 2 && next == b"~" {
                t.approx = true;
                i += 1;
            } else if more >= 2 && next == b"=" {
                i += 1;
            }
            let arg = a.get(i + 1);
            if eq_ic(opt, "MAXLEN") {
                let Some(n) = parse_i64(arg) else {
                    ctx.r.error(NOT_INT);
                    return None;
                };
                if n < 0 {
                    ctx.r.error("ERR The MAXLEN argument must be >= 0.");
                    return None;
                }
                t.trim = Some(Trim::MaxLen(n as u64));
            } else {
                let Some((id, _)) = parse_id(arg, 0, true, false) else {
                    ctx.r.error(BAD_ID);
                    return None;
                };
                t.trim = Some(Trim::MinId(id));
            }
            i += 1;
        } else if eq_ic(opt, "LIMIT") && more > 0 {
            let Some(n) = parse_i64(a.get(i + 1)) else {
                ctx.r.error(NOT_INT);
                return None;
            };
            if n < 0 {
                ctx.r.error("ERR The LIMIT argument must be >= 0.");
                return None;
            }
            t.limit = n as u64;
            limit_given = true;
            i += 1;
        } else if xadd && eq_ic(opt, "NOMKSTREAM") {
            t.nomkstream = true;
        } else if xadd {
            let Some(id) = parse_id(opt, 0, true, true) else {
                ctx.r.error(BAD_ID);
                return None;
            };
            t.id = Some(id);
            break;
        } else {
            ctx.r.error(SYNTAX);
            return None;
        }
        i += 1;
    }
    t.next = i + 1;
    if t.limit > 0 && t.trim.is_none() {
        ctx.r
            .error("ERR syntax error, LIMIT cannot be used without specifying a trimming strategy");
        return None;
    }
    if !xadd && t.trim.is_none() {
        ctx.r
            .error("ERR syntax error, XTRIM must be called with a trimming strategy");
        return None;
    }
    if ctx.client.loading || crate::keyspace::applying_master_stream() {
        // History replays trims exactly as logged.
        t.limit = 0;
    } else if limit_given {
        if !t.approx {
            ctx.r
                .error("ERR syntax error, LIMIT cannot be used without the special ~ option");
            return None;
        }
    } else if t.approx {
        // At most 100 nodes' worth of work per call, as Redis bounds it.
        let per_node = ctx.srv.config.read().int("stream-node-max-entries").max(0) as u64;
        t.limit = (100 * per_node).clamp(1, 1_000_000);
        if per_node == 0 {
            t.limit = 10_000;
        }
    } else {
        t.limit = 0;
    }
    Some(t)
}

/// The trim as it is logged: exact, with the bound the stream now has
/// when the request was approximate.
fn logged_trim(s: &Stream, trim: Trim, approx: bool) -> Vec<Vec<u8>> {
    let (name, arg) = match (trim, approx) {
        (Trim::MaxLen(n), false) => ("MAXLEN", n.to_string()),
        (Trim::MaxLen(_), true) => ("MAXLEN", s.length.to_string()),
        (Trim::MinId(id), false) => ("MINID", id.format()),
        (Trim::MinId(_), true) => ("MINID", s.edge_id(true, true).format()),
    };
    vec![name.into(), b"=".to_vec(), arg.into_bytes()]
}

pub fn xadd(ctx: &mut Ctx, a: &Args) {
    let Some(t) = parse_trim_args(ctx, a, true) else {
        return;
    };
    let fields_at = t.next;
    if fields_at > a.len() || (a.len() - fields_at) < 2 || !(a.len() - fields_at).is_multiple_of(2)
    {
        return ctx
            .r
            .error("ERR wrong number of arguments for 'xadd' command");
    }
    if let Some((id, true)) = t.id {
        if id == StreamId::MIN {
            return ctx
                .r
                .error("ERR The ID specified in XADD must be greater than 0-0");
        }
    }
    let key = a.get(1);
    let lim = limits(ctx);
    let now = crate::keyspace::now_ms().max(0) as u64;
    let events = ctx.events();
    let mut s = ctx.locks.key(key);
    let created = match s.get_mut(key) {
        Some(Value::Stream(_)) => false,
        Some(_) => return ctx.r.error(WRONGTYPE),
        None if t.nomkstream => {
            drop(s);
            return ctx.r.null();
        }
        None => {
            s.set(key, Value::Stream(Box::new(Stream::new())), false);
            true
        }
    };
    let Some(Value::Stream(st)) = s.get_mut(key) else {
        return ctx.r.null();
    };
    if st.last_id == StreamId::MAX {
        if created {
            s.remove(key);
        }
        return ctx
            .r
            .error("ERR The stream has exhausted the last possible ID, unable to add more items");
    }
    let fields: Vec<(&[u8], &[u8])> = (fields_at..a.len())
        .step_by(2)
        .map(|i| (a.get(i), a.get(i + 1)))
        .collect();
    let id = match st.add(t.id, now, &fields, lim) {
        Ok(id) => id,
        Err(e) => {
            if created {
                s.remove(key);
            }
            return ctx.r.error(match e {
                AddError::IdTooSmall => {
                    "ERR The ID specified in XADD is equal or smaller than the target stream top item"
                }
                AddError::TooLarge => "ERR Elements are too large to be stored",
            });
        }
    };
    let mut trimmed = 0;
    let mut logged: Vec<Vec<u8>> = vec![b"XADD".to_vec(), key.to_vec()];
    if let Some(trim) = t.trim {
        trimmed = st.trim(trim, t.approx, t.limit);
        logged.extend(logged_trim(st, trim, t.approx));
    }
    logged.push(id.format().into_bytes());
    for (f, v) in &fields {
        logged.push(f.to_vec());
        logged.push(v.to_vec());
    }
    s.touch(key);
    s.log(&logged);
    s.signal_all_ready(key);
    events.emit(ev::STREAM, "xadd", key);
    if trimmed > 0 {
        events.emit(ev::STREAM, "xtrim", key);
    }
    drop(s);
    ctx.dirty(1);
    id_bulk(ctx, id);
}

fn range_generic(ctx: &mut Ctx, a: &Args, rev: bool) {
    let (start_arg, end_arg) = if rev {
        (a.get(3), a.get(2))
    } else {
        (a.get(2), a.get(3))
    };
    let Some(start) = interval_id(ctx, start_arg, 0, true) else {
        return;
    };
    let Some(end) = interval_id(ctx, end_arg, u64::MAX, false) else {
        return;
    };
    let mut count: i64 = -1;
    let mut j = 4;
    while j < a.len() {
        if eq_ic(a.get(j), "COUNT") && j + 1 < a.len() {
            match parse_i64(a.get(j + 1)) {
                Some(n) => count = n.max(0),
                None => return ctx.r.error(NOT_INT),
            }
            j += 2;
        } else {
            return ctx.r.error(SYNTAX);
        }
    }
    let key = a.get(1);
    let mut s = ctx.locks.key(key);
    let entries = match s.get(key) {
        None => {
            drop(s);
            return ctx.r.array(0);
        }
        Some(Value::Stream(st)) => {
            if count == 0 {
                drop(s);
                return ctx.r.null_array();
            }
            st.range(start, end, count.max(0) as usize, rev)
        }
        Some(_) => return ctx.r.error(WRONGTYPE),
    };
    drop(s);
    reply_entries(ctx, &entries);
}

/// A range bound: `(` makes it exclusive (start moves up, end down).
pub(super) fn interval_id(
    ctx: &mut Ctx,
    arg: &[u8],
    missing_seq: u64,
    start: bool,
) -> Option<StreamId> {
    let excl = arg.len() > 1 && arg[0] == b'(';
    let parsed = if excl {
        parse_id(&arg[1..], missing_seq, true, false)
    } else {
        parse_id(arg, missing_seq, false, false)
    };
    let Some((id, _)) = parsed else {
        ctx.r.error(BAD_ID);
        return None;
    };
    if !excl {
        return Some(id);
    }
    let moved = if start { id.incr() } else { id.decr() };
    if moved.is_none() {
        ctx.r.error(if start {
            "ERR invalid start ID for the interval"
        } else {
            "ERR invalid end ID for the interval"
        });
    }
    moved
}

pub fn xrange(ctx: &mut Ctx, a: &Args) {
    range_generic(ctx, a, false)
}

pub fn xrevrange(ctx: &mut Ctx, a: &Args) {
    range_generic(ctx, a, true)
}

pub fn xlen(ctx: &mut Ctx, a: &Args) {
    let key = a.get(1);
    let mut s = ctx.locks.key(key);
    let n = match s.get(key) {
        None => 0,
        Some(Value::Stream(st)) => st.length,
        Some(_) => return ctx.r.error(WRONGTYPE),
    };
    drop(s);
    ctx.r.int(n as i64);
}

pub fn xdel(ctx: &mut Ctx, a: &Args) {
    let key = a.get(1);
    let events = ctx.events();
    let mut s = ctx.locks.key(key);
    match s.get(key) {
        None => {
            drop(s);
            return ctx.r.int(0);
        }
        Some(Value::Stream(_)) => {}
        Some(_) => return ctx.r.error(WRONGTYPE),
    }
    let mut ids = Vec::with_capacity(a.len() - 2);
    for arg in a.iter().skip(2) {
        match parse_id(arg, 0, true, false) {
            Some((id, _)) => ids.push(id),
            None => return ctx.r.error(BAD_ID),
        }
    }
    let Some(Value::Stream(st)) = s.get_mut(key) else {
        return ctx.r.int(0);
    };
    let mut deleted = 0u64;
    let mut first = false;
    for id in ids {
        if st.delete(id) {
            first |= id == st.first_id;
            if id > st.max_deleted_id {
                st.max_deleted_id = id;
            }
            deleted += 1;
        }
    }
    if deleted > 0 {
        if st.length == 0 {
            st.first_id = StreamId::MIN;
        } else if first {
            st.first_id = st.edge_id(true, false);
        }
        s.touch(key);
        s.log(&a.iter().collect::<Vec<_>>());
        events.emit(ev::STREAM, "xdel", key);
        drop(s);
        ctx.dirty(deleted);
    } else {
        drop(s);
    }
    ctx.r.int(deleted as i64);
}

pub fn xtrim(ctx: &mut Ctx, a: &Args) {
    let Some(t) = parse_trim_args(ctx, a, false) else {
        return;
    };
    let Some(trim) = t.trim else {
        return;
    };
    let key = a.get(1);
    let events = ctx.events();
    let mut s = ctx.locks.key(key);
    let Some(v) = s.get_mut(key) else {
        drop(s);
        return ctx.r.int(0);
    };
    let Value::Stream(st) = v else {
        return ctx.r.error(WRONGTYPE);
    };
    let deleted = st.trim(trim, t.approx, t.limit);
    if deleted > 0 {
        let mut logged: Vec<Vec<u8>> = vec![b"XTRIM".to_vec(), key.to_vec()];
        logged.extend(logged_trim(st, trim, t.approx));
        s.touch(key);
        s.log(&logged);
        events.emit(ev::STREAM, "xtrim", key);
        drop(s);
        ctx.dirty(deleted);
    } else {
        drop(s);
    }
    ctx.r.int(deleted as i64);
}

pub fn xsetid(ctx: &mut Ctx, a: &Args) {
    let Some((id, _)) = parse_id(a.get(2), 0, true, false) else {
        return ctx.r.error(BAD_ID);
    };
    let mut entries_added: Option<u64> = None;
    let mut max_deleted = StreamId::MIN;
    let mut i = 3;
    while i < a.len() {
        let more = a.len() - 1 - i;
        if eq_ic(a.get(i), "ENTRIESADDED") && more > 0 {
            match parse_i64(a.get(i + 1)) {
                None => return ctx.r.error(NOT_INT),
                Some(n) if n < 0 => return ctx.r.error("ERR entries_added must be positive"),
                Some(n) => entries_added = Some(n as u64),
            }
            i += 2;
        } else if eq_ic(a.get(i), "MAXDELETEDID") && more > 0 {
            let Some((m, _)) = parse_id(a.get(i + 1), 0, true, false) else {
                return ctx.r.error(BAD_ID);
            };
            if id < m {
                return ctx.r.error(
                    "ERR The ID specified in XSETID is smaller than the provided max_deleted_entry_id",
                );
            }
            max_deleted = m;
            i += 2;
        } else {
            return ctx.r.error(SYNTAX);
        }
    }
    let key = a.get(1);
    let events = ctx.events();
    let mut s = ctx.locks.key(key);
    let st = match s.get_mut(key) {
        None => {
            drop(s);
            return ctx.r.error(super::NO_SUCH_KEY);
        }
        Some(Value::Stream(st)) => st,
        Some(_) => return ctx.r.error(WRONGTYPE),
    };
    if st.length > 0 {
        if id < st.edge_id(false, false) {
            return ctx.r.error(
                "ERR The ID specified in XSETID is smaller than the target stream top item",
            );
        }
        if entries_added.is_some_and(|n| st.length > n) {
            return ctx.r.error(
                "ERR The entries_added specified in XSETID is smaller than the target stream length",
            );
        }
    }
    st.last_id = id;
    if let Some(n) = entries_added {
        st.entries_added = n;
    }
    if max_deleted != StreamId::MIN {
        st.max_deleted_id = max_deleted;
    }
    s.touch(key);
    s.log(&a.iter().collect::<Vec<_>>());
    events.emit(ev::STREAM, "xsetid", key);
    drop(s);
    ctx.dirty(1);
    ctx.r.ok();
}
