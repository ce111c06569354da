//! Commands: the dispatch table and one module per family. A handler reads
//! its arguments, takes the slot lock(s) it needs through [`Ctx::locks`],
//! and writes its reply with [`Ctx::r`].

pub mod acl;
pub mod args;
pub mod bits;
pub mod cluster;
pub mod connection;
pub mod cursor;
pub mod debug;
pub mod dump;
pub mod function;
pub mod geo;
pub mod hashes;
pub mod hll;
pub mod keys;
pub mod keyspec;
pub mod latency;
pub mod lists;
pub mod locks;
pub mod memory;
pub mod meta;
mod meta_table;
pub mod migrate;
pub mod module;
pub mod pubsub;
pub mod repl;
pub mod scripting;
pub mod server;
pub mod sets;
pub mod slotmig;
pub mod sort;
pub mod stream_groups;
pub mod stream_read;
pub mod streams;
pub mod strings;
pub mod table;
pub mod txn;
pub mod typed;
pub mod zsets;

use std::sync::Arc;

use crate::resp::Reply;
use crate::server::client::Client;
use crate::server::cmdstats;
pub use crate::server::notify::{class as ev, Events};
use crate::server::shared::Shared;
pub use args::{eq_ic, Args, OwnedArgs};
pub use locks::Locks;

pub const WRONGTYPE: &str = "WRONGTYPE Operation against a key holding the wrong kind of value";
pub const NOT_INT: &str = "ERR value is not an integer or out of range";
pub const NOT_FLOAT: &str = "ERR value is not a valid float";
pub const SYNTAX: &str = "ERR syntax error";
pub const OVERFLOW: &str = "ERR increment or decrement would overflow";
pub const NO_SUCH_KEY: &str = "ERR no such key";
pub const LOADING: &str = "LOADING Redis is loading the dataset in memory";
/// A count Redis reads with `getRangeLongFromObjectOrReply(-LONG_MAX, LONG_MAX)`.
pub const COUNT_RANGE: &str =
    "ERR value is out of range, value must between -9223372036854775807 and 9223372036854775807";

/// Follow-ups a command asks of its connection after the reply is queued.
#[derive(Debug)]
pub enum Action {
    /// Close once replies are written (QUIT).
    Close,
    Shutdown(crate::server::shutdown::Flags),
    RewriteAof,
    /// Wait for a key to get elements, then run the command again.
    Block(Block),
    /// Clients are paused (CLIENT PAUSE): wait until no pause of kind
    /// `held_by` or stricter is in force, then run the command (named
    /// `cmd`) again.
    Postpone {
        args: OwnedArgs,
        cmd: &'static str,
        held_by: u8,
    },
    /// A script running off the command thread holds a slot the command
    /// needs: wait for it to end (or time out, when -BUSY answers), then
    /// run the command again.
    WaitScript {
        args: OwnedArgs,
    },
    /// CLUSTER SYNCSLOTS ESTABLISH accepted: the connection becomes the
    /// slot migration's import link.
    SlotImport {
        name: String,
    },
    /// Run this on a blocking thread while the connection waits, then
    /// write what it returns as the reply (MIGRATE's transfer).
    Offload(Offloaded),
    /// An offloaded script run under the Lua debugger: while it runs, the
    /// connection carries the debugging dialogue over `link`.
    Debug(DebugRun),
    /// PSYNC / SYNC: the connection becomes a replica feed.
    Sync(crate::replication::master::SyncRequest),
    /// WAIT: until `numreplicas` replicas acknowledged `offset`, or the
    /// timeout (0 = none); then the count is the reply.
    WaitReplicas {
        numreplicas: i64,
        timeout_ms: u64,
        offset: u64,
    },
    /// CONFIG SET bind applied: move the listeners, then reply; when the
    /// new addresses cannot be bound, the call's settings go back to
    /// `before` (`changed` names them; `name` is the argument as given).
    Rebind {
        before: Box<crate::config::Config>,
        changed: Vec<String>,
        name: String,
    },
}

/// A debugged script run and its side of the debugging dialogue.
#[derive(Debug)]
pub struct DebugRun {
    pub job: Offloaded,
    /// A synchronous session's dialogue, carried by the connection; none
    /// for a forked session, whose child talks on the socket itself.
    pub link: Option<DebugLink>,
}

/// The connection's ends of a debugging session: what the client sends
/// goes to `input`; what the debugger says comes from `output`.
#[derive(Debug)]
pub struct DebugLink {
    pub input: std::sync::mpsc::Sender<Vec<u8>>,
    pub output: tokio::sync::mpsc::UnboundedReceiver<Vec<u8>>,
}

/// The debugger's ends, on the blocking thread: it waits for input there.
pub struct DebugConsole {
    input: std::sync::mpsc::Receiver<Vec<u8>>,
    output: tokio::sync::mpsc::UnboundedSender<Vec<u8>>,
}

impl crate::scripting::ldb::Console for DebugConsole {
    fn read(&mut self) -> Option<Vec<u8>> {
        self.input.recv().ok()
    }

    fn write(&mut self, bytes: Vec<u8>) {
        // A client gone is noticed on the next read.
        let _ = self.output.send(bytes);
    }
}

/// A connected pair of debugging ends.
pub fn debug_link() -> (DebugConsole, DebugLink) {
    let (in_tx, in_rx) = std::sync::mpsc::channel();
    let (out_tx, out_rx) = tokio::sync::mpsc::unbounded_channel();
    (
        DebugConsole {
            input: in_rx,
            output: out_tx,
        },
        DebugLink {
            input: in_tx,
            output: out_rx,
        },
    )
}

/// Work for a blocking thread: returns the reply and the keys it changed.
pub struct Offloaded(pub Box<dyn FnOnce() -> OffloadDone + Send>);

/// What an offloaded job hands back to its connection.
pub struct OffloadDone {
    pub reply: Vec<u8>,
    /// A forked debugging session took the connection over: this side
    /// closes it without a reply.
    pub detached: bool,
    /// Changes made (the client's dirty count).
    pub dirty: u64,
    /// The reply's error was counted already (see `Client::error_counted`).
    pub error_counted: bool,
    /// The command, for its stats, counted once it ends (with its time
    /// and outcome) rather than when it was handed off.
    pub cmd: Option<&'static table::Cmd>,
    pub usec: u64,
}

impl std::fmt::Debug for Offloaded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Offloaded")
    }
}

#[derive(Debug)]
pub struct Block {
    pub keys: Vec<Vec<u8>>,
    /// 0 = forever.
    pub timeout_ms: u64,
    pub args: OwnedArgs,
    /// What a timeout answers: a null array (BLPOP) or a null bulk (BLMOVE).
    pub null_array: bool,
}

pub struct Ctx<'a> {
    pub srv: &'a Arc<Shared>,
    pub client: &'a mut Client,
    pub r: Reply<'a>,
    pub locks: Locks<'a>,
    pub actions: &'a mut Vec<Action>,
}

/// Whether the replies pending for `client` (the one being built
/// included) pass its hard output buffer limit. Commands that may write a
/// reply of a size the client chose (KEYS, the random-member commands with
/// a negative count) stop early when it does, as Redis's do; the
/// connection then closes the client without a reply. Takes the two
/// fields, not the context, so a command may ask while it holds a slot.
pub fn reply_over_limit(client: &Client, r: &Reply) -> bool {
    client.info.outq.over_hard_limit(r.out.len() as u64)
}

impl<'a> Ctx<'a> {
    /// Keyspace notifications for this command, in its database. Take it
    /// before locking: it borrows nothing from the context, so events can
    /// be published while the guards are held.
    pub fn events(&self) -> Events<'a> {
        let srv: &'a Shared = self.srv;
        Events::new(srv, srv.hot.notify.load()).db(self.locks.db.index)
    }

    /// Publishes one event when no guard is borrowed from the context.
    pub fn notify(&self, class: u32, event: &'static str, key: &[u8]) {
        self.events().emit(class, event, key);
    }

    pub fn log<A: AsRef<[u8]>>(&mut self, args: &[A]) {
        let log = &self.srv.log;
        if log.is_active() {
            self.client.last_write_offset = log.append(self.locks.db.index, args);
        }
    }

    pub fn dirty(&mut self, n: u64) {
        self.client.pending_dirty += n;
    }

    pub fn err(&mut self, msg: &str) {
        self.r.error(msg);
    }
}

/// Parses an integer argument; replies with Redis's error when it is not one.
pub fn int_arg(ctx: &mut Ctx, a: &[u8]) -> Option<i64> {
    match crate::resp::parse_i64(a) {
        Some(n) => Some(n),
        None => {
            ctx.r.error(NOT_INT);
            None
        }
    }
}

/// Parses a float argument the way Redis's `string2d` does.
pub fn parse_float(a: &[u8]) -> Option<f64> {
    crate::strtod::string2d(a)
}

pub(crate) fn arity_ok(arity: i32, argc: usize) -> bool {
    if arity >= 0 {
        argc == arity as usize
    } else {
        argc >= (-arity) as usize
    }
}

/// At most `max` bytes of `b`, cut at a NUL as C's `%s` would.
fn c_str(b: &[u8], max: usize) -> &[u8] {
    let b = &b[..b.len().min(max)];
    match b.iter().position(|&c| c == 0) {
        Some(z) => &b[..z],
        None => b,
    }
}

fn lossy(b: &[u8], max: usize) -> String {
    String::from_utf8_lossy(c_str(b, max)).into_owned()
}

/// Redis's reply for a name that is not a command (raw bytes: the
/// arguments are echoed as sent).
fn unknown_command(args: &Args) -> Vec<u8> {
    let mut rest: Vec<u8> = Vec::new();
    for a in args.iter().skip(1) {
        if rest.len() >= 128 {
            break;
        }
        let room = 128 - rest.len();
        rest.push(b'\'');
        rest.extend_from_slice(c_str(a, room));
        rest.extend_from_slice(b"' ");
    }
    let mut m = b"ERR unknown command '".to_vec();
    m.extend_from_slice(c_str(args.get(0), 128));
    m.extend_from_slice(b"', with args beginning with: ");
    m.extend_from_slice(&rest);
    m
}

/// Resolves the command (and subcommand) an invocation names, or replies
/// with the error Redis gives.
pub fn resolve(ctx: &mut Ctx, args: &Args) -> Option<&'static table::Cmd> {
    // What the server wrote itself (its master's stream, the AOF being
    // loaded) names commands by their own names, renamed or not.
    let own = ctx.client.is_master || crate::keyspace::loading();
    let found = if own {
        table::lookup_any(args.get(0))
    } else {
        table::lookup(args.get(0))
    };
    let Some(cmd) = found else {
        ctx.r.error_bytes(&unknown_command(args));
        return None;
    };
    if !arity_ok(cmd.arity, args.len()) {
        ctx.r.error(&format!(
            "ERR wrong number of arguments for '{}' command",
            cmd.name
        ));
        cmdstats::record(cmd, 0, cmdstats::Outcome::Rejected);
        return None;
    }
    if cmd.subs.is_empty() || args.len() < 2 {
        return Some(cmd);
    }
    let Some(sub) = table::lookup_sub(cmd, args.get(1)) else {
        ctx.r.error(&format!(
            "ERR unknown subcommand '{}'. Try {} HELP.",
            lossy(args.get(1), 128),
            cmd.name.to_ascii_uppercase()
        ));
        return None;
    };
    if !arity_ok(sub.arity, args.len()) {
        ctx.r.error(&format!(
            "ERR wrong number of arguments for '{}' command",
            sub.name
        ));
        cmdstats::record(sub, 0, cmdstats::Outcome::Rejected);
        return None;
    }
    Some(sub)
}

/// Cluster routing: every key of the command (for EXEC, of the whole
/// queue) must hash to one slot, and that slot must be served here.
pub(crate) fn cluster_redirect(
    ctx: &Ctx,
    cl: &crate::cluster::Cluster,
    cmd: &'static table::Cmd,
    args: &Args,
) -> Option<crate::cluster::Redirect> {
    route_command(ctx, cl, cmd, args).err()
}

/// A command that locks its slots itself (a script call) routed again
/// once it holds them: `Some` if it must now go elsewhere.
pub(crate) fn reroute_held(ctx: &Ctx, args: &Args) -> Option<crate::cluster::Redirect> {
    let cl = ctx.srv.cluster.get()?;
    if ctx.client.is_master {
        return None;
    }
    let cmd = table::lookup(args.get(0))?;
    cluster_redirect(ctx, cl, cmd, args)
}

/// How a keyed command was routed to be served here.
#[derive(Clone, Copy)]
struct Routed {
    slot: u16,
    /// The route's version.
    version: u64,
    /// The slot was being migrated or imported: where the command goes
    /// depended on which keys were here.
    open: bool,
}

/// [`cluster_redirect`], saying on success which slot the command keys
/// (`None` for a keyless command) and on what route it was served.
fn route_command(
    ctx: &Ctx,
    cl: &crate::cluster::Cluster,
    cmd: &'static table::Cmd,
    args: &Args,
) -> Result<Option<Routed>, crate::cluster::Redirect> {
    use crate::keyspace::hashslot::key_slot;
    let route = cl.route.load();
    let mut slot: Option<u16> = None;
    let mut unbound = false;
    let mut write = cmd.is_write();
    // As Redis: an unserved first key wins over a later cross-slot key.
    let mut same = |k: &[u8]| {
        let s = key_slot(k);
        match slot {
            Some(prev) => prev == s,
            None => {
                slot = Some(s);
                unbound = route.owner[s as usize] == crate::cluster::route::NONE;
                !unbound
            }
        }
    };
    let ok = if cmd.name == "exec" {
        let Some(m) = &ctx.client.multi else {
            return Ok(None);
        };
        m.queue.iter().all(|q| {
            let a = q.args();
            let Some(mut c) = table::lookup(a.get(0)) else {
                return true;
            };
            if !c.subs.is_empty() && a.len() >= 2 {
                match table::lookup_sub(c, a.get(1)) {
                    Some(sc) => c = sc,
                    None => return true,
                }
            }
            write |= c.is_write();
            c.each_key(&a, &mut same)
        })
    } else {
        cmd.each_key(args, &mut same)
    };
    if unbound {
        return Err(crate::cluster::Redirect::Down(
            "CLUSTERDOWN Hash slot not served",
        ));
    }
    if !ok {
        return Err(crate::cluster::Redirect::CrossSlot);
    }
    let Some(slot) = slot else {
        return Ok(None);
    };
    let sharded_pubsub = matches!(cmd.name, "spublish" | "ssubscribe" | "sunsubscribe");
    // A transaction's commands were routed with its EXEC (and their slots
    // are locked now).
    let open = route.is_open(slot);
    let keys = if open && !sharded_pubsub && !ctx.client.in_exec {
        key_presence(ctx, cmd, args)
    } else {
        Default::default()
    };
    let q = crate::cluster::Query {
        write,
        readonly: ctx.client.readonly,
        asking: ctx.client.asking || cmd.name == "restore-asking",
        sharded_pubsub,
        migrate: cmd.name == "migrate",
        keys,
    };
    let r = route.check(slot, &q);
    // A master cut off from most masters for longer than the node timeout
    // may already be replaced: refuse writes rather than acknowledge what
    // the cluster will discard. Checked against the clock (the batch's
    // reading, taken after the socket read), so a node just woken from a
    // stop refuses before its cron has run.
    if r.is_none() && write && !cl.may_accept_writes(ctx.locks.now) {
        return Err(crate::cluster::Redirect::Down(
            "CLUSTERDOWN The cluster is down",
        ));
    }
    match r {
        Some(r) => Err(r),
        None => Ok(Some(Routed {
            slot,
            version: route.version,
            open,
        })),
    }
}

/// Which keys of the command (for EXEC, of the whole queue) this node
/// holds alive, looked up without side effects, as Redis does for a slot
/// in migration.
fn key_presence(ctx: &Ctx, cmd: &'static table::Cmd, args: &Args) -> crate::cluster::KeyPresence {
    let db = ctx.srv.ks.db(0);
    let now = ctx.locks.now;
    let mut p = crate::cluster::KeyPresence::default();
    // Owned: the keys of a queue come from several argument vectors.
    let mut first: Option<Vec<u8>> = None;
    let mut count = |k: &[u8]| {
        match &first {
            Some(f) if f.as_slice() != k => p.multiple = true,
            Some(_) => {}
            None => first = Some(k.to_vec()),
        }
        // Under EXEC, a script or a routed command's own hold, the slot is
        // ours already (locking it again would deadlock).
        let live = match ctx.locks.held_slot(0, crate::keyspace::key_slot(k)) {
            Some(s) => s.holds_live(k),
            None => db.lock_key(k, now).holds_live(k),
        };
        if live {
            p.existing += 1;
        } else {
            p.missing += 1;
        }
    };
    if cmd.name == "exec" {
        if let Some(m) = &ctx.client.multi {
            for q in &m.queue {
                let a = q.args();
                let Some(mut c) = table::lookup(a.get(0)) else {
                    continue;
                };
                if !c.subs.is_empty() && a.len() >= 2 {
                    match table::lookup_sub(c, a.get(1)) {
                        Some(sc) => c = sc,
                        None => continue,
                    }
                }
                c.each_key(&a, |k| {
                    count(k);
                    true
                });
            }
        }
    } else {
        cmd.each_key(args, |k| {
            count(k);
            true
        });
    }
    p
}

/// Flags of every command queued in the current transaction, OR-ed (Redis
/// keeps them as `mstate.cmd_flags`).
fn queued_flags(ctx: &Ctx) -> u32 {
    let Some(m) = &ctx.client.multi else {
        return 0;
    };
    m.queue
        .iter()
        .filter_map(|q| {
            let a = q.args();
            let c = table::lookup(a.get(0))?;
            if !c.subs.is_empty() && a.len() >= 2 {
                return table::lookup_sub(c, a.get(1)).map(|s| s.flags);
            }
            Some(scripting::effective_flags(ctx.srv, c, &a))
        })
        .fold(0, |acc, f| acc | f)
}

/// `maxmemory`: evicts if needed before any command (as Redis does), then
/// refuses the command with OOM if memory is still over the limit and the
/// command may grow it: a `denyoom` command, an EXEC with one queued, or
/// anything but EXEC/DISCARD/QUIT/RESET inside MULTI (queuing uses memory
/// too). Replies and returns true when refused.
fn oom_rejected(ctx: &mut Ctx, cmd: &'static table::Cmd) -> bool {
    use crate::server::evict;
    use std::sync::atomic::Ordering;
    // Commands inside EXEC were checked with EXEC; a blocked command being
    // retried was checked when it first ran; loading replays history.
    if ctx.client.in_exec
        || ctx.client.block_retry
        || ctx.client.loading
        || ctx.srv.hot.maxmemory.load(Ordering::Relaxed) == 0
    {
        return false;
    }
    let exec = cmd.name == "exec";
    let denyoom = cmd.flags & table::flags::DENYOOM != 0
        || (exec && queued_flags(ctx) & table::flags::DENYOOM != 0);
    let queuing =
        ctx.client.multi.is_some() && !matches!(cmd.name, "exec" | "discard" | "quit" | "reset");
    let refusable = denyoom || queuing;
    let outcome = evict::perform_evictions(ctx.srv, ctx.locks.now, refusable);
    // Redis delivers the invalidations of keys this command evicted before
    // its reply.
    let own = crate::server::tracking::take_own();
    if !own.is_empty() {
        let subscribed = ctx.client.subscribed();
        for m in &own {
            crate::command::pubsub::write_message(&mut ctx.r, m, subscribed);
        }
        ctx.client.reply_from = Some(ctx.r.out.len());
    }
    if outcome != evict::Outcome::Fail || !refusable {
        return false;
    }
    cmdstats::record(cmd, 0, cmdstats::Outcome::Rejected);
    if exec {
        // As Redis's execCommandAbort: the transaction is discarded.
        ctx.r.error(&format!(
            "EXECABORT Transaction discarded because of: {}",
            evict::OOM
        ));
        ctx.client.multi = None;
        txn::unwatch_all(ctx);
    } else {
        ctx.r.error(evict::OOM);
        if let Some(m) = &mut ctx.client.multi {
            m.dirty = true;
        }
    }
    true
}

/// Write commands Redis propagates as rewritten effects rather than as
/// sent: relative TTLs made absolute, random or blocking pops made
/// explicit, float increments made exact. Their handlers log exactly that.
fn own_effects(cmd: &table::Cmd, args: &Args) -> bool {
    match cmd.name {
        "incrbyfloat" | "hincrbyfloat" | "setex" | "psetex" | "getset" | "getdel" | "getex"
        | "expire" | "pexpire" | "expireat" | "pexpireat" | "spop" | "lmpop" | "zmpop"
        | "blpop" | "brpop" | "blmove" | "brpoplpush" | "bzpopmin" | "bzpopmax" | "bzmpop"
        | "blmpop" | "restore" | "restore-asking" | "migrate" => true,
        // Ours read their sources and write their result under different
        // locks: the result, not the operation, keeps a replica equal.
        "sinterstore" | "sunionstore" | "sdiffstore" | "zunionstore" | "zinterstore"
        | "zdiffstore" | "zrangestore" | "sort" | "bitop" | "georadius" | "georadiusbymember"
        | "geosearchstore" => true,
        // IDs and approximate trims are logged as they turned out.
        "xadd" | "xtrim" => true,
        // Claims go out as idempotent XCLAIM … FORCE JUSTID, per entry.
        "xclaim" | "xautoclaim" | "xreadgroup" => true,
        // SET with a relative (or seconds) expiry becomes SET … PXAT.
        "set" => args
            .iter()
            .skip(3)
            .any(|t| eq_ic(t, "EX") || eq_ic(t, "PX") || eq_ic(t, "EXAT") || eq_ic(t, "PXAT")),
        _ => false,
    }
}

/// Writes (and PING) while the last background save or AOF write failed
/// (`-MISCONF`). Replies and returns true when refused. Our master's
/// commands are applied (see [`replica_disk_error`]).
fn disk_error_refuses(ctx: &mut Ctx, cmd: &'static table::Cmd, obey: bool) -> bool {
    use std::sync::atomic::Ordering;
    let hot = &ctx.srv.hot;
    if !hot.rdb_write_block.load(Ordering::Relaxed)
        && !hot.aof_write_block.load(Ordering::Relaxed)
        && !hot.aof_fsync_block.load(Ordering::Relaxed)
    {
        return false;
    }
    let write = cmd.name == "ping"
        || cmd.is_write()
        || (cmd.name == "exec" && queued_flags(ctx) & table::flags::WRITE != 0);
    match crate::persistence::write_refusal(ctx.srv) {
        Some(_) if write && obey => {
            if ctx.srv.repl.is_replica() {
                replica_disk_error(ctx.srv, cmd.name == "ping");
            }
            false
        }
        Some(err) if write => {
            reject(ctx, cmd, &err);
            true
        }
        _ => false,
    }
}

/// A write from our master while we cannot persist: as Redis, the replica
/// stops rather than let its data and its files part, unless
/// replica-ignore-disk-write-errors says to go on (then it says so in the
/// log, once in 10 s; a PING only logs).
fn replica_disk_error(srv: &Shared, ping: bool) {
    use std::sync::atomic::{AtomicI64, Ordering};
    static LAST_LOG_MS: AtomicI64 = AtomicI64::new(0);
    if !ping && !srv.config.read().flag("replica-ignore-disk-write-errors") {
        crate::crashlog::server_panic("Replica was unable to write command to disk.");
    }
    let now = crate::keyspace::now_ms();
    let last = LAST_LOG_MS.load(Ordering::Relaxed);
    if now > last + 10_000
        && LAST_LOG_MS
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    {
        tracing::warn!("Replica is applying a command even though it is unable to write to disk.");
    }
}

/// Writes a replica does not take from its clients (`-READONLY`), and
/// writes a master takes only with enough good replicas (`-NOREPLICAS`,
/// `min-replicas-to-write`). Replies and returns true when refused.
fn replication_refuses(ctx: &mut Ctx, cmd: &'static table::Cmd, args: &Args) -> bool {
    use std::sync::atomic::Ordering;
    let repl = &ctx.srv.repl;
    let replica = repl.is_replica();
    let min_good = repl.min_good.load(Ordering::Relaxed);
    let loading = repl.loading.load(Ordering::Relaxed);
    // Queued commands were checked with EXEC: a transaction that makes
    // the node a replica still runs to its end, as in Redis. The AOF's
    // own commands are what is loading.
    if (!replica && min_good == 0 && !loading) || ctx.client.in_exec || ctx.client.loading {
        return false;
    }
    // While a dataset loads (a replica's from its master, or any node's
    // files at start), only what Redis marks `loading` runs (INFO,
    // CONFIG, …); the rest is told to come back.
    if loading && !meta::has_flag(cmd.name, "loading") {
        reject(ctx, cmd, LOADING);
        return true;
    }
    let exec = cmd.name == "exec";
    // While the snapshot loads aside, the old data is served, but not to
    // what Redis marks `no_async_loading` (REPLICAOF, SYNC, …).
    if replica && repl.async_loading.load(Ordering::Relaxed) {
        let denied = if exec {
            queued_any(ctx, |name| meta::has_flag(name, "no_async_loading"))
        } else {
            meta::has_flag(cmd.name, "no_async_loading")
        };
        if denied {
            reject(ctx, cmd, LOADING);
            return true;
        }
    }
    // A script or function that declared its flags is what they say
    // (`no-writes`, `allow-stale`) in place of EVAL's or FCALL's own.
    let flags = scripting::effective_flags(ctx.srv, cmd, args);
    if replica && !ctx.srv.config.read().flag("replica-serve-stale-data") {
        // A replica cut off from its master answers only what may be stale.
        let stale_ok = if exec {
            queued_flags_all(ctx, table::flags::STALE)
        } else {
            flags & table::flags::STALE != 0
        };
        let down = repl
            .state
            .lock()
            .master
            .as_ref()
            .is_some_and(|m| m.state != crate::replication::LinkState::Connected);
        if down && !stale_ok {
            reject(
                ctx,
                cmd,
                "MASTERDOWN Link with MASTER is down and replica-serve-stale-data is set to 'no'.",
            );
            return true;
        }
    }
    let write =
        flags & table::flags::WRITE != 0 || (exec && queued_flags(ctx) & table::flags::WRITE != 0);
    if !write {
        return false;
    }
    let err = if replica {
        if !repl.read_only.load(Ordering::Relaxed) {
            return false;
        }
        "READONLY You can't write against a read only replica."
    } else {
        if !not_enough_replicas(ctx.srv) {
            return false;
        }
        "NOREPLICAS Not enough good replicas to write."
    };
    reject(ctx, cmd, err);
    true
}

/// A master short of `min-replicas-to-write` good replicas takes no
/// writes.
pub fn not_enough_replicas(srv: &Shared) -> bool {
    use std::sync::atomic::Ordering;
    let repl = &srv.repl;
    let min_good = repl.min_good.load(Ordering::Relaxed);
    if min_good == 0 || repl.is_replica() {
        return false;
    }
    let max_lag = srv.config.read().int("min-replicas-max-lag");
    let good = crate::replication::master::good_replicas(
        &repl.state.lock(),
        crate::keyspace::now_ms(),
        max_lag,
    );
    max_lag > 0 && (good as i64) < min_good
}

/// Refuses `cmd` with `err`: EXEC discards its transaction, a command
/// being queued marks it failed.
fn reject(ctx: &mut Ctx, cmd: &'static table::Cmd, err: &str) {
    cmdstats::record(cmd, 0, cmdstats::Outcome::Rejected);
    if cmd.name == "exec" {
        ctx.r.error(&format!(
            "EXECABORT Transaction discarded because of: {err}"
        ));
        ctx.client.multi = None;
        txn::unwatch_all(ctx);
    } else {
        ctx.r.error(err);
        if let Some(m) = &mut ctx.client.multi {
            m.dirty = true;
        }
    }
}

/// Whether any queued command's name (`container|sub` for subcommands,
/// as the metadata table names them) satisfies `pred`.
fn queued_any(ctx: &Ctx, pred: impl Fn(&str) -> bool) -> bool {
    let Some(m) = &ctx.client.multi else {
        return false;
    };
    m.queue.iter().any(|q| {
        let a = q.args();
        match table::lookup(a.get(0)) {
            Some(c) if !c.subs.is_empty() && a.len() >= 2 => {
                table::lookup_sub(c, a.get(1)).is_some_and(|s| pred(s.name))
            }
            Some(c) => pred(c.name),
            None => false,
        }
    })
}

/// Whether every queued command has all of `flags`.
fn queued_flags_all(ctx: &Ctx, flags: u32) -> bool {
    let Some(m) = &ctx.client.multi else {
        return true;
    };
    m.queue.iter().all(|q| {
        let a = q.args();
        let f = match table::lookup(a.get(0)) {
            Some(c) if !c.subs.is_empty() && a.len() >= 2 => {
                table::lookup_sub(c, a.get(1)).map_or(0, |s| s.flags)
            }
            Some(c) => scripting::effective_flags(ctx.srv, c, &a),
            None => 0,
        };
        f & flags == flags
    })
}

/// Runs one command: lookup, checks, MULTI queuing, then the handler.
pub fn dispatch(ctx: &mut Ctx, args: &Args) -> Option<&'static table::Cmd> {
    let Some(cmd) = resolve(ctx, args) else {
        if let Some(m) = &mut ctx.client.multi {
            m.dirty = true;
        }
        return None;
    };
    if !ctx.client.authenticated
        && cmd.flags & table::flags::NO_AUTH == 0
        && ctx.srv.acl.auth_required()
    {
        ctx.r.error("NOAUTH Authentication required.");
        cmdstats::record(cmd, 0, cmdstats::Outcome::Rejected);
        return None;
    }
    // ACL: only users short of some permission (or after an ACL change)
    // pay for the check. A command refused inside MULTI is refused below.
    if (!ctx.client.acl_open || ctx.client.acl_gen != ctx.srv.acl.generation())
        && !(ctx.client.multi.is_some() && cmd.flags & table::flags::NO_MULTI != 0)
    {
        let refused = if ctx.client.in_exec {
            acl::exec_refusal(ctx, cmd, args)
        } else {
            acl::refusal(ctx, cmd, args)
        };
        if let Some(err) = refused {
            // An empty refusal: the user is gone and the connection closes.
            if !err.is_empty() {
                reject(ctx, cmd, &err);
            }
            return None;
        }
    }
    if let Some(busy) = scripting::busy_refusal(ctx, cmd) {
        // EXEC refused for a busy script discards its transaction.
        reject(ctx, cmd, busy);
        return None;
    }
    if ctx.client.proto == crate::resp::Proto::Resp2
        && ctx.client.subscribed()
        && !pubsub::allowed_while_subscribed(cmd.name)
    {
        ctx.r.error(&format!(
            "ERR Can't execute '{}': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context",
            cmd.name
        ));
        return None;
    }
    // Our master's commands are obeyed: no redirection, no refusal.
    let obey = ctx.client.is_master;
    let mut routed = None;
    if let Some(cl) = ctx.srv.cluster.get().filter(|_| !obey) {
        let redirect = match route_command(ctx, cl, cmd, args) {
            Ok(r) => {
                routed = r;
                None
            }
            Err(r) => Some(r),
        };
        if let Some(redirect) = redirect {
            ctx.r.error(&redirect.message());
            if cmd.name == "exec" {
                ctx.client.multi = None;
                txn::unwatch_all(ctx);
            } else if let Some(m) = &mut ctx.client.multi {
                m.dirty = true;
            }
            if ctx.client.multi.is_none() {
                ctx.client.asking = false;
            }
            return None;
        }
    }
    // As Redis: connections past maxmemory-clients are closed before
    // keys are evicted, counting what this batch has replied so far; one
    // that closed itself runs nothing more.
    if crate::server::clientmem::enabled()
        && !ctx.client.in_exec
        && crate::server::clientmem::account_running(
            &ctx.client.info,
            ctx.r.out.len(),
            ctx.r.out.capacity(),
        )
    {
        crate::server::clientmem::evict(ctx.srv);
        if ctx
            .client
            .info
            .killed
            .load(std::sync::atomic::Ordering::Relaxed)
        {
            return None;
        }
    }
    if !obey && oom_rejected(ctx, cmd) {
        return None;
    }
    // A failed background save or AOF write stops writes, and PING, as in
    // Redis.
    if disk_error_refuses(ctx, cmd, obey) {
        return None;
    }
    if !obey && replication_refuses(ctx, cmd, args) {
        return None;
    }
    // A replica's link, and a MONITOR client (flagged as a replica in
    // Redis), must not reach the keyspace: a replica is never paused.
    if (ctx.client.monitor || ctx.client.is_replica)
        && cmd.flags & (table::flags::READONLY | table::flags::WRITE | table::flags::MAY_REPLICATE)
            != 0
    {
        reject(ctx, cmd, "ERR Replica can't interact with the keyspace");
        return None;
    }
    if ctx.client.multi.is_some() && cmd.flags & table::flags::NO_MULTI != 0 {
        ctx.r.error("ERR Command not allowed inside a transaction");
        if let Some(m) = &mut ctx.client.multi {
            m.dirty = true;
        }
        return None;
    }
    // A command that may write counts as in flight from before its pause
    // check until its handler returns: a pause's drain then waits for it.
    let srv: &Arc<Shared> = ctx.srv;
    let admitted = (cmd.flags & (table::flags::WRITE | table::flags::MAY_REPLICATE) != 0
        || cmd.name == "exec")
        .then(|| srv.pause.admit());
    if let Some(held_by) = crate::server::pause::must_wait(ctx.srv, ctx.client, cmd, args) {
        ctx.client.postponed = true;
        ctx.actions.push(Action::Postpone {
            args: args.to_owned(),
            cmd: cmd.name,
            held_by,
        });
        return None;
    }
    if ctx.client.multi.is_some() && cmd.flags & table::flags::NO_QUEUE == 0 {
        if let Some(m) = &mut ctx.client.multi {
            m.mem += crate::server::clientmem::queued_cost(args.iter().map(|a| a.len()));
            m.queue.push(args.to_owned());
        }
        ctx.r.simple("QUEUED");
        return Some(cmd);
    }
    if admitted.is_some() {
        crate::server::pause::admission_delay();
    }
    if scripting::waits_for_script(ctx, cmd, args) {
        ctx.client.postponed = true;
        ctx.actions.push(Action::WaitScript {
            args: args.to_owned(),
        });
        return None;
    }
    if let Some(rt) = routed.filter(|_| holds_its_slot(ctx, cmd)) {
        // The routing above ran without the slot's lock: a MIGRATE may
        // have moved the command's key since (the key was here, a write
        // would now make a new one nobody reads). Redis checks and runs in
        // one go; here the slot is locked until the handler returns, and
        // the command routed again unless neither the route nor, for a
        // slot in migration, the keys could have changed its way.
        ctx.locks.hold_routed(rt.slot);
        let again = match ctx.srv.cluster.get() {
            Some(cl) if rt.open || cl.route.load().version != rt.version => {
                cluster_redirect(ctx, cl, cmd, args)
            }
            _ => None,
        };
        if let Some(r) = again {
            ctx.locks.release();
            ctx.r.error(&r.message());
            ctx.client.asking = false;
            return None;
        }
        invoke(ctx, cmd, args);
        ctx.locks.release();
        return Some(cmd);
    }
    invoke(ctx, cmd, args);
    Some(cmd)
}

/// `replica-read-only no` on a replica: clients write here too.
fn writable_replica(srv: &Shared) -> bool {
    use std::sync::atomic::Ordering::Relaxed;
    srv.repl.is_replica() && !srv.repl.read_only.load(Relaxed)
}

/// A client's write on a writable replica left its keys with a TTL: the
/// replica must expire those itself (see `replication::own_expires`).
fn remember_own_expires(ctx: &mut Ctx, cmd: &'static table::Cmd, args: &Args) {
    let mut keys: Vec<&[u8]> = Vec::new();
    cmd.each_key(args, |k| {
        keys.push(k);
        true
    });
    let db = ctx.locks.db.index;
    for k in keys {
        if ctx.locks.key(k).expire_of(k).is_some() {
            ctx.srv.repl.own_expires.remember(db, k);
        }
    }
}

/// Whether a routed command runs holding its slot: not inside EXEC or a
/// script (their locks are held already), and not EXEC, scripts and
/// MIGRATE, which lock their slots themselves, nor WATCH.
fn holds_its_slot(ctx: &Ctx, cmd: &'static table::Cmd) -> bool {
    !ctx.client.in_exec
        && !ctx.locks.holding()
        && cmd.flags & table::flags::NO_MULTI == 0
        && !matches!(
            cmd.name,
            "exec"
                | "migrate"
                | "eval"
                | "evalsha"
                | "eval_ro"
                | "evalsha_ro"
                | "fcall"
                | "fcall_ro"
        )
}

/// Runs an admitted command's handler with everything around it: what it
/// propagates, hit and miss counts, tracking, stats, the slow log, latency
/// and MONITOR. Scripts' `redis.call` comes in here too.
pub fn invoke(ctx: &mut Ctx, cmd: &'static table::Cmd, args: &Args) {
    let start = ctx.r.out.len();
    // The TSC-based clock: two reads per command, nested ones included.
    let t0 = quanta::Instant::now();
    // Redis counts hits and misses of lookups made to read: those of
    // read-only commands, and of GETDEL/GETEX, which look their key up
    // for reading. OBJECT's misses are not announced.
    // What a write propagates: the command as sent, or (a rewrite) the
    // effects its handler logs.
    let verbatim = cmd.is_write() && ctx.srv.log.is_active() && !own_effects(cmd, args);
    if verbatim {
        crate::persistence::effects::begin_verbatim(ctx.client.db, args.len(), args.iter());
    }
    let reads = cmd.flags & table::flags::READONLY != 0 || matches!(cmd.name, "getdel" | "getex");
    if reads {
        use crate::keyspace::lookups::{count_reads, Mode};
        let outer = count_reads(if cmd.name.starts_with("object") {
            Mode::CountQuiet
        } else {
            Mode::Count
        });
        (cmd.handler)(ctx, args);
        count_reads(outer);
        let (hits, misses) = crate::keyspace::lookups::take();
        ctx.client.pending_hits += hits;
        ctx.client.pending_misses += misses;
    } else {
        (cmd.handler)(ctx, args);
        if cmd.is_write() && !ctx.client.is_master && writable_replica(ctx.srv) {
            remember_own_expires(ctx, cmd, args);
        }
        // Under maxmemory, the next command's eviction check must count
        // what this write allocated.
        if cmd.is_write()
            && ctx
                .srv
                .hot
                .maxmemory
                .load(std::sync::atomic::Ordering::Relaxed)
                != 0
        {
            crate::memory::forget_recent();
        }
    }
    if verbatim {
        crate::persistence::effects::end_verbatim();
    } else if cmd.name == "publish" && ctx.srv.cluster.get().is_none() {
        // Standalone PUBLISH reaches replicas (Redis 7.0).
        ctx.srv
            .log
            .append_repl_command(ctx.client.db, &args.iter().collect::<Vec<_>>());
    }
    // A script's reads are tracked for its caller, as its declared keys
    // (see `command::scripting`); EVAL_RO and FCALL_RO track nothing of
    // their own.
    if cmd.flags & table::flags::READONLY != 0 && !ctx.client.in_script {
        track_read(ctx, cmd, args);
    }
    // ASKING lasts for one command (or a whole transaction).
    if ctx.client.asking && ctx.client.multi.is_none() && cmd.name != "asking" {
        ctx.client.asking = false;
    }
    let usec = t0.elapsed().as_micros() as u64;
    ctx.client.last_elapsed_us = usec;
    // EXEC's own reply is an array; its commands were counted one by one.
    let failed =
        ctx.r.out.get(start) == Some(&b'-') || std::mem::take(&mut ctx.client.count_as_failed);
    let outcome = if failed {
        cmdstats::Outcome::Failed
    } else {
        cmdstats::Outcome::Ok
    };
    // A blocking command counts once, when it ends (as in Redis): not when
    // it blocks, nor on a wake-up that found nothing; a timeout is counted
    // by the connection. A command handed to a blocking thread counts when
    // that ends.
    let blocked = matches!(
        ctx.actions.last(),
        Some(Action::Block(_)) | Some(Action::Offload(_)) | Some(Action::Debug(_))
    );
    let idle_retry = ctx.client.block_retry && ctx.r.out.len() == start;
    if !blocked && !idle_retry {
        cmdstats::record(cmd, usec, outcome);
    }
    slowlog(ctx, cmd, args, usec);
    let event = if cmd.flags & table::flags::FAST != 0 {
        "fast-command"
    } else {
        "command"
    };
    ctx.srv
        .latency
        .observe(event, usec / 1000, ctx.locks.now / 1000);
    // As Redis: after the command ran, and never for admin commands.
    if ctx
        .srv
        .has_monitors
        .load(std::sync::atomic::Ordering::Relaxed)
        && cmd.flags & table::flags::ADMIN == 0
        && !scripting::is_script_command(cmd)
    {
        let redact = redacted_args(cmd, args);
        crate::server::conn::feed_monitor(ctx.srv, ctx.client, args, ctx.locks.now, &redact);
    }
}

/// Client-side caching: a tracking client (default mode) remembers the
/// keys its read-only commands read, unless OPTIN/OPTOUT and CLIENT CACHING
/// say otherwise. Costs one relaxed load for other clients.
fn track_read(ctx: &mut Ctx, cmd: &table::Cmd, args: &Args) {
    // One relaxed load for clients that do not track.
    let f = ctx
        .client
        .info
        .trk
        .load(std::sync::atomic::Ordering::Relaxed);
    if f & crate::server::tracking::flag::ON == 0 || scripting::is_script_command(cmd) {
        return;
    }
    let mut keys = Vec::new();
    cmd.each_key(args, |k| {
        keys.push(k);
        true
    });
    track_keys(ctx, &keys);
}

/// Remembers `keys` for the client when it tracks in default mode.
pub fn track_keys(ctx: &mut Ctx, keys: &[&[u8]]) {
    use crate::server::tracking::flag;
    let f = ctx
        .client
        .info
        .trk
        .load(std::sync::atomic::Ordering::Relaxed);
    if f & flag::ON == 0 || f & flag::BCAST != 0 {
        return;
    }
    let caching = ctx.client.caching;
    if (f & flag::OPTIN != 0 && !caching) || (f & flag::OPTOUT != 0 && caching) {
        return;
    }
    let id = ctx.client.id;
    let t = &ctx.srv.tracking;
    for k in keys {
        t.remember(id, k);
    }
}

/// Logs a slow command (each of EXEC's commands on its own, never EXEC).
fn slowlog(ctx: &Ctx, cmd: &table::Cmd, args: &Args, usec: u64) {
    let slower = ctx
        .srv
        .hot
        .slowlog_slower_than
        .load(std::sync::atomic::Ordering::Relaxed);
    if slower < 0 || (usec as i64) < slower || cmd.name == "exec" {
        return;
    }
    let redact = redacted_args(cmd, args);
    let shown = args.iter().enumerate().map(|(i, a)| {
        if redact.contains(&i) {
            b"(redacted)".as_slice()
        } else {
            a
        }
    });
    ctx.srv.slowlog.lock().push(
        shown.collect::<Vec<_>>().into_iter(),
        usec as i64,
        ctx.client.info.addr.to_string(),
        ctx.client.info.name.lock().clone().unwrap_or_default(),
    );
}

/// Arguments MONITOR and SLOWLOG show as `(redacted)`: passwords.
pub fn redacted_args(cmd: &table::Cmd, args: &Args) -> Vec<usize> {
    match cmd.name {
        "auth" => (1..args.len()).collect(),
        // The user name and every rule (passwords are among them).
        "acl|setuser" => (2..args.len()).collect(),
        // The values of the settings Redis marks sensitive.
        "config|set" => (2..args.len())
            .step_by(2)
            .filter(|&i| {
                ["masteruser", "masterauth", "requirepass"]
                    .iter()
                    .any(|n| eq_ic(args.get(i), n))
            })
            .map(|i| i + 1)
            .filter(|&i| i < args.len())
            .collect(),
        "hello" => (2..args.len())
            .find(|&i| eq_ic(args.get(i), "AUTH"))
            .map(|i| vec![i + 1, i + 2])
            .unwrap_or_default(),
        "migrate" => {
            let mut v = Vec::new();
            for i in 6..args.len() {
                if eq_ic(args.get(i), "KEYS") {
                    break;
                }
                if eq_ic(args.get(i), "AUTH") {
                    v.push(i + 1);
                } else if eq_ic(args.get(i), "AUTH2") {
                    v.extend([i + 1, i + 2]);
                }
            }
            v
        }
        _ => Vec::new(),
    }
}
