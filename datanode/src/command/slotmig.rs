//! CLUSTER MIGRATESLOTS, GETSLOTMIGRATIONS, CANCELSLOTMIGRATIONS and
//! SYNCSLOTS: Valkey 9.0's atomic slot migration, with its syntax, checks,
//! error texts and reply shapes (see `docs/valkey9-atomic-slot-migration.md`).

use super::{Action, Args, Ctx};
use crate::cluster::id::NodeId;
use crate::cluster::slotmig::{Job, Op};
use crate::cluster::state::State;
use crate::keyspace::SLOTS;

const SYNTAX: &str = "ERR syntax error";

/// Parsed slot ranges and the node that serves them.
type Ranges = (Vec<(u16, u16)>, Option<NodeId>);

/// An export job to start, and its target's address.
type Planned = Vec<(Job, (String, u16))>;

fn slot_of(a: &[u8]) -> Result<u16, String> {
    match crate::resp::parse_i64(a) {
        Some(s) if (0..SLOTS as i64).contains(&s) => Ok(s as u16),
        _ => Err("ERR Invalid or out of range slot".into()),
    }
}

/// Valkey's parseSlotRangesOrReply: pairs read from `a[*i]` on while the
/// next argument is an integer, all served by one node (returned).
fn parse_ranges(st: &State, a: &Args, i: &mut usize) -> Result<Ranges, String> {
    let mut ranges: Vec<(u16, u16)> = Vec::new();
    let mut owner: Option<Option<NodeId>> = None;
    while *i < a.len() && crate::resp::parse_i64(a.get(*i)).is_some() {
        let start = slot_of(a.get(*i))?;
        if *i + 1 >= a.len() {
            return Err("ERR No end slot for final slot range".into());
        }
        let end = slot_of(a.get(*i + 1))?;
        if start > end {
            return Err(format!(
                "ERR Start slot number {start} is greater than end slot number {end}."
            ));
        }
        for s in start..=end {
            let o = st.owner[s as usize];
            if o.is_none() {
                return Err(format!("ERR Slot {s} has no node served."));
            }
            match owner {
                None => owner = Some(o),
                Some(prev) if prev != o => {
                    return Err("ERR Requested slots span multiple shards".into())
                }
                _ => {}
            }
        }
        if let Some(&(ps, pe)) = ranges.iter().find(|&&(ps, pe)| start <= pe && ps <= end) {
            return Err(format!(
                "ERR Slot range {start}-{end} overlaps with previous range {ps}-{pe}."
            ));
        }
        ranges.push((start, end));
        *i += 2;
    }
    if ranges.is_empty() {
        return Err("ERR No slot ranges specified".into());
    }
    Ok((ranges, owner.flatten()))
}

/// Checks a node makes before taking part in a migration.
fn can_start(st: &State) -> Result<(), String> {
    if !st.myself().is_master() {
        return Err("ERR Slot migration can only be used on primary nodes.".into());
    }
    if !st.importing.is_empty() {
        return Err("ERR Slots are being manually imported".into());
    }
    if !st.migrating.is_empty() {
        return Err("ERR Slots are being manually migrated".into());
    }
    Ok(())
}

fn overlaps(a: &[(u16, u16)], b: &[(u16, u16)]) -> bool {
    a.iter()
        .any(|&(s, e)| b.iter().any(|&(s2, e2)| s <= e2 && s2 <= e))
}

/// `CLUSTER MIGRATESLOTS SLOTSRANGE s e [s e …] NODE id [SLOTSRANGE … NODE …]`.
pub fn migrateslots(ctx: &mut Ctx, a: &Args) {
    let Some(cl) = ctx.srv.cluster.get().cloned() else {
        return ctx
            .r
            .error("ERR This instance has cluster support disabled");
    };
    let srv = ctx.srv;
    let now = crate::keyspace::now_ms();
    let planned = cl.with(srv, |st| -> Result<Planned, String> {
        can_start(st)?;
        let mut groups: Planned = Vec::new();
        let mut i = 2;
        while i < a.len() {
            if !a.get(i).eq_ignore_ascii_case(b"SLOTSRANGE") {
                return Err(SYNTAX.into());
            }
            i += 1;
            let (ranges, owner) = parse_ranges(st, a, &mut i)?;
            if owner != Some(st.me) {
                return Err("ERR Slots are not served by this node.".into());
            }
            if let Some(s) = srv.slotmig.busy_slot(Op::Export, &ranges) {
                return Err(format!("ERR I am already migrating slot {s}."));
            }
            if groups.iter().any(|(j, _)| overlaps(&j.ranges, &ranges)) {
                return Err("ERR Slot ranges in migrations overlap".into());
            }
            if i + 1 >= a.len() || !a.get(i).eq_ignore_ascii_case(b"NODE") {
                return Err(SYNTAX.into());
            }
            let id = a.get(i + 1);
            i += 2;
            let shown = String::from_utf8_lossy(id);
            if id.len() != 40 {
                return Err(format!("ERR Invalid node name: {shown}"));
            }
            let Some(target) = NodeId::parse(id).and_then(|n| st.nodes.get(&n)) else {
                return Err(format!("ERR Unknown node name: {shown}"));
            };
            if target.id == st.me {
                return Err("ERR Target node can not be this node.".into());
            }
            let addr = (target.ip.clone(), target.port);
            let job = Job::export(
                crate::replication::new_replid(),
                ranges,
                st.me.to_string(),
                target.id.to_string(),
                now,
            );
            groups.push((job, addr));
        }
        Ok(groups)
    });
    match planned {
        Err(e) => ctx.r.error(&e),
        Ok(groups) => {
            for (job, addr) in groups {
                let name = job.name.clone();
                let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
                srv.slotmig.add(job, Some(tx));
                crate::slotmig::export::spawn(srv.clone(), name, addr, rx);
            }
            ctx.r.ok();
        }
    }
}

/// `CLUSTER GETSLOTMIGRATIONS`: every job, newest first, as maps.
pub fn getslotmigrations(ctx: &mut Ctx, _a: &Args) {
    if ctx.srv.cluster.get().is_none() {
        return ctx
            .r
            .error("ERR This instance has cluster support disabled");
    }
    let rows = ctx.srv.slotmig.rows();
    ctx.r.array(rows.len());
    for row in rows {
        let j = &row.job;
        ctx.r.map(13);
        ctx.r.bulk(b"name");
        ctx.r.bulk(j.name.as_bytes());
        ctx.r.bulk(b"operation");
        ctx.r.bulk(j.op.name().as_bytes());
        ctx.r.bulk(b"slot_ranges");
        ctx.r.bulk(j.ranges_text().as_bytes());
        ctx.r.bulk(b"target_node");
        ctx.r.bulk(j.target.as_bytes());
        ctx.r.bulk(b"source_node");
        ctx.r.bulk(j.source.as_bytes());
        ctx.r.bulk(b"create_time");
        ctx.r.int(j.created_ms / 1000);
        ctx.r.bulk(b"last_update_time");
        ctx.r.int(j.updated_ms / 1000);
        ctx.r.bulk(b"last_ack_time");
        ctx.r.int(j.last_ack_ms / 1000);
        ctx.r.bulk(b"state");
        ctx.r.bulk(j.phase.name().as_bytes());
        ctx.r.bulk(b"message");
        ctx.r.bulk(j.message.as_bytes());
        ctx.r.bulk(b"cow_size");
        ctx.r.int(0);
        // Ours, after Valkey's fields: progress for programs that drive
        // migrations (keys and bytes sent, or received).
        ctx.r.bulk(b"keys_transferred");
        ctx.r.int(row.keys as i64);
        ctx.r.bulk(b"bytes_transferred");
        ctx.r.int(row.bytes as i64);
    }
}

/// `CLUSTER CANCELSLOTMIGRATIONS`: stops every export running here.
pub fn cancelslotmigrations(ctx: &mut Ctx, _a: &Args) {
    if ctx.srv.cluster.get().is_none() {
        return ctx
            .r
            .error("ERR This instance has cluster support disabled");
    }
    if ctx.srv.slotmig.cancel_exports() == 0 {
        return ctx.r.error("ERR No migrations ongoing");
    }
    tracing::info!("Canceled all in progress slot migrations (user request)");
    ctx.r.ok();
}

/// `CLUSTER SYNCSLOTS <sub> …`: the migration protocol between nodes. Only
/// ESTABLISH (which turns this connection into the import's) and CAPA are
/// taken from an ordinary client; the control messages belong to the
/// migration's own connections, which read them before dispatch.
pub fn syncslots(ctx: &mut Ctx, a: &Args) {
    // Our master's stream and the AOF being replayed carry the start and
    // end of imports (the cluster may not be up yet while loading).
    if ctx.client.loading || (ctx.client.is_master && ctx.srv.repl.is_replica()) {
        return tracked(ctx, a);
    }
    if ctx.srv.cluster.get().is_none() {
        return ctx
            .r
            .error("ERR This instance has cluster support disabled");
    }
    let sub = a.get(2);
    if sub.eq_ignore_ascii_case(b"ESTABLISH") {
        return establish(ctx, a);
    }
    if sub.eq_ignore_ascii_case(b"CAPA") {
        return ctx.r.ok();
    }
    if sub.eq_ignore_ascii_case(b"FINISH") {
        return match finish_args(a) {
            None => ctx.r.error(SYNTAX),
            Some(name) if ctx.srv.slotmig.untrack(ctx.srv, &name) => ctx.r.ok(),
            Some(_) => ctx.r.error("ERR No such slot migration job"),
        };
    }
    match crate::cluster::slotmig::Msg::parse(sub) {
        Some(m) => ctx.r.error(&format!(
            "ERR CLUSTER SYNCSLOTS {} should only be used by slot migration clients",
            m.name()
        )),
        None => ctx.r.error(SYNTAX),
    }
}

/// NAME of `FINISH STATE <SUCCESS|FAILED> NAME <name> [MESSAGE <msg>]`.
fn finish_args(a: &Args) -> Option<String> {
    let (mut name, mut state) = (None, None);
    let mut i = 3;
    while i + 1 < a.len() {
        let (k, v) = (a.get(i), a.get(i + 1));
        if k.eq_ignore_ascii_case(b"NAME") {
            name = Some(String::from_utf8_lossy(v).into_owned());
        } else if k.eq_ignore_ascii_case(b"STATE") {
            if !(v.eq_ignore_ascii_case(b"SUCCESS") || v.eq_ignore_ascii_case(b"FAILED")) {
                return None;
            }
            state = Some(());
        } else if !k.eq_ignore_ascii_case(b"MESSAGE") {
            return None;
        }
        i += 2;
    }
    if i != a.len() {
        return None;
    }
    state.and(name)
}

/// ESTABLISH and FINISH as replayed from the AOF or applied from our
/// master: they only hide and show slots (Valkey's tracking-only jobs).
fn tracked(ctx: &mut Ctx, a: &Args) {
    let sub = a.get(2);
    if sub.eq_ignore_ascii_case(b"FINISH") {
        if let Some(name) = finish_args(a) {
            ctx.srv.slotmig.untrack(ctx.srv, &name);
        }
        return ctx.r.ok();
    }
    if !sub.eq_ignore_ascii_case(b"ESTABLISH") {
        // Control messages proxied through the stream are not ours.
        return ctx.r.ok();
    }
    let (mut name, mut ranges) = (None, Vec::new());
    let mut i = 3;
    while i < a.len() {
        let k = a.get(i);
        if k.eq_ignore_ascii_case(b"NAME") && i + 1 < a.len() {
            name = Some(String::from_utf8_lossy(a.get(i + 1)).into_owned());
            i += 2;
        } else if k.eq_ignore_ascii_case(b"SOURCE") && i + 1 < a.len() {
            i += 2;
        } else if k.eq_ignore_ascii_case(b"SLOTSRANGE") {
            i += 1;
            while i + 1 < a.len() {
                match (slot_of(a.get(i)), slot_of(a.get(i + 1))) {
                    (Ok(x), Ok(y)) if x <= y => ranges.push((x, y)),
                    _ => break,
                }
                i += 2;
            }
        } else {
            return ctx.r.error(SYNTAX);
        }
    }
    match name {
        Some(n) if !ranges.is_empty() => {
            ctx.srv.slotmig.track(ctx.srv, n, ranges);
            ctx.r.ok()
        }
        _ => ctx.r.error(SYNTAX),
    }
}

/// `CLUSTER SYNCSLOTS ESTABLISH SOURCE <id> NAME <name> SLOTSRANGE s e …`
/// (keys in any order): the import job begins.
fn establish(ctx: &mut Ctx, a: &Args) {
    let Some(cl) = ctx.srv.cluster.get().cloned() else {
        return;
    };
    let srv = ctx.srv;
    let now = crate::keyspace::now_ms();
    let made = cl.with(srv, |st| -> Result<Job, String> {
        can_start(st)?;
        let (mut source, mut name, mut ranges) = (None, None, None);
        let mut i = 3;
        while i < a.len() {
            let key = a.get(i);
            if key.eq_ignore_ascii_case(b"SOURCE") && source.is_none() && i + 1 < a.len() {
                let v = a.get(i + 1);
                if v.len() != 40 {
                    return Err(SYNTAX.into());
                }
                source = Some(v.to_vec());
                i += 2;
            } else if key.eq_ignore_ascii_case(b"NAME") && name.is_none() && i + 1 < a.len() {
                let v = a.get(i + 1);
                if v.len() != 40 {
                    return Err(SYNTAX.into());
                }
                name = Some(String::from_utf8_lossy(v).into_owned());
                i += 2;
            } else if key.eq_ignore_ascii_case(b"SLOTSRANGE") && ranges.is_none() {
                i += 1;
                ranges = Some(parse_ranges(st, a, &mut i)?);
            } else {
                return Err(SYNTAX.into());
            }
        }
        let (Some(source), Some(name), Some((ranges, owner))) = (source, name, ranges) else {
            return Err(SYNTAX.into());
        };
        let Some(src) = NodeId::parse(&source).filter(|n| st.nodes.contains_key(n)) else {
            return Err("ERR Target node does not know the source node".into());
        };
        if src == st.me {
            return Err("ERR Source node is target node itself".into());
        }
        if srv.slotmig.busy_slot(Op::Import, &ranges).is_some() {
            return Err(
                "ERR Slot is already being imported on the target by a different migration".into(),
            );
        }
        if owner != Some(src) {
            return Err("ERR Target node does not agree about current slot ownership".into());
        }
        Ok(Job::import(
            name,
            ranges,
            src.to_string(),
            st.me.to_string(),
            now,
        ))
    });
    match made {
        Err(e) => ctx.r.error(&e),
        Ok(job) => {
            crate::slotmig::import::prepare(srv, &job);
            crate::slotmig::log_establish(srv, &job);
            let name = job.name.clone();
            srv.slotmig.add(job, None);
            ctx.r.ok();
            ctx.actions.push(Action::SlotImport { name });
        }
    }
}

/// SETSLOT is refused while an atomic migration runs here (Valkey).
pub fn setslot_refusal(srv: &crate::server::Shared) -> Option<&'static str> {
    if srv.slotmig.active(Op::Import) {
        Some("ERR Slot import in progress.")
    } else if srv.slotmig.active(Op::Export) {
        Some("ERR Slot export in progress.")
    } else {
        None
    }
}

/// INFO fields for slot migrations (Valkey's stats, and ours for progress).
pub fn info_fields(srv: &crate::server::Shared) -> String {
    use std::sync::atomic::Ordering::Relaxed;
    let r = &srv.slotmig;
    let running = |op| {
        r.rows()
            .iter()
            .filter(|x| x.job.op == op && !x.job.phase.is_final())
            .count()
    };
    format!(
        "total_net_cluster_slot_import_bytes:{}\r\ntotal_net_cluster_slot_export_bytes:{}\r\ncluster_slot_import_keys:{}\r\ncluster_slot_export_keys:{}\r\ncluster_slot_imports_in_progress:{}\r\ncluster_slot_exports_in_progress:{}\r\n",
        r.import_bytes.load(Relaxed),
        r.export_bytes.load(Relaxed),
        r.import_keys.load(Relaxed),
        r.export_keys.load(Relaxed),
        running(Op::Import),
        running(Op::Export),
    )
}
