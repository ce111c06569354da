//! COMMAND metadata: a static reply tree per command, written in the
//! protocol the client speaks (maps and sets flatten to arrays in RESP2).

use crate::resp::Reply;

/// A reply value captured with its RESP3 type.
pub enum M {
    Int(i64),
    Simple(&'static str),
    Bulk(&'static str),
    Null,
    Array(&'static [M]),
    Set(&'static [M]),
    Map(&'static [(M, M)]),
}

impl M {
    pub fn write(&self, r: &mut Reply) {
        match self {
            M::Int(n) => r.int(*n),
            M::Simple(s) => r.simple(s),
            M::Bulk(s) => r.bulk(s.as_bytes()),
            M::Null => r.null(),
            M::Array(v) => {
                r.array(v.len());
                v.iter().for_each(|x| x.write(r));
            }
            M::Set(v) => {
                r.set(v.len());
                v.iter().for_each(|x| x.write(r));
            }
            M::Map(v) => {
                r.map(v.len());
                for (k, x) in v.iter() {
                    k.write(r);
                    x.write(r);
                }
            }
        }
    }
}

/// The COMMAND INFO entry of a command, or of a subcommand named
/// `parent|sub` (found among its parent's subcommands).
pub fn info(name: &str) -> Option<&'static M> {
    if let Some((parent, _)) = name.split_once('|') {
        let M::Array(fields) = info(parent)? else {
            return None;
        };
        let (M::Array(subs) | M::Set(subs)) = fields.get(9)? else {
            return None;
        };
        return subs.iter().find(|e| {
            matches!(e, M::Array(f) if matches!(f.first(), Some(M::Bulk(n)) if n.eq_ignore_ascii_case(name)))
        });
    }
    super::meta_table::COMMAND_INFO
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, m)| m)
}

/// Whether COMMAND INFO lists `flag` for the command (or subcommand,
/// `parent|sub`).
pub fn has_flag(name: &str, flag: &str) -> bool {
    match info(name) {
        Some(M::Array(fields)) => match fields.get(2) {
            Some(M::Set(flags)) | Some(M::Array(flags)) => flags
                .iter()
                .any(|f| matches!(f, M::Simple(s) if *s == flag)),
            _ => false,
        },
        _ => false,
    }
}

/// The COMMAND DOCS entry of a command, or of a subcommand named
/// `parent|sub` (found in its parent's `subcommands` map).
pub fn docs(name: &str) -> Option<&'static M> {
    if let Some((parent, _)) = name.split_once('|') {
        let M::Map(fields) = docs(parent)? else {
            return None;
        };
        let (_, M::Map(subs)) = fields
            .iter()
            .find(|(k, _)| matches!(k, M::Bulk("subcommands")))?
        else {
            return None;
        };
        return subs
            .iter()
            .find(|(k, _)| matches!(k, M::Bulk(n) if n.eq_ignore_ascii_case(name)))
            .map(|(_, m)| m);
    }
    super::meta_table::COMMAND_DOCS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, m)| m)
}

pub fn all_docs() -> impl Iterator<Item = &'static (&'static str, M)> {
    super::meta_table::COMMAND_DOCS.iter()
}

pub fn all() -> impl Iterator<Item = &'static (&'static str, M)> {
    super::meta_table::COMMAND_INFO.iter()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// COMMAND DOCS, like COMMAND INFO, finds a subcommand by its full
    /// name (redis-server 7.0's lookupCommandBySds).
    #[test]
    fn docs_find_subcommands_by_full_name() {
        let Some(M::Map(fields)) = docs("xinfo|help") else {
            panic!("no docs for xinfo|help")
        };
        assert!(fields
            .iter()
            .any(|(k, v)| matches!((k, v), (M::Bulk("group"), M::Bulk("stream")))));
        assert!(docs("config|get").is_some());
        assert!(docs("xinfo|nosuch").is_none());
        assert!(docs("get|x").is_none());
        assert!(docs("nosuch|x").is_none());
    }

    /// Our dispatch table and the captured metadata must agree, or
    /// clients would be told an arity we do not enforce.
    #[test]
    fn every_command_has_metadata_with_our_arity() {
        for c in crate::command::table::all() {
            let m = info(c.name).unwrap_or_else(|| panic!("no metadata for {}", c.name));
            let M::Array(f) = m else {
                panic!("bad entry for {}", c.name)
            };
            assert!(
                matches!(f[1], M::Int(a) if a == c.arity as i64),
                "arity of {}",
                c.name
            );
            let (M::Int(first), M::Int(last), M::Int(step)) = (&f[3], &f[4], &f[5]) else {
                panic!("bad key positions for {}", c.name)
            };
            assert!(docs(c.name).is_some(), "no docs for {}", c.name);
            assert_eq!(
                (*first, *last, *step),
                (c.first_key as i64, c.last_key as i64, c.step as i64),
                "key positions of {}",
                c.name
            );
        }
    }
}
