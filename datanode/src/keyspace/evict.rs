//! Choosing keys to evict under `maxmemory`, the way Redis approximates
//! LRU, LFU and shortest-TTL: sample a few keys, keep the best candidates
//! seen so far in a small pool, evict the best of the pool. Sampling takes
//! one slot lock at a time, briefly, so writers elsewhere are not stopped.

use super::{access, Db, Keyspace, SBytes, SLOTS};

/// xorshift64*: the sampler draws several numbers per eviction, and a
/// generator owned by the evictor costs less than the thread-local one.
struct Xs(u64);

impl Xs {
    fn new() -> Xs {
        Xs(rand::random::<u64>() | 1)
    }

    /// A number in `0..n` (n > 0; the slight modulo bias is harmless here).
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n as u64) as usize
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Policy {
    NoEviction,
    AllKeysLru,
    VolatileLru,
    AllKeysLfu,
    VolatileLfu,
    AllKeysRandom,
    VolatileRandom,
    VolatileTtl,
}

impl Policy {
    const ALL: [Policy; 8] = [
        Policy::NoEviction,
        Policy::AllKeysLru,
        Policy::VolatileLru,
        Policy::AllKeysLfu,
        Policy::VolatileLfu,
        Policy::AllKeysRandom,
        Policy::VolatileRandom,
        Policy::VolatileTtl,
    ];

    /// From a `maxmemory-policy` value (unknown names: no eviction).
    pub fn from_name(s: &str) -> Policy {
        match s {
            "allkeys-lru" => Policy::AllKeysLru,
            "volatile-lru" => Policy::VolatileLru,
            "allkeys-lfu" => Policy::AllKeysLfu,
            "volatile-lfu" => Policy::VolatileLfu,
            "allkeys-random" => Policy::AllKeysRandom,
            "volatile-random" => Policy::VolatileRandom,
            "volatile-ttl" => Policy::VolatileTtl,
            _ => Policy::NoEviction,
        }
    }

    /// A small number for keeping the policy in an atomic.
    pub fn code(self) -> u8 {
        Policy::ALL.iter().position(|p| *p == self).unwrap_or(0) as u8
    }

    pub fn from_code(c: u8) -> Policy {
        Policy::ALL
            .get(c as usize)
            .copied()
            .unwrap_or(Policy::NoEviction)
    }

    /// Only keys with a TTL may be evicted.
    pub fn volatile(self) -> bool {
        matches!(
            self,
            Policy::VolatileLru
                | Policy::VolatileLfu
                | Policy::VolatileRandom
                | Policy::VolatileTtl
        )
    }

    /// LRU and LFU policies: each key's access data matters.
    pub fn uses_access_clock(self) -> bool {
        matches!(
            self,
            Policy::AllKeysLru | Policy::VolatileLru | Policy::AllKeysLfu | Policy::VolatileLfu
        )
    }

    fn random(self) -> bool {
        matches!(self, Policy::AllKeysRandom | Policy::VolatileRandom)
    }

    /// How evictable a key is: higher goes first.
    fn score(self, meta: u32, expire: Option<i64>, now: i64) -> u64 {
        match self {
            Policy::AllKeysLfu | Policy::VolatileLfu => 255 - access::frequency(meta, now) as u64,
            Policy::VolatileTtl => u64::MAX - expire.unwrap_or(i64::MAX).max(0) as u64,
            _ => access::idle_seconds(meta, now),
        }
    }
}

/// Entries of the candidate pool (Redis keeps 16).
const POOL_SIZE: usize = 16;
/// Slots visited per sample at most, so a keyspace whose keys vanish under
/// us cannot keep one caller looping.
const MAX_SLOT_VISITS: usize = 16;
/// A random starting point inside one slot is drawn among its first this
/// many entries: walking further costs more than it buys (a slot this
/// large is a hash-tagged key set, whose order is random anyway).
const MAX_SKIP: usize = 4096;

struct Candidate {
    score: u64,
    db: usize,
    key: SBytes,
}

/// The best candidates seen so far, lowest score first. Kept across
/// evictions: a key sampled earlier may still be the best choice later.
#[derive(Default)]
pub struct Pool {
    entries: Vec<Candidate>,
}

impl Pool {
    /// Whether a key with `score` would enter the pool.
    fn wants(&self, score: u64) -> bool {
        self.entries.len() < POOL_SIZE || self.entries.first().is_some_and(|c| score > c.score)
    }

    /// Inserts in score order, pushing out the worst entry when full. A
    /// key sampled twice may sit in the pool twice, as in Redis: the second
    /// copy is skipped when it comes up, which is cheaper than looking for
    /// duplicates on every insert.
    fn insert(&mut self, score: u64, db: usize, key: &[u8]) {
        if !self.wants(score) {
            return;
        }
        let c = Candidate {
            score,
            db,
            key: SBytes::new(key),
        };
        let at = self.entries.partition_point(|c| c.score <= score);
        if self.entries.len() < POOL_SIZE {
            self.entries.insert(at, c);
        } else {
            // Full: the worst (first) entry goes; one shift instead of a
            // remove and an insert. `wants` guarantees at >= 1.
            self.entries[0] = c;
            self.entries[..at].rotate_left(1);
        }
    }

    fn pop_best(&mut self) -> Option<Candidate> {
        self.entries.pop()
    }

    pub fn clear(&mut self) {
        self.entries.clear();
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

impl Db {
    /// The first slot at or after `from` (wrapping) holding keys, or keys
    /// with a TTL when `volatile`. None when there is none.
    fn filled_slot_from(&self, volatile: bool, from: usize) -> Option<u16> {
        (from..SLOTS).chain(0..from).map(|s| s as u16).find(|&s| {
            if volatile {
                self.has_expires(s)
            } else {
                self.visible_keys(s) > 0
            }
        })
    }

    /// Samples up to `n` keys and offers them to the pool: runs of
    /// neighbours from a random point of consecutive filled slots after a
    /// random one (keys land in slots by hash, so neighbours are as good a
    /// sample as any, and walking slots in order is kinder to the cache).
    /// False when there was nothing to sample.
    fn sample_into(
        &self,
        policy: Policy,
        n: usize,
        now: i64,
        pool: &mut Pool,
        rng: &mut Xs,
    ) -> bool {
        let volatile = policy.volatile();
        let mut got = 0;
        let mut next = self.filled_slot_from(volatile, rng.below(SLOTS));
        for _ in 0..MAX_SLOT_VISITS {
            if got >= n {
                break;
            }
            let Some(slot) = next else {
                return got > 0;
            };
            // Find the slot after this one now, so its line is on its way
            // while this one is read.
            next = self.filled_slot_from(volatile, (slot as usize + 1) % SLOTS);
            if let Some(s) = next {
                self.prefetch_slot(s);
            }
            let g = self.lock_slot(slot, now);
            let t = g.raw_table();
            if volatile {
                let Some(exp) = t.expires.as_deref() else {
                    continue;
                };
                let len = exp.len();
                let want = (n - got).min(len);
                let skip = rng.below(len.min(MAX_SKIP));
                for (k, at) in exp.iter().skip(skip).chain(exp.iter()).take(want) {
                    let meta = t.find(k).map_or(0, |e| e.key.meta());
                    let score = policy.score(meta, Some(*at), now);
                    pool.insert(score, self.index, k);
                }
                got += want;
            } else {
                let len = t.map.len();
                if len == 0 {
                    continue;
                }
                let want = (n - got).min(len);
                let skip = rng.below(len.min(MAX_SKIP));
                for e in t.map.iter().skip(skip).chain(t.map.iter()).take(want) {
                    let expire = if policy == Policy::VolatileTtl {
                        t.expire_of(&e.key)
                    } else {
                        None
                    };
                    let score = policy.score(e.key.meta(), expire, now);
                    if pool.wants(score) {
                        pool.insert(score, self.index, &e.key);
                    }
                }
                got += want;
            }
        }
        got > 0
    }

    /// One key picked at random (random policies).
    fn random_victim(&self, volatile: bool, now: i64, rng: &mut Xs) -> Option<SBytes> {
        for _ in 0..MAX_SLOT_VISITS {
            let slot = self.filled_slot_from(volatile, rng.below(SLOTS))?;
            let g = self.lock_slot(slot, now);
            let t = g.raw_table();
            let pick = if volatile {
                t.expires.as_deref().and_then(|exp| {
                    let i = rng.below(exp.len().clamp(1, MAX_SKIP));
                    exp.iter().nth(i).map(|(k, _)| k.clone())
                })
            } else {
                let i = rng.below(t.map.len().clamp(1, MAX_SKIP));
                t.map.iter().nth(i).map(|e| SBytes::new(&e.key))
            };
            if pick.is_some() {
                return pick;
            }
        }
        None
    }
}

/// Evicting from a set of databases: the pool, the databases of the
/// current pass, and for the random policies which database is next.
pub struct Evictor {
    pub pool: Pool,
    /// Databases that may still hold evictable keys in this pass.
    dbs: Vec<usize>,
    next_db: usize,
    rng: Xs,
    /// The policy the pool's scores were computed under.
    pool_policy: Policy,
}

impl Default for Evictor {
    fn default() -> Evictor {
        Evictor {
            pool: Pool::default(),
            dbs: Vec::new(),
            next_db: 0,
            rng: Xs::new(),
            pool_policy: Policy::NoEviction,
        }
    }
}

/// Runs a removal; when it removed something, the memory it freed.
fn measured(remove: impl FnOnce() -> bool) -> Option<u64> {
    let before = crate::memory::used();
    remove().then(|| before.saturating_sub(crate::memory::used()))
}

impl Evictor {
    /// Starts a pass over the databases that exist now.
    pub fn begin_pass(&mut self, ks: &Keyspace) {
        self.dbs.clear();
        self.dbs.extend(ks.existing().map(|d| d.index));
    }

    /// Evicts one key under `policy`, sampling `samples` keys per database
    /// for the pool. Databases found empty are left out for the rest of
    /// the pass. Returns the evicted key's database, the key, and the
    /// memory its removal gave back (measured around the removal alone,
    /// as Redis measures it: not the sampling's copies of key names), or
    /// None when nothing is evictable.
    pub fn evict_one(
        &mut self,
        ks: &Keyspace,
        policy: Policy,
        samples: usize,
        now: i64,
    ) -> Option<(usize, SBytes, u64)> {
        if policy == Policy::NoEviction {
            return None;
        }
        if policy != self.pool_policy {
            // Candidates scored under another policy mean nothing now.
            self.pool.clear();
            self.pool_policy = policy;
        }
        let volatile = policy.volatile();
        // Bounded: keys may vanish between sampling and eviction.
        for _ in 0..64 {
            if self.dbs.is_empty() {
                return None;
            }
            if policy.random() {
                self.next_db = (self.next_db + 1) % self.dbs.len();
                let db = ks.db(self.dbs[self.next_db]);
                let Some(key) = db.random_victim(volatile, now, &mut self.rng) else {
                    self.dbs.remove(self.next_db);
                    continue;
                };
                if let Some(freed) = measured(|| db.lock_key(&key, now).evict(&key, volatile)) {
                    return Some((db.index, key, freed));
                }
                continue;
            }
            let (pool, rng) = (&mut self.pool, &mut self.rng);
            self.dbs
                .retain(|&i| ks.db(i).sample_into(policy, samples, now, pool, rng));
            while let Some(c) = self.pool.pop_best() {
                if !self.dbs.contains(&c.db) {
                    continue;
                }
                let db = ks.db(c.db);
                if let Some(freed) = measured(|| db.lock_key(&c.key, now).evict(&c.key, volatile)) {
                    return Some((c.db, c.key, freed));
                }
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::keyspace::Value;
    use crate::persistence::effects::EffectLog;

    fn keyspace() -> Keyspace {
        Keyspace::new(1, Arc::new(EffectLog::default()))
    }

    fn put(db: &Db, key: &str, now: i64, ttl: Option<i64>) {
        let mut g = db.lock_key(key.as_bytes(), now);
        g.set(key.as_bytes(), Value::Str(SBytes::new(b"v")), false);
        if let Some(at) = ttl {
            g.set_expire(key.as_bytes(), at);
        }
    }

    #[test]
    fn pool_keeps_the_best_sixteen_in_order() {
        let mut p = Pool::default();
        for i in 0..40u64 {
            p.insert(i * 7 % 41, 0, format!("k{i}").as_bytes());
        }
        assert_eq!(p.len(), POOL_SIZE);
        let mut last = u64::MAX;
        while let Some(c) = p.pop_best() {
            assert!(c.score <= last);
            last = c.score;
        }
        assert!(last >= 40 - POOL_SIZE as u64);
    }

    #[test]
    fn volatile_policies_leave_keys_without_ttl() {
        let ks = keyspace();
        let d = ks.db(0);
        let now = 1_000_000_000_000;
        for i in 0..50 {
            put(d, &format!("p{i}"), now, None);
            put(d, &format!("t{i}"), now, Some(now + 60_000 + i));
        }
        for policy in [
            Policy::VolatileLru,
            Policy::VolatileRandom,
            Policy::VolatileTtl,
        ] {
            let mut ev = Evictor::default();
            ev.begin_pass(&ks);
            let k = ev.evict_one(&ks, policy, 5, now).expect("a key with a TTL");
            assert!(k.1.as_slice().starts_with(b"t"), "{policy:?}");
        }
        let mut ev = Evictor::default();
        ev.begin_pass(&ks);
        while ev.evict_one(&ks, Policy::VolatileLfu, 5, now).is_some() {}
        assert_eq!(d.size(), 50);
        assert_eq!(d.expires_count(), 0);
    }

    #[test]
    fn volatile_ttl_takes_the_nearest_expiry_first() {
        let ks = keyspace();
        let d = ks.db(0);
        let now = 1_000_000_000_000;
        // One hash tag: a single slot, so one sample sees every key.
        for i in 0..10 {
            put(d, &format!("{{x}}t{i}"), now, Some(now + 1000 * (i + 1)));
        }
        let mut ev = Evictor::default();
        ev.begin_pass(&ks);
        let k = ev.evict_one(&ks, Policy::VolatileTtl, 10, now);
        assert_eq!(k.map(|k| k.1), Some(SBytes::new(b"{x}t0")));
    }
}
