//! Durable jobs: an ordered list of idempotent steps in the store. The
//! runner takes a job's lease, runs its next unfinished step, records the
//! outcome, and goes on; a process that dies mid-step leaves the lease to
//! expire, and whoever takes the job next re-runs that step (each step
//! checks the nodes before acting, so running it twice is safe).

mod create;
pub mod membership;
pub mod reshard;

use std::time::Duration;

use serde_json::json;

use crate::events::Events;
use crate::store::{JobRow, NewEvent, Store};

/// How long a lease lasts without renewal. The runner renews it every
/// third of that while a step runs.
pub const LEASE_MS: i64 = 10_000;

#[derive(Debug, thiserror::Error)]
pub enum StepError {
    #[error(transparent)]
    Node(#[from] crate::nodes::NodeError),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error("{0}")]
    Failed(String),
    /// Stopped at a safe point because the job was cancelled.
    #[error("cancelled {0}")]
    Cancelled(String),
}

pub type StepResult = Result<Option<String>, StepError>;

/// What the runner needs to run a step.
#[derive(Clone)]
pub struct Ctx {
    pub store: Store,
    pub events: Events,
    pub password: Option<String>,
}

/// The steps of a job kind, in order (stored with the job).
pub fn steps_of(kind: &str) -> Vec<String> {
    let s: &[&str] = match kind {
        "create" => create::CREATE_STEPS,
        "adopt" => create::ADOPT_STEPS,
        "failover" => membership::FAILOVER_STEPS,
        "remove_node" => membership::REMOVE_STEPS,
        _ => &[],
    };
    s.iter().map(|s| s.to_string()).collect()
}

async fn run_step(ctx: &Ctx, job: &JobRow, step: &str) -> StepResult {
    match job.kind.as_str() {
        "create" => create::run_create_step(ctx, job, step).await,
        "adopt" => create::run_adopt_step(ctx, job, step).await,
        "reshard" | "rebalance" => reshard::run_step(ctx, job, step).await,
        "failover" => membership::run_failover_step(ctx, job, step).await,
        "add_node" => membership::run_add_step(ctx, job, step).await,
        // A drained master's slots move first, as in a reshard.
        "remove_node" if step.starts_with("move_") => reshard::run_step(ctx, job, step).await,
        "remove_node" => membership::run_remove_step(ctx, job, step).await,
        k => Err(StepError::Failed(format!("unknown job kind {k}"))),
    }
}

pub struct Runner {
    pub ctx: Ctx,
    /// This process's name in leases.
    pub owner: String,
    pub wake: std::sync::Arc<tokio::sync::Notify>,
}

fn job_event(job: &JobRow, kind: &str, details: serde_json::Value) -> NewEvent {
    NewEvent {
        cluster: job.cluster.clone(),
        kind: kind.to_string(),
        job: Some(job.id.clone()),
        actor: Some(job.actor.clone()),
        details,
        ..Default::default()
    }
}

impl Runner {
    /// Runs jobs forever: whichever unfinished job has a free lease.
    pub async fn run(self) {
        loop {
            let now = crate::now_ms();
            match self.ctx.store.claim_job(&self.owner, now, LEASE_MS).await {
                Ok(Some(job)) => {
                    if let Err(e) = self.execute(job).await {
                        tracing::warn!("job runner: {e}");
                    }
                    continue;
                }
                Ok(None) => {}
                Err(e) => tracing::warn!("job runner: cannot claim a job: {e}"),
            }
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            }
        }
    }

    async fn execute(&self, job: JobRow) -> Result<(), crate::store::StoreError> {
        let store = &self.ctx.store;
        let events = &self.ctx.events;
        if job.started_at.is_none() {
            store.start_job(&job.id, crate::now_ms()).await?;
            events
                .record(job_event(&job, "job_started", json!({"kind": job.kind})))
                .await;
        }
        let steps = store.steps(&job.id).await?;
        let total = steps.len().max(1) as i64;
        for step in steps.iter().filter(|s| s.status != "done") {
            // Cancel takes effect between steps: each step leaves the
            // cluster consistent (no slot left open).
            if store
                .job(&job.id)
                .await?
                .is_some_and(|j| j.cancel_requested)
            {
                store
                    .finish_job(&job.id, "cancelled", None, crate::now_ms())
                    .await?;
                events
                    .record(job_event(
                        &job,
                        "job_cancelled",
                        json!({"at_step": step.name}),
                    ))
                    .await;
                return Ok(());
            }
            if !store
                .renew_lease(&job.id, &self.owner, crate::now_ms(), LEASE_MS)
                .await?
            {
                tracing::warn!("job {}: lease lost before step {}", job.id, step.name);
                return Ok(());
            }
            store
                .set_step(&job.id, step.idx, "running", None, crate::now_ms())
                .await?;
            let renew = {
                let (store, id, owner) = (store.clone(), job.id.clone(), self.owner.clone());
                tokio::spawn(async move {
                    loop {
                        tokio::time::sleep(Duration::from_millis(LEASE_MS as u64 / 3)).await;
                        if !matches!(
                            store
                                .renew_lease(&id, &owner, crate::now_ms(), LEASE_MS)
                                .await,
                            Ok(true)
                        ) {
                            return;
                        }
                    }
                })
            };
            let res = run_step(&self.ctx, &job, &step.name).await;
            renew.abort();
            let now = crate::now_ms();
            match res {
                Ok(detail) => {
                    store
                        .set_step(&job.id, step.idx, "done", detail.as_deref(), now)
                        .await?;
                    store
                        .set_progress(&job.id, (step.idx + 1) * 100 / total)
                        .await?;
                    events
                        .record(job_event(
                            &job,
                            "step_done",
                            json!({"step": step.name, "detail": detail}),
                        ))
                        .await;
                }
                Err(StepError::Cancelled(why)) => {
                    store
                        .set_step(&job.id, step.idx, "cancelled", Some(&why), now)
                        .await?;
                    store.finish_job(&job.id, "cancelled", None, now).await?;
                    events
                        .record(job_event(
                            &job,
                            "job_cancelled",
                            json!({"at_step": step.name, "detail": why}),
                        ))
                        .await;
                    return Ok(());
                }
                Err(e) => {
                    let msg = format!("step {}: {e}", step.name);
                    store
                        .set_step(&job.id, step.idx, "failed", Some(&e.to_string()), now)
                        .await?;
                    store.finish_job(&job.id, "failed", Some(&msg), now).await?;
                    events
                        .record(job_event(&job, "job_failed", json!({"error": msg})))
                        .await;
                    return Ok(());
                }
            }
        }
        store
            .finish_job(&job.id, "succeeded", None, crate::now_ms())
            .await?;
        events
            .record(job_event(&job, "job_succeeded", json!({"kind": job.kind})))
            .await;
        Ok(())
    }
}

/// Polls `f` every 100 ms until it returns true or `secs` pass.
pub async fn wait_for<F, Fut>(secs: u64, what: &str, mut f: F) -> Result<(), StepError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        if f().await {
            return Ok(());
        }
        if tokio::time::Instant::now() > deadline {
            return Err(StepError::Failed(format!(
                "timed out after {secs} s waiting for {what}"
            )));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
