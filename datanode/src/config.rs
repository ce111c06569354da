//! TEMPORARY minimal configuration (replaced by the full redis.conf module).

use std::collections::BTreeMap;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum AppendFsync {
    Always,
    EverySec,
    No,
}

#[derive(Clone, Debug, Default)]
pub struct Config {
    pub values: BTreeMap<String, String>,
    pub file: Option<std::path::PathBuf>,
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

impl Config {
    pub fn load(args: &[String]) -> Result<Config, ConfigError> {
        let mut c = Config::default();
        let mut i = 0;
        if let Some(first) = args.first() {
            if !first.starts_with("--") {
                let text = std::fs::read_to_string(first)
                    .map_err(|e| ConfigError(format!("can't open config file '{first}': {e}")))?;
                for line in text.lines() {
                    let line = line.trim();
                    if line.is_empty() || line.starts_with('#') {
                        continue;
                    }
                    let (k, v) = line.split_once(' ').unwrap_or((line, ""));
                    c.values.insert(
                        k.to_ascii_lowercase(),
                        v.trim().trim_matches('"').to_string(),
                    );
                }
                c.file = Some(first.into());
                i = 1;
            }
        }
        while i < args.len() {
            let name = args[i].trim_start_matches("--").to_ascii_lowercase();
            let mut vals = Vec::new();
            i += 1;
            while i < args.len() && !args[i].starts_with("--") {
                vals.push(args[i].clone());
                i += 1;
            }
            c.values.insert(name, vals.join(" "));
        }
        Ok(c)
    }

    fn s(&self, k: &str, d: &str) -> String {
        self.values.get(k).cloned().unwrap_or_else(|| d.to_string())
    }
    fn b(&self, k: &str, d: bool) -> bool {
        self.values.get(k).map(|v| v == "yes").unwrap_or(d)
    }
    fn n(&self, k: &str, d: i64) -> i64 {
        self.values.get(k).and_then(|v| v.parse().ok()).unwrap_or(d)
    }
    pub fn port(&self) -> u16 {
        self.n("port", 6379) as u16
    }
    pub fn bind(&self) -> Vec<String> {
        self.s("bind", "127.0.0.1")
            .split_whitespace()
            .map(|s| s.trim_start_matches('-').to_string())
            .collect()
    }
    pub fn dir(&self) -> String {
        self.s("dir", ".")
    }
    pub fn databases(&self) -> usize {
        self.n("databases", 16) as usize
    }
    pub fn requirepass(&self) -> Option<Vec<u8>> {
        self.values
            .get("requirepass")
            .filter(|s| !s.is_empty())
            .map(|s| s.as_bytes().to_vec())
    }
    pub fn appendonly(&self) -> bool {
        self.b("appendonly", false)
    }
    pub fn appendfsync(&self) -> AppendFsync {
        match self.s("appendfsync", "everysec").as_str() {
            "always" => AppendFsync::Always,
            "no" => AppendFsync::No,
            _ => AppendFsync::EverySec,
        }
    }
    pub fn appendfilename(&self) -> String {
        self.s("appendfilename", "appendonly.aof")
    }
    pub fn appenddirname(&self) -> String {
        self.s("appenddirname", "appendonlydir")
    }
    pub fn aof_load_truncated(&self) -> bool {
        self.b("aof-load-truncated", true)
    }
    pub fn proto_max_bulk_len(&self) -> u64 {
        self.n("proto-max-bulk-len", 512 * 1024 * 1024) as u64
    }
    pub fn cluster_enabled(&self) -> bool {
        self.b("cluster-enabled", false)
    }
    pub fn enable_debug_command(&self) -> String {
        self.s("enable-debug-command", "no")
    }
    pub fn logfile(&self) -> String {
        self.s("logfile", "")
    }
    pub fn pidfile(&self) -> String {
        self.s("pidfile", "")
    }
    pub fn auto_aof_rewrite_percentage(&self) -> u64 {
        self.n("auto-aof-rewrite-percentage", 100) as u64
    }
    pub fn auto_aof_rewrite_min_size(&self) -> u64 {
        self.n("auto-aof-rewrite-min-size", 64 * 1024 * 1024) as u64
    }
    pub fn slowlog_log_slower_than(&self) -> i64 {
        self.n("slowlog-log-slower-than", 10000)
    }
    pub fn slowlog_max_len(&self) -> u64 {
        self.n("slowlog-max-len", 128) as u64
    }
    pub fn client_query_buffer_limit(&self) -> u64 {
        self.n("client-query-buffer-limit", 1024 * 1024 * 1024) as u64
    }
    pub fn maxclients(&self) -> u64 {
        self.n("maxclients", 10000) as u64
    }
    pub fn get(&self, _pattern: &[u8]) -> Vec<(String, String)> {
        Vec::new()
    }
    pub fn set(&mut self, pairs: &[(&[u8], &[u8])]) -> Result<Vec<&'static str>, String> {
        for (k, v) in pairs {
            self.values.insert(
                String::from_utf8_lossy(k).to_lowercase(),
                String::from_utf8_lossy(v).to_string(),
            );
        }
        Ok(Vec::new())
    }
}
