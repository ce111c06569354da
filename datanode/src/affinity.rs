//! CPU affinity from `server_cpulist`, `bio_cpulist`, `bgsave_cpulist` and
//! `aof_rewrite_cpulist`, as Redis pins its threads and children: the
//! threads that serve clients, the background I/O threads (the AOF
//! writer, lazy freeing), a BGSAVE and an AOF rewrite. The lists are read
//! once at start (the settings are immutable, as in Redis).

use std::sync::OnceLock;

/// Which of the four lists a thread follows.
#[derive(Clone, Copy)]
pub enum Role {
    Server = 0,
    Bio = 1,
    Bgsave = 2,
    Rewrite = 3,
}

struct Lists {
    cpus: [Option<Vec<usize>>; 4],
    /// The process's affinity before any pinning: Redis starts its bio
    /// threads before it pins its main thread, so without `bio_cpulist`
    /// they keep this.
    initial: Option<Vec<usize>>,
}

static LISTS: OnceLock<Lists> = OnceLock::new();

/// Reads the four settings (before any thread is pinned).
pub fn init(cfg: &crate::config::Config) {
    let list = |name: &str| parse(cfg.value(name));
    let _ = LISTS.set(Lists {
        cpus: [
            list("server_cpulist"),
            list("bio_cpulist"),
            list("bgsave_cpulist"),
            list("aof_rewrite_cpulist"),
        ],
        initial: current(),
    });
}

/// Pins the calling thread as its role's list says. Without a list, a
/// background I/O thread goes back to the process's first affinity and
/// the others keep what they inherited (a BGSAVE child inherits the main
/// thread's in Redis).
pub fn pin(role: Role) {
    let Some(lists) = LISTS.get() else { return };
    match (&lists.cpus[role as usize], role) {
        (Some(cpus), _) => set(cpus),
        (None, Role::Bio) => {
            if let Some(cpus) = &lists.initial {
                set(cpus);
            }
        }
        (None, _) => {}
    }
}

/// Redis's cpulist syntax, as taskset's: "0,2,3", "0,2-3", "0-20:2". A
/// malformed list pins nothing, as in Redis.
pub fn parse(list: &str) -> Option<Vec<usize>> {
    if list.is_empty() {
        return None;
    }
    let mut cpus = Vec::new();
    for tok in list.split(',') {
        // A step only follows a range.
        let (range, step) = match tok.split_once(':') {
            Some((r, s)) if r.contains('-') => (r, number(s).filter(|&s| s > 0)?),
            Some(_) => return None,
            None => (tok, 1),
        };
        let (a, b) = match range.split_once('-') {
            Some((a, b)) => (number(a)?, number(b)?),
            None => {
                let a = number(range)?;
                (a, a)
            }
        };
        if a > b {
            return None;
        }
        cpus.extend((a..=b).step_by(step));
    }
    Some(cpus)
}

fn number(s: &str) -> Option<usize> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

#[cfg(target_os = "linux")]
fn set(cpus: &[usize]) {
    // SAFETY: a zeroed cpu_set_t is an empty set; CPU_SET stays within it
    // (indexes past CPU_SETSIZE are skipped); the syscall reads the set.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        for &c in cpus {
            if c < libc::CPU_SETSIZE as usize {
                libc::CPU_SET(c, &mut set);
            }
        }
        // A CPU the machine lacks makes this fail; Redis ignores that too.
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

#[cfg(target_os = "linux")]
fn current() -> Option<Vec<usize>> {
    // SAFETY: the kernel fills the zeroed set; CPU_ISSET reads within it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return None;
        }
        Some(
            (0..libc::CPU_SETSIZE as usize)
                .filter(|&c| libc::CPU_ISSET(c, &set))
                .collect(),
        )
    }
}

#[cfg(not(target_os = "linux"))]
fn set(_cpus: &[usize]) {}

#[cfg(not(target_os = "linux"))]
fn current() -> Option<Vec<usize>> {
    None
}

#[cfg(test)]
mod tests {
    use super::parse;

    #[test]
    fn cpu_lists_parse_as_redis_reads_them() {
        assert_eq!(parse("0,2,3"), Some(vec![0, 2, 3]));
        assert_eq!(parse("0,2-3"), Some(vec![0, 2, 3]));
        assert_eq!(parse("0-20:5"), Some(vec![0, 5, 10, 15, 20]));
        assert_eq!(parse("1"), Some(vec![1]));
        for bad in ["", "3-1", "0-4:0", "a", "1,", "1-", "-1", "1:2", "0-4:2x"] {
            assert_eq!(parse(bad), None, "{bad}");
        }
    }
}
