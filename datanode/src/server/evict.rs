//! `maxmemory`: before a command runs, keys are evicted until used memory
//! is back under the limit (or nothing is left to evict), as Redis 7.0's
//! `performEvictions` does. The choice of keys lives in
//! `keyspace::evict`; this layer knows the settings, the counters, the
//! time budget and the hook for evicted keys.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::shared::Shared;
use super::stats::Stats;
use crate::keyspace::evict::{Evictor, Policy};
use crate::memory;

/// The reply to a command refused for memory (without the leading '-').
pub const OOM: &str = "OOM command not allowed when used memory > 'maxmemory'.";

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Outcome {
    /// Under the limit (possibly after evicting).
    Ok,
    /// Over the limit, but a background pass is still evicting: commands
    /// are let through meanwhile, as in Redis.
    Running,
    /// Over the limit with nothing left to evict (or `noeviction`).
    Fail,
}

/// Called for every evicted key, after its slot lock is released: counts it
/// and publishes the `evicted` keyspace event.
pub fn on_evicted(srv: &Shared, db: usize, key: &[u8]) {
    Stats::add(&srv.stats.evicted_keys, 1);
    super::notify::evicted(srv, db, key);
    // Tracking clients hear of it as of any change; with nobody as the
    // modifier, as Redis signals evictions.
    if srv.tracking.armed() {
        super::tracking::key_changed(srv, key, None);
    }
}

/// Memory left out of the limit, as Redis's freeMemoryGetNotCountedMemory:
/// the replication buffer beyond the backlog's own size (what lagging
/// replicas hold, with their send buffers) and the AOF buffer. Evicting
/// keys to make room for their own DELs in those buffers would never end;
/// the backlog itself is capped, so it counts.
pub fn not_counted(srv: &Shared) -> u64 {
    if !srv.log.is_active() {
        return 0;
    }
    let buffers = srv
        .log
        .with_buf(|b| (b.buf.capacity() + b.old.capacity()) as u64 + b.repl.beyond_backlog());
    buffers + crate::replication::master::send_buffers()
}

/// How long one pass may evict before the rest is left to a background
/// task (`maxmemory-eviction-tenacity`, Redis's scale: 50 µs per step up
/// to 10, then +15% per step, unlimited at 100).
fn time_limit(tenacity: u32) -> Option<Duration> {
    match tenacity {
        0..=10 => Some(Duration::from_micros(50 * tenacity as u64)),
        11..=99 => Some(Duration::from_micros(
            (500.0 * 1.15f64.powi(tenacity as i32 - 10)) as u64,
        )),
        _ => None,
    }
}

/// As Redis's isSafeToPerformEvictions: a replica is its master's copy and
/// leaves eviction to it (unless replica-ignore-maxmemory is off), and
/// while clients are paused the dataset stays as it is, evictions
/// included. Nothing is refused for memory meanwhile either.
fn safe_to_evict(srv: &Shared) -> bool {
    !(srv.repl.is_replica() && srv.hot.replica_ignore_maxmemory.load(Ordering::Relaxed))
        && srv.pause.kind() == super::pause::OFF
}

/// When `perform_evictions` last recounted the connections (ms).
static LAST_RECOUNT_MS: std::sync::atomic::AtomicI64 = std::sync::atomic::AtomicI64::new(0);

/// The check before a command: evicts if over `maxmemory`. `needs_room`:
/// the command would be refused on `Fail`, so it waits for an eviction
/// pass another thread is running; other commands (reads, deletes) go on
/// instead of queueing behind it.
pub fn perform_evictions(srv: &Arc<Shared>, now: i64, needs_room: bool) -> Outcome {
    let max = srv.hot.maxmemory.load(Ordering::Relaxed);
    if max == 0 || !memory::counting() {
        return Outcome::Ok;
    }
    if !safe_to_evict(srv) {
        return Outcome::Ok;
    }
    // The cached figure may be a millisecond old (one pipelined batch
    // shares a clock reading): near the limit, read it fresh so a long
    // pipeline of writes cannot run far past maxmemory.
    let mut used = memory::used_recent(now);
    if used <= max && used >= max - max / 64 {
        used = memory::used();
    }
    // As Redis (evictClients before performEvictions): connections past
    // maxmemory-clients go before any key. Their figures move on their own
    // threads (a subscriber's stalled output), so the running total can lag:
    // past the limit, every connection is recounted first. At most once a
    // millisecond: a cache held at its limit is over it on most writes, and
    // the walk visits every connection.
    if used.saturating_sub(super::clientmem::closing()) > max
        && super::clientmem::enabled()
        && LAST_RECOUNT_MS.swap(now, Ordering::Relaxed) != now
    {
        super::clientmem::evict(srv);
        used = memory::used();
    }
    // Evicted connections about to close free their memory by themselves.
    let used = used.saturating_sub(super::clientmem::closing());
    let outcome = if used <= max {
        Outcome::Ok
    } else if Policy::from_code(srv.hot.maxmemory_policy.load(Ordering::Relaxed))
        == Policy::NoEviction
    {
        // Nothing to evict: no need to serialise on the evictor.
        if used <= max.saturating_add(not_counted(srv)) {
            Outcome::Ok
        } else {
            Outcome::Fail
        }
    } else if let Some(ev) = srv.evictor.try_lock() {
        evict_pass(srv, ev, max, now, true)
    } else if needs_room {
        evict_pass(srv, srv.evictor.lock(), max, now, true)
    } else {
        Outcome::Running
    };
    track_exceeded_time(srv, outcome);
    outcome
}

/// Microseconds since the first call (never 0, which means "not over").
fn monotonic_us() -> u64 {
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_micros() as u64 + 1
}

/// (total, current) milliseconds spent over the limit, for INFO.
pub fn exceeded_time_ms(srv: &Shared) -> (u64, u64) {
    let st = &srv.stats;
    let since = st.eviction_exceeded_since_us.load(Ordering::Relaxed);
    let current = if since == 0 {
        0
    } else {
        monotonic_us().saturating_sub(since as u64)
    };
    let total = Stats::get(&st.eviction_exceeded_total_us) + current;
    (total / 1000, current / 1000)
}

/// Redis's `total_eviction_exceeded_time`: how long used memory stayed
/// over the limit.
fn track_exceeded_time(srv: &Shared, outcome: Outcome) {
    let st = &srv.stats;
    let since = st.eviction_exceeded_since_us.load(Ordering::Relaxed);
    match outcome {
        Outcome::Ok if since != 0 => {
            let now = monotonic_us();
            Stats::add(
                &st.eviction_exceeded_total_us,
                now.saturating_sub(since as u64),
            );
            st.eviction_exceeded_since_us.store(0, Ordering::Relaxed);
        }
        Outcome::Running | Outcome::Fail if since == 0 => {
            st.eviction_exceeded_since_us
                .store(monotonic_us() as i64, Ordering::Relaxed);
        }
        _ => {}
    }
}

/// Evicts until under `max`. One pass at a time: two threads each freeing
/// the whole excess would evict twice as much as needed.
fn evict_pass(
    srv: &Arc<Shared>,
    mut ev: parking_lot::MutexGuard<'_, Evictor>,
    max: u64,
    now: i64,
    may_defer: bool,
) -> Outcome {
    let limit = max
        .saturating_add(not_counted(srv))
        .saturating_add(super::clientmem::closing());
    let mut used = memory::used();
    let outcome = 'pass: {
        if used <= limit {
            break 'pass Outcome::Ok;
        }
        let policy = Policy::from_code(srv.hot.maxmemory_policy.load(Ordering::Relaxed));
        if policy == Policy::NoEviction {
            break 'pass Outcome::Fail;
        }
        let samples = srv
            .hot
            .maxmemory_samples
            .load(Ordering::Relaxed)
            .clamp(1, 1024) as usize;
        let budget = time_limit(srv.hot.maxmemory_tenacity.load(Ordering::Relaxed));
        // Timed from the 16th key on: most passes evict one key, and
        // reading the clock for each would cost more than the check saves.
        let mut start: Option<Instant> = None;
        ev.begin_pass(&srv.ks);
        let mut evicted = 0u64;
        // As Redis: the pass frees the excess it found, counting only what
        // each key's removal gave back. What the eviction then sends (an
        // invalidation to every tracking client, a keyspace event) is not
        // taken off what was freed: re-reading used memory instead made
        // each evicted key's messages evict more keys, a feedback loop
        // that could empty the database.
        let to_free = used - limit;
        let mut freed = 0u64;
        // Latency events (Redis's eviction-cycle, eviction-del), timed
        // only while the monitor is on.
        let timed = srv.latency.threshold_ms.load(Ordering::Relaxed) > 0;
        let pass_began = timed.then(Instant::now);
        let observe = |event: &'static str, since: Option<Instant>| {
            if let Some(t) = since {
                srv.latency
                    .observe(event, t.elapsed().as_millis() as u64, now / 1000);
            }
        };
        loop {
            let del_began = timed.then(Instant::now);
            let Some((db, key, gave)) = ev.evict_one(&srv.ks, policy, samples, now) else {
                used = memory::used();
                observe("eviction-cycle", pass_began);
                break 'pass Outcome::Fail;
            };
            observe("eviction-del", del_began);
            freed += gave;
            on_evicted(srv, db, &key);
            // The key's name left the table with it: its memory is freed
            // here, after the messages that needed it.
            let named = memory::used();
            drop(key);
            let after = memory::used();
            freed += named.saturating_sub(after);
            evicted += 1;
            // Other connections free memory too (one closing, a reply
            // sent): under the limit is enough, whatever this pass freed.
            if freed >= to_free || after <= limit {
                used = after;
                observe("eviction-cycle", pass_began);
                break 'pass Outcome::Ok;
            }
            if evicted.is_multiple_of(16) {
                if let Some(b) = budget {
                    let t0 = *start.get_or_insert_with(Instant::now);
                    if t0.elapsed() > b {
                        used = memory::used();
                        observe("eviction-cycle", pass_began);
                        break 'pass Outcome::Running;
                    }
                }
            }
        }
    };
    memory::set_recent(now, used);
    drop(ev);
    if outcome == Outcome::Running && may_defer {
        start_background(srv);
    }
    outcome
}

/// Keeps evicting off the command path until under the limit (after a
/// pass ran out of time, or CONFIG SET lowered `maxmemory`).
pub fn start_background(srv: &Arc<Shared>) {
    if srv.evicting_in_background.swap(true, Ordering::SeqCst) {
        return;
    }
    let Ok(rt) = tokio::runtime::Handle::try_current() else {
        srv.evicting_in_background.store(false, Ordering::SeqCst);
        return;
    };
    let srv = srv.clone();
    rt.spawn(async move {
        loop {
            let max = srv.hot.maxmemory.load(Ordering::Relaxed);
            let outcome = if max == 0 || !safe_to_evict(&srv) {
                Outcome::Ok
            } else {
                evict_pass(
                    &srv,
                    srv.evictor.lock(),
                    max,
                    crate::keyspace::now_ms(),
                    false,
                )
            };
            track_exceeded_time(&srv, outcome);
            if outcome != Outcome::Running {
                break;
            }
            tokio::task::yield_now().await;
        }
        srv.evicting_in_background.store(false, Ordering::SeqCst);
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenacity_follows_redis_scale() {
        assert_eq!(time_limit(0), Some(Duration::ZERO));
        assert_eq!(time_limit(10), Some(Duration::from_micros(500)));
        assert_eq!(time_limit(11), Some(Duration::from_micros(575)));
        assert_eq!(time_limit(100), None);
    }
}
