//! Cluster mode: the node table and slot map ([`state`]), the bus wire
//! format ([`bus`]), the gossip and failure-detection rules ([`gossip`]),
//! `nodes.conf` ([`conf`]), the routing snapshot the command path reads
//! ([`route`]), and here the async side: bus listener, links and cron.
//!
//! The state lives behind one mutex that only the bus links, the cron and
//! CLUSTER commands take; it serializes them the way an actor would. The
//! command path never takes it: it reads the [`route::Route`] snapshot.
//! What the cluster needs from the server around it goes through the
//! narrow [`Host`] trait.

pub mod bus;
pub mod conf;
pub mod failover;
pub mod gossip;
pub mod id;
pub mod node;
pub mod route;
pub mod slotmig;
pub mod state;

use std::sync::Arc;

use arc_swap::ArcSwap;
use bytes::BytesMut;
use parking_lot::Mutex;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::config::Config;
use crate::keyspace::now_ms;
use failover::Action;
pub use id::NodeId;
pub use route::{KeyPresence, Query, Redirect, Route};
use state::{Connect, Settings, State};

pub struct Cluster {
    state: Mutex<State>,
    /// The sending half of each open link's socket task, by link id.
    /// Locked only while the state's lock is held, so frames reach each
    /// link in the order the state queued them.
    txs: Mutex<std::collections::HashMap<u64, LinkTx>>,
    pub route: ArcSwap<Route>,
    /// Woken each time `route` changes (clients blocked on a key check
    /// whether its slot is still served here).
    pub route_changed: tokio::sync::Notify,
    /// Unix ms until which this node, as a master, may acknowledge writes:
    /// the last time it heard from a majority of slot-serving masters plus
    /// the node timeout (see [`State::majority_contact`]).
    writable_until: std::sync::atomic::AtomicI64,
    saver: conf::Saver,
    _lock: std::fs::File,
}

type Tx = tokio::sync::mpsc::UnboundedSender<Vec<u8>>;
type Rx = tokio::sync::mpsc::UnboundedReceiver<Vec<u8>>;
type Written = Arc<std::sync::atomic::AtomicU64>;

/// The shell's half of a link: where its frames go, and how many bytes
/// its socket task has written (queued = what the state sent − this).
struct LinkTx {
    tx: Tx,
    written: Written,
}

/// The bus port: `cluster-port`, or the client port + 10000.
pub fn bus_port(cfg: &Config, port: u16) -> u16 {
    match cfg.int("cluster-port") {
        0 => port.wrapping_add(10000),
        p => p as u16,
    }
}

fn settings(cfg: &Config, port: u16, bus: u16) -> Settings {
    let announce_port = cfg.int("cluster-announce-port") as u16;
    let announce_bus = cfg.int("cluster-announce-bus-port") as u16;
    Settings {
        node_timeout: cfg.int("cluster-node-timeout").max(1),
        require_full_coverage: cfg.flag("cluster-require-full-coverage"),
        allow_replica_migration: cfg.flag("cluster-allow-replica-migration"),
        replica_validity_factor: cfg.int("cluster-replica-validity-factor"),
        repl_ping_period: cfg.int("repl-ping-replica-period"),
        replica_no_failover: cfg.flag("cluster-replica-no-failover"),
        migration_barrier: cfg.int("cluster-migration-barrier"),
        link_sendbuf_limit: cfg.int("cluster-link-sendbuf-limit").max(0) as u64,
        announce_ip: cfg.value("cluster-announce-ip").to_string(),
        announce_hostname: cfg.value("cluster-announce-hostname").to_string(),
        port: if announce_port != 0 {
            announce_port
        } else {
            port
        },
        cport: if announce_bus != 0 { announce_bus } else { bus },
        config_file: std::path::PathBuf::from(cfg.value("cluster-config-file")),
    }
}

/// What the cluster needs from the server it runs in: the configuration,
/// the replication progress its messages carry, and the effects of its
/// decisions. The server implements it; the cluster knows nothing else
/// of it.
pub trait Host: Send + Sync + 'static {
    /// Runs `f` on the current configuration.
    fn with_config<R>(&self, f: impl FnOnce(&Config) -> R) -> R;
    /// Our replication offset (a master's stream end, a replica's applied
    /// offset).
    fn repl_offset(&self) -> u64;
    /// A replica's last contact with its master's link (see
    /// `State::master_data_time`); 0 when none.
    fn master_data_time(&self) -> i64;
    /// Keys we hold in a slot (database 0, the only one in cluster mode).
    fn keys_in_slot(&self, slot: u16) -> usize;
    /// Deletes our keys of a slot another node took; returns how many.
    fn drop_slot_keys(&self, slot: u16) -> usize;
    /// Delivers a PUBLISH (or sharded PUBLISH) that came over the bus.
    fn deliver_publish(&self, channel: &[u8], message: &[u8], sharded: bool);
    /// Holds write commands until `until` (unix ms).
    fn pause_writes(&self, until: i64);
    fn unpause_writes(&self);
    /// Our role or master changed: re-point replication now.
    fn role_changed(self: &Arc<Self>);
}

struct HostKeys<'a, H: Host>(&'a H);

impl<H: Host> gossip::Keys for HostKeys<'_, H> {
    fn count_in_slot(&self, slot: u16) -> usize {
        self.0.keys_in_slot(slot)
    }
}

impl Cluster {
    /// Writes nodes.conf now, fsynced, after anything queued (shutdown).
    /// Goes through the saver so it lands after, never before, a write
    /// already queued with older text.
    pub fn save_config_now(&self) -> std::io::Result<()> {
        let st = self.state.lock();
        let res = self.saver.save(&st, true, true);
        if let Err(e) = &res {
            tracing::warn!("Could not save the cluster config: {e}");
        }
        res
    }

    /// Loads or creates the node identity, binds the bus and starts the
    /// cron. Called before the client port accepts anyone.
    pub async fn start<H: Host>(srv: &Arc<H>, port: u16) -> anyhow::Result<Arc<Cluster>> {
        let cfg = srv.with_config(|c| c.clone());
        let bus = bus_port(&cfg, port);
        let st_settings = settings(&cfg, port, bus);
        let path = st_settings.config_file.clone();
        let lock = conf::lock(&path).map_err(anyhow::Error::msg)?;
        let now = now_ms();
        let mut st = State::new(st_settings, now);
        match conf::load(&mut st, now) {
            Ok(true) => tracing::info!("Node configuration loaded, I'm {}", st.me),
            Ok(false) => {
                tracing::info!("No cluster configuration found, I'm {}", st.me);
            }
            Err(e) => anyhow::bail!(
                "Unrecoverable error: corrupted cluster config file \"{}\": {e}",
                path.display()
            ),
        }
        conf::save(&st, true).map_err(|e| {
            anyhow::anyhow!(
                "Could not save the cluster config file {}: {e}",
                path.display()
            )
        })?;
        st.todo_save = false;
        st.todo_fsync = false;
        st.todo_fsync_later = false;
        let route = Route::build(&st, route::RouteSettings::from_config(&cfg));
        let cluster = Arc::new(Cluster {
            state: Mutex::new(st),
            txs: Mutex::new(Default::default()),
            writable_until: std::sync::atomic::AtomicI64::new(i64::MAX),
            saver: conf::Saver::start(),
            route: ArcSwap::from_pointee(route),
            route_changed: tokio::sync::Notify::new(),
            _lock: lock,
        });
        let mut addrs = cfg.bind_addrs(bus);
        if addrs.is_empty() {
            addrs.push((format!("0.0.0.0:{bus}"), false));
        }
        let mut bound = 0;
        for (addr, optional) in addrs {
            match crate::net::listen_tcp(
                &addr,
                cfg.int("tcp-backlog") as i32,
                cfg.int("socket-mark-id") as u32,
            ) {
                Ok(l) => {
                    bound += 1;
                    tokio::spawn(accept_loop(cluster.clone(), srv.clone(), l));
                }
                Err(e) if optional => tracing::warn!("could not bind the cluster bus {addr}: {e}"),
                Err(e) => anyhow::bail!("Could not bind the cluster bus port {addr}: {e}"),
            }
        }
        if bound == 0 {
            anyhow::bail!("Could not bind the cluster bus port {bus}");
        }
        tokio::spawn(cron(cluster.clone(), srv.clone(), port, bus));
        Ok(cluster)
    }

    /// Runs `f` on the state, then does what it left to do: save the
    /// config, recompute the cluster state, publish a new route, open
    /// links, deliver bus messages, drop keys of lost slots.
    pub fn with<R, H: Host>(self: &Arc<Self>, srv: &Arc<H>, f: impl FnOnce(&mut State) -> R) -> R {
        let now = now_ms();
        // Read before the cluster lock: the server's locks behind these are
        // taken by writers, never while holding the cluster's.
        let offset = srv.repl_offset();
        let master_time = srv.master_data_time();
        let mut st = self.state.lock();
        st.repl_offset = offset;
        st.master_data_time = master_time;
        let r = f(&mut st);
        if st.todo_update_state {
            st.update_state(now);
        }
        if st.todo_save {
            // Written atomically every time (temp file, rename), in order.
            // What Redis fsyncs (epochs, votes, role changes) is on disk
            // before we go on; the rest (a reshard's SETSLOTs) is written
            // by the saver thread, off the command path.
            let fsync = st.todo_fsync;
            let later = st.todo_fsync_later;
            if let Err(e) = self.saver.save(&st, fsync || later, fsync) {
                tracing::warn!("Could not save the cluster config: {e}");
            }
            st.todo_save = false;
            st.todo_fsync = false;
            st.todo_fsync_later = false;
        }
        let until = st
            .majority_contact(now)
            .map_or(i64::MAX, |t| t + st.settings.node_timeout);
        self.writable_until
            .store(until, std::sync::atomic::Ordering::Relaxed);
        if st.todo_route {
            st.todo_route = false;
            let allow = srv.with_config(route::RouteSettings::from_config);
            let prev = self.route.load();
            // Forgotten nodes linger in an updated route's table: rebuild
            // from scratch once in a while.
            let route = if st.route_full || prev.ids.len() > st.nodes.len() + 16 {
                Route::build(&st, allow)
            } else {
                Route::update(&prev, &st, allow, &st.route_slots)
            };
            st.route_full = false;
            st.route_slots.clear();
            let route = Route {
                version: prev.version + 1,
                ..route
            };
            self.route.store(Arc::new(route));
            self.route_changed.notify_waiters();
        }
        let mut spawn = Vec::new();
        {
            let mut txs = self.txs.lock();
            for c in st.connects.drain(..) {
                let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
                let written = Written::default();
                txs.insert(
                    c.link_id,
                    LinkTx {
                        tx,
                        written: written.clone(),
                    },
                );
                spawn.push((c, rx, written));
            }
            let outbox = std::mem::take(&mut st.outbox);
            let mut touched = Vec::new();
            for (link, frame) in outbox {
                if let Some(l) = txs.get(&link) {
                    let _ = l.tx.send(frame);
                    touched.push(link);
                }
            }
            // cluster-link-sendbuf-limit: a link whose peer does not read
            // what we queue is freed (it is reopened by the cron).
            let limit = st.settings.link_sendbuf_limit;
            if limit > 0 {
                touched.dedup();
                for link in touched {
                    let sent = st.links.get(&link).map_or(0, |l| l.sent_bytes);
                    let written = txs
                        .get(&link)
                        .map_or(0, |l| l.written.load(std::sync::atomic::Ordering::Relaxed));
                    if sent.saturating_sub(written) > limit {
                        tracing::debug!("Freeing cluster link {link}: send buffer over the limit");
                        st.links_limit_exceeded += 1;
                        st.drop_link(link);
                    }
                }
            }
            // Dropping the sender ends the link's task.
            for link in st.closed.drain(..) {
                txs.remove(&link);
            }
        }
        let publishes = std::mem::take(&mut st.publish_in);
        let dirty = std::mem::take(&mut st.dirty_slots);
        let actions = std::mem::take(&mut st.actions);
        let role_changed = std::mem::take(&mut st.role_changed);
        drop(st);
        for a in actions {
            match a {
                Action::PauseWrites { until } => srv.pause_writes(until),
                Action::Unpause => srv.unpause_writes(),
            }
        }
        if role_changed {
            srv.role_changed();
        }
        for (c, rx, written) in spawn {
            tokio::spawn(outbound(self.clone(), srv.clone(), c, rx, written));
        }
        for (ch, msg, sharded) in publishes {
            srv.deliver_publish(&ch, &msg, sharded);
        }
        for slot in dirty {
            let n = srv.drop_slot_keys(slot);
            tracing::info!("Deleted {n} keys from slot {slot} now owned by another node");
        }
        r
    }

    /// Open bus links, inbound and outbound, and the bytes queued on them
    /// not yet written (INFO cluster_connections and mem_cluster_links).
    pub fn links_summary(&self) -> (usize, u64) {
        let st = self.state.lock();
        let txs = self.txs.lock();
        let queued = st
            .links
            .iter()
            .filter_map(|(id, l)| {
                let written = txs
                    .get(id)?
                    .written
                    .load(std::sync::atomic::Ordering::Relaxed);
                Some(l.sent_bytes.saturating_sub(written))
            })
            .sum();
        (st.links.len(), queued)
    }

    /// Bytes queued and not yet written on a link (CLUSTER LINKS).
    pub fn link_queued(&self, link: u64, sent: u64) -> u64 {
        self.txs.lock().get(&link).map_or(0, |l| {
            sent.saturating_sub(l.written.load(std::sync::atomic::Ordering::Relaxed))
        })
    }

    /// Whether a write may be acknowledged here now (see `writable_until`).
    pub fn may_accept_writes(&self, now: i64) -> bool {
        now <= self
            .writable_until
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Sends a PUBLISH to every node, or a PUBLISHSHARD to the nodes of
    /// our shard (our master or ourselves, and its replicas).
    pub fn propagate_publish<H: Host>(
        self: &Arc<Self>,
        srv: &Arc<H>,
        ch: &[u8],
        msg: &[u8],
        shard: bool,
    ) {
        self.with(srv, |st| {
            let body = bus::Body::Publish {
                channel: ch.to_vec(),
                message: msg.to_vec(),
            };
            if !shard {
                let f = st.frame(bus::types::PUBLISH, body);
                st.broadcast(&f);
                return;
            }
            let f = st.frame(bus::types::PUBLISHSHARD, body);
            let master = st.my_master().id;
            let targets: Vec<u64> = st
                .nodes
                .values()
                .filter(|n| n.id != st.me && (n.id == master || n.master == Some(master)))
                .filter_map(|n| n.link)
                .collect();
            for l in targets {
                st.send_link(l, f.clone());
            }
        });
    }

    fn link_closed<H: Host>(self: &Arc<Self>, srv: &Arc<H>, link_id: u64) {
        self.with(srv, |st| st.free_link(link_id));
        self.txs.lock().remove(&link_id);
    }
}

async fn accept_loop<H: Host>(cluster: Arc<Cluster>, srv: Arc<H>, l: TcpListener) {
    loop {
        match l.accept().await {
            Ok((sock, _)) => {
                let _ = sock.set_nodelay(true);
                let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
                let written = Written::default();
                let link_id = cluster.with(&srv, |st| {
                    let id = st.register_inbound(now_ms());
                    let w = written.clone();
                    cluster.txs.lock().insert(id, LinkTx { tx, written: w });
                    id
                });
                tokio::spawn(run_link(
                    cluster.clone(),
                    srv.clone(),
                    link_id,
                    sock,
                    rx,
                    written,
                ));
            }
            Err(e) => {
                tracing::warn!("cluster bus accept failed: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
        }
    }
}

async fn outbound<H: Host>(
    cluster: Arc<Cluster>,
    srv: Arc<H>,
    c: Connect,
    rx: Rx,
    written: Written,
) {
    let timeout =
        std::time::Duration::from_millis(cluster.state.lock().settings.node_timeout as u64);
    let addr = if c.ip.contains(':') {
        format!("[{}]:{}", c.ip, c.cport)
    } else {
        format!("{}:{}", c.ip, c.cport)
    };
    let source = srv.with_config(|c| c.value("bind-source-addr").to_string());
    let connect = crate::net::connect(&c.ip, c.cport, &source);
    match tokio::time::timeout(timeout, connect).await {
        Ok(Ok(sock)) => {
            let _ = sock.set_nodelay(true);
            run_link(cluster, srv, c.link_id, sock, rx, written).await;
        }
        Ok(Err(e)) => {
            tracing::trace!("Connection to {addr} failed: {e}");
            cluster.link_closed(&srv, c.link_id);
        }
        Err(_) => {
            tracing::debug!("Connection to {addr} timed out");
            cluster.link_closed(&srv, c.link_id);
        }
    }
}

/// Reads frames and hands them to the state; writes what the state
/// queues for this link, coalescing queued frames into one write.
async fn run_link<H: Host>(
    cluster: Arc<Cluster>,
    srv: Arc<H>,
    link_id: u64,
    sock: TcpStream,
    mut rx: Rx,
    written: Written,
) {
    let remote_ip = sock
        .peer_addr()
        .map(|a| a.ip().to_canonical().to_string())
        .unwrap_or_default();
    let local_ip = sock
        .local_addr()
        .map(|a| a.ip().to_canonical().to_string())
        .unwrap_or_default();
    let (mut rd, mut wr) = sock.into_split();
    let mut buf = BytesMut::with_capacity(16 * 1024);
    let mut out: Vec<u8> = Vec::new();
    'link: loop {
        tokio::select! {
            f = rx.recv() => {
                let Some(f) = f else { break };
                out.clear();
                out.extend_from_slice(&f);
                while let Ok(more) = rx.try_recv() {
                    out.extend_from_slice(&more);
                }
                if wr.write_all(&out).await.is_err() {
                    break;
                }
                written.fetch_add(out.len() as u64, std::sync::atomic::Ordering::Relaxed);
            }
            r = rd.read_buf(&mut buf) => {
                match r {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
                loop {
                    let len = match bus::frame_len(&buf) {
                        Ok(Some(l)) => l,
                        Ok(None) => break,
                        Err(e) => {
                            tracing::warn!("Closing a cluster bus link: {e}");
                            break 'link;
                        }
                    };
                    if buf.len() < len {
                        // Grow as bytes arrive, never to the announced size.
                        buf.reserve((len - buf.len()).min(64 * 1024));
                        break;
                    }
                    let frame = buf.split_to(len);
                    let msg = match bus::decode(&frame) {
                        Ok(m) => m,
                        Err(e) => {
                            tracing::warn!("Dropping an invalid cluster bus message and closing the link: {e}");
                            break 'link;
                        }
                    };
                    let peer = gossip::Peer { link_id, remote_ip: &remote_ip, local_ip: &local_ip };
                    let keep = cluster.with(&srv, |st| st.process(msg, &peer, &HostKeys(&*srv), now_ms()));
                    if !keep {
                        break 'link;
                    }
                }
            }
        }
    }
    cluster.link_closed(&srv, link_id);
}

async fn cron<H: Host>(cluster: Arc<Cluster>, srv: Arc<H>, port: u16, bus: u16) {
    let mut tick = tokio::time::interval(std::time::Duration::from_millis(100));
    loop {
        tick.tick().await;
        let s = srv.with_config(|c| settings(c, port, bus));
        cluster.with(&srv, |st| {
            // Announced addresses may change with CONFIG SET.
            let me = st.myself();
            if me.port != s.port || me.cport != s.cport || me.hostname != s.announce_hostname {
                let (port, cport, host) = (s.port, s.cport, s.announce_hostname.clone());
                let n = st.myself_mut();
                n.port = port;
                n.cport = cport;
                n.hostname = host;
                st.changed();
            }
            if !s.announce_ip.is_empty() && st.myself().ip != s.announce_ip {
                let ip = s.announce_ip.clone();
                st.myself_mut().ip = ip;
                st.changed();
            }
            st.settings = s;
            st.cron(now_ms());
        });
    }
}
