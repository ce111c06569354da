//! Pub/Sub registry: which clients listen to which channels and patterns.
//! Publishing hands each subscriber a cheap clone of the message; the
//! subscriber's connection encodes it in its own protocol.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use parking_lot::{Mutex, RwLock};

#[derive(Clone, Debug)]
pub enum PubMsg {
    Message {
        channel: Bytes,
        payload: Bytes,
    },
    PMessage {
        pattern: Bytes,
        channel: Bytes,
        payload: Bytes,
    },
    /// A sharded-channel message (SPUBLISH).
    SMessage {
        channel: Bytes,
        payload: Bytes,
    },
    /// Bytes already in wire form, the same in RESP2 and RESP3 (a MONITOR
    /// line).
    Raw(Bytes),
    /// Client-side caching: these keys changed (`None`: everything did, a
    /// flush). `redirected`: sent on behalf of another client, so a RESP2
    /// receiver subscribed to `__redis__:invalidate` gets it as a message.
    /// `null3`: the flush's null is in RESP3 form (Redis writes the null of
    /// the tracking client's protocol, whoever receives it).
    Invalidate {
        keys: Option<std::sync::Arc<[Bytes]>>,
        redirected: bool,
        null3: bool,
    },
    /// The client this tracking client redirects to is gone (RESP3 only).
    RedirBroken(u64),
}

impl PubMsg {
    /// About the bytes it takes on the wire (a RESP2 message frame), what
    /// it counts for in a client's output buffer.
    pub fn wire_size(&self) -> usize {
        const FRAME: usize = 40;
        FRAME
            + match self {
                PubMsg::Message { channel, payload } | PubMsg::SMessage { channel, payload } => {
                    channel.len() + payload.len()
                }
                PubMsg::PMessage {
                    pattern,
                    channel,
                    payload,
                } => pattern.len() + channel.len() + payload.len(),
                PubMsg::Raw(b) => b.len(),
                PubMsg::Invalidate { keys, .. } => keys
                    .as_ref()
                    .map_or(0, |k| k.iter().map(|k| k.len() + 16).sum()),
                PubMsg::RedirBroken(_) => 0,
            }
    }
}

pub use super::outbox::Tx;

/// Publishing only reads the channel and pattern tables, so publishers
/// (keyspace notifications come from every write) share their locks.
#[derive(Default)]
pub struct PubSub {
    channels: RwLock<HashMap<Bytes, Vec<(u64, Tx)>>>,
    patterns: RwLock<Vec<(Bytes, u64, Tx)>>,
    /// Channel subscriptions and pattern subscriptions, so a publish can
    /// skip a table nobody is in (and stop before building its message when
    /// both are empty).
    channel_subs: AtomicUsize,
    pattern_subs: AtomicUsize,
    /// Shard channels (SSUBSCRIBE), kept apart as Redis does.
    shard: Mutex<HashMap<Bytes, Vec<(u64, Tx)>>>,
}

impl PubSub {
    /// Every subscription of the given clients: (client, channel or
    /// pattern, is a pattern). Shard channels count as channels.
    pub fn subscriptions_of(&self, ids: &[u64]) -> Vec<(u64, Bytes, bool)> {
        let mut out = Vec::new();
        for (ch, subs) in self.channels.read().iter() {
            for (id, _) in subs.iter().filter(|(id, _)| ids.contains(id)) {
                out.push((*id, ch.clone(), false));
            }
        }
        for (p, id, _) in self.patterns.read().iter() {
            if ids.contains(id) {
                out.push((*id, p.clone(), true));
            }
        }
        for (ch, subs) in self.shard.lock().iter() {
            for (id, _) in subs.iter().filter(|(id, _)| ids.contains(id)) {
                out.push((*id, ch.clone(), false));
            }
        }
        out
    }

    pub fn subscribe(&self, id: u64, tx: &Tx, channel: &[u8]) {
        let mut m = self.channels.write();
        let v = m.entry(Bytes::copy_from_slice(channel)).or_default();
        if !v.iter().any(|(c, _)| *c == id) {
            v.push((id, tx.clone()));
            self.channel_subs.fetch_add(1, Ordering::Release);
        }
    }

    pub fn unsubscribe(&self, id: u64, channel: &[u8]) {
        let mut m = self.channels.write();
        if let Some(v) = m.get_mut(channel) {
            let before = v.len();
            v.retain(|(c, _)| *c != id);
            self.channel_subs
                .fetch_sub(before - v.len(), Ordering::Release);
            if v.is_empty() {
                m.remove(channel);
            }
        }
    }

    pub fn psubscribe(&self, id: u64, tx: &Tx, pattern: &[u8]) {
        let mut p = self.patterns.write();
        if !p
            .iter()
            .any(|(pat, c, _)| *c == id && pat.as_ref() == pattern)
        {
            p.push((Bytes::copy_from_slice(pattern), id, tx.clone()));
            self.pattern_subs.fetch_add(1, Ordering::Release);
        }
    }

    pub fn punsubscribe(&self, id: u64, pattern: &[u8]) {
        let mut p = self.patterns.write();
        let before = p.len();
        p.retain(|(pat, c, _)| !(*c == id && pat.as_ref() == pattern));
        self.pattern_subs
            .fetch_sub(before - p.len(), Ordering::Release);
    }

    /// True when no client subscribes to any channel or pattern (shard
    /// channels aside): a publish would reach nobody.
    pub fn is_idle(&self) -> bool {
        // Acquire pairs with the Release above: a subscription confirmed to
        // its client is seen by the publishes that follow.
        self.channel_subs.load(Ordering::Acquire) == 0
            && self.pattern_subs.load(Ordering::Acquire) == 0
    }

    /// Delivers a message; returns how many subscriptions received it.
    pub fn publish(&self, channel: &[u8], payload: &[u8]) -> usize {
        self.publish_bytes(
            Bytes::copy_from_slice(channel),
            Bytes::copy_from_slice(payload),
        )
    }

    /// [`PubSub::publish`] for a message already in shared buffers.
    pub fn publish_bytes(&self, channel: Bytes, payload: Bytes) -> usize {
        let mut n = 0;
        if self.channel_subs.load(Ordering::Acquire) > 0 {
            if let Some(v) = self.channels.read().get(&channel) {
                for (_, tx) in v {
                    let m = PubMsg::Message {
                        channel: channel.clone(),
                        payload: payload.clone(),
                    };
                    n += tx.send(m) as usize;
                }
            }
        }
        if self.pattern_subs.load(Ordering::Acquire) > 0 {
            for (pat, _, tx) in self.patterns.read().iter() {
                if crate::glob::glob_match(pat, &channel, false) {
                    let m = PubMsg::PMessage {
                        pattern: pat.clone(),
                        channel: channel.clone(),
                        payload: payload.clone(),
                    };
                    n += tx.send(m) as usize;
                }
            }
        }
        n
    }

    /// Active channels, optionally matching a pattern.
    pub fn channels(&self, pattern: Option<&[u8]>) -> Vec<Bytes> {
        self.channels
            .read()
            .keys()
            .filter(|c| pattern.is_none_or(|p| crate::glob::glob_match(p, c, false)))
            .cloned()
            .collect()
    }

    pub fn numsub(&self, channel: &[u8]) -> usize {
        self.channels.read().get(channel).map_or(0, |v| v.len())
    }

    pub fn ssubscribe(&self, id: u64, tx: &Tx, channel: &[u8]) {
        let mut m = self.shard.lock();
        let v = m.entry(Bytes::copy_from_slice(channel)).or_default();
        if !v.iter().any(|(c, _)| *c == id) {
            v.push((id, tx.clone()));
        }
    }

    pub fn sunsubscribe(&self, id: u64, channel: &[u8]) {
        let mut m = self.shard.lock();
        if let Some(v) = m.get_mut(channel) {
            v.retain(|(c, _)| *c != id);
            if v.is_empty() {
                m.remove(channel);
            }
        }
    }

    /// Delivers a sharded message to local shard subscribers.
    pub fn spublish(&self, channel: &[u8], payload: &[u8]) -> usize {
        let m = self.shard.lock();
        let Some(v) = m.get(channel) else {
            return 0;
        };
        let channel = Bytes::copy_from_slice(channel);
        let payload = Bytes::copy_from_slice(payload);
        v.iter()
            .filter(|(_, tx)| {
                tx.send(PubMsg::SMessage {
                    channel: channel.clone(),
                    payload: payload.clone(),
                })
            })
            .count()
    }

    pub fn shard_channels(&self, pattern: Option<&[u8]>) -> Vec<Bytes> {
        self.shard
            .lock()
            .keys()
            .filter(|c| pattern.is_none_or(|p| crate::glob::glob_match(p, c, false)))
            .cloned()
            .collect()
    }

    pub fn shard_numsub(&self, channel: &[u8]) -> usize {
        self.shard.lock().get(channel).map_or(0, |v| v.len())
    }

    pub fn numpat(&self) -> usize {
        let p = self.patterns.read();
        let mut uniq: Vec<&Bytes> = p.iter().map(|(pat, _, _)| pat).collect();
        uniq.sort();
        uniq.dedup();
        uniq.len()
    }
}
