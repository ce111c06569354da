//! One hash slot's keys: the table of entries, their expiry times and the
//! WATCH versions of watched keys. A slot is always used under its lock.

use hashbrown::HashTable;

use super::key::Key;
use super::sbytes::SBytes;
use super::value::{FastMap, Value};

pub struct Entry {
    /// The key, carrying the access clock or LFU counter (see `access`).
    pub key: Key,
    pub val: Value,
}

/// A watched key's modification counter and how many clients watch it.
#[derive(Default)]
pub struct WatchState {
    pub refs: u32,
    /// Bumped by every change except the removal of an expired key.
    pub version: u64,
    /// Bumped when the key is removed because it had expired: a client
    /// that watched it already expired sees no change in that (as Redis).
    pub gone: u64,
    /// SWAPDB replaced a missing key with an already expired one: to the
    /// watchers nothing changed, so the stale key must not abort their EXEC
    /// (Redis marks them as having watched an expired key).
    pub stale_swapped_in: bool,
}

/// What WATCH remembers of a key, compared again at EXEC.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct WatchStamp {
    pub version: u64,
    pub gone: u64,
}

#[derive(Default)]
pub struct SlotTable {
    /// Entries are boxed: a bucket costs 8 bytes, not 48, which matters
    /// because per-slot tables are small and often half empty after growth.
    pub(super) map: HashTable<Box<Entry>>,
    /// Absolute expiry times in unix milliseconds; boxed and absent until
    /// the slot has one, so a slot's lock, headers and counters fit one
    /// cache line.
    pub(super) expires: Option<Box<HashTable<(SBytes, i64)>>>,
    pub(super) watched: Option<Box<FastMap<SBytes, WatchState>>>,
}

pub fn hash(key: &[u8]) -> u64 {
    use std::hash::BuildHasher;
    static STATE: std::sync::OnceLock<foldhash::fast::RandomState> = std::sync::OnceLock::new();
    STATE.get_or_init(Default::default).hash_one(key)
}

impl SlotTable {
    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    pub fn expires_len(&self) -> usize {
        self.expires.as_ref().map_or(0, |e| e.len())
    }

    pub(super) fn expires_iter(&self) -> impl Iterator<Item = &(SBytes, i64)> {
        self.expires.iter().flat_map(|e| e.iter())
    }

    pub(super) fn find(&self, key: &[u8]) -> Option<&Entry> {
        self.map
            .find(hash(key), |e| e.key.as_slice() == key)
            .map(|b| &**b)
    }

    pub(super) fn find_mut(&mut self, key: &[u8]) -> Option<&mut Entry> {
        self.map
            .find_mut(hash(key), |e| e.key.as_slice() == key)
            .map(|b| &mut **b)
    }

    pub(super) fn expire_of(&self, key: &[u8]) -> Option<i64> {
        self.expires
            .as_ref()?
            .find(hash(key), |(k, _)| k.as_slice() == key)
            .map(|(_, at)| *at)
    }

    pub(super) fn set_expire(&mut self, key: &[u8], at: i64) -> bool {
        let h = hash(key);
        let expires = self.expires.get_or_insert_with(Default::default);
        match expires.find_mut(h, |(k, _)| k.as_slice() == key) {
            Some(e) => {
                e.1 = at;
                false
            }
            None => {
                expires.insert_unique(h, (SBytes::new(key), at), |(k, _)| hash(k));
                true
            }
        }
    }

    pub(super) fn remove_expire(&mut self, key: &[u8]) -> bool {
        let Some(expires) = self.expires.as_mut() else {
            return false;
        };
        let found = match expires.find_entry(hash(key), |(k, _)| k.as_slice() == key) {
            Ok(e) => {
                e.remove();
                true
            }
            Err(_) => false,
        };
        if expires.is_empty() {
            self.expires = None;
        }
        found
    }

    /// Inserts or overwrites (one probe); returns true when the key is new.
    pub(super) fn put(&mut self, key: &[u8], val: Value, now: i64) -> bool {
        use hashbrown::hash_table::Entry as E;
        let h = hash(key);
        match self
            .map
            .entry(h, |e| e.key.as_slice() == key, |e| hash(&e.key))
        {
            E::Occupied(mut o) => {
                let e = o.get_mut();
                let old = std::mem::replace(&mut e.val, val);
                super::lazyfree::free_if(&super::lazyfree::SERVER_DEL, old);
                super::access::touch(e.key.meta_mut(), now);
                false
            }
            E::Vacant(v) => {
                v.insert(Box::new(Entry {
                    key: Key::new(key, super::access::initial(now)),
                    val,
                }));
                true
            }
        }
    }

    pub(super) fn take(&mut self, key: &[u8]) -> Option<Value> {
        match self.map.find_entry(hash(key), |e| e.key.as_slice() == key) {
            Ok(e) => {
                let (entry, _) = e.remove();
                self.shrink_if_sparse();
                Some(entry.val)
            }
            Err(_) => None,
        }
    }

    /// Tables never shrink by themselves, so under churn (eviction,
    /// expiry) every slot would keep the largest table it ever needed:
    /// with ~2 keys per slot that is a third more bucket memory, memory
    /// `maxmemory` then cannot give to keys. Shrinking only at a quarter
    /// full leaves a wide gap before the next growth.
    fn shrink_if_sparse(&mut self) {
        let len = self.map.len();
        if len == 0 {
            self.map = HashTable::new();
        } else if self.map.capacity() >= 7 && len * 4 <= self.map.capacity() {
            self.map.shrink_to(len, |e| hash(&e.key));
        }
    }

    /// Bumps the WATCH version of `key` if anyone watches it.
    pub(super) fn touch(&mut self, key: &[u8]) {
        if let Some(w) = &mut self.watched {
            if let Some(s) = w.get_mut(key) {
                s.version += 1;
                s.stale_swapped_in = false;
            }
        }
    }

    /// An expired `key` was removed.
    pub(super) fn touch_expired(&mut self, key: &[u8]) {
        if let Some(w) = &mut self.watched {
            if let Some(s) = w.get_mut(key) {
                s.gone += 1;
            }
        }
    }

    /// Every key is about to go (FLUSHDB): watchers of live keys see a
    /// change, watchers of already-expired keys only their removal.
    pub(super) fn touch_all_existing(&mut self, now: i64) {
        let Some(mut w) = self.watched.take() else {
            return;
        };
        for (k, s) in w.iter_mut() {
            if self
                .map
                .find(hash(k), |e| e.key.as_slice() == k.as_slice())
                .is_some()
            {
                match self.expire_of(k) {
                    Some(at) if at <= now => s.gone += 1,
                    _ => s.version += 1,
                }
            }
        }
        self.watched = Some(w);
    }

    pub fn iter(&self) -> impl Iterator<Item = &Entry> {
        self.map.iter().map(|b| &**b)
    }
}
