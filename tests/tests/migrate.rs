//! MIGRATE, side by side with redis-server 7.0: the same steps against a
//! redis-server source and target and against a datanode pair give the
//! same replies and leave the same data; and across implementations.

use slotkv_tests::{free_port, Conn, Node, Server};

fn start(kind: Server, extra: &[&str]) -> Node {
    let mut args = vec!["--save", "", "--appendonly", "no"];
    args.extend_from_slice(extra);
    Node::start(kind, &args)
}

/// Runs MIGRATE cases from a `source` to a `target` node and returns
/// what they answered and what each side held afterwards.
fn migrate_cases(source: &Node, target: &Node) -> Vec<String> {
    let (mut s, mut t) = (source.conn(), target.conn());
    let port = target.port.to_string();
    let port = port.as_str();
    let mut seen = Vec::new();
    let dead = free_port().to_string();
    let mut run = |c: &mut Conn, args: &[&str]| {
        let r = c.text(args);
        // The ports differ from run to run.
        let line = format!("{args:?} -> {r}")
            .replace(port, "PORT")
            .replace(dead.as_str(), "DEAD");
        seen.push(line);
    };
    for args in [
        // Nothing to move.
        &["MIGRATE", "127.0.0.1", port, "nokey", "0", "1000"][..],
        &["SET", "k1", "v1"],
        &["PEXPIRE", "k1", "500000"],
        &["RPUSH", "l", "a", "b", "c"],
        &["HSET", "h", "f", "v"],
        // Bad arguments.
        &["MIGRATE", "127.0.0.1", port, "k1", "0", "1000", "BOGUS"],
        &["MIGRATE", "127.0.0.1", port, "k1", "0", "1000", "KEYS", "l"],
        &["MIGRATE", "127.0.0.1", port, "k1", "0", "1000", "AUTH"],
        &[
            "MIGRATE",
            "127.0.0.1",
            port,
            "k1",
            "0",
            "1000",
            "AUTH2",
            "u",
        ],
        &["MIGRATE", "127.0.0.1", port, "k1", "x", "1000"],
        &["MIGRATE", "127.0.0.1", port, "k1", "0", "x"],
        // Nothing listens there.
        &["MIGRATE", "127.0.0.1", dead.as_str(), "k1", "0", "1000"],
        // One key, TTL kept.
        &["MIGRATE", "127.0.0.1", port, "k1", "0", "1000"],
        &["EXISTS", "k1"],
        // COPY keeps ours; the second time the target refuses.
        &["MIGRATE", "127.0.0.1", port, "l", "0", "1000", "COPY"],
        &["MIGRATE", "127.0.0.1", port, "l", "0", "1000", "COPY"],
        &["EXISTS", "l"],
        &["RPUSH", "l", "d"],
        &["MIGRATE", "127.0.0.1", port, "l", "0", "1000", "REPLACE"],
        &["EXISTS", "l"],
        // Several keys, some missing, into another database.
        &["SET", "a", "1"],
        &["SET", "b", "2"],
        &[
            "MIGRATE",
            "127.0.0.1",
            port,
            "",
            "3",
            "1000",
            "KEYS",
            "a",
            "nope",
            "b",
            "h",
        ],
        &["DBSIZE"],
        // AUTH to a target without a password.
        &["SET", "c", "3"],
        &[
            "MIGRATE",
            "127.0.0.1",
            port,
            "c",
            "0",
            "1000",
            "AUTH",
            "secret",
        ],
        &["EXISTS", "c"],
        &[
            "MIGRATE",
            "127.0.0.1",
            port,
            "c",
            "0",
            "1000",
            "AUTH2",
            "default",
            "secret",
        ],
    ] {
        run(&mut s, args);
    }
    for args in [
        &["PTTL", "k1"][..],
        &["GET", "k1"],
        &["LRANGE", "l", "0", "-1"],
        &["DBSIZE"],
        &["SELECT", "3"],
        &["MGET", "a", "b", "nope"],
        &["HGETALL", "h"],
        &["DBSIZE"],
    ] {
        let r = t.text(args);
        // The remaining TTL ticks: only its order of magnitude is stable.
        let r = if args[0] == "PTTL" {
            let ms: i64 = r.trim_start_matches(':').trim().parse().unwrap_or(-9);
            assert!(ms > 400_000 && ms <= 500_000, "{r}");
            "ttl ok".to_string()
        } else {
            r
        };
        seen.push(format!("target {args:?} -> {r}"));
    }
    seen
}

#[test]
fn migrate_replies_and_moves_data_as_redis_does() {
    let (rs, rt) = (start(Server::Redis, &[]), start(Server::Redis, &[]));
    let redis = migrate_cases(&rs, &rt);
    let (ds, dt) = (start(Server::Datanode, &[]), start(Server::Datanode, &[]));
    let ours = migrate_cases(&ds, &dt);
    assert_eq!(ours, redis);
    assert!(
        redis.iter().any(|l| l.contains("NOKEY")),
        "the cases must include a NOKEY: {redis:?}"
    );
}

#[test]
fn migrate_moves_keys_between_implementations() {
    // datanode to redis-server and back: the payloads are Redis's.
    let (d, r) = (start(Server::Datanode, &[]), start(Server::Redis, &[]));
    let (mut dc, mut rc) = (d.conn(), r.conn());
    for i in 0..200 {
        dc.text(&["ZADD", &format!("z{i}"), "1", "a", "2", &format!("m{i}")]);
    }
    let keys: Vec<String> = (0..200).map(|i| format!("z{i}")).collect();
    let mut args = vec!["MIGRATE", "127.0.0.1"];
    let rport = r.port.to_string();
    args.extend([rport.as_str(), "", "0", "5000", "KEYS"]);
    args.extend(keys.iter().map(String::as_str));
    assert_eq!(dc.text(&args), "+OK\r\n");
    assert_eq!(dc.text(&["DBSIZE"]), ":0\r\n");
    assert_eq!(rc.text(&["DBSIZE"]), ":200\r\n");
    assert_eq!(
        rc.text(&["ZRANGE", "z7", "0", "-1", "WITHSCORES"]),
        "*4\r\n$1\r\na\r\n$1\r\n1\r\n$2\r\nm7\r\n$1\r\n2\r\n"
    );
    let dport = d.port.to_string();
    args[2] = dport.as_str();
    assert_eq!(rc.text(&args), "+OK\r\n");
    assert_eq!(dc.text(&["DBSIZE"]), ":200\r\n");
    // The connection is cached, as Redis reports it.
    assert_eq!(dc.info_field("stats", "migrate_cached_sockets"), "1");
}
