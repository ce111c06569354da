//! ACL users against real processes: the ACL file survives a kill -9 and
//! a restart, `user` directives apply at start (and a bad one stops the
//! server, naming its file and line), deleting or reloading users closes
//! their connections, the ACL log records what was refused, and replicas
//! log in with `masteruser`/`masterauth`, redis-server ones included.

use std::time::{Duration, Instant};

use slotkv_tests::{start_expect_failure, Conn, Node, Reply, Server};

fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A config file with `lines`, in a directory that outlives the node.
fn config_file(lines: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("node.conf");
    std::fs::write(&path, lines).expect("write config");
    (dir, path)
}

fn authed(node: &Node, user: &str, pass: &str) -> Conn {
    let mut c = node.conn();
    assert_eq!(c.text(&["AUTH", user, pass]), "+OK\r\n");
    c
}

#[test]
fn users_saved_to_the_acl_file_survive_kill_9_and_a_restart() {
    let (cfgdir, _) = config_file("");
    let aclfile = cfgdir.path().join("users.acl");
    std::fs::write(&aclfile, "").expect("empty acl file");
    let conf = cfgdir.path().join("node.conf");
    std::fs::write(&conf, format!("aclfile {}\n", aclfile.display())).expect("config");
    let mut n = Node::start_with_config(Server::Datanode, Some(&conf), &[]);
    let mut admin = n.conn();
    assert_eq!(
        admin.text(&["ACL", "SETUSER", "alice", "on", ">wonder", "~a:*", "+get", "+set"]),
        "+OK\r\n"
    );
    assert_eq!(admin.text(&["ACL", "SAVE"]), "+OK\r\n");
    let saved = std::fs::read_to_string(&aclfile).expect("acl file");
    assert!(saved.starts_with("user alice on #"), "{saved}");
    assert!(!saved.contains("wonder"), "the password is stored hashed");
    n.signal_and_wait("-9");
    n.restart();
    let mut a = authed(&n, "alice", "wonder");
    assert_eq!(a.text(&["SET", "a:1", "v"]), "+OK\r\n");
    assert_eq!(
        a.text(&["SET", "b:1", "v"]),
        "-NOPERM this user has no permissions to access one of the keys used as arguments\r\n"
    );
    assert_eq!(
        a.text(&["DEL", "a:1"]),
        "-NOPERM this user has no permissions to run the 'del' command\r\n"
    );
    // ACL LOAD replaces the users with the file's, and closes the
    // connections of every user but `default`.
    std::fs::write(&aclfile, "user alice on >other ~* +@all\n").expect("rewrite");
    let mut admin = n.conn();
    assert_eq!(admin.text(&["ACL", "LOAD"]), "+OK\r\n");
    wait_until("alice's connection to close", || a.is_closed());
    authed(&n, "alice", "other");
    // A broken file changes nothing and says where it is broken.
    std::fs::write(&aclfile, "user alice on >third +nosuch\n").expect("rewrite");
    let err = admin.text(&["ACL", "LOAD"]);
    assert!(
        err.contains("users.acl:1: Error in applying operation '+nosuch'"),
        "{err}"
    );
    authed(&n, "alice", "other");
}

#[test]
fn user_directives_apply_at_start_and_a_bad_one_names_its_line() {
    let (_dir, conf) = config_file(
        "# two users\nuser bob on >builder ~b:* &news +get +publish\nrequirepass topsecret\n",
    );
    let n = Node::start_with_config(Server::Datanode, Some(&conf), &[]);
    let mut anon = n.conn();
    assert_eq!(
        anon.text(&["GET", "x"]),
        "-NOAUTH Authentication required.\r\n"
    );
    let mut b = authed(&n, "bob", "builder");
    assert_eq!(
        b.text(&["ACL", "WHOAMI"]),
        "-NOPERM this user has no permissions to run the 'acl|whoami' command\r\n"
    );
    assert_eq!(b.text(&["GET", "b:1"]), "$-1\r\n");
    assert_eq!(b.text(&["PUBLISH", "news", "m"]), ":0\r\n");
    assert_eq!(
        b.text(&["PUBLISH", "sport", "m"]),
        "-NOPERM this user has no permissions to access one of the channels used as arguments\r\n"
    );
    let mut d = authed(&n, "default", "topsecret");
    assert_eq!(d.text(&["ACL", "WHOAMI"]), "$7\r\ndefault\r\n");

    let (dir, bad) = config_file("port 0\nuser eve on >x +nosuchcommand\n");
    let (code, out) =
        start_expect_failure(Server::Datanode, &[bad.to_str().expect("path")], dir.path());
    assert_ne!(code, 0);
    assert!(out.contains("node.conf"), "{out}");
    assert!(out.contains("at line 2"), "{out}");
    assert!(out.contains("user eve on >x +nosuchcommand"), "{out}");
    assert!(
        out.contains("Unknown command or category name in ACL"),
        "{out}"
    );
}

#[test]
fn deleting_a_user_closes_its_connections_and_refusals_are_logged() {
    let n = Node::start(Server::Datanode, &[]);
    let mut admin = n.conn();
    assert_eq!(
        admin.text(&["ACL", "SETUSER", "carol", "on", ">c", "%R~r:*", "+get"]),
        "+OK\r\n"
    );
    let mut c = authed(&n, "carol", "c");
    assert!(c.text(&["GET", "w:1"]).starts_with("-NOPERM"));
    assert!(c
        .text(&["AUTH", "carol", "wrong"])
        .starts_with("-WRONGPASS"));
    let log = admin.cmd(&["ACL", "LOG"]).expect("log").tree;
    let Reply::Agg(_, entries) = log else {
        panic!("ACL LOG: {log:?}");
    };
    assert_eq!(entries.len(), 2, "{entries:?}");
    let field = |e: &Reply, name: &str| -> Vec<u8> {
        let Reply::Agg(_, kv) = e else {
            panic!("entry {e:?}")
        };
        let i = kv
            .iter()
            .position(|k| matches!(k, Reply::Scalar(_, v) if v == name.as_bytes()))
            .expect("field");
        match &kv[i + 1] {
            Reply::Scalar(_, v) => v.clone(),
            other => panic!("{other:?}"),
        }
    };
    // Newest first: the failed login, then the refused key.
    assert_eq!(field(&entries[0], "reason"), b"auth");
    assert_eq!(field(&entries[0], "object"), b"AUTH");
    assert_eq!(field(&entries[1], "reason"), b"key");
    assert_eq!(field(&entries[1], "object"), b"w:1");
    assert_eq!(field(&entries[1], "username"), b"carol");
    assert_eq!(field(&entries[1], "context"), b"toplevel");
    assert!(String::from_utf8_lossy(&field(&entries[1], "client-info")).contains("user=carol"));
    assert_eq!(admin.text(&["ACL", "DELUSER", "carol", "nobody"]), ":1\r\n");
    wait_until("carol's connection to close", || c.is_closed());
}

/// A master that only lets user `repl` replicate; the replica logs in
/// with masteruser/masterauth and gets the data.
fn replicate_as_user(master_kind: Server, replica_kind: Server) {
    let master = Node::start(master_kind, &["--requirepass", "adminpw"]);
    let mut m = authed(&master, "default", "adminpw");
    assert_eq!(
        m.text(&[
            "ACL",
            "SETUSER",
            "repl",
            "on",
            ">replpw",
            "+psync",
            "+replconf",
            "+ping",
            "+sync"
        ]),
        "+OK\r\n"
    );
    assert_eq!(m.text(&["SET", "before", "1"]), "+OK\r\n");
    let replica = Node::start(
        replica_kind,
        &["--masteruser", "repl", "--masterauth", "replpw"],
    );
    let mut r = replica.conn();
    let port = master.port.to_string();
    assert_eq!(r.text(&["REPLICAOF", "127.0.0.1", &port]), "+OK\r\n");
    wait_until("the link to come up", || {
        r.info_field("replication", "master_link_status") == "up"
    });
    assert_eq!(m.text(&["SET", "after", "2"]), "+OK\r\n");
    wait_until("the stream on the replica", || {
        r.text(&["GET", "after"]) == "$1\r\n2\r\n"
    });
    assert_eq!(r.text(&["GET", "before"]), "$1\r\n1\r\n");
    // The replication user can do nothing else.
    let mut as_repl = authed(&master, "repl", "replpw");
    assert!(as_repl.text(&["GET", "before"]).starts_with("-NOPERM"));
}

#[test]
fn a_redis_server_replica_logs_in_to_datanode_as_a_user() {
    replicate_as_user(Server::Datanode, Server::Redis);
}

#[test]
fn a_datanode_replica_logs_in_to_redis_server_as_a_user() {
    replicate_as_user(Server::Redis, Server::Datanode);
}

#[test]
fn a_datanode_replica_logs_in_to_datanode_as_a_user() {
    replicate_as_user(Server::Datanode, Server::Datanode);
}

/// A password-protected cluster: redis-cli creates it and adds a replica
/// with `-a`, and the replica syncs from its master as the `repl` user
/// (masteruser/masterauth) while the cluster bus needs no password.
#[test]
fn a_cluster_with_passwords_syncs_its_replica_as_a_user() {
    use slotkv_tests::cluster::{redis_cli, Cluster};
    let cluster = Cluster::start(
        &[Server::Datanode; 4],
        2000,
        &[
            "--requirepass",
            "adminpw",
            "--masteruser",
            "repl",
            "--masterauth",
            "replpw",
            "--user",
            "repl",
            "on",
            ">replpw",
            "+psync",
            "+replconf",
            "+ping",
        ],
    );
    let addrs = cluster.addrs();
    let mut args: Vec<&str> = vec!["-a", "adminpw", "--no-auth-warning", "--cluster", "create"];
    args.extend(addrs[..3].iter().map(|s| s.as_str()));
    args.push("--cluster-yes");
    let (ok, out) = redis_cli(&args);
    assert!(ok, "cluster create failed:\n{out}");
    let (ok, out) = redis_cli(&[
        "-a",
        "adminpw",
        "--no-auth-warning",
        "--cluster",
        "add-node",
        &addrs[3],
        &addrs[0],
        "--cluster-slave",
    ]);
    assert!(ok, "add-node failed:\n{out}");
    let mut replica = authed(&cluster.nodes[3], "default", "adminpw");
    wait_until("the replica's link to its master", || {
        replica.info_field("replication", "master_link_status") == "up"
    });
    let master_port = replica.info_field("replication", "master_port");
    let master = cluster
        .nodes
        .iter()
        .find(|n| n.port.to_string() == master_port)
        .expect("the replica's master is one of ours");
    let mut m = authed(master, "default", "adminpw");
    // A key of the master's own slots.
    let key = (0..10_000)
        .map(|i| format!("k{i}"))
        .find(|k| m.text(&["SET", k, "v"]) == "+OK\r\n")
        .expect("a key the master serves");
    assert_eq!(replica.text(&["READONLY"]), "+OK\r\n");
    wait_until("the write on the replica", || {
        replica.text(&["GET", &key]) == "$1\r\nv\r\n"
    });
    let (ok, out) = redis_cli(&[
        "-a",
        "adminpw",
        "--no-auth-warning",
        "--cluster",
        "check",
        &addrs[0],
    ]);
    assert!(ok && out.contains("[OK] All 16384 slots covered."), "{out}");
}

/// Without an ACL file, CONFIG REWRITE writes the users as `user` lines
/// (the first in place of the old ones, as redis-server), so a restart
/// keeps ACL SETUSER's changes.
#[test]
fn config_rewrite_keeps_the_users() {
    let (_dir, conf) = config_file("user old on >o +@all ~*\n# after the users\nappendonly no\n");
    let mut n = Node::start_with_config(Server::Datanode, Some(&conf), &[]);
    let mut c = n.conn();
    assert_eq!(
        c.text(&["ACL", "SETUSER", "new", "on", ">n", "+get", "~k*"]),
        "+OK\r\n"
    );
    assert_eq!(c.text(&["ACL", "DELUSER", "old"]), ":1\r\n");
    assert_eq!(c.text(&["CONFIG", "REWRITE"]), "+OK\r\n");
    let text = std::fs::read_to_string(&conf).expect("config");
    // As redis-server: the first user takes the old line, the others go
    // after the signature with the other new lines.
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "user default on nopass ~* &* +@all", "{text}");
    assert_eq!(lines[1], "# after the users", "{text}");
    let signature = text
        .find("# Generated by CONFIG REWRITE")
        .expect("signature");
    let new_user = text.find("\nuser new on #").expect("the new user");
    assert!(new_user > signature, "{text}");
    assert!(!text.contains("user old"), "{text}");
    n.signal_and_wait("-TERM");
    n.restart();
    let mut u = authed(&n, "new", "n");
    assert_eq!(u.text(&["GET", "k1"]), "$-1\r\n");
    assert!(u.text(&["SET", "k1", "v"]).starts_with("-NOPERM"));
    let mut c = n.conn();
    assert!(c.text(&["AUTH", "old", "o"]).starts_with("-WRONGPASS"));
}
