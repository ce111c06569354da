//! The drift report: where the observed cluster differs from the desired
//! one. Pure.

use serde::Serialize;
use serde_json::json;

use crate::observer::Observed;
use crate::store::NodeRow;
use crate::topology::{ranges_of, SLOTS};

#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct Drift {
    /// `missing_node`, `unknown_node`, `role_mismatch`, `missing_replica`,
    /// `unexpected_slot_owner`, `open_slots`, `uncovered_slots`.
    pub kind: String,
    /// The node's address, when one is concerned.
    pub node: Option<String>,
    pub details: serde_json::Value,
}

fn d(kind: &str, node: Option<&str>, details: serde_json::Value) -> Drift {
    Drift {
        kind: kind.to_string(),
        node: node.map(str::to_string),
        details,
    }
}

pub fn report(desired: &[NodeRow], slots: &[(String, u16, u16)], obs: &Observed) -> Vec<Drift> {
    let mut out = Vec::new();
    let by_addr = |a: &str| obs.nodes.iter().find(|n| n.address == a);
    for want in desired {
        let Some(seen) = by_addr(&want.address) else {
            out.push(d(
                "missing_node",
                Some(&want.address),
                json!({"role": want.role}),
            ));
            continue;
        };
        if seen.role != want.role {
            out.push(d(
                "role_mismatch",
                Some(&want.address),
                json!({"desired": want.role, "observed": seen.role}),
            ));
        } else if want.role == "replica" {
            let master_addr = seen
                .master
                .as_deref()
                .and_then(|m| obs.node(m))
                .map(|m| m.address.as_str());
            if master_addr != want.master_addr.as_deref() {
                out.push(d(
                    "missing_replica",
                    want.master_addr.as_deref(),
                    json!({"replica": want.address, "replicates": master_addr}),
                ));
            }
        }
    }
    for n in &obs.nodes {
        if !desired.iter().any(|w| w.address == n.address) {
            out.push(d(
                "unknown_node",
                Some(&n.address),
                json!({"id": n.id, "role": n.role}),
            ));
        }
    }
    // Slots: desired owner (by address) against the observed one.
    let owners = obs.owners();
    let mut wrong: Vec<(String, Option<String>, u16)> = Vec::new();
    for (addr, a, b) in slots {
        for s in *a..=*b {
            let seen = owners
                .get(&s)
                .and_then(|id| obs.node(id))
                .map(|n| n.address.clone());
            if seen.as_deref() != Some(addr.as_str()) {
                wrong.push((addr.clone(), seen, s));
            }
        }
    }
    wrong.sort();
    let mut i = 0;
    while i < wrong.len() {
        let (want, seen) = (wrong[i].0.clone(), wrong[i].1.clone());
        let group: Vec<u16> = wrong[i..]
            .iter()
            .take_while(|w| w.0 == want && w.1 == seen)
            .map(|w| w.2)
            .collect();
        i += group.len();
        out.push(d(
            "unexpected_slot_owner",
            Some(&want),
            json!({"slots": ranges_of(group), "observed_owner": seen}),
        ));
    }
    if !obs.open_slots.is_empty() {
        out.push(d("open_slots", None, json!({"slots": obs.open_slots})));
    }
    let uncovered: Vec<u16> = (0..SLOTS).filter(|s| !owners.contains_key(s)).collect();
    if !uncovered.is_empty() && !obs.nodes.is_empty() {
        out.push(d(
            "uncovered_slots",
            None,
            json!({"slots": ranges_of(uncovered)}),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observer::ObservedNode;

    fn node(
        id: &str,
        addr: &str,
        role: &str,
        master: Option<&str>,
        slots: Vec<(u16, u16)>,
    ) -> ObservedNode {
        ObservedNode {
            id: id.into(),
            address: addr.into(),
            role: role.into(),
            master: master.map(str::to_string),
            slots,
            flags: vec![],
            link: "connected".into(),
            config_epoch: 0,
            offset: 0,
            memory_bytes: 0,
            ops_per_sec: 0,
            keys: 0,
        }
    }

    fn row(addr: &str, role: &str, master: Option<&str>) -> NodeRow {
        NodeRow {
            cluster: "c".into(),
            address: addr.into(),
            node_id: None,
            role: role.into(),
            master_addr: master.map(str::to_string),
        }
    }

    #[test]
    fn a_matching_cluster_has_no_drift() {
        let obs = Observed {
            state: "ok".into(),
            nodes: vec![
                node("a", "h:1", "master", None, vec![(0, 16383)]),
                node("b", "h:2", "replica", Some("a"), vec![]),
            ],
            open_slots: vec![],
            time: 1,
        };
        let desired = vec![
            row("h:1", "master", None),
            row("h:2", "replica", Some("h:1")),
        ];
        assert!(report(&desired, &[("h:1".into(), 0, 16383)], &obs).is_empty());
    }

    #[test]
    fn every_kind_of_difference_is_listed() {
        let obs = Observed {
            state: "fail".into(),
            nodes: vec![
                node("a", "h:1", "master", None, vec![(0, 100)]),
                node("b", "h:2", "master", None, vec![(101, 200)]),
                node("x", "h:9", "replica", Some("a"), vec![]),
            ],
            open_slots: vec![],
            time: 1,
        };
        let desired = vec![
            row("h:1", "master", None),
            row("h:2", "replica", Some("h:1")),
            row("h:3", "master", None),
        ];
        let slots = vec![("h:1".to_string(), 0, 200)];
        let r = report(&desired, &slots, &obs);
        let kinds: Vec<&str> = r.iter().map(|x| x.kind.as_str()).collect();
        assert_eq!(
            kinds,
            vec![
                "role_mismatch",
                "missing_node",
                "unknown_node",
                "unexpected_slot_owner",
                "uncovered_slots"
            ]
        );
        assert_eq!(r[3].details["slots"], json!([[101, 200]]));
        assert_eq!(r[4].details["slots"], json!([[201, 16383]]));
    }
}
