//! A real cluster client (the `redis` crate's ClusterClient) against a
//! 3-master datanode cluster: it discovers the slots with CLUSTER SLOTS,
//! follows MOVED, and must read back every value it wrote.

use std::time::Duration;

use redis::Commands;
use slotkv_tests::cluster::Cluster;
use slotkv_tests::Server;

#[test]
fn redis_crate_cluster_client_sees_every_write() {
    let c = Cluster::start(&[Server::Datanode; 3], 5000, &[]);
    c.create(0);
    c.wait_ok(Duration::from_secs(30));
    let urls: Vec<String> = c.addrs().iter().map(|a| format!("redis://{a}/")).collect();
    let client = redis::cluster::ClusterClient::new(urls).expect("client");
    let mut con = client.get_connection().expect("cluster connection");

    let n = 600;
    for i in 0..n {
        let _: () = con.set(format!("k:{i}"), i).expect("SET");
        let _: () = con.hset(format!("h:{}", i % 50), i, i * 2).expect("HSET");
        let _: () = con.rpush(format!("l:{}", i % 20), i).expect("RPUSH");
        let _: i64 = con.incr(format!("c:{}", i % 10), 1).expect("INCR");
    }
    // Multi-key commands work when the keys share a hash tag.
    let _: () = con
        .mset(&[("{t}a", "1"), ("{t}b", "2"), ("{t}c", "3")])
        .expect("MSET");
    let vals: Vec<String> = con.mget(&["{t}a", "{t}b", "{t}c"]).expect("MGET");
    assert_eq!(vals, ["1", "2", "3"]);

    for i in 0..n {
        let v: i64 = con.get(format!("k:{i}")).expect("GET");
        assert_eq!(v, i);
        let h: i64 = con.hget(format!("h:{}", i % 50), i).expect("HGET");
        assert_eq!(h, i * 2);
    }
    for j in 0..20 {
        let len: usize = con.llen(format!("l:{j}")).expect("LLEN");
        assert_eq!(len, n as usize / 20);
    }
    for j in 0..10 {
        let v: i64 = con.get(format!("c:{j}")).expect("GET counter");
        assert_eq!(v, n / 10);
    }
    // The keys really are spread over the three masters.
    let mut total = 0;
    for i in 0..3 {
        let keys = c
            .info_field(i, &["INFO", "keyspace"], "db0")
            .expect("keys on every master");
        let k: usize = keys
            .split(',')
            .next()
            .and_then(|p| p.strip_prefix("keys="))
            .and_then(|v| v.parse().ok())
            .unwrap();
        assert!(k > 100, "node {i} holds {k} keys");
        total += k;
    }
    assert_eq!(total, n as usize + 50 + 20 + 10 + 3);
}
