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
    #[error("Bad manifest {0}: {1}")]
    Manifest(String, String),
}

/// What INFO and BGREWRITEAOF see of the AOF.
pub struct AofHandle {
    rewriting: AtomicBool,
    size: Arc<AtomicU64>,
    base: u64,
}

impl AofHandle {
    pub fn rewriting(&self) -> bool {
        self.rewriting.load(Ordering::Relaxed)
    }
    pub fn current_size(&self) -> u64 {
        self.size.load(Ordering::Relaxed)
    }
    pub fn base_size(&self) -> u64 {
        self.base
    }
}

struct Manifest {
    base: String,
    incrs: Vec<String>,
}

fn parse_manifest(path: &Path) -> Result<Manifest, AofError> {
    let text = fs::read_to_string(path)?;
    let mut base = None;
    let mut incrs = Vec::new();
    for line in text
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
    {
        let parts: Vec<&str> = line.split_whitespace().collect();
        let get = |k: &str| {
            parts
                .chunks(2)
                .find(|c| c.len() == 2 && c[0] == k)
                .map(|c| c[1].to_string())
        };
        let (Some(file), Some(kind)) = (get("file"), get("type")) else {
            return Err(AofError::Manifest(
                path.display().to_string(),
                format!("bad line '{line}'"),
            ));
        };
        match kind.as_str() {
            "b" => base = Some(file),
            "i" => incrs.push(file),
            "h" => {}
            _ => {
                return Err(AofError::Manifest(
                    path.display().to_string(),
                    format!("unknown type in '{line}'"),
                ))
            }
        }
    }
    let base = base.unwrap_or_default();
    Ok(Manifest { base, incrs })
}

/// Writes `data` to `path` atomically: temp file, fsync, rename, fsync dir.
pub fn write_atomic(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    {
        let mut f = File::create(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
    }
    fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}

/// Replays one file; returns the number of commands run.
fn replay(
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
    if data.starts_with(b"REDIS") {
        return Err(AofError::Corrupt {
            file: name,
            offset: 0,
            reason: "RDB preamble not supported yet".into(),
        });
    }
    let addr: std::net::SocketAddr = ([127, 0, 0, 1], 0).into();
    let mut client = new_client(srv, addr, addr);
    client.authenticated = true;
    let mut out = Vec::new();
    let mut actions: Vec<Action> = Vec::new();
    let mut ranges = Vec::new();
    let mut scratch = Vec::new();
    let limits = Limits {
        max_bulk_len: i64::MAX,
        authenticated: true,
    };
    let mut pos = 0usize;
    let mut n = 0u64;
    // Offset where the last complete transaction or command ended.
    let mut good = 0usize;
    while pos < data.len() {
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
                out.clear();
                execute(srv, &mut client, &mut out, &mut actions, &args);
                actions.clear();
                pos += consumed;
                n += 1;
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

/// Loads the AOF (creating it when missing) and starts the writer thread.
pub fn open(srv: &Arc<Shared>) -> Result<(), AofError> {
    let (dir, dirname, fname, fsync, truncated_ok) = {
        let c = srv.config.read();
        (
            PathBuf::from(c.dir()),
            c.appenddirname(),
            c.appendfilename(),
            c.appendfsync(),
            c.aof_load_truncated(),
        )
    };
    let adir = dir.join(&dirname);
    fs::create_dir_all(&adir)?;
    let manifest_path = adir.join(format!("{fname}.manifest"));
    let manifest = if manifest_path.exists() {
        parse_manifest(&manifest_path)?
    } else {
        let m = Manifest {
            base: format!("{fname}.1.base.aof"),
            incrs: vec![format!("{fname}.1.incr.aof")],
        };
        File::create(adir.join(&m.base))?.sync_all()?;
        File::create(adir.join(&m.incrs[0]))?.sync_all()?;
        write_atomic(
            &manifest_path,
            format!(
                "file {} seq 1 type b\nfile {} seq 1 type i\n",
                m.base, m.incrs[0]
            )
            .as_bytes(),
        )?;
        m
    };
    let start = Instant::now();
    let mut total = 0;
    let files: Vec<&String> = std::iter::once(&manifest.base)
        .filter(|b| !b.is_empty())
        .chain(manifest.incrs.iter())
        .collect();
    for (i, f) in files.iter().enumerate() {
        total += replay(srv, &adir.join(f), truncated_ok, i + 1 == files.len())?;
    }
    tracing::info!(
        "DB loaded from append only file: {:.3} seconds ({total} commands)",
        start.elapsed().as_secs_f64()
    );
    let incr = manifest.incrs.last().cloned().ok_or_else(|| {
        AofError::Manifest(manifest_path.display().to_string(), "no incr file".into())
    })?;
    let incr_path = adir.join(incr);
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&incr_path)?;
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
    *srv.aof.lock() = Some(AofHandle {
        rewriting: AtomicBool::new(false),
        size: size.clone(),
        base: base_size,
    });
    let srv2 = srv.clone();
    std::thread::Builder::new()
        .name("aof-writer".into())
        .spawn(move || writer(srv2, file, fsync, size))?;
    Ok(())
}

fn writer(srv: Arc<Shared>, mut file: File, fsync: AppendFsync, size: Arc<AtomicU64>) {
    let mut last_sync = Instant::now();
    let mut unsynced = false;
    loop {
        let (buf, off) = srv.log.take(Duration::from_millis(100));
        if !buf.is_empty() {
            if let Err(e) = file.write_all(&buf) {
                tracing::error!("Error writing to the AOF file: {e}");
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
            size.fetch_add(buf.len() as u64, Ordering::Relaxed);
            unsynced = true;
        }
        let policy = if srv.hot.fsync_always.load(Ordering::Relaxed) {
            AppendFsync::Always
        } else {
            fsync
        };
        let due = match policy {
            AppendFsync::Always => unsynced,
            AppendFsync::EverySec => unsynced && last_sync.elapsed() >= Duration::from_secs(1),
            AppendFsync::No => false,
        };
        if due {
            if let Err(e) = file.sync_data() {
                tracing::error!("Error syncing the AOF file: {e}");
                continue;
            }
            last_sync = Instant::now();
            unsynced = false;
        }
        if !unsynced || policy != AppendFsync::Always {
            // Written bytes are what SIGTERM needs; `always` waits for fsync.
            srv.log.synced.fetch_max(off, Ordering::SeqCst);
            srv.log.synced_notify.notify_waiters();
        }
    }
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

/// Makes sure everything logged so far is written and fsynced (shutdown).
pub fn flush_and_sync(srv: &Shared) -> std::io::Result<()> {
    if srv.aof.lock().is_none() {
        return Ok(());
    }
    let target = srv.log.offset();
    let deadline = Instant::now() + Duration::from_secs(10);
    let always = srv.hot.fsync_always.load(Ordering::Relaxed);
    srv.hot.fsync_always.store(true, Ordering::SeqCst);
    while srv.log.synced.load(Ordering::SeqCst) < target && Instant::now() < deadline {
        srv.log.wake.notify_one();
        std::thread::sleep(Duration::from_millis(2));
    }
    srv.hot.fsync_always.store(always, Ordering::SeqCst);
    Ok(())
}

/// BGREWRITEAOF.
pub fn start_rewrite(srv: &Shared) -> Result<(), String> {
    if srv.aof.lock().is_none() {
        return Err("Background append only file rewriting is only possible with appendonly yes (not implemented otherwise)".into());
    }
    Err("AOF rewrite is not implemented yet".into())
}
