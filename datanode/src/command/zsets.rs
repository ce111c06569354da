//! Sorted set commands.

use rand::Rng;

use super::keys::{parse_cursor, parse_scan_opts};
use super::typed::{lookup, removed_events, settle, with_typed, Typed};
use super::{eq_ic, ev, int_arg, Args, Ctx, NOT_FLOAT, NOT_INT, SYNTAX, WRONGTYPE};
use crate::glob::glob_match;
use crate::keyspace::{SlotRef, Value, ZSetObj};
use crate::resp::parse_i64;

fn pop_event(max: bool) -> &'static str {
    if max {
        "zpopmax"
    } else {
        "zpopmin"
    }
}

fn log_args(s: &SlotRef, a: &Args) {
    if s.db.log.is_active() {
        let v: Vec<&[u8]> = a.iter().collect();
        s.log(&v);
    }
}

/// A score as Redis's strtod-based parser reads it (inf allowed, NaN not).
pub fn parse_score(b: &[u8]) -> Option<f64> {
    super::parse_float(b)
}

fn fmt(score: f64) -> Vec<u8> {
    let mut b = [0u8; 32];
    crate::util::fmt_double(score, &mut b).to_vec()
}

pub fn zadd(ctx: &mut Ctx, a: &Args) {
    zadd_generic(ctx, a, false)
}

pub fn zincrby(ctx: &mut Ctx, a: &Args) {
    zadd_generic(ctx, a, true)
}

fn zadd_generic(ctx: &mut Ctx, a: &Args, incrby: bool) {
    let key = a.get(1);
    let (mut nx, mut xx, mut gt, mut lt, mut ch, mut incr) =
        (false, false, false, false, false, incrby);
    let mut i = 2;
    if !incrby {
        while i < a.len() {
            let t = a.get(i);
            if eq_ic(t, "NX") {
                nx = true;
            } else if eq_ic(t, "XX") {
                xx = true;
            } else if eq_ic(t, "GT") {
                gt = true;
            } else if eq_ic(t, "LT") {
                lt = true;
            } else if eq_ic(t, "CH") {
                ch = true;
            } else if eq_ic(t, "INCR") {
                incr = true;
            } else {
                break;
            }
            i += 1;
        }
    }
    let pairs = a.len() - i;
    if pairs == 0 || !pairs.is_multiple_of(2) {
        return ctx.r.error(SYNTAX);
    }
    if nx && xx {
        return ctx
            .r
            .error("ERR XX and NX options at the same time are not compatible");
    }
    if (nx && (gt || lt)) || (gt && lt) {
        return ctx
            .r
            .error("ERR GT, LT, and/or NX options at the same time are not compatible");
    }
    if incr && pairs > 2 {
        return ctx
            .r
            .error("ERR INCR option supports a single increment-element pair");
    }
    let mut elems = Vec::with_capacity(pairs / 2);
    while i < a.len() {
        let Some(score) = parse_score(a.get(i)) else {
            return ctx.r.error(NOT_FLOAT);
        };
        elems.push((score, a.get(i + 1)));
        i += 2;
    }
    let events = ctx.events();
    let mut s = ctx.locks.key(key);
    let z = match lookup::<ZSetObj>(&mut s, key) {
        Typed::Wrong => return ctx.r.error(WRONGTYPE),
        Typed::Found(_) => None,
        Typed::Missing if xx => {
            drop(s);
            return if incr { ctx.r.null() } else { ctx.r.int(0) };
        }
        Typed::Missing => Some(ZSetObj::default()),
    };
    if let Some(z) = z {
        s.set(key, Value::ZSet(Box::new(z)), false);
    }
    let Typed::Found(z) = lookup::<ZSetObj>(&mut s, key) else {
        return;
    };
    let (mut added, mut changed) = (0, 0);
    let mut incr_result: Option<f64> = None;
    let mut effects: Vec<(f64, Vec<u8>)> = Vec::new();
    for (score, m) in elems {
        let cur = z.score(m);
        if (nx && cur.is_some()) || (xx && cur.is_none()) {
            continue;
        }
        let new = if incr {
            // A new member takes the increment as it is (-0 stays -0).
            let n = cur.map_or(score, |c| c + score);
            if n.is_nan() {
                drop(s);
                return ctx.r.error("ERR resulting score is not a number (NaN)");
            }
            n
        } else {
            score
        };
        if let Some(c) = cur {
            if (gt && new <= c) || (lt && new >= c) {
                continue;
            }
        }
        incr_result = Some(new);
        match z.insert(m, new) {
            None => added += 1,
            Some(old) if old != new => changed += 1,
            _ => {}
        }
        effects.push((new, m.to_vec()));
    }
    settle::<ZSetObj>(&mut s, key);
    if added > 0 {
        // Clients blocked in BZPOP* on this key may now proceed.
        s.signal_ready(key);
    }
    if !effects.is_empty() {
        let scores: Vec<Vec<u8>> = effects.iter().map(|(sc, _)| fmt(*sc)).collect();
        let mut eff: Vec<&[u8]> = vec![b"ZADD", key];
        for ((_, m), sc) in effects.iter().zip(&scores) {
            eff.push(sc);
            eff.push(m);
        }
        s.log(&eff);
    }
    if added + changed > 0 {
        events.emit(ev::ZSET, if incr { "zincr" } else { "zadd" }, key);
    }
    drop(s);
    ctx.dirty((added + changed) as u64);
    if incr {
        match incr_result {
            Some(v) => ctx.r.double(v),
            None => ctx.r.null(),
        }
    } else {
        ctx.r.int(if ch { added + changed } else { added });
    }
}

pub fn zrem(ctx: &mut Ctx, a: &Args) {
    let key = a.get(1);
    let events = ctx.events();
    let mut s = ctx.locks.key(key);
    let n = match lookup::<ZSetObj>(&mut s, key) {
        Typed::Wrong => return ctx.r.error(WRONGTYPE),
        Typed::Missing => 0,
        Typed::Found(z) => a.iter().skip(2).filter(|m| z.remove(m)).count(),
    };
    if n > 0 {
        let deleted = settle::<ZSetObj>(&mut s, key);
        log_args(&s, a);
        removed_events(&events, ev::ZSET, "zrem", key, deleted);
        drop(s);
        ctx.dirty(n as u64);
    }
    ctx.r.int(n as i64);
}

pub fn zscore(ctx: &mut Ctx, a: &Args) {
    with_typed!(
        ctx,
        ZSetObj,
        a.get(1),
        ctx.r.null(),
        |z| match z.score(a.get(2)) {
            Some(v) => ctx.r.double(v),
            None => ctx.r.null(),
        }
    )
}

pub fn zmscore(ctx: &mut Ctx, a: &Args) {
    let n = a.len() - 2;
    with_typed!(
        ctx,
        ZSetObj,
        a.get(1),
        {
            ctx.r.array(n);
            for _ in 0..n {
                ctx.r.null();
            }
        },
        |z| {
            ctx.r.array(n);
            for m in a.iter().skip(2) {
                match z.score(m) {
                    Some(v) => ctx.r.double(v),
                    None => ctx.r.null(),
                }
            }
        }
    )
}

pub fn zcard(ctx: &mut Ctx, a: &Args) {
    with_typed!(ctx, ZSetObj, a.get(1), ctx.r.int(0), |z| ctx
        .r
        .int(z.len() as i64))
}

fn rank_generic(ctx: &mut Ctx, a: &Args, rev: bool) {
    with_typed!(ctx, ZSetObj, a.get(1), ctx.r.null(), |z| {
        let m = a.get(2);
        match z.score(m).and_then(|s| z.tree.rank(s, m)) {
            Some(r) => ctx.r.int(if rev { z.len() - 1 - r } else { r } as i64),
            None => ctx.r.null(),
        }
    })
}

pub fn zrank(ctx: &mut Ctx, a: &Args) {
    rank_generic(ctx, a, false)
}
pub fn zrevrank(ctx: &mut Ctx, a: &Args) {
    rank_generic(ctx, a, true)
}

#[derive(Clone, Copy)]
struct ScoreBound {
    v: f64,
    excl: bool,
}

/// A score range bound as zslParseRange reads it: "(" makes it
/// exclusive, then strtod must reach the end of the string (a NUL ends
/// it). Unlike a score, an empty bound is 0, white space may lead and
/// overflow gives ±inf.
fn parse_score_bound(b: &[u8]) -> Option<ScoreBound> {
    let (excl, rest) = match b.first() {
        Some(b'(') => (true, &b[1..]),
        _ => (false, b),
    };
    let p = crate::strtod::strtod(rest);
    let end = rest.iter().position(|&c| c == 0).unwrap_or(rest.len());
    (p.used == end && !p.value.is_nan()).then_some(ScoreBound { v: p.value, excl })
}

#[derive(Clone)]
enum LexBound {
    Min,
    Max,
    Incl(Vec<u8>),
    Excl(Vec<u8>),
}

fn parse_lex_bound(b: &[u8]) -> Option<LexBound> {
    match b.first() {
        Some(b'-') if b.len() == 1 => Some(LexBound::Min),
        Some(b'+') if b.len() == 1 => Some(LexBound::Max),
        Some(b'[') => Some(LexBound::Incl(b[1..].to_vec())),
        Some(b'(') => Some(LexBound::Excl(b[1..].to_vec())),
        _ => None,
    }
}

/// Rank range [start, end) of elements with min <= score <= max.
fn score_span(z: &ZSetObj, min: ScoreBound, max: ScoreBound) -> (usize, usize) {
    let start = z
        .tree
        .count_before(|s, _| if min.excl { s > min.v } else { s >= min.v });
    let end = z
        .tree
        .count_before(|s, _| if max.excl { s >= max.v } else { s > max.v });
    (start, end.max(start))
}

impl LexBound {
    /// Order of bounds as Redis's sdscmplex sees them: `-` below every
    /// string, `+` above; `[x` and `(x` compare by x alone.
    fn cmp(&self, other: &LexBound) -> std::cmp::Ordering {
        fn key(b: &LexBound) -> (u8, &[u8]) {
            match b {
                LexBound::Min => (0, &[]),
                LexBound::Incl(x) | LexBound::Excl(x) => (1, x),
                LexBound::Max => (2, &[]),
            }
        }
        key(self).cmp(&key(other))
    }

    fn excl(&self) -> bool {
        matches!(self, LexBound::Excl(_))
    }

    /// Whether `m` is at or above this bound taken as a minimum.
    fn below(&self, m: &[u8]) -> bool {
        match self {
            LexBound::Min => true,
            LexBound::Max => false,
            LexBound::Incl(x) => m >= x.as_slice(),
            LexBound::Excl(x) => m > x.as_slice(),
        }
    }

    /// Whether `m` is at or below this bound taken as a maximum.
    fn above(&self, m: &[u8]) -> bool {
        match self {
            LexBound::Min => false,
            LexBound::Max => true,
            LexBound::Incl(x) => m <= x.as_slice(),
            LexBound::Excl(x) => m < x.as_slice(),
        }
    }
}

/// Where a lex range starts, as Redis finds it: the first element at or
/// above `min` (the last at or below `max` when reversed), which must
/// also be within the other bound, then `offset` elements on without
/// looking at them. The caller walks on while the far bound holds.
///
/// Members of one score (what lex ranges are for) sort by member, and
/// this is the plain range. With mixed scores the walk follows Redis's
/// steps, so a set Redis keeps as a listpack (found by a scan from the
/// end) gives its exact answer; a big set is searched by halving, as
/// Redis's skiplist descent is, whose answer then depends on its random
/// levels anyway.
fn lex_start(
    z: &ZSetObj,
    min: &LexBound,
    max: &LexBound,
    rev: bool,
    offset: usize,
) -> Option<usize> {
    let n = z.len();
    let c = min.cmp(max);
    if n == 0 || c.is_gt() || (c.is_eq() && (min.excl() || max.excl())) {
        return None;
    }
    let (_, first) = z.tree.select(0)?;
    let (_, last) = z.tree.select(n - 1)?;
    if !min.below(last) || !max.above(first) {
        return None;
    }
    let at = if !rev {
        let i = if z.big {
            z.tree.count_before(|_, m| min.below(m))
        } else {
            z.tree.iter_from(0).position(|(_, m)| min.below(m))?
        };
        let (_, m) = z.tree.select(i)?;
        if !max.above(m) {
            return None;
        }
        i.checked_add(offset).filter(|&i| i < n)?
    } else {
        let i = if z.big {
            z.tree.count_before(|_, m| !max.above(m)).checked_sub(1)?
        } else {
            n - 1 - z.tree.walk(n - 1, true).position(|(_, m)| max.above(m))?
        };
        let (_, m) = z.tree.select(i)?;
        if !min.below(m) {
            return None;
        }
        i.checked_sub(offset)?
    };
    Some(at)
}

/// The elements of a lex range, at most `limit` of them (all if None).
fn lex_items<'a>(
    z: &'a ZSetObj,
    min: &'a LexBound,
    max: &'a LexBound,
    rev: bool,
    offset: usize,
    limit: Option<usize>,
) -> impl Iterator<Item = (f64, &'a [u8])> + 'a {
    let start = lex_start(z, min, max, rev, offset);
    start
        .into_iter()
        .flat_map(move |i| z.tree.walk(i, rev))
        .take_while(move |(_, m)| if rev { min.below(m) } else { max.above(m) })
        .take(limit.unwrap_or(usize::MAX))
}

pub fn zcount(ctx: &mut Ctx, a: &Args) {
    let (Some(min), Some(max)) = (parse_score_bound(a.get(2)), parse_score_bound(a.get(3))) else {
        return ctx.r.error("ERR min or max is not a float");
    };
    with_typed!(ctx, ZSetObj, a.get(1), ctx.r.int(0), |z| {
        let (s0, e0) = score_span(z, min, max);
        ctx.r.int((e0 - s0) as i64)
    })
}

pub fn zlexcount(ctx: &mut Ctx, a: &Args) {
    let (Some(min), Some(max)) = (parse_lex_bound(a.get(2)), parse_lex_bound(a.get(3))) else {
        return ctx.r.error("ERR min or max not valid string range item");
    };
    with_typed!(ctx, ZSetObj, a.get(1), ctx.r.int(0), |z| {
        let n = if z.big {
            // Redis counts a skiplist's range by the ranks of its ends.
            match (
                lex_start(z, &min, &max, false, 0),
                lex_start(z, &min, &max, true, 0),
            ) {
                (Some(first), Some(last)) => (last + 1).saturating_sub(first),
                _ => 0,
            }
        } else {
            lex_items(z, &min, &max, false, 0, None).count()
        };
        ctx.r.int(n as i64)
    })
}

#[derive(Clone, Copy, PartialEq)]
enum By {
    Rank,
    Score,
    Lex,
}

struct RangeSpec {
    by: By,
    rev: bool,
    limit: Option<(i64, i64)>,
    withscores: bool,
}

fn write_elems(ctx: &mut Ctx, items: &[(Vec<u8>, f64)], withscores: bool) {
    if withscores && ctx.r.is_resp3() {
        ctx.r.array(items.len());
        for (m, s) in items {
            ctx.r.array(2);
            ctx.r.bulk(m);
            ctx.r.double(*s);
        }
    } else {
        ctx.r.array(items.len() * if withscores { 2 } else { 1 });
        for (m, s) in items {
            ctx.r.bulk(m);
            if withscores {
                ctx.r.double(*s);
            }
        }
    }
}

/// Selects the elements a ZRANGE-family call asks for; Err after replying.
fn select(
    r: &mut crate::resp::Reply,
    z: &ZSetObj,
    spec: &RangeSpec,
    lo: &[u8],
    hi: &[u8],
) -> Result<Vec<(Vec<u8>, f64)>, ()> {
    let len = z.len();
    // Ranks [start, end) in ascending order, then reversed if asked.
    let (start, end) = match spec.by {
        By::Rank => {
            let (Some(mut s0), Some(mut e0)) = (parse_i64(lo), parse_i64(hi)) else {
                r.error(NOT_INT);
                return Err(());
            };
            let n = len as i64;
            if s0 < 0 {
                s0 += n;
            }
            if e0 < 0 {
                e0 += n;
            }
            if s0 < 0 {
                s0 = 0;
            }
            if s0 > e0 || s0 >= n {
                return Ok(Vec::new());
            }
            if e0 >= n {
                e0 = n - 1;
            }
            if spec.rev {
                ((n - 1 - e0) as usize, (n - s0) as usize)
            } else {
                (s0 as usize, e0 as usize + 1)
            }
        }
        By::Score => {
            // REV takes max first.
            let (a1, a2) = if spec.rev { (hi, lo) } else { (lo, hi) };
            let (Some(min), Some(max)) = (parse_score_bound(a1), parse_score_bound(a2)) else {
                r.error("ERR min or max is not a float");
                return Err(());
            };
            score_span(z, min, max)
        }
        By::Lex => {
            let (a1, a2) = if spec.rev { (hi, lo) } else { (lo, hi) };
            let (Some(min), Some(max)) = (parse_lex_bound(a1), parse_lex_bound(a2)) else {
                r.error("ERR min or max not valid string range item");
                return Err(());
            };
            // A lex range is walked, not cut out by ranks (see lex_start).
            let (offset, limit) = match spec.limit {
                None => (0, None),
                Some((off, _)) if off < 0 => return Ok(Vec::new()),
                Some((off, cnt)) => (off as usize, usize::try_from(cnt).ok()),
            };
            let items = lex_items(z, &min, &max, spec.rev, offset, limit);
            return Ok(items.map(|(s, m)| (m.to_vec(), s)).collect());
        }
    };
    if start >= end {
        return Ok(Vec::new());
    }
    // One walk of the tree over the span, from its far end when reversed.
    let first = if spec.rev { end - 1 } else { start };
    let mut items: Box<dyn Iterator<Item = (f64, &[u8])>> =
        Box::new(z.tree.walk(first, spec.rev).take(end - start));
    if let Some((off, cnt)) = spec.limit {
        if off < 0 {
            return Ok(Vec::new());
        }
        items = Box::new(items.skip(off as usize));
        if cnt >= 0 {
            items = Box::new(items.take(cnt as usize));
        }
    }
    Ok(items.map(|(s, m)| (m.to_vec(), s)).collect())
}

fn parse_range_opts(
    ctx: &mut Ctx,
    a: &Args,
    from: usize,
    mut spec: RangeSpec,
    allow_by: bool,
) -> Option<RangeSpec> {
    let mut i = from;
    while i < a.len() {
        let t = a.get(i);
        if eq_ic(t, "WITHSCORES") {
            spec.withscores = true;
        } else if eq_ic(t, "LIMIT") && i + 2 < a.len() {
            let (Some(o), Some(c)) = (parse_i64(a.get(i + 1)), parse_i64(a.get(i + 2))) else {
                ctx.r.error(NOT_INT);
                return None;
            };
            spec.limit = Some((o, c));
            i += 2;
        } else if allow_by && eq_ic(t, "BYSCORE") {
            spec.by = By::Score;
        } else if allow_by && eq_ic(t, "BYLEX") {
            spec.by = By::Lex;
        } else if allow_by && eq_ic(t, "REV") {
            spec.rev = true;
        } else {
            ctx.r.error(SYNTAX);
            return None;
        }
        i += 1;
    }
    // Redis only refuses a LIMIT that limits: `LIMIT <offset> -1` on a
    // rank range passes, and is ignored.
    if spec.by == By::Rank && matches!(spec.limit, Some((_, -1))) {
        spec.limit = None;
    }
    if spec.limit.is_some() && spec.by == By::Rank {
        ctx.r.error(
            "ERR syntax error, LIMIT is only supported in combination with either BYSCORE or BYLEX",
        );
        return None;
    }
    if spec.withscores && spec.by == By::Lex {
        ctx.r
            .error("ERR syntax error, WITHSCORES not supported in combination with BYLEX");
        return None;
    }
    Some(spec)
}

fn range_cmd(ctx: &mut Ctx, a: &Args, by: By, rev: bool, allow_by: bool, allow_scores: bool) {
    let spec = RangeSpec {
        by,
        rev,
        limit: None,
        withscores: false,
    };
    let Some(spec) = parse_range_opts(ctx, a, 4, spec, allow_by) else {
        return;
    };
    if spec.withscores && !allow_scores {
        return ctx.r.error(SYNTAX);
    }
    let key = a.get(1);
    let mut s = ctx.locks.key(key);
    let items = match s.get(key) {
        // A missing key still has its range checked, as in Redis.
        None => match select(&mut ctx.r, &ZSetObj::default(), &spec, a.get(2), a.get(3)) {
            Ok(v) => v,
            Err(()) => return,
        },
        Some(Value::ZSet(z)) => {
            let z: &ZSetObj = z;
            match select(&mut ctx.r, z, &spec, a.get(2), a.get(3)) {
                Ok(v) => v,
                Err(()) => return,
            }
        }
        Some(_) => return ctx.r.error(WRONGTYPE),
    };
    drop(s);
    write_elems(ctx, &items, spec.withscores);
}

pub fn zrange(ctx: &mut Ctx, a: &Args) {
    range_cmd(ctx, a, By::Rank, false, true, true)
}
pub fn zrevrange(ctx: &mut Ctx, a: &Args) {
    range_cmd(ctx, a, By::Rank, true, false, true)
}
pub fn zrangebyscore(ctx: &mut Ctx, a: &Args) {
    range_cmd(ctx, a, By::Score, false, false, true)
}
pub fn zrevrangebyscore(ctx: &mut Ctx, a: &Args) {
    range_cmd(ctx, a, By::Score, true, false, true)
}
pub fn zrangebylex(ctx: &mut Ctx, a: &Args) {
    range_cmd(ctx, a, By::Lex, false, false, false)
}
pub fn zrevrangebylex(ctx: &mut Ctx, a: &Args) {
    range_cmd(ctx, a, By::Lex, true, false, false)
}

fn pop_generic(ctx: &mut Ctx, a: &Args, max: bool) {
    let key = a.get(1);
    if a.len() > 3 {
        return ctx.r.error(SYNTAX);
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
    let popped: Vec<(Vec<u8>, f64)> = match lookup::<ZSetObj>(&mut s, key) {
        Typed::Wrong => return ctx.r.error(WRONGTYPE),
        Typed::Missing => Vec::new(),
        Typed::Found(z) => {
            let n = count.unwrap_or(1).min(z.len());
            let mut out = Vec::with_capacity(n);
            for _ in 0..n {
                let r = if max { z.len() - 1 } else { 0 };
                let Some((sc, m)) = z.tree.select(r).map(|(sc, m)| (sc, m.to_vec())) else {
                    break;
                };
                z.remove(&m);
                out.push((m, sc));
            }
            out
        }
    };
    if !popped.is_empty() {
        let deleted = settle::<ZSetObj>(&mut s, key);
        let mut eff: Vec<&[u8]> = vec![b"ZREM", key];
        eff.extend(popped.iter().map(|(m, _)| m.as_slice()));
        s.log(&eff);
        removed_events(&events, ev::ZSET, pop_event(max), key, deleted);
    }
    drop(s);
    ctx.dirty(popped.len() as u64);
    match count {
        None if ctx.r.is_resp3() => {
            // RESP3 without COUNT: one flat pair (or an empty array).
            ctx.r.array(popped.len() * 2);
            for (m, sc) in &popped {
                ctx.r.bulk(m);
                ctx.r.double(*sc);
            }
        }
        _ => write_elems(ctx, &popped, true),
    }
}

pub fn zpopmin(ctx: &mut Ctx, a: &Args) {
    pop_generic(ctx, a, false)
}
pub fn zpopmax(ctx: &mut Ctx, a: &Args) {
    pop_generic(ctx, a, true)
}

fn remrange(ctx: &mut Ctx, a: &Args, by: By, event: &'static str) {
    let key = a.get(1);
    let spec = RangeSpec {
        by,
        rev: false,
        limit: None,
        withscores: false,
    };
    let events = ctx.events();
    let mut s = ctx.locks.key(key);
    let items = match s.get(key) {
        None => {
            drop(s);
            // Validate the range even for a missing key, as Redis does.
            let empty = ZSetObj::default();
            if select(&mut ctx.r, &empty, &spec, a.get(2), a.get(3)).is_ok() {
                ctx.r.int(0);
            }
            return;
        }
        Some(Value::ZSet(z)) => {
            let z: &ZSetObj = z;
            match select(&mut ctx.r, z, &spec, a.get(2), a.get(3)) {
                Ok(v) => v,
                Err(()) => return,
            }
        }
        Some(_) => return ctx.r.error(WRONGTYPE),
    };
    if let Typed::Found(z) = lookup::<ZSetObj>(&mut s, key) {
        for (m, _) in &items {
            z.remove(m);
        }
    }
    if !items.is_empty() {
        let deleted = settle::<ZSetObj>(&mut s, key);
        log_args(&s, a);
        removed_events(&events, ev::ZSET, event, key, deleted);
    }
    drop(s);
    ctx.dirty(items.len() as u64);
    ctx.r.int(items.len() as i64);
}

pub fn zremrangebyrank(ctx: &mut Ctx, a: &Args) {
    remrange(ctx, a, By::Rank, "zremrangebyrank")
}
pub fn zremrangebyscore(ctx: &mut Ctx, a: &Args) {
    remrange(ctx, a, By::Score, "zremrangebyscore")
}
pub fn zremrangebylex(ctx: &mut Ctx, a: &Args) {
    remrange(ctx, a, By::Lex, "zremrangebylex")
}

pub fn zrandmember(ctx: &mut Ctx, a: &Args) {
    let key = a.get(1);
    let mut count: Option<i64> = None;
    let mut withscores = false;
    if a.len() >= 3 {
        let Some(c) = int_arg(ctx, a.get(2)) else {
            return;
        };
        if c == i64::MIN {
            return ctx.r.error(super::COUNT_RANGE);
        }
        count = Some(c);
        if a.len() == 4 && eq_ic(a.get(3), "WITHSCORES") {
            withscores = true;
        } else if a.len() >= 4 {
            return ctx.r.error(SYNTAX);
        }
        if withscores && !(-(i64::MAX / 2)..=i64::MAX / 2).contains(&c) {
            return ctx.r.error("ERR value is out of range");
        }
    }
    let mut s = ctx.locks.key(key);
    let all: Vec<(Vec<u8>, f64)> = match s.get(key) {
        None => Vec::new(),
        Some(Value::ZSet(z)) => z.range(0, z.len().saturating_sub(1)),
        Some(_) => return ctx.r.error(WRONGTYPE),
    };
    drop(s);
    let mut rng = rand::rng();
    let Some(c) = count else {
        return match all.is_empty() {
            true => ctx.r.null(),
            false => ctx.r.bulk(&all[rng.random_range(0..all.len())].0),
        };
    };
    if all.is_empty() {
        return ctx.r.array(0);
    }
    if c >= 0 {
        let c = c as usize;
        if c >= all.len() {
            return write_elems(ctx, &all, withscores);
        }
        let picks = rand::seq::index::sample(&mut rng, all.len(), c).into_vec();
        let items: Vec<(Vec<u8>, f64)> = picks.into_iter().map(|i| all[i].clone()).collect();
        return write_elems(ctx, &items, withscores);
    }
    // Negative: repeated picks drawn while writing, so the client's count
    // never sizes an allocation.
    let n = c.unsigned_abs() as usize;
    let resp3 = ctx.r.is_resp3();
    ctx.r.array(if withscores && !resp3 { n * 2 } else { n });
    for j in 0..n {
        if j % 1024 == 1023 && super::reply_over_limit(ctx.client, &ctx.r) {
            break;
        }
        let (m, sc) = &all[rng.random_range(0..all.len())];
        if withscores && resp3 {
            ctx.r.array(2);
        }
        ctx.r.bulk(m);
        if withscores {
            ctx.r.double(*sc);
        }
    }
}

pub fn zscan(ctx: &mut Ctx, a: &Args) {
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
        Some(Value::ZSet(z)) => {
            let all = z.range(0, z.len().saturating_sub(1));
            let len = all.len();
            if !z.big {
                (all, 0)
            } else {
                let hashed = all
                    .into_iter()
                    .map(|(m, sc)| (crate::keyspace::slot::hash(&m), (m, sc)));
                super::cursor::step(hashed, len, cursor, o.count)
            }
        }
        Some(_) => return ctx.r.error(WRONGTYPE),
    };
    drop(s);
    let kept: Vec<(Vec<u8>, f64)> = items
        .into_iter()
        .filter(|(m, _)| o.pattern.is_none_or(|p| glob_match(p, m, false)))
        .collect();
    ctx.r.array(2);
    let mut b = itoa::Buffer::new();
    ctx.r.bulk(b.format(next).as_bytes());
    ctx.r.array(kept.len() * 2);
    for (m, sc) in kept {
        ctx.r.bulk(&m);
        // SCAN replies carry scores as bulk strings in both protocols.
        ctx.r.bulk(&fmt(sc));
    }
}

/// Members with their scores, in order.
type Elems = Vec<(Vec<u8>, f64)>;

#[derive(Clone, Copy, PartialEq)]
enum SetOp {
    Union,
    Inter,
    Diff,
}

#[derive(Clone, Copy)]
enum Agg {
    Sum,
    Min,
    Max,
}

/// Reads the sorted sets (or plain sets, score 1) at `keys`; None for a
/// missing key. Err after replying WRONGTYPE.
fn read_inputs(
    ctx: &mut Ctx,
    keys: &[&[u8]],
    extra: Option<&[u8]>,
) -> Result<Vec<Option<Elems>>, ()> {
    let mut m = ctx.locks.keys(keys.iter().copied().chain(extra));
    let mut out = Vec::with_capacity(keys.len());
    for k in keys {
        match m.key(k).get(k) {
            None => out.push(None),
            Some(Value::ZSet(z)) => out.push(Some(z.range(0, z.len().saturating_sub(1)))),
            Some(Value::Set(s)) => {
                out.push(Some(s.members().into_iter().map(|x| (x, 1.0)).collect()))
            }
            Some(_) => {
                drop(m);
                ctx.r.error(WRONGTYPE);
                return Err(());
            }
        }
    }
    Ok(out)
}

/// Parses `numkeys key… [WEIGHTS w…] [AGGREGATE …] [WITHSCORES]` from `at`.
struct OpArgs<'a> {
    keys: Vec<&'a [u8]>,
    weights: Vec<f64>,
    agg: Agg,
    withscores: bool,
}

fn parse_op_args<'a>(
    ctx: &mut Ctx,
    a: &Args<'a>,
    at: usize,
    op: SetOp,
    name: &str,
    allow_scores: bool,
) -> Option<OpArgs<'a>> {
    let n = match parse_i64(a.get(at)) {
        Some(n) if n >= 1 => n as usize,
        Some(_) => {
            ctx.r.error(&format!(
                "ERR at least 1 input key is needed for '{name}' command"
            ));
            return None;
        }
        None => {
            ctx.r.error(NOT_INT);
            return None;
        }
    };
    if at + 1 + n > a.len() {
        ctx.r.error(SYNTAX);
        return None;
    }
    let keys: Vec<&[u8]> = (at + 1..at + 1 + n).map(|i| a.get(i)).collect();
    let mut o = OpArgs {
        keys,
        weights: vec![1.0; n],
        agg: Agg::Sum,
        withscores: false,
    };
    let mut i = at + 1 + n;
    while i < a.len() {
        let t = a.get(i);
        if op != SetOp::Diff && eq_ic(t, "WEIGHTS") && i + n < a.len() {
            for j in 0..n {
                match parse_score(a.get(i + 1 + j)) {
                    Some(w) => o.weights[j] = w,
                    None => {
                        ctx.r.error("ERR weight value is not a float");
                        return None;
                    }
                }
            }
            i += n;
        } else if op != SetOp::Diff && eq_ic(t, "AGGREGATE") && i + 1 < a.len() {
            let v = a.get(i + 1);
            o.agg = if eq_ic(v, "SUM") {
                Agg::Sum
            } else if eq_ic(v, "MIN") {
                Agg::Min
            } else if eq_ic(v, "MAX") {
                Agg::Max
            } else {
                ctx.r.error(SYNTAX);
                return None;
            };
            i += 1;
        } else if allow_scores && eq_ic(t, "WITHSCORES") {
            o.withscores = true;
        } else {
            ctx.r.error(SYNTAX);
            return None;
        }
        i += 1;
    }
    Some(o)
}

fn compute(inputs: Vec<Option<Elems>>, o: &OpArgs, op: SetOp) -> Elems {
    // As zunionInterAggregate compares (so 0 and -0 keep the first).
    let agg = |acc: f64, v: f64| -> f64 {
        let r = match o.agg {
            Agg::Sum => acc + v,
            Agg::Min => {
                if v < acc {
                    v
                } else {
                    acc
                }
            }
            Agg::Max => {
                if v > acc {
                    v
                } else {
                    acc
                }
            }
        };
        // inf + -inf: Redis uses 0.
        if r.is_nan() {
            0.0
        } else {
            r
        }
    };
    let weighted = |s: f64, w: f64| {
        let r = s * w;
        if r.is_nan() {
            0.0
        } else {
            r
        }
    };
    // Redis takes the inputs from the smallest to the largest (a stable
    // sort, as glibc's qsort is here), and scores add up in that order.
    let len = |i: &Option<Elems>| i.as_ref().map_or(0, |e| e.len());
    let mut order: Vec<usize> = (0..inputs.len()).collect();
    if op != SetOp::Diff {
        order.sort_by_key(|&i| len(&inputs[i]));
    }
    let mut acc: crate::keyspace::value::FastMap<Vec<u8>, f64> = Default::default();
    match op {
        SetOp::Union => {
            for &i in &order {
                let inp = &inputs[i];
                for (m, s) in inp.iter().flatten() {
                    let v = weighted(*s, o.weights[i]);
                    acc.entry(m.clone())
                        .and_modify(|x| *x = agg(*x, v))
                        .or_insert(v);
                }
            }
        }
        SetOp::Inter => {
            if inputs.iter().any(|i| i.is_none()) {
                return Vec::new();
            }
            let maps: Vec<(usize, crate::keyspace::value::FastMap<&[u8], f64>)> = order[1..]
                .iter()
                .map(|&i| {
                    let map = inputs[i]
                        .iter()
                        .flatten()
                        .map(|(m, s)| (m.as_slice(), *s))
                        .collect();
                    (i, map)
                })
                .collect();
            let first = order[0];
            'outer: for (m, s) in inputs[first].iter().flatten() {
                let mut v = weighted(*s, o.weights[first]);
                for (j, mp) in &maps {
                    match mp.get(m.as_slice()) {
                        // Only the first input's product has NaN made 0
                        // (zunionInterDiffGenericCommand): inf * 0 here
                        // makes the sum NaN, which the aggregate makes 0.
                        Some(s2) => v = agg(v, *s2 * o.weights[*j]),
                        None => continue 'outer,
                    }
                }
                acc.insert(m.clone(), v);
            }
        }
        SetOp::Diff => {
            let others: Vec<std::collections::HashSet<&[u8]>> = inputs[1..]
                .iter()
                .map(|i| i.iter().flatten().map(|(m, _)| m.as_slice()).collect())
                .collect();
            for (m, s) in inputs[0].iter().flatten() {
                if !others.iter().any(|o| o.contains(m.as_slice())) {
                    acc.insert(m.clone(), *s);
                }
            }
        }
    }
    let mut out: Vec<(Vec<u8>, f64)> = acc.into_iter().collect();
    out.sort_by(|a, b| crate::keyspace::ranktree::cmp_entry(a.1, &a.0, b.1, &b.0));
    out
}

fn op_reply(ctx: &mut Ctx, a: &Args, op: SetOp, name: &str) {
    let Some(o) = parse_op_args(ctx, a, 1, op, name, true) else {
        return;
    };
    let Ok(inputs) = read_inputs(ctx, &o.keys, None) else {
        return;
    };
    let items = compute(inputs, &o, op);
    write_elems(ctx, &items, o.withscores);
}

/// Replaces `dst` with `items` (deleting it when empty); logs the result.
/// `event` names the command for keyspace notifications.
pub fn store_result(ctx: &mut Ctx, dst: &[u8], items: &[(Vec<u8>, f64)], event: &'static str) {
    let events = ctx.events();
    let mut s = ctx.locks.key(dst);
    let mut eff_scores = Vec::new();
    if items.is_empty() {
        if s.delete_freeing(dst, &crate::keyspace::lazyfree::SERVER_DEL) {
            events.emit(ev::GENERIC, "del", dst);
        }
    } else {
        let mut z = ZSetObj::default();
        for (m, sc) in items {
            z.insert(m, *sc);
            eff_scores.push(fmt(*sc));
        }
        // Overwritten in place: an existing key is not a new one.
        s.set(dst, Value::ZSet(Box::new(z)), false);
        events.emit(ev::ZSET, event, dst);
    }
    s.log(&[b"DEL".as_slice(), dst]);
    if !items.is_empty() {
        let mut eff: Vec<&[u8]> = vec![b"ZADD", dst];
        for ((m, _), sc) in items.iter().zip(&eff_scores) {
            eff.push(sc);
            eff.push(m);
        }
        s.log(&eff);
    }
    drop(s);
    ctx.dirty(1);
    ctx.r.int(items.len() as i64);
}

fn op_store(ctx: &mut Ctx, a: &Args, op: SetOp, name: &'static str) {
    let dst = a.get(1);
    let Some(o) = parse_op_args(ctx, a, 2, op, name, false) else {
        return;
    };
    let Ok(inputs) = read_inputs(ctx, &o.keys, Some(dst)) else {
        return;
    };
    let items = compute(inputs, &o, op);
    store_result(ctx, dst, &items, name);
}

pub fn zunion(ctx: &mut Ctx, a: &Args) {
    op_reply(ctx, a, SetOp::Union, "zunion")
}
pub fn zinter(ctx: &mut Ctx, a: &Args) {
    op_reply(ctx, a, SetOp::Inter, "zinter")
}
pub fn zdiff(ctx: &mut Ctx, a: &Args) {
    op_reply(ctx, a, SetOp::Diff, "zdiff")
}
pub fn zunionstore(ctx: &mut Ctx, a: &Args) {
    op_store(ctx, a, SetOp::Union, "zunionstore")
}
pub fn zinterstore(ctx: &mut Ctx, a: &Args) {
    op_store(ctx, a, SetOp::Inter, "zinterstore")
}
pub fn zdiffstore(ctx: &mut Ctx, a: &Args) {
    op_store(ctx, a, SetOp::Diff, "zdiffstore")
}

/// Keys of ZUNION/ZINTER/ZDIFF/ZINTERCARD: numkeys at 1.
pub fn numkeys1(a: &Args) -> Vec<usize> {
    super::lists::lmpop_keys(a)
}

/// Keys of the STORE forms: the destination, then numkeys at 2.
pub fn numkeys2_with_dst(a: &Args) -> Vec<usize> {
    let mut v = vec![1];
    match (a.len() > 2).then(|| parse_i64(a.get(2))).flatten() {
        Some(n) if n > 0 && (n as usize) + 3 <= a.len() => v.extend(3..3 + n as usize),
        _ => {}
    }
    v
}

pub fn zintercard(ctx: &mut Ctx, a: &Args) {
    let n = match parse_i64(a.get(1)) {
        Some(n) if n >= 1 => n as usize,
        Some(_) => {
            return ctx
                .r
                .error("ERR at least 1 input key is needed for 'zintercard' command")
        }
        None => return ctx.r.error(NOT_INT),
    };
    if 2 + n > a.len() {
        return ctx.r.error(SYNTAX);
    }
    let mut limit = 0usize;
    let mut i = 2 + n;
    while i < a.len() {
        if eq_ic(a.get(i), "LIMIT") && i + 1 < a.len() {
            match parse_i64(a.get(i + 1)) {
                Some(l) if l >= 0 => limit = l as usize,
                _ => return ctx.r.error("ERR LIMIT can't be negative"),
            }
            i += 2;
        } else {
            return ctx.r.error(SYNTAX);
        }
    }
    let keys: Vec<&[u8]> = (2..2 + n).map(|i| a.get(i)).collect();
    let o = OpArgs {
        keys: keys.clone(),
        weights: vec![1.0; n],
        agg: Agg::Sum,
        withscores: false,
    };
    let Ok(inputs) = read_inputs(ctx, &keys, None) else {
        return;
    };
    let c = compute(inputs, &o, SetOp::Inter).len();
    ctx.r.int(if limit > 0 { c.min(limit) } else { c } as i64);
}

pub fn zrangestore(ctx: &mut Ctx, a: &Args) {
    let (dst, src) = (a.get(1), a.get(2));
    let spec = RangeSpec {
        by: By::Rank,
        rev: false,
        limit: None,
        withscores: false,
    };
    // Options start after min and max (args 3 and 4).
    let Some(spec) = parse_range_opts(ctx, a, 5, spec, true) else {
        return;
    };
    if spec.withscores {
        return ctx.r.error(SYNTAX);
    }
    let items = {
        let mut m = ctx.locks.keys([dst, src].into_iter());
        match m.key(src).get(src) {
            None => {
                drop(m);
                let empty = ZSetObj::default();
                match select(&mut ctx.r, &empty, &spec, a.get(3), a.get(4)) {
                    Ok(v) => v,
                    Err(()) => return,
                }
            }
            Some(Value::ZSet(z)) => {
                let z: &ZSetObj = z;
                match select(&mut ctx.r, z, &spec, a.get(3), a.get(4)) {
                    Ok(v) => v,
                    Err(()) => return,
                }
            }
            Some(_) => return ctx.r.error(WRONGTYPE),
        }
    };
    store_result(ctx, dst, &items, "zrangestore");
}

/// Pops from the first non-empty sorted set among `keys`: (key, items).
/// None when all are empty; Err after replying WRONGTYPE.
fn mpop_first(
    ctx: &mut Ctx,
    keys: &[&[u8]],
    max: bool,
    count: usize,
) -> Result<Option<(Vec<u8>, Elems)>, ()> {
    let events = ctx.events();
    let mut m = ctx.locks.keys(keys.iter().copied());
    for key in keys {
        let s = m.key(key);
        let z = match lookup::<ZSetObj>(s, key) {
            // Woken blocked clients skip keys that changed type (Redis).
            Typed::Wrong if ctx.client.block_retry => continue,
            Typed::Wrong => {
                drop(m);
                ctx.r.error(WRONGTYPE);
                return Err(());
            }
            Typed::Missing => continue,
            Typed::Found(z) => z,
        };
        let n = count.min(z.len());
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            let r = if max { z.len() - 1 } else { 0 };
            let Some((sc, mm)) = z.tree.select(r).map(|(sc, mm)| (sc, mm.to_vec())) else {
                break;
            };
            z.remove(&mm);
            out.push((mm, sc));
        }
        let deleted = settle::<ZSetObj>(s, key);
        // Propagated as ZPOPMIN/ZPOPMAX with the count popped (Redis).
        let mut nb = itoa::Buffer::new();
        let pop: &[u8] = if max { b"ZPOPMAX" } else { b"ZPOPMIN" };
        s.log(&[pop, key, nb.format(out.len()).as_bytes()]);
        removed_events(&events, ev::ZSET, pop_event(max), key, deleted);
        if !s.is_empty() {
            s.signal_ready(key);
        }
        drop(m);
        ctx.dirty(out.len() as u64);
        return Ok(Some((key.to_vec(), out)));
    }
    Ok(None)
}

fn min_max(t: &[u8]) -> Option<bool> {
    if eq_ic(t, "MIN") {
        Some(false)
    } else if eq_ic(t, "MAX") {
        Some(true)
    } else {
        None
    }
}

/// Parses `numkeys key… MIN|MAX [COUNT n]` starting at `at`.
fn parse_mpop(ctx: &mut Ctx, a: &Args, at: usize) -> Option<(Vec<Vec<u8>>, bool, usize)> {
    let n = match parse_i64(a.get(at)) {
        Some(n) if n > 0 => n as usize,
        _ => {
            ctx.r.error("ERR numkeys should be greater than 0");
            return None;
        }
    };
    if at + 1 + n >= a.len() {
        ctx.r.error(SYNTAX);
        return None;
    }
    let Some(max) = min_max(a.get(at + 1 + n)) else {
        ctx.r.error(SYNTAX);
        return None;
    };
    let mut count = 1;
    let rest = a.len() - (at + 2 + n);
    if rest == 2 && eq_ic(a.get(at + 2 + n), "COUNT") {
        match parse_i64(a.get(at + 3 + n)) {
            Some(c) if c > 0 => count = c as usize,
            _ => {
                ctx.r.error("ERR count should be greater than 0");
                return None;
            }
        }
    } else if rest != 0 {
        ctx.r.error(SYNTAX);
        return None;
    }
    let keys = (at + 1..at + 1 + n).map(|i| a.get(i).to_vec()).collect();
    Some((keys, max, count))
}

fn write_mpop(ctx: &mut Ctx, key: &[u8], items: &[(Vec<u8>, f64)]) {
    ctx.r.array(2);
    ctx.r.bulk(key);
    ctx.r.array(items.len());
    for (m, s) in items {
        ctx.r.array(2);
        ctx.r.bulk(m);
        ctx.r.double(*s);
    }
}

pub fn zmpop(ctx: &mut Ctx, a: &Args) {
    let Some((keys, max, count)) = parse_mpop(ctx, a, 1) else {
        return;
    };
    let refs: Vec<&[u8]> = keys.iter().map(|k| k.as_slice()).collect();
    match mpop_first(ctx, &refs, max, count) {
        Err(()) => {}
        Ok(None) => ctx.r.null_array(),
        Ok(Some((k, items))) => write_mpop(ctx, &k, &items),
    }
}

pub fn zmpop_keys(a: &Args) -> Vec<usize> {
    super::lists::lmpop_keys(a)
}

pub fn bzmpop_keys(a: &Args) -> Vec<usize> {
    super::lists::blmpop_keys(a)
}

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

fn block(ctx: &mut Ctx, a: &Args, keys: Vec<Vec<u8>>, timeout: u64) {
    if ctx.client.block_retry {
        return;
    }
    if ctx.locks.in_batch() {
        return ctx.r.null_array();
    }
    ctx.actions.push(super::Action::Block(super::Block {
        keys,
        timeout_ms: timeout,
        args: a.to_owned(),
        null_array: true,
    }));
}

fn bzpop(ctx: &mut Ctx, a: &Args, max: bool) {
    let Some(timeout) = timeout_ms(ctx, a.get(a.len() - 1)) else {
        return;
    };
    let keys: Vec<&[u8]> = (1..a.len() - 1).map(|i| a.get(i)).collect();
    match mpop_first(ctx, &keys, max, 1) {
        Err(()) => {}
        Ok(Some((k, items))) if !items.is_empty() => {
            ctx.r.array(3);
            ctx.r.bulk(&k);
            ctx.r.bulk(&items[0].0);
            ctx.r.double(items[0].1);
        }
        _ => block(ctx, a, keys.iter().map(|k| k.to_vec()).collect(), timeout),
    }
}

pub fn bzpopmin(ctx: &mut Ctx, a: &Args) {
    bzpop(ctx, a, false)
}
pub fn bzpopmax(ctx: &mut Ctx, a: &Args) {
    bzpop(ctx, a, true)
}

pub fn bzmpop(ctx: &mut Ctx, a: &Args) {
    let Some(timeout) = timeout_ms(ctx, a.get(1)) else {
        return;
    };
    let Some((keys, max, count)) = parse_mpop(ctx, a, 2) else {
        return;
    };
    let refs: Vec<&[u8]> = keys.iter().map(|k| k.as_slice()).collect();
    match mpop_first(ctx, &refs, max, count) {
        Err(()) => {}
        Ok(Some((k, items))) => write_mpop(ctx, &k, &items),
        Ok(None) => block(ctx, a, keys, timeout),
    }
}
