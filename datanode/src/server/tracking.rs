//! Client-side caching (CLIENT TRACKING), as Redis 7.0 does it.
//!
//! Default mode: the keys a tracking client reads with read-only commands
//! are remembered in an invalidation table (key → client ids, in shards so
//! no global lock sits on the command path); the first change to such a
//! key sends one `invalidate` message to each of those clients and forgets
//! the key. BCAST mode: clients register prefixes instead, and every
//! changed key under a prefix is collected and sent after the command.
//!
//! The keyspace reports changes through its event sink (see
//! `keyspace::events`), only while something is tracked. Messages go
//! through the receiving connection's message queue, except those for the
//! connection running the command: they wait in a thread-local list and are
//! written after its reply (or, for evictions before the command runs,
//! before it), which is the order Redis gives.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use parking_lot::{Mutex, RwLock};

use super::client::ClientInfo;
use super::pubsub::PubMsg;
use super::Shared;

/// Tracking flags kept in `ClientInfo::trk`.
pub mod flag {
    pub const ON: u32 = 1;
    pub const BCAST: u32 = 1 << 1;
    pub const OPTIN: u32 = 1 << 2;
    pub const OPTOUT: u32 = 1 << 3;
    pub const NOLOOP: u32 = 1 << 4;
    /// The redirect target was gone when a message was due.
    pub const BROKEN: u32 = 1 << 5;
}

const SHARDS: usize = 64;

/// One shard of the invalidation table: key → ids of the clients that read it.
type Shard = Mutex<HashMap<Bytes, Vec<u64>>>;

thread_local! {
    /// The client whose command runs on this thread (0: none).
    static CURRENT: Cell<u64> = const { Cell::new(0) };
    /// Messages for that client's own connection, written by `finish`.
    static OWN: RefCell<Vec<PubMsg>> = const { RefCell::new(Vec::new()) };
}

/// A BCAST prefix: its clients and the keys changed under it since the
/// last flush, with who changed each last (0: nobody, an expiry).
#[derive(Default)]
struct Prefix {
    clients: Vec<u64>,
    keys: BTreeMap<Bytes, u64>,
}

pub struct Tracking {
    /// Anything to do on a change: clients track or keys are remembered.
    armed: AtomicBool,
    clients: AtomicUsize,
    keys: AtomicUsize,
    items: AtomicUsize,
    table: Box<[Shard]>,
    /// Tracking clients, for the invalidation path to look up by id.
    registry: RwLock<HashMap<u64, Arc<ClientInfo>>>,
    prefixes: Mutex<BTreeMap<Bytes, Prefix>>,
    prefix_count: AtomicUsize,
    bcast_pending: AtomicBool,
    /// `tracking-table-max-keys`, copied from the config (0 = no limit).
    max_keys: AtomicUsize,
}

impl Default for Tracking {
    fn default() -> Self {
        Tracking {
            armed: AtomicBool::new(false),
            clients: AtomicUsize::new(0),
            keys: AtomicUsize::new(0),
            items: AtomicUsize::new(0),
            table: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            registry: RwLock::new(HashMap::new()),
            prefixes: Mutex::new(BTreeMap::new()),
            prefix_count: AtomicUsize::new(0),
            bcast_pending: AtomicBool::new(false),
            max_keys: AtomicUsize::new(1_000_000),
        }
    }
}

/// INFO figures.
pub struct Counts {
    pub clients: usize,
    pub keys: usize,
    pub items: usize,
    pub prefixes: usize,
}

fn shard_of(key: &[u8]) -> usize {
    (crate::keyspace::slot::hash(key) as usize) % SHARDS
}

impl Tracking {
    /// One relaxed load: whether commands must set up tracking context.
    #[inline]
    pub fn armed(&self) -> bool {
        self.armed.load(Ordering::Relaxed)
    }

    pub fn set_max_keys(&self, n: usize) {
        self.max_keys.store(n, Ordering::Relaxed);
    }

    pub fn counts(&self) -> Counts {
        Counts {
            clients: self.clients.load(Ordering::Relaxed),
            keys: self.keys.load(Ordering::Relaxed),
            items: self.items.load(Ordering::Relaxed),
            prefixes: self.prefix_count.load(Ordering::Relaxed),
        }
    }

    /// Keys are reported by the keyspace while clients track or keys are
    /// remembered.
    fn rearm(&self, srv: &Shared) {
        let on = self.clients.load(Ordering::SeqCst) > 0 || self.keys.load(Ordering::SeqCst) > 0;
        self.armed.store(on, Ordering::SeqCst);
        srv.ks.events.report_modified(on);
    }

    /// Remembers that client `id` read `key`.
    pub fn remember(&self, id: u64, key: &[u8]) {
        let mut t = self.table[shard_of(key)].lock();
        let ids = match t.get_mut(key) {
            Some(v) => v,
            None => {
                self.keys.fetch_add(1, Ordering::Relaxed);
                t.entry(Bytes::copy_from_slice(key)).or_default()
            }
        };
        if !ids.contains(&id) {
            ids.push(id);
            self.items.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Takes `key` out of the table: the clients that tracked it.
    fn take(&self, key: &[u8]) -> Option<Vec<u64>> {
        let ids = self.table[shard_of(key)].lock().remove(key)?;
        self.keys.fetch_sub(1, Ordering::Relaxed);
        self.items.fetch_sub(ids.len(), Ordering::Relaxed);
        Some(ids)
    }

    fn tracker(&self, id: u64) -> Option<Arc<ClientInfo>> {
        self.registry.read().get(&id).cloned()
    }
}

/// The client whose command runs on this thread.
pub fn current() -> Option<u64> {
    Some(CURRENT.with(|c| c.get())).filter(|&id| id != 0)
}

/// A key changed; `modifier` is the client whose command changed it (None
/// for an expiry or eviction).
pub fn key_changed(srv: &Shared, key: &[u8], modifier: Option<u64>) {
    let t = &srv.tracking;
    if t.prefix_count.load(Ordering::Relaxed) > 0 {
        let mut p = t.prefixes.lock();
        let mut hit = false;
        for (prefix, st) in p.iter_mut() {
            if key.starts_with(prefix) {
                st.keys
                    .insert(Bytes::copy_from_slice(key), modifier.unwrap_or(0));
                hit = true;
            }
        }
        if hit {
            t.bcast_pending.store(true, Ordering::Relaxed);
        }
    }
    invalidate_tracked(srv, key);
}

/// Sends an invalidation for `key` to the default-mode clients that read
/// it, and forgets it.
fn invalidate_tracked(srv: &Shared, key: &[u8]) {
    let t = &srv.tracking;
    let Some(ids) = t.take(key) else {
        return;
    };
    let me = CURRENT.with(|c| c.get());
    let keys: Arc<[Bytes]> = Arc::from(vec![Bytes::copy_from_slice(key)]);
    for id in ids {
        let Some(target) = t.tracker(id) else {
            continue;
        };
        let f = target.trk.load(Ordering::Relaxed);
        // Keys read before a switch to BCAST are not reported (as Redis).
        if f & flag::ON == 0 || f & flag::BCAST != 0 {
            continue;
        }
        if f & flag::NOLOOP != 0 && id == me {
            continue;
        }
        send(srv, &target, Some(keys.clone()), false);
    }
}

/// Sends one invalidation to tracking client `target` (or to its redirect
/// target).
fn send(srv: &Shared, target: &ClientInfo, keys: Option<Arc<[Bytes]>>, flush: bool) {
    let redir = target.trk_redir.load(Ordering::Relaxed);
    let null3 = flush && target.resp.load(Ordering::Relaxed) >= 3;
    if redir != 0 {
        let to = srv.clients.lock().get(&redir).cloned();
        match to {
            Some(to) => deliver(
                &to,
                PubMsg::Invalidate {
                    keys,
                    redirected: true,
                    null3,
                },
            ),
            None => {
                target.trk.fetch_or(flag::BROKEN, Ordering::Relaxed);
                if target.resp.load(Ordering::Relaxed) >= 3 {
                    deliver(target, PubMsg::RedirBroken(redir));
                }
            }
        }
    } else if target.resp.load(Ordering::Relaxed) >= 3 {
        deliver(
            target,
            PubMsg::Invalidate {
                keys,
                redirected: false,
                null3,
            },
        );
    }
}

/// Queues a message for a connection: the running one's own list, or its
/// message queue. A RESP3 connection without a queue gets one made for
/// it (it adopts it at its next turn); anyone else without one could not
/// receive the message anyway (RESP2 needs a subscription).
fn deliver(to: &ClientInfo, m: PubMsg) {
    if CURRENT.with(|c| c.get()) == to.id {
        OWN.with(|o| o.borrow_mut().push(m));
        return;
    }
    let mut inbox = to.inbox.lock();
    if let Some(tx) = inbox.as_ref() {
        let _ = tx.send(m);
        return;
    }
    if to.resp.load(Ordering::Relaxed) < 3 {
        return;
    }
    let (tx, rx) = super::outbox::channel(&to.outq);
    let _ = tx.send(m);
    *inbox = Some(tx);
    *to.adopt.lock() = Some(rx);
    to.has_adopt.store(true, Ordering::Relaxed);
    to.kill_notify.notify_one();
}

/// Sends the changes collected for BCAST prefixes.
pub fn flush_bcast(srv: &Shared) {
    let t = &srv.tracking;
    // A plain load first: this runs after every command while tracking is
    // on, and the swap would take the cache line from other cores.
    if !t.bcast_pending.load(Ordering::Relaxed) || !t.bcast_pending.swap(false, Ordering::Relaxed) {
        return;
    }
    let batches: Vec<(Vec<u64>, BTreeMap<Bytes, u64>)> = {
        let mut p = t.prefixes.lock();
        p.values_mut()
            .filter(|st| !st.keys.is_empty())
            .map(|st| (st.clients.clone(), std::mem::take(&mut st.keys)))
            .collect()
    };
    for (clients, keys) in batches {
        let all: Arc<[Bytes]> = keys.keys().cloned().collect();
        for id in clients {
            let Some(target) = t.tracker(id) else {
                continue;
            };
            let f = target.trk.load(Ordering::Relaxed);
            if f & flag::NOLOOP != 0 {
                let mine: Vec<Bytes> = keys
                    .iter()
                    .filter(|(_, by)| **by != id)
                    .map(|(k, _)| k.clone())
                    .collect();
                if !mine.is_empty() {
                    send(srv, &target, Some(mine.into()), false);
                }
            } else {
                send(srv, &target, Some(all.clone()), false);
            }
        }
    }
}

/// FLUSHDB / FLUSHALL: every tracking client hears that everything
/// changed, and the table is emptied.
pub fn flushed(srv: &Shared) {
    let t = &srv.tracking;
    if !t.armed() {
        return;
    }
    let mut targets: Vec<Arc<ClientInfo>> = t.registry.read().values().cloned().collect();
    // Redis goes through its clients in connection order.
    targets.sort_by_key(|c| c.id);
    for target in targets {
        if target.trk.load(Ordering::Relaxed) & flag::ON != 0 {
            send(srv, &target, None, true);
        }
    }
    for s in t.table.iter() {
        let mut m = s.lock();
        let n: usize = m.values().map(|v| v.len()).sum();
        t.keys.fetch_sub(m.len(), Ordering::Relaxed);
        t.items.fetch_sub(n, Ordering::Relaxed);
        m.clear();
    }
    t.rearm(srv);
}

/// `tracking-table-max-keys`: forgets (and invalidates) keys until the
/// table is back within the limit (0 = no limit).
pub fn enforce_limit(srv: &Shared) {
    let t = &srv.tracking;
    let keys = t.keys.load(Ordering::Relaxed);
    if keys == 0 {
        return;
    }
    let max = t.max_keys.load(Ordering::Relaxed);
    if max == 0 || keys <= max {
        return;
    }
    let mut start = rand::random::<u64>() as usize % SHARDS;
    while t.keys.load(Ordering::Relaxed) > max {
        let victim = t.table[start].lock().keys().next().cloned();
        match victim {
            Some(k) => invalidate_tracked(srv, &k),
            None => start = (start + 1) % SHARDS,
        }
    }
}

/// Sets the thread's running client before a command (and applies the
/// table limit, as Redis does before each command): messages for it
/// produced meanwhile are returned to be written before the reply.
pub fn begin(srv: &Shared, id: u64) -> Vec<PubMsg> {
    CURRENT.with(|c| c.set(id));
    enforce_limit(srv);
    OWN.with(|o| std::mem::take(&mut *o.borrow_mut()))
}

/// Messages for the running client queued so far. For work done before a
/// command's handler whose invalidations Redis sends before the reply
/// (evicting keys for maxmemory): write these to the output first.
pub fn take_own() -> Vec<PubMsg> {
    OWN.with(|o| std::mem::take(&mut *o.borrow_mut()))
}

/// After the command: sends collected BCAST changes, clears the running
/// client, and returns the messages for it, to be written after its reply.
pub fn finish(srv: &Shared) -> Vec<PubMsg> {
    flush_bcast(srv);
    CURRENT.with(|c| c.set(0));
    OWN.with(|o| std::mem::take(&mut *o.borrow_mut()))
}

/// Background work (the cron): the table limit and expired keys' BCAST
/// messages.
pub fn cron(srv: &Shared) {
    if srv.tracking.armed() {
        enforce_limit(srv);
        flush_bcast(srv);
    }
}

/// The modes CLIENT TRACKING ON asks for.
pub struct Mode {
    pub flags: u32,
    pub redirect: u64,
    pub prefixes: Vec<Bytes>,
}

/// Turns tracking on (or updates it) for `info`; `old_prefixes` are the
/// client's registered prefixes, to which new ones are added.
pub fn enable(srv: &Shared, info: &Arc<ClientInfo>, mode: Mode, prefixes: &mut Vec<Bytes>) {
    let t = &srv.tracking;
    let was_on = info.trk.load(Ordering::Relaxed) & flag::ON != 0;
    if !was_on {
        t.registry.write().insert(info.id, info.clone());
        t.clients.fetch_add(1, Ordering::SeqCst);
    }
    info.trk_redir.store(mode.redirect, Ordering::Relaxed);
    info.trk.store(mode.flags | flag::ON, Ordering::Relaxed);
    if mode.flags & flag::BCAST != 0 {
        let wanted = if mode.prefixes.is_empty() {
            vec![Bytes::new()]
        } else {
            mode.prefixes
        };
        let mut p = t.prefixes.lock();
        for w in wanted {
            if prefixes.contains(&w) {
                continue;
            }
            let st = p.entry(w.clone()).or_default();
            st.clients.push(info.id);
            prefixes.push(w);
        }
        t.prefix_count.store(p.len(), Ordering::Relaxed);
    }
    t.rearm(srv);
}

/// Turns tracking off. The keys the client read stay in the table until
/// they change (as in Redis, ids are not cleaned up).
pub fn disable(srv: &Shared, info: &ClientInfo, prefixes: &mut Vec<Bytes>) {
    let t = &srv.tracking;
    let f = info.trk.load(Ordering::Relaxed);
    if f & flag::ON == 0 {
        return;
    }
    if f & flag::BCAST != 0 {
        let mut p = t.prefixes.lock();
        for w in prefixes.drain(..) {
            if let Some(st) = p.get_mut(&w) {
                st.clients.retain(|&c| c != info.id);
                if st.clients.is_empty() {
                    p.remove(&w);
                }
            }
        }
        t.prefix_count.store(p.len(), Ordering::Relaxed);
    }
    prefixes.clear();
    info.trk.store(0, Ordering::Relaxed);
    t.registry.write().remove(&info.id);
    t.clients.fetch_sub(1, Ordering::SeqCst);
    t.rearm(srv);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_counts_keys_and_items_and_forgets_on_take() {
        let t = Tracking::default();
        t.remember(1, b"a");
        t.remember(2, b"a");
        t.remember(1, b"a");
        t.remember(1, b"b");
        let c = t.counts();
        assert_eq!((c.keys, c.items), (2, 3));
        let mut ids = t.take(b"a").unwrap_or_default();
        ids.sort_unstable();
        assert_eq!(ids, [1, 2]);
        assert!(t.take(b"a").is_none());
        let c = t.counts();
        assert_eq!((c.keys, c.items), (1, 1));
    }

    #[test]
    fn own_messages_wait_for_the_running_client() {
        CURRENT.with(|c| c.set(7));
        assert_eq!(current(), Some(7));
        OWN.with(|o| o.borrow_mut().push(PubMsg::RedirBroken(3)));
        assert_eq!(take_own().len(), 1);
        assert!(take_own().is_empty());
        CURRENT.with(|c| c.set(0));
        assert_eq!(current(), None);
    }
}
