//! RDB files: redis-server's dump.rdb loads into datanode with every key,
//! TTL and value, datanode's loads into redis-server, damaged files are
//! refused, and SHUTDOWN saves when save points are set.

use slotkv_tests::{Conn, Node, Reply, Server};

fn fill(c: &mut Conn) {
    let long = "y".repeat(200);
    let cmds: Vec<Vec<String>> = vec![
        vec!["SET".into(), "str".into(), "hello".into()],
        vec!["SET".into(), "num".into(), "-12345".into()],
        vec!["SET".into(), "long".into(), long],
        vec![
            "SET".into(),
            "ttl".into(),
            "v".into(),
            "EX".into(),
            "5000".into(),
        ],
        vec![
            "RPUSH".into(),
            "list".into(),
            "a".into(),
            "b".into(),
            "3".into(),
        ],
        vec![
            "SADD".into(),
            "iset".into(),
            "1".into(),
            "2".into(),
            "300000".into(),
        ],
        vec!["SADD".into(), "sset".into(), "x".into(), "y".into()],
        vec![
            "HSET".into(),
            "hash".into(),
            "f".into(),
            "v".into(),
            "g".into(),
            "7".into(),
        ],
        vec![
            "ZADD".into(),
            "zset".into(),
            "1".into(),
            "a".into(),
            "2.5".into(),
            "b".into(),
        ],
        vec![
            "PFADD".into(),
            "hll".into(),
            "a".into(),
            "b".into(),
            "c".into(),
        ],
        vec![
            "GEOADD".into(),
            "geo".into(),
            "13.361389".into(),
            "38.115556".into(),
            "Palermo".into(),
        ],
        vec!["SELECT".into(), "3".into()],
        vec!["SET".into(), "indb3".into(), "yes".into()],
        vec!["SELECT".into(), "0".into()],
    ];
    for cmd in &cmds {
        c.cmd(cmd).expect("fill");
    }
    // A list long enough for many 8 KB nodes, mixing every listpack
    // encoding: small and large integers, short strings, compressible
    // strings over 20 bytes and one over 4 KB.
    for batch in 0..20 {
        let mut cmd = vec!["RPUSH".to_string(), "biglist".into()];
        for i in batch * 1000..(batch + 1) * 1000 {
            cmd.push(match i % 7 {
                0 => i.to_string(),
                1 => format!("-{}", i * 1_000_003),
                2 => format!("{}", (i as i64) << 40),
                3 => format!("element:{i:012}"),
                4 => "z".repeat(30 + i % 300),
                5 if i % 1000 == 5 => "w".repeat(5000),
                _ => format!("0{i}"),
            });
        }
        c.cmd(&cmd).expect("fill biglist");
    }
    // A hash, a set and a sorted set too big for a listpack or an intset,
    // each well over the 64 KB SAVE writes out at a time.
    for batch in 0..4 {
        let range = batch * 1000..(batch + 1) * 1000;
        let mut h = vec!["HSET".to_string(), "bighash".into()];
        let mut s = vec!["SADD".to_string(), "bigset".into()];
        let mut z = vec!["ZADD".to_string(), "bigzset".into()];
        for i in range {
            h.push(format!("field:{i:08}"));
            h.push("v".repeat(20 + i % 40));
            s.push(format!("member:{i:020}"));
            z.push(format!("{}", i as f64 / 7.0));
            z.push(format!("zmember:{i:020}"));
        }
        for cmd in [h, s, z] {
            c.cmd(&cmd).expect("fill big collections");
        }
    }
    // A stream over several nodes, with two field sets, deleted entries
    // and a last ID past its last entry.
    for i in 1..=450u64 {
        let id = format!("{}-{}", 5000 + i / 4, i % 4);
        let cmd: Vec<String> = if i % 5 == 0 {
            vec![
                "XADD".into(),
                "stream".into(),
                id,
                "other".into(),
                i.to_string(),
            ]
        } else {
            vec![
                "XADD".into(),
                "stream".into(),
                id,
                "a".into(),
                i.to_string(),
                "b".into(),
                "x".into(),
            ]
        };
        c.cmd(&cmd).expect("fill stream");
    }
    for del in ["5001-1", "5010-2", "5100-0"] {
        c.cmd(&["XDEL", "stream", del]).expect("xdel");
    }
    c.cmd(&["XSETID", "stream", "9999-9"]).expect("xsetid");
    // Consumer groups with pending entries, an idle consumer, and a group
    // whose read counter is unknown.
    for cmd in [
        &["XGROUP", "CREATE", "stream", "g1", "0"][..],
        &[
            "XREADGROUP",
            "GROUP",
            "g1",
            "alice",
            "COUNT",
            "5",
            "STREAMS",
            "stream",
            ">",
        ],
        &[
            "XCLAIM",
            "stream",
            "g1",
            "bob",
            "0",
            "5000-2",
            "TIME",
            "1234",
            "RETRYCOUNT",
            "3",
        ],
        &["XGROUP", "CREATECONSUMER", "stream", "g1", "idle"],
        &["XGROUP", "CREATE", "stream", "g2", "5050-0"],
    ] {
        c.cmd(cmd).expect("consumer groups");
    }
}

fn normalized(c: &mut Conn, cmd: &[&str]) -> String {
    let r = c.cmd(cmd).expect("reply");
    match r.tree {
        Reply::Agg(_, mut items) => {
            items.sort();
            format!("{items:?}")
        }
        other => format!("{other:?}"),
    }
}

fn snapshot(c: &mut Conn) -> Vec<String> {
    let mut out = vec![
        c.text(&["GET", "str"]),
        c.text(&["GET", "num"]),
        c.text(&["STRLEN", "long"]),
        c.text(&["LRANGE", "list", "0", "-1"]),
        c.text(&["LRANGE", "biglist", "0", "-1"]),
        c.text(&["OBJECT", "ENCODING", "biglist"]),
        normalized(c, &["SMEMBERS", "iset"]),
        normalized(c, &["SMEMBERS", "sset"]),
        normalized(c, &["HGETALL", "hash"]),
        normalized(c, &["HGETALL", "bighash"]),
        normalized(c, &["SMEMBERS", "bigset"]),
        c.text(&["ZRANGE", "bigzset", "0", "-1", "WITHSCORES"]),
        c.text(&["OBJECT", "ENCODING", "bighash"]),
        c.text(&["OBJECT", "ENCODING", "bigzset"]),
        c.text(&["ZRANGE", "zset", "0", "-1", "WITHSCORES"]),
        c.text(&["DBSIZE"]),
        c.text(&["XRANGE", "stream", "-", "+"]),
        c.text(&["XLEN", "stream"]),
        // Delivery and seen times are stored in the file, so even FULL
        // comes back the same.
        c.text(&["XINFO", "STREAM", "stream", "FULL"]),
        // PFCOUNT first: it caches the count in the value GET then shows.
        c.text(&["PFCOUNT", "hll"]),
        c.text(&["GET", "hll"]),
        c.text(&["GEOPOS", "geo", "Palermo"]),
    ];
    let ttl = c.text(&["TTL", "ttl"]);
    out.push(if ttl.starts_with(":49") || ttl.starts_with(":5000") {
        "ttl ok".into()
    } else {
        ttl
    });
    c.text(&["SELECT", "3"]);
    out.push(c.text(&["GET", "indb3"]));
    c.text(&["SELECT", "0"]);
    out
}

#[test]
fn redis_rdb_loads_into_datanode_and_back() {
    let r = Node::start(Server::Redis, &["--save", ""]);
    let mut rc = r.conn();
    fill(&mut rc);
    let want = snapshot(&mut rc);
    assert_eq!(rc.text(&["SAVE"]), "+OK\r\n");

    // Datanode starts from redis-server's file.
    let mut d = Node::start(Server::Datanode, &["--save", "", "--appendonly", "no"]);
    d.signal_and_wait("-TERM");
    std::fs::copy(r.path().join("dump.rdb"), d.path().join("dump.rdb")).expect("copy");
    d.restart();
    let mut dc = d.conn();
    assert_eq!(
        snapshot(&mut dc),
        want,
        "datanode after loading redis-server's RDB"
    );

    // And redis-server starts from datanode's.
    assert_eq!(dc.text(&["SAVE"]), "+OK\r\n");
    let mut r2 = Node::start(Server::Redis, &["--save", ""]);
    r2.signal_and_wait("-TERM");
    std::fs::copy(d.path().join("dump.rdb"), r2.path().join("dump.rdb")).expect("copy");
    r2.restart();
    assert_eq!(
        snapshot(&mut r2.conn()),
        want,
        "redis-server after loading datanode's RDB"
    );
}

#[test]
fn damaged_rdb_is_refused() {
    let mut d = Node::start(Server::Datanode, &["--save", "", "--appendonly", "no"]);
    let mut c = d.conn();
    fill(&mut c);
    assert_eq!(c.text(&["SAVE"]), "+OK\r\n");
    d.signal_and_wait("-TERM");
    let path = d.path().join("dump.rdb");
    let data = std::fs::read(&path).expect("read");
    // A flipped byte in the middle fails the checksum.
    let mut bad = data.clone();
    let mid = bad.len() / 2;
    bad[mid] ^= 0x55;
    std::fs::write(&path, &bad).expect("write");
    let (code, out) = d.start_expect_failure_here(&["--appendonly", "no", "--save", ""]);
    assert_ne!(code, 0);
    assert!(out.contains("RDB"), "{out}");
    // A truncated file is refused too, never half loaded.
    std::fs::write(&path, &data[..data.len() / 3]).expect("write");
    let (code, out) = d.start_expect_failure_here(&["--appendonly", "no", "--save", ""]);
    assert_ne!(code, 0);
    assert!(out.contains("RDB"), "{out}");
}

#[test]
fn shutdown_saves_when_save_points_are_set() {
    let mut d = Node::start(
        Server::Datanode,
        &["--save", "3600 1", "--appendonly", "no"],
    );
    let mut c = d.conn();
    c.text(&["SET", "kept", "1"]);
    let _ = c.send_raw(&slotkv_tests::encode(&["SHUTDOWN"]));
    d.wait_exit();
    d.restart();
    assert_eq!(d.conn().text(&["GET", "kept"]), "$1\r\n1\r\n");
    // SHUTDOWN NOSAVE does not.
    let mut c = d.conn();
    c.text(&["SET", "lost", "1"]);
    let _ = c.send_raw(&slotkv_tests::encode(&["SHUTDOWN", "NOSAVE"]));
    d.wait_exit();
    d.restart();
    assert_eq!(d.conn().text(&["EXISTS", "lost"]), ":0\r\n");
}

#[test]
fn bgsave_writes_a_loadable_file() {
    let mut d = Node::start(Server::Datanode, &["--save", "", "--appendonly", "no"]);
    let mut c = d.conn();
    fill(&mut c);
    let want = snapshot(&mut c);
    // A second database, which the file lists after the first.
    let in_db3 = |c: &mut Conn, cmd: &[&str]| {
        c.text(&["SELECT", "3"]);
        let r = c.text(cmd);
        c.text(&["SELECT", "0"]);
        r
    };
    in_db3(&mut c, &["SET", "other", "v3"]);
    assert_eq!(c.text(&["BGSAVE"]), "+Background saving started\r\n");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while c
        .text(&["INFO", "persistence"])
        .contains("rdb_bgsave_in_progress:1")
    {
        assert!(std::time::Instant::now() < deadline);
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    d.signal_and_wait("-KILL");
    // The file is written as it is assembled: redis-server reads it too.
    let mut r = Node::start(Server::Redis, &["--save", ""]);
    r.signal_and_wait("-TERM");
    std::fs::copy(d.path().join("dump.rdb"), r.path().join("dump.rdb")).expect("copy");
    r.restart();
    assert_eq!(snapshot(&mut r.conn()), want, "redis-server");
    assert_eq!(in_db3(&mut r.conn(), &["GET", "other"]), "$2\r\nv3\r\n");
    d.restart();
    assert_eq!(snapshot(&mut d.conn()), want);
    assert_eq!(in_db3(&mut d.conn(), &["GET", "other"]), "$2\r\nv3\r\n");
}

#[test]
fn rdbcompression_shrinks_the_file_and_both_forms_load_into_redis() {
    let d = Node::start(Server::Datanode, &["--save", "", "--appendonly", "no"]);
    let mut c = d.conn();
    fill(&mut c);
    let want = snapshot(&mut c);
    let size = |c: &mut Conn| {
        assert_eq!(c.text(&["SAVE"]), "+OK\r\n");
        std::fs::metadata(d.path().join("dump.rdb"))
            .expect("dump.rdb")
            .len()
    };
    let compressed = size(&mut c);
    assert_eq!(
        c.text(&["CONFIG", "SET", "rdbcompression", "no"]),
        "+OK\r\n"
    );
    let plain = size(&mut c);
    // The 20,000-element list is mostly repetitive strings over 20 bytes.
    assert!(
        compressed * 2 < plain,
        "compressed {compressed} bytes, plain {plain}"
    );
    let mut r = Node::start(Server::Redis, &["--save", ""]);
    r.signal_and_wait("-TERM");
    std::fs::copy(d.path().join("dump.rdb"), r.path().join("dump.rdb")).expect("copy");
    r.restart();
    assert_eq!(snapshot(&mut r.conn()), want, "redis-server, plain RDB");
}
