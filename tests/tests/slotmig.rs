//! Atomic slot migration (Valkey 9's CLUSTER MIGRATESLOTS) between
//! datanodes: whole slot ranges move as a snapshot plus the writes made
//! meanwhile, clients see one MOVED and never ASK or TRYAGAIN, and a
//! cancel or a dead target leaves everything with the source.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use slotkv_tests::cluster::{key_slot, Checker, Cluster};
use slotkv_tests::{wait_until, Conn, Server};

const TIMEOUT_MS: u64 = 5000;

/// The values that follow `key` in each map of a GETSLOTMIGRATIONS reply
/// (RESP2: flat arrays of bulk keys and bulk or integer values).
fn fields(raw: &str, key: &str) -> Vec<String> {
    let lines: Vec<&str> = raw.split("\r\n").collect();
    let mut out = Vec::new();
    for i in 0..lines.len() {
        if lines[i] == key && i > 0 && lines[i - 1].starts_with('$') {
            match lines.get(i + 1) {
                Some(l) if l.starts_with(':') => out.push(l[1..].to_string()),
                Some(l) if l.starts_with('$') => {
                    out.push(lines.get(i + 2).unwrap_or(&"").to_string())
                }
                _ => {}
            }
        }
    }
    out
}

/// `CLUSTER MIGRATESLOTS SLOTSRANGE a b NODE <to's id>` on node `from`;
/// returns the reply.
fn migrate_slots(c: &Cluster, from: usize, range: (u16, u16), to: usize) -> String {
    let (s, e, tid) = (range.0.to_string(), range.1.to_string(), c.myid(to));
    c.nodes[from].conn().text(&[
        "CLUSTER",
        "MIGRATESLOTS",
        "SLOTSRANGE",
        &s,
        &e,
        "NODE",
        &tid,
    ])
}

fn migrations(c: &Cluster, i: usize) -> String {
    c.nodes[i].conn().text(&["CLUSTER", "GETSLOTMIGRATIONS"])
}

/// Waits for the newest job on node `i` to end; returns (state, message).
fn wait_done(c: &Cluster, i: usize, limit: Duration) -> (String, String) {
    let mut last = String::new();
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        last = migrations(c, i);
        let st = fields(&last, "state");
        if let Some(s) = st.first() {
            if ["success", "failed", "cancelled"].contains(&s.as_str()) {
                let msg = fields(&last, "message")
                    .first()
                    .cloned()
                    .unwrap_or_default();
                return (s.clone(), msg);
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let all: Vec<String> = (0..c.nodes.len())
        .map(|j| {
            let m = migrations(c, j);
            format!(
                "node {j}: {:?} {:?}",
                fields(&m, "operation"),
                fields(&m, "state")
            )
        })
        .collect();
    panic!("the migration did not end:\n{last}\n{all:#?}");
}

fn master_of_slot(c: &Cluster, slot: u16) -> usize {
    let owner = c.slot_ports(0);
    (0..c.nodes.len())
        .find(|&i| c.nodes[i].port == owner[slot as usize])
        .expect("an owner")
}

/// A client running `MULTI; INCR {tag}a; INCR {tag}b; EXEC` in a loop on
/// raw connections, following MOVED by hand; it records every error reply
/// it sees and how many transactions went through.
struct TxnClient {
    stop: Arc<AtomicBool>,
    handle: Option<std::thread::JoinHandle<(u64, Vec<String>, u16)>>,
}

impl TxnClient {
    fn start(port: u16, tag: &'static str) -> TxnClient {
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let handle = std::thread::spawn(move || {
            let (ka, kb) = (format!("{{{tag}}}a"), format!("{{{tag}}}b"));
            let mut port = port;
            let mut conn = Conn::connect(port).expect("connect");
            let mut done = 0u64;
            let mut errors = Vec::new();
            while !s.load(Ordering::Relaxed) {
                let replies: Vec<String> = [
                    vec!["MULTI"],
                    vec!["INCR", ka.as_str()],
                    vec!["INCR", kb.as_str()],
                    vec!["EXEC"],
                ]
                .iter()
                .map(|a| conn.text(a))
                .collect();
                let exec = &replies[3];
                if exec.starts_with('*') {
                    done += 1;
                    continue;
                }
                let errs: Vec<&String> = replies.iter().filter(|r| r.starts_with('-')).collect();
                errors.extend(errs.iter().map(|e| e.trim_end().to_string()));
                if let Some(m) = errs.iter().find(|e| e.starts_with("-MOVED")) {
                    if let Some(p) = m.trim_end().rsplit(':').next().and_then(|p| p.parse().ok()) {
                        port = p;
                        conn = Conn::connect(port).expect("connect to the new owner");
                    }
                } else if errors.len() > 1000 {
                    break;
                }
            }
            (done, errors, port)
        });
        TxnClient {
            stop,
            handle: Some(handle),
        }
    }

    fn finish(mut self) -> (u64, Vec<String>, u16) {
        self.stop.store(true, Ordering::Relaxed);
        self.handle
            .take()
            .expect("running")
            .join()
            .expect("the client thread")
    }
}

impl Drop for TxnClient {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// The first `n` slots node `i` owns, as one range.
fn first_slots(c: &Cluster, i: usize, n: u16) -> (u16, u16) {
    let owner = c.slot_ports(0);
    let first = (0..16384u16)
        .find(|&s| owner[s as usize] == c.nodes[i].port)
        .expect("a slot");
    (first, first + n - 1)
}

/// A tag whose slot lies in `range`.
fn tag_in(range: (u16, u16)) -> &'static str {
    let t = (0..100_000)
        .map(|i| format!("m{i}"))
        .find(|t| (range.0..=range.1).contains(&key_slot(t.as_bytes())))
        .expect("a tag");
    Box::leak(t.into_boxed_str())
}

#[test]
fn migrating_1000_slots_loses_no_write_and_clients_see_one_moved() {
    let c = Cluster::start(&[Server::Datanode; 6], TIMEOUT_MS, &[]);
    c.create(1);
    c.wait_ok(Duration::from_secs(30));
    let keys = c.fill("a", 200_000);
    let range = first_slots(&c, 0, 1000);
    let from = master_of_slot(&c, range.0);
    let owner = c.slot_ports(0);
    let to = (0..c.nodes.len())
        .find(|&i| c.nodes[i].port != c.nodes[from].port && owner.contains(&c.nodes[i].port))
        .expect("another master");
    let tag = tag_in(range);
    let txn = TxnClient::start(c.nodes[from].port, tag);
    let checker = Checker::start(
        env!("CARGO_BIN_EXE_consistency-check"),
        c.nodes[from].port,
        8,
        true,
    );
    std::thread::sleep(Duration::from_millis(1500));
    let t0 = Instant::now();
    assert_eq!(migrate_slots(&c, from, range, to), "+OK\r\n");
    let (state, msg) = wait_done(&c, from, Duration::from_secs(120));
    let took = t0.elapsed();
    assert_eq!(
        (state.as_str(), msg.as_str()),
        ("success", ""),
        "{}",
        migrations(&c, from)
    );
    // The target's job succeeded too, and reports what it received.
    let on_target = migrations(&c, to);
    assert_eq!(fields(&on_target, "state"), ["success"], "{on_target}");
    assert_eq!(fields(&on_target, "operation"), ["IMPORT"]);
    let moved_keys: u64 = fields(&migrations(&c, from), "keys_transferred")[0]
        .parse()
        .unwrap_or(0);
    assert!(moved_keys >= 10_000, "{moved_keys} keys sent");
    let (ok, nums, text) = checker.finish();
    assert!(ok, "the checker lost writes:\n{text}");
    assert_eq!((nums[1], nums[3], nums[4]), (0, 0, 0), "{text}");
    let (done, errors, port) = txn.finish();
    assert_eq!(port, c.nodes[to].port, "the client ended on the target");
    assert!(done > 10, "{done} transactions");
    // One transaction refused (its two commands MOVED, so EXEC aborts),
    // and no ASK or TRYAGAIN ever.
    assert!(
        errors
            .iter()
            .all(|e| e.starts_with("-MOVED") || e.starts_with("-EXECABORT")),
        "errors seen: {errors:?}"
    );
    assert!(errors.len() <= 3, "{errors:?}");
    let mut t = c.nodes[to].conn();
    let (a, b) = (
        t.text(&["GET", &format!("{{{tag}}}a")]),
        t.text(&["GET", &format!("{{{tag}}}b")]),
    );
    assert_eq!(a, b, "the transaction's keys agree");
    assert_eq!(a, format!("${}\r\n{done}\r\n", done.to_string().len()));
    // Every node routes the slots to the target; nothing is left behind.
    wait_until(Duration::from_secs(20), "all nodes agree", || {
        (0..c.nodes.len()).all(|i| {
            let o = c.slot_ports(i);
            (range.0..=range.1).all(|s| o[s as usize] == c.nodes[to].port)
        })
    });
    c.assert_clean(from);
    let total = c.total_keys();
    assert!((200_002..=200_002 + 200).contains(&total), "{total} keys");
    let in_range = keys
        .iter()
        .filter(|k| (range.0..=range.1).contains(&key_slot(k.as_bytes())))
        .count();
    let countkeys = |i: usize| -> usize {
        (range.0..=range.1)
            .map(|s| {
                c.nodes[i]
                    .conn()
                    .text(&["CLUSTER", "COUNTKEYSINSLOT", &s.to_string()])
                    .trim_start_matches(':')
                    .trim()
                    .parse::<usize>()
                    .unwrap_or(0)
            })
            .sum()
    };
    assert_eq!(countkeys(from), 0, "the source dropped the moved keys");
    assert!(countkeys(to) >= in_range, "the target has them all");
    eprintln!("moved {in_range} keys in {took:?}");
}

fn count_in(c: &Cluster, i: usize, range: (u16, u16)) -> usize {
    let mut conn = c.nodes[i].conn();
    (range.0..=range.1)
        .map(|s| {
            conn.text(&["CLUSTER", "COUNTKEYSINSLOT", &s.to_string()])
                .trim_start_matches(':')
                .trim()
                .parse::<usize>()
                .unwrap_or(0)
        })
        .sum()
}

fn dbsize(c: &Cluster, i: usize) -> usize {
    c.nodes[i]
        .conn()
        .text(&["DBSIZE"])
        .trim_start_matches(':')
        .trim()
        .parse()
        .unwrap_or(0)
}

/// A migration of `from`'s first 1000 slots to `to`, slowed down (5 ms
/// per key in the snapshot) and caught with part of the keys on
/// the target. Returns the range.
fn start_slow_migration(c: &Cluster, from: usize, to: usize) -> (u16, u16) {
    let range = first_slots(c, from, 1000);
    let mut src = c.nodes[from].conn();
    assert_eq!(
        src.text(&["CONFIG", "SET", "rdb-key-save-delay", "5000"]),
        "+OK\r\n"
    );
    assert_eq!(migrate_slots(c, from, range, to), "+OK\r\n");
    wait_until(Duration::from_secs(20), "keys arrive on the target", || {
        fields(&migrations(c, to), "state") == ["receiving-snapshot"] && count_in(c, to, range) > 50
    });
    range
}

#[test]
fn a_cancelled_migration_leaves_everything_with_the_source() {
    let c = Cluster::start(&[Server::Datanode; 6], TIMEOUT_MS, &[]);
    c.create(1);
    c.wait_ok(Duration::from_secs(30));
    c.fill("c", 50_000);
    // Replicas in sync first: a full sync would hold the snapshot back.
    wait_until(Duration::from_secs(60), "replicas in sync", || {
        (0..6).all(|i| {
            c.info_field(i, &["INFO", "replication"], "role").as_deref() == Some("master")
                || c.info_field(i, &["INFO", "replication"], "master_link_status")
                    .as_deref()
                    == Some("up")
        }) && c.total_keys() == 50_000
            && (0..6).map(|i| dbsize(&c, i)).sum::<usize>() == 100_000
    });
    let owner = c.slot_ports(0);
    let (from, to) = (master_of_slot(&c, 0), master_of_slot(&c, 16383));
    assert_ne!(owner[0], owner[16383]);
    let replica_of = |m: usize| {
        let id = c.myid(m);
        (0..c.nodes.len())
            .find(|&i| {
                c.nodes_of(i)
                    .iter()
                    .any(|l| l.contains("myself,slave") && l.contains(&id))
            })
            .expect("a replica")
    };
    let target_replica = replica_of(to);
    let target_keys = dbsize(&c, to);
    let range = start_slow_migration(&c, from, to);
    // Received but hidden: not in DBSIZE, SCAN or KEYS, on the target and
    // on its replica; clients are sent to the source.
    let held = count_in(&c, to, range);
    assert!(held > 50, "{held}");
    assert_eq!(dbsize(&c, to), target_keys);
    let keys_reply = c.nodes[to].conn().text(&["KEYS", "*"]);
    assert_eq!(
        keys_reply.lines().count(),
        1 + 2 * target_keys,
        "KEYS shows hidden keys"
    );
    wait_until(
        Duration::from_secs(10),
        "the replica hides them too",
        || count_in(&c, target_replica, range) > 0,
    );
    assert_eq!(dbsize(&c, target_replica), target_keys);
    let key_in_range = (0..50_000)
        .map(|i| format!("c:{i}"))
        .find(|k| (range.0..=range.1).contains(&key_slot(k.as_bytes())))
        .expect("a key");
    let moved = c.nodes[to].conn().text(&["GET", &key_in_range]);
    assert!(
        moved.starts_with(&format!(
            "-MOVED {} 127.0.0.1:{}",
            key_slot(key_in_range.as_bytes()),
            c.nodes[from].port
        )),
        "{moved}"
    );
    let mut src = c.nodes[from].conn();
    // Legacy resharding and a second job on these slots are refused
    // meanwhile.
    assert_eq!(
        src.text(&["CLUSTER", "SETSLOT", "0", "STABLE"]),
        "-ERR Slot export in progress.\r\n"
    );
    assert_eq!(
        c.nodes[to]
            .conn()
            .text(&["CLUSTER", "SETSLOT", "0", "STABLE"]),
        "-ERR Slot import in progress.\r\n"
    );
    assert_eq!(
        migrate_slots(&c, from, (range.0, range.0), to),
        format!("-ERR I am already migrating slot {}.\r\n", range.0)
    );
    // Cancel on the source.
    assert_eq!(src.text(&["CLUSTER", "CANCELSLOTMIGRATIONS"]), "+OK\r\n");
    let (state, msg) = wait_done(&c, from, Duration::from_secs(20));
    assert_eq!((state.as_str(), msg.as_str()), ("cancelled", ""));
    let (state, msg) = wait_done(&c, to, Duration::from_secs(20));
    assert_eq!(
        (state.as_str(), msg.as_str()),
        (
            "failed",
            "Connection lost to source. Check CLUSTER GETSLOTMIGRATIONS on the source node for more information."
        )
    );
    assert_eq!(
        src.text(&["CLUSTER", "CANCELSLOTMIGRATIONS"]),
        "-ERR No migrations ongoing\r\n"
    );
    // What the target received is gone (right after the job is marked
    // failed), there and on its replica.
    wait_until(Duration::from_secs(10), "the target drops them", || {
        count_in(&c, to, range) == 0
    });
    wait_until(Duration::from_secs(10), "the replica drops them", || {
        count_in(&c, target_replica, range) == 0
    });
    assert_eq!(dbsize(&c, to), target_keys);
    assert_eq!(c.total_keys(), 50_000);
    c.assert_clean(from);
    // The source still serves the slots, and writes are not paused.
    assert_eq!(src.text(&["SET", &key_in_range, "after"]), "+OK\r\n");
    // The same slots can move again, all of them this time.
    assert_eq!(
        src.text(&["CONFIG", "SET", "rdb-key-save-delay", "0"]),
        "+OK\r\n"
    );
    assert_eq!(migrate_slots(&c, from, range, to), "+OK\r\n");
    let (state, _) = wait_done(&c, from, Duration::from_secs(60));
    assert_eq!(state, "success");
    wait_until(
        Duration::from_secs(20),
        "the moved keys show on the target",
        || dbsize(&c, to) == target_keys + held.max(count_in(&c, to, range)),
    );
    assert_eq!(c.total_keys(), 50_000);
    assert_eq!(
        c.nodes[to].conn().text(&["GET", &key_in_range]),
        "$5\r\nafter\r\n"
    );
}

#[test]
fn a_target_killed_mid_migration_leaves_everything_with_the_source() {
    let mut c = Cluster::start(&[Server::Datanode; 3], TIMEOUT_MS, &[]);
    c.create(0);
    c.wait_ok(Duration::from_secs(30));
    c.fill("k", 50_000);
    let (from, to) = (master_of_slot(&c, 0), master_of_slot(&c, 16383));
    let target_keys = dbsize(&c, to);
    let range = start_slow_migration(&c, from, to);
    c.nodes[to].signal_and_wait("-KILL");
    let (state, msg) = wait_done(&c, from, Duration::from_secs(30));
    assert_eq!(
        (state.as_str(), msg.as_str()),
        (
            "failed",
            "Connection lost to target. Check CLUSTER GETSLOTMIGRATIONS on the target node for more information."
        )
    );
    // Back from its AOF, the target drops the import it never finished.
    c.nodes[to].restart();
    c.wait_ok(Duration::from_secs(30));
    assert_eq!(count_in(&c, to, range), 0);
    assert_eq!(dbsize(&c, to), target_keys);
    assert_eq!(c.total_keys(), 50_000);
    c.assert_clean(from);
    let mut src = c.nodes[from].conn();
    let k = (0..50_000)
        .map(|i| format!("k:{i}"))
        .find(|k| (range.0..=range.1).contains(&key_slot(k.as_bytes())))
        .expect("a key");
    assert_eq!(src.text(&["SET", &k, "still-here"]), "+OK\r\n");
}

/// Without an AOF, a target restarted from an RDB saved halfway through
/// an import drops the partial keys: the file names the slots the import
/// had hidden.
#[test]
fn a_target_restarted_from_an_rdb_saved_mid_import_drops_it() {
    let mut c = Cluster::start(&[Server::Datanode; 3], TIMEOUT_MS, &["--appendonly", "no"]);
    c.create(0);
    c.wait_ok(Duration::from_secs(30));
    c.fill("r", 50_000);
    let (from, to) = (master_of_slot(&c, 0), master_of_slot(&c, 16383));
    let target_keys = dbsize(&c, to);
    let range = start_slow_migration(&c, from, to);
    assert_eq!(c.nodes[to].conn().text(&["SAVE"]), "+OK\r\n");
    assert!(count_in(&c, to, range) > 0);
    c.nodes[to].signal_and_wait("-KILL");
    let (state, _) = wait_done(&c, from, Duration::from_secs(30));
    assert_eq!(state, "failed");
    c.nodes[to].restart();
    c.wait_ok(Duration::from_secs(30));
    assert_eq!(count_in(&c, to, range), 0);
    assert_eq!(dbsize(&c, to), target_keys);
    assert_eq!(c.total_keys(), 50_000);
    c.assert_clean(from);
}

/// MIGRATESLOTS and SYNCSLOTS refuse bad input with Valkey 9.0's errors,
/// and nothing starts.
#[test]
fn bad_input_gets_valkeys_errors() {
    let c = Cluster::start(&[Server::Datanode; 3], TIMEOUT_MS, &[]);
    c.create(0);
    c.wait_ok(Duration::from_secs(30));
    let m0 = master_of_slot(&c, 0);
    let other = master_of_slot(&c, 16383);
    let (me, them) = (c.myid(m0), c.myid(other));
    let mut conn = c.nodes[m0].conn();
    let unknown = "a".repeat(40);
    let cases: Vec<(Vec<&str>, String)> = vec![
        (
            vec!["MIGRATESLOTS"],
            "ERR wrong number of arguments for 'cluster|migrateslots' command".into(),
        ),
        (
            vec!["MIGRATESLOTS", "SLOTSRANGE"],
            "ERR wrong number of arguments for 'cluster|migrateslots' command".into(),
        ),
        (
            vec!["CANCELSLOTMIGRATIONS", "ARG"],
            "ERR wrong number of arguments for 'cluster|cancelslotmigrations' command".into(),
        ),
        (
            vec!["GETSLOTMIGRATIONS", "ARG"],
            "ERR wrong number of arguments for 'cluster|getslotmigrations' command".into(),
        ),
        (
            vec!["MIGRATESLOTS", "INVALID", "0", "1"],
            "ERR syntax error".into(),
        ),
        (
            vec!["MIGRATESLOTS", "SLOTSRANGE", "0", "a", "NODE", &them],
            "ERR Invalid or out of range slot".into(),
        ),
        (
            vec!["MIGRATESLOTS", "SLOTSRANGE", "0", "16384", "NODE", &them],
            "ERR Invalid or out of range slot".into(),
        ),
        (
            vec!["MIGRATESLOTS", "SLOTSRANGE", "a", "0"],
            "ERR No slot ranges specified".into(),
        ),
        (
            vec!["MIGRATESLOTS", "SLOTSRANGE", "0"],
            "ERR No end slot for final slot range".into(),
        ),
        (
            vec!["MIGRATESLOTS", "SLOTSRANGE", "5", "3", "NODE", &them],
            "ERR Start slot number 5 is greater than end slot number 3.".into(),
        ),
        (
            vec![
                "MIGRATESLOTS",
                "SLOTSRANGE",
                "0",
                "5",
                "3",
                "6",
                "NODE",
                &them,
            ],
            "ERR Slot range 3-6 overlaps with previous range 0-5.".into(),
        ),
        (
            vec!["MIGRATESLOTS", "SLOTSRANGE", "0", "16383", "NODE", &them],
            "ERR Requested slots span multiple shards".into(),
        ),
        (
            vec![
                "MIGRATESLOTS",
                "SLOTSRANGE",
                "16383",
                "16383",
                "NODE",
                &them,
            ],
            "ERR Slots are not served by this node.".into(),
        ),
        (
            vec!["MIGRATESLOTS", "SLOTSRANGE", "0", "0"],
            "ERR syntax error".into(),
        ),
        (
            vec!["MIGRATESLOTS", "SLOTSRANGE", "0", "0", "NODE"],
            "ERR syntax error".into(),
        ),
        (
            vec!["MIGRATESLOTS", "SLOTSRANGE", "0", "0", "NODE", "abc"],
            "ERR Invalid node name: abc".into(),
        ),
        (
            vec!["MIGRATESLOTS", "SLOTSRANGE", "0", "0", "NODE", &unknown],
            format!("ERR Unknown node name: {unknown}"),
        ),
        (
            vec!["MIGRATESLOTS", "SLOTSRANGE", "0", "0", "NODE", &me],
            "ERR Target node can not be this node.".into(),
        ),
        (
            vec![
                "MIGRATESLOTS",
                "SLOTSRANGE",
                "0",
                "9",
                "NODE",
                &them,
                "SLOTSRANGE",
                "5",
                "20",
                "NODE",
                &them,
            ],
            "ERR Slot ranges in migrations overlap".into(),
        ),
        (
            vec!["CANCELSLOTMIGRATIONS"],
            "ERR No migrations ongoing".into(),
        ),
        (
            vec!["SYNCSLOTS", "ACK"],
            "ERR CLUSTER SYNCSLOTS ACK should only be used by slot migration clients".into(),
        ),
        (
            vec!["SYNCSLOTS", "REQUEST-PAUSE"],
            "ERR CLUSTER SYNCSLOTS REQUEST-PAUSE should only be used by slot migration clients"
                .into(),
        ),
        (vec!["SYNCSLOTS", "NOPE"], "ERR syntax error".into()),
        (
            vec!["SYNCSLOTS", "FINISH", "STATE", "SUCCESS", "NAME", &unknown],
            "ERR No such slot migration job".into(),
        ),
        (
            vec![
                "SYNCSLOTS",
                "ESTABLISH",
                "SOURCE",
                &me,
                "NAME",
                &unknown,
                "SLOTSRANGE",
                "0",
                "0",
            ],
            "ERR Source node is target node itself".into(),
        ),
        (
            vec![
                "SYNCSLOTS",
                "ESTABLISH",
                "SOURCE",
                &unknown,
                "NAME",
                &unknown,
                "SLOTSRANGE",
                "0",
                "0",
            ],
            "ERR Target node does not know the source node".into(),
        ),
        (
            vec![
                "SYNCSLOTS",
                "ESTABLISH",
                "SOURCE",
                &them,
                "NAME",
                &unknown,
                "SLOTSRANGE",
                "0",
                "0",
            ],
            "ERR Target node does not agree about current slot ownership".into(),
        ),
        (
            vec![
                "SYNCSLOTS",
                "ESTABLISH",
                "NAME",
                &unknown,
                "SLOTSRANGE",
                "0",
                "0",
            ],
            "ERR syntax error".into(),
        ),
        (
            vec![
                "SYNCSLOTS",
                "ESTABLISH",
                "SOURCE",
                "short",
                "NAME",
                &unknown,
                "SLOTSRANGE",
                "0",
                "0",
            ],
            "ERR syntax error".into(),
        ),
    ];
    for (args, want) in cases {
        let mut full = vec!["CLUSTER"];
        full.extend(args.iter());
        assert_eq!(conn.text(&full), format!("-{want}\r\n"), "{full:?}");
    }
    // Legacy migration state on a slot blocks atomic migration.
    assert_eq!(
        conn.text(&["CLUSTER", "SETSLOT", "0", "MIGRATING", &them]),
        "+OK\r\n"
    );
    assert_eq!(
        conn.text(&[
            "CLUSTER",
            "MIGRATESLOTS",
            "SLOTSRANGE",
            "1",
            "1",
            "NODE",
            &them
        ]),
        "-ERR Slots are being manually migrated\r\n"
    );
    assert_eq!(conn.text(&["CLUSTER", "SETSLOT", "0", "STABLE"]), "+OK\r\n");
    // A slot nobody serves.
    assert_eq!(conn.text(&["CLUSTER", "DELSLOTS", "7"]), "+OK\r\n");
    assert_eq!(
        conn.text(&[
            "CLUSTER",
            "MIGRATESLOTS",
            "SLOTSRANGE",
            "7",
            "7",
            "NODE",
            &them
        ]),
        "-ERR Slot 7 has no node served.\r\n"
    );
    assert_eq!(conn.text(&["CLUSTER", "ADDSLOTS", "7"]), "+OK\r\n");
    // No job was made by any of it.
    assert_eq!(migrations(&c, m0), "*0\r\n");
    // RESP3: each job is a map.
    assert_eq!(
        conn.text(&[
            "CLUSTER",
            "MIGRATESLOTS",
            "SLOTSRANGE",
            "1",
            "2",
            "NODE",
            &them
        ]),
        "+OK\r\n"
    );
    let (state, _) = wait_done(&c, m0, Duration::from_secs(30));
    assert_eq!(state, "success");
    conn.text(&["HELLO", "3"]);
    let r3 = conn.text(&["CLUSTER", "GETSLOTMIGRATIONS"]);
    assert!(r3.starts_with("*1\r\n%13\r\n$4\r\nname\r\n$40\r\n"), "{r3}");
    assert!(r3.contains("$11\r\nslot_ranges\r\n$3\r\n1-2\r\n"), "{r3}");
    c.assert_clean(m0);
}

/// Toward redis-server, which has no SYNCSLOTS, the job fails at the
/// handshake with the target's own error, and the slots stay put.
#[test]
fn toward_redis_server_the_job_fails_with_the_targets_error() {
    let c = Cluster::start(
        &[Server::Datanode, Server::Redis, Server::Redis],
        TIMEOUT_MS,
        &[],
    );
    c.create(0);
    c.wait_ok(Duration::from_secs(30));
    let owner = c.slot_ports(0);
    // Node 0 is the datanode; every node is a master.
    let d = 0;
    let r = (1..3)
        .find(|&i| owner.contains(&c.nodes[i].port))
        .expect("a redis-server master");
    let range = first_slots(&c, d, 10);
    assert_eq!(migrate_slots(&c, d, range, r), "+OK\r\n");
    let (state, msg) = wait_done(&c, d, Duration::from_secs(30));
    assert_eq!(state, "failed");
    assert!(
        msg.starts_with("Received error during handshake to target: -ERR unknown subcommand")
            && msg.contains("SYNCSLOTS"),
        "{msg}"
    );
    c.assert_clean(d);
    assert_eq!(c.slot_ports(d)[range.0 as usize], c.nodes[d].port);
}

/// With several worker threads, a write may pass its pause check just
/// before the handoff's pause begins and run after it. The source waits
/// for such writes before it says PAUSED: the write reaches the target,
/// and the client's OK is not a lost write. (A debug hook holds the write
/// in that window for 400 ms.)
#[test]
fn a_write_admitted_just_before_the_pause_reaches_the_target() {
    let c = Cluster::start(
        &[Server::Datanode; 3],
        TIMEOUT_MS,
        &["--io-threads", "4", "--enable-debug-command", "yes"],
    );
    c.create(0);
    c.wait_ok(Duration::from_secs(30));
    let (from, to) = (master_of_slot(&c, 0), master_of_slot(&c, 16383));
    let range = first_slots(&c, from, 10);
    let tag = tag_in(range);
    let mut src = c.nodes[from].conn();
    assert_eq!(src.text(&["SET", &format!("{{{tag}}}:a"), "1"]), "+OK\r\n");
    assert_eq!(
        src.text(&["DEBUG", "WRITE-ADMISSION-DELAY", "400000"]),
        "+OK\r\n"
    );
    let port = c.nodes[from].port;
    let key = format!("{{{tag}}}:late");
    let k = key.clone();
    let writer =
        std::thread::spawn(move || Conn::connect(port).expect("conn").text(&["SET", &k, "v"]));
    wait_until(Duration::from_secs(5), "the write is admitted", || {
        src.text(&["DEBUG", "WRITES-IN-FLIGHT"]) == ":1\r\n"
    });
    assert_eq!(migrate_slots(&c, from, range, to), "+OK\r\n");
    let (state, msg) = wait_done(&c, from, Duration::from_secs(30));
    assert_eq!((state.as_str(), msg.as_str()), ("success", ""));
    assert_eq!(writer.join().expect("writer"), "+OK\r\n");
    assert_eq!(
        src.text(&["DEBUG", "WRITE-ADMISSION-DELAY", "0"]),
        "+OK\r\n"
    );
    let mut dst = c.nodes[to].conn();
    assert_eq!(
        dst.text(&["GET", &key]),
        "$1\r\nv\r\n",
        "the acknowledged write was lost"
    );
    assert_eq!(count_in(&c, to, range), 2);
    wait_until(
        Duration::from_secs(10),
        "the source drops the moved keys",
        || count_in(&c, from, range) == 0,
    );
}
