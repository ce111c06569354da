//! A compact hash table for large sets and hashes: entries live densely in
//! a Vec (so a random pick is O(1) and growth costs one entry per slot,
//! not a half-empty table), and a hash index of 4-byte positions finds
//! them. Removal swaps the last entry into the hole.

use std::hash::BuildHasher;

use hashbrown::HashTable;

use super::sbytes::SBytes;

/// What the table stores: anything with a byte-string key.
pub trait Keyed {
    fn key(&self) -> &[u8];
}

impl Keyed for SBytes {
    fn key(&self) -> &[u8] {
        self.as_slice()
    }
}

impl Keyed for (SBytes, SBytes) {
    fn key(&self) -> &[u8] {
        self.0.as_slice()
    }
}

impl Keyed for (SBytes, f64) {
    fn key(&self) -> &[u8] {
        self.0.as_slice()
    }
}

#[derive(Clone)]
pub struct Dense<E> {
    entries: Vec<E>,
    index: HashTable<u32>,
    hasher: foldhash::fast::RandomState,
}

impl<E: Keyed> Default for Dense<E> {
    fn default() -> Self {
        Self::with_capacity(0)
    }
}

impl<E: Keyed> Dense<E> {
    pub fn with_capacity(n: usize) -> Self {
        Dense {
            entries: Vec::with_capacity(n),
            index: HashTable::with_capacity(n),
            hasher: Default::default(),
        }
    }

    #[inline]
    fn hash(&self, k: &[u8]) -> u64 {
        self.hasher.hash_one(k)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn position(&self, k: &[u8]) -> Option<usize> {
        let h = self.hash(k);
        let entries = &self.entries;
        self.index
            .find(h, |&i| entries[i as usize].key() == k)
            .map(|&i| i as usize)
    }

    pub fn get(&self, k: &[u8]) -> Option<&E> {
        self.position(k).map(|i| &self.entries[i])
    }

    pub fn get_mut(&mut self, k: &[u8]) -> Option<&mut E> {
        self.position(k).map(|i| &mut self.entries[i])
    }

    pub fn contains(&self, k: &[u8]) -> bool {
        self.position(k).is_some()
    }

    /// Inserts or replaces the entry with `e`'s key; returns true when the
    /// key is new.
    pub fn insert(&mut self, e: E) -> bool {
        if let Some(i) = self.position(e.key()) {
            self.entries[i] = e;
            return false;
        }
        let h = self.hash(e.key());
        let i = self.entries.len() as u32;
        self.entries.push(e);
        let (entries, hasher) = (&self.entries, &self.hasher);
        self.index
            .insert_unique(h, i, |&j| hasher.hash_one(entries[j as usize].key()));
        true
    }

    /// Removes the entry at position `i` (the last one takes its place).
    pub fn swap_remove_index(&mut self, i: usize) -> Option<E> {
        if i >= self.entries.len() {
            return None;
        }
        let h = self.hash(self.entries[i].key());
        if let Ok(slot) = self.index.find_entry(h, |&j| j as usize == i) {
            slot.remove();
        }
        let last = self.entries.len() - 1;
        if i != last {
            let hl = self.hash(self.entries[last].key());
            if let Some(p) = self.index.find_mut(hl, |&j| j as usize == last) {
                *p = i as u32;
            }
        }
        Some(self.entries.swap_remove(i))
    }

    pub fn remove(&mut self, k: &[u8]) -> Option<E> {
        let i = self.position(k)?;
        self.swap_remove_index(i)
    }

    pub fn get_index(&self, i: usize) -> Option<&E> {
        self.entries.get(i)
    }

    pub fn iter(&self) -> std::slice::Iter<'_, E> {
        self.entries.iter()
    }

    /// Bytes owned by the table itself (entries and index), for INFO.
    pub fn table_bytes(&self) -> usize {
        self.entries.capacity() * std::mem::size_of::<E>() + self.index.capacity() * 5
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    proptest! {
        /// Against a BTreeMap model: inserts, replacements and removals
        /// (by key and by position) keep every key findable.
        #[test]
        fn behaves_like_a_map(ops in proptest::collection::vec((0u8..4, 0u16..300, any::<u8>()), 0..600)) {
            let mut d: Dense<(SBytes, SBytes)> = Dense::default();
            let mut m: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
            for (op, k, v) in ops {
                let key = format!("field:{k}").into_bytes();
                match op {
                    0 | 1 => {
                        let new = d.insert((SBytes::new(&key), SBytes::new(&[v])));
                        prop_assert_eq!(new, m.insert(key, vec![v]).is_none());
                    }
                    2 => {
                        let r = d.remove(&key).map(|e| e.1.to_vec());
                        prop_assert_eq!(r, m.remove(&key));
                    }
                    _ => {
                        if !d.is_empty() {
                            let i = k as usize % d.len();
                            let e = d.swap_remove_index(i).unwrap();
                            prop_assert!(m.remove(e.0.as_slice()).is_some());
                        }
                    }
                }
                prop_assert_eq!(d.len(), m.len());
            }
            for (k, v) in &m {
                prop_assert_eq!(d.get(k).map(|e| e.1.to_vec()), Some(v.clone()));
            }
        }
    }
}
