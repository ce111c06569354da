//! Pub/Sub commands. Subscription replies and messages are push frames in
//! RESP3 and plain arrays in RESP2.

use super::connection::help_reply;
use super::{Args, Ctx};
use crate::resp::Reply;
use crate::server::client::Subs;
use crate::server::pubsub::PubMsg;

/// Writes one delivered message in the client's protocol. `subscribed`:
/// the client is in Pub/Sub mode (RESP2 receives redirected invalidations
/// only then, as Redis sends them).
pub fn write_message(r: &mut Reply, m: &PubMsg, subscribed: bool) {
    match m {
        PubMsg::Invalidate {
            keys,
            redirected,
            null3,
        } => {
            if r.proto == crate::resp::Proto::Resp3 {
                r.push(2);
                r.bulk(b"invalidate");
            } else if *redirected && subscribed {
                r.array(3);
                r.bulk(b"message");
                r.bulk(b"__redis__:invalidate");
            } else {
                // RESP2 has no pushes: Redis drops these.
                return;
            }
            match keys {
                Some(keys) => {
                    r.array(keys.len());
                    for k in keys.iter() {
                        r.bulk(k);
                    }
                }
                None if *null3 => r.raw(b"_\r\n"),
                None => r.raw(b"$-1\r\n"),
            }
        }
        PubMsg::RedirBroken(id) => {
            if r.proto == crate::resp::Proto::Resp3 {
                r.push(2);
                r.bulk(b"tracking-redir-broken");
                r.int(*id as i64);
            }
        }
        PubMsg::Message { channel, payload } => {
            r.push(3);
            r.bulk(b"message");
            r.bulk(channel);
            r.bulk(payload);
        }
        PubMsg::SMessage { channel, payload } => {
            r.push(3);
            r.bulk(b"smessage");
            r.bulk(channel);
            r.bulk(payload);
        }
        PubMsg::PMessage {
            pattern,
            channel,
            payload,
        } => {
            r.push(4);
            r.bulk(b"pmessage");
            r.bulk(pattern);
            r.bulk(channel);
            r.bulk(payload);
        }
        PubMsg::Raw(b) => r.raw(b),
    }
}

pub fn subs<'c>(ctx: &'c mut Ctx) -> &'c mut Subs {
    ensure_subs(ctx.client)
}

/// The client's message queue, made on first use and published in its
/// `ClientInfo` so other connections can queue messages for it; a queue
/// another connection already made for it (see
/// `server::tracking`) is adopted instead.
pub fn ensure_subs(client: &mut crate::server::client::Client) -> &mut Subs {
    if client.subs.is_none() {
        let mut inbox = client.info.inbox.lock();
        let adopted = client.info.adopt.lock().take();
        client
            .info
            .has_adopt
            .store(false, std::sync::atomic::Ordering::Relaxed);
        let subs = match (adopted, inbox.as_ref()) {
            (Some(rx), Some(tx)) => Subs::with_queue(tx.clone(), rx),
            _ => {
                let (tx, rx) = crate::server::outbox::channel(&client.info.outq);
                let s = Subs::with_queue(tx, rx);
                *inbox = Some(s.tx.clone());
                s
            }
        };
        client.subs = Some(Box::new(subs));
    }
    match client.subs.as_mut() {
        Some(s) => s,
        None => unreachable!("made above"),
    }
}

fn confirm(r: &mut Reply, kind: &[u8], name: Option<&[u8]>, count: usize) {
    r.push(3);
    r.bulk(kind);
    match name {
        Some(n) => r.bulk(n),
        None => r.null(),
    }
    r.int(count as i64);
}

pub fn subscribe(ctx: &mut Ctx, a: &Args) {
    let id = ctx.client.id;
    for ch in a.iter().skip(1) {
        let srv = ctx.srv.clone();
        let s = subs(ctx);
        if !s.channels.iter().any(|c| c.as_slice() == ch) {
            s.channels.push(ch.to_vec());
            srv.pubsub.subscribe(id, &s.tx, ch);
        }
        let n = s.count();
        confirm(&mut ctx.r, b"subscribe", Some(ch), n);
    }
}

pub fn psubscribe(ctx: &mut Ctx, a: &Args) {
    let id = ctx.client.id;
    for p in a.iter().skip(1) {
        let srv = ctx.srv.clone();
        let s = subs(ctx);
        if !s.patterns.iter().any(|c| c.as_slice() == p) {
            s.patterns.push(p.to_vec());
            srv.pubsub.psubscribe(id, &s.tx, p);
        }
        let n = s.count();
        confirm(&mut ctx.r, b"psubscribe", Some(p), n);
    }
}

fn unsub_generic(ctx: &mut Ctx, a: &Args, patterns: bool) {
    let id = ctx.client.id;
    let kind: &[u8] = if patterns {
        b"punsubscribe"
    } else {
        b"unsubscribe"
    };
    let names: Vec<Vec<u8>> = if a.len() > 1 {
        a.iter().skip(1).map(|x| x.to_vec()).collect()
    } else {
        match &ctx.client.subs {
            Some(s) if patterns => s.patterns.clone(),
            Some(s) => s.channels.clone(),
            None => Vec::new(),
        }
    };
    if names.is_empty() {
        let n = ctx.client.subs.as_ref().map_or(0, |s| s.count());
        return confirm(&mut ctx.r, kind, None, n);
    }
    for name in names {
        let srv = ctx.srv.clone();
        let s = subs(ctx);
        let list = if patterns {
            &mut s.patterns
        } else {
            &mut s.channels
        };
        if let Some(i) = list.iter().position(|c| *c == name) {
            list.remove(i);
            if patterns {
                srv.pubsub.punsubscribe(id, &name);
            } else {
                srv.pubsub.unsubscribe(id, &name);
            }
        }
        let n = s.count();
        confirm(&mut ctx.r, kind, Some(&name), n);
    }
}

pub fn unsubscribe(ctx: &mut Ctx, a: &Args) {
    unsub_generic(ctx, a, false)
}

pub fn punsubscribe(ctx: &mut Ctx, a: &Args) {
    unsub_generic(ctx, a, true)
}

/// Drops every subscription of the client (disconnect, RESET).
pub fn drop_all(ctx: &mut Ctx) {
    *ctx.client.info.inbox.lock() = None;
    if let Some(s) = ctx.client.subs.take() {
        for c in &s.channels {
            ctx.srv.pubsub.unsubscribe(ctx.client.id, c);
        }
        for p in &s.patterns {
            ctx.srv.pubsub.punsubscribe(ctx.client.id, p);
        }
        for c in &s.shard_channels {
            ctx.srv.pubsub.sunsubscribe(ctx.client.id, c);
        }
    }
}

pub fn publish(ctx: &mut Ctx, a: &Args) {
    let n = ctx.srv.pubsub.publish(a.get(1), a.get(2));
    // In a cluster every node's subscribers get it (the count is local).
    if let Some(cl) = ctx.srv.cluster.get() {
        cl.propagate_publish(ctx.srv, a.get(1), a.get(2), false);
    }
    ctx.r.int(n as i64);
}

pub fn spublish(ctx: &mut Ctx, a: &Args) {
    let n = ctx.srv.pubsub.spublish(a.get(1), a.get(2));
    if let Some(cl) = ctx.srv.cluster.get() {
        cl.propagate_publish(ctx.srv, a.get(1), a.get(2), true);
    }
    ctx.r.int(n as i64);
}

pub fn ssubscribe(ctx: &mut Ctx, a: &Args) {
    let id = ctx.client.id;
    for ch in a.iter().skip(1) {
        let srv = ctx.srv.clone();
        let s = subs(ctx);
        if !s.shard_channels.iter().any(|c| c.as_slice() == ch) {
            s.shard_channels.push(ch.to_vec());
            srv.pubsub.ssubscribe(id, &s.tx, ch);
        }
        let n = s.shard_channels.len();
        confirm(&mut ctx.r, b"ssubscribe", Some(ch), n);
    }
}

pub fn sunsubscribe(ctx: &mut Ctx, a: &Args) {
    let id = ctx.client.id;
    let names: Vec<Vec<u8>> = if a.len() > 1 {
        a.iter().skip(1).map(|x| x.to_vec()).collect()
    } else {
        ctx.client
            .subs
            .as_ref()
            .map(|s| s.shard_channels.clone())
            .unwrap_or_default()
    };
    if names.is_empty() {
        return confirm(&mut ctx.r, b"sunsubscribe", None, 0);
    }
    for name in names {
        let srv = ctx.srv.clone();
        let s = subs(ctx);
        if let Some(i) = s.shard_channels.iter().position(|c| *c == name) {
            s.shard_channels.remove(i);
            srv.pubsub.sunsubscribe(id, &name);
        }
        let n = s.shard_channels.len();
        confirm(&mut ctx.r, b"sunsubscribe", Some(&name), n);
    }
}

pub fn pubsub_shardchannels(ctx: &mut Ctx, a: &Args) {
    if a.len() > 3 {
        return ctx
            .r
            .error("ERR wrong number of arguments for 'pubsub|shardchannels' command");
    }
    let pat = (a.len() == 3).then(|| a.get(2));
    let chans = ctx.srv.pubsub.shard_channels(pat);
    ctx.r.array(chans.len());
    for c in chans {
        ctx.r.bulk(&c);
    }
}

pub fn pubsub_shardnumsub(ctx: &mut Ctx, a: &Args) {
    ctx.r.map(a.len() - 2);
    for ch in a.iter().skip(2) {
        ctx.r.bulk(ch);
        ctx.r.int(ctx.srv.pubsub.shard_numsub(ch) as i64);
    }
}

pub fn pubsub_channels(ctx: &mut Ctx, a: &Args) {
    if a.len() > 3 {
        return ctx
            .r
            .error("ERR wrong number of arguments for 'pubsub|channels' command");
    }
    let pat = (a.len() == 3).then(|| a.get(2));
    let chans = ctx.srv.pubsub.channels(pat);
    ctx.r.array(chans.len());
    for c in chans {
        ctx.r.bulk(&c);
    }
}

pub fn pubsub_numsub(ctx: &mut Ctx, a: &Args) {
    ctx.r.map(a.len() - 2);
    for ch in a.iter().skip(2) {
        ctx.r.bulk(ch);
        ctx.r.int(ctx.srv.pubsub.numsub(ch) as i64);
    }
}

pub fn pubsub_numpat(ctx: &mut Ctx, _a: &Args) {
    ctx.r.int(ctx.srv.pubsub.numpat() as i64);
}

pub fn pubsub_help(ctx: &mut Ctx, _a: &Args) {
    help_reply(
        ctx,
        "PUBSUB",
        &[
            "CHANNELS [<pattern>]",
            "    Active channels, those with at least one subscriber, matching <pattern>.",
            "NUMPAT",
            "    Number of distinct patterns subscribed to.",
            "NUMSUB [<channel> ...]",
            "    Number of subscribers of each channel.",
        ],
    );
}

/// Commands a RESP2 client may send while subscribed.
pub fn allowed_while_subscribed(name: &str) -> bool {
    matches!(
        name,
        "subscribe"
            | "psubscribe"
            | "ssubscribe"
            | "unsubscribe"
            | "punsubscribe"
            | "sunsubscribe"
            | "ping"
            | "quit"
            | "reset"
    )
}
