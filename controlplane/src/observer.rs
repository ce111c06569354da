//! The observer: every second it reads each node of each cluster, keeps
//! the observed topology and records an event for each change. The diff
//! that turns two observations into events is pure.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::sync::RwLock;

use crate::events::Events;
use crate::nodes::{keys_of, Node};
use crate::store::{NewEvent, Store};
use crate::topology::NodeLine;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct ObservedNode {
    pub id: String,
    pub address: String,
    pub role: String,
    pub master: Option<String>,
    /// Inclusive ranges `[first, last]`.
    #[schema(value_type = Vec<Vec<u16>>)]
    pub slots: Vec<(u16, u16)>,
    pub flags: Vec<String>,
    pub link: String,
    pub config_epoch: u64,
    pub offset: i64,
    pub memory_bytes: u64,
    pub ops_per_sec: u64,
    pub keys: u64,
}

/// A migration in progress: `slot` leaves `from` for `to`.
#[derive(
    Debug, Clone, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord, utoipa::ToSchema,
)]
pub struct OpenSlot {
    pub slot: u16,
    pub from: String,
    pub to: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct Observed {
    /// "ok" or "fail" (from the nodes' own CLUSTER INFO).
    pub state: String,
    pub nodes: Vec<ObservedNode>,
    pub open_slots: Vec<OpenSlot>,
    /// When it was read (Unix ms); 0 before the first read.
    pub time: i64,
}

impl Observed {
    /// The same nodes, roles, flags, links, slots and state (metrics
    /// aside): nothing an event would report changed.
    pub fn same_shape(&self, o: &Observed) -> bool {
        let shape = |x: &Observed| {
            (
                x.state.clone(),
                x.open_slots.clone(),
                x.nodes
                    .iter()
                    .map(|n| {
                        (
                            n.id.clone(),
                            n.address.clone(),
                            n.role.clone(),
                            n.master.clone(),
                            n.slots.clone(),
                            n.flags.clone(),
                            n.link.clone(),
                            n.config_epoch,
                        )
                    })
                    .collect::<Vec<_>>(),
            )
        };
        shape(self) == shape(o)
    }

    pub fn node(&self, id: &str) -> Option<&ObservedNode> {
        self.nodes.iter().find(|n| n.id == id)
    }
    pub fn masters(&self) -> impl Iterator<Item = &ObservedNode> {
        self.nodes.iter().filter(|n| n.role == "master")
    }
    /// Owner id of every slot.
    pub fn owners(&self) -> BTreeMap<u16, &str> {
        let mut m = BTreeMap::new();
        for n in self.masters() {
            for &(a, b) in &n.slots {
                for s in a..=b {
                    m.insert(s, n.id.as_str());
                }
            }
        }
        m
    }
}

pub type Shared = Arc<RwLock<HashMap<String, Observed>>>;

/// Builds the observation from one node's view of the cluster plus each
/// node's own reports as fields (INFO, CLUSTER INFO, and `health` from its
/// CLUSTER SHARDS; absent for nodes we could not reach) and each node's
/// line about itself: a node lists its MIGRATING and IMPORTING slots only
/// there, so open slots come from those lines, not from the one view.
pub fn assemble(
    view: &[NodeLine],
    own: &[NodeLine],
    infos: &HashMap<String, HashMap<String, String>>,
    state: &str,
    now: i64,
) -> Observed {
    let mut nodes: Vec<ObservedNode> = view
        .iter()
        .filter(|n| !n.has("handshake") && !n.has("noaddr"))
        .map(|n| {
            let info = infos.get(&n.address);
            let num = |k: &str| -> u64 {
                info.and_then(|i| i.get(k))
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0)
            };
            let offset = info
                .and_then(|i| {
                    i.get("master_repl_offset")
                        .or_else(|| i.get("slave_repl_offset"))
                })
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            let reachable = info.is_some();
            let loading = info.and_then(|i| i.get("health")).map(String::as_str) == Some("loading");
            ObservedNode {
                id: n.id.clone(),
                address: n.address.clone(),
                role: if n.is_master() { "master" } else { "replica" }.into(),
                master: n.master.clone(),
                slots: n.slots.clone(),
                flags: n
                    .flags
                    .iter()
                    .filter(|f| *f != "myself")
                    .map(|f| {
                        if f == "slave" {
                            "replica".into()
                        } else {
                            f.clone()
                        }
                    })
                    .chain(loading.then(|| "loading".to_string()))
                    .collect(),
                link: if reachable && (n.connected || n.is_myself()) {
                    "connected"
                } else {
                    "disconnected"
                }
                .into(),
                config_epoch: n.config_epoch,
                offset,
                memory_bytes: num("used_memory"),
                ops_per_sec: num("instantaneous_ops_per_sec"),
                keys: info.map(keys_of).unwrap_or(0),
            }
        })
        .collect();
    nodes.sort_by(|a, b| a.address.cmp(&b.address));
    let mut open_slots: Vec<OpenSlot> = own
        .iter()
        .flat_map(|n| {
            n.migrating.iter().map(|(s, to)| OpenSlot {
                slot: *s,
                from: n.id.clone(),
                to: to.clone(),
            })
        })
        .chain(own.iter().flat_map(|n| {
            n.importing.iter().map(|(s, from)| OpenSlot {
                slot: *s,
                from: from.clone(),
                to: n.id.clone(),
            })
        }))
        .collect();
    open_slots.sort();
    open_slots.dedup();
    Observed {
        state: state.to_string(),
        nodes,
        open_slots,
        time: now,
    }
}

fn ev(cluster: &str, kind: &str, node: Option<&str>, details: serde_json::Value) -> NewEvent {
    NewEvent {
        cluster: cluster.to_string(),
        kind: kind.to_string(),
        node: node.map(str::to_string),
        details,
        ..Default::default()
    }
}

/// The events between two observations of a cluster.
pub fn diff(cluster: &str, prev: &Observed, next: &Observed) -> Vec<NewEvent> {
    let mut out = Vec::new();
    if prev.time == 0 {
        return out;
    }
    for n in &next.nodes {
        let id = Some(n.id.as_str());
        let Some(p) = prev.node(&n.id) else {
            out.push(ev(
                cluster,
                "node_joined",
                id,
                json!({"address": n.address, "role": n.role}),
            ));
            continue;
        };
        let had = |f: &str| p.flags.iter().any(|x| x == f);
        let has = |f: &str| n.flags.iter().any(|x| x == f);
        if has("fail") && !had("fail") {
            out.push(ev(
                cluster,
                "node_failed",
                id,
                json!({"address": n.address}),
            ));
        } else if has("fail?") && !had("fail?") && !had("fail") {
            out.push(ev(cluster, "node_pfail", id, json!({"address": n.address})));
        }
        if (had("fail") || had("fail?")) && !has("fail") && !has("fail?") {
            out.push(ev(
                cluster,
                "node_recovered",
                id,
                json!({"address": n.address}),
            ));
        }
        if had("loading") && !has("loading") && n.role == "replica" {
            out.push(ev(
                cluster,
                "replica_synced",
                id,
                json!({"address": n.address, "master": n.master}),
            ));
        }
        if p.link != n.link {
            let kind = if n.link == "connected" {
                "node_reachable"
            } else {
                "node_unreachable"
            };
            out.push(ev(cluster, kind, id, json!({"address": n.address})));
        }
        if p.role == "replica" && n.role == "master" {
            out.push(ev(
                cluster,
                "failover",
                id,
                json!({"old_master": p.master, "new_master": n.id, "address": n.address, "epoch": n.config_epoch}),
            ));
        } else if p.role != n.role || p.master != n.master {
            out.push(ev(
                cluster,
                "role_changed",
                id,
                json!({"role": n.role, "master": n.master, "was": p.role, "was_master": p.master}),
            ));
        }
    }
    for p in &prev.nodes {
        if next.node(&p.id).is_none() {
            out.push(ev(
                cluster,
                "node_left",
                Some(&p.id),
                json!({"address": p.address}),
            ));
        }
    }
    // Slot owners: one event per (old owner, new owner) pair, with ranges.
    let (po, no) = (prev.owners(), next.owners());
    let mut moved: BTreeMap<(Option<&str>, Option<&str>), Vec<u16>> = BTreeMap::new();
    for s in 0..crate::topology::SLOTS {
        let (a, b) = (po.get(&s).copied(), no.get(&s).copied());
        if a != b {
            moved.entry((a, b)).or_default().push(s);
        }
    }
    for ((from, to), slots) in moved {
        out.push(ev(
            cluster,
            "slot_owner_changed",
            to,
            json!({"from": from, "to": to, "slots": crate::topology::ranges_of(slots)}),
        ));
    }
    for o in &next.open_slots {
        if !prev.open_slots.contains(o) {
            out.push(ev(cluster, "migration_opened", Some(&o.from), json!(o)));
        }
    }
    for o in &prev.open_slots {
        if !next.open_slots.contains(o) {
            out.push(ev(cluster, "migration_closed", Some(&o.from), json!(o)));
        }
    }
    if prev.state != next.state && !next.state.is_empty() && !prev.state.is_empty() {
        out.push(ev(
            cluster,
            "cluster_state_changed",
            None,
            json!({"from": prev.state, "to": next.state}),
        ));
    }
    out
}

/// Reads one cluster: every node we know of, each asked for its own view
/// and metrics. The view used is the one of the reachable node that
/// knows the most nodes.
pub async fn observe(
    conns: &mut HashMap<String, Node>,
    addrs: &[String],
    password: Option<&str>,
    now: i64,
) -> Observed {
    let mut views: Vec<Vec<NodeLine>> = Vec::new();
    let mut own: Vec<NodeLine> = Vec::new();
    let mut infos: HashMap<String, HashMap<String, String>> = HashMap::new();
    let mut states: Vec<String> = Vec::new();
    let mut todo: Vec<String> = addrs.to_vec();
    let mut seen: Vec<String> = Vec::new();
    while let Some(addr) = todo.pop() {
        if seen.contains(&addr) {
            continue;
        }
        seen.push(addr.clone());
        if !conns.contains_key(&addr) {
            match Node::connect(&addr, password).await {
                Ok(n) => {
                    conns.insert(addr.clone(), n);
                }
                Err(_) => continue,
            }
        }
        let Some(node) = conns.get_mut(&addr) else {
            continue;
        };
        let read = async {
            let view = node.cluster_nodes().await?;
            let mut info = node.info("all").await?;
            let ci = node.info("cluster-info").await?;
            info.extend(ci);
            // Only CLUSTER SHARDS tells that a replica is still loading;
            // a node that cannot answer it is still observed.
            if let Some(me) = view.iter().find(|n| n.is_myself()) {
                if let Ok(Some(h)) = node.own_health(&me.id).await {
                    info.insert("health".into(), h);
                }
            }
            Ok::<_, crate::nodes::NodeError>((view, info))
        };
        match tokio::time::timeout(Duration::from_secs(2), read).await {
            Ok(Ok((view, info))) => {
                for n in &view {
                    if !seen.contains(&n.address) && !n.has("noaddr") && !n.has("handshake") {
                        todo.push(n.address.clone());
                    }
                }
                if let Some(s) = info.get("cluster_state") {
                    states.push(s.clone());
                }
                infos.insert(addr.clone(), info);
                own.extend(view.iter().find(|n| n.is_myself()).cloned());
                views.push(view);
            }
            _ => {
                conns.remove(&addr);
            }
        }
    }
    let view = views
        .into_iter()
        .max_by_key(|v| v.len())
        .unwrap_or_default();
    // The cluster is ok when the reachable masters say so.
    let state = if states.is_empty() {
        "fail"
    } else if states.iter().all(|s| s == "ok") {
        "ok"
    } else {
        "fail"
    };
    assemble(&view, &own, &infos, state, now)
}

/// Sets the desired role of the new master `id` and of the nodes now
/// replicating it to what is observed.
async fn follow_failover(store: &Store, cluster: &str, obs: &Observed, id: &str) {
    let Some(m) = obs.node(id) else {
        return;
    };
    let mut rows = vec![crate::store::NodeRow {
        cluster: cluster.to_string(),
        address: m.address.clone(),
        node_id: Some(m.id.clone()),
        role: "master".into(),
        master_addr: None,
    }];
    for r in obs.nodes.iter().filter(|n| n.master.as_deref() == Some(id)) {
        rows.push(crate::store::NodeRow {
            cluster: cluster.to_string(),
            address: r.address.clone(),
            node_id: Some(r.id.clone()),
            role: "replica".into(),
            master_addr: Some(m.address.clone()),
        });
    }
    for r in rows {
        if let Err(e) = store.put_node(&r).await {
            tracing::warn!(
                "observer: cannot update the desired role of {}: {e}",
                r.address
            );
        }
    }
    // The slots the old master was meant to hold are now meant for the
    // new one (same ranges, new address).
    if let Ok(ranges) = store.slot_ranges(cluster).await {
        let moved: Vec<(String, u16, u16)> = ranges
            .into_iter()
            .map(|(addr, a, b)| {
                let taken = m.slots.iter().any(|&(x, y)| x <= a && b <= y);
                (if taken { m.address.clone() } else { addr }, a, b)
            })
            .collect();
        if let Err(e) = store.set_slot_ranges(cluster, &moved).await {
            tracing::warn!("observer: cannot update the desired slots of {cluster}: {e}");
        }
    }
}

/// Metric samples are kept this long (the charts show the last 15 min).
pub const SAMPLES_KEPT_MS: i64 = 3_600_000;

/// One sample per node read this time (none for a node that did not
/// answer: its link state says it is down, its numbers would be stale).
fn samples_of(obs: &Observed) -> Vec<crate::store::Sample> {
    obs.nodes
        .iter()
        .filter(|n| n.link == "connected")
        .map(|n| crate::store::Sample {
            node: n.id.clone(),
            address: n.address.clone(),
            role: n.role.clone(),
            time: obs.time / 1000 * 1000,
            ops_per_sec: n.ops_per_sec as i64,
            memory_bytes: n.memory_bytes as i64,
            keys: n.keys as i64,
            offset: n.offset,
        })
        .collect()
}

/// Runs forever: each cluster read every second.
pub async fn run(store: Store, events: Events, shared: Shared, password: Option<String>) {
    let mut conns: HashMap<String, HashMap<String, Node>> = HashMap::new();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut ticks: u64 = 0;
    loop {
        tick.tick().await;
        ticks += 1;
        if ticks.is_multiple_of(60) {
            if let Err(e) = store.prune_samples(crate::now_ms() - SAMPLES_KEPT_MS).await {
                tracing::warn!("observer: cannot prune samples: {e}");
            }
        }
        let clusters = match store.clusters().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!("observer: cannot list clusters: {e}");
                continue;
            }
        };
        for c in clusters {
            let Ok(desired) = store.nodes(&c.name).await else {
                continue;
            };
            let mut addrs: Vec<String> = desired.iter().map(|n| n.address.clone()).collect();
            if let Some(prev) = shared.read().await.get(&c.name) {
                addrs.extend(prev.nodes.iter().map(|n| n.address.clone()));
            }
            addrs.sort();
            addrs.dedup();
            let cc = conns.entry(c.name.clone()).or_default();
            let now = crate::now_ms();
            let next = observe(cc, &addrs, password.as_deref(), now).await;
            let known = shared.read().await.get(&c.name).cloned();
            let prev = match known {
                Some(p) => p,
                // After a restart, the last shape recorded; for a new
                // cluster, nothing yet (so its nodes are seen joining).
                None => store
                    .observed(&c.name)
                    .await
                    .ok()
                    .flatten()
                    .and_then(|t| serde_json::from_str(&t).ok())
                    .unwrap_or(Observed {
                        time: 1,
                        ..Observed::default()
                    }),
            };
            for mut e in diff(&c.name, &prev, &next) {
                if e.kind == "failover" {
                    // An automatic (or manual) failover is a fact: the
                    // desired roles of the shard follow it.
                    if let Some(id) = e.node.clone() {
                        follow_failover(&store, &c.name, &next, &id).await;
                        e.details["desired_follows"] = serde_json::json!(true);
                    }
                }
                events.record(e).await;
            }
            if !prev.same_shape(&next) || prev.time <= 1 {
                if let Ok(t) = serde_json::to_string(&next) {
                    if let Err(e) = store.save_observed(&c.name, &t).await {
                        tracing::warn!("observer: cannot save the topology of {}: {e}", c.name);
                    }
                }
            }
            let samples = samples_of(&next);
            if !samples.is_empty() {
                if let Err(e) = store.add_samples(&c.name, &samples).await {
                    tracing::warn!("observer: cannot save samples of {}: {e}", c.name);
                }
            }
            shared.write().await.insert(c.name.clone(), next);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(
        id: &str,
        role: &str,
        master: Option<&str>,
        slots: Vec<(u16, u16)>,
        flags: &[&str],
    ) -> ObservedNode {
        ObservedNode {
            id: id.into(),
            address: format!("127.0.0.1:{id}"),
            role: role.into(),
            master: master.map(str::to_string),
            slots,
            flags: flags.iter().map(|s| s.to_string()).collect(),
            link: "connected".into(),
            config_epoch: 1,
            offset: 0,
            memory_bytes: 0,
            ops_per_sec: 0,
            keys: 0,
        }
    }

    fn obs(nodes: Vec<ObservedNode>, state: &str) -> Observed {
        Observed {
            state: state.into(),
            nodes,
            open_slots: vec![],
            time: 1,
        }
    }

    fn kinds(e: &[NewEvent]) -> Vec<&str> {
        e.iter().map(|e| e.kind.as_str()).collect()
    }

    #[test]
    fn a_failover_and_a_failure_are_recorded() {
        let prev = obs(
            vec![
                node("a", "master", None, vec![(0, 100)], &["master"]),
                node("b", "replica", Some("a"), vec![], &["replica"]),
            ],
            "ok",
        );
        let next = obs(
            vec![
                node("a", "master", None, vec![], &["master", "fail"]),
                node("b", "master", None, vec![(0, 100)], &["master"]),
            ],
            "ok",
        );
        let e = diff("c", &prev, &next);
        assert_eq!(
            kinds(&e),
            vec!["node_failed", "failover", "slot_owner_changed"]
        );
        assert_eq!(e[1].details["old_master"], "a");
        assert_eq!(e[2].details["slots"], json!([[0, 100]]));
        // Nothing changes, nothing recorded; the first read records nothing.
        assert!(diff("c", &next, &next).is_empty());
        assert!(diff("c", &Observed::default(), &next).is_empty());
    }

    #[test]
    fn joins_leaves_and_state() {
        let prev = obs(
            vec![node("a", "master", None, vec![(0, 16383)], &["master"])],
            "ok",
        );
        let next = obs(
            vec![node("b", "master", None, vec![(0, 16383)], &["master"])],
            "fail",
        );
        assert_eq!(
            kinds(&diff("c", &prev, &next)),
            vec![
                "node_joined",
                "node_left",
                "slot_owner_changed",
                "cluster_state_changed"
            ]
        );
    }

    #[test]
    fn assembles_from_a_view_and_infos() {
        let view = crate::topology::parse_nodes(
            "e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca 127.0.0.1:30001@40001 myself,master - 0 0 1 connected 0-16383 [5->-07c37dfeb235213a872192d90877d0cd55635b91]\n\
             07c37dfeb235213a872192d90877d0cd55635b91 127.0.0.1:30002@40002 slave e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca 0 1 1 connected\n",
        )
        .unwrap();
        let mut infos = HashMap::new();
        infos.insert(
            "127.0.0.1:30001".to_string(),
            crate::nodes::parse_info(
                "used_memory:10\r\ndb0:keys=3,expires=0\r\nmaster_repl_offset:42\r\n",
            ),
        );
        // The importing side, seen only from the other node's own view.
        let other = crate::topology::parse_nodes(
            "07c37dfeb235213a872192d90877d0cd55635b91 127.0.0.1:30002@40002 myself,slave e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca 0 1 1 connected [9-<-e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca]\n",
        )
        .unwrap();
        let own = [view[0].clone(), other[0].clone()];
        let o = assemble(&view, &own, &infos, "ok", 5);
        assert_eq!(o.nodes[0].keys, 3);
        assert_eq!(o.nodes[0].offset, 42);
        assert_eq!(o.nodes[0].flags, vec!["master"]);
        assert_eq!(o.nodes[1].role, "replica");
        assert_eq!(o.nodes[1].link, "disconnected");
        assert_eq!(o.open_slots.len(), 2);
        assert_eq!(
            (o.open_slots[1].slot, o.open_slots[1].to.as_str()),
            (9, "07c37dfeb235213a872192d90877d0cd55635b91")
        );
        // A replica whose CLUSTER SHARDS says "loading" is flagged so.
        let mut infos2 = infos.clone();
        infos2.insert(
            "127.0.0.1:30002".to_string(),
            crate::nodes::parse_info("health:loading\r\n"),
        );
        let loading = assemble(&view, &own, &infos2, "ok", 6);
        assert_eq!(loading.nodes[1].flags, vec!["replica", "loading"]);
        assert_eq!(loading.nodes[1].link, "connected");
        infos2.insert(
            "127.0.0.1:30002".to_string(),
            crate::nodes::parse_info("health:online\r\n"),
        );
        let synced = assemble(&view, &own, &infos2, "ok", 7);
        assert_eq!(synced.nodes[1].flags, vec!["replica"]);
        assert_eq!(kinds(&diff("c", &loading, &synced)), vec!["replica_synced"]);
        // One view alone shows only its own node's open slots.
        assert_eq!(
            assemble(&view, &view[..1], &infos, "ok", 5)
                .open_slots
                .len(),
            1
        );
    }
}
