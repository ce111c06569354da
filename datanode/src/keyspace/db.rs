//! A database: 16384 slot tables, each behind its own lock, plus lock-free
//! per-slot counters so DBSIZE, SCAN and RANDOMKEY can skip empty slots.

use std::sync::atomic::{AtomicI64, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::{Mutex, MutexGuard};

use super::hashslot::{key_slot, SLOTS};
use super::sbytes::SBytes;
use super::slot::SlotTable;
use super::value::Value;
use crate::persistence::effects::EffectLog;

/// A slot's key counts, read without its lock.
#[derive(Default)]
struct SlotMeta {
    keys: AtomicU32,
    expires: AtomicU32,
}

/// Shards of a database's totals (by slot number).
const TOTAL_SHARDS: usize = 16;

#[derive(Default)]
#[repr(align(64))]
struct Totals {
    keys: AtomicI64,
    expires: AtomicI64,
}

/// One slot per cache line: its lock, its table's headers and its counts.
/// A command on a random slot touches that line and no other of the
/// slot's (the counts used to sit in an array apart: a second miss for
/// every write).
#[repr(C, align(64))]
struct Slot {
    table: Mutex<SlotTable>,
    meta: SlotMeta,
}

pub struct Db {
    pub index: usize,
    slots: Box<[Slot]>,
    /// The AOF rewrite generation each slot was last snapshotted for (the
    /// low 32 bits: only equality with the current one matters). Read only
    /// while a rewrite or snapshot runs, so kept off the slot's line.
    snap_gens: Box<[AtomicU32]>,
    /// Slots whose keys arrive by atomic slot migration: held but not
    /// shown (see [`Db::set_hidden`]); a bit per slot.
    hidden: Box<[AtomicU64]>,
    /// The database's key and TTL counts, in shards a slot adds its
    /// changes to, so DBSIZE and INFO read a few lines instead of every
    /// slot's.
    totals: Box<[Totals]>,
    pub log: Arc<EffectLog>,
    pub blocking: Arc<super::blocking::Blocking>,
    pub events: Arc<super::events::KeyEvents>,
    pub expiry: Arc<super::Expiry>,
}

/// Current unix time in milliseconds.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl Db {
    pub fn new(
        index: usize,
        log: Arc<EffectLog>,
        blocking: Arc<super::blocking::Blocking>,
        events: Arc<super::events::KeyEvents>,
        expiry: Arc<super::Expiry>,
    ) -> Db {
        Db {
            index,
            slots: (0..SLOTS)
                .map(|_| Slot {
                    table: Mutex::new(SlotTable::default()),
                    meta: SlotMeta::default(),
                })
                .collect(),
            snap_gens: (0..SLOTS).map(|_| AtomicU32::new(0)).collect(),
            hidden: (0..SLOTS / 64).map(|_| AtomicU64::new(0)).collect(),
            totals: (0..TOTAL_SHARDS).map(|_| Totals::default()).collect(),
            log,
            blocking,
            events,
            expiry,
        }
    }

    /// What the database's tables cost, as (keys, expiry times): the fixed
    /// part (its slots, about 1.1 MB), then per key a boxed entry and its
    /// bucket, and per TTL an expiry entry and its bucket. Buckets are
    /// reckoned at the tables' fullest (7 in 8 used), so this is a floor
    /// (INFO used_memory_overhead, MEMORY STATS).
    pub fn table_overhead(&self) -> (usize, usize) {
        use super::slot::Entry;
        use std::mem::size_of;
        let bucket = |entry: usize| (entry + 1) * 8 / 7;
        let keys = self.total(|t| t.keys.load(Ordering::Relaxed)).max(0) as usize;
        let expires = self.total(|t| t.expires.load(Ordering::Relaxed)).max(0) as usize;
        let fixed = size_of::<Db>()
            + self.slots.len() * size_of::<Slot>()
            + self.snap_gens.len() * size_of::<AtomicU32>()
            + self.hidden.len() * size_of::<AtomicU64>()
            + self.totals.len() * size_of::<Totals>();
        let per_key = size_of::<Entry>() + bucket(size_of::<Box<Entry>>());
        let per_ttl = bucket(size_of::<(SBytes, i64)>());
        (fixed + keys * per_key, expires * per_ttl)
    }

    /// Locks the slot that holds `key`.
    pub fn lock_key(&self, key: &[u8], now: i64) -> SlotRef<'_> {
        self.lock_slot(key_slot(key), now)
    }

    pub fn lock_slot(&self, slot: u16, now: i64) -> SlotRef<'_> {
        self.guard(slot, self.slots[slot as usize].table.lock(), now)
    }

    /// Locks a slot for a snapshot's sweep, which copies it if no writer
    /// made it do so first. Only the writers' copies count as the
    /// snapshot's copy-on-write (INFO current_cow_size).
    pub fn sweep_slot(&self, slot: u16, now: i64) -> SlotRef<'_> {
        let mut s = self.unrefreshed(slot, self.slots[slot as usize].table.lock(), now);
        s.refresh(true);
        s
    }

    /// A locked slot's guard, at the current rewrite generation.
    fn guard<'d>(&'d self, slot: u16, t: MutexGuard<'d, SlotTable>, now: i64) -> SlotRef<'d> {
        let mut s = self.unrefreshed(slot, t, now);
        s.refresh_gen();
        s
    }

    fn unrefreshed<'d>(&'d self, slot: u16, t: MutexGuard<'d, SlotTable>, now: i64) -> SlotRef<'d> {
        SlotRef {
            slot,
            t,
            meta: &self.slots[slot as usize].meta,
            db: self,
            now,
            gen: 0,
            quiet: false,
        }
    }

    /// Locks a slot unless another holds it past `wait` (for a script that
    /// needs a slot below ones it holds: waiting could deadlock, so it
    /// gives up instead).
    pub fn try_lock_slot(
        &self,
        slot: u16,
        now: i64,
        wait: std::time::Duration,
    ) -> Option<SlotRef<'_>> {
        let t = self.slots[slot as usize].table.try_lock_for(wait)?;
        Some(self.guard(slot, t, now))
    }

    /// Locks several slots in ascending order (the global lock order, so
    /// multi-slot commands cannot deadlock). `slots` is sorted and deduped.
    pub fn lock_slots(&self, slots: &mut Vec<u16>, now: i64) -> Vec<SlotRef<'_>> {
        slots.sort_unstable();
        slots.dedup();
        let mut v: Vec<SlotRef<'_>> = slots.iter().map(|&s| self.lock_slot(s, now)).collect();
        // A rewrite may have begun while we were locking: bring every slot
        // to the same generation before anything changes.
        for s in &mut v {
            s.refresh_gen();
        }
        v
    }

    /// Hints the CPU to fetch a slot's lock and table header, for a caller
    /// that will lock it after working on another (the eviction sampler).
    pub fn prefetch_slot(&self, slot: u16) {
        #[cfg(target_arch = "x86_64")]
        {
            let p = &self.slots[slot as usize] as *const Slot as *const i8;
            // SAFETY: a prefetch is only a hint; the address is valid.
            unsafe { std::arch::x86_64::_mm_prefetch(p, std::arch::x86_64::_MM_HINT_T0) };
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = slot;
    }

    /// Keys held in a slot, hidden or not (COUNTKEYSINSLOT).
    pub fn slot_keys(&self, slot: u16) -> usize {
        self.slots[slot as usize].meta.keys.load(Ordering::Relaxed) as usize
    }

    /// Keys with a TTL in a slot, hidden or not.
    pub fn slot_expires(&self, slot: u16) -> usize {
        self.slots[slot as usize]
            .meta
            .expires
            .load(Ordering::Relaxed) as usize
    }

    /// Hides (or shows again) a slot whose keys are being imported by an
    /// atomic slot migration: until the handoff they are not ours to show,
    /// so DBSIZE, KEYS, SCAN, RANDOMKEY, eviction and active expiry pass
    /// them by, as Valkey does. COUNTKEYSINSLOT still counts them.
    pub fn set_hidden(&self, slot: u16, hidden: bool) {
        let (word, bit) = (&self.hidden[slot as usize / 64], 1u64 << (slot % 64));
        if hidden {
            word.fetch_or(bit, Ordering::Relaxed);
        } else {
            word.fetch_and(!bit, Ordering::Relaxed);
        }
    }

    /// The hidden slots, as ranges.
    pub fn hidden_ranges(&self) -> Vec<(u16, u16)> {
        let mut out: Vec<(u16, u16)> = Vec::new();
        for s in (0..SLOTS as u16).filter(|&s| self.is_hidden(s)) {
            match out.last_mut() {
                Some((_, last)) if *last + 1 == s => *last = s,
                _ => out.push((s, s)),
            }
        }
        out
    }

    pub fn is_hidden(&self, slot: u16) -> bool {
        self.hidden[slot as usize / 64].load(Ordering::Relaxed) & (1 << (slot % 64)) != 0
    }

    /// Keys a slot shows (none while it is hidden).
    pub fn visible_keys(&self, slot: u16) -> usize {
        if self.is_hidden(slot) {
            0
        } else {
            self.slot_keys(slot)
        }
    }

    /// A count over the hidden slots (few, found through their bits).
    fn hidden_sum(&self, count: impl Fn(&SlotMeta) -> u32) -> i64 {
        let mut n = 0;
        for (w, word) in self.hidden.iter().enumerate() {
            let mut bits = word.load(Ordering::Relaxed);
            while bits != 0 {
                let s = w * 64 + bits.trailing_zeros() as usize;
                n += count(&self.slots[s].meta) as i64;
                bits &= bits - 1;
            }
        }
        n
    }

    /// A total over every slot, hidden ones included.
    fn total(&self, count: impl Fn(&Totals) -> i64) -> i64 {
        self.totals.iter().map(count).sum()
    }

    /// Keys held in hidden slots (INFO).
    pub fn hidden_size(&self) -> usize {
        self.hidden_sum(|m| m.keys.load(Ordering::Relaxed)) as usize
    }

    pub fn size(&self) -> usize {
        let all = self.total(|t| t.keys.load(Ordering::Relaxed));
        (all - self.hidden_sum(|m| m.keys.load(Ordering::Relaxed))).max(0) as usize
    }

    pub fn expires_count(&self) -> usize {
        let all = self.total(|t| t.expires.load(Ordering::Relaxed));
        (all - self.hidden_sum(|m| m.expires.load(Ordering::Relaxed))).max(0) as usize
    }

    /// Next slot at or after `from` holding keys.
    pub fn next_nonempty_slot(&self, from: usize) -> Option<u16> {
        (from..SLOTS)
            .find(|&s| self.visible_keys(s as u16) > 0)
            .map(|s| s as u16)
    }

    /// Whether a shown slot holds keys with a TTL (active expiry and
    /// volatile eviction look only there).
    pub fn has_expires(&self, slot: u16) -> bool {
        self.slots[slot as usize]
            .meta
            .expires
            .load(Ordering::Relaxed)
            > 0
            && !self.is_hidden(slot)
    }
}

/// A locked slot. Every read goes through here so expired keys are removed
/// lazily (and their deletion logged); every write keeps the counters and
/// WATCH versions right.
pub struct SlotRef<'a> {
    pub slot: u16,
    /// Effect-log generation this slot is consistent with (see
    /// `persistence::rewrite`).
    gen: u64,
    t: MutexGuard<'a, SlotTable>,
    meta: &'a SlotMeta,
    pub db: &'a Db,
    pub now: i64,
    /// Loading: creations and expiries are not reported.
    quiet: bool,
}

impl<'a> SlotRef<'a> {
    /// Stops (or resumes) reporting creations and expiries through this
    /// guard: loading a dataset is not a change anyone is told about.
    /// Returns the previous setting.
    pub fn set_quiet(&mut self, quiet: bool) -> bool {
        std::mem::replace(&mut self.quiet, quiet)
    }

    /// Reads the rewrite generation and, when a rewrite is snapshotting,
    /// snapshots this slot first so the snapshot predates our changes.
    pub fn refresh_gen(&mut self) {
        self.refresh(false)
    }

    /// `refresh_gen`, by the snapshot's own sweep (`sweep`) or a writer.
    fn refresh(&mut self, sweep: bool) {
        let log = &self.db.log;
        let g = log.gen.load(Ordering::SeqCst);
        // Generations only grow: a slot not marked with this one (its low
        // 32 bits) was snapshotted for an older one or never.
        let mark = &self.db.snap_gens[self.slot as usize];
        if log.rewriting.load(Ordering::SeqCst) && mark.load(Ordering::Relaxed) != g as u32 {
            let (wanted, filtered) = match log.snap_only.lock().as_ref() {
                Some(only) => (only.get(self.slot as usize).copied().unwrap_or(false), true),
                None => (true, false),
            };
            if !wanted {
                mark.store(g as u32, Ordering::Relaxed);
                self.gen = g;
                return;
            }
            let chunk = if log.snap_rdb.load(Ordering::SeqCst) {
                crate::persistence::rdb::file::encode_slot_chunk(self)
            } else {
                // A slot migration's snapshot (the only one limited to
                // some slots) batches strings.
                crate::persistence::rewrite::encode_slot_with(self, filtered, log.spare_buf())
            };
            if !sweep {
                log.cow_bytes
                    .fetch_add(chunk.len() as u64, Ordering::Relaxed);
            }
            if let Some(tx) = log.snap_tx.lock().as_ref() {
                let _ = tx.send(chunk);
            }
            mark.store(g as u32, Ordering::Relaxed);
        }
        self.gen = g;
    }

    /// Publishes the slot's counts (only lock holders write them) and
    /// adds what changed to the database's totals.
    fn sync_meta(&self) {
        let (keys, expires) = (self.t.len() as u32, self.t.expires_len() as u32);
        let m = self.meta;
        let (was_keys, was_expires) = (
            m.keys.load(Ordering::Relaxed),
            m.expires.load(Ordering::Relaxed),
        );
        if keys == was_keys && expires == was_expires {
            return;
        }
        let total = &self.db.totals[self.slot as usize % TOTAL_SHARDS];
        if keys != was_keys {
            m.keys.store(keys, Ordering::Relaxed);
            total
                .keys
                .fetch_add(keys as i64 - was_keys as i64, Ordering::Relaxed);
        }
        if expires != was_expires {
            m.expires.store(expires, Ordering::Relaxed);
            total
                .expires
                .fetch_add(expires as i64 - was_expires as i64, Ordering::Relaxed);
        }
    }

    /// Deletes `key` if its time has come. Returns true when the key is
    /// expired: deleted, or (clients paused, a replica) only to be treated
    /// as missing.
    fn expire_if_needed(&mut self, key: &[u8]) -> bool {
        match self.t.expire_of(key) {
            Some(at) if at <= self.now => {
                if super::loading() {
                    return false;
                }
                if self.db.expiry.replica.load(Ordering::Relaxed) {
                    // A replica's master decides when keys expire: its
                    // commands see every key it has not deleted yet (our
                    // clock may run ahead of its), others see it missing.
                    return !super::applying_master_stream();
                }
                if self.db.expiry.paused.load(Ordering::Relaxed) {
                    return true;
                }
                self.delete_expired(key);
                true
            }
            _ => false,
        }
    }

    pub fn get(&mut self, key: &[u8]) -> Option<&Value> {
        self.get_mut(key).map(|v| &*v)
    }

    /// Mutable access for in-place updates; the caller must call
    /// [`SlotRef::touch`] when it changed the value.
    pub fn get_mut(&mut self, key: &[u8]) -> Option<&mut Value> {
        if self.expire_if_needed(key) {
            self.counted(key, false);
            return None;
        }
        let (now, db) = (self.now, self.db);
        match self.t.find_mut(key) {
            Some(e) => {
                super::lookups::record(true);
                super::access::touch(e.key.meta_mut(), now);
                Some(&mut e.val)
            }
            None => {
                if super::lookups::record(false) {
                    db.events.missed(db.index, key);
                }
                None
            }
        }
    }

    /// Reads without recording an access (OBJECT, TYPE, `CLIENT NO-TOUCH`).
    pub fn peek(&mut self, key: &[u8]) -> Option<(&Value, u32)> {
        if self.expire_if_needed(key) {
            self.counted(key, false);
            return None;
        }
        let found = self.t.find(key).map(|e| (&e.val, e.key.meta()));
        self.counted(key, found.is_some());
        found
    }

    /// The stored value even if logically expired, leaving it in place
    /// and counting nothing (DEBUG OBJECT, as Redis looks the dict up).
    pub fn peek_stored(&self, key: &[u8]) -> Option<(&Value, u32)> {
        self.t.find(key).map(|e| (&e.val, e.key.meta()))
    }

    /// Whether the key exists, without recording an access (EXISTS, TTL
    /// and TYPE leave OBJECT IDLETIME alone in Redis).
    pub fn exists(&mut self, key: &[u8]) -> bool {
        let found = !self.expire_if_needed(key) && self.t.find(key).is_some();
        self.counted(key, found);
        found
    }

    /// A lookup's outcome, for the read statistics and `keymiss` events.
    #[inline]
    fn counted(&self, key: &[u8], found: bool) {
        if super::lookups::record(found) {
            self.db.events.missed(self.db.index, key);
        }
    }

    /// Records an access to the key if it exists (TOUCH).
    pub fn access(&mut self, key: &[u8]) -> bool {
        self.get(key).is_some()
    }

    /// Sets a value. Unless `keep_ttl`, any TTL is cleared. A key whose
    /// time has passed is removed first (as a lookup would), so the value
    /// counts as a new key.
    pub fn set(&mut self, key: &[u8], val: Value, keep_ttl: bool) {
        let list = matches!(val, Value::List(_) | Value::ZSet(_));
        // Slots without TTLs (the common case) skip the probe.
        if self.t.expires.is_some() {
            self.expire_if_needed(key);
        }
        // Readers blocked on a stream learn when it is replaced (XREADGROUP
        // then fails, as in Redis); looked at only when someone blocks.
        let stream = self.db.blocking.any_waiting()
            && (matches!(val, Value::Stream(_))
                || self
                    .t
                    .find(key)
                    .is_some_and(|e| matches!(e.val, Value::Stream(_))));
        if self.t.put(key, val, self.now) && !self.quiet {
            self.db.events.created(self.db.index, key);
        }
        if list {
            self.signal_ready(key);
        } else if stream {
            self.signal_all_ready(key);
        }
        if !keep_ttl {
            self.t.remove_expire(key);
        }
        self.t.touch(key);
        self.db.events.modified(self.db.index, key);
        self.sync_meta();
    }

    pub fn remove(&mut self, key: &[u8]) -> Option<Value> {
        if self.expire_if_needed(key) {
            // Deleted already, or kept under a pause as a missing key.
            return None;
        }
        let v = self.t.take(key)?;
        self.t.remove_expire(key);
        self.t.touch(key);
        self.db.events.modified(self.db.index, key);
        self.sync_meta();
        if matches!(v, Value::Stream(_)) {
            self.signal_all_ready(key);
        }
        Some(v)
    }

    /// Removes `key` as the server does on its own (a RENAME's or RESTORE
    /// REPLACE's destination, an emptied STORE target, a key MIGRATE moved,
    /// a TTL set in the past): its value is freed on the lazyfree thread
    /// when `lazy` (lazyfree-lazy-server-del or -expire) says so, as
    /// Redis's dbDelete. Returns whether the key was there.
    pub fn delete_freeing(&mut self, key: &[u8], lazy: &std::sync::atomic::AtomicBool) -> bool {
        match self.remove(key) {
            Some(v) => {
                super::lazyfree::free_if(lazy, v);
                true
            }
            None => false,
        }
    }

    /// Records that the key's value was changed in place.
    pub fn touch(&mut self, key: &[u8]) {
        self.t.touch(key);
        self.db.events.modified(self.db.index, key);
    }

    /// Removes `key` to free memory (`maxmemory`); with `need_ttl`, only if
    /// it still has a TTL (volatile policies). Logged as a DEL, as expiry
    /// is, and WATCHers see the change. Returns whether it was removed.
    pub fn evict(&mut self, key: &[u8], need_ttl: bool) -> bool {
        if need_ttl && self.t.expire_of(key).is_none() {
            return false;
        }
        let Some(val) = self.t.take(key) else {
            return false;
        };
        self.t.remove_expire(key);
        self.t.touch(key);
        self.sync_meta();
        self.log_now(&[b"DEL".as_slice(), key]);
        super::lazyfree::free_if(&super::lazyfree::EVICTION, val);
        true
    }

    /// Expiry time (unix ms) of a live key.
    pub fn expire_of(&mut self, key: &[u8]) -> Option<i64> {
        self.t.expire_of(key)
    }

    pub fn set_expire(&mut self, key: &[u8], at: i64) {
        self.t.set_expire(key, at);
        self.t.touch(key);
        self.db.events.modified(self.db.index, key);
        self.sync_meta();
    }

    pub fn persist(&mut self, key: &[u8]) -> bool {
        let removed = self.t.remove_expire(key);
        if removed {
            self.t.touch(key);
            self.db.events.modified(self.db.index, key);
            self.sync_meta();
        }
        removed
    }

    pub fn len(&self) -> usize {
        self.t.len()
    }

    pub fn is_empty(&self) -> bool {
        self.t.is_empty()
    }

    /// Removes every key; returns how many there were.
    /// Empties the slot; with `lazy`, its old tables are freed in the
    /// background (FLUSHALL ASYNC). Returns the keys removed.
    pub fn clear(&mut self, lazy: bool) -> usize {
        self.t.touch_all_existing(self.now);
        let n = self.t.len();
        let map = std::mem::take(&mut self.t.map);
        let expires = self.t.expires.take();
        self.sync_meta();
        if lazy && n > 0 {
            super::lazyfree::free_all((map, expires), n as u64);
        }
        n
    }

    /// Live keys of this slot (expired ones are skipped, not removed).
    pub fn live_keys(&self) -> Vec<SBytes> {
        let now = self.now;
        self.t
            .iter()
            .filter(|e| !matches!(self.t.expire_of(&e.key), Some(at) if at <= now))
            .map(|e| SBytes::new(&e.key))
            .collect()
    }

    /// Every key held, expired or not (RANDOMKEY deletes the expired ones
    /// it happens to pick, as Redis does).
    pub fn all_keys(&self) -> Vec<SBytes> {
        self.t.iter().map(|e| SBytes::new(&e.key)).collect()
    }

    /// Keys and keys with a TTL, those whose TTL has passed but are not
    /// deleted yet included (what an RDB holds).
    pub fn counts(&self) -> (usize, usize) {
        (self.t.len(), self.t.expires_len())
    }

    /// Every key, those whose TTL has passed but are not deleted yet
    /// included (what an RDB holds, as redis-server saves them).
    pub fn for_each<'s>(&'s self, mut f: impl FnMut(&'s [u8], &'s Value, Option<i64>)) {
        for e in self.t.iter() {
            f(&e.key, &e.val, self.t.expire_of(&e.key));
        }
    }

    pub fn for_each_live<'s>(&'s self, mut f: impl FnMut(&'s [u8], &'s Value, Option<i64>)) {
        let now = self.now;
        for e in self.t.iter() {
            let exp = self.t.expire_of(&e.key);
            if matches!(exp, Some(at) if at <= now) {
                continue;
            }
            f(&e.key, &e.val, exp);
        }
    }

    /// Checks up to `budget` keys with a TTL, from the `from`-th of the
    /// slot's expiry table, deleting the expired ones. Returns (checked,
    /// deleted, whether the table's end was reached).
    /// Deletes an expired key as expiry does: logged as DEL, announced,
    /// counted (INFO expired_keys).
    fn delete_expired(&mut self, key: &[u8]) {
        self.t.remove_expire(key);
        if let Some(v) = self.t.take(key) {
            super::lazyfree::free_if(&super::lazyfree::EXPIRE, v);
        }
        self.t.touch_expired(key);
        self.sync_meta();
        self.log_now(&[b"DEL".as_slice(), key]);
        if !self.quiet {
            self.db.events.expired(self.db.index, key);
            self.db.expiry.expired.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// A writable replica's own key with a TTL (one a client set, not our
    /// master): deleted once its time has passed, as Redis's
    /// expireSlaveKeys does, since the master will never send a DEL for
    /// it. `None` when the key has no TTL any more (nothing to track),
    /// else whether it was deleted now.
    pub fn expire_replica_own(&mut self, key: &[u8]) -> Option<bool> {
        let at = self.t.expire_of(key)?;
        if at > self.now || self.db.expiry.paused.load(Ordering::Relaxed) {
            return Some(false);
        }
        self.delete_expired(key);
        Some(true)
    }

    pub fn expire_some(&mut self, from: usize, budget: usize) -> (usize, usize, bool) {
        if self.db.expiry.paused.load(Ordering::Relaxed)
            || self.db.expiry.replica.load(Ordering::Relaxed)
        {
            return (0, 0, true);
        }
        let now = self.now;
        let mut checked = 0;
        let mut due: Vec<SBytes> = Vec::new();
        for (k, at) in self.t.expires_iter().skip(from).take(budget) {
            checked += 1;
            if *at <= now {
                due.push(k.clone());
            }
        }
        let end = from + checked >= self.t.expires_len();
        for k in &due {
            self.expire_if_needed(k);
        }
        (checked, due.len(), end)
    }

    /// Deletes the expired keys `pick` selects (SCAN removes the expired
    /// keys it comes across, as a lookup would); returns how many.
    pub fn expire_matching(&mut self, mut pick: impl FnMut(&[u8]) -> bool) -> usize {
        if self.t.expires.is_none() || self.db.expiry.paused.load(Ordering::Relaxed) {
            return 0;
        }
        let now = self.now;
        let due: Vec<SBytes> = self
            .t
            .expires_iter()
            .filter(|(k, at)| *at <= now && pick(k))
            .map(|(k, _)| k.clone())
            .collect();
        for k in &due {
            self.expire_if_needed(k);
        }
        due.len()
    }

    /// Registers a WATCH on `key`; returns its current version.
    pub fn watch(&mut self, key: &[u8]) -> super::slot::WatchStamp {
        let w = self.t.watched.get_or_insert_with(Default::default);
        let s = w.entry(SBytes::new(key)).or_default();
        s.refs += 1;
        super::slot::WatchStamp {
            version: s.version,
            gone: s.gone,
        }
    }

    pub fn watch_version(&self, key: &[u8]) -> super::slot::WatchStamp {
        self.t
            .watched
            .as_ref()
            .and_then(|w| w.get(key))
            .map(|s| super::slot::WatchStamp {
                version: s.version,
                gone: s.gone,
            })
            .unwrap_or_default()
    }

    pub fn unwatch(&mut self, key: &[u8]) {
        if let Some(w) = &mut self.t.watched {
            if let Some(s) = w.get_mut(key) {
                s.refs -= 1;
                if s.refs == 0 {
                    w.remove(key);
                }
            }
            if w.is_empty() {
                self.t.watched = None;
            }
        }
    }

    /// Whether the key exists but its TTL has passed (not yet removed).
    pub fn is_logically_expired(&self, key: &[u8]) -> bool {
        self.t.find(key).is_some() && matches!(self.t.expire_of(key), Some(at) if at <= self.now)
    }

    /// Sets a key's access data (RESTORE … IDLETIME/FREQ).
    pub fn set_access(&mut self, key: &[u8], meta: u32) {
        if let Some(e) = self.t.find_mut(key) {
            *e.key.meta_mut() = meta;
        }
    }

    /// Whether `key` is present, expired or not.
    fn present(&self, key: &[u8]) -> bool {
        self.t.find(key).is_some()
    }

    /// Whether `key` is here and alive, looked up without touching
    /// anything (no access recorded, nothing expired or counted).
    pub fn holds_live(&self, key: &[u8]) -> bool {
        self.live(key)
    }

    /// Whether `key` is present and its TTL has not passed.
    fn live(&self, key: &[u8]) -> bool {
        self.present(key)
            && (super::loading() || !matches!(self.t.expire_of(key), Some(at) if at <= self.now))
    }

    /// Invalidates the WATCHes on this slot that SWAPDB changes, as Redis
    /// judges it: a watched key changes when either side holds it, except
    /// when it stays logically absent (missing or expired on both sides).
    fn touch_watched_for_swap(&mut self, other: &SlotRef) {
        let Some(mut w) = self.t.watched.take() else {
            return;
        };
        for (k, st) in w.iter_mut() {
            let here = self.present(k);
            let here_live = self.live(k);
            let there = other.present(k);
            let there_live = other.live(k);
            if !here && !there {
                continue;
            }
            if there_live || here_live {
                st.version += 1;
                st.stale_swapped_in = false;
            } else if !here {
                st.stale_swapped_in = true;
            }
        }
        self.t.watched = Some(w);
    }

    /// Exchanges the keys of this slot with those of `other` (the same slot
    /// of another database) for SWAPDB. WATCH registrations stay with their
    /// database, as clients stay with theirs.
    pub fn swap_contents(&mut self, other: &mut SlotRef) {
        self.touch_watched_for_swap(other);
        other.touch_watched_for_swap(self);
        std::mem::swap(&mut self.t.map, &mut other.t.map);
        std::mem::swap(&mut self.t.expires, &mut other.t.expires);
        self.sync_meta();
        other.sync_meta();
    }

    /// Whether `key` is present (expired or not) holding a list or sorted
    /// set: after SWAPDB, a client blocked on it must retry (it expires the
    /// key itself if stale, as Redis's wake-up does).
    pub fn holds_blocking_kind(&self, key: &[u8]) -> bool {
        self.t
            .find(key)
            .is_some_and(|e| matches!(e.val, Value::List(_) | Value::ZSet(_) | Value::Stream(_)))
    }

    /// Whether `key` holds a stream (XREAD and XREADGROUP block on those).
    pub fn holds_stream(&self, key: &[u8]) -> bool {
        self.t
            .find(key)
            .is_some_and(|e| matches!(e.val, Value::Stream(_)))
    }

    /// Whether a watcher of `key` should accept a stale key SWAPDB moved in.
    pub fn watch_stale_ok(&self, key: &[u8]) -> bool {
        self.t
            .watched
            .as_ref()
            .and_then(|w| w.get(key))
            .is_some_and(|s| s.stale_swapped_in)
    }

    /// A stream at `key` changed (new entries, a group or the key gone):
    /// wake every client blocked on it.
    pub fn signal_all_ready(&self, key: &[u8]) {
        self.db.blocking.signal_all(self.db.index, key);
    }

    /// A list at `key` gained elements: wake a client blocked on it.
    pub fn signal_ready(&self, key: &[u8]) {
        self.db.blocking.signal(self.db.index, key);
    }

    /// Logs an effect for this slot's database (no-op when nobody listens).
    pub fn log<A: AsRef<[u8]>>(&self, args: &[A]) {
        if self.db.log.is_active() {
            self.db.log.append_gen(self.db.index, self.gen, args);
        }
    }

    /// Logs an effect that is not the running command's own (an expired
    /// or evicted key's deletion): it goes out at once.
    pub fn log_now<A: AsRef<[u8]>>(&self, args: &[A]) {
        if self.db.log.is_active() {
            self.db.log.append_now(self.db.index, self.gen, args);
        }
    }

    /// The rewrite generation this guard's effects belong to.
    pub fn gen(&self) -> u64 {
        self.gen
    }

    pub fn raw_table(&self) -> &SlotTable {
        &self.t
    }
}

#[cfg(test)]
mod layout_tests {
    #[test]
    fn a_slot_fits_one_cache_line() {
        assert_eq!(std::mem::size_of::<super::Slot>(), 64);
    }

    #[test]
    fn totals_follow_every_change_and_leave_hidden_slots_out() {
        use super::super::{key_slot, Keyspace, SBytes, Value, SLOTS};
        let ks = Keyspace::new(1, std::sync::Arc::new(Default::default()));
        let db = ks.db(0);
        let by_slots = |hidden: bool| -> (usize, usize) {
            (0..SLOTS as u16)
                .filter(|&s| db.is_hidden(s) == hidden)
                .map(|s| {
                    let m = &db.slots[s as usize].meta;
                    let l = |a: &super::AtomicU32| a.load(super::Ordering::Relaxed) as usize;
                    (l(&m.keys), l(&m.expires))
                })
                .fold((0, 0), |(a, b), (c, d)| (a + c, b + d))
        };
        let check = || {
            assert_eq!((db.size(), db.expires_count()), by_slots(false));
            assert_eq!(db.hidden_size(), by_slots(true).0);
        };
        for i in 0..500u32 {
            let k = format!("k{i}");
            let mut g = db.lock_key(k.as_bytes(), 0);
            g.set(k.as_bytes(), Value::Str(SBytes::new(b"v")), false);
            if i % 3 == 0 {
                g.set_expire(k.as_bytes(), 10_000);
            }
        }
        check();
        assert_eq!(db.size(), 500);
        for i in (0..500u32).step_by(5) {
            let k = format!("k{i}");
            db.lock_key(k.as_bytes(), 0).remove(k.as_bytes());
        }
        // Expired on access, and overwritten without its TTL.
        assert!(db.lock_key(b"k3", 20_000).get(b"k3").is_none());
        db.lock_key(b"k6", 0)
            .set(b"k6", Value::Str(SBytes::new(b"w")), false);
        db.set_hidden(key_slot(b"k1"), true);
        db.set_hidden(key_slot(b"k2"), true);
        check();
        assert!(db.hidden_size() > 0);
        db.set_hidden(key_slot(b"k1"), false);
        db.set_hidden(key_slot(b"k2"), false);
        check();
        assert_eq!(db.size(), 500 - 100 - 1);
    }
}
