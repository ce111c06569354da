//! SORT and SORT_RO.
//!
//! BY and GET patterns name other keys (`weight_*`, `obj_*->field`), found
//! only once the elements are read, and they may live in any slot. Outside
//! EXEC we first read the source under its own lock to learn which slots
//! the patterns reach, then lock all of them together with the source and
//! re-read; if the source changed in between so that it now needs more
//! slots, we widen the set and try again. Inside EXEC the transaction holds
//! every slot of the database for a SORT with such patterns (see
//! [`reaches_other_keys`]).

use std::cmp::Ordering;

use super::{eq_ic, int_arg, Args, Ctx, SYNTAX, WRONGTYPE};
use crate::keyspace::{key_slot, SlotRef, Value, SLOTS};

pub fn sort(ctx: &mut Ctx, a: &Args) {
    sort_generic(ctx, a, false)
}

pub fn sort_ro(ctx: &mut Ctx, a: &Args) {
    sort_generic(ctx, a, true)
}

/// The bytes C string functions see: up to the first NUL.
fn c_str(b: &[u8]) -> &[u8] {
    match memchr::memchr(0, b) {
        Some(z) => &b[..z],
        None => b,
    }
}

/// `GET #`: the element itself (Redis looks at the first two C chars).
fn is_self(pat: &[u8]) -> bool {
    pat.first() == Some(&b'#') && pat.get(1).is_none_or(|&c| c == 0)
}

fn has_star(pat: &[u8]) -> bool {
    memchr::memchr(b'*', c_str(pat)).is_some()
}

/// Where a pattern leads for one element.
enum Target<'p> {
    /// `#`: the element itself.
    Itself,
    /// No `*`: nothing (a constant key is never looked up).
    Nothing,
    /// A string key, or a hash field when `field` is set.
    Key {
        key: Vec<u8>,
        field: Option<&'p [u8]>,
    },
}

/// Substitutes the first `*` of `pat` with `elem`; a `->` after it (with
/// something following) names a hash field. Searches stop at a NUL, as
/// Redis's strchr/strstr do, while lengths count every byte.
fn target<'p>(pat: &'p [u8], elem: &[u8]) -> Target<'p> {
    if is_self(pat) {
        return Target::Itself;
    }
    let c = c_str(pat);
    let Some(star) = memchr::memchr(b'*', c) else {
        return Target::Nothing;
    };
    let field_at = memchr::memmem::find(&c[star + 1..], b"->")
        .map(|i| star + 1 + i)
        .filter(|&f| f + 2 < c.len());
    let (post_end, field) = match field_at {
        Some(f) => (f, Some(&pat[f + 2..])),
        None => (pat.len(), None),
    };
    let mut key = Vec::with_capacity(star + elem.len() + (post_end - star - 1));
    key.extend_from_slice(&pat[..star]);
    key.extend_from_slice(elem);
    key.extend_from_slice(&pat[star + 1..post_end]);
    Target::Key { key, field }
}

/// Looks up what `pat` names for `elem` in the locked slots: a string
/// value, or a hash field. None for anything else (missing key, other
/// type, missing field, slot not locked).
fn lookup(m: &mut super::locks::Many, pat: &[u8], elem: &[u8]) -> Option<Vec<u8>> {
    match target(pat, elem) {
        Target::Itself => Some(elem.to_vec()),
        Target::Nothing => None,
        Target::Key { key, field } => {
            let s = m.try_slot(key_slot(&key))?;
            let v = s.get(&key)?;
            match (v, field) {
                (Value::Hash(h), Some(f)) => h.get(f).map(|x| x.to_vec()),
                (Value::Hash(_), None) | (_, Some(_)) => None,
                (v, None) => {
                    let mut b = itoa::Buffer::new();
                    v.str_bytes(&mut b).map(|x| x.to_vec())
                }
            }
        }
    }
}

struct Opts<'a> {
    desc: bool,
    alpha: bool,
    limit_start: i64,
    limit_count: i64,
    store: Option<&'a [u8]>,
    by: Option<&'a [u8]>,
    /// BY names no `*`: keep the natural order.
    dontsort: bool,
    gets: Vec<&'a [u8]>,
    /// Called from a script, whose results must be reproducible.
    in_script: bool,
}

/// Parses the options as Redis does, replying on the first error.
fn parse<'a>(ctx: &mut Ctx, a: &Args<'a>, readonly: bool) -> Option<Opts<'a>> {
    let cluster = ctx.srv.cluster_enabled();
    let mut o = Opts {
        desc: false,
        alpha: false,
        limit_start: 0,
        limit_count: -1,
        store: None,
        by: None,
        dontsort: false,
        gets: Vec::new(),
        in_script: ctx.client.in_script,
    };
    let full_access =
        super::acl::may_read_any_key(ctx, if readonly { "sort_ro" } else { "sort" }, a);
    let mut j = 2;
    while j < a.len() {
        let t = a.get(j);
        let left = a.len() - j - 1;
        if eq_ic(t, "ASC") {
            o.desc = false;
        } else if eq_ic(t, "DESC") {
            o.desc = true;
        } else if eq_ic(t, "ALPHA") {
            o.alpha = true;
        } else if eq_ic(t, "LIMIT") && left >= 2 {
            o.limit_start = int_arg(ctx, a.get(j + 1))?;
            o.limit_count = int_arg(ctx, a.get(j + 2))?;
            j += 2;
        } else if !readonly && eq_ic(t, "STORE") && left >= 1 {
            o.store = Some(a.get(j + 1));
            j += 1;
        } else if eq_ic(t, "BY") && left >= 1 {
            let p = a.get(j + 1);
            o.by = Some(p);
            if !has_star(p) {
                o.dontsort = true;
            } else if cluster {
                ctx.r.error("ERR BY option of SORT denied in Cluster mode.");
                return None;
            } else if !full_access {
                ctx.r
                    .error("ERR BY option of SORT denied due to insufficient ACL permissions.");
                return None;
            }
            j += 1;
        } else if eq_ic(t, "GET") && left >= 1 {
            if cluster {
                ctx.r
                    .error("ERR GET option of SORT denied in Cluster mode.");
                return None;
            }
            if !full_access {
                ctx.r
                    .error("ERR GET option of SORT denied due to insufficient ACL permissions.");
                return None;
            }
            o.gets.push(a.get(j + 1));
            j += 1;
        } else {
            ctx.r.error(SYNTAX);
            return None;
        }
        j += 1;
    }
    Some(o)
}

/// Whether SORT with these arguments may read keys other than its source
/// and destination (a BY pattern that sorts, or a GET pattern with `*`).
/// EXEC uses it to hold the whole database for such a SORT. Options are
/// scanned the way the parser reads them; a malformed command answers an
/// error before touching anything, so over-approximating is harmless.
pub fn reaches_other_keys(a: &Args) -> bool {
    let mut j = 2;
    let mut by_sorts = false;
    let mut gets = false;
    while j < a.len() {
        let t = a.get(j);
        let left = a.len() - j - 1;
        if eq_ic(t, "LIMIT") && left >= 2 {
            j += 2;
        } else if eq_ic(t, "STORE") && left >= 1 {
            j += 1;
        } else if eq_ic(t, "BY") && left >= 1 {
            // The last BY wins.
            by_sorts = has_star(a.get(j + 1));
            j += 1;
        } else if eq_ic(t, "GET") && left >= 1 {
            let p = a.get(j + 1);
            gets |= !is_self(p) && has_star(p);
            j += 1;
        }
        j += 1;
    }
    by_sorts || gets
}

/// Key positions of SORT: the source, and the last STORE's destination,
/// found with the same argument skipping Redis's key extraction uses.
pub fn sort_keys(a: &Args) -> Vec<usize> {
    let mut keys = vec![1];
    let mut store = None;
    let mut i = 2;
    while i < a.len() {
        let t = a.get(i);
        if eq_ic(t, "LIMIT") {
            i += 2;
        } else if eq_ic(t, "GET") || eq_ic(t, "BY") {
            i += 1;
        } else if eq_ic(t, "STORE") && i + 1 < a.len() {
            store = Some(i + 1);
        }
        i += 1;
    }
    keys.extend(store);
    keys
}

/// One element being sorted.
struct Item {
    elem: Vec<u8>,
    score: f64,
    /// ALPHA with BY: the value compared (None when the key is missing).
    cmp: Option<Vec<u8>>,
}

impl Item {
    fn new(elem: Vec<u8>) -> Item {
        Item {
            elem,
            score: 0.0,
            cmp: None,
        }
    }
}

/// What was read from the source, with the output range.
struct Loaded {
    items: Vec<Item>,
    /// Inclusive output range into `items`; empty when `end < start`.
    start: i64,
    end: i64,
    dontsort: bool,
    alpha: bool,
}

/// C's strtod with Redis's checks: the whole string (up to a NUL) must be
/// a number, not out of range and not NaN. Leading spaces, hex floats and
/// `inf` are accepted, as strtod accepts them.
fn strtod_score(b: &[u8]) -> Option<f64> {
    let c = c_str(b);
    let mut buf = Vec::with_capacity(c.len() + 1);
    buf.extend_from_slice(c);
    buf.push(0);
    let mut end: *mut libc::c_char = std::ptr::null_mut();
    // SAFETY: `buf` is NUL-terminated and outlives the call; `end` points
    // into it afterwards. errno is thread-local.
    let (v, used, erange) = unsafe {
        *libc::__errno_location() = 0;
        let v = libc::strtod(buf.as_ptr() as *const libc::c_char, &mut end);
        let used = end.offset_from(buf.as_ptr() as *const libc::c_char) as usize;
        (v, used, *libc::__errno_location() == libc::ERANGE)
    };
    if used != c.len() || erange || v.is_nan() {
        return None;
    }
    Some(v)
}

/// Binary comparison (memcmp, then length), as Redis compares objects.
fn binary_cmp(a: &[u8], b: &[u8]) -> Ordering {
    a.cmp(b)
}

/// strcoll in the C locale: strcmp, which stops at a NUL.
fn coll_cmp(a: &[u8], b: &[u8]) -> Ordering {
    c_str(a).cmp(c_str(b))
}

/// Reads the elements to sort from the source value (None: missing key).
/// Only the requested range is copied when the natural order is kept.
fn load(v: Option<&mut Value>, o: &Opts) -> Result<Loaded, ()> {
    let mut dontsort = o.dontsort;
    let mut alpha = o.alpha;
    let len = match &v {
        None => 0,
        Some(Value::List(l)) => l.len(),
        Some(Value::Set(s)) => s.len(),
        Some(Value::ZSet(z)) => z.len(),
        Some(_) => return Err(()),
    } as i64;
    let is_set = matches!(v, Some(Value::Set(_)));
    // A set's natural order is not reproducible; a stored result, or a
    // script's, must be, so it is sorted (ALPHA) instead.
    if dontsort && is_set && (o.store.is_some() || o.in_script) {
        dontsort = false;
        alpha = true;
    }
    let mut start = o.limit_start.max(0);
    let mut end = if o.limit_count < 0 {
        len - 1
    } else {
        start.saturating_add(o.limit_count) - 1
    };
    if start >= len {
        start = len - 1;
        end = len - 2;
    }
    if end >= len {
        end = len - 1;
    }
    let ranged = dontsort && (start != 0 || end != len - 1);
    let want = if ranged {
        (end - start + 1).max(0) as usize
    } else {
        len as usize
    };
    let mut items: Vec<Item> = Vec::with_capacity(want);
    match v {
        None => {}
        Some(Value::List(l)) if dontsort && end >= start => {
            let from = start as usize;
            if o.desc {
                items.extend(
                    l.iter_rev()
                        .skip(from)
                        .take(want)
                        .map(|e| Item::new(e.into_owned())),
                );
            } else {
                items.extend(
                    l.iter_from(from)
                        .take(want)
                        .map(|e| Item::new(e.into_owned())),
                );
            }
            end -= start;
            start = 0;
        }
        // An empty range: nothing to read.
        Some(Value::List(_)) if dontsort => {}
        Some(Value::List(l)) => items.extend(l.iter().map(|e| Item::new(e.into_owned()))),
        Some(Value::Set(s)) => items.extend(s.members().into_iter().map(Item::new)),
        Some(Value::ZSet(z)) => {
            // Redis converts a small sorted set to its skiplist form here.
            z.big = true;
            if dontsort {
                let n = z.len();
                let from = start.max(0) as usize;
                for k in 0..want {
                    let rank = if o.desc {
                        n.checked_sub(from + k + 1)
                    } else {
                        Some(from + k)
                    };
                    if let Some((_, m)) = rank.and_then(|r| z.tree.select(r)) {
                        items.push(Item::new(m.to_vec()));
                    }
                }
                end -= start;
                start = 0;
            } else {
                items.extend(z.dict.iter().map(|(m, _)| Item::new(m.to_vec())));
            }
        }
        Some(_) => return Err(()),
    }
    Ok(Loaded {
        items,
        start,
        end,
        dontsort,
        alpha,
    })
}

/// Every slot the patterns reach for these elements.
fn pattern_slots(items: &[Item], by: Option<&[u8]>, gets: &[&[u8]], out: &mut Vec<u16>) {
    for it in items {
        for p in by.iter().chain(gets.iter()) {
            if let Target::Key { key, .. } = target(p, &it.elem) {
                out.push(key_slot(&key));
            }
        }
    }
}

fn sort_generic(ctx: &mut Ctx, a: &Args, readonly: bool) {
    let Some(o) = parse(ctx, a, readonly) else {
        return;
    };
    let src = a.get(1);
    let by_sorts = o.by.filter(|_| !o.dontsort);
    let reaches = by_sorts.is_some() || o.gets.iter().any(|p| !is_self(p) && has_star(p));
    let mut want: Vec<u16> = vec![key_slot(src)];
    want.extend(o.store.map(key_slot));
    want.sort_unstable();
    want.dedup();
    let mut tries = 0;
    let events = ctx.events();
    loop {
        let holding = ctx.locks.holding();
        let mut m = ctx.locks.slots(want.clone());
        let Some(s) = m.try_slot(key_slot(src)) else {
            return;
        };
        let loaded = load(s.get_mut(src), &o);
        let Ok(mut l) = loaded else {
            drop(m);
            ctx.r.error(WRONGTYPE);
            return;
        };
        if reaches && !holding {
            let mut need = want.clone();
            pattern_slots(&l.items, by_sorts, &o.gets, &mut need);
            need.sort_unstable();
            need.dedup();
            if need != want {
                drop(m);
                tries += 1;
                // The source keeps changing under us: take the whole db.
                want = if tries >= 3 {
                    (0..SLOTS as u16).collect()
                } else {
                    need
                };
                continue;
            }
        }
        let failed = score(&mut m, &mut l, by_sorts, o.store.is_some(), o.desc);
        if failed {
            drop(m);
            ctx.r
                .error("ERR One or more scores can't be converted into double");
            return;
        }
        // The reply and client are fields apart from the locks `m` holds.
        let out = Out {
            events,
            r: &mut ctx.r,
            client: &mut *ctx.client,
        };
        output(out, &mut m, &l, &o);
        return;
    }
}

/// The context's reply writer and client, borrowed apart from its locks.
struct Out<'c, 'a> {
    r: &'c mut crate::resp::Reply<'a>,
    client: &'c mut crate::server::client::Client,
    events: crate::server::notify::Events<'c>,
}

/// Computes sort keys and sorts; true when a score was not a number.
fn score(
    m: &mut super::locks::Many,
    l: &mut Loaded,
    by: Option<&[u8]>,
    store: bool,
    desc: bool,
) -> bool {
    if l.dontsort {
        return false;
    }
    let mut failed = false;
    for it in l.items.iter_mut() {
        let byval = match by {
            Some(p) => match lookup(m, p, &it.elem) {
                Some(v) => v,
                None => continue,
            },
            None => {
                if l.alpha {
                    continue;
                }
                match strtod_score(&it.elem) {
                    Some(s) => it.score = s,
                    None => failed = true,
                }
                continue;
            }
        };
        if l.alpha {
            it.cmp = Some(byval);
        } else {
            match strtod_score(&byval) {
                Some(s) => it.score = s,
                None => failed = true,
            }
        }
    }
    if failed {
        return true;
    }
    let alpha = l.alpha;
    let by_pattern = by.is_some();
    // The comparison negated for DESC, as Redis does; ties (possible only
    // with ALPHA BY) then come out in the order Redis's sorts leave them.
    let cmp = |x: &Item, y: &Item| {
        let c = if !alpha {
            x.score
                .partial_cmp(&y.score)
                .filter(|o| o.is_ne())
                .unwrap_or_else(|| binary_cmp(&x.elem, &y.elem))
        } else if by_pattern {
            match (&x.cmp, &y.cmp) {
                (Some(p), Some(q)) if store => binary_cmp(p, q),
                (Some(p), Some(q)) => coll_cmp(p, q),
                (None, None) => Ordering::Equal,
                (None, Some(_)) => Ordering::Less,
                (Some(_), None) => Ordering::Greater,
            }
        } else if store {
            binary_cmp(&x.elem, &y.elem)
        } else {
            coll_cmp(&x.elem, &y.elem)
        };
        if desc {
            c.reverse()
        } else {
            c
        }
    };
    let n = l.items.len();
    let partial = l.start != 0 || l.end != n as i64 - 1;
    if by_pattern && partial {
        // Redis sorts only the output range here, with its partial
        // quicksort, whose order of equal elements we must reproduce.
        if l.end >= l.start && l.start >= 0 && n > 0 {
            crate::pqsort::pqsort(&mut l.items, cmp, l.start as usize, l.end as usize);
        }
    } else {
        // glibc's qsort is a merge sort: stable, like this one.
        l.items.sort_by(cmp);
    }
    false
}

fn output(out: Out, m: &mut super::locks::Many, l: &Loaded, o: &Opts) {
    let (start, end) = (l.start, l.end);
    let range: &[Item] = if end >= start && start >= 0 {
        let e = (end as usize + 1).min(l.items.len());
        let s = (start as usize).min(e);
        &l.items[s..e]
    } else {
        &[]
    };
    let ordered = range.iter();
    let getop = o.gets.len();
    let Some(dst) = o.store else {
        out.r.array(if getop > 0 {
            getop * range.len()
        } else {
            range.len()
        });
        for it in ordered {
            if getop == 0 {
                out.r.bulk(&it.elem);
            }
            for p in &o.gets {
                match lookup(m, p, &it.elem) {
                    Some(v) => out.r.bulk(&v),
                    None => out.r.null(),
                }
            }
        }
        return;
    };
    let mut list = crate::keyspace::plist::PackedList::new();
    for it in ordered {
        if getop == 0 {
            list.push_back(&it.elem);
        }
        for p in &o.gets {
            let v = lookup(m, p, &it.elem).unwrap_or_default();
            list.push_back(&v);
        }
    }
    let n = list.len();
    let Some(d) = m.try_slot(key_slot(dst)) else {
        out.r.int(0);
        return;
    };
    let mut dirty = 0;
    if n > 0 {
        log_store(d, dst, &list);
        d.set(dst, Value::List(Box::new(list)), false);
        out.events
            .emit(crate::server::notify::class::LIST, "sortstore", dst);
        dirty = n as u64;
    } else if d.delete_freeing(dst, &crate::keyspace::lazyfree::SERVER_DEL) {
        d.log(&[b"DEL".as_slice(), dst]);
        out.events
            .emit(crate::server::notify::class::GENERIC, "del", dst);
        dirty = 1;
    }
    out.client.pending_dirty += dirty;
    out.r.int(n as i64);
}

/// The effect of a STORE: the destination replaced by the result list.
fn log_store(d: &SlotRef, dst: &[u8], list: &crate::keyspace::plist::PackedList) {
    if !d.db.log.is_active() {
        return;
    }
    d.log(&[b"DEL".as_slice(), dst]);
    let items: Vec<std::borrow::Cow<'_, [u8]>> = list.iter().collect();
    let mut eff: Vec<&[u8]> = Vec::with_capacity(list.len() + 2);
    eff.push(b"RPUSH");
    eff.push(dst);
    eff.extend(items.iter().map(|e| &**e));
    d.log(&eff);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key_of(t: Target) -> (Vec<u8>, Option<Vec<u8>>) {
        match t {
            Target::Key { key, field } => (key, field.map(|f| f.to_vec())),
            _ => panic!("not a key"),
        }
    }

    #[test]
    fn patterns_substitute_the_first_star() {
        assert!(matches!(target(b"#", b"x"), Target::Itself));
        assert!(matches!(target(b"nosort", b"x"), Target::Nothing));
        assert_eq!(key_of(target(b"w_*", b"1")), (b"w_1".to_vec(), None));
        assert_eq!(key_of(target(b"a*b*", b"1")), (b"a1b*".to_vec(), None));
        assert_eq!(
            key_of(target(b"h_*->f", b"1")),
            (b"h_1".to_vec(), Some(b"f".to_vec()))
        );
        // "->" with nothing after it is part of the key.
        assert_eq!(key_of(target(b"h_*->", b"1")), (b"h_1->".to_vec(), None));
        // "->" before the star is part of the key.
        assert_eq!(key_of(target(b"a->*", b"1")), (b"a->1".to_vec(), None));
        // A NUL hides what follows from the searches.
        assert!(matches!(target(b"a\0*", b"1"), Target::Nothing));
    }

    #[test]
    fn scores_parse_like_strtod() {
        assert_eq!(strtod_score(b"1.5"), Some(1.5));
        assert_eq!(strtod_score(b" 2"), Some(2.0));
        assert_eq!(strtod_score(b""), Some(0.0));
        assert_eq!(strtod_score(b"0x10"), Some(16.0));
        assert_eq!(strtod_score(b"-inf"), Some(f64::NEG_INFINITY));
        assert_eq!(strtod_score(b"nan"), None);
        assert_eq!(strtod_score(b"1e400"), None);
        assert_eq!(strtod_score(b"1x"), None);
        assert_eq!(strtod_score(b"3\0junk"), Some(3.0));
    }

    #[test]
    fn sort_key_positions() {
        let o = crate::command::OwnedArgs::from_slices(&[
            b"SORT".as_slice(),
            b"k",
            b"LIMIT",
            b"0",
            b"1",
            b"STORE",
            b"d1",
            b"GET",
            b"STORE",
            b"STORE",
            b"d2",
        ]);
        assert_eq!(sort_keys(&o.args()), vec![1, 10]);
    }
}
