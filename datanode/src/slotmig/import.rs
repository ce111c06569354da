//! The target's side of a slot migration: the source's connection, once
//! `CLUSTER SYNCSLOTS ESTABLISH` is accepted, is served here. Its commands
//! are obeyed (no redirection: the slots are still the source's) and
//! their replies dropped; the keys land in slots hidden until the handoff.
//! Control messages drive the job, and its effects are carried out.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::cluster::slotmig::{Effect, Event, Job, Msg};
use crate::keyspace::now_ms;
use crate::server::client::Client;
use crate::server::Shared;

const CMD_FAILED: &str =
    "Failed to process command during slot migration. Check logs for more information";

/// Makes `ranges` ready to receive: leftovers there (keys of slots we do
/// not own) are deleted, and the slots hidden.
pub fn prepare(srv: &Shared, job: &Job) {
    let db = srv.ks.db(0);
    for s in job.ranges.iter().flat_map(|&(a, b)| a..=b) {
        if db.slot_keys(s) > 0 {
            crate::command::keys::delete_slot_keys(srv, s);
        }
        db.set_hidden(s, true);
    }
}

/// Serves the source's connection until the job ends.
pub async fn serve(
    srv: &Arc<Shared>,
    sock: &mut crate::net::Stream,
    client: &mut Client,
    mut rbuf: BytesMut,
    name: String,
) -> std::io::Result<()> {
    client.is_master = true;
    client.authenticated = true;
    // The server's own client: no ACL user, nothing refused.
    client.set_acl_user(None);
    let _ = socket2::SockRef::from(&*sock).set_recv_buffer_size(super::LINK_BUFFER);
    let t = super::timing(srv);
    let step = |ev: Event| srv.slotmig.step(&name, ev, now_ms(), &t);
    let mut out = Vec::new();
    let mut actions = Vec::new();
    let mut ranges = Vec::new();
    let mut scratch = Vec::new();
    let limits = crate::resp::Limits {
        max_bulk_len: i64::MAX,
        authenticated: true,
    };
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    let mut last_ack = now_ms();
    let mut fx: Vec<Effect> = Vec::new();
    let result = 'serve: loop {
        let now = now_ms();
        let mut pos = 0;
        let mut cmds = 0u64;
        loop {
            let parsed =
                crate::resp::parse_request(&rbuf[pos..], &limits, &mut ranges, &mut scratch);
            let (consumed, inline) = match parsed {
                Ok(None) => break,
                Ok(Some(crate::resp::Parsed::Empty { consumed })) => {
                    pos += consumed;
                    continue;
                }
                Ok(Some(crate::resp::Parsed::Multibulk { consumed })) => (consumed, false),
                Ok(Some(crate::resp::Parsed::Inline { consumed })) => (consumed, true),
                Err(e) => {
                    tracing::warn!("Slot migration {name}: protocol error from the source: {e}");
                    fx.extend(step(Event::ConnectionLost));
                    break;
                }
            };
            let args = if inline {
                crate::command::Args::new(&scratch, &ranges)
            } else {
                crate::command::Args::new(&rbuf[pos..], &ranges)
            };
            if let Some(m) = super::parse_msg(&args) {
                fx.extend(step(Event::Received(m)));
            } else if args.len() >= 2
                && args.get(0).eq_ignore_ascii_case(b"CLUSTER")
                && args.get(1).eq_ignore_ascii_case(b"SYNCSLOTS")
            {
                fx.extend(step(Event::Abort(
                    "Unknown SYNCSLOTS subcommand used".into(),
                )));
            } else {
                out.clear();
                actions.clear();
                crate::server::conn::execute(srv, client, &mut out, &mut actions, &args, now);
                if out.first() == Some(&b'-') {
                    tracing::warn!(
                        "Slot migration {name}: a command from the source failed: {}",
                        String::from_utf8_lossy(&out[..out.len().min(200)]).trim_end()
                    );
                    fx.extend(step(Event::Abort(CMD_FAILED.into())));
                }
                cmds += 1;
            }
            pos += consumed;
            if !fx.is_empty() {
                break;
            }
        }
        rbuf.advance(pos);
        if pos > 0 {
            srv.slotmig.progress(&name, cmds, pos as u64);
        }
        for e in std::mem::take(&mut fx) {
            match e {
                Effect::Send(m) => {
                    if let Err(e) = sock.write_all(&super::encode_msg(m)).await {
                        break 'serve Err(e);
                    }
                }
                Effect::ClaimSlots => claim(srv, &name),
                Effect::DeleteSlotKeys => {
                    if let Some(job) = srv.slotmig.get(&name) {
                        let n = super::delete_unowned_keys(srv, &job);
                        tracing::info!("Slot migration {name}: deleted {n} keys received");
                    }
                }
                Effect::Close => break 'serve Ok(()),
                Effect::StartSnapshot | Effect::PauseWrites { .. } | Effect::Unpause => {}
            }
        }
        if !rbuf.is_empty() && srv.slotmig.get(&name).is_some_and(|j| !j.phase.is_final()) {
            // More complete commands may be waiting behind a message.
            if crate::resp::parse_request(&rbuf, &limits, &mut ranges, &mut scratch)
                .ok()
                .flatten()
                .is_some()
            {
                continue;
            }
        }
        // Room for large reads: snapshots arrive in bulk.
        rbuf.reserve(256 * 1024);
        tokio::select! {
            r = sock.read_buf(&mut rbuf) => {
                match r {
                    Ok(0) | Err(_) => fx.extend(step(Event::ConnectionLost)),
                    Ok(_) => {}
                }
            }
            _ = tick.tick() => {
                fx.extend(step(Event::Tick));
                if let Some(job) = srv.slotmig.get(&name) {
                    fx.extend(step(super::owners_event(srv, &job)));
                }
                let now = now_ms();
                if now - last_ack >= 1000 {
                    last_ack = now;
                    if let Err(e) = sock.write_all(&super::encode_msg(Msg::Ack)).await {
                        break 'serve Err(e);
                    }
                }
            }
            _ = client.info.kill_notify.notified() => {
                if client.info.killed.load(std::sync::atomic::Ordering::Relaxed) {
                    fx.extend(step(Event::ConnectionLost));
                }
            }
        }
    };
    // However it ended, nothing stays hidden: a job still running fails
    // (its keys go), a finished one was cleaned up by its effects.
    if let Some(job) = srv.slotmig.get(&name) {
        if !job.phase.is_final() {
            for e in step(Event::ConnectionLost) {
                if e == Effect::DeleteSlotKeys {
                    super::delete_unowned_keys(srv, &job);
                }
            }
        }
        let db = srv.ks.db(0);
        for s in job.ranges.iter().flat_map(|&(a, b)| a..=b) {
            db.set_hidden(s, false);
        }
        let job = srv.slotmig.get(&name).unwrap_or(job);
        super::log_finish(
            srv,
            &name,
            job.phase == crate::cluster::slotmig::Phase::Success,
            &job.message,
        );
        tracing::info!(
            "Slot migration {name} ended: {} {}",
            job.phase.name(),
            job.message
        );
    }
    result
}

/// The handoff on the target: a new config epoch, the slots ours, the
/// keys shown, and everyone told at once.
fn claim(srv: &Arc<Shared>, name: &str) {
    let (Some(cl), Some(job)) = (srv.cluster.get(), srv.slotmig.get(name)) else {
        return;
    };
    let now = now_ms();
    cl.with(srv, |st| {
        st.bump_epoch_without_consensus();
        let me = st.me;
        for s in job.ranges.iter().flat_map(|&(a, b)| a..=b) {
            st.del_slot(s as usize);
            st.add_slot(s as usize, me);
        }
        st.changed();
        st.save_soon(true);
        st.broadcast_pong(now);
    });
    let db = srv.ks.db(0);
    for s in job.ranges.iter().flat_map(|&(a, b)| a..=b) {
        db.set_hidden(s, false);
    }
    tracing::info!(
        "Slot migration {name}: took over slots {}",
        job.ranges_text()
    );
}
