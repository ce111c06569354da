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
    Str,
    /// Space-separated list (bind, save, …).
    List,
    /// Keyspace notification classes (`KEA`, …).
    NotifyClasses,
}

pub struct Spec {
    pub name: &'static str,
    pub kind: Kind,
    pub immutable: bool,
}

const INT_MAX: i64 = i32::MAX as i64;
const INT_MIN: i64 = i32::MIN as i64;
const LONG_MAX: i64 = i64::MAX;

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
    s("bind", List, false),
    s("protected-mode", Bool, false),
    s("dir", Str, false),
    s("logfile", Str, true),
    s(
        "loglevel",
        Enum(&["debug", "verbose", "notice", "warning", "nothing"]),
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
    s("appendfsync", Enum(&["always", "everysec", "no"]), false),
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
            max: INT_MAX,
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
    s(
        "maxmemory",
        Memory {
            min: 0,
            max: LONG_MAX,
        },
        false,
    ),
    s("maxmemory-clients", MemoryOrPercent, false),
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
];

/// The canonical name of a directive (Redis 7 keeps the old "slave" and
/// "ziplist" spellings as aliases).
pub fn canonical(name: &str) -> String {
    let n = name.to_ascii_lowercase();
    if n == "slaveof" {
        return "replicaof".into();
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

/// Parses a memory amount: digits with an optional unit (k, kb, m, mb, g,
/// gb; `k` = 1000, `kb` = 1024, case-insensitive).
pub fn parse_memory(v: &str) -> Option<i64> {
    let l = v.to_ascii_lowercase();
    let split = l
        .find(|c: char| !(c.is_ascii_digit() || c == '-'))
        .unwrap_or(l.len());
    let (num, unit) = l.split_at(split);
    let n: i64 = num.parse().ok()?;
    let mul: i64 = match unit {
        "" | "b" => 1,
        "k" => 1000,
        "kb" => 1024,
        "m" => 1000 * 1000,
        "mb" => 1024 * 1024,
        "g" => 1000 * 1000 * 1000,
        "gb" => 1024 * 1024 * 1024,
        _ => return None,
    };
    n.checked_mul(mul)
}

/// Checks and normalises a value for `canon`; the error is Redis's reason.
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
            let n = parse_memory(v).filter(|n| *n >= 0).ok_or_else(bad)?;
            Ok(n.to_string())
        }
        Memory { min, max } => {
            let v = one()?;
            let n = parse_memory(v).ok_or("argument must be a memory value")?;
            if n < min || n > max {
                return Err(format!(
                    "argument must be between {min} and {max} inclusive"
                ));
            }
            Ok(n.to_string())
        }
        Enum(words) => {
            let v = one()?.to_ascii_lowercase();
            if words.contains(&v.as_str()) {
                Ok(v)
            } else {
                Err(format!(
                    "argument(s) must be one of the following: {}",
                    words.join(", ")
                ))
            }
        }
        Str => Ok(one()?.clone()),
        NotifyClasses => crate::server::notify::canonical(one()?),
        List => {
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

#[cfg(test)]
mod tests {
    use super::*;
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
    }
}
