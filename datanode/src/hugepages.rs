//! Transparent huge pages, checked once at start as redis-server does.
//!
//! With the kernel's THP mode at `always`, a write to one byte of a
//! 2 MB huge page can make the kernel allocate (and zero) the whole page:
//! memory use and latency spikes Redis warns about. With `disable-thp yes`
//! (the default) the process opts out for itself with
//! `PR_SET_THP_DISABLE`; the warning is logged only when it cannot.

/// Where the kernel shows its THP mode; the mode in use is bracketed.
const MODE_FILE: &str = "/sys/kernel/mm/transparent_hugepage/enabled";

/// Opts the process out of THP when the kernel's mode is `always` and
/// `disable` is set; warns when the mode stays `always` for it.
pub fn check(disable: bool) {
    let Ok(mode) = std::fs::read_to_string(MODE_FILE) else {
        return;
    };
    if !mode.contains("[always]") {
        return;
    }
    // SAFETY: prctl with integer arguments only; it changes a flag of
    // this process's memory map and touches no memory of ours.
    if disable && unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) } == 0 {
        return;
    }
    tracing::warn!(
        "WARNING Transparent Huge Pages (THP) are enabled for every mapping in the kernel \
         ({MODE_FILE} is 'always'), which brings latency spikes and extra memory use. \
         Leave 'disable-thp yes' so datanode turns them off for itself, or set the \
         kernel's mode to 'madvise' or 'never' as root and restart datanode."
    );
}
