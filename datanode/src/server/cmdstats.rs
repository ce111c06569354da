//! Per-command counters for INFO commandstats and latencystats, and error
//! counters for INFO errorstats. Each worker thread increments its own
//! counters (relaxed, uncontended); INFO sums them.

use std::cell::OnceCell;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use parking_lot::Mutex;

use crate::command::table::{self, Cmd};

/// Latency buckets: calls that took at most 2^k microseconds (the last
/// bucket takes everything longer), for LATENCY HISTOGRAM.
const HIST: usize = 32;

#[derive(Default)]
struct Counters {
    calls: AtomicU64,
    usec: AtomicU64,
    rejected: AtomicU64,
    failed: AtomicU64,
    hist: [AtomicU64; HIST],
    /// The HDR histogram of INFO latencystats (`hdr`), made on the first
    /// sample: most commands are never called.
    latency: OnceLock<Box<[AtomicU64]>>,
}

impl Counters {
    fn sample(&self, usec: u64) {
        let counts = self
            .latency
            .get_or_init(|| (0..super::hdr::LEN).map(|_| AtomicU64::new(0)).collect());
        // Durations are whole microseconds, recorded in nanoseconds, as
        // Redis does: percentiles then read as its bucket bounds.
        counts[super::hdr::index_of(usec.saturating_mul(1000))].fetch_add(1, Ordering::Relaxed);
    }
}

/// `latency-tracking`: whether calls feed INFO latencystats.
pub static LATENCY_TRACKING: AtomicBool = AtomicBool::new(true);

/// The bucket of a duration: ceil(log2(usec)), at least 0.
fn bucket(usec: u64) -> usize {
    let b = if usec <= 1 {
        0
    } else {
        64 - (usec - 1).leading_zeros() as usize
    };
    b.min(HIST - 1)
}

type Block = Arc<Vec<Counters>>;

fn registry() -> &'static Mutex<Vec<Block>> {
    static R: OnceLock<Mutex<Vec<Block>>> = OnceLock::new();
    R.get_or_init(Default::default)
}

/// Every command, then every subcommand; and for each container, where
/// its subcommands start in that list.
struct Ids {
    all: Vec<&'static Cmd>,
    sub_base: Vec<(&'static [Cmd], usize)>,
}

fn ids() -> &'static Ids {
    static IDS: OnceLock<Ids> = OnceLock::new();
    IDS.get_or_init(|| {
        let mut all: Vec<&'static Cmd> = table::all().iter().collect();
        let mut sub_base = Vec::new();
        for c in table::all().iter().filter(|c| !c.subs.is_empty()) {
            sub_base.push((c.subs, all.len()));
            all.extend(c.subs.iter());
        }
        Ids { all, sub_base }
    })
}

/// A command's counter index, from its address in the static tables (no
/// hashing on the command path).
fn index_of(cmd: &'static Cmd) -> Option<usize> {
    let offset = |slice: &'static [Cmd]| {
        let start = slice.as_ptr() as usize;
        let p = cmd as *const Cmd as usize;
        let size = std::mem::size_of::<Cmd>();
        (p >= start && p < start + std::mem::size_of_val(slice)).then(|| (p - start) / size)
    };
    if let Some(i) = offset(table::all()) {
        return Some(i);
    }
    ids()
        .sub_base
        .iter()
        .find_map(|(subs, base)| offset(subs).map(|i| base + i))
}

thread_local! {
    static LOCAL: OnceCell<Block> = const { OnceCell::new() };
}

fn with_local(f: impl FnOnce(&[Counters])) {
    LOCAL.with(|l| {
        let b = l.get_or_init(|| {
            let b: Block = Arc::new((0..ids().all.len()).map(|_| Counters::default()).collect());
            registry().lock().push(b.clone());
            b
        });
        f(b);
    });
}

pub enum Outcome {
    Ok,
    /// The command ran and replied with an error.
    Failed,
    /// The command was refused before running (arity, auth, …).
    Rejected,
}

/// Counts a call of `cmd` that took `usec` (or a refusal).
pub fn record(cmd: &'static Cmd, usec: u64, outcome: Outcome) {
    count(cmd, Some(usec), outcome)
}

/// Counts a call whose time is not a latency sample: a blocking command
/// that timed out (Redis samples a blocked call only when it is served
/// or unblocked by CLIENT UNBLOCK).
pub fn record_unsampled(cmd: &'static Cmd, outcome: Outcome) {
    count(cmd, None, outcome)
}

fn count(cmd: &'static Cmd, usec: Option<u64>, outcome: Outcome) {
    let Some(i) = index_of(cmd) else {
        return;
    };
    with_local(|c| {
        let c = &c[i];
        match outcome {
            Outcome::Rejected => {
                c.rejected.fetch_add(1, Ordering::Relaxed);
            }
            o => {
                let us = usec.unwrap_or(0);
                c.calls.fetch_add(1, Ordering::Relaxed);
                c.usec.fetch_add(us, Ordering::Relaxed);
                c.hist[bucket(us)].fetch_add(1, Ordering::Relaxed);
                if matches!(o, Outcome::Failed) {
                    c.failed.fetch_add(1, Ordering::Relaxed);
                }
                if let Some(us) = usec {
                    if LATENCY_TRACKING.load(Ordering::Relaxed) {
                        c.sample(us);
                    }
                }
            }
        }
    });
}

/// `cmdstat_<name>:calls=…` lines for commands used at least once.
pub fn commandstats() -> String {
    let all = &ids().all;
    let mut sums = vec![[0u64; 4]; all.len()];
    for b in registry().lock().iter() {
        for (i, c) in b.iter().enumerate() {
            sums[i][0] += c.calls.load(Ordering::Relaxed);
            sums[i][1] += c.usec.load(Ordering::Relaxed);
            sums[i][2] += c.rejected.load(Ordering::Relaxed);
            sums[i][3] += c.failed.load(Ordering::Relaxed);
        }
    }
    let mut out = String::new();
    for (i, c) in all.iter().enumerate() {
        let [calls, usec, rejected, failed] = sums[i];
        if calls == 0 && rejected == 0 && failed == 0 {
            continue;
        }
        let per = if calls > 0 {
            usec as f64 / calls as f64
        } else {
            0.0
        };
        out.push_str(&format!(
            "cmdstat_{}:calls={calls},usec={usec},usec_per_call={per:.2},rejected_calls={rejected},failed_calls={failed}\r\n",
            c.name
        ));
    }
    out
}

/// `latency_percentiles_usec_<name>:p50=…` lines for the commands with
/// latency samples since the last reset: each percentile of `percentiles`
/// read off the summed histograms, as Redis prints them.
pub fn latencystats(percentiles: &[f64]) -> String {
    let all = &ids().all;
    let mut sums: Vec<Option<Vec<u64>>> = vec![None; all.len()];
    for b in registry().lock().iter() {
        for (i, c) in b.iter().enumerate() {
            let Some(counts) = c.latency.get() else {
                continue;
            };
            let sum = sums[i].get_or_insert_with(|| vec![0; super::hdr::LEN]);
            for (s, n) in sum.iter_mut().zip(counts.iter()) {
                *s += n.load(Ordering::Relaxed);
            }
        }
    }
    let mut out = String::new();
    for (i, c) in all.iter().enumerate() {
        let Some(counts) = sums[i].as_ref().filter(|s| s.iter().any(|&n| n > 0)) else {
            continue;
        };
        out.push_str("latency_percentiles_usec_");
        out.push_str(c.name);
        out.push(':');
        for (k, p) in percentiles.iter().enumerate() {
            if k > 0 {
                out.push(',');
            }
            let v = super::hdr::value_at_percentile(counts, *p) as f64 / 1000.0;
            out.push_str(&format!("p{}={v:.3}", percentile_label(*p)));
        }
        out.push_str("\r\n");
    }
    out
}

/// A percentile as Redis writes it: `%f`, then trailing zeros and a
/// trailing point dropped (50 → "50", 99.9 → "99.9").
pub fn percentile_label(p: f64) -> String {
    let s = format!("{p:.6}");
    let s = s.trim_end_matches('0');
    s.trim_end_matches('.').to_string()
}

/// One command's latency distribution: calls, and for each 2^k µs bound
/// reached, the number of calls that took at most that long (cumulative).
pub struct Histogram {
    pub name: &'static str,
    pub calls: u64,
    pub cdf: Vec<(u64, u64)>,
}

/// LATENCY HISTOGRAM: the named commands (a container names all its
/// subcommands; unknown names are skipped), or every command, that have
/// been called since the last reset.
pub fn histograms(names: &[&[u8]]) -> Vec<Histogram> {
    let all = &ids().all;
    let mut sums = vec![[0u64; HIST]; all.len()];
    let mut calls = vec![0u64; all.len()];
    for b in registry().lock().iter() {
        for (i, c) in b.iter().enumerate() {
            calls[i] += c.calls.load(Ordering::Relaxed);
            for (k, h) in c.hist.iter().enumerate() {
                sums[i][k] += h.load(Ordering::Relaxed);
            }
        }
    }
    let mut chosen: Vec<usize> = Vec::new();
    let mut pick = |i: usize| {
        if !chosen.contains(&i) {
            chosen.push(i);
        }
    };
    if names.is_empty() {
        (0..all.len()).for_each(&mut pick);
    } else {
        for n in names {
            for (i, c) in all.iter().enumerate() {
                let parent = c.name.split('|').next().unwrap_or("");
                let whole = c.name.as_bytes().eq_ignore_ascii_case(n);
                let of_container =
                    c.name.contains('|') && parent.as_bytes().eq_ignore_ascii_case(n);
                if whole || of_container {
                    pick(i);
                }
            }
        }
    }
    chosen
        .into_iter()
        .filter(|&i| calls[i] > 0 && all[i].subs.is_empty())
        .map(|i| {
            let mut cum = 0;
            let mut cdf = Vec::new();
            for (k, n) in sums[i].iter().enumerate() {
                if *n > 0 {
                    cum += n;
                    cdf.push((1u64 << k, cum));
                }
            }
            Histogram {
                name: all[i].name,
                calls: calls[i],
                cdf,
            }
        })
        .collect()
}

fn errors() -> &'static Mutex<BTreeMap<String, u64>> {
    static E: OnceLock<Mutex<BTreeMap<String, u64>>> = OnceLock::new();
    E.get_or_init(Default::default)
}

/// Counts an error reply by its first word (`ERR`, `WRONGTYPE`, …).
/// An error reply sent (or, inside a script, produced): INFO's
/// `total_error_replies` and its code's errorstats entry.
pub fn count_error_reply(srv: &crate::server::shared::Shared, reply: &[u8]) {
    crate::server::stats::Stats::add(&srv.stats.total_error_replies, 1);
    record_error(reply);
}

pub fn record_error(reply: &[u8]) {
    let body = reply.strip_prefix(b"-").unwrap_or(reply);
    let end = body
        .iter()
        .position(|&c| c == b' ' || c == b'\r')
        .unwrap_or(body.len());
    let code = String::from_utf8_lossy(&body[..end]).into_owned();
    // Redis caps the number of distinct error codes it tracks at 128.
    let mut e = errors().lock();
    if e.len() < 128 || e.contains_key(&code) {
        *e.entry(code).or_default() += 1;
    }
}

pub fn errorstats() -> String {
    errors()
        .lock()
        .iter()
        .map(|(k, v)| format!("errorstat_{k}:count={v}\r\n"))
        .collect()
}

pub fn reset() {
    for b in registry().lock().iter() {
        for c in b.iter() {
            c.calls.store(0, Ordering::Relaxed);
            c.usec.store(0, Ordering::Relaxed);
            c.rejected.store(0, Ordering::Relaxed);
            c.failed.store(0, Ordering::Relaxed);
            for h in &c.hist {
                h.store(0, Ordering::Relaxed);
            }
            for n in c.latency.get().into_iter().flat_map(|l| l.iter()) {
                n.store(0, Ordering::Relaxed);
            }
        }
    }
    errors().lock().clear();
}
