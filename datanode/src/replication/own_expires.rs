//! A writable replica's own keys with a TTL (`replica-read-only no`): keys
//! a client, not the master, gave a TTL. The master never sends a DEL for
//! them, so the replica expires them itself, as Redis's
//! rememberSlaveKeyWithExpire / expireSlaveKeys do (INFO
//! slave_expires_tracked_keys).

use std::collections::HashMap;

use parking_lot::Mutex;

use crate::keyspace::Keyspace;

/// Key name -> the databases (a bit each, up to 64) it has a TTL in.
#[derive(Default)]
pub struct OwnExpires {
    keys: Mutex<HashMap<Vec<u8>, u64>>,
}

impl OwnExpires {
    pub fn remember(&self, db: usize, key: &[u8]) {
        if db >= 64 {
            return;
        }
        let mut m = self.keys.lock();
        match m.get_mut(key) {
            Some(bits) => *bits |= 1 << db,
            None => {
                m.insert(key.to_vec(), 1 << db);
            }
        }
    }

    /// Distinct key names tracked (Redis counts names, not databases).
    pub fn count(&self) -> usize {
        self.keys.lock().len()
    }

    /// Forgets every key (the data was replaced or flushed).
    pub fn clear(&self) {
        self.keys.lock().clear();
    }

    /// Deletes the tracked keys whose time has passed and forgets the ones
    /// without a TTL any more; at most about a millisecond per call, as
    /// Redis bounds its pass. Returns how many keys were deleted.
    pub fn expire(&self, ks: &Keyspace, now: i64) -> usize {
        let start = std::time::Instant::now();
        let names: Vec<(Vec<u8>, u64)> = {
            let m = self.keys.lock();
            if m.is_empty() {
                return 0;
            }
            m.iter().map(|(k, b)| (k.clone(), *b)).collect()
        };
        let mut deleted = 0;
        for (i, (key, bits)) in names.into_iter().enumerate() {
            let mut keep = 0u64;
            for db in (0..ks.count().min(64)).filter(|d| bits & (1 << d) != 0) {
                match ks.db(db).lock_key(&key, now).expire_replica_own(&key) {
                    Some(true) => deleted += 1,
                    Some(false) => keep |= 1 << db,
                    None => {}
                }
            }
            let mut m = self.keys.lock();
            // Bits remembered meanwhile stay.
            if let Some(b) = m.get_mut(&key) {
                *b = (*b & !bits) | keep;
                if *b == 0 {
                    m.remove(&key);
                }
            }
            drop(m);
            if i % 64 == 63 && start.elapsed() > std::time::Duration::from_millis(1) {
                break;
            }
        }
        deleted
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_counted_once_whatever_their_databases() {
        let o = OwnExpires::default();
        o.remember(0, b"a");
        o.remember(3, b"a");
        o.remember(0, b"b");
        o.remember(64, b"c");
        assert_eq!(o.count(), 2);
        o.clear();
        assert_eq!(o.count(), 0);
    }
}
