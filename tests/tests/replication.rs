//! Replication with Redis's protocol, across implementations: a
//! redis-server replica of a datanode master, a datanode replica of a
//! redis-server master, and datanode pairs (partial resync, WAIT,
//! read-only replicas, promotion). Data is compared with DEBUG DIGEST,
//! which datanode computes as Redis does.

use std::time::Duration;

use slotkv_tests::{wait_until, Conn, Node, Server};

fn start(kind: Server) -> Node {
    Node::start(
        kind,
        &[
            "--save",
            "",
            "--enable-debug-command",
            "yes",
            // redis-server waits 5 s for more replicas before a diskless
            // sync by default.
            "--repl-diskless-sync-delay",
            "0",
        ],
    )
}

/// A replica of `master` from its start-up (`replicaof` in its
/// arguments), without save points.
fn start_replica_of(kind: Server, master: &Node) -> Node {
    let mport = master.port.to_string();
    let args = [
        "--save",
        "",
        "--enable-debug-command",
        "yes",
        "--repl-diskless-sync-delay",
        "0",
        "--replicaof",
        "127.0.0.1",
        &mport,
    ];
    Node::start(kind, &args)
}

fn wait(what: &str, f: impl FnMut() -> bool) {
    wait_until(Duration::from_secs(20), what, f)
}

/// Keys of every type, some with TTLs, in two databases.
fn fill(c: &mut Conn, prefix: &str, n: usize) {
    for i in 0..n {
        let k = |t: &str| format!("{prefix}:{t}:{i}");
        let v = format!("value-{i}");
        assert_eq!(c.text(&["SET", &k("s"), &v]), "+OK\r\n");
        c.text(&["RPUSH", &k("l"), "a", "b", &v]);
        c.text(&["SADD", &k("set"), "x", "y", &v]);
        c.text(&["HSET", &k("h"), "f", &v, "g", "1"]);
        c.text(&["ZADD", &k("z"), "1.5", "m", "2", &v]);
        c.text(&["SET", &k("n"), &i.to_string()]);
        if i % 3 == 0 {
            c.text(&["PEXPIRE", &k("s"), "600000"]);
        }
    }
    c.text(&["SELECT", "5"]);
    c.text(&["SET", &format!("{prefix}:db5"), "x"]);
    c.text(&["SELECT", "0"]);
}

fn digest(c: &mut Conn) -> String {
    c.text(&["DEBUG", "DIGEST"])
}

fn link_up(c: &mut Conn) -> bool {
    c.info_field("replication", "master_link_status") == "up"
}

/// The replica has applied everything the master has sent so far.
fn caught_up(master: &mut Conn, replica: &mut Conn) -> bool {
    let m = master.info_field("replication", "master_repl_offset");
    link_up(replica) && replica.info_field("replication", "slave_repl_offset") == m
}

fn replicate(replica: &mut Conn, master: &Node) {
    let port = master.port.to_string();
    assert_eq!(replica.text(&["REPLICAOF", "127.0.0.1", &port]), "+OK\r\n");
}

/// Syncs `replica_kind` from `master_kind` with data written before and
/// after the sync; both must end with the same digest.
fn sync_and_compare(master_kind: Server, replica_kind: Server) {
    let master = start(master_kind);
    let replica = start(replica_kind);
    let (mut m, mut r) = (master.conn(), replica.conn());
    fill(&mut m, "before", 300);
    replicate(&mut r, &master);
    wait("the replica's link is up", || link_up(&mut r));
    fill(&mut m, "after", 100);
    m.text(&["DEL", "before:s:1", "before:l:2"]);
    m.text(&["INCRBYFLOAT", "before:n:5", "1.5"]);
    m.text(&["EXPIRE", "after:h:3", "1000"]);
    wait("the replica catches up", || caught_up(&mut m, &mut r));
    assert_eq!(
        digest(&mut m),
        digest(&mut r),
        "{master_kind:?} -> {replica_kind:?}"
    );
    assert_eq!(r.text(&["DBSIZE"]), m.text(&["DBSIZE"]));
    // The link's traffic is counted apart from clients' (a snapshot of
    // 1,800 keys and the stream of 600 more).
    for (who, c, field) in [
        ("master", &mut m, "total_net_repl_output_bytes"),
        ("replica", &mut r, "total_net_repl_input_bytes"),
    ] {
        let bytes: u64 = c.info_field("stats", field).parse().unwrap_or(0);
        assert!(
            bytes > 10_000,
            "{master_kind:?} -> {replica_kind:?}: the {who}'s {field} is {bytes}"
        );
    }
    // A replica refuses writes from its clients.
    assert_eq!(
        r.text(&["SET", "x", "1"]),
        "-READONLY You can't write against a read only replica.\r\n"
    );
    let role = r.text(&["ROLE"]);
    assert!(
        role.contains("slave") && role.contains("connected"),
        "{role}"
    );
}

#[test]
fn redis_server_replicates_from_datanode() {
    sync_and_compare(Server::Datanode, Server::Redis);
}

#[test]
fn datanode_replicates_from_redis_server() {
    sync_and_compare(Server::Redis, Server::Datanode);
}

#[test]
fn datanode_replicates_from_datanode() {
    sync_and_compare(Server::Datanode, Server::Datanode);
}

#[test]
fn a_dropped_link_resyncs_partially_and_wait_counts_acks() {
    let master = start(Server::Datanode);
    let replica = start(Server::Datanode);
    let (mut m, mut r) = (master.conn(), replica.conn());
    fill(&mut m, "a", 50);
    replicate(&mut r, &master);
    wait("link up", || link_up(&mut r));
    // WAIT: the write is acknowledged by the one replica.
    m.text(&["SET", "w", "1"]);
    assert_eq!(m.text(&["WAIT", "1", "5000"]), ":1\r\n");
    // Asking for two replicas times out with the one that acknowledged.
    assert_eq!(m.text(&["WAIT", "2", "200"]), ":1\r\n");
    // Cut the link from the master's side; writes continue meanwhile.
    assert_eq!(m.text(&["CLIENT", "KILL", "TYPE", "replica"]), ":1\r\n");
    fill(&mut m, "b", 20);
    wait("caught up again", || caught_up(&mut m, &mut r));
    assert_eq!(digest(&mut m), digest(&mut r));
    assert_eq!(m.info_field("stats", "sync_full"), "1");
    assert_eq!(m.info_field("stats", "sync_partial_ok"), "1");
}

/// `redis.set_repl` sends a script's next commands to the AOF, the
/// replicas, both or neither; run on redis-server and datanode alike, the
/// replica and the reloaded AOF must hold the same keys on both.
#[test]
fn set_repl_chooses_where_a_scripts_commands_go() {
    let outcome = |kind: Server| -> Vec<String> {
        let master = Node::start(
            kind,
            &[
                "--save",
                "",
                "--enable-debug-command",
                "yes",
                "--appendonly",
                "yes",
                "--repl-diskless-sync-delay",
                "0",
            ],
        );
        let replica = start(kind);
        let (mut m, mut r) = (master.conn(), replica.conn());
        replicate(&mut r, &master);
        wait("link up", || link_up(&mut r));
        let script = "redis.call('set','a','1') \
            redis.set_repl(redis.REPL_NONE) redis.call('set','b','2') \
            redis.set_repl(redis.REPL_AOF) redis.call('set','c','3') redis.call('incr','n') \
            redis.set_repl(redis.REPL_REPLICA) redis.call('set','e','5') redis.call('incr','n') \
            redis.set_repl(redis.REPL_ALL) redis.call('set','d','4')";
        assert_eq!(m.text(&["EVAL", script, "0"]), "$-1\r\n");
        // One command alone to each side: no MULTI/EXEC needed.
        let single = "redis.set_repl(redis.REPL_AOF) redis.call('set','f','6') \
            redis.set_repl(redis.REPL_NONE) redis.call('set','g','7')";
        assert_eq!(m.text(&["EVAL", single, "0"]), "$-1\r\n");
        let bad = m.text(&["EVAL", "redis.set_repl(7)", "0"]);
        assert!(bad.contains("Invalid replication flags"), "{bad}");
        m.text(&["SET", "marker", "x"]);
        wait("caught up", || caught_up(&mut m, &mut r));
        let keys = ["MGET", "a", "b", "c", "d", "e", "f", "g", "n"];
        let mut out = vec![m.text(&keys), r.text(&keys)];
        assert_eq!(m.text(&["DEBUG", "LOADAOF"]), "+OK\r\n");
        out.push(m.text(&keys));
        out
    };
    let redis = outcome(Server::Redis);
    let datanode = outcome(Server::Datanode);
    assert_eq!(datanode, redis);
    // And what that is: the replica missed b, c, f and g, the AOF b, e
    // and g; each counted its own INCRs.
    let nil = "$-1\r\n";
    let v = |x: &str| format!("${}\r\n{x}\r\n", x.len());
    let list = |items: Vec<String>| format!("*{}\r\n{}", items.len(), items.concat());
    assert_eq!(
        redis[1],
        list(vec![
            v("1"),
            nil.into(),
            nil.into(),
            v("4"),
            v("5"),
            nil.into(),
            nil.into(),
            v("1")
        ])
    );
    assert_eq!(
        redis[2],
        list(vec![
            v("1"),
            nil.into(),
            v("3"),
            v("4"),
            nil.into(),
            v("6"),
            nil.into(),
            v("1")
        ])
    );
}

#[test]
fn promotion_keeps_the_old_history_for_siblings() {
    let master = start(Server::Datanode);
    let (a, b) = (start(Server::Datanode), start(Server::Datanode));
    let mut m = master.conn();
    let (mut ra, mut rb) = (a.conn(), b.conn());
    fill(&mut m, "p", 30);
    replicate(&mut ra, &master);
    replicate(&mut rb, &master);
    wait("both links up", || link_up(&mut ra) && link_up(&mut rb));
    wait("both caught up", || {
        caught_up(&mut m, &mut ra) && caught_up(&mut m, &mut rb)
    });
    let old_id = m.info_field("replication", "master_replid");
    // A becomes master: B follows it and continues partially.
    assert_eq!(ra.text(&["REPLICAOF", "NO", "ONE"]), "+OK\r\n");
    assert_eq!(ra.info_field("replication", "master_replid2"), old_id);
    assert_eq!(ra.text(&["SET", "after-promotion", "1"]), "+OK\r\n");
    replicate(&mut rb, &a);
    wait("B follows A", || caught_up(&mut ra, &mut rb));
    assert_eq!(rb.text(&["GET", "after-promotion"]), "$1\r\n1\r\n");
    assert_eq!(ra.info_field("stats", "sync_partial_ok"), "1");
    assert_eq!(ra.info_field("stats", "sync_full"), "0");
    assert_eq!(digest(&mut ra), digest(&mut rb));
}

#[test]
fn replica_commands_and_errors_match_redis() {
    for kind in [Server::Redis, Server::Datanode] {
        let n = start(kind);
        let mut c = n.conn();
        let role = c.text(&["ROLE"]);
        assert!(
            role.starts_with("*3\r\n$6\r\nmaster\r\n"),
            "{kind:?}: {role}"
        );
        assert_eq!(c.text(&["REPLICAOF", "NO", "ONE"]), "+OK\r\n");
        assert_eq!(
            c.text(&["REPLCONF", "nosuch", "1"]),
            "-ERR Unrecognized REPLCONF option: nosuch\r\n"
        );
        assert_eq!(
            c.text(&["REPLCONF", "listening-port"]),
            "-ERR syntax error\r\n"
        );
        assert_eq!(c.text(&["WAIT", "0", "0"]), ":0\r\n");
        assert_eq!(c.text(&["WAIT", "1", "-1"]), "-ERR timeout is negative\r\n");
    }
}

#[test]
fn a_snapshot_is_one_point_in_time_under_cross_slot_transactions() {
    // Accounts on many slots always sum to 100 000; a writer moves money
    // between them in MULTI/EXEC while the replica syncs. A snapshot that
    // caught half a transfer, or a stream that replayed one twice, would
    // leave the replica's sum off.
    let master = start(Server::Datanode);
    let replica = start(Server::Datanode);
    let mut m = master.conn();
    let accounts = 200;
    for i in 0..accounts {
        m.text(&["SET", &format!("acct:{i}"), "500"]);
    }
    let port = master.port;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop2 = stop.clone();
    let writer = std::thread::spawn(move || {
        let mut c = Conn::connect(port).expect("connect");
        let mut i = 0u64;
        while !stop2.load(std::sync::atomic::Ordering::Relaxed) {
            let (from, to) = (i % accounts, (i * 7 + 3) % accounts);
            let amt = (i % 9 + 1).to_string();
            c.text(&["MULTI"]);
            c.text(&["DECRBY", &format!("acct:{from}"), &amt]);
            c.text(&["INCRBY", &format!("acct:{to}"), &amt]);
            c.text(&["EXEC"]);
            i += 1;
        }
        i
    });
    let mut r = replica.conn();
    std::thread::sleep(Duration::from_millis(100));
    replicate(&mut r, &master);
    wait("link up", || link_up(&mut r));
    std::thread::sleep(Duration::from_millis(200));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let transfers = writer.join().expect("writer");
    assert!(transfers > 100, "only {transfers} transfers ran");
    wait("caught up", || caught_up(&mut m, &mut r));
    let sum = |c: &mut Conn| -> i64 {
        (0..accounts)
            .map(|i| {
                let v = c.text(&["GET", &format!("acct:{i}")]);
                v.lines()
                    .nth(1)
                    .and_then(|x| x.parse::<i64>().ok())
                    .expect("balance")
            })
            .sum()
    };
    assert_eq!(sum(&mut m), 100_000);
    assert_eq!(sum(&mut r), 100_000);
    assert_eq!(digest(&mut m), digest(&mut r));
}

#[test]
fn cluster_replicas_hold_their_masters_data_and_serve_readonly_reads() {
    use slotkv_tests::cluster::Cluster;
    let c = Cluster::start(&[Server::Datanode; 6], 5000, &[]);
    c.create(1);
    c.wait_ok(Duration::from_secs(30));
    // Keys in every slot range, written through the cluster.
    for i in 0..300 {
        let k = format!("key:{i}");
        let out = slotkv_tests::cluster::redis_cli(&[
            "-c",
            "-p",
            &c.nodes[0].port.to_string(),
            "SET",
            &k,
            &i.to_string(),
        ]);
        assert!(out.1.contains("OK"), "{out:?}");
    }
    let role = |i: usize| c.info_field(i, &["INFO", "replication"], "role");
    let replicas: Vec<usize> = (0..6)
        .filter(|&i| role(i).as_deref() == Some("slave"))
        .collect();
    assert_eq!(replicas.len(), 3, "three replicas");
    for &r in &replicas {
        let mut conn = c.nodes[r].conn();
        wait("the replica's link is up", || link_up(&mut conn));
        let mport: u16 = conn
            .info_field("replication", "master_port")
            .parse()
            .expect("master port");
        let m = c
            .nodes
            .iter()
            .position(|n| n.port == mport)
            .expect("the master is one of ours");
        let mut mconn = c.nodes[m].conn();
        wait("the replica catches up", || {
            caught_up(&mut mconn, &mut conn)
        });
        assert_eq!(digest(&mut conn), digest(&mut mconn));
        let n: i64 = conn
            .text(&["DBSIZE"])
            .trim_start_matches(':')
            .trim()
            .parse()
            .expect("dbsize");
        assert!(n > 50, "replica {r} holds {n} keys");
        // A key of the master's: MOVED without READONLY, served after it.
        let key = (0..300)
            .map(|i| format!("key:{i}"))
            .find(|k| mconn.text(&["EXISTS", k]) == ":1\r\n")
            .expect("a key on this master");
        assert!(conn.text(&["GET", &key]).starts_with("-MOVED"));
        assert_eq!(conn.text(&["READONLY"]), "+OK\r\n");
        assert!(conn.text(&["GET", &key]).starts_with('$'));
        // Writes still go to the master.
        assert!(conn.text(&["SET", &key, "x"]).starts_with("-MOVED"));
    }
}

#[test]
fn a_restarted_replica_continues_partially_from_its_snapshot() {
    let master = start(Server::Datanode);
    let mut replica = start_replica_of(Server::Datanode, &master);
    let mut m = master.conn();
    fill(&mut m, "r", 100);
    let mut r = replica.conn();
    wait("link up", || link_up(&mut r));
    wait("caught up", || caught_up(&mut m, &mut r));
    // Transactions in the stream: a snapshot never splits one.
    for i in 0..20 {
        m.text(&["MULTI"]);
        m.text(&["INCR", "counter"]);
        m.text(&["SET", &format!("t{i}"), "x"]);
        m.text(&["EXEC"]);
    }
    wait("caught up", || caught_up(&mut m, &mut r));
    assert_eq!(r.text(&["SAVE"]), "+OK\r\n");
    replica.signal_and_wait("-KILL");
    // The master goes on while the replica is down.
    fill(&mut m, "while-down", 20);
    m.text(&["INCR", "counter"]);
    replica.restart();
    let mut r = replica.conn();
    wait("link up again", || link_up(&mut r));
    wait("caught up again", || caught_up(&mut m, &mut r));
    assert_eq!(r.text(&["GET", "counter"]), "$2\r\n21\r\n");
    assert_eq!(digest(&mut m), digest(&mut r));
    assert_eq!(m.info_field("stats", "sync_full"), "1");
    assert_eq!(m.info_field("stats", "sync_partial_ok"), "1");
}

#[test]
fn bad_sync_requests_get_a_full_sync_or_redis_errors() {
    use std::io::{BufRead, BufReader, Write};
    for kind in [Server::Redis, Server::Datanode] {
        let n = start(kind);
        let mut c = n.conn();
        c.text(&["SET", "k", "v"]);
        let first_line = |req: &str| -> String {
            let mut s = std::net::TcpStream::connect(("127.0.0.1", n.port)).expect("connect");
            s.set_read_timeout(Some(Duration::from_secs(10)))
                .expect("timeout");
            s.write_all(req.as_bytes()).expect("send");
            let mut line = String::new();
            let mut r = BufReader::new(s);
            // Skip the newlines a master may send as keepalives.
            while line.trim().is_empty() {
                line.clear();
                r.read_line(&mut line).expect("a reply line");
            }
            line
        };
        // A history we do not have, or an offset past what we hold: a full
        // resync, never a partial one.
        assert!(
            first_line("PSYNC 0123456789012345678901234567890123456789 5\r\n")
                .starts_with("+FULLRESYNC "),
            "{kind:?}"
        );
        let id = c.info_field("replication", "master_replid");
        assert!(
            first_line(&format!("PSYNC {id} 999999999\r\n")).starts_with("+FULLRESYNC "),
            "{kind:?}"
        );
        assert_eq!(
            first_line("PSYNC x abc\r\n"),
            "-ERR value is not an integer or out of range\r\n",
            "{kind:?}"
        );
        assert_eq!(
            c.text(&["REPLICAOF", "127.0.0.1", "abc"]),
            "-ERR Invalid master port\r\n"
        );
        assert_eq!(
            c.text(&["REPLICAOF", "127.0.0.1", "70000"]),
            "-ERR Invalid master port\r\n"
        );
        // The master's data is untouched by all this.
        assert_eq!(c.text(&["GET", "k"]), "$1\r\nv\r\n");
    }
}

/// A fake master on loopback: accepts one replica connection, answers its
/// handshake, and returns the socket right after reading PSYNC.
fn fake_master_accept(l: &std::net::TcpListener) -> std::net::TcpStream {
    use std::io::Read;
    let (mut s, _) = l.accept().expect("the replica connects");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    // PING, REPLCONF x2, then PSYNC: answer each as it arrives.
    let mut answered = 0;
    while !String::from_utf8_lossy(&got).contains("PSYNC") {
        let n = s.read(&mut buf).expect("handshake bytes");
        assert!(n > 0, "the replica closed during the handshake");
        got.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&got).to_string();
        let want = text.matches("PING").count() + text.matches("REPLCONF").count();
        while answered < want {
            let reply: &[u8] = if answered == 0 {
                b"+PONG\r\n"
            } else {
                b"+OK\r\n"
            };
            std::io::Write::write_all(&mut s, reply).expect("reply");
            answered += 1;
        }
    }
    s
}

#[test]
fn a_stream_cut_mid_command_applies_nothing_of_it_and_the_link_retries() {
    use std::io::Write;
    // A valid empty snapshot, taken from a real server.
    let donor = start(Server::Redis);
    let rdb = {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", donor.port)).expect("connect");
        s.write_all(b"SYNC\r\n").expect("sync");
        let mut r = std::io::BufReader::new(s);
        let mut line = String::new();
        while !line.starts_with('$') {
            line.clear();
            std::io::BufRead::read_line(&mut r, &mut line).expect("bulk header");
        }
        let len: usize = line[1..].trim().parse().expect("length");
        let mut data = vec![0u8; len];
        std::io::Read::read_exact(&mut r, &mut data).expect("payload");
        data
    };
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("listen");
    let port = l.local_addr().expect("addr").port().to_string();
    let replica = start(Server::Datanode);
    let mut r = replica.conn();
    r.text(&["SET", "mine", "1"]);
    assert_eq!(r.text(&["REPLICAOF", "127.0.0.1", &port]), "+OK\r\n");
    let id = "a".repeat(40);
    let mut s = fake_master_accept(&l);
    s.write_all(format!("+FULLRESYNC {id} 0\r\n${}\r\n", rdb.len()).as_bytes())
        .expect("fullresync");
    s.write_all(&rdb).expect("rdb");
    // One whole command, then half of the next, then the link drops.
    s.write_all(b"*2\r\n$6\r\nSELECT\r\n$1\r\n0\r\n*3\r\n$3\r\nSET\r\n$4\r\nfull\r\n$1\r\n1\r\n")
        .expect("stream");
    s.write_all(b"*3\r\n$3\r\nSET\r\n$4\r\nhalf\r\n$1")
        .expect("half");
    wait("the whole command is applied", || {
        r.text(&["GET", "full"]) == "$1\r\n1\r\n"
    });
    drop(s);
    // The replica reconnects and asks to continue after the whole command.
    let mut s = fake_master_accept(&l);
    assert_eq!(r.text(&["GET", "half"]), "$-1\r\n");
    assert_eq!(
        r.text(&["GET", "mine"]),
        "$-1\r\n",
        "a full sync replaces the data"
    );
    s.write_all(format!("+CONTINUE {id}\r\n").as_bytes())
        .expect("continue");
    s.write_all(b"*3\r\n$3\r\nSET\r\n$4\r\nhalf\r\n$1\r\n2\r\n")
        .expect("resent");
    wait("the resent command is applied", || {
        r.text(&["GET", "half"]) == "$1\r\n2\r\n"
    });
    assert_eq!(r.text(&["GET", "full"]), "$1\r\n1\r\n");
}

#[test]
fn the_consistency_checker_counts_writes_and_finds_none_lost() {
    use slotkv_tests::cluster::Cluster;
    let c = Cluster::start(&[Server::Datanode; 3], 5000, &[]);
    c.create(0);
    c.wait_ok(Duration::from_secs(30));
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_consistency-check"))
        .args([
            "--port",
            &c.nodes[0].port.to_string(),
            "--seconds",
            "2",
            "--fail-on-lost",
        ])
        .output()
        .expect("run the checker");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let last = text.lines().last().expect("a report line");
    // `N R (E err) | N W (E err) | L lost | P not ack`
    let nums: Vec<u64> = last
        .split(|ch: char| !ch.is_ascii_digit())
        .filter_map(|w| w.parse().ok())
        .collect();
    assert_eq!(nums.len(), 6, "{last}");
    assert!(nums[2] > 100, "writes: {last}");
    assert_eq!((nums[1], nums[3], nums[4], nums[5]), (0, 0, 0, 0), "{last}");
    // Every key it wrote went to the node owning its slot.
    let total: u64 = (0..3)
        .map(|i| c.cli(i, &["DBSIZE"]).trim().parse::<u64>().unwrap_or(0))
        .sum();
    assert!(total > 0 && total <= 1000, "{total} keys");
}

/// FAILOVER (standalone): the master pauses writes, waits for the replica
/// to have everything, and becomes its replica; errors as redis-server's.
/// Both directions across implementations, and between datanodes.
#[test]
fn failover_command_hands_the_master_role_over() {
    use Server::{Datanode, Redis};
    for (mk, rk) in [(Datanode, Datanode), (Datanode, Redis), (Redis, Datanode)] {
        let master = start(mk);
        let replica = start(rk);
        let mut m = master.conn();
        let mut r = replica.conn();
        fill(&mut m, "fo", 200);
        replicate(&mut r, &master);
        wait("the replica catches up", || caught_up(&mut m, &mut r));
        // FAILOVER needs the replica online in the master's eyes, which
        // (Redis 7.0) takes its first ACK after the sync, not only equal
        // offsets.
        wait("the master sees its replica online", || {
            m.text(&["INFO", "replication"]).contains("state=online")
        });
        let rport = replica.port.to_string();
        assert_eq!(
            r.text(&["FAILOVER"]),
            "-ERR FAILOVER is not valid when server is a replica.\r\n"
        );
        for (args, want) in [
            (vec!["FAILOVER", "FORCE"], "-ERR FAILOVER with force option requires both a timeout and target HOST and IP.\r\n"),
            (vec!["FAILOVER", "TO", "127.0.0.1", "1"], "-ERR FAILOVER target HOST and PORT is not a replica.\r\n"),
            (vec!["FAILOVER", "TIMEOUT", "0"], "-ERR FAILOVER timeout must be greater than 0\r\n"),
            (vec!["FAILOVER", "SOON"], "-ERR syntax error\r\n"),
            (vec!["FAILOVER", "ABORT"], "-ERR No failover in progress.\r\n"),
        ] {
            assert_eq!(m.text(&args), want, "{mk:?} -> {rk:?}: {args:?}");
        }
        assert_eq!(m.text(&["FAILOVER", "TO", "127.0.0.1", &rport]), "+OK\r\n");
        wait("roles swap", || {
            r.info_field("replication", "role") == "master"
                && m.info_field("replication", "role") == "slave"
                && link_up(&mut m)
        });
        assert_eq!(m.info_field("replication", "master_port"), rport);
        wait("the old master caught up", || caught_up(&mut r, &mut m));
        assert_eq!(digest(&mut m), digest(&mut r), "{mk:?} -> {rk:?}");
        for c in [&mut m, &mut r] {
            assert_eq!(
                c.info_field("replication", "master_failover_state"),
                "no-failover"
            );
        }
        // Writes go to the new master and reach the old one.
        assert_eq!(r.text(&["SET", "after", "1"]), "+OK\r\n");
        wait("the write arrives", || {
            m.text(&["GET", "after"]) == "$1\r\n1\r\n"
        });
        assert!(m.text(&["SET", "x", "1"]).starts_with("-READONLY"));
    }
}

/// DEBUG CHANGE-REPL-ID starts a new history with no previous one, as
/// Redis's suite uses it (psync2) to make a replica resync in full.
#[test]
fn debug_change_repl_id_starts_a_new_history() {
    for kind in [Server::Redis, Server::Datanode] {
        let master = start(kind);
        let replica = start(kind);
        let (mut m, mut r) = (master.conn(), replica.conn());
        replicate(&mut r, &master);
        wait("the link", || link_up(&mut r));
        m.text(&["SET", "k", "v"]);
        wait("the replica to catch up", || caught_up(&mut m, &mut r));
        let id = r.info_field("replication", "master_replid");
        assert_eq!(r.text(&["DEBUG", "CHANGE-REPL-ID"]), "+OK\r\n");
        let new = r.info_field("replication", "master_replid");
        assert!(new != id && new.len() == 40, "{kind:?}: {id} -> {new}");
        assert_eq!(
            r.info_field("replication", "master_replid2"),
            "0".repeat(40),
            "{kind:?}"
        );
        assert_eq!(r.info_field("replication", "second_repl_offset"), "-1");
        assert!(
            replica
                .log()
                .contains("Changing replication IDs after receiving DEBUG change-repl-id"),
            "{kind:?}"
        );
    }
}

/// `repl-backlog-ttl`: a master left without replicas frees its backlog
/// after that many seconds and starts a new history.
#[test]
fn the_backlog_is_freed_after_repl_backlog_ttl_without_replicas() {
    let master = start(Server::Datanode);
    let replica = start(Server::Datanode);
    let mut m = master.conn();
    let mut r = replica.conn();
    m.text(&["SET", "k", "v"]);
    replicate(&mut r, &master);
    wait("the replica catches up", || caught_up(&mut m, &mut r));
    assert_eq!(m.info_field("replication", "repl_backlog_active"), "1");
    let id = m.info_field("replication", "master_replid");
    assert_eq!(
        m.text(&["CONFIG", "SET", "repl-backlog-ttl", "1"]),
        "+OK\r\n"
    );
    // Still a replica: nothing is freed.
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(m.info_field("replication", "repl_backlog_active"), "1");
    assert_eq!(r.text(&["REPLICAOF", "NO", "ONE"]), "+OK\r\n");
    // The flag, the new history and the log line are three steps: wait
    // for all of them.
    wait("the backlog is freed under a new history", || {
        m.info_field("replication", "repl_backlog_active") == "0"
            && m.info_field("replication", "master_replid") != id
            && master
                .log()
                .contains("Replication backlog freed after 1 seconds without connected replicas.")
    });
}

/// `repl-diskless-sync yes` sends the snapshot in Redis's socket format
/// (`$EOF:<mark>` … mark), `no` with its length up front; a redis-server
/// replica reads both, and says which it got.
#[test]
fn diskless_and_disk_snapshots_use_redis_wire_formats() {
    for (diskless, said) in [
        ("yes", "receiving streamed RDB from master with EOF"),
        ("no", "bytes from master to disk"),
    ] {
        let master = start(Server::Datanode);
        let replica = start(Server::Redis);
        let mut m = master.conn();
        let mut r = replica.conn();
        fill(&mut m, "wire", 50);
        assert_eq!(
            m.text(&["CONFIG", "SET", "repl-diskless-sync", diskless]),
            "+OK\r\n"
        );
        replicate(&mut r, &master);
        wait("the replica catches up", || caught_up(&mut m, &mut r));
        assert_eq!(digest(&mut m), digest(&mut r));
        let log = replica.log();
        assert!(log.contains(said), "diskless {diskless}:\n{log}");
    }
}

/// Writes `cmds` pipelined, in batches, and checks no reply is an error.
fn pipeline(c: &mut Conn, cmds: &[Vec<String>]) {
    for batch in cmds.chunks(5000) {
        let mut out = Vec::new();
        for cmd in batch {
            out.extend_from_slice(&slotkv_tests::encode(cmd));
        }
        c.send_raw(&out).expect("send");
        for _ in batch {
            let r = c.read_reply().expect("reply");
            assert_ne!(
                r.raw.first(),
                Some(&b'-'),
                "{}",
                String::from_utf8_lossy(&r.raw)
            );
        }
    }
}

/// A full sync of 100k keys of every type, in the disk format (to a
/// datanode replica with `repl-diskless-sync no`) and the diskless one (to
/// a redis-server replica and a datanode replica), equal afterwards.
#[test]
fn a_full_sync_of_100k_keys_of_every_type_in_both_formats() {
    let master = start(Server::Datanode);
    let mut m = master.conn();
    let mut cmds = Vec::new();
    for i in 0..20_000 {
        let s = |v: &str| v.to_string();
        cmds.push(vec![s("SET"), format!("s:{i}"), format!("v{i}")]);
        cmds.push(vec![s("RPUSH"), format!("l:{i}"), s("a"), format!("{i}")]);
        cmds.push(vec![s("SADD"), format!("t:{i}"), s("x"), format!("{i}")]);
        cmds.push(vec![s("HSET"), format!("h:{i}"), s("f"), format!("{i}")]);
        cmds.push(vec![s("ZADD"), format!("z:{i}"), format!("{i}"), s("m")]);
        if i % 10 == 0 {
            cmds.push(vec![s("PEXPIRE"), format!("s:{i}"), s("600000")]);
        }
    }
    pipeline(&mut m, &cmds);
    assert_eq!(m.text(&["DBSIZE"]), ":100000\r\n");
    let want = digest(&mut m);
    for (kind, diskless) in [
        (Server::Datanode, "no"),
        (Server::Datanode, "yes"),
        (Server::Redis, "yes"),
    ] {
        assert_eq!(
            m.text(&["CONFIG", "SET", "repl-diskless-sync", diskless]),
            "+OK\r\n"
        );
        let replica = start(kind);
        let mut r = replica.conn();
        replicate(&mut r, &master);
        wait_until(Duration::from_secs(60), "the replica syncs", || {
            caught_up(&mut m, &mut r)
        });
        assert_eq!(digest(&mut r), want, "{kind:?} diskless={diskless}");
    }
}

/// Replicas that ask within `repl-diskless-sync-delay` share one
/// snapshot, as on redis-server.
#[test]
fn replicas_asking_within_the_diskless_delay_share_one_snapshot() {
    let master = Node::start(
        Server::Datanode,
        &[
            "--save",
            "",
            "--enable-debug-command",
            "yes",
            "--repl-diskless-sync-delay",
            "2",
        ],
    );
    let mut m = master.conn();
    fill(&mut m, "batch", 100);
    let replicas: Vec<Node> = (0..2).map(|_| start(Server::Datanode)).collect();
    let mut conns: Vec<Conn> = replicas.iter().map(|r| r.conn()).collect();
    for c in conns.iter_mut() {
        replicate(c, &master);
    }
    for c in conns.iter_mut() {
        wait("the replica syncs", || caught_up(&mut m, c));
        assert_eq!(digest(c), digest(&mut m));
    }
    let log = master.log();
    assert_eq!(
        log.matches("Starting BGSAVE for SYNC with target: replicas sockets")
            .count(),
        1,
        "{log}"
    );
    assert!(log.contains("(2 replicas)"), "{log}");
}

/// While a replica loads its master's snapshot it answers `-LOADING`
/// except to commands Redis allows then (INFO says `loading:1`), as a
/// redis-server replica does.
#[test]
fn a_replica_loading_the_snapshot_answers_loading() {
    let master = start(Server::Datanode);
    let mut m = master.conn();
    for i in 0..2000 {
        m.text(&["SET", &format!("k{i}"), "v"]);
    }
    for kind in [Server::Redis, Server::Datanode] {
        // 1 ms per key: about two seconds of loading (redis-server serves
        // clients while loading every so many bytes read).
        let replica = Node::start(
            kind,
            &[
                "--save",
                "",
                "--loading-process-events-interval-bytes",
                "1024",
                "--key-load-delay",
                "1000",
                "--repl-diskless-sync-delay",
                "0",
            ],
        );
        let mut r = replica.conn();
        replicate(&mut r, &master);
        let mut saw = false;
        wait_until(Duration::from_secs(30), "the snapshot loads", || {
            if r.info_field("persistence", "loading") == "1" {
                // The load may end between the two commands: then the
                // value is there, whole.
                let got = r.text(&["GET", "k1"]);
                if got == "-LOADING Redis is loading the dataset in memory\r\n" {
                    saw = true;
                } else {
                    assert_eq!(got, "$1\r\nv\r\n", "{kind:?}");
                }
            }
            caught_up(&mut m, &mut r)
        });
        assert!(saw, "{kind:?}: never seen loading");
        assert_eq!(r.text(&["GET", "k1"]), "$1\r\nv\r\n");
    }
}

fn ok(c: &mut Conn, args: &[&str]) {
    assert_eq!(c.text(args), "+OK\r\n", "{args:?}");
}

/// A replica that loads its full syncs with `repl-diskless-load swapdb`
/// from a redis-server master (the tests slow it down to 10 ms per key of
/// 1000 bytes: its snapshot arrives in 16 kB bursts, and a loading
/// redis-server answers clients only as bytes arrive).
fn swapdb_pair(kind: Server) -> (Node, Node) {
    let master = start(Server::Redis);
    let replica = start(kind);
    let (mut m, mut r) = (master.conn(), replica.conn());
    ok(&mut m, &["CONFIG", "SET", "repl-diskless-sync", "yes"]);
    ok(&mut r, &["CONFIG", "SET", "repl-diskless-load", "swapdb"]);
    // redis-server answers clients while loading only every so many
    // bytes (2 MB by default).
    ok(
        &mut r,
        &[
            "CONFIG",
            "SET",
            "loading-process-events-interval-bytes",
            "1024",
        ],
    );
    (master, replica)
}

/// Replies a client gets from a replica in a swapdb load, in order.
fn probe(r: &mut Conn, seen: &mut Vec<String>) {
    for args in [
        &["GET", "mykey"][..],
        &["DBSIZE"],
        &["PING"],
        &["REPLICAOF", "NO", "ONE"],
        &["CONFIG", "SET", "appendonly", "no"],
        &["CONFIG", "SET", "maxmemory-policy", "noeviction"],
        &["MULTI"],
        &["REPLICAOF", "NO", "ONE"],
        &["EXEC"],
    ] {
        seen.push(format!("{args:?} -> {}", r.text(args)));
    }
}

/// `swapdb` after the master's backlog moved past the replica: the
/// master's history is still the replica's, so the replica serves its
/// old data while the new loads aside (`async_loading:1`), refusing only
/// what Redis refuses then; a failed sync leaves the old data, a finished
/// one swaps the master's in. Returns what a client saw.
fn swapdb_same_history(kind: Server) -> Vec<String> {
    let (master, replica) = swapdb_pair(kind);
    let (mut m, mut r) = (master.conn(), replica.conn());
    ok(&mut r, &["CONFIG", "SET", "replica-read-only", "no"]);
    replicate(&mut r, &master);
    wait("the first sync", || caught_up(&mut m, &mut r));
    ok(&mut m, &["DEBUG", "POPULATE", "2000", "master", "1000"]);
    ok(&mut r, &["DEBUG", "POPULATE", "2000", "slave", "10"]);
    ok(&mut r, &["SET", "mykey", "myvalue"]);
    ok(&mut m, &["CONFIG", "SET", "repl-backlog-size", "16384"]);
    ok(&mut m, &["CONFIG", "SET", "rdb-key-save-delay", "10000"]);
    // Cut the link and write past the backlog: the next sync is full,
    // under the same replication id.
    ok(&mut m, &["MULTI"]);
    m.text(&["CLIENT", "KILL", "TYPE", "replica"]);
    let big = "A".repeat(16384);
    for i in 0..10 {
        m.text(&["SET", &format!("big:{i}"), &big]);
    }
    assert!(m.text(&["EXEC"]).starts_with('*'));
    wait("async loading starts", || {
        r.info_field("persistence", "async_loading") == "1"
    });
    let mut seen = vec![format!(
        "loading:{}",
        r.info_field("persistence", "loading")
    )];
    probe(&mut r, &mut seen);
    assert_eq!(
        r.info_field("persistence", "async_loading"),
        "1",
        "{kind:?}: the load ended before the probe did"
    );
    // The sync fails: the old data stays.
    m.text(&["CLIENT", "KILL", "TYPE", "replica"]);
    wait("async loading stops", || {
        r.info_field("persistence", "async_loading") == "0"
    });
    seen.push(r.text(&["GET", "mykey"]));
    seen.push(r.text(&["DBSIZE"]));
    // The next sync finishes: the master's data replaces ours.
    ok(&mut m, &["CONFIG", "SET", "rdb-key-save-delay", "0"]);
    m.text(&["CLIENT", "KILL", "TYPE", "replica"]);
    wait("the replica syncs", || caught_up(&mut m, &mut r));
    seen.push(r.text(&["GET", "mykey"]));
    seen.push(r.text(&["DBSIZE"]));
    assert_eq!(digest(&mut r), digest(&mut m), "{kind:?}");
    seen
}

#[test]
fn swapdb_serves_the_old_data_while_a_sync_of_the_same_history_loads() {
    let redis = swapdb_same_history(Server::Redis);
    let ours = swapdb_same_history(Server::Datanode);
    assert_eq!(ours, redis);
    // What the steps are meant to show, whoever answered.
    assert!(redis.contains(&"[\"GET\", \"mykey\"] -> $7\r\nmyvalue\r\n".to_string()));
    assert!(redis.contains(&"[\"DBSIZE\"] -> :2001\r\n".to_string()));
    assert_eq!(redis[redis.len() - 2..], ["$-1\r\n", ":2010\r\n"]);
}

/// `swapdb` with a master of another history (a first sync): `-LOADING`
/// from the first byte of the payload, the old data back when the sync
/// fails, the master's after it succeeds. Returns what a client saw.
fn swapdb_new_history(kind: Server) -> Vec<String> {
    let (master, replica) = swapdb_pair(kind);
    let (mut m, mut r) = (master.conn(), replica.conn());
    ok(&mut r, &["DEBUG", "POPULATE", "200", "slave", "10"]);
    ok(&mut r, &["SET", "mykey", "myvalue"]);
    // 3000 keys at 10 ms each: the load lasts long enough for the checks
    // below even on a starved machine (the sync is failed after them).
    ok(&mut m, &["DEBUG", "POPULATE", "3000", "master", "1000"]);
    ok(&mut m, &["CONFIG", "SET", "rdb-key-save-delay", "10000"]);
    replicate(&mut r, &master);
    wait("loading starts", || {
        r.info_field("persistence", "loading") == "1"
    });
    let mut seen = vec![format!(
        "async_loading:{}",
        r.info_field("persistence", "async_loading")
    )];
    seen.push(r.text(&["GET", "mykey"]));
    assert_eq!(r.info_field("persistence", "loading"), "1", "{kind:?}");
    // Fail this sync, and hold the next one back for 5 s.
    ok(&mut m, &["CONFIG", "SET", "repl-diskless-sync-delay", "5"]);
    m.text(&["CLIENT", "KILL", "TYPE", "replica"]);
    wait("loading stops", || {
        r.info_field("persistence", "loading") == "0"
    });
    seen.push(r.text(&["GET", "mykey"]));
    seen.push(r.text(&["DBSIZE"]));
    ok(&mut m, &["CONFIG", "SET", "rdb-key-save-delay", "0"]);
    ok(&mut m, &["CONFIG", "SET", "repl-diskless-sync-delay", "0"]);
    wait("the replica syncs", || caught_up(&mut m, &mut r));
    seen.push(r.text(&["GET", "mykey"]));
    seen.push(r.text(&["DBSIZE"]));
    seen
}

#[test]
fn swapdb_keeps_the_old_data_until_a_sync_of_another_history_succeeds() {
    let redis = swapdb_new_history(Server::Redis);
    let ours = swapdb_new_history(Server::Datanode);
    assert_eq!(ours, redis);
    assert_eq!(
        redis,
        [
            "async_loading:0",
            "-LOADING Redis is loading the dataset in memory\r\n",
            "$7\r\nmyvalue\r\n",
            ":201\r\n",
            "$-1\r\n",
            ":3000\r\n"
        ]
    );
}

/// A replica that stops reading holds the replication buffer: as in Redis
/// 7.0, what passes the backlog's size is its memory (mem_clients_slaves),
/// left out of maxmemory (mem_not_counted_for_evict), so it evicts no key;
/// once the replica is gone it is all counted again. datanode reported 0
/// for the replica and left the whole buffer, backlog included, out of the
/// limit. Both servers, each with a replica of its kind.
#[test]
fn a_stopped_replicas_buffer_is_its_memory_and_evicts_nothing() {
    for kind in [Server::Redis, Server::Datanode] {
        let master = start(kind);
        let replica = start(kind);
        let mut m = master.conn();
        let mut r = replica.conn();
        let num =
            |c: &mut Conn, f: &str| -> u64 { c.info_field("memory", f).parse().expect("a number") };
        for j in 0..100 {
            m.text(&["SETRANGE", &format!("key:{j}"), "100000", "asdf"]);
        }
        m.text(&["CONFIG", "SET", "maxmemory-policy", "allkeys-random"]);
        m.text(&["CONFIG", "SET", "repl-backlog-size", "10240"]);
        m.text(&[
            "CONFIG",
            "SET",
            "client-output-buffer-limit",
            "replica 100000000 100000000 300",
        ]);
        let port = master.port.to_string();
        r.text(&["REPLICAOF", "127.0.0.1", &port]);
        wait("the link", || {
            r.info_field("replication", "master_link_status") == "up"
        });
        let used = num(&mut m, "used_memory");
        let limit = used - num(&mut m, "mem_not_counted_for_evict") + 512 * 1024;
        m.text(&["CONFIG", "SET", "maxmemory", &limit.to_string()]);
        replica.signal("-STOP");
        // 10 MB of writes that leave the data as big as it was.
        let payload = "A".repeat(100_000);
        for _ in 0..100 {
            assert_eq!(m.text(&["SETRANGE", "key:0", "0", &payload]), ":100004\r\n");
        }
        let slaves = num(&mut m, "mem_clients_slaves");
        let not_counted = num(&mut m, "mem_not_counted_for_evict");
        let total = num(&mut m, "mem_total_replication_buffers");
        replica.signal("-CONT");
        assert!(slaves > 2_000_000, "{kind:?}: mem_clients_slaves={slaves}");
        // Within a send buffer (datanode copies up to 256 KB of the stream
        // per replica on its way out, and counts it as the replica's).
        assert!(
            total + 300_000 >= slaves && not_counted + 100_000 >= slaves,
            "{kind:?}: total {total}, not counted {not_counted}, replicas {slaves}"
        );
        assert_eq!(
            m.text(&["DBSIZE"]),
            ":100\r\n",
            "{kind:?}: keys were evicted"
        );
        assert!(
            m.text(&["INFO", "stats"]).contains("evicted_keys:0\r\n"),
            "{kind:?}"
        );
        m.text(&["CLIENT", "KILL", "TYPE", "replica"]);
        wait("the replica's memory to go", || {
            num(&mut m, "mem_clients_slaves") == 0
        });
    }
}

/// As Redis: a replica over maxmemory evicts nothing (it is its master's
/// copy: replica-ignore-maxmemory, on by default) until told otherwise; and
/// while clients are paused a master evicts nothing either, then catches up
/// once they resume.
#[test]
fn a_replica_and_a_paused_master_leave_their_keys_alone_over_maxmemory() {
    for kind in [Server::Redis, Server::Datanode] {
        let master = start(kind);
        let replica = start(kind);
        let mut m = master.conn();
        let mut r = replica.conn();
        replicate(&mut r, &master);
        let value = "v".repeat(1000);
        for i in 0..2000 {
            assert_eq!(m.text(&["SET", &format!("key:{i}"), &value]), "+OK\r\n");
        }
        wait("the replica to catch up", || caught_up(&mut m, &mut r));
        let evicted = |c: &mut Conn| -> u64 {
            c.info_field("stats", "evicted_keys")
                .parse()
                .expect("a number")
        };
        let below = |c: &mut Conn| -> String {
            let used: u64 = c
                .info_field("memory", "used_memory")
                .parse()
                .expect("a number");
            (used - 1_000_000).to_string()
        };
        // Over the limit after a few reads, with every key kept.
        let keeps_all = |c: &mut Conn, who: &str| {
            ok(c, &["CONFIG", "SET", "maxmemory-policy", "allkeys-random"]);
            let limit = below(c);
            ok(c, &["CONFIG", "SET", "maxmemory", &limit]);
            for _ in 0..3 {
                c.text(&["GET", "key:1"]);
            }
            assert_eq!(c.text(&["DBSIZE"]), ":2000\r\n", "{kind:?}: {who} evicted");
            assert_eq!(evicted(c), 0, "{kind:?}");
        };
        let evicts = |c: &mut Conn, what: &str| {
            wait(what, || {
                c.text(&["GET", "key:1"]);
                evicted(c) > 0
            });
        };
        keeps_all(&mut r, "the replica");
        ok(&mut r, &["CONFIG", "SET", "replica-ignore-maxmemory", "no"]);
        evicts(&mut r, "the replica to evict for itself");
        // A paused master keeps its dataset still.
        ok(&mut m, &["CLIENT", "PAUSE", "20000", "WRITE"]);
        keeps_all(&mut m, "the paused master");
        ok(&mut m, &["CLIENT", "UNPAUSE"]);
        evicts(&mut m, "the master to evict once unpaused");
    }
}

/// A writable replica's own keys with a TTL (set by its clients, not its
/// master) are expired by the replica itself, as Redis's expireSlaveKeys
/// does, and counted in INFO slave_expires_tracked_keys; the master's keys
/// wait for the master's DEL.
#[test]
fn a_writable_replica_expires_the_keys_its_clients_gave_a_ttl() {
    for kind in [Server::Redis, Server::Datanode] {
        let master = start(kind);
        let replica = start(kind);
        let mut m = master.conn();
        let mut r = replica.conn();
        replicate(&mut r, &master);
        ok(&mut m, &["SET", "from-master", "v", "EX", "1000"]);
        wait("the replica to catch up", || caught_up(&mut m, &mut r));
        ok(&mut r, &["CONFIG", "SET", "replica-read-only", "no"]);
        ok(&mut r, &["SET", "own", "v", "PX", "300"]);
        ok(&mut r, &["SET", "keep", "v"]);
        assert_eq!(r.text(&["EXPIRE", "keep", "1000"]), ":1\r\n");
        ok(&mut r, &["SET", "plain", "v"]);
        let tracked = |c: &mut Conn| c.info_field("stats", "slave_expires_tracked_keys");
        assert_eq!(tracked(&mut r), "2", "{kind:?}");
        // Deleted by the replica's own cron: nothing reads it meanwhile.
        // (The key goes, then its tracking: two steps of the cron.)
        wait("the replica to expire its own key", || {
            r.text(&["DBSIZE"]) == ":3\r\n" && tracked(&mut r) == "1"
        });
        assert_eq!(r.text(&["PERSIST", "keep"]), ":1\r\n");
        wait("the persisted key to be forgotten", || {
            tracked(&mut r) == "0"
        });
        assert_eq!(
            r.text(&["EXISTS", "from-master", "keep", "plain"]),
            ":3\r\n"
        );
    }
}

/// A command from the master that fails on the replica (the data may now
/// differ) is logged as critical and counted; with
/// propagation-error-behavior asking for it, a read-only replica stops.
#[test]
fn an_error_in_the_masters_stream_is_critical_on_the_replica() {
    for kind in [Server::Redis, Server::Datanode] {
        let master = start(kind);
        let mut replica = start(kind);
        let (mut m, mut r) = (master.conn(), replica.conn());
        r.text(&["CONFIG", "SET", "propagation-error-behavior", "ignore"]);
        replicate(&mut r, &master);
        wait("the link", || link_up(&mut r));
        let count = |r: &mut Conn| r.info_field("stats", "unexpected_error_replies");
        assert_eq!(count(&mut r), "0", "{kind:?}");
        assert_eq!(m.text(&["DEBUG", "REPLICATE", "fake-command-1"]), "+OK\r\n");
        m.text(&["SET", "foo", "bar"]);
        wait("the replica to catch up", || caught_up(&mut m, &mut r));
        assert_eq!(count(&mut r), "1", "{kind:?}");
        let log = replica.log();
        assert!(
            log.contains("== CRITICAL == This replica is sending an error to its master")
                && log.contains("to its master: 'unknown command 'fake-command-1'"),
            "{kind:?}: {log}"
        );
        // A writable replica's own change makes the master's next one fail.
        r.text(&["CONFIG", "SET", "replica-read-only", "no"]);
        r.text(&["SET", "number", "foo"]);
        m.text(&["INCRBY", "number", "1"]);
        wait("the replica to catch up", || caught_up(&mut m, &mut r));
        assert_eq!(count(&mut r), "2", "{kind:?}");
        assert_eq!(r.text(&["GET", "number"]), "$3\r\nfoo\r\n", "{kind:?}");
        // The message as it was written, without the reply's "ERR ".
        assert!(
            replica.log().contains(
                "'value is not an integer or out of range' after processing the command 'incrby'"
            ),
            "{kind:?}"
        );
        // Asked to, a read-only replica stops rather than diverge; with
        // `use-exit-on-panic` (hidden, as Redis's tests set it) by
        // exit(1) instead of SIGABRT.
        r.text(&["CONFIG", "SET", "replica-read-only", "yes"]);
        r.text(&[
            "CONFIG",
            "SET",
            "propagation-error-behavior",
            "panic-on-replicas",
        ]);
        assert_eq!(
            r.text(&["CONFIG", "SET", "use-exit-on-panic", "yes"]),
            "+OK\r\n"
        );
        assert_eq!(
            r.text(&["CONFIG", "GET", "use-exit-on-panic"]),
            "*2\r\n$17\r\nuse-exit-on-panic\r\n$3\r\nyes\r\n"
        );
        assert!(
            !r.text(&["CONFIG", "GET", "*"]).contains("exit-on-panic"),
            "{kind:?}: hidden from patterns"
        );
        m.text(&["DEBUG", "REPLICATE", "fake-command-2"]);
        let status = replica.wait_exit_status();
        assert_eq!(
            status.and_then(|s| s.code()),
            Some(1),
            "{kind:?}: {status:?}"
        );
        assert!(
            replica
                .log()
                .contains("panicked sending an error to its master"),
            "{kind:?}"
        );
        assert_eq!(m.text(&["PING"]), "+PONG\r\n", "{kind:?}");
    }
}

/// SHUTDOWN waits (writes paused) up to shutdown-timeout for a replica
/// that has not acknowledged everything, SHUTDOWN ABORT ends the wait,
/// and the lagging replica is logged when the master gives up on it.
#[test]
fn shutdown_waits_for_a_lagging_replica() {
    for kind in [Server::Redis, Server::Datanode] {
        let mut master = start(kind);
        let replica = start(kind);
        let (mut m, mut r) = (master.conn(), replica.conn());
        replicate(&mut r, &master);
        wait("the link", || link_up(&mut r));
        // The replica's link is not counted among the clients.
        assert_eq!(
            m.info_field("clients", "connected_clients"),
            "1",
            "{kind:?}"
        );
        // The replica cannot answer while stopped.
        replica.signal("-STOP");
        m.text(&["SET", "k", "v"]);
        m.text(&["CONFIG", "SET", "shutdown-timeout", "60"]);
        // (A SIGTERM: redis-server 7.0.15 crashes when SHUTDOWN ABORT
        // ends a wait that a client's SHUTDOWN began.)
        master.signal("-TERM");
        wait("the shutdown to wait", || {
            master
                .log()
                .contains("Waiting for replicas before shutting down.")
        });
        // INFO tells how long the wait may still last, only meanwhile.
        let left: i64 = m
            .info_field("server", "shutdown_in_milliseconds")
            .parse()
            .unwrap_or(-1);
        assert!(left > 0 && left <= 60_000, "{kind:?}: {left}");
        assert_eq!(m.text(&["SHUTDOWN", "ABORT"]), "+OK\r\n", "{kind:?}");
        assert!(
            !m.text(&["INFO", "server"])
                .contains("shutdown_in_milliseconds"),
            "{kind:?}"
        );
        // Writes go on after the abort.
        assert_eq!(m.text(&["SET", "k", "w"]), "+OK\r\n", "{kind:?}");
        // Given up on after the timeout, the replica is named in the log.
        m.text(&["CONFIG", "SET", "shutdown-timeout", "3"]);
        let mut asker = master.conn();
        asker
            .send_raw(&slotkv_tests::encode(&["SHUTDOWN"]))
            .expect("send");
        // The client waiting on SHUTDOWN counts as blocked meanwhile.
        wait("SHUTDOWN to block its client", || {
            m.info_field("clients", "blocked_clients") == "1"
        });
        master.wait_exit();
        let log = master.log();
        let port = replica.port;
        assert!(
            log.contains(&format!("Lagging replica 127.0.0.1:{port} reported offset"))
                && log.contains("0 of 1 replicas are in sync when shutting down."),
            "{kind:?}: {log}"
        );
        replica.signal("-CONT");
    }
}

/// A replica that loads a full sync from disk (`repl-diskless-load
/// disabled`, the default) keeps the master's snapshot as its dump.rdb,
/// with the replication id and offset it was cut at, so after a kill -9
/// it restarts from that file and continues partially (redis-server does;
/// datanode's replica kept no file, and its master's snapshot said no
/// offset). Every pair of the two servers.
#[test]
fn a_replica_keeps_its_sync_as_its_rdb_and_continues_from_it_after_a_crash() {
    let kinds = [Server::Redis, Server::Datanode];
    for mkind in kinds {
        for rkind in kinds {
            let pair = format!("{mkind:?} -> {rkind:?}");
            let master = start(mkind);
            let mut replica = start_replica_of(rkind, &master);
            let mut m = master.conn();
            fill(&mut m, "a", 30);
            let mut r = replica.conn();
            wait("link up", || link_up(&mut r));
            wait("caught up", || caught_up(&mut m, &mut r));
            let file = replica.path().join("dump.rdb");
            assert!(file.exists(), "{pair}: no dump.rdb after the sync");
            replica.signal_and_wait("-KILL");
            fill(&mut m, "while-down", 10);
            replica.restart();
            let mut r = replica.conn();
            wait("link up again", || link_up(&mut r));
            wait("caught up again", || caught_up(&mut m, &mut r));
            assert_eq!(digest(&mut m), digest(&mut r), "{pair}");
            assert_eq!(m.info_field("stats", "sync_full"), "1", "{pair}");
            assert_eq!(m.info_field("stats", "sync_partial_ok"), "1", "{pair}");
        }
    }
}

/// A full sync with `repl-diskless-sync no` saves the master's dump.rdb,
/// as a BGSAVE would (the changes since the last save drop to 0). With
/// `rdb-del-sync-files yes` and no persistence (no save points, no AOF),
/// neither side keeps the file the sync made. datanode wrote none.
#[test]
fn a_disk_sync_saves_the_rdb_and_rdb_del_sync_files_removes_it() {
    for kind in [Server::Redis, Server::Datanode] {
        let master = Node::start(
            kind,
            &[
                "--save",
                "",
                "--enable-debug-command",
                "yes",
                "--repl-diskless-sync",
                "no",
            ],
        );
        let mport = master.port.to_string();
        let mut m = master.conn();
        fill(&mut m, "d", 20);
        assert_ne!(
            m.info_field("persistence", "rdb_changes_since_last_save"),
            "0",
            "{kind:?}"
        );
        let mfile = master.path().join("dump.rdb");
        let replica_args = |del: &'static str| {
            vec![
                "--save".to_string(),
                String::new(),
                "--enable-debug-command".into(),
                "yes".into(),
                "--rdb-del-sync-files".into(),
                del.into(),
                "--replicaof".into(),
                "127.0.0.1".into(),
                mport.clone(),
            ]
        };
        {
            let args = replica_args("no");
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let replica = Node::start(kind, &args);
            let mut r = replica.conn();
            wait("link up", || link_up(&mut r));
            assert!(mfile.exists(), "{kind:?}: the master saved no dump.rdb");
            assert!(replica.path().join("dump.rdb").exists(), "{kind:?}");
            assert_eq!(
                m.info_field("persistence", "rdb_changes_since_last_save"),
                "0",
                "{kind:?}"
            );
        }
        std::fs::remove_file(&mfile).expect("remove the master's file");
        assert_eq!(
            m.text(&["CONFIG", "SET", "rdb-del-sync-files", "yes"]),
            "+OK\r\n"
        );
        m.text(&["SET", "after", "1"]);
        let args = replica_args("yes");
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let replica = Node::start(kind, &args);
        let mut r = replica.conn();
        wait("link up", || link_up(&mut r));
        wait("caught up", || caught_up(&mut m, &mut r));
        assert_eq!(digest(&mut m), digest(&mut r), "{kind:?}");
        wait("the master's sync file removed", || {
            master.log().contains(
                "Removing the RDB file used to feed replicas in a persistence-less instance",
            )
        });
        assert!(!mfile.exists(), "{kind:?}");
        assert!(
            replica
                .log()
                .contains("Removing the RDB file obtained from the master. This replica has persistence disabled"),
            "{kind:?}"
        );
        assert!(!replica.path().join("dump.rdb").exists(), "{kind:?}");
    }
}

/// `repl-disable-tcp-nodelay yes` turns Nagle's algorithm back on for a
/// replica's link at its full resync, as Redis does (fewer, larger packets
/// for the stream); off, the link keeps TCP_NODELAY. Seen through the
/// master's `setsockopt` calls (an LD_PRELOAD library counts those that
/// turn TCP_NODELAY off). datanode ignored the setting.
#[test]
fn repl_disable_tcp_nodelay_turns_nagle_on_for_the_replica_link() {
    for kind in [Server::Redis, Server::Datanode] {
        for setting in ["no", "yes"] {
            let pre = slotkv_tests::preload::Preload::new(
                &[("SLOTKV_COUNT_NODELAY_OFF", "nodelay-off")],
                &[],
            );
            let master = Node::start_with_env(
                kind,
                &pre.env(),
                &["--save", "", "--repl-disable-tcp-nodelay", setting],
            );
            master.conn().text(&["SET", "k", "v"]);
            let replica = start_replica_of(kind, &master);
            let mut rc = replica.conn();
            wait("the replica to sync", || link_up(&mut rc));
            assert_eq!(rc.text(&["GET", "k"]), "$1\r\nv\r\n", "{kind:?}");
            let offs = std::fs::read(pre.path("nodelay-off")).map_or(0, |b| b.len());
            if setting == "yes" {
                assert_eq!(offs, 1, "{kind:?}: one link, turned once");
            } else {
                assert_eq!(offs, 0, "{kind:?}");
            }
        }
    }
}

/// While a script runs past busy-reply-threshold on a replica, the
/// master's stream waits and is applied once the script ends, as on
/// redis-server; datanode applied it at once, its commands failed with
/// -BUSY and the replica lost those writes.
#[test]
fn a_replica_applies_the_stream_after_a_busy_script_ends() {
    let script = "local s = redis.call('TIME') \
        while true do \
          local t = redis.call('TIME') \
          if (t[1] - s[1]) * 1000000 + (t[2] - s[2]) > 1500000 then return 1 end \
        end";
    for kind in [Server::Redis, Server::Datanode] {
        let master = start(kind);
        let mut replica = start_replica_of(kind, &master);
        let (mut m, mut r) = (master.conn(), replica.conn());
        wait("the link", || link_up(&mut r));
        r.text(&["CONFIG", "SET", "busy-reply-threshold", "100"]);
        let mut runner = replica.conn();
        runner
            .send_raw(&slotkv_tests::encode(&["EVAL", script, "0"]))
            .expect("send");
        wait("the script to be busy", || {
            r.text(&["PING"]).starts_with("-BUSY")
        });
        for i in 0..10 {
            assert_eq!(m.text(&["SET", &format!("k{i}"), "v"]), "+OK\r\n");
        }
        let done = runner.read_reply().expect("reply");
        assert_eq!(String::from_utf8_lossy(&done.raw), ":1\r\n", "{kind:?}");
        wait("the writes on the replica", || {
            r.text(&["DBSIZE"]) == ":10\r\n"
        });
        assert_eq!(
            r.info_field("stats", "unexpected_error_replies"),
            "0",
            "{kind:?}"
        );
        replica.signal_and_wait("-TERM");
    }
}

/// While a master makes the snapshot of a full sync, INFO shows a BGSAVE
/// in progress and the replica, which has its +FULLRESYNC already, says
/// `sync` in ROLE, as with redis-server (datanode showed neither: it
/// answered +FULLRESYNC only once the snapshot was made).
#[test]
fn a_sync_in_progress_shows_as_a_bgsave_and_the_replica_as_syncing() {
    // A delay makes the replicas that ask within it share one snapshot:
    // they too are in `sync` while it is made.
    for (kind, delay) in [Server::Redis, Server::Datanode]
        .into_iter()
        .flat_map(|k| [(k, "0"), (k, "1")])
    {
        let master = start(kind);
        let mut m = master.conn();
        assert_eq!(m.text(&["DEBUG", "POPULATE", "50"]), "+OK\r\n");
        m.text(&["CONFIG", "SET", "repl-diskless-sync-delay", delay]);
        // 50 keys at 100 ms each: five seconds of snapshot.
        m.text(&["CONFIG", "SET", "rdb-key-save-delay", "100000"]);
        let replica = start(kind);
        let mut r = replica.conn();
        replicate(&mut r, &master);
        wait("a BGSAVE in progress", || {
            m.info_field("persistence", "rdb_bgsave_in_progress") == "1"
        });
        wait("the replica's sync state", || {
            r.text(&["ROLE"]).contains("$4\r\nsync\r\n")
        });
        // In `sync` while the snapshot is made, not only once it is.
        assert_eq!(
            m.info_field("persistence", "rdb_bgsave_in_progress"),
            "1",
            "{kind:?} {delay}"
        );
        m.text(&["CONFIG", "SET", "rdb-key-save-delay", "0"]);
        wait("the link", || link_up(&mut r));
        assert_eq!(r.text(&["DBSIZE"]), ":50\r\n", "{kind:?} {delay}");
    }
}

/// A master restarted from its RDB starts a new history at the file's
/// offset and keeps the file's id as its secondary one, so its replica
/// and that replica's own replica continue partially; the keys the load
/// found expired reach them as DELs counted in the offset, as on
/// redis-server (Redis's integration/psync2-master-restart).
#[test]
fn a_restarted_master_continues_its_replicas_under_a_new_id() {
    for kind in [Server::Redis, Server::Datanode] {
        let mut master = start(kind);
        let mut m = master.conn();
        // Expired keys stay until the restart's load finds them.
        assert_eq!(m.text(&["DEBUG", "SET-ACTIVE-EXPIRE", "0"]), "+OK\r\n");
        let replica = start_replica_of(kind, &master);
        let sub = start_replica_of(kind, &replica);
        let (mut r, mut s) = (replica.conn(), sub.conn());
        fill(&mut m, "before", 10);
        let until = std::time::Instant::now() + Duration::from_millis(300);
        for i in 0..40 {
            m.text(&["SELECT", &(i % 4).to_string()]);
            m.text(&["SET", &format!("short:{i}"), "v", "PX", "300"]);
        }
        m.text(&["SELECT", "0"]);
        wait("both replicas caught up", || {
            caught_up(&mut m, &mut r) && caught_up(&mut m, &mut s)
        });
        let replid = m.info_field("replication", "master_replid");
        let offset: u64 = m
            .info_field("replication", "master_repl_offset")
            .parse()
            .unwrap();
        wait("the short TTLs pass", || std::time::Instant::now() > until);
        r.text(&["CONFIG", "RESETSTAT"]);
        // NOW: no GETACK to the replicas before exiting, which would move
        // the offset.
        let _ = m.cmd(&["SHUTDOWN", "SAVE", "NOW"]);
        master.wait_exit();
        master.restart();
        let mut m = master.conn();
        wait("both links up again", || {
            caught_up(&mut m, &mut r) && caught_up(&mut m, &mut s)
        });
        let field = |c: &mut Conn, f: &str| c.info_field("replication", f);
        assert_ne!(field(&mut m, "master_replid"), replid, "{kind:?}");
        assert_eq!(field(&mut m, "master_replid2"), replid, "{kind:?}");
        assert_eq!(
            field(&mut m, "second_repl_offset"),
            (offset + 1).to_string(),
            "{kind:?}"
        );
        assert_eq!(
            m.info_field("persistence", "rdb_last_load_keys_expired"),
            "40",
            "{kind:?}"
        );
        // The DELs, with a SELECT before each change of database.
        let histlen: u64 = field(&mut m, "repl_backlog_histlen").parse().unwrap();
        let dels: usize = (0..40)
            .map(|i: usize| {
                let key = format!("short:{i}");
                format!("*2\r\n$3\r\nDEL\r\n${}\r\n{key}\r\n", key.len()).len()
            })
            .sum();
        assert!(histlen as usize >= dels, "{kind:?}: {histlen} < {dels}");
        assert_eq!(
            field(&mut m, "master_repl_offset"),
            (offset + histlen).to_string(),
            "{kind:?}"
        );
        assert_eq!(m.info_field("stats", "sync_partial_ok"), "1", "{kind:?}");
        assert_eq!(m.info_field("stats", "sync_full"), "0", "{kind:?}");
        // The replica's own replica reconnected to learn the new id.
        assert_eq!(r.info_field("stats", "sync_partial_ok"), "1", "{kind:?}");
        assert_eq!(
            field(&mut s, "master_replid"),
            field(&mut m, "master_replid")
        );
        for c in [&mut r, &mut s] {
            assert_eq!(c.text(&["EXISTS", "short:0"]), ":0\r\n", "{kind:?}");
            assert_eq!(c.text(&["DBSIZE"]), m.text(&["DBSIZE"]), "{kind:?}");
            assert_eq!(digest(c), digest(&mut m), "{kind:?}");
        }
    }
}

/// What a replica waiting for its snapshot has not been sent stays in the
/// backlog, as in Redis 7's shared replication buffer: INFO's
/// `repl_backlog_histlen` passes `repl-backlog-size`, and another replica
/// can continue partially from anywhere in it. Once the waiting replica
/// passes its `client-output-buffer-limit` it is let go and the backlog
/// shrinks (Redis's integration/replication-buffer).
#[test]
fn a_lagging_replica_keeps_the_backlog_until_its_buffer_limit_lets_it_go() {
    for kind in [Server::Redis, Server::Datanode] {
        let master = start(kind);
        let mut m = master.conn();
        for (k, v) in [
            ("repl-backlog-size", "16384"),
            ("client-output-buffer-limit", "replica 0 0 0"),
        ] {
            assert_eq!(m.text(&["CONFIG", "SET", k, v]), "+OK\r\n");
        }
        let first = start(kind);
        let mut r1 = first.conn();
        replicate(&mut r1, &master);
        wait("the first replica syncs", || caught_up(&mut m, &mut r1));
        // The second replica's snapshot takes 20 s: it waits in `sync`.
        assert_eq!(m.text(&["DEBUG", "POPULATE", "20"]), "+OK\r\n");
        m.text(&["CONFIG", "SET", "rdb-key-save-delay", "1000000"]);
        let second = start(kind);
        let mut r2 = second.conn();
        replicate(&mut r2, &master);
        wait("the second replica waits for its snapshot", || {
            m.info_field("persistence", "rdb_bgsave_in_progress") == "1"
                && r2.text(&["ROLE"]).contains("$4\r\nsync\r\n")
        });
        let big = "x".repeat(16 * 1024);
        let write_mb = |m: &mut Conn, tag: &str| {
            for i in 0..64 {
                assert_eq!(m.text(&["SET", &format!("{tag}:{i}"), &big]), "+OK\r\n");
            }
        };
        write_mb(&mut m, "a");
        wait("the first replica catches up", || {
            caught_up(&mut m, &mut r1)
        });
        let histlen = |m: &mut Conn| -> u64 {
            m.info_field("replication", "repl_backlog_histlen")
                .parse()
                .unwrap()
        };
        assert!(histlen(&mut m) > 1 << 20, "{kind:?}: {}", histlen(&mut m));
        // The first replica leaves for a moment and misses a megabyte:
        // far more than repl-backlog-size, all still held.
        let nowhere = slotkv_tests::free_port().to_string();
        r1.text(&["REPLICAOF", "127.0.0.1", &nowhere]);
        write_mb(&mut m, "b");
        replicate(&mut r1, &master);
        wait("the first replica catches up again", || {
            caught_up(&mut m, &mut r1)
        });
        assert_eq!(m.info_field("stats", "sync_partial_ok"), "1", "{kind:?}");
        // (DEBUG POPULATE's keys are not replicated: no digest here.)
        for k in ["a:0", "b:63"] {
            assert_eq!(r1.text(&["STRLEN", k]), ":16384\r\n", "{kind:?}");
        }
        // A limit the waiting replica is over: it goes, and the backlog
        // shrinks back.
        m.text(&[
            "CONFIG",
            "SET",
            "client-output-buffer-limit",
            "replica 128k 0 0",
        ]);
        m.text(&["SET", "trigger", "x"]);
        wait("the waiting replica is let go", || {
            m.info_field("replication", "connected_slaves") == "1"
        });
        wait("the backlog shrinks", || histlen(&mut m) < 1 << 20);
    }
}

/// CONFIG REWRITE writes what redis-server writes: lines replaced in
/// place, changed values (in Redis's units and quoting), the directives
/// Redis always writes, and `replicaof` for the master this node follows,
/// so a restart comes back as its replica (Redis's integration/psync2
/// restarts a replica so).
#[test]
fn config_rewrite_writes_redis_lines_and_a_restart_keeps_the_master() {
    let master = start(Server::Datanode);
    let mport = master.port.to_string();
    let mut written = Vec::new();
    for kind in [Server::Redis, Server::Datanode] {
        let dir = tempfile::tempdir().expect("tempdir");
        let conf = dir.path().join("node.conf");
        let old = "# kept\nsave 3600 1\nappendonly no\nmaxmemory 1gb\n";
        std::fs::write(&conf, old).expect("config");
        let mut n = Node::start_with_config(kind, Some(&conf), &[]);
        let mut c = n.conn();
        replicate(&mut c, &master);
        for (k, v) in [
            ("maxmemory", "100mb"),
            ("maxmemory-policy", "allkeys-lru"),
            ("client-output-buffer-limit", "replica 1mb 0 0"),
            ("cluster-announce-hostname", "node.example"),
            ("notify-keyspace-events", "KEA"),
            ("save", ""),
        ] {
            assert_eq!(c.text(&["CONFIG", "SET", k, v]), "+OK\r\n", "{kind:?} {k}");
        }
        assert_eq!(c.text(&["CONFIG", "REWRITE"]), "+OK\r\n");
        let text = std::fs::read_to_string(&conf).expect("config");
        let own = |l: &str| {
            l.replace(&n.port.to_string(), "PORT")
                .replace(&n.path().display().to_string(), "DIR")
        };
        let lines: Vec<String> = text.lines().map(own).collect();
        // In place, then the appended section (in Redis, in the order of
        // its configuration table: compared as a set).
        let split = lines
            .iter()
            .position(|l| l == "# Generated by CONFIG REWRITE")
            .expect("signature");
        let mut appended = lines[split..].to_vec();
        appended.sort();
        written.push((lines[..split].to_vec(), appended));
        n.signal_and_wait("-TERM");
        n.restart();
        let mut c = n.conn();
        assert_eq!(
            c.info_field("replication", "master_port"),
            mport,
            "{kind:?}"
        );
        assert_eq!(
            c.text(&["CONFIG", "GET", "maxmemory"]),
            "*2\r\n$9\r\nmaxmemory\r\n$9\r\n104857600\r\n"
        );
    }
    assert_eq!(written[0], written[1]);
    assert_eq!(
        written[0].0,
        [
            "# kept",
            "save \"\"",
            "appendonly no",
            "maxmemory 100mb",
            ""
        ]
    );
}

/// A diskless sync sends the snapshot as it is made, as redis-server's
/// child writes it to the replicas' sockets: the replica is reading it
/// (INFO master_sync_read_bytes grows) while the master's snapshot is
/// still in progress, for one replica and for replicas sharing a delayed
/// snapshot.
#[test]
fn a_diskless_snapshot_reaches_the_replica_while_it_is_made() {
    for (kind, delay) in [Server::Redis, Server::Datanode]
        .into_iter()
        .flat_map(|k| [(k, "0"), (k, "1")])
    {
        let master = start(kind);
        let mut m = master.conn();
        // Values of 100 KB, so the first keys fill more than one piece.
        assert_eq!(
            m.text(&["DEBUG", "POPULATE", "40", "key", "100000"]),
            "+OK\r\n"
        );
        for (k, v) in [
            ("repl-diskless-sync", "yes"),
            ("repl-diskless-sync-delay", delay),
            // 40 keys at 100 ms each: four seconds of snapshot.
            ("rdb-key-save-delay", "100000"),
        ] {
            assert_eq!(m.text(&["CONFIG", "SET", k, v]), "+OK\r\n");
        }
        let replica = start(kind);
        let mut r = replica.conn();
        replicate(&mut r, &master);
        wait("the replica reads the snapshot", || {
            let info = r.text(&["INFO", "replication"]);
            info.lines()
                .find_map(|l| l.strip_prefix("master_sync_read_bytes:"))
                .and_then(|v| v.trim().parse::<u64>().ok())
                .is_some_and(|n| n > 0)
        });
        assert_eq!(
            m.info_field("persistence", "rdb_bgsave_in_progress"),
            "1",
            "{kind:?} {delay}: the snapshot was whole before any of it was sent"
        );
        m.text(&["CONFIG", "SET", "rdb-key-save-delay", "0"]);
        wait("the link", || link_up(&mut r));
        assert_eq!(r.text(&["DBSIZE"]), ":40\r\n", "{kind:?} {delay}");
        assert_eq!(digest(&mut r), digest(&mut m), "{kind:?} {delay}");
    }
}

/// CLIENT PAUSE WRITE on a replica holds its master's writes too: they
/// are read (INFO slave_read_repl_offset moves) but applied only after
/// the pause (slave_repl_offset stays), as on redis-server (Redis's
/// unit/pause).
#[test]
fn a_paused_replica_reads_its_masters_writes_and_applies_them_after() {
    for kind in [Server::Redis, Server::Datanode] {
        let master = start(kind);
        let mut m = master.conn();
        m.text(&["CONFIG", "SET", "repl-ping-replica-period", "3600"]);
        let replica = start_replica_of(kind, &master);
        let mut r = replica.conn();
        m.text(&["SET", "foo", "bar"]);
        wait("caught up", || caught_up(&mut m, &mut r));
        let before = r.info_field("replication", "slave_repl_offset");
        assert_eq!(r.text(&["CLIENT", "PAUSE", "100000", "WRITE"]), "+OK\r\n");
        m.text(&["SET", "foo2", "bar2"]);
        let end = m.info_field("replication", "master_repl_offset");
        wait("the replica reads the write", || {
            r.info_field("replication", "slave_read_repl_offset") == end
        });
        assert_eq!(
            r.info_field("replication", "slave_repl_offset"),
            before,
            "{kind:?}"
        );
        assert_eq!(r.text(&["GET", "foo2"]), "$-1\r\n", "{kind:?}");
        assert_eq!(r.text(&["CLIENT", "UNPAUSE"]), "+OK\r\n");
        wait("the replica applies it", || {
            r.info_field("replication", "slave_repl_offset") == end
        });
        assert_eq!(r.text(&["GET", "foo2"]), "$4\r\nbar2\r\n", "{kind:?}");
    }
}

/// DEBUG POPULATE fills only the node it runs on: redis-server neither
/// replicates its keys nor writes them to the AOF (a test fills a master
/// and its replica apart this way).
#[test]
fn debug_populate_stays_on_the_node_it_runs_on() {
    for kind in [Server::Redis, Server::Datanode] {
        let master = start(kind);
        let replica = start_replica_of(kind, &master);
        let (mut m, mut r) = (master.conn(), replica.conn());
        wait("the link", || link_up(&mut r));
        ok(&mut m, &["CONFIG", "SET", "appendonly", "yes"]);
        wait("the AOF rewrite", || {
            m.info_field("persistence", "aof_rewrite_in_progress") == "0"
                && m.info_field("persistence", "aof_rewrite_scheduled") == "0"
        });
        ok(&mut m, &["DEBUG", "POPULATE", "100", "key", "1000"]);
        ok(&mut m, &["SET", "marker", "1"]);
        wait("the replica to catch up", || caught_up(&mut m, &mut r));
        assert_eq!(m.text(&["DBSIZE"]), ":101\r\n", "{kind:?}");
        assert_eq!(r.text(&["DBSIZE"]), ":1\r\n", "{kind:?}");
        // The stream carried SET marker alone (and the first SELECT).
        let offset: u64 = m
            .info_field("replication", "master_repl_offset")
            .parse()
            .expect("an offset");
        assert!(offset < 1000, "{kind:?}: {offset}");
        ok(&mut m, &["DEBUG", "LOADAOF"]);
        assert_eq!(m.text(&["DBSIZE"]), ":1\r\n", "{kind:?}");
    }
}

/// CLIENT KILL of a replica cuts its link at once: nothing written after
/// the kill reaches it, and what it held of the backlog is let go, so
/// writes past `repl-backlog-size` make its return a full sync.
#[test]
fn a_killed_replica_gets_nothing_written_after_the_kill() {
    for kind in [Server::Redis, Server::Datanode] {
        let master = start(kind);
        let replica = start_replica_of(kind, &master);
        let (mut m, mut r) = (master.conn(), replica.conn());
        wait("the first sync", || caught_up(&mut m, &mut r));
        ok(&mut m, &["CONFIG", "SET", "repl-backlog-size", "16384"]);
        let big = "A".repeat(16384);
        // A few rounds: the replica's side of the link races the kill.
        for round in 1..=3 {
            ok(&mut m, &["MULTI"]);
            m.text(&["CLIENT", "KILL", "TYPE", "replica"]);
            for i in 0..10 {
                m.text(&["SET", &format!("big:{i}"), &big]);
            }
            assert!(m.text(&["EXEC"]).starts_with("*11\r\n"), "{kind:?}");
            wait("the replica to catch up", || caught_up(&mut m, &mut r));
            let full = (round + 1).to_string();
            assert_eq!(m.info_field("stats", "sync_full"), full, "{kind:?}");
            assert_eq!(m.info_field("stats", "sync_partial_ok"), "0", "{kind:?}");
            assert_eq!(digest(&mut r), digest(&mut m), "{kind:?}");
        }
    }
}

/// A replica's link carries the stream one way: a command sent on it
/// that gets a reply (and any keyspace command, refused) makes the
/// master log the misuse and drop the link, as redis-server does.
#[test]
fn a_replica_link_that_asks_for_replies_is_dropped() {
    use std::io::{Read, Write};
    for kind in [Server::Redis, Server::Datanode] {
        let n = start(kind);
        let mut c = n.conn();
        // Reads until the master closes the link (bounded by the timeout).
        let closed_after = |first: &str, then: &str| -> bool {
            let mut s = std::net::TcpStream::connect(("127.0.0.1", n.port)).expect("connect");
            s.set_read_timeout(Some(Duration::from_secs(10)))
                .expect("timeout");
            s.write_all(first.as_bytes()).expect("send");
            let mut buf = [0u8; 4096];
            // The snapshot's first bytes: the link is a replica's now.
            let got = s.read(&mut buf).expect("the sync's reply");
            assert!(got > 0, "{kind:?}");
            s.write_all(then.as_bytes()).expect("send");
            loop {
                match s.read(&mut buf) {
                    Ok(0) => return true,
                    Ok(_) => continue,
                    Err(_) => return false,
                }
            }
        };
        assert!(closed_after("SYNC\r\n", "PING\r\n"), "{kind:?}");
        assert!(
            closed_after("PSYNC replicationid -1\r\n", "GET foo\r\n"),
            "{kind:?}"
        );
        assert!(closed_after("SYNC\r\n", "XINFO HELP\r\n"), "{kind:?}");
        assert_eq!(c.text(&["PING"]), "+PONG\r\n");
        wait("the syncs to end", || {
            c.info_field("persistence", "rdb_bgsave_in_progress") == "0"
        });
        let mut s = std::net::TcpStream::connect(("127.0.0.1", n.port)).expect("connect");
        s.write_all(b"PSYNC replicationid offset_str\r\n")
            .expect("send");
        let mut buf = [0u8; 128];
        let got = s.read(&mut buf).expect("a reply");
        assert_eq!(
            &buf[..got],
            b"-ERR value is not an integer or out of range\r\n",
            "{kind:?}"
        );
        let log = n.log();
        for line in [
            "Replica generated a reply to command 'ping', disconnecting it: id=",
            "Replica generated a reply to command 'get', disconnecting it: id=",
            "Replica generated a reply to command 'xinfo|help', disconnecting it: id=",
            "== CRITICAL == This master is sending an error to its replica:",
            "Replica can't interact with the keyspace",
            "Replica 127.0.0.1:<unknown-replica-port> asks for synchronization but with a wrong offset",
        ] {
            assert!(log.contains(line), "{kind:?}: {line}");
        }
    }
}

/// A replica that loads "from the socket" (`repl-diskless-load
/// on-empty-db` when empty, or `swapdb`) loads the snapshot as it
/// arrives: its loaded bytes grow while the master is still making the
/// snapshot (slowed by `rdb-key-save-delay`), as redis-server's do. The
/// payload is never held whole on the replica.
#[test]
fn a_replica_loads_the_snapshot_as_it_arrives() {
    for kind in [Server::Redis, Server::Datanode] {
        for load in ["on-empty-db", "swapdb"] {
            let master = start(kind);
            let replica = start(kind);
            let (mut m, mut r) = (master.conn(), replica.conn());
            ok(&mut m, &["CONFIG", "SET", "repl-diskless-sync", "yes"]);
            ok(&mut m, &["DEBUG", "POPULATE", "300", "key", "1000"]);
            // Uncompressed: redis-server's snapshot leaves in 16 kB
            // writes, and POPULATE's padded values compress to nothing.
            ok(&mut m, &["CONFIG", "SET", "rdbcompression", "no"]);
            ok(&mut m, &["CONFIG", "SET", "rdb-key-save-delay", "10000"]);
            ok(&mut r, &["CONFIG", "SET", "repl-diskless-load", load]);
            // redis-server answers clients while loading only every so
            // many bytes.
            ok(
                &mut r,
                &[
                    "CONFIG",
                    "SET",
                    "loading-process-events-interval-bytes",
                    "1024",
                ],
            );
            replicate(&mut r, &master);
            let loaded = |r: &mut Conn| -> u64 {
                r.info_field_opt("persistence", "loading_loaded_bytes")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0)
            };
            wait("the replica to load part of the snapshot", || {
                loaded(&mut r) > 20_000
            });
            assert_eq!(
                m.info_field("persistence", "rdb_bgsave_in_progress"),
                "1",
                "{kind:?} {load}: the snapshot was already made"
            );
            assert_eq!(
                r.info_field("persistence", "loading"),
                "1",
                "{kind:?} {load}"
            );
            // The snapshot's size is unknown: the master's memory, from the
            // RDB's used-mem field, stands in for it.
            let number = |c: &mut Conn, section: &str, field: &str| -> u64 {
                c.info_field(section, field).parse().expect("a number")
            };
            let used_mem = number(&mut r, "persistence", "loading_rdb_used_mem");
            let master_mem = number(&mut m, "memory", "used_memory");
            assert!(
                used_mem > 300_000 && used_mem <= master_mem * 2,
                "{kind:?} {load}: {used_mem} against {master_mem}"
            );
            ok(&mut m, &["CONFIG", "SET", "rdb-key-save-delay", "0"]);
            wait("the replica to catch up", || caught_up(&mut m, &mut r));
            assert_eq!(r.text(&["DBSIZE"]), ":300\r\n", "{kind:?} {load}");
            assert_eq!(digest(&mut r), digest(&mut m), "{kind:?} {load}");
        }
    }
}

/// A fake replica: announces `capa`, asks for a full sync and reads up
/// to its `+FULLRESYNC` line; returns the reader and that line.
fn ask_full_sync(port: u16, capa: &str) -> (std::io::BufReader<std::net::TcpStream>, String) {
    use std::io::{BufRead, Write};
    let s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    let mut w = s.try_clone().expect("clone");
    let mut r = std::io::BufReader::new(s);
    let mut line = String::new();
    // One at a time: PSYNC with a reply pending is refused.
    w.write_all(format!("REPLCONF {capa}\r\n").as_bytes())
        .expect("send");
    r.read_line(&mut line).expect("+OK");
    w.write_all(b"PSYNC ? -1\r\n").expect("send");
    while !line.starts_with("+FULLRESYNC") {
        line.clear();
        r.read_line(&mut line).expect("a line");
    }
    (r, line)
}

/// A replica that asks for a diskless sync and leaves: the snapshot made
/// for it stops (redis-server kills its child); a replica that takes
/// nothing for `repl-timeout` is let go, and the snapshot goes on
/// without waiting for it.
#[test]
fn a_diskless_snapshot_stops_without_replicas_and_drops_a_stuck_one() {
    for kind in [Server::Redis, Server::Datanode] {
        let master = start(kind);
        let mut m = master.conn();
        ok(&mut m, &["CONFIG", "SET", "repl-diskless-sync", "yes"]);
        ok(&mut m, &["CONFIG", "SET", "rdbcompression", "no"]);
        let ask = || ask_full_sync(master.port, "capa eof capa psync2").0;
        let bgsave = |m: &mut Conn| m.info_field("persistence", "rdb_bgsave_in_progress");
        // 100 ms per key: the snapshot would take minutes.
        ok(&mut m, &["DEBUG", "POPULATE", "1000", "key", "1000"]);
        ok(&mut m, &["CONFIG", "SET", "rdb-key-save-delay", "100000"]);
        let leaving = ask();
        assert_eq!(bgsave(&mut m), "1", "{kind:?}");
        drop(leaving);
        wait("the snapshot to stop", || bgsave(&mut m) == "0");
        assert!(
            master
                .log()
                .contains("Diskless rdb transfer, last replica dropped"),
            "{kind:?}"
        );
        // 20 MB that a replica never reads: more than the socket buffers
        // and what the master holds ahead of its slowest replica.
        ok(&mut m, &["CONFIG", "SET", "rdb-key-save-delay", "0"]);
        ok(&mut m, &["FLUSHALL"]);
        ok(&mut m, &["DEBUG", "POPULATE", "20000", "key", "1000"]);
        let stuck = ask();
        // Lowered while the sync runs: it applies at once.
        ok(&mut m, &["CONFIG", "SET", "repl-timeout", "2"]);
        wait("the stuck replica to be let go", || {
            master
                .log()
                .contains("Disconnecting timedout replica (full sync)")
        });
        wait("the snapshot to end", || bgsave(&mut m) == "0");
        wait("the replica to be gone", || {
            m.info_field("replication", "connected_slaves") == "0"
        });
        drop(stuck);
        assert_eq!(m.text(&["PING"]), "+PONG\r\n", "{kind:?}");
    }
}

/// With `repl-diskless-sync no`, replicas that ask while a disk snapshot
/// is taken share it (the later one gets the same offset and reads the
/// writes since the cut from the stream), as redis-server attaches them
/// to one BGSAVE; when every one of them leaves, the snapshot stops
/// (redis-server kills its child), unless save points want the file.
#[test]
fn replicas_share_a_disk_snapshot_that_stops_when_they_all_leave() {
    use std::io::{BufRead, Read};
    for kind in [Server::Redis, Server::Datanode] {
        let master = start(kind);
        let mut m = master.conn();
        ok(&mut m, &["CONFIG", "SET", "repl-diskless-sync", "no"]);
        ok(&mut m, &["CONFIG", "SET", "save", ""]);
        let ask = || ask_full_sync(master.port, "capa psync2");
        let bgsave = |m: &mut Conn| m.info_field("persistence", "rdb_bgsave_in_progress");
        let replicas = |m: &mut Conn| m.info_field("replication", "connected_slaves");

        // Two seconds of snapshot; a write lands between the two asks.
        ok(&mut m, &["DEBUG", "POPULATE", "20", "key", "10"]);
        ok(&mut m, &["CONFIG", "SET", "rdb-key-save-delay", "100000"]);
        let (_first, first_line) = ask();
        ok(&mut m, &["SET", "written-between", "1"]);
        let (mut second, second_line) = ask();
        assert_eq!(
            first_line, second_line,
            "{kind:?}: one snapshot, one offset"
        );
        let mut line = String::new();
        while !line.starts_with('$') {
            line.clear();
            second.read_line(&mut line).expect("bulk header");
        }
        let len: usize = line[1..].trim().parse().expect("length");
        let mut rdb = vec![0u8; len];
        second.read_exact(&mut rdb).expect("the snapshot");
        let mut stream = Vec::new();
        let mut piece = [0u8; 4096];
        while !String::from_utf8_lossy(&stream).contains("written-between") {
            let n = second.read(&mut piece).expect("the stream");
            assert!(n > 0, "{kind:?}: the link closed");
            stream.extend_from_slice(&piece[..n]);
        }
        drop((_first, second));
        wait("the replicas to be gone", || replicas(&mut m) == "0");
        wait("the snapshot to end", || bgsave(&mut m) == "0");

        // A hundred seconds of snapshot, for two replicas that leave.
        ok(&mut m, &["DEBUG", "POPULATE", "1000", "key", "10"]);
        let first = ask();
        let second = ask();
        assert_eq!(first.1, second.1, "{kind:?}");
        drop(first);
        wait("one replica to be gone", || replicas(&mut m) == "1");
        assert_eq!(bgsave(&mut m), "1", "{kind:?}: another replica waits");
        drop(second);
        wait("the snapshot to stop", || bgsave(&mut m) == "0");

        // Save points want the file: the snapshot goes on without them.
        ok(&mut m, &["CONFIG", "SET", "save", "900 1"]);
        let first = ask();
        let second = ask();
        drop((first, second));
        wait("the replicas to be gone", || replicas(&mut m) == "0");
        assert_eq!(bgsave(&mut m), "1", "{kind:?}: the save goes on");
    }
}

/// A replica still waiting for its master's snapshot lets go of the link
/// at `REPLICAOF NO ONE` (redis-server cancels the transfer), so its
/// master stops the snapshot no one waits for. Each server is the
/// replica of its own kind.
#[test]
fn replicaof_no_one_drops_a_link_waiting_for_its_snapshot() {
    for kind in [Server::Redis, Server::Datanode] {
        let master = start(kind);
        let replica = start(kind);
        let (mut m, mut r) = (master.conn(), replica.conn());
        ok(&mut m, &["CONFIG", "SET", "repl-diskless-sync", "no"]);
        ok(&mut m, &["CONFIG", "SET", "save", ""]);
        ok(&mut m, &["DEBUG", "POPULATE", "100", "key", "10"]);
        // A hundred seconds of snapshot.
        ok(&mut m, &["CONFIG", "SET", "rdb-key-save-delay", "1000000"]);
        replicate(&mut r, &master);
        wait("the replica to wait for its snapshot", || {
            m.info_field_opt("replication", "slave0")
                .is_some_and(|s| s.contains("state=wait_bgsave"))
        });
        assert_eq!(r.text(&["REPLICAOF", "NO", "ONE"]), "+OK\r\n");
        wait("the master to see the replica go", || {
            m.info_field("replication", "connected_slaves") == "0"
        });
        wait("the snapshot to stop", || {
            m.info_field("persistence", "rdb_bgsave_in_progress") == "0"
        });
    }
}
