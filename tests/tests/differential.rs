//! Differential tests: every script in `tests/diff/` runs against
//! redis-server and datanode started with the same arguments; replies must
//! match (see `slotkv_tests::diff` for the script format).

use slotkv_tests::diff::Pair;

const ARGS: &[&str] = slotkv_tests::NO_DISK_DEBUG;

fn run(name: &str) {
    let path = format!("{}/diff/{name}.txt", env!("CARGO_MANIFEST_DIR"));
    let script = std::fs::read_to_string(&path).expect("script");
    let pair = Pair::start(ARGS);
    let errors = pair.run(name, &script);
    assert!(
        errors.is_empty(),
        "{} mismatches in {name}:\n{}",
        errors.len(),
        errors.join("\n")
    );
}

/// CLUSTER commands and routing errors: both servers cluster-enabled and
/// alone.
#[test]
fn cluster() {
    let path = format!("{}/diff/cluster.txt", env!("CARGO_MANIFEST_DIR"));
    let script = std::fs::read_to_string(&path).expect("script");
    let mut args = ARGS.to_vec();
    args.extend([
        "--cluster-enabled",
        "yes",
        "--cluster-config-file",
        "nodes.conf",
    ]);
    let pair = Pair::start(&args);
    // A fresh cluster node reports cluster_size:1 until its first state
    // update, which both servers hold back for 2 s after start (the
    // writable delay). Start the script once both are past it, or a slow
    // machine sees them straddle the boundary.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    for node in [&pair.redis, &pair.datanode] {
        let mut c = node.conn();
        while !c.text(&["CLUSTER", "INFO"]).contains("cluster_size:0") {
            assert!(
                std::time::Instant::now() < deadline,
                "{:?} kept cluster_size at 1",
                node.kind
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }
    let errors = pair.run("cluster", &script);
    assert!(
        errors.is_empty(),
        "{} mismatches in cluster:\n{}",
        errors.len(),
        errors.join("\n")
    );
}

macro_rules! scripts {
    ($($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                run(stringify!($name));
            }
        )*
    };
}

scripts!(
    connection,
    strings,
    bitmaps,
    hyperloglog,
    geo,
    streams,
    stream_groups,
    scripting,
    functions,
    lua_libs,
    module,
    keys,
    hashes,
    lists,
    sets,
    pubsub,
    zsets,
    transactions,
    server,
    sort,
    acl
);

/// HyperLogLog values are strings clients can read and copy between
/// servers, so every byte must match: random elements added in batches,
/// through sparse growth, promotion to dense (at two limits) and merges.
#[test]
fn hyperloglog_values_match_byte_for_byte() {
    let pair = Pair::start(ARGS);
    let mut r = pair.redis.conn();
    let mut d = pair.datanode.conn();
    let mut both = |args: &[&[u8]]| same_reply(&mut r, &mut d, args);
    let mut next = seeded(0x5eed);
    for (key, limit, batches) in [("h1", "3000", 80), ("h2", "400", 30), ("h3", "3000", 6)] {
        both(&[b"CONFIG", b"SET", b"hll-sparse-max-bytes", limit.as_bytes()]);
        for _ in 0..batches {
            let n = 1 + next() % 60;
            let eles: Vec<String> = (0..n).map(|_| format!("e{}", next() % 20_000)).collect();
            let mut args: Vec<&[u8]> = vec![b"PFADD", key.as_bytes()];
            args.extend(eles.iter().map(|e| e.as_bytes()));
            both(&args);
            both(&[b"GET", key.as_bytes()]);
            both(&[b"PFCOUNT", key.as_bytes()]);
            both(&[b"GET", key.as_bytes()]);
            both(&[b"PFDEBUG", b"ENCODING", key.as_bytes()]);
            both(&[b"OBJECT", b"ENCODING", key.as_bytes()]);
        }
    }
    both(&[b"CONFIG", b"SET", b"hll-sparse-max-bytes", b"3000"]);
    both(&[b"PFCOUNT", b"h1", b"h2", b"h3", b"missing"]);
    both(&[b"PFMERGE", b"m1", b"h3"]);
    both(&[b"GET", b"m1"]);
    both(&[b"PFMERGE", b"m1", b"h1", b"h2"]);
    both(&[b"GET", b"m1"]);
    both(&[b"PFCOUNT", b"m1"]);
    both(&[b"PFDEBUG", b"GETREG", b"h3"]);
    both(&[b"GET", b"h3"]);
    // DUMP payloads cross over both ways (the dense value is compressed).
    let (mut r, mut d) = (pair.redis.conn(), pair.datanode.conn());
    for key in ["h1", "h2", "m1"] {
        let from_redis = payload(&mut r, key);
        let from_dn = payload(&mut d, key);
        let restored = format!("{key}-restored");
        for (c, p) in [(&mut d, &from_redis), (&mut r, &from_dn)] {
            let ok = c
                .cmd(&[b"RESTORE", restored.as_bytes(), b"0", p.as_slice()])
                .expect("restore");
            assert_eq!(ok.raw, b"+OK\r\n", "RESTORE of {key}");
        }
        let a = r.cmd(&[b"GET", restored.as_bytes()]).expect("get").raw;
        let b = d.cmd(&[b"GET", restored.as_bytes()]).expect("get").raw;
        assert_eq!(a, b, "{key} after crossing over");
        let a = r
            .cmd(&[b"PFCOUNT", restored.as_bytes()])
            .expect("pfcount")
            .raw;
        let b = d
            .cmd(&[b"PFCOUNT", restored.as_bytes()])
            .expect("pfcount")
            .raw;
        assert_eq!(a, b, "{key}'s count after crossing over");
    }
}

/// Geo searches answer byte for byte as redis-server's: random points
/// (near the poles and the antimeridian too), then random searches by
/// radius and by box with every option, so each match, its order and every
/// printed digit of distances and coordinates is compared, including
/// points just inside and just outside the shape.
#[test]
fn geo_searches_match_on_random_points() {
    let pair = Pair::start(ARGS);
    let mut r = pair.redis.conn();
    let mut d = pair.datanode.conn();
    let mut both = |args: &[&[u8]]| same_reply(&mut r, &mut d, args);
    // Uniform in [0, 1).
    let mut bits = seeded(0x9e0);
    let mut next = move || (bits() >> 5) as f64 / (1u64 << 43) as f64;
    // (key, centre long, centre lat, spread in degrees)
    let regions = [
        ("sicily", 14.0, 37.5, 2.0),
        ("north", 20.0, 83.0, 4.0),
        ("dateline", 179.5, -10.0, 1.5),
        ("equator", 0.0, 0.0, 0.3),
    ];
    for (key, clong, clat, spread) in regions {
        let mut coords = Vec::new();
        for i in 0..1500 {
            let mut long = clong + (next() * 2.0 - 1.0) * spread;
            if long > 180.0 {
                long -= 360.0;
            }
            let lat = (clat + (next() * 2.0 - 1.0) * spread).clamp(-85.0, 85.0);
            coords.push((format!("{long:.6}"), format!("{lat:.6}"), format!("m{i}")));
        }
        for chunk in coords.chunks(300) {
            let mut args: Vec<&[u8]> = vec![b"GEOADD", key.as_bytes()];
            for (x, y, m) in chunk {
                args.extend([x.as_bytes(), y.as_bytes(), m.as_bytes()]);
            }
            both(&args);
        }
        for q in 0..60 {
            let mut long = clong + (next() * 2.0 - 1.0) * spread;
            if long > 180.0 {
                long -= 360.0;
            }
            let lat = (clat + (next() * 2.0 - 1.0) * spread).clamp(-85.0, 85.0);
            let (long, lat) = (format!("{long:.6}"), format!("{lat:.6}"));
            // From 100 m to a few hundred km.
            let size = format!("{:.3}", 0.1 * 10f64.powf(next() * 3.5));
            let size2 = format!("{:.3}", 0.1 * 10f64.powf(next() * 3.5));
            let order: &[u8] = if q % 3 == 0 { b"DESC" } else { b"ASC" };
            let member = format!("m{}", q * 7);
            let mut args: Vec<&[u8]> = vec![b"GEOSEARCH", key.as_bytes()];
            if q % 4 == 0 {
                args.extend([b"FROMMEMBER".as_slice(), member.as_bytes()]);
            } else {
                args.extend([b"FROMLONLAT".as_slice(), long.as_bytes(), lat.as_bytes()]);
            }
            if q % 2 == 0 {
                args.extend([b"BYRADIUS".as_slice(), size.as_bytes(), b"km"]);
            } else {
                args.extend([
                    b"BYBOX".as_slice(),
                    size.as_bytes(),
                    size2.as_bytes(),
                    b"km",
                ]);
            }
            args.extend([order, b"WITHDIST", b"WITHCOORD", b"WITHHASH"]);
            both(&args);
            if q % 5 == 0 {
                args.truncate(args.len() - 3);
                args.extend([b"COUNT".as_slice(), b"7"]);
                both(&args);
            }
            both(&[
                b"GEORADIUS",
                key.as_bytes(),
                long.as_bytes(),
                lat.as_bytes(),
                size.as_bytes(),
                b"km",
                b"WITHDIST",
                b"ASC",
            ]);
        }
    }
}

/// A fixed-seed generator (a 64-bit LCG's high 48 bits): the same values
/// in every run.
fn seeded(mut seed: u64) -> impl FnMut() -> u64 {
    move || {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        seed >> 16
    }
}

/// Sends `args` to both servers; the replies must be the same bytes.
fn same_reply(r: &mut slotkv_tests::resp::Conn, d: &mut slotkv_tests::resp::Conn, args: &[&[u8]]) {
    let a = r.cmd(args).expect("redis reply").raw;
    let b = d.cmd(args).expect("datanode reply").raw;
    assert_eq!(
        slotkv_tests::resp::show(&a),
        slotkv_tests::resp::show(&b),
        "after {:?}",
        args.iter()
            .map(|x| String::from_utf8_lossy(x))
            .collect::<Vec<_>>()
    );
}

/// The payload of `DUMP key`.
fn payload(c: &mut slotkv_tests::resp::Conn, key: &str) -> Vec<u8> {
    match c.cmd(&["DUMP", key]).expect("dump").tree {
        slotkv_tests::resp::Reply::Scalar(b'$', b) => b,
        other => panic!("DUMP {key}: {other:?}"),
    }
}

/// Streams keep Redis's node layout, so the same writes give the same DUMP
/// payload, byte for byte, and (compressed) payloads restore on the other
/// server: 350
/// entries over several nodes, mixed field sets, deletions, trims.
#[test]
fn stream_payloads_match_and_cross_over() {
    let pair = Pair::start(ARGS);
    let mut r = pair.redis.conn();
    let mut d = pair.datanode.conn();
    let mut both = |args: &[&[u8]]| same_reply(&mut r, &mut d, args);
    for i in 1..=350u64 {
        let id = format!("{}-{}", 1000 + i / 3, i % 3);
        let v = format!("value-{i}");
        let n = i.to_string();
        if i % 7 == 0 {
            both(&[b"XADD", b"s", id.as_bytes(), b"other", v.as_bytes()]);
        } else {
            both(&[
                b"XADD",
                b"s",
                id.as_bytes(),
                b"name",
                v.as_bytes(),
                b"n",
                n.as_bytes(),
            ]);
        }
        if i % 11 == 0 {
            let del = format!("{}-{}", 1000 + (i - 5) / 3, (i - 5) % 3);
            both(&[b"XDEL", b"s", del.as_bytes()]);
        }
    }
    both(&[b"XTRIM", b"s", b"MAXLEN", b"~", b"250"]);
    both(&[b"XTRIM", b"s", b"MINID", b"1010"]);
    both(&[b"XLEN", b"s"]);
    // Uncompressed, the payloads are the same bytes (the two LZF
    // compressors may choose different matches).
    both(&[b"CONFIG", b"SET", b"rdbcompression", b"no"]);
    both(&[b"DUMP", b"s"]);
    both(&[b"CONFIG", b"SET", b"rdbcompression", b"yes"]);
    both(&[b"XRANGE", b"s", b"-", b"+"]);
    let (mut r, mut d) = (pair.redis.conn(), pair.datanode.conn());
    let from_redis = payload(&mut r, "s");
    let from_dn = payload(&mut d, "s");
    for (c, p) in [(&mut d, &from_redis), (&mut r, &from_dn)] {
        let ok = c
            .cmd(&[b"RESTORE".as_slice(), b"s2", b"0", p.as_slice()])
            .expect("restore");
        assert_eq!(ok.raw, b"+OK\r\n", "RESTORE of the other server's stream");
    }
    let a = r.cmd(&["XRANGE", "s2", "-", "+"]).expect("xrange").raw;
    let b = d.cmd(&["XRANGE", "s2", "-", "+"]).expect("xrange").raw;
    assert_eq!(a, b, "the stream after crossing over");
    let a = r.cmd(&["XRANGE", "s", "-", "+"]).expect("xrange").raw;
    assert_eq!(a, b, "the restored copy equals the original");
}

/// Every directive redis-server lists, set to values of every kind that
/// is wrong somewhere: each server refuses (with the same reason) or
/// takes each. Directives that would cut the test's own connection, move
/// files or change who may log in are left out.
#[test]
fn config_set_takes_and_refuses_what_redis_does() {
    const LEFT_OUT: &[&str] = &[
        "requirepass",
        "masterauth",
        "masteruser",
        "replicaof",
        "slaveof",
        "dir",
        "bind",
        "port",
        "unixsocket",
        "unixsocketperm",
        "aclfile",
        "logfile",
        "dbfilename",
        "appendfilename",
        "appenddirname",
        "appendonly",
        "cluster-config-file",
        "pidfile",
        "maxmemory",
        "oom-score-adj",
        "oom-score-adj-values",
    ];
    const VALUES: &[&str] = &[
        "bogus",
        "-1",
        "1k",
        "",
        "1.5",
        "0x10",
        "99999999999999999999",
        "yes",
        "no",
        "5%",
        "{title}",
        "a b",
        "100gb",
        " 5",
        "7",
    ];
    let pair = Pair::start(ARGS);
    let mut r = pair.redis.conn();
    let mut d = pair.datanode.conn();
    let listed = r.cmd(&["CONFIG", "GET", "*"]).expect("CONFIG GET");
    let slotkv_tests::Reply::Agg(_, items) = listed.tree else {
        panic!("CONFIG GET *")
    };
    let mut mismatches = Vec::new();
    for name in items.chunks(2).filter_map(|p| match &p[0] {
        slotkv_tests::Reply::Scalar(_, n) => Some(String::from_utf8_lossy(n).into_owned()),
        _ => None,
    }) {
        // TLS settings need certificates; tls-port is checked (refused
        // when not 0: neither server can set TLS up here).
        if LEFT_OUT.contains(&name.as_str()) || (name.starts_with("tls-") && name != "tls-port") {
            continue;
        }
        for v in VALUES {
            let cmd = ["CONFIG", "SET", name.as_str(), v];
            let (a, b) = (r.text(&cmd), d.text(&cmd));
            if a != b {
                mismatches.push(format!("{cmd:?}: redis {a:?}, datanode {b:?}"));
            }
        }
    }
    assert!(
        mismatches.is_empty(),
        "{} differences:\n{}",
        mismatches.len(),
        mismatches.join("\n")
    );
}
