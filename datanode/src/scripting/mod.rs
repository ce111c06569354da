//! Lua scripting as Redis 7.0 embeds it: the script cache (`cache`), the
//! sandboxed Lua 5.1 interpreter scripts run in (`engine`), the
//! conversions between RESP replies and Lua values (`convert`), and the
//! debugger (`ldb`).
//!
//! Nothing here knows about connections or commands: a running script
//! reaches the server only through the [`engine::Host`] trait, and the
//! debugger its client only through [`ldb::Console`].

pub mod bitlib;
pub mod cache;
mod call;
pub mod cjson;
pub mod convert;
pub mod engine;
pub mod functions;
pub mod ldb;
pub mod msgpack;
pub mod rand48;
mod readonly;
pub mod structlib;

pub use cache::{Script, ScriptCache};
pub use engine::{Host, Outcome, Vm};

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

/// Scripting's share of the server's state.
#[derive(Default)]
pub struct Scripts {
    pub cache: ScriptCache,
    pub functions: functions::Functions,
    /// Idle interpreters. Scripts on different slots run in parallel, each
    /// in its own interpreter; one is made when none is idle.
    /// Boxed: checking one out moves a pointer, not the interpreter.
    #[allow(clippy::vec_box)]
    pool: Mutex<Vec<Box<Vm>>>,
    /// Scripts running past `busy-reply-threshold`: while any is, other
    /// clients get -BUSY.
    timed_out: Mutex<Vec<Arc<TimedOut>>>,
    busy: AtomicUsize,
    /// Set at shutdown: every running script stops at its next check.
    stop_all: AtomicBool,
    /// DEBUG set-disable-deny-scripts: scripts may run any command.
    deny_disabled: AtomicBool,
    /// Slots held by scripts running off the command thread.
    pub held: HeldSlots,
}

/// The slots scripts running off the command thread hold: a command
/// thread that needs one waits for it asynchronously (see
/// `command::scripting::waits_for_script`) rather than on the lock, which
/// would stop every other client of that thread for as long as the script
/// runs, SCRIPT KILL included.
#[derive(Default)]
pub struct HeldSlots {
    /// Registrations alive: the fast path is one load of this.
    count: AtomicUsize,
    slots: Mutex<std::collections::HashMap<(usize, u16), u32>>,
    whole: Mutex<std::collections::HashMap<usize, u32>>,
    released: tokio::sync::Notify,
}

impl HeldSlots {
    pub fn any(&self) -> bool {
        self.count.load(Ordering::Acquire) != 0
    }

    /// Registers `slots` and whole databases `dbs` until the token drops.
    pub fn register(&self, slots: &[(usize, u16)], dbs: &[usize]) -> HeldToken<'_> {
        if !slots.is_empty() {
            let mut m = self.slots.lock();
            for s in slots {
                *m.entry(*s).or_default() += 1;
            }
        }
        if !dbs.is_empty() {
            let mut m = self.whole.lock();
            for d in dbs {
                *m.entry(*d).or_default() += 1;
            }
        }
        self.count.fetch_add(1, Ordering::AcqRel);
        HeldToken {
            held: self,
            slots: slots.to_vec(),
            dbs: dbs.to_vec(),
        }
    }

    /// Whether a script holds any of `slots`, or anything in `dbs`.
    pub fn blocks(&self, slots: &[(usize, u16)], dbs: &[usize]) -> bool {
        if !self.any() {
            return false;
        }
        let whole = self.whole.lock();
        let m = self.slots.lock();
        slots
            .iter()
            .any(|s| m.contains_key(s) || whole.contains_key(&s.0))
            || dbs
                .iter()
                .any(|d| whole.contains_key(d) || m.keys().any(|(db, _)| db == d))
    }

    /// Resolves when a registration ends (or soon after, to re-check).
    pub async fn changed(&self) {
        let _ = tokio::time::timeout(
            std::time::Duration::from_millis(100),
            self.released.notified(),
        )
        .await;
    }

    /// Wakes waiters (a registration ended, or a script timed out and
    /// -BUSY now answers them).
    pub fn wake(&self) {
        self.released.notify_waiters();
    }
}

/// A registration in [`HeldSlots`], ended on drop.
pub struct HeldToken<'a> {
    held: &'a HeldSlots,
    slots: Vec<(usize, u16)>,
    dbs: Vec<usize>,
}

impl Drop for HeldToken<'_> {
    fn drop(&mut self) {
        if !self.slots.is_empty() {
            let mut m = self.held.slots.lock();
            for s in &self.slots {
                if let Some(n) = m.get_mut(s) {
                    *n -= 1;
                    if *n == 0 {
                        m.remove(s);
                    }
                }
            }
        }
        if !self.dbs.is_empty() {
            let mut m = self.held.whole.lock();
            for d in &self.dbs {
                if let Some(n) = m.get_mut(d) {
                    *n -= 1;
                    if *n == 0 {
                        m.remove(d);
                    }
                }
            }
        }
        self.held.count.fetch_sub(1, Ordering::AcqRel);
        self.held.wake();
    }
}

/// A script running past the threshold, as SCRIPT KILL sees it.
#[derive(Default)]
pub struct TimedOut {
    pub kill: AtomicBool,
    pub wrote: AtomicBool,
    /// EVAL rather than FCALL (each KILL stops only its own kind).
    pub eval: bool,
    /// Sent by our master: never killable.
    pub from_master: bool,
    /// The function's name (FUNCTION STATS).
    pub name: String,
    /// The command that started it (FUNCTION STATS).
    pub command: Vec<Vec<u8>>,
    pub started: Option<quanta::Instant>,
}

/// What SCRIPT KILL or FUNCTION KILL found.
pub enum KillResult {
    Killed,
    NotBusy,
    Unkillable,
    FromMaster,
    OtherKind,
}

impl Scripts {
    /// An idle interpreter, or a new one; its compiled scripts are dropped
    /// if the cache was flushed since.
    pub fn checkout(&self) -> Result<Box<Vm>, String> {
        let epoch = self.cache.epoch();
        let fn_gen = self.functions.generation();
        let popped = self.pool.lock().pop();
        let mut vm = match popped {
            Some(vm) if vm.epoch == epoch => vm,
            _ => Box::new(Vm::new(epoch).map_err(|e| format!("ERR could not start Lua: {e}"))?),
        };
        if vm.fn_gen != fn_gen {
            vm.retain_libraries(&self.functions.library_ids());
            vm.fn_gen = fn_gen;
        }
        Ok(vm)
    }

    pub fn checkin(&self, vm: Box<Vm>) {
        if vm.epoch == self.cache.epoch() {
            self.pool.lock().push(vm);
        }
    }

    /// A library set built from library codes (a snapshot or a DUMP
    /// payload); no library name may repeat.
    pub fn build_functions(&self, codes: &[Vec<u8>]) -> Result<functions::Set, String> {
        let mut vm = self.checkout()?;
        let mut set = functions::Set::default();
        let mut r = Ok(());
        for code in codes {
            if let Err(e) = set.create(code, false, &mut |id, body| vm.load_library(id, body, None))
            {
                r = Err(String::from_utf8_lossy(&e).into_owned());
                break;
            }
        }
        self.checkin(vm);
        r.map(|()| set)
    }

    /// Replaces every library with those of a loaded snapshot.
    pub fn install_functions(&self, codes: &[Vec<u8>]) -> Result<(), String> {
        let set = self.build_functions(codes)?;
        self.functions.replace_all(set);
        Ok(())
    }

    /// SCRIPT FLUSH: the cache and every idle interpreter.
    pub fn flush(&self) {
        self.cache.flush();
        self.pool.lock().clear();
    }

    /// Bytes held by the idle interpreters (INFO's `used_memory_lua`).
    pub fn lua_memory(&self) -> usize {
        let p = self.pool.lock();
        if p.is_empty() {
            // An interpreter with nothing loaded, as Redis always has one.
            return 31 * 1024;
        }
        p.iter().map(|v| v.used_memory()).sum()
    }

    /// Bytes the function libraries keep in the idle interpreters that
    /// loaded them (INFO's `used_memory_vm_functions`: redis-server keeps
    /// them in one interpreter of their own, datanode in each interpreter
    /// of the pool that ran one of their functions).
    pub fn functions_vm_memory(&self) -> usize {
        let live = self.functions.library_ids();
        self.pool
            .lock()
            .iter()
            .map(|v| v.functions_memory(&live))
            .sum()
    }

    /// Shutdown: running scripts stop, killable or not.
    pub fn stop_all(&self) {
        self.stop_all.store(true, Ordering::SeqCst);
    }

    pub fn set_deny_disabled(&self, on: bool) {
        self.deny_disabled.store(on, Ordering::Relaxed);
    }

    pub fn deny_disabled(&self) -> bool {
        self.deny_disabled.load(Ordering::Relaxed)
    }

    pub fn stopping(&self) -> bool {
        self.stop_all.load(Ordering::Relaxed)
    }

    /// True while a script runs past the threshold.
    pub fn busy(&self) -> bool {
        self.busy.load(Ordering::Relaxed) != 0
    }

    pub fn enter_timed_out(&self, t: Arc<TimedOut>) {
        self.timed_out.lock().push(t);
        self.busy.fetch_add(1, Ordering::SeqCst);
        // Clients waiting for its slots now get -BUSY.
        self.held.wake();
    }

    pub fn leave_timed_out(&self, t: &Arc<TimedOut>) {
        let mut v = self.timed_out.lock();
        if let Some(i) = v.iter().position(|x| Arc::ptr_eq(x, t)) {
            v.swap_remove(i);
            self.busy.fetch_sub(1, Ordering::SeqCst);
        }
    }

    /// The kind of the running script(s): Some(true) for EVAL.
    pub fn busy_kind(&self) -> Option<bool> {
        self.timed_out.lock().first().map(|t| t.eval)
    }

    /// The script running past the threshold, if any.
    pub fn running(&self) -> Option<Arc<TimedOut>> {
        self.timed_out.lock().first().cloned()
    }

    /// SCRIPT KILL (`eval`) or FUNCTION KILL.
    pub fn kill(&self, eval: bool) -> KillResult {
        let v = self.timed_out.lock();
        let Some(t) = v.first() else {
            return KillResult::NotBusy;
        };
        if t.from_master {
            return KillResult::FromMaster;
        }
        if t.wrote.load(Ordering::SeqCst) {
            return KillResult::Unkillable;
        }
        if t.eval != eval {
            return KillResult::OtherKind;
        }
        t.kill.store(true, Ordering::SeqCst);
        KillResult::Killed
    }
}

/// Script flags from a `#!lua flags=…` shebang (Redis's names).
pub mod flag {
    /// No shebang: EVAL's compatibility mode, where the flags of the
    /// commands decide.
    pub const EVAL_COMPAT: u32 = 1;
    pub const NO_WRITES: u32 = 1 << 1;
    pub const ALLOW_OOM: u32 = 1 << 2;
    pub const ALLOW_STALE: u32 = 1 << 3;
    pub const NO_CLUSTER: u32 = 1 << 4;
    pub const ALLOW_CROSS_SLOT: u32 = 1 << 5;

    pub const NAMES: [(&str, u32); 5] = [
        ("no-writes", NO_WRITES),
        ("allow-oom", ALLOW_OOM),
        ("allow-stale", ALLOW_STALE),
        ("no-cluster", NO_CLUSTER),
        ("allow-cross-slot-keys", ALLOW_CROSS_SLOT),
    ];
}

/// The lowercase hex SHA-1 of `body`, as Redis names scripts.
pub fn sha1_hex(body: &[u8]) -> [u8; 40] {
    let digest = sha1_smol::Sha1::from(body).digest().bytes();
    let hex = b"0123456789abcdef";
    let mut out = [0u8; 40];
    for (i, b) in digest.iter().enumerate() {
        out[i * 2] = hex[(b >> 4) as usize];
        out[i * 2 + 1] = hex[(b & 15) as usize];
    }
    out
}

/// Splits a `#!lua …` first line into its flags; `Ok((EVAL_COMPAT, 0))`
/// when the body has no shebang. The second value is the shebang's length
/// (its newline stays, so line numbers hold). Errors are Redis's texts;
/// they quote the script's bytes, so they are bytes too.
///
/// The line is split as redis.conf lines are (quotes and escapes), and
/// names compare as C strings, up to a NUL, as Redis compares them.
pub fn shebang_flags(body: &[u8]) -> Result<(u32, usize), Vec<u8>> {
    if !body.starts_with(b"#!") {
        return Ok((flag::EVAL_COMPAT, 0));
    }
    let Some(end) = first_line_end(body) else {
        return Err(b"Invalid script shebang".to_vec());
    };
    let (mut buf, mut ranges) = (Vec::new(), Vec::new());
    if !crate::resp::parse::split_args(&body[..end], &mut buf, &mut ranges) || ranges.is_empty() {
        return Err(b"Invalid engine in script shebang".to_vec());
    }
    let fail = |what: &[u8], quoted: &[u8]| Err([what, c_str(quoted)].concat());
    let engine = &buf[ranges[0].clone()];
    if c_str(engine) != b"#!lua" {
        return fail(b"Unexpected engine in script shebang: ", engine);
    }
    let mut flags = 0;
    for r in &ranges[1..] {
        let p = &buf[r.clone()];
        let Some(list) = p.strip_prefix(b"flags=") else {
            return fail(b"Unknown lua shebang option: ", p);
        };
        // `flags=` alone declares none; an empty name between commas is
        // an unknown flag.
        if list.is_empty() {
            continue;
        }
        for f in list.split(|&c| c == b',') {
            match flag::NAMES.iter().find(|(n, _)| n.as_bytes() == c_str(f)) {
                Some((_, v)) => flags |= v,
                None => return fail(b"Unexpected flag in script shebang: ", f),
            }
        }
    }
    Ok((flags, end))
}

/// Where the first line ends, as C's `strchr(code, '\n')` finds it: a
/// NUL before the newline ends the string, and there is none.
pub fn first_line_end(code: &[u8]) -> Option<usize> {
    code.iter()
        .position(|&c| c == b'\n' || c == 0)
        .filter(|&i| code[i] == b'\n')
}

/// `s` up to its first NUL: what C's string functions see of it.
pub fn c_str(s: &[u8]) -> &[u8] {
    match memchr::memchr(0, s) {
        Some(z) => &s[..z],
        None => s,
    }
}

/// [`fmt_g17`] appended to `out`; integers (the usual case: counts,
/// TTLs) skip the general float formatting.
pub fn write_g17(n: f64, out: &mut Vec<u8>) {
    // Below 1e17 an integral double prints all its digits with %.17g
    // (-0 prints its sign).
    if n.fract() == 0.0 && n.abs() < 1e17 && (n != 0.0 || n.is_sign_positive()) {
        out.extend_from_slice(itoa::Buffer::new().format(n as i64).as_bytes());
        return;
    }
    out.extend_from_slice(fmt_g17(n).as_bytes());
}

/// `%.17g`, how Redis turns a Lua number argument into a command argument
/// (Lua's own conversion would lose precision).
pub fn fmt_g17(n: f64) -> String {
    if n.is_nan() {
        return if n.is_sign_negative() { "-nan" } else { "nan" }.into();
    }
    if n.is_infinite() {
        return if n < 0.0 { "-inf" } else { "inf" }.into();
    }
    crate::util::format_g(n, 17)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_integer_shortcut_agrees_with_the_general_format() {
        for n in [
            0.0,
            -0.0,
            1.0,
            -5.0,
            100.0,
            9007199254740993.0,
            99999999999999984.0,
            -1e16,
        ] {
            let mut out = Vec::new();
            write_g17(n, &mut out);
            assert_eq!(String::from_utf8(out).unwrap(), fmt_g17(n), "{n}");
        }
    }

    #[test]
    fn numbers_format_as_c_does_with_17_digits() {
        assert_eq!(fmt_g17(1.0), "1");
        assert_eq!(fmt_g17(-5.0), "-5");
        assert_eq!(fmt_g17(0.1), "0.10000000000000001");
        assert_eq!(fmt_g17(3.5), "3.5");
        assert_eq!(fmt_g17(1e17), "1e+17");
        assert_eq!(fmt_g17(123456789012345680.0), "1.2345678901234568e+17");
        assert_eq!(fmt_g17(0.0001), "0.0001");
        assert_eq!(fmt_g17(0.00001), "1.0000000000000001e-05");
        assert_eq!(fmt_g17(9007199254740993.0), "9007199254740992");
        let g17 = |n: f64| {
            let mut out = Vec::new();
            write_g17(n, &mut out);
            String::from_utf8(out).unwrap_or_default()
        };
        assert_eq!(g17(-0.0), "-0");
        assert_eq!(g17(0.0), "0");
        assert_eq!(g17(-12.0), "-12");
        assert_eq!(g17(1e-17), "1.0000000000000001e-17");
    }

    #[test]
    fn shebangs_parse_as_redis_does() {
        let err = |s: &str| Err(s.as_bytes().to_vec());
        assert_eq!(shebang_flags(b"return 1"), Ok((flag::EVAL_COMPAT, 0)));
        assert_eq!(
            shebang_flags(b"#!lua flags=no-writes,allow-oom\nreturn 1"),
            Ok((flag::NO_WRITES | flag::ALLOW_OOM, 31))
        );
        assert_eq!(shebang_flags(b"#!lua\nreturn 1"), Ok((0, 5)));
        assert_eq!(shebang_flags(b"#!lua"), err("Invalid script shebang"));
        assert_eq!(
            shebang_flags(b"#!py\n"),
            err("Unexpected engine in script shebang: #!py")
        );
        assert_eq!(
            shebang_flags(b"#!lua flags=bad\n"),
            err("Unexpected flag in script shebang: bad")
        );
        assert_eq!(
            shebang_flags(b"#!lua name=x\n"),
            err("Unknown lua shebang option: name=x")
        );
        // Expected values below come from redis-server 7.0.15.
        assert_eq!(
            shebang_flags(b"#!lua flags=no-writes,,allow-oom\n"),
            err("Unexpected flag in script shebang: ")
        );
        assert_eq!(
            shebang_flags(b"#!lua flags=,\n"),
            err("Unexpected flag in script shebang: ")
        );
        assert_eq!(shebang_flags(b"#!lua flags=\n"), Ok((0, 12)));
        assert_eq!(
            shebang_flags(b"#!\"lua\" 'flags=no-writes'\n"),
            Ok((flag::NO_WRITES, 25))
        );
        assert_eq!(
            shebang_flags(b"#!lua flags=\"\\x6eo-writes\"\n").map(|f| f.0),
            Ok(flag::NO_WRITES)
        );
        assert_eq!(
            shebang_flags(b"#!lua flags=\"no-writes\"x\n"),
            err("Invalid engine in script shebang")
        );
        assert_eq!(
            shebang_flags(b"#!lua flags=x\0 y\n"),
            err("Invalid script shebang")
        );
        assert_eq!(
            shebang_flags(b"#!lua flags=\x80\n"),
            Err(b"Unexpected flag in script shebang: \x80".to_vec())
        );
        // C strings: a NUL (written as an escape) ends a name.
        assert_eq!(
            shebang_flags(b"#!lua flags=\"no-writes\\x00junk\"\n").map(|f| f.0),
            Ok(flag::NO_WRITES)
        );
    }

    #[test]
    fn sha1_is_lowercase_hex() {
        assert_eq!(
            &sha1_hex(b"return 1"),
            b"e0e1f9fabfc9d4800c877a703b823ac0578ff8db"
        );
    }
}
