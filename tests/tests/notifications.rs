//! Keyspace notifications: the same commands run against redis-server and
//! datanode, each with a client subscribed to `__key*__:*`, must publish
//! the same messages in the same order.

use std::time::{Duration, Instant};

use slotkv_tests::{encode, split_line, Conn, Node, Reply, Server};

/// Published last, to know that every event before it has arrived.
const END: &str = "__keyevent@0__:end-of-script";

/// Commands covering every event Redis 7.0 publishes for the commands
/// datanode implements. Lines starting with `@` are directives:
/// `@block CMD…` sends CMD on a third connection and waits until it is
/// blocked; `@unblocked` reads its reply. `$DUMP:key` is replaced by the
/// DUMP of `key` (taken on the same server).
const SCRIPT: &str = r#"
# keys expire only when touched (lazily), at the same moment on both
debug set-active-expire 0
# strings
set s1 v1
set s1 v2
set s1 v3 EX 100
set s1 v4 KEEPTTL
set s1 v5 GET
set s1 v6 NX
set s1 v7 XX
set s2 v XX
set s3 v NX GET
set s4 v PXAT 1
setnx s1 x
setnx s5 x
setex s6 100 v
psetex s7 100000 v
getset s1 new
getset s8 new
getdel s8
getdel nokey
getex s1 EX 100
getex s1 PERSIST
getex s1 PERSIST
getex s1 PXAT 1
getex s1
getex nokey EX 10
mset m1 a m2 b m1 c
msetnx m3 a m4 b
msetnx m3 a m5 b
append s9 abc
append s9 def
incr n1
decr n1
incrby n1 5
decrby n1 2
incrbyfloat n2 1.5
incrbyfloat n2 1
setrange s10 5 x
setrange s10 0 ""
setrange s11 0 ""
setrange s10 0 y
set s1 wrongtype-below
lpush s1 x
# generic
set k1 v
del k1 nokey
set k2 v
unlink k2
expire k3 10
set k3 v
expire k3 100
pexpire k3 100000
expireat k3 99999999999
pexpireat k3 99999999999999
expire k3 100 NX
expire k3 -1
set k4 v
pexpireat k4 1
persist k4
set k5 v
persist k5
expire k5 100
persist k5
set r1 v
rename r1 r2
set r3 v
rename r2 r3
renamenx r3 r4
set r5 x
renamenx r4 r5
rename r4 r4
copy r4 c1
copy r4 c1
copy r4 c1 REPLACE
copy r4 c2 DB 1
copy nokey c3
# hashes
hset h1 a 1 b 2
hset h1 a 3
hmset h1 c 4
hsetnx h1 a 9
hsetnx h1 z 9
hincrby h1 a 5
hincrbyfloat h1 a 1.5
hincrby h2 x 1
hdel h1 nofield
hdel h1 a b
hdel h1 c z
hdel h2 x
# lists
lpush l1 a b c
rpush l1 d e
lpushx l1 f
rpushx l1 g
lpushx nol x
rpushx nol x
lpop l1
rpop l1
lpop l1 2
rpop l1 0
lset l1 0 X
linsert l1 BEFORE X Y
linsert l1 AFTER nopivot Z
lrem l1 0 nothing
lrem l1 1 Y
ltrim l1 0 100
ltrim l1 0 0
rpush l2 a b c
ltrim l2 5 10
rpush l3 a b c
lmove l3 l4 LEFT RIGHT
lmove l3 l4 RIGHT LEFT
lmove l3 l3 LEFT RIGHT
rpoplpush l3 l4
rpoplpush nol l4
lmpop 2 nol l4 LEFT COUNT 2
lmpop 1 l4 RIGHT COUNT 10
rpush l5 a
lrem l5 0 a
rpush l6 a b
lpop l6 5
rpush l7 only
expire l7 1000
lmove l7 l7 LEFT RIGHT
ttl l7
# sets
sadd st1 a b c
sadd st1 a
srem st1 x
srem st1 a
spop st1 0
spop st1 5
sadd st2 1 2 3
sadd st3 3 4 5
smove st2 st3 1
smove st2 st3 3
smove st2 st9 2
sadd st4 a
smove st4 st4 a
smove st4 st5 a
# SORT … STORE, MOVE
rpush srt 3 1 2
sort srt store srtdst
sort nokey store srtdst
move srt 1
move nokey 1
sadd st6 1 2 3
sinterstore st7 st6 st3
sinterstore st7 st6 nokey
sunionstore st8 st6 st3
sunionstore st8 st6 st3
sdiffstore st8 st6 st6
sdiffstore st8 st6 st3
sunionstore st8 nokey nokey2
sadd st10 only
spop st10
# sorted sets
zadd z1 1 a 2 b
zadd z1 1 a
zadd z1 XX 5 nomember
zadd z1 NX 1 a
zadd z1 INCR 3 a
zadd z1 XX INCR 3 nomember
zincrby z1 2 b
zincrby z1 0 b
zincrby z2 2 b
zrem z1 nomember
zrem z1 a
zadd z3 1 a 2 b 3 c 4 d 5 e
zremrangebyrank z3 0 0
zremrangebyrank z3 10 20
zremrangebyscore z3 2 2
zremrangebyscore z3 100 200
zremrangebylex z3 [c [c
zremrangebylex z3 [x [z
zremrangebyrank z3 0 -1
zadd z4 1 a 2 b 3 c
zadd z5 1 c 2 d
zunionstore z6 2 z4 z5
zinterstore z6 2 z4 z5
zdiffstore z6 2 z4 z4
zdiffstore z6 2 z4 z5
zinterstore z7 2 z4 nokey
zrangestore z8 z4 0 -1
zrangestore z8 z4 5 10
zrangestore z8 z4 0 0
zpopmin z8
zpopmin z8
zpopmax z4
zpopmax z4 0
zpopmin z4 10
zpopmin nokey
zadd z9 1 a 2 b 3 c
zmpop 1 z9 MIN
zmpop 1 z9 MAX COUNT 5
zrem z2 b
zadd z10 1 a
zadd z10 GT 0 a
zadd z10 LT 0 a
zadd z10 CH 0 a
zremrangebyscore z10 -inf +inf
# dump / restore
set d1 hello
restore d2 0 $DUMP:d1
restore d2 0 $DUMP:d1
restore d2 0 $DUMP:d1 REPLACE
restore d3 100000 $DUMP:d1
restore d4 1 $DUMP:d1 ABSTTL
restore d2 1 $DUMP:d1 ABSTTL REPLACE
restore d3 0 $DUMP:d1 REPLACE IDLETIME 10
# transactions: events in command order
multi
set x1 a
lpush x2 a
del x1
sadd x3 a
exec
# blocking pops: the served client's events follow the push
@block blpop bl1 0
rpush bl1 a b
@unblocked
@block brpop bl2 0
rpush bl2 a
@unblocked
@block blmove bl3 bl4 LEFT RIGHT 0
rpush bl3 a
@unblocked
@block brpoplpush bl3 bl4 0
lpush bl3 x
@unblocked
@block blmpop 0 2 bl5 bl6 RIGHT COUNT 2
rpush bl6 a b c
@unblocked
@block bzpopmin bz1 0
zadd bz1 1 a
@unblocked
@block bzpopmax bz1 0
zadd bz1 1 a 2 b
@unblocked
@block bzmpop 0 1 bz2 MIN COUNT 5
zadd bz2 1 a 2 b
@unblocked
blpop bl6 0
blmove bl4 bl9 LEFT LEFT 0
bzpopmin bz1 0
# lazy expiry: the key is removed by whatever touches it first
debug set-active-expire 0
set e1 v px 1
set e2 v px 1
rpush e3 a
pexpire e3 1
set e4 v px 1
set e5 v px 1
set e6 v px 1
set e8 v px 1
hset e9 f v
pexpire e9 1
set e10 v px 1
debug sleep 0.01
get e1
set e2 v
lpush e3 b
exists e4
ttl e5
scan 0 match e6 count 1000
object encoding e8
keys *
hset e9 f v
rename e10 e11
debug set-active-expire 1
"#;

struct Side {
    node: Node,
    c: Conn,
    sub: Conn,
    blocker: Conn,
}

fn start(kind: Server, flags: &str) -> Side {
    let node = Node::start(kind, &["--save", "", "--enable-debug-command", "yes"]);
    let mut c = node.conn();
    assert_eq!(
        c.text(&["CONFIG", "SET", "notify-keyspace-events", flags]),
        "+OK\r\n"
    );
    let mut sub = node.conn();
    sub.cmd(&["PSUBSCRIBE", "__key*__:*"]).expect("psubscribe");
    let blocker = node.conn();
    Side {
        node,
        c,
        sub,
        blocker,
    }
}

fn bulk(r: &Reply) -> Vec<u8> {
    match r {
        Reply::Scalar(_, b) => b.clone(),
        Reply::Agg(_, _) => panic!("expected a bulk string, got {r:?}"),
    }
}

fn info_blocked(c: &mut Conn) -> bool {
    c.text(&["INFO", "clients"])
        .contains("blocked_clients:1\r\n")
}

/// Commands whose replies depend on hash order or chance.
fn unordered(line: &str) -> bool {
    ["keys ", "scan ", "spop ", "dump "]
        .iter()
        .any(|p| line.starts_with(p))
}

struct Outcome {
    /// `channel payload` of each message, in order.
    events: Vec<String>,
    /// Each command line with its reply (unordered ones left out).
    replies: Vec<String>,
}

/// Runs the script on one server; returns what it answered and what its
/// subscriber received.
fn run(side: &mut Side, script: &str) -> Outcome {
    let mut replies = Vec::new();
    for line in script.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(cmd) = line.strip_prefix("@block ") {
            let args = split_line(cmd).expect("script line");
            side.blocker.send_raw(&encode(&args)).expect("send");
            let deadline = Instant::now() + Duration::from_secs(10);
            while !info_blocked(&mut side.c) {
                assert!(Instant::now() < deadline, "{cmd} did not block");
                std::thread::sleep(Duration::from_millis(5));
            }
            continue;
        }
        if line == "@unblocked" {
            let r = side.blocker.read_reply().expect("blocked client's reply");
            replies.push(format!("(blocked) -> {}", String::from_utf8_lossy(&r.raw)));
            continue;
        }
        let mut args = split_line(line).expect("script line");
        for a in args.iter_mut() {
            if let Some(k) = a.strip_prefix(b"$DUMP:") {
                let k = k.to_vec();
                *a = bulk(&side.c.cmd(&[b"DUMP".as_slice(), &k]).expect("dump").tree);
            }
        }
        let r = side.c.cmd(&args).expect("reply");
        if !unordered(line) {
            replies.push(format!("{line} -> {}", String::from_utf8_lossy(&r.raw)));
        }
    }
    side.c.text(&["PUBLISH", END, "x"]);
    Outcome {
        events: collect(&mut side.sub),
        replies,
    }
}

/// Reads pmessages until the end marker.
fn collect(sub: &mut Conn) -> Vec<String> {
    let mut out = Vec::new();
    loop {
        let m = sub.read_reply().expect("a message before the end marker");
        let Reply::Agg(_, parts) = &m.tree else {
            panic!("not a message: {m:?}", m = m.tree);
        };
        let f: Vec<String> = parts
            .iter()
            .map(|p| String::from_utf8_lossy(&bulk(p)).into_owned())
            .collect();
        assert_eq!(f[0], "pmessage", "{f:?}");
        if f[2] == END {
            return out;
        }
        out.push(format!("{} {}", f[2], f[3]));
    }
}

/// Runs `script` on both servers; checks they answered alike and returns
/// (redis-server's events, datanode's events).
fn both(flags: &str, script: &str) -> (Vec<String>, Vec<String>) {
    let mut r = start(Server::Redis, flags);
    let mut d = start(Server::Datanode, flags);
    let want = run(&mut r, script);
    let got = run(&mut d, script);
    assert_same(&want.replies, &got.replies);
    (want.events, got.events)
}

fn assert_same(want: &[String], got: &[String]) {
    if want != got {
        let at = want
            .iter()
            .zip(got)
            .position(|(a, b)| a != b)
            .unwrap_or(want.len().min(got.len()));
        let lo = at.saturating_sub(6);
        panic!(
            "streams differ at item {at}\nredis-server: {:#?}\ndatanode:     {:#?}",
            &want[lo..(at + 6).min(want.len())],
            &got[lo..(at + 6).min(got.len())]
        );
    }
}

#[test]
fn every_event_matches_redis() {
    // `n` on top of A: creations are announced too.
    let (want, got) = both("KEAn", SCRIPT);
    assert!(want.len() > 400, "the script should publish plenty");
    assert_same(&want, &got);
}

#[test]
fn class_filters_match_redis() {
    let script = "set a 1\nlpush l x\nrpop l\nsadd s m\nhset h f v\nzadd z 1 m\n\
                  expire a 100\ndel a s\nincr n\nrename h h2\n";
    for flags in [
        "Kl", "El", "K$", "Eg", "Ksh", "Ez", "KEn", "Kx", "E", "A", "gl",
    ] {
        let (want, got) = both(flags, script);
        assert_same(&want, &got);
        if flags == "Kl" {
            // Only list events, only on keyspace channels.
            // Only list events, only on keyspace channels (emptying the
            // list is a generic `del`, filtered out).
            assert_eq!(got, ["__keyspace@0__:l lpush", "__keyspace@0__:l rpop"]);
        }
        if flags == "E" || flags == "A" || flags == "gl" {
            // A class without K or E (or K/E without a class) publishes nothing.
            assert!(got.is_empty(), "{flags}: {got:?}");
        }
    }
}

#[test]
fn nothing_is_published_when_off() {
    let mut d = start(Server::Datanode, "");
    let got = run(&mut d, "set a 1\nlpush l x\ndel a\n");
    assert!(got.events.is_empty(), "{:?}", got.events);
}

#[test]
fn active_expiry_publishes_expired() {
    for kind in [Server::Redis, Server::Datanode] {
        let mut s = start(kind, "Ex");
        s.c.text(&["SET", "gone", "v", "PX", "20"]);
        // Nobody touches the key: only the background cycle can remove it.
        s.sub.set_timeout(Duration::from_secs(10));
        let m = s.sub.read_reply().expect("expired event");
        let text = String::from_utf8_lossy(&m.raw).into_owned();
        assert!(
            text.ends_with("$22\r\n__keyevent@0__:expired\r\n$4\r\ngone\r\n"),
            "{kind:?}: {text}"
        );
        assert_eq!(s.c.text(&["DBSIZE"]), ":0\r\n");
        drop(s.node);
    }
}

#[test]
fn config_round_trips_like_redis() {
    let (rn, dn) = (
        Node::start(Server::Redis, &["--save", ""]),
        Node::start(Server::Datanode, &["--save", ""]),
    );
    let (mut r, mut d) = (rn.conn(), dn.conn());
    for v in [
        "KEA",
        "A",
        "K",
        "E",
        "Kl",
        "KEn",
        "KEm",
        "KEt",
        "KEd",
        "gE",
        "$E",
        "xK",
        "eK",
        "",
        "Q",
        "KEAQ",
        "nAKEm",
        "AAKK",
        "gKE",
        "$lshzxeKE",
        "KA",
        "EA",
    ] {
        let set = |c: &mut Conn| c.text(&["CONFIG", "SET", "notify-keyspace-events", v]);
        assert_eq!(set(&mut d), set(&mut r), "CONFIG SET {v:?}");
        let get = |c: &mut Conn| c.text(&["CONFIG", "GET", "notify-keyspace-events"]);
        assert_eq!(get(&mut d), get(&mut r), "CONFIG GET after {v:?}");
    }
    // From the command line too.
    let n = Node::start(
        Server::Datanode,
        &["--save", "", "--notify-keyspace-events", "KEA"],
    );
    assert_eq!(
        n.conn().text(&["CONFIG", "GET", "notify-keyspace-events"]),
        "*2\r\n$22\r\nnotify-keyspace-events\r\n$3\r\nAKE\r\n"
    );
    let (code, out) = slotkv_tests::process::start_expect_failure(
        Server::Datanode,
        &["--port", "0", "--notify-keyspace-events", "KEQ"],
        n.path(),
    );
    assert_ne!(code, 0);
    assert!(
        out.contains("Invalid event class character. Use 'Ag$lshzxeKEtmdn'."),
        "{out}"
    );
}

#[test]
fn cluster_events_stay_on_the_owning_node() {
    use slotkv_tests::cluster::Cluster;
    let c = Cluster::start(
        &[Server::Datanode; 3],
        5000,
        &["--notify-keyspace-events", "KEA"],
    );
    c.create(0);
    c.wait_ok(Duration::from_secs(30));
    let mut subs: Vec<Conn> = c
        .nodes
        .iter()
        .map(|n| {
            let mut s = n.conn();
            s.cmd(&["PSUBSCRIBE", "__key*__:*"]).expect("psubscribe");
            s
        })
        .collect();
    // The owner answers +OK; the others redirect.
    let owner = (0..3)
        .find(|&i| c.nodes[i].conn().text(&["SET", "foo", "bar"]) == "+OK\r\n")
        .expect("a node owns foo");
    // PUBLISH goes to the whole cluster over the bus, after the events.
    c.nodes[owner].conn().text(&["PUBLISH", END, "x"]);
    for (i, s) in subs.iter_mut().enumerate() {
        let got = collect(s);
        if i == owner {
            assert_eq!(got, ["__keyspace@0__:foo set", "__keyevent@0__:set foo"]);
        } else {
            assert!(got.is_empty(), "node {i} got {got:?}");
        }
    }
}

#[test]
fn keymiss_events_and_read_counts_match_redis() {
    // Read lookups publish `keymiss` when they find nothing, and count in
    // INFO's keyspace_hits / keyspace_misses; lookups made to write do
    // neither.
    let script = "set s v\nrpush l a b\nsadd st m\nhset h f v\nzadd z 1 m\nset n 5\n\
                  get s\nget nos\nmget s nos1 nos2\nstrlen nos\ngetrange s 0 -1\n\
                  exists s nos l\ntype nos\ntype s\nttl nos\npttl s\n\
                  hget h f\nhget noh f\nhgetall h\nhmget noh a b\nhexists h f\nhlen noh\n\
                  lrange l 0 -1\nllen nol\nlindex l 0\nlpos nol a\n\
                  smembers st\nsismember nost m\nsmismember st m x\nscard st\n\
                  sunion st nost\nsinter st nost\nsrandmember nost\n\
                  zscore z m\nzrange noz 0 -1\nzcard z\nzrangebyscore z -inf +inf\nzunion 2 z noz\n\
                  object encoding s\nobject encoding nos\ntouch s nos\ndump nos\n\
                  getdel nos\ngetdel n\ngetex s\ngetex nos\n\
                  incr n\nlpush l2 x\ndel nos s\nappend s2 x\nsetrange s3 0 x\n";
    let mut sides = [start(Server::Redis, "KEm"), start(Server::Datanode, "KEm")];
    let mut outs = Vec::new();
    let mut counts = Vec::new();
    for side in sides.iter_mut() {
        outs.push(run(side, script));
        let hits = side.c.info_field("stats", "keyspace_hits");
        let misses = side.c.info_field("stats", "keyspace_misses");
        counts.push((hits, misses));
    }
    assert_same(&outs[0].replies, &outs[1].replies);
    assert_same(&outs[0].events, &outs[1].events);
    assert!(outs[1].events.len() > 20, "{:?}", outs[1].events);
    assert_eq!(
        counts[0], counts[1],
        "(hits, misses): redis-server vs datanode"
    );
}
