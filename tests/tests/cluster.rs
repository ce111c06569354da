//! Cluster mode driven by the real tools: `redis-cli --cluster create`,
//! `check`, `info`, `redis-cli -c`; a mixed cluster with a real
//! redis-server; failure detection; restarts; bad input on the bus.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use slotkv_tests::cluster::{redis_cli, wait_until, Cluster};
use slotkv_tests::{Node, Server};

const D: Server = Server::Datanode;

fn port_of_owner(c: &Cluster, slot: u16) -> u16 {
    for (i, n) in c.nodes.iter().enumerate() {
        let me = c
            .nodes_of(i)
            .into_iter()
            .find(|l| l.contains("myself"))
            .unwrap_or_default();
        for tok in me.split(' ').skip(8) {
            let (a, b) = match tok.split_once('-') {
                Some((a, b)) => (a.parse().unwrap_or(1), b.parse().unwrap_or(0)),
                None => (tok.parse().unwrap_or(1), tok.parse().unwrap_or(0)),
            };
            if (a..=b).contains(&slot) {
                return n.port;
            }
        }
    }
    panic!("no node serves slot {slot}");
}

/// Runs `redis-cli -c -p port` on a pseudo-terminal, types `input`, and
/// returns what it printed once `until` shows up (bounded).
fn interactive_cli(port: u16, input: &str, until: &str) -> String {
    use std::process::{Command, Stdio};
    let mut child = Command::new("script")
        .args(["-qec", &format!("redis-cli -c -p {port}"), "/dev/null"])
        .env("TERM", "dumb")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("script (util-linux)");
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(input.as_bytes()).unwrap();
    let mut out = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = out.read(&mut buf) {
            if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut seen = String::new();
    while Instant::now() < deadline && !seen.contains(until) {
        if let Ok(chunk) = rx.recv_timeout(Duration::from_millis(100)) {
            seen.push_str(&String::from_utf8_lossy(&chunk));
        }
    }
    drop(stdin);
    let _ = child.kill();
    let _ = child.wait();
    seen
}

fn replica_lines(c: &Cluster, i: usize) -> usize {
    c.nodes_of(i)
        .iter()
        .filter(|l| l.split(' ').nth(2).is_some_and(|f| f.contains("slave")))
        .count()
}

#[test]
fn tutorial_create_check_redirects_and_restart() {
    let mut c = Cluster::start(&[D; 6], 5000, &[]);
    let out = c.create(1);
    assert!(
        out.contains("[OK] All nodes agree about slots configuration."),
        "{out}"
    );
    assert!(out.contains("[OK] All 16384 slots covered."), "{out}");
    c.wait_ok(Duration::from_secs(30));
    wait_until(
        Duration::from_secs(30),
        "every node knows 3 replicas",
        || (0..6).all(|i| replica_lines(&c, i) == 3),
    );
    let sig = c.signature(0);
    assert_eq!(
        sig.matches('|').count(),
        2,
        "three masters with slots: {sig}"
    );
    for i in 1..6 {
        assert_eq!(c.signature(i), sig, "node {i} disagrees about slots");
    }

    let first = c.addrs()[0].clone();
    let (ok, check) = redis_cli(&["--cluster", "check", &first]);
    assert!(ok, "{check}");
    assert!(
        check.contains("[OK] All nodes agree about slots configuration."),
        "{check}"
    );
    assert!(check.contains("[OK] All 16384 slots covered."), "{check}");
    assert!(!check.contains("[ERR]"), "{check}");
    assert_eq!(
        check.matches("1 additional replica(s)").count(),
        3,
        "{check}"
    );
    let (ok, info) = redis_cli(&["--cluster", "info", &first]);
    assert!(ok, "{info}");
    assert!(info.contains("[OK] 0 keys in 3 masters."), "{info}");

    // redis-cli -c follows MOVED; without -c the redirect is visible.
    for i in 0..6 {
        assert_eq!(
            c.cli(i, &["-c", "SET", &format!("key:{i}"), &format!("v{i}")])
                .trim(),
            "OK"
        );
    }
    assert_eq!(c.cli(0, &["-c", "SET", "foo", "bar"]).trim(), "OK");
    for i in 0..6 {
        assert_eq!(
            c.cli(5 - i, &["-c", "GET", &format!("key:{i}")]).trim(),
            format!("v{i}")
        );
        assert_eq!(c.cli(i, &["-c", "GET", "foo"]).trim(), "bar");
    }
    let owner = port_of_owner(&c, 12182);
    let other = c.nodes.iter().position(|n| n.port != owner).unwrap();
    // Interactive redis-cli -c says where it was redirected, as in the
    // tutorial (a pty from `script`; TERM=dumb keeps linenoise simple).
    let session = interactive_cli(c.nodes[other].port, "set foo bar\nget foo\n", "\"bar\"");
    assert!(
        session.contains(&format!(
            "-> Redirected to slot [12182] located at 127.0.0.1:{owner}"
        )),
        "{session}"
    );
    let mut conn = c.nodes[other].conn();
    assert_eq!(
        conn.text(&["GET", "foo"]),
        format!("-MOVED 12182 127.0.0.1:{owner}\r\n")
    );
    assert_eq!(
        conn.text(&["MSET", "a", "1", "b", "2"]),
        "-CROSSSLOT Keys in request don't hash to the same slot\r\n"
    );
    assert_eq!(
        conn.text(&["SELECT", "1"]),
        "-ERR SELECT is not allowed in cluster mode\r\n"
    );
    let mut own = Node::conn(&c.nodes[c.nodes.iter().position(|n| n.port == owner).unwrap()]);
    assert_eq!(
        own.text(&["MSET", "{foo}1", "x", "{foo}2", "y"]),
        "+OK\r\n",
        "keys sharing a hash tag go together"
    );
    // A transaction whose commands span slots is refused at EXEC.
    assert_eq!(own.text(&["MULTI"]), "+OK\r\n");
    assert_eq!(own.text(&["SET", "foo", "1"]), "+QUEUED\r\n");
    assert!(own.text(&["SET", "hello", "1"]).starts_with("-MOVED 866 "));
    assert!(own.text(&["EXEC"]).starts_with("-EXECABORT"));
    let owner_id = c.myid(c.nodes.iter().position(|n| n.port == owner).unwrap());
    let reps = conn.cmd(&["CLUSTER", "REPLICAS", &owner_id]).unwrap().tree;
    match reps {
        slotkv_tests::Reply::Agg(b'*', lines) => assert_eq!(lines.len(), 1, "one replica each"),
        other => panic!("CLUSTER REPLICAS: {other:?}"),
    }
    let info = conn.text(&["INFO", "cluster"]);
    assert!(info.contains("cluster_enabled:1\r\n"), "{info}");
    let slots = conn.cmd(&["CLUSTER", "SLOTS"]).unwrap().tree;
    match slots {
        slotkv_tests::Reply::Agg(b'*', ranges) => {
            assert_eq!(ranges.len(), 3);
            for r in ranges {
                let slotkv_tests::Reply::Agg(_, parts) = r else {
                    panic!("bad range")
                };
                assert_eq!(parts.len(), 4, "start, end, master, one replica");
            }
        }
        other => panic!("CLUSTER SLOTS: {other:?}"),
    }

    // PUBLISH on one node reaches subscribers on every node.
    let mut subs: Vec<_> = (0..6).map(|i| c.nodes[i].conn()).collect();
    for s in subs.iter_mut() {
        assert!(s.text(&["SUBSCRIBE", "news"]).contains("subscribe"));
    }
    assert_eq!(c.nodes[2].conn().text(&["PUBLISH", "news", "hi"]), ":1\r\n");
    for s in subs.iter_mut() {
        let m = s.read_reply().expect("message");
        assert_eq!(
            String::from_utf8_lossy(&m.raw),
            "*3\r\n$7\r\nmessage\r\n$4\r\nnews\r\n$2\r\nhi\r\n"
        );
    }
    // Sharded pub/sub stays within the shard: the owner of the channel's
    // slot and its replica hear it; others redirect.
    let owner_i = c.nodes.iter().position(|n| n.port == owner).unwrap();
    let owner_id = c.myid(owner_i);
    let replica_i = (0..6)
        .find(|&i| {
            c.nodes_of(i).iter().any(|l| {
                l.contains("myself,slave") && l.split(' ').nth(3) == Some(owner_id.as_str())
            })
        })
        .expect("a replica of foo's owner");
    let mut on_replica = c.nodes[replica_i].conn();
    assert!(on_replica
        .text(&["SSUBSCRIBE", "foo"])
        .contains("ssubscribe"));
    let mut on_owner = c.nodes[owner_i].conn();
    assert!(on_owner.text(&["SSUBSCRIBE", "foo"]).contains("ssubscribe"));
    assert!(conn
        .text(&["SSUBSCRIBE", "foo"])
        .starts_with("-MOVED 12182"));
    assert_eq!(
        c.nodes[owner_i].conn().text(&["SPUBLISH", "foo", "s1"]),
        ":1\r\n"
    );
    for s in [&mut on_owner, &mut on_replica] {
        let m = s.read_reply().expect("smessage");
        assert_eq!(
            String::from_utf8_lossy(&m.raw),
            "*3\r\n$8\r\nsmessage\r\n$3\r\nfoo\r\n$2\r\ns1\r\n"
        );
    }
    drop(subs);

    // Restart every node: same ids, same slots, ok again, data kept.
    let ids: Vec<String> = (0..6).map(|i| c.myid(i)).collect();
    for n in c.nodes.iter_mut() {
        n.signal_and_wait("-TERM");
    }
    for n in c.nodes.iter_mut() {
        n.restart();
    }
    for (i, id) in ids.iter().enumerate() {
        assert_eq!(&c.myid(i), id, "node {i} kept its id");
    }
    c.wait_ok(Duration::from_secs(30));
    wait_until(
        Duration::from_secs(30),
        "slot views agree after restart",
        || (0..6).all(|i| c.signature(i) == sig),
    );
    assert_eq!(c.cli(3, &["-c", "GET", "foo"]).trim(), "bar");
}

#[test]
fn failure_detection_marks_a_stopped_master_failed_and_clears_it() {
    let timeout = 2000u64;
    let c = Cluster::start(&[D; 3], timeout, &[]);
    c.create(0);
    c.wait_ok(Duration::from_secs(30));
    let victim = c.myid(2);
    let pid = c.nodes[2].pid().to_string();
    let flagged = |i: usize, word: &str| {
        c.nodes_of(i)
            .iter()
            .find(|l| l.starts_with(&victim))
            .and_then(|l| l.split(' ').nth(2).map(|f| f.split(',').any(|w| w == word)))
            .unwrap_or(false)
    };
    let stop = std::process::Command::new("kill")
        .args(["-STOP", &pid])
        .status()
        .unwrap();
    assert!(stop.success());
    let t0 = Instant::now();
    // PFAIL after the timeout, FAIL once the majority agrees: within
    // twice the timeout (plus the ping interval and scheduling slack).
    wait_until(
        Duration::from_millis(2 * timeout + 3000),
        "both masters flag the stopped one as fail",
        || flagged(0, "fail") && flagged(1, "fail"),
    );
    let took = t0.elapsed();
    assert_eq!(c.state(0).as_deref(), Some("fail"), "a slot owner is down");
    // Keyed commands are refused while the cluster is down.
    let reply = c.nodes[0].conn().text(&["GET", "somekey"]);
    assert!(reply.starts_with("-CLUSTERDOWN"), "{reply}");
    let cont = std::process::Command::new("kill")
        .args(["-CONT", &pid])
        .status()
        .unwrap();
    assert!(cont.success());
    wait_until(
        Duration::from_secs(20),
        "FAIL cleared after SIGCONT",
        || !flagged(0, "fail") && !flagged(1, "fail"),
    );
    c.wait_ok(Duration::from_secs(20));
    eprintln!("failure detected in {took:?}");
}

#[test]
fn mixed_cluster_with_a_real_redis_server() {
    let c = Cluster::start(&[D, D, Server::Redis], 5000, &[]);
    let out = c.create(0);
    assert!(out.contains("[OK] All 16384 slots covered."), "{out}");
    c.wait_ok(Duration::from_secs(30));
    wait_until(Duration::from_secs(20), "all three agree on slots", || {
        let s = c.signature(0);
        s.matches('|').count() == 2 && c.signature(1) == s && c.signature(2) == s
    });
    // Every node returns the same CLUSTER SLOTS, byte for byte.
    let slots: Vec<Vec<u8>> = (0..3)
        .map(|i| c.nodes[i].conn().cmd(&["CLUSTER", "SLOTS"]).unwrap().raw)
        .collect();
    assert_eq!(slots[0], slots[2], "datanode and redis-server disagree");
    assert_eq!(slots[1], slots[2]);
    // CLUSTER NODES lines have the same shape on both implementations.
    for i in 0..3 {
        for l in c.nodes_of(i) {
            let f: Vec<&str> = l.split(' ').collect();
            assert!(f.len() >= 9, "{l}");
            assert_eq!(f[0].len(), 40);
            assert!(f[1].starts_with("127.0.0.1:") && f[1].contains('@'), "{l}");
            assert!(f[2].contains("master"), "{l}");
            assert_eq!(f[3], "-");
            assert_eq!(f[7], "connected", "{l}");
        }
    }
    let epochs = |i: usize| -> Vec<String> {
        let mut v: Vec<String> = c
            .nodes_of(i)
            .iter()
            .map(|l| {
                let f: Vec<&str> = l.split(' ').collect();
                format!("{} {}", f[0], f[6])
            })
            .collect();
        v.sort();
        v
    };
    assert_eq!(epochs(0), epochs(2), "config epochs agree");
    // CLUSTER SHARDS: the same shards and fields (order aside).
    let shards: Vec<slotkv_tests::Reply> = (0..3)
        .map(|i| {
            let t = c.nodes[i].conn().cmd(&["CLUSTER", "SHARDS"]).unwrap().tree;
            slotkv_tests::diff::normalize(&t)
        })
        .collect();
    assert_eq!(
        shards[0], shards[2],
        "CLUSTER SHARDS differs from redis-server's"
    );
    assert_eq!(shards[1], shards[2]);
    // INFO's cluster section has the same fields.
    let fields = |i: usize| -> Vec<String> {
        let t = c.nodes[i].conn().text(&["CLUSTER", "INFO"]);
        t.split("\r\n")
            .filter_map(|l| l.split_once(':').map(|(k, _)| k.to_string()))
            .filter(|k| !k.starts_with("cluster_stats_messages_") && !k.starts_with('$'))
            .collect()
    };
    assert_eq!(fields(0), fields(2), "CLUSTER INFO fields");
    // Keys written through any node are served through every node.
    for i in 0..30 {
        let k = format!("mixed:{i}");
        assert_eq!(
            c.cli(i % 3, &["-c", "SET", &k, &i.to_string()]).trim(),
            "OK"
        );
    }
    for i in 0..30 {
        let k = format!("mixed:{i}");
        assert_eq!(c.cli((i + 1) % 3, &["-c", "GET", &k]).trim(), i.to_string());
    }
    for i in 0..3 {
        let info = c.info_field(i, &["INFO"], "cluster_enabled");
        assert_eq!(info.as_deref(), Some("1"));
    }
    // Two bus links per other node (one each way), as redis-server counts.
    wait_until(Duration::from_secs(20), "two links per peer", || {
        (0..3).all(|i| {
            c.info_field(i, &["INFO", "clients"], "cluster_connections")
                .as_deref()
                == Some("4")
        })
    });
    // Redis 7.0 understood every extension we sent it.
    let log = c.nodes[2].log();
    assert!(!log.contains("unknown extension"), "{log}");
}

fn bus_conn(port: u16) -> TcpStream {
    let s = TcpStream::connect(("127.0.0.1", port + 10000)).expect("bus connect");
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s
}

/// True when the peer closed the connection.
fn closed(mut s: TcpStream) -> bool {
    let mut b = [0u8; 4096];
    loop {
        match s.read(&mut b) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) => return e.kind() == std::io::ErrorKind::ConnectionReset,
        }
    }
}

#[test]
fn bus_drops_bad_input_and_closes_the_link() {
    let c = Cluster::start(&[D], 5000, &[]);
    let port = c.nodes[0].port;
    let before = c.nodes_of(0);
    // Garbage.
    let mut s = bus_conn(port);
    s.write_all(b"hello there, this is not a cluster bus frame\r\n")
        .unwrap();
    assert!(closed(s), "garbage closes the link");
    // Right length field, wrong signature.
    let mut s = bus_conn(port);
    let mut f = vec![0u8; 2256];
    f[0..4].copy_from_slice(b"XXmb");
    f[4..8].copy_from_slice(&2256u32.to_be_bytes());
    s.write_all(&f).unwrap();
    assert!(closed(s), "wrong signature closes the link");
    // Oversized length announced: refused before any allocation.
    let mut s = bus_conn(port);
    let mut h = b"RCmb".to_vec();
    h.extend_from_slice(&u32::MAX.to_be_bytes());
    s.write_all(&h).unwrap();
    assert!(closed(s), "oversized frame closes the link");
    // Too short to hold a header.
    let mut s = bus_conn(port);
    let mut h = b"RCmb".to_vec();
    h.extend_from_slice(&16u32.to_be_bytes());
    h.extend_from_slice(&[0u8; 8]);
    s.write_all(&h).unwrap();
    assert!(closed(s), "undersized frame closes the link");
    // A FAIL message whose length does not match its type.
    let mut s = bus_conn(port);
    let mut f = vec![0u8; 2256];
    f[0..4].copy_from_slice(b"RCmb");
    f[4..8].copy_from_slice(&2256u32.to_be_bytes());
    f[8..10].copy_from_slice(&1u16.to_be_bytes());
    f[12..14].copy_from_slice(&3u16.to_be_bytes());
    s.write_all(&f).unwrap();
    assert!(closed(s), "FAIL without a body closes the link");
    // Truncated: half a frame, then the peer goes away.
    let mut s = bus_conn(port);
    s.write_all(&f[..1000]).unwrap();
    drop(s);
    // The node is unharmed and its table unchanged.
    let mut conn = c.nodes[0].conn();
    assert_eq!(conn.text(&["PING"]), "+PONG\r\n");
    assert_eq!(c.nodes_of(0), before);
    assert_eq!(
        c.info_field(0, &["CLUSTER", "INFO"], "cluster_known_nodes")
            .as_deref(),
        Some("1")
    );
}

#[test]
fn announced_addresses_are_used() {
    let c = Cluster::start(
        &[D],
        5000,
        &[
            "--cluster-announce-ip",
            "127.0.0.9",
            "--cluster-announce-port",
            "7777",
            "--cluster-announce-bus-port",
            "17777",
        ],
    );
    let me = c
        .nodes_of(0)
        .into_iter()
        .find(|l| l.contains("myself"))
        .unwrap();
    assert!(me.contains(" 127.0.0.9:7777@17777 "), "{me}");
    assert_eq!(
        c.cli(0, &["CLUSTER", "ADDSLOTSRANGE", "0", "16383"]).trim(),
        "OK"
    );
    // MOVED and CLUSTER SLOTS carry the announced address.
    let slots = c.nodes[0].conn().text(&["CLUSTER", "SLOTS"]);
    assert!(
        slots.contains("127.0.0.9") && slots.contains(":7777\r\n"),
        "{slots}"
    );
    assert_eq!(
        c.cli(0, &["CONFIG", "SET", "cluster-announce-port", "7778"])
            .trim(),
        "OK"
    );
    wait_until(Duration::from_secs(5), "a new announced port shows", || {
        c.nodes_of(0)
            .iter()
            .any(|l| l.contains("myself") && l.contains(":7778@17777"))
    });
}

#[test]
fn nodes_conf_is_locked_and_validated() {
    let c = Cluster::start(&[D], 5000, &[]);
    let n = &c.nodes[0];
    let conf = std::fs::read_to_string(n.path().join("nodes.conf")).unwrap();
    assert!(conf.contains("myself,master"), "{conf}");
    assert!(
        conf.ends_with("vars currentEpoch 0 lastVoteEpoch 0\n"),
        "{conf}"
    );
    let log = n.log();
    assert!(
        log.contains(&format!(
            "No cluster configuration found, I'm {}",
            c.myid(0)
        )),
        "{log}"
    );
    // A second process on the same file is refused.
    let (code, out) = n.start_expect_failure_here(&[
        "--cluster-enabled",
        "yes",
        "--cluster-config-file",
        "nodes.conf",
    ]);
    assert_ne!(code, 0);
    assert!(
        out.contains("is already used by a different Redis Cluster node"),
        "{out}"
    );
    // A corrupt file stops start-up and names the file.
    let other = tempfile::tempdir().unwrap();
    std::fs::write(
        other.path().join("bad.conf"),
        "garbage line\nvars currentEpoch x\n",
    )
    .unwrap();
    let (code, out) = slotkv_tests::process::start_expect_failure(
        D,
        &[
            "--port",
            &slotkv_tests::free_port().to_string(),
            "--dir",
            &other.path().display().to_string(),
            "--cluster-enabled",
            "yes",
            "--cluster-config-file",
            "bad.conf",
        ],
        other.path(),
    );
    assert_ne!(code, 0);
    assert!(
        out.contains("corrupted cluster config file") && out.contains("bad.conf"),
        "{out}"
    );
}

/// Slot owners as node `i` sees them: `slot -> owner id`, for a few slots.
fn owner_seen(c: &Cluster, i: usize, slot: u16) -> Option<String> {
    c.nodes_of(i).into_iter().find_map(|l| {
        let f: Vec<&str> = l.split(' ').collect();
        let owns = f.iter().skip(8).any(|tok| {
            let (a, b) = match tok.split_once('-') {
                Some((a, b)) => (a.parse().unwrap_or(1), b.parse().unwrap_or(0)),
                None => (tok.parse().unwrap_or(1), tok.parse().unwrap_or(0)),
            };
            (a..=b).contains(&slot)
        });
        owns.then(|| f[0].to_string())
    })
}

fn epoch_of(c: &Cluster, i: usize, id: &str) -> u64 {
    c.nodes_of(i)
        .iter()
        .find(|l| l.starts_with(id))
        .and_then(|l| l.split(' ').nth(6).and_then(|e| e.parse().ok()))
        .unwrap_or(0)
}

#[test]
fn epochs_collisions_resolve_and_the_higher_epoch_wins_a_slot() {
    // Three masters that all start with config epoch 0 (no
    // SET-CONFIG-EPOCH): the collision rule must make them distinct.
    let c = Cluster::start(&[D; 3], 2000, &[]);
    let ranges = [("0", "5460"), ("5461", "10922"), ("10923", "16383")];
    for (i, (a, b)) in ranges.iter().enumerate() {
        assert_eq!(c.cli(i, &["CLUSTER", "ADDSLOTSRANGE", a, b]).trim(), "OK");
    }
    for i in 1..3 {
        let p = c.nodes[0].port.to_string();
        assert_eq!(c.cli(i, &["CLUSTER", "MEET", "127.0.0.1", &p]).trim(), "OK");
    }
    c.wait_ok(Duration::from_secs(30));
    let ids: Vec<String> = (0..3).map(|i| c.myid(i)).collect();
    wait_until(Duration::from_secs(20), "distinct config epochs", || {
        let mut e: Vec<u64> = ids.iter().map(|id| epoch_of(&c, 0, id)).collect();
        e.sort();
        e.dedup();
        e.len() == 3
    });

    // A node that claims a slot with the highest epoch wins it everywhere.
    let max_i = (0..3).max_by_key(|&i| epoch_of(&c, 0, &ids[i])).unwrap();
    let min_i = (0..3).min_by_key(|&i| epoch_of(&c, 0, &ids[i])).unwrap();
    let victim_slot = if max_i == 0 { "6000" } else { "100" };
    let slot: u16 = victim_slot.parse().unwrap();
    assert_eq!(
        c.cli(
            max_i,
            &["CLUSTER", "SETSLOT", victim_slot, "NODE", &ids[max_i]]
        )
        .trim(),
        "OK"
    );
    let bump = c.cli(max_i, &["CLUSTER", "BUMPEPOCH"]);
    assert!(
        bump.starts_with("BUMPED") || bump.starts_with("STILL"),
        "{bump}"
    );
    wait_until(
        Duration::from_secs(20),
        "every node moves the slot to the claimer",
        || (0..3).all(|i| owner_seen(&c, i, slot).as_deref() == Some(ids[max_i].as_str())),
    );

    // A stale claim (lowest epoch) loses: the claimer is corrected.
    let other_slot: u16 = if min_i == 2 { 0 } else { 16000 };
    let owner_before = owner_seen(&c, 0, other_slot).unwrap();
    assert_ne!(owner_before, ids[min_i]);
    assert_eq!(
        c.cli(
            min_i,
            &[
                "CLUSTER",
                "SETSLOT",
                &other_slot.to_string(),
                "NODE",
                &ids[min_i]
            ]
        )
        .trim(),
        "OK"
    );
    wait_until(
        Duration::from_secs(20),
        "the stale claimer gives the slot back",
        || (0..3).all(|i| owner_seen(&c, i, other_slot).as_deref() == Some(owner_before.as_str())),
    );
    // Open slots are stored, shown on the myself line, kept in nodes.conf
    // and reported by redis-cli --cluster check.
    let src = 0usize;
    let dst = 1usize;
    let s: u16 = ["0", "5461", "10923"]
        .iter()
        .map(|x| x.parse::<u16>().unwrap())
        .find(|s| owner_seen(&c, src, *s).as_deref() == Some(ids[src].as_str()))
        .expect("node 0 owns one of the first slots");
    let slot = s.to_string();
    assert_eq!(
        c.cli(dst, &["CLUSTER", "SETSLOT", &slot, "importing", &ids[src]])
            .trim(),
        "OK"
    );
    assert_eq!(
        c.cli(src, &["CLUSTER", "SETSLOT", &slot, "MIGRATING", &ids[dst]])
            .trim(),
        "OK"
    );
    let mine = |i: usize| {
        c.nodes_of(i)
            .into_iter()
            .find(|l| l.contains("myself"))
            .unwrap()
    };
    assert!(
        mine(src).contains(&format!("[{slot}->-{}]", ids[dst])),
        "{}",
        mine(src)
    );
    assert!(
        mine(dst).contains(&format!("[{slot}-<-{}]", ids[src])),
        "{}",
        mine(dst)
    );
    let conf = std::fs::read_to_string(c.nodes[src].path().join("nodes.conf")).unwrap();
    assert!(conf.contains(&format!("[{slot}->-{}]", ids[dst])), "{conf}");
    let first = c.addrs()[0].clone();
    let (_, check) = redis_cli(&["--cluster", "check", &first]);
    assert!(check.contains("has slots in migrating state"), "{check}");
    assert!(check.contains("has slots in importing state"), "{check}");
    for i in [src, dst] {
        assert_eq!(
            c.cli(i, &["CLUSTER", "SETSLOT", &slot, "stable"]).trim(),
            "OK"
        );
    }
    assert!(!mine(src).contains('['), "{}", mine(src));
}

#[test]
fn forget_stays_local_and_bans_the_node_and_replicas_share_their_masters_shard_id() {
    let c = Cluster::start(&[D; 4], 5000, &[]);
    for i in 1..4 {
        let p = c.nodes[0].port.to_string();
        assert_eq!(c.cli(i, &["CLUSTER", "MEET", "127.0.0.1", &p]).trim(), "OK");
    }
    wait_until(Duration::from_secs(20), "everyone knows everyone", || {
        (0..4).all(|i| {
            c.nodes_of(i).len() == 4 && !c.nodes_of(i).iter().any(|l| l.contains("handshake"))
        })
    });
    let ids: Vec<String> = (0..4).map(|i| c.myid(i)).collect();
    // Node 3 replicates node 0: it takes node 0's shard id, and the others
    // learn it from the bus (nodes.conf records it).
    assert_eq!(c.cli(3, &["CLUSTER", "REPLICATE", &ids[0]]).trim(), "OK");
    let shard0 = c.cli(0, &["CLUSTER", "MYSHARDID"]).trim().to_string();
    // Node 3 copies the shard id it knows for node 0; if gossip had not
    // brought it yet, node 0's next ping does (as in Redis).
    wait_until(
        Duration::from_secs(20),
        "node 3 takes node 0's shard id",
        || c.cli(3, &["CLUSTER", "MYSHARDID"]).trim() == shard0,
    );
    wait_until(
        Duration::from_secs(20),
        "node 1 learns node 3's shard id",
        || {
            assert_eq!(c.cli(1, &["CLUSTER", "SAVECONFIG"]).trim(), "OK");
            let conf =
                std::fs::read_to_string(c.nodes[1].path().join("nodes.conf")).unwrap_or_default();
            conf.lines()
                .any(|l| l.starts_with(&ids[3]) && l.contains(&format!("shard-id={shard0}")))
        },
    );
    // FORGET acts on the node that ran it only (as in Redis 7.0, whose
    // redis-cli del-node sends it to every node), and for 60 s gossip from
    // the others, who still know node 2, does not bring it back.
    assert_eq!(c.cli(0, &["CLUSTER", "FORGET", &ids[2]]).trim(), "OK");
    let until = std::time::Instant::now() + Duration::from_secs(3);
    while std::time::Instant::now() < until {
        assert!(c.nodes_of(1).iter().any(|l| l.starts_with(&ids[2])));
        assert!(!c.nodes_of(0).iter().any(|l| l.starts_with(&ids[2])));
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        c.cli(0, &["CLUSTER", "FORGET", &ids[0]]).trim(),
        "ERR I tried hard but I can't forget myself..."
    );
    assert_eq!(
        c.cli(3, &["CLUSTER", "FORGET", &ids[0]]).trim(),
        "ERR Can't forget my master!"
    );
}

/// While the cluster is down (here a lone node missing one slot), keyed
/// commands get CLUSTERDOWN; `cluster-allow-reads-when-down` lets reads
/// through, and sharded pub/sub is served unless
/// `cluster-allow-pubsubshard-when-down` is off. A CONFIG SET of either
/// acts on the next command, as on redis-server (datanode served sharded
/// pub/sub whatever the setting, and a changed read setting waited for the
/// next change of the slot map).
#[test]
fn a_down_cluster_serves_what_its_settings_allow() {
    for kind in [Server::Redis, D] {
        let n = Node::start(kind, &["--cluster-enabled", "yes"]);
        let mut c = n.conn();
        assert_eq!(
            c.text(&["CLUSTER", "ADDSLOTSRANGE", "0", "16382"]),
            "+OK\r\n",
            "{kind:?}"
        );
        let info = c.text(&["CLUSTER", "INFO"]);
        assert!(info.contains("cluster_state:fail"), "{kind:?}: {info}");
        let down = "-CLUSTERDOWN The cluster is down\r\n";
        // `foo` is in slot 12182, which the node owns.
        assert_eq!(c.text(&["GET", "foo"]), down, "{kind:?}");
        assert_eq!(c.text(&["SET", "foo", "x"]), down, "{kind:?}");
        assert_eq!(c.text(&["SPUBLISH", "foo", "hi"]), ":0\r\n", "{kind:?}");
        let set = |c: &mut slotkv_tests::Conn, name: &str, v: &str| {
            assert_eq!(c.text(&["CONFIG", "SET", name, v]), "+OK\r\n", "{kind:?}");
        };
        set(&mut c, "cluster-allow-pubsubshard-when-down", "no");
        assert_eq!(c.text(&["SPUBLISH", "foo", "hi"]), down, "{kind:?}");
        let mut sub = n.conn();
        assert_eq!(sub.text(&["SSUBSCRIBE", "foo"]), down, "{kind:?}");
        set(&mut c, "cluster-allow-reads-when-down", "yes");
        assert_eq!(c.text(&["GET", "foo"]), "$-1\r\n", "{kind:?}");
        assert_eq!(
            c.text(&["SET", "foo", "x"]),
            "-CLUSTERDOWN The cluster is down and only accepts read commands\r\n",
            "{kind:?}"
        );
        assert_eq!(c.text(&["SPUBLISH", "foo", "hi"]), down, "{kind:?}");
        set(&mut c, "cluster-allow-pubsubshard-when-down", "yes");
        assert_eq!(c.text(&["SPUBLISH", "foo", "hi"]), ":0\r\n", "{kind:?}");
    }
}

/// `cluster-preferred-endpoint-type` chooses how MOVED, CLUSTER SLOTS and
/// CLUSTER SHARDS name a node: by ip (the default), by its announced
/// hostname (redis-cli -c then follows `localhost`), or not at all. A
/// CONFIG SET acts on the next command. datanode always gave the ip.
#[test]
fn the_preferred_endpoint_type_names_nodes_in_redirections() {
    for kind in [Server::Redis, D] {
        let c = Cluster::start(
            &[kind; 3],
            5000,
            &["--cluster-announce-hostname", "localhost"],
        );
        c.create(0);
        c.wait_ok(Duration::from_secs(30));
        let mut n0 = c.nodes[0].conn();
        // Every node's hostname has reached node 0.
        wait_until(Duration::from_secs(20), "the hostnames gossiped", || {
            n0.text(&["CLUSTER", "SLOTS"])
                .matches("$8\r\nhostname\r\n$9\r\nlocalhost\r\n")
                .count()
                == 3
        });
        // `foo` (slot 12182) is on another node.
        let port = port_of_owner(&c, 12182);
        assert_ne!(port, c.nodes[0].port, "{kind:?}");
        let moved = |ep: &str| format!("-MOVED 12182 {ep}:{port}\r\n");
        assert_eq!(n0.text(&["GET", "foo"]), moved("127.0.0.1"), "{kind:?}");
        let set = |n: &mut slotkv_tests::Conn, v: &str| {
            let r = n.text(&["CONFIG", "SET", "cluster-preferred-endpoint-type", v]);
            assert_eq!(r, "+OK\r\n", "{kind:?}");
        };
        set(&mut n0, "hostname");
        assert_eq!(n0.text(&["GET", "foo"]), moved("localhost"), "{kind:?}");
        let slots = n0.text(&["CLUSTER", "SLOTS"]);
        let entry = format!("$9\r\nlocalhost\r\n:{port}\r\n");
        assert!(slots.contains(&entry), "{kind:?}: {slots}");
        assert_eq!(
            slots.matches("$2\r\nip\r\n$9\r\n127.0.0.1\r\n").count(),
            3,
            "{kind:?}: {slots}"
        );
        assert!(!slots.contains("hostname"), "{kind:?}: {slots}");
        let shards = n0.text(&["CLUSTER", "SHARDS"]);
        assert_eq!(
            shards
                .matches("$8\r\nendpoint\r\n$9\r\nlocalhost\r\n")
                .count(),
            3,
            "{kind:?}: {shards}"
        );
        let p0 = c.nodes[0].port.to_string();
        let (ok, out) = redis_cli(&["-c", "-p", &p0, "SET", "foo", "bar"]);
        assert!(ok && out.trim() == "OK", "{kind:?}: {out}");
        set(&mut n0, "unknown-endpoint");
        assert_eq!(n0.text(&["GET", "foo"]), moved(""), "{kind:?}");
        let slots = n0.text(&["CLUSTER", "SLOTS"]);
        let entry = format!("*4\r\n$-1\r\n:{port}\r\n");
        assert!(slots.contains(&entry), "{kind:?}: {slots}");
        set(&mut n0, "ip");
        assert_eq!(n0.text(&["GET", "foo"]), moved("127.0.0.1"), "{kind:?}");
    }
}
