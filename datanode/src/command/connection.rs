//! Connection commands: PING, ECHO, SELECT, AUTH, HELLO, RESET, QUIT, CLIENT.

use std::sync::atomic::Ordering;

use super::{eq_ic, Action, Args, Ctx, SYNTAX};
use crate::resp::{parse_i64, Proto};
use crate::server::client::ReplyMode;
use crate::server::clientmem;

/// Version we report to clients and tools.
pub const REDIS_VERSION: &str = "7.0.15";

pub fn ping(ctx: &mut Ctx, a: &Args) {
    if ctx.client.proto == Proto::Resp2 && ctx.client.subscribed() && a.len() <= 2 {
        // In a subscribed RESP2 context PING answers as a message would.
        ctx.r.array(2);
        ctx.r.bulk(b"pong");
        ctx.r.bulk(if a.len() == 2 { a.get(1) } else { b"" });
        return;
    }
    match a.len() {
        1 => ctx.r.simple("PONG"),
        2 => ctx.r.bulk(a.get(1)),
        _ => ctx
            .r
            .error("ERR wrong number of arguments for 'ping' command"),
    }
}

pub fn echo(ctx: &mut Ctx, a: &Args) {
    ctx.r.bulk(a.get(1));
}

pub fn select(ctx: &mut Ctx, a: &Args) {
    let Some(n) = parse_i64(a.get(1)).and_then(|n| i32::try_from(n).ok()) else {
        return ctx.r.error("ERR value is not an integer or out of range");
    };
    if ctx.srv.cluster_enabled() && n != 0 {
        return ctx.r.error("ERR SELECT is not allowed in cluster mode");
    }
    if n < 0 || n as usize >= ctx.srv.ks.count() {
        return ctx.r.error("ERR DB index is out of range");
    }
    ctx.client.db = n as usize;
    ctx.client.info.db.store(n as usize, Ordering::Relaxed);
    ctx.locks.db = ctx.srv.ks.db(n as usize);
    ctx.r.ok();
}

pub fn quit(ctx: &mut Ctx, _a: &Args) {
    ctx.r.ok();
    ctx.actions.push(Action::Close);
}

pub fn reset(ctx: &mut Ctx, _a: &Args) {
    ctx.client.multi = None;
    let info = ctx.client.info.clone();
    crate::server::tracking::disable(ctx.srv, &info, &mut ctx.client.trk_prefixes);
    ctx.client.caching = false;
    super::server::stop_monitor(ctx);
    super::pubsub::drop_all(ctx);
    super::txn::unwatch_all(ctx);
    ctx.client.db = 0;
    ctx.client.info.db.store(0, Ordering::Relaxed);
    ctx.locks.db = ctx.srv.ks.db(0);
    ctx.client.proto = Proto::Resp2;
    ctx.client.info.resp.store(2, Ordering::Relaxed);
    ctx.r.proto = Proto::Resp2;
    ctx.client.reply_mode = ReplyMode::On;
    ctx.client.readonly = false;
    ctx.client.asking = false;
    *ctx.client.info.name.lock() = None;
    // Back to the default user, authenticated only if it needs no
    // password.
    if ctx.client.user.is_some() {
        let d = ctx.srv.acl.default_user();
        super::acl::set_user(ctx, d);
    }
    ctx.client.authenticated = !ctx.srv.acl.auth_required();
    ctx.r.simple("RESET");
}

const WRONGPASS: &str = "WRONGPASS invalid username-password pair or user is disabled.";

pub fn auth(ctx: &mut Ctx, a: &Args) {
    if a.len() > 3 {
        return ctx.r.error(SYNTAX);
    }
    if a.len() == 2 && ctx.srv.acl.default_user().nopass() {
        return ctx.r.error("ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?");
    }
    let (user, pass) = if a.len() == 3 {
        (a.get(1), a.get(2))
    } else {
        (b"default".as_slice(), a.get(1))
    };
    if super::acl::authenticate(ctx, user, pass, a) {
        ctx.r.ok();
    } else {
        ctx.r.error(WRONGPASS);
    }
}

pub fn hello(ctx: &mut Ctx, a: &Args) {
    let mut proto = ctx.client.proto;
    let mut i = 1;
    if a.len() >= 2 {
        let v = parse_i64(a.get(1));
        match v {
            None => {
                return ctx
                    .r
                    .error("ERR Protocol version is not an integer or out of range")
            }
            Some(2) => proto = Proto::Resp2,
            Some(3) => proto = Proto::Resp3,
            Some(_) => return ctx.r.error("NOPROTO unsupported protocol version"),
        }
        i = 2;
    }
    let mut setname: Option<&[u8]> = None;
    let mut auth: Option<(&[u8], &[u8])> = None;
    while i < a.len() {
        let more = a.len() - i - 1;
        if eq_ic(a.get(i), "AUTH") && more >= 2 {
            auth = Some((a.get(i + 1), a.get(i + 2)));
            i += 3;
        } else if eq_ic(a.get(i), "SETNAME") && more >= 1 {
            setname = Some(a.get(i + 1));
            i += 2;
        } else {
            return ctx.r.error(&format!(
                "ERR Syntax error in HELLO option '{}'",
                String::from_utf8_lossy(a.get(i))
            ));
        }
    }
    if let Some((u, p)) = auth {
        if !super::acl::authenticate(ctx, u, p, a) {
            return ctx.r.error(WRONGPASS);
        }
    }
    if !ctx.client.authenticated && ctx.srv.acl.auth_required() {
        return ctx.r.error("NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time");
    }
    if let Some(n) = setname {
        if !valid_name(n) {
            return ctx.r.error(BAD_NAME);
        }
        *ctx.client.info.name.lock() = (!n.is_empty()).then(|| n.to_vec());
    }
    ctx.client.proto = proto;
    ctx.r.proto = proto;
    ctx.client
        .info
        .resp
        .store(if proto == Proto::Resp3 { 3 } else { 2 }, Ordering::Relaxed);
    let r = &mut ctx.r;
    r.map(7);
    r.bulk(b"server");
    r.bulk(b"redis");
    r.bulk(b"version");
    r.bulk(REDIS_VERSION.as_bytes());
    r.bulk(b"proto");
    r.int(if proto == Proto::Resp3 { 3 } else { 2 });
    r.bulk(b"id");
    r.int(ctx.client.id as i64);
    r.bulk(b"mode");
    r.bulk(if ctx.srv.cluster_enabled() {
        b"cluster".as_slice()
    } else {
        b"standalone"
    });
    r.bulk(b"role");
    r.bulk(b"master");
    r.bulk(b"modules");
    r.array(0);
}

pub fn readonly(ctx: &mut Ctx, _a: &Args) {
    if !ctx.srv.cluster_enabled() {
        return ctx
            .r
            .error("ERR This instance has cluster support disabled");
    }
    ctx.client.readonly = true;
    ctx.r.ok();
}

pub fn readwrite(ctx: &mut Ctx, _a: &Args) {
    if !ctx.srv.cluster_enabled() {
        return ctx
            .r
            .error("ERR This instance has cluster support disabled");
    }
    ctx.client.readonly = false;
    ctx.r.ok();
}

pub fn container_without_sub(ctx: &mut Ctx, a: &Args) {
    // Reached only when the container is called with too few arguments,
    // which arity already rejects; answer like Redis does for that case.
    ctx.r.error(&format!(
        "ERR wrong number of arguments for '{}' command",
        String::from_utf8_lossy(a.get(0)).to_lowercase()
    ));
}

/// Writes a HELP reply: a title line, the given lines, and HELP's own entry.
pub fn help_reply(ctx: &mut Ctx, cmd: &str, lines: &[&str]) {
    ctx.r.array(lines.len() + 3);
    ctx.r.simple(&format!(
        "{cmd} <subcommand> [<arg> [value] [opt] ...]. Subcommands are:"
    ));
    for l in lines {
        ctx.r.simple(l);
    }
    ctx.r.simple("HELP");
    ctx.r.simple("    Prints this help.");
}

const BAD_NAME: &str = "ERR Client names cannot contain spaces, newlines or special characters.";

fn valid_name(n: &[u8]) -> bool {
    n.iter().all(|&c| (b'!'..=b'~').contains(&c))
}

pub fn client_id(ctx: &mut Ctx, _a: &Args) {
    ctx.r.int(ctx.client.id as i64);
}

pub fn client_setname(ctx: &mut Ctx, a: &Args) {
    let n = a.get(2);
    if !valid_name(n) {
        return ctx.r.error(BAD_NAME);
    }
    *ctx.client.info.name.lock() = (!n.is_empty()).then(|| n.to_vec());
    ctx.r.ok();
}

pub fn client_getname(ctx: &mut Ctx, _a: &Args) {
    let n = ctx.client.info.name.lock().clone();
    match n {
        Some(n) => ctx.r.bulk(&n),
        None => ctx.r.null(),
    }
}

pub fn client_no_evict(ctx: &mut Ctx, a: &Args) {
    let on = if eq_ic(a.get(2), "ON") {
        true
    } else if eq_ic(a.get(2), "OFF") {
        false
    } else {
        return ctx.r.error(SYNTAX);
    };
    ctx.client.info.no_evict.store(on, Ordering::Relaxed);
    ctx.r.ok();
}

/// CLIENT PAUSE timeout [WRITE|ALL]: the mode is checked before the
/// timeout, as Redis does; a bad mode is not a plain syntax error.
pub fn client_pause(ctx: &mut Ctx, a: &Args) {
    use crate::server::pause;
    if a.len() > 4 {
        ctx.r.error(&format!(
            "ERR unknown subcommand or wrong number of arguments for '{}'. Try CLIENT HELP.",
            String::from_utf8_lossy(a.get(1))
        ));
        return;
    }
    let kind = if a.len() == 4 {
        if eq_ic(a.get(3), "WRITE") {
            pause::WRITE
        } else if eq_ic(a.get(3), "ALL") {
            pause::ALL
        } else {
            ctx.r.error("ERR CLIENT PAUSE mode must be WRITE or ALL");
            return;
        }
    } else {
        pause::ALL
    };
    let Some(ms) = parse_i64(a.get(2)) else {
        ctx.r.error("ERR timeout is not an integer or out of range");
        return;
    };
    if ms < 0 {
        ctx.r.error("ERR timeout is negative");
        return;
    }
    // Redis 7.0 adds the clock without an overflow check; a wrapped end is
    // in the past, so such a pause ends at once, as there.
    let end = if ms > 0 {
        ms.wrapping_add(crate::keyspace::now_ms())
    } else {
        0
    };
    ctx.srv.pause.start(ctx.srv, kind, end);
    ctx.r.ok();
}

pub fn client_unpause(ctx: &mut Ctx, _a: &Args) {
    ctx.srv.pause.stop(ctx.srv);
    ctx.r.ok();
}

pub fn client_reply(ctx: &mut Ctx, a: &Args) {
    let m = a.get(2);
    if eq_ic(m, "ON") {
        ctx.client.reply_mode = ReplyMode::On;
        ctx.r.ok();
    } else if eq_ic(m, "OFF") {
        ctx.client.reply_mode = ReplyMode::Off;
    } else if eq_ic(m, "SKIP") {
        ctx.client.reply_mode = ReplyMode::SkipNext;
    } else {
        ctx.r.error(SYNTAX);
    }
}

/// CLIENT TRACKING ON|OFF [REDIRECT id] [PREFIX p ...] [BCAST] [OPTIN]
/// [OPTOUT] [NOLOOP], with Redis's checks in Redis's order.
pub fn client_tracking(ctx: &mut Ctx, a: &Args) {
    use crate::server::tracking::{self, flag};
    let mut redirect: u64 = 0;
    let mut opts = 0u32;
    let mut prefixes: Vec<bytes::Bytes> = Vec::new();
    let mut j = 3;
    while j < a.len() {
        let more = j + 1 < a.len();
        let o = a.get(j);
        if eq_ic(o, "REDIRECT") && more {
            j += 1;
            if redirect != 0 {
                return ctx
                    .r
                    .error("ERR A client can only redirect to a single other client");
            }
            let Some(id) = super::int_arg(ctx, a.get(j)) else {
                return;
            };
            // The target must exist now (it may go away later).
            let exists = id > 0 && ctx.srv.clients.lock().contains_key(&(id as u64));
            if !exists {
                return ctx
                    .r
                    .error("ERR The client ID you want redirect to does not exist");
            }
            redirect = id as u64;
        } else if eq_ic(o, "BCAST") {
            opts |= flag::BCAST;
        } else if eq_ic(o, "OPTIN") {
            opts |= flag::OPTIN;
        } else if eq_ic(o, "OPTOUT") {
            opts |= flag::OPTOUT;
        } else if eq_ic(o, "NOLOOP") {
            opts |= flag::NOLOOP;
        } else if eq_ic(o, "PREFIX") && more {
            j += 1;
            prefixes.push(bytes::Bytes::copy_from_slice(a.get(j)));
        } else {
            return ctx.r.error(SYNTAX);
        }
        j += 1;
    }
    let on = a.get(2);
    if eq_ic(on, "OFF") {
        let info = ctx.client.info.clone();
        tracking::disable(ctx.srv, &info, &mut ctx.client.trk_prefixes);
        ctx.client.caching = false;
        return ctx.r.ok();
    }
    if !eq_ic(on, "ON") {
        return ctx.r.error(SYNTAX);
    }
    let cur = ctx.client.info.trk.load(Ordering::Relaxed);
    if opts & flag::BCAST == 0 && !prefixes.is_empty() {
        return ctx
            .r
            .error("ERR PREFIX option requires BCAST mode to be enabled");
    }
    if cur & flag::ON != 0 && (cur & flag::BCAST != 0) != (opts & flag::BCAST != 0) {
        return ctx.r.error("ERR You can't switch BCAST mode on/off before disabling tracking for this client, and then re-enabling it with a different mode.");
    }
    if opts & flag::BCAST != 0 && opts & (flag::OPTIN | flag::OPTOUT) != 0 {
        return ctx
            .r
            .error("ERR OPTIN and OPTOUT are not compatible with BCAST");
    }
    if opts & flag::OPTIN != 0 && opts & flag::OPTOUT != 0 {
        return ctx
            .r
            .error("ERR You can't specify both OPTIN mode and OPTOUT mode");
    }
    if (opts & flag::OPTIN != 0 && cur & flag::OPTOUT != 0)
        || (opts & flag::OPTOUT != 0 && cur & flag::OPTIN != 0)
    {
        return ctx.r.error("ERR You can't switch OPTIN/OPTOUT mode before disabling tracking for this client, and then re-enabling it with a different mode.");
    }
    if opts & flag::BCAST != 0 {
        if let Some(e) = prefix_collision(&ctx.client.trk_prefixes, &prefixes) {
            return ctx.r.error(&e);
        }
    }
    // Invalidations for this client may come through its message queue.
    super::pubsub::subs(ctx);
    let info = ctx.client.info.clone();
    let mode = tracking::Mode {
        flags: opts,
        redirect,
        prefixes,
    };
    tracking::enable(ctx.srv, &info, mode, &mut ctx.client.trk_prefixes);
    ctx.r.ok();
}

/// Redis refuses prefixes of one client where one starts the other (an
/// equal one included).
fn prefix_collision(existing: &[bytes::Bytes], new: &[bytes::Bytes]) -> Option<String> {
    let overlap = |x: &[u8], y: &[u8]| x.starts_with(y) || y.starts_with(x);
    let show = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    for (i, p) in new.iter().enumerate() {
        if let Some(e) = existing.iter().find(|e| overlap(e, p)) {
            return Some(format!(
                "ERR Prefix '{}' overlaps with an existing prefix '{}'. Prefixes for a single client must not overlap.",
                show(p),
                show(e)
            ));
        }
        for (k, q) in new.iter().enumerate() {
            if i != k && overlap(p, q) {
                return Some(format!(
                    "ERR Prefix '{}' overlaps with another provided prefix '{}'. Prefixes for a single client must not overlap.",
                    show(p),
                    show(q)
                ));
            }
        }
    }
    None
}

/// CLIENT CACHING YES|NO: whether the next command's keys are tracked, in
/// OPTIN / OPTOUT mode.
pub fn client_caching(ctx: &mut Ctx, a: &Args) {
    use crate::server::tracking::flag;
    let f = ctx.client.info.trk.load(Ordering::Relaxed);
    if f & flag::ON == 0 {
        return ctx.r.error("ERR CLIENT CACHING can be called only when the client is in tracking mode with OPTIN or OPTOUT mode enabled");
    }
    let o = a.get(2);
    if eq_ic(o, "YES") {
        if f & flag::OPTIN == 0 {
            return ctx.r.error(
                "ERR CLIENT CACHING YES is only valid when tracking is enabled in OPTIN mode.",
            );
        }
    } else if eq_ic(o, "NO") {
        if f & flag::OPTOUT == 0 {
            return ctx.r.error(
                "ERR CLIENT CACHING NO is only valid when tracking is enabled in OPTOUT mode.",
            );
        }
    } else {
        return ctx.r.error(SYNTAX);
    }
    ctx.client.caching = true;
    ctx.r.ok();
}

/// The redirect target: -1 when tracking is off, 0 without a redirect.
fn tracking_redirect(c: &crate::server::client::ClientInfo) -> i64 {
    if c.trk.load(Ordering::Relaxed) & crate::server::tracking::flag::ON == 0 {
        -1
    } else {
        c.trk_redir.load(Ordering::Relaxed) as i64
    }
}

pub fn client_getredir(ctx: &mut Ctx, _a: &Args) {
    ctx.r.int(tracking_redirect(&ctx.client.info));
}

pub fn client_trackinginfo(ctx: &mut Ctx, _a: &Args) {
    use crate::server::tracking::flag;
    let f = ctx.client.info.trk.load(Ordering::Relaxed);
    let mut flags: Vec<&str> = Vec::new();
    if f & flag::ON == 0 {
        flags.push("off");
    } else {
        flags.push("on");
        if f & flag::BCAST != 0 {
            flags.push("bcast");
        }
        if f & flag::OPTIN != 0 {
            flags.push("optin");
            if ctx.client.caching {
                flags.push("caching-yes");
            }
        } else if f & flag::OPTOUT != 0 {
            flags.push("optout");
            if ctx.client.caching {
                flags.push("caching-no");
            }
        }
        if f & flag::NOLOOP != 0 {
            flags.push("noloop");
        }
        if f & flag::BROKEN != 0 {
            flags.push("broken_redirect");
        }
    }
    ctx.r.map(3);
    ctx.r.bulk(b"flags");
    ctx.r.set(flags.len());
    for x in flags {
        ctx.r.bulk(x.as_bytes());
    }
    ctx.r.bulk(b"redirect");
    ctx.r.int(tracking_redirect(&ctx.client.info));
    ctx.r.bulk(b"prefixes");
    let prefixes = ctx.client.trk_prefixes.clone();
    ctx.r.array(prefixes.len());
    for p in prefixes {
        ctx.r.bulk(&p);
    }
}

/// `client`'s CLIENT LIST line outside a command (a log line about it).
pub(crate) fn client_line_of(
    srv: &std::sync::Arc<crate::server::Shared>,
    client: &mut crate::server::client::Client,
    args: &Args,
) -> String {
    let mut out = Vec::new();
    let mut actions = Vec::new();
    let info = client.info.clone();
    let proto = client.proto;
    let ctx = Ctx {
        srv,
        client,
        r: crate::resp::Reply::new(&mut out, proto),
        locks: super::Locks::new(&srv.ks, srv.ks.db(0), crate::keyspace::now_ms()),
        actions: &mut actions,
    };
    client_line(&ctx, &info, args)
}

/// One CLIENT LIST line, with Redis 7.0's fields. For the calling
/// connection the figures are live (`args` is the command being run).
pub(crate) fn client_line(ctx: &Ctx, c: &crate::server::client::ClientInfo, args: &Args) -> String {
    let now = crate::keyspace::now_ms();
    let name = c.name.lock().clone().unwrap_or_default();
    let me = c.id == ctx.client.id;
    let r = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
    let (sub, psub, ssub, multi, qbuf, qcap, rbs, argv_mem, obl, omem, cmd, multi_mem, state_mem) =
        if me {
            let s = ctx.client.subs.as_ref();
            let cl = &*ctx.client;
            let multi_mem = clientmem::multi_memory(
                cl.multi.as_ref().map_or(0, |m| m.mem),
                cl.multi.as_ref().map_or(0, |m| m.queue.len()),
                cl.watched.len(),
            );
            let argv: usize = args.iter().map(|x| x.len()).sum();
            (
                s.map_or(0, |s| s.channels.len() as u64),
                s.map_or(0, |s| s.patterns.len() as u64),
                s.map_or(0, |s| s.shard_channels.len() as u64),
                ctx.client
                    .multi
                    .as_ref()
                    .map_or(-1, |m| m.queue.len() as i64),
                ctx.client.qbuf_at_cmd as u64,
                ctx.client.rbuf_cap as u64,
                ctx.client.rb.size as u64,
                argv as u64,
                ctx.r.out.len() as u64,
                c.outq.bytes.load(Ordering::Relaxed),
                current_cmd_name(args),
                multi_mem,
                clientmem::state_memory(cl, multi_mem),
            )
        } else {
            (
                r(&c.sub[0]),
                r(&c.sub[1]),
                r(&c.sub[2]),
                c.multi_len.load(Ordering::Relaxed),
                r(&c.qbuf),
                r(&c.qbuf_cap),
                r(&c.rbs),
                0,
                0,
                c.output_bytes(),
                c.last_cmd.lock().to_string(),
                r(&c.multi_mem),
                r(&c.state_mem),
            )
        };
    let mut flags = String::new();
    match c.role.load(Ordering::Relaxed) {
        crate::server::client::role::REPLICA => flags.push('S'),
        crate::server::client::role::MASTER => flags.push('M'),
        _ => {}
    }
    if c.is_monitor.load(Ordering::Relaxed) {
        flags.push('O');
    }
    if sub + psub + ssub > 0 {
        flags.push('P');
    }
    if multi >= 0 {
        flags.push('x');
    }
    if c.blocked.load(Ordering::Relaxed) {
        flags.push('b');
    }
    let trk = c.trk.load(Ordering::Relaxed);
    if trk & crate::server::tracking::flag::ON != 0 {
        flags.push('t');
    }
    if trk & crate::server::tracking::flag::BROKEN != 0 {
        flags.push('R');
    }
    if trk & crate::server::tracking::flag::BCAST != 0 {
        flags.push('B');
    }
    if me && ctx.client.close_after_reply {
        flags.push('c');
    }
    if c.addr.is_unix() {
        flags.push('U');
    }
    if me && ctx.client.readonly {
        flags.push('r');
    }
    if c.no_evict.load(Ordering::Relaxed) {
        flags.push('e');
    }
    if flags.is_empty() {
        flags.push('N');
    }
    let rbp = r(&c.rbp).max(obl);
    format!(
        "id={} addr={} laddr={} fd={} name={} age={} idle={} flags={flags} db={} sub={sub} psub={psub} ssub={ssub} multi={multi} qbuf={qbuf} qbuf-free={} argv-mem={argv_mem} multi-mem={multi_mem} rbs={rbs} rbp={rbp} obl={obl} oll=0 omem={omem} tot-mem={} events={} cmd={cmd} user={} redir={} resp={}\n",
        c.id,
        c.addr,
        c.laddr,
        c.fd.load(Ordering::Relaxed),
        String::from_utf8_lossy(&name),
        (now - c.created_ms) / 1000,
        (now - c.last_interaction_ms.load(Ordering::Relaxed)).max(0) / 1000,
        c.db.load(Ordering::Relaxed),
        qcap.saturating_sub(qbuf),
        qcap + rbs + argv_mem + omem + state_mem + clientmem::CLIENT_STRUCT,
        if omem > 0 { "rw" } else { "r" },
        String::from_utf8_lossy(&c.user.lock()),
        tracking_redirect(c),
        c.resp.load(Ordering::Relaxed),
    )
}

/// Redis's client types, as CLIENT LIST/KILL TYPE name them.
#[derive(Clone, Copy, PartialEq, Eq)]
enum ClientType {
    Normal,
    Replica,
    Master,
    PubSub,
}

impl ClientType {
    fn parse(t: &[u8]) -> Option<ClientType> {
        if eq_ic(t, "normal") {
            Some(ClientType::Normal)
        } else if eq_ic(t, "replica") || eq_ic(t, "slave") {
            Some(ClientType::Replica)
        } else if eq_ic(t, "master") {
            Some(ClientType::Master)
        } else if eq_ic(t, "pubsub") {
            Some(ClientType::PubSub)
        } else {
            None
        }
    }
}

fn client_type(ctx: &Ctx, c: &crate::server::client::ClientInfo) -> ClientType {
    use crate::server::client::role;
    match c.role.load(Ordering::Relaxed) {
        role::MASTER => ClientType::Master,
        role::REPLICA => ClientType::Replica,
        _ if is_pubsub(ctx, c) => ClientType::PubSub,
        _ => ClientType::Normal,
    }
}

fn is_pubsub(ctx: &Ctx, c: &crate::server::client::ClientInfo) -> bool {
    if c.id == ctx.client.id {
        ctx.client
            .subs
            .as_ref()
            .is_some_and(|s| s.count() + s.shard_channels.len() > 0)
    } else {
        c.sub.iter().any(|n| n.load(Ordering::Relaxed) > 0)
    }
}

/// `client|list`-style name of the command being run.
fn current_cmd_name(args: &Args) -> String {
    match super::table::lookup(args.get(0)) {
        Some(cmd) if !cmd.subs.is_empty() && args.len() >= 2 => {
            match super::table::lookup_sub(cmd, args.get(1)) {
                Some(sc) => sc.name.to_string(),
                None => cmd.name.to_string(),
            }
        }
        Some(cmd) => cmd.name.to_string(),
        None => "NULL".to_string(),
    }
}

pub fn client_list(ctx: &mut Ctx, a: &Args) {
    let mut ids: Option<Vec<u64>> = None;
    let mut ctype: Option<ClientType> = None;
    let mut i = 2;
    while i < a.len() {
        if eq_ic(a.get(i), "TYPE") && i + 1 < a.len() {
            let t = a.get(i + 1);
            let Some(parsed) = ClientType::parse(t) else {
                return ctx.r.error(&format!(
                    "ERR Unknown client type '{}'",
                    String::from_utf8_lossy(t)
                ));
            };
            ctype = Some(parsed);
            i += 2;
        } else if eq_ic(a.get(i), "ID") && i + 1 < a.len() {
            let mut v = Vec::new();
            for x in a.iter().skip(i + 1) {
                match parse_i64(x) {
                    Some(n) if n > 0 => v.push(n as u64),
                    _ => return ctx.r.error("ERR Invalid client ID"),
                }
            }
            ids = Some(v);
            break;
        } else {
            return ctx.r.error(SYNTAX);
        }
    }
    let mut clients: Vec<_> = ctx.srv.clients.lock().values().cloned().collect();
    clients.sort_by_key(|c| c.id);
    let mut out = String::new();
    for c in clients {
        // A killed connection is gone for Redis (it frees it at once)
        // even while its task is still winding down here.
        if (c.killed.load(Ordering::Relaxed) && c.id != ctx.client.id)
            || ids.as_ref().is_some_and(|v| !v.contains(&c.id))
            || ctype.is_some_and(|t| t != client_type(ctx, &c))
        {
            continue;
        }
        out.push_str(&client_line(ctx, &c, a));
    }
    ctx.r.verbatim(out.as_bytes());
}

pub fn client_info(ctx: &mut Ctx, a: &Args) {
    let me = ctx.client.info.clone();
    let line = client_line(ctx, &me, a);
    ctx.r.verbatim(line.as_bytes());
}

pub fn client_kill(ctx: &mut Ctx, a: &Args) {
    let clients: Vec<_> = ctx.srv.clients.lock().values().cloned().collect();
    if a.len() == 3 {
        // Old form: CLIENT KILL ip:port
        let addr = String::from_utf8_lossy(a.get(2)).to_string();
        match clients.iter().find(|c| c.addr.to_string() == addr) {
            Some(c) => {
                if c.id == ctx.client.id {
                    ctx.client.close_after_reply = true;
                } else {
                    c.kill();
                }
                ctx.r.ok();
            }
            None => ctx.r.error("ERR No such client"),
        }
        return;
    }
    let mut id = None;
    let mut addr = None;
    let mut laddr = None;
    let mut skipme = true;
    let mut ctype: Option<ClientType> = None;
    let mut user: Option<Vec<u8>> = None;
    let mut i = 2;
    while i + 1 < a.len() {
        let (k, v) = (a.get(i), a.get(i + 1));
        if eq_ic(k, "ID") {
            match parse_i64(v) {
                Some(n) if n > 0 => id = Some(n as u64),
                _ => return ctx.r.error("ERR client-id should be greater than 0"),
            }
        } else if eq_ic(k, "ADDR") {
            addr = Some(String::from_utf8_lossy(v).to_string());
        } else if eq_ic(k, "LADDR") {
            laddr = Some(String::from_utf8_lossy(v).to_string());
        } else if eq_ic(k, "SKIPME") {
            if eq_ic(v, "yes") {
                skipme = true;
            } else if eq_ic(v, "no") {
                skipme = false;
            } else {
                return ctx.r.error(SYNTAX);
            }
        } else if eq_ic(k, "TYPE") {
            // A MONITOR client counts as normal, as in Redis.
            let Some(t) = ClientType::parse(v) else {
                return ctx.r.error(&format!(
                    "ERR Unknown client type '{}'",
                    String::from_utf8_lossy(v)
                ));
            };
            ctype = Some(t);
        } else if eq_ic(k, "USER") {
            if ctx.srv.acl.user(v).is_none() {
                return ctx.r.error(&format!(
                    "ERR No such user '{}'",
                    String::from_utf8_lossy(v)
                ));
            }
            user = Some(v.to_vec());
        } else {
            return ctx.r.error(SYNTAX);
        }
        i += 2;
    }
    if i != a.len() {
        return ctx.r.error(SYNTAX);
    }
    let mut n = 0;
    for c in clients {
        if user.as_ref().is_some_and(|u| *u != *c.user.lock())
            || id.is_some_and(|x| x != c.id)
            || addr.as_ref().is_some_and(|x| *x != c.addr.to_string())
            || laddr.as_ref().is_some_and(|x| *x != c.laddr.to_string())
            || (skipme && c.id == ctx.client.id)
            || ctype.is_some_and(|t| t != client_type(ctx, &c))
        {
            continue;
        }
        if c.id == ctx.client.id {
            // Closed once this reply is written (killing it now would cut
            // the reply off), as Redis closes the current client.
            ctx.client.close_after_reply = true;
        } else {
            c.kill();
        }
        n += 1;
    }
    ctx.r.int(n);
}

pub fn client_unblock(ctx: &mut Ctx, a: &Args) {
    if a.len() > 4 {
        return ctx.r.error(&format!(
            "ERR unknown subcommand or wrong number of arguments for '{}'. Try CLIENT HELP.",
            String::from_utf8_lossy(a.get(1))
        ));
    }
    let Some(id) = parse_i64(a.get(2)) else {
        return ctx.r.error(super::NOT_INT);
    };
    use crate::server::conn::{UNBLOCK_TIMEOUT, UNBLOCK_WAITING};
    let mode = if a.len() == 4 {
        if eq_ic(a.get(3), "TIMEOUT") {
            UNBLOCK_TIMEOUT
        } else if eq_ic(a.get(3), "ERROR") {
            crate::server::conn::UNBLOCK_ERROR
        } else {
            return ctx
                .r
                .error("ERR CLIENT UNBLOCK reason should be TIMEOUT or ERROR");
        }
    } else {
        UNBLOCK_TIMEOUT
    };
    let target = ctx.srv.clients.lock().get(&(id as u64)).cloned();
    // Only a client waiting in a blocking command can be unblocked (not
    // one held by CLIENT PAUSE).
    let waiting = target.as_ref().is_some_and(|c| {
        c.unblock_mode
            .compare_exchange(UNBLOCK_WAITING, mode, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
    });
    if let Some(c) = target.filter(|_| waiting) {
        c.unblock_notify.notify_waiters();
        // Redis sends the target its error while this command runs, so
        // this call counts as failed in INFO commandstats.
        if mode == crate::server::conn::UNBLOCK_ERROR {
            ctx.client.count_as_failed = true;
        }
    }
    ctx.r.int(waiting as i64);
}

pub fn client_help(ctx: &mut Ctx, _a: &Args) {
    help_reply(
        ctx,
        "CLIENT",
        &[
            "CACHING (YES|NO)",
            "    Enable/disable tracking of the keys for next command in OPTIN/OPTOUT modes.",
            "GETREDIR",
            "    Return the client ID we are redirecting to when tracking is enabled.",
            "GETNAME",
            "    Return this connection's name.",
            "ID",
            "    Return this connection's id.",
            "INFO",
            "    Describe this connection, in CLIENT LIST's format.",
            "KILL <ip:port> | <option> <value> [<option> <value> ...]",
            "    Close matching connections (options: ID, ADDR, LADDR, TYPE, USER, SKIPME).",
            "LIST [TYPE <type>] [ID <id> [<id> ...]]",
            "    Describe the connected clients.",
            "NO-EVICT (ON|OFF)",
            "    Accepted for compatibility.",
            "UNBLOCK <clientid> [TIMEOUT|ERROR]",
            "    Unblock the specified blocked client.",
            "PAUSE <timeout> [WRITE|ALL]",
            "    Hold back every command, or only writes, for <timeout> milliseconds.",
            "REPLY (ON|OFF|SKIP)",
            "    Turn replies for this connection on or off, or skip the next one.",
            "SETNAME <name>",
            "    Name this connection.",
            "UNPAUSE",
            "    End a pause started by CLIENT PAUSE now.",
            "TRACKING (ON|OFF) [REDIRECT <id>] [BCAST] [PREFIX <prefix> [...]]",
            "         [OPTIN] [OPTOUT] [NOLOOP]",
            "    Control server assisted client side caching.",
            "TRACKINGINFO",
            "    Report tracking status for the current connection.",
        ],
    );
}

#[cfg(test)]
mod tracking_tests {
    use super::prefix_collision;
    use bytes::Bytes;

    fn b(v: &[&'static str]) -> Vec<Bytes> {
        v.iter().map(|s| Bytes::from_static(s.as_bytes())).collect()
    }

    #[test]
    fn prefixes_must_not_overlap_as_in_redis() {
        assert!(prefix_collision(&[], &b(&["a:", "b:"])).is_none());
        let e = prefix_collision(&[], &b(&["FOOBAR", "FOO"])).unwrap_or_default();
        assert!(e.starts_with("ERR Prefix 'FOOBAR' overlaps with another provided prefix 'FOO'"));
        let e = prefix_collision(&b(&["FOO", "BAR"]), &b(&["FO"])).unwrap_or_default();
        assert!(e.starts_with("ERR Prefix 'FO' overlaps with an existing prefix 'FOO'"));
        // The same prefix again counts as an overlap, and the empty prefix
        // overlaps everything.
        assert!(prefix_collision(&b(&["FOO"]), &b(&["FOO"])).is_some());
        assert!(prefix_collision(&b(&[""]), &b(&["a"])).is_some());
    }
}
