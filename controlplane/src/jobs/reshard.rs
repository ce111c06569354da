//! Moving slots: one step per source. Between datanodes the slots go by
//! atomic slot migration (`CLUSTER MIGRATESLOTS`); otherwise slot by slot
//! as `redis-cli --cluster reshard` does (SETSLOT IMPORTING/MIGRATING,
//! MIGRATE in batches, SETSLOT NODE everywhere). Each step first reads
//! what is left to do, so a resumed step finishes what a crash
//! interrupted, open slots included.

use std::collections::HashMap;
use std::time::Duration;

use super::{Ctx, StepError, StepResult};
use crate::nodes::{split_addr, Node};
use crate::plan::Move;
use crate::store::JobRow;
use crate::topology::NodeLine;

/// Keys per MIGRATE call in the legacy path (redis-cli's
/// `--cluster-pipeline`, set high).
const PIPELINE: usize = 100;

#[derive(serde::Deserialize)]
pub struct ReshardPlan {
    pub moves: Vec<Move>,
    pub method: String,
}

pub fn plan_of(job: &JobRow) -> Result<ReshardPlan, StepError> {
    serde_json::from_value(job.plan.clone())
        .map_err(|e| StepError::Failed(format!("the job's plan is unreadable: {e}")))
}

/// The step names of a reshard plan.
pub fn steps(moves: &[Move]) -> Vec<String> {
    let mut s: Vec<String> = (0..moves.len()).map(|i| format!("move_{i}")).collect();
    s.push("wait_for_consistency".into());
    s.push("record_topology".into());
    s
}

fn value_text(v: &redis::Value) -> String {
    match v {
        redis::Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
        redis::Value::SimpleString(s) => s.clone(),
        redis::Value::Int(i) => i.to_string(),
        _ => String::new(),
    }
}

/// `CLUSTER GETSLOTMIGRATIONS` as maps; `None` when the node has no such
/// command (redis-server).
async fn migrations(n: &mut Node) -> Option<Vec<HashMap<String, String>>> {
    let v: redis::Value = n.cmd(&["CLUSTER", "GETSLOTMIGRATIONS"]).await.ok()?;
    let redis::Value::Array(jobs) = v else {
        return None;
    };
    Some(
        jobs.iter()
            .map(|j| match j {
                redis::Value::Array(kv) => kv
                    .chunks(2)
                    .map(|p| {
                        (
                            value_text(&p[0]),
                            p.get(1).map(value_text).unwrap_or_default(),
                        )
                    })
                    .collect(),
                redis::Value::Map(kv) => kv
                    .iter()
                    .map(|(k, v)| (value_text(k), value_text(v)))
                    .collect(),
                _ => HashMap::new(),
            })
            .collect(),
    )
}

fn addr_of<'a>(view: &'a [NodeLine], id: &str) -> Result<&'a str, StepError> {
    view.iter()
        .find(|l| l.id == id)
        .map(|l| l.address.as_str())
        .ok_or_else(|| StepError::Failed(format!("node {id} is not in the cluster")))
}

fn owned_by(view: &[NodeLine], id: &str) -> std::collections::HashSet<u16> {
    view.iter()
        .filter(|l| l.id == id)
        .flat_map(|l| l.slots.iter().flat_map(|&(a, b)| a..=b))
        .collect()
}

async fn cancelled(ctx: &Ctx, job: &JobRow) -> bool {
    matches!(ctx.store.job(&job.id).await, Ok(Some(j)) if j.cancel_requested)
}

pub async fn run_step(ctx: &Ctx, job: &JobRow, step: &str) -> StepResult {
    let plan = plan_of(job)?;
    let seed = super::create::any_node(ctx, &job.cluster).await?;
    match step {
        "wait_for_consistency" => {
            let addrs = super::create::cluster_addrs(ctx, &seed).await?;
            super::wait_for(
                60,
                "every node to agree and report cluster_state:ok",
                || async {
                    super::create::consistent(ctx, &addrs)
                        .await
                        .unwrap_or(false)
                },
            )
            .await?;
            Ok(None)
        }
        "record_topology" => {
            super::create::record(ctx, &job.cluster, &seed).await?;
            Ok(None)
        }
        s => {
            let i: usize = s
                .strip_prefix("move_")
                .and_then(|i| i.parse().ok())
                .filter(|i| *i < plan.moves.len())
                .ok_or_else(|| StepError::Failed(format!("unknown step {s}")))?;
            let total = plan.moves.iter().map(Move::count).sum::<u32>();
            let mut rep = Reporter {
                ctx,
                job,
                step: s,
                total: i64::from(total),
                last: None,
            };
            run_move(ctx, job, &seed, &plan.moves[i], &plan.method, &mut rep).await
        }
    }
}

/// Reports what a move step has done (slots, keys) to the store, at most
/// every quarter second and always at the end, and raises the job's
/// progress from the job's slot total.
struct Reporter<'a> {
    ctx: &'a Ctx,
    job: &'a JobRow,
    step: &'a str,
    total: i64,
    last: Option<tokio::time::Instant>,
}

impl Reporter<'_> {
    async fn report(&mut self, slots: u32, keys: u64, force: bool) {
        let now = tokio::time::Instant::now();
        if !force
            && self
                .last
                .is_some_and(|t| now < t + Duration::from_millis(250))
        {
            return;
        }
        self.last = Some(now);
        let store = &self.ctx.store;
        match store
            .set_step_moved(&self.job.id, self.step, i64::from(slots), keys as i64)
            .await
        {
            Ok((moved, _)) if self.total > 0 => {
                // 100 is for the job's end (the steps after the moves).
                let pct = (moved * 100 / self.total).min(99);
                if let Err(e) = store.set_progress(&self.job.id, pct).await {
                    tracing::warn!("job {}: cannot save progress: {e}", self.job.id);
                }
            }
            Ok(_) => {}
            Err(e) => tracing::warn!("job {}: cannot save progress: {e}", self.job.id),
        }
    }
}

async fn run_move(
    ctx: &Ctx,
    job: &JobRow,
    seed: &str,
    mv: &Move,
    method: &str,
    rep: &mut Reporter<'_>,
) -> StepResult {
    let view = Node::connect(seed, ctx.password.as_deref())
        .await?
        .cluster_nodes()
        .await?;
    let src_addr = addr_of(&view, &mv.from)?.to_string();
    let dst_addr = addr_of(&view, &mv.to)?.to_string();
    let mut src = Node::connect(&src_addr, ctx.password.as_deref()).await?;
    let mut dst = Node::connect(&dst_addr, ctx.password.as_deref()).await?;
    let atomic = match method {
        "legacy" => false,
        m => {
            let both = migrations(&mut src).await.is_some() && migrations(&mut dst).await.is_some();
            if m == "atomic" && !both {
                return Err(StepError::Failed(format!(
                    "method atomic: {src_addr} or {dst_addr} cannot do atomic slot migration"
                )));
            }
            both
        }
    };
    if atomic {
        atomic_move(ctx, job, &mut src, mv, rep).await
    } else {
        legacy_move(ctx, job, &mut src, &mut dst, mv, rep).await
    }
}

async fn atomic_move(
    ctx: &Ctx,
    job: &JobRow,
    src: &mut Node,
    mv: &Move,
    rep: &mut Reporter<'_>,
) -> StepResult {
    let view = src.cluster_nodes().await?;
    let mine = owned_by(&view, &mv.from);
    let left: Vec<u16> = mv
        .slots
        .iter()
        .flat_map(|&(a, b)| a..=b)
        .filter(|s| mine.contains(s))
        .collect();
    if left.is_empty() {
        rep.report(mv.count(), 0, true).await;
        return Ok(Some(format!("{} slots already moved", mv.count())));
    }
    let before: Vec<String> = migrations(src)
        .await
        .unwrap_or_default()
        .iter()
        .map(|j| j.get("name").cloned().unwrap_or_default())
        .collect();
    // A job of ours still running (we crashed while it ran): wait for it.
    let running = migrations(src)
        .await
        .unwrap_or_default()
        .into_iter()
        .find(|j| {
            j.get("operation").map(String::as_str) == Some("EXPORT")
                && j.get("target_node") == Some(&mv.to)
                && !matches!(
                    j.get("state").map(String::as_str),
                    Some("success" | "failed" | "cancelled")
                )
        });
    let name = match running {
        Some(j) => j.get("name").cloned().unwrap_or_default(),
        None => {
            let mut args: Vec<String> =
                vec!["CLUSTER".into(), "MIGRATESLOTS".into(), "SLOTSRANGE".into()];
            for (a, b) in crate::topology::ranges_of(left.iter().copied()) {
                args.extend([a.to_string(), b.to_string()]);
            }
            args.extend(["NODE".into(), mv.to.clone()]);
            let refs: Vec<&str> = args.iter().map(String::as_str).collect();
            src.cmd::<()>(&refs).await?;
            migrations(src)
                .await
                .unwrap_or_default()
                .into_iter()
                .filter_map(|j| j.get("name").cloned())
                .find(|n| !before.contains(n))
                .ok_or_else(|| StepError::Failed("the migration job did not appear".into()))?
        }
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3600);
    loop {
        let jobs = migrations(src).await.unwrap_or_default();
        let Some(j) = jobs.iter().find(|j| j.get("name") == Some(&name)) else {
            return Err(StepError::Failed(format!(
                "migration {name} vanished from the source"
            )));
        };
        let state = j.get("state").cloned().unwrap_or_default();
        let keys = j.get("keys_transferred").cloned().unwrap_or_default();
        let key_count: u64 = keys.parse().unwrap_or(0);
        match state.as_str() {
            "success" => {
                rep.report(mv.count(), key_count, true).await;
                return Ok(Some(format!(
                    "{} slots moved atomically ({keys} keys) by migration {name}",
                    left.len()
                )));
            }
            "cancelled" if cancelled(ctx, job).await => {
                return Err(StepError::Cancelled(format!(
                    "migration {name} cancelled; the source kept its slots"
                )))
            }
            "failed" | "cancelled" => {
                return Err(StepError::Failed(format!(
                    "migration {name} {state}: {}",
                    j.get("message").cloned().unwrap_or_default()
                )))
            }
            _ => {}
        }
        // Slots change hands all at once, at the end; keys flow before.
        rep.report(mv.count() - left.len() as u32, key_count, false)
            .await;
        if cancelled(ctx, job).await {
            // The source keeps every slot and the target drops what it got.
            let _ = src.cmd::<()>(&["CLUSTER", "CANCELSLOTMIGRATIONS"]).await;
        }
        if tokio::time::Instant::now() > deadline {
            return Err(StepError::Failed(format!(
                "migration {name} did not finish within an hour"
            )));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn legacy_move(
    ctx: &Ctx,
    job: &JobRow,
    src: &mut Node,
    dst: &mut Node,
    mv: &Move,
    rep: &mut Reporter<'_>,
) -> StepResult {
    let (dst_host, dst_port) = split_addr(&dst.addr)
        .ok_or_else(|| StepError::Failed(format!("bad address {}", dst.addr)))?;
    let (dst_host, dst_port) = (dst_host.to_string(), dst_port.to_string());
    let (mut slots_moved, mut keys_moved) = (0u32, 0u64);
    // Slots done in this step, moved now or found moved (a resumed step).
    let mut done = 0u32;
    for s in mv.slots.iter().flat_map(|&(a, b)| a..=b) {
        rep.report(done, keys_moved, false).await;
        done += 1;
        // Between slots is the safe point: nothing is left open.
        if cancelled(ctx, job).await {
            // The counts the job shows match what this step says it did.
            rep.report(done - 1, keys_moved, true).await;
            return Err(StepError::Cancelled(format!(
                "after {slots_moved} slots of this step ({keys_moved} keys)"
            )));
        }
        let view = src.cluster_nodes().await?;
        let slot = s.to_string();
        if !owned_by(&view, &mv.from).contains(&s) {
            // Moved already (a resumed step). Gossip may have told the
            // source before we did: its MIGRATING state must still go.
            let open_here = view
                .iter()
                .any(|l| l.is_myself() && l.migrating.iter().any(|(m, _)| *m == s));
            if open_here {
                src.cmd::<()>(&["CLUSTER", "SETSLOT", &slot, "NODE", &mv.to])
                    .await?;
            }
            let _ = dst
                .cmd::<()>(&["CLUSTER", "SETSLOT", &slot, "STABLE"])
                .await;
            continue;
        }
        let open = view
            .iter()
            .any(|l| l.id == mv.from && l.migrating.iter().any(|(m, _)| *m == s));
        if open && owned_by(&dst.cluster_nodes().await?, &mv.to).contains(&s) {
            // The target took it, the source was not told yet (we stopped
            // between the two SETSLOT NODE): finish the handoff.
            src.cmd::<()>(&["CLUSTER", "SETSLOT", &slot, "NODE", &mv.to])
                .await?;
            continue;
        }
        dst.cmd::<()>(&["CLUSTER", "SETSLOT", &slot, "IMPORTING", &mv.from])
            .await?;
        src.cmd::<()>(&["CLUSTER", "SETSLOT", &slot, "MIGRATING", &mv.to])
            .await?;
        loop {
            let keys: Vec<String> = src
                .cmd(&["CLUSTER", "GETKEYSINSLOT", &slot, &PIPELINE.to_string()])
                .await?;
            if keys.is_empty() {
                break;
            }
            let mut args: Vec<&str> = vec!["MIGRATE", &dst_host, &dst_port, "", "0", "60000"];
            if let Some(pw) = ctx.password.as_deref() {
                args.extend(["AUTH", pw]);
            }
            args.push("KEYS");
            args.extend(keys.iter().map(String::as_str));
            src.cmd::<()>(&args).await?;
            keys_moved += keys.len() as u64;
        }
        // The target first, so it serves the slot before the source
        // redirects to it; then the source and every other master.
        dst.cmd::<()>(&["CLUSTER", "SETSLOT", &slot, "NODE", &mv.to])
            .await?;
        src.cmd::<()>(&["CLUSTER", "SETSLOT", &slot, "NODE", &mv.to])
            .await?;
        for other in view
            .iter()
            .filter(|l| l.is_master() && l.id != mv.from && l.id != mv.to)
        {
            if let Ok(mut n) = Node::connect(&other.address, ctx.password.as_deref()).await {
                let _ = n
                    .cmd::<()>(&["CLUSTER", "SETSLOT", &slot, "NODE", &mv.to])
                    .await;
            }
        }
        slots_moved += 1;
    }
    rep.report(done, keys_moved, true).await;
    Ok(Some(format!(
        "{slots_moved} slots moved with MIGRATE ({keys_moved} keys)"
    )))
}
