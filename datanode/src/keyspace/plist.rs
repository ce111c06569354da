//! Lists packed the way Redis's quicklist packs them: a deque of chunks of
//! about 8 KB, each holding its elements back to back in Redis's listpack
//! string encoding (a 1-, 2- or 5-byte header with the length, the bytes,
//! then the entry's size written backwards so a chunk can be walked from
//! either end). A short element costs its bytes plus two, and a chunk is a
//! listpack body as it is: an RDB file gets it with a header added.

use std::collections::VecDeque;

/// Bytes a chunk may hold before a new one starts (Redis's default
/// `list-max-listpack-size -2` is 8 KB too). A larger element gets a
/// chunk of its own.
const CHUNK_BYTES: usize = 8 * 1024;

#[derive(Clone, Default)]
struct Chunk {
    buf: Vec<u8>,
    n: u32,
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
fn reserve(buf: &mut Vec<u8>, extra: usize) {
    let need = buf.len() + extra;
    if need > buf.capacity() {
        let want = need.next_power_of_two().min(CHUNK_BYTES).max(need);
        buf.reserve_exact(want - buf.len());
    }
}

fn encode(e: &[u8], out: &mut Vec<u8>) {
    reserve(out, encoded_len(e));
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
    /// Byte offset of the element at position `i`.
    fn offset_of(&self, i: usize) -> usize {
        if i <= self.n as usize / 2 {
            let mut off = 0;
            for _ in 0..i {
                off = at_front(&self.buf, off).2;
            }
            off
        } else {
            let mut end = self.buf.len();
            for _ in 0..(self.n as usize - i) {
                end = at_back(&self.buf, end).0;
            }
            end
        }
    }
}

#[derive(Clone, Default)]
pub struct PackedList {
    chunks: VecDeque<Chunk>,
    len: usize,
}

impl PackedList {
    pub fn new() -> Self {
        Self::default()
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

    pub fn clear(&mut self) {
        self.chunks.clear();
        self.len = 0;
    }

    pub fn push_back(&mut self, e: &[u8]) {
        let need = encoded_len(e);
        match self.chunks.back_mut() {
            Some(c) if c.buf.len() + need <= CHUNK_BYTES => {
                encode(e, &mut c.buf);
                c.n += 1;
            }
            _ => {
                let mut c = Chunk::default();
                encode(e, &mut c.buf);
                c.n = 1;
                self.chunks.push_back(c);
            }
        }
        self.len += 1;
    }

    pub fn push_front(&mut self, e: &[u8]) {
        let need = encoded_len(e);
        let mut enc = Vec::with_capacity(need);
        encode(e, &mut enc);
        match self.chunks.front_mut() {
            Some(c) if c.buf.len() + need <= CHUNK_BYTES => {
                reserve(&mut c.buf, need);
                c.buf.splice(0..0, enc);
                c.n += 1;
            }
            _ => self.chunks.push_front(Chunk { buf: enc, n: 1 }),
        }
        self.len += 1;
    }

    pub fn pop_front(&mut self) -> Option<Vec<u8>> {
        let c = self.chunks.front_mut()?;
        let (ds, de, end) = at_front(&c.buf, 0);
        let out = c.buf[ds..de].to_vec();
        c.buf.drain(..end);
        c.n -= 1;
        if c.n == 0 {
            self.chunks.pop_front();
        }
        self.len -= 1;
        Some(out)
    }

    pub fn pop_back(&mut self) -> Option<Vec<u8>> {
        let c = self.chunks.back_mut()?;
        let (start, ds, de) = at_back(&c.buf, c.buf.len());
        let out = c.buf[ds..de].to_vec();
        c.buf.truncate(start);
        c.n -= 1;
        if c.n == 0 {
            self.chunks.pop_back();
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

    pub fn get(&self, i: usize) -> Option<&[u8]> {
        let (ci, p) = self.locate(i)?;
        let c = &self.chunks[ci];
        let (ds, de, _) = at_front(&c.buf, c.offset_of(p));
        Some(&c.buf[ds..de])
    }

    pub fn set(&mut self, i: usize, e: &[u8]) {
        if self.locate(i).is_some() {
            self.remove(i);
            self.insert(i, e);
        }
    }

    /// Inserts before position `i` (`i == len` appends).
    pub fn insert(&mut self, i: usize, e: &[u8]) {
        if i == 0 {
            return self.push_front(e);
        }
        if i >= self.len {
            return self.push_back(e);
        }
        let Some((ci, p)) = self.locate(i) else {
            return;
        };
        let c = &mut self.chunks[ci];
        let off = c.offset_of(p);
        let mut enc = Vec::with_capacity(encoded_len(e));
        encode(e, &mut enc);
        reserve(&mut c.buf, enc.len());
        c.buf.splice(off..off, enc);
        c.n += 1;
        self.len += 1;
        if c.buf.len() > 2 * CHUNK_BYTES && c.n > 1 {
            // Split a chunk grown by inserts in the middle.
            let half = c.n as usize / 2;
            let at = c.offset_of(half);
            let tail = c.buf.split_off(at);
            let tail_n = c.n - half as u32;
            c.n = half as u32;
            c.buf.shrink_to_fit();
            self.chunks.insert(
                ci + 1,
                Chunk {
                    buf: tail,
                    n: tail_n,
                },
            );
        }
    }

    pub fn remove(&mut self, i: usize) -> Option<Vec<u8>> {
        let (ci, p) = self.locate(i)?;
        let c = &mut self.chunks[ci];
        let off = c.offset_of(p);
        let (ds, de, end) = at_front(&c.buf, off);
        let out = c.buf[ds..de].to_vec();
        c.buf.drain(off..end);
        c.n -= 1;
        if c.n == 0 {
            self.chunks.remove(ci);
        }
        self.len -= 1;
        Some(out)
    }

    /// Keeps positions `start..=end` only (LTRIM).
    pub fn trim(&mut self, start: usize, end: usize) {
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
            let mut kept = Vec::with_capacity(c.buf.len());
            let mut spans: Vec<(usize, usize, bool)> = Vec::with_capacity(c.n as usize);
            let mut off = 0;
            while off < c.buf.len() {
                let (ds, de, end) = at_front(&c.buf, off);
                spans.push((off, end, &c.buf[ds..de] == v));
                off = end;
            }
            let mut drop = vec![false; spans.len()];
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
                    drop[i] = true;
                    removed += 1;
                }
            }
            if !drop.iter().any(|d| *d) {
                continue;
            }
            let mut n = 0;
            for (i, (s, e, _)) in spans.iter().enumerate() {
                if !drop[i] {
                    kept.extend_from_slice(&c.buf[*s..*e]);
                    n += 1;
                }
            }
            self.len -= c.n as usize - n;
            c.buf = kept;
            c.n = n as u32;
        }
        self.chunks.retain(|c| c.n > 0);
        removed
    }

    /// Each chunk as a listpack body (entries without the 6-byte header
    /// and the end byte) and its element count.
    pub fn chunks(&self) -> impl Iterator<Item = (&[u8], usize)> {
        self.chunks.iter().map(|c| (c.buf.as_slice(), c.n as usize))
    }

    pub fn iter(&self) -> Iter<'_> {
        Iter {
            list: self,
            ci: 0,
            off: 0,
            left: self.len,
        }
    }

    /// From the tail towards the head.
    pub fn iter_rev(&self) -> RevIter<'_> {
        let ci = self.chunks.len();
        RevIter {
            list: self,
            ci,
            end: 0,
            left: self.len,
        }
    }

    /// Elements from position `start` on.
    pub fn iter_from(&self, start: usize) -> Iter<'_> {
        let Some((ci, p)) = self.locate(start) else {
            return Iter {
                list: self,
                ci: self.chunks.len(),
                off: 0,
                left: 0,
            };
        };
        Iter {
            list: self,
            ci,
            off: self.chunks[ci].offset_of(p),
            left: self.len - start,
        }
    }

    /// Heap bytes (for INFO's estimate).
    pub fn heap_size(&self) -> usize {
        self.chunks.capacity() * std::mem::size_of::<Chunk>()
            + self.chunks.iter().map(|c| c.buf.capacity()).sum::<usize>()
    }
}

impl std::ops::Index<usize> for PackedList {
    type Output = [u8];
    fn index(&self, i: usize) -> &[u8] {
        self.get(i).expect("list index out of range")
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

pub struct Iter<'a> {
    list: &'a PackedList,
    ci: usize,
    off: usize,
    left: usize,
}

impl<'a> Iterator for Iter<'a> {
    type Item = &'a [u8];
    fn next(&mut self) -> Option<&'a [u8]> {
        if self.left == 0 {
            return None;
        }
        let mut c = self.list.chunks.get(self.ci)?;
        if self.off >= c.buf.len() {
            self.ci += 1;
            self.off = 0;
            c = self.list.chunks.get(self.ci)?;
        }
        let (ds, de, end) = at_front(&c.buf, self.off);
        self.off = end;
        self.left -= 1;
        Some(&c.buf[ds..de])
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left, Some(self.left))
    }
}

pub struct RevIter<'a> {
    list: &'a PackedList,
    /// One past the chunk being read.
    ci: usize,
    end: usize,
    left: usize,
}

impl<'a> Iterator for RevIter<'a> {
    type Item = &'a [u8];
    fn next(&mut self) -> Option<&'a [u8]> {
        if self.left == 0 {
            return None;
        }
        while self.end == 0 {
            self.ci = self.ci.checked_sub(1)?;
            self.end = self.list.chunks.get(self.ci)?.buf.len();
        }
        let c = &self.list.chunks[self.ci];
        let (start, ds, de) = at_back(&c.buf, self.end);
        self.end = start;
        self.left -= 1;
        Some(&c.buf[ds..de])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn elem(k: u16, big: bool) -> Vec<u8> {
        if big {
            vec![b'x'; 200 + k as usize * 37]
        } else {
            format!("e{k}").into_bytes()
        }
    }

    proptest! {
        /// Against a VecDeque model, every operation lists commands use.
        #[test]
        fn behaves_like_a_deque(ops in proptest::collection::vec((0u8..10, any::<u16>(), any::<bool>()), 0..400)) {
            let mut p = PackedList::new();
            let mut m: VecDeque<Vec<u8>> = VecDeque::new();
            for (op, k, big) in ops {
                let e = elem(k % 1000, big && k % 7 == 0);
                match op {
                    0 => { p.push_back(&e); m.push_back(e); }
                    1 => { p.push_front(&e); m.push_front(e); }
                    2 => prop_assert_eq!(p.pop_front(), m.pop_front()),
                    3 => prop_assert_eq!(p.pop_back(), m.pop_back()),
                    4 => { let i = k as usize % (m.len() + 1); p.insert(i, &e); m.insert(i, e); }
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
            let all: Vec<Vec<u8>> = p.iter().map(|e| e.to_vec()).collect();
            prop_assert_eq!(&all, &m.iter().cloned().collect::<Vec<_>>());
            let rev: Vec<Vec<u8>> = p.iter_rev().map(|e| e.to_vec()).collect();
            prop_assert_eq!(rev, m.iter().rev().cloned().collect::<Vec<_>>());
            for i in 0..m.len() {
                prop_assert_eq!(&p[i], &m[i][..]);
                let from: Vec<Vec<u8>> = p.iter_from(i).map(|e| e.to_vec()).collect();
                prop_assert_eq!(from.len(), m.len() - i);
            }
        }
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
            .all(|c| c.buf.capacity() <= super::CHUNK_BYTES));
    }
}
