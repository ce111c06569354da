//! A connection's queue of messages from other connections (pub/sub
//! messages, invalidations, MONITOR lines). The bytes waiting in it are
//! part of the client's output buffer, as Redis counts them: they show in
//! CLIENT LIST `omem`, count toward client memory, and are held to
//! `client-output-buffer-limit`: over the hard limit, or over the soft
//! limit for longer than its seconds, the client is closed rather than
//! let a slow reader grow the server without bound.

use std::sync::atomic::{AtomicI64, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Weak};

use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};

use super::client::ClientInfo;
use super::pubsub::PubMsg;

/// Client classes of `client-output-buffer-limit`, in Redis's order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    Normal = 0,
    Replica = 1,
    PubSub = 2,
}

/// One class's limits: bytes (0 = none) and seconds.
struct Limit {
    hard: AtomicU64,
    soft: AtomicU64,
    soft_secs: AtomicU64,
}

const fn limit(hard: u64, soft: u64, soft_secs: u64) -> Limit {
    Limit {
        hard: AtomicU64::new(hard),
        soft: AtomicU64::new(soft),
        soft_secs: AtomicU64::new(soft_secs),
    }
}

/// Redis 7.0's defaults until the configuration is applied.
static LIMITS: [Limit; 3] = [
    limit(0, 0, 0),
    limit(256 << 20, 64 << 20, 60),
    limit(32 << 20, 8 << 20, 60),
];

/// A class's (hard, soft, soft seconds).
pub fn limits_of(c: Class) -> (u64, u64, u64) {
    let l = &LIMITS[c as usize];
    (
        l.hard.load(Ordering::Relaxed),
        l.soft.load(Ordering::Relaxed),
        l.soft_secs.load(Ordering::Relaxed),
    )
}

/// Parses the configured value (`normal h s t replica h s t pubsub h s t`,
/// already validated and normalised) and applies it.
pub fn configure(value: &str) {
    let w: Vec<&str> = value.split_whitespace().collect();
    for c in w.chunks(4) {
        let [class, hard, soft, secs] = c else {
            continue;
        };
        let i = match *class {
            "normal" => 0,
            "slave" | "replica" => 1,
            "pubsub" => 2,
            _ => continue,
        };
        let n = |s: &str| s.parse::<u64>().unwrap_or(0);
        LIMITS[i].hard.store(n(hard), Ordering::Relaxed);
        LIMITS[i].soft.store(n(soft), Ordering::Relaxed);
        LIMITS[i].soft_secs.store(n(secs), Ordering::Relaxed);
    }
}

/// What a connection's queue shares with its senders.
pub struct OutQ {
    /// Bytes queued, not yet taken by the connection.
    pub bytes: AtomicU64,
    /// Bytes the connection is writing now.
    pub writing: AtomicU64,
    /// When the buffer went over the soft limit (ms; 0 = it is not).
    soft_since: AtomicI64,
    class: AtomicU8,
    owner: Weak<ClientInfo>,
}

impl OutQ {
    pub fn new(owner: Weak<ClientInfo>) -> OutQ {
        OutQ {
            bytes: AtomicU64::new(0),
            writing: AtomicU64::new(0),
            soft_since: AtomicI64::new(0),
            class: AtomicU8::new(Class::Normal as u8),
            owner,
        }
    }

    /// The connection's class changed (it subscribed, or stopped).
    pub fn set_class(&self, c: Class) {
        self.class.store(c as u8, Ordering::Relaxed);
    }

    /// Whether `used` bytes of pending output pass the class's hard limit
    /// (a reply being built: the client is then closed without it).
    pub fn over_hard_limit(&self, used: u64) -> bool {
        let hard = LIMITS[self.class.load(Ordering::Relaxed) as usize]
            .hard
            .load(Ordering::Relaxed);
        hard > 0 && used >= hard
    }

    /// Checks the limits for a buffer of `used` bytes (the queue plus
    /// what the connection is writing); closes the client when over.
    pub fn check(&self, used: u64, now_ms: impl FnOnce() -> i64) {
        let l = &LIMITS[self.class.load(Ordering::Relaxed) as usize];
        let (hard, soft) = (
            l.hard.load(Ordering::Relaxed),
            l.soft.load(Ordering::Relaxed),
        );
        let over = if hard > 0 && used >= hard {
            true
        } else if soft > 0 && used >= soft {
            let now = now_ms();
            let since = self.soft_since.load(Ordering::Relaxed);
            if since == 0 {
                self.soft_since.store(now, Ordering::Relaxed);
                false
            } else {
                now - since > (l.soft_secs.load(Ordering::Relaxed) * 1000) as i64
            }
        } else {
            if self.soft_since.load(Ordering::Relaxed) != 0 {
                self.soft_since.store(0, Ordering::Relaxed);
            }
            false
        };
        if over {
            if let Some(c) = self.owner.upgrade() {
                if !c.killed.load(Ordering::Relaxed) {
                    tracing::warn!(
                        "Client id={} addr={} closed for overcoming of output buffer limits.",
                        c.id,
                        c.addr
                    );
                    c.kill();
                }
            }
        }
    }
}

/// The sending end; cheap to clone.
#[derive(Clone)]
pub struct Tx {
    tx: UnboundedSender<PubMsg>,
    q: Arc<OutQ>,
}

impl Tx {
    /// Queues a message; false when the connection is gone.
    pub fn send(&self, m: PubMsg) -> bool {
        let n = m.wire_size() as u64;
        // Counted before it is queued: the receiver, on another thread,
        // may take it (and subtract) at once.
        let before = self.q.bytes.fetch_add(n, Ordering::Relaxed);
        if self.tx.send(m).is_err() {
            self.q.bytes.fetch_sub(n, Ordering::Relaxed);
            return false;
        }
        let used = before
            .saturating_add(n)
            .saturating_add(self.q.writing.load(Ordering::Relaxed));
        self.q.check(used, crate::keyspace::now_ms);
        // Counted toward maxmemory-clients now: the sender's connection
        // evicts after its batch if the total went past the limit.
        if super::clientmem::enabled() {
            if let Some(c) = self.q.owner.upgrade() {
                super::clientmem::account(&c);
            }
        }
        true
    }
}

/// The connection's receiving end.
pub struct Rx {
    rx: UnboundedReceiver<PubMsg>,
    q: Arc<OutQ>,
}

impl Rx {
    pub fn try_recv(&mut self) -> Option<PubMsg> {
        let m = self.rx.try_recv().ok()?;
        self.taken(&m);
        Some(m)
    }

    pub async fn recv(&mut self) -> Option<PubMsg> {
        let m = self.rx.recv().await?;
        self.taken(&m);
        Some(m)
    }

    fn taken(&self, m: &PubMsg) {
        self.q
            .bytes
            .fetch_sub(m.wire_size() as u64, Ordering::Relaxed);
    }
}

/// A new queue for the connection whose shared state is `q`.
pub fn channel(q: &Arc<OutQ>) -> (Tx, Rx) {
    let (tx, rx) = unbounded_channel();
    (Tx { tx, q: q.clone() }, Rx { rx, q: q.clone() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queued_bytes_follow_sends_and_takes() {
        let q = Arc::new(OutQ::new(Weak::new()));
        let (tx, mut rx) = channel(&q);
        let m = || PubMsg::Raw(bytes::Bytes::from_static(b"+hello\r\n"));
        let n = m().wire_size() as u64;
        assert!(tx.send(m()));
        assert!(tx.send(m()));
        assert_eq!(q.bytes.load(Ordering::Relaxed), 2 * n);
        assert!(rx.try_recv().is_some());
        assert_eq!(q.bytes.load(Ordering::Relaxed), n);
        drop(rx);
        assert!(!tx.send(m()));
    }

    #[test]
    fn soft_limit_needs_its_time() {
        // The pubsub class with a soft limit of 100 bytes for 2 s.
        configure("pubsub 0 100 2");
        let q = OutQ::new(Weak::new());
        q.set_class(Class::PubSub);
        q.check(150, || 1000);
        assert_eq!(q.soft_since.load(Ordering::Relaxed), 1000);
        q.check(150, || 2500);
        assert_eq!(q.soft_since.load(Ordering::Relaxed), 1000);
        q.check(50, || 2600);
        assert_eq!(q.soft_since.load(Ordering::Relaxed), 0);
        configure("pubsub 33554432 8388608 60");
    }
}
