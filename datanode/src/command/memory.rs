//! MEMORY USAGE / STATS / DOCTOR / MALLOC-STATS / PURGE.
//!
//! Sizes come from what our own structures hold (`Value::heap_size`) and
//! from jemalloc's counters, so they describe this server, not a copy of
//! what redis-server would report for the same data.

use std::sync::atomic::Ordering;

use super::{eq_ic, Args, Ctx, SYNTAX};
use crate::keyspace::SLOTS;

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
    startup: u64,
    peak: u64,
    keys: u64,
}

fn figures(ctx: &Ctx) -> Figures {
    let (allocated, active, resident) = super::server::jemalloc_stats();
    let keys = ctx.srv.ks.existing().map(|d| d.size() as u64).sum::<u64>();
    let peak = ctx.srv.stats.note_memory_peak(allocated);
    Figures {
        allocated,
        active,
        resident,
        rss: super::server::rss_bytes(),
        startup: ctx.srv.startup_allocated.load(Ordering::Relaxed),
        peak,
        keys,
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
    let dbs: Vec<(usize, u64, u64)> = ctx
        .srv
        .ks
        .existing()
        .filter(|d| d.size() > 0)
        .map(|d| {
            // Table overhead: one slot-table header per non-empty slot
            // plus a pointer per key.
            let slots = (0..SLOTS as u16).filter(|&s| d.slot_keys(s) > 0).count() as u64;
            (
                d.index,
                slots * 64 + d.size() as u64 * 8,
                d.expires_count() as u64 * 16,
            )
        })
        .collect();
    let overhead = f.startup + dbs.iter().map(|(_, m, e)| m + e).sum::<u64>();
    let dataset = f.allocated.saturating_sub(overhead);
    let r = &mut ctx.r;
    r.map(27 + dbs.len());
    let int = |r: &mut crate::resp::Reply, k: &str, v: i64| {
        r.bulk(k.as_bytes());
        r.int(v);
    };
    let dbl = |r: &mut crate::resp::Reply, k: &str, v: f64| {
        r.bulk(k.as_bytes());
        r.double(v);
    };
    int(r, "peak.allocated", f.peak as i64);
    int(r, "total.allocated", f.allocated as i64);
    int(r, "startup.allocated", f.startup as i64);
    int(r, "replication.backlog", 0);
    int(r, "clients.slaves", 0);
    int(r, "clients.normal", 0);
    int(r, "cluster.links", 0);
    int(r, "aof.buffer", 0);
    int(r, "lua.caches", 0);
    int(r, "functions.caches", 0);
    for (i, main, expires) in &dbs {
        r.bulk(format!("db.{i}").as_bytes());
        r.map(2);
        int(r, "overhead.hashtable.main", *main as i64);
        int(r, "overhead.hashtable.expires", *expires as i64);
    }
    int(r, "overhead.total", overhead as i64);
    int(r, "keys.count", f.keys as i64);
    int(
        r,
        "keys.bytes-per-key",
        f.allocated
            .saturating_sub(f.startup)
            .checked_div(f.keys)
            .unwrap_or(0) as i64,
    );
    int(r, "dataset.bytes", dataset as i64);
    dbl(
        r,
        "dataset.percentage",
        100.0 * ratio(dataset, f.allocated.saturating_sub(f.startup)),
    );
    dbl(r, "peak.percentage", 100.0 * ratio(f.allocated, f.peak));
    int(r, "allocator.allocated", f.allocated as i64);
    int(r, "allocator.active", f.active as i64);
    int(r, "allocator.resident", f.resident as i64);
    dbl(
        r,
        "allocator-fragmentation.ratio",
        ratio(f.active, f.allocated),
    );
    int(
        r,
        "allocator-fragmentation.bytes",
        f.active as i64 - f.allocated as i64,
    );
    dbl(r, "allocator-rss.ratio", ratio(f.resident, f.active));
    int(
        r,
        "allocator-rss.bytes",
        f.resident as i64 - f.active as i64,
    );
    dbl(r, "rss-overhead.ratio", ratio(f.rss, f.resident));
    int(r, "rss-overhead.bytes", f.rss as i64 - f.resident as i64);
    dbl(r, "fragmentation", ratio(f.rss, f.allocated));
    int(r, "fragmentation.bytes", f.rss as i64 - f.allocated as i64);
}

pub fn doctor(ctx: &mut Ctx, _a: &Args) {
    let f = figures(ctx);
    let mut notes: Vec<String> = Vec::new();
    if f.allocated < 5 * 1024 * 1024 {
        notes.push(
            "Too little data is stored for a useful diagnosis (under 5 MB); come back when the server holds some.".into(),
        );
    } else {
        if f.peak > 0 && ratio(f.peak, f.allocated) > 1.5 {
            notes.push(format!(
                "Peak memory: the peak ({} bytes) is over 150% of what is allocated now ({} bytes): memory was freed after a burst, and the allocator may not have returned it.",
                f.peak, f.allocated
            ));
        }
        if ratio(f.active, f.allocated) > 1.1 {
            notes.push(format!(
                "Allocator fragmentation: {:.2} (active/allocated). MEMORY PURGE returns unused pages to the system.",
                ratio(f.active, f.allocated)
            ));
        }
        if ratio(f.rss, f.allocated) > 1.4 {
            notes.push(format!(
                "High RSS overhead: the process holds {:.2} times the memory it has allocated.",
                ratio(f.rss, f.allocated)
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
