//! One client connection: read, parse every complete request, run them,
//! write all replies with one write.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::{Buf, BytesMut};
use parking_lot::Mutex;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::client::{Addr, Client, ClientInfo, ReplyMode};
use super::replybuf::{self, ReplyBuf};
use super::shared::Shared;
use super::stats::Stats;
use crate::command::{self, Action, Args, Ctx, Locks};
use crate::keyspace::now_ms;
use crate::net::Stream;
use crate::resp::parse::{pending_request, Pending};
use crate::resp::{parse_request, Limits, Parsed, Proto, Reply};

const READ_CHUNK: usize = 16 * 1024;

pub fn new_client(srv: &Arc<Shared>, addr: Addr, laddr: Addr) -> Client {
    let mut c = client_struct(srv, addr, laddr);
    c.set_acl_user(Some(srv.acl.default_user()));
    c
}

fn client_struct(srv: &Arc<Shared>, addr: Addr, laddr: Addr) -> Client {
    let id = srv.next_client_id.fetch_add(1, Ordering::Relaxed);
    let now = now_ms();
    let info = Arc::new_cyclic(|me| ClientInfo {
        outq: Arc::new(super::outbox::OutQ::new(me.clone())),
        id,
        addr,
        laddr,
        created_ms: now,
        name: Mutex::new(None),
        user: Mutex::new(b"default".to_vec()),
        db: AtomicUsize::new(0),
        last_interaction_ms: AtomicI64::new(now),
        last_cmd: Mutex::new("NULL"),
        resp: AtomicUsize::new(2),
        in_multi: AtomicBool::new(false),
        killed: AtomicBool::new(false),
        kill_notify: tokio::sync::Notify::new(),
        is_monitor: AtomicBool::new(false),
        sub: Default::default(),
        multi_len: AtomicI64::new(-1),
        qbuf: AtomicU64::new(0),
        qbuf_cap: AtomicU64::new(READ_CHUNK as u64),
        rbs: AtomicU64::new(replybuf::CHUNK as u64),
        rbp: AtomicU64::new(0),
        rb_wake_at: AtomicI64::new(i64::MAX),
        role: Default::default(),
        fd: std::sync::atomic::AtomicI32::new(-1),
        open_fd: Mutex::new(-1),
        no_evict: AtomicBool::new(false),
        multi_mem: AtomicU64::new(0),
        state_mem: AtomicU64::new(0),
        reported_mem: AtomicU64::new(0),
        closing_mem: AtomicU64::new(0),
        idle_notify: tokio::sync::Notify::new(),
        blocked: AtomicBool::new(false),
        unblock_mode: std::sync::atomic::AtomicU8::new(0),
        unblock_notify: tokio::sync::Notify::new(),
        trk: Default::default(),
        trk_redir: Default::default(),
        inbox: Mutex::new(None),
        adopt: Mutex::new(None),
        has_adopt: AtomicBool::new(false),
    });
    Client {
        id,
        info,
        db: 0,
        proto: Proto::Resp2,
        // As Redis: a connection starts authenticated when the default
        // user is on and needs no password.
        authenticated: !srv.acl.auth_required(),
        acl_gen: srv.acl.generation(),
        acl_open: false,
        user: None,
        multi: None,
        watched: Vec::new(),
        reply_mode: ReplyMode::On,
        close_after_reply: false,
        script_debug: Default::default(),
        readonly: false,
        asking: false,
        pending_cmds: 0,
        pending_dirty: 0,
        pending_hits: 0,
        pending_misses: 0,
        last_write_offset: 0,
        last_elapsed_us: 0,
        last_cmd: "NULL",
        subs: None,
        block_retry: false,
        is_master: false,
        woff: 0,
        repl_port: 0,
        repl_ip: None,
        repl_psync2: false,
        repl_eof: false,
        repl_rdb_filter: None,
        reply_from: None,
        postponed: false,
        monitor: false,
        is_replica: false,
        in_exec: false,
        in_script: false,
        error_counted: false,
        count_as_failed: false,
        qbuf_at_cmd: 0,
        rbuf_cap: READ_CHUNK,
        rb: ReplyBuf::new(now),
        loading: false,
        caching: false,
        trk_prefixes: Vec::new(),
    }
}

/// Runs one command for `client`, appending its reply to `out`.
pub fn execute(
    srv: &Arc<Shared>,
    client: &mut Client,
    out: &mut Vec<u8>,
    actions: &mut Vec<Action>,
    args: &Args,
    now: i64,
) -> Option<&'static crate::command::table::Cmd> {
    // Client-side caching: one relaxed load when nobody tracks.
    let tracking = srv.tracking.armed();
    if tracking {
        let early = super::tracking::begin(srv, client.id);
        write_own(out, client, early);
    }
    let start = out.len();
    client.last_elapsed_us = 0;
    let db = srv.ks.db(client.db);
    let proto = client.proto;
    let cmd = {
        let mut ctx = Ctx {
            srv,
            client,
            r: Reply::new(out, proto),
            locks: Locks::new(&srv.ks, db, now),
            actions,
        };
        let _busy = crate::watchdog::Busy::enter();
        command::dispatch(&mut ctx, args)
    };
    // Pushes written ahead of the reply are not part of it.
    let start = client.reply_from.take().unwrap_or(start);
    if std::mem::take(&mut client.postponed) {
        // Not run yet: it is counted (and its reply mode applied) when
        // it runs after the pause.
        return None;
    }
    client.pending_cmds += 1;
    if out.get(start) == Some(&b'-') && !std::mem::take(&mut client.error_counted) {
        super::cmdstats::count_error_reply(srv, &out[start..]);
    }
    // Pushes are exempt from REPLY OFF and SKIP, as in Redis 7.0: RESP3
    // pushes, and the subscribe/unsubscribe confirmations in RESP2 too.
    let pushes = out.get(start) == Some(&b'>')
        || (out.get(start) == Some(&b'*')
            && cmd.is_some_and(|c| {
                matches!(
                    c.name,
                    "subscribe"
                        | "psubscribe"
                        | "ssubscribe"
                        | "unsubscribe"
                        | "punsubscribe"
                        | "sunsubscribe"
                )
            }));
    match client.reply_mode {
        ReplyMode::On => {}
        ReplyMode::Off if !pushes => out.truncate(start),
        ReplyMode::Off => {}
        ReplyMode::SkipNext => client.reply_mode = ReplyMode::Skip,
        ReplyMode::Skip => {
            if !pushes {
                out.truncate(start);
            }
            client.reply_mode = ReplyMode::On;
        }
    }
    if tracking || srv.tracking.armed() {
        // Invalidations for this client's own changes follow its reply.
        let own = super::tracking::finish(srv);
        write_own(out, client, own);
    }
    // CLIENT CACHING applies to the next command (the whole transaction
    // when given before EXEC), as in Redis.
    if client.caching
        && client.multi.is_none()
        && !cmd.is_some_and(|c| c.name.starts_with("client"))
    {
        client.caching = false;
    }
    if let Some(c) = cmd {
        client.last_cmd = c.name;
        // EXEC, scripts and functions write through the commands they run.
        let writes = c.is_write() || matches!(c.name, "exec" | "eval" | "evalsha" | "fcall");
        if writes {
            client.woff = client
                .woff
                .max(crate::persistence::effects::last_repl_offset());
        }
        if srv.log.aof_on() {
            if !srv.hot.fsync_always.load(Ordering::Relaxed) {
                // What this thread logged last: this command's effects
                // (any command may log some, a read deleting an expired
                // key too), or earlier ones, due anyway.
                client.last_write_offset = client
                    .last_write_offset
                    .max(crate::persistence::effects::last_aof_offset());
            } else if writes {
                client.last_write_offset = srv.log.offset();
            }
        }
    }
    cmd
}

/// Writes messages for the running client straight into its output.
pub fn write_own(out: &mut Vec<u8>, client: &Client, msgs: Vec<crate::server::pubsub::PubMsg>) {
    if msgs.is_empty() {
        return;
    }
    let subscribed = client.subscribed();
    let mut r = Reply::new(out, client.proto);
    for m in &msgs {
        command::pubsub::write_message(&mut r, m, subscribed);
    }
}

/// Formats a MONITOR line the way Redis does; `redact` lists argument
/// indexes shown as `(redacted)`.
pub fn feed_monitor(srv: &Shared, client: &Client, args: &Args, now: i64, redact: &[usize]) {
    // A script's commands show as the "lua" client's, as in Redis.
    let line = if client.in_script {
        format!(
            "+{}.{:06} [{} lua]",
            now / 1000,
            (now % 1000) * 1000,
            client.db
        )
    } else if let super::client::Addr::Unix(path) = &client.info.addr {
        format!(
            "+{}.{:06} [{} unix:{path}]",
            now / 1000,
            (now % 1000) * 1000,
            client.db,
        )
    } else {
        format!(
            "+{}.{:06} [{} {}]",
            now / 1000,
            (now % 1000) * 1000,
            client.db,
            client.info.addr
        )
    };
    let mut line = line.into_bytes();
    for (i, a) in args.iter().enumerate() {
        if redact.contains(&i) {
            line.extend_from_slice(b" \"(redacted)\"");
            continue;
        }
        line.push(b' ');
        crate::util::push_repr(&mut line, a);
    }
    line.extend_from_slice(b"\r\n");
    srv.feed_monitors(line);
}

thread_local! {
    /// Connections waiting in `gather_writes` on this thread, and the most
    /// there were at once since they were last all gone.
    static GATHERING: std::cell::Cell<(u32, u32)> = const { std::cell::Cell::new((0, 0)) };
    /// Writes to make straight away after a gathering that was not worth it.
    static SKIP_GATHER: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
}

/// Completes after the tasks already queued on this thread ran: it wakes
/// itself, which puts it at the back of the run queue. Unlike
/// `tokio::task::yield_now`, which waits for the next poll of the sockets,
/// connections that become readable meanwhile do not go first, so a reply
/// waits for one round of commands, as in Redis, not two.
struct AfterQueued(bool);

impl std::future::Future for AfterQueued {
    type Output = ();

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<()> {
        if self.0 {
            return std::task::Poll::Ready(());
        }
        self.0 = true;
        cx.waker().wake_by_ref();
        std::task::Poll::Pending
    }
}

/// Lets the other connections with input run before this one writes, so
/// the replies go out together, as Redis writes them in beforeSleep: a
/// client woken by the first reply then finds the others already there,
/// rather than being woken once per reply (10% of the command thread with
/// 50 busy connections). It costs a trip through the run queue, so it is
/// skipped for a while after a round where fewer than `GATHER_MIN`
/// connections met: one client at a time gains nothing.
async fn gather_writes() {
    const GATHER_MIN: u32 = 4;
    const SKIP_AFTER_SMALL_ROUND: u32 = 64;
    let skip = SKIP_GATHER.get();
    if skip > 0 {
        SKIP_GATHER.set(skip - 1);
        return;
    }
    let (n, peak) = GATHERING.get();
    GATHERING.set((n + 1, peak.max(n + 1)));
    AfterQueued(false).await;
    let (n, peak) = GATHERING.get();
    if peak < GATHER_MIN {
        SKIP_GATHER.set(SKIP_AFTER_SMALL_ROUND);
    }
    GATHERING.set(if n <= 1 { (0, 0) } else { (n - 1, peak) });
}

/// How a write of a connection's replies ended.
#[derive(PartialEq, Eq)]
enum Written {
    All,
    /// The socket takes no more for now and the client sent something:
    /// `out` keeps what is unwritten, to follow once the new requests ran.
    Stalled,
    /// The client was killed meanwhile (a reader too slow for its output
    /// limit is closed without waiting for it).
    Killed,
}

/// Writes `out`, counted as output in progress. As in Redis, replies the
/// client does not read do not stop the connection from reading and
/// running what it sends next (output buffer limits and maxmemory-clients
/// bound what piles up): so a client that writes a whole pipeline before
/// reading any reply cannot deadlock against us.
async fn write_out(
    srv: &Shared,
    sock: &mut Stream,
    out: &mut Vec<u8>,
    info: &ClientInfo,
) -> std::io::Result<Written> {
    let q = &info.outq;
    // The allocation is what the client holds while this write waits (a
    // grown batch's buffer can be twice its bytes, and the allocator
    // rounds it up to a size class), as maxmemory-clients and the output
    // limits count it after a stall.
    q.writing.store(
        crate::memory::alloc_size(out.capacity()) as u64,
        Ordering::Relaxed,
    );
    let mut off = 0;
    let done = loop {
        match sock.try_write(&out[off..]) {
            Ok(n) => {
                off += n;
                if off == out.len() {
                    break Ok(Written::All);
                }
                continue;
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => break Err(e),
        }
        tokio::select! {
            r = sock.writable() => if let Err(e) = r {
                break Err(e);
            },
            r = sock.readable() => match r {
                Ok(()) => break Ok(Written::Stalled),
                Err(e) => break Err(e),
            },
            _ = until_killed(info) => break Ok(Written::Killed),
        }
    };
    Stats::add(&srv.stats.net.output_bytes, off as u64);
    Stats::add(&srv.stats.net.writes, 1);
    if done.as_ref().is_ok_and(|w| *w == Written::Stalled) {
        out.drain(..off);
        // What is kept is the unwritten part, not the room the whole batch
        // needed; its allocation is what maxmemory-clients counts.
        // Kept at a size the allocator has a class for: growth by doubling
        // then stays on its classes, with no rounding waste uncounted.
        if out.capacity() > 2 * out.len() + READ_CHUNK {
            out.shrink_to(crate::memory::alloc_size(out.len() + READ_CHUNK));
        }
        q.writing.store(
            crate::memory::alloc_size(out.capacity()) as u64,
            Ordering::Relaxed,
        );
    } else {
        q.writing.store(0, Ordering::Relaxed);
    }
    done
}

/// Writes all of `out` before something that needs the socket to itself
/// (a blocking wait, a replica's or a migration's stream, the close after
/// QUIT); gives up, leaving the caller to notice, if the client is killed.
async fn write_all_out(
    srv: &Shared,
    sock: &mut Stream,
    out: &mut Vec<u8>,
    info: &ClientInfo,
) -> std::io::Result<()> {
    if !out.is_empty() {
        Stats::add(&srv.stats.net.writes, 1);
        Stats::add(&srv.stats.net.output_bytes, out.len() as u64);
        info.outq.writing.store(out.len() as u64, Ordering::Relaxed);
        let r = tokio::select! {
            r = sock.write_all(out) => r,
            _ = until_killed(info) => Ok(()),
        };
        out.clear();
        info.outq.writing.store(0, Ordering::Relaxed);
        r?;
    }
    Ok(())
}

/// Completes once the client is killed. (Other wake-ups on the same
/// notifier are re-checked by the main loop, which looks for them anyway.)
async fn until_killed(info: &ClientInfo) {
    while !info.killed.load(Ordering::Relaxed) {
        info.kill_notify.notified().await;
    }
}

/// WAIT: until `n` replicas acknowledged `offset`, the timeout (ms, 0 =
/// none) passes, the client is killed or CLIENT UNBLOCK ends the wait.
/// The client shows as blocked meanwhile (INFO blocked_clients and
/// clients_in_timeout_table, CLIENT LIST flag `b`), as in Redis. Returns
/// how many replicas acknowledged, or the error CLIENT UNBLOCK ERROR gives.
async fn wait_replicas(
    srv: &Arc<Shared>,
    info: &ClientInfo,
    n: i64,
    timeout_ms: u64,
    offset: u64,
) -> Result<usize, &'static str> {
    use crate::replication::master::acked_count;
    let deadline = (timeout_ms > 0)
        .then(|| std::time::Instant::now() + std::time::Duration::from_millis(timeout_ms));
    let count = acked_count(srv, offset);
    if count as i64 >= n {
        return Ok(count);
    }
    // Created before the client shows as blocked, so a CLIENT UNBLOCK that
    // sees the flag cannot miss this waiter.
    let unblocked = info.unblock_notify.notified();
    tokio::pin!(unblocked);
    let blocking = &srv.ks.blocking;
    info.unblock_mode.store(UNBLOCK_WAITING, Ordering::SeqCst);
    info.blocked.store(true, Ordering::SeqCst);
    blocking.clients.fetch_add(1, Ordering::Relaxed);
    let timed = blocking.timed_wait(deadline.is_some());
    let result = loop {
        let notified = srv.repl.acked.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let count = acked_count(srv, offset);
        if count as i64 >= n || info.killed.load(Ordering::Relaxed) {
            break Ok(count);
        }
        // Bounded waits: the deadline, the kill flag and a missed wake-up
        // are all looked at again within a second.
        let mut step = std::time::Duration::from_secs(1);
        if let Some(d) = deadline {
            let left = d.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                break Ok(count);
            }
            step = step.min(left);
        }
        tokio::select! {
            _ = &mut unblocked => {
                break if info.unblock_mode.load(Ordering::SeqCst) == UNBLOCK_ERROR {
                    crate::server::cmdstats::count_error_reply(srv, b"-UNBLOCKED");
                    Err("UNBLOCKED client unblocked via CLIENT UNBLOCK")
                } else {
                    Ok(acked_count(srv, offset))
                };
            }
            _ = tokio::time::timeout(step, notified) => {}
        }
    };
    drop(timed);
    blocking.clients.fetch_sub(1, Ordering::Relaxed);
    info.blocked.store(false, Ordering::SeqCst);
    info.unblock_mode.store(0, Ordering::SeqCst);
    result
}

/// The server cron woke an idle connection: it frees its empty read
/// buffer after a while (the next read allocates a fresh one), and
/// resizes its empty reply buffer when due.
fn idle_wake(client: &mut Client, rbuf: &mut BytesMut, out: &mut Vec<u8>) {
    let now = now_ms();
    let info = &client.info;
    if rbuf.is_empty()
        && now - info.last_interaction_ms.load(Ordering::Relaxed) >= super::IDLE_RELEASE_MS
    {
        *rbuf = BytesMut::new();
        info.qbuf_cap.store(0, Ordering::Relaxed);
    }
    if out.is_empty() && client.rb.due(now) {
        resize_reply_buffer(client, out, now);
    }
}

/// After a batch's replies were written (`out` holds them still): the
/// buffer goes back to the size kept between batches, and that size is
/// revisited when due.
fn after_write(client: &mut Client, out: &mut Vec<u8>, now: i64) {
    if out.capacity() > client.rb.size {
        // What overflowed the buffer was for this batch only.
        *out = Vec::with_capacity(client.rb.size);
    } else {
        out.clear();
    }
    if client.rb.due(now) {
        resize_reply_buffer(client, out, now);
    }
}

/// Runs the periodic sizing check on the empty reply buffer.
fn resize_reply_buffer(client: &mut Client, out: &mut Vec<u8>, now: i64) {
    if let Some(n) = client.rb.check(now) {
        *out = Vec::with_capacity(n);
    }
    let info = &client.info;
    info.rbs.store(client.rb.size as u64, Ordering::Relaxed);
    info.rbp.store(client.rb.peak as u64, Ordering::Relaxed);
    info.rb_wake_at
        .store(client.rb.wake_at(), Ordering::Relaxed);
}

/// What CLIENT LIST shows of this connection to others, once per batch.
/// `consumed`: bytes just advanced past, still part of the read buffer's
/// allocation.
/// `pending`: where the unfinished request stands; the part Redis would no
/// longer count as query buffer (`taken`), and the end of a big argument
/// being read (`need`), which counts as the buffer's size at once: Redis
/// allocates a big argument's room when its header arrives, so its
/// CLIENT LIST and maxmemory-clients see the whole size from then on.
fn publish_state(client: &Client, rbuf: &BytesMut, consumed: usize, pending: &Pending) {
    let info = &client.info;
    info.in_multi
        .store(client.multi.is_some(), Ordering::Relaxed);
    info.multi_len.store(
        client.multi.as_ref().map_or(-1, |m| m.queue.len() as i64),
        Ordering::Relaxed,
    );
    let subscribed = client
        .subs
        .as_ref()
        .is_some_and(|s| s.channels.len() + s.patterns.len() + s.shard_channels.len() > 0);
    info.outq.set_class(if subscribed {
        super::outbox::Class::PubSub
    } else {
        super::outbox::Class::Normal
    });
    if let Some(s) = &client.subs {
        info.sub[0].store(s.channels.len() as u64, Ordering::Relaxed);
        info.sub[1].store(s.patterns.len() as u64, Ordering::Relaxed);
        info.sub[2].store(s.shard_channels.len() as u64, Ordering::Relaxed);
    } else {
        for c in &info.sub {
            c.store(0, Ordering::Relaxed);
        }
    }
    info.qbuf.store(
        rbuf.len().saturating_sub(pending.taken) as u64,
        Ordering::Relaxed,
    );
    let room = rbuf.capacity().max(pending.need.unwrap_or(0));
    info.qbuf_cap
        .store((room + consumed) as u64, Ordering::Relaxed);
    info.rbs.store(client.rb.size as u64, Ordering::Relaxed);
    info.rbp.store(client.rb.peak as u64, Ordering::Relaxed);
    info.rb_wake_at
        .store(client.rb.wake_at(), Ordering::Relaxed);
    super::clientmem::publish(client);
}

/// Writes a queued message unless CLIENT REPLY OFF silences it: in Redis
/// 7.0 pub/sub messages are pushes (in RESP2 too) and get through; MONITOR
/// lines do not.
fn deliver(r: &mut Reply, mode: ReplyMode, subscribed: bool, m: &crate::server::pubsub::PubMsg) {
    if mode == ReplyMode::Off && matches!(m, crate::server::pubsub::PubMsg::Raw(_)) {
        return;
    }
    command::pubsub::write_message(r, m, subscribed);
}

/// protected-mode: while the default user needs no password, only local
/// clients may connect (the unix socket, 127.0.0.1 or ::1), as in Redis.
fn protected_denied(protected: bool, has_password: bool, peer: &Addr) -> bool {
    protected && !has_password && !peer.is_local()
}

const DENIED: &[u8] = b"-DENIED Running in protected mode because protected mode is enabled and no password is set for the default user. In this mode connections are only accepted from the loopback interface. Set a password (requirepass), disable protected mode (protected-mode no), or bind only to loopback addresses.\r\n";

pub async fn serve(srv: Arc<Shared>, mut sock: Stream, addr: Addr) {
    let protected = srv.config.read().protected_mode();
    // A password for the default user (requirepass or ACL) lifts it.
    let has_password = protected && srv.acl.user(b"default").is_some_and(|d| !d.nopass());
    if protected_denied(protected, has_password, &addr) {
        Stats::add(&srv.stats.rejected_connections, 1);
        let _ = sock.write_all(DENIED).await;
        return;
    }
    let laddr = match &sock {
        Stream::Tcp(tcp) => {
            let _ = tcp.set_nodelay(true);
            let keepalive = srv.config.read().tcp_keepalive();
            if keepalive > 0 {
                // Like Redis: probe idle peers so dead ones are noticed.
                let ka = socket2::TcpKeepalive::new()
                    .with_time(std::time::Duration::from_secs(keepalive))
                    .with_interval(std::time::Duration::from_secs((keepalive / 3).max(1)));
                let _ = socket2::SockRef::from(tcp).set_tcp_keepalive(&ka);
            }
            tcp.local_addr()
                .map(Addr::Tcp)
                .unwrap_or_else(|_| addr.clone())
        }
        Stream::Unix(_) => addr.clone(),
    };
    Stats::add(&srv.stats.connections_received, 1);
    let maxclients = srv.config.read().maxclients() as usize;
    let mut client = new_client(&srv, addr, laddr);
    {
        use std::os::fd::{AsFd, AsRawFd};
        let fd = sock.as_fd().as_raw_fd();
        client.info.fd.store(fd, Ordering::Relaxed);
        *client.info.open_fd.lock() = fd;
    }
    // Dropped before `sock` (a parameter) closes, unwinding too.
    let _open = OpenFd(client.info.clone());
    let admitted = {
        let mut reg = srv.clients.lock();
        let ok = reg.len() < maxclients;
        if ok {
            reg.insert(client.id, client.info.clone());
        }
        ok
    };
    if !admitted {
        Stats::add(&srv.stats.rejected_connections, 1);
        let _ = sock
            .write_all(b"-ERR max number of clients reached\r\n")
            .await;
        return;
    }
    let _registered = Registered {
        srv: &srv,
        info: client.info.clone(),
    };
    if let Err(e) = connection_loop(&srv, &mut sock, &mut client).await {
        tracing::debug!("client {} closed: {e}", client.info.addr);
    }
    // Drop WATCHes and the registry entry whatever ended the connection.
    {
        let out = &mut Vec::new();
        let actions = &mut Vec::new();
        let db = srv.ks.db(client.db);
        let mut ctx = Ctx {
            srv: &srv,
            client: &mut client,
            r: Reply::new(out, Proto::Resp2),
            locks: Locks::new(&srv.ks, db, now_ms()),
            actions,
        };
        command::txn::unwatch_all(&mut ctx);
        command::server::stop_monitor(&mut ctx);
        command::pubsub::drop_all(&mut ctx);
        let info = ctx.client.info.clone();
        crate::server::tracking::disable(&srv, &info, &mut ctx.client.trk_prefixes);
    }
    flush_counters(&srv, &mut client);
}

/// Marks the socket closed for CLIENT KILL (see `ClientInfo::open_fd`).
struct OpenFd(Arc<ClientInfo>);

impl Drop for OpenFd {
    fn drop(&mut self) {
        *self.0.open_fd.lock() = -1;
    }
}

/// A connection's place in the registry and in maxmemory-clients' total,
/// given up however its task ends, a panic included: a ghost entry would
/// show in CLIENT LIST and keep its memory counted (for evictions too).
struct Registered<'a> {
    srv: &'a Shared,
    info: Arc<ClientInfo>,
}

impl Drop for Registered<'_> {
    fn drop(&mut self) {
        self.srv.clients.lock().remove(&self.info.id);
        super::clientmem::forget(&self.info);
    }
}

fn flush_counters(srv: &Shared, c: &mut Client) {
    Stats::add(&srv.stats.commands, std::mem::take(&mut c.pending_cmds));
    Stats::add(&srv.stats.dirty, std::mem::take(&mut c.pending_dirty));
    Stats::add(
        &srv.stats.keyspace_hits,
        std::mem::take(&mut c.pending_hits),
    );
    Stats::add(
        &srv.stats.keyspace_misses,
        std::mem::take(&mut c.pending_misses),
    );
}

/// What an offloaded job came to, into the reply and the client's
/// counters.
fn apply_offloaded(
    srv: &Arc<Shared>,
    client: &mut Client,
    out: &mut Vec<u8>,
    done: Result<crate::command::OffloadDone, tokio::task::JoinError>,
) {
    let done = done.unwrap_or_else(|_| crate::command::OffloadDone {
        detached: false,
        reply: b"-ERR the command failed\r\n".to_vec(),
        dirty: 0,
        error_counted: false,
        cmd: None,
        usec: 0,
    });
    let (reply, dirty) = (done.reply, done.dirty);
    let failed = reply.first() == Some(&b'-');
    if failed && !done.error_counted {
        super::cmdstats::count_error_reply(srv, &reply);
    }
    if let Some(c) = done.cmd {
        let outcome = if failed {
            super::cmdstats::Outcome::Failed
        } else {
            super::cmdstats::Outcome::Ok
        };
        super::cmdstats::record(c, done.usec, outcome);
    }
    out.extend_from_slice(&reply);
    client.pending_dirty += dirty;
    // What the job wrote (a script's effects, a MIGRATE's deletions) is
    // acknowledged only once durable and, for WAIT, counted as ours.
    if dirty > 0 {
        client.woff = client.woff.max(srv.log.repl_offset());
        if srv.log.aof_on() {
            client.last_write_offset = srv.log.offset();
        }
    }
}

/// Runs a debugged script while carrying its dialogue: what the client
/// sends goes to the debugger, what the debugger says goes out at once.
/// Returns the job's result once its last words are written; a client
/// that leaves lets the script run to its end.
async fn debug_session(
    sock: &mut Stream,
    run: crate::command::DebugRun,
) -> std::io::Result<Result<crate::command::OffloadDone, tokio::task::JoinError>> {
    let crate::command::DebugRun { job, link } = run;
    let Some(crate::command::DebugLink { input, mut output }) = link else {
        // A forked session: the child talks on the socket itself, so this
        // side neither reads nor writes it meanwhile.
        return Ok(tokio::task::spawn_blocking(job.0).await);
    };
    let mut input = Some(input);
    let mut handle = tokio::task::spawn_blocking(job.0);
    let mut buf = BytesMut::with_capacity(4096);
    let done = loop {
        tokio::select! {
            done = &mut handle => break done,
            Some(bytes) = output.recv() => sock.write_all(&bytes).await?,
            r = sock.read_buf(&mut buf), if input.is_some() => match r {
                Ok(n) if n > 0 => {
                    if let Some(tx) = &input {
                        let _ = tx.send(buf.split().to_vec());
                    }
                }
                // The debugger sees the client gone at its next read.
                _ => input = None,
            },
        }
    };
    while let Ok(bytes) = output.try_recv() {
        sock.write_all(&bytes).await?;
    }
    Ok(done)
}

async fn connection_loop(
    srv: &Arc<Shared>,
    sock: &mut Stream,
    client: &mut Client,
) -> std::io::Result<()> {
    let mut rbuf = BytesMut::with_capacity(READ_CHUNK);
    let mut out: Vec<u8> = Vec::with_capacity(client.rb.size);
    let mut ranges = Vec::new();
    let mut scratch = Vec::new();
    let mut actions: Vec<Action> = Vec::new();
    let info = client.info.clone();
    // The bytes a request with a big argument needs, once its length is read.
    let mut big_arg: Option<usize> = None;
    loop {
        // An empty buffer is reset to the start of its allocation (no copy,
        // no allocation), so its capacity is the whole allocation again.
        if let Some(need) = big_arg.filter(|&n| n > rbuf.len()) {
            // A big argument's buffer doubles with what arrived but never
            // past the request's end, so it ends at its exact size, as
            // Redis's does (plain doubling could hold twice the memory
            // maxmemory-clients counts). Unlike Redis, the announced size
            // is not allocated up front (a header alone costs no memory),
            // but it is counted from the header on (see publish_state).
            let len = rbuf.len();
            if rbuf.capacity() - len < READ_CHUNK.min(need - len) {
                let cap = need.min((2 * len).max(len + READ_CHUNK));
                let mut grown = BytesMut::with_capacity(cap);
                grown.extend_from_slice(&rbuf);
                rbuf = grown;
            }
        } else if rbuf.is_empty() || rbuf.capacity() - rbuf.len() < 1024 {
            rbuf.reserve(READ_CHUNK);
        }
        // `timeout`: close clients idle that long (0 = never).
        // The timer is only armed when a timeout is set: it is not free.
        let idle = srv.hot.idle_timeout.load(Ordering::Relaxed);
        // Another connection made a message queue for this one (an
        // invalidation redirected here): take it over.
        if client.subs.is_none() && info.has_adopt.load(Ordering::Relaxed) {
            command::pubsub::ensure_subs(client);
        }
        let subscribed = client.subscribed();
        let n = if !out.is_empty() {
            // Replies still wait for the socket (see write_out): read
            // what the client sent meanwhile, else go on writing.
            match sock.try_read_buf(&mut rbuf) {
                Ok(n) => {
                    // Messages queued before this read come first, as below.
                    if let Some(subs) = client.subs.as_mut() {
                        let mut r = Reply::new(&mut out, client.proto);
                        while let Some(m) = subs.rx.try_recv() {
                            deliver(&mut r, client.reply_mode, subscribed, &m);
                        }
                    }
                    n
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    crate::persistence::aof::write_through(srv, client.last_write_offset);
                    match write_out(srv, sock, &mut out, &info).await? {
                        Written::All => after_write(client, &mut out, now_ms()),
                        Written::Stalled => {}
                        Written::Killed => return Ok(()),
                    }
                    continue;
                }
                Err(e) => return Err(e),
            }
        } else if let Some(subs) = client.subs.as_mut() {
            // Subscribed: deliver messages while waiting for commands.
            tokio::select! {
                biased;
                r = sock.read_buf(&mut rbuf) => {
                    // Messages published before this read go out before
                    // the replies to what was read, as in Redis.
                    let mut r2 = Reply::new(&mut out, client.proto);
                    while let Some(m) = subs.rx.try_recv() {
                        deliver(&mut r2, client.reply_mode, subscribed, &m);
                    }
                    r?
                }
                _ = info.kill_notify.notified() => {
                    if info.killed.load(Ordering::Relaxed) {
                        return Ok(());
                    }
                    continue;
                }
                _ = info.idle_notify.notified() => {
                    idle_wake(client, &mut rbuf, &mut out);
                    continue;
                }
                m = subs.rx.recv() => {
                    // Let the tasks that are ready run first, so what they
                    // publish goes out in this same write: one write per
                    // burst, as Redis writes a subscriber's output once per
                    // event-loop turn, rather than one per publishing
                    // command (the woken task would otherwise run next).
                    tokio::task::yield_now().await;
                    let mut r = Reply::new(&mut out, client.proto);
                    if let Some(m) = m {
                        deliver(&mut r, client.reply_mode, subscribed, &m);
                    }
                    while let Some(m) = subs.rx.try_recv() {
                        deliver(&mut r, client.reply_mode, subscribed, &m);
                    }
                    client.rb.used(out.len());
                    match write_out(srv, sock, &mut out, &info).await? {
                        Written::All => after_write(client, &mut out, now_ms()),
                        Written::Stalled => {}
                        Written::Killed => return Ok(()),
                    }
                    continue;
                }
            }
        } else if idle > 0 {
            tokio::select! {
                r = sock.read_buf(&mut rbuf) => r?,
                // Also a wake-up to adopt a message queue (see above).
                _ = info.kill_notify.notified() => {
                    if info.killed.load(Ordering::Relaxed) {
                        return Ok(());
                    }
                    continue;
                }
                _ = info.idle_notify.notified() => {
                    idle_wake(client, &mut rbuf, &mut out);
                    continue;
                }
                _ = tokio::time::sleep(std::time::Duration::from_secs(idle)) => {
                    tracing::debug!("Closing idle client {}", info.addr);
                    return Ok(());
                }
            }
        } else {
            tokio::select! {
                r = sock.read_buf(&mut rbuf) => r?,
                // Also a wake-up to adopt a message queue (see above).
                _ = info.kill_notify.notified() => {
                    if info.killed.load(Ordering::Relaxed) {
                        return Ok(());
                    }
                    continue;
                }
                _ = info.idle_notify.notified() => {
                    idle_wake(client, &mut rbuf, &mut out);
                    continue;
                }
            }
        };
        if n == 0 {
            return Ok(());
        }
        if info.killed.load(Ordering::Relaxed) {
            return Ok(());
        }
        Stats::add(&srv.stats.net.input_bytes, n as u64);
        Stats::add(&srv.stats.net.reads, 1);
        if rbuf.len() as u64 > srv.hot.query_buffer_limit.load(Ordering::Relaxed) {
            // Like Redis: a client whose pending request outgrows
            // client-query-buffer-limit is closed before it can use more.
            tracing::warn!(
                "Closing client {} that reached max query buffer length",
                client.info.addr
            );
            return Ok(());
        }
        // A big request counts toward maxmemory-clients before it runs, as
        // in Redis (its client cron alone would miss a request that arrives
        // and runs between two ticks).
        if rbuf.len() >= BIG_QUERY && super::clientmem::enabled() {
            let room = rbuf.capacity().max(big_arg.unwrap_or(0));
            info.qbuf_cap.store(room as u64, Ordering::Relaxed);
            if super::clientmem::account(&info) {
                super::clientmem::evict(srv);
                if info.killed.load(Ordering::Relaxed) {
                    return Ok(());
                }
            }
        }
        let mut pos = 0;
        let mut close = false;
        client.rbuf_cap = rbuf.capacity();
        // One clock read per batch: commands pipelined together share it.
        let mut now = now_ms();
        loop {
            let limits = Limits {
                max_bulk_len: srv.hot.proto_max_bulk_len.load(Ordering::Relaxed),
                authenticated: client.authenticated || !srv.acl.auth_required(),
            };
            let parsed = parse_request(&rbuf[pos..], &limits, &mut ranges, &mut scratch);
            match parsed {
                Ok(None) => break,
                Ok(Some(Parsed::Empty { consumed })) => pos += consumed,
                Ok(Some(Parsed::Multibulk { consumed })) => {
                    client.qbuf_at_cmd = rbuf.len() - pos;
                    let args = Args::new(&rbuf[pos..], &ranges);
                    execute(srv, client, &mut out, &mut actions, &args, now);
                    pos += consumed;
                }
                Ok(Some(Parsed::Inline { consumed })) => {
                    client.qbuf_at_cmd = rbuf.len() - pos;
                    let args = Args::new(&scratch, &ranges);
                    execute(srv, client, &mut out, &mut actions, &args, now);
                    pos += consumed;
                }
                Err(e) => {
                    Reply::new(&mut out, client.proto).error(&format!("ERR {e}"));
                    close = true;
                    break;
                }
            }
            // Replies past the client's hard output buffer limit: the
            // client is closed with none of them, as Redis does (what the
            // commands did stays done).
            if info.outq.over_hard_limit(out.len() as u64) {
                tracing::warn!(
                    "Client id={} addr={} closed for overcoming of output buffer limits.",
                    client.id,
                    info.addr
                );
                return Ok(());
            }
            if !actions.is_empty() {
                // A postponed command queues the actions of its later run.
                let mut pending: std::collections::VecDeque<Action> = actions.drain(..).collect();
                while let Some(act) = pending.pop_front() {
                    match act {
                        Action::Close => close = true,
                        Action::Shutdown(flags) => {
                            // Returns only if the shutdown failed: the
                            // process exits otherwise, without a reply, and
                            // the connection closes with it, as in Redis.
                            super::shutdown::request(srv, flags).await;
                            Reply::new(&mut out, client.proto)
                                .error("ERR Errors trying to SHUTDOWN. Check logs.");
                            now = now_ms();
                        }
                        Action::RewriteAof => {}
                        Action::Sync(req) => {
                            // From here on the connection feeds a replica;
                            // when that ends, so does the connection.
                            crate::persistence::aof::write_through(srv, client.last_write_offset);
                            write_all_out(srv, sock, &mut out, &info).await?;
                            let rest = BytesMut::from(&rbuf[pos..]);
                            flush_counters(srv, client);
                            info.role
                                .store(super::client::role::REPLICA, Ordering::Relaxed);
                            client.is_replica = true;
                            return crate::replication::master::serve(srv, sock, client, rest, req)
                                .await;
                        }
                        Action::Offload(job) => {
                            let done = tokio::task::spawn_blocking(job.0).await;
                            apply_offloaded(srv, client, &mut out, done);
                            now = now_ms();
                        }
                        Action::Debug(run) => {
                            // What came before the EVAL is answered first.
                            crate::persistence::aof::write_through(srv, client.last_write_offset);
                            write_all_out(srv, sock, &mut out, &info).await?;
                            let done = debug_session(sock, run).await?;
                            if done.as_ref().is_ok_and(|d| d.detached) {
                                // A forked session's child has the
                                // connection now: this side lets it go.
                                flush_counters(srv, client);
                                return Ok(());
                            }
                            apply_offloaded(srv, client, &mut out, done);
                            // The session ends the connection once its
                            // reply is out, as in Redis.
                            close = true;
                            now = now_ms();
                        }
                        Action::SlotImport { name } => {
                            // The +OK goes out first; from here on the
                            // connection carries the migration.
                            crate::persistence::aof::write_through(srv, client.last_write_offset);
                            write_all_out(srv, sock, &mut out, &info).await?;
                            let rest = BytesMut::from(&rbuf[pos..]);
                            flush_counters(srv, client);
                            return crate::slotmig::import::serve(srv, sock, client, rest, name)
                                .await;
                        }
                        Action::WaitReplicas {
                            numreplicas,
                            timeout_ms,
                            offset,
                        } => {
                            *info.last_cmd.lock() = client.last_cmd;
                            let mut r = Reply::new(&mut out, client.proto);
                            match wait_replicas(srv, &info, numreplicas, timeout_ms, offset).await {
                                Ok(n) => r.int(n as i64),
                                Err(e) => r.error(e),
                            }
                            now = now_ms();
                        }
                        Action::Rebind {
                            before,
                            changed,
                            name,
                        } => {
                            let mut r = Reply::new(&mut out, client.proto);
                            match super::listen::rebind_addresses(srv).await {
                                Ok(()) => r.ok(),
                                Err(e) => {
                                    tracing::warn!("Failed to bind: {e}");
                                    *srv.config.write() = *before;
                                    super::apply_config_change(srv, &changed);
                                    if let Err(e) = super::listen::rebind_addresses(srv).await {
                                        tracing::warn!(
                                            "Failed to bind the previous addresses again: {e}"
                                        );
                                    }
                                    r.error(&command::server::bind_failed(&name));
                                }
                            }
                            now = now_ms();
                        }
                        Action::Block(b) => {
                            if !wait_blocked(srv, sock, client, &mut out, &mut rbuf, b).await? {
                                return Ok(());
                            }
                            now = now_ms();
                        }
                        Action::WaitScript { args } => {
                            srv.scripts.held.changed().await;
                            now = now_ms();
                            execute(srv, client, &mut out, &mut actions, &args.args(), now);
                            pending.extend(actions.drain(..));
                        }
                        Action::Postpone { args, cmd, held_by } => {
                            let held = (cmd, held_by);
                            let Some(turn) =
                                wait_unpaused(srv, sock, client, &mut out, &mut rbuf, held).await?
                            else {
                                return Ok(());
                            };
                            // Time moved on while we waited.
                            now = now_ms();
                            execute(srv, client, &mut out, &mut actions, &args.args(), now);
                            // Ran: the next held connection may go.
                            drop(turn);
                            pending.extend(actions.drain(..));
                        }
                    }
                }
            }
            if close || client.close_after_reply {
                break;
            }
        }
        rbuf.advance(pos);
        let pending = if rbuf.is_empty() {
            Pending::default()
        } else {
            pending_request(&rbuf)
        };
        big_arg = pending.need;
        client.rb.used(out.len());
        publish_state(client, &rbuf, pos, &pending);
        // As Redis before its next command: past maxmemory-clients (this
        // batch's state, or what it queued for others) closes the largest.
        if super::clientmem::account(&info) {
            super::clientmem::evict(srv);
            if info.killed.load(Ordering::Relaxed) {
                return Ok(());
            }
        }
        info.last_interaction_ms.store(now, Ordering::Relaxed);
        *info.last_cmd.lock() = client.last_cmd;
        flush_counters(srv, client);
        if srv.hot.fsync_always.load(Ordering::Relaxed) && client.last_write_offset > 0 {
            crate::persistence::aof::wait_synced(srv, client.last_write_offset).await;
        }
        if close || client.close_after_reply {
            crate::persistence::aof::write_through(srv, client.last_write_offset);
            // The last replies go out whole before the connection closes.
            write_all_out(srv, sock, &mut out, &info).await?;
            let _ = sock.shutdown().await;
            return Ok(());
        }
        if info.killed.load(Ordering::Relaxed) {
            // Evicted or killed during the batch: none of its replies go.
            return Ok(());
        }
        if !out.is_empty() {
            gather_writes().await;
            // After the gathering: one write covers every connection's
            // effects logged during this round.
            crate::persistence::aof::write_through(srv, client.last_write_offset);
            match write_out(srv, sock, &mut out, &info).await? {
                Written::All => after_write(client, &mut out, now),
                // What piled up counts toward maxmemory-clients now.
                Written::Stalled => {
                    if super::clientmem::account(&info) {
                        super::clientmem::evict(srv);
                    }
                }
                Written::Killed => return Ok(()),
            }
        } else {
            after_write(client, &mut out, now);
        }
        // Argument tables sized by one huge command are not kept around.
        if ranges.capacity() > 4096 {
            ranges = Vec::new();
        }
        if scratch.capacity() > READ_CHUNK {
            scratch = Vec::new();
        }
        // A large buffer left over from a big request shrinks back once a
        // small batch shows the client no longer needs it (Redis resizes on
        // the same cue: a peak well under the buffer's size).
        if rbuf.is_empty() && rbuf.capacity() > 2 * READ_CHUNK && pos < rbuf.capacity() / 4 {
            rbuf = BytesMut::with_capacity(READ_CHUNK);
            info.qbuf_cap.store(READ_CHUNK as u64, Ordering::Relaxed);
        }
    }
}

/// Holds a connection whose command (`held.0`) a CLIENT PAUSE of kind
/// `held.1` or stricter covers, until no such pause is in force and every
/// connection held before it has run its command: held clients resume in
/// order. Returns its place in line, to drop once the command ran, or None
/// when the client goes away or is killed meanwhile. Bytes the client sends
/// meanwhile wait in `rbuf`.
async fn wait_unpaused<'s>(
    srv: &'s Arc<Shared>,
    sock: &mut Stream,
    client: &mut Client,
    out: &mut Vec<u8>,
    rbuf: &mut BytesMut,
    held: (&'static str, u8),
) -> std::io::Result<Option<super::pause::Turn<'s>>> {
    // Subscribed before any check below, so a change in between wakes us.
    let mut changed = srv.pause.subscribe();
    let turn = srv.pause.enqueue(client.id);
    let info = client.info.clone();
    info.blocked.store(true, Ordering::Relaxed);
    // CLIENT LIST shows the waiting command, as Redis does.
    *info.last_cmd.lock() = held.0;
    let result = async {
        // Earlier pipelined replies go out now.
        crate::persistence::aof::write_through(srv, client.last_write_offset);
        write_all_out(srv, sock, out, &info).await?;
        loop {
            if info.killed.load(Ordering::Relaxed) {
                return Ok(false);
            }
            if srv.pause.kind() < held.1 && srv.pause.is_first(client.id) {
                return Ok(true);
            }
            tokio::select! {
                // The sender lives as long as the server.
                _ = changed.changed() => {}
                r = sock.read_buf(rbuf) => if r? == 0 {
                    return Ok(false);
                },
                _ = info.kill_notify.notified() => return Ok(false),
            }
        }
    }
    .await;
    info.blocked.store(false, Ordering::Relaxed);
    match result {
        Ok(true) => Ok(Some(turn)),
        Ok(false) => Ok(None),
        Err(e) => Err(e),
    }
}

/// A blocking command that ended without running again still counts as
/// one call in INFO commandstats, as in Redis: after CLIENT UNBLOCK as a
/// failed call and a latency sample (whichever way it was unblocked), after
/// a timeout as a plain call.
fn count_unblocked(b: &command::Block, by_client_unblock: bool) {
    use crate::server::cmdstats::{self, Outcome};
    let args = b.args.args();
    if let Some(cmd) = command::table::lookup(args.get(0)) {
        if by_client_unblock {
            cmdstats::record(cmd, 0, Outcome::Failed);
        } else {
            cmdstats::record_unsampled(cmd, Outcome::Ok);
        }
    }
}

/// `unblock_mode` values: waiting in a blocking command (CLIENT UNBLOCK may
/// end it), and how CLIENT UNBLOCK ended it.
pub const UNBLOCK_WAITING: u8 = 255;
pub const UNBLOCK_TIMEOUT: u8 = 1;
pub const UNBLOCK_ERROR: u8 = 2;

/// Pending request bytes from which a read checks `maxmemory-clients`.
const BIG_QUERY: usize = 64 * 1024;

/// Blocks a client on keys until one gets elements (it then retries its
/// command), the timeout passes (null reply), or the client goes away
/// (returns false). Bytes the client sends meanwhile wait in `rbuf`.
async fn wait_blocked(
    srv: &Arc<Shared>,
    sock: &mut Stream,
    client: &mut Client,
    out: &mut Vec<u8>,
    rbuf: &mut BytesMut,
    b: command::Block,
) -> std::io::Result<bool> {
    let blocking = srv.ks.blocking.clone();
    let notify = Arc::new(tokio::sync::Notify::new());
    let db = client.db;
    let info = client.info.clone();
    // Created before the client shows as blocked, so a CLIENT UNBLOCK that
    // sees the flag cannot miss this waiter.
    let unblocked = info.unblock_notify.notified();
    tokio::pin!(unblocked);
    info.unblock_mode.store(UNBLOCK_WAITING, Ordering::SeqCst);
    // CLIENT LIST shows the blocking command while it waits.
    *info.last_cmd.lock() = client.last_cmd;
    info.blocked.store(true, Ordering::SeqCst);
    blocking.register(db, &b.keys, client.id, &notify, false);
    blocking.clients.fetch_add(1, Ordering::Relaxed);
    // Anything already produced (earlier pipelined replies) goes out now.
    crate::persistence::aof::write_through(srv, client.last_write_offset);
    write_all_out(srv, sock, out, &info).await?;
    let deadline = (b.timeout_ms > 0)
        .then(|| tokio::time::Instant::now() + std::time::Duration::from_millis(b.timeout_ms));
    let timed = blocking.timed_wait(deadline.is_some());
    let cluster = srv.cluster.get().cloned();
    let result = loop {
        // Enabled before the check below, so a change made in between
        // still wakes us.
        let mut changed = cluster
            .as_ref()
            .map(|cl| Box::pin(cl.route_changed.notified()));
        if let Some(n) = changed.as_mut() {
            n.as_mut().enable();
        }
        let route_changed = async {
            match changed {
                Some(n) => n.await,
                None => std::future::pending().await,
            }
        };
        // The slot moved (or the cluster failed) while we waited: the
        // client is told where to go, as Redis does.
        if let (Some(cl), Some(k)) = (&cluster, b.keys.first()) {
            let slot = crate::keyspace::key_slot(k);
            if let Some(r) = cl.route.load().blocked_redirect(slot) {
                let msg = r.message();
                Reply::new(out, client.proto).error(&msg);
                crate::server::cmdstats::count_error_reply(srv, msg.as_bytes());
                count_unblocked(&b, false);
                break Ok(true);
            }
        }
        let timer = async {
            match deadline {
                Some(d) => tokio::time::sleep_until(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = &mut unblocked => {
                let mut r = Reply::new(out, client.proto);
                let error = info.unblock_mode.load(Ordering::SeqCst) == UNBLOCK_ERROR;
                if error {
                    r.error("UNBLOCKED client unblocked via CLIENT UNBLOCK");
                    crate::server::cmdstats::count_error_reply(srv, b"-UNBLOCKED");
                } else if b.null_array {
                    r.null_array();
                } else {
                    r.null();
                }
                count_unblocked(&b, true);
                break Ok(true);
            }
            _ = notify.notified() => {
                // Woken by a script that still runs and holds the key's
                // slot: served once it ends, without stalling this thread.
                while crate::command::scripting::held_by_script(srv, db, &b.args.args()) {
                    srv.scripts.held.changed().await;
                }
                client.block_retry = true;
                let mut actions = Vec::new();
                let before = out.len();
                execute(srv, client, out, &mut actions, &b.args.args(), now_ms());
                client.block_retry = false;
                if out.len() > before {
                    break Ok(true);
                }
                // Someone else got there first: wait again, first in line.
                blocking.unregister(db, &b.keys, client.id);
                blocking.register(db, &b.keys, client.id, &notify, true);
            }
            _ = timer => {
                let mut r = Reply::new(out, client.proto);
                if b.null_array { r.null_array() } else { r.null() }
                count_unblocked(&b, false);
                break Ok(true);
            }
            _ = route_changed => {}
            r = sock.read_buf(rbuf) => {
                if r? == 0 {
                    break Ok(false);
                }
            }
            // Not killed: a wake-up to adopt a message queue, done later.
            _ = info.kill_notify.notified() => {
                if info.killed.load(Ordering::Relaxed) {
                    break Ok(false);
                }
            }
        }
    };
    info.blocked.store(false, Ordering::SeqCst);
    info.unblock_mode.store(0, Ordering::SeqCst);
    blocking.unregister(db, &b.keys, client.id);
    blocking.clients.fetch_sub(1, Ordering::Relaxed);
    drop(timed);
    if matches!(result, Ok(true)) {
        // Elements may remain for whoever blocked after us (a wake-up the
        // command gave while we were still first in line came back to us).
        for k in &b.keys {
            blocking.signal(db, k);
        }
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protected_mode_admits_only_loopback_without_password() {
        let tcp = |a: &str| Addr::Tcp(a.parse().unwrap());
        let (local, local6) = (tcp("127.0.0.1:5000"), tcp("[::1]:5000"));
        let (remote, other_loopback) = (tcp("10.1.2.3:5000"), tcp("127.0.0.2:5000"));
        assert!(!protected_denied(true, false, &Addr::Unix("/tmp/s".into())));
        assert!(protected_denied(true, false, &other_loopback));
        assert!(!protected_denied(true, false, &local));
        assert!(!protected_denied(true, false, &local6));
        assert!(protected_denied(true, false, &remote));
        assert!(!protected_denied(true, true, &remote));
        assert!(!protected_denied(false, false, &remote));
    }
}
