//! The latency monitor: events (`command`, `fast-command`, `expire-cycle`)
//! that took at least `latency-monitor-threshold` milliseconds, kept as a
//! short per-second history like Redis's LATENCY command reports them.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;

/// Samples kept per event (Redis keeps 160).
const HISTORY: usize = 160;

#[derive(Default, Clone)]
pub struct Event {
    /// (unix seconds, milliseconds), oldest first, one per second.
    pub samples: Vec<(i64, u64)>,
    pub max: u64,
}

#[derive(Default)]
pub struct Monitor {
    /// `latency-monitor-threshold` in ms; 0 turns the monitor off. Read on
    /// the command path, so it is an atomic.
    pub threshold_ms: AtomicU64,
    events: Mutex<BTreeMap<&'static str, Event>>,
}

impl Monitor {
    /// Records `ms` for `event` at `now_s` if the monitor is on and the
    /// duration reaches the threshold. Cheap when it does not.
    #[inline]
    pub fn observe(&self, event: &'static str, ms: u64, now_s: i64) {
        let t = self.threshold_ms.load(Ordering::Relaxed);
        if t > 0 && ms >= t {
            self.add(event, ms, now_s);
        }
    }

    #[cold]
    fn add(&self, event: &'static str, ms: u64, now_s: i64) {
        let mut m = self.events.lock();
        let e = m.entry(event).or_default();
        e.max = e.max.max(ms);
        match e.samples.last_mut() {
            // Several spikes in one second keep the largest.
            Some(last) if last.0 == now_s => last.1 = last.1.max(ms),
            _ => {
                if e.samples.len() == HISTORY {
                    e.samples.remove(0);
                }
                e.samples.push((now_s, ms));
            }
        }
    }

    pub fn snapshot(&self) -> BTreeMap<&'static str, Event> {
        self.events.lock().clone()
    }

    pub fn get(&self, event: &[u8]) -> Option<Event> {
        self.events
            .lock()
            .iter()
            .find(|(k, _)| k.as_bytes() == event)
            .map(|(_, e)| e.clone())
    }

    /// Clears the named events (all when `names` is empty); returns how
    /// many existed.
    pub fn reset(&self, names: &[&[u8]]) -> usize {
        let mut m = self.events.lock();
        if names.is_empty() {
            let n = m.len();
            m.clear();
            return n;
        }
        let before = m.len();
        m.retain(|k, _| !names.contains(&k.as_bytes()));
        before - m.len()
    }
}
