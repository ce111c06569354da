//! Access control, as Redis 7.0 has it: users with passwords (kept as
//! SHA-256 hashes), selectors of commands, categories, key and channel
//! patterns, the ACL file and the ACL log.
//!
//! This layer knows command names, categories and argument positions (the
//! command layer hands them over as a [`Catalog`] and [`Request`]s), and
//! nothing of connections.

pub mod catalog;
pub mod log;
pub mod selector;
pub mod user;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};

pub use catalog::{Catalog, Entry, CATEGORIES};
pub use selector::Request;
pub use user::User;

/// Why a command was refused, ordered as Redis ranks them when several
/// selectors refuse for different reasons.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Reason {
    Command = 1,
    Key = 2,
    Auth = 3,
    Channel = 4,
}

impl Reason {
    pub fn name(self) -> &'static str {
        match self {
            Reason::Command => "command",
            Reason::Key => "key",
            Reason::Auth => "auth",
            Reason::Channel => "channel",
        }
    }
}

/// A refusal: its reason and the argument at fault (a key or channel).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Denied {
    pub reason: Reason,
    pub pos: usize,
}

/// A rule that cannot be applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SetError {
    #[error("Unknown command or category name in ACL")]
    UnknownName,
    #[error("Syntax error")]
    Syntax,
    #[error("Adding a pattern after the * pattern (or the 'allkeys' flag) is not valid and does not have any effect. Try 'resetkeys' to start with an empty list of patterns")]
    KeyAfterAll,
    #[error("Adding a pattern after the * pattern (or the 'allchannels' flag) is not valid and does not have any effect. Try 'resetchannels' to start with an empty list of channels")]
    ChannelAfterAll,
    #[error("The password you are trying to remove from the user does not exist")]
    NoSuchPassword,
    #[error("The password hash must be exactly 64 characters and contain only lowercase hexadecimal characters")]
    BadHash,
    #[error("Allowing first-arg of a subcommand is not supported")]
    SubFirstArg,
}

fn lossy(b: &[u8]) -> std::borrow::Cow<'_, str> {
    String::from_utf8_lossy(b)
}

/// Whether a user name or pattern has a space or NUL (not allowed).
pub fn has_space(s: &[u8]) -> bool {
    s.iter()
        .any(|&b| b.is_ascii_whitespace() || b == 0 || b == 0x0b)
}

/// Joins a selector given over several arguments (`(~k` `+get)`) into
/// one. Fails with the index of an argument that opens a selector never
/// closed.
pub fn merge_selector_args(args: &[&[u8]]) -> Result<Vec<Vec<u8>>, usize> {
    let mut out = Vec::with_capacity(args.len());
    let mut open: Option<(usize, Vec<u8>)> = None;
    for (j, op) in args.iter().enumerate() {
        // An argument that opens a selector starts a new one even inside
        // another: Redis drops the unclosed one, and an error names the
        // last opening.
        if op.first() == Some(&b'(') && op.last() != Some(&b')') {
            open = Some((j, op.to_vec()));
            continue;
        }
        if let Some((_, sel)) = &mut open {
            sel.push(b' ');
            sel.extend_from_slice(op);
            if op.last() == Some(&b')') {
                if let Some((_, sel)) = open.take() {
                    out.push(sel);
                }
            }
            continue;
        }
        out.push(op.to_vec());
    }
    match open {
        Some((j, _)) => Err(j),
        None => Ok(out),
    }
}

/// The users, shared by every connection. A change replaces the user's
/// `Arc` and bumps the generation; connections notice it before their
/// next command.
pub struct Acl {
    pub cat: Arc<Catalog>,
    users: RwLock<BTreeMap<Vec<u8>, Arc<User>>>,
    generation: AtomicU64,
    /// `acl-pubsub-default allchannels`.
    pubsub_all: AtomicBool,
    /// The default user is on and needs no password: new connections
    /// start authenticated.
    default_open: AtomicBool,
    pub log: Mutex<log::Log>,
}

impl Acl {
    pub fn new(cat: Arc<Catalog>) -> Acl {
        let mut users = BTreeMap::new();
        users.insert(b"default".to_vec(), Arc::new(User::default_user(&cat)));
        Acl {
            cat,
            users: RwLock::new(users),
            generation: AtomicU64::new(0),
            pubsub_all: AtomicBool::new(false),
            default_open: AtomicBool::new(true),
            log: Mutex::new(log::Log::default()),
        }
    }

    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    pub fn set_pubsub_default(&self, all: bool) {
        self.pubsub_all.store(all, Ordering::Relaxed);
    }

    fn pubsub_all(&self) -> bool {
        self.pubsub_all.load(Ordering::Relaxed)
    }

    /// Whether a connection that has not authenticated must (Redis's
    /// `authRequired`): the default user has a password or is off.
    pub fn auth_required(&self) -> bool {
        !self.default_open.load(Ordering::Relaxed)
    }

    fn changed(&self, users: &BTreeMap<Vec<u8>, Arc<User>>) {
        let open = users
            .get(b"default".as_slice())
            .is_some_and(|d| d.nopass() && d.enabled());
        self.default_open.store(open, Ordering::Relaxed);
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    pub fn user(&self, name: &[u8]) -> Option<Arc<User>> {
        self.users.read().get(name).cloned()
    }

    pub fn default_user(&self) -> Arc<User> {
        self.user(b"default")
            .unwrap_or_else(|| Arc::new(User::default_user(&self.cat)))
    }

    /// Every user, in name order.
    pub fn users(&self) -> Vec<Arc<User>> {
        self.users.read().values().cloned().collect()
    }

    /// The user if it exists, is on, and `pass` is one of its passwords.
    pub fn authenticate(&self, name: &[u8], pass: &[u8]) -> Option<Arc<User>> {
        self.user(name)
            .filter(|u| u.enabled() && u.password_ok(pass))
    }

    /// ACL SETUSER: applies every rule to a copy, and keeps the copy only
    /// if all applied. Returns the user as it was, if it existed.
    pub fn set_user(&self, name: &[u8], ops: &[&[u8]]) -> Result<Option<Arc<User>>, String> {
        if has_space(name) {
            return Err("Usernames can't contain spaces or null characters".into());
        }
        let merged = merge_selector_args(ops).map_err(|i| {
            format!(
                "Unmatched parenthesis in acl selector starting at '{}'.",
                lossy(ops[i])
            )
        })?;
        let mut users = self.users.write();
        let old = users.get(name).cloned();
        let mut u = match &old {
            Some(u) => (**u).clone(),
            None => User::new(&self.cat, name, self.pubsub_all()),
        };
        for op in &merged {
            u.apply(&self.cat, op, self.pubsub_all())
                .map_err(|e| format!("Error in ACL SETUSER modifier '{}': {e}", lossy(op)))?;
        }
        users.insert(name.to_vec(), Arc::new(u));
        self.changed(&users);
        Ok(old)
    }

    /// ACL DELUSER: how many of the names existed.
    pub fn delete(&self, names: &[&[u8]]) -> Result<usize, &'static str> {
        if names.iter().any(|n| *n == b"default") {
            return Err("The 'default' user cannot be removed");
        }
        let mut users = self.users.write();
        let n = names.iter().filter(|n| users.remove(**n).is_some()).count();
        self.changed(&users);
        Ok(n)
    }

    /// `requirepass`: the default user's only password, or none needed.
    pub fn set_default_password(&self, pass: Option<&[u8]>) {
        let mut users = self.users.write();
        let mut d = users
            .get(b"default".as_slice())
            .map(|u| (**u).clone())
            .unwrap_or_else(|| User::default_user(&self.cat));
        let _ = d.apply(&self.cat, b"resetpass", false);
        let _ = match pass {
            Some(p) => {
                let mut op = b">".to_vec();
                op.extend_from_slice(p);
                d.apply(&self.cat, &op, false)
            }
            None => d.apply(&self.cat, b"nopass", false),
        };
        users.insert(b"default".to_vec(), Arc::new(d));
        self.changed(&users);
    }

    /// Checks a `user <name> rules…` directive without applying it: the
    /// index (among the rules) of the first bad one, and why. Unknown
    /// commands are reported too.
    pub fn validate_rules(&self, name: &[u8], rules: &[&[u8]]) -> Result<(), (usize, String)> {
        if has_space(name) {
            return Err((0, "Spaces not allowed in ACL usernames".into()));
        }
        let merged = merge_selector_args(rules)
            .map_err(|i| (i, "Unmatched parenthesis in acl selector".to_string()))?;
        let mut u = User::new(&self.cat, name, self.pubsub_all());
        for (j, op) in merged.iter().enumerate() {
            u.apply(&self.cat, op, self.pubsub_all())
                .map_err(|e| (j, e.to_string()))?;
        }
        Ok(())
    }

    /// Replaces every user with the given definitions (`user` directives
    /// at start-up). `default` is reset first when it is redefined.
    pub fn load_definitions(&self, defs: &[(Vec<u8>, Vec<Vec<u8>>)]) -> Result<(), String> {
        let mut users = self.users.write();
        for (name, rules) in defs {
            let refs: Vec<&[u8]> = rules.iter().map(|r| r.as_slice()).collect();
            let merged = merge_selector_args(&refs).map_err(|i| {
                format!(
                    "Unmatched parenthesis in acl selector starting at '{}'.",
                    lossy(&rules[i])
                )
            })?;
            let mut u = match users.get(name) {
                Some(d) => {
                    let mut d = (**d).clone();
                    let _ = d.apply(&self.cat, b"reset", self.pubsub_all());
                    d
                }
                None => User::new(&self.cat, name, self.pubsub_all()),
            };
            for op in &merged {
                u.apply(&self.cat, op, self.pubsub_all()).map_err(|e| {
                    format!(
                        "Error loading ACL rule '{}' for the user named '{}': {e}",
                        lossy(op),
                        lossy(name)
                    )
                })?;
            }
            if !u.enabled() {
                tracing::info!(
                    "The user '{}' is disabled (there is no 'on' modifier in the user description). Make sure this is not a configuration error.",
                    lossy(name)
                );
            }
            users.insert(name.clone(), Arc::new(u));
        }
        self.changed(&users);
        Ok(())
    }

    /// ACL LOAD (and start-up with `aclfile`): all of the file or nothing.
    /// `shown` is the file name as configured, for messages.
    pub fn load_file(&self, path: &std::path::Path, shown: &str) -> Result<(), String> {
        let text = std::fs::read(path).map_err(|e| {
            format!(
                "Error loading ACLs, opening file '{shown}': {}",
                crate::util::strerror(&e)
            )
        })?;
        let mut errors = String::new();
        let mut fresh: BTreeMap<Vec<u8>, Arc<User>> = BTreeMap::new();
        let trim = |s: &[u8], set: &[u8]| -> Vec<u8> {
            let start = s.iter().position(|b| !set.contains(b)).unwrap_or(s.len());
            let end = s
                .iter()
                .rposition(|b| !set.contains(b))
                .map_or(start, |e| e + 1);
            s[start..end.max(start)].to_vec()
        };
        for (i, line) in text.split(|&b| b == b'\n').enumerate() {
            let no = i + 1;
            let line = trim(line, b" \t\r\n");
            if line.is_empty() {
                continue;
            }
            let argv: Vec<&[u8]> = line.split(|&b| b == b' ').collect();
            if argv[0] != b"user" || argv.len() < 2 {
                errors.push_str(&format!(
                    "{shown}:{no} should start with user keyword followed by the username. "
                ));
                continue;
            }
            let name = argv[1];
            if has_space(name) {
                errors.push_str(&format!(
                    "'{shown}:{no}: username '{}' contains invalid characters. ",
                    lossy(name)
                ));
                continue;
            }
            if fresh.contains_key(name) {
                errors.push_str(&format!(
                    "WARNING: Duplicate user '{}' found on line {no}. ",
                    lossy(name)
                ));
                continue;
            }
            let mut u = User::new(&self.cat, name, self.pubsub_all());
            let merged = match merge_selector_args(&argv[2..]) {
                Ok(m) => m,
                Err(_) => {
                    errors.push_str(&format!(
                        "{shown}:{no}: Unmatched parenthesis in selector definition."
                    ));
                    Vec::new()
                }
            };
            let mut syntax_error = false;
            for op in &merged {
                let op = trim(op, b"\t\r\n");
                if let Err(e) = u.apply(&self.cat, &op, self.pubsub_all()) {
                    if e == SetError::UnknownName {
                        errors.push_str(&format!(
                            "{shown}:{no}: Error in applying operation '{}': {e}. ",
                            lossy(&op)
                        ));
                    } else if !syntax_error {
                        errors.push_str(&format!("{shown}:{no}: {e}. "));
                        syntax_error = true;
                    }
                }
            }
            fresh.insert(name.to_vec(), Arc::new(u));
        }
        if !errors.is_empty() {
            errors.push_str("WARNING: ACL errors detected, no change to the previously active ACL rules was performed");
            return Err(errors);
        }
        fresh
            .entry(b"default".to_vec())
            .or_insert_with(|| Arc::new(User::default_user(&self.cat)));
        let mut users = self.users.write();
        *users = fresh;
        self.changed(&users);
        Ok(())
    }

    /// The ACL file's text: one `user` line per user, in name order.
    pub fn file_text(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for u in self.users() {
            out.extend_from_slice(b"user ");
            out.extend_from_slice(&u.name);
            out.push(b' ');
            out.extend_from_slice(&u.describe(&self.cat));
            out.push(b'\n');
        }
        out
    }

    /// ACL SAVE: written to a temporary file, synced, then renamed over
    /// the old one.
    pub fn save_file(&self, path: &std::path::Path) -> std::io::Result<()> {
        use std::io::Write;
        let text = self.file_text();
        let tmp = path.with_file_name(format!(
            "{}.tmp-{}-{}",
            path.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            std::process::id(),
            crate::keyspace::now_ms()
        ));
        let res = (|| {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(&text)?;
            f.sync_all()?;
            std::fs::rename(&tmp, path)
        })();
        if res.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        res
    }

    /// Adds a refusal or failed login to the ACL log.
    pub fn log_denial(&self, e: log::Entry, max_len: usize) {
        self.log.lock().add(e, max_len);
    }
}

#[cfg(test)]
mod tests;
