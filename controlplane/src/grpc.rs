//! The gRPC API (`slotkv.v1.ControlPlane`): thin handlers over
//! [`crate::service`] and [`crate::views`], as REST is. Errors become gRPC
//! status codes; the stable error code travels in `x-error-code`.

use std::pin::Pin;

use futures_util::{Stream, StreamExt};
use slotkv_proto::v1 as pb;
use tonic::metadata::MetadataValue;
use tonic::{Request, Response, Status};

use crate::observer::ObservedNode;
use crate::service::{self, App, Caller, Error, JobView, Outcome};
use crate::store::{EventRow, JobRow};
use crate::views::{ClusterSummary, EventQuery};

#[derive(Clone)]
pub struct Grpc {
    app: App,
}

pub fn service(app: App) -> pb::control_plane_server::ControlPlaneServer<Grpc> {
    pb::control_plane_server::ControlPlaneServer::new(Grpc { app })
}

/// Same codes as REST's JSON errors, as gRPC statuses.
fn status(e: Error) -> Status {
    use tonic::Code;
    let (code, word, job) = match &e {
        Error::BadRequest { code, .. } => (Code::InvalidArgument, *code, None),
        Error::Unprocessable { code, .. } => (Code::InvalidArgument, *code, None),
        Error::NotFound(_) => (Code::NotFound, "not_found", None),
        Error::Conflict { code, job, .. } => (Code::FailedPrecondition, *code, job.clone()),
        Error::Unauthorized => (Code::Unauthenticated, "unauthorized", None),
        Error::Forbidden(_) => (Code::PermissionDenied, "forbidden", None),
        Error::Unavailable(_) => (Code::Unavailable, "node_unavailable", None),
        Error::Internal(m) => {
            tracing::error!("internal error: {m}");
            (Code::Internal, "internal", None)
        }
    };
    let mut st = Status::new(code, e.to_string());
    st.metadata_mut()
        .insert("x-error-code", MetadataValue::from_static(word));
    if let Some(v) = job.and_then(|j| MetadataValue::try_from(j.as_str()).ok()) {
        st.metadata_mut().insert("x-job-id", v);
    }
    st
}

fn invalid(code: &'static str, message: impl Into<String>) -> Status {
    status(Error::BadRequest {
        code,
        message: message.into(),
    })
}

fn json_text(v: &serde_json::Value) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "null".into())
}

fn cluster_msg(c: ClusterSummary) -> pb::Cluster {
    pb::Cluster {
        name: c.name,
        state: c.state,
        masters: c.masters,
        replicas: c.replicas,
        slots_covered: c.slots_covered,
        open_slots: c.open_slots,
        keys: c.keys,
        observed_at: c.observed_at,
        running_job: c.running_job,
    }
}

fn ranges_msg(r: &[(u16, u16)]) -> Vec<pb::SlotRange> {
    r.iter()
        .map(|&(a, b)| pb::SlotRange {
            first: a.into(),
            last: b.into(),
        })
        .collect()
}

fn ranges_arg(r: &[pb::SlotRange]) -> Result<Option<Vec<(u16, u16)>>, Status> {
    if r.is_empty() {
        return Ok(None);
    }
    r.iter()
        .map(|x| match (u16::try_from(x.first), u16::try_from(x.last)) {
            (Ok(a), Ok(b)) => Ok((a, b)),
            _ => Err(invalid("invalid_range", "slots are 0-16383")),
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

fn node_msg(n: ObservedNode) -> pb::Node {
    pb::Node {
        slots: ranges_msg(&n.slots),
        id: n.id,
        address: n.address,
        role: n.role,
        master: n.master,
        flags: n.flags,
        link: n.link,
        config_epoch: n.config_epoch,
        offset: n.offset,
        memory_bytes: n.memory_bytes,
        ops_per_sec: n.ops_per_sec,
        keys: n.keys,
    }
}

fn job_msg(j: JobRow, steps: Vec<crate::store::StepRow>) -> pb::Job {
    pb::Job {
        slots_moved: steps.iter().map(|s| s.slots_moved).sum(),
        keys_moved: steps.iter().map(|s| s.keys_moved).sum(),
        plan_json: json_text(&j.plan),
        params_json: json_text(&j.params),
        id: j.id,
        kind: j.kind,
        cluster: j.cluster,
        status: j.status,
        progress: j.progress,
        steps: steps
            .into_iter()
            .map(|s| pb::Step {
                index: s.idx,
                name: s.name,
                status: s.status,
                detail: s.detail,
                started_at: s.started_at,
                finished_at: s.finished_at,
                slots_moved: s.slots_moved,
                keys_moved: s.keys_moved,
            })
            .collect(),
        error: j.error,
        created_at: j.created_at,
        started_at: j.started_at,
        finished_at: j.finished_at,
        actor: j.actor,
        cancel_requested: j.cancel_requested,
        lease_owner: j.lease_owner,
    }
}

fn view_msg(v: JobView) -> pb::Job {
    job_msg(v.job, v.steps)
}

fn event_msg(e: EventRow) -> pb::Event {
    pb::Event {
        details_json: json_text(&e.details),
        id: e.id,
        time: e.time,
        cluster: e.cluster,
        kind: e.kind,
        node: e.node,
        job: e.job,
        actor: e.actor,
    }
}

fn change_msg(o: Outcome) -> pb::ChangeResponse {
    use pb::change_response::Outcome as O;
    pb::ChangeResponse {
        outcome: Some(match o {
            Outcome::Plan(p) => O::PlanJson(json_text(&p)),
            Outcome::Job(j) => O::Job(view_msg(*j)),
        }),
    }
}

const TERMINAL: [&str; 3] = ["succeeded", "failed", "cancelled"];

type Streamed<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

impl Grpc {
    async fn caller<T>(&self, req: &Request<T>) -> Result<Caller, Status> {
        let h = req
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok());
        service::authenticate(&self.app.store, h)
            .await
            .map_err(status)
    }

    async fn admin<T>(&self, req: &Request<T>) -> Result<Caller, Status> {
        let c = self.caller(req).await?;
        c.require_admin().map_err(status)?;
        Ok(c)
    }
}

#[tonic::async_trait]
impl pb::control_plane_server::ControlPlane for Grpc {
    async fn list_clusters(
        &self,
        req: Request<pb::ListClustersRequest>,
    ) -> Result<Response<pb::ListClustersResponse>, Status> {
        self.caller(&req).await?;
        let clusters = self.app.cluster_summaries().await.map_err(status)?;
        Ok(Response::new(pb::ListClustersResponse {
            clusters: clusters.into_iter().map(cluster_msg).collect(),
        }))
    }

    async fn get_cluster(
        &self,
        req: Request<pb::GetClusterRequest>,
    ) -> Result<Response<pb::Cluster>, Status> {
        self.caller(&req).await?;
        let c = self
            .app
            .cluster_summary(&req.get_ref().name)
            .await
            .map_err(status)?;
        Ok(Response::new(cluster_msg(c)))
    }

    async fn create_cluster(
        &self,
        req: Request<pb::CreateClusterRequest>,
    ) -> Result<Response<pb::Job>, Status> {
        let caller = self.admin(&req).await?;
        let r = req.into_inner();
        let create = service::CreateCluster {
            name: r.name,
            nodes: r.nodes,
            replicas: r.replicas,
            adopt: r.adopt,
        };
        let j = self
            .app
            .create_cluster(create, r.idempotency_key.as_deref(), &caller)
            .await
            .map_err(status)?;
        Ok(Response::new(view_msg(j)))
    }

    async fn get_topology(
        &self,
        req: Request<pb::GetTopologyRequest>,
    ) -> Result<Response<pb::Topology>, Status> {
        self.caller(&req).await?;
        let t = self
            .app
            .topology(&req.get_ref().name)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::Topology {
            state: t.state,
            observed_at: t.observed_at,
            nodes: t.nodes.into_iter().map(node_msg).collect(),
            open_slots: t
                .open_slots
                .into_iter()
                .map(|o| pb::OpenSlot {
                    slot: o.slot.into(),
                    from: o.from,
                    to: o.to,
                })
                .collect(),
            desired_nodes: t
                .desired
                .nodes
                .into_iter()
                .map(|n| pb::DesiredNode {
                    address: n.address,
                    node_id: n.node_id,
                    role: n.role,
                    master_address: n.master_addr,
                })
                .collect(),
            desired_slots: t
                .desired
                .slots
                .into_iter()
                .map(|s| pb::DesiredSlots {
                    address: s.address,
                    first: s.first.into(),
                    last: s.last.into(),
                })
                .collect(),
        }))
    }

    async fn add_node(
        &self,
        req: Request<pb::AddNodeRequest>,
    ) -> Result<Response<pb::Job>, Status> {
        let caller = self.admin(&req).await?;
        let r = req.into_inner();
        let add = service::AddNode {
            address: r.address,
            role: r.role,
            master: r.master,
        };
        let j = self
            .app
            .add_node(&r.cluster, add, r.idempotency_key.as_deref(), &caller)
            .await
            .map_err(status)?;
        Ok(Response::new(view_msg(j)))
    }

    async fn remove_node(
        &self,
        req: Request<pb::RemoveNodeRequest>,
    ) -> Result<Response<pb::Job>, Status> {
        let caller = self.admin(&req).await?;
        let r = req.into_inner();
        let j = self
            .app
            .remove_node(
                &r.cluster,
                &r.id,
                r.drain,
                r.idempotency_key.as_deref(),
                &caller,
            )
            .await
            .map_err(status)?;
        Ok(Response::new(view_msg(j)))
    }

    async fn reshard(
        &self,
        req: Request<pb::ReshardRequest>,
    ) -> Result<Response<pb::ChangeResponse>, Status> {
        let caller = self.admin(&req).await?;
        let r = req.into_inner();
        let reshard = service::Reshard {
            ranges: ranges_arg(&r.ranges)?,
            to: r.to,
            slots: r.slots,
            from: r.from,
            dry_run: r.dry_run,
            method: r.method,
        };
        let o = self
            .app
            .reshard(&r.cluster, reshard, r.idempotency_key.as_deref(), &caller)
            .await
            .map_err(status)?;
        Ok(Response::new(change_msg(o)))
    }

    async fn rebalance(
        &self,
        req: Request<pb::RebalanceRequest>,
    ) -> Result<Response<pb::ChangeResponse>, Status> {
        let caller = self.admin(&req).await?;
        let r = req.into_inner();
        let rebalance = service::Rebalance {
            weights: r.weights.into_iter().collect(),
            use_empty_masters: r.use_empty_masters,
            threshold: r.threshold,
            dry_run: r.dry_run,
            method: r.method,
        };
        let o = self
            .app
            .rebalance(&r.cluster, rebalance, r.idempotency_key.as_deref(), &caller)
            .await
            .map_err(status)?;
        Ok(Response::new(change_msg(o)))
    }

    async fn failover(
        &self,
        req: Request<pb::FailoverRequest>,
    ) -> Result<Response<pb::Job>, Status> {
        let caller = self.admin(&req).await?;
        let r = req.into_inner();
        let f = service::Failover {
            replica: r.replica,
            mode: r.mode,
        };
        let j = self
            .app
            .failover(&r.cluster, f, r.idempotency_key.as_deref(), &caller)
            .await
            .map_err(status)?;
        Ok(Response::new(view_msg(j)))
    }

    async fn get_job(&self, req: Request<pb::GetJobRequest>) -> Result<Response<pb::Job>, Status> {
        self.caller(&req).await?;
        let j = self.app.job_view(&req.get_ref().id).await.map_err(status)?;
        Ok(Response::new(view_msg(j)))
    }

    async fn list_jobs(
        &self,
        req: Request<pb::ListJobsRequest>,
    ) -> Result<Response<pb::ListJobsResponse>, Status> {
        self.caller(&req).await?;
        let r = req.get_ref();
        let jobs = self
            .app
            .jobs(r.cluster.as_deref(), r.status.as_deref())
            .await
            .map_err(status)?;
        Ok(Response::new(pb::ListJobsResponse {
            jobs: jobs.into_iter().map(|j| job_msg(j, Vec::new())).collect(),
        }))
    }

    async fn cancel_job(
        &self,
        req: Request<pb::CancelJobRequest>,
    ) -> Result<Response<pb::Job>, Status> {
        let caller = self.admin(&req).await?;
        let j = self
            .app
            .cancel_job(&req.get_ref().id, &caller)
            .await
            .map_err(status)?;
        Ok(Response::new(view_msg(j)))
    }

    async fn list_events(
        &self,
        req: Request<pb::ListEventsRequest>,
    ) -> Result<Response<pb::ListEventsResponse>, Status> {
        self.caller(&req).await?;
        let r = req.into_inner();
        let q = EventQuery {
            after: r.after,
            kind: r.kind,
            node: r.node,
            since: r.since,
            limit: r.limit,
            before: r.before,
            until: r.until,
        };
        let page = self.app.events_page(&r.cluster, q).await.map_err(status)?;
        Ok(Response::new(pb::ListEventsResponse {
            events: page.events.into_iter().map(event_msg).collect(),
            next: page.next,
        }))
    }

    async fn get_drift(
        &self,
        req: Request<pb::GetDriftRequest>,
    ) -> Result<Response<pb::DriftReport>, Status> {
        self.caller(&req).await?;
        let d = self
            .app
            .drift(&req.get_ref().cluster)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::DriftReport {
            in_sync: d.in_sync,
            observed_at: d.observed_at,
            drift: d
                .drift
                .into_iter()
                .map(|x| pb::DriftItem {
                    details_json: json_text(&x.details),
                    kind: x.kind,
                    node: x.node,
                })
                .collect(),
        }))
    }

    type WatchJobStream = Streamed<pb::Job>;

    async fn watch_job(
        &self,
        req: Request<pb::WatchJobRequest>,
    ) -> Result<Response<Self::WatchJobStream>, Status> {
        self.caller(&req).await?;
        let id = req.into_inner().id;
        let first = self.app.job_view(&id).await.map_err(status)?;
        struct St {
            app: App,
            rx: tokio::sync::broadcast::Receiver<EventRow>,
            id: String,
            next: Option<JobView>,
            last: String,
            done: bool,
        }
        let st = St {
            rx: self.app.events.subscribe(),
            app: self.app.clone(),
            id,
            next: Some(first),
            last: String::new(),
            done: false,
        };
        // Sends the job whenever what the API would show of it changes:
        // woken by its events, and every half second for progress.
        let s = futures_util::stream::unfold(st, |mut st| async move {
            loop {
                if st.done {
                    return None;
                }
                if let Some(v) = st.next.take() {
                    let text = serde_json::to_string(&v).unwrap_or_default();
                    if text != st.last {
                        st.last = text;
                        st.done = TERMINAL.contains(&v.job.status.as_str());
                        return Some((Ok(view_msg(v)), st));
                    }
                }
                let wait = tokio::time::timeout(std::time::Duration::from_millis(500), async {
                    loop {
                        match st.rx.recv().await {
                            Ok(e) if e.job.as_deref() == Some(st.id.as_str()) => return,
                            Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                            Err(tokio::sync::broadcast::error::RecvError::Closed) => {
                                return std::future::pending().await
                            }
                        }
                    }
                });
                let _ = wait.await;
                match st.app.job_view(&st.id).await {
                    Ok(v) => st.next = Some(v),
                    Err(e) => {
                        st.done = true;
                        return Some((Err(status(e)), st));
                    }
                }
            }
        });
        Ok(Response::new(Box::pin(s)))
    }

    type WatchEventsStream = Streamed<pb::Event>;

    async fn watch_events(
        &self,
        req: Request<pb::WatchEventsRequest>,
    ) -> Result<Response<Self::WatchEventsStream>, Status> {
        self.caller(&req).await?;
        let r = req.into_inner();
        self.app.cluster_exists(&r.cluster).await.map_err(status)?;
        let s =
            crate::events::follow(&self.app.events, r.cluster, r.after).map(|e| Ok(event_msg(e)));
        Ok(Response::new(Box::pin(s)))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("gRPC reflection: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    #[error("gRPC server: {0}")]
    Transport(#[from] tonic::transport::Error),
}

/// Serves the API with the standard health service and server
/// reflection (so `grpcurl` needs no proto file).
pub async fn serve(app: App, listener: tokio::net::TcpListener) -> Result<(), ServeError> {
    let (reporter, health) = tonic_health::server::health_reporter();
    reporter
        .set_serving::<pb::control_plane_server::ControlPlaneServer<Grpc>>()
        .await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(slotkv_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    let reflection_alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(slotkv_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()?;
    tonic::transport::Server::builder()
        .add_service(health)
        .add_service(reflection)
        .add_service(reflection_alpha)
        .add_service(service(app))
        .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
        .await?;
    Ok(())
}
