//! A user: whether it may log in, its password hashes, and its selectors
//! (the root one first).

use sha2::{Digest, Sha256};

use super::catalog::Catalog;
use super::selector::{Request, Selector};
use super::{Denied, Reason, SetError};

pub const ENABLED: u8 = 1;
pub const DISABLED: u8 = 1 << 1;
pub const NOPASS: u8 = 1 << 2;
pub const SANITIZE_PAYLOAD: u8 = 1 << 3;
pub const SANITIZE_PAYLOAD_SKIP: u8 = 1 << 4;

/// Flag names in the order ACL LIST and GETUSER show them.
const FLAG_NAMES: &[(u8, &str)] = &[
    (ENABLED, "on"),
    (DISABLED, "off"),
    (NOPASS, "nopass"),
    (SANITIZE_PAYLOAD_SKIP, "skip-sanitize-payload"),
    (SANITIZE_PAYLOAD, "sanitize-payload"),
];

/// SHA-256 of a password, in lower-case hex (how users keep passwords).
pub fn hash_password(pass: &[u8]) -> String {
    let digest = Sha256::digest(pass);
    let mut out = String::with_capacity(64);
    for b in digest {
        out.push(char::from(b"0123456789abcdef"[(b >> 4) as usize]));
        out.push(char::from(b"0123456789abcdef"[(b & 15) as usize]));
    }
    out
}

fn valid_hash(h: &[u8]) -> bool {
    h.len() == 64 && h.iter().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'))
}

/// Compares two equal-length strings in time independent of where they
/// differ.
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |d, (x, y)| d | (x ^ y)) == 0
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    pub name: Vec<u8>,
    pub flags: u8,
    pub passwords: Vec<String>,
    pub selectors: Vec<Selector>,
}

fn eq_ic(a: &[u8], b: &str) -> bool {
    a.eq_ignore_ascii_case(b.as_bytes())
}

impl User {
    /// A new user: disabled, no password, nothing allowed.
    pub fn new(cat: &Catalog, name: &[u8], pubsub_all: bool) -> User {
        User {
            name: name.to_vec(),
            flags: DISABLED,
            passwords: Vec::new(),
            selectors: vec![Selector::new(cat, true, pubsub_all)],
        }
    }

    /// The `default` user as a fresh server has it.
    pub fn default_user(cat: &Catalog) -> User {
        let mut u = User::new(cat, b"default", false);
        for op in ["+@all", "~*", "&*", "on", "nopass"] {
            let _ = u.apply(cat, op.as_bytes(), false);
        }
        u
    }

    pub fn root(&self) -> &Selector {
        &self.selectors[0]
    }

    pub fn enabled(&self) -> bool {
        self.flags & DISABLED == 0
    }

    pub fn nopass(&self) -> bool {
        self.flags & NOPASS != 0
    }

    /// Whether the root selector allows everything, so checks can be
    /// skipped.
    pub fn unrestricted(&self) -> bool {
        let r = self.root();
        r.allcommands && r.allkeys && r.allchannels
    }

    /// Applies one rule or flag (`on`, `>secret`, `(~k +get)`, `reset`…).
    pub fn apply(&mut self, cat: &Catalog, op: &[u8], pubsub_all: bool) -> Result<(), SetError> {
        if op.is_empty() {
            return Ok(());
        }
        if eq_ic(op, "on") {
            self.flags = (self.flags | ENABLED) & !DISABLED;
        } else if eq_ic(op, "off") {
            self.flags = (self.flags | DISABLED) & !ENABLED;
        } else if eq_ic(op, "skip-sanitize-payload") {
            self.flags = (self.flags | SANITIZE_PAYLOAD_SKIP) & !SANITIZE_PAYLOAD;
        } else if eq_ic(op, "sanitize-payload") {
            self.flags = (self.flags | SANITIZE_PAYLOAD) & !SANITIZE_PAYLOAD_SKIP;
        } else if eq_ic(op, "nopass") {
            self.flags |= NOPASS;
            self.passwords.clear();
        } else if eq_ic(op, "resetpass") {
            self.flags &= !NOPASS;
            self.passwords.clear();
        } else if matches!(op[0], b'>' | b'#') {
            let hash = if op[0] == b'>' {
                hash_password(&op[1..])
            } else if valid_hash(&op[1..]) {
                String::from_utf8_lossy(&op[1..]).into_owned()
            } else {
                return Err(SetError::BadHash);
            };
            if !self.passwords.contains(&hash) {
                self.passwords.push(hash);
            }
            self.flags &= !NOPASS;
        } else if matches!(op[0], b'<' | b'!') {
            let hash = if op[0] == b'<' {
                hash_password(&op[1..])
            } else if valid_hash(&op[1..]) {
                String::from_utf8_lossy(&op[1..]).into_owned()
            } else {
                return Err(SetError::BadHash);
            };
            let at = self
                .passwords
                .iter()
                .position(|p| *p == hash)
                .ok_or(SetError::NoSuchPassword)?;
            self.passwords.remove(at);
        } else if op[0] == b'(' && op[op.len() - 1] == b')' {
            let inner = &op[1..op.len() - 1];
            let mut buf = Vec::new();
            let mut ranges = Vec::new();
            if !crate::resp::parse::split_args(inner, &mut buf, &mut ranges) {
                return Err(SetError::Syntax);
            }
            let mut s = Selector::new(cat, false, pubsub_all);
            for r in ranges {
                s.apply(cat, &buf[r])?;
            }
            self.selectors.push(s);
        } else if eq_ic(op, "clearselectors") {
            self.selectors.truncate(1);
        } else if eq_ic(op, "reset") {
            for o in ["resetpass", "resetkeys", "resetchannels"] {
                self.apply(cat, o.as_bytes(), pubsub_all)?;
            }
            if pubsub_all {
                self.apply(cat, b"allchannels", pubsub_all)?;
            }
            for o in ["off", "sanitize-payload", "clearselectors", "-@all"] {
                self.apply(cat, o.as_bytes(), pubsub_all)?;
            }
        } else {
            self.selectors[0].apply(cat, op)?;
        }
        Ok(())
    }

    /// Whether `pass` is one of the user's passwords (any is, with
    /// `nopass`).
    pub fn password_ok(&self, pass: &[u8]) -> bool {
        if self.nopass() {
            return true;
        }
        let h = hash_password(pass);
        self.passwords
            .iter()
            .any(|p| same_secret(p.as_bytes(), h.as_bytes()))
    }

    /// Checks a command against every selector: allowed if one allows
    /// it. Otherwise the reason reported is the most specific one seen
    /// (a key or channel over the command), at the latest argument.
    pub fn check(&self, cat: &Catalog, req: &Request) -> Result<(), Denied> {
        let mut worst = Denied {
            reason: Reason::Command,
            pos: 0,
        };
        let mut keys = None;
        for s in &self.selectors {
            match s.check(cat, req, &mut keys) {
                Ok(()) => return Ok(()),
                Err(d) => {
                    if d.reason > worst.reason || (d.reason == worst.reason && d.pos > worst.pos) {
                        worst = d;
                    }
                }
            }
        }
        Err(worst)
    }

    /// Whether one selector allows the request and also gives `need` on
    /// every key (SORT's BY and GET patterns read keys no one names).
    pub fn allows_with_all_keys(&self, cat: &Catalog, req: &Request, need: u8) -> bool {
        let mut keys = None;
        self.selectors
            .iter()
            .any(|s| s.all_keys_allowed(need) && s.check(cat, req, &mut keys).is_ok())
    }

    /// Whether every channel this user could use, `before` can use too
    /// (Redis's test for keeping a user's subscribers after a change):
    /// `None` when nothing was lost, else the channel patterns now allowed.
    pub fn channels_lost(&self, before: &User) -> Option<Vec<Vec<u8>>> {
        if self.selectors.iter().any(|s| s.allchannels) {
            return None;
        }
        let now: Vec<Vec<u8>> = self
            .selectors
            .iter()
            .flat_map(|s| s.channels.iter().cloned())
            .collect();
        let kept = before
            .selectors
            .iter()
            .all(|s| !s.allchannels && s.channels.iter().all(|c| now.contains(c)));
        (!kept).then_some(now)
    }

    pub fn flag_names(&self) -> impl Iterator<Item = &'static str> + '_ {
        FLAG_NAMES
            .iter()
            .filter(|(f, _)| self.flags & f != 0)
            .map(|(_, n)| *n)
    }

    /// The user's rules, as ACL LIST and the ACL file write them (after
    /// `user <name> `).
    pub fn describe(&self, cat: &Catalog) -> Vec<u8> {
        let mut out = Vec::new();
        for n in self.flag_names() {
            out.extend_from_slice(n.as_bytes());
            out.push(b' ');
        }
        for p in &self.passwords {
            out.push(b'#');
            out.extend_from_slice(p.as_bytes());
            out.push(b' ');
        }
        for s in &self.selectors {
            if s.root {
                s.describe(cat, &mut out);
            } else {
                out.extend_from_slice(b" (");
                s.describe(cat, &mut out);
                out.push(b')');
            }
        }
        out
    }
}
