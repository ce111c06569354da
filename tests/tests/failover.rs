//! Failover on real processes: a killed master is replaced by its replica
//! and comes back as a replica; CLUSTER FAILOVER in its three modes; a
//! stopped (minority) master never acknowledges a write it will lose;
//! replica migration; and votes across implementations in a cluster of
//! redis-server and datanode nodes. The tutorial's steps, with the real
//! redis-cli where a person would use it.

use std::process::Command;
use std::time::{Duration, Instant};

use slotkv_tests::cluster::{redis_cli, Checker, Cluster};
use slotkv_tests::Server;

const TIMEOUT_MS: u64 = 2000;

/// Waits for `cond`; on timeout prints the tail of every node's log
/// (what a person debugging a failover needs) and panics.
fn wait_for(c: &Cluster, limit: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if cond() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    for (i, n) in c.nodes.iter().enumerate() {
        let log = n.log();
        let tail: Vec<&str> = log.lines().rev().take(45).collect();
        eprintln!("--- node {i} (port {}) ---", n.port);
        for l in tail.iter().rev() {
            eprintln!("{l}");
        }
    }
    panic!("timed out after {limit:?} waiting for: {what}");
}

fn role(c: &Cluster, i: usize) -> String {
    c.info_field(i, &["INFO", "replication"], "role")
        .unwrap_or_default()
}

fn master_port(c: &Cluster, i: usize) -> Option<u16> {
    c.info_field(i, &["INFO", "replication"], "master_port")
        .and_then(|p| p.parse().ok())
}

/// Index of the node replicating node `m`.
fn replica_of(c: &Cluster, m: usize) -> usize {
    let port = c.nodes[m].port;
    let mut found = None;
    wait_for(
        c,
        Duration::from_secs(20),
        "a replica of the master",
        || {
            found = (0..c.nodes.len()).find(|&i| i != m && master_port(c, i) == Some(port));
            found.is_some()
        },
    );
    found.expect("checked")
}

/// Every replica's link is up (diskless syncs start after
/// `repl-diskless-sync-delay`; a replica that never synced may not fail
/// over, as in Redis).
fn wait_synced(c: &Cluster) {
    wait_for(c, Duration::from_secs(30), "every replica synced", || {
        (0..c.nodes.len()).all(|i| {
            role(c, i) != "slave"
                || c.info_field(i, &["INFO", "replication"], "master_link_status")
                    .as_deref()
                    == Some("up")
        })
    });
}

/// `CLUSTER FAILOVER` on `replica`: the roles of it and `master` swap,
/// the master logs the request, and the whole cluster is ok again.
fn manual_handover(c: &Cluster, replica: usize, master: usize) {
    wait_for(c, Duration::from_secs(20), "the replica is in sync", || {
        c.info_field(replica, &["INFO", "replication"], "master_link_status")
            .as_deref()
            == Some("up")
    });
    // The master must know its replica first: MFSTART from a node it does
    // not count as its replica is ignored, as in Redis.
    let rid = c.myid(replica);
    wait_for(
        c,
        Duration::from_secs(20),
        "the master knows its replica",
        || {
            c.nodes_of(master)
                .iter()
                .any(|l| l.starts_with(&rid) && l.contains(" slave ") && !l.contains("fail"))
        },
    );
    assert_eq!(c.cli(replica, &["CLUSTER", "FAILOVER"]).trim(), "OK");
    wait_for(c, Duration::from_secs(20), "the roles swap", || {
        role(c, replica) == "master" && role(c, master) == "slave"
    });
    assert!(c.nodes[master]
        .log()
        .contains("Manual failover requested by replica"));
    wait_for(c, Duration::from_secs(30), "cluster ok", || {
        (0..c.nodes.len()).all(|i| c.state(i).as_deref() == Some("ok"))
    });
}

fn masters(c: &Cluster) -> Vec<usize> {
    (0..c.nodes.len())
        .filter(|&i| role(c, i) == "master")
        .collect()
}

/// The consistency checker against node `i`, running for `secs`.
fn checker(c: &Cluster, i: usize, secs: u64, fail_on_lost: bool) -> Checker {
    Checker::start(
        env!("CARGO_BIN_EXE_consistency-check"),
        c.nodes[i].port,
        secs,
        fail_on_lost,
    )
}

#[test]
fn a_killed_master_is_replaced_and_comes_back_as_a_replica() {
    // Redis 7 refuses DEBUG unless enabled; the tutorial's crash needs it.
    let mut c = Cluster::start(
        &[Server::Datanode; 6],
        TIMEOUT_MS,
        &["--enable-debug-command", "yes"],
    );
    c.create(1);
    c.wait_ok(Duration::from_secs(30));
    wait_synced(&c);
    let m = *masters(&c).iter().find(|&&i| i != 0).expect("a master");
    let r = replica_of(&c, m);
    let checker = checker(&c, 0, 14, false);
    std::thread::sleep(Duration::from_secs(2));
    // As the tutorial does it.
    let (_, out) = redis_cli(&["-p", &c.nodes[m].port.to_string(), "DEBUG", "SEGFAULT"]);
    assert!(!out.contains("OK"), "{out}");
    c.nodes[m].wait_exit();
    let killed = Instant::now();
    wait_for(
        &c,
        Duration::from_secs(30),
        "the replica is promoted",
        || role(&c, r) == "master",
    );
    let took = killed.elapsed();
    let log = c.nodes[r].log();
    for line in [
        "Start of election delayed for",
        "Starting a failover election for epoch",
        "Failover election won: I'm the new master.",
    ] {
        assert!(log.contains(line), "replica log lacks {line:?}:\n{log}");
    }
    let voters: usize = (0..6)
        .filter(|&i| i != m && c.nodes[i].log().contains("Failover auth granted to"))
        .count();
    assert!(voters >= 2, "a majority of the masters voted");
    // Served within the bound: node timeout plus the election.
    assert!(
        took < Duration::from_millis(TIMEOUT_MS + 4000),
        "promotion took {took:?}"
    );
    let others: Vec<usize> = (0..6).filter(|&i| i != m).collect();
    wait_for(&c, Duration::from_secs(30), "cluster ok again", || {
        others.iter().all(|&i| c.state(i).as_deref() == Some("ok"))
    });
    let (_, nums, text) = checker.finish();
    assert_eq!(nums.len(), 6, "{text}");
    assert!(nums[2] > 1000, "the checker kept writing:\n{text}");
    // Errors only while the slots were unserved: the last seconds of the
    // run (well after the promotion) add none.
    let errors: Vec<(u64, u64)> = text
        .lines()
        .map(|l| {
            let n: Vec<u64> = l
                .split(|ch: char| !ch.is_ascii_digit())
                .filter_map(|w| w.parse().ok())
                .collect();
            (
                n.get(1).copied().unwrap_or(0),
                n.get(3).copied().unwrap_or(0),
            )
        })
        .collect();
    let tail = &errors[errors.len().saturating_sub(3)..];
    assert!(
        tail.windows(2).all(|w| w[0] == w[1]),
        "errors went on after the failover:\n{text}"
    );

    // The old master returns as a replica of the winner, with its data.
    c.nodes[m].restart();
    let rport = c.nodes[r].port;
    wait_for(
        &c,
        Duration::from_secs(30),
        "the old master follows the winner",
        || {
            master_port(&c, m) == Some(rport)
                && c.info_field(m, &["INFO", "replication"], "master_link_status")
                    .as_deref()
                    == Some("up")
        },
    );
    wait_for(&c, Duration::from_secs(20), "same keys on both", || {
        c.cli(m, &["DBSIZE"]) == c.cli(r, &["DBSIZE"])
    });
    // Its stale data is not served: a key of its slots is redirected.
    let mut conn = c.nodes[m].conn();
    let key = (0..10_000)
        .map(|i| format!("key:{i}"))
        .find(|k| c.cli(r, &["EXISTS", k]).trim() == "1")
        .expect("a key of the shard");
    let reply = conn.text(&["GET", &key]);
    assert!(reply.starts_with("-MOVED"), "{reply}");
}

#[test]
fn manual_failover_in_every_mode_and_no_write_lost_by_default() {
    let c = Cluster::start(&[Server::Datanode; 6], TIMEOUT_MS, &[]);
    c.create(1);
    c.wait_ok(Duration::from_secs(30));
    wait_synced(&c);
    let m = *masters(&c).iter().find(|&&i| i != 0).expect("a master");
    let r = replica_of(&c, m);
    // On a master: Redis's error.
    let out = c.cli(m, &["CLUSTER", "FAILOVER"]);
    assert!(
        out.contains("You should send CLUSTER FAILOVER to a replica"),
        "{out}"
    );
    assert!(c
        .cli(r, &["CLUSTER", "FAILOVER", "SOON"])
        .contains("syntax error"));

    // Default: under write load, not one acknowledged write lost.
    let checker = checker(&c, 0, 8, true);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(c.cli(r, &["CLUSTER", "FAILOVER"]).trim(), "OK");
    wait_for(&c, Duration::from_secs(15), "roles swap", || {
        role(&c, r) == "master" && role(&c, m) == "slave"
    });
    assert!(c.nodes[m]
        .log()
        .contains("Manual failover requested by replica"));
    assert!(c.nodes[r]
        .log()
        .contains("All master replication stream processed, manual failover can start."));
    let (ok, nums, text) = checker.finish();
    assert!(ok, "writes were lost:\n{text}");
    assert_eq!(nums.get(4), Some(&0), "{text}");

    // FORCE: the old master takes its shard back through an election.
    c.wait_ok(Duration::from_secs(20));
    assert_eq!(c.cli(m, &["CLUSTER", "FAILOVER", "FORCE"]).trim(), "OK");
    wait_for(&c, Duration::from_secs(15), "FORCE swaps back", || {
        role(&c, m) == "master" && role(&c, r) == "slave"
    });
    assert!(c.nodes[m]
        .log()
        .contains("Forced failover user request accepted."));

    // TAKEOVER: no election, a new epoch of its own.
    c.wait_ok(Duration::from_secs(20));
    let epoch = |i: usize| -> u64 {
        c.info_field(i, &["CLUSTER", "INFO"], "cluster_my_epoch")
            .and_then(|e| e.parse().ok())
            .unwrap_or(0)
    };
    let before = epoch(m);
    assert_eq!(c.cli(r, &["CLUSTER", "FAILOVER", "TAKEOVER"]).trim(), "OK");
    wait_for(&c, Duration::from_secs(15), "TAKEOVER swaps", || {
        role(&c, r) == "master" && role(&c, m) == "slave"
    });
    assert!(epoch(r) > before);
    assert!(c.nodes[r]
        .log()
        .contains("Taking over the master (user request)."));
    c.wait_ok(Duration::from_secs(20));
}

#[test]
fn a_stopped_master_never_acknowledges_a_write_it_will_lose() {
    let mut c = Cluster::start(&[Server::Datanode; 6], TIMEOUT_MS, &[]);
    c.create(1);
    c.wait_ok(Duration::from_secs(30));
    wait_synced(&c);
    let m = *masters(&c).iter().find(|&&i| i != 0).expect("a master");
    let r = replica_of(&c, m);
    // A key this master serves.
    let key = (0..10_000)
        .map(|i| format!("k{i}"))
        .find(|k| c.cli(m, &["SET", k, "before"]).trim() == "OK")
        .expect("a key of the master");
    let mut conn = c.nodes[m].conn();
    let pid = c.nodes[m].pid().to_string();
    assert!(Command::new("kill")
        .args(["-STOP", &pid])
        .status()
        .expect("kill")
        .success());
    // Sent while it sleeps: waits in its socket.
    conn.send_raw(&slotkv_tests::encode(&["SET", &key, "during"]))
        .expect("send");
    wait_for(
        &c,
        Duration::from_secs(30),
        "the replica takes over",
        || role(&c, r) == "master",
    );
    assert!(Command::new("kill")
        .args(["-CONT", &pid])
        .status()
        .expect("kill")
        .success());
    let reply = String::from_utf8_lossy(&conn.read_reply().expect("a reply").raw).into_owned();
    assert!(
        reply.starts_with("-CLUSTERDOWN") || reply.starts_with("-MOVED"),
        "the stale master answered {reply:?}"
    );
    let rport = c.nodes[r].port;
    wait_for(&c, Duration::from_secs(30), "it turns replica", || {
        master_port(&c, m) == Some(rport)
    });
    assert_eq!(c.cli(r, &["GET", &key]).trim(), "before");
    c.nodes[m].signal_and_wait("-TERM");
}

#[test]
fn a_spare_replica_migrates_to_an_orphaned_master() {
    let mut c = Cluster::start(&[Server::Datanode; 7], 5000, &[]);
    c.create(1);
    c.wait_ok(Duration::from_secs(30));
    wait_synced(&c);
    let ms = masters(&c);
    assert_eq!(ms.len(), 3);
    let count = |c: &Cluster, m: usize| {
        (0..7)
            .filter(|&i| master_port(c, i) == Some(c.nodes[m].port))
            .count()
    };
    let rich = *ms
        .iter()
        .find(|&&m| count(&c, m) == 2)
        .expect("a master with two");
    let poor = *ms
        .iter()
        .find(|&&m| count(&c, m) == 1)
        .expect("a master with one");
    let victim = replica_of(&c, poor);
    // Every node must know who replicates whom before the victim dies
    // (gossip spreads it within half a node timeout).
    wait_for(
        &c,
        Duration::from_secs(20),
        "every node knows the replicas",
        || (0..7).all(|i| c.nodes_of(i).iter().filter(|l| l.contains("slave")).count() == 4),
    );
    c.nodes[victim].signal_and_wait("-KILL");
    let start = Instant::now();
    let port = c.nodes[poor].port;
    wait_for(&c, Duration::from_secs(30), "a replica migrates", || {
        (0..7).any(|i| i != victim && master_port(&c, i) == Some(port))
    });
    let took = start.elapsed();
    let mover = (0..7)
        .find(|&i| i != victim && master_port(&c, i) == Some(port))
        .expect("found");
    assert!(c.nodes[mover]
        .log()
        .contains("Migrating to orphaned master"));
    assert_eq!(count(&c, rich), 1, "it came from the master with two");
    // Failure detection, then Redis's 5 s grace period: within three node
    // timeouts.
    assert!(took < Duration::from_secs(3 * 5), "migration took {took:?}");
}

#[test]
fn failover_across_implementations_both_ways() {
    use Server::{Datanode, Redis};
    let mut c = Cluster::start(
        &[Redis, Redis, Redis, Datanode, Datanode, Datanode],
        TIMEOUT_MS,
        &[],
    );
    c.create(1);
    c.wait_ok(Duration::from_secs(30));
    wait_synced(&c);
    // redis-cli makes the first three masters: redis-server masters with
    // datanode replicas.
    let m = 1;
    let r = replica_of(&c, m);
    assert!(r >= 3, "replica {r} is a datanode");
    for i in 0..50 {
        let (_, out) = redis_cli(&[
            "-c",
            "-p",
            &c.nodes[0].port.to_string(),
            "SET",
            &format!("x{i}"),
            "v",
        ]);
        assert!(out.contains("OK"), "{out}");
    }
    // (A replica that never synced may not fail over, as in Redis.)
    wait_for(
        &c,
        Duration::from_secs(20),
        "the replica's link is up",
        || {
            c.info_field(r, &["INFO", "replication"], "master_link_status")
                .as_deref()
                == Some("up")
        },
    );
    // A datanode replica fails over a dead redis-server master, elected by
    // redis-server votes.
    c.nodes[m].signal_and_wait("-KILL");
    wait_for(
        &c,
        Duration::from_secs(30),
        "the datanode replica wins",
        || role(&c, r) == "master",
    );
    assert!((0..3).any(|i| i != m && c.nodes[i].log().contains("Failover auth granted to")));
    c.nodes[m].restart();
    let rport = c.nodes[r].port;
    wait_for(
        &c,
        Duration::from_secs(30),
        "redis-server returns as its replica",
        || {
            master_port(&c, m) == Some(rport)
                && c.info_field(m, &["INFO", "replication"], "master_link_status")
                    .as_deref()
                    == Some("up")
        },
    );
    let others: Vec<usize> = (0..6).collect();
    wait_for(&c, Duration::from_secs(30), "cluster ok", || {
        others.iter().all(|&i| c.state(i).as_deref() == Some("ok"))
    });
    // And back: the redis-server replica takes over from the datanode
    // master with a manual failover, voted by redis-server and datanode;
    // then the datanode replica takes it back from the redis-server master.
    manual_handover(&c, m, r);
    manual_handover(&c, r, m);
    for i in 0..50 {
        let (_, out) = redis_cli(&[
            "-c",
            "-p",
            &c.nodes[3].port.to_string(),
            "GET",
            &format!("x{i}"),
        ]);
        assert!(out.contains('v'), "x{i}: {out}");
    }
}

/// The fault-injection hooks failover tests use, with Redis's names.
#[test]
fn debug_hooks_drop_bus_messages_and_break_links() {
    let mut c = Cluster::start(
        &[Server::Datanode; 3],
        TIMEOUT_MS,
        &["--enable-debug-command", "yes"],
    );
    c.create(0);
    c.wait_ok(Duration::from_secs(30));
    // Pings node 0 sent and still waits a pong for (CLUSTER NODES field 4).
    let waiting = |c: &Cluster| -> Vec<String> {
        c.nodes_of(0)
            .iter()
            .filter(|l| !l.contains("myself"))
            .filter_map(|l| l.split(' ').nth(4).map(str::to_string))
            .filter(|p| p != "0")
            .collect()
    };
    // Dropping every PONG: node 0's pings are never answered, so their
    // send times stay (as on redis-server, other traffic still counts as
    // a sign of life, so nothing is marked failing).
    assert_eq!(
        c.cli(0, &["DEBUG", "DROP-CLUSTER-PACKET-FILTER", "1"])
            .trim(),
        "OK"
    );
    wait_for(&c, Duration::from_secs(20), "unanswered pings", || {
        let a = waiting(&c);
        std::thread::sleep(Duration::from_millis(1200));
        !a.is_empty() && waiting(&c).iter().any(|p| a.contains(p))
    });
    assert!(c.nodes[0]
        .log()
        .contains("Dropping packet that matches debug drop filter"));
    assert_eq!(
        c.cli(0, &["DEBUG", "DROP-CLUSTER-PACKET-FILTER", "-1"])
            .trim(),
        "OK"
    );

    // CLUSTERLINK KILL: the links are closed and come back new.
    let id1 = c.myid(1);
    let links = |c: &Cluster| c.cli(0, &["CLUSTER", "LINKS"]);
    let before = links(&c);
    assert!(c
        .cli(0, &["DEBUG", "CLUSTERLINK", "KILL", "all", &"0".repeat(40)])
        .contains("ERR Unknown node"));
    assert_eq!(
        c.cli(0, &["DEBUG", "CLUSTERLINK", "KILL", "all", &id1])
            .trim(),
        "OK"
    );
    wait_for(&c, Duration::from_secs(10), "new links", || {
        let now = links(&c);
        now != before && now.matches(&id1).count() == 2
    });
    // The pings left unanswered are answered on the new links. (A node
    // with a ping outstanding is not pinged again on the same link, by
    // redis-server either: without new links only the stuck-link rule, no
    // data for half the node timeout, would bring pongs back, and the
    // peers' own pings keep that from firing for an unbounded time.)
    let id2 = c.myid(2);
    assert_eq!(
        c.cli(0, &["DEBUG", "CLUSTERLINK", "KILL", "all", &id2])
            .trim(),
        "OK"
    );
    wait_for(&c, Duration::from_secs(20), "pongs again", || {
        waiting(&c).is_empty()
    });

    // A peer that stops reading: with cluster-link-sendbuf-limit its link
    // is freed instead of buffering without bound.
    assert_eq!(
        c.cli(
            0,
            &["CONFIG", "SET", "cluster-link-sendbuf-limit", "1000000"]
        )
        .trim(),
        "OK"
    );
    let pid = c.nodes[1].pid().to_string();
    assert!(Command::new("kill")
        .args(["-STOP", &pid])
        .status()
        .expect("kill")
        .success());
    let big = "x".repeat(1 << 20);
    let mut conn = c.nodes[0].conn();
    let exceeded = |c: &Cluster| {
        c.info_field(
            0,
            &["CLUSTER", "INFO"],
            "total_cluster_links_buffer_limit_exceeded",
        )
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0)
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while exceeded(&c) == 0 && Instant::now() < deadline {
        conn.text(&["PUBLISH", "ch", &big]);
    }
    assert!(Command::new("kill")
        .args(["-CONT", &pid])
        .status()
        .expect("kill")
        .success());
    assert!(exceeded(&c) > 0, "no link was freed");
    c.nodes[1].signal_and_wait("-TERM");
}

/// Redis's cluster tests reset a node inside MULTI: CLUSTER RESET HARD
/// then CLUSTER SET-CONFIG-EPOCH, answered as redis-server answers.
#[test]
fn cluster_reset_hard_and_set_config_epoch_inside_multi() {
    let c = Cluster::start(&[Server::Redis, Server::Datanode], TIMEOUT_MS, &[]);
    let mut replies = Vec::new();
    for i in 0..2 {
        let mut conn = c.nodes[i].conn();
        let mut got = Vec::new();
        for cmd in [
            vec!["MULTI"],
            vec!["CLUSTER", "RESET", "HARD"],
            vec!["CLUSTER", "SET-CONFIG-EPOCH", "5"],
            vec!["EXEC"],
        ] {
            got.push(conn.text(&cmd));
        }
        for f in ["cluster_current_epoch", "cluster_my_epoch"] {
            got.push(c.info_field(i, &["CLUSTER", "INFO"], f).unwrap_or_default());
        }
        replies.push(got);
    }
    assert_eq!(replies[1], replies[0]);
    assert_eq!(replies[1][3], "*2\r\n+OK\r\n+OK\r\n");
    assert_eq!(replies[1][5], "5");
}
