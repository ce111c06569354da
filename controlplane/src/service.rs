//! Operations behind the API: validation, planning, desired state and the
//! job that carries a change out. REST (and later gRPC) handlers only
//! translate to and from these.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::events::Events;
use crate::observer;
use crate::store::{JobRow, NewEvent, NodeRow, StepRow, Store, StoreError};

#[derive(Clone)]
pub struct App {
    pub store: Store,
    pub events: Events,
    pub observed: observer::Shared,
    pub wake: Arc<tokio::sync::Notify>,
    /// The nodes' password, for the few reads that go to a node directly.
    pub password: Option<String>,
}

/// Who is calling (from the token).
#[derive(Debug, Clone)]
pub struct Caller {
    pub name: String,
    pub role: String,
}

/// Every way an operation can fail; the API layers map it to a status.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{message}")]
    BadRequest { code: &'static str, message: String },
    #[error("{message}")]
    Unprocessable { code: &'static str, message: String },
    #[error("{0}")]
    NotFound(String),
    #[error("{message}")]
    Conflict {
        code: &'static str,
        message: String,
        job: Option<String>,
    },
    #[error("a valid bearer token is required")]
    Unauthorized,
    #[error("token '{0}' may only read; changes need an admin token")]
    Forbidden(String),
    /// A node the answer needs did not answer.
    #[error("{0}")]
    Unavailable(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<StoreError> for Error {
    fn from(e: StoreError) -> Error {
        Error::Internal(e.to_string())
    }
}

pub type Result<T> = std::result::Result<T, Error>;

fn bad(code: &'static str, message: impl Into<String>) -> Error {
    Error::BadRequest {
        code,
        message: message.into(),
    }
}

impl Caller {
    pub fn require_admin(&self) -> Result<()> {
        if self.role == "admin" {
            Ok(())
        } else {
            Err(Error::Forbidden(self.name.clone()))
        }
    }
}

/// A token's stored form: tokens are 256-bit random secrets, so one
/// SHA-256 pass is enough (no password stretching needed).
pub fn hash_token(token: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(token.as_bytes()))
}

pub fn new_token() -> String {
    let bytes: [u8; 32] = rand::random();
    format!("skv_{}", hex::encode(bytes))
}

pub async fn authenticate(store: &Store, header: Option<&str>) -> Result<Caller> {
    let token = header
        .and_then(|h| h.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or(Error::Unauthorized)?;
    match store.token(&hash_token(token)).await? {
        Some((name, role)) => Ok(Caller { name, role }),
        None => Err(Error::Unauthorized),
    }
}

#[derive(Debug, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateCluster {
    /// 1-63 letters, digits, `-` or `_`.
    #[schema(pattern = "^[A-Za-z0-9_-]{1,63}$")]
    pub name: String,
    #[serde(default)]
    pub nodes: Vec<String>,
    #[serde(default)]
    pub replicas: Option<u32>,
    #[serde(default)]
    pub adopt: Option<String>,
}

/// A job as the API shows it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct JobView {
    #[serde(flatten)]
    pub job: JobRow,
    pub steps: Vec<StepRow>,
    /// Slots and keys moved so far by the job's steps (reshard,
    /// rebalance, a drained removal).
    pub slots_moved: i64,
    pub keys_moved: i64,
}

fn busy(cluster: &str, job: String) -> Error {
    Error::Conflict {
        code: "job_running",
        message: format!("job {job} is running on cluster '{cluster}'; one change at a time"),
        job: Some(job),
    }
}

#[derive(Debug, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Reshard {
    pub to: String,
    #[serde(default)]
    pub slots: Option<u32>,
    #[serde(default)]
    pub from: Vec<String>,
    /// Inclusive ranges `[first, last]`, instead of `slots`.
    #[serde(default)]
    #[schema(value_type = Option<Vec<Vec<u16>>>)]
    pub ranges: Option<Vec<(u16, u16)>>,
    #[serde(default)]
    pub dry_run: bool,
    #[serde(default)]
    pub method: Option<String>,
}

#[derive(Debug, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Failover {
    pub replica: String,
    #[serde(default)]
    pub mode: Option<String>,
}

#[derive(Debug, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddNode {
    pub address: String,
    #[serde(default)]
    pub role: Option<String>,
    #[serde(default)]
    pub master: Option<String>,
}

#[derive(Debug, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Rebalance {
    #[serde(default)]
    pub weights: std::collections::BTreeMap<String, f64>,
    #[serde(default)]
    pub use_empty_masters: bool,
    /// Percent out of balance tolerated (redis-cli's default is 2).
    #[serde(default)]
    pub threshold: Option<f64>,
    #[serde(default)]
    pub dry_run: bool,
    #[serde(default)]
    pub method: Option<String>,
}

/// What a change request returns: its plan (dry run) or its job.
pub enum Outcome {
    Plan(serde_json::Value),
    Job(Box<JobView>),
}

fn valid_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 63
        && n.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn valid_addr(a: &str) -> bool {
    crate::nodes::split_addr(a).is_some_and(|(h, p)| !h.is_empty() && p > 0)
}

fn new_job_id() -> String {
    let b: [u8; 8] = rand::random();
    format!("job-{}", hex::encode(b))
}

impl App {
    pub async fn job_view(&self, id: &str) -> Result<JobView> {
        let job = self
            .store
            .job(id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("no job {id}")))?;
        let steps = self.store.steps(id).await?;
        let slots_moved = steps.iter().map(|s| s.slots_moved).sum();
        let keys_moved = steps.iter().map(|s| s.keys_moved).sum();
        Ok(JobView {
            job,
            steps,
            slots_moved,
            keys_moved,
        })
    }

    async fn record(
        &self,
        cluster: &str,
        kind: &str,
        caller: &Caller,
        job: Option<&str>,
        details: serde_json::Value,
    ) {
        self.events
            .record(NewEvent {
                cluster: cluster.to_string(),
                kind: kind.to_string(),
                job: job.map(str::to_string),
                actor: Some(caller.name.clone()),
                details,
                ..Default::default()
            })
            .await;
    }

    /// Inserts a job, or returns the one an earlier call with the same
    /// idempotency key made. The bool says whether it is new.
    #[allow(clippy::too_many_arguments)]
    async fn start_job(
        &self,
        kind: &str,
        cluster: &str,
        params: serde_json::Value,
        plan: serde_json::Value,
        steps: Vec<String>,
        key: Option<&str>,
        caller: &Caller,
    ) -> Result<(JobView, bool)> {
        let id = new_job_id();
        match self
            .store
            .insert_job(
                &id,
                kind,
                cluster,
                &params,
                &plan,
                &steps,
                key,
                &caller.name,
                crate::now_ms(),
            )
            .await
        {
            Ok(()) => {}
            Err(StoreError::Conflict) => {
                if let Some(j) = match key {
                    Some(k) => self.store.job_by_key(k).await?,
                    None => None,
                } {
                    return Ok((self.job_view(&j.id).await?, false));
                }
                if let Some(j) = self.store.active_job(cluster).await? {
                    return Err(busy(cluster, j.id));
                }
                return Err(Error::Internal("job id collision".into()));
            }
            Err(e) => return Err(e.into()),
        }
        self.wake.notify_one();
        Ok((self.job_view(&id).await?, true))
    }

    /// A retried POST with the same key gets the first call's job.
    async fn replay(&self, key: Option<&str>) -> Result<Option<JobView>> {
        match key {
            Some(k) => match self.store.job_by_key(k).await? {
                Some(j) => Ok(Some(self.job_view(&j.id).await?)),
                None => Ok(None),
            },
            None => Ok(None),
        }
    }

    pub async fn create_cluster(
        &self,
        req: CreateCluster,
        key: Option<&str>,
        caller: &Caller,
    ) -> Result<JobView> {
        caller.require_admin()?;
        if let Some(j) = self.replay(key).await? {
            return Ok(j);
        }
        if !valid_name(&req.name) {
            return Err(bad(
                "invalid_name",
                "a cluster name is 1-63 letters, digits, '-' or '_'",
            ));
        }
        let (kind, params, plan, nodes) = match (&req.adopt, req.nodes.is_empty()) {
            (Some(seed), true) => {
                if !valid_addr(seed) {
                    return Err(bad("invalid_address", format!("'{seed}' is not host:port")));
                }
                (
                    "adopt",
                    json!({"adopt": seed}),
                    json!({"adopt": seed}),
                    vec![(seed.clone(), "master".to_string(), None)],
                )
            }
            (None, false) => {
                if let Some(a) = req.nodes.iter().find(|a| !valid_addr(a)) {
                    return Err(bad("invalid_address", format!("'{a}' is not host:port")));
                }
                let replicas = req.replicas.unwrap_or(0);
                if replicas > 5 {
                    return Err(bad("invalid_replicas", "replicas must be 0-5"));
                }
                let plan = crate::plan::create(&req.nodes, replicas as usize).map_err(|e| {
                    Error::Unprocessable {
                        code: "impossible_plan",
                        message: e.to_string(),
                    }
                })?;
                let mut nodes = Vec::new();
                for s in &plan.shards {
                    nodes.push((s.master.clone(), "master".to_string(), None));
                    for r in &s.replicas {
                        nodes.push((r.clone(), "replica".to_string(), Some(s.master.clone())));
                    }
                }
                let plan_json =
                    serde_json::to_value(&plan).map_err(|e| Error::Internal(e.to_string()))?;
                (
                    "create",
                    json!({"nodes": req.nodes, "replicas": replicas}),
                    plan_json,
                    nodes,
                )
            }
            _ => {
                return Err(bad(
                    "invalid_request",
                    "give either 'nodes' (with 'replicas') or 'adopt', not both",
                ))
            }
        };
        match self
            .store
            .insert_cluster(&req.name, req.replicas.unwrap_or(0) as i64, crate::now_ms())
            .await
        {
            Ok(()) => {}
            Err(StoreError::Conflict) => {
                return Err(Error::Conflict {
                    code: "cluster_exists",
                    message: format!("cluster '{}' already exists", req.name),
                    job: None,
                })
            }
            Err(e) => return Err(e.into()),
        }
        for (address, role, master_addr) in nodes {
            self.store
                .put_node(&NodeRow {
                    cluster: req.name.clone(),
                    address,
                    node_id: None,
                    role,
                    master_addr,
                })
                .await?;
        }
        let steps = crate::jobs::steps_of(kind);
        let (job, _) = self
            .start_job(kind, &req.name, params.clone(), plan, steps, key, caller)
            .await?;
        self.record(
            &req.name,
            "cluster_created",
            caller,
            Some(&job.job.id),
            params,
        )
        .await;
        Ok(job)
    }

    pub async fn delete_cluster(&self, name: &str, caller: &Caller) -> Result<()> {
        caller.require_admin()?;
        if let Some(j) = self.store.active_job(name).await? {
            return Err(Error::Conflict {
                code: "job_running",
                message: format!("job {} is running on cluster '{name}'", j.id),
                job: Some(j.id),
            });
        }
        if !self.store.delete_cluster(name).await? {
            return Err(Error::NotFound(format!("no cluster '{name}'")));
        }
        self.observed.write().await.remove(name);
        self.record(name, "cluster_deleted", caller, None, json!({}))
            .await;
        Ok(())
    }

    pub async fn cancel_job(&self, id: &str, caller: &Caller) -> Result<JobView> {
        caller.require_admin()?;
        let j = self.job_view(id).await?;
        if !self.store.request_cancel(id).await? {
            return Err(Error::Conflict {
                code: "job_finished",
                message: format!("job {id} has already finished ({})", j.job.status),
                job: Some(id.to_string()),
            });
        }
        self.record(
            &j.job.cluster,
            "job_cancel_requested",
            caller,
            Some(id),
            json!({}),
        )
        .await;
        self.job_view(id).await
    }

    /// The observed topology, or 409 before the first observation.
    async fn observed(&self, cluster: &str) -> Result<observer::Observed> {
        match self.observed.read().await.get(cluster) {
            Some(o) if o.time > 0 && !o.nodes.is_empty() => Ok(o.clone()),
            _ => Err(Error::Conflict {
                code: "not_observed",
                message: format!(
                    "cluster '{cluster}' has not been observed yet; retry in a second"
                ),
                job: None,
            }),
        }
    }

    pub async fn reshard(
        &self,
        cluster: &str,
        req: Reshard,
        key: Option<&str>,
        caller: &Caller,
    ) -> Result<Outcome> {
        caller.require_admin()?;
        if !req.dry_run {
            if let Some(j) = self.replay(key).await? {
                return Ok(Outcome::Job(Box::new(j)));
            }
        }
        self.cluster_exists(cluster).await?;
        let method = req.method.clone().unwrap_or_else(|| "auto".into());
        if !matches!(method.as_str(), "auto" | "atomic" | "legacy") {
            return Err(bad("invalid_method", "method is auto, atomic or legacy"));
        }
        let want = match (req.slots, &req.ranges) {
            (Some(n), None) => crate::plan::Want::Count(n),
            (None, Some(r)) if !r.is_empty() => crate::plan::Want::Ranges(r.clone()),
            _ => return Err(bad("invalid_request", "give either 'slots' or 'ranges'")),
        };
        let owners = self.slot_owners(cluster).await?;
        let moves = crate::plan::reshard(&owners, &req.to, &req.from, &want).map_err(|e| {
            Error::Unprocessable {
                code: "impossible_plan",
                message: e.to_string(),
            }
        })?;
        let total: u32 = moves.iter().map(crate::plan::Move::count).sum();
        let plan = json!({"moves": moves, "method": method, "slots": total});
        if req.dry_run {
            return Ok(Outcome::Plan(plan));
        }
        let params = serde_json::to_value(&req).map_err(|e| Error::Internal(e.to_string()))?;
        self.start_moves("reshard", cluster, params, plan, &moves, key, caller)
            .await
    }

    pub async fn rebalance(
        &self,
        cluster: &str,
        req: Rebalance,
        key: Option<&str>,
        caller: &Caller,
    ) -> Result<Outcome> {
        caller.require_admin()?;
        if !req.dry_run {
            if let Some(j) = self.replay(key).await? {
                return Ok(Outcome::Job(Box::new(j)));
            }
        }
        self.cluster_exists(cluster).await?;
        let method = req.method.clone().unwrap_or_else(|| "auto".into());
        if !matches!(method.as_str(), "auto" | "atomic" | "legacy") {
            return Err(bad("invalid_method", "method is auto, atomic or legacy"));
        }
        let threshold = req.threshold.unwrap_or(2.0);
        if !(threshold.is_finite() && threshold >= 0.0) {
            return Err(bad("invalid_threshold", "threshold is a percentage ≥ 0"));
        }
        let owners = self.slot_owners(cluster).await?;
        let moves = crate::plan::rebalance(&owners, &req.weights, req.use_empty_masters, threshold)
            .map_err(|e| Error::Unprocessable {
                code: "impossible_plan",
                message: e.to_string(),
            })?;
        let total: u32 = moves.iter().map(crate::plan::Move::count).sum();
        let plan = json!({"moves": moves, "method": method, "slots": total});
        if req.dry_run || moves.is_empty() {
            // Nothing to do is answered like a dry run: no job is made.
            return Ok(Outcome::Plan(plan));
        }
        let params = serde_json::to_value(&req).map_err(|e| Error::Internal(e.to_string()))?;
        self.start_moves("rebalance", cluster, params, plan, &moves, key, caller)
            .await
    }

    /// The masters that may give or take slots (not failed), with their
    /// slots; refused while a slot is open.
    async fn slot_owners(&self, cluster: &str) -> Result<Vec<(String, Vec<u16>)>> {
        let obs = self.observed(cluster).await?;
        if !obs.open_slots.is_empty() {
            return Err(Error::Conflict {
                code: "open_slots",
                message: format!(
                    "{} slots are in migration; a running or interrupted change must end first",
                    obs.open_slots.len()
                ),
                job: None,
            });
        }
        Ok(obs
            .masters()
            .filter(|m| !m.flags.iter().any(|f| f == "fail"))
            .map(|m| {
                (
                    m.id.clone(),
                    m.slots.iter().flat_map(|&(a, b)| a..=b).collect(),
                )
            })
            .collect())
    }

    /// The job of a reshard or rebalance (`kind`), and its API event.
    #[allow(clippy::too_many_arguments)]
    async fn start_moves(
        &self,
        kind: &str,
        cluster: &str,
        params: serde_json::Value,
        plan: serde_json::Value,
        moves: &[crate::plan::Move],
        key: Option<&str>,
        caller: &Caller,
    ) -> Result<Outcome> {
        if let Some(j) = self.store.active_job(cluster).await? {
            return Err(busy(cluster, j.id));
        }
        let steps = crate::jobs::reshard::steps(moves);
        let (job, new) = self
            .start_job(kind, cluster, params.clone(), plan, steps, key, caller)
            .await?;
        if new {
            self.record(
                cluster,
                &format!("{kind}_requested"),
                caller,
                Some(&job.job.id),
                params,
            )
            .await;
        }
        Ok(Outcome::Job(Box::new(job)))
    }

    /// Common checks of a change to an existing cluster: admin, a replay,
    /// the cluster, its observation, no other job running.
    async fn begin_change(
        &self,
        cluster: &str,
        key: Option<&str>,
        caller: &Caller,
    ) -> Result<std::result::Result<observer::Observed, JobView>> {
        caller.require_admin()?;
        if let Some(j) = self.replay(key).await? {
            return Ok(Err(j));
        }
        self.cluster_exists(cluster).await?;
        let obs = self.observed(cluster).await?;
        if let Some(j) = self.store.active_job(cluster).await? {
            return Err(busy(cluster, j.id));
        }
        Ok(Ok(obs))
    }

    pub async fn failover(
        &self,
        cluster: &str,
        req: Failover,
        key: Option<&str>,
        caller: &Caller,
    ) -> Result<JobView> {
        let obs = match self.begin_change(cluster, key, caller).await? {
            Ok(o) => o,
            Err(j) => return Ok(j),
        };
        let mode = req.mode.clone().unwrap_or_else(|| "default".into());
        if !matches!(mode.as_str(), "default" | "force" | "takeover") {
            return Err(bad("invalid_mode", "mode is default, force or takeover"));
        }
        let Some(n) = obs.node(&req.replica) else {
            return Err(Error::NotFound(format!(
                "no node {} in cluster '{cluster}'",
                req.replica
            )));
        };
        let Some(old) = n.master.clone().filter(|_| n.role == "replica") else {
            return Err(Error::Unprocessable {
                code: "not_a_replica",
                message: format!(
                    "{} is a master; fail over to one of its replicas",
                    req.replica
                ),
            });
        };
        let params = json!({"replica": req.replica, "old_master": old, "mode": mode});
        let steps = crate::jobs::steps_of("failover");
        let (job, new) = self
            .start_job(
                "failover",
                cluster,
                params.clone(),
                params.clone(),
                steps,
                key,
                caller,
            )
            .await?;
        if new {
            self.record(
                cluster,
                "failover_requested",
                caller,
                Some(&job.job.id),
                params,
            )
            .await;
        }
        Ok(job)
    }

    pub async fn add_node(
        &self,
        cluster: &str,
        req: AddNode,
        key: Option<&str>,
        caller: &Caller,
    ) -> Result<JobView> {
        let obs = match self.begin_change(cluster, key, caller).await? {
            Ok(o) => o,
            Err(j) => return Ok(j),
        };
        if !valid_addr(&req.address) {
            return Err(bad(
                "invalid_address",
                format!("'{}' is not host:port", req.address),
            ));
        }
        if obs.nodes.iter().any(|n| n.address == req.address) {
            return Err(Error::Conflict {
                code: "node_exists",
                message: format!("{} is already in cluster '{cluster}'", req.address),
                job: None,
            });
        }
        let role = req.role.clone().unwrap_or_else(|| "master".into());
        let master = match (role.as_str(), &req.master) {
            ("master", None) => None,
            ("master", Some(_)) => return Err(bad("invalid_request", "'master' is for a replica")),
            ("replica", Some(m)) => match obs.node(m) {
                Some(n) if n.role == "master" => Some(m.clone()),
                _ => {
                    return Err(Error::Unprocessable {
                        code: "not_a_master",
                        message: format!("{m} is not a master of cluster '{cluster}'"),
                    })
                }
            },
            // The master with slots and the fewest replicas.
            ("replica", None) => obs
                .masters()
                .filter(|m| !m.slots.is_empty())
                .min_by_key(|m| {
                    (
                        obs.nodes
                            .iter()
                            .filter(|r| r.master.as_deref() == Some(m.id.as_str()))
                            .count(),
                        m.id.clone(),
                    )
                })
                .map(|m| m.id.clone()),
            _ => return Err(bad("invalid_role", "role is master or replica")),
        };
        let Some(seed) = obs
            .nodes
            .iter()
            .find(|n| n.link == "connected")
            .map(|n| n.address.clone())
        else {
            return Err(Error::Conflict {
                code: "unreachable",
                message: format!("no node of cluster '{cluster}' answers"),
                job: None,
            });
        };
        let params = json!({"address": req.address, "role": role, "master": master, "seed": seed});
        let steps = crate::jobs::membership::add_steps(role == "replica");
        let (job, new) = self
            .start_job(
                "add_node",
                cluster,
                params.clone(),
                params.clone(),
                steps,
                key,
                caller,
            )
            .await?;
        if new {
            self.record(
                cluster,
                "node_add_requested",
                caller,
                Some(&job.job.id),
                params,
            )
            .await;
        }
        Ok(job)
    }

    pub async fn remove_node(
        &self,
        cluster: &str,
        id: &str,
        drain: bool,
        key: Option<&str>,
        caller: &Caller,
    ) -> Result<JobView> {
        let obs = match self.begin_change(cluster, key, caller).await? {
            Ok(o) => o,
            Err(j) => return Ok(j),
        };
        let Some(n) = obs.node(id) else {
            return Err(Error::NotFound(format!(
                "no node {id} in cluster '{cluster}'"
            )));
        };
        let mut moves = Vec::new();
        if n.role == "master" {
            let serving = obs.masters().filter(|m| !m.slots.is_empty()).count();
            if !n.slots.is_empty() && serving <= 1 {
                return Err(Error::Unprocessable {
                    code: "last_master",
                    message: format!("{id} is the last master with slots"),
                });
            }
            if !n.slots.is_empty() {
                if !drain {
                    return Err(Error::Conflict {
                        code: "node_has_slots",
                        message: format!("{id} still owns slots; remove it with drain=true to move them away first"),
                        job: None,
                    });
                }
                let owners: Vec<(String, Vec<u16>)> = obs
                    .masters()
                    .filter(|m| !m.flags.iter().any(|f| f == "fail"))
                    .map(|m| {
                        (
                            m.id.clone(),
                            m.slots.iter().flat_map(|&(a, b)| a..=b).collect(),
                        )
                    })
                    .collect();
                moves = crate::plan::drain(&owners, id).map_err(|e| Error::Unprocessable {
                    code: "impossible_plan",
                    message: e.to_string(),
                })?;
            }
        }
        let params = json!({"node": id, "address": n.address, "drain": drain});
        let plan = json!({"moves": moves, "method": "auto", "node": id});
        let mut steps = crate::jobs::reshard::steps(&moves);
        steps.retain(|s| s.starts_with("move_"));
        steps.extend(crate::jobs::steps_of("remove_node"));
        let (job, new) = self
            .start_job(
                "remove_node",
                cluster,
                params.clone(),
                plan,
                steps,
                key,
                caller,
            )
            .await?;
        if new {
            self.record(
                cluster,
                "node_remove_requested",
                caller,
                Some(&job.job.id),
                params,
            )
            .await;
        }
        Ok(job)
    }

    pub async fn cluster_exists(&self, name: &str) -> Result<()> {
        match self.store.cluster(name).await? {
            Some(_) => Ok(()),
            None => Err(Error::NotFound(format!("no cluster '{name}'"))),
        }
    }
}
