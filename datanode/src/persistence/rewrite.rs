//! AOF rewrite without fork.
//!
//! A rewrite must produce a base file equal to the dataset at the moment the
//! log switches to a new incremental file. We get that point-in-time view
//! slot by slot: when the switch happens (generation G begins), every slot
//! is snapshotted before the first change made to it in generation G —
//! either by the writer that is about to change it (under the slot lock it
//! already holds) or by the rewrite's sweep over all slots, whichever comes
//! first. Effects of writers that locked their slot before the switch are
//! still routed to the previous incremental file, and their changes are in
//! the snapshot because the sweep cannot lock the slot until they finish.

use std::io::Write;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::keyspace::{SlotRef, Value, SLOTS};
use crate::resp::parse::encode_command;
use crate::server::stats::Stats;
use crate::server::Shared;

/// Hash fields per HSET in the rewritten file.
const FIELDS_PER_CMD: usize = 64;

/// Encodes a slot's live keys as commands that recreate them; with
/// `batch_strings`, small strings that have no TTL are batched into
/// MSETs of up to 64 keys (a slot migration's snapshot: the keys of one slot can
/// share a command, and the target then runs far fewer of them),
/// appended to `out` (a buffer reused from an earlier chunk).
pub fn encode_slot_with(s: &SlotRef, batch_strings: bool, mut out: Vec<u8>) -> Vec<u8> {
    if s.is_empty() {
        return out;
    }
    let mut mset: Vec<Vec<u8>> = Vec::new();
    let flush = |mset: &mut Vec<Vec<u8>>, out: &mut Vec<u8>| {
        if mset.is_empty() {
            return;
        }
        let mut args: Vec<&[u8]> = Vec::with_capacity(mset.len() + 1);
        args.push(b"MSET");
        args.extend(mset.iter().map(|a| a.as_slice()));
        encode_command(&args, out);
        mset.clear();
    };
    let mut b = itoa::Buffer::new();
    encode_command(
        &[b"SELECT".as_slice(), b.format(s.db.index).as_bytes()],
        &mut out,
    );
    s.for_each_live(|k, v, exp| {
        let mut nb = itoa::Buffer::new();
        if batch_strings && exp.is_none() {
            // Small values only: a batch stays a few tens of KB.
            if let Some(bytes) = v.str_bytes(&mut nb).filter(|b| b.len() <= 512) {
                mset.push(k.to_vec());
                mset.push(bytes.to_vec());
                if mset.len() >= 2 * FIELDS_PER_CMD {
                    flush(&mut mset, &mut out);
                }
                return;
            }
        }
        match v {
            Value::List(l) => {
                let items: Vec<std::borrow::Cow<'_, [u8]>> = l.iter().collect();
                for chunk in items.chunks(FIELDS_PER_CMD) {
                    let mut args: Vec<&[u8]> = vec![b"RPUSH", k];
                    args.extend(chunk.iter().map(|e| &**e));
                    encode_command(&args, &mut out);
                }
            }
            Value::ZSet(z) => {
                let items: Vec<(Vec<u8>, Vec<u8>)> = z
                    .dict
                    .iter()
                    .map(|(m, s)| {
                        let mut b = [0u8; 32];
                        (crate::util::fmt_double(*s, &mut b).to_vec(), m.to_vec())
                    })
                    .collect();
                for chunk in items.chunks(FIELDS_PER_CMD) {
                    let mut args: Vec<&[u8]> = vec![b"ZADD", k];
                    for (s, m) in chunk {
                        args.push(s);
                        args.push(m);
                    }
                    encode_command(&args, &mut out);
                }
            }
            Value::Stream(st) => {
                // Entries with their IDs, then the stream's own IDs and
                // counters (an empty stream is made by trimming one entry).
                if st.length > 0 {
                    st.for_each(|e| {
                        let id = e.id.format();
                        let fields: Vec<(Vec<u8>, Vec<u8>)> = e
                            .fields
                            .iter()
                            .map(|(f, v)| (f.to_vec(), v.to_vec()))
                            .collect();
                        let mut args: Vec<&[u8]> = vec![b"XADD", k, id.as_bytes()];
                        for (f, v) in &fields {
                            args.push(f);
                            args.push(v);
                        }
                        encode_command(&args, &mut out);
                    });
                } else {
                    encode_command(
                        &[b"XADD".as_slice(), k, b"MAXLEN", b"0", b"0-1", b"x", b"y"],
                        &mut out,
                    );
                }
                let (last, added, maxdel) = (
                    st.last_id.format(),
                    st.entries_added.to_string(),
                    st.max_deleted_id.format(),
                );
                encode_command(
                    &[
                        b"XSETID".as_slice(),
                        k,
                        last.as_bytes(),
                        b"ENTRIESADDED",
                        added.as_bytes(),
                        b"MAXDELETEDID",
                        maxdel.as_bytes(),
                    ],
                    &mut out,
                );
                // Groups as Redis rewrites them: CREATE with the read
                // counter, then each consumer's pending entries as forced
                // claims (an idle consumer by CREATECONSUMER).
                for (name, g) in &st.groups {
                    let (last, read) = (g.last_id.format(), g.entries_read.to_string());
                    encode_command(
                        &[
                            b"XGROUP".as_slice(),
                            b"CREATE",
                            k,
                            name,
                            last.as_bytes(),
                            b"ENTRIESREAD",
                            read.as_bytes(),
                        ],
                        &mut out,
                    );
                    for (cname, c) in &g.consumers {
                        if c.pel.is_empty() {
                            encode_command(
                                &[b"XGROUP".as_slice(), b"CREATECONSUMER", k, name, cname],
                                &mut out,
                            );
                        }
                        for id in &c.pel {
                            let Some(p) = g.pel.get(id) else {
                                continue;
                            };
                            let (id, time, count) = (
                                id.format(),
                                p.delivery_time.to_string(),
                                p.delivery_count.to_string(),
                            );
                            encode_command(
                                &[
                                    b"XCLAIM".as_slice(),
                                    k,
                                    name,
                                    cname,
                                    b"0",
                                    id.as_bytes(),
                                    b"TIME",
                                    time.as_bytes(),
                                    b"RETRYCOUNT",
                                    count.as_bytes(),
                                    b"JUSTID",
                                    b"FORCE",
                                ],
                                &mut out,
                            );
                        }
                    }
                }
            }
            Value::Set(set) => {
                let members = set.members();
                for chunk in members.chunks(FIELDS_PER_CMD) {
                    let mut args: Vec<&[u8]> = vec![b"SADD", k];
                    args.extend(chunk.iter().map(|m| m.as_slice()));
                    encode_command(&args, &mut out);
                }
            }
            Value::Hash(h) => {
                let pairs = h.pairs();
                for chunk in pairs.chunks(FIELDS_PER_CMD) {
                    let mut args: Vec<&[u8]> = vec![b"HSET", k];
                    for (f, val) in chunk {
                        args.push(f);
                        args.push(val);
                    }
                    encode_command(&args, &mut out);
                }
            }
            other => {
                let bytes = other.str_bytes(&mut nb).unwrap_or_default();
                encode_command(&[b"SET".as_slice(), k, bytes], &mut out);
            }
        }
        if let Some(at) = exp {
            let mut tb = itoa::Buffer::new();
            encode_command(
                &[b"PEXPIREAT".as_slice(), k, tb.format(at).as_bytes()],
                &mut out,
            );
        }
    });
    flush(&mut mset, &mut out);
    out
}

/// Where a rewrite's base goes: commands straight to the file, or an RDB
/// preamble assembled as it is written.
enum Base<'a> {
    Aof(&'a mut crate::persistence::savefile::SaveWriter),
    Rdb(
        Box<
            crate::persistence::rdb::file::StreamAssembler<
                'a,
                crate::persistence::savefile::SaveWriter,
            >,
        >,
    ),
}

/// The sweep: runs on its own thread, writes the new base file, then asks
/// the AOF writer to install it.
pub fn run(
    srv: Arc<Shared>,
    tmp_path: std::path::PathBuf,
    cut: crate::persistence::CutSignal,
) -> Result<(), String> {
    // One snapshot at a time: wait for a BGSAVE to finish (its starter
    // does not wait for that).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(600);
    while srv.log.snapshot_busy.swap(true, Ordering::SeqCst) {
        cut.taken();
        if std::time::Instant::now() > deadline {
            return Err("a background save kept the snapshot busy".into());
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let r = run_locked(srv.clone(), tmp_path, cut);
    srv.log.snapshot_busy.store(false, Ordering::SeqCst);
    r
}

fn run_locked(
    srv: Arc<Shared>,
    tmp_path: std::path::PathBuf,
    cut: crate::persistence::CutSignal,
) -> Result<(), String> {
    // aof-use-rdb-preamble (Redis's default): the base is an RDB file.
    let preamble = srv.config.read().flag("aof-use-rdb-preamble");
    let (tx, rx) = std::sync::mpsc::channel::<Vec<u8>>();
    *srv.log.snap_tx.lock() = Some(tx);
    srv.log.snap_rdb.store(preamble, Ordering::SeqCst);
    let result = (|| -> Result<(), String> {
        // The libraries as of the switch: every FUNCTION change is logged
        // under the registry's lock, so each lands in the base or in the
        // new increment, never both.
        let functions = {
            let set = srv.scripts.functions.read();
            crate::persistence::aof::writer_switch(&srv)?;
            cut.taken();
            set.codes()
        };
        let mut f = crate::persistence::savefile::writer(
            std::fs::File::create(&tmp_path)
                .map_err(|e| format!("creating {}: {e}", tmp_path.display()))?,
            crate::persistence::savefile::aof_autosync(),
        );
        if !preamble {
            // Redis starts an AOF-format base with the rewrite's time.
            if crate::persistence::effects::AOF_TIMESTAMPS.load(Ordering::Relaxed) {
                let mut ts = Vec::new();
                crate::persistence::effects::timestamp_annotation(
                    crate::keyspace::now_ms() / 1000,
                    &mut ts,
                );
                f.write_all(&ts).map_err(|e| e.to_string())?;
            }
            for code in &functions {
                let cmd: [&[u8]; 3] = [b"FUNCTION", b"LOAD", code];
                let mut enc = Vec::new();
                crate::resp::parse::encode_command(&cmd, &mut enc);
                f.write_all(&enc).map_err(|e| e.to_string())?;
            }
        }
        let now = crate::keyspace::now_ms();
        // An RDB preamble is written as it goes, as an AOF base is: the
        // slots copied ahead of the sweep wait for their database's turn,
        // never the whole file. Its key counts are read now, a hint to
        // loaders (the rewrite's cut is per slot, not one instant).
        // INFO shows the progress of a rewrite too, as Redis does.
        let counts = crate::persistence::counts_for_save(&srv, srv.ks.existing());
        let mut out = if preamble {
            let aux = crate::persistence::rdb::file::Aux {
                aof_base: true,
                hidden: srv.ks.db(0).hidden_ranges(),
                functions,
                ..Default::default()
            };
            Base::Rdb(Box::new(
                crate::persistence::rdb::file::StreamAssembler::new(&mut f, now, &aux, counts),
            ))
        } else {
            Base::Aof(&mut f)
        };
        let drain = |out: &mut Base| -> Result<(), String> {
            while let Ok(chunk) = rx.try_recv() {
                match out {
                    Base::Rdb(a) => a.chunk(chunk),
                    Base::Aof(f) => f.write_all(&chunk).map_err(|e| e.to_string())?,
                }
            }
            Ok(())
        };
        for d in 0..srv.ks.count() {
            let Some(db) = srv.ks.existing().find(|db| db.index == d) else {
                continue;
            };
            if let Base::Rdb(a) = &mut out {
                a.begin_db(d as u32);
            }
            for s in 0..SLOTS as u16 {
                // Locking is enough: the lock path snapshots the slot.
                let g = db.sweep_slot(s, now);
                let keys = db.slot_keys(s) as u64;
                drop(g);
                crate::persistence::rdb::slot_save_delay(db, s, || true);
                Stats::add(&srv.stats.save_keys_processed, keys);
                drain(&mut out)?;
            }
        }
        srv.log.rewriting.store(false, Ordering::SeqCst);
        *srv.log.snap_tx.lock() = None;
        drain(&mut out)?;
        if let Base::Rdb(a) = out {
            (*a).finish().map_err(|e| e.to_string())?;
        }
        let file = f.into_inner().map_err(|e| e.to_string())?.into_inner();
        file.sync_all().map_err(|e| e.to_string())?;
        crate::persistence::aof::writer_finish(&srv, &tmp_path, preamble)
    })();
    srv.log.rewriting.store(false, Ordering::SeqCst);
    srv.log.snap_rdb.store(false, Ordering::SeqCst);
    *srv.log.snap_tx.lock() = None;
    let cow = srv.log.cow_bytes.swap(0, Ordering::Relaxed);
    srv.stats.aof_last_cow_size.store(cow, Ordering::Relaxed);
    srv.stats.save_keys_total.store(0, Ordering::Relaxed);
    srv.stats.save_keys_processed.store(0, Ordering::Relaxed);
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp_path);
    }
    result
}
