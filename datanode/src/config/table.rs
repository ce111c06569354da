//! The directives we know: every name Redis 7.0 accepts (with its default,
//! from `redis70_defaults.tsv`, captured from `CONFIG GET *`), and the
//! value rules of those whose values we check.

/// Names and defaults of Redis 7.0's directives, tab separated.
const DEFAULTS: &str = include_str!("redis70_defaults.tsv");

#[derive(Clone, Copy, Debug)]
pub enum Kind {
    Bool,
    Int {
        min: i64,
        max: i64,
    },
    /// A byte count; accepts `1gb`, `100mb`, `1k`…
    Memory {
        min: i64,
        max: i64,
    },
    /// A byte count or a percentage of maxmemory (`10%`).
    MemoryOrPercent,
    Enum(&'static [&'static str]),
    /// Several words of a list, shown in the list's order; the first word
    /// alone means none (`shutdown-on-sigterm save now`).
    EnumFlags(&'static [&'static str]),
    Str,
    /// Space-separated list (bind, save, …).
    List,
    /// Keyspace notification classes (`KEA`, …).
    NotifyClasses,
    /// `client-output-buffer-limit`: groups of class, hard, soft, seconds.
    ObufLimits,
    /// `latency-tracking-info-percentiles`: numbers from 0 to 100.
    Percentiles,
    /// `oom-score-adj-values`: three integers from -2000 to 2000.
    OomValues,
    /// A number written in octal (`unixsocketperm 700`), shown in octal.
    Octal {
        max: i64,
    },
}

pub struct Spec {
    pub name: &'static str,
    pub kind: Kind,
    pub immutable: bool,
}

const INT_MAX: i64 = i32::MAX as i64;
const INT_MIN: i64 = i32::MIN as i64;
const LONG_MAX: i64 = i64::MAX;
/// An unsigned 64-bit bound, for a Memory directive (written as -1).
const ULLONG_MAX: i64 = -1;

const fn s(name: &'static str, kind: Kind, immutable: bool) -> Spec {
    Spec {
        name,
        kind,
        immutable,
    }
}

use Kind::*;

/// Directives whose values are validated (the rest are kept as strings).
pub static SPECS: &[Spec] = &[
    s("port", Int { min: 0, max: 65535 }, false),
    s("tls-port", Int { min: 0, max: 65535 }, false),
    s("latency-tracking", Bool, false),
    s("latency-tracking-info-percentiles", Percentiles, false),
    s(
        "oom-score-adj",
        Enum(&["no", "yes", "relative", "absolute"]),
        false,
    ),
    s("oom-score-adj-values", OomValues, false),
    s("bind", List, false),
    s("protected-mode", Bool, false),
    s("activedefrag", Bool, false),
    s(
        "list-max-listpack-size",
        Int {
            min: INT_MIN,
            max: INT_MAX,
        },
        false,
    ),
    s("dir", Str, false),
    s("logfile", Str, true),
    s(
        "loglevel",
        Enum(&["debug", "verbose", "notice", "warning"]),
        false,
    ),
    s("daemonize", Bool, true),
    s("pidfile", Str, true),
    s(
        "databases",
        Int {
            min: 1,
            max: INT_MAX,
        },
        true,
    ),
    s("requirepass", Str, false),
    s("appendonly", Bool, false),
    s("appendfilename", Str, true),
    s("appenddirname", Str, true),
    s("appendfsync", Enum(&["everysec", "always", "no"]), false),
    s("aof-load-truncated", Bool, false),
    s("aof-use-rdb-preamble", Bool, false),
    s(
        "auto-aof-rewrite-percentage",
        Int {
            min: 0,
            max: INT_MAX,
        },
        false,
    ),
    s(
        "auto-aof-rewrite-min-size",
        Memory {
            min: 0,
            max: LONG_MAX,
        },
        false,
    ),
    s("save", List, false),
    s("dbfilename", Str, false),
    s(
        "proto-max-bulk-len",
        Memory {
            min: 1024 * 1024,
            max: LONG_MAX,
        },
        false,
    ),
    s(
        "client-query-buffer-limit",
        Memory {
            min: 1024 * 1024,
            max: LONG_MAX,
        },
        false,
    ),
    s(
        "maxclients",
        Int {
            min: 1,
            max: u32::MAX as i64,
        },
        false,
    ),
    s(
        "timeout",
        Int {
            min: 0,
            max: INT_MAX,
        },
        false,
    ),
    s(
        "tracking-table-max-keys",
        Int {
            min: 0,
            max: LONG_MAX,
        },
        false,
    ),
    s(
        "tcp-keepalive",
        Int {
            min: 0,
            max: INT_MAX,
        },
        false,
    ),
    s("enable-debug-command", Enum(&["no", "yes", "local"]), true),
    s("enable-module-command", Enum(&["no", "yes", "local"]), true),
    s(
        "maxmemory",
        Memory {
            min: 0,
            max: LONG_MAX,
        },
        false,
    ),
    s("maxmemory-clients", MemoryOrPercent, false),
    s("client-output-buffer-limit", ObufLimits, false),
    s(
        "key-load-delay",
        Int {
            min: INT_MIN,
            max: INT_MAX,
        },
        false,
    ),
    s(
        "rdb-key-save-delay",
        Int {
            min: INT_MIN,
            max: INT_MAX,
        },
        false,
    ),
    s(
        "watchdog-period",
        Int {
            min: 0,
            max: INT_MAX,
        },
        false,
    ),
    s(
        "loading-process-events-interval-bytes",
        Int {
            min: 1024,
            max: INT_MAX,
        },
        false,
    ),
    s(
        "maxmemory-policy",
        Enum(&[
            "volatile-lru",
            "volatile-lfu",
            "volatile-random",
            "volatile-ttl",
            "allkeys-lru",
            "allkeys-lfu",
            "allkeys-random",
            "noeviction",
        ]),
        false,
    ),
    s(
        "maxmemory-samples",
        Int {
            min: 1,
            max: INT_MAX,
        },
        false,
    ),
    s(
        "maxmemory-eviction-tenacity",
        Int { min: 0, max: 100 },
        false,
    ),
    s(
        "lfu-log-factor",
        Int {
            min: 0,
            max: INT_MAX,
        },
        false,
    ),
    s(
        "lfu-decay-time",
        Int {
            min: 0,
            max: INT_MAX,
        },
        false,
    ),
    s(
        "hz",
        Int {
            min: 0,
            max: INT_MAX,
        },
        false,
    ),
    s(
        "slowlog-log-slower-than",
        Int {
            min: -1,
            max: LONG_MAX,
        },
        false,
    ),
    s(
        "slowlog-max-len",
        Int {
            min: 0,
            max: LONG_MAX,
        },
        false,
    ),
    s("cluster-enabled", Bool, true),
    s("cluster-config-file", Str, true),
    s(
        "cluster-node-timeout",
        Int {
            min: 0,
            max: LONG_MAX,
        },
        false,
    ),
    s("cluster-port", Int { min: 0, max: 65535 }, true),
    s(
        "cluster-replica-validity-factor",
        Int {
            min: 0,
            max: INT_MAX,
        },
        false,
    ),
    s(
        "cluster-migration-barrier",
        Int {
            min: 0,
            max: INT_MAX,
        },
        false,
    ),
    s("cluster-require-full-coverage", Bool, false),
    s("cluster-allow-reads-when-down", Bool, false),
    s("cluster-allow-replica-migration", Bool, false),
    s("cluster-announce-ip", Str, false),
    s("cluster-announce-port", Int { min: 0, max: 65535 }, false),
    s(
        "cluster-announce-bus-port",
        Int { min: 0, max: 65535 },
        false,
    ),
    s(
        "cluster-preferred-endpoint-type",
        Enum(&["ip", "hostname", "unknown-endpoint"]),
        false,
    ),
    s("replicaof", List, false),
    s(
        "repl-backlog-size",
        Memory {
            min: 1,
            max: LONG_MAX,
        },
        false,
    ),
    s(
        "repl-timeout",
        Int {
            min: 1,
            max: INT_MAX,
        },
        false,
    ),
    s(
        "repl-ping-replica-period",
        Int {
            min: 1,
            max: INT_MAX,
        },
        false,
    ),
    s(
        "min-replicas-to-write",
        Int {
            min: 0,
            max: INT_MAX,
        },
        false,
    ),
    s(
        "min-replicas-max-lag",
        Int {
            min: 0,
            max: INT_MAX,
        },
        false,
    ),
    s("replica-read-only", Bool, false),
    s("replica-serve-stale-data", Bool, false),
    s(
        "replica-priority",
        Int {
            min: 0,
            max: INT_MAX,
        },
        false,
    ),
    s("replica-announce-port", Int { min: 0, max: 65535 }, false),
    s("masterauth", Str, false),
    s(
        "repl-backlog-size",
        Memory {
            min: 1,
            max: LONG_MAX,
        },
        false,
    ),
    s(
        "supervised",
        Enum(&["upstart", "systemd", "auto", "no"]),
        true,
    ),
    s("io-threads", Int { min: 1, max: 128 }, true),
    s("notify-keyspace-events", NotifyClasses, false),
    s("unixsocket", Str, true),
    s("unixsocketperm", Octal { max: 0o777 }, true),
    // The rest of Redis 7.0's directives, with the types and bounds of its
    // config.c, so a bad value gets Redis's error instead of being kept.
    s("rdbchecksum", Bool, true),
    s("io-threads-do-reads", Bool, true),
    s("always-show-logo", Bool, true),
    s("rdbcompression", Bool, false),
    s("rdb-del-sync-files", Bool, false),
    s("activerehashing", Bool, false),
    s("stop-writes-on-bgsave-error", Bool, false),
    s("set-proc-title", Bool, true),
    s("dynamic-hz", Bool, false),
    s("lazyfree-lazy-eviction", Bool, false),
    s("lazyfree-lazy-expire", Bool, false),
    s("lazyfree-lazy-server-del", Bool, false),
    s("lazyfree-lazy-user-del", Bool, false),
    s("lazyfree-lazy-user-flush", Bool, false),
    s("repl-disable-tcp-nodelay", Bool, false),
    s("repl-diskless-sync", Bool, false),
    s("aof-rewrite-incremental-fsync", Bool, false),
    s("no-appendfsync-on-rewrite", Bool, false),
    s("rdb-save-incremental-fsync", Bool, false),
    s("aof-timestamp-enabled", Bool, false),
    s("cluster-replica-no-failover", Bool, false),
    s("replica-lazy-flush", Bool, false),
    s("replica-ignore-maxmemory", Bool, false),
    s("jemalloc-bg-thread", Bool, false),
    s("syslog-enabled", Bool, true),
    s("cluster-allow-pubsubshard-when-down", Bool, false),
    s("crash-log-enabled", Bool, false),
    s("crash-memcheck-enabled", Bool, false),
    s("use-exit-on-panic", Bool, false),
    s("disable-thp", Bool, true),
    s("replica-announced", Bool, false),
    s("aof-disable-auto-gc", Bool, false),
    s("replica-ignore-disk-write-errors", Bool, false),
    s("aclfile", Str, true),
    s("replica-announce-ip", Str, false),
    s("masteruser", Str, false),
    s("cluster-announce-hostname", Str, false),
    s("syslog-ident", Str, true),
    s("server_cpulist", Str, true),
    s("bio_cpulist", Str, true),
    s("aof_rewrite_cpulist", Str, true),
    s("bgsave_cpulist", Str, true),
    s("ignore-warnings", Str, false),
    s("proc-title-template", Str, false),
    s("bind-source-addr", Str, false),
    s(
        "syslog-facility",
        Enum(&[
            "user", "local0", "local1", "local2", "local3", "local4", "local5", "local6", "local7",
        ]),
        true,
    ),
    s(
        "repl-diskless-load",
        Enum(&["disabled", "on-empty-db", "swapdb"]),
        false,
    ),
    s(
        "acl-pubsub-default",
        Enum(&["allchannels", "resetchannels"]),
        false,
    ),
    s(
        "sanitize-dump-payload",
        Enum(&["no", "yes", "clients"]),
        false,
    ),
    s(
        "enable-protected-configs",
        Enum(&["no", "yes", "local"]),
        true,
    ),
    s(
        "propagation-error-behavior",
        Enum(&["ignore", "panic", "panic-on-replicas"]),
        false,
    ),
    s(
        "shutdown-on-sigint",
        EnumFlags(&["default", "save", "nosave", "now", "force"]),
        false,
    ),
    s(
        "shutdown-on-sigterm",
        EnumFlags(&["default", "save", "nosave", "now", "force"]),
        false,
    ),
    s("active-defrag-cycle-min", Int { min: 1, max: 99 }, false),
    s("active-defrag-cycle-max", Int { min: 1, max: 99 }, false),
    s(
        "active-defrag-threshold-lower",
        Int { min: 0, max: 1000 },
        false,
    ),
    s(
        "active-defrag-threshold-upper",
        Int { min: 0, max: 1000 },
        false,
    ),
    s(
        "repl-diskless-sync-delay",
        Int {
            min: 0,
            max: INT_MAX,
        },
        false,
    ),
    s(
        "tcp-backlog",
        Int {
            min: 0,
            max: INT_MAX,
        },
        true,
    ),
    s(
        "cluster-announce-tls-port",
        Int { min: 0, max: 65535 },
        false,
    ),
    s(
        "list-compress-depth",
        Int {
            min: 0,
            max: INT_MAX,
        },
        false,
    ),
    s("active-expire-effort", Int { min: 1, max: 10 }, false),
    s(
        "shutdown-timeout",
        Int {
            min: 0,
            max: INT_MAX,
        },
        false,
    ),
    s(
        "repl-diskless-sync-max-replicas",
        Int {
            min: 0,
            max: INT_MAX,
        },
        false,
    ),
    s(
        "socket-mark-id",
        Int {
            min: 0,
            max: 4294967295,
        },
        true,
    ),
    s(
        "active-defrag-max-scan-fields",
        Int {
            min: 1,
            max: LONG_MAX,
        },
        false,
    ),
    s(
        "acllog-max-len",
        Int {
            min: 0,
            max: LONG_MAX,
        },
        false,
    ),
    s(
        "busy-reply-threshold",
        Int {
            min: 0,
            max: LONG_MAX,
        },
        false,
    ),
    s(
        "latency-monitor-threshold",
        Int {
            min: 0,
            max: LONG_MAX,
        },
        false,
    ),
    s(
        "stream-node-max-entries",
        Int {
            min: 0,
            max: LONG_MAX,
        },
        false,
    ),
    s(
        "cluster-link-sendbuf-limit",
        Memory {
            min: 0,
            max: ULLONG_MAX,
        },
        false,
    ),
    s(
        "hash-max-listpack-entries",
        Int {
            min: 0,
            max: LONG_MAX,
        },
        false,
    ),
    s(
        "set-max-intset-entries",
        Int {
            min: 0,
            max: LONG_MAX,
        },
        false,
    ),
    s(
        "zset-max-listpack-entries",
        Int {
            min: 0,
            max: LONG_MAX,
        },
        false,
    ),
    s(
        "active-defrag-ignore-bytes",
        Memory {
            min: 1,
            max: LONG_MAX,
        },
        false,
    ),
    s(
        "hash-max-listpack-value",
        Memory {
            min: 0,
            max: LONG_MAX,
        },
        false,
    ),
    s(
        "stream-node-max-bytes",
        Memory {
            min: 0,
            max: LONG_MAX,
        },
        false,
    ),
    s(
        "zset-max-listpack-value",
        Memory {
            min: 0,
            max: LONG_MAX,
        },
        false,
    ),
    s(
        "hll-sparse-max-bytes",
        Memory {
            min: 0,
            max: LONG_MAX,
        },
        false,
    ),
    s(
        "repl-backlog-ttl",
        Int {
            min: 0,
            max: LONG_MAX,
        },
        false,
    ),
];

/// The canonical name of a directive (Redis 7 keeps the old "slave" and
/// "ziplist" spellings as aliases).
pub fn canonical(name: &str) -> String {
    let n = name.to_ascii_lowercase();
    if n == "slaveof" {
        return "replicaof".into();
    }
    if n == "lua-time-limit" {
        return "busy-reply-threshold".into();
    }
    n.replace("slave", "replica").replace("ziplist", "listpack")
}

pub fn spec(canon: &str) -> Option<&'static Spec> {
    SPECS.iter().find(|s| s.name == canon)
}

/// Every directive name Redis lists (aliases included), with its default.
pub fn defaults() -> impl Iterator<Item = (&'static str, &'static str)> {
    DEFAULTS.lines().filter_map(|l| l.split_once('\t'))
}

/// Test-only directives Redis hides from `CONFIG GET *`: shown only when
/// asked for by exact name.
pub const HIDDEN: &[(&str, &str)] = &[
    ("key-load-delay", "0"),
    ("rdb-key-save-delay", "0"),
    ("loading-process-events-interval-bytes", "2097152"),
    ("watchdog-period", "0"),
    ("use-exit-on-panic", "no"),
];

pub fn is_known(canon: &str) -> bool {
    spec(canon).is_some()
        || defaults().any(|(n, _)| canonical(n) == canon)
        || HIDDEN.iter().any(|(n, _)| *n == canon)
}

/// Directives that may appear in a file but never in CONFIG GET.
pub const FILE_ONLY: &[&str] = &[
    "include",
    "rename-command",
    "user",
    "loadmodule",
    "sentinel",
];

/// A memory amount as Redis's memtoull reads one for a directive: digits
/// (none is 0; too many saturate) and an optional unit; no sign.
fn memtoull(v: &str) -> Option<u64> {
    let digits = v.bytes().take_while(u8::is_ascii_digit).count();
    let mul = memory_unit(&v[digits..].to_ascii_lowercase())?;
    if digits >= 128 {
        return None;
    }
    let n = v[..digits].bytes().fold(0u64, |n, d| {
        n.saturating_mul(10).saturating_add((d - b'0') as u64)
    });
    Some(n.wrapping_mul(mul))
}

/// `cluster-announce-hostname`: letters, digits, hyphens and dots, under
/// 256 bytes (Redis's isValidAnnouncedHostname).
fn announced_hostname(v: &str) -> Result<(), String> {
    if v.len() >= 256 {
        return Err("Hostnames must be less than 256 characters".into());
    }
    if !v
        .bytes()
        .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'.')
    {
        return Err("Hostnames may only contain alphanumeric characters, hyphens or dots".into());
    }
    Ok(())
}

/// `proc-title-template`: `{name}` variables Redis knows, `{{` for a
/// brace, and something left once expanded with an empty title (and
/// outside cluster mode, where `{server-mode}` is empty).
fn proc_title_template_ok(t: &str) -> bool {
    let vars = crate::proctitle::Vars {
        bind: None,
        port: 6379,
        unixsocket: "x",
        config_file: None,
        cluster: false,
    };
    crate::proctitle::expand(t, "", &vars).is_some_and(|s| !s.is_empty())
}

/// Parses a memory amount: digits with an optional unit (k, kb, m, mb, g,
/// gb; `k` = 1000, `kb` = 1024, case-insensitive).
pub fn parse_memory(v: &str) -> Option<i64> {
    let l = v.to_ascii_lowercase();
    let split = l
        .find(|c: char| !(c.is_ascii_digit() || c == '-'))
        .unwrap_or(l.len());
    let (num, unit) = l.split_at(split);
    let n: i64 = num.parse().ok()?;
    n.checked_mul(memory_unit(unit)? as i64)
}

/// What a memory unit (lower case) multiplies by: `k` = 1000, `kb` = 1024.
fn memory_unit(unit: &str) -> Option<u64> {
    Some(match unit {
        "" | "b" => 1,
        "k" => 1000,
        "kb" => 1024,
        "m" => 1000 * 1000,
        "mb" => 1024 * 1024,
        "g" => 1000 * 1000 * 1000,
        "gb" => 1024 * 1024 * 1024,
        _ => return None,
    })
}

/// Validates `client-output-buffer-limit` groups (the classes given only;
/// [`merge_obuf_limits`] keeps the others), with Redis's reasons.
fn obuf_limits(args: &[String]) -> Result<String, String> {
    let w: Vec<&str> = args.iter().flat_map(|a| a.split_whitespace()).collect();
    if w.is_empty() {
        // No class given: nothing changes (as Redis takes it).
        return Ok(String::new());
    }
    if !w.len().is_multiple_of(4) {
        return Err("Wrong number of arguments in buffer limit configuration.".into());
    }
    let mut out = Vec::new();
    for g in w.chunks(4) {
        let class = match g[0].to_ascii_lowercase().as_str() {
            "normal" => "normal",
            "slave" | "replica" => "slave",
            "pubsub" => "pubsub",
            _ => {
                return Err("Invalid client class specified in buffer limit configuration.".into())
            }
        };
        let bad = || "Error in hard, soft or soft_seconds setting in buffer limit configuration.";
        let mem = |v: &str| parse_memory(v).filter(|n| *n >= 0).ok_or_else(bad);
        let (hard, soft) = (mem(g[1])?, mem(g[2])?);
        let secs = crate::resp::parse_i64(g[3].as_bytes())
            .filter(|n| *n >= 0)
            .ok_or_else(bad)?;
        out.push(format!("{class} {hard} {soft} {secs}"));
    }
    Ok(out.join(" "))
}

/// The full `client-output-buffer-limit` value after setting the classes
/// in `update` over `current` (both normalised), in Redis's class order.
pub fn merge_obuf_limits(current: &str, update: &str) -> String {
    let groups = |v: &str| -> Vec<(String, String)> {
        let w: Vec<&str> = v.split_whitespace().collect();
        w.chunks(4)
            .filter(|g| g.len() == 4)
            .map(|g| (g[0].to_string(), g[1..].join(" ")))
            .collect()
    };
    let (cur, upd) = (groups(current), groups(update));
    ["normal", "slave", "pubsub"]
        .iter()
        .filter_map(|class| {
            upd.iter()
                .rev()
                .chain(cur.iter())
                .find(|(c, _)| c == class)
                .map(|(c, v)| format!("{c} {v}"))
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Checks and normalises a value for `canon`; the error is Redis's reason.
/// Redis's error for `activedefrag yes` on a build without defrag support.
const ACTIVE_DEFRAG_UNSUPPORTED: &str = "Active defragmentation cannot be enabled: it requires a Redis server compiled with a modified Jemalloc like the one shipped by default with the Redis source distribution";

/// The bounds of `hz` (Redis's CONFIG_MIN_HZ, CONFIG_MAX_HZ).
pub const HZ_MIN: i64 = 1;
pub const HZ_MAX: i64 = 500;

pub fn validate(canon: &str, args: &[String]) -> Result<String, String> {
    let joined = args.join(" ");
    let Some(sp) = spec(canon) else {
        return Ok(joined);
    };
    let one = || -> Result<&String, String> {
        if args.len() == 1 {
            Ok(&args[0])
        } else {
            Err("wrong number of arguments".to_string())
        }
    };
    match sp.kind {
        Bool => {
            let v = one()?.to_ascii_lowercase();
            match v.as_str() {
                // There is no active defragmentation: refused as by a
                // redis-server built without its jemalloc (HAVE_DEFRAG),
                // rather than accepted and ignored.
                "yes" if canon == "activedefrag" => Err(ACTIVE_DEFRAG_UNSUPPORTED.into()),
                "yes" | "no" => Ok(v),
                _ => Err("argument must be 'yes' or 'no'".into()),
            }
        }
        Int { min, max } => {
            let v = one()?;
            let n: i64 = crate::resp::parse_i64(v.as_bytes())
                .ok_or("argument couldn't be parsed into an integer")?;
            if n < min || n > max {
                return Err(format!(
                    "argument must be between {min} and {max} inclusive"
                ));
            }
            // There is no TLS: a TLS port is refused as by a redis-server
            // that cannot set TLS up, rather than accepted and ignored.
            if canon == "tls-port" && n != 0 {
                return Err("Unable to update TLS configuration. Check server logs.".into());
            }
            // Redis's updateHZ keeps the rate within 1..=500.
            if canon == "hz" {
                return Ok(n.clamp(HZ_MIN, HZ_MAX).to_string());
            }
            Ok(n.to_string())
        }
        MemoryOrPercent => {
            let v = one()?;
            let bad = || "argument must be a memory or percent value".to_string();
            if let Some(p) = v.strip_suffix('%') {
                let n = crate::resp::parse_i64(p.as_bytes())
                    .filter(|n| *n >= 0)
                    .ok_or_else(bad)?;
                if n > 100 {
                    return Err("percentage argument must be less or equal to 100".into());
                }
                return Ok(format!("{n}%"));
            }
            // As Redis keeps it, signed, a percentage being negative: an
            // amount past the signed range wraps into one.
            let n = memtoull(v).ok_or_else(bad)? as i64;
            if n < 0 {
                if n < -100 {
                    return Err("percentage argument must be less or equal to 100".into());
                }
                return Ok(format!("{}%", -n));
            }
            Ok(n.to_string())
        }
        Memory { min, max } => {
            let n = memtoull(one()?).ok_or("argument must be a memory value")?;
            let upper = if max == ULLONG_MAX {
                u64::MAX
            } else {
                max as u64
            };
            let below = if min >= 0 {
                n < min as u64
            } else {
                (n as i64) < min
            };
            if n > upper || below {
                return Err(format!(
                    "argument must be between {min} and {upper} inclusive"
                ));
            }
            Ok(n.to_string())
        }
        Enum(words) => {
            let v = one()?.to_ascii_lowercase();
            if canon == "oom-score-adj" && v == "relative" {
                // Two names for one value: Redis shows the first, `yes`.
                Ok("yes".into())
            } else if words.contains(&v.as_str()) {
                Ok(v)
            } else {
                Err(format!(
                    "argument(s) must be one of the following: {}",
                    words.join(", ")
                ))
            }
        }
        EnumFlags(words) => {
            let given: Vec<String> = args
                .iter()
                .flat_map(|a| a.split_whitespace())
                .map(|w| w.to_ascii_lowercase())
                .collect();
            if given.is_empty() || given.iter().any(|w| !words.contains(&w.as_str())) {
                return Err(format!(
                    "argument(s) must be one of the following: {}",
                    words.join(", ")
                ));
            }
            if canon.starts_with("shutdown-on-sig")
                && given.iter().any(|w| w == "save")
                && given.iter().any(|w| w == "nosave")
            {
                return Err("shutdown options SAVE and NOSAVE can't be used simultaneously".into());
            }
            let set: Vec<&str> = words[1..]
                .iter()
                .copied()
                .filter(|w| given.iter().any(|g| g == w))
                .collect();
            Ok(if set.is_empty() {
                words[0].to_string()
            } else {
                set.join(" ")
            })
        }
        Str => {
            let v = one()?;
            match canon {
                "cluster-announce-hostname" => announced_hostname(v)?,
                "proc-title-template" if !proc_title_template_ok(v) => {
                    return Err("template format is invalid or contains unknown variables".into())
                }
                _ => {}
            }
            Ok(v.clone())
        }
        NotifyClasses => crate::server::notify::canonical(one()?),
        ObufLimits => obuf_limits(args),
        Percentiles => percentiles(args),
        OomValues => oom_values(args),
        Octal { max } => {
            // As Redis's strtoll(…, 8) to the end, then an unsigned bound.
            let v = one()?;
            let n = i64::from_str_radix(v.trim_start(), 8)
                .map_err(|_| "argument couldn't be parsed as an octal number")?;
            if n < 0 || n > max {
                return Err(format!("argument must be between 0 and {max:o} inclusive"));
            }
            Ok(format!("{n:o}"))
        }
        List => {
            if canon == "replicaof" {
                // As redis-server reads it: a host and a port (strtol to
                // the end, 0 to 65535), or `no one`.
                let [host, port] = args else {
                    return Err("wrong number of arguments".into());
                };
                if host.eq_ignore_ascii_case("no") && port.eq_ignore_ascii_case("one") {
                    return Ok(String::new());
                }
                if !port.parse::<i64>().is_ok_and(|p| (0..=65535).contains(&p)) {
                    return Err("Invalid master port".into());
                }
                return Ok(joined);
            }
            if canon == "save" {
                let flat: Vec<&str> = args.iter().flat_map(|a| a.split_whitespace()).collect();
                if flat.is_empty() {
                    return Ok(String::new());
                }
                if !flat.len().is_multiple_of(2) || flat.iter().any(|x| x.parse::<u64>().is_err()) {
                    return Err("Invalid save parameters".into());
                }
                return Ok(flat.join(" "));
            }
            Ok(joined)
        }
    }
}

/// `oom-score-adj-values`: three integers (strtoll to the end) from -2000
/// to 2000, for a master, a replica and a background child.
fn oom_values(args: &[String]) -> Result<String, String> {
    let words: Vec<&str> = args.iter().flat_map(|a| a.split(' ')).collect();
    if words.len() != 3 {
        return Err("wrong number of arguments".into());
    }
    let mut out = Vec::new();
    for w in words {
        let v = crate::resp::parse_i64(w.as_bytes())
            .filter(|v| (-2000..=2000).contains(v))
            .ok_or("Invalid oom-score-adj-values, elements must be between -2000 and 2000.")?;
        out.push(v.to_string());
    }
    Ok(out.join(" "))
}

/// `latency-tracking-info-percentiles`: each a double (string2d) from 0
/// to 100, written back as Redis's `%f` with trailing zeros trimmed; an
/// empty value is no percentile at all.
fn percentiles(args: &[String]) -> Result<String, String> {
    let mut out = Vec::new();
    for a in args.iter().flat_map(|a| a.split(' ')) {
        if a.is_empty() && args.len() == 1 && args[0].is_empty() {
            break;
        }
        let p = crate::strtod::string2d(a.as_bytes())
            .ok_or("Invalid latency-tracking-info-percentiles parameters")?;
        if !(0.0..=100.0).contains(&p) {
            return Err(
                "latency-tracking-info-percentiles parameters should sit between [0.0,100.0]"
                    .into(),
            );
        }
        out.push(crate::server::cmdstats::percentile_label(p));
    }
    Ok(out.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oom_settings_validate_like_redis() {
        let v = |s: &str| validate("oom-score-adj-values", &[s.to_string()]);
        assert_eq!(v("0 200 800").as_deref(), Ok("0 200 800"));
        assert_eq!(v("-2000 0 2000").as_deref(), Ok("-2000 0 2000"));
        assert!(v("1 2").unwrap_err().starts_with("wrong number"));
        assert!(v("-2001 0 0")
            .unwrap_err()
            .contains("between -2000 and 2000"));
        assert!(v("a 0 0").is_err());
        let d = |s: &str| validate("activedefrag", &[s.to_string()]);
        assert_eq!(d("no"), Ok("no".to_string()));
        assert!(d("yes")
            .unwrap_err()
            .starts_with("Active defragmentation cannot"));
        let m = |s: &str| validate("oom-score-adj", &[s.to_string()]);
        assert_eq!(m("relative").as_deref(), Ok("yes"));
        assert_eq!(m("absolute").as_deref(), Ok("absolute"));
        assert!(m("maybe").is_err());
    }

    #[test]
    fn unixsocketperm_is_octal_as_in_redis() {
        let v = |x: &str| validate("unixsocketperm", &[x.to_string()]);
        assert_eq!(v("700"), Ok("700".into()));
        assert_eq!(v("0755"), Ok("755".into()));
        assert_eq!(v("0"), Ok("0".into()));
        assert_eq!(
            v("1000"),
            Err("argument must be between 0 and 777 inclusive".into())
        );
        assert_eq!(
            v("8"),
            Err("argument couldn't be parsed as an octal number".into())
        );
    }

    #[test]
    fn percentiles_validate_and_print_like_redis() {
        let v = |s: &str| validate("latency-tracking-info-percentiles", &[s.to_string()]);
        assert_eq!(v("50.0 99.0 99.9").as_deref(), Ok("50 99 99.9"));
        assert_eq!(v("0.0 50.0 100.0").as_deref(), Ok("0 50 100"));
        assert_eq!(v("").as_deref(), Ok(""));
        assert_eq!(v("1e1").as_deref(), Ok("10"));
        assert!(v("10.0 50.0 a").unwrap_err().starts_with("Invalid"));
        assert!(v("10.0 50.0 101.0").unwrap_err().contains("[0.0,100.0]"));
        assert!(v("-1").is_err());
        assert!(v("50  99").is_err());
    }

    #[test]
    fn output_buffer_limits_validate_and_merge_like_redis() {
        let v = |s: &str| validate("client-output-buffer-limit", &[s.to_string()]);
        assert_eq!(
            v("PubSub 1mb 100k 3").as_deref(),
            Ok("pubsub 1048576 100000 3")
        );
        assert_eq!(v("replica 0 0 0").as_deref(), Ok("slave 0 0 0"));
        assert!(v("pubsub 1 2").unwrap_err().starts_with("Wrong number"));
        assert!(v("master 1 2 3")
            .unwrap_err()
            .starts_with("Invalid client class"));
        assert!(v("pubsub -1 2 3").unwrap_err().starts_with("Error in hard"));
        let cur = "normal 0 0 0 slave 268435456 67108864 60 pubsub 33554432 8388608 60";
        assert_eq!(
            merge_obuf_limits(cur, "pubsub 100000 0 0"),
            "normal 0 0 0 slave 268435456 67108864 60 pubsub 100000 0 0"
        );
    }
    use proptest::prelude::*;

    proptest! {
        /// Whatever a config line holds, checking it never panics.
        #[test]
        fn validate_never_panics(name in "[a-z-]{1,30}", args in proptest::collection::vec(".{0,20}", 0..4)) {
            let _ = validate(&canonical(&name), &args);
            for s in SPECS {
                let _ = validate(s.name, &args);
            }
        }

        #[test]
        fn memory_values_parse_or_fail_cleanly(v in ".{0,24}") {
            let _ = parse_memory(&v);
        }
    }

    #[test]
    fn memory_units() {
        assert_eq!(parse_memory("1kb"), Some(1024));
        assert_eq!(parse_memory("1k"), Some(1000));
        assert_eq!(parse_memory("2GB"), Some(2 * 1024 * 1024 * 1024));
        assert_eq!(parse_memory("5"), Some(5));
        assert_eq!(parse_memory("5x"), None);
        assert_eq!(parse_memory("99999999999999999999gb"), None);
        // As Redis reads a directive's amount: empty is 0, no sign,
        // overflow saturates.
        assert_eq!(memtoull(""), Some(0));
        assert_eq!(memtoull("1KB"), Some(1024));
        assert_eq!(memtoull("-1"), None);
        assert_eq!(memtoull("1.5"), None);
        assert_eq!(memtoull("99999999999999999999"), Some(u64::MAX));
    }
}
