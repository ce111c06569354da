//! All SQL lives here. One set of queries for SQLite (the embedded
//! default) and PostgreSQL (shared by several control-plane processes),
//! through sqlx's `Any` driver; the schema is in `migrations/`.

use serde::Serialize;
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Row};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A unique key is taken (a name, an idempotency key).
    #[error("already exists")]
    Conflict,
}

pub type Result<T> = std::result::Result<T, StoreError>;

fn conflict(e: sqlx::Error) -> StoreError {
    match &e {
        sqlx::Error::Database(d) if d.is_unique_violation() => StoreError::Conflict,
        _ => StoreError::Db(e),
    }
}

#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ClusterRow {
    pub name: String,
    pub replicas: i64,
    pub created_at: i64,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct NodeRow {
    pub cluster: String,
    pub address: String,
    pub node_id: Option<String>,
    pub role: String,
    pub master_addr: Option<String>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct JobRow {
    pub id: String,
    pub kind: String,
    pub cluster: String,
    pub params: serde_json::Value,
    pub plan: serde_json::Value,
    pub status: String,
    pub progress: i64,
    pub error: Option<String>,
    pub created_at: i64,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    pub actor: String,
    pub cancel_requested: bool,
    /// The control-plane process running it now (`pid-random`), if any.
    pub lease_owner: Option<String>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct StepRow {
    pub idx: i64,
    pub name: String,
    pub status: String,
    pub detail: Option<String>,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    /// For a step that moves slots: slots and keys moved so far.
    pub slots_moved: i64,
    pub keys_moved: i64,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct EventRow {
    pub id: i64,
    pub time: i64,
    pub cluster: String,
    pub kind: String,
    pub node: Option<String>,
    pub job: Option<String>,
    pub actor: Option<String>,
    pub details: serde_json::Value,
}

/// A new event; the store gives it its id.
#[derive(Debug, Clone, Default)]
pub struct NewEvent {
    pub cluster: String,
    pub kind: String,
    pub node: Option<String>,
    pub job: Option<String>,
    pub actor: Option<String>,
    pub details: serde_json::Value,
}

/// One node's metrics at one second.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Sample {
    pub node: String,
    pub address: String,
    pub role: String,
    /// Unix milliseconds (whole seconds).
    pub time: i64,
    pub ops_per_sec: i64,
    pub memory_bytes: i64,
    pub keys: i64,
    pub offset: i64,
}

#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    pub after: Option<i64>,
    pub kind: Option<String>,
    pub node: Option<String>,
    pub since: Option<i64>,
    pub limit: i64,
    /// Newest first, below this id.
    pub before: Option<i64>,
    pub until: Option<i64>,
}

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or(serde_json::Value::Null)
}

const JOB_COLS: &str = "id, kind, cluster, params, plan, status, progress, error, created_at, started_at, finished_at, actor, cancel_requested, lease_owner";

fn job_row(r: &AnyRow) -> Result<JobRow> {
    Ok(JobRow {
        id: r.try_get("id")?,
        kind: r.try_get("kind")?,
        cluster: r.try_get("cluster")?,
        params: json(&r.try_get::<String, _>("params")?),
        plan: json(&r.try_get::<String, _>("plan")?),
        status: r.try_get("status")?,
        progress: r.try_get("progress")?,
        error: r.try_get("error")?,
        created_at: r.try_get("created_at")?,
        started_at: r.try_get("started_at")?,
        finished_at: r.try_get("finished_at")?,
        actor: r.try_get("actor")?,
        cancel_requested: r.try_get::<i64, _>("cancel_requested")? != 0,
        lease_owner: r.try_get("lease_owner")?,
    })
}

impl Store {
    /// Opens (creating an SQLite file if needed) and migrates.
    pub async fn open(url: &str) -> Result<Store> {
        sqlx::any::install_default_drivers();
        let url = if url.starts_with("sqlite:") && !url.contains("mode=") {
            format!("{url}{}mode=rwc", if url.contains('?') { "&" } else { "?" })
        } else {
            url.to_string()
        };
        // SQLite allows one writer: one connection avoids "database is
        // locked" between our own tasks.
        let max = if url.starts_with("sqlite:") { 1 } else { 8 };
        let pool = AnyPoolOptions::new()
            .max_connections(max)
            .connect(&url)
            .await?;
        sqlx::migrate!("../migrations").run(&pool).await?;
        Ok(Store { pool })
    }

    // ---- tokens ----

    pub async fn put_token(&self, name: &str, hash: &str, role: &str, now: i64) -> Result<()> {
        sqlx::query("DELETE FROM tokens WHERE name = $1")
            .bind(name)
            .execute(&self.pool)
            .await?;
        sqlx::query("INSERT INTO tokens (name, hash, role, created_at) VALUES ($1, $2, $3, $4)")
            .bind(name)
            .bind(hash)
            .bind(role)
            .bind(now)
            .execute(&self.pool)
            .await
            .map_err(conflict)?;
        Ok(())
    }

    /// (name, role) of the token with this hash.
    pub async fn token(&self, hash: &str) -> Result<Option<(String, String)>> {
        let r = sqlx::query("SELECT name, role FROM tokens WHERE hash = $1")
            .bind(hash)
            .fetch_optional(&self.pool)
            .await?;
        Ok(match r {
            Some(r) => Some((r.try_get("name")?, r.try_get("role")?)),
            None => None,
        })
    }

    // ---- clusters and desired nodes ----

    pub async fn insert_cluster(&self, name: &str, replicas: i64, now: i64) -> Result<()> {
        sqlx::query("INSERT INTO clusters (name, replicas, created_at) VALUES ($1, $2, $3)")
            .bind(name)
            .bind(replicas)
            .bind(now)
            .execute(&self.pool)
            .await
            .map_err(conflict)?;
        Ok(())
    }

    pub async fn clusters(&self) -> Result<Vec<ClusterRow>> {
        let rows = sqlx::query("SELECT name, replicas, created_at FROM clusters ORDER BY name")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                Ok(ClusterRow {
                    name: r.try_get("name")?,
                    replicas: r.try_get("replicas")?,
                    created_at: r.try_get("created_at")?,
                })
            })
            .collect()
    }

    pub async fn cluster(&self, name: &str) -> Result<Option<ClusterRow>> {
        Ok(self.clusters().await?.into_iter().find(|c| c.name == name))
    }

    pub async fn save_observed(&self, name: &str, observed: &str) -> Result<()> {
        sqlx::query("UPDATE clusters SET observed = $1 WHERE name = $2")
            .bind(observed)
            .bind(name)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn observed(&self, name: &str) -> Result<Option<String>> {
        let r = sqlx::query("SELECT observed FROM clusters WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
        Ok(match r {
            Some(r) => r.try_get("observed")?,
            None => None,
        })
    }

    pub async fn delete_cluster(&self, name: &str) -> Result<bool> {
        let mut tx = self.pool.begin().await?;
        for q in [
            "DELETE FROM nodes WHERE cluster = $1",
            "DELETE FROM slot_ranges WHERE cluster = $1",
            "DELETE FROM samples WHERE cluster = $1",
        ] {
            sqlx::query(q).bind(name).execute(&mut *tx).await?;
        }
        let n = sqlx::query("DELETE FROM clusters WHERE name = $1")
            .bind(name)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        tx.commit().await?;
        Ok(n > 0)
    }

    /// Sets a node's desired role (inserting it when new).
    pub async fn put_node(&self, n: &NodeRow) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM nodes WHERE cluster = $1 AND address = $2")
            .bind(&n.cluster)
            .bind(&n.address)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO nodes (cluster, address, node_id, role, master_addr) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&n.cluster)
        .bind(&n.address)
        .bind(&n.node_id)
        .bind(&n.role)
        .bind(&n.master_addr)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn delete_node(&self, cluster: &str, address: &str) -> Result<()> {
        sqlx::query("DELETE FROM nodes WHERE cluster = $1 AND address = $2")
            .bind(cluster)
            .bind(address)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Replaces the cluster's desired nodes with `nodes`.
    pub async fn set_nodes(&self, cluster: &str, nodes: &[NodeRow]) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM nodes WHERE cluster = $1")
            .bind(cluster)
            .execute(&mut *tx)
            .await?;
        for n in nodes {
            sqlx::query(
                "INSERT INTO nodes (cluster, address, node_id, role, master_addr) VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(cluster)
            .bind(&n.address)
            .bind(&n.node_id)
            .bind(&n.role)
            .bind(&n.master_addr)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    pub async fn nodes(&self, cluster: &str) -> Result<Vec<NodeRow>> {
        let rows = sqlx::query(
            "SELECT cluster, address, node_id, role, master_addr FROM nodes WHERE cluster = $1 ORDER BY address",
        )
        .bind(cluster)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(NodeRow {
                    cluster: r.try_get("cluster")?,
                    address: r.try_get("address")?,
                    node_id: r.try_get("node_id")?,
                    role: r.try_get("role")?,
                    master_addr: r.try_get("master_addr")?,
                })
            })
            .collect()
    }

    /// Replaces the desired slot ranges of a cluster.
    pub async fn set_slot_ranges(
        &self,
        cluster: &str,
        ranges: &[(String, u16, u16)],
    ) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM slot_ranges WHERE cluster = $1")
            .bind(cluster)
            .execute(&mut *tx)
            .await?;
        for (addr, a, b) in ranges {
            sqlx::query(
                "INSERT INTO slot_ranges (cluster, address, first, last) VALUES ($1, $2, $3, $4)",
            )
            .bind(cluster)
            .bind(addr)
            .bind(*a as i64)
            .bind(*b as i64)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    pub async fn slot_ranges(&self, cluster: &str) -> Result<Vec<(String, u16, u16)>> {
        let rows = sqlx::query(
            "SELECT address, first, last FROM slot_ranges WHERE cluster = $1 ORDER BY first",
        )
        .bind(cluster)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get("address")?,
                    r.try_get::<i64, _>("first")? as u16,
                    r.try_get::<i64, _>("last")? as u16,
                ))
            })
            .collect()
    }

    // ---- jobs ----

    /// Inserts a job and its steps. `Conflict` when the idempotency key is
    /// taken (the caller then returns that job).
    #[allow(clippy::too_many_arguments)]
    pub async fn insert_job(
        &self,
        id: &str,
        kind: &str,
        cluster: &str,
        params: &serde_json::Value,
        plan: &serde_json::Value,
        steps: &[String],
        idempotency_key: Option<&str>,
        actor: &str,
        now: i64,
    ) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO jobs (id, kind, cluster, params, plan, status, progress, created_at, idempotency_key, actor)
             VALUES ($1, $2, $3, $4, $5, 'pending', 0, $6, $7, $8)",
        )
        .bind(id)
        .bind(kind)
        .bind(cluster)
        .bind(params.to_string())
        .bind(plan.to_string())
        .bind(now)
        .bind(idempotency_key)
        .bind(actor)
        .execute(&mut *tx)
        .await
        .map_err(conflict)?;
        for (i, name) in steps.iter().enumerate() {
            sqlx::query(
                "INSERT INTO job_steps (job_id, idx, name, status) VALUES ($1, $2, $3, 'pending')",
            )
            .bind(id)
            .bind(i as i64)
            .bind(name)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    pub async fn job(&self, id: &str) -> Result<Option<JobRow>> {
        let r = sqlx::query(&format!("SELECT {JOB_COLS} FROM jobs WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        r.as_ref().map(job_row).transpose()
    }

    pub async fn job_by_key(&self, key: &str) -> Result<Option<JobRow>> {
        let r = sqlx::query(&format!(
            "SELECT {JOB_COLS} FROM jobs WHERE idempotency_key = $1"
        ))
        .bind(key)
        .fetch_optional(&self.pool)
        .await?;
        r.as_ref().map(job_row).transpose()
    }

    pub async fn jobs(&self, cluster: Option<&str>, status: Option<&str>) -> Result<Vec<JobRow>> {
        let rows = sqlx::query(&format!(
            "SELECT {JOB_COLS} FROM jobs WHERE ($1 = '' OR cluster = $1) AND ($2 = '' OR status = $2)
             ORDER BY created_at DESC, id LIMIT 500"
        ))
        .bind(cluster.unwrap_or(""))
        .bind(status.unwrap_or(""))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(job_row).collect()
    }

    /// The cluster's unfinished mutating job, if any.
    pub async fn active_job(&self, cluster: &str) -> Result<Option<JobRow>> {
        let r = sqlx::query(&format!(
            "SELECT {JOB_COLS} FROM jobs WHERE cluster = $1 AND status IN ('pending', 'running')
             ORDER BY created_at LIMIT 1"
        ))
        .bind(cluster)
        .fetch_optional(&self.pool)
        .await?;
        r.as_ref().map(job_row).transpose()
    }

    pub async fn steps(&self, job: &str) -> Result<Vec<StepRow>> {
        let rows = sqlx::query(
            "SELECT idx, name, status, detail, started_at, finished_at, slots_moved, keys_moved FROM job_steps WHERE job_id = $1 ORDER BY idx",
        )
        .bind(job)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(StepRow {
                    idx: r.try_get("idx")?,
                    name: r.try_get("name")?,
                    status: r.try_get("status")?,
                    detail: r.try_get("detail")?,
                    started_at: r.try_get("started_at")?,
                    finished_at: r.try_get("finished_at")?,
                    slots_moved: r.try_get("slots_moved")?,
                    keys_moved: r.try_get("keys_moved")?,
                })
            })
            .collect()
    }

    /// Records what a slot-moving step has done so far; returns the job's
    /// totals (slots, keys) over all its steps.
    pub async fn set_step_moved(
        &self,
        job: &str,
        step: &str,
        slots: i64,
        keys: i64,
    ) -> Result<(i64, i64)> {
        sqlx::query(
            "UPDATE job_steps SET slots_moved = $1, keys_moved = $2 WHERE job_id = $3 AND name = $4",
        )
        .bind(slots)
        .bind(keys)
        .bind(job)
        .bind(step)
        .execute(&self.pool)
        .await?;
        let r = sqlx::query(
            // PostgreSQL sums BIGINT as NUMERIC: cast back.
            "SELECT CAST(COALESCE(SUM(slots_moved), 0) AS BIGINT) AS s, CAST(COALESCE(SUM(keys_moved), 0) AS BIGINT) AS k
             FROM job_steps WHERE job_id = $1",
        )
        .bind(job)
        .fetch_one(&self.pool)
        .await?;
        Ok((r.try_get("s")?, r.try_get("k")?))
    }

    /// Takes (or keeps) the lease of an unfinished job whose lease is free
    /// or already ours; returns the job taken.
    pub async fn claim_job(&self, owner: &str, now: i64, lease_ms: i64) -> Result<Option<JobRow>> {
        let candidates = sqlx::query(
            "SELECT id FROM jobs WHERE status IN ('pending', 'running')
             AND (lease_until < $1 OR lease_owner = $2) ORDER BY created_at LIMIT 8",
        )
        .bind(now)
        .bind(owner)
        .fetch_all(&self.pool)
        .await?;
        for c in candidates {
            let id: String = c.try_get("id")?;
            // The compare-and-set: only one process wins an expired lease.
            let n = sqlx::query(
                "UPDATE jobs SET lease_owner = $1, lease_until = $2
                 WHERE id = $3 AND status IN ('pending', 'running') AND (lease_until < $4 OR lease_owner = $1)",
            )
            .bind(owner)
            .bind(now + lease_ms)
            .bind(&id)
            .bind(now)
            .execute(&self.pool)
            .await?
            .rows_affected();
            if n == 1 {
                return self.job(&id).await;
            }
        }
        Ok(None)
    }

    /// Extends our lease; false when it was lost (another process has it).
    pub async fn renew_lease(
        &self,
        id: &str,
        owner: &str,
        now: i64,
        lease_ms: i64,
    ) -> Result<bool> {
        let n = sqlx::query("UPDATE jobs SET lease_until = $1 WHERE id = $2 AND lease_owner = $3")
            .bind(now + lease_ms)
            .bind(id)
            .bind(owner)
            .execute(&self.pool)
            .await?
            .rows_affected();
        Ok(n == 1)
    }

    pub async fn start_job(&self, id: &str, now: i64) -> Result<()> {
        sqlx::query(
            "UPDATE jobs SET status = 'running', started_at = COALESCE(started_at, $1) WHERE id = $2",
        )
        .bind(now)
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn finish_job(
        &self,
        id: &str,
        status: &str,
        error: Option<&str>,
        now: i64,
    ) -> Result<()> {
        sqlx::query(
            "UPDATE jobs SET status = $1, error = $2, finished_at = $3, lease_owner = NULL, lease_until = 0,
             progress = CASE WHEN $1 = 'succeeded' THEN 100 ELSE progress END WHERE id = $4",
        )
        .bind(status)
        .bind(error)
        .bind(now)
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Raises a job's progress (it never goes back: step counts and slot
    /// counts both feed it).
    pub async fn set_progress(&self, id: &str, progress: i64) -> Result<()> {
        sqlx::query("UPDATE jobs SET progress = $1 WHERE id = $2 AND progress < $1")
            .bind(progress)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn request_cancel(&self, id: &str) -> Result<bool> {
        let n = sqlx::query(
            "UPDATE jobs SET cancel_requested = 1 WHERE id = $1 AND status IN ('pending', 'running')",
        )
        .bind(id)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(n == 1)
    }

    pub async fn set_step(
        &self,
        job: &str,
        idx: i64,
        status: &str,
        detail: Option<&str>,
        now: i64,
    ) -> Result<()> {
        let q = if status == "running" {
            "UPDATE job_steps SET status = $1, detail = $2, started_at = COALESCE(started_at, $3) WHERE job_id = $4 AND idx = $5"
        } else {
            "UPDATE job_steps SET status = $1, detail = $2, finished_at = $3 WHERE job_id = $4 AND idx = $5"
        };
        sqlx::query(q)
            .bind(status)
            .bind(detail)
            .bind(now)
            .bind(job)
            .bind(idx)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// (status, count) of all jobs.
    pub async fn job_counts(&self) -> Result<Vec<(String, i64)>> {
        let rows = sqlx::query("SELECT status, COUNT(*) AS n FROM jobs GROUP BY status")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("status")?, r.try_get("n")?)))
            .collect()
    }

    // ---- metric samples ----

    /// Adds one second's samples (a second already sampled, by another
    /// process sharing the database, is left as it is).
    pub async fn add_samples(&self, cluster: &str, samples: &[Sample]) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        for s in samples {
            sqlx::query(
                "INSERT INTO samples (cluster, node_id, sec, address, role, ops_per_sec, memory_bytes, key_count, repl_offset)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT DO NOTHING",
            )
            .bind(cluster)
            .bind(&s.node)
            .bind(s.time / 1000)
            .bind(&s.address)
            .bind(&s.role)
            .bind(s.ops_per_sec)
            .bind(s.memory_bytes)
            .bind(s.keys)
            .bind(s.offset)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Drops samples older than `before` (Unix ms).
    pub async fn prune_samples(&self, before: i64) -> Result<u64> {
        Ok(sqlx::query("DELETE FROM samples WHERE sec < $1")
            .bind(before / 1000)
            .execute(&self.pool)
            .await?
            .rows_affected())
    }

    /// A cluster's samples since `since` (Unix ms), oldest first; one node's
    /// when `node` is given.
    pub async fn samples(
        &self,
        cluster: &str,
        since: i64,
        node: Option<&str>,
    ) -> Result<Vec<Sample>> {
        let rows = sqlx::query(
            "SELECT node_id, sec, address, role, ops_per_sec, memory_bytes, key_count, repl_offset FROM samples
             WHERE cluster = $1 AND sec >= $2 AND ($3 = '' OR node_id = $3)
             ORDER BY sec, node_id",
        )
        .bind(cluster)
        .bind(since / 1000)
        .bind(node.unwrap_or(""))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(Sample {
                    node: r.try_get("node_id")?,
                    address: r.try_get("address")?,
                    role: r.try_get("role")?,
                    time: r.try_get::<i64, _>("sec")? * 1000,
                    ops_per_sec: r.try_get("ops_per_sec")?,
                    memory_bytes: r.try_get("memory_bytes")?,
                    keys: r.try_get("key_count")?,
                    offset: r.try_get("repl_offset")?,
                })
            })
            .collect()
    }

    // ---- events ----

    /// (kind, count) of all events.
    pub async fn event_counts(&self) -> Result<Vec<(String, i64)>> {
        let rows = sqlx::query("SELECT kind, COUNT(*) AS n FROM events GROUP BY kind")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("kind")?, r.try_get("n")?)))
            .collect()
    }

    /// Appends an event with the next id (monotonic across processes that
    /// share the database: the counter row is updated in the same
    /// transaction).
    pub async fn append_event(&self, e: &NewEvent, now: i64) -> Result<i64> {
        let mut tx = self.pool.begin().await?;
        let r = sqlx::query(
            "UPDATE counters SET value = value + 1 WHERE name = 'events' RETURNING value",
        )
        .fetch_one(&mut *tx)
        .await?;
        let id: i64 = r.try_get("value")?;
        sqlx::query(
            "INSERT INTO events (id, time, cluster, kind, node, job, actor, details) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(id)
        .bind(now)
        .bind(&e.cluster)
        .bind(&e.kind)
        .bind(&e.node)
        .bind(&e.job)
        .bind(&e.actor)
        .bind(e.details.to_string())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(id)
    }

    pub async fn events(&self, cluster: &str, f: &EventFilter) -> Result<Vec<EventRow>> {
        const WHERE: &str = "SELECT id, time, cluster, kind, node, job, actor, details FROM events
             WHERE cluster = $1 AND id > $2 AND id < $3 AND ($4 = '' OR kind = $4)
             AND ($5 = '' OR node = $5) AND time >= $6 AND time <= $7";
        let sql = if f.before.is_some() {
            format!("{WHERE} ORDER BY id DESC LIMIT $8")
        } else {
            format!("{WHERE} ORDER BY id LIMIT $8")
        };
        let rows = sqlx::query(&sql)
            .bind(cluster)
            .bind(f.after.unwrap_or(0))
            .bind(f.before.unwrap_or(i64::MAX))
            .bind(f.kind.as_deref().unwrap_or(""))
            .bind(f.node.as_deref().unwrap_or(""))
            .bind(f.since.unwrap_or(0))
            .bind(f.until.unwrap_or(i64::MAX))
            .bind(f.limit)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                Ok(EventRow {
                    id: r.try_get("id")?,
                    time: r.try_get("time")?,
                    cluster: r.try_get("cluster")?,
                    kind: r.try_get("kind")?,
                    node: r.try_get("node")?,
                    job: r.try_get("job")?,
                    actor: r.try_get("actor")?,
                    details: json(&r.try_get::<String, _>("details")?),
                })
            })
            .collect()
    }
}

/// The store's queries on SQLite, and on PostgreSQL too when
/// `SLOTKV_TEST_POSTGRES` names a server (`./test.sh` starts a private one):
/// each test gets a fresh database.
#[cfg(test)]
mod tests {
    use super::*;

    async fn stores() -> Vec<(String, Store)> {
        let n: u64 = rand::random();
        let file = std::env::temp_dir().join(format!("slotkv-store-{n:x}.db"));
        let mut out = vec![(
            "sqlite".to_string(),
            Store::open(&format!("sqlite://{}", file.display()))
                .await
                .expect("sqlite store"),
        )];
        if let Ok(url) = std::env::var("SLOTKV_TEST_POSTGRES") {
            sqlx::any::install_default_drivers();
            let admin = sqlx::AnyPool::connect(&url).await.expect("postgres admin");
            let db = format!("skv_{n:x}");
            sqlx::query(&format!("CREATE DATABASE {db}"))
                .execute(&admin)
                .await
                .expect("create database");
            let base = url.rsplit_once('/').map_or(url.as_str(), |(b, _)| b);
            let store = Store::open(&format!("{base}/{db}"))
                .await
                .expect("postgres store");
            out.push(("postgres".to_string(), store));
        }
        out
    }

    async fn job(s: &Store, id: &str, cluster: &str, key: Option<&str>) -> Result<()> {
        s.insert_job(
            id,
            "reshard",
            cluster,
            &serde_json::json!({}),
            &serde_json::json!({"moves": []}),
            &["a".to_string(), "b".to_string()],
            key,
            "test",
            1,
        )
        .await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn one_process_holds_a_lease_until_it_expires() {
        for (db, s) in stores().await {
            s.insert_cluster("c", 1, 1).await.expect(&db);
            job(&s, "j1", "c", None).await.expect(&db);
            let a = s.claim_job("A", 1_000, 10_000).await.expect(&db);
            assert_eq!(a.map(|j| j.id).as_deref(), Some("j1"), "{db}");
            assert!(
                s.claim_job("B", 2_000, 10_000).await.expect(&db).is_none(),
                "{db}"
            );
            assert!(
                !s.renew_lease("j1", "B", 2_000, 10_000).await.expect(&db),
                "{db}"
            );
            assert!(
                s.renew_lease("j1", "A", 5_000, 10_000).await.expect(&db),
                "{db}"
            );
            // A renewed until 15 000: B still waits at 12 000, wins at 16 000.
            assert!(
                s.claim_job("B", 12_000, 10_000).await.expect(&db).is_none(),
                "{db}"
            );
            let b = s.claim_job("B", 16_000, 10_000).await.expect(&db);
            assert_eq!(b.and_then(|j| j.lease_owner).as_deref(), Some("B"), "{db}");
            assert!(
                !s.renew_lease("j1", "A", 16_500, 10_000).await.expect(&db),
                "{db}"
            );
            // Finished: nobody claims it again.
            s.finish_job("j1", "succeeded", None, 17_000)
                .await
                .expect(&db);
            assert!(
                s.claim_job("A", 99_000, 10_000).await.expect(&db).is_none(),
                "{db}"
            );
            let j = s.job("j1").await.expect(&db).expect("job");
            assert_eq!(
                (j.status.as_str(), j.progress, j.lease_owner),
                ("succeeded", 100, None)
            );
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn racing_processes_never_both_win_an_expired_lease() {
        for (db, s) in stores().await {
            s.insert_cluster("c", 1, 1).await.expect(&db);
            job(&s, "j1", "c", None).await.expect(&db);
            for round in 0..5i64 {
                // Everyone sees the lease expired at the same instant.
                let now = 100_000 * (round + 1);
                let tasks: Vec<_> = (0..8)
                    .map(|i| {
                        let s = s.clone();
                        tokio::spawn(
                            async move { s.claim_job(&format!("P{i}"), now, 10_000).await },
                        )
                    })
                    .collect();
                let mut winners = 0;
                for t in tasks {
                    if t.await.expect("task").expect(&db).is_some() {
                        winners += 1;
                    }
                }
                assert_eq!(winners, 1, "{db}: round {round}");
            }
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one_unfinished_job_per_cluster_and_keys_are_unique() {
        for (db, s) in stores().await {
            s.insert_cluster("c", 1, 1).await.expect(&db);
            s.insert_cluster("d", 1, 1).await.expect(&db);
            assert!(
                matches!(s.insert_cluster("c", 1, 1).await, Err(StoreError::Conflict)),
                "{db}"
            );
            job(&s, "j1", "c", Some("k1")).await.expect(&db);
            assert!(
                matches!(job(&s, "j2", "c", None).await, Err(StoreError::Conflict)),
                "{db}"
            );
            job(&s, "j3", "d", None).await.expect(&db);
            assert!(
                matches!(
                    job(&s, "j4", "d", Some("k1")).await,
                    Err(StoreError::Conflict)
                ),
                "{db}"
            );
            assert_eq!(
                s.job_by_key("k1")
                    .await
                    .expect(&db)
                    .map(|j| j.id)
                    .as_deref(),
                Some("j1")
            );
            assert_eq!(
                s.active_job("c").await.expect(&db).map(|j| j.id).as_deref(),
                Some("j1")
            );
            s.finish_job("j1", "failed", Some("boom"), 5)
                .await
                .expect(&db);
            assert!(s.active_job("c").await.expect(&db).is_none(), "{db}");
            job(&s, "j2", "c", None).await.expect(&db);
            assert_eq!(s.steps("j2").await.expect(&db).len(), 2, "{db}");
            // Step counts sum into the job's; progress only goes up.
            assert_eq!(
                s.set_step_moved("j2", "a", 10, 500).await.expect(&db),
                (10, 500)
            );
            assert_eq!(
                s.set_step_moved("j2", "b", 3, 7).await.expect(&db),
                (13, 507)
            );
            assert_eq!(
                s.set_step_moved("j2", "a", 12, 600).await.expect(&db),
                (15, 607)
            );
            s.set_progress("j2", 40).await.expect(&db);
            s.set_progress("j2", 30).await.expect(&db);
            assert_eq!(
                s.job("j2").await.expect(&db).map(|j| j.progress),
                Some(40),
                "{db}"
            );
            let failed = s.jobs(Some("c"), Some("failed")).await.expect(&db);
            assert_eq!(failed.len(), 1, "{db}");
            assert_eq!(failed[0].error.as_deref(), Some("boom"), "{db}");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn event_ids_increase_across_writers_and_filters_apply() {
        for (db, s) in stores().await {
            let tasks: Vec<_> = (0..40)
                .map(|i| {
                    let s = s.clone();
                    tokio::spawn(async move {
                        let e = NewEvent {
                            cluster: if i % 2 == 0 { "c" } else { "d" }.into(),
                            kind: if i % 4 == 0 { "x" } else { "y" }.into(),
                            node: Some(format!("n{}", i % 3)),
                            ..Default::default()
                        };
                        s.append_event(&e, 1_000 + i).await
                    })
                })
                .collect();
            let mut ids = Vec::new();
            for t in tasks {
                ids.push(t.await.expect("task").expect(&db));
            }
            ids.sort();
            ids.dedup();
            assert_eq!(ids, (1..=40).collect::<Vec<i64>>(), "{db}");
            let all = EventFilter {
                limit: 1000,
                ..Default::default()
            };
            let c = s.events("c", &all).await.expect(&db);
            assert_eq!(c.len(), 20, "{db}");
            assert!(c.windows(2).all(|w| w[0].id < w[1].id), "{db}");
            let x = EventFilter {
                kind: Some("x".into()),
                limit: 1000,
                ..Default::default()
            };
            assert_eq!(s.events("c", &x).await.expect(&db).len(), 10, "{db}");
            let page = EventFilter {
                after: Some(c[4].id),
                limit: 3,
                ..Default::default()
            };
            let p = s.events("c", &page).await.expect(&db);
            assert_eq!(
                p.iter().map(|e| e.id).collect::<Vec<_>>(),
                c[5..8].iter().map(|e| e.id).collect::<Vec<_>>(),
                "{db}"
            );
            // Paging back: newest first, below an id, within a time.
            let back = EventFilter {
                before: Some(c[10].id),
                limit: 3,
                ..Default::default()
            };
            let p = s.events("c", &back).await.expect(&db);
            assert_eq!(
                p.iter().map(|e| e.id).collect::<Vec<_>>(),
                [c[9].id, c[8].id, c[7].id],
                "{db}"
            );
            let until = EventFilter {
                until: Some(c[2].time),
                limit: 1000,
                ..Default::default()
            };
            let p = s.events("c", &until).await.expect(&db);
            assert!(
                !p.is_empty() && p.iter().all(|e| e.time <= c[2].time),
                "{db}"
            );
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn samples_are_one_per_node_per_second_and_pruned() {
        for (db, s) in stores().await {
            let sample = |node: &str, time: i64, ops: i64| Sample {
                node: node.into(),
                address: "127.0.0.1:1".into(),
                role: "master".into(),
                time,
                ops_per_sec: ops,
                memory_bytes: 1 << 20,
                keys: 5,
                offset: 0,
            };
            s.add_samples("c", &[sample("a", 10_000, 1), sample("b", 10_000, 2)])
                .await
                .expect(&db);
            // A second observer on the same database, same second: ignored.
            s.add_samples("c", &[sample("a", 10_400, 9)])
                .await
                .expect(&db);
            s.add_samples("c", &[sample("a", 11_000, 3)])
                .await
                .expect(&db);
            let all = s.samples("c", 0, None).await.expect(&db);
            assert_eq!(
                all.iter()
                    .map(|x| (x.node.as_str(), x.time, x.ops_per_sec))
                    .collect::<Vec<_>>(),
                [("a", 10_000, 1), ("b", 10_000, 2), ("a", 11_000, 3)],
                "{db}"
            );
            assert_eq!(
                s.samples("c", 0, Some("b")).await.expect(&db).len(),
                1,
                "{db}"
            );
            assert_eq!(s.prune_samples(11_000).await.expect(&db), 2, "{db}");
            assert_eq!(s.samples("c", 0, None).await.expect(&db).len(), 1, "{db}");
        }
    }
}
