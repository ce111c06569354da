//! One entry of the node table, and how it is written in CLUSTER NODES
//! and nodes.conf.

use std::fmt::Write as _;

use super::bus::{flags, SlotBits};
use super::id::NodeId;

#[derive(Debug, Clone)]
pub struct Node {
    pub id: NodeId,
    pub flags: u16,
    /// Empty until known (myself before anyone met us).
    pub ip: String,
    pub port: u16,
    pub pport: u16,
    pub cport: u16,
    pub hostname: String,
    pub shard_id: NodeId,
    pub master: Option<NodeId>,
    pub config_epoch: u64,
    pub slots: SlotBits,
    pub numslots: usize,
    /// Unix ms of the ping we still wait a pong for, 0 if none.
    pub ping_sent: i64,
    pub pong_received: i64,
    /// Unix ms of the last byte of any kind from this node.
    pub data_received: i64,
    pub fail_time: i64,
    pub voted_time: i64,
    pub orphaned_time: i64,
    pub repl_offset: u64,
    /// When the entry was created (handshake expiry).
    pub ctime: i64,
    /// Failure reports: which master said so, and when.
    pub fail_reports: Vec<(NodeId, i64)>,
    /// Our outbound link to it (a link id), and the inbound one it opened.
    pub link: Option<u64>,
    pub inbound_link: Option<u64>,
}

impl Node {
    pub fn new(id: NodeId, shard_id: NodeId, flags: u16, now: i64) -> Node {
        Node {
            id,
            flags,
            ip: String::new(),
            port: 0,
            pport: 0,
            cport: 0,
            hostname: String::new(),
            shard_id,
            master: None,
            config_epoch: 0,
            slots: SlotBits::default(),
            numslots: 0,
            ping_sent: 0,
            pong_received: 0,
            data_received: 0,
            fail_time: 0,
            voted_time: 0,
            orphaned_time: 0,
            repl_offset: 0,
            ctime: now,
            fail_reports: Vec::new(),
            link: None,
            inbound_link: None,
        }
    }

    pub fn has(&self, f: u16) -> bool {
        self.flags & f != 0
    }
    pub fn is_master(&self) -> bool {
        self.has(flags::MASTER)
    }
    pub fn is_replica(&self) -> bool {
        self.has(flags::SLAVE)
    }
    pub fn in_handshake(&self) -> bool {
        self.has(flags::HANDSHAKE)
    }
    pub fn failed(&self) -> bool {
        self.has(flags::FAIL)
    }
    pub fn timed_out(&self) -> bool {
        self.has(flags::PFAIL)
    }
    pub fn failing(&self) -> bool {
        self.has(flags::PFAIL | flags::FAIL)
    }

    /// The flag words, in Redis's order.
    pub fn flag_words(&self) -> String {
        const WORDS: [(u16, &str); 8] = [
            (flags::MYSELF, "myself"),
            (flags::MASTER, "master"),
            (flags::SLAVE, "slave"),
            (flags::PFAIL, "fail?"),
            (flags::FAIL, "fail"),
            (flags::HANDSHAKE, "handshake"),
            (flags::NOADDR, "noaddr"),
            (flags::NOFAILOVER, "nofailover"),
        ];
        let mut out = String::new();
        for (bit, w) in WORDS {
            if self.flags & bit != 0 {
                if !out.is_empty() {
                    out.push(',');
                }
                out.push_str(w);
            }
        }
        if out.is_empty() {
            out.push_str("noflags");
        }
        out
    }

    /// Parses the flag words back (nodes.conf); `None` on an unknown word.
    pub fn parse_flags(s: &str) -> Option<u16> {
        let mut f = 0;
        for w in s.split(',') {
            f |= match w {
                "myself" => flags::MYSELF,
                "master" => flags::MASTER,
                "slave" => flags::SLAVE,
                "fail?" => flags::PFAIL,
                "fail" => flags::FAIL,
                "handshake" => flags::HANDSHAKE,
                "noaddr" => flags::NOADDR,
                "nofailover" => flags::NOFAILOVER,
                "noflags" => 0,
                _ => return None,
            };
        }
        Some(f)
    }

    pub fn add_fail_report(&mut self, from: NodeId, now: i64) -> bool {
        if let Some(r) = self.fail_reports.iter_mut().find(|(n, _)| *n == from) {
            r.1 = now;
            return false;
        }
        self.fail_reports.push((from, now));
        true
    }

    pub fn del_fail_report(&mut self, from: &NodeId) -> bool {
        let before = self.fail_reports.len();
        self.fail_reports.retain(|(n, _)| n != from);
        before != self.fail_reports.len()
    }

    /// Drops reports older than `max_age` ms and returns how many remain.
    pub fn count_fail_reports(&mut self, now: i64, max_age: i64) -> usize {
        self.fail_reports.retain(|(_, t)| now - t <= max_age);
        self.fail_reports.len()
    }
}

/// Slot ranges, maximally merged: `0-5460`, or `5461` for a single slot.
pub fn slot_ranges(bits: &SlotBits) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut start: Option<usize> = None;
    // Whole bytes at a time where a byte cannot end or start a run (the
    // config is written on every change, so this is worth it).
    for (i, &b) in bits.0.iter().enumerate() {
        match (b, start) {
            (0, None) | (0xff, Some(_)) => continue,
            _ => {}
        }
        for bit in 0..8 {
            let s = i * 8 + bit;
            let on = b & (1 << bit) != 0;
            match (on, start) {
                (true, None) => start = Some(s),
                (false, Some(a)) => {
                    out.push((a, s - 1));
                    start = None;
                }
                _ => {}
            }
        }
    }
    if let Some(a) = start {
        out.push((a, crate::keyspace::SLOTS - 1));
    }
    out
}

pub fn write_ranges(out: &mut String, bits: &SlotBits) {
    for (a, b) in slot_ranges(bits) {
        if a == b {
            let _ = write!(out, " {a}");
        } else {
            let _ = write!(out, " {a}-{b}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The byte-skipping walk agrees with a slot-by-slot one.
    #[test]
    fn slot_ranges_match_a_naive_walk() {
        let mut rng = rand::rng();
        for _ in 0..200 {
            let mut bits = SlotBits::default();
            let runs = rand::Rng::random_range(&mut rng, 0..20);
            for _ in 0..runs {
                let a = rand::Rng::random_range(&mut rng, 0..crate::keyspace::SLOTS);
                let len = rand::Rng::random_range(&mut rng, 1..2000);
                for s in a..(a + len).min(crate::keyspace::SLOTS) {
                    bits.set(s, true);
                }
            }
            let mut naive = Vec::new();
            let mut start = None;
            for s in 0..=crate::keyspace::SLOTS {
                let on = s < crate::keyspace::SLOTS && bits.get(s);
                match (on, start) {
                    (true, None) => start = Some(s),
                    (false, Some(a)) => {
                        naive.push((a, s - 1));
                        start = None;
                    }
                    _ => {}
                }
            }
            assert_eq!(slot_ranges(&bits), naive);
        }
    }
}
