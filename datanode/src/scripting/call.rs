//! `redis.call`, `redis.pcall` and `redis.sha1hex` as plain Lua C functions, and the KEYS
//! and ARGV tables of a run.
//!
//! They are every script's hot path. Reading arguments straight off the
//! Lua stack and pushing the reply straight onto it avoids the registry
//! reference per value that mlua's typed callbacks take.
//!
//! The rule in this file: any Lua call that allocates may raise an error,
//! which Lua 5.1 delivers with `longjmp`. So no value with a destructor
//! is alive on these frames across such a call. Owned buffers live in the
//! run's state ([`RunState`]), and only references and plain data sit on
//! the stack here.

use std::ffi::CStr;
use std::os::raw::c_int;

use mlua::ffi::{self, lua_State};

use super::engine::{run_state, RunState, COUNTED_C};

/// Replies nested deeper than this are refused rather than risk the
/// native stack; no command's reply comes close.
const MAX_DEPTH: usize = 1000;

/// `redis.call`: a failing command raises its error in the script.
pub(super) unsafe extern "C-unwind" fn call(l: *mut lua_State) -> c_int {
    entry(l, true)
}

/// `redis.pcall`: a failing command's error table is returned.
pub(super) unsafe extern "C-unwind" fn pcall(l: *mut lua_State) -> c_int {
    entry(l, false)
}

/// `redis.sha1hex`: the hash of its one argument as `lua_tolstring` gives
/// it (a number as Lua prints it, `-0` included; anything else hashes as
/// the empty string).
pub(super) unsafe extern "C-unwind" fn sha1hex(l: *mut lua_State) -> c_int {
    if ffi::lua_gettop(l) != 1 {
        push_error(l, b"wrong number of arguments", false);
        ffi::lua_error(l)
    }
    let mut len = 0;
    let p = ffi::lua_tolstring(l, 1, &mut len);
    let s: &[u8] = if p.is_null() {
        b""
    } else {
        std::slice::from_raw_parts(p as *const u8, len)
    };
    let hex = super::sha1_hex(s);
    push_bytes(l, &hex);
    1
}

/// What running the command came to; plain data, so nothing needs dropping
/// when Lua unwinds past us.
#[derive(Clone, Copy)]
enum Step {
    /// The reply is in the run's `buf`; `failed` when it is an error.
    Replied { failed: bool },
    /// The host refused the command; its message is in the run's `msg`.
    Refused,
    /// The host stopped the run; every later call fails the same way.
    Stopped,
    /// The call itself is wrong; not counted in the error stats.
    Bad(&'static str),
}

const NOT_IN_SCRIPT: &str = "redis.call/pcall can only be called inside a script invocation";

unsafe fn entry(l: *mut lua_State, raise: bool) -> c_int {
    let step = std::panic::catch_unwind(|| run_command(l))
        .unwrap_or(Step::Bad("internal error running the command"));
    let run = run_state();
    if super::ldb::logging() && !run.is_null() {
        // SAFETY: see `run_state`; only read, before any Lua call.
        log_outcome(step, &*run);
    }
    // The arguments were copied out; dropping them leaves room on Lua's
    // C stack (8000 slots) for the reply, even after `unpack` of thousands.
    ffi::lua_settop(l, 0);
    match step {
        Step::Replied { failed } => {
            // SAFETY: `run` is live for the whole run (see `run_state`);
            // the slice is a plain reference into its buffer.
            let buf: &[u8] = &(*run).buf;
            let mut pos = 0;
            if !push_value(l, buf, &mut pos, 0) {
                ffi::lua_settop(l, 0);
                push_error(l, b"malformed reply from a command", false);
                return finish(l, raise, true);
            }
            if failed {
                // The command's error was counted when it happened.
                ffi::lua_pushboolean(l, 1);
                ffi::lua_setfield(l, -2, COUNTED_C.as_ptr());
            }
            finish(l, raise, failed)
        }
        Step::Refused => {
            let msg: &[u8] = (*run).msg.as_bytes();
            push_error(l, msg, true);
            finish(l, raise, true)
        }
        Step::Stopped => {
            // The server checks `stopped` after the run: any error will do,
            // and a script's pcall rethrows it.
            let msg: &[u8] = (*run).stopped.as_deref().map(str::as_bytes).unwrap_or(b"");
            ffi::lua_createtable(l, 0, 1);
            push_bytes(l, msg);
            ffi::lua_setfield(l, -2, c"err".as_ptr());
            ffi::lua_error(l)
        }
        Step::Bad(msg) => {
            push_error(l, msg.as_bytes(), false);
            finish(l, raise, true)
        }
    }
}

/// Returns the value on top, or raises it when `raise` and it is an error.
unsafe fn finish(l: *mut lua_State, raise: bool, failed: bool) -> c_int {
    if raise && failed {
        ffi::lua_error(l)
    }
    1
}

/// Reads the arguments and runs the command through the host. Touches
/// the Lua stack only to read it, so no Lua error can happen here.
unsafe fn run_command(l: *mut lua_State) -> Step {
    let run = run_state();
    if run.is_null() {
        return Step::Bad(NOT_IN_SCRIPT);
    }
    // SAFETY: see `run_state`; no other reference to it is alive while a
    // Lua callback runs.
    let run: &mut RunState = &mut *run;
    if run.stopped.is_some() {
        return Step::Stopped;
    }
    let n = ffi::lua_gettop(l);
    if n == 0 {
        return Step::Bad("Please specify at least one argument for this redis lib call");
    }
    run.args.clear();
    run.ranges.clear();
    for i in 1..=n {
        let start = run.args.len();
        match ffi::lua_type(l, i) {
            ffi::LUA_TSTRING => {
                let mut len = 0;
                let p = ffi::lua_tolstring(l, i, &mut len);
                run.args
                    .extend_from_slice(std::slice::from_raw_parts(p as *const u8, len));
            }
            // Numbers as %.17g, as Redis converts them (not Lua's %.14g).
            ffi::LUA_TNUMBER => super::write_g17(ffi::lua_tonumber(l, i), &mut run.args),
            _ => return Step::Bad("Lua redis lib command arguments must be strings or integers"),
        }
        run.ranges.push(start..run.args.len());
    }
    run.buf.clear();
    if super::ldb::logging() {
        log_command(run);
    }
    // SAFETY: the host outlives the run; it does not reach the run state.
    let host = &mut *run.host;
    match host.call(&run.args, &run.ranges, run.resp3, &mut run.buf) {
        Ok(()) => Step::Replied {
            failed: run.buf.first() == Some(&b'-'),
        },
        // A stop requested by the host ends the script here.
        Err(_) if run.stopped.is_some() => Step::Stopped,
        Err(msg) => {
            run.msg = msg;
            Step::Refused
        }
    }
}

/// The debugger's `<redis>` entry: the command, its first ten arguments
/// (and how many more, counted as Redis counts them).
fn log_command(run: &RunState) {
    let mut e = b"<redis>".to_vec();
    for (j, r) in run.ranges.iter().enumerate() {
        if j == 10 {
            e.extend_from_slice(format!(" ... ({} more)", run.ranges.len() - j - 1).as_bytes());
            break;
        }
        e.push(b' ');
        e.extend_from_slice(&run.args[r.clone()]);
    }
    super::ldb::log(e);
}

/// The debugger's entries for a call's outcome: an error as `<error>`,
/// then a reply as `<reply>`.
fn log_outcome(step: Step, run: &RunState) {
    let error = |m: &[u8]| super::ldb::log([&b"<error> "[..], m].concat());
    match step {
        Step::Replied { failed } => {
            if failed {
                let end = memchr::memchr(b'\r', &run.buf).unwrap_or(run.buf.len());
                error(&run.buf[..end]);
            }
            let mut e = b"<reply> ".to_vec();
            super::ldb::reply_to_human(&mut e, &run.buf, 0);
            super::ldb::log_trimmed(e);
        }
        Step::Refused => error(run.msg.as_bytes()),
        Step::Bad(m) => error(m.as_bytes()),
        Step::Stopped => {}
    }
}

unsafe fn push_bytes(l: *mut lua_State, s: &[u8]) {
    ffi::lua_pushlstring(l, s.as_ptr() as *const _, s.len());
}

/// Pushes Redis's error table for `msg` ("-CODE text", or a bare text
/// meaning ERR): `{err = "CODE text"}`, marked when already counted.
unsafe fn push_error(l: *mut lua_State, msg: &[u8], counted: bool) {
    let (code, text): (&[u8], &[u8]) = match msg.strip_prefix(b"-") {
        Some(rest) => match rest.iter().position(|&c| c == b' ') {
            Some(i) => (&rest[..i], &rest[i + 1..]),
            None => (b"ERR", rest),
        },
        None => (b"ERR", msg),
    };
    let mut end = text.len();
    while end > 0 && matches!(text[end - 1], b'\r' | b'\n') {
        end -= 1;
    }
    ffi::lua_createtable(l, 0, 2);
    push_bytes(l, code);
    push_bytes(l, b" ");
    push_bytes(l, &text[..end]);
    ffi::lua_concat(l, 3);
    ffi::lua_setfield(l, -2, c"err".as_ptr());
    if counted {
        ffi::lua_pushboolean(l, 1);
        ffi::lua_setfield(l, -2, COUNTED_C.as_ptr());
    }
}

/// Pushes a one-field table `{name = <value on top>}` around the value
/// on top of the stack.
unsafe fn wrap(l: *mut lua_State, name: &CStr) {
    ffi::lua_createtable(l, 0, 1);
    ffi::lua_insert(l, -2);
    ffi::lua_setfield(l, -2, name.as_ptr());
}

fn line<'b>(b: &'b [u8], pos: &mut usize) -> Option<&'b [u8]> {
    let rest = b.get(*pos..)?;
    let n = memchr::memchr(b'\r', rest)?;
    *pos += n + 2;
    Some(&rest[..n])
}

fn int(b: &[u8], pos: &mut usize) -> Option<i64> {
    crate::resp::parse_i64(line(b, pos)?)
}

fn bytes<'b>(b: &'b [u8], pos: &mut usize, n: usize) -> Option<&'b [u8]> {
    let end = pos.checked_add(n)?;
    let s = b.get(*pos..end)?;
    *pos = end + 2;
    Some(s)
}

/// Pushes the RESP value at `pos` as the Lua value Redis gives scripts
/// (see Redis's "Conversion between Lua and Redis data types"). `false`
/// when the reply is malformed; the stack is then the caller's to reset.
unsafe fn push_value(l: *mut lua_State, b: &[u8], pos: &mut usize, depth: usize) -> bool {
    if depth > MAX_DEPTH || ffi::lua_checkstack(l, 4) == 0 {
        return false;
    }
    let Some(&tag) = b.get(*pos) else {
        return false;
    };
    *pos += 1;
    match tag {
        b':' => match int(b, pos) {
            Some(n) => ffi::lua_pushnumber(l, n as f64),
            None => return false,
        },
        b'$' => match int(b, pos) {
            Some(n) if n < 0 => ffi::lua_pushboolean(l, 0),
            Some(n) => match bytes(b, pos, n as usize) {
                Some(s) => push_bytes(l, s),
                None => return false,
            },
            None => return false,
        },
        b'+' | b'-' => {
            let Some(s) = line(b, pos) else {
                return false;
            };
            push_bytes(l, s);
            wrap(l, if tag == b'+' { c"ok" } else { c"err" });
        }
        b'*' => match int(b, pos) {
            Some(n) if n < 0 => ffi::lua_pushboolean(l, 0),
            Some(n) => {
                ffi::lua_createtable(l, n.min(1 << 20) as c_int, 0);
                for i in 1..=n {
                    if !push_value(l, b, pos, depth + 1) {
                        return false;
                    }
                    ffi::lua_rawseti(l, -2, i);
                }
            }
            None => return false,
        },
        b'%' | b'~' => {
            let Some(n) = int(b, pos) else {
                return false;
            };
            ffi::lua_createtable(l, 0, n.clamp(0, 1 << 20) as c_int);
            for _ in 0..n {
                if !push_value(l, b, pos, depth + 1) {
                    return false;
                }
                if tag == b'%' {
                    if !push_value(l, b, pos, depth + 1) {
                        return false;
                    }
                } else {
                    ffi::lua_pushboolean(l, 1);
                }
                // A nil key cannot be stored; no command replies with one.
                if ffi::lua_type(l, -2) == ffi::LUA_TNIL {
                    ffi::lua_pop(l, 2);
                } else {
                    ffi::lua_rawset(l, -3);
                }
            }
            wrap(l, if tag == b'%' { c"map" } else { c"set" });
        }
        b'|' => {
            // Attributes are read and dropped; the value follows.
            let Some(n) = int(b, pos) else {
                return false;
            };
            for _ in 0..n.saturating_mul(2) {
                if !push_value(l, b, pos, depth + 1) {
                    return false;
                }
                ffi::lua_pop(l, 1);
            }
            return push_value(l, b, pos, depth + 1);
        }
        b'_' => {
            if line(b, pos).is_none() {
                return false;
            }
            ffi::lua_pushnil(l);
        }
        b'#' => match line(b, pos) {
            Some(s) => ffi::lua_pushboolean(l, (s == b"t") as c_int),
            None => return false,
        },
        b',' => {
            let Some(s) = line(b, pos) else {
                return false;
            };
            let d = match s {
                b"inf" => f64::INFINITY,
                b"-inf" => f64::NEG_INFINITY,
                _ => match std::str::from_utf8(s).ok().and_then(|s| s.parse().ok()) {
                    Some(d) => d,
                    None => return false,
                },
            };
            ffi::lua_pushnumber(l, d);
            wrap(l, c"double");
        }
        b'(' => {
            let Some(s) = line(b, pos) else {
                return false;
            };
            push_bytes(l, s);
            wrap(l, c"big_number");
        }
        b'=' => {
            let Some(s) = int(b, pos).and_then(|n| bytes(b, pos, n.max(4) as usize)) else {
                return false;
            };
            ffi::lua_createtable(l, 0, 2);
            push_bytes(l, &s[..3]);
            ffi::lua_setfield(l, -2, c"format".as_ptr());
            push_bytes(l, &s[4..]);
            ffi::lua_setfield(l, -2, c"string".as_ptr());
            wrap(l, c"verbatim_string");
        }
        _ => return false,
    }
    true
}

/// Pushes a Lua array of the strings in `items` (KEYS or ARGV).
pub(super) unsafe fn push_strings(l: *mut lua_State, items: &[&[u8]]) {
    ffi::lua_checkstack(l, 2);
    ffi::lua_createtable(l, items.len().min(1 << 20) as c_int, 0);
    for (i, s) in items.iter().enumerate() {
        push_bytes(l, s);
        ffi::lua_rawseti(l, -2, i as ffi::lua_Integer + 1);
    }
}
