//! `controlplane`: the service an operator talks to instead of typing
//! `redis-cli --cluster` by hand.
//!
//! - `controlplane up`: the embedded default: SQLite in `--data`, six
//!   local datanodes, the cluster created by the control plane's own job.
//! - `controlplane serve --database URL`: the service alone, for nodes
//!   started elsewhere.
//! - `controlplane token add`: another API token (admin or viewer).

mod drift;
mod events;
mod grpc;
mod jobs;
mod launcher;
mod metrics;
mod nodes;
mod observer;
mod openapi;
mod plan;
mod rest;
mod service;
mod store;
mod topology;
mod views;
mod web;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};

use crate::service::{App, Caller};
use crate::store::Store;

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[derive(Parser)]
#[command(name = "controlplane", version, about = "slotkv control plane")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Start local datanodes and the control plane, and create the
    /// cluster on first run (the same cluster comes back on later runs).
    Up {
        #[arg(long, default_value = "data/slotkv")]
        data: PathBuf,
        #[arg(long, default_value = "127.0.0.1:7070")]
        http: String,
        #[arg(long, default_value = "127.0.0.1:7071")]
        grpc: String,
        #[arg(long, default_value_t = 30001)]
        base_port: u16,
        #[arg(long, default_value_t = 3)]
        masters: u16,
        #[arg(long, default_value_t = 1)]
        replicas: u16,
        /// The datanode binary (default: beside this one).
        #[arg(long)]
        datanode: Option<PathBuf>,
    },
    /// Run the service alone against nodes started elsewhere.
    Serve {
        /// sqlite://FILE or postgres://…
        #[arg(long)]
        database: String,
        #[arg(long, default_value = "127.0.0.1:7070")]
        http: String,
        #[arg(long, default_value = "127.0.0.1:7071")]
        grpc: String,
        /// Where the admin token is kept (created on first run).
        #[arg(long, default_value = "data/slotkv")]
        data: PathBuf,
    },
    /// Manage API tokens.
    Token {
        #[command(subcommand)]
        cmd: TokenCmd,
    },
}

#[derive(Subcommand)]
enum TokenCmd {
    /// Create (or replace) a token and print it.
    Add {
        #[arg(long)]
        database: String,
        #[arg(long)]
        name: String,
        #[arg(long, value_parser = ["admin", "viewer"])]
        role: String,
    },
}

/// The admin token: `$SLOTKV_TOKEN`, else the one saved in
/// `<data>/admin.token`, else a new one saved there (mode 0600).
async fn admin_token(store: &Store, data: &Path) -> anyhow::Result<String> {
    let file = data.join("admin.token");
    let token = match std::env::var("SLOTKV_TOKEN") {
        Ok(t) if !t.trim().is_empty() => t.trim().to_string(),
        _ => match std::fs::read_to_string(&file) {
            Ok(t) if !t.trim().is_empty() => t.trim().to_string(),
            _ => {
                let t = service::new_token();
                write_private(&file, &t).with_context(|| format!("writing {}", file.display()))?;
                t
            }
        },
    };
    store
        .put_token("admin", &service::hash_token(&token), "admin", now_ms())
        .await?;
    Ok(token)
}

fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// Starts the runner, the observer and the REST and gRPC listeners.
async fn start_service(store: Store, http: &str, grpc: &str) -> anyhow::Result<App> {
    // The nodes' requirepass (and masterauth): from the environment, so it
    // shows in no process list and no API answer.
    let password = std::env::var("SLOTKV_NODE_PASSWORD")
        .ok()
        .filter(|p| !p.is_empty());
    let events = events::Events::new(store.clone());
    let app = App {
        store: store.clone(),
        events: events.clone(),
        observed: Default::default(),
        wake: Arc::new(tokio::sync::Notify::new()),
        password: password.clone(),
    };
    let owner = format!(
        "{}-{}",
        std::process::id(),
        hex::encode(rand::random::<[u8; 4]>())
    );
    let runner = jobs::Runner {
        ctx: jobs::Ctx {
            store: store.clone(),
            events: events.clone(),
            password: password.clone(),
        },
        owner,
        wake: app.wake.clone(),
    };
    // Bind both ports before starting anything, so a port in use fails
    // the start cleanly.
    let listener = tokio::net::TcpListener::bind(http)
        .await
        .with_context(|| format!("cannot listen on {http}"))?;
    let grpc_listener = tokio::net::TcpListener::bind(grpc)
        .await
        .with_context(|| format!("cannot listen on {grpc}"))?;
    tokio::spawn(runner.run());
    tokio::spawn(observer::run(store, events, app.observed.clone(), password));
    let router = rest::router(app.clone());
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, router).await {
            tracing::error!("HTTP server stopped: {e}");
        }
    });
    let grpc_app = app.clone();
    tokio::spawn(async move {
        if let Err(e) = grpc::serve(grpc_app, grpc_listener).await {
            tracing::error!("{e}");
        }
    });
    Ok(app)
}

/// The dashboard's address, its token in the fragment (which browsers
/// never send to a server) so the first visit logs in.
fn print_dashboard(http: &str, token: &str) {
    if web::built() {
        println!("  dashboard: http://{http}/#token={token}");
    } else {
        println!("  dashboard: not built into this binary (npm ci && npm run build in web/, then rebuild)");
    }
}

async fn shutdown_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

#[allow(clippy::too_many_arguments)]
async fn up(
    data: PathBuf,
    http: String,
    grpc: String,
    base_port: u16,
    masters: u16,
    replicas: u16,
    datanode: Option<PathBuf>,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(&data).with_context(|| format!("creating {}", data.display()))?;
    let db = data.join("controlplane.db");
    let store = Store::open(&format!("sqlite://{}", db.display()))
        .await
        .with_context(|| format!("opening {}", db.display()))?;
    let token = admin_token(&store, &data).await?;
    let count = masters * (replicas + 1);
    let ports: Vec<u16> = (0..count).map(|i| base_port + i).collect();
    let bin = launcher::datanode_bin(datanode);
    let mut nodes = launcher::start(&bin, &data, &ports).await?;
    let app = match start_service(store.clone(), &http, &grpc).await {
        Ok(a) => a,
        Err(e) => {
            nodes.stop().await;
            return Err(e);
        }
    };
    if store.cluster("local").await?.is_none() {
        let req = service::CreateCluster {
            name: "local".into(),
            nodes: ports.iter().map(|p| format!("127.0.0.1:{p}")).collect(),
            replicas: Some(replicas as u32),
            adopt: None,
        };
        let caller = Caller {
            name: "controlplane".into(),
            role: "admin".into(),
        };
        match app
            .create_cluster(req, Some("up:create:local"), &caller)
            .await
        {
            Ok(j) => println!("Creating cluster 'local': job {}", j.job.id),
            Err(e) => tracing::error!("cannot create the local cluster: {e}"),
        }
    }
    println!("slotkv control plane is up");
    print_dashboard(&http, &token);
    println!("  REST API:  http://{http}/api/v1   (Authorization: Bearer <token>)");
    println!("  gRPC:      {grpc}   (slotkv.v1.ControlPlane; health and reflection)");
    println!(
        "  nodes:     redis-cli -c -p {}   ({} datanodes on 127.0.0.1:{}-{})",
        ports[0],
        ports.len(),
        ports[0],
        ports[ports.len() - 1]
    );
    println!(
        "  token:     {token}   (saved in {})",
        data.join("admin.token").display()
    );
    println!("Press Ctrl-C to stop.");
    shutdown_signal().await;
    println!("Stopping the datanodes…");
    nodes.stop().await;
    Ok(())
}

async fn serve(database: String, http: String, grpc: String, data: PathBuf) -> anyhow::Result<()> {
    std::fs::create_dir_all(&data).with_context(|| format!("creating {}", data.display()))?;
    let store = Store::open(&database)
        .await
        .with_context(|| format!("opening {database}"))?;
    let token = admin_token(&store, &data).await?;
    start_service(store, &http, &grpc).await?;
    println!("slotkv control plane serving http://{http}/api/v1 and gRPC on {grpc}");
    print_dashboard(&http, &token);
    println!(
        "  token:     {token}   (saved in {})",
        data.join("admin.token").display()
    );
    shutdown_signal().await;
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().cmd {
        Cmd::Up {
            data,
            http,
            grpc,
            base_port,
            masters,
            replicas,
            datanode,
        } => up(data, http, grpc, base_port, masters, replicas, datanode).await,
        Cmd::Serve {
            database,
            http,
            grpc,
            data,
        } => serve(database, http, grpc, data).await,
        Cmd::Token {
            cmd:
                TokenCmd::Add {
                    database,
                    name,
                    role,
                },
        } => {
            let store = Store::open(&database).await?;
            let t = service::new_token();
            store
                .put_token(&name, &service::hash_token(&t), &role, now_ms())
                .await?;
            println!("{t}");
            Ok(())
        }
    }
}
