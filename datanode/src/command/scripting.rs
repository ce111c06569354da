//! EVAL, EVALSHA, EVAL_RO, EVALSHA_RO and SCRIPT.
//!
//! Atomicity without a global lock: a script holds the slots of the keys
//! it declares for its whole run, the way EXEC holds its transaction's. A
//! key it did not declare adds its slot to the held set: a slot above all
//! held ones is locked in the global order; one below is only tried, since
//! waiting could deadlock. If that try fails before the script changed
//! anything, the run is discarded and redone holding every slot it asked
//! for (after a few tries, the whole database). After a change it waits a
//! bounded time, then fails the command.
//!
//! A script runs on a blocking thread while its connection waits (see
//! `offload`). Past `busy-reply-threshold` it registers as timed out:
//! other clients get -BUSY and SCRIPT KILL can stop it.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::table::{self, flags};
use super::{eq_ic, int_arg, Args, Ctx};
use crate::keyspace::key_slot;
use crate::persistence::effects;
use crate::resp::{Proto, Reply};
use crate::scripting::functions::FunctionRef;
use crate::scripting::{self, flag, Host, KillResult, Outcome, Script, TimedOut};
use crate::server::client::ScriptDebug;
use crate::server::shared::Shared;

const NOREPLICAS: &str = "NOREPLICAS Not enough good replicas to write.";
pub const NOSCRIPT: &str = "NOSCRIPT No matching script. Please use EVAL.";
pub const BUSY_EVAL: &str =
    "BUSY Redis is busy running a script. You can only call SCRIPT KILL or SHUTDOWN NOSAVE.";
const BUSY_FUNCTION: &str =
    "BUSY Redis is busy running a script. You can only call FUNCTION KILL or SHUTDOWN NOSAVE.";
/// The stop message that means "redo the run holding more slots".
const RESTART: &str = "\u{0}restart";
/// The stop message that means "redo the run off the command thread".
const MOVE: &str = "\u{0}move";
/// How long a script that already wrote waits for a slot below its own.
const OUT_OF_ORDER_WAIT: Duration = Duration::from_secs(2);
/// Runs redone for lock order before holding the whole database.
const RESTARTS_BEFORE_WHOLE_DB: usize = 2;

/// Commands Redis 7.0 refuses inside scripts (its `noscript` flag).
const NOT_IN_SCRIPTS: &[&str] = &[
    "acl",
    "auth",
    "bgrewriteaof",
    "bgsave",
    "blmove",
    "blpop",
    "brpop",
    "brpoplpush",
    "bzpopmax",
    "bzpopmin",
    "client",
    "cluster|reset",
    "config",
    "debug",
    "discard",
    "eval",
    "eval_ro",
    "evalsha",
    "evalsha_ro",
    "exec",
    "failover",
    "fcall",
    "fcall_ro",
    "function",
    "hello",
    "latency",
    "module",
    "monitor",
    "multi",
    "psubscribe",
    "psync",
    "punsubscribe",
    "quit",
    "replconf",
    "replicaof",
    "reset",
    "role",
    "save",
    "script",
    "shutdown",
    "slaveof",
    "ssubscribe",
    "subscribe",
    "sunsubscribe",
    "sync",
    "unsubscribe",
    "unwatch",
    "wait",
    "watch",
];

/// EVAL and FCALL in their forms: they show in MONITOR before the
/// commands they run, and track keys only through them.
pub fn is_script_command(cmd: &table::Cmd) -> bool {
    matches!(
        cmd.name,
        "eval" | "evalsha" | "eval_ro" | "evalsha_ro" | "fcall" | "fcall_ro"
    )
}

/// Whether an EVAL or FCALL writes, when its script declares flags
/// (a shebang, or a function's flags): None when the command's own flags
/// decide (no flags declared, an unknown script, another command).
pub fn declared_writes(srv: &Shared, cmd: &table::Cmd, a: &Args) -> Option<bool> {
    declared_flags(srv, cmd, a).map(|f| f & flag::NO_WRITES == 0)
}

/// A command's flags as Redis's getCommandFlags gives them: for a script
/// or function that declared its flags, `write`, `denyoom` and `stale`
/// come from them (and `may-replicate` goes).
pub fn effective_flags(srv: &Shared, cmd: &table::Cmd, a: &Args) -> u32 {
    let Some(f) = declared_flags(srv, cmd, a) else {
        return cmd.flags;
    };
    let mut out =
        cmd.flags & !(flags::STALE | flags::DENYOOM | flags::WRITE | flags::MAY_REPLICATE);
    if f & (flag::ALLOW_OOM | flag::NO_WRITES) == 0 {
        out |= flags::DENYOOM;
    }
    if f & flag::NO_WRITES == 0 {
        out |= flags::WRITE;
    }
    if f & flag::ALLOW_STALE != 0 {
        out |= flags::STALE;
    }
    out
}

/// The flags a script or function declared (none for a script without a
/// shebang, or one not found): in their place go the command's own
/// `write`, `stale` and `denyoom`, as Redis's getCommandFlags decides.
pub fn declared_flags(srv: &Shared, cmd: &table::Cmd, a: &Args) -> Option<u32> {
    if a.len() < 2 {
        return None;
    }
    let flags = match cmd.name {
        "eval" | "eval_ro" => match srv.scripts.cache.get(&scripting::sha1_hex(a.get(1))) {
            Some(s) => s.flags,
            None => scripting::shebang_flags(a.get(1)).ok()?.0,
        },
        "evalsha" | "evalsha_ro" => srv.scripts.cache.get(a.get(1))?.flags,
        "fcall" | "fcall_ro" => srv.scripts.functions.find(a.get(1))?.info().flags,
        _ => return None,
    };
    (flags & flag::EVAL_COMPAT == 0).then_some(flags)
}

/// Whether `cmd` needs a slot a script running off the command thread
/// holds (while no script is past the busy threshold: then -BUSY
/// answers instead). EXEC is checked for its whole queue.
pub fn waits_for_script(ctx: &Ctx, cmd: &'static table::Cmd, a: &Args) -> bool {
    let held = &ctx.srv.scripts.held;
    // Only a client connection can wait: our master's stream, a slot
    // import, the AOF and a woken blocked command run in order, here.
    let c = &ctx.client;
    if !held.any()
        || c.in_exec
        || c.in_script
        || c.is_master
        || c.loading
        || c.block_retry
        || ctx.srv.scripts.busy()
    {
        return false;
    }
    let (mut slots, mut dbs) = (Vec::new(), Vec::new());
    let mut db = ctx.client.db;
    let ks = &ctx.srv.ks;
    if cmd.name == "exec" {
        let Some(m) = &ctx.client.multi else {
            return false;
        };
        for q in &m.queue {
            let qa = q.args();
            let Some(mut qc) = table::lookup(qa.get(0)) else {
                continue;
            };
            if !qc.subs.is_empty() && qa.len() >= 2 {
                if let Some(sc) = table::lookup_sub(qc, qa.get(1)) {
                    qc = sc;
                }
            }
            super::txn::slots_of(ks, qc, &qa, &mut db, &mut slots, &mut dbs);
        }
    } else {
        super::txn::slots_of(ks, cmd, a, &mut db, &mut slots, &mut dbs);
    }
    held.blocks(&slots, &dbs)
}

/// Whether a script running off the command thread holds a slot the
/// command `a` (run in `db`) needs. A blocked command woken by a script's
/// push waits for the script to end this way, asynchronously: on the lock
/// it would stall every client of its thread (Redis serves blocked
/// clients once the script has returned).
pub fn held_by_script(srv: &Shared, db: usize, a: &Args) -> bool {
    let held = &srv.scripts.held;
    if !held.any() {
        return false;
    }
    let Some(mut cmd) = table::lookup(a.get(0)) else {
        return false;
    };
    if !cmd.subs.is_empty() && a.len() >= 2 {
        if let Some(sub) = table::lookup_sub(cmd, a.get(1)) {
            cmd = sub;
        }
    }
    let (mut slots, mut dbs) = (Vec::new(), Vec::new());
    let mut db = db;
    super::txn::slots_of(&srv.ks, cmd, a, &mut db, &mut slots, &mut dbs);
    held.blocks(&slots, &dbs)
}

/// Shows the script command in MONITOR ahead of what it runs.
fn feed_monitors(ctx: &Ctx, a: &Args) {
    if ctx.srv.has_monitors.load(Ordering::Relaxed) {
        crate::server::conn::feed_monitor(ctx.srv, ctx.client, a, ctx.locks.now, &[]);
    }
}

fn not_in_scripts(cmd: &table::Cmd) -> bool {
    // Per redis.call: one pointer lookup in a set built once.
    static REFUSED: std::sync::OnceLock<std::collections::HashSet<usize>> =
        std::sync::OnceLock::new();
    let set = REFUSED.get_or_init(|| {
        let listed = |n: &str| NOT_IN_SCRIPTS.binary_search(&n).is_ok();
        table::all()
            .iter()
            .flat_map(|c| std::iter::once(c).chain(c.subs.iter()))
            .filter(|c| {
                let parent = c.name.split('|').next().unwrap_or(c.name);
                listed(c.name) || (listed(parent) && !c.name.starts_with("cluster"))
            })
            .map(|c| c as *const table::Cmd as usize)
            .collect()
    });
    set.contains(&(cmd as *const table::Cmd as usize))
}

/// The -BUSY reply for a command arriving while a script runs past the
/// threshold, or None when it may run (Redis's `allow-busy` commands).
pub fn busy_refusal(ctx: &Ctx, cmd: &table::Cmd) -> Option<&'static str> {
    let scripts = &ctx.srv.scripts;
    if !scripts.busy() {
        return None;
    }
    let allowed = matches!(
        cmd.name,
        "auth"
            | "hello"
            | "quit"
            | "reset"
            | "multi"
            | "discard"
            | "watch"
            | "unwatch"
            | "replconf"
            | "shutdown"
            | "script|kill"
            | "function|kill"
            | "function|stats"
    );
    if allowed {
        return None;
    }
    Some(if scripts.busy_kind().unwrap_or(true) {
        BUSY_EVAL
    } else {
        BUSY_FUNCTION
    })
}

pub fn eval(ctx: &mut Ctx, a: &Args) {
    eval_generic(ctx, a, false, false)
}

pub fn evalsha(ctx: &mut Ctx, a: &Args) {
    eval_generic(ctx, a, true, false)
}

pub fn eval_ro(ctx: &mut Ctx, a: &Args) {
    eval_generic(ctx, a, false, true)
}

pub fn evalsha_ro(ctx: &mut Ctx, a: &Args) {
    eval_generic(ctx, a, true, true)
}

/// EVAL's keys: `numkeys` names after it (COMMAND GETKEYS and routing).
pub fn eval_keys(a: &Args) -> Vec<usize> {
    match crate::resp::parse_i64(a.get(2)) {
        Some(n) if n > 0 && (n as usize) <= a.len().saturating_sub(3) => {
            (3..3 + n as usize).collect()
        }
        _ => Vec::new(),
    }
}

fn eval_generic(ctx: &mut Ctx, a: &Args, by_sha: bool, ro: bool) {
    feed_monitors(ctx, a);
    let debug = ctx.client.script_debug;
    if debug != ScriptDebug::Off && ctx.client.multi.is_none() && !ctx.client.in_exec {
        if by_sha {
            if a.get(1).len() != 40 {
                return ctx.r.error(NOSCRIPT);
            }
            return ctx
                .r
                .error("ERR Please use EVAL instead of EVALSHA for debugging");
        }
        ctx.client.script_debug = ScriptDebug::Off;
        // A debugging session ends the connection, as in Redis. When it
        // cannot start (a bad argument, a compile error), the end mark
        // still comes first.
        ctx.client.close_after_reply = true;
        let start = ctx.r.out.len();
        eval_checked(ctx, a, by_sha, ro, debug);
        if !matches!(ctx.actions.last(), Some(super::Action::Debug(_))) {
            ctx.r.out.splice(start..start, END_SESSION.iter().copied());
        }
        return;
    }
    eval_checked(ctx, a, by_sha, ro, ScriptDebug::Off)
}

/// What a debugging session sends last.
const END_SESSION: &[u8] = b"*1\r\n+<endsession>\r\n";

fn eval_checked(ctx: &mut Ctx, a: &Args, by_sha: bool, ro: bool, debug: ScriptDebug) {
    let Some(numkeys) = int_arg(ctx, a.get(2)) else {
        return;
    };
    if numkeys > (a.len() - 3) as i64 {
        return ctx
            .r
            .error("ERR Number of keys can't be greater than number of args");
    }
    if numkeys < 0 {
        return ctx.r.error("ERR Number of keys can't be negative");
    }
    let script = if by_sha {
        match ctx.srv.scripts.cache.get(a.get(1)) {
            Some(s) => s,
            None => return ctx.r.error(NOSCRIPT),
        }
    } else {
        let sha = scripting::sha1_hex(a.get(1));
        match ctx.srv.scripts.cache.get(&sha) {
            Some(s) => s,
            None => match create(ctx, a.get(1)) {
                Ok(s) => s,
                Err(e) => return ctx.r.error_bytes(&e),
            },
        }
    };
    launch(ctx, a, Callee::Script(script), numkeys as usize, ro, debug);
}

pub fn fcall(ctx: &mut Ctx, a: &Args) {
    fcall_generic(ctx, a, false)
}

pub fn fcall_ro(ctx: &mut Ctx, a: &Args) {
    fcall_generic(ctx, a, true)
}

fn fcall_generic(ctx: &mut Ctx, a: &Args, ro: bool) {
    feed_monitors(ctx, a);
    let Some(f) = ctx.srv.scripts.functions.find(a.get(1)) else {
        return ctx.r.error("ERR Function not found");
    };
    let Some(numkeys) = crate::resp::parse_i64(a.get(2)) else {
        return ctx.r.error("ERR Bad number of keys provided");
    };
    if numkeys > (a.len() - 3) as i64 {
        return ctx
            .r
            .error("ERR Number of keys can't be greater than number of args");
    }
    if numkeys < 0 {
        return ctx.r.error("ERR Number of keys can't be negative");
    }
    launch(
        ctx,
        a,
        Callee::Function(f),
        numkeys as usize,
        ro,
        ScriptDebug::Off,
    );
}

/// What a run executes: a cached script (EVAL) or a library's function
/// (FCALL).
#[derive(Clone)]
enum Callee {
    Script(Arc<Script>),
    Function(FunctionRef),
}

impl Callee {
    fn flags(&self) -> u32 {
        match self {
            Callee::Script(s) => s.flags,
            Callee::Function(f) => f.info().flags,
        }
    }

    fn fast(&self) -> &std::sync::atomic::AtomicBool {
        match self {
            Callee::Script(s) => &s.fast,
            Callee::Function(f) => &f.info().fast,
        }
    }

    fn is_eval(&self) -> bool {
        matches!(self, Callee::Script(_))
    }
}

/// Runs `callee` with the keys and arguments after `numkeys`: here, or on
/// a blocking thread (see `offloadable`).
fn launch(ctx: &mut Ctx, a: &Args, callee: Callee, n: usize, ro: bool, debug: ScriptDebug) {
    let oom = out_of_memory(ctx);
    if let Err(e) = prepare(ctx, callee.flags(), ro, oom) {
        return ctx.r.error(&e);
    }
    let run = Run {
        ro,
        oom,
        inline_budget: None,
        debug,
    };
    if debug != ScriptDebug::Off {
        return offload(ctx, a, callee, n, run);
    }
    if !offloadable(ctx) {
        let _ = run_script(ctx, &callee, a, n, run);
        return;
    }
    // A script whose last run was short runs here, within a budget: past
    // it, a run that changed nothing is dropped and redone off the command
    // thread, where it can be answered around and killed.
    if callee.fast().load(Ordering::Relaxed) {
        let run = Run {
            inline_budget: Some(INLINE_BUDGET),
            ..run
        };
        if run_script(ctx, &callee, a, n, run) == Ran::Done {
            return;
        }
    }
    offload(ctx, a, callee, n, run);
}

/// The keys and the arguments of a script call `a` (EVAL, FCALL and the
/// like) declaring `n` keys.
fn split_call<'a>(a: &Args<'a>, n: usize) -> (Vec<&'a [u8]>, Vec<&'a [u8]>) {
    let keys = (3..3 + n).map(|i| a.get(i)).collect();
    let argv = (3 + n..a.len()).map(|i| a.get(i)).collect();
    (keys, argv)
}

/// Whether memory is over `maxmemory` as the script starts (after
/// evicting what the policy allows): its first write that may grow memory
/// is then refused, as Redis does.
fn out_of_memory(ctx: &Ctx) -> bool {
    use crate::server::evict;
    if ctx.client.is_master || ctx.client.loading {
        return false;
    }
    if ctx.srv.hot.maxmemory.load(Ordering::Relaxed) == 0 {
        return false;
    }
    evict::perform_evictions(ctx.srv, ctx.locks.now, true) == evict::Outcome::Fail
}

/// How long a script may run on the command thread before it moves off.
const INLINE_BUDGET: Duration = Duration::from_millis(2);

/// Whether a run replied, or left the work to a run off the command
/// thread.
#[derive(PartialEq, Eq)]
enum Ran {
    Done,
    Moved,
}

/// How one script run was asked for.
#[derive(Clone, Copy)]
struct Run {
    /// On the command thread: how long it may take before it moves off.
    inline_budget: Option<Duration>,
    /// EVAL_RO / EVALSHA_RO / FCALL_RO.
    ro: bool,
    /// Over maxmemory at the start.
    oom: bool,
    /// Under the Lua debugger, and how (SCRIPT DEBUG).
    debug: ScriptDebug,
}

/// A script of its own (not inside EXEC, not replayed from the AOF or our
/// master) runs on a blocking thread while its connection waits: the
/// command thread keeps serving everyone else, so a long script can be
/// answered with -BUSY around it and stopped by SCRIPT KILL. Only clients
/// of its keys' slots wait for it, on those slots' locks.
fn offloadable(ctx: &Ctx) -> bool {
    !ctx.client.in_exec
        && ctx.client.multi.is_none()
        && !ctx.client.loading
        && !ctx.client.is_master
        && ctx.client.reply_mode == crate::server::client::ReplyMode::On
        && tokio::runtime::Handle::try_current().is_ok()
}

fn offload(ctx: &mut Ctx, a: &Args, callee: Callee, n: usize, run: Run) {
    let cmd = table::lookup(a.get(0));
    let call = a.to_owned();
    let srv = ctx.srv.clone();
    let dbi = ctx.locks.db.index;
    let proto = ctx.client.proto;
    let (readonly, asking) = (ctx.client.readonly, ctx.client.asking);
    let addr = ctx.client.info.addr.clone();
    let laddr = ctx.client.info.laddr.clone();
    // The script acts for its caller: its reads are tracked, and its own
    // changes reported (or not, with NOLOOP), as the caller's.
    let (caller_id, caller_info, caching) =
        (ctx.client.id, ctx.client.info.clone(), ctx.client.caching);
    // Its commands are checked against the caller's ACL user.
    let user = ctx.client.user.clone();
    // A debugged run talks to its client while it runs: through the
    // connection, or (forked) on the connection's socket itself.
    let (console, link) = if run.debug == ScriptDebug::Sync {
        let (c, l) = super::debug_link();
        (Some(c), Some(l))
    } else {
        (None, None)
    };
    let socket =
        (run.debug == ScriptDebug::Forked).then(|| ctx.client.info.fd.load(Ordering::Relaxed));
    let limit = match ctx.srv.config.read().num("busy-reply-threshold") {
        n if n > 0 => Duration::from_millis(n as u64),
        _ => Duration::from_secs(5),
    };
    let job = super::Offloaded(Box::new(move || {
        let t0 = Instant::now();
        // The script's own client, as Redis runs scripts on one: the
        // caller's database and cluster flags, already authenticated.
        let mut client = crate::server::conn::new_client(&srv, addr, laddr);
        client.db = dbi;
        client.proto = proto;
        client.authenticated = true;
        client.set_acl_user(user);
        client.readonly = readonly;
        client.asking = asking;
        client.id = caller_id;
        client.info = caller_info;
        client.caching = caching;
        let tracking = srv.tracking.armed();
        if tracking {
            crate::server::tracking::begin(&srv, caller_id);
        }
        let mut out = Vec::new();
        let mut actions = Vec::new();
        let db = srv.ks.db(dbi);
        let mut ctx = Ctx {
            srv: &srv,
            client: &mut client,
            r: Reply::new(&mut out, proto),
            locks: super::Locks::new(&srv.ks, db, crate::keyspace::now_ms()),
            actions: &mut actions,
        };
        let call = call.args();
        if let (Some(console), Callee::Script(s)) = (console, &callee) {
            scripting::ldb::begin(&s.body, Box::new(console), limit);
        }
        let mut detached = false;
        if let (Some(fd), Callee::Script(s)) = (socket, &callee) {
            let (keys, argv) = split_call(&call, n);
            detached = run_forked(&mut ctx, s, &keys, &argv, run, fd, limit);
        } else {
            let _ = run_script(
                &mut ctx,
                &callee,
                &call,
                n,
                Run {
                    inline_budget: None,
                    ..run
                },
            );
        }
        drop(ctx);
        scripting::ldb::end();
        if tracking || srv.tracking.armed() {
            let own = crate::server::tracking::finish(&srv);
            crate::server::conn::write_own(&mut out, &client, own);
        }
        super::OffloadDone {
            detached,
            reply: out,
            dirty: client.pending_dirty,
            error_counted: client.error_counted,
            cmd,
            usec: t0.elapsed().as_micros() as u64,
        }
    }));
    ctx.actions.push(if run.debug != ScriptDebug::Off {
        super::Action::Debug(super::DebugRun { job, link })
    } else {
        super::Action::Offload(job)
    });
}

/// Checks a new script (shebang and syntax) and adds it to the cache.
/// The error is bytes: a compile error quotes the script.
fn create(ctx: &Ctx, body: &[u8]) -> Result<Arc<Script>, Vec<u8>> {
    let (flags, shebang) =
        scripting::shebang_flags(body).map_err(|e| [&b"ERR "[..], &e].concat())?;
    let sha = scripting::sha1_hex(body);
    let scripts = &ctx.srv.scripts;
    let mut vm = scripts.checkout().map_err(String::into_bytes)?;
    let code = blank_shebang(body, shebang);
    let compiled = vm.compile(&sha, &code);
    scripts.checkin(vm);
    compiled?;
    Ok(scripts.cache.insert(Script {
        sha,
        body: body.to_vec(),
        flags,
        fast: Default::default(),
    }))
}

/// The body Lua compiles: the shebang line dropped, its newline kept so
/// line numbers stay right.
fn blank_shebang(body: &[u8], shebang: usize) -> std::borrow::Cow<'_, [u8]> {
    if shebang == 0 {
        std::borrow::Cow::Borrowed(body)
    } else {
        std::borrow::Cow::Borrowed(&body[shebang..])
    }
}

/// A replica cut off from its master that serves no stale data.
fn running_stale(srv: &Shared) -> bool {
    srv.repl.is_replica()
        && !srv.config.read().flag("replica-serve-stale-data")
        && srv
            .repl
            .state
            .lock()
            .master
            .as_ref()
            .is_some_and(|m| m.state != crate::replication::LinkState::Connected)
}

/// Redis's checks before a script runs (scriptPrepareForRun).
fn prepare(ctx: &Ctx, script_flags: u32, ro: bool, oom: bool) -> Result<(), String> {
    let stale = running_stale(ctx.srv);
    if script_flags & flag::EVAL_COMPAT != 0 {
        if stale {
            return Err(
                "MASTERDOWN Link with MASTER is down and replica-serve-stale-data is set to 'no'."
                    .into(),
            );
        }
        return Ok(());
    }
    if script_flags & flag::NO_CLUSTER != 0 && ctx.srv.cluster.get().is_some() {
        return Err("ERR Can not run script on cluster, 'no-cluster' flag is set.".into());
    }
    if stale && script_flags & flag::ALLOW_STALE == 0 {
        return Err("MASTERDOWN Link with MASTER is down, replica-serve-stale-data is set to 'no' and 'allow-stale' flag is not set on the script.".into());
    }
    if script_flags & flag::NO_WRITES == 0 {
        let obey = ctx.client.is_master;
        if !obey && ctx.srv.repl.is_replica() && ctx.srv.config.read().yes("replica-read-only") {
            return Err("READONLY Can not run script with write flag on readonly replica".into());
        }
        if ro {
            return Err("ERR Can not execute a script with write flag using *_ro command.".into());
        }
    }
    if script_flags & flag::NO_WRITES == 0
        && !ctx.client.is_master
        && super::not_enough_replicas(ctx.srv)
    {
        return Err(NOREPLICAS.into());
    }
    if oom && script_flags & (flag::ALLOW_OOM | flag::NO_WRITES) == 0 {
        return Err(
            "OOM allow-oom flag is not set on the script, can not run it when used memory > 'maxmemory'"
                .into(),
        );
    }
    Ok(())
}

/// Runs a script to its reply, redoing it when lock order demands. `call`
/// is the command that asked for it, declaring `n` keys.
fn run_script(ctx: &mut Ctx, callee: &Callee, call: &Args, n: usize, run: Run) -> Ran {
    let (keys, argv) = split_call(call, n);
    let (keys, argv) = (&keys[..], &argv[..]);
    let Run {
        ro,
        oom,
        inline_budget,
        debug,
    } = run;
    let started = quanta::Instant::now();
    let in_exec = ctx.client.in_exec;
    let dbi = ctx.locks.db.index;
    let declared: Vec<(usize, u16)> = keys.iter().map(|k| (dbi, key_slot(k))).collect();
    let script_flags = callee.flags();
    let read_only =
        ro || (script_flags & flag::EVAL_COMPAT == 0 && script_flags & flag::NO_WRITES != 0);
    let cross_slot = script_flags & (flag::EVAL_COMPAT | flag::ALLOW_CROSS_SLOT) != 0;
    let scripts = &ctx.srv.scripts;
    let mut vm = match scripts.checkout() {
        Ok(vm) => vm,
        Err(e) => {
            ctx.r.error(&e);
            return Ran::Done;
        }
    };
    if let Callee::Script(script) = callee {
        let (_, shebang) = scripting::shebang_flags(&script.body).unwrap_or((0, 0));
        if let Err(e) = vm.compile(&script.sha, &blank_shebang(&script.body, shebang)) {
            scripts.checkin(vm);
            ctx.r.error_bytes(&e);
            return Ran::Done;
        }
    }
    let mut extra: Vec<(usize, u16)> = Vec::new();
    let mut read_any = false;
    // A debugged run cannot start over when it reaches a key it did not
    // declare (its client has seen it run): it holds the whole database,
    // as Redis's synchronous debugger holds the whole server.
    let mut whole_db = run.debug != ScriptDebug::Off;
    let mut attempt = 0;
    let srv: &Shared = ctx.srv;
    let out = loop {
        // Off the command thread, the slots are announced before they are
        // taken, so command threads wait for them without blocking.
        let mut _announced = None;
        if !in_exec {
            let mut want = declared.clone();
            want.extend(extra.iter().copied());
            let whole: &[usize] = if whole_db { &[dbi][..] } else { &[] };
            if inline_budget.is_none() {
                _announced = Some(srv.scripts.held.register(&want, whole));
            }
            ctx.locks.hold(want, whole);
            // Routed again with the keys' slots held: a MIGRATE may have
            // moved a declared key since the call was routed (see
            // `dispatch`), and Redis checks and runs in one go.
            if let Some(r) = super::reroute_held(ctx, call) {
                ctx.locks.release();
                ctx.client.asking = false;
                break Err(r.message());
            }
        } else if let Err((d, s)) = ctx.locks.extend(&declared, OUT_OF_ORDER_WAIT) {
            break Err(lock_error(d, s));
        }
        let logging = ctx.srv.log.is_active() && !in_exec;
        if logging {
            crate::persistence::effects::begin_capture();
        }
        let mut reply = vm.take_reply_buffer();
        let caller_proto = ctx.client.proto;
        let outcome = {
            let mut host =
                RunHost::new(ctx, (read_only, cross_slot, in_exec), callee, keys, started);
            host.oom =
                oom && script_flags & (flag::EVAL_COMPAT | flag::ALLOW_OOM) != flag::ALLOW_OOM;
            host.inline_budget = inline_budget;
            host.command = Some((ro, keys, argv));
            let mut r = Reply::new(&mut reply, caller_proto);
            let o = match callee {
                Callee::Script(s) if debug != ScriptDebug::Off => {
                    vm.run_debug(&s.sha, keys, argv, &mut host, &mut r)
                }
                Callee::Script(s) => vm.run(&s.sha, keys, argv, &mut host, &mut r),
                Callee::Function(f) => {
                    vm.call_function(&f.lib, f.index, keys, argv, &mut host, &mut r)
                }
            };
            host.finish();
            read_any = host.read_any;
            (o, std::mem::take(&mut host.learned))
        };
        if logging {
            let gen = ctx.locks.held_gen();
            ctx.srv.log.end_capture(gen);
        }
        if !in_exec {
            ctx.locks.release();
        }
        match outcome {
            (Outcome::Replied, _) => break Ok(reply),
            (Outcome::Stopped(msg), learned) if msg == RESTART => {
                attempt += 1;
                extra.extend(learned);
                if attempt > RESTARTS_BEFORE_WHOLE_DB {
                    whole_db = true;
                }
                continue;
            }
            (Outcome::Stopped(msg), _) => break Err(msg),
        }
    };
    if read_any && !keys.is_empty() {
        super::track_keys(ctx, keys);
    }
    let moved = matches!(&out, Err(m) if m == MOVE);
    match out {
        Err(_) if moved => {}
        Ok(reply) => {
            ctx.client.error_counted = vm.error_counted && reply.first() == Some(&b'-');
            ctx.r.raw(&reply);
            vm.keep_reply_buffer(reply);
        }
        Err(msg) => ctx.r.error(&msg),
    }
    scripts.checkin(vm);
    if moved {
        return Ran::Moved;
    }
    callee
        .fast()
        .store(started.elapsed() < INLINE_BUDGET, Ordering::Relaxed);
    Ran::Done
}

/// SCRIPT DEBUG YES: the session runs in a forked child, as in Redis. The
/// parent holds the script's whole database for the instant of the fork,
/// so the child starts from one point in time with every slot of it in
/// hand; then the parent lets go and leaves the connection to the child,
/// which serves it until the script ends and then exits, its writes gone
/// with it. Returns true in the parent once the child runs; false when
/// it could not start, with the error written.
fn run_forked(
    ctx: &mut Ctx,
    script: &Arc<Script>,
    keys: &[&[u8]],
    argv: &[&[u8]],
    run: Run,
    fd: i32,
    limit: Duration,
) -> bool {
    let scripts = &ctx.srv.scripts;
    let mut vm = match scripts.checkout() {
        Ok(vm) => vm,
        Err(e) => {
            ctx.r.error(&e);
            return false;
        }
    };
    let (_, shebang) = scripting::shebang_flags(&script.body).unwrap_or((0, 0));
    if let Err(e) = vm.compile(&script.sha, &blank_shebang(&script.body, shebang)) {
        scripts.checkin(vm);
        ctx.r.error_bytes(&e);
        return false;
    }
    let dbi = ctx.locks.db.index;
    ctx.locks.hold(Vec::new(), &[dbi]);
    // SAFETY: the child runs only this thread. It uses the slots, the
    // interpreter and the buffers this thread holds, closes the parent's
    // files, logs nothing, and leaves with `_exit` (see `child_session`).
    // The child waits on this pipe until the parent has counted the fork,
    // so a client that sees the session sees the fork in INFO too.
    let mut gate = [-1; 2];
    // SAFETY: pipe fills the two descriptors of a local array.
    if fd >= 0 && unsafe { libc::pipe(gate.as_mut_ptr()) } != 0 {
        gate = [-1; 2];
    }
    let forking = Instant::now();
    let pid = if fd < 0 { -1 } else { unsafe { libc::fork() } };
    if pid == 0 {
        if gate[0] >= 0 {
            let mut b = 0u8;
            // SAFETY: read and close (async-signal-safe) on the pipe made
            // above; the write end is the parent's.
            unsafe {
                libc::close(gate[1]);
                libc::read(gate[0], (&mut b as *mut u8).cast(), 1);
                libc::close(gate[0]);
            }
        }
        child_session(ctx, script, &mut vm, keys, argv, run, fd, limit);
    }
    if pid > 0 {
        // Counted as Redis counts every fork (INFO total_forks,
        // latest_fork_usec, the `fork` latency event).
        let took = forking.elapsed();
        let st = &ctx.srv.stats;
        crate::server::stats::Stats::add(&st.total_forks, 1);
        st.latest_fork_usec
            .store(took.as_micros() as u64, Ordering::Relaxed);
        ctx.srv
            .latency
            .observe("fork", took.as_millis() as u64, ctx.locks.now / 1000);
    }
    if gate[0] >= 0 {
        // SAFETY: the parent's ends of the pipe made above; closing the
        // write end without writing releases the child as well.
        unsafe {
            libc::close(gate[0]);
            libc::write(gate[1], [1u8].as_ptr().cast(), 1);
            libc::close(gate[1]);
        }
    }
    ctx.locks.release();
    ctx.srv.scripts.checkin(vm);
    if pid < 0 {
        let e = std::io::Error::last_os_error();
        ctx.r.error(&format!(
            "ERR Fork() failed: can't run EVAL in debugging mode: {}",
            crate::util::strerror(&e)
        ));
        return false;
    }
    tracing::warn!("Redis forked for debugging eval");
    scripting::ldb::adopt_child(pid);
    true
}

/// The forked child's whole life: the session on the client's socket, the
/// script's reply, then exit without running a destructor (what they
/// would free or flush belongs to the parent).
#[allow(clippy::too_many_arguments)]
fn child_session(
    ctx: &mut Ctx,
    script: &Arc<Script>,
    vm: &mut scripting::Vm,
    keys: &[&[u8]],
    argv: &[&[u8]],
    run: Run,
    fd: i32,
    limit: Duration,
) -> ! {
    // Another thread of the parent may have held the logger's lock at the
    // fork; and nothing written here by mistake may reach the parent's
    // files (AOF, RDB, log).
    let _quiet = tracing::subscriber::set_default(tracing::subscriber::NoSubscriber::default());
    scripting::ldb::close_files_but(fd);
    // What the script changes is captured as for the AOF, never logged.
    effects::begin_capture();
    scripting::ldb::begin(
        &script.body,
        Box::new(scripting::ldb::SocketConsole::new(fd)),
        limit,
    );
    scripting::ldb::with(|l| l.forked = true);
    let Run { ro, oom, .. } = run;
    let callee = Callee::Script(script.clone());
    let script_flags = callee.flags();
    let read_only =
        ro || (script_flags & flag::EVAL_COMPAT == 0 && script_flags & flag::NO_WRITES != 0);
    let cross_slot = script_flags & (flag::EVAL_COMPAT | flag::ALLOW_CROSS_SLOT) != 0;
    let proto = ctx.client.proto;
    let mut reply = Vec::new();
    {
        let mut host = RunHost::new(
            ctx,
            (read_only, cross_slot, false),
            &callee,
            keys,
            quanta::Instant::now(),
        );
        host.oom = oom && script_flags & (flag::EVAL_COMPAT | flag::ALLOW_OOM) != flag::ALLOW_OOM;
        host.command = Some((ro, keys, argv));
        let mut r = Reply::new(&mut reply, proto);
        if let Outcome::Stopped(msg) = vm.run_debug(&script.sha, keys, argv, &mut host, &mut r) {
            r.error(&msg);
        }
        // No `host.finish()`: what it restores dies with the child.
    }
    scripting::ldb::end();
    scripting::ldb::SocketConsole::new(fd).write_all(&reply);
    // SAFETY: ends the child at once, as it must after a fork.
    unsafe { libc::_exit(0) }
}

fn lock_error(db: usize, slot: u16) -> String {
    format!(
        "ERR Script could not lock slot {slot} of db {db}: another client holds it while waiting for a slot this script holds"
    )
}

/// (ro, keys, argv) of an FCALL.
type CallArgs<'c> = (bool, &'c [&'c [u8]], &'c [&'c [u8]]);

/// The server as a running script sees it.
struct RunHost<'c, 'a> {
    ctx: &'c mut Ctx<'a>,
    /// The function's name; None for EVAL.
    function: Option<String>,
    /// (ro, keys, argv) of the call, for FUNCTION STATS.
    command: Option<CallArgs<'c>>,
    read_only: bool,
    cross_slot: bool,
    in_exec: bool,
    eval: bool,
    /// The slot every key must share (cluster mode, no allow-cross-slot).
    script_slot: Option<u16>,
    /// A write ran: the script can no longer be killed or redone.
    wrote: bool,
    /// Over maxmemory at the start: writes that may grow memory are
    /// refused until one has run.
    oom: bool,
    /// Running on the command thread, with this budget.
    inline_budget: Option<Duration>,
    /// Anything another client or a replica could see (writes, PUBLISH).
    side_effects: bool,
    /// Where the effects of the commands the script calls go
    /// (`redis.set_repl`).
    repl_targets: u8,
    /// A read-only command ran: the caller tracks the declared keys.
    read_any: bool,
    /// Slots taken during the run, announced to command threads.
    announced: Vec<scripting::HeldToken<'a>>,
    /// Every (db, slot) asked for beyond those held, for a redo.
    learned: Vec<(usize, u16)>,
    start: quanta::Instant,
    timed_out: Option<Arc<TimedOut>>,
    saved_db: (usize, &'a crate::keyspace::Db),
    saved_in_exec: bool,
    saved_proto: Proto,
}

impl<'c, 'a> RunHost<'c, 'a> {
    fn new(
        ctx: &'c mut Ctx<'a>,
        (read_only, cross_slot, in_exec): (bool, bool, bool),
        callee: &Callee,
        keys: &[&[u8]],
        start: quanta::Instant,
    ) -> Self {
        let eval = callee.is_eval();
        let function = match callee {
            Callee::Script(_) => None,
            Callee::Function(f) => Some(f.info().name.clone()),
        };
        let saved_db = (ctx.client.db, ctx.locks.db);
        let saved_in_exec = ctx.client.in_exec;
        let saved_proto = ctx.client.proto;
        let script_slot = keys.first().map(|k| key_slot(k));
        let learned = Vec::new();
        RunHost {
            ctx,
            function,
            command: None,
            read_only,
            cross_slot,
            in_exec,
            eval,
            script_slot,
            wrote: false,
            oom: false,
            inline_budget: None,
            side_effects: false,
            repl_targets: effects::TO_ALL,
            read_any: false,
            announced: Vec::new(),
            learned,
            start,
            timed_out: None,
            saved_db,
            saved_in_exec,
            saved_proto,
        }
    }

    /// Puts the client back as the script found it.
    fn finish(&mut self) {
        self.ctx.client.db = self.saved_db.0;
        self.ctx.locks.db = self.saved_db.1;
        self.ctx.client.in_exec = self.saved_in_exec;
        self.ctx.client.proto = self.saved_proto;
        self.ctx.r.proto = self.saved_proto;
        if let Some(t) = self.timed_out.take() {
            self.ctx.srv.scripts.leave_timed_out(&t);
        }
    }

    /// Cluster mode: every key must be served here and, unless the script
    /// allows cross-slot keys, share one slot.
    fn check_cluster(&mut self, cmd: &'static table::Cmd, args: &Args) -> Result<(), String> {
        let Some(cl) = self.ctx.srv.cluster.get() else {
            return Ok(());
        };
        if self.ctx.client.is_master {
            return Ok(());
        }
        if let Some(r) = super::cluster_redirect(self.ctx, cl, cmd, args) {
            return Err(match r {
                crate::cluster::Redirect::Down(m) if m.contains("readonly") => {
                    "Script attempted to execute a write command while the cluster is down and readonly".into()
                }
                crate::cluster::Redirect::Down(_) => {
                    "Script attempted to execute a command while the cluster is down".into()
                }
                _ => "Script attempted to access a non local key in a cluster node".into(),
            });
        }
        if self.cross_slot {
            return Ok(());
        }
        let mut first = None;
        cmd.each_key(args, |k| {
            first = Some(key_slot(k));
            false
        });
        if let Some(s) = first {
            match self.script_slot {
                None => self.script_slot = Some(s),
                Some(x) if x != s => {
                    return Err(
                        "Script attempted to access keys that do not hash to the same slot".into(),
                    )
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Redis's checks before a script's command runs; `Err` is the
    /// refusal (or RESTART, to redo the run holding more slots).
    fn admit(&mut self, cmd: &'static table::Cmd, args: &Args) -> Result<(), String> {
        if not_in_scripts(cmd) && !self.ctx.srv.scripts.deny_disabled() {
            return Err("This Redis command is not allowed from script".into());
        }
        if cmd.flags & flags::STALE == 0 && self.stale() {
            return Err("Can not execute the command on a stale replica".into());
        }
        if let Some(err) = super::acl::script_refusal(self.ctx, cmd, args) {
            return Err(err);
        }
        let writes = cmd.flags & flags::WRITE != 0;
        if self.read_only && cmd.flags & (flags::WRITE | flags::MAY_REPLICATE) != 0 {
            return Err("Write commands are not allowed from read-only scripts.".into());
        }
        // Once the script has written, the server's state cannot fail it
        // any more (it would be left half done), as in Redis.
        if writes && !self.wrote {
            let ctx = &self.ctx;
            if !ctx.client.is_master
                && ctx.srv.repl.is_replica()
                && ctx.srv.config.read().yes("replica-read-only")
            {
                return Err("-READONLY You can't write against a read only replica.".into());
            }
            if !ctx.client.is_master && super::not_enough_replicas(ctx.srv) {
                return Err(format!("-{NOREPLICAS}"));
            }
        }
        if self.oom && !self.wrote && cmd.flags & flags::DENYOOM != 0 {
            return Err(format!("-{}", crate::server::evict::OOM));
        }
        self.check_cluster(cmd, args)?;
        self.hold_slots(cmd, args)
    }

    /// Whether this is a replica cut off from its master that serves no
    /// stale data: a script (one that declared `allow-stale`) may run
    /// there, but only commands allowed on a stale replica.
    fn stale(&self) -> bool {
        !self.ctx.client.is_master && running_stale(self.ctx.srv)
    }

    /// A refused command counts as an error reply and, when known, as a
    /// rejected call, as in Redis.
    fn refuse(&self, cmd: Option<&'static table::Cmd>, msg: String) -> Result<(), String> {
        if let Some(c) = cmd {
            crate::server::cmdstats::record(c, 0, crate::server::cmdstats::Outcome::Rejected);
        }
        let reply = match msg.strip_prefix('-') {
            Some(m) => format!("-{m}"),
            None => format!("-ERR {msg}"),
        };
        crate::server::cmdstats::count_error_reply(self.ctx.srv, reply.as_bytes());
        Err(msg)
    }

    /// Makes sure every slot the command touches is held by the script.
    fn hold_slots(&mut self, cmd: &'static table::Cmd, args: &Args) -> Result<(), String> {
        // The common case first, without allocating: a plain keyed command
        // whose keys are all in held slots.
        let plain = cmd.flags & (flags::ALL_DBS | flags::ALL_SLOTS) == 0
            && !matches!(
                cmd.name,
                "select" | "copy" | "move" | "swapdb" | "sort" | "sort_ro"
            );
        if plain {
            let db = self.ctx.locks.db.index;
            let locks = &self.ctx.locks;
            let mut all_held = true;
            cmd.each_key(args, |k| {
                all_held = locks.holds(db, key_slot(k));
                all_held
            });
            if all_held {
                return Ok(());
            }
        }
        let mut slots = Vec::new();
        let mut dbs = Vec::new();
        let mut db = self.ctx.locks.db.index;
        super::txn::slots_of(&self.ctx.srv.ks, cmd, args, &mut db, &mut slots, &mut dbs);
        for d in dbs {
            slots.extend((0..crate::keyspace::SLOTS as u16).map(|s| (d, s)));
        }
        slots.retain(|&(d, s)| !self.ctx.locks.holds(d, s));
        if slots.is_empty() {
            return Ok(());
        }
        // Remembered for a redo, which holds them all from the start.
        self.learned.extend(slots.iter().copied());
        let redo_possible = !self.side_effects && !self.in_exec;
        let wait = if redo_possible {
            Duration::ZERO
        } else {
            OUT_OF_ORDER_WAIT
        };
        if self.inline_budget.is_none() && !self.in_exec {
            let srv: &'a Shared = self.ctx.srv;
            self.announced.push(srv.scripts.held.register(&slots, &[]));
        }
        match self.ctx.locks.extend(&slots, wait) {
            Ok(()) => Ok(()),
            Err(_) if redo_possible => Err(RESTART.into()),
            Err((d, s)) => Err(lock_error(d, s)),
        }
    }
}

impl Host for RunHost<'_, '_> {
    fn acl_check(&mut self, argv: &[&[u8]]) -> Option<bool> {
        let mut buf = Vec::new();
        let mut ranges = Vec::with_capacity(argv.len());
        for a in argv {
            let s = buf.len();
            buf.extend_from_slice(a);
            ranges.push(s..buf.len());
        }
        let args = Args::new(&buf, &ranges);
        let mut cmd = table::lookup(args.get(0))?;
        if !cmd.subs.is_empty() && args.len() >= 2 {
            cmd = table::lookup_sub(cmd, args.get(1))?;
        }
        Some(match &self.ctx.client.user {
            Some(u) => super::acl::check(u, cmd, &args).is_ok(),
            None => true,
        })
    }

    fn call(
        &mut self,
        buf: &[u8],
        ranges: &[std::ops::Range<usize>],
        resp3: bool,
        out: &mut Vec<u8>,
    ) -> Result<(), String> {
        let args = Args::new(buf, ranges);
        let Some(mut cmd) = table::lookup(args.get(0)) else {
            return self.refuse(None, "Unknown Redis command called from script".into());
        };
        if !super::arity_ok(cmd.arity, args.len()) {
            return self.refuse(
                Some(cmd),
                "Wrong number of args calling Redis command from script".into(),
            );
        }
        if !cmd.subs.is_empty() && args.len() >= 2 {
            match table::lookup_sub(cmd, args.get(1)) {
                Some(sub) => cmd = sub,
                None => {
                    return self.refuse(None, "Unknown Redis command called from script".into())
                }
            }
            if !super::arity_ok(cmd.arity, args.len()) {
                return self.refuse(
                    Some(cmd),
                    "Wrong number of args calling Redis command from script".into(),
                );
            }
        }
        match self.admit(cmd, &args) {
            Ok(()) => {}
            Err(msg) if msg == RESTART => return Err(msg),
            Err(msg) => return self.refuse(Some(cmd), msg),
        }
        let writes = cmd.flags & flags::WRITE != 0;
        if writes {
            self.wrote = true;
            if let Some(t) = &self.timed_out {
                t.wrote.store(true, Ordering::SeqCst);
            }
        }
        if writes || cmd.flags & flags::MAY_REPLICATE != 0 || cmd.name.ends_with("publish") {
            self.side_effects = true;
        }
        if cmd.flags & flags::READONLY != 0 {
            self.read_any = true;
        }
        let proto = if resp3 { Proto::Resp3 } else { Proto::Resp2 };
        let ctx = &mut *self.ctx;
        ctx.client.proto = proto;
        ctx.r.proto = proto;
        ctx.client.in_exec = true;
        ctx.client.in_script = true;
        let start = ctx.r.out.len();
        let narrowed = self.repl_targets != effects::TO_ALL;
        if narrowed {
            effects::set_targets(self.repl_targets);
        }
        super::invoke(ctx, cmd, &args);
        if narrowed {
            effects::set_targets(effects::TO_ALL);
        }
        ctx.client.in_script = false;
        if ctx.r.out.get(start) == Some(&b'-') {
            crate::server::cmdstats::count_error_reply(ctx.srv, &ctx.r.out[start..]);
        }
        if cmd.name == "select" && ctx.r.out.get(start) == Some(&b'+') {
            ctx.locks.db = ctx.srv.ks.db(ctx.client.db);
        }
        out.extend_from_slice(&ctx.r.out[start..]);
        ctx.r.out.truncate(start);
        Ok(())
    }

    fn tick(&mut self) -> Result<(), String> {
        if self.ctx.srv.scripts.stopping() {
            return Err("ERR Script stopped: the server is shutting down".into());
        }
        if let Some(budget) = self.inline_budget {
            if !self.side_effects && self.start.elapsed() > budget {
                return Err(MOVE.into());
            }
        }
        if let Some(t) = &self.timed_out {
            if t.kill.load(Ordering::SeqCst) {
                tracing::warn!("Lua script killed by user with SCRIPT KILL.");
                return Err(if self.eval {
                    "ERR Script killed by user with SCRIPT KILL...".into()
                } else {
                    "ERR Script killed by user with FUNCTION KILL...".into()
                });
            }
            return Ok(());
        }
        let threshold = self.ctx.srv.config.read().num("busy-reply-threshold");
        if threshold > 0 && self.start.elapsed() >= Duration::from_millis(threshold as u64) {
            tracing::warn!(
                "Slow script detected: still in execution after {} milliseconds. You can try killing the script using the {} command.",
                self.start.elapsed().as_millis(),
                if self.eval { "SCRIPT KILL" } else { "FUNCTION KILL" }
            );
            let command = match (&self.function, self.command) {
                (Some(name), Some((ro, keys, argv))) => {
                    let mut c: Vec<Vec<u8>> = vec![
                        if ro { &b"fcall_ro"[..] } else { b"fcall" }.to_vec(),
                        name.clone().into_bytes(),
                        keys.len().to_string().into_bytes(),
                    ];
                    c.extend(keys.iter().chain(argv).map(|k| k.to_vec()));
                    c
                }
                _ => Vec::new(),
            };
            let t = Arc::new(TimedOut {
                eval: self.eval,
                from_master: self.ctx.client.is_master,
                name: self.function.clone().unwrap_or_default(),
                command,
                started: Some(self.start),
                ..Default::default()
            });
            t.wrote.store(self.wrote, Ordering::SeqCst);
            self.ctx.srv.scripts.enter_timed_out(t.clone());
            self.timed_out = Some(t);
        }
        Ok(())
    }

    fn log(&mut self, level: i64, msg: &[u8]) {
        let m = String::from_utf8_lossy(msg);
        match level {
            0 => tracing::trace!("{m}"),
            1 => tracing::debug!("{m}"),
            2 => tracing::info!("{m}"),
            _ => tracing::warn!("{m}"),
        }
    }

    fn set_repl(&mut self, flags: i64) {
        // Checked by the caller to be REPL_* bits.
        self.repl_targets = (flags as u8) & effects::TO_ALL;
    }
}

/// SCRIPT and its subcommands.
pub fn script_load(ctx: &mut Ctx, a: &Args) {
    let body = a.get(2);
    let sha = scripting::sha1_hex(body);
    if ctx.srv.scripts.cache.get(&sha).is_none() {
        if let Err(e) = create(ctx, body) {
            return ctx.r.error_bytes(&e);
        }
    }
    ctx.r.bulk(&sha);
}

pub fn script_exists(ctx: &mut Ctx, a: &Args) {
    ctx.r.array(a.len() - 2);
    for i in 2..a.len() {
        let found = ctx.srv.scripts.cache.get(a.get(i)).is_some();
        ctx.r.int(found as i64);
    }
}

pub fn script_flush(ctx: &mut Ctx, a: &Args) {
    if a.len() > 3 || (a.len() == 3 && !(eq_ic(a.get(2), "SYNC") || eq_ic(a.get(2), "ASYNC"))) {
        return ctx
            .r
            .error("ERR SCRIPT FLUSH only support SYNC|ASYNC option");
    }
    ctx.srv.scripts.flush();
    ctx.r.ok();
}

pub fn script_kill(ctx: &mut Ctx, _a: &Args) {
    kill(ctx, true)
}

/// SCRIPT KILL and FUNCTION KILL.
pub fn kill(ctx: &mut Ctx, eval: bool) {
    match ctx.srv.scripts.kill(eval) {
        KillResult::Killed => ctx.r.ok(),
        KillResult::NotBusy => ctx.r.error("NOTBUSY No scripts in execution right now."),
        KillResult::FromMaster => ctx.r.error(
            "UNKILLABLE The busy script was sent by a master instance in the context of replication and cannot be killed.",
        ),
        KillResult::Unkillable => ctx.r.error(
            "UNKILLABLE Sorry the script already executed write commands against the dataset. You can either wait the script termination or kill the server in a hard way using the SHUTDOWN NOSAVE command.",
        ),
        KillResult::OtherKind if eval => ctx.r.error(BUSY_FUNCTION),
        KillResult::OtherKind => ctx.r.error(BUSY_EVAL),
    }
}

pub fn script_debug(ctx: &mut Ctx, a: &Args) {
    // Replies still pending would be mixed with the session's output.
    if !ctx.r.out.is_empty() {
        return ctx
            .r
            .error("ERR SCRIPT DEBUG must be called outside a pipeline");
    }
    let m = a.get(2);
    if eq_ic(m, "NO") {
        ctx.client.script_debug = ScriptDebug::Off;
        return ctx.r.ok();
    }
    if eq_ic(m, "SYNC") {
        ctx.client.script_debug = ScriptDebug::Sync;
        return ctx.r.ok();
    }
    if eq_ic(m, "YES") {
        ctx.client.script_debug = ScriptDebug::Forked;
        return ctx.r.ok();
    }
    ctx.r.error("ERR Use SCRIPT DEBUG YES/SYNC/NO")
}

pub fn script_help(ctx: &mut Ctx, _a: &Args) {
    super::connection::help_reply(
        ctx,
        "SCRIPT",
        &[
            "DEBUG (YES|SYNC|NO)",
            "    Set the debug mode for subsequent scripts executed.",
            "EXISTS <sha1> [<sha1> ...]",
            "    Return information about the existence of the scripts in the script cache.",
            "FLUSH [ASYNC|SYNC]",
            "    Flush the Lua scripts cache. Very dangerous on replicas.",
            "    When called without the optional mode argument, the behavior is determined by the",
            "    lazyfree-lazy-user-flush configuration directive. Valid modes are:",
            "    * ASYNC: Asynchronously flush the scripts cache.",
            "    * SYNC: Synchronously flush the scripts cache.",
            "KILL",
            "    Kill the currently executing Lua script.",
            "LOAD <script>",
            "    Load a script into the scripts cache without executing it.",
        ],
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_refused_commands_are_sorted_for_binary_search() {
        assert!(NOT_IN_SCRIPTS.windows(2).all(|w| w[0] < w[1]));
        let cmd = |n| table::lookup(n).expect("command");
        assert!(not_in_scripts(cmd(b"eval")));
        assert!(not_in_scripts(cmd(b"subscribe")));
        assert!(!not_in_scripts(cmd(b"get")));
        let client = cmd(b"client");
        assert!(not_in_scripts(
            table::lookup_sub(client, b"list").expect("sub")
        ));
        let cluster = cmd(b"cluster");
        assert!(not_in_scripts(
            table::lookup_sub(cluster, b"reset").expect("sub")
        ));
        assert!(!not_in_scripts(
            table::lookup_sub(cluster, b"info").expect("sub")
        ));
    }
}
