//! The replication stream as the master keeps it: every byte sent to
//! replicas, numbered by its offset, held in blocks. Like Redis 7's shared
//! replication buffer, one copy serves both the backlog (the last
//! `repl-backlog-size` bytes, for partial resyncs) and each connected
//! replica (the bytes it has not been sent yet): a block goes once the
//! rest hold `repl-backlog-size` bytes and every replica is past it. As in
//! Redis, what a lagging replica keeps stays part of the backlog: a
//! partial resync can start anywhere in it.
//!
//! Offsets here count bytes from the start of the stream: `end` is Redis's
//! `master_repl_offset`, and a replica asking to continue "from offset
//! N+1" (Redis's numbering of the next byte) reads from position N.

use std::collections::{HashMap, VecDeque};

/// Block size: appends fill the last block, so small commands do not cost
/// an allocation each.
const BLOCK: usize = 16 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadError {
    /// The bytes before this position are no longer held.
    Gone,
}

#[derive(Debug)]
pub struct Backlog {
    blocks: VecDeque<Vec<u8>>,
    /// Offset of the first byte held.
    start: u64,
    /// Offset after the last byte (the master's replication offset).
    end: u64,
    /// `repl-backlog-size`.
    size: u64,
    /// Whether a backlog exists (Redis creates it when the first replica
    /// connects, and keeps it).
    active: bool,
    /// Where each replica will read next: bytes from there are kept.
    readers: HashMap<u64, u64>,
}

impl Backlog {
    pub fn new(size: u64) -> Backlog {
        Backlog {
            blocks: VecDeque::new(),
            start: 0,
            end: 0,
            size: size.max(1),
            active: false,
            readers: HashMap::new(),
        }
    }

    /// The replication offset: bytes ever appended.
    pub fn end(&self) -> u64 {
        self.end
    }

    pub fn is_active(&self) -> bool {
        self.active
    }

    /// Creates the backlog (its first byte will be the next appended).
    pub fn activate(&mut self) {
        if !self.active {
            self.active = true;
            self.blocks.clear();
            self.start = self.end;
        }
    }

    /// Frees the backlog (repl-backlog-ttl): nothing held, nothing kept
    /// until a replica makes it active again.
    pub fn deactivate(&mut self) {
        self.active = false;
        self.blocks.clear();
        self.start = self.end;
    }

    /// Starts the stream over at `offset` with nothing held (a replica
    /// that loaded its master's snapshot continues from its offset).
    pub fn reset_to(&mut self, offset: u64) {
        self.blocks.clear();
        self.start = offset;
        self.end = offset;
    }

    pub fn set_size(&mut self, size: u64) {
        self.size = size.max(1);
        self.trim();
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    /// First offset a partial resync can start from.
    pub fn window_start(&self) -> u64 {
        self.start
    }

    /// Bytes held (Redis's `repl_backlog_histlen`): at least
    /// `repl-backlog-size` once that much was written, more while a
    /// replica lags behind that.
    pub fn histlen(&self) -> u64 {
        if self.active {
            self.end - self.start
        } else {
            0
        }
    }

    /// Whether a replica can continue from `pos` with what is held.
    pub fn can_continue_from(&self, pos: u64) -> bool {
        self.active && pos >= self.start && pos <= self.end
    }

    /// Appends stream bytes (nothing is kept while no backlog exists).
    pub fn append(&mut self, mut bytes: &[u8]) {
        self.end += bytes.len() as u64;
        if !self.active {
            self.start = self.end;
            return;
        }
        while !bytes.is_empty() {
            let room = match self.blocks.back() {
                Some(b) if b.len() < BLOCK => BLOCK - b.len(),
                _ => {
                    self.blocks.push_back(Vec::with_capacity(BLOCK));
                    BLOCK
                }
            };
            let n = room.min(bytes.len());
            if let Some(b) = self.blocks.back_mut() {
                b.extend_from_slice(&bytes[..n]);
            }
            bytes = &bytes[n..];
        }
        self.trim();
    }

    /// Copies up to `max` bytes from `pos` into `out`; returns how many.
    pub fn read(&self, pos: u64, max: usize, out: &mut Vec<u8>) -> Result<usize, ReadError> {
        if pos < self.start || pos > self.end {
            return Err(ReadError::Gone);
        }
        let mut skip = (pos - self.start) as usize;
        let mut copied = 0;
        for b in &self.blocks {
            if copied >= max {
                break;
            }
            if skip >= b.len() {
                skip -= b.len();
                continue;
            }
            let n = (b.len() - skip).min(max - copied);
            out.extend_from_slice(&b[skip..skip + n]);
            copied += n;
            skip = 0;
        }
        Ok(copied)
    }

    /// Registers (or moves) a replica's next read position.
    pub fn set_reader(&mut self, id: u64, pos: u64) {
        self.readers.insert(id, pos);
        self.trim();
    }

    pub fn remove_reader(&mut self, id: u64) {
        self.readers.remove(&id);
        self.trim();
    }

    /// Bytes the replica `id` still has to be sent (0 before it reads).
    pub fn reader_lag(&self, id: u64) -> u64 {
        self.readers
            .get(&id)
            .map_or(0, |pos| self.end.saturating_sub(*pos))
    }

    /// Bytes a replica at `pos` still has to be sent.
    pub fn lag_of(&self, pos: u64) -> u64 {
        self.end.saturating_sub(pos)
    }

    /// Drops whole blocks no one needs: the blocks after them still hold
    /// `repl-backlog-size` bytes, and every replica has read them.
    fn trim(&mut self) {
        let keep_from = self
            .readers
            .values()
            .copied()
            .min()
            .unwrap_or(u64::MAX)
            .min(self.end.saturating_sub(self.size));
        while let Some(front) = self.blocks.front() {
            let front_end = self.start + front.len() as u64;
            if front_end > keep_from || self.blocks.len() == 1 && front.len() < BLOCK {
                break;
            }
            self.start = front_end;
            self.blocks.pop_front();
        }
        if self.blocks.is_empty() {
            self.start = self.end;
        }
    }

    /// Bytes held (for memory reports).
    pub fn held(&self) -> u64 {
        self.end - self.start
    }

    /// Memory the blocks take (Redis's `repl_buffer_mem`).
    pub fn mem(&self) -> u64 {
        (self.blocks.len() * BLOCK + self.blocks.capacity() * std::mem::size_of::<Vec<u8>>()) as u64
    }

    /// The part of [`Backlog::mem`] beyond what the backlog itself needs
    /// (`repl-backlog-size` and its blocks' bookkeeping): what lagging
    /// replicas hold, which Redis leaves out of `maxmemory`.
    pub fn beyond_backlog(&self) -> u64 {
        let own =
            self.size + (self.size / BLOCK as u64 + 1) * std::mem::size_of::<Vec<u8>>() as u64;
        self.mem().saturating_sub(own)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(b: &Backlog, pos: u64) -> Result<Vec<u8>, ReadError> {
        let mut v = Vec::new();
        b.read(pos, usize::MAX, &mut v)?;
        Ok(v)
    }

    #[test]
    fn nothing_is_kept_before_activation() {
        let mut b = Backlog::new(100);
        b.append(b"hello");
        assert_eq!(b.end(), 5);
        assert!(!b.can_continue_from(0));
        b.activate();
        b.append(b"world");
        assert_eq!(read_all(&b, 5).unwrap(), b"world");
        assert_eq!(read_all(&b, 0), Err(ReadError::Gone));
        assert!(b.can_continue_from(5) && b.can_continue_from(10));
        assert_eq!(b.histlen(), 5);
    }

    #[test]
    fn the_window_follows_the_size_and_readers_keep_their_bytes() {
        let mut b = Backlog::new(BLOCK as u64);
        b.activate();
        let chunk = vec![7u8; 1000];
        b.set_reader(1, 0);
        for _ in 0..100 {
            b.append(&chunk);
        }
        // The slow reader still gets everything from 0, and what it
        // keeps serves partial resyncs too, as in Redis 7.
        assert_eq!(read_all(&b, 0).unwrap().len(), 100_000);
        assert!(b.can_continue_from(0));
        assert_eq!(b.histlen(), 100_000);
        // Once the reader moves on, old blocks go: what is left holds
        // at least the backlog's size, less than a block more.
        b.set_reader(1, 100_000);
        let held = b.held();
        assert!((BLOCK as u64..2 * BLOCK as u64).contains(&held), "{held}");
        assert_eq!(b.histlen(), held);
        assert!(!b.can_continue_from(0));
        assert!(b.can_continue_from(100_000 - BLOCK as u64));
        assert_eq!(read_all(&b, 100_000 - BLOCK as u64).unwrap().len(), BLOCK);
        b.remove_reader(1);
        assert!(b.held() >= BLOCK as u64);
    }

    #[test]
    fn reads_span_blocks_and_respect_max() {
        let mut b = Backlog::new(1 << 20);
        b.activate();
        let data: Vec<u8> = (0..40_000u32).map(|i| (i % 251) as u8).collect();
        b.append(&data);
        let mut out = Vec::new();
        assert_eq!(b.read(10_000, 20_000, &mut out), Ok(20_000));
        assert_eq!(out, &data[10_000..30_000]);
        out.clear();
        assert_eq!(b.read(40_000, 10, &mut out), Ok(0));
        assert_eq!(b.read(40_001, 10, &mut out), Err(ReadError::Gone));
    }

    #[test]
    fn reset_starts_over_at_an_offset() {
        let mut b = Backlog::new(100);
        b.activate();
        b.append(b"abc");
        b.reset_to(1000);
        assert_eq!(b.end(), 1000);
        b.append(b"xy");
        assert_eq!(read_all(&b, 1000).unwrap(), b"xy");
        assert!(b.can_continue_from(1000));
    }
}
