//! Elections and everything that moves a shard's mastership: automatic
//! failover of a FAIL master, the votes masters grant, manual failover
//! (default, FORCE, TAKEOVER) and replica migration to orphaned masters.
//! The rules and log lines are Redis 7.0's (cluster.c); like the rest of
//! the state they take the time as an argument and draw randomness from
//! the state's generator, and what the server must do (pause writes,
//! follow a new role) comes out as [`Action`]s.

use super::bus::{flags, mflags, types, Body, Header};
use super::id::NodeId;
use super::state::State;

/// How long a manual failover may take (CLUSTER_MF_TIMEOUT).
pub const MF_TIMEOUT: i64 = 5000;
/// The master pauses writes for this many manual-failover timeouts.
const MF_PAUSE_MULT: i64 = 2;
/// A master must stay orphaned this long before a replica migrates to it.
const REPLICA_MIGRATION_DELAY: i64 = 5000;
/// "Currently unable to failover" is repeated at most this often (s).
const CANT_FAILOVER_RELOG_MS: i64 = 10_000;

/// What the server must do for the state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Hold write commands until the time given (a manual failover asked
    /// by our replica).
    PauseWrites { until: i64 },
    /// End the pause of a manual failover.
    Unpause,
}

/// Election and manual-failover bookkeeping (Redis keeps these in
/// `clusterState`).
#[derive(Debug, Clone)]
pub struct Election {
    /// When the current attempt may start (ms), 0 for none yet.
    pub auth_time: i64,
    pub auth_sent: bool,
    pub auth_rank: usize,
    pub auth_epoch: u64,
    /// Masters that granted their vote in `auth_epoch` (a duplicated ack
    /// never counts twice).
    pub voters: Vec<NodeId>,
    pub cant_reason: CantFailover,
    pub cant_logged_at: i64,
    /// Manual failover: its deadline, 0 when none is running.
    pub mf_end: i64,
    /// Master side: the replica that asked.
    pub mf_replica: Option<NodeId>,
    /// Master side: when writes were paused; the offset in our headers
    /// counts as final one cron tick later (writes already past the gate
    /// have landed by then).
    pub mf_paused_at: i64,
    /// Master side: our headers carry the PAUSED flag.
    pub mf_paused_flag: bool,
    /// Replica side: the paused master's offset, once it told us.
    pub mf_master_offset: Option<u64>,
    /// Replica side: caught up (or FORCE): the election may start.
    pub mf_can_start: bool,
}

impl Default for Election {
    fn default() -> Self {
        Election {
            auth_time: 0,
            auth_sent: false,
            auth_rank: 0,
            auth_epoch: 0,
            voters: Vec::new(),
            cant_reason: CantFailover::None,
            cant_logged_at: 0,
            mf_end: 0,
            mf_replica: None,
            mf_paused_at: 0,
            mf_paused_flag: false,
            mf_master_offset: None,
            mf_can_start: false,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CantFailover {
    None,
    DataAge,
    WaitingDelay,
    Expired,
    WaitingVotes,
}

impl CantFailover {
    fn text(self) -> &'static str {
        match self {
            CantFailover::None => "",
            CantFailover::DataAge => "Disconnected from master for longer than allowed. Please check the 'cluster-replica-validity-factor' configuration option.",
            CantFailover::WaitingDelay => "Waiting the delay before I can start a new failover.",
            CantFailover::Expired => "Failover attempt expired.",
            CantFailover::WaitingVotes => "Waiting for votes, but majority still not reached.",
        }
    }
}

/// The CLUSTER FAILOVER options.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Default,
    Force,
    Takeover,
}

impl State {
    fn auth_timeout(&self) -> i64 {
        (self.settings.node_timeout * 2).max(2000)
    }

    /// Replicas of our master with a better offset than ours.
    fn replica_rank(&self) -> usize {
        let Some(master) = self.myself().master else {
            return 0;
        };
        let mine = self.repl_offset;
        self.nodes
            .values()
            .filter(|n| {
                n.id != self.me
                    && n.is_replica()
                    && n.master == Some(master)
                    && !n.has(flags::NOFAILOVER)
                    && n.repl_offset > mine
            })
            .count()
    }

    fn non_failing_replicas(&self, id: &NodeId) -> usize {
        self.nodes
            .values()
            .filter(|n| n.is_replica() && n.master == Some(*id) && !n.failed())
            .count()
    }

    fn log_cant_failover(&mut self, reason: CantFailover, now: i64) {
        let e = &self.election;
        if reason == e.cant_reason && now - e.cant_logged_at < CANT_FAILOVER_RELOG_MS {
            return;
        }
        self.election.cant_reason = reason;
        // Right after the master failed this is expected: stay quiet.
        let quiet = self
            .myself()
            .master
            .and_then(|m| self.nodes.get(&m))
            .is_some_and(|m| m.failed() && now - m.fail_time < self.settings.node_timeout + 5000);
        if quiet {
            return;
        }
        self.election.cant_logged_at = now;
        tracing::info!("Currently unable to failover: {}", reason.text());
    }

    /// The replica side of an election, run by the cron and whenever a
    /// vote arrives (clusterHandleSlaveFailover).
    pub fn handle_replica_failover(&mut self, now: i64) {
        let manual = self.election.mf_end != 0 && self.election.mf_can_start;
        let me = self.myself();
        let master = me.master.and_then(|m| self.nodes.get(&m));
        let can_try = me.is_replica()
            && master.is_some_and(|m| {
                (m.failed() || manual)
                    && m.numslots > 0
                    && (manual || !self.settings.replica_no_failover)
            });
        if !can_try {
            self.election.cant_reason = CantFailover::None;
            return;
        }
        let timeout = self.settings.node_timeout;
        let auth_timeout = self.auth_timeout();
        let auth_retry = auth_timeout * 2;

        // How stale our data is: time since the master link last spoke
        // (or went down), minus the node timeout it took to notice.
        let mut data_age = now - self.master_data_time;
        if data_age > timeout {
            data_age -= timeout;
        }
        let factor = self.settings.replica_validity_factor;
        if factor > 0
            && data_age > self.settings.repl_ping_period * 1000 + timeout * factor
            && !manual
        {
            self.log_cant_failover(CantFailover::DataAge, now);
            return;
        }

        let auth_age = now - self.election.auth_time;
        if auth_age > auth_retry {
            let jitter = self.rng_below(500);
            let rank = self.replica_rank();
            let e = &mut self.election;
            e.auth_time = now + 500 + jitter + rank as i64 * 1000;
            e.voters.clear();
            e.auth_sent = false;
            e.auth_rank = rank;
            if e.mf_end != 0 {
                e.auth_time = now;
                e.auth_rank = 0;
            }
            tracing::info!(
                "Start of election delayed for {} milliseconds (rank #{}, offset {}).",
                self.election.auth_time - now,
                self.election.auth_rank,
                self.repl_offset
            );
            // Tell the siblings our offset so their ranks are right.
            self.broadcast_pong_to_siblings(now);
            if self.election.mf_end == 0 {
                return;
            }
        }
        if !self.election.auth_sent && self.election.mf_end == 0 {
            let rank = self.replica_rank();
            if rank > self.election.auth_rank {
                let added = (rank - self.election.auth_rank) as i64 * 1000;
                self.election.auth_time += added;
                self.election.auth_rank = rank;
                tracing::info!(
                    "Replica rank updated to #{rank}, added {added} milliseconds of delay."
                );
            }
        }
        if now < self.election.auth_time {
            self.log_cant_failover(CantFailover::WaitingDelay, now);
            return;
        }
        if now - self.election.auth_time > auth_timeout {
            self.log_cant_failover(CantFailover::Expired, now);
            return;
        }
        if !self.election.auth_sent {
            self.current_epoch += 1;
            self.election.auth_epoch = self.current_epoch;
            tracing::info!(
                "Starting a failover election for epoch {}.",
                self.current_epoch
            );
            let mut h = self.header(types::AUTH_REQUEST);
            if self.election.mf_end != 0 {
                h.mflags[0] |= mflags::FORCEACK;
            }
            let f = super::bus::encode_message(h, Body::Empty);
            self.broadcast(&f);
            self.election.auth_sent = true;
            self.todo_update_state = true;
            self.save_soon(true);
            return;
        }
        let quorum = self.size / 2 + 1;
        if self.election.voters.len() >= quorum {
            tracing::info!("Failover election won: I'm the new master.");
            let epoch = self.election.auth_epoch;
            if self.myself().config_epoch < epoch {
                self.myself_mut().config_epoch = epoch;
                tracing::info!("configEpoch set to {epoch} after successful failover");
            }
            self.replace_my_master(now);
        } else {
            self.log_cant_failover(CantFailover::WaitingVotes, now);
        }
    }

    fn rng_below(&mut self, n: i64) -> i64 {
        rand::Rng::random_range(&mut self.rng, 0..n)
    }

    fn broadcast_pong_to_siblings(&mut self, now: i64) {
        let Some(master) = self.myself().master else {
            return;
        };
        let targets: Vec<NodeId> = self
            .nodes
            .values()
            .filter(|n| {
                n.id != self.me && n.is_replica() && n.master == Some(master) && n.link.is_some()
            })
            .map(|n| n.id)
            .collect();
        for id in targets {
            let link = self.nodes.get(&id).and_then(|n| n.link);
            if let Some(l) = link {
                let f = self.build_ping(types::PONG, Some(&id), now);
                self.send_link(l, f);
            }
        }
    }

    /// Takes over our master's slots as a master of our own
    /// (clusterFailoverReplaceYourMaster).
    pub fn replace_my_master(&mut self, now: i64) {
        let me = self.me;
        let Some(old) = self.myself().master else {
            return;
        };
        if self.myself().is_master() {
            return;
        }
        self.set_node_as_master(&me);
        let bits = self
            .nodes
            .get(&old)
            .map(|n| n.slots.clone())
            .unwrap_or_default();
        for s in bits.iter() {
            if self.owner[s] == Some(old) {
                self.del_slot(s);
                self.add_slot(s, me);
            }
        }
        self.role_changed = true;
        self.update_state(now);
        self.changed();
        self.save_soon(true);
        self.broadcast_pong(now);
        self.reset_manual_failover();
    }

    /// A replica asks for our vote (clusterSendFailoverAuthIfNeeded).
    pub fn handle_auth_request(&mut self, node: NodeId, h: &Header, now: i64) {
        let me = self.myself();
        if me.is_replica() || me.numslots == 0 {
            return;
        }
        let Some(n) = self.nodes.get(&node) else {
            return;
        };
        let force = h.mflags[0] & mflags::FORCEACK != 0;
        let role = if n.is_master() { "master" } else { "replica" };
        if h.current_epoch < self.current_epoch {
            tracing::info!(
                "Failover auth denied to {node} ({role}): reqEpoch ({}) < curEpoch({})",
                h.current_epoch,
                self.current_epoch
            );
            return;
        }
        if self.last_vote_epoch == self.current_epoch {
            tracing::info!(
                "Failover auth denied to {node} ({role}): already voted for epoch {}",
                self.current_epoch
            );
            return;
        }
        let master = n.master.and_then(|m| self.nodes.get(&m));
        let why = if n.is_master() {
            Some("it is a master node")
        } else if master.is_none() {
            Some("I don't know its master")
        } else if master.is_some_and(|m| !m.failed()) && !force {
            Some("its master is up")
        } else {
            None
        };
        if let Some(why) = why {
            tracing::info!("Failover auth denied to {node} ({role}): {why}");
            return;
        }
        let Some(master) = master else { return };
        let master_id = master.id;
        let wait = self.settings.node_timeout * 2;
        if now - master.voted_time < wait {
            tracing::info!(
                "Failover auth denied to {node} ({role}): can't vote about this master before {} milliseconds",
                wait - (now - master.voted_time)
            );
            return;
        }
        // Every slot it claims must not be served by someone with a newer
        // configuration than the one it knows.
        for s in h.myslots.iter() {
            let Some(o) = self.owner[s].and_then(|o| self.nodes.get(&o)) else {
                continue;
            };
            if o.config_epoch <= h.config_epoch {
                continue;
            }
            tracing::info!(
                "Failover auth denied to {node} ({role}): slot {s} epoch ({}) > reqEpoch ({})",
                o.config_epoch,
                h.config_epoch
            );
            return;
        }
        self.last_vote_epoch = self.current_epoch;
        if let Some(m) = self.nodes.get_mut(&master_id) {
            m.voted_time = now;
        }
        self.save_soon(true);
        let f = self.frame(types::AUTH_ACK, Body::Empty);
        if let Some(l) = self.nodes.get(&node).and_then(|n| n.link) {
            self.send_link(l, f);
        }
        tracing::info!(
            "Failover auth granted to {node} ({role}) for epoch {}",
            self.current_epoch
        );
    }

    /// A master voted for us.
    pub fn handle_auth_ack(&mut self, sender: NodeId, h: &Header, now: i64) {
        let Some(n) = self.nodes.get(&sender) else {
            return;
        };
        if n.is_master()
            && n.numslots > 0
            && h.current_epoch >= self.election.auth_epoch
            && !self.election.voters.contains(&sender)
        {
            self.election.voters.push(sender);
            self.handle_replica_failover(now);
        }
    }

    /// Our replica asks us to let it take over (MFSTART).
    pub fn handle_mfstart(&mut self, sender: NodeId, now: i64) {
        let is_mine = self
            .nodes
            .get(&sender)
            .is_some_and(|n| n.master == Some(self.me) && n.is_replica());
        if !is_mine || !self.myself().is_master() {
            return;
        }
        self.reset_manual_failover();
        self.election.mf_end = now + MF_TIMEOUT;
        self.election.mf_replica = Some(sender);
        self.election.mf_paused_at = now;
        self.actions.push(Action::PauseWrites {
            until: now + MF_TIMEOUT * MF_PAUSE_MULT,
        });
        tracing::info!("Manual failover requested by replica {sender}.");
    }

    /// A message from our master: during a manual failover, the first one
    /// sent while it is paused gives the offset we must reach.
    pub fn note_master_offset(&mut self, sender: NodeId, h: &Header) {
        if self.election.mf_end != 0
            && self.myself().is_replica()
            && self.myself().master == Some(sender)
            && h.mflags[0] & mflags::PAUSED != 0
            && self.election.mf_master_offset.is_none()
        {
            self.election.mf_master_offset = Some(h.offset);
            tracing::info!(
                "Received replication offset for paused master manual failover: {}",
                h.offset
            );
        }
    }

    /// Ends any manual failover; a master resumes writes.
    pub fn reset_manual_failover(&mut self) {
        let e = &mut self.election;
        if e.mf_replica.is_some() || (e.mf_end != 0 && e.mf_paused_at != 0) {
            self.actions.push(Action::Unpause);
        }
        let e = &mut self.election;
        e.mf_end = 0;
        e.mf_replica = None;
        e.mf_paused_at = 0;
        e.mf_paused_flag = false;
        e.mf_master_offset = None;
        e.mf_can_start = false;
    }

    /// CLUSTER FAILOVER on this node. `Err` carries Redis's error text.
    pub fn manual_failover(&mut self, mode: Mode, now: i64) -> Result<(), &'static str> {
        let me = self.myself();
        if me.is_master() {
            return Err("ERR You should send CLUSTER FAILOVER to a replica");
        }
        let Some(master) = me.master.and_then(|m| self.nodes.get(&m)) else {
            return Err("ERR I'm a replica but my master is unknown to me");
        };
        if mode == Mode::Default && (master.failed() || master.link.is_none()) {
            return Err("ERR Master is down or failed, please use CLUSTER FAILOVER FORCE");
        }
        let master_id = master.id;
        self.reset_manual_failover();
        self.election.mf_end = now + MF_TIMEOUT;
        match mode {
            Mode::Takeover => {
                tracing::info!("Taking over the master (user request).");
                self.bump_epoch_without_consensus();
                self.replace_my_master(now);
            }
            Mode::Force => {
                tracing::info!("Forced failover user request accepted.");
                self.election.mf_can_start = true;
            }
            Mode::Default => {
                tracing::info!("Manual failover user request accepted.");
                let f = self.frame(types::MFSTART, Body::Empty);
                if let Some(l) = self.nodes.get(&master_id).and_then(|n| n.link) {
                    self.send_link(l, f);
                }
            }
        }
        Ok(())
    }

    /// Replica side of a default manual failover: start once the master's
    /// paused offset is reached (clusterHandleManualFailover).
    fn handle_manual_failover(&mut self) {
        let e = &self.election;
        if e.mf_end == 0 || e.mf_can_start {
            return;
        }
        let Some(target) = e.mf_master_offset else {
            return;
        };
        if target == self.repl_offset {
            self.election.mf_can_start = true;
            tracing::info!("All master replication stream processed, manual failover can start.");
        }
    }

    /// The cron's failover duties, after failure detection.
    pub fn failover_cron(&mut self, now: i64) {
        // Our own NOFAILOVER flag follows the config.
        let nofail = self.settings.replica_no_failover;
        if self.myself().has(flags::NOFAILOVER) != nofail {
            let n = self.myself_mut();
            n.flags ^= flags::NOFAILOVER;
            self.save_soon(false);
        }
        if self.election.mf_end != 0 && self.election.mf_end < now {
            tracing::info!("Manual failover timed out.");
            self.reset_manual_failover();
        }
        // A master being failed over by its replica pings it each tick so
        // the paused offset arrives quickly; headers say PAUSED (with a
        // final offset) from the tick after the pause began.
        if let Some(r) = self.election.mf_replica {
            if self.myself().is_master() && self.election.mf_end != 0 {
                self.election.mf_paused_flag = now - self.election.mf_paused_at >= 100;
                self.send_ping(&r, types::PING, now);
            }
        }
        if !self.myself().is_replica() {
            return;
        }
        // Orphaned masters: serving slots, no working replica, but used to
        // have one (MIGRATE_TO).
        let mut orphaned = 0;
        let mut max_replicas = 0;
        let mut mine = 0;
        let my_master = self.myself().master;
        for n in self.nodes.values() {
            if !n.is_master() || n.failed() {
                continue;
            }
            let ok = self.non_failing_replicas(&n.id);
            if ok == 0 && n.numslots > 0 && n.has(flags::MIGRATE_TO) {
                orphaned += 1;
            }
            max_replicas = max_replicas.max(ok);
            if my_master == Some(n.id) {
                mine = ok;
            }
        }
        self.handle_manual_failover();
        self.handle_replica_failover(now);
        if orphaned > 0
            && max_replicas >= 2
            && mine == max_replicas
            && self.settings.allow_replica_migration
        {
            self.handle_replica_migration(max_replicas, now);
        }
    }

    /// Moves to an orphaned master if we are the chosen replica
    /// (clusterHandleSlaveMigration).
    fn handle_replica_migration(&mut self, max_replicas: usize, now: i64) {
        if !self.ok {
            return;
        }
        let Some(my_master) = self.myself().master else {
            return;
        };
        if !self.nodes.contains_key(&my_master) {
            return;
        }
        if self.non_failing_replicas(&my_master) as i64 <= self.settings.migration_barrier {
            return;
        }
        let mut candidate = self.me;
        let mut target: Option<NodeId> = None;
        let masters: Vec<NodeId> = self
            .nodes
            .values()
            .filter(|n| n.is_master())
            .map(|n| n.id)
            .collect();
        for id in masters {
            let ok = self.non_failing_replicas(&id);
            let n = &self.nodes[&id];
            let orphan = !n.failed() && n.has(flags::MIGRATE_TO) && ok == 0;
            let numslots = n.numslots;
            if orphan {
                if target.is_none() && numslots > 0 {
                    target = Some(id);
                }
                let n = self.nodes.get_mut(&id).expect("listed above");
                if n.orphaned_time == 0 {
                    n.orphaned_time = now;
                }
            } else if let Some(n) = self.nodes.get_mut(&id) {
                n.orphaned_time = 0;
            }
            if ok == max_replicas {
                for r in self.replicas_of(&id) {
                    if r.id < candidate {
                        candidate = r.id;
                    }
                }
            }
        }
        let Some(t) = target else { return };
        let since = self.nodes.get(&t).map(|n| n.orphaned_time).unwrap_or(now);
        if candidate == self.me && now - since > REPLICA_MIGRATION_DELAY {
            tracing::info!("Migrating to orphaned master {t}");
            self.set_my_master(t);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::node::Node;
    use crate::cluster::state::Settings;

    /// Three masters; `a` has two replicas (one is us), `b` one (failed).
    fn cluster() -> (State, NodeId, NodeId) {
        let s = Settings::defaults(7000, 17000, "nodes.conf".into());
        let mut st = State::seeded(s, 0, 7);
        let me = st.me;
        let mut ids = Vec::new();
        for _ in 0..5 {
            let id = st.random_id();
            let n = Node::new(id, id, flags::MASTER, 0);
            st.add_node(n);
            ids.push(id);
        }
        let (a, b, c) = (ids[0], ids[1], ids[2]);
        for (i, m) in [a, b, c].iter().enumerate() {
            for s in i * 5000..(i + 1) * 5000 {
                st.add_slot(s, *m);
            }
        }
        for s in 15000..crate::keyspace::SLOTS {
            st.add_slot(s, c);
        }
        for (r, m) in [(ids[3], a), (ids[4], b)] {
            let n = st.nodes.get_mut(&r).unwrap();
            n.flags = flags::SLAVE;
            n.master = Some(m);
        }
        st.nodes.get_mut(&b).unwrap().flags |= flags::MIGRATE_TO;
        st.set_my_master(a);
        st.nodes.get_mut(&ids[4]).unwrap().flags |= flags::FAIL;
        st.update_state(10_000);
        (st, me, b)
    }

    #[test]
    fn the_lowest_id_replica_of_the_richest_master_migrates_after_the_delay() {
        let (mut st, me, b) = cluster();
        assert!(st.ok);
        let other = st
            .nodes
            .values()
            .find(|n| n.is_replica() && n.id != me && n.master == st.myself().master)
            .unwrap()
            .id;
        st.failover_cron(20_000);
        assert_ne!(st.myself().master, Some(b), "not before the delay");
        st.failover_cron(26_000);
        let moved = st.myself().master == Some(b);
        assert_eq!(moved, me < other, "only the lowest id moves");
    }

    /// Times as the shell gives them (unix ms): far from 0, as an
    /// election's first attempt assumes.
    const BASE: i64 = 1_700_000_000_000;

    fn frames(st: &State, typ: u16) -> usize {
        st.outbox
            .iter()
            .filter(|(_, f)| u16::from_be_bytes([f[12], f[13]]) == typ)
            .count()
    }

    fn connect_all(st: &mut State) {
        let ids: Vec<NodeId> = st.nodes.keys().filter(|i| **i != st.me).copied().collect();
        for id in ids {
            st.nodes.get_mut(&id).unwrap().ip = "127.0.0.1".into();
            st.connect(&id, 0);
        }
    }

    #[test]
    fn a_replica_with_no_failover_set_never_asks_for_votes() {
        let (mut st, _me, _b) = cluster();
        st.settings.allow_replica_migration = false;
        connect_all(&mut st);
        let a = st.myself().master.unwrap();
        let m = st.nodes.get_mut(&a).unwrap();
        m.flags |= flags::FAIL;
        m.fail_time = BASE + 10_000;
        st.master_data_time = BASE + 10_000;
        st.settings.replica_no_failover = true;
        for t in (10_000..40_000).step_by(100) {
            st.failover_cron(BASE + t);
        }
        assert_eq!(frames(&st, types::AUTH_REQUEST), 0);
        assert!(st.myself().has(flags::NOFAILOVER));
        st.settings.replica_no_failover = false;
        for t in (40_000..45_000).step_by(100) {
            st.failover_cron(BASE + t);
        }
        assert!(!st.myself().has(flags::NOFAILOVER));
        // One election: a request to each of the other nodes.
        assert_eq!(frames(&st, types::AUTH_REQUEST), st.nodes.len() - 1);
    }

    #[test]
    fn stale_data_blocks_an_automatic_failover() {
        let (mut st, _me, _b) = cluster();
        st.settings.allow_replica_migration = false;
        connect_all(&mut st);
        let a = st.myself().master.unwrap();
        st.nodes.get_mut(&a).unwrap().flags |= flags::FAIL;
        // Last heard from the master long ago: more than
        // ping period + node timeout x validity factor past the timeout.
        st.master_data_time = BASE + 1;
        for t in (200_000..230_000).step_by(100) {
            st.failover_cron(BASE + t);
        }
        assert_eq!(frames(&st, types::AUTH_REQUEST), 0);
        // A validity factor of 0 lets any replica try.
        st.settings.replica_validity_factor = 0;
        for t in (230_000..235_000).step_by(100) {
            st.failover_cron(BASE + t);
        }
        assert_eq!(frames(&st, types::AUTH_REQUEST), st.nodes.len() - 1);
    }

    #[test]
    fn a_master_votes_once_per_epoch_for_a_failed_masters_replica() {
        let s = Settings::defaults(7000, 17000, "nodes.conf".into());
        let mut st = State::seeded(s, 0, 11);
        let me = st.me;
        for sl in 0..8000 {
            st.add_slot(sl, me);
        }
        let m = st.random_id();
        st.add_node(Node::new(m, m, flags::MASTER, 0));
        for sl in 8000..crate::keyspace::SLOTS {
            st.add_slot(sl, m);
        }
        let (r1, r2) = (st.random_id(), st.random_id());
        for r in [r1, r2] {
            let mut n = Node::new(r, r, flags::SLAVE, 0);
            n.master = Some(m);
            st.add_node(n);
        }
        connect_all(&mut st);
        st.current_epoch = 5;
        let ask = |st: &mut State, who: NodeId, epoch: u64, force: bool, now: i64| -> bool {
            let before = frames(st, types::AUTH_ACK);
            let h = Header {
                typ: types::AUTH_REQUEST,
                current_epoch: epoch,
                config_epoch: 0,
                sender: Some(who),
                myslots: st.nodes[&m].slots.clone(),
                mflags: [if force { mflags::FORCEACK } else { 0 }, 0, 0],
                ..Default::default()
            };
            st.current_epoch = st.current_epoch.max(epoch);
            st.handle_auth_request(who, &h, now);
            frames(st, types::AUTH_ACK) > before
        };
        assert!(!ask(&mut st, r1, 6, false, 100_000), "its master is up");
        assert!(
            ask(&mut st, r1, 6, true, 100_000),
            "a manual failover forces the ack"
        );
        assert_eq!(st.last_vote_epoch, 6);
        st.nodes.get_mut(&m).unwrap().flags |= flags::FAIL;
        assert!(
            !ask(&mut st, r2, 6, false, 100_000),
            "already voted in epoch 6"
        );
        assert!(
            !ask(&mut st, r2, 7, false, 100_000 + 29_000),
            "same master within 2x timeout"
        );
        assert!(
            !ask(&mut st, r2, 5, false, 200_000),
            "an epoch older than ours"
        );
        assert!(ask(&mut st, r2, 8, false, 200_000));
        assert!(
            !ask(&mut st, m, 9, false, 300_000),
            "a master never gets a vote"
        );
    }
}
