//! A malformed configuration stops start-up with a message naming the
//! file, the line and the directive.

use slotkv_tests::process::start_expect_failure;
use slotkv_tests::Server;

fn fails_with(conf: &str, expect: &[&str]) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("redis.conf");
    std::fs::write(&path, conf).expect("write conf");
    let p = path.display().to_string();
    let (code, out) = start_expect_failure(Server::Datanode, &[&p], dir.path());
    assert_ne!(code, 0, "datanode started with a bad config:\n{conf}");
    assert!(out.contains(&p), "message does not name the file:\n{out}");
    for e in expect {
        assert!(out.contains(e), "message lacks {e:?}:\n{out}");
    }
}

#[test]
fn unknown_directive() {
    fails_with(
        "port 7000\nnosuchthing yes\n",
        &["at line 2", ">>> 'nosuchthing yes'", "Bad directive"],
    );
}

#[test]
fn bad_values() {
    fails_with(
        "# comment\n\nappendonly maybe\n",
        &["at line 3", "appendonly maybe", "'yes' or 'no'"],
    );
    fails_with(
        "port 70000\n",
        &["at line 1", "port 70000", "between 0 and 65535"],
    );
    fails_with("maxmemory lots\n", &["maxmemory lots", "memory value"]);
    fails_with(
        "appendfsync sometimes\n",
        &["appendfsync sometimes", "everysec, always, no"],
    );
    fails_with("save 60\n", &["save 60", "Invalid save parameters"]);
}

#[test]
fn wrong_argument_count_and_quotes() {
    fails_with(
        "port\n",
        &["at line 1", ">>> 'port'", "wrong number of arguments"],
    );
    fails_with(
        "requirepass \"unterminated\n",
        &["at line 1", "Unbalanced quotes"],
    );
}

#[test]
fn command_line_overrides_are_checked_too() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (code, out) = start_expect_failure(Server::Datanode, &["--port", "-1"], dir.path());
    assert_ne!(code, 0);
    assert!(
        out.contains("command line") && out.contains("port \"-1\""),
        "{out}"
    );
}

/// The command line is read as redis-server reads it (`--port --loglevel`
/// gives port two values, `"--maxmemory 700mb"` is a name with its value),
/// and the errors quote the values as Redis's do: the same line and reason
/// from both servers (Redis's unit/introspection).
#[test]
fn command_line_arguments_are_read_as_redis_reads_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cases: &[&[&str]] = &[
        &["--port"],
        &["--port", "6380", "--loglevel"],
        &["--port", "6379", "6380"],
        &["--port", "--loglevel", "verbose"],
        &["--port", "--bla", "--loglevel", "verbose"],
        &["--logfile", "--my--log--file", "--loglevel", "--bla"],
        &["--shutdown-on-sigint"],
        &["--shutdown-on-sigint", "now force", "--shutdown-on-sigterm"],
        &["--replicaof", "127.0.0.1", "abc"],
        &["--replicaof", "--127.0.0.1", "abc"],
        &["--replicaof", "--127.0.0.1", "--abc"],
        &["--maxmemory 700mb", "--maxmemory-policy bogus"],
    ];
    // The quoted line and the reason: what follows `>>> `.
    let reason = |out: &str| -> String {
        let at = out
            .find(">>> ")
            .unwrap_or_else(|| panic!("no error line in:\n{out}"));
        out[at..].lines().take(2).collect::<Vec<_>>().join("\n")
    };
    for args in cases {
        let (rc, redis) = start_expect_failure(Server::Redis, args, dir.path());
        assert_ne!(rc, 0, "redis-server started with {args:?}");
        let (rc, ours) = start_expect_failure(Server::Datanode, args, dir.path());
        assert_ne!(rc, 0, "datanode started with {args:?}");
        assert_eq!(reason(&ours), reason(&redis), "{args:?}");
    }
}
