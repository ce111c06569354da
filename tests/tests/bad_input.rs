//! Malformed and hostile input: datanode must answer (or close) exactly as
//! redis-server does, and keep serving other clients.

use std::time::Duration;

use slotkv_tests::resp::show;
use slotkv_tests::{Conn, Node, Server};

fn both() -> (Node, Node) {
    let args = ["--save", "", "--appendonly", "no"];
    (
        Node::start(Server::Redis, &args),
        Node::start(Server::Datanode, &args),
    )
}

/// Sends `input` on a fresh connection; returns (reply bytes, closed).
fn outcome(n: &Node, input: &[u8]) -> (Vec<u8>, bool) {
    let mut c = n.conn();
    c.send_raw(input).expect("send");
    c.drain(Duration::from_millis(400))
}

fn assert_alive(n: &Node) {
    let mut c = n.conn();
    assert_eq!(
        c.text(&["PING"]),
        "+PONG\r\n",
        "{:?} stopped serving",
        n.kind
    );
}

#[test]
fn malformed_requests_match_redis() {
    let (r, d) = both();
    let mut long_inline = vec![b'a'; 70 * 1024];
    long_inline.extend_from_slice(b"x");
    let mut long_count = b"*".to_vec();
    long_count.extend(vec![b'1'; 70 * 1024]);
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("negative multibulk then ping", b"*-5\r\nPING\r\n".to_vec()),
        (
            "zero multibulk then ping",
            b"*0\r\n*1\r\n$4\r\nPING\r\n".to_vec(),
        ),
        ("huge multibulk count", b"*99999999999\r\n".to_vec()),
        ("multibulk count just over 1M", b"*1048577\r\n".to_vec()),
        (
            "multibulk count of 1M",
            b"*1048576\r\n$4\r\nPING\r\n".to_vec(),
        ),
        ("multibulk count not a number", b"*abc\r\n".to_vec()),
        ("bulk length over 512MB", b"*1\r\n$2147483648\r\n".to_vec()),
        ("negative bulk length", b"*1\r\n$-3\r\n".to_vec()),
        ("bulk length not a number", b"*1\r\n$x\r\n".to_vec()),
        ("not a bulk inside multibulk", b"*1\r\n+foo\r\n".to_vec()),
        ("inline garbage", b"$5\r\nxyzzy\r\n".to_vec()),
        ("unbalanced quotes", b"set \"foo bar\r\n".to_vec()),
        ("null bytes", b"\x00\x00\x00\r\nPING\r\n".to_vec()),
        ("binary garbage", vec![0xff, 0xfe, 0x01, b'\r', b'\n']),
        ("inline too long", long_inline),
        ("count line too long", long_count),
        (
            "commands before an error still run",
            b"PING\r\n*1\r\n$4\r\nPING\r\n*x\r\n".to_vec(),
        ),
        ("half command", b"*2\r\n$3\r\nGET\r\n$3\r\nfo".to_vec()),
        (
            "huge bulk that never arrives",
            b"*2\r\n$3\r\nSET\r\n$536870000\r\nabc".to_vec(),
        ),
    ];
    let mut failures = Vec::new();
    for (name, input) in &cases {
        let ro = outcome(&r, input);
        let dn = outcome(&d, input);
        if ro != dn {
            failures.push(format!(
                "{name}: redis {} (closed {}) vs datanode {} (closed {})",
                show(&ro.0),
                ro.1,
                show(&dn.0),
                dn.1
            ));
        }
        assert_alive(&d);
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn unsent_bulk_payload_is_not_preallocated() {
    let d = Node::start(Server::Datanode, &["--save", ""]);
    let mut info = d.conn();
    let used = |c: &mut Conn| -> u64 {
        let t = c.text(&["INFO", "memory"]);
        t.lines()
            .find_map(|l| l.strip_prefix("used_memory:"))
            .and_then(|v| v.trim().parse().ok())
            .expect("used_memory")
    };
    let before = used(&mut info);
    // Ten clients announce ~500 MB values and send nothing more.
    let mut hogs: Vec<Conn> = (0..10).map(|_| d.conn()).collect();
    for h in &mut hogs {
        h.send_raw(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$536870000\r\nabc")
            .expect("send");
    }
    assert_alive(&d);
    let after = used(&mut info);
    assert!(
        after < before + 50 * 1024 * 1024,
        "memory grew from {before} to {after} for bytes never sent"
    );
}

#[test]
fn pipeline_of_1000_gets_1000_replies_in_order() {
    let d = Node::start(Server::Datanode, &["--save", ""]);
    let mut c = d.conn();
    let mut req = Vec::new();
    for i in 0..1000 {
        req.extend(slotkv_tests::encode(&[
            "SET",
            &format!("k{i}"),
            &i.to_string(),
        ]));
        req.extend(slotkv_tests::encode(&["GET", &format!("k{i}")]));
    }
    c.send_raw(&req).expect("send");
    for i in 0..1000 {
        assert_eq!(c.read_reply().expect("reply").raw, b"+OK\r\n");
        let v = i.to_string();
        let want = format!("${}\r\n{v}\r\n", v.len());
        assert_eq!(c.read_reply().expect("reply").raw, want.as_bytes());
    }
}
