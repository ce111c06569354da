//! CLIENT PAUSE: while a pause lasts, commands it covers wait in their
//! connection (see `conn::wait_unpaused`) and expired keys stay in place.
//!
//! The command path reads one atomic ([`Pause::kind`]); the rest (end
//! time, waking the waiters) is only touched by PAUSE, UNPAUSE and the
//! timer task that ends a pause at its deadline.
//!
//! With several worker threads a write may have passed its check just
//! before a pause began and still be running: Redis, single-threaded,
//! never has such a write. Whoever needs "no write from now on" (a slot
//! migration's handoff, a manual failover's offset) waits for them with
//! [`Pause::drain`]: each write counts itself in flight ([`Pause::admit`])
//! before it reads the pause, so either it sees the pause or the drain
//! sees it.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

use super::client::Client;
use super::shared::Shared;
use crate::command::table::{self, flags, Cmd};
use crate::keyspace::now_ms;

pub const OFF: u8 = 0;
/// Commands that write or may replicate wait.
pub const WRITE: u8 = 1;
/// Every command waits.
pub const ALL: u8 = 2;

/// In-flight write counters, spread over cache lines so worker threads do
/// not contend on one.
const SHARDS: usize = 16;

#[repr(align(128))]
#[derive(Default)]
struct Shard(AtomicU64);

thread_local! {
    /// This thread's shard, and how many admissions it holds (a drain
    /// run from inside a write must not wait for that write).
    static SHARD: usize = {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        NEXT.fetch_add(1, Ordering::Relaxed) % SHARDS
    };
    static HELD: Cell<u64> = const { Cell::new(0) };
}

pub struct Pause {
    kind: AtomicU8,
    in_flight: [Shard; SHARDS],
    /// Kind and end (unix ms) of the pause in force, changed together.
    state: Mutex<(u8, i64)>,
    /// Bumped whenever the pause starts, grows or ends: waiting connections
    /// and the timer task watch it.
    changed: tokio::sync::watch::Sender<u64>,
    /// Connections waiting for the pause to end (INFO blocked_clients).
    pub waiting: AtomicUsize,
    /// Ids of the waiting connections, in the order they were held: they
    /// resume one at a time in this order, as Redis replays its list.
    queue: Mutex<std::collections::VecDeque<u64>>,
}

impl Default for Pause {
    fn default() -> Self {
        Pause {
            kind: AtomicU8::new(OFF),
            in_flight: Default::default(),
            state: Mutex::new((OFF, 0)),
            changed: tokio::sync::watch::Sender::new(0),
            waiting: AtomicUsize::new(0),
            queue: Mutex::new(Default::default()),
        }
    }
}

impl Pause {
    /// The kind of pause in force (`OFF`, `WRITE` or `ALL`).
    #[inline]
    pub fn kind(&self) -> u8 {
        self.kind.load(Ordering::SeqCst)
    }

    /// Counts a command that may write as in flight until the returned
    /// guard drops. Taken before its pause check: with both sides
    /// sequentially consistent, a drain that began after the pause either
    /// sees this count or this command sees the pause.
    #[inline]
    pub fn admit(&self) -> Admitted<'_> {
        let shard = &self.in_flight[SHARD.with(|s| *s)].0;
        shard.fetch_add(1, Ordering::SeqCst);
        HELD.with(|h| h.set(h.get() + 1));
        Admitted(shard)
    }

    /// Writes admitted and not finished, on other threads than this one.
    pub fn others_in_flight(&self) -> u64 {
        let all: u64 = self
            .in_flight
            .iter()
            .map(|s| s.0.load(Ordering::SeqCst))
            .sum();
        all.saturating_sub(HELD.with(|h| h.get()))
    }

    /// Waits until every write admitted before now has finished; call it
    /// once a pause holds new ones back. Commands run to completion
    /// without yielding, so this is short: a spin, then short sleeps,
    /// bounded by `max`.
    pub async fn drain(&self, max: std::time::Duration) -> bool {
        let end = std::time::Instant::now() + max;
        let mut spins = 0u32;
        while self.others_in_flight() > 0 {
            if std::time::Instant::now() >= end {
                return false;
            }
            spins += 1;
            if spins < 64 {
                tokio::task::yield_now().await;
            } else {
                tokio::time::sleep(std::time::Duration::from_millis(1)).await;
            }
        }
        true
    }

    /// [`Pause::drain`] for a caller that cannot await (the cluster bus's
    /// state changes): writes on other threads finish while this one spins.
    pub fn drain_blocking(&self, max: std::time::Duration) -> bool {
        let end = std::time::Instant::now() + max;
        while self.others_in_flight() > 0 {
            if std::time::Instant::now() >= end {
                return false;
            }
            std::thread::yield_now();
        }
        true
    }

    /// Subscribe before deciding to wait: a change after that wakes us.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// Starts or widens a pause: a later end and a stricter kind win, an
    /// earlier end or a milder kind never shortens what is in force.
    /// Returns once no write admitted before it is still running, as
    /// Redis's CLIENT PAUSE (and a manual failover's pause, whose offset
    /// the replica then waits for) guarantee by being single-threaded.
    pub fn start(&self, srv: &Shared, kind: u8, end_ms: i64) {
        {
            let mut st = self.state.lock();
            st.0 = st.0.max(kind);
            st.1 = st.1.max(end_ms);
            self.kind.store(st.0, Ordering::SeqCst);
            srv.ks.expiry.paused.store(true, Ordering::Relaxed);
        }
        self.changed.send_modify(|g| *g += 1);
        if !self.drain_blocking(std::time::Duration::from_secs(1)) {
            tracing::warn!("Writes still running 1 s after a pause began");
        }
    }

    /// The pause in force: its kind and end.
    pub fn current(&self) -> (u8, i64) {
        *self.state.lock()
    }

    /// Puts back a pause saved with [`Pause::current`] (a shutdown that
    /// failed ends the pause it started, keeping a CLIENT PAUSE in force).
    pub fn restore(&self, srv: &Shared, (kind, end): (u8, i64)) {
        self.stop(srv);
        if kind != OFF {
            self.start(srv, kind, end);
        }
    }

    /// Ends the pause (CLIENT UNPAUSE, or its time has come).
    pub fn stop(&self, srv: &Shared) {
        {
            let mut st = self.state.lock();
            *st = (OFF, 0);
            self.kind.store(OFF, Ordering::Relaxed);
            srv.ks.expiry.paused.store(false, Ordering::Relaxed);
        }
        self.changed.send_modify(|g| *g += 1);
    }

    /// Puts a held connection in line; dropping the [`Turn`] takes it out.
    pub fn enqueue(&self, id: u64) -> Turn<'_> {
        self.queue.lock().push_back(id);
        self.waiting.fetch_add(1, Ordering::Relaxed);
        Turn { pause: self, id }
    }

    /// Whether `id` heads the line of held connections.
    pub fn is_first(&self, id: u64) -> bool {
        self.queue.lock().front() == Some(&id)
    }

    /// The end of the pause in force, if any.
    fn deadline(&self) -> Option<i64> {
        let st = self.state.lock();
        (st.0 != OFF).then_some(st.1)
    }

    /// Ends the pause if its end has passed (Redis: end < now).
    fn stop_if_due(&self, srv: &Shared, now: i64) {
        let due = {
            let st = self.state.lock();
            st.0 != OFF && st.1 < now
        };
        if due {
            self.stop(srv);
        }
    }
}

/// Test hook (`DEBUG WRITE-ADMISSION-DELAY`): microseconds an admitted
/// write waits before it runs.
pub static ADMISSION_DELAY_US: AtomicU64 = AtomicU64::new(0);

/// Applies [`ADMISSION_DELAY_US`], if set.
#[inline]
pub fn admission_delay() {
    let us = ADMISSION_DELAY_US.load(Ordering::Relaxed);
    if us > 0 {
        // Off the worker, so the connections and tasks queued behind it
        // (the migration's own) go on meanwhile, as on a busy server.
        super::off_worker(|| std::thread::sleep(std::time::Duration::from_micros(us)));
    }
}

/// A write in flight (see [`Pause::admit`]).
pub struct Admitted<'a>(&'a AtomicU64);

impl Drop for Admitted<'_> {
    fn drop(&mut self) {
        HELD.with(|h| h.set(h.get() - 1));
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A held connection's place in line. Dropped once its command ran (or the
/// connection went away): the next one may then go.
pub struct Turn<'a> {
    pause: &'a Pause,
    id: u64,
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        self.pause.queue.lock().retain(|&i| i != self.id);
        self.pause.waiting.fetch_sub(1, Ordering::Relaxed);
        self.pause.changed.send_modify(|g| *g += 1);
    }
}

/// Ends each pause at its deadline; sleeps on the change channel while
/// nothing is paused.
pub async fn timer(srv: Arc<Shared>) {
    let mut rx = srv.pause.subscribe();
    loop {
        let wait = match srv.pause.deadline() {
            None => None,
            Some(end) => {
                let now = now_ms();
                if end < now {
                    srv.pause.stop_if_due(&srv, now);
                    continue;
                }
                // One past the end: the pause lasts while end >= now.
                Some(std::time::Duration::from_millis((end - now + 1) as u64))
            }
        };
        let sleep = async {
            match wait {
                Some(d) => tokio::time::sleep(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            r = rx.changed() => if r.is_err() { return },
            _ = sleep => srv.pause.stop_if_due(&srv, now_ms()),
        }
    }
}

/// Whether the command would change the dataset or the replication
/// stream: what a WRITE pause holds back.
fn may_replicate(srv: &Shared, c: &Cmd, args: &crate::command::Args) -> bool {
    // A script that declares its flags writes only without `no-writes`.
    if let Some(w) = crate::command::scripting::declared_writes(srv, c, args) {
        return w;
    }
    c.flags & (flags::WRITE | flags::MAY_REPLICATE) != 0
}

/// The mildest pause that holds `cmd` back, when one is in force and the
/// command must wait for it to end; None when it runs now. Called after
/// every rejection (unknown command, arity, auth, …) and before MULTI
/// queuing, as Redis's processCommand orders it.
#[inline]
pub fn must_wait(
    srv: &Shared,
    client: &Client,
    cmd: &Cmd,
    args: &crate::command::Args,
) -> Option<u8> {
    let kind = srv.pause.kind();
    if kind == OFF {
        return None;
    }
    // Commands run by EXEC or a woken blocked command were admitted already;
    // MONITOR clients count as replicas in Redis, which are never paused.
    if client.in_exec || client.block_retry || client.monitor {
        return None;
    }
    let held_by = if writes(srv, client, cmd, args) {
        WRITE
    } else {
        ALL
    };
    (kind >= held_by).then_some(held_by)
}

/// Whether a WRITE pause holds the command: it writes or may replicate,
/// or it is an EXEC whose queue holds such a command.
fn writes(srv: &Shared, client: &Client, cmd: &Cmd, args: &crate::command::Args) -> bool {
    if may_replicate(srv, cmd, args) {
        return true;
    }
    cmd.name == "exec"
        && client.multi.as_ref().is_some_and(|m| {
            m.queue.iter().any(|q| {
                let a = q.args();
                let Some(mut c) = table::lookup(a.get(0)) else {
                    return false;
                };
                if !c.subs.is_empty() && a.len() >= 2 {
                    if let Some(sc) = table::lookup_sub(c, a.get(1)) {
                        c = sc;
                    }
                }
                may_replicate(srv, c, &a)
            })
        })
}
