//! Counting of read lookups (INFO keyspace_hits / keyspace_misses, and the
//! `keymiss` event): Redis counts the lookups a command makes to read a
//! key, not those made to change one. The command layer says which kind
//! of command runs on this thread; lookups add to this thread's tally,
//! which it collects after the command (no shared counter per read).

use std::cell::Cell;

/// What the running command's lookups do.
#[derive(Clone, Copy, Default, PartialEq, Eq, Debug)]
pub enum Mode {
    /// Not counted (lookups made to write).
    #[default]
    Off,
    /// Counted, and misses announced as `keymiss`.
    Count,
    /// Counted without `keymiss` events (OBJECT, as Redis).
    CountQuiet,
}

#[derive(Clone, Copy, Default)]
struct Tally {
    mode: Mode,
    hits: u64,
    misses: u64,
}

thread_local! {
    static TALLY: Cell<Tally> = const { Cell::new(Tally { mode: Mode::Off, hits: 0, misses: 0 }) };
}

/// Sets the mode for the command about to run on this thread; returns
/// the previous one (commands nest inside EXEC).
pub fn count_reads(mode: Mode) -> Mode {
    TALLY.with(|t| {
        let mut v = t.get();
        let prev = v.mode;
        v.mode = mode;
        t.set(v);
        prev
    })
}

/// Takes the hits and misses counted so far on this thread.
pub fn take() -> (u64, u64) {
    TALLY.with(|t| {
        let mut v = t.get();
        let out = (v.hits, v.misses);
        v.hits = 0;
        v.misses = 0;
        t.set(v);
        out
    })
}

/// Records a lookup's outcome; true when it was a read miss to announce.
#[inline]
pub(super) fn record(found: bool) -> bool {
    TALLY.with(|t| {
        let mut v = t.get();
        if v.mode == Mode::Off {
            return false;
        }
        if found {
            v.hits += 1;
        } else {
            v.misses += 1;
        }
        t.set(v);
        !found && v.mode == Mode::Count
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_reads_are_counted() {
        record(true);
        assert_eq!(take(), (0, 0));
        let prev = count_reads(Mode::Count);
        assert_eq!(prev, Mode::Off);
        record(true);
        assert!(record(false));
        count_reads(Mode::CountQuiet);
        assert!(!record(false));
        count_reads(prev);
        assert!(!record(false));
        assert_eq!(take(), (1, 2));
        assert_eq!(take(), (0, 0));
    }
}
