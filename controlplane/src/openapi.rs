//! The OpenAPI 3 document of the REST API, generated from the handlers'
//! and types' annotations (served at `/api/v1/openapi.json`).

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::rest;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "slotkv control plane",
        description = "Desired topology, durable jobs, observed state and event history of slotkv (and redis-server) clusters. Every call but /api/v1/health and /metrics needs `Authorization: Bearer <token>`; changes need an admin token."
    ),
    paths(
        rest::health,
        rest::metrics,
        rest::list_clusters,
        rest::create_cluster,
        rest::get_cluster,
        rest::delete_cluster,
        rest::topology,
        rest::drift,
        rest::samples,
        rest::slot_info,
        rest::whoami,
        rest::reshard,
        rest::rebalance,
        rest::failover,
        rest::add_node,
        rest::remove_node,
        rest::events,
        rest::event_stream,
        rest::list_jobs,
        rest::get_job,
        rest::cancel_job,
    ),
    modifiers(&Bearer),
    security(("bearer" = [])),
    tags(
        (name = "clusters", description = "Clusters, their observed topology and drift"),
        (name = "changes", description = "Changes, each carried out as a durable job"),
        (name = "jobs", description = "Jobs: status, plan, steps, cancel"),
        (name = "events", description = "The event history, paged or live"),
        (name = "service", description = "Health and metrics (no token)"),
        (name = "auth", description = "What the caller's token may do"),
    )
)]
pub struct ApiDoc;

struct Bearer;

impl Modify for Bearer {
    fn modify(&self, api: &mut utoipa::openapi::OpenApi) {
        let comps = api.components.get_or_insert_with(Default::default);
        comps.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The document as JSON text (built once).
pub fn json() -> String {
    static DOC: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DOC.get_or_init(|| ApiDoc::openapi().to_pretty_json().unwrap_or_default())
        .clone()
}
