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
    let mport = master.port.to_string();
    let mut replica = Node::start(
        Server::Datanode,
        &[
            "--save",
            "",
            "--enable-debug-command",
            "yes",
            "--replicaof",
            "127.0.0.1",
            &mport,
        ],
    );
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
