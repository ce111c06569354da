//! CLUSTER subcommands and ASKING. Replies and errors follow Redis 7.0.

use std::sync::Arc;

use super::{Args, Ctx};
use crate::cluster::id::NodeId;
use crate::cluster::node::slot_ranges;
use crate::cluster::route::Endpoint;
use crate::cluster::state::{slot_runs, State};
use crate::cluster::Cluster;
use crate::keyspace::{hashslot::key_slot, SLOTS};

const DISABLED: &str = "ERR This instance has cluster support disabled";

fn cluster(ctx: &mut Ctx) -> Option<Arc<Cluster>> {
    match ctx.srv.cluster.get() {
        Some(c) => Some(c.clone()),
        None => {
            ctx.r.error(DISABLED);
            None
        }
    }
}

/// Runs `f` on the cluster state (and what it leaves to do afterwards).
fn with<R>(ctx: &mut Ctx, f: impl FnOnce(&mut State) -> R) -> Option<R> {
    let c = cluster(ctx)?;
    Some(c.with(ctx.srv, f))
}

fn ll(a: &[u8]) -> Option<i64> {
    crate::resp::parse_i64(a)
}

/// A slot argument, or Redis's error for it.
fn slot_arg(ctx: &mut Ctx, a: &[u8]) -> Option<usize> {
    match ll(a) {
        Some(s) if (0..SLOTS as i64).contains(&s) => Some(s as usize),
        _ => {
            ctx.r.error("ERR Invalid or out of range slot");
            None
        }
    }
}

fn lossy(a: &[u8]) -> String {
    String::from_utf8_lossy(a).into_owned()
}

fn lookup(st: &State, a: &[u8]) -> Option<NodeId> {
    NodeId::parse(a).filter(|id| st.nodes.contains_key(id))
}

fn db_size(ctx: &Ctx) -> usize {
    ctx.srv.ks.db(0).size()
}

pub fn asking(ctx: &mut Ctx, _a: &Args) {
    if ctx.srv.cluster.get().is_none() {
        return ctx.r.error(DISABLED);
    }
    ctx.client.asking = true;
    ctx.r.ok();
}

pub fn info(ctx: &mut Ctx, _a: &Args) {
    if let Some(t) = with(ctx, |st| st.info_text()) {
        ctx.r.verbatim(t.as_bytes());
    }
}

pub fn nodes(ctx: &mut Ctx, _a: &Args) {
    if let Some(t) = with(ctx, |st| st.nodes_text()) {
        ctx.r.verbatim(t.as_bytes());
    }
}

pub fn myid(ctx: &mut Ctx, _a: &Args) {
    if let Some(id) = with(ctx, |st| st.me) {
        ctx.r.bulk(id.as_bytes());
    }
}

pub fn myshardid(ctx: &mut Ctx, _a: &Args) {
    if let Some(id) = with(ctx, |st| st.myself().shard_id) {
        ctx.r.bulk(id.as_bytes());
    }
}

pub fn keyslot(ctx: &mut Ctx, a: &Args) {
    ctx.r.int(key_slot(a.get(2)) as i64);
}

pub fn countkeysinslot(ctx: &mut Ctx, a: &Args) {
    let Some(s) = super::int_arg(ctx, a.get(2)) else {
        return;
    };
    if !(0..SLOTS as i64).contains(&s) {
        return ctx.r.error("ERR Invalid slot");
    }
    let n = ctx.srv.ks.db(0).slot_keys(s as u16);
    ctx.r.int(n as i64);
}

pub fn getkeysinslot(ctx: &mut Ctx, a: &Args) {
    let Some(s) = super::int_arg(ctx, a.get(2)) else {
        return;
    };
    let Some(max) = super::int_arg(ctx, a.get(3)) else {
        return;
    };
    if max < 0 || !(0..SLOTS as i64).contains(&s) {
        return ctx.r.error("ERR Invalid slot or number of keys");
    }
    let keys = ctx.locks.slot(s as u16).live_keys();
    let n = keys.len().min(max as usize);
    ctx.r.array(n);
    for k in keys.iter().take(n) {
        ctx.r.bulk(k);
    }
}

pub fn meet(ctx: &mut Ctx, a: &Args) {
    if a.len() > 5 {
        return ctx.r.error(&format!(
            "ERR unknown subcommand or wrong number of arguments for '{}'. Try CLUSTER HELP.",
            lossy(a.get(1))
        ));
    }
    let port = match ll(a.get(3)) {
        Some(p) => p,
        None => {
            return ctx.r.error(&format!(
                "ERR Invalid TCP base port specified: {}",
                lossy(a.get(3))
            ))
        }
    };
    let cport = if a.len() == 5 {
        match ll(a.get(4)) {
            Some(p) => p,
            None => {
                return ctx.r.error(&format!(
                    "ERR Invalid TCP bus port specified: {}",
                    lossy(a.get(4))
                ))
            }
        }
    } else {
        port + 10000
    };
    let ip: Option<std::net::IpAddr> = std::str::from_utf8(a.get(2))
        .ok()
        .and_then(|s| s.parse().ok());
    let valid_ports = (1..=65535).contains(&port) && (1..=65535).contains(&cport);
    let Some(ip) = ip.filter(|_| valid_ports) else {
        return ctx.r.error(&format!(
            "ERR Invalid node address specified: {}:{}",
            lossy(a.get(2)),
            lossy(a.get(3))
        ));
    };
    let ip = ip.to_canonical().to_string();
    let now = crate::keyspace::now_ms();
    if with(ctx, |st| {
        st.start_handshake(&ip, port as u16, cport as u16, now)
    })
    .is_some()
    {
        ctx.r.ok();
    }
}

fn slots_change(ctx: &mut Ctx, a: &Args, add: bool, ranges: bool) {
    let mut slots: Vec<usize> = Vec::new();
    if ranges {
        if !(a.len() - 2).is_multiple_of(2) {
            let name = if add {
                "addslotsrange"
            } else {
                "delslotsrange"
            };
            return ctx.r.error(&format!(
                "ERR wrong number of arguments for 'cluster|{name}' command"
            ));
        }
        for pair in a.iter().skip(2).collect::<Vec<_>>().chunks(2) {
            let Some(lo) = slot_arg(ctx, pair[0]) else {
                return;
            };
            let Some(hi) = slot_arg(ctx, pair[1]) else {
                return;
            };
            if lo > hi {
                return ctx.r.error(&format!(
                    "ERR start slot number {lo} is greater than end slot number {hi}"
                ));
            }
            slots.extend(lo..=hi);
        }
    } else {
        for s in a.iter().skip(2) {
            let Some(s) = slot_arg(ctx, s) else {
                return;
            };
            slots.push(s);
        }
    }
    let res = with(ctx, |st| {
        let mut seen = vec![false; SLOTS];
        for &s in &slots {
            if add && st.owner[s].is_some() {
                return Err(format!("ERR Slot {s} is already busy"));
            }
            if !add && st.owner[s].is_none() {
                return Err(format!("ERR Slot {s} is already unassigned"));
            }
            if seen[s] {
                return Err(format!("ERR Slot {s} specified multiple times"));
            }
            seen[s] = true;
        }
        let me = st.me;
        for &s in &slots {
            if add {
                st.importing.remove(&(s as u16));
                st.add_slot(s, me);
            } else {
                st.del_slot(s);
            }
        }
        st.changed();
        Ok(())
    });
    match res {
        Some(Ok(())) => ctx.r.ok(),
        Some(Err(e)) => ctx.r.error(&e),
        None => {}
    }
}

pub fn addslots(ctx: &mut Ctx, a: &Args) {
    slots_change(ctx, a, true, false)
}
pub fn delslots(ctx: &mut Ctx, a: &Args) {
    slots_change(ctx, a, false, false)
}
pub fn addslotsrange(ctx: &mut Ctx, a: &Args) {
    slots_change(ctx, a, true, true)
}
pub fn delslotsrange(ctx: &mut Ctx, a: &Args) {
    slots_change(ctx, a, false, true)
}

pub fn flushslots(ctx: &mut Ctx, _a: &Args) {
    if ctx.srv.cluster.get().is_some() && db_size(ctx) != 0 {
        return ctx
            .r
            .error("ERR DB must be empty to perform CLUSTER FLUSHSLOTS.");
    }
    if with(ctx, |st| {
        let me = st.me;
        st.del_node_slots(&me);
        st.changed();
    })
    .is_some()
    {
        ctx.r.ok();
    }
}

pub fn setslot(ctx: &mut Ctx, a: &Args) {
    if ctx.srv.cluster.get().is_none() {
        return ctx.r.error(DISABLED);
    }
    if let Some(e) = super::slotmig::setslot_refusal(ctx.srv) {
        return ctx.r.error(e);
    }
    let Some(slot) = slot_arg(ctx, a.get(2)) else {
        return;
    };
    let action = a.get(3).to_ascii_lowercase();
    let keys_here = ctx.srv.ks.db(0).slot_keys(slot as u16);
    let argc = a.len();
    let target = if argc > 4 {
        a.get(4).to_vec()
    } else {
        Vec::new()
    };
    let res = with(ctx, move |st| -> Result<(), String> {
        if st.myself().is_replica() {
            return Err("ERR Please use SETSLOT only with masters.".into());
        }
        let me = st.me;
        let slot16 = slot as u16;
        // fsync only what Redis fsyncs: an epoch bump or a role change.
        let mut fsync = false;
        match (action.as_slice(), argc) {
            (b"migrating", 5) => {
                if st.owner[slot] != Some(me) {
                    return Err(format!("ERR I'm not the owner of hash slot {slot}"));
                }
                let Some(n) = lookup(st, &target) else {
                    return Err(format!("ERR I don't know about node {}", lossy(&target)));
                };
                if st.nodes[&n].is_replica() {
                    return Err("ERR Target node is not a master".into());
                }
                st.migrating.insert(slot16, n);
            }
            (b"importing", 5) => {
                if st.owner[slot] == Some(me) {
                    return Err(format!("ERR I'm already the owner of hash slot {slot}"));
                }
                let Some(n) = lookup(st, &target) else {
                    return Err(format!("ERR I don't know about node {}", lossy(&target)));
                };
                if st.nodes[&n].is_replica() {
                    return Err("ERR Target node is not a master".into());
                }
                st.importing.insert(slot16, n);
            }
            (b"stable", 4) => {
                st.migrating.remove(&slot16);
                st.importing.remove(&slot16);
            }
            (b"node", 5) => {
                let Some(n) = lookup(st, &target) else {
                    return Err(format!("ERR Unknown node {}", lossy(&target)));
                };
                if st.nodes[&n].is_replica() {
                    return Err("ERR Target node is not a master".into());
                }
                let was_mine = st.owner[slot] == Some(me);
                if was_mine && n != me && keys_here > 0 {
                    return Err(format!("ERR Can't assign hashslot {slot} to a different node while I still hold keys for this hash slot."));
                }
                if st.migrating.contains_key(&slot16) && keys_here == 0 {
                    st.migrating.remove(&slot16);
                }
                if n == me && st.importing.remove(&slot16).is_some() {
                    // We own the imported slot now; make our claim win.
                    if st.bump_epoch_without_consensus() {
                        tracing::info!("configEpoch updated after importing slot {slot}");
                        fsync = true;
                    }
                }
                st.del_slot(slot);
                st.add_slot(slot, n);
                if n == me {
                    st.broadcast_pong(crate::keyspace::now_ms());
                }
                // A master that gave away its last slot follows the taker.
                if was_mine
                    && n != me
                    && st.myself().numslots == 0
                    && st.settings.allow_replica_migration
                {
                    tracing::info!(
                        "Configuration change detected. Reconfiguring myself as a replica of {n}"
                    );
                    st.set_my_master(n);
                    fsync = true;
                }
            }
            _ => {
                return Err(
                    "ERR Invalid CLUSTER SETSLOT action or number of arguments. Try CLUSTER HELP"
                        .into(),
                )
            }
        }
        st.changed();
        st.save_soon(fsync);
        Ok(())
    });
    match res {
        Some(Ok(())) => ctx.r.ok(),
        Some(Err(e)) => ctx.r.error(&e),
        None => {}
    }
}

pub fn bumpepoch(ctx: &mut Ctx, _a: &Args) {
    if let Some((bumped, e)) = with(ctx, |st| {
        let b = st.bump_epoch_without_consensus();
        (b, st.myself().config_epoch)
    }) {
        ctx.r
            .simple(&format!("{} {e}", if bumped { "BUMPED" } else { "STILL" }));
    }
}

pub fn set_config_epoch(ctx: &mut Ctx, a: &Args) {
    if ctx.srv.cluster.get().is_none() {
        return ctx.r.error(DISABLED);
    }
    let Some(e) = super::int_arg(ctx, a.get(2)) else {
        return;
    };
    let res = with(ctx, |st| {
        if e < 0 {
            return Err(format!("ERR Invalid config epoch specified: {e}"));
        }
        if st.nodes.len() > 1 {
            return Err("ERR The user can assign a config epoch only when the node does not know any other node.".into());
        }
        if st.myself().config_epoch != 0 {
            return Err("ERR Node config epoch is already non-zero".into());
        }
        let e = e as u64;
        st.myself_mut().config_epoch = e;
        if st.current_epoch < e {
            st.current_epoch = e;
        }
        st.changed();
        st.save_soon(true);
        Ok(())
    });
    match res {
        Some(Ok(())) => ctx.r.ok(),
        Some(Err(e)) => ctx.r.error(&e),
        None => {}
    }
}

pub fn forget(ctx: &mut Ctx, a: &Args) {
    let target = a.get(2).to_vec();
    let now = crate::keyspace::now_ms();
    let res = with(ctx, |st| {
        let Some(n) = lookup(st, &target) else {
            return Err(format!("ERR Unknown node {}", lossy(&target)));
        };
        if n == st.me {
            return Err("ERR I tried hard but I can't forget myself...".into());
        }
        if st.myself().is_replica() && st.myself().master == Some(n) {
            return Err("ERR Can't forget my master!".into());
        }
        st.blacklist_add(n, now);
        st.del_node(&n);
        st.changed();
        Ok(())
    });
    match res {
        Some(Ok(())) => ctx.r.ok(),
        Some(Err(e)) => ctx.r.error(&e),
        None => {}
    }
}

pub fn replicate(ctx: &mut Ctx, a: &Args) {
    if ctx.srv.cluster.get().is_none() {
        return ctx.r.error(DISABLED);
    }
    let target = a.get(2).to_vec();
    let keys = db_size(ctx);
    let res = with(ctx, |st| {
        let Some(n) = lookup(st, &target) else {
            return Err(format!("ERR Unknown node {}", lossy(&target)));
        };
        if n == st.me {
            return Err("ERR Can't replicate myself".into());
        }
        if st.nodes[&n].is_replica() {
            return Err("ERR I can only replicate a master, not a replica.".into());
        }
        if st.myself().is_master() && (st.myself().numslots != 0 || keys != 0) {
            return Err(
                "ERR To set a master the node must be empty and without assigned slots.".into(),
            );
        }
        st.set_my_master(n);
        Ok(())
    });
    match res {
        Some(Ok(())) => ctx.r.ok(),
        Some(Err(e)) => ctx.r.error(&e),
        None => {}
    }
}

/// CLUSTER FAILOVER [FORCE|TAKEOVER], sent to a replica.
pub fn failover(ctx: &mut Ctx, a: &Args) {
    use crate::cluster::failover::Mode;
    if ctx.srv.cluster.get().is_none() {
        return ctx.r.error(DISABLED);
    }
    let mode = match a.len() {
        2 => Mode::Default,
        3 if a.get(2).eq_ignore_ascii_case(b"force") => Mode::Force,
        3 if a.get(2).eq_ignore_ascii_case(b"takeover") => Mode::Takeover,
        3 => return ctx.r.error("ERR syntax error"),
        _ => {
            let e = format!(
                "ERR unknown subcommand or wrong number of arguments for '{}'. Try CLUSTER HELP.",
                lossy(a.get(1))
            );
            return ctx.r.error(&e);
        }
    };
    let now = crate::keyspace::now_ms();
    match with(ctx, |st| st.manual_failover(mode, now)) {
        Some(Ok(())) => ctx.r.ok(),
        Some(Err(e)) => ctx.r.error(e),
        None => {}
    }
}

pub fn replicas(ctx: &mut Ctx, a: &Args) {
    let target = a.get(2).to_vec();
    let res = with(ctx, |st| {
        let Some(n) = lookup(st, &target) else {
            return Err(format!("ERR Unknown node {}", lossy(&target)));
        };
        if !st.nodes[&n].is_master() {
            return Err("ERR The specified node is not a master".into());
        }
        Ok(st
            .replicas_of(&n)
            .into_iter()
            .map(|r| st.describe(r, false))
            .collect::<Vec<_>>())
    });
    match res {
        Some(Ok(lines)) => {
            ctx.r.array(lines.len());
            for l in lines {
                ctx.r.bulk(l.as_bytes());
            }
        }
        Some(Err(e)) => ctx.r.error(&e),
        None => {}
    }
}

pub fn count_failure_reports(ctx: &mut Ctx, a: &Args) {
    let target = a.get(2).to_vec();
    let now = crate::keyspace::now_ms();
    let res = with(ctx, |st| {
        let validity = st.settings.node_timeout * 2;
        let Some(n) = lookup(st, &target) else {
            return Err(format!("ERR Unknown node {}", lossy(&target)));
        };
        let node = st.nodes.get_mut(&n).expect("looked up");
        Ok(node.count_fail_reports(now, validity))
    });
    match res {
        Some(Ok(n)) => ctx.r.int(n as i64),
        Some(Err(e)) => ctx.r.error(&e),
        None => {}
    }
}

pub fn reset(ctx: &mut Ctx, a: &Args) {
    if ctx.srv.cluster.get().is_none() {
        return ctx.r.error(DISABLED);
    }
    let hard = match a.len() {
        2 => false,
        3 if super::eq_ic(a.get(2), "hard") => true,
        3 if super::eq_ic(a.get(2), "soft") => false,
        3 => return ctx.r.error(super::SYNTAX),
        _ => {
            return ctx.r.error(&format!(
                "ERR unknown subcommand or wrong number of arguments for '{}'. Try CLUSTER HELP.",
                lossy(a.get(1))
            ))
        }
    };
    let keys = db_size(ctx);
    let is_master = with(ctx, |st| st.myself().is_master()).unwrap_or(true);
    if is_master && keys != 0 {
        return ctx
            .r
            .error("ERR CLUSTER RESET can't be called with master nodes containing keys");
    }
    if !is_master {
        // A replica turns master and drops the data it replicated.
        for s in 0..SLOTS as u16 {
            if ctx.srv.ks.db(0).slot_keys(s) > 0 {
                super::keys::clear_slot(&mut ctx.locks.slot(s));
            }
        }
    }
    with(ctx, |st| {
        let me = st.me;
        if st.myself().is_replica() {
            st.set_node_as_master(&me);
        }
        st.migrating.clear();
        st.importing.clear();
        for s in 0..SLOTS {
            st.del_slot(s);
        }
        let others: Vec<NodeId> = st.nodes.keys().filter(|id| **id != me).copied().collect();
        for id in others {
            st.del_node(&id);
        }
        st.blacklist.clear();
        if hard {
            st.current_epoch = 0;
            st.last_vote_epoch = 0;
            st.myself_mut().config_epoch = 0;
            let new = st.random_id();
            st.rename(&me, new);
            st.me = new;
            let shard = st.random_id();
            st.myself_mut().shard_id = shard;
            tracing::info!("Node hard reset, now I'm {new}");
        }
        st.changed();
        st.save_soon(true);
    });
    ctx.r.ok();
}

pub fn saveconfig(ctx: &mut Ctx, _a: &Args) {
    let Some(c) = cluster(ctx) else { return };
    match c.save_config_now() {
        Ok(()) => ctx.r.ok(),
        Err(e) => ctx
            .r
            .error(&format!("ERR error saving the cluster node config: {e}")),
    }
}

/// `[ip, port, id, {metadata}]` for CLUSTER SLOTS.
/// A node in CLUSTER SLOTS: its preferred endpoint (null when unknown),
/// port and id, then what else is known of its address.
fn slots_node(ctx: &mut Ctx, ep: Endpoint, ip: &str, port: u16, id: &NodeId, hostname: &str) {
    ctx.r.array(4);
    match ep {
        Endpoint::Unknown => ctx.r.null(),
        _ => ctx.r.bulk(ep.of(ip, hostname).as_bytes()),
    }
    ctx.r.int(port as i64);
    ctx.r.bulk(id.as_bytes());
    let show_ip = ep != Endpoint::Ip;
    let show_host = ep != Endpoint::Hostname && !hostname.is_empty();
    ctx.r.map(show_ip as usize + show_host as usize);
    if show_ip {
        ctx.r.bulk(b"ip");
        ctx.r.bulk(ip.as_bytes());
    }
    if show_host {
        ctx.r.bulk(b"hostname");
        ctx.r.bulk(hostname.as_bytes());
    }
}

type NodeAddr = (String, u16, NodeId, String);

pub fn slots(ctx: &mut Ctx, _a: &Args) {
    let runs: Option<Vec<(usize, usize, Vec<NodeAddr>)>> = with(ctx, |st| {
        slot_runs(&st.owner)
            .into_iter()
            .map(|(a, b, id)| {
                let mut nodes = Vec::new();
                if let Some(m) = st.nodes.get(&id) {
                    nodes.push((m.ip.clone(), m.port, m.id, m.hostname.clone()));
                }
                for r in st.replicas_of(&id) {
                    if !r.failed() {
                        nodes.push((r.ip.clone(), r.port, r.id, r.hostname.clone()));
                    }
                }
                (a, b, nodes)
            })
            .collect()
    });
    let Some(runs) = runs else { return };
    let ep = Endpoint::from_config(&ctx.srv.config.read());
    ctx.r.array(runs.len());
    for (a, b, nodes) in runs {
        ctx.r.array(2 + nodes.len());
        ctx.r.int(a as i64);
        ctx.r.int(b as i64);
        for (ip, port, id, host) in nodes {
            slots_node(ctx, ep, &ip, port, &id, &host);
        }
    }
}

struct ShardNode {
    id: NodeId,
    port: u16,
    ip: String,
    hostname: String,
    master: bool,
    offset: u64,
    health: &'static str,
}

pub fn shards(ctx: &mut Ctx, _a: &Args) {
    let shards = with(ctx, |st| {
        let mut masters: Vec<&crate::cluster::node::Node> = st
            .nodes
            .values()
            .filter(|n| n.is_master() && !n.in_handshake())
            .collect();
        masters.sort_by_key(|n| n.id);
        masters
            .into_iter()
            .map(|m| {
                let ranges = slot_ranges(&m.slots);
                let mut members = vec![m];
                members.extend(st.replicas_of(&m.id));
                let nodes: Vec<ShardNode> = members
                    .into_iter()
                    .map(|n| ShardNode {
                        id: n.id,
                        port: n.port,
                        ip: n.ip.clone(),
                        hostname: n.hostname.clone(),
                        master: n.is_master(),
                        offset: n.repl_offset,
                        health: if n.failed() {
                            "fail"
                        } else if n.is_replica() && n.repl_offset == 0 {
                            "loading"
                        } else {
                            "online"
                        },
                    })
                    .collect();
                (ranges, nodes)
            })
            .collect::<Vec<_>>()
    });
    let Some(shards) = shards else { return };
    let ep = Endpoint::from_config(&ctx.srv.config.read());
    ctx.r.array(shards.len());
    for (ranges, nodes) in shards {
        ctx.r.map(2);
        ctx.r.bulk(b"slots");
        ctx.r.array(ranges.len() * 2);
        for (a, b) in ranges {
            ctx.r.int(a as i64);
            ctx.r.int(b as i64);
        }
        ctx.r.bulk(b"nodes");
        ctx.r.array(nodes.len());
        for n in nodes {
            ctx.r.map(if n.hostname.is_empty() { 7 } else { 8 });
            ctx.r.bulk(b"id");
            ctx.r.bulk(n.id.as_bytes());
            ctx.r.bulk(b"port");
            ctx.r.int(n.port as i64);
            ctx.r.bulk(b"ip");
            ctx.r.bulk(n.ip.as_bytes());
            ctx.r.bulk(b"endpoint");
            ctx.r.bulk(ep.of(&n.ip, &n.hostname).as_bytes());
            if !n.hostname.is_empty() {
                ctx.r.bulk(b"hostname");
                ctx.r.bulk(n.hostname.as_bytes());
            }
            ctx.r.bulk(b"role");
            ctx.r.bulk(if n.master { b"master" } else { b"replica" });
            ctx.r.bulk(b"replication-offset");
            ctx.r.int(n.offset as i64);
            ctx.r.bulk(b"health");
            ctx.r.bulk(n.health.as_bytes());
        }
    }
}

pub fn links(ctx: &mut Ctx, _a: &Args) {
    let links = with(ctx, |st| {
        let mut v: Vec<(bool, NodeId, i64, u64, u64)> = st
            .links
            .iter()
            .filter_map(|(id, l)| {
                let n = l.node?;
                let node = st.nodes.get(&n)?;
                if node.in_handshake() {
                    return None;
                }
                Some((l.inbound, n, l.ctime, *id, l.sent_bytes))
            })
            .collect();
        v.sort_by_key(|(inb, n, _, _, _)| (*n, *inb));
        v
    });
    let Some(links) = links else { return };
    let Some(cl) = cluster(ctx) else { return };
    ctx.r.array(links.len());
    for (inbound, node, ctime, link, sent) in links {
        let queued = cl.link_queued(link, sent) as i64;
        ctx.r.map(6);
        ctx.r.bulk(b"direction");
        ctx.r.bulk(if inbound { b"from" } else { b"to" });
        ctx.r.bulk(b"node");
        ctx.r.bulk(node.as_bytes());
        ctx.r.bulk(b"create-time");
        ctx.r.int(ctime);
        ctx.r.bulk(b"events");
        ctx.r.bulk(if inbound { b"r" } else { b"rw" });
        ctx.r.bulk(b"send-buffer-allocated");
        ctx.r.int(queued);
        ctx.r.bulk(b"send-buffer-used");
        ctx.r.int(queued);
    }
}

pub fn help(ctx: &mut Ctx, _a: &Args) {
    const LINES: &[&str] = &[
        "CLUSTER <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
        "ADDSLOTS <slot> [<slot> ...]",
        "    Assign slots to this node.",
        "ADDSLOTSRANGE <start slot> <end slot> [<start slot> <end slot> ...]",
        "    Assign slot ranges to this node.",
        "BUMPEPOCH",
        "    Raise this node's config epoch if it is not already the highest.",
        "COUNT-FAILURE-REPORTS <node-id>",
        "    How many masters currently report the node as failing.",
        "COUNTKEYSINSLOT <slot>",
        "    Number of keys held here in the slot.",
        "DELSLOTS <slot> [<slot> ...]",
        "    Unassign slots from this node.",
        "DELSLOTSRANGE <start slot> <end slot> [<start slot> <end slot> ...]",
        "    Unassign slot ranges from this node.",
        "FLUSHSLOTS",
        "    Unassign every slot of this node (its database must be empty).",
        "FORGET <node-id>",
        "    Remove a node from the node table for 60 seconds.",
        "GETKEYSINSLOT <slot> <count>",
        "    Up to <count> key names held here in the slot.",
        "INFO",
        "    The cluster state and counters.",
        "KEYSLOT <key>",
        "    The hash slot of a key.",
        "LINKS",
        "    The cluster bus connections of this node.",
        "MEET <ip> <port> [<bus-port>]",
        "    Join the node at the given address into this cluster.",
        "MYID",
        "    This node's id.",
        "MYSHARDID",
        "    This node's shard id.",
        "NODES",
        "    The node table in the nodes.conf format.",
        "REPLICATE <node-id>",
        "    Make this node a replica of the given master.",
        "RESET [HARD|SOFT]",
        "    Forget every other node and all slots (HARD also renews the id and epochs).",
        "SET-CONFIG-EPOCH <epoch>",
        "    Set the config epoch of a node that knows no other node.",
        "SETSLOT <slot> (IMPORTING <node-id>|MIGRATING <node-id>|STABLE|NODE <node-id>)",
        "    Change the migration state or the owner of a slot.",
        "REPLICAS <node-id>",
        "    The replicas of a master, in the CLUSTER NODES format.",
        "SAVECONFIG",
        "    Write nodes.conf now.",
        "SHARDS",
        "    Slots and nodes of every shard.",
        "SLOTS",
        "    Slot ranges with the addresses of their nodes.",
        "HELP",
        "    Print this help.",
    ];
    ctx.r.array(LINES.len());
    for l in LINES {
        ctx.r.simple(l);
    }
}
