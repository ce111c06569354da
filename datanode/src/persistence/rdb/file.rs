//! RDB files (version 10, as Redis 7.0 writes them): SAVE writes one, and
//! a node started without AOF loads `dir/dbfilename`.

use std::path::Path;
use std::sync::atomic::Ordering;

use super::crc64;
use super::object::{
    read_value, write_key_value, write_len, write_string, DecodeError, Reader, Spill, RDB_VERSION,
};
use crate::keyspace::{Db, Keyspace, SLOTS};

const OP_FUNCTION2: u8 = 245;
const OP_MODULE_AUX: u8 = 247;
const OP_IDLE: u8 = 248;
const OP_FREQ: u8 = 249;
const OP_AUX: u8 = 250;
const OP_RESIZEDB: u8 = 251;
const OP_EXPIRETIME_MS: u8 = 252;
const OP_EXPIRETIME: u8 = 253;
const OP_SELECTDB: u8 = 254;
const OP_EOF: u8 = 255;

#[derive(Debug, thiserror::Error)]
pub enum RdbError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("Wrong signature trying to load DB from file")]
    Signature,
    #[error("Can't handle RDB format version {0}")]
    Version(u32),
    /// Worded as redis-server logs it, which operators and tools grep for.
    #[error("Internal error in RDB reading offset 0 -> RDB CRC error (the file says {stored:016x}, its content sums to {computed:016x})")]
    Checksum { stored: u64, computed: u64 },
    #[error("Internal error in RDB reading offset {offset} -> {what}")]
    Corrupt { offset: usize, what: String },
}

fn aux(out: &mut Vec<u8>, k: &str, v: &[u8]) {
    out.push(OP_AUX);
    write_string(out, k.as_bytes());
    write_string(out, v);
}

/// Appends a slot's entries in RDB form, expired ones too (a master
/// loading the file skips and counts them, as with redis-server's
/// files); returns (keys, expires).
fn encode_entries(
    g: &crate::keyspace::SlotRef,
    out: &mut Vec<u8>,
    spill: &mut Spill,
) -> (usize, usize) {
    let (mut keys, mut expires) = (0, 0);
    g.for_each(|k, v, exp| {
        if let Some(at) = exp {
            out.push(OP_EXPIRETIME_MS);
            out.extend_from_slice(&(at as u64).to_le_bytes());
            expires += 1;
        }
        write_key_value(out, k, v, spill);
        keys += 1;
    });
    (keys, expires)
}

/// A slot's snapshot for BGSAVE: database index, key and expire counts
/// (u32 LE each), then the entries.
pub fn encode_slot_chunk(g: &crate::keyspace::SlotRef) -> Vec<u8> {
    let mut out = vec![0u8; 12];
    let (keys, expires) = encode_entries(g, &mut out, &mut Spill::none());
    out[0..4].copy_from_slice(&(g.db.index as u32).to_le_bytes());
    out[4..8].copy_from_slice(&(keys as u32).to_le_bytes());
    out[8..12].copy_from_slice(&(expires as u32).to_le_bytes());
    out
}

/// Replication state saved with a snapshot (Redis's `repl-stream-db`,
/// `repl-id` and `repl-offset` aux fields): a replica restarted from it
/// continues its master's stream from `offset`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplInfo {
    pub stream_db: u64,
    pub id: String,
    pub offset: u64,
}

/// What an RDB says besides its keys.
#[derive(Default)]
pub struct Aux<'a> {
    /// The RDB preamble of an AOF rewrite (`aof-base` aux = 1).
    pub aof_base: bool,
    pub repl: Option<&'a ReplInfo>,
    /// Slots hidden by an unfinished atomic slot import (see
    /// [`crate::keyspace::Db::hidden_ranges`]): a node restarted from this
    /// file drops what they hold unless it owns them by then.
    pub hidden: Vec<(u16, u16)>,
    /// Function libraries' code, one record each (RDB_OPCODE_FUNCTION2).
    pub functions: Vec<Vec<u8>>,
}

/// Appends one function record per library.
fn write_functions(out: &mut Vec<u8>, codes: &[Vec<u8>]) {
    for c in codes {
        out.push(OP_FUNCTION2);
        write_string(out, c);
    }
}

/// FUNCTION DUMP's payload: the function records, the RDB version and a
/// CRC-64 of everything before it.
pub fn function_payload(codes: &[Vec<u8>]) -> Vec<u8> {
    let mut p = Vec::new();
    write_functions(&mut p, codes);
    p.extend_from_slice(&RDB_VERSION.to_le_bytes());
    let crc = crc64::crc64(&p);
    p.extend_from_slice(&crc.to_le_bytes());
    p
}

/// The library codes in a FUNCTION DUMP payload. Errors are Redis's
/// FUNCTION RESTORE texts.
pub fn read_function_payload(p: &[u8]) -> Result<Vec<Vec<u8>>, String> {
    const BAD: &str = "DUMP payload version or checksum are wrong";
    if p.len() < 10 {
        return Err(BAD.into());
    }
    let footer = &p[p.len() - 10..];
    let ver = u16::from_le_bytes([footer[0], footer[1]]);
    if ver as u32 > RDB_VERSION as u32 || !super::payload_crc_ok(p) {
        return Err(BAD.into());
    }
    let body = &p[..p.len() - 10];
    let mut r = Reader::new(body);
    let mut codes = Vec::new();
    while r.pos < body.len() {
        let t = r.byte().map_err(|_| "can not read data type".to_string())?;
        if t != OP_FUNCTION2 {
            return Err("given type is not a function".into());
        }
        let code = r
            .string()
            .map_err(|_| "Failed loading library payload".to_string())?;
        codes.push(code);
    }
    Ok(codes)
}

/// Assembles an RDB file from per-slot chunks (any order).
pub fn assemble(chunks: Vec<Vec<u8>>, now: i64, aux: &Aux) -> Vec<u8> {
    let mut out = Vec::with_capacity(chunks.iter().map(Vec::len).sum::<usize>() + 4096);
    // Writing into a Vec cannot fail.
    let _ = assemble_to(chunks, now, aux, &mut out);
    out
}

/// [`assemble`], written to `w` as it goes: each chunk is written and
/// freed in turn, so the file never exists whole in memory next to them.
pub fn assemble_to(
    chunks: Vec<Vec<u8>>,
    now: i64,
    aux: &Aux,
    w: &mut impl std::io::Write,
) -> std::io::Result<()> {
    let field = |c: &[u8], i: usize| u32::from_le_bytes([c[i], c[i + 1], c[i + 2], c[i + 3]]);
    let mut chunks: Vec<Option<Vec<u8>>> = chunks
        .into_iter()
        .filter(|c| c.len() >= 12)
        .map(Some)
        .collect();
    // Per database: (keys, expires), from the chunks' headers.
    let mut per_db: std::collections::BTreeMap<u32, (usize, usize)> = Default::default();
    for c in chunks.iter().flatten() {
        let e = per_db.entry(field(c, 0)).or_default();
        e.0 += field(c, 4) as usize;
        e.1 += field(c, 8) as usize;
    }
    let mut file = Checksummed::new(w);
    file.put(&header(now, aux));
    for (db, (keys, expires)) in per_db {
        if keys == 0 {
            continue;
        }
        let mut head = vec![OP_SELECTDB];
        write_len(&mut head, db as u64);
        head.push(OP_RESIZEDB);
        write_len(&mut head, keys as u64);
        write_len(&mut head, expires as u64);
        file.put(&head);
        for slot in chunks.iter_mut() {
            if slot.as_deref().is_some_and(|c| field(c, 0) == db) {
                if let Some(c) = slot.take() {
                    file.put(&c[12..]);
                }
            }
        }
    }
    file.finish()
}

/// Writes an RDB while its snapshot is made (a diskless sync): the header
/// first, then each database in turn, headed by its key counts taken at
/// the cut, and each chunk as it arrives once its database's turn came (a
/// writer may hand over a later database's chunk early: it waits).
pub struct StreamAssembler<'w, W: std::io::Write> {
    file: Checksummed<'w, W>,
    /// (keys, keys with a TTL) per database, at the cut.
    counts: std::collections::BTreeMap<u32, (usize, usize)>,
    current: Option<u32>,
    /// The current database's SELECTDB is written.
    selected: bool,
    early: std::collections::BTreeMap<u32, Vec<Vec<u8>>>,
}

impl<'w, W: std::io::Write> StreamAssembler<'w, W> {
    pub fn new(
        w: &'w mut W,
        now: i64,
        aux: &Aux,
        counts: std::collections::BTreeMap<u32, (usize, usize)>,
    ) -> Self {
        let mut file = Checksummed::new(w);
        file.put(&header(now, aux));
        StreamAssembler {
            file,
            counts,
            current: None,
            selected: false,
            early: Default::default(),
        }
    }

    /// The sweep reached database `db`: its chunks are written from now.
    pub fn begin_db(&mut self, db: u32) {
        self.current = Some(db);
        let (keys, expires) = self.counts.get(&db).copied().unwrap_or_default();
        self.selected = keys > 0;
        if self.selected {
            self.select(db, keys, expires);
        }
        for c in self.early.remove(&db).unwrap_or_default() {
            self.put_current(db, &c);
        }
    }

    /// A chunk of the current database. Counts that said it was empty
    /// (only an estimate when they were not taken at the cut) still get
    /// it its SELECTDB, sized by the chunk.
    fn put_current(&mut self, db: u32, c: &[u8]) {
        if !self.selected {
            let field = |i: usize| u32::from_le_bytes([c[i], c[i + 1], c[i + 2], c[i + 3]]);
            let (keys, expires) = (field(4) as usize, field(8) as usize);
            self.select(db, keys, expires);
            self.selected = true;
        }
        self.file.put(&c[12..]);
    }

    fn select(&mut self, db: u32, keys: usize, expires: usize) {
        let mut head = vec![OP_SELECTDB];
        write_len(&mut head, db as u64);
        head.push(OP_RESIZEDB);
        write_len(&mut head, keys as u64);
        write_len(&mut head, expires as u64);
        self.file.put(&head);
    }

    /// A chunk of the snapshot (see [`assemble`] for its form).
    pub fn chunk(&mut self, c: Vec<u8>) {
        if c.len() < 12 {
            return;
        }
        let db = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        if self.current == Some(db) {
            self.put_current(db, &c);
        } else {
            self.early.entry(db).or_default().push(c);
        }
    }

    /// Ends the file. Chunks of a database whose turn had passed (none
    /// are expected) still go, under their own SELECTDB.
    pub fn finish(mut self) -> std::io::Result<()> {
        for (db, chunks) in std::mem::take(&mut self.early) {
            let field =
                |c: &[u8], i: usize| u32::from_le_bytes([c[i], c[i + 1], c[i + 2], c[i + 3]]);
            let keys = chunks.iter().map(|c| field(c, 4) as usize).sum();
            let expires = chunks.iter().map(|c| field(c, 8) as usize).sum();
            self.select(db, keys, expires);
            for c in chunks {
                self.file.put(&c[12..]);
            }
        }
        self.file.finish()
    }
}

/// The aux field naming hidden slots ("first-last,…"); other servers
/// ignore aux fields they do not know.
const AUX_HIDDEN: &str = "slotkv-hidden-slots";

fn header(now: i64, a: &Aux) -> Vec<u8> {
    let mut out = format!("REDIS{RDB_VERSION:04}").into_bytes();
    aux(
        &mut out,
        "redis-ver",
        crate::command::connection::REDIS_VERSION.as_bytes(),
    );
    aux(&mut out, "redis-bits", b"64");
    aux(&mut out, "ctime", (now / 1000).to_string().as_bytes());
    aux(
        &mut out,
        "used-mem",
        crate::memory::used().to_string().as_bytes(),
    );
    if let Some(r) = a.repl {
        aux(
            &mut out,
            "repl-stream-db",
            r.stream_db.to_string().as_bytes(),
        );
        aux(&mut out, "repl-id", r.id.as_bytes());
        aux(&mut out, "repl-offset", r.offset.to_string().as_bytes());
    }
    if !a.hidden.is_empty() {
        let text: Vec<String> = a.hidden.iter().map(|(f, l)| format!("{f}-{l}")).collect();
        aux(&mut out, AUX_HIDDEN, text.join(",").as_bytes());
    }
    aux(&mut out, "aof-base", if a.aof_base { b"1" } else { b"0" });
    write_functions(&mut out, &a.functions);
    out
}

fn parse_hidden(v: &str) -> Vec<(u16, u16)> {
    v.split(',')
        .filter_map(|r| {
            let (f, l) = r.split_once('-')?;
            let (f, l) = (f.parse::<u16>().ok()?, l.parse::<u16>().ok()?);
            (f <= l && (l as usize) < SLOTS).then_some((f, l))
        })
        .collect()
}

/// Writes the whole dataset to `w`. Every slot of every database is
/// locked (in the global order) for the duration, so the file is one point
/// in time, as SAVE promises. Each slot's entries go out as they are
/// encoded, through one reused buffer: the file never exists whole in
/// memory. RESIZEDB's counts, which come first, are taken from the expiry
/// tables alone.
pub fn serialize_to(
    ks: &Keyspace,
    now: i64,
    repl_at_cut: impl FnOnce() -> (Option<ReplInfo>, Vec<Vec<u8>>),
    w: &mut impl std::io::Write,
) -> std::io::Result<()> {
    let mut dbs: Vec<&Db> = ks.existing().collect();
    dbs.sort_by_key(|d| d.index);
    let guards: Vec<Vec<crate::keyspace::SlotRef>> = dbs
        .iter()
        .map(|db| (0..SLOTS as u16).map(|s| db.lock_slot(s, now)).collect())
        .collect();
    // Every slot is held: the replication offset read now is exactly the
    // one the data stands for.
    let (repl, functions) = repl_at_cut();
    let aux = Aux {
        repl: repl.as_ref(),
        hidden: ks.db(0).hidden_ranges(),
        functions,
        ..Aux::default()
    };
    let mut file = Checksummed::new(w);
    file.put(&header(now, &aux));
    let mut buf = Vec::new();
    for (db, slots) in dbs.iter().zip(&guards) {
        let (keys, expires) = slots
            .iter()
            .map(|g| g.counts())
            .fold((0, 0), |(k, e), (k1, e1)| (k + k1, e + e1));
        if keys == 0 {
            continue;
        }
        buf.clear();
        buf.push(OP_SELECTDB);
        write_len(&mut buf, db.index as u64);
        buf.push(OP_RESIZEDB);
        write_len(&mut buf, keys as u64);
        write_len(&mut buf, expires as u64);
        file.put(&buf);
        for g in slots {
            buf.clear();
            encode_entries(g, &mut buf, &mut Spill::to(&mut |b| file.take(b)));
            file.put(&buf);
            if let Some(e) = file.failed.take() {
                return Err(e);
            }
            // rdb-key-save-delay (a testing knob): as Redis's SAVE, this
            // one holds everything while it waits.
            if super::KEY_SAVE_DELAY.load(std::sync::atomic::Ordering::Relaxed) > 0 {
                for _ in 0..g.len() {
                    super::key_delay(&super::KEY_SAVE_DELAY);
                }
            }
        }
    }
    file.finish()
}

/// `rdbchecksum`: files get a CRC-64 and are checked against theirs when
/// loaded. Off, as in Redis, a file ends with 8 zero bytes and loading
/// checks nothing (DUMP payloads keep theirs either way).
pub static CHECKSUM: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(true);

fn checksums() -> bool {
    CHECKSUM.load(std::sync::atomic::Ordering::Relaxed)
}

/// A file being written with its running CRC-64 (unless `rdbchecksum` is
/// off). The first error is kept and later writes skipped (a spilled value
/// cannot return one).
struct Checksummed<'w, W: std::io::Write> {
    w: &'w mut W,
    crc: Option<crc64::Running>,
    failed: Option<std::io::Error>,
}

impl<'w, W: std::io::Write> Checksummed<'w, W> {
    fn new(w: &'w mut W) -> Self {
        Checksummed {
            w,
            crc: checksums().then(crc64::Running::default),
            failed: None,
        }
    }

    fn put(&mut self, b: &[u8]) {
        if self.failed.is_none() {
            if let Some(crc) = &mut self.crc {
                crc.update(b);
            }
            if let Err(e) = self.w.write_all(b) {
                self.failed = Some(e);
            }
        }
    }

    /// Writes and empties `b`.
    fn take(&mut self, b: &mut Vec<u8>) {
        self.put(b);
        b.clear();
    }

    /// The end-of-file opcode and the checksum; the first error, if any.
    fn finish(mut self) -> std::io::Result<()> {
        self.put(&[OP_EOF]);
        let crc = self.crc.as_ref().map_or(0, |c| c.value());
        match self.failed {
            Some(e) => Err(e),
            None => self.w.write_all(&crc.to_le_bytes()),
        }
    }
}

/// SAVE: writes the dataset to `path` atomically.
pub fn save(
    ks: &Keyspace,
    path: &Path,
    tmp: Option<&Path>,
    now: i64,
    repl_at_cut: impl FnOnce() -> (Option<ReplInfo>, Vec<Vec<u8>>),
) -> std::io::Result<()> {
    use crate::persistence::savefile;
    let fill = |w: &mut savefile::SaveWriter| serialize_to(ks, now, repl_at_cut, w);
    let autosync = savefile::rdb_autosync();
    match tmp {
        Some(t) => crate::persistence::aof::write_atomic_via(path, t, autosync, fill),
        None => crate::persistence::aof::write_atomic_with(path, autosync, fill),
    }
}

fn corrupt(r: &Reader, e: impl std::fmt::Display) -> RdbError {
    RdbError::Corrupt {
        offset: r.pos,
        what: e.to_string(),
    }
}

/// Loads an RDB file into the keyspace; returns what it found (the
/// function libraries are the caller's to load). Nothing is logged: the
/// file is the starting point.
pub fn load(ks: &Keyspace, data: &[u8], now: i64) -> Result<Loaded, RdbError> {
    load_prefix(ks, data, now).map(|(l, _)| l)
}

/// [`load`], also returning the replication state saved with the file.
pub fn load_with_info(ks: &Keyspace, data: &[u8], now: i64) -> Result<Loaded, RdbError> {
    load_prefix(ks, data, now).map(|(l, _)| l)
}

/// What loading an RDB found.
pub struct Loaded {
    pub keys: usize,
    /// Keys skipped because they had expired.
    pub expired: usize,
    /// Those keys, with their database: a master tells its replicas
    /// they are gone, as Redis feeds a DEL for each.
    pub expired_keys: Vec<(usize, Vec<u8>)>,
    pub repl: Option<ReplInfo>,
    /// Slots an unfinished import had hidden when the file was written.
    pub hidden: Vec<(u16, u16)>,
    /// Function libraries' code, for the caller to load.
    pub functions: Vec<Vec<u8>>,
    /// Collections with no elements, skipped (Redis 7.0 skips them, as
    /// older versions could write them).
    pub empty_keys: usize,
}

/// The replication aux fields met while loading.
#[derive(Default)]
struct AuxRepl {
    db: Option<u64>,
    id: Option<String>,
    offset: Option<u64>,
    hidden: Vec<(u16, u16)>,
    functions: Vec<Vec<u8>>,
    expired_keys: Vec<(usize, Vec<u8>)>,
    empty_keys: usize,
}

impl AuxRepl {
    fn into_info(self) -> Option<ReplInfo> {
        let id = self.id.filter(|i| i.len() == 40)?;
        Some(ReplInfo {
            stream_db: self.db.unwrap_or(0),
            id,
            offset: self.offset?,
        })
    }
}

/// Like [`load`], for an RDB that may be followed by more data (an AOF
/// base with an RDB preamble); also returns where the RDB ended.
pub fn load_prefix(ks: &Keyspace, data: &[u8], now: i64) -> Result<(Loaded, usize), RdbError> {
    let mut info = AuxRepl::default();
    let (keys, expired, end) = load_inner(ks, data, now, &mut info)?;
    let hidden = std::mem::take(&mut info.hidden);
    let functions = std::mem::take(&mut info.functions);
    let expired_keys = std::mem::take(&mut info.expired_keys);
    let loaded = Loaded {
        keys,
        expired,
        expired_keys,
        empty_keys: info.empty_keys,
        repl: info.into_info(),
        hidden,
        functions,
    };
    Ok((loaded, end))
}

fn load_inner(
    ks: &Keyspace,
    data: &[u8],
    now: i64,
    repl: &mut AuxRepl,
) -> Result<(usize, usize, usize), RdbError> {
    // A file (or a full sync) is checked deeply only under
    // sanitize-dump-payload yes, as in Redis.
    let deep = super::object::deep_checks(false, false);
    super::object::with_deep_checks(deep, || load_checked(ks, data, now, repl))
}

/// The header: `REDIS` and a version this reader knows.
fn header_version(data: &[u8]) -> Result<u32, RdbError> {
    if data.len() < 9 || &data[..5] != b"REDIS" {
        return Err(RdbError::Signature);
    }
    let ver: u32 = std::str::from_utf8(&data[5..9])
        .ok()
        .and_then(|v| v.parse().ok())
        .ok_or(RdbError::Signature)?;
    if !(1..=RDB_VERSION as u32).contains(&ver) {
        return Err(RdbError::Version(ver));
    }
    Ok(ver)
}

/// What a load carries from one record to the next: the database being
/// filled, a pending expiry, the counts and the file's aux fields.
struct LoadState<'k> {
    ks: &'k Keyspace,
    now: i64,
    db: &'k crate::keyspace::Db,
    db_index: usize,
    expire: Option<i64>,
    loaded: usize,
    skipped: usize,
}

impl<'k> LoadState<'k> {
    fn new(ks: &'k Keyspace, now: i64) -> Self {
        LoadState {
            ks,
            now,
            db: ks.db(0),
            db_index: 0,
            expire: None,
            loaded: 0,
            skipped: 0,
        }
    }

    /// Reads one record at `r`; true when it was the EOF marker. A key is
    /// stored only once its whole value is read, so a record cut short
    /// (`Truncated`) changed nothing and can be read again from its start.
    /// `base` is the offset of `r`'s buffer in the file (for progress).
    fn record(
        &mut self,
        r: &mut Reader,
        repl: &mut AuxRepl,
        base: usize,
    ) -> Result<bool, DecodeError> {
        match r.byte()? {
            OP_EOF => return Ok(true),
            OP_AUX => {
                let k = r.string()?;
                let v = r.string()?;
                let text = || String::from_utf8_lossy(&v).into_owned();
                match k.as_slice() {
                    b"repl-stream-db" => repl.db = text().parse().ok(),
                    b"repl-id" => repl.id = Some(text()),
                    b"repl-offset" => repl.offset = text().parse().ok(),
                    k if k == AUX_HIDDEN.as_bytes() => repl.hidden = parse_hidden(&text()),
                    // Told in the log as redis-server tells them.
                    b"redis-ver" => tracing::info!("Loading RDB produced by version {}", text()),
                    b"ctime" => {
                        let at: i64 = text().trim().parse().unwrap_or(0);
                        let age = (crate::keyspace::now_ms() / 1000 - at).max(0);
                        tracing::info!("RDB age {age} seconds");
                    }
                    b"used-mem" => {
                        let used: u64 = text().trim().parse().unwrap_or(0);
                        tracing::info!(
                            "RDB memory usage when created {:.2} Mb",
                            used as f64 / (1024.0 * 1024.0)
                        );
                        super::RDB_USED_MEM.store(used, std::sync::atomic::Ordering::Relaxed);
                    }
                    b"aof-base" if text().trim().parse::<i64>().unwrap_or(0) != 0 => {
                        tracing::info!("RDB is base AOF");
                    }
                    _ => {}
                }
            }
            OP_SELECTDB => {
                let n = r.length()?;
                if n >= self.ks.count() {
                    return Err(DecodeError::Corrupt("database out of range"));
                }
                self.db = self.ks.db(n);
                self.db_index = n;
            }
            OP_RESIZEDB => {
                r.length()?;
                r.length()?;
            }
            OP_EXPIRETIME_MS => {
                let b = r.take(8)?;
                let at = i64::from_le_bytes(b.try_into().map_err(|_| DecodeError::Truncated)?);
                self.expire = Some(at);
            }
            OP_EXPIRETIME => {
                let b = r.take(4)?;
                let s = u32::from_le_bytes(b.try_into().map_err(|_| DecodeError::Truncated)?);
                self.expire = Some(s as i64 * 1000);
            }
            OP_IDLE => {
                r.length()?;
            }
            OP_FREQ => {
                r.byte()?;
            }
            OP_FUNCTION2 => repl.functions.push(r.string()?),
            OP_MODULE_AUX => return Err(DecodeError::Corrupt("module data (not supported)")),
            t => {
                let key = r.string()?;
                let v = match read_value(r, t) {
                    Err(DecodeError::EmptyKey) => {
                        // Skipped, as Redis 7.0 skips what older versions
                        // could leave (logging the first ten).
                        self.expire = None;
                        repl.empty_keys += 1;
                        if repl.empty_keys <= 10 {
                            tracing::info!(
                                "rdbLoadObject skipping empty key: {}",
                                String::from_utf8_lossy(&key)
                            );
                        }
                        return Ok(false);
                    }
                    v => v?,
                };
                match self.expire.take() {
                    // An AOF's preamble keeps them (see keyspace::loading).
                    Some(at) if at <= self.now && !crate::keyspace::loading() => {
                        self.skipped += 1;
                        repl.expired_keys.push((self.db_index, key));
                    }
                    exp => {
                        let mut g = self.db.lock_key(&key, self.now);
                        g.set_quiet(true);
                        g.set(&key, v, false);
                        if let Some(at) = exp {
                            g.set_expire(&key, at);
                        }
                        self.loaded += 1;
                        super::LOADED_BYTES.store((base + r.pos) as u64, Ordering::Relaxed);
                        super::key_delay(&super::KEY_LOAD_DELAY);
                    }
                }
            }
        }
        Ok(false)
    }
}

/// The checksum after EOF, from RDB version 5 (0 means none was
/// computed). `sum` is what the content before it sums to.
fn check_trailer(
    tail: Option<&[u8]>,
    end: usize,
    sum: impl FnOnce() -> u64,
) -> Result<(), RdbError> {
    let short = || RdbError::Corrupt {
        offset: end,
        what: "Unexpected EOF reading RDB file".into(),
    };
    let tail: [u8; 8] = tail.ok_or_else(short)?.try_into().map_err(|_| short())?;
    let stored = u64::from_le_bytes(tail);
    if stored == 0 && checksums() {
        tracing::warn!("RDB file was saved with checksum disabled: no check performed.");
    } else if stored != 0
        && checksums()
        && !super::SKIP_CHECKSUM.load(std::sync::atomic::Ordering::Relaxed)
    {
        let computed = sum();
        if stored != computed {
            return Err(RdbError::Checksum { stored, computed });
        }
    }
    Ok(())
}

fn load_checked(
    ks: &Keyspace,
    data: &[u8],
    now: i64,
    repl: &mut AuxRepl,
) -> Result<(usize, usize, usize), RdbError> {
    let ver = header_version(data)?;
    let mut r = Reader::new(data);
    r.pos = 9;
    let mut st = LoadState::new(ks, now);
    while !st.record(&mut r, repl, 0).map_err(|e| corrupt(&r, e))? {}
    let end = r.pos;
    if ver >= 5 {
        check_trailer(data.get(end..end + 8), end, || crc64::crc64(&data[..end]))?;
        return Ok((st.loaded, st.skipped, end + 8));
    }
    Ok((st.loaded, st.skipped, end))
}

/// Loads an RDB as it arrives (a replica's full sync): each record goes
/// into the keyspace as soon as all of its bytes are in, so the payload
/// is never held whole.
pub struct StreamLoader<'k> {
    st: LoadState<'k>,
    repl: AuxRepl,
    /// Bytes not read yet (the start of a record cut by a piece's end).
    pending: Vec<u8>,
    /// Offset of `pending[0]` in the file.
    base: usize,
    /// What the bytes before `pending` sum to.
    crc: crc64::Running,
    /// The format version, once the header is in.
    ver: Option<u32>,
    /// Where EOF's marker ended (relative to `pending`), once read.
    eof_at: Option<usize>,
    /// A cut record is read again only once this much is pending, so a
    /// large record arriving in small pieces is not parsed over and over.
    retry_at: usize,
}

impl<'k> StreamLoader<'k> {
    pub fn new(ks: &'k Keyspace, now: i64) -> Self {
        StreamLoader {
            st: LoadState::new(ks, now),
            repl: AuxRepl::default(),
            pending: Vec::new(),
            base: 0,
            crc: crc64::Running::default(),
            ver: None,
            eof_at: None,
            retry_at: 0,
        }
    }

    /// Reads every whole record `bytes` completes.
    pub fn feed(&mut self, bytes: &[u8]) -> Result<(), RdbError> {
        self.pending.extend_from_slice(bytes);
        if self.eof_at.is_some() || self.pending.len() < self.retry_at {
            return Ok(());
        }
        let mut r = Reader::new(&self.pending);
        if self.ver.is_none() {
            if self.pending.len() < 9 {
                return Ok(());
            }
            self.ver = Some(header_version(&self.pending)?);
            r.pos = 9;
        }
        let base = self.base;
        let mut done = r.pos;
        let result =
            super::object::with_deep_checks(super::object::deep_checks(false, false), || {
                loop {
                    match self.st.record(&mut r, &mut self.repl, base) {
                        Ok(false) => done = r.pos,
                        Ok(true) => {
                            done = r.pos;
                            self.eof_at = Some(done);
                            return Ok(());
                        }
                        Err(DecodeError::Truncated) => {
                            // Wait for this record's bytes: at least double
                            // what it has now before reading it again.
                            let have = self.pending.len() - done;
                            self.retry_at = done + (2 * have).max(64 * 1024);
                            return Ok(());
                        }
                        Err(e) => {
                            return Err(RdbError::Corrupt {
                                offset: base + r.pos,
                                what: e.to_string(),
                            })
                        }
                    }
                }
            });
        result?;
        // What was read goes: into the checksum, out of the buffer.
        self.crc.update(&self.pending[..done]);
        self.pending.drain(..done);
        self.base += done;
        self.retry_at = self.retry_at.saturating_sub(done);
        if let Some(at) = self.eof_at.as_mut() {
            *at -= done;
        }
        Ok(())
    }

    /// The payload ended: it must have held the EOF marker and, from
    /// version 5, the right checksum.
    pub fn finish(mut self) -> Result<Loaded, RdbError> {
        if self.eof_at.is_none() {
            // Anything held back for a retry is read now.
            self.retry_at = 0;
            self.feed(&[])?;
        }
        let Some(at) = self.eof_at else {
            let offset = self.base + self.pending.len();
            if self.ver.is_none() {
                return Err(RdbError::Signature);
            }
            return Err(RdbError::Corrupt {
                offset,
                what: DecodeError::Truncated.to_string(),
            });
        };
        if self.ver.unwrap_or(0) >= 5 {
            let end = self.base + at;
            let head = &self.pending[..at];
            let crc = &mut self.crc;
            check_trailer(self.pending.get(at..at + 8), end, || {
                crc.update(head);
                crc.value()
            })?;
        }
        let mut info = self.repl;
        Ok(Loaded {
            keys: self.st.loaded,
            expired: self.st.skipped,
            expired_keys: std::mem::take(&mut info.expired_keys),
            hidden: std::mem::take(&mut info.hidden),
            functions: std::mem::take(&mut info.functions),
            empty_keys: info.empty_keys,
            repl: info.into_info(),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::keyspace::sbytes::SBytes;
    use crate::keyspace::value::Value;
    use crate::persistence::effects::EffectLog;

    /// RESIZEDB's counts come before the entries: they count what the
    /// entries then hold, keys whose TTL has passed included (a file
    /// holds them, as redis-server's does; a master's load skips them).
    #[test]
    fn resizedb_counts_the_keys_written() {
        let ks = Keyspace::new(1, Arc::new(EffectLog::default()));
        for (key, at) in [
            (&b"plain"[..], None),
            (b"later", Some(10_000)),
            (b"gone", Some(2_000)),
        ] {
            let mut g = ks.db(0).lock_key(key, 1_000);
            g.set(key, Value::Str(SBytes::new(b"v")), false);
            if let Some(at) = at {
                g.set_expire(key, at);
            }
        }
        let mut file = Vec::new();
        serialize_to(&ks, 5_000, || (None, Vec::new()), &mut file).expect("into a Vec");
        let at = file
            .windows(3)
            .position(|w| w == [OP_SELECTDB, 0, OP_RESIZEDB])
            .expect("RESIZEDB");
        assert_eq!(&file[at + 3..at + 5], &[3, 2], "3 keys, 2 with a TTL");
        let back = Keyspace::new(1, Arc::new(EffectLog::default()));
        let loaded = load(&back, &file, 5_000).expect("loads");
        assert_eq!((loaded.keys, loaded.expired), (2, 1));
    }

    /// A file fed in pieces of any size loads as the whole file does:
    /// the same keys, TTLs, functions and replication fields; a cut
    /// payload or a bad checksum is refused.
    #[test]
    fn a_file_fed_in_pieces_loads_as_the_whole_file() {
        let ks = Keyspace::new(2, Arc::new(EffectLog::default()));
        for i in 0..300u32 {
            let key = format!("k{i}");
            let db = (i % 2) as usize;
            let mut g = ks.db(db).lock_key(key.as_bytes(), 1_000);
            let v = if i % 7 == 0 {
                vec![b'x'; 70_000]
            } else {
                format!("v{i}").into_bytes()
            };
            g.set(key.as_bytes(), Value::Str(SBytes::new(&v)), false);
            if i % 5 == 0 {
                g.set_expire(key.as_bytes(), 50_000 + i as i64);
            }
            if i % 11 == 0 {
                // One already gone at the load's time.
                g.set_expire(key.as_bytes(), 2_000);
            }
        }
        let mut file = Vec::new();
        serialize_to(
            &ks,
            1_500,
            || (None, vec![b"#!lua name=f\n".to_vec()]),
            &mut file,
        )
        .expect("into a Vec");
        let whole_ks = Keyspace::new(2, Arc::new(EffectLog::default()));
        let whole = load(&whole_ks, &file, 5_000).expect("loads");
        for piece in [1usize, 7, 4096, 65_536, file.len()] {
            let back = Keyspace::new(2, Arc::new(EffectLog::default()));
            let mut l = StreamLoader::new(&back, 5_000);
            for p in file.chunks(piece) {
                l.feed(p).expect("a piece");
            }
            let got = l.finish().expect("loads");
            assert_eq!(
                (got.keys, got.expired),
                (whole.keys, whole.expired),
                "{piece}"
            );
            assert_eq!(got.functions, whole.functions, "{piece}");
            assert_eq!(got.expired_keys, whole.expired_keys, "{piece}");
            for db in 0..2 {
                assert_eq!(back.db(db).size(), whole_ks.db(db).size(), "{piece}");
            }
            let mut again = Vec::new();
            serialize_to(
                &back,
                1_500,
                || (None, vec![b"#!lua name=f\n".to_vec()]),
                &mut again,
            )
            .expect("into a Vec");
            let mut first = Vec::new();
            serialize_to(
                &whole_ks,
                1_500,
                || (None, vec![b"#!lua name=f\n".to_vec()]),
                &mut first,
            )
            .expect("into a Vec");
            assert!(again == first, "{piece}: the loaded data differs");
        }
        // Cut anywhere, the payload is refused.
        for cut in [5, 9, 100, file.len() / 2, file.len() - 8, file.len() - 1] {
            let back = Keyspace::new(2, Arc::new(EffectLog::default()));
            let mut l = StreamLoader::new(&back, 5_000);
            let fed = l.feed(&file[..cut]);
            assert!(fed.is_err() || l.finish().is_err(), "cut at {cut}");
        }
        // A flipped byte in the checksum.
        let mut bad = file.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        let back = Keyspace::new(2, Arc::new(EffectLog::default()));
        let mut l = StreamLoader::new(&back, 5_000);
        l.feed(&bad).expect("the records are whole");
        assert!(matches!(l.finish(), Err(RdbError::Checksum { .. })));
    }

    /// A chunk of one string key, in the form the snapshot's sweep makes.
    fn chunk(db: u32, key: &[u8]) -> Vec<u8> {
        let mut c = Vec::new();
        c.extend_from_slice(&db.to_le_bytes());
        c.extend_from_slice(&1u32.to_le_bytes());
        c.extend_from_slice(&0u32.to_le_bytes());
        c.push(0); // RDB_TYPE_STRING
        super::super::object::write_string(&mut c, key);
        super::super::object::write_string(&mut c, b"v");
        c
    }

    /// Streamed, a chunk of a later database that arrives early waits
    /// for its database's turn: the file is byte for byte the one
    /// assembled from every chunk at once, and loads.
    #[test]
    fn a_streamed_rdb_equals_the_assembled_one() {
        let chunks = [
            chunk(0, b"a"),
            chunk(2, b"early"),
            chunk(0, b"b"),
            chunk(2, b"c"),
        ];
        let counts = [(0, (2, 0)), (2, (2, 0))].into_iter().collect();
        let aux = Aux::default();
        let mut streamed = Vec::new();
        let mut s = StreamAssembler::new(&mut streamed, 1_000, &aux, counts);
        s.begin_db(0);
        s.chunk(chunks[0].clone());
        s.chunk(chunks[1].clone());
        s.chunk(chunks[2].clone());
        s.begin_db(1);
        s.begin_db(2);
        s.chunk(chunks[3].clone());
        s.finish().expect("into a Vec");
        let whole = assemble(chunks.to_vec(), 1_000, &aux);
        assert_eq!(streamed, whole);
        let back = Keyspace::new(3, Arc::new(EffectLog::default()));
        assert_eq!(load(&back, &streamed, 1_000).expect("loads").keys, 4);
    }
}
