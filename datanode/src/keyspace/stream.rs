//! Streams in Redis's node layout: entries grouped in nodes of at most
//! `stream-node-max-entries` entries / `stream-node-max-bytes` bytes, each
//! node keyed by its master ID and holding a listpack body:
//!
//! ```text
//! master:  num-fields field_1 … field_N 0
//! entry:   flags ms-diff seq-diff [num-fields field value …] | [value …] lp-count
//! ```
//!
//! An entry whose fields equal the master's stores only its values
//! (`SAMEFIELDS`); a deleted entry keeps its place with the `DELETED` flag
//! until its node empties. The live and deleted counts that lead a
//! listpack in an RDB file are kept beside the body, so appending does not
//! rewrite the body's head. Node boundaries match Redis's, which makes
//! approximate trimming (`~`) remove what Redis removes.
//!
//! The body's elements are listpack elements without their back-lengths.
//! Those only serve walking a listpack backwards, and no node is walked
//! so: a reverse range reads a node (at most `stream-node-max-entries`
//! entries) forwards and reverses it. Dropping them saves a third of a
//! typical entry; the node keeps their total, which decides when it is
//! full, and puts them back when it becomes a listpack again (RDB, DUMP).

use std::collections::BTreeMap;

use crate::keyspace::plist::{backlen_size, push_backlen, push_str_header};

const DELETED: i64 = 1;
const SAMEFIELDS: i64 = 2;

/// An entry ID: milliseconds and a sequence number.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StreamId {
    pub ms: u64,
    pub seq: u64,
}

impl StreamId {
    pub const MIN: StreamId = StreamId { ms: 0, seq: 0 };
    pub const MAX: StreamId = StreamId {
        ms: u64::MAX,
        seq: u64::MAX,
    };

    pub fn new(ms: u64, seq: u64) -> StreamId {
        StreamId { ms, seq }
    }

    /// The next ID, if there is one.
    pub fn incr(self) -> Option<StreamId> {
        if self.seq < u64::MAX {
            Some(StreamId::new(self.ms, self.seq + 1))
        } else if self.ms < u64::MAX {
            Some(StreamId::new(self.ms + 1, 0))
        } else {
            None
        }
    }

    /// The previous ID, if there is one.
    pub fn decr(self) -> Option<StreamId> {
        if self.seq > 0 {
            Some(StreamId::new(self.ms, self.seq - 1))
        } else if self.ms > 0 {
            Some(StreamId::new(self.ms - 1, u64::MAX))
        } else {
            None
        }
    }

    /// The 16-byte big-endian form RDB files key nodes by.
    pub fn to_be_bytes(self) -> [u8; 16] {
        let mut b = [0u8; 16];
        b[..8].copy_from_slice(&self.ms.to_be_bytes());
        b[8..].copy_from_slice(&self.seq.to_be_bytes());
        b
    }

    pub fn from_be_bytes(b: &[u8]) -> Option<StreamId> {
        let ms = u64::from_be_bytes(b.get(..8)?.try_into().ok()?);
        let seq = u64::from_be_bytes(b.get(8..16)?.try_into().ok()?);
        Some(StreamId::new(ms, seq))
    }

    /// `ms-seq` as this server writes it (AOF rewrites, reloads).
    pub fn parse_plain(b: &[u8]) -> Option<StreamId> {
        let d = b.iter().position(|&c| c == b'-')?;
        let ms = std::str::from_utf8(&b[..d]).ok()?.parse().ok()?;
        let seq = std::str::from_utf8(&b[d + 1..]).ok()?.parse().ok()?;
        Some(StreamId::new(ms, seq))
    }

    pub fn format(self) -> String {
        format!("{}-{}", self.ms, self.seq)
    }
}

/// How a stream is trimmed (XADD's and XTRIM's MAXLEN / MINID).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trim {
    MaxLen(u64),
    MinId(StreamId),
}

/// Node size limits (`stream-node-max-bytes`, `stream-node-max-entries`).
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub max_bytes: usize,
    pub max_entries: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_bytes: 4096,
            max_entries: 100,
        }
    }
}

const LISTPACK_MAX_SIZE: usize = 1 << 30;

// ---- listpack elements ----

/// One listpack element as read: an integer or a string.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Elem<'a> {
    Int(i64),
    Str(&'a [u8]),
}

impl Elem<'_> {
    fn int(self) -> Option<i64> {
        match self {
            Elem::Int(v) => Some(v),
            Elem::Str(s) => crate::resp::parse_i64(s),
        }
    }

    pub fn to_vec(self) -> Vec<u8> {
        match self {
            Elem::Int(v) => itoa::Buffer::new().format(v).as_bytes().to_vec(),
            Elem::Str(s) => s.to_vec(),
        }
    }
}

/// Reads the body element at `p` (no back-length); returns it and where
/// the next one starts.
pub fn read_elem(b: &[u8], p: usize) -> Option<(Elem<'_>, usize)> {
    let (elem, size) = decode(b, p)?;
    Some((elem, p + size))
}

/// Reads the listpack element at `p`, skipping its back-length.
fn read_lp_elem(b: &[u8], p: usize) -> Option<(Elem<'_>, usize, usize)> {
    let (elem, size) = decode(b, p)?;
    let next = p + size + backlen_size(size);
    // The size written backwards must be this element's: Redis walks
    // entries from the tail with it.
    (next <= b.len() && crate::keyspace::plist::backlen_is(b, p + size, size))
        .then_some((elem, size, next))
}

/// The element at `p` and its size, back-length not included.
fn decode(b: &[u8], p: usize) -> Option<(Elem<'_>, usize)> {
    let e = *b.get(p)?;
    let get = |from: usize, n: usize| b.get(from..from + n);
    let (elem, size) = if e & 0x80 == 0 {
        (Elem::Int((e & 0x7f) as i64), 1)
    } else if e & 0xC0 == 0x80 {
        let len = (e & 0x3f) as usize;
        (Elem::Str(get(p + 1, len)?), 1 + len)
    } else if e & 0xE0 == 0xC0 {
        let raw = (((e & 0x1f) as u16) << 8) | *b.get(p + 1)? as u16;
        (Elem::Int((((raw << 3) as i16) >> 3) as i64), 2)
    } else if e & 0xF0 == 0xE0 {
        let len = (((e & 0x0f) as usize) << 8) | *b.get(p + 1)? as usize;
        (Elem::Str(get(p + 2, len)?), 2 + len)
    } else {
        let le = |k: usize| -> Option<[u8; 8]> {
            let mut w = [0u8; 8];
            w[..k].copy_from_slice(get(p + 1, k)?);
            Some(w)
        };
        match e {
            0xF0 => {
                let len = u32::from_le_bytes(get(p + 1, 4)?.try_into().ok()?) as usize;
                (Elem::Str(get(p + 5, len)?), 5 + len)
            }
            0xF1 => {
                let w = le(2)?;
                (Elem::Int(i16::from_le_bytes([w[0], w[1]]) as i64), 3)
            }
            0xF2 => {
                let w = le(3)?;
                (
                    Elem::Int((i32::from_le_bytes([0, w[0], w[1], w[2]]) >> 8) as i64),
                    4,
                )
            }
            0xF3 => {
                let w = le(4)?;
                (
                    Elem::Int(i32::from_le_bytes([w[0], w[1], w[2], w[3]]) as i64),
                    5,
                )
            }
            0xF4 => (Elem::Int(i64::from_le_bytes(le(8)?)), 9),
            _ => return None,
        }
    };
    (p + size <= b.len()).then_some((elem, size))
}

/// Appends an integer in the smallest listpack encoding, without a
/// back-length; returns its size.
pub fn push_int(out: &mut Vec<u8>, v: i64) -> usize {
    let start = out.len();
    if (0..=127).contains(&v) {
        out.push(v as u8);
    } else if (-4096..=4095).contains(&v) {
        let u = if v < 0 { (1i64 << 13) + v } else { v } as u16;
        out.push(0xC0 | (u >> 8) as u8);
        out.push(u as u8);
    } else if (-32768..=32767).contains(&v) {
        out.push(0xF1);
        out.extend_from_slice(&(v as i16).to_le_bytes());
    } else if (-8_388_608..=8_388_607).contains(&v) {
        out.push(0xF2);
        out.extend_from_slice(&(v as i32).to_le_bytes()[..3]);
    } else if (i32::MIN as i64..=i32::MAX as i64).contains(&v) {
        out.push(0xF3);
        out.extend_from_slice(&(v as i32).to_le_bytes());
    } else {
        out.push(0xF4);
        out.extend_from_slice(&v.to_le_bytes());
    }
    out.len() - start
}

/// Appends a string, stored as an integer when it is one in canonical form
/// (as Redis's lpAppend does), without a back-length; returns its size.
pub fn push_str(out: &mut Vec<u8>, s: &[u8]) -> usize {
    if let Some(v) = super::plist::lp_int(s) {
        return push_int(out, v);
    }
    let start = out.len();
    push_str_header(out, s.len());
    out.extend_from_slice(s);
    out.len() - start
}

/// The bytes an element of `size` bytes takes in a listpack.
fn in_listpack(size: usize) -> usize {
    size + backlen_size(size)
}

/// Bytes an integer takes in a listpack (XADD asks twice per entry, so
/// this counts rather than encodes).
fn int_size(v: i64) -> usize {
    let encoded = if (0..=127).contains(&v) {
        1
    } else if (-4096..=4095).contains(&v) {
        2
    } else if (-32768..=32767).contains(&v) {
        3
    } else if (-8_388_608..=8_388_607).contains(&v) {
        4
    } else if (i32::MIN as i64..=i32::MAX as i64).contains(&v) {
        5
    } else {
        9
    };
    in_listpack(encoded)
}

// ---- nodes ----

#[derive(Clone, Debug, Default)]
pub struct Node {
    /// Live entries.
    pub count: u64,
    /// Entries marked deleted.
    pub deleted: u64,
    /// The back-lengths the body's elements take in a listpack, in bytes.
    backlens: u32,
    /// The listpack after its two counters, back-lengths left out.
    pub body: Vec<u8>,
}

impl Node {
    /// A node whose body starts with `body` (back-lengths left out, and
    /// `backlens` bytes of them).
    fn new(body: Vec<u8>, backlens: usize) -> Node {
        Node {
            count: 0,
            deleted: 0,
            backlens: backlens as u32,
            body,
        }
    }

    /// The size of the listpack this node is in Redis (header and end
    /// included), which decides when a new node starts.
    fn listpack_bytes(&self) -> usize {
        6 + int_size(self.count as i64)
            + int_size(self.deleted as i64)
            + self.body.len()
            + self.backlens as usize
            + 1
    }

    /// The listpack as an RDB file holds it.
    pub fn to_listpack(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(self.body.len() + self.backlens as usize + 24);
        for v in [self.count, self.deleted] {
            let size = push_int(&mut b, v as i64);
            push_backlen(&mut b, size);
        }
        let mut elems = 2;
        let mut p = 0;
        // The body parsed when it was made; a failure here only stops early.
        while let Some((_, size)) = decode(&self.body, p) {
            b.extend_from_slice(&self.body[p..p + size]);
            push_backlen(&mut b, size);
            elems += 1;
            p += size;
        }
        let mut out = Vec::with_capacity(b.len() + 7);
        crate::persistence::rdb::listpack::wrap(&mut out, &b, elems);
        out
    }

    /// A node from an RDB listpack: its counters split off, the entries
    /// checked; None when it does not parse.
    pub fn from_listpack(lp: &[u8], master: StreamId) -> Option<Node> {
        if lp.len() < 7 || *lp.last()? != 0xFF {
            return None;
        }
        let total = u32::from_le_bytes(lp[..4].try_into().ok()?) as usize;
        if total != lp.len() {
            return None;
        }
        let inner = &lp[6..lp.len() - 1];
        let (count, _, p) = read_lp_elem(inner, 0)?;
        let (deleted, _, mut p) = read_lp_elem(inner, p)?;
        let mut body = Vec::with_capacity(inner.len() - p);
        let mut backlens = 0;
        while p < inner.len() {
            let (_, size, next) = read_lp_elem(inner, p)?;
            body.extend_from_slice(&inner[p..p + size]);
            backlens += next - p - size;
            p = next;
        }
        let node = Node {
            count: u64::try_from(count.int()?).ok()?,
            deleted: u64::try_from(deleted.int()?).ok()?,
            backlens: u32::try_from(backlens).ok()?,
            body,
        };
        // Every entry must parse, and the flags must add up.
        let (mut live, mut dead) = (0u64, 0u64);
        node.scan(master, |e| {
            if e.flags & DELETED != 0 {
                dead += 1;
            } else {
                live += 1;
            }
            true
        })?;
        (live == node.count && dead == node.deleted).then_some(node)
    }

    /// The master entry's fields and where the entries start.
    fn master(&self) -> Option<(Vec<Elem<'_>>, usize)> {
        let (n, mut p) = read_elem(&self.body, 0)?;
        let n = n.int()?;
        let mut fields = Vec::with_capacity(n.max(0) as usize);
        for _ in 0..n {
            let (f, next) = read_elem(&self.body, p)?;
            fields.push(f);
            p = next;
        }
        let (zero, p) = read_elem(&self.body, p)?;
        (zero.int()? == 0).then_some((fields, p))
    }

    /// Whether the master entry's fields are `fields`' names, in order
    /// (read in place: XADD asks for every entry).
    fn master_is(&self, fields: &[(&[u8], &[u8])]) -> bool {
        let Some((n, mut p)) = read_elem(&self.body, 0) else {
            return false;
        };
        if n.int() != Some(fields.len() as i64) {
            return false;
        }
        for (f, _) in fields {
            match read_elem(&self.body, p) {
                Some((m, next)) if elem_eq(m, f) => p = next,
                _ => return false,
            }
        }
        true
    }

    /// Walks the entries in order (deleted ones included); `f` returns
    /// false to stop. None when the body does not parse.
    pub fn scan<'a>(
        &'a self,
        master: StreamId,
        mut f: impl FnMut(&EntryRef<'a>) -> bool,
    ) -> Option<()> {
        let (mfields, mut p) = self.master()?;
        let b = &self.body;
        while p < b.len() {
            let start = p;
            let (flags, q) = read_elem(b, p)?;
            let flags = flags.int()?;
            let (msd, q) = read_elem(b, q)?;
            let (seqd, mut q) = read_elem(b, q)?;
            let id = StreamId::new(
                master.ms.wrapping_add(msd.int()? as u64),
                master.seq.wrapping_add(seqd.int()? as u64),
            );
            let mut fields = Vec::new();
            if flags & SAMEFIELDS != 0 {
                for mf in &mfields {
                    let (v, next) = read_elem(b, q)?;
                    fields.push((*mf, v));
                    q = next;
                }
            } else {
                let (n, next) = read_elem(b, q)?;
                q = next;
                for _ in 0..n.int()? {
                    let (fld, next) = read_elem(b, q)?;
                    let (v, next) = read_elem(b, next)?;
                    fields.push((fld, v));
                    q = next;
                }
            }
            // The entry's element count, which backward walks rely on.
            let (lp_count, next) = read_elem(b, q)?;
            let expected = if flags & SAMEFIELDS != 0 {
                3 + fields.len()
            } else {
                4 + 2 * fields.len()
            };
            if lp_count.int()? != expected as i64 {
                return None;
            }
            p = next;
            let e = EntryRef {
                id,
                flags,
                flags_at: start,
                fields,
            };
            if !f(&e) {
                return Some(());
            }
        }
        Some(())
    }
}

/// One entry as a node holds it.
#[derive(Debug)]
pub struct EntryRef<'a> {
    pub id: StreamId,
    flags: i64,
    flags_at: usize,
    pub fields: Vec<(Elem<'a>, Elem<'a>)>,
}

impl EntryRef<'_> {
    pub fn deleted(&self) -> bool {
        self.flags & DELETED != 0
    }
}

/// Why XADD could not add an entry.
#[derive(Debug, PartialEq, Eq)]
pub enum AddError {
    /// Not greater than the last ID (or the sequence would overflow).
    IdTooSmall,
    /// Fields and values over the 1 GB a listpack can hold.
    TooLarge,
}

// ---- consumer groups (their state; the commands come with XGROUP) ----

/// An entry delivered to a consumer and not yet acknowledged.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pending {
    /// Unix time in ms of the last delivery.
    pub delivery_time: i64,
    pub delivery_count: u64,
    pub consumer: Vec<u8>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Consumer {
    /// Unix time in ms the consumer was last seen.
    pub seen_time: i64,
    /// Its pending entries (each also in the group's PEL).
    pub pel: std::collections::BTreeSet<StreamId>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Group {
    pub last_id: StreamId,
    /// Entries read by the group so far; -1 when unknown.
    pub entries_read: i64,
    pub pel: BTreeMap<StreamId, Pending>,
    /// By name, in Redis's (byte) order.
    pub consumers: BTreeMap<Vec<u8>, Consumer>,
}

/// `entries_read` when it cannot be known.
pub const ENTRIES_READ_UNKNOWN: i64 = -1;

impl Group {
    pub fn new(last_id: StreamId, entries_read: i64) -> Group {
        Group {
            last_id,
            entries_read,
            ..Group::default()
        }
    }

    /// Creates consumer `name` seen at `now`; false if it exists.
    pub fn create_consumer(&mut self, name: &[u8], now: i64) -> bool {
        if self.consumers.contains_key(name) {
            return false;
        }
        self.consumers.insert(
            name.to_vec(),
            Consumer {
                seen_time: now,
                pel: Default::default(),
            },
        );
        true
    }

    /// Marks consumer `name` seen at `now`, creating it if missing; true
    /// when it was created (XREADGROUP, XCLAIM and XAUTOCLAIM do this).
    pub fn see_consumer(&mut self, name: &[u8], now: i64) -> bool {
        match self.consumers.get_mut(name) {
            Some(c) => {
                c.seen_time = now;
                false
            }
            None => self.create_consumer(name, now),
        }
    }

    /// Deletes consumer `name` and its pending entries; how many it had.
    pub fn delete_consumer(&mut self, name: &[u8]) -> Option<usize> {
        let c = self.consumers.remove(name)?;
        for id in &c.pel {
            self.pel.remove(id);
        }
        Some(c.pel.len())
    }

    /// Acknowledges `id`: true if it was pending.
    pub fn ack(&mut self, id: StreamId) -> bool {
        let Some(p) = self.pel.remove(&id) else {
            return false;
        };
        if let Some(c) = self.consumers.get_mut(&p.consumer) {
            c.pel.remove(&id);
        }
        true
    }

    /// Makes `consumer` (which must exist) the owner of pending `id`,
    /// creating the entry (owner-less until now) if it is missing.
    /// Returns the entry for its times and counts to be set.
    pub fn assign(&mut self, id: StreamId, consumer: &[u8]) -> &mut Pending {
        let p = self.pel.entry(id).or_insert_with(|| Pending {
            delivery_time: 0,
            delivery_count: 0,
            consumer: Vec::new(),
        });
        if p.consumer != consumer {
            if let Some(old) = self.consumers.get_mut(&p.consumer) {
                old.pel.remove(&id);
            }
            if let Some(new) = self.consumers.get_mut(consumer) {
                new.pel.insert(id);
            }
            p.consumer = consumer.to_vec();
        }
        p
    }
}

// ---- the stream ----

#[derive(Clone, Debug, Default)]
pub struct Stream {
    pub nodes: BTreeMap<StreamId, Node>,
    pub length: u64,
    pub last_id: StreamId,
    pub first_id: StreamId,
    pub max_deleted_id: StreamId,
    pub entries_added: u64,
    /// Consumer groups by name.
    pub groups: BTreeMap<Vec<u8>, Group>,
}

impl Stream {
    pub fn new() -> Stream {
        Stream::default()
    }

    /// Appends an entry. `id`: None for `*`; Some((id, seq_given)) for an
    /// explicit one (`ms-*` leaves the sequence to the stream).
    pub fn add(
        &mut self,
        id: Option<(StreamId, bool)>,
        now_ms: u64,
        fields: &[(&[u8], &[u8])],
        limits: Limits,
    ) -> Result<StreamId, AddError> {
        let id = match id {
            Some((id, true)) => id,
            Some((id, false)) => {
                if self.last_id.ms == id.ms {
                    if self.last_id.seq == u64::MAX {
                        return Err(AddError::IdTooSmall);
                    }
                    StreamId::new(id.ms, self.last_id.seq + 1)
                } else {
                    id
                }
            }
            None => {
                if now_ms > self.last_id.ms {
                    StreamId::new(now_ms, 0)
                } else {
                    self.last_id.incr().ok_or(AddError::IdTooSmall)?
                }
            }
        };
        if id <= self.last_id {
            return Err(AddError::IdTooSmall);
        }
        let total: usize = fields.iter().map(|(f, v)| f.len() + v.len()).sum();
        if total > LISTPACK_MAX_SIZE {
            return Err(AddError::TooLarge);
        }
        let max_bytes = if limits.max_bytes == 0 || limits.max_bytes > LISTPACK_MAX_SIZE {
            LISTPACK_MAX_SIZE
        } else {
            limits.max_bytes
        };
        // The tail node, unless it is full.
        let mut tail = self.nodes.iter_mut().next_back().and_then(|(k, n)| {
            let full = n.listpack_bytes() + total >= max_bytes
                || (limits.max_entries > 0 && n.count + n.deleted >= limits.max_entries);
            (!full).then_some((*k, n))
        });
        let mut same = false;
        if let Some((_, node)) = tail.as_mut() {
            same = node.master_is(fields);
        }
        let (master, node) = match tail {
            Some((k, n)) => (k, n),
            None => {
                // The full node takes no more entries: its spare capacity
                // (up to half of it, from doubling growth) goes back.
                if let Some((_, full)) = self.nodes.iter_mut().next_back() {
                    full.body.shrink_to_fit();
                }
                let mut body = Vec::with_capacity(64);
                let mut backlens = backlen_size(push_int(&mut body, fields.len() as i64));
                for (f, _) in fields {
                    backlens += backlen_size(push_str(&mut body, f));
                }
                backlens += backlen_size(push_int(&mut body, 0));
                same = true;
                self.nodes.insert(id, Node::new(body, backlens));
                let n = self.nodes.get_mut(&id).ok_or(AddError::TooLarge)?;
                (id, n)
            }
        };
        let b = &mut node.body;
        let mut backlens = backlen_size(push_int(b, if same { SAMEFIELDS } else { 0 }));
        backlens += backlen_size(push_int(b, id.ms.wrapping_sub(master.ms) as i64));
        backlens += backlen_size(push_int(b, id.seq.wrapping_sub(master.seq) as i64));
        if !same {
            backlens += backlen_size(push_int(b, fields.len() as i64));
        }
        for (f, v) in fields {
            if !same {
                backlens += backlen_size(push_str(b, f));
            }
            backlens += backlen_size(push_str(b, v));
        }
        let mut lp_count = fields.len() as i64 + 3;
        if !same {
            lp_count += fields.len() as i64 + 1;
        }
        backlens += backlen_size(push_int(b, lp_count));
        // Under the 1 GB a listpack may hold (checked above).
        node.backlens += backlens as u32;
        node.count += 1;
        self.length += 1;
        self.entries_added += 1;
        self.last_id = id;
        if self.length == 1 {
            self.first_id = id;
        }
        Ok(id)
    }

    /// Where a forward walk from `id` starts: the node at or before it
    /// (which may hold it), or the first.
    fn walk_start(&self, id: StreamId) -> StreamId {
        self.nodes
            .range(..=id)
            .next_back()
            .map(|(k, _)| *k)
            .unwrap_or(StreamId::MIN)
    }

    /// Entries with IDs in [start, end], in order (reversed with `rev`),
    /// at most `count` (0: all).
    ///
    /// The walk is Redis's stream iterator's: deleted entries are passed
    /// over without being compared, and only a live entry past the range
    /// ends it. IDs within a node are not always in order: XSETID may
    /// lower the last ID below a deleted entry's, and later entries
    /// follow the deleted one.
    pub fn range(&self, start: StreamId, end: StreamId, count: usize, rev: bool) -> Vec<Entry> {
        let mut out = Vec::new();
        if start > end {
            return out;
        }
        let full = |out: &Vec<Entry>| count > 0 && out.len() >= count;
        if !rev {
            for (k, n) in self.nodes.range(self.walk_start(start)..) {
                let mut done = false;
                n.scan(*k, |e| {
                    if e.deleted() || e.id < start {
                        return true;
                    }
                    if e.id > end {
                        done = true;
                        return false;
                    }
                    out.push(Entry::from_ref(e));
                    done = full(&out);
                    !done
                });
                if done {
                    break;
                }
            }
        } else {
            // From the node at or before `end`, backwards.
            for (k, n) in self.nodes.range(..=end).rev() {
                let mut here: Vec<Entry> = Vec::new();
                n.scan(*k, |e| {
                    if !e.deleted() {
                        here.push(Entry::from_ref(e));
                    }
                    true
                });
                for e in here.into_iter().rev() {
                    if e.id > end {
                        continue;
                    }
                    if e.id < start || full(&out) {
                        return out;
                    }
                    out.push(e);
                }
            }
        }
        out
    }

    /// The first (or last) entry's ID, deleted ones counted when
    /// `tombstones`; MAX (first) or MIN (last) when there is none.
    pub fn edge_id(&self, first: bool, tombstones: bool) -> StreamId {
        let mut found = None;
        let mut visit = |k: &StreamId, n: &Node| {
            let mut last = None;
            n.scan(*k, |e| {
                if tombstones || !e.deleted() {
                    if first {
                        found = Some(e.id);
                        return false;
                    }
                    last = Some(e.id);
                }
                true
            });
            if !first && last.is_some() {
                found = last;
            }
            found.is_some()
        };
        if first {
            for (k, n) in &self.nodes {
                if visit(k, n) {
                    break;
                }
            }
        } else {
            for (k, n) in self.nodes.iter().rev() {
                if visit(k, n) {
                    break;
                }
            }
        }
        found.unwrap_or(if first { StreamId::MAX } else { StreamId::MIN })
    }

    /// Marks one entry deleted; true when it was there. (XDEL keeps
    /// `first_id` and `max_deleted_id` itself.) The entry is looked for
    /// as [`Stream::range`] walks, so a deleted entry with the same ID, or
    /// a larger one before it, does not hide it.
    pub fn delete(&mut self, id: StreamId) -> bool {
        let mut found = None;
        for (&k, node) in self.nodes.range(self.walk_start(id)..) {
            let mut stop = false;
            node.scan(k, |e| {
                if e.deleted() || e.id < id {
                    return true;
                }
                if e.id == id {
                    found = Some((k, e.flags_at, e.flags));
                }
                stop = true;
                false
            });
            if stop {
                break;
            }
        }
        let Some((k, pos, flags)) = found else {
            return false;
        };
        let Some(node) = self.nodes.get_mut(&k) else {
            return false;
        };
        if node.count == 1 {
            self.nodes.remove(&k);
        } else {
            // Flags are 0..3: one byte, replaced in place.
            node.body[pos] = (flags | DELETED) as u8;
            node.count -= 1;
            node.deleted += 1;
        }
        self.length -= 1;
        true
    }

    /// Trims as XADD and XTRIM do: whole nodes from the head, then (unless
    /// `approx`) entries of the next node marked deleted. `limit` bounds
    /// the entries removed by whole nodes (0: none). Returns how many
    /// entries went.
    pub fn trim(&mut self, how: Trim, approx: bool, limit: u64) -> u64 {
        let mut deleted = 0u64;
        let keys: Vec<StreamId> = self.nodes.keys().copied().collect();
        for k in keys {
            if let Trim::MaxLen(max) = how {
                if self.length <= max {
                    break;
                }
            }
            let Some(node) = self.nodes.get(&k) else {
                break;
            };
            let entries = node.count;
            if limit > 0 && deleted + entries > limit {
                break;
            }
            let remove_node = match how {
                Trim::MaxLen(max) => self.length - entries >= max,
                Trim::MinId(min) => {
                    // The node's last ID, deleted entries included.
                    let mut last = k;
                    node.scan(k, |e| {
                        last = e.id;
                        true
                    });
                    last < min
                }
            };
            if remove_node {
                self.nodes.remove(&k);
                self.length -= entries;
                deleted += entries;
                continue;
            }
            if approx {
                break;
            }
            // Mark entries of this node deleted, from its head.
            let mut marks = Vec::new();
            let mut length = self.length;
            node.scan(k, |e| {
                let stop = match how {
                    Trim::MaxLen(max) => length <= max,
                    Trim::MinId(min) => e.id >= min,
                };
                if stop {
                    return false;
                }
                if !e.deleted() {
                    marks.push((e.flags_at, e.flags));
                    length -= 1;
                }
                true
            });
            let n = marks.len() as u64;
            if let Some(node) = self.nodes.get_mut(&k) {
                for (pos, flags) in marks {
                    node.body[pos] = (flags | DELETED) as u8;
                }
                node.count -= n;
                node.deleted += n;
            }
            self.length -= n;
            deleted += n;
            break;
        }
        if self.length == 0 {
            self.first_id = StreamId::MIN;
        } else if deleted > 0 {
            self.first_id = self.edge_id(true, false);
        }
        deleted
    }

    /// Iterates over every live entry (RDB writers, digests, AOF rewrite).
    pub fn for_each(&self, mut f: impl FnMut(&EntryRef)) {
        for (k, n) in &self.nodes {
            n.scan(*k, |e| {
                if !e.deleted() {
                    f(e);
                }
                true
            });
        }
    }

    /// How many entries precede `id` in the stream's whole history (an
    /// entries-read counter for a group at `id`), or -1 when that cannot
    /// be known (Redis's estimate).
    pub fn distance_from_first_ever(&self, id: StreamId) -> i64 {
        if self.entries_added == 0 {
            return 0;
        }
        if self.length == 0 && id <= self.last_id {
            return self.entries_added as i64;
        }
        if id == self.last_id {
            return self.entries_added as i64;
        }
        if id > self.last_id {
            return -1;
        }
        if self.max_deleted_id == StreamId::MIN || self.max_deleted_id < self.first_id {
            if id < self.first_id {
                return (self.entries_added - self.length) as i64;
            }
            if id == self.first_id {
                return (self.entries_added - self.length + 1) as i64;
            }
        }
        -1
    }

    /// Whether the live entry `id` exists.
    pub fn entry_exists(&self, id: StreamId) -> bool {
        !self.range(id, id, 1, false).is_empty()
    }

    /// Whether a deleted entry may lie within [start, end] (Redis's test:
    /// only the largest deleted ID is known).
    pub fn range_has_tombstones(&self, start: StreamId, end: StreamId) -> bool {
        if self.length == 0 || self.max_deleted_id == StreamId::MIN {
            return false;
        }
        if self.first_id > self.max_deleted_id {
            return false;
        }
        start <= self.max_deleted_id && self.max_deleted_id <= end
    }

    /// Entries not yet delivered to `g`, if that can be known.
    pub fn lag(&self, g: &Group) -> Option<i64> {
        if self.entries_added == 0 {
            return Some(0);
        }
        if g.entries_read != ENTRIES_READ_UNKNOWN
            && !self.range_has_tombstones(g.last_id, StreamId::MAX)
        {
            return Some(self.entries_added as i64 - g.entries_read);
        }
        match self.distance_from_first_ever(g.last_id) {
            ENTRIES_READ_UNKNOWN => None,
            read => Some(self.entries_added as i64 - read),
        }
    }

    /// Moves `g`'s last delivered ID up to `id` (an entry just delivered),
    /// keeping its read counter as Redis does.
    pub fn advance_group(&self, g: &mut Group, id: StreamId) {
        if id <= g.last_id {
            return;
        }
        if g.entries_read != ENTRIES_READ_UNKNOWN && !self.range_has_tombstones(id, StreamId::MAX) {
            g.entries_read += 1;
        } else if self.entries_added > 0 {
            g.entries_read = self.distance_from_first_ever(id);
        }
        g.last_id = id;
    }

    /// Nodes of the radix tree Redis would keep for these node keys
    /// (`XINFO STREAM`'s radix-tree-nodes): 16-byte keys stored as
    /// compressed runs, with a branch node where keys part and an empty
    /// node at each key's end.
    pub fn rax_nodes(&self) -> u64 {
        fn count(keys: &[[u8; 16]], depth: usize) -> u64 {
            if keys.len() == 1 {
                // A run to the end (if any is left) and the key's node.
                return if depth == 16 { 1 } else { 2 };
            }
            // Keys are distinct and sorted: find their common run.
            let (first, last) = (&keys[0], &keys[keys.len() - 1]);
            let mut d = depth;
            while d < 16 && first[d] == last[d] {
                d += 1;
            }
            let mut n = u64::from(d > depth) + 1;
            let mut i = 0;
            while i < keys.len() {
                let b = keys[i][d];
                let j = i + keys[i..].iter().take_while(|k| k[d] == b).count();
                n += count(&keys[i..j], d + 1);
                i = j;
            }
            n
        }
        let keys: Vec<[u8; 16]> = self.nodes.keys().map(|k| k.to_be_bytes()).collect();
        if keys.is_empty() {
            return 1;
        }
        count(&keys, 0)
    }

    /// Allocations to free, as Redis estimates them: one per node, and
    /// per group one plus the first group's pending count.
    pub fn free_effort(&self) -> usize {
        let groups = self.groups.len();
        let first_pel = self.groups.values().next().map_or(0, |g| g.pel.len());
        self.nodes.len() + groups * (1 + first_pel)
    }

    /// Heap bytes (for MEMORY USAGE and eviction).
    pub fn heap_size(&self) -> usize {
        self.nodes
            .values()
            .map(|n| n.body.capacity() + 64)
            .sum::<usize>()
            + 64
    }
}

fn elem_eq(e: Elem, s: &[u8]) -> bool {
    match e {
        Elem::Str(x) => x == s,
        Elem::Int(v) => itoa::Buffer::new().format(v).as_bytes() == s,
    }
}

/// An entry copied out of its node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub id: StreamId,
    pub fields: Vec<(Vec<u8>, Vec<u8>)>,
}

impl Entry {
    fn from_ref(e: &EntryRef) -> Entry {
        Entry {
            id: e.id,
            fields: e
                .fields
                .iter()
                .map(|(f, v)| (f.to_vec(), v.to_vec()))
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn radix_nodes_as_redis_counts_them() {
        let mut s = Stream::new();
        assert_eq!(s.rax_nodes(), 1);
        let empty = Node::new(Vec::new(), 0);
        s.nodes.insert(id(5, 0), empty.clone());
        // One compressed run of 16 bytes, then the key's node.
        assert_eq!(s.rax_nodes(), 2);
        s.nodes.insert(id(5, 1), empty.clone());
        // A run of 15, a branch, two key nodes.
        assert_eq!(s.rax_nodes(), 4);
        s.nodes.insert(id(6, 0), empty);
        // Run of 7, branch {5,6}; under 5: run of 7, branch {0,1}, 2 keys;
        // under 6: run of 8 and its key.
        assert_eq!(s.rax_nodes(), 1 + 1 + (1 + 1 + 2) + 2);
    }

    #[test]
    fn group_pending_entries_follow_their_consumer() {
        let mut g = Group::new(StreamId::MIN, 0);
        assert!(g.create_consumer(b"a", 1));
        assert!(!g.create_consumer(b"a", 2));
        g.create_consumer(b"b", 1);
        g.assign(id(1, 0), b"a").delivery_count = 1;
        g.assign(id(2, 0), b"a");
        assert_eq!(g.consumers[&b"a".to_vec()].pel.len(), 2);
        g.assign(id(1, 0), b"b");
        assert_eq!(g.consumers[&b"a".to_vec()].pel.len(), 1);
        assert_eq!(g.pel[&id(1, 0)].consumer, b"b");
        assert_eq!(g.pel[&id(1, 0)].delivery_count, 1);
        assert!(g.ack(id(1, 0)));
        assert!(!g.ack(id(1, 0)));
        assert!(g.consumers[&b"b".to_vec()].pel.is_empty());
        assert_eq!(g.delete_consumer(b"a"), Some(1));
        assert!(g.pel.is_empty());
        assert_eq!(g.delete_consumer(b"a"), None);
    }

    fn id(ms: u64, seq: u64) -> StreamId {
        StreamId::new(ms, seq)
    }

    fn filled(n: u64) -> Stream {
        let mut s = Stream::new();
        for i in 1..=n {
            let v = i.to_string();
            s.add(
                Some((id(i, 0), true)),
                0,
                &[(b"f", v.as_bytes())],
                Limits::default(),
            )
            .unwrap();
        }
        s
    }

    #[test]
    fn ids_parse_step_and_order() {
        assert_eq!(StreamId::parse_plain(b"5-7"), Some(id(5, 7)));
        assert_eq!(id(5, u64::MAX).incr(), Some(id(6, 0)));
        assert_eq!(StreamId::MAX.incr(), None);
        assert_eq!(id(6, 0).decr(), Some(id(5, u64::MAX)));
        assert_eq!(StreamId::MIN.decr(), None);
        assert_eq!(
            StreamId::from_be_bytes(&id(1, 2).to_be_bytes()),
            Some(id(1, 2))
        );
    }

    #[test]
    fn listpack_integers_round_trip_in_every_width() {
        for v in [
            0,
            127,
            128,
            -1,
            4095,
            -4096,
            4096,
            32767,
            -32768,
            8_388_607,
            -8_388_608,
            1 << 31,
            i64::MIN,
            i64::MAX,
        ] {
            let mut b = Vec::new();
            push_int(&mut b, v);
            assert_eq!(read_elem(&b, 0), Some((Elem::Int(v), b.len())), "{v}");
            assert_eq!(int_size(v), in_listpack(b.len()), "{v}");
        }
        let mut b = Vec::new();
        push_str(&mut b, b"007");
        push_str(&mut b, b"-42");
        assert_eq!(read_elem(&b, 0).map(|e| e.0), Some(Elem::Str(b"007")));
    }

    #[test]
    fn entries_come_back_in_order_and_reversed() {
        let mut s = Stream::new();
        let auto = s
            .add(None, 1000, &[(b"a", b"1")], Limits::default())
            .unwrap();
        assert_eq!(auto, id(1000, 0));
        assert_eq!(
            s.add(None, 999, &[(b"a", b"2")], Limits::default()),
            Ok(id(1000, 1))
        );
        assert_eq!(
            s.add(
                Some((id(1000, 0), false)),
                0,
                &[(b"b", b"3")],
                Limits::default()
            ),
            Ok(id(1000, 2))
        );
        assert_eq!(
            s.add(
                Some((id(5, 0), true)),
                0,
                &[(b"b", b"3")],
                Limits::default()
            ),
            Err(AddError::IdTooSmall)
        );
        let all = s.range(StreamId::MIN, StreamId::MAX, 0, false);
        assert_eq!(all.iter().map(|e| e.id.seq).collect::<Vec<_>>(), [0, 1, 2]);
        assert_eq!(all[2].fields, vec![(b"b".to_vec(), b"3".to_vec())]);
        let rev = s.range(StreamId::MIN, StreamId::MAX, 2, true);
        assert_eq!(rev.iter().map(|e| e.id.seq).collect::<Vec<_>>(), [2, 1]);
    }

    #[test]
    fn nodes_split_at_the_entry_limit_and_survive_the_listpack_form() {
        let s = filled(250);
        assert_eq!(s.nodes.len(), 3);
        for (k, n) in &s.nodes {
            let back = Node::from_listpack(&n.to_listpack(), *k).expect("parses");
            assert_eq!(
                (back.count, back.deleted, &back.body),
                (n.count, n.deleted, &n.body)
            );
        }
    }

    #[test]
    fn a_node_counts_the_back_lengths_its_listpack_will_have() {
        let mut s = Stream::new();
        let long = vec![b'x'; 300];
        let limits = Limits {
            max_bytes: 1 << 20,
            max_entries: 0,
        };
        for i in 1..=40u64 {
            let v = (i * 1000).to_string();
            // Same fields, other fields, long values (two-byte back-lengths).
            let fields: Vec<(&[u8], &[u8])> = match i % 3 {
                0 => vec![(b"a", v.as_bytes()), (b"b", b"-7")],
                1 => vec![(b"other", &long[..(i as usize * 7)])],
                _ => vec![(b"a", b"x"), (b"b", v.as_bytes())],
            };
            s.add(Some((id(i, 0), true)), 0, &fields, limits).unwrap();
        }
        assert!(s.delete(id(5, 0)));
        assert_eq!(s.nodes.len(), 1);
        for (k, n) in &s.nodes {
            let lp = n.to_listpack();
            assert_eq!(n.listpack_bytes(), lp.len());
            let back = Node::from_listpack(&lp, *k).expect("parses");
            assert_eq!(back.backlens, n.backlens);
            assert_eq!(back.to_listpack(), lp);
        }
    }

    #[test]
    fn deleting_marks_then_drops_an_emptied_node() {
        let mut s = filled(3);
        assert!(s.delete(id(2, 0)));
        assert!(!s.delete(id(2, 0)));
        assert_eq!(s.length, 2);
        assert_eq!(s.range(StreamId::MIN, StreamId::MAX, 0, false).len(), 2);
        assert!(s.delete(id(1, 0)) && s.delete(id(3, 0)));
        assert!(s.nodes.is_empty());
    }

    #[test]
    fn trimming_exact_and_approximate() {
        let mut s = filled(250);
        // Approximate: whole nodes only (100 entries each).
        assert_eq!(s.trim(Trim::MaxLen(120), true, 0), 100);
        assert_eq!(s.length, 150);
        assert_eq!(s.trim(Trim::MaxLen(120), false, 0), 30);
        assert_eq!(s.first_id, id(131, 0));
        assert_eq!(s.trim(Trim::MinId(id(200, 0)), false, 0), 69);
        assert_eq!(s.first_id, id(200, 0));
        assert_eq!(s.trim(Trim::MaxLen(0), false, 0), 51);
        assert_eq!((s.length, s.first_id), (0, StreamId::MIN));
    }
}
