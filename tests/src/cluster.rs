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
    redis_cli_within(args, Duration::from_secs(120))
}

/// [`redis_cli`] with its own time limit. Output is drained while it runs
/// (a reshard prints a line per slot, more than a pipe holds).
pub fn redis_cli_within(args: &[&str], limit: Duration) -> (bool, String) {
    let mut child = Command::new("redis-cli")
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn redis-cli");
    let drain = |r: Option<Box<dyn std::io::Read + Send>>| {
        std::thread::spawn(move || {
            let mut s = Vec::new();
            if let Some(mut r) = r {
                let _ = r.read_to_end(&mut s);
            }
            s
        })
    };
    let out = drain(child.stdout.take().map(|r| Box::new(r) as _));
    let err = drain(child.stderr.take().map(|r| Box::new(r) as _));
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Ok(Some(st)) = child.try_wait() {
            break st;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("redis-cli {args:?} did not finish in time");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut s = String::from_utf8_lossy(&out.join().unwrap_or_default()).into_owned();
    s.push_str(&String::from_utf8_lossy(&err.join().unwrap_or_default()));
    (status.success(), s)
}

/// The hash slot of a key (CRC16/XMODEM of the key or its `{tag}`).
pub fn key_slot(key: &[u8]) -> u16 {
    let k = match key.iter().position(|&b| b == b'{') {
        Some(open) => match key[open + 1..].iter().position(|&b| b == b'}') {
            Some(0) | None => key,
            Some(len) => &key[open + 1..open + 1 + len],
        },
        None => key,
    };
    let mut crc: u16 = 0;
    for &b in k {
        crc ^= (b as u16) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc & 16383
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

    /// The port of the master that owns each slot, as node `i` sees it
    /// (0 for an unassigned slot).
    pub fn slot_ports(&self, i: usize) -> Vec<u16> {
        let mut owner = vec![0u16; 16384];
        for line in self.nodes_of(i) {
            let f: Vec<&str> = line.split(' ').collect();
            if f.len() < 9 || !f[2].contains("master") {
                continue;
            }
            let port: u16 = f[1]
                .split(['@', ','])
                .next()
                .and_then(|a| a.rsplit(':').next())
                .and_then(|p| p.parse().ok())
                .unwrap_or(0);
            for r in &f[8..] {
                if r.starts_with('[') {
                    continue;
                }
                let (lo, hi) = match r.split_once('-') {
                    Some((a, b)) => (a.parse().unwrap_or(0), b.parse().unwrap_or(0)),
                    None => {
                        let x: usize = r.parse().unwrap_or(0);
                        (x, x)
                    }
                };
                if lo <= hi {
                    owner[lo..=hi.min(16383)].fill(port);
                }
            }
        }
        owner
    }

    /// Writes `n` string keys `{prefix}:{i}` = `i` through their owners,
    /// pipelined; returns the keys.
    pub fn fill(&self, prefix: &str, n: usize) -> Vec<String> {
        let owner = self.slot_ports(0);
        let keys: Vec<String> = (0..n).map(|i| format!("{prefix}:{i}")).collect();
        let mut by_port: std::collections::BTreeMap<u16, Vec<usize>> = Default::default();
        for (i, k) in keys.iter().enumerate() {
            by_port
                .entry(owner[key_slot(k.as_bytes()) as usize])
                .or_default()
                .push(i);
        }
        for (port, idx) in by_port {
            let mut c = crate::resp::Conn::connect(port).expect("connect to a master");
            for chunk in idx.chunks(1000) {
                let mut buf = Vec::new();
                for &i in chunk {
                    buf.extend(crate::resp::encode(&[
                        "SET",
                        keys[i].as_str(),
                        &i.to_string(),
                    ]));
                }
                c.send_raw(&buf).expect("send");
                for _ in chunk {
                    let r = c.read_reply().expect("reply");
                    assert_eq!(r.raw, b"+OK\r\n", "SET through port {port}");
                }
            }
        }
        keys
    }

    /// Keys in all masters together.
    pub fn total_keys(&self) -> u64 {
        (0..self.nodes.len())
            .filter(|&i| {
                self.info_field(i, &["INFO", "replication"], "role")
                    .as_deref()
                    == Some("master")
            })
            .map(|i| {
                let mut c = self.nodes[i].conn();
                c.text(&["DBSIZE"])
                    .trim_start_matches(':')
                    .trim()
                    .parse::<u64>()
                    .unwrap_or(0)
            })
            .sum()
    }

    /// `redis-cli --cluster check` through node `i` finds nothing wrong.
    pub fn assert_clean(&self, i: usize) {
        let addr = format!("127.0.0.1:{}", self.nodes[i].port);
        let (ok, out) = redis_cli(&["--cluster", "check", &addr]);
        assert!(ok, "check failed:\n{out}");
        assert!(
            out.contains("[OK] All nodes agree about slots configuration.")
                && out.contains("[OK] All 16384 slots covered.")
                && !out.contains("[WARNING]")
                && !out.contains("[ERR]"),
            "{out}"
        );
    }

    pub fn myid(&self, i: usize) -> String {
        let mut c = self.nodes[i].conn();
        match c.cmd(&["CLUSTER", "MYID"]).expect("myid").tree {
            crate::resp::Reply::Scalar(b'$', b) => String::from_utf8_lossy(&b).into_owned(),
            other => panic!("CLUSTER MYID: {other:?}"),
        }
    }
}

/// The consistency checker (the `consistency-check` binary at `bin`)
/// against `port`, running for `secs`; killed on drop.
pub struct Checker(Option<std::process::Child>);

impl Checker {
    pub fn start(bin: &str, port: u16, secs: u64, fail_on_lost: bool) -> Checker {
        let mut cmd = Command::new(bin);
        cmd.args([
            "--port",
            &port.to_string(),
            "--seconds",
            &secs.to_string(),
            "--keys",
            "200",
        ]);
        if fail_on_lost {
            cmd.arg("--fail-on-lost");
        }
        let child = cmd
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start the checker");
        Checker(Some(child))
    }

    /// Waits for it to finish: (exit ok, last report numbers, output).
    pub fn finish(mut self) -> (bool, Vec<u64>, String) {
        let mut child = self.0.take().expect("running");
        let deadline = Instant::now() + Duration::from_secs(120);
        while child.try_wait().ok().flatten().is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("the checker did not finish");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let out = child.wait_with_output().expect("checker output");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let last = text.lines().last().unwrap_or("").to_string();
        let nums: Vec<u64> = last
            .split(|ch: char| !ch.is_ascii_digit())
            .filter_map(|w| w.parse().ok())
            .collect();
        (out.status.success(), nums, text)
    }
}

impl Drop for Checker {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
