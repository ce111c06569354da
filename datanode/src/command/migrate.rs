//! MIGRATE: moves keys to another node as DUMP payloads sent with RESTORE
//! (RESTORE-ASKING in a cluster) and deletes each here once the target
//! answered OK, with Redis 7.0's options, replies and connection cache.
//!
//! Like Redis's, the command is synchronous for its client: the slots of
//! its keys stay locked from the dump to the delete, so no write lands in
//! between and is lost. Redis blocks the whole server meanwhile; here the
//! transfer runs on a blocking thread and only clients of those slots
//! wait.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::{eq_ic, int_arg, Args, Ctx, SYNTAX};
use crate::resp::parse::encode_command;
use crate::server::notify::class as ev;

/// Redis's limits: at most 64 cached connections, each closed after 10
/// seconds unused.
const CACHE_ITEMS: usize = 64;
const CACHE_TTL: Duration = Duration::from_secs(10);

/// An open connection to a MIGRATE target.
struct Target {
    sock: TcpStream,
    /// Bytes read past the last reply line.
    buf: Vec<u8>,
    /// The database last selected on it (-1: unknown, SELECT again).
    last_db: i64,
    last_use: Instant,
}

/// Connections kept between MIGRATE calls, by `host:port`
/// (`migrate_cached_sockets` in INFO).
#[derive(Default)]
pub struct SocketCache {
    map: Mutex<HashMap<String, Target>>,
}

impl SocketCache {
    pub fn len(&self) -> usize {
        self.map.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Closes connections unused for longer than Redis keeps them.
    pub fn close_idle(&self) {
        let now = Instant::now();
        self.map
            .lock()
            .retain(|_, t| now.duration_since(t.last_use) <= CACHE_TTL);
    }

    /// The cached connection to `name`, taken out while in use, or a new
    /// one.
    fn take(
        &self,
        name: &str,
        host: &str,
        port: u16,
        timeout: Duration,
    ) -> Result<Target, Unreached> {
        if let Some(mut t) = self.map.lock().remove(name) {
            t.last_use = Instant::now();
            return Ok(t);
        }
        let addr = (host, port)
            .to_socket_addrs()
            .ok()
            .and_then(|mut a| a.next())
            .ok_or(Unreached::Connecting)?;
        let sock = TcpStream::connect_timeout(&addr, timeout).map_err(|e| {
            if e.kind() == std::io::ErrorKind::ConnectionRefused {
                Unreached::Refused
            } else {
                Unreached::Connecting
            }
        })?;
        let _ = sock.set_nodelay(true);
        Ok(Target {
            sock,
            buf: Vec::new(),
            last_db: -1,
            last_use: Instant::now(),
        })
    }

    fn put_back(&self, name: String, t: Target) {
        let mut map = self.map.lock();
        if map.len() >= CACHE_ITEMS && !map.contains_key(&name) {
            // Redis drops a random one; any will do.
            if let Some(k) = map.keys().next().cloned() {
                map.remove(&k);
            }
        }
        map.insert(name, t);
    }
}

/// Why no connection to the target could be had.
enum Unreached {
    /// Refused at once: Redis's non-blocking connect "succeeds" and the
    /// first write fails, so it reports a write error.
    Refused,
    /// Timed out, or no such host.
    Connecting,
}

impl Target {
    fn write_all(&mut self, data: &[u8], timeout: Duration) -> std::io::Result<()> {
        self.sock.set_write_timeout(Some(timeout))?;
        // In pieces of 64 kB, each within the timeout, as Redis writes.
        for chunk in data.chunks(64 * 1024) {
            self.sock.write_all(chunk)?;
        }
        Ok(())
    }

    /// One reply line (without its CRLF).
    fn read_line(&mut self, timeout: Duration) -> std::io::Result<Vec<u8>> {
        self.sock.set_read_timeout(Some(timeout))?;
        loop {
            if let Some(p) = memchr::memchr(b'\n', &self.buf) {
                let mut line: Vec<u8> = self.buf.drain(..=p).collect();
                line.pop();
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                return Ok(line);
            }
            let mut chunk = [0u8; 4096];
            let n = self.sock.read(&mut chunk)?;
            if n == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }
}

/// Key positions of MIGRATE: the key argument, or what follows `KEYS`
/// when the key argument is empty (Redis's `migrateGetKeys`).
pub fn migrate_keys(a: &Args) -> Vec<usize> {
    let mut i = 6;
    while i < a.len() {
        let t = a.get(i);
        if eq_ic(t, "KEYS") {
            if !a.get(3).is_empty() {
                return Vec::new();
            }
            return (i + 1..a.len()).collect();
        }
        if eq_ic(t, "AUTH") {
            i += 1;
        } else if eq_ic(t, "AUTH2") {
            i += 2;
        }
        i += 1;
    }
    vec![3]
}

struct Options<'a> {
    copy: bool,
    replace: bool,
    /// (username, password).
    auth: Option<(Option<&'a [u8]>, &'a [u8])>,
    first_key: usize,
    num_keys: usize,
}

fn parse_options<'a>(ctx: &mut Ctx, a: &'a Args) -> Option<Options<'a>> {
    let mut o = Options {
        copy: false,
        replace: false,
        auth: None,
        first_key: 3,
        num_keys: 1,
    };
    let mut j = 6;
    while j < a.len() {
        let more = a.len() - 1 - j;
        let t = a.get(j);
        if eq_ic(t, "COPY") {
            o.copy = true;
        } else if eq_ic(t, "REPLACE") {
            o.replace = true;
        } else if eq_ic(t, "AUTH") {
            if more < 1 {
                ctx.r.error(SYNTAX);
                return None;
            }
            j += 1;
            o.auth = Some((None, a.get(j)));
        } else if eq_ic(t, "AUTH2") {
            if more < 2 {
                ctx.r.error(SYNTAX);
                return None;
            }
            o.auth = Some((Some(a.get(j + 1)), a.get(j + 2)));
            j += 2;
        } else if eq_ic(t, "KEYS") {
            if !a.get(3).is_empty() {
                ctx.r.error(
                    "ERR When using MIGRATE KEYS option, the key argument must be set to the empty string",
                );
                return None;
            }
            o.first_key = j + 1;
            o.num_keys = a.len() - j - 1;
            break;
        } else {
            ctx.r.error(SYNTAX);
            return None;
        }
        j += 1;
    }
    Some(o)
}

/// How one attempt to talk to the target ended.
enum Attempt {
    Done,
    /// A socket error before any key moved: Redis tries once more on a
    /// fresh connection unless it was a timeout.
    Retry,
    Failed {
        writing: bool,
    },
}

/// What one MIGRATE needs, owned, so it can run away from the command
/// thread.
struct Params {
    host: String,
    port: u16,
    /// `host:port` as given: the connection cache's key.
    name: String,
    keys: Vec<Vec<u8>>,
    dbid: i64,
    timeout: Duration,
    copy: bool,
    replace: bool,
    auth: Option<(Option<Vec<u8>>, Vec<u8>)>,
    restore: &'static [u8],
}

/// MIGRATE host port key|"" destination-db timeout [COPY] [REPLACE]
/// [AUTH password] [AUTH2 username password] [KEYS key …]
pub fn migrate(ctx: &mut Ctx, a: &Args) {
    let Some(o) = parse_options(ctx, a) else {
        return;
    };
    let Some(timeout) = int_arg(ctx, a.get(5)) else {
        return;
    };
    let Some(dbid) = int_arg(ctx, a.get(4)) else {
        return;
    };
    let timeout = Duration::from_millis(if timeout <= 0 { 1000 } else { timeout as u64 });
    let host = String::from_utf8_lossy(a.get(1)).into_owned();
    let port_text = String::from_utf8_lossy(a.get(2)).into_owned();
    // Redis reads the port with atoi: junk makes it 0, which fails to
    // connect.
    let port: u16 = port_text.trim().parse().unwrap_or(0);
    let p = Params {
        name: format!("{host}:{port_text}"),
        host,
        port,
        keys: (o.first_key..o.first_key + o.num_keys)
            .map(|i| a.get(i).to_vec())
            .collect(),
        dbid,
        timeout,
        copy: o.copy,
        replace: o.replace,
        auth: o.auth.map(|(u, p)| (u.map(|u| u.to_vec()), p.to_vec())),
        restore: if ctx.srv.cluster_enabled() {
            b"RESTORE-ASKING"
        } else {
            b"RESTORE"
        },
    };
    // A MIGRATE of its own (not in a transaction, not replayed) runs on a
    // blocking thread while its connection waits, so the command thread
    // keeps serving everyone else through a large transfer. Only clients
    // of the keys' slots wait for it, on those slots' locks.
    let offload = !ctx.client.in_exec
        && ctx.client.multi.is_none()
        && !ctx.client.loading
        && ctx.client.reply_mode == crate::server::client::ReplyMode::On
        && tokio::runtime::Handle::try_current().is_ok();
    if offload {
        let srv = ctx.srv.clone();
        let dbi = ctx.locks.db.index;
        let proto = ctx.client.proto;
        ctx.actions
            .push(super::Action::Offload(super::Offloaded(Box::new(
                move || {
                    let db = srv.ks.db(dbi);
                    let mut locks =
                        super::locks::Locks::new(&srv.ks, db, crate::keyspace::now_ms());
                    let mut out = Vec::new();
                    let mut r = crate::resp::Reply::new(&mut out, proto);
                    let events =
                        crate::server::notify::Events::new(&srv, srv.hot.notify.load()).db(dbi);
                    let t0 = std::time::Instant::now();
                    let deleted = run(&srv, &mut locks, &mut r, events, &p);
                    super::OffloadDone {
                        detached: false,
                        reply: out,
                        dirty: deleted,
                        error_counted: false,
                        cmd: super::table::lookup_any(b"migrate"),
                        usec: t0.elapsed().as_micros() as u64,
                    }
                },
            ))));
        return;
    }
    let events = ctx.events();
    let deleted = run(ctx.srv, &mut ctx.locks, &mut ctx.r, events, &p);
    ctx.dirty(deleted);
}

/// The transfer: dump the keys under their slots' locks, RESTORE them on
/// the target, delete each the target accepted. Writes the reply to `r`;
/// returns how many keys were deleted here.
fn run(
    srv: &crate::server::Shared,
    locks: &mut super::locks::Locks,
    r: &mut crate::resp::Reply,
    events: crate::server::notify::Events,
    p: &Params,
) -> u64 {
    let (host, port, name, dbid, timeout) = (&p.host, p.port, &p.name, p.dbid, p.timeout);
    let restore = p.restore;
    let now = locks.now;
    let cache = &srv.migrate_sockets;
    let keys: Vec<&[u8]> = p.keys.iter().map(|k| k.as_slice()).collect();
    let mut m = locks.keys(keys.iter().copied());
    let present: Vec<&[u8]> = keys
        .iter()
        .copied()
        .filter(|k| m.key(k).get(k).is_some())
        .collect();
    if present.is_empty() {
        drop(m);
        r.simple("NOKEY");
        return 0;
    }
    let auth: Option<(Option<&[u8]>, &[u8])> =
        p.auth.as_ref().map(|(u, pw)| (u.as_deref(), pw.as_slice()));
    let mut may_retry = true;
    let mut deleted = 0u64;
    loop {
        let mut target = match cache.take(name, host, port, timeout) {
            Ok(t) => t,
            Err(why) => {
                drop(m);
                r.error(match why {
                    Unreached::Refused => "IOERR error or timeout writing to target instance",
                    Unreached::Connecting => "IOERR error or timeout connecting to the client",
                });
                return 0;
            }
        };
        // The request: AUTH, SELECT when the database changes, then one
        // RESTORE per key still alive.
        let mut req = Vec::new();
        if let Some((user, pass)) = auth {
            match user {
                Some(u) => encode_command(&[b"AUTH".as_slice(), u, pass], &mut req),
                None => encode_command(&[b"AUTH".as_slice(), pass], &mut req),
            }
        }
        let select = target.last_db != dbid;
        if select {
            let mut b = itoa::Buffer::new();
            encode_command(&[b"SELECT".as_slice(), b.format(dbid).as_bytes()], &mut req);
        }
        let mut sent: Vec<&[u8]> = Vec::with_capacity(present.len());
        for &k in &present {
            let s = m.key(k);
            let ttl = match s.expire_of(k) {
                Some(at) if at - now < 0 => continue,
                Some(at) => (at - now).max(1),
                None => 0,
            };
            let Some(v) = s.get(k) else { continue };
            let payload = crate::persistence::rdb::object::dump(v);
            let mut b = itoa::Buffer::new();
            let ttl = b.format(ttl).as_bytes();
            if p.replace {
                encode_command(&[restore, k, ttl, &payload, b"REPLACE"], &mut req);
            } else {
                encode_command(&[restore, k, ttl, &payload], &mut req);
            }
            sent.push(k);
        }
        let mut target_error: Option<Vec<u8>> = None;
        // A socket error after the target's own error: that error is the
        // reply, and the connection is not kept.
        let mut socket_error = false;
        let attempt = 'io: {
            let retry_or_fail = |e: &std::io::Error, writing: bool| {
                if may_retry && !is_timeout(e) {
                    Attempt::Retry
                } else {
                    Attempt::Failed { writing }
                }
            };
            if let Err(e) = target.write_all(&req, timeout) {
                break 'io retry_or_fail(&e, true);
            }
            let mut first_err = None;
            for expect in [auth.is_some(), select] {
                if !expect {
                    continue;
                }
                match target.read_line(timeout) {
                    Ok(l) if l.first() == Some(&b'-') => {
                        first_err.get_or_insert(l);
                    }
                    Ok(_) => {}
                    Err(e) => break 'io retry_or_fail(&e, false),
                }
            }
            for (j, &k) in sent.iter().enumerate() {
                let line = match target.read_line(timeout) {
                    Ok(l) => l,
                    Err(e) => {
                        if target_error.is_some() {
                            socket_error = true;
                            break 'io Attempt::Done;
                        }
                        if j == 0 {
                            break 'io retry_or_fail(&e, false);
                        }
                        break 'io Attempt::Failed { writing: false };
                    }
                };
                let err = first_err
                    .clone()
                    .or_else(|| (line.first() == Some(&b'-')).then(|| line.clone()));
                if let Some(e) = err {
                    target_error.get_or_insert(e);
                } else if !p.copy {
                    let s = m.key(k);
                    if s.delete_freeing(k, &crate::keyspace::lazyfree::SERVER_DEL) {
                        s.log(&[b"DEL".as_slice(), k]);
                        events.emit(ev::GENERIC, "del", k);
                        deleted += 1;
                    }
                }
            }
            Attempt::Done
        };
        match attempt {
            Attempt::Retry => {
                // The cached connection was stale: a fresh one, once.
                may_retry = false;
                continue;
            }
            Attempt::Failed { writing } => {
                drop(m);
                let what = if writing { "writing" } else { "reading" };
                r.error(&format!("IOERR error or timeout {what} to target instance"));
                return deleted;
            }
            Attempt::Done => {}
        }
        drop(m);
        if !socket_error {
            target.last_db = if target_error.is_some() { -1 } else { dbid };
            cache.put_back(name.clone(), target);
        }
        match target_error {
            Some(e) => {
                let msg = String::from_utf8_lossy(&e[1..]).into_owned();
                r.error(&format!("ERR Target instance replied with error: {msg}"));
            }
            None => r.ok(),
        }
        return deleted;
    }
}

fn is_timeout(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
    )
}
