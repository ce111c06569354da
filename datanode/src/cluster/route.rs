//! The routing snapshot: an immutable copy of who serves each slot, read
//! by the command path without taking the cluster lock.

use std::collections::BTreeMap;

use super::id::NodeId;
use super::state::State;
use crate::keyspace::SLOTS;

pub const NONE: u16 = u16::MAX;

pub struct Route {
    pub ok: bool,
    /// Index into `addrs` per slot, `NONE` when unassigned.
    pub owner: Box<[u16]>,
    /// `ip:port` of each node that owns slots.
    pub addrs: Vec<String>,
    /// The node behind each entry of `addrs`.
    pub ids: Vec<NodeId>,
    pub me: u16,
    /// Our master's index when we are a replica.
    pub my_master: u16,
    pub migrating: BTreeMap<u16, u16>,
    pub importing: BTreeMap<u16, u16>,
    pub settings: RouteSettings,
    /// One more than the route this one replaced: a command routed with
    /// one version and run under the slot's lock with the same one needs
    /// no second look (see `command::dispatch`).
    pub version: u64,
}

impl Route {
    /// A node that is not part of a cluster yet: nothing is served.
    pub fn empty() -> Route {
        Route {
            ok: false,
            owner: vec![NONE; SLOTS].into_boxed_slice(),
            addrs: Vec::new(),
            ids: Vec::new(),
            me: NONE,
            my_master: NONE,
            migrating: BTreeMap::new(),
            importing: BTreeMap::new(),
            settings: RouteSettings::default(),
            version: 0,
        }
    }

    pub fn build(st: &State, settings: RouteSettings) -> Route {
        Route::make(st, settings, None)
    }

    /// The route after only `changed` slots changed owner since `prev`
    /// was made: `prev`'s owner table is copied and those slots redone,
    /// the rest (addresses, roles, migrations) is read afresh. A reshard
    /// changes one slot at a time, and a full rebuild scans all 16384.
    pub fn update(prev: &Route, st: &State, settings: RouteSettings, changed: &[u16]) -> Route {
        Route::make(st, settings, Some((prev, changed)))
    }

    fn make(st: &State, settings: RouteSettings, from: Option<(&Route, &[u16])>) -> Route {
        let mut ids: Vec<NodeId> = from.map(|(p, _)| p.ids.clone()).unwrap_or_default();
        let mut index: std::collections::HashMap<NodeId, u16> = ids
            .iter()
            .enumerate()
            .map(|(i, id)| (*id, i as u16))
            .collect();
        let mut idx = |id: NodeId, ids: &mut Vec<NodeId>| -> u16 {
            *index.entry(id).or_insert_with(|| {
                ids.push(id);
                (ids.len() - 1) as u16
            })
        };
        let me = idx(st.me, &mut ids);
        let my_master = match st.myself().master {
            Some(m) if st.myself().is_replica() => idx(m, &mut ids),
            _ => NONE,
        };
        let owner = match from {
            Some((prev, changed)) => {
                let mut owner = prev.owner.clone();
                for &s in changed {
                    owner[s as usize] = match st.owner[s as usize] {
                        Some(id) => idx(id, &mut ids),
                        None => NONE,
                    };
                }
                owner
            }
            None => {
                let mut owner = vec![NONE; SLOTS].into_boxed_slice();
                // Owners come in long runs: look an id up only when it
                // changes.
                let mut last: Option<(NodeId, u16)> = None;
                for (s, o) in st.owner.iter().enumerate() {
                    if let Some(id) = o {
                        let i = match last {
                            Some((l, i)) if same_id(&l, id) => i,
                            _ => {
                                let i = idx(*id, &mut ids);
                                last = Some((*id, i));
                                i
                            }
                        };
                        owner[s] = i;
                    }
                }
                owner
            }
        };
        let migrating = st
            .migrating
            .iter()
            .map(|(s, id)| (*s, idx(*id, &mut ids)))
            .collect();
        let importing = st
            .importing
            .iter()
            .map(|(s, id)| (*s, idx(*id, &mut ids)))
            .collect();
        let addrs = ids
            .iter()
            .map(|id| {
                st.nodes
                    .get(id)
                    .map(|n| format!("{}:{}", settings.endpoint.of(&n.ip, &n.hostname), n.port))
                    .unwrap_or_default()
            })
            .collect();
        Route {
            ok: st.ok,
            owner,
            addrs,
            ids,
            me,
            my_master,
            migrating,
            importing,
            settings,
            version: from.map_or(0, |(p, _)| p.version + 1),
        }
    }
}

/// Node id equality as five word compares, inlined: it runs for each of
/// the 16384 slots on every rebuild, where a `memcmp` call showed up.
fn same_id(a: &NodeId, b: &NodeId) -> bool {
    a.0.chunks_exact(8)
        .zip(b.0.chunks_exact(8))
        .all(|(x, y)| x == y)
}

/// The settings a route is made with: what is served while the cluster
/// is down (`cluster-allow-reads-when-down`,
/// `cluster-allow-pubsubshard-when-down`) and how redirections name a
/// node (`cluster-preferred-endpoint-type`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RouteSettings {
    pub reads_when_down: bool,
    pub pubsubshard_when_down: bool,
    pub endpoint: Endpoint,
}

impl RouteSettings {
    pub fn from_config(c: &crate::config::Config) -> RouteSettings {
        RouteSettings {
            reads_when_down: c.flag("cluster-allow-reads-when-down"),
            pubsubshard_when_down: c.flag("cluster-allow-pubsubshard-when-down"),
            endpoint: Endpoint::from_config(c),
        }
    }
}

/// How clients are told where a node is (`cluster-preferred-endpoint-type`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Endpoint {
    #[default]
    Ip,
    Hostname,
    /// Clients are to use the address they reached us at.
    Unknown,
}

impl Endpoint {
    pub fn from_config(c: &crate::config::Config) -> Endpoint {
        match c.value("cluster-preferred-endpoint-type") {
            "hostname" => Endpoint::Hostname,
            "unknown-endpoint" => Endpoint::Unknown,
            _ => Endpoint::Ip,
        }
    }

    /// A node's preferred endpoint, as Redis writes it after MOVED and in
    /// CLUSTER SHARDS: its ip, its hostname (`?` when it has none), or
    /// nothing.
    pub fn of<'a>(self, ip: &'a str, hostname: &'a str) -> &'a str {
        match self {
            Endpoint::Ip => ip,
            Endpoint::Hostname if hostname.is_empty() => "?",
            Endpoint::Hostname => hostname,
            Endpoint::Unknown => "",
        }
    }
}

/// Why a keyed command is not served here.
#[derive(Debug, PartialEq, Eq)]
pub enum Redirect {
    Moved(u16, String),
    Ask(u16, String),
    CrossSlot,
    /// Some keys of a multi-key command are here and some moved already.
    TryAgain,
    /// CLUSTERDOWN with its text.
    Down(&'static str),
}

impl Redirect {
    pub fn message(&self) -> String {
        match self {
            Redirect::Moved(s, a) => format!("MOVED {s} {a}"),
            Redirect::Ask(s, a) => format!("ASK {s} {a}"),
            Redirect::CrossSlot => "CROSSSLOT Keys in request don't hash to the same slot".into(),
            Redirect::TryAgain => "TRYAGAIN Multiple keys request during rehashing of slot".into(),
            Redirect::Down(m) => (*m).into(),
        }
    }
}

pub struct Query {
    pub write: bool,
    /// The client sent READONLY.
    pub readonly: bool,
    /// The client sent ASKING just before.
    pub asking: bool,
    /// SPUBLISH/SSUBSCRIBE/SUNSUBSCRIBE: served by replicas of the owner
    /// too, and while the cluster is down.
    pub sharded_pubsub: bool,
    /// MIGRATE: served here whenever the slot is open, so keys can move.
    pub migrate: bool,
    /// For a slot being migrated or imported ([`Route::is_open`]): which
    /// of the command's keys this node holds.
    pub keys: KeyPresence,
}

#[derive(Default, Clone, Copy, Debug)]
pub struct KeyPresence {
    pub missing: usize,
    pub existing: usize,
    /// More than one distinct key.
    pub multiple: bool,
}

impl Route {
    /// Why a client blocked on a key of `slot` (BLPOP …) must stop waiting
    /// here, as Redis checks it: the cluster failed, or the slot is served
    /// elsewhere and not being imported.
    pub fn blocked_redirect(&self, slot: u16) -> Option<Redirect> {
        if !self.ok {
            return Some(Redirect::Down("CLUSTERDOWN The cluster is down"));
        }
        let o = self.owner[slot as usize];
        if o == self.me || self.importing.contains_key(&slot) {
            return None;
        }
        if o == NONE {
            return Some(Redirect::Down("CLUSTERDOWN Hash slot not served"));
        }
        Some(Redirect::Moved(slot, self.addrs[o as usize].clone()))
    }

    /// Whether `slot` is migrating away from us or being imported: then a
    /// command's keys decide where it is served.
    pub fn is_open(&self, slot: u16) -> bool {
        self.migrating_here(slot) || self.importing.contains_key(&slot)
    }

    fn migrating_here(&self, slot: u16) -> bool {
        self.owner[slot as usize] == self.me && self.migrating.contains_key(&slot)
    }

    /// Where a command touching `slot` must go; `None` = serve it here.
    /// Redis's rules: during a migration the source serves the keys it
    /// still has and sends the rest with ASK (TRYAGAIN when a multi-key
    /// command is split); the target serves a command sent after ASKING
    /// (TRYAGAIN when it lacks some of several keys).
    pub fn check(&self, slot: u16, q: &Query) -> Option<Redirect> {
        let o = self.owner[slot as usize];
        if o == NONE {
            return Some(Redirect::Down("CLUSTERDOWN Hash slot not served"));
        }
        if !self.ok && q.sharded_pubsub && !self.settings.pubsubshard_when_down {
            return Some(Redirect::Down("CLUSTERDOWN The cluster is down"));
        }
        if !self.ok && !q.sharded_pubsub {
            if !self.settings.reads_when_down {
                return Some(Redirect::Down("CLUSTERDOWN The cluster is down"));
            }
            if q.write {
                return Some(Redirect::Down(
                    "CLUSTERDOWN The cluster is down and only accepts read commands",
                ));
            }
        }
        let migrating = self.migrating_here(slot);
        let importing = !migrating && self.importing.contains_key(&slot);
        if (migrating || importing) && q.migrate {
            return None;
        }
        if migrating && q.keys.missing > 0 {
            if q.keys.existing > 0 {
                return Some(Redirect::TryAgain);
            }
            let to = self.migrating[&slot];
            return Some(Redirect::Ask(slot, self.addrs[to as usize].clone()));
        }
        if importing && q.asking {
            if q.keys.multiple && q.keys.missing > 0 {
                return Some(Redirect::TryAgain);
            }
            return None;
        }
        if o == self.me {
            return None;
        }
        if (q.readonly || q.sharded_pubsub) && !q.write && o == self.my_master && o != NONE {
            return None;
        }
        Some(Redirect::Moved(slot, self.addrs[o as usize].clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::bus::flags;
    use crate::cluster::node::Node;
    use crate::cluster::state::Settings;
    use rand::{Rng, SeedableRng};

    /// A route updated slot by slot equals one rebuilt from scratch.
    #[test]
    fn an_updated_route_equals_a_rebuilt_one() {
        let s = Settings::defaults(7000, 17000, "nodes.conf".into());
        let mut st = State::seeded(s, 0, 3);
        let mut ids = vec![st.me];
        for i in 0..4 {
            let id = st.random_id();
            let mut n = Node::new(id, id, flags::MASTER, 0);
            n.ip = "127.0.0.1".into();
            n.port = 7001 + i;
            st.add_node(n);
            ids.push(id);
        }
        let mut rng = rand::rngs::StdRng::seed_from_u64(9);
        let mut route = Route::build(&st, RouteSettings::default());
        for step in 0..2000 {
            let mut changed = Vec::new();
            for _ in 0..rng.random_range(1..5) {
                let slot = rng.random_range(0..SLOTS);
                st.del_slot(slot);
                if rng.random_bool(0.9) {
                    st.add_slot(slot, ids[rng.random_range(0..ids.len())]);
                }
                changed.push(slot as u16);
            }
            route = Route::update(&route, &st, RouteSettings::default(), &changed);
            let full = Route::build(&st, RouteSettings::default());
            let addr = |r: &Route, s: usize| {
                let o = r.owner[s];
                (o != NONE).then(|| r.addrs[o as usize].clone())
            };
            for s in 0..SLOTS {
                assert_eq!(addr(&route, s), addr(&full, s), "step {step} slot {s}");
            }
            assert_eq!(route.addrs[route.me as usize], full.addrs[full.me as usize]);
        }
    }
}
