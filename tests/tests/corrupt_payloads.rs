//! Corrupt packed values (ziplists, listpacks, intsets) and empty
//! collections, in RESTORE payloads and RDB files: refused, skipped and
//! logged as redis-server 7.0 refuses, skips and logs them. The payloads
//! are built here, each with one fault, and carry valid checksums so the
//! decoder itself must find the fault.

use slotkv_tests::{Node, Server};

fn crc64(b: &[u8]) -> u64 {
    crc::Crc::<u64>::new(&crc::CRC_64_REDIS).checksum(b)
}

/// An RDB length (6-, 14- or 32-bit form).
fn rdb_len(out: &mut Vec<u8>, n: usize) {
    if n < 64 {
        out.push(n as u8);
    } else if n < 16384 {
        out.push(0x40 | (n >> 8) as u8);
        out.push(n as u8);
    } else {
        out.push(0x80);
        out.extend_from_slice(&(n as u32).to_be_bytes());
    }
}

fn rdb_string(out: &mut Vec<u8>, b: &[u8]) {
    rdb_len(out, b.len());
    out.extend_from_slice(b);
}

/// A ziplist of short strings, with its header's tail offset and count.
fn ziplist(entries: &[&str]) -> Vec<u8> {
    let mut body = Vec::new();
    let (mut prev, mut tail) = (0usize, 10usize);
    for e in entries {
        tail = 10 + body.len();
        body.push(prev as u8);
        body.push(e.len() as u8);
        body.extend_from_slice(e.as_bytes());
        prev = 2 + e.len();
    }
    let mut z = Vec::new();
    z.extend_from_slice(&((10 + body.len() + 1) as u32).to_le_bytes());
    z.extend_from_slice(&(tail as u32).to_le_bytes());
    z.extend_from_slice(&(entries.len() as u16).to_le_bytes());
    z.extend_from_slice(&body);
    z.push(0xFF);
    z
}

/// A listpack of short strings (each with its one-byte back-length).
fn listpack(entries: &[&str]) -> Vec<u8> {
    let mut body = Vec::new();
    for e in entries {
        body.push(0x80 | e.len() as u8);
        body.extend_from_slice(e.as_bytes());
        body.push(1 + e.len() as u8);
    }
    let mut lp = Vec::new();
    lp.extend_from_slice(&((6 + body.len() + 1) as u32).to_le_bytes());
    lp.extend_from_slice(&(entries.len() as u16).to_le_bytes());
    lp.extend_from_slice(&body);
    lp.push(0xFF);
    lp
}

/// An intset of 16-bit members, in the order given.
fn intset(members: &[i16]) -> Vec<u8> {
    let mut s = Vec::new();
    s.extend_from_slice(&2u32.to_le_bytes());
    s.extend_from_slice(&(members.len() as u32).to_le_bytes());
    for m in members {
        s.extend_from_slice(&m.to_le_bytes());
    }
    s
}

/// A value of RDB type `t` whose body is one packed container.
fn packed(t: u8, container: &[u8]) -> Vec<u8> {
    let mut v = vec![t];
    rdb_string(&mut v, container);
    v
}

/// A quicklist (type 14, ziplist nodes; 18, listpack nodes) of one node.
fn quicklist(t: u8, node: &[u8]) -> Vec<u8> {
    let mut v = vec![t, 1];
    if t == 18 {
        v.push(2); // a packed node
    }
    rdb_string(&mut v, node);
    v
}

/// A DUMP payload: the value, RDB version 10, the CRC-64 of both.
fn payload(value: &[u8]) -> Vec<u8> {
    let mut p = value.to_vec();
    p.extend_from_slice(&10u16.to_le_bytes());
    let crc = crc64(&p);
    p.extend_from_slice(&crc.to_le_bytes());
    p
}

const HASH_ZIPLIST: u8 = 13;
const LIST_ZIPLIST: u8 = 10;
const LIST_QUICKLIST: u8 = 14;
const LIST_QUICKLIST_2: u8 = 18;
const HASH_LISTPACK: u8 = 16;
const ZSET_LISTPACK: u8 = 17;
const SET_INTSET: u8 = 11;

/// (what, sanitize-dump-payload, value, the words both logs must hold).
fn cases() -> Vec<(&'static str, &'static str, Vec<u8>, Option<&'static str>)> {
    let zl = ziplist(&["a", "b", "c", "d"]);
    let mut zl_prevlen = zl.clone();
    zl_prevlen[10 + 3] = 7; // the second entry's stated previous size
    let mut zl_count = zl.clone();
    zl_count[8] = 5;
    let mut zl_tail = zl.clone();
    zl_tail[4] = 12;
    let lp = listpack(&["a", "1.5", "b", "2"]);
    let mut lp_count = lp.clone();
    lp_count[4] = 3;
    let mut lp_backlen = lp.clone();
    lp_backlen[6 + 2] = 9; // "a"'s back-length
    vec![
        (
            "a valid hash ziplist",
            "no",
            packed(HASH_ZIPLIST, &zl),
            None,
        ),
        (
            "a hash ziplist with a field twice",
            "no",
            packed(HASH_ZIPLIST, &ziplist(&["a", "1", "a", "2"])),
            Some("Hash ziplist integrity check failed."),
        ),
        (
            "a quicklist node whose entry misstates its predecessor",
            "no",
            quicklist(LIST_QUICKLIST, &zl_prevlen),
            Some("Ziplist integrity check failed."),
        ),
        (
            "a quicklist node with a wrong count",
            "no",
            quicklist(LIST_QUICKLIST, &zl_count),
            Some("Ziplist integrity check failed."),
        ),
        (
            "a list ziplist with a wrong tail",
            "no",
            packed(LIST_ZIPLIST, &zl_tail),
            Some("List ziplist integrity check failed."),
        ),
        (
            "a valid zset listpack",
            "yes",
            packed(ZSET_LISTPACK, &lp),
            None,
        ),
        (
            "a zset listpack with a wrong count",
            "yes",
            packed(ZSET_LISTPACK, &lp_count),
            Some("Zset listpack integrity check failed."),
        ),
        (
            "a hash listpack with a field twice",
            "yes",
            packed(HASH_LISTPACK, &listpack(&["f", "1", "f", "2"])),
            Some("Hash listpack integrity check failed."),
        ),
        (
            "a list node with a wrong back-length",
            "yes",
            quicklist(LIST_QUICKLIST_2, &lp_backlen),
            Some("Listpack integrity check failed."),
        ),
        (
            "an intset out of order",
            "yes",
            packed(SET_INTSET, &intset(&[3, 1, 2])),
            Some("Intset integrity check failed."),
        ),
        (
            "an empty intset",
            "no",
            packed(SET_INTSET, &intset(&[])),
            Some("Intset integrity check failed."),
        ),
        (
            "an empty hash listpack",
            "no",
            packed(HASH_LISTPACK, &listpack(&[])),
            None,
        ),
        (
            "an empty hash ziplist",
            "no",
            packed(HASH_ZIPLIST, &ziplist(&[])),
            None,
        ),
        ("an empty hash", "yes", vec![4, 0], None),
    ]
}

/// Each payload gets the same reply from both servers (OK for the valid
/// ones, "Bad data format" for the others) and both logs name the fault
/// in Redis's words. Before, datanode took most of these, collapsing
/// repeated fields and ignoring the stated counts and sizes.
#[test]
fn corrupt_packed_values_are_refused_as_redis_refuses_them() {
    let cases = cases();
    let mut replies = Vec::new();
    for kind in [Server::Redis, Server::Datanode] {
        let n = Node::start(kind, &["--loglevel", "verbose", "--save", ""]);
        let mut c = n.conn();
        let mut got = Vec::new();
        for (i, (what, sanitize, value, _)) in cases.iter().enumerate() {
            let set = c.text(&["CONFIG", "SET", "sanitize-dump-payload", sanitize]);
            assert_eq!(set, "+OK\r\n");
            let key = format!("k{i}");
            let cmd: Vec<Vec<u8>> = vec![
                b"RESTORE".to_vec(),
                key.into_bytes(),
                b"0".to_vec(),
                payload(value),
            ];
            let reply = c.cmd(&cmd).expect("reply");
            got.push(format!("{what}: {}", String::from_utf8_lossy(&reply.raw)));
        }
        assert_eq!(c.text(&["PING"]), "+PONG\r\n", "{kind:?}");
        // One line per refused payload: each phrase as often as the
        // cases that expect it.
        let log = n.log();
        for (what, _, _, words) in &cases {
            if let Some(w) = words {
                let want = cases.iter().filter(|c| c.3 == Some(*w)).count();
                let seen = log.matches(w).count();
                assert_eq!(seen, want, "{kind:?}: {what}: {w:?} in the log");
            }
        }
        replies.push(got);
    }
    assert_eq!(replies[0], replies[1], "redis-server, then datanode");
    for (r, (what, _, _, words)) in replies[1].iter().zip(&cases) {
        let valid = words.is_none() && !what.contains("empty");
        let want = if valid {
            "+OK\r\n"
        } else {
            "-ERR Bad data format\r\n"
        };
        assert!(r.ends_with(want), "{r}");
    }
}

/// Where redis-server trusts a packed value's shape without deep checks
/// (`sanitize-dump-payload no`) it takes a repeated field and keeps a
/// broken hash; datanode checks every payload fully and refuses it.
#[test]
fn datanode_refuses_a_repeated_field_even_without_deep_checks() {
    let n = Node::start(Server::Datanode, &["--save", ""]);
    let mut c = n.conn();
    let dup = payload(&packed(HASH_LISTPACK, &listpack(&["f", "1", "f", "2"])));
    let cmd: Vec<Vec<u8>> = vec![b"RESTORE".to_vec(), b"h".to_vec(), b"0".to_vec(), dup];
    let reply = c.cmd(&cmd).expect("reply");
    assert_eq!(reply.raw, b"-ERR Bad data format\r\n");
    assert_eq!(c.text(&["EXISTS", "h"]), ":0\r\n");
}

/// An RDB file: `REDIS0010`, database 0, the records, EOF and CRC-64.
fn rdb_file(records: &[(u8, &str, Vec<u8>)]) -> Vec<u8> {
    let mut f = b"REDIS0010".to_vec();
    f.extend_from_slice(&[0xFE, 0]);
    for (t, key, body) in records {
        f.push(*t);
        rdb_string(&mut f, key.as_bytes());
        f.extend_from_slice(body);
    }
    f.push(0xFF);
    let crc = crc64(&f);
    f.extend_from_slice(&crc.to_le_bytes());
    f
}

/// Puts `file` where a stopped `kind` node loads it and starts it again
/// (`wait`: until it answers).
fn restart_on(kind: Server, file: &[u8], wait: bool) -> Node {
    let mut n = Node::start(kind, &["--save", "", "--appendonly", "no"]);
    n.signal_and_wait("-TERM");
    std::fs::write(n.path().join("dump.rdb"), file).expect("write dump.rdb");
    if wait {
        n.restart();
    } else {
        n.restart_no_wait();
    }
    n
}

/// Keys whose collection has no elements (older Redis versions could
/// write them) are skipped when a file loads, and counted in the log,
/// as redis-server 7.0 does; the rest of the file loads.
#[test]
fn empty_keys_in_an_rdb_file_are_skipped_and_counted() {
    let empties: Vec<(u8, &str, Vec<u8>)> = vec![
        (4, "hash", vec![0]),
        (2, "set", vec![0]),
        (5, "zset", vec![0]),
        (LIST_QUICKLIST_2, "list", vec![0]),
        (HASH_LISTPACK, "hash_lp", {
            let mut v = Vec::new();
            rdb_string(&mut v, &listpack(&[]));
            v
        }),
        (LIST_QUICKLIST, "list_ql", {
            let mut v = vec![1];
            rdb_string(&mut v, &ziplist(&[]));
            v
        }),
    ];
    let mut records = vec![(0u8, "str", vec![1, b'v'])];
    records.extend(empties.iter().cloned());
    let file = rdb_file(&records);
    for kind in [Server::Redis, Server::Datanode] {
        let n = restart_on(kind, &file, true);
        let mut c = n.conn();
        assert_eq!(c.text(&["DBSIZE"]), ":1\r\n", "{kind:?}");
        assert_eq!(c.text(&["GET", "str"]), "$1\r\nv\r\n", "{kind:?}");
        let log = n.log();
        for (_, key, _) in &empties {
            let line = format!("skipping empty key: {key}");
            assert!(log.contains(&line), "{kind:?}: no {line:?} in\n{log}");
        }
        assert!(
            log.contains("keys loaded: 1, keys expired: 0, empty keys skipped: 6."),
            "{kind:?}: {log}"
        );
    }
}

/// A file holding a corrupt value stops the server at start-up with
/// Redis's words for the fault and for the stop.
#[test]
fn a_corrupt_value_in_an_rdb_file_stops_the_server_with_redis_words() {
    let mut body = Vec::new();
    rdb_string(&mut body, &ziplist(&["a", "1", "a", "2"]));
    let file = rdb_file(&[(HASH_ZIPLIST, "h", body)]);
    for kind in [Server::Redis, Server::Datanode] {
        let mut n = restart_on(kind, &file, false);
        let status = n.wait_exit_status();
        assert_eq!(status.and_then(|s| s.code()), Some(1), "{kind:?}");
        let log = n.log();
        for words in [
            "Hash ziplist integrity check failed.",
            "Terminating server after rdb file reading failure.",
        ] {
            assert!(log.contains(words), "{kind:?}: no {words:?} in\n{log}");
        }
    }
}

/// `loglevel` set at run time applies at once: a RESTORE's fault, logged
/// at Redis's verbose level, is absent at `notice` and present once
/// CONFIG SET has lowered the level. (datanode fixed its level at start.)
#[test]
fn config_set_loglevel_changes_what_is_logged() {
    let bad = payload(&packed(HASH_ZIPLIST, &ziplist(&["a", "1", "a", "2"])));
    let words = "Hash ziplist integrity check failed.";
    for kind in [Server::Redis, Server::Datanode] {
        let n = Node::start(kind, &["--save", "", "--loglevel", "notice"]);
        let mut c = n.conn();
        let restore = |c: &mut slotkv_tests::Conn| {
            let cmd: Vec<Vec<u8>> = vec![
                b"RESTORE".to_vec(),
                b"h".to_vec(),
                b"0".to_vec(),
                bad.clone(),
            ];
            c.cmd(&cmd).expect("reply").raw
        };
        assert_eq!(restore(&mut c), b"-ERR Bad data format\r\n");
        assert!(!n.log().contains(words), "{kind:?}: logged at notice");
        assert_eq!(c.text(&["CONFIG", "SET", "loglevel", "verbose"]), "+OK\r\n");
        assert_eq!(restore(&mut c), b"-ERR Bad data format\r\n");
        assert!(n.log().contains(words), "{kind:?}: not logged at verbose");
        assert_eq!(c.text(&["CONFIG", "SET", "loglevel", "warning"]), "+OK\r\n");
        let before = n.log().matches(words).count();
        restore(&mut c);
        assert_eq!(n.log().matches(words).count(), before, "{kind:?}");
    }
}

/// A stream entry's trailing element count (what a backward walk reads)
/// or an element's back-length that does not match: refused under deep
/// checks with Redis's words, as redis-server refuses it. The payload is
/// redis-server's own DUMP with one byte changed.
#[test]
fn a_stream_entry_with_a_wrong_count_is_refused_as_redis_refuses_it() {
    let r = Node::start(Server::Redis, &["--save", ""]);
    let mut rc = r.conn();
    assert!(rc.text(&["XADD", "s", "1-1", "f", "v"]).starts_with('$'));
    let good = match rc.cmd(&["DUMP", "s"]).expect("DUMP").tree {
        slotkv_tests::Reply::Scalar(b'$', p) => p,
        other => panic!("DUMP: {other:?}"),
    };
    // The node's listpack ends with the entry's count (3 + 1 value, as a
    // one-byte integer), its back-length, and the end byte.
    let at = good
        .windows(3)
        .position(|w| w == [0x04, 0x01, 0xFF])
        .expect("the entry's count");
    let with = |i: usize, b: u8| {
        let mut v = good[..good.len() - 10].to_vec();
        v[i] = b;
        payload(&v)
    };
    let bad = [with(at, 0x05), with(at + 1, 0x02)];
    for kind in [Server::Redis, Server::Datanode] {
        let n = Node::start(kind, &["--save", "", "--loglevel", "verbose"]);
        let mut c = n.conn();
        assert_eq!(
            c.text(&["CONFIG", "SET", "sanitize-dump-payload", "yes"]),
            "+OK\r\n"
        );
        let restore = |c: &mut slotkv_tests::Conn, key: &str, p: &[u8]| {
            let cmd: Vec<Vec<u8>> = vec![
                b"RESTORE".to_vec(),
                key.as_bytes().to_vec(),
                b"0".to_vec(),
                p.to_vec(),
            ];
            c.cmd(&cmd).expect("reply").raw
        };
        assert_eq!(restore(&mut c, "ok", &good), b"+OK\r\n", "{kind:?}");
        for (i, p) in bad.iter().enumerate() {
            let reply = restore(&mut c, &format!("bad{i}"), p);
            assert_eq!(reply, b"-ERR Bad data format\r\n", "{kind:?} {i}");
        }
        let log = n.log();
        let words = "Stream listpack integrity check failed.";
        assert_eq!(log.matches(words).count(), 2, "{kind:?}: {log}");
    }
}
