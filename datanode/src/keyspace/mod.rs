//! The keyspace: databases of hash-slot tables holding compact values.

pub mod access;
pub mod blocking;
pub mod db;
pub mod dense;
pub mod events;
pub mod evict;
pub mod hashslot;
pub mod hll;
pub mod key;
pub mod lazyfree;
pub mod lookups;
pub mod plist;
pub mod ranktree;
pub mod sbytes;
pub mod slot;
pub mod stream;
pub mod value;

use std::sync::{Arc, OnceLock};

pub use db::{now_ms, Db, SlotRef};
pub use hashslot::{key_slot, SLOTS};
pub use sbytes::SBytes;
pub use value::{HashObj, Kind, SetObj, Value, ZSetObj};

use crate::persistence::effects::EffectLog;

thread_local! {
    static FROM_MASTER: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    static LOADING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// This thread replays an append-only file (or stops). As in
/// redis-server, nothing expires meanwhile: a key's TTL may have passed
/// since it was logged, and the commands logged after it still apply to
/// it; the key goes once the load is over.
pub fn set_loading(on: bool) {
    LOADING.with(|f| f.set(on));
}

/// Whether this thread replays an append-only file now.
pub fn loading() -> bool {
    LOADING.with(|f| f.get())
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

    /// Exchanges the keys of every database with those of `side` (a
    /// dataset loaded apart, as a replica's `repl-diskless-load swapdb`
    /// does). Every slot of every database involved is locked first, in the
    /// global (database, slot) order, so no command sees part of each
    /// dataset. As with SWAPDB, WATCHes of changed keys fire, clients stay
    /// in their database, and those blocked on a key that now holds a list
    /// or sorted set are woken. `side` must be private to the caller.
    pub fn swap_with(&self, side: &Keyspace, now: i64) {
        let mut held: Vec<SlotRef<'_>> = Vec::new();
        for i in 0..self.count().min(side.count()) {
            if self.dbs[i].get().is_none() && side.dbs[i].get().is_none() {
                continue;
            }
            let db = self.db(i);
            held.extend((0..SLOTS as u16).map(|s| db.lock_slot(s, now)));
        }
        // A rewrite may have begun while we were locking (see lock_slots).
        for g in &mut held {
            g.refresh_gen();
        }
        for g in &mut held {
            let mut other = side.db(g.db.index).lock_slot(g.slot, now);
            g.swap_contents(&mut other);
        }
        for chunk in held.chunks(SLOTS) {
            let Some(first) = chunk.first() else { continue };
            for k in self.blocking.keys_of(first.db.index) {
                let g = &chunk[key_slot(&k) as usize];
                if g.holds_blocking_kind(&k) {
                    g.signal_ready(&k);
                }
            }
        }
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

#[cfg(test)]
mod swap_tests {
    use std::sync::Arc;

    use super::*;

    fn put(ks: &Keyspace, db: usize, key: &[u8], val: &[u8]) {
        ks.db(db)
            .lock_key(key, 0)
            .set(key, Value::Str(SBytes::new(val)), false);
    }

    #[test]
    fn swap_with_exchanges_every_database_and_fires_watches() {
        let ks = Keyspace::new(4, Arc::new(EffectLog::default()));
        let side = Keyspace::new(4, Arc::new(EffectLog::default()));
        put(&ks, 0, b"old", b"1");
        put(&ks, 0, b"both", b"old");
        put(&side, 0, b"both", b"new");
        put(&side, 0, b"new", b"2");
        // A database only the side has is created on our side.
        put(&side, 3, b"x", b"3");
        let stamp = ks.db(0).lock_key(b"both", 0).watch(b"both");
        ks.swap_with(&side, 0);
        let db = ks.db(0);
        assert!(db.lock_key(b"old", 0).get(b"old").is_none());
        assert!(matches!(
            db.lock_key(b"both", 0).get(b"both"),
            Some(Value::Str(s)) if s.as_slice() == b"new"
        ));
        assert_eq!(db.size(), 2);
        assert_eq!(ks.db(3).size(), 1);
        // What we held is now the side's, to be dropped.
        assert_eq!(side.db(0).size(), 2);
        assert_eq!(side.db(3).size(), 0);
        assert_ne!(db.lock_key(b"both", 0).watch_version(b"both"), stamp);
    }
}
