//! Cluster fixtures: start several nodes with cluster-enabled, join them
//! with the real `redis-cli --cluster create`, wait for conditions.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::process::{Node, Server};

/// Polls `cond` until it holds or `limit` passes; panics with `what`.
pub fn wait_until(limit: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if cond() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("timed out after {limit:?} waiting for: {what}");
}

/// Runs redis-cli with `args` (bounded in time); returns stdout+stderr
/// and whether it exited with 0.
pub fn redis_cli(args: &[&str]) -> (bool, String) {
    let mut child = Command::new("redis-cli")
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn redis-cli");
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Ok(Some(_)) = child.try_wait() {
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("redis-cli {args:?} did not finish in time");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().expect("redis-cli output");
    let mut s = String::from_utf8_lossy(&out.stdout).into_owned();
    s.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.success(), s)
}

/// A group of cluster-enabled nodes (killed on drop).
pub struct Cluster {
    pub nodes: Vec<Node>,
}

impl Cluster {
    /// Starts one node per entry of `kinds` with the tutorial's minimal
    /// cluster config plus `extra` directives.
    pub fn start(kinds: &[Server], timeout_ms: u64, extra: &[&str]) -> Cluster {
        let t = timeout_ms.to_string();
        let mut args = vec![
            "--cluster-enabled",
            "yes",
            "--cluster-config-file",
            "nodes.conf",
            "--cluster-node-timeout",
            &t,
            "--appendonly",
            "yes",
        ];
        args.extend_from_slice(extra);
        let nodes = kinds.iter().map(|k| Node::start(*k, &args)).collect();
        Cluster { nodes }
    }

    pub fn addrs(&self) -> Vec<String> {
        self.nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect()
    }

    /// `redis-cli --cluster create … --cluster-replicas r --cluster-yes`;
    /// returns its output after checking it succeeded.
    pub fn create(&self, replicas: usize) -> String {
        let addrs = self.addrs();
        let r = replicas.to_string();
        let mut args: Vec<&str> = vec!["--cluster", "create"];
        args.extend(addrs.iter().map(|s| s.as_str()));
        args.extend(["--cluster-replicas", &r, "--cluster-yes"]);
        let (ok, out) = redis_cli(&args);
        assert!(ok, "cluster create failed:\n{out}");
        out
    }

    pub fn cli(&self, i: usize, args: &[&str]) -> String {
        let p = self.nodes[i].port.to_string();
        let mut all = vec!["-p", p.as_str()];
        all.extend_from_slice(args);
        redis_cli(&all).1
    }

    pub fn info_field(&self, i: usize, cmd: &[&str], field: &str) -> Option<String> {
        let mut c = crate::resp::Conn::connect(self.nodes[i].port).ok()?;
        let r = c.cmd(cmd).ok()?;
        let text = String::from_utf8_lossy(&r.raw).into_owned();
        text.split("\r\n").find_map(|l| {
            l.strip_prefix(field)
                .and_then(|v| v.strip_prefix(':'))
                .map(|v| v.to_string())
        })
    }

    pub fn state(&self, i: usize) -> Option<String> {
        self.info_field(i, &["CLUSTER", "INFO"], "cluster_state")
    }

    /// Waits until every node reports `cluster_state:ok`.
    pub fn wait_ok(&self, limit: Duration) {
        wait_until(limit, "cluster_state:ok on every node", || {
            (0..self.nodes.len()).all(|i| self.state(i).as_deref() == Some("ok"))
        });
    }

    /// CLUSTER NODES of node `i`, as lines.
    pub fn nodes_of(&self, i: usize) -> Vec<String> {
        let Ok(mut c) = crate::resp::Conn::connect(self.nodes[i].port) else {
            return Vec::new();
        };
        let Ok(r) = c.cmd(&["CLUSTER", "NODES"]) else {
            return Vec::new();
        };
        match r.tree {
            crate::resp::Reply::Scalar(b'$', b) => String::from_utf8_lossy(&b)
                .lines()
                .map(|l| l.to_string())
                .collect(),
            _ => Vec::new(),
        }
    }

    /// Each node's view of slot ownership as redis-cli's convergence test
    /// builds it: `id:slots` per master line, sorted.
    pub fn signature(&self, i: usize) -> String {
        let mut lines: Vec<String> = self
            .nodes_of(i)
            .iter()
            .filter_map(|l| {
                let f: Vec<&str> = l.split(' ').collect();
                if f.len() < 9 {
                    return None;
                }
                let mut slots: Vec<&str> = f[8..]
                    .iter()
                    .filter(|s| !s.starts_with('['))
                    .copied()
                    .collect();
                slots.sort();
                Some(format!("{}:{}", f[0], slots.join(",")))
            })
            .collect();
        lines.sort();
        lines.join("|")
    }

    pub fn myid(&self, i: usize) -> String {
        let mut c = self.nodes[i].conn();
        match c.cmd(&["CLUSTER", "MYID"]).expect("myid").tree {
            crate::resp::Reply::Scalar(b'$', b) => String::from_utf8_lossy(&b).into_owned(),
            other => panic!("CLUSTER MYID: {other:?}"),
        }
    }
}
