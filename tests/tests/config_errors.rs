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
        &["at line 1", "Bad directive or wrong number of arguments"],
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
        out.contains("command line") && out.contains("port -1"),
        "{out}"
    );
}
