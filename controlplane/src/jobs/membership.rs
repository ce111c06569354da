//! Manual failover, adding a node and removing one, as resumable steps.

use super::create::{any_node, cluster_addrs, consistent, record, replicate};
use super::{wait_for, Ctx, StepError, StepResult};
use crate::nodes::{split_addr, Node};
use crate::store::JobRow;
use crate::topology::NodeLine;

pub const FAILOVER_STEPS: &[&str] = &["failover", "verify", "record_topology"];
pub const REMOVE_STEPS: &[&str] = &["rehome_replicas", "forget", "reset", "record_topology"];

/// Steps to add a node (a replica also gets `replicate`).
pub fn add_steps(replica: bool) -> Vec<String> {
    let mut s = vec!["check_node", "meet", "wait_for_join"];
    if replica {
        s.extend(["replicate", "wait_for_sync"]);
    }
    s.extend(["wait_for_consistency", "record_topology"]);
    s.into_iter().map(str::to_string).collect()
}

fn param<'a>(job: &'a JobRow, k: &str) -> Result<&'a str, StepError> {
    job.params[k]
        .as_str()
        .ok_or_else(|| StepError::Failed(format!("the job has no '{k}'")))
}

async fn connect(ctx: &Ctx, addr: &str) -> Result<Node, StepError> {
    Ok(Node::connect(addr, ctx.password.as_deref()).await?)
}

async fn view(ctx: &Ctx, addr: &str) -> Result<Vec<NodeLine>, StepError> {
    Ok(connect(ctx, addr).await?.cluster_nodes().await?)
}

fn line<'a>(v: &'a [NodeLine], id: &str) -> Result<&'a NodeLine, StepError> {
    v.iter()
        .find(|l| l.id == id)
        .ok_or_else(|| StepError::Failed(format!("node {id} is not in the cluster")))
}

/// The replica at `addr` has a live link to its master and no sync under
/// way: it holds its master's data.
async fn synced(ctx: &Ctx, addr: &str) -> bool {
    let Ok(mut n) = connect(ctx, addr).await else {
        return false;
    };
    match n.info("replication").await {
        Ok(i) => {
            i.get("master_link_status").map(String::as_str) == Some("up")
                && i.get("master_sync_in_progress").map(String::as_str) == Some("0")
        }
        Err(_) => false,
    }
}

/// The master of the replica at `addr` answers a PING.
async fn master_answers(ctx: &Ctx, addr: &str) -> bool {
    let Ok(mut n) = connect(ctx, addr).await else {
        return false;
    };
    let Ok(i) = n.info("replication").await else {
        return false;
    };
    let (Some(h), Some(p)) = (i.get("master_host"), i.get("master_port")) else {
        return false;
    };
    match connect(ctx, &format!("{h}:{p}")).await {
        Ok(mut m) => m.cmd::<String>(&["PING"]).await.is_ok(),
        Err(_) => false,
    }
}

pub async fn run_failover_step(ctx: &Ctx, job: &JobRow, step: &str) -> StepResult {
    let replica = param(job, "replica")?;
    let old = param(job, "old_master")?;
    let mode = param(job, "mode")?;
    let seed = any_node(ctx, &job.cluster).await?;
    let addr = line(&view(ctx, &seed).await?, replica)?.address.clone();
    match step {
        "failover" => {
            let mut n = connect(ctx, &addr).await?;
            if n.myself().await?.is_master() {
                return Ok(Some("already a master".into()));
            }
            // FORCE and TAKEOVER skip the master's handshake, so a replica
            // still waiting for its first copy would become an empty
            // master. While the old master answers, wait for the copy;
            // when it does not, promoting what the replica has is the point.
            if !synced(ctx, &addr).await && master_answers(ctx, &addr).await {
                wait_for(
                    120,
                    &format!("{replica} to finish syncing with {old} (promoting it earlier would lose data)"),
                    || async { synced(ctx, &addr).await },
                )
                .await?;
            }
            let mut args = vec!["CLUSTER", "FAILOVER"];
            match mode {
                "force" => args.push("FORCE"),
                "takeover" => args.push("TAKEOVER"),
                _ => {}
            }
            n.cmd::<()>(&args).await?;
            Ok(None)
        }
        "verify" => {
            // The replica is master with the slots; the old master, unless
            // it is down, follows it.
            wait_for(60, &format!("{replica} to become master"), || async {
                matches!(view(ctx, &addr).await, Ok(v) if v.iter().any(|l| l.id == replica && l.is_myself() && l.is_master() && !l.slots.is_empty()))
            })
            .await?;
            wait_for(60, &format!("{old} to follow {replica}"), || async {
                match view(ctx, &addr).await {
                    Ok(v) => v
                        .iter()
                        .find(|l| l.id == old)
                        .is_none_or(|l| l.has("fail") || l.master.as_deref() == Some(replica)),
                    Err(_) => false,
                }
            })
            .await?;
            Ok(Some(format!(
                "{replica} is master; {old} follows it or is down"
            )))
        }
        "record_topology" => {
            record(ctx, &job.cluster, &addr).await?;
            Ok(None)
        }
        s => Err(StepError::Failed(format!("unknown step {s}"))),
    }
}

pub async fn run_add_step(ctx: &Ctx, job: &JobRow, step: &str) -> StepResult {
    let addr = param(job, "address")?.to_string();
    let seed = param(job, "seed")?.to_string();
    match step {
        "check_node" => {
            let mut n = connect(ctx, &addr).await?;
            let v = n.cluster_nodes().await.map_err(|e| {
                StepError::Failed(format!(
                    "{addr} is not a cluster node (cluster-enabled no?): {e}"
                ))
            })?;
            let cluster: Vec<String> = view(ctx, &seed).await?.into_iter().map(|l| l.id).collect();
            if v.len() > 1 && !v.iter().all(|l| cluster.contains(&l.id)) {
                return Err(StepError::Failed(format!(
                    "{addr} already belongs to another cluster"
                )));
            }
            let keys: i64 = n.cmd(&["DBSIZE"]).await?;
            if v.len() == 1 && keys > 0 {
                return Err(StepError::Failed(format!(
                    "{addr} is not empty ({keys} keys)"
                )));
            }
            Ok(None)
        }
        "meet" => {
            let mut n = connect(ctx, &addr).await?;
            if n.cluster_nodes().await?.len() > 1 {
                return Ok(Some("already met".into()));
            }
            let (h, p) = split_addr(&seed)
                .ok_or_else(|| StepError::Failed(format!("bad address {seed}")))?;
            n.cmd::<()>(&["CLUSTER", "MEET", h, &p.to_string()]).await?;
            Ok(None)
        }
        "wait_for_join" => {
            // The seed may learn of the new node before this step starts
            // (MEET is answered within milliseconds), so the target count
            // comes from the seed's view as it is now, which must include
            // the node, rather than from a count taken once.
            wait_for(60, &format!("{addr} to join"), || async {
                let all = cluster_addrs(ctx, &seed).await.unwrap_or_default();
                let mut ok = all.contains(&addr);
                for a in &all {
                    ok &= matches!(view(ctx, a).await, Ok(v)
                        if v.len() >= all.len()
                            && v.iter().any(|l| l.address == addr)
                            && v.iter().all(|l| !l.has("handshake")));
                }
                ok
            })
            .await?;
            Ok(None)
        }
        "replicate" => {
            replicate(ctx, &addr, param(job, "master")?).await?;
            Ok(None)
        }
        "wait_for_sync" => {
            // A replica holds no data until its first sync ends (a master
            // delays it by `repl-diskless-sync-delay`): the job is not done
            // before, or a failover to it right after would lose the data.
            wait_for(
                300,
                &format!("{addr} to finish its first sync with its master"),
                || async { synced(ctx, &addr).await },
            )
            .await?;
            Ok(None)
        }
        "wait_for_consistency" => {
            let addrs = cluster_addrs(ctx, &seed).await?;
            wait_for(
                60,
                "every node to agree and report cluster_state:ok",
                || async { consistent(ctx, &addrs).await.unwrap_or(false) },
            )
            .await?;
            Ok(None)
        }
        "record_topology" => {
            record(ctx, &job.cluster, &seed).await?;
            Ok(None)
        }
        s => Err(StepError::Failed(format!("unknown step {s}"))),
    }
}

pub async fn run_remove_step(ctx: &Ctx, job: &JobRow, step: &str) -> StepResult {
    let id = param(job, "node")?.to_string();
    let addr = param(job, "address")?.to_string();
    let seed = any_node(ctx, &job.cluster).await?;
    let others: Vec<String> = cluster_addrs(ctx, &seed)
        .await?
        .into_iter()
        .filter(|a| *a != addr)
        .collect();
    let seed = others
        .first()
        .cloned()
        .ok_or_else(|| StepError::Failed("no other node answers".into()))?;
    match step {
        "rehome_replicas" => {
            // A master's replicas go to the master with the fewest.
            let v = view(ctx, &seed).await?;
            let orphans: Vec<&NodeLine> = v
                .iter()
                .filter(|l| l.master.as_deref() == Some(id.as_str()))
                .collect();
            for o in &orphans {
                let target = v
                    .iter()
                    .filter(|m| {
                        m.is_master() && m.id != id && !m.slots.is_empty() && !m.has("fail")
                    })
                    .min_by_key(|m| {
                        v.iter()
                            .filter(|r| r.master.as_deref() == Some(m.id.as_str()))
                            .count()
                    })
                    .ok_or_else(|| StepError::Failed("no master left for the replicas".into()))?;
                connect(ctx, &o.address)
                    .await?
                    .cmd::<()>(&["CLUSTER", "REPLICATE", &target.id])
                    .await?;
            }
            Ok(Some(format!("{} replicas moved", orphans.len())))
        }
        "forget" => {
            // Every other node forgets it (Redis bans it for 60 s, so
            // gossip does not bring it back meanwhile).
            for a in &others {
                let mut n = connect(ctx, a).await?;
                if n.cluster_nodes().await?.iter().any(|l| l.id == id) {
                    n.cmd::<()>(&["CLUSTER", "FORGET", &id]).await?;
                }
            }
            Ok(None)
        }
        "reset" => {
            // The node itself forgets the cluster (if it is still up).
            if let Ok(mut n) = Node::connect(&addr, ctx.password.as_deref()).await {
                if n.cluster_nodes()
                    .await
                    .map(|v| v.len() > 1)
                    .unwrap_or(false)
                {
                    n.cmd::<()>(&["CLUSTER", "RESET", "SOFT"]).await?;
                }
            }
            ctx.store.delete_node(&job.cluster, &addr).await?;
            Ok(None)
        }
        "record_topology" => {
            record(ctx, &job.cluster, &seed).await?;
            Ok(None)
        }
        s => Err(StepError::Failed(format!("unknown step {s}"))),
    }
}
