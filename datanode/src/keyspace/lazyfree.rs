//! Freeing large values off the command path (UNLINK, FLUSHALL ASYNC, and
//! the deletions the `lazyfree-lazy-*` settings name): a value whose free
//! takes many deallocations goes to one background thread, as Redis's
//! lazyfree does; small ones are freed at once, where the queue would cost
//! more than the free. A flushed database's tables go whole.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, OnceLock};

use super::Value;

/// `lazyfree-lazy-user-del`: DEL frees as UNLINK does.
pub static USER_DEL: AtomicBool = AtomicBool::new(false);
/// `lazyfree-lazy-user-flush`: FLUSHALL/FLUSHDB without SYNC or ASYNC
/// flush in the background.
pub static USER_FLUSH: AtomicBool = AtomicBool::new(false);
/// `lazyfree-lazy-expire`: keys deleted because their time came.
pub static EXPIRE: AtomicBool = AtomicBool::new(false);
/// `lazyfree-lazy-eviction`: keys evicted for maxmemory.
pub static EVICTION: AtomicBool = AtomicBool::new(false);
/// `lazyfree-lazy-server-del`: a value replaced by a write (SET over a
/// big set). Other implicit deletions still free inline.
pub static SERVER_DEL: AtomicBool = AtomicBool::new(false);

/// Something to drop on the background thread, and how many objects
/// INFO counts it as.
struct Job {
    garbage: Box<dyn Send>,
    objects: u64,
}

/// Above this many allocations a value is freed in the background
/// (Redis's LAZYFREE_THRESHOLD).
pub const THRESHOLD: usize = 64;

static PENDING: AtomicU64 = AtomicU64::new(0);
static FREED: AtomicU64 = AtomicU64::new(0);

fn queue() -> &'static mpsc::Sender<Job> {
    static QUEUE: OnceLock<mpsc::Sender<Job>> = OnceLock::new();
    QUEUE.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Job>();
        // If the thread cannot start, the receiver goes with the closure
        // and every send fails: values are then freed inline.
        let _ = std::thread::Builder::new()
            .name("lazyfree".into())
            .spawn(move || {
                crate::affinity::pin(crate::affinity::Role::Bio);
                for job in rx {
                    drop(job.garbage);
                    PENDING.fetch_sub(job.objects, Ordering::Relaxed);
                    FREED.fetch_add(job.objects, Ordering::Relaxed);
                }
            });
        tx
    })
}

fn send(job: Job) {
    PENDING.fetch_add(job.objects, Ordering::Relaxed);
    if let Err(back) = queue().send(job) {
        PENDING.fetch_sub(back.0.objects, Ordering::Relaxed);
        drop(back);
    }
}

/// Frees `v`: here when cheap, else in the background.
pub fn free(v: Value) {
    if v.free_effort() <= THRESHOLD {
        return;
    }
    send(Job {
        garbage: Box::new(v),
        objects: 1,
    });
}

/// Frees `v` as [`free`] does when `lazy` (a `lazyfree-lazy-*` setting),
/// here otherwise.
pub fn free_if(lazy: &AtomicBool, v: Value) {
    if lazy.load(Ordering::Relaxed) {
        free(v);
    }
}

/// Frees a flushed table of `keys` keys in the background, whatever its
/// size, as Redis's FLUSHALL ASYNC does.
pub fn free_all<T: Send + 'static>(garbage: T, keys: u64) {
    send(Job {
        garbage: Box::new(garbage),
        objects: keys,
    });
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
