//! Atomic slot migration (Valkey 9's `CLUSTER MIGRATESLOTS`): the registry
//! of jobs and the I/O around the pure machines of `cluster::slotmig`.
//! The source's task ([`export`]) streams a snapshot of the slots and then
//! the writes made meanwhile; the target's ([`import`]) applies them into
//! hidden slots and claims the slots at the handoff.

pub mod export;
pub mod feed;
pub mod import;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::sync::mpsc::UnboundedSender;

use crate::cluster::slotmig::{Effect, Event, Job, Op, Phase, Timing};
use crate::keyspace::SLOTS;
use crate::server::Shared;

/// How long the source pauses writes for the handoff: Valkey's
/// `cluster-manual-failover-timeout` (5 s) twice.
const PAUSE_MS: i64 = 10_000;

/// Why a job ends when the data is flushed under it.
pub const FLUSHED: &str = "Data was flushed";

/// How many finished jobs CLUSTER GETSLOTMIGRATIONS keeps
/// (`cluster-slot-migration-log-max-len`).
const LOG_MAX_LEN: usize = 1000;

pub struct Entry {
    pub job: Job,
    /// Keys and bytes sent (export) or received (import) so far.
    pub keys: u64,
    pub bytes: u64,
    /// Reaches the job's task (CLUSTER CANCELSLOTMIGRATIONS).
    ctl: Option<UnboundedSender<Event>>,
}

#[derive(Default)]
pub struct Registry {
    /// Newest first, as GETSLOTMIGRATIONS lists them.
    jobs: Mutex<Vec<Entry>>,
    /// INFO: bytes and keys moved by slot migrations, each way.
    pub export_bytes: AtomicU64,
    pub import_bytes: AtomicU64,
    pub export_keys: AtomicU64,
    pub import_keys: AtomicU64,
}

pub fn timing(srv: &Shared) -> Timing {
    let repl_timeout = srv.config.read().int("repl-timeout").max(1);
    Timing {
        pause_ms: PAUSE_MS,
        grant_ms: 2_000,
        timeout_ms: repl_timeout * 1000,
    }
}

/// A job's slots as a 16384-entry table.
pub fn slot_table(ranges: &[(u16, u16)]) -> Arc<Vec<bool>> {
    let mut t = vec![false; SLOTS];
    for &(a, b) in ranges {
        for s in a..=b {
            t[s as usize] = true;
        }
    }
    Arc::new(t)
}

/// What GETSLOTMIGRATIONS shows of a job.
pub struct Row {
    pub job: Job,
    pub keys: u64,
    pub bytes: u64,
}

impl Registry {
    pub fn add(&self, job: Job, ctl: Option<UnboundedSender<Event>>) {
        let mut jobs = self.jobs.lock();
        jobs.insert(
            0,
            Entry {
                job,
                keys: 0,
                bytes: 0,
                ctl,
            },
        );
        // Finished jobs beyond the log's length go, oldest first.
        while jobs.len() > LOG_MAX_LEN {
            match jobs.iter().rposition(|e| e.job.phase.is_final()) {
                Some(i) => {
                    jobs.remove(i);
                }
                None => break,
            }
        }
    }

    /// Feeds an event to the named job; returns its effects.
    pub fn step(&self, name: &str, ev: Event, now: i64, t: &Timing) -> Vec<Effect> {
        let mut jobs = self.jobs.lock();
        match jobs.iter_mut().find(|e| e.job.name == name) {
            Some(e) => {
                let fx = e.job.step(ev, now, t);
                if e.job.phase.is_final() {
                    e.ctl = None;
                }
                fx
            }
            None => Vec::new(),
        }
    }

    /// A copy of the named job.
    pub fn get(&self, name: &str) -> Option<Job> {
        self.jobs
            .lock()
            .iter()
            .find(|e| e.job.name == name)
            .map(|e| e.job.clone())
    }

    pub fn progress(&self, name: &str, keys: u64, bytes: u64) {
        let mut jobs = self.jobs.lock();
        if let Some(e) = jobs.iter_mut().find(|e| e.job.name == name) {
            e.keys += keys;
            e.bytes += bytes;
            let (k, b) = match e.job.op {
                Op::Export => (&self.export_keys, &self.export_bytes),
                Op::Import => (&self.import_keys, &self.import_bytes),
            };
            k.fetch_add(keys, Ordering::Relaxed);
            b.fetch_add(bytes, Ordering::Relaxed);
        }
    }

    /// The first slot of `ranges` an unfinished job of kind `op` already
    /// moves.
    pub fn busy_slot(&self, op: Op, ranges: &[(u16, u16)]) -> Option<u16> {
        let jobs = self.jobs.lock();
        ranges.iter().flat_map(|&(a, b)| a..=b).find(|&s| {
            jobs.iter()
                .any(|e| e.job.op == op && !e.job.phase.is_final() && e.job.contains(s))
        })
    }

    /// Whether an unfinished job of kind `op` runs here.
    pub fn active(&self, op: Op) -> bool {
        self.jobs
            .lock()
            .iter()
            .any(|e| e.job.op == op && !e.job.phase.is_final())
    }

    /// CLUSTER CANCELSLOTMIGRATIONS: asks every unfinished export to stop;
    /// returns how many were asked.
    pub fn cancel_exports(&self) -> usize {
        let jobs = self.jobs.lock();
        let mut n = 0;
        for e in jobs.iter() {
            if e.job.op == Op::Export && !e.job.phase.is_final() {
                if let Some(tx) = &e.ctl {
                    let _ = tx.send(Event::Cancel);
                }
                n += 1;
            }
        }
        n
    }

    pub fn rows(&self) -> Vec<Row> {
        self.jobs
            .lock()
            .iter()
            .map(|e| Row {
                job: e.job.clone(),
                keys: e.keys,
                bytes: e.bytes,
            })
            .collect()
    }

    /// Fails every unfinished job of this node with `why` (FLUSHALL).
    pub fn fail_all(&self, why: Event) {
        let jobs = self.jobs.lock();
        for e in jobs.iter() {
            if !e.job.phase.is_final() {
                if let Some(tx) = &e.ctl {
                    let _ = tx.send(why.clone());
                }
            }
        }
    }
}

/// Whether every slot of `job` is owned by `id` in the current route.
pub fn all_owned_by(srv: &Shared, job: &Job, id: &str) -> bool {
    let Some(cl) = srv.cluster.get() else {
        return false;
    };
    let route = cl.route.load();
    let Some(idx) = route.ids.iter().position(|n| n.as_str() == id) else {
        return false;
    };
    job.ranges.iter().flat_map(|&(a, b)| a..=b).all(|s| {
        route
            .owner
            .get(s as usize)
            .is_some_and(|&o| o as usize == idx)
    })
}

/// The ownership event for a job, from the current route.
pub fn owners_event(srv: &Shared, job: &Job) -> Event {
    Event::Owners {
        all_source: all_owned_by(srv, job, &job.source),
        all_target: all_owned_by(srv, job, &job.target),
    }
}

/// Deletes the keys of the job's slots that this node does not own (the
/// source's after the handoff, the target's hidden ones after a failure),
/// logging DELs for replicas and the AOF; then shows the slots again.
pub fn delete_unowned_keys(srv: &Shared, job: &Job) -> usize {
    let me = srv
        .cluster
        .get()
        .map(|c| c.route.load())
        .map(|r| r.me)
        .unwrap_or(crate::cluster::route::NONE);
    let route = srv.cluster.get().map(|c| c.route.load());
    let db = srv.ks.db(0);
    let mut n = 0;
    for s in job.ranges.iter().flat_map(|&(a, b)| a..=b) {
        let mine = route
            .as_ref()
            .is_some_and(|r| r.owner.get(s as usize) == Some(&me));
        if !mine {
            n += crate::command::keys::delete_slot_keys(srv, s);
        }
        db.set_hidden(s, false);
    }
    n
}

/// The RESP form of a control message: `CLUSTER SYNCSLOTS <MSG>`.
pub fn encode_msg(m: crate::cluster::slotmig::Msg) -> Vec<u8> {
    let mut v = Vec::with_capacity(48);
    crate::resp::parse::encode_command(
        &[b"CLUSTER".as_slice(), b"SYNCSLOTS", m.name().as_bytes()],
        &mut v,
    );
    v
}

/// A control message, if `args` is one (`CLUSTER SYNCSLOTS <MSG>`).
pub fn parse_msg(args: &crate::command::Args) -> Option<crate::cluster::slotmig::Msg> {
    if args.len() == 3
        && args.get(0).eq_ignore_ascii_case(b"CLUSTER")
        && args.get(1).eq_ignore_ascii_case(b"SYNCSLOTS")
    {
        crate::cluster::slotmig::Msg::parse(args.get(2))
    } else {
        None
    }
}

/// Whether the phase is one a job is still running in.
pub fn running(p: Phase) -> bool {
    !p.is_final()
}
