//! The Lua debugger (`SCRIPT DEBUG YES|SYNC`, Redis's LDB): the session's
//! state — the script's lines, breakpoints, the stepping flags and the
//! log waiting to go to the client — and its command loop; and, for a
//! forked session, the child's socket and its watcher.
//!
//! The session touches neither Lua nor the connection: what needs the
//! paused interpreter (printing variables, evaluating code, a backtrace)
//! is behind [`Frame`], the client behind [`Console`]. It lives in a
//! thread-local for the length of one debugged run, because the line hook,
//! `redis.call` and `redis.debug` all reach it from inside Lua.

use std::cell::RefCell;
use std::time::{Duration, Instant};

/// At most this many breakpoints.
const MAX_BREAKPOINTS: usize = 64;
/// Replies and values longer than this are cut in the log, until `maxlen`.
const DEFAULT_MAXLEN: usize = 256;
/// A client that sends this much without completing a command fails the
/// script.
const MAX_INPUT: usize = 1 << 20;

/// The debugging client, as the session sees it.
pub trait Console: Send {
    /// The next bytes the client sent; `None` once it is gone.
    fn read(&mut self) -> Option<Vec<u8>>;
    fn write(&mut self, bytes: Vec<u8>);
}

/// The paused interpreter: each call logs its result through [`log`].
pub trait Frame {
    /// `print <name>`: the innermost local of that name, or KEYS/ARGV.
    fn print(&mut self, name: &[u8]);
    /// `print`: the current function's locals.
    fn print_all(&mut self);
    /// `eval <code>`.
    fn eval(&mut self, code: &[u8]);
    /// `redis <args>`: runs the command through `redis.call`, logged.
    fn redis(&mut self, args: &[Vec<u8>]);
    /// `trace`.
    fn trace(&mut self);
}

/// How the command loop ended.
pub enum Resume {
    /// Go on running the script (`step` or `continue`).
    Run,
    /// The client left: the script runs to its end unwatched.
    Gone,
    /// Fail the script with this error (`abort`, a protocol error).
    Fail(&'static str),
}

pub struct Ldb {
    lines: Vec<Vec<u8>>,
    /// Breakpoint lines. Kept as Redis keeps them, in a fixed array whose
    /// removal shifts bytes rather than entries (see `remove_breakpoint`).
    bp: [i32; MAX_BREAKPOINTS],
    bp_count: usize,
    /// Stop at the next line.
    pub step: bool,
    /// `redis.breakpoint()` was called: stop at the next line.
    pub lua_bp: bool,
    pub current: i32,
    /// 0: unlimited.
    maxlen: usize,
    maxlen_hint_sent: bool,
    logs: Vec<Vec<u8>>,
    input: Vec<u8>,
    console: Box<dyn Console>,
    /// Since the last stop: a run this long without one stops anyway.
    pub started: Instant,
    limit: Duration,
    /// The debugger ended the run: the error and the line it stopped at.
    pub failure: Option<(String, i32)>,
    /// In a forked child, which no SCRIPT KILL or shutdown can reach: the
    /// host is not asked whether to stop (that takes the parent's locks).
    pub forked: bool,
}

thread_local! {
    static SESSION: RefCell<Option<Ldb>> = const { RefCell::new(None) };
}

/// Starts the session for `body` on this thread. A run that goes `limit`
/// without stopping stops (Redis uses `busy-reply-threshold`, or 5 s).
pub fn begin(body: &[u8], console: Box<dyn Console>, limit: Duration) {
    let mut src = body;
    while let Some(rest) = src.strip_suffix(b"\n").or_else(|| src.strip_suffix(b"\r")) {
        src = rest;
    }
    let lines = src.split(|&c| c == b'\n').map(<[u8]>::to_vec).collect();
    let ldb = Ldb {
        lines,
        bp: [0; MAX_BREAKPOINTS],
        bp_count: 0,
        step: true,
        lua_bp: false,
        current: 0,
        maxlen: DEFAULT_MAXLEN,
        maxlen_hint_sent: false,
        logs: Vec::new(),
        input: Vec::new(),
        console,
        started: Instant::now(),
        limit,
        failure: None,
        forked: false,
    };
    SESSION.with(|s| *s.borrow_mut() = Some(ldb));
}

/// Ends the session: the remaining log and the end mark go out.
pub fn end() {
    if let Some(mut l) = SESSION.with(|s| s.borrow_mut().take()) {
        l.log(b"<endsession>".to_vec());
        l.send();
    }
}

/// Runs `f` on the session, if one is running on this thread.
pub fn with<R>(f: impl FnOnce(&mut Ldb) -> R) -> Option<R> {
    SESSION.with(|s| s.borrow_mut().as_mut().map(f))
}

/// Whether commands, replies and errors are logged now: while stepping.
pub fn logging() -> bool {
    with(|l| l.step).unwrap_or(false)
}

/// Appends an entry to the session's log.
pub fn log(entry: Vec<u8>) {
    with(|l| l.log(entry));
}

/// [`log`], cut at `maxlen`.
pub fn log_trimmed(entry: Vec<u8>) {
    with(|l| l.log_trimmed(entry));
}

impl Ldb {
    pub fn log(&mut self, entry: Vec<u8>) {
        self.logs.push(entry);
    }

    fn log_str(&mut self, entry: &str) {
        self.logs.push(entry.as_bytes().to_vec());
    }

    pub fn log_trimmed(&mut self, mut entry: Vec<u8>) {
        let cut = self.maxlen != 0 && entry.len() > self.maxlen;
        if cut {
            entry.truncate(self.maxlen);
            entry.extend_from_slice(b" ...");
        }
        self.log(entry);
        if cut && !self.maxlen_hint_sent {
            self.maxlen_hint_sent = true;
            self.log_str("<hint> The above reply was trimmed. Use 'maxlen 0' to disable trimming.");
        }
    }

    /// Sends the log as an array of simple strings (CR and LF become
    /// spaces) and empties it.
    pub fn send(&mut self) {
        let mut out = format!("*{}\r\n", self.logs.len()).into_bytes();
        for e in self.logs.drain(..) {
            out.push(b'+');
            out.extend(
                e.iter()
                    .map(|&c| if c == b'\r' || c == b'\n' { b' ' } else { c }),
            );
            out.extend_from_slice(b"\r\n");
        }
        self.console.write(out);
    }

    fn source_line(&self, line: i32) -> &[u8] {
        match usize::try_from(line - 1)
            .ok()
            .and_then(|i| self.lines.get(i))
        {
            Some(l) => l,
            None => b"<out of range source code line>",
        }
    }

    pub fn is_breakpoint(&self, line: i32) -> bool {
        self.bp[..self.bp_count].contains(&line)
    }

    /// Logs one source line with its markers: `->` the current line, `#`
    /// a breakpoint.
    pub fn log_source_line(&mut self, line: i32) {
        let prefix = match (line == self.current, self.is_breakpoint(line)) {
            (true, true) => "->#",
            (true, false) => "-> ",
            (false, true) => "  #",
            (false, false) => "   ",
        };
        let mut e = format!("{prefix}{line:<3} ").into_bytes();
        e.extend_from_slice(self.source_line(line));
        self.log(e);
    }

    /// Lines within `context` of `around` (all of them when it is 0).
    fn list(&mut self, around: i32, context: i32) {
        for j in 1..=self.lines.len() as i32 {
            if around != 0 && (around - j).abs() > context {
                continue;
            }
            self.log_source_line(j);
        }
    }

    /// Adds a breakpoint; false for a line outside the script, one already
    /// set, or no room left.
    fn add_breakpoint(&mut self, line: i32) -> bool {
        if line <= 0 || line as usize > self.lines.len() {
            return false;
        }
        if !self.is_breakpoint(line) && self.bp_count != MAX_BREAKPOINTS {
            self.bp[self.bp_count] = line;
            self.bp_count += 1;
            return true;
        }
        false
    }

    /// Removes a breakpoint. Redis shifts the entries after it by as many
    /// *bytes* as there are entries left, so what follows the removed one
    /// is partly overwritten rather than moved (`b 3 9 2` then `b -3`
    /// leaves 9 and 9). Done the same way, so the list reads the same.
    fn remove_breakpoint(&mut self, line: i32) -> bool {
        let Some(j) = self.bp[..self.bp_count].iter().position(|&b| b == line) else {
            return false;
        };
        self.bp_count -= 1;
        let mut bytes = [0u8; MAX_BREAKPOINTS * 4];
        for (i, b) in self.bp.iter().enumerate() {
            bytes[i * 4..i * 4 + 4].copy_from_slice(&b.to_ne_bytes());
        }
        let n = self.bp_count - j;
        bytes.copy_within((j + 1) * 4..(j + 1) * 4 + n, j * 4);
        for (i, b) in self.bp.iter_mut().enumerate() {
            *b = i32::from_ne_bytes([
                bytes[i * 4],
                bytes[i * 4 + 1],
                bytes[i * 4 + 2],
                bytes[i * 4 + 3],
            ]);
        }
        true
    }

    fn break_command(&mut self, argv: &[Vec<u8>]) {
        if argv.len() == 1 {
            if self.bp_count == 0 {
                self.log_str("No breakpoints set. Use 'b <line>' to add one.");
            } else {
                self.log(format!("{} breakpoints set:", self.bp_count).into_bytes());
                for j in 0..self.bp_count {
                    self.log_source_line(self.bp[j]);
                }
            }
            return;
        }
        for arg in &argv[1..] {
            let Some(line) = crate::resp::parse_i64(arg) else {
                let mut e = b"Invalid argument:'".to_vec();
                e.extend_from_slice(arg);
                e.push(b'\'');
                self.log(e);
                continue;
            };
            let line = line as i32;
            if line == 0 {
                self.bp_count = 0;
                self.log_str("All breakpoints removed.");
            } else if line > 0 {
                if self.bp_count == MAX_BREAKPOINTS {
                    self.log_str("Too many breakpoints set.");
                } else if self.add_breakpoint(line) {
                    self.list(line, 1);
                } else {
                    self.log_str("Wrong line number.");
                }
            } else if self.remove_breakpoint(-line) {
                self.log_str("Breakpoint removed.");
            } else {
                self.log_str("No breakpoint in the specified line.");
            }
        }
    }

    fn maxlen_command(&mut self, argv: &[Vec<u8>]) {
        if argv.len() == 2 {
            let mut n = atoi(&argv[1]);
            self.maxlen_hint_sent = true;
            if n != 0 && n <= 60 {
                n = 60;
            }
            self.maxlen = n as usize;
        }
        if self.maxlen != 0 {
            self.log(
                format!("<value> replies are truncated at {} bytes.", self.maxlen).into_bytes(),
            );
        } else {
            self.log_str("<value> replies are unlimited.");
        }
    }

    fn help(&mut self) {
        for l in HELP {
            self.log_str(l);
        }
    }

    /// The next complete command in the input, `Ok(None)` when more bytes
    /// are needed. Parses as forgivingly as Redis's debugger does: up to a
    /// `*`, then bulk strings of 1 to 1024 bytes, at most 1024 of them.
    fn parse_command(&self) -> Result<Option<Vec<Vec<u8>>>, &'static str> {
        const PROTO: &str = "protocol error";
        let b = &self.input;
        if b.is_empty() {
            return Ok(None);
        }
        // Redis searches with C string functions: a NUL ends the search.
        let text_end = |from: usize| {
            b[from..]
                .iter()
                .position(|&c| c == 0)
                .map_or(b.len(), |i| from + i)
        };
        let find_crlf = |from: usize| {
            let end = text_end(from);
            b[from..end]
                .windows(2)
                .position(|w| w == b"\r\n")
                .map(|i| from + i)
        };
        let end = text_end(0);
        let Some(star) = b[..end].iter().position(|&c| c == b'*') else {
            return Err(PROTO);
        };
        let Some(eol) = find_crlf(star) else {
            return Ok(None);
        };
        let argc = atoi(&b[star + 1..eol]);
        if argc <= 0 || argc > 1024 {
            return Err(PROTO);
        }
        let mut p = eol + 2;
        let mut argv = Vec::with_capacity(argc as usize);
        while argv.len() < argc as usize {
            match b.get(p) {
                None | Some(0) => return Ok(None),
                Some(b'$') => {}
                Some(_) => return Err(PROTO),
            }
            let Some(eol) = find_crlf(p) else {
                return Ok(None);
            };
            let len = atoi(&b[p + 1..eol]);
            if len <= 0 || len > 1024 {
                return Err(PROTO);
            }
            p = eol + 2;
            let len = len as usize;
            if p + len + 2 > b.len() {
                return Ok(None);
            }
            argv.push(b[p..p + len].to_vec());
            p += len;
            if &b[p..p + 2] != b"\r\n" {
                return Err(PROTO);
            }
            p += 2;
        }
        Ok(Some(argv))
    }

    /// The hook reached `line` (on a line event, or `count_event`):
    /// `Some(timed_out)` when the script stops there, announced.
    pub fn reach(&mut self, line: i32, count_event: bool) -> Option<bool> {
        self.current = line;
        let bp = self.is_breakpoint(line) || self.lua_bp;
        let mut timeout = false;
        if count_event && !self.step && !bp {
            if self.started.elapsed() < self.limit {
                return None;
            }
            timeout = true;
            self.step = true;
        }
        if !self.step && !bp {
            return None;
        }
        let reason = if bp && self.lua_bp {
            "redis.breakpoint() called"
        } else if bp {
            "break point"
        } else if timeout {
            "timeout reached, infinite loop?"
        } else {
            "step over"
        };
        self.announce_stop(reason);
        Some(timeout)
    }

    /// Stops at the current line: says why and where.
    fn announce_stop(&mut self, reason: &str) {
        self.step = false;
        self.lua_bp = false;
        self.log(format!("* Stopped at {}, stop reason = {reason}", self.current).into_bytes());
        self.log_source_line(self.current);
        self.send();
    }
}

/// C's `atoi`: leading blanks, a sign, then digits as far as they go.
fn atoi(b: &[u8]) -> i64 {
    let (mut i, neg) = crate::strtod::blanks_and_sign(b);
    let mut n: i64 = 0;
    while let Some(d) = b.get(i).filter(|c| c.is_ascii_digit()) {
        n = n.saturating_mul(10).saturating_add(i64::from(d - b'0'));
        i += 1;
    }
    if neg {
        -n
    } else {
        n
    }
}

/// Reads and runs debugger commands until one resumes the script.
pub fn repl(frame: &mut dyn Frame) -> Resume {
    loop {
        let argv = loop {
            match with(|l| l.parse_command()) {
                None => return Resume::Gone,
                Some(Err(e)) => return Resume::Fail(e),
                Some(Ok(Some(argv))) => break argv,
                Some(Ok(None)) => {}
            }
            match with(|l| l.console.read()).flatten() {
                None => {
                    with(|l| {
                        l.step = false;
                        l.bp_count = 0;
                    });
                    return Resume::Gone;
                }
                Some(bytes) => {
                    let over = with(|l| {
                        l.input.extend_from_slice(&bytes);
                        if l.input.len() > MAX_INPUT {
                            l.input.clear();
                            return true;
                        }
                        false
                    });
                    if over == Some(true) {
                        return Resume::Fail("max client buffer reached");
                    }
                }
            }
        };
        // What followed the command in the same read is dropped, as Redis does.
        with(|l| l.input.clear());
        let name = argv[0].to_ascii_lowercase();
        let is = |short: &str, long: &str| name == short.as_bytes() || name == long.as_bytes();
        if is("h", "help") {
            with(Ldb::help);
        } else if is("s", "step") || is("n", "next") {
            with(|l| l.step = true);
            return Resume::Run;
        } else if is("c", "continue") {
            return Resume::Run;
        } else if is("t", "trace") {
            frame.trace();
        } else if is("m", "maxlen") {
            with(|l| l.maxlen_command(&argv));
        } else if is("b", "break") {
            with(|l| l.break_command(&argv));
        } else if is("e", "eval") {
            frame.eval(&argv[1..].join(&b' '));
        } else if is("a", "abort") {
            return Resume::Fail("script aborted for user request");
        } else if argv.len() > 1 && is("r", "redis") {
            frame.redis(&argv[1..]);
        } else if is("p", "print") {
            if argv.len() == 2 {
                frame.print(&argv[1]);
            } else {
                frame.print_all();
            }
        } else if is("l", "list") {
            with(|l| {
                let mut around = l.current;
                if argv.len() > 1 {
                    let n = atoi(&argv[1]);
                    if n > 0 {
                        around = n as i32;
                    }
                }
                let context = if argv.len() > 2 {
                    atoi(&argv[2]) as i32
                } else {
                    5
                };
                l.list(around, context);
            });
        } else if is("w", "whole") {
            with(|l| l.list(1, 1_000_000));
        } else {
            log(
                b"<error> Unknown Redis Lua debugger command or wrong number of arguments."
                    .to_vec(),
            );
        }
        with(Ldb::send);
    }
}

/// A forked session's client: the connection's socket itself, blocking.
pub struct SocketConsole(i32);

impl SocketConsole {
    pub fn new(fd: i32) -> Self {
        // SAFETY: plain fcntl calls on a descriptor this process owns.
        unsafe {
            let flags = libc::fcntl(fd, libc::F_GETFL);
            if flags >= 0 {
                libc::fcntl(fd, libc::F_SETFL, flags & !libc::O_NONBLOCK);
            }
        }
        SocketConsole(fd)
    }

    pub fn write_all(&mut self, mut b: &[u8]) {
        while !b.is_empty() {
            // SAFETY: writes from a live slice to a descriptor we own.
            let n = unsafe { libc::write(self.0, b.as_ptr().cast(), b.len()) };
            if n > 0 {
                b = &b[n as usize..];
            } else if n < 0
                && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted
            {
                continue;
            } else {
                return;
            }
        }
    }
}

impl Console for SocketConsole {
    fn read(&mut self) -> Option<Vec<u8>> {
        let mut buf = [0u8; 1024];
        loop {
            // SAFETY: reads into a live buffer of its length.
            let n = unsafe { libc::read(self.0, buf.as_mut_ptr().cast(), buf.len()) };
            if n > 0 {
                return Some(buf[..n as usize].to_vec());
            }
            if n < 0 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return None;
        }
    }

    fn write(&mut self, bytes: Vec<u8>) {
        self.write_all(&bytes);
    }
}

/// In a forked child: closes every descriptor but the standard ones and
/// `keep`, so nothing the child does can reach the parent's files.
pub fn close_files_but(keep: i32) {
    let fds: Vec<i32> = std::fs::read_dir("/proc/self/fd")
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    for fd in fds {
        if fd > 2 && fd != keep {
            // SAFETY: closing descriptors in a child that no longer uses them.
            unsafe { libc::close(fd) };
        }
    }
}

/// Forked sessions still running, killed at shutdown as Redis kills them.
static CHILDREN: std::sync::Mutex<Vec<i32>> = std::sync::Mutex::new(Vec::new());

/// Watches a forked session's child until it exits, and reaps it. It is
/// reaped only after it leaves the list, so a shutdown never signals a pid
/// that could have been reused.
pub fn adopt_child(pid: i32) {
    if let Ok(mut c) = CHILDREN.lock() {
        c.push(pid);
    }
    let watcher = std::thread::Builder::new()
        .name("ldb-child".into())
        .spawn(move || {
            // SAFETY: waits on our own child; the siginfo is written by
            // the kernel and not read.
            unsafe {
                let mut info: libc::siginfo_t = std::mem::zeroed();
                libc::waitid(
                    libc::P_PID,
                    pid as libc::id_t,
                    &mut info,
                    libc::WEXITED | libc::WNOWAIT,
                );
            }
            if let Ok(mut c) = CHILDREN.lock() {
                c.retain(|&p| p != pid);
            }
            // SAFETY: reaps the child waited for above.
            unsafe { libc::waitpid(pid, std::ptr::null_mut(), 0) };
        });
    if watcher.is_err() {
        // SAFETY: reaps it now rather than leave a zombie; it is running,
        // so this only fails to reap (WNOHANG), which is harmless.
        unsafe { libc::waitpid(pid, std::ptr::null_mut(), libc::WNOHANG) };
    }
}

/// Shutdown: every forked session ends.
pub fn kill_children() {
    if let Ok(c) = CHILDREN.lock() {
        for &pid in c.iter() {
            tracing::warn!("Killing debugging session {pid}");
            // SAFETY: signals our own unreaped child.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
}

/// A RESP reply as the debugger shows it: strings quoted, arrays in
/// brackets, maps as `{k => v}`. Returns the position after the value.
pub fn reply_to_human(out: &mut Vec<u8>, b: &[u8], mut p: usize) -> usize {
    let line_end = |from: usize| {
        b[from..]
            .iter()
            .position(|&c| c == b'\r')
            .map_or(b.len(), |i| from + i)
    };
    let Some(&tag) = b.get(p) else {
        return b.len();
    };
    let eol = line_end(p + 1);
    let head = &b[p + 1..eol];
    let next = (eol + 2).min(b.len());
    match tag {
        b':' => {
            out.extend_from_slice(head);
            next
        }
        b'$' => {
            let n = atoi(head);
            if n < 0 {
                out.extend_from_slice(b"NULL");
                return next;
            }
            let end = (next + n as usize).min(b.len());
            crate::util::push_repr(out, &b[next..end]);
            (end + 2).min(b.len())
        }
        b'+' | b'-' => {
            crate::util::push_repr(out, &b[p..eol]);
            next
        }
        b'*' | b'~' => {
            let n = atoi(head);
            p = next;
            if tag == b'*' && n < 0 {
                out.extend_from_slice(b"NULL");
                return p;
            }
            out.extend_from_slice(if tag == b'*' { b"[" } else { b"~(" });
            for j in 0..n.max(0) {
                p = reply_to_human(out, b, p);
                if j != n - 1 {
                    out.push(b',');
                }
            }
            out.push(if tag == b'*' { b']' } else { b')' });
            p
        }
        b'%' => {
            let n = atoi(head);
            p = next;
            out.push(b'{');
            for j in 0..n.max(0) {
                p = reply_to_human(out, b, p);
                out.extend_from_slice(b" => ");
                p = reply_to_human(out, b, p);
                if j != n - 1 {
                    out.push(b',');
                }
            }
            out.push(b'}');
            p
        }
        b'_' => {
            out.extend_from_slice(b"(null)");
            next
        }
        b'#' => {
            out.extend_from_slice(if head.first() == Some(&b't') {
                b"#true"
            } else {
                b"#false"
            });
            next
        }
        b',' => {
            out.extend_from_slice(b"(double) ");
            out.extend_from_slice(head);
            next
        }
        _ => b.len(),
    }
}

/// The debugger's help, as Redis words it (it is protocol output that
/// clients show as they get it).
const HELP: &[&str] = &[
    "Redis Lua debugger help:",
    "[h]elp               Show this help.",
    "[s]tep               Run current line and stop again.",
    "[n]ext               Alias for step.",
    "[c]ontinue           Run till next breakpoint.",
    "[l]ist               List source code around current line.",
    "[l]ist [line]        List source code around [line].",
    "                     line = 0 means: current position.",
    "[l]ist [line] [ctx]  In this form [ctx] specifies how many lines",
    "                     to show before/after [line].",
    "[w]hole              List all source code. Alias for 'list 1 1000000'.",
    "[p]rint              Show all the local variables.",
    "[p]rint <var>        Show the value of the specified variable.",
    "                     Can also show global vars KEYS and ARGV.",
    "[b]reak              Show all breakpoints.",
    "[b]reak <line>       Add a breakpoint to the specified line.",
    "[b]reak -<line>      Remove breakpoint from the specified line.",
    "[b]reak 0            Remove all breakpoints.",
    "[t]race              Show a backtrace.",
    "[e]val <code>        Execute some Lua code (in a different callframe).",
    "[r]edis <cmd>        Execute a Redis command.",
    "[m]axlen [len]       Trim logged Redis replies and Lua var dumps to len.",
    "                     Specifying zero as <len> means unlimited.",
    "[a]bort              Stop the execution of the script. In sync",
    "                     mode dataset changes will be retained.",
    "",
    "Debugger functions you can call from Lua scripts:",
    "redis.debug()        Produce logs in the debugger console.",
    "redis.breakpoint()   Stop execution like if there was a breakpoint in the",
    "                     next line of code.",
];

#[cfg(test)]
mod tests {
    use super::*;

    struct Null;
    impl Console for Null {
        fn read(&mut self) -> Option<Vec<u8>> {
            None
        }
        fn write(&mut self, _: Vec<u8>) {}
    }

    fn session(body: &str) -> Ldb {
        begin(body.as_bytes(), Box::new(Null), Duration::from_secs(5));
        SESSION.with(|s| s.borrow_mut().take()).expect("session")
    }

    #[test]
    fn removing_a_breakpoint_shifts_bytes_as_redis_does() {
        let mut l = session("a\nb\nc\nd\ne\nf\ng\nh\ni\nj");
        for line in [3, 9, 2] {
            assert!(l.add_breakpoint(line));
        }
        assert!(l.remove_breakpoint(3));
        assert_eq!(&l.bp[..l.bp_count], &[9, 9]);
        assert!(!l.add_breakpoint(9), "already set");
        assert!(!l.add_breakpoint(11), "past the end");
    }

    #[test]
    fn commands_parse_as_forgivingly_as_redis() {
        let mut l = session("return 1");
        type Parsed<'a> = Result<Option<Vec<&'a [u8]>>, &'a str>;
        let cases: &[(&[u8], Parsed)] = &[
            (b"", Ok(None)),
            (b"garbage\r\n", Err("protocol error")),
            (b"xx*1\r\n$1\r\ns\r\n", Ok(Some(vec![b"s"]))),
            (b"*1\r\n$1\r\n", Ok(None)),
            (b"*1\r\n$0\r\n\r\n", Err("protocol error")),
            (b"*0\r\n", Err("protocol error")),
            (b"*2\r\n$1\r\np\r\n$1\r\nx\r\n", Ok(Some(vec![b"p", b"x"]))),
            (b"*1\r\n$3\r\nabcd\r\n", Err("protocol error")),
            (
                b"*1\r\n$11\r\nhello\0world\r\n",
                Ok(Some(vec![b"hello\0world"])),
            ),
        ];
        for (input, want) in cases {
            l.input = input.to_vec();
            let got = l.parse_command();
            let want = want
                .clone()
                .map(|o| o.map(|v| v.into_iter().map(<[u8]>::to_vec).collect::<Vec<_>>()));
            assert_eq!(got, want, "{:?}", String::from_utf8_lossy(input));
        }
    }

    #[test]
    fn replies_read_as_redis_shows_them() {
        let human = |b: &[u8]| {
            let mut out = Vec::new();
            reply_to_human(&mut out, b, 0);
            String::from_utf8(out).expect("utf8")
        };
        assert_eq!(human(b"+OK\r\n"), "\"+OK\"");
        assert_eq!(human(b"-ERR no\r\n"), "\"-ERR no\"");
        assert_eq!(human(b"$-1\r\n"), "NULL");
        assert_eq!(human(b"*2\r\n$1\r\na\r\n:5\r\n"), "[\"a\",5]");
        assert_eq!(human(b"%1\r\n+k\r\n#t\r\n"), "{\"+k\" => #true}");
        assert_eq!(human(b"~1\r\n,1.5\r\n"), "~((double) 1.5)");
        assert_eq!(human(b"_\r\n"), "(null)");
    }

    #[test]
    fn long_entries_are_cut_with_one_hint() {
        let mut l = session("return 1");
        l.log_trimmed(vec![b'x'; 300]);
        l.log_trimmed(vec![b'y'; 300]);
        assert_eq!(l.logs.len(), 3);
        assert_eq!(l.logs[0].len(), 256 + 4);
        assert!(l.logs[1].starts_with(b"<hint>"));
    }
}
