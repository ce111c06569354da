//! `/metrics` in Prometheus's text format, made at each scrape from the
//! observed topology and the store.

use prometheus::{Encoder, GaugeVec, IntGaugeVec, Opts, Registry, TextEncoder};

use crate::service::App;

fn gauge(
    r: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
) -> Result<GaugeVec, prometheus::Error> {
    let g = GaugeVec::new(Opts::new(name, help), labels)?;
    r.register(Box::new(g.clone()))?;
    Ok(g)
}

fn int_gauge(
    r: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
) -> Result<IntGaugeVec, prometheus::Error> {
    let g = IntGaugeVec::new(Opts::new(name, help), labels)?;
    r.register(Box::new(g.clone()))?;
    Ok(g)
}

/// The metrics text. A fresh registry each time: nodes that left do not
/// linger as stale series.
pub async fn render(app: &App) -> Result<String, crate::service::Error> {
    let internal = |e: prometheus::Error| crate::service::Error::Internal(e.to_string());
    let r = Registry::new();
    let node_labels = ["cluster", "node", "address", "role"];
    let up = int_gauge(
        &r,
        "slotkv_node_up",
        "1 when the control plane reaches the node",
        &node_labels,
    )
    .map_err(internal)?;
    let slots = int_gauge(
        &r,
        "slotkv_node_slots",
        "Hash slots the node owns",
        &node_labels,
    )
    .map_err(internal)?;
    let ops = gauge(
        &r,
        "slotkv_node_ops_per_second",
        "Commands per second (INFO instantaneous_ops_per_sec)",
        &node_labels,
    )
    .map_err(internal)?;
    let mem = gauge(
        &r,
        "slotkv_node_memory_bytes",
        "used_memory of the node",
        &node_labels,
    )
    .map_err(internal)?;
    let keys = gauge(
        &r,
        "slotkv_node_keys",
        "Keys held by the node",
        &node_labels,
    )
    .map_err(internal)?;
    let state = int_gauge(
        &r,
        "slotkv_cluster_ok",
        "1 when cluster_state is ok",
        &["cluster"],
    )
    .map_err(internal)?;
    let jobs = int_gauge(&r, "slotkv_jobs", "Jobs by status", &["status"]).map_err(internal)?;
    let events =
        int_gauge(&r, "slotkv_events", "Events recorded, by kind", &["kind"]).map_err(internal)?;
    for (cluster, obs) in app.observed.read().await.iter() {
        state
            .with_label_values(&[cluster.as_str()])
            .set(i64::from(obs.state == "ok"));
        for n in &obs.nodes {
            let l = [
                cluster.as_str(),
                n.id.as_str(),
                n.address.as_str(),
                n.role.as_str(),
            ];
            up.with_label_values(&l)
                .set(i64::from(n.link == "connected"));
            let count: u32 = n.slots.iter().map(|&(a, b)| (b - a) as u32 + 1).sum();
            slots.with_label_values(&l).set(count as i64);
            ops.with_label_values(&l).set(n.ops_per_sec as f64);
            mem.with_label_values(&l).set(n.memory_bytes as f64);
            keys.with_label_values(&l).set(n.keys as f64);
        }
    }
    for (status, n) in app.store.job_counts().await? {
        jobs.with_label_values(&[status.as_str()]).set(n);
    }
    for (kind, n) in app.store.event_counts().await? {
        events.with_label_values(&[kind.as_str()]).set(n);
    }
    let mut out = Vec::new();
    TextEncoder::new()
        .encode(&r.gather(), &mut out)
        .map_err(internal)?;
    Ok(String::from_utf8_lossy(&out).into_owned())
}
