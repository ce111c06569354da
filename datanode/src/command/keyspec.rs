//! Key specifications: where a command's keys are and what it does to
//! them, read from the COMMAND INFO metadata (captured from redis-server)
//! the way Redis walks them for COMMAND GETKEYS and GETKEYSANDFLAGS.

use super::meta::M;
use super::Args;

/// One key argument and its spec's flags (`RW`, `access`, …).
pub struct KeyRef {
    pub index: usize,
    pub flags: Vec<&'static str>,
}

/// The arguments do not fit the command's key specs.
#[derive(Debug, PartialEq, Eq)]
pub struct Invalid;

fn map_get(m: &'static M, key: &str) -> Option<&'static M> {
    match m {
        M::Map(v) => v
            .iter()
            .find(|(k, _)| matches!(k, M::Bulk(s) | M::Simple(s) if *s == key))
            .map(|(_, v)| v),
        _ => None,
    }
}

fn int(m: Option<&'static M>) -> Option<i64> {
    match m {
        Some(M::Int(n)) => Some(*n),
        _ => None,
    }
}

fn text(m: Option<&'static M>) -> Option<&'static str> {
    match m {
        Some(M::Bulk(s) | M::Simple(s)) => Some(s),
        _ => None,
    }
}

fn strings(m: Option<&'static M>) -> Vec<&'static str> {
    match m {
        Some(M::Set(v) | M::Array(v)) => v
            .iter()
            .filter_map(|x| match x {
                M::Simple(s) | M::Bulk(s) => Some(*s),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// The COMMAND INFO entry of a command or `parent|sub` subcommand.
pub fn info_of(name: &str) -> Option<&'static M> {
    match name.split_once('|') {
        None => super::meta::info(name),
        Some((parent, _)) => match super::meta::info(parent)? {
            M::Array(f) if f.len() > 9 => match &f[9] {
                M::Array(subs) | M::Set(subs) => subs
                    .iter()
                    .find(|s| matches!(s, M::Array(sf) if matches!(sf.first(), Some(M::Bulk(n)) if *n == name))),
                _ => None,
            },
            _ => None,
        },
    }
}

/// The key specs of a COMMAND INFO entry.
fn specs(info: &'static M) -> &'static [M] {
    match info {
        M::Array(f) if f.len() > 8 => match &f[8] {
            M::Set(v) | M::Array(v) => v,
            _ => &[],
        },
        _ => &[],
    }
}

/// The last key index of a `range` spec starting at `start`: `lastkey`
/// counts from the start, or (negative) from the end, then divided by
/// `limit` when it is above 1.
pub fn range_last(start: i64, lastkey: i64, limit: i64, argc: i64) -> i64 {
    if lastkey >= 0 {
        start + lastkey
    } else if limit <= 1 {
        argc + lastkey
    } else {
        start + ((argc - start) / limit + lastkey)
    }
}

/// A key spec of the plain kind: keys from a fixed index over a range.
pub struct Range {
    pub start: i64,
    pub lastkey: i64,
    pub step: i64,
    pub limit: i64,
    pub flags: Vec<&'static str>,
}

/// The command's key specs when all are plain index-and-range ones with
/// fixed flags (most commands), so their keys can be found without
/// walking the metadata again; `None` otherwise.
pub fn simple_ranges(info: &'static M) -> Option<Vec<Range>> {
    let mut out = Vec::new();
    for spec in specs(info) {
        let flags = strings(map_get(spec, "flags"));
        if flags.contains(&"variable_flags") || flags.contains(&"incomplete") {
            return None;
        }
        let bs = map_get(spec, "begin_search");
        let fk = map_get(spec, "find_keys");
        if text(bs.and_then(|b| map_get(b, "type"))) != Some("index")
            || text(fk.and_then(|f| map_get(f, "type"))) != Some("range")
        {
            return None;
        }
        let start = int(bs
            .and_then(|b| map_get(b, "spec"))
            .and_then(|s| map_get(s, "index")))?;
        let s = fk.and_then(|f| map_get(f, "spec"));
        out.push(Range {
            start,
            lastkey: int(s.and_then(|s| map_get(s, "lastkey"))).unwrap_or(0),
            step: int(s.and_then(|s| map_get(s, "keystep")))
                .unwrap_or(1)
                .max(1),
            limit: int(s.and_then(|s| map_get(s, "limit"))).unwrap_or(0),
            flags,
        });
    }
    Some(out)
}

/// Whether a key spec is marked `incomplete` (MIGRATE's): Redis then
/// asks the command itself for all its keys.
pub fn has_incomplete_spec(info: &'static M) -> bool {
    specs(info)
        .iter()
        .any(|s| strings(map_get(s, "flags")).contains(&"incomplete"))
}

/// Whether the entry's flags include `flag` (e.g. `movablekeys`).
pub fn has_flag(info: &'static M, flag: &str) -> bool {
    match info {
        M::Array(f) if f.len() > 2 => strings(Some(&f[2])).contains(&flag),
        _ => false,
    }
}

/// Flags of specs marked `variable_flags`, which depend on the arguments:
/// SET overwrites its key unless GET asks for the old value too.
fn variable_flags(info: &'static M, args: &Args) -> Vec<&'static str> {
    let name = match info {
        M::Array(f) => text(f.first()).unwrap_or(""),
        _ => "",
    };
    match name {
        "set" if args.iter().skip(3).any(|a| a.eq_ignore_ascii_case(b"GET")) => {
            vec!["RW", "access", "update"]
        }
        "set" => vec!["OW", "update"],
        // BITFIELD only reads its key when every operation is a GET.
        "bitfield" => {
            let mut i = 2;
            let mut readonly = true;
            while i < args.len() {
                let rem = args.len() - i - 1;
                let a = args.get(i);
                if a.eq_ignore_ascii_case(b"GET") && rem >= 2 {
                    i += 3;
                } else if a.eq_ignore_ascii_case(b"OVERFLOW") && rem >= 1 {
                    i += 2;
                } else {
                    readonly = false;
                    break;
                }
            }
            if readonly {
                vec!["RO", "access"]
            } else {
                vec!["RW", "access", "update"]
            }
        }
        _ => Vec::new(),
    }
}

/// Finds the keys of `args` (argument 0 is the command name) by the
/// command's key specs. `fallback` gives positions for specs Redis marks
/// `unknown` (it then asks the command itself, as we do).
pub fn keys(
    info: &'static M,
    args: &Args,
    fallback: &dyn Fn() -> Vec<usize>,
) -> Result<Vec<KeyRef>, Invalid> {
    let argc = args.len() as i64;
    let mut out: Vec<KeyRef> = Vec::new();
    // Specs Redis marks `unknown`: their keys come from the command itself.
    let mut unknown: Vec<&'static M> = Vec::new();
    for spec in specs(info) {
        let mut flags = strings(map_get(spec, "flags"));
        if flags.contains(&"variable_flags") {
            flags = variable_flags(info, args);
        }
        let bs = map_get(spec, "begin_search");
        let fk = map_get(spec, "find_keys");
        let start = match text(bs.and_then(|b| map_get(b, "type"))) {
            Some("index") => {
                match int(bs
                    .and_then(|b| map_get(b, "spec"))
                    .and_then(|s| map_get(s, "index")))
                {
                    Some(i) => i,
                    None => continue,
                }
            }
            Some("keyword") => {
                let s = bs.and_then(|b| map_get(b, "spec"));
                let Some(word) = text(s.and_then(|s| map_get(s, "keyword"))) else {
                    continue;
                };
                let from = int(s.and_then(|s| map_get(s, "startfrom"))).unwrap_or(1);
                let found = if from >= 0 {
                    (from..argc)
                        .find(|&i| args.get(i as usize).eq_ignore_ascii_case(word.as_bytes()))
                } else {
                    (1..=argc + from)
                        .rev()
                        .find(|&i| args.get(i as usize).eq_ignore_ascii_case(word.as_bytes()))
                };
                match found {
                    Some(i) => i + 1,
                    // No keyword, no keys from this spec.
                    None => continue,
                }
            }
            _ => {
                unknown.push(spec);
                continue;
            }
        };
        let s = fk.and_then(|f| map_get(f, "spec"));
        let (first, last, step) = match text(fk.and_then(|f| map_get(f, "type"))) {
            Some("range") => {
                let lastkey = int(s.and_then(|s| map_get(s, "lastkey"))).unwrap_or(0);
                let step = int(s.and_then(|s| map_get(s, "keystep")))
                    .unwrap_or(1)
                    .max(1);
                let limit = int(s.and_then(|s| map_get(s, "limit"))).unwrap_or(0);
                (start, range_last(start, lastkey, limit, argc), step)
            }
            Some("keynum") => {
                let idx = int(s.and_then(|s| map_get(s, "keynumidx"))).unwrap_or(0);
                let firstkey = int(s.and_then(|s| map_get(s, "firstkey"))).unwrap_or(1);
                let step = int(s.and_then(|s| map_get(s, "keystep")))
                    .unwrap_or(1)
                    .max(1);
                if start + idx >= argc {
                    return Err(Invalid);
                }
                let Some(n) = crate::resp::parse_i64(args.get((start + idx) as usize)) else {
                    return Err(Invalid);
                };
                if n < 0 {
                    return Err(Invalid);
                }
                let first = start + firstkey;
                (first, first + (n - 1) * step, step)
            }
            _ => {
                unknown.push(spec);
                continue;
            }
        };
        if last < first {
            continue;
        }
        if last >= argc || first < 1 {
            return Err(Invalid);
        }
        let mut i = first;
        while i <= last {
            out.push(KeyRef {
                index: i as usize,
                flags: flags.clone(),
            });
            i += step;
        }
    }
    if !unknown.is_empty() {
        for i in fallback() {
            if out.iter().any(|k| k.index == i) {
                continue;
            }
            // A key after a keyword (SORT … STORE k) takes the flags of the
            // unknown spec whose notes name that keyword.
            let prev = String::from_utf8_lossy(args.get(i.saturating_sub(1))).to_ascii_uppercase();
            let spec = unknown
                .iter()
                .find(|s| {
                    text(map_get(s, "notes")).is_some_and(|n| {
                        n.split(|c: char| !c.is_ascii_alphanumeric())
                            .any(|w| w == prev)
                    })
                })
                .or(unknown.first());
            out.push(KeyRef {
                index: i,
                flags: spec
                    .map(|s| strings(map_get(s, "flags")))
                    .unwrap_or_default(),
            });
        }
        out.sort_by_key(|k| k.index);
    }
    Ok(out)
}
