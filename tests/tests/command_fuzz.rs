//! Random commands of the bitmap, geo, stream, HyperLogLog and ACL
//! families, run in the same order on redis-server and on datanode,
//! replies compared byte for byte. Arguments are drawn from the awkward
//! ones: bad numbers, bounds, wrong units and options, repeated and missing
//! parts, for HLL values corrupted byte by byte, and for ACL rules and
//! selectors malformed or spread over several arguments.
//!
//! Every reply here depends only on the commands: stream IDs are explicit
//! and no reply carries a time. The generator is seeded, so a difference
//! names its seed and reproduces.

use slotkv_tests::diff::Pair;
use slotkv_tests::Rng;

type Cmd = Vec<Vec<u8>>;

fn push(c: &mut Cmd, parts: &[&str]) {
    c.extend(parts.iter().map(|p| p.as_bytes().to_vec()));
}

/// A command as it reads, bytes past ASCII escaped.
fn shown(c: &Cmd) -> String {
    let parts: Vec<String> = c.iter().map(|a| a.escape_ascii().to_string()).collect();
    parts.join(" ")
}

/// A count from the environment, for running more than CI does.
fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Runs commands from `gen` on both servers and fails listing the first
/// differences.
fn compare(name: &str, gen: &mut dyn FnMut(&mut Rng, &mut Cmd)) {
    compare_as(name, gen, |_, raw| raw);
}

/// As `compare`, with both replies passed through `normalize` first, for
/// replies whose order redis-server itself does not keep from one start
/// to the next.
fn compare_as(
    name: &str,
    gen: &mut dyn FnMut(&mut Rng, &mut Cmd),
    normalize: fn(&Cmd, Vec<u8>) -> Vec<u8>,
) {
    let pair = Pair::start(&["--save", "", "--appendonly", "no"]);
    let mut r = pair.redis.conn();
    let mut d = pair.datanode.conn();
    let seed = env_num("SLOTKV_CMD_FUZZ_SEED", 1);
    let commands = env_num("SLOTKV_CMD_FUZZ_COMMANDS", 10_000);
    let mut rng = Rng::new(seed);
    let mut diffs = Vec::new();
    let trace = std::env::var_os("SLOTKV_CMD_FUZZ_TRACE").is_some();
    for _ in 0..commands {
        let mut c = Cmd::new();
        gen(&mut rng, &mut c);
        let want = normalize(&c, r.cmd(&c).expect("redis-server reply").raw);
        let got = normalize(&c, d.cmd(&c).expect("datanode reply").raw);
        // SLOTKV_CMD_FUZZ_TRACE prints every command with redis-server's
        // reply, to find what led to a difference.
        if trace {
            eprintln!("{} => {:?}", shown(&c), String::from_utf8_lossy(&want));
        }
        if want != got {
            diffs.push(format!(
                "{}\n  redis:    {}\n  datanode: {}",
                shown(&c),
                want.escape_ascii(),
                got.escape_ascii()
            ));
        }
    }
    assert!(
        diffs.is_empty(),
        "{name}, seed {seed}: {} of {commands} commands replied differently; the first:\n{}",
        diffs.len(),
        diffs
            .iter()
            .take(10)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
}

const ANY_NUM: &[&str] = &[
    "0",
    "1",
    "-1",
    "7",
    "8",
    "15",
    "16",
    "31",
    "32",
    "63",
    "64",
    "100",
    "-8",
    "-100",
    "4294967295",
    "9223372036854775807",
    "-9223372036854775808",
    "x",
    "",
    "1.5",
    "99999999999",
];
/// Offsets that write: small, so no command allocates much.
const SMALL: &[&str] = &[
    "0", "1", "-1", "7", "8", "15", "16", "31", "32", "63", "64", "100", "-8", "x", "", "1.5",
    "#0", "#3",
];
const BIT_TYPES: &[&str] = &[
    "u1", "i1", "u8", "i8", "u16", "i16", "u63", "i64", "u64", "i65", "u0", "i0", "x8", "u", "i",
    "#0", "#1", "U8", "I8",
];

fn bits(rng: &mut Rng, c: &mut Cmd) {
    let k = rng.pick(&["b1", "b2", "b3"]);
    match rng.below(12) {
        0 => push(
            c,
            &[
                "SETBIT",
                k,
                rng.pick(SMALL),
                rng.pick(&["0", "1", "2", "-1"]),
            ],
        ),
        1 => push(c, &["GETBIT", k, rng.pick(ANY_NUM)]),
        2 | 3 => {
            let cmd = if rng.chance(50) { "BITCOUNT" } else { "BITPOS" };
            push(c, &[cmd, k]);
            if cmd == "BITPOS" {
                push(c, &[rng.pick(&["0", "1", "2"])]);
            }
            for _ in 0..[0, 1, 2, 2, 3][rng.below(5)] {
                push(c, &[rng.pick(ANY_NUM)]);
            }
            if rng.chance(30) {
                push(c, &[rng.pick(&["BYTE", "BIT", "byte", "bit", "x"])]);
            }
        }
        4 | 5 => {
            let ro = rng.chance(30);
            push(c, &[if ro { "BITFIELD_RO" } else { "BITFIELD" }, k]);
            for _ in 0..1 + rng.below(3) {
                let op = rng.pick(&[
                    "GET", "SET", "INCRBY", "OVERFLOW", "get", "set", "incrby", "overflow", "BAD",
                ]);
                match op.to_ascii_uppercase().as_str() {
                    "OVERFLOW" => push(
                        c,
                        &[
                            op,
                            rng.pick(&["WRAP", "SAT", "FAIL", "wrap", "sat", "fail", "x"]),
                        ],
                    ),
                    "GET" => push(c, &[op, rng.pick(BIT_TYPES), rng.pick(SMALL)]),
                    "SET" | "INCRBY" => push(
                        c,
                        &[op, rng.pick(BIT_TYPES), rng.pick(SMALL), rng.pick(ANY_NUM)],
                    ),
                    _ => push(c, &[op]),
                }
            }
        }
        6 => {
            let op = rng.pick(&["AND", "OR", "XOR", "NOT", "and", "x"]);
            push(c, &["BITOP", op, rng.pick(&["b1", "b2", "b3"])]);
            for _ in 0..rng.below(3) {
                push(c, &[rng.pick(&["b1", "b2", "b3", "nokey"])]);
            }
        }
        7 => push(
            c,
            &[
                "SETRANGE",
                k,
                rng.pick(&["0", "1", "5", "-1", "100"]),
                rng.pick(&["", "a", "\u{ff}\0x", "abc"]),
            ],
        ),
        8 => push(c, &["GETRANGE", k, rng.pick(ANY_NUM), rng.pick(ANY_NUM)]),
        9 => push(
            c,
            &[
                "SET",
                k,
                rng.pick(&["", "a", "\u{ff}\u{f0}\0", "foobar", "\0\0\0\0\0", "12345"]),
            ],
        ),
        10 => push(c, &["APPEND", k, rng.pick(&["a", "\u{ff}", "\0\u{1}"])]),
        _ => push(c, &["GET", k]),
    }
}

#[test]
fn bitmap_commands_reply_as_redis_server_does() {
    compare("bitmaps", &mut bits);
}

const LON: &[&str] = &[
    "13.361389",
    "15.087269",
    "-180",
    "180",
    "180.1",
    "0",
    "-73.9",
    "2.35",
    "x",
    "1e2",
    "-0",
    "179.99999",
];
const LAT: &[&str] = &[
    "38.115556",
    "37.502669",
    "85.05112878",
    "85.06",
    "-85.05112878",
    "0",
    "48.85",
    "40.7",
    "x",
    "-90",
];
const MEMBERS: &[&str] = &["Palermo", "Catania", "a", "b", "c", "Paris", "NY", "nope"];
const RADII: &[&str] = &[
    "0", "1", "10", "100", "200", "1000", "5000", "-1", "x", "0.5", "1e4", "20000000",
];
const UNITS: &[&str] = &["m", "km", "mi", "ft", "KM", "x"];

fn geo_options(rng: &mut Rng, c: &mut Cmd, store: bool) {
    let all = [
        "WITHCOORD",
        "WITHDIST",
        "WITHHASH",
        "ASC",
        "DESC",
        "COUNT",
        "ANY",
        "withdist",
        "x",
    ];
    for _ in 0..rng.below(4) {
        match rng.pick(&all) {
            "COUNT" => push(c, &["COUNT", rng.pick(&["1", "2", "0", "-1", "x", "100"])]),
            "WITHCOORD" | "WITHHASH" if store => {}
            o => push(c, &[o]),
        }
    }
}

fn geo_origin(rng: &mut Rng, c: &mut Cmd, optional: bool) {
    match rng.below(if optional { 3 } else { 2 }) {
        0 => push(c, &["FROMMEMBER", rng.pick(MEMBERS)]),
        1 => push(c, &["FROMLONLAT", rng.pick(LON), rng.pick(LAT)]),
        _ => {}
    }
    match rng.below(if optional { 3 } else { 2 }) {
        0 => push(c, &["BYRADIUS", rng.pick(RADII), rng.pick(UNITS)]),
        1 => push(
            c,
            &["BYBOX", rng.pick(RADII), rng.pick(RADII), rng.pick(UNITS)],
        ),
        _ => {}
    }
}

fn geo(rng: &mut Rng, c: &mut Cmd) {
    let k = rng.pick(&["g1", "g2"]);
    match rng.below(10) {
        0 | 1 => {
            push(c, &["GEOADD", k]);
            if rng.chance(40) {
                push(c, &[rng.pick(&["NX", "XX", "CH"])]);
            }
            for _ in 0..1 + rng.below(2) {
                push(c, &[rng.pick(LON), rng.pick(LAT), rng.pick(MEMBERS)]);
            }
        }
        2 => {
            push(c, &["GEODIST", k, rng.pick(MEMBERS), rng.pick(MEMBERS)]);
            if rng.chance(50) {
                push(c, &[rng.pick(UNITS)]);
            }
        }
        3 | 4 => {
            push(c, &[rng.pick(&["GEOHASH", "GEOPOS"]), k]);
            for _ in 0..rng.below(3) {
                push(c, &[rng.pick(MEMBERS)]);
            }
        }
        5 | 6 => {
            push(c, &["GEOSEARCH", k]);
            geo_origin(rng, c, true);
            geo_options(rng, c, false);
        }
        7 => {
            push(c, &["GEOSEARCHSTORE", rng.pick(&["g1", "g2", "dst"]), k]);
            geo_origin(rng, c, false);
            geo_options(rng, c, true);
            if rng.chance(30) {
                push(c, &["STOREDIST"]);
            }
        }
        8 => {
            let cmd = rng.pick(&["GEORADIUS", "GEORADIUS_RO"]);
            push(
                c,
                &[
                    cmd,
                    k,
                    rng.pick(LON),
                    rng.pick(LAT),
                    rng.pick(RADII),
                    rng.pick(UNITS),
                ],
            );
            geo_options(rng, c, false);
            if cmd == "GEORADIUS" && rng.chance(20) {
                push(c, &[rng.pick(&["STORE", "STOREDIST"]), "dst"]);
            }
        }
        _ => {
            let cmd = rng.pick(&["GEORADIUSBYMEMBER", "GEORADIUSBYMEMBER_RO"]);
            push(
                c,
                &[cmd, k, rng.pick(MEMBERS), rng.pick(RADII), rng.pick(UNITS)],
            );
            geo_options(rng, c, false);
            if rng.chance(20) {
                push(c, &[rng.pick(&["STORE", "STOREDIST"]), "dst"]);
            }
        }
    }
    // What the STORE forms wrote is read back now and then.
    if rng.chance(3) {
        c.clear();
        push(c, &["ZRANGE", "dst", "0", "-1", "WITHSCORES"]);
    }
}

#[test]
fn geo_commands_reply_as_redis_server_does() {
    compare("geo", &mut geo);
}

/// Explicit IDs only: an ID the server picks depends on its clock.
const IDS: &[&str] = &[
    "0",
    "0-0",
    "0-1",
    "1",
    "1-0",
    "1-1",
    "1-2",
    "2-0",
    "5",
    "5-5",
    "10-0",
    "100",
    "18446744073709551615-18446744073709551615",
    "18446744073709551615",
    "-",
    "+",
    "x",
    "1-x",
    "$",
    ">",
    "1-*",
    "0-*",
    "2-*",
];
const COUNTS: &[&str] = &["0", "1", "2", "3", "5", "10", "-1", "x", "100"];
const GROUPS: &[&str] = &["g1", "g2", "nog"];
const CONSUMERS: &[&str] = &["c1", "c2"];

fn stream(rng: &mut Rng, c: &mut Cmd) {
    let k = rng.pick(&["s1", "s2"]);
    match rng.below(16) {
        0..=2 => {
            push(c, &["XADD", k]);
            if rng.chance(20) {
                push(c, &["NOMKSTREAM"]);
            }
            if rng.chance(30) {
                push(c, &[rng.pick(&["MAXLEN", "MINID", "maxlen"])]);
                if rng.chance(50) {
                    push(c, &[rng.pick(&["~", "="])]);
                }
                push(c, &[rng.pick(&["0", "1", "2", "5", "1-1", "x", "-1"])]);
                if rng.chance(30) {
                    push(c, &["LIMIT", rng.pick(COUNTS)]);
                }
            }
            push(c, &[rng.pick(IDS)]);
            let fields: &[&[&str]] = &[
                &["f", "v"],
                &["a", "1", "b", "2"],
                &["f", "v", "f", "w"],
                &["f"],
                &[],
            ];
            push(c, fields[rng.below(fields.len())]);
        }
        3 | 4 => {
            push(
                c,
                &[
                    rng.pick(&["XRANGE", "XREVRANGE"]),
                    k,
                    rng.pick(IDS),
                    rng.pick(IDS),
                ],
            );
            if rng.chance(40) {
                push(c, &["COUNT", rng.pick(COUNTS)]);
            }
        }
        5 => push(c, &["XLEN", k]),
        6 => {
            push(c, &["XDEL", k]);
            for _ in 0..rng.below(3) {
                push(c, &[rng.pick(IDS)]);
            }
        }
        7 => {
            push(c, &["XTRIM", k, rng.pick(&["MAXLEN", "MINID", "x"])]);
            if rng.chance(50) {
                push(c, &[rng.pick(&["~", "="])]);
            }
            push(c, &[rng.pick(&["0", "1", "2", "1-1", "x"])]);
            if rng.chance(30) {
                push(c, &["LIMIT", rng.pick(COUNTS)]);
            }
        }
        8 => {
            push(c, &["XREAD"]);
            if rng.chance(50) {
                push(c, &["COUNT", rng.pick(COUNTS)]);
            }
            push(c, &["STREAMS"]);
            for _ in 0..1 + rng.below(2) {
                push(c, &[rng.pick(&["s1", "s2"])]);
            }
            for _ in 0..1 + rng.below(2) {
                push(c, &[rng.pick(IDS)]);
            }
        }
        9 => {
            let g = rng.pick(GROUPS);
            match rng.below(6) {
                0 => {
                    push(
                        c,
                        &[
                            "XGROUP",
                            "CREATE",
                            k,
                            g,
                            rng.pick(&["$", "0", "1-1", "x", "-"]),
                        ],
                    );
                    if rng.chance(30) {
                        push(c, &["MKSTREAM"]);
                    }
                    if rng.chance(20) {
                        push(c, &["ENTRIESREAD", rng.pick(COUNTS)]);
                    }
                }
                1 => {
                    push(
                        c,
                        &["XGROUP", "SETID", k, g, rng.pick(&["$", "0", "1-1", "x"])],
                    );
                    if rng.chance(30) {
                        push(c, &["ENTRIESREAD", rng.pick(COUNTS)]);
                    }
                }
                2 => push(c, &["XGROUP", "DESTROY", k, g]),
                3 | 4 => push(
                    c,
                    &[
                        "XGROUP",
                        rng.pick(&["CREATECONSUMER", "DELCONSUMER"]),
                        k,
                        g,
                        rng.pick(CONSUMERS),
                    ],
                ),
                _ => push(c, &["XGROUP", "x", k]),
            }
        }
        10 | 11 => {
            push(
                c,
                &["XREADGROUP", "GROUP", rng.pick(GROUPS), rng.pick(CONSUMERS)],
            );
            if rng.chance(50) {
                push(c, &["COUNT", rng.pick(COUNTS)]);
            }
            if rng.chance(20) {
                push(c, &["NOACK"]);
            }
            push(c, &["STREAMS", k, rng.pick(&[">", "0", "1-1", "$", "x"])]);
        }
        12 => {
            push(c, &["XACK", k, rng.pick(GROUPS)]);
            for _ in 0..rng.below(3) {
                push(c, &[rng.pick(IDS)]);
            }
        }
        // The summary form only: the extended form shows idle times.
        13 => push(c, &["XPENDING", k, rng.pick(GROUPS)]),
        14 => push(c, &["XINFO", rng.pick(&["STREAM", "GROUPS", "x"]), k]),
        _ => {
            push(c, &["XSETID", k, rng.pick(IDS)]);
            if rng.chance(40) {
                push(c, &["ENTRIESADDED", rng.pick(COUNTS)]);
            }
            if rng.chance(40) {
                push(c, &["MAXDELETEDID", rng.pick(IDS)]);
            }
        }
    }
}

#[test]
fn stream_commands_reply_as_redis_server_does() {
    compare("streams", &mut stream);
}

/// Commands on HLLs; `seeds` are values redis-server wrote (sparse,
/// sparse, dense), set as they are or mutated.
fn hll(seeds: &[Vec<u8>], rng: &mut Rng, c: &mut Cmd) {
    let k = rng.pick(&["h1", "h2", "h3"]);
    match rng.below(8) {
        0 => {
            let mut v = seeds[rng.below(seeds.len())].clone();
            for _ in 0..1 + rng.below(3) {
                match rng.below(4) {
                    0 if !v.is_empty() => {
                        let i = rng.below(v.len());
                        v[i] = rng.next_u64() as u8;
                    }
                    1 if v.len() > 16 => v.truncate(16 + rng.below(v.len() - 16)),
                    2 => v.extend((0..1 + rng.below(4)).map(|_| rng.next_u64() as u8)),
                    // The encoding byte.
                    _ if v.len() > 4 => v[4] = *rng.pick(&[&0u8, &1, &2, &255]),
                    _ => {}
                }
            }
            no_torn_xzero(&mut v);
            push(c, &["SET", k]);
            c.push(v);
        }
        1 => {
            push(c, &["PFADD", k]);
            for _ in 0..rng.below(5) {
                c.push(rng.below(10_000).to_string().into_bytes());
            }
        }
        2 | 3 => {
            push(c, &[rng.pick(&["PFCOUNT", "PFMERGE"]), k]);
            for _ in 0..rng.below(3) {
                push(c, &[rng.pick(&["h1", "h2", "h3"])]);
            }
        }
        4 => push(
            c,
            &[
                "PFDEBUG",
                rng.pick(&["GETREG", "DECODE", "ENCODING", "TODENSE", "x"]),
                k,
            ],
        ),
        5 => {
            push(c, &["SET", k]);
            c.push(seeds[rng.below(seeds.len())].clone());
        }
        6 => push(c, &["GET", k]),
        _ => push(c, &["STRLEN", k]),
    }
}

/// Drops a sparse HLL's last byte when it starts a two-byte XZERO
/// opcode: redis-server reads (and PFADD writes) the missing byte past
/// the value's end, so what it does then depends on memory, not on the
/// commands.
fn no_torn_xzero(v: &mut Vec<u8>) {
    if v.len() <= 16 || v[4] != 1 {
        return;
    }
    let mut i = 16;
    while i < v.len() {
        if v[i] & 0xc0 == 0x40 {
            if i + 1 == v.len() {
                v.pop();
                return;
            }
            i += 2;
        } else {
            i += 1;
        }
    }
}

#[test]
fn hyperloglog_commands_reply_as_redis_server_does_on_corrupt_values_too() {
    // The starting values come from redis-server itself.
    let seeds: Vec<Vec<u8>> = {
        let n = slotkv_tests::Node::start(slotkv_tests::Server::Redis, &["--save", ""]);
        let mut c = n.conn();
        [3usize, 300, 5000]
            .iter()
            .map(|&count| {
                let mut add: Vec<String> = vec!["PFADD".into(), "src".into()];
                add.extend((0..count).map(|i| i.to_string()));
                c.cmd(&["DEL", "src"]).expect("DEL");
                c.cmd(&add).expect("PFADD");
                let raw = c.cmd(&["GET", "src"]).expect("GET").raw;
                // "$N\r\n<value>\r\n"
                let start = raw.iter().position(|&b| b == b'\n').map_or(0, |i| i + 1);
                raw[start..raw.len() - 2].to_vec()
            })
            .collect()
    };
    compare("hyperloglog", &mut |rng, c| hll(&seeds, rng, c));
}

const ACL_USERS: &[&str] = &["u1", "u2", "u3"];
const ACL_CATEGORIES: &[&str] = &[
    "all",
    "keyspace",
    "read",
    "write",
    "set",
    "sortedset",
    "list",
    "hash",
    "string",
    "bitmap",
    "hyperloglog",
    "geo",
    "stream",
    "pubsub",
    "admin",
    "fast",
    "slow",
    "blocking",
    "dangerous",
    "connection",
    "transaction",
    "scripting",
    "nosuch",
    "",
    "ALL",
    "Read",
];
const ACL_COMMANDS: &[&str] = &[
    "get",
    "set",
    "GET",
    "client",
    "client|id",
    "client|kill",
    "CLIENT|Setname",
    "config|get",
    "config|nosuch",
    "select|0",
    "select|1",
    "get|x",
    "acl",
    "acl|whoami",
    "debug",
    "flushall",
    "xadd",
    "eval",
    "publish",
    "subscribe",
    "nosuch",
    "",
    "|",
    "get|",
    "auth",
    "hello",
];
const ACL_PATTERNS: &[&str] = &["*", "k*", "foo", "a?c", "[ab]*", "", "\\*", "obj:*", "{t}*"];

/// One ACL rule, as SETUSER or a selector takes it: valid ones mostly,
/// with the malformed and unknown mixed in.
fn acl_rule(rng: &mut Rng, in_selector: bool) -> String {
    let pat = rng.pick(ACL_PATTERNS);
    match rng.below(if in_selector { 11 } else { 17 }) {
        0 => format!("+@{}", rng.pick(ACL_CATEGORIES)),
        1 => format!("-@{}", rng.pick(ACL_CATEGORIES)),
        2 => format!("+{}", rng.pick(ACL_COMMANDS)),
        3 => format!("-{}", rng.pick(ACL_COMMANDS)),
        4 => format!("~{pat}"),
        5 => format!(
            "%{}~{pat}",
            rng.pick(&["R", "W", "RW", "WR", "", "X", "r", "RR"])
        ),
        6 => format!("&{pat}"),
        7 => rng
            .pick(&[
                "allkeys",
                "resetkeys",
                "allchannels",
                "resetchannels",
                "allcommands",
                "nocommands",
                "ALLKEYS",
            ])
            .to_string(),
        8 if rng.chance(30) => rng
            .pick(&[
                "nosuchrule",
                "",
                "~",
                "%",
                "+",
                "-",
                "@",
                "+@",
                "&",
                "#",
                "(",
                ")",
            ])
            .to_string(),
        8 | 9 if in_selector => format!("~{pat} %R~{pat}"),
        8 | 9 => format!("%R~{pat}"),
        10 => rng.pick(&["on", "off", "nopass", "reset"]).to_string(),
        11 => format!(">{}", rng.pick(&["p1", "p2", "", "pass word"])),
        12 => format!("<{}", rng.pick(&["p1", "p2", "x"])),
        13 => format!(
            "#{}",
            rng.pick(&[
                // sha256("p1") and malformed hashes.
                "c2b1ef9a87d5a1f2e4cda6b5d1b3f4e3c9c4b1e4a8f0d8d2c8e6a4b2c0e8f6a4",
                "6ad7dc8f3b0bbd4f0d4b8e6b6c5b6e2e4f6a0b1c2d3e4f5a6b7c8d9e0f1a2b3",
                "zz",
                "C2B1EF9A87D5A1F2E4CDA6B5D1B3F4E3C9C4B1E4A8F0D8D2C8E6A4B2C0E8F6A4",
            ])
        ),
        14 => format!(
            "!{}",
            rng.pick(&[
                "c2b1ef9a87d5a1f2e4cda6b5d1b3f4e3c9c4b1e4a8f0d8d2c8e6a4b2c0e8f6a4",
                "00",
            ])
        ),
        15 => rng
            .pick(&["resetpass", "clearselectors", "RESET", "On"])
            .to_string(),
        _ => {
            let mut s = String::from("(");
            for i in 0..rng.below(4) {
                if i > 0 {
                    s.push(' ');
                }
                s.push_str(&acl_rule(rng, true));
            }
            if rng.chance(90) {
                s.push(')');
            }
            s
        }
    }
}

/// An argument list ACL DRYRUN checks a user against: commands whose key
/// specs read, write, insert or delete, or take channels, in valid and
/// malformed forms.
fn acl_dryrun_command(rng: &mut Rng, c: &mut Cmd) {
    const KEYS: &[&str] = &["k1", "foo", "obj:1", "abc", "x{t}y", "b", "{t}z", "*"];
    let key = rng.pick(KEYS);
    let other = rng.pick(KEYS);
    match rng.below(30) {
        0 => push(c, &["GET", key]),
        1 => push(c, &["SET", key, "v"]),
        2 => push(c, &["SET", key, "v", "GET"]),
        3 => push(c, &["copy", key, other]),
        4 => push(c, &["PUBLISH", rng.pick(ACL_PATTERNS), "m"]),
        5 => push(c, &["SUBSCRIBE", rng.pick(ACL_PATTERNS), "k1"]),
        6 => push(c, &["PSUBSCRIBE", rng.pick(ACL_PATTERNS)]),
        7 => push(c, &["SSUBSCRIBE", key]),
        8 => push(c, &["CLIENT", rng.pick(&["ID", "KILL", "SETNAME", "x"])]),
        9 => push(c, &["SELECT", rng.pick(&["0", "1", "x"])]),
        10 => push(c, &["MSET", key, "v", other, "w"]),
        11 => push(c, &["LMOVE", key, other, "LEFT", "RIGHT"]),
        12 => push(c, &["NOSUCH"]),
        13 => push(c, &["GET"]),
        14 => push(c, &["EVAL", "return 1", "1", key]),
        15 => push(c, &["SORT", key, "STORE", other]),
        16 => push(c, &["SORT", key, "BY", "w_*", "GET", "#"]),
        17 => push(c, &["BITFIELD", key, "GET", "u8", "0"]),
        18 => push(c, &["BITFIELD", key, "SET", "u8", "0", "1"]),
        19 => push(c, &["GEORADIUS", key, "0", "0", "1", "km", "STORE", other]),
        20 => push(c, &["XREADGROUP", "GROUP", "g", "c", "STREAMS", key, ">"]),
        21 => push(c, &["ZUNIONSTORE", other, "2", key, "b"]),
        22 => push(c, &["LMPOP", "2", key, other, "LEFT"]),
        23 => push(c, &["OBJECT", "ENCODING", key]),
        24 => push(c, &["MIGRATE", "h", "1", "", "0", "5", "KEYS", key, other]),
        25 => push(c, &["DEL", key, other]),
        26 => push(c, &["RENAME", key, other]),
        27 => push(c, &["EXISTS", key]),
        28 => push(c, &["FCALL", "f", "1", key]),
        _ => push(c, &["XADD", key, "*", "f", "v"]),
    }
}

fn acl(rng: &mut Rng, c: &mut Cmd) {
    let user = rng.pick(ACL_USERS);
    match rng.below(13) {
        0..=3 => {
            push(c, &["ACL", "SETUSER", user]);
            // Mostly from a broad grant down, so that DRYRUN gets past
            // the command check to keys and channels.
            if rng.chance(60) {
                push(
                    c,
                    &[rng.pick(&["+@all", "allcommands", "+@read", "+@write", "+@keyspace"])],
                );
            }
            for _ in 0..rng.below(5) {
                c.push(acl_rule(rng, false).into_bytes());
            }
        }
        4 | 5 => push(c, &["ACL", "GETUSER", user]),
        6 => push(c, &["ACL", "LIST"]),
        7 => push(c, &["ACL", "USERS"]),
        8..=10 => {
            push(c, &["ACL", "DRYRUN", user]);
            acl_dryrun_command(rng, c);
        }
        11 if rng.chance(30) => {
            push(c, &["ACL", "DELUSER"]);
            for _ in 0..1 + rng.below(2) {
                push(c, &[rng.pick(&["u1", "u2", "u3", "nosuch"])]);
            }
        }
        _ => {
            push(c, &["ACL", "CAT"]);
            if rng.chance(70) {
                push(c, &[rng.pick(ACL_CATEGORIES)]);
            }
        }
    }
}

/// Redis lists commands in its command table's hash order, which a random
/// seed changes at every start: ACL CAT's names, and the single commands
/// that close a user's command rules (ACLDescribeSelectorCommandRules).
/// Both are sorted here; categories and everything else keep their order.
fn acl_order_free(c: &Cmd, raw: Vec<u8>) -> Vec<u8> {
    let text = String::from_utf8_lossy(&raw).into_owned();
    if c.len() == 3 && c[1].eq_ignore_ascii_case(b"CAT") && raw.first() == Some(&b'*') {
        let mut lines: Vec<&str> = text.split("\r\n").collect();
        let head = lines.remove(0);
        let mut pairs: Vec<String> = lines
            .chunks(2)
            .map(|p| p.join("\r\n"))
            .filter(|p| !p.is_empty())
            .collect();
        pairs.sort();
        return format!("{head}\r\n{}\r\n", pairs.join("\r\n")).into_bytes();
    }
    let single = |t: &str| {
        let b = t.as_bytes();
        b.len() > 1 && (b[0] == b'+' || b[0] == b'-') && b[1] != b'@'
    };
    let lines: Vec<String> = text
        .split("\r\n")
        .map(|line| {
            let spaced = line.replace(')', " )");
            let mut tokens: Vec<&str> = spaced.split(' ').collect();
            let mut i = 0;
            while i < tokens.len() {
                let start = i;
                while i < tokens.len() && single(tokens[i]) {
                    i += 1;
                }
                tokens[start..i].sort_unstable();
                i = i.max(start + 1);
            }
            tokens.join(" ").replace(" )", ")")
        })
        .collect();
    lines.join("\r\n").into_bytes()
}

#[test]
fn acl_commands_reply_as_redis_server_does() {
    compare_as("acl", &mut acl, acl_order_free);
}

/// A function library's code: a header (usually valid) and a few
/// registrations (usually valid), with load-time statements mixed in.
fn fn_library(rng: &mut Rng) -> String {
    let lib = rng.pick(&["L1", "L2", "L3"]);
    let mut code = match rng.below(12) {
        0 => String::new(),
        1 => format!("#!lua name={lib} bogus=1\n"),
        2 => "#!lua\n".to_string(),
        3 => format!("#!lua  name={lib}\n"),
        _ => format!("#!lua name={lib}\n"),
    };
    for _ in 0..rng.below(4) {
        // No two names that differ only in case: redis-server 7.0.15 loads
        // such a library but asserts (and exits) when it is deleted or
        // replaced (functions.c:291). datanode deletes it.
        let name = if rng.chance(10) {
            rng.pick(&["f-1", ""])
        } else {
            rng.pick(&["f1", "f2", "f3", "f_4"])
        };
        let body = rng.pick(&[
            "return 1",
            "return redis.call('set', keys[1], args[1])",
            "return redis.call('get', keys[1])",
            "return {keys[1], args[1], #keys, #args}",
            "return redis.call('incr', 'cnt')",
            "error('boom')",
            "return redis.error_reply('E1 custom')",
            "return nosuch.field",
            "return redis.pcall('nosuchcmd')",
        ]);
        let callback = format!("function(keys, args) {body} end");
        let flags = rng.pick(&[
            "",
            "{}",
            "{'no-writes'}",
            "{'allow-oom'}",
            "{'no-writes', 'allow-stale'}",
            "{'no-cluster'}",
            "{'allow-cross-slot-keys'}",
            "{'bogus'}",
            "'no-writes'",
        ]);
        let line = match rng.below(14) {
            0..=6 => format!("redis.register_function('{name}', {callback})"),
            7..=10 => {
                let mut t = format!("function_name='{name}', callback={callback}");
                if !flags.is_empty() {
                    t.push_str(&format!(", flags={flags}"));
                }
                if rng.chance(30) {
                    t.push_str(", description='d'");
                }
                format!("redis.register_function{{{t}}}")
            }
            11 => rng
                .pick(&[
                    "redis.register_function('f1')",
                    "redis.register_function{function_name='f1', other=1, callback=function() end}",
                    "redis.call('ping')",
                    "local x = 1",
                    "error('at load')",
                    "syntax error here",
                    "return 1",
                ])
                .to_string(),
            _ => format!("redis.register_function('{name}', {callback}) redis.register_function('{name}', {callback})"),
        };
        code.push_str(&line);
        code.push('\n');
    }
    code
}

fn functions(payloads: &[Vec<u8>], rng: &mut Rng, c: &mut Cmd) {
    let key = rng.pick(&["k1", "k2", "{t}a"]);
    match rng.below(16) {
        0..=3 => {
            push(c, &["FUNCTION", "LOAD"]);
            if rng.chance(40) {
                push(c, &[rng.pick(&["REPLACE", "replace", "REPLACE", "REPLAC"])]);
            }
            c.push(fn_library(rng).into_bytes());
        }
        4..=6 => {
            let ro = rng.chance(30);
            push(
                c,
                &[
                    if ro { "FCALL_RO" } else { "FCALL" },
                    rng.pick(&["f1", "f2", "f3", "F1", "f_4", "nosuch"]),
                ],
            );
            match rng.below(6) {
                0 => push(c, &["0"]),
                1 => push(c, &["1", key, "v"]),
                2 => push(c, &["2", key, "k2", "v"]),
                3 => push(c, &["x"]),
                4 => push(c, &["-1"]),
                _ => push(c, &["3", key]),
            }
        }
        7 => push(
            c,
            &[
                "FUNCTION",
                "DELETE",
                rng.pick(&["L1", "L2", "L3", "nosuch"]),
            ],
        ),
        8 | 9 => {
            push(c, &["FUNCTION", "LIST"]);
            for _ in 0..rng.below(3) {
                match rng.below(3) {
                    0 => push(c, &["WITHCODE"]),
                    1 => push(c, &["LIBRARYNAME", rng.pick(&["L*", "L1", "x*", "*"])]),
                    _ => push(c, &[rng.pick(&["LIBRARYNAME", "bad"])]),
                }
            }
        }
        10 => push(c, &["FUNCTION", "STATS"]),
        11 => push(c, &["FUNCTION", "DUMP"]),
        12 | 13 => {
            push(c, &["FUNCTION", "RESTORE"]);
            let mut p = payloads[rng.below(payloads.len())].clone();
            if rng.chance(20) && !p.is_empty() {
                let i = rng.below(p.len());
                p[i] ^= 1 << rng.below(8);
            }
            c.push(p);
            if rng.chance(70) {
                push(
                    c,
                    &[rng.pick(&["APPEND", "REPLACE", "FLUSH", "flush", "bad"])],
                );
            }
        }
        14 => push(c, &["FUNCTION", "FLUSH"]),
        _ => push(c, &["GET", key]),
    }
}

/// FUNCTION LIST in a fixed order: redis-server walks its libraries and
/// their functions in the order of seeded hash tables. FUNCTION DUMP by
/// its length, for the same reason.
fn functions_order_free(c: &Cmd, raw: Vec<u8>) -> Vec<u8> {
    use slotkv_tests::resp::Reply;
    fn sort_lists(r: Reply) -> Reply {
        match r {
            Reply::Agg(t, items) => {
                let mut items: Vec<Reply> = items.into_iter().map(sort_lists).collect();
                if t == b'*' && items.iter().all(|i| matches!(i, Reply::Agg(..))) {
                    items.sort();
                }
                Reply::Agg(t, items)
            }
            s => s,
        }
    }
    let sub = c.get(1).map(|s| s.to_ascii_uppercase());
    if c[0].eq_ignore_ascii_case(b"FUNCTION") && raw.first() != Some(&b'-') {
        if sub.as_deref() == Some(b"LIST") {
            if let Some((tree, _)) = slotkv_tests::resp::parse(&raw) {
                return format!("{:?}", sort_lists(tree)).into_bytes();
            }
        }
        if sub.as_deref() == Some(b"DUMP") {
            return format!("dump of {} bytes", raw.len()).into_bytes();
        }
    }
    // Libraries and functions are checked for conflicts in the order they
    // come out of seeded hash tables: any of the conflicting names may be
    // the one named.
    if matches!(sub.as_deref(), Some(b"RESTORE" | b"LOAD")) && raw.ends_with(b" already exists\r\n")
    {
        let text = String::from_utf8_lossy(&raw);
        if let Some(kind) = ["-ERR Library ", "-ERR Function "]
            .iter()
            .find(|k| text.starts_with(*k))
        {
            return format!("{kind}… already exists").into_bytes();
        }
    }
    raw
}

#[test]
fn function_commands_reply_as_redis_server_does() {
    // RESTORE payloads that redis-server wrote: none, one library, two.
    let payloads: Vec<Vec<u8>> = {
        let n = slotkv_tests::Node::start(slotkv_tests::Server::Redis, &["--save", ""]);
        let mut c = n.conn();
        let dump = |c: &mut slotkv_tests::resp::Conn| {
            let raw = c.cmd(&["FUNCTION", "DUMP"]).expect("DUMP").raw;
            let start = raw.iter().position(|&b| b == b'\n').map_or(0, |i| i + 1);
            raw[start..raw.len() - 2].to_vec()
        };
        let mut out = vec![dump(&mut c)];
        for code in [
            "#!lua name=L1\nredis.register_function('f1', function(k, a) return 1 end)",
            "#!lua name=L3\nredis.register_function{function_name='f3', callback=function(k, a) return redis.call('get', k[1]) end, flags={'no-writes'}}",
        ] {
            c.cmd(&["FUNCTION", "LOAD", code]).expect("LOAD");
            out.push(dump(&mut c));
        }
        out
    };
    compare_as(
        "functions",
        &mut |rng, c| functions(&payloads, rng, c),
        functions_order_free,
    );
}

/// A value that compresses in places: runs, repeated words and random
/// bytes, from empty to a few KB, so DUMP's LZF meets every case (no
/// match, matches near both ends, long and overlapping references, the
/// output limit).
fn compressible(rng: &mut Rng) -> Vec<u8> {
    let mut v = Vec::new();
    let parts = rng.below(12);
    for _ in 0..parts {
        match rng.below(5) {
            0 => v.extend(std::iter::repeat_n(
                b'a' + rng.below(3) as u8,
                1 + rng.below(300),
            )),
            1 => {
                let words: [&[u8]; 6] =
                    [b"abc", b"value:", b"x", b"0123456789", b"\x00\xff", b"ab"];
                let word = words[rng.below(words.len())];
                for _ in 0..1 + rng.below(40) {
                    v.extend_from_slice(word);
                }
            }
            2 => {
                // An earlier stretch again, at a distance.
                if !v.is_empty() {
                    let from = rng.below(v.len());
                    let len = 1 + rng.below(v.len() - from);
                    let copy = v[from..from + len].to_vec();
                    v.extend_from_slice(&copy);
                }
            }
            3 => v.extend((0..rng.below(40)).map(|_| rng.below(256) as u8)),
            _ => v.extend((0..rng.below(20)).map(|_| b'a' + rng.below(4) as u8)),
        }
    }
    v
}

/// An element that is often an integer, in each listpack and intset
/// width, or one of the strings that look like one but are not.
fn int_like(rng: &mut Rng) -> String {
    match rng.below(10) {
        0 => rng.below(128).to_string(),
        1 => (rng.below(8192) as i64 - 4096).to_string(),
        2 => (rng.below(65536) as i64 - 32768).to_string(),
        3 => (rng.below(1 << 24) as i64 - (1 << 23)).to_string(),
        4 => (rng.below(1 << 32) as i64 - (1 << 31)).to_string(),
        5 => (rng.next_u64() as i64).to_string(),
        6 => rng
            .pick(&[
                "-0",
                "007",
                "+5",
                "1.0",
                " 1",
                "9223372036854775807",
                "-9223372036854775808",
                "9223372036854775808",
                "",
            ])
            .to_string(),
        _ => rng.below(20).to_string(),
    }
}

fn dumps(rng: &mut Rng, c: &mut Cmd) {
    let key = rng.pick(&["s", "l", "h", "z", "i", "t"]);
    let element = |rng: &mut Rng| -> Vec<u8> {
        if rng.chance(50) {
            int_like(rng).into_bytes()
        } else {
            compressible(rng)
        }
    };
    match rng.below(24) {
        0 | 1 => {
            push(c, &["SET", "s"]);
            c.push(compressible(rng));
        }
        2..=4 => {
            push(c, &[rng.pick(&["RPUSH", "LPUSH"]), "l"]);
            for _ in 0..1 + rng.below(4) {
                c.push(element(rng));
            }
        }
        5 => {
            push(c, &["LSET", "l", rng.pick(&["0", "1", "-1", "5"])]);
            c.push(element(rng));
        }
        6 => {
            push(c, &["LINSERT", "l", rng.pick(&["BEFORE", "AFTER"])]);
            push(c, &[&rng.below(20).to_string()]);
            c.push(element(rng));
        }
        7 => push(
            c,
            &[
                "LREM",
                "l",
                rng.pick(&["0", "1", "-2"]),
                &rng.below(20).to_string(),
            ],
        ),
        8 => push(
            c,
            &[
                "LTRIM",
                "l",
                rng.pick(&["0", "1", "3"]),
                rng.pick(&["-1", "-3", "100"]),
            ],
        ),
        9 => push(
            c,
            &[rng.pick(&["RPOP", "LPOP"]), "l", rng.pick(&["1", "3"])],
        ),
        10 | 11 => {
            // Fields and values of at most 64 bytes keep the hash a
            // listpack mostly.
            push(c, &["HSET", "h"]);
            for _ in 0..1 + rng.below(3) {
                for _ in 0..2 {
                    let mut v = element(rng);
                    v.truncate(64 + rng.below(2));
                    c.push(v);
                }
            }
        }
        12 => push(
            c,
            &[
                "HINCRBY",
                "h",
                &int_like(rng),
                rng.pick(&["1", "-100", "1000000"]),
            ],
        ),
        13 => push(c, &["HDEL", "h", &int_like(rng)]),
        14 | 15 => {
            let score = rng.pick(&[
                "1",
                "2.5",
                "-3",
                "0",
                "-0",
                "inf",
                "-inf",
                "1e300",
                "4611686018427387904",
                "0.1",
                "123456789",
            ]);
            push(c, &["ZADD", "z", score]);
            let mut m = element(rng);
            m.truncate(64 + rng.below(2));
            c.push(m);
        }
        16 => push(
            c,
            &[
                "ZINCRBY",
                "z",
                rng.pick(&["1", "0.5", "-2"]),
                &int_like(rng),
            ],
        ),
        17 | 18 => {
            push(c, &[rng.pick(&["SADD", "SADD", "SREM"]), "i"]);
            for _ in 0..1 + rng.below(3) {
                push(c, &[&int_like(rng)]);
            }
        }
        19 => push(c, &["DEL", key]),
        20 => push(c, &["OBJECT", "ENCODING", key]),
        _ => push(c, &["DUMP", key]),
    }
}

/// DUMP of a hash-table set or hash by its type and length: redis-server
/// writes their elements in seeded hash order.
fn dump_order_free(c: &Cmd, raw: Vec<u8>) -> Vec<u8> {
    if c[0].eq_ignore_ascii_case(b"DUMP") {
        let start = raw.iter().position(|&b| b == b'\n').map_or(0, |i| i + 1);
        if let Some(&t) = raw.get(start) {
            if t == 2 || t == 4 {
                return format!("unordered type {t}, {} bytes", raw.len()).into_bytes();
            }
        }
    }
    raw
}

#[test]
fn dump_payloads_equal_redis_servers_byte_for_byte() {
    compare_as("dump", &mut dumps, dump_order_free);
}

const SCORES: &[&str] = &[
    "0",
    "1",
    "-1",
    "2.5",
    "-0",
    "inf",
    "-inf",
    "+inf",
    "1e300",
    "0.1",
    "3",
    "(1",
    "(2.5",
    "nan",
    "x",
    "",
    "1e",
    "0x10",
    "  1",
    "9007199254740993",
];
const LEX: &[&str] = &["-", "+", "[a", "(a", "[m", "(z", "a", "[", "(", "[1"];
const CORE_MEMBERS: &[&str] = &["a", "b", "c", "m", "z", "1", "2", "10", "-5", ""];

/// Sorted sets, lists, small hashes, integer sets and strings: the
/// commands whose replies depend only on the commands (no randomness, no
/// hash-table order: hashes stay listpacks, sets intsets).
fn core(rng: &mut Rng, c: &mut Cmd) {
    let zk = rng.pick(&["z1", "z2", "z3"]);
    let member = rng.pick(CORE_MEMBERS);
    match rng.below(40) {
        0..=2 => {
            push(c, &["ZADD", zk]);
            for _ in 0..rng.below(3) {
                push(c, &[rng.pick(&["NX", "XX", "GT", "LT", "CH", "INCR"])]);
            }
            for _ in 0..1 + rng.below(3) {
                push(c, &[rng.pick(SCORES), rng.pick(CORE_MEMBERS)]);
            }
        }
        3 => push(c, &["ZINCRBY", zk, rng.pick(SCORES), member]),
        4 | 5 => {
            let by = rng.below(3);
            push(
                c,
                &["ZRANGE", if by == 2 && rng.chance(50) { "zl" } else { zk }],
            );
            match by {
                0 => push(c, &[rng.pick(ANY_NUM), rng.pick(ANY_NUM)]),
                1 => push(c, &[rng.pick(SCORES), rng.pick(SCORES), "BYSCORE"]),
                _ => push(c, &[rng.pick(LEX), rng.pick(LEX), "BYLEX"]),
            }
            if rng.chance(30) {
                push(c, &["REV"]);
            }
            if rng.chance(30) {
                push(
                    c,
                    &[
                        "LIMIT",
                        rng.pick(&["0", "1", "-1", "x"]),
                        rng.pick(&["1", "2", "-1", "0"]),
                    ],
                );
            }
            if rng.chance(40) {
                push(c, &["WITHSCORES"]);
            }
        }
        6 => push(
            c,
            &[
                rng.pick(&["ZRANGEBYSCORE", "ZREVRANGEBYSCORE", "ZCOUNT"]),
                zk,
                rng.pick(SCORES),
                rng.pick(SCORES),
            ],
        ),
        // Lexicographic ranges, on "zl" (every member scores 0) and on sets
        // of mixed scores, which Redis leaves unspecified but answers, for
        // a set this small, by walking its listpack.
        7 => push(
            c,
            &[
                rng.pick(&[
                    "ZRANGEBYLEX",
                    "ZREVRANGEBYLEX",
                    "ZLEXCOUNT",
                    "ZREMRANGEBYLEX",
                ]),
                rng.pick(&["zl", zk]),
                rng.pick(LEX),
                rng.pick(LEX),
            ],
        ),
        8 if rng.chance(50) => push(c, &["ZADD", "zl", "0", member]),
        8 => push(
            c,
            &[
                rng.pick(&["ZSCORE", "ZRANK", "ZREVRANK", "ZREM"]),
                zk,
                member,
            ],
        ),
        9 => push(c, &["ZMSCORE", zk, member, rng.pick(CORE_MEMBERS)]),
        10 => push(
            c,
            &[
                rng.pick(&["ZPOPMIN", "ZPOPMAX"]),
                zk,
                rng.pick(&["1", "2", "0", "-1", "x"]),
            ],
        ),
        11 => push(
            c,
            &[
                rng.pick(&["ZREMRANGEBYRANK", "ZREMRANGEBYSCORE"]),
                zk,
                rng.pick(SCORES),
                rng.pick(SCORES),
            ],
        ),
        12 | 13 => {
            let cmd = rng.pick(&[
                "ZUNION",
                "ZINTER",
                "ZDIFF",
                "ZUNIONSTORE",
                "ZINTERSTORE",
                "ZDIFFSTORE",
                "ZINTERCARD",
            ]);
            push(c, &[cmd]);
            if cmd.ends_with("STORE") {
                push(c, &[rng.pick(&["z1", "z2", "z3", "zd"])]);
            }
            let n = 1 + rng.below(3);
            push(c, &[&n.to_string()]);
            for _ in 0..n {
                push(c, &[rng.pick(&["z1", "z2", "z3", "s1", "nosuch"])]);
            }
            if cmd != "ZDIFF" && cmd != "ZDIFFSTORE" && cmd != "ZINTERCARD" && rng.chance(40) {
                push(c, &["WEIGHTS"]);
                for _ in 0..n {
                    push(c, &[rng.pick(&["1", "2", "-1", "0.5", "inf", "x"])]);
                }
            }
            if cmd != "ZDIFF" && cmd != "ZDIFFSTORE" && cmd != "ZINTERCARD" && rng.chance(30) {
                push(c, &["AGGREGATE", rng.pick(&["SUM", "MIN", "MAX", "x"])]);
            }
            if cmd == "ZINTERCARD" && rng.chance(50) {
                push(c, &["LIMIT", rng.pick(&["0", "1", "-1"])]);
            }
            if !cmd.ends_with("STORE") && cmd != "ZINTERCARD" && rng.chance(50) {
                push(c, &["WITHSCORES"]);
            }
        }
        14 if rng.chance(50) => push(
            c,
            &[
                "ZRANGESTORE",
                "zd",
                zk,
                rng.pick(SCORES),
                rng.pick(SCORES),
                rng.pick(&["BYSCORE", "REV"]),
            ],
        ),
        14 => push(
            c,
            &[
                "ZRANGESTORE",
                "zd",
                rng.pick(&["zl", zk]),
                rng.pick(LEX),
                rng.pick(LEX),
                "BYLEX",
            ],
        ),
        15..=17 => {
            push(
                c,
                &[rng.pick(&["RPUSH", "LPUSH", "RPUSHX", "LPUSHX"]), "l1"],
            );
            for _ in 0..1 + rng.below(3) {
                push(c, &[member]);
            }
        }
        18 => push(
            c,
            &[
                "LPOS",
                "l1",
                member,
                "RANK",
                rng.pick(&["1", "-1", "2", "0"]),
                "COUNT",
                rng.pick(&["0", "1", "2"]),
                "MAXLEN",
                rng.pick(&["0", "2"]),
            ],
        ),
        19 => push(c, &["LRANGE", "l1", rng.pick(ANY_NUM), rng.pick(ANY_NUM)]),
        20 => push(c, &["LINDEX", "l1", rng.pick(ANY_NUM)]),
        21 => push(
            c,
            &[
                "LMPOP",
                "2",
                "l1",
                "l2",
                rng.pick(&["LEFT", "RIGHT"]),
                "COUNT",
                rng.pick(&["1", "3", "0"]),
            ],
        ),
        22 => push(
            c,
            &[
                "LMOVE",
                "l1",
                rng.pick(&["l1", "l2"]),
                rng.pick(&["LEFT", "RIGHT"]),
                rng.pick(&["LEFT", "RIGHT"]),
            ],
        ),
        23 => push(
            c,
            &[
                "LINSERT",
                "l1",
                rng.pick(&["BEFORE", "AFTER", "x"]),
                member,
                rng.pick(CORE_MEMBERS),
            ],
        ),
        24 => push(c, &["LSET", "l1", rng.pick(ANY_NUM), member]),
        25 => push(c, &["LREM", "l1", rng.pick(&["0", "1", "-1", "2"]), member]),
        26 => push(c, &["LTRIM", "l1", rng.pick(ANY_NUM), rng.pick(ANY_NUM)]),
        // No 1e300: HINCRBYFLOAT would turn it into 301 digits, and the
        // hash into a hash table, whose order redis-server seeds.
        27 | 28 => push(c, &["HSET", "h1", member, rng.pick(&SCORES[..8])]),
        // Small increments: a value past 64 bytes makes the hash a hash
        // table, whose order redis-server seeds.
        29 => push(
            c,
            &[
                rng.pick(&["HINCRBY", "HINCRBYFLOAT"]),
                "h1",
                member,
                rng.pick(&["1", "-1", "2.5", "0.1", "-0", "x", "", "inf", "0x10", "1e5"]),
            ],
        ),
        30 => push(
            c,
            &[
                rng.pick(&["HGET", "HSTRLEN", "HEXISTS", "HDEL"]),
                "h1",
                member,
            ],
        ),
        31 => push(c, &[rng.pick(&["HGETALL", "HKEYS", "HVALS", "HLEN"]), "h1"]),
        32 => push(
            c,
            &[
                "SADD",
                "s1",
                rng.pick(&["1", "2", "-5", "10", "70000", "5000000000"]),
            ],
        ),
        33 => push(c, &[rng.pick(&["SMEMBERS", "SCARD"]), "s1"]),
        34 => push(
            c,
            &[
                rng.pick(&["SINTER", "SUNION", "SDIFF"]),
                "s1",
                rng.pick(&["s2", "s1", "z1"]),
            ],
        ),
        35 => push(c, &["SADD", "s2", rng.pick(&["1", "2", "3", "10"])]),
        36 => push(
            c,
            &[
                rng.pick(&["INCRBYFLOAT", "INCRBY", "DECRBY", "APPEND", "SETRANGE"]),
                "k1",
                rng.pick(SCORES),
            ],
        ),
        37 => push(c, &[rng.pick(&["GET", "STRLEN", "GETDEL"]), "k1"]),
        38 => push(c, &["GETRANGE", "k1", rng.pick(ANY_NUM), rng.pick(ANY_NUM)]),
        _ => push(
            c,
            &[
                "DEL",
                rng.pick(&["z1", "z2", "z3", "l1", "l2", "h1", "s1", "k1"]),
            ],
        ),
    }
}

#[test]
fn sorted_set_list_hash_and_string_commands_reply_as_redis_server_does() {
    compare("core", &mut core);
}

/// Elements SORT meets: integers, decimals, words (lower case and digits
/// only, so that ALPHA's strcoll orders them as bytes in any locale).
const SORT_ELEMENTS: &[&str] = &[
    "1", "2", "10", "-3", "2.5", "0", "a", "b", "abc", "1e3", "inf", "-inf", "0x10", "3a", "",
];

/// SORT and SORT_RO over a list, an integer set and a sorted set, with BY
/// and GET patterns reaching strings and hash fields.
fn sort(rng: &mut Rng, c: &mut Cmd) {
    let e = rng.pick(SORT_ELEMENTS);
    match rng.below(10) {
        0 => push(c, &["RPUSH", "sl", e]),
        1 => push(
            c,
            &["SADD", "ss", rng.pick(&["1", "2", "10", "-3", "0", "7"])],
        ),
        2 => push(c, &["ZADD", "sz", rng.pick(&["1", "2", "0.5", "-1"]), e]),
        3 => push(c, &["SET", &format!("w_{e}"), rng.pick(SORT_ELEMENTS)]),
        4 => push(
            c,
            &["HSET", &format!("h_{e}"), "f", rng.pick(SORT_ELEMENTS)],
        ),
        5 if rng.chance(20) => push(c, &["DEL", rng.pick(&["sl", "ss", "sz", "dst"])]),
        _ => {
            let ro = rng.chance(20);
            let key = rng.pick(&["sl", "ss", "sz", "nosuch", "w_1"]);
            push(c, &[if ro { "SORT_RO" } else { "SORT" }, key]);
            // A sorted set's members are read in hash-table order, which
            // redis-server seeds: equal weights would leave them in it.
            if key == "sz" && rng.chance(40) {
                push(c, &["BY", "nosort"]);
            } else if key != "sz" && rng.chance(40) {
                push(
                    c,
                    &[
                        "BY",
                        rng.pick(&["w_*", "h_*->f", "nosort", "nokey_*", "w_*->", "*", "h_*->"]),
                    ],
                );
            }
            if rng.chance(30) {
                push(
                    c,
                    &[
                        "LIMIT",
                        rng.pick(&["0", "1", "-1", "x"]),
                        rng.pick(&["1", "2", "-1", "0"]),
                    ],
                );
            }
            for _ in 0..rng.below(3) {
                push(
                    c,
                    &["GET", rng.pick(&["#", "w_*", "h_*->f", "nokey_*", "*"])],
                );
            }
            if rng.chance(40) {
                push(c, &[rng.pick(&["ASC", "DESC"])]);
            }
            if rng.chance(40) {
                push(c, &["ALPHA"]);
            }
            if !ro && rng.chance(20) {
                push(c, &["STORE", "dst"]);
            }
            if rng.chance(5) {
                push(c, &[rng.pick(&["BOGUS", "GET", "LIMIT"])]);
            }
        }
    }
}

#[test]
fn sort_replies_as_redis_server_does() {
    compare("sort", &mut sort);
}

/// Values strings meet: integers at the edges, decimals, words, empty.
const STR_VALUES: &[&str] = &[
    "0",
    "1",
    "-1",
    "10",
    "9223372036854775807",
    "-9223372036854775808",
    "1.5",
    "-0",
    "abc",
    "",
    "hello world",
    "0x10",
    " 1",
    "1e3",
    "inf",
    "3.0",
    "007",
];

/// An expiry far beyond the run in the unit `opt` names (milliseconds
/// for the P forms): a key must not expire between the two servers'
/// copies of a command.
fn far(opt: &str) -> &'static str {
    if opt.starts_with('P') {
        "100000"
    } else {
        "100"
    }
}

/// Strings and keys: every SET option, the counters, ranges, LCS, and
/// the key commands whose replies do not depend on time.
fn strings(rng: &mut Rng, c: &mut Cmd) {
    let k = rng.pick(&["s1", "s2", "s3"]);
    let v = rng.pick(STR_VALUES);
    match rng.below(26) {
        0..=2 => {
            push(c, &["SET", k, v]);
            for _ in 0..rng.below(3) {
                match rng.below(6) {
                    0 => push(c, &[rng.pick(&["NX", "XX", "GET", "KEEPTTL", "nx"])]),
                    1 => {
                        let unit = rng.pick(&["EX", "PX"]);
                        push(
                            c,
                            &[
                                unit,
                                rng.pick(&[far(unit), "0", "-1", "x", "9223372036854775807"]),
                            ],
                        )
                    }
                    2 => push(
                        c,
                        &[
                            rng.pick(&["EXAT", "PXAT"]),
                            rng.pick(&["99999999999", "0", "-5"]),
                        ],
                    ),
                    _ => push(c, &["GET"]),
                }
            }
        }
        3 => push(
            c,
            &[
                rng.pick(&["INCR", "DECR", "GET", "STRLEN", "GETDEL", "TYPE"]),
                k,
            ],
        ),
        4 => push(c, &[rng.pick(&["INCRBY", "DECRBY", "INCRBYFLOAT"]), k, v]),
        5 => push(c, &["APPEND", k, v]),
        6 => push(
            c,
            &[
                "SETRANGE",
                k,
                rng.pick(&["0", "1", "5", "-1", "x", "536870912"]),
                v,
            ],
        ),
        7 => push(
            c,
            &[
                rng.pick(&["GETRANGE", "SUBSTR"]),
                k,
                rng.pick(ANY_NUM),
                rng.pick(ANY_NUM),
            ],
        ),
        8 => push(c, &["MSETNX", k, v, rng.pick(&["s1", "s2", "s3"]), v]),
        9 => push(c, &["MGET", "s1", "s2", "s3", "nosuch"]),
        10 => {
            push(c, &["LCS", "s1", "s2"]);
            match rng.below(4) {
                0 => push(c, &["LEN"]),
                1 => push(c, &["IDX"]),
                2 => push(
                    c,
                    &[
                        "IDX",
                        "MINMATCHLEN",
                        rng.pick(&["0", "1", "2", "x"]),
                        "WITHMATCHLEN",
                    ],
                ),
                _ => {}
            }
        }
        11 => push(c, &["SETNX", k, v]),
        12 => push(c, &["GETSET", k, v]),
        13 => {
            // GT and LT compare the new expiry with the key's: two relative
            // ones set milliseconds apart differ by those milliseconds, which
            // the two servers need not see alike. So they come with
            // absolute times only.
            let cmd = rng.pick(&["EXPIRE", "PEXPIRE", "EXPIREAT", "PEXPIREAT"]);
            let when = if cmd.ends_with("AT") {
                rng.pick(if cmd.starts_with('P') {
                    &["4102444800000", "4102444900000"]
                } else {
                    &["4102444800", "4102444900"]
                })
            } else {
                far(cmd)
            };
            push(c, &[cmd, k, rng.pick(&[when, "0", "-1", "x"])]);
            if rng.chance(70) {
                push(
                    c,
                    &[if cmd.ends_with("AT") {
                        rng.pick(&["NX", "XX", "GT", "LT", "BAD"])
                    } else {
                        rng.pick(&["NX", "XX", "BAD"])
                    }],
                );
            }
        }
        14 => push(c, &["PERSIST", k]),
        // TTL and PTTL depend on the milliseconds between commands; EXISTS
        // shows whether an expiry took effect.
        15 => push(c, &["EXISTS", k]),
        16 => {
            push(c, &["COPY", k, rng.pick(&["s1", "s2", "s3"])]);
            if rng.chance(60) {
                push(c, &[rng.pick(&["REPLACE", "DB", "BAD"])]);
            }
        }
        17 => push(
            c,
            &[
                rng.pick(&["RENAME", "RENAMENX"]),
                k,
                rng.pick(&["s1", "s2", "s3", "nosuch"]),
            ],
        ),
        // Not OBJECT REFCOUNT: a COPY of a small integer is a private
        // object on redis-server (refcount 1); datanode does not track it.
        18 => push(c, &["OBJECT", "ENCODING", k]),
        19 => push(c, &["EXISTS", "s1", "s2", "s1", "nosuch"]),
        20 => push(c, &["DEL", k]),
        21 => push(c, &["SETEX", k, rng.pick(&["100", "0", "-1"]), v]),
        22 => {
            let opt = rng.pick(&["PERSIST", "EX", "PX", "BAD"]);
            push(c, &["GETEX", k, opt, rng.pick(&[far(opt), "0"])])
        }
        23 => push(c, &["RPUSH", k, v]),
        _ => push(c, &["DUMP", k]),
    }
}

#[test]
fn string_and_key_commands_reply_as_redis_server_does() {
    compare("strings", &mut strings);
}
