//! Local datanode processes for `controlplane up`: one child per port,
//! its data in its own directory, stopped cleanly with the control plane.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::process::{Child, Command};

pub struct Launched {
    pub children: Vec<(u16, Child)>,
}

/// The datanode binary: `--datanode`, else `$DATANODE_BIN`, else the one
/// built beside this binary.
pub fn datanode_bin(given: Option<PathBuf>) -> PathBuf {
    if let Some(p) = given {
        return p;
    }
    if let Ok(p) = std::env::var("DATANODE_BIN") {
        return PathBuf::from(p);
    }
    std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(|d| d.join("datanode")))
        .unwrap_or_else(|| PathBuf::from("datanode"))
}

async fn answers(port: u16) -> bool {
    let addr = format!("127.0.0.1:{port}");
    match crate::nodes::Node::connect(&addr, None).await {
        Ok(mut n) => n.cmd::<String>(&["PING"]).await.is_ok(),
        Err(_) => false,
    }
}

/// Starts a datanode on each port (cluster mode, AOF on) and waits until
/// each answers PING.
pub async fn start(bin: &Path, data: &Path, ports: &[u16]) -> anyhow::Result<Launched> {
    let mut children = Vec::new();
    for &port in ports {
        // Still running from a control plane that died without stopping
        // it (kill -9): use it as it is.
        if answers(port).await {
            tracing::info!("datanode on port {port} is already running");
            continue;
        }
        let dir = data.join("nodes").join(port.to_string());
        std::fs::create_dir_all(&dir)?;
        let log = std::fs::File::create(dir.join("datanode.log"))?;
        let child = Command::new(bin)
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                "nodes.conf",
                "--cluster-node-timeout",
                "5000",
                "--appendonly",
                "yes",
                "--dir",
            ])
            .arg(&dir)
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| anyhow::anyhow!("cannot start {}: {e}", bin.display()))?;
        children.push((port, child));
    }
    let mut launched = Launched { children };
    for &port in ports {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            if answers(port).await {
                break;
            }
            if let Some((_, c)) = launched.children.iter_mut().find(|(p, _)| *p == port) {
                if let Ok(Some(status)) = c.try_wait() {
                    anyhow::bail!(
                        "datanode on port {port} exited ({status}); see {}",
                        data.join("nodes")
                            .join(port.to_string())
                            .join("datanode.log")
                            .display()
                    );
                }
            }
            if tokio::time::Instant::now() > deadline {
                launched.stop().await;
                anyhow::bail!("datanode on port {port} did not answer within 30 s");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    Ok(launched)
}

impl Launched {
    /// SIGTERM (the nodes flush their AOF and exit), then SIGKILL for any
    /// still running after 10 s.
    pub async fn stop(&mut self) {
        for (_, c) in &self.children {
            if let Some(pid) = c.id() {
                // SAFETY: a plain kill(2) on our own child's pid.
                unsafe {
                    libc::kill(pid as libc::pid_t, libc::SIGTERM);
                }
            }
        }
        for (port, c) in &mut self.children {
            if tokio::time::timeout(Duration::from_secs(10), c.wait())
                .await
                .is_err()
            {
                tracing::warn!("datanode on port {port} did not stop; killing it");
                let _ = c.kill().await;
            }
        }
    }
}
