//! Write-latency probe for benchmarks: SETs on one connection, one at a
//! time, timing each round trip, until a stop file appears (or a time
//! limit passes). Prints `count p50_us p99_us p999_us max_us`, so a stall
//! of the server (a fork, a snapshot) shows in the tail.
//!
//!   latency_probe <port> <stop-file> [<max-seconds>] [<hash-tag>]
//!
//! With a hash tag the keys are `probe:{tag}:N`, all in the tag's slot (in
//! a cluster, pick one the node serves).

use std::time::{Duration, Instant};

use slotkv_tests::Conn;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        eprintln!("usage: latency_probe <port> <stop-file> [<max-seconds>]");
        std::process::exit(2);
    }
    let port: u16 = args[1].parse().unwrap_or_else(|_| {
        eprintln!("bad port {}", args[1]);
        std::process::exit(2)
    });
    let stop = std::path::PathBuf::from(&args[2]);
    let limit = Duration::from_secs(args.get(3).and_then(|s| s.parse().ok()).unwrap_or(300));
    let mut c = Conn::connect(port).unwrap_or_else(|e| {
        eprintln!("connect: {e}");
        std::process::exit(1)
    });
    let start = Instant::now();
    let mut lat: Vec<u32> = Vec::with_capacity(1 << 20);
    let tag = args.get(4).map(|t| format!("{{{t}}}:")).unwrap_or_default();
    let mut i: u64 = 0;
    while start.elapsed() < limit {
        // Looking for the file costs a syscall: every 256 requests.
        if i.is_multiple_of(256) && stop.exists() {
            break;
        }
        let key = format!("probe:{tag}{}", i % 10_000);
        let t = Instant::now();
        if let Err(e) = c.cmd(&["SET", key.as_str(), "v"]) {
            eprintln!("SET failed: {e}");
            std::process::exit(1);
        }
        lat.push(t.elapsed().as_micros().min(u32::MAX as u128) as u32);
        i += 1;
    }
    if lat.is_empty() {
        println!("0 0 0 0 0");
        return;
    }
    lat.sort_unstable();
    let pct = |p: f64| lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)];
    println!(
        "{} {} {} {} {}",
        lat.len(),
        pct(0.50),
        pct(0.99),
        pct(0.999),
        lat[lat.len() - 1]
    );
}
