//! Per-connection state: protocol version, selected database, transaction
//! queue, watched keys, name. Only the connection's own task touches it,
//! except the small `ClientInfo` shared for CLIENT LIST / CLIENT KILL.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, AtomicU64, AtomicUsize, Ordering};

use parking_lot::Mutex;

use crate::command::args::OwnedArgs;
use crate::keyspace::SBytes;
use crate::resp::Proto;

/// Where a client connects from (or to): an address and port, or the
/// unix socket, which Redis shows as `<unixsocket>:0` on both ends.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Addr {
    Tcp(SocketAddr),
    Unix(std::sync::Arc<str>),
}

impl Addr {
    /// As Redis's islocalClient: the unix socket, 127.0.0.1 or ::1 (not
    /// the rest of 127/8).
    pub fn is_local(&self) -> bool {
        match self {
            Addr::Unix(_) => true,
            Addr::Tcp(a) => match a.ip() {
                std::net::IpAddr::V4(ip) => ip == std::net::Ipv4Addr::LOCALHOST,
                std::net::IpAddr::V6(ip) => ip == std::net::Ipv6Addr::LOCALHOST,
            },
        }
    }

    pub fn is_unix(&self) -> bool {
        matches!(self, Addr::Unix(_))
    }

    /// The peer's IP as Redis names a replica by it (`/unixsocket` for
    /// the unix socket).
    pub fn ip_string(&self) -> String {
        match self {
            Addr::Tcp(a) => a.ip().to_string(),
            Addr::Unix(_) => "/unixsocket".into(),
        }
    }
}

impl From<SocketAddr> for Addr {
    fn from(a: SocketAddr) -> Self {
        Addr::Tcp(a)
    }
}

impl std::fmt::Display for Addr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Addr::Tcp(a) => a.fmt(f),
            Addr::Unix(path) => write!(f, "{path}:0"),
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub enum ReplyMode {
    #[default]
    On,
    Off,
    /// Skip the reply of the next command only.
    SkipNext,
    Skip,
}

pub struct Watched {
    pub db: usize,
    pub key: SBytes,
    pub version: crate::keyspace::slot::WatchStamp,
    /// The key was already past its TTL when watched.
    pub expired_at_watch: bool,
}

/// A connection's part in replication (CLIENT LIST flags S and M).
pub mod role {
    pub const NONE: u8 = 0;
    /// One of our replicas.
    pub const REPLICA: u8 = 1;
    /// Our master's link.
    pub const MASTER: u8 = 2;
}

/// A client's subscriptions and the queue its messages arrive on.
pub struct Subs {
    pub channels: Vec<Vec<u8>>,
    pub patterns: Vec<Vec<u8>>,
    pub shard_channels: Vec<Vec<u8>>,
    pub tx: super::pubsub::Tx,
    pub rx: super::outbox::Rx,
}

impl Subs {
    /// Subscriptions around a message queue.
    pub fn with_queue(tx: super::pubsub::Tx, rx: super::outbox::Rx) -> Subs {
        Subs {
            channels: Vec::new(),
            patterns: Vec::new(),
            shard_channels: Vec::new(),
            tx,
            rx,
        }
    }

    pub fn count(&self) -> usize {
        self.channels.len() + self.patterns.len()
    }
}

#[derive(Default)]
pub struct Multi {
    pub queue: Vec<OwnedArgs>,
    /// A command failed to queue: EXEC must answer EXECABORT.
    pub dirty: bool,
    /// The queued commands' bytes as `maxmemory-clients` counts them.
    pub mem: u64,
}

/// What other connections may read or change about this one.
pub struct ClientInfo {
    pub id: u64,
    pub addr: Addr,
    pub laddr: Addr,
    pub created_ms: i64,
    pub name: Mutex<Option<Vec<u8>>>,
    /// The ACL user's name (CLIENT LIST, CLIENT KILL USER, and closing
    /// the connections of a deleted user).
    pub user: Mutex<Vec<u8>>,
    pub db: AtomicUsize,
    pub last_interaction_ms: AtomicI64,
    pub last_cmd: Mutex<&'static str>,
    pub resp: AtomicUsize,
    pub in_multi: AtomicBool,
    /// Set by CLIENT KILL; the connection closes at its next turn.
    pub killed: AtomicBool,
    pub kill_notify: tokio::sync::Notify,
    pub is_monitor: AtomicBool,
    /// Published once per batch for CLIENT LIST: subscriptions (channels,
    /// patterns, shard channels), queued MULTI commands (-1 outside
    /// MULTI), unread query bytes, read buffer capacity and peak, output
    /// bytes waiting for the socket.
    pub sub: [AtomicU64; 3],
    pub multi_len: AtomicI64,
    pub qbuf: AtomicU64,
    /// Query (read) buffer capacity.
    pub qbuf_cap: AtomicU64,
    /// Reply buffer capacity and the most bytes it held in one batch.
    pub rbs: AtomicU64,
    pub rbp: AtomicU64,
    /// When the server cron should wake this idle connection to resize
    /// its reply buffer (`replybuf::ReplyBuf::wake_at`).
    pub rb_wake_at: AtomicI64,
    /// What the connection is for replication (`role::*`).
    pub role: std::sync::atomic::AtomicU8,
    /// Waiting on keys or for a pause to end (CLIENT LIST flag `b`,
    /// CLIENT UNBLOCK).
    pub blocked: AtomicBool,
    /// How CLIENT UNBLOCK ends the wait: 1 as a timeout, 2 with an error.
    pub unblock_mode: std::sync::atomic::AtomicU8,
    pub unblock_notify: tokio::sync::Notify,
    /// Asks the connection to free its idle read buffer.
    pub idle_notify: tokio::sync::Notify,
    /// CLIENT NO-EVICT on: never closed by maxmemory-clients.
    pub no_evict: AtomicBool,
    /// The socket's descriptor (-1 for the AOF loader's client).
    pub fd: std::sync::atomic::AtomicI32,
    /// The descriptor while the socket is open (-1 once it closes): the
    /// connection clears it under the lock before closing, so CLIENT KILL
    /// can shut the socket down without touching a reused descriptor.
    pub open_fd: Mutex<i32>,
    /// CLIENT TRACKING state (`server::tracking::flag`), set by the
    /// client's own task (others only set the broken-redirect flag), and
    /// the client its invalidations are redirected to (0 = none).
    pub trk: AtomicU32,
    pub trk_redir: AtomicU64,
    /// Where other connections queue messages for this one, once it has a
    /// queue (see `command::pubsub::subs`).
    pub inbox: Mutex<Option<super::pubsub::Tx>>,
    /// A queue another connection made for this one (an invalidation for a
    /// RESP3 redirect target that had none); the connection adopts it.
    pub adopt: Mutex<Option<super::outbox::Rx>>,
    /// What this connection's message queue shares with its senders.
    pub outq: std::sync::Arc<super::outbox::OutQ>,
    pub has_adopt: AtomicBool,
    /// Published once per batch: what the MULTI queue and watched keys
    /// cost (CLIENT LIST multi-mem), and that plus the subscriptions and
    /// tracking prefixes (`clientmem::state_memory`).
    pub multi_mem: AtomicU64,
    pub state_mem: AtomicU64,
    /// This connection's share of `clientmem`'s running total.
    pub reported_mem: AtomicU64,
    /// Its memory when evicted by maxmemory-clients, until it is closed.
    pub closing_mem: AtomicU64,
}

impl ClientInfo {
    /// Output waiting for this client: what it is writing and what other
    /// connections queued for it (Redis's `omem`).
    pub fn output_bytes(&self) -> u64 {
        self.outq.writing.load(Ordering::Relaxed) + self.outq.bytes.load(Ordering::Relaxed)
    }

    /// What the connection costs in memory, as Redis counts it for
    /// `maxmemory-clients` and CLIENT LIST's tot-mem (less the arguments
    /// of a command it is running).
    pub fn memory(&self) -> u64 {
        self.qbuf_cap.load(Ordering::Relaxed)
            + self.rbs.load(Ordering::Relaxed)
            + self.output_bytes()
            + self.state_mem.load(Ordering::Relaxed)
            + super::clientmem::CLIENT_STRUCT
    }

    pub fn kill(&self) {
        self.killed.store(true, Ordering::SeqCst);
        self.kill_notify.notify_one();
        // Redis frees a killed client at once: the peer sees the
        // connection end before the command that killed it is answered
        // (a replica reconnects before the writes that follow in a
        // transaction). The task then finds its socket shut.
        let fd = self.open_fd.lock();
        if *fd >= 0 {
            // SAFETY: the descriptor is open while `open_fd` holds it
            // (see `OpenFd`), and shutdown(2) only acts on that socket.
            unsafe {
                libc::shutdown(*fd, libc::SHUT_RDWR);
            }
        }
    }
}

/// SCRIPT DEBUG's mode for a connection's next EVAL.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub enum ScriptDebug {
    #[default]
    Off,
    /// YES: the next EVAL runs under the debugger in a forked child,
    /// which takes over the connection; its writes die with it.
    Forked,
    /// SYNC: the next EVAL runs under the debugger here, holding its
    /// database; its writes are kept.
    Sync,
}

pub struct Client {
    pub id: u64,
    pub info: std::sync::Arc<ClientInfo>,
    pub db: usize,
    pub proto: Proto,
    pub authenticated: bool,
    /// The ACL user this connection runs as; `None` for the server's own
    /// clients (AOF replay, our master's link), which may run anything.
    pub user: Option<std::sync::Arc<crate::acl::User>>,
    /// The ACL generation `user` was read at.
    pub acl_gen: u64,
    /// `user` may run anything (no user, or one whose root selector
    /// allows all): the command path skips the ACL check.
    pub acl_open: bool,
    pub multi: Option<Multi>,
    pub watched: Vec<Watched>,
    pub reply_mode: ReplyMode,
    /// Close the connection once pending replies are written.
    pub close_after_reply: bool,
    /// What SCRIPT DEBUG asked of this connection's next EVAL.
    pub script_debug: ScriptDebug,
    pub readonly: bool,
    pub asking: bool,
    /// Commands run since the last flush to the shared counters.
    pub pending_cmds: u64,
    pub pending_dirty: u64,
    /// Read lookups since the last flush (INFO keyspace_hits/misses).
    pub pending_hits: u64,
    pub pending_misses: u64,
    /// Effect-log offset of this client's last write (for fsync=always).
    pub last_write_offset: u64,
    /// How long the last command's handler ran (slowlog, commandstats).
    pub last_elapsed_us: u64,
    /// Published to `ClientInfo` once per batch, for CLIENT LIST.
    pub last_cmd: &'static str,
    /// Pub/Sub subscriptions, once the client has made one.
    pub subs: Option<Box<Subs>>,
    /// A blocked command is being retried: if it finds nothing it must
    /// stay silent instead of blocking again.
    pub block_retry: bool,
    /// Replication offset just after this client's last write (WAIT).
    pub woff: u64,
    /// This is the connection to our master (replica side): its writes
    /// are allowed on a read-only replica, and nothing is answered.
    pub is_master: bool,
    /// REPLCONF listening-port / ip-address / capa psync2 (a replica
    /// introducing itself before PSYNC).
    pub repl_port: u16,
    pub repl_ip: Option<String>,
    pub repl_psync2: bool,
    /// REPLCONF capa eof: it reads a snapshot sent as `$EOF:<mark>`.
    pub repl_eof: bool,
    /// REPLCONF rdb-filter-only: the snapshot it wants holds no keys,
    /// and the function libraries only when this is true.
    pub repl_rdb_filter: Option<bool>,
    /// Set by dispatch when the command must wait out a CLIENT PAUSE: it
    /// did not run and is not counted yet.
    pub postponed: bool,
    /// Unread query-buffer bytes when the current command started (its own
    /// bytes included), for CLIENT LIST/INFO on this connection.
    pub qbuf_at_cmd: usize,
    /// Read buffer capacity, as of the current batch.
    pub rbuf_cap: usize,
    /// The reply buffer's sizing (Redis's resize-by-peak cron).
    pub rb: super::replybuf::ReplyBuf,
    /// In MONITOR mode: keyspace commands are refused, as for a replica.
    pub monitor: bool,
    /// This connection feeds a replica (after SYNC/PSYNC): keyspace
    /// commands are refused, and any reply closes it.
    pub is_replica: bool,
    /// EXEC is running this client's queue.
    pub in_exec: bool,
    /// A script is running this command (redis.call).
    pub in_script: bool,
    /// The reply's error was counted in the error stats already (a
    /// command's error propagated by a script).
    pub error_counted: bool,
    /// The command ran without an error reply of its own but counts as a
    /// failed call (CLIENT UNBLOCK … ERROR, as Redis counts it).
    pub count_as_failed: bool,
    /// Where this command's reply starts in the output when pushes were
    /// written ahead of it (an eviction's invalidations for this client).
    pub reply_from: Option<usize>,
    /// Replaying the AOF: no eviction, as Redis does not evict while loading.
    pub loading: bool,
    /// CLIENT CACHING was given for the next command (OPTIN/OPTOUT).
    pub caching: bool,
    /// BCAST prefixes this client registered.
    pub trk_prefixes: Vec<bytes::Bytes>,
}

impl Client {
    /// Sets the ACL user the connection runs as.
    pub fn set_acl_user(&mut self, user: Option<std::sync::Arc<crate::acl::User>>) {
        self.acl_open = user.as_ref().is_none_or(|u| u.unrestricted());
        self.user = user;
    }

    /// In a subscribed RESP2 context only a few commands are allowed.
    pub fn subscribed(&self) -> bool {
        self.subs
            .as_ref()
            .is_some_and(|s| s.count() > 0 || !s.shard_channels.is_empty())
    }
}
