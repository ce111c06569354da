//! FUNCTION for a server with no scripting engine yet: the library set is
//! always empty, so FLUSH, LIST, DUMP, RESTORE, DELETE and KILL answer as
//! redis-server 7.0 does for an empty set (Redis's test harness sends
//! FUNCTION FLUSH before every test). LOAD and FCALL arrive with Lua.

use super::{eq_ic, Args, Ctx};
use crate::persistence::rdb::crc64::crc64;

/// The RDB version FUNCTION DUMP stamps on its payload (Redis 7.0's).
const RDB_VERSION: u16 = 10;

pub fn flush(ctx: &mut Ctx, a: &Args) {
    if a.len() > 3 {
        return syntax(ctx, a);
    }
    if a.len() == 3 && !(eq_ic(a.get(2), "ASYNC") || eq_ic(a.get(2), "SYNC")) {
        return ctx
            .r
            .error("ERR FUNCTION FLUSH only supports SYNC|ASYNC option");
    }
    ctx.r.ok();
}

/// Redis's reply to extra arguments, naming the subcommand as typed.
fn syntax(ctx: &mut Ctx, a: &Args) {
    ctx.r.error(&format!(
        "ERR unknown subcommand or wrong number of arguments for '{}'. Try FUNCTION HELP.",
        String::from_utf8_lossy(a.get(1))
    ));
}

pub fn list(ctx: &mut Ctx, a: &Args) {
    let mut j = 2;
    let (mut withcode, mut pattern) = (false, false);
    while j < a.len() {
        let t = a.get(j);
        if eq_ic(t, "WITHCODE") && !withcode {
            withcode = true;
        } else if eq_ic(t, "LIBRARYNAME") && !pattern {
            if j + 1 >= a.len() {
                return ctx.r.error("ERR library name argument was not given");
            }
            pattern = true;
            j += 1;
        } else {
            return ctx.r.error(&format!(
                "ERR Unknown argument {}",
                String::from_utf8_lossy(t)
            ));
        }
        j += 1;
    }
    ctx.r.array(0);
}

/// An empty library set serialises to just the version and checksum footer.
pub fn dump(ctx: &mut Ctx, _a: &Args) {
    let mut p = Vec::with_capacity(10);
    p.extend_from_slice(&RDB_VERSION.to_le_bytes());
    let crc = crc64(&p);
    p.extend_from_slice(&crc.to_le_bytes());
    ctx.r.bulk(&p);
}

pub fn restore(ctx: &mut Ctx, a: &Args) {
    if a.len() > 4 {
        return syntax(ctx, a);
    }
    if a.len() == 4 {
        let p = a.get(3);
        if !(eq_ic(p, "FLUSH") || eq_ic(p, "APPEND") || eq_ic(p, "REPLACE")) {
            return ctx.r.error(
                "ERR Wrong restore policy given, value should be either FLUSH, APPEND or REPLACE.",
            );
        }
    }
    let data = a.get(2);
    if !payload_ok(data) {
        return ctx
            .r
            .error("ERR DUMP payload version or checksum are wrong");
    }
    if data.len() > 10 {
        // Libraries need the Lua engine (a later milestone): refuse rather
        // than accept code we cannot run.
        return ctx.r.error("ERR Engine 'LUA' not found");
    }
    ctx.r.ok();
}

fn payload_ok(p: &[u8]) -> bool {
    if p.len() < 10 {
        return false;
    }
    let footer = &p[p.len() - 10..];
    let ver = u16::from_le_bytes([footer[0], footer[1]]);
    if ver > RDB_VERSION {
        return false;
    }
    let crc = crc64(&p[..p.len() - 8]);
    crc.to_le_bytes() == footer[2..]
}

pub fn delete(ctx: &mut Ctx, _a: &Args) {
    ctx.r.error("ERR Library not found");
}

pub fn kill(ctx: &mut Ctx, _a: &Args) {
    ctx.r.error("NOTBUSY No scripts in execution right now.");
}

pub fn help(ctx: &mut Ctx, _a: &Args) {
    super::connection::help_reply(
        ctx,
        "FUNCTION",
        &[
            "DELETE <LIBRARY NAME>",
            "    Delete the library with the given name.",
            "DUMP",
            "    Serialize the loaded libraries.",
            "FLUSH [ASYNC|SYNC]",
            "    Delete every library.",
            "KILL",
            "    Stop the function that is running, if it has not written.",
            "LIST [LIBRARYNAME PATTERN] [WITHCODE]",
            "    List the loaded libraries.",
            "RESTORE <PAYLOAD> [FLUSH|APPEND|REPLACE]",
            "    Load libraries from a FUNCTION DUMP payload.",
        ],
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_dump_round_trips_and_corruption_is_refused() {
        let mut p = RDB_VERSION.to_le_bytes().to_vec();
        let crc = crc64(&p);
        p.extend_from_slice(&crc.to_le_bytes());
        assert!(payload_ok(&p));
        let mut bad = p.clone();
        bad[3] ^= 1;
        assert!(!payload_ok(&bad));
        assert!(!payload_ok(&p[..9]));
    }
}
