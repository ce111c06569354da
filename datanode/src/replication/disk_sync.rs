//! Full syncs through a disk snapshot (`repl-diskless-sync no`, or a
//! replica that cannot read the socket format). As Redis attaches a
//! replica to the BGSAVE another replica waits for, one snapshot serves
//! every replica that asks while it is taken: a late one reads the stream
//! from the same cut. A replica that asks once the snapshot no longer
//! serves anyone waits for the next one, which starts when the node's
//! current snapshot ends. When the last waiting replica leaves, the
//! snapshot stops (Redis kills its child), unless save points want the
//! file it writes.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

use super::master::{begin_sync_snapshot, end_sync_snapshot, open_stream_at_cut, stream_db_at_cut};
use crate::server::Shared;

/// One disk snapshot and the replicas waiting for it.
pub struct DiskBatch {
    inner: Mutex<Inner>,
    progress: tokio::sync::watch::Sender<Progress>,
    /// No one wants the snapshot any more: its sweep ends early.
    stopped: AtomicBool,
}

#[derive(Default)]
struct Inner {
    /// Replicas waiting for the snapshot (Redis's WAIT_BGSAVE_END, or
    /// _START before the cut).
    waiting: HashSet<u64>,
    /// (offset, replid) once the cut is made.
    cut: Option<(u64, String)>,
    /// Stopped or over: nobody joins any more.
    closed: bool,
}

#[derive(Clone, Default)]
struct Progress {
    cut: Option<(u64, String)>,
    rdb: Option<Result<Arc<SyncFile>, String>>,
}

impl DiskBatch {
    fn new(id: u64) -> DiskBatch {
        DiskBatch {
            inner: Mutex::new(Inner {
                waiting: [id].into_iter().collect(),
                ..Default::default()
            }),
            progress: tokio::sync::watch::Sender::new(Progress::default()),
            stopped: AtomicBool::new(false),
        }
    }

    /// Adds `id` to the replicas this snapshot serves, if it still can:
    /// before its cut, or after it while another replica waits for it and
    /// the stream since the cut is still at hand (Redis copies the waiting
    /// replica's buffer).
    fn try_join(&self, srv: &Shared, id: u64) -> bool {
        let mut inner = self.inner.lock();
        if inner.closed {
            return false;
        }
        match &inner.cut {
            None => {}
            Some(_) if inner.waiting.is_empty() => return false,
            Some((pos, _)) => {
                let pos = *pos;
                let attached = srv.log.with_buf(|b| {
                    let ok = b.repl.can_continue_from(pos);
                    if ok {
                        b.repl.set_reader(id, pos);
                    }
                    ok
                });
                if !attached {
                    return false;
                }
            }
        }
        inner.waiting.insert(id);
        true
    }

    /// `id` no longer waits for the snapshot (it has it, or it left).
    /// With no one left, the snapshot stops unless save points want its
    /// file, as Redis kills a disk BGSAVE that no replica waits for.
    fn leave(&self, srv: &Shared, id: u64) {
        let mut inner = self.inner.lock();
        if !inner.waiting.remove(&id) || !inner.waiting.is_empty() || inner.closed {
            return;
        }
        // Before its cut the snapshot serves only replicas: nothing to keep.
        if inner.cut.is_none() || srv.config.read().save_params().is_empty() {
            inner.closed = true;
            self.stopped.store(true, Ordering::SeqCst);
        }
    }

    async fn wait<T>(&self, pick: impl Fn(&Progress) -> Option<T>) -> std::io::Result<T> {
        super::wait_progress(&self.progress, pick, |p| match &p.rdb {
            Some(Err(e)) => Some(e.clone()),
            _ => None,
        })
        .await
    }

    /// Where the stream after the snapshot starts: (offset, replid).
    pub async fn cut(&self) -> std::io::Result<(u64, String)> {
        self.wait(|p| p.cut.clone()).await
    }

    /// The saved RDB, once made.
    pub async fn rdb(&self) -> std::io::Result<Arc<SyncFile>> {
        self.wait(|p| match &p.rdb {
            Some(Ok(r)) => Some(r.clone()),
            _ => None,
        })
        .await
    }
}

/// A replica waiting for a disk snapshot; leaving (any way) may stop it.
pub struct Waiting<'a> {
    srv: &'a Shared,
    pub batch: Arc<DiskBatch>,
    id: u64,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.batch.leave(self.srv, self.id);
    }
}

/// Joins the snapshot being taken for replicas if it can serve `id`,
/// otherwise opens the next one (it starts once the node's current
/// snapshot, if any, ends).
pub fn join<'a>(srv: &'a Arc<Shared>, id: u64) -> Waiting<'a> {
    let mut open = srv.repl.disk_batch.lock();
    if let Some(b) = open.as_ref() {
        if b.try_join(srv, id) {
            tracing::info!("Waiting for end of BGSAVE for SYNC");
            return Waiting {
                srv,
                batch: b.clone(),
                id,
            };
        }
        tracing::info!(
            "Can't attach the replica to the current BGSAVE. Waiting for next BGSAVE for SYNC"
        );
    }
    let batch = Arc::new(DiskBatch::new(id));
    *open = Some(batch.clone());
    drop(open);
    let srv2 = srv.clone();
    let b2 = batch.clone();
    // Its own task: the snapshot goes on for the others even if this
    // replica's connection ends meanwhile.
    tokio::spawn(async move {
        let srv3 = srv2.clone();
        let b3 = b2.clone();
        let res = tokio::task::spawn_blocking(move || take(&srv3, &b3))
            .await
            .unwrap_or_else(|e| Err(e.to_string()));
        {
            let mut open = srv2.repl.disk_batch.lock();
            b2.inner.lock().closed = true;
            if open.as_ref().is_some_and(|b| Arc::ptr_eq(b, &b2)) {
                *open = None;
            }
        }
        b2.progress.send_modify(|p| p.rdb = Some(res.map(Arc::new)));
    });
    Waiting { srv, batch, id }
}

/// The RDB a disk sync sends: the file as saved, held open so a later
/// save that replaces it (or `rdb-del-sync-files`) does not change what
/// the replicas get, as Redis opens the file for each replica when its
/// BGSAVE ends.
pub struct SyncFile {
    pub file: std::fs::File,
    pub len: u64,
}

/// Takes the batch's snapshot on a blocking thread: at the cut, every
/// waiting replica becomes a reader of the stream from there; the RDB is
/// written to `dump.rdb` as it is made (as Redis's BGSAVE for a sync), and
/// returned open.
fn take(srv: &Arc<Shared>, batch: &DiskBatch) -> Result<SyncFile, String> {
    begin_sync_snapshot(srv, || batch.stopped.load(Ordering::SeqCst))?;
    tracing::info!("Starting BGSAVE for SYNC with target: disk");
    let now = crate::keyspace::now_ms();
    let path = crate::persistence::rdb_path(srv);
    let mut dirty = 0;
    let written = crate::persistence::aof::write_atomic_with(
        &path,
        crate::persistence::savefile::rdb_autosync(),
        |w| {
            let ((_, d), r) = crate::persistence::write_rdb_at_cut(
                srv,
                now,
                w,
                false,
                || {
                    let mut inner = batch.inner.lock();
                    let ids: Vec<u64> = inner.waiting.iter().copied().collect();
                    let cut = open_stream_at_cut(srv, &ids);
                    inner.cut = Some(cut.clone());
                    drop(inner);
                    // +FULLRESYNC goes out now, while the snapshot is still
                    // being made, as redis-server answers when its BGSAVE
                    // starts.
                    batch.progress.send_modify(|p| p.cut = Some(cut.clone()));
                    // As Redis's, the snapshot says where in the stream it
                    // was cut: a replica that keeps it as its RDB file
                    // continues from there after a restart.
                    let repl = crate::persistence::rdb::file::ReplInfo {
                        stream_db: stream_db_at_cut(srv),
                        id: cut.1,
                        offset: cut.0,
                    };
                    (repl, srv.stats.dirty.load(Ordering::Relaxed))
                },
                |(repl, _)| Some(repl.clone()),
                || !batch.stopped.load(Ordering::SeqCst),
            );
            dirty = d;
            r
        },
    );
    // Opened before the node's next snapshot may replace it.
    let opened = written.and_then(|()| {
        let file = std::fs::File::open(&path)?;
        let len = file.metadata()?.len();
        Ok(SyncFile { file, len })
    });
    // The outcome is recorded (and logged) before the save counts as
    // over, as redis-server handles its child's end in one step.
    if opened.is_err() && batch.stopped.load(Ordering::SeqCst) {
        tracing::warn!("Background saving terminated: no replica waits for its snapshot");
        end_sync_snapshot(srv);
        return Err("the snapshot was stopped".into());
    }
    crate::persistence::saved_for_sync(srv, opened.as_ref().err(), dirty, now);
    end_sync_snapshot(srv);
    opened.map_err(|e| e.to_string())
}
