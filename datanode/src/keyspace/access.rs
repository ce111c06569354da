//! Per-key access tracking for OBJECT IDLETIME / OBJECT FREQ (and, later,
//! eviction): 24 bits per key holding either an LRU clock in seconds or,
//! under an LFU `maxmemory-policy`, a decay time in minutes and a
//! logarithmic access counter, as Redis keeps them.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use rand::Rng;

/// Whether the LFU layout is in use (set from `maxmemory-policy`).
pub static LFU: AtomicBool = AtomicBool::new(false);

const CLOCK_MAX: u32 = (1 << 24) - 1;
/// Counter a new key starts with, so it is not evicted at once.
const LFU_INIT: u8 = 5;
/// `lfu-log-factor`: how much harder each increment gets.
pub static LFU_LOG_FACTOR: AtomicU32 = AtomicU32::new(10);
/// `lfu-decay-time`: minutes for the counter to lose one (0: never).
pub static LFU_DECAY_MINUTES: AtomicU32 = AtomicU32::new(1);

pub fn lru_clock(now_ms: i64) -> u32 {
    ((now_ms / 1000) as u32) & CLOCK_MAX
}

fn minutes(now_ms: i64) -> u32 {
    ((now_ms / 60_000) as u32) & 0xFFFF
}

/// The value a new key starts with.
pub fn initial(now_ms: i64) -> u32 {
    if LFU.load(Ordering::Relaxed) {
        (minutes(now_ms) << 8) | LFU_INIT as u32
    } else {
        lru_clock(now_ms)
    }
}

fn lfu_decayed(meta: u32, now_ms: i64) -> u8 {
    let then = meta >> 8;
    let now = minutes(now_ms);
    let elapsed = if now >= then {
        now - then
    } else {
        65535 - then + now
    };
    let periods = match LFU_DECAY_MINUTES.load(Ordering::Relaxed) {
        0 => 0,
        d => elapsed / d,
    };
    (meta & 0xFF).saturating_sub(periods) as u8
}

/// Access data for a key last used `idle` seconds ago (LRU layout) or
/// with counter `freq` (LFU layout), as RESTORE sets them.
pub fn restored(idle: Option<i64>, freq: Option<i64>, now_ms: i64) -> Option<u32> {
    if LFU.load(Ordering::Relaxed) {
        freq.map(|f| (minutes(now_ms) << 8) | (f.clamp(0, 255) as u32))
    } else {
        idle.map(|i| {
            let clock = lru_clock(now_ms) as i64;
            ((clock - i).rem_euclid(CLOCK_MAX as i64 + 1)) as u32
        })
    }
}

/// Records an access.
pub fn touch(meta: &mut u32, now_ms: i64) {
    if !LFU.load(Ordering::Relaxed) {
        *meta = lru_clock(now_ms);
        return;
    }
    let mut c = lfu_decayed(*meta, now_ms);
    if c < 255 {
        let base = c.saturating_sub(LFU_INIT) as f64;
        let factor = LFU_LOG_FACTOR.load(Ordering::Relaxed) as f64;
        let p = 1.0 / (base * factor + 1.0);
        if rand::rng().random::<f64>() < p {
            c += 1;
        }
    }
    *meta = (minutes(now_ms) << 8) | c as u32;
}

/// Seconds since the last access (LRU layout).
pub fn idle_seconds(meta: u32, now_ms: i64) -> u64 {
    let now = lru_clock(now_ms);
    let d = if now >= meta {
        now - meta
    } else {
        CLOCK_MAX - meta + now
    };
    d as u64
}

/// The decayed access counter (LFU layout).
pub fn frequency(meta: u32, now_ms: i64) -> u8 {
    lfu_decayed(meta, now_ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idle_time_counts_seconds_and_wraps() {
        let t = 1_000_000_000_000i64;
        // The LRU layout directly: `initial` follows the global policy
        // flag, which the LFU test flips while tests run in parallel.
        let m = lru_clock(t);
        assert_eq!(idle_seconds(m, t + 5_500), 5);
        assert_eq!(
            idle_seconds(CLOCK_MAX - 1, (CLOCK_MAX as i64 + 3) * 1000),
            3
        );
    }

    #[test]
    fn lfu_counter_grows_slowly_and_decays() {
        let t = 1_000_000_000_000i64;
        let mut m = (minutes(t) << 8) | LFU_INIT as u32;
        LFU.store(true, Ordering::Relaxed);
        for _ in 0..1000 {
            touch(&mut m, t);
        }
        LFU.store(false, Ordering::Relaxed);
        let f = frequency(m, t);
        assert!(f > LFU_INIT && f < 50, "{f}");
        assert_eq!(frequency(m, t + 10 * 60_000), f - 10);
    }
}
