//! Keyspace notifications (`notify-keyspace-events`): after a command
//! changes a key, `__keyspace@<db>__:<key>` receives the event name and
//! `__keyevent@<db>__:<event>` receives the key, through the ordinary
//! pub/sub registry, as Redis 7.0 publishes them.
//!
//! Commands publish through [`Events`] (see `Ctx::events`); key creation
//! and expiry are reported by the keyspace itself (see `keyspace::events`)
//! and published by the sink [`install`] sets up. Events are published
//! while the command still holds the key's slot lock, so subscribers see
//! each key's events in the order of its changes.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};

use super::Shared;
use crate::keyspace::events::KeyEvent;

/// Event classes, with Redis's bit values.
pub mod class {
    pub const KEYSPACE: u32 = 1 << 0;
    pub const KEYEVENT: u32 = 1 << 1;
    pub const GENERIC: u32 = 1 << 2;
    pub const STRING: u32 = 1 << 3;
    pub const LIST: u32 = 1 << 4;
    pub const SET: u32 = 1 << 5;
    pub const HASH: u32 = 1 << 6;
    pub const ZSET: u32 = 1 << 7;
    pub const EXPIRED: u32 = 1 << 8;
    pub const EVICTED: u32 = 1 << 9;
    pub const STREAM: u32 = 1 << 10;
    pub const KEY_MISS: u32 = 1 << 11;
    pub const MODULE: u32 = 1 << 12;
    pub const NEW: u32 = 1 << 13;
    /// `A`: every class but key-miss and new.
    pub const ALL: u32 =
        GENERIC | STRING | LIST | SET | HASH | ZSET | EXPIRED | EVICTED | STREAM | MODULE;
}

use class::*;

/// The reason Redis gives for a bad class string.
pub const INVALID: &str = "Invalid event class character. Use 'Ag$lshzxeKEtmdn'.";

/// Parses a class string (`KEA`, `Elg`, …) into flags.
pub fn parse(s: &str) -> Option<u32> {
    let mut f = 0;
    for c in s.chars() {
        f |= match c {
            'A' => ALL,
            'g' => GENERIC,
            '$' => STRING,
            'l' => LIST,
            's' => SET,
            'h' => HASH,
            'z' => ZSET,
            'x' => EXPIRED,
            'e' => EVICTED,
            'K' => KEYSPACE,
            'E' => KEYEVENT,
            't' => STREAM,
            'm' => KEY_MISS,
            'd' => MODULE,
            'n' => NEW,
            _ => return None,
        };
    }
    Some(f)
}

/// Flags as CONFIG GET prints them: `A` stands for the whole set (and then
/// `n` is not shown, as in Redis), then `K`, `E`, `m`.
pub fn format(f: u32) -> String {
    let mut s = String::new();
    if f & ALL == ALL {
        s.push('A');
    } else {
        for (bit, c) in [
            (GENERIC, 'g'),
            (STRING, '$'),
            (LIST, 'l'),
            (SET, 's'),
            (HASH, 'h'),
            (ZSET, 'z'),
            (EXPIRED, 'x'),
            (EVICTED, 'e'),
            (STREAM, 't'),
            (MODULE, 'd'),
            (NEW, 'n'),
        ] {
            if f & bit != 0 {
                s.push(c);
            }
        }
    }
    for (bit, c) in [(KEYSPACE, 'K'), (KEYEVENT, 'E'), (KEY_MISS, 'm')] {
        if f & bit != 0 {
            s.push(c);
        }
    }
    s
}

/// Validates and normalises a configured value (CONFIG SET, config file).
pub fn canonical(v: &str) -> Result<String, String> {
    parse(v).map(format).ok_or_else(|| INVALID.to_string())
}

/// The flags commands test: zero unless K or E is on, so that "off" is a
/// single comparison with zero.
#[derive(Default)]
pub struct Flags(AtomicU32);

impl Flags {
    pub fn load(&self) -> u32 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Applies the configured classes (at start and after CONFIG SET).
pub fn configure(srv: &Shared, f: u32) {
    let f = if f & (KEYSPACE | KEYEVENT) == 0 { 0 } else { f };
    srv.hot.notify.0.store(f, Ordering::Relaxed);
    srv.ks
        .events
        .report(f & NEW != 0, f & EXPIRED != 0, f & KEY_MISS != 0);
}

/// Makes the keyspace's reports of created and expired keys reach
/// subscribers (and modified and expired ones reach client-side caching). Holds the server weakly: the keyspace is part of it.
pub fn install(srv: &Arc<Shared>) {
    let weak = Arc::downgrade(srv);
    srv.ks.events.set_sink(Box::new(move |ev, db, key| {
        if let Some(srv) = weak.upgrade() {
            let (c, name) = match ev {
                KeyEvent::Created => (NEW, "new"),
                KeyEvent::Missed => (KEY_MISS, "keymiss"),
                KeyEvent::Expired => {
                    if srv.tracking.armed() {
                        super::tracking::key_changed(&srv, key, None);
                    }
                    (EXPIRED, "expired")
                }
                KeyEvent::Modified => {
                    super::tracking::key_changed(&srv, key, super::tracking::current());
                    return;
                }
            };
            Events::new(&srv, srv.hot.notify.load())
                .db(db)
                .emit(c, name, key);
        }
    }));
}

/// Hook for the eviction code: publishes `evicted` (class `e`) for a key
/// just removed from `db` to free memory. Call it after the removal, while
/// the key's slot is still locked, as commands do.
pub fn evicted(srv: &Shared, db: usize, key: &[u8]) {
    Events::new(srv, srv.hot.notify.load())
        .db(db)
        .emit(EVICTED, "evicted", key);
}

/// A command's handle for publishing events: the flags read once, and the
/// database the events belong to.
#[derive(Clone, Copy)]
pub struct Events<'a> {
    srv: &'a Shared,
    flags: u32,
    db: usize,
}

impl<'a> Events<'a> {
    pub fn new(srv: &'a Shared, flags: u32) -> Self {
        Events { srv, flags, db: 0 }
    }

    /// The same handle for events in database `db`.
    pub fn db(self, db: usize) -> Self {
        Events { db, ..self }
    }

    /// Whether events of `class` are published (lets callers skip work).
    #[inline]
    pub fn on(&self, class: u32) -> bool {
        self.flags & class != 0
    }

    /// Publishes `event` for `key` if its class is enabled.
    #[inline]
    pub fn emit(&self, class: u32, event: &'static str, key: &[u8]) {
        if self.flags & class != 0 {
            self.publish(event, key);
        }
    }

    #[cold]
    fn publish(&self, event: &'static str, key: &[u8]) {
        let ps = &self.srv.pubsub;
        if ps.is_idle() {
            return;
        }
        let mut b = itoa::Buffer::new();
        let db = b.format(self.db).as_bytes();
        let channel = |kind: &[u8], tail: &[u8]| {
            let mut c = BytesMut::with_capacity(kind.len() + db.len() + 3 + tail.len());
            c.put_slice(kind);
            c.put_slice(db);
            c.put_slice(b"__:");
            c.put_slice(tail);
            c.freeze()
        };
        let event_b = Bytes::from_static(event.as_bytes());
        if self.flags & KEYSPACE != 0 {
            ps.publish_bytes(channel(b"__keyspace@", key), event_b.clone());
        }
        if self.flags & KEYEVENT != 0 {
            ps.publish_bytes(
                channel(b"__keyevent@", event.as_bytes()),
                Bytes::copy_from_slice(key),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn class_strings_round_trip_as_redis_prints_them() {
        for (given, shown) in [
            ("KEA", "AKE"),
            ("A", "A"),
            ("Kl", "lK"),
            ("KEn", "nKE"),
            ("KEm", "KEm"),
            ("nAKEm", "AKEm"),
            ("AAKK", "AK"),
            ("gKE", "gKE"),
            ("$lshzxeKE", "$lshzxeKE"),
            ("g$lshzxetd", "A"),
            ("", ""),
        ] {
            assert_eq!(canonical(given).as_deref(), Ok(shown), "{given}");
        }
        assert_eq!(canonical("KEAQ"), Err(INVALID.to_string()));
        // `n` is kept under `A` even though it is not printed.
        assert_eq!(parse("nA").map(|f| f & NEW), Some(NEW));
    }
}
