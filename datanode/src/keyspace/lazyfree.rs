//! Freeing large values off the command path (UNLINK): a value whose free
//! takes many deallocations goes to one background thread, as Redis's
//! lazyfree does; small ones are freed at once, where the queue would cost
//! more than the free.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, OnceLock};

use super::Value;

/// Above this many allocations a value is freed in the background
/// (Redis's LAZYFREE_THRESHOLD).
pub const THRESHOLD: usize = 64;

static PENDING: AtomicU64 = AtomicU64::new(0);
static FREED: AtomicU64 = AtomicU64::new(0);

fn queue() -> &'static mpsc::Sender<Value> {
    static QUEUE: OnceLock<mpsc::Sender<Value>> = OnceLock::new();
    QUEUE.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Value>();
        // If the thread cannot start, the receiver goes with the closure
        // and every send fails: values are then freed inline.
        let _ = std::thread::Builder::new()
            .name("lazyfree".into())
            .spawn(move || {
                for v in rx {
                    drop(v);
                    PENDING.fetch_sub(1, Ordering::Relaxed);
                    FREED.fetch_add(1, Ordering::Relaxed);
                }
            });
        tx
    })
}

/// Frees `v`: here when cheap, else in the background.
pub fn free(v: Value) {
    if v.free_effort() <= THRESHOLD {
        return;
    }
    PENDING.fetch_add(1, Ordering::Relaxed);
    if let Err(back) = queue().send(v) {
        PENDING.fetch_sub(1, Ordering::Relaxed);
        drop(back.0);
    }
}

/// Values queued and not freed yet (INFO `lazyfree_pending_objects`).
pub fn pending() -> u64 {
    PENDING.load(Ordering::Relaxed)
}

/// Values freed in the background since the last reset
/// (INFO `lazyfreed_objects`).
pub fn freed() -> u64 {
    FREED.load(Ordering::Relaxed)
}

pub fn reset_stats() {
    FREED.store(0, Ordering::Relaxed);
}
