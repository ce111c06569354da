//! The effect log: every write appends the commands that reproduce its
//! effect (relative TTLs made absolute, expirations as DEL) while the slot
//! lock is still held, so the log's order agrees with each key's history.
//! The AOF writer drains it; the same effects, in the same order, form the
//! replication stream that replicas and the backlog receive.

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use parking_lot::{Condvar, Mutex, MutexGuard};

use crate::replication::backlog::Backlog;
use crate::resp::parse::encode_command;

thread_local! {
    /// The replication offset after this thread's last append (WAIT).
    static LAST_REPL: Cell<u64> = const { Cell::new(0) };
    /// The AOF offset after this thread's last append: what the reply to
    /// the command that made it waits to see written.
    static LAST_AOF: Cell<u64> = const { Cell::new(0) };
    /// Encoding space, so an effect is encoded once for both consumers.
    static SCRATCH: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// The replication offset just after this thread's last logged effect.
pub fn last_repl_offset() -> u64 {
    LAST_REPL.with(|c| c.get())
}

/// The AOF offset just after this thread's last logged effect.
pub fn last_aof_offset() -> u64 {
    LAST_AOF.with(|c| c.get())
}

/// Where an effect goes: the AOF, the replicas, or both (a script's
/// `redis.set_repl` narrows it for the commands it calls next).
pub const TO_AOF: u8 = 1;
pub const TO_REPLICAS: u8 = 2;
pub const TO_ALL: u8 = TO_AOF | TO_REPLICAS;

thread_local! {
    /// Where the effects of the command running on this thread go.
    static TARGETS: Cell<u8> = const { Cell::new(TO_ALL) };
}

/// Sets where the effects of the commands this thread runs next go, until
/// set again ([`TO_ALL`] after the command that set it).
pub fn set_targets(t: u8) {
    TARGETS.with(|c| c.set(t & TO_ALL));
}

fn targets() -> u8 {
    TARGETS.with(|c| c.get())
}

/// Encoded commands for one consumer, with the databases they start and
/// leave the stream in.
#[derive(Clone, Default)]
struct Side {
    buf: Vec<u8>,
    first_db: Option<usize>,
    last_db: Option<usize>,
}

impl Side {
    fn push(&mut self, db: usize, last_db: usize, enc: &[u8]) {
        match self.last_db {
            None => self.first_db = Some(db),
            Some(d) if d != db => {
                let mut b = itoa::Buffer::new();
                encode_command(
                    &[b"SELECT".as_slice(), b.format(db).as_bytes()],
                    &mut self.buf,
                );
            }
            _ => {}
        }
        self.last_db = Some(last_db);
        self.buf.extend_from_slice(enc);
    }
}

/// Effects of a transaction being executed on this thread, gathered so
/// they can be logged as one MULTI … EXEC block.
struct Capture {
    /// What every consumer gets; the AOF's part once split.
    all: Side,
    /// The replicas' part, once an effect went to one consumer only.
    repl: Option<Side>,
    /// Commands gathered (SELECTs aside) per target (index = targets):
    /// one is logged bare, as Redis wraps only transactions of several.
    ops: [usize; 4],
}

/// Starts gathering this thread's effects (EXEC).
pub fn begin_capture() {
    CAPTURE.with(|c| {
        *c.borrow_mut() = Some(Capture {
            all: Side::default(),
            repl: None,
            ops: [0; 4],
        })
    });
}

/// Tries to add an encoded effect to the current capture; false when none
/// is on.
fn capture(db: usize, last_db: usize, enc: &[u8], ops: usize, to: u8) -> bool {
    CAPTURE.with(|c| {
        let mut c = c.borrow_mut();
        let Some(cap) = c.as_mut() else {
            return false;
        };
        if to == 0 {
            return true;
        }
        if to != TO_ALL && cap.repl.is_none() {
            // From here on the consumers' streams differ.
            cap.repl = Some(cap.all.clone());
        }
        if to & TO_AOF != 0 {
            cap.all.push(db, last_db, enc);
        }
        // Unsplit, the replicas share the AOF's buffer, pushed above.
        if let (true, Some(r)) = (to & TO_REPLICAS != 0, cap.repl.as_mut()) {
            r.push(db, last_db, enc);
        }
        cap.ops[to as usize] += ops;
        true
    })
}

/// The write command running on this thread, when Redis propagates it as
/// the client sent it: its first effect is replaced by the command itself
/// (logged right there, under the locks the effect was made under, so the
/// log keeps each key's order), and its other effects are dropped.
struct Verbatim {
    /// A command is running (the buffer is kept between commands).
    active: bool,
    db: usize,
    encoded: Vec<u8>,
    logged: bool,
}

thread_local! {
    /// A replica applying its master's stream: the bytes of the command
    /// being applied, passed on at its first effect, under the locks that
    /// effect is made under, so a snapshot's offset and its data agree.
    static MASTER_RAW: std::cell::RefCell<Option<Vec<u8>>> = const { std::cell::RefCell::new(None) };
    static CAPTURE: std::cell::RefCell<Option<Capture>> = const { std::cell::RefCell::new(None) };
    static VERBATIM: std::cell::RefCell<Option<Verbatim>> = const { std::cell::RefCell::new(None) };
}

/// A replica is about to apply `raw` (its master's bytes for one command,
/// or a whole transaction): they join the stream at the command's first
/// effect, or at [`EffectLog::end_master_command`] if it has none.
pub fn begin_master_command(raw: Vec<u8>) {
    MASTER_RAW.with(|m| *m.borrow_mut() = Some(raw));
}

/// A write command that Redis propagates as sent begins on this thread
/// (in `db`): if it changes anything, the log gets `args` in place of its
/// effects. Commands Redis rewrites (relative TTLs made absolute, random
/// or blocking pops made explicit…) do not call this: their handlers log
/// the rewritten form.
pub fn begin_verbatim<'a>(db: usize, n: usize, args: impl Iterator<Item = &'a [u8]>) {
    VERBATIM.with(|v| {
        let mut v = v.borrow_mut();
        // The buffer is kept from command to command.
        let mut encoded = v.take().map(|old| old.encoded).unwrap_or_default();
        encoded.clear();
        crate::resp::parse::encode_command_iter(n, args, &mut encoded);
        *v = Some(Verbatim {
            active: true,
            db,
            encoded,
            logged: false,
        });
    });
}

/// Ends the verbatim command on this thread (its buffer stays for the
/// next one).
pub fn end_verbatim() {
    VERBATIM.with(|v| {
        if let Some(cur) = v.borrow_mut().as_mut() {
            cur.active = false;
        }
    });
}

/// `aof-timestamp-enabled`: the AOF carries `#TS:<unix seconds>` lines,
/// one before the first command of each new second, as Redis writes them
/// for point-in-time recovery (`redis-check-aof --truncate-to-timestamp`).
pub static AOF_TIMESTAMPS: AtomicBool = AtomicBool::new(false);

/// The `#TS:` annotation for `secs`.
pub fn timestamp_annotation(secs: i64, out: &mut Vec<u8>) {
    let mut b = itoa::Buffer::new();
    out.extend_from_slice(b"#TS:");
    out.extend_from_slice(b.format(secs).as_bytes());
    out.extend_from_slice(b"\r\n");
}

pub struct LogBuf {
    /// Encoded commands not yet taken by the writer.
    pub buf: Vec<u8>,
    /// The database the last appended command ran in.
    last_db: Option<usize>,
    /// Effects of writers that locked their slot before the current AOF
    /// rewrite began: they belong to the previous incremental file.
    pub old: Vec<u8>,
    old_last_db: Option<usize>,
    /// Total bytes ever appended to the AOF stream.
    pub offset: u64,
    /// The replication stream (and backlog).
    pub repl: Backlog,
    /// The database the replication stream last selected.
    pub repl_last_db: Option<usize>,
    /// The second of the last `#TS:` annotation.
    ts_last: i64,
}

impl Default for LogBuf {
    fn default() -> Self {
        LogBuf {
            buf: Vec::new(),
            last_db: None,
            old: Vec::new(),
            old_last_db: None,
            offset: 0,
            repl: Backlog::new(1 << 20),
            repl_last_db: None,
            ts_last: 0,
        }
    }
}

impl LogBuf {
    /// Appends encoded commands run in `db` (through `last_db`, when the
    /// stream ends in another) to the replication stream.
    pub fn push_repl(&mut self, db: usize, last_db: usize, encoded: &[u8]) {
        if self.repl_last_db != Some(db) {
            let mut sel = Vec::with_capacity(24);
            let mut b = itoa::Buffer::new();
            encode_command(&[b"SELECT".as_slice(), b.format(db).as_bytes()], &mut sel);
            self.repl.append(&sel);
        }
        self.repl.append(encoded);
        self.repl_last_db = Some(last_db);
        let end = self.repl.end();
        LAST_REPL.with(|c| c.set(end));
    }

    /// A `#TS:` line ahead of the next command when the second changed
    /// (before its SELECT, as Redis's feedAppendOnlyFile).
    fn annotate(&mut self, old: bool) {
        if !AOF_TIMESTAMPS.load(Ordering::Relaxed) {
            return;
        }
        let secs = crate::keyspace::now_ms() / 1000;
        if secs > self.ts_last {
            self.ts_last = secs;
            timestamp_annotation(secs, if old { &mut self.old } else { &mut self.buf });
        }
    }

    fn select(&mut self, db: usize) {
        self.annotate(false);
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
        self.annotate(true);
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
    /// Someone consumes effects (the AOF or replication).
    active: AtomicBool,
    /// The AOF consumes them.
    aof: AtomicBool,
    /// Replication consumes this node's own effects (a master). A replica
    /// passes its master's stream on as received instead.
    repl: AtomicBool,
    /// A replica sender is waiting for bytes.
    pub repl_waiting: AtomicBool,
    /// Wakes replica senders when the stream grows.
    pub repl_notify: tokio::sync::Notify,
    /// Wake the writer on every append (appendfsync always); otherwise it
    /// polls, which saves a futex wake-up per write.
    eager: AtomicBool,
    inner: Mutex<LogBuf>,
    /// Wakes the AOF writer thread when the buffer gains bytes.
    pub wake: Condvar,
    /// Bytes acknowledged as written so far: fsynced under `appendfsync
    /// always` (unless no-appendfsync-on-rewrite holds the fsync back),
    /// written under the other policies.
    pub synced: AtomicU64,
    /// The writer holds written bytes not yet fsynced (a forced flush
    /// waits for this to clear).
    pub unsynced: AtomicBool,
    /// The writer's failed fsyncs (a forced flush stops waiting at one).
    pub fsync_failures: AtomicU64,
    /// AOF rewrite generation; bumped when a rewrite starts.
    pub gen: AtomicU64,
    /// A rewrite is taking its per-slot snapshot.
    pub rewriting: AtomicBool,
    /// Where slot snapshots go during a rewrite.
    pub snap_tx: Mutex<Option<std::sync::mpsc::Sender<Vec<u8>>>>,
    /// The snapshot being taken is an RDB (BGSAVE), not an AOF rewrite.
    pub snap_rdb: AtomicBool,
    /// Bytes of slots the running snapshot copied because a writer got to
    /// them before its sweep: what the writes cost the snapshot in memory,
    /// as the pages a forked child's parent copies cost Redis (INFO
    /// current_cow_size). Reset when a snapshot begins.
    pub cow_bytes: AtomicU64,
    /// The snapshot covers only these slots (an atomic slot migration's);
    /// None for all of them.
    pub snap_only: Mutex<Option<std::sync::Arc<Vec<bool>>>>,
    /// One snapshot (AOF rewrite or BGSAVE) at a time.
    pub snapshot_busy: AtomicBool,
    /// Buffers of a slot migration's snapshot, given back once sent, so
    /// chunks reuse memory already mapped (fresh pages cost more than the
    /// copy into them).
    snap_spare: Mutex<Vec<Vec<u8>>>,
    /// Wakes connections waiting for `synced` to advance.
    pub synced_notify: tokio::sync::Notify,
}

impl EffectLog {
    /// A cleared buffer for a snapshot chunk.
    pub fn spare_buf(&self) -> Vec<u8> {
        self.snap_spare.lock().pop().unwrap_or_default()
    }

    /// Gives a sent chunk's buffer back (a few, of bounded size, are kept).
    pub fn give_back(&self, mut buf: Vec<u8>) {
        const KEEP: usize = 8;
        const MAX_CAP: usize = 16 << 20;
        if buf.capacity() > MAX_CAP {
            return;
        }
        let mut spare = self.snap_spare.lock();
        if spare.len() < KEEP {
            buf.clear();
            spare.push(buf);
        }
    }

    /// Frees the kept buffers (the snapshot is over).
    pub fn drop_spares(&self) {
        self.snap_spare.lock().clear();
    }

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

    /// Turns the AOF's consumption of effects on or off.
    pub fn set_active(&self, on: bool) {
        self.aof.store(on, Ordering::SeqCst);
        self.recompute_active();
    }

    /// Turns the feeding of this node's own effects into the replication
    /// stream on or off.
    pub fn set_repl(&self, on: bool) {
        self.repl.store(on, Ordering::SeqCst);
        self.recompute_active();
    }

    fn recompute_active(&self) {
        let on = self.aof.load(Ordering::SeqCst) || self.repl.load(Ordering::SeqCst);
        self.active.store(on, Ordering::SeqCst);
    }

    /// Stops every consumer (replaying a file is not a change); returns
    /// what to give [`EffectLog::resume`].
    pub fn suspend(&self) -> (bool, bool) {
        let was = (
            self.aof.load(Ordering::SeqCst),
            self.repl.load(Ordering::SeqCst),
        );
        self.aof.store(false, Ordering::SeqCst);
        self.repl.store(false, Ordering::SeqCst);
        self.recompute_active();
        was
    }

    pub fn resume(&self, was: (bool, bool)) {
        self.aof.store(was.0, Ordering::SeqCst);
        self.repl.store(was.1, Ordering::SeqCst);
        self.recompute_active();
    }

    pub fn aof_on(&self) -> bool {
        self.aof.load(Ordering::Relaxed)
    }

    /// Wakes replica senders if one waits.
    fn wake_senders(&self) {
        if self.repl_waiting.load(Ordering::Relaxed)
            && self.repl_waiting.swap(false, Ordering::AcqRel)
        {
            self.repl_notify.notify_waiters();
        }
    }

    /// Passes bytes of the master's stream on (a replica: to its backlog
    /// and its own replicas) exactly as received, so offsets stay equal.
    pub fn append_repl_raw(&self, bytes: &[u8]) {
        let mut g = self.inner.lock();
        g.repl.append(bytes);
        // The master's stream selects its own databases.
        g.repl_last_db = None;
        drop(g);
        self.wake_senders();
    }

    /// Adds bytes to the stream alone (the master's periodic PING: not a
    /// change, so not for the AOF), in whatever database it is in.
    pub fn append_repl_only(&self, bytes: &[u8]) {
        self.inner.lock().repl.append(bytes);
        self.wake_senders();
    }

    /// The replication offset (Redis's `master_repl_offset`).
    pub fn repl_offset(&self) -> u64 {
        self.inner.lock().repl.end()
    }

    /// Appends one command; returns the log offset after it.
    pub fn append<A: AsRef<[u8]>>(&self, db: usize, args: &[A]) -> u64 {
        self.append_gen(db, u64::MAX, args)
    }

    /// Appends one command made under a slot lock taken in generation
    /// `gen`: if a rewrite started since, it goes to the previous file.
    pub fn append_gen<A: AsRef<[u8]>>(&self, db: usize, gen: u64, args: &[A]) -> u64 {
        // A command propagated as sent: its first effect logs the command
        // instead, the others nothing (the effect is not even encoded).
        let verbatim = VERBATIM.with(|v| {
            let mut v = v.borrow_mut();
            match v.as_mut() {
                Some(cur) if cur.active && !cur.logged => {
                    cur.logged = true;
                    let off = self.append_one(cur.db, gen, &cur.encoded, targets());
                    Some(off)
                }
                Some(cur) if cur.active => Some(0),
                _ => None,
            }
        });
        if let Some(off) = verbatim {
            return off;
        }
        SCRATCH.with(|sc| {
            let mut enc = sc.borrow_mut();
            enc.clear();
            encode_command(args, &mut enc);
            self.append_one(db, gen, &enc, targets())
        })
    }

    /// Appends one effect now, whatever command runs (a key found expired
    /// is deleted before the command that found it, as Redis propagates).
    /// It goes to every consumer, whatever a script chose for its own
    /// commands (as Redis propagates deletions).
    pub fn append_now<A: AsRef<[u8]>>(&self, db: usize, gen: u64, args: &[A]) -> u64 {
        SCRATCH.with(|sc| {
            let mut enc = sc.borrow_mut();
            enc.clear();
            encode_command(args, &mut enc);
            self.append_one(db, gen, &enc, TO_ALL)
        })
    }

    fn append_one(&self, db: usize, gen: u64, enc: &[u8], to: u8) -> u64 {
        if capture(db, db, enc, 1, to) {
            return 0;
        }
        self.append_to(db, db, gen, enc, to)
    }

    /// PUBLISH in standalone mode reaches replicas (not the AOF), as in
    /// Redis; inside a transaction it joins the transaction's block.
    pub fn append_repl_command<A: AsRef<[u8]>>(&self, db: usize, args: &[A]) {
        if !self.repl.load(Ordering::Relaxed) {
            return;
        }
        let to = targets() & TO_REPLICAS;
        if to == 0 {
            return;
        }
        let mut enc = Vec::new();
        encode_command(args, &mut enc);
        if capture(db, db, &enc, 1, to) {
            return;
        }
        let mut g = self.inner.lock();
        g.push_repl(db, db, &enc);
        drop(g);
        self.wake_senders();
    }

    /// Appends encoded commands that start in `first_db` and leave the
    /// stream in `last_db` to the consumers in `to`.
    fn append_to(&self, first_db: usize, last_db: usize, gen: u64, enc: &[u8], to: u8) -> u64 {
        let aof = to & TO_AOF != 0 && self.aof.load(Ordering::Relaxed);
        let repl = to & TO_REPLICAS != 0 && self.repl.load(Ordering::Relaxed);
        let mut g = self.inner.lock();
        let raw = MASTER_RAW.with(|m| m.borrow_mut().take());
        if let Some(raw) = &raw {
            g.repl.append(raw);
            g.repl_last_db = None;
        }
        let mut off = g.offset;
        if aof {
            if gen < self.gen.load(Ordering::SeqCst) {
                let before = g.old.len();
                g.select_old(first_db);
                g.old.extend_from_slice(enc);
                g.old_last_db = Some(last_db);
                g.offset += (g.old.len() - before) as u64;
            } else {
                let before = g.buf.len();
                g.select(first_db);
                g.buf.extend_from_slice(enc);
                g.last_db = Some(last_db);
                g.offset += (g.buf.len() - before) as u64;
            }
            off = g.offset;
            LAST_AOF.with(|c| c.set(off));
        }
        if repl {
            g.push_repl(first_db, last_db, enc);
        }
        drop(g);
        if aof {
            self.wake_writer();
        }
        if repl || raw.is_some() {
            self.wake_senders();
        }
        off
    }

    /// Ends a command applied from the master: its bytes join the stream
    /// now if no effect took them.
    pub fn end_master_command(&self) {
        if let Some(raw) = MASTER_RAW.with(|m| m.borrow_mut().take()) {
            self.append_repl_raw(&raw);
        }
    }

    /// Appends already-encoded commands (e.g. a whole MULTI/EXEC block).
    pub fn append_raw(&self, db: usize, encoded: &[u8]) -> u64 {
        self.append_one(db, u64::MAX, encoded, targets())
    }

    /// Ends this thread's capture and logs what it gathered, wrapped in
    /// MULTI/EXEC so a torn write cannot leave half a transaction.
    pub fn end_capture(&self, gen: u64) -> u64 {
        let Some(cap) = CAPTURE.with(|c| c.borrow_mut().take()) else {
            return 0;
        };
        // Commands counted as Redis counts them: those that reach a
        // consumer that is on.
        let (aof, repl) = (
            self.aof.load(Ordering::Relaxed),
            self.repl.load(Ordering::Relaxed),
        );
        let ops = if aof || repl {
            cap.ops[TO_ALL as usize]
        } else {
            0
        } + if aof { cap.ops[TO_AOF as usize] } else { 0 }
            + if repl {
                cap.ops[TO_REPLICAS as usize]
            } else {
                0
            };
        let Some(repl_side) = cap.repl else {
            return self.log_side(&cap.all, None, ops, gen, TO_ALL);
        };
        // Split by `redis.set_repl`: each consumer gets its own commands,
        // and both get MULTI/EXEC when there are several in all (Redis).
        let off = self.log_side(&cap.all, repl_side.first_db, ops, gen, TO_AOF);
        self.log_side(&repl_side, cap.all.first_db, ops, gen, TO_REPLICAS);
        off
    }

    /// Logs one side of a capture to `to`, wrapped in MULTI/EXEC when the
    /// capture holds several commands (`other_db`: where the other side
    /// starts, for a side that got none).
    fn log_side(&self, side: &Side, other_db: Option<usize>, ops: usize, gen: u64, to: u8) -> u64 {
        if ops == 0 {
            return 0;
        }
        if ops == 1 {
            // One command needs no MULTI/EXEC around it (Redis 7).
            return match (side.first_db, side.last_db) {
                (Some(first), Some(last)) => self.append_to(first, last, gen, &side.buf, to),
                _ => 0,
            };
        }
        let Some(first) = side.first_db.or(other_db) else {
            return 0;
        };
        let last = side.last_db.unwrap_or(first);
        let mut block = Vec::with_capacity(side.buf.len() + 32);
        encode_command(&[b"MULTI".as_slice()], &mut block);
        block.extend_from_slice(&side.buf);
        encode_command(&[b"EXEC".as_slice()], &mut block);
        self.append_to(first, last, gen, &block, to)
    }

    pub fn offset(&self) -> u64 {
        self.inner.lock().offset
    }

    /// Runs `f` with the buffer locked (the writer swaps it out this way).
    pub fn with_buf<R>(&self, f: impl FnOnce(&mut LogBuf) -> R) -> R {
        f(&mut self.inner.lock())
    }

    /// Waits up to `timeout` for bytes to take (or a wake-up).
    pub fn wait_for_bytes(&self, timeout: std::time::Duration) {
        let mut g: MutexGuard<LogBuf> = self.inner.lock();
        if g.buf.is_empty() && g.old.is_empty() {
            self.wake.wait_for(&mut g, timeout);
        }
    }

    /// Takes what is logged: (current-file bytes, previous-file bytes,
    /// offset after them).
    pub fn take(&self) -> (Vec<u8>, Vec<u8>, u64) {
        let mut g = self.inner.lock();
        let off = g.offset;
        (std::mem::take(&mut g.buf), std::mem::take(&mut g.old), off)
    }

    /// Bytes the writer took but could not write: back in front of what
    /// was appended since, to be taken again.
    pub fn put_back(&self, old: Vec<u8>, buf: Vec<u8>) {
        let mut g = self.inner.lock();
        if !old.is_empty() {
            let newer = std::mem::replace(&mut g.old, old);
            g.old.extend_from_slice(&newer);
        }
        if !buf.is_empty() {
            let newer = std::mem::replace(&mut g.buf, buf);
            g.buf.extend_from_slice(&newer);
        }
    }

    /// Starts a snapshot generation without switching files (BGSAVE).
    pub fn begin_snapshot(&self) {
        let _g = self.inner.lock();
        self.cow_bytes.store(0, Ordering::Relaxed);
        self.rewriting.store(true, Ordering::SeqCst);
        self.gen.fetch_add(1, Ordering::SeqCst);
    }

    /// Starts a rewrite generation: returns the bytes still owed to the
    /// current file; later appends go to the next one.
    pub fn begin_rewrite(&self) -> Vec<u8> {
        let mut g = self.inner.lock();
        let pending = g.switch();
        self.cow_bytes.store(0, Ordering::Relaxed);
        // `rewriting` before `gen`: a writer that sees the new generation
        // must also see that it has to snapshot its slot.
        self.rewriting.store(true, Ordering::SeqCst);
        self.gen.fetch_add(1, Ordering::SeqCst);
        pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_put_back_come_before_newer_ones() {
        let log = EffectLog::default();
        log.inner.lock().buf.extend_from_slice(b"one ");
        let (buf, old, _) = log.take();
        assert_eq!(buf, b"one ");
        assert!(old.is_empty());
        // Appended while the writer failed to write what it took.
        log.inner.lock().buf.extend_from_slice(b"two ");
        log.inner.lock().old.extend_from_slice(b"y");
        log.put_back(b"x".to_vec(), buf);
        let (buf, old, _) = log.take();
        assert_eq!(buf, b"one two ");
        assert_eq!(old, b"xy");
    }
}
