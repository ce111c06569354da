//! Per-command counters for INFO commandstats, and error counters for INFO
//! errorstats. Each worker thread increments its own counters (relaxed,
//! uncontended); INFO sums them.

use std::cell::OnceCell;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use parking_lot::Mutex;

use crate::command::table::{self, Cmd};

#[derive(Default)]
struct Counters {
    calls: AtomicU64,
    usec: AtomicU64,
    rejected: AtomicU64,
    failed: AtomicU64,
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

pub fn record(cmd: &'static Cmd, usec: u64, outcome: Outcome) {
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
                c.calls.fetch_add(1, Ordering::Relaxed);
                c.usec.fetch_add(usec, Ordering::Relaxed);
                if matches!(o, Outcome::Failed) {
                    c.failed.fetch_add(1, Ordering::Relaxed);
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

fn errors() -> &'static Mutex<BTreeMap<String, u64>> {
    static E: OnceLock<Mutex<BTreeMap<String, u64>>> = OnceLock::new();
    E.get_or_init(Default::default)
}

/// Counts an error reply by its first word (`ERR`, `WRONGTYPE`, …).
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
        }
    }
    errors().lock().clear();
}
