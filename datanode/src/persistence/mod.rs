//! Persistence: the effect log and the append-only file.

pub mod aof;
pub mod effects;
pub mod rdb;
pub mod rewrite;
pub mod savefile;
pub mod schedule;

use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::server::stats::Stats;
use crate::server::Shared;

/// Where SAVE writes and start-up reads the RDB file.
pub fn rdb_path(srv: &Shared) -> std::path::PathBuf {
    let c = srv.config.read();
    std::path::Path::new(&c.dir()).join(c.dbfilename())
}

/// SAVE: a consistent snapshot written atomically.
pub fn save(srv: &Shared) -> std::io::Result<()> {
    save_to(srv, None)
}

/// [`save`] writing through the temporary file `tmp` (the final save at
/// shutdown, whose temporary file a forced exit removes by name).
pub fn save_via(srv: &Shared, tmp: &std::path::Path) -> std::io::Result<()> {
    save_to(srv, Some(tmp))
}

fn save_to(srv: &Shared, tmp: Option<&std::path::Path>) -> std::io::Result<()> {
    let now = crate::keyspace::now_ms();
    let path = rdb_path(srv);
    let t = std::time::Instant::now();
    rdb::file::save(&srv.ks, &path, tmp, now, || {
        let functions = srv.scripts.functions.read();
        (crate::replication::snapshot_info(srv), functions.codes())
    })?;
    srv.stats.dirty.store(0, Ordering::Relaxed);
    srv.stats.lastsave.store(now / 1000, Ordering::Relaxed);
    // As Redis: a save that succeeded clears a background save's failure.
    srv.stats.rdb_bgsave_failed.store(false, Ordering::Relaxed);
    refresh_write_block(srv);
    tracing::info!("DB saved on disk ({:.3} s)", t.elapsed().as_secs_f64());
    Ok(())
}

/// What Redis's MISCONF refusal says when the last background save failed.
pub const MISCONF_RDB: &str = "MISCONF Redis is configured to save RDB snapshots, but it's currently unable to persist to disk. Commands that may modify the data set are disabled, because this instance is configured to report errors during writes if RDB snapshotting fails (stop-writes-on-bgsave-error option). Please check the Redis logs for details about the RDB error.";

/// Whether writes are refused for a failed background save: it failed,
/// `save` is set and `stop-writes-on-bgsave-error` is on (Redis's
/// writeCommandsDeniedByDiskError). Called when any of them changes.
pub fn refresh_write_block(srv: &Shared) {
    let block = srv.stats.rdb_bgsave_failed.load(Ordering::Relaxed) && {
        let c = srv.config.read();
        c.flag("stop-writes-on-bgsave-error") && !c.save_params().is_empty()
    };
    srv.hot.rdb_write_block.store(block, Ordering::Relaxed);
}

/// The AOF writer could not write: writes are refused with the reason
/// until a write succeeds, as Redis's aof_last_write_status.
pub fn aof_write_failed(srv: &Shared, e: &std::io::Error) {
    *srv.stats.aof_write_error.lock() = Some(crate::util::strerror(e));
    srv.hot.aof_write_block.store(true, Ordering::Relaxed);
}

/// The AOF writer could not fsync: writes are refused with the reason
/// until an fsync succeeds, as Redis's aof_bio_fsync_status. Logged when
/// the trouble starts, as Redis logs it.
pub fn aof_fsync_failed(srv: &Shared, e: &std::io::Error) {
    let reason = crate::util::strerror(e);
    // The reason first: a refusal seen once the flag is up names it.
    *srv.stats.aof_fsync_error.lock() = Some(reason.clone());
    if !srv.hot.aof_fsync_block.swap(true, Ordering::Relaxed) {
        tracing::warn!("Fail to fsync the AOF file: {reason}");
    }
}

/// An fsync of the AOF succeeded: an earlier failure is over.
pub fn aof_fsync_ok(srv: &Shared) {
    lift(&srv.hot.aof_fsync_block, &srv.stats.aof_fsync_error);
}

/// The AOF was turned on again: an earlier write or fsync failure no
/// longer refuses writes (the next one tells), as Redis's startAppendOnly.
pub fn aof_reopened(srv: &Shared) {
    if lift(&srv.hot.aof_fsync_block, &srv.stats.aof_fsync_error) {
        tracing::warn!("AOF reopen, just ignore the AOF fsync error in bio job");
    }
    if lift(&srv.hot.aof_write_block, &srv.stats.aof_write_error) {
        tracing::warn!("AOF reopen, just ignore the last error.");
    }
}

/// Clears a failure that refuses writes, and its reason: true if there
/// was one.
fn lift(
    block: &std::sync::atomic::AtomicBool,
    reason: &parking_lot::Mutex<Option<String>>,
) -> bool {
    let was = block.swap(false, Ordering::Relaxed);
    if was {
        *reason.lock() = None;
    }
    was
}

/// Whether the AOF's last write or fsync failed (INFO
/// aof_last_write_status).
pub fn aof_failing(srv: &Shared) -> bool {
    srv.hot.aof_write_block.load(Ordering::Relaxed)
        || srv.hot.aof_fsync_block.load(Ordering::Relaxed)
}

/// A write to the AOF succeeded: an earlier failure is over.
pub fn aof_write_ok(srv: &Shared) {
    if lift(&srv.hot.aof_write_block, &srv.stats.aof_write_error) {
        tracing::warn!("AOF write error looks solved, Redis can write again.");
    }
}

/// The MISCONF refusal for writes, if one applies (Redis's
/// writeCommandsDeniedByDiskError: a failed background save first, then a
/// failed AOF write while the AOF is on).
pub fn write_refusal(srv: &Shared) -> Option<String> {
    if srv.hot.rdb_write_block.load(Ordering::Relaxed) {
        return Some(MISCONF_RDB.to_string());
    }
    if !srv.log.aof_on() {
        return None;
    }
    // A failed write's reason first, then a failed fsync's, as Redis.
    let reason = if srv.hot.aof_write_block.load(Ordering::Relaxed) {
        srv.stats.aof_write_error.lock().clone()
    } else if srv.hot.aof_fsync_block.load(Ordering::Relaxed) {
        srv.stats.aof_fsync_error.lock().clone()
    } else {
        return None;
    };
    let reason = reason.unwrap_or_default();
    Some(format!("MISCONF Errors writing to the AOF file: {reason}"))
}

/// An AOF rewrite began (INFO aof_rewrites, aof_current_rewrite_time_sec).
pub fn aof_rewrite_started(srv: &Shared) {
    Stats::add(&srv.stats.aof_rewrites, 1);
    srv.stats
        .aof_rewrite_started_s
        .store(crate::keyspace::now_ms() / 1000, Ordering::Relaxed);
}

/// An AOF rewrite ended: its length and outcome (INFO
/// aof_last_bgrewrite_status, aof_rewrites_consecutive_failures).
pub fn aof_rewrite_finished(srv: &Shared, ok: bool) {
    let st = &srv.stats;
    let began = st.aof_rewrite_started_s.swap(0, Ordering::Relaxed);
    st.aof_last_rewrite_secs.store(
        (crate::keyspace::now_ms() / 1000 - began).max(0),
        Ordering::Relaxed,
    );
    st.aof_rewrite_failed.store(!ok, Ordering::Relaxed);
    if ok {
        st.aof_rewrite_failures.store(0, Ordering::Relaxed);
    } else {
        Stats::add(&st.aof_rewrite_failures, 1);
    }
}

/// How long the `save` schedule waits before trying again after a failed
/// background save (Redis's CONFIG_BGSAVE_RETRY_DELAY).
const BGSAVE_RETRY_DELAY_S: i64 = 5;

/// A background save began (INFO rdb_saves, rdb_current_bgsave_time_sec).
pub fn bgsave_started(srv: &Shared) {
    let now = crate::keyspace::now_ms() / 1000;
    Stats::add(&srv.stats.rdb_saves, 1);
    srv.stats
        .rdb_last_bgsave_try_s
        .store(now, Ordering::Relaxed);
    srv.stats.rdb_bgsave_started_s.store(now, Ordering::Relaxed);
}

/// A background save ended: its length and outcome, and with them
/// whether writes are refused.
pub fn bgsave_finished(srv: &Shared, ok: bool) {
    let now = crate::keyspace::now_ms() / 1000;
    let began = srv.stats.rdb_bgsave_started_s.swap(0, Ordering::Relaxed);
    srv.stats
        .rdb_last_bgsave_secs
        .store((now - began).max(0), Ordering::Relaxed);
    srv.stats.rdb_bgsave_failed.store(!ok, Ordering::Relaxed);
    refresh_write_block(srv);
}

/// A full sync with `repl-diskless-sync no` saved its snapshot as the RDB
/// file (`failed`: why not), as Redis's BGSAVE for a disk target does: the
/// save counts as one (LASTSAVE, the changes since it, the outcome that
/// `stop-writes-on-bgsave-error` reads).
pub fn saved_for_sync(
    srv: &Shared,
    failed: Option<&std::io::Error>,
    dirty_at_cut: u64,
    now_ms: i64,
) {
    match failed {
        None => {
            srv.stats.dirty.fetch_sub(
                dirty_at_cut.min(srv.stats.dirty.load(Ordering::Relaxed)),
                Ordering::Relaxed,
            );
            srv.stats.lastsave.store(now_ms / 1000, Ordering::Relaxed);
            srv.sync_file_written.store(true, Ordering::SeqCst);
            tracing::info!("DB saved on disk (for a replica's sync)");
        }
        Some(e) => tracing::warn!("Background saving error (for a replica's sync): {e}"),
    }
    srv.stats
        .rdb_bgsave_failed
        .store(failed.is_some(), Ordering::Relaxed);
    refresh_write_block(srv);
}

/// rdb-del-sync-files on a node with neither save points nor the AOF:
/// the RDB files a full sync makes are not kept.
pub fn sync_files_unwanted(srv: &Shared) -> bool {
    let c = srv.config.read();
    c.flag("rdb-del-sync-files") && c.save_params().is_empty() && !c.appendonly()
}

/// On a master, the file a disk-target sync wrote goes once no replica
/// waits for one (Redis's removeRDBUsedToSyncReplicas).
pub fn drop_sync_file(srv: &Shared, replicas_waiting: bool) {
    if !sync_files_unwanted(srv)
        || replicas_waiting
        || !srv.sync_file_written.swap(false, Ordering::SeqCst)
    {
        return;
    }
    // Removed before it is logged: whoever reads the line finds it gone.
    let _ = std::fs::remove_file(rdb_path(srv));
    tracing::info!("Removing the RDB file used to feed replicas in a persistence-less instance");
}

/// The one snapshot at a time (`snapshot_busy`), held until dropped: a
/// save that ends its sweep, fails before it, or never starts (its thread
/// could not be made) lets the next one go.
pub struct SnapshotHold(Arc<Shared>);

impl SnapshotHold {
    /// Takes the snapshot, unless another save holds it.
    pub fn take(srv: &Arc<Shared>) -> Option<SnapshotHold> {
        (!srv.log.snapshot_busy.swap(true, Ordering::SeqCst)).then(|| SnapshotHold(srv.clone()))
    }
}

impl Drop for SnapshotHold {
    fn drop(&mut self) {
        self.0.log.snapshot_busy.store(false, Ordering::SeqCst);
    }
}

/// [`write_rdb_at_cut`] for a background save holding the snapshot: the
/// next snapshot may begin once this one's sweep ends, while its file is
/// still being synced.
pub fn write_rdb_holding<R, W: std::io::Write>(
    hold: SnapshotHold,
    now: i64,
    out: &mut W,
    aof_base: bool,
    at_cut: impl FnOnce() -> R,
    repl: impl FnOnce(&R) -> Option<rdb::file::ReplInfo>,
) -> (R, std::io::Result<()>) {
    let r = write_rdb_at_cut(&hold.0, now, out, aof_base, at_cut, repl, || true);
    drop(hold);
    r
}

/// The snapshot of a background save started by a command is cut before
/// the command answers, as Redis answers BGSAVE and BGREWRITEAOF after its
/// fork: a write the client sends after the reply is never in it. The
/// save's thread signals the cut; the starter waits for it (a few
/// milliseconds, the locking of every slot), or for the thread to end
/// without one (it failed first), or for a save ahead of it.
pub struct CutSignal(std::sync::mpsc::SyncSender<()>);

pub struct CutWait(std::sync::mpsc::Receiver<()>);

pub fn cut_signal() -> (CutSignal, CutWait) {
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    (CutSignal(tx), CutWait(rx))
}

impl CutSignal {
    pub fn taken(&self) {
        let _ = self.0.try_send(());
    }
}

impl CutWait {
    pub fn wait(self) {
        // Bounded: a cut never takes this long unless a script holds slots.
        let _ = self.0.recv_timeout(std::time::Duration::from_secs(5));
    }
}

/// BGSAVE without fork: like the AOF rewrite, it takes a point-in-time
/// snapshot slot by slot — each slot is serialized before the first change
/// made to it after the snapshot began, by whoever touches it first (the
/// writer about to change it, or the sweep) — so other clients never wait
/// for more than one slot.
pub fn bgsave(srv: &Arc<Shared>) -> Result<(), String> {
    if srv.bgsave_running.swap(true, Ordering::SeqCst) {
        return Err("Background save already in progress".into());
    }
    let Some(hold) = SnapshotHold::take(srv) else {
        srv.bgsave_running.store(false, Ordering::SeqCst);
        return Err(
            "Another background operation (AOF rewrite) is in progress: can't BGSAVE right now"
                .into(),
        );
    };
    let path = rdb_path(srv);
    let srv2 = srv.clone();
    let (cut, cut_taken) = cut_signal();
    bgsave_started(srv);
    let started = std::thread::Builder::new()
        .name("bgsave".into())
        .spawn(move || {
            crate::affinity::pin(crate::affinity::Role::Bgsave);
            let now = crate::keyspace::now_ms();
            let dirty_at_start = srv2.stats.dirty.load(Ordering::Relaxed);
            let written = aof::write_atomic_with(&path, savefile::rdb_autosync(), |w| {
                let at_cut = || {
                    cut.taken();
                    crate::replication::snapshot_info(&srv2)
                };
                write_rdb_holding(hold, now, w, false, at_cut, |info| info.clone()).1
            });
            let ok = match written {
                Ok(()) => {
                    srv2.stats.dirty.fetch_sub(
                        dirty_at_start.min(srv2.stats.dirty.load(Ordering::Relaxed)),
                        Ordering::Relaxed,
                    );
                    srv2.stats.lastsave.store(now / 1000, Ordering::Relaxed);
                    tracing::info!("Background saving terminated with success");
                    true
                }
                Err(e) => {
                    tracing::warn!("Background saving error: {e}");
                    false
                }
            };
            bgsave_finished(&srv2, ok);
            srv2.bgsave_running.store(false, Ordering::SeqCst);
        });
    if let Err(e) = started {
        srv.bgsave_running.store(false, Ordering::SeqCst);
        // As a fork that fails in Redis.
        bgsave_finished(srv, false);
        return Err(e.to_string());
    }
    cut_taken.wait();
    Ok(())
}

/// A snapshot written out as an RDB file while it is taken (BGSAVE, a
/// replica's sync): the header, then each database headed by its counts at
/// the cut, and each slot's entries as the sweep (or a client ahead of it)
/// serializes them. Only slots copied ahead of the sweep wait in memory,
/// for their database's turn, never the whole file, as Redis's child
/// writes its file as it goes. `repl` gives the replication fields for
/// the cut's result; `go_on` may stop the sweep (no one wants the file any
/// more), which makes the result an error. Returns the cut's result and
/// how the writing went.
pub fn write_rdb_at_cut<R, W: std::io::Write>(
    srv: &Shared,
    now: i64,
    out: &mut W,
    aof_base: bool,
    at_cut: impl FnOnce() -> R,
    repl: impl FnOnce(&R) -> Option<rdb::file::ReplInfo>,
    go_on: impl Fn() -> bool,
) -> (R, std::io::Result<()>) {
    let asm = std::cell::RefCell::new(None);
    let asm_ref = &asm;
    let stopped = std::cell::Cell::new(false);
    let (r, _) = sweep_at_cut(
        srv,
        now,
        aof_base,
        at_cut,
        move |r, functions, counts| {
            let info = repl(r);
            let aux = rdb::file::Aux {
                aof_base,
                repl: info.as_ref(),
                hidden: srv.ks.db(0).hidden_ranges(),
                functions: functions.to_vec(),
            };
            *asm_ref.borrow_mut() = Some(rdb::file::StreamAssembler::new(out, now, &aux, counts));
        },
        |e| {
            if let Some(a) = asm.borrow_mut().as_mut() {
                match e {
                    Sweep::Db(d) => a.begin_db(d),
                    Sweep::Chunk(c) => a.chunk(c),
                    Sweep::Paused => {}
                }
            }
            let more = go_on();
            stopped.set(!more);
            more
        },
    );
    let written = match asm.into_inner() {
        _ if stopped.get() => Err(std::io::Error::other("the snapshot was stopped")),
        Some(a) => a.finish(),
        None => Err(std::io::Error::other("the snapshot did not start")),
    };
    (r, written)
}

/// (keys, keys with a TTL) per database at a snapshot's cut.
pub type DbCounts = std::collections::BTreeMap<u32, (usize, usize)>;

/// The counts of `dbs` as they are now (those holding keys); INFO's
/// progress of the save starts from their total.
pub fn counts_for_save<'a>(
    srv: &Shared,
    dbs: impl Iterator<Item = &'a crate::keyspace::Db>,
) -> DbCounts {
    let mut counts = DbCounts::new();
    for db in dbs {
        let c = (0..crate::keyspace::SLOTS as u16).fold((0, 0), |(k, e), s| {
            (k + db.slot_keys(s), e + db.slot_expires(s))
        });
        if c.0 > 0 {
            counts.insert(db.index as u32, c);
        }
    }
    let total: usize = counts.values().map(|c| c.0).sum();
    srv.stats.save_keys_processed.store(0, Ordering::Relaxed);
    srv.stats
        .save_keys_total
        .store(total as u64, Ordering::Relaxed);
    counts
}

/// What a snapshot's sweep hands on as it goes.
pub enum Sweep {
    /// The sweep begins a database.
    Db(u32),
    /// A chunk of slot entries in RDB form (see `rdb::file::StreamAssembler`).
    Chunk(Vec<u8>),
    /// The sweep paused for `rdb-key-save-delay`: a chance to stop it.
    Paused,
}

/// Takes the fork-free snapshot (the caller holds `snapshot_busy`): each
/// slot is serialized before the first change made to it from now on, by
/// whoever touches it first. The cut is an exact point of the effect
/// stream: every slot of every database is locked at once for an instant
/// (in the global lock order), so no command is halfway through, not even
/// one spanning slots; `at_cut` runs there (to read the replication offset
/// the snapshot stands for), the snapshot generation begins, and the locks
/// go. No write is ever in the snapshot and after its offset, or in
/// neither. The function libraries are read there too, under the
/// registry's lock, which every FUNCTION change holds while it is logged.
///
/// `started` runs right after the cut with its result, the libraries and
/// the databases' counts; `each` gets the sweep's progress, and may stop
/// the sweep by returning false (no one wants the snapshot any more). The
/// writers' copies are counted as an AOF base's (`aof_base`) or an RDB
/// file's copy-on-write. Returns the cut's result and the libraries.
pub fn sweep_at_cut<R>(
    srv: &Shared,
    now: i64,
    aof_base: bool,
    at_cut: impl FnOnce() -> R,
    started: impl FnOnce(&R, &[Vec<u8>], DbCounts),
    mut each: impl FnMut(Sweep) -> bool,
) -> (R, Vec<Vec<u8>>) {
    let (tx, rx) = std::sync::mpsc::channel::<Vec<u8>>();
    let mut dbs: Vec<&crate::keyspace::Db> = srv.ks.existing().collect();
    dbs.sort_by_key(|d| d.index);
    let counts;
    let cut = {
        let _all: Vec<crate::keyspace::SlotRef> = dbs
            .iter()
            .flat_map(|db| (0..crate::keyspace::SLOTS as u16).map(move |s| db.lock_slot(s, now)))
            .collect();
        let functions = srv.scripts.functions.read();
        let r = (at_cut(), functions.codes());
        drop(functions);
        *srv.log.snap_tx.lock() = Some(tx);
        srv.log.snap_rdb.store(true, Ordering::SeqCst);
        srv.log.begin_snapshot();
        counts = counts_for_save(srv, dbs.iter().copied());
        r
    };
    started(&cut.0, &cut.1, counts);
    let mut going = true;
    'dbs: for d in 0..srv.ks.count() {
        let Some(db) = srv.ks.existing().find(|db| db.index == d) else {
            continue;
        };
        if !each(Sweep::Db(d as u32)) {
            going = false;
            break;
        }
        for s in 0..crate::keyspace::SLOTS as u16 {
            // Locking is enough: the lock path snapshots the slot.
            let g = db.sweep_slot(s, now);
            let keys = db.slot_keys(s) as u64;
            drop(g);
            if !rdb::slot_save_delay(db, s, || each(Sweep::Paused)) {
                going = false;
                break 'dbs;
            }
            Stats::add(&srv.stats.save_keys_processed, keys);
            for c in rx.try_iter() {
                if !each(Sweep::Chunk(c)) {
                    going = false;
                    break 'dbs;
                }
            }
        }
    }
    srv.stats.save_keys_total.store(0, Ordering::Relaxed);
    srv.stats.save_keys_processed.store(0, Ordering::Relaxed);
    srv.log.rewriting.store(false, Ordering::SeqCst);
    *srv.log.snap_tx.lock() = None;
    srv.log.snap_rdb.store(false, Ordering::SeqCst);
    let cow = srv.log.cow_bytes.swap(0, Ordering::Relaxed);
    match aof_base {
        true => &srv.stats.aof_last_cow_size,
        false => &srv.stats.rdb_last_cow_size,
    }
    .store(cow, Ordering::Relaxed);
    for c in rx.try_iter() {
        // Drained either way: a stopped sweep drops what writers handed over.
        if going {
            going = each(Sweep::Chunk(c));
        }
    }
    cut
}

/// An atomic slot migration's snapshot: the keys of `slots` (database 0)
/// as commands that recreate them (the AOF rewrite's form), cut at an
/// exact point of the effect stream like [`sweep_at_cut`];
/// `at_cut` runs there. Each slot's commands go to `out` with its key
/// count as the sweep reaches it (a writer may have taken the slot's copy
/// first). The caller holds `snapshot_busy`.
pub fn slot_snapshot_at_cut<R>(
    srv: &Shared,
    slots: &[bool],
    now: i64,
    at_cut: impl FnOnce() -> R,
    mut out: impl FnMut(Vec<u8>, usize),
) -> R {
    let (tx, rx) = std::sync::mpsc::channel::<Vec<u8>>();
    let db = srv.ks.db(0);
    let wanted: Vec<u16> = (0..crate::keyspace::SLOTS as u16)
        .filter(|&s| slots.get(s as usize).copied().unwrap_or(false))
        .collect();
    let cut = {
        let _all: Vec<crate::keyspace::SlotRef> = (0..crate::keyspace::SLOTS as u16)
            .map(|s| db.lock_slot(s, now))
            .collect();
        let r = at_cut();
        *srv.log.snap_tx.lock() = Some(tx);
        *srv.log.snap_only.lock() = Some(std::sync::Arc::new(slots.to_vec()));
        srv.log.snap_rdb.store(false, Ordering::SeqCst);
        srv.log.begin_snapshot();
        r
    };
    for s in wanted {
        let keys = db.slot_keys(s);
        drop(db.sweep_slot(s, now));
        if rdb::KEY_SAVE_DELAY.load(Ordering::Relaxed) > 0 {
            for _ in 0..keys {
                rdb::key_delay(&rdb::KEY_SAVE_DELAY);
            }
        }
        let mut first = true;
        for chunk in rx.try_iter() {
            out(chunk, if first { keys } else { 0 });
            first = false;
        }
    }
    srv.log.rewriting.store(false, Ordering::SeqCst);
    srv.log.cow_bytes.store(0, Ordering::Relaxed);
    *srv.log.snap_tx.lock() = None;
    *srv.log.snap_only.lock() = None;
    for chunk in rx.try_iter() {
        out(chunk, 0);
    }
    cut
}

/// When the load in course began (unix seconds) and the bytes it reads
/// in all (0 when unknown): INFO's `loading_*` fields, with
/// [`rdb::LOADED_BYTES`].
static LOAD_START_S: std::sync::atomic::AtomicI64 = std::sync::atomic::AtomicI64::new(0);
static LOAD_TOTAL_BYTES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// A load of `total` bytes begins.
pub fn begin_load(total: u64) {
    LOAD_START_S.store(crate::keyspace::now_ms() / 1000, Ordering::Relaxed);
    LOAD_TOTAL_BYTES.store(total, Ordering::Relaxed);
    rdb::LOADED_BYTES.store(0, Ordering::Relaxed);
    rdb::RDB_USED_MEM.store(0, Ordering::Relaxed);
}

/// INFO persistence's lines while loading, computed as redis-server does
/// (its ETA: the time so far scaled by the bytes left over those read).
pub fn load_progress(now_ms: i64) -> String {
    let start = LOAD_START_S.load(Ordering::Relaxed);
    let total = LOAD_TOTAL_BYTES.load(Ordering::Relaxed);
    let mut loaded = rdb::LOADED_BYTES.load(Ordering::Relaxed);
    if total > 0 {
        loaded = loaded.min(total);
    }
    let used_mem = rdb::RDB_USED_MEM.load(Ordering::Relaxed);
    let (perc, remaining) = if total > 0 {
        (
            loaded as f64 / total as f64 * 100.0,
            total - loaded.min(total),
        )
    } else if used_mem > 0 {
        // The saving server's memory stands in for the unknown size, a
        // rough one: never shown as done before the end.
        (
            (loaded as f64 / used_mem as f64 * 100.0).min(99.99),
            used_mem.saturating_sub(loaded).max(1),
        )
    } else {
        (0.0, 1)
    };
    let elapsed = (now_ms / 1000 - start).max(0) as u64;
    let eta = if elapsed == 0 {
        1
    } else {
        elapsed.saturating_mul(remaining) / (loaded + 1)
    };
    format!(
        "loading_start_time:{start}\r\nloading_total_bytes:{total}\r\nloading_rdb_used_mem:{used_mem}\r\nloading_loaded_bytes:{loaded}\r\nloading_loaded_perc:{perc:.2}\r\nloading_eta_seconds:{eta}\r\n"
    )
}

/// Loads `dir/dbfilename` at start-up when the AOF is off.
pub fn load_rdb(srv: &Shared) -> Result<(), rdb::file::RdbError> {
    let path = rdb_path(srv);
    let data = match std::fs::read(&path) {
        Ok(d) => d,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    let t = std::time::Instant::now();
    begin_load(data.len() as u64);
    let loaded = rdb::file::load_with_info(&srv.ks, &data, crate::keyspace::now_ms())?;
    srv.scripts
        .install_functions(&loaded.functions)
        .map_err(library_error)?;
    count_loaded(srv, &loaded);
    if let Some(info) = &loaded.repl {
        crate::replication::restore_info(srv, info, &loaded.expired_keys, starts_as_replica(srv));
    }
    let (n, expired) = (loaded.keys, loaded.expired);
    track_loaded_imports(srv, loaded.hidden);
    tracing::info!(
        "DB loaded from disk: {:.3} seconds ({n} keys, {expired} expired keys skipped)",
        t.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Whether this node will be a replica once started: `replicaof` in its
/// configuration, or, in cluster mode, its nodes.conf says so.
fn starts_as_replica(srv: &Shared) -> bool {
    let cfg = srv.config.read();
    if cfg.cluster_enabled() {
        std::fs::read_to_string(cfg.value("cluster-config-file"))
            .is_ok_and(|t| crate::cluster::conf::myself_is_replica(&t))
    } else {
        !cfg.value("replicaof").trim().is_empty()
    }
}

fn library_error(e: String) -> rdb::file::RdbError {
    rdb::file::RdbError::Corrupt {
        offset: 0,
        what: format!("Failed loading library: {e}"),
    }
}

/// INFO's `rdb_last_load_keys_loaded` and `rdb_last_load_keys_expired`,
/// and the log line Redis ends a load with.
fn count_loaded(srv: &Shared, loaded: &rdb::file::Loaded) {
    let (n, expired, empty) = (loaded.keys, loaded.expired, loaded.empty_keys);
    if empty > 0 {
        tracing::warn!(
            "Done loading RDB, keys loaded: {n}, keys expired: {expired}, empty keys skipped: {empty}."
        );
    } else {
        tracing::info!("Done loading RDB, keys loaded: {n}, keys expired: {expired}.");
    }
    let s = &srv.stats;
    s.rdb_last_load_keys_loaded
        .store(loaded.keys as u64, Ordering::Relaxed);
    s.rdb_last_load_keys_expired
        .store(loaded.expired as u64, Ordering::Relaxed);
}

/// DEBUG RELOAD's load: `dbfilename` read into the running server, as
/// redis-server's rdbLoad does there. With `flush` every database and
/// function library goes first; without it the file's keys join what is
/// there, and its libraries too (replacing same-named ones only with
/// `merge`). Nothing of it is logged to the AOF or sent to replicas.
pub fn reload_rdb(srv: &Shared, flush: bool, merge: bool) -> Result<(), rdb::file::RdbError> {
    let now = crate::keyspace::now_ms();
    let was = srv.log.suspend();
    if flush {
        srv.scripts.functions.replace_all(Default::default());
        for db in srv.ks.existing() {
            for s in 0..crate::keyspace::SLOTS as u16 {
                if db.slot_keys(s) > 0 {
                    db.lock_slot(s, now).clear(false);
                }
            }
        }
    }
    // Read after emptying, as redis-server does: a missing or unreadable
    // file leaves the server empty.
    let data = std::fs::read(rdb_path(srv));
    let result = data
        .map_err(Into::into)
        .and_then(|data| rdb::file::load_with_info(&srv.ks, &data, now));
    let result = result.and_then(|loaded| {
        let set = srv
            .scripts
            .build_functions(&loaded.functions)
            .map_err(library_error)?;
        srv.scripts
            .functions
            .write()
            .join(set, merge)
            .map_err(library_error)?;
        count_loaded(srv, &loaded);
        Ok(())
    });
    srv.log.resume(was);
    result
}

/// Slots an unfinished import had hidden when the loaded file was
/// written: hidden again, and tracked, so the start-up drops their keys
/// unless this node owns them by then.
pub fn track_loaded_imports(srv: &Shared, hidden: Vec<(u16, u16)>) {
    if !hidden.is_empty() {
        srv.slotmig.track(srv, "loaded-from-rdb".into(), hidden);
    }
}

/// The `save <seconds> <changes>` schedule, checked by the cron.
pub fn maybe_scheduled_save(srv: &Arc<Shared>) {
    let params = srv.config.read().save_params();
    if params.is_empty() || schedule::any_running(srv) {
        return;
    }
    // After a failure, the next try waits a few seconds, as in Redis.
    let now_s = crate::keyspace::now_ms() / 1000;
    if srv.stats.rdb_bgsave_failed.load(Ordering::Relaxed)
        && now_s - srv.stats.rdb_last_bgsave_try_s.load(Ordering::Relaxed) <= BGSAVE_RETRY_DELAY_S
    {
        return;
    }
    let dirty = srv.stats.dirty.load(Ordering::Relaxed);
    let last = srv
        .stats
        .lastsave
        .load(Ordering::Relaxed)
        .max(srv.start_ms / 1000);
    let elapsed = (crate::keyspace::now_ms() / 1000 - last).max(0) as u64;
    if params
        .iter()
        .any(|&(secs, changes)| dirty >= changes && elapsed >= secs)
    {
        tracing::info!("{dirty} changes in {elapsed} seconds. Saving...");
        let _ = bgsave(srv);
    }
}
