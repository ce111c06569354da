//! Configuration in redis.conf form: a config file, then `--name value`
//! overrides from the command line; CONFIG GET/SET/REWRITE at runtime.

pub mod rewrite;
pub mod table;

use std::collections::BTreeMap;
use std::path::PathBuf;

use table::{canonical, defaults, is_known, validate, FILE_ONLY};

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum AppendFsync {
    Always,
    EverySec,
    No,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("\n*** FATAL CONFIG FILE ERROR (slotkv {}, Redis 7.0.15 compatible) ***\nReading the configuration file {file}, at line {line}\n>>> '{text}'\n{reason}", env!("CARGO_PKG_VERSION"))]
    Bad {
        file: String,
        line: usize,
        text: String,
        reason: String,
    },
    #[error("Fatal error, can't open config file '{0}': {1}")]
    Open(String, std::io::Error),
    #[error("The server is running without a config file")]
    NoFile,
    #[error("Rewriting config file: {0}")]
    Rewrite(std::io::Error),
}

#[derive(Clone, Debug, Default)]
pub struct Config {
    /// Canonical name → value as CONFIG GET prints it.
    values: BTreeMap<String, String>,
    pub file: Option<PathBuf>,
    /// `notify-keyspace-events` as flags: CONFIG GET does not print every
    /// class it holds (`n` under `A`), so the text cannot be re-parsed.
    notify_flags: u32,
    /// `user <name> rules…` directives, applied once the server starts.
    pub users: Vec<Directive>,
    /// `rename-command <name> <new name>` directives, in order, applied
    /// once to the command table at start-up.
    pub renames: Vec<Directive>,
}

/// A directive applied once the server starts (`user`,
/// `rename-command`), with where it was read.
#[derive(Clone, Debug)]
pub struct Directive {
    pub file: String,
    pub line: usize,
    pub text: String,
    /// Its arguments (a user's name then its rules; a command's name
    /// then its new name).
    pub args: Vec<String>,
}

impl Directive {
    /// The directive of `l`, its arguments after its name.
    fn after_name(l: &Line) -> Directive {
        Directive {
            file: l.file.clone(),
            line: l.no,
            text: l.text.clone(),
            args: l.args[1..].to_vec(),
        }
    }

    /// The start-up error for a rule of this directive that cannot apply.
    pub fn error(&self, reason: String) -> ConfigError {
        ConfigError::Bad {
            file: self.file.clone(),
            line: self.line,
            text: self.text.clone(),
            reason,
        }
    }
}

/// One directive with where it came from.
struct Line {
    file: String,
    no: usize,
    text: String,
    args: Vec<String>,
}

/// The directives of a config file's text (`file` names it in errors).
fn text_lines(file: &str, text: &str) -> Result<Vec<Line>, ConfigError> {
    let mut lines = Vec::new();
    for (no, l) in text.lines().enumerate() {
        let t = l.trim();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        let Some(args) = split(t) else {
            return Err(ConfigError::Bad {
                file: file.to_string(),
                line: no + 1,
                text: t.into(),
                reason: "Unbalanced quotes in configuration line".into(),
            });
        };
        lines.push(Line {
            file: file.to_string(),
            no: no + 1,
            text: t.into(),
            args,
        });
    }
    Ok(lines)
}

fn file_lines(file: &str) -> Result<Vec<Line>, ConfigError> {
    let text = std::fs::read_to_string(file).map_err(|e| ConfigError::Open(file.into(), e))?;
    text_lines(file, &text)
}

/// Includes nested deeper than this are refused (redis-server recurses
/// until its stack runs out).
const MAX_INCLUDE_DEPTH: usize = 16;

/// `lines` with each `include <path>` replaced by the directives of that
/// file, in place, as redis-server reads them: a path with `*`, `?` or `[`
/// is a pattern whose matching files are read in name order (none is
/// fine: an empty conf.d), a plain path must open.
fn with_includes(lines: Vec<Line>, depth: usize) -> Result<Vec<Line>, ConfigError> {
    let mut out = Vec::with_capacity(lines.len());
    for l in lines {
        let include = l.args.len() == 2 && l.args[0].eq_ignore_ascii_case("include");
        if !include {
            out.push(l);
            continue;
        }
        if depth >= MAX_INCLUDE_DEPTH {
            return Err(ConfigError::Bad {
                file: l.file,
                line: l.no,
                text: l.text,
                reason: format!("Includes nest more than {MAX_INCLUDE_DEPTH} deep"),
            });
        }
        let path = &l.args[1];
        let files = if path.contains(['*', '?', '[']) {
            glob_files(path)
        } else {
            vec![path.clone()]
        };
        for f in files {
            out.extend(with_includes(file_lines(&f)?, depth + 1)?);
        }
    }
    Ok(out)
}

/// The files a pattern names, as glob(3) finds them: each path component
/// may be a pattern, a leading dot is matched only by a leading dot, and
/// the matches come sorted.
fn glob_files(pattern: &str) -> Vec<String> {
    let absolute = pattern.starts_with('/');
    let mut found = vec![if absolute {
        "/".to_string()
    } else {
        String::new()
    }];
    let parts: Vec<&str> = pattern.split('/').filter(|p| !p.is_empty()).collect();
    for (k, part) in parts.iter().enumerate() {
        let last = k + 1 == parts.len();
        let mut next = Vec::new();
        for base in &found {
            let join = |name: &str| match base.as_str() {
                "" => name.to_string(),
                b if b.ends_with('/') => format!("{b}{name}"),
                b => format!("{b}/{name}"),
            };
            if !part.contains(['*', '?', '[']) {
                let p = join(part);
                if std::path::Path::new(&p).exists() {
                    next.push(p);
                }
                continue;
            }
            let dir = if base.is_empty() { "." } else { base.as_str() };
            let Ok(entries) = std::fs::read_dir(dir) else {
                continue;
            };
            let mut names: Vec<String> = entries
                .filter_map(|e| e.ok())
                .filter_map(|e| e.file_name().into_string().ok())
                .filter(|n| !n.starts_with('.') || part.starts_with('.'))
                .filter(|n| crate::glob::glob_match(part.as_bytes(), n.as_bytes(), false))
                .collect();
            names.sort();
            for n in names {
                let p = join(&n);
                if last || std::path::Path::new(&p).is_dir() {
                    next.push(p);
                }
            }
        }
        found = next;
    }
    found
}

/// The directives of the command line, read as redis-server reads its
/// arguments: `--name` starts a directive once the one before has a value
/// (so `--port --loglevel` gives `port` the value `--loglevel`), other
/// arguments are its values, and one argument may carry a name with its
/// values (`"--maxmemory 700mb"`). A lone `--save` followed by another
/// option, or last, means `save ""`. The text shown in errors quotes
/// each value, as Redis's does.
fn command_line(args: &[String]) -> Vec<Line> {
    let mut lines: Vec<Line> = Vec::new();
    // Whether the directive being read has a value yet.
    let mut handled = true;
    for (j, a) in args.iter().enumerate() {
        let next_is_option = args.get(j + 1).is_some_and(|n| n.starts_with("--"));
        if handled && a.starts_with("--") {
            let words = split(&a[2..]).unwrap_or_else(|| vec![a[2..].to_string()]);
            let mut line = Line {
                file: "(command line)".into(),
                no: lines.len() + 1,
                text: a[2..].to_string(),
                args: words,
            };
            handled = line.args.len() > 1;
            let lone_save = line.args.len() == 1 && line.args[0].eq_ignore_ascii_case("save");
            if lone_save && (next_is_option || j + 1 == args.len()) {
                line.args.push(String::new());
                line.text.push_str(" \"\"");
                handled = true;
            }
            lines.push(line);
        } else {
            match lines.last_mut() {
                Some(line) => {
                    line.text.push(' ');
                    line.text.push_str(&rewrite::repr(a));
                    line.args.push(a.clone());
                }
                // A value before any option: a directive without a name.
                None => lines.push(Line {
                    file: "(command line)".into(),
                    no: 1,
                    text: rewrite::repr(a),
                    args: vec![a.clone()],
                }),
            }
            handled = true;
        }
    }
    lines
}

fn split(text: &str) -> Option<Vec<String>> {
    let mut out = Vec::new();
    let mut ranges = Vec::new();
    if !crate::resp::parse::split_args(text.as_bytes(), &mut out, &mut ranges) {
        return None;
    }
    Some(
        ranges
            .into_iter()
            .map(|r| String::from_utf8_lossy(&out[r]).into_owned())
            .collect(),
    )
}

impl Config {
    pub fn defaults() -> Config {
        let mut values = BTreeMap::new();
        for (n, v) in defaults().chain(table::HIDDEN.iter().copied()) {
            values.insert(canonical(n), v.to_string());
        }
        Config {
            values,
            file: None,
            notify_flags: 0,
            users: Vec::new(),
            renames: Vec::new(),
        }
    }

    /// `args`: the process arguments after the program name.
    pub fn load(args: &[String]) -> Result<Config, ConfigError> {
        let mut c = Config::defaults();
        let mut lines = Vec::new();
        let mut i = 0;
        if let Some(first) = args.first() {
            if !first.starts_with("--") {
                if first == "-" {
                    let mut s = String::new();
                    std::io::Read::read_to_string(&mut std::io::stdin(), &mut s)
                        .map_err(|e| ConfigError::Open("-".into(), e))?;
                    lines = text_lines(first, &s)?;
                } else {
                    lines = file_lines(first)?;
                }
                if first != "-" {
                    c.file =
                        Some(std::fs::canonicalize(first).unwrap_or_else(|_| PathBuf::from(first)));
                }
                i = 1;
            }
        }
        lines.extend(command_line(&args[i..]));
        let lines = with_includes(lines, 0)?;
        let mut save_seen = false;
        for l in lines {
            c.apply_line(&l, &mut save_seen)?;
        }
        Ok(c)
    }

    /// Applies one directive of the file or the command line.
    /// `save_seen`: whether a `save` came before, as Redis's loading
    /// counts: the first replaces the default points, later ones add to
    /// them (`save ""` clears them).
    fn apply_line(&mut self, l: &Line, save_seen: &mut bool) -> Result<(), ConfigError> {
        let bad = |reason: &str| ConfigError::Bad {
            file: l.file.clone(),
            line: l.no,
            text: l.text.clone(),
            reason: reason.into(),
        };
        let canon = canonical(&l.args[0]);
        if canon == "user" {
            if l.args.len() < 2 {
                return Err(bad("Error in user declaration 'user': Syntax error"));
            }
            if self.users.iter().any(|u| u.args[0] == l.args[1]) {
                return Err(bad(&format!(
                    "Error in user declaration '{}': Duplicate user found. A user can only be defined once in config files",
                    l.args[1]
                )));
            }
            self.users.push(Directive::after_name(l));
            return Ok(());
        }
        // A well-formed include was read in its place (`with_includes`).
        if canon == "include" {
            return Err(bad("Bad directive or wrong number of arguments"));
        }
        if canon == "rename-command" {
            if l.args.len() != 3 {
                return Err(bad("Bad directive or wrong number of arguments"));
            }
            self.renames.push(Directive::after_name(l));
            return Ok(());
        }
        if FILE_ONLY.contains(&canon.as_str()) {
            return Err(bad(&format!(
                "Directive '{}' is not supported by slotkv",
                l.args[0]
            )));
        }
        if !is_known(&canon) {
            return Err(bad("Bad directive or wrong number of arguments"));
        }
        if l.args.len() < 2 && canon != "save" {
            // A directive of flags names them in its error, as Redis's.
            let flags = matches!(
                table::spec(&canon).map(|s| s.kind),
                Some(table::Kind::EnumFlags(_))
            );
            return Err(match validate(&canon, &[]) {
                Err(e) if flags => bad(&e),
                _ => bad("wrong number of arguments"),
            });
        }
        let mut v = validate(&canon, &l.args[1..]).map_err(|e| bad(&e))?;
        if canon == "client-output-buffer-limit" {
            v = table::merge_obuf_limits(self.raw(&canon), &v);
        }
        if canon == "save" {
            if *save_seen && !v.is_empty() {
                v = format!("{} {v}", self.raw("save")).trim().to_string();
            }
            *save_seen = true;
        }
        self.note_notify(&canon, &l.args[1..].join(" "));
        if canon == "dir" {
            if let Err(e) = std::env::set_current_dir(&v) {
                return Err(bad(&e.to_string()));
            }
        }
        self.values.insert(canon, v);
        Ok(())
    }

    fn note_notify(&mut self, canon: &str, raw: &str) {
        if canon == "notify-keyspace-events" {
            self.notify_flags = crate::server::notify::parse(raw).unwrap_or(0);
        }
    }

    /// The `notify-keyspace-events` classes (see `server::notify::class`).
    pub fn notify_keyspace_events(&self) -> u32 {
        self.notify_flags
    }

    fn raw(&self, name: &str) -> &str {
        self.values.get(name).map(|s| s.as_str()).unwrap_or("")
    }
    pub fn yes(&self, name: &str) -> bool {
        self.raw(name) == "yes"
    }
    pub fn num(&self, name: &str) -> i64 {
        self.raw(name).parse().unwrap_or(0)
    }

    /// The current value of any directive, as text ("" when unset).
    pub fn value(&self, name: &str) -> &str {
        self.raw(name)
    }
    pub fn flag(&self, name: &str) -> bool {
        self.yes(name)
    }
    pub fn int(&self, name: &str) -> i64 {
        self.num(name)
    }

    pub fn port(&self) -> u16 {
        self.num("port") as u16
    }
    /// The addresses `bind` names, with `port` (the clients' or the cluster
    /// bus's); `*` is every IPv4 address and `::*` every IPv6 one, as in
    /// Redis. An empty `bind` names none: the node then takes no TCP
    /// connections (CONFIG SET bind "").
    pub fn bind_addrs(&self, port: u16) -> Vec<(String, bool)> {
        self.bind()
            .iter()
            .map(|a| {
                let (optional, host) = match a.strip_prefix('-') {
                    Some(h) => (true, h),
                    None => (false, a.as_str()),
                };
                let host = match host {
                    "*" => "0.0.0.0",
                    "::*" => "::",
                    h => h,
                };
                let addr = if host.contains(':') {
                    format!("[{host}]:{port}")
                } else {
                    format!("{host}:{port}")
                };
                (addr, optional)
            })
            .collect()
    }

    /// `unixsocketperm`, kept in octal as Redis shows it.
    pub fn unixsocketperm(&self) -> u32 {
        u32::from_str_radix(self.raw("unixsocketperm"), 8).unwrap_or(0)
    }
    pub fn bind(&self) -> Vec<String> {
        self.raw("bind")
            .split_whitespace()
            .map(String::from)
            .collect()
    }
    pub fn dir(&self) -> String {
        std::env::current_dir()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|_| ".".into())
    }
    pub fn databases(&self) -> usize {
        self.num("databases").max(1) as usize
    }
    pub fn requirepass(&self) -> Option<Vec<u8>> {
        let p = self.raw("requirepass");
        (!p.is_empty()).then(|| p.as_bytes().to_vec())
    }
    pub fn rdbcompression(&self) -> bool {
        self.yes("rdbcompression")
    }
    pub fn appendonly(&self) -> bool {
        self.yes("appendonly")
    }
    pub fn appendfsync(&self) -> AppendFsync {
        match self.raw("appendfsync") {
            "always" => AppendFsync::Always,
            "no" => AppendFsync::No,
            _ => AppendFsync::EverySec,
        }
    }
    pub fn appendfilename(&self) -> String {
        self.raw("appendfilename").to_string()
    }
    pub fn appenddirname(&self) -> String {
        self.raw("appenddirname").to_string()
    }
    pub fn aof_load_truncated(&self) -> bool {
        self.yes("aof-load-truncated")
    }
    pub fn proto_max_bulk_len(&self) -> u64 {
        self.num("proto-max-bulk-len") as u64
    }
    pub fn client_query_buffer_limit(&self) -> u64 {
        self.num("client-query-buffer-limit") as u64
    }
    pub fn cluster_enabled(&self) -> bool {
        self.yes("cluster-enabled")
    }
    pub fn enable_debug_command(&self) -> String {
        self.raw("enable-debug-command").to_string()
    }
    pub fn logfile(&self) -> String {
        self.raw("logfile").to_string()
    }
    pub fn loglevel(&self) -> String {
        self.raw("loglevel").to_string()
    }
    pub fn daemonize(&self) -> bool {
        self.yes("daemonize")
    }
    pub fn pidfile(&self) -> String {
        self.raw("pidfile").to_string()
    }
    pub fn auto_aof_rewrite_percentage(&self) -> u64 {
        self.num("auto-aof-rewrite-percentage") as u64
    }
    pub fn auto_aof_rewrite_min_size(&self) -> u64 {
        self.num("auto-aof-rewrite-min-size") as u64
    }
    pub fn slowlog_log_slower_than(&self) -> i64 {
        self.num("slowlog-log-slower-than")
    }
    pub fn slowlog_max_len(&self) -> u64 {
        self.num("slowlog-max-len") as u64
    }
    pub fn dbfilename(&self) -> String {
        self.raw("dbfilename").to_string()
    }
    /// `save` as (seconds, changes) pairs.
    pub fn save_params(&self) -> Vec<(u64, u64)> {
        let v: Vec<u64> = self
            .raw("save")
            .split_whitespace()
            .filter_map(|x| x.parse().ok())
            .collect();
        v.chunks(2)
            .filter(|c| c.len() == 2)
            .map(|c| (c[0], c[1]))
            .collect()
    }
    pub fn maxmemory_policy(&self) -> String {
        self.raw("maxmemory-policy").to_string()
    }
    pub fn maxclients(&self) -> u64 {
        self.num("maxclients") as u64
    }
    /// Threads serving connections: `io-threads` when set above 1,
    /// otherwise half the cores (at least one). Measured on 2 cores with the
    /// client on the same machine, one thread served depth-1 traffic ~10%
    /// faster than two (see BENCHMARKS.md); more cores favour more threads.
    pub fn worker_threads(&self) -> usize {
        let io = self.num("io-threads");
        if io > 1 {
            return io as usize;
        }
        let cores = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1);
        (cores / 2).max(1)
    }

    pub fn protected_mode(&self) -> bool {
        self.yes("protected-mode")
    }
    pub fn tcp_keepalive(&self) -> u64 {
        self.num("tcp-keepalive") as u64
    }
    pub fn timeout(&self) -> u64 {
        self.num("timeout") as u64
    }
    /// Keys the client-side caching table may remember (0 = no limit).
    pub fn tracking_table_max_keys(&self) -> usize {
        self.num("tracking-table-max-keys").max(0) as usize
    }

    /// CONFIG GET: every directive whose name matches `pattern`.
    pub fn get(&self, pattern: &[u8]) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for (name, _) in defaults() {
            if crate::glob::glob_match(pattern, name.as_bytes(), true) {
                let mut v = self.raw(&canonical(name)).to_string();
                if name == "dir" {
                    v = self.dir();
                }
                out.push((name.to_string(), v));
            }
        }
        for (name, _) in table::HIDDEN {
            if pattern.eq_ignore_ascii_case(name.as_bytes()) {
                out.push((name.to_string(), self.raw(name).to_string()));
            }
        }
        out
    }

    /// Whether CONFIG SET of `pairs` must answer `-LOADING` while a
    /// dataset loads: as in Redis, when one of them is a setting that may
    /// not change then (`appendonly`, `repl-diskless-load`, `dir`) and no
    /// earlier one is unknown or immutable (those errors come first).
    pub fn denied_while_loading(pairs: &[(&[u8], &[u8])]) -> bool {
        for (k, _) in pairs {
            let canon = canonical(&String::from_utf8_lossy(k));
            if !is_known(&canon)
                || FILE_ONLY.contains(&canon.as_str())
                || table::spec(&canon).is_some_and(|s| s.immutable)
            {
                return false;
            }
            if matches!(canon.as_str(), "appendonly" | "repl-diskless-load" | "dir") {
                return true;
            }
        }
        false
    }

    /// CONFIG SET. `protected_ok`: whether this client may change the
    /// protected settings (`dir`, `dbfilename`), as
    /// `enable-protected-configs` allows it.
    pub fn set(
        &mut self,
        pairs: &[(&[u8], &[u8])],
        protected_ok: bool,
    ) -> Result<Vec<String>, String> {
        let mut staged: Vec<(String, String, String, String)> = Vec::new();
        for (k, v) in pairs {
            let name = String::from_utf8_lossy(k).to_string();
            let canon = canonical(&name);
            if !is_known(&canon) || FILE_ONLY.contains(&canon.as_str()) {
                return Err(format!(
                    "ERR Unknown option or number of arguments for CONFIG SET - '{name}'"
                ));
            }
            if staged.iter().any(|(c, _, _, _)| *c == canon) {
                return Err(format!(
                    "ERR CONFIG SET failed (possibly related to argument '{name}') - duplicate parameter"
                ));
            }
            if table::spec(&canon).is_some_and(|s| s.immutable) {
                return Err(format!(
                    "ERR CONFIG SET failed (possibly related to argument '{name}') - can't set immutable config"
                ));
            }
            if !protected_ok && matches!(canon.as_str(), "dir" | "dbfilename") {
                return Err(format!(
                    "ERR CONFIG SET failed (possibly related to argument '{name}') - can't set protected config"
                ));
            }
            let raw = String::from_utf8_lossy(v).to_string();
            let parts: Vec<String> = if matches!(canon.as_str(), "save" | "bind" | "replicaof") {
                raw.split_whitespace().map(String::from).collect()
            } else {
                vec![raw.clone()]
            };
            let mut val = validate(&canon, &parts).map_err(|e| {
                format!("ERR CONFIG SET failed (possibly related to argument '{name}') - {e}")
            })?;
            if canon == "client-output-buffer-limit" {
                val = table::merge_obuf_limits(self.raw(&canon), &val);
            }
            staged.push((canon, val, name, raw));
        }
        let mut changed = Vec::new();
        for (canon, val, name, raw) in staged {
            self.note_notify(&canon, &raw);
            if canon == "dir" {
                std::env::set_current_dir(&val).map_err(|e| {
                    format!("ERR CONFIG SET failed (possibly related to argument '{name}') - {e}")
                })?;
            }
            self.values.insert(canon.clone(), val);
            changed.push(canon);
        }
        Ok(changed)
    }

    /// CONFIG REWRITE (see [`rewrite`]): the file is replaced atomically.
    pub fn rewrite(&self, rt: &rewrite::Runtime) -> Result<(), ConfigError> {
        let path = self.file.clone().ok_or(ConfigError::NoFile)?;
        let old = std::fs::read_to_string(&path).unwrap_or_default();
        let out = rewrite::render_file(self, &old, rt);
        crate::persistence::aof::write_atomic(&path, out.as_bytes()).map_err(ConfigError::Rewrite)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(args: &[&str]) -> Result<Config, ConfigError> {
        Config::load(&args.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn defaults_and_overrides() {
        let c = load(&["--port", "7000", "--appendonly", "yes", "--save", ""]).unwrap();
        assert_eq!(c.port(), 7000);
        assert!(c.appendonly());
        assert_eq!(c.get(b"save"), vec![("save".into(), "".into())]);
        assert_eq!(c.get(b"maxmemory"), vec![("maxmemory".into(), "0".into())]);
        assert_eq!(c.databases(), 16);
        // Defaults are redis-server's own, not those of the capture run.
        assert!(!c.daemonize());
        assert_eq!(c.pidfile(), "");
        assert_eq!(Config::defaults().port(), 6379);
    }

    #[test]
    fn bad_values_name_file_line_and_directive() {
        let dir = std::env::temp_dir().join(format!("slotkv-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("bad.conf");
        std::fs::write(&f, "port 7000\n\nappendfsync sometimes\n").unwrap();
        let e = load(&[f.to_str().unwrap()]).unwrap_err().to_string();
        assert!(e.contains("bad.conf"), "{e}");
        assert!(e.contains("at line 3"), "{e}");
        assert!(e.contains(">>> 'appendfsync sometimes'"), "{e}");
        assert!(e.contains("must be one of the following"), "{e}");
        std::fs::write(&f, "nosuchdirective 1\n").unwrap();
        let e = load(&[f.to_str().unwrap()]).unwrap_err().to_string();
        assert!(
            e.contains("Bad directive or wrong number of arguments"),
            "{e}"
        );
        let e = load(&["--port", "99999"]).unwrap_err().to_string();
        assert!(
            e.contains("argument must be between 0 and 65535 inclusive"),
            "{e}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn set_is_all_or_nothing() {
        let mut c = Config::defaults();
        assert!(c
            .set(&[(b"maxmemory", b"1mb"), (b"port", b"-5")], true)
            .is_err());
        assert_eq!(c.get(b"maxmemory")[0].1, "0");
        c.set(&[(b"maxmemory", b"1mb")], true).unwrap();
        assert_eq!(c.get(b"maxmemory")[0].1, "1048576");
        let e = c.set(&[(b"daemonize", b"yes")], true).unwrap_err();
        assert!(e.contains("can't set immutable config"), "{e}");
        let e = c.set(&[(b"nope", b"1")], true).unwrap_err();
        assert_eq!(
            e,
            "ERR Unknown option or number of arguments for CONFIG SET - 'nope'"
        );
    }

    #[test]
    fn debian_redis_conf_loads() {
        let p = "/etc/redis/redis.conf";
        if std::path::Path::new(p).exists() {
            // It sets `dir /var/lib/redis`; restore our directory after.
            let cwd = std::env::current_dir().unwrap();
            let r = load(&[p]);
            std::env::set_current_dir(cwd).unwrap();
            r.unwrap();
        }
    }

    proptest::proptest! {
        /// Whatever a config file holds (known directives with any
        /// arguments, quotes included, or lines of anything), loading it
        /// gives a config or an error naming the file and one of its
        /// lines; nothing panics. `dir` is left out: it moves the test
        /// process's working directory.
        #[test]
        fn any_config_file_loads_or_names_its_bad_line(
            lines in proptest::collection::vec(
                (
                    0usize..table::SPECS.len(),
                    proptest::collection::vec("[ -~]{0,12}", 0..4),
                    proptest::bool::ANY,
                ),
                1..12,
            )
        ) {
            let mut text = String::new();
            for (i, args, anything) in &lines {
                let name = table::SPECS[*i].name;
                if !*anything && name != "dir" {
                    text.push_str(name);
                    text.push(' ');
                }
                text.push_str(&args.join(" "));
                text.push('\n');
            }
            static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
            let path = std::env::temp_dir().join(format!(
                "slotkv-cfg-fuzz-{}-{}.conf",
                std::process::id(),
                N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            ));
            std::fs::write(&path, &text).expect("write the file");
            let name = path.to_str().expect("a UTF-8 path").to_string();
            let loaded = Config::load(std::slice::from_ref(&name));
            let _ = std::fs::remove_file(&path);
            match loaded {
                Ok(_) => {}
                Err(ConfigError::Bad { file, line, .. }) => {
                    proptest::prop_assert_eq!(file, name);
                    proptest::prop_assert!(line >= 1 && line <= lines.len(), "line {}", line);
                }
                Err(e) => proptest::prop_assert!(false, "{}", e),
            }
        }
    }

    /// `include` reads another file in place, as redis-server does: later
    /// lines win over the included ones and the other way round, a
    /// pattern reads its matches in name order (none is fine), a missing
    /// plain file is fatal, an error inside an included file names it.
    #[test]
    fn include_reads_files_in_place() {
        let dir = std::env::temp_dir().join(format!("slotkv-include-{}", std::process::id()));
        let confd = dir.join("conf.d");
        std::fs::create_dir_all(&confd).unwrap();
        let main = dir.join("main.conf");
        std::fs::write(confd.join("b.conf"), "maxmemory 2mb\nport 7002\n").unwrap();
        std::fs::write(confd.join("a.conf"), "maxmemory 1mb\nport 7001\n").unwrap();
        std::fs::write(confd.join(".hidden.conf"), "port 9999\n").unwrap();
        std::fs::write(dir.join("x.conf"), "hz 20\n").unwrap();
        std::fs::write(
            &main,
            format!(
                "port 7000\ninclude {}/*.conf\nINCLUDE \"{}\"\ninclude {}/none-*.conf\nhz 30\n",
                confd.display(),
                dir.join("x.conf").display(),
                dir.display()
            ),
        )
        .unwrap();
        let c = load(&[main.to_str().unwrap(), "--maxmemory", "3mb"]).unwrap();
        assert_eq!(c.port(), 7002);
        assert_eq!(c.value("maxmemory"), "3145728");
        assert_eq!(c.value("hz"), "30");
        let c = load(&[
            main.to_str().unwrap(),
            "--include",
            dir.join("x.conf").to_str().unwrap(),
        ])
        .unwrap();
        assert_eq!(c.value("hz"), "20");
        std::fs::write(&main, "include /nonexistent/slotkv.conf\n").unwrap();
        let e = load(&[main.to_str().unwrap()]).unwrap_err().to_string();
        assert!(
            e.starts_with("Fatal error, can't open config file '/nonexistent/slotkv.conf'"),
            "{e}"
        );
        std::fs::write(confd.join("b.conf"), "port 7002\nappendfsync sometimes\n").unwrap();
        std::fs::write(&main, format!("include {}/b.conf\n", confd.display())).unwrap();
        let e = load(&[main.to_str().unwrap()]).unwrap_err().to_string();
        assert!(e.contains("b.conf, at line 2"), "{e}");
        std::fs::write(&main, format!("include {}\n", main.display())).unwrap();
        let e = load(&[main.to_str().unwrap()]).unwrap_err().to_string();
        assert!(e.contains("Includes nest more than 16 deep"), "{e}");
        std::fs::write(&main, "include a b\n").unwrap();
        let e = load(&[main.to_str().unwrap()]).unwrap_err().to_string();
        assert!(
            e.contains("Bad directive or wrong number of arguments"),
            "{e}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
