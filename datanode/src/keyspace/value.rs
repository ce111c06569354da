//! Values stored under keys, in compact representations that mirror the
//! encodings Redis reports through `OBJECT ENCODING`.

use super::dense::Dense;
use super::sbytes::SBytes;
use crate::resp::parse_i64;

/// When compact representations convert to the large ones: Redis's
/// `hash-max-listpack-*`, `set-max-intset-entries` and
/// `zset-max-listpack-*`, set from the configuration (CONFIG SET included)
/// so OBJECT ENCODING follows the same history as in Redis. Conversions
/// are one way, as there.
pub mod limits {
    use std::sync::atomic::{AtomicUsize, Ordering};

    pub static HASH_ENTRIES: AtomicUsize = AtomicUsize::new(128);
    pub static HASH_VALUE: AtomicUsize = AtomicUsize::new(64);
    pub static SET_INTSET: AtomicUsize = AtomicUsize::new(512);
    pub static ZSET_ENTRIES: AtomicUsize = AtomicUsize::new(128);
    pub static ZSET_VALUE: AtomicUsize = AtomicUsize::new(64);

    #[inline]
    pub fn get(l: &AtomicUsize) -> usize {
        l.load(Ordering::Relaxed)
    }
}
use limits::get as limit;

/// The defaults of the limits above.
pub const HASH_MAX_LISTPACK_ENTRIES: usize = 128;
pub const HASH_MAX_LISTPACK_VALUE: usize = 64;
/// Strings up to this length are `embstr` in Redis; longer ones are `raw`.
const EMBSTR_MAX: usize = 44;

pub type FastMap<K, V> = hashbrown::HashMap<K, V, foldhash::fast::RandomState>;

pub enum Value {
    /// A string holding a canonical decimal integer.
    Int(i64),
    /// A string stored as set.
    Str(SBytes),
    /// A string grown in place by APPEND/SETRANGE (Redis calls it `raw`).
    /// Boxed so the enum stays 24 bytes.
    #[allow(clippy::box_collection)]
    Raw(Box<Vec<u8>>),
    Hash(Box<HashObj>),
    /// A list (Redis 7.0 reports every list as `quicklist`).
    List(Box<super::plist::PackedList>),
    Set(Box<SetObj>),
    ZSet(Box<ZSetObj>),
    Stream(Box<super::stream::Stream>),
}

/// What `TYPE` answers and what WRONGTYPE checks compare.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Kind {
    String,
    Hash,
    List,
    Set,
    ZSet,
    Stream,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::String => "string",
            Kind::Hash => "hash",
            Kind::List => "list",
            Kind::Set => "set",
            Kind::ZSet => "zset",
            Kind::Stream => "stream",
        }
    }
}

impl Value {
    /// A string value from client bytes, stored as an integer when it is one.
    pub fn string(b: &[u8]) -> Value {
        if b.len() <= 20 {
            if let Some(n) = parse_i64(b) {
                return Value::Int(n);
            }
        }
        Value::Str(SBytes::new(b))
    }

    pub fn kind(&self) -> Kind {
        match self {
            Value::Int(_) | Value::Str(_) | Value::Raw(_) => Kind::String,
            Value::Hash(_) => Kind::Hash,
            Value::List(_) => Kind::List,
            Value::Set(_) => Kind::Set,
            Value::ZSet(_) => Kind::ZSet,
            Value::Stream(_) => Kind::Stream,
        }
    }

    pub fn encoding(&self) -> &'static str {
        match self {
            Value::Int(_) => "int",
            Value::Str(s) if s.len() <= EMBSTR_MAX => "embstr",
            Value::Str(_) | Value::Raw(_) => "raw",
            Value::List(_) => "quicklist",
            Value::Stream(_) => "stream",
            Value::ZSet(z) => {
                if z.big {
                    "skiplist"
                } else {
                    "listpack"
                }
            }
            Value::Set(s) => match **s {
                SetObj::Ints(..) => "intset",
                SetObj::Hash(_) => "hashtable",
            },
            Value::Hash(h) => match **h {
                HashObj::Small(_) => "listpack",
                HashObj::Large(_) => "hashtable",
            },
        }
    }

    /// What freeing this value costs, as Redis estimates it to decide
    /// whether UNLINK frees it in the background: roughly its allocations.
    pub fn free_effort(&self) -> usize {
        match self {
            Value::List(l) => l.chunk_count(),
            Value::Set(s) => match **s {
                SetObj::Hash(_) => s.len(),
                SetObj::Ints(..) => 1,
            },
            Value::ZSet(z) if z.big => z.len(),
            Value::Hash(h) => match **h {
                HashObj::Large(_) => h.len(),
                HashObj::Small(_) => 1,
            },
            Value::Stream(st) => st.free_effort(),
            _ => 1,
        }
    }

    /// The bytes of a string value; integers are formatted into `buf`.
    pub fn str_bytes<'a>(&'a self, buf: &'a mut itoa::Buffer) -> Option<&'a [u8]> {
        match self {
            Value::Int(n) => Some(buf.format(*n).as_bytes()),
            Value::Str(s) => Some(s.as_slice()),
            Value::Raw(v) => Some(v),
            _ => None,
        }
    }

    /// Length in bytes of a string value.
    pub fn str_len(&self) -> Option<usize> {
        match self {
            Value::Int(n) => Some(itoa::Buffer::new().format(*n).len()),
            Value::Str(s) => Some(s.len()),
            Value::Raw(v) => Some(v.len()),
            _ => None,
        }
    }

    /// Turns a string value into a growable buffer for APPEND/SETRANGE.
    pub fn make_raw(&mut self) -> Option<&mut Vec<u8>> {
        match self {
            Value::Int(n) => {
                *self = Value::Raw(Box::new(itoa::Buffer::new().format(*n).as_bytes().to_vec()))
            }
            Value::Str(s) => *self = Value::Raw(Box::new(s.to_vec())),
            Value::Raw(_) => {}
            _ => return None,
        }
        match self {
            Value::Raw(v) => Some(v),
            _ => None,
        }
    }

    /// A string value's bytes, writable where they are at their length
    /// (an integer-encoded string has none).
    pub fn bytes_mut(&mut self) -> Option<&mut [u8]> {
        match self {
            Value::Str(s) => Some(s.as_mut_slice()),
            Value::Raw(v) => Some(v),
            _ => None,
        }
    }

    /// Heap bytes owned by the value (for memory accounting and DEBUG).
    pub fn heap_size(&self) -> usize {
        match self {
            Value::Int(_) => 0,
            Value::Str(s) => s.heap_size(),
            Value::Raw(v) => v.capacity(),
            Value::Hash(h) => h.heap_size(),
            Value::List(l) => l.heap_size(),
            Value::Set(s) => s.heap_size(),
            Value::ZSet(z) => z.len() * 80,
            Value::Stream(st) => st.heap_size(),
        }
    }
}

/// A hash: a small insertion-ordered vector, converted once to a hash table.
pub enum HashObj {
    Small(Vec<(SBytes, SBytes)>),
    Large(Dense<(SBytes, SBytes)>),
}

impl Default for HashObj {
    fn default() -> Self {
        HashObj::Small(Vec::new())
    }
}

impl HashObj {
    pub fn len(&self) -> usize {
        match self {
            HashObj::Small(v) => v.len(),
            HashObj::Large(m) => m.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn get(&self, field: &[u8]) -> Option<&[u8]> {
        match self {
            HashObj::Small(v) => v
                .iter()
                .find(|(f, _)| f.as_slice() == field)
                .map(|(_, val)| val.as_slice()),
            HashObj::Large(m) => m.get(field).map(|e| e.1.as_slice()),
        }
    }

    /// Sets a field; returns true when the field is new.
    pub fn set(&mut self, field: &[u8], value: &[u8]) -> bool {
        if let HashObj::Small(v) = self {
            if let Some(slot) = v.iter_mut().find(|(f, _)| f.as_slice() == field) {
                slot.1 = SBytes::new(value);
                self.maybe_convert(value.len().max(field.len()));
                return false;
            }
            let max_value = limit(&limits::HASH_VALUE);
            if v.len() < limit(&limits::HASH_ENTRIES)
                && field.len() <= max_value
                && value.len() <= max_value
            {
                v.push((SBytes::new(field), SBytes::new(value)));
                return true;
            }
            self.convert();
        }
        match self {
            HashObj::Large(m) => m.insert((SBytes::new(field), SBytes::new(value))),
            HashObj::Small(_) => false,
        }
    }

    fn maybe_convert(&mut self, longest: usize) {
        if longest > limit(&limits::HASH_VALUE) {
            self.convert();
        }
    }

    fn convert(&mut self) {
        if let HashObj::Small(v) = self {
            let mut m = Dense::with_capacity(v.len() + 1);
            for pair in v.drain(..) {
                m.insert(pair);
            }
            *self = HashObj::Large(m);
        }
    }

    pub fn remove(&mut self, field: &[u8]) -> bool {
        match self {
            HashObj::Small(v) => match v.iter().position(|(f, _)| f.as_slice() == field) {
                Some(i) => {
                    v.remove(i);
                    true
                }
                None => false,
            },
            HashObj::Large(m) => m.remove(field).is_some(),
        }
    }

    pub fn for_each(&self, mut f: impl FnMut(&[u8], &[u8])) {
        match self {
            HashObj::Small(v) => v.iter().for_each(|(k, val)| f(k, val)),
            HashObj::Large(m) => m.iter().for_each(|(k, val)| f(k, val)),
        }
    }

    /// The i-th field/value pair in iteration order (used for random picks).
    pub fn nth(&self, i: usize) -> Option<(&[u8], &[u8])> {
        match self {
            HashObj::Small(v) => v.get(i).map(|(k, val)| (k.as_slice(), val.as_slice())),
            // O(1): entries are dense.
            HashObj::Large(m) => m
                .get_index(i)
                .map(|(k, val)| (k.as_slice(), val.as_slice())),
        }
    }

    pub fn pairs(&self) -> Vec<(&[u8], &[u8])> {
        let mut out = Vec::with_capacity(self.len());
        match self {
            HashObj::Small(v) => {
                out.extend(v.iter().map(|(k, val)| (k.as_slice(), val.as_slice())))
            }
            HashObj::Large(m) => {
                out.extend(m.iter().map(|(k, val)| (k.as_slice(), val.as_slice())))
            }
        }
        out
    }

    pub fn heap_size(&self) -> usize {
        match self {
            HashObj::Small(v) => {
                v.capacity() * 48
                    + v.iter()
                        .map(|(a, b)| a.heap_size() + b.heap_size())
                        .sum::<usize>()
            }
            HashObj::Large(m) => {
                m.table_bytes()
                    + m.iter()
                        .map(|(a, b)| a.heap_size() + b.heap_size())
                        .sum::<usize>()
            }
        }
    }
}

/// Sets of integers stay a sorted vector (Redis: intset) up to this size.
pub const SET_MAX_INTSET_ENTRIES: usize = 512;

pub type FastSet<K> = hashbrown::HashSet<K, foldhash::fast::RandomState>;

/// A hash set with O(1) access by position, so SPOP and SRANDMEMBER can
/// pick a random member without walking the set.
pub type IndexedSet = Dense<SBytes>;

/// A set: sorted integers while it can be, then a hash set.
pub enum SetObj {
    /// Sorted integers, and the bytes each takes in Redis's intset (2, 4
    /// or 8): the widest member ever added, as an intset never narrows.
    Ints(Vec<i64>, u8),
    Hash(IndexedSet),
}

impl Default for SetObj {
    fn default() -> Self {
        SetObj::Ints(Vec::new(), 2)
    }
}

impl SetObj {
    pub fn len(&self) -> usize {
        match self {
            SetObj::Ints(v, _) => v.len(),
            SetObj::Hash(h) => h.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn as_int(m: &[u8]) -> Option<i64> {
        if m.len() <= 20 {
            parse_i64(m)
        } else {
            None
        }
    }

    /// The integer an intset would hold for `m`, if it can hold one.
    pub fn int_member(m: &[u8]) -> Option<i64> {
        Self::as_int(m)
    }

    /// Whether these distinct members, added one by one, leave a set an
    /// intset.
    pub fn fits_intset(members: &[Vec<u8>]) -> bool {
        members.len() <= limit(&limits::SET_INTSET)
            && members.iter().all(|m| Self::as_int(m).is_some())
    }

    pub fn contains(&self, m: &[u8]) -> bool {
        match self {
            SetObj::Ints(v, _) => Self::as_int(m).is_some_and(|n| v.binary_search(&n).is_ok()),
            SetObj::Hash(h) => h.contains(m),
        }
    }

    fn convert_to_hash(&mut self) {
        if let SetObj::Ints(v, _) = self {
            let mut h = IndexedSet::with_capacity(v.len() + 1);
            let mut b = itoa::Buffer::new();
            for n in v.iter() {
                h.insert(SBytes::new(b.format(*n).as_bytes()));
            }
            *self = SetObj::Hash(h);
        }
    }

    /// Adds a member; true when it is new.
    pub fn add(&mut self, m: &[u8]) -> bool {
        if let SetObj::Ints(v, width) = self {
            if let Some(n) = Self::as_int(m) {
                match v.binary_search(&n) {
                    Ok(_) => return false,
                    Err(i) if v.len() < limit(&limits::SET_INTSET) => {
                        v.insert(i, n);
                        *width = (*width).max(int_width(n));
                        return true;
                    }
                    Err(_) => {}
                }
            }
            self.convert_to_hash();
        }
        match self {
            SetObj::Hash(h) => h.insert(SBytes::new(m)),
            SetObj::Ints(..) => false,
        }
    }

    pub fn remove(&mut self, m: &[u8]) -> bool {
        match self {
            SetObj::Ints(v, _) => match Self::as_int(m).map(|n| v.binary_search(&n)) {
                Some(Ok(i)) => {
                    v.remove(i);
                    true
                }
                _ => false,
            },
            SetObj::Hash(h) => h.remove(m).is_some(),
        }
    }

    /// A random member, in O(1).
    pub fn random_member(&self, rng: &mut impl rand::Rng) -> Option<Vec<u8>> {
        let n = self.len();
        if n == 0 {
            return None;
        }
        let i = rng.random_range(0..n);
        match self {
            SetObj::Ints(v, _) => Some(itoa::Buffer::new().format(v[i]).as_bytes().to_vec()),
            SetObj::Hash(h) => h.get_index(i).map(|m| m.to_vec()),
        }
    }

    /// Removes and returns a random member.
    pub fn pop_random(&mut self, rng: &mut impl rand::Rng) -> Option<Vec<u8>> {
        let n = self.len();
        if n == 0 {
            return None;
        }
        let i = rng.random_range(0..n);
        match self {
            SetObj::Ints(v, _) => Some(itoa::Buffer::new().format(v.remove(i)).as_bytes().to_vec()),
            SetObj::Hash(h) => h.swap_remove_index(i).map(|m| m.to_vec()),
        }
    }

    /// Every member, as bytes (integers formatted).
    pub fn members(&self) -> Vec<Vec<u8>> {
        match self {
            SetObj::Ints(v, _) => {
                let mut b = itoa::Buffer::new();
                v.iter().map(|n| b.format(*n).as_bytes().to_vec()).collect()
            }
            SetObj::Hash(h) => h.iter().map(|m| m.to_vec()).collect(),
        }
    }

    pub fn heap_size(&self) -> usize {
        match self {
            SetObj::Ints(v, _) => v.capacity() * 8,
            SetObj::Hash(h) => h.table_bytes() + h.iter().map(|m| m.heap_size()).sum::<usize>(),
        }
    }
}

/// The intset width (bytes) an integer needs.
pub fn int_width(n: i64) -> u8 {
    if i16::try_from(n).is_ok() {
        2
    } else if i32::try_from(n).is_ok() {
        4
    } else {
        8
    }
}

/// Sorted sets stay "listpack" (as Redis reports) up to these sizes.
pub const ZSET_MAX_LISTPACK_ENTRIES: usize = 128;
pub const ZSET_MAX_LISTPACK_VALUE: usize = 64;

/// A sorted set: member → score for lookups, and an order-statistics tree
/// for ranks and ranges.
#[derive(Default)]
pub struct ZSetObj {
    pub dict: Dense<(SBytes, f64)>,
    pub tree: super::ranktree::RankTree,
    /// Grown past the listpack thresholds once (Redis never converts back).
    pub big: bool,
}

impl ZSetObj {
    pub fn len(&self) -> usize {
        self.dict.len()
    }

    pub fn is_empty(&self) -> bool {
        self.dict.is_empty()
    }

    pub fn score(&self, m: &[u8]) -> Option<f64> {
        self.dict.get(m).map(|e| e.1)
    }

    /// A sorted set from (member, score) pairs in any order; None when a
    /// member repeats (a corrupt RDB file, as Redis judges it).
    pub fn from_pairs(mut pairs: Vec<(SBytes, f64)>) -> Option<ZSetObj> {
        let mut dict = Dense::with_capacity(pairs.len());
        let max_value = limit(&limits::ZSET_VALUE);
        let big = pairs.len() > limit(&limits::ZSET_ENTRIES)
            || pairs.iter().any(|(m, _)| m.len() > max_value);
        for (m, s) in &mut pairs {
            if !big {
                *s = listpack_score(*s);
            }
            if !dict.insert((m.clone(), *s)) {
                return None;
            }
        }
        let mut sorted: Vec<(f64, SBytes)> = pairs.into_iter().map(|(m, s)| (s, m)).collect();
        sorted.sort_unstable_by(|a, b| super::ranktree::cmp_entry(a.0, &a.1, b.0, &b.1));
        Some(ZSetObj {
            dict,
            tree: super::ranktree::RankTree::from_sorted(sorted),
            big,
        })
    }

    /// Sets a member's score; returns the previous one. An equal score
    /// (0 and -0 included) leaves the member as it is, as Redis does.
    pub fn insert(&mut self, m: &[u8], score: f64) -> Option<f64> {
        let old = self.dict.get(m).map(|e| e.1);
        if let Some(o) = old {
            if o == score {
                return old;
            }
            self.tree.remove(o, m);
        }
        // Redis converts to a skiplist before the insert that outgrows the
        // listpack, so that member keeps its exact score.
        let len = self.dict.len() + usize::from(old.is_none());
        if len > limit(&limits::ZSET_ENTRIES) || m.len() > limit(&limits::ZSET_VALUE) {
            self.big = true;
        }
        let score = if self.big {
            score
        } else {
            listpack_score(score)
        };
        self.tree.insert(score, m);
        self.dict.insert((SBytes::new(m), score));
        old
    }

    pub fn remove(&mut self, m: &[u8]) -> bool {
        match self.dict.remove(m) {
            Some((_, s)) => {
                self.tree.remove(s, m);
                true
            }
            None => false,
        }
    }

    /// Elements by rank range (inclusive), ascending.
    pub fn range(&self, start: usize, end: usize) -> Vec<(Vec<u8>, f64)> {
        self.tree
            .walk(start, false)
            .take((end + 1).saturating_sub(start))
            .map(|(s, m)| (m.to_vec(), s))
            .collect()
    }

    pub fn clone_obj(&self) -> ZSetObj {
        let mut z = ZSetObj::default();
        for (m, s) in self.dict.iter() {
            z.insert(m, *s);
        }
        z.big = self.big;
        z
    }
}

/// A score as a listpack keeps it: Redis stores an integral score as an
/// integer, so -0 reads back as 0; any other double survives its `%.17g`
/// text exactly.
fn listpack_score(score: f64) -> f64 {
    if score == 0.0 {
        0.0
    } else {
        score
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compact_sizes() {
        assert!(
            std::mem::size_of::<Value>() <= 32,
            "{}",
            std::mem::size_of::<Value>()
        );
    }

    #[test]
    fn integers_are_stored_only_when_canonical() {
        assert!(matches!(Value::string(b"123"), Value::Int(123)));
        assert!(matches!(Value::string(b"0123"), Value::Str(_)));
        assert!(matches!(Value::string(b"-0"), Value::Str(_)));
        assert_eq!(Value::string(b"12345").encoding(), "int");
        assert_eq!(Value::string(&[b'a'; 44]).encoding(), "embstr");
        assert_eq!(Value::string(&[b'a'; 45]).encoding(), "raw");
    }

    #[test]
    fn hash_converts_past_thresholds() {
        let mut h = HashObj::default();
        for i in 0..HASH_MAX_LISTPACK_ENTRIES {
            assert!(h.set(format!("f{i}").as_bytes(), b"v"));
        }
        assert!(matches!(h, HashObj::Small(_)));
        assert!(h.set(b"one-more", b"v"));
        assert!(matches!(h, HashObj::Large(_)));
        assert_eq!(h.len(), HASH_MAX_LISTPACK_ENTRIES + 1);
        let mut h = HashObj::default();
        h.set(b"a", b"x");
        assert!(!h.set(b"a", &[b'y'; 65]));
        assert!(matches!(h, HashObj::Large(_)));
        assert_eq!(h.get(b"a").map(|v| v.len()), Some(65));
    }
}
