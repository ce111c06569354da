//! The software watchdog (`watchdog-period`, a debugging aid as in
//! redis-server): when one command keeps a thread busy longer than the
//! period, the log gets "--- WATCHDOG TIMER EXPIRED ---" and that thread's
//! stack, so a latency spike can be traced to the code that caused it.
//!
//! redis-server arms a timer its event loop keeps re-arming; a blocked
//! loop lets it fire. Here commands run on several threads, so each thread
//! notes when its current command began, and a watchdog thread looks at
//! the notes. To take the stack of a busy thread it signals that thread:
//! the handler only records the return addresses (no allocation, no
//! lock), and the watchdog thread turns them into names and logs them.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use parking_lot::Mutex;

/// The period in milliseconds; 0 when the watchdog is off.
static PERIOD_MS: AtomicU64 = AtomicU64::new(0);

/// What one thread running commands shows the watchdog.
struct Slot {
    thread: libc::pthread_t,
    /// When the running command began (ms since the epoch); 0 when idle.
    since_ms: AtomicI64,
}

static SLOTS: Mutex<Vec<&'static Slot>> = Mutex::new(Vec::new());

thread_local! {
    static MINE: &'static Slot = {
        // Lives as long as the process: the watchdog may look at any time.
        let slot: &'static Slot = Box::leak(Box::new(Slot {
            // SAFETY: pthread_self has no preconditions.
            thread: unsafe { libc::pthread_self() },
            since_ms: AtomicI64::new(0),
        }));
        SLOTS.lock().push(slot);
        slot
    };
}

/// Marks the calling thread busy with a command while alive; costs one
/// relaxed load when the watchdog is off.
pub struct Busy(Option<&'static Slot>);

impl Busy {
    #[inline]
    pub fn enter() -> Busy {
        if PERIOD_MS.load(Ordering::Relaxed) == 0 {
            return Busy(None);
        }
        let slot = MINE.with(|s| *s);
        slot.since_ms
            .store(crate::keyspace::now_ms(), Ordering::Relaxed);
        Busy(Some(slot))
    }
}

impl Drop for Busy {
    #[inline]
    fn drop(&mut self) {
        if let Some(slot) = self.0 {
            slot.since_ms.store(0, Ordering::Relaxed);
        }
    }
}

/// The signal that asks a busy thread for its stack.
const STACK_SIGNAL: libc::c_int = libc::SIGUSR2;
const MAX_FRAMES: usize = 64;
static FRAMES: [AtomicUsize; MAX_FRAMES] = [const { AtomicUsize::new(0) }; MAX_FRAMES];
static FRAME_COUNT: AtomicUsize = AtomicUsize::new(0);
static CAPTURED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_stack_signal(_sig: libc::c_int) {
    let mut n = 0;
    // SAFETY: unsynchronized tracing is what a signal handler may use: the
    // watchdog thread asks one thread at a time, and the closure only
    // stores to atomics.
    unsafe {
        backtrace::trace_unsynchronized(|frame| {
            if n == MAX_FRAMES {
                return false;
            }
            FRAMES[n].store(frame.ip() as usize, Ordering::Relaxed);
            n += 1;
            true
        });
    }
    FRAME_COUNT.store(n, Ordering::Relaxed);
    CAPTURED.store(true, Ordering::Release);
}

/// `watchdog-period`: 0 turns the watchdog off. As in redis-server, a
/// period under two cron ticks (2000/hz ms) is raised to that.
pub fn set_period(ms: u64, hz: u64) -> u64 {
    let ms = if ms == 0 { 0 } else { ms.max(2000 / hz.max(1)) };
    PERIOD_MS.store(ms, Ordering::Relaxed);
    if ms > 0 {
        start_thread();
    }
    ms
}

fn start_thread() {
    static STARTED: OnceLock<()> = OnceLock::new();
    STARTED.get_or_init(|| {
        // SAFETY: the handler only stores to atomics (see above).
        unsafe {
            let mut act: libc::sigaction = std::mem::zeroed();
            libc::sigemptyset(&mut act.sa_mask);
            act.sa_sigaction = on_stack_signal as *const () as usize;
            act.sa_flags = libc::SA_RESTART;
            libc::sigaction(STACK_SIGNAL, &act, std::ptr::null_mut());
        }
        let spawned = std::thread::Builder::new()
            .name("watchdog".into())
            .spawn(watch);
        if let Err(e) = spawned {
            tracing::warn!("The watchdog could not start: {e}");
        }
    });
}

fn watch() {
    // The command each thread was last reported for: one report per
    // command that overruns, as redis-server's timer fires once.
    let mut reported: Vec<(libc::pthread_t, i64)> = Vec::new();
    loop {
        let period = PERIOD_MS.load(Ordering::Relaxed);
        std::thread::sleep(Duration::from_millis(if period == 0 {
            100
        } else {
            (period / 4).clamp(5, 100)
        }));
        if period == 0 {
            continue;
        }
        let now = crate::keyspace::now_ms();
        let slots: Vec<&'static Slot> = SLOTS.lock().clone();
        for slot in slots {
            let since = slot.since_ms.load(Ordering::Relaxed);
            if since == 0 || now - since < period as i64 {
                continue;
            }
            if reported.contains(&(slot.thread, since)) {
                continue;
            }
            reported.retain(|(t, _)| *t != slot.thread);
            reported.push((slot.thread, since));
            report(slot);
        }
    }
}

/// Logs the stack of the thread behind `slot`.
fn report(slot: &Slot) {
    CAPTURED.store(false, Ordering::Release);
    // SAFETY: the thread is alive (threads running commands live as long
    // as the runtime), and the signal has a handler.
    if unsafe { libc::pthread_kill(slot.thread, STACK_SIGNAL) } != 0 {
        return;
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(1);
    while !CAPTURED.load(Ordering::Acquire) {
        if std::time::Instant::now() >= deadline {
            tracing::warn!("--- WATCHDOG TIMER EXPIRED --- (the busy thread gave no stack)");
            return;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let n = FRAME_COUNT.load(Ordering::Relaxed);
    let mut text = String::from("\n--- WATCHDOG TIMER EXPIRED ---\n");
    for (i, f) in FRAMES.iter().take(n).enumerate() {
        let ip = f.load(Ordering::Relaxed);
        let mut named = false;
        backtrace::resolve(ip as *mut std::ffi::c_void, |sym| {
            if named {
                return;
            }
            named = true;
            let name = sym
                .name()
                .map(|n| format!("{n:#}"))
                .unwrap_or_else(|| "?".into());
            text.push_str(&format!("{i:>3}: {name} [{ip:#x}]\n"));
        });
        if !named {
            text.push_str(&format!("{i:>3}: ? [{ip:#x}]\n"));
        }
    }
    text.push_str("--------\n");
    tracing::warn!("{text}");
}
