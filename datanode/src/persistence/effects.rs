//! The effect log: every write appends the commands that reproduce its
//! effect (relative TTLs made absolute, expirations as DEL) while the slot
//! lock is still held, so the log's order agrees with each key's history.
//! The AOF writer drains it; replication will read the same stream.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use parking_lot::{Condvar, Mutex, MutexGuard};

use crate::resp::parse::encode_command;

#[derive(Default)]
pub struct LogBuf {
    /// Encoded commands not yet taken by the writer.
    pub buf: Vec<u8>,
    /// The database the last appended command ran in.
    last_db: Option<usize>,
    /// Total bytes ever appended (the replication offset).
    pub offset: u64,
}

impl LogBuf {
    fn select(&mut self, db: usize) {
        if self.last_db != Some(db) {
            let mut b = itoa::Buffer::new();
            encode_command(
                &[b"SELECT".as_slice(), b.format(db).as_bytes()],
                &mut self.buf,
            );
            self.last_db = Some(db);
        }
    }

    /// Forgets the current database so the next append re-selects it
    /// (after switching to a new file).
    pub fn reset_db(&mut self) {
        self.last_db = None;
    }
}

#[derive(Default)]
pub struct EffectLog {
    active: AtomicBool,
    inner: Mutex<LogBuf>,
    /// Wakes the AOF writer thread when the buffer gains bytes.
    pub wake: Condvar,
    /// Bytes durably written (fsynced) so far, for `appendfsync always`.
    pub synced: AtomicU64,
    /// Wakes connections waiting for `synced` to advance.
    pub synced_notify: tokio::sync::Notify,
}

impl EffectLog {
    /// Whether anything consumes the log; when not, writes skip building
    /// their effects entirely.
    #[inline]
    pub fn is_active(&self) -> bool {
        self.active.load(Ordering::Relaxed)
    }

    pub fn set_active(&self, on: bool) {
        self.active.store(on, Ordering::SeqCst);
    }

    /// Appends one command; returns the log offset after it.
    pub fn append<A: AsRef<[u8]>>(&self, db: usize, args: &[A]) -> u64 {
        let mut g = self.inner.lock();
        let before = g.buf.len();
        g.select(db);
        encode_command(args, &mut g.buf);
        g.offset += (g.buf.len() - before) as u64;
        let off = g.offset;
        drop(g);
        self.wake.notify_one();
        off
    }

    /// Appends already-encoded commands (e.g. a whole MULTI/EXEC block).
    pub fn append_raw(&self, db: usize, encoded: &[u8]) -> u64 {
        let mut g = self.inner.lock();
        let before = g.buf.len();
        g.select(db);
        g.buf.extend_from_slice(encoded);
        g.offset += (g.buf.len() - before) as u64;
        let off = g.offset;
        drop(g);
        self.wake.notify_one();
        off
    }

    pub fn offset(&self) -> u64 {
        self.inner.lock().offset
    }

    /// Runs `f` with the buffer locked (the writer swaps it out this way).
    pub fn with_buf<R>(&self, f: impl FnOnce(&mut LogBuf) -> R) -> R {
        f(&mut self.inner.lock())
    }

    /// Waits up to `timeout` for bytes, then takes them: (bytes, offset).
    pub fn take(&self, timeout: std::time::Duration) -> (Vec<u8>, u64) {
        let mut g: MutexGuard<LogBuf> = self.inner.lock();
        if g.buf.is_empty() {
            self.wake.wait_for(&mut g, timeout);
        }
        let off = g.offset;
        (std::mem::take(&mut g.buf), off)
    }
}
