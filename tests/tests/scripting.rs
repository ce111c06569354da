//! Lua scripts against a real datanode: what they write reaches the AOF as
//! the commands they ran (effects replication) and survives a restart; a
//! script past busy-reply-threshold gets other clients -BUSY and stops on
//! SCRIPT KILL, unless it wrote; the sandbox keeps the filesystem and the
//! process out of reach, and one script's state out of the next; concurrent
//! scripts on the same keys are atomic.

use std::time::{Duration, Instant};

use slotkv_tests::{Conn, Node, Server};

/// Waits until `f` holds, for at most 10 s.
fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn script_effects_reach_the_aof_as_commands_and_survive_a_restart() {
    let mut n = Node::start(
        Server::Datanode,
        &["--appendonly", "yes", "--appendfsync", "always"],
    );
    let mut c = n.conn();
    // TIME and a random member make the script nondeterministic: only
    // its effects can replay to the same state.
    let body = "local t = redis.call('TIME') \
                redis.call('SET', KEYS[1], t[1] .. '.' .. t[2]) \
                redis.call('SADD', KEYS[2], 'a', 'b', 'c') \
                local m = redis.call('SPOP', KEYS[2]) \
                redis.call('RPUSH', KEYS[3], m) \
                return m";
    let popped = c.text(&["EVAL", body, "3", "{s}t", "{s}set", "{s}list"]);
    let stamp = c.text(&["GET", "{s}t"]);
    let members = c.text(&["SMEMBERS", "{s}set"]);
    let aof = std::fs::read_dir(n.path().join("appendonlydir"))
        .expect("aof dir")
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().ends_with(".incr.aof"))
        .map(|e| std::fs::read(e.path()).unwrap_or_default())
        .fold(Vec::new(), |mut acc, b| {
            acc.extend(b);
            acc
        });
    let text = String::from_utf8_lossy(&aof);
    assert!(
        !text.contains("EVAL"),
        "the script itself was logged:\n{text}"
    );
    assert!(
        text.contains("MULTI"),
        "effects not wrapped in MULTI:\n{text}"
    );
    assert!(
        text.contains("SPOP") || text.contains("SREM"),
        "no SPOP effect:\n{text}"
    );
    drop(c);
    n.signal_and_wait("-TERM");
    n.restart();
    let mut c = n.conn();
    assert_eq!(c.text(&["GET", "{s}t"]), stamp);
    assert_eq!(c.text(&["SMEMBERS", "{s}set"]), members);
    let last = c.text(&["LRANGE", "{s}list", "0", "-1"]);
    assert!(last.ends_with(&popped), "list {last} vs popped {popped}");
}

#[test]
fn a_script_past_the_threshold_gets_busy_replies_and_script_kill() {
    let n = Node::start(Server::Datanode, &[]);
    let mut c = n.conn();
    assert_eq!(
        c.text(&["CONFIG", "SET", "busy-reply-threshold", "50"]),
        "+OK\r\n"
    );
    assert_eq!(
        c.text(&["SCRIPT", "KILL"]),
        "-NOTBUSY No scripts in execution right now.\r\n"
    );

    // A read-only loop: others get -BUSY, SCRIPT KILL stops it.
    let mut looping = n.conn();
    looping
        .send_raw(&slotkv_tests::resp::encode(&[
            "EVAL",
            "while true do end",
            "0",
        ]))
        .expect("send");
    wait_until("-BUSY", || c.text(&["PING"]).starts_with("-BUSY"));
    assert!(c
        .text(&["GET", "x"])
        .starts_with("-BUSY Redis is busy running a script"));
    assert_eq!(c.text(&["SCRIPT", "KILL"]), "+OK\r\n");
    let r = slotkv_tests::resp::show(&looping.read_reply().expect("killed script reply").raw);
    assert!(r.contains("Script killed by user with SCRIPT KILL"), "{r}");
    assert_eq!(c.text(&["PING"]), "+PONG\r\n");
    assert_eq!(looping.text(&["PING"]), "+PONG\r\n");

    // A script fast so far (so run on the command thread) that now loops
    // moves off that thread and is answered around and killed the same.
    let body = "if ARGV[1] == '1' then while true do end end return 'quick'";
    for _ in 0..3 {
        assert_eq!(c.text(&["EVAL", body, "0", "0"]), "$5\r\nquick\r\n");
    }
    looping
        .send_raw(&slotkv_tests::resp::encode(&["EVAL", body, "0", "1"]))
        .expect("send");
    wait_until("-BUSY", || c.text(&["PING"]).starts_with("-BUSY"));
    assert_eq!(c.text(&["SCRIPT", "KILL"]), "+OK\r\n");
    let r = slotkv_tests::resp::show(&looping.read_reply().expect("killed script reply").raw);
    assert!(r.contains("Script killed by user with SCRIPT KILL"), "{r}");

    // A script that wrote cannot be killed; SHUTDOWN NOSAVE still works.
    let mut writer = n.conn();
    writer
        .send_raw(&slotkv_tests::resp::encode(&[
            "EVAL",
            "redis.call('SET', KEYS[1], 'v') while true do end",
            "1",
            "k",
        ]))
        .expect("send");
    wait_until("-BUSY", || c.text(&["PING"]).starts_with("-BUSY"));
    assert!(c.text(&["SCRIPT", "KILL"]).starts_with("-UNKILLABLE"));
    // No reply: the connection closes with the process, so by then the
    // port refuses connections (as Redis's test checks).
    assert!(c.cmd(&["SHUTDOWN", "NOSAVE"]).is_err());
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", n.port)).is_err(),
        "the port still accepted a connection after SHUTDOWN's connection closed"
    );
    let mut n = n;
    n.wait_exit();
}

#[test]
fn a_client_of_a_running_scripts_slot_waits_without_stopping_the_others() {
    let n = Node::start(Server::Datanode, &[]);
    let mut c = n.conn();
    assert_eq!(
        c.text(&["CONFIG", "SET", "busy-reply-threshold", "1500"]),
        "+OK\r\n"
    );
    let mut looping = n.conn();
    looping
        .send_raw(&slotkv_tests::resp::encode(&[
            "EVAL",
            "while true do end",
            "1",
            "held",
        ]))
        .expect("send");
    // The loop holds `held` (declared): give it time to start.
    std::thread::sleep(Duration::from_millis(200));
    let mut waiting = n.conn();
    waiting
        .send_raw(&slotkv_tests::resp::encode(&["GET", "held"]))
        .expect("send");
    // Before the threshold, everyone else is served at once, even on a
    // single command thread, while GET held waits.
    let t = Instant::now();
    for _ in 0..20 {
        assert_eq!(c.text(&["SET", "other", "v"]), "+OK\r\n");
    }
    assert!(
        t.elapsed() < Duration::from_millis(1000),
        "other clients were held up for {:?}",
        t.elapsed()
    );
    // Past the threshold the waiting client gets -BUSY, and SCRIPT KILL
    // (which needs the command thread) gets through.
    let r = slotkv_tests::resp::show(&waiting.read_reply().expect("GET reply").raw);
    assert!(r.starts_with("-BUSY"), "{r}");
    assert_eq!(c.text(&["SCRIPT", "KILL"]), "+OK\r\n");
    let r = slotkv_tests::resp::show(&looping.read_reply().expect("killed script reply").raw);
    assert!(r.contains("Script killed by user with SCRIPT KILL"), "{r}");
    assert_eq!(waiting.text(&["GET", "held"]), "$-1\r\n");
}

/// A client blocked on a key that a long script pushes to is served after
/// the script returns, with what the script left, and meanwhile every
/// other client of the server is answered (-BUSY, or HELLO which is
/// allowed). Redis's "Timedout scripts and unblocked command".
#[test]
fn a_client_blocked_on_a_key_a_running_script_pushes_to_waits_for_the_script() {
    let n = Node::start(Server::Datanode, &["--enable-debug-command", "yes"]);
    let mut c = n.conn();
    // CLIENT LIST from a script lets it wait for a named client.
    assert_eq!(
        c.text(&["DEBUG", "set-disable-deny-scripts", "1"]),
        "+OK\r\n"
    );
    assert_eq!(
        c.text(&["CONFIG", "SET", "busy-reply-threshold", "10"]),
        "+OK\r\n"
    );
    let mut blocked = n.conn();
    blocked
        .send_raw(&slotkv_tests::resp::encode(&["BLPOP", "x", "0"]))
        .expect("send");
    wait_until("the client to block", || {
        c.info_field("clients", "blocked_clients") == "1"
    });
    let mut script = n.conn();
    let body = "redis.call('lpush', KEYS[1], 'y') \
                while not string.find(redis.call('client', 'list'), 'abortscript') do end \
                redis.call('lpush', KEYS[1], 'z') \
                return 'done'";
    script
        .send_raw(&slotkv_tests::resp::encode(&["EVAL", body, "1", "x"]))
        .expect("send");
    wait_until("-BUSY from the running script", || {
        c.text(&["PING"]).starts_with("-BUSY")
    });
    // Every command thread still answers while the script runs.
    for _ in 0..4 {
        let mut other = n.conn();
        assert!(other.text(&["PING"]).starts_with("-BUSY"));
    }
    let mut namer = n.conn();
    let hello = namer.text(&["HELLO", "2", "SETNAME", "abortscript"]);
    assert!(hello.starts_with("*"), "{hello}");
    let r = slotkv_tests::resp::show(&script.read_reply().expect("script reply").raw);
    assert!(r.contains("done"), "{r}");
    // Served after the script: the last element it pushed.
    assert_eq!(
        blocked.read_reply().expect("BLPOP reply").raw,
        b"*2\r\n$1\r\nx\r\n$1\r\nz\r\n"
    );
    assert_eq!(c.text(&["LRANGE", "x", "0", "-1"]), "*1\r\n$1\r\ny\r\n");
}

#[test]
fn the_sandbox_keeps_the_process_and_files_out_of_reach() {
    let n = Node::start(Server::Datanode, &[]);
    let mut c = n.conn();
    for body in [
        "return os.execute('touch /tmp/slotkv-escaped')",
        "return io.open('/etc/passwd')",
        "return loadfile('/etc/passwd')",
        "return dofile('/etc/passwd')",
        "return require('os')",
        "return package.loadlib('libc.so.6', 'system')",
        "return debug.getinfo(1)",
        "print('x')",
        "redis = nil",
        "string.rep = nil",
        "rawset(_G, 'x', 1)",
        "setmetatable(_G, nil)",
    ] {
        let r = c.text(&["EVAL", body, "0"]);
        assert!(r.starts_with("-ERR"), "{body} gave {r}");
    }
    assert!(!std::path::Path::new("/tmp/slotkv-escaped").exists());
    // Nothing a script tries to leave behind reaches the next one: every
    // way to write into the globals, a library or the strings' metatable
    // is refused.
    for body in [
        "getfenv(0).leak = 1",
        "setfenv(1, {leak = 1})",
        "rawset(_G, 'leak', 1)",
        "table.insert(_G, 'leak')",
        "table.insert(string, 'leak')",
        "rawset(redis, 'leak', 1)",
        "getmetatable('').__index = {upper = function() return 'leak' end}",
        "rawset(getmetatable(''), '__index', {})",
        "setmetatable(string, {__index = function() return 'leak' end})",
    ] {
        let r = c.text(&["EVAL", body, "0"]);
        assert!(r.starts_with("-ERR"), "{body} gave {r}");
    }
    let r = c.text(&["EVAL", "return leak", "0"]);
    assert!(r.contains("nonexistent global variable 'leak'"), "{r}");
    let r = c.text(&[
        "EVAL",
        "return {('a'):upper(), tostring(rawget(_G, 1)), tostring(rawget(string, 1)), tostring(rawget(redis, 'leak'))}",
        "0",
    ]);
    assert_eq!(
        r,
        "*4\r\n$1\r\nA\r\n$3\r\nnil\r\n$3\r\nnil\r\n$3\r\nnil\r\n"
    );
}

#[test]
fn concurrent_scripts_on_the_same_keys_are_atomic() {
    let n = Node::start(Server::Datanode, &["--io-threads", "2"]);
    // Read-modify-write across two keys: without atomicity the sum drifts.
    let body = "local a = tonumber(redis.call('GET', KEYS[1]) or '0') \
                local b = tonumber(redis.call('GET', KEYS[2]) or '0') \
                redis.call('SET', KEYS[1], a + 1) \
                redis.call('SET', KEYS[2], b - 1) \
                return a + b";
    let sha = {
        let mut c = n.conn();
        let r = c.text(&["SCRIPT", "LOAD", body]);
        r.lines().nth(1).expect("sha").to_string()
    };
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let mut c: Conn = n.conn();
            let sha = sha.clone();
            std::thread::spawn(move || {
                for _ in 0..500 {
                    let r = c.text(&["EVALSHA", &sha, "2", "{a}x", "{a}y"]);
                    assert_eq!(r, ":0\r\n", "a script saw another half done");
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("client thread");
    }
    let mut c = n.conn();
    assert_eq!(c.text(&["GET", "{a}x"]), "$4\r\n2000\r\n");
    // Undeclared keys in other slots, written by scripts from several
    // clients at once: every increment lands.
    let body = "for i = 1, 5 do redis.call('INCR', 'k' .. i) end return 1";
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let mut c: Conn = n.conn();
            std::thread::spawn(move || {
                for _ in 0..200 {
                    assert_eq!(c.text(&["EVAL", body, "0"]), ":1\r\n");
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("client thread");
    }
    for i in 1..=5 {
        assert_eq!(c.text(&["GET", &format!("k{i}")]), "$3\r\n800\r\n");
    }
}

#[test]
fn ten_thousand_distinct_scripts_and_functions_all_stay_callable() {
    // Each compiled script and registered function is kept by the
    // interpreter; past 8,000 they once overflowed mlua's reference stack.
    let n = Node::start(Server::Datanode, &[]);
    let mut c = n.conn();
    let mut pipeline = Vec::new();
    for i in 0..10_000 {
        pipeline.extend(slotkv_tests::encode(&["EVAL", &format!("return {i}"), "0"]));
    }
    c.send_raw(&pipeline).expect("send");
    for i in 0..10_000 {
        let r = c.read_reply().expect("reply");
        assert_eq!(r.raw, format!(":{i}\r\n").into_bytes(), "script {i}");
    }
    for i in [0, 9_999] {
        let sha = c.text(&["SCRIPT", "LOAD", &format!("return {i}")]);
        let sha = sha.lines().nth(1).expect("sha").to_string();
        assert_eq!(c.text(&["EVALSHA", &sha, "0"]), format!(":{i}\r\n"));
    }
    let lib = "#!lua name=many\n\
               for i = 1, 9000 do redis.register_function('f' .. i, function() return i end) end";
    assert_eq!(c.text(&["FUNCTION", "LOAD", lib]), "$4\r\nmany\r\n");
    for i in [1, 4_500, 9_000] {
        assert_eq!(
            c.text(&["FCALL", &format!("f{i}"), "0"]),
            format!(":{i}\r\n")
        );
    }
    assert!(!n.log().contains("panicked"), "{}", n.log());
}

/// SCRIPT DEBUG YES runs the session in a forked child, as Redis does:
/// the script's writes are thrown away with it, and the server goes on
/// serving everyone, the script's keys included, while it is paused.
#[test]
fn a_forked_debugging_session_changes_nothing_and_blocks_no_one() {
    // With an AOF written on every command: the child must not reach it.
    let mut n = Node::start(
        Server::Datanode,
        &["--appendonly", "yes", "--appendfsync", "always"],
    );
    let mut c = n.conn();
    let body = "redis.call('SET', KEYS[1], 'written')\nreturn 1";
    assert_eq!(c.text(&["SCRIPT", "DEBUG", "YES"]), "+OK\r\n");
    let sha = c.text(&["SCRIPT", "LOAD", body]);
    let sha = sha.split("\r\n").nth(1).expect("sha");
    assert_eq!(
        c.text(&["EVALSHA", sha, "1", "k"]),
        "-ERR Please use EVAL instead of EVALSHA for debugging\r\n"
    );
    let stop = c.text(&["EVAL", body, "1", "k"]);
    assert!(stop.contains("Stopped at 1"), "{stop}");
    // Paused, and yet the key is free for others.
    let mut other = n.conn();
    assert_eq!(other.text(&["SET", "k", "other"]), "+OK\r\n");
    let step = c.text(&["s"]);
    assert!(step.contains("Stopped at 2"), "{step}");
    c.send_raw(&slotkv_tests::encode(&["c"])).expect("continue");
    assert_eq!(c.read_reply().expect("end").raw, b"*1\r\n+<endsession>\r\n");
    assert_eq!(c.read_reply().expect("reply").raw, b":1\r\n");
    assert!(c.is_closed());
    assert_eq!(other.text(&["GET", "k"]), "$5\r\nother\r\n");

    // redis-cli --ldb drives it, and its write does not stay.
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("s.lua");
    std::fs::write(&file, "redis.call('SET', KEYS[1], 'written')\nreturn 1\n").expect("write");
    let out = std::process::Command::new("redis-cli")
        .args(["-p", &n.port.to_string(), "--ldb", "--eval"])
        .arg(&file)
        .arg("viacli")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("redis-cli");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("Stopped at 1"), "redis-cli said: {text}");
    assert_eq!(other.text(&["EXISTS", "viacli"]), ":0\r\n");
    assert_eq!(other.text(&["PING"]), "+PONG\r\n");
    drop(other);
    n.signal_and_wait("-TERM");
    n.restart();
    let mut again = n.conn();
    assert_eq!(again.text(&["GET", "k"]), "$5\r\nother\r\n");
    assert_eq!(again.text(&["EXISTS", "viacli"]), ":0\r\n");
}

/// A forked debugging session is a fork in INFO (total_forks,
/// latest_fork_usec), as every fork of redis-server is; CONFIG RESETSTAT
/// zeroes both (datanode printed constant zeros).
#[test]
fn a_forked_debugging_session_counts_as_a_fork() {
    for kind in [Server::Redis, Server::Datanode] {
        let n = Node::start(kind, &[]);
        let mut c = n.conn();
        assert_eq!(c.text(&["SCRIPT", "DEBUG", "YES"]), "+OK\r\n");
        let stop = c.text(&["EVAL", "return 1", "0"]);
        assert!(stop.contains("Stopped at 1"), "{kind:?}: {stop}");
        c.send_raw(&slotkv_tests::encode(&["c"])).expect("continue");
        assert_eq!(c.read_reply().expect("end").raw, b"*1\r\n+<endsession>\r\n");
        assert_eq!(c.read_reply().expect("reply").raw, b":1\r\n");
        let mut o = n.conn();
        assert_eq!(o.info_field("stats", "total_forks"), "1", "{kind:?}");
        let usec: u64 = o
            .info_field("stats", "latest_fork_usec")
            .parse()
            .expect("usec");
        assert!(usec > 0, "{kind:?}");
        assert_eq!(o.text(&["CONFIG", "RESETSTAT"]), "+OK\r\n");
        assert_eq!(o.info_field("stats", "total_forks"), "0", "{kind:?}");
        assert_eq!(o.info_field("stats", "latest_fork_usec"), "0", "{kind:?}");
    }
}

/// One step of a debugging session: what the client sends, and how many
/// replies come back (the last step gets the end mark, then EVAL's reply).
/// Nothing is sent for an empty command; a first word starting with `*`
/// is sent as raw bytes.
type Step<'a> = (&'a [&'a str], usize);

/// Runs the same session on both servers; every reply must be the same,
/// byte for byte, and each server must close the connection at the end.
fn same_session(setup: &[&[&str]], eval: &[&str], steps: &[Step]) {
    same_session_in("SYNC", setup, eval, steps);
}

/// [`same_session`] in SCRIPT DEBUG `mode`.
fn same_session_in(mode: &str, setup: &[&[&str]], eval: &[&str], steps: &[Step]) {
    let r = Node::start(Server::Redis, &[]);
    let d = Node::start(Server::Datanode, &[]);
    let mut seen = Vec::new();
    for node in [&r, &d] {
        let mut c = node.conn();
        c.set_timeout(Duration::from_secs(10));
        for cmd in setup {
            c.text(cmd);
        }
        let mut replies = vec![c.text(&["SCRIPT", "DEBUG", mode])];
        let first = c.cmd(eval).expect("eval");
        replies.push(String::from_utf8_lossy(&first.raw).into_owned());
        for (cmd, n) in steps {
            match cmd.first() {
                None => {}
                Some(raw) if raw.starts_with('*') => c.send_raw(raw.as_bytes()).expect("send"),
                Some(_) => c.send_raw(&slotkv_tests::encode(cmd)).expect("send"),
            }
            for _ in 0..*n {
                let reply = c.read_reply().expect("reply");
                replies.push(String::from_utf8_lossy(&reply.raw).into_owned());
            }
        }
        let (rest, closed) = c.drain(Duration::from_secs(5));
        assert!(
            rest.is_empty(),
            "unexpected: {}",
            String::from_utf8_lossy(&rest)
        );
        assert!(closed, "the session's end closes the connection");
        let mut after = node.conn();
        replies.push(after.text(&["GET", "k"]));
        seen.push(replies);
    }
    for (i, (want, got)) in seen[0].iter().zip(&seen[1]).enumerate() {
        assert_eq!(
            got, want,
            "reply {i} of the session differs from redis-server's"
        );
    }
    assert_eq!(seen[0].len(), seen[1].len());
}

#[test]
fn debugging_sessions_read_as_redis_servers() {
    // Stepping, printing, breakpoints, redis.debug, eval, list.
    let body = "local a = 5\nlocal t = {1,2,'x'}\nredis.call('set', KEYS[1], ARGV[1])\n\
                local v = redis.call('get', KEYS[1])\nredis.debug('hi', a, t)\nreturn v";
    // Forked (YES) too: the same dialogue, and the key it set is not kept
    // (`same_session` compares the key afterwards).
    same_session_in(
        "YES",
        &[],
        &["EVAL", body, "1", "k", "val"],
        &[
            (&["s"], 1),
            (&["p"], 1),
            (&["r", "get", "k"], 1),
            (&["c"], 2),
        ],
    );
    same_session(
        &[],
        &["EVAL", body, "1", "k", "val"],
        &[
            (&["s"], 1),
            (&["p"], 1),
            (&["p", "a"], 1),
            (&["p", "KEYS"], 1),
            (&["p", "nosuch"], 1),
            (&["e", "a+1"], 1),
            (&["e", "1,", "2"], 1),
            (&["e", "x = 1"], 1),
            (&["e", "{1,{2,{3}},{k='v'}}"], 1),
            (&["l"], 1),
            (&["l", "3", "1"], 1),
            (&["w"], 1),
            (&["b", "5"], 1),
            (&["b", "5"], 1),
            (&["b", "99", "x"], 1),
            (&["b"], 1),
            (&["c"], 1),
            (&["s"], 1),
            (&["s"], 2),
        ],
    );
    // Functions and backtraces, redis.breakpoint, commands run from the
    // prompt, errors logged while stepping, maxlen, Redis's breakpoint
    // removal, help, and abort.
    let body = "local function f(x)\n  local y = x * 2\n  return y\nend\n\
                redis.call('set', KEYS[1], 'abc')\nlocal r = redis.pcall('incr', KEYS[1])\n\
                local z = f(3)\nredis.breakpoint()\nlocal q = 1\nreturn z";
    let long = "v".repeat(200);
    same_session(
        &[&["SET", "big", &long]],
        &["EVAL", body, "1", "k"],
        &[
            (&["s"], 1),
            (&["s"], 1),
            (&["s"], 1),
            (&["t"], 1),
            (&["s"], 1),
            (&["t"], 1),
            (&["p"], 1),
            (&["c"], 1),
            (&["r", "get", "big"], 1),
            (&["m"], 1),
            (&["m", "10"], 1),
            (&["r", "get", "big"], 1),
            (&["r", "get", "big"], 1),
            (&["m", "0"], 1),
            (&["r", "get", "big"], 1),
            (&["r", "nosuch"], 1),
            (&["r"], 1),
            (&["b", "3", "9", "2"], 1),
            (&["b", "-3"], 1),
            (&["b"], 1),
            (&["b", "0"], 1),
            (&["x"], 1),
            (&["h"], 1),
            (&["a"], 2),
        ],
    );
    // Values of every kind, nested past the depth limit; a command error
    // ends the script.
    let body = "local x = {a=1, [5]=true, n=1.5e300}\nlocal s = 'a\\r\\nb\\0c'\n\
                local deep = {} local c = deep for i = 1, 12 do c[1] = {} c = c[1] end\n\
                return redis.call('nosuch')";
    same_session(
        &[],
        &["EVAL", body, "0"],
        &[
            (&["s"], 1),
            (&["s"], 1),
            (&["s"], 1),
            (&["p"], 1),
            (&["c"], 2),
        ],
    );
    // What the debugger cannot parse fails the script.
    same_session(&[], &["EVAL", "return 1", "0"], &[(&["*x\r\n"][..], 2)]);
    // A script that cannot compile ends the session at once.
    same_session(&[], &["EVAL", "return 1 +", "0"], &[(&[], 1)]);
}

#[test]
fn a_script_that_runs_too_long_stops_in_the_debugger() {
    let body = "local i = 0\nwhile true do i = i + 1 end\nreturn i";
    same_session(
        &[&["CONFIG", "SET", "busy-reply-threshold", "200"]],
        &["EVAL", body, "0"],
        &[(&["c"], 1), (&["a"], 2)],
    );
}

/// The real client drives a synchronous session the same way on both
/// servers, and the script's writes stay.
#[test]
fn redis_cli_debugs_a_script_in_sync_mode() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("t.lua");
    std::fs::write(
        &file,
        "local a = 1\nredis.call('set', KEYS[1], 'v')\nreturn redis.call('get', KEYS[1])\n",
    )
    .expect("write");
    let mut outputs = Vec::new();
    for kind in [Server::Redis, Server::Datanode] {
        let n = Node::start(kind, &[]);
        let mut child = std::process::Command::new("redis-cli")
            .args(["-p", &n.port.to_string(), "--ldb-sync-mode", "--eval"])
            .arg(&file)
            .arg("k1")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("redis-cli");
        {
            use std::io::Write;
            let mut stdin = child.stdin.take().expect("stdin");
            stdin.write_all(b"s\np a\nr get k1\nc\n").expect("type");
        }
        let out = child.wait_with_output().expect("redis-cli output");
        outputs.push(String::from_utf8_lossy(&out.stdout).into_owned());
        assert_eq!(n.conn().text(&["GET", "k1"]), "$1\r\nv\r\n");
    }
    assert!(outputs[0].contains("<redis> get k1"), "{}", outputs[0]);
    assert_eq!(outputs[1], outputs[0]);
}

/// A debugging client that leaves lets the script run to its end, and
/// the server goes on serving.
#[test]
fn a_session_whose_client_leaves_finishes_the_script() {
    let n = Node::start(Server::Datanode, &[]);
    let mut c = n.conn();
    assert_eq!(c.text(&["SCRIPT", "DEBUG", "SYNC"]), "+OK\r\n");
    let body = "redis.call('set', KEYS[1], 'a')\nredis.call('set', KEYS[1], 'b')\nreturn 1";
    let stop = c.text(&["EVAL", body, "1", "k"]);
    assert!(stop.contains("Stopped at 1"), "{stop}");
    drop(c);
    let mut other = n.conn();
    wait_until("the script to finish", || {
        other.text(&["GET", "k"]) == "$1\r\nb\r\n"
    });
    assert_eq!(other.text(&["PING"]), "+PONG\r\n");
}

/// SCRIPT DEBUG sent behind another command in one write is refused, as
/// Redis refuses it while replies are pending; alone, it is accepted.
#[test]
fn script_debug_behind_pending_replies_is_refused_as_redis_does() {
    let mut seen = Vec::new();
    for kind in [Server::Redis, Server::Datanode] {
        let n = Node::start(kind, &[]);
        let mut c = n.conn();
        let mut both = slotkv_tests::encode(&["PING"]);
        both.extend(slotkv_tests::encode(&["SCRIPT", "DEBUG", "YES"]));
        c.send_raw(&both).expect("send");
        let ping = c.read_reply().expect("ping").raw;
        let debug = c.read_reply().expect("script debug").raw;
        let alone = c.text(&["SCRIPT", "DEBUG", "NO"]);
        seen.push((ping, String::from_utf8_lossy(&debug).into_owned(), alone));
    }
    assert_eq!(
        seen[0].1,
        "-ERR SCRIPT DEBUG must be called outside a pipeline\r\n"
    );
    assert_eq!(seen[1], seen[0]);
}

/// On a replica a script is judged by the flags it declared, as Redis's
/// getCommandFlags does: one that may write is refused on a read-only
/// replica before it runs (a function without flags too, and inside
/// EXEC), and on a replica cut off from its master with
/// `replica-serve-stale-data no`, only `allow-stale` scripts run, and
/// only commands allowed on a stale replica inside them. Replies compared
/// with redis-server's.
#[test]
fn script_flags_decide_on_a_replica_as_on_redis() {
    let mut all = Vec::new();
    for kind in [Server::Redis, Server::Datanode] {
        let master = Node::start(kind, &["--save", "", "--repl-diskless-sync-delay", "0"]);
        let mut m = master.conn();
        m.text(&["SET", "x", "some value"]);
        let lib = "#!lua name=lib\nredis.register_function('w', function() return redis.call('set','y','1') end)\nredis.register_function{function_name='r', callback=function() return redis.call('get','x') end, flags={'no-writes'}}";
        assert_eq!(m.text(&["FUNCTION", "LOAD", lib]), "$3\r\nlib\r\n");
        let replica = Node::start(kind, &["--save", ""]);
        let mut r = replica.conn();
        let port = master.port.to_string();
        r.text(&["REPLICAOF", "127.0.0.1", &port]);
        wait_until("the replica syncs", || {
            r.info_field("replication", "master_link_status") == "up"
                && r.text(&["GET", "x"]) == "$10\r\nsome value\r\n"
        });
        let mut seen = Vec::new();
        let cmds: &[&[&str]] = &[
            &["EVAL", "#!lua\nreturn 1", "0"],
            &[
                "EVAL",
                "#!lua flags=no-writes\nreturn redis.call('get','x')",
                "1",
                "x",
            ],
            &["EVAL", "return redis.call('get','x')", "1", "x"],
            &["FCALL", "w", "0"],
            &["FCALL", "r", "0"],
            &["FCALL_RO", "r", "0"],
            &["MULTI"],
            &["EVAL", "#!lua\nreturn 1", "0"],
            &["EXEC"],
        ];
        for c in cmds {
            seen.push(r.text(c));
        }
        // Cut off from its master, serving no stale data.
        r.text(&["CONFIG", "SET", "replica-serve-stale-data", "no"]);
        let nowhere = slotkv_tests::free_port().to_string();
        r.text(&["REPLICAOF", "127.0.0.1", &nowhere]);
        let stale: &[&[&str]] = &[
            &["EVAL", "return redis.call('get','x')", "1", "x"],
            &["EVAL", "#!lua flags=no-writes\nreturn 1", "0"],
            &["EVAL", "#!lua flags=allow-stale,no-writes\nreturn 1", "0"],
            &[
                "EVAL",
                "#!lua flags=allow-stale,no-writes\nreturn redis.call('get','x')",
                "1",
                "x",
            ],
            &[
                "EVAL",
                "#!lua flags=allow-stale,no-writes\nreturn redis.call('echo','foobar')",
                "0",
            ],
            &["FCALL", "r", "0"],
        ];
        for c in stale {
            seen.push(r.text(c));
        }
        all.push(seen);
    }
    assert_eq!(all[0], all[1]);
    assert!(
        all[1][0].starts_with("-READONLY You can't write"),
        "{:?}",
        all[1]
    );
    assert!(
        all[1][12].starts_with("-ERR Can not execute the command on a stale replica"),
        "{:?}",
        all[1]
    );
}
