//! Server-wide counters. Connections batch their increments (once per read)
//! so the hot path does not bounce a shared cache line per command.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use parking_lot::Mutex;

#[derive(Default)]
pub struct Stats {
    pub commands: AtomicU64,
    pub connections_received: AtomicU64,
    pub rejected_connections: AtomicU64,
    pub expired_keys: AtomicU64,
    pub evicted_keys: AtomicU64,
    /// Connections closed by maxmemory-clients.
    pub evicted_clients: AtomicU64,
    /// Time spent over `maxmemory`: the total of finished stretches, and
    /// when the current one began (0: not over).
    pub eviction_exceeded_total_us: AtomicU64,
    pub eviction_exceeded_since_us: AtomicI64,
    pub keyspace_hits: AtomicU64,
    pub keyspace_misses: AtomicU64,
    /// Full and partial resyncs served (INFO sync_*).
    pub sync_full: AtomicU64,
    pub sync_partial_ok: AtomicU64,
    pub sync_partial_err: AtomicU64,
    pub net_input_bytes: AtomicU64,
    pub net_output_bytes: AtomicU64,
    /// Writes since the last RDB save (INFO rdb_changes_since_last_save).
    pub dirty: AtomicU64,
    pub total_error_replies: AtomicU64,
    pub lastsave: AtomicI64,
    /// Highest `used_memory` seen (INFO used_memory_peak, MEMORY STATS).
    pub memory_peak: AtomicU64,
    ops: Mutex<OpsSampler>,
}

/// Samples the command counter to compute `instantaneous_ops_per_sec`
/// over the last 16 samples, as Redis does.
#[derive(Default)]
struct OpsSampler {
    samples: [u64; 16],
    idx: usize,
    last_ms: i64,
    last_count: u64,
}

impl Stats {
    /// Records `used` as a candidate peak; returns the peak.
    pub fn note_memory_peak(&self, used: u64) -> u64 {
        self.memory_peak
            .fetch_max(used, Ordering::Relaxed)
            .max(used)
    }

    pub fn add(c: &AtomicU64, n: u64) {
        if n > 0 {
            c.fetch_add(n, Ordering::Relaxed);
        }
    }

    pub fn get(c: &AtomicU64) -> u64 {
        c.load(Ordering::Relaxed)
    }

    /// Called every 100 ms by the cron task.
    pub fn sample_ops(&self, now_ms: i64) {
        let mut s = self.ops.lock();
        let count = self.commands.load(Ordering::Relaxed);
        if s.last_ms > 0 {
            let dt = (now_ms - s.last_ms).max(1) as u64;
            let i = s.idx;
            s.samples[i] = (count - s.last_count) * 1000 / dt;
            s.idx = (s.idx + 1) % 16;
        }
        s.last_ms = now_ms;
        s.last_count = count;
    }

    pub fn ops_per_sec(&self) -> u64 {
        let s = self.ops.lock();
        s.samples.iter().sum::<u64>() / 16
    }
}
