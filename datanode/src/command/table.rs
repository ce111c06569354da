//! The dispatch table: name, arity, flags and key positions of every
//! command we run, and the handler that runs it.

use std::sync::OnceLock;

use super::{
    acl, bits as bi, cluster as cl, connection as conn, dump as du, function as fu, geo as ge,
    hashes as h, hll as pf, keys as k, latency as lat, lists as l, memory as mem, module as md,
    pubsub as ps, repl as rp, scripting as sc, server as s, sets as se, sort as so,
    stream_groups as xg, stream_read as xr, streams as xs, strings as st, txn, zsets as z,
};
use super::{Args, Ctx};
use crate::keyspace::value::FastMap;

pub type Handler = fn(&mut Ctx, &Args);

pub mod flags {
    pub const WRITE: u32 = 1;
    pub const READONLY: u32 = 1 << 1;
    pub const ADMIN: u32 = 1 << 2;
    /// Allowed before AUTH.
    pub const NO_AUTH: u32 = 1 << 3;
    /// Run at once even inside MULTI (EXEC, DISCARD, MULTI, WATCH, …).
    pub const NO_QUEUE: u32 = 1 << 4;
    /// Touches every slot of the selected database.
    pub const ALL_SLOTS: u32 = 1 << 5;
    /// Touches every database.
    pub const ALL_DBS: u32 = 1 << 6;
    pub const FAST: u32 = 1 << 7;
    /// May deny when memory is full (for later eviction support).
    pub const DENYOOM: u32 = 1 << 8;
    /// Allowed in a RESP2 subscribed context / while loading etc.
    pub const STALE: u32 = 1 << 9;
    /// Refused inside MULTI (Redis's `no_multi`).
    pub const NO_MULTI: u32 = 1 << 10;
    /// Not a write, but feeds the replication stream (Redis's
    /// `may_replicate`): held back by CLIENT PAUSE WRITE.
    pub const MAY_REPLICATE: u32 = 1 << 11;
}

use flags::*;

pub struct Cmd {
    /// Lower-case name; subcommands are `parent|sub`.
    pub name: &'static str,
    pub arity: i32,
    pub flags: u32,
    pub first_key: i32,
    pub last_key: i32,
    pub step: i32,
    pub handler: Handler,
    pub subs: &'static [Cmd],
    /// Key positions for commands whose keys first/last/step cannot
    /// describe (a `numkeys` argument, …).
    pub keys_fn: Option<fn(&Args) -> Vec<usize>>,
}

impl Cmd {
    pub fn is_write(&self) -> bool {
        self.flags & WRITE != 0
    }

    /// Key argument indexes for this invocation (first/last/step form).
    pub fn key_indexes(&self, args: &Args) -> Vec<usize> {
        if let Some(f) = self.keys_fn {
            return f(args);
        }
        let argc = args.len();
        let first = self.first_key.max(0) as usize;
        let last = if self.last_key < 0 {
            (argc as i64 + self.last_key as i64) as usize
        } else {
            self.last_key as usize
        };
        let step = self.step.max(1) as usize;
        let (first, last) = if self.first_key <= 0 || argc <= first {
            (1, 0)
        } else {
            (first, last.min(argc - 1))
        };
        (first..=last).step_by(step).collect()
    }

    /// Calls `f` on every key argument, stopping when it returns false;
    /// allocation-free for the first/last/step form.
    pub fn each_key<'a>(&self, args: &Args<'a>, mut f: impl FnMut(&'a [u8]) -> bool) -> bool {
        if let Some(kf) = self.keys_fn {
            return kf(args).into_iter().all(|i| f(args.get(i)));
        }
        let argc = args.len();
        if self.first_key <= 0 || argc <= self.first_key as usize {
            return true;
        }
        let first = self.first_key as usize;
        let last = if self.last_key < 0 {
            (argc as i64 + self.last_key as i64).max(0) as usize
        } else {
            (self.last_key as usize).min(argc - 1)
        };
        let step = self.step.max(1) as usize;
        let mut i = first;
        while i <= last {
            if !f(args.get(i)) {
                return false;
            }
            i += step;
        }
        true
    }

    const fn with_keys(self, f: fn(&Args) -> Vec<usize>) -> Cmd {
        Cmd {
            keys_fn: Some(f),
            ..self
        }
    }

    /// The display name used in errors (`client|setname`).
    pub fn full_name(&self) -> &'static str {
        self.name
    }
}

const fn c(
    name: &'static str,
    arity: i32,
    flags: u32,
    keys: (i32, i32, i32),
    handler: Handler,
) -> Cmd {
    Cmd {
        name,
        arity,
        flags,
        first_key: keys.0,
        last_key: keys.1,
        step: keys.2,
        handler,
        subs: &[],
        keys_fn: None,
    }
}

const fn container(name: &'static str, arity: i32, flags: u32, subs: &'static [Cmd]) -> Cmd {
    Cmd {
        name,
        arity,
        flags,
        first_key: 0,
        last_key: 0,
        step: 0,
        handler: conn::container_without_sub,
        subs,
        keys_fn: None,
    }
}

const NOKEY: (i32, i32, i32) = (0, 0, 0);
const KEY1: (i32, i32, i32) = (1, 1, 1);
const ALLKEYS: (i32, i32, i32) = (1, -1, 1);
const R: u32 = READONLY;
const W: u32 = WRITE;

static CLIENT_SUBS: &[Cmd] = &[
    c("client|id", 2, FAST | STALE, NOKEY, conn::client_id),
    c(
        "client|setname",
        3,
        FAST | STALE,
        NOKEY,
        conn::client_setname,
    ),
    c(
        "client|getname",
        2,
        FAST | STALE,
        NOKEY,
        conn::client_getname,
    ),
    c("client|list", -2, ADMIN | STALE, NOKEY, conn::client_list),
    c("client|info", 2, STALE, NOKEY, conn::client_info),
    c("client|kill", -3, ADMIN | STALE, NOKEY, conn::client_kill),
    c(
        "client|no-evict",
        3,
        ADMIN | STALE,
        NOKEY,
        conn::client_no_evict,
    ),
    c("client|pause", -3, ADMIN | STALE, NOKEY, conn::client_pause),
    c(
        "client|unpause",
        2,
        ADMIN | STALE,
        NOKEY,
        conn::client_unpause,
    ),
    c("client|reply", 3, STALE, NOKEY, conn::client_reply),
    c(
        "client|unblock",
        -3,
        ADMIN | STALE,
        NOKEY,
        conn::client_unblock,
    ),
    c("client|help", 2, STALE, NOKEY, conn::client_help),
    c("client|tracking", -3, STALE, NOKEY, conn::client_tracking),
    c("client|caching", 3, STALE, NOKEY, conn::client_caching),
    c("client|getredir", 2, STALE, NOKEY, conn::client_getredir),
    c(
        "client|trackinginfo",
        2,
        STALE,
        NOKEY,
        conn::client_trackinginfo,
    ),
];

static CLUSTER_SUBS: &[Cmd] = &[
    c("cluster|addslots", -3, ADMIN | STALE, NOKEY, cl::addslots),
    c(
        "cluster|addslotsrange",
        -4,
        ADMIN | STALE,
        NOKEY,
        cl::addslotsrange,
    ),
    c("cluster|bumpepoch", 2, ADMIN | STALE, NOKEY, cl::bumpepoch),
    c(
        "cluster|count-failure-reports",
        3,
        ADMIN | STALE,
        NOKEY,
        cl::count_failure_reports,
    ),
    c(
        "cluster|countkeysinslot",
        3,
        STALE,
        NOKEY,
        cl::countkeysinslot,
    ),
    c("cluster|delslots", -3, ADMIN | STALE, NOKEY, cl::delslots),
    c(
        "cluster|delslotsrange",
        -4,
        ADMIN | STALE,
        NOKEY,
        cl::delslotsrange,
    ),
    c(
        "cluster|flushslots",
        2,
        ADMIN | STALE,
        NOKEY,
        cl::flushslots,
    ),
    c("cluster|failover", -2, ADMIN | STALE, NOKEY, cl::failover),
    c("cluster|forget", 3, ADMIN | STALE, NOKEY, cl::forget),
    c("cluster|getkeysinslot", 4, STALE, NOKEY, cl::getkeysinslot),
    c("cluster|help", 2, STALE, NOKEY, cl::help),
    c("cluster|info", 2, STALE, NOKEY, cl::info),
    c("cluster|keyslot", 3, STALE, NOKEY, cl::keyslot),
    c("cluster|links", 2, STALE, NOKEY, cl::links),
    c("cluster|meet", -4, ADMIN | STALE, NOKEY, cl::meet),
    c("cluster|myid", 2, STALE, NOKEY, cl::myid),
    c("cluster|myshardid", 2, STALE, NOKEY, cl::myshardid),
    c("cluster|nodes", 2, STALE, NOKEY, cl::nodes),
    c("cluster|replicas", 3, ADMIN | STALE, NOKEY, cl::replicas),
    c("cluster|replicate", 3, ADMIN | STALE, NOKEY, cl::replicate),
    c("cluster|reset", -2, ADMIN | STALE, NOKEY, cl::reset),
    c(
        "cluster|saveconfig",
        2,
        ADMIN | STALE,
        NOKEY,
        cl::saveconfig,
    ),
    c(
        "cluster|set-config-epoch",
        3,
        ADMIN | STALE,
        NOKEY,
        cl::set_config_epoch,
    ),
    c("cluster|setslot", -4, ADMIN | STALE, NOKEY, cl::setslot),
    // Valkey 9.0's atomic slot migration (not in Redis 7.0's COMMAND).
    c(
        "cluster|migrateslots",
        -4,
        ADMIN | STALE,
        NOKEY,
        super::slotmig::migrateslots,
    ),
    c(
        "cluster|getslotmigrations",
        2,
        ADMIN | STALE,
        NOKEY,
        super::slotmig::getslotmigrations,
    ),
    c(
        "cluster|cancelslotmigrations",
        2,
        ADMIN | STALE,
        NOKEY,
        super::slotmig::cancelslotmigrations,
    ),
    c(
        "cluster|syncslots",
        -3,
        ADMIN | STALE,
        NOKEY,
        super::slotmig::syncslots,
    ),
    c("cluster|shards", 2, STALE, NOKEY, cl::shards),
    c("cluster|slaves", 3, ADMIN | STALE, NOKEY, cl::replicas),
    c("cluster|slots", 2, STALE, NOKEY, cl::slots),
];

static CONFIG_SUBS: &[Cmd] = &[
    c("config|get", -3, ADMIN | STALE, NOKEY, s::config_get),
    c("config|set", -4, ADMIN | STALE, NOKEY, s::config_set),
    c(
        "config|resetstat",
        2,
        ADMIN | STALE,
        NOKEY,
        s::config_resetstat,
    ),
    c("config|rewrite", 2, ADMIN | STALE, NOKEY, s::config_rewrite),
    c("config|help", 2, STALE, NOKEY, s::config_help),
];

static XGROUP_SUBS: &[Cmd] = &[
    c("xgroup|create", -5, W | DENYOOM, (2, 2, 1), xg::xgroup),
    c(
        "xgroup|createconsumer",
        5,
        W | DENYOOM,
        (2, 2, 1),
        xg::xgroup,
    ),
    c("xgroup|delconsumer", 5, W, (2, 2, 1), xg::xgroup),
    c("xgroup|destroy", 4, W, (2, 2, 1), xg::xgroup),
    c("xgroup|setid", -5, W, (2, 2, 1), xg::xgroup),
    c("xgroup|help", 2, STALE, NOKEY, xg::xgroup_help),
];

static XINFO_SUBS: &[Cmd] = &[
    c("xinfo|consumers", 4, R, (2, 2, 1), xg::xinfo_consumers),
    c("xinfo|groups", 3, R, (2, 2, 1), xg::xinfo_groups),
    c("xinfo|stream", -3, R, (2, 2, 1), xg::xinfo_stream),
    c("xinfo|help", 2, STALE, NOKEY, xg::xinfo_help),
];

static OBJECT_SUBS: &[Cmd] = &[
    c("object|encoding", 3, R, (2, 2, 1), k::object_encoding),
    c("object|freq", 3, R, (2, 2, 1), k::object_freq),
    c("object|idletime", 3, R, (2, 2, 1), k::object_idletime),
    c("object|refcount", 3, R, (2, 2, 1), k::object_refcount),
    c("object|help", 2, STALE, NOKEY, k::object_help),
];

static COMMAND_SUBS: &[Cmd] = &[
    c("command|count", 2, STALE, NOKEY, s::command_count),
    c("command|info", -2, STALE, NOKEY, s::command_info),
    c("command|docs", -2, STALE, NOKEY, s::command_docs),
    c("command|list", -2, STALE, NOKEY, s::command_list),
    c("command|getkeys", -4, STALE, NOKEY, s::command_getkeys),
    c(
        "command|getkeysandflags",
        -4,
        0,
        NOKEY,
        s::command_getkeysandflags,
    ),
    c("command|help", 2, STALE, NOKEY, s::command_help),
];

static SCRIPT_SUBS: &[Cmd] = &[
    c("script|debug", 3, 0, NOKEY, sc::script_debug),
    c("script|exists", -3, 0, NOKEY, sc::script_exists),
    c("script|flush", -2, 0, NOKEY, sc::script_flush),
    c("script|help", 2, STALE, NOKEY, sc::script_help),
    c("script|kill", 2, 0, NOKEY, sc::script_kill),
    c("script|load", 3, STALE, NOKEY, sc::script_load),
];

static MODULE_SUBS: &[Cmd] = &[
    c("module|help", 2, STALE, NOKEY, md::help),
    c("module|list", 2, ADMIN, NOKEY, md::list),
    c("module|load", -3, ADMIN, NOKEY, md::load),
    c("module|loadex", -3, ADMIN, NOKEY, md::load),
    c("module|unload", 3, ADMIN, NOKEY, md::unload),
];

static ACL_SUBS: &[Cmd] = &[
    c("acl|cat", -2, STALE, NOKEY, acl::cat),
    c("acl|deluser", -3, ADMIN | STALE, NOKEY, acl::deluser),
    c("acl|dryrun", -4, ADMIN | STALE, NOKEY, acl::dryrun),
    c("acl|genpass", -2, STALE, NOKEY, acl::genpass),
    c("acl|getuser", 3, ADMIN | STALE, NOKEY, acl::getuser),
    c("acl|help", 2, STALE, NOKEY, acl::help),
    c("acl|list", 2, ADMIN | STALE, NOKEY, acl::list),
    c("acl|load", 2, ADMIN | STALE, NOKEY, acl::load),
    c("acl|log", -2, ADMIN | STALE, NOKEY, acl::log),
    c("acl|save", 2, ADMIN | STALE, NOKEY, acl::save),
    c("acl|setuser", -3, ADMIN | STALE, NOKEY, acl::setuser),
    c("acl|users", 2, ADMIN | STALE, NOKEY, acl::users),
    c("acl|whoami", 2, STALE, NOKEY, acl::whoami),
];

static FUNCTION_SUBS: &[Cmd] = &[
    c("function|delete", 3, W, NOKEY, fu::delete),
    c("function|dump", 2, 0, NOKEY, fu::dump),
    c("function|flush", -2, W, NOKEY, fu::flush),
    c("function|help", 2, STALE, NOKEY, fu::help),
    c("function|kill", 2, 0, NOKEY, fu::kill),
    c("function|list", -2, 0, NOKEY, fu::list),
    c("function|load", -3, W | DENYOOM, NOKEY, fu::load),
    c("function|restore", -3, W | DENYOOM, NOKEY, fu::restore),
    c("function|stats", 2, 0, NOKEY, fu::stats),
];

static LATENCY_SUBS: &[Cmd] = &[
    c("latency|doctor", 2, ADMIN | STALE, NOKEY, lat::doctor),
    c("latency|graph", 3, ADMIN | STALE, NOKEY, lat::graph),
    c("latency|help", 2, STALE, NOKEY, lat::help),
    c(
        "latency|histogram",
        -2,
        ADMIN | STALE,
        NOKEY,
        lat::histogram,
    ),
    c("latency|history", 3, ADMIN | STALE, NOKEY, lat::history),
    c("latency|latest", 2, ADMIN | STALE, NOKEY, lat::latest),
    c("latency|reset", -2, ADMIN | STALE, NOKEY, lat::reset),
];

static MEMORY_SUBS: &[Cmd] = &[
    c("memory|doctor", 2, 0, NOKEY, mem::doctor),
    c("memory|help", 2, STALE, NOKEY, mem::help),
    c("memory|malloc-stats", 2, 0, NOKEY, mem::malloc_stats),
    c("memory|purge", 2, 0, NOKEY, mem::purge),
    c("memory|stats", 2, 0, NOKEY, mem::stats),
    c("memory|usage", -3, R, (2, 2, 1), mem::usage),
];

static PUBSUB_SUBS: &[Cmd] = &[
    c("pubsub|channels", -2, STALE, NOKEY, ps::pubsub_channels),
    c("pubsub|numsub", -2, STALE, NOKEY, ps::pubsub_numsub),
    c("pubsub|numpat", 2, STALE, NOKEY, ps::pubsub_numpat),
    c(
        "pubsub|shardchannels",
        -2,
        STALE,
        NOKEY,
        ps::pubsub_shardchannels,
    ),
    c(
        "pubsub|shardnumsub",
        -2,
        STALE,
        NOKEY,
        ps::pubsub_shardnumsub,
    ),
    c("pubsub|help", 2, STALE, NOKEY, ps::pubsub_help),
];

static SLOWLOG_SUBS: &[Cmd] = &[
    c("slowlog|get", -2, ADMIN | STALE, NOKEY, s::slowlog_get),
    c("slowlog|len", 2, ADMIN | STALE, NOKEY, s::slowlog_len),
    c("slowlog|reset", 2, ADMIN | STALE, NOKEY, s::slowlog_reset),
    c("slowlog|help", 2, STALE, NOKEY, s::slowlog_help),
];

pub static COMMANDS: &[Cmd] = &[
    // connection
    c("ping", -1, FAST, NOKEY, conn::ping),
    c("echo", 2, FAST | STALE, NOKEY, conn::echo),
    c("select", 2, FAST | STALE, NOKEY, conn::select),
    c(
        "quit",
        -1,
        NO_AUTH | NO_QUEUE | FAST | STALE,
        NOKEY,
        conn::quit,
    ),
    c(
        "reset",
        1,
        NO_AUTH | NO_QUEUE | FAST | STALE,
        NOKEY,
        conn::reset,
    ),
    c("auth", -2, NO_AUTH | FAST | STALE, NOKEY, conn::auth),
    c("hello", -1, NO_AUTH | FAST | STALE, NOKEY, conn::hello),
    container("client", -2, 0, CLIENT_SUBS),
    c("readonly", 1, FAST | STALE, NOKEY, conn::readonly),
    c("readwrite", 1, FAST | STALE, NOKEY, conn::readwrite),
    c("asking", 1, FAST, NOKEY, cl::asking),
    container("cluster", -2, 0, CLUSTER_SUBS),
    // strings
    c("get", 2, R | FAST, KEY1, st::get),
    c("set", -3, W | DENYOOM, KEY1, st::set),
    c("setnx", 3, W | DENYOOM | FAST, KEY1, st::setnx),
    c("setex", 4, W | DENYOOM, KEY1, st::setex),
    c("psetex", 4, W | DENYOOM, KEY1, st::psetex),
    c("getset", 3, W | DENYOOM | FAST, KEY1, st::getset),
    c("getdel", 2, W | FAST, KEY1, st::getdel),
    c("getex", -2, W | FAST, KEY1, st::getex),
    c("mget", -2, R | FAST, ALLKEYS, st::mget),
    c("mset", -3, W | DENYOOM, (1, -1, 2), st::mset),
    c("msetnx", -3, W | DENYOOM, (1, -1, 2), st::msetnx),
    c("append", 3, W | DENYOOM | FAST, KEY1, st::append),
    c("strlen", 2, R | FAST, KEY1, st::strlen),
    c("incr", 2, W | DENYOOM | FAST, KEY1, st::incr),
    c("decr", 2, W | DENYOOM | FAST, KEY1, st::decr),
    c("incrby", 3, W | DENYOOM | FAST, KEY1, st::incrby),
    c("decrby", 3, W | DENYOOM | FAST, KEY1, st::decrby),
    c("incrbyfloat", 3, W | DENYOOM | FAST, KEY1, st::incrbyfloat),
    c("getrange", 4, R, KEY1, st::getrange),
    c("substr", 4, R, KEY1, st::getrange),
    c("setrange", 4, W | DENYOOM, KEY1, st::setrange),
    c("lcs", -3, R, (1, 2, 1), st::lcs),
    // bitmaps
    c("setbit", 4, W | DENYOOM, KEY1, bi::setbit),
    c("getbit", 3, R | FAST, KEY1, bi::getbit),
    c("bitcount", -2, R, KEY1, bi::bitcount),
    c("bitpos", -3, R, KEY1, bi::bitpos),
    c("bitop", -4, W | DENYOOM, (2, -1, 1), bi::bitop),
    c("bitfield", -2, W | DENYOOM, KEY1, bi::bitfield),
    c("bitfield_ro", -2, R | FAST, KEY1, bi::bitfield_ro),
    // streams
    c("xadd", -5, W | DENYOOM | FAST, KEY1, xs::xadd),
    c("xrange", -4, R, KEY1, xs::xrange),
    c("xrevrange", -4, R, KEY1, xs::xrevrange),
    c("xlen", 2, R | FAST, KEY1, xs::xlen),
    c("xdel", -3, W | FAST, KEY1, xs::xdel),
    c("xtrim", -4, W, KEY1, xs::xtrim),
    c("xsetid", -3, W | DENYOOM | FAST, KEY1, xs::xsetid),
    container("xgroup", -2, 0, XGROUP_SUBS),
    c("xack", -4, W | FAST, KEY1, xg::xack),
    c("xpending", -3, R, KEY1, xg::xpending),
    c("xclaim", -6, W | FAST, KEY1, xg::xclaim),
    c("xautoclaim", -6, W | FAST, KEY1, xg::xautoclaim),
    container("xinfo", -2, 0, XINFO_SUBS),
    c("xread", -4, R, NOKEY, xr::xread).with_keys(xr::xread_keys),
    c("xreadgroup", -7, W, NOKEY, xr::xreadgroup).with_keys(xr::xread_keys),
    // geo
    c("geoadd", -5, W | DENYOOM, KEY1, ge::geoadd),
    c("geodist", -4, R, KEY1, ge::geodist),
    c("geohash", -2, R, KEY1, ge::geohash_cmd),
    c("geopos", -2, R, KEY1, ge::geopos),
    c("geosearch", -7, R, KEY1, ge::geosearch),
    c(
        "geosearchstore",
        -8,
        W | DENYOOM,
        (1, 2, 1),
        ge::geosearchstore,
    ),
    c("georadius", -6, W | DENYOOM, KEY1, ge::georadius).with_keys(ge::georadius_keys),
    c("georadius_ro", -6, R, KEY1, ge::georadius_ro),
    c(
        "georadiusbymember",
        -5,
        W | DENYOOM,
        KEY1,
        ge::georadiusbymember,
    )
    .with_keys(ge::georadius_keys),
    c(
        "georadiusbymember_ro",
        -5,
        R,
        KEY1,
        ge::georadiusbymember_ro,
    ),
    // HyperLogLog
    c("pfadd", -2, W | DENYOOM | FAST, KEY1, pf::pfadd),
    c("pfcount", -2, R | MAY_REPLICATE, ALLKEYS, pf::pfcount),
    c("pfmerge", -2, W | DENYOOM, ALLKEYS, pf::pfmerge),
    c("pfdebug", 3, W | DENYOOM | ADMIN, (2, 2, 1), pf::pfdebug),
    c("pfselftest", 1, ADMIN, NOKEY, pf::pfselftest),
    // keys
    c("del", -2, W, ALLKEYS, k::del),
    c("unlink", -2, W | FAST, ALLKEYS, k::del),
    c("exists", -2, R | FAST, ALLKEYS, k::exists),
    c("type", 2, R | FAST, KEY1, k::type_),
    c("expire", -3, W | FAST, KEY1, k::expire),
    c("pexpire", -3, W | FAST, KEY1, k::pexpire),
    c("expireat", -3, W | FAST, KEY1, k::expireat),
    c("pexpireat", -3, W | FAST, KEY1, k::pexpireat),
    c("ttl", 2, R | FAST, KEY1, k::ttl),
    c("pttl", 2, R | FAST, KEY1, k::pttl),
    c("expiretime", 2, R | FAST, KEY1, k::expiretime),
    c("pexpiretime", 2, R | FAST, KEY1, k::pexpiretime),
    c("persist", 2, W | FAST, KEY1, k::persist),
    c("rename", 3, W, (1, 2, 1), k::rename),
    c("renamenx", 3, W | FAST, (1, 2, 1), k::renamenx),
    c("copy", -3, W | DENYOOM, (1, 2, 1), k::copy),
    c("move", 3, W | FAST, KEY1, k::move_),
    c("swapdb", 3, W | FAST, NOKEY, k::swapdb),
    c("sort", -2, W | DENYOOM, KEY1, so::sort).with_keys(so::sort_keys),
    c("sort_ro", -2, R, KEY1, so::sort_ro),
    c("keys", 2, R | ALL_SLOTS, NOKEY, k::keys),
    c("scan", -2, R | ALL_SLOTS, NOKEY, k::scan),
    c("randomkey", 1, R | ALL_SLOTS, NOKEY, k::randomkey),
    c("dbsize", 1, R | FAST | ALL_SLOTS, NOKEY, k::dbsize),
    c("flushdb", -1, W | ALL_SLOTS, NOKEY, k::flushdb),
    c("flushall", -1, W | ALL_SLOTS | ALL_DBS, NOKEY, k::flushall),
    c("touch", -2, R | FAST, ALLKEYS, k::touch),
    container("object", -2, 0, OBJECT_SUBS),
    c("dump", 2, R, KEY1, du::dump),
    c("restore", -4, W | DENYOOM, KEY1, du::restore),
    c("restore-asking", -4, W | DENYOOM, KEY1, du::restore),
    c("migrate", -6, W, (3, 3, 1), super::migrate::migrate).with_keys(super::migrate::migrate_keys),
    // hashes
    c("hset", -4, W | DENYOOM | FAST, KEY1, h::hset),
    c("hmset", -4, W | DENYOOM | FAST, KEY1, h::hmset),
    c("hsetnx", 4, W | DENYOOM | FAST, KEY1, h::hsetnx),
    c("hget", 3, R | FAST, KEY1, h::hget),
    c("hmget", -3, R | FAST, KEY1, h::hmget),
    c("hdel", -3, W | FAST, KEY1, h::hdel),
    c("hexists", 3, R | FAST, KEY1, h::hexists),
    c("hlen", 2, R | FAST, KEY1, h::hlen),
    c("hkeys", 2, R, KEY1, h::hkeys),
    c("hvals", 2, R, KEY1, h::hvals),
    c("hgetall", 2, R, KEY1, h::hgetall),
    c("hincrby", 4, W | DENYOOM | FAST, KEY1, h::hincrby),
    c("hincrbyfloat", 4, W | DENYOOM | FAST, KEY1, h::hincrbyfloat),
    c("hstrlen", 3, R | FAST, KEY1, h::hstrlen),
    c("hscan", -3, R, KEY1, h::hscan),
    c("hrandfield", -2, R, KEY1, h::hrandfield),
    // lists
    c("lpush", -3, W | DENYOOM | FAST, KEY1, l::lpush),
    c("rpush", -3, W | DENYOOM | FAST, KEY1, l::rpush),
    c("lpushx", -3, W | DENYOOM | FAST, KEY1, l::lpushx),
    c("rpushx", -3, W | DENYOOM | FAST, KEY1, l::rpushx),
    c("lpop", -2, W | FAST, KEY1, l::lpop),
    c("rpop", -2, W | FAST, KEY1, l::rpop),
    c("llen", 2, R | FAST, KEY1, l::llen),
    c("lindex", 3, R, KEY1, l::lindex),
    c("lset", 4, W | DENYOOM, KEY1, l::lset),
    c("lrange", 4, R, KEY1, l::lrange),
    c("ltrim", 4, W, KEY1, l::ltrim),
    c("linsert", 5, W | DENYOOM, KEY1, l::linsert),
    c("lrem", 4, W, KEY1, l::lrem),
    c("lpos", -3, R, KEY1, l::lpos),
    c("lmove", 5, W | DENYOOM, (1, 2, 1), l::lmove),
    c("rpoplpush", 3, W | DENYOOM, (1, 2, 1), l::rpoplpush),
    c("lmpop", -4, W, NOKEY, l::lmpop).with_keys(l::lmpop_keys),
    c("blpop", -3, W, (1, -2, 1), l::blpop),
    c("brpop", -3, W, (1, -2, 1), l::brpop),
    c("blmove", 6, W | DENYOOM, (1, 2, 1), l::blmove),
    c("brpoplpush", 4, W | DENYOOM, (1, 2, 1), l::brpoplpush),
    c("blmpop", -5, W, NOKEY, l::blmpop).with_keys(l::blmpop_keys),
    // sets
    c("sadd", -3, W | DENYOOM | FAST, KEY1, se::sadd),
    c("srem", -3, W | FAST, KEY1, se::srem),
    c("smembers", 2, R, KEY1, se::smembers),
    c("sismember", 3, R | FAST, KEY1, se::sismember),
    c("smismember", -3, R | FAST, KEY1, se::smismember),
    c("scard", 2, R | FAST, KEY1, se::scard),
    c("spop", -2, W | FAST, KEY1, se::spop),
    c("srandmember", -2, R, KEY1, se::srandmember),
    c("sinter", -2, R, ALLKEYS, se::sinter),
    c("sunion", -2, R, ALLKEYS, se::sunion),
    c("sdiff", -2, R, ALLKEYS, se::sdiff),
    c("sinterstore", -3, W | DENYOOM, ALLKEYS, se::sinterstore),
    c("sunionstore", -3, W | DENYOOM, ALLKEYS, se::sunionstore),
    c("sdiffstore", -3, W | DENYOOM, ALLKEYS, se::sdiffstore),
    c("sintercard", -3, R, NOKEY, se::sintercard).with_keys(se::sintercard_keys),
    c("smove", 4, W | FAST, (1, 2, 1), se::smove),
    c("sscan", -3, R, KEY1, se::sscan),
    // pub/sub
    c("subscribe", -2, STALE, NOKEY, ps::subscribe),
    c("unsubscribe", -1, STALE, NOKEY, ps::unsubscribe),
    c("psubscribe", -2, STALE, NOKEY, ps::psubscribe),
    c("punsubscribe", -1, STALE, NOKEY, ps::punsubscribe),
    c(
        "publish",
        3,
        STALE | FAST | MAY_REPLICATE,
        NOKEY,
        ps::publish,
    ),
    c(
        "spublish",
        3,
        STALE | FAST | MAY_REPLICATE,
        KEY1,
        ps::spublish,
    ),
    c("ssubscribe", -2, STALE, ALLKEYS, ps::ssubscribe),
    c("sunsubscribe", -1, STALE, ALLKEYS, ps::sunsubscribe),
    container("pubsub", -2, 0, PUBSUB_SUBS),
    // sorted sets
    c("zadd", -4, W | DENYOOM | FAST, KEY1, z::zadd),
    c("zincrby", 4, W | DENYOOM | FAST, KEY1, z::zincrby),
    c("zrem", -3, W | FAST, KEY1, z::zrem),
    c("zscore", 3, R | FAST, KEY1, z::zscore),
    c("zmscore", -3, R | FAST, KEY1, z::zmscore),
    c("zcard", 2, R | FAST, KEY1, z::zcard),
    c("zcount", 4, R | FAST, KEY1, z::zcount),
    c("zlexcount", 4, R | FAST, KEY1, z::zlexcount),
    c("zrank", 3, R | FAST, KEY1, z::zrank),
    c("zrevrank", 3, R | FAST, KEY1, z::zrevrank),
    c("zrange", -4, R, KEY1, z::zrange),
    c("zrevrange", -4, R, KEY1, z::zrevrange),
    c("zrangebyscore", -4, R, KEY1, z::zrangebyscore),
    c("zrevrangebyscore", -4, R, KEY1, z::zrevrangebyscore),
    c("zrangebylex", -4, R, KEY1, z::zrangebylex),
    c("zrevrangebylex", -4, R, KEY1, z::zrevrangebylex),
    c("zpopmin", -2, W | FAST, KEY1, z::zpopmin),
    c("zpopmax", -2, W | FAST, KEY1, z::zpopmax),
    c("zremrangebyrank", 4, W, KEY1, z::zremrangebyrank),
    c("zremrangebyscore", 4, W, KEY1, z::zremrangebyscore),
    c("zremrangebylex", 4, W, KEY1, z::zremrangebylex),
    c("zrandmember", -2, R, KEY1, z::zrandmember),
    c("zscan", -3, R, KEY1, z::zscan),
    c("zunion", -3, R, NOKEY, z::zunion).with_keys(z::numkeys1),
    c("zinter", -3, R, NOKEY, z::zinter).with_keys(z::numkeys1),
    c("zdiff", -3, R, NOKEY, z::zdiff).with_keys(z::numkeys1),
    c("zunionstore", -4, W | DENYOOM, KEY1, z::zunionstore).with_keys(z::numkeys2_with_dst),
    c("zinterstore", -4, W | DENYOOM, KEY1, z::zinterstore).with_keys(z::numkeys2_with_dst),
    c("zdiffstore", -4, W | DENYOOM, KEY1, z::zdiffstore).with_keys(z::numkeys2_with_dst),
    c("zintercard", -3, R, NOKEY, z::zintercard).with_keys(z::numkeys1),
    c("zrangestore", -5, W | DENYOOM, (1, 2, 1), z::zrangestore),
    c("zmpop", -4, W, NOKEY, z::zmpop).with_keys(z::zmpop_keys),
    c("bzpopmin", -3, W | FAST, (1, -2, 1), z::bzpopmin),
    c("bzpopmax", -3, W | FAST, (1, -2, 1), z::bzpopmax),
    c("bzmpop", -5, W, NOKEY, z::bzmpop).with_keys(z::bzmpop_keys),
    // transactions
    c("multi", 1, FAST | NO_QUEUE | STALE, NOKEY, txn::multi),
    c("exec", 1, NO_QUEUE | STALE, NOKEY, txn::exec),
    c("discard", 1, FAST | NO_QUEUE | STALE, NOKEY, txn::discard),
    c("watch", -2, FAST | NO_QUEUE | STALE, ALLKEYS, txn::watch),
    c("unwatch", 1, FAST | STALE, NOKEY, txn::unwatch),
    // server
    c("info", -1, STALE, NOKEY, s::info),
    // replication
    c("replicaof", 3, ADMIN | STALE, NOKEY, rp::replicaof),
    c("slaveof", 3, ADMIN | STALE, NOKEY, rp::replicaof),
    c("role", 1, FAST | STALE, NOKEY, rp::role),
    c("replconf", -1, ADMIN | STALE, NOKEY, rp::replconf),
    c("psync", -3, ADMIN | NO_MULTI, NOKEY, rp::psync),
    c(
        "failover",
        -1,
        ADMIN | NO_MULTI | STALE,
        NOKEY,
        rp::failover,
    ),
    c("sync", 1, ADMIN | NO_MULTI, NOKEY, rp::sync),
    c("wait", 3, 0, NOKEY, rp::wait),
    container("config", -2, 0, CONFIG_SUBS),
    Cmd {
        handler: s::command_root,
        ..container("command", -1, 0, COMMAND_SUBS)
    },
    container("slowlog", -2, 0, SLOWLOG_SUBS),
    container("acl", -2, 0, ACL_SUBS),
    container("function", -2, 0, FUNCTION_SUBS),
    container("script", -2, 0, SCRIPT_SUBS),
    c("eval", -3, MAY_REPLICATE | STALE, NOKEY, sc::eval).with_keys(sc::eval_keys),
    c("evalsha", -3, MAY_REPLICATE | STALE, NOKEY, sc::evalsha).with_keys(sc::eval_keys),
    c("eval_ro", -3, R | STALE, NOKEY, sc::eval_ro).with_keys(sc::eval_keys),
    c("evalsha_ro", -3, R | STALE, NOKEY, sc::evalsha_ro).with_keys(sc::eval_keys),
    c("fcall", -3, MAY_REPLICATE | STALE, NOKEY, sc::fcall).with_keys(sc::eval_keys),
    c("fcall_ro", -3, R | STALE, NOKEY, sc::fcall_ro).with_keys(sc::eval_keys),
    container("module", -2, 0, MODULE_SUBS),
    container("memory", -2, 0, MEMORY_SUBS),
    container("latency", -2, 0, LATENCY_SUBS),
    c("time", 1, FAST | STALE, NOKEY, s::time),
    c("lolwut", -1, R | FAST, NOKEY, s::lolwut),
    c("lastsave", 1, FAST | STALE, NOKEY, s::lastsave),
    // DEBUG RELOAD/POPULATE touch any slot: inside EXEC, hold them all.
    c(
        "debug",
        -2,
        ADMIN | ALL_SLOTS | ALL_DBS | STALE,
        NOKEY,
        s::debug,
    ),
    c("monitor", 1, ADMIN | STALE, NOKEY, s::monitor),
    c("bgrewriteaof", 1, ADMIN, NOKEY, s::bgrewriteaof),
    c("save", 1, ADMIN | NO_MULTI, NOKEY, s::save),
    c("bgsave", -1, ADMIN, NOKEY, s::bgsave),
    c("shutdown", -1, ADMIN | NO_MULTI | STALE, NOKEY, s::shutdown),
];

fn index() -> &'static FastMap<&'static [u8], &'static Cmd> {
    static INDEX: OnceLock<FastMap<&'static [u8], &'static Cmd>> = OnceLock::new();
    INDEX.get_or_init(|| {
        let mut m = FastMap::default();
        for c in COMMANDS {
            m.insert(c.name.as_bytes(), c);
        }
        m
    })
}

/// The command table after `rename-command` directives, when there are
/// any: clients know the commands by these names only.
static RENAMED: OnceLock<FastMap<&'static [u8], &'static Cmd>> = OnceLock::new();

/// Applies `rename-command` directives (name, new name) in order, as
/// redis-server reads them: a command is looked up by its current name,
/// an empty new name removes it. Once, at start-up; on error, the index
/// of the directive and Redis's reason.
pub fn install_renames(renames: &[(String, String)]) -> Result<(), (usize, &'static str)> {
    if renames.is_empty() {
        return Ok(());
    }
    let mut m: FastMap<&'static [u8], &'static Cmd> = index().clone();
    for (i, (from, to)) in renames.iter().enumerate() {
        let from = from.to_ascii_lowercase();
        let Some(cmd) = m.remove(from.as_bytes()) else {
            return Err((i, "No such command in rename-command"));
        };
        if to.is_empty() {
            continue;
        }
        let to = to.to_ascii_lowercase();
        if m.contains_key(to.as_bytes()) {
            return Err((i, "Target command name already exists"));
        }
        // Once per directive at start-up: the names live as long as the
        // table.
        m.insert(Box::leak(to.into_bytes().into_boxed_slice()), cmd);
    }
    let _ = RENAMED.set(m);
    Ok(())
}

/// Finds a command by the name clients use (after any `rename-command`),
/// case-insensitively, without allocating.
pub fn lookup(name: &[u8]) -> Option<&'static Cmd> {
    let mut buf = [0u8; 64];
    if name.len() > buf.len() {
        return None;
    }
    let lower = &mut buf[..name.len()];
    lower.copy_from_slice(name);
    lower.make_ascii_lowercase();
    RENAMED.get().unwrap_or_else(index).get(&*lower).copied()
}

/// Finds a command by its own name or the name clients use: for what the
/// server itself wrote (the AOF, a master's stream) and its own calls.
pub fn lookup_any(name: &[u8]) -> Option<&'static Cmd> {
    lookup(name).or_else(|| {
        let lower = name.to_ascii_lowercase();
        index().get(lower.as_slice()).copied()
    })
}

/// Finds a subcommand of a container command.
pub fn lookup_sub(parent: &'static Cmd, sub: &[u8]) -> Option<&'static Cmd> {
    let plen = parent.name.len() + 1;
    parent
        .subs
        .iter()
        .find(|c| c.name.as_bytes()[plen..].eq_ignore_ascii_case(sub))
}

pub fn all() -> &'static [Cmd] {
    COMMANDS
}
