//! Function libraries against real processes: they survive restarts
//! through the RDB and the AOF (an RDB preamble, a command base, and the
//! FUNCTION commands in the increments), reach replicas (redis-server as
//! well as datanode) by full sync and by the stream, and DUMP payloads
//! move between redis-server and datanode both ways.

use std::time::{Duration, Instant};

use slotkv_tests::{Conn, Node, Reply, Server};

const LIB: &str = "#!lua name=counter\n\
local function bump(key, by) return redis.call('INCRBY', key, by) end\n\
redis.register_function('bump', function(keys, args) return bump(keys[1], args[1]) end)\n\
redis.register_function{function_name='peek', callback=function(keys) return redis.call('GET', keys[1]) end, flags={'no-writes'}, description='reads'}";

const LIB2: &str = "#!lua name=other\nredis.register_function('hello', function() return 'hi' end)";

fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The libraries as FUNCTION LIST WITHCODE shows them.
fn bulk(c: &mut Conn, args: &[&str]) -> Vec<u8> {
    match c.cmd(args).expect("reply").tree {
        Reply::Scalar(b'$', v) => v,
        other => panic!("{args:?}: not a bulk reply: {other:?}"),
    }
}

/// The libraries as FUNCTION LIST WITHCODE shows them, in name order
/// (each server lists them in its own order).
fn listing(c: &mut Conn) -> Vec<Reply> {
    match c
        .cmd(&["FUNCTION", "LIST", "WITHCODE"])
        .expect("reply")
        .tree
    {
        Reply::Agg(b'*', mut libs) => {
            for lib in &mut libs {
                sort_functions(lib);
            }
            libs.sort();
            libs
        }
        other => panic!("FUNCTION LIST: {other:?}"),
    }
}

fn load_both(c: &mut Conn) {
    assert_eq!(c.text(&["FUNCTION", "LOAD", LIB]), "$7\r\ncounter\r\n");
    assert_eq!(c.text(&["FUNCTION", "LOAD", LIB2]), "$5\r\nother\r\n");
    assert_eq!(c.text(&["FCALL", "bump", "1", "k", "5"]), ":5\r\n");
}

/// Puts a library's functions in name order.
fn sort_functions(lib: &mut Reply) {
    let Reply::Agg(_, fields) = lib else { return };
    let at = fields
        .iter()
        .position(|f| *f == Reply::Scalar(b'$', b"functions".to_vec()));
    if let Some(Reply::Agg(_, fns)) = at.and_then(|i| fields.get_mut(i + 1)) {
        fns.sort();
    }
}

fn check_both(c: &mut Conn, before: &[Reply]) {
    assert_eq!(listing(c), before);
    assert_eq!(c.text(&["FCALL", "bump", "1", "k", "1"]), ":6\r\n");
    assert_eq!(c.text(&["FCALL_RO", "peek", "1", "k"]), "$1\r\n6\r\n");
    assert_eq!(c.text(&["FCALL", "hello", "0"]), "$2\r\nhi\r\n");
}

#[test]
fn libraries_survive_a_restart_from_the_rdb() {
    let mut n = Node::start(Server::Datanode, &["--enable-debug-command", "yes"]);
    let mut c = n.conn();
    load_both(&mut c);
    let before = listing(&mut c);
    assert_eq!(c.text(&["SAVE"]), "+OK\r\n");
    drop(c);
    n.signal_and_wait("-KILL");
    n.restart();
    let mut c = n.conn();
    check_both(&mut c, &before);
    // INFO memory counts them, as Redis does.
    assert_eq!(c.info_field("memory", "number_of_libraries"), "2");
    assert_eq!(c.info_field("memory", "number_of_functions"), "3");
    assert!(
        c.info_field("memory", "used_memory_functions")
            .parse::<u64>()
            .unwrap_or(0)
            > 0
    );
    // DEBUG RELOAD rebuilds them from their code.
    assert_eq!(c.text(&["DEBUG", "RELOAD"]), "+OK\r\n");
    assert_eq!(listing(&mut c), before);
}

#[test]
fn libraries_survive_restarts_through_the_aof() {
    for preamble in ["yes", "no"] {
        let mut n = Node::start(
            Server::Datanode,
            &[
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--aof-use-rdb-preamble",
                preamble,
            ],
        );
        let mut c = n.conn();
        load_both(&mut c);
        // A deleted library stays deleted after a replay.
        assert_eq!(
            c.text(&[
                "FUNCTION",
                "LOAD",
                "#!lua name=gone\nredis.register_function('g', function() end)"
            ]),
            "$4\r\ngone\r\n"
        );
        assert_eq!(c.text(&["FUNCTION", "DELETE", "gone"]), "+OK\r\n");
        let before = listing(&mut c);
        // From the increments alone.
        drop(c);
        n.signal_and_wait("-KILL");
        n.restart();
        let mut c = n.conn();
        check_both(&mut c, &before);
        // From a rewritten base (RDB preamble or FUNCTION LOAD commands).
        assert!(c.text(&["BGREWRITEAOF"]).starts_with('+'));
        wait_until("the rewrite", || {
            c.info_field("persistence", "aof_rewrite_in_progress") == "0"
                && c.info_field("persistence", "aof_rewrite_scheduled") == "0"
        });
        let base = std::fs::read_dir(n.path().join("appendonlydir"))
            .expect("aof dir")
            .filter_map(Result::ok)
            .find(|e| e.file_name().to_string_lossy().contains(".base."))
            .map(|e| std::fs::read(e.path()).unwrap_or_default())
            .unwrap_or_default();
        let shows_load = String::from_utf8_lossy(&base).contains("FUNCTION");
        assert_eq!(
            shows_load,
            preamble == "no",
            "base with preamble={preamble}"
        );
        drop(c);
        n.signal_and_wait("-KILL");
        n.restart();
        let mut c = n.conn();
        assert_eq!(c.text(&["FCALL", "bump", "1", "k", "1"]), ":7\r\n");
        assert_eq!(
            c.text(&["FUNCTION", "LIST", "LIBRARYNAME", "gone"]),
            "*0\r\n"
        );
    }
}

/// A replica of `master` (either server kind) gets the libraries by full
/// sync, then each change by the stream.
fn replicate_to(replica_kind: Server) {
    let master = Node::start(Server::Datanode, &[]);
    let mut m = master.conn();
    load_both(&mut m);
    let replica = Node::start(replica_kind, &[]);
    let mut r = replica.conn();
    let port = master.port.to_string();
    assert_eq!(r.text(&["REPLICAOF", "127.0.0.1", &port]), "+OK\r\n");
    wait_until("the full sync", || {
        r.info_field("replication", "master_link_status") == "up"
    });
    let before = listing(&mut m);
    wait_until("the libraries on the replica", || listing(&mut r) == before);
    assert_eq!(r.text(&["FCALL_RO", "peek", "1", "k"]), "$1\r\n5\r\n");
    // Changes after the sync travel as commands.
    assert_eq!(m.text(&["FUNCTION", "DELETE", "other"]), "+OK\r\n");
    let lib3 = "#!lua name=third\nredis.register_function('three', function() return 3 end)";
    assert_eq!(m.text(&["FUNCTION", "LOAD", lib3]), "$5\r\nthird\r\n");
    let after = listing(&mut m);
    wait_until("the stream's changes on the replica", || {
        listing(&mut r) == after
    });
    assert_eq!(m.text(&["FUNCTION", "FLUSH"]), "+OK\r\n");
    wait_until("the flush on the replica", || listing(&mut r).is_empty());
}

#[test]
fn a_datanode_replica_gets_the_libraries() {
    replicate_to(Server::Datanode);
}

#[test]
fn a_redis_server_replica_gets_the_libraries() {
    replicate_to(Server::Redis);
}

#[test]
fn dump_payloads_move_between_redis_server_and_datanode() {
    let redis = Node::start(Server::Redis, &[]);
    let ours = Node::start(Server::Datanode, &[]);
    let (mut a, mut b) = (redis.conn(), ours.conn());
    load_both(&mut a);
    let payload = bulk(&mut a, &["FUNCTION", "DUMP"]);
    assert_eq!(b.text(&[&b"FUNCTION"[..], b"RESTORE", &payload]), "+OK\r\n");
    let listed = listing(&mut a);
    assert_eq!(listing(&mut b), listed);
    // And back: our payload, restored over the same libraries with
    // REPLACE, leaves redis-server as it was.
    let ours_payload = bulk(&mut b, &["FUNCTION", "DUMP"]);
    assert!(a
        .text(&[&b"FUNCTION"[..], b"RESTORE", &ours_payload])
        .ends_with(" already exists\r\n"));
    assert_eq!(
        a.text(&[&b"FUNCTION"[..], b"RESTORE", &ours_payload, b"FLUSH"]),
        "+OK\r\n"
    );
    assert_eq!(listing(&mut a), listed);
}

/// INFO's `used_memory_vm_functions` grows with what a library keeps in
/// Lua, and the eval and functions figures add up to
/// `used_memory_vm_total`, on both servers. (datanode said 0 whatever
/// was loaded.)
#[test]
fn function_libraries_count_in_used_memory_vm_functions() {
    let lib = "#!lua name=big\n\
        local t = {}\n\
        for i = 1, 20000 do t[i] = 'value number ' .. i end\n\
        redis.register_function('size', function() return #t end)";
    for kind in [Server::Redis, Server::Datanode] {
        let n = Node::start(kind, &["--save", ""]);
        let mut c = n.conn();
        let mem =
            |c: &mut Conn, f: &str| -> i64 { c.info_field("memory", f).parse().unwrap_or(-1) };
        let before = mem(&mut c, "used_memory_vm_functions");
        assert_eq!(c.text(&["FUNCTION", "LOAD", lib]), "$3\r\nbig\r\n");
        assert_eq!(c.text(&["FCALL", "size", "0"]), ":20000\r\n");
        let after = mem(&mut c, "used_memory_vm_functions");
        assert!(after >= before + 500_000, "{kind:?}: {before} -> {after}");
        let (eval, total) = (
            mem(&mut c, "used_memory_vm_eval"),
            mem(&mut c, "used_memory_vm_total"),
        );
        assert_eq!(eval + after, total, "{kind:?}");
        assert_eq!(mem(&mut c, "used_memory_lua"), eval, "{kind:?}");
        if kind == Server::Datanode {
            // A deleted library's memory leaves the figure at once.
            assert_eq!(c.text(&["FUNCTION", "DELETE", "big"]), "+OK\r\n");
            assert!(mem(&mut c, "used_memory_vm_functions") < before + 100_000);
        }
    }
}
