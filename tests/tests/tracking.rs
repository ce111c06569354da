//! Client-side caching (CLIENT TRACKING): the same scripted scenarios run
//! against redis-server and datanode, with several connections each; every
//! reply and every invalidation message each connection receives must be
//! the same, in the same order.
//!
//! Script lines: `N CMD …` runs CMD on connection N and reads up to its
//! reply (pushes that arrive first are recorded with it); `N -CMD …` does
//! the same without recording what it answers (HELLO, CLIENT ID: they show
//! ids and versions); `N ~` sends PING to connection N and records what
//! arrived before the PONG (a server writes queued messages before the
//! reply to a later command, so this waits for them without sleeping);
//! `N @info` records the tracking lines of INFO. `$IDk` in an argument is
//! connection k's client id; ids in what is recorded are shown as `$IDk`.

use slotkv_tests::{encode, split_line, Conn, Node, Reply, Server};

struct Side {
    node: Node,
    conns: Vec<Conn>,
    ids: Vec<i64>,
}

impl Side {
    fn start(kind: Server) -> Side {
        let node = Node::start(kind, &["--save", "", "--enable-debug-command", "yes"]);
        Side {
            node,
            conns: Vec::new(),
            ids: Vec::new(),
        }
    }

    fn conn(&mut self, n: usize) -> &mut Conn {
        while self.conns.len() <= n {
            let mut c = self.node.conn();
            let id = match c.cmd(&["CLIENT", "ID"]).expect("client id").tree {
                Reply::Scalar(b':', v) => String::from_utf8_lossy(&v).parse().expect("id"),
                other => panic!("CLIENT ID answered {other:?}"),
            };
            self.conns.push(c);
            self.ids.push(id);
        }
        &mut self.conns[n]
    }

    /// Shows client ids as `$IDk`, so both servers' records compare (only
    /// where ids appear: CLIENT replies, tracking-redir-broken).
    fn normalise(&self, s: String, cmd: &str) -> String {
        if !cmd.starts_with("CLIENT") && !s.contains("tracking-redir-broken") {
            return s;
        }
        let mut s = s;
        for (k, id) in self.ids.iter().enumerate() {
            s = s.replace(&format!(":{id}\r\n"), &format!(":$ID{k}\r\n"));
        }
        s
    }
}

fn is_push(r: &Reply) -> bool {
    matches!(r, Reply::Agg(b'>', _))
}

fn is_pong(r: &Reply) -> bool {
    match r {
        Reply::Scalar(b'+', v) => v == b"PONG",
        // PING in RESP2 Pub/Sub mode.
        Reply::Agg(_, items) => {
            matches!(items.first(), Some(Reply::Scalar(_, v)) if v == b"pong")
        }
        _ => false,
    }
}

fn run(kind: Server, script: &str) -> Vec<String> {
    let mut side = Side::start(kind);
    let mut log = Vec::new();
    for line in script.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (n, rest) = line.split_once(' ').expect("N CMD");
        let n: usize = n.parse().expect("connection number");
        side.conn(n);
        if rest == "~" {
            let c = &mut side.conns[n];
            c.send_raw(&encode(&["PING"])).expect("send");
            let mut got = String::new();
            loop {
                let r = c.read_reply().expect("reply before PONG");
                if is_pong(&r.tree) {
                    break;
                }
                got.push_str(&String::from_utf8_lossy(&r.raw));
            }
            let got = side.normalise(got, "");
            log.push(format!("{n} ~ -> {got}"));
            continue;
        }
        if rest == "@info" {
            let info = side.conns[n].text(&["INFO", "everything"]);
            let lines: Vec<&str> = info
                .split("\r\n")
                .filter(|l| l.starts_with("tracking_"))
                .collect();
            log.push(format!("{n} info -> {lines:?}"));
            continue;
        }
        let (quiet, cmd) = match rest.strip_prefix('-') {
            Some(c) => (true, c),
            None => (false, rest),
        };
        let mut args = split_line(cmd).expect("script line");
        for a in args.iter_mut() {
            if let Some(k) = a.strip_prefix(b"$ID") {
                let k: usize = String::from_utf8_lossy(k).parse().expect("$IDk");
                side.conn(k);
                *a = side.ids[k].to_string().into_bytes();
            }
        }
        let c = &mut side.conns[n];
        c.send_raw(&encode(&args)).expect("send");
        let mut got = String::new();
        loop {
            let r = c.read_reply().expect("reply");
            got.push_str(&String::from_utf8_lossy(&r.raw));
            if !is_push(&r.tree) {
                break;
            }
        }
        if !quiet {
            let got = side.normalise(got, cmd);
            log.push(format!("{n} {cmd} -> {got}"));
        }
    }
    log
}

fn same_on_both(script: &str) {
    let want = run(Server::Redis, script);
    let got = run(Server::Datanode, script);
    for (i, (w, g)) in want.iter().zip(got.iter()).enumerate() {
        assert_eq!(w, g, "step {i} differs (redis-server vs datanode)");
    }
    assert_eq!(want.len(), got.len());
}

#[test]
fn resp3_self_and_other_invalidation() {
    same_on_both(
        r#"
0 -HELLO 3
0 CLIENT TRACKING on
0 GET k
1 SET k v
0 ~
# forgotten once invalidated: no second message
1 SET k v2
0 ~
# the client's own write: reply first, then the invalidation
0 MGET k k2 k3
0 SET k v3
0 ~
0 MSET k2 a k3 b
0 ~
# inside a transaction: after EXEC's reply
0 GET a
0 GET b
0 MULTI
0 INCR a
0 GET b
0 EXEC
0 ~
# hashes, lists: in-place changes invalidate too
0 HSET h f 1
0 HGET h f
0 HDEL h f
0 ~
0 RPUSH l x
0 LRANGE l 0 -1
1 LPUSH l y
0 ~
# expiry found by a read is reported after that read's reply
0 -DEBUG SET-ACTIVE-EXPIRE 0
0 SET e v PX 200
0 GET e
0 -DEBUG SLEEP 0.3
0 GET e
0 ~
0 -DEBUG SET-ACTIVE-EXPIRE 1
# write commands do not track what they touch
0 SET w 1
1 SET w 2
0 ~
# flushes: a null invalidation to every tracking client
0 GET k
1 FLUSHDB
0 ~
0 FLUSHALL
0 ~
0 CLIENT TRACKINGINFO
0 CLIENT GETREDIR
0 CLIENT TRACKING off
0 CLIENT TRACKINGINFO
0 CLIENT GETREDIR
"#,
    );
}

#[test]
fn resp2_redirect_to_subscriber() {
    same_on_both(
        r#"
1 SUBSCRIBE __redis__:invalidate
0 CLIENT TRACKING on REDIRECT $ID1
0 CLIENT GETREDIR
0 CLIENT TRACKINGINFO
0 SET a 1
0 SET b 1
0 GET a
0 INCR b
0 INCR a
1 ~
2 MGET x y
2 -HELLO 3
2 CLIENT TRACKING on REDIRECT $ID1
2 GET x
3 SET x 1
1 ~
# a RESP2 client tracking without redirect gets nothing
4 CLIENT TRACKING on
4 GET z
3 SET z 1
4 ~
0 GET a
3 FLUSHALL
1 ~
0 @info
"#,
    );
}

#[test]
fn redirect_to_resp3_client_and_broken_redirect() {
    same_on_both(
        r#"
1 -HELLO 3
0 -HELLO 3
0 CLIENT TRACKING on REDIRECT $ID1
0 GET k
2 SET k 1
1 ~
0 GET k
1 -QUIT
2 SET k 2
0 ~
0 CLIENT TRACKINGINFO
"#,
    );
}

#[test]
fn bcast_prefixes() {
    same_on_both(
        r#"
0 -HELLO 3
0 CLIENT TRACKING on BCAST PREFIX a: PREFIX b:
1 MSET a:1 x b:1 y c:1 z
0 ~
0 MULTI
0 INCR a:1
0 INCR a:2
0 INCR b:1
0 INCR c:1
0 EXEC
0 ~
0 CLIENT TRACKING on BCAST PREFIX c:
1 SET c:9 1
0 ~
0 CLIENT TRACKING on BCAST PREFIX c
0 CLIENT TRACKING on BCAST PREFIX x PREFIX xy
0 CLIENT TRACKING on
0 CLIENT TRACKINGINFO
0 @info
0 CLIENT TRACKING off
0 CLIENT TRACKING on BCAST
1 SET anything 1
0 ~
0 SET mine 1
0 ~
"#,
    );
}

#[test]
fn optin_optout_noloop() {
    same_on_both(
        r#"
0 -HELLO 3
0 CLIENT TRACKING on OPTIN
0 GET k1
0 CLIENT CACHING yes
0 CLIENT TRACKINGINFO
0 GET k2
0 GET k3
1 MSET k1 a k2 b k3 c
0 ~
0 CLIENT CACHING yes
0 MULTI
0 GET k1
0 GET k3
0 EXEC
1 MSET k1 a k2 b k3 c
0 ~
0 CLIENT CACHING no
0 CLIENT TRACKING on OPTOUT
0 CLIENT TRACKING off
0 CLIENT TRACKING on OPTOUT
0 GET k1
0 CLIENT CACHING no
0 GET k2
1 MSET k1 a k2 b
0 ~
0 CLIENT TRACKING off
0 CLIENT TRACKING on NOLOOP
0 MGET n1 n2
0 SET n1 1
1 SET n2 1
0 ~
0 CLIENT TRACKING off
0 CLIENT TRACKING on BCAST NOLOOP
0 SET n3 1
1 SET n4 1
0 ~
"#,
    );
}

#[test]
fn tracking_errors() {
    same_on_both(
        r#"
0 CLIENT TRACKING maybe
0 CLIENT TRACKING on FOO
0 CLIENT TRACKING on REDIRECT notanumber
0 CLIENT TRACKING on REDIRECT 987654
0 CLIENT TRACKING on PREFIX a
0 CLIENT TRACKING on OPTIN OPTOUT
0 CLIENT TRACKING on BCAST OPTIN
0 CLIENT TRACKING on BCAST PREFIX ab PREFIX a
0 CLIENT TRACKING on BCAST PREFIX a PREFIX ab
0 CLIENT CACHING yes
0 CLIENT TRACKING on OPTIN
0 CLIENT CACHING no
0 CLIENT CACHING maybe
0 CLIENT TRACKING on OPTOUT
0 CLIENT TRACKING on BCAST
0 CLIENT TRACKING off
0 CLIENT TRACKING off
0 CLIENT TRACKINGINFO
0 CLIENT GETREDIR
0 RESET
0 CLIENT TRACKING on
0 RESET
0 CLIENT TRACKINGINFO
0 @info
"#,
    );
}

#[test]
fn table_limit_evicts_tracked_keys() {
    // Which keys go is chance (as in Redis): count them instead.
    for kind in [Server::Redis, Server::Datanode] {
        let mut side = Side::start(kind);
        side.conn(1);
        let c = side.conn(0);
        c.cmd(&["HELLO", "3"]).expect("hello");
        assert_eq!(c.text(&["CLIENT", "TRACKING", "on"]), "+OK\r\n");
        for i in 0..20 {
            c.cmd(&["GET", &format!("key{i}")]).expect("get");
        }
        assert_eq!(
            side.conns[1].text(&["CONFIG", "SET", "tracking-table-max-keys", "5"]),
            "+OK\r\n"
        );
        // The next command (or the cron, before it) trims the table to 5
        // keys: the invalidations arrive before the PONG either way.
        let c = &mut side.conns[0];
        let mut invalidated = 0;
        c.send_raw(&encode(&["PING"])).expect("ping");
        loop {
            let r = c.read_reply().expect("reply");
            if is_push(&r.tree) {
                invalidated += 1;
            } else {
                break;
            }
        }
        let info = side.conns[1].text(&["INFO", "stats"]);
        assert!(
            info.contains("tracking_total_keys:5\r\n"),
            "{kind:?}: {info}"
        );
        assert_eq!(invalidated, 15, "{kind:?}");
    }
}

#[test]
fn eviction_invalidation_precedes_reply() {
    // A command that makes the server evict a key this client tracks gets
    // that key's invalidation before its own reply (Redis 7.0 too).
    for kind in [Server::Redis, Server::Datanode] {
        let mut side = Side::start(kind);
        side.conn(1);
        let c = side.conn(0);
        c.cmd(&["HELLO", "3"]).expect("hello");
        assert_eq!(c.text(&["CLIENT", "TRACKING", "on"]), "+OK\r\n");
        assert_eq!(c.text(&["SETEX", "vk", "10000", "x"]), "+OK\r\n");
        assert_eq!(c.text(&["GET", "vk"]), "$1\r\nx\r\n");
        let admin = &mut side.conns[1];
        let used: u64 = admin
            .info_field("memory", "used_memory")
            .parse()
            .expect("used_memory");
        let limit = (used + 100 * 1024).to_string();
        for (k, v) in [
            ("maxmemory-policy", "volatile-random"),
            ("maxmemory", limit.as_str()),
        ] {
            assert_eq!(admin.text(&["CONFIG", "SET", k, v]), "+OK\r\n");
        }
        // The 200 KB argument alone takes memory past the limit: the
        // volatile key goes, and the SET is still refused.
        let big = "x".repeat(200 * 1024);
        let c = &mut side.conns[0];
        c.send_raw(&encode(&["SET", "big", &big])).expect("send");
        let first = c.read_reply().expect("first reply");
        assert_eq!(
            String::from_utf8_lossy(&first.raw),
            ">2\r\n$10\r\ninvalidate\r\n*1\r\n$2\r\nvk\r\n",
            "{kind:?}"
        );
        let second = c.read_reply().expect("second reply");
        assert!(
            second.raw.starts_with(b"-OOM "),
            "{kind:?}: {:?}",
            second.raw
        );
        assert_eq!(
            side.conns[1].text(&["CONFIG", "SET", "maxmemory", "0"]),
            "+OK\r\n"
        );
    }
}
