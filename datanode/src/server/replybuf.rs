//! The size a connection keeps its reply buffer at between batches,
//! decided as Redis 7.0's client cron does: a buffer whose recent peak used
//! less than half of it shrinks to just above that peak (not below 1 KB); a
//! buffer that a batch filled doubles (up to 16 KB). Output beyond the
//! buffer is allocated for the batch and freed after its write, as Redis
//! spills into reply blocks. Pure: the connection applies the sizes.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};

/// Redis's PROTO_REPLY_MIN_BYTES: the smallest buffer kept.
pub const MIN: usize = 1024;
/// Redis's PROTO_REPLY_CHUNK_BYTES: a new connection's buffer, and the
/// largest one growth reaches.
pub const CHUNK: usize = 16 * 1024;
/// How often a connection's sizing is revisited (Redis: each client cron
/// pass, at `hz` 10).
pub const PERIOD_MS: i64 = 100;

const DEFAULT_PEAK_RESET_MS: i64 = 5000;

/// DEBUG REPLYBUFFER PEAK-RESET-TIME: how long a peak is remembered
/// (milliseconds; negative = forever).
static PEAK_RESET_MS: AtomicI64 = AtomicI64::new(DEFAULT_PEAK_RESET_MS);
/// DEBUG REPLYBUFFER RESIZING.
static RESIZING: AtomicBool = AtomicBool::new(true);
/// INFO's reply_buffer_shrinks and reply_buffer_expands.
pub static SHRINKS: AtomicU64 = AtomicU64::new(0);
pub static EXPANDS: AtomicU64 = AtomicU64::new(0);

/// `None` restores the default.
pub fn set_peak_reset_ms(ms: Option<i64>) {
    PEAK_RESET_MS.store(ms.unwrap_or(DEFAULT_PEAK_RESET_MS), Ordering::Relaxed);
}

pub fn set_resizing(on: bool) {
    RESIZING.store(on, Ordering::Relaxed);
}

/// One connection's reply buffer bookkeeping.
#[derive(Debug, Clone)]
pub struct ReplyBuf {
    /// The capacity kept between batches.
    pub size: usize,
    /// The most of the buffer one batch used since the last reset.
    pub peak: usize,
    peak_reset_at: i64,
    checked_at: i64,
}

impl ReplyBuf {
    pub fn new(now: i64) -> Self {
        ReplyBuf {
            size: CHUNK,
            peak: 0,
            peak_reset_at: now,
            checked_at: now,
        }
    }

    /// A batch of `len` bytes was written; what did not fit the buffer
    /// does not count toward its peak (Redis's spills to reply blocks).
    pub fn used(&mut self, len: usize) {
        self.peak = self.peak.max(len.min(self.size));
    }

    /// Whether the periodic check is due.
    pub fn due(&self, now: i64) -> bool {
        now - self.checked_at >= PERIOD_MS
    }

    /// The periodic check, with the buffer empty between batches: the new
    /// size to keep, when it changes.
    pub fn check(&mut self, now: i64) -> Option<usize> {
        self.check_with(
            now,
            RESIZING.load(Ordering::Relaxed),
            PEAK_RESET_MS.load(Ordering::Relaxed),
        )
    }

    fn check_with(&mut self, now: i64, resizing: bool, reset_ms: i64) -> Option<usize> {
        self.checked_at = now;
        let shrink_to = self.size / 2;
        let expand_to = self.size * 2;
        let new = if !resizing {
            None
        } else if shrink_to >= MIN && self.peak < shrink_to {
            SHRINKS.fetch_add(1, Ordering::Relaxed);
            Some(MIN.max(self.peak + 1))
        } else if expand_to < CHUNK * 2 && self.peak == self.size {
            EXPANDS.fetch_add(1, Ordering::Relaxed);
            Some(CHUNK.min(expand_to))
        } else {
            None
        };
        // The peak is forgotten every so often, so a buffer a burst grew
        // can shrink again once the client goes quiet.
        if reset_ms >= 0 && now - self.peak_reset_at >= reset_ms {
            self.peak = 0;
            self.peak_reset_at = now;
        }
        if let Some(n) = new {
            self.size = n;
        }
        new
    }

    /// When a check of an idle connection's buffer (empty, not growing)
    /// would next change something: the server cron wakes it then.
    /// `i64::MAX`: never, as things stand.
    pub fn wake_at(&self) -> i64 {
        if !RESIZING.load(Ordering::Relaxed) {
            return i64::MAX;
        }
        let resize = (self.size / 2 >= MIN && self.peak < self.size / 2)
            || (self.size * 2 < CHUNK * 2 && self.peak == self.size);
        if resize {
            return self.checked_at + PERIOD_MS;
        }
        let reset_ms = PEAK_RESET_MS.load(Ordering::Relaxed);
        if self.peak > 0 && reset_ms >= 0 {
            return (self.peak_reset_at + reset_ms).max(self.checked_at + PERIOD_MS);
        }
        i64::MAX
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_idle_buffer_shrinks_to_the_minimum() {
        let mut b = ReplyBuf::new(0);
        assert_eq!(b.check_with(100, true, 5000), Some(MIN));
        assert_eq!(b.size, MIN);
        assert_eq!(b.check_with(200, true, 5000), None);
    }

    #[test]
    fn a_filled_buffer_doubles_up_to_the_chunk_size() {
        let mut b = ReplyBuf::new(0);
        b.check_with(100, true, -1);
        let mut sizes = Vec::new();
        for t in 2..10 {
            b.used(40_000);
            if let Some(n) = b.check_with(t * 100, true, -1) {
                sizes.push(n);
            }
        }
        assert_eq!(sizes, vec![2048, 4096, 8192, 16384]);
        // Never forgotten (reset "never"): a full 16 KB buffer stays.
        assert_eq!(b.check_with(2000, true, -1), None);
        assert_eq!(b.size, CHUNK);
    }

    #[test]
    fn a_peak_is_forgotten_after_the_reset_time() {
        let mut b = ReplyBuf::new(0);
        b.used(CHUNK);
        // Full, but already at the largest size: kept; the peak goes at
        // the reset, then the buffer shrinks.
        assert_eq!(b.check_with(100, true, 5000), None);
        assert_eq!(b.check_with(5000, true, 5000), None);
        assert_eq!(b.peak, 0);
        assert_eq!(b.check_with(5100, true, 5000), Some(MIN));
    }

    #[test]
    fn a_peak_just_under_half_keeps_room_for_it() {
        let mut b = ReplyBuf::new(0);
        b.used(3000);
        assert_eq!(b.check_with(100, true, 5000), Some(3001));
    }

    #[test]
    fn an_idle_connection_is_woken_only_while_its_buffer_would_change() {
        let mut b = ReplyBuf::new(0);
        assert_eq!(b.wake_at(), PERIOD_MS);
        b.check_with(100, true, 5000);
        assert_eq!(b.wake_at(), i64::MAX);
        b.used(MIN);
        // Full: doubles at the next check.
        assert_eq!(b.wake_at(), 200);
        b.check_with(200, true, 5000);
        // Peak 1024 of 2048 is not under half: kept until the reset.
        assert_eq!(b.wake_at(), 5000);
    }

    #[test]
    fn resizing_off_keeps_the_size() {
        let mut b = ReplyBuf::new(0);
        assert_eq!(b.check_with(100, false, 5000), None);
        assert_eq!(b.size, CHUNK);
    }
}
