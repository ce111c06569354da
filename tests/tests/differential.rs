//! Differential tests: every script in `tests/diff/` runs against
//! redis-server and datanode started with the same arguments; replies must
//! match (see `slotkv_tests::diff` for the script format).

use slotkv_tests::diff::Pair;

const ARGS: &[&str] = &[
    "--save",
    "",
    "--appendonly",
    "no",
    "--enable-debug-command",
    "yes",
];

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
    keys,
    hashes,
    lists,
    sets,
    pubsub,
    zsets,
    transactions,
    server,
    sort
);
