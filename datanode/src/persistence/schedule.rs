//! BGSAVE and BGREWRITEAOF while another background save runs, as Redis
//! answers them: a rewrite asked for during a BGSAVE (or inside a
//! transaction) is scheduled and started by the cron when nothing runs;
//! a BGSAVE during a rewrite is refused unless SCHEDULE asks to wait.
//! datanode's saves take their snapshots without fork, one at a time;
//! these rules give clients the replies and INFO figures of redis-server.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::aof::Limited;
use crate::server::shared::Shared;

/// How a request was taken.
#[derive(Debug, PartialEq, Eq)]
pub enum Started {
    Now,
    Scheduled,
}

const REWRITE_RUNNING: &str = "Background append only file rewriting already in progress";
const BGSAVE_RUNNING: &str = "Background save already in progress";
const BGSAVE_REFUSED: &str = "Another child process is active (AOF?): can't BGSAVE right now. Use BGSAVE SCHEDULE in order to schedule a BGSAVE whenever possible.";

/// Whether an AOF rewrite runs (with the AOF on, or a base-only one).
pub fn rewrite_running(srv: &Shared) -> bool {
    srv.base_rewrite_running.load(Ordering::SeqCst)
        || srv.aof.lock().as_ref().is_some_and(|a| a.rewriting())
}

/// Whether a save of any kind runs or holds the snapshot (BGSAVE, an AOF
/// rewrite, a replica's or a migration's snapshot): Redis's "active child".
pub fn any_running(srv: &Shared) -> bool {
    srv.bgsave_running.load(Ordering::SeqCst)
        || rewrite_running(srv)
        || srv.log.snapshot_busy.load(Ordering::SeqCst)
}

/// BGREWRITEAOF.
pub fn request_rewrite(srv: &Arc<Shared>, in_exec: bool) -> Result<Started, String> {
    if rewrite_running(srv) {
        return Err(REWRITE_RUNNING.into());
    }
    if in_exec || any_running(srv) {
        srv.aof_rewrite_scheduled.store(true, Ordering::SeqCst);
        // Asked for by hand: the brake on failing automatic rewrites is off.
        srv.stats.aof_rewrite_failures.store(0, Ordering::Relaxed);
        return Ok(Started::Scheduled);
    }
    super::aof::start_rewrite(srv).map(|()| Started::Now)
}

/// BGSAVE [SCHEDULE].
pub fn request_bgsave(srv: &Arc<Shared>, schedule: bool, in_exec: bool) -> Result<Started, String> {
    if srv.bgsave_running.load(Ordering::SeqCst) {
        return Err(BGSAVE_RUNNING.into());
    }
    if in_exec || rewrite_running(srv) {
        if !(schedule || in_exec) {
            return Err(BGSAVE_REFUSED.into());
        }
        srv.bgsave_scheduled.store(true, Ordering::SeqCst);
        return Ok(Started::Scheduled);
    }
    super::bgsave(srv).map(|()| Started::Now)
}

/// The cron's part: starts what was scheduled once no save runs, the
/// rewrite first, as Redis does. A failed BGSAVE's retry waits a few
/// seconds; a rewrite held back by failures waits for its brake.
pub fn run_scheduled(srv: &Arc<Shared>) {
    if srv.aof_rewrite_scheduled.load(Ordering::SeqCst) && !any_running(srv) {
        let failures = crate::server::stats::Stats::get(&srv.stats.aof_rewrite_failures);
        let now_s = crate::keyspace::now_ms() / 1000;
        let limited = srv.aof_rewrite_limit.lock().check(failures, now_s);
        if limited == Limited::No {
            srv.aof_rewrite_scheduled.store(false, Ordering::SeqCst);
            if let Err(e) = super::aof::start_rewrite(srv) {
                tracing::warn!("Scheduled AOF rewrite could not start: {e}");
            }
        }
    }
    if srv.bgsave_scheduled.load(Ordering::SeqCst) && !any_running(srv) {
        let now_s = crate::keyspace::now_ms() / 1000;
        let waited = now_s - srv.stats.rdb_last_bgsave_try_s.load(Ordering::Relaxed);
        let failed = srv.stats.rdb_bgsave_failed.load(Ordering::Relaxed);
        if (!failed || waited > super::BGSAVE_RETRY_DELAY_S) && super::bgsave(srv).is_ok() {
            srv.bgsave_scheduled.store(false, Ordering::SeqCst);
        }
    }
}
