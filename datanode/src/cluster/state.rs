//! The cluster state: the node table, who serves each slot, the epochs,
//! and the open links. One owner at a time (behind the cluster mutex):
//! bus messages, the cron and CLUSTER commands all go through here.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;

use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::SeedableRng;

use super::bus::{self, flags, types, Body, Ext, Gossip, Header, Message, SlotBits};
use super::id::NodeId;
use super::node::{write_ranges, Node};
use crate::keyspace::SLOTS;

/// Settings the state reads; refreshed from the config by the cron.
#[derive(Clone, Debug)]
pub struct Settings {
    pub node_timeout: i64,
    pub require_full_coverage: bool,
    pub allow_replica_migration: bool,
    /// `cluster-replica-validity-factor` (0: any data age may fail over).
    pub replica_validity_factor: i64,
    /// `repl-ping-replica-period`, seconds.
    pub repl_ping_period: i64,
    /// `cluster-replica-no-failover`.
    pub replica_no_failover: bool,
    /// `cluster-migration-barrier`.
    pub migration_barrier: i64,
    /// `cluster-link-sendbuf-limit` in bytes (0: none).
    pub link_sendbuf_limit: u64,
    pub announce_ip: String,
    pub announce_hostname: String,
    /// Client port we announce.
    pub port: u16,
    /// Bus port we announce.
    pub cport: u16,
    pub config_file: PathBuf,
}

/// A bus connection as the state sees it: an id the shell maps to a
/// socket. Frames for it go to [`State::outbox`].
pub struct Link {
    /// The node it belongs to: set at creation for outbound links, once
    /// the sender is known for inbound ones.
    pub node: Option<NodeId>,
    pub inbound: bool,
    pub ctime: i64,
    /// Bytes queued on it so far (CLUSTER LINKS).
    pub sent_bytes: u64,
}

impl Settings {
    /// Redis's defaults for a node announcing `port` and `cport`.
    pub fn defaults(port: u16, cport: u16, config_file: PathBuf) -> Settings {
        Settings {
            node_timeout: 15000,
            require_full_coverage: true,
            allow_replica_migration: true,
            replica_validity_factor: 10,
            repl_ping_period: 10,
            replica_no_failover: false,
            migration_barrier: 1,
            link_sendbuf_limit: 0,
            announce_ip: String::new(),
            announce_hostname: String::new(),
            port,
            cport,
            config_file,
        }
    }
}

/// An outbound connection the state wants opened (by the shell).
#[derive(Debug, Clone)]
pub struct Connect {
    pub link_id: u64,
    pub ip: String,
    pub cport: u16,
}

/// CLUSTER_WRITABLE_DELAY: a master waits this long after start before it
/// can declare the cluster ok.
const WRITABLE_DELAY: i64 = 2000;
const FORGET_TTL_SECS: i64 = 60;

pub struct State {
    pub me: NodeId,
    pub nodes: BTreeMap<NodeId, Node>,
    pub owner: Vec<Option<NodeId>>,
    pub migrating: BTreeMap<u16, NodeId>,
    /// Slots credited to a master whose newer claim left them out: the
    /// next claim by anyone takes them (see `raise_master_epoch`).
    pub disowned: std::collections::BTreeSet<u16>,
    /// Slots an atomic slot migration granted to a target: its claim is
    /// taken whatever its epoch (Valkey's clusterSlotFailoverGranted).
    pub granted: std::collections::BTreeMap<u16, NodeId>,
    pub importing: BTreeMap<u16, NodeId>,
    pub current_epoch: u64,
    pub last_vote_epoch: u64,
    pub ok: bool,
    pub size: usize,
    /// Forgotten ids and until when (unix ms) they stay forgotten.
    pub blacklist: BTreeMap<NodeId, i64>,
    pub stats_sent: [u64; 11],
    pub stats_recv: [u64; 11],
    pub links: BTreeMap<u64, Link>,
    next_link: u64,
    pub connects: Vec<Connect>,
    /// Frames to send, by link, in order (drained by the shell).
    pub outbox: Vec<(u64, Vec<u8>)>,
    /// Links the state dropped: the shell closes their sockets.
    pub closed: Vec<u64>,
    /// All randomness (ids, gossip picks, election delays) comes from
    /// here, so a seeded state replays exactly.
    pub rng: StdRng,
    pub settings: Settings,
    /// Work to do before the lock is released.
    pub todo_save: bool,
    /// The save must be on disk before we go on (our own epochs, votes
    /// and role).
    pub todo_fsync: bool,
    /// The save is fsynced by the writer thread, but nobody waits for it:
    /// what we learned from others (their epochs, their slot claims) is
    /// taught again by gossip if a crash loses it.
    pub todo_fsync_later: bool,
    pub todo_update_state: bool,
    /// The routing snapshot must be rebuilt.
    pub todo_route: bool,
    /// Slots whose owner changed since the route was last made (the route
    /// is then updated, not rebuilt), unless `route_full`.
    pub route_slots: Vec<u16>,
    /// The next route must be built from scratch.
    pub route_full: bool,
    first_state_call: i64,
    among_minority_time: i64,
    /// Slots whose keys must be deleted because another node took them.
    pub dirty_slots: Vec<u16>,
    /// Messages received from the bus for local delivery (channel,
    /// message, sharded).
    pub publish_in: Vec<(Vec<u8>, Vec<u8>, bool)>,
    pub iteration: u64,
    /// Our replication offset, as the shell last read it: a master's
    /// stream end, a replica's applied offset (bus headers carry it; a
    /// failover ranks replicas by it).
    pub repl_offset: u64,
    /// A replica's last contact with its master's replication link (ms):
    /// its last byte while connected, when it went down otherwise (0 if
    /// never up). Set by the shell; the election reads the data age.
    pub master_data_time: i64,
    pub election: super::failover::Election,
    /// What the server must do (pause writes, …), drained by the shell.
    pub actions: Vec<super::failover::Action>,
    /// Our role or master changed: the shell re-points replication now.
    pub role_changed: bool,
    /// DEBUG DROP-CLUSTER-PACKET-FILTER: a message type dropped on
    /// receipt (-1 none, -2 all).
    pub drop_filter: i32,
    /// Links freed for exceeding `cluster-link-sendbuf-limit`.
    pub links_limit_exceeded: u64,
    /// DEBUG CLOSE-CLUSTER-LINK-ON-PACKET-DROP: a dropped message also
    /// closes its link.
    pub close_on_drop: bool,
}

impl State {
    pub fn new(settings: Settings, now: i64) -> State {
        Self::with_rng(settings, now, StdRng::from_os_rng())
    }

    /// A state whose every random choice follows `seed` (the simulator).
    pub fn seeded(settings: Settings, now: i64, seed: u64) -> State {
        Self::with_rng(settings, now, StdRng::seed_from_u64(seed))
    }

    fn with_rng(settings: Settings, now: i64, mut rng: StdRng) -> State {
        let me = NodeId::from_rng(&mut rng);
        let mut n = Node::new(
            me,
            NodeId::from_rng(&mut rng),
            flags::MYSELF | flags::MASTER | flags::EXTENSIONS_SUPPORTED,
            now,
        );
        n.port = settings.port;
        n.cport = settings.cport;
        n.ip = settings.announce_ip.clone();
        n.hostname = settings.announce_hostname.clone();
        let mut nodes = BTreeMap::new();
        nodes.insert(me, n);
        State {
            me,
            nodes,
            owner: vec![None; SLOTS],
            migrating: BTreeMap::new(),
            disowned: Default::default(),
            granted: Default::default(),
            importing: BTreeMap::new(),
            current_epoch: 0,
            last_vote_epoch: 0,
            ok: false,
            // Redis starts at 1 and recomputes only once the state may
            // change (after the writable delay).
            size: 1,
            blacklist: BTreeMap::new(),
            stats_sent: [0; 11],
            stats_recv: [0; 11],
            links: BTreeMap::new(),
            next_link: 1,
            connects: Vec::new(),
            outbox: Vec::new(),
            closed: Vec::new(),
            rng,
            settings,
            todo_save: true,
            todo_fsync: true,
            todo_fsync_later: false,
            todo_update_state: true,
            todo_route: true,
            route_slots: Vec::new(),
            route_full: true,
            first_state_call: 0,
            among_minority_time: 0,
            dirty_slots: Vec::new(),
            publish_in: Vec::new(),
            iteration: 0,
            repl_offset: 0,
            master_data_time: 0,
            election: Default::default(),
            actions: Vec::new(),
            role_changed: true,
            drop_filter: -1,
            links_limit_exceeded: 0,
            close_on_drop: false,
        }
    }

    /// A fresh node id from the state's generator.
    pub fn random_id(&mut self) -> NodeId {
        NodeId::from_rng(&mut self.rng)
    }

    /// A node entry with a fresh shard id.
    pub fn new_node(&mut self, id: NodeId, flags: u16, now: i64) -> Node {
        let shard = self.random_id();
        Node::new(id, shard, flags, now)
    }

    pub fn myself(&self) -> &Node {
        &self.nodes[&self.me]
    }
    pub fn myself_mut(&mut self) -> &mut Node {
        let me = self.me;
        self.nodes
            .get_mut(&me)
            .expect("myself is always in the table")
    }

    /// The node whose slots and epoch we advertise: ourselves, or our
    /// master when we are a replica.
    pub fn my_master(&self) -> &Node {
        let m = self.myself();
        if m.is_replica() {
            if let Some(master) = m.master.and_then(|id| self.nodes.get(&id)) {
                return master;
            }
        }
        m
    }

    pub fn save_soon(&mut self, fsync: bool) {
        self.todo_save = true;
        self.todo_fsync |= fsync;
    }

    /// Saves what another node told us: fsynced, but not waited for.
    /// Redis waits here too; a reshard's SETSLOT NODE on the source then
    /// queues behind the fsync the target's claim caused.
    pub fn save_learned(&mut self) {
        self.todo_save = true;
        self.todo_fsync_later = true;
    }

    pub fn changed(&mut self) {
        self.todo_update_state = true;
        self.todo_route = true;
        self.save_soon(false);
    }

    // ---- slots ----

    pub fn add_slot(&mut self, slot: usize, id: NodeId) -> bool {
        if self.owner[slot].is_some() {
            return false;
        }
        let Some(n) = self.nodes.get_mut(&id) else {
            return false;
        };
        n.slots.set(slot, true);
        n.numslots += 1;
        self.disowned.remove(&(slot as u16));
        self.owner[slot] = Some(id);
        self.todo_route = true;
        self.note_route_slot(slot);
        true
    }

    fn note_route_slot(&mut self, slot: usize) {
        if self.route_full {
            return;
        }
        // Past a few thousand, a rebuild is as cheap.
        if self.route_slots.len() >= 2048 {
            self.route_full = true;
            self.route_slots.clear();
        } else {
            self.route_slots.push(slot as u16);
        }
    }

    pub fn del_slot(&mut self, slot: usize) -> bool {
        self.disowned.remove(&(slot as u16));
        let Some(id) = self.owner[slot].take() else {
            return false;
        };
        if let Some(n) = self.nodes.get_mut(&id) {
            if n.slots.get(slot) {
                n.slots.set(slot, false);
                n.numslots -= 1;
            }
        }
        self.todo_route = true;
        self.note_route_slot(slot);
        true
    }

    pub fn del_node_slots(&mut self, id: &NodeId) -> usize {
        let Some(bits) = self.nodes.get(id).map(|n| n.slots.clone()) else {
            return 0;
        };
        let mut n = 0;
        for s in bits.iter() {
            if self.owner[s] == Some(*id) {
                self.del_slot(s);
                n += 1;
            }
        }
        n
    }

    // ---- membership ----

    pub fn new_link_id(&mut self) -> u64 {
        self.next_link += 1;
        self.next_link
    }

    pub fn add_node(&mut self, n: Node) {
        self.nodes.insert(n.id, n);
        self.todo_route = true;
    }

    /// Drops a node: its slots, links, the reports it filed, its place
    /// among its master's replicas.
    pub fn del_node(&mut self, id: &NodeId) {
        self.del_node_slots(id);
        self.migrating.retain(|_, n| n != id);
        self.importing.retain(|_, n| n != id);
        for n in self.nodes.values_mut() {
            n.del_fail_report(id);
            if n.master == Some(*id) && n.id != self.me {
                n.master = None;
            }
        }
        if let Some(n) = self.nodes.remove(id) {
            for l in [n.link, n.inbound_link].into_iter().flatten() {
                self.drop_link(l);
            }
        }
        self.todo_route = true;
    }

    /// Gives a handshake node its real id.
    pub fn rename(&mut self, old: &NodeId, new: NodeId) {
        if let Some(mut n) = self.nodes.remove(old) {
            n.id = new;
            for l in [n.link, n.inbound_link].into_iter().flatten() {
                if let Some(link) = self.links.get_mut(&l) {
                    link.node = Some(new);
                }
            }
            self.nodes.insert(new, n);
        }
    }

    /// Forgets a link and asks the shell to close its socket.
    pub fn drop_link(&mut self, link_id: u64) {
        if self.links.contains_key(&link_id) {
            self.closed.push(link_id);
        }
        self.free_link(link_id);
    }

    /// Forgets a link whose socket is gone (or going).
    pub fn free_link(&mut self, link_id: u64) {
        if let Some(l) = self.links.remove(&link_id) {
            if let Some(n) = l.node.and_then(|id| self.nodes.get_mut(&id)) {
                if n.link == Some(link_id) {
                    n.link = None;
                }
                if n.inbound_link == Some(link_id) {
                    n.inbound_link = None;
                }
            }
        }
    }

    pub fn in_blacklist(&mut self, id: &NodeId, now: i64) -> bool {
        self.blacklist.retain(|_, until| *until > now);
        self.blacklist.contains_key(id)
    }

    pub fn blacklist_add(&mut self, id: NodeId, now: i64) {
        self.blacklist.insert(id, now + FORGET_TTL_SECS * 1000);
    }

    /// Starts a handshake with an address (CLUSTER MEET): false when the
    /// same address already has a handshake in progress.
    pub fn start_handshake(&mut self, ip: &str, port: u16, cport: u16, now: i64) -> bool {
        if self
            .nodes
            .values()
            .any(|n| n.in_handshake() && n.ip == ip && n.port == port && n.cport == cport)
        {
            return false;
        }
        let id = self.random_id();
        let mut n = self.new_node(id, flags::HANDSHAKE | flags::MEET, now);
        n.ip = ip.to_string();
        n.port = port;
        n.cport = cport;
        self.add_node(n);
        true
    }

    /// Turns `id` into a master (clears replica state).
    pub fn set_node_as_master(&mut self, id: &NodeId) {
        let Some(n) = self.nodes.get_mut(id) else {
            return;
        };
        if n.is_master() {
            return;
        }
        // A replica turned master may be left with replicas to look after:
        // it counts as a replica-migration target.
        if n.master.is_some() && n.id != self.me {
            n.flags |= flags::MIGRATE_TO;
        }
        n.flags &= !flags::SLAVE;
        n.flags |= flags::MASTER;
        n.master = None;
        if *id == self.me {
            self.role_changed = true;
        }
        self.changed();
    }

    /// Makes myself a replica of `master` (the replication link itself is
    /// started by the replication layer).
    pub fn set_my_master(&mut self, master: NodeId) {
        let me = self.me;
        self.del_node_slots(&me);
        self.migrating.clear();
        self.importing.clear();
        let n = self.myself_mut();
        n.flags &= !(flags::MASTER | flags::MIGRATE_TO);
        n.flags |= flags::SLAVE;
        n.master = Some(master);
        if let Some(m) = self.nodes.get(&master) {
            let sid = m.shard_id;
            self.myself_mut().shard_id = sid;
        }
        self.role_changed = true;
        self.reset_manual_failover();
        self.changed();
        self.save_soon(true);
    }

    pub fn replicas_of(&self, id: &NodeId) -> Vec<&Node> {
        let mut v: Vec<&Node> = self
            .nodes
            .values()
            .filter(|n| n.is_replica() && n.master == Some(*id))
            .collect();
        v.sort_by_key(|n| n.id);
        v
    }

    /// Masters serving at least one slot.
    pub fn compute_size(&self) -> usize {
        self.nodes
            .values()
            .filter(|n| n.is_master() && n.numslots > 0)
            .count()
    }

    pub fn max_config_epoch(&self) -> u64 {
        self.nodes
            .values()
            .map(|n| n.config_epoch)
            .max()
            .unwrap_or(0)
    }

    /// Bump without consensus (BUMPEPOCH, SETSLOT NODE after an import,
    /// TAKEOVER): only when our epoch is 0 or not the greatest.
    pub fn bump_epoch_without_consensus(&mut self) -> bool {
        let max = self.max_config_epoch();
        let mine = self.myself().config_epoch;
        if mine == 0 || mine != max {
            self.current_epoch += 1;
            let e = self.current_epoch;
            self.myself_mut().config_epoch = e;
            self.save_soon(true);
            true
        } else {
            false
        }
    }

    /// For a master serving slots in a cluster of several such masters:
    /// the last time it heard from a majority of them (itself included, at
    /// `now`). `None` when the rule does not apply.
    pub fn majority_contact(&self, now: i64) -> Option<i64> {
        let me = self.myself();
        if !me.is_master() || me.numslots == 0 {
            return None;
        }
        let mut heard: Vec<i64> = self
            .nodes
            .values()
            .filter(|n| n.is_master() && n.numslots > 0)
            .map(|n| {
                if n.id == self.me {
                    now
                } else {
                    n.data_received
                }
            })
            .collect();
        if heard.len() < 2 {
            return None;
        }
        heard.sort_unstable_by(|a, b| b.cmp(a));
        Some(heard[heard.len() / 2])
    }

    // ---- the cluster state (ok / fail) ----

    pub fn update_state(&mut self, now: i64) {
        self.todo_update_state = false;
        if self.first_state_call == 0 {
            self.first_state_call = now;
        }
        let me_master = self.myself().is_master();
        if me_master && !self.ok && now - self.first_state_call < WRITABLE_DELAY {
            return;
        }
        // Full coverage: owners keep `numslots` in step with the slot
        // table, so counting the slots of non-failed owners is enough.
        let mut new_ok = true;
        if self.settings.require_full_coverage {
            let served: usize = self
                .nodes
                .values()
                .filter(|n| !n.failed())
                .map(|n| n.numslots)
                .sum();
            new_ok = served == SLOTS;
        }
        let mut size = 0;
        let mut reachable = 0;
        for n in self.nodes.values() {
            if n.is_master() && n.numslots > 0 {
                size += 1;
                if !n.failing() {
                    reachable += 1;
                }
            }
        }
        self.size = size;
        let quorum = size / 2 + 1;
        if reachable < quorum {
            new_ok = false;
            self.among_minority_time = now;
        }
        if new_ok != self.ok {
            let rejoin = self.settings.node_timeout.clamp(500, 5000);
            if new_ok && me_master && now - self.among_minority_time < rejoin {
                return;
            }
            tracing::info!(
                "Cluster state changed: {}",
                if new_ok { "ok" } else { "fail" }
            );
            self.ok = new_ok;
            self.todo_route = true;
        }
    }

    // ---- messages out ----

    pub fn header(&self, typ: u16) -> Header {
        let me = self.myself();
        let master = self.my_master();
        Header {
            typ,
            port: self.settings.port,
            current_epoch: self.current_epoch,
            config_epoch: master.config_epoch,
            offset: self.repl_offset,
            sender: Some(self.me),
            myslots: master.slots.clone(),
            slaveof: if me.is_replica() { me.master } else { None },
            myip: self.settings.announce_ip.clone(),
            extensions: 0,
            pport: 0,
            cport: self.settings.cport,
            flags: me.flags,
            state: if self.ok { 0 } else { 1 },
            mflags: [
                if self.election.mf_paused_flag && me.is_master() {
                    bus::mflags::PAUSED
                } else {
                    0
                },
                0,
                0,
            ],
        }
    }

    fn gossip_entry(n: &Node) -> Gossip {
        Gossip {
            node: n.id,
            ping_sent: (n.ping_sent / 1000) as u32,
            pong_received: (n.pong_received / 1000) as u32,
            ip: n.ip.clone(),
            port: n.port,
            cport: n.cport,
            flags: n.flags,
            pport: n.pport,
        }
    }

    /// A PING, PONG or MEET for the node behind `to` (excluded from the
    /// gossip), with a few random nodes plus every node we think is down.
    pub fn build_ping(&mut self, typ: u16, to: Option<&NodeId>, _now: i64) -> Vec<u8> {
        let total = self.nodes.len();
        let fresh = total.saturating_sub(2);
        let wanted = (total / 10).max(3).min(fresh);
        let candidates: Vec<&Node> = self
            .nodes
            .values()
            .filter(|n| {
                n.id != self.me
                    && Some(&n.id) != to
                    && !n.timed_out()
                    && !n.has(flags::HANDSHAKE | flags::NOADDR)
                    && !(n.link.is_none() && n.numslots == 0)
            })
            .collect();
        let mut entries: Vec<Gossip> = candidates
            .choose_multiple(&mut self.rng, wanted)
            .map(|n| Self::gossip_entry(n))
            .collect();
        for n in self.nodes.values() {
            if n.timed_out() && !n.has(flags::HANDSHAKE | flags::NOADDR) && Some(&n.id) != to {
                entries.push(Self::gossip_entry(n));
            }
        }
        // Redis 7.0 knows only HOSTNAME and logs a warning for any other
        // extension, so the rest go only to peers that advertise support.
        let mut exts = Vec::new();
        let me = self.myself();
        if !me.hostname.is_empty() {
            exts.push(Ext::Hostname(me.hostname.clone()));
        }
        let rich = to
            .and_then(|id| self.nodes.get(id))
            .is_some_and(|n| n.has(flags::EXTENSIONS_SUPPORTED));
        // FORGOTTEN_NODE is not sent: in Redis 7.0 a FORGET stays on the
        // node that ran it, and 7.0's `redis-cli --cluster del-node` relies
        // on that (it sends FORGET to every node and fails on one that
        // already forgot). One received from a 7.2+ peer is still obeyed.
        if rich {
            exts.push(Ext::ShardId(me.shard_id));
        }
        let mut header = self.header(typ);
        header.extensions = exts.len() as u16;
        let m = Message {
            header,
            body: Body::Gossip { entries, exts },
        };
        let mut out = Vec::with_capacity(bus::HEADER_LEN + 104 * 8);
        bus::encode(&m, &mut out);
        out
    }

    pub fn frame(&self, typ: u16, body: Body) -> Vec<u8> {
        let m = Message {
            header: self.header(typ),
            body,
        };
        let mut out = Vec::new();
        bus::encode(&m, &mut out);
        out
    }

    pub fn send_link(&mut self, link_id: u64, frame: Vec<u8>) {
        if frame.len() >= 14 {
            let t = u16::from_be_bytes([frame[12], frame[13]]) as usize;
            if t < self.stats_sent.len() {
                self.stats_sent[t] += 1;
            }
        }
        if let Some(l) = self.links.get_mut(&link_id) {
            l.sent_bytes += frame.len() as u64;
            self.outbox.push((link_id, frame));
        }
    }

    pub fn send_ping(&mut self, id: &NodeId, typ: u16, now: i64) {
        let Some(link) = self.nodes.get(id).and_then(|n| n.link) else {
            return;
        };
        let frame = self.build_ping(typ, Some(id), now);
        if typ == types::PING || typ == types::MEET {
            if let Some(n) = self.nodes.get_mut(id) {
                if n.ping_sent == 0 {
                    n.ping_sent = now;
                }
            }
        }
        self.send_link(link, frame);
    }

    /// To every known node we have a link to.
    pub fn broadcast(&mut self, frame: &[u8]) {
        let targets: Vec<u64> = self
            .nodes
            .values()
            .filter(|n| !n.has(flags::MYSELF | flags::HANDSHAKE))
            .filter_map(|n| n.link)
            .collect();
        for l in targets {
            self.send_link(l, frame.to_vec());
        }
    }

    pub fn broadcast_pong(&mut self, now: i64) {
        let targets: Vec<(NodeId, u64)> = self
            .nodes
            .values()
            .filter(|n| !n.has(flags::MYSELF | flags::HANDSHAKE))
            .filter_map(|n| n.link.map(|l| (n.id, l)))
            .collect();
        for (id, l) in targets {
            let f = self.build_ping(types::PONG, Some(&id), now);
            self.send_link(l, f);
        }
    }

    /// Opens (through the async side) an outbound link to `id`.
    pub fn connect(&mut self, id: &NodeId, now: i64) {
        let (ip, cport) = match self.nodes.get(id) {
            Some(n) if n.link.is_none() && !n.ip.is_empty() => (n.ip.clone(), n.cport),
            _ => return,
        };
        let link_id = self.new_link_id();
        self.links.insert(
            link_id,
            Link {
                node: Some(*id),
                inbound: false,
                ctime: now,
                sent_bytes: 0,
            },
        );
        if let Some(n) = self.nodes.get_mut(id) {
            n.link = Some(link_id);
        }
        self.connects.push(Connect { link_id, ip, cport });
        // The first packet: MEET for a node we were told to meet, else PING.
        // Keep an older ping_sent so a dead node still times out.
        let meet = self.nodes.get(id).is_some_and(|n| n.has(flags::MEET));
        let old_ping = self.nodes.get(id).map(|n| n.ping_sent).unwrap_or(0);
        self.send_ping(id, if meet { types::MEET } else { types::PING }, now);
        if let Some(n) = self.nodes.get_mut(id) {
            if old_ping != 0 {
                n.ping_sent = old_ping;
            }
            n.flags &= !flags::MEET;
        }
    }

    /// A connection someone opened to our bus port: its link id.
    pub fn register_inbound(&mut self, now: i64) -> u64 {
        let id = self.new_link_id();
        self.links.insert(
            id,
            Link {
                node: None,
                inbound: true,
                ctime: now,
                sent_bytes: 0,
            },
        );
        id
    }

    // ---- text forms ----

    /// One CLUSTER NODES line, without the trailing newline. `conf` adds
    /// the nodes.conf aux fields.
    pub fn describe(&self, n: &Node, conf: bool) -> String {
        let mut s = String::with_capacity(128);
        let _ = write!(s, "{} {}:{}@{}", n.id, n.ip, n.port, n.cport);
        if conf {
            let _ = write!(s, ",{},shard-id={}", n.hostname, n.shard_id);
        } else if !n.hostname.is_empty() {
            let _ = write!(s, ",{}", n.hostname);
        }
        s.push(' ');
        s.push_str(&n.flag_words());
        match n.master {
            Some(m) if n.is_replica() => {
                let _ = write!(s, " {m} ");
            }
            _ => s.push_str(" - "),
        }
        let epoch = match n.master.and_then(|m| self.nodes.get(&m)) {
            Some(m) if n.is_replica() => m.config_epoch,
            _ => n.config_epoch,
        };
        let connected = n.link.is_some() || n.has(flags::MYSELF);
        let _ = write!(
            s,
            "{} {} {} {}",
            n.ping_sent,
            n.pong_received,
            epoch,
            if connected {
                "connected"
            } else {
                "disconnected"
            }
        );
        write_ranges(&mut s, &n.slots);
        if n.id == self.me {
            for (slot, to) in &self.migrating {
                let _ = write!(s, " [{slot}->-{to}]");
            }
            for (slot, from) in &self.importing {
                let _ = write!(s, " [{slot}-<-{from}]");
            }
        }
        s
    }

    /// Nodes in a stable order: myself first, then by id.
    pub fn ordered(&self) -> Vec<&Node> {
        let mut v: Vec<&Node> = self.nodes.values().collect();
        v.sort_by_key(|n| (n.id != self.me, n.id));
        v
    }

    pub fn nodes_text(&self) -> String {
        let mut out = String::new();
        for n in self.ordered() {
            out.push_str(&self.describe(n, false));
            out.push('\n');
        }
        out
    }

    pub fn config_text(&self) -> String {
        let mut out = String::new();
        for n in self.ordered() {
            if n.in_handshake() {
                continue;
            }
            out.push_str(&self.describe(n, true));
            out.push('\n');
        }
        let _ = writeln!(
            out,
            "vars currentEpoch {} lastVoteEpoch {}",
            self.current_epoch, self.last_vote_epoch
        );
        out
    }

    pub fn info_text(&self) -> String {
        let mut assigned = 0;
        let mut ok = 0;
        let mut pfail = 0;
        let mut fail = 0;
        for s in 0..SLOTS {
            if let Some(n) = self.owner[s].and_then(|id| self.nodes.get(&id)) {
                assigned += 1;
                if n.failed() {
                    fail += 1;
                } else if n.timed_out() {
                    pfail += 1;
                } else {
                    ok += 1;
                }
            }
        }
        let mut out = String::new();
        let _ = write!(
            out,
            "cluster_state:{}\r\ncluster_slots_assigned:{assigned}\r\ncluster_slots_ok:{ok}\r\n\
             cluster_slots_pfail:{pfail}\r\ncluster_slots_fail:{fail}\r\ncluster_known_nodes:{}\r\n\
             cluster_size:{}\r\ncluster_current_epoch:{}\r\ncluster_my_epoch:{}\r\n",
            if self.ok { "ok" } else { "fail" },
            self.nodes.len(),
            self.size,
            self.current_epoch,
            self.my_master().config_epoch
        );
        let mut total = 0;
        for (i, c) in self.stats_sent.iter().enumerate() {
            if *c > 0 {
                let _ = write!(
                    out,
                    "cluster_stats_messages_{}_sent:{c}\r\n",
                    types::NAMES[i]
                );
                total += c;
            }
        }
        let _ = write!(out, "cluster_stats_messages_sent:{total}\r\n");
        let mut total = 0;
        for (i, c) in self.stats_recv.iter().enumerate() {
            if *c > 0 {
                let _ = write!(
                    out,
                    "cluster_stats_messages_{}_received:{c}\r\n",
                    types::NAMES[i]
                );
                total += c;
            }
        }
        let _ = write!(out, "cluster_stats_messages_received:{total}\r\n");
        let _ = write!(
            out,
            "total_cluster_links_buffer_limit_exceeded:{}\r\n",
            self.links_limit_exceeded
        );
        out
    }
}

/// Maximal runs of slots with the same owner: (start, end, owner).
pub fn slot_runs(owner: &[Option<NodeId>]) -> Vec<(usize, usize, NodeId)> {
    let mut out: Vec<(usize, usize, NodeId)> = Vec::new();
    for (s, o) in owner.iter().enumerate() {
        let Some(id) = o else { continue };
        match out.last_mut() {
            Some(last) if last.2 == *id && last.1 + 1 == s => last.1 = s,
            _ => out.push((s, s, *id)),
        }
    }
    out
}

impl SlotBits {
    pub fn from_owner(owner: &[Option<NodeId>], id: &NodeId) -> SlotBits {
        let mut b = SlotBits::default();
        for (s, o) in owner.iter().enumerate() {
            if o.as_ref() == Some(id) {
                b.set(s, true);
            }
        }
        b
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> Settings {
        Settings::defaults(7000, 17000, std::path::PathBuf::from("nodes.conf"))
    }

    #[test]
    fn headers_carry_the_replication_offset_the_shell_gave() {
        let mut st = State::new(settings(), 0);
        assert_eq!(st.header(crate::cluster::bus::types::PING).offset, 0);
        st.repl_offset = 12345;
        let h = st.header(crate::cluster::bus::types::PING);
        assert_eq!(h.offset, 12345);
        // And it survives the wire format.
        let frame = st.build_ping(crate::cluster::bus::types::PING, None, 0);
        let msg = crate::cluster::bus::decode(&frame).expect("decodes");
        assert_eq!(msg.header.offset, 12345);
    }
}
