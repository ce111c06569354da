//! The cluster tutorial's consistency test: INCRs random counters through
//! a cluster client (the `redis` crate's, which caches the slot map and
//! follows MOVED/ASK), remembers what each counter must be, reads counters
//! back before writing them, and prints a line a second:
//!
//!   `N R (E err) | N W (E err) | L lost | P not ack`
//!
//! `lost`: acknowledged increments that are gone (a counter read lower
//! than the last value INCR returned). `not ack`: increments that landed
//! although their INCR failed (a counter read higher).
//!
//!   consistency-check [--host H] [--port P] [--keys N] [--seconds S]
//!                     [--prefix P] [--fail-on-lost]

use std::collections::HashMap;
use std::process::ExitCode;
use std::time::{Duration, Instant};

struct Opts {
    host: String,
    port: u16,
    keys: u64,
    seconds: Option<u64>,
    prefix: String,
    fail_on_lost: bool,
}

fn parse() -> Result<Opts, String> {
    let mut o = Opts {
        host: "127.0.0.1".into(),
        port: 7000,
        keys: 1000,
        seconds: None,
        prefix: "key".into(),
        fail_on_lost: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut val = |name: &str| it.next().ok_or(format!("{name} needs a value"));
        match a.as_str() {
            "--host" => o.host = val("--host")?,
            "--port" => o.port = val("--port")?.parse().map_err(|_| "bad --port")?,
            "--keys" => o.keys = val("--keys")?.parse().map_err(|_| "bad --keys")?,
            "--seconds" => {
                o.seconds = Some(val("--seconds")?.parse().map_err(|_| "bad --seconds")?)
            }
            "--prefix" => o.prefix = val("--prefix")?,
            "--fail-on-lost" => o.fail_on_lost = true,
            "-h" | "--help" => {
                return Err("usage: consistency-check [--host H] [--port P] [--keys N] [--seconds S] [--prefix P] [--fail-on-lost]".into())
            }
            other => return Err(format!("unknown option {other}")),
        }
    }
    if o.keys == 0 {
        return Err("--keys must be at least 1".into());
    }
    Ok(o)
}

#[derive(Default)]
struct Counts {
    reads: u64,
    failed_reads: u64,
    writes: u64,
    failed_writes: u64,
    lost: u64,
    not_acked: u64,
}

impl Counts {
    fn line(&self) -> String {
        format!(
            "{} R ({} err) | {} W ({} err) | {} lost | {} not ack",
            self.reads,
            self.failed_reads,
            self.writes,
            self.failed_writes,
            self.lost,
            self.not_acked
        )
    }
}

fn main() -> ExitCode {
    let o = match parse() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let url = format!("redis://{}:{}/", o.host, o.port);
    let client = match redis::cluster::ClusterClient::builder(vec![url])
        .connection_timeout(Duration::from_secs(1))
        .response_timeout(Duration::from_secs(1))
        // Few retries: an error should be counted and reported, not
        // hidden behind seconds of backoff while a master is down.
        .retries(2)
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            eprintln!("cluster client: {e}");
            return ExitCode::from(1);
        }
    };
    let mut conn = None;
    let mut expected: HashMap<u64, i64> = HashMap::new();
    let mut c = Counts::default();
    let start = Instant::now();
    let mut last_report = Instant::now();
    // xorshift: deterministic, no dependency.
    let mut rng: u64 = 0x9E37_79B9_7F4A_7C15;
    loop {
        if o.seconds
            .is_some_and(|s| start.elapsed() >= Duration::from_secs(s))
        {
            break;
        }
        if conn.is_none() {
            match client.get_connection() {
                Ok(k) => conn = Some(k),
                Err(e) => {
                    eprintln!("Connecting: {e}");
                    c.failed_reads += 1;
                    c.failed_writes += 1;
                    std::thread::sleep(Duration::from_millis(100));
                    report(&mut last_report, &c);
                    continue;
                }
            }
        }
        let Some(k) = conn.as_mut() else {
            continue;
        };
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let n = rng % o.keys;
        let key = format!("{}:{n}", o.prefix);
        match redis::cmd("GET").arg(&key).query::<Option<i64>>(k) {
            Ok(v) => {
                c.reads += 1;
                if let Some(want) = expected.get(&n) {
                    let got = v.unwrap_or(0);
                    if got < *want {
                        c.lost += (*want - got) as u64;
                    } else if got > *want {
                        c.not_acked += (got - *want) as u64;
                    }
                    // Count each difference once: what was read is now
                    // what we expect.
                    expected.insert(n, got);
                }
            }
            Err(e) => {
                eprintln!("Reading: {e}");
                c.failed_reads += 1;
                // The client library keeps its slot map after a node
                // dies; a new connection asks the cluster again (as the
                // tutorial's Ruby client does after an error).
                conn = None;
                continue;
            }
        }
        match redis::cmd("INCR").arg(&key).query::<i64>(k) {
            Ok(v) => {
                c.writes += 1;
                expected.insert(n, v);
            }
            Err(e) => {
                eprintln!("Writing: {e}");
                c.failed_writes += 1;
                conn = None;
            }
        }
        report(&mut last_report, &c);
    }
    println!("{}", c.line());
    if o.fail_on_lost && c.lost > 0 {
        return ExitCode::from(1);
    }
    ExitCode::SUCCESS
}

fn report(last: &mut Instant, c: &Counts) {
    if last.elapsed() >= Duration::from_secs(1) {
        println!("{}", c.line());
        *last = Instant::now();
    }
}
