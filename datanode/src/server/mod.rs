//! The network side: listener, per-connection loop, background cron.

pub mod client;
pub mod clientmem;
mod cluster_host;
pub mod cmdstats;
pub mod conn;
pub mod evict;
pub mod hdr;
pub mod latency;
pub mod listen;
pub mod memfigures;
pub mod notify;
pub mod oom;
pub mod outbox;
pub mod pause;
pub mod propagation;
pub mod pubsub;
pub mod replybuf;
pub mod shared;
pub mod shutdown;
pub mod slowlog;
pub mod stats;
pub mod tracking;

use std::sync::atomic::Ordering;
use std::sync::Arc;

use anyhow::Context as _;

use crate::config::Config;
pub use shared::Shared;
use stats::Stats;

/// The process title from `proc-title-template` (when `set-proc-title`).
fn set_proc_title(srv: &Shared) {
    let cfg = srv.config.read();
    let file = cfg.file.as_ref().map(|p| p.display().to_string());
    let vars = crate::proctitle::Vars {
        bind: cfg.value("bind").split_whitespace().next(),
        port: srv.actual_port.load(Ordering::Relaxed) as u16,
        unixsocket: cfg.value("unixsocket"),
        config_file: file.as_deref(),
        cluster: cfg.cluster_enabled(),
    };
    crate::proctitle::set(cfg.value("proc-title-template"), &vars);
}

/// Runs `f`, which holds its thread a long time, off the runtime's worker
/// where the runtime allows, so the connections and tasks queued on that
/// worker go on meanwhile.
pub fn off_worker<R>(f: impl FnOnce() -> R) -> R {
    match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(f),
        _ => f(),
    }
}

/// Reacts to CONFIG SET of settings the hot path caches.
pub fn apply_config_change(srv: &Arc<Shared>, changed: &[String]) {
    if changed.iter().any(|c| c == "proc-title-template") {
        set_proc_title(srv);
    }
    if changed.iter().any(|c| c == "loglevel") {
        crate::loglevel::set(&srv.config.read().loglevel());
    }
    {
        use crate::persistence::rdb::{KEY_LOAD_DELAY, KEY_SAVE_DELAY};
        let c = srv.config.read();
        let num = |n: &str| c.value(n).parse::<i64>().unwrap_or(0);
        KEY_LOAD_DELAY.store(num("key-load-delay"), Ordering::Relaxed);
        KEY_SAVE_DELAY.store(num("rdb-key-save-delay"), Ordering::Relaxed);
        use crate::persistence::savefile::{AOF_AUTOSYNC, RDB_AUTOSYNC};
        RDB_AUTOSYNC.store(c.flag("rdb-save-incremental-fsync"), Ordering::Relaxed);
        AOF_AUTOSYNC.store(c.flag("aof-rewrite-incremental-fsync"), Ordering::Relaxed);
        {
            use crate::keyspace::value::limits::*;
            let n = |k: &str| num(k).max(0) as usize;
            HASH_ENTRIES.store(n("hash-max-listpack-entries"), Ordering::Relaxed);
            HASH_VALUE.store(n("hash-max-listpack-value"), Ordering::Relaxed);
            SET_INTSET.store(n("set-max-intset-entries"), Ordering::Relaxed);
            ZSET_ENTRIES.store(n("zset-max-listpack-entries"), Ordering::Relaxed);
            ZSET_VALUE.store(n("zset-max-listpack-value"), Ordering::Relaxed);
        }
        crate::keyspace::plist::set_fill(num("list-max-listpack-size"));
        crate::keyspace::plist::set_compress_depth(num("list-compress-depth"));
        crate::crashlog::set_enabled(c.flag("crash-log-enabled"));
        crate::crashlog::set_exit_on_panic(c.flag("use-exit-on-panic"));
        crate::watchdog::set_period(
            num("watchdog-period").max(0) as u64,
            srv.hot.hz.load(Ordering::Relaxed) as u64,
        );
        {
            use crate::keyspace::lazyfree::*;
            let yes = |n: &str| c.value(n) == "yes";
            USER_DEL.store(yes("lazyfree-lazy-user-del"), Ordering::Relaxed);
            USER_FLUSH.store(yes("lazyfree-lazy-user-flush"), Ordering::Relaxed);
            EXPIRE.store(yes("lazyfree-lazy-expire"), Ordering::Relaxed);
            EVICTION.store(yes("lazyfree-lazy-eviction"), Ordering::Relaxed);
            SERVER_DEL.store(yes("lazyfree-lazy-server-del"), Ordering::Relaxed);
        }
        cmdstats::LATENCY_TRACKING.store(c.value("latency-tracking") == "yes", Ordering::Relaxed);
        srv.latency.threshold_ms.store(
            num("latency-monitor-threshold").max(0) as u64,
            Ordering::Relaxed,
        );
    }
    // `save` or `stop-writes-on-bgsave-error` may have changed.
    crate::persistence::refresh_write_block(srv);
    // The route carries what a down cluster serves and how it names
    // nodes: a new one now, as Redis reads these settings at each command.
    if changed.iter().any(|c| {
        c == "cluster-allow-reads-when-down"
            || c == "cluster-allow-pubsubshard-when-down"
            || c == "cluster-preferred-endpoint-type"
    }) {
        if let Some(cl) = srv.cluster.get() {
            cl.with(srv, |st| {
                st.todo_route = true;
                st.route_full = true;
            });
        }
    }
    if changed.iter().any(|c| c == "appendonly") {
        let on = srv.config.read().appendonly();
        if on && !srv.log.aof_on() {
            if let Err(e) = crate::persistence::aof::enable_at_runtime(srv) {
                tracing::warn!("Could not enable the AOF: {e}");
            }
        } else if !on && srv.log.aof_on() {
            crate::persistence::aof::disable_at_runtime(srv);
        }
    }
    let cfg = srv.config.read();
    let policy = cfg.maxmemory_policy();
    crate::keyspace::access::LFU.store(policy.contains("lfu"), Ordering::Relaxed);
    crate::keyspace::access::LFU_LOG_FACTOR
        .store(cfg.int("lfu-log-factor").max(0) as u32, Ordering::Relaxed);
    crate::keyspace::access::LFU_DECAY_MINUTES
        .store(cfg.int("lfu-decay-time").max(0) as u32, Ordering::Relaxed);
    let maxmemory = cfg.int("maxmemory").max(0) as u64;
    srv.hot.maxmemory.store(maxmemory, Ordering::Relaxed);
    clientmem::configure(cfg.value("maxmemory-clients"), maxmemory);
    srv.hot.maxmemory_policy.store(
        crate::keyspace::evict::Policy::from_name(&policy).code(),
        Ordering::Relaxed,
    );
    srv.hot.maxmemory_samples.store(
        cfg.int("maxmemory-samples").max(1) as u32,
        Ordering::Relaxed,
    );
    srv.hot.hll_sparse_max_bytes.store(
        cfg.int("hll-sparse-max-bytes").max(0) as u64,
        Ordering::Relaxed,
    );
    srv.hot.maxmemory_tenacity.store(
        cfg.int("maxmemory-eviction-tenacity").clamp(0, 100) as u32,
        Ordering::Relaxed,
    );
    srv.hot
        .replica_ignore_maxmemory
        .store(cfg.flag("replica-ignore-maxmemory"), Ordering::Relaxed);
    srv.hot
        .no_fsync_on_rewrite
        .store(cfg.flag("no-appendfsync-on-rewrite"), Ordering::Relaxed);
    let hz = cfg.int("hz").clamp(1, 500) as u32;
    srv.hot.configured_hz.store(hz, Ordering::Relaxed);
    // The new rate shows at once, as Redis's updateHZ sets it; the cron
    // raises it again for many clients.
    if changed.is_empty() || changed.iter().any(|c| c == "hz") {
        srv.hot.hz.store(hz, Ordering::Relaxed);
    }
    srv.hot
        .dynamic_hz
        .store(cfg.flag("dynamic-hz"), Ordering::Relaxed);
    srv.hot.expire_effort.store(
        cfg.int("active-expire-effort").clamp(1, 10) as u32,
        Ordering::Relaxed,
    );
    crate::persistence::rdb::object::COMPRESS.store(cfg.rdbcompression(), Ordering::Relaxed);
    crate::persistence::rdb::file::CHECKSUM.store(cfg.flag("rdbchecksum"), Ordering::Relaxed);
    crate::persistence::rdb::object::SANITIZE.store(
        match cfg.value("sanitize-dump-payload") {
            "yes" => 1,
            "clients" => 2,
            _ => 0,
        },
        Ordering::Relaxed,
    );
    crate::persistence::effects::AOF_TIMESTAMPS
        .store(cfg.flag("aof-timestamp-enabled"), Ordering::Relaxed);
    let auto_gc = !cfg.flag("aof-disable-auto-gc");
    crate::persistence::aof::AUTO_GC.store(auto_gc, Ordering::Relaxed);
    if changed.iter().any(|c| c == "aof-disable-auto-gc") && auto_gc {
        // Redis's updateAofAutoGCEnabled: the history goes now. Off the
        // config lock, as the AOF writer reads the config too.
        let srv = srv.clone();
        std::thread::spawn(move || {
            if let Err(e) = crate::persistence::aof::collect_history(&srv) {
                tracing::warn!("Could not remove the AOF history files: {e}");
            }
        });
    }
    if changed.is_empty() || changed.iter().any(|c| c == "jemalloc-bg-thread") {
        crate::command::server::jemalloc_background_thread(cfg.flag("jemalloc-bg-thread"));
    }
    srv.hot
        .proto_max_bulk_len
        .store(cfg.proto_max_bulk_len() as i64, Ordering::Relaxed);
    srv.hot
        .requirepass_set
        .store(cfg.requirepass().is_some(), Ordering::Relaxed);
    srv.acl
        .set_pubsub_default(cfg.value("acl-pubsub-default") == "allchannels");
    if changed.iter().any(|c| c == "requirepass") {
        // As Redis: setting requirepass replaces the default user's
        // passwords (an empty one makes it nopass).
        srv.acl.set_default_password(cfg.requirepass().as_deref());
    }
    srv.hot
        .slowlog_slower_than
        .store(cfg.slowlog_log_slower_than(), Ordering::Relaxed);
    srv.hot
        .query_buffer_limit
        .store(cfg.client_query_buffer_limit(), Ordering::Relaxed);
    srv.hot.idle_timeout.store(cfg.timeout(), Ordering::Relaxed);
    outbox::configure(cfg.value("client-output-buffer-limit"));
    srv.repl
        .read_only
        .store(cfg.flag("replica-read-only"), Ordering::Relaxed);
    srv.repl
        .min_good
        .store(cfg.int("min-replicas-to-write").max(0), Ordering::Relaxed);
    let backlog = cfg.int("repl-backlog-size").max(16 * 1024) as u64;
    srv.log.with_buf(|b| b.repl.set_size(backlog));
    srv.tracking.set_max_keys(cfg.tracking_table_max_keys());
    notify::configure(srv, cfg.notify_keyspace_events());
    srv.slowlog.lock().max_len = cfg.slowlog_max_len() as usize;
    srv.hot.fsync_always.store(
        cfg.appendonly() && cfg.appendfsync() == crate::config::AppendFsync::Always,
        Ordering::Relaxed,
    );
    drop(cfg);
    // As Redis: a lower limit closes connections now.
    if changed
        .iter()
        .any(|c| c == "maxmemory-clients" || c == "maxmemory")
    {
        clientmem::evict(srv);
    }
    // As Redis: lowering maxmemory below what is used starts evicting now
    // rather than at the next write.
    if maxmemory > 0
        && changed.iter().any(|c| c == "maxmemory")
        && crate::memory::counting()
        && crate::memory::used() > maxmemory
    {
        tracing::warn!(
            "WARNING: the new maxmemory value set via CONFIG SET ({maxmemory}) is smaller than the current memory usage ({}). This will result in key eviction and/or the inability to accept new write commands depending on the maxmemory-policy.",
            crate::memory::used()
        );
        evict::start_background(srv);
    }
}

/// Runs a node until SHUTDOWN or SIGTERM.
/// The users at start-up: `requirepass` for the default user, then the
/// `user` directives or the ACL file (not both, as in Redis).
/// `rename-command` directives, applied to the command table once.
fn load_renames(srv: &Shared) -> anyhow::Result<()> {
    let renames = srv.config.read().renames.clone();
    let pairs: Vec<(String, String)> = renames
        .iter()
        .map(|d| (d.args[0].clone(), d.args[1].clone()))
        .collect();
    crate::command::table::install_renames(&pairs)
        .map_err(|(i, why)| renames[i].error(why.to_string()).into())
}

fn load_users(srv: &Shared) -> anyhow::Result<()> {
    let (users, aclfile, pass) = {
        let c = srv.config.read();
        (
            c.users.clone(),
            c.value("aclfile").to_string(),
            c.requirepass(),
        )
    };
    srv.acl.set_default_password(pass.as_deref());
    if !aclfile.is_empty() && !users.is_empty() {
        anyhow::bail!("Configuring Redis with users defined in redis.conf and at the same setting an ACL file path is invalid. This setup is very likely to lead to configuration errors and security holes, please define either an ACL file or declare users directly in your redis.conf, but not both.");
    }
    let mut defs = Vec::new();
    for u in &users {
        let rules: Vec<&[u8]> = u.args[1..].iter().map(|r| r.as_bytes()).collect();
        if let Err((j, msg)) = srv.acl.validate_rules(u.args[0].as_bytes(), &rules) {
            let rule = u.args.get(j + 1).map_or("", |s| s.as_str());
            return Err(u
                .error(format!("Error in user declaration '{rule}': {msg}"))
                .into());
        }
        defs.push((
            u.args[0].as_bytes().to_vec(),
            u.args[1..].iter().map(|r| r.as_bytes().to_vec()).collect(),
        ));
    }
    srv.acl
        .load_definitions(&defs)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    if !aclfile.is_empty() {
        srv.acl
            .load_file(std::path::Path::new(&aclfile), &aclfile)
            .map_err(|e| anyhow::anyhow!("Aborting Redis startup because of ACL errors: {e}"))?;
    }
    Ok(())
}

pub async fn run(cfg: Config) -> anyhow::Result<()> {
    let appendonly = cfg.appendonly();
    let pidfile = cfg.pidfile();
    let srv = Arc::new(Shared::new(cfg));
    notify::install(&srv);
    apply_config_change(&srv, &[]);
    if let Err(e) = oom::apply(&srv) {
        tracing::warn!("Could not set oom_score_adj: {e}");
    }
    load_renames(&srv)?;
    load_users(&srv)?;
    // Database 0 is always used; count its empty tables as startup memory.
    srv.ks.db(0);
    srv.startup_memory
        .store(crate::memory::used(), Ordering::Relaxed);
    // As redis-server: the ports are taken and the banner (with the pid
    // test harnesses wait for) is logged before the data loads, and
    // clients are served meanwhile, told -LOADING but for what Redis
    // marks `loading` (INFO, CONFIG, …).
    let bind_cfg = srv.config.read().clone();
    let listeners = listen::bind(&bind_cfg).await?;
    let unix = listen::bind_unix(&bind_cfg)?;
    let port = listen::record_port(&srv, &listeners);
    set_proc_title(&srv);
    if !pidfile.is_empty() {
        let _ = std::fs::write(&pidfile, format!("{}\n", std::process::id()));
    }
    log_banner(&srv, port);
    srv.repl.loading.store(true, Ordering::SeqCst);
    listen::serve_listeners(&srv, listeners);
    let unix = unix.map(|l| listen::serve_unix(&srv, l));
    let loader = srv.clone();
    let loaded = tokio::task::spawn_blocking(move || {
        if appendonly {
            crate::persistence::aof::open(&loader)
                .context("Fatal error loading the append only file")
        } else {
            crate::persistence::load_rdb(&loader)
                .inspect_err(|e| {
                    use crate::persistence::rdb::file::RdbError;
                    // A file that reads wrong, as opposed to one that
                    // cannot be read: worded as redis-server ends then.
                    if matches!(e, RdbError::Corrupt { .. } | RdbError::Checksum { .. }) {
                        tracing::warn!("{e}");
                        tracing::warn!("Terminating server after rdb file reading failure.");
                    }
                })
                .context("Fatal error loading the DB")
        }
    })
    .await;
    srv.repl.loading.store(false, Ordering::SeqCst);
    loaded.context("the loading thread failed")??;
    if srv.config.read().cluster_enabled() {
        let c = crate::cluster::Cluster::start(&srv, port).await?;
        let _ = srv.cluster.set(c);
        // Imports cut short by the restart: what they brought goes.
        srv.slotmig.abandon_tracked(&srv);
    } else {
        // `replicaof <host> <port>` in the configuration.
        let target = srv.config.read().value("replicaof").to_string();
        let mut w = target.split_whitespace();
        if let (Some(host), Some(port)) = (w.next(), w.next().and_then(|p| p.parse::<u16>().ok())) {
            crate::replication::replica::set_master(&srv, host.to_string(), port);
        }
    }
    tracing::info!("Ready to accept connections tcp");
    if unix.is_some() {
        tracing::info!("Ready to accept connections unix");
    }
    tokio::spawn(supervise_cron(srv.clone()));
    tokio::spawn(pause::timer(srv.clone()));
    let inbox = srv.shutdown_inbox.lock().take();
    if let Some(inbox) = inbox {
        shutdown::run_until_shut_down(&srv, &pidfile, inbox).await?;
    }
    Ok(())
}

/// The start-up lines: version and pid, and the mode (as redis-server's
/// logo when `always-show-logo` is set).
fn log_banner(srv: &Shared, port: u16) {
    tracing::info!(
        "slotkv datanode {} (Redis {} compatible), pid={}, port={}",
        env!("CARGO_PKG_VERSION"),
        crate::command::connection::REDIS_VERSION,
        std::process::id(),
        port
    );
    let mode = if srv.cluster_enabled() {
        "cluster"
    } else {
        "standalone"
    };
    if srv.config.read().flag("always-show-logo") {
        // Test harnesses wait for the `Port:` and `PID:` lines of the
        // start-up banner, as they do with redis-server's.
        tracing::info!(
            "\n    slotkv datanode {} (Redis {} compatible) 64 bit\n    Running in {mode} mode\n    Port: {port}\n    PID: {}\n",
            env!("CARGO_PKG_VERSION"),
            crate::command::connection::REDIS_VERSION,
            std::process::id()
        );
    } else {
        tracing::info!("Running mode={mode}, port={port}.");
    }
}

/// Runs the cron, and runs it again should it panic: a panicking task
/// dies alone, and without its cron the server would go on with no
/// expiry, eviction or timeouts, silently.
async fn supervise_cron(srv: Arc<Shared>) {
    loop {
        match tokio::spawn(cron(srv.clone())).await {
            Err(e) if e.is_panic() => {
                tracing::error!("The server cron panicked (a bug, see above); it starts again");
            }
            _ => return,
        }
    }
}

/// Background work `hz` times a second (Redis's serverCron): active
/// expiry, memory and persistence checks; stats sampling and the client
/// walk every 100 ms and the slower chores once a second, whatever the
/// rate. Deadlines follow the ticks' scheduled instants, which advance by
/// exact periods, so "once a second" is every tenth tick at 10 Hz and not
/// now and then the eleventh.
async fn cron(srv: Arc<Shared>) {
    use std::time::Duration;
    let mut cursor = ExpireCursor::default();
    let mut next = tokio::time::Instant::now();
    let (mut next_fast, mut next_second) = (next, next);
    loop {
        let hz = cron_hz(&srv);
        next += Duration::from_millis(1000 / hz as u64);
        // Late (a stalled machine): start again from now rather than
        // running the missed ticks back to back.
        let now_i = tokio::time::Instant::now();
        if next < now_i {
            next = now_i;
        }
        tokio::time::sleep_until(next).await;
        let now = crate::keyspace::now_ms();
        let fast = next >= next_fast;
        if fast {
            next_fast = next + Duration::from_millis(100);
            srv.stats.sample_ops(now);
        }
        if crate::command::debug::CRON_PAUSED.load(Ordering::Relaxed) {
            continue;
        }
        // Redis's clientsCron reaches each of a few clients every tick: an
        // idle client's buffers shrink within a fraction of a second.
        if fast {
            release_idle_buffers(&srv, now);
        }
        let second = next >= next_second;
        if second {
            next_second = next + Duration::from_secs(1);
            srv.migrate_sockets.close_idle();
        }
        clientmem::evict(&srv);
        // No active expiry while clients are paused, as in Redis.
        if srv.hot.active_expire.load(Ordering::Relaxed)
            && !srv.ks.expiry.paused.load(Ordering::Relaxed)
            && !srv.repl.is_replica()
        {
            active_expire(&srv, &mut cursor, now);
        }
        // A writable replica's own keys with a TTL (Redis's expireSlaveKeys).
        if srv.repl.is_replica() && !srv.ks.expiry.paused.load(Ordering::Relaxed) {
            srv.repl.own_expires.expire(&srv.ks, now);
        }
        tracking::cron(&srv);
        crate::replication::failover::cron(&srv, now);
        if second {
            crate::replication::master::cron(&srv, now);
            follow_cluster_role(&srv);
        }
        crate::persistence::aof::maybe_auto_rewrite(&srv);
        crate::persistence::schedule::run_scheduled(&srv);
        crate::persistence::maybe_scheduled_save(&srv);
    }
}

/// The cron's rate now, as Redis's serverCron sets it: `hz`, doubled
/// under `dynamic-hz` while there are more than 200 clients per tick, up
/// to 500. Stored for INFO.
fn cron_hz(srv: &Shared) -> u32 {
    let mut hz = srv.hot.configured_hz.load(Ordering::Relaxed).clamp(1, 500);
    if srv.hot.dynamic_hz.load(Ordering::Relaxed) {
        let clients = srv.clients.lock().len() as u32;
        while clients / hz > 200 && hz < 500 {
            hz = (hz * 2).min(500);
        }
    }
    srv.hot.hz.store(hz, Ordering::Relaxed);
    hz
}

/// Like Redis's client cron: a connection idle for 2 s gives its empty
/// read buffer back, and an idle connection's reply buffer is resized by
/// its peak (it is asked to; only its own task touches its buffers). The
/// largest buffers seen are noted for INFO.
fn release_idle_buffers(srv: &Shared, now: i64) {
    let (mut input, mut output) = (0, 0);
    for c in srv.clients.lock().values() {
        input = input.max(c.qbuf_cap.load(Ordering::Relaxed));
        output = output.max(c.output_bytes());
        let release_read = c.qbuf_cap.load(Ordering::Relaxed) > 0
            && c.qbuf.load(Ordering::Relaxed) == 0
            && now - c.last_interaction_ms.load(Ordering::Relaxed) >= IDLE_RELEASE_MS;
        if release_read || now >= c.rb_wake_at.load(Ordering::Relaxed) {
            c.idle_notify.notify_one();
        }
        // A soft output limit is enforced without traffic too (Redis
        // checks it in its client cron).
        let queued = c.outq.bytes.load(Ordering::Relaxed);
        if queued > 0 {
            c.outq.check(c.output_bytes(), || now);
        }
    }
    srv.stats
        .client_peaks
        .lock()
        .note(now / 1000, input, output);
}

/// Cluster mode: the replication link follows the node's role in the
/// cluster (CLUSTER REPLICATE, a failover): a replica replicates its
/// master's address, a master nobody. The cluster layer only says who is
/// whose master; this is where that becomes a replication link.
pub fn follow_cluster_role(srv: &Arc<Shared>) {
    let Some(cl) = srv.cluster.get() else {
        return;
    };
    let want: Option<(String, u16)> = {
        let route = cl.route.load();
        if route.my_master == crate::cluster::route::NONE {
            None
        } else {
            route
                .addrs
                .get(route.my_master as usize)
                .and_then(|a| a.rsplit_once(':'))
                .filter(|(ip, _)| !ip.is_empty())
                .and_then(|(ip, port)| Some((ip.to_string(), port.parse().ok()?)))
        }
    };
    let have = srv.repl.master_addr();
    match (want, have) {
        (Some(w), have) if have.as_ref() != Some(&w) => {
            tracing::info!("Replicating my cluster master at {}:{}", w.0, w.1);
            crate::replication::replica::set_master(srv, w.0, w.1);
        }
        (None, Some(_)) => {
            crate::replication::replica::unset_master(srv);
            // Promoted while our master imported slots: that import
            // cannot finish here.
            srv.slotmig.abandon_tracked(srv);
        }
        _ => {}
    }
}

/// How long a connection stays idle before its read buffer is freed.
pub const IDLE_RELEASE_MS: i64 = 2000;

/// Where active expiry resumes: a slot (over every database) and a
/// position in its expiry table.
#[derive(Default)]
struct ExpireCursor {
    pos: usize,
    offset: usize,
}

/// Keys checked per round, and the share of them expired (percent) below
/// which a run stops: Redis's active expire cycle's defaults.
const EXPIRE_KEYS_PER_ROUND: usize = 20;
const EXPIRE_STALE_PERC: usize = 10;

/// Walks the keys with a TTL round-robin, slot by slot, deleting expired
/// ones in rounds of 20 checks, as Redis's cycle does: another round only
/// while at least 10% of a round had expired, and at most ~25 ms per run.
/// A dataset with many TTLs and few expired keys costs 20 checks a run.
fn active_expire(srv: &Shared, cur: &mut ExpireCursor, now: i64) {
    use crate::keyspace::SLOTS;
    let start = std::time::Instant::now();
    let dbs: Vec<_> = srv.ks.existing().collect();
    if dbs.is_empty() {
        return;
    }
    let total = dbs.len() * SLOTS;
    // Redis's activeExpireCycle scaled by active-expire-effort (0 to 9
    // here): more keys per round, fewer stale ones tolerated, a larger
    // share of each tick (25% at effort 1).
    let effort = srv.hot.expire_effort.load(Ordering::Relaxed).clamp(1, 10) as usize - 1;
    let per_round = EXPIRE_KEYS_PER_ROUND + EXPIRE_KEYS_PER_ROUND / 4 * effort;
    let stale_perc = EXPIRE_STALE_PERC - effort;
    let hz = srv.hot.hz.load(Ordering::Relaxed).max(1) as u64;
    let budget = std::time::Duration::from_micros((25 + 2 * effort as u64) * 10_000 / hz);
    let (mut checked, mut expired, mut laps) = (0, 0, 0);
    // The run's totals, for INFO expired_stale_perc.
    let (mut sampled, mut stale) = (0, 0);
    while laps <= total {
        cur.pos %= total;
        let (d, s) = (cur.pos / SLOTS, (cur.pos % SLOTS) as u16);
        let db = dbs[d];
        let (c, e, end) = if db.has_expires(s) {
            // Deletions are counted where they happen (INFO expired_keys).
            db.lock_slot(s, now)
                .expire_some(cur.offset, per_round - checked)
        } else {
            (0, 0, true)
        };
        checked += c;
        expired += e;
        sampled += c;
        stale += e;
        if end {
            cur.pos += 1;
            cur.offset = 0;
            laps += 1;
        } else {
            cur.offset += c - e;
        }
        if checked >= per_round {
            // Another round only while the expired share, in whole
            // percent, is above the threshold (Redis's integer test).
            if expired * 100 < checked * (stale_perc + 1) {
                break;
            }
            (checked, expired) = (0, 0);
        }
        if start.elapsed() > budget {
            Stats::add(&srv.stats.expired_time_cap_reached, 1);
            break;
        }
    }
    let elapsed = start.elapsed();
    Stats::add(&srv.stats.expire_cycle_us, elapsed.as_micros() as u64);
    srv.stats.note_expired_stale(stale, sampled);
    srv.latency
        .observe("expire-cycle", elapsed.as_millis() as u64, now / 1000);
}
