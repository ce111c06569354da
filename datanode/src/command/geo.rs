//! Geo commands: points are sorted-set members scored with their 52-bit
//! geohash (`crate::geohash`), so GEOADD is a ZADD and searches scan score
//! ranges of the boxes around the centre.

use super::{eq_ic, parse_float, Args, Ctx, OwnedArgs, NOT_FLOAT, NOT_INT, SYNTAX, WRONGTYPE};
use crate::geohash::{self, Search, Shape};
use crate::keyspace::{Value, ZSetObj};
use crate::resp::parse_i64;
use crate::resp::reply::Reply;
use std::cmp::Ordering;

/// A float argument, or Redis's error (`msg` for a custom one).
fn float(r: &mut Reply, a: &[u8], msg: Option<&str>) -> Option<f64> {
    let v = parse_float(a);
    if v.is_none() {
        match msg {
            Some(m) => r.error(&format!("ERR {m}")),
            None => r.error(NOT_FLOAT),
        }
    }
    v
}

/// A longitude, latitude pair inside the range geohashes cover.
fn long_lat(r: &mut Reply, long: &[u8], lat: &[u8]) -> Option<(f64, f64)> {
    let x = float(r, long, None)?;
    let y = float(r, lat, None)?;
    if !(geohash::LONG_MIN..=geohash::LONG_MAX).contains(&x)
        || !(geohash::LAT_MIN..=geohash::LAT_MAX).contains(&y)
    {
        r.error(&format!(
            "ERR invalid longitude,latitude pair {x:.6},{y:.6}"
        ));
        return None;
    }
    Some((x, y))
}

/// Metres per unit.
fn unit(r: &mut Reply, u: &[u8]) -> Option<f64> {
    let v = if eq_ic(u, "m") {
        1.0
    } else if eq_ic(u, "km") {
        1000.0
    } else if eq_ic(u, "ft") {
        0.3048
    } else if eq_ic(u, "mi") {
        1609.34
    } else {
        r.error("ERR unsupported unit provided. please use M, KM, FT, MI");
        return None;
    };
    Some(v)
}

/// A distance with four decimals, as Redis prints one (rounded to even
/// ten-thousandths, then written in fixed point).
fn fmt_distance(d: f64) -> String {
    let v = (d * 10000.0).round_ties_even() as i64;
    let sign = if v < 0 { "-" } else { "" };
    let a = v.unsigned_abs();
    format!("{sign}{}.{:04}", a / 10000, a % 10000)
}

/// A coordinate as Redis's "human" long double format prints it: 17
/// decimals, trailing zeros cut.
fn push_coord(ctx: &mut Ctx, v: f64) {
    let mut s = format!("{v:.17}");
    if s.contains('.') {
        let t = s.trim_end_matches('0').trim_end_matches('.').len();
        s.truncate(t);
    }
    if s == "-0" {
        s = "0".into();
    }
    if ctx.r.is_resp3() {
        ctx.r.raw(format!(",{s}\r\n").as_bytes());
    } else {
        ctx.r.bulk(s.as_bytes());
    }
}

pub fn geoadd(ctx: &mut Ctx, a: &Args) {
    let (mut nx, mut xx) = (false, false);
    let mut i = 2;
    while i < a.len() {
        let t = a.get(i);
        if eq_ic(t, "NX") {
            nx = true;
        } else if eq_ic(t, "XX") {
            xx = true;
        } else if !eq_ic(t, "CH") {
            break;
        }
        i += 1;
    }
    if !(a.len() - i).is_multiple_of(3) || (xx && nx) {
        return ctx.r.error(SYNTAX);
    }
    // Rewritten as ZADD key [options] score member …, which does the rest.
    let mut scores = Vec::with_capacity((a.len() - i) / 3);
    for t in (i..a.len()).step_by(3) {
        let Some((x, y)) = long_lat(&mut ctx.r, a.get(t), a.get(t + 1)) else {
            return;
        };
        let score = geohash::score_of(x, y).unwrap_or(0);
        scores.push(itoa::Buffer::new().format(score).to_string());
    }
    let mut z: Vec<&[u8]> = vec![b"zadd"];
    z.extend(a.iter().skip(1).take(i - 1));
    for (n, t) in (i..a.len()).step_by(3).enumerate() {
        z.push(scores[n].as_bytes());
        z.push(a.get(t + 2));
    }
    let owned = OwnedArgs::from_slices(&z);
    super::zsets::zadd(ctx, &owned.args());
}

/// The coordinates of a member's score.
fn member_pos(z: &ZSetObj, m: &[u8]) -> Option<(f64, f64)> {
    geohash::decode_score(z.score(m)?)
}

pub fn geopos(ctx: &mut Ctx, a: &Args) {
    let key = a.get(1);
    let mut s = ctx.locks.key(key);
    let z = match s.get(key) {
        None => None,
        Some(Value::ZSet(z)) => Some(z),
        Some(_) => return ctx.r.error(WRONGTYPE),
    };
    let pos: Vec<Option<(f64, f64)>> = a
        .iter()
        .skip(2)
        .map(|m| z.and_then(|z| member_pos(z, m)))
        .collect();
    drop(s);
    ctx.r.array(pos.len());
    for p in pos {
        match p {
            None => ctx.r.null_array(),
            Some((x, y)) => {
                ctx.r.array(2);
                push_coord(ctx, x);
                push_coord(ctx, y);
            }
        }
    }
}

pub fn geohash_cmd(ctx: &mut Ctx, a: &Args) {
    let key = a.get(1);
    let mut s = ctx.locks.key(key);
    let z = match s.get(key) {
        None => None,
        Some(Value::ZSet(z)) => Some(z),
        Some(_) => return ctx.r.error(WRONGTYPE),
    };
    // Redis re-encodes with latitudes ±90, the standard geohash ranges.
    let hashes: Vec<Option<[u8; 11]>> = a
        .iter()
        .skip(2)
        .map(|m| {
            z.and_then(|z| member_pos(z, m))
                .map(|(x, y)| geohash::standard_string(x, y))
        })
        .collect();
    drop(s);
    ctx.r.array(hashes.len());
    for h in hashes {
        match h {
            None => ctx.r.null(),
            Some(h) => ctx.r.bulk(&h),
        }
    }
}

pub fn geodist(ctx: &mut Ctx, a: &Args) {
    let mut to_meter = 1.0;
    if a.len() == 5 {
        match unit(&mut ctx.r, a.get(4)) {
            Some(u) => to_meter = u,
            None => return,
        }
    } else if a.len() > 5 {
        return ctx.r.error(SYNTAX);
    }
    let key = a.get(1);
    let mut s = ctx.locks.key(key);
    let d = match s.get(key) {
        None => None,
        Some(Value::ZSet(z)) => match (member_pos(z, a.get(2)), member_pos(z, a.get(3))) {
            (Some(p), Some(q)) => Some(geohash::distance(p.0, p.1, q.0, q.1) / to_meter),
            _ => None,
        },
        Some(_) => return ctx.r.error(WRONGTYPE),
    };
    drop(s);
    match d {
        Some(d) => ctx.r.bulk(fmt_distance(d).as_bytes()),
        None => ctx.r.null(),
    }
}

/// Which command a search runs as.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// GEORADIUS[_RO]: centre from arguments 2 and 3.
    Coords { store: bool },
    /// GEORADIUSBYMEMBER[_RO]: centre from a member.
    Member { store: bool },
    /// GEOSEARCH / GEOSEARCHSTORE.
    Search { store: bool },
}

pub fn georadius(ctx: &mut Ctx, a: &Args) {
    search(ctx, a, Kind::Coords { store: true })
}
pub fn georadius_ro(ctx: &mut Ctx, a: &Args) {
    search(ctx, a, Kind::Coords { store: false })
}
pub fn georadiusbymember(ctx: &mut Ctx, a: &Args) {
    search(ctx, a, Kind::Member { store: true })
}
pub fn georadiusbymember_ro(ctx: &mut Ctx, a: &Args) {
    search(ctx, a, Kind::Member { store: false })
}
pub fn geosearch(ctx: &mut Ctx, a: &Args) {
    search(ctx, a, Kind::Search { store: false })
}
pub fn geosearchstore(ctx: &mut Ctx, a: &Args) {
    search(ctx, a, Kind::Search { store: true })
}

/// Key positions of GEORADIUS and GEORADIUSBYMEMBER: the source, and the
/// STORE/STOREDIST destination when there is one.
pub fn georadius_keys(a: &Args) -> Vec<usize> {
    let base = if a.len() > 1 && a.iter().next().is_some_and(|n| eq_ic(n, "GEORADIUS")) {
        6
    } else {
        5
    };
    let mut keys = vec![1];
    let mut i = base;
    while i + 1 < a.len() {
        if eq_ic(a.get(i), "STORE") || eq_ic(a.get(i), "STOREDIST") {
            keys.push(i + 1);
            i += 1;
        }
        i += 1;
    }
    keys
}

struct Point {
    member: Vec<u8>,
    long: f64,
    lat: f64,
    dist: f64,
    score: f64,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Sort {
    None,
    Asc,
    Desc,
}

fn search(ctx: &mut Ctx, a: &Args, kind: Kind) {
    let src_i = if kind == (Kind::Search { store: true }) {
        2
    } else {
        1
    };
    let src = a.get(src_i);
    let mut s = ctx.locks.key(src);
    let zobj: Option<&ZSetObj> = match s.get(src) {
        None => None,
        Some(Value::ZSet(z)) => Some(z),
        Some(_) => return ctx.r.error(WRONGTYPE),
    };
    let mut centre: Option<(f64, f64)> = None;
    let mut shape: Option<(Shape, f64)> = None;
    let mut store: Option<&[u8]> = None;
    let mut storedist = false;
    let base = match kind {
        Kind::Coords { .. } => {
            let Some(c) = long_lat(&mut ctx.r, a.get(2), a.get(3)) else {
                return;
            };
            centre = Some(c);
            let Some(sh) = radius(&mut ctx.r, a.get(4), a.get(5)) else {
                return;
            };
            shape = Some(sh);
            6
        }
        Kind::Member { .. } => {
            if let Some(z) = zobj {
                let Some(c) = member_pos(z, a.get(2)) else {
                    return ctx.r.error("ERR could not decode requested zset member");
                };
                centre = Some(c);
                let Some(sh) = radius(&mut ctx.r, a.get(3), a.get(4)) else {
                    return;
                };
                shape = Some(sh);
            }
            5
        }
        Kind::Search { store: st } => {
            if st {
                store = Some(a.get(1));
                3
            } else {
                2
            }
        }
    };
    let geosearch = matches!(kind, Kind::Search { .. });
    let can_store = matches!(
        kind,
        Kind::Coords { store: true } | Kind::Member { store: true }
    );
    let (mut withdist, mut withhash, mut withcoord, mut any) = (false, false, false, false);
    let (mut frommember, mut fromloc, mut byradius, mut bybox) = (false, false, false, false);
    let mut sort = Sort::None;
    let mut count: i64 = 0;
    let remaining = a.len().saturating_sub(base);
    let mut i = 0;
    while i < remaining {
        let arg = a.get(base + i);
        let has = |n: usize| i + n < remaining;
        if eq_ic(arg, "WITHDIST") {
            withdist = true;
        } else if eq_ic(arg, "WITHHASH") {
            withhash = true;
        } else if eq_ic(arg, "WITHCOORD") {
            withcoord = true;
        } else if eq_ic(arg, "ANY") {
            any = true;
        } else if eq_ic(arg, "ASC") {
            sort = Sort::Asc;
        } else if eq_ic(arg, "DESC") {
            sort = Sort::Desc;
        } else if eq_ic(arg, "COUNT") && has(1) {
            match parse_i64(a.get(base + i + 1)) {
                None => return ctx.r.error(NOT_INT),
                Some(n) if n <= 0 => return ctx.r.error("ERR COUNT must be > 0"),
                Some(n) => count = n,
            }
            i += 1;
        } else if (eq_ic(arg, "STORE") || eq_ic(arg, "STOREDIST")) && has(1) && can_store {
            store = Some(a.get(base + i + 1));
            storedist = eq_ic(arg, "STOREDIST");
            i += 1;
        } else if eq_ic(arg, "STOREDIST") && kind == (Kind::Search { store: true }) {
            storedist = true;
        } else if eq_ic(arg, "FROMMEMBER") && has(1) && geosearch && !fromloc {
            if let Some(z) = zobj {
                let Some(c) = member_pos(z, a.get(base + i + 1)) else {
                    return ctx.r.error("ERR could not decode requested zset member");
                };
                centre = Some(c);
            }
            frommember = true;
            i += 1;
        } else if eq_ic(arg, "FROMLONLAT") && has(2) && geosearch && !frommember {
            let Some(c) = long_lat(&mut ctx.r, a.get(base + i + 1), a.get(base + i + 2)) else {
                return;
            };
            centre = Some(c);
            fromloc = true;
            i += 2;
        } else if eq_ic(arg, "BYRADIUS") && has(2) && geosearch && !bybox {
            let Some(sh) = radius(&mut ctx.r, a.get(base + i + 1), a.get(base + i + 2)) else {
                return;
            };
            shape = Some(sh);
            byradius = true;
            i += 2;
        } else if eq_ic(arg, "BYBOX") && has(3) && geosearch && !byradius {
            let Some(sh) = boxed(
                &mut ctx.r,
                a.get(base + i + 1),
                a.get(base + i + 2),
                a.get(base + i + 3),
            ) else {
                return;
            };
            shape = Some(sh);
            bybox = true;
            i += 3;
        } else {
            return ctx.r.error(SYNTAX);
        }
        i += 1;
    }
    let name = String::from_utf8_lossy(a.get(0)).into_owned();
    if store.is_some() && (withdist || withhash || withcoord) {
        let what = if kind == (Kind::Search { store: true }) {
            "GEOSEARCHSTORE"
        } else {
            "STORE option in GEORADIUS"
        };
        return ctx.r.error(&format!(
            "ERR {what} is not compatible with WITHDIST, WITHHASH and WITHCOORD options"
        ));
    }
    if geosearch && !(frommember || fromloc) {
        return ctx.r.error(&format!(
            "ERR exactly one of FROMMEMBER or FROMLONLAT can be specified for {name}"
        ));
    }
    if geosearch && !(byradius || bybox) {
        return ctx.r.error(&format!(
            "ERR exactly one of BYRADIUS and BYBOX can be specified for {name}"
        ));
    }
    if any && count == 0 {
        return ctx.r.error("ERR the ANY argument requires COUNT argument");
    }
    let (Some(z), Some((long, lat)), Some((shape, conversion))) = (zobj, centre, shape) else {
        // No source: an empty answer (and an emptied destination).
        drop(s);
        return match store {
            Some(dst) => super::zsets::store_result(ctx, dst, &[], "georadiusstore"),
            None => ctx.r.array(0),
        };
    };
    // COUNT without an order means the nearest ones (unless ANY).
    if count != 0 && sort == Sort::None && !any {
        sort = Sort::Asc;
    }
    let q = Search {
        long,
        lat,
        shape,
        conversion,
    };
    let filter = q.filter();
    let limit = if any { count as usize } else { 0 };
    let mut found: Vec<Point> = Vec::new();
    for cell in q.boxes() {
        if limit > 0 && found.len() >= limit {
            break;
        }
        let (min, max) = geohash::score_range(cell);
        let (min, max) = (min as f64, max as f64);
        let start = z.tree.count_before(|sc, _| sc >= min);
        for (sc, m) in z.tree.iter_from(start) {
            if sc >= max {
                break;
            }
            if let Some((x, y)) = geohash::decode_score(sc) {
                if let Some(d) = filter.contains(x, y) {
                    found.push(Point {
                        member: m.to_vec(),
                        long: x,
                        lat: y,
                        dist: d,
                        score: sc,
                    });
                }
            }
            if limit > 0 && found.len() >= limit {
                break;
            }
        }
    }
    drop(s);
    let n = if count == 0 {
        found.len()
    } else {
        found.len().min(count as usize)
    };
    // As Redis: a full sort when every result is returned (glibc's qsort,
    // a stable merge sort), else its partial quicksort, whose order of
    // equal distances is its own.
    let by_dist = |p: &Point, q: &Point| {
        let o = p.dist.partial_cmp(&q.dist).unwrap_or(Ordering::Equal);
        if sort == Sort::Desc {
            o.reverse()
        } else {
            o
        }
    };
    if sort != Sort::None && n > 0 {
        if n == found.len() {
            found.sort_by(by_dist);
        } else {
            crate::pqsort::pqsort(&mut found, by_dist, 0, n - 1);
        }
    }
    found.truncate(n);
    if let Some(dst) = store {
        let items: Vec<(Vec<u8>, f64)> = found
            .into_iter()
            .map(|p| {
                let sc = if storedist {
                    p.dist / conversion
                } else {
                    p.score
                };
                (p.member, sc)
            })
            .collect();
        let event = if geosearch {
            "geosearchstore"
        } else {
            "georadiusstore"
        };
        return super::zsets::store_result(ctx, dst, &items, event);
    }
    let opts = withdist as usize + withhash as usize + withcoord as usize;
    ctx.r.array(found.len());
    for p in found {
        if opts > 0 {
            ctx.r.array(opts + 1);
        }
        ctx.r.bulk(&p.member);
        if withdist {
            ctx.r.bulk(fmt_distance(p.dist / conversion).as_bytes());
        }
        if withhash {
            ctx.r.int(p.score as i64);
        }
        if withcoord {
            ctx.r.array(2);
            push_coord(ctx, p.long);
            push_coord(ctx, p.lat);
        }
    }
}

/// A radius and its unit: (shape, metres per unit).
fn radius(out: &mut Reply, r: &[u8], u: &[u8]) -> Option<(Shape, f64)> {
    let d = float(out, r, Some("need numeric radius"))?;
    if d < 0.0 {
        out.error("ERR radius cannot be negative");
        return None;
    }
    Some((Shape::Radius(d), unit(out, u)?))
}

/// A box's width, height and unit.
fn boxed(r: &mut Reply, w: &[u8], h: &[u8], u: &[u8]) -> Option<(Shape, f64)> {
    let width = float(r, w, Some("need numeric width"))?;
    let height = float(r, h, Some("need numeric height"))?;
    if height < 0.0 || width < 0.0 {
        r.error("ERR height or width cannot be negative");
        return None;
    }
    Some((Shape::Box { width, height }, unit(r, u)?))
}
