//! Read-through cache load against one server under `maxmemory`: keys are
//! drawn from a Zipfian distribution with a fixed seed; each GET that
//! misses is followed by a SET of the value, as a cache in front of a
//! database would do. Prints one `key=value` line with the hit ratio and
//! throughput of the measured phase. Used by `tests/bench/eviction.sh`.
//!
//!   evict_bench --port P [--keys N] [--value BYTES] [--ops N] [--warmup N]
//!               [--conns N] [--pipeline N] [--zipf S] [--seed N]
//!               [--fraction F]
//!
//! `--fraction` (default 0.25): maxmemory is set to the server's used
//! memory when empty plus this fraction of the data set (keys × value).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

struct Opts {
    port: u16,
    keys: usize,
    value: usize,
    ops: u64,
    warmup: u64,
    conns: usize,
    pipeline: usize,
    zipf: f64,
    seed: u64,
    fraction: f64,
}

fn parse_opts() -> Result<Opts, String> {
    let mut o = Opts {
        port: 0,
        keys: 200_000,
        value: 200,
        ops: 1_000_000,
        warmup: 300_000,
        conns: 4,
        pipeline: 32,
        zipf: 0.99,
        seed: 42,
        fraction: 0.25,
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < args.len() {
        let v = args
            .get(i + 1)
            .ok_or(format!("{} needs a value", args[i]))?;
        let bad = |_| format!("bad value for {}: {v}", args[i]);
        match args[i].as_str() {
            "--port" => o.port = v.parse().map_err(bad)?,
            "--keys" => o.keys = v.parse().map_err(bad)?,
            "--value" => o.value = v.parse().map_err(bad)?,
            "--ops" => o.ops = v.parse().map_err(bad)?,
            "--warmup" => o.warmup = v.parse().map_err(bad)?,
            "--conns" => o.conns = v.parse().map_err(bad)?,
            "--pipeline" => o.pipeline = v.parse().map_err(bad)?,
            "--zipf" => o.zipf = v.parse().map_err(|_| format!("bad --zipf {v}"))?,
            "--seed" => o.seed = v.parse().map_err(bad)?,
            "--fraction" => o.fraction = v.parse().map_err(|_| format!("bad --fraction {v}"))?,
            other => return Err(format!("unknown option {other}")),
        }
        i += 2;
    }
    if o.port == 0 || o.keys == 0 || o.conns == 0 || o.pipeline == 0 {
        return Err("--port is required; counts must be positive".into());
    }
    Ok(o)
}

/// splitmix64: small, seedable, the same sequence everywhere.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Cumulative Zipf probabilities over ranks 1..=n.
fn zipf_cdf(n: usize, s: f64) -> Vec<f64> {
    let mut cdf = Vec::with_capacity(n);
    let mut sum = 0.0;
    for r in 1..=n {
        sum += 1.0 / (r as f64).powf(s);
        cdf.push(sum);
    }
    for c in &mut cdf {
        *c /= sum;
    }
    cdf
}

/// The key of a rank: scrambled so hot keys are not neighbours.
fn key_of(rank: usize) -> String {
    let mut r = Rng(rank as u64 ^ 0x5bd1_e995);
    format!("key:{:016x}", r.next())
}

struct Client {
    s: TcpStream,
    buf: Vec<u8>,
    pos: usize,
}

impl Client {
    fn connect(port: u16) -> std::io::Result<Client> {
        let s = TcpStream::connect(("127.0.0.1", port))?;
        s.set_nodelay(true)?;
        s.set_read_timeout(Some(Duration::from_secs(30)))?;
        Ok(Client {
            s,
            buf: Vec::new(),
            pos: 0,
        })
    }

    fn fill(&mut self) -> std::io::Result<()> {
        if self.pos > 0 && self.pos == self.buf.len() {
            self.buf.clear();
            self.pos = 0;
        }
        let mut chunk = [0u8; 65536];
        let n = self.s.read(&mut chunk)?;
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "server closed the connection",
            ));
        }
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(())
    }

    fn line(&mut self) -> std::io::Result<Vec<u8>> {
        loop {
            if let Some(i) = self.buf[self.pos..].windows(2).position(|w| w == b"\r\n") {
                let l = self.buf[self.pos..self.pos + i].to_vec();
                self.pos += i + 2;
                return Ok(l);
            }
            self.fill()?;
        }
    }

    /// Reads one reply of a GET, SET or INFO: Some(bulk) or None for a nil.
    fn reply(&mut self) -> std::io::Result<Option<Vec<u8>>> {
        let l = self.line()?;
        match l.first() {
            Some(b'$') => {
                let n: i64 = std::str::from_utf8(&l[1..])
                    .ok()
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(-1);
                if n < 0 {
                    return Ok(None);
                }
                let n = n as usize;
                while self.buf.len() - self.pos < n + 2 {
                    self.fill()?;
                }
                let v = self.buf[self.pos..self.pos + n].to_vec();
                self.pos += n + 2;
                Ok(Some(v))
            }
            Some(b'-') => Err(std::io::Error::other(
                String::from_utf8_lossy(&l).into_owned(),
            )),
            _ => Ok(Some(l)),
        }
    }

    fn send(&mut self, b: &[u8]) -> std::io::Result<()> {
        self.s.write_all(b)
    }

    fn call(&mut self, args: &[&str]) -> std::io::Result<Option<Vec<u8>>> {
        let mut b = Vec::new();
        encode(&mut b, args);
        self.send(&b)?;
        self.reply()
    }
}

fn encode(out: &mut Vec<u8>, args: &[&str]) {
    out.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
}

fn info_field(c: &mut Client, field: &str) -> std::io::Result<u64> {
    let info = c.call(&["INFO", "all"])?.unwrap_or_default();
    let text = String::from_utf8_lossy(&info);
    Ok(text
        .split("\r\n")
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0))
}

#[derive(Default, Clone, Copy)]
struct Counts {
    hits: u64,
    misses: u64,
    sets: u64,
}

/// One connection's share: `ops` GETs in pipelined batches, a SET for
/// every miss. Counts only after the first `warmup` GETs.
fn worker(
    o: &Opts,
    cdf: &[f64],
    id: usize,
    ops: u64,
    warmup: u64,
) -> std::io::Result<(Counts, Duration)> {
    let mut c = Client::connect(o.port)?;
    let mut rng = Rng(o.seed.wrapping_mul(1000).wrapping_add(id as u64));
    let value = "v".repeat(o.value);
    let mut counts = Counts::default();
    let mut done = 0u64;
    let mut measured_from: Option<Instant> = None;
    let mut batch: Vec<String> = Vec::with_capacity(o.pipeline);
    let mut out = Vec::new();
    while done < ops {
        if done >= warmup && measured_from.is_none() {
            measured_from = Some(Instant::now());
        }
        let counting = done >= warmup;
        batch.clear();
        out.clear();
        let n = (o.pipeline as u64).min(ops - done) as usize;
        for _ in 0..n {
            let u = rng.unit();
            let rank = cdf.partition_point(|&p| p < u).min(cdf.len() - 1);
            let k = key_of(rank);
            encode(&mut out, &["GET", &k]);
            batch.push(k);
        }
        c.send(&out)?;
        out.clear();
        let mut missed = 0;
        for k in &batch {
            if c.reply()?.is_some() {
                if counting {
                    counts.hits += 1;
                }
            } else {
                if counting {
                    counts.misses += 1;
                }
                encode(&mut out, &["SET", k, &value]);
                missed += 1;
            }
        }
        if missed > 0 {
            c.send(&out)?;
            for _ in 0..missed {
                c.reply()?;
            }
            if counting {
                counts.sets += missed;
            }
        }
        done += n as u64;
    }
    let elapsed = measured_from.map(|t| t.elapsed()).unwrap_or_default();
    Ok((counts, elapsed))
}

fn run(o: &Opts) -> std::io::Result<()> {
    let cdf = zipf_cdf(o.keys, o.zipf);
    let mut admin = Client::connect(o.port)?;
    admin.call(&["FLUSHALL"])?;
    admin.call(&["CONFIG", "SET", "maxmemory", "0"])?;
    let base = info_field(&mut admin, "used_memory")?;
    let dataset = (o.keys * o.value) as f64;
    let limit = base + (dataset * o.fraction) as u64;
    admin.call(&["CONFIG", "SET", "maxmemory", &limit.to_string()])?;
    let per_conn = o.ops / o.conns as u64;
    let warm = o.warmup / o.conns as u64;
    let results: Vec<std::io::Result<(Counts, Duration)>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..o.conns)
            .map(|id| {
                let cdf = &cdf;
                s.spawn(move || worker(o, cdf, id, per_conn + warm, warm))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(std::io::Error::other("worker panicked")))
            })
            .collect()
    });
    let mut total = Counts::default();
    let mut longest = Duration::ZERO;
    for r in results {
        let (c, d) = r?;
        total.hits += c.hits;
        total.misses += c.misses;
        total.sets += c.sets;
        longest = longest.max(d);
    }
    let used = info_field(&mut admin, "used_memory")?;
    let evicted = info_field(&mut admin, "evicted_keys")?;
    let keys = admin
        .call(&["DBSIZE"])?
        .and_then(|b| String::from_utf8_lossy(&b[1..]).parse::<u64>().ok())
        .unwrap_or(0);
    let gets = total.hits + total.misses;
    let secs = longest.as_secs_f64().max(1e-9);
    println!(
        "hit_ratio={:.4} ops_per_sec={:.0} gets={gets} sets={} secs={secs:.2} maxmemory={limit} used_memory={used} keys={keys} evicted_keys={evicted}",
        total.hits as f64 / gets.max(1) as f64,
        (gets + total.sets) as f64 / secs,
        total.sets,
    );
    Ok(())
}

fn main() {
    let o = match parse_opts() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("evict_bench: {e}");
            std::process::exit(2);
        }
    };
    if let Err(e) = run(&o) {
        eprintln!("evict_bench: {e}");
        std::process::exit(1);
    }
}
