//! A selector: one set of permissions (commands, key patterns, channel
//! patterns). A user has a root selector and any number of extra ones; a
//! command is allowed when one selector allows all of it.

use std::collections::BTreeMap;

use super::catalog::{category_bit, Catalog, CATEGORIES};
use super::{Denied, Reason, SetError};
use crate::glob::glob_match;

/// What a key pattern lets a command do with matching keys.
pub const READ: u8 = 1;
pub const WRITE: u8 = 2;
pub const ALL: u8 = READ | WRITE;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyPattern {
    pub perm: u8,
    pub pattern: Vec<u8>,
}

impl KeyPattern {
    /// `~p`, `%R~p` or `%W~p`, as rules write it.
    pub fn describe(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(match self.perm {
            READ => b"%R~".as_slice(),
            WRITE => b"%W~",
            _ => b"~",
        });
        out.extend_from_slice(&self.pattern);
    }
}

/// A command's arguments, however the caller holds them.
pub trait Argv {
    fn argc(&self) -> usize;
    /// Argument `i` (empty past the end).
    fn arg(&self, i: usize) -> &[u8];
}

impl Argv for &[&[u8]] {
    fn argc(&self) -> usize {
        self.len()
    }
    fn arg(&self, i: usize) -> &[u8] {
        self.get(i).copied().unwrap_or_default()
    }
}

/// One command's arguments as a permission check sees them.
pub struct Request<'a> {
    pub id: usize,
    pub args: &'a dyn Argv,
    /// Key positions and the access each needs (`READ`/`WRITE` bits).
    pub keys: &'a dyn Fn() -> Vec<(usize, u8)>,
    /// Channel positions and whether each is a pattern (PSUBSCRIBE).
    pub channels: &'a [(usize, bool)],
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Selector {
    pub root: bool,
    pub allkeys: bool,
    pub allchannels: bool,
    /// Every command, without looking at the bitmap.
    pub allcommands: bool,
    /// Set by `+@all`, cleared by `-@all`: the rules start from everything
    /// (Redis keeps it as a reserved bit for commands added later).
    future: bool,
    bits: Vec<u64>,
    /// Allowed first arguments of otherwise refused commands (`+select|0`).
    firstargs: BTreeMap<usize, Vec<Vec<u8>>>,
    pub keys: Vec<KeyPattern>,
    pub channels: Vec<Vec<u8>>,
}

fn has_space(s: &[u8]) -> bool {
    s.iter()
        .any(|&b| b.is_ascii_whitespace() || b == 0 || b == 0x0b)
}

fn eq_ic(a: &[u8], b: &str) -> bool {
    a.eq_ignore_ascii_case(b.as_bytes())
}

impl Selector {
    /// An empty selector: nothing allowed, channels as
    /// `acl-pubsub-default` says.
    pub fn new(cat: &Catalog, root: bool, pubsub_all: bool) -> Selector {
        Selector {
            root,
            allkeys: false,
            allchannels: pubsub_all,
            allcommands: false,
            future: false,
            bits: vec![0; cat.len().div_ceil(64)],
            firstargs: BTreeMap::new(),
            keys: Vec::new(),
            channels: Vec::new(),
        }
    }

    pub fn bit(&self, id: usize) -> bool {
        self.bits
            .get(id / 64)
            .is_some_and(|w| w & (1u64 << (id % 64)) != 0)
    }

    fn set_bit(&mut self, id: usize, on: bool) {
        let Some(w) = self.bits.get_mut(id / 64) else {
            return;
        };
        if on {
            *w |= 1 << (id % 64);
        } else {
            *w &= !(1 << (id % 64));
            self.allcommands = false;
        }
    }

    /// Allows or refuses a command; a container's subcommands follow it.
    fn change(&mut self, cat: &Catalog, id: usize, allow: bool) {
        self.set_bit(id, allow);
        self.firstargs.remove(&id);
        for &s in &cat.subs[id] {
            self.set_bit(s, allow);
        }
    }

    fn change_category(&mut self, cat: &Catalog, bit: u32, allow: bool) {
        for &t in &cat.top {
            if cat.entries[t].categories & bit != 0 {
                self.change(cat, t, allow);
            }
            for &s in &cat.subs[t] {
                if cat.entries[s].categories & bit != 0 {
                    self.change(cat, s, allow);
                }
            }
        }
    }

    fn count_category(&self, cat: &Catalog, bit: u32) -> (usize, usize) {
        let (mut on, mut off) = (0, 0);
        for id in cat.in_category(bit) {
            if self.bit(id) {
                on += 1;
            } else {
                off += 1;
            }
        }
        (on, off)
    }

    fn all_commands(&mut self, on: bool) {
        let fill = if on { u64::MAX } else { 0 };
        self.bits.iter_mut().for_each(|w| *w = fill);
        self.allcommands = on;
        self.future = on;
        self.firstargs.clear();
    }

    /// Applies one rule (`~pattern`, `+get`, `-@write`, `allchannels`…).
    pub fn apply(&mut self, cat: &Catalog, op: &[u8]) -> Result<(), SetError> {
        if eq_ic(op, "allkeys") || eq_ic(op, "~*") {
            self.allkeys = true;
            self.keys.clear();
        } else if eq_ic(op, "resetkeys") {
            self.allkeys = false;
            self.keys.clear();
        } else if eq_ic(op, "allchannels") || eq_ic(op, "&*") {
            self.allchannels = true;
            self.channels.clear();
        } else if eq_ic(op, "resetchannels") {
            self.allchannels = false;
            self.channels.clear();
        } else if eq_ic(op, "allcommands") || eq_ic(op, "+@all") {
            self.all_commands(true);
        } else if eq_ic(op, "nocommands") || eq_ic(op, "-@all") {
            self.all_commands(false);
        } else if matches!(op.first(), Some(b'~' | b'%')) {
            self.add_key_pattern(op)?;
        } else if op.first() == Some(&b'&') {
            if self.allchannels {
                return Err(SetError::ChannelAfterAll);
            }
            let p = &op[1..];
            if has_space(p) {
                return Err(SetError::Syntax);
            }
            if !self.channels.iter().any(|c| c == p) {
                self.channels.push(p.to_vec());
            }
            self.allchannels = false;
        } else if op.first() == Some(&b'+') && op.get(1) != Some(&b'@') {
            self.allow_command(cat, &op[1..])?;
        } else if op.first() == Some(&b'-') && op.get(1) != Some(&b'@') {
            let id = cat.lookup(&op[1..]).ok_or(SetError::UnknownName)?;
            self.change(cat, id, false);
        } else if matches!(op.first(), Some(b'+' | b'-')) {
            let bit = category_bit(&op[2..]).ok_or(SetError::UnknownName)?;
            self.change_category(cat, bit, op[0] == b'+');
        } else {
            return Err(SetError::Syntax);
        }
        Ok(())
    }

    fn add_key_pattern(&mut self, op: &[u8]) -> Result<(), SetError> {
        if self.allkeys {
            return Err(SetError::KeyAfterAll);
        }
        let (perm, offset) = if op[0] == b'%' {
            let mut perm = 0;
            let mut i = 1;
            loop {
                match op.get(i) {
                    None => break,
                    Some(b'R' | b'r') if perm & READ == 0 => perm |= READ,
                    Some(b'W' | b'w') if perm & WRITE == 0 => perm |= WRITE,
                    Some(b'~') => {
                        i += 1;
                        break;
                    }
                    Some(_) => return Err(SetError::Syntax),
                }
                i += 1;
            }
            (perm, i)
        } else {
            (ALL, 1)
        };
        let pattern = &op[offset.min(op.len())..];
        // Redis accepts `%R` without `~` (an empty pattern), but a bare
        // `%` would leave a pattern it cannot describe: refused here.
        if has_space(pattern) || perm == 0 {
            return Err(SetError::Syntax);
        }
        match self.keys.iter_mut().find(|k| k.pattern == pattern) {
            Some(k) => k.perm |= perm,
            None => self.keys.push(KeyPattern {
                perm,
                pattern: pattern.to_vec(),
            }),
        }
        self.allkeys = false;
        Ok(())
    }

    fn allow_command(&mut self, cat: &Catalog, name: &[u8]) -> Result<(), SetError> {
        let Some(bar) = name.iter().rposition(|&b| b == b'|') else {
            let id = cat.lookup(name).ok_or(SetError::UnknownName)?;
            self.change(cat, id, true);
            return Ok(());
        };
        let (base, sub) = (&name[..bar], &name[bar + 1..]);
        let id = cat.lookup(base).ok_or(SetError::UnknownName)?;
        if cat.entries[id].parent.is_some() {
            return Err(SetError::SubFirstArg);
        }
        if sub.is_empty() {
            return Err(SetError::Syntax);
        }
        if !cat.subs[id].is_empty() {
            let sid = cat.lookup(name).ok_or(SetError::UnknownName)?;
            self.change(cat, sid, true);
        } else {
            tracing::warn!(
                "Deprecation warning: Allowing a first arg of an otherwise blocked command is a misuse of ACL and may get disabled in the future (offender: +{})",
                String::from_utf8_lossy(name)
            );
            let list = self.firstargs.entry(id).or_default();
            if !list.iter().any(|a| a.eq_ignore_ascii_case(sub)) {
                list.push(sub.to_vec());
            }
        }
        Ok(())
    }

    /// Whether this selector allows the request; if not, why, and the
    /// argument at fault.
    pub fn check(
        &self,
        cat: &Catalog,
        req: &Request,
        keys: &mut Option<Vec<(usize, u8)>>,
    ) -> Result<(), Denied> {
        let entry = &cat.entries[req.id];
        if !self.allcommands && !entry.no_auth && !self.bit(req.id) {
            let idx = if entry.parent.is_some() { 2 } else { 1 };
            let allowed = req.args.argc() >= 2
                && idx < req.args.argc()
                && self.firstargs.get(&req.id).is_some_and(|l| {
                    let a = req.args.arg(idx);
                    l.iter().any(|f| f.eq_ignore_ascii_case(a))
                });
            if !allowed {
                return Err(Denied {
                    reason: Reason::Command,
                    pos: 0,
                });
            }
        }
        if !self.allkeys {
            let keys = keys.get_or_insert_with(|| (req.keys)());
            for &(pos, need) in keys.iter() {
                let key = req.args.arg(pos);
                if !self.key_allowed(key, need) {
                    return Err(Denied {
                        reason: Reason::Key,
                        pos,
                    });
                }
            }
        }
        if !self.allchannels {
            for &(pos, pattern) in req.channels {
                let ch = req.args.arg(pos);
                if !self.channel_allowed(ch, pattern) {
                    return Err(Denied {
                        reason: Reason::Channel,
                        pos,
                    });
                }
            }
        }
        Ok(())
    }

    pub fn key_allowed(&self, key: &[u8], need: u8) -> bool {
        self.allkeys
            || self
                .keys
                .iter()
                .any(|k| k.perm & need == need && glob_match(&k.pattern, key, false))
    }

    /// A pattern subscription must name an allowed pattern exactly; a
    /// channel may match any allowed pattern.
    pub fn channel_allowed(&self, ch: &[u8], is_pattern: bool) -> bool {
        self.allchannels
            || self.channels.iter().any(|p| {
                if is_pattern {
                    p == ch
                } else {
                    glob_match(p, ch, false)
                }
            })
    }

    /// Whether some `*` pattern gives `need` on every key (SORT's BY and
    /// GET need this).
    pub fn all_keys_allowed(&self, need: u8) -> bool {
        self.allkeys
            || self
                .keys
                .iter()
                .any(|k| k.perm & need == need && k.pattern == b"*")
    }

    /// The command rules, written as Redis writes them: `+@all` or `-@all`,
    /// then the categories that best explain the bitmap, then single
    /// commands and first arguments to make it exact.
    pub fn describe_commands(&self, cat: &Catalog) -> String {
        let mut fake = Selector::new(cat, false, false);
        let additive = !self.future;
        let mut rules = String::from(if additive { "-@all " } else { "+@all " });
        fake.all_commands(!additive);
        let mut temp = self.clone();
        let mut applied = [false; CATEGORIES.len()];
        loop {
            let mut best = None;
            let (mut mindiff, mut maxsame) = (usize::MAX, 0);
            for (j, _) in CATEGORIES.iter().enumerate() {
                if applied[j] {
                    continue;
                }
                let (on, off) = temp.count_category(cat, 1 << j);
                let (diff, same) = if additive { (off, on) } else { (on, off) };
                if same > diff && (diff < mindiff || (diff == mindiff && same > maxsame)) {
                    best = Some(j);
                    mindiff = diff;
                    maxsame = same;
                }
            }
            let Some(j) = best else { break };
            fake.change_category(cat, 1 << j, additive);
            temp.change_category(cat, 1 << j, !additive);
            rules.push_str(if additive { "+@" } else { "-@" });
            rules.push_str(CATEGORIES[j]);
            rules.push(' ');
            applied[j] = true;
        }
        for &t in &cat.top {
            self.describe_single(cat, &mut fake, &mut rules, t);
            for &s in &cat.subs[t] {
                self.describe_single(cat, &mut fake, &mut rules, s);
            }
            if !self.bit(t) {
                for a in self.firstargs.get(&t).into_iter().flatten() {
                    rules.push('+');
                    rules.push_str(cat.entries[t].name);
                    rules.push('|');
                    rules.push_str(&String::from_utf8_lossy(a));
                    rules.push(' ');
                }
            }
        }
        rules.pop();
        rules
    }

    fn describe_single(&self, cat: &Catalog, fake: &mut Selector, rules: &mut String, id: usize) {
        let mine = self.bit(id);
        if mine != fake.bit(id) {
            rules.push(if mine { '+' } else { '-' });
            rules.push_str(cat.entries[id].name);
            rules.push(' ');
            fake.change(cat, id, mine);
        }
    }

    /// Keys, channels and commands, as ACL LIST shows a selector.
    pub fn describe(&self, cat: &Catalog, out: &mut Vec<u8>) {
        if self.allkeys {
            out.extend_from_slice(b"~* ");
        } else {
            for k in &self.keys {
                k.describe(out);
                out.push(b' ');
            }
        }
        if self.allchannels {
            out.extend_from_slice(b"&* ");
        } else {
            out.extend_from_slice(b"resetchannels ");
            for c in &self.channels {
                out.push(b'&');
                out.extend_from_slice(c);
                out.push(b' ');
            }
        }
        out.extend_from_slice(self.describe_commands(cat).as_bytes());
    }

    /// The `keys` field of ACL GETUSER.
    pub fn describe_keys(&self) -> Vec<u8> {
        if self.allkeys {
            return b"~*".to_vec();
        }
        let mut out = Vec::new();
        for (i, k) in self.keys.iter().enumerate() {
            if i > 0 {
                out.push(b' ');
            }
            k.describe(&mut out);
        }
        out
    }

    /// The `channels` field of ACL GETUSER.
    pub fn describe_channels(&self) -> Vec<u8> {
        if self.allchannels {
            return b"&*".to_vec();
        }
        let mut out = Vec::new();
        for (i, c) in self.channels.iter().enumerate() {
            if i > 0 {
                out.push(b' ');
            }
            out.push(b'&');
            out.extend_from_slice(c);
        }
        out
    }
}
