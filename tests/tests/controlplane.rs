//! The control plane end to end: `controlplane up` starts real datanodes,
//! creates the cluster through its own job, and the REST API reports and
//! guards it.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};
use slotkv_tests::cluster::redis_cli;
use slotkv_tests::{
    controlplane_bin, datanode_bin, encode, free_port, free_ports, keep_logs_if_failing,
    wait_until, Conn,
};

/// A `controlplane up` process (or `controlplane serve` for nodes the test
/// starts itself); on drop it is stopped, and the datanodes `up` started
/// with it (even when the test failed halfway).
struct Up {
    child: Option<Child>,
    dir: tempfile::TempDir,
    http: String,
    grpc: String,
    /// `up`'s first datanode port; 0 for `serve`.
    base: u16,
    token: String,
    /// `serve`'s database URL (and the token it is given).
    serve: Option<(String, String)>,
    /// More environment for the process.
    env: Vec<(String, String)>,
}

const NODES: u16 = 6;

impl Up {
    fn start() -> Up {
        let mut up = Up::new(free_ports(NODES), None);
        up.launch();
        up
    }

    /// `controlplane serve --database url` with a given admin token.
    fn serve(url: &str, token: &str) -> Up {
        Up::serve_with(url, token, &[])
    }

    fn serve_with(url: &str, token: &str, env: &[(&str, &str)]) -> Up {
        let mut up = Up::new(0, Some((url.to_string(), token.to_string())));
        up.env = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        up.launch();
        up
    }

    fn new(base: u16, serve: Option<(String, String)>) -> Up {
        Up {
            child: None,
            dir: tempfile::tempdir().expect("tempdir"),
            http: format!("127.0.0.1:{}", free_port()),
            grpc: format!("127.0.0.1:{}", free_port()),
            base,
            token: String::new(),
            serve,
            env: Vec::new(),
        }
    }

    fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    fn launch(&mut self) {
        let mut cmd = Command::new(controlplane_bin());
        match &self.serve {
            None => {
                cmd.args(["up", "--base-port", &self.base.to_string()])
                    .arg("--datanode")
                    .arg(datanode_bin());
            }
            Some((url, token)) => {
                cmd.args(["serve", "--database", url])
                    .env("SLOTKV_TOKEN", token);
            }
        }
        let child = cmd
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .arg("--data")
            .arg(self.dir.path())
            .args(["--http", &self.http, "--grpc", &self.grpc])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(self.dir.path().join("controlplane.log"))
                    .expect("log file"),
            )
            .spawn()
            .expect("start controlplane");
        self.child = Some(child);
        let file = self.dir.path().join("admin.token");
        let given = self.serve.as_ref().map(|(_, t)| t.clone());
        wait_until(Duration::from_secs(60), "the API answers", || {
            self.token = given
                .clone()
                .unwrap_or_else(|| std::fs::read_to_string(&file).unwrap_or_default());
            !self.token.is_empty() && self.get("/health").0 == 200
        });
    }

    /// SIGTERM, and wait for the control plane to stop its datanodes.
    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &c.id().to_string()])
                .status();
            let deadline = std::time::Instant::now() + Duration::from_secs(30);
            while std::time::Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// kill -9: the control plane dies mid-work; its datanodes live on.
    fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}/api/v1{path}", self.http)
    }

    fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&str>,
        key: Option<&str>,
    ) -> (u16, Value) {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(10)))
            .build()
            .into();
        let auth = token.map(|t| format!("Bearer {t}"));
        let resp = match method {
            "GET" | "DELETE" => {
                let mut r = if method == "GET" {
                    agent.get(self.url(path))
                } else {
                    agent.delete(self.url(path))
                };
                if let Some(a) = &auth {
                    r = r.header("Authorization", a);
                }
                r.call()
            }
            _ => {
                let mut r = agent
                    .post(self.url(path))
                    .header("Content-Type", "application/json");
                if let Some(a) = &auth {
                    r = r.header("Authorization", a);
                }
                if let Some(k) = key {
                    r = r.header("Idempotency-Key", k);
                }
                r.send(body.unwrap_or(""))
            }
        };
        match resp {
            Ok(mut r) => {
                let status = r.status().as_u16();
                let text = r.body_mut().read_to_string().unwrap_or_default();
                (status, serde_json::from_str(&text).unwrap_or(Value::Null))
            }
            Err(_) => (0, Value::Null),
        }
    }

    /// GET of a path from the root (not under /api/v1), as text.
    fn get_text(&self, path: &str) -> (u16, String) {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(10)))
            .build()
            .into();
        match agent.get(format!("http://{}{path}", self.http)).call() {
            Ok(mut r) => (
                r.status().as_u16(),
                r.body_mut().read_to_string().unwrap_or_default(),
            ),
            Err(_) => (0, String::new()),
        }
    }

    fn get(&self, path: &str) -> (u16, Value) {
        self.call("GET", path, Some(&self.token.clone()), None, None)
    }

    fn post(&self, path: &str, body: &str, key: Option<&str>) -> (u16, Value) {
        self.call("POST", path, Some(&self.token.clone()), Some(body), key)
    }

    fn local(&self) -> Value {
        let (_, v) = self.get("/clusters");
        v["clusters"]
            .as_array()
            .and_then(|a| a.iter().find(|c| c["name"] == "local").cloned())
            .unwrap_or(Value::Null)
    }

    fn wait_healthy(&self) {
        wait_until(
            Duration::from_secs(90),
            "cluster 'local' ok with 3 masters and 3 replicas, no job running",
            || {
                let c = self.local();
                c["state"] == "ok"
                    && c["running_job"].is_null()
                    && c["masters"] == 3
                    && c["replicas"] == 3
                    && c["slots_covered"] == 16384
            },
        );
    }
}

impl Drop for Up {
    fn drop(&mut self) {
        self.stop();
        keep_logs_if_failing(self.dir.path(), "controlplane");
        if self.serve.is_some() {
            return;
        }
        // If the control plane died without stopping them.
        for p in self.base..self.base + NODES {
            if let Ok(mut c) = Conn::connect(p) {
                let _ = c.send_raw(&encode(&["SHUTDOWN", "NOSAVE"]));
            }
        }
    }
}

/// A raw Server-Sent Events reader (HTTP/1.1 on a plain socket).
struct Sse {
    r: std::io::BufReader<std::net::TcpStream>,
}

impl Sse {
    fn open(up: &Up, path: &str, last_id: i64) -> Sse {
        use std::io::Write;
        let mut s = std::net::TcpStream::connect(&up.http).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(20)))
            .expect("timeout");
        write!(
            s,
            "GET /api/v1{path} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\nLast-Event-ID: {last_id}\r\nAccept: text/event-stream\r\n\r\n",
            up.http, up.token
        )
        .expect("request");
        let mut r = std::io::BufReader::new(s);
        let mut status = String::new();
        std::io::BufRead::read_line(&mut r, &mut status).expect("status line");
        assert!(status.contains(" 200 "), "{status}");
        Sse { r }
    }

    /// The next event's (id, kind); panics after the read timeout.
    fn next_event(&mut self) -> (i64, String) {
        let (mut id, mut kind) = (None, None);
        loop {
            let mut line = String::new();
            let n = std::io::BufRead::read_line(&mut self.r, &mut line).expect("read");
            assert!(n > 0, "stream closed");
            let line = line.trim_end();
            if let Some(v) = line
                .strip_prefix("id: ")
                .or_else(|| line.strip_prefix("id:"))
            {
                id = v.trim().parse().ok();
            } else if let Some(v) = line
                .strip_prefix("event: ")
                .or_else(|| line.strip_prefix("event:"))
            {
                kind = Some(v.trim().to_string());
            }
            if let (Some(i), Some(k)) = (id, &kind) {
                return (i, k.clone());
            }
        }
    }
}

fn ids_first_master(up: &Up) -> String {
    let (_, t) = up.get("/clusters/local/topology");
    t["nodes"]
        .as_array()
        .and_then(|n| n.iter().find(|n| n["role"] == "master"))
        .and_then(|n| n["id"].as_str())
        .expect("a master")
        .to_string()
}

fn error_code(v: &Value) -> &str {
    v["error"]["code"].as_str().unwrap_or("")
}

fn kinds(up: &Up) -> Vec<String> {
    let (_, v) = up.get("/clusters/local/events?limit=1000");
    v["events"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|e| e["kind"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn up_creates_the_cluster_and_the_api_reports_and_guards_it() {
    let mut up = Up::start();
    up.wait_healthy();

    // The real redis-cli agrees.
    let (_, check) = redis_cli(&["--cluster", "check", &format!("127.0.0.1:{}", up.base)]);
    assert!(check.contains("[OK] All 16384 slots covered."), "{check}");
    assert!(
        !check.contains("[ERR]") && !check.contains("[WARNING]"),
        "{check}"
    );

    // Topology: six nodes, ids, roles, links, slots. A node's link is
    // what the observer's last pass (every second) reached: on a loaded
    // machine one pass may miss a node, so the next ones are waited for.
    let mut topo = Value::Null;
    wait_until(
        Duration::from_secs(30),
        "six nodes observed connected",
        || {
            let (s, t) = up.get("/clusters/local/topology");
            assert_eq!(s, 200);
            topo = t;
            topo["nodes"]
                .as_array()
                .is_some_and(|n| n.len() == 6 && n.iter().all(|n| n["link"] == "connected"))
        },
    );
    let nodes = topo["nodes"].as_array().expect("nodes").clone();
    assert_eq!(nodes.len(), 6);
    for n in &nodes {
        assert_eq!(n["id"].as_str().map(str::len), Some(40), "{n}");
        assert_eq!(n["link"], "connected", "{n}");
        match n["role"].as_str() {
            Some("master") => assert!(!n["slots"].as_array().expect("slots").is_empty()),
            Some("replica") => assert!(nodes
                .iter()
                .any(|m| m["id"] == n["master"] && m["role"] == "master")),
            r => panic!("role {r:?}"),
        }
    }
    let ids: Vec<Value> = nodes.iter().map(|n| n["id"].clone()).collect();

    // Metric samples for the charts: every node, every second.
    wait_until(Duration::from_secs(20), "samples of all six nodes", || {
        let (s, v) = up.get("/clusters/local/samples");
        let samples = v["samples"].as_array().cloned().unwrap_or_default();
        let nodes: std::collections::BTreeSet<&str> =
            samples.iter().filter_map(|x| x["node"].as_str()).collect();
        s == 200
            && nodes.len() == 6
            && samples
                .iter()
                .all(|x| x["memory_bytes"].as_i64().is_some_and(|m| m > 0))
    });
    let one = ids_first_master(&up);
    let (_, v) = up.get(&format!("/clusters/local/samples?node={one}"));
    let mine = v["samples"].as_array().expect("samples");
    assert!(!mine.is_empty() && mine.iter().all(|x| x["node"] == one.as_str()));
    let (s, v) = up.get("/clusters/local/samples?bogus=1");
    assert_eq!((s, error_code(&v)), (400, "invalid_query"));

    // No drift; metrics without a token.
    wait_until(Duration::from_secs(30), "no drift", || {
        up.get("/clusters/local/drift").1["in_sync"] == true
    });
    let (s, m) = up.get_text("/metrics");
    assert_eq!(s, 200);
    for want in [
        "slotkv_cluster_ok{cluster=\"local\"} 1",
        "slotkv_jobs{status=\"succeeded\"} 1",
        "slotkv_node_slots{",
        "slotkv_events{kind=\"job_succeeded\"} 1",
    ] {
        assert!(m.contains(want), "{want} not in\n{m}");
    }

    // The create job and its events, in order.
    let (_, jobs) = up.get("/jobs?cluster=local");
    let jobs = jobs["jobs"].as_array().expect("jobs").clone();
    assert_eq!(jobs.len(), 1);
    let (s, job) = up.get(&format!("/jobs/{}", jobs[0]["id"].as_str().expect("id")));
    assert_eq!(s, 200);
    assert_eq!(
        (job["status"].as_str(), job["progress"].as_i64()),
        (Some("succeeded"), Some(100))
    );
    assert!(job["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .all(|st| st["status"] == "done"));
    let k = kinds(&up);
    let pos = |kind: &str| {
        k.iter()
            .position(|x| x == kind)
            .unwrap_or_else(|| panic!("no {kind} in {k:?}"))
    };
    assert!(pos("cluster_created") < pos("job_started"));
    assert!(pos("job_started") < pos("job_succeeded"));
    assert!(k.iter().any(|x| x == "node_joined"));

    // Auth: none, wrong, viewer.
    let (s, v) = up.call("GET", "/clusters", None, None, None);
    assert_eq!((s, error_code(&v)), (401, "unauthorized"));
    let (s, _) = up.call("GET", "/clusters", Some("skv_wrong"), None, None);
    assert_eq!(s, 401);
    let db = format!(
        "sqlite://{}",
        up.dir.path().join("controlplane.db").display()
    );
    let out = Command::new(controlplane_bin())
        .args([
            "token",
            "add",
            "--database",
            &db,
            "--name",
            "watcher",
            "--role",
            "viewer",
        ])
        .output()
        .expect("token add");
    let viewer = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(viewer.starts_with("skv_"), "{viewer}");
    let (s, _) = up.call("GET", "/clusters/local/topology", Some(&viewer), None, None);
    assert_eq!(s, 200);
    // Who a token is: what the dashboard enables its buttons by.
    let (s, w) = up.call("GET", "/whoami", Some(&viewer), None, None);
    assert_eq!(
        (s, w["role"].as_str(), w["name"].as_str()),
        (200, Some("viewer"), Some("watcher")),
        "{w}"
    );
    let (s, w) = up.get("/whoami");
    assert_eq!((s, w["role"].as_str()), (200, Some("admin")), "{w}");
    assert_eq!(
        up.call("GET", "/whoami", Some("skv_nope"), None, None).0,
        401
    );
    // A slot: its owner (from the observed map) and its keys, counted by
    // the owner.
    {
        let key = "{slotinfo}k";
        let slot = slotkv_tests::cluster::key_slot(key.as_bytes());
        let owner = up.get(&format!("/clusters/local/slots/{slot}")).1;
        let port: u16 = owner["address"]
            .as_str()
            .and_then(|a| a.rsplit(':').next())
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("{owner}"));
        let before = owner["keys"].as_u64().expect("keys");
        Conn::connect(port).expect("conn").text(&["SET", key, "v"]);
        let after = up.get(&format!("/clusters/local/slots/{slot}")).1;
        assert_eq!(after["keys"].as_u64(), Some(before + 1), "{after}");
        assert_eq!(after["slot"].as_u64(), Some(u64::from(slot)));
        for bad in ["16384", "-1", "x"] {
            let (s, v) = up.get(&format!("/clusters/local/slots/{bad}"));
            assert_eq!((s, error_code(&v)), (400, "invalid_slot"), "{bad}: {v}");
        }
    }
    // The dashboard is served at the root, from the binary.
    let (s, page) = up.get_text("/");
    assert_eq!(s, 200, "{page}");
    assert!(page.contains("<div id=\"app\""), "{page}");
    let asset = page
        .split('"')
        .find(|p| p.starts_with("/assets/") && p.ends_with(".js"))
        .unwrap_or_else(|| panic!("no script in {page}"))
        .to_string();
    let (s, js) = up.get_text(&asset);
    assert!(s == 200 && js.len() > 1000, "{asset}: {s}");
    assert_eq!(up.get_text("/nope.js").0, 404);
    let adopt = r#"{"name": "again", "adopt": "127.0.0.1:1"}"#;
    let (s, v) = up.call("POST", "/clusters", Some(&viewer), Some(adopt), None);
    assert_eq!((s, error_code(&v)), (403, "forbidden"));

    // Bad input: a clear 4xx, nothing created.
    let cases: Vec<(&str, u16, &str)> = vec![
        ("{bad", 400, "malformed_json"),
        (r#"{"nodes": []}"#, 422, "invalid_body"),
        (r#"{"name": "x", "nodes": ["a"]}"#, 400, "invalid_address"),
        (
            r#"{"name": "bad name!", "adopt": "127.0.0.1:1"}"#,
            400,
            "invalid_name",
        ),
        (
            r#"{"name": "x", "nodes": ["127.0.0.1:1", "127.0.0.1:2"], "replicas": 1}"#,
            422,
            "impossible_plan",
        ),
        (
            r#"{"name": "x", "adopt": "127.0.0.1:1", "nodes": ["127.0.0.1:2"]}"#,
            400,
            "invalid_request",
        ),
        (
            r#"{"name": "local", "adopt": "127.0.0.1:1"}"#,
            409,
            "cluster_exists",
        ),
    ];
    for (body, status, code) in cases {
        let (s, v) = up.post("/clusters", body, None);
        assert_eq!((s, error_code(&v)), (status, code), "{body}: {v}");
        assert!(v["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()));
    }
    assert_eq!(up.get("/jobs/job-nope").0, 404);
    assert_eq!(up.get("/clusters/nope/topology").0, 404);
    assert_eq!(up.get("/nope").0, 404);
    let (_, all) = up.get("/clusters");
    assert_eq!(all["clusters"].as_array().map(Vec::len), Some(1));

    // A retried POST with the same Idempotency-Key gets the same job.
    let adopt = json!({"name": "again", "adopt": format!("127.0.0.1:{}", up.base)}).to_string();
    let (s1, j1) = up.post("/clusters", &adopt, Some("adopt-1"));
    let (s2, j2) = up.post("/clusters", &adopt, Some("adopt-1"));
    assert_eq!((s1, s2), (202, 202));
    assert_eq!(j1["id"], j2["id"]);
    let id = j1["id"].as_str().expect("id").to_string();
    wait_until(Duration::from_secs(30), "the adopt job succeeds", || {
        up.get(&format!("/jobs/{id}")).1["status"] == "succeeded"
    });
    let (_, t) = up.get("/clusters/again/topology");
    assert_eq!(t["desired"]["nodes"].as_array().map(Vec::len), Some(6));

    // The SSE stream resumes after Last-Event-ID and delivers new events
    // live: here the deletion of the cluster.
    let (_, ev) = up.get("/clusters/again/events?limit=1000");
    let last = ev["next"].as_i64().expect("next");
    let mut sse = Sse::open(&up, "/clusters/again/events/stream", last);
    let token = up.token.clone();
    assert_eq!(
        up.call("DELETE", "/clusters/again", Some(&token), None, None)
            .0,
        204
    );
    // (The observer may still be recording the adopted nodes first.)
    let mut seen = Vec::new();
    loop {
        let (id, kind) = sse.next_event();
        assert!(id > last, "{id} after {last}");
        seen.push(kind.clone());
        if kind == "cluster_deleted" {
            break;
        }
        assert!(seen.len() < 50, "{seen:?}");
    }

    // Stopped and started again on the same directory: the same cluster,
    // no second create job.
    up.stop();
    wait_until(Duration::from_secs(30), "the datanodes stop", || {
        std::net::TcpStream::connect(("127.0.0.1", up.base)).is_err()
    });
    up.launch();
    up.wait_healthy();
    let (_, topo) = up.get("/clusters/local/topology");
    let mut again: Vec<Value> = topo["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .map(|n| n["id"].clone())
        .collect();
    let mut before = ids;
    again.sort_by_key(|v| v.to_string());
    before.sort_by_key(|v| v.to_string());
    assert_eq!(again, before);
    let (_, jobs) = up.get("/jobs?cluster=local");
    assert_eq!(jobs["jobs"].as_array().map(Vec::len), Some(1));
}

/// Slots owned per master id, from the API's topology.
fn slot_counts(up: &Up) -> std::collections::BTreeMap<String, u64> {
    let (_, t) = up.get("/clusters/local/topology");
    t["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .filter(|n| n["role"] == "master")
        .map(|n| {
            let c = n["slots"]
                .as_array()
                .expect("slots")
                .iter()
                .map(|r| r[1].as_u64().unwrap_or(0) - r[0].as_u64().unwrap_or(0) + 1)
                .sum();
            (n["id"].as_str().unwrap_or("").to_string(), c)
        })
        .collect()
}

fn wait_job(up: &Up, id: &str) -> Value {
    let mut last = Value::Null;
    wait_until(Duration::from_secs(120), "the job ends", || {
        last = up.get(&format!("/jobs/{id}")).1;
        matches!(
            last["status"].as_str(),
            Some("succeeded" | "failed" | "cancelled")
        )
    });
    last
}

#[test]
fn reshard_through_the_api_loses_no_write() {
    use redis::Commands;
    let up = Up::start();
    up.wait_healthy();
    let urls = vec![format!("redis://127.0.0.1:{}/", up.base)];
    let client = redis::cluster::ClusterClient::new(urls).expect("client");
    let mut con = client.get_connection().expect("cluster connection");
    for i in 0..5000 {
        let _: () = con.set(format!("k:{i}"), i).expect("SET");
    }
    let checker = slotkv_tests::cluster::Checker::start(
        env!("CARGO_BIN_EXE_consistency-check"),
        up.base,
        12,
        true,
    );
    let before = slot_counts(&up);
    let ids: Vec<String> = before.keys().cloned().collect();
    let (a, b) = (ids[0].clone(), ids[1].clone());

    // A dry run shows the plan and starts nothing.
    let body = json!({"to": a, "slots": 300, "method": "legacy", "dry_run": true}).to_string();
    let (s, plan) = up.post("/clusters/local/reshard", &body, None);
    assert_eq!(s, 200, "{plan}");
    let moves = plan["plan"]["moves"].as_array().expect("moves");
    assert_eq!(moves.len(), 2);
    assert_eq!(plan["plan"]["slots"], 300);
    assert_eq!(
        up.get("/jobs?cluster=local").1["jobs"]
            .as_array()
            .map(Vec::len),
        Some(1)
    );

    // Legacy path (MIGRATE), and a second change refused while it runs.
    let body = json!({"to": a, "slots": 300, "method": "legacy"}).to_string();
    let (s, job) = up.post("/clusters/local/reshard", &body, Some("r-legacy"));
    assert_eq!(s, 202, "{job}");
    let legacy = job["id"].as_str().expect("id").to_string();
    let other = json!({"to": b, "slots": 10}).to_string();
    let (s, v) = up.post("/clusters/local/reshard", &other, None);
    assert_eq!((s, error_code(&v)), (409, "job_running"), "{v}");
    assert_eq!(v["error"]["job"], legacy.as_str());
    let done = wait_job(&up, &legacy);
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(done["slots_moved"], 300, "{done}");
    assert!(
        done["steps"][0]["detail"]
            .as_str()
            .unwrap_or("")
            .contains("MIGRATE"),
        "{done}"
    );
    let mut mid = Default::default();
    wait_until(
        Duration::from_secs(10),
        "the observer sees a's new slots",
        || {
            mid = slot_counts(&up);
            mid[&a] == before[&a] + 300
        },
    );

    // Atomic path between datanodes.
    let body = json!({"to": b, "slots": 1000}).to_string();
    let (s, job) = up.post("/clusters/local/reshard", &body, None);
    assert_eq!(s, 202, "{job}");
    let done = wait_job(&up, job["id"].as_str().expect("id"));
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(done["progress"], 100);
    assert_eq!(done["slots_moved"], 1000, "{done}");
    assert!(done["keys_moved"].as_i64().is_some_and(|k| k > 0), "{done}");
    assert!(
        done["steps"][0]["detail"]
            .as_str()
            .unwrap_or("")
            .contains("atomically"),
        "{done}"
    );

    let (ok, nums, text) = checker.finish();
    assert!(ok, "the checker lost writes:\n{text}");
    assert_eq!((nums[1], nums[3], nums[4]), (0, 0, 0), "{text}");
    for i in (0..5000).step_by(97) {
        let v: i64 = con.get(format!("k:{i}")).expect("GET");
        assert_eq!(v, i);
    }
    wait_until(
        Duration::from_secs(10),
        "the observer sees b's new slots",
        || {
            let after = slot_counts(&up);
            after[&b] == mid[&b] + 1000 && after.values().sum::<u64>() == 16384
        },
    );
    let (_, check) = redis_cli(&["--cluster", "check", &format!("127.0.0.1:{}", up.base)]);
    assert!(check.contains("[OK] All 16384 slots covered."), "{check}");
    assert!(
        !check.contains("[ERR]") && !check.contains("[WARNING]"),
        "{check}"
    );
    let k = kinds(&up);
    assert!(
        k.iter().filter(|x| *x == "reshard_requested").count() == 2,
        "{k:?}"
    );
    assert!(k.iter().any(|x| x == "slot_owner_changed"), "{k:?}");

    // Bad requests change nothing.
    let cases: Vec<(String, u16, &str)> = vec![
        (
            json!({"to": "f".repeat(40), "slots": 1}).to_string(),
            422,
            "impossible_plan",
        ),
        (
            json!({"to": a, "slots": 20000}).to_string(),
            422,
            "impossible_plan",
        ),
        (
            json!({"to": a, "slots": 1, "ranges": [[0, 1]]}).to_string(),
            400,
            "invalid_request",
        ),
        (
            json!({"to": a, "slots": 1, "method": "teleport"}).to_string(),
            400,
            "invalid_method",
        ),
        (
            json!({"to": a, "slots": "many"}).to_string(),
            422,
            "invalid_body",
        ),
    ];
    for (body, status, code) in cases {
        let (s, v) = up.post("/clusters/local/reshard", &body, None);
        assert_eq!((s, error_code(&v)), (status, code), "{body}: {v}");
    }
    assert_eq!(
        up.post(
            "/clusters/nope/reshard",
            &json!({"to": a, "slots": 1}).to_string(),
            None
        )
        .0,
        404
    );
    assert_eq!(
        up.get("/jobs?cluster=local").1["jobs"]
            .as_array()
            .map(Vec::len),
        Some(3)
    );
}

fn topo_nodes(up: &Up) -> Vec<Value> {
    up.get("/clusters/local/topology").1["nodes"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn node_by_addr(up: &Up, addr: &str) -> Value {
    topo_nodes(up)
        .into_iter()
        .find(|n| n["address"] == addr)
        .unwrap_or(Value::Null)
}

fn run_job(up: &Up, method: &str, path: &str, body: Option<String>) -> Value {
    let token = up.token.clone();
    let (s, job) = up.call(method, path, Some(&token), body.as_deref(), None);
    assert_eq!(s, 202, "{path}: {job}");
    let done = wait_job(up, job["id"].as_str().expect("id"));
    assert_eq!(done["status"], "succeeded", "{path}: {done}");
    done
}

#[test]
fn add_nodes_fail_over_in_three_modes_and_remove_nodes_through_the_api() {
    use redis::Commands;
    let up = Up::start();
    up.wait_healthy();
    let client =
        redis::cluster::ClusterClient::new(vec![format!("redis://127.0.0.1:{}/", up.base)])
            .expect("client");
    let mut con = client.get_connection().expect("cluster connection");
    for i in 0..2000 {
        let _: () = con.set(format!("m:{i}"), i).expect("SET");
    }
    let args = [
        "--cluster-enabled",
        "yes",
        "--cluster-config-file",
        "nodes.conf",
        "--cluster-node-timeout",
        "5000",
        "--appendonly",
        "yes",
    ];
    let extra: Vec<slotkv_tests::Node> = (0..2)
        .map(|_| slotkv_tests::Node::start(slotkv_tests::Server::Datanode, &args))
        .collect();
    let (a1, a2) = (
        format!("127.0.0.1:{}", extra[0].port),
        format!("127.0.0.1:{}", extra[1].port),
    );

    // An empty master, then a replica of it.
    run_job(
        &up,
        "POST",
        "/clusters/local/nodes",
        Some(json!({"address": a1}).to_string()),
    );
    wait_until(
        Duration::from_secs(10),
        "the new master is observed",
        || node_by_addr(&up, &a1)["role"] == "master",
    );
    let m1 = node_by_addr(&up, &a1)["id"]
        .as_str()
        .expect("id")
        .to_string();
    run_job(
        &up,
        "POST",
        "/clusters/local/nodes",
        Some(json!({"address": a2, "role": "replica", "master": m1}).to_string()),
    );
    wait_until(
        Duration::from_secs(10),
        "the new replica is observed",
        || node_by_addr(&up, &a2)["master"] == m1.as_str(),
    );
    let r1 = node_by_addr(&up, &a2)["id"]
        .as_str()
        .expect("id")
        .to_string();
    // The job ends once the replica holds its master's data: a failover
    // to it right away must not promote an empty node.
    let repl = Conn::connect(extra[1].port)
        .expect("conn")
        .text(&["INFO", "replication"]);
    assert!(
        repl.contains("master_link_status:up") && repl.contains("master_sync_in_progress:0"),
        "{repl}"
    );
    // Rebalance: a dry run first (the empty master is counted only when
    // asked), then the real one; every master ends with its share.
    let (s, p) = up.post(
        "/clusters/local/rebalance",
        &json!({"dry_run": true}).to_string(),
        None,
    );
    assert_eq!((s, p["plan"]["slots"].as_u64()), (200, Some(0)), "{p}");
    let body = json!({"use_empty_masters": true, "dry_run": true}).to_string();
    let (s, p) = up.post("/clusters/local/rebalance", &body, None);
    assert_eq!(s, 200, "{p}");
    assert_eq!(p["plan"]["slots"].as_u64(), Some(4096), "{p}");
    let (s, v) = up.post(
        "/clusters/local/rebalance",
        &json!({"weights": {"nope": 1}}).to_string(),
        None,
    );
    assert_eq!((s, error_code(&v)), (422, "impossible_plan"), "{v}");
    run_job(
        &up,
        "POST",
        "/clusters/local/rebalance",
        Some(json!({"use_empty_masters": true}).to_string()),
    );
    wait_until(
        Duration::from_secs(10),
        "every master holds 4096 slots",
        || {
            let c = slot_counts(&up);
            c.len() == 4 && c.values().all(|&n| n == 4096)
        },
    );

    // Failover in each mode: the replica ends master, the old master follows it.
    let replicas: Vec<Value> = topo_nodes(&up)
        .into_iter()
        .filter(|n| n["role"] == "replica" && n["master"] != m1.as_str())
        .collect();
    assert_eq!(replicas.len(), 3, "{replicas:?}");
    for (r, mode) in [(&replicas[0], "default"), (&replicas[1], "force")] {
        let (rid, old) = (
            r["id"].as_str().expect("id"),
            r["master"].as_str().expect("master"),
        );
        run_job(
            &up,
            "POST",
            "/clusters/local/failover",
            Some(json!({"replica": rid, "mode": mode}).to_string()),
        );
        wait_until(
            Duration::from_secs(20),
            "the observer sees the new roles",
            || {
                let t = topo_nodes(&up);
                t.iter().any(|n| n["id"] == rid && n["role"] == "master")
                    && t.iter().any(|n| n["id"] == old && n["master"] == rid)
            },
        );
    }
    run_job(
        &up,
        "POST",
        "/clusters/local/failover",
        Some(json!({"replica": r1, "mode": "takeover"}).to_string()),
    );
    wait_until(Duration::from_secs(20), "the takeover is observed", || {
        node_by_addr(&up, &a1)["master"] == r1.as_str()
    });
    wait_until(Duration::from_secs(20), "failover events recorded", || {
        kinds(&up).iter().filter(|k| *k == "failover").count() >= 3
    });

    // Bad requests.
    let cases: Vec<(&str, &str, String, u16, &str)> = vec![
        (
            "POST",
            "/clusters/local/failover",
            json!({"replica": r1}).to_string(),
            422,
            "not_a_replica",
        ),
        (
            "POST",
            "/clusters/local/failover",
            json!({"replica": m1, "mode": "gently"}).to_string(),
            400,
            "invalid_mode",
        ),
        (
            "POST",
            "/clusters/local/failover",
            json!({"replica": "f".repeat(40)}).to_string(),
            404,
            "not_found",
        ),
        (
            "POST",
            "/clusters/local/nodes",
            json!({"address": a1}).to_string(),
            409,
            "node_exists",
        ),
        (
            "POST",
            "/clusters/local/nodes",
            json!({"address": "127.0.0.1:1", "role": "replica", "master": m1}).to_string(),
            422,
            "not_a_master",
        ),
        (
            "DELETE",
            "/clusters/local/nodes/ffff",
            String::new(),
            404,
            "not_found",
        ),
        (
            "DELETE",
            &format!("/clusters/local/nodes/{r1}") as &str,
            String::new(),
            409,
            "node_has_slots",
        ),
    ]
    .into_iter()
    .map(|(m, p, b, s, c)| {
        (
            m,
            Box::leak(p.to_string().into_boxed_str()) as &str,
            b,
            s,
            c,
        )
    })
    .collect();
    let token = up.token.clone();
    for (m, p, b, status, code) in cases {
        let (s, v) = up.call(
            m,
            p,
            Some(&token),
            (m == "POST").then_some(b.as_str()),
            None,
        );
        assert_eq!((s, error_code(&v)), (status, code), "{m} {p} {b}: {v}");
    }

    // Remove the replica (now a1), then drain and remove its master (a2).
    run_job(&up, "DELETE", &format!("/clusters/local/nodes/{m1}"), None);
    run_job(
        &up,
        "DELETE",
        &format!("/clusters/local/nodes/{r1}?drain=true"),
        None,
    );
    wait_until(Duration::from_secs(20), "six nodes again", || {
        topo_nodes(&up).len() == 6
    });
    let seen = Conn::connect(up.base)
        .expect("conn")
        .text(&["CLUSTER", "NODES"]);
    assert!(!seen.contains(&m1) && !seen.contains(&r1), "{seen}");
    let alone = Conn::connect(extra[0].port)
        .expect("conn")
        .text(&["CLUSTER", "NODES"]);
    // RESET: it knows only itself again.
    assert_eq!(
        alone.lines().filter(|l| l.contains("connected")).count(),
        1,
        "{alone}"
    );
    let (_, check) = redis_cli(&["--cluster", "check", &format!("127.0.0.1:{}", up.base)]);
    assert!(check.contains("[OK] All 16384 slots covered."), "{check}");
    assert!(!check.contains("[ERR]"), "{check}");
    // The desired state followed the failovers and the removals.
    let mut d = Value::Null;
    wait_until(Duration::from_secs(10), "no drift", || {
        d = up.get("/clusters/local/drift").1;
        d["in_sync"] == true
    });
    for i in (0..2000).step_by(37) {
        let k = format!("m:{i}");
        let v: Option<i64> = con.get(&k).expect("GET");
        if v != Some(i) {
            // Where did it go: each node's view of the slot and its count.
            let slot = slotkv_tests::cluster::key_slot(k.as_bytes());
            let mut why = format!("{k} (slot {slot}) read {v:?}\n");
            let ports = (up.base..up.base + NODES).chain(extra.iter().map(|n| n.port));
            for p in ports {
                if let Ok(mut c) = Conn::connect(p) {
                    let n = c.text(&["CLUSTER", "COUNTKEYSINSLOT", &slot.to_string()]);
                    let g = c.text(&["CLUSTER", "NODES"]);
                    let m = c.text(&["CLUSTER", "GETSLOTMIGRATIONS"]);
                    let e = c.text(&["EXISTS", &k]);
                    why += &format!("{p}: keys in slot {n}, EXISTS {e}\n{g}\nmigrations: {m}\n");
                }
            }
            panic!("{why}");
        }
    }
}

#[test]
fn a_control_plane_killed_mid_reshard_finishes_the_job_after_a_restart() {
    use redis::Commands;
    let mut up = Up::start();
    up.wait_healthy();
    let client =
        redis::cluster::ClusterClient::new(vec![format!("redis://127.0.0.1:{}/", up.base)])
            .expect("client");
    let mut con = client.get_connection().expect("cluster connection");
    for i in 0..10_000 {
        let _: () = con.set(format!("x:{i}"), i).expect("SET");
    }
    let before = slot_counts(&up);
    let a = before.keys().next().expect("a master").clone();
    // The legacy path, slot by slot: slow enough to be killed halfway.
    let body = json!({"to": a, "slots": 3000, "method": "legacy"}).to_string();
    let (s, job) = up.post("/clusters/local/reshard", &body, None);
    assert_eq!(s, 202, "{job}");
    let id = job["id"].as_str().expect("id").to_string();
    wait_until(Duration::from_secs(60), "some slots moved", || {
        slot_counts(&up).get(&a).copied().unwrap_or(0) >= before[&a] + 50
    });
    // The job reports its progress while its one long step runs.
    wait_until(Duration::from_secs(10), "progress reported", || {
        let (_, j) = up.get(&format!("/jobs/{id}"));
        let p = j["progress"].as_i64().unwrap_or(0);
        j["slots_moved"].as_i64().unwrap_or(0) > 0
            && j["keys_moved"].as_i64().unwrap_or(0) > 0
            && (1..100).contains(&p)
    });
    up.kill9();
    // Restarted on the same directory, the control plane takes the job
    // over once the dead process's lease runs out, and finishes it.
    up.launch();
    let done = wait_job(&up, &id);
    assert_eq!(done["status"], "succeeded", "{done}");
    wait_until(
        Duration::from_secs(10),
        "the observer sees every slot moved",
        || slot_counts(&up).get(&a).copied().unwrap_or(0) == before[&a] + 3000,
    );
    let (_, check) = redis_cli(&["--cluster", "check", &format!("127.0.0.1:{}", up.base)]);
    assert!(check.contains("[OK] All 16384 slots covered."), "{check}");
    assert!(
        !check.contains("[ERR]") && !check.contains("[WARNING]"),
        "{check}"
    );
    // The observer's view trails the nodes by up to one observation: the
    // job's last SETSLOT NODE can land after the snapshot just read.
    wait_until(
        Duration::from_secs(10),
        "the observer sees no open slot",
        || {
            let (_, t) = up.get("/clusters/local/topology");
            t["open_slots"].as_array().map(Vec::len) == Some(0)
        },
    );
    for i in 0..10_000 {
        let v: i64 = con.get(format!("x:{i}")).expect("GET");
        assert_eq!(v, i);
    }
}

mod grpc {
    //! The gRPC API against a real control plane: health, reflection,
    //! auth, reads, a reshard with WatchJob and WatchEvents, bad input.

    use super::*;
    use pb::control_plane_client::ControlPlaneClient;
    use slotkv_proto::v1 as pb;
    use tokio_stream::StreamExt;
    use tonic::transport::Channel;
    use tonic::{Code, Request};

    fn req<T>(m: T, token: &str) -> Request<T> {
        let mut r = Request::new(m);
        if let Ok(v) = format!("Bearer {token}").parse() {
            r.metadata_mut().insert("authorization", v);
        }
        r
    }

    fn code_of(s: &tonic::Status) -> String {
        s.metadata()
            .get("x-error-code")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    }

    async fn channel(addr: &str) -> Channel {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            match Channel::from_shared(format!("http://{addr}"))
                .expect("uri")
                .connect()
                .await
            {
                Ok(c) => return c,
                Err(e) if tokio::time::Instant::now() > deadline => panic!("gRPC {addr}: {e}"),
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }

    #[test]
    fn grpc_serves_health_reflection_reads_changes_and_streams() {
        let up = Up::start();
        up.wait_healthy();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async {
            let ch = channel(&up.grpc).await;

            // The standard health service knows our service.
            use tonic_health::pb::health_client::HealthClient;
            let h = HealthClient::new(ch.clone())
                .check(tonic_health::pb::HealthCheckRequest {
                    service: "slotkv.v1.ControlPlane".into(),
                })
                .await
                .expect("health");
            assert_eq!(
                h.into_inner().status,
                tonic_health::pb::health_check_response::ServingStatus::Serving as i32
            );

            // Reflection lists it (what grpcurl relies on).
            use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
            use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
            use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
            let ask = tonic_reflection::pb::v1::ServerReflectionRequest {
                host: String::new(),
                message_request: Some(MessageRequest::ListServices(String::new())),
            };
            let mut answers = ServerReflectionClient::new(ch.clone())
                .server_reflection_info(tokio_stream::iter([ask]))
                .await
                .expect("reflection")
                .into_inner();
            let first = answers.next().await.expect("an answer").expect("ok");
            let Some(MessageResponse::ListServicesResponse(list)) = first.message_response else {
                panic!("{first:?}");
            };
            let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
            assert!(
                names.iter().any(|n| n == "slotkv.v1.ControlPlane"),
                "{names:?}"
            );
            assert!(
                names.iter().any(|n| n == "grpc.health.v1.Health"),
                "{names:?}"
            );

            let mut cp = ControlPlaneClient::new(ch.clone());
            // No token, a wrong one.
            let e = cp
                .list_clusters(pb::ListClustersRequest {})
                .await
                .expect_err("no token");
            assert_eq!(
                (e.code(), code_of(&e).as_str()),
                (Code::Unauthenticated, "unauthorized")
            );
            let e = cp
                .list_clusters(req(pb::ListClustersRequest {}, "skv_wrong"))
                .await
                .expect_err("wrong token");
            assert_eq!(e.code(), Code::Unauthenticated);

            // Reads agree with REST.
            let t = &up.token;
            let cl = cp
                .list_clusters(req(pb::ListClustersRequest {}, t))
                .await
                .expect("list")
                .into_inner();
            let local = cl
                .clusters
                .iter()
                .find(|c| c.name == "local")
                .expect("local");
            assert_eq!(
                (
                    local.state.as_str(),
                    local.masters,
                    local.replicas,
                    local.slots_covered
                ),
                ("ok", 3, 3, 16384)
            );
            let topo = cp
                .get_topology(req(
                    pb::GetTopologyRequest {
                        name: "local".into(),
                    },
                    t,
                ))
                .await
                .expect("topology")
                .into_inner();
            assert_eq!(topo.nodes.len(), 6);
            assert_eq!(topo.desired_nodes.len(), 6);
            let masters: Vec<&pb::Node> =
                topo.nodes.iter().filter(|n| n.role == "master").collect();
            assert_eq!(masters.len(), 3);
            let drift = cp
                .get_drift(req(
                    pb::GetDriftRequest {
                        cluster: "local".into(),
                    },
                    t,
                ))
                .await
                .expect("drift")
                .into_inner();
            assert!(drift.in_sync, "{drift:?}");

            // Bad input: unknown cluster, unknown target, too many slots.
            let e = cp
                .get_topology(req(
                    pb::GetTopologyRequest {
                        name: "nope".into(),
                    },
                    t,
                ))
                .await
                .expect_err("unknown cluster");
            assert_eq!(
                (e.code(), code_of(&e).as_str()),
                (Code::NotFound, "not_found")
            );
            let reshard = |to: &str, slots: u32, dry_run: bool| pb::ReshardRequest {
                cluster: "local".into(),
                to: to.into(),
                slots: Some(slots),
                dry_run,
                ..Default::default()
            };
            let e = cp
                .reshard(req(reshard(&"0".repeat(40), 10, true), t))
                .await
                .expect_err("unknown target");
            assert!(
                matches!(e.code(), Code::InvalidArgument | Code::NotFound),
                "{e:?}"
            );
            let e = cp
                .reshard(req(reshard(&masters[0].id, 20000, true), t))
                .await
                .expect_err("too many slots");
            assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");

            // A dry run answers the plan and starts nothing.
            let to = masters[0].id.clone();
            let plan = cp
                .reshard(req(reshard(&to, 30, true), t))
                .await
                .expect("dry run")
                .into_inner();
            let Some(pb::change_response::Outcome::PlanJson(p)) = plan.outcome else {
                panic!("{plan:?}");
            };
            let p: Value = serde_json::from_str(&p).expect("plan json");
            assert!(p.to_string().contains(&to), "{p}");

            // Watch events from now on, then reshard for real and watch it.
            let after = cp
                .list_events(req(
                    pb::ListEventsRequest {
                        cluster: "local".into(),
                        limit: Some(1000),
                        ..Default::default()
                    },
                    t,
                ))
                .await
                .expect("events")
                .into_inner()
                .events
                .last()
                .map_or(0, |e| e.id);
            let mut live = cp
                .watch_events(req(
                    pb::WatchEventsRequest {
                        cluster: "local".into(),
                        after,
                    },
                    t,
                ))
                .await
                .expect("watch events")
                .into_inner();
            let started = cp
                .reshard(req(reshard(&to, 30, false), t))
                .await
                .expect("reshard")
                .into_inner();
            let Some(pb::change_response::Outcome::Job(job)) = started.outcome else {
                panic!("{started:?}");
            };
            // A second change while it runs: refused with the job's id.
            let e = cp
                .failover(req(
                    pb::FailoverRequest {
                        cluster: "local".into(),
                        replica: topo
                            .nodes
                            .iter()
                            .find(|n| n.role == "replica")
                            .map(|n| n.id.clone())
                            .unwrap_or_default(),
                        mode: None,
                        idempotency_key: None,
                    },
                    t,
                ))
                .await
                .expect_err("busy");
            assert_eq!(
                (e.code(), code_of(&e).as_str()),
                (Code::FailedPrecondition, "job_running"),
                "{e:?}"
            );
            assert_eq!(
                e.metadata().get("x-job-id").and_then(|v| v.to_str().ok()),
                Some(job.id.as_str())
            );

            let mut watch = cp
                .watch_job(req(pb::WatchJobRequest { id: job.id.clone() }, t))
                .await
                .expect("watch job")
                .into_inner();
            let mut seen = Vec::new();
            let end = tokio::time::timeout(Duration::from_secs(120), async {
                while let Some(j) = watch.next().await {
                    let j = j.expect("job update");
                    seen.push((j.status.clone(), j.progress));
                }
            })
            .await;
            assert!(end.is_ok(), "WatchJob did not end: {seen:?}");
            assert_eq!(
                seen.last().map(|(s, p)| (s.as_str(), *p)),
                Some(("succeeded", 100)),
                "{seen:?}"
            );
            // The events stream carried the job's life, live.
            let mut kinds = Vec::new();
            let got = tokio::time::timeout(Duration::from_secs(30), async {
                while let Some(e) = live.next().await {
                    let e = e.expect("event");
                    assert!(e.id > after);
                    if e.job.as_deref() == Some(job.id.as_str()) {
                        kinds.push(e.kind.clone());
                        if e.kind == "job_succeeded" {
                            break;
                        }
                    }
                }
            })
            .await;
            assert!(got.is_ok(), "no job_succeeded on WatchEvents: {kinds:?}");
            assert_eq!(
                kinds[..2],
                ["reshard_requested", "job_started"],
                "{kinds:?}"
            );
            assert!(kinds.iter().any(|k| k == "step_done"), "{kinds:?}");

            let now = cp
                .get_job(req(pb::GetJobRequest { id: job.id.clone() }, t))
                .await
                .expect("job")
                .into_inner();
            assert_eq!(now.status, "succeeded");
            assert!(!now.steps.is_empty());
            assert!(now.steps.iter().all(|s| s.status == "done"), "{now:?}");
        });
        // The slots moved: the target now holds 30 more than its third.
        wait_until(
            Duration::from_secs(20),
            "the target's 30 new slots observed",
            || slot_counts(&up).values().any(|&c| c >= 5461 + 30),
        );
    }
}

/// Creates the cluster "local" of `nodes` through a `serve` control plane
/// and waits for the job and for the observer to see it healthy.
fn create_local(cp: &Up, nodes: &slotkv_tests::cluster::Cluster) {
    let body = json!({"name": "local", "nodes": nodes.addrs(), "replicas": 1}).to_string();
    let (s, job) = cp.post("/clusters", &body, Some("create-local"));
    assert_eq!(s, 202, "{job}");
    let done = wait_job(cp, job["id"].as_str().expect("id"));
    assert_eq!(done["status"], "succeeded", "{done}");
    cp.wait_healthy();
}

fn cluster_client(port: u16, password: Option<&str>) -> redis::cluster::ClusterClient {
    let auth = password.map_or(String::new(), |p| format!(":{p}@"));
    redis::cluster::ClusterClient::new(vec![format!("redis://{auth}127.0.0.1:{port}/")])
        .expect("client")
}

fn all_keys_there(port: u16, password: Option<&str>, n: usize) {
    use redis::Commands;
    let client = cluster_client(port, password);
    let mut con = client.get_connection().expect("cluster connection");
    for i in 0..n {
        let v: i64 = con.get(format!("x:{i}")).expect("GET");
        assert_eq!(v, i as i64);
    }
}

fn fill(port: u16, password: Option<&str>, n: usize) {
    use redis::Commands;
    let client = cluster_client(port, password);
    let mut con = client.get_connection().expect("cluster connection");
    for i in 0..n {
        let _: () = con.set(format!("x:{i}"), i).expect("SET");
    }
}

fn check_clean(port: u16, password: Option<&str>) {
    let addr = format!("127.0.0.1:{port}");
    let mut args = vec!["--no-auth-warning", "--cluster", "check", addr.as_str()];
    if let Some(p) = password {
        args.splice(0..0, ["-a", p]);
    }
    let (_, check) = redis_cli(&args);
    assert!(check.contains("[OK] All 16384 slots covered."), "{check}");
    assert!(
        !check.contains("[ERR]") && !check.contains("[WARNING]"),
        "{check}"
    );
}

#[test]
fn a_cluster_of_redis_servers_is_created_resharded_and_failed_over_through_the_api() {
    use slotkv_tests::cluster::Cluster;
    use slotkv_tests::Server;
    // Password-protected nodes: the control plane is given the password
    // in its environment (and MIGRATE passes it on).
    const PW: &str = "node-secret";
    let nodes = Cluster::start(
        &[Server::Redis; 6],
        5000,
        &["--requirepass", PW, "--masterauth", PW],
    );
    let db = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}", db.path().join("cp.db").display());
    let cp = Up::serve_with(
        &url,
        "skv_test_redis_servers",
        &[("SLOTKV_NODE_PASSWORD", PW)],
    );
    create_local(&cp, &nodes);
    let port = nodes.nodes[0].port;
    let pw = Some(PW);
    fill(port, pw, 5_000);

    // redis-server cannot do atomic slot migration: asked for, the job
    // fails saying so, and nothing moved.
    let before = slot_counts(&cp);
    let to = before.keys().next().expect("a master").clone();
    let body = json!({"to": to, "slots": 300, "method": "atomic"}).to_string();
    let (s, job) = cp.post("/clusters/local/reshard", &body, None);
    assert_eq!(s, 202, "{job}");
    let done = wait_job(&cp, job["id"].as_str().expect("id"));
    assert_eq!(done["status"], "failed", "{done}");
    assert!(
        done["error"]
            .as_str()
            .is_some_and(|e| e.contains("cannot do atomic slot migration")),
        "{done}"
    );
    assert_eq!(slot_counts(&cp), before);
    check_clean(port, pw);

    // "auto" between redis-servers takes the legacy path (MIGRATE).
    let body = json!({"to": to, "slots": 300}).to_string();
    let (s, job) = cp.post("/clusters/local/reshard", &body, None);
    assert_eq!(s, 202, "{job}");
    let done = wait_job(&cp, job["id"].as_str().expect("id"));
    assert_eq!(done["status"], "succeeded", "{done}");
    let details: Vec<&str> = done["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .filter_map(|s| s["detail"].as_str())
        .collect();
    assert!(
        details.iter().any(|d| d.contains("with MIGRATE")),
        "{details:?}"
    );
    wait_until(Duration::from_secs(10), "300 slots moved", || {
        slot_counts(&cp).get(&to).copied() == Some(before[&to] + 300)
    });
    check_clean(port, pw);
    all_keys_there(port, pw, 5_000);

    // A manual failover of a redis-server shard, verified.
    let replica = topo_nodes(&cp)
        .into_iter()
        .find(|n| n["role"] == "replica")
        .expect("a replica");
    let old_master = replica["master"].as_str().expect("master").to_string();
    let body = json!({"replica": replica["id"]}).to_string();
    let (s, job) = cp.post("/clusters/local/failover", &body, None);
    assert_eq!(s, 202, "{job}");
    let done = wait_job(&cp, job["id"].as_str().expect("id"));
    assert_eq!(done["status"], "succeeded", "{done}");
    wait_until(Duration::from_secs(20), "the roles swapped", || {
        let t = topo_nodes(&cp);
        t.iter()
            .any(|n| n["id"] == replica["id"] && n["role"] == "master")
            && t.iter()
                .any(|n| n["id"] == old_master.as_str() && n["master"] == replica["id"])
    });
    all_keys_there(port, pw, 5_000);
    // The password is nowhere in what the API returns.
    for path in [
        "/clusters/local/topology",
        "/clusters/local/events?limit=1000",
        "/jobs",
    ] {
        let (_, v) = cp.get(path);
        assert!(!v.to_string().contains(PW), "{path}");
    }
}

#[test]
fn two_control_planes_on_one_postgres_database_share_jobs_and_take_over() {
    use slotkv_tests::cluster::Cluster;
    use slotkv_tests::Server;
    let Ok(admin) = std::env::var("SLOTKV_TEST_POSTGRES") else {
        eprintln!("skipped: SLOTKV_TEST_POSTGRES is not set (./test.sh starts a PostgreSQL)");
        return;
    };
    let name = format!("skv_two_{}", free_port());
    let out = Command::new("psql")
        .args([admin.as_str(), "-qc", &format!("CREATE DATABASE {name}")])
        .output()
        .expect("psql");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let base = admin.rsplit_once('/').map_or(admin.as_str(), |(b, _)| b);
    let url = format!("{base}/{name}");

    let nodes = Cluster::start(&[Server::Datanode; 6], 5000, &[]);
    let token = "skv_test_two_control_planes";
    let mut cps = [Up::serve(&url, token), Up::serve(&url, token)];
    // Created through one, seen through the other (one database).
    create_local(&cps[0], &nodes);
    cps[1].wait_healthy();
    let port = nodes.nodes[0].port;
    fill(port, None, 10_000);

    // A slow reshard through the second; whichever process holds its
    // lease is killed (-9) halfway; the other takes the job over.
    let before = slot_counts(&cps[1]);
    let to = before.keys().next().expect("a master").clone();
    let body = json!({"to": to, "slots": 2000, "method": "legacy"}).to_string();
    let (s, job) = cps[1].post("/clusters/local/reshard", &body, None);
    assert_eq!(s, 202, "{job}");
    let id = job["id"].as_str().expect("id").to_string();
    let mut owner = String::new();
    wait_until(Duration::from_secs(60), "some slots moved", || {
        let (_, j) = cps[0].get(&format!("/jobs/{id}"));
        owner = j["lease_owner"].as_str().unwrap_or("").to_string();
        !owner.is_empty() && slot_counts(&cps[0]).get(&to).copied().unwrap_or(0) >= before[&to] + 50
    });
    let pid = owner.split('-').next().unwrap_or("").to_string();
    let victim = cps
        .iter()
        .position(|c| c.pid().map(|p| p.to_string()) == Some(pid.clone()))
        .unwrap_or_else(|| panic!("lease owner {owner} is neither process"));
    cps[victim].kill9();
    let survivor = &cps[1 - victim];
    let done = wait_job(survivor, &id);
    assert_eq!(done["status"], "succeeded", "{done}");
    wait_until(Duration::from_secs(10), "2000 slots moved", || {
        slot_counts(survivor).get(&to).copied() == Some(before[&to] + 2000)
    });
    let (_, t) = survivor.get("/clusters/local/topology");
    assert_eq!(t["open_slots"].as_array().map(Vec::len), Some(0), "{t}");
    check_clean(port, None);
    all_keys_there(port, None, 10_000);
    // Both processes wrote the history; its ids never repeat.
    let (_, ev) = survivor.get("/clusters/local/events?limit=1000");
    let ids: Vec<i64> = ev["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter_map(|e| e["id"].as_i64())
        .collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
}
