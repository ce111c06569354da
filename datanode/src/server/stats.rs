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
    /// What every read and write from a client's socket counts.
    pub net: Net,
    /// Bytes of the replication link: read from our master, and written
    /// to replicas (the RDB and the stream), counted apart as Redis does.
    pub net_repl_input_bytes: AtomicU64,
    pub net_repl_output_bytes: AtomicU64,
    /// The active expire cycle: its time, the runs its time limit cut
    /// short, and the running mean share of stale keys among those it
    /// looked at (an f64's bits; written by the cron only).
    pub expire_cycle_us: AtomicU64,
    pub expired_time_cap_reached: AtomicU64,
    pub expired_stale_perc_bits: AtomicU64,
    /// Background saves (BGSAVE, the `save` schedule, snapshots for
    /// replicas): how many, whether the last failed, when the running one
    /// began and the last one's length (seconds; -1: none), when one was
    /// last tried. INFO persistence, and the MISCONF refusal of writes.
    pub rdb_saves: AtomicU64,
    pub rdb_bgsave_failed: std::sync::atomic::AtomicBool,
    pub rdb_bgsave_started_s: AtomicI64,
    pub rdb_last_bgsave_secs: AtomicI64,
    pub rdb_last_bgsave_try_s: AtomicI64,
    /// AOF rewrites (BGREWRITEAOF, automatic ones): how many began,
    /// whether the last failed and how many failed in a row, when the
    /// running one began and the last one's length (seconds; -1: none).
    pub aof_rewrites: AtomicU64,
    pub aof_rewrite_failed: std::sync::atomic::AtomicBool,
    pub aof_rewrite_failures: AtomicU64,
    pub aof_rewrite_started_s: AtomicI64,
    pub aof_last_rewrite_secs: AtomicI64,
    /// Why the AOF writer's last write failed (None: it did not).
    pub aof_write_error: Mutex<Option<String>>,
    /// The RDB snapshot being swept (a BGSAVE, a full sync's, an AOF
    /// rewrite's preamble): its keys, and those of the slots swept so far
    /// (INFO current_save_keys_total / _processed, current_fork_perc).
    pub save_keys_total: AtomicU64,
    pub save_keys_processed: AtomicU64,
    /// The copy-on-write bytes of the last RDB snapshot and AOF rewrite
    /// (see `EffectLog::cow_bytes`).
    pub rdb_last_cow_size: AtomicU64,
    pub aof_last_cow_size: AtomicU64,
    /// Processes forked (a debugged script's session), and how long the
    /// last fork took.
    pub total_forks: AtomicU64,
    pub latest_fork_usec: AtomicU64,
    /// Everysec fsyncs that held the AOF's next writes back for 2 s or
    /// more (INFO aof_delayed_fsync).
    pub aof_delayed_fsync: AtomicU64,
    /// Why the AOF writer's last fsync failed (None: it did not).
    pub aof_fsync_error: Mutex<Option<String>>,
    /// Keys the last RDB load kept and dropped as expired.
    pub rdb_last_load_keys_loaded: AtomicU64,
    pub rdb_last_load_keys_expired: AtomicU64,
    /// Writes since the last RDB save (INFO rdb_changes_since_last_save).
    pub dirty: AtomicU64,
    pub total_error_replies: AtomicU64,
    /// Errors our master's commands or the AOF's got (INFO
    /// unexpected_error_replies).
    pub unexpected_error_replies: AtomicU64,
    pub lastsave: AtomicI64,
    ops: Mutex<OpsSampler>,
    /// The largest client buffers of the last seconds (INFO
    /// client_recent_max_input_buffer / client_recent_max_output_buffer).
    pub client_peaks: Mutex<ClientPeaks>,
}

/// Redis's CLIENTS_PEAK_MEM_USAGE_SLOTS: the peaks are kept a second a
/// slot over this many seconds.
const PEAK_SLOTS: usize = 8;

/// The largest input and output buffer any client had, per second over
/// the last 8 seconds, as Redis's client cron records them.
#[derive(Default)]
pub struct ClientPeaks {
    slots: [(u64, u64); PEAK_SLOTS],
    /// The second last noted; slots of seconds since are cleared.
    last_sec: i64,
}

impl ClientPeaks {
    /// A client had `input` and `output` bytes buffered in second `sec`.
    pub fn note(&mut self, sec: i64, input: u64, output: u64) {
        if sec > self.last_sec {
            // Seconds with no sample hold nothing (all of them after 8).
            let from = (self.last_sec + 1).max(sec - PEAK_SLOTS as i64 + 1);
            for s in from..=sec {
                self.slots[s.rem_euclid(PEAK_SLOTS as i64) as usize] = (0, 0);
            }
            self.last_sec = sec;
        } else if sec < self.last_sec - PEAK_SLOTS as i64 + 1 {
            return;
        }
        let slot = &mut self.slots[sec.rem_euclid(PEAK_SLOTS as i64) as usize];
        slot.0 = slot.0.max(input);
        slot.1 = slot.1.max(output);
    }

    /// The largest (input, output) over the slots, as of second `sec`.
    pub fn max(&self, sec: i64) -> (u64, u64) {
        if sec - self.last_sec >= PEAK_SLOTS as i64 {
            return (0, 0);
        }
        // Slots of the seconds from last_sec + 1 to sec are stale.
        let stale = |i: usize| {
            (self.last_sec + 1..=sec).any(|s| s.rem_euclid(PEAK_SLOTS as i64) as usize == i)
        };
        (0..PEAK_SLOTS)
            .filter(|&i| !stale(i))
            .map(|i| self.slots[i])
            .fold((0, 0), |(a, b), (c, d)| (a.max(c), b.max(d)))
    }
}

/// The counters each read or write from a client's socket adds to, on
/// one cache line of their own: bytes and calls, each way.
#[derive(Default)]
#[repr(C, align(64))]
pub struct Net {
    pub input_bytes: AtomicU64,
    pub reads: AtomicU64,
    pub output_bytes: AtomicU64,
    pub writes: AtomicU64,
}

/// What `instantaneous_*` figures sample, as Redis's STATS_METRIC_*.
#[derive(Clone, Copy)]
pub enum Metric {
    Commands,
    NetInput,
    NetOutput,
    NetReplInput,
    NetReplOutput,
}

const METRICS: usize = 5;
/// Redis's STATS_METRIC_SAMPLES: the figure is the mean of the last 16
/// per-second rates, one sampled per cron tick.
const SAMPLES: usize = 16;

#[derive(Default)]
struct OpsSampler {
    samples: [[u64; SAMPLES]; METRICS],
    idx: usize,
    last_ms: i64,
    last_count: [u64; METRICS],
}

impl Stats {
    pub fn new() -> Stats {
        Stats {
            rdb_last_bgsave_secs: AtomicI64::new(-1),
            aof_last_rewrite_secs: AtomicI64::new(-1),
            ..Stats::default()
        }
    }

    pub fn add(c: &AtomicU64, n: u64) {
        if n > 0 {
            c.fetch_add(n, Ordering::Relaxed);
        }
    }

    pub fn get(c: &AtomicU64) -> u64 {
        c.load(Ordering::Relaxed)
    }

    /// One expire cycle looked at `sampled` keys and found `stale` of them
    /// expired: the share goes into a running mean weighted 5% new, as
    /// Redis's stat_expired_stale_perc.
    pub fn note_expired_stale(&self, stale: usize, sampled: usize) {
        let current = if sampled > 0 {
            stale as f64 / sampled as f64
        } else {
            0.0
        };
        let old = f64::from_bits(self.expired_stale_perc_bits.load(Ordering::Relaxed));
        let new = current * 0.05 + old * 0.95;
        self.expired_stale_perc_bits
            .store(new.to_bits(), Ordering::Relaxed);
    }

    /// INFO's expired_stale_perc (`%.2f` of a percentage).
    pub fn expired_stale_perc(&self) -> String {
        let share = f64::from_bits(self.expired_stale_perc_bits.load(Ordering::Relaxed));
        format!("{:.2}", share * 100.0)
    }

    /// Called every 100 ms by the cron task.
    pub fn sample_ops(&self, now_ms: i64) {
        let counts = [
            Self::get(&self.commands),
            Self::get(&self.net.input_bytes),
            Self::get(&self.net.output_bytes),
            Self::get(&self.net_repl_input_bytes),
            Self::get(&self.net_repl_output_bytes),
        ];
        let mut s = self.ops.lock();
        if s.last_ms > 0 {
            let dt = (now_ms - s.last_ms).max(1) as u64;
            let i = s.idx;
            for (m, &count) in counts.iter().enumerate() {
                // CONFIG RESETSTAT may zero a counter between two samples
                // (it resets the sampler too, but not atomically with it).
                s.samples[m][i] = count.saturating_sub(s.last_count[m]) * 1000 / dt;
            }
            s.idx = (s.idx + 1) % SAMPLES;
        }
        s.last_ms = now_ms;
        s.last_count = counts;
    }

    /// CONFIG RESETSTAT: the samples start over from zero counts, as
    /// Redis's resetServerStats resets its instantaneous metrics.
    pub fn reset_ops(&self, now_ms: i64) {
        *self.ops.lock() = OpsSampler {
            last_ms: now_ms,
            ..OpsSampler::default()
        };
    }

    /// The mean rate per second of `m` over the last samples.
    pub fn instantaneous(&self, m: Metric) -> u64 {
        let s = self.ops.lock();
        s.samples[m as usize].iter().sum::<u64>() / SAMPLES as u64
    }

    /// A byte rate in KB/s, printed as Redis does (`%.2f`).
    pub fn instantaneous_kbps(&self, m: Metric) -> String {
        format!("{:.2}", self.instantaneous(m) as f64 / 1024.0)
    }
}

#[cfg(test)]
mod client_peak_tests {
    use super::ClientPeaks;

    #[test]
    fn peaks_last_eight_seconds() {
        let mut p = ClientPeaks::default();
        p.note(100, 5000, 70);
        p.note(100, 300, 900);
        p.note(101, 10, 10);
        assert_eq!(p.max(101), (5000, 900));
        // Second 100's slot is reused at 108: its peak is gone then.
        assert_eq!(p.max(107), (5000, 900));
        assert_eq!(p.max(108), (10, 10));
        p.note(103, 1, 2);
        assert_eq!(p.max(104), (5000, 900));
        p.note(109, 0, 0);
        assert_eq!(p.max(109), (1, 2));
        assert_eq!(p.max(200), (0, 0));
        // A late sample for a second already gone counts for nothing.
        p.note(90, 1 << 40, 1 << 40);
        assert_eq!(p.max(109), (1, 2));
    }
}
