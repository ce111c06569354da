//! The commands ACL rules can name: dense ids for the permission bitmaps,
//! each command's categories, and containers' subcommands. Built once by
//! the command layer from its table.

type FastMap<K, V> = hashbrown::HashMap<K, V, foldhash::fast::RandomState>;

/// Redis's ACL categories, in the order `ACL CAT` lists them and rules are
/// described.
pub const CATEGORIES: &[&str] = &[
    "keyspace",
    "read",
    "write",
    "set",
    "sortedset",
    "list",
    "hash",
    "string",
    "bitmap",
    "hyperloglog",
    "geo",
    "stream",
    "pubsub",
    "admin",
    "fast",
    "slow",
    "blocking",
    "dangerous",
    "connection",
    "transaction",
    "scripting",
];

/// The bit of a category (case-insensitive), if it exists.
pub fn category_bit(name: &[u8]) -> Option<u32> {
    CATEGORIES
        .iter()
        .position(|c| c.as_bytes().eq_ignore_ascii_case(name))
        .map(|i| 1 << i)
}

/// One command or subcommand as the catalog is given it.
pub struct Entry {
    /// Lower case; subcommands are `parent|sub`.
    pub name: &'static str,
    /// Category bits (see [`CATEGORIES`]).
    pub categories: u32,
    /// Index of the container, for a subcommand.
    pub parent: Option<usize>,
    /// Runs before authentication and is never refused (AUTH, HELLO…).
    pub no_auth: bool,
}

pub struct Catalog {
    pub entries: Vec<Entry>,
    /// Subcommand ids of each entry.
    pub subs: Vec<Vec<usize>>,
    /// Top-level ids, in table order.
    pub top: Vec<usize>,
    by_name: FastMap<&'static str, usize>,
}

impl Catalog {
    pub fn new(entries: Vec<Entry>) -> Catalog {
        let mut subs = vec![Vec::new(); entries.len()];
        let mut top = Vec::new();
        let mut by_name = FastMap::default();
        for (i, e) in entries.iter().enumerate() {
            match e.parent {
                Some(p) => subs[p].push(i),
                None => top.push(i),
            }
            by_name.insert(e.name, i);
        }
        Catalog {
            entries,
            subs,
            top,
            by_name,
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn id(&self, name: &str) -> Option<usize> {
        self.by_name.get(name).copied()
    }

    /// Finds `cmd` or `cmd|sub` strictly, case-insensitively, as ACL rules
    /// name commands: a `|` part must be a real subcommand.
    pub fn lookup(&self, name: &[u8]) -> Option<usize> {
        let lower = std::str::from_utf8(name).ok()?.to_ascii_lowercase();
        let mut parts = lower.split('|');
        let base = parts.next()?;
        let sub = parts.next();
        if parts.next().is_some() {
            return None;
        }
        let id = self
            .id(base)
            .filter(|&i| self.entries[i].parent.is_none())?;
        match sub {
            None => Some(id),
            // A command without subcommands takes no `|` part.
            Some(_) if self.subs[id].is_empty() => None,
            Some(_) => self.id(&lower),
        }
    }

    /// Every id in `category`, containers before their subcommands.
    pub fn in_category(&self, bit: u32) -> impl Iterator<Item = usize> + '_ {
        self.top
            .iter()
            .flat_map(move |&t| std::iter::once(t).chain(self.subs[t].iter().copied()))
            .filter(move |&i| self.entries[i].categories & bit != 0)
    }
}
