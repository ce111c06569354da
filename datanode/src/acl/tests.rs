use std::sync::Arc;

use super::catalog::category_bit;
use super::selector::{Request, READ, WRITE};
use super::*;

fn cat_of(names: &[&'static str]) -> u32 {
    names
        .iter()
        .map(|n| category_bit(n.as_bytes()).unwrap_or(0))
        .fold(0, |a, b| a | b)
}

/// A small command table: reads, writes, a container, pub/sub.
fn catalog() -> Arc<Catalog> {
    let e = |name, cats: &[&'static str], parent| Entry {
        name,
        categories: cat_of(cats),
        parent,
        no_auth: false,
    };
    Arc::new(Catalog::new(vec![
        e("get", &["read", "string", "fast"], None),
        e("set", &["write", "string", "slow"], None),
        e("config", &["slow"], None),
        e("config|get", &["admin", "slow", "dangerous"], Some(2)),
        e("config|set", &["admin", "slow", "dangerous"], Some(2)),
        e("select", &["fast", "connection"], None),
        e("strlen", &["read", "string", "fast"], None),
        e("del", &["write", "keyspace", "slow"], None),
        e("publish", &["pubsub", "fast"], None),
        Entry {
            name: "auth",
            categories: cat_of(&["fast", "connection"]),
            parent: None,
            no_auth: true,
        },
    ]))
}

fn describe(acl: &Acl, name: &[u8]) -> String {
    String::from_utf8_lossy(&acl.user(name).expect("user").describe(&acl.cat)).into_owned()
}

fn check(acl: &Acl, user: &[u8], args: &[&[u8]], keys: Vec<(usize, u8)>) -> Result<(), Denied> {
    let u = acl.user(user).expect("user");
    let name = std::str::from_utf8(args[0])
        .expect("utf8")
        .to_ascii_lowercase();
    let id = acl.cat.lookup(name.as_bytes()).expect("command");
    let channels: Vec<(usize, bool)> = if name == "publish" {
        vec![(1, false)]
    } else {
        Vec::new()
    };
    let k = move || keys.clone();
    u.check(
        &acl.cat,
        &Request {
            id,
            args: &args,
            keys: &k,
            channels: &channels,
        },
    )
}

#[test]
fn default_and_new_users_describe_as_redis_does() {
    let acl = Acl::new(catalog());
    assert_eq!(describe(&acl, b"default"), "on nopass ~* &* +@all");
    acl.set_user(b"bob", &[]).expect("set");
    assert_eq!(describe(&acl, b"bob"), "off resetchannels -@all");
    acl.set_user(
        b"bob",
        &[b"on", b">foobar", b"%R~r*", b"~k*", b"&ch", b"+get"],
    )
    .expect("set");
    assert_eq!(
        describe(&acl, b"bob"),
        "on #c3ab8ff13720e8ad9047dd39466b3c8974e592c2fa383d4a3960714caef0c4f2 %R~r* ~k* resetchannels &ch -@all +get"
    );
}

#[test]
fn categories_are_chosen_before_single_commands() {
    let acl = Acl::new(catalog());
    acl.set_user(b"u", &[b"+@string"]).expect("set");
    assert_eq!(describe(&acl, b"u"), "off resetchannels -@all +@string");
    acl.set_user(b"u", &[b"-set"]).expect("set");
    // `get` alone: @read covers it best.
    assert_eq!(describe(&acl, b"u"), "off resetchannels -@all +@read");
    acl.set_user(b"v", &[b"+@all", b"-config|set"])
        .expect("set");
    assert_eq!(describe(&acl, b"v"), "off resetchannels +@all -config|set");
    acl.set_user(b"w", &[b"+select|0", b"+select|1"])
        .expect("set");
    assert_eq!(
        describe(&acl, b"w"),
        "off resetchannels -@all +select|0 +select|1"
    );
}

#[test]
fn rule_errors_leave_the_user_unchanged() {
    let acl = Acl::new(catalog());
    acl.set_user(b"u", &[b"on", b"+get"]).expect("set");
    let before = describe(&acl, b"u");
    let err = |ops: &[&[u8]]| acl.set_user(b"u", ops).expect_err("must fail");
    assert_eq!(
        err(&[b"+set", b"+nosuch"]),
        "Error in ACL SETUSER modifier '+nosuch': Unknown command or category name in ACL"
    );
    assert!(err(&[b"bogus"]).ends_with("Syntax error"));
    assert!(
        err(&[b"+config|get|x"]).ends_with("Allowing first-arg of a subcommand is not supported")
    );
    assert!(err(&[b"-select|0"]).ends_with("Unknown command or category name in ACL"));
    assert!(err(&[b"+select|"]).ends_with("Syntax error"));
    assert!(err(&[b"~*", b"~x"]).contains("'allkeys' flag"));
    assert!(err(&[b"&*", b"&x"]).contains("'allchannels' flag"));
    assert!(err(&[b"<nopass"]).contains("does not exist"));
    assert!(err(&[b"#abc"]).contains("exactly 64 characters"));
    assert_eq!(
        err(&[b"(~x", b"+get"]),
        "Unmatched parenthesis in acl selector starting at '(~x'."
    );
    assert_eq!(describe(&acl, b"u"), before);
    assert!(acl.set_user(b"a b", &[]).is_err());
    assert!(acl.user(b"a b").is_none());
}

#[test]
fn commands_keys_and_channels_are_checked() {
    let acl = Acl::new(catalog());
    acl.set_user(
        b"u",
        &[
            b"on",
            b"+get",
            b"+set",
            b"%R~r*",
            b"%W~w*",
            b"&news*",
            b"+publish",
        ],
    )
    .expect("set");
    assert!(check(&acl, b"u", &[b"get", b"r1"], vec![(1, READ)]).is_ok());
    assert_eq!(
        check(&acl, b"u", &[b"get", b"w1"], vec![(1, READ)]),
        Err(Denied {
            reason: Reason::Key,
            pos: 1
        })
    );
    assert!(check(&acl, b"u", &[b"set", b"w1", b"v"], vec![(1, WRITE)]).is_ok());
    assert!(check(&acl, b"u", &[b"set", b"r1", b"v"], vec![(1, WRITE)]).is_err());
    assert_eq!(
        check(&acl, b"u", &[b"config", b"get", b"x"], vec![]),
        Err(Denied {
            reason: Reason::Command,
            pos: 0
        })
    );
    assert!(check(&acl, b"u", &[b"publish", b"news1", b"m"], vec![]).is_ok());
    assert_eq!(
        check(&acl, b"u", &[b"publish", b"other", b"m"], vec![]).map_err(|d| d.reason),
        Err(Reason::Channel)
    );
    // A no-auth command is never refused for its name.
    assert!(check(&acl, b"u", &[b"auth", b"x"], vec![]).is_ok());
}

#[test]
fn a_selector_adds_to_the_root_and_first_args_narrow_a_command() {
    let acl = Acl::new(catalog());
    acl.set_user(
        b"u",
        &[b"on", b"+get", b"~a*", b"(~b*", b"+set)", b"+select|0"],
    )
    .expect("set");
    assert_eq!(
        describe(&acl, b"u"),
        "on ~a* resetchannels -@all +get +select|0 (~b* resetchannels -@all +set)"
    );
    assert!(check(&acl, b"u", &[b"set", b"b1", b"v"], vec![(1, WRITE)]).is_ok());
    // Neither selector allows SET on a*: the key is the more specific
    // reason.
    assert_eq!(
        check(&acl, b"u", &[b"set", b"a1", b"v"], vec![(1, WRITE)]).map_err(|d| d.reason),
        Err(Reason::Key)
    );
    assert!(check(&acl, b"u", &[b"select", b"0"], vec![]).is_ok());
    assert!(check(&acl, b"u", &[b"select", b"1"], vec![]).is_err());
    acl.set_user(b"u", &[b"clearselectors"]).expect("set");
    assert!(check(&acl, b"u", &[b"set", b"b1", b"v"], vec![(1, WRITE)]).is_err());
}

#[test]
fn passwords_are_hashed_and_checked() {
    let acl = Acl::new(catalog());
    acl.set_user(b"u", &[b"on", b">p1", b">p2", b"<p1"])
        .expect("set");
    assert!(acl.authenticate(b"u", b"p2").is_some());
    assert!(acl.authenticate(b"u", b"p1").is_none());
    acl.set_user(b"u", &[b"off"]).expect("set");
    assert!(acl.authenticate(b"u", b"p2").is_none());
    assert!(acl.authenticate(b"nosuch", b"x").is_none());
    assert!(!acl.auth_required());
    acl.set_default_password(Some(b"secret"));
    assert!(acl.auth_required());
    assert!(acl.authenticate(b"default", b"secret").is_some());
    acl.set_default_password(None);
    assert!(!acl.auth_required());
}

#[test]
fn the_acl_file_loads_all_or_nothing_and_saves_what_it_loads() {
    let dir = std::env::temp_dir().join(format!("acl-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let path = dir.join("users.acl");
    let acl = Acl::new(catalog());
    std::fs::write(
        &path,
        "user alice on >pw ~a* +get\n\nuser bob off +nosuch\n",
    )
    .expect("write");
    let err = acl.load_file(&path, "users.acl").expect_err("bad file");
    assert!(
        err.contains("users.acl:3: Error in applying operation '+nosuch'"),
        "{err}"
    );
    assert!(err.ends_with("no change to the previously active ACL rules was performed"));
    assert!(acl.user(b"alice").is_none());
    std::fs::write(&path, "user alice on >pw ~a* +get\n").expect("write");
    acl.load_file(&path, "users.acl").expect("load");
    assert!(acl.authenticate(b"alice", b"pw").is_some());
    // `default` comes back as a fresh server has it.
    assert_eq!(describe(&acl, b"default"), "on nopass ~* &* +@all");
    acl.save_file(&path).expect("save");
    let text = std::fs::read_to_string(&path).expect("read");
    assert_eq!(
        text,
        "user alice on #30c952fab122c3f9759f02a6d95c3758b246b4fee239957b2d4fee46e26170c4 ~a* resetchannels -@all +get\nuser default on nopass ~* &* +@all\n"
    );
    let again = Acl::new(catalog());
    again.load_file(&path, "users.acl").expect("reload");
    assert_eq!(again.file_text(), acl.file_text());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_log_folds_repeats_and_keeps_the_newest() {
    let mut log = log::Log::default();
    let e = |obj: &str, t: i64| log::Entry {
        count: 1,
        reason: Reason::Key,
        context: log::Context::Toplevel,
        object: obj.as_bytes().to_vec(),
        username: b"u".to_vec(),
        ctime: t,
        client_info: String::new(),
    };
    log.add(e("a", 0), 3);
    log.add(e("a", 1000), 3);
    assert_eq!(log.len(), 1);
    assert_eq!(log.iter().next().map(|x| x.count), Some(2));
    log.add(e("a", 100_000), 3);
    log.add(e("b", 100_000), 3);
    log.add(e("c", 100_000), 3);
    assert_eq!(log.len(), 3);
    let objects: Vec<&[u8]> = log.iter().map(|x| x.object.as_slice()).collect();
    assert_eq!(objects, vec![b"c".as_slice(), b"b", b"a"]);
}
