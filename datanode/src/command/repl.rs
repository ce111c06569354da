//! Replication commands: REPLICAOF/SLAVEOF, ROLE, WAIT, and what a
//! replica sends its master (REPLCONF, PSYNC, SYNC).

use super::{eq_ic, Action, Args, Ctx, SYNTAX};
use crate::replication::master::SyncRequest;
use crate::replication::ReplicaState;

/// REPLICAOF host port | NO ONE (also SLAVEOF).
pub fn replicaof(ctx: &mut Ctx, a: &Args) {
    if ctx.srv.cluster_enabled() {
        return ctx.r.error("ERR REPLICAOF not allowed in cluster mode.");
    }
    let who = ctx.client.info.addr.to_string();
    if eq_ic(a.get(1), "NO") && eq_ic(a.get(2), "ONE") {
        if ctx.srv.repl.is_replica() {
            crate::replication::replica::unset_master(ctx.srv);
            tracing::info!("MASTER MODE enabled (user request from '{who}')");
        }
        return ctx.r.ok();
    }
    if ctx.client.repl_port != 0
        && ctx
            .srv
            .repl
            .state
            .lock()
            .replicas
            .contains_key(&ctx.client.id)
    {
        return ctx
            .r
            .error("ERR Command is not valid when client is a replica.");
    }
    let Some(port) = crate::resp::parse_i64(a.get(2)).and_then(|p| u16::try_from(p).ok()) else {
        return ctx.r.error("ERR Invalid master port");
    };
    let host = String::from_utf8_lossy(a.get(1)).into_owned();
    let same = ctx
        .srv
        .repl
        .state
        .lock()
        .master
        .as_ref()
        .is_some_and(|m| m.host.eq_ignore_ascii_case(&host) && m.port == port);
    if same {
        tracing::info!("REPLICAOF would result into synchronization with the master we are already connected with. No operation performed.");
        return ctx.r.simple("OK Already connected to specified master");
    }
    crate::replication::replica::set_master(ctx.srv, host.clone(), port);
    tracing::info!("REPLICAOF {host}:{port} enabled (user request from '{who}')");
    ctx.r.ok();
}

/// ROLE: master with its replicas, or replica with its link.
pub fn role(ctx: &mut Ctx, _a: &Args) {
    let end = ctx.srv.log.with_buf(|b| b.repl.end());
    let st = ctx.srv.repl.state.lock();
    match &st.master {
        None => {
            let reps: Vec<(String, String, String)> = st
                .replicas
                .values()
                .filter(|r| r.state == ReplicaState::Online)
                .map(|r| {
                    (
                        r.ip.clone(),
                        r.listening_port.to_string(),
                        r.ack_offset.to_string(),
                    )
                })
                .collect();
            drop(st);
            ctx.r.array(3);
            ctx.r.bulk(b"master");
            ctx.r.int(end as i64);
            ctx.r.array(reps.len());
            for (ip, port, off) in reps {
                ctx.r.array(3);
                ctx.r.bulk(ip.as_bytes());
                ctx.r.bulk(port.as_bytes());
                ctx.r.bulk(off.as_bytes());
            }
        }
        Some(m) => {
            let (host, port, state) = (m.host.clone(), m.port, m.state);
            drop(st);
            let off = if state == crate::replication::LinkState::Connected {
                end as i64
            } else {
                -1
            };
            ctx.r.array(5);
            ctx.r.bulk(b"slave");
            ctx.r.bulk(host.as_bytes());
            ctx.r.int(port as i64);
            ctx.r.bulk(state.role_word().as_bytes());
            ctx.r.int(off);
        }
    }
}

/// REPLCONF <option> <value> …: what a replica tells its master.
pub fn replconf(ctx: &mut Ctx, a: &Args) {
    if a.len().is_multiple_of(2) {
        return ctx.r.error(SYNTAX);
    }
    let mut i = 1;
    while i + 1 < a.len() {
        let (opt, val) = (a.get(i), a.get(i + 1));
        if eq_ic(opt, "listening-port") {
            let Some(p) = super::int_arg(ctx, val) else {
                return;
            };
            ctx.client.repl_port = p.clamp(0, u16::MAX as i64) as u16;
        } else if eq_ic(opt, "ip-address") {
            ctx.client.repl_ip = Some(String::from_utf8_lossy(val).into_owned());
        } else if eq_ic(opt, "capa") {
            if eq_ic(val, "psync2") {
                ctx.client.repl_psync2 = true;
            } else if eq_ic(val, "eof") {
                ctx.client.repl_eof = true;
            }
        } else if eq_ic(opt, "ack") || eq_ic(opt, "fack") || eq_ic(opt, "getack") {
            // ACKs are read by the replica feed; a GETACK reaches a
            // replica through its master link. Neither is answered.
            return;
        } else if eq_ic(opt, "rdb-only") {
        } else if eq_ic(opt, "rdb-filter-only") {
            // Include filters: none (an empty snapshot) or "functions".
            let text = String::from_utf8_lossy(val);
            let mut functions = false;
            for f in text.split_whitespace() {
                if f.eq_ignore_ascii_case("functions") {
                    functions = true;
                } else {
                    return ctx
                        .r
                        .error(&format!("ERR Unsupported rdb-filter-only option: {f}"));
                }
            }
            ctx.client.repl_rdb_filter = Some(functions);
        } else {
            return ctx.r.error(&format!(
                "ERR Unrecognized REPLCONF option: {}",
                String::from_utf8_lossy(opt)
            ));
        }
        i += 2;
    }
    ctx.r.ok();
}

/// PSYNC <replid> <offset>: the connection becomes a replica feed.
pub fn psync(ctx: &mut Ctx, a: &Args) {
    let Some(offset) = super::int_arg(ctx, a.get(2)) else {
        let ip = ctx
            .client
            .repl_ip
            .clone()
            .unwrap_or_else(|| ctx.client.info.addr.ip_string());
        tracing::warn!(
            "Replica {} asks for synchronization but with a wrong offset",
            crate::replication::master::replica_name(&ip, ctx.client.repl_port)
        );
        return;
    };
    if a.len() > 3 && a.get(3).eq_ignore_ascii_case(b"failover") {
        if let Err(e) = crate::replication::failover::accept_request(ctx.srv, a.get(1)) {
            return ctx.r.error(e);
        }
    }
    let replid = String::from_utf8_lossy(a.get(1)).into_owned();
    start_sync(ctx, true, replid, offset);
}

/// FAILOVER [TO host port [FORCE]] [ABORT] [TIMEOUT ms] (standalone).
pub fn failover(ctx: &mut Ctx, a: &Args) {
    use crate::replication::failover::{self as fo, Failover};
    if ctx.srv.cluster.get().is_some() {
        return ctx.r.error("ERR FAILOVER not allowed in cluster mode.");
    }
    if a.len() == 2 && a.get(1).eq_ignore_ascii_case(b"abort") {
        if ctx.srv.repl.failover.lock().is_none() {
            return ctx.r.error("ERR No failover in progress.");
        }
        fo::abort(ctx.srv, "Failover manually aborted");
        return ctx.r.ok();
    }
    let (mut timeout, mut force, mut target): (i64, bool, Option<(String, u16)>) = (0, false, None);
    let mut j = 1;
    while j < a.len() {
        let w = a.get(j);
        if w.eq_ignore_ascii_case(b"timeout") && j + 1 < a.len() && timeout == 0 {
            let Some(t) = super::int_arg(ctx, a.get(j + 1)) else {
                return;
            };
            if t <= 0 {
                return ctx.r.error("ERR FAILOVER timeout must be greater than 0");
            }
            timeout = t;
            j += 2;
        } else if w.eq_ignore_ascii_case(b"to") && j + 2 < a.len() && target.is_none() {
            let Some(p) = super::int_arg(ctx, a.get(j + 2)) else {
                return;
            };
            target = Some((
                String::from_utf8_lossy(a.get(j + 1)).into_owned(),
                p.clamp(0, 65535) as u16,
            ));
            j += 3;
        } else if w.eq_ignore_ascii_case(b"force") && !force {
            force = true;
            j += 1;
        } else {
            return ctx.r.error("ERR syntax error");
        }
    }
    if ctx.srv.repl.failover.lock().is_some() {
        return ctx.r.error("ERR FAILOVER already in progress.");
    }
    if ctx.srv.repl.is_replica() {
        return ctx
            .r
            .error("ERR FAILOVER is not valid when server is a replica.");
    }
    if ctx.srv.repl.state.lock().replicas.is_empty() {
        return ctx.r.error("ERR FAILOVER requires connected replicas.");
    }
    if force && (timeout == 0 || target.is_none()) {
        return ctx.r.error(
            "ERR FAILOVER with force option requires both a timeout and target HOST and IP.",
        );
    }
    if let Some((h, p)) = &target {
        match fo::find_replica(ctx.srv, h, *p) {
            None => {
                return ctx
                    .r
                    .error("ERR FAILOVER target HOST and PORT is not a replica.")
            }
            Some(r) if r.state != crate::replication::ReplicaState::Online => {
                return ctx.r.error("ERR FAILOVER target replica is not online.")
            }
            Some(_) => {}
        }
    }
    let now = crate::keyspace::now_ms();
    fo::start(
        ctx.srv,
        Failover {
            target,
            force,
            deadline: if timeout > 0 { now + timeout } else { 0 },
            in_progress: false,
        },
    );
    ctx.r.ok();
}

/// SYNC: the old form, answered with the snapshot and then the stream.
pub fn sync(ctx: &mut Ctx, _a: &Args) {
    start_sync(ctx, false, "?".into(), -1);
}

fn start_sync(ctx: &mut Ctx, psync: bool, replid: String, offset: i64) {
    if let Some(m) = ctx.srv.repl.state.lock().master.as_ref() {
        if m.state != crate::replication::LinkState::Connected {
            return ctx
                .r
                .error("NOMASTERLINK Can't SYNC while not connected with my master");
        }
    }
    if !ctx.r.out.is_empty() {
        return ctx
            .r
            .error("ERR SYNC and PSYNC are invalid with pending output");
    }
    ctx.actions.push(Action::Sync(SyncRequest {
        psync,
        replid,
        offset,
        psync2: ctx.client.repl_psync2,
        eof: ctx.client.repl_eof,
        listening_port: ctx.client.repl_port,
        ip: ctx.client.repl_ip.clone(),
        rdb_filter: ctx.client.repl_rdb_filter,
    }));
}

/// WAIT numreplicas timeout: how many replicas acknowledged this
/// client's writes, waiting up to `timeout` ms for `numreplicas`.
pub fn wait(ctx: &mut Ctx, a: &Args) {
    if ctx.srv.repl.is_replica() {
        return ctx.r.error("ERR WAIT cannot be used with replica instances. Please also note that since Redis 4.0 if a replica is configured to be writable (which is not the default) writes to replicas are just local and are not propagated.");
    }
    let Some(n) = super::int_arg(ctx, a.get(1)) else {
        return;
    };
    let Some(ms) = crate::resp::parse_i64(a.get(2)) else {
        return ctx.r.error("ERR timeout is not an integer or out of range");
    };
    if ms < 0 {
        return ctx.r.error("ERR timeout is negative");
    }
    let target = ctx.client.woff;
    let acked = crate::replication::master::acked_count(ctx.srv, target);
    // Inside MULTI, or already satisfied: no waiting.
    if ctx.client.in_exec || acked as i64 >= n {
        return ctx.r.int(acked as i64);
    }
    crate::replication::master::request_acks(ctx.srv);
    ctx.actions.push(Action::WaitReplicas {
        numreplicas: n,
        timeout_ms: ms as u64,
        offset: target,
    });
}
