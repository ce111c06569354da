//! Stopping the server as Redis does. SHUTDOWN, SIGTERM and SIGINT save an
//! RDB on the way out (when asked, or when save points are set) with
//! writes held back; if that save fails the server keeps running, unless
//! FORCE said to exit anyway, so acknowledged writes are never dropped by
//! a shutdown that could not persist them. A signal only schedules the
//! shutdown (run by the next tick, which `DEBUG PAUSE-CRON` holds), so
//! SHUTDOWN ABORT can still cancel it; a second SIGINT exits at once.
//! Unless NOW is given (or `shutdown-timeout` is 0), a master first waits,
//! writes paused, up to `shutdown-timeout` seconds for its replicas to
//! acknowledge everything, as Redis 7.0 does, so a replica promoted after
//! the shutdown has every acknowledged write; ABORT cancels that wait too.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio::sync::{mpsc, oneshot};

use super::shared::Shared;

/// What a shutdown should do: SHUTDOWN's options, or the
/// `shutdown-on-sigint` / `shutdown-on-sigterm` setting.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Flags {
    /// Some(true) SAVE, Some(false) NOSAVE, None: save if save points are set.
    pub save: Option<bool>,
    /// Exit even if the final save fails.
    pub force: bool,
    /// Do not wait for lagging replicas.
    pub now: bool,
}

impl Flags {
    /// `shutdown-on-sig*`: `default`, or some of `save`, `nosave`, `now`,
    /// `force`.
    pub fn from_setting(v: &str) -> Flags {
        let mut f = Flags::default();
        for w in v.split_whitespace() {
            match w.to_ascii_lowercase().as_str() {
                "save" => f.save = Some(true),
                "nosave" => f.save = Some(false),
                "force" => f.force = true,
                "now" => f.now = true,
                _ => {}
            }
        }
        f
    }
}

/// A SHUTDOWN waiting for the outcome; the sender is dropped (the
/// connection then replies the error) when the shutdown failed.
pub struct Request {
    pub flags: Flags,
    pub failed: oneshot::Sender<()>,
}

/// The connection side: asks the main task to shut down. Returns only if
/// the shutdown failed (on success the process exits).
pub async fn request(srv: &Shared, flags: Flags) {
    let (tx, rx) = oneshot::channel();
    if srv
        .shutdown_requests
        .send(Request { flags, failed: tx })
        .is_ok()
    {
        WAITERS.fetch_add(1, Ordering::Relaxed);
        let _ = rx.await;
        WAITERS.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Clients whose SHUTDOWN waits (for replicas, or the final save): INFO
/// counts them in `blocked_clients`, as Redis blocks them.
static WAITERS: AtomicUsize = AtomicUsize::new(0);

pub fn waiters() -> usize {
    WAITERS.load(Ordering::Relaxed)
}

/// A signal scheduled a shutdown that has not started yet. Set in the
/// signal handler itself, as Redis's `shutdown_asap`, so a SHUTDOWN ABORT
/// sent right after the signal finds it whatever the scheduler did.
static ASAP: AtomicBool = AtomicBool::new(false);
/// The last such signal was SIGINT (which picks `shutdown-on-sigint`).
static LAST_INT: AtomicBool = AtomicBool::new(false);
/// A SIGINT came while a shutdown was already scheduled: exit now.
static INSIST: AtomicBool = AtomicBool::new(false);
/// A shutdown waits for its replicas; SHUTDOWN ABORT sets ABORTED to end
/// the wait and keep the server running.
static WAITING: AtomicBool = AtomicBool::new(false);
static ABORTED: AtomicBool = AtomicBool::new(false);

/// Installs the handlers that set the flags above (alongside tokio's,
/// which wake the main task).
fn install_handlers() -> std::io::Result<()> {
    // SAFETY: the actions only store to atomics, which is safe in a signal
    // handler; they allocate nothing and take no lock.
    unsafe {
        signal_hook_registry::register(libc::SIGTERM, || {
            LAST_INT.store(false, Ordering::SeqCst);
            ASAP.store(true, Ordering::SeqCst);
        })?;
        signal_hook_registry::register(libc::SIGINT, || {
            LAST_INT.store(true, Ordering::SeqCst);
            if ASAP.swap(true, Ordering::SeqCst) {
                INSIST.store(true, Ordering::SeqCst);
            }
        })?;
    }
    Ok(())
}

/// SHUTDOWN ABORT: cancels a shutdown a signal scheduled and the cron
/// has not started yet, or one waiting for its replicas. False when none
/// is pending.
pub fn abort() -> bool {
    let waiting = WAITING.load(Ordering::SeqCst) && !ABORTED.swap(true, Ordering::SeqCst);
    let scheduled = ASAP
        .compare_exchange(true, false, Ordering::SeqCst, Ordering::SeqCst)
        .is_ok();
    let aborted = waiting || scheduled;
    if waiting {
        DEADLINE_MS.store(0, Ordering::SeqCst);
    }
    if aborted {
        tracing::info!("Shutdown manually aborted.");
    }
    aborted
}

struct Signals {
    term: Signal,
    int: Signal,
}

/// Serves SHUTDOWN requests and signals until a shutdown succeeds; the
/// caller then exits.
pub async fn run_until_shut_down(
    srv: &Arc<Shared>,
    pidfile: &str,
    mut requests: mpsc::UnboundedReceiver<Request>,
) -> std::io::Result<()> {
    let mut sig = Signals {
        term: signal(SignalKind::terminate())?,
        int: signal(SignalKind::interrupt())?,
    };
    install_handlers()?;
    let mut tick = tokio::time::interval(std::time::Duration::from_millis(100));
    loop {
        let (flags, waiter) = tokio::select! {
            Some(r) = requests.recv() => (r.flags, Some(r.failed)),
            _ = sig.term.recv() => {
                tracing::warn!("Received SIGTERM scheduling shutdown...");
                continue;
            }
            _ = sig.int.recv() => {
                if INSIST.load(Ordering::SeqCst) {
                    insist(srv);
                }
                tracing::warn!("Received SIGINT scheduling shutdown...");
                continue;
            }
            _ = tick.tick() => {
                if !ASAP.load(Ordering::SeqCst)
                    || crate::command::debug::CRON_PAUSED.load(Ordering::Relaxed)
                {
                    continue;
                }
                let setting = if LAST_INT.load(Ordering::SeqCst) {
                    "shutdown-on-sigint"
                } else {
                    "shutdown-on-sigterm"
                };
                (Flags::from_setting(srv.config.read().value(setting)), None)
            }
        };
        if attempt(srv, pidfile, flags, &mut sig).await {
            return Ok(());
        }
        // Failed: the server goes on; whoever waits on a SHUTDOWN is told.
        ASAP.store(false, Ordering::SeqCst);
        drop(waiter);
        while let Ok(r) = requests.try_recv() {
            drop(r);
        }
    }
}

/// A second SIGINT while a shutdown is scheduled or saving: exit now, as
/// Redis does, leaving no temporary RDB behind.
fn insist(srv: &Shared) -> ! {
    tracing::warn!("You insist... exiting now.");
    let _ = std::fs::remove_file(temp_rdb(srv));
    std::process::exit(1);
}

/// The file the final save writes before renaming it: Redis's name for a
/// foreground save (`temp-<pid>.rdb` in the working directory).
fn temp_rdb(srv: &Shared) -> std::path::PathBuf {
    let dir = srv.config.read().dir();
    std::path::Path::new(&dir).join(format!("temp-{}.rdb", std::process::id()))
}

/// Replicas that have not acknowledged everything sent: (name, bytes
/// behind, seconds since their last ACK, state).
fn lagging(srv: &Shared) -> Vec<(String, u64, i64, &'static str)> {
    let end = srv.log.repl_offset();
    let now = crate::keyspace::now_ms();
    srv.repl
        .state
        .lock()
        .replicas
        .values()
        .filter(|r| r.ack_offset != end)
        .map(|r| {
            let online = r.state == crate::replication::ReplicaState::Online;
            (
                format!("{}:{}", r.ip, r.listening_port),
                end.saturating_sub(r.ack_offset),
                if online { (now - r.ack_ms) / 1000 } else { 0 },
                r.state.word(),
            )
        })
        .collect()
}

/// When a shutdown waiting for replicas gives up on them (ms since the
/// epoch); 0 when none waits.
static DEADLINE_MS: AtomicI64 = AtomicI64::new(0);

/// Milliseconds left before a shutdown that waits for replicas goes on
/// without them (INFO's `shutdown_in_milliseconds`, shown only meanwhile).
pub fn in_milliseconds(now_ms: i64) -> Option<i64> {
    match DEADLINE_MS.load(Ordering::SeqCst) {
        0 => None,
        d => Some(d - now_ms),
    }
}

/// Asks the replicas for their offsets and waits, up to `timeout_s`, for
/// all to have everything. False when SHUTDOWN ABORT ended the wait.
async fn wait_for_replicas(srv: &Shared, timeout_s: i64, sig: &mut Signals) -> bool {
    crate::replication::master::request_acks(srv);
    ABORTED.store(false, Ordering::SeqCst);
    WAITING.store(true, Ordering::SeqCst);
    DEADLINE_MS.store(
        crate::keyspace::now_ms() + timeout_s.saturating_mul(1000),
        Ordering::SeqCst,
    );
    // Logged once INFO and SHUTDOWN ABORT see the wait.
    tracing::info!("Waiting for replicas before shutting down.");
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(timeout_s as u64);
    let mut tick = tokio::time::interval(std::time::Duration::from_millis(100));
    let finished = loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = sig.int.recv() => {
                if INSIST.load(Ordering::SeqCst) {
                    insist(srv);
                }
            }
            _ = sig.term.recv() => {}
        }
        if ABORTED.load(Ordering::SeqCst) {
            break false;
        }
        if tokio::time::Instant::now() >= deadline || lagging(srv).is_empty() {
            break true;
        }
    };
    WAITING.store(false, Ordering::SeqCst);
    DEADLINE_MS.store(0, Ordering::SeqCst);
    finished
}

/// Logs, as Redis does, the replicas still behind and how many are in
/// sync.
fn report_replicas(srv: &Shared) {
    let total = srv.repl.state.lock().replicas.len();
    let behind = lagging(srv);
    for (name, bytes, lag, state) in &behind {
        tracing::warn!(
            "Lagging replica {name} reported offset {bytes} behind master, lag={lag}, state={state}."
        );
    }
    if total > 0 {
        tracing::info!(
            "{} of {total} replicas are in sync when shutting down.",
            total.saturating_sub(behind.len())
        );
    }
}

/// Something stands in the shutdown's way: FORCE logs `anyway` and goes
/// on (true); otherwise the shutdown fails (false), logged in Redis's
/// words.
fn exits_anyway(force: bool, anyway: &str, cannot: &str) -> bool {
    if force {
        tracing::warn!("{anyway}");
        return true;
    }
    // Over before it is logged (the caller clears it too): SHUTDOWN
    // ABORT after these lines finds no shutdown in progress.
    ASAP.store(false, Ordering::SeqCst);
    tracing::warn!("{cannot}");
    tracing::warn!("Errors trying to shut down the server. Check the logs for more information.");
    false
}

/// One try; true when the server may exit.
async fn attempt(srv: &Arc<Shared>, pidfile: &str, flags: Flags, sig: &mut Signals) -> bool {
    tracing::warn!("User requested shutdown...");
    let wanted = flags
        .save
        .unwrap_or_else(|| !srv.config.read().save_params().is_empty());
    if !wanted {
        // SHUTDOWN NOSAVE may end a script that runs too long.
        srv.scripts.stop_all();
    }
    // Writes wait from here on (Redis pauses them while it shuts down):
    // none can be acknowledged after the final save took its data.
    let before = srv.pause.current();
    srv.pause.start(srv, super::pause::WRITE, i64::MAX);
    let timeout_s = srv.config.read().int("shutdown-timeout");
    if !flags.now
        && timeout_s > 0
        && !lagging(srv).is_empty()
        && !wait_for_replicas(srv, timeout_s, sig).await
    {
        srv.pause.restore(srv, before);
        return false;
    }
    report_replicas(srv);
    crate::scripting::ldb::kill_children();
    if crate::persistence::aof::writing_initial(srv)
        && !exits_anyway(
            flags.force,
            "Writing initial AOF. Exit anyway.",
            "Writing initial AOF, can't exit.",
        )
    {
        srv.pause.restore(srv, before);
        return false;
    }
    if srv.aof.lock().is_some() {
        tracing::info!("Calling fsync() on the AOF file.");
    }
    if let Err(e) = crate::persistence::aof::flush_and_sync(srv) {
        tracing::warn!("Error flushing the AOF on shutdown: {e}");
    }
    // A reshard's last SETSLOT may still be queued for the file.
    if let Some(cl) = srv.cluster.get() {
        let _ = cl.save_config_now();
    }
    if wanted {
        tracing::info!("Saving the final RDB snapshot before exiting.");
        let (s, tmp) = (srv.clone(), temp_rdb(srv));
        let mut save = tokio::task::spawn_blocking(move || crate::persistence::save_via(&s, &tmp));
        let saved = loop {
            tokio::select! {
                r = &mut save => break r.unwrap_or_else(|e| Err(std::io::Error::other(e))),
                _ = sig.int.recv() => {
                    if INSIST.load(Ordering::SeqCst) {
                        insist(srv);
                    }
                }
                _ = sig.term.recv() => {}
            }
        };
        if let Err(e) = saved {
            if !exits_anyway(
                flags.force,
                &format!("Error trying to save the DB ({e}). Exit anyway."),
                &format!("Error trying to save the DB, can't exit: {e}"),
            ) {
                srv.pause.restore(srv, before);
                return false;
            }
        }
    }
    srv.shutting_down.store(true, Ordering::SeqCst);
    if !pidfile.is_empty() {
        let _ = std::fs::remove_file(pidfile);
    }
    // Stop listening before the exit closes the connections: a client
    // that sees its connection close then finds the port closed too.
    super::listen::close_all(srv).await;
    super::listen::close_unix(srv);
    srv.scripts.stop_all();
    tracing::info!("Redis is now ready to exit, bye bye...");
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signal_settings_read_as_redis_flags() {
        assert_eq!(Flags::from_setting("default"), Flags::default());
        assert_eq!(
            Flags::from_setting("nosave force"),
            Flags {
                save: Some(false),
                force: true,
                now: false,
            }
        );
        let f = Flags::from_setting("save now");
        assert_eq!((f.save, f.now), (Some(true), true));
    }
}
