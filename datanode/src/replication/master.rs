//! The master side: a connection that sent PSYNC (or SYNC) becomes a
//! replica feed. It gets a partial resync from the backlog when its
//! history is ours, otherwise a point-in-time snapshot of the data and
//! the stream from the snapshot's exact offset; then the stream as it
//! grows. Its `REPLCONF ACK`s are read on the same socket.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::backlog::ReadError;
use super::{ReplicaInfo, ReplicaState, State};
use crate::net::{ReadHalf, Stream, WriteHalf};
use crate::server::client::Client;
use crate::server::stats::Stats;
use crate::server::Shared;

/// What the replica asked for.
#[derive(Debug, Clone)]
pub struct SyncRequest {
    /// PSYNC (false: the old SYNC, answered with the snapshot alone).
    pub psync: bool,
    /// The history the replica has (`?` for none).
    pub replid: String,
    /// The first byte it wants, in Redis's numbering (`-1` for none).
    pub offset: i64,
    /// It understands `+CONTINUE <replid>` (capa psync2).
    pub psync2: bool,
    /// It reads `$EOF:<mark>` snapshots (capa eof).
    pub eof: bool,
    /// Its REPLCONF listening-port and ip-address.
    pub listening_port: u16,
    pub ip: Option<String>,
    /// REPLCONF rdb-filter-only (redis-cli --functions-rdb): a snapshot
    /// without keys, with the function libraries when true.
    pub rdb_filter: Option<bool>,
}

/// How much of the stream one write sends at most.
const SEND_CHUNK: usize = 256 * 1024;

/// The replicas' send buffers (a copy of stream bytes on their way out),
/// counted as the replicas' memory: Redis writes from its shared buffer
/// and has no such copy, so it must not count toward maxmemory either.
static SEND_BUFFERS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Bytes the replicas' send buffers take.
pub fn send_buffers() -> u64 {
    SEND_BUFFERS.load(Ordering::Relaxed)
}

/// A send buffer, counted while it lives.
struct SendBuf(Vec<u8>);

impl SendBuf {
    fn new() -> SendBuf {
        let buf = Vec::with_capacity(SEND_CHUNK);
        SEND_BUFFERS.fetch_add(buf.capacity() as u64, Ordering::Relaxed);
        SendBuf(buf)
    }
}

impl Drop for SendBuf {
    fn drop(&mut self) {
        SEND_BUFFERS.fetch_sub(self.0.capacity() as u64, Ordering::Relaxed);
    }
}

/// Replicas whose last ACK is at most `max_lag` seconds old
/// (`min-replicas-max-lag`).
pub fn good_replicas(st: &State, now_ms: i64, max_lag: i64) -> usize {
    st.replicas
        .values()
        .filter(|r| r.state == ReplicaState::Online && (now_ms - r.ack_ms) / 1000 <= max_lag)
        .count()
}

/// Online replicas that acknowledged at least `offset`.
pub fn acked_count(srv: &Shared, offset: u64) -> usize {
    srv.repl
        .state
        .lock()
        .replicas
        .values()
        .filter(|r| r.state == ReplicaState::Online && r.ack_offset >= offset)
        .count()
}

/// Asks every replica for an ACK now (WAIT): `REPLCONF GETACK *` goes
/// into the stream, as Redis sends it.
pub fn request_acks(srv: &Shared) {
    let mut cmd = Vec::new();
    crate::resp::parse::encode_command(&[b"REPLCONF".as_slice(), b"GETACK", b"*"], &mut cmd);
    srv.log.append_repl_only(&cmd);
}

/// How Redis names a replica in its log: the address it announced (or
/// its peer's) and its listening port, if it told one.
pub fn replica_name(ip: &str, listening_port: u16) -> String {
    if listening_port == 0 {
        format!("{ip}:<unknown-replica-port>")
    } else if ip.contains(':') {
        format!("[{ip}]:{listening_port}")
    } else {
        format!("{ip}:{listening_port}")
    }
}

/// Serves a replica on `sock` until the link ends. `rbuf` holds what the
/// replica sent after its PSYNC.
pub async fn serve(
    srv: &Arc<Shared>,
    sock: &mut Stream,
    client: &mut Client,
    rbuf: BytesMut,
    req: SyncRequest,
) -> std::io::Result<()> {
    let id = client.id;
    let ip = req
        .ip
        .clone()
        .unwrap_or_else(|| sock.peer_ip().unwrap_or_default());
    let name = replica_name(&ip, req.listening_port);
    {
        let mut st = srv.repl.state.lock();
        st.replicas.insert(
            id,
            ReplicaInfo {
                ip,
                listening_port: req.listening_port,
                state: ReplicaState::WaitBgsave,
                ack_offset: 0,
                ack_ms: crate::keyspace::now_ms(),
                acks: 0,
            },
        );
    }
    let (mut rd, mut wr) = sock.split();
    let r = tokio::select! {
        r = feed(srv, &mut wr, id, &name, &req) => r,
        r = read_acks(srv, &mut rd, client, rbuf) => r,
        _ = srv.repl.drop_replicas.notified() => Ok(()),
        _ = killed(srv, id) => Ok(()),
    };
    srv.repl.state.lock().replicas.remove(&id);
    srv.log.with_buf(|b| b.repl.remove_reader(id));
    tracing::info!("Connection with replica {name} lost.");
    r
}

/// Completes when CLIENT KILL closes this replica's connection.
async fn killed(srv: &Shared, id: u64) {
    let Some(info) = srv.clients.lock().get(&id).cloned() else {
        return;
    };
    while !info.killed.load(Ordering::Relaxed) {
        info.kill_notify.notified().await;
    }
}

/// Decides between a partial and a full resync, then streams.
async fn feed(
    srv: &Arc<Shared>,
    wr: &mut WriteHalf<'_>,
    id: u64,
    name: &str,
    req: &SyncRequest,
) -> std::io::Result<()> {
    let pos = match try_partial(srv, id, req) {
        Some((pos, replid)) => {
            let line = if req.psync2 {
                format!("+CONTINUE {replid}\r\n")
            } else {
                "+CONTINUE\r\n".to_string()
            };
            wr.write_all(line.as_bytes()).await?;
            crate::server::stats::Stats::add(&srv.stats.sync_partial_ok, 1);
            let end = srv.log.with_buf(|b| b.repl.end());
            tracing::info!(
                "Partial resynchronization request from {name} accepted. Sending {} bytes of backlog starting from offset {}.",
                end - pos,
                pos + 1
            );
            set_state(srv, id, ReplicaState::Online);
            pos
        }
        None => {
            if req.psync {
                if req.replid != "?" {
                    crate::server::stats::Stats::add(&srv.stats.sync_partial_err, 1);
                    tracing::info!(
                        "Partial resynchronization not accepted: Replication ID mismatch or offset out of range (Replica asked for '{}', offset {}).",
                        req.replid,
                        req.offset
                    );
                }
                tracing::info!("Full resync requested by replica {name}");
            } else {
                tracing::info!("Replica {name} asks for synchronization");
            }
            match req.rdb_filter {
                Some(functions) => filtered_sync(srv, wr, id, req.psync, functions).await?,
                None => full_sync(srv, wr, id, name, req.psync, req.eof).await?,
            }
        }
    };
    stream(srv, wr, id, pos).await
}

/// A partial resync is possible when the replica's history is ours (our
/// replication id, or the previous one up to where we took over) and the
/// bytes it lacks are still in the backlog. Registers it as a reader.
fn try_partial(srv: &Shared, id: u64, req: &SyncRequest) -> Option<(u64, String)> {
    if !req.psync || req.offset < 1 {
        return None;
    }
    let st = srv.repl.state.lock();
    let ours =
        req.replid == st.replid || (req.replid == st.replid2 && req.offset <= st.second_offset);
    if !ours {
        return None;
    }
    let pos = req.offset as u64 - 1;
    let replid = st.replid.clone();
    drop(st);
    srv.log.with_buf(|b| {
        if b.repl.can_continue_from(pos) {
            b.repl.set_reader(id, pos);
            Some((pos, replid))
        } else {
            None
        }
    })
}

fn set_state(srv: &Shared, id: u64, s: ReplicaState) {
    if let Some(r) = srv.repl.state.lock().replicas.get_mut(&id) {
        r.state = s;
    }
}

/// The full resync: a snapshot cut at an exact offset, announced with
/// `+FULLRESYNC <replid> <offset>` (PSYNC only), sent as one bulk.
/// A snapshot that holds no keys (and the function libraries when
/// `functions`), for a client that filtered it with REPLCONF
/// rdb-filter-only (`redis-cli --functions-rdb`, or `--replica`, which
/// wants only the stream that follows); returns where the stream starts.
async fn filtered_sync(
    srv: &Arc<Shared>,
    wr: &mut WriteHalf<'_>,
    id: u64,
    psync: bool,
    functions: bool,
) -> std::io::Result<u64> {
    crate::server::stats::Stats::add(&srv.stats.sync_full, 1);
    let now = crate::keyspace::now_ms();
    let codes = if functions {
        srv.scripts.functions.codes()
    } else {
        Vec::new()
    };
    let rdb = crate::persistence::rdb::file::assemble(
        Vec::new(),
        now,
        &crate::persistence::rdb::file::Aux {
            functions: codes,
            ..Default::default()
        },
    );
    let (pos, replid) = open_stream_at_cut(srv, &[id]);
    let mut out = Vec::with_capacity(rdb.len() + 64);
    if psync {
        out.extend_from_slice(format!("+FULLRESYNC {replid} {pos}\r\n").as_bytes());
    }
    out.extend_from_slice(format!("${}\r\n", rdb.len()).as_bytes());
    out.extend_from_slice(&rdb);
    wr.write_all(&out).await?;
    tracing::info!("Synchronization with a filtered snapshot (rdb-filter-only) succeeded");
    set_state(srv, id, ReplicaState::Online);
    Ok(pos)
}

async fn full_sync(
    srv: &Arc<Shared>,
    wr: &mut WriteHalf<'_>,
    id: u64,
    name: &str,
    psync: bool,
    eof_capable: bool,
) -> std::io::Result<u64> {
    crate::server::stats::Stats::add(&srv.stats.sync_full, 1);
    let (diskless, delay, nagle) = {
        let cfg = srv.config.read();
        (
            // Only a replica that said it reads that format gets it.
            cfg.flag("repl-diskless-sync") && eof_capable,
            cfg.int("repl-diskless-sync-delay").clamp(0, 3600) as u64,
            cfg.flag("repl-disable-tcp-nodelay"),
        )
    };
    // As Redis at a full resync: fewer, larger packets to this replica,
    // for the life of the link (a failure here costs nothing but that).
    if nagle {
        let _ = wr.set_nodelay(false);
    }
    if diskless {
        return diskless_sync(srv, wr, id, name, psync, delay).await;
    }
    let waiting = super::disk_sync::join(srv, id);
    let mut limit = ReplicaLimit::default();
    let (pos, replid) =
        within_limit(srv, id, &mut limit, Some(&mut *wr), waiting.batch.cut()).await??;
    if psync {
        wr.write_all(format!("+FULLRESYNC {replid} {pos}\r\n").as_bytes())
            .await?;
    }
    let rdb = within_limit(srv, id, &mut limit, Some(&mut *wr), waiting.batch.rdb()).await??;
    // It has the snapshot: leaving from now on stops nothing.
    drop(waiting);
    set_state(srv, id, ReplicaState::SendBulk);
    wr.write_all(format!("${}\r\n", rdb.len).as_bytes()).await?;
    send_file(srv, wr, &rdb).await?;
    tracing::info!("Synchronization with replica {name} succeeded");
    set_state(srv, id, ReplicaState::Online);
    let waiting = srv
        .repl
        .state
        .lock()
        .replicas
        .values()
        .any(|r| r.state != ReplicaState::Online);
    crate::persistence::drop_sync_file(srv, waiting);
    Ok(pos)
}

/// Sends a disk sync's saved RDB, read piece by piece from the file.
/// No `repl-timeout` here, as in Redis: a disk replica that stops reading
/// holds up no snapshot (only diskless ones wait for their replicas).
async fn send_file(
    srv: &Shared,
    wr: &mut WriteHalf<'_>,
    rdb: &Arc<super::disk_sync::SyncFile>,
) -> std::io::Result<()> {
    let mut off = 0u64;
    while off < rdb.len {
        let n = (rdb.len - off).min(SEND_CHUNK as u64) as usize;
        let f = rdb.clone();
        let piece = tokio::task::spawn_blocking(move || {
            let mut b = vec![0u8; n];
            std::os::unix::fs::FileExt::read_exact_at(&f.file, &mut b, off).map(|()| b)
        })
        .await
        .map_err(std::io::Error::other)??;
        wr.write_all(&piece).await?;
        Stats::add(&srv.stats.net_repl_output_bytes, n as u64);
        off += n as u64;
    }
    Ok(())
}

/// A full sync in Redis's socket format: the replica joins the next
/// shared snapshot (after `repl-diskless-sync-delay`), gets +FULLRESYNC at
/// its cut, and the RDB as it is made, with no length up front and a
/// random 40-byte mark before and after it.
async fn diskless_sync(
    srv: &Arc<Shared>,
    wr: &mut WriteHalf<'_>,
    id: u64,
    name: &str,
    psync: bool,
    delay: u64,
) -> std::io::Result<u64> {
    let batch = join_batch(srv, id, delay);
    let reading = Reading { batch: &batch, id };
    let mut limit = ReplicaLimit::default();
    // +FULLRESYNC goes out at the batch's cut, while its snapshot is
    // made, as redis-server answers when the BGSAVE starts.
    let (pos, replid) = within_limit(srv, id, &mut limit, Some(&mut *wr), batch.cut()).await??;
    if psync {
        wr.write_all(format!("+FULLRESYNC {replid} {pos}\r\n").as_bytes())
            .await?;
    }
    let mark = super::new_replid();
    wr.write_all(format!("$EOF:{mark}\r\n").as_bytes()).await?;
    let mut sent = 0;
    loop {
        let (pieces, done) =
            within_limit(srv, id, &mut limit, None, batch.pieces_after(sent)).await??;
        for p in &pieces {
            write_within_timeout(srv, wr, p, name).await?;
            Stats::add(&srv.stats.net_repl_output_bytes, p.len() as u64);
        }
        sent += pieces.len();
        reading.sent(sent);
        if done {
            break;
        }
    }
    drop(reading);
    wr.write_all(mark.as_bytes()).await?;
    set_state(srv, id, ReplicaState::SendBulk);
    wait_first_ack(srv, id).await?;
    tracing::info!("Synchronization with replica {name} succeeded");
    set_state(srv, id, ReplicaState::Online);
    Ok(pos)
}

/// Writes a snapshot's piece; a replica that takes none of it for
/// `repl-timeout` (read as it is now, as Redis's cron does) is let go, as
/// Redis drops one whose socket stays full: the snapshot waits for it.
async fn write_within_timeout(
    srv: &Shared,
    wr: &mut WriteHalf<'_>,
    piece: &[u8],
    name: &str,
) -> std::io::Result<()> {
    let started = tokio::time::Instant::now();
    let write = wr.write_all(piece);
    tokio::pin!(write);
    loop {
        if let Ok(r) = tokio::time::timeout(Duration::from_millis(250), &mut write).await {
            return r;
        }
        let limit = srv.config.read().int("repl-timeout").max(1) as u64;
        if started.elapsed() > Duration::from_secs(limit) {
            tracing::warn!("Disconnecting timedout replica (full sync): {name}");
            return Err(std::io::Error::other("replica timed out"));
        }
    }
}

/// After a `$EOF:` snapshot the stream waits for the replica's first ACK,
/// as Redis does: a replica that looks for the mark at the end of what it
/// read (redis-server's) would miss it if stream bytes came right behind.
async fn wait_first_ack(srv: &Shared, id: u64) -> std::io::Result<()> {
    // Replicas send no ACK before they have loaded a snapshot.
    let limit = srv.config.read().int("repl-timeout").max(1) as u64;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(limit);
    loop {
        let notified = srv.repl.acked.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let acked = srv
            .repl
            .state
            .lock()
            .replicas
            .get(&id)
            .is_some_and(|r| r.acks > 0);
        if acked {
            return Ok(());
        }
        tokio::select! {
            _ = notified => {}
            _ = tokio::time::sleep_until(deadline) => {
                return Err(std::io::Error::other("no ACK from the replica after the snapshot"));
            }
        }
    }
}

/// Where a shared diskless snapshot stands: its cut (offset, replid)
/// once made, the RDB's bytes written so far, whether it is whole; or why
/// it failed.
#[derive(Clone, Default)]
struct BatchProgress {
    cut: Option<(u64, String)>,
    /// Every piece so far; those all replicas have sent are freed (None).
    pieces: Vec<Option<Arc<Vec<u8>>>>,
    done: bool,
    failed: Option<String>,
}

/// Replicas waiting for the next diskless snapshot: as Redis, every
/// replica that asks within `repl-diskless-sync-delay` (or until
/// `repl-diskless-sync-max-replicas` have asked) gets the same one.
pub struct Batch {
    ids: parking_lot::Mutex<Vec<u64>>,
    progress: tokio::sync::watch::Sender<BatchProgress>,
    /// The replicas still taking the snapshot, and how many pieces each
    /// has sent: the snapshot waits for the slowest, as Redis's child
    /// waits on its pipe, and stops when none is left.
    readers: parking_lot::Mutex<std::collections::HashMap<u64, usize>>,
    /// A reader moved on or left.
    moved: parking_lot::Condvar,
}

/// A diskless snapshot holds at most this much that some replica of its
/// batch has not sent yet; then it waits for that replica.
const MAX_AHEAD: usize = 4 << 20;

/// A replica taking a batch's snapshot; leaving (any way) lets the
/// snapshot go on without it.
struct Reading<'a> {
    batch: &'a Batch,
    id: u64,
}

impl Reading<'_> {
    fn sent(&self, pieces: usize) {
        self.batch.readers.lock().insert(self.id, pieces);
        self.batch.moved.notify_all();
    }
}

impl Drop for Reading<'_> {
    fn drop(&mut self) {
        self.batch.readers.lock().remove(&self.id);
        self.batch.moved.notify_all();
    }
}

impl Batch {
    /// Waits until `pick` finds what it wants in the progress.
    async fn wait<T>(&self, pick: impl Fn(&BatchProgress) -> Option<T>) -> std::io::Result<T> {
        super::wait_progress(&self.progress, pick, |p| p.failed.clone()).await
    }

    async fn cut(&self) -> std::io::Result<(u64, String)> {
        self.wait(|p| p.cut.clone()).await
    }

    /// The pieces after the first `sent`, once there are any (or the
    /// snapshot is whole), and whether they end it.
    async fn pieces_after(&self, sent: usize) -> std::io::Result<(Vec<Arc<Vec<u8>>>, bool)> {
        self.wait(|p| {
            (p.pieces.len() > sent || p.done).then(|| {
                let after = p.pieces[sent.min(p.pieces.len())..].iter();
                (after.flatten().cloned().collect(), p.done)
            })
        })
        .await
    }
}

/// Hands the RDB a diskless snapshot writes to the replicas waiting for
/// it, in pieces: at least every 64 KB, or 50 ms after the last piece, so
/// a slow snapshot is seen to progress.
struct PieceWriter<'a> {
    batch: &'a Batch,
    buf: Vec<u8>,
    last: std::time::Instant,
    /// Each piece's size, the pieces freed so far, and the bytes held.
    sizes: Vec<usize>,
    freed: usize,
    held: usize,
    /// Every replica left: the snapshot stops.
    stopped: &'a std::cell::Cell<bool>,
}

impl PieceWriter<'_> {
    fn hand_over(&mut self) -> std::io::Result<()> {
        if !self.buf.is_empty() {
            let piece = Arc::new(std::mem::take(&mut self.buf));
            self.sizes.push(piece.len());
            self.held += piece.len();
            self.batch
                .progress
                .send_modify(|p| p.pieces.push(Some(piece)));
        }
        self.last = std::time::Instant::now();
        let mut readers = self.batch.readers.lock();
        loop {
            let Some(slowest) = readers.values().copied().min() else {
                self.stopped.set(true);
                return Err(std::io::Error::other("every replica left"));
            };
            // What every replica has sent is let go.
            if slowest > self.freed {
                let (from, to) = (self.freed, slowest);
                self.held -= self.sizes[from..to].iter().sum::<usize>();
                self.batch.progress.send_modify(|p| {
                    p.pieces[from..to].iter_mut().for_each(|x| *x = None);
                });
                self.freed = slowest;
            }
            if self.held <= MAX_AHEAD {
                return Ok(());
            }
            self.batch
                .moved
                .wait_for(&mut readers, Duration::from_millis(100));
        }
    }
}

impl std::io::Write for PieceWriter<'_> {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        if self.stopped.get() {
            return Err(std::io::Error::other("every replica left"));
        }
        self.buf.extend_from_slice(b);
        if self.buf.len() >= 64 * 1024 || self.last.elapsed() >= Duration::from_millis(50) {
            self.hand_over()?;
        }
        Ok(b.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if self.stopped.get() {
            return Err(std::io::Error::other("every replica left"));
        }
        self.hand_over()
    }
}

/// Joins the open batch, or opens one and runs its snapshot after the
/// delay.
fn join_batch(srv: &Arc<Shared>, id: u64, delay: u64) -> Arc<Batch> {
    let (batch, leader) = {
        let mut open = srv.repl.pending_batch.lock();
        match open.as_ref() {
            Some(b) => {
                b.ids.lock().push(id);
                b.readers.lock().insert(id, 0);
                (b.clone(), false)
            }
            None => {
                let b = Arc::new(Batch {
                    ids: parking_lot::Mutex::new(vec![id]),
                    progress: tokio::sync::watch::Sender::new(BatchProgress::default()),
                    readers: parking_lot::Mutex::new([(id, 0)].into_iter().collect()),
                    moved: parking_lot::Condvar::new(),
                });
                *open = Some(b.clone());
                (b, true)
            }
        }
    };
    if leader {
        if delay > 0 {
            tracing::info!("Delay next BGSAVE for diskless SYNC");
        }
        let srv = srv.clone();
        let batch = batch.clone();
        // Its own task: the snapshot goes on for the others even if this
        // replica's connection ends meanwhile.
        tokio::spawn(async move {
            let max = srv
                .config
                .read()
                .int("repl-diskless-sync-max-replicas")
                .max(0) as usize;
            let end = std::time::Instant::now() + Duration::from_secs(delay);
            while std::time::Instant::now() < end && (max == 0 || batch.ids.lock().len() < max) {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            // Close the batch: later replicas open the next one.
            srv.repl.pending_batch.lock().take();
            let ids = batch.ids.lock().clone();
            tracing::info!(
                "Starting BGSAVE for SYNC with target: replicas sockets ({} replicas)",
                ids.len()
            );
            let srv2 = srv.clone();
            let b2 = batch.clone();
            let res = tokio::task::spawn_blocking(move || stream_snapshot(&srv2, &ids, &b2))
                .await
                .unwrap_or_else(|e| Err(e.to_string()));
            batch.progress.send_modify(|p| match res {
                Ok(()) => p.done = true,
                Err(e) => p.failed = Some(e),
            });
        });
    }
    batch
}

/// Snapshots for replicas being taken: INFO shows them as a BGSAVE in
/// progress, as redis-server's sync runs one.
static SYNC_SNAPSHOTS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

pub fn sync_snapshot_running() -> bool {
    SYNC_SNAPSHOTS.load(Ordering::SeqCst) > 0
}

/// Waits for the node's one snapshot at a time (a BGSAVE or a rewrite
/// may be running), unless `unwanted` says no replica waits any more, and
/// counts this one as a background save (INFO rdb_saves,
/// rdb_bgsave_in_progress), as Redis counts the RDB it makes for a sync.
/// [`end_sync_snapshot`] ends it.
pub(super) fn begin_sync_snapshot(srv: &Shared, unwanted: impl Fn() -> bool) -> Result<(), String> {
    let deadline = std::time::Instant::now() + Duration::from_secs(600);
    while srv.log.snapshot_busy.swap(true, Ordering::SeqCst) {
        if unwanted() {
            return Err("no replica waits for the snapshot".into());
        }
        if std::time::Instant::now() > deadline {
            return Err("another snapshot kept the node busy".into());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    Stats::add(&srv.stats.rdb_saves, 1);
    SYNC_SNAPSHOTS.fetch_add(1, Ordering::SeqCst);
    Ok(())
}

pub(super) fn end_sync_snapshot(srv: &Shared) {
    SYNC_SNAPSHOTS.fetch_sub(1, Ordering::SeqCst);
    srv.log.snapshot_busy.store(false, Ordering::SeqCst);
}

/// The stream's database after a snapshot's cut: it starts with a SELECT,
/// unless we pass on our own master's stream.
pub(super) fn stream_db_at_cut(srv: &Shared) -> u64 {
    if srv.repl.is_replica() {
        srv.repl.master_db.load(Ordering::Relaxed)
    } else {
        0
    }
}

/// A diskless batch's snapshot, written to its replicas as it is made.
fn stream_snapshot(srv: &Arc<Shared>, ids: &[u64], batch: &Batch) -> Result<(), String> {
    if let Err(e) = begin_sync_snapshot(srv, || batch.readers.lock().is_empty()) {
        if batch.readers.lock().is_empty() {
            log_last_replica_dropped();
        }
        return Err(e);
    }
    let now = crate::keyspace::now_ms();
    let stopped = std::cell::Cell::new(false);
    let mut out = PieceWriter {
        batch,
        buf: Vec::with_capacity(64 * 1024),
        last: std::time::Instant::now(),
        sizes: Vec::new(),
        freed: 0,
        held: 0,
        stopped: &stopped,
    };
    let (_, written) = crate::persistence::write_rdb_at_cut(
        srv,
        now,
        &mut out,
        false,
        || {
            let cut = open_stream_at_cut(srv, ids);
            batch.progress.send_modify(|p| p.cut = Some(cut.clone()));
            crate::persistence::rdb::file::ReplInfo {
                stream_db: stream_db_at_cut(srv),
                id: cut.1,
                offset: cut.0,
            }
        },
        |repl| Some(repl.clone()),
        || {
            if batch.readers.lock().is_empty() {
                stopped.set(true);
            }
            !stopped.get()
        },
    );
    // Logged before the snapshot counts as ended, as redis-server logs
    // before it reaps its child: whoever sees the save over finds the line.
    let mut dropped_logged = false;
    if batch.readers.lock().is_empty() {
        log_last_replica_dropped();
        dropped_logged = true;
    }
    end_sync_snapshot(srv);
    let res = std::io::Write::flush(&mut out)
        .map_err(|e| e.to_string())
        .and(written.map_err(|e| e.to_string()));
    // Worded as redis-server logs the end of its child's output.
    match batch.readers.lock().len() {
        0 if !dropped_logged => log_last_replica_dropped(),
        0 => {}
        up if res.is_ok() => {
            tracing::warn!("Diskless rdb transfer, done reading from pipe, {up} replicas still up.")
        }
        _ => {}
    }
    res
}

fn log_last_replica_dropped() {
    tracing::warn!("Diskless rdb transfer, last replica dropped, killing fork child.");
}

/// At a snapshot's cut (every slot locked): makes sure this node's writes
/// reach the replication stream from here on, registers `ids` as readers
/// at the stream's end, and returns (that offset, replication id).
pub fn open_stream_at_cut(srv: &Shared, ids: &[u64]) -> (u64, String) {
    let fresh = !srv.log.with_buf(|b| b.repl.is_active());
    let mut st = srv.repl.state.lock();
    if fresh && !srv.repl.is_replica() {
        // A backlog made from scratch has no valid past: as Redis, a
        // new replication id, and no previous one.
        st.replid = super::new_replid();
        st.replid2 = super::NO_REPLID.to_string();
        st.second_offset = -1;
    }
    let replid = st.replid.clone();
    drop(st);
    // From here on every write reaches the stream (a replica passes
    // its master's stream on instead).
    if !srv.repl.is_replica() {
        srv.log.set_repl(true);
    }
    let pos = srv.log.with_buf(|b| {
        b.repl.activate();
        // The stream after a snapshot starts with a SELECT.
        b.repl_last_db = None;
        let pos = b.repl.end();
        for id in ids {
            b.repl.set_reader(*id, pos);
        }
        pos
    });
    // A replica that left meanwhile must not hold the backlog (its
    // own clean-up may have run before its reader was set).
    let gone: Vec<u64> = {
        let st = srv.repl.state.lock();
        ids.iter()
            .filter(|id| !st.replicas.contains_key(id))
            .copied()
            .collect()
    };
    if !gone.is_empty() {
        srv.log
            .with_buf(|b| gone.iter().for_each(|id| b.repl.remove_reader(*id)));
    }
    // Slots being imported here are hidden from the start of the stream.
    srv.slotmig.announce_imports(srv);
    (pos, replid)
}

/// `client-output-buffer-limit`'s replica class, applied to the stream a
/// replica has not been sent yet, as Redis applies it to the replica's
/// share of the replication buffer. A hard limit below
/// `repl-backlog-size` counts as that size, as in Redis: a partial resync
/// would otherwise succeed only for the replica to be cut off.
#[derive(Default)]
struct ReplicaLimit {
    soft_since: Option<std::time::Instant>,
}

impl ReplicaLimit {
    fn over(&mut self, lag: u64, backlog_size: u64) -> bool {
        let (hard, soft, secs) =
            crate::server::outbox::limits_of(crate::server::outbox::Class::Replica);
        if hard > 0 && lag >= hard.max(backlog_size) {
            return true;
        }
        if soft > 0 && lag >= soft {
            let since = *self.soft_since.get_or_insert_with(std::time::Instant::now);
            return since.elapsed() > Duration::from_secs(secs);
        }
        self.soft_since = None;
        false
    }
}

/// Waits for `fut` (a snapshot being made) while the stream the replica
/// will read after it grows: over its buffer limit, the replica is let
/// go, as Redis closes a replica waiting for its BGSAVE. With `keepalive`,
/// a newline goes to the replica every second meanwhile, as Redis sends
/// one to a replica waiting for its snapshot to start (or, with a disk
/// target, to end), so its `repl-timeout` does not expire.
async fn within_limit<T>(
    srv: &Shared,
    id: u64,
    limit: &mut ReplicaLimit,
    mut keepalive: Option<&mut WriteHalf<'_>>,
    fut: impl std::future::Future<Output = T>,
) -> std::io::Result<T> {
    tokio::pin!(fut);
    let mut last_newline = tokio::time::Instant::now();
    loop {
        tokio::select! {
            out = &mut fut => return Ok(out),
            _ = tokio::time::sleep(Duration::from_millis(100)) => {
                let (lag, size) = srv.log.with_buf(|b| (b.repl.reader_lag(id), b.repl.size()));
                if limit.over(lag, size) {
                    tracing::warn!(
                        "Client id={id} (replica) closed for overcoming of output buffer limits."
                    );
                    return Err(std::io::Error::other("output buffer limit"));
                }
                if let Some(wr) = keepalive.as_deref_mut() {
                    if last_newline.elapsed() >= Duration::from_secs(1) {
                        last_newline = tokio::time::Instant::now();
                        wr.write_all(b"\n").await?;
                    }
                }
            }
        }
    }
}

/// Sends the stream from `pos` as it grows.
async fn stream(
    srv: &Arc<Shared>,
    wr: &mut WriteHalf<'_>,
    id: u64,
    mut pos: u64,
) -> std::io::Result<()> {
    let mut send = SendBuf::new();
    let buf = &mut send.0;
    let mut limit = ReplicaLimit::default();
    let info = srv.clients.lock().get(&id).cloned();
    loop {
        buf.clear();
        // Arm the wake-up before looking, so an append in between is seen.
        let notified = srv.log.repl_notify.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        srv.log.repl_waiting.store(true, Ordering::Release);
        let (got, lag, size, killed) = srv.log.with_buf(|b| {
            let got = b.repl.read(pos, SEND_CHUNK, buf);
            // Looked at under the stream's lock: CLIENT KILL marks the
            // replica before anything after it is appended, so nothing
            // written after the kill goes out (redis-server frees the
            // replica at once).
            let killed = info
                .as_ref()
                .is_some_and(|i| i.killed.load(Ordering::SeqCst));
            (got, b.repl.lag_of(pos), b.repl.size(), killed)
        });
        if killed {
            return Ok(());
        }
        if limit.over(lag, size) {
            tracing::warn!(
                "Client id={id} (replica) closed for overcoming of output buffer limits."
            );
            return Ok(());
        }
        match got {
            Err(ReadError::Gone) => {
                return Err(std::io::Error::other("the stream moved past this replica"));
            }
            Ok(0) => {
                // Wait for more (bounded, so a missed wake-up costs at
                // most a moment).
                let _ = tokio::time::timeout(Duration::from_millis(100), notified).await;
            }
            Ok(n) => {
                wr.write_all(buf).await?;
                Stats::add(&srv.stats.net_repl_output_bytes, n as u64);
                pos += n as u64;
                srv.log.with_buf(|b| b.repl.set_reader(id, pos));
            }
        }
    }
}

/// Reads what the replica sends: `REPLCONF ACK <offset> [FACK <offset>]`,
/// and anything else it should not send (see [`on_replica_command`]).
async fn read_acks(
    srv: &Arc<Shared>,
    rd: &mut ReadHalf<'_>,
    client: &mut Client,
    mut rbuf: BytesMut,
) -> std::io::Result<()> {
    let mut ranges = Vec::new();
    let mut scratch = Vec::new();
    let limits = crate::resp::Limits {
        max_bulk_len: 1 << 20,
        authenticated: true,
    };
    loop {
        loop {
            match crate::resp::parse_request(&rbuf, &limits, &mut ranges, &mut scratch) {
                Ok(None) => break,
                Ok(Some(crate::resp::Parsed::Empty { consumed })) => rbuf.advance(consumed),
                Ok(Some(crate::resp::Parsed::Multibulk { consumed })) => {
                    let args = crate::command::Args::new(&rbuf[..consumed], &ranges);
                    on_replica_command(srv, client, &args)?;
                    rbuf.advance(consumed);
                }
                Ok(Some(crate::resp::Parsed::Inline { consumed })) => {
                    let args = crate::command::Args::new(&scratch, &ranges);
                    on_replica_command(srv, client, &args)?;
                    rbuf.advance(consumed);
                }
                Err(_) => return Ok(()),
            }
        }
        if rd.read_buf(&mut rbuf).await? == 0 {
            return Ok(());
        }
    }
}

/// A command on a replica's link. `REPLCONF ACK` (and `GETACK`) answer
/// nothing; anything else runs as Redis runs it for a replica client
/// (keyspace commands refused), and a reply closes the link: the link
/// carries the stream, never replies, so redis-server logs the misuse and
/// drops the replica.
fn on_replica_command(
    srv: &Arc<Shared>,
    client: &mut Client,
    args: &crate::command::Args,
) -> std::io::Result<()> {
    let eq = |i: usize, w: &str| args.get(i).eq_ignore_ascii_case(w.as_bytes());
    if args.len() >= 2 && eq(0, "REPLCONF") && (eq(1, "ACK") || eq(1, "GETACK")) {
        if args.len() >= 3 && eq(1, "ACK") {
            if let Some(off) = crate::resp::parse_i64(args.get(2)) {
                let mut st = srv.repl.state.lock();
                if let Some(r) = st.replicas.get_mut(&client.id) {
                    r.ack_offset = r.ack_offset.max(off.max(0) as u64);
                    r.ack_ms = crate::keyspace::now_ms();
                    r.acks += 1;
                }
                drop(st);
                srv.repl.acked.notify_waiters();
            }
        }
        return Ok(());
    }
    let mut out = Vec::new();
    let mut actions = Vec::new();
    let now = crate::keyspace::now_ms();
    let cmd = crate::server::conn::execute(srv, client, &mut out, &mut actions, args, now);
    if out.is_empty() {
        return Ok(());
    }
    // A refused command's name too (`execute` names only what ran).
    let name = cmd.or_else(|| {
        use crate::command::table::{lookup, lookup_sub};
        let c = lookup(args.get(0))?;
        if c.subs.is_empty() || args.len() < 2 {
            Some(c)
        } else {
            lookup_sub(c, args.get(1))
        }
    });
    let name = name.map_or("<unknown>", |c| c.full_name());
    let info = crate::command::connection::client_line_of(srv, client, args);
    tracing::warn!("Replica generated a reply to command '{name}', disconnecting it: {info}");
    if out.first() == Some(&b'-') {
        use crate::server::propagation::{error_reply, Source};
        error_reply(srv, Source::Replica, &out, name);
    }
    Err(std::io::Error::other(
        "the replica sent a command with a reply",
    ))
}

/// `repl-backlog-ttl`: a master without replicas for that many seconds
/// frees its backlog and starts a new history (as Redis: a replica that
/// comes back later cannot continue a history nobody kept).
fn free_idle_backlog(srv: &Shared, now_ms: i64) {
    let since = srv.repl.no_replicas_since.load(Ordering::Relaxed);
    if since == 0 {
        srv.repl.no_replicas_since.store(now_ms, Ordering::Relaxed);
        return;
    }
    let ttl = srv.config.read().int("repl-backlog-ttl");
    if ttl <= 0 || now_ms - since < ttl * 1000 {
        return;
    }
    let freed = srv.log.with_buf(|b| {
        let active = b.repl.is_active();
        if active {
            b.repl.deactivate();
        }
        active
    });
    if freed {
        super::new_history(srv);
        tracing::info!("Replication backlog freed after {ttl} seconds without connected replicas.");
    }
}

/// The master's share of the server cron: a PING into the stream every
/// `repl-ping-replica-period` seconds while replicas are connected, so
/// they can tell a quiet master from a dead link.
pub fn cron(srv: &Shared, now_ms: i64) {
    if srv.repl.is_replica() {
        srv.repl.no_replicas_since.store(0, Ordering::Relaxed);
        return;
    }
    if srv.repl.state.lock().replicas.is_empty() {
        free_idle_backlog(srv, now_ms);
        return;
    }
    srv.repl.no_replicas_since.store(0, Ordering::Relaxed);
    // Not while writes are paused (a manual failover waits for replicas
    // to reach an offset that must not move), as Redis.
    if srv.pause.kind() != crate::server::pause::OFF {
        return;
    }
    let period = srv.config.read().int("repl-ping-replica-period").max(1) * 1000;
    let last = srv.repl.last_ping_ms.load(Ordering::Relaxed);
    if last == 0 {
        // The period counts from the first replica, not from the epoch.
        srv.repl.last_ping_ms.store(now_ms, Ordering::Relaxed);
        return;
    }
    if now_ms - last < period {
        return;
    }
    srv.repl.last_ping_ms.store(now_ms, Ordering::Relaxed);
    let mut ping = Vec::new();
    crate::resp::parse::encode_command(&[b"PING".as_slice()], &mut ping);
    srv.log.append_repl_only(&ping);
}
