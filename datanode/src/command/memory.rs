//! MEMORY USAGE / STATS / DOCTOR / MALLOC-STATS / PURGE.
//!
//! Sizes come from what our own structures hold (`Value::heap_size`) and
//! from jemalloc's counters, so they describe this server, not a copy of
//! what redis-server would report for the same data.

use super::{eq_ic, Args, Ctx, SYNTAX};

/// What a key costs beyond its value: the table slot, the boxed entry
/// header and the access/expiry metadata.
const ENTRY_OVERHEAD: usize = 48;

pub fn usage(ctx: &mut Ctx, a: &Args) {
    // SAMPLES is accepted for compatibility; our sizes are exact.
    let mut j = 3;
    while j < a.len() {
        if eq_ic(a.get(j), "SAMPLES") && j + 1 < a.len() {
            match crate::resp::parse_i64(a.get(j + 1)) {
                None => return ctx.r.error(super::NOT_INT),
                Some(n) if n < 0 => return ctx.r.error(SYNTAX),
                Some(_) => {}
            }
            j += 2;
        } else {
            return ctx.r.error(SYNTAX);
        }
    }
    let key = a.get(2);
    let mut s = ctx.locks.key(key);
    let size = s.peek(key).map(|(v, _)| {
        let key_heap = if key.len() > crate::keyspace::key::INLINE {
            key.len()
        } else {
            0
        };
        ENTRY_OVERHEAD + key_heap + v.heap_size()
    });
    drop(s);
    match size {
        Some(n) => ctx.r.int(n as i64),
        None => ctx.r.null(),
    }
}

/// Per-process figures MEMORY STATS and DOCTOR share.
struct Figures {
    allocated: u64,
    active: u64,
    resident: u64,
    rss: u64,
    account: crate::server::memfigures::Overhead,
}

fn figures(ctx: &Ctx) -> Figures {
    let (allocated, active, resident) = super::server::jemalloc_stats();
    Figures {
        allocated,
        active,
        resident,
        rss: super::server::rss_bytes(),
        account: crate::server::memfigures::gather(ctx.srv),
    }
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 {
        0.0
    } else {
        a as f64 / b as f64
    }
}

pub fn stats(ctx: &mut Ctx, _a: &Args) {
    let f = figures(ctx);
    let m = &f.account;
    let r = &mut ctx.r;
    r.map(27 + m.dbs.len());
    let int = |r: &mut crate::resp::Reply, k: &str, v: u64| {
        r.bulk(k.as_bytes());
        r.int(v as i64);
    };
    let dbl = |r: &mut crate::resp::Reply, k: &str, v: f64| {
        r.bulk(k.as_bytes());
        r.double(v);
    };
    int(r, "peak.allocated", m.peak);
    int(r, "total.allocated", m.used);
    int(r, "startup.allocated", m.startup);
    int(r, "replication.backlog", m.backlog);
    int(r, "clients.slaves", m.clients_slaves);
    int(r, "clients.normal", m.clients_normal);
    int(r, "cluster.links", m.cluster_links);
    int(r, "aof.buffer", m.aof_buffer);
    int(r, "lua.caches", m.lua_caches);
    int(r, "functions.caches", m.functions_caches);
    for d in &m.dbs {
        r.bulk(format!("db.{}", d.index).as_bytes());
        r.map(3);
        int(r, "overhead.hashtable.main", d.main);
        int(r, "overhead.hashtable.expires", d.expires);
        // Keys are found by slot through their slot's own table: there is
        // no slot-to-keys index apart (Redis keeps one in cluster mode).
        int(r, "overhead.hashtable.slot-to-keys", 0);
    }
    int(r, "overhead.total", m.total);
    int(r, "keys.count", m.keys());
    int(r, "keys.bytes-per-key", m.bytes_per_key());
    int(r, "dataset.bytes", m.dataset());
    dbl(r, "dataset.percentage", m.dataset_perc());
    dbl(r, "peak.percentage", m.peak_perc());
    int(r, "allocator.allocated", f.allocated);
    int(r, "allocator.active", f.active);
    int(r, "allocator.resident", f.resident);
    let diff = |r: &mut crate::resp::Reply, k: &str, a: u64, b: u64| {
        r.bulk(k.as_bytes());
        r.int(a as i64 - b as i64);
    };
    dbl(
        r,
        "allocator-fragmentation.ratio",
        ratio(f.active, f.allocated),
    );
    diff(r, "allocator-fragmentation.bytes", f.active, f.allocated);
    dbl(r, "allocator-rss.ratio", ratio(f.resident, f.active));
    diff(r, "allocator-rss.bytes", f.resident, f.active);
    dbl(r, "rss-overhead.ratio", ratio(f.rss, f.resident));
    diff(r, "rss-overhead.bytes", f.rss, f.resident);
    // The process's RSS against used memory (INFO mem_fragmentation_ratio).
    dbl(r, "fragmentation", ratio(f.rss, m.used));
    diff(r, "fragmentation.bytes", f.rss, m.used);
}

pub fn doctor(ctx: &mut Ctx, _a: &Args) {
    let f = figures(ctx);
    let (used, peak) = (f.account.used, f.account.peak);
    let mut notes: Vec<String> = Vec::new();
    if used < 5 * 1024 * 1024 {
        notes.push(
            "Too little data is stored for a useful diagnosis (under 5 MB); come back when the server holds some.".into(),
        );
    } else {
        if peak > 0 && ratio(peak, used) > 1.5 {
            notes.push(format!(
                "Peak memory: the peak ({} bytes) is over 150% of what is allocated now ({} bytes): memory was freed after a burst, and the allocator may not have returned it.",
                peak, used
            ));
        }
        if ratio(f.active, f.allocated) > 1.1 {
            notes.push(format!(
                "Allocator fragmentation: {:.2} (active/allocated). MEMORY PURGE returns unused pages to the system.",
                ratio(f.active, f.allocated)
            ));
        }
        if ratio(f.rss, used) > 1.4 {
            notes.push(format!(
                "High RSS overhead: the process holds {:.2} times the memory it has allocated.",
                ratio(f.rss, used)
            ));
        }
        if notes.is_empty() {
            notes.push("No memory problems found.".into());
        }
    }
    ctx.r.verbatim(notes.join("\n").as_bytes());
}

pub fn malloc_stats(ctx: &mut Ctx, _a: &Args) {
    ctx.r.verbatim(super::server::jemalloc_report().as_bytes());
}

pub fn purge(ctx: &mut Ctx, _a: &Args) {
    super::server::jemalloc_purge();
    ctx.r.ok();
}

pub fn help(ctx: &mut Ctx, _a: &Args) {
    super::connection::help_reply(
        ctx,
        "MEMORY",
        &[
            "DOCTOR",
            "    Report memory problems found in this server.",
            "MALLOC-STATS",
            "    Show the allocator's internal statistics.",
            "PURGE",
            "    Ask the allocator to return unused memory to the system.",
            "STATS",
            "    Show memory use by category.",
            "USAGE <key> [SAMPLES <count>]",
            "    Estimate the bytes a key and its value use.",
        ],
    );
}
