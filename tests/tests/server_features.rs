//! Server features whose replies depend on time or on other connections,
//! so they are checked by behaviour rather than by a differential script.

use std::time::{Duration, Instant};

use slotkv_tests::{Conn, Node, Server};

fn wait_until(what: &str, f: impl FnMut() -> bool) {
    slotkv_tests::wait_until(Duration::from_secs(10), what, f)
}

fn info_field(c: &mut Conn, section: &str, field: &str) -> String {
    c.info_field(section, field)
}

fn datanode(extra: &[&str]) -> Node {
    let mut args = vec!["--save", "", "--enable-debug-command", "yes"];
    args.extend_from_slice(extra);
    Node::start(Server::Datanode, &args)
}

#[test]
fn idle_time_grows_and_access_resets_it() {
    let n = datanode(&[]);
    let mut c = n.conn();
    c.text(&["SET", "k", "v"]);
    wait_until("idle time to reach 1s", || {
        c.text(&["OBJECT", "IDLETIME", "k"]) != ":0\r\n"
    });
    // OBJECT does not count as an access; GET does.
    assert_ne!(c.text(&["OBJECT", "IDLETIME", "k"]), ":0\r\n");
    c.text(&["GET", "k"]);
    assert_eq!(c.text(&["OBJECT", "IDLETIME", "k"]), ":0\r\n");
}

#[test]
fn active_expiry_removes_untouched_keys() {
    let n = datanode(&[]);
    let mut c = n.conn();
    for i in 0..200 {
        c.text(&["SET", &format!("tmp{i}"), "v", "PX", "50"]);
    }
    c.text(&["SET", "keep", "v"]);
    // Nobody reads the keys again: only the background cycle can free them.
    wait_until("expired keys to be removed", || {
        c.text(&["DBSIZE"]) == ":1\r\n"
    });
    assert_eq!(info_field(&mut c, "stats", "expired_keys"), "200");
}

#[test]
fn info_counts_commands_and_reports_memory() {
    let n = datanode(&[]);
    let mut c = n.conn();
    let before: u64 = info_field(&mut c, "stats", "total_commands_processed")
        .parse()
        .unwrap();
    for _ in 0..10 {
        c.text(&["PING"]);
    }
    let after: u64 = info_field(&mut c, "stats", "total_commands_processed")
        .parse()
        .unwrap();
    assert!(after >= before + 10, "{before} -> {after}");
    let used: u64 = info_field(&mut c, "memory", "used_memory").parse().unwrap();
    c.text(&["DEBUG", "POPULATE", "100000", "key", "100"]);
    let used2: u64 = info_field(&mut c, "memory", "used_memory").parse().unwrap();
    assert!(
        used2 > used + 10_000_000,
        "used_memory {used} -> {used2} after 10 MB of values"
    );
    let rss: u64 = info_field(&mut c, "memory", "used_memory_rss")
        .parse()
        .unwrap();
    assert!(rss > used2 / 2, "rss {rss}");
    assert!(c
        .text(&["INFO"])
        .contains("# Cluster\r\ncluster_enabled:0\r\n"));
    assert!(info_field(&mut c, "keyspace", "db0").starts_with("keys=100000,"));
}

#[test]
fn monitor_sees_other_clients_commands() {
    let n = datanode(&[]);
    let mut m = n.conn();
    assert_eq!(m.text(&["MONITOR"]), "+OK\r\n");
    let mut c = n.conn();
    c.text(&["SET", "watched", "value with \"quotes\""]);
    let line = m.read_reply().expect("monitor line");
    let s = String::from_utf8_lossy(&line.raw).to_string();
    assert!(
        s.contains(r#""SET" "watched" "value with \"quotes\"""#),
        "{s}"
    );
}

#[test]
fn slowlog_records_slow_commands() {
    let n = datanode(&["--slowlog-log-slower-than", "0"]);
    let mut c = n.conn();
    c.text(&["SLOWLOG", "RESET"]);
    c.text(&["SET", "a", "b"]);
    let log = c.cmd(&["SLOWLOG", "GET", "1"]).expect("reply");
    let s = String::from_utf8_lossy(&log.raw).to_string();
    assert!(s.contains("$3\r\nSET\r\n$1\r\na\r\n$1\r\nb\r\n"), "{s}");
    c.text(&["CONFIG", "SET", "slowlog-log-slower-than", "-1"]);
    c.text(&["SLOWLOG", "RESET"]);
    c.text(&["SET", "a", "b"]);
    assert_eq!(c.text(&["SLOWLOG", "LEN"]), ":0\r\n");
}

#[test]
fn client_kill_closes_the_target_only() {
    let n = datanode(&[]);
    let mut victim = n.conn();
    let id = victim.text(&["CLIENT", "ID"]);
    let id = id.trim_start_matches(':').trim().to_string();
    let mut admin = n.conn();
    assert_eq!(admin.text(&["CLIENT", "KILL", "ID", &id]), ":1\r\n");
    assert!(victim.is_closed());
    assert_eq!(admin.text(&["PING"]), "+PONG\r\n");
    let list = admin.text(&["CLIENT", "LIST"]);
    assert!(!list.contains(&format!("id={id} ")), "{list}");
}

#[test]
fn requirepass_gates_commands() {
    let n = datanode(&["--requirepass", "s3cret"]);
    let mut c = n.conn();
    assert_eq!(
        c.text(&["GET", "x"]),
        "-NOAUTH Authentication required.\r\n"
    );
    assert!(c.text(&["AUTH", "wrong"]).starts_with("-WRONGPASS"));
    assert_eq!(c.text(&["AUTH", "s3cret"]), "+OK\r\n");
    assert_eq!(c.text(&["GET", "x"]), "$-1\r\n");
    let mut h = n.conn();
    let r = h.text(&["HELLO", "3", "AUTH", "default", "s3cret"]);
    assert!(r.starts_with("%7\r\n"), "{r}");
}

#[test]
fn config_rewrite_keeps_comments_and_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    let conf = dir.path().join("node.conf");
    std::fs::write(
        &conf,
        "# my settings\nmaxmemory 1mb\n\n# keep me\nappendonly no\n",
    )
    .expect("write");
    let n = Node::start_with_config(Server::Datanode, Some(&conf), &[]);
    let mut c = n.conn();
    assert_eq!(
        c.text(&["CONFIG", "SET", "maxmemory", "2mb", "slowlog-max-len", "77"]),
        "+OK\r\n"
    );
    assert_eq!(c.text(&["CONFIG", "REWRITE"]), "+OK\r\n");
    let text = std::fs::read_to_string(&conf).expect("read");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "# my settings");
    // In Redis's units, as redis-server writes it.
    assert_eq!(lines[1], "maxmemory 2mb");
    assert_eq!(lines[3], "# keep me");
    assert_eq!(lines[4], "appendonly no");
    assert!(text.contains("slowlog-max-len 77"), "{text}");
}

/// `include` reads other config files in place, a pattern's matches in
/// name order (a hidden file is not matched; no match is fine), and
/// CONFIG REWRITE keeps the include lines, on both servers. datanode
/// refused the directive and did not start.
#[test]
fn config_files_include_others_as_redis_reads_them() {
    for kind in [Server::Redis, Server::Datanode] {
        let dir = tempfile::tempdir().expect("tempdir");
        let confd = dir.path().join("conf.d");
        std::fs::create_dir_all(&confd).expect("conf.d");
        std::fs::write(confd.join("b.conf"), "maxmemory 2mb\nhz 12\n").expect("b");
        std::fs::write(confd.join("a.conf"), "maxmemory 1mb\nhz 11\n").expect("a");
        std::fs::write(confd.join(".hidden.conf"), "hz 99\n").expect("hidden");
        std::fs::write(dir.path().join("x.conf"), "slowlog-max-len 77\n").expect("x");
        let conf = dir.path().join("node.conf");
        let include = |p: std::path::PathBuf| format!("include \"{}\"\n", p.display());
        let text = format!(
            "maxmemory 5mb\n{}{}{}hz 13\n",
            include(confd.join("*.conf")),
            include(dir.path().join("none-*.conf")),
            include(dir.path().join("x.conf")),
        );
        std::fs::write(&conf, &text).expect("node.conf");
        let n = Node::start_with_config(kind, Some(&conf), &[]);
        let mut c = n.conn();
        let get = |c: &mut slotkv_tests::Conn, name: &str| c.text(&["CONFIG", "GET", name]);
        assert!(
            get(&mut c, "maxmemory").ends_with("$7\r\n2097152\r\n"),
            "{kind:?}"
        );
        assert!(get(&mut c, "hz").ends_with("$2\r\n13\r\n"), "{kind:?}");
        assert!(
            get(&mut c, "slowlog-max-len").ends_with("$2\r\n77\r\n"),
            "{kind:?}"
        );
        assert_eq!(c.text(&["CONFIG", "REWRITE"]), "+OK\r\n", "{kind:?}");
        let rewritten = std::fs::read_to_string(&conf).expect("read");
        for l in text.lines().filter(|l| l.starts_with("include")) {
            assert!(rewritten.contains(l), "{kind:?}: {l} in {rewritten}");
        }
    }
}

#[test]
fn idle_clients_are_closed_after_timeout() {
    let n = datanode(&["--timeout", "1"]);
    let mut idle = n.conn();
    assert_eq!(idle.text(&["PING"]), "+PONG\r\n");
    // The server closes it after a second of silence.
    assert!(idle.is_closed(), "idle client was not closed");
    assert_eq!(n.conn().text(&["PING"]), "+PONG\r\n");
}

#[test]
fn info_commandstats_and_errorstats_count_calls() {
    let n = datanode(&[]);
    let mut c = n.conn();
    c.text(&["SET", "a", "b"]);
    c.text(&["SET", "a", "b"]);
    c.text(&["GET", "a", "extra"]);
    c.text(&["HSET", "a", "f", "v"]);
    let stats = c.text(&["INFO", "commandstats"]);
    assert!(stats.contains("cmdstat_set:calls=2,"), "{stats}");
    assert!(
        stats.contains(
            "cmdstat_get:calls=0,usec=0,usec_per_call=0.00,rejected_calls=1,failed_calls=0"
        ),
        "{stats}"
    );
    assert!(
        stats.contains("cmdstat_hset:calls=1,") && stats.contains("failed_calls=1"),
        "{stats}"
    );
    let errs = c.text(&["INFO", "errorstats"]);
    assert!(errs.contains("errorstat_ERR:count=1\r\n"), "{errs}");
    assert!(errs.contains("errorstat_WRONGTYPE:count=1\r\n"), "{errs}");
    c.text(&["CONFIG", "RESETSTAT"]);
    assert!(!c.text(&["INFO", "commandstats"]).contains("cmdstat_set"));
}

/// Runs a full SCAN-style iteration; returns every element and the calls.
fn full_scan(
    c: &mut Conn,
    cmd: &[&str],
    mut on_call: impl FnMut(&mut Conn, usize),
) -> (Vec<String>, usize) {
    use slotkv_tests::Reply;
    let mut cursor = "0".to_string();
    let mut all = Vec::new();
    let mut calls = 0;
    loop {
        let mut args: Vec<String> = cmd.iter().map(|s| s.to_string()).collect();
        let at = args
            .iter()
            .position(|a| a == "CURSOR")
            .expect("CURSOR placeholder");
        args[at] = cursor.clone();
        let r = c.cmd(&args).expect("reply");
        let Reply::Agg(_, parts) = r.tree else {
            panic!("bad reply")
        };
        let (Reply::Scalar(_, cur), Reply::Agg(_, items)) = (&parts[0], &parts[1]) else {
            panic!("bad reply")
        };
        for i in items {
            if let Reply::Scalar(_, b) = i {
                all.push(String::from_utf8_lossy(b).to_string());
            }
        }
        calls += 1;
        on_call(c, calls);
        cursor = String::from_utf8_lossy(cur).to_string();
        if cursor == "0" {
            return (all, calls);
        }
        assert!(calls < 10_000, "scan does not end");
    }
}

#[test]
fn scan_of_one_huge_slot_is_split_and_misses_nothing() {
    let n = datanode(&[]);
    let mut c = n.conn();
    // 5000 keys with one hash tag: one slot.
    let mut batch = Vec::new();
    for i in 0..5000 {
        batch.extend(slotkv_tests::encode(&["SET", &format!("{{t}}:k{i}"), "v"]));
    }
    c.send_raw(&batch).expect("send");
    for _ in 0..5000 {
        c.read_reply().expect("reply");
    }
    // Keys added while scanning make the table grow in between calls.
    let (keys, calls) = full_scan(&mut c, &["SCAN", "CURSOR", "COUNT", "10"], |c, call| {
        for j in 0..200 {
            c.text(&["SET", &format!("{{t}}:new{call}:{j}"), "v"]);
        }
    });
    let seen: std::collections::HashSet<String> = keys.into_iter().collect();
    for i in 0..5000 {
        assert!(seen.contains(&format!("{{t}}:k{i}")), "missed key {i}");
    }
    assert!(calls > 2 && calls <= 130, "{calls} calls");
}

#[test]
fn hscan_of_a_big_hash_is_split_and_misses_nothing() {
    let n = datanode(&[]);
    let mut c = n.conn();
    let mut args = vec!["HSET".to_string(), "h".to_string()];
    for i in 0..3000 {
        args.push(format!("f{i}"));
        args.push("v".to_string());
    }
    c.cmd(&args).expect("hset");
    let (items, calls) = full_scan(&mut c, &["HSCAN", "h", "CURSOR", "COUNT", "10"], |_, _| {});
    let fields: std::collections::HashSet<&String> = items.iter().step_by(2).collect();
    assert_eq!(fields.len(), 3000);
    assert!(calls > 2 && calls <= 65, "{calls} calls");
}

#[test]
fn client_reply_skip_and_off() {
    let n = datanode(&[]);
    let mut c = n.conn();
    // No reply to SKIP itself nor to the next command.
    c.send_raw(&slotkv_tests::encode(&["CLIENT", "REPLY", "SKIP"]))
        .unwrap();
    c.send_raw(&slotkv_tests::encode(&["SET", "a", "1"]))
        .unwrap();
    assert_eq!(c.text(&["GET", "a"]), "$1\r\n1\r\n");
    c.send_raw(&slotkv_tests::encode(&["CLIENT", "REPLY", "OFF"]))
        .unwrap();
    c.send_raw(&slotkv_tests::encode(&["SET", "a", "2"]))
        .unwrap();
    c.send_raw(&slotkv_tests::encode(&["GET", "a"])).unwrap();
    assert_eq!(c.text(&["CLIENT", "REPLY", "ON"]), "+OK\r\n");
    assert_eq!(c.text(&["GET", "a"]), "$1\r\n2\r\n");
}

#[test]
fn maxclients_refuses_extra_connections() {
    let n = datanode(&["--maxclients", "2"]);
    let mut a = n.conn();
    let mut b = n.conn();
    assert_eq!(a.text(&["PING"]), "+PONG\r\n");
    assert_eq!(b.text(&["PING"]), "+PONG\r\n");
    let mut c = n.conn();
    let (reply, closed) = c.drain(Duration::from_secs(2));
    assert_eq!(reply, b"-ERR max number of clients reached\r\n");
    assert!(closed);
    drop(a);
    // A slot frees up once a client leaves.
    wait_until("a free client slot", || {
        Conn::connect(n.port)
            .ok()
            .and_then(|mut c| c.cmd(&["PING"]).ok())
            .is_some_and(|r| r.raw == b"+PONG\r\n")
    });
    assert_eq!(b.text(&["PING"]), "+PONG\r\n");
}

#[test]
fn query_buffer_limit_closes_the_client() {
    let n = datanode(&["--client-query-buffer-limit", "1mb"]);
    let mut c = n.conn();
    // A 3 MB value is allowed by proto-max-bulk-len but not by the limit.
    let mut req = b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$3000000\r\n".to_vec();
    req.extend(vec![b'x'; 1_500_000]);
    let _ = c.send_raw(&req);
    assert!(
        c.is_closed(),
        "client over the query buffer limit stayed open"
    );
    assert_eq!(n.conn().text(&["PING"]), "+PONG\r\n");
}

/// Sends a pipeline to a fresh redis-server and a fresh datanode and
/// returns both byte streams (replies that arrive within the idle gap).
fn both_raw(setup: &[&[&str]], pipeline: &[&[&str]]) -> [Vec<u8>; 2] {
    [Server::Redis, Server::Datanode].map(|kind| {
        let n = Node::start(kind, &["--save", ""]);
        let mut c = n.conn();
        for cmd in setup {
            c.cmd(cmd).expect("setup reply");
        }
        let mut buf = Vec::new();
        for cmd in pipeline {
            buf.extend(slotkv_tests::resp::encode(cmd));
        }
        c.send_raw(&buf).expect("send");
        c.drain(Duration::from_millis(400)).0
    })
}

#[test]
fn resp3_pushes_get_through_client_reply_off() {
    // Subscribe confirmations are pushes in RESP3: Redis sends them even
    // with replies off, and drops the plain PING reply.
    let [redis, ours] = both_raw(
        &[&["HELLO", "3"]],
        &[
            &["CLIENT", "REPLY", "OFF"],
            &["SUBSCRIBE", "ch"],
            &["PING"],
            &["UNSUBSCRIBE", "ch"],
            &["CLIENT", "REPLY", "ON"],
            &["PING", "done"],
        ],
    );
    assert!(!redis.is_empty());
    assert_eq!(
        slotkv_tests::resp::show(&ours),
        slotkv_tests::resp::show(&redis)
    );
}

#[test]
fn monitor_then_reset_serves_commands_again() {
    let [redis, ours] = both_raw(
        &[],
        &[
            &["MONITOR"],
            &["GET", "k"],
            &["RESET"],
            &["PING"],
            &["SET", "k", "v"],
        ],
    );
    assert!(redis.ends_with(b"+PONG\r\n+OK\r\n"));
    assert_eq!(
        slotkv_tests::resp::show(&ours),
        slotkv_tests::resp::show(&redis)
    );
}

#[test]
fn monitor_shows_commands_after_they_run_and_redacts_passwords() {
    let n = datanode(&[]);
    let mut m = n.conn();
    assert_eq!(m.text(&["MONITOR"]), "+OK\r\n");
    let mut c = n.conn();
    c.text(&["MULTI"]);
    c.text(&["SET", "foo", "bar"]);
    c.text(&["EXEC"]);
    c.text(&["NOSUCHCOMMAND", "x"]);
    c.text(&["AUTH", "not-real", "secret"]);
    c.text(&["HELLO", "2", "AUTH", "user", "secret"]);
    c.text(&["CONFIG", "GET", "maxmemory"]);
    c.text(&["PING"]);
    let mut lines = Vec::new();
    wait_until("monitor lines", || {
        let (b, _) = m.drain(Duration::from_millis(100));
        lines.extend(
            String::from_utf8_lossy(&b)
                .split("\r\n")
                .filter(|l| !l.is_empty())
                .map(|l| l.split_once(']').map_or(l, |x| x.1).to_string()),
        );
        lines.last().is_some_and(|l| l.contains("\"PING\""))
    });
    assert_eq!(
        lines,
        [
            " \"MULTI\"",
            " \"SET\" \"foo\" \"bar\"",
            " \"EXEC\"",
            " \"AUTH\" \"(redacted)\" \"(redacted)\"",
            " \"HELLO\" \"2\" \"AUTH\" \"(redacted)\" \"(redacted)\"",
            " \"PING\"",
        ]
    );
}

/// WATCH as redis-server 7.0 keeps it: removing a key that had already
/// expired when watched is no change, nor is an SMOVE that leaves the
/// destination as it was; a key expiring after WATCH is one.
#[test]
fn watch_ignores_removal_of_stale_keys_and_no_op_smove() {
    for kind in [Server::Redis, Server::Datanode] {
        let n = Node::start(kind, &["--save", "", "--enable-debug-command", "yes"]);
        let mut c = n.conn();
        let exec_after = |c: &mut Conn, between: &[&[&str]]| -> String {
            c.text(&["WATCH", "x"]);
            for cmd in between {
                c.text(cmd);
            }
            c.text(&["MULTI"]);
            c.text(&["PING"]);
            c.text(&["EXEC"])
        };
        c.text(&["DEBUG", "SET-ACTIVE-EXPIRE", "0"]);
        let stale = |c: &mut Conn| {
            c.text(&["SET", "x", "foo", "PX", "1"]);
            wait_until("x to expire", || c.text(&["PTTL", "x"]) == ":-2\r\n");
        };
        stale(&mut c);
        assert_eq!(
            exec_after(&mut c, &[&["EXISTS", "x"]]),
            "*1\r\n+PONG\r\n",
            "{kind:?} lazy"
        );
        stale(&mut c);
        assert_eq!(
            exec_after(&mut c, &[&["FLUSHDB"]]),
            "*1\r\n+PONG\r\n",
            "{kind:?} flushdb"
        );
        stale(&mut c);
        assert_eq!(
            exec_after(&mut c, &[&["EXISTS", "x"], &["SET", "x", "new"]]),
            "*-1\r\n",
            "{kind:?} recreated"
        );
        c.text(&["DEBUG", "SET-ACTIVE-EXPIRE", "1"]);
        // Live at WATCH, expired and removed before EXEC: aborts.
        c.text(&["SET", "x", "foo", "PX", "50"]);
        c.text(&["WATCH", "x"]);
        wait_until("x to be removed", || c.text(&["DBSIZE"]) == ":0\r\n");
        c.text(&["MULTI"]);
        c.text(&["PING"]);
        assert_eq!(c.text(&["EXEC"]), "*-1\r\n", "{kind:?} expired after watch");
        // SMOVE of a member the destination already has.
        c.text(&["SADD", "src", "a"]);
        c.text(&["SADD", "x", "a"]);
        assert_eq!(
            exec_after(&mut c, &[&["SMOVE", "src", "x", "a"]]),
            "*1\r\n+PONG\r\n",
            "{kind:?} smove"
        );
    }
}

/// CONFIG SET port to a port in use fails with Redis's error and rolls
/// back every setting of the call; a free port moves the listener.
#[test]
fn config_set_port_in_use_rolls_back_and_a_free_port_moves_the_listener() {
    let n = datanode(&[]);
    let mut c = n.conn();
    let busy_port = slotkv_tests::free_port();
    let _busy = std::net::TcpListener::bind(("127.0.0.1", busy_port)).expect("occupy a port");
    let reply = c.text(&[
        "CONFIG",
        "SET",
        "maxmemory",
        "10000001",
        "port",
        &busy_port.to_string(),
        "client-query-buffer-limit",
        "10m",
    ]);
    assert!(
        reply.starts_with(
            "-ERR CONFIG SET failed (possibly related to argument 'port') - Unable to listen on this port"
        ),
        "{reply}"
    );
    assert_eq!(
        c.text(&["CONFIG", "GET", "maxmemory"]),
        "*2\r\n$9\r\nmaxmemory\r\n$1\r\n0\r\n"
    );
    let port = n.port.to_string();
    assert_eq!(
        c.text(&["CONFIG", "GET", "port"]),
        format!("*2\r\n$4\r\nport\r\n${}\r\n{port}\r\n", port.len())
    );
    assert!(Conn::connect(n.port).is_ok(), "old port still served");
    let new_port = slotkv_tests::free_port();
    assert_eq!(
        c.text(&["CONFIG", "SET", "port", &new_port.to_string()]),
        "+OK\r\n"
    );
    let mut moved = Conn::connect(new_port).expect("new port served");
    assert_eq!(moved.text(&["PING"]), "+PONG\r\n");
    wait_until("old listener to close", || Conn::connect(n.port).is_err());
    // Existing connections stay open.
    assert_eq!(c.text(&["PING"]), "+PONG\r\n");
}

/// CLIENT UNBLOCK ends a BLPOP as a timeout or with Redis's error, shows
/// the client as blocked (`flags=b`) meanwhile, and answers 0 for a client
/// that is not blocked.
#[test]
fn client_unblock_ends_a_blocked_pop() {
    for kind in [Server::Redis, Server::Datanode] {
        let n = Node::start(kind, &["--save", ""]);
        let mut admin = n.conn();
        for (mode, expect) in [
            (None, "*-1\r\n"),
            (Some("TIMEOUT"), "*-1\r\n"),
            (
                Some("ERROR"),
                "-UNBLOCKED client unblocked via CLIENT UNBLOCK\r\n",
            ),
        ] {
            let mut b = n.conn();
            let id = b.text(&["CLIENT", "ID"]);
            let id = id.trim_start_matches(':').trim_end().to_string();
            b.send_raw(&slotkv_tests::encode(&["BLPOP", "nolist", "0"]))
                .expect("send");
            wait_until("the client to block", || {
                admin
                    .text(&["CLIENT", "LIST", "ID", &id])
                    .contains("flags=b")
            });
            let mut cmd = vec!["CLIENT", "UNBLOCK", id.as_str()];
            cmd.extend(mode);
            assert_eq!(admin.text(&cmd), ":1\r\n", "{kind:?} {mode:?}");
            let got = b.read_reply().expect("reply");
            assert_eq!(
                slotkv_tests::resp::show(&got.raw),
                slotkv_tests::resp::show(expect.as_bytes()),
                "{kind:?} {mode:?}"
            );
            assert_eq!(admin.text(&["CLIENT", "UNBLOCK", &id]), ":0\r\n");
        }
    }
}

/// LATENCY: a command over latency-monitor-threshold is recorded as a
/// `command` event; LATENCY HISTOGRAM counts calls per command.
#[test]
fn latency_monitor_records_slow_commands_and_histograms() {
    let n = datanode(&[]);
    let mut c = n.conn();
    c.text(&["CONFIG", "SET", "latency-monitor-threshold", "5"]);
    c.text(&["CONFIG", "RESETSTAT"]);
    c.text(&["SET", "a", "b"]);
    c.text(&["SET", "c", "d"]);
    c.text(&["DEBUG", "SLEEP", "0.02"]);
    let latest = c.text(&["LATENCY", "LATEST"]);
    assert!(
        latest.starts_with("*1\r\n*4\r\n$7\r\ncommand\r\n"),
        "{latest}"
    );
    let h = c.text(&["LATENCY", "HISTOGRAM", "set", "nosuch"]);
    assert!(
        h.starts_with("*2\r\n$3\r\nset\r\n*4\r\n$5\r\ncalls\r\n:2\r\n"),
        "{h}"
    );
    assert_eq!(c.text(&["LATENCY", "RESET"]), ":1\r\n");
    assert_eq!(c.text(&["LATENCY", "LATEST"]), "*0\r\n");
}

/// A field of `CLIENT LIST` for the client with `id`.
fn client_list_field(c: &mut Conn, id: &str, field: &str) -> String {
    let list = c.text(&["CLIENT", "LIST", "ID", id]);
    list.split_whitespace()
        .find_map(|kv| kv.strip_prefix(&format!("{field}=")))
        .unwrap_or_else(|| panic!("no {field} in {list}"))
        .to_string()
}

fn client_id(c: &mut Conn) -> String {
    c.text(&["CLIENT", "ID"])
        .trim_start_matches(':')
        .trim_end()
        .to_string()
}

/// True when a reply arrives within `within`. Only asked while no reply
/// may exist yet, so a reply read here is a failure, not a lost reply.
fn reply_ready(c: &mut Conn, within: Duration) -> bool {
    c.set_timeout(within);
    let ready = c.read_reply().is_ok();
    c.set_timeout(Duration::from_secs(10));
    ready
}

#[test]
fn client_pause_write_holds_writes_while_reads_answer() {
    // Same behaviour from redis-server and from us.
    for kind in [Server::Redis, Server::Datanode] {
        let n = Node::start(kind, &["--save", ""]);
        let mut admin = n.conn();
        let mut writer = n.conn();
        let mut reader = n.conn();
        let wid = client_id(&mut writer);
        assert_eq!(
            admin.text(&["CLIENT", "PAUSE", "60000", "WRITE"]),
            "+OK\r\n"
        );
        writer
            .send_raw(&slotkv_tests::encode(&["SET", "k", "v"]))
            .unwrap();
        wait_until("the write to wait", || {
            info_field(&mut admin, "clients", "blocked_clients") == "1"
        });
        // Reads, admin commands and read-only transactions still answer.
        assert_eq!(reader.text(&["GET", "k"]), "$-1\r\n");
        assert_eq!(reader.text(&["PING"]), "+PONG\r\n");
        assert_eq!(reader.text(&["MULTI"]), "+OK\r\n");
        assert_eq!(reader.text(&["GET", "k"]), "+QUEUED\r\n");
        assert_eq!(reader.text(&["EXEC"]), "*1\r\n$-1\r\n");
        // A command with a wrong arity is rejected at once.
        assert!(reader.text(&["SET", "k"]).starts_with("-ERR wrong number"));
        assert_eq!(client_list_field(&mut admin, &wid, "flags"), "b");
        assert_eq!(client_list_field(&mut admin, &wid, "cmd"), "set");
        assert!(!reply_ready(&mut writer, Duration::from_millis(100)));
        assert_eq!(admin.text(&["CLIENT", "UNPAUSE"]), "+OK\r\n");
        assert_eq!(writer.read_reply().unwrap().raw, b"+OK\r\n");
        assert_eq!(reader.text(&["GET", "k"]), "$1\r\nv\r\n");
        assert_eq!(info_field(&mut admin, "clients", "blocked_clients"), "0");
    }
}

#[test]
fn client_pause_holds_exec_and_publish_and_frees_killed_clients() {
    let n = datanode(&[]);
    let mut admin = n.conn();
    let mut tx = n.conn();
    let mut publisher = n.conn();
    let mut victim = n.conn();
    assert_eq!(tx.text(&["MULTI"]), "+OK\r\n");
    assert_eq!(tx.text(&["SET", "k", "v"]), "+QUEUED\r\n");
    admin.text(&["CLIENT", "PAUSE", "60000", "WRITE"]);
    tx.send_raw(&slotkv_tests::encode(&["EXEC"])).unwrap();
    publisher
        .send_raw(&slotkv_tests::encode(&["PUBLISH", "ch", "m"]))
        .unwrap();
    let vid = client_id(&mut victim);
    victim
        .send_raw(&slotkv_tests::encode(&["DEL", "k"]))
        .unwrap();
    wait_until("three clients to wait", || {
        info_field(&mut admin, "clients", "blocked_clients") == "3"
    });
    // A waiting client can still be killed.
    assert_eq!(admin.text(&["CLIENT", "KILL", "ID", &vid]), ":1\r\n");
    assert!(victim.is_closed());
    wait_until("the killed client to go", || {
        info_field(&mut admin, "clients", "blocked_clients") == "2"
    });
    admin.text(&["CLIENT", "UNPAUSE"]);
    assert_eq!(tx.read_reply().unwrap().raw, b"*1\r\n+OK\r\n");
    assert_eq!(publisher.read_reply().unwrap().raw, b":0\r\n");
    assert_eq!(admin.text(&["GET", "k"]), "$1\r\nv\r\n");
}

#[test]
fn client_pause_ends_by_itself_at_its_timeout() {
    let n = datanode(&[]);
    let mut admin = n.conn();
    let mut writer = n.conn();
    let t0 = Instant::now();
    admin.text(&["CLIENT", "PAUSE", "400", "WRITE"]);
    assert_eq!(writer.text(&["SET", "k", "v"]), "+OK\r\n");
    let waited = t0.elapsed();
    assert!(waited >= Duration::from_millis(350), "waited {waited:?}");
    assert!(waited < Duration::from_secs(5), "waited {waited:?}");
    // Nothing is paused any more.
    let t1 = Instant::now();
    writer.text(&["SET", "k", "w"]);
    assert!(t1.elapsed() < Duration::from_millis(300));
}

#[test]
fn client_pause_all_holds_reads_and_the_pauser_too() {
    for kind in [Server::Redis, Server::Datanode] {
        let n = Node::start(kind, &["--save", ""]);
        let mut admin = n.conn();
        let mut reader = n.conn();
        let t0 = Instant::now();
        // A milder, shorter pause after it changes nothing.
        admin.text(&["CLIENT", "PAUSE", "700", "ALL"]);
        reader
            .send_raw(&slotkv_tests::encode(&["GET", "k"]))
            .unwrap();
        assert!(!reply_ready(&mut reader, Duration::from_millis(200)));
        // The pausing connection waits as well.
        assert_eq!(admin.text(&["PING"]), "+PONG\r\n");
        assert!(t0.elapsed() >= Duration::from_millis(600));
        assert_eq!(reader.read_reply().unwrap().raw, b"$-1\r\n");
    }
}

#[test]
fn expired_keys_stay_in_place_during_client_pause() {
    for kind in [Server::Redis, Server::Datanode] {
        let n = Node::start(kind, &["--save", ""]);
        let mut c = n.conn();
        c.text(&["SET", "k", "v", "PX", "50"]);
        c.text(&["CLIENT", "PAUSE", "60000", "WRITE"]);
        std::thread::sleep(Duration::from_millis(300));
        // Logically gone, yet neither active nor lazy expiry deleted it.
        assert_eq!(c.text(&["GET", "k"]), "$-1\r\n");
        assert_eq!(c.text(&["EXISTS", "k"]), ":0\r\n");
        assert_eq!(c.text(&["DBSIZE"]), ":1\r\n");
        assert_eq!(info_field(&mut c, "stats", "expired_keys"), "0");
        c.text(&["CLIENT", "UNPAUSE"]);
        assert_eq!(c.text(&["GET", "k"]), "$-1\r\n");
        assert_eq!(c.text(&["DBSIZE"]), ":0\r\n");
        assert_eq!(info_field(&mut c, "stats", "expired_keys"), "1");
    }
}

#[test]
fn client_pause_errors_and_transactions_match_redis() {
    let [redis, ours] = both_raw(
        &[],
        &[
            &["CLIENT", "PAUSE", "abc"],
            &["CLIENT", "PAUSE", "-1"],
            &["CLIENT", "PAUSE", "10", "foo"],
            &["CLIENT", "PAUSE", "abc", "foo"],
            &["CLIENT", "PAUSE", "10", "write", "x"],
            &["CLIENT", "PAUSE"],
            &["CLIENT", "UNPAUSE", "x"],
            &["CLIENT", "PAUSE", "99999999999999999999"],
            // PAUSE inside a transaction starts after EXEC.
            &["MULTI"],
            &["SET", "a", "1"],
            &["CLIENT", "PAUSE", "60000", "WRITE"],
            &["SET", "b", "2"],
            &["EXEC"],
            &["MGET", "a", "b"],
            &["SET", "c"],
            &["CLIENT", "UNPAUSE"],
            &["SET", "c", "3"],
        ],
    );
    assert!(redis.ends_with(b"+OK\r\n+OK\r\n"));
    assert_eq!(
        slotkv_tests::resp::show(&ours),
        slotkv_tests::resp::show(&redis)
    );
}

#[test]
fn held_clients_resume_in_the_order_they_were_held() {
    for kind in [Server::Redis, Server::Datanode] {
        let n = Node::start(kind, &["--save", ""]);
        let mut admin = n.conn();
        admin.text(&["CLIENT", "PAUSE", "60000", "WRITE"]);
        let mut held: Vec<Conn> = (0..6).map(|_| n.conn()).collect();
        for (i, c) in held.iter_mut().enumerate() {
            c.send_raw(&slotkv_tests::encode(&["RPUSH", "l", &i.to_string()]))
                .unwrap();
            let want = (i + 1).to_string();
            wait_until("the push to wait", || {
                info_field(&mut admin, "clients", "blocked_clients") == want
            });
        }
        admin.text(&["CLIENT", "UNPAUSE"]);
        for (i, c) in held.iter_mut().enumerate() {
            assert_eq!(
                c.read_reply().unwrap().raw,
                format!(":{}\r\n", i + 1).as_bytes()
            );
        }
        assert_eq!(
            admin.text(&["LRANGE", "l", "0", "-1"]),
            "*6\r\n$1\r\n0\r\n$1\r\n1\r\n$1\r\n2\r\n$1\r\n3\r\n$1\r\n4\r\n$1\r\n5\r\n"
        );
    }
}

/// INFO memory lists the fields redis-server 7.0 lists, in its order.
#[test]
fn info_memory_has_redis_fields() {
    let names = |kind: Server| -> Vec<String> {
        let n = Node::start(kind, &["--save", ""]);
        n.conn()
            .text(&["INFO", "memory"])
            .split("\r\n")
            .filter_map(|l| l.split_once(':').map(|(k, _)| k.to_string()))
            .collect()
    };
    assert_eq!(names(Server::Datanode), names(Server::Redis));
}

/// maxmemory-clients closes the connection whose buffers grew past the
/// limit, but not one marked CLIENT NO-EVICT; INFO counts evicted clients.
#[test]
fn maxmemory_clients_evicts_the_biggest_client_unless_no_evict() {
    let n = datanode(&["--maxmemory-clients", "200kb"]);
    let mut admin = n.conn();
    assert_eq!(admin.text(&["CLIENT", "NO-EVICT", "on"]), "+OK\r\n");
    // Announce a 1 MB value and send half of it: the query buffer holds it.
    let half = |c: &mut Conn| {
        let mut b = b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1000000\r\n".to_vec();
        b.extend(std::iter::repeat_n(b'x', 500_000));
        c.send_raw(&b).expect("send");
    };
    let mut kept = n.conn();
    kept.text(&["CLIENT", "NO-EVICT", "on"]);
    half(&mut kept);
    let mut big = n.conn();
    half(&mut big);
    wait_until("the big client to be evicted", || big.is_closed());
    assert_eq!(info_field(&mut admin, "stats", "evicted_clients"), "1");
    // The NO-EVICT client is still there and can finish its command.
    kept.send_raw(&vec![b'x'; 500_000]).expect("send rest");
    kept.send_raw(b"\r\n").expect("send end");
    assert_eq!(kept.read_reply().expect("reply").raw, b"+OK\r\n");
    assert!(admin.text(&["CLIENT", "LIST"]).contains("flags=e"));
}

/// `rbs=` of the connection named `name` in CLIENT LIST.
fn reply_buffer_size(admin: &mut Conn, name: &str) -> u64 {
    let list = admin.text(&["CLIENT", "LIST"]);
    list.lines()
        .find(|l| l.contains(&format!(" name={name} ")))
        .and_then(|l| l.split(' ').find_map(|f| f.strip_prefix("rbs=")))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no rbs for {name} in {list}"))
}

#[test]
fn reply_buffer_shrinks_when_idle_and_grows_when_filled() {
    // The same scenario on both servers: a new connection's 16 KB buffer
    // shrinks to the 1 KB minimum once its peak is forgotten, then grows
    // back by doubling while 32 KB replies keep filling it.
    for kind in [Server::Redis, Server::Datanode] {
        let node = Node::start(kind, &["--save", "", "--enable-debug-command", "yes"]);
        let mut admin = node.conn();
        let mut c = node.conn();
        assert_eq!(c.text(&["CLIENT", "SETNAME", "rb"]), "+OK\r\n");
        let ok = "+OK\r\n";
        assert_eq!(
            admin.text(&["DEBUG", "REPLYBUFFER", "PEAK-RESET-TIME", "100"]),
            ok
        );
        wait_until("the idle buffer shrinks", || {
            (1024..2048).contains(&reply_buffer_size(&mut admin, "rb"))
        });
        assert_eq!(admin.text(&["SET", "big", &"x".repeat(32768)]), ok);
        assert_eq!(
            admin.text(&["DEBUG", "REPLYBUFFER", "PEAK-RESET-TIME", "never"]),
            ok
        );
        wait_until("the busy buffer grows", || {
            c.cmd(&["GET", "big"]).expect("get");
            (16384..32768).contains(&reply_buffer_size(&mut admin, "rb"))
        });
        let expands: u64 = info_field(&mut admin, "stats", "reply_buffer_expands")
            .parse()
            .expect("expands");
        assert!(expands >= 4, "{kind:?}: {expands} expands");
        assert_eq!(
            admin.text(&["DEBUG", "REPLYBUFFER", "PEAK-RESET-TIME", "reset"]),
            ok
        );
    }
}

/// Connections in CLIENT LIST named `name`.
fn clients_named(admin: &mut Conn, name: &str) -> usize {
    admin
        .text(&["CLIENT", "LIST"])
        .lines()
        .filter(|l| l.contains(&format!(" name={name} ")))
        .count()
}

/// Publishes 1 KB messages on `ch` in pipelined batches until no client
/// named `name` is left or `max_mb` were sent; returns the megabytes sent.
fn publish_until_closed(admin: &mut Conn, ch: &str, name: &str, max_mb: usize) -> usize {
    let payload = "p".repeat(1024);
    let batch: Vec<u8> = (0..1024)
        .flat_map(|_| slotkv_tests::encode(&["PUBLISH", ch, &payload]))
        .collect();
    for mb in 1..=max_mb {
        admin.send_raw(&batch).expect("publish");
        for _ in 0..1024 {
            admin.read_reply().expect("publish reply");
        }
        if clients_named(admin, name) == 0 {
            return mb;
        }
    }
    max_mb
}

#[test]
fn slow_subscribers_are_closed_at_their_output_limit() {
    for kind in [Server::Redis, Server::Datanode] {
        let node = Node::start(kind, &["--save", ""]);
        let mut admin = node.conn();
        // Hard limit: a subscriber that never reads is closed once what
        // waits for it (past the kernel's socket buffers) passes 100 KB.
        let ok = "+OK\r\n";
        let set =
            |a: &mut Conn, v: &str| a.text(&["CONFIG", "SET", "client-output-buffer-limit", v]);
        assert_eq!(set(&mut admin, "pubsub 100000 0 0"), ok);
        let got = admin.text(&["CONFIG", "GET", "client-output-buffer-limit"]);
        assert!(got.contains("pubsub 100000 0 0"), "{kind:?}: {got}");
        assert!(
            got.contains("slave 268435456 67108864 60"),
            "{kind:?}: {got}"
        );
        let mut sub = node.conn();
        assert_eq!(sub.text(&["CLIENT", "SETNAME", "slow"]), ok);
        sub.cmd(&["SUBSCRIBE", "ch"]).expect("subscribe");
        let mb = publish_until_closed(&mut admin, "ch", "slow", 64);
        assert!(mb < 64, "{kind:?}: the slow subscriber was never closed");
        // Soft limit: over 100 KB for more than a second.
        assert_eq!(set(&mut admin, "pubsub 0 100000 1"), ok);
        let mut sub = node.conn();
        assert_eq!(sub.text(&["CLIENT", "SETNAME", "slow2"]), ok);
        sub.cmd(&["SUBSCRIBE", "ch"]).expect("subscribe");
        let t0 = Instant::now();
        publish_until_closed(&mut admin, "ch", "slow2", 24);
        wait_until("the soft limit closes the subscriber", || {
            clients_named(&mut admin, "slow2") == 0
        });
        assert!(
            t0.elapsed() >= Duration::from_secs(1),
            "{kind:?}: closed too early"
        );
        // Bad values are refused with Redis's reason.
        let bad = set(&mut admin, "master 1 2 3");
        assert!(bad.contains("Invalid client class"), "{kind:?}: {bad}");
    }
}

#[test]
fn the_start_up_banner_carries_port_and_pid() {
    let n = datanode(&["--always-show-logo", "yes"]);
    let log = n.log();
    assert!(log.contains(&format!("Port: {}", n.port)), "{log}");
    assert!(log.contains(&format!("PID: {}", n.pid())), "{log}");
    let quiet = datanode(&[]);
    let log = quiet.log();
    assert!(
        log.contains(&format!("Running mode=standalone, port={}.", quiet.port)),
        "{log}"
    );
}

/// The expire cycle that deletes a large key is a latency event. (Redis's
/// own test waits for 20 ms, which freeing its one-allocation-per-element
/// set takes there; datanode frees the same set in a few milliseconds, so
/// here the threshold is 1 ms.)
#[test]
fn an_expire_cycle_that_frees_a_big_key_is_a_latency_event() {
    let n = datanode(&[]);
    let mut c = n.conn();
    for batch in 0..100 {
        let mut args = vec!["SADD".to_string(), "big".to_string()];
        args.extend((0..10_000).map(|i| (batch * 10_000 + i).to_string()));
        assert_eq!(c.text(&args), ":10000\r\n");
    }
    assert_eq!(
        c.text(&["CONFIG", "SET", "latency-monitor-threshold", "1"]),
        "+OK\r\n"
    );
    assert_eq!(c.text(&["PEXPIRE", "big", "20"]), ":1\r\n");
    wait_until("the key to expire", || c.text(&["DBSIZE"]) == ":0\r\n");
    let latest = c.text(&["LATENCY", "LATEST"]);
    assert!(latest.contains("expire-cycle"), "{latest}");
}

/// What INFO latencystats, errorstats and commandstats show after a run of
/// commands (an error inside EXEC, a blocked BLPOP unblocked with an
/// error), on one server: latency lines by command with their percentile
/// labels, errorstats whole, and each command's counts but not its times.
fn stats_after_a_workload(kind: Server) -> (Vec<(String, String)>, String, Vec<String>, String) {
    let n = Node::start(kind, &["--save", ""]);
    let mut c = n.conn();
    let mut blocked = n.conn();
    c.text(&["CONFIG", "RESETSTAT"]);
    c.text(&["SET", "a", "b"]);
    c.text(&["CLIENT", "ID"]);
    c.text(&["MULTI"]);
    c.text(&["SET", "x", "y"]);
    c.text(&["AUTH", "nopass"]);
    c.text(&["EXEC"]);
    let id = blocked.text(&["CLIENT", "ID"]);
    let id = id.trim_start_matches(':').trim().to_string();
    blocked
        .send_raw(&slotkv_tests::resp::encode(&["BLPOP", "nolist", "0"]))
        .expect("send");
    wait_until("BLPOP blocks", || {
        c.text(&["CLIENT", "LIST"]).contains("cmd=blpop")
    });
    c.text(&["CLIENT", "UNBLOCK", &id, "ERROR"]);
    let unblocked = String::from_utf8_lossy(&blocked.read_reply().expect("reply").raw).into_owned();
    assert!(unblocked.starts_with("-UNBLOCKED"), "{unblocked}");
    c.text(&[
        "CONFIG",
        "SET",
        "latency-tracking-info-percentiles",
        "0 50.0 99.9",
    ]);
    let bad = c.text(&[
        "CONFIG",
        "SET",
        "latency-tracking-info-percentiles",
        "50 101",
    ]);
    let latency = c.text(&["INFO", "latencystats"]);
    let mut lines: Vec<(String, String)> = latency
        .split("\r\n")
        .filter_map(|l| l.strip_prefix("latency_percentiles_usec_"))
        .filter_map(|l| l.split_once(':'))
        // Each value is microseconds with three decimals; the labels are
        // what must match.
        .map(|(name, values)| {
            let labels: Vec<&str> = values
                .split(',')
                .map(|kv| {
                    let (k, v) = kv.split_once('=').expect("label=value");
                    let (whole, frac) = v.split_once('.').expect("decimals");
                    assert!(whole.parse::<u64>().is_ok() && frac.len() == 3, "{kv}");
                    k
                })
                .collect();
            (name.to_string(), labels.join(","))
        })
        .collect();
    lines.sort();
    let errors = c.text(&["INFO", "errorstats"]);
    let mut counts: Vec<String> = c
        .text(&["INFO", "commandstats"])
        .split("\r\n")
        .filter(|l| l.starts_with("cmdstat_") && !l.starts_with("cmdstat_info:"))
        .map(|l| {
            let (name, rest) = l.split_once(':').expect("cmdstat line");
            let keep: Vec<&str> = rest.split(',').filter(|f| !f.starts_with("usec")).collect();
            format!("{name}:{}", keep.join(","))
        })
        .collect();
    counts.sort();
    (lines, errors, counts, bad)
}

#[test]
fn latency_error_and_command_stats_read_as_redis_servers() {
    let redis = stats_after_a_workload(Server::Redis);
    let ours = stats_after_a_workload(Server::Datanode);
    assert!(
        redis
            .0
            .iter()
            .any(|(n, l)| n == "blpop" && l == "p0,p50,p99.9"),
        "{:?}",
        redis.0
    );
    assert_eq!(redis.0, ours.0, "INFO latencystats: commands and labels");
    assert_eq!(redis.1, ours.1, "INFO errorstats");
    assert_eq!(redis.2, ours.2, "INFO commandstats counts");
    assert_eq!(redis.3, ours.3, "a bad percentile list");
}

/// Past the hard output buffer limit a client is closed with no reply at
/// all, on both servers; what its commands did stays done (a transaction
/// runs whole), and a reply whose size the client picks (HRANDFIELD with a
/// huge negative count) is cut short rather than filling the server.
#[test]
fn replies_past_the_hard_output_limit_close_the_client() {
    for kind in [Server::Redis, Server::Datanode] {
        let n = Node::start(kind, &["--save", ""]);
        let mut c = n.conn();
        c.text(&[
            "CONFIG",
            "SET",
            "client-output-buffer-limit",
            "normal 100000 0 0",
        ]);
        let item = "x".repeat(1000);
        for _ in 0..150 {
            c.text(&["RPUSH", "big", &item]);
        }
        let mut tx = n.conn();
        tx.text(&["SET", "k1", "v1"]);
        tx.text(&["MULTI"]);
        tx.text(&["SET", "k2", "v2"]);
        tx.text(&["LRANGE", "big", "0", "-1"]);
        tx.text(&["DEL", "k1"]);
        tx.send_raw(&slotkv_tests::resp::encode(&["EXEC"]))
            .expect("send");
        let (got, closed) = tx.drain(Duration::from_secs(5));
        assert!(closed && got.is_empty(), "{kind:?}: {} bytes", got.len());
        assert_eq!(c.text(&["GET", "k2"]), "$2\r\nv2\r\n", "{kind:?}");
        assert_eq!(c.text(&["EXISTS", "k1"]), ":0\r\n", "{kind:?}");
        c.text(&["HSET", "h", "a", "b"]);
        let mut huge = n.conn();
        huge.send_raw(&slotkv_tests::resp::encode(&[
            "HRANDFIELD",
            "h",
            "-999999999",
        ]))
        .expect("send");
        let (got, closed) = huge.drain(Duration::from_secs(20));
        assert!(closed && got.is_empty(), "{kind:?}: {} bytes", got.len());
        assert_eq!(c.text(&["PING"]), "+PONG\r\n", "{kind:?}");
        let memory: u64 = c
            .info_field("memory", "used_memory")
            .parse()
            .expect("number");
        assert!(memory < 100 << 20, "{kind:?}: used_memory {memory}");
    }
}

/// `oom-score-adj` moves the process's OOM score with the role, relative
/// to where it was or absolute, and puts it back when turned off: the
/// scores and replies are redis-server's.
#[test]
fn oom_score_adj_moves_the_process_score_as_redis_does() {
    let run = |kind: Server| -> Vec<String> {
        let n = Node::start(kind, &["--save", ""]);
        let mut c = n.conn();
        let path = format!("/proc/{}/oom_score_adj", n.pid());
        let read = || -> i32 {
            std::fs::read_to_string(&path)
                .expect("oom_score_adj")
                .trim()
                .parse()
                .expect("a number")
        };
        let base = read();
        let mut seen = Vec::new();
        let mut step = |c: &mut Conn, cmd: &[&str]| {
            let reply = c.text(cmd);
            seen.push(format!("{cmd:?} -> {reply:?} -> {}", read() - base));
        };
        step(
            &mut c,
            &["CONFIG", "SET", "oom-score-adj-values", "10 20 30"],
        );
        step(&mut c, &["CONFIG", "SET", "oom-score-adj", "relative"]);
        step(&mut c, &["CONFIG", "GET", "oom-score-adj"]);
        step(&mut c, &["REPLICAOF", "127.0.0.1", "1"]);
        step(&mut c, &["REPLICAOF", "NO", "ONE"]);
        step(
            &mut c,
            &["CONFIG", "SET", "oom-score-adj-values", "15 25 35"],
        );
        step(
            &mut c,
            &["CONFIG", "SET", "oom-score-adj-values", "-2001 0 0"],
        );
        step(&mut c, &["CONFIG", "SET", "oom-score-adj-values", "1 2"]);
        step(&mut c, &["CONFIG", "GET", "oom-score-adj-values"]);
        step(&mut c, &["CONFIG", "SET", "oom-score-adj", "no"]);
        seen
    };
    let redis = run(Server::Redis);
    assert!(redis.iter().any(|l| l.ends_with("-> 20")), "{redis:#?}");
    assert_eq!(redis, run(Server::Datanode));
}

/// A request that takes a client past `maxmemory-clients` gets it evicted
/// before the request runs, on both servers (before, datanode's check ran
/// ten times a second and missed a request that came and ran in between).
#[test]
fn a_request_past_maxmemory_clients_evicts_its_client_before_it_runs() {
    for kind in [Server::Redis, Server::Datanode] {
        let n = Node::start(kind, &["--save", ""]);
        let mut c = n.conn();
        c.text(&["CONFIG", "SET", "maxmemory-clients", "3000000"]);
        let mut big = n.conn();
        big.text(&["SET", "k", "small"]);
        let value = "v".repeat(3_000_000);
        // The server may close the connection before all of it is sent.
        let _ = big.send_raw(&slotkv_tests::resp::encode(&["SET", "k", &value]));
        let (got, closed) = big.drain(Duration::from_secs(10));
        assert!(closed && got.is_empty(), "{kind:?}: {} bytes", got.len());
        assert_eq!(c.text(&["GET", "k"]), "$5\r\nsmall\r\n", "{kind:?}");
        assert_eq!(c.info_field("stats", "evicted_clients"), "1", "{kind:?}");
    }
}

/// As Redis, a connection keeps reading and running commands while its
/// replies wait for the socket: a client that sends a whole pipeline
/// before reading any reply gets every reply. Before, datanode stopped
/// reading while a write was blocked, and with requests and replies both
/// larger than the sockets' buffers, client and server waited on each
/// other for ever.
#[test]
fn a_pipeline_sent_whole_before_reading_gets_every_reply() {
    for kind in [Server::Redis, Server::Datanode] {
        let n = Node::start(kind, &["--save", ""]);
        let mut c = n.conn();
        let payload = "p".repeat(100_000);
        let one = slotkv_tests::resp::encode(&["ECHO", &payload]);
        let count = 300;
        let mut all = Vec::with_capacity(one.len() * count);
        for _ in 0..count {
            all.extend_from_slice(&one);
        }
        c.set_write_timeout(Duration::from_secs(20));
        c.send_raw(&all)
            .unwrap_or_else(|e| panic!("{kind:?}: the server stopped reading: {e}"));
        for i in 0..count {
            let r = c
                .read_reply()
                .unwrap_or_else(|e| panic!("{kind:?}: reply {i}: {e}"));
            assert_eq!(r.raw.len(), payload.len() + 11, "{kind:?}: reply {i}");
        }
        assert_eq!(c.text(&["PING"]), "+PONG\r\n", "{kind:?}");
    }
}

/// maxmemory-clients counts a MULTI queue and watched keys as Redis does
/// (before, only buffers were counted, so a growing queue was never
/// evicted), and CLIENT LIST's qbuf for a big argument being read shows
/// its bytes only.
#[test]
fn maxmemory_clients_counts_queued_commands_and_watched_keys() {
    for kind in [Server::Redis, Server::Datanode] {
        let n = Node::start(kind, &["--save", ""]);
        let mut c = n.conn();
        c.text(&["CLIENT", "NO-EVICT", "on"]);
        c.text(&["CONFIG", "SET", "maxmemory-clients", "1000000"]);
        // A queue of 200 KB commands: evicted before the tenth.
        let mut m = n.conn();
        m.text(&["CLIENT", "SETNAME", "queue"]);
        assert_eq!(m.text(&["MULTI"]), "+OK\r\n");
        let value = "v".repeat(200_000);
        let mut queued = 0;
        for _ in 0..10 {
            match m.cmd(&["SET", "k", &value]) {
                Ok(r) if r.raw == b"+QUEUED\r\n" => queued += 1,
                _ => break,
            }
        }
        assert!((3..10).contains(&queued), "{kind:?}: {queued} queued");
        assert!(m.is_closed(), "{kind:?}: the queue's client stayed");
        assert_eq!(c.info_field("stats", "evicted_clients"), "1", "{kind:?}");
        // Watched keys: about 56 bytes each.
        c.text(&["CONFIG", "SET", "maxmemory-clients", "200000"]);
        let mut w = n.conn();
        let mut watched = 0;
        for i in 0..20_000 {
            match w.cmd(&["WATCH", &format!("key:{i}")]) {
                Ok(r) if r.raw == b"+OK\r\n" => watched += 1,
                _ => break,
            }
        }
        assert!(
            (1_000..20_000).contains(&watched),
            "{kind:?}: {watched} watched"
        );
        assert_eq!(c.info_field("stats", "evicted_clients"), "2", "{kind:?}");
        // A big argument half sent: qbuf is the part of it that arrived.
        c.text(&["CONFIG", "SET", "maxmemory-clients", "0"]);
        let mut b = n.conn();
        b.text(&["CLIENT", "SETNAME", "big"]);
        b.send_raw(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$100000\r\n")
            .unwrap();
        b.send_raw(&[b'x'; 1000]).unwrap();
        slotkv_tests::cluster::wait_until(Duration::from_secs(10), "qbuf=1000", || {
            c.text(&["CLIENT", "LIST"])
                .lines()
                .any(|l| l.contains("name=big ") && l.contains(" qbuf=1000 "))
        });
    }
}

/// CONFIG SET bind moves the listeners at once, on the same port (the
/// old ones close first, as in Redis); an address that cannot be bound
/// fails with Redis's error and leaves the old listeners in place. Before,
/// datanode accepted the new value and went on listening where it did.
#[test]
fn config_set_bind_moves_the_listeners_as_redis_does() {
    use std::net::TcpStream;
    let reachable = |ip: &str, port: u16| TcpStream::connect((ip, port)).is_ok();
    for kind in [Server::Redis, Server::Datanode] {
        let n = Node::start(kind, &["--save", "", "--bind", "127.0.0.1"]);
        let mut c = n.conn();
        assert_eq!(
            c.text(&["CONFIG", "SET", "bind", "999.999.999.999"]),
            "-ERR CONFIG SET failed (possibly related to argument 'bind') - Failed to bind to specified addresses.\r\n",
            "{kind:?}"
        );
        assert_eq!(
            c.text(&["CONFIG", "GET", "bind"]),
            "*2\r\n$4\r\nbind\r\n$9\r\n127.0.0.1\r\n",
            "{kind:?}"
        );
        assert!(
            reachable("127.0.0.1", n.port),
            "{kind:?}: the old listener is gone"
        );
        assert_eq!(
            c.text(&["CONFIG", "SET", "bind", "127.0.0.2"]),
            "+OK\r\n",
            "{kind:?}"
        );
        assert!(
            reachable("127.0.0.2", n.port),
            "{kind:?}: not listening on the new address"
        );
        assert!(
            !reachable("127.0.0.1", n.port),
            "{kind:?}: still listening on the old address"
        );
        // Same port, the old address again: the listener is closed first.
        let mut c2 = Conn::connect_to("127.0.0.2", n.port).expect("connect");
        assert_eq!(
            c2.text(&["CONFIG", "SET", "bind", "127.0.0.1 127.0.0.2"]),
            "+OK\r\n",
            "{kind:?}"
        );
        assert!(
            reachable("127.0.0.1", n.port) && reachable("127.0.0.2", n.port),
            "{kind:?}"
        );
        // The connections made before stay.
        assert_eq!(c.text(&["PING"]), "+PONG\r\n", "{kind:?}");
    }
}

/// `bind-source-addr`: the replica connects to its master from that
/// address (the master sees it), as Redis does; datanode ignored it.
#[test]
fn a_replica_connects_from_bind_source_addr() {
    for (master_kind, replica_kind) in [
        (Server::Redis, Server::Datanode),
        (Server::Datanode, Server::Datanode),
    ] {
        let master = Node::start(master_kind, &["--save", ""]);
        let replica = Node::start(replica_kind, &["--save", ""]);
        let mut m = master.conn();
        let mut r = replica.conn();
        assert_eq!(
            r.text(&["CONFIG", "SET", "bind-source-addr", "127.0.0.2"]),
            "+OK\r\n"
        );
        let port = master.port.to_string();
        assert_eq!(r.text(&["REPLICAOF", "127.0.0.1", &port]), "+OK\r\n");
        // 127.0.0.2 is not "local" to protected mode: only 127.0.0.1 and
        // ::1 are (datanode let all of 127/8 in, and did not count the
        // refusal). Redis's own test of bind-source-addr turns it off.
        slotkv_tests::cluster::wait_until(Duration::from_secs(20), "a refusal", || {
            m.info_field("stats", "rejected_connections") != "0"
        });
        assert_eq!(
            m.text(&["CONFIG", "SET", "protected-mode", "no"]),
            "+OK\r\n"
        );
        slotkv_tests::cluster::wait_until(Duration::from_secs(20), "the link", || {
            r.info_field("replication", "master_link_status") == "up"
        });
        let slave0 = m.info_field("replication", "slave0");
        assert!(
            slave0.starts_with("ip=127.0.0.2,"),
            "{master_kind:?} master sees {slave0}"
        );
    }
}

/// `unixsocket` and `unixsocketperm`: clients on the socket are served as
/// redis-server serves them (the socket's mode, the address and `U` flag
/// CLIENT INFO shows, MONITOR's `unix:` line, the settings immutable at
/// run time), and SHUTDOWN removes the socket file. datanode listened on
/// TCP only and ignored both settings.
#[test]
fn a_unix_socket_serves_clients_as_redis_servers_do() {
    use std::os::unix::fs::PermissionsExt;
    let run = |kind: Server| -> Vec<String> {
        let sockdir = tempfile::tempdir().expect("tempdir");
        let path = sockdir.path().join("s.sock");
        let shown = path.display().to_string();
        let mut n = Node::start(
            kind,
            &[
                "--save",
                "",
                "--unixsocket",
                &shown,
                "--unixsocketperm",
                "700",
            ],
        );
        let clean = |t: String| t.replace(&shown, "<path>");
        let mut seen = Vec::new();
        let mode = std::fs::metadata(&path)
            .expect("the socket file")
            .permissions()
            .mode();
        seen.push(format!("mode {:o}", mode & 0o777));
        let mut u = Conn::connect_unix(&path).expect("connect on the unix socket");
        seen.push(u.text(&["PING"]));
        seen.push(u.text(&["CONFIG", "GET", "unixsocketperm"]));
        seen.push(u.text(&["CONFIG", "SET", "unixsocketperm", "777"]));
        seen.push(u.text(&["CONFIG", "SET", "unixsocket", "/tmp/elsewhere"]));
        let info = u.text(&["CLIENT", "INFO"]);
        for field in ["addr", "laddr", "flags", "cmd"] {
            let v = info
                .split_whitespace()
                .find_map(|f| f.strip_prefix(&format!("{field}=")))
                .unwrap_or("missing");
            seen.push(clean(format!("{field}={v}")));
        }
        let mut m = n.conn();
        assert_eq!(m.text(&["MONITOR"]), "+OK\r\n");
        u.text(&["SET", "k", "v"]);
        let line = String::from_utf8_lossy(&m.read_reply().expect("monitor line").raw).into_owned();
        // "+<time> [0 unix:<path>] "SET" "k" "v"": the time differs.
        seen.push(clean(
            line.split_once(' ')
                .map(|x| x.1.to_string())
                .unwrap_or(line),
        ));
        seen.push(format!(
            "{:?}",
            u.cmd(&["SHUTDOWN", "NOSAVE"]).map(|r| r.raw)
        ));
        n.wait_exit();
        seen.push(format!("file left: {}", path.exists()));
        seen
    };
    let redis = run(Server::Redis);
    assert!(redis.contains(&"flags=U".to_string()), "{redis:#?}");
    assert_eq!(redis, run(Server::Datanode));
}

/// `bind * -::*` (Redis's default) listens on every IPv4 and every IPv6
/// address on one port: the IPv6 socket is IPv6-only, as Redis makes it
/// (a dual-stack one would collide with the IPv4 socket). Reached here
/// through 127.0.0.1 and ::1 on both servers.
#[test]
fn bind_star_listens_on_ipv4_and_ipv6_on_one_port() {
    let run = |kind: Server| -> Vec<String> {
        let n = Node::start(kind, &["--save", "", "--bind", "* -::*"]);
        let mut seen = vec![n.conn().text(&["CONFIG", "GET", "bind"])];
        for ip in ["127.0.0.1", "::1"] {
            seen.push(match Conn::connect_to(ip, n.port) {
                Ok(mut c) => format!("{ip}: {}", c.text(&["PING"])),
                Err(e) => format!("{ip}: {:?}", e.kind()),
            });
        }
        seen
    };
    assert_eq!(run(Server::Redis), run(Server::Datanode));
}

/// A big argument's room counts from its header on, as in Redis (which
/// allocates it when the header arrives): a client that has sent only the
/// start of a 2 MB argument already shows more than 2 MB in CLIENT LIST,
/// and a maxmemory-clients below that evicts it at once. Before, datanode
/// counted only the bytes that had arrived, so under load a client could
/// look small (and be spared) while its request was still coming.
#[test]
fn a_big_arguments_room_counts_from_its_header_as_in_redis() {
    for kind in [Server::Redis, Server::Datanode] {
        let n = Node::start(kind, &["--save", ""]);
        let mut admin = n.conn();
        let mut big = n.conn();
        let id = client_id(&mut big);
        big.send_raw(b"*2\r\n$3\r\nSET\r\n$2000000\r\n0123456789")
            .expect("send");
        wait_until("the first bytes read", || {
            client_list_field(&mut admin, &id, "qbuf") == "10"
        });
        let tot: u64 = client_list_field(&mut admin, &id, "tot-mem")
            .parse()
            .expect("a number");
        assert!(tot > 2_000_000, "{kind:?}: tot-mem={tot}");
        admin.text(&["CONFIG", "SET", "maxmemory-clients", "1mb"]);
        assert_eq!(
            admin.text(&["CLIENT", "LIST", "ID", &id]),
            "$0\r\n\r\n",
            "{kind:?}"
        );
    }
}

/// A batch of pipelined commands whose replies pile up past
/// `maxmemory-clients` closes its client before the next command, and
/// before any key is evicted for that memory, on both servers. Before,
/// datanode's eviction walk recounted a running batch from what it had
/// last published (without the batch's replies) and spared it, so keys
/// were evicted instead (Redis's unit/maxmemory MGET flood).
#[test]
fn a_batch_of_replies_past_maxmemory_clients_goes_before_any_key() {
    for kind in [Server::Redis, Server::Datanode] {
        let n = Node::start(kind, &["--save", ""]);
        let mut c = n.conn();
        c.text(&["CLIENT", "NO-EVICT", "on"]);
        for j in 0..20 {
            c.text(&["SETRANGE", &j.to_string(), "100000", "x"]);
        }
        cap_memory(&mut c, 4_000_000, "2mb");
        let mut flood = n.conn();
        // 60 replies of 100 KB asked in one write, none read.
        let _ = flood.send_raw(&slotkv_tests::resp::encode(&["GET", "1"]).repeat(60));
        wait_until("the flooding client evicted", || {
            c.info_field("stats", "evicted_clients") == "1"
        });
        assert_eq!(c.info_field("stats", "evicted_keys"), "0", "{kind:?}");
        assert_eq!(c.text(&["DBSIZE"]), ":20\r\n", "{kind:?}");
    }
}

/// Sets maxmemory `headroom` bytes above what is used now (evicting with
/// allkeys-lru) and maxmemory-clients to `clients`.
fn cap_memory(c: &mut Conn, headroom: u64, clients: &str) {
    let used: u64 = c
        .info_field("memory", "used_memory")
        .parse()
        .expect("a number");
    c.text(&["CONFIG", "SET", "maxmemory-policy", "allkeys-lru"]);
    let max = (used + headroom).to_string();
    c.text(&["CONFIG", "SET", "maxmemory", &max]);
    c.text(&["CONFIG", "SET", "maxmemory-clients", clients]);
}

/// Subscribers that stop reading while big messages are published: their
/// output passes maxmemory-clients and they are closed before any key is
/// evicted, as in Redis. Before, datanode evicted keys first: subscribers'
/// buffers fill on their own threads after the publisher's check, and the
/// key eviction that the next command ran did not recount them.
#[test]
fn stalled_subscribers_go_before_any_key() {
    for kind in [Server::Redis, Server::Datanode] {
        let n = Node::start(kind, &["--save", ""]);
        let mut c = n.conn();
        c.text(&["CLIENT", "NO-EVICT", "on"]);
        for j in 0..30 {
            c.text(&["SETRANGE", &j.to_string(), "100000", "x"]);
        }
        let subs: Vec<Conn> = (0..20)
            .map(|_| {
                let mut s = n.conn();
                s.text(&["SUBSCRIBE", "bla"]);
                s
            })
            .collect();
        cap_memory(&mut c, 3_500_000, "3mb");
        let big = "x".repeat(100_000);
        let deadline = Instant::now() + Duration::from_secs(30);
        while c.info_field("stats", "evicted_clients") == "0" {
            assert!(Instant::now() < deadline, "{kind:?}: no subscriber evicted");
            c.text(&["PUBLISH", "bla", &big]);
        }
        assert_eq!(c.info_field("stats", "evicted_keys"), "0", "{kind:?}");
        assert_eq!(c.text(&["DBSIZE"]), ":30\r\n", "{kind:?}");
        drop(subs);
    }
}

/// CONFIG RESETSTAT zeroes the counters Redis's resetServerStats does and
/// keeps the slow log. Before, the next ops sample after it subtracted
/// from a counter now smaller, which panicked the server cron: from then
/// on no key expired in the background and no client was evicted.
#[test]
fn config_resetstat_zeroes_counters_and_the_cron_goes_on() {
    for kind in [Server::Redis, Server::Datanode] {
        let n = Node::start(kind, &["--save", ""]);
        let mut c = n.conn();
        c.text(&["CONFIG", "SET", "slowlog-log-slower-than", "0"]);
        for _ in 0..500 {
            c.text(&["PING"]);
        }
        wait_until("an ops sample with the PINGs", || {
            info_field(&mut c, "stats", "instantaneous_ops_per_sec") != "0"
        });
        assert_eq!(c.text(&["CONFIG", "RESETSTAT"]), "+OK\r\n", "{kind:?}");
        assert_eq!(
            info_field(&mut c, "stats", "reply_buffer_expands"),
            "0",
            "{kind:?}"
        );
        let slow: u64 = c.text(&["SLOWLOG", "LEN"])[1..].trim().parse().unwrap();
        assert!(slow > 100, "{kind:?}: the slow log was cleared ({slow})");
        c.text(&["CONFIG", "SET", "slowlog-log-slower-than", "10000"]);
        for i in 0..20 {
            c.text(&["SET", &format!("tmp{i}"), "v", "PX", "30"]);
        }
        // Nobody reads them: only the cron can expire them.
        wait_until("the cron to expire the keys", || {
            info_field(&mut c, "stats", "expired_keys") == "20"
        });
        let ops: u64 = info_field(&mut c, "stats", "instantaneous_ops_per_sec")
            .parse()
            .unwrap();
        assert!(ops < 100_000, "{kind:?}: instantaneous_ops_per_sec {ops}");
    }
}

/// INFO's traffic and expiry figures move with the traffic, as on
/// redis-server (datanode printed them as constant zeros before).
#[test]
fn info_traffic_and_expiry_figures_follow_the_load() {
    for kind in [Server::Redis, Server::Datanode] {
        let n = Node::start(kind, &["--save", ""]);
        let mut c = n.conn();
        let big = "x".repeat(20_000);
        let stat = |c: &mut Conn, f: &str| info_field(c, "stats", f);
        let num = |c: &mut Conn, f: &str| -> u64 { info_field(c, "stats", f).parse().unwrap() };
        // About 4 MB each way over two seconds: the rates are sampled ten
        // times a second and averaged over the last sixteen samples.
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut seen = (false, false);
        while !(seen.0 && seen.1) && Instant::now() < deadline {
            for i in 0..20 {
                c.text(&["SET", &format!("k{i}"), &big]);
                c.text(&["GET", &format!("k{i}")]);
            }
            seen.0 |= stat(&mut c, "instantaneous_input_kbps") != "0.00";
            seen.1 |= stat(&mut c, "instantaneous_output_kbps") != "0.00";
        }
        assert_eq!(seen, (true, true), "{kind:?}: the kbps figures stayed 0.00");
        assert!(num(&mut c, "total_reads_processed") >= 40, "{kind:?}");
        assert!(num(&mut c, "total_writes_processed") >= 40, "{kind:?}");
        // Keys that expire untouched: the expire cycle finds them stale.
        for i in 0..200 {
            c.text(&["SET", &format!("tmp{i}"), "v", "PX", "20"]);
        }
        // (The count goes up per key, the estimate at the cycle's end.)
        wait_until("the cron to expire the keys, found stale", || {
            num(&mut c, "expired_keys") == 200 && stat(&mut c, "expired_stale_perc") != "0.00"
        });
        c.text(&["CONFIG", "RESETSTAT"]);
        assert!(num(&mut c, "total_reads_processed") <= 2, "{kind:?}");
        assert_eq!(stat(&mut c, "expired_stale_perc"), "0.00", "{kind:?}");
    }
}

/// `list-max-listpack-size` shapes a list's nodes as Redis's quicklist
/// fill does (a size limit when negative, a count when positive, clamped
/// to -5 and 32767, taken when the list is made): the same pushes,
/// inserts, pops and sets give the same node count on both servers. It
/// was accepted and ignored (8 KB nodes whatever the setting).
#[test]
fn list_max_listpack_size_shapes_list_nodes_as_redis_does() {
    let nodes = |kind: Server| -> Vec<String> {
        let n = Node::start(kind, &["--save", "", "--enable-debug-command", "yes"]);
        let mut c = n.conn();
        let mut seen = Vec::new();
        for fill in ["-2", "-1", "-5", "-7", "0", "1", "5", "100", "40000"] {
            c.text(&["CONFIG", "SET", "list-max-ziplist-size", fill]);
            let mut rng = slotkv_tests::Rng::new(7);
            for i in 0..400 {
                let v = format!(
                    "{}{i}",
                    "v".repeat(*rng.pick(&[&1, &10, &100, &300, &2000, &9000]))
                );
                let len: usize = c.text(&["LLEN", "l"])[1..].trim().parse().unwrap();
                match rng.below(10) {
                    0..=3 => drop(c.text(&["RPUSH", "l", &v])),
                    4..=6 => drop(c.text(&["LPUSH", "l", &v])),
                    7 if len > 0 => {
                        let at = rng.below(len).to_string();
                        let pivot = c.cmd(&["LINDEX", "l", &at]).unwrap();
                        let pivot_value = match pivot.tree {
                            slotkv_tests::Reply::Scalar(b'$', b) => b,
                            other => panic!("LINDEX: {other:?}"),
                        };
                        let side = if rng.chance(50) { "BEFORE" } else { "AFTER" };
                        c.cmd(&[
                            b"LINSERT".as_slice(),
                            b"l",
                            side.as_bytes(),
                            &pivot_value,
                            v.as_bytes(),
                        ])
                        .unwrap();
                    }
                    8 => drop(c.text(&["LPOP", "l"])),
                    _ if len > 0 => drop(c.text(&["LSET", "l", "0", &v])),
                    _ => {}
                }
            }
            let d = c.text(&["DEBUG", "OBJECT", "l"]);
            let field = |name: &str| {
                d.split(' ')
                    .find(|w| w.starts_with(name))
                    .unwrap_or_else(|| panic!("{name} in {d}"))
                    .trim()
                    .to_string()
            };
            seen.push(format!(
                "fill {fill}: {} {}",
                field("ql_nodes:"),
                field("ql_listpack_max:")
            ));
            c.text(&["DEL", "l"]);
        }
        seen
    };
    assert_eq!(nodes(Server::Datanode), nodes(Server::Redis));
}

/// MEMORY STATS as (name, value) pairs; a database's entry is flattened to
/// `db.N/<field>`.
fn memory_stats(c: &mut Conn) -> Vec<(String, String)> {
    use slotkv_tests::resp::Reply;
    let r = c.cmd(&["MEMORY", "STATS"]).expect("MEMORY STATS");
    let text = |r: &Reply| match r {
        Reply::Scalar(_, b) => String::from_utf8_lossy(b).into_owned(),
        Reply::Agg(..) => panic!("nested reply where a scalar was expected"),
    };
    let Reply::Agg(_, items) = r.tree else {
        panic!("MEMORY STATS: {}", slotkv_tests::resp::show(&r.raw))
    };
    let mut out = Vec::new();
    for pair in items.chunks(2) {
        let name = text(&pair[0]);
        match &pair[1] {
            Reply::Agg(_, sub) => {
                for p in sub.chunks(2) {
                    out.push((format!("{name}/{}", text(&p[0])), text(&p[1])));
                }
            }
            v => out.push((name, text(v))),
        }
    }
    out
}

#[test]
fn memory_stats_adds_up_as_info_does() {
    for kind in [Server::Redis, Server::Datanode] {
        let n = Node::start(kind, &["--save", ""]);
        let mut c = n.conn();
        c.text(&["SELECT", "9"]);
        c.text(&["SET", "k", "v", "EX", "100"]);
        c.text(&["SELECT", "0"]);
        c.text(&["SET", "a", "b"]);
        // Another client holds half of a 2 MB argument in its query buffer.
        let mut big = n.conn();
        let mut partial = b"*3\r\n$3\r\nSET\r\n$1\r\nx\r\n$2000000\r\n".to_vec();
        partial.resize(partial.len() + 1_000_000, b'x');
        big.send_raw(&partial).expect("send");
        let mut stats = Vec::new();
        wait_until("the client's buffer to count in clients.normal", || {
            stats = memory_stats(&mut c);
            let normal = stats.iter().find(|(k, _)| k == "clients.normal");
            normal.is_some_and(|(_, v)| v.parse::<u64>().unwrap_or(0) > 1_000_000)
        });
        let names: Vec<&str> = stats.iter().map(|(k, _)| k.as_str()).collect();
        let db = |i: u32| {
            ["main", "expires", "slot-to-keys"].map(|f| format!("db.{i}/overhead.hashtable.{f}"))
        };
        let mut expected: Vec<String> = [
            "peak.allocated",
            "total.allocated",
            "startup.allocated",
            "replication.backlog",
            "clients.slaves",
            "clients.normal",
            "cluster.links",
            "aof.buffer",
            "lua.caches",
            "functions.caches",
        ]
        .map(String::from)
        .to_vec();
        expected.extend(db(0));
        expected.extend(db(9));
        expected.extend(
            [
                "overhead.total",
                "keys.count",
                "keys.bytes-per-key",
                "dataset.bytes",
                "dataset.percentage",
                "peak.percentage",
                "allocator.allocated",
                "allocator.active",
                "allocator.resident",
                "allocator-fragmentation.ratio",
                "allocator-fragmentation.bytes",
                "allocator-rss.ratio",
                "allocator-rss.bytes",
                "rss-overhead.ratio",
                "rss-overhead.bytes",
                "fragmentation",
                "fragmentation.bytes",
            ]
            .map(String::from),
        );
        assert_eq!(names, expected, "{kind:?}");
        let get = |k: &str| -> u64 {
            let v = &stats.iter().find(|(n, _)| n == k).expect("present").1;
            v.parse().unwrap_or_else(|_| panic!("{kind:?}: {k} = {v}"))
        };
        // The overhead is the sum of its parts, the dataset the rest (none
        // when clients are counted as Redis counts them, a big argument's
        // whole buffer, above what is allocated yet).
        let parts: u64 = names[2..]
            .iter()
            .take_while(|k| **k != "overhead.total")
            .map(|k| get(k))
            .sum();
        assert_eq!(get("overhead.total"), parts, "{kind:?}: {stats:?}");
        assert_eq!(
            get("dataset.bytes"),
            get("total.allocated").saturating_sub(get("overhead.total")),
            "{kind:?}: {stats:?}"
        );
        assert_eq!(get("keys.count"), 2, "{kind:?}");
        // INFO tells the same account (a moment later: within 5%).
        let info: u64 = info_field(&mut c, "memory", "used_memory_overhead")
            .parse()
            .expect("used_memory_overhead");
        let total = get("overhead.total");
        assert!(
            info.abs_diff(total) * 20 < total,
            "{kind:?}: INFO used_memory_overhead {info}, MEMORY STATS overhead.total {total}"
        );
        assert!(get("db.9/overhead.hashtable.expires") > 0, "{kind:?}");
        assert_eq!(get("db.0/overhead.hashtable.expires"), 0, "{kind:?}");
        drop(big);
    }
}

#[test]
fn wait_blocks_the_client_as_blocking_commands_do() {
    for kind in [Server::Redis, Server::Datanode] {
        let n = Node::start(kind, &["--save", ""]);
        let mut admin = n.conn();
        let mut w = n.conn();
        let id = w.text(&["CLIENT", "ID"]);
        let id = id.trim_start_matches(':').trim();
        let blocked = |admin: &mut Conn| -> (String, String) {
            (
                info_field(admin, "clients", "blocked_clients"),
                info_field(admin, "clients", "clients_in_timeout_table"),
            )
        };
        // (command, CLIENT UNBLOCK's mode, counted as timed, its reply)
        let cases: [(&[&str], &str, &str, &str); 4] = [
            (&["WAIT", "1", "100000"], "TIMEOUT", "1", ":0\r\n"),
            (
                &["WAIT", "1", "0"],
                "ERROR",
                "0",
                "-UNBLOCKED client unblocked via CLIENT UNBLOCK\r\n",
            ),
            (&["BLPOP", "nolist", "100"], "TIMEOUT", "1", "*-1\r\n"),
            (&["BLPOP", "nolist", "0"], "TIMEOUT", "0", "*-1\r\n"),
        ];
        for (cmd, mode, timed, reply) in cases {
            w.send_raw(&slotkv_tests::resp::encode(cmd)).expect("send");
            wait_until("the client to block", || blocked(&mut admin).0 == "1");
            assert_eq!(blocked(&mut admin).1, timed, "{kind:?} {cmd:?}");
            let list = admin.text(&["CLIENT", "LIST", "ID", id]);
            assert!(
                list.contains(" flags=b ")
                    && list.contains(&format!(" cmd={}", cmd[0].to_lowercase())),
                "{kind:?} {cmd:?}: {list}"
            );
            assert_eq!(
                admin.text(&["CLIENT", "UNBLOCK", id, mode]),
                ":1\r\n",
                "{kind:?} {cmd:?}"
            );
            let got = w.read_reply().expect("reply");
            assert_eq!(String::from_utf8_lossy(&got.raw), reply, "{kind:?} {cmd:?}");
            assert_eq!(blocked(&mut admin), ("0".into(), "0".into()), "{kind:?}");
        }
    }
}

#[test]
fn info_shows_the_largest_recent_client_buffers() {
    for kind in [Server::Redis, Server::Datanode] {
        let n = Node::start(kind, &["--save", ""]);
        let mut c = n.conn();
        let peak = |c: &mut Conn, field: &str| -> u64 {
            info_field(c, "clients", field).parse().expect("a number")
        };
        // Half of a 2 MB argument waits in a query buffer.
        let mut big = n.conn();
        let mut partial = b"*3\r\n$3\r\nSET\r\n$1\r\nx\r\n$2000000\r\n".to_vec();
        partial.resize(partial.len() + 1_000_000, b'x');
        big.send_raw(&partial).expect("send");
        wait_until("the query buffer to show", || {
            peak(&mut c, "client_recent_max_input_buffer") > 1_000_000
        });
        // Replies pile up for a client that does not read them.
        let value = "v".repeat(4 << 20);
        c.text(&["SET", "big", &value]);
        let mut slow = n.conn();
        let gets: Vec<u8> = (0..10)
            .flat_map(|_| slotkv_tests::resp::encode(&["GET", "big"]))
            .collect();
        slow.send_raw(&gets).expect("send");
        wait_until("the output buffer to show", || {
            peak(&mut c, "client_recent_max_output_buffer") > 10 << 20
        });
        drop((big, slow));
    }
}

/// The lazyfree-lazy-* settings move frees to the background as in Redis,
/// as INFO lazyfreed_objects shows: DEL (user-del), FLUSHALL and FLUSHDB
/// without SYNC/ASYNC (user-flush, a count per key flushed), expiry.
#[test]
fn lazyfree_settings_free_in_the_background_as_redis_does() {
    for kind in [Server::Redis, Server::Datanode] {
        let n = Node::start(kind, &["--save", ""]);
        let mut c = n.conn();
        let big = |c: &mut Conn, key: &str| {
            for chunk in 0..10 {
                let mut cmd = vec!["SADD".to_string(), key.to_string()];
                cmd.extend((0..1000).map(|i| (chunk * 1000 + i).to_string()));
                c.text(&cmd);
            }
        };
        let freed = |c: &mut Conn| -> u64 {
            info_field(c, "memory", "lazyfreed_objects")
                .parse()
                .expect("a number")
        };
        let settle = |c: &mut Conn, want: u64| {
            wait_until(&format!("{kind:?}: lazyfreed_objects {want}"), || {
                freed(c) >= want
            });
            assert_eq!(freed(c), want, "{kind:?}: lazyfreed_objects");
        };
        big(&mut c, "s");
        c.text(&["DEL", "s"]);
        settle(&mut c, 0);
        c.text(&["CONFIG", "SET", "lazyfree-lazy-user-del", "yes"]);
        big(&mut c, "s");
        c.text(&["DEL", "s"]);
        settle(&mut c, 1);
        // Flushes: a count per key, big or small.
        big(&mut c, "s");
        c.text(&["SET", "a", "1"]);
        c.text(&["FLUSHALL"]);
        settle(&mut c, 1);
        c.text(&["CONFIG", "SET", "lazyfree-lazy-user-flush", "yes"]);
        big(&mut c, "s");
        c.text(&["SET", "a", "1"]);
        c.text(&["FLUSHALL"]);
        settle(&mut c, 3);
        c.text(&["SET", "a", "1"]);
        c.text(&["FLUSHDB", "SYNC"]);
        c.text(&["SET", "a", "1"]);
        c.text(&["FLUSHDB"]);
        settle(&mut c, 4);
        // Expiry.
        c.text(&["CONFIG", "SET", "lazyfree-lazy-expire", "yes"]);
        big(&mut c, "s");
        c.text(&["PEXPIRE", "s", "1"]);
        settle(&mut c, 5);
        assert_eq!(c.text(&["DBSIZE"]), ":0\r\n", "{kind:?}");
        // A big value a write replaces.
        c.text(&["CONFIG", "SET", "lazyfree-lazy-server-del", "yes"]);
        big(&mut c, "s");
        c.text(&["SET", "s", "small"]);
        settle(&mut c, 6);
        // Values the server deletes on its own: the destinations of RENAME,
        // COPY REPLACE and RESTORE REPLACE, an emptied STORE target.
        assert_eq!(c.text(&["DEL", "s"]), ":1\r\n");
        big(&mut c, "s");
        big(&mut c, "t");
        assert_eq!(c.text(&["RENAME", "s", "t"]), "+OK\r\n");
        settle(&mut c, 7);
        big(&mut c, "u");
        assert_eq!(c.text(&["COPY", "t", "u", "REPLACE"]), ":1\r\n");
        settle(&mut c, 8);
        let restore =
            "return redis.call('restore', KEYS[2], 0, redis.call('dump', KEYS[1]), 'REPLACE')";
        assert_eq!(c.text(&["EVAL", restore, "2", "t", "u"]), "+OK\r\n");
        settle(&mut c, 9);
        big(&mut c, "v");
        assert_eq!(c.text(&["SINTERSTORE", "v", "t", "nokey"]), ":0\r\n");
        settle(&mut c, 10);
        // A TTL in the past deletes as expiry does.
        big(&mut c, "w");
        assert_eq!(c.text(&["EXPIRE", "w", "-1"]), ":1\r\n");
        settle(&mut c, 11);
        assert_eq!(c.text(&["DBSIZE"]), ":2\r\n", "{kind:?}");
    }
}

/// `jemalloc-bg-thread` (on by default): jemalloc's background threads
/// return unused pages to the system; CONFIG SET stops and restarts them,
/// on both servers.
#[test]
fn jemalloc_background_threads_follow_jemalloc_bg_thread() {
    for kind in [Server::Redis, Server::Datanode] {
        let n = Node::start(kind, &["--save", ""]);
        let mut c = n.conn();
        let threads = || -> usize {
            std::fs::read_dir(format!("/proc/{}/task", n.pid()))
                .map(|d| {
                    d.flatten()
                        .filter(|t| {
                            std::fs::read_to_string(t.path().join("comm"))
                                .is_ok_and(|name| name.trim() == "jemalloc_bg_thd")
                        })
                        .count()
                })
                .unwrap_or(0)
        };
        wait_until(&format!("{kind:?}: jemalloc's threads"), || threads() > 0);
        assert_eq!(
            c.text(&["CONFIG", "SET", "jemalloc-bg-thread", "no"]),
            "+OK\r\n"
        );
        wait_until(&format!("{kind:?}: no jemalloc thread"), || threads() == 0);
        assert_eq!(
            c.text(&["CONFIG", "SET", "jemalloc-bg-thread", "yes"]),
            "+OK\r\n"
        );
        wait_until(&format!("{kind:?}: jemalloc's threads again"), || {
            threads() > 0
        });
    }
}

/// `hz` as Redis keeps it: CONFIG SET clamps it to 1..=500 and INFO shows
/// it at once; with `dynamic-hz` (on by default) the cron doubles its rate
/// while there are more than 200 clients per tick, and drops back when
/// they go.
/// active-expire-effort sets how hard the cron looks for expired keys:
/// with 5% of 10,000 keys with a TTL expired, effort 1 stops each run
/// after one round of 20 checks (under its 10% threshold) and finds about
/// one key a run, while effort 10 (65 checks a round, 1% threshold) goes
/// on until it has them all, on both servers (datanode ignored the
/// setting before session 31; this checks that it acts).
#[test]
fn active_expire_effort_sets_how_hard_expired_keys_are_looked_for() {
    for kind in [Server::Redis, Server::Datanode] {
        for effort in ["1", "10"] {
            let n = Node::start(kind, slotkv_tests::NO_DISK_DEBUG);
            let mut c = n.conn();
            assert_eq!(c.text(&["DEBUG", "SET-ACTIVE-EXPIRE", "0"]), "+OK\r\n");
            let mut batch = Vec::new();
            for i in 0..10_000 {
                let k = format!("k{i}");
                let ttl: &[&str] = if i % 20 == 0 {
                    &["PX", "1"]
                } else {
                    &["EX", "100000"]
                };
                let mut cmd = vec!["SET", k.as_str(), "v"];
                cmd.extend_from_slice(ttl);
                batch.extend(slotkv_tests::encode(&cmd));
            }
            c.send_raw(&batch).expect("send");
            for _ in 0..10_000 {
                c.read_reply().expect("reply");
            }
            std::thread::sleep(Duration::from_millis(5));
            assert_eq!(
                c.text(&["CONFIG", "SET", "active-expire-effort", effort]),
                "+OK\r\n"
            );
            assert_eq!(c.text(&["DEBUG", "SET-ACTIVE-EXPIRE", "1"]), "+OK\r\n");
            let expired = |c: &mut Conn| -> u64 {
                c.info_field("stats", "expired_keys")
                    .parse()
                    .expect("number")
            };
            if effort == "10" {
                wait_until("every expired key found", || expired(&mut c) == 500);
            } else {
                // About 10 a second; well under 500 after 2 s.
                std::thread::sleep(Duration::from_secs(2));
                let e = expired(&mut c);
                assert!(e < 200, "{kind:?} effort 1 expired {e} keys in 2 s");
            }
        }
    }
}

#[test]
fn hz_is_clamped_shown_and_raised_for_many_clients() {
    for kind in [Server::Redis, Server::Datanode] {
        let n = Node::start(kind, &["--save", "", "--maxclients", "1000"]);
        let mut c = n.conn();
        let hz = |c: &mut Conn| {
            (
                info_field(c, "server", "hz"),
                info_field(c, "server", "configured_hz"),
            )
        };
        assert_eq!(c.text(&["CONFIG", "SET", "hz", "1000"]), "+OK\r\n");
        assert_eq!(
            c.text(&["CONFIG", "GET", "hz"]),
            "*2\r\n$2\r\nhz\r\n$3\r\n500\r\n",
            "{kind:?}"
        );
        assert_eq!(hz(&mut c), ("500".into(), "500".into()), "{kind:?}");
        assert_eq!(c.text(&["CONFIG", "SET", "hz", "1"]), "+OK\r\n");
        assert_eq!(hz(&mut c), ("1".into(), "1".into()), "{kind:?}");
        let mut many: Vec<Conn> = (0..210).map(|_| n.conn()).collect();
        for m in &mut many {
            assert_eq!(m.text(&["PING"]), "+PONG\r\n");
        }
        wait_until(&format!("{kind:?}: hz 2 with 211 clients"), || {
            hz(&mut c) == ("2".into(), "1".into())
        });
        many.clear();
        wait_until(&format!("{kind:?}: hz 1 again"), || {
            hz(&mut c) == ("1".into(), "1".into())
        });
    }
}

/// The `Cpus_allowed_list` line of a /proc status file.
fn cpus_allowed(status: &std::path::Path) -> String {
    std::fs::read_to_string(status)
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .map(|v| v.trim().to_string())
        .unwrap_or_default()
}

/// A process's threads as (name, CPUs allowed).
fn threads_of(pid: u32) -> Vec<(String, String)> {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    dir.flatten()
        .map(|t| {
            let comm = std::fs::read_to_string(t.path().join("comm")).unwrap_or_default();
            (
                comm.trim().to_string(),
                cpus_allowed(&t.path().join("status")),
            )
        })
        .collect()
}

/// server_cpulist, bio_cpulist and bgsave_cpulist pin what they name, as
/// on redis-server: the threads that serve clients (Redis's main thread),
/// the background I/O threads (the AOF's fsync thread there, the AOF
/// writer here) and a BGSAVE (Redis's child process, datanode's thread).
/// datanode ignored all three.
#[test]
fn cpu_lists_pin_the_threads_they_name() {
    let mine = cpus_allowed(std::path::Path::new("/proc/self/status"));
    let Some(cpus) = (|| {
        let first = mine.split(',').next()?;
        let (a, b) = first.split_once('-')?;
        let a: u32 = a.parse().ok()?;
        (b.parse::<u32>().ok()? > a).then_some((a, a + 1))
    })() else {
        eprintln!("skipped: two CPUs in a row are needed, this process may use {mine}");
        return;
    };
    let (server, other) = (cpus.0.to_string(), cpus.1.to_string());
    for kind in [Server::Redis, Server::Datanode] {
        let args = [
            "--save",
            "",
            "--appendonly",
            "yes",
            "--enable-debug-command",
            "yes",
            "--server_cpulist",
            &server,
            "--bio_cpulist",
            &other,
            "--bgsave_cpulist",
            &other,
            "--io-threads",
            "2",
        ];
        let n = Node::start(kind, &args);
        let mut c = n.conn();
        let pid = n.pid();
        let main = cpus_allowed(std::path::Path::new(&format!("/proc/{pid}/status")));
        assert_eq!(main, server, "{kind:?}");
        let (bio, workers) = match kind {
            Server::Redis => ("bio_aof_fsync", "io_thd_1"),
            Server::Datanode => ("aof-writer", "tokio-rt-worker"),
        };
        let threads = threads_of(pid);
        let of = |name: &str| -> Vec<String> {
            threads
                .iter()
                .filter(|(n, _)| n == name)
                .map(|(_, c)| c.clone())
                .collect()
        };
        assert_eq!(of(bio), vec![other.clone()], "{kind:?}: {threads:?}");
        // The I/O threads serve clients too.
        let w = of(workers);
        assert!(
            !w.is_empty() && w.iter().all(|c| *c == server),
            "{kind:?}: {threads:?}"
        );
        // A BGSAVE slow enough to be looked at.
        assert_eq!(c.text(&["DEBUG", "POPULATE", "3000"]), "+OK\r\n");
        assert_eq!(
            c.text(&["CONFIG", "SET", "rdb-key-save-delay", "1000"]),
            "+OK\r\n"
        );
        assert_eq!(c.text(&["BGSAVE"]), "+Background saving started\r\n");
        // The saver pins itself as it starts.
        let saver = || match kind {
            Server::Redis => {
                let children = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
                    .unwrap_or_default();
                let child = children
                    .split_whitespace()
                    .next()
                    .unwrap_or("0")
                    .to_string();
                cpus_allowed(std::path::Path::new(&format!("/proc/{child}/status")))
            }
            Server::Datanode => threads_of(pid)
                .into_iter()
                .find(|(n, _)| n == "bgsave")
                .map(|(_, c)| c)
                .unwrap_or_default(),
        };
        let what = format!("{kind:?}: the saver on CPU {other}");
        slotkv_tests::wait_until(Duration::from_secs(10), &what, || saver() == other);
        assert_eq!(
            c.text(&["CONFIG", "SET", "rdb-key-save-delay", "0"]),
            "+OK\r\n"
        );
        slotkv_tests::wait_until(Duration::from_secs(30), "the save to end", || {
            c.info_field("persistence", "rdb_bgsave_in_progress") == "0"
        });
    }
}

/// `socket-mark-id` marks every TCP listening socket (clients' and the
/// cluster bus's) with SO_MARK, as Redis marks the sockets it listens on;
/// 0 marks none. Seen through the servers' `setsockopt` calls (an
/// LD_PRELOAD library logs each SO_MARK it is asked to set): both servers
/// mark the same number of sockets, with the configured id. datanode
/// ignored the setting.
#[test]
fn socket_mark_id_marks_the_listening_sockets() {
    let mut counts = Vec::new();
    for kind in [Server::Redis, Server::Datanode] {
        for id in ["0", "42"] {
            let pre = slotkv_tests::preload::Preload::new(&[("SLOTKV_LOG_SO_MARK", "marks")], &[]);
            let n = Node::start_with_env(
                kind,
                &pre.env(),
                &["--cluster-enabled", "yes", "--socket-mark-id", id],
            );
            assert_eq!(n.conn().text(&["PING"]), "+PONG\r\n");
            let log = std::fs::read_to_string(pre.path("marks")).unwrap_or_default();
            let marks: Vec<&str> = log.lines().collect();
            if id == "0" {
                assert!(marks.is_empty(), "{kind:?}: {marks:?}");
            } else {
                // The client port and the bus port at least.
                assert!(marks.len() >= 2, "{kind:?}: {marks:?}");
                assert!(marks.iter().all(|m| *m == id), "{kind:?}: {marks:?}");
                counts.push(marks.len());
            }
        }
    }
    assert_eq!(
        counts[0], counts[1],
        "sockets marked by redis-server, datanode"
    );
}

/// The process title, as /proc/PID/cmdline shows it: the default
/// template names the program and where it listens, and CONFIG SET
/// proc-title-template takes effect at once (Redis's "Process title set
/// as expected", which needs the process and so is not run against an
/// external server). datanode kept its command line.
#[test]
fn the_process_title_follows_its_template() {
    let words = |n: &Node| -> Vec<String> {
        let raw = std::fs::read(format!("/proc/{}/cmdline", n.pid())).expect("cmdline");
        String::from_utf8_lossy(&raw)
            .split(|c: char| c == '\0' || c.is_whitespace())
            .filter(|w| !w.is_empty())
            .map(str::to_string)
            .collect()
    };
    for kind in [Server::Redis, Server::Datanode] {
        let n = Node::start(kind, &[]);
        let program = if kind == Server::Redis {
            "redis-server"
        } else {
            "datanode"
        };
        let listen = format!("127.0.0.1:{}", n.port);
        let w = words(&n);
        assert!(w[0].ends_with(program), "{kind:?}: {w:?}");
        assert_eq!(w[1..], [listen.as_str()], "{kind:?}: {w:?}");
        let mut c = n.conn();
        let template = "TEST {title} {listen-addr} {port} {tls-port} {unixsocket} {config-file} [{server-mode}]";
        assert_eq!(
            c.text(&["CONFIG", "SET", "proc-title-template", template]),
            "+OK\r\n"
        );
        let w = words(&n);
        assert_eq!(w[0], "TEST", "{kind:?}: {w:?}");
        assert!(w[1].ends_with(program), "{kind:?}: {w:?}");
        let port = n.port.to_string();
        assert_eq!(
            w[2..],
            [listen.as_str(), &port, "0", "-", "[]"],
            "{kind:?}: {w:?}"
        );
        assert!(c
            .text(&["CONFIG", "SET", "proc-title-template", "{invalid-var}"])
            .contains("template format is invalid"));
    }
}

/// The kernel's THP mode file, and a step for a server's process that
/// shows `fake` in its place: a private mount namespace with the file
/// bind-mounted over it, so the host's mounts stay as they are.
const THP_MODE: &str = "/sys/kernel/mm/transparent_hugepage/enabled";

fn thp_mode_shown_as(fake: &std::path::Path) -> slotkv_tests::process::PreExec {
    use std::ffi::CString;
    let source = CString::new(fake.display().to_string()).expect("path");
    let target = CString::new(THP_MODE).expect("path");
    std::sync::Arc::new(move || {
        let err = || Err(std::io::Error::last_os_error());
        // SAFETY: system calls with C strings that outlive them.
        unsafe {
            if libc::unshare(libc::CLONE_NEWNS) != 0 {
                return err();
            }
            let root = c"/";
            let flags = libc::MS_REC | libc::MS_PRIVATE;
            if libc::mount(
                std::ptr::null(),
                root.as_ptr(),
                std::ptr::null(),
                flags,
                std::ptr::null(),
            ) != 0
            {
                return err();
            }
            if libc::mount(
                source.as_ptr(),
                target.as_ptr(),
                std::ptr::null(),
                libc::MS_BIND,
                std::ptr::null(),
            ) != 0
            {
                return err();
            }
        }
        Ok(())
    })
}

/// `THP_enabled` of /proc/PID/status: 0 once a process has opted out.
fn thp_enabled(n: &Node) -> String {
    let status = std::fs::read_to_string(format!("/proc/{}/status", n.pid())).expect("status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("THP_enabled:"))
        .map(|v| v.trim().to_string())
        .unwrap_or_default()
}

#[test]
fn transparent_huge_pages_are_turned_off_when_the_kernel_uses_them_always() {
    let fakes = tempfile::tempdir().expect("tempdir");
    let always = fakes.path().join("always");
    let madvise = fakes.path().join("madvise");
    std::fs::write(&always, "[always] madvise never\n").expect("write");
    std::fs::write(&madvise, "always [madvise] never\n").expect("write");
    // A mount namespace needs CAP_SYS_ADMIN; without it there is nothing
    // to fake the kernel's mode with.
    let step = thp_mode_shown_as(&always);
    let can_fake = std::path::Path::new(THP_MODE).exists() && {
        use std::os::unix::process::CommandExt;
        let mut probe = std::process::Command::new("true");
        let s = step.clone();
        // SAFETY: the step makes system calls only.
        unsafe { probe.pre_exec(move || s()) };
        probe.status().is_ok_and(|st| st.success())
    };
    if !can_fake {
        eprintln!("skipped: no THP in this kernel, or no right to make a mount namespace");
        return;
    }
    let warned = |n: &Node| n.log().contains("Transparent Huge Pages");
    for kind in [Server::Redis, Server::Datanode] {
        let n = Node::start_with_pre_exec(kind, thp_mode_shown_as(&always), &[]);
        assert_eq!(thp_enabled(&n), "0", "{kind:?} under 'always'");
        assert!(!warned(&n), "{kind:?}: {}", n.log());

        let n =
            Node::start_with_pre_exec(kind, thp_mode_shown_as(&always), &["--disable-thp", "no"]);
        assert_eq!(thp_enabled(&n), "1", "{kind:?} told to keep THP");
        assert!(
            warned(&n),
            "{kind:?} keeps THP under 'always' silently: {}",
            n.log()
        );

        let n = Node::start_with_pre_exec(kind, thp_mode_shown_as(&madvise), &[]);
        assert_eq!(thp_enabled(&n), "1", "{kind:?} under 'madvise'");
        assert!(!warned(&n), "{kind:?}: {}", n.log());
    }
}

/// A fatal signal leaves a crash report with the stack in the log, as
/// redis-server's bug report does (a SIGABRT from outside, DEBUG
/// SEGFAULT); with `crash-log-enabled no` the signal's default action
/// ends the process with no report.
#[test]
fn a_crash_leaves_its_stack_in_the_log() {
    for kind in [Server::Redis, Server::Datanode] {
        // No memory test after the report: it takes a while on Redis.
        let quick = [
            "--crash-memcheck-enabled",
            "no",
            "--enable-debug-command",
            "yes",
        ];
        let mut n = Node::start(kind, &quick);
        n.signal_and_wait("-ABRT");
        assert!(n.log().contains("STACK TRACE"), "{kind:?}: {}", n.log());

        let mut n = Node::start(kind, &quick);
        let _ = n.conn().cmd(&["DEBUG", "SEGFAULT"]);
        let status = n.wait_exit_status();
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(
            status.and_then(|s| s.signal()),
            Some(libc::SIGSEGV),
            "{kind:?}: {status:?}"
        );
        assert!(n.log().contains("STACK TRACE"), "{kind:?}: {}", n.log());

        let mut n = Node::start(kind, &quick);
        assert_eq!(
            n.conn().text(&["CONFIG", "SET", "crash-log-enabled", "no"]),
            "+OK\r\n"
        );
        n.signal_and_wait("-ABRT");
        assert!(!n.log().contains("STACK TRACE"), "{kind:?}: {}", n.log());
    }
}

/// `watchdog-period`: a command that keeps the server busy longer than
/// the period leaves "WATCHDOG TIMER EXPIRED" and the busy thread's stack
/// in the log (the stack passes through the DEBUG command's code), once
/// per overrun; at 0 the watchdog is off again.
#[test]
fn the_watchdog_logs_the_stack_of_a_command_that_runs_too_long() {
    for kind in [Server::Redis, Server::Datanode] {
        let n = Node::start(kind, &["--enable-debug-command", "yes"]);
        let mut c = n.conn();
        assert_eq!(
            c.text(&["CONFIG", "SET", "watchdog-period", "200"]),
            "+OK\r\n",
            "{kind:?}"
        );
        assert_eq!(c.text(&["DEBUG", "SLEEP", "1"]), "+OK\r\n", "{kind:?}");
        wait_until("the watchdog's report", || {
            n.log().contains("--- WATCHDOG TIMER EXPIRED ---")
        });
        let log = n.log();
        let report = &log[log.find("--- WATCHDOG TIMER EXPIRED ---").unwrap_or(0)..];
        assert!(
            report.to_lowercase().contains("debug"),
            "{kind:?}: the stack misses the DEBUG command: {report}"
        );
        assert_eq!(log.matches("WATCHDOG TIMER EXPIRED").count(), 1, "{kind:?}");
        assert_eq!(
            c.text(&["CONFIG", "SET", "watchdog-period", "0"]),
            "+OK\r\n"
        );
        assert_eq!(c.text(&["DEBUG", "SLEEP", "0.5"]), "+OK\r\n");
        assert_eq!(
            n.log().matches("WATCHDOG TIMER EXPIRED").count(),
            1,
            "{kind:?}: a report with the watchdog off"
        );
    }
}

/// `rename-command` in the configuration: clients know the command by its
/// new name only (in transactions and scripts too), an empty name removes
/// it, and CONFIG REWRITE keeps the directive; the replies are
/// redis-server's.
#[test]
fn rename_command_renames_and_removes_commands_as_redis_does() {
    let mut replies = Vec::new();
    for kind in [Server::Redis, Server::Datanode] {
        let dir = tempfile::tempdir().expect("tempdir");
        let conf = dir.path().join("node.conf");
        std::fs::write(
            &conf,
            "rename-command flushdb badger\nrename-command keys \"\"\n",
        )
        .expect("config");
        let mut n = Node::start_with_config(kind, Some(&conf), &[]);
        let mut c = n.conn();
        let mut seen = Vec::new();
        let cmds: &[&[&str]] = &[
            &["SET", "k", "v"],
            &["FLUSHDB"],
            &["KEYS", "*"],
            &["DBSIZE"],
            &["EVAL", "return redis.call('flushdb')", "0"],
            &["MULTI"],
            &["BADGER"],
            &["EXEC"],
            &["DBSIZE"],
            &["SET", "k", "v"],
            &["EVAL", "return redis.call('badger')", "0"],
            &["DBSIZE"],
            &["CONFIG", "REWRITE"],
        ];
        for cmd in cmds {
            seen.push(c.text(cmd));
        }
        let text = std::fs::read_to_string(&conf).expect("config");
        assert!(
            text.starts_with("rename-command flushdb badger\n"),
            "{kind:?}: {text}"
        );
        n.signal_and_wait("-TERM");
        n.restart();
        let mut c = n.conn();
        seen.push(c.text(&["FLUSHDB"]));
        seen.push(c.text(&["BADGER"]));
        replies.push(seen);
    }
    assert_eq!(replies[0], replies[1]);
    assert!(
        replies[1][1].starts_with("-ERR unknown command 'FLUSHDB'"),
        "{:?}",
        replies[1]
    );
}
