//! Many clients at once: transactions stay atomic and nothing deadlocks,
//! though there is no global lock (each command locks only its slots).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use slotkv_tests::{encode, Conn, Node, Server};

#[test]
fn exec_is_atomic_across_slots_and_incrs_are_not_lost() {
    // Several worker threads, so commands really run in parallel.
    let n = Node::start(
        Server::Datanode,
        &["--save", "", "--appendonly", "yes", "--io-threads", "4"],
    );
    let port = n.port;
    // Both keys exist from the start, so every MGET reply has two values.
    assert_eq!(
        n.conn().text(&["MSET", "x", "init", "y", "init"]),
        "+OK\r\n"
    );
    let stop = Arc::new(AtomicBool::new(false));
    // Readers: MGET x y must never see a half-applied transaction.
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut c = Conn::connect(port).expect("connect");
                let mut checks = 0;
                while !stop.load(Ordering::Relaxed) {
                    let r = c.text(&["MGET", "x", "y"]);
                    let parts: Vec<&str> = r.split("\r\n").collect();
                    assert_eq!(parts.get(2), parts.get(4), "torn transaction seen: {r:?}");
                    checks += 1;
                }
                checks
            })
        })
        .collect();
    // Writers: each transaction sets x and y (different slots) to one value
    // and increments two counters; plain INCRs race with them.
    let writers: Vec<_> = (0..4)
        .map(|w| {
            std::thread::spawn(move || {
                let mut c = Conn::connect(port).expect("connect");
                for i in 0..300 {
                    let v = format!("{w}-{i}");
                    let mut req = Vec::new();
                    req.extend(encode(&["MULTI"]));
                    req.extend(encode(&["SET", "x", &v]));
                    req.extend(encode(&["INCR", "counter:a"]));
                    req.extend(encode(&["SET", "y", &v]));
                    req.extend(encode(&["INCR", "counter:b"]));
                    req.extend(encode(&["EXEC"]));
                    req.extend(encode(&["INCR", "counter:a"]));
                    c.send_raw(&req).expect("send");
                    for _ in 0..7 {
                        c.read_reply().expect("reply");
                    }
                }
            })
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    for w in writers {
        w.join().expect("writer");
    }
    assert!(Instant::now() < deadline, "too slow: deadlock?");
    stop.store(true, Ordering::Relaxed);
    for r in readers {
        assert!(r.join().expect("reader") > 0);
    }
    let mut c = n.conn();
    assert_eq!(c.text(&["GET", "counter:a"]), "$4\r\n2400\r\n");
    assert_eq!(c.text(&["GET", "counter:b"]), "$4\r\n1200\r\n");
}

#[test]
fn bgsave_and_debug_inside_exec_do_not_deadlock() {
    let n = Node::start(
        Server::Datanode,
        &["--save", "", "--enable-debug-command", "yes"],
    );
    let mut c = n.conn();
    c.text(&["SET", "a", "1"]);
    c.text(&["MULTI"]);
    c.text(&["BGSAVE"]);
    c.text(&["DEBUG", "RELOAD"]);
    c.text(&["INCR", "a"]);
    let r = c.text(&["EXEC"]);
    // Inside EXEC a BGSAVE is scheduled, as in Redis; the cron starts it.
    assert_eq!(r, "*3\r\n+Background saving scheduled\r\n+OK\r\n:2\r\n");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !{
        let info = c.text(&["INFO", "persistence"]);
        info.contains("rdb_saves:1\r\n") && info.contains("rdb_bgsave_in_progress:0")
    } {
        assert!(Instant::now() < deadline, "BGSAVE did not finish");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(n.path().join("dump.rdb").exists());
}

#[test]
fn bgsave_under_writes_is_a_consistent_snapshot() {
    let mut n = Node::start(
        Server::Datanode,
        &["--save", "", "--appendonly", "no", "--io-threads", "4"],
    );
    let port = n.port;
    let mut c = n.conn();
    // Enough keys that the sweep takes a while.
    let mut batch = Vec::new();
    for i in 0..20000 {
        batch.extend(encode(&["SET", &format!("k{i}"), "v"]));
    }
    c.send_raw(&batch).expect("send");
    for _ in 0..20000 {
        c.read_reply().expect("reply");
    }
    c.text(&["MSET", "x", "0", "y", "0"]);
    let stop = Arc::new(AtomicBool::new(false));
    let stop2 = stop.clone();
    // x and y (different slots) always change together.
    let writer = std::thread::spawn(move || {
        let mut w = Conn::connect(port).expect("connect");
        let mut i = 0u64;
        while !stop2.load(Ordering::Relaxed) {
            i += 1;
            let v = i.to_string();
            let mut req = Vec::new();
            req.extend(encode(&["MULTI"]));
            req.extend(encode(&["SET", "x", &v]));
            req.extend(encode(&["SET", "y", &v]));
            req.extend(encode(&["EXEC"]));
            w.send_raw(&req).expect("send");
            for _ in 0..4 {
                w.read_reply().expect("reply");
            }
        }
    });
    for _ in 0..3 {
        assert_eq!(c.text(&["BGSAVE"]), "+Background saving started\r\n");
        let deadline = Instant::now() + Duration::from_secs(20);
        while c
            .text(&["INFO", "persistence"])
            .contains("rdb_bgsave_in_progress:1")
        {
            assert!(Instant::now() < deadline, "BGSAVE did not finish");
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    stop.store(true, Ordering::Relaxed);
    writer.join().expect("writer");
    // Restart from the last snapshot (kill -9: no save on exit).
    n.signal_and_wait("-KILL");
    n.restart();
    let mut c = n.conn();
    let x = c.text(&["GET", "x"]);
    assert_eq!(
        x,
        c.text(&["GET", "y"]),
        "snapshot caught a transaction half done"
    );
    assert_eq!(c.text(&["DBSIZE"]), ":20002\r\n");
}

/// SWAPDB holds every slot of both databases while it swaps: a multi-slot
/// read never sees one database half swapped, and SORT with BY/GET
/// patterns (which locks the slots its patterns reach, or the whole
/// database inside EXEC) and MOVE run alongside without deadlocking.
#[test]
fn swapdb_is_atomic_and_sort_move_do_not_deadlock() {
    let n = Node::start(
        Server::Datanode,
        &["--save", "", "--appendonly", "no", "--io-threads", "4"],
    );
    let port = n.port;
    let mut setup = n.conn();
    // Keys in different slots, db 0 all "0", db 1 all "1".
    let keys: Vec<String> = (0..8).map(|i| format!("key:{i}")).collect();
    for db in ["0", "1"] {
        setup.text(&["SELECT", db]);
        for k in &keys {
            setup.text(&["SET", k, db]);
        }
    }
    let stop = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let stop = stop.clone();
            let keys = keys.clone();
            std::thread::spawn(move || {
                let mut c = Conn::connect(port).expect("connect");
                let mut args = vec!["MGET"];
                args.extend(keys.iter().map(|k| k.as_str()));
                let mut checks = 0;
                while !stop.load(Ordering::Relaxed) {
                    let r = c.text(&args);
                    let vals: Vec<&str> = r.split("\r\n").skip(2).step_by(2).collect();
                    assert!(
                        vals.iter().all(|v| *v == vals[0] || v.is_empty()),
                        "half-swapped databases seen: {r:?}"
                    );
                    checks += 1;
                }
                checks
            })
        })
        .collect();
    let sorters: Vec<_> = (0..2)
        .map(|w| {
            std::thread::spawn(move || {
                let mut c = Conn::connect(port).expect("connect");
                c.text(&["SELECT", "2"]);
                for i in 0..200 {
                    let mut req = Vec::new();
                    req.extend(encode(&["RPUSH", "list", &format!("{}", i % 10)]));
                    req.extend(encode(&["SET", &format!("w_{}", i % 10), &format!("{w}")]));
                    req.extend(encode(&[
                        "SORT", "list", "BY", "w_*", "GET", "w_*", "STORE", "out",
                    ]));
                    req.extend(encode(&["MULTI"]));
                    req.extend(encode(&[
                        "SORT", "list", "BY", "w_*", "GET", "#", "LIMIT", "0", "3",
                    ]));
                    req.extend(encode(&["MOVE", "out", "3"]));
                    req.extend(encode(&["SWAPDB", "2", "3"]));
                    req.extend(encode(&["EXEC"]));
                    c.send_raw(&req).expect("send");
                    for _ in 0..8 {
                        c.read_reply().expect("reply");
                    }
                }
            })
        })
        .collect();
    let mut s = n.conn();
    let deadline = Instant::now() + Duration::from_secs(60);
    for _ in 0..300 {
        assert_eq!(s.text(&["SWAPDB", "0", "1"]), "+OK\r\n");
    }
    for t in sorters {
        t.join().expect("sorter");
    }
    assert!(Instant::now() < deadline, "too slow: deadlock?");
    stop.store(true, Ordering::Relaxed);
    for r in readers {
        assert!(r.join().expect("reader") > 0);
    }
    // An even number of swaps: back where we started.
    assert_eq!(s.text(&["GET", "key:0"]), "$1\r\n0\r\n");
    s.text(&["SELECT", "1"]);
    assert_eq!(s.text(&["GET", "key:0"]), "$1\r\n1\r\n");
}
