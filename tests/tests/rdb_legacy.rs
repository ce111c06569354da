//! RDB files written by old Redis versions (zipmap, ziplist, intset,
//! linked list, quicklist of ziplists; RDB versions 2 to 7) load into
//! datanode with the same contents as into redis-server 7.0, which is the
//! oracle. The files are in tests/fixtures/rdb-legacy (see its README).

use std::path::{Path, PathBuf};

use slotkv_tests::{Conn, Node, Reply, Server};

fn fixtures() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/rdb-legacy");
    let mut v: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("fixtures dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "rdb"))
        .collect();
    v.sort();
    assert!(v.len() >= 25, "fixtures missing from {}", dir.display());
    v
}

fn bulks(r: &Reply) -> Vec<Vec<u8>> {
    match r {
        Reply::Agg(_, items) => items
            .iter()
            .map(|i| match i {
                Reply::Scalar(_, b) => b.clone(),
                other => panic!("not a bulk: {other:?}"),
            })
            .collect(),
        other => panic!("not an array: {other:?}"),
    }
}

/// Pairs of a flat field/value array, sorted (hash order is not defined).
fn sorted_pairs(flat: Vec<Vec<u8>>) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut p: Vec<_> = flat
        .chunks(2)
        .map(|c| (c[0].clone(), c.get(1).cloned().unwrap_or_default()))
        .collect();
    p.sort();
    p
}

fn lossy(items: &[Vec<u8>]) -> String {
    items
        .iter()
        .map(|i| String::from_utf8_lossy(i).into_owned())
        .collect::<Vec<_>>()
        .join(",")
}

/// Every key of every database with its type, value and whether it has a
/// TTL, in a form two servers can be compared by.
fn contents(c: &mut Conn) -> Vec<String> {
    let mut out = Vec::new();
    for db in 0..16 {
        assert_eq!(c.text(&["SELECT", &db.to_string()]), "+OK\r\n");
        let mut keys = bulks(&c.cmd(&["KEYS", "*"]).expect("KEYS").tree);
        keys.sort();
        for k in keys {
            let k = k.as_slice();
            let t = c.text(&[b"TYPE".as_slice(), k]);
            let value = match t.trim_end() {
                "+string" => c.text(&[b"GET".as_slice(), k]),
                "+list" => c.text(&[b"LRANGE".as_slice(), k, b"0", b"-1"]),
                "+set" => {
                    let mut m = bulks(&c.cmd(&[b"SMEMBERS".as_slice(), k]).expect("SMEMBERS").tree);
                    m.sort();
                    lossy(&m)
                }
                "+zset" => c.text(&[b"ZRANGE".as_slice(), k, b"0", b"-1", b"WITHSCORES"]),
                "+hash" => {
                    let h = bulks(&c.cmd(&[b"HGETALL".as_slice(), k]).expect("HGETALL").tree);
                    let flat: Vec<Vec<u8>> = sorted_pairs(h)
                        .into_iter()
                        .flat_map(|(f, v)| [f, v])
                        .collect();
                    lossy(&flat)
                }
                other => panic!("unexpected type {other}"),
            };
            let ttl = c.text(&[b"PTTL".as_slice(), k]);
            let ttl = if ttl.starts_with(":-1") {
                "no ttl"
            } else {
                "ttl"
            };
            out.push(format!(
                "db{db} {} {t} {ttl} {value}",
                String::from_utf8_lossy(k)
            ));
        }
    }
    out
}

const ARGS: [&str; 4] = ["--save", "", "--appendonly", "no"];

/// Starts `kind` on a copy of `rdb`; None when the server refuses it.
fn load(kind: Server, rdb: &Path) -> Option<Vec<String>> {
    let mut n = Node::start(kind, &ARGS);
    n.signal_and_wait("-TERM");
    std::fs::copy(rdb, n.path().join("dump.rdb")).expect("copy");
    if n.refuses_to_start_here(&ARGS) {
        return None;
    }
    n.restart();
    let got = contents(&mut n.conn());
    Some(got)
}

#[test]
fn old_rdb_files_load_as_in_redis() {
    let mut loaded = 0;
    let mut keys = 0;
    for f in fixtures() {
        let name = f
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        let want = load(Server::Redis, &f);
        let got = load(Server::Datanode, &f);
        assert_eq!(got, want, "{name}: datanode differs from redis-server");
        if let Some(w) = want {
            loaded += 1;
            keys += w.len();
        }
    }
    // 26 of the 27 files load (RDB 11 is refused by both), with about 75 keys.
    assert!(loaded >= 25, "only {loaded} files loaded");
    assert!(keys >= 60, "only {keys} keys compared");
}
