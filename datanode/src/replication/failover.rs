//! FAILOVER (standalone, Redis 6.2 semantics): a master pauses writes,
//! waits until a replica has acknowledged its whole stream, then becomes
//! that replica's replica with `PSYNC <replid> <offset> FAILOVER`, which
//! tells the replica to promote itself first. No acknowledged write is
//! lost: nothing is written between the last ack and the handover.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::server::Shared;

#[derive(Debug, Clone)]
pub struct Failover {
    /// The chosen replica (`TO host port`, or the first caught up).
    pub target: Option<(String, u16)>,
    pub force: bool,
    /// Give up (or, with FORCE, go ahead anyway) at this time (ms); 0: no
    /// limit.
    pub deadline: i64,
    /// Handing over: we are connecting to the target as its replica.
    pub in_progress: bool,
}

/// INFO's `master_failover_state`.
pub fn state_word(srv: &Shared) -> &'static str {
    match srv.repl.failover.lock().as_ref() {
        None => "no-failover",
        Some(f) if f.in_progress => "failover-in-progress",
        Some(_) => "waiting-for-sync",
    }
}

/// Whether the link's next PSYNC must carry FAILOVER.
pub fn handing_over(srv: &Shared) -> bool {
    srv.repl
        .failover
        .lock()
        .as_ref()
        .is_some_and(|f| f.in_progress)
}

/// Starts one (checks done by the command); writes pause until it ends.
pub fn start(srv: &Shared, f: Failover) {
    match &f.target {
        Some((h, p)) => tracing::info!("FAILOVER requested to {h}:{p}."),
        None => tracing::info!("FAILOVER requested to any replica."),
    }
    *srv.repl.failover.lock() = Some(f);
    srv.pause.start(srv, crate::server::pause::WRITE, i64::MAX);
}

/// Ends it (success or abort): writes resume.
fn clear(srv: &Shared) {
    if srv.repl.failover.lock().take().is_some() {
        srv.pause.stop(srv);
    }
}

/// The target took our PSYNC: we are its replica now.
pub fn finished(srv: &Shared) {
    clear(srv);
}

/// Gives up; a master that already started handing over becomes a master
/// again.
pub fn abort(srv: &Arc<Shared>, why: &str) {
    let Some(f) = srv.repl.failover.lock().clone() else {
        return;
    };
    match &f.target {
        Some((h, p)) => tracing::info!("FAILOVER to {h}:{p} aborted: {why}"),
        None => tracing::info!("FAILOVER to any replica aborted: {why}"),
    }
    // Clear first: unset_master must not take this for a handover.
    clear(srv);
    if f.in_progress {
        super::replica::unset_master(srv);
    }
}

/// The replica of ours at `host:port`, with its state and acked offset.
pub fn find_replica(srv: &Shared, host: &str, port: u16) -> Option<super::ReplicaInfo> {
    srv.repl
        .state
        .lock()
        .replicas
        .values()
        .find(|r| r.ip == host && r.listening_port == port)
        .cloned()
}

/// Ten times a second: hand over once a replica has everything.
pub fn cron(srv: &Arc<Shared>, now: i64) {
    let Some(f) = srv.repl.failover.lock().clone() else {
        return;
    };
    if f.in_progress {
        return;
    }
    let go = |srv: &Arc<Shared>, host: String, port: u16| {
        if let Some(cur) = srv.repl.failover.lock().as_mut() {
            cur.in_progress = true;
            cur.target = Some((host.clone(), port));
        }
        super::replica::set_master(srv, host, port);
    };
    if f.deadline != 0 && f.deadline <= now {
        match (&f.target, f.force) {
            (Some((h, p)), true) => {
                tracing::info!("FAILOVER to {h}:{p} time out exceeded, failing over.");
                go(srv, h.clone(), *p);
            }
            _ => abort(srv, "Replica never caught up before timeout"),
        }
        return;
    }
    let end = srv.log.repl_offset();
    let synced = {
        let st = srv.repl.state.lock();
        st.replicas
            .values()
            .find(|r| match &f.target {
                Some((h, p)) => r.ip == *h && r.listening_port == *p,
                None => r.ack_offset == end,
            })
            .filter(|r| r.ack_offset == end)
            .map(|r| (r.ip.clone(), r.listening_port))
    };
    if let Some((h, p)) = synced {
        tracing::info!("Failover target {h}:{p} is synced, failing over.");
        go(srv, h, p);
    }
}

/// Target side: `PSYNC <replid> <offset> FAILOVER` from our master asks
/// us to take over first. `Err` is the error to answer.
pub fn accept_request(srv: &Arc<Shared>, replid: &[u8]) -> Result<(), &'static str> {
    let ours = srv.repl.state.lock().replid.clone();
    if replid != ours.as_bytes() {
        return Err("ERR PSYNC FAILOVER replid must match my replid.");
    }
    tracing::info!(
        "Failover request received for replid {}.",
        String::from_utf8_lossy(replid)
    );
    if srv.repl.is_replica.load(Ordering::Relaxed) {
        super::replica::unset_master(srv);
    }
    Ok(())
}
