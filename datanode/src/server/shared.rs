//! State shared by every connection: the keyspace, configuration, counters
//! and the registry of connected clients.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};

use super::client::ClientInfo;
use super::slowlog::SlowLog;
use super::stats::Stats;
use crate::config::Config;
use crate::keyspace::Keyspace;
use crate::persistence::effects::EffectLog;

/// Settings read on the command path, copied out of the config so reading
/// them takes no lock.
pub struct Hot {
    pub proto_max_bulk_len: AtomicI64,
    pub requirepass_set: AtomicBool,
    pub slowlog_slower_than: AtomicI64,
    pub fsync_always: AtomicBool,
    pub query_buffer_limit: std::sync::atomic::AtomicU64,
    pub active_expire: AtomicBool,
    /// `timeout` in seconds.
    pub idle_timeout: AtomicU64,
    /// `notify-keyspace-events`, as commands test it.
    pub notify: super::notify::Flags,
    /// `maxmemory` in bytes (0: no limit).
    pub maxmemory: AtomicU64,
    /// `maxmemory-policy` as `keyspace::evict::Policy::code`.
    pub maxmemory_policy: std::sync::atomic::AtomicU8,
    pub maxmemory_samples: std::sync::atomic::AtomicU32,
    pub maxmemory_tenacity: std::sync::atomic::AtomicU32,
    /// `replica-ignore-maxmemory`: a replica leaves eviction to its master.
    pub replica_ignore_maxmemory: AtomicBool,
    /// `hz` as configured, and the rate the cron runs at now (higher with
    /// many clients under `dynamic-hz`), as INFO's configured_hz and hz.
    pub configured_hz: std::sync::atomic::AtomicU32,
    pub hz: std::sync::atomic::AtomicU32,
    pub dynamic_hz: AtomicBool,
    /// `active-expire-effort` (1 to 10).
    pub expire_effort: std::sync::atomic::AtomicU32,
    /// `hll-sparse-max-bytes`.
    pub hll_sparse_max_bytes: AtomicU64,
    /// Writes (and PING) are refused with -MISCONF: the last background
    /// save failed, `save` is set and `stop-writes-on-bgsave-error` is on.
    pub rdb_write_block: AtomicBool,
    /// The AOF writer's last write failed: writes are refused (MISCONF)
    /// until one succeeds.
    pub aof_write_block: AtomicBool,
    /// The AOF writer's last fsync failed: writes are refused (MISCONF)
    /// until one succeeds, as Redis's aof_bio_fsync_status.
    pub aof_fsync_block: AtomicBool,
    /// The AOF writer is in an everysec fsync (INFO aof_pending_bio_fsync:
    /// Redis runs those on a background job; `always` fsyncs inline).
    pub aof_fsync_running: AtomicBool,
    /// `no-appendfsync-on-rewrite`: the AOF is not fsynced while a save
    /// or rewrite runs (their disk I/O would make the fsync slow).
    pub no_fsync_on_rewrite: AtomicBool,
    /// A caller needs everything logged on disk now (shutdown, turning the
    /// AOF off): no-appendfsync-on-rewrite does not hold it back.
    pub aof_sync_forced: AtomicBool,
}

pub struct Shared {
    pub ks: Keyspace,
    pub config: RwLock<Config>,
    pub hot: Hot,
    pub stats: Stats,
    pub clients: Mutex<HashMap<u64, Arc<ClientInfo>>>,
    pub next_client_id: AtomicU64,
    pub start_ms: i64,
    pub run_id: String,
    pub log: Arc<EffectLog>,
    pub slowlog: Mutex<SlowLog>,
    /// SHUTDOWN requests, for the main task (see `shutdown`).
    pub shutdown_requests: tokio::sync::mpsc::UnboundedSender<super::shutdown::Request>,
    /// Their receiving end, taken once by the main task.
    pub shutdown_inbox:
        Mutex<Option<tokio::sync::mpsc::UnboundedReceiver<super::shutdown::Request>>>,
    pub shutting_down: AtomicBool,
    pub aof: Mutex<Option<crate::persistence::aof::AofHandle>>,
    /// The brake on automatic AOF rewrites that keep failing.
    pub aof_rewrite_limit: Mutex<crate::persistence::aof::RewriteLimit>,
    /// MONITOR subscribers.
    pub monitors: Mutex<Vec<(u64, super::pubsub::Tx)>>,
    pub has_monitors: AtomicBool,
    pub actual_port: AtomicU64,
    pub pubsub: super::pubsub::PubSub,
    /// Client-side caching (CLIENT TRACKING).
    pub tracking: super::tracking::Tracking,
    pub bgsave_running: AtomicBool,
    /// Set once at start when cluster-enabled.
    pub cluster: std::sync::OnceLock<Arc<crate::cluster::Cluster>>,
    /// BGREWRITEAOF with the AOF off is writing its base file.
    pub base_rewrite_running: AtomicBool,
    /// A disk-target full sync wrote the RDB file (rdb-del-sync-files
    /// removes it on a master without persistence).
    pub sync_file_written: AtomicBool,
    /// A BGREWRITEAOF or BGSAVE asked for while another save ran, started
    /// by the cron once none runs (see `persistence::schedule`).
    pub aof_rewrite_scheduled: AtomicBool,
    pub bgsave_scheduled: AtomicBool,
    /// LATENCY's event history.
    pub latency: super::latency::Monitor,
    /// Bumped when the listening sockets are replaced (CONFIG SET port).
    pub listen_gen: tokio::sync::watch::Sender<u64>,
    /// Listening sockets open (SHUTDOWN waits for none before exiting).
    pub listening: std::sync::atomic::AtomicUsize,
    /// The task accepting on the unix socket, stopped at shutdown.
    pub unix_listener: Mutex<Option<tokio::task::AbortHandle>>,
    /// The eviction pool; held for a whole eviction pass.
    pub evictor: Mutex<crate::keyspace::evict::Evictor>,
    pub evicting_in_background: AtomicBool,
    /// Used memory once started, before any data (INFO used_memory_startup,
    /// MEMORY STATS startup.allocated).
    pub startup_memory: AtomicU64,
    /// CLIENT PAUSE state.
    pub pause: super::pause::Pause,
    pub repl: crate::replication::Replication,
    /// MIGRATE's connections to its targets.
    pub migrate_sockets: crate::command::migrate::SocketCache,
    /// Atomic slot migration jobs (CLUSTER MIGRATESLOTS).
    pub slotmig: crate::slotmig::Registry,
    /// The script cache, the Lua interpreters and the scripts running
    /// past `busy-reply-threshold`.
    pub scripts: crate::scripting::Scripts,
    /// ACL users and the ACL log.
    pub acl: crate::acl::Acl,
}

impl Shared {
    pub fn new(config: Config) -> Shared {
        let (shutdown_requests, shutdown_inbox) = tokio::sync::mpsc::unbounded_channel();
        let log = Arc::new(EffectLog::default());
        let ks = Keyspace::new(config.databases(), log.clone());
        let hot = Hot {
            proto_max_bulk_len: AtomicI64::new(config.proto_max_bulk_len() as i64),
            requirepass_set: AtomicBool::new(config.requirepass().is_some()),
            slowlog_slower_than: AtomicI64::new(config.slowlog_log_slower_than()),
            fsync_always: AtomicBool::new(
                config.appendonly() && config.appendfsync() == crate::config::AppendFsync::Always,
            ),
            query_buffer_limit: AtomicU64::new(config.client_query_buffer_limit()),
            active_expire: AtomicBool::new(true),
            idle_timeout: AtomicU64::new(config.timeout()),
            notify: Default::default(),
            maxmemory: AtomicU64::new(0),
            maxmemory_policy: Default::default(),
            maxmemory_samples: Default::default(),
            maxmemory_tenacity: Default::default(),
            replica_ignore_maxmemory: AtomicBool::new(true),
            configured_hz: std::sync::atomic::AtomicU32::new(10),
            hz: std::sync::atomic::AtomicU32::new(10),
            dynamic_hz: AtomicBool::new(true),
            expire_effort: std::sync::atomic::AtomicU32::new(1),
            hll_sparse_max_bytes: AtomicU64::new(config.int("hll-sparse-max-bytes").max(0) as u64),
            rdb_write_block: AtomicBool::new(false),
            aof_write_block: AtomicBool::new(false),
            aof_fsync_block: AtomicBool::new(false),
            aof_fsync_running: AtomicBool::new(false),
            no_fsync_on_rewrite: AtomicBool::new(false),
            aof_sync_forced: AtomicBool::new(false),
        };
        let slowlog = SlowLog::new(config.slowlog_max_len() as usize);
        let mut rid = [0u8; 20];
        rand::Rng::fill(&mut rand::rng(), &mut rid[..]);
        let run_id = rid.iter().map(|b| format!("{b:02x}")).collect();
        Shared {
            ks,
            config: RwLock::new(config),
            hot,
            stats: Stats::new(),
            clients: Mutex::new(HashMap::new()),
            next_client_id: AtomicU64::new(1),
            start_ms: crate::keyspace::now_ms(),
            run_id,
            log,
            slowlog: Mutex::new(slowlog),
            shutdown_requests,
            shutdown_inbox: Mutex::new(Some(shutdown_inbox)),
            shutting_down: AtomicBool::new(false),
            aof: Mutex::new(None),
            aof_rewrite_limit: Mutex::default(),
            monitors: Mutex::new(Vec::new()),
            has_monitors: AtomicBool::new(false),
            actual_port: AtomicU64::new(0),
            pubsub: Default::default(),
            tracking: Default::default(),
            bgsave_running: AtomicBool::new(false),
            cluster: std::sync::OnceLock::new(),
            listen_gen: tokio::sync::watch::Sender::new(0),
            listening: std::sync::atomic::AtomicUsize::new(0),
            unix_listener: Mutex::new(None),
            latency: Default::default(),
            base_rewrite_running: AtomicBool::new(false),
            sync_file_written: AtomicBool::new(false),
            aof_rewrite_scheduled: AtomicBool::new(false),
            bgsave_scheduled: AtomicBool::new(false),
            evictor: Default::default(),
            evicting_in_background: AtomicBool::new(false),
            startup_memory: AtomicU64::new(0),
            pause: Default::default(),
            repl: Default::default(),
            migrate_sockets: Default::default(),
            slotmig: Default::default(),
            scripts: Default::default(),
            acl: crate::acl::Acl::new(crate::command::acl::catalog()),
        }
    }

    pub fn requirepass(&self) -> Option<Vec<u8>> {
        self.config.read().requirepass()
    }

    pub fn cluster_enabled(&self) -> bool {
        self.config.read().cluster_enabled()
    }

    /// Sends a MONITOR line to every monitor, dropping closed ones.
    pub fn feed_monitors(&self, line: Vec<u8>) {
        let line = bytes::Bytes::from(line);
        let mut m = self.monitors.lock();
        m.retain(|(_, tx)| tx.send(super::pubsub::PubMsg::Raw(line.clone())));
        if m.is_empty() {
            self.has_monitors.store(false, Ordering::Relaxed);
        }
    }

    pub fn add_monitor(&self, id: u64, tx: super::pubsub::Tx) {
        let mut m = self.monitors.lock();
        if !m.iter().any(|(c, _)| *c == id) {
            m.push((id, tx));
        }
        self.has_monitors.store(true, Ordering::Relaxed);
    }

    pub fn remove_monitor(&self, id: u64) {
        let mut m = self.monitors.lock();
        m.retain(|(c, _)| *c != id);
        if m.is_empty() {
            self.has_monitors.store(false, Ordering::Relaxed);
        }
    }
}
