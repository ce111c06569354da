//! The REST API under `/api/v1`: thin handlers over [`crate::service`].

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use crate::service::{App, Caller, CreateCluster, Error, JobView, Outcome};
use crate::views::{
    ClusterSummary, DriftView, EventPage, EventQuery, SamplePage, SampleQuery, SlotInfo,
    TopologyView, WhoAmI,
};

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let (status, code, job) = match &self {
            Error::BadRequest { code, .. } => (StatusCode::BAD_REQUEST, *code, None),
            Error::Unprocessable { code, .. } => (StatusCode::UNPROCESSABLE_ENTITY, *code, None),
            Error::NotFound(_) => (StatusCode::NOT_FOUND, "not_found", None),
            Error::Conflict { code, job, .. } => (StatusCode::CONFLICT, *code, job.clone()),
            Error::Unauthorized => (StatusCode::UNAUTHORIZED, "unauthorized", None),
            Error::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden", None),
            Error::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "node_unavailable", None),
            Error::Internal(e) => {
                tracing::error!("internal error: {e}");
                (StatusCode::INTERNAL_SERVER_ERROR, "internal", None)
            }
        };
        let body = ErrorBody {
            error: ErrorDetail {
                code: code.to_string(),
                message: self.to_string(),
                job,
            },
        };
        let mut r = (status, Json(body)).into_response();
        if status == StatusCode::UNAUTHORIZED {
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
        }
        r
    }
}

impl FromRequestParts<App> for Caller {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, app: &App) -> Result<Caller, Error> {
        let h = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        crate::service::authenticate(&app.store, h).await
    }
}

/// Every error: `{"error": {"code", "message", "job"?}}`.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    /// Stable, snake_case: what automation should match on.
    pub code: String,
    pub message: String,
    /// The running job, for `job_running`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub job: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct HealthBody {
    pub status: String,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ClusterList {
    pub clusters: Vec<ClusterSummary>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct JobList {
    pub jobs: Vec<crate::store::JobRow>,
}

/// A dry run's answer.
#[derive(Serialize, utoipa::ToSchema)]
pub struct PlanBody {
    pub plan: serde_json::Value,
}

/// A JSON body, or our error shape when it is not one.
fn body<T>(b: Result<Json<T>, JsonRejection>) -> Result<T, Error> {
    match b {
        Ok(Json(v)) => Ok(v),
        Err(JsonRejection::JsonDataError(e)) => Err(Error::Unprocessable {
            code: "invalid_body",
            message: e.body_text(),
        }),
        Err(e) => Err(Error::BadRequest {
            code: "malformed_json",
            message: e.body_text(),
        }),
    }
}

fn idempotency_key(h: &HeaderMap) -> Option<String> {
    h.get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

fn accepted(job: JobView) -> Response {
    let loc = format!("/api/v1/jobs/{}", job.job.id);
    let mut r = (StatusCode::ACCEPTED, Json(job)).into_response();
    if let Ok(v) = header::HeaderValue::from_str(&loc) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r
}

pub fn router(app: App) -> Router {
    let api = Router::new()
        .route("/health", get(health))
        .route("/clusters", get(list_clusters).post(create_cluster))
        .route("/clusters/{name}", get(get_cluster).delete(delete_cluster))
        .route("/clusters/{name}/topology", get(topology))
        .route("/clusters/{name}/drift", get(drift))
        .route("/clusters/{name}/samples", get(samples))
        .route("/clusters/{name}/slots/{slot}", get(slot_info))
        .route("/whoami", get(whoami))
        .route("/clusters/{name}/reshard", post(reshard))
        .route("/clusters/{name}/rebalance", post(rebalance))
        .route("/clusters/{name}/failover", post(failover))
        .route("/clusters/{name}/nodes", post(add_node))
        .route(
            "/clusters/{name}/nodes/{id}",
            axum::routing::delete(remove_node),
        )
        .route("/clusters/{name}/events", get(events))
        .route("/clusters/{name}/events/stream", get(event_stream))
        .route("/jobs", get(list_jobs))
        .route("/jobs/{id}", get(get_job))
        .route("/jobs/{id}/cancel", post(cancel_job));
    let api = api.route("/openapi.json", get(openapi));
    Router::new()
        .route("/metrics", get(metrics))
        .nest("/api/v1", api)
        .fallback(|req: axum::extract::Request| async move {
            // Everything outside the API is the dashboard's.
            if !req.uri().path().starts_with("/api/") {
                if let Some(r) = crate::web::serve(&req) {
                    return r;
                }
            }
            Error::NotFound("no such route".into()).into_response()
        })
        .with_state(app)
}

/// The OpenAPI document of this API, generated from the code.
pub(crate) async fn openapi() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        crate::openapi::json(),
    )
        .into_response()
}

#[utoipa::path(
    get,
    path = "/metrics",
    tag = "service",
    security(()),
    responses(
        (status = 200, description = "Prometheus text format", body = String, content_type = "text/plain"),
    )
)]
/// Prometheus text format; no token needed (as the issue asks).
pub(crate) async fn metrics(State(app): State<App>) -> Result<Response, Error> {
    let text = crate::metrics::render(&app).await?;
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response())
}

#[utoipa::path(
    get,
    path = "/api/v1/health",
    tag = "service",
    security(()),
    responses((status = 200, description = "The service answers", body = HealthBody))
)]
pub(crate) async fn health() -> Json<HealthBody> {
    Json(HealthBody {
        status: "ok".into(),
    })
}

#[utoipa::path(
    get,
    path = "/api/v1/clusters",
    tag = "clusters",
    responses(
        (status = 200, description = "Every cluster with its observed state", body = ClusterList),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
    )
)]
pub(crate) async fn list_clusters(
    State(app): State<App>,
    _c: Caller,
) -> Result<Json<ClusterList>, Error> {
    Ok(Json(ClusterList {
        clusters: app.cluster_summaries().await?,
    }))
}

#[utoipa::path(
    get,
    path = "/api/v1/clusters/{name}",
    tag = "clusters",
    params(("name" = String, Path, description = "Cluster name")),
    responses(
        (status = 200, description = "The cluster's observed state", body = ClusterSummary),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
        (status = 404, description = "No such cluster, node or job", body = ErrorBody),
    )
)]
pub(crate) async fn get_cluster(
    State(app): State<App>,
    _c: Caller,
    Path(name): Path<String>,
) -> Result<Json<ClusterSummary>, Error> {
    Ok(Json(app.cluster_summary(&name).await?))
}

#[utoipa::path(
    post,
    path = "/api/v1/clusters",
    tag = "clusters",
    params(
        ("Idempotency-Key" = Option<String>, Header, description = "A retried call with the same key returns the first call's job"),
    ),
    request_body = CreateCluster,
    responses(
        (status = 202, description = "The create (or adopt) job", body = JobView, headers(("Location" = String, description = "The job's URL"))),
        (status = 400, description = "Malformed request", body = ErrorBody),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
        (status = 403, description = "A viewer token on a change", body = ErrorBody),
        (status = 409, description = "Another job is running on the cluster (its id is in error.job), or the cluster is not observed yet", body = ErrorBody),
        (status = 422, description = "Well-formed but impossible request", body = ErrorBody),
    )
)]
pub(crate) async fn create_cluster(
    State(app): State<App>,
    caller: Caller,
    headers: HeaderMap,
    b: Result<Json<CreateCluster>, JsonRejection>,
) -> Result<Response, Error> {
    caller.require_admin()?;
    let req = body(b)?;
    let job = app
        .create_cluster(req, idempotency_key(&headers).as_deref(), &caller)
        .await?;
    Ok(accepted(job))
}

fn outcome(o: Outcome) -> Response {
    match o {
        Outcome::Plan(plan) => (StatusCode::OK, Json(PlanBody { plan })).into_response(),
        Outcome::Job(j) => accepted(*j),
    }
}

#[utoipa::path(
    post,
    path = "/api/v1/clusters/{name}/reshard",
    tag = "changes",
    params(
        ("name" = String, Path, description = "Cluster name"),
        ("Idempotency-Key" = Option<String>, Header, description = "A retried call with the same key returns the first call's job"),
    ),
    request_body = crate::service::Reshard,
    responses(
        (status = 200, description = "dry_run: the plan", body = PlanBody),
        (status = 202, description = "The reshard job", body = JobView, headers(("Location" = String, description = "The job's URL"))),
        (status = 400, description = "Malformed request", body = ErrorBody),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
        (status = 403, description = "A viewer token on a change", body = ErrorBody),
        (status = 404, description = "No such cluster, node or job", body = ErrorBody),
        (status = 409, description = "Another job is running on the cluster (its id is in error.job), or the cluster is not observed yet", body = ErrorBody),
        (status = 422, description = "Well-formed but impossible request", body = ErrorBody),
    )
)]
pub(crate) async fn reshard(
    State(app): State<App>,
    caller: Caller,
    Path(name): Path<String>,
    headers: HeaderMap,
    b: Result<Json<crate::service::Reshard>, JsonRejection>,
) -> Result<Response, Error> {
    caller.require_admin()?;
    let req = body(b)?;
    let o = app
        .reshard(&name, req, idempotency_key(&headers).as_deref(), &caller)
        .await?;
    Ok(outcome(o))
}

#[utoipa::path(
    post,
    path = "/api/v1/clusters/{name}/rebalance",
    tag = "changes",
    params(
        ("name" = String, Path, description = "Cluster name"),
        ("Idempotency-Key" = Option<String>, Header, description = "A retried call with the same key returns the first call's job"),
    ),
    request_body = crate::service::Rebalance,
    responses(
        (status = 200, description = "dry_run, or nothing to move: the plan", body = PlanBody),
        (status = 202, description = "The rebalance job", body = JobView, headers(("Location" = String, description = "The job's URL"))),
        (status = 400, description = "Malformed request", body = ErrorBody),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
        (status = 403, description = "A viewer token on a change", body = ErrorBody),
        (status = 404, description = "No such cluster, node or job", body = ErrorBody),
        (status = 409, description = "Another job is running on the cluster (its id is in error.job), or the cluster is not observed yet", body = ErrorBody),
        (status = 422, description = "Well-formed but impossible request", body = ErrorBody),
    )
)]
pub(crate) async fn rebalance(
    State(app): State<App>,
    caller: Caller,
    Path(name): Path<String>,
    headers: HeaderMap,
    b: Result<Json<crate::service::Rebalance>, JsonRejection>,
) -> Result<Response, Error> {
    caller.require_admin()?;
    let req = body(b)?;
    let o = app
        .rebalance(&name, req, idempotency_key(&headers).as_deref(), &caller)
        .await?;
    Ok(outcome(o))
}

#[utoipa::path(
    post,
    path = "/api/v1/clusters/{name}/failover",
    tag = "changes",
    params(
        ("name" = String, Path, description = "Cluster name"),
        ("Idempotency-Key" = Option<String>, Header, description = "A retried call with the same key returns the first call's job"),
    ),
    request_body = crate::service::Failover,
    responses(
        (status = 202, description = "The failover job", body = JobView, headers(("Location" = String, description = "The job's URL"))),
        (status = 400, description = "Malformed request", body = ErrorBody),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
        (status = 403, description = "A viewer token on a change", body = ErrorBody),
        (status = 404, description = "No such cluster, node or job", body = ErrorBody),
        (status = 409, description = "Another job is running on the cluster (its id is in error.job), or the cluster is not observed yet", body = ErrorBody),
        (status = 422, description = "Well-formed but impossible request", body = ErrorBody),
    )
)]
pub(crate) async fn failover(
    State(app): State<App>,
    caller: Caller,
    Path(name): Path<String>,
    headers: HeaderMap,
    b: Result<Json<crate::service::Failover>, JsonRejection>,
) -> Result<Response, Error> {
    caller.require_admin()?;
    let req = body(b)?;
    let job = app
        .failover(&name, req, idempotency_key(&headers).as_deref(), &caller)
        .await?;
    Ok(accepted(job))
}

#[utoipa::path(
    post,
    path = "/api/v1/clusters/{name}/nodes",
    tag = "changes",
    params(
        ("name" = String, Path, description = "Cluster name"),
        ("Idempotency-Key" = Option<String>, Header, description = "A retried call with the same key returns the first call's job"),
    ),
    request_body = crate::service::AddNode,
    responses(
        (status = 202, description = "The add-node job", body = JobView, headers(("Location" = String, description = "The job's URL"))),
        (status = 400, description = "Malformed request", body = ErrorBody),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
        (status = 403, description = "A viewer token on a change", body = ErrorBody),
        (status = 404, description = "No such cluster, node or job", body = ErrorBody),
        (status = 409, description = "Another job is running on the cluster (its id is in error.job), or the cluster is not observed yet", body = ErrorBody),
        (status = 422, description = "Well-formed but impossible request", body = ErrorBody),
    )
)]
pub(crate) async fn add_node(
    State(app): State<App>,
    caller: Caller,
    Path(name): Path<String>,
    headers: HeaderMap,
    b: Result<Json<crate::service::AddNode>, JsonRejection>,
) -> Result<Response, Error> {
    caller.require_admin()?;
    let req = body(b)?;
    let job = app
        .add_node(&name, req, idempotency_key(&headers).as_deref(), &caller)
        .await?;
    Ok(accepted(job))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RemoveQuery {
    #[serde(default)]
    drain: bool,
}

#[utoipa::path(
    delete,
    path = "/api/v1/clusters/{name}/nodes/{id}",
    tag = "changes",
    params(
        ("name" = String, Path, description = "Cluster name"),
        ("id" = String, Path, description = "The node's 40-hex id"),
        ("drain" = Option<bool>, Query, description = "Move a master's slots away first"),
        ("Idempotency-Key" = Option<String>, Header, description = "A retried call with the same key returns the first call's job"),
    ),
    responses(
        (status = 202, description = "The remove-node job", body = JobView, headers(("Location" = String, description = "The job's URL"))),
        (status = 400, description = "Malformed request", body = ErrorBody),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
        (status = 403, description = "A viewer token on a change", body = ErrorBody),
        (status = 404, description = "No such cluster, node or job", body = ErrorBody),
        (status = 409, description = "Another job is running on the cluster (its id is in error.job), or the cluster is not observed yet", body = ErrorBody),
        (status = 422, description = "Well-formed but impossible request", body = ErrorBody),
    )
)]
pub(crate) async fn remove_node(
    State(app): State<App>,
    caller: Caller,
    Path((name, id)): Path<(String, String)>,
    headers: HeaderMap,
    q: Result<Query<RemoveQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, Error> {
    caller.require_admin()?;
    let q = query(q)?;
    let job = app
        .remove_node(
            &name,
            &id,
            q.drain,
            idempotency_key(&headers).as_deref(),
            &caller,
        )
        .await?;
    Ok(accepted(job))
}

#[utoipa::path(
    delete,
    path = "/api/v1/clusters/{name}",
    tag = "clusters",
    params(("name" = String, Path, description = "Cluster name")),
    responses(
        (status = 204, description = "Forgotten (the nodes are left as they are)"),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
        (status = 403, description = "A viewer token on a change", body = ErrorBody),
        (status = 404, description = "No such cluster, node or job", body = ErrorBody),
        (status = 409, description = "Another job is running on the cluster (its id is in error.job), or the cluster is not observed yet", body = ErrorBody),
    )
)]
pub(crate) async fn delete_cluster(
    State(app): State<App>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<StatusCode, Error> {
    app.delete_cluster(&name, &caller).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(
    get,
    path = "/api/v1/clusters/{name}/topology",
    tag = "clusters",
    params(("name" = String, Path, description = "Cluster name")),
    responses(
        (status = 200, description = "Observed nodes, and the desired topology", body = TopologyView),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
        (status = 404, description = "No such cluster, node or job", body = ErrorBody),
    )
)]
pub(crate) async fn topology(
    State(app): State<App>,
    _c: Caller,
    Path(name): Path<String>,
) -> Result<Json<TopologyView>, Error> {
    Ok(Json(app.topology(&name).await?))
}

#[utoipa::path(
    get,
    path = "/api/v1/whoami",
    tag = "auth",
    responses(
        (status = 200, description = "The token's name and role", body = WhoAmI),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
    )
)]
pub(crate) async fn whoami(c: Caller) -> Json<WhoAmI> {
    Json(WhoAmI {
        name: c.name,
        role: c.role,
    })
}

#[utoipa::path(
    get,
    path = "/api/v1/clusters/{name}/slots/{slot}",
    tag = "clusters",
    params(
        ("name" = String, Path, description = "Cluster name"),
        ("slot" = u16, Path, description = "Hash slot, 0-16383"),
    ),
    responses(
        (status = 200, description = "The slot's owner and key count", body = SlotInfo),
        (status = 400, description = "Slot out of range", body = ErrorBody),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
        (status = 404, description = "No such cluster", body = ErrorBody),
        (status = 503, description = "The owner did not answer", body = ErrorBody),
    )
)]
pub(crate) async fn slot_info(
    State(app): State<App>,
    _c: Caller,
    Path((name, slot)): Path<(String, String)>,
) -> Result<Json<SlotInfo>, Error> {
    let slot = slot.parse::<u16>().map_err(|_| Error::BadRequest {
        code: "invalid_slot",
        message: format!("'{slot}' is not a slot number (0-16383)"),
    })?;
    Ok(Json(app.slot_info(&name, slot).await?))
}

#[utoipa::path(
    get,
    path = "/api/v1/clusters/{name}/drift",
    tag = "clusters",
    params(("name" = String, Path, description = "Cluster name")),
    responses(
        (status = 200, description = "Where the observed cluster differs from the desired one", body = DriftView),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
        (status = 404, description = "No such cluster, node or job", body = ErrorBody),
    )
)]
pub(crate) async fn drift(
    State(app): State<App>,
    _c: Caller,
    Path(name): Path<String>,
) -> Result<Json<DriftView>, Error> {
    Ok(Json(app.drift(&name).await?))
}

#[utoipa::path(
    get,
    path = "/api/v1/clusters/{name}/samples",
    tag = "clusters",
    params(("name" = String, Path, description = "Cluster name"), SampleQuery),
    responses(
        (status = 200, description = "Per-node metrics, one sample per second, for the charts", body = SamplePage),
        (status = 400, description = "Malformed request", body = ErrorBody),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
        (status = 404, description = "No such cluster, node or job", body = ErrorBody),
    )
)]
pub(crate) async fn samples(
    State(app): State<App>,
    _c: Caller,
    Path(name): Path<String>,
    q: Result<Query<SampleQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<SamplePage>, Error> {
    Ok(Json(app.samples(&name, query(q)?).await?))
}

fn query<T>(q: Result<Query<T>, axum::extract::rejection::QueryRejection>) -> Result<T, Error> {
    q.map(|Query(v)| v).map_err(|e| Error::BadRequest {
        code: "invalid_query",
        message: e.body_text(),
    })
}

#[utoipa::path(
    get,
    path = "/api/v1/clusters/{name}/events",
    tag = "events",
    params(("name" = String, Path, description = "Cluster name"), EventQuery),
    responses(
        (status = 200, description = "A page of the event history, oldest first", body = EventPage),
        (status = 400, description = "Malformed request", body = ErrorBody),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
        (status = 404, description = "No such cluster, node or job", body = ErrorBody),
    )
)]
pub(crate) async fn events(
    State(app): State<App>,
    _c: Caller,
    Path(name): Path<String>,
    q: Result<Query<EventQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<EventPage>, Error> {
    Ok(Json(app.events_page(&name, query(q)?).await?))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct JobQuery {
    /// Only this cluster's jobs.
    cluster: Option<String>,
    /// pending, running, succeeded, failed or cancelled.
    #[param(pattern = "^(pending|running|succeeded|failed|cancelled)$")]
    status: Option<String>,
}

#[utoipa::path(
    get,
    path = "/api/v1/jobs",
    tag = "jobs",
    params(JobQuery),
    responses(
        (status = 200, description = "Jobs, newest first", body = JobList),
        (status = 400, description = "Malformed request", body = ErrorBody),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
    )
)]
pub(crate) async fn list_jobs(
    State(app): State<App>,
    _c: Caller,
    q: Result<Query<JobQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<JobList>, Error> {
    let q = query(q)?;
    let jobs = app.jobs(q.cluster.as_deref(), q.status.as_deref()).await?;
    Ok(Json(JobList { jobs }))
}

#[utoipa::path(
    get,
    path = "/api/v1/jobs/{id}",
    tag = "jobs",
    params(("id" = String, Path, description = "Job id")),
    responses(
        (status = 200, description = "The job with its steps", body = JobView),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
        (status = 404, description = "No such cluster, node or job", body = ErrorBody),
    )
)]
pub(crate) async fn get_job(
    State(app): State<App>,
    _c: Caller,
    Path(id): Path<String>,
) -> Result<Json<JobView>, Error> {
    Ok(Json(app.job_view(&id).await?))
}

#[utoipa::path(
    post,
    path = "/api/v1/jobs/{id}/cancel",
    tag = "jobs",
    params(("id" = String, Path, description = "Job id")),
    responses(
        (status = 200, description = "Cancel requested: the job stops at its next safe point", body = JobView),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
        (status = 403, description = "A viewer token on a change", body = ErrorBody),
        (status = 404, description = "No such cluster, node or job", body = ErrorBody),
        (status = 409, description = "The job has already finished", body = ErrorBody),
    )
)]
pub(crate) async fn cancel_job(
    State(app): State<App>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<JobView>, Error> {
    Ok(Json(app.cancel_job(&id, &caller).await?))
}

#[utoipa::path(
    get,
    path = "/api/v1/clusters/{name}/events/stream",
    tag = "events",
    params(
        ("name" = String, Path, description = "Cluster name"),
        ("Last-Event-ID" = Option<i64>, Header, description = "Resume after this event id"), EventQuery,
    ),
    responses(
        (status = 200, description = "Server-Sent Events: each event's id, kind and JSON", body = String, content_type = "text/event-stream"),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
        (status = 404, description = "No such cluster, node or job", body = ErrorBody),
    )
)]
/// Server-Sent Events: the history after `Last-Event-ID` (or `after`),
/// then each new event of the cluster as it is recorded. The id of each
/// message is the event's id, so a reconnecting client resumes exactly.
pub(crate) async fn event_stream(
    State(app): State<App>,
    _c: Caller,
    Path(name): Path<String>,
    headers: HeaderMap,
    q: Result<Query<EventQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, Error> {
    use axum::response::sse::{Event, KeepAlive, Sse};
    use futures_util::StreamExt;

    app.cluster_exists(&name).await?;
    let after = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<i64>().ok())
        .or(q.ok().and_then(|Query(q)| q.after))
        .unwrap_or(0);
    let stream = crate::events::follow(&app.events, name, after).map(|e| {
        let data = serde_json::to_string(&e).unwrap_or_default();
        Ok::<_, std::convert::Infallible>(
            Event::default()
                .id(e.id.to_string())
                .event(e.kind.clone())
                .data(data),
        )
    });
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response())
}
