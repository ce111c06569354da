//! Clients blocked on list keys (BLPOP and friends). A push to a key with
//! waiters wakes the one that blocked first; it retries its command, and if
//! elements remain, the next waiter is woken in turn.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::sync::Notify;

use super::sbytes::SBytes;

type Queue = VecDeque<(u64, Arc<Notify>)>;

#[derive(Default)]
pub struct Blocking {
    /// Number of registrations, so pushes can skip the map when zero.
    waiting: AtomicUsize,
    queues: Mutex<HashMap<(usize, SBytes), Queue>>,
    /// Clients currently blocked (INFO blocked_clients).
    pub clients: AtomicUsize,
    /// Those of them with a timeout (INFO clients_in_timeout_table).
    timed: AtomicUsize,
}

/// A blocked client's place in the count of waits with a timeout, given
/// back when dropped.
pub struct TimedWait<'a>(Option<&'a AtomicUsize>);

impl Drop for TimedWait<'_> {
    fn drop(&mut self) {
        if let Some(n) = self.0 {
            n.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

impl Blocking {
    /// Counts a blocked client's wait among those with a timeout while the
    /// returned guard lives (nothing when it has none).
    pub fn timed_wait(&self, has_timeout: bool) -> TimedWait<'_> {
        TimedWait(has_timeout.then(|| {
            self.timed.fetch_add(1, Ordering::Relaxed);
            &self.timed
        }))
    }

    /// Blocked clients waiting with a timeout.
    pub fn timed_waits(&self) -> usize {
        self.timed.load(Ordering::Relaxed)
    }

    /// Registers a client on keys; `front` keeps its place after a retry
    /// that found nothing.
    pub fn register(&self, db: usize, keys: &[Vec<u8>], id: u64, n: &Arc<Notify>, front: bool) {
        let mut q = self.queues.lock();
        for k in keys {
            let e = q.entry((db, SBytes::new(k))).or_default();
            if e.iter().any(|(c, _)| *c == id) {
                continue;
            }
            if front {
                e.push_front((id, n.clone()));
            } else {
                e.push_back((id, n.clone()));
            }
            self.waiting.fetch_add(1, Ordering::SeqCst);
        }
    }

    pub fn unregister(&self, db: usize, keys: &[Vec<u8>], id: u64) {
        let mut q = self.queues.lock();
        for k in keys {
            let key = (db, SBytes::new(k));
            if let Some(e) = q.get_mut(&key) {
                let before = e.len();
                e.retain(|(c, _)| *c != id);
                self.waiting.fetch_sub(before - e.len(), Ordering::SeqCst);
                if e.is_empty() {
                    q.remove(&key);
                }
            }
        }
    }

    /// Keys of database `db` that clients are blocked on.
    pub fn keys_of(&self, db: usize) -> Vec<SBytes> {
        if self.waiting.load(Ordering::SeqCst) == 0 {
            return Vec::new();
        }
        self.queues
            .lock()
            .keys()
            .filter(|(d, _)| *d == db)
            .map(|(_, k)| k.clone())
            .collect()
    }

    /// A key gained elements: wake the first client blocked on it.
    /// Whether any client is blocked at all (a cheap check before work
    /// done only to wake one).
    pub fn any_waiting(&self) -> bool {
        self.waiting.load(Ordering::SeqCst) != 0
    }

    /// Wakes every client blocked on the key: a stream's new entry is for
    /// all its readers, not for one as a list's element is.
    pub fn signal_all(&self, db: usize, key: &[u8]) {
        if self.waiting.load(Ordering::SeqCst) == 0 {
            return;
        }
        if let Some(e) = self.queues.lock().get(&(db, SBytes::new(key))) {
            for (_, n) in e.iter() {
                n.notify_one();
            }
        }
    }

    pub fn signal(&self, db: usize, key: &[u8]) {
        if self.waiting.load(Ordering::SeqCst) == 0 {
            return;
        }
        if let Some(e) = self.queues.lock().get(&(db, SBytes::new(key))) {
            if let Some((_, n)) = e.front() {
                n.notify_one();
            }
        }
    }
}
