//! The replica side: the link to this node's master, with Redis's
//! handshake (`PING`, `AUTH`, `REPLCONF listening-port`, `REPLCONF capa eof
//! capa psync2`, `PSYNC <replid> <offset>`), the snapshot load after
//! `+FULLRESYNC`, and the stream applied command by command as its
//! master's client. What is applied is passed on byte for byte to this
//! node's own stream (its backlog and replicas), so offsets agree along a
//! chain. The link retries every second until `REPLICAOF NO ONE`.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::{LinkState, MasterLink};
use crate::resp::parse::encode_command;
use crate::server::stats::Stats;
use crate::server::Shared;

#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Protocol(String),
    /// REPLICAOF changed the master (or removed it).
    #[error("replication target changed")]
    Stale,
}

/// REPLICAOF host port: forget any previous master and start the link.
pub fn set_master(srv: &Arc<Shared>, host: String, port: u16) {
    let gen = {
        let mut st = srv.repl.state.lock();
        let gen = st.next_gen;
        st.next_gen += 1;
        st.master = Some(MasterLink {
            host,
            port,
            state: LinkState::Connect,
            last_io_ms: 0,
            down_since_ms: 0,
            sync_bytes: (-1, 0),
            gen,
        });
        gen
    };
    let was_replica = srv.repl.is_replica.swap(true, Ordering::SeqCst);
    if !was_replica {
        // Our own writes stop feeding the stream: from now on it is the
        // master's, passed on as received.
        srv.log.set_repl(false);
    }
    srv.ks.expiry.replica.store(true, Ordering::SeqCst);
    // Our replicas resync with us (partially, when they can).
    srv.repl.drop_replicas.notify_waiters();
    srv.repl.link_changed.notify_waiters();
    // A replica's OOM score, if oom-score-adj is on.
    let _ = crate::server::oom::apply(srv);
    let srv = srv.clone();
    tokio::spawn(async move { run(srv, gen).await });
}

/// REPLICAOF NO ONE: stop replicating and keep the data, as a master with
/// a new replication id (the old one stays valid as `replid2`).
pub fn unset_master(srv: &Arc<Shared>) {
    {
        let mut st = srv.repl.state.lock();
        if st.master.take().is_none() {
            return;
        }
    }
    srv.repl.is_replica.store(false, Ordering::SeqCst);
    srv.ks.expiry.replica.store(false, Ordering::SeqCst);
    let _ = crate::server::oom::apply(srv);
    let end = srv.log.with_buf(|b| {
        // Our own writes start with a SELECT.
        b.repl_last_db = None;
        b.repl.end()
    });
    srv.repl.shift_replid(end);
    if srv.log.with_buf(|b| b.repl.is_active()) {
        srv.log.set_repl(true);
    }
    // Replicas reconnect and continue under the new id.
    srv.repl.drop_replicas.notify_waiters();
    srv.repl.link_changed.notify_waiters();
}

fn current(srv: &Shared, gen: u64) -> Option<MasterLink> {
    srv.repl
        .state
        .lock()
        .master
        .clone()
        .filter(|m| m.gen == gen)
}

fn update(srv: &Shared, gen: u64, f: impl FnOnce(&mut MasterLink)) -> Result<(), LinkError> {
    let mut st = srv.repl.state.lock();
    match st.master.as_mut() {
        Some(m) if m.gen == gen => {
            f(m);
            Ok(())
        }
        _ => Err(LinkError::Stale),
    }
}

async fn run(srv: Arc<Shared>, gen: u64) {
    // The master connection's database survives reconnections (a partial
    // resync continues the stream where it was), and restarts (it is saved
    // with snapshots).
    let mut db = srv.repl.master_db.load(Ordering::Relaxed) as usize;
    loop {
        let Some(m) = current(&srv, gen) else {
            return;
        };
        tracing::info!("Connecting to MASTER {}:{}", m.host, m.port);
        match link(&srv, gen, &m.host, m.port, &mut db).await {
            Err(LinkError::Stale) => return,
            Err(e) => tracing::warn!("Error condition on socket for SYNC: {e}"),
            Ok(()) => {}
        }
        let now = crate::keyspace::now_ms();
        if update(&srv, gen, |m| {
            if m.state == LinkState::Connected {
                m.down_since_ms = now;
            }
            m.state = LinkState::Connect;
        })
        .is_err()
        {
            return;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Bytes read from the master, with line and bulk helpers.
struct Wire {
    sock: TcpStream,
    buf: BytesMut,
    timeout: Duration,
    /// Where the bytes read count (INFO total_net_repl_input_bytes).
    srv: Arc<Shared>,
    /// The link this connection serves.
    gen: u64,
}

/// Completes once REPLICAOF (another master, or NO ONE) has replaced the
/// link `gen`: a link waiting for its master's reply or snapshot lets go
/// of the connection at once, as Redis cancels the handshake or transfer,
/// so the master knows at once that this replica no longer waits.
async fn link_gone(srv: &Shared, gen: u64) {
    loop {
        let changed = srv.repl.link_changed.notified();
        tokio::pin!(changed);
        changed.as_mut().enable();
        if current(srv, gen).is_none() {
            return;
        }
        changed.await;
    }
}

impl Wire {
    async fn fill(&mut self) -> Result<(), LinkError> {
        let srv = self.srv.clone();
        let read = tokio::time::timeout(self.timeout, self.sock.read_buf(&mut self.buf));
        let n = tokio::select! {
            r = read => r.map_err(|_| LinkError::Protocol("Timeout connecting to the MASTER...".into()))??,
            _ = link_gone(&srv, self.gen) => return Err(LinkError::Stale),
        };
        if n == 0 {
            return Err(LinkError::Protocol(
                "the master closed the connection".into(),
            ));
        }
        Stats::add(&self.srv.stats.net_repl_input_bytes, n as u64);
        Ok(())
    }

    /// One reply line, skipping the bare newlines masters send as
    /// keepalives.
    async fn line(&mut self) -> Result<String, LinkError> {
        loop {
            if let Some(i) = self.buf.iter().position(|&b| b == b'\n') {
                let line = String::from_utf8_lossy(&self.buf[..i])
                    .trim_end_matches('\r')
                    .to_string();
                self.buf.advance(i + 1);
                if line.is_empty() {
                    continue;
                }
                return Ok(line);
            }
            if self.buf.len() > 64 * 1024 {
                return Err(LinkError::Protocol("reply line too long".into()));
            }
            self.fill().await?;
        }
    }

    async fn command(&mut self, args: &[&[u8]]) -> Result<String, LinkError> {
        let mut out = Vec::new();
        encode_command(args, &mut out);
        self.sock.write_all(&out).await?;
        self.line().await
    }
}

/// One connection to the master: handshake, sync, then the stream until
/// the link breaks.
async fn link(
    srv: &Arc<Shared>,
    gen: u64,
    host: &str,
    port: u16,
    db: &mut usize,
) -> Result<(), LinkError> {
    let (timeout, source) = {
        let c = srv.config.read();
        (
            Duration::from_secs(c.int("repl-timeout").max(1) as u64),
            c.value("bind-source-addr").to_string(),
        )
    };
    update(srv, gen, |m| m.state = LinkState::Connecting)?;
    let sock = tokio::time::timeout(timeout, crate::net::connect(host, port, &source))
        .await
        .map_err(|_| LinkError::Protocol("Timeout connecting to the MASTER...".into()))??;
    let _ = sock.set_nodelay(true);
    tracing::info!("MASTER <-> REPLICA sync started");
    let mut w = Wire {
        sock,
        buf: BytesMut::with_capacity(16 * 1024),
        timeout,
        srv: srv.clone(),
        gen,
    };
    update(srv, gen, |m| m.state = LinkState::Handshake)?;
    handshake(srv, &mut w).await?;
    // What we have: our history's id and the next byte we need.
    let (replid, next) = {
        let st = srv.repl.state.lock();
        (st.replid.clone(), srv.log.with_buf(|b| b.repl.end()) + 1)
    };
    tracing::info!("Trying a partial resynchronization (request {replid}:{next}).");
    let next_s = next.to_string();
    // A master handing over (FAILOVER) asks its target to take over.
    let handover = super::failover::handing_over(srv);
    let mut psync: Vec<&[u8]> = vec![b"PSYNC", replid.as_bytes(), next_s.as_bytes()];
    if handover {
        psync.push(b"FAILOVER");
    }
    let reply = w.command(&psync).await?;
    if handover {
        if reply.starts_with("+FULLRESYNC") || reply.starts_with("+CONTINUE") {
            super::failover::finished(srv);
        } else {
            super::failover::abort(srv, "Failover target rejected psync request");
            return Err(LinkError::Stale);
        }
    }
    if let Some(rest) = reply.strip_prefix("+FULLRESYNC ") {
        let mut it = rest.split(' ');
        let (Some(id), Some(off)) = (it.next(), it.next().and_then(|o| o.parse::<u64>().ok()))
        else {
            return Err(LinkError::Protocol(format!(
                "bad FULLRESYNC reply: {reply}"
            )));
        };
        tracing::info!("Full resync from master: {id}:{off}");
        full_sync(srv, gen, &mut w, id, off).await?;
        *db = 0;
    } else if let Some(rest) = reply.strip_prefix("+CONTINUE") {
        let new_id = rest.trim();
        tracing::info!("Successful partial resynchronization with master.");
        if !new_id.is_empty() && new_id != replid {
            // The master's history goes on under a new id (it was
            // promoted): ours becomes the previous one.
            {
                let mut st = srv.repl.state.lock();
                st.replid2 = std::mem::replace(&mut st.replid, new_id.to_string());
                st.second_offset = next as i64;
            }
            tracing::info!("Master replication ID changed to {new_id}");
            // Our replicas must learn the new id: they reconnect and
            // continue with us under it, as Redis disconnects them here.
            drop_replicas_before_the_stream(srv).await;
        }
        srv.log.with_buf(|b| b.repl.activate());
    } else if reply.starts_with("-NOMASTERLINK") || reply.starts_with("-LOADING") {
        return Err(LinkError::Protocol(format!(
            "Master is currently unable to PSYNC but should be in the future: {reply}"
        )));
    } else {
        return Err(LinkError::Protocol(format!(
            "Unexpected reply to PSYNC from master: {reply}"
        )));
    }
    let now = crate::keyspace::now_ms();
    update(srv, gen, |m| {
        m.state = LinkState::Connected;
        m.last_io_ms = now;
    })?;
    tracing::info!(
        "MASTER <-> REPLICA sync: Master accepted a Partial Resynchronization or finished loading."
    );
    apply_stream(srv, gen, &mut w, db).await
}

/// Drops our replicas and waits (bounded) until they are gone: none may
/// be sent a byte of the stream that follows under the old id, or it
/// could not continue under the new one (its offset would be past where
/// the old history ends).
async fn drop_replicas_before_the_stream(srv: &Shared) {
    let ids: Vec<u64> = srv.repl.state.lock().replicas.keys().copied().collect();
    srv.repl.drop_replicas.notify_waiters();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
    while tokio::time::Instant::now() < deadline {
        let left = {
            let st = srv.repl.state.lock();
            ids.iter().any(|id| st.replicas.contains_key(id))
        };
        if !left {
            return;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

async fn handshake(srv: &Shared, w: &mut Wire) -> Result<(), LinkError> {
    let pong = w.command(&[b"PING"]).await?;
    if !(pong.starts_with('+')
        || pong.starts_with("-NOAUTH")
        || pong.starts_with("-NOPERM")
        || pong.starts_with("-ERR operation not permitted"))
    {
        return Err(LinkError::Protocol(format!(
            "Error reply to PING from master: '{pong}'"
        )));
    }
    let (auth, user, port, ip) = {
        let c = srv.config.read();
        let port = match c.int("replica-announce-port") {
            0 => srv.actual_port.load(Ordering::Relaxed) as i64,
            p => p,
        };
        (
            c.value("masterauth").to_string(),
            c.value("masteruser").to_string(),
            port,
            c.value("replica-announce-ip").to_string(),
        )
    };
    if !auth.is_empty() {
        let r = if user.is_empty() {
            w.command(&[b"AUTH", auth.as_bytes()]).await?
        } else {
            w.command(&[b"AUTH", user.as_bytes(), auth.as_bytes()])
                .await?
        };
        if r.starts_with('-') {
            return Err(LinkError::Protocol(format!(
                "Unable to AUTH to MASTER: {r}"
            )));
        }
    }
    let port = port.to_string();
    let r = w
        .command(&[b"REPLCONF", b"listening-port", port.as_bytes()])
        .await?;
    if r.starts_with('-') {
        tracing::info!("(Non critical) Master does not understand REPLCONF listening-port: {r}");
    }
    if !ip.is_empty() {
        let r = w
            .command(&[b"REPLCONF", b"ip-address", ip.as_bytes()])
            .await?;
        if r.starts_with('-') {
            tracing::info!("(Non critical) Master does not understand REPLCONF ip-address: {r}");
        }
    }
    let r = w
        .command(&[b"REPLCONF", b"capa", b"eof", b"capa", b"psync2"])
        .await?;
    if r.starts_with('-') {
        tracing::info!("(Non critical) Master does not understand REPLCONF capa: {r}");
    }
    Ok(())
}

/// How a full sync's snapshot replaces our data (`repl-diskless-load`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Load {
    /// `disabled` (or `on-empty-db` with keys): the payload is received
    /// whole while the old data is still served (Redis writes it to disk),
    /// then the old data is flushed and the new loaded under `-LOADING`.
    AfterTransfer,
    /// `on-empty-db` with no key: loaded "from the socket", so `-LOADING`
    /// from the first byte.
    Direct,
    /// `swapdb`: loaded into a side keyspace and swapped in at the end; if
    /// the sync fails the old data stays. When the master's history is the
    /// one we hold (Redis's async loading) the old data is served all the
    /// while; otherwise clients get `-LOADING` from the first byte.
    Swap { serve_old: bool },
}

impl Load {
    fn choose(srv: &Shared, master_replid: &str) -> Load {
        let mode = srv.config.read().value("repl-diskless-load").to_string();
        match mode.as_str() {
            "swapdb" => Load::Swap {
                serve_old: srv.repl.state.lock().replid == master_replid,
            },
            "on-empty-db" if srv.ks.existing().all(|db| db.size() == 0) => Load::Direct,
            _ => Load::AfterTransfer,
        }
    }
}

/// Raises `loading` or `async_loading` for as long as it lives, so every
/// way out of a sync (an error included) lowers it.
struct LoadingFlag<'a>(&'a std::sync::atomic::AtomicBool);

impl<'a> LoadingFlag<'a> {
    fn raise(flag: &'a std::sync::atomic::AtomicBool) -> Self {
        flag.store(true, Ordering::SeqCst);
        LoadingFlag(flag)
    }
}

impl Drop for LoadingFlag<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::SeqCst);
    }
}

/// Reads the snapshot (`$<len>` or diskless `$EOF:<mark>`) and puts it in
/// place of our data as `repl-diskless-load` says ([`Load`]).
async fn full_sync(
    srv: &Arc<Shared>,
    gen: u64,
    w: &mut Wire,
    replid: &str,
    offset: u64,
) -> Result<(), LinkError> {
    update(srv, gen, |m| m.state = LinkState::Transfer)?;
    let mode = Load::choose(srv, replid);
    let header = w.line().await?;
    let Some(spec) = header.strip_prefix('$') else {
        return Err(LinkError::Protocol(format!(
            "Bad protocol from MASTER, the first byte is not '$' (we received '{header}'), are you sure the host and port are right?"
        )));
    };
    let repl = &srv.repl;
    let mut flag = match mode {
        Load::AfterTransfer => None,
        Load::Swap { serve_old: true } => Some(LoadingFlag::raise(&repl.async_loading)),
        Load::Direct | Load::Swap { serve_old: false } => Some(LoadingFlag::raise(&repl.loading)),
    };
    let target = if mode == Load::AfterTransfer {
        "to disk"
    } else {
        "to parser"
    };
    // Loaded as it arrives when it goes "to parser": the payload is never
    // held whole, and the load keeps pace with the transfer (a slow load
    // slows the master's sending, as Redis's reading from the socket does).
    let mut sink = match mode {
        Load::AfterTransfer => Sink::Collect(Vec::new()),
        _ => {
            // The size, when the master sent one (not with `$EOF:`).
            crate::persistence::begin_load(spec.parse().unwrap_or(0));
            let (tx, rx) = tokio::sync::mpsc::channel::<Piece>(8);
            let srv2 = srv.clone();
            let job = tokio::task::spawn_blocking(move || match mode {
                Load::Swap { .. } => load_aside_and_swap(&srv2, rx),
                _ => load_in_place(&srv2, Pieces::Link(rx)),
            });
            Sink::Stream { tx, job }
        }
    };
    // Whatever ends the transfer early, a loader on its thread finishes
    // (failing) before the next sync may start another.
    let read = match read_payload(srv, gen, w, spec, &header, target, &mut sink).await {
        // The link may have been replaced while the payload came in.
        Ok(()) => current(srv, gen).map(|_| ()).ok_or(LinkError::Stale),
        Err(e) => Err(e),
    };
    if let Err(e) = read {
        if let Sink::Stream { tx, job } = sink {
            drop(tx);
            let _ = job.await;
        }
        return Err(e);
    }
    let loaded = match sink {
        Sink::Collect(data) => {
            if flag.is_none() {
                flag = Some(LoadingFlag::raise(&repl.loading));
            }
            let srv2 = srv.clone();
            crate::persistence::begin_load(data.len() as u64);
            tokio::task::spawn_blocking(move || {
                keep_on_disk(&srv2, &data)?;
                let r = load_in_place(&srv2, whole(data));
                drop_sync_file(&srv2);
                r
            })
            .await
        }
        Sink::Stream { tx, job } => {
            // Told the payload is whole; a loader that stopped early
            // (a bad payload) has its error in `job`.
            let _ = tx.send(Piece::End).await;
            job.await
        }
    }
    .map_err(|e| LinkError::Protocol(e.to_string()))?;
    let keys = loaded.map_err(LinkError::Protocol)?;
    {
        let mut st = repl.state.lock();
        st.replid = replid.to_string();
        st.replid2 = super::NO_REPLID.to_string();
        st.second_offset = -1;
    }
    srv.log.with_buf(|b| {
        b.repl.activate();
        b.repl.reset_to(offset);
        b.repl_last_db = None;
    });
    drop(flag);
    // Our replicas followed the history we just dropped.
    repl.drop_replicas.notify_waiters();
    tracing::info!("MASTER <-> REPLICA sync: Finished with success ({keys} keys loaded)");
    if srv.log.aof_on() {
        // The AOF must describe the data we now hold.
        if let Err(e) = crate::persistence::aof::start_rewrite(srv) {
            tracing::warn!("Background AOF rewrite after the sync failed to start: {e}");
        }
    }
    Ok(())
}

/// Reads the snapshot's bytes into `sink`: `$EOF:<mark>` (diskless, up
/// to the mark) or `$<len>`.
async fn read_payload(
    srv: &Arc<Shared>,
    gen: u64,
    w: &mut Wire,
    spec: &str,
    header: &str,
    target: &str,
    sink: &mut Sink,
) -> Result<(), LinkError> {
    let mut got: u64 = 0;
    if let Some(mark) = spec.strip_prefix("EOF:") {
        let mark = mark.as_bytes().to_vec();
        if mark.len() != 40 {
            return Err(LinkError::Protocol("bad EOF mark".into()));
        }
        tracing::info!(
            "MASTER <-> REPLICA sync: receiving streamed RDB from master with EOF {target}"
        );
        loop {
            // The mark ends the payload; what follows it (a master that
            // does not wait for our first ACK) is already the stream.
            if let Some(p) = memchr::memmem::find(&w.buf, &mark) {
                sink.put(&w.buf[..p]).await?;
                w.buf.advance(p + 40);
                break;
            }
            // All but what may be the start of the mark goes on.
            let n = w.buf.len().saturating_sub(39);
            sink.put(&w.buf[..n]).await?;
            w.buf.advance(n);
            got += n as u64;
            update(srv, gen, |m| {
                m.sync_bytes = (-1, got);
                m.last_io_ms = crate::keyspace::now_ms();
            })?;
            w.fill().await?;
        }
    } else {
        let len: usize = spec
            .parse()
            .map_err(|_| LinkError::Protocol(format!("bad bulk length from master: {header}")))?;
        tracing::info!("MASTER <-> REPLICA sync: receiving {len} bytes from master {target}");
        let mut left = len;
        loop {
            let n = left.min(w.buf.len());
            sink.put(&w.buf[..n]).await?;
            w.buf.advance(n);
            left -= n;
            got += n as u64;
            if left == 0 {
                break;
            }
            update(srv, gen, |m| {
                m.sync_bytes = (len as i64, got);
                m.last_io_ms = crate::keyspace::now_ms();
            })?;
            w.fill().await?;
        }
    }
    Ok(())
}

/// A sync loaded from disk (`repl-diskless-load disabled`, or
/// `on-empty-db` with keys) keeps the master's snapshot as our RDB file,
/// as Redis's replica renames it into place before loading it: a restart
/// loads it and continues the master's history partially.
fn keep_on_disk(srv: &Shared, data: &[u8]) -> Result<(), String> {
    let path = crate::persistence::rdb_path(srv);
    // Handed to the disk as it is written, whatever the settings, as
    // Redis's replica does with the file it receives.
    let fill =
        |w: &mut crate::persistence::savefile::SaveWriter| std::io::Write::write_all(w, data);
    crate::persistence::aof::write_atomic_with(&path, true, fill).map_err(|e| {
        format!(
            "Failed trying to write the temp DB into {} in MASTER <-> REPLICA synchronization: {e}",
            path.display()
        )
    })
}

/// rdb-del-sync-files: a replica without persistence does not keep the
/// file a sync left (Redis removes it once loaded).
fn drop_sync_file(srv: &Shared) {
    if crate::persistence::sync_files_unwanted(srv) {
        tracing::info!(
            "Removing the RDB file obtained from the master. This replica has persistence disabled"
        );
        let _ = std::fs::remove_file(crate::persistence::rdb_path(srv));
    }
}

fn load_error(e: impl std::fmt::Display) -> String {
    format!("Failed trying to load the MASTER synchronization DB from socket: {e}")
}

/// Empties every database and loads the RDB as its pieces come, keys
/// past their TTL included (the master's DELs will remove them). A load
/// that fails leaves no half of the master's data: the databases are
/// emptied again, as Redis does.
fn load_in_place(srv: &Shared, pieces: Pieces) -> Result<usize, String> {
    tracing::info!("MASTER <-> REPLICA sync: Flushing old data");
    let was = srv.log.suspend();
    let lazy = srv.config.read().flag("replica-lazy-flush");
    flush_all(srv, lazy);
    srv.repl.own_expires.clear();
    tracing::info!("MASTER <-> REPLICA sync: Loading DB in memory");
    let r = load_pieces(&srv.ks, pieces);
    if r.is_err() {
        flush_all(srv, true);
    }
    srv.log.resume(was);
    let loaded = r?;
    install_functions(srv, &loaded.functions)?;
    Ok(loaded.keys)
}

/// Empties every database (`lazy`: the old data is freed in the
/// background, replica-lazy-flush).
fn flush_all(srv: &Shared, lazy: bool) {
    let now = crate::keyspace::now_ms();
    for db in srv.ks.existing() {
        for s in 0..crate::keyspace::SLOTS as u16 {
            if db.slot_keys(s) > 0 {
                db.lock_slot(s, now).clear(lazy);
            }
        }
    }
    crate::server::tracking::flushed(srv);
}

/// A piece of the master's snapshot, or word that it is whole.
enum Piece {
    Data(Vec<u8>),
    End,
}

/// Where the snapshot's pieces go: kept whole (loaded after the
/// transfer, from disk in Redis), or to a loader on its own thread.
enum Sink {
    Collect(Vec<u8>),
    Stream {
        tx: tokio::sync::mpsc::Sender<Piece>,
        job: tokio::task::JoinHandle<Result<usize, String>>,
    },
}

impl Sink {
    async fn put(&mut self, bytes: &[u8]) -> Result<(), LinkError> {
        if bytes.is_empty() {
            return Ok(());
        }
        match self {
            Sink::Collect(v) => v.extend_from_slice(bytes),
            // A loader that stopped (a bad payload) says why when the
            // transfer ends; the rest is read and dropped meanwhile.
            Sink::Stream { tx, .. } => {
                let _ = tx.send(Piece::Data(bytes.to_vec())).await;
            }
        }
        Ok(())
    }
}

/// The pieces a loader reads: from the link, or one whole payload.
enum Pieces {
    Link(tokio::sync::mpsc::Receiver<Piece>),
    Whole(Option<Vec<u8>>),
}

fn whole(data: Vec<u8>) -> Pieces {
    Pieces::Whole(Some(data))
}

impl Pieces {
    /// The next piece (blocking); None when the link ended before the
    /// payload did.
    fn next(&mut self) -> Option<Piece> {
        match self {
            Pieces::Link(rx) => rx.blocking_recv(),
            Pieces::Whole(d) => Some(d.take().map_or(Piece::End, Piece::Data)),
        }
    }
}

/// Loads pieces into `ks` until the payload ends.
fn load_pieces(
    ks: &crate::keyspace::Keyspace,
    mut pieces: Pieces,
) -> Result<crate::persistence::rdb::file::Loaded, String> {
    let mut l = crate::persistence::rdb::file::StreamLoader::new(ks, i64::MIN);
    loop {
        match pieces.next() {
            Some(Piece::Data(d)) => l.feed(&d).map_err(load_error)?,
            Some(Piece::End) => return l.finish().map_err(load_error),
            None => return Err(load_error("the transfer stopped before its end")),
        }
    }
}

/// The master's function libraries replace ours.
fn install_functions(srv: &Shared, codes: &[Vec<u8>]) -> Result<(), String> {
    srv.scripts
        .install_functions(codes)
        .map_err(|e| format!("Failed loading library: {e}"))
}

/// `swapdb`: loads the RDB into a keyspace of its own while clients keep
/// ours, then exchanges the two in one step; on a bad payload ours stays.
fn load_aside_and_swap(
    srv: &Shared,
    pieces: tokio::sync::mpsc::Receiver<Piece>,
) -> Result<usize, String> {
    tracing::info!("MASTER <-> REPLICA sync: Loading DB in memory");
    let side = crate::keyspace::Keyspace::new(
        srv.ks.count(),
        Arc::new(crate::persistence::effects::EffectLog::default()),
    );
    let loaded = match load_pieces(&side, Pieces::Link(pieces)) {
        Ok(l) => l,
        Err(e) => {
            tracing::info!("MASTER <-> REPLICA sync: Discarding temporary DB in background");
            return Err(e);
        }
    };
    let n = loaded.keys;
    install_functions(srv, &loaded.functions)?;
    tracing::info!("MASTER <-> REPLICA sync: Swapping active DB with loaded DB");
    srv.ks.swap_with(&side, crate::keyspace::now_ms());
    crate::server::tracking::flushed(srv);
    srv.repl.own_expires.clear();
    tracing::info!("MASTER <-> REPLICA sync: Discarding old DB in background");
    // Dropped on this blocking thread, away from the clients.
    drop(side);
    Ok(n)
}

/// Applies the master's stream: each command runs as the master's client
/// (its replies are dropped), then its bytes go to our own stream.
/// `REPLCONF GETACK` is answered; an ACK goes out every second.
async fn apply_stream(
    srv: &Arc<Shared>,
    gen: u64,
    w: &mut Wire,
    db: &mut usize,
) -> Result<(), LinkError> {
    let peer = w.sock.peer_addr()?;
    let local = w.sock.local_addr()?;
    let mut client = crate::server::conn::new_client(srv, peer.into(), local.into());
    client.is_master = true;
    client.authenticated = true;
    // The server's own client: no ACL user, nothing refused.
    client.set_acl_user(None);
    client
        .info
        .role
        .store(crate::server::client::role::MASTER, Ordering::Relaxed);
    client.db = *db;
    srv.clients.lock().insert(client.id, client.info.clone());
    let mut ranges = Vec::new();
    let mut scratch = Vec::new();
    let mut out = Vec::new();
    let mut actions = Vec::new();
    let mut ack = tokio::time::interval(Duration::from_secs(1));
    let limits = crate::resp::Limits {
        max_bulk_len: i64::MAX,
        authenticated: true,
    };
    // Bytes of a transaction from MULTI on: they are passed on, and
    // counted in our offset, only when it ends (as Redis counts them).
    let mut txn_raw: Vec<u8> = Vec::new();
    let result = loop {
        // Apply every complete command read so far.
        let mut pos = 0;
        let now = crate::keyspace::now_ms();
        let mut failed = None;
        loop {
            // While a script runs past busy-reply-threshold, the stream
            // waits in the buffer (reading goes on), as redis-server
            // keeps it for after the script rather than fail it with -BUSY.
            if srv.scripts.busy() {
                break;
            }
            let parsed =
                crate::resp::parse_request(&w.buf[pos..], &limits, &mut ranges, &mut scratch);
            let (consumed, inline) = match parsed {
                Ok(None) => break,
                Ok(Some(crate::resp::Parsed::Empty { consumed })) => (consumed, None),
                Ok(Some(crate::resp::Parsed::Multibulk { consumed })) => (consumed, Some(false)),
                Ok(Some(crate::resp::Parsed::Inline { consumed })) => (consumed, Some(true)),
                Err(e) => {
                    failed = Some(LinkError::Protocol(format!(
                        "protocol error from master: {e}"
                    )));
                    break;
                }
            };
            let raw = &w.buf[pos..pos + consumed];
            match inline {
                None => srv.log.append_repl_raw(raw),
                Some(inline) => {
                    let args = if inline {
                        crate::command::Args::new(&scratch, &ranges)
                    } else {
                        crate::command::Args::new(raw, &ranges)
                    };
                    if is_getack(&args) {
                        // Answered with the offset before it.
                        send_ack(&mut w.sock, srv.log.repl_offset()).await?;
                        srv.log.append_repl_raw(raw);
                    } else {
                        // A pause that holds writes holds the master's too,
                        // as redis-server postpones its master client's
                        // commands: reading goes on.
                        if held_by_pause(srv, &client, &args) {
                            break;
                        }
                        txn_raw.extend_from_slice(raw);
                        let starts_txn =
                            client.multi.is_none() && args.get(0).eq_ignore_ascii_case(b"MULTI");
                        let in_txn = client.multi.is_some() || starts_txn;
                        let ends_txn = args.get(0).eq_ignore_ascii_case(b"EXEC")
                            || args.get(0).eq_ignore_ascii_case(b"DISCARD");
                        if !in_txn || ends_txn {
                            crate::persistence::effects::begin_master_command(std::mem::take(
                                &mut txn_raw,
                            ));
                        }
                        crate::keyspace::set_applying_master_stream(true);
                        let cmd = crate::server::conn::execute(
                            srv,
                            &mut client,
                            &mut out,
                            &mut actions,
                            &args,
                            now,
                        );
                        crate::keyspace::set_applying_master_stream(false);
                        if out.first() == Some(&b'-') {
                            use crate::server::propagation::{error_reply, Source};
                            let name = cmd.map_or("<unknown>", |c| c.name);
                            error_reply(srv, Source::Master, &out, name);
                        }
                        srv.log.end_master_command();
                    }
                }
            }
            out.clear();
            actions.clear();
            pos += consumed;
        }
        w.buf.advance(pos);
        srv.repl
            .unapplied
            .store((w.buf.len() + txn_raw.len()) as u64, Ordering::Relaxed);
        *db = client.db;
        srv.repl
            .master_db
            .store(client.db as u64, Ordering::Relaxed);
        if let Some(e) = failed {
            break Err(e);
        }
        if current(srv, gen).is_none() {
            break Err(LinkError::Stale);
        }
        tokio::select! {
            r = w.sock.read_buf(&mut w.buf) => {
                match r {
                    Ok(0) => break Err(LinkError::Protocol("the master closed the connection".into())),
                    Ok(n) => {
                        Stats::add(&srv.stats.net_repl_input_bytes, n as u64);
                        srv.repl.unapplied.fetch_add(n as u64, Ordering::Relaxed);
                        let now = crate::keyspace::now_ms();
                        let _ = update(srv, gen, |m| m.last_io_ms = now);
                    }
                    Err(e) => break Err(e.into()),
                }
            }
            _ = ack.tick() => {
                let off = srv.log.repl_offset();
                if let Err(e) = send_ack(&mut w.sock, off).await {
                    break Err(e.into());
                }
                let silent = crate::keyspace::now_ms()
                    - current(srv, gen).map_or(0, |m| m.last_io_ms);
                if silent > w.timeout.as_millis() as i64 {
                    break Err(LinkError::Protocol("MASTER timeout: no data nor PING received...".into()));
                }
            }
            _ = srv.repl.link_changed.notified() => {}
            // What waited for a busy script or a pause is applied soon
            // after it ends.
            _ = tokio::time::sleep(Duration::from_millis(10)),
                if srv.scripts.busy() || srv.pause.kind() != crate::server::pause::OFF => {}
            _ = client.info.kill_notify.notified() => {
                if client.info.killed.load(Ordering::Relaxed) {
                    break Err(LinkError::Protocol("the master link was killed".into()));
                }
            }
        }
    };
    srv.clients.lock().remove(&client.id);
    crate::server::clientmem::forget(&client.info);
    srv.repl.unapplied.store(0, Ordering::Relaxed);
    result
}

/// Whether a CLIENT PAUSE in force holds this command of the master's.
fn held_by_pause(
    srv: &Shared,
    client: &crate::server::client::Client,
    args: &crate::command::Args,
) -> bool {
    if srv.pause.kind() == crate::server::pause::OFF {
        return false;
    }
    let Some(mut cmd) = crate::command::table::lookup_any(args.get(0)) else {
        return false;
    };
    if !cmd.subs.is_empty() && args.len() >= 2 {
        if let Some(sub) = crate::command::table::lookup_sub(cmd, args.get(1)) {
            cmd = sub;
        }
    }
    crate::server::pause::must_wait(srv, client, cmd, args).is_some()
}

fn is_getack(args: &crate::command::Args) -> bool {
    args.len() >= 2
        && args.get(0).eq_ignore_ascii_case(b"REPLCONF")
        && args.get(1).eq_ignore_ascii_case(b"GETACK")
}

async fn send_ack(sock: &mut TcpStream, offset: u64) -> std::io::Result<()> {
    let mut out = Vec::new();
    let off = offset.to_string();
    encode_command(&[b"REPLCONF".as_slice(), b"ACK", off.as_bytes()], &mut out);
    sock.write_all(&out).await
}
