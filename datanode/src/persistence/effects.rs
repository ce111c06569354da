//! The effect log: every write appends the commands that reproduce its
//! effect (relative TTLs made absolute, expirations as DEL) while the slot
//! lock is still held, so the log's order agrees with each key's history.
//! The AOF writer drains it; replication will read the same stream.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use parking_lot::{Condvar, Mutex, MutexGuard};

use crate::resp::parse::encode_command;

/// Effects of a transaction being executed on this thread, gathered so
/// they can be logged as one MULTI … EXEC block.
struct Capture {
    buf: Vec<u8>,
    first_db: Option<usize>,
    last_db: Option<usize>,
}

thread_local! {
    static CAPTURE: std::cell::RefCell<Option<Capture>> = const { std::cell::RefCell::new(None) };
}

/// Starts gathering this thread's effects (EXEC).
pub fn begin_capture() {
    CAPTURE.with(|c| {
        *c.borrow_mut() = Some(Capture {
            buf: Vec::new(),
            first_db: None,
            last_db: None,
        })
    });
}

/// Tries to add an effect to the current capture; false when none is on.
fn capture<A: AsRef<[u8]>>(db: usize, args: &[A]) -> bool {
    CAPTURE.with(|c| {
        let mut c = c.borrow_mut();
        let Some(cap) = c.as_mut() else {
            return false;
        };
        match cap.last_db {
            None => cap.first_db = Some(db),
            Some(d) if d != db => {
                let mut b = itoa::Buffer::new();
                encode_command(
                    &[b"SELECT".as_slice(), b.format(db).as_bytes()],
                    &mut cap.buf,
                );
            }
            _ => {}
        }
        cap.last_db = Some(db);
        encode_command(args, &mut cap.buf);
        true
    })
}

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
    /// The snapshot being taken is an RDB (BGSAVE), not an AOF rewrite.
    pub snap_rdb: AtomicBool,
    /// One snapshot (AOF rewrite or BGSAVE) at a time.
    pub snapshot_busy: AtomicBool,
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
        if capture(db, args) {
            return 0;
        }
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

    /// Ends this thread's capture and logs what it gathered, wrapped in
    /// MULTI/EXEC so a torn write cannot leave half a transaction.
    pub fn end_capture(&self, gen: u64) -> u64 {
        let Some(cap) = CAPTURE.with(|c| c.borrow_mut().take()) else {
            return 0;
        };
        let (Some(first), Some(last)) = (cap.first_db, cap.last_db) else {
            return 0;
        };
        let mut block = Vec::with_capacity(cap.buf.len() + 32);
        encode_command(&[b"MULTI".as_slice()], &mut block);
        block.extend_from_slice(&cap.buf);
        encode_command(&[b"EXEC".as_slice()], &mut block);
        let mut g = self.inner.lock();
        let old = gen < self.gen.load(Ordering::SeqCst);
        let before = if old { g.old.len() } else { g.buf.len() };
        if old {
            g.select_old(first);
            g.old.extend_from_slice(&block);
            g.old_last_db = Some(last);
        } else {
            g.select(first);
            g.buf.extend_from_slice(&block);
            g.last_db = Some(last);
        }
        let after = if old { g.old.len() } else { g.buf.len() };
        g.offset += (after - before) as u64;
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

    /// Starts a snapshot generation without switching files (BGSAVE).
    pub fn begin_snapshot(&self) {
        let _g = self.inner.lock();
        self.rewriting.store(true, Ordering::SeqCst);
        self.gen.fetch_add(1, Ordering::SeqCst);
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
