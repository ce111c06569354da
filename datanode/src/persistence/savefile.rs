//! The file a save or a rewrite writes. With `rdb-save-incremental-fsync`
//! (RDB files) or `aof-rewrite-incremental-fsync` (an AOF rewrite's base)
//! on, as by default, it goes to disk 4 MB at a time, as Redis's rio
//! autosync does: the page cache never holds a whole snapshot's dirty
//! pages, so neither the final fsync nor the AOF's own fsyncs meanwhile
//! wait behind them.

use std::fs::File;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};

/// Redis's REDIS_AUTOSYNC_BYTES.
pub const AUTOSYNC_BYTES: u64 = 4 << 20;

/// `rdb-save-incremental-fsync`.
pub static RDB_AUTOSYNC: AtomicBool = AtomicBool::new(true);
/// `aof-rewrite-incremental-fsync`.
pub static AOF_AUTOSYNC: AtomicBool = AtomicBool::new(true);

pub struct SaveFile {
    file: File,
    autosync: bool,
    /// Bytes written so far.
    written: u64,
    /// Bytes written since the last 4 MB boundary.
    pending: u64,
}

impl SaveFile {
    pub fn new(file: File, autosync: bool) -> SaveFile {
        SaveFile {
            file,
            autosync,
            written: 0,
            pending: 0,
        }
    }

    pub fn into_inner(self) -> File {
        self.file
    }

    /// At a 4 MB boundary: starts the writeout of the window just
    /// finished and waits for the one before it, so at most two windows
    /// are in flight.
    fn hand_over(&self) -> std::io::Result<()> {
        #[cfg(target_os = "linux")]
        {
            use std::os::fd::AsRawFd;
            let fd = self.file.as_raw_fd();
            let window = AUTOSYNC_BYTES as libc::off64_t;
            let end = self.written as libc::off64_t;
            // SAFETY: a plain syscall on a file descriptor we own.
            let r = unsafe {
                libc::sync_file_range(fd, end - window, window, libc::SYNC_FILE_RANGE_WRITE)
            };
            if r == -1 {
                return Err(std::io::Error::last_os_error());
            }
            if end >= 2 * window {
                let wait = libc::SYNC_FILE_RANGE_WAIT_BEFORE
                    | libc::SYNC_FILE_RANGE_WRITE
                    | libc::SYNC_FILE_RANGE_WAIT_AFTER;
                // SAFETY: as above.
                let r = unsafe { libc::sync_file_range(fd, end - 2 * window, window, wait) };
                if r == -1 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        }
        #[cfg(not(target_os = "linux"))]
        {
            self.file.sync_data()
        }
    }
}

impl Write for SaveFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if !self.autosync {
            let n = self.file.write(buf)?;
            self.written += n as u64;
            return Ok(n);
        }
        // No write crosses a boundary, so each window is whole when handed
        // over.
        let room = (AUTOSYNC_BYTES - self.pending) as usize;
        let n = self.file.write(&buf[..buf.len().min(room)])?;
        self.written += n as u64;
        self.pending += n as u64;
        if self.pending == AUTOSYNC_BYTES {
            self.pending = 0;
            self.hand_over()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

/// How saves write: through a buffer to a [`SaveFile`].
pub type SaveWriter = std::io::BufWriter<SaveFile>;

/// A buffered [`SaveFile`] on `file`.
pub fn writer(file: File, autosync: bool) -> SaveWriter {
    std::io::BufWriter::with_capacity(1 << 16, SaveFile::new(file, autosync))
}

/// The setting for RDB files, as read now.
pub fn rdb_autosync() -> bool {
    RDB_AUTOSYNC.load(Ordering::Relaxed)
}

/// The setting for an AOF rewrite's base, as read now.
pub fn aof_autosync() -> bool {
    AOF_AUTOSYNC.load(Ordering::Relaxed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn the_bytes_arrive_whole_across_boundaries() {
        let path = std::env::temp_dir().join(format!("savefile-test-{}", std::process::id()));
        let data: Vec<u8> = (0..(AUTOSYNC_BYTES as usize * 2 + 12345))
            .map(|i| (i % 251) as u8)
            .collect();
        let mut w = writer(File::create(&path).expect("create"), true);
        for chunk in data.chunks(1_000_003) {
            w.write_all(chunk).expect("write");
        }
        let f = w.into_inner().map_err(|e| e.into_error()).expect("flush");
        assert_eq!(f.written, data.len() as u64);
        let mut back = Vec::new();
        File::open(&path)
            .expect("open")
            .read_to_end(&mut back)
            .expect("read");
        let _ = std::fs::remove_file(&path);
        assert!(back == data);
    }
}
