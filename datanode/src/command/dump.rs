//! DUMP and RESTORE: values in Redis's serialized form.

use super::{eq_ic, ev, int_arg, Args, Ctx, SYNTAX};
use crate::persistence::rdb::object::{dump as encode, undump, RestoreError};

pub fn dump(ctx: &mut Ctx, a: &Args) {
    let key = a.get(1);
    let mut s = ctx.locks.key(key);
    let payload = s.get(key).map(encode);
    drop(s);
    match payload {
        Some(p) => ctx.r.bulk(&p),
        None => ctx.r.null(),
    }
}

pub fn restore(ctx: &mut Ctx, a: &Args) {
    let (key, payload) = (a.get(1), a.get(3));
    let (mut replace, mut absttl) = (false, false);
    let (mut idle, mut freq): (Option<i64>, Option<i64>) = (None, None);
    let mut j = 4;
    while j < a.len() {
        let t = a.get(j);
        let more = j + 1 < a.len();
        if eq_ic(t, "REPLACE") {
            replace = true;
        } else if eq_ic(t, "ABSTTL") {
            absttl = true;
        } else if eq_ic(t, "IDLETIME") && more && freq.is_none() {
            let Some(v) = int_arg(ctx, a.get(j + 1)) else {
                return;
            };
            if v < 0 {
                return ctx.r.error("ERR Invalid IDLETIME value, must be >= 0");
            }
            idle = Some(v);
            j += 1;
        } else if eq_ic(t, "FREQ") && more && idle.is_none() {
            let Some(v) = int_arg(ctx, a.get(j + 1)) else {
                return;
            };
            if !(0..=255).contains(&v) {
                return ctx
                    .r
                    .error("ERR Invalid FREQ value, must be >= 0 and <= 255");
            }
            freq = Some(v);
            j += 1;
        } else {
            return ctx.r.error(SYNTAX);
        }
        j += 1;
    }
    let mut s = ctx.locks.key(key);
    if !replace && s.exists(key) {
        return ctx.r.error("BUSYKEY Target key name already exists.");
    }
    drop(s);
    let Some(mut ttl) = int_arg(ctx, a.get(2)) else {
        return;
    };
    if ttl < 0 {
        return ctx.r.error("ERR Invalid TTL value, must be >= 0");
    }
    let deep = crate::persistence::rdb::object::deep_checks(
        !ctx.client.is_master && !ctx.client.loading,
        ctx.client
            .user
            .as_ref()
            .is_some_and(|u| u.flags & crate::acl::user::SANITIZE_PAYLOAD_SKIP != 0),
    );
    let value = match crate::persistence::rdb::object::with_deep_checks(deep, || undump(payload)) {
        Ok(v) => v,
        Err(RestoreError::Envelope) => {
            return ctx
                .r
                .error("ERR DUMP payload version or checksum are wrong")
        }
        Err(RestoreError::Data(e)) => {
            // At Redis's level (LL_VERBOSE) and in its words; an empty
            // collection is refused without a word, as there.
            if e != crate::persistence::rdb::object::DecodeError::EmptyKey {
                tracing::debug!("Internal error in RDB reading offset 0 -> {e}");
            }
            return ctx.r.error("ERR Bad data format");
        }
    };
    let events = ctx.events();
    let mut s = ctx.locks.key(key);
    // Checked again: the payload was decoded without the lock, and a
    // writer may have created the key meanwhile.
    if !replace && s.exists(key) {
        return ctx.r.error("BUSYKEY Target key name already exists.");
    }
    let now = s.now;
    let deleted = replace && s.delete_freeing(key, &crate::keyspace::lazyfree::SERVER_DEL);
    if ttl > 0 && !absttl {
        ttl = ttl.saturating_add(now);
    }
    if ttl > 0 && ttl <= now && !crate::keyspace::loading() {
        // Already expired: nothing is created (an old value was replaced).
        if deleted {
            s.log(&[b"DEL".as_slice(), key]);
            events.emit(ev::GENERIC, "del", key);
        }
        drop(s);
        return ctx.r.ok();
    }
    s.set(key, value, false);
    if ttl > 0 {
        s.set_expire(key, ttl);
    }
    if let Some(meta) = crate::keyspace::access::restored(idle, freq, now) {
        s.set_access(key, meta);
    }
    // Propagated as sent, except that a relative TTL is made absolute and
    // ABSTTL added (Redis's rewrite).
    let mut b = itoa::Buffer::new();
    let ttl_s = b.format(ttl.max(0));
    let mut eff: Vec<&[u8]> = a.iter().collect();
    if ttl > 0 && !absttl {
        eff[2] = ttl_s.as_bytes();
        eff.push(b"ABSTTL");
    }
    s.log(&eff);
    events.emit(ev::GENERIC, "restore", key);
    drop(s);
    ctx.dirty(1);
    ctx.r.ok();
}
