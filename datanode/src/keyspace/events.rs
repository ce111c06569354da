//! What happened to keys that no command asked for by name: a key was
//! created, one was found expired and removed (lazily or by the background
//! cycle), or one was modified (for client-side caching). The keyspace
//! reports these to a sink the server installs; it knows nothing of who
//! listens or why.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::OnceLock;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyEvent {
    Created,
    Expired,
    /// Any change to a key's value or TTL, or its removal (not an expiry:
    /// that is `Expired`). Reported only while someone tracks keys.
    Modified,
    /// A command looked a key up to read it and found nothing.
    Missed,
}

pub type Sink = Box<dyn Fn(KeyEvent, usize, &[u8]) + Send + Sync>;

const CREATED: u8 = 1;
const EXPIRED: u8 = 2;
const MODIFIED: u8 = 4;
const MISSED: u8 = 8;

#[derive(Default)]
pub struct KeyEvents {
    /// Which kinds are wanted; checked before calling out, so an unwanted
    /// kind costs one relaxed load.
    wanted: AtomicU8,
    sink: OnceLock<Sink>,
}

impl KeyEvents {
    /// Chooses which kinds are reported for keyspace notifications.
    pub fn report(&self, created: bool, expired: bool, missed: bool) {
        let mut w = 0;
        if created {
            w |= CREATED;
        }
        if expired {
            w |= EXPIRED;
        }
        if missed {
            w |= MISSED;
        }
        // The MODIFIED bit belongs to `report_modified`.
        self.wanted.fetch_and(MODIFIED, Ordering::Relaxed);
        self.wanted.fetch_or(w, Ordering::Relaxed);
    }

    /// Turns reports of modified keys (and of expired ones) on or off:
    /// on while client-side caching has something to invalidate.
    pub fn report_modified(&self, on: bool) {
        if on {
            self.wanted.fetch_or(MODIFIED, Ordering::Relaxed);
        } else {
            self.wanted.fetch_and(!MODIFIED, Ordering::Relaxed);
        }
    }

    /// Sets where reports go (once, at start).
    pub fn set_sink(&self, sink: Sink) {
        let _ = self.sink.set(sink);
    }

    #[inline]
    pub(super) fn created(&self, db: usize, key: &[u8]) {
        if self.wanted.load(Ordering::Relaxed) & CREATED != 0 {
            self.emit(KeyEvent::Created, db, key);
        }
    }

    #[inline]
    pub(super) fn expired(&self, db: usize, key: &[u8]) {
        if self.wanted.load(Ordering::Relaxed) & (EXPIRED | MODIFIED) != 0 {
            self.emit(KeyEvent::Expired, db, key);
        }
    }

    #[inline]
    pub(super) fn missed(&self, db: usize, key: &[u8]) {
        if self.wanted.load(Ordering::Relaxed) & MISSED != 0 {
            self.emit(KeyEvent::Missed, db, key);
        }
    }

    /// A key changed: one relaxed load when nobody tracks keys.
    #[inline]
    pub(super) fn modified(&self, db: usize, key: &[u8]) {
        if self.wanted.load(Ordering::Relaxed) & MODIFIED != 0 {
            self.emit(KeyEvent::Modified, db, key);
        }
    }

    #[cold]
    fn emit(&self, ev: KeyEvent, db: usize, key: &[u8]) {
        if let Some(f) = self.sink.get() {
            f(ev, db, key);
        }
    }
}
