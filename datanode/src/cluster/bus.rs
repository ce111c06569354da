//! The cluster bus wire format: Redis 7's `clusterMsg` (version 1), so a
//! real redis-server and a datanode can gossip with each other.
//!
//! Pure encode/decode, no I/O. Every integer is big-endian; the fixed
//! header is 2256 bytes and the body depends on the message type.

use super::id::{NodeId, ID_LEN};
use crate::keyspace::SLOTS;

pub const HEADER_LEN: usize = 2256;
pub const GOSSIP_LEN: usize = 104;
pub const IP_LEN: usize = 46;
pub const BITMAP_LEN: usize = SLOTS / 8;
/// The largest frame we accept. PUBLISH carries user payloads, so this is
/// generous; anything larger closes the link.
pub const MAX_FRAME: usize = 64 << 20;

pub mod types {
    pub const PING: u16 = 0;
    pub const PONG: u16 = 1;
    pub const MEET: u16 = 2;
    pub const FAIL: u16 = 3;
    pub const PUBLISH: u16 = 4;
    pub const AUTH_REQUEST: u16 = 5;
    pub const AUTH_ACK: u16 = 6;
    pub const UPDATE: u16 = 7;
    pub const MFSTART: u16 = 8;
    pub const MODULE: u16 = 9;
    pub const PUBLISHSHARD: u16 = 10;
    /// Names as CLUSTER INFO counts them, indexed by type.
    pub const NAMES: [&str; 11] = [
        "ping",
        "pong",
        "meet",
        "fail",
        "publish",
        "auth-req",
        "auth-ack",
        "update",
        "mfstart",
        "module",
        "publishshard",
    ];
}

/// Node flag bits, as carried in headers and gossip entries.
pub mod flags {
    pub const MASTER: u16 = 1;
    pub const SLAVE: u16 = 2;
    pub const PFAIL: u16 = 4;
    pub const FAIL: u16 = 8;
    pub const MYSELF: u16 = 16;
    pub const HANDSHAKE: u16 = 32;
    pub const NOADDR: u16 = 64;
    pub const MEET: u16 = 128;
    pub const MIGRATE_TO: u16 = 256;
    pub const NOFAILOVER: u16 = 512;
    /// The node understands ping extensions beyond HOSTNAME (Redis 7.2+).
    pub const EXTENSIONS_SUPPORTED: u16 = 1024;
}

/// `mflags[0]` bits.
pub mod mflags {
    pub const PAUSED: u8 = 1;
    pub const FORCEACK: u8 = 2;
    pub const EXT_DATA: u8 = 4;
}

pub mod ext {
    pub const HOSTNAME: u16 = 0;
    pub const HUMAN_NODENAME: u16 = 1;
    pub const FORGOTTEN_NODE: u16 = 2;
    pub const SHARDID: u16 = 3;
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BusError {
    #[error("bad signature")]
    Signature,
    #[error("frame length {0} out of bounds")]
    Length(usize),
    #[error("frame length {got} does not match type {typ} (expected {want})")]
    TypeLength { typ: u16, got: usize, want: usize },
    #[error("unsupported version {0}")]
    Version(u16),
    #[error("bad extension")]
    Extension,
    #[error("invalid node id")]
    NodeId,
}

/// A slot bitmap: slot `s` is bit `s & 7` of byte `s / 8`.
#[derive(Clone, PartialEq, Eq)]
pub struct SlotBits(pub Box<[u8; BITMAP_LEN]>);

impl Default for SlotBits {
    fn default() -> Self {
        SlotBits(Box::new([0u8; BITMAP_LEN]))
    }
}

impl std::fmt::Debug for SlotBits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SlotBits({} set)", self.count())
    }
}

impl SlotBits {
    #[inline]
    pub fn get(&self, slot: usize) -> bool {
        self.0[slot / 8] & (1 << (slot & 7)) != 0
    }
    #[inline]
    pub fn set(&mut self, slot: usize, on: bool) {
        if on {
            self.0[slot / 8] |= 1 << (slot & 7);
        } else {
            self.0[slot / 8] &= !(1 << (slot & 7));
        }
    }
    pub fn count(&self) -> usize {
        self.0.iter().map(|b| b.count_ones() as usize).sum()
    }
    pub fn is_empty(&self) -> bool {
        self.0.iter().all(|&b| b == 0)
    }
    pub fn iter(&self) -> impl Iterator<Item = usize> + '_ {
        // Skip empty bytes whole: most bitmaps are sparse runs.
        self.0
            .iter()
            .enumerate()
            .filter(|(_, &b)| b != 0)
            .flat_map(|(i, &b)| {
                (0..8)
                    .filter(move |k| b & (1 << k) != 0)
                    .map(move |k| i * 8 + k)
            })
    }
}

/// The fixed header every message starts with.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Header {
    pub typ: u16,
    /// Client port the sender announces.
    pub port: u16,
    pub current_epoch: u64,
    /// The sender's config epoch, or its master's when it is a replica.
    pub config_epoch: u64,
    pub offset: u64,
    pub sender: Option<NodeId>,
    /// The slots the sender (or its master) serves.
    pub myslots: SlotBits,
    pub slaveof: Option<NodeId>,
    /// Announced IP; empty means "use the address the packet came from".
    pub myip: String,
    pub extensions: u16,
    pub pport: u16,
    pub cport: u16,
    pub flags: u16,
    /// 0 ok, 1 fail.
    pub state: u8,
    pub mflags: [u8; 3],
}

/// What one node says about another in PING/PONG/MEET.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Gossip {
    pub node: NodeId,
    /// Seconds.
    pub ping_sent: u32,
    /// Seconds.
    pub pong_received: u32,
    pub ip: String,
    pub port: u16,
    pub cport: u16,
    pub flags: u16,
    pub pport: u16,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ext {
    Hostname(String),
    HumanNodename(String),
    ForgottenNode {
        node: NodeId,
        ttl: u64,
    },
    ShardId(NodeId),
    /// A type we do not act on (Redis and Valkey disagree on types 4+).
    Other(u16),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Body {
    /// PING, PONG and MEET.
    Gossip {
        entries: Vec<Gossip>,
        exts: Vec<Ext>,
    },
    Fail(NodeId),
    /// PUBLISH and PUBLISHSHARD.
    Publish {
        channel: Vec<u8>,
        message: Vec<u8>,
    },
    Update {
        config_epoch: u64,
        node: NodeId,
        slots: SlotBits,
    },
    /// AUTH_REQUEST, AUTH_ACK, MFSTART: the header says it all.
    Empty,
    /// MODULE and unknown types: accepted and ignored.
    Ignored,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    pub header: Header,
    pub body: Body,
}

/// The frame length announced by the first 8 bytes, checked against the
/// limits: `Ok(None)` when fewer than 8 bytes are buffered.
pub fn frame_len(buf: &[u8]) -> Result<Option<usize>, BusError> {
    if buf.len() < 8 {
        return Ok(None);
    }
    if &buf[0..4] != b"RCmb" {
        return Err(BusError::Signature);
    }
    let len = u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]) as usize;
    if !(HEADER_LEN..=MAX_FRAME).contains(&len) {
        return Err(BusError::Length(len));
    }
    Ok(Some(len))
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}
fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}
fn be64(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_be_bytes(a)
}
fn id_at(b: &[u8], at: usize) -> [u8; ID_LEN] {
    let mut a = [0u8; ID_LEN];
    a.copy_from_slice(&b[at..at + ID_LEN]);
    a
}
/// A node id field: all zero = none; otherwise it must be a valid id.
fn opt_id(b: &[u8], at: usize) -> Result<Option<NodeId>, BusError> {
    let raw = id_at(b, at);
    match NodeId::from_wire(&raw) {
        None => Ok(None),
        Some(_) => NodeId::parse(&raw).map(Some).ok_or(BusError::NodeId),
    }
}
fn req_id(b: &[u8], at: usize) -> Result<NodeId, BusError> {
    NodeId::parse(&id_at(b, at)).ok_or(BusError::NodeId)
}
/// A NUL-padded C string field.
fn cstr(b: &[u8]) -> String {
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    String::from_utf8_lossy(&b[..end]).into_owned()
}
fn bits_at(b: &[u8], at: usize) -> SlotBits {
    let mut s = SlotBits::default();
    s.0.copy_from_slice(&b[at..at + BITMAP_LEN]);
    s
}

/// Decodes one whole frame (as delimited by [`frame_len`]). Errors mean
/// the frame is invalid and must be dropped.
pub fn decode(f: &[u8]) -> Result<Message, BusError> {
    let totlen = match frame_len(f)? {
        Some(l) => l,
        None => return Err(BusError::Length(f.len())),
    };
    if totlen != f.len() {
        return Err(BusError::Length(f.len()));
    }
    let ver = be16(f, 8);
    if ver != 1 {
        return Err(BusError::Version(ver));
    }
    let typ = be16(f, 12);
    let count = be16(f, 14) as usize;
    let header = Header {
        typ,
        port: be16(f, 10),
        current_epoch: be64(f, 16),
        config_epoch: be64(f, 24),
        offset: be64(f, 32),
        sender: opt_id(f, 40)?,
        myslots: bits_at(f, 80),
        slaveof: opt_id(f, 2128)?,
        myip: cstr(&f[2168..2168 + IP_LEN]),
        extensions: be16(f, 2214),
        pport: be16(f, 2246),
        cport: be16(f, 2248),
        flags: be16(f, 2250),
        state: f[2252],
        mflags: [f[2253], f[2254], f[2255]],
    };
    let body_len = totlen - HEADER_LEN;
    let mismatch = |want: usize| BusError::TypeLength {
        typ,
        got: totlen,
        want,
    };
    let d = &f[HEADER_LEN..];
    let body = match typ {
        types::PING | types::PONG | types::MEET => {
            let glen = count * GOSSIP_LEN;
            if body_len < glen {
                return Err(mismatch(HEADER_LEN + glen));
            }
            let mut entries = Vec::with_capacity(count);
            for i in 0..count {
                let g = &d[i * GOSSIP_LEN..(i + 1) * GOSSIP_LEN];
                entries.push(Gossip {
                    node: req_id(g, 0)?,
                    ping_sent: be32(g, 40),
                    pong_received: be32(g, 44),
                    ip: cstr(&g[48..48 + IP_LEN]),
                    port: be16(g, 94),
                    cport: be16(g, 96),
                    flags: be16(g, 98),
                    pport: be16(g, 100),
                });
            }
            let mut exts = Vec::new();
            let mut at = glen;
            if header.mflags[0] & mflags::EXT_DATA != 0 {
                for _ in 0..header.extensions {
                    if body_len - at < 8 {
                        return Err(BusError::Extension);
                    }
                    let len = be32(d, at) as usize;
                    let etype = be16(d, at + 4);
                    if len < 8 || !len.is_multiple_of(8) || body_len - at < len {
                        return Err(BusError::Extension);
                    }
                    let p = &d[at + 8..at + len];
                    exts.push(match etype {
                        ext::HOSTNAME => Ext::Hostname(cstr(p)),
                        ext::HUMAN_NODENAME => Ext::HumanNodename(cstr(p)),
                        ext::FORGOTTEN_NODE if p.len() >= ID_LEN + 8 => Ext::ForgottenNode {
                            node: req_id(p, 0)?,
                            ttl: be64(p, ID_LEN),
                        },
                        ext::SHARDID if p.len() >= ID_LEN => Ext::ShardId(req_id(p, 0)?),
                        ext::FORGOTTEN_NODE | ext::SHARDID => return Err(BusError::Extension),
                        other => Ext::Other(other),
                    });
                    at += len;
                }
            }
            if at != body_len {
                return Err(mismatch(HEADER_LEN + at));
            }
            Body::Gossip { entries, exts }
        }
        types::FAIL => {
            if body_len != ID_LEN {
                return Err(mismatch(HEADER_LEN + ID_LEN));
            }
            Body::Fail(req_id(d, 0)?)
        }
        types::PUBLISH | types::PUBLISHSHARD => {
            if body_len < 8 {
                return Err(mismatch(HEADER_LEN + 8));
            }
            let clen = be32(d, 0) as usize;
            let mlen = be32(d, 4) as usize;
            let want = 8usize.saturating_add(clen).saturating_add(mlen);
            if body_len != want {
                return Err(mismatch(HEADER_LEN.saturating_add(want)));
            }
            Body::Publish {
                channel: d[8..8 + clen].to_vec(),
                message: d[8 + clen..8 + clen + mlen].to_vec(),
            }
        }
        types::AUTH_REQUEST | types::AUTH_ACK | types::MFSTART => {
            if body_len != 0 {
                return Err(mismatch(HEADER_LEN));
            }
            Body::Empty
        }
        types::UPDATE => {
            let want = 8 + ID_LEN + BITMAP_LEN;
            if body_len != want {
                return Err(mismatch(HEADER_LEN + want));
            }
            Body::Update {
                config_epoch: be64(d, 0),
                node: req_id(d, 8)?,
                slots: bits_at(d, 8 + ID_LEN),
            }
        }
        _ => Body::Ignored,
    };
    Ok(Message { header, body })
}

fn put_ip(out: &mut [u8], ip: &str) {
    let b = ip.as_bytes();
    let n = b.len().min(IP_LEN - 1);
    out[..n].copy_from_slice(&b[..n]);
}

/// Appends the encoded message to `out`.
pub fn encode(m: &Message, out: &mut Vec<u8>) {
    let start = out.len();
    out.resize(start + HEADER_LEN, 0);
    let h = &m.header;
    let mut exts = 0u16;
    let mut mflags0 = h.mflags[0];
    {
        let f = &mut out[start..];
        f[0..4].copy_from_slice(b"RCmb");
        f[8..10].copy_from_slice(&1u16.to_be_bytes());
        f[10..12].copy_from_slice(&h.port.to_be_bytes());
        f[12..14].copy_from_slice(&h.typ.to_be_bytes());
        let count = match &m.body {
            Body::Gossip { entries, .. } => entries.len() as u16,
            _ => 0,
        };
        f[14..16].copy_from_slice(&count.to_be_bytes());
        f[16..24].copy_from_slice(&h.current_epoch.to_be_bytes());
        f[24..32].copy_from_slice(&h.config_epoch.to_be_bytes());
        f[32..40].copy_from_slice(&h.offset.to_be_bytes());
        if let Some(s) = &h.sender {
            f[40..80].copy_from_slice(s.as_bytes());
        }
        f[80..80 + BITMAP_LEN].copy_from_slice(&h.myslots.0[..]);
        if let Some(s) = &h.slaveof {
            f[2128..2168].copy_from_slice(s.as_bytes());
        }
        put_ip(&mut f[2168..2168 + IP_LEN], &h.myip);
        f[2246..2248].copy_from_slice(&h.pport.to_be_bytes());
        f[2248..2250].copy_from_slice(&h.cport.to_be_bytes());
        f[2250..2252].copy_from_slice(&h.flags.to_be_bytes());
        f[2252] = h.state;
    }
    match &m.body {
        Body::Gossip { entries, exts: ex } => {
            for g in entries {
                let at = out.len();
                out.resize(at + GOSSIP_LEN, 0);
                let e = &mut out[at..];
                e[0..40].copy_from_slice(g.node.as_bytes());
                e[40..44].copy_from_slice(&g.ping_sent.to_be_bytes());
                e[44..48].copy_from_slice(&g.pong_received.to_be_bytes());
                put_ip(&mut e[48..48 + IP_LEN], &g.ip);
                e[94..96].copy_from_slice(&g.port.to_be_bytes());
                e[96..98].copy_from_slice(&g.cport.to_be_bytes());
                e[98..100].copy_from_slice(&g.flags.to_be_bytes());
                e[100..102].copy_from_slice(&g.pport.to_be_bytes());
            }
            for x in ex {
                let (etype, payload): (u16, Vec<u8>) = match x {
                    Ext::Hostname(s) => (ext::HOSTNAME, nul_terminated(s)),
                    Ext::HumanNodename(s) => (ext::HUMAN_NODENAME, nul_terminated(s)),
                    Ext::ForgottenNode { node, ttl } => {
                        let mut p = node.as_bytes().to_vec();
                        p.extend_from_slice(&ttl.to_be_bytes());
                        (ext::FORGOTTEN_NODE, p)
                    }
                    Ext::ShardId(id) => (ext::SHARDID, id.as_bytes().to_vec()),
                    Ext::Other(_) => continue,
                };
                let len = (8 + payload.len()).div_ceil(8) * 8;
                out.extend_from_slice(&(len as u32).to_be_bytes());
                out.extend_from_slice(&etype.to_be_bytes());
                out.extend_from_slice(&[0, 0]);
                out.extend_from_slice(&payload);
                out.resize(out.len() + len - 8 - payload.len(), 0);
                exts += 1;
            }
            if exts > 0 {
                mflags0 |= mflags::EXT_DATA;
            }
        }
        Body::Fail(id) => out.extend_from_slice(id.as_bytes()),
        Body::Publish { channel, message } => {
            out.extend_from_slice(&(channel.len() as u32).to_be_bytes());
            out.extend_from_slice(&(message.len() as u32).to_be_bytes());
            out.extend_from_slice(channel);
            out.extend_from_slice(message);
        }
        Body::Update {
            config_epoch,
            node,
            slots,
        } => {
            out.extend_from_slice(&config_epoch.to_be_bytes());
            out.extend_from_slice(node.as_bytes());
            out.extend_from_slice(&slots.0[..]);
        }
        Body::Empty | Body::Ignored => {}
    }
    let total = (out.len() - start) as u32;
    let f = &mut out[start..];
    f[4..8].copy_from_slice(&total.to_be_bytes());
    f[2214..2216].copy_from_slice(&exts.to_be_bytes());
    f[2253] = mflags0;
    f[2254] = h.mflags[1];
    f[2255] = h.mflags[2];
}

/// One message as a new frame.
pub fn encode_message(header: Header, body: Body) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN);
    encode(&Message { header, body }, &mut out);
    out
}

impl Body {
    /// The body as re-encoding keeps it: extensions of unknown types are
    /// not forwarded.
    pub fn known_part(&self) -> Body {
        match self {
            Body::Gossip { entries, exts } => Body::Gossip {
                entries: entries.clone(),
                exts: exts
                    .iter()
                    .filter(|e| !matches!(e, Ext::Other(_)))
                    .cloned()
                    .collect(),
            },
            b => b.clone(),
        }
    }
}

fn nul_terminated(s: &str) -> Vec<u8> {
    let mut v = s.as_bytes().to_vec();
    v.push(0);
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn header(typ: u16) -> Header {
        let mut myslots = SlotBits::default();
        myslots.set(0, true);
        myslots.set(12182, true);
        myslots.set(16383, true);
        Header {
            typ,
            port: 7000,
            current_epoch: 7,
            config_epoch: 3,
            offset: 12345,
            sender: Some(NodeId::random()),
            myslots,
            slaveof: None,
            myip: "127.0.0.1".into(),
            extensions: 0,
            pport: 0,
            cport: 17000,
            flags: flags::MASTER,
            state: 0,
            mflags: [0, 0, 0],
        }
    }

    #[test]
    fn header_offsets_match_redis() {
        let h = header(types::PING);
        let m = Message {
            header: h.clone(),
            body: Body::Gossip {
                entries: vec![],
                exts: vec![],
            },
        };
        let mut out = Vec::new();
        encode(&m, &mut out);
        assert_eq!(out.len(), HEADER_LEN);
        assert_eq!(&out[0..4], b"RCmb");
        assert_eq!(&out[4..8], &(HEADER_LEN as u32).to_be_bytes());
        assert_eq!(&out[10..12], &7000u16.to_be_bytes());
        assert_eq!(&out[16..24], &7u64.to_be_bytes());
        assert_eq!(&out[40..80], h.sender.unwrap().as_bytes());
        // Slot 0 is bit 0 of byte 0; slot 12182 is bit 6 of byte 1522.
        assert_eq!(out[80], 1);
        assert_eq!(out[80 + 1522], 1 << 6);
        assert_eq!(out[80 + 2047], 0x80);
        assert_eq!(&out[2168..2177], b"127.0.0.1");
        assert_eq!(&out[2248..2250], &17000u16.to_be_bytes());
        assert_eq!(&out[2250..2252], &1u16.to_be_bytes());
    }

    #[test]
    fn round_trips_every_type() {
        let g = Gossip {
            node: NodeId::random(),
            ping_sent: 1,
            pong_received: 2,
            ip: "10.0.0.1".into(),
            port: 7001,
            cport: 17001,
            flags: flags::MASTER | flags::PFAIL,
            pport: 0,
        };
        let bodies = [
            (
                types::PING,
                Body::Gossip {
                    entries: vec![g.clone(), g.clone()],
                    exts: vec![
                        Ext::Hostname("host-a".into()),
                        Ext::ShardId(NodeId::random()),
                        Ext::ForgottenNode {
                            node: NodeId::random(),
                            ttl: 60,
                        },
                    ],
                },
            ),
            (
                types::MEET,
                Body::Gossip {
                    entries: vec![g],
                    exts: vec![],
                },
            ),
            (types::FAIL, Body::Fail(NodeId::random())),
            (
                types::PUBLISH,
                Body::Publish {
                    channel: b"news".to_vec(),
                    message: b"hello".to_vec(),
                },
            ),
            (types::AUTH_REQUEST, Body::Empty),
            (
                types::UPDATE,
                Body::Update {
                    config_epoch: 9,
                    node: NodeId::random(),
                    slots: header(0).myslots,
                },
            ),
        ];
        for (typ, body) in bodies {
            let mut h = header(typ);
            if let Body::Gossip { exts, .. } = &body {
                h.extensions = exts.len() as u16;
                if !exts.is_empty() {
                    h.mflags[0] |= mflags::EXT_DATA;
                }
            }
            let m = Message { header: h, body };
            let mut out = Vec::new();
            encode(&m, &mut out);
            assert_eq!(frame_len(&out).unwrap(), Some(out.len()));
            assert_eq!(decode(&out).unwrap(), m, "type {typ}");
        }
    }

    #[test]
    fn rejects_bad_frames() {
        let m = Message {
            header: header(types::FAIL),
            body: Body::Fail(NodeId::random()),
        };
        let mut out = Vec::new();
        encode(&m, &mut out);
        let mut bad = out.clone();
        bad[0] = b'X';
        assert_eq!(decode(&bad), Err(BusError::Signature));
        let mut short = out.clone();
        short.truncate(HEADER_LEN);
        short[4..8].copy_from_slice(&(HEADER_LEN as u32).to_be_bytes());
        assert!(matches!(decode(&short), Err(BusError::TypeLength { .. })));
        let mut v2 = out.clone();
        v2[8..10].copy_from_slice(&2u16.to_be_bytes());
        assert_eq!(decode(&v2), Err(BusError::Version(2)));
        let mut tiny = out.clone();
        tiny[4..8].copy_from_slice(&100u32.to_be_bytes());
        assert_eq!(frame_len(&tiny), Err(BusError::Length(100)));
        // A gossip count claiming more entries than the frame holds.
        let mut ping = Vec::new();
        encode(
            &Message {
                header: header(types::PING),
                body: Body::Gossip {
                    entries: vec![],
                    exts: vec![],
                },
            },
            &mut ping,
        );
        ping[14..16].copy_from_slice(&3u16.to_be_bytes());
        assert!(decode(&ping).is_err());
    }

    proptest! {
        #[test]
        fn decode_never_panics(mut bytes in proptest::collection::vec(any::<u8>(), 0..6000),
                               typ in 0u16..12, count in 0u16..4) {
            if bytes.len() >= 16 {
                bytes[0..4].copy_from_slice(b"RCmb");
                let n = bytes.len() as u32;
                bytes[4..8].copy_from_slice(&n.to_be_bytes());
                bytes[8..10].copy_from_slice(&1u16.to_be_bytes());
                bytes[12..14].copy_from_slice(&typ.to_be_bytes());
                bytes[14..16].copy_from_slice(&count.to_be_bytes());
            }
            let _ = frame_len(&bytes);
            let _ = decode(&bytes);
        }

        /// Valid frames with random bytes overwritten: never a panic, and
        /// whatever decodes re-encodes to something that decodes the same.
        #[test]
        fn mutated_frames_decode_or_fail_cleanly(
            typ in 0u16..11,
            entries in 0usize..4,
            hostname in "[a-z]{0,20}",
            flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..16),
        ) {
            let mut h = header(typ);
            let body = match typ {
                types::PING | types::PONG | types::MEET => {
                    let g = Gossip {
                        node: NodeId::random(),
                        ping_sent: 1,
                        pong_received: 2,
                        ip: "127.0.0.1".into(),
                        port: 1,
                        cport: 2,
                        flags: flags::MASTER,
                        pport: 0,
                    };
                    let exts = if hostname.is_empty() { vec![] } else { vec![Ext::Hostname(hostname.clone())] };
                    h.extensions = exts.len() as u16;
                    Body::Gossip { entries: vec![g; entries], exts }
                }
                types::FAIL => Body::Fail(NodeId::random()),
                types::PUBLISH | types::PUBLISHSHARD => Body::Publish { channel: b"c".to_vec(), message: hostname.as_bytes().to_vec() },
                types::UPDATE => Body::Update { config_epoch: 1, node: NodeId::random(), slots: SlotBits::default() },
                types::MODULE => Body::Ignored,
                _ => Body::Empty,
            };
            let mut out = Vec::new();
            encode(&Message { header: h, body }, &mut out);
            for (at, b) in flips {
                let i = at % out.len();
                out[i] = b;
            }
            if let Ok(m) = decode(&out) {
                let mut again = Vec::new();
                encode(&m, &mut again);
                let m2 = decode(&again).expect("re-encoded frame decodes");
                prop_assert_eq!(m2.body, m.body.known_part());
            }
        }
    }
}
