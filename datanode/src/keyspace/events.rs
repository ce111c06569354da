//! What happened to keys that no command asked for by name: a key was
//! created, or one was found expired and removed (lazily or by the
//! background cycle). The keyspace reports these to a sink the server
//! installs; it knows nothing of who listens or why.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::OnceLock;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyEvent {
    Created,
    Expired,
}

pub type Sink = Box<dyn Fn(KeyEvent, usize, &[u8]) + Send + Sync>;

const CREATED: u8 = 1;
const EXPIRED: u8 = 2;

#[derive(Default)]
pub struct KeyEvents {
    /// Which kinds are wanted; checked before calling out, so an unwanted
    /// kind costs one relaxed load.
    wanted: AtomicU8,
    sink: OnceLock<Sink>,
}

impl KeyEvents {
    /// Chooses which kinds are reported.
    pub fn report(&self, created: bool, expired: bool) {
        let mut w = 0;
        if created {
            w |= CREATED;
        }
        if expired {
            w |= EXPIRED;
        }
        self.wanted.store(w, Ordering::Relaxed);
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
        if self.wanted.load(Ordering::Relaxed) & EXPIRED != 0 {
            self.emit(KeyEvent::Expired, db, key);
        }
    }

    #[cold]
    fn emit(&self, ev: KeyEvent, db: usize, key: &[u8]) {
        if let Some(f) = self.sink.get() {
            f(ev, db, key);
        }
    }
}
