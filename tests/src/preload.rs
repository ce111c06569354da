//! A small C library a test preloads into a server (LD_PRELOAD) to slow,
//! fail or count some of its system calls: the disk and socket conditions
//! no loopback test could cause otherwise. Built with `cc`, which the Lua
//! build needs anyway.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The LD_PRELOAD library of [`shim`], built in a temporary
/// directory, and the environment that loads it: `files` are variables
/// naming a file there (a flag, a counter), `values` plain ones.
pub struct Preload {
    dir: tempfile::TempDir,
    env: Vec<(&'static str, String)>,
}

impl Preload {
    pub fn new(files: &[(&'static str, &str)], values: &[(&'static str, &str)]) -> Preload {
        let dir = tempfile::tempdir().expect("tempdir");
        let lib = shim(dir.path());
        let path = |p: PathBuf| p.to_str().expect("utf-8 path").to_string();
        let mut env = vec![("LD_PRELOAD", path(lib))];
        env.extend(files.iter().map(|(k, f)| (*k, path(dir.path().join(f)))));
        env.extend(values.iter().map(|(k, v)| (*k, v.to_string())));
        Preload { dir, env }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn env(&self) -> Vec<(&str, &str)> {
        self.env.iter().map(|(k, v)| (*k, v.as_str())).collect()
    }
}

/// A library for LD_PRELOAD, so a test can make a server's system calls
/// slow or failing on demand, or count them:
/// - `fdatasync` takes SLOTKV_FDATASYNC_MS milliseconds more, waits while
///   the file named by SLOTKV_SLOW_FDATASYNC exists (20 s at most), then
///   fails with EIO while the one named by SLOTKV_FAIL_FDATASYNC exists:
///   the AOF's fsync (both servers use fdatasync for it) slow or failing,
///   as a busy or dying disk makes it;
/// - `sync_file_range` appends a byte to the file named by
///   SLOTKV_COUNT_SYNC_FILE_RANGE for each call;
/// - `setsockopt` turning TCP_NODELAY off appends a byte to the file named
///   by SLOTKV_COUNT_NODELAY_OFF, and one setting SO_MARK a line with the
///   mark to the file named by SLOTKV_LOG_SO_MARK.
fn shim(dir: &Path) -> PathBuf {
    const SRC: &str = r#"
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>
static void count_in(const char *var) {
    const char *count = getenv(var);
    if (count) {
        int c = open(count, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (c >= 0) {
            if (write(c, "x", 1) < 0) {
            }
            close(c);
        }
    }
}
int setsockopt(int fd, int level, int name, const void *value, socklen_t len) {
    if (level == IPPROTO_TCP && name == TCP_NODELAY && len >= (socklen_t)sizeof(int)
        && *(const int *)value == 0) {
        count_in("SLOTKV_COUNT_NODELAY_OFF");
    }
    const char *marks = getenv("SLOTKV_LOG_SO_MARK");
    if (marks && level == SOL_SOCKET && name == SO_MARK && len >= (socklen_t)sizeof(unsigned)) {
        int c = open(marks, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (c >= 0) {
            char line[16];
            int n = snprintf(line, sizeof line, "%u\n", *(const unsigned *)value);
            if (write(c, line, n) < 0) {
            }
            close(c);
        }
    }
    int (*real)(int, int, int, const void *, socklen_t) =
        (int (*)(int, int, int, const void *, socklen_t))dlsym(RTLD_NEXT, "setsockopt");
    return real(fd, level, name, value, len);
}
int fdatasync(int fd) {
    const char *ms = getenv("SLOTKV_FDATASYNC_MS");
    if (ms) {
        usleep(atoi(ms) * 1000);
    }
    const char *slow = getenv("SLOTKV_SLOW_FDATASYNC");
    for (int i = 0; slow && i < 2000 && access(slow, F_OK) == 0; i++) {
        usleep(10000);
    }
    const char *flag = getenv("SLOTKV_FAIL_FDATASYNC");
    if (flag && access(flag, F_OK) == 0) {
        errno = EIO;
        return -1;
    }
    int (*real)(int) = (int (*)(int))dlsym(RTLD_NEXT, "fdatasync");
    return real(fd);
}
int sync_file_range(int fd, off64_t offset, off64_t nbytes, unsigned int flags) {
    count_in("SLOTKV_COUNT_SYNC_FILE_RANGE");
    int (*real)(int, off64_t, off64_t, unsigned int) =
        (int (*)(int, off64_t, off64_t, unsigned int))dlsym(RTLD_NEXT, "sync_file_range");
    return real(fd, offset, nbytes, flags);
}
"#;
    let src = dir.join("failsync.c");
    let lib = dir.join("failsync.so");
    std::fs::write(&src, SRC).expect("write shim");
    let out = Command::new("cc")
        .args(["-shared", "-fPIC", "-o"])
        .arg(&lib)
        .arg(&src)
        .arg("-ldl")
        .output()
        .expect("cc (a C compiler, which the Lua build needs too)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    lib
}
