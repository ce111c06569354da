//! The routing snapshot: an immutable copy of who serves each slot, read
//! by the command path without taking the cluster lock.

use std::collections::BTreeMap;

use super::state::State;
use crate::keyspace::SLOTS;

pub const NONE: u16 = u16::MAX;

pub struct Route {
    pub ok: bool,
    /// Index into `addrs` per slot, `NONE` when unassigned.
    pub owner: Box<[u16]>,
    /// `ip:port` of each node that owns slots.
    pub addrs: Vec<String>,
    pub me: u16,
    /// Our master's index when we are a replica.
    pub my_master: u16,
    pub migrating: BTreeMap<u16, u16>,
    pub importing: BTreeMap<u16, u16>,
    pub allow_reads_when_down: bool,
}

impl Route {
    /// A node that is not part of a cluster yet: nothing is served.
    pub fn empty() -> Route {
        Route {
            ok: false,
            owner: vec![NONE; SLOTS].into_boxed_slice(),
            addrs: Vec::new(),
            me: NONE,
            my_master: NONE,
            migrating: BTreeMap::new(),
            importing: BTreeMap::new(),
            allow_reads_when_down: false,
        }
    }

    pub fn build(st: &State, allow_reads_when_down: bool) -> Route {
        let mut index: std::collections::HashMap<super::id::NodeId, u16> = Default::default();
        let mut addrs = Vec::new();
        let mut idx = |id: super::id::NodeId, addrs: &mut Vec<String>| -> u16 {
            *index.entry(id).or_insert_with(|| {
                let a = st
                    .nodes
                    .get(&id)
                    .map(|n| format!("{}:{}", n.ip, n.port))
                    .unwrap_or_default();
                addrs.push(a);
                (addrs.len() - 1) as u16
            })
        };
        let me = idx(st.me, &mut addrs);
        let my_master = match st.myself().master {
            Some(m) if st.myself().is_replica() => idx(m, &mut addrs),
            _ => NONE,
        };
        let mut owner = vec![NONE; SLOTS].into_boxed_slice();
        // Owners come in long runs: look an id up only when it changes
        // (a rebuild follows every SETSLOT of a reshard).
        let mut last: Option<(super::id::NodeId, u16)> = None;
        for (s, o) in st.owner.iter().enumerate() {
            if let Some(id) = o {
                let i = match last {
                    Some((l, i)) if same_id(&l, id) => i,
                    _ => {
                        let i = idx(*id, &mut addrs);
                        last = Some((*id, i));
                        i
                    }
                };
                owner[s] = i;
            }
        }
        let migrating = st
            .migrating
            .iter()
            .map(|(s, id)| (*s, idx(*id, &mut addrs)))
            .collect();
        let importing = st
            .importing
            .iter()
            .map(|(s, id)| (*s, idx(*id, &mut addrs)))
            .collect();
        Route {
            ok: st.ok,
            owner,
            addrs,
            me,
            my_master,
            migrating,
            importing,
            allow_reads_when_down,
        }
    }
}

/// Node id equality as five word compares, inlined: it runs for each of
/// the 16384 slots on every rebuild, where a `memcmp` call showed up.
fn same_id(a: &super::id::NodeId, b: &super::id::NodeId) -> bool {
    a.0.chunks_exact(8)
        .zip(b.0.chunks_exact(8))
        .all(|(x, y)| x == y)
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
        if !self.ok && !q.sharded_pubsub {
            if !self.allow_reads_when_down {
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
