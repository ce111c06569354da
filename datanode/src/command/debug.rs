//! DEBUG subcommands Redis's test suite relies on: DIGEST and DIGEST-VALUE
//! (Redis's SHA-1 digest, so datasets compare across servers), OBJECT,
//! PROTOCOL, LISTPACK, LOG, CHANGE-REPL-ID, REPLYBUFFER, PAUSE-CRON,
//! QUICKLIST-PACKED-THRESHOLD and MALLCTL/MALLCTL-STR.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use sha1_smol::Sha1;

use super::{eq_ic, Args, Ctx};
use crate::keyspace::Value;

/// Set by DEBUG PAUSE-CRON: the once-a-tick server jobs (active expiry)
/// skip their work while it is on.
pub static CRON_PAUSED: AtomicBool = AtomicBool::new(false);

/// DEBUG QUICKLIST-PACKED-THRESHOLD. Our lists keep any element inside a
/// packed chunk (there are no "plain" nodes to switch to), so the value is
/// only validated and remembered.
static PACKED_THRESHOLD: AtomicU64 = AtomicU64::new(1 << 30);

type Digest = [u8; 20];

fn sha1(parts: &[&[u8]]) -> Digest {
    let mut h = Sha1::new();
    for p in parts {
        h.update(p);
    }
    h.digest().bytes()
}

/// `digest ^= sha1(data)`.
fn xor_in(digest: &mut Digest, data: &[u8]) {
    let h = sha1(&[data]);
    for (d, x) in digest.iter_mut().zip(h) {
        *d ^= x;
    }
}

/// `digest = sha1(digest ^ sha1(data))`: order-sensitive mixing.
fn mix_in(digest: &mut Digest, data: &[u8]) {
    xor_in(digest, data);
    *digest = sha1(&[digest.as_slice()]);
}

/// C's `%.17g`, which Redis uses for scores in digests.
fn g17(x: f64) -> String {
    let mut buf = [0u8; 64];
    // SAFETY: snprintf writes at most buf.len() bytes, NUL included.
    let n = unsafe {
        libc::snprintf(
            buf.as_mut_ptr() as *mut libc::c_char,
            buf.len(),
            c"%.17g".as_ptr(),
            x,
        )
    };
    String::from_utf8_lossy(&buf[..(n.max(0) as usize).min(buf.len() - 1)]).into_owned()
}

/// The digest of one value, as Redis computes it: its type, its contents
/// (ordered for lists, order-free for sets, hashes and sorted sets) and
/// whether it has a TTL.
pub fn value_digest(v: &Value, has_ttl: bool) -> Digest {
    let mut d: Digest = [0; 20];
    combine_value(&mut d, v, has_ttl);
    d
}

fn hex(d: &Digest) -> String {
    d.iter().map(|b| format!("{b:02x}")).collect()
}

/// DEBUG DIGEST: every database's keys and values folded into one digest
/// (all zeros for an empty dataset). Slots are locked one at a time.
fn digest(ctx: &mut Ctx) {
    let mut total: Digest = [0; 20];
    let dbs: Vec<usize> = ctx.srv.ks.existing().map(|d| d.index).collect();
    let saved = ctx.locks.db;
    for dbi in dbs {
        ctx.locks.db = ctx.srv.ks.db(dbi);
        if ctx.locks.db.size() == 0 {
            continue;
        }
        mix_in(&mut total, &(dbi as u32).to_be_bytes());
        for slot in 0..crate::keyspace::SLOTS as u16 {
            if ctx.locks.db.slot_keys(slot) == 0 {
                continue;
            }
            let g = ctx.locks.slot(slot);
            g.for_each_live(|k, v, exp| {
                // One digest per key: its name, then its value's parts.
                let mut kd: Digest = [0; 20];
                mix_in(&mut kd, k);
                combine_value(&mut kd, v, exp.is_some());
                xor_in(&mut total, &kd);
            });
        }
    }
    ctx.locks.db = saved;
    ctx.r.simple(&hex(&total));
}

/// Continues a key's digest with its value's parts (Redis computes the
/// per-key digest in one buffer: key first, then the value's fields).
fn combine_value(d: &mut Digest, v: &Value, has_ttl: bool) {
    let type_code: u32 = match v {
        Value::Int(_) | Value::Str(_) | Value::Raw(_) => 0,
        Value::List(_) => 1,
        Value::Set(_) => 2,
        Value::ZSet(_) => 3,
        Value::Hash(_) => 4,
        Value::Stream(_) => 6,
    };
    mix_in(d, &type_code.to_be_bytes());
    fold_contents(d, v);
    if has_ttl {
        xor_in(d, b"!!expire!!");
    }
}

fn fold_contents(d: &mut Digest, v: &Value) {
    match v {
        Value::Int(_) | Value::Str(_) | Value::Raw(_) => {
            let mut b = itoa::Buffer::new();
            if let Some(s) = v.str_bytes(&mut b) {
                mix_in(d, s);
            }
        }
        Value::List(l) => {
            for e in l.iter() {
                mix_in(d, &e);
            }
        }
        Value::Set(s) => {
            for m in s.members() {
                xor_in(d, &m);
            }
        }
        Value::ZSet(z) => {
            for (m, score) in z.range(0, z.len().saturating_sub(1)) {
                let mut e: Digest = [0; 20];
                mix_in(&mut e, &m);
                mix_in(&mut e, g17(score).as_bytes());
                xor_in(d, &e);
            }
        }
        Value::Hash(h) => h.for_each(|f, val| {
            let mut e: Digest = [0; 20];
            mix_in(&mut e, f);
            mix_in(&mut e, val);
            xor_in(d, &e);
        }),
        Value::Stream(st) => st.for_each(|e| {
            mix_in(d, format!("{}.{}", e.id.ms, e.id.seq).as_bytes());
            for (f, v) in &e.fields {
                mix_in(d, &f.to_vec());
                mix_in(d, &v.to_vec());
            }
        }),
    }
}

fn digest_value(ctx: &mut Ctx, a: &Args) {
    let keys: Vec<&[u8]> = a.iter().skip(2).collect();
    ctx.r.array(keys.len());
    for k in keys {
        let mut s = ctx.locks.key(k);
        let d = s.peek(k).map(|(v, _)| value_digest(v, false));
        let d = match d {
            Some(mut d) => {
                if s.expire_of(k).is_some() {
                    xor_in(&mut d, b"!!expire!!");
                }
                d
            }
            None => [0; 20],
        };
        drop(s);
        ctx.r.simple(&hex(&d));
    }
}

/// DEBUG OBJECT: Redis's one-line description. The address is that of the
/// value's entry, so it stays put while a value is changed in place.
fn object(ctx: &mut Ctx, key: &[u8]) {
    let s = ctx.locks.key(key);
    let now = s.now;
    let line = s.peek_stored(key).map(|(v, meta)| {
        let serialized = crate::persistence::rdb::object::dump(v).len().saturating_sub(11);
        let mut line = format!(
            "Value at:{:p} refcount:1 encoding:{} serializedlength:{} lru:{} lru_seconds_idle:{}",
            v as *const Value,
            v.encoding(),
            serialized,
            meta & 0xFF_FFFF,
            crate::keyspace::access::idle_seconds(meta, now)
        );
        if let Value::List(l) = v {
            let nodes = l.chunk_count().max(1);
            line.push_str(&format!(
                " ql_nodes:{} ql_avg_node:{:.2} ql_listpack_max:{} ql_compressed:{} ql_uncompressed_size:{}",
                nodes,
                l.len() as f64 / nodes as f64,
                l.fill(),
                u8::from(l.compress_depth() > 0),
                l.listpack_bytes()
            ));
        }
        line
    });
    drop(s);
    match line {
        Some(l) => ctx.r.simple(&l),
        None => ctx.r.error("ERR no such key"),
    }
}

fn protocol(ctx: &mut Ctx, t: &[u8]) {
    let r = &mut ctx.r;
    let resp3 = r.is_resp3();
    if eq_ic(t, "string") {
        r.bulk(b"Hello World");
    } else if eq_ic(t, "integer") {
        r.int(12345);
    } else if eq_ic(t, "double") {
        // The value Redis's DEBUG PROTOCOL double sends, not π.
        #[allow(clippy::approx_constant)]
        r.double(3.141);
    } else if eq_ic(t, "bignum") {
        let n = b"1234567999999999999999999999999999999";
        if resp3 {
            r.raw(b"(");
            r.raw(n);
            r.raw(b"\r\n");
        } else {
            r.bulk(n);
        }
    } else if eq_ic(t, "null") {
        r.null();
    } else if eq_ic(t, "array") {
        r.array(3);
        (0..3).for_each(|i| r.int(i));
    } else if eq_ic(t, "set") {
        r.set(3);
        (0..3).for_each(|i| r.int(i));
    } else if eq_ic(t, "map") {
        r.map(3);
        for i in 0..3 {
            r.int(i);
            r.boolean(i == 1);
        }
    } else if eq_ic(t, "attrib") {
        if resp3 {
            r.raw(b"|1\r\n");
            r.bulk(b"key-popularity");
            r.array(2);
            r.bulk(b"key:123");
            r.int(90);
        }
        r.bulk(b"Some real reply following the attribute");
    } else if eq_ic(t, "push") {
        if !resp3 {
            return r.error("ERR RESP2 is not supported by this command");
        }
        r.push(2);
        r.bulk(b"server-cpu-usage");
        r.int(42);
        r.bulk(b"Some real reply following the push reply");
    } else if eq_ic(t, "verbatim") {
        r.verbatim(b"This is a verbatim\nstring");
    } else if eq_ic(t, "true") {
        r.boolean(true);
    } else if eq_ic(t, "false") {
        r.boolean(false);
    } else {
        r.error("ERR Wrong protocol type name. Please use one of the following: string|integer|double|bignum|null|array|set|map|attrib|push|verbatim|true|false");
    }
}

/// jemalloc's mallctl: read a value, or write one when given.
/// jemalloc's error code in strerror's words, as Redis replies.
fn mallctl_failed(ctx: &mut Ctx, rc: libc::c_int) {
    let e = std::io::Error::from_raw_os_error(rc);
    ctx.r.error(&format!("ERR {}", crate::util::strerror(&e)));
}

fn mallctl(ctx: &mut Ctx, a: &Args, as_str: bool) {
    let name = match std::ffi::CString::new(a.get(2)) {
        Ok(n) => n,
        Err(_) => return ctx.r.error("ERR invalid mallctl name"),
    };
    if as_str {
        if a.len() > 3 && eq_ic(a.get(3), "VOID") {
            // SAFETY: a void mallctl takes no buffers.
            let rc = unsafe {
                tikv_jemalloc_sys::mallctl(
                    name.as_ptr(),
                    std::ptr::null_mut(),
                    std::ptr::null_mut(),
                    std::ptr::null_mut(),
                    0,
                )
            };
            return if rc == 0 {
                ctx.r.ok()
            } else {
                mallctl_failed(ctx, rc)
            };
        }
        let mut out: *const libc::c_char = std::ptr::null();
        let mut len = std::mem::size_of::<*const libc::c_char>();
        // SAFETY: reading a `char *` option into a pointer-sized buffer.
        let rc = unsafe {
            tikv_jemalloc_sys::mallctl(
                name.as_ptr(),
                &mut out as *mut _ as *mut libc::c_void,
                &mut len,
                std::ptr::null_mut(),
                0,
            )
        };
        if rc != 0 || out.is_null() {
            return mallctl_failed(ctx, rc);
        }
        // SAFETY: jemalloc returned a NUL-terminated static string.
        let s = unsafe { std::ffi::CStr::from_ptr(out) };
        return ctx.r.simple(&s.to_string_lossy());
    }
    let mut old: u64 = 0;
    let mut len = std::mem::size_of::<u64>();
    let mut new = match a.len() > 3 {
        true => match crate::resp::parse_i64(a.get(3)) {
            Some(n) => Some(n as u64),
            None => return ctx.r.error(super::NOT_INT),
        },
        false => None,
    };
    let (newp, newlen) = match &mut new {
        Some(v) => (
            v as *mut u64 as *mut libc::c_void,
            std::mem::size_of::<u64>(),
        ),
        None => (std::ptr::null_mut(), 0),
    };
    // SAFETY: an integer option read into (and optionally written from) a
    // u64 we own; jemalloc reports a size mismatch as an error code.
    let rc = unsafe {
        tikv_jemalloc_sys::mallctl(
            name.as_ptr(),
            &mut old as *mut u64 as *mut libc::c_void,
            &mut len,
            newp,
            newlen,
        )
    };
    if rc != 0 {
        return mallctl_failed(ctx, rc);
    }
    ctx.r.int(old as i64);
}

/// DEBUG LOADAOF. As while redis-server loads, the other clients are told
/// -LOADING meanwhile (but for what Redis marks `loading`, such as INFO),
/// and nothing expires; writes already running finish first. Outside a
/// transaction the load runs on a blocking thread while the connection
/// waits, so the command thread goes on answering the others.
fn load_aof(ctx: &mut Ctx) {
    let offload = !ctx.client.in_exec
        && ctx.client.multi.is_none()
        && !ctx.client.loading
        && tokio::runtime::Handle::try_current().is_ok();
    if offload {
        let srv = ctx.srv.clone();
        let proto = ctx.client.proto;
        ctx.actions
            .push(super::Action::Offload(super::Offloaded(Box::new(
                move || {
                    let t0 = std::time::Instant::now();
                    let mut out = Vec::new();
                    load_aof_reply(
                        &mut crate::resp::Reply::new(&mut out, proto),
                        load_aof_now(&srv),
                    );
                    super::OffloadDone {
                        detached: false,
                        error_counted: false,
                        reply: out,
                        dirty: 0,
                        cmd: super::table::lookup(b"debug"),
                        usec: t0.elapsed().as_micros() as u64,
                    }
                },
            ))));
        return;
    }
    let held = ctx.locks.release_held();
    let r = load_aof_now(ctx.srv);
    ctx.locks.relock(held);
    load_aof_reply(&mut ctx.r, r);
}

fn load_aof_now(
    srv: &std::sync::Arc<crate::server::Shared>,
) -> Result<u64, crate::persistence::aof::AofError> {
    srv.repl.loading.store(true, Ordering::SeqCst);
    let expiry_paused = srv.ks.expiry.paused.swap(true, Ordering::SeqCst);
    if !srv.pause.drain_blocking(std::time::Duration::from_secs(1)) {
        tracing::warn!("Writes still running 1 s after DEBUG LOADAOF began");
    }
    let r = crate::persistence::aof::reload(srv);
    srv.ks.expiry.paused.store(
        expiry_paused && srv.pause.kind() != crate::server::pause::OFF,
        Ordering::SeqCst,
    );
    srv.repl.loading.store(false, Ordering::SeqCst);
    r
}

fn load_aof_reply(
    r: &mut crate::resp::Reply,
    loaded: Result<u64, crate::persistence::aof::AofError>,
) {
    match loaded {
        Ok(n) => {
            tracing::warn!("Append Only File loaded by DEBUG LOADAOF ({n} commands)");
            r.ok();
        }
        Err(e) => r.error(&format!("ERR Error loading the AOF: {e}")),
    }
}

/// Runs a DEBUG subcommand this module knows; false if it is not one.
pub fn run(ctx: &mut Ctx, a: &Args) -> bool {
    let sub = a.get(1);
    let n = a.len();
    if eq_ic(sub, "DIGEST") && n == 2 {
        digest(ctx);
    } else if eq_ic(sub, "DIGEST-VALUE") && n >= 2 {
        digest_value(ctx, a);
    } else if eq_ic(sub, "OBJECT") && n == 3 {
        object(ctx, a.get(2));
    } else if eq_ic(sub, "PROTOCOL") && n == 3 {
        protocol(ctx, a.get(2));
    } else if eq_ic(sub, "LOG") && n == 3 {
        tracing::warn!("DEBUG LOG: {}", String::from_utf8_lossy(a.get(2)));
        ctx.r.ok();
    } else if eq_ic(sub, "WRITE-ADMISSION-DELAY") && n == 3 {
        // Ours, for tests: holds each admitted write this long before it
        // runs, in the window a pause's drain must cover.
        match std::str::from_utf8(a.get(2))
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
        {
            Some(us) if us <= 10_000_000 => {
                crate::server::pause::ADMISSION_DELAY_US.store(us, Ordering::Relaxed);
                ctx.r.ok();
            }
            _ => ctx.r.error("ERR delay must be 0..10000000 microseconds"),
        }
    } else if eq_ic(sub, "WRITES-IN-FLIGHT") && n == 2 {
        // Ours, for tests: writes admitted past the pause check and not
        // finished, on other threads.
        ctx.r.int(ctx.srv.pause.others_in_flight() as i64);
    } else if eq_ic(sub, "AOF-FLUSH-SLEEP") && n == 3 {
        // As Redis's atoi: what is not a number is 0 (no sleep).
        let us = crate::resp::parse_i64(a.get(2))
            .unwrap_or(0)
            .clamp(0, 10_000_000);
        crate::persistence::aof::FLUSH_SLEEP_US.store(us as u64, Ordering::Relaxed);
        ctx.r.ok();
    } else if eq_ic(sub, "CHANGE-REPL-ID") && n == 2 {
        tracing::warn!("Changing replication IDs after receiving DEBUG change-repl-id");
        crate::replication::new_history(ctx.srv);
        ctx.r.ok();
    } else if eq_ic(sub, "ERROR") && n == 3 {
        // The argument as the error line, as Redis writes it (no ERR).
        ctx.r.error_bytes(a.get(2));
    } else if eq_ic(sub, "SET-SKIP-CHECKSUM-VALIDATION") && n == 3 {
        // As Redis reads it with atoi.
        let on = atoi(a.get(2)) != 0;
        crate::persistence::rdb::SKIP_CHECKSUM.store(on, Ordering::Relaxed);
        ctx.r.ok();
    } else if eq_ic(sub, "LISTPACK") && n == 3 {
        let key = a.get(2);
        let mut s = ctx.locks.key(key);
        let enc = s.peek(key).map(|(v, _)| v.encoding());
        drop(s);
        match enc {
            None => ctx.r.error("ERR no such key"),
            Some("listpack") => ctx.r.simple("Listpack structure printed on stdout"),
            Some(_) => ctx.r.error("ERR Not a listpack encoded object."),
        }
    } else if eq_ic(sub, "QUICKLIST-PACKED-THRESHOLD") && n == 3 {
        let v = std::str::from_utf8(a.get(2))
            .ok()
            .and_then(crate::config::table::parse_memory);
        match v {
            Some(v) if (0..(4i64 << 30)).contains(&v) => {
                PACKED_THRESHOLD.store(v as u64, Ordering::Relaxed);
                ctx.r.ok();
            }
            _ => ctx
                .r
                .error("ERR argument must be a memory value bigger than 1 and smaller than 4gb"),
        }
    } else if eq_ic(sub, "REPLYBUFFER") && n == 4 {
        use crate::server::replybuf;
        let v = a.get(3);
        if eq_ic(a.get(2), "PEAK-RESET-TIME") {
            if eq_ic(v, "NEVER") {
                replybuf::set_peak_reset_ms(Some(-1));
            } else if eq_ic(v, "RESET") {
                replybuf::set_peak_reset_ms(None);
            } else {
                let Some(ms) = super::int_arg(ctx, v) else {
                    return true;
                };
                replybuf::set_peak_reset_ms(Some(ms));
            }
            ctx.r.ok();
        } else if eq_ic(a.get(2), "RESIZING") {
            // Redis reads the flag with atoi: anything not a number is 0.
            replybuf::set_resizing(atoi(v) != 0);
            ctx.r.ok();
        } else {
            return false;
        }
    } else if eq_ic(sub, "REPLICATE") && n >= 3 {
        // Sends a command to the replicas alone (not run here, not in the
        // AOF), as Redis's test helper does.
        let args: Vec<&[u8]> = a.iter().skip(2).collect();
        ctx.srv.log.append_repl_command(ctx.client.db, &args);
        ctx.r.ok();
    } else if eq_ic(sub, "LOADAOF") && n == 2 {
        load_aof(ctx);
    } else if eq_ic(sub, "PAUSE-CRON") && n == 3 {
        CRON_PAUSED.store(a.get(2) != b"0", Ordering::Relaxed);
        ctx.r.ok();
    } else if eq_ic(sub, "MALLCTL") && n >= 3 {
        mallctl(ctx, a, false);
    } else if eq_ic(sub, "MALLCTL-STR") && n >= 3 {
        mallctl(ctx, a, true);
    } else {
        return false;
    }
    true
}

/// C's atoi: optional sign and leading digits; anything else reads as 0.
fn atoi(s: &[u8]) -> i64 {
    let s = s.trim_ascii_start();
    let (neg, digits) = match s.first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let n = digits
        .iter()
        .take_while(|c| c.is_ascii_digit())
        .fold(0i64, |n, c| {
            n.wrapping_mul(10).wrapping_add((c - b'0') as i64)
        });
    if neg {
        -n
    } else {
        n
    }
}
