//! What the log says when the process dies of a bug. A fatal signal
//! (SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT) writes a crash report, as
//! redis-server writes its bug report: the signal, then the stack of the
//! thread that received it; then the signal's default action ends the
//! process. A panic (which kills only its task) is logged too, so a log
//! file tells of it and not only the terminal.

use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};

/// Where reports go: the log file's descriptor, or standard output.
static FD: AtomicI32 = AtomicI32::new(1);
/// `crash-log-enabled`.
static ENABLED: AtomicBool = AtomicBool::new(true);
/// `use-exit-on-panic`.
static EXIT_ON_PANIC: AtomicBool = AtomicBool::new(false);

const FATAL: [(libc::c_int, &str); 5] = [
    (libc::SIGSEGV, "SIGSEGV"),
    (libc::SIGBUS, "SIGBUS"),
    (libc::SIGFPE, "SIGFPE"),
    (libc::SIGILL, "SIGILL"),
    (libc::SIGABRT, "SIGABRT"),
];

/// Sets the report's destination and the panic hook, once at start.
/// `logfile` empty means the log is standard output.
pub fn init(logfile: &str) {
    if logfile.is_empty() {
        return;
    }
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        tracing::error!("{info}");
        default(info);
    }));
    if let Ok(f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(logfile)
    {
        use std::os::fd::IntoRawFd;
        FD.store(f.into_raw_fd(), Ordering::Relaxed);
    }
}

/// `crash-log-enabled`: the handlers in place, or the signals' default
/// actions back (a core dump, with no report), as redis-server switches
/// them at CONFIG SET.
pub fn set_enabled(on: bool) {
    ENABLED.store(on, Ordering::Relaxed);
    for (sig, _) in FATAL {
        // SAFETY: a zeroed sigaction filled in here; the handler is an
        // `extern "C"` function that lives for the whole process.
        unsafe {
            let mut act: libc::sigaction = std::mem::zeroed();
            libc::sigemptyset(&mut act.sa_mask);
            if on {
                act.sa_sigaction = on_fatal_signal as *const () as usize;
                // Back to the default action on entry: a fault in the
                // handler, or its re-raise at the end, ends the process.
                act.sa_flags = libc::SA_SIGINFO | libc::SA_RESETHAND | libc::SA_NODEFER;
            } else {
                act.sa_sigaction = libc::SIG_DFL;
            }
            libc::sigaction(sig, &act, std::ptr::null_mut());
        }
    }
}

/// `use-exit-on-panic`: how [`server_panic`] ends the process.
pub fn set_exit_on_panic(on: bool) {
    EXIT_ON_PANIC.store(on, Ordering::Relaxed);
}

/// A fatal state the server finds itself in (Redis's serverPanic: data
/// that must not go on diverging, files it cannot write): the message,
/// and with `crash-log-enabled` the stack, go to the log; then the
/// process ends with status 1 under `use-exit-on-panic` (Redis's tests
/// set it to get no core), by SIGABRT otherwise, without the signal's
/// crash report on top of this one.
pub fn server_panic(msg: &str) -> ! {
    tracing::error!("Guru Meditation: {msg}");
    if ENABLED.load(Ordering::Relaxed) {
        let stack = std::backtrace::Backtrace::force_capture();
        tracing::error!("------ STACK TRACE ------\n{stack}");
    }
    if EXIT_ON_PANIC.load(Ordering::Relaxed) {
        std::process::exit(1);
    }
    // SAFETY: restores SIGABRT's default action before abort() raises it.
    unsafe {
        libc::signal(libc::SIGABRT, libc::SIG_DFL);
    }
    std::process::abort();
}

fn write_all(fd: libc::c_int, mut b: &[u8]) {
    while !b.is_empty() {
        // SAFETY: writes from a live slice.
        let n = unsafe { libc::write(fd, b.as_ptr().cast(), b.len()) };
        if n <= 0 {
            return;
        }
        b = &b[n as usize..];
    }
}

extern "C" fn on_fatal_signal(
    sig: libc::c_int,
    info: *mut libc::siginfo_t,
    _ctx: *mut libc::c_void,
) {
    // Capturing and printing the stack allocates, which a crash inside
    // the allocator could deadlock: should the report hang, SIGALRM's
    // default action ends the process within a few seconds.
    // SAFETY: alarm and raise are async-signal-safe; `info` is the
    // kernel's, valid for the handler's duration.
    unsafe { libc::alarm(5) };
    let fd = FD.load(Ordering::Relaxed);
    let name = FATAL
        .iter()
        .find(|(s, _)| *s == sig)
        .map_or("?", |(_, n)| n);
    let code = if info.is_null() {
        0
    } else {
        unsafe { (*info).si_code }
    };
    write_all(fd, b"\n\n=== DATANODE BUG REPORT START ===\n");
    let head = format!(
        "slotkv datanode {} (Redis {} compatible) crashed by signal: {sig} ({name}), si_code: {code}\n\n------ STACK TRACE ------\n",
        env!("CARGO_PKG_VERSION"),
        crate::command::connection::REDIS_VERSION,
    );
    write_all(fd, head.as_bytes());
    let stack = std::backtrace::Backtrace::force_capture();
    write_all(fd, format!("{stack}\n").as_bytes());
    write_all(fd, b"=== DATANODE BUG REPORT END: include everything from START to END when reporting it ===\n");
    // SAFETY: see above; the action is the default again (SA_RESETHAND).
    unsafe {
        libc::raise(sig);
    }
}
