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
    /// Effects of writers that locked their slot before the current AOF
    /// rewrite began: they belong to the previous incremental file.
    pub old: Vec<u8>,
    old_last_db: Option<usize>,
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

    fn select_old(&mut self, db: usize) {
        if self.old_last_db != Some(db) {
            let mut b = itoa::Buffer::new();
            encode_command(
                &[b"SELECT".as_slice(), b.format(db).as_bytes()],
                &mut self.old,
            );
            self.old_last_db = Some(db);
        }
    }

    /// Starts a new file: the current stream becomes the "old" one.
    pub fn switch(&mut self) -> Vec<u8> {
        self.old_last_db = self.last_db;
        self.last_db = None;
        std::mem::take(&mut self.buf)
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
    /// Wake the writer on every append (appendfsync always); otherwise it
    /// polls, which saves a futex wake-up per write.
    eager: AtomicBool,
    inner: Mutex<LogBuf>,
    /// Wakes the AOF writer thread when the buffer gains bytes.
    pub wake: Condvar,
    /// Bytes durably written (fsynced) so far, for `appendfsync always`.
    pub synced: AtomicU64,
    /// AOF rewrite generation; bumped when a rewrite starts.
    pub gen: AtomicU64,
    /// A rewrite is taking its per-slot snapshot.
    pub rewriting: AtomicBool,
    /// Where slot snapshots go during a rewrite.
    pub snap_tx: Mutex<Option<std::sync::mpsc::Sender<Vec<u8>>>>,
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

    pub fn set_eager(&self, on: bool) {
        self.eager.store(on, Ordering::SeqCst);
    }

    fn wake_writer(&self) {
        if self.eager.load(Ordering::Relaxed) {
            self.wake.notify_one();
        }
    }

    pub fn set_active(&self, on: bool) {
        self.active.store(on, Ordering::SeqCst);
    }

    /// Appends one command; returns the log offset after it.
    pub fn append<A: AsRef<[u8]>>(&self, db: usize, args: &[A]) -> u64 {
        self.append_gen(db, u64::MAX, args)
    }

    /// Appends one command made under a slot lock taken in generation
    /// `gen`: if a rewrite started since, it goes to the previous file.
    pub fn append_gen<A: AsRef<[u8]>>(&self, db: usize, gen: u64, args: &[A]) -> u64 {
        let mut g = self.inner.lock();
        if gen < self.gen.load(Ordering::SeqCst) {
            let before = g.old.len();
            g.select_old(db);
            encode_command(args, &mut g.old);
            g.offset += (g.old.len() - before) as u64;
            let off = g.offset;
            drop(g);
            self.wake_writer();
            return off;
        }
        let before = g.buf.len();
        g.select(db);
        encode_command(args, &mut g.buf);
        g.offset += (g.buf.len() - before) as u64;
        let off = g.offset;
        drop(g);
        self.wake_writer();
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
        self.wake_writer();
        off
    }

    pub fn offset(&self) -> u64 {
        self.inner.lock().offset
    }

    /// Runs `f` with the buffer locked (the writer swaps it out this way).
    pub fn with_buf<R>(&self, f: impl FnOnce(&mut LogBuf) -> R) -> R {
        f(&mut self.inner.lock())
    }

    /// Waits up to `timeout` for bytes, then takes them:
    /// (current-file bytes, previous-file bytes, offset).
    pub fn take(&self, timeout: std::time::Duration) -> (Vec<u8>, Vec<u8>, u64) {
        let mut g: MutexGuard<LogBuf> = self.inner.lock();
        if g.buf.is_empty() && g.old.is_empty() {
            self.wake.wait_for(&mut g, timeout);
        }
        let off = g.offset;
        (std::mem::take(&mut g.buf), std::mem::take(&mut g.old), off)
    }

    /// Starts a rewrite generation: returns the bytes still owed to the
    /// current file; later appends go to the next one.
    pub fn begin_rewrite(&self) -> Vec<u8> {
        let mut g = self.inner.lock();
        let pending = g.switch();
        // `rewriting` before `gen`: a writer that sees the new generation
        // must also see that it has to snapshot its slot.
        self.rewriting.store(true, Ordering::SeqCst);
        self.gen.fetch_add(1, Ordering::SeqCst);
        pending
    }
}
