//! Encoding and decoding single values in RDB form (what DUMP carries).
//!
//! Values are written in the encoding Redis 7.0 would give them: lists as
//! a quicklist of listpack nodes, small hashes and sorted sets as one
//! listpack, small integer sets as an intset, larger ones in the plain
//! encodings (set, zset2, hash), streams as their listpack nodes; so a
//! DUMP payload equals redis-server's. We read those plus every compact
//! encoding Redis has written (ziplist, zipmap, stream listpacks of Redis
//! 5 to 7.0).

use super::{listpack, lzf};
use crate::keyspace::plist::{self, PackedList};
use crate::keyspace::sbytes::SBytes;
use crate::keyspace::stream::{Consumer, Group, Node, Pending, Stream, StreamId};
use crate::keyspace::value::{HashObj, SetObj, ZSetObj};
use crate::keyspace::Value;
use std::sync::atomic::{AtomicBool, Ordering};

pub const TYPE_STRING: u8 = 0;
pub const TYPE_LIST: u8 = 1;
pub const TYPE_SET: u8 = 2;
pub const TYPE_ZSET: u8 = 3;
pub const TYPE_HASH: u8 = 4;
pub const TYPE_ZSET_2: u8 = 5;
pub const TYPE_HASH_ZIPMAP: u8 = 9;
pub const TYPE_LIST_ZIPLIST: u8 = 10;
pub const TYPE_SET_INTSET: u8 = 11;
pub const TYPE_ZSET_ZIPLIST: u8 = 12;
pub const TYPE_HASH_ZIPLIST: u8 = 13;
pub const TYPE_LIST_QUICKLIST: u8 = 14;
pub const TYPE_STREAM_LISTPACKS: u8 = 15;
pub const TYPE_HASH_LISTPACK: u8 = 16;
pub const TYPE_ZSET_LISTPACK: u8 = 17;
pub const TYPE_LIST_QUICKLIST_2: u8 = 18;
pub const TYPE_STREAM_LISTPACKS_2: u8 = 19;
pub const TYPE_SET_LISTPACK: u8 = 20;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("Unexpected EOF reading RDB file")]
    Truncated,
    #[error("Unknown RDB encoding type {0}")]
    UnknownType(u8),
    /// Redis's words for the fault, where it has them (what its log says
    /// when a RESTORE or a load meets it).
    #[error("{0}")]
    Corrupt(&'static str),
    /// A collection with no elements: RESTORE refuses it, loading a file
    /// skips it (Redis 7.0's RDB_LOAD_ERR_EMPTY_KEY).
    #[error("empty key")]
    EmptyKey,
}

use DecodeError::*;

// ---- writing ----

pub fn write_len(out: &mut Vec<u8>, n: u64) {
    if n < 64 {
        out.push(n as u8);
    } else if n < 16384 {
        out.push(0x40 | (n >> 8) as u8);
        out.push(n as u8);
    } else if n <= u32::MAX as u64 {
        out.push(0x80);
        out.extend_from_slice(&(n as u32).to_be_bytes());
    } else {
        out.push(0x81);
        out.extend_from_slice(&n.to_be_bytes());
    }
}

pub fn write_string(out: &mut Vec<u8>, s: &[u8]) {
    // Small integers go in their compact integer form, as Redis writes them.
    if s.len() <= 11 {
        if let Some(n) = crate::resp::parse_i64(s) {
            if let Ok(v) = i8::try_from(n) {
                out.push(0xC0);
                out.push(v as u8);
                return;
            }
            if let Ok(v) = i16::try_from(n) {
                out.push(0xC1);
                out.extend_from_slice(&v.to_le_bytes());
                return;
            }
            if let Ok(v) = i32::try_from(n) {
                out.push(0xC2);
                out.extend_from_slice(&v.to_le_bytes());
                return;
            }
        }
    }
    if s.len() > 20 && COMPRESS.load(Ordering::Relaxed) && write_lzf(out, s) {
        return;
    }
    write_len(out, s.len() as u64);
    out.extend_from_slice(s);
}

/// `rdbcompression`: strings over 20 bytes are LZF-compressed, as Redis
/// does, when that saves at least 4 bytes.
pub static COMPRESS: AtomicBool = AtomicBool::new(true);

fn write_lzf(out: &mut Vec<u8>, s: &[u8]) -> bool {
    lzf::compress(s, s.len() - 4, |c| write_lzf_blob(out, c, s.len())).is_some()
}

fn write_lzf_blob(out: &mut Vec<u8>, compressed: &[u8], len: usize) {
    out.push(0xC3);
    write_len(out, compressed.len() as u64);
    write_len(out, len as u64);
    out.extend_from_slice(compressed);
}

/// A list node the list keeps compressed, written compressed whatever
/// `rdbcompression` says, as Redis writes its compressed quicklist nodes
/// (the LZF it holds: the listpack compressed within its own size, kept
/// when that saves more than 8 bytes).
fn write_compressed_node(out: &mut Vec<u8>, lp: &[u8]) {
    let n = lp.len();
    let done = lzf::compress(lp, n, |c| {
        if c.len() + 8 < n {
            write_lzf_blob(out, c, n);
            true
        } else {
            false
        }
    });
    if done != Some(true) {
        write_string(out, lp);
    }
}

/// Redis's list node size (`list-max-listpack-size -2`: 8 KB).
const LIST_NODE_BYTES: usize = 8 * 1024;
/// quicklist node container: elements packed in a listpack.
const CONTAINER_PACKED: u64 = 2;

/// A list as a quicklist of listpack nodes, one per chunk, elements
/// encoded as Redis's listpack encodes them (integers as integers).
fn write_list(out: &mut Vec<u8>, l: &PackedList, spill: &mut Spill) {
    let mut body = Vec::with_capacity(LIST_NODE_BYTES);
    let mut lp = Vec::with_capacity(LIST_NODE_BYTES + 64);
    write_len(out, l.chunk_elements().count() as u64);
    for (n, chunk) in l.chunk_elements() {
        lp.clear();
        if let Some(b) = chunk.listpack_body() {
            listpack::wrap(&mut lp, b, n);
        } else {
            body.clear();
            for e in chunk.elements() {
                listpack::push_element(&mut body, e);
            }
            listpack::wrap(&mut lp, &body, n);
        }
        write_len(out, CONTAINER_PACKED);
        if chunk.compressed() {
            write_compressed_node(out, &lp);
        } else {
            write_string(out, &lp);
        }
        spill.offer(out);
    }
}

/// A listpack of `count` elements, which `fill` encodes, written as one RDB
/// string (small hashes and sorted sets, as Redis keeps them).
fn write_listpack(out: &mut Vec<u8>, count: usize, fill: impl FnOnce(&mut Vec<u8>)) {
    let mut body = Vec::new();
    fill(&mut body);
    let mut lp = Vec::with_capacity(body.len() + 7);
    listpack::wrap(&mut lp, &body, count);
    write_string(out, &lp);
}

/// Redis's intset: the width, the count, then the sorted members
/// little-endian.
fn write_intset(out: &mut Vec<u8>, members: &[i64], width: u8) {
    let width = usize::from(width);
    let mut blob = Vec::with_capacity(8 + width * members.len());
    blob.extend_from_slice(&(width as u32).to_le_bytes());
    blob.extend_from_slice(&(members.len() as u32).to_le_bytes());
    for &v in members {
        blob.extend_from_slice(&v.to_le_bytes()[..width]);
    }
    write_string(out, &blob);
}

/// A sorted set score in a listpack, as zzlInsertAt writes it: an integer
/// when the double is one (within ±2^62), else `%.17g` (`inf`, `-inf`).
fn push_score(body: &mut Vec<u8>, score: f64) {
    let half = (i64::MAX / 2) as f64;
    if (-half..=half).contains(&score) && score == (score as i64) as f64 {
        listpack::push_int_element(body, score as i64);
    } else {
        let mut buf = [0u8; 32];
        listpack::push_element(body, crate::util::fmt_double(score, &mut buf));
    }
}

/// Takes the start of a long value's encoding while it is written, so a
/// big key never sits whole in the output buffer (SAVE writes it to the
/// file part by part). `None`: the caller wants it all in the buffer.
pub struct Spill<'a>(Option<&'a mut SpillFn<'a>>);

/// Called with the output so far; it writes it somewhere and empties it.
pub type SpillFn<'a> = dyn FnMut(&mut Vec<u8>) + 'a;

impl<'a> Spill<'a> {
    /// Past this many bytes in the buffer, they are handed on.
    const AT: usize = 1 << 16;

    pub fn to(f: &'a mut SpillFn<'a>) -> Self {
        Spill(Some(f))
    }

    pub fn none() -> Self {
        Spill(None)
    }

    /// Hands `out` on (the callee empties it) when it has grown long.
    #[inline]
    fn offer(&mut self, out: &mut Vec<u8>) {
        if out.len() >= Self::AT {
            if let Some(f) = self.0.as_mut() {
                f(out);
            }
        }
    }
}

/// Writes a value's type byte and body (a DUMP payload's start).
pub fn write_value(out: &mut Vec<u8>, v: &Value) {
    write_typed(out, None, v, &mut Spill::none())
}

/// Writes an RDB entry: the value's type byte, the key, then the value.
pub fn write_key_value(out: &mut Vec<u8>, key: &[u8], v: &Value, spill: &mut Spill) {
    write_typed(out, Some(key), v, spill)
}

/// The type byte, then the key when there is one: the key sits between
/// the type and the value in an RDB entry.
fn tag(out: &mut Vec<u8>, t: u8, key: Option<&[u8]>) {
    out.push(t);
    if let Some(k) = key {
        write_string(out, k);
    }
}

fn write_typed(out: &mut Vec<u8>, key: Option<&[u8]>, v: &Value, spill: &mut Spill) {
    match v {
        Value::Int(_) | Value::Str(_) | Value::Raw(_) => {
            tag(out, TYPE_STRING, key);
            let mut b = itoa::Buffer::new();
            write_string(out, v.str_bytes(&mut b).unwrap_or_default());
        }
        Value::List(l) => {
            tag(out, TYPE_LIST_QUICKLIST_2, key);
            write_list(out, l, spill);
        }
        Value::Set(s) => match &**s {
            SetObj::Ints(ints, width) => {
                tag(out, TYPE_SET_INTSET, key);
                write_intset(out, ints, *width);
            }
            SetObj::Hash(_) => {
                tag(out, TYPE_SET, key);
                let m = s.members();
                write_len(out, m.len() as u64);
                for e in &m {
                    write_string(out, e);
                    spill.offer(out);
                }
            }
        },
        Value::ZSet(z) if !z.big => {
            tag(out, TYPE_ZSET_LISTPACK, key);
            write_listpack(out, z.len() * 2, |body| {
                for (score, m) in z.tree.iter_from(0) {
                    listpack::push_element(body, m);
                    push_score(body, score);
                }
            });
        }
        Value::ZSet(z) => {
            tag(out, TYPE_ZSET_2, key);
            write_len(out, z.len() as u64);
            // From the highest score down, as Redis writes them: Redis then
            // inserts each at the head of its skiplist when loading.
            let asc: Vec<(f64, &[u8])> = z.tree.iter_from(0).collect();
            for (score, m) in asc.into_iter().rev() {
                write_string(out, m);
                out.extend_from_slice(&score.to_le_bytes());
                spill.offer(out);
            }
        }
        Value::Hash(h) if matches!(**h, HashObj::Small(_)) => {
            tag(out, TYPE_HASH_LISTPACK, key);
            write_listpack(out, h.len() * 2, |body| {
                h.for_each(|f, v| {
                    listpack::push_element(body, f);
                    listpack::push_element(body, v);
                })
            });
        }
        Value::Hash(h) => {
            tag(out, TYPE_HASH, key);
            write_len(out, h.len() as u64);
            h.for_each(|f, val| {
                write_string(out, f);
                write_string(out, val);
                spill.offer(out);
            });
        }
        Value::Stream(st) => {
            tag(out, TYPE_STREAM_LISTPACKS_2, key);
            write_stream(out, st);
        }
    }
}

/// A stream as Redis 7.0 writes one: its nodes (master ID, listpack), its
/// counters and IDs, then its consumer groups with their pending entries.
fn write_stream(out: &mut Vec<u8>, st: &Stream) {
    write_len(out, st.nodes.len() as u64);
    for (k, node) in &st.nodes {
        write_string(out, &k.to_be_bytes());
        write_string(out, &node.to_listpack());
    }
    for v in [
        st.length,
        st.last_id.ms,
        st.last_id.seq,
        st.first_id.ms,
        st.first_id.seq,
        st.max_deleted_id.ms,
        st.max_deleted_id.seq,
        st.entries_added,
    ] {
        write_len(out, v);
    }
    write_len(out, st.groups.len() as u64);
    for (name, g) in &st.groups {
        write_string(out, name);
        write_len(out, g.last_id.ms);
        write_len(out, g.last_id.seq);
        write_len(out, g.entries_read as u64);
        write_len(out, g.pel.len() as u64);
        for (id, p) in &g.pel {
            out.extend_from_slice(&id.to_be_bytes());
            out.extend_from_slice(&p.delivery_time.to_le_bytes());
            write_len(out, p.delivery_count);
        }
        write_len(out, g.consumers.len() as u64);
        for (cname, c) in &g.consumers {
            write_string(out, cname);
            out.extend_from_slice(&c.seen_time.to_le_bytes());
            write_len(out, c.pel.len() as u64);
            for id in &c.pel {
                out.extend_from_slice(&id.to_be_bytes());
            }
        }
    }
}

fn read_id_pair(r: &mut Reader) -> Result<StreamId, DecodeError> {
    let ms = r.length()? as u64;
    let seq = r.length()? as u64;
    Ok(StreamId::new(ms, seq))
}

fn read_raw_id(r: &mut Reader) -> Result<StreamId, DecodeError> {
    StreamId::from_be_bytes(r.take(16)?).ok_or(Truncated)
}

fn read_ms_time(r: &mut Reader) -> Result<i64, DecodeError> {
    Ok(i64::from_le_bytes(
        r.take(8)?.try_into().map_err(|_| Truncated)?,
    ))
}

/// A stream of type 15 (Redis 5/6) or 19 (Redis 7.0), checked as Redis
/// checks it: node keys of 16 bytes, listpacks that parse, no empty or
/// repeated node, pending entries that agree between group and consumer.
fn read_stream(r: &mut Reader, t: u8) -> Result<Stream, DecodeError> {
    let mut st = Stream::new();
    let nodes = r.length()?;
    for _ in 0..nodes {
        let key = r.string()?;
        if key.len() != 16 {
            return Err(Corrupt(
                "Stream node key entry is not the size of a stream ID",
            ));
        }
        let master = StreamId::from_be_bytes(&key).ok_or(Corrupt(
            "Stream node key entry is not the size of a stream ID",
        ))?;
        let lp = r.string()?;
        sanitizing();
        let node = Node::from_listpack(&lp, master)
            .ok_or(Corrupt("Stream listpack integrity check failed."))?;
        if node.count + node.deleted == 0 {
            return Err(Corrupt("Empty listpack inside stream"));
        }
        if st.nodes.insert(master, node).is_some() {
            return Err(Corrupt("Listpack re-added with existing key"));
        }
    }
    st.length = r.length()? as u64;
    st.last_id = read_id_pair(r)?;
    if t == TYPE_STREAM_LISTPACKS_2 {
        st.first_id = read_id_pair(r)?;
        st.max_deleted_id = read_id_pair(r)?;
        st.entries_added = r.length()? as u64;
    } else {
        st.entries_added = st.length;
        st.first_id = if st.length == 0 {
            StreamId::MAX
        } else {
            st.edge_id(true, false)
        };
    }
    let live: u64 = st.nodes.values().map(|n| n.count).sum();
    if live != st.length {
        return Err(Corrupt("Stream length inconsistent with rax entries"));
    }
    let groups = r.length()?;
    for _ in 0..groups {
        let name = r.string()?;
        let last_id = read_id_pair(r)?;
        let entries_read = if t == TYPE_STREAM_LISTPACKS_2 {
            r.length()? as u64 as i64
        } else {
            st.distance_from_first_ever(last_id)
        };
        let mut g = Group {
            last_id,
            entries_read,
            ..Group::default()
        };
        let pel = r.length()?;
        for _ in 0..pel {
            let id = read_raw_id(r)?;
            let delivery_time = read_ms_time(r)?;
            let delivery_count = r.length()? as u64;
            let p = Pending {
                delivery_time,
                delivery_count,
                consumer: Vec::new(),
            };
            if g.pel.insert(id, p).is_some() {
                return Err(Corrupt(
                    "Duplicated global PEL entry loading stream consumer group",
                ));
            }
        }
        let consumers = r.length()?;
        for _ in 0..consumers {
            let cname = r.string()?;
            let seen_time = read_ms_time(r)?;
            let mut c = Consumer {
                seen_time,
                ..Consumer::default()
            };
            let n = r.length()?;
            for _ in 0..n {
                let id = read_raw_id(r)?;
                let p = g
                    .pel
                    .get_mut(&id)
                    .ok_or(Corrupt("Consumer entry not found in group global PEL"))?;
                if !p.consumer.is_empty() {
                    return Err(Corrupt(
                        "Duplicated consumer PEL entry loading a stream consumer group",
                    ));
                }
                p.consumer = cname.clone();
                c.pel.insert(id);
            }
            if g.consumers.insert(cname, c).is_some() {
                return Err(Corrupt("Duplicate stream consumer detected."));
            }
        }
        if g.pel.values().any(|p| p.consumer.is_empty()) {
            return Err(Corrupt("Stream CG PEL entry without consumer"));
        }
        if st.groups.insert(name, g).is_some() {
            return Err(Corrupt("Duplicated consumer group name"));
        }
    }
    Ok(st)
}

// ---- reading ----

pub struct Reader<'a> {
    buf: &'a [u8],
    pub pos: usize,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    pub fn byte(&mut self) -> Result<u8, DecodeError> {
        let b = *self.buf.get(self.pos).ok_or(Truncated)?;
        self.pos += 1;
        Ok(b)
    }

    pub fn remaining(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }

    pub fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        let end = self.pos.checked_add(n).ok_or(Truncated)?;
        let s = self.buf.get(self.pos..end).ok_or(Truncated)?;
        self.pos = end;
        Ok(s)
    }

    /// A length, or the marker of a specially encoded string.
    fn len_or_enc(&mut self) -> Result<(u64, bool), DecodeError> {
        let b = self.byte()?;
        match b >> 6 {
            0 => Ok(((b & 0x3f) as u64, false)),
            1 => Ok(((((b & 0x3f) as u64) << 8) | self.byte()? as u64, false)),
            2 => match b {
                0x80 => Ok((
                    u32::from_be_bytes(self.take(4)?.try_into().map_err(|_| Truncated)?) as u64,
                    false,
                )),
                0x81 => Ok((
                    u64::from_be_bytes(self.take(8)?.try_into().map_err(|_| Truncated)?),
                    false,
                )),
                _ => Err(Corrupt("Unknown length encoding in rdbLoadLen()")),
            },
            _ => Ok(((b & 0x3f) as u64, true)),
        }
    }

    pub fn length(&mut self) -> Result<usize, DecodeError> {
        match self.len_or_enc()? {
            (n, false) => {
                usize::try_from(n).map_err(|_| Corrupt("Unknown length encoding in rdbLoadLen()"))
            }
            (_, true) => Err(Corrupt("Unknown length encoding in rdbLoadLen()")),
        }
    }

    pub fn string(&mut self) -> Result<Vec<u8>, DecodeError> {
        let (n, enc) = self.len_or_enc()?;
        if !enc {
            let n = usize::try_from(n)
                .map_err(|_| Corrupt("Unknown length encoding in rdbLoadLen()"))?;
            return Ok(self.take(n)?.to_vec());
        }
        let mut b = itoa::Buffer::new();
        match n {
            0 => Ok(b.format(self.byte()? as i8).as_bytes().to_vec()),
            1 => {
                let v = i16::from_le_bytes(self.take(2)?.try_into().map_err(|_| Truncated)?);
                Ok(b.format(v).as_bytes().to_vec())
            }
            2 => {
                let v = i32::from_le_bytes(self.take(4)?.try_into().map_err(|_| Truncated)?);
                Ok(b.format(v).as_bytes().to_vec())
            }
            3 => {
                let clen = self.length()?;
                let ulen = self.length()?;
                let data = self.take(clen)?;
                lzf::decompress(data, ulen).ok_or(Corrupt("Invalid LZF compressed string"))
            }
            _ => Err(Corrupt("Unknown RDB string encoding type")),
        }
    }

    fn f64_le(&mut self) -> Result<f64, DecodeError> {
        Ok(f64::from_le_bytes(
            self.take(8)?.try_into().map_err(|_| Truncated)?,
        ))
    }
}

/// Elements of a ziplist, the compact encoding of RDB files written before
/// Redis 7 (lists, small hashes and sorted sets).
/// The entries of a zipmap (small hashes in RDB files from Redis < 2.6):
/// a count byte, then `len key len free value [free bytes]` until 0xFF.
/// A length is one byte below 254, or 254 and a 4-byte little-endian
/// integer.
pub fn zipmap_entries(z: &[u8]) -> Result<Vec<Vec<u8>>, DecodeError> {
    let bad = || Corrupt("zipmap");
    let mut p = 1;
    let mut out = Vec::new();
    let len_at = |p: &mut usize| -> Result<Option<usize>, DecodeError> {
        let b = *z.get(*p).ok_or_else(bad)?;
        match b {
            0xFF => Ok(None),
            254 => {
                let raw = z.get(*p + 1..*p + 5).ok_or_else(bad)?;
                *p += 5;
                Ok(Some(
                    u32::from_le_bytes([raw[0], raw[1], raw[2], raw[3]]) as usize
                ))
            }
            n => {
                *p += 1;
                Ok(Some(n as usize))
            }
        }
    };
    if z.is_empty() {
        return Err(bad());
    }
    while let Some(klen) = len_at(&mut p)? {
        out.push(z.get(p..p + klen).ok_or_else(bad)?.to_vec());
        p += klen;
        let vlen = len_at(&mut p)?.ok_or_else(bad)?;
        let free = *z.get(p).ok_or_else(bad)? as usize;
        p += 1;
        out.push(z.get(p..p + vlen).ok_or_else(bad)?.to_vec());
        p += vlen + free;
    }
    // An empty zipmap is refused, as Redis's check refuses it.
    if p + 1 != z.len() || out.is_empty() {
        return Err(bad());
    }
    Ok(out)
}

pub fn ziplist_entries(z: &[u8]) -> Result<Vec<Vec<u8>>, DecodeError> {
    let bad = || Corrupt("ziplist");
    if z.len() < 11 {
        return Err(bad());
    }
    let total = u32::from_le_bytes([z[0], z[1], z[2], z[3]]) as usize;
    if total != z.len() {
        return Err(bad());
    }
    let tail = u32::from_le_bytes([z[4], z[5], z[6], z[7]]) as usize;
    let count = u16::from_le_bytes([z[8], z[9]]);
    let mut p = 10;
    let mut out = Vec::new();
    let mut b = itoa::Buffer::new();
    // Each entry states the size of the one before it: checked, as
    // Redis's ziplistValidateIntegrity does, since nothing else would
    // catch a ziplist that reads differently backwards.
    let (mut prev_size, mut last) = (0usize, None);
    loop {
        let start = p;
        let first = *z.get(p).ok_or_else(bad)?;
        if first == 0xFF {
            break;
        }
        let stated = if first < 254 {
            p += 1;
            first as usize
        } else {
            let raw = z.get(p + 1..p + 5).ok_or_else(bad)?;
            p += 5;
            u32::from_le_bytes([raw[0], raw[1], raw[2], raw[3]]) as usize
        };
        if stated != prev_size {
            return Err(bad());
        }
        let e = *z.get(p).ok_or_else(bad)?;
        let get = |from: usize, n: usize| z.get(from..from + n).ok_or_else(bad);
        let (value, size): (Vec<u8>, usize) = match e >> 6 {
            0 => {
                let n = (e & 0x3f) as usize;
                (get(p + 1, n)?.to_vec(), 1 + n)
            }
            1 => {
                let n = (((e & 0x3f) as usize) << 8) | *z.get(p + 1).ok_or_else(bad)? as usize;
                (get(p + 2, n)?.to_vec(), 2 + n)
            }
            2 => {
                let n = u32::from_be_bytes(get(p + 1, 4)?.try_into().map_err(|_| bad())?) as usize;
                (get(p + 5, n)?.to_vec(), 5 + n)
            }
            _ => match e {
                0xC0 => (
                    b.format(i16::from_le_bytes(
                        get(p + 1, 2)?.try_into().map_err(|_| bad())?,
                    ))
                    .as_bytes()
                    .to_vec(),
                    3,
                ),
                0xD0 => (
                    b.format(i32::from_le_bytes(
                        get(p + 1, 4)?.try_into().map_err(|_| bad())?,
                    ))
                    .as_bytes()
                    .to_vec(),
                    5,
                ),
                0xE0 => (
                    b.format(i64::from_le_bytes(
                        get(p + 1, 8)?.try_into().map_err(|_| bad())?,
                    ))
                    .as_bytes()
                    .to_vec(),
                    9,
                ),
                0xF0 => {
                    let s = get(p + 1, 3)?;
                    let v = i32::from_le_bytes([0, s[0], s[1], s[2]]) >> 8;
                    (b.format(v).as_bytes().to_vec(), 4)
                }
                0xFE => (
                    b.format(*z.get(p + 1).ok_or_else(bad)? as i8)
                        .as_bytes()
                        .to_vec(),
                    2,
                ),
                0xF1..=0xFD => (b.format((e & 0x0f) as i64 - 1).as_bytes().to_vec(), 1),
                _ => return Err(bad()),
            },
        };
        out.push(value);
        p += size;
        prev_size = p - start;
        last = Some(start);
    }
    let count_ok = count == u16::MAX || count as usize == out.len();
    if p + 1 != z.len() || !count_ok || last.is_some_and(|l| l != tail) || tail >= z.len() {
        return Err(bad());
    }
    Ok(out)
}

const BAD_INTSET: &str = "Intset integrity check failed.";

/// An intset's width in bytes and its members.
fn intset_members(s: &[u8]) -> Result<(u8, Vec<i64>), DecodeError> {
    if s.len() < 8 {
        return Err(Corrupt(BAD_INTSET));
    }
    let enc = u32::from_le_bytes([s[0], s[1], s[2], s[3]]) as usize;
    let n = u32::from_le_bytes([s[4], s[5], s[6], s[7]]) as usize;
    // An empty intset is a broken one (not an empty key), as Redis's
    // check has it.
    if !matches!(enc, 2 | 4 | 8) || s.len() != 8 + enc * n || n == 0 {
        return Err(Corrupt(BAD_INTSET));
    }
    let members: Vec<i64> = s[8..]
        .chunks(enc)
        .map(|c| match enc {
            2 => i16::from_le_bytes([c[0], c[1]]) as i64,
            4 => i32::from_le_bytes([c[0], c[1], c[2], c[3]]) as i64,
            _ => i64::from_le_bytes(c.try_into().unwrap_or([0; 8])),
        })
        .collect();
    // Sorted, each member once: what an intset is (Redis's deep check).
    if members.windows(2).any(|w| w[0] >= w[1]) {
        return Err(Corrupt(BAD_INTSET));
    }
    Ok((enc as u8, members))
}

fn score_of(b: &[u8]) -> Result<f64, DecodeError> {
    crate::command::parse_float(b).ok_or(Corrupt("score"))
}

/// Reads one value of type `t`.
pub fn read_value(r: &mut Reader, t: u8) -> Result<Value, DecodeError> {
    let v = match t {
        TYPE_STRING => return Ok(Value::string(&r.string()?)),
        TYPE_LIST => {
            let n = r.length()?;
            let mut l = PackedList::new();
            for _ in 0..n {
                l.push_back(&r.string()?);
            }
            Value::List(Box::new(l))
        }
        TYPE_LIST_QUICKLIST_2 => {
            let nodes = r.length()?;
            let mut l = PackedList::new();
            for _ in 0..nodes {
                let container = r.length()?;
                if !matches!(container, 1 | 2) {
                    return Err(Corrupt("Quicklist integrity check failed."));
                }
                let data = r.string()?;
                if data.is_empty() {
                    return Err(Corrupt("Quicklist node of no bytes"));
                }
                if container == 1 {
                    l.push_back(&data);
                    continue;
                }
                sanitizing();
                let mut node = plist::Node::default();
                integrity(
                    listpack::for_each(&data, |e| node.push(e)),
                    "Listpack integrity check failed.",
                )?;
                // An empty node is skipped, as Redis skips it.
                l.push_node(node);
            }
            Value::List(Box::new(l))
        }
        TYPE_LIST_ZIPLIST => {
            let e = integrity(
                ziplist_entries(&r.string()?),
                "List ziplist integrity check failed.",
            )?;
            Value::List(Box::new(e.iter().map(|x| x.as_slice()).collect()))
        }
        TYPE_LIST_QUICKLIST => {
            let nodes = r.length()?;
            let mut l = PackedList::new();
            for _ in 0..nodes {
                integrity(
                    ziplist_entries(&r.string()?),
                    "Ziplist integrity check failed.",
                )?
                .iter()
                .for_each(|e| l.push_back(e));
            }
            Value::List(Box::new(l))
        }
        TYPE_ZSET_ZIPLIST => {
            const BAD: &str = "Zset ziplist integrity check failed.";
            let e = integrity(ziplist_entries(&r.string()?), BAD)?;
            Value::ZSet(Box::new(zset_of_pairs(&e, BAD)?))
        }
        TYPE_HASH_ZIPMAP => {
            let e = integrity(
                zipmap_entries(&r.string()?),
                "Zipmap integrity check failed.",
            )?;
            let mut h = HashObj::default();
            for pair in e.chunks(2) {
                if !h.set(&pair[0], &pair[1]) {
                    return Err(Corrupt("Hash zipmap with dup elements, or big length"));
                }
            }
            Value::Hash(Box::new(h))
        }
        TYPE_HASH_ZIPLIST => {
            const BAD: &str = "Hash ziplist integrity check failed.";
            let e = integrity(ziplist_entries(&r.string()?), BAD)?;
            Value::Hash(Box::new(hash_of_pairs(&e, BAD)?))
        }
        TYPE_SET => {
            let n = r.length()?;
            let mut s = SetObj::default();
            for _ in 0..n {
                if !s.add(&r.string()?) {
                    return Err(Corrupt("Duplicate set members detected"));
                }
            }
            Value::Set(Box::new(s))
        }
        TYPE_SET_INTSET => {
            let data = r.string()?;
            sanitizing();
            let mut s = SetObj::default();
            let mut b = itoa::Buffer::new();
            let (width, members) = intset_members(&data)?;
            for v in members {
                s.add(b.format(v).as_bytes());
            }
            // Loaded as it was: an intset keeps the width it was saved with.
            if let SetObj::Ints(_, w) = &mut s {
                *w = (*w).max(width);
            }
            Value::Set(Box::new(s))
        }
        TYPE_SET_LISTPACK => {
            const BAD: &str = "Set listpack integrity check failed.";
            let mut s = SetObj::default();
            for m in integrity(listpack::entries(&r.string()?), BAD)? {
                if !s.add(&m) {
                    return Err(Corrupt(BAD));
                }
            }
            Value::Set(Box::new(s))
        }
        TYPE_ZSET | TYPE_ZSET_2 => {
            let n = r.length()?;
            // Collected first (capacity bounded by the bytes left: each pair
            // takes at least two), then built in one pass.
            let mut pairs = Vec::with_capacity(n.min(r.remaining() / 2));
            for _ in 0..n {
                let m = r.string()?;
                let score = if t == TYPE_ZSET_2 {
                    r.f64_le()?
                } else {
                    let len = r.byte()?;
                    match len {
                        253 => f64::NAN,
                        254 => f64::INFINITY,
                        255 => f64::NEG_INFINITY,
                        n => score_of(r.take(n as usize)?)?,
                    }
                };
                if score.is_nan() {
                    return Err(Corrupt("Zset with NAN score detected"));
                }
                pairs.push((SBytes::new(&m), score));
            }
            let z = ZSetObj::from_pairs(pairs).ok_or(Corrupt("Duplicate zset fields detected"))?;
            Value::ZSet(Box::new(z))
        }
        TYPE_ZSET_LISTPACK => {
            const BAD: &str = "Zset listpack integrity check failed.";
            let data = r.string()?;
            sanitizing();
            let e = integrity(listpack::entries(&data), BAD)?;
            Value::ZSet(Box::new(zset_of_pairs(&e, BAD)?))
        }
        TYPE_HASH => {
            let n = r.length()?;
            let mut h = HashObj::default();
            for _ in 0..n {
                let f = r.string()?;
                let v = r.string()?;
                if !h.set(&f, &v) {
                    return Err(Corrupt("Duplicate hash fields detected"));
                }
            }
            Value::Hash(Box::new(h))
        }
        TYPE_HASH_LISTPACK => {
            const BAD: &str = "Hash listpack integrity check failed.";
            let data = r.string()?;
            sanitizing();
            let e = integrity(listpack::entries(&data), BAD)?;
            Value::Hash(Box::new(hash_of_pairs(&e, BAD)?))
        }
        TYPE_STREAM_LISTPACKS | TYPE_STREAM_LISTPACKS_2 => {
            // A stream with no entries is a key of its own (XADD … then
            // XDEL, or XGROUP CREATE … MKSTREAM).
            return Ok(Value::Stream(Box::new(read_stream(r, t)?)));
        }
        other => return Err(UnknownType(other)),
    };
    if collection_len(&v) == 0 {
        return Err(EmptyKey);
    }
    Ok(v)
}

/// A packed container's fault, named as Redis names it for its type.
fn integrity<T>(res: Result<T, DecodeError>, what: &'static str) -> Result<T, DecodeError> {
    res.map_err(|_| Corrupt(what))
}

/// Field/value pairs of a packed hash: an even count, no field twice
/// (datanode checks what Redis checks under deep sanitization, always).
fn hash_of_pairs(e: &[Vec<u8>], bad: &'static str) -> Result<HashObj, DecodeError> {
    if !e.len().is_multiple_of(2) {
        return Err(Corrupt(bad));
    }
    let mut h = HashObj::default();
    for pair in e.chunks(2) {
        if !h.set(&pair[0], &pair[1]) {
            return Err(Corrupt(bad));
        }
    }
    Ok(h)
}

/// Member/score pairs of a packed sorted set, checked as [`hash_of_pairs`].
fn zset_of_pairs(e: &[Vec<u8>], bad: &'static str) -> Result<ZSetObj, DecodeError> {
    if !e.len().is_multiple_of(2) {
        return Err(Corrupt(bad));
    }
    let mut z = ZSetObj::default();
    for pair in e.chunks(2) {
        let score = score_of(&pair[1]).map_err(|_| Corrupt(bad))?;
        if z.insert(&pair[0], score).is_some() {
            return Err(Corrupt(bad));
        }
    }
    Ok(z)
}

/// Elements of a list, set, sorted set or hash.
fn collection_len(v: &Value) -> usize {
    match v {
        Value::List(l) => l.len(),
        Value::Set(s) => s.len(),
        Value::ZSet(z) => z.len(),
        Value::Hash(h) => h.len(),
        _ => 1,
    }
}

/// `sanitize-dump-payload`: 0 no, 1 yes, 2 clients (set from the config).
pub static SANITIZE: std::sync::atomic::AtomicU8 = std::sync::atomic::AtomicU8::new(0);

/// Deep checks of packed containers so far (INFO dump_payload_sanitizations).
pub static SANITIZATIONS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

thread_local! {
    /// This thread's decoding runs under deep checks.
    static DEEP: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Whether a payload is checked deeply, as Redis's rdbLoadObject decides:
/// always under `yes`; under `clients`, a RESTORE from a client unless it
/// is our master or its user has skip-sanitize-payload (`from_client`: not
/// loading a file or replaying the AOF, not the master).
pub fn deep_checks(from_client: bool, user_skips: bool) -> bool {
    match SANITIZE.load(std::sync::atomic::Ordering::Relaxed) {
        1 => true,
        2 => from_client && !user_skips,
        _ => false,
    }
}

/// Runs `f` with this thread's decoding under deep checks or not.
pub fn with_deep_checks<R>(deep: bool, f: impl FnOnce() -> R) -> R {
    let before = DEEP.with(|d| d.replace(deep));
    let r = f();
    DEEP.with(|d| d.set(before));
    r
}

/// A packed container Redis validates deeply is being decoded: counted
/// when the checks are deep. datanode decodes every container fully in
/// any case; the count is Redis's figure.
fn sanitizing() {
    if DEEP.with(|d| d.get()) {
        SANITIZATIONS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// RDB version DUMP payloads carry (Redis 7.0).
pub const RDB_VERSION: u16 = 10;

/// A DUMP payload: type + value, RDB version, CRC64 of both.
pub fn dump(v: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    write_value(&mut out, v);
    out.extend_from_slice(&RDB_VERSION.to_le_bytes());
    let crc = super::crc64::crc64(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

#[derive(Debug, PartialEq, Eq)]
pub enum RestoreError {
    /// Wrong version or checksum.
    Envelope,
    Data(DecodeError),
}

/// Checks a payload's footer and decodes its value.
pub fn undump(p: &[u8]) -> Result<Value, RestoreError> {
    if p.len() < 10 {
        return Err(RestoreError::Envelope);
    }
    let (body, footer) = p.split_at(p.len() - 10);
    let ver = u16::from_le_bytes([footer[0], footer[1]]);
    // A payload newer than what we understand is refused, as Redis does.
    if ver > RDB_VERSION || !super::payload_crc_ok(p) {
        return Err(RestoreError::Envelope);
    }
    let mut r = Reader::new(body);
    let t = r.byte().map_err(RestoreError::Data)?;
    let v = read_value(&mut r, t).map_err(RestoreError::Data)?;
    if r.pos != body.len() {
        return Err(RestoreError::Data(Corrupt(
            "Trailing bytes after the value",
        )));
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn decodes_a_redis_listpack() {
        // A listpack with "a", 5 and -1000 (13-bit int).
        let mut lp = vec![0, 0, 0, 0, 3, 0];
        lp.extend_from_slice(&[0x81, b'a', 2]);
        lp.extend_from_slice(&[0x05, 1]);
        let v: u16 = (-1000i16 as u16) & 0x1fff;
        lp.extend_from_slice(&[0xC0 | (v >> 8) as u8, v as u8, 2]);
        lp.push(0xFF);
        let n = lp.len() as u32;
        lp[0..4].copy_from_slice(&n.to_le_bytes());
        assert_eq!(
            listpack::entries(&lp).unwrap(),
            vec![b"a".to_vec(), b"5".to_vec(), b"-1000".to_vec()]
        );
    }

    #[test]
    fn sorted_sets_load_in_any_order_and_refuse_repeated_members() {
        let payload = |members: &[(&[u8], f64)]| {
            let mut p = vec![TYPE_ZSET_2, members.len() as u8];
            for (m, s) in members {
                write_string(&mut p, m);
                p.extend_from_slice(&s.to_le_bytes());
            }
            p
        };
        let p = payload(&[(b"c", 3.0), (b"a", 1.0), (b"b", 1.0)]);
        let mut r = Reader::new(&p[1..]);
        match read_value(&mut r, TYPE_ZSET_2).unwrap() {
            Value::ZSet(z) => {
                let order: Vec<(f64, &[u8])> = z.tree.iter_from(0).collect();
                assert_eq!(order, vec![(1.0, &b"a"[..]), (1.0, b"b"), (3.0, b"c")]);
                assert_eq!(z.dict.get(b"c").map(|e| e.1), Some(3.0));
            }
            _ => panic!("not a sorted set"),
        }
        let p = payload(&[(b"a", 1.0), (b"a", 2.0)]);
        let mut r = Reader::new(&p[1..]);
        assert!(read_value(&mut r, TYPE_ZSET_2).is_err());
    }

    #[test]
    fn decodes_a_zipmap() {
        // {"foo": "bar", "k": 300 bytes of 'v'} with 2 free bytes after "bar".
        let mut z = vec![2u8];
        z.extend_from_slice(&[3, b'f', b'o', b'o', 3, 2, b'b', b'a', b'r', 0, 0]);
        z.extend_from_slice(&[1, b'k', 254]);
        z.extend_from_slice(&300u32.to_le_bytes());
        z.push(0);
        z.extend_from_slice(&[b'v'; 300]);
        z.push(0xFF);
        let e = zipmap_entries(&z).unwrap();
        assert_eq!(e.len(), 4);
        assert_eq!(e[0], b"foo");
        assert_eq!(e[1], b"bar");
        assert_eq!(e[2], b"k");
        assert_eq!(e[3], vec![b'v'; 300]);
        // Truncated or trailing bytes are refused.
        assert!(zipmap_entries(&z[..z.len() - 1]).is_err());
        let mut longer = z.clone();
        longer.push(0);
        assert!(zipmap_entries(&longer).is_err());
        // Through the RDB object path.
        // The zipmap as an RDB string: a 14-bit length, then the bytes.
        let n = z.len();
        let mut blob = vec![0x40 | (n >> 8) as u8, n as u8];
        blob.extend_from_slice(&z);
        let mut r = Reader::new(&blob);
        match read_value(&mut r, TYPE_HASH_ZIPMAP).unwrap() {
            Value::Hash(h) => assert_eq!(h.get(b"foo"), Some(&b"bar"[..])),
            _ => panic!("not a hash"),
        }
    }

    /// Builds a ziplist from raw entries (encoding + data, no prevlen).
    fn ziplist(entries: &[&[u8]]) -> Vec<u8> {
        let mut body = Vec::new();
        let (mut prev, mut tail) = (0usize, 10usize);
        for e in entries {
            tail = 10 + body.len();
            body.push(prev as u8);
            body.extend_from_slice(e);
            prev = e.len() + 1;
        }
        let mut z = Vec::new();
        let total = 10 + body.len() + 1;
        z.extend_from_slice(&(total as u32).to_le_bytes());
        z.extend_from_slice(&(tail as u32).to_le_bytes());
        z.extend_from_slice(&(entries.len() as u16).to_le_bytes());
        z.extend_from_slice(&body);
        z.push(0xFF);
        z
    }

    #[test]
    fn decodes_old_ziplists() {
        let z = ziplist(&[
            &[0x03, b'a', b'b', b'c'],
            &[0xF5],             // immediate 4
            &[0xFE, 0x9c],       // int8 -100
            &[0xC0, 0x39, 0x30], // int16 12345
        ]);
        assert_eq!(
            ziplist_entries(&z).unwrap(),
            vec![
                b"abc".to_vec(),
                b"4".to_vec(),
                b"-100".to_vec(),
                b"12345".to_vec()
            ]
        );
        // As a hash in an RDB value.
        let h = ziplist(&[&[0x01, b'f'], &[0x01, b'v']]);
        let mut payload = vec![TYPE_HASH_ZIPLIST];
        write_string(&mut payload, &h);
        let mut r = Reader::new(&payload[1..]);
        match read_value(&mut r, TYPE_HASH_ZIPLIST).unwrap() {
            Value::Hash(hh) => assert_eq!(hh.get(b"f"), Some(&b"v"[..])),
            _ => panic!("not a hash"),
        }
    }

    proptest! {
        #[test]
        fn garbage_payloads_never_panic(p in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = undump(&p);
            let mut r = Reader::new(&p);
            if let Ok(t) = r.byte() {
                let _ = read_value(&mut r, t);
            }
            let _ = listpack::entries(&p);
            let _ = ziplist_entries(&p);
        }

        #[test]
        fn strings_round_trip(s in proptest::collection::vec(any::<u8>(), 0..100)) {
            let v = Value::string(&s);
            let back = undump(&dump(&v)).unwrap();
            let mut b1 = itoa::Buffer::new();
            let mut b2 = itoa::Buffer::new();
            prop_assert_eq!(back.str_bytes(&mut b1), v.str_bytes(&mut b2));
        }
    }
}
