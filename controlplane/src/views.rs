//! What the API shows: read-only operations shared by REST and gRPC, so
//! both answer the same thing.

use serde::Serialize;

use crate::drift::Drift;
use crate::observer::{Observed, ObservedNode, OpenSlot};
use crate::service::{App, Error, Result};
use crate::store::{EventFilter, EventRow, JobRow, NodeRow, Sample};

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ClusterSummary {
    pub name: String,
    /// "ok" or "fail".
    pub state: String,
    pub masters: u32,
    pub replicas: u32,
    pub slots_covered: u32,
    pub open_slots: u32,
    /// Keys held by masters.
    pub keys: u64,
    pub observed_at: i64,
    pub running_job: Option<String>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct DesiredSlots {
    pub address: String,
    pub first: u16,
    pub last: u16,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Desired {
    pub nodes: Vec<NodeRow>,
    pub slots: Vec<DesiredSlots>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct TopologyView {
    pub state: String,
    pub observed_at: i64,
    pub nodes: Vec<ObservedNode>,
    pub open_slots: Vec<OpenSlot>,
    pub desired: Desired,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct DriftView {
    pub in_sync: bool,
    pub observed_at: i64,
    pub drift: Vec<Drift>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct EventPage {
    pub events: Vec<EventRow>,
    /// The cursor for the next page (`after`).
    pub next: Option<i64>,
}

/// `GET /events` parameters, before validation.
#[derive(Debug, Clone, Default, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct EventQuery {
    /// Oldest first, ids above this one (following the history).
    pub after: Option<i64>,
    pub kind: Option<String>,
    pub node: Option<String>,
    /// Events at or after this time (Unix ms).
    pub since: Option<i64>,
    pub limit: Option<i64>,
    /// Newest first, ids below this one (paging back through history);
    /// `next` is then the id to pass as `before` for the page after.
    pub before: Option<i64>,
    /// Events at or before this time (Unix ms).
    pub until: Option<i64>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct SamplePage {
    /// Oldest first; one per node per second.
    pub samples: Vec<Sample>,
}

/// `GET /samples` parameters.
#[derive(Debug, Clone, Default, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct SampleQuery {
    /// Unix ms; default 15 minutes ago (samples are kept for an hour).
    pub since: Option<i64>,
    /// One node's id.
    pub node: Option<String>,
}

/// Who the token belongs to, so a page can tell what it may do.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct WhoAmI {
    pub name: String,
    /// `admin` or `viewer`.
    pub role: String,
}

/// One slot as its owner reports it now.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SlotInfo {
    pub slot: u16,
    /// The owning master's id and address; absent when no master serves it.
    pub owner: Option<String>,
    pub address: Option<String>,
    /// Keys in the slot (`CLUSTER COUNTKEYSINSLOT` on the owner).
    pub keys: Option<u64>,
}

const JOB_STATUSES: [&str; 5] = ["pending", "running", "succeeded", "failed", "cancelled"];

fn state_word(o: &Observed) -> String {
    if o.state == "ok" { "ok" } else { "fail" }.to_string()
}

impl App {
    async fn observed_or_empty(&self, name: &str) -> Observed {
        self.observed
            .read()
            .await
            .get(name)
            .cloned()
            .unwrap_or_default()
    }

    pub async fn cluster_summary(&self, name: &str) -> Result<ClusterSummary> {
        self.cluster_exists(name).await?;
        let running_job = self.store.active_job(name).await?.map(|j| j.id);
        let obs = self.observed_or_empty(name).await;
        let masters: Vec<&ObservedNode> = obs.nodes.iter().filter(|n| n.role == "master").collect();
        let slots_covered = masters
            .iter()
            .flat_map(|n| n.slots.iter())
            .map(|&(a, b)| u32::from(b) - u32::from(a) + 1)
            .sum();
        Ok(ClusterSummary {
            name: name.to_string(),
            state: state_word(&obs),
            masters: masters.len() as u32,
            replicas: (obs.nodes.len() - masters.len()) as u32,
            slots_covered,
            open_slots: obs.open_slots.len() as u32,
            keys: masters.iter().map(|n| n.keys).sum(),
            observed_at: obs.time,
            running_job,
        })
    }

    /// A slot's owner and key count, asked of the owner directly (the
    /// observer does not keep 16384 counts per node).
    pub async fn slot_info(&self, name: &str, slot: u16) -> Result<SlotInfo> {
        self.cluster_exists(name).await?;
        if slot >= 16384 {
            return Err(Error::BadRequest {
                code: "invalid_slot",
                message: format!("slot {slot} is out of range (0-16383)"),
            });
        }
        let obs = self.observed_or_empty(name).await;
        let owner = obs
            .nodes
            .iter()
            .find(|n| n.role == "master" && n.slots.iter().any(|&(a, b)| (a..=b).contains(&slot)));
        let Some(owner) = owner else {
            return Ok(SlotInfo {
                slot,
                owner: None,
                address: None,
                keys: None,
            });
        };
        let unavailable =
            |e: crate::nodes::NodeError| Error::Unavailable(format!("{}: {e}", owner.address));
        let mut n = crate::nodes::Node::connect(&owner.address, self.password.as_deref())
            .await
            .map_err(unavailable)?;
        let keys: u64 = n
            .cmd(&["CLUSTER", "COUNTKEYSINSLOT", &slot.to_string()])
            .await
            .map_err(unavailable)?;
        Ok(SlotInfo {
            slot,
            owner: Some(owner.id.clone()),
            address: Some(owner.address.clone()),
            keys: Some(keys),
        })
    }

    pub async fn cluster_summaries(&self) -> Result<Vec<ClusterSummary>> {
        let mut out = Vec::new();
        for c in self.store.clusters().await? {
            out.push(self.cluster_summary(&c.name).await?);
        }
        Ok(out)
    }

    pub async fn topology(&self, name: &str) -> Result<TopologyView> {
        self.cluster_exists(name).await?;
        let obs = self.observed_or_empty(name).await;
        let nodes = self.store.nodes(name).await?;
        let slots = self
            .store
            .slot_ranges(name)
            .await?
            .into_iter()
            .map(|(address, first, last)| DesiredSlots {
                address,
                first,
                last,
            })
            .collect();
        Ok(TopologyView {
            state: state_word(&obs),
            observed_at: obs.time,
            nodes: obs.nodes,
            open_slots: obs.open_slots,
            desired: Desired { nodes, slots },
        })
    }

    pub async fn drift(&self, name: &str) -> Result<DriftView> {
        self.cluster_exists(name).await?;
        let obs = self.observed_or_empty(name).await;
        let desired = self.store.nodes(name).await?;
        let slots = self.store.slot_ranges(name).await?;
        let drift = crate::drift::report(&desired, &slots, &obs);
        Ok(DriftView {
            in_sync: drift.is_empty(),
            observed_at: obs.time,
            drift,
        })
    }

    pub async fn events_page(&self, name: &str, q: EventQuery) -> Result<EventPage> {
        self.cluster_exists(name).await?;
        let limit = q.limit.unwrap_or(100);
        if !(1..=1000).contains(&limit) {
            return Err(Error::BadRequest {
                code: "invalid_limit",
                message: "limit must be 1-1000".into(),
            });
        }
        if q.after.is_some() && q.before.is_some() {
            return Err(Error::BadRequest {
                code: "invalid_request",
                message: "give 'after' (oldest first) or 'before' (newest first), not both".into(),
            });
        }
        let f = EventFilter {
            after: q.after,
            kind: q.kind,
            node: q.node,
            since: q.since,
            limit,
            before: q.before,
            until: q.until,
        };
        let events = self.store.events(name, &f).await?;
        let next = match q.before {
            // Paging back: the next page is below the oldest seen, and
            // there is none after a short page.
            Some(_) => events
                .last()
                .filter(|_| events.len() as i64 == limit)
                .map(|e| e.id),
            None => events.last().map(|e| e.id).or(q.after),
        };
        Ok(EventPage { events, next })
    }

    pub async fn jobs(&self, cluster: Option<&str>, status: Option<&str>) -> Result<Vec<JobRow>> {
        if let Some(s) = status {
            if !JOB_STATUSES.contains(&s) {
                return Err(Error::BadRequest {
                    code: "invalid_status",
                    message: format!("status must be one of {}", JOB_STATUSES.join(", ")),
                });
            }
        }
        Ok(self.store.jobs(cluster, status).await?)
    }

    pub async fn samples(&self, name: &str, q: SampleQuery) -> Result<SamplePage> {
        self.cluster_exists(name).await?;
        let now = crate::now_ms();
        let since = q
            .since
            .unwrap_or(now - 15 * 60_000)
            .max(now - crate::observer::SAMPLES_KEPT_MS);
        let samples = self.store.samples(name, since, q.node.as_deref()).await?;
        Ok(SamplePage { samples })
    }
}
