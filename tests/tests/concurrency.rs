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
    assert_eq!(r, "*3\r\n+Background saving started\r\n+OK\r\n:2\r\n");
    let deadline = Instant::now() + Duration::from_secs(10);
    while c
        .text(&["INFO", "persistence"])
        .contains("rdb_bgsave_in_progress:1")
    {
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
