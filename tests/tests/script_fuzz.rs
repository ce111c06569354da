//! Random and mutated Lua bodies through EVAL and FCALL against a real
//! datanode: whatever a script does (bad syntax, library calls with odd
//! arguments, commands with any arguments, errors of every shape, RESP2
//! and RESP3), the server answers with one well-formed reply, the
//! connection stays in step (a PING after each body answers PONG), and the
//! process neither crashes nor panics.
//!
//! A second test runs bodies whose replies depend only on the script
//! against redis-server as well, and compares the replies byte for byte.
//!
//! The bodies come from a seeded generator, so a failure names its seed and
//! body and reproduces. Loops are bounded and nothing recurses, so every
//! body ends by itself; mutations never insert digits, which keeps loop
//! bounds and repeat counts small.

use std::time::Duration;

use slotkv_tests::{encode, Conn, Node, Rng, Server};

/// Lua values of every type, the awkward ones included.
const VALUES: &[&str] = &[
    "nil",
    "true",
    "false",
    "0",
    "-1",
    "7",
    "0.5",
    "-2.25",
    "1/0",
    "-1/0",
    "0/0",
    "2^53",
    "2^63",
    "-2^63",
    "1e308",
    "1e-17",
    "-0",
    "-2^-60",
    "''",
    "'x'",
    "'\\0'",
    "'k'",
    "'{k}x'",
    "string.rep('ab', 150)",
    "'{\"a\":[1,2,{\"b\":null}],\"c\":1.5}'",
    "'[[[[[[[[[[[[[['",
    "'\\145\\1\\2'",
    "'\\217\\255\\0'",
    "'\\130\\1\\2\\161a\\145\\3'",
    "'%s %d %q %5.2f'",
    "'-1'",
    "'inf'",
    "'nan'",
    "'0x10'",
    "'1e5'",
    "'  12  '",
    "'-  12  '",
    "'- x\\r\\n'",
    "'>i4'",
    "'<hBs'",
    "'c0'",
    "'i17'",
    "{}",
    "{1, 2, 3}",
    "{a = 1, b = 'x'}",
    "{1, nil, 3}",
    "{{{{}}}}",
    "{err = 'CODE failed'}",
    "{err = 5}",
    "{ok = 'fine'}",
    "{double = 1.5}",
    "{map = {a = 1}}",
    "{set = {a = true}}",
    "{big_number = '123'}",
    "{verbatim_string = {format = 'txt', string = 'v'}}",
    "KEYS",
    "ARGV",
    "redis",
    "string",
    "cjson.null",
    "function() end",
    "coroutine.create(function() end)",
];

/// Arguments for commands: keys, numbers, options, binary.
const ARGS: &[&str] = &[
    "'k'",
    "'k2'",
    "'{k}x'",
    "'0'",
    "'1'",
    "'-1'",
    "'10'",
    "'1.5'",
    "'x'",
    "''",
    "'nan'",
    "'inf'",
    "'-inf'",
    "'field'",
    "'NX'",
    "'XX'",
    "'GT'",
    "'EX'",
    "'PX'",
    "'*'",
    "'$'",
    "'>'",
    "'COUNT'",
    "'LIMIT'",
    "'BYLEX'",
    "'(1'",
    "'[a'",
    "'+'",
    "'-'",
    "'a\\0b'",
    "'WITHSCORES'",
    "'MATCH'",
    "'STREAMS'",
    "'GROUP'",
    "'g'",
    "'c'",
    "3",
    "0.25",
    "-4",
    "true",
    "false",
    "{}",
    "nil",
];

/// Commands a script may run (or is refused): none that allocate by an
/// argument's value (SETBIT, SETRANGE) or stop the server.
const COMMANDS: &[&str] = &[
    "'SET'",
    "'GET'",
    "'INCR'",
    "'INCRBYFLOAT'",
    "'APPEND'",
    "'HSET'",
    "'HGETALL'",
    "'HINCRBY'",
    "'LPUSH'",
    "'LRANGE'",
    "'LPOP'",
    "'ZADD'",
    "'ZRANGE'",
    "'ZINCRBY'",
    "'SADD'",
    "'SMEMBERS'",
    "'SPOP'",
    "'XADD'",
    "'XRANGE'",
    "'XLEN'",
    "'XREADGROUP'",
    "'XGROUP'",
    "'PFADD'",
    "'PFCOUNT'",
    "'GEOADD'",
    "'GEODIST'",
    "'GETBIT'",
    "'BITCOUNT'",
    "'TYPE'",
    "'DEL'",
    "'EXISTS'",
    "'EXPIRE'",
    "'TTL'",
    "'OBJECT'",
    "'PING'",
    "'ECHO'",
    "'TIME'",
    "'DBSIZE'",
    "'EVAL'",
    "'MULTI'",
    "'BLPOP'",
    "'SUBSCRIBE'",
    "'SORT'",
    "'SCAN'",
    "'RANDOMKEY'",
    "'CLIENT'",
    "'nosuchcommand'",
    "''",
    "42",
];

/// Expressions: library calls, conversions, operators.
const EXPRS: &[&str] = &[
    "redis.call(@C)",
    "redis.call(@C, @A)",
    "redis.call(@C, @A, @A)",
    "redis.call(@C, @A, @A, @A, @A)",
    "redis.pcall(@C, @A, @A)",
    "redis.pcall(@C, @A, @A, @A)",
    "cjson.encode(@V)",
    "cjson.decode(@V)",
    "cmsgpack.pack(@V, @V)",
    "cmsgpack.unpack(@V)",
    "cmsgpack.unpack_one(@V, @V)",
    "cmsgpack.unpack_limit(@V, @V, @V)",
    "struct.pack(@V, @V, @V)",
    "struct.unpack(@V, @V, @V)",
    "struct.size(@V)",
    "struct.pack('>i4', @V)",
    "struct.pack('<hBs', @V, @V, @V)",
    "struct.unpack('<hB', @V, @V)",
    "struct.size(@A)",
    "bit.band(@V, @V)",
    "bit.tohex(@V, @V)",
    "bit.lshift(@V, @V)",
    "bit.bswap(@V)",
    "redis.sha1hex(@V)",
    "redis.error_reply(@V)",
    "redis.status_reply(@V)",
    "redis.setresp(@V)",
    "redis.set_repl(@V)",
    "redis.acl_check_cmd(@C, @A)",
    "redis.log(redis.LOG_DEBUG, @V)",
    "redis.breakpoint()",
    "redis.debug(@V)",
    "string.format(@V, @V, @V)",
    "string.rep(@V, 3)",
    "string.sub(@V, @V, @V)",
    "string.byte(@V, @V)",
    "string.char(@V)",
    "string.find(@V, @V)",
    "string.gsub(@V, '%w', @V)",
    "string.upper(@V)",
    "table.concat(@V, @V)",
    "table.insert(@V, @V)",
    "table.sort(@V)",
    "table.remove(@V)",
    "unpack(@V)",
    "select('#', @V, @V)",
    "tostring(@V)",
    "tonumber(@V, @V)",
    "math.floor(@V)",
    "math.random(@V, @V)",
    "math.fmod(@V, @V)",
    "loadstring(@V)",
    "setmetatable(@V, @V)",
    "getmetatable(@V)",
    "rawset(@V, @V, @V)",
    "rawget(@V, @V)",
    "rawequal(@V, @V)",
    "next(@V)",
    "type(@V)",
    "#@V",
    "@V .. @V",
    "@V + @V",
    "@V < @V",
    "-@V",
    "not @V",
    "{@V, @V, @V}",
    "{[@V] = @V}",
    "{map = {[@V] = @V, [@V] = @V}}",
    "{set = {[@V] = @V}}",
    "{double = @V}",
    "cjson.encode({[@V] = @V})",
    "pcall(error, @V)",
    "pcall(redis.call, @C, @A)",
    "coroutine.wrap(function() return @V end)()",
    "collectgarbage('count')",
    "_G[@V]",
    "redis[@V]",
    "KEYS[1]",
    "ARGV[2]",
    "@V",
];

/// Statements around the expressions; `@S` nests one more statement.
const STATEMENTS: &[&str] = &[
    "local x = @E",
    "local a, b = @E, @E",
    "x = @E",
    "return @E",
    "@E",
    "pcall(function() @S end)",
    "for i = 1, 3 do @S end",
    "if @E then @S else @S end",
    "do local t = {@E, @E} @S end",
    "error(@E)",
    "assert(@E, @E)",
    "assert(@E, 'failed')",
    "redis.call('SET', 'k', @A)",
];

/// Which pieces a body may use: all of them, or all but `skip`.
struct Pools {
    skip: &'static [&'static str],
}

const ANY: Pools = Pools { skip: &[] };

/// Bodies whose replies depend only on the script, for comparing with
/// redis-server: no addresses (`tostring`, `%s` of a table, functions),
/// clocks, random members or IDs, the `redis` table (datanode builds it in
/// another order, so `pairs` walks it differently), struct formats that
/// are not ASCII, and no uncaught `error`, which crashes redis-server
/// 7.0.15 itself when given a table.
const SAME: Pools = Pools {
    skip: &[
        "redis",
        "function() end",
        "coroutine.create(function() end)",
        "'SPOP'",
        "'XADD'",
        "'XREADGROUP'",
        "'XGROUP'",
        "'OBJECT'",
        "'TIME'",
        "'SCAN'",
        "'RANDOMKEY'",
        "'CLIENT'",
        "struct.pack(@V, @V, @V)",
        "struct.unpack(@V, @V, @V)",
        "struct.size(@V)",
        "string.format(@V, @V, @V)",
        "string.gsub(@V, '%w', @V)",
        "redis.set_repl(@V)",
        "redis.acl_check_cmd(@C, @A)",
        "redis.log(redis.LOG_DEBUG, @V)",
        "redis.breakpoint()",
        "redis.debug(@V)",
        "loadstring(@V)",
        "setmetatable(@V, @V)",
        "getmetatable(@V)",
        "rawset(@V, @V, @V)",
        "next(@V)",
        "{[@V] = @V}",
        "pcall(error, @V)",
        "coroutine.wrap(function() return @V end)()",
        "collectgarbage('count')",
        "tostring(@V)",
        "_G[@V]",
        "redis[@V]",
        "table.sort(@V)",
        "cmsgpack.unpack_limit(@V, @V, @V)",
        "bit.bswap(@V)",
        "do local t = {@E, @E} @S end",
        "error(@E)",
        "assert(@E, @E)",
    ],
};

/// One of `from` that `p` allows.
fn pick(rng: &mut Rng, p: &Pools, from: &[&'static str]) -> &'static str {
    loop {
        let v = from[rng.below(from.len())];
        if !p.skip.contains(&v) {
            return v;
        }
    }
}

fn expand(rng: &mut Rng, p: &Pools, template: &str, depth: usize) -> String {
    let mut out = String::new();
    let mut rest = template;
    while let Some(at) = rest.find('@') {
        out.push_str(&rest[..at]);
        let tag = rest.as_bytes().get(at + 1).copied().unwrap_or(b' ');
        rest = &rest[(at + 2).min(rest.len())..];
        let piece = match tag {
            b'V' => pick(rng, p, VALUES).to_string(),
            b'A' => pick(rng, p, ARGS).to_string(),
            b'C' => pick(rng, p, COMMANDS).to_string(),
            b'E' if depth < 3 => {
                let e = pick(rng, p, EXPRS);
                expand(rng, p, e, depth + 1)
            }
            b'E' => pick(rng, p, VALUES).to_string(),
            b'S' if depth < 3 => statement(rng, p, depth + 1),
            _ => "local _ = 1".to_string(),
        };
        out.push_str(&piece);
    }
    out.push_str(rest);
    out
}

fn statement(rng: &mut Rng, p: &Pools, depth: usize) -> String {
    let s = pick(rng, p, STATEMENTS);
    expand(rng, p, s, depth)
}

fn body(rng: &mut Rng, p: &Pools) -> Vec<u8> {
    let n = 1 + rng.below(5);
    // Most statements run under pcall, so that bodies often get past their
    // failing parts and reach the reply conversions.
    let mut lines: Vec<String> = (0..n)
        .map(|_| {
            let s = statement(rng, p, 0);
            if rng.chance(70) {
                format!("pcall(function() {s} end)")
            } else {
                s
            }
        })
        .collect();
    if rng.chance(60) {
        lines.push(format!("return {}", expand(rng, p, "@E", 0)));
    }
    let mut b = lines
        .join(if rng.chance(50) { "\n" } else { " " })
        .into_bytes();
    if rng.chance(35) {
        mutate(rng, &mut b);
    }
    b
}

/// A few byte-level edits: syntax the parser must refuse cleanly, or
/// code that still runs somewhere else. Never a digit (see the module doc).
fn mutate(rng: &mut Rng, b: &mut Vec<u8>) {
    const BYTES: &[u8] = b"()[]{}'\"\\=.,;#-~<>\0\n \xff\x80abdenorst";
    for _ in 0..1 + rng.below(4) {
        if b.is_empty() {
            break;
        }
        let at = rng.below(b.len());
        let c = BYTES[rng.below(BYTES.len())];
        match rng.below(5) {
            0 => b[at] = c,
            1 => {
                b.remove(at);
            }
            2 => b.insert(at, c),
            3 => b.truncate(at),
            _ => {
                let end = (at + 1 + rng.below(12)).min(b.len());
                let piece = b[at..end].to_vec();
                b.splice(at..at, piece);
            }
        }
    }
}

/// Sends `args` then PING; the first reply must be well formed, and the
/// PING must answer PONG (the connection is still in step). Returns
/// whether the first reply was an error.
fn run_checked(c: &mut Conn, args: &[&[u8]], what: &str) -> bool {
    let mut req = encode(args);
    req.extend_from_slice(&encode(&["PING"]));
    c.send_raw(&req).expect("send");
    let failed = match c.read_reply() {
        Ok(r) => r.raw.first() == Some(&b'-'),
        Err(e) => panic!("{what}: no reply ({e})"),
    };
    match c.read_reply() {
        Ok(r) if r.raw == b"+PONG\r\n" => failed,
        Ok(r) => panic!(
            "{what}: out of step, PING got {:?}",
            String::from_utf8_lossy(&r.raw)
        ),
        Err(e) => panic!("{what}: the connection died ({e})"),
    }
}

#[test]
fn random_and_mutated_script_bodies_never_break_the_server() {
    let n = Node::start(Server::Datanode, &["--busy-reply-threshold", "2000"]);
    let mut resp2 = n.conn();
    let mut resp3 = n.conn();
    assert!(resp3.text(&["HELLO", "3"]).starts_with('%'));
    // A body that runs away fails the test with its seed, never hangs it.
    resp2.set_timeout(Duration::from_secs(20));
    resp3.set_timeout(Duration::from_secs(20));
    let (mut failed, mut replied) = (0, 0);
    // SLOTKV_SCRIPT_FUZZ_FROM/_BODIES run other seeds, and more of them.
    let from = env_num("SLOTKV_SCRIPT_FUZZ_FROM", 1);
    let bodies = env_num("SLOTKV_SCRIPT_FUZZ_BODIES", 20_000);
    for seed in from..from + bodies {
        let mut rng = Rng::new(seed);
        let b = body(&mut rng, &ANY);
        let what = format!("seed {seed}, body {:?}", String::from_utf8_lossy(&b));
        let c = if seed % 2 == 0 {
            &mut resp2
        } else {
            &mut resp3
        };
        let eval: &[&[u8]] = &[b"EVAL", &b, b"2", b"k", b"{k}x", b"a1", b"\xff"];
        if run_checked(c, eval, &what) {
            failed += 1;
        } else {
            replied += 1;
        }
        // The same body as a library's function, FCALLed.
        if seed % 5 == 0 {
            let mut lib = format!(
                "#!lua name=fz{seed}\nredis.register_function('f{seed}', function(KEYS, ARGV) "
            )
            .into_bytes();
            lib.extend_from_slice(&b);
            lib.extend_from_slice(b"\nend)");
            run_checked(c, &[b"FUNCTION", b"LOAD", &lib], &what);
            let f = format!("f{seed}");
            run_checked(c, &[b"FCALL", f.as_bytes(), b"1", b"k", b"v"], &what);
        }
        // And as a library's own code, run by FUNCTION LOAD.
        if seed % 7 == 0 {
            let mut lib = format!("#!lua name=top{seed}\n").into_bytes();
            lib.extend_from_slice(&b);
            run_checked(c, &[b"FUNCTION", b"LOAD", &lib], &what);
        }
        if seed % 100 == 0 {
            run_checked(c, &[b"FUNCTION", b"FLUSH"], &what);
        }
        if std::env::var_os("SLOTKV_SCRIPT_FUZZ_EACH").is_some() || seed % 50 == 0 {
            // A panic is caught and answered as an error: only the log
            // tells, so it is read as we go, to name the body.
            assert!(
                !n.log().contains("panicked"),
                "the server panicked at or before {what}:\n{}",
                n.log()
            );
        }
    }
    eprintln!("{bodies} bodies from seed {from}: {failed} errors, {replied} other replies");
    // The generator reaches both the error paths and the scripts that run
    // through (a test that only ever saw one kind would prove little).
    assert!(
        failed > bodies / 10 && replied > bodies / 10,
        "{failed} errors, {replied} other replies"
    );
    let mut c = n.conn();
    assert_eq!(
        c.text(&["EVAL", "return redis.call('PING')", "0"]),
        "+PONG\r\n"
    );
    assert!(
        !n.log().contains("panicked"),
        "the server panicked:\n{}",
        n.log()
    );
}

/// A count from the environment, for running more seeds than CI does.
fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[test]
fn generated_script_bodies_reply_as_redis_server_does() {
    // Both servers run the same bodies in the same order (math.random's
    // generator runs on across scripts in both), byte for byte.
    let pair = slotkv_tests::diff::Pair::start(&["--save", "", "--appendonly", "no"]);
    let mut r = pair.redis.conn();
    let mut d = pair.datanode.conn();
    let mut r3 = pair.redis.conn();
    let mut d3 = pair.datanode.conn();
    let _ = r3.cmd(&["HELLO", "3"]);
    let _ = d3.cmd(&["HELLO", "3"]);
    let mut mismatches = Vec::new();
    // SLOTKV_SCRIPT_DIFF_FROM/_BODIES run other seeds, and more of them.
    let from = env_num("SLOTKV_SCRIPT_DIFF_FROM", 1);
    let bodies = env_num("SLOTKV_SCRIPT_DIFF_BODIES", 3000);
    for seed in from..from + bodies {
        let mut rng = Rng::new(seed);
        let b = body(&mut rng, &SAME);
        let (rc, dc) = if seed % 3 == 0 {
            (&mut r3, &mut d3)
        } else {
            (&mut r, &mut d)
        };
        let _ = rc.cmd(&["FLUSHALL"]);
        let _ = dc.cmd(&["FLUSHALL"]);
        let args: &[&[u8]] = &[b"EVAL", &b, b"2", b"k", b"{k}x", b"a1", b"b2"];
        let want = rc.cmd(args).expect("redis-server reply").raw;
        let got = dc.cmd(args).expect("datanode reply").raw;
        if want != got {
            mismatches.push(format!(
                "seed {seed}: {:?}\n  redis:    {:?}\n  datanode: {:?}",
                String::from_utf8_lossy(&b),
                String::from_utf8_lossy(&want),
                String::from_utf8_lossy(&got)
            ));
        }
    }
    assert!(
        mismatches.is_empty(),
        "{} bodies replied differently:\n{}",
        mismatches.len(),
        mismatches.join("\n")
    );
}
