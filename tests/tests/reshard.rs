//! Live resharding with the real `redis-cli --cluster` (Redis's legacy
//! path: SETSLOT IMPORTING/MIGRATING, GETKEYSINSLOT, MIGRATE, SETSLOT
//! NODE): under the consistency checker, interrupted and fixed, across
//! implementations, and the redirections clients see meanwhile, side by
//! side with redis-server.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use slotkv_tests::cluster::{key_slot, redis_cli, redis_cli_within, Checker, Cluster};
use slotkv_tests::{wait_until, Conn, Server};

const TIMEOUT_MS: u64 = 5000;

fn checker(c: &Cluster, i: usize, secs: u64) -> Checker {
    Checker::start(
        env!("CARGO_BIN_EXE_consistency-check"),
        c.nodes[i].port,
        secs,
        true,
    )
}

fn addr(c: &Cluster, i: usize) -> String {
    format!("127.0.0.1:{}", c.nodes[i].port)
}

fn masters(c: &Cluster) -> Vec<usize> {
    (0..c.nodes.len())
        .filter(|&i| c.info_field(i, &["INFO", "replication"], "role").as_deref() == Some("master"))
        .collect()
}

/// `redis-cli --cluster check` finds nothing wrong.
fn assert_clean(c: &Cluster, i: usize) {
    let (ok, out) = redis_cli(&["--cluster", "check", &addr(c, i)]);
    assert!(ok, "check failed:\n{out}");
    assert!(
        out.contains("[OK] All nodes agree about slots configuration.")
            && out.contains("[OK] All 16384 slots covered.")
            && !out.contains("[WARNING]")
            && !out.contains("[ERR]"),
        "{out}"
    );
}

/// Every `step`-th key of `fill` reads back its value from its owner.
fn assert_values(c: &Cluster, keys: &[String], step: usize) {
    let owner = c.slot_ports(0);
    let mut conns: std::collections::HashMap<u16, Conn> = Default::default();
    for (i, k) in keys.iter().enumerate().step_by(step) {
        let port = owner[key_slot(k.as_bytes()) as usize];
        let conn = conns
            .entry(port)
            .or_insert_with(|| Conn::connect(port).expect("connect"));
        let v = i.to_string();
        assert_eq!(
            conn.text(&["GET", k]),
            format!("${}\r\n{v}\r\n", v.len()),
            "{k} on port {port}"
        );
    }
}

fn reshard(c: &Cluster, from: usize, to: usize, slots: usize, extra: &[&str]) -> String {
    let n = slots.to_string();
    let (fid, tid) = (c.myid(from), c.myid(to));
    let mut args = vec![
        "--cluster",
        "reshard",
        &addr(c, from),
        "--cluster-from",
        &fid,
        "--cluster-to",
        &tid,
        "--cluster-slots",
        &n,
        "--cluster-yes",
    ]
    .into_iter()
    .map(String::from)
    .collect::<Vec<_>>();
    args.extend(extra.iter().map(|s| s.to_string()));
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let (ok, out) = redis_cli_within(&refs, Duration::from_secs(600));
    assert!(ok, "reshard failed:\n{}", tail(&out));
    out
}

fn tail(s: &str) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

#[test]
fn a_reshard_of_1000_slots_under_the_checker_loses_no_write() {
    let c = Cluster::start(&[Server::Datanode; 6], TIMEOUT_MS, &[]);
    c.create(1);
    c.wait_ok(Duration::from_secs(30));
    let keys = c.fill("r", 200_000);
    let m = masters(&c);
    let (from, to) = (m[0], m[1]);
    let before = c.total_keys();
    let checker = checker(&c, from, 12);
    let out = reshard(&c, from, to, 1000, &[]);
    assert!(out.contains("Moving slot"), "{}", tail(&out));
    let (ok, nums, text) = checker.finish();
    assert!(ok, "the checker lost writes:\n{text}");
    // N R (E err) | N W (E err) | L lost | P not ack
    assert_eq!(nums[4], 0, "{text}");
    // ASK and MOVED are followed by the client, never surfaced.
    assert_eq!((nums[1], nums[3]), (0, 0), "{text}");
    assert!(nums[2] > 1000, "the checker kept writing:\n{text}");
    assert_clean(&c, from);
    // The checker's counters joined the 200k keys; nothing else changed.
    let after = c.total_keys();
    assert!(
        (200_000..=200_000 + 200).contains(&after) && after >= before,
        "{before} -> {after}"
    );
    assert_values(&c, &keys, 7);
    // 1000 of the source's slots are the target's now, on every node.
    let owner = c.slot_ports(c.nodes.len() - 1);
    let moved = owner.iter().filter(|&&p| p == c.nodes[to].port).count();
    assert!(moved >= 5461 + 1000, "{moved}");
    // The target's replica holds what the target holds.
    let dbsize = |i: usize| c.nodes[i].conn().text(&["DBSIZE"]);
    let replica = (0..c.nodes.len())
        .find(|&i| {
            c.nodes_of(i)
                .iter()
                .any(|l| l.contains("myself,slave") && l.contains(&c.myid(to)))
        })
        .expect("the target has a replica");
    wait_until(Duration::from_secs(20), "the replica catches up", || {
        dbsize(replica) == dbsize(to)
    });
}

/// redis-cli killed in the middle of a slot leaves it open on both sides;
/// `redis-cli --cluster fix` finishes the move and loses no key.
#[test]
fn an_interrupted_reshard_is_repaired_by_fix() {
    let c = Cluster::start(&[Server::Datanode; 3], TIMEOUT_MS, &[]);
    c.create(0);
    c.wait_ok(Duration::from_secs(30));
    let keys = c.fill("f", 50_000);
    let (from, to) = (0, 1);
    let (fid, tid) = (c.myid(from), c.myid(to));
    // One key per MIGRATE: slow enough to stop it inside a slot.
    let mut cli = Command::new("redis-cli")
        .args([
            "--cluster",
            "reshard",
            &addr(&c, from),
            "--cluster-from",
            &fid,
            "--cluster-to",
            &tid,
            "--cluster-slots",
            "3000",
            "--cluster-yes",
            "--cluster-pipeline",
            "1",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start redis-cli");
    let open = |i: usize| {
        c.nodes_of(i)
            .iter()
            .any(|l| l.contains("->-") || l.contains("-<-"))
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while !(open(from) && open(to)) {
        assert!(Instant::now() < deadline, "no slot was ever open");
        std::thread::sleep(Duration::from_millis(5));
    }
    let _ = cli.kill();
    let _ = cli.wait();
    // Still open after the kill (the source's marks are proof enough).
    assert!(open(from), "{:?}", c.nodes_of(from));
    let (ok, out) = redis_cli_within(
        &["--cluster", "fix", &addr(&c, from)],
        Duration::from_secs(120),
    );
    assert!(ok, "fix failed:\n{}", tail(&out));
    assert_clean(&c, from);
    assert_eq!(c.total_keys(), 50_000);
    assert_values(&c, &keys, 3);
}

/// Slots move from a redis-server master to a datanode master and back.
#[test]
fn slots_move_between_redis_server_and_datanode() {
    let c = Cluster::start(
        &[Server::Redis, Server::Datanode, Server::Redis],
        TIMEOUT_MS,
        &[],
    );
    c.create(0);
    c.wait_ok(Duration::from_secs(30));
    let keys = c.fill("x", 20_000);
    reshard(&c, 0, 1, 800, &["--cluster-pipeline", "50"]);
    assert_clean(&c, 0);
    assert_values(&c, &keys, 1);
    reshard(&c, 1, 2, 6000, &["--cluster-pipeline", "50"]);
    assert_clean(&c, 1);
    assert_eq!(c.total_keys(), 20_000);
    assert_values(&c, &keys, 1);
}

/// What clients see while a slot is half moved (ASK, TRYAGAIN, MOVED,
/// ASKING), replayed on a redis-server cluster and on a datanode one.
fn redirects(kind: Server) -> Vec<String> {
    let c = Cluster::start(&[kind; 3], TIMEOUT_MS, &[]);
    c.create(0);
    c.wait_ok(Duration::from_secs(30));
    let owner = c.slot_ports(0);
    let slot = key_slot(b"{t}") as usize;
    let a = (0..3)
        .find(|&i| c.nodes[i].port == owner[slot])
        .expect("owner");
    let (b, third) = ((a + 1) % 3, (a + 2) % 3);
    let (ida, idb) = (c.myid(a), c.myid(b));
    let s = slot.to_string();
    let (mut ca, mut cb, mut cc) = (c.nodes[a].conn(), c.nodes[b].conn(), c.nodes[third].conn());
    let names = [
        (c.nodes[a].port.to_string(), "A"),
        (c.nodes[b].port.to_string(), "B"),
        (c.nodes[third].port.to_string(), "C"),
    ];
    let mut seen = Vec::new();
    let mut run = |who: &str, conn: &mut Conn, args: &[&str]| {
        let mut line = format!("{who} {args:?} -> {}", conn.text(args));
        for (p, n) in &names {
            line = line.replace(p.as_str(), n);
        }
        line = line
            .replace(ida.as_str(), "<A>")
            .replace(idb.as_str(), "<B>");
        seen.push(line);
    };
    for k in ["{t}a", "{t}b", "{t}l"] {
        run("A", &mut ca, &["SET", k, "1"]);
    }
    run("B", &mut cb, &["CLUSTER", "SETSLOT", &s, "IMPORTING", &ida]);
    run("A", &mut ca, &["CLUSTER", "SETSLOT", &s, "MIGRATING", &idb]);
    let bport = c.nodes[b].port.to_string();
    run(
        "A",
        &mut ca,
        &[
            "MIGRATE",
            "127.0.0.1",
            &bport,
            "",
            "0",
            "5000",
            "KEYS",
            "{t}b",
            "{t}nope",
        ],
    );
    for args in [
        &["GET", "{t}a"][..],
        &["GET", "{t}b"],
        &["GET", "{t}c"],
        &["SET", "{t}c", "x"],
        &["MGET", "{t}a", "{t}b"],
        &["MGET", "{t}b", "{t}c"],
        &["EXISTS", "{t}a", "{t}a"],
        &["MULTI"],
        &["GET", "{t}a"],
        &["GET", "{t}b"],
        &["EXEC"],
        &["SPUBLISH", "{t}ch", "m"],
    ] {
        run("A", &mut ca, args);
    }
    for args in [
        &["GET", "{t}b"][..],
        &["ASKING"],
        &["GET", "{t}b"],
        &["GET", "{t}b"],
        &["ASKING"],
        &["MGET", "{t}a", "{t}b"],
        &["ASKING"],
        &["MGET", "{t}b", "{t}b"],
        &["ASKING"],
        &["GET", "{t}a"],
        &["ASKING"],
        &["SET", "{t}new", "v"],
        &["RESTORE-ASKING", "{t}r", "0", "bad"],
    ] {
        run("B", &mut cb, args);
    }
    run("C", &mut cc, &["GET", "{t}a"]);
    // Finish the move as redis-cli does.
    run(
        "A",
        &mut ca,
        &[
            "MIGRATE",
            "127.0.0.1",
            &bport,
            "",
            "0",
            "5000",
            "KEYS",
            "{t}a",
            "{t}l",
        ],
    );
    run("B", &mut cb, &["CLUSTER", "SETSLOT", &s, "NODE", &idb]);
    run("A", &mut ca, &["CLUSTER", "SETSLOT", &s, "NODE", &idb]);
    run("A", &mut ca, &["GET", "{t}a"]);
    run("B", &mut cb, &["MGET", "{t}a", "{t}b", "{t}new"]);
    seen
}

#[test]
fn clients_see_the_redirections_redis_gives_during_a_migration() {
    let redis = redirects(Server::Redis);
    let ours = redirects(Server::Datanode);
    assert_eq!(ours, redis);
    let text = redis.join("\n");
    for want in ["ASK", "TRYAGAIN", "MOVED"] {
        assert!(text.contains(want), "{want} missing from:\n{text}");
    }
}
