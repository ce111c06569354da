//! What the state does with a bus message, and the 10 Hz cron: the
//! handshake, heartbeats, failure detection, epochs and slot ownership
//! rules of Redis Cluster (cluster-spec; Redis 7.0 behaviour).

use rand::seq::IteratorRandom;

use super::bus::{flags, types, Body, Ext, Gossip, Message, SlotBits};
use super::id::NodeId;
use super::state::State;
use crate::keyspace::SLOTS;

/// The socket addresses of the link a message came in on.
pub struct Peer<'a> {
    pub link_id: u64,
    /// The remote address (the sender's IP as we see it).
    pub remote_ip: &'a str,
    /// Our side's address (our IP as the sender sees it).
    pub local_ip: &'a str,
}

/// Callbacks into the keyspace for the few rules that need it.
pub trait Keys {
    fn count_in_slot(&self, slot: u16) -> usize;
}

impl State {
    /// Handles one decoded message. Returns false when the link must be
    /// closed.
    pub fn process(&mut self, msg: Message, peer: &Peer, keys: &dyn Keys, now: i64) -> bool {
        let h = &msg.header;
        let typ = h.typ;
        tracing::trace!(
            "bus: type {typ} from {:?} flags {:#x} mflags {:?} extensions {}",
            h.sender,
            h.flags,
            h.mflags,
            h.extensions
        );
        if (typ as usize) < self.stats_recv.len() {
            self.stats_recv[typ as usize] += 1;
        }
        if self.drop_filter == -2 || self.drop_filter == typ as i32 {
            tracing::warn!("Dropping packet that matches debug drop filter");
            return !self.close_on_drop;
        }
        let Some(link) = self.links.get(&peer.link_id) else {
            return false;
        };
        let link_inbound = link.inbound;
        let link_node = link.node;
        let sender_id = h.sender;
        let sender: Option<NodeId> = sender_id.filter(|id| {
            self.nodes
                .get(id)
                .is_some_and(|n| !n.in_handshake() && *id != self.me)
        });
        // Tie an inbound link to the node that speaks on it.
        if let Some(sid) = sender {
            if link_inbound && link_node.is_none() {
                let old = self.nodes.get(&sid).and_then(|n| n.inbound_link);
                if let Some(old) = old {
                    if old != peer.link_id {
                        self.drop_link(old);
                    }
                }
                if let Some(n) = self.nodes.get_mut(&sid) {
                    n.inbound_link = Some(peer.link_id);
                }
                if let Some(l) = self.links.get_mut(&peer.link_id) {
                    l.node = Some(sid);
                }
            }
        }
        if let Some(sid) = sender {
            if h.current_epoch > self.current_epoch {
                self.current_epoch = h.current_epoch;
                self.save_learned();
            }
            let n = self.nodes.get_mut(&sid).expect("checked above");
            n.data_received = now;
            n.repl_offset = h.offset;
            if h.flags & flags::EXTENSIONS_SUPPORTED != 0 {
                n.flags |= flags::EXTENSIONS_SUPPORTED;
            } else {
                n.flags &= !flags::EXTENSIONS_SUPPORTED;
            }
            // As Redis: any sender's newer config epoch is taken (a replica
            // carries its master's), whatever role we still think it has.
            if h.config_epoch > n.config_epoch {
                if h.slaveof.is_none() && n.is_master() {
                    self.raise_master_epoch(&sid, h.config_epoch, &h.myslots);
                } else {
                    n.config_epoch = h.config_epoch;
                    self.save_learned();
                }
            }
            self.note_master_offset(sid, h);
        }

        match typ {
            types::PING | types::PONG | types::MEET
                if !self.process_gossip_msg(
                    &msg,
                    peer,
                    sender,
                    link_inbound,
                    link_node,
                    keys,
                    now,
                ) =>
            {
                return false;
            }
            types::FAIL => {
                if let (Some(_), Body::Fail(failing)) = (sender, &msg.body) {
                    let me = self.me;
                    if let Some(n) = self.nodes.get_mut(failing) {
                        if n.id != me && !n.failed() {
                            tracing::info!("FAIL message received about {}", n.id);
                            n.flags |= flags::FAIL;
                            n.fail_time = now;
                            n.flags &= !flags::PFAIL;
                            self.changed();
                        }
                    }
                }
            }
            types::AUTH_REQUEST => {
                if let Some(sid) = sender {
                    self.handle_auth_request(sid, &msg.header, now);
                }
            }
            types::AUTH_ACK => {
                if let Some(sid) = sender {
                    self.handle_auth_ack(sid, &msg.header, now);
                }
            }
            types::MFSTART => {
                if let Some(sid) = sender {
                    self.handle_mfstart(sid, now);
                }
            }
            types::PUBLISH | types::PUBLISHSHARD => {
                if let (Some(_), Body::Publish { channel, message }) = (sender, msg.body) {
                    self.publish_in
                        .push((channel, message, typ == types::PUBLISHSHARD));
                }
            }
            types::UPDATE => {
                if let (
                    Some(_),
                    Body::Update {
                        config_epoch,
                        node,
                        slots,
                    },
                ) = (sender, &msg.body)
                {
                    let Some(n) = self.nodes.get(node) else {
                        return true;
                    };
                    if n.config_epoch >= *config_epoch {
                        return true;
                    }
                    if n.is_replica() {
                        self.set_node_as_master(node);
                    }
                    self.raise_master_epoch(node, *config_epoch, slots);
                    self.update_slots_config_with(*node, *config_epoch, slots, keys);
                }
            }
            _ => {}
        }
        true
    }

    #[allow(clippy::too_many_arguments)]
    fn process_gossip_msg(
        &mut self,
        msg: &Message,
        peer: &Peer,
        sender: Option<NodeId>,
        link_inbound: bool,
        mut link_node: Option<NodeId>,
        keys: &dyn Keys,
        now: i64,
    ) -> bool {
        let h = &msg.header;
        let typ = h.typ;
        let (entries, exts) = match &msg.body {
            Body::Gossip { entries, exts } => (entries.as_slice(), exts.as_slice()),
            _ => (&[][..], &[][..]),
        };
        if typ == types::PING || typ == types::MEET {
            // Learn our own address from the socket the peer reached.
            let mine_empty = self.myself().ip.is_empty();
            if (typ == types::MEET || mine_empty)
                && self.settings.announce_ip.is_empty()
                && !peer.local_ip.is_empty()
                && self.myself().ip != peer.local_ip
            {
                let ip = peer.local_ip.to_string();
                tracing::info!("IP address for this node updated to {ip}");
                self.myself_mut().ip = ip;
                self.save_soon(false);
                self.todo_route = true;
            }
            if sender.is_none() && typ == types::MEET {
                // Someone introduces itself: remember it under a temporary
                // name until its PONG on our own link tells us its id.
                let id = self.random_id();
                let mut n = self.new_node(id, flags::HANDSHAKE, now);
                n.ip = if h.myip.is_empty() {
                    peer.remote_ip.to_string()
                } else {
                    h.myip.clone()
                };
                n.port = h.port;
                n.pport = h.pport;
                n.cport = h.cport;
                self.add_node(n);
                self.save_soon(false);
                // A MEET is trusted: take the gossip it carries.
                self.process_gossip_section(h.sender, entries, None, now);
            }
            // Always answer with a PONG on the same link.
            let frame = self.build_ping(types::PONG, sender.as_ref(), now);
            self.send_link(peer.link_id, frame);
        }

        // On our own outbound link: handshake completion, id check, pong.
        if !link_inbound {
            if let Some(lnode) = link_node {
                let in_handshake = self.nodes.get(&lnode).is_some_and(|n| n.in_handshake());
                if in_handshake {
                    let Some(real) = h.sender else {
                        return false;
                    };
                    if let Some(s) = sender {
                        // We already know this node: refresh its address and
                        // forget the handshake entry.
                        let ip = self
                            .nodes
                            .get(&lnode)
                            .map(|n| n.ip.clone())
                            .unwrap_or_default();
                        self.update_address(&s, &ip, h.port, h.cport, h.pport);
                        self.del_node(&lnode);
                        return false;
                    }
                    if real == self.me || self.nodes.contains_key(&real) {
                        self.del_node(&lnode);
                        return false;
                    }
                    tracing::info!("Handshake with node {real} completed.");
                    self.rename(&lnode, real);
                    if let Some(n) = self.nodes.get_mut(&real) {
                        n.flags &= !flags::HANDSHAKE;
                        n.flags |= h.flags & (flags::MASTER | flags::SLAVE);
                    }
                    self.save_soon(false);
                    // Go on as Redis does: the pong below clears ping_sent.
                    link_node = Some(real);
                } else if h.sender != Some(lnode) {
                    // A different node answers at this address now.
                    tracing::info!("PONG contains mismatching sender ID; marking {lnode} noaddr");
                    if let Some(n) = self.nodes.get_mut(&lnode) {
                        n.flags |= flags::NOADDR;
                        n.ip.clear();
                        n.port = 0;
                        n.pport = 0;
                        n.cport = 0;
                    }
                    self.drop_link(peer.link_id);
                    self.save_soon(false);
                    return false;
                }
            }
        }

        // A known node pinging us from a new address.
        if let Some(s) = sender {
            if typ == types::PING && link_inbound {
                let ip = if h.myip.is_empty() {
                    peer.remote_ip.to_string()
                } else {
                    h.myip.clone()
                };
                self.update_address(&s, &ip, h.port, h.cport, h.pport);
            }
        }

        if !link_inbound && typ == types::PONG {
            if let Some(lnode) = link_node {
                if let Some(n) = self.nodes.get_mut(&lnode) {
                    n.pong_received = now;
                    n.ping_sent = 0;
                    if n.timed_out() {
                        n.flags &= !flags::PFAIL;
                        self.changed();
                    } else if n.failed() {
                        self.clear_failure_if_needed(&lnode, now);
                    }
                }
            }
        }

        let Some(sid) = sender else {
            return true;
        };
        // Role changes.
        match h.slaveof {
            None => self.set_node_as_master(&sid),
            Some(master_id) => {
                let was_master = self.nodes.get(&sid).is_some_and(|n| n.is_master());
                if was_master {
                    // Redis leaves its slots unassigned until the new
                    // owner's claim arrives, which shrinks the cluster
                    // size an election here would count. Its new master
                    // most likely took them (a failover): credit them to
                    // it, disowned, so any real claim still wins them.
                    // (If we still think that master is a replica, our
                    // news is older than the sender's: it is a master.)
                    let slots = self.nodes.get(&sid).map(|n| n.slots.clone());
                    self.del_node_slots(&sid);
                    let heir = master_id != self.me && self.nodes.contains_key(&master_id);
                    if heir {
                        self.set_node_as_master(&master_id);
                    }
                    if let (Some(slots), true) = (slots, heir) {
                        for s in slots.iter() {
                            if self.owner[s].is_none() && self.add_slot(s, master_id) {
                                self.disowned.insert(s as u16);
                            }
                        }
                    }
                    if let Some(n) = self.nodes.get_mut(&sid) {
                        n.flags &= !(flags::MASTER | flags::MIGRATE_TO);
                        n.flags |= flags::SLAVE;
                    }
                    self.changed();
                }
                if self.nodes.contains_key(&master_id)
                    && self.nodes.get(&sid).and_then(|n| n.master) != Some(master_id)
                {
                    if let Some(n) = self.nodes.get_mut(&sid) {
                        n.master = Some(master_id);
                    }
                    if let Some(m) = self.nodes.get_mut(&master_id) {
                        m.flags |= flags::MIGRATE_TO;
                    }
                    self.save_soon(false);
                    self.todo_route = true;
                }
            }
        }
        // Slots: does the sender (or its master) claim something new?
        let sender_master = match self.nodes.get(&sid) {
            Some(n) if n.is_master() => Some(sid),
            Some(n) => n.master.filter(|m| self.nodes.contains_key(m)),
            None => None,
        };
        let dirty = sender_master
            .and_then(|m| self.nodes.get(&m))
            .is_some_and(|m| m.slots != h.myslots);
        let sender_is_master = self.nodes.get(&sid).is_some_and(|n| n.is_master());
        if sender_is_master && dirty {
            self.update_slots_config_with(sid, h.config_epoch, &h.myslots, keys);
        }
        if dirty {
            // The sender is stale about a slot someone newer owns: tell it.
            for s in 0..SLOTS {
                if !h.myslots.get(s) {
                    continue;
                }
                let Some(owner) = self.owner[s] else { continue };
                if owner == sid {
                    continue;
                }
                let Some(o) = self.nodes.get(&owner) else {
                    continue;
                };
                if o.config_epoch > h.config_epoch {
                    let body = Body::Update {
                        config_epoch: o.config_epoch,
                        node: owner,
                        slots: o.slots.clone(),
                    };
                    let f = self.frame(types::UPDATE, body);
                    if let Some(l) = self.nodes.get(&sid).and_then(|n| n.link) {
                        self.send_link(l, f);
                    }
                    break;
                }
            }
        }
        // Two masters with the same config epoch: the smaller id moves on.
        if self.myself().is_master()
            && sender_is_master
            && h.config_epoch == self.myself().config_epoch
        {
            self.handle_epoch_collision(&sid);
        }
        self.process_gossip_section(Some(sid), entries, Some(sid), now);
        self.process_exts(&sid, exts, now);
        true
    }

    /// A master claims `slots` at a newer config epoch than we knew. That
    /// claim is its whole slot set: slots we still credit it with but it
    /// no longer claims are stale (say, from a nodes.conf written before
    /// it was failed over and then won elsewhere). Redis keeps them, and
    /// with them an owner whose real successor can never win them back
    /// with its lower epoch. We keep crediting them (so the cluster size
    /// an election counts does not shrink) but mark them disowned: the
    /// next claim from anyone takes them. The messages stay Redis's.
    fn raise_master_epoch(&mut self, id: &NodeId, epoch: u64, slots: &SlotBits) {
        let Some(n) = self.nodes.get_mut(id) else {
            return;
        };
        if epoch <= n.config_epoch {
            return;
        }
        n.config_epoch = epoch;
        let stale: Vec<usize> = n.slots.iter().filter(|&s| !slots.get(s)).collect();
        if *id != self.me {
            self.disowned.extend(stale.into_iter().map(|s| s as u16));
        }
        self.changed();
        self.save_learned();
    }

    fn update_address(&mut self, id: &NodeId, ip: &str, port: u16, cport: u16, pport: u16) {
        let Some(n) = self.nodes.get_mut(id) else {
            return;
        };
        if n.id == self.me || (n.ip == ip && n.port == port && n.cport == cport && n.pport == pport)
        {
            return;
        }
        tracing::info!("Address updated for node {id}, now {ip}:{port}");
        n.ip = ip.to_string();
        n.port = port;
        n.cport = cport;
        n.pport = pport;
        n.flags &= !flags::NOADDR;
        let link = n.link;
        if let Some(l) = link {
            self.drop_link(l);
        }
        self.save_soon(false);
        self.todo_route = true;
    }

    /// Gossip entries: failure reports from masters, pong times, and new
    /// nodes (only when a known node vouches for them).
    fn process_gossip_section(
        &mut self,
        sender_raw: Option<NodeId>,
        entries: &[Gossip],
        known_sender: Option<NodeId>,
        now: i64,
    ) {
        let sender_master =
            known_sender.filter(|s| self.nodes.get(s).is_some_and(|n| n.is_master()));
        let _ = sender_raw;
        let timeout = self.settings.node_timeout;
        for g in entries {
            if let Some(n) = self.nodes.get(&g.node) {
                let is_me = n.id == self.me;
                if let Some(sm) = sender_master {
                    if !is_me {
                        if g.flags & (flags::FAIL | flags::PFAIL) != 0 {
                            let added = self
                                .nodes
                                .get_mut(&g.node)
                                .is_some_and(|n| n.add_fail_report(sm, now));
                            if added {
                                tracing::debug!(
                                    "Node {sm} reported node {} as not reachable.",
                                    g.node
                                );
                            }
                            self.mark_failing_if_needed(&g.node, now);
                        } else if self
                            .nodes
                            .get_mut(&g.node)
                            .is_some_and(|n| n.del_fail_report(&sm))
                        {
                            tracing::debug!("Node {sm} reported node {} is back online.", g.node);
                        }
                    }
                }
                // Fresher pong time from a peer, for nodes we think are fine.
                let n = self.nodes.get_mut(&g.node).expect("looked up above");
                if g.flags & (flags::FAIL | flags::PFAIL) == 0
                    && n.ping_sent == 0
                    && n.fail_reports.is_empty()
                {
                    let pong = g.pong_received as i64 * 1000;
                    if pong > n.pong_received && pong <= now + 500 {
                        n.pong_received = pong;
                    }
                }
                // A node we cannot reach, gossiped at another address.
                if n.failing()
                    && g.flags & flags::NOADDR == 0
                    && n.link.is_none()
                    && !is_me
                    && (n.ip != g.ip || n.port != g.port || n.cport != g.cport)
                {
                    n.ip = g.ip.clone();
                    n.port = g.port;
                    n.pport = g.pport;
                    n.cport = g.cport;
                    n.flags &= !flags::NOADDR;
                    self.todo_route = true;
                }
                let _ = timeout;
            } else if known_sender.is_some()
                && g.flags & flags::NOADDR == 0
                && !self.in_blacklist(&g.node, now)
            {
                let mut n = self.new_node(g.node, g.flags & !(flags::MYSELF), now);
                n.ip = g.ip.clone();
                n.port = g.port;
                n.pport = g.pport;
                n.cport = g.cport;
                self.add_node(n);
                self.save_soon(false);
            }
        }
    }

    fn process_exts(&mut self, sid: &NodeId, exts: &[Ext], now: i64) {
        let mut hostname = String::new();
        let mut shard = None;
        for e in exts {
            match e {
                Ext::Hostname(h) => hostname = h.clone(),
                Ext::ShardId(id) => shard = Some(*id),
                Ext::ForgottenNode { node, ttl } => {
                    let my_master = self.myself().master;
                    if *node != self.me && Some(*node) != my_master && self.nodes.contains_key(node)
                    {
                        tracing::info!("Node {node} was forgotten by {sid}");
                        self.del_node(node);
                        self.save_soon(false);
                        self.blacklist.insert(*node, now + *ttl as i64 * 1000);
                    }
                }
                _ => {}
            }
        }
        let mut changed = false;
        if let Some(n) = self.nodes.get_mut(sid) {
            if n.hostname != hostname {
                n.hostname = hostname;
                changed = true;
            }
            if let Some(sh) = shard {
                if n.shard_id != sh {
                    n.shard_id = sh;
                    changed = true;
                }
            }
        }
        // A replica belongs to its master's shard: adopt the id the master
        // announces (it may have been unknown when we started replicating).
        if let Some(sh) = shard {
            if self.myself().master == Some(*sid) && self.myself().shard_id != sh {
                self.myself_mut().shard_id = sh;
                changed = true;
            }
        }
        if changed {
            self.save_soon(false);
            self.todo_route = true;
        }
    }

    /// PFAIL becomes FAIL once enough masters agree.
    pub fn mark_failing_if_needed(&mut self, id: &NodeId, now: i64) {
        let quorum = self.size / 2 + 1;
        let validity = self.settings.node_timeout * 2;
        let me_master = self.myself().is_master();
        let Some(n) = self.nodes.get_mut(id) else {
            return;
        };
        if !n.timed_out() || n.failed() {
            return;
        }
        let mut failures = n.count_fail_reports(now, validity);
        if me_master {
            failures += 1;
        }
        if failures < quorum {
            return;
        }
        tracing::info!("Marking node {id} as failing (quorum reached).");
        n.flags &= !flags::PFAIL;
        n.flags |= flags::FAIL;
        n.fail_time = now;
        let f = self.frame(types::FAIL, Body::Fail(*id));
        self.broadcast(&f);
        self.changed();
    }

    fn clear_failure_if_needed(&mut self, id: &NodeId, now: i64) {
        let undo = self.settings.node_timeout * 2;
        let Some(n) = self.nodes.get_mut(id) else {
            return;
        };
        if !n.failed() {
            return;
        }
        let clear = n.is_replica() || n.numslots == 0 || now - n.fail_time > undo;
        if clear {
            tracing::info!("Clear FAIL state for node {id}: it is reachable again.");
            n.flags &= !flags::FAIL;
            self.changed();
        }
    }

    fn handle_epoch_collision(&mut self, sid: &NodeId) {
        // Only the node with the smaller id acts.
        if *sid < self.me {
            return;
        }
        self.current_epoch += 1;
        let e = self.current_epoch;
        self.myself_mut().config_epoch = e;
        self.save_soon(true);
        tracing::info!("configEpoch collision with node {sid}. configEpoch set to {e}");
    }

    /// A master claims `slots` with `epoch`: take every slot whose owner
    /// has a lower epoch (or none), unless we are importing it.
    pub fn update_slots_config_with(
        &mut self,
        sender: NodeId,
        epoch: u64,
        slots: &SlotBits,
        keys: &dyn Keys,
    ) {
        if sender == self.me {
            return;
        }
        let me = self.me;
        let cur_master = if self.myself().is_master() {
            Some(me)
        } else {
            self.myself().master
        };
        let mut new_master = None;
        let mut dirty: Vec<u16> = Vec::new();
        let mut changed = false;
        let mut claimed = 0;
        let mut moved_from_ours = 0;
        let mut moved_granted = 0;
        for s in 0..SLOTS {
            if !slots.get(s) {
                continue;
            }
            claimed += 1;
            let owner = self.owner[s];
            if owner == Some(sender) {
                // Its own claim again: no longer disowned.
                self.disowned.remove(&(s as u16));
                continue;
            }
            if self.importing.contains_key(&(s as u16)) {
                continue;
            }
            let owner_epoch = owner
                .and_then(|o| self.nodes.get(&o))
                .map(|n| n.config_epoch);
            let disowned = owner != Some(me) && self.disowned.contains(&(s as u16));
            let granted = self.granted.get(&(s as u16)) == Some(&sender);
            if granted {
                self.granted.remove(&(s as u16));
                moved_granted += 1;
            }
            if owner.is_none() || owner_epoch.is_some_and(|e| e < epoch) || disowned || granted {
                // A granted slot's keys are dropped by its migration job,
                // off the bus's path.
                if owner == Some(me) && !granted && keys.count_in_slot(s as u16) > 0 {
                    dirty.push(s as u16);
                }
                if owner.is_some() && owner == cur_master {
                    new_master = Some(sender);
                    moved_from_ours += 1;
                }
                self.del_slot(s);
                self.add_slot(s, sender);
                changed = true;
            }
        }
        if !changed {
            return;
        }
        self.changed();
        self.save_learned();
        let cur_empty = cur_master
            .and_then(|m| self.nodes.get(&m))
            .is_some_and(|m| m.numslots == 0);
        // A master that handed its slots over by atomic slot migration
        // stays an (empty) master, as in Valkey.
        if moved_granted > 0 && moved_granted >= moved_from_ours {
            new_master = None;
        }
        if let Some(nm) = new_master {
            // Our shard lost its last slot to the sender: follow it (a
            // master only when allowed to, or when all it took was ours).
            if cur_empty && (self.settings.allow_replica_migration || claimed == moved_from_ours) {
                tracing::info!(
                    "Configuration change detected. Reconfiguring myself as a replica of {nm}"
                );
                self.set_my_master(nm);
                return;
            }
        }
        if !dirty.is_empty() {
            self.dirty_slots.extend(dirty);
        }
    }

    /// Ten times a second.
    pub fn cron(&mut self, now: i64) {
        self.iteration += 1;
        let timeout = self.settings.node_timeout;
        let handshake_timeout = timeout.max(1000);
        let ids: Vec<NodeId> = self.nodes.keys().copied().collect();
        for id in &ids {
            let Some(n) = self.nodes.get(id) else {
                continue;
            };
            if n.has(flags::MYSELF | flags::NOADDR) {
                continue;
            }
            if n.in_handshake() && now - n.ctime > handshake_timeout {
                tracing::debug!("handshake with {}:{} timed out", n.ip, n.port);
                self.del_node(id);
                continue;
            }
            if n.link.is_none() {
                self.connect(id, now);
            }
        }
        // Every second, ping the node we heard from least recently among a
        // few random ones.
        if self.iteration.is_multiple_of(10) {
            let pick = self
                .nodes
                .values()
                .filter(|n| {
                    n.link.is_some() && n.ping_sent == 0 && !n.has(flags::MYSELF | flags::HANDSHAKE)
                })
                .choose_multiple(&mut self.rng, 5)
                .into_iter()
                .min_by_key(|n| n.pong_received)
                .map(|n| n.id);
            if let Some(id) = pick {
                self.send_ping(&id, types::PING, now);
            }
        }
        let mut update = false;
        for id in &ids {
            let Some(n) = self.nodes.get(id) else {
                continue;
            };
            if n.has(flags::MYSELF | flags::NOADDR | flags::HANDSHAKE) {
                continue;
            }
            let ping_delay = now - n.ping_sent;
            let data_delay = now - n.data_received;
            // A link that looks stuck: drop it, the loop above reconnects.
            if let Some(l) = n.link {
                let lctime = self.links.get(&l).map(|l| l.ctime).unwrap_or(now);
                if now - lctime > timeout
                    && n.ping_sent != 0
                    && ping_delay > timeout / 2
                    && data_delay > timeout / 2
                {
                    self.drop_link(l);
                }
            }
            let Some(n) = self.nodes.get(id) else {
                continue;
            };
            if n.link.is_some() && n.ping_sent == 0 && now - n.pong_received > timeout / 2 {
                self.send_ping(id, types::PING, now);
                continue;
            }
            if n.ping_sent == 0 {
                continue;
            }
            let delay = ping_delay.min(data_delay);
            if delay > timeout && !n.failing() {
                tracing::trace!("*** NODE {id} possibly failing");
                if let Some(n) = self.nodes.get_mut(id) {
                    n.flags |= flags::PFAIL;
                }
                update = true;
            }
        }
        if update || !self.ok || self.todo_update_state {
            self.update_state(now);
            self.todo_route = true;
        }
        self.failover_cron(now);
    }
}
