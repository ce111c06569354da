//! Starting and stopping server processes.

use std::collections::HashSet;
use std::io::Read;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::resp::Conn;

/// A free TCP port on 127.0.0.1 whose bus port (+10000) is free too.
///
/// Both are taken from 10000–32000, below Linux's ephemeral range, so an
/// outgoing connection cannot grab a port between this check and the
/// server binding it; and no port is handed out twice in one test process,
/// so tests running in parallel do not race for the same one.
pub fn free_port() -> u16 {
    free_ports(1)
}

/// `n` consecutive free ports on 127.0.0.1 (bus ports +10000 free too);
/// returns the first. For programs that number their nodes from a base
/// port (`controlplane up --base-port`).
pub fn free_ports(n: u16) -> u16 {
    static TAKEN: Mutex<Option<(HashSet<u16>, u64)>> = Mutex::new(None);
    let mut guard = TAKEN.lock().unwrap_or_else(|e| e.into_inner());
    let (taken, seed) = guard.get_or_insert_with(|| {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1);
        (HashSet::new(), t ^ ((std::process::id() as u64) << 32) | 1)
    });
    'pick: for _ in 0..10_000 {
        // xorshift64: no dependency needed for picking ports.
        *seed ^= *seed << 13;
        *seed ^= *seed >> 7;
        *seed ^= *seed << 17;
        // Above 16383 so a port never reads as a slot number in a
        // transcript that renames ports; bus ports stay below the
        // kernel's ephemeral range (32768+).
        let first = 16_384 + (*seed % (6_384 - n as u64)) as u16;
        for p in first..first + n {
            let bus = p + 10_000;
            if taken.contains(&p)
                || taken.contains(&bus)
                || TcpListener::bind(("127.0.0.1", p)).is_err()
                || TcpListener::bind(("127.0.0.1", bus)).is_err()
            {
                continue 'pick;
            }
        }
        for p in first..first + n {
            taken.insert(p);
            taken.insert(p + 10_000);
        }
        return first;
    }
    panic!("no {n} free ports in a row in 10000-32000");
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

/// A workspace binary, built once per test process (`cargo test -p
/// slotkv-tests` alone does not rebuild another package's binary), unless
/// `$env_var` names one. `--workspace` resolves features as `cargo build
/// --workspace --bins` does, so the binary test.sh built is already fresh;
/// `-p` alone would rebuild the package and its dependencies with other
/// features, a second copy in target/.
fn workspace_bin(package: &str, env_var: &str) -> PathBuf {
    if let Ok(p) = std::env::var(env_var) {
        return PathBuf::from(p);
    }
    let target = target_dir();
    let st = Command::new(env!("CARGO"))
        .args(["build", "--workspace", "--bin", package])
        .current_dir(workspace_root())
        .status()
        .expect("run cargo build");
    assert!(st.success(), "building {package} failed");
    target.join("debug").join(package)
}

fn target_dir() -> PathBuf {
    std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| workspace_root().join("target"))
}

/// When a test is failing (its thread panics), copies the logs and
/// nodes.conf files under `dir` to `target/test-artifacts/<test>/<label>/`
/// before the temporary directory goes, so a flaky failure on CI can be
/// read afterwards.
pub fn keep_logs_if_failing(dir: &Path, label: &str) {
    if !std::thread::panicking() {
        return;
    }
    let test = std::thread::current()
        .name()
        .unwrap_or("unnamed")
        .replace("::", "-");
    let out = target_dir().join("test-artifacts").join(test).join(label);
    copy_logs(dir, &out, 0);
    eprintln!("logs kept in {}", out.display());
}

fn copy_logs(from: &Path, to: &Path, depth: usize) {
    let Ok(entries) = std::fs::read_dir(from) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        let name = e.file_name().to_string_lossy().into_owned();
        if p.is_dir() && depth < 3 {
            copy_logs(&p, &to.join(&name), depth + 1);
        } else if name.ends_with(".log") || name.ends_with(".conf") {
            let _ = std::fs::create_dir_all(to);
            let _ = std::fs::copy(&p, to.join(&name));
        }
    }
}

/// The datanode binary: `$SLOTKV_DATANODE`, or the workspace's debug build.
pub fn datanode_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| workspace_bin("datanode", "SLOTKV_DATANODE"))
        .clone()
}

/// The controlplane binary: `$SLOTKV_CONTROLPLANE`, or the workspace's
/// debug build.
pub fn controlplane_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| workspace_bin("controlplane", "SLOTKV_CONTROLPLANE"))
        .clone()
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Server {
    Redis,
    Datanode,
}

impl Server {
    pub fn binary(self) -> PathBuf {
        match self {
            Server::Redis => PathBuf::from("redis-server"),
            Server::Datanode => datanode_bin(),
        }
    }
}

/// A running server process in its own temporary directory; killed on drop.
/// Arguments for a server that writes nothing to disk (no RDB schedule,
/// no AOF) and takes DEBUG: the set-up of tests that look at replies only.
pub const NO_DISK_DEBUG: &[&str] = &[
    "--save",
    "",
    "--appendonly",
    "no",
    "--enable-debug-command",
    "yes",
];

pub struct Node {
    pub kind: Server,
    pub port: u16,
    pub dir: tempfile::TempDir,
    child: Option<Child>,
    args: Vec<String>,
    /// A config file given as the first argument, as `redis-server FILE`.
    config: Option<String>,
    /// Environment variables the server starts with, beside ours.
    env: Vec<(String, String)>,
    /// Run in the child between fork and exec (a mount namespace, for one).
    pre_exec: Option<PreExec>,
}

/// A step run in a server's process before it execs; see
/// [`Node::start_with_pre_exec`].
pub type PreExec = std::sync::Arc<dyn Fn() -> std::io::Result<()> + Send + Sync>;

impl Node {
    /// Starts a server with `args` (redis.conf-style `--name value`), on a
    /// free port, and waits until it answers PING.
    pub fn start(kind: Server, args: &[&str]) -> Node {
        Self::start_with_config(kind, None, args)
    }

    /// Like [`Node::start`], with a config file as the first argument.
    pub fn start_with_config(kind: Server, config: Option<&Path>, args: &[&str]) -> Node {
        Self::start_full(kind, config, &[], args)
    }

    /// Like [`Node::start`], with environment variables set for the
    /// server (a fault-injecting LD_PRELOAD, for one).
    pub fn start_with_env(kind: Server, env: &[(&str, &str)], args: &[&str]) -> Node {
        Self::start_full(kind, None, env, args)
    }

    /// Like [`Node::start`], with `step` run in the server's process
    /// before it execs. It must only make system calls: it runs in a
    /// forked child of a threaded process.
    pub fn start_with_pre_exec(kind: Server, step: PreExec, args: &[&str]) -> Node {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut n = Self::unstarted(kind, dir, None, &[], args);
        n.pre_exec = Some(step);
        n.spawn();
        n
    }

    fn start_full(
        kind: Server,
        config: Option<&Path>,
        env: &[(&str, &str)],
        args: &[&str],
    ) -> Node {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut n = Self::unstarted(kind, dir, config, env, args);
        n.spawn();
        n
    }

    fn unstarted(
        kind: Server,
        dir: tempfile::TempDir,
        config: Option<&Path>,
        env: &[(&str, &str)],
        args: &[&str],
    ) -> Node {
        Node {
            kind,
            port: free_port(),
            dir,
            child: None,
            args: args.iter().map(|s| s.to_string()).collect(),
            config: config.map(|p| p.display().to_string()),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            pre_exec: None,
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    fn spawn(&mut self) {
        self.spawn_only();
        self.wait_ready();
    }

    fn spawn_only(&mut self) {
        let bin = self.kind.binary();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("server.log"))
            .expect("log file");
        let port = self.port.to_string();
        let dir = self.dir.path().display().to_string();
        let mut cmd = Command::new(bin);
        if let Some(c) = &self.config {
            cmd.arg(c);
        }
        cmd.args(["--port", &port, "--bind", "127.0.0.1", "--dir", &dir])
            .args(&self.args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log);
        if let Some(step) = self.pre_exec.clone() {
            use std::os::unix::process::CommandExt;
            // SAFETY: the step makes system calls only (see start_with_pre_exec).
            unsafe {
                cmd.pre_exec(move || step());
            }
        }
        self.child = Some(cmd.spawn().expect("spawn server"));
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Some(c) = &mut self.child {
                if let Ok(Some(st)) = c.try_wait() {
                    panic!("{:?} exited early ({st}); log:\n{}", self.kind, self.log());
                }
            }
            if let Ok(mut c) = Conn::connect(self.port) {
                if let Ok(r) = c.cmd(&["PING"]) {
                    // LOADING replies mean not yet; NOAUTH means up.
                    if r.raw == b"+PONG\r\n" || r.raw.starts_with(b"-NOAUTH") {
                        return;
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!(
            "{:?} did not answer PING in time; log:\n{}",
            self.kind,
            self.log()
        );
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    pub fn conn(&self) -> Conn {
        Conn::connect(self.port).expect("connect")
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    /// Sends a signal (`-TERM`, …) to the process.
    pub fn signal(&self, sig: &str) {
        if let Some(c) = &self.child {
            let _ = Command::new("kill")
                .args([sig, &c.id().to_string()])
                .status();
        }
    }

    /// Sends a signal and waits (bounded) for the process to exit.
    pub fn signal_and_wait(&mut self, sig: &str) {
        self.signal(sig);
        self.wait_exit();
    }

    /// Starts the process again with the same port, directory and args.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "stop the node before restarting it");
        self.spawn();
    }

    /// Like [`Node::restart`], returning once the process runs, without
    /// waiting for it to answer (to watch it while it loads).
    pub fn restart_no_wait(&mut self) {
        assert!(self.child.is_none(), "stop the node before restarting it");
        self.spawn_only();
    }

    /// Waits (bounded) for the process to exit, e.g. after SHUTDOWN.
    pub fn wait_exit(&mut self) {
        self.wait_exit_status();
    }

    /// [`Node::wait_exit`], returning how the process ended (`None` if
    /// it was not running).
    pub fn wait_exit_status(&mut self) -> Option<std::process::ExitStatus> {
        let mut c = self.child.take()?;
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = c.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = c.kill();
        let _ = c.wait();
        panic!("server did not exit in time");
    }

    /// Starts this node's binary on its directory with `args` (while the
    /// node itself is stopped) and reports whether it exits at start-up
    /// rather than answering PING; stops it again either way.
    pub fn refuses_to_start_here(&self, args: &[&str]) -> bool {
        let port = free_port();
        let mut child = Command::new(self.kind.binary())
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .arg("--dir")
            .arg(self.dir.path())
            .args(args)
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn");
        let deadline = Instant::now() + Duration::from_secs(20);
        let refused = loop {
            if let Ok(Some(_)) = child.try_wait() {
                break true;
            }
            if let Ok(mut c) = Conn::connect(port) {
                if matches!(c.cmd(&["PING"]), Ok(r) if r.raw == b"+PONG\r\n") {
                    break false;
                }
            }
            assert!(
                Instant::now() < deadline,
                "server neither came up nor exited"
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        let _ = child.kill();
        let _ = child.wait();
        refused
    }

    /// Starts this node's binary on its directory with `args`, expecting
    /// it to refuse to start; returns (exit code, output).
    pub fn start_expect_failure_here(&self, args: &[&str]) -> (i32, String) {
        let port = free_port().to_string();
        let dir = self.dir.path().display().to_string();
        let mut all = vec!["--port", &port, "--dir", &dir];
        all.extend_from_slice(args);
        start_expect_failure(self.kind, &all, self.dir.path())
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        keep_logs_if_failing(self.dir.path(), &format!("node-{}", self.port));
        // A panic inside datanode is a bug even when the test's checks
        // passed: a panicking task (a connection, the cron) dies alone and
        // the server goes on without it, so only its log tells.
        if matches!(self.kind, Server::Datanode) && !std::thread::panicking() {
            let log = self.log();
            if let Some(at) = log.find("panicked at") {
                let from = log[..at].rfind('\n').map_or(0, |i| i + 1);
                let excerpt: String = log[from..].lines().take(8).collect::<Vec<_>>().join("\n");
                panic!("datanode on port {} panicked:\n{excerpt}", self.port);
            }
        }
    }
}

/// Runs a server binary expecting it to fail at start-up; returns its
/// exit code and combined output.
pub fn start_expect_failure(kind: Server, args: &[&str], cwd: &Path) -> (i32, String) {
    let mut child = Command::new(kind.binary())
        .args(args)
        .current_dir(cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(Some(st)) = child.try_wait() {
            let mut out = String::new();
            if let Some(mut o) = child.stdout.take() {
                let _ = o.read_to_string(&mut out);
            }
            if let Some(mut e) = child.stderr.take() {
                let _ = e.read_to_string(&mut out);
            }
            return (st.code().unwrap_or(-1), out);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("server kept running; expected a start-up failure");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
