//! The listening sockets: which addresses `bind` and `port` name, the
//! tasks that accept on them, and replacing them at run time (CONFIG SET
//! port, CONFIG SET bind).

use std::sync::atomic::Ordering;
use std::sync::Arc;

use anyhow::Context as _;
use tokio::net::TcpListener;

use super::conn;
use super::shared::Shared;
use crate::config::Config;

/// The addresses `bind` names, with the port; `*` is every IPv4 address
/// and `::*` every IPv6 one, as in Redis. An empty `bind` names none: the
/// node then takes no TCP connections (CONFIG SET bind "").
fn bind_addrs(cfg: &Config) -> Vec<(String, bool)> {
    let port = cfg.port();
    cfg.bind()
        .iter()
        .map(|a| {
            let (optional, host) = match a.strip_prefix('-') {
                Some(h) => (true, h),
                None => (false, a.as_str()),
            };
            let host = match host {
                "*" => "0.0.0.0",
                "::*" => "::",
                h => h,
            };
            let addr = if host.contains(':') {
                format!("[{host}]:{port}")
            } else {
                format!("{host}:{port}")
            };
            (addr, optional)
        })
        .collect()
}

/// Binds the configured addresses. A `-` before an address makes it
/// optional (it may be unavailable, like `-::1` on hosts without IPv6).
pub async fn bind(cfg: &Config) -> anyhow::Result<Vec<TcpListener>> {
    let mut out = Vec::new();
    for (addr, optional) in bind_addrs(cfg) {
        match TcpListener::bind(&addr).await {
            Ok(l) => out.push(l),
            Err(e) if optional => tracing::warn!("could not bind {addr}: {e}"),
            Err(e) => {
                return Err(e).with_context(|| {
                    format!("Could not create server TCP listening socket {addr}")
                })
            }
        }
    }
    if out.is_empty() {
        // As redis-server: a node nobody can reach is a configuration error.
        anyhow::bail!("Configured to not listen anywhere, exiting.");
    }
    Ok(out)
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
                            tokio::spawn(conn::serve(srv, sock, addr));
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
    for (addr, optional) in bind_addrs(cfg) {
        let l = match std::net::TcpListener::bind(&addr) {
            Ok(l) => l,
            Err(_) if optional => continue,
            Err(e) => return Err(e),
        };
        l.set_nonblocking(true)?;
        listeners.push(TcpListener::from_std(l)?);
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
