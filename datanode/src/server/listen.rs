//! The listening sockets: which addresses `bind` and `port` name, the
//! tasks that accept on them, replacing them at run time (CONFIG SET
//! port, CONFIG SET bind), and the `unixsocket` listener.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use anyhow::Context as _;
use tokio::net::{TcpListener, UnixListener};

use super::client::Addr;
use super::conn;
use super::shared::Shared;
use crate::config::Config;
use crate::net::Stream;

/// Binds the configured addresses. A `-` before an address makes it
/// optional (it may be unavailable, like `-::1` on hosts without IPv6).
pub async fn bind(cfg: &Config) -> anyhow::Result<Vec<TcpListener>> {
    let mut out = Vec::new();
    for (addr, optional) in cfg.bind_addrs(cfg.port()) {
        match crate::net::listen_tcp(
            &addr,
            cfg.int("tcp-backlog") as i32,
            cfg.int("socket-mark-id") as u32,
        ) {
            Ok(l) => out.push(l),
            Err(e) if optional => tracing::warn!("could not bind {addr}: {e}"),
            Err(e) => {
                return Err(e).with_context(|| {
                    format!("Could not create server TCP listening socket {addr}")
                })
            }
        }
    }
    if out.is_empty() && cfg.value("unixsocket").is_empty() {
        // As redis-server: a node nobody can reach is a configuration error.
        anyhow::bail!("Configured to not listen anywhere, exiting.");
    }
    Ok(out)
}

/// Listens on the `unixsocket` path, if one is set: a file left there by
/// an earlier run is removed first, and `unixsocketperm` (when not 0)
/// becomes the socket's mode, as in Redis.
pub fn bind_unix(cfg: &Config) -> anyhow::Result<Option<UnixListener>> {
    let path = cfg.value("unixsocket").to_string();
    if path.is_empty() {
        return Ok(None);
    }
    let fail = |e: String| anyhow::anyhow!("Failed opening Unix socket: {e}");
    // sockaddr_un's sun_path holds 108 bytes with the terminating NUL.
    if path.len() > 107 {
        return Err(fail(format!(
            "unix socket path too long ({}), must be under 108",
            path.len()
        )));
    }
    let _ = std::fs::remove_file(&path);
    let l = UnixListener::bind(&path).map_err(|e| fail(format!("bind: {e}")))?;
    let perm = cfg.unixsocketperm();
    if perm != 0 {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(perm))
            .map_err(|e| fail(format!("chmod: {e}")))?;
    }
    Ok(Some(l))
}

/// Accepts clients on the unix socket until the server shuts down
/// ([`close_unix`]); CONFIG SET bind and port leave it alone.
pub fn serve_unix(srv: &Arc<Shared>, l: UnixListener) {
    let path: Arc<str> = srv.config.read().value("unixsocket").into();
    let srv2 = srv.clone();
    let task = tokio::spawn(async move {
        loop {
            match l.accept().await {
                Ok((sock, _)) => {
                    let addr = Addr::Unix(path.clone());
                    tokio::spawn(conn::serve(srv2.clone(), Stream::Unix(sock), addr));
                }
                Err(e) => {
                    tracing::warn!("accept failed on the unix socket: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                }
            }
        }
    });
    *srv.unix_listener.lock() = Some(task.abort_handle());
}

/// Stops accepting on the unix socket and removes its file (shutdown).
pub fn close_unix(srv: &Shared) {
    if let Some(task) = srv.unix_listener.lock().take() {
        task.abort();
        let path = srv.config.read().value("unixsocket").to_string();
        tracing::info!("Removing the unix socket file.");
        if let Err(e) = std::fs::remove_file(&path) {
            tracing::warn!("Error removing the unix socket file: {e}");
        }
    }
}

/// Accepts clients on `listeners` until CONFIG SET port replaces them
/// (the listen generation changes).
pub fn serve_listeners(srv: &Arc<Shared>, listeners: Vec<TcpListener>) {
    srv.listen_gen.send_modify(|g| *g += 1);
    let mine = *srv.listen_gen.borrow();
    for l in listeners {
        let srv = srv.clone();
        let mut gen_rx = srv.listen_gen.subscribe();
        srv.listening.fetch_add(1, Ordering::SeqCst);
        tokio::spawn(async move {
            // Counted closed once the socket is dropped, at the task's end.
            struct Open(Arc<Shared>, TcpListener);
            impl Drop for Open {
                fn drop(&mut self) {
                    self.0.listening.fetch_sub(1, Ordering::SeqCst);
                }
            }
            let open = Open(srv, l);
            let (srv, l) = (&open.0, &open.1);
            loop {
                tokio::select! {
                    r = l.accept() => match r {
                        Ok((sock, addr)) => {
                            let srv = srv.clone();
                            tokio::spawn(conn::serve(srv, Stream::Tcp(sock), Addr::Tcp(addr)));
                        }
                        Err(e) => {
                            tracing::warn!("accept failed: {e}");
                            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                        }
                    },
                    changed = gen_rx.changed() => {
                        // A newer set of listeners took over: close ours.
                        if changed.is_err() || *gen_rx.borrow() != mine {
                            return;
                        }
                    }
                }
            }
        });
    }
}

/// Binds the configured addresses now (a `-` address may fail).
fn bind_now(cfg: &Config) -> std::io::Result<Vec<TcpListener>> {
    let mut listeners = Vec::new();
    for (addr, optional) in cfg.bind_addrs(cfg.port()) {
        match crate::net::listen_tcp(
            &addr,
            cfg.int("tcp-backlog") as i32,
            cfg.int("socket-mark-id") as u32,
        ) {
            Ok(l) => listeners.push(l),
            Err(_) if optional => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(listeners)
}

/// Records and returns the port the listeners took (port 0 lets the
/// kernel choose one); 0 when there are none.
pub fn record_port(srv: &Shared, listeners: &[TcpListener]) -> u16 {
    let port = listeners
        .first()
        .and_then(|l| l.local_addr().ok())
        .map(|a| a.port())
        .unwrap_or(0);
    srv.actual_port.store(port as u64, Ordering::Relaxed);
    port
}

fn serve_and_record_port(srv: &Arc<Shared>, listeners: Vec<TcpListener>) {
    record_port(srv, &listeners);
    serve_listeners(srv, listeners);
}

/// CONFIG SET port: listens on the new port first and only then closes
/// the old listeners, so a port in use fails without losing the old one.
pub fn rebind(srv: &Arc<Shared>) -> std::io::Result<()> {
    let cfg = srv.config.read().clone();
    let listeners = bind_now(&cfg)?;
    serve_and_record_port(srv, listeners);
    Ok(())
}

/// CONFIG SET bind: the new addresses may be the old ones on the same
/// port, so, as Redis does, the old listeners close first; when the new
/// ones cannot all be bound, the caller restores the old configuration
/// and calls this again to listen where it did before.
pub async fn rebind_addresses(srv: &Arc<Shared>) -> std::io::Result<()> {
    close_all(srv).await;
    let cfg = srv.config.read().clone();
    let listeners = bind_now(&cfg)?;
    serve_and_record_port(srv, listeners);
    Ok(())
}

/// Closes every listener and waits (at most a second) until their
/// sockets are released.
pub async fn close_all(srv: &Shared) {
    srv.listen_gen.send_modify(|g| *g += 1);
    for _ in 0..1000 {
        if srv.listening.load(Ordering::SeqCst) == 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    }
}
