//! The append-only file, in Redis 7's multi-part layout: a directory
//! (`appenddirname`) holding a base file, an incremental file and a
//! manifest naming them. Writes reach the incremental file from a writer
//! thread that drains the effect log and fsyncs by `appendfsync`.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::command::{Action, Args};
use crate::config::AppendFsync;
use crate::resp::{parse_request, Limits, Parsed};
use crate::server::conn::{execute, new_client};
use crate::server::Shared;

#[derive(Debug, thiserror::Error)]
pub enum AofError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("Bad file format reading the append only file {file} at offset {offset}: {reason}")]
    Corrupt {
        file: String,
        offset: u64,
        reason: String,
    },
    #[error("Unexpected end of file reading the append only file {file} (the last command, from offset {offset}, is incomplete). Set aof-load-truncated yes to drop it and start")]
    Truncated { file: String, offset: u64 },
    #[error("Unknown command '{command}' reading the append only file {file}")]
    UnknownCommand { command: String, file: String },
    #[error("Unable to obtain the AOF file {file} length. stat: {reason}")]
    Missing { file: String, reason: String },
    #[error("{1} (the AOF manifest {0})")]
    Manifest(String, String),
}

/// What INFO and BGREWRITEAOF see of the AOF.
pub struct AofHandle {
    rewriting: Arc<AtomicBool>,
    size: Arc<AtomicU64>,
    base: Arc<AtomicU64>,
    cmds: Mutex<std::sync::mpsc::Sender<WriterCmd>>,
    tmp_dir: PathBuf,
    /// The files, shared by the writer thread and connections that write
    /// the log out before their replies go (see [`write_through`]).
    files: Arc<Mutex<Files>>,
}

impl AofHandle {
    pub fn rewriting(&self) -> bool {
        self.rewriting.load(Ordering::Relaxed)
    }
    pub fn current_size(&self) -> u64 {
        self.size.load(Ordering::Relaxed)
    }
    pub fn base_size(&self) -> u64 {
        self.base.load(Ordering::Relaxed)
    }
}

/// Requests the rewrite makes of the writer thread, which owns the files.
enum WriterCmd {
    Switch(std::sync::mpsc::Sender<Result<(), String>>),
    /// Install a new base (an RDB file when the bool is set).
    Finish(PathBuf, bool, std::sync::mpsc::Sender<Result<(), String>>),
    /// Delete the history files (aof-disable-auto-gc turned off).
    CollectHistory(std::sync::mpsc::Sender<Result<(), String>>),
}

/// `aof-disable-auto-gc no` (the default): the files a rewrite replaced
/// are deleted at once; with it on they stay, listed as history (`type h`)
/// in the manifest, as Redis keeps them for backup tools.
pub static AUTO_GC: AtomicBool = AtomicBool::new(true);

/// The AOF was turned on at runtime and no rewrite has written its first
/// base yet (Redis's AOF_WAIT_REWRITE): until one has, the files do not
/// hold the dataset, so a shutdown must not count on them.
pub static WAIT_REWRITE: AtomicBool = AtomicBool::new(false);

/// The initial rewrite of an AOF turned on at runtime is running: a
/// shutdown now would leave files without the dataset.
pub fn writing_initial(srv: &Shared) -> bool {
    WAIT_REWRITE.load(Ordering::SeqCst) && srv.aof.lock().as_ref().is_some_and(|h| h.rewriting())
}

#[derive(Clone, Default)]
struct Manifest {
    base: String,
    base_seq: u64,
    /// Files a rewrite replaced, kept while auto GC is off, in Redis's
    /// order: the last rewrite's increments, its old base, then earlier
    /// history.
    history: Vec<(String, u64)>,
    incrs: Vec<(String, u64)>,
    /// The last increment's number (Redis's curr_incr_file_seq): counted
    /// apart from the bases', from the manifest as read (0 without
    /// increments), and on in memory while the node runs.
    incr_seq: u64,
}

impl Manifest {
    fn text(&self) -> String {
        let mut t = String::new();
        if !self.base.is_empty() {
            t.push_str(&format!(
                "file {} seq {} type b\n",
                quoted(&self.base),
                self.base_seq
            ));
        }
        for (f, seq) in &self.history {
            t.push_str(&format!("file {} seq {seq} type h\n", quoted(f)));
        }
        for (f, seq) in &self.incrs {
            t.push_str(&format!("file {} seq {seq} type i\n", quoted(f)));
        }
        t
    }

    /// The next increment: `<name>.<seq>.incr.aof`, numbered on.
    fn next_incr(&mut self, fname: &str) -> (String, u64) {
        self.incr_seq += 1;
        (format!("{fname}.{}.incr.aof", self.incr_seq), self.incr_seq)
    }

    /// The next base's name, numbered on from the current one's.
    fn next_base(&self, fname: &str, rdb: bool) -> (String, u64) {
        let seq = self.base_seq + 1;
        let ext = if rdb { "rdb" } else { "aof" };
        (format!("{fname}.{seq}.base.{ext}"), seq)
    }
}

/// A file name as the manifest holds it: quoted and escaped when it has
/// spaces, quotes or unprintable bytes (`appendfilename` may), as Redis
/// writes it, so the line still splits into its words. A single quote is
/// quoted too: redis-server writes it bare, and then neither server can
/// read the line back (it opens a quoted word).
fn quoted(name: &str) -> std::borrow::Cow<'_, str> {
    let plain = name
        .bytes()
        .all(|b| b.is_ascii_graphic() && !matches!(b, b'\\' | b'"' | b'\''));
    if plain {
        std::borrow::Cow::Borrowed(name)
    } else {
        std::borrow::Cow::Owned(crate::config::rewrite::repr(name))
    }
}

/// Where appends go while an AOF turned on at runtime waits for its
/// first rewrite (Redis's temporary increment): it joins the manifest
/// only once a base holds the dataset.
fn temp_incr_name(fname: &str) -> String {
    format!("temp-{fname}.incr")
}

fn parse_manifest(path: &Path) -> Result<Manifest, AofError> {
    let text = fs::read(path)?;
    parse_manifest_text(&text).map_err(|(line, what)| {
        let at = line.map_or(String::new(), |(n, l)| format!(", at line {n}: '{l}'"));
        AofError::Manifest(path.display().to_string(), format!("{what}{at}"))
    })
}

/// Longest manifest line redis-server reads.
const MANIFEST_MAX_LINE: usize = 1024;

/// Reads a manifest by redis-server's rules, refusing what it refuses
/// (with its words): an empty manifest, a blank, short, odd or overlong
/// line, a line lacking its file, seq or type, a path for a file name,
/// a second base, an unknown type, increments out of order. Keys may
/// come in any order and unknown ones are skipped (forward
/// compatibility). On error: the line (number, text) if any, and why.
type ManifestError = (Option<(usize, String)>, &'static str);

fn parse_manifest_text(text: &[u8]) -> Result<Manifest, ManifestError> {
    if text.is_empty() {
        return Err((None, "Found an empty AOF manifest"));
    }
    let mut m = Manifest::default();
    let mut has_base = false;
    let mut max_incr = 0u64;
    let mut rest = text;
    let mut n = 0;
    while !rest.is_empty() {
        n += 1;
        let raw = memchr::memchr(b'\n', rest).map_or(rest, |i| &rest[..i]);
        rest = &rest[(raw.len() + 1).min(rest.len())..];
        if raw.first() == Some(&b'#') {
            continue;
        }
        let line = String::from_utf8_lossy(raw).trim().to_string();
        let bad = |what| Err((Some((n, line.clone())), what));
        // redis-server reads a line into 1024 bytes: longer is refused.
        if raw.len() >= MANIFEST_MAX_LINE {
            return bad("The AOF manifest file contains too long line");
        }
        // Words as redis.conf's: a quoted file name may hold spaces.
        let (mut bytes, mut ranges) = (Vec::new(), Vec::new());
        if !crate::resp::parse::split_args(line.as_bytes(), &mut bytes, &mut ranges) {
            return bad("Invalid AOF manifest file format");
        }
        let owned: Vec<String> = ranges
            .iter()
            .map(|r| String::from_utf8_lossy(&bytes[r.clone()]).into_owned())
            .collect();
        let words: Vec<&str> = owned.iter().map(String::as_str).collect();
        if words.len() < 6 || !words.len().is_multiple_of(2) {
            return bad("Invalid AOF manifest file format");
        }
        let (mut file, mut seq, mut kind) = (None, 0u64, None);
        for kv in words.chunks(2) {
            if kv[0].eq_ignore_ascii_case("file") {
                if kv[1].contains('/') {
                    return bad("File can't be a path, just a filename");
                }
                file = Some(kv[1].to_string());
            } else if kv[0].eq_ignore_ascii_case("seq") {
                // As atoll: what is not a number is 0, which is refused.
                seq = kv[1].parse().unwrap_or(0);
            } else if kv[0].eq_ignore_ascii_case("type") {
                kind = kv[1].bytes().next();
            }
        }
        let (Some(file), Some(kind)) = (file, kind) else {
            return bad("Invalid AOF manifest file format");
        };
        if seq == 0 {
            return bad("Invalid AOF manifest file format");
        }
        match kind {
            b'b' => {
                if has_base {
                    return bad("Found duplicate base file information");
                }
                has_base = true;
                m.base = file;
                m.base_seq = seq;
            }
            b'h' => m.history.push((file, seq)),
            b'i' => {
                if seq <= max_incr {
                    return bad("Found a non-monotonic sequence number");
                }
                max_incr = seq;
                m.incr_seq = seq;
                m.incrs.push((file, seq));
            }
            _ => return bad("Unknown AOF file type"),
        }
    }
    Ok(m)
}

/// Writes `data` to `path` atomically: temp file, fsync, rename, fsync dir.
pub fn write_atomic(path: &Path, data: &[u8]) -> std::io::Result<()> {
    write_atomic_with(path, false, |w| w.write_all(data))
}

/// [`write_atomic`] of what `fill` writes, through a buffer, so the whole
/// file need not be in memory first; `autosync` hands it to the disk 4 MB
/// at a time ([`SaveFile`](super::savefile::SaveFile)).
pub fn write_atomic_with(
    path: &Path,
    autosync: bool,
    fill: impl FnOnce(&mut super::savefile::SaveWriter) -> std::io::Result<()>,
) -> std::io::Result<()> {
    // Unique per call, so two writers of one path never share a temp file.
    static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(
        ".tmp-{}",
        SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    write_atomic_via(path, std::path::Path::new(&tmp), autosync, fill)
}

/// [`write_atomic_with`] through the temporary file `tmp`.
pub fn write_atomic_via(
    path: &Path,
    tmp: &Path,
    autosync: bool,
    fill: impl FnOnce(&mut super::savefile::SaveWriter) -> std::io::Result<()>,
) -> std::io::Result<()> {
    let written = (|| {
        let mut w = super::savefile::writer(File::create(tmp)?, autosync);
        fill(&mut w)?;
        let f = w.into_inner().map_err(|e| e.into_error())?.into_inner();
        f.sync_all()?;
        fs::rename(tmp, path)
    })();
    if let Err(e) = written {
        let _ = fs::remove_file(tmp);
        return Err(e);
    }
    if let Some(dir) = path.parent() {
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}

/// Replays one file; returns the number of commands run.
/// Replays one file of the AOF. Nothing expires meanwhile, as in
/// redis-server: a TTL that passed since it was logged must not make the
/// commands logged after it start the key afresh (an INCR on an expired
/// counter would bring it back without its TTL); the expired keys go
/// once the load is over.
fn replay(
    srv: &Arc<Shared>,
    path: &Path,
    truncated_ok: bool,
    is_last: bool,
) -> Result<u64, AofError> {
    crate::keyspace::set_loading(true);
    let r = replay_file(srv, path, truncated_ok, is_last);
    crate::keyspace::set_loading(false);
    r
}

fn replay_file(
    srv: &Arc<Shared>,
    path: &Path,
    truncated_ok: bool,
    is_last: bool,
) -> Result<u64, AofError> {
    let data = match fs::read(path) {
        Ok(d) => d,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e.into()),
    };
    let name = path.display().to_string();
    // A base written with aof-use-rdb-preamble (Redis 7's default) starts
    // with an RDB image; any commands after it are replayed as usual.
    let mut start = 0;
    if data.starts_with(b"REDIS") {
        let (loaded, end) =
            // Every key, expired or not, as redis-server loads a preamble
            // (see `replay`).
            crate::persistence::rdb::file::load_prefix(&srv.ks, &data, crate::keyspace::now_ms())
                .map_err(|e| AofError::Corrupt {
                file: name.clone(),
                offset: 0,
                reason: format!("RDB preamble: {e}"),
            })?;
        tracing::info!(
            "Loaded an RDB preamble with {} keys from {name}",
            loaded.keys
        );
        crate::persistence::track_loaded_imports(srv, loaded.hidden);
        srv.scripts
            .install_functions(&loaded.functions)
            .map_err(|e| AofError::Corrupt {
                file: name.clone(),
                offset: 0,
                reason: format!("RDB preamble: Failed loading library: {e}"),
            })?;
        start = end;
    }
    let addr: std::net::SocketAddr = ([127, 0, 0, 1], 0).into();
    let mut client = new_client(srv, addr.into(), addr.into());
    client.authenticated = true;
    // The server's own client: no ACL user, nothing refused.
    client.set_acl_user(None);
    client.loading = true;
    let mut out = Vec::new();
    let mut actions: Vec<Action> = Vec::new();
    let mut ranges = Vec::new();
    let mut scratch = Vec::new();
    let limits = Limits {
        max_bulk_len: i64::MAX,
        authenticated: true,
    };
    let mut pos = start;
    let mut n = 0u64;
    // Offset where the last complete transaction or command ended.
    let mut good = start;
    while pos < data.len() {
        // Annotations (`#TS:…`, aof-timestamp-enabled) are skipped whole,
        // as Redis's loader does.
        if data[pos] == b'#' {
            pos = memchr::memchr(b'\n', &data[pos..]).map_or(data.len(), |i| pos + i + 1);
            if client.multi.is_none() {
                good = pos;
            }
            continue;
        }
        if data[pos] != b'*' {
            return Err(AofError::Corrupt {
                file: name,
                offset: pos as u64,
                reason: format!("expected '*', got byte 0x{:02x}", data[pos]),
            });
        }
        match parse_request(&data[pos..], &limits, &mut ranges, &mut scratch) {
            Ok(Some(Parsed::Multibulk { consumed })) => {
                let args = Args::new(&data[pos..], &ranges);
                // A command this server does not know (a newer server's
                // file, or damage): starting without its effect would
                // silently lose data, so loading stops, as on redis-server.
                if crate::command::table::lookup_any(args.get(0)).is_none() {
                    return Err(AofError::UnknownCommand {
                        command: String::from_utf8_lossy(args.get(0)).into_owned(),
                        file: name,
                    });
                }
                out.clear();
                let cmd = execute(
                    srv,
                    &mut client,
                    &mut out,
                    &mut actions,
                    &args,
                    crate::keyspace::now_ms(),
                );
                if out.first() == Some(&b'-') {
                    use crate::server::propagation::{error_reply, Source};
                    error_reply(srv, Source::Aof, &out, cmd.map_or("<unknown>", |c| c.name));
                }
                actions.clear();
                pos += consumed;
                n += 1;
                crate::persistence::rdb::LOADED_BYTES.fetch_add(consumed as u64, Ordering::Relaxed);
                if client.multi.is_none() {
                    good = pos;
                }
            }
            Ok(Some(Parsed::Empty { consumed })) => pos += consumed,
            Ok(Some(Parsed::Inline { .. })) | Err(_) => {
                return Err(AofError::Corrupt {
                    file: name,
                    offset: pos as u64,
                    reason: "invalid RESP command".into(),
                })
            }
            Ok(None) => break,
        }
    }
    if good < data.len() {
        // The tail is an incomplete command or an unfinished MULTI.
        if !(truncated_ok && is_last) {
            return Err(AofError::Truncated {
                file: name,
                offset: good as u64,
            });
        }
        tracing::warn!(
            "!!! Warning: short read while loading the AOF file {name}!!! Dropping {} bytes from offset {good} and continuing",
            data.len() - good
        );
        let f = OpenOptions::new().write(true).open(path)?;
        f.set_len(good as u64)?;
        f.sync_all()?;
    }
    Ok(n)
}

/// An AOF of a server before Redis 7.0 (one `appendfilename` file in
/// `dir`, no manifest) becomes the base of the multi-part layout, as
/// redis-server upgrades it: the manifest naming it is written first,
/// then the file moves into the AOF directory (a start cut short between
/// the two finishes the move, see `open`), and appends go to a new
/// increment.
fn upgrade_single_file(
    dir: &Path,
    adir: &Path,
    fname: &str,
    manifest_path: &Path,
) -> Result<(), AofError> {
    let old = dir.join(fname);
    if manifest_path.exists() || !old.is_file() {
        return Ok(());
    }
    let m = Manifest {
        base: fname.to_string(),
        base_seq: 1,
        incrs: vec![(format!("{fname}.1.incr.aof"), 1)],
        ..Default::default()
    };
    File::create(adir.join(&m.incrs[0].0))?.sync_all()?;
    write_atomic(manifest_path, m.text().as_bytes())?;
    fs::rename(&old, adir.join(fname))?;
    tracing::info!("Successfully migrated an old-style AOF into the AOF directory");
    Ok(())
}

/// Loads the AOF (creating it when missing) and starts the writer thread.
pub fn open(srv: &Arc<Shared>) -> Result<(), AofError> {
    let (dir, dirname, fname, truncated_ok) = {
        let c = srv.config.read();
        (
            PathBuf::from(c.dir()),
            c.appenddirname(),
            c.appendfilename(),
            c.aof_load_truncated(),
        )
    };
    let adir = dir.join(&dirname);
    fs::create_dir_all(&adir)?;
    let manifest_path = adir.join(format!("{fname}.manifest"));
    upgrade_single_file(&dir, &adir, &fname, &manifest_path)?;
    let manifest = if manifest_path.exists() {
        let mut m = parse_manifest(&manifest_path)?;
        // An upgrade cut short (below): its file is still beside us.
        let old = dir.join(&fname);
        if m.base == fname && !adir.join(&fname).exists() && old.is_file() {
            fs::rename(&old, adir.join(&fname))?;
            tracing::info!("Successfully migrated an old-style AOF into the AOF directory");
        }
        // A file the manifest lists and the disk lacks: loading without
        // it would start with part of the data.
        for f in std::iter::once(&m.base)
            .filter(|b| !b.is_empty())
            .chain(m.incrs.iter().map(|(f, _)| f))
        {
            if let Err(e) = fs::metadata(adir.join(f)) {
                return Err(AofError::Missing {
                    file: f.clone(),
                    reason: e.to_string(),
                });
            }
        }
        if m.incrs.is_empty() {
            // Only a base (written by BGREWRITEAOF while the AOF was off):
            // appends go to a new incremental file.
            let (name, seq) = m.next_incr(&fname);
            File::create(adir.join(&name))?.sync_all()?;
            m.incrs.push((name, seq));
            write_atomic(&manifest_path, m.text().as_bytes())?;
        }
        m
    } else {
        // As Redis on a first start: a base of the (empty) dataset, an RDB
        // image under aof-use-rdb-preamble.
        let preamble = srv.config.read().flag("aof-use-rdb-preamble");
        let m = Manifest {
            base: format!("{fname}.1.base.{}", if preamble { "rdb" } else { "aof" }),
            base_seq: 1,
            incrs: vec![(format!("{fname}.1.incr.aof"), 1)],
            incr_seq: 1,
            ..Default::default()
        };
        if preamble {
            let now = crate::keyspace::now_ms();
            write_atomic_with(&adir.join(&m.base), false, |w| {
                let no_repl = |_: &()| None;
                crate::persistence::write_rdb_at_cut(srv, now, w, true, || (), no_repl, || true).1
            })?;
        } else {
            File::create(adir.join(&m.base))?.sync_all()?;
        }
        File::create(adir.join(&m.incrs[0].0))?.sync_all()?;
        write_atomic(&manifest_path, m.text().as_bytes())?;
        m
    };
    let start = Instant::now();
    let mut total = 0;
    let files: Vec<&String> = std::iter::once(&manifest.base)
        .filter(|b| !b.is_empty())
        .chain(manifest.incrs.iter().map(|(f, _)| f))
        .collect();
    let bytes = files
        .iter()
        .filter_map(|f| fs::metadata(adir.join(f)).ok())
        .map(|m| m.len())
        .sum();
    crate::persistence::begin_load(bytes);
    for (i, f) in files.iter().enumerate() {
        total += replay(srv, &adir.join(f), truncated_ok, i + 1 == files.len())?;
    }
    tracing::info!(
        "DB loaded from append only file: {:.3} seconds ({total} commands)",
        start.elapsed().as_secs_f64()
    );
    start_writer(srv, adir, fname, manifest_path, manifest, Mode::On)
}

/// DEBUG LOADAOF: flushes the AOF, empties the dataset and loads it back
/// from the files the manifest names, as at start-up (without a manifest:
/// an empty dataset, as Redis). Nothing loaded is logged again. The caller
/// keeps other clients out meanwhile.
pub fn reload(srv: &Arc<Shared>) -> Result<u64, AofError> {
    if srv.aof.lock().is_some() {
        flush_and_sync(srv)?;
    }
    let (dir, dirname, fname, truncated_ok) = {
        let c = srv.config.read();
        (
            PathBuf::from(c.dir()),
            c.appenddirname(),
            c.appendfilename(),
            c.aof_load_truncated(),
        )
    };
    let adir = dir.join(&dirname);
    let manifest_path = adir.join(format!("{fname}.manifest"));
    let manifest = if manifest_path.exists() {
        Some(parse_manifest(&manifest_path)?)
    } else {
        None
    };
    // As Redis re-reads the manifest: numbering goes on from the files
    // it names (an increment after a base-only rewrite is number 1).
    if let (Some(m), Some(files)) = (&manifest, files_of(srv)) {
        files.lock().manifest = m.clone();
    }
    // Replaying history is not a change to log or replicate.
    let was = srv.log.suspend();
    let now = crate::keyspace::now_ms();
    srv.scripts.functions.replace_all(Default::default());
    for db in srv.ks.existing() {
        for s in 0..crate::keyspace::SLOTS as u16 {
            if db.slot_keys(s) > 0 {
                db.lock_slot(s, now).clear(false);
            }
        }
    }
    let mut total = 0;
    let mut result = Ok(());
    if let Some(m) = &manifest {
        let files: Vec<&String> = std::iter::once(&m.base)
            .filter(|b| !b.is_empty())
            .chain(m.incrs.iter().map(|(f, _)| f))
            .collect();
        crate::persistence::begin_load(
            files
                .iter()
                .filter_map(|f| fs::metadata(adir.join(f)).ok())
                .map(|m| m.len())
                .sum(),
        );
        for (i, f) in files.iter().enumerate() {
            match replay(srv, &adir.join(f), truncated_ok, i + 1 == files.len()) {
                Ok(n) => total += n,
                Err(e) => {
                    result = Err(e);
                    break;
                }
            }
        }
    }
    srv.log.resume(was);
    result.map(|()| total)
}

/// Opens the file appends go to (the manifest's last increment, or the
/// temporary one in [`Mode::Temp`]) and starts the writer.
fn start_writer(
    srv: &Arc<Shared>,
    adir: PathBuf,
    fname: String,
    manifest_path: PathBuf,
    manifest: Manifest,
    mode: Mode,
) -> Result<(), AofError> {
    let incr = match mode {
        Mode::Temp => temp_incr_name(&fname),
        _ => manifest
            .incrs
            .last()
            .map(|(f, _)| f.clone())
            .ok_or_else(|| {
                AofError::Manifest(manifest_path.display().to_string(), "no incr file".into())
            })?,
    };
    let incr_path = adir.join(incr);
    let mut open = OpenOptions::new();
    open.create(true);
    if mode == Mode::Temp {
        // A temporary increment starts empty, as Redis opens it.
        open.write(true).truncate(true);
    } else {
        open.append(true);
    }
    let file = open.open(&incr_path)?;
    let base_size = fs::metadata(adir.join(&manifest.base))
        .map(|m| m.len())
        .unwrap_or(0);
    let size = Arc::new(AtomicU64::new(
        base_size + fs::metadata(&incr_path).map(|m| m.len()).unwrap_or(0),
    ));
    // Loading logged nothing (the log was inactive); start logging now.
    srv.log.set_active(true);
    let start_off = srv.log.offset();
    srv.log.synced.store(start_off, Ordering::SeqCst);
    let (cmd_tx, cmd_rx) = std::sync::mpsc::channel();
    let rewriting = Arc::new(AtomicBool::new(false));
    let base = Arc::new(AtomicU64::new(base_size));
    let files = Arc::new(Mutex::new(Files {
        adir: adir.clone(),
        fname,
        manifest_path,
        manifest,
        mode,
        cur: file,
        old: None,
        size: size.clone(),
        base: base.clone(),
        unsynced: false,
    }));
    *srv.aof.lock() = Some(AofHandle {
        rewriting: rewriting.clone(),
        size,
        base,
        cmds: Mutex::new(cmd_tx),
        tmp_dir: adir,
        files: files.clone(),
    });
    let srv2 = srv.clone();
    std::thread::Builder::new()
        .name("aof-writer".into())
        .spawn(move || {
            crate::affinity::pin(crate::affinity::Role::Bio);
            writer(srv2, files, cmd_rx)
        })?;
    Ok(())
}

/// What the AOF's files are doing, as Redis's aof_state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    /// Appends go to the manifest's last increment.
    On,
    /// Turned on at runtime, no rewrite has succeeded yet: appends go to
    /// the temporary increment, and the manifest is left as it was.
    Temp,
    /// Turned off at runtime: nothing is appended; a rewrite writes a
    /// base alone, and every increment becomes history.
    Off,
}

/// The files the writer thread owns.
struct Files {
    adir: PathBuf,
    fname: String,
    manifest_path: PathBuf,
    manifest: Manifest,
    mode: Mode,
    cur: File,
    /// The previous incremental file, during a rewrite.
    old: Option<File>,
    size: Arc<AtomicU64>,
    base: Arc<AtomicU64>,
    /// Bytes were written since the last fsync began.
    unsynced: bool,
}

/// `DEBUG AOF-FLUSH-SLEEP`: microseconds each write to the AOF waits
/// first, for tests that look at the file while a write is due.
pub static FLUSH_SLEEP_US: AtomicU64 = AtomicU64::new(0);

/// Appends `b` to `f`. On an error, a partial write is cut off again where
/// the file allows it (so the next try does not follow half a command, as
/// Redis truncates); returns the error and how many bytes stay written.
fn append_or_roll_back(f: &mut File, b: &[u8]) -> Result<(), (std::io::Error, usize)> {
    let sleep = FLUSH_SLEEP_US.load(Ordering::Relaxed);
    if sleep > 0 && !b.is_empty() {
        std::thread::sleep(std::time::Duration::from_micros(sleep));
    }
    let mut done = 0;
    while done < b.len() {
        match f.write(&b[done..]) {
            Ok(0) => return Err((std::io::ErrorKind::WriteZero.into(), done)),
            Ok(n) => done += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => {
                if done > 0 {
                    let rolled_back = f
                        .metadata()
                        .and_then(|m| f.set_len(m.len().saturating_sub(done as u64)));
                    if rolled_back.is_ok() {
                        done = 0;
                    } else {
                        tracing::warn!(
                            "Could not remove a short write from the AOF: {done} bytes stay"
                        );
                    }
                }
                return Err((e, done));
            }
        }
    }
    Ok(())
}

impl Files {
    /// Appends what belongs to the previous file during a rewrite, then
    /// the current bytes. On an error, returns it with what is still to
    /// be written of each (taken again on the next try).
    fn append_all(
        &mut self,
        old: Vec<u8>,
        buf: Vec<u8>,
    ) -> Result<(), (std::io::Error, Vec<u8>, Vec<u8>)> {
        if !old.is_empty() {
            let f = match &mut self.old {
                Some(f) => f,
                None => &mut self.cur,
            };
            if let Err((e, done)) = append_or_roll_back(f, &old) {
                return Err((e, old[done..].to_vec(), buf));
            }
        }
        if !buf.is_empty() {
            let r = append_or_roll_back(&mut self.cur, &buf);
            let done = match &r {
                Ok(()) => buf.len(),
                Err((_, done)) => *done,
            };
            self.size.fetch_add(done as u64, Ordering::Relaxed);
            if let Err((e, done)) = r {
                return Err((e, Vec::new(), buf[done..].to_vec()));
            }
        }
        Ok(())
    }

    /// Starts generation G: a new incremental file, listed in the manifest
    /// after the old ones so a failed rewrite loses nothing.
    fn switch(&mut self, srv: &Shared) -> Result<(), String> {
        let pending = srv.log.begin_rewrite();
        if self.mode == Mode::Temp {
            // Not a file the dataset depends on: what it was owed before
            // the cut is in the new base.
            drop(pending);
            let f = File::create(self.adir.join(temp_incr_name(&self.fname)))
                .map_err(|e| e.to_string())?;
            self.cur = f;
            self.old = None;
            return Ok(());
        }
        // Owed to the current file. If it cannot take them (a full or
        // failing disk), they stay owed to it, and writes stay refused,
        // until it can or the new base, which covers them, is in place:
        // the rewrite is the way out of a file that keeps failing, as on
        // redis-server.
        match self.append_all(pending, Vec::new()) {
            Err((e, rest, _)) => {
                tracing::warn!(
                    "The AOF file being replaced cannot take its last {} bytes ({e}): the new base will hold them",
                    rest.len()
                );
                srv.log.put_back(rest, Vec::new());
            }
            Ok(()) => sync_or_note(srv, &self.cur),
        }
        match self.mode {
            // As Redis: no new increment while the AOF is off.
            Mode::Off => Ok(()),
            Mode::Temp => Ok(()),
            Mode::On => {
                let mut m = self.manifest.clone();
                let (name, seq) = m.next_incr(&self.fname);
                let f = OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(self.adir.join(&name))
                    .map_err(|e| e.to_string())?;
                m.incrs.push((name, seq));
                write_atomic(&self.manifest_path, m.text().as_bytes())
                    .map_err(|e| e.to_string())?;
                self.manifest = m;
                self.old = Some(std::mem::replace(&mut self.cur, f));
                Ok(())
            }
        }
    }

    /// Deletes the history files and lists them no more.
    fn collect_history(&mut self) -> Result<(), String> {
        if self.manifest.history.is_empty() {
            return Ok(());
        }
        let mut m = self.manifest.clone();
        for (f, _) in std::mem::take(&mut m.history) {
            tracing::info!("Removing the history file {f} in the background");
            let _ = fs::remove_file(self.adir.join(f));
        }
        write_atomic(&self.manifest_path, m.text().as_bytes()).map_err(|e| e.to_string())?;
        self.manifest = m;
        Ok(())
    }

    /// Installs the new base; the files it replaces become history, deleted
    /// unless aof-disable-auto-gc is on.
    fn finish(&mut self, srv: &Shared, tmp: &Path, rdb: bool) -> Result<(), String> {
        // Both streams: what is owed to the previous file, and what the
        // current one has gained since the writer last looked (dropping it
        // would lose acknowledged writes).
        let (buf, old, _) = srv.log.take();
        // What the previous file cannot take is covered by the new base:
        // kept only until the base is in place.
        let owed = match self.append_all(old, Vec::new()) {
            Ok(()) => Vec::new(),
            Err((_, rest, _)) => rest,
        };
        if let (Some(f), true) = (&self.old, owed.is_empty()) {
            sync_or_note(srv, f);
        }
        // The current file's new bytes go to it on the writer's next turn,
        // after the base is in place: written now, they could come after a
        // gap in the previous file if the rewrite failed.
        if let Err(e) = self.install(srv, tmp, rdb) {
            srv.log.put_back(owed, buf);
            return Err(e);
        }
        srv.log.put_back(Vec::new(), buf);
        if !owed.is_empty() {
            tracing::warn!(
                "{} bytes the replaced AOF file could not take are in the new base",
                owed.len()
            );
        }
        Ok(())
    }

    /// The rest of [`Files::finish`]: the base renamed into place and the
    /// manifest switched to it.
    fn install(&mut self, srv: &Shared, tmp: &Path, rdb: bool) -> Result<(), String> {
        // The base's number counts successful rewrites, apart from the
        // increments' (as Redis numbers them): a failed rewrite's retry
        // names the same base.
        let mut m = self.manifest.clone();
        let (base_name, base_seq) = m.next_base(&self.fname, rdb);
        fs::rename(tmp, self.adir.join(&base_name)).map_err(|e| e.to_string())?;
        // The increments that stay: the one being written (the temporary
        // one, now numbered, for an AOF turned on at runtime), or none
        // while the AOF is off.
        let keep: Vec<(String, u64)> = match self.mode {
            Mode::On => m.incrs.last().cloned().into_iter().collect(),
            Mode::Off => Vec::new(),
            Mode::Temp => {
                let (name, seq) = m.next_incr(&self.fname);
                let temp = temp_incr_name(&self.fname);
                if let Err(e) = fs::rename(self.adir.join(&temp), self.adir.join(&name)) {
                    let _ = fs::remove_file(self.adir.join(&base_name));
                    return Err(format!(
                        "Error trying to rename the temporary AOF incr file {temp} into {name}: {e}"
                    ));
                }
                tracing::info!(
                    "Successfully renamed the temporary AOF incr file {temp} into {name}"
                );
                vec![(name, seq)]
            }
        };
        // The replaced files become history, in Redis's order: the older
        // increments, the old base, earlier history.
        let mut history: Vec<(String, u64)> = m
            .incrs
            .iter()
            .filter(|f| !keep.contains(f))
            .cloned()
            .collect();
        if !m.base.is_empty() && m.base != base_name {
            history.push((m.base.clone(), m.base_seq));
        }
        history.extend(m.history.iter().cloned());
        m.base = base_name.clone();
        m.base_seq = base_seq;
        m.history = history;
        m.incrs = keep;
        write_atomic(&self.manifest_path, m.text().as_bytes()).map_err(|e| e.to_string())?;
        self.manifest = m;
        if self.mode == Mode::Temp {
            self.mode = Mode::On;
            WAIT_REWRITE.store(false, Ordering::SeqCst);
        }
        if AUTO_GC.load(Ordering::Relaxed) {
            self.collect_history()?;
        }
        self.old = None;
        let base_len = fs::metadata(self.adir.join(&base_name))
            .map(|m| m.len())
            .unwrap_or(0);
        let cur_len = self.cur.metadata().map(|m| m.len()).unwrap_or(0);
        self.base.store(base_len, Ordering::Relaxed);
        self.size.store(base_len + cur_len, Ordering::Relaxed);
        // Nothing is owed any more: a write failure is over.
        crate::persistence::aof_write_ok(srv);
        Ok(())
    }
}

/// How long an everysec fsync may hold the next writes back before it
/// counts as delayed (INFO aof_delayed_fsync), as Redis's 2 s.
const FSYNC_DELAY_LIMIT: Duration = Duration::from_secs(2);

/// fsync errors Redis ignores for the AOF: the file cannot be synced at
/// all (EINVAL: a special file) or is gone (EBADF); nothing to wait for.
fn fsync_ignored(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EINVAL | libc::EBADF))
}

/// Fsyncs a file on the way to replacing it: a failure refuses writes as
/// any AOF fsync failure does, but the switch goes on (the new base will
/// hold what the file has).
fn sync_or_note(srv: &Shared, f: &File) {
    if let Err(e) = f.sync_data() {
        if !fsync_ignored(&e) {
            crate::persistence::aof_fsync_failed(srv, &e);
        }
    }
}

impl Files {
    /// Handles on the files to fsync without holding the files' lock, so
    /// connections can write while a background fsync runs elsewhere.
    fn handles_to_sync(&self) -> std::io::Result<Vec<File>> {
        [Some(&self.cur), self.old.as_ref()]
            .into_iter()
            .flatten()
            .map(File::try_clone)
            .collect()
    }
}

/// The writer's fsync of the current file (and the previous one during a
/// rewrite), with what INFO and the latency monitor show of it. The
/// caller set `aof_fsync_running` for an everysec fsync.
fn fsync_files(srv: &Shared, handles: &[File], policy: AppendFsync) -> std::io::Result<()> {
    let background = policy == AppendFsync::EverySec;
    let began = Instant::now();
    let r = handles
        .iter()
        .filter_map(|f| f.sync_data().err())
        .find(|e| !fsync_ignored(e))
        .map_or(Ok(()), Err);
    srv.hot.aof_fsync_running.store(false, Ordering::Relaxed);
    let took = began.elapsed();
    if policy == AppendFsync::Always {
        let now_s = crate::keyspace::now_ms() / 1000;
        srv.latency
            .observe("aof-fsync-always", took.as_millis() as u64, now_s);
    }
    // The writes logged meanwhile waited for this fsync. Redis postpones
    // them while its background fsync runs, for 2 s at most, and counts
    // each time it stops waiting; here they wait on this thread, and a
    // wait of 2 s or more counts.
    if background && took >= FSYNC_DELAY_LIMIT && srv.log.with_buf(|b| !b.buf.is_empty()) {
        crate::server::stats::Stats::add(&srv.stats.aof_delayed_fsync, 1);
        tracing::info!(
            "An AOF fsync took {:.1} s (is the disk busy?): the writes logged meanwhile waited for it",
            took.as_secs_f64()
        );
    }
    r
}

/// Whether no-appendfsync-on-rewrite holds the fsync back now: a save of
/// any kind runs (BGSAVE, this AOF's rewrite, a replica's or a
/// migration's snapshot) and no caller forces the sync.
fn fsync_held(srv: &Shared, rewriting: bool) -> bool {
    srv.hot.no_fsync_on_rewrite.load(Ordering::Relaxed)
        && !srv.hot.aof_sync_forced.load(Ordering::SeqCst)
        && (rewriting
            || srv.bgsave_running.load(Ordering::Relaxed)
            || srv.base_rewrite_running.load(Ordering::Relaxed)
            || srv.log.snapshot_busy.load(Ordering::Relaxed))
}

fn writer(
    srv: Arc<Shared>,
    shared_files: Arc<Mutex<Files>>,
    cmds: std::sync::mpsc::Receiver<WriterCmd>,
) {
    let mut last_sync = Instant::now();
    let mut last_error_log: Option<Instant> = None;
    loop {
        while let Ok(cmd) = cmds.try_recv() {
            let mut files = shared_files.lock();
            match cmd {
                WriterCmd::Switch(ack) => {
                    let _ = ack.send(files.switch(&srv));
                }
                WriterCmd::Finish(tmp, rdb, ack) => {
                    let _ = ack.send(files.finish(&srv, &tmp, rdb));
                }
                WriterCmd::CollectHistory(ack) => {
                    let _ = ack.send(files.collect_history());
                }
            }
        }
        let eager = srv.hot.fsync_always.load(Ordering::Relaxed);
        srv.log.set_eager(eager);
        srv.log
            .wait_for_bytes(Duration::from_millis(if eager { 100 } else { 2 }));
        let mut files = shared_files.lock();
        // Taken under the files' lock: a connection writing the log out
        // meanwhile cannot put later bytes in the file first.
        let (buf, old, off) = srv.log.take();
        let wrote = !buf.is_empty() || !old.is_empty();
        // A rewrite is running while the previous file still takes writes
        // (Redis's "active child").
        let rewriting = files.old.is_some();
        let writing = Instant::now();
        if let Err((e, old, buf)) = files.append_all(old, buf) {
            drop(files);
            // Nothing is lost: what was not written goes back in front of
            // the log and is tried again; meanwhile writes are refused
            // (MISCONF), as in Redis.
            // Logged once in 30 s while it lasts, as Redis rate-limits it.
            if last_error_log.is_none_or(|t: Instant| t.elapsed() >= Duration::from_secs(30)) {
                tracing::error!("Error writing to the AOF file: {e}");
                last_error_log = Some(Instant::now());
            }
            srv.log.put_back(old, buf);
            crate::persistence::aof_write_failed(&srv, &e);
            std::thread::sleep(Duration::from_millis(100));
            continue;
        }
        if wrote {
            files.unsynced = true;
            crate::persistence::aof_write_ok(&srv);
            last_error_log = None;
            observe_write(&srv, writing, rewriting);
        }
        // Read each turn so CONFIG SET appendfsync takes effect.
        let policy = if eager {
            AppendFsync::Always
        } else {
            srv.config.read().appendfsync()
        };
        let due = match policy {
            AppendFsync::Always => files.unsynced,
            AppendFsync::EverySec => {
                files.unsynced && last_sync.elapsed() >= Duration::from_secs(1)
            }
            AppendFsync::No => false,
        };
        // no-appendfsync-on-rewrite: while a save or rewrite runs, the
        // written bytes are acknowledged unsynced; the fsync waits for
        // its end (Redis skips it while a child process is active).
        let held = due && fsync_held(&srv, rewriting);
        if due && !held {
            // Connections do not write while an everysec fsync runs (as
            // Redis postpones its write then): the writer catches up after.
            srv.hot
                .aof_fsync_running
                .store(policy == AppendFsync::EverySec, Ordering::SeqCst);
            files.unsynced = false;
            let handles = files.handles_to_sync();
            drop(files);
            let r = handles.and_then(|h| fsync_files(&srv, &h, policy));
            srv.hot.aof_fsync_running.store(false, Ordering::SeqCst);
            files = shared_files.lock();
            match r {
                // Tried again in a second (everysec, as Redis's next
                // fsync), or soon while `always` keeps its clients waiting.
                Err(e) => {
                    files.unsynced = true;
                    crate::persistence::aof_fsync_failed(&srv, &e);
                    srv.log.fsync_failures.fetch_add(1, Ordering::SeqCst);
                    if policy == AppendFsync::Always {
                        srv.log.unsynced.store(true, Ordering::SeqCst);
                        drop(files);
                        std::thread::sleep(Duration::from_millis(100));
                        continue;
                    }
                }
                Ok(()) => crate::persistence::aof_fsync_ok(&srv),
            }
            last_sync = Instant::now();
        }
        let unsynced = files.unsynced;
        srv.log.unsynced.store(unsynced, Ordering::SeqCst);
        drop(files);
        if !unsynced || policy != AppendFsync::Always || held {
            // Written bytes are what SIGTERM needs; `always` waits for fsync.
            srv.log.synced.fetch_max(off, Ordering::SeqCst);
            srv.log.synced_notify.notify_waiters();
        }
    }
}

/// Latency events for a write to the AOF, with Redis's names (LATENCY
/// LATEST, DOCTOR).
fn observe_write(srv: &Shared, began: Instant, rewriting: bool) {
    let ms = began.elapsed().as_millis() as u64;
    if ms == 0 {
        return;
    }
    let now_s = crate::keyspace::now_ms() / 1000;
    let which = if rewriting {
        "aof-write-active-child"
    } else {
        "aof-write-alone"
    };
    srv.latency.observe(which, ms, now_s);
    srv.latency.observe("aof-write", ms, now_s);
}

/// Writes the log out to the AOF up to `target` before a connection sends
/// the replies to the writes that logged it, as redis-server writes its
/// AOF before replying: an acknowledged write is then in the file (the
/// page cache) and survives the process being killed. Under `appendfsync
/// always` replies wait for the writer's fsync instead ([`wait_synced`]).
///
/// The first connection to get here writes what every connection logged
/// so far; the others find their bytes written. While an everysec fsync
/// runs, the write is left to the writer thread, as Redis postpones its
/// write then; and after a failed write the writer alone tries again.
pub fn write_through(srv: &Shared, target: u64) {
    if srv.log.synced.load(Ordering::Acquire) >= target
        || srv.hot.aof_fsync_running.load(Ordering::Relaxed)
        || srv.hot.aof_write_block.load(Ordering::Relaxed)
    {
        return;
    }
    let Some(shared_files) = srv.aof.lock().as_ref().map(|h| h.files.clone()) else {
        return;
    };
    let mut files = shared_files.lock();
    if srv.log.synced.load(Ordering::Acquire) >= target
        || srv.hot.aof_fsync_running.load(Ordering::SeqCst)
    {
        return;
    }
    let (buf, old, off) = srv.log.take();
    if buf.is_empty() && old.is_empty() {
        return;
    }
    let rewriting = files.old.is_some();
    let writing = Instant::now();
    match files.append_all(old, buf) {
        Ok(()) => {
            files.unsynced = true;
            srv.log.unsynced.store(true, Ordering::SeqCst);
            drop(files);
            observe_write(srv, writing, rewriting);
            // Under `always` (set meanwhile) the writer's fsync says when
            // the bytes count; otherwise written is what counts.
            if !srv.hot.fsync_always.load(Ordering::SeqCst) {
                srv.log.synced.fetch_max(off, Ordering::SeqCst);
            }
        }
        Err((e, old, buf)) => {
            // The writer logs the error and tries again.
            srv.log.put_back(old, buf);
            drop(files);
            crate::persistence::aof_write_failed(srv, &e);
        }
    }
}

fn ask_writer(
    srv: &Shared,
    make: impl FnOnce(std::sync::mpsc::Sender<Result<(), String>>) -> WriterCmd,
) -> Result<(), String> {
    let (tx, rx) = std::sync::mpsc::channel();
    {
        let g = srv.aof.lock();
        let h = g.as_ref().ok_or("AOF is off")?;
        h.cmds.lock().send(make(tx)).map_err(|e| e.to_string())?;
    }
    srv.log.wake.notify_one();
    rx.recv_timeout(Duration::from_secs(60))
        .map_err(|e| e.to_string())?
}

pub(crate) fn writer_switch(srv: &Shared) -> Result<(), String> {
    ask_writer(srv, WriterCmd::Switch)
}

/// aof-disable-auto-gc turned off: the history files go now, by the
/// writer when the AOF is on, else straight from the directory.
pub fn collect_history(srv: &Shared) -> Result<(), String> {
    if srv.aof.lock().is_some() {
        return ask_writer(srv, WriterCmd::CollectHistory);
    }
    let (dir, dirname, fname) = {
        let c = srv.config.read();
        (
            PathBuf::from(c.dir()),
            c.appenddirname(),
            c.appendfilename(),
        )
    };
    let adir = dir.join(dirname);
    let path = adir.join(format!("{fname}.manifest"));
    let Ok(mut m) = parse_manifest(&path) else {
        return Ok(());
    };
    if m.history.is_empty() {
        return Ok(());
    }
    for (f, _) in std::mem::take(&mut m.history) {
        tracing::info!("Removing the history file {f} in the background");
        let _ = fs::remove_file(adir.join(f));
    }
    write_atomic(&path, m.text().as_bytes()).map_err(|e| e.to_string())
}

pub(crate) fn writer_finish(srv: &Shared, tmp: &Path, rdb: bool) -> Result<(), String> {
    let tmp = tmp.to_path_buf();
    ask_writer(srv, |ack| WriterCmd::Finish(tmp, rdb, ack))
}

/// Waits until the effect log is durable up to `offset` (appendfsync always).
pub async fn wait_synced(srv: &Shared, offset: u64) {
    loop {
        let notified = srv.log.synced_notify.notified();
        if srv.log.synced.load(Ordering::SeqCst) >= offset {
            return;
        }
        srv.log.wake.notify_one();
        let _ = tokio::time::timeout(Duration::from_millis(50), notified).await;
    }
}

/// Makes sure everything logged so far is written and fsynced (shutdown,
/// turning the AOF off, DEBUG LOADAOF), whatever the fsync policy, as
/// Redis's forced flush and fsync.
pub fn flush_and_sync(srv: &Shared) -> std::io::Result<()> {
    if srv.aof.lock().is_none() {
        return Ok(());
    }
    let target = srv.log.offset();
    let deadline = Instant::now() + Duration::from_secs(10);
    let failures = srv.log.fsync_failures.load(Ordering::SeqCst);
    let always = srv.hot.fsync_always.load(Ordering::Relaxed);
    srv.hot.fsync_always.store(true, Ordering::SeqCst);
    srv.hot.aof_sync_forced.store(true, Ordering::SeqCst);
    let mut failed = false;
    while (srv.log.synced.load(Ordering::SeqCst) < target
        || srv.log.unsynced.load(Ordering::SeqCst))
        && Instant::now() < deadline
    {
        // A failing disk is not waited for (Redis logs the failed fsync
        // and goes on); the writer has logged it.
        if srv.log.fsync_failures.load(Ordering::SeqCst) != failures {
            failed = true;
            break;
        }
        srv.log.wake.notify_one();
        std::thread::sleep(Duration::from_millis(2));
    }
    srv.hot.aof_sync_forced.store(false, Ordering::SeqCst);
    srv.hot.fsync_always.store(always, Ordering::SeqCst);
    if failed {
        return Err(std::io::Error::other("the AOF fsync failed"));
    }
    Ok(())
}

/// `CONFIG SET appendonly yes` on a running node: appends go to a
/// temporary increment, and a rewrite writes the dataset into a new base;
/// only when it succeeds do both join the manifest (Redis's
/// AOF_WAIT_REWRITE), so the files on disk never name a base without the
/// dataset. With another save running, the rewrite is scheduled.
pub fn enable_at_runtime(srv: &Arc<Shared>) -> Result<(), String> {
    WAIT_REWRITE.store(true, Ordering::SeqCst);
    if let Err(e) = start_logging(srv) {
        WAIT_REWRITE.store(false, Ordering::SeqCst);
        return Err(e);
    }
    crate::persistence::aof_reopened(srv);
    if crate::persistence::schedule::any_running(srv) {
        tracing::warn!("AOF was enabled but there is already another background operation. An AOF background was scheduled to start when possible.");
        srv.aof_rewrite_scheduled.store(true, Ordering::SeqCst);
        return Ok(());
    }
    start_rewrite(srv)
}

/// The writer's files, if the AOF was on at some point.
fn files_of(srv: &Shared) -> Option<Arc<Mutex<Files>>> {
    srv.aof.lock().as_ref().map(|h| h.files.clone())
}

fn start_logging(srv: &Arc<Shared>) -> Result<(), String> {
    if let Some(files) = files_of(srv) {
        // Re-enabled after a CONFIG SET appendonly no: what changed while
        // off was not logged, so the next base must hold it first.
        let mut f = files.lock();
        let temp = f.adir.join(temp_incr_name(&f.fname));
        f.cur = File::create(temp).map_err(|e| e.to_string())?;
        f.old = None;
        f.mode = Mode::Temp;
        drop(f);
        srv.log.set_active(true);
        return Ok(());
    }
    let (dir, dirname, fname) = {
        let c = srv.config.read();
        (
            PathBuf::from(c.dir()),
            c.appenddirname(),
            c.appendfilename(),
        )
    };
    let adir = dir.join(&dirname);
    fs::create_dir_all(&adir).map_err(|e| e.to_string())?;
    let manifest_path = adir.join(format!("{fname}.manifest"));
    // As Redis, which reads the manifest at start-up with the AOF on or
    // off: the first rewrite numbers on from it, and the files it names
    // (an older dataset) become history. An unreadable one names nothing
    // usable and is replaced.
    let m = parse_manifest(&manifest_path).unwrap_or_default();
    start_writer(srv, adir, fname, manifest_path, m, Mode::Temp).map_err(|e| e.to_string())
}

/// A rewrite of an AOF turned on at runtime failed: the temporary
/// increment goes (the next try starts it over) and the rewrite is
/// scheduled again, as Redis does.
fn abandon_temp_incr(srv: &Shared) {
    let Some(files) = files_of(srv) else {
        return;
    };
    let f = files.lock();
    if f.mode != Mode::Temp {
        return;
    }
    let name = temp_incr_name(&f.fname);
    tracing::info!("Removing the temp incr aof file {name} in the background");
    let _ = fs::remove_file(f.adir.join(&name));
    drop(f);
    srv.aof_rewrite_scheduled.store(true, Ordering::SeqCst);
}

/// `CONFIG SET appendonly no`: stop logging, after making what was logged
/// durable. The files stay; a rewrite now writes a base alone.
pub fn disable_at_runtime(srv: &Shared) {
    WAIT_REWRITE.store(false, Ordering::SeqCst);
    let _ = flush_and_sync(srv);
    srv.log.set_active(false);
    if let Some(files) = files_of(srv) {
        files.lock().mode = Mode::Off;
    }
}

/// BGREWRITEAOF while the AOF is off: like Redis, write a base file (an
/// RDB preamble) and a manifest listing only it, in the background.
fn rewrite_base_only(srv: &Arc<Shared>) -> Result<(), String> {
    let Some(hold) = crate::persistence::SnapshotHold::take(srv) else {
        return Err("Background append only file rewriting already in progress".into());
    };
    let srv2 = srv.clone();
    let (cut, cut_taken) = crate::persistence::cut_signal();
    // INFO shows the rewrite in progress until the files are in place.
    srv.base_rewrite_running.store(true, Ordering::SeqCst);
    crate::persistence::aof_rewrite_started(srv);
    let started = std::thread::Builder::new()
        .name("aof-rewrite".into())
        .spawn(move || {
            crate::affinity::pin(crate::affinity::Role::Rewrite);
            let now = crate::keyspace::now_ms();
            let written = write_base_only(&srv2, |w| {
                let at_cut = || cut.taken();
                crate::persistence::write_rdb_holding(hold, now, w, true, at_cut, |_| None).1
            });
            let ok = match written {
                Ok(()) => {
                    tracing::info!("Background AOF rewrite finished successfully");
                    true
                }
                Err(e) => {
                    tracing::warn!("Background AOF rewrite failed: {e}");
                    false
                }
            };
            crate::persistence::aof_rewrite_finished(&srv2, ok);
            srv2.base_rewrite_running.store(false, Ordering::SeqCst);
        });
    if let Err(e) = started {
        srv.base_rewrite_running.store(false, Ordering::SeqCst);
        crate::persistence::aof_rewrite_finished(srv, false);
        return Err(e.to_string());
    }
    cut_taken.wait();
    Ok(())
}

/// Writes the base `fill` makes and a manifest naming it alone.
fn write_base_only(
    srv: &Shared,
    fill: impl FnOnce(&mut super::savefile::SaveWriter) -> std::io::Result<()>,
) -> std::io::Result<()> {
    let (dir, dirname, fname) = {
        let c = srv.config.read();
        (
            PathBuf::from(c.dir()),
            c.appenddirname(),
            c.appendfilename(),
        )
    };
    let adir = dir.join(&dirname);
    fs::create_dir_all(&adir)?;
    let manifest_path = adir.join(format!("{fname}.manifest"));
    let old = parse_manifest(&manifest_path).ok();
    let (base, seq) = old
        .as_ref()
        .map_or((format!("{fname}.1.base.rdb"), 1), |m| {
            m.next_base(&fname, true)
        });
    // With the AOF off every old file is replaced: history, in Redis's
    // order (the increments, the old base, earlier history).
    let history: Vec<(String, u64)> = old
        .map(|old| {
            let mut h: Vec<(String, u64)> = old.incrs;
            if !old.base.is_empty() {
                h.push((old.base, old.base_seq));
            }
            h.extend(old.history);
            h.retain(|(f, _)| *f != base);
            h
        })
        .unwrap_or_default();
    let m = Manifest {
        base,
        base_seq: seq,
        history,
        incrs: Vec::new(),
        incr_seq: 0,
    };
    write_atomic_with(&adir.join(&m.base), super::savefile::rdb_autosync(), fill)?;
    write_atomic(&manifest_path, m.text().as_bytes())?;
    if AUTO_GC.load(Ordering::Relaxed) {
        collect_history(srv).map_err(std::io::Error::other)?;
    }
    Ok(())
}

/// BGREWRITEAOF: starts a background rewrite.
pub fn start_rewrite(srv: &Arc<Shared>) -> Result<(), String> {
    let (flag, tmp) = {
        let g = srv.aof.lock();
        let Some(h) = g.as_ref() else {
            drop(g);
            return rewrite_base_only(srv);
        };
        (
            h.rewriting.clone(),
            h.tmp_dir
                .join(format!("temp-rewriteaof-bg-{}.aof", std::process::id())),
        )
    };
    if flag.swap(true, Ordering::SeqCst) {
        return Err("Background append only file rewriting already in progress".into());
    }
    let srv2 = srv.clone();
    let (cut, cut_taken) = crate::persistence::cut_signal();
    crate::persistence::aof_rewrite_started(srv);
    let started = std::thread::Builder::new()
        .name("aof-rewrite".into())
        .spawn(move || {
            crate::affinity::pin(crate::affinity::Role::Rewrite);
            let t = Instant::now();
            let ok = match crate::persistence::rewrite::run(srv2.clone(), tmp, cut) {
                Ok(()) => {
                    tracing::info!(
                        "Background AOF rewrite finished successfully in {:.3} s",
                        t.elapsed().as_secs_f64()
                    );
                    true
                }
                Err(e) => {
                    tracing::warn!("Background AOF rewrite failed: {e}");
                    false
                }
            };
            if !ok {
                abandon_temp_incr(&srv2);
            }
            crate::persistence::aof_rewrite_finished(&srv2, ok);
            flag.store(false, Ordering::SeqCst);
        });
    if let Err(e) = started {
        crate::persistence::aof_rewrite_finished(srv, false);
        return Err(e.to_string());
    }
    cut_taken.wait();
    Ok(())
}

/// Failed rewrites in a row from which automatic ones are held back
/// (Redis's AOF_REWRITE_LIMITE_THRESHOLD).
const LIMIT_AFTER_FAILURES: u64 = 3;
/// The longest wait between held-back tries, in minutes.
const LIMIT_MAX_MINUTES: i64 = 60;

/// Redis's brake on automatic rewrites that keep failing (a full disk
/// would otherwise start one every cron tick): from the third failure in
/// a row, an automatic rewrite waits a minute, then 2, 4, … up to an hour
/// between tries. BGREWRITEAOF is never held back; a success lifts the
/// brake. Pure: the caller passes the failure count and the time.
#[derive(Default, Debug)]
pub struct RewriteLimit {
    delay_minutes: i64,
    /// Unix seconds before which no automatic rewrite starts (0: none set).
    next_at: i64,
}

/// What [`RewriteLimit::check`] decides.
#[derive(Debug, PartialEq, Eq)]
pub enum Limited {
    No,
    Yes,
    /// Held back from now for this many minutes (to be logged).
    For(i64),
}

impl RewriteLimit {
    pub fn check(&mut self, failures: u64, now_s: i64) -> Limited {
        if failures < LIMIT_AFTER_FAILURES {
            *self = RewriteLimit::default();
            return Limited::No;
        }
        if self.next_at != 0 {
            if now_s < self.next_at {
                return Limited::Yes;
            }
            // The wait is over: one try, then a longer wait if it fails.
            self.next_at = 0;
            return Limited::No;
        }
        self.delay_minutes = (self.delay_minutes * 2).clamp(1, LIMIT_MAX_MINUTES);
        self.next_at = now_s + self.delay_minutes * 60;
        Limited::For(self.delay_minutes)
    }
}

/// Starts a rewrite when the AOF has grown past the configured thresholds.
pub fn maybe_auto_rewrite(srv: &Arc<Shared>) {
    let (pct, min) = {
        let c = srv.config.read();
        (
            c.auto_aof_rewrite_percentage(),
            c.auto_aof_rewrite_min_size(),
        )
    };
    let (size, base, busy) = match srv.aof.lock().as_ref() {
        Some(h) => (h.current_size(), h.base_size(), h.rewriting()),
        None => return,
    };
    // Not while another save runs or a rewrite waits for one (as Redis).
    if busy
        || pct == 0
        || size <= min
        || srv.aof_rewrite_scheduled.load(Ordering::SeqCst)
        || super::schedule::any_running(srv)
    {
        return;
    }
    let base = base.max(1);
    if (size.saturating_sub(base)) * 100 / base >= pct {
        let failures = crate::server::stats::Stats::get(&srv.stats.aof_rewrite_failures);
        match srv
            .aof_rewrite_limit
            .lock()
            .check(failures, crate::keyspace::now_ms() / 1000)
        {
            Limited::No => {}
            Limited::Yes => return,
            Limited::For(minutes) => {
                tracing::warn!(
                    "Background AOF rewrite has repeatedly failed and triggered the limit, will retry in {minutes} minutes"
                );
                return;
            }
        }
        tracing::info!(
            "Starting automatic rewriting of AOF on {}% growth",
            (size - base) * 100 / base
        );
        let _ = start_rewrite(srv);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn automatic_rewrites_that_keep_failing_wait_longer_each_time() {
        let mut l = RewriteLimit::default();
        // Under three failures in a row, nothing is held back.
        assert_eq!(l.check(2, 1_000), Limited::No);
        // The third starts a minute's wait, logged once.
        assert_eq!(l.check(3, 1_000), Limited::For(1));
        assert_eq!(l.check(3, 1_059), Limited::Yes);
        // Then one try; its failure doubles the wait.
        assert_eq!(l.check(3, 1_060), Limited::No);
        assert_eq!(l.check(4, 1_061), Limited::For(2));
        assert_eq!(l.check(4, 1_061 + 119), Limited::Yes);
        assert_eq!(l.check(4, 1_061 + 120), Limited::No);
        // The wait stops growing at an hour.
        let mut t = 2_000;
        let mut last = 0;
        for _ in 0..10 {
            if let Limited::For(m) = l.check(5, t) {
                last = m;
            }
            t += 3_601;
            assert_eq!(l.check(5, t), Limited::No);
        }
        assert_eq!(last, 60);
        // A success lifts the brake and starts the count again.
        assert_eq!(l.check(0, t), Limited::No);
        assert_eq!(l.check(3, t), Limited::For(1));
    }

    #[test]
    fn a_failed_append_reports_what_stays_written() {
        // Every write to /dev/full fails with ENOSPC: nothing stays.
        let Ok(mut f) = OpenOptions::new().append(true).open("/dev/full") else {
            return;
        };
        match append_or_roll_back(&mut f, b"*1\r\n$4\r\nPING\r\n") {
            Err((e, done)) => {
                assert_eq!(e.raw_os_error(), Some(28));
                assert_eq!(done, 0);
            }
            Ok(()) => panic!("a write to /dev/full succeeded"),
        }
    }
}

#[cfg(test)]
mod manifest_tests {
    use super::{parse_manifest_text, Manifest};

    fn err(text: &str) -> &'static str {
        match parse_manifest_text(text.as_bytes()) {
            Ok(_) => "ok",
            Err((_, what)) => what,
        }
    }

    #[test]
    fn manifests_are_read_by_redis_servers_rules() {
        let good = "file a.1.base.rdb seq 1 type b\n# note\nfile a.1.incr.aof seq 1 type h\nfile a.2.incr.aof type i seq 2 extra x\n";
        let m = parse_manifest_text(good.as_bytes()).expect("good");
        assert_eq!((m.base.as_str(), m.base_seq), ("a.1.base.rdb", 1));
        assert_eq!(m.history, vec![("a.1.incr.aof".to_string(), 1)]);
        assert_eq!(m.incrs, vec![("a.2.incr.aof".to_string(), 2)]);
        let invalid = "Invalid AOF manifest file format";
        assert_eq!(err(""), "Found an empty AOF manifest");
        assert_eq!(err("file a seq 1 type i\n\nfile b seq 2 type i\n"), invalid);
        assert_eq!(err("filx a seq 1 type b\n"), invalid);
        assert_eq!(err("file a type i\n"), invalid);
        assert_eq!(err("file a seq 1 type i newkey\n"), invalid);
        assert_eq!(err("file a seq x type i\n"), invalid);
        assert_eq!(err("file a seq 1 type x\n"), "Unknown AOF file type");
        assert_eq!(
            err("file d/a seq 1 type i\n"),
            "File can't be a path, just a filename"
        );
        assert_eq!(
            err("file a seq 1 type b\nfile b seq 2 type b\n"),
            "Found duplicate base file information"
        );
        assert_eq!(
            err("file a seq 2 type i\nfile b seq 1 type i\n"),
            "Found a non-monotonic sequence number"
        );
        let long = format!("file a seq 1 type b{}\n", " file a seq 1 type b".repeat(60));
        assert_eq!(err(&long), "The AOF manifest file contains too long line");
        assert_eq!(err("file \"a seq 1 type b\n"), invalid);
    }

    /// A name with spaces, quotes or a newline (`appendfilename` may hold
    /// them) is quoted in the manifest as Redis writes it, and read back.
    #[test]
    fn odd_file_names_are_quoted_in_the_manifest() {
        let name = " file seq \n\n.aof .2.base.rdb";
        let m = Manifest {
            base: name.to_string(),
            base_seq: 2,
            incrs: vec![("plain.2.incr.aof".to_string(), 2)],
            ..Default::default()
        };
        let text = m.text();
        assert_eq!(
            text,
            "file \" file seq \\n\\n.aof .2.base.rdb\" seq 2 type b\nfile plain.2.incr.aof seq 2 type i\n"
        );
        let back = parse_manifest_text(text.as_bytes()).expect("readable");
        assert_eq!(back.base, name);
        assert_eq!(back.incrs, m.incrs);
    }

    proptest::proptest! {
        /// Whatever bytes a manifest holds, reading it never panics.
        #[test]
        fn any_manifest_bytes_are_read_or_refused(text in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..600)) {
            let _ = parse_manifest_text(&text);
        }

        /// Any file names (no `/`: a manifest names files, not paths) and
        /// sequence numbers read back as written.
        #[test]
        fn manifests_read_back_as_written(
            base in "[^/]{1,40}",
            base_seq in 1u64..u64::MAX,
            history in proptest::collection::vec(("[^/]{1,40}", 1u64..1000), 0..4),
            incr_names in proptest::collection::vec("[^/]{1,40}", 0..4),
            first_incr in 1u64..1_000_000,
        ) {
            let incrs: Vec<(String, u64)> = incr_names
                .into_iter()
                .enumerate()
                .map(|(i, n)| (n, first_incr + i as u64))
                .collect();
            let m = Manifest {
                base,
                base_seq,
                history,
                incr_seq: incrs.last().map_or(0, |i| i.1),
                incrs,
            };
            let back = parse_manifest_text(m.text().as_bytes()).expect("readable");
            proptest::prop_assert_eq!(back.base, m.base);
            proptest::prop_assert_eq!(back.base_seq, m.base_seq);
            proptest::prop_assert_eq!(back.history, m.history);
            proptest::prop_assert_eq!(back.incrs, m.incrs);
            proptest::prop_assert_eq!(back.incr_seq, m.incr_seq);
        }
    }
}
