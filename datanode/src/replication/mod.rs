//! Replication with Redis's protocol: this node's role, its replication
//! ids and offsets, the replicas it serves ([`master`]) and the link to
//! its own master ([`replica`]). The stream itself is the effect log's
//! (see [`backlog`]).

pub mod backlog;
pub mod disk_sync;
pub mod failover;
pub mod master;
pub mod own_expires;
pub mod replica;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use parking_lot::Mutex;

/// A replication id: 40 random hex characters.
pub fn new_replid() -> String {
    let mut b = [0u8; 20];
    rand::Rng::fill(&mut rand::rng(), &mut b[..]);
    b.iter().map(|x| format!("{x:02x}")).collect()
}

pub const NO_REPLID: &str = "0000000000000000000000000000000000000000";

/// A new replication id with no previous one (Redis's
/// changeReplicationId and clearReplicationId2): no replica can continue
/// an earlier history here.
pub fn new_history(srv: &crate::server::Shared) {
    let mut st = srv.repl.state.lock();
    st.replid = new_replid();
    st.replid2 = NO_REPLID.to_string();
    st.second_offset = -1;
}

/// The replica side's link to its master, as INFO and ROLE report it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkState {
    /// Not connected yet (or waiting to retry).
    Connect,
    Connecting,
    /// PING, AUTH, REPLCONF, PSYNC exchanged.
    Handshake,
    /// Receiving the snapshot.
    Transfer,
    Connected,
}

impl LinkState {
    /// ROLE's words.
    pub fn role_word(self) -> &'static str {
        match self {
            LinkState::Connect => "connect",
            LinkState::Connecting => "connecting",
            LinkState::Handshake => "handshake",
            LinkState::Transfer => "sync",
            LinkState::Connected => "connected",
        }
    }
}

/// What this node knows of its master (a replica).
#[derive(Clone, Debug)]
pub struct MasterLink {
    pub host: String,
    pub port: u16,
    pub state: LinkState,
    /// Last time bytes came from the master (ms).
    pub last_io_ms: i64,
    /// When the link went down (ms; 0 = never up).
    pub down_since_ms: i64,
    /// Snapshot transfer progress: (total, read) bytes.
    pub sync_bytes: (i64, u64),
    /// Changes each time a new master is set: a link task whose
    /// generation is stale stops.
    pub gen: u64,
}

/// A replica connected to this node.
#[derive(Clone, Debug)]
pub struct ReplicaInfo {
    pub ip: String,
    pub listening_port: u16,
    pub state: ReplicaState,
    /// Last offset it acknowledged.
    pub ack_offset: u64,
    /// When it last acknowledged (ms).
    pub ack_ms: i64,
    /// How many ACKs it sent on this connection.
    pub acks: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReplicaState {
    WaitBgsave,
    SendBulk,
    Online,
}

impl ReplicaState {
    pub fn word(self) -> &'static str {
        match self {
            ReplicaState::WaitBgsave => "wait_bgsave",
            ReplicaState::SendBulk => "send_bulk",
            ReplicaState::Online => "online",
        }
    }
}

/// Replication ids and roles; not on the command path (the flags it needs
/// there are atomics).
pub struct State {
    pub replid: String,
    pub replid2: String,
    /// First offset (Redis's numbering) up to which `replid2` is valid;
    /// -1 when there is none.
    pub second_offset: i64,
    pub master: Option<MasterLink>,
    /// Connected replicas by client id.
    pub replicas: BTreeMap<u64, ReplicaInfo>,
    pub next_gen: u64,
}

pub struct Replication {
    pub state: Mutex<State>,
    /// This node replicates a master (read-only, no expiry of its own).
    pub is_replica: AtomicBool,
    /// The database the master's stream is in (saved with a snapshot, so
    /// a restarted replica continues the stream in the right one).
    pub master_db: AtomicU64,
    /// Bytes read from our master and not applied yet (held while a
    /// script is busy or a pause holds writes): INFO's
    /// `slave_read_repl_offset` counts them.
    pub unapplied: AtomicU64,
    /// `replica-read-only`.
    pub read_only: AtomicBool,
    /// Loading the master's snapshot: commands without Redis's `loading`
    /// flag get `-LOADING`.
    pub loading: AtomicBool,
    /// Loading the master's snapshot aside while the old data is served
    /// (`repl-diskless-load swapdb` with the master's history ours): only
    /// commands Redis marks `no_async_loading` get `-LOADING`.
    pub async_loading: AtomicBool,
    /// `min-replicas-to-write` (0 = off).
    pub min_good: std::sync::atomic::AtomicI64,
    /// A replica acknowledged an offset (WAIT waits on it).
    pub acked: tokio::sync::Notify,
    /// When the master last put a PING into the stream.
    pub last_ping_ms: std::sync::atomic::AtomicI64,
    /// Connected replicas must reconnect (our role or history changed).
    pub drop_replicas: tokio::sync::Notify,
    /// The master link's target changed.
    pub link_changed: tokio::sync::Notify,
    /// When the last replica went away (ms; 0 while some are connected):
    /// `repl-backlog-ttl` counts from here.
    pub no_replicas_since: std::sync::atomic::AtomicI64,
    /// A FAILOVER in progress (standalone).
    pub failover: Mutex<Option<failover::Failover>>,
    /// A writable replica's own keys with a TTL, which it expires itself.
    pub own_expires: own_expires::OwnExpires,
    /// The diskless snapshot still taking replicas, if any.
    pub pending_batch: Mutex<Option<std::sync::Arc<master::Batch>>>,
    /// The disk snapshot replicas join, if any.
    pub disk_batch: Mutex<Option<std::sync::Arc<disk_sync::DiskBatch>>>,
}

impl Default for Replication {
    fn default() -> Self {
        Replication {
            state: Mutex::new(State {
                replid: new_replid(),
                replid2: NO_REPLID.to_string(),
                second_offset: -1,
                master: None,
                replicas: BTreeMap::new(),
                next_gen: 1,
            }),
            is_replica: AtomicBool::new(false),
            master_db: AtomicU64::new(0),
            unapplied: AtomicU64::new(0),
            read_only: AtomicBool::new(true),
            loading: AtomicBool::new(false),
            async_loading: AtomicBool::new(false),
            min_good: Default::default(),
            acked: tokio::sync::Notify::new(),
            last_ping_ms: Default::default(),
            drop_replicas: tokio::sync::Notify::new(),
            link_changed: tokio::sync::Notify::new(),
            no_replicas_since: Default::default(),
            failover: Mutex::new(None),
            own_expires: Default::default(),
            pending_batch: Mutex::new(None),
            disk_batch: Mutex::new(None),
        }
    }
}

impl Replication {
    pub fn is_replica(&self) -> bool {
        self.is_replica.load(Ordering::Relaxed)
    }

    /// The master this node follows: (host, port).
    pub fn master_addr(&self) -> Option<(String, u16)> {
        self.state
            .lock()
            .master
            .as_ref()
            .map(|m| (m.host.clone(), m.port))
    }

    /// Becoming a master (REPLICAOF NO ONE, a failover): the old history
    /// stays reachable under `replid2` up to `offset`, so replicas that
    /// followed the same master can continue partially with us.
    pub fn shift_replid(&self, offset: u64) {
        let mut st = self.state.lock();
        st.replid2 = std::mem::replace(&mut st.replid, new_replid());
        st.second_offset = offset as i64 + 1;
        tracing::info!(
            "Setting secondary replication ID to {}, valid up to offset: {}. New replication ID is {}",
            st.replid2,
            st.second_offset,
            st.replid
        );
    }
}

/// What a snapshot records of replication (at its cut): a replica's
/// master's history and offset, or a master's own when it keeps a backlog.
pub fn snapshot_info(
    srv: &crate::server::Shared,
) -> Option<crate::persistence::rdb::file::ReplInfo> {
    let (end, active, last_db) = srv
        .log
        .with_buf(|b| (b.repl.end(), b.repl.is_active(), b.repl_last_db));
    if !srv.repl.is_replica() && !active {
        return None;
    }
    let stream_db = if srv.repl.is_replica() {
        srv.repl.master_db.load(Ordering::Relaxed)
    } else {
        last_db.unwrap_or(0) as u64
    };
    Some(crate::persistence::rdb::file::ReplInfo {
        stream_db,
        id: srv.repl.state.lock().replid.clone(),
        offset: end,
    })
}

/// Start-up from a snapshot that recorded replication state.
///
/// A replica takes the history id and offset as its own, so it asks its
/// master to continue from there. A master, as redis-server, starts a new
/// history at that offset and keeps the file's as its secondary id, so
/// its replicas continue with it; the keys the load found expired reach
/// them as DELs (UNLINKs under `lazyfree-lazy-expire`), counted in the
/// offset. A replica whose offset is past that history, or behind the
/// backlog those DELs left, gets a full sync.
pub fn restore_info(
    srv: &crate::server::Shared,
    info: &crate::persistence::rdb::file::ReplInfo,
    expired_keys: &[(usize, Vec<u8>)],
    as_replica: bool,
) {
    let master = !as_replica;
    {
        let mut st = srv.repl.state.lock();
        if master {
            st.replid = new_replid();
            st.replid2 = info.id.clone();
            st.second_offset = info.offset as i64 + 1;
        } else {
            st.replid = info.id.clone();
            st.replid2 = NO_REPLID.to_string();
            st.second_offset = -1;
        }
    }
    srv.log.with_buf(|b| {
        b.repl.activate();
        b.repl.reset_to(info.offset);
        b.repl_last_db = None;
    });
    srv.repl.master_db.store(info.stream_db, Ordering::Relaxed);
    tracing::info!(
        "Restored replication ID {} and offset {} from the RDB file",
        info.id,
        info.offset
    );
    if master {
        // Our own writes continue the restored history.
        srv.log.set_repl(true);
        let del: &[u8] = if srv.config.read().flag("lazyfree-lazy-expire") {
            b"UNLINK"
        } else {
            b"DEL"
        };
        for (db, key) in expired_keys {
            srv.log.append_repl_command(*db, &[del, key.as_slice()]);
        }
    }
}

/// The `# Replication` section of INFO.
pub fn info_section(srv: &crate::server::Shared, now_ms: i64) -> String {
    let (end, window_start, histlen, active, size) = srv.log.with_buf(|b| {
        (
            b.repl.end(),
            b.repl.window_start(),
            b.repl.histlen(),
            b.repl.is_active(),
            b.repl.size(),
        )
    });
    let cfg = srv.config.read();
    let st = srv.repl.state.lock();
    let mut o = String::from("# Replication\r\n");
    match &st.master {
        None => o.push_str("role:master\r\n"),
        Some(m) => {
            let up = m.state == LinkState::Connected;
            let last_io = if up {
                (now_ms - m.last_io_ms) / 1000
            } else {
                -1
            };
            // A replica's stream is its master's, applied as it is passed
            // on; what it read may be ahead, held back by a busy script or
            // a pause.
            let read = end + srv.repl.unapplied.load(Ordering::Relaxed);
            let _ = write!(
                o,
                "role:slave\r\nmaster_host:{}\r\nmaster_port:{}\r\nmaster_link_status:{}\r\nmaster_last_io_seconds_ago:{last_io}\r\nmaster_sync_in_progress:{}\r\nslave_read_repl_offset:{read}\r\nslave_repl_offset:{end}\r\n",
                m.host,
                m.port,
                if up { "up" } else { "down" },
                (m.state == LinkState::Transfer) as u8,
            );
            if m.state == LinkState::Transfer {
                let (total, got) = m.sync_bytes;
                let left = if total < 0 { 0 } else { total - got as i64 };
                let perc = if total > 0 {
                    got as f64 * 100.0 / total as f64
                } else {
                    0.0
                };
                let _ = write!(
                    o,
                    "master_sync_total_bytes:{total}\r\nmaster_sync_read_bytes:{got}\r\nmaster_sync_left_bytes:{left}\r\nmaster_sync_perc:{perc:.2}\r\nmaster_sync_last_io_seconds_ago:{}\r\n",
                    (now_ms - m.last_io_ms) / 1000
                );
            }
            if !up {
                let since = if m.down_since_ms == 0 {
                    -1
                } else {
                    (now_ms - m.down_since_ms) / 1000
                };
                let _ = write!(o, "master_link_down_since_seconds:{since}\r\n");
            }
            let _ = write!(
                o,
                "slave_priority:{}\r\nslave_read_only:{}\r\nreplica_announced:{}\r\n",
                cfg.int("replica-priority"),
                cfg.flag("replica-read-only") as u8,
                cfg.flag("replica-announced") as u8,
            );
        }
    }
    let _ = write!(o, "connected_slaves:{}\r\n", st.replicas.len());
    let (min_good, max_lag) = (
        cfg.int("min-replicas-to-write"),
        cfg.int("min-replicas-max-lag"),
    );
    if min_good > 0 && max_lag > 0 {
        let good = master::good_replicas(&st, now_ms, max_lag);
        let _ = write!(o, "min_slaves_good_slaves:{good}\r\n");
    }
    for (i, r) in st.replicas.values().enumerate() {
        let _ = write!(
            o,
            "slave{i}:ip={},port={},state={},offset={},lag={}\r\n",
            r.ip,
            r.listening_port,
            r.state.word(),
            r.ack_offset,
            (now_ms - r.ack_ms).max(0) / 1000
        );
    }
    let first = if active { window_start + 1 } else { 0 };
    let _ = write!(
        o,
        "master_failover_state:{}\r\nmaster_replid:{}\r\nmaster_replid2:{}\r\nmaster_repl_offset:{end}\r\nsecond_repl_offset:{}\r\nrepl_backlog_active:{}\r\nrepl_backlog_size:{size}\r\nrepl_backlog_first_byte_offset:{first}\r\nrepl_backlog_histlen:{histlen}\r\n",
        failover::state_word(srv),
        st.replid,
        st.replid2,
        st.second_offset,
        active as u8,
    );
    o
}

/// Waits until `pick` finds what it wants in a snapshot's progress, or
/// `failed` finds that the snapshot failed. Shared by the diskless batch
/// and the disk batch, whose progress differs but is watched alike.
pub(crate) async fn wait_progress<P, T>(
    progress: &tokio::sync::watch::Sender<P>,
    pick: impl Fn(&P) -> Option<T>,
    failed: impl Fn(&P) -> Option<String>,
) -> std::io::Result<T> {
    let mut rx = progress.subscribe();
    loop {
        {
            let p = rx.borrow_and_update();
            if let Some(v) = pick(&p) {
                return Ok(v);
            }
            if let Some(e) = failed(&p) {
                return Err(std::io::Error::other(e));
            }
        }
        rx.changed()
            .await
            .map_err(|_| std::io::Error::other("the snapshot was abandoned"))?;
    }
}
