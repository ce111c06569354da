//! Deterministic simulation of the cluster state machine: N nodes, a
//! network that delays, drops, duplicates and reorders bus messages,
//! partitions that heal, crashes and restarts from `nodes.conf`, manual
//! failovers, all on simulated time and driven by one seeded generator.
//!
//! Checked on every step: no two masters claim a slot with the same config
//! epoch; no master votes twice in one epoch; a replica becomes master only
//! with a majority of votes; and once everything is back and the network
//! has been quiet for a while, every node agrees on one owner per slot.
//!
//! `SIM_SEEDS=n` runs seeds 0..n (default 2000), `SIM_SEED=s` replays one
//! (add `RUST_LOG=info` to see the node logs). A failure prints its seed.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use datanode::cluster::bus::{self, types};
use datanode::cluster::conf;
use datanode::cluster::failover::{Action, Mode};
use datanode::cluster::gossip::{Keys, Peer};
use datanode::cluster::id::NodeId;
use datanode::cluster::state::{Settings, State};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const SLOTS: usize = 16384;

/// Promotions seen over all seeds: the run must exercise elections, not
/// just pass vacuously.
static PROMOTIONS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
const NODE_TIMEOUT: i64 = 1000;
const CRON_MS: i64 = 100;

struct NoKeys;
impl Keys for NoKeys {
    fn count_in_slot(&self, _slot: u16) -> usize {
        0
    }
}

struct SimNode {
    st: Option<State>,
    /// What the node last saved as nodes.conf.
    conf: String,
    cport: u16,
    /// The replication model: a master's offset grows with writes, a
    /// replica copies its master's while it can reach it.
    offset: u64,
    master_time: i64,
    paused_until: i64,
    restarts: u64,
}

#[derive(Debug)]
enum Ev {
    Cron(usize),
    // `inc` is the incarnation of the node the event is for: events left
    // over from before a restart must not hit the new process's links.
    Connect {
        from: usize,
        inc: u64,
        link: u64,
        cport: u16,
    },
    Deliver {
        to: usize,
        inc: u64,
        link: u64,
        frame: Vec<u8>,
    },
    Closed {
        node: usize,
        inc: u64,
        link: u64,
    },
    Crash(usize),
    Restart(usize),
    Partition(Vec<usize>),
    Heal,
    ManualFailover(usize, Mode),
}

struct Sim {
    seed: u64,
    rng: StdRng,
    now: i64,
    seq: u64,
    events: BTreeMap<(i64, u64), Ev>,
    nodes: Vec<SimNode>,
    /// (node, link) -> (peer node, peer link), both directions.
    pipes: BTreeMap<(usize, u64), (usize, u64)>,
    /// Frames queued on a link still connecting.
    pending: BTreeMap<(usize, u64), Vec<Vec<u8>>>,
    /// Node -> partition group (0 when healed).
    group: Vec<u8>,
    loss: f64,
    dup: f64,
    /// Votes sent: (voter, epoch) -> candidate.
    votes: BTreeMap<(NodeId, u64), NodeId>,
    masters: usize,
    log: Vec<String>,
}

fn settings(i: usize) -> Settings {
    let mut s = Settings::defaults(
        7000 + i as u16,
        17000 + i as u16,
        PathBuf::from(format!("nodes-{i}.conf")),
    );
    s.node_timeout = NODE_TIMEOUT;
    s.announce_ip = "127.0.0.1".into();
    s
}

impl Sim {
    fn new(seed: u64, n: usize, masters: usize) -> Sim {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut nodes = Vec::new();
        for i in 0..n {
            let st = State::seeded(settings(i), 0, rng.random());
            nodes.push(SimNode {
                st: Some(st),
                conf: String::new(),
                cport: 17000 + i as u16,
                offset: 0,
                master_time: 0,
                paused_until: 0,
                restarts: 0,
            });
        }
        let mut sim = Sim {
            seed,
            rng,
            now: 1_000_000,
            seq: 0,
            events: BTreeMap::new(),
            nodes,
            pipes: BTreeMap::new(),
            pending: BTreeMap::new(),
            group: vec![0; n],
            loss: 0.0,
            dup: 0.0,
            votes: BTreeMap::new(),
            masters,
            log: Vec::new(),
        };
        for i in 0..n {
            let phase = sim.rng.random_range(0..CRON_MS);
            sim.at(phase, Ev::Cron(i));
        }
        sim
    }

    fn at(&mut self, delay: i64, ev: Ev) {
        self.seq += 1;
        self.events.insert((self.now + delay, self.seq), ev);
    }

    /// One line per node: who it is and how it sees itself and slot 0.
    fn dump(&self) -> String {
        let mut out = String::new();
        for (i, n) in self.nodes.iter().enumerate() {
            let Some(st) = n.st.as_ref() else {
                out.push_str(&format!("node {i}: down\n"));
                continue;
            };
            let me = st.myself();
            let owner = st.owner[0];
            let oe = owner.and_then(|o| st.nodes.get(&o)).map(|o| o.config_epoch);
            out.push_str(&format!(
                "node {i} {}: {} of {:?} epoch {} current {} slots {} | slot 0 -> {:?} (epoch {:?})\n",
                st.me,
                if me.is_master() { "master" } else { "replica" },
                me.master,
                me.config_epoch,
                st.current_epoch,
                me.numslots,
                owner,
                oe
            ));
        }
        out
    }

    fn fail(&self, what: &str) -> ! {
        let tail: Vec<&String> = self.log.iter().rev().take(30).collect();
        panic!(
            "seed {}: {what} at t={}\n{}recent events (newest first):\n{:#?}\nreplay: SIM_SEED={} RUST_LOG=info cargo test -p datanode --test failover_sim -- --nocapture",
            self.seed,
            self.now,
            self.dump(),
            tail,
            self.seed
        );
    }

    fn id_of(&self, i: usize) -> Option<NodeId> {
        self.nodes[i].st.as_ref().map(|s| s.me)
    }

    fn index_of(&self, id: &NodeId) -> Option<usize> {
        self.nodes
            .iter()
            .position(|n| n.st.as_ref().is_some_and(|s| s.me == *id))
    }

    fn reachable(&self, a: usize, b: usize) -> bool {
        self.group[a] == self.group[b]
    }

    /// Runs `f` on node `i`'s state the way the shell does: inputs first,
    /// then everything the state left to do.
    fn with<R>(&mut self, i: usize, f: impl FnOnce(&mut State, i64) -> R) -> Option<R> {
        let now = self.now;
        let (offset, mtime) = (self.nodes[i].offset, self.nodes[i].master_time);
        let st = self.nodes[i].st.as_mut()?;
        let was_replica = st.myself().is_replica();
        st.repl_offset = offset;
        st.master_data_time = mtime;
        let r = f(st, now);
        self.after(i, was_replica);
        Some(r)
    }

    fn after(&mut self, i: usize, was_replica: bool) {
        let now = self.now;
        let node = &mut self.nodes[i];
        let Some(st) = node.st.as_mut() else {
            return;
        };
        if st.todo_update_state {
            st.update_state(now);
        }
        // The shell saves nodes.conf here whenever asked to, so what a
        // crash leaves on disk is the state after the last step: the text
        // is made at the crash, which is the same and much cheaper.
        st.todo_save = false;
        st.todo_fsync = false;
        st.todo_fsync_later = false;
        st.todo_route = false;
        st.dirty_slots.clear();
        st.publish_in.clear();
        st.role_changed = false;
        let connects = std::mem::take(&mut st.connects);
        let outbox = std::mem::take(&mut st.outbox);
        let closed = std::mem::take(&mut st.closed);
        let actions = std::mem::take(&mut st.actions);
        let me = st.me;
        let now_master = st.myself().is_master() && st.myself().numslots > 0;
        let voters = st.election.voters.clone();
        let auth_epoch = st.election.auth_epoch;
        for a in actions {
            self.nodes[i].paused_until = match a {
                Action::PauseWrites { until } => until,
                Action::Unpause => 0,
            };
        }
        if was_replica && now_master {
            self.log.push(format!(
                "node {i} ({me}) became master in epoch {auth_epoch}"
            ));
            PROMOTIONS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            self.check_majority(me, auth_epoch, &voters);
        }
        for c in connects {
            let inc = self.nodes[i].restarts;
            self.at(
                1,
                Ev::Connect {
                    from: i,
                    inc,
                    link: c.link_id,
                    cport: c.cport,
                },
            );
        }
        for (link, frame) in outbox {
            self.route(i, link, frame);
        }
        for link in closed {
            self.close(i, link);
        }
    }

    fn check_majority(&self, me: NodeId, epoch: u64, voters: &[NodeId]) {
        let distinct: BTreeSet<&NodeId> = voters.iter().collect();
        if distinct.len() < self.masters / 2 + 1 {
            self.fail(&format!("{me} became master with {} votes", distinct.len()));
        }
        for v in distinct {
            if self.votes.get(&(*v, epoch)) != Some(&me) {
                self.fail(&format!(
                    "{me} counted a vote from {v} in epoch {epoch} never sent to it"
                ));
            }
        }
    }

    fn route(&mut self, from: usize, link: u64, frame: Vec<u8>) {
        let Some(&(to, to_link)) = self.pipes.get(&(from, link)) else {
            self.pending.entry((from, link)).or_default().push(frame);
            return;
        };
        if frame.len() >= 24 && u16::from_be_bytes([frame[12], frame[13]]) == types::AUTH_ACK {
            let mut e = [0u8; 8];
            e.copy_from_slice(&frame[16..24]);
            let epoch = u64::from_be_bytes(e);
            let (Some(voter), Some(cand)) = (self.id_of(from), self.id_of(to)) else {
                return;
            };
            if let Some(prev) = self.votes.insert((voter, epoch), cand) {
                if prev != cand {
                    self.fail(&format!(
                        "{voter} voted twice in epoch {epoch}: for {prev} and {cand}"
                    ));
                }
            }
        }
        if self.rng.random_bool(self.loss) {
            return;
        }
        let copies = if self.rng.random_bool(self.dup) { 2 } else { 1 };
        for _ in 0..copies {
            let delay = if self.rng.random_bool(0.05) {
                self.rng.random_range(50..300)
            } else {
                self.rng.random_range(1..20)
            };
            let inc = self.nodes[to].restarts;
            self.at(
                delay,
                Ev::Deliver {
                    to,
                    inc,
                    link: to_link,
                    frame: frame.clone(),
                },
            );
        }
    }

    fn close(&mut self, node: usize, link: u64) {
        self.pending.remove(&(node, link));
        if let Some((peer, plink)) = self.pipes.remove(&(node, link)) {
            self.pipes.remove(&(peer, plink));
            let inc = self.nodes[peer].restarts;
            self.at(
                1,
                Ev::Closed {
                    node: peer,
                    inc,
                    link: plink,
                },
            );
        }
    }

    fn step(&mut self) -> bool {
        let Some(((t, _), ev)) = self.events.pop_first() else {
            return false;
        };
        self.now = t;
        match ev {
            Ev::Cron(i) => {
                self.at(CRON_MS, Ev::Cron(i));
                self.replicate(i);
                self.with(i, |st, now| st.cron(now));
            }
            Ev::Connect {
                from,
                inc,
                link,
                cport,
            } => {
                if self.nodes[from].st.is_none() || self.nodes[from].restarts != inc {
                    return true;
                }
                let target = self.nodes.iter().position(|n| n.cport == cport);
                let up = target.filter(|&t| self.nodes[t].st.is_some() && self.reachable(from, t));
                match up {
                    Some(t) => {
                        let Some(tl) = self.with(t, |st, now| st.register_inbound(now)) else {
                            return true;
                        };
                        self.pipes.insert((from, link), (t, tl));
                        self.pipes.insert((t, tl), (from, link));
                        for f in self.pending.remove(&(from, link)).unwrap_or_default() {
                            self.route(from, link, f);
                        }
                    }
                    None => {
                        // Refused at once by a dead host, timed out across
                        // a partition.
                        let delay = if target.is_some_and(|t| self.nodes[t].st.is_none()) {
                            1
                        } else {
                            NODE_TIMEOUT
                        };
                        self.pending.remove(&(from, link));
                        self.at(
                            delay,
                            Ev::Closed {
                                node: from,
                                inc,
                                link,
                            },
                        );
                    }
                }
            }
            Ev::Deliver {
                to,
                inc,
                link,
                frame,
            } => {
                if self.nodes[to].restarts != inc {
                    return true;
                }
                let Some(&(from, _)) = self.pipes.get(&(to, link)) else {
                    return true;
                };
                if !self.reachable(from, to) {
                    return true;
                }
                let msg = match bus::decode(&frame) {
                    Ok(m) => m,
                    Err(e) => self.fail(&format!("undecodable frame: {e}")),
                };
                let keep = self
                    .with(to, |st, now| {
                        let peer = Peer {
                            link_id: link,
                            remote_ip: "127.0.0.1",
                            local_ip: "127.0.0.1",
                        };
                        st.process(msg, &peer, &NoKeys, now)
                    })
                    .unwrap_or(true);
                if !keep {
                    self.with(to, |st, _| st.drop_link(link));
                }
            }
            Ev::Closed { node, inc, link } => {
                if self.nodes[node].restarts != inc {
                    return true;
                }
                self.pending.remove(&(node, link));
                self.with(node, |st, _| st.free_link(link));
            }
            Ev::Crash(i) => {
                if let Some(st) = self.nodes[i].st.take() {
                    self.nodes[i].conf = st.config_text();
                    self.log.push(format!("t={} crash node {i}", self.now));
                    let links: Vec<(usize, u64)> = self
                        .pipes
                        .keys()
                        .filter(|(n, _)| *n == i)
                        .copied()
                        .collect();
                    for (n, l) in links {
                        self.close(n, l);
                    }
                    self.pending.retain(|(n, _), _| *n != i);
                }
            }
            Ev::Restart(i) => {
                if self.nodes[i].st.is_none() {
                    self.log.push(format!("t={} restart node {i}", self.now));
                    self.nodes[i].restarts += 1;
                    let seed = self.rng.random();
                    let mut st = State::seeded(settings(i), self.now, seed);
                    let text = self.nodes[i].conf.clone();
                    if let Err(e) = conf::load_text(&mut st, &text, self.now) {
                        self.fail(&format!("node {i} cannot load its nodes.conf: {e}"));
                    }
                    self.nodes[i].master_time = 0;
                    self.nodes[i].paused_until = 0;
                    self.nodes[i].st = Some(st);
                    self.with(i, |_, _| ());
                }
            }
            Ev::Partition(side) => {
                self.log.push(format!("t={} partition {side:?}", self.now));
                for (i, g) in self.group.iter_mut().enumerate() {
                    *g = u8::from(side.contains(&i));
                }
            }
            Ev::Heal => {
                self.log.push(format!("t={} heal", self.now));
                self.group.iter_mut().for_each(|g| *g = 0);
            }
            Ev::ManualFailover(i, mode) => {
                let r = self.with(i, |st, now| st.manual_failover(mode, now));
                self.log.push(format!(
                    "t={} node {i} CLUSTER FAILOVER {mode:?}: {r:?}",
                    self.now
                ));
            }
        }
        true
    }

    /// The replication model, once per cron tick of node `i`.
    fn replicate(&mut self, i: usize) {
        let Some(st) = self.nodes[i].st.as_ref() else {
            return;
        };
        let me = st.myself();
        if me.is_master() {
            if self.nodes[i].paused_until <= self.now {
                self.nodes[i].offset += self.rng.random_range(0..5);
            }
            return;
        }
        let Some(m) = me.master.and_then(|id| self.index_of(&id)) else {
            return;
        };
        if self.reachable(i, m) {
            self.nodes[i].offset = self.nodes[m].offset;
            self.nodes[i].master_time = self.now;
        }
    }

    fn run_until(&mut self, t: i64) {
        while self
            .events
            .first_key_value()
            .is_some_and(|((at, _), _)| *at <= t)
        {
            self.step();
            if self.now % 50 == 0 {
                self.check_epochs();
            }
        }
        self.now = t;
        self.check_epochs();
    }

    /// No two masters claim one slot with the same config epoch.
    fn check_epochs(&self) {
        let claims: Vec<(NodeId, u64, &bus::SlotBits)> = self
            .nodes
            .iter()
            .filter_map(|n| n.st.as_ref())
            .filter(|s| s.myself().is_master() && s.myself().numslots > 0)
            .map(|s| (s.me, s.myself().config_epoch, &s.myself().slots))
            .collect();
        for (a, ea, sa) in &claims {
            for (b, eb, sb) in &claims {
                if a < b && ea == eb && sa.0.iter().zip(sb.0.iter()).any(|(x, y)| x & y != 0) {
                    self.fail(&format!(
                        "{a} and {b} both claim slots with config epoch {ea}"
                    ));
                }
            }
        }
    }

    /// Every node agrees on every slot's owner, and that owner serves it.
    fn converged(&self) -> Result<(), String> {
        let states: Vec<&State> = self.nodes.iter().filter_map(|n| n.st.as_ref()).collect();
        let first = states[0];
        // Each view as (owner, its slots): equal lists mean equal slot maps.
        let view = |st: &State| -> Vec<(NodeId, bus::SlotBits)> {
            st.nodes
                .values()
                .filter(|n| n.numslots > 0)
                .map(|n| (n.id, n.slots.clone()))
                .collect()
        };
        let reference = view(first);
        for st in &states {
            if view(st) != reference {
                let s = (0..SLOTS)
                    .find(|&s| st.owner[s] != first.owner[s])
                    .unwrap_or(0);
                return Err(format!(
                    "{} and {} disagree on slot {s}: {:?} vs {:?}",
                    st.me, first.me, st.owner[s], first.owner[s]
                ));
            }
        }
        for s in [0, SLOTS / 2, SLOTS - 1] {
            let Some(owner) = first.owner[s] else {
                return Err(format!("slot {s} has no owner"));
            };
            let Some(o) = states.iter().find(|st| st.me == owner) else {
                return Err(format!("slot {s} is owned by unknown node {owner}"));
            };
            if !o.myself().is_master() || !o.myself().slots.get(s) {
                return Err(format!("owner {owner} of slot {s} does not serve it"));
            }
        }
        let serving: usize = states
            .iter()
            .filter(|st| st.myself().is_master())
            .map(|st| st.myself().numslots)
            .sum();
        if serving != SLOTS {
            return Err(format!("{serving} slots served by self-declared masters"));
        }
        Ok(())
    }
}

/// Builds a cluster the way redis-cli does (MEET, ADDSLOTS with distinct
/// epochs, REPLICATE), then lets it settle.
fn bootstrap(seed: u64) -> Sim {
    let mut r = StdRng::seed_from_u64(seed ^ 0x5eed);
    let masters = r.random_range(3..=4);
    let n = masters + r.random_range(masters - 1..=masters * 2);
    let mut sim = Sim::new(seed, n, masters);
    for i in 1..n {
        sim.with(0, |st, now| {
            st.start_handshake("127.0.0.1", 7000 + i as u16, 17000 + i as u16, now)
        });
    }
    let deadline = sim.now + 10_000;
    while sim.now < deadline {
        let t = sim.now + 100;
        sim.run_until(t);
        let all_known = sim.nodes.iter().all(|nd| {
            nd.st
                .as_ref()
                .is_some_and(|s| s.nodes.len() == n && s.nodes.values().all(|x| !x.in_handshake()))
        });
        if all_known {
            break;
        }
    }
    for m in 0..masters {
        let (lo, hi) = (m * SLOTS / masters, (m + 1) * SLOTS / masters);
        sim.with(m, |st, _| {
            let me = st.me;
            for s in lo..hi {
                st.add_slot(s, me);
            }
            st.myself_mut().config_epoch = m as u64 + 1;
            st.current_epoch = st.current_epoch.max(m as u64 + 1);
            st.changed();
        });
    }
    for i in masters..n {
        let m = (i - masters) % masters;
        let mid = sim.id_of(m).expect("alive");
        sim.with(i, |st, _| st.set_my_master(mid));
    }
    let t = sim.now + 5_000;
    sim.run_until(t);
    if let Err(e) = sim.converged() {
        sim.fail(&format!("bootstrap did not converge: {e}"));
    }
    sim
}

fn run_seed(seed: u64) {
    let mut sim = bootstrap(seed);
    let n = sim.nodes.len();
    let start = sim.now;
    let chaos = sim.rng.random_range(8_000..25_000);
    sim.loss = [0.0, 0.01, 0.05, 0.1][sim.rng.random_range(0..4)];
    sim.dup = [0.0, 0.01, 0.05][sim.rng.random_range(0..3)];
    let faults = sim.rng.random_range(1..6);
    for _ in 0..faults {
        let t = sim.rng.random_range(0..chaos);
        let ev = match sim.rng.random_range(0..10) {
            0..=3 => {
                let i = sim.rng.random_range(0..n);
                let back = t + sim.rng.random_range(500..15_000);
                sim.events
                    .insert((start + back, u64::MAX - sim.seq), Ev::Restart(i));
                sim.seq += 1;
                Ev::Crash(i)
            }
            4..=6 => {
                let side: Vec<usize> = (0..n).filter(|_| sim.rng.random_bool(0.4)).collect();
                let back = t + sim.rng.random_range(500..10_000);
                sim.events
                    .insert((start + back, u64::MAX - sim.seq), Ev::Heal);
                sim.seq += 1;
                Ev::Partition(side)
            }
            _ => {
                let i = sim.rng.random_range(0..n);
                let mode = if sim.rng.random_bool(0.7) {
                    Mode::Default
                } else {
                    Mode::Force
                };
                Ev::ManualFailover(i, mode)
            }
        };
        sim.seq += 1;
        sim.events.insert((start + t, sim.seq), ev);
    }
    sim.run_until(start + chaos + 10_000);
    // Heal everything and let it settle.
    sim.loss = 0.0;
    sim.dup = 0.0;
    sim.group.iter_mut().for_each(|g| *g = 0);
    for i in 0..n {
        sim.at(0, Ev::Restart(i));
    }
    let end = sim.now + 60 * NODE_TIMEOUT;
    let mut last = Err(String::new());
    while sim.now < end {
        let t = sim.now + 500;
        sim.run_until(t);
        last = sim.converged();
        if last.is_ok() {
            // Stable: still agreed a few node timeouts later.
            let t = sim.now + 3 * NODE_TIMEOUT;
            sim.run_until(t);
            last = sim.converged();
            if last.is_ok() {
                return;
            }
        }
    }
    if let Err(e) = last {
        sim.fail(&format!("no convergence after healing: {e}"));
    }
}

#[test]
fn failover_simulation() {
    if let Ok(s) = std::env::var("SIM_SEED") {
        let _ = tracing_subscriber_init();
        run_seed(s.parse().expect("SIM_SEED is a number"));
        return;
    }
    let n: u64 = std::env::var("SIM_SEEDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    // Seeds are independent: spread them over the cores.
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get()) as u64;
    std::thread::scope(|s| {
        for t in 0..threads {
            s.spawn(move || {
                let mut seed = t;
                while seed < n {
                    run_seed(seed);
                    seed += threads;
                }
            });
        }
    });
    let promotions = PROMOTIONS.load(std::sync::atomic::Ordering::Relaxed);
    assert!(
        promotions >= n / 2,
        "only {promotions} replicas were promoted in {n} seeds"
    );
}

fn tracing_subscriber_init() -> Result<(), ()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init()
        .map_err(|_| ())
}
