//! The keyspace: databases of hash-slot tables holding compact values.

pub mod access;
pub mod blocking;
pub mod db;
pub mod dense;
pub mod events;
pub mod evict;
pub mod hashslot;
pub mod key;
pub mod lookups;
pub mod plist;
pub mod ranktree;
pub mod sbytes;
pub mod slot;
pub mod value;

use std::sync::{Arc, OnceLock};

pub use db::{now_ms, Db, SlotRef};
pub use hashslot::{key_slot, SLOTS};
pub use sbytes::SBytes;
pub use value::{HashObj, Kind, SetObj, Value, ZSetObj};

use crate::persistence::effects::EffectLog;

thread_local! {
    static FROM_MASTER: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// A replica is applying its master's stream on this thread (or stops).
pub fn set_applying_master_stream(on: bool) {
    FROM_MASTER.with(|f| f.set(on));
}

/// Whether this thread applies a master's stream now.
pub fn applying_master_stream() -> bool {
    FROM_MASTER.with(|f| f.get())
}

/// Expiry state every database shares.
#[derive(Default)]
pub struct Expiry {
    /// Set while clients are paused (CLIENT PAUSE): expired keys read as
    /// missing but stay in place, so the dataset does not change under a
    /// pause (Redis keeps it constant for failovers).
    pub paused: std::sync::atomic::AtomicBool,
    /// Set on a replica: it expires nothing itself (its master's DELs
    /// arrive in the stream), and keys past their time read as missing.
    pub replica: std::sync::atomic::AtomicBool,
    /// Keys deleted because their time came (INFO expired_keys).
    pub expired: std::sync::atomic::AtomicU64,
}

/// All databases; they are created on first use so an unused database
/// costs nothing.
pub struct Keyspace {
    dbs: Box<[OnceLock<Db>]>,
    pub log: Arc<EffectLog>,
    pub blocking: Arc<blocking::Blocking>,
    pub events: Arc<events::KeyEvents>,
    pub expiry: Arc<Expiry>,
}

impl Keyspace {
    pub fn new(databases: usize, log: Arc<EffectLog>) -> Keyspace {
        Keyspace {
            dbs: (0..databases.max(1)).map(|_| OnceLock::new()).collect(),
            log,
            blocking: Default::default(),
            events: Default::default(),
            expiry: Default::default(),
        }
    }

    pub fn count(&self) -> usize {
        self.dbs.len()
    }

    pub fn db(&self, i: usize) -> &Db {
        self.dbs[i].get_or_init(|| {
            Db::new(
                i,
                self.log.clone(),
                self.blocking.clone(),
                self.events.clone(),
                self.expiry.clone(),
            )
        })
    }

    /// Databases that exist already (never creates one).
    pub fn existing(&self) -> impl Iterator<Item = &Db> {
        self.dbs.iter().filter_map(|d| d.get())
    }
}

#[cfg(test)]
mod replica_expiry_tests {
    use std::sync::atomic::Ordering;
    use std::sync::Arc;

    use super::*;

    #[test]
    fn a_replica_keeps_expired_keys_and_its_master_still_sees_them() {
        let ks = Keyspace::new(1, Arc::new(EffectLog::default()));
        let db = ks.db(0);
        {
            let mut g = db.lock_key(b"k", 1_000);
            g.set(b"k", Value::Str(SBytes::new(b"v")), false);
            g.set_expire(b"k", 2_000);
        }
        ks.expiry.replica.store(true, Ordering::Relaxed);
        // Past its time: missing to clients, but not deleted.
        assert!(db.lock_key(b"k", 5_000).get(b"k").is_none());
        assert_eq!(db.size(), 1);
        // The master's commands still see it (the master decides).
        set_applying_master_stream(true);
        assert!(db.lock_key(b"k", 5_000).get(b"k").is_some());
        set_applying_master_stream(false);
        // A master deletes it on access.
        ks.expiry.replica.store(false, Ordering::Relaxed);
        assert!(db.lock_key(b"k", 5_000).get(b"k").is_none());
        assert_eq!(db.size(), 0);
    }
}
