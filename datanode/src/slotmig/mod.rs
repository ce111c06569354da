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

/// Socket buffer size of a migration link, each way: a snapshot of large
/// keys streams without stalling while the target applies one.
const LINK_BUFFER: usize = 4 << 20;

use parking_lot::Mutex;
use tokio::sync::mpsc::UnboundedSender;

use crate::cluster::slotmig::{Effect, Event, Job, Op, Timing};
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

/// An import known from the stream: its name and slot ranges.
type Tracked = (String, Vec<(u16, u16)>);

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
    /// Imports known only from the stream (our master's, or the AOF being
    /// replayed): their slots stay hidden until the FINISH that ends them.
    tracked: Mutex<Vec<Tracked>>,
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

    /// Counts what a job moved. On the import side data from the source
    /// also counts as contact: a long snapshot carries no ACKs, and Valkey
    /// times an import out on the link's last interaction.
    pub fn progress(&self, name: &str, keys: u64, bytes: u64) {
        let mut jobs = self.jobs.lock();
        if let Some(e) = jobs.iter_mut().find(|e| e.job.name == name) {
            e.keys += keys;
            e.bytes += bytes;
            if e.job.op == Op::Import && bytes > 0 {
                e.job.last_ack_ms = crate::keyspace::now_ms();
            }
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

    /// An import seen in the stream: its slots are hidden here too.
    pub fn track(&self, srv: &Shared, name: String, ranges: Vec<(u16, u16)>) {
        let db = srv.ks.db(0);
        for s in ranges.iter().flat_map(|&(a, b)| a..=b) {
            db.set_hidden(s, true);
        }
        let mut t = self.tracked.lock();
        if !t.iter().any(|(n, _)| *n == name) {
            t.push((name, ranges));
        }
    }

    /// Imports running here, for a stream that starts now (a replica's
    /// full sync): it must learn which slots to hide, as the ESTABLISH it
    /// would have seen is older than its snapshot.
    pub fn announce_imports(&self, srv: &Shared) {
        let running: Vec<Job> = self
            .jobs
            .lock()
            .iter()
            .filter(|e| e.job.op == Op::Import && !e.job.phase.is_final())
            .map(|e| e.job.clone())
            .collect();
        for job in running {
            log_establish(srv, &job);
        }
    }

    /// Its FINISH: the slots show again (on success the keys are ours;
    /// on failure the DELs came first). False when unknown.
    pub fn untrack(&self, srv: &Shared, name: &str) -> bool {
        let mut t = self.tracked.lock();
        let Some(i) = t.iter().position(|(n, _)| n == name) else {
            return false;
        };
        let (_, ranges) = t.remove(i);
        drop(t);
        let db = srv.ks.db(0);
        for s in ranges.iter().flat_map(|&(a, b)| a..=b) {
            db.set_hidden(s, false);
        }
        true
    }

    /// Imports that never finished, as a master finds them (after a
    /// restart, or promoted while its master imported): what they brought
    /// into slots it does not own goes. Returns the keys deleted.
    pub fn abandon_tracked(&self, srv: &Shared) -> usize {
        let gone: Vec<Tracked> = std::mem::take(&mut *self.tracked.lock());
        let mut n = 0;
        for (name, ranges) in gone {
            let job = Job::import(name.clone(), ranges, String::new(), String::new(), 0);
            n += delete_unowned_keys(srv, &job);
            log_finish(srv, &name, false, "Process restarted");
            tracing::info!("Slot import {name} did not finish: its keys were dropped");
        }
        n
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
    let route = srv.cluster.get().map(|c| c.route.load());
    let db = srv.ks.db(0);
    let mut n = 0;
    for s in job.ranges.iter().flat_map(|&(a, b)| a..=b) {
        let mine = route
            .as_ref()
            .is_some_and(|r| r.owner.get(s as usize) == Some(&r.me));
        if !mine {
            n += crate::command::keys::delete_slot_keys(srv, s);
        }
        db.set_hidden(s, false);
    }
    n
}

/// `CLUSTER SYNCSLOTS ESTABLISH SOURCE <id> NAME <name> SLOTSRANGE …`, the
/// handshake the source sends and the marker the target logs.
pub fn establish_command(source: &str, name: &str, ranges: &[(u16, u16)]) -> Vec<u8> {
    let nums: Vec<String> = ranges
        .iter()
        .flat_map(|&(a, b)| [a.to_string(), b.to_string()])
        .collect();
    let mut args: Vec<&[u8]> = vec![
        b"CLUSTER",
        b"SYNCSLOTS",
        b"ESTABLISH",
        b"SOURCE",
        source.as_bytes(),
        b"NAME",
        name.as_bytes(),
        b"SLOTSRANGE",
    ];
    args.extend(nums.iter().map(|n| n.as_bytes()));
    let mut v = Vec::new();
    crate::resp::parse::encode_command(&args, &mut v);
    v
}

/// Tells replicas and the AOF that an import began here, so they hide its
/// slots too and a restart knows to drop an unfinished one.
pub fn log_establish(srv: &Shared, job: &Job) {
    let enc = establish_command(&job.source, &job.name, &job.ranges);
    srv.log.append_raw(0, &enc);
}

/// `CLUSTER SYNCSLOTS FINISH STATE SUCCESS|FAILED NAME … [MESSAGE …]`.
pub fn log_finish(srv: &Shared, name: &str, ok: bool, message: &str) {
    let state: &[u8] = if ok { b"SUCCESS" } else { b"FAILED" };
    let mut args: Vec<&[u8]> = vec![
        b"CLUSTER",
        b"SYNCSLOTS",
        b"FINISH",
        b"STATE",
        state,
        b"NAME",
        name.as_bytes(),
    ];
    if !message.is_empty() {
        args.push(b"MESSAGE");
        args.push(message.as_bytes());
    }
    srv.log.append_now(0, u64::MAX, &args);
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
