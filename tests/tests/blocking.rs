//! Blocking list commands: wake-ups on push, timeouts, first-blocked
//! first-served, clients going away while blocked, no blocking in MULTI.

use std::time::{Duration, Instant};

use slotkv_tests::{encode, Conn, Node, Server};

fn node() -> Node {
    Node::start(Server::Datanode, &["--save", ""])
}

fn blocked(c: &mut Conn) -> u64 {
    let t = c.text(&["INFO", "clients"]);
    t.split("\r\n")
        .find_map(|l| l.strip_prefix("blocked_clients:"))
        .and_then(|v| v.parse().ok())
        .expect("blocked_clients")
}

fn wait_blocked(c: &mut Conn, n: u64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while blocked(c) != n {
        assert!(
            Instant::now() < deadline,
            "never reached {n} blocked clients"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn push_wakes_a_blocked_client() {
    let n = node();
    let mut waiter = n.conn();
    let mut admin = n.conn();
    waiter.send_raw(&encode(&["BLPOP", "a", "b", "0"])).unwrap();
    wait_blocked(&mut admin, 1);
    assert_eq!(admin.text(&["RPUSH", "b", "x", "y"]), ":2\r\n");
    assert_eq!(
        waiter.read_reply().unwrap().raw,
        b"*2\r\n$1\r\nb\r\n$1\r\nx\r\n"
    );
    assert_eq!(admin.text(&["LRANGE", "b", "0", "-1"]), "*1\r\n$1\r\ny\r\n");
    assert_eq!(blocked(&mut admin), 0);
}

#[test]
fn timeout_answers_null() {
    let n = node();
    let mut c = n.conn();
    let t = Instant::now();
    assert_eq!(c.text(&["BLPOP", "nokey", "0.2"]), "*-1\r\n");
    assert!(
        t.elapsed() >= Duration::from_millis(190),
        "{:?}",
        t.elapsed()
    );
    assert_eq!(
        c.text(&["BLMOVE", "nokey", "dst", "LEFT", "RIGHT", "0.05"]),
        "$-1\r\n"
    );
    assert!(c.text(&["HELLO", "3"]).starts_with("%7"));
    assert_eq!(c.text(&["BRPOP", "nokey", "0.05"]), "_\r\n");
}

#[test]
fn first_blocked_first_served() {
    let n = node();
    let mut a = n.conn();
    let mut b = n.conn();
    let mut admin = n.conn();
    a.send_raw(&encode(&["BRPOP", "q", "0"])).unwrap();
    wait_blocked(&mut admin, 1);
    b.send_raw(&encode(&["BRPOP", "q", "0"])).unwrap();
    wait_blocked(&mut admin, 2);
    admin.text(&["LPUSH", "q", "one"]);
    assert_eq!(
        a.read_reply().unwrap().raw,
        b"*2\r\n$1\r\nq\r\n$3\r\none\r\n"
    );
    admin.text(&["LPUSH", "q", "two"]);
    assert_eq!(
        b.read_reply().unwrap().raw,
        b"*2\r\n$1\r\nq\r\n$3\r\ntwo\r\n"
    );
}

#[test]
fn one_push_of_two_elements_serves_two_clients() {
    let n = node();
    let mut a = n.conn();
    let mut b = n.conn();
    let mut admin = n.conn();
    a.send_raw(&encode(&["BLPOP", "q", "0"])).unwrap();
    b.send_raw(&encode(&["BLPOP", "q", "0"])).unwrap();
    wait_blocked(&mut admin, 2);
    admin.text(&["RPUSH", "q", "1", "2"]);
    let ra = a.read_reply().unwrap().raw;
    let rb = b.read_reply().unwrap().raw;
    let mut got = [ra, rb];
    got.sort();
    assert_eq!(got[0], b"*2\r\n$1\r\nq\r\n$1\r\n1\r\n");
    assert_eq!(got[1], b"*2\r\n$1\r\nq\r\n$1\r\n2\r\n");
    assert_eq!(admin.text(&["EXISTS", "q"]), ":0\r\n");
}

#[test]
fn killed_or_closed_blocked_clients_take_nothing() {
    let n = node();
    let mut a = n.conn();
    let mut admin = n.conn();
    let id = a.text(&["CLIENT", "ID"]);
    a.send_raw(&encode(&["BLPOP", "q", "0"])).unwrap();
    wait_blocked(&mut admin, 1);
    let id = id.trim_start_matches(':').trim();
    assert_eq!(admin.text(&["CLIENT", "KILL", "ID", id]), ":1\r\n");
    assert!(a.is_closed());
    wait_blocked(&mut admin, 0);
    {
        let mut b = n.conn();
        b.send_raw(&encode(&["BLPOP", "q", "0"])).unwrap();
        wait_blocked(&mut admin, 1);
    }
    // b's socket is closed now.
    wait_blocked(&mut admin, 0);
    admin.text(&["RPUSH", "q", "kept"]);
    assert_eq!(
        admin.text(&["LRANGE", "q", "0", "-1"]),
        "*1\r\n$4\r\nkept\r\n"
    );
}

#[test]
fn blmove_and_blmpop_wake_up() {
    let n = node();
    let mut a = n.conn();
    let mut b = n.conn();
    let mut admin = n.conn();
    a.send_raw(&encode(&["BLMOVE", "src", "dst", "RIGHT", "LEFT", "0"]))
        .unwrap();
    b.send_raw(&encode(&[
        "BLMPOP", "0", "2", "m1", "m2", "LEFT", "COUNT", "2",
    ]))
    .unwrap();
    wait_blocked(&mut admin, 2);
    admin.text(&["RPUSH", "src", "s1"]);
    assert_eq!(a.read_reply().unwrap().raw, b"$2\r\ns1\r\n");
    assert_eq!(
        admin.text(&["LRANGE", "dst", "0", "-1"]),
        "*1\r\n$2\r\ns1\r\n"
    );
    admin.text(&["RPUSH", "m2", "x", "y", "z"]);
    assert_eq!(
        b.read_reply().unwrap().raw,
        b"*2\r\n$2\r\nm2\r\n*2\r\n$1\r\nx\r\n$1\r\ny\r\n"
    );
}

#[test]
fn blocking_commands_do_not_block_inside_multi() {
    let n = node();
    let mut c = n.conn();
    c.text(&["MULTI"]);
    c.text(&["BLPOP", "nokey", "0"]);
    c.text(&["BLMOVE", "nokey", "d", "LEFT", "LEFT", "0"]);
    assert_eq!(c.text(&["EXEC"]), "*2\r\n*-1\r\n$-1\r\n");
}

#[test]
fn zadd_wakes_bzpopmin() {
    let n = node();
    let mut a = n.conn();
    let mut admin = n.conn();
    a.send_raw(&encode(&["BZPOPMIN", "z", "0"])).unwrap();
    wait_blocked(&mut admin, 1);
    admin.text(&["ZADD", "z", "2", "two", "1", "one"]);
    assert_eq!(
        a.read_reply().unwrap().raw,
        b"*3\r\n$1\r\nz\r\n$3\r\none\r\n$1\r\n1\r\n"
    );
    assert_eq!(admin.text(&["ZCARD", "z"]), ":1\r\n");
}

#[test]
fn swapdb_wakes_clients_blocked_on_keys_it_brings() {
    let n = node();
    let mut admin = n.conn();
    let mut l = n.conn();
    let mut z = n.conn();
    let mut s = n.conn();
    admin.text(&["SELECT", "1"]);
    admin.text(&["RPUSH", "k", "hello"]);
    admin.text(&["ZADD", "zk", "1", "m"]);
    admin.text(&["SET", "sk", "string"]);
    for (c, cmd) in [
        (&mut l, ["BRPOP", "k", "0"]),
        (&mut z, ["BZPOPMIN", "zk", "0"]),
        (&mut s, ["BLPOP", "sk", "0"]),
    ] {
        c.text(&["SELECT", "9"]);
        c.send_raw(&encode(&cmd)).unwrap();
    }
    wait_blocked(&mut admin, 3);
    assert_eq!(admin.text(&["SWAPDB", "1", "9"]), "+OK\r\n");
    assert_eq!(
        l.read_reply().unwrap().raw,
        b"*2\r\n$1\r\nk\r\n$5\r\nhello\r\n"
    );
    assert_eq!(
        z.read_reply().unwrap().raw,
        b"*3\r\n$2\r\nzk\r\n$1\r\nm\r\n$1\r\n1\r\n"
    );
    // A string is nothing to pop: that client stays blocked.
    wait_blocked(&mut admin, 1);
    admin.text(&["SELECT", "9"]);
    assert_eq!(admin.text(&["GET", "sk"]), "$6\r\nstring\r\n");
}

#[test]
fn swapdb_leaves_clients_blocked_on_an_expired_key() {
    let n = node();
    let mut admin = n.conn();
    let mut w = n.conn();
    admin.text(&["DEBUG", "SET-ACTIVE-EXPIRE", "0"]);
    admin.text(&["SELECT", "1"]);
    admin.text(&["RPUSH", "k", "hello"]);
    admin.text(&["PEXPIRE", "k", "50"]);
    w.text(&["SELECT", "9"]);
    w.send_raw(&encode(&["BRPOP", "k", "0"])).unwrap();
    wait_blocked(&mut admin, 1);
    std::thread::sleep(Duration::from_millis(80));
    assert_eq!(admin.text(&["SWAPDB", "1", "9"]), "+OK\r\n");
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(blocked(&mut admin), 1);
    // The wake-up found the key expired and deleted it.
    admin.text(&["SELECT", "9"]);
    assert_eq!(admin.text(&["DBSIZE"]), ":0\r\n");
    admin.text(&["RPUSH", "k", "later"]);
    assert_eq!(
        w.read_reply().unwrap().raw,
        b"*2\r\n$1\r\nk\r\n$5\r\nlater\r\n"
    );
}

/// A client blocked in XREADGROUP learns that SWAPDB took its stream
/// away (nothing, or another type, swapped in), or that the stream
/// swapped in lacks its group, as on redis-server.
#[test]
fn swapdb_wakes_stream_readers_whose_stream_went_or_came() {
    let mut replies = Vec::new();
    for kind in [Server::Redis, Server::Datanode] {
        let n = Node::start(kind, &["--save", ""]);
        let mut c = n.conn();
        let mut seen = Vec::new();
        // What db 4 holds at the key when it is swapped with db 9.
        for other in ["nothing", "a list", "a stream"] {
            for (db, setup) in [(4, other), (9, "stream")] {
                c.text(&["SELECT", &db.to_string()]);
                c.text(&["FLUSHDB"]);
                match setup {
                    "a list" => {
                        c.text(&["LPUSH", "mystream", "e1"]);
                    }
                    "a stream" => {
                        c.text(&["XADD", "mystream", "1-1", "f", "other"]);
                    }
                    "stream" => {
                        c.text(&["XADD", "mystream", "666", "f", "v"]);
                        c.text(&["XGROUP", "CREATE", "mystream", "mygroup", "$"]);
                    }
                    _ => {}
                }
            }
            let mut group = n.conn();
            group.text(&["SELECT", "9"]);
            group
                .send_raw(&encode(&[
                    "XREADGROUP",
                    "GROUP",
                    "mygroup",
                    "Alice",
                    "BLOCK",
                    "0",
                    "STREAMS",
                    "mystream",
                    ">",
                ]))
                .expect("send");
            wait_blocked(&mut c, 1);
            c.text(&["SWAPDB", "4", "9"]);
            let reply = group.read_reply().expect("a reply after SWAPDB");
            seen.push(format!("{other}: {}", String::from_utf8_lossy(&reply.raw)));
            wait_blocked(&mut c, 0);
        }
        replies.push(seen);
    }
    assert_eq!(replies[0], replies[1]);
    assert!(
        replies[1][0].contains("no longer exists"),
        "{:?}",
        replies[1]
    );
}
