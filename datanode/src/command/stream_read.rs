//! XREAD and XREADGROUP: reading one or more streams, optionally as a
//! consumer of a group, optionally blocking until entries arrive (served
//! by the same machinery as BLPOP: a wake-up retries the command).
//!
//! A group read logs what it did as Redis propagates it: one idempotent
//! XCLAIM per delivered entry, or (with NOACK) the group's new last ID and
//! the consumer's creation.

use super::stream_groups::{claim_effect, setid_effect};
use super::streams::{parse_id, BAD_ID};
use super::{eq_ic, ev, Args, Ctx, OwnedArgs, NOT_INT, SYNTAX, WRONGTYPE};
use crate::keyspace::stream::{Entry, Stream, StreamId};
use crate::keyspace::Value;
use crate::resp::parse_i64;

/// How many entries a blocked read gets when it gave no COUNT.
const BLOCKED_DEFAULT_COUNT: usize = 1000;

/// Key positions (Redis's xreadGetKeys): the first half of what follows
/// STREAMS, once the options before it parse.
pub fn xread_keys(a: &Args) -> Vec<usize> {
    let mut i = 1;
    while i < a.len() {
        let arg = a.get(i);
        if eq_ic(arg, "BLOCK") || eq_ic(arg, "COUNT") {
            i += 2;
        } else if eq_ic(arg, "GROUP") {
            i += 3;
        } else if eq_ic(arg, "NOACK") {
            i += 1;
        } else if eq_ic(arg, "STREAMS") {
            let n = a.len() - i - 1;
            if n == 0 || !n.is_multiple_of(2) {
                return Vec::new();
            }
            return (i + 1..i + 1 + n / 2).collect();
        } else {
            break;
        }
    }
    Vec::new()
}

struct Opts<'a> {
    /// Milliseconds to block (0: forever), when BLOCK was given.
    block: Option<u64>,
    count: usize,
    group: Option<(&'a [u8], &'a [u8])>,
    noack: bool,
    /// Index of the first key; there are `n` keys, then `n` IDs.
    keys_at: usize,
    n: usize,
}

fn parse_opts<'a>(ctx: &mut Ctx, a: &Args<'a>, grouped: bool) -> Option<Opts<'a>> {
    let mut o = Opts {
        block: None,
        count: 0,
        group: None,
        noack: false,
        keys_at: 0,
        n: 0,
    };
    let mut i = 1;
    while i < a.len() {
        let more = a.len() - i - 1;
        let arg = a.get(i);
        if eq_ic(arg, "BLOCK") && more > 0 {
            // A script can never wait (Redis says so rather than ignoring
            // BLOCK, as it does in MULTI).
            if ctx.client.in_script {
                ctx.r.error(&format!(
                    "ERR {} command is not allowed with BLOCK option from scripts",
                    String::from_utf8_lossy(a.get(0))
                ));
                return None;
            }
            i += 1;
            match parse_i64(a.get(i)) {
                None => {
                    ctx.r.error("ERR timeout is not an integer or out of range");
                    return None;
                }
                Some(t) if t < 0 => {
                    ctx.r.error("ERR timeout is negative");
                    return None;
                }
                Some(t) => o.block = Some(t as u64),
            }
        } else if eq_ic(arg, "COUNT") && more > 0 {
            i += 1;
            match parse_i64(a.get(i)) {
                None => {
                    ctx.r.error(NOT_INT);
                    return None;
                }
                Some(c) => o.count = c.max(0) as usize,
            }
        } else if eq_ic(arg, "STREAMS") && more > 0 {
            if !more.is_multiple_of(2) {
                ctx.r.error("ERR Unbalanced XREAD list of streams: for each stream key an ID or '$' must be specified.");
                return None;
            }
            o.keys_at = i + 1;
            o.n = more / 2;
            break;
        } else if eq_ic(arg, "GROUP") && more >= 2 {
            if !grouped {
                ctx.r.error(
                    "ERR The GROUP option is only supported by XREADGROUP. You called XREAD instead.",
                );
                return None;
            }
            o.group = Some((a.get(i + 1), a.get(i + 2)));
            i += 2;
        } else if eq_ic(arg, "NOACK") {
            if !grouped {
                ctx.r.error(
                    "ERR The NOACK option is only supported by XREADGROUP. You called XREAD instead.",
                );
                return None;
            }
            o.noack = true;
        } else {
            ctx.r.error(SYNTAX);
            return None;
        }
        i += 1;
    }
    if o.keys_at == 0 {
        ctx.r.error(SYNTAX);
        return None;
    }
    if grouped && o.group.is_none() {
        ctx.r.error("ERR Missing GROUP option for XREADGROUP");
        return None;
    }
    Some(o)
}

/// Where a read starts, per stream.
#[derive(Clone, Copy, PartialEq, Eq)]
enum From {
    /// Entries after this ID (`$` resolved, or given).
    After(StreamId),
    /// `>`: entries the group has not delivered yet.
    New,
}

/// One item of a reply: an entry, or a pending ID whose entry is gone.
enum Item {
    Entry(Entry),
    Gone(StreamId),
}

pub fn xread(ctx: &mut Ctx, a: &Args) {
    read_generic(ctx, a, false)
}

pub fn xreadgroup(ctx: &mut Ctx, a: &Args) {
    read_generic(ctx, a, true)
}

fn read_generic(ctx: &mut Ctx, a: &Args, grouped: bool) {
    let Some(o) = parse_opts(ctx, a, grouped) else {
        return;
    };
    let retry = ctx.client.block_retry;
    let count = if retry && o.count == 0 {
        BLOCKED_DEFAULT_COUNT
    } else {
        o.count
    };
    let keys: Vec<&[u8]> = (0..o.n).map(|i| a.get(o.keys_at + i)).collect();
    let now = crate::keyspace::now_ms();
    let events = ctx.events();
    let mut m = ctx.locks.keys(keys.iter().copied());
    // Checks and IDs first, in Redis's order: a bad argument fails the
    // whole command before anything is read or delivered.
    let mut froms = Vec::with_capacity(o.n);
    for (i, key) in keys.iter().enumerate() {
        let s = m.key(key);
        let stream = match s.get(key) {
            None => None,
            Some(Value::Stream(st)) => Some(st),
            Some(_) if retry && !grouped => {
                froms.push(None);
                continue;
            }
            Some(_) if retry => {
                drop(m);
                return ctx.r.error("UNBLOCKED the stream key no longer exists");
            }
            Some(_) => return ctx.r.error(WRONGTYPE),
        };
        if let Some((group, _)) = o.group {
            let has = stream.is_some_and(|st| st.groups.contains_key(group));
            if !has {
                let gone = stream.is_none();
                drop(m);
                if retry {
                    return ctx.r.error(if gone {
                        "UNBLOCKED the stream key no longer exists"
                    } else {
                        "NOGROUP the consumer group this client was blocked on no longer exists"
                    });
                }
                return ctx.r.error(&format!(
                    "NOGROUP No such key '{}' or consumer group '{}' in XREADGROUP with GROUP option",
                    String::from_utf8_lossy(key),
                    String::from_utf8_lossy(group)
                ));
            }
        }
        let id_arg = a.get(o.keys_at + o.n + i);
        let from = if id_arg == b"$" {
            if grouped {
                drop(m);
                return ctx.r.error("ERR The $ ID is meaningless in the context of XREADGROUP: you want to read the history of this consumer by specifying a proper ID, or use the > ID to get new messages. The $ ID would just return an empty result set.");
            }
            From::After(stream.map_or(StreamId::MIN, |st| st.last_id))
        } else if id_arg == b">" {
            if !grouped {
                drop(m);
                return ctx.r.error("ERR The > ID can be specified only when calling XREADGROUP using the GROUP <group> <consumer> option.");
            }
            From::New
        } else {
            match parse_id(id_arg, 0, true, false) {
                Some((id, _)) => From::After(id),
                None => {
                    drop(m);
                    return ctx.r.error(BAD_ID);
                }
            }
        };
        froms.push(Some(from));
    }
    // Serve what can be served now.
    let mut served: Vec<(&[u8], Vec<Item>)> = Vec::new();
    let mut created = Vec::new();
    let mut dirty = 0u64;
    for (i, key) in keys.iter().enumerate() {
        let Some(from) = froms[i] else {
            continue;
        };
        let s = m.key(key);
        let Some(Value::Stream(st)) = s.get_mut(key) else {
            continue;
        };
        let st: &mut Stream = st;
        let Some((group, consumer)) = o.group else {
            let From::After(gt) = from else {
                continue;
            };
            // Served when an entry follows `gt` (nothing can when the last
            // ID does not): the same test as Redis's on the last live
            // entry, without looking for it.
            if st.length > 0 && st.last_id > gt {
                let start = gt.incr().unwrap_or(StreamId::MAX);
                let items: Vec<Item> = st
                    .range(start, StreamId::MAX, count, false)
                    .into_iter()
                    .map(Item::Entry)
                    .collect();
                if !items.is_empty() {
                    served.push((*key, items));
                }
            }
            if retry && !served.is_empty() {
                break;
            }
            continue;
        };
        let Some(mut g) = st.groups.remove(group) else {
            continue;
        };
        let history = match from {
            From::After(id) => Some(id),
            From::New => None,
        };
        // New entries for the group, read before anything changes: none
        // means nothing is served (and no consumer is created).
        let fresh = if history.is_none() && st.length > 0 && st.last_id > g.last_id {
            let start = g.last_id.incr().unwrap_or(StreamId::MAX);
            st.range(start, StreamId::MAX, count, false)
        } else {
            Vec::new()
        };
        if history.is_none() && fresh.is_empty() {
            st.groups.insert(group.to_vec(), g);
            continue;
        }
        let mut effects: Vec<Vec<Vec<u8>>> = Vec::new();
        if g.see_consumer(consumer, now) {
            created.push(*key);
            if o.noack {
                effects.push(vec![
                    b"XGROUP".to_vec(),
                    b"CREATECONSUMER".to_vec(),
                    key.to_vec(),
                    group.to_vec(),
                    consumer.to_vec(),
                ]);
            }
        }
        let mut items = Vec::new();
        if let Some(gt) = history {
            // The consumer's own pending entries after `gt`.
            let start = gt.incr().unwrap_or(StreamId::MAX);
            let take = if count > 0 { count } else { usize::MAX };
            let ids: Vec<StreamId> = g
                .consumers
                .get(consumer)
                .map(|c| c.pel.range(start..).take(take).copied().collect())
                .unwrap_or_default();
            for id in ids {
                if count > 0 && items.len() >= count {
                    break;
                }
                match st.range(id, id, 1, false).pop() {
                    Some(e) => {
                        if let Some(p) = g.pel.get_mut(&id) {
                            p.delivery_time = now;
                            p.delivery_count += 1;
                        }
                        items.push(Item::Entry(e));
                    }
                    None => items.push(Item::Gone(id)),
                }
            }
        } else {
            let mut moved = false;
            for e in fresh {
                if e.id > g.last_id {
                    st.advance_group(&mut g, e.id);
                    moved = true;
                }
                if !o.noack {
                    let last = g.last_id;
                    let p = g.assign(e.id, consumer);
                    p.delivery_time = now;
                    p.delivery_count = 1;
                    effects.push(claim_effect(key, group, e.id, p, last));
                }
                items.push(Item::Entry(e));
            }
            if o.noack && moved {
                effects.push(setid_effect(key, group, &g));
            }
        }
        st.groups.insert(group.to_vec(), g);
        for e in &effects {
            s.log(e);
        }
        dirty += 1;
        served.push((*key, items));
        if retry {
            break;
        }
    }
    drop(m);
    for key in &created {
        events.emit(ev::STREAM, "xgroup-createconsumer", key);
    }
    if dirty > 0 {
        ctx.dirty(dirty);
    }
    if !served.is_empty() {
        return reply_served(&mut ctx.r, &served);
    }
    let Some(timeout) = o.block else {
        return ctx.r.null_array();
    };
    if retry {
        return;
    }
    if ctx.locks.in_batch() {
        return ctx.r.null_array();
    }
    // Blocked: `$` is fixed now, so a wake-up looks after this moment.
    let mut owned: Vec<Vec<u8>> = a.iter().map(|x| x.to_vec()).collect();
    for (i, from) in froms.iter().enumerate() {
        if let Some(From::After(id)) = from {
            if a.get(o.keys_at + o.n + i) == b"$" {
                owned[o.keys_at + o.n + i] = id.format().into_bytes();
            }
        }
    }
    ctx.actions.push(super::Action::Block(super::Block {
        keys: keys.iter().map(|k| k.to_vec()).collect(),
        timeout_ms: timeout,
        args: OwnedArgs::from_slices(&owned),
        null_array: true,
    }));
}

fn reply_served(r: &mut crate::resp::Reply, served: &[(&[u8], Vec<Item>)]) {
    let resp3 = r.is_resp3();
    if resp3 {
        r.map(served.len());
    } else {
        r.array(served.len());
    }
    for (key, items) in served {
        if !resp3 {
            r.array(2);
        }
        r.bulk(key);
        r.array(items.len());
        for it in items {
            match it {
                Item::Entry(e) => {
                    r.array(2);
                    r.bulk(e.id.format().as_bytes());
                    r.array(e.fields.len() * 2);
                    for (f, v) in &e.fields {
                        r.bulk(f);
                        r.bulk(v);
                    }
                }
                Item::Gone(id) => {
                    r.array(2);
                    r.bulk(id.format().as_bytes());
                    r.null_array();
                }
            }
        }
    }
}
