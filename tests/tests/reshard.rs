//! Live resharding with the real `redis-cli --cluster` (Redis's legacy
//! path: SETSLOT IMPORTING/MIGRATING, GETKEYSINSLOT, MIGRATE, SETSLOT
//! NODE): under the consistency checker, interrupted and fixed, across
//! implementations, and the redirections clients see meanwhile, side by
//! side with redis-server.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use slotkv_tests::cluster::{key_slot, redis_cli_within, Checker, Cluster};
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
    c.assert_clean(from);
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
    c.assert_clean(from);
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
    c.assert_clean(0);
    assert_values(&c, &keys, 1);
    reshard(&c, 1, 2, 6000, &["--cluster-pipeline", "50"]);
    c.assert_clean(1);
    assert_eq!(c.total_keys(), 20_000);
    assert_values(&c, &keys, 1);
}

/// A 3-master cluster of one kind, the slot of `{t}`, the master `a` that
/// owns it and the next one `b`.
struct SlotPair {
    c: Cluster,
    slot: usize,
    a: usize,
    b: usize,
    ida: String,
    idb: String,
}

fn slot_pair(kind: Server) -> SlotPair {
    let c = Cluster::start(&[kind; 3], TIMEOUT_MS, &[]);
    c.create(0);
    c.wait_ok(Duration::from_secs(30));
    let owner = c.slot_ports(0);
    let slot = key_slot(b"{t}") as usize;
    let a = (0..3)
        .find(|&i| c.nodes[i].port == owner[slot])
        .expect("owner");
    let b = (a + 1) % 3;
    let (ida, idb) = (c.myid(a), c.myid(b));
    SlotPair {
        c,
        slot,
        a,
        b,
        ida,
        idb,
    }
}

/// Replies as run, with ports and node ids replaced by names so two
/// clusters' transcripts compare.
struct Transcript {
    names: Vec<(String, String)>,
    seen: Vec<String>,
}

impl Transcript {
    fn new(names: &[(&str, &str)]) -> Transcript {
        let mut names: Vec<(String, String)> = names
            .iter()
            .map(|(from, to)| (from.to_string(), to.to_string()))
            .collect();
        // Longest first: a node ID can contain a port's digits, and must be
        // named before the port inside it is.
        names.sort_by_key(|(from, _)| std::cmp::Reverse(from.len()));
        Transcript {
            names,
            seen: Vec::new(),
        }
    }

    fn run(&mut self, who: &str, conn: &mut Conn, args: &[&str]) {
        let mut line = format!("{who} {args:?} -> {}", conn.text(args));
        for (from, to) in &self.names {
            line = line.replace(from.as_str(), to);
        }
        self.seen.push(line);
    }
}

/// What clients see while a slot is half moved (ASK, TRYAGAIN, MOVED,
/// ASKING), replayed on a redis-server cluster and on a datanode one.
fn redirects(kind: Server) -> Vec<String> {
    let SlotPair {
        c,
        slot,
        a,
        b,
        ida,
        idb,
    } = slot_pair(kind);
    let third = (a + 2) % 3;
    let s = slot.to_string();
    let (mut ca, mut cb, mut cc) = (c.nodes[a].conn(), c.nodes[b].conn(), c.nodes[third].conn());
    let ports: Vec<String> = [a, b, third]
        .iter()
        .map(|&i| c.nodes[i].port.to_string())
        .collect();
    let mut t = Transcript::new(&[
        (ports[0].as_str(), "A"),
        (ports[1].as_str(), "B"),
        (ports[2].as_str(), "C"),
        (ida.as_str(), "<A>"),
        (idb.as_str(), "<B>"),
    ]);
    let mut run = |who: &str, conn: &mut Conn, args: &[&str]| t.run(who, conn, args);
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
    t.seen
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

/// Reads on replicas (READONLY, with and without ASKING) while a slot is
/// half moved, replayed on a redis-server cluster and on a datanode one:
/// a replica has no migration state of its own, so it serves what its
/// master's stream gave it, or redirects to the slot's owner.
fn replica_reads_mid_migration(kind: Server) -> Vec<String> {
    let c = Cluster::start(&[kind; 6], TIMEOUT_MS, &[]);
    c.create(1);
    c.wait_ok(Duration::from_secs(30));
    let owner = c.slot_ports(0);
    let slot = key_slot(b"{t}") as usize;
    let port_of = |i: usize| c.nodes[i].port;
    let master_port = |i: usize| {
        c.info_field(i, &["INFO", "replication"], "master_port")
            .and_then(|p| p.parse::<u16>().ok())
    };
    let a = (0..6).find(|&i| port_of(i) == owner[slot]).expect("owner");
    let b = (0..6)
        .find(|&i| i != a && owner.contains(&port_of(i)))
        .expect("another master");
    let replica_of = |m: usize| {
        (0..6)
            .find(|&i| master_port(i) == Some(port_of(m)))
            .expect("a replica")
    };
    let (ra, rb) = (replica_of(a), replica_of(b));
    for r in [ra, rb] {
        wait_until(Duration::from_secs(30), "the replica's link is up", || {
            c.info_field(r, &["INFO", "replication"], "master_link_status")
                .as_deref()
                == Some("up")
        });
    }
    let (ida, idb) = (c.myid(a), c.myid(b));
    let s = slot.to_string();
    let ports: Vec<String> = [a, b, ra, rb]
        .iter()
        .map(|&i| port_of(i).to_string())
        .collect();
    let mut t = Transcript::new(&[
        (ports[0].as_str(), "A"),
        (ports[1].as_str(), "B"),
        (ports[2].as_str(), "RA"),
        (ports[3].as_str(), "RB"),
        (ida.as_str(), "<A>"),
        (idb.as_str(), "<B>"),
    ]);
    let (mut ca, mut cb) = (c.nodes[a].conn(), c.nodes[b].conn());
    let (mut cra, mut crb) = (c.nodes[ra].conn(), c.nodes[rb].conn());
    let mut run = |who: &str, conn: &mut Conn, args: &[&str]| t.run(who, conn, args);
    for k in ["{t}a", "{t}b"] {
        run("A", &mut ca, &["SET", k, "1"]);
    }
    run("B", &mut cb, &["CLUSTER", "SETSLOT", &s, "IMPORTING", &ida]);
    run("A", &mut ca, &["CLUSTER", "SETSLOT", &s, "MIGRATING", &idb]);
    let bport = port_of(b).to_string();
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
        ],
    );
    // Both replicas have what their masters wrote.
    run("A", &mut ca, &["WAIT", "1", "5000"]);
    run("B", &mut cb, &["WAIT", "1", "5000"]);
    for (who, conn) in [("RA", &mut cra), ("RB", &mut crb)] {
        for args in [
            &["GET", "{t}a"][..],
            &["READONLY"],
            &["GET", "{t}a"],
            &["GET", "{t}b"],
            &["GET", "{t}c"],
            &["MGET", "{t}a", "{t}b"],
            &["ASKING"],
            &["GET", "{t}b"],
            &["SET", "{t}c", "x"],
            &["READWRITE"],
            &["GET", "{t}a"],
        ] {
            run(who, conn, args);
        }
    }
    t.seen
}

#[test]
fn replicas_answer_reads_mid_migration_as_redis_does() {
    let redis = replica_reads_mid_migration(Server::Redis);
    let ours = replica_reads_mid_migration(Server::Datanode);
    assert_eq!(ours, redis);
    let text = redis.join("\n");
    // Both replicas were caught up, and the replies are redirections and
    // values, not a run of errors.
    assert_eq!(
        text.matches("[\"WAIT\", \"1\", \"5000\"] -> :1").count(),
        2,
        "{text}"
    );
    for want in ["MOVED", "-> $1\r\n1"] {
        assert!(text.contains(want), "{want} missing from:\n{text}");
    }
}

/// A client blocked on a key whose slot moves away is told where it went.
fn blocked_client_after_move(kind: Server) -> String {
    let SlotPair {
        c,
        slot,
        a,
        b,
        ida,
        idb,
    } = slot_pair(kind);
    let s = slot.to_string();
    let mut blocked = c.nodes[a].conn();
    blocked
        .send_raw(&slotkv_tests::encode(&["BLPOP", "{t}list", "0"]))
        .expect("send");
    let (mut ca, mut cb) = (c.nodes[a].conn(), c.nodes[b].conn());
    wait_until(Duration::from_secs(10), "the client blocks", || {
        ca.info_field("clients", "blocked_clients") == "1"
    });
    for (on_b, args) in [
        (
            true,
            ["CLUSTER", "SETSLOT", s.as_str(), "IMPORTING", ida.as_str()],
        ),
        (
            false,
            ["CLUSTER", "SETSLOT", s.as_str(), "MIGRATING", idb.as_str()],
        ),
        (
            true,
            ["CLUSTER", "SETSLOT", s.as_str(), "NODE", idb.as_str()],
        ),
        (
            false,
            ["CLUSTER", "SETSLOT", s.as_str(), "NODE", idb.as_str()],
        ),
    ] {
        let conn = if on_b { &mut cb } else { &mut ca };
        assert_eq!(conn.text(&args), "+OK\r\n");
    }
    blocked.set_timeout(Duration::from_secs(10));
    let r = blocked.read_reply().expect("a reply to the blocked client");
    String::from_utf8_lossy(&r.raw).replace(&c.nodes[b].port.to_string(), "B")
}

#[test]
fn a_client_blocked_on_a_moved_slot_gets_moved() {
    let redis = blocked_client_after_move(Server::Redis);
    assert!(redis.starts_with("-MOVED "), "{redis}");
    assert_eq!(blocked_client_after_move(Server::Datanode), redis);
}

fn id_of(c: &Cluster, i: usize) -> String {
    c.myid(i)
}

/// The cluster tutorial's membership steps with the real redis-cli, under
/// the consistency checker: add an empty master and give it slots, add
/// replicas (to the master with fewest, and to a chosen one), re-point a
/// replica with CLUSTER REPLICATE, remove a replica, empty a master and
/// remove it.
#[test]
fn the_tutorial_membership_steps_lose_no_write() {
    let main = Cluster::start(&[Server::Datanode; 3], TIMEOUT_MS, &[]);
    main.create(0);
    main.wait_ok(Duration::from_secs(30));
    let keys = main.fill("m", 20_000);
    let spare = Cluster::start(&[Server::Datanode; 3], TIMEOUT_MS, &[]);
    let entry = addr(&main, 0);
    let cli = |args: &[&str]| {
        let (ok, out) = redis_cli_within(args, Duration::from_secs(300));
        if !ok {
            for (name, c) in [("main", &main), ("spare", &spare)] {
                for i in 0..3 {
                    eprintln!(
                        "{name}{i} :{}\n{}",
                        c.nodes[i].port,
                        c.nodes_of(i).join("\n")
                    );
                }
            }
        }
        assert!(ok, "redis-cli {args:?}:\n{}", tail(&out));
        out
    };
    let knows_all = |n: usize| {
        (0..3).all(|i| main.nodes_of(i).len() == n)
            && (0..3).all(|i| {
                main.nodes_of(i)
                    .iter()
                    .all(|l| !l.contains("handshake") && !l.contains("noaddr"))
            })
    };
    let checker = checker(&main, 0, 25);
    // A new, empty master.
    cli(&["--cluster", "add-node", &addr(&spare, 0), &entry]);
    wait_until(
        Duration::from_secs(20),
        "everyone knows the new master",
        || knows_all(4) && spare.state(0).as_deref() == Some("ok"),
    );
    let new_master = id_of(&spare, 0);
    let from0 = id_of(&main, 0);
    cli(&[
        "--cluster",
        "reshard",
        &entry,
        "--cluster-from",
        &from0,
        "--cluster-to",
        &new_master,
        "--cluster-slots",
        "500",
        "--cluster-yes",
    ]);
    // Replicas: to the master with the fewest, and to a chosen one.
    cli(&[
        "--cluster",
        "add-node",
        &addr(&spare, 1),
        &entry,
        "--cluster-slave",
    ]);
    cli(&[
        "--cluster",
        "add-node",
        &addr(&spare, 2),
        &entry,
        "--cluster-slave",
        "--cluster-master-id",
        &new_master,
    ]);
    wait_until(Duration::from_secs(30), "both replicas are in sync", || {
        [1, 2].iter().all(|&i| {
            let mut c = spare.nodes[i].conn();
            c.info_field("replication", "master_link_status") == "up"
        })
    });
    assert!(spare
        .nodes_of(2)
        .iter()
        .any(|l| l.contains("myself,slave") && l.contains(&new_master)));
    // CLUSTER REPLICATE moves a replica to another master.
    let target = id_of(&main, 1);
    assert_eq!(
        spare.nodes[1]
            .conn()
            .text(&["CLUSTER", "REPLICATE", &target]),
        "+OK\r\n"
    );
    wait_until(
        Duration::from_secs(30),
        "the replica follows its new master",
        || {
            let mut c = spare.nodes[1].conn();
            c.info_field("replication", "master_port") == main.nodes[1].port.to_string()
                && c.info_field("replication", "master_link_status") == "up"
        },
    );
    // Remove a replica.
    let replica_id = id_of(&spare, 1);
    cli(&["--cluster", "del-node", &entry, &replica_id]);
    wait_until(Duration::from_secs(20), "the replica is forgotten", || {
        (0..3).all(|i| main.nodes_of(i).iter().all(|l| !l.contains(&replica_id)))
    });
    // Empty the new master, then remove it (its replica moves on).
    cli(&[
        "--cluster",
        "reshard",
        &entry,
        "--cluster-from",
        &new_master,
        "--cluster-to",
        &target,
        "--cluster-slots",
        "500",
        "--cluster-yes",
    ]);
    cli(&["--cluster", "del-node", &entry, &new_master]);
    wait_until(Duration::from_secs(20), "the master is forgotten", || {
        (0..3).all(|i| main.nodes_of(i).iter().all(|l| !l.contains(&new_master)))
    });
    main.assert_clean(0);
    let (ok, nums, text) = checker.finish();
    assert!(ok && nums[4] == 0, "the checker lost writes:\n{text}");
    assert_values(&main, &keys, 1);
}

/// `redis-cli --cluster import` from a standalone redis-server holding keys
/// of every type: every key, value and TTL arrives.
#[test]
fn import_from_a_standalone_redis_server_keeps_every_key() {
    let c = Cluster::start(
        &[Server::Datanode; 3],
        TIMEOUT_MS,
        &["--enable-debug-command", "yes"],
    );
    c.create(0);
    c.wait_ok(Duration::from_secs(30));
    let src = slotkv_tests::Node::start(Server::Redis, slotkv_tests::NO_DISK_DEBUG);
    let mut s = src.conn();
    let n = 10_000;
    let mut buf = Vec::new();
    for i in 0..n {
        let i = i.to_string();
        for (cmd, prefix, rest) in [
            ("SET", "s:", &[][..]),
            ("RPUSH", "l:", &["a", "b"][..]),
            ("SADD", "t:", &["x", "y"][..]),
            ("HSET", "h:", &["f"][..]),
            ("ZADD", "z:", &["1"][..]),
        ] {
            let key = format!("{prefix}{i}");
            let mut a: Vec<&str> = vec![cmd, &key];
            a.extend_from_slice(rest);
            a.push(&i);
            buf.extend(slotkv_tests::encode(&a));
        }
        if i.ends_with('7') {
            buf.extend(slotkv_tests::encode(&[
                "PEXPIRE",
                &format!("h:{i}"),
                "900000",
            ]));
        }
    }
    s.send_raw(&buf).expect("send");
    let (_, _) = s.drain(Duration::from_millis(500));
    wait_until(Duration::from_secs(30), "the source is filled", || {
        s.text(&["DBSIZE"]) == format!(":{}\r\n", 5 * n)
    });
    let from = format!("127.0.0.1:{}", src.port);
    let (ok, out) = redis_cli_within(
        &[
            "--cluster",
            "import",
            &addr(&c, 0),
            "--cluster-from",
            &from,
            "--cluster-copy",
        ],
        Duration::from_secs(600),
    );
    assert!(ok, "import failed:\n{}", tail(&out));
    assert_eq!(c.total_keys(), 5 * n as u64);
    let owner = c.slot_ports(0);
    let mut conns: std::collections::HashMap<u16, Conn> = Default::default();
    for i in (0..n).step_by(3) {
        for p in ["s:", "l:", "t:", "h:", "z:"] {
            let k = format!("{p}{i}");
            let port = owner[key_slot(k.as_bytes()) as usize];
            let dst = conns
                .entry(port)
                .or_insert_with(|| Conn::connect(port).expect("connect"));
            assert_eq!(
                dst.text(&["DEBUG", "DIGEST-VALUE", &k]),
                s.text(&["DEBUG", "DIGEST-VALUE", &k]),
                "{k}"
            );
            let ttl = |c: &mut Conn| {
                c.text(&["PTTL", &k])
                    .trim_start_matches(':')
                    .trim()
                    .parse::<i64>()
                    .unwrap_or(-9)
            };
            let (a, b) = (ttl(dst), ttl(&mut s));
            assert!(
                (a - b).abs() < 60_000 && (a < 0) == (b < 0),
                "{k}: {a} vs {b}"
            );
        }
    }
}

/// Bad input around migration, replayed on a redis-server cluster and a
/// datanode one: the same errors, and no key lost or duplicated.
fn bad_migration_input(kind: Server) -> Vec<String> {
    let SlotPair {
        c,
        slot,
        a,
        b,
        ida,
        idb,
    } = slot_pair(kind);
    let owner = c.slot_ports(0);
    let s = slot.to_string();
    let other = (0..16384)
        .find(|&x| owner[x] != owner[slot])
        .expect("a slot of another node");
    let o = other.to_string();
    // A standalone redis-server (no cluster) and a port that is not Redis.
    let standalone = slotkv_tests::Node::start(Server::Redis, &["--save", ""]);
    let junk = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let junk_port = junk.local_addr().expect("addr").port().to_string();
    junk.set_nonblocking(true).expect("nonblocking");
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop = done.clone();
    let junk_thread = std::thread::spawn(move || {
        // Takes connections and never answers, until told (or 30 s).
        let mut held = Vec::new();
        let end = Instant::now() + Duration::from_secs(30);
        while Instant::now() < end && !stop.load(std::sync::atomic::Ordering::Relaxed) {
            if let Ok((sock, _)) = junk.accept() {
                held.push(sock);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        held.len()
    });
    let (mut ca, mut cb) = (c.nodes[a].conn(), c.nodes[b].conn());
    let ports: Vec<String> = [c.nodes[a].port, c.nodes[b].port, standalone.port]
        .iter()
        .map(|p| p.to_string())
        .collect();
    let mut t = Transcript::new(&[
        (ports[0].as_str(), "A"),
        (ports[1].as_str(), "B"),
        (ports[2].as_str(), "S"),
        (junk_port.as_str(), "J"),
        (ida.as_str(), "<A>"),
        (idb.as_str(), "<B>"),
    ]);
    let mut run = |who: &str, conn: &mut Conn, args: &[&str]| t.run(who, conn, args);
    let sport = standalone.port.to_string();
    let unknown = "0123456789012345678901234567890123456789";
    for args in [
        &["SET", "{t}k", "v"][..],
        &["CLUSTER", "SETSLOT", &s, "MIGRATING", unknown],
        &["CLUSTER", "SETSLOT", &s, "IMPORTING", &idb],
        &["CLUSTER", "SETSLOT", &o, "MIGRATING", &idb],
        &["CLUSTER", "SETSLOT", &s, "NODE", unknown],
        &["CLUSTER", "SETSLOT", &s, "NODE", &idb],
        &["CLUSTER", "SETSLOT", &s, "BOGUS", &idb],
        &["CLUSTER", "SETSLOT", &s, "MIGRATING"],
        &["CLUSTER", "SETSLOT", "16384", "STABLE"],
        &["CLUSTER", "SETSLOT", "x", "STABLE"],
        &["CLUSTER", "SETSLOT", &s, "MIGRATING", &idb],
        // A target that never answers, and one without cluster support
        // (RESTORE-ASKING works there: a copy arrives).
        &["MIGRATE", "127.0.0.1", &junk_port, "{t}k", "0", "500"],
        &["MIGRATE", "127.0.0.1", &sport, "{t}k", "0", "1000", "COPY"],
        &["GET", "{t}k"],
        &["CLUSTER", "SETSLOT", &s, "STABLE"],
    ] {
        run("A", &mut ca, args);
    }
    for args in [
        &["CLUSTER", "SETSLOT", &s, "IMPORTING", unknown][..],
        &["CLUSTER", "SETSLOT", &s, "IMPORTING", &ida],
        &["ASKING"],
        &["RESTORE-ASKING", "{t}x", "0", "\x00garbage"],
        &["RESTORE-ASKING", "{t}x", "0", "\x00garbage"],
        &["CLUSTER", "SETSLOT", &s, "STABLE"],
        &["GET", "{t}k"],
    ] {
        run("B", &mut cb, args);
    }
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let junk_conns = junk_thread.join().unwrap_or(0);
    assert!(junk_conns >= 1, "MIGRATE never reached the silent target");
    t.seen.push(format!(
        "standalone DBSIZE -> {}",
        standalone.conn().text(&["DBSIZE"])
    ));
    t.seen
}

#[test]
fn bad_migration_input_gets_redis_errors_and_loses_nothing() {
    let redis = bad_migration_input(Server::Redis);
    let ours = bad_migration_input(Server::Datanode);
    assert_eq!(ours, redis);
    assert!(
        redis
            .iter()
            .any(|l| l.contains("GET") && l.contains("$1\r\nv")),
        "{redis:?}"
    );
}

/// A write racing the MIGRATE of its key is either applied before the key
/// moves (and moves with it) or redirected with ASK: the source never
/// makes the key again. Writers pipeline INCRs at the source while the slot
/// becomes migrating and the key moves; then, with the writers paused,
/// the source must not hold the key and the target's value must count
/// every INCR the source acknowledged. Round after round. (The routing
/// check once ran apart from the slot's lock: an INCR checked before the
/// MIGRATE and run after it made a new key on the source, and the checker
/// of the reshard test above saw the acknowledged increments vanish.)
#[test]
fn a_write_racing_the_migrate_of_its_key_is_never_lost() {
    for kind in [Server::Redis, Server::Datanode] {
        write_racing_migrate(kind, &["INCR"]);
    }
}

/// The same race with the write made by a script: the call is routed,
/// then the script locks its key's slot; a MIGRATE in between must make
/// it answer ASK, as redis-server does, rather than run and fail on the
/// key it no longer holds.
#[test]
fn a_script_racing_the_migrate_of_its_key_is_redirected() {
    const SCRIPT: &[&str] = &["EVAL", "return redis.call('INCR', KEYS[1])", "1"];
    for kind in [Server::Redis, Server::Datanode] {
        write_racing_migrate(kind, SCRIPT);
    }
}

/// Writers pipeline `write` + the key (an INCR) at the key's owner while
/// its slot becomes migrating and the key moves, round after round.
fn write_racing_migrate(kind: Server, write: &'static [&'static str]) {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::sync::Arc;
    const WRITERS: usize = 3;
    const DEPTH: usize = 16;
    let c = Cluster::start(&[kind; 3], TIMEOUT_MS, &[]);
    c.create(0);
    c.wait_ok(Duration::from_secs(30));
    let key = "race{r}";
    let slot = key_slot(key.as_bytes()).to_string();
    let owner = c.slot_ports(0)[key_slot(key.as_bytes()) as usize];
    let a = c.nodes.iter().position(|n| n.port == owner).expect("owner");
    let b = (a + 1) % 3;
    let (aid, bid) = (c.myid(a), c.myid(b));
    let mut ca = c.nodes[a].conn();
    let mut cb = c.nodes[b].conn();
    assert_eq!(
        cb.text(&["CLUSTER", "SETSLOT", &slot, "IMPORTING", &aid]),
        "+OK\r\n"
    );
    let stop = Arc::new(AtomicBool::new(false));
    let go = Arc::new(AtomicBool::new(false));
    // A pause is numbered; each writer says which pause it has seen while
    // idle, so every writer agreeing on the latest means none is mid-batch.
    let pause = Arc::new(AtomicU64::new(0));
    let idle: Arc<Vec<AtomicU64>> = Arc::new((0..WRITERS).map(|_| AtomicU64::new(0)).collect());
    let acked = Arc::new(AtomicU64::new(0));
    // A reply other than a count or ASK, which stops its writer.
    let failed = Arc::new(std::sync::Mutex::new(None::<String>));
    let writers: Vec<_> = (0..WRITERS)
        .map(|i| {
            let (stop, go, pause, idle, acked, failed) = (
                stop.clone(),
                go.clone(),
                pause.clone(),
                idle.clone(),
                acked.clone(),
                failed.clone(),
            );
            std::thread::spawn(move || -> Result<(), String> {
                let mut w = Conn::connect(owner).map_err(|e| e.to_string())?;
                let mut call = write.to_vec();
                call.push(key);
                let batch: Vec<u8> = (0..DEPTH)
                    .flat_map(|_| slotkv_tests::encode(&call))
                    .collect();
                while !stop.load(Ordering::SeqCst) {
                    if !go.load(Ordering::SeqCst) {
                        idle[i].store(pause.load(Ordering::SeqCst), Ordering::SeqCst);
                        std::thread::sleep(Duration::from_millis(1));
                        continue;
                    }
                    w.send_raw(&batch).map_err(|e| e.to_string())?;
                    for _ in 0..DEPTH {
                        let r = w.read_reply().map_err(|e| e.to_string())?;
                        match r.raw.first() {
                            Some(b':') => {
                                acked.fetch_add(1, Ordering::SeqCst);
                            }
                            _ if r.raw.starts_with(b"-ASK ") => {}
                            _ => {
                                let e = String::from_utf8_lossy(&r.raw).into_owned();
                                *failed.lock().expect("lock") = Some(e.clone());
                                return Err(e);
                            }
                        }
                    }
                }
                Ok(())
            })
        })
        .collect();
    let pause_writers = || {
        go.store(false, Ordering::SeqCst);
        let n = pause.fetch_add(1, Ordering::SeqCst) + 1;
        wait_until(Duration::from_secs(10), "the writers pause", || {
            if let Some(e) = failed.lock().expect("lock").as_ref() {
                panic!("{kind:?}: a writer got {e:?}");
            }
            idle.iter().all(|x| x.load(Ordering::SeqCst) == n)
        });
    };
    let port_b = c.nodes[b].port.to_string();
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut rounds = 0;
    while Instant::now() < deadline {
        rounds += 1;
        // The slot is the source's alone again, the key at 0 there.
        assert_eq!(
            ca.text(&["CLUSTER", "SETSLOT", &slot, "NODE", &aid]),
            "+OK\r\n"
        );
        assert_eq!(ca.text(&["SET", key, "0"]), "+OK\r\n");
        acked.store(0, Ordering::SeqCst);
        go.store(true, Ordering::SeqCst);
        wait_until(Duration::from_secs(5), "the writers bump the key", || {
            acked.load(Ordering::SeqCst) > 0
        });
        assert_eq!(
            ca.text(&["CLUSTER", "SETSLOT", &slot, "MIGRATING", &bid]),
            "+OK\r\n"
        );
        let m = ca.text(&["MIGRATE", "127.0.0.1", &port_b, key, "0", "5000", "REPLACE"]);
        assert_eq!(m, "+OK\r\n");
        pause_writers();
        let n = acked.load(Ordering::SeqCst);
        // The source answers ASK for a key it does not hold.
        let on_a = ca.text(&["GET", key]);
        assert!(
            on_a.starts_with("-ASK "),
            "{kind:?} round {rounds}: the source made the key again: {on_a:?}, {n} acknowledged"
        );
        assert_eq!(cb.text(&["ASKING"]), "+OK\r\n");
        assert_eq!(
            cb.text(&["GET", key]),
            format!("${}\r\n{n}\r\n", n.to_string().len()),
            "{kind:?} round {rounds}: the target lacks acknowledged INCRs"
        );
        assert_eq!(cb.text(&["ASKING"]), "+OK\r\n");
        assert_eq!(cb.text(&["DEL", key]), ":1\r\n");
    }
    stop.store(true, Ordering::SeqCst);
    for w in writers {
        w.join().expect("writer").expect("writer's replies");
    }
    assert!(rounds > 20, "{kind:?}: only {rounds} rounds");
}
