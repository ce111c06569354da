//! `maxmemory-clients`: what each connection costs in memory (counted as
//! Redis counts it: buffers, the MULTI queue, and fixed overheads per
//! watched key, subscription and tracking prefix), a running total over
//! all connections, and closing the largest ones when the total passes
//! the limit.
//!
//! Each connection reports its own figure after a batch of commands, and
//! a sender reports its target's when it queues a message for it; the
//! total moves by the difference, so checking it costs two atomics. Only
//! a total past the limit walks the connections.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use super::client::{Client, ClientInfo};
use super::shared::Shared;
use super::stats;

/// What the connection structure itself is counted as.
pub const CLIENT_STRUCT: u64 = 1024;

/// Redis's per-entry overheads on x86-64 (a list node, a dict entry, a
/// watched-key record, a queued-command slot, a pointer).
const LIST_NODE: u64 = 24;
const DICT_ENTRY: u64 = 24;
const WATCHED_KEY: u64 = 32;
const MULTI_CMD: u64 = 24;
const POINTER: u64 = 8;
/// Redis counts a tracking prefix's radix-tree nodes at this size each.
const RAX_NODE: u64 = 4 * POINTER;

/// The limit in bytes (0: off), and the connections' total.
static LIMIT: AtomicU64 = AtomicU64::new(0);
static TOTAL: AtomicU64 = AtomicU64::new(0);
/// The memory of evicted connections not yet closed: Redis frees an
/// evicted client at once; here its task drops its buffers a moment later,
/// and key eviction must not take that moment for memory still in use.
static CLOSING: AtomicU64 = AtomicU64::new(0);

/// Memory evicted connections hold until their tasks end.
pub fn closing() -> u64 {
    CLOSING.load(Ordering::Relaxed)
}

/// The smallest `maxmemory-clients` applied, as in Redis: a tiny setting
/// would otherwise close every connection, the one that could undo it too.
const MIN_LIMIT: u64 = 128 * 1024;

/// `maxmemory-clients` in bytes: an absolute size, or a percentage of
/// `maxmemory` (nothing when maxmemory is 0).
pub fn configure(value: &str, maxmemory: u64) {
    let limit = match value.strip_suffix('%') {
        Some(p) => maxmemory.saturating_mul(p.parse::<u64>().unwrap_or(0)) / 100,
        None => value.parse::<u64>().unwrap_or(0),
    };
    let limit = if limit > 0 { limit.max(MIN_LIMIT) } else { 0 };
    LIMIT.store(limit, Ordering::Relaxed);
}

pub fn enabled() -> bool {
    LIMIT.load(Ordering::Relaxed) > 0
}

fn over() -> bool {
    let limit = LIMIT.load(Ordering::Relaxed);
    limit > 0 && TOTAL.load(Ordering::Relaxed) > limit
}

/// What one queued command adds to a MULTI queue: its argument bytes
/// and a pointer per argument.
pub fn queued_cost(arg_lens: impl Iterator<Item = usize>) -> u64 {
    arg_lens.map(|n| n as u64 + POINTER).sum()
}

/// The MULTI queue and watched keys, as Redis's multiStateMemOverhead:
/// the queued arguments, the queue's slots (it starts at two and
/// doubles) and a record per watched key.
pub fn multi_memory(queued_bytes: u64, queued: usize, watched: usize) -> u64 {
    let slots = match queued {
        0 => 0,
        n => n.next_power_of_two().max(2) as u64,
    };
    queued_bytes + slots * MULTI_CMD + watched as u64 * (LIST_NODE + WATCHED_KEY)
}

/// A client's dict of `n` names: an entry each, and a table whose size
/// is the power of two at or above `n` (4 at least).
fn dict_memory(n: usize) -> u64 {
    match n {
        0 => 0,
        n => n as u64 * DICT_ENTRY + n.next_power_of_two().max(4) as u64 * POINTER,
    }
}

/// Everything but the buffers: the MULTI state, the subscriptions
/// (patterns are a list, channels and shard channels dicts) and the
/// tracking prefixes.
pub fn state_memory(client: &Client, multi: u64) -> u64 {
    let subs = client.subs.as_ref().map_or(0, |s| {
        s.patterns.len() as u64 * LIST_NODE
            + dict_memory(s.channels.len())
            + dict_memory(s.shard_channels.len())
    });
    multi + subs + client.trk_prefixes.len() as u64 * RAX_NODE
}

/// Publishes the client's state memory (once per batch, by its own task).
pub fn publish(client: &Client) {
    let (queued_bytes, queued) = client
        .multi
        .as_ref()
        .map_or((0, 0), |m| (m.mem, m.queue.len()));
    let multi = multi_memory(queued_bytes, queued, client.watched.len());
    client.info.multi_mem.store(multi, Ordering::Relaxed);
    client
        .info
        .state_mem
        .store(state_memory(client, multi), Ordering::Relaxed);
}

/// Brings `info`'s share of the total up to date; true when the total is
/// now past the limit (the caller then runs `evict`).
pub fn account(info: &ClientInfo) -> bool {
    if !enabled() {
        return false;
    }
    settle(info, info.memory());
    over()
}

/// Like `account`, for a connection in the middle of a batch: its reply
/// buffer (`out_len` bytes in an allocation of `out_cap`) holds what is
/// still unwritten and the replies of the batch so far. It is published as
/// the connection's output (`writing`), so that `evict`, which recounts
/// every connection from what it published, sees it too: before, it
/// recounted a running batch without its replies and spared it.
pub fn account_running(info: &ClientInfo, out_len: usize, out_cap: usize) -> bool {
    let out = if out_len == 0 {
        0
    } else {
        crate::memory::alloc_size(out_cap) as u64
    };
    info.outq.writing.store(out, Ordering::Relaxed);
    settle(info, info.memory());
    over()
}

fn settle(info: &ClientInfo, mem: u64) {
    let old = info.reported_mem.swap(mem, Ordering::Relaxed);
    if mem >= old {
        TOTAL.fetch_add(mem - old, Ordering::Relaxed);
    } else {
        TOTAL.fetch_sub(old - mem, Ordering::Relaxed);
    }
}

/// A connection is gone: its share leaves the total.
pub fn forget(info: &ClientInfo) {
    let old = info.reported_mem.swap(0, Ordering::Relaxed);
    TOTAL.fetch_sub(old, Ordering::Relaxed);
    CLOSING.fetch_sub(
        info.closing_mem.swap(0, Ordering::Relaxed),
        Ordering::Relaxed,
    );
}

/// Closes connections, the largest first, until the total fits the
/// limit, as Redis does. Connections marked CLIENT NO-EVICT stay, and
/// one already being closed (an output buffer limit) counts for nothing.
/// Every connection's share is brought up to date on the way, which also
/// corrects what queues emptied since they were last reported.
pub fn evict(srv: &Shared) {
    let limit = LIMIT.load(Ordering::Relaxed);
    if limit == 0 {
        return;
    }
    let mut all: Vec<(u64, Arc<ClientInfo>)> = srv
        .clients
        .lock()
        .values()
        .map(|c| (c.memory(), c.clone()))
        .collect();
    let mut total = 0u64;
    for (mem, c) in &mut all {
        // As Redis: only normal and pub/sub clients count and may go; a
        // replica's link or our master's is never evicted.
        if c.killed.load(Ordering::Relaxed)
            || c.role.load(Ordering::Relaxed) != super::client::role::NONE
        {
            *mem = 0;
        }
        settle(c, *mem);
        total += *mem;
    }
    if total <= limit {
        return;
    }
    all.sort_by_key(|c| std::cmp::Reverse(c.0));
    for (mem, c) in all {
        if total <= limit {
            break;
        }
        if mem == 0 || c.no_evict.load(Ordering::Relaxed) {
            continue;
        }
        tracing::warn!("Evicting client: id={} addr={} mem={mem}", c.id, c.addr);
        // Counted as closing until its task is gone (see `forget`).
        CLOSING.fetch_add(mem, Ordering::Relaxed);
        CLOSING.fetch_sub(
            c.closing_mem.swap(mem, Ordering::Relaxed),
            Ordering::Relaxed,
        );
        c.kill();
        stats::Stats::add(&srv.stats.evicted_clients, 1);
        settle(&c, 0);
        total -= mem;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multi_state_counts_as_redis_does() {
        assert_eq!(multi_memory(0, 0, 0), 0);
        // One queued SET k v: 5 bytes and three pointers, in two slots.
        let set = queued_cost([3usize, 1, 1].into_iter());
        assert_eq!(set, 29);
        assert_eq!(multi_memory(set, 1, 0), 29 + 2 * 24);
        assert_eq!(multi_memory(3 * set, 3, 0), 3 * 29 + 4 * 24);
        assert_eq!(multi_memory(0, 0, 10), 10 * 56);
    }

    #[test]
    fn dicts_grow_by_powers_of_two() {
        assert_eq!(dict_memory(0), 0);
        assert_eq!(dict_memory(1), 24 + 4 * 8);
        assert_eq!(dict_memory(4), 4 * 24 + 4 * 8);
        assert_eq!(dict_memory(5), 5 * 24 + 8 * 8);
    }
}
