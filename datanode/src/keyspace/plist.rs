//! Lists packed the way Redis's quicklist packs them: a deque of chunks
//! (8 KB by default; `list-max-listpack-size` sets a size or a count, as
//! quicklist's fill), each holding its elements back to back in Redis's listpack
//! string encoding (a 1-, 2- or 5-byte header with the length, the bytes,
//! then the entry's size written backwards so a chunk can be walked from
//! either end). A short element costs its bytes plus two, and a chunk is a
//! listpack body as it is: an RDB file gets it with a header added.
//!
//! With `list-compress-depth` N above 0, every chunk more than N chunks
//! from either end is kept LZF-compressed when that pays, as quicklist
//! keeps its interior nodes; a chunk is opened for a change and packed
//! again after it, and read without being opened.

use std::borrow::Cow;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicI32, Ordering};

use crate::persistence::rdb::lzf;

/// `list-max-listpack-size`, Redis's quicklist fill: negative, a node's
/// listpack size limit (-1: 4 KB, … -5: 64 KB); positive, its element
/// count (within 8 KB). Read when a list is made, as Redis sets each
/// quicklist's fill when it creates it.
static FILL: AtomicI32 = AtomicI32::new(-2);

/// CONFIG SET / the config file: clamped as Redis's quicklistSetFill.
pub fn set_fill(v: i64) {
    FILL.store(v.clamp(-5, FILL_MAX) as i32, Ordering::Relaxed);
}

/// `list-compress-depth`: how many chunks at each end stay uncompressed
/// (0: none is compressed). Read when a list is made, as Redis does.
static DEPTH: AtomicI32 = AtomicI32::new(0);

/// CONFIG SET / the config file: clamped as Redis's quicklist does (its
/// 16-bit field).
pub fn set_compress_depth(v: i64) {
    DEPTH.store(v.clamp(0, COMPRESS_MAX) as i32, Ordering::Relaxed);
}

const COMPRESS_MAX: i64 = (1 << 16) - 1;
/// quicklist leaves nodes under 48 bytes alone (MIN_COMPRESS_BYTES), and
/// keeps a compressed form only when it saves more than 8 bytes.
const MIN_COMPRESS_BYTES: usize = 48;
const MIN_COMPRESS_IMPROVE: usize = 8;

/// quicklist's FILL_MAX (16 bits, signed).
const FILL_MAX: i64 = (1 << 15) - 1;
/// quicklist's optimization_level: the size limits of fills -1 to -5.
const SIZE_LIMITS: [usize; 5] = [4096, 8192, 16384, 32768, 65536];
/// quicklist's SIZE_SAFETY_LIMIT: a node limited by count stops at 8 KB.
const SAFETY_LIMIT: usize = 8192;

/// Whether a node of `sz` listpack bytes and `count` elements is within
/// `fill` (the test quicklist makes before an insert or a merge).
fn fits(fill: i32, sz: usize, count: usize) -> bool {
    if fill < 0 {
        SIZE_LIMITS
            .get((-fill - 1) as usize)
            .is_some_and(|&limit| sz <= limit)
    } else {
        sz <= SAFETY_LIMIT && count <= fill as usize
    }
}

/// The most bytes a chunk under `fill` holds (its buffer grows by powers
/// of two up to that).
fn chunk_limit(fill: i32) -> usize {
    if fill < 0 {
        SIZE_LIMITS[((-fill - 1) as usize).min(SIZE_LIMITS.len() - 1)]
    } else {
        SAFETY_LIMIT
    }
}

#[derive(Clone, Default)]
struct Chunk {
    /// The elements, or their LZF form when `packed` is not 0.
    buf: Vec<u8>,
    n: u32,
    /// The bytes of these elements in Redis's listpack (integers take the
    /// integer encodings there): Redis decides where a node ends by that
    /// size, and so do we, so the nodes an RDB file or DUMP shows are
    /// Redis's.
    lp: u32,
    /// The elements' length when `buf` holds them compressed.
    packed: u32,
    /// Compressing these bytes did not pay; not tried again until they
    /// change (as quicklist, which tries a node again only when touched).
    incompressible: bool,
}

/// Redis's listpack header and end byte.
const LP_OVERHEAD: usize = 7;
/// What quicklist adds to an element's length when it estimates whether
/// it still fits a node (SIZE_ESTIMATE_OVERHEAD).
const INSERT_ESTIMATE: usize = 8;

impl Chunk {
    fn is_packed(&self) -> bool {
        self.packed != 0
    }

    /// The elements' bytes, decompressed when they are packed.
    fn raw(&self) -> Cow<'_, [u8]> {
        if self.is_packed() {
            Cow::Owned(unpacked(&self.buf, self.packed as usize))
        } else {
            Cow::Borrowed(&self.buf)
        }
    }

    /// Makes the bytes plain for a change (which may make them
    /// compressible again).
    fn open(&mut self) {
        if self.is_packed() {
            self.buf = unpacked(&self.buf, self.packed as usize);
            self.packed = 0;
        }
        self.incompressible = false;
    }

    /// Plain again without a change (the chunk moved to an end).
    fn unpack(&mut self) {
        if self.is_packed() {
            self.buf = unpacked(&self.buf, self.packed as usize);
            self.packed = 0;
        }
    }

    /// Compresses the chunk when quicklist would (`__quicklistCompressNode`).
    fn pack(&mut self) {
        if self.is_packed() || self.incompressible {
            return;
        }
        if self.lp as usize + LP_OVERHEAD < MIN_COMPRESS_BYTES {
            self.incompressible = true;
            return;
        }
        let n = self.buf.len();
        match lzf::compress(&self.buf, n, |c| c.to_vec()) {
            Some(c) if c.len() + MIN_COMPRESS_IMPROVE < n => {
                self.buf = c;
                self.packed = n as u32;
            }
            _ => self.incompressible = true,
        }
    }

    /// Whether Redis's quicklist would still add `e` to this node
    /// (`_quicklistNodeAllowInsert` with the default fill, -2).
    fn takes(&self, e: &[u8], fill: i32) -> bool {
        fits(
            fill,
            LP_OVERHEAD + self.lp as usize + e.len() + INSERT_ESTIMATE,
            self.n as usize + 1,
        )
    }

    fn recount(&mut self) {
        let mut lp = 0;
        let mut off = 0;
        while off < self.buf.len() {
            let (ds, de, end) = at_front(&self.buf, off);
            lp += lp_size(&self.buf[ds..de]);
            off = end;
        }
        self.lp = lp as u32;
    }
}

/// A packed chunk's bytes. They are our own compression of bytes we
/// hold, so they always decompress; anything else is memory corruption.
fn unpacked(buf: &[u8], len: usize) -> Vec<u8> {
    match lzf::decompress(buf, len) {
        Some(v) if v.len() == len => v,
        _ => panic!("a compressed list chunk does not decompress"),
    }
}

/// `e` as an integer when Redis's listpack stores it as one: canonical
/// decimal, no sign on zero, no leading zeros, within i64 (lpStringToInt64).
pub(crate) fn lp_int(e: &[u8]) -> Option<i64> {
    if e.is_empty() || e.len() > 20 {
        return None;
    }
    let (neg, digits) = match e[0] {
        b'-' => (true, &e[1..]),
        _ => (false, e),
    };
    let first = *digits.first()?;
    if first == b'0' && (digits.len() > 1 || neg) {
        return None;
    }
    // Accumulated negative, so that i64::MIN parses.
    let mut v: i64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?.checked_sub(i64::from(d - b'0'))?;
    }
    if neg {
        Some(v)
    } else {
        v.checked_neg()
    }
}

/// Bytes `e` takes as an entry of Redis's listpack, back-length included.
fn lp_size(e: &[u8]) -> usize {
    let size = match lp_int(e) {
        Some(v) if (0..=127).contains(&v) => 1,
        Some(v) if (-4096..=4095).contains(&v) => 2,
        Some(v) if i16::try_from(v).is_ok() => 3,
        Some(v) if (-8_388_608..=8_388_607).contains(&v) => 4,
        Some(v) if i32::try_from(v).is_ok() => 5,
        Some(_) => 9,
        None => header_len(e.len()) + e.len(),
    };
    size + backlen_size(size)
}

fn header_len(len: usize) -> usize {
    match len {
        0..=63 => 1,
        64..=4095 => 2,
        _ => 5,
    }
}

/// Bytes the back-length of an entry of `size` bytes takes, with Redis's
/// thresholds (a reader walking forward relies on them).
pub(crate) fn backlen_size(size: usize) -> usize {
    match size {
        0..=127 => 1,
        128..=16382 => 2,
        16383..=2097150 => 3,
        2097151..=268435454 => 4,
        _ => 5,
    }
}

/// Appends the back-length of an entry of `size` bytes: most significant
/// 7-bit group first; every byte after the first carries the continuation
/// bit the backward reader stops on.
pub(crate) fn push_backlen(out: &mut Vec<u8>, size: usize) {
    let n = backlen_size(size);
    for i in (0..n).rev() {
        let group = ((size >> (7 * i)) & 127) as u8;
        out.push(if i == n - 1 { group } else { group | 128 });
    }
}

/// Whether the bytes at `at` are the back-length of an entry of `size`
/// bytes, as [`push_backlen`] writes it (most significant group first).
pub(crate) fn backlen_is(lp: &[u8], at: usize, size: usize) -> bool {
    let n = backlen_size(size);
    let Some(b) = lp.get(at..at + n) else {
        return false;
    };
    b.iter().enumerate().all(|(k, &byte)| {
        let i = n - 1 - k;
        let group = ((size >> (7 * i)) & 127) as u8;
        byte == if k == 0 { group } else { group | 128 }
    })
}

/// Appends a listpack string header for `len` bytes.
pub(crate) fn push_str_header(out: &mut Vec<u8>, len: usize) {
    match header_len(len) {
        1 => out.push(0x80 | len as u8),
        2 => {
            out.push(0xE0 | (len >> 8) as u8);
            out.push(len as u8);
        }
        _ => {
            out.push(0xF0);
            out.extend_from_slice(&(len as u32).to_le_bytes());
        }
    }
}

fn encoded_len(e: &[u8]) -> usize {
    let size = header_len(e.len()) + e.len();
    size + backlen_size(size)
}

/// Makes room for `extra` more bytes, growing to powers of two (exact
/// allocator size classes) up to the chunk size, so a full chunk wastes
/// nothing; Vec's own growth would leave odd capacities.
fn reserve(buf: &mut Vec<u8>, extra: usize, limit: usize) {
    let need = buf.len() + extra;
    if need > buf.capacity() {
        let want = need.next_power_of_two().min(limit).max(need);
        buf.reserve_exact(want - buf.len());
    }
}

/// `e` encoded on its own.
fn encoded(e: &[u8]) -> Vec<u8> {
    let mut enc = Vec::with_capacity(encoded_len(e));
    push_str_header(&mut enc, e.len());
    enc.extend_from_slice(e);
    push_backlen(&mut enc, header_len(e.len()) + e.len());
    enc
}

fn encode(e: &[u8], out: &mut Vec<u8>, limit: usize) {
    reserve(out, encoded_len(e), limit);
    push_str_header(out, e.len());
    out.extend_from_slice(e);
    push_backlen(out, header_len(e.len()) + e.len());
}

/// The header at `off`: (header bytes, data length). Chunks only hold
/// entries `encode` wrote, so the header is one of the string forms.
fn header_at(buf: &[u8], off: usize) -> (usize, usize) {
    let b = buf[off];
    if b & 0xC0 == 0x80 {
        (1, (b & 0x3f) as usize)
    } else if b & 0xF0 == 0xE0 {
        (2, ((b & 0x0f) as usize) << 8 | buf[off + 1] as usize)
    } else {
        let mut w = [0u8; 4];
        w.copy_from_slice(&buf[off + 1..off + 5]);
        (5, u32::from_le_bytes(w) as usize)
    }
}

/// Decodes the element starting at `off`: (data start, data end, end).
fn at_front(buf: &[u8], off: usize) -> (usize, usize, usize) {
    let (hdr, len) = header_at(buf, off);
    let ds = off + hdr;
    (ds, ds + len, ds + len + backlen_size(hdr + len))
}

/// Decodes the element ending at `end`: (start offset, data start, data
/// end).
fn at_back(buf: &[u8], end: usize) -> (usize, usize, usize) {
    let mut size = 0usize;
    let mut shift = 0;
    let mut p = end;
    loop {
        p -= 1;
        let b = buf[p];
        size |= ((b & 0x7f) as usize) << shift;
        if b & 0x80 == 0 {
            break;
        }
        shift += 7;
    }
    let start = p - size;
    let (hdr, len) = header_at(buf, start);
    (start, start + hdr, start + hdr + len)
}

impl Chunk {
    /// Byte offset of the element at position `i` (of a plain chunk).
    fn offset_of(&self, i: usize) -> usize {
        offset_of(&self.buf, self.n, i)
    }
}

/// Byte offset of the element at position `i` of `n` in `buf`, walking
/// from the nearer end.
fn offset_of(buf: &[u8], n: u32, i: usize) -> usize {
    if i <= n as usize / 2 {
        let mut off = 0;
        for _ in 0..i {
            off = at_front(buf, off).2;
        }
        off
    } else {
        let mut end = buf.len();
        for _ in 0..(n as usize - i) {
            end = at_back(buf, end).0;
        }
        end
    }
}

#[derive(Clone)]
pub struct PackedList {
    chunks: VecDeque<Chunk>,
    len: usize,
    /// `list-max-listpack-size` when the list was made.
    fill: i32,
    /// `list-compress-depth` when the list was made.
    depth: u16,
}

impl Default for PackedList {
    fn default() -> Self {
        PackedList {
            chunks: VecDeque::new(),
            len: 0,
            fill: FILL.load(Ordering::Relaxed),
            depth: DEPTH.load(Ordering::Relaxed) as u16,
        }
    }
}

impl PackedList {
    pub fn new() -> Self {
        Self::default()
    }

    /// The fill this list's chunks follow (DEBUG OBJECT's ql_listpack_max).
    pub fn fill(&self) -> i32 {
        self.fill
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// How many chunks (quicklist nodes, in Redis's terms) hold the list.
    pub fn chunk_count(&self) -> usize {
        self.chunks.len()
    }

    /// The compress depth this list follows (DEBUG OBJECT's ql_compressed
    /// says whether it is above 0).
    pub fn compress_depth(&self) -> u16 {
        self.depth
    }

    /// The bytes of the chunks as Redis's listpacks, uncompressed
    /// (DEBUG OBJECT's ql_uncompressed_size).
    pub fn listpack_bytes(&self) -> usize {
        self.chunks
            .iter()
            .map(|c| c.lp as usize + LP_OVERHEAD)
            .sum()
    }

    /// Whether chunk `ci` is interior: more than `depth` chunks from
    /// either end, and so kept compressed.
    fn interior(&self, ci: usize) -> bool {
        let d = self.depth as usize;
        d > 0 && ci >= d && ci + d < self.chunks.len()
    }

    /// Chunk `ci` as its place wants it: packed inside, plain at the ends.
    fn settle(&mut self, ci: usize) {
        let inside = self.interior(ci);
        if let Some(c) = self.chunks.get_mut(ci) {
            if inside {
                c.pack();
            } else {
                c.unpack();
            }
        }
    }

    /// After chunks came or went at an end: the `depth` chunks at each
    /// end plain, and the first interior ones packed. Chunks further in
    /// kept their state, so this is all a push or a pop changes.
    fn settle_ends(&mut self) {
        if self.depth == 0 {
            return;
        }
        let (d, n) = (self.depth as usize, self.chunks.len());
        for ci in (0..=d.min(n)).chain(n.saturating_sub(d + 1)..n) {
            self.settle(ci);
        }
    }

    /// Every chunk (after a change spread over the list).
    fn settle_all(&mut self) {
        if self.depth == 0 {
            return;
        }
        for ci in 0..self.chunks.len() {
            self.settle(ci);
        }
    }

    /// Chunk `ci` plain, ready for a change.
    fn open(&mut self, ci: usize) {
        if let Some(c) = self.chunks.get_mut(ci) {
            c.open();
        }
    }

    pub fn clear(&mut self) {
        self.chunks.clear();
        self.len = 0;
    }

    pub fn push_back(&mut self, e: &[u8]) {
        let lp = lp_size(e) as u32;
        let (fill, limit) = (self.fill, chunk_limit(self.fill));
        if let Some(last) = self.chunks.len().checked_sub(1) {
            self.open(last);
        }
        match self.chunks.back_mut() {
            Some(c) if c.takes(e, fill) => {
                encode(e, &mut c.buf, limit);
                c.n += 1;
                c.lp += lp;
            }
            _ => {
                let mut c = Chunk::default();
                encode(e, &mut c.buf, limit);
                c.n = 1;
                c.lp = lp;
                self.chunks.push_back(c);
            }
        }
        self.len += 1;
        self.settle_ends();
    }

    /// Appends a node as it was loaded (a quicklist node of an RDB file or
    /// DUMP payload): Redis keeps each loaded node whole, neither merged
    /// with its neighbours nor split by the fill.
    pub fn push_node(&mut self, node: Node) {
        let c = node.0;
        if c.n == 0 {
            return;
        }
        self.len += c.n as usize;
        self.chunks.push_back(c);
        self.settle_ends();
    }

    pub fn push_front(&mut self, e: &[u8]) {
        let need = encoded_len(e);
        let lp = lp_size(e) as u32;
        let mut enc = Vec::with_capacity(need);
        let (fill, limit) = (self.fill, chunk_limit(self.fill));
        encode(e, &mut enc, limit);
        self.open(0);
        match self.chunks.front_mut() {
            Some(c) if c.takes(e, fill) => {
                reserve(&mut c.buf, need, limit);
                c.buf.splice(0..0, enc);
                c.n += 1;
                c.lp += lp;
            }
            _ => self.chunks.push_front(Chunk {
                buf: enc,
                n: 1,
                lp,
                ..Chunk::default()
            }),
        }
        self.len += 1;
        self.settle_ends();
    }

    pub fn pop_front(&mut self) -> Option<Vec<u8>> {
        self.open(0);
        let c = self.chunks.front_mut()?;
        let (ds, de, end) = at_front(&c.buf, 0);
        let out = c.buf[ds..de].to_vec();
        c.buf.drain(..end);
        c.n -= 1;
        c.lp -= lp_size(&out) as u32;
        if c.n == 0 {
            self.chunks.pop_front();
            self.settle_ends();
        }
        self.len -= 1;
        Some(out)
    }

    pub fn pop_back(&mut self) -> Option<Vec<u8>> {
        if let Some(last) = self.chunks.len().checked_sub(1) {
            self.open(last);
        }
        let c = self.chunks.back_mut()?;
        let (start, ds, de) = at_back(&c.buf, c.buf.len());
        let out = c.buf[ds..de].to_vec();
        c.buf.truncate(start);
        c.n -= 1;
        c.lp -= lp_size(&out) as u32;
        if c.n == 0 {
            self.chunks.pop_back();
            self.settle_ends();
        }
        self.len -= 1;
        Some(out)
    }

    /// (chunk, position in chunk) of element `i`, walking from the nearer
    /// end.
    fn locate(&self, i: usize) -> Option<(usize, usize)> {
        if i >= self.len {
            return None;
        }
        if i < self.len / 2 {
            let mut rest = i;
            for (ci, c) in self.chunks.iter().enumerate() {
                if rest < c.n as usize {
                    return Some((ci, rest));
                }
                rest -= c.n as usize;
            }
        } else {
            let mut rest = self.len - 1 - i;
            for (ci, c) in self.chunks.iter().enumerate().rev() {
                if rest < c.n as usize {
                    return Some((ci, c.n as usize - 1 - rest));
                }
                rest -= c.n as usize;
            }
        }
        None
    }

    /// Element `i`: borrowed from its chunk, or copied out of a
    /// compressed one.
    pub fn get(&self, i: usize) -> Option<Cow<'_, [u8]>> {
        let (ci, p) = self.locate(i)?;
        let c = &self.chunks[ci];
        match c.raw() {
            Cow::Borrowed(buf) => {
                let (ds, de, _) = at_front(buf, offset_of(buf, c.n, p));
                Some(Cow::Borrowed(&buf[ds..de]))
            }
            Cow::Owned(buf) => {
                let (ds, de, _) = at_front(&buf, offset_of(&buf, c.n, p));
                Some(Cow::Owned(buf[ds..de].to_vec()))
            }
        }
    }

    /// Replaces element `i` where it is, as Redis's LSET does (the node
    /// keeps it whatever its size).
    pub fn set(&mut self, i: usize, e: &[u8]) {
        let Some((ci, p)) = self.locate(i) else {
            return;
        };
        self.open(ci);
        let c = &mut self.chunks[ci];
        let off = c.offset_of(p);
        let (ds, de, end) = at_front(&c.buf, off);
        let old = lp_size(&c.buf[ds..de]) as u32;
        let enc = encoded(e);
        c.buf.splice(off..end, enc);
        c.lp = c.lp - old + lp_size(e) as u32;
        self.settle(ci);
    }

    /// Inserts before position `i` (`i == len` appends).
    pub fn insert(&mut self, i: usize, e: &[u8]) {
        if self.len == 0 {
            self.push_back(e);
        } else if i >= self.len {
            self.insert_at(self.len - 1, e, true);
        } else {
            self.insert_at(i, e, false);
        }
    }

    /// Inserts `e` before or after element `pivot` (LINSERT), in the node
    /// Redis's quicklist would choose (`_quicklistInsert`): the pivot's node
    /// while it has room; at a node's edge, the neighbour that has room, or
    /// a new node; otherwise the node splits at the pivot and the pieces
    /// merge with their neighbours where they fit.
    pub fn insert_at(&mut self, pivot: usize, e: &[u8], after: bool) {
        let Some((ci, p)) = self.locate(pivot) else {
            return;
        };
        self.insert_at_chunk(ci, p, e, after);
        // The chunks around the pivot's may have split or merged.
        if self.depth > 0 {
            for c in ci.saturating_sub(2)..(ci + 4).min(self.chunks.len()) {
                self.settle(c);
            }
            self.settle_ends();
        }
    }

    fn insert_at_chunk(&mut self, ci: usize, p: usize, e: &[u8], after: bool) {
        let c = &self.chunks[ci];
        let (fill, limit) = (self.fill, chunk_limit(self.fill));
        let full = !c.takes(e, fill);
        let at_tail = after && p + 1 == c.n as usize;
        let at_head = !after && p == 0;
        if !full {
            self.insert_in_chunk(ci, p + usize::from(after), e);
        } else if at_tail && self.chunks.get(ci + 1).is_some_and(|n| n.takes(e, fill)) {
            self.insert_in_chunk(ci + 1, 0, e);
        } else if at_head && ci > 0 && self.chunks[ci - 1].takes(e, fill) {
            let end = self.chunks[ci - 1].n as usize;
            self.insert_in_chunk(ci - 1, end, e);
        } else if at_tail || at_head {
            let mut c = Chunk::default();
            encode(e, &mut c.buf, limit);
            c.n = 1;
            c.lp = lp_size(e) as u32;
            self.chunks.insert(if after { ci + 1 } else { ci }, c);
            self.len += 1;
        } else {
            // Split at the pivot: the part on the inserted side becomes a
            // node of its own with `e` at its inner edge.
            self.open(ci);
            let c = &mut self.chunks[ci];
            let cut = c.offset_of(p + usize::from(after));
            let mut part = Chunk::default();
            let center = if after {
                part.buf = c.buf.split_off(cut);
                part.buf.splice(0..0, encoded(e));
                part.n = c.n - (p as u32 + 1);
                c.n = p as u32 + 1;
                ci
            } else {
                part.buf = c.buf.drain(..cut).collect();
                encode(e, &mut part.buf, limit);
                part.n = p as u32;
                c.n -= p as u32;
                ci + 1
            };
            part.n += 1;
            c.recount();
            part.recount();
            self.chunks.insert(if after { ci + 1 } else { ci }, part);
            self.len += 1;
            self.merge_around(center);
        }
    }

    /// Inserts `e` at position `pos` of chunk `ci` (`pos == n` appends).
    fn insert_in_chunk(&mut self, ci: usize, pos: usize, e: &[u8]) {
        self.open(ci);
        let c = &mut self.chunks[ci];
        let off = if pos >= c.n as usize {
            c.buf.len()
        } else {
            c.offset_of(pos)
        };
        let enc = encoded(e);
        reserve(&mut c.buf, enc.len(), chunk_limit(self.fill));
        c.buf.splice(off..off, enc);
        c.n += 1;
        c.lp += lp_size(e) as u32;
        self.len += 1;
    }

    /// Whether Redis would merge chunks `a` and `b`
    /// (`_quicklistNodeAllowMerge`: their listpacks less one header).
    fn can_merge(&self, a: usize, b: usize) -> bool {
        match (self.chunks.get(a), self.chunks.get(b)) {
            (Some(x), Some(y)) => fits(
                self.fill,
                2 * LP_OVERHEAD + (x.lp + y.lp) as usize - 11,
                (x.n + y.n) as usize,
            ),
            _ => false,
        }
    }

    /// Appends chunk `i + 1` to chunk `i`.
    fn merge_next(&mut self, i: usize) {
        self.open(i);
        if let Some(next) = self.chunks.remove(i + 1) {
            let c = &mut self.chunks[i];
            c.buf.extend_from_slice(&next.raw());
            c.n += next.n;
            c.lp += next.lp;
        }
    }

    /// After a split (`_quicklistMergeNodes`): the two nodes before the
    /// centre, the two after it, then the centre with each neighbour.
    fn merge_around(&mut self, mut center: usize) {
        if center >= 2 && self.can_merge(center - 2, center - 1) {
            self.merge_next(center - 2);
            center -= 1;
        }
        if self.can_merge(center + 1, center + 2) {
            self.merge_next(center + 1);
        }
        let target = if center >= 1 && self.can_merge(center - 1, center) {
            self.merge_next(center - 1);
            center - 1
        } else {
            center
        };
        if self.can_merge(target, target + 1) {
            self.merge_next(target);
        }
    }

    pub fn remove(&mut self, i: usize) -> Option<Vec<u8>> {
        let (ci, p) = self.locate(i)?;
        self.open(ci);
        let c = &mut self.chunks[ci];
        let off = c.offset_of(p);
        let (ds, de, end) = at_front(&c.buf, off);
        let out = c.buf[ds..de].to_vec();
        c.buf.drain(off..end);
        c.n -= 1;
        c.lp -= lp_size(&out) as u32;
        if c.n == 0 {
            self.chunks.remove(ci);
            self.settle_ends();
        } else {
            self.settle(ci);
        }
        self.len -= 1;
        Some(out)
    }

    /// Keeps positions `start..=end` only (LTRIM).
    pub fn trim(&mut self, start: usize, end: usize) {
        self.trim_chunks(start, end);
        self.settle_ends();
    }

    fn trim_chunks(&mut self, start: usize, end: usize) {
        while self.len > end + 1 {
            match self.chunks.back() {
                // Whole chunks go at once.
                Some(c) if (c.n as usize) < self.len - end => {
                    self.len -= c.n as usize;
                    self.chunks.pop_back();
                }
                Some(_) => {
                    self.pop_back();
                }
                None => break,
            }
        }
        let mut drop_front = start;
        while drop_front > 0 {
            match self.chunks.front() {
                Some(c) if (c.n as usize) <= drop_front => {
                    drop_front -= c.n as usize;
                    self.len -= c.n as usize;
                    self.chunks.pop_front();
                }
                Some(_) => {
                    self.pop_front();
                    drop_front -= 1;
                }
                None => break,
            }
        }
    }

    /// Removes up to `limit` elements equal to `v`, from the head or the
    /// tail (LREM); returns how many.
    pub fn remove_matching(&mut self, v: &[u8], limit: usize, from_tail: bool) -> usize {
        let mut removed = 0;
        let order: Vec<usize> = if from_tail {
            (0..self.chunks.len()).rev().collect()
        } else {
            (0..self.chunks.len()).collect()
        };
        for ci in order {
            if removed >= limit {
                break;
            }
            let c = &mut self.chunks[ci];
            // Read without opening: a chunk without a match stays packed.
            let raw = c.raw();
            let mut kept = Vec::with_capacity(raw.len());
            let mut spans: Vec<(usize, usize, bool)> = Vec::with_capacity(c.n as usize);
            let mut off = 0;
            while off < raw.len() {
                let (ds, de, end) = at_front(&raw, off);
                spans.push((off, end, raw[ds..de] == *v));
                off = end;
            }
            let mut gone = vec![false; spans.len()];
            let idx: Vec<usize> = if from_tail {
                (0..spans.len()).rev().collect()
            } else {
                (0..spans.len()).collect()
            };
            for i in idx {
                if removed >= limit {
                    break;
                }
                if spans[i].2 {
                    gone[i] = true;
                    removed += 1;
                }
            }
            if !gone.iter().any(|d| *d) {
                continue;
            }
            let mut n = 0;
            for (i, (s, e, _)) in spans.iter().enumerate() {
                if !gone[i] {
                    kept.extend_from_slice(&raw[*s..*e]);
                    n += 1;
                }
            }
            drop(raw);
            self.len -= c.n as usize - n;
            c.buf = kept;
            c.packed = 0;
            c.incompressible = false;
            c.n = n as u32;
            c.recount();
        }
        self.chunks.retain(|c| c.n > 0);
        self.settle_all();
        removed
    }

    /// Each non-empty chunk's element count and bytes (RDB writes a
    /// listpack per chunk).
    pub fn chunk_elements(&self) -> impl Iterator<Item = (usize, ChunkBody<'_>)> {
        self.chunks.iter().filter(|c| c.n > 0).map(|c| {
            let buf = c.raw();
            (
                c.n as usize,
                ChunkBody {
                    // Integers are smaller in a listpack than as strings,
                    // so equal sizes mean there are none.
                    verbatim: c.lp as usize == buf.len(),
                    compressed: c.is_packed(),
                    buf,
                },
            )
        })
    }

    pub fn iter(&self) -> Iter<'_> {
        Iter::at(self, 0, 0, self.len)
    }

    /// From the tail towards the head.
    pub fn iter_rev(&self) -> RevIter<'_> {
        let ci = self.chunks.len();
        RevIter {
            list: self,
            ci,
            end: 0,
            left: self.len,
            unpacked: None,
        }
    }

    /// Elements from position `start` on.
    pub fn iter_from(&self, start: usize) -> Iter<'_> {
        match self.locate(start) {
            Some((ci, p)) => Iter::at(self, ci, p, self.len - start),
            None => Iter::at(self, self.chunks.len(), 0, 0),
        }
    }

    /// Heap bytes (for INFO's estimate).
    pub fn heap_size(&self) -> usize {
        self.chunks.capacity() * std::mem::size_of::<Chunk>()
            + self.chunks.iter().map(|c| c.buf.capacity()).sum::<usize>()
    }
}

impl<'a> FromIterator<&'a [u8]> for PackedList {
    fn from_iter<T: IntoIterator<Item = &'a [u8]>>(it: T) -> Self {
        let mut l = PackedList::new();
        for e in it {
            l.push_back(e);
        }
        l
    }
}

/// A node being loaded, element by element (see [`PackedList::push_node`]).
#[derive(Default)]
pub struct Node(Chunk);

impl Node {
    pub fn push(&mut self, e: &[u8]) {
        let c = &mut self.0;
        encode(e, &mut c.buf, chunk_limit(FILL.load(Ordering::Relaxed)));
        c.n += 1;
        c.lp += lp_size(e) as u32;
    }
}

/// One chunk's bytes, decompressed if it is kept compressed.
pub struct ChunkBody<'a> {
    buf: Cow<'a, [u8]>,
    verbatim: bool,
    compressed: bool,
}

impl ChunkBody<'_> {
    /// The chunk's bytes, when they are already the body of Redis's
    /// listpack for these elements (no element takes an integer encoding).
    pub fn listpack_body(&self) -> Option<&[u8]> {
        self.verbatim.then_some(&self.buf[..])
    }

    /// Whether the list keeps this chunk compressed (`list-compress-depth`):
    /// Redis writes such a node compressed whatever `rdbcompression` says.
    pub fn compressed(&self) -> bool {
        self.compressed
    }

    pub fn elements(&self) -> ChunkIter<'_> {
        ChunkIter {
            buf: &self.buf,
            off: 0,
        }
    }
}

/// One chunk's elements in order.
pub struct ChunkIter<'a> {
    buf: &'a [u8],
    off: usize,
}

impl<'a> Iterator for ChunkIter<'a> {
    type Item = &'a [u8];
    fn next(&mut self) -> Option<&'a [u8]> {
        if self.off >= self.buf.len() {
            return None;
        }
        let (ds, de, end) = at_front(self.buf, self.off);
        self.off = end;
        Some(&self.buf[ds..de])
    }
}

/// Elements head to tail: borrowed from plain chunks, copied out of
/// compressed ones (each decompressed once, on the way in).
pub struct Iter<'a> {
    list: &'a PackedList,
    ci: usize,
    off: usize,
    left: usize,
    /// Chunk `ci` decompressed, when it is kept compressed.
    unpacked: Option<Vec<u8>>,
}

/// Chunk `ci`'s bytes when it is kept compressed.
fn unpack_at(list: &PackedList, ci: usize) -> Option<Vec<u8>> {
    list.chunks
        .get(ci)
        .filter(|c| c.is_packed())
        .map(|c| unpacked(&c.buf, c.packed as usize))
}

impl<'a> Iter<'a> {
    /// From element `p` of chunk `ci`, `left` elements.
    fn at(list: &'a PackedList, ci: usize, p: usize, left: usize) -> Self {
        let unpacked = unpack_at(list, ci);
        let off = match (&unpacked, list.chunks.get(ci)) {
            (Some(u), Some(c)) => offset_of(u, c.n, p),
            (None, Some(c)) => c.offset_of(p),
            _ => 0,
        };
        Iter {
            list,
            ci,
            off,
            left,
            unpacked,
        }
    }
}

impl<'a> Iterator for Iter<'a> {
    type Item = Cow<'a, [u8]>;
    fn next(&mut self) -> Option<Cow<'a, [u8]>> {
        if self.left == 0 {
            return None;
        }
        let list = self.list;
        let mut c = list.chunks.get(self.ci)?;
        let len = self.unpacked.as_ref().map_or(c.buf.len(), |u| u.len());
        if self.off >= len {
            self.ci += 1;
            self.off = 0;
            c = list.chunks.get(self.ci)?;
            self.unpacked = unpack_at(list, self.ci);
        }
        self.left -= 1;
        Some(match &self.unpacked {
            Some(u) => {
                let (ds, de, end) = at_front(u, self.off);
                self.off = end;
                Cow::Owned(u[ds..de].to_vec())
            }
            None => {
                let (ds, de, end) = at_front(&c.buf, self.off);
                self.off = end;
                Cow::Borrowed(&c.buf[ds..de])
            }
        })
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left, Some(self.left))
    }
}

/// Elements tail to head, as [`Iter`].
pub struct RevIter<'a> {
    list: &'a PackedList,
    /// One past the chunk being read.
    ci: usize,
    end: usize,
    left: usize,
    unpacked: Option<Vec<u8>>,
}

impl<'a> Iterator for RevIter<'a> {
    type Item = Cow<'a, [u8]>;
    fn next(&mut self) -> Option<Cow<'a, [u8]>> {
        if self.left == 0 {
            return None;
        }
        let list = self.list;
        while self.end == 0 {
            self.ci = self.ci.checked_sub(1)?;
            let c = list.chunks.get(self.ci)?;
            self.unpacked = unpack_at(list, self.ci);
            self.end = self.unpacked.as_ref().map_or(c.buf.len(), |u| u.len());
        }
        self.left -= 1;
        let c = &list.chunks[self.ci];
        Some(match &self.unpacked {
            Some(u) => {
                let (start, ds, de) = at_back(u, self.end);
                self.end = start;
                Cow::Owned(u[ds..de].to_vec())
            }
            None => {
                let (start, ds, de) = at_back(&c.buf, self.end);
                self.end = start;
                Cow::Borrowed(&c.buf[ds..de])
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn elem(k: u16, big: bool) -> Vec<u8> {
        if big {
            vec![b'x'; 200 + k as usize * 37]
        } else if k.is_multiple_of(5) {
            // Integers, which take listpack's integer encodings.
            (i64::from(k) * 7919 - 1_000_000).to_string().into_bytes()
        } else {
            format!("e{k}").into_bytes()
        }
    }

    proptest! {
        /// Against a VecDeque model, every operation lists commands use.
        #[test]
        fn behaves_like_a_deque(ops in proptest::collection::vec((0u8..11, any::<u16>(), any::<bool>()), 0..400), depth in 0u16..3) {
            let mut p = PackedList::new();
            p.depth = depth;
            let mut m: VecDeque<Vec<u8>> = VecDeque::new();
            for (op, k, big) in ops {
                let e = elem(k % 1000, big && k % 7 == 0);
                match op {
                    0 => { p.push_back(&e); m.push_back(e); }
                    1 => { p.push_front(&e); m.push_front(e); }
                    2 => prop_assert_eq!(p.pop_front(), m.pop_front()),
                    3 => prop_assert_eq!(p.pop_back(), m.pop_back()),
                    4 => { let i = k as usize % (m.len() + 1); p.insert(i, &e); m.insert(i, e); }
                    10 => if !m.is_empty() {
                        let i = k as usize % m.len();
                        p.insert_at(i, &e, big);
                        m.insert(i + usize::from(big), e);
                    },
                    5 => if !m.is_empty() { let i = k as usize % m.len(); prop_assert_eq!(p.remove(i), m.remove(i)); },
                    6 => if !m.is_empty() { let i = k as usize % m.len(); p.set(i, &e); m[i] = e; },
                    7 => if !m.is_empty() {
                        let a = k as usize % m.len();
                        let b = a + (k as usize / 7) % (m.len() - a);
                        p.trim(a, b);
                        m.truncate(b + 1);
                        m.drain(..a);
                    },
                    8 => {
                        let v = elem(k % 5, false);
                        let limit = if k % 3 == 0 { usize::MAX } else { 1 + k as usize % 3 };
                        let tail = k % 2 == 0;
                        let got = p.remove_matching(&v, limit, tail);
                        let mut removed = 0;
                        if tail {
                            let mut i = m.len();
                            while i > 0 && removed < limit { i -= 1; if m[i] == v { m.remove(i); removed += 1; } }
                        } else {
                            let mut i = 0;
                            while i < m.len() && removed < limit { if m[i] == v { m.remove(i); removed += 1; } else { i += 1; } }
                        }
                        prop_assert_eq!(got, removed);
                    }
                    _ => { for _ in 0..50 { p.push_back(&e); m.push_back(e.clone()); } }
                }
                prop_assert_eq!(p.len(), m.len());
            }
            // Every chunk's listpack size is what a recount finds, and no
            // chunk is empty.
            for (ci, c) in p.chunks.iter().enumerate() {
                // Interior chunks are compressed unless that did not pay;
                // the `depth` chunks at each end are plain.
                if p.interior(ci) {
                    prop_assert!(c.is_packed() || c.incompressible, "chunk {} of {}", ci, p.chunks.len());
                } else {
                    prop_assert!(!c.is_packed(), "chunk {} of {}", ci, p.chunks.len());
                }
                let mut r = c.clone();
                r.unpack();
                r.recount();
                prop_assert_eq!(r.lp, c.lp);
                prop_assert!(c.n > 0);
            }
            // A chunk offered as a listpack body as it is equals the body
            // the elements encode to.
            for (_, it) in p.chunk_elements() {
                if let Some(b) = it.listpack_body() {
                    let mut body = Vec::new();
                    for e in it.elements() {
                        crate::persistence::rdb::listpack::push_element(&mut body, e);
                    }
                    prop_assert_eq!(b, &body[..]);
                }
            }
            let all: Vec<Vec<u8>> = p.iter().map(|e| e.to_vec()).collect();
            prop_assert_eq!(&all, &m.iter().cloned().collect::<Vec<_>>());
            let rev: Vec<Vec<u8>> = p.iter_rev().map(|e| e.to_vec()).collect();
            prop_assert_eq!(rev, m.iter().rev().cloned().collect::<Vec<_>>());
            for i in 0..m.len() {
                let got = p.get(i);
                prop_assert_eq!(got.as_deref(), Some(&m[i][..]));
                let from: Vec<Vec<u8>> = p.iter_from(i).map(|e| e.to_vec()).collect();
                prop_assert_eq!(from.len(), m.len() - i);
            }
        }
    }
}

#[cfg(test)]
mod compress_tests {
    use super::PackedList;

    fn list(depth: u16, n: usize) -> PackedList {
        let mut p = PackedList::new();
        p.depth = depth;
        for i in 0..n {
            p.push_back(format!("element:{:012}", i).as_bytes());
        }
        p
    }

    /// Interior chunks are compressed, the `depth` at each end are not,
    /// and every read sees the elements as pushed.
    #[test]
    fn interior_chunks_are_compressed_and_read_back() {
        let plain = list(0, 20_000);
        for depth in [1u16, 2, 5] {
            let p = list(depth, 20_000);
            let n = p.chunks.len();
            assert!(n > 2 * depth as usize + 2, "{n} chunks");
            for (ci, c) in p.chunks.iter().enumerate() {
                let inside = ci >= depth as usize && ci + (depth as usize) < n;
                assert_eq!(c.is_packed(), inside, "chunk {ci} of {n}, depth {depth}");
            }
            assert!(
                p.heap_size() * 2 < plain.heap_size(),
                "{} against {}",
                p.heap_size(),
                plain.heap_size()
            );
            assert!(p.iter().eq(plain.iter()));
            assert!(p.iter_rev().eq(plain.iter_rev()));
            assert!(p.iter_from(7_777).eq(plain.iter_from(7_777)));
            for i in [0, 1, 500, 10_000, 19_999] {
                assert_eq!(p.get(i), plain.get(i));
            }
            assert_eq!(p.listpack_bytes(), plain.listpack_bytes());
        }
    }

    /// A change inside opens the chunk and packs it again; pops that
    /// bring a packed chunk to an end open it.
    #[test]
    fn changes_inside_and_pops_keep_the_layout() {
        let mut p = list(1, 5_000);
        p.set(2_500, b"changed");
        p.insert_at(2_600, b"inserted", true);
        assert_eq!(p.remove(100).as_deref(), Some(&b"element:000000000100"[..]));
        assert_eq!(p.get(2_499).as_deref(), Some(&b"changed"[..]));
        assert_eq!(p.get(2_600).as_deref(), Some(&b"inserted"[..]));
        while p.len() > 10 {
            p.pop_front();
        }
        let n = p.chunks.len();
        for (ci, c) in p.chunks.iter().enumerate() {
            assert_eq!(c.is_packed(), p.interior(ci), "chunk {ci} of {n}");
        }
        assert_eq!(p.get(9).as_deref(), Some(&b"element:000000004999"[..]));
    }
}

#[cfg(test)]
mod size_tests {
    /// Full chunks sit in exact power-of-two allocations.
    #[test]
    fn chunks_do_not_overallocate() {
        let mut p = super::PackedList::new();
        for i in 0..100_000u64 {
            p.push_back(format!("element:{:012}", i).as_bytes());
        }
        let per = p.heap_size() as f64 / 100_000.0;
        assert!(per < 23.5, "{per} bytes per 22-byte element");
        assert!(p
            .chunks
            .iter()
            .all(|c| c.buf.capacity() <= super::chunk_limit(-2)));
    }
}
