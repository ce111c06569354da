//! Creating a cluster (what `redis-cli --cluster create` does, as
//! resumable steps) and adopting one that exists.

use std::collections::HashMap;

use super::{wait_for, Ctx, StepError, StepResult};
use crate::nodes::{split_addr, Node};
use crate::plan::CreatePlan;
use crate::store::{JobRow, NodeRow};
use crate::topology::NodeLine;

pub const CREATE_STEPS: &[&str] = &[
    "check_nodes",
    "assign_slots",
    "set_config_epochs",
    "meet",
    "wait_for_join",
    "replicate",
    "wait_for_consistency",
    "record_topology",
];

pub const ADOPT_STEPS: &[&str] = &["record_topology"];

fn plan_of(job: &JobRow) -> Result<CreatePlan, StepError> {
    serde_json::from_value(job.plan.clone())
        .map_err(|e| StepError::Failed(format!("the job's plan is unreadable: {e}")))
}

fn all_addrs(p: &CreatePlan) -> Vec<String> {
    p.shards
        .iter()
        .flat_map(|s| std::iter::once(s.master.clone()).chain(s.replicas.iter().cloned()))
        .collect()
}

async fn connect(ctx: &Ctx, addr: &str) -> Result<Node, StepError> {
    Ok(Node::connect(addr, ctx.password.as_deref()).await?)
}

async fn views(ctx: &Ctx, addrs: &[String]) -> Result<HashMap<String, Vec<NodeLine>>, StepError> {
    let mut out = HashMap::new();
    for a in addrs {
        out.insert(a.clone(), connect(ctx, a).await?.cluster_nodes().await?);
    }
    Ok(out)
}

pub async fn run_create_step(ctx: &Ctx, job: &JobRow, step: &str) -> StepResult {
    let plan = plan_of(job)?;
    let addrs = all_addrs(&plan);
    match step {
        "check_nodes" => {
            // Fresh nodes know only themselves and hold no keys. After a
            // crash mid-job they may already know each other: that is fine
            // as long as they know no one outside the plan.
            for a in &addrs {
                let mut n = connect(ctx, a).await?;
                let view = n.cluster_nodes().await.map_err(|e| {
                    StepError::Failed(format!(
                        "{a} is not a cluster node (cluster-enabled no?): {e}"
                    ))
                })?;
                if let Some(stranger) = view.iter().find(|l| !addrs.contains(&l.address)) {
                    return Err(StepError::Failed(format!(
                        "{a} already belongs to another cluster (it knows {})",
                        stranger.address
                    )));
                }
                let keys: i64 = n.cmd(&["DBSIZE"]).await?;
                if view.len() == 1 && keys > 0 {
                    return Err(StepError::Failed(format!("{a} is not empty ({keys} keys)")));
                }
            }
            Ok(Some(format!("{} nodes ready", addrs.len())))
        }
        "assign_slots" => {
            let mut added = 0u32;
            for s in &plan.shards {
                let mut n = connect(ctx, &s.master).await?;
                let view = n.cluster_nodes().await?;
                let owned: std::collections::HashSet<u16> = view
                    .iter()
                    .flat_map(|l| l.slots.iter().flat_map(|&(a, b)| a..=b))
                    .collect();
                let missing: Vec<u16> = s
                    .slots
                    .iter()
                    .flat_map(|&(a, b)| a..=b)
                    .filter(|x| !owned.contains(x))
                    .collect();
                for (a, b) in crate::topology::ranges_of(missing) {
                    n.cmd::<()>(&["CLUSTER", "ADDSLOTSRANGE", &a.to_string(), &b.to_string()])
                        .await?;
                    added += (b - a) as u32 + 1;
                }
            }
            Ok(Some(format!("{added} slots assigned")))
        }
        "set_config_epochs" => {
            // Distinct epochs so the masters' claims never collide. A node
            // that already has one (or knows others) refuses: that is the
            // state we want, so the refusal is fine.
            for (i, s) in plan.shards.iter().enumerate() {
                let mut n = connect(ctx, &s.master).await?;
                let _ = n
                    .cmd::<()>(&["CLUSTER", "SET-CONFIG-EPOCH", &(i + 1).to_string()])
                    .await;
            }
            Ok(None)
        }
        "meet" => {
            let first = &addrs[0];
            let (host, port) = split_addr(first)
                .ok_or_else(|| StepError::Failed(format!("bad address {first}")))?;
            let mut met = 0;
            for a in &addrs[1..] {
                let mut n = connect(ctx, a).await?;
                if n.cluster_nodes().await?.iter().any(|l| &l.address == first) {
                    continue;
                }
                n.cmd::<()>(&["CLUSTER", "MEET", host, &port.to_string()])
                    .await?;
                met += 1;
            }
            Ok(Some(format!("{met} nodes met {first}")))
        }
        "wait_for_join" => {
            let want = addrs.len();
            wait_for(60, "every node to know every other", || async {
                match views(ctx, &addrs).await {
                    Ok(v) => v.values().all(|l| {
                        l.len() == want && l.iter().all(|n| !n.has("handshake") && !n.has("noaddr"))
                    }),
                    Err(_) => false,
                }
            })
            .await?;
            Ok(None)
        }
        "replicate" => {
            let mut ids = HashMap::new();
            for s in &plan.shards {
                ids.insert(
                    s.master.clone(),
                    connect(ctx, &s.master).await?.myself().await?.id,
                );
            }
            for s in &plan.shards {
                for r in &s.replicas {
                    replicate(ctx, r, &ids[&s.master]).await?;
                }
            }
            Ok(None)
        }
        "wait_for_consistency" => {
            wait_for(
                60,
                "every node to agree and report cluster_state:ok",
                || async { consistent(ctx, &addrs).await.unwrap_or(false) },
            )
            .await?;
            Ok(None)
        }
        "record_topology" => {
            record(ctx, &job.cluster, &addrs[0]).await?;
            Ok(None)
        }
        s => Err(StepError::Failed(format!("unknown step {s}"))),
    }
}

/// Makes the node at `addr` a replica of `master` (an id) and waits until
/// it says so. CLUSTER REPLICATE fails until the node has heard of the
/// master through gossip: it is retried.
pub async fn replicate(ctx: &Ctx, addr: &str, master: &str) -> Result<(), StepError> {
    wait_for(30, &format!("{addr} to replicate {master}"), || async {
        let Ok(mut n) = connect(ctx, addr).await else {
            return false;
        };
        match n.myself().await {
            Ok(me) if me.master.as_deref() == Some(master) => true,
            Ok(_) => {
                let _ = n.cmd::<()>(&["CLUSTER", "REPLICATE", master]).await;
                false
            }
            Err(_) => false,
        }
    })
    .await
}

/// Every node as (id, its master, its slot ranges), sorted: what nodes
/// must agree on.
type SlotMap = Vec<(String, Option<String>, Vec<(u16, u16)>)>;

/// Every node reports `cluster_state:ok`, no open slot, and the same
/// nodes, roles and slot owners (so what is recorded next is what all of
/// them see, not a view gossip has yet to update).
pub async fn consistent(ctx: &Ctx, addrs: &[String]) -> Result<bool, StepError> {
    let mut sig: Option<SlotMap> = None;
    for a in addrs {
        let mut n = connect(ctx, a).await?;
        if n.info("cluster-info")
            .await?
            .get("cluster_state")
            .map(String::as_str)
            != Some("ok")
        {
            return Ok(false);
        }
        let view = n.cluster_nodes().await?;
        // An open slot (MIGRATING/IMPORTING) is not a finished change.
        if view
            .iter()
            .any(|l| l.is_myself() && (!l.migrating.is_empty() || !l.importing.is_empty()))
        {
            return Ok(false);
        }
        let mut s: SlotMap = view
            .into_iter()
            .filter(|l| !l.has("handshake") && !l.has("noaddr"))
            .map(|l| (l.id, l.master, l.slots))
            .collect();
        s.sort();
        match &sig {
            None => sig = Some(s),
            Some(prev) if *prev != s => return Ok(false),
            _ => {}
        }
    }
    Ok(true)
}

/// Stores what the cluster is now as its desired state: nodes with ids
/// and roles, slot ranges per master.
pub async fn record(ctx: &Ctx, cluster: &str, seed: &str) -> Result<usize, StepError> {
    let view = connect(ctx, seed).await?.cluster_nodes().await?;
    let addr_of: HashMap<&str, &str> = view
        .iter()
        .map(|l| (l.id.as_str(), l.address.as_str()))
        .collect();
    let mut ranges = Vec::new();
    let mut rows = Vec::new();
    for l in &view {
        if l.has("handshake") || l.has("noaddr") {
            continue;
        }
        rows.push(NodeRow {
            cluster: cluster.to_string(),
            address: l.address.clone(),
            node_id: Some(l.id.clone()),
            role: if l.is_master() { "master" } else { "replica" }.into(),
            master_addr: l
                .master
                .as_deref()
                .and_then(|m| addr_of.get(m))
                .map(|s| s.to_string()),
        });
        for &(a, b) in &l.slots {
            ranges.push((l.address.clone(), a, b));
        }
    }
    ctx.store.set_nodes(cluster, &rows).await?;
    ctx.store.set_slot_ranges(cluster, &ranges).await?;
    Ok(view.len())
}

pub async fn run_adopt_step(ctx: &Ctx, job: &JobRow, step: &str) -> StepResult {
    let seed = job.params["adopt"]
        .as_str()
        .ok_or_else(|| StepError::Failed("the job has no seed address".into()))?;
    match step {
        "record_topology" => {
            let n = record(ctx, &job.cluster, seed).await?;
            Ok(Some(format!("{n} nodes recorded")))
        }
        s => Err(StepError::Failed(format!("unknown step {s}"))),
    }
}

/// A reachable node of the cluster (from its desired nodes).
pub async fn any_node(ctx: &Ctx, cluster: &str) -> Result<String, StepError> {
    for n in ctx.store.nodes(cluster).await? {
        if let Ok(mut c) = Node::connect(&n.address, ctx.password.as_deref()).await {
            if c.cluster_nodes().await.is_ok() {
                return Ok(n.address);
            }
        }
    }
    Err(StepError::Failed(format!(
        "no node of cluster {cluster} answers"
    )))
}

/// The addresses of the cluster's healthy nodes, from `seed`'s view.
pub async fn cluster_addrs(ctx: &Ctx, seed: &str) -> Result<Vec<String>, StepError> {
    Ok(connect(ctx, seed)
        .await?
        .cluster_nodes()
        .await?
        .into_iter()
        .filter(|l| !l.has("fail") && !l.has("handshake") && !l.has("noaddr"))
        .map(|l| l.address)
        .collect())
}
