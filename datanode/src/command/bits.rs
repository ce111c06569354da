//! Bitmaps on the string type: SETBIT, GETBIT, BITCOUNT, BITPOS, BITOP,
//! BITFIELD and BITFIELD_RO, with Redis 7.0's replies, errors and argument
//! order. Bit 0 is the most significant bit of the first byte.

use super::{eq_ic, ev, Args, Ctx, NOT_INT, SYNTAX, WRONGTYPE};
use crate::keyspace::Value;
use crate::resp::parse_i64;

const BAD_OFFSET: &str = "ERR bit offset is not an integer or out of range";
const BAD_BIT: &str = "ERR bit is not an integer or out of range";

/// A bit offset argument: a non-negative integer whose byte fits in
/// proto-max-bulk-len.
fn bit_offset(ctx: &mut Ctx, a: &[u8]) -> Option<u64> {
    match parse_i64(a).and_then(|n| in_bulk_limit(ctx, n)) {
        Some(n) => Some(n),
        None => {
            ctx.r.error(BAD_OFFSET);
            None
        }
    }
}

/// A bit offset, when non-negative and its byte within proto-max-bulk-len.
fn in_bulk_limit(ctx: &Ctx, n: i64) -> Option<u64> {
    let max = ctx
        .srv
        .hot
        .proto_max_bulk_len
        .load(std::sync::atomic::Ordering::Relaxed);
    (n >= 0 && (n >> 3) < max).then_some(n as u64)
}

/// The optional `BYTE|BIT` unit of BITCOUNT and BITPOS: Ok(true) for BIT,
/// Ok(false) for BYTE or none, Err on anything else.
fn unit_is_bit(a: Option<&[u8]>) -> Result<bool, ()> {
    match a {
        None => Ok(false),
        Some(u) if eq_ic(u, "BIT") => Ok(true),
        Some(u) if eq_ic(u, "BYTE") => Ok(false),
        Some(_) => Err(()),
    }
}

/// The bit at `offset` of `bytes` (0 past the end).
pub fn bit_at(bytes: &[u8], offset: u64) -> u8 {
    match bytes.get((offset >> 3) as usize) {
        Some(b) => (b >> (7 - (offset & 7))) & 1,
        None => 0,
    }
}

pub fn setbit(ctx: &mut Ctx, a: &Args) {
    let key = a.get(1);
    let Some(offset) = bit_offset(ctx, a.get(2)) else {
        return;
    };
    let on = match parse_i64(a.get(3)) {
        Some(v @ (0 | 1)) => v as u8,
        _ => return ctx.r.error(BAD_BIT),
    };
    let byte = (offset >> 3) as usize;
    let events = ctx.events();
    let mut s = ctx.locks.key(key);
    let (old, changed) = match s.get_mut(key) {
        None => {
            let mut buf = vec![0u8; byte + 1];
            set_bit(&mut buf, offset, on);
            s.set(key, Value::Raw(Box::new(buf)), false);
            (0, true)
        }
        Some(v) => {
            let Some(buf) = v.make_raw() else {
                drop(s);
                return ctx.r.error(WRONGTYPE);
            };
            let grown = buf.len() < byte + 1;
            if grown {
                buf.resize(byte + 1, 0);
            }
            let old = bit_at(buf, offset);
            if grown || old != on {
                set_bit(buf, offset, on);
                s.touch(key);
                (old, true)
            } else {
                (old, false)
            }
        }
    };
    if changed {
        s.log(&[b"SETBIT".as_slice(), key, a.get(2), a.get(3)]);
        events.emit(ev::STRING, "setbit", key);
    }
    drop(s);
    if changed {
        ctx.dirty(1);
    }
    ctx.r.int(old as i64);
}

fn set_bit(buf: &mut [u8], offset: u64, on: u8) {
    let shift = 7 - (offset & 7);
    let b = &mut buf[(offset >> 3) as usize];
    *b = (*b & !(1 << shift)) | (on << shift);
}

pub fn getbit(ctx: &mut Ctx, a: &Args) {
    let key = a.get(1);
    let Some(offset) = bit_offset(ctx, a.get(2)) else {
        return;
    };
    let mut s = ctx.locks.key(key);
    let mut b = itoa::Buffer::new();
    let bit = match s.get(key) {
        None => 0,
        Some(v) => match v.str_bytes(&mut b) {
            Some(bytes) => bit_at(bytes, offset),
            None => {
                drop(s);
                return ctx.r.error(WRONGTYPE);
            }
        },
    };
    drop(s);
    ctx.r.int(bit as i64);
}

/// A range of BITCOUNT/BITPOS resolved to bytes, with masks for the bits
/// of the first and last byte outside a BIT range (set bits are outside).
#[derive(Debug, PartialEq, Eq)]
pub struct ByteRange {
    pub start: usize,
    pub end: usize,
    pub first_out: u8,
    pub last_out: u8,
}

/// Resolves `start`/`end` (negative from the end) over `len` bytes, in bits
/// when `bits`; None for an empty range.
pub fn resolve(len: usize, mut start: i64, mut end: i64, bits: bool) -> Option<ByteRange> {
    let total = if bits { (len as i64) << 3 } else { len as i64 };
    if start < 0 && end < 0 && start > end {
        return None;
    }
    if start < 0 {
        start += total;
    }
    if end < 0 {
        end += total;
    }
    start = start.max(0);
    end = end.max(0);
    if end >= total {
        end = total - 1;
    }
    if start > end {
        return None;
    }
    let (mut first_out, mut last_out) = (0u8, 0u8);
    if bits {
        first_out = !((1u16 << (8 - (start & 7))) - 1) as u8;
        last_out = ((1u16 << (7 - (end & 7))) - 1) as u8;
        start >>= 3;
        end >>= 3;
    }
    Some(ByteRange {
        start: start as usize,
        end: end as usize,
        first_out,
        last_out,
    })
}

/// Set bits of `bytes[r.start..=r.end]`, without those the masks exclude.
pub fn count_bits(bytes: &[u8], r: &ByteRange) -> u64 {
    let mut n = popcount(&bytes[r.start..=r.end]);
    n -= (bytes[r.start] & r.first_out).count_ones() as u64;
    n -= (bytes[r.end] & r.last_out).count_ones() as u64;
    n
}

/// Set bits in `bytes`, eight bytes at a time: without a POPCNT
/// instruction in the baseline target, a 64-bit count (a few shifts and
/// adds) is about eight times cheaper per byte than a byte-wise one.
fn popcount(bytes: &[u8]) -> u64 {
    let (words, rest) = bytes.as_chunks::<8>();
    let mut n: u64 = words
        .iter()
        .map(|w| u64::from_ne_bytes(*w).count_ones() as u64)
        .sum();
    n += rest.iter().map(|b| b.count_ones() as u64).sum::<u64>();
    n
}

pub fn bitcount(ctx: &mut Ctx, a: &Args) {
    let key = a.get(1);
    let mut s = ctx.locks.key(key);
    let mut b = itoa::Buffer::new();
    // Redis 7.0 looks the key up before it reads the range.
    let Some(v) = s.get(key) else {
        return ctx.r.int(0);
    };
    let Some(bytes) = v.str_bytes(&mut b) else {
        return ctx.r.error(WRONGTYPE);
    };
    let range = match a.len() {
        2 => resolve(bytes.len(), 0, -1, false),
        4 | 5 => {
            let (Some(start), Some(end)) = (parse_i64(a.get(2)), parse_i64(a.get(3))) else {
                return ctx.r.error(NOT_INT);
            };
            // Redis answers this range before it reads the unit.
            if start < 0 && end < 0 && start > end {
                return ctx.r.int(0);
            }
            let Ok(bits) = unit_is_bit((a.len() == 5).then(|| a.get(4))) else {
                return ctx.r.error(SYNTAX);
            };
            resolve(bytes.len(), start, end, bits)
        }
        _ => return ctx.r.error(SYNTAX),
    };
    let n = range.map_or(0, |r| count_bits(bytes, &r));
    ctx.r.int(n as i64);
}

/// BITPOS over a resolved range: the masks' bits count as not matching.
pub fn bitpos_in(bytes: &[u8], bit: u8, r: &ByteRange, end_given: bool) -> i64 {
    let window = &bytes[r.start..=r.end];
    let n = window.len();
    // Bits outside a BIT range must not match: cleared when looking for
    // 1s, set when looking for 0s.
    let fix = |b: u8, out: u8| if bit == 1 { b & !out } else { b | out };
    let byte = |i: usize| {
        let mut b = window[i];
        if i == 0 {
            b = fix(b, r.first_out);
        }
        if i == n - 1 {
            b = fix(b, r.last_out);
        }
        if bit == 1 {
            b
        } else {
            !b
        }
    };
    let pos = (0..n)
        .find(|&i| byte(i) != 0)
        .map(|i| (i as i64) * 8 + byte(i).leading_zeros() as i64);
    match pos {
        Some(p) => p + (r.start as i64) * 8,
        // No 1: -1. No 0: the bit past the range, unless the range was
        // given in full (its padding does not count then).
        None if bit == 1 || end_given => -1,
        None => ((r.start + n) as i64) * 8,
    }
}

pub fn bitpos(ctx: &mut Ctx, a: &Args) {
    let key = a.get(1);
    let Some(bit) = parse_i64(a.get(2)) else {
        return ctx.r.error(NOT_INT);
    };
    if bit != 0 && bit != 1 {
        return ctx.r.error("ERR The bit argument must be 1 or 0.");
    }
    let bit = bit as u8;
    let mut s = ctx.locks.key(key);
    let mut b = itoa::Buffer::new();
    // A missing key is an endless run of 0s.
    let Some(v) = s.get(key) else {
        return ctx.r.int(if bit == 1 { -1 } else { 0 });
    };
    let Some(bytes) = v.str_bytes(&mut b) else {
        return ctx.r.error(WRONGTYPE);
    };
    let len = bytes.len();
    let (range, end_given) = match a.len() {
        3 => (resolve(len, 0, -1, false), false),
        4..=6 => {
            let Some(start) = parse_i64(a.get(3)) else {
                return ctx.r.error(NOT_INT);
            };
            let Ok(bits) = unit_is_bit((a.len() == 6).then(|| a.get(5))) else {
                return ctx.r.error(SYNTAX);
            };
            let end = if a.len() >= 5 {
                match parse_i64(a.get(4)) {
                    Some(e) => Some(e),
                    None => return ctx.r.error(NOT_INT),
                }
            } else {
                None
            };
            let total = if bits { (len as i64) << 3 } else { len as i64 };
            let e = end.unwrap_or(total - 1);
            // Redis resolves a negative start and end without the
            // "start > end" shortcut BITCOUNT has.
            let r = resolve_pos(len, start, e, bits);
            (r, end.is_some())
        }
        _ => return ctx.r.error(SYNTAX),
    };
    let pos = match range {
        None => -1,
        Some(r) => bitpos_in(bytes, bit, &r, end_given),
    };
    ctx.r.int(pos);
}

/// BITPOS's range: like [`resolve`], without its shortcut for two negative
/// indexes in the wrong order (the clamping then gives the answer).
fn resolve_pos(len: usize, start: i64, end: i64, bits: bool) -> Option<ByteRange> {
    let total = if bits { (len as i64) << 3 } else { len as i64 };
    let s = if start < 0 {
        (start + total).max(0)
    } else {
        start
    };
    let e = if end < 0 { (end + total).max(0) } else { end };
    resolve(len, s, e, bits)
}

/// BITOP's operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    And,
    Or,
    Xor,
    Not,
}

/// Folds one more source into BITOP's result `acc` (the first source
/// starts it). Shorter strings count as zero-padded to the longest.
pub fn fold(op: Op, acc: &mut Vec<u8>, src: &[u8], first: bool) {
    if first {
        acc.clear();
        match op {
            Op::Not => acc.extend(src.iter().map(|b| !b)),
            _ => acc.extend_from_slice(src),
        }
        return;
    }
    if acc.len() < src.len() {
        acc.resize(src.len(), 0);
    }
    for (i, o) in acc.iter_mut().enumerate() {
        let b = src.get(i).copied().unwrap_or(0);
        match op {
            Op::And => *o &= b,
            Op::Or => *o |= b,
            Op::Xor => *o ^= b,
            Op::Not => {}
        }
    }
}

/// The result of `op` over `srcs`.
pub fn combine(op: Op, srcs: &[Vec<u8>]) -> Vec<u8> {
    let mut acc = Vec::new();
    for (i, s) in srcs.iter().enumerate() {
        fold(op, &mut acc, s, i == 0);
    }
    acc
}

pub fn bitop(ctx: &mut Ctx, a: &Args) {
    let name = a.get(1);
    let op = if eq_ic(name, "AND") {
        Op::And
    } else if eq_ic(name, "OR") {
        Op::Or
    } else if eq_ic(name, "XOR") {
        Op::Xor
    } else if eq_ic(name, "NOT") {
        Op::Not
    } else {
        return ctx.r.error(SYNTAX);
    };
    if op == Op::Not && a.len() != 4 {
        return ctx
            .r
            .error("ERR BITOP NOT must be called with a single source key.");
    }
    let dst = a.get(2);
    let keys: Vec<&[u8]> = a.iter().skip(3).collect();
    // Folded source by source under the keys' locks, each read in place.
    let mut out: Vec<u8> = Vec::new();
    {
        let mut m = ctx.locks.keys(keys.iter().copied().chain(Some(dst)));
        let mut b = itoa::Buffer::new();
        for (i, k) in keys.iter().enumerate() {
            let src: &[u8] = match m.key(k).get(k) {
                None => &[],
                Some(v) => match v.str_bytes(&mut b) {
                    Some(x) => x,
                    None => {
                        drop(m);
                        return ctx.r.error(WRONGTYPE);
                    }
                },
            };
            fold(op, &mut out, src, i == 0);
        }
    }
    let n = out.len();
    let events = ctx.events();
    let mut s = ctx.locks.key(dst);
    if out.is_empty() {
        if s.delete_freeing(dst, &crate::keyspace::lazyfree::SERVER_DEL) {
            events.emit(ev::GENERIC, "del", dst);
            s.log(&[b"DEL".as_slice(), dst]);
            drop(s);
            ctx.dirty(1);
        }
        return ctx.r.int(0);
    }
    // The result, not the operation: the sources may differ on replay.
    s.log(&[b"SET".as_slice(), dst, &out]);
    s.set(dst, Value::Raw(Box::new(out)), false);
    events.emit(ev::STRING, "set", dst);
    drop(s);
    ctx.dirty(1);
    ctx.r.int(n as i64);
}

/// How BITFIELD's SET and INCRBY treat a value that does not fit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Overflow {
    Wrap,
    Sat,
    Fail,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum FieldOp {
    Get,
    Set,
    Incrby,
}

/// One BITFIELD operation, as parsed.
#[derive(Clone, Copy, Debug)]
struct Field {
    op: FieldOp,
    signed: bool,
    bits: u32,
    offset: u64,
    value: i64,
    overflow: Overflow,
}

const BAD_TYPE: &str =
    "ERR Invalid bitfield type. Use something like i16 u8. Note that u64 is not supported but i64 is.";

/// `i1`..`i64` or `u1`..`u63`.
fn field_type(a: &[u8]) -> Option<(bool, u32)> {
    let signed = match a.first() {
        Some(b'i') => true,
        Some(b'u') => false,
        _ => return None,
    };
    let bits = parse_i64(&a[1..])?;
    let max = if signed { 64 } else { 63 };
    (1..=max).contains(&bits).then_some((signed, bits as u32))
}

/// A BITFIELD offset: a bit number, or `#N` for the N-th field of this
/// width.
fn field_offset(ctx: &Ctx, a: &[u8], bits: u32) -> Option<u64> {
    let (hash, digits) = match a.first() {
        Some(b'#') => (true, &a[1..]),
        _ => (false, a),
    };
    let mut n = parse_i64(digits)?;
    if hash {
        n = n.wrapping_mul(bits as i64);
    }
    in_bulk_limit(ctx, n)
}

/// Reads `bits` bits at `offset` as an unsigned number (0 past the end).
pub fn get_unsigned(p: &[u8], offset: u64, bits: u32) -> u64 {
    let mut v = 0u64;
    for j in 0..bits as u64 {
        v = (v << 1) | bit_at(p, offset + j) as u64;
    }
    v
}

/// Reads `bits` bits at `offset` as a two's complement number.
pub fn get_signed(p: &[u8], offset: u64, bits: u32) -> i64 {
    let mut v = get_unsigned(p, offset, bits) as i64;
    if bits < 64 && v & (1i64 << (bits - 1)) != 0 {
        v |= (-1i64) << bits;
    }
    v
}

/// Writes the low `bits` bits of `v` at `offset` (the buffer is long enough).
pub fn set_unsigned(p: &mut [u8], offset: u64, bits: u32, v: u64) {
    for j in 0..bits as u64 {
        let on = ((v >> (bits as u64 - 1 - j)) & 1) as u8;
        set_bit(p, offset + j, on);
    }
}

/// Redis's unsigned overflow rule: Some(value to store) when `value + incr`
/// does not fit in `bits` (wrapped or saturated; None for FAIL), with
/// `overflowed` telling whether it did not fit.
fn unsigned_overflow(value: u64, incr: i64, bits: u32, how: Overflow) -> (bool, u64) {
    let max: u64 = if bits == 64 {
        u64::MAX
    } else {
        (1u64 << bits) - 1
    };
    let maxincr = max.wrapping_sub(value) as i64;
    let minincr = (value as i64).wrapping_neg();
    let wrap = || {
        let mask = u64::MAX.checked_shl(bits).unwrap_or(0);
        value.wrapping_add(incr as u64) & !mask
    };
    if value > max || (incr > 0 && incr > maxincr) {
        return (true, if how == Overflow::Wrap { wrap() } else { max });
    }
    if incr < 0 && incr < minincr {
        return (true, if how == Overflow::Wrap { wrap() } else { 0 });
    }
    (false, 0)
}

/// Redis's signed overflow rule (see [`unsigned_overflow`]).
fn signed_overflow(value: i64, incr: i64, bits: u32, how: Overflow) -> (bool, i64) {
    let max: i64 = if bits == 64 {
        i64::MAX
    } else {
        (1i64 << (bits - 1)) - 1
    };
    let min = -max - 1;
    let maxincr = (max as u64).wrapping_sub(value as u64) as i64;
    let minincr = min.wrapping_sub(value);
    let wrap = || {
        let mut c = (value as u64).wrapping_add(incr as u64);
        if bits < 64 {
            let msb = 1u64 << (bits - 1);
            let mask = u64::MAX << bits;
            if c & msb != 0 {
                c |= mask;
            } else {
                c &= !mask;
            }
        }
        c as i64
    };
    if value > max || (bits != 64 && incr > maxincr) || (value >= 0 && incr > 0 && incr > maxincr) {
        return (true, if how == Overflow::Wrap { wrap() } else { max });
    }
    if value < min || (bits != 64 && incr < minincr) || (value < 0 && incr < 0 && incr < minincr) {
        return (true, if how == Overflow::Wrap { wrap() } else { min });
    }
    (false, 0)
}

pub fn bitfield(ctx: &mut Ctx, a: &Args) {
    bitfield_generic(ctx, a, false)
}

pub fn bitfield_ro(ctx: &mut Ctx, a: &Args) {
    bitfield_generic(ctx, a, true)
}

/// Parses every operation first (any error stops the command before it
/// runs), then runs them in order on one lookup of the key.
fn bitfield_generic(ctx: &mut Ctx, a: &Args, ro: bool) {
    let key = a.get(1);
    let mut ops: Vec<Field> = Vec::new();
    let mut overflow = Overflow::Wrap;
    let mut highest: Option<u64> = None;
    let mut j = 2;
    while j < a.len() {
        let rem = a.len() - j - 1;
        let sub = a.get(j);
        let op = if eq_ic(sub, "GET") && rem >= 2 {
            FieldOp::Get
        } else if eq_ic(sub, "SET") && rem >= 3 {
            FieldOp::Set
        } else if eq_ic(sub, "INCRBY") && rem >= 3 {
            FieldOp::Incrby
        } else if eq_ic(sub, "OVERFLOW") && rem >= 1 {
            let t = a.get(j + 1);
            overflow = if eq_ic(t, "WRAP") {
                Overflow::Wrap
            } else if eq_ic(t, "SAT") {
                Overflow::Sat
            } else if eq_ic(t, "FAIL") {
                Overflow::Fail
            } else {
                return ctx.r.error("ERR Invalid OVERFLOW type specified");
            };
            j += 2;
            continue;
        } else {
            return ctx.r.error(SYNTAX);
        };
        let Some((signed, bits)) = field_type(a.get(j + 1)) else {
            return ctx.r.error(BAD_TYPE);
        };
        let Some(offset) = field_offset(ctx, a.get(j + 2), bits) else {
            return ctx.r.error(BAD_OFFSET);
        };
        let mut value = 0;
        if op != FieldOp::Get {
            let end = offset + bits as u64 - 1;
            highest = Some(highest.map_or(end, |h| h.max(end)));
            match parse_i64(a.get(j + 3)) {
                Some(v) => value = v,
                None => return ctx.r.error(NOT_INT),
            }
        }
        ops.push(Field {
            op,
            signed,
            bits,
            offset,
            value,
            overflow,
        });
        j += if op == FieldOp::Get { 3 } else { 4 };
    }
    let events = ctx.events();
    let mut s = ctx.locks.key(key);
    let Some(highest) = highest else {
        // Only GETs: read in place; a missing key reads as zeros.
        let mut b = itoa::Buffer::new();
        let bytes: &[u8] = match s.get(key) {
            None => &[],
            Some(v) => match v.str_bytes(&mut b) {
                Some(x) => x,
                None => return ctx.r.error(WRONGTYPE),
            },
        };
        ctx.r.array(ops.len());
        for f in &ops {
            if f.signed {
                ctx.r.int(get_signed(bytes, f.offset, f.bits));
            } else {
                ctx.r.int(get_unsigned(bytes, f.offset, f.bits) as i64);
            }
        }
        return;
    };
    if ro {
        return ctx
            .r
            .error("ERR BITFIELD_RO only supports the GET subcommand");
    }
    let need = (highest >> 3) as usize + 1;
    let created = match s.get(key) {
        None => {
            s.set(key, Value::Raw(Box::new(vec![0u8; need])), false);
            true
        }
        Some(v) if v.str_len().is_none() => return ctx.r.error(WRONGTYPE),
        Some(_) => false,
    };
    let Some(buf) = s.get_mut(key).and_then(|v| v.make_raw()) else {
        return ctx.r.error(WRONGTYPE);
    };
    // A new or grown string counts as a change even where a SET writes
    // the zeros it already holds.
    let grown = buf.len() < need;
    if grown {
        buf.resize(need, 0);
    }
    let created = created || grown;
    ctx.r.array(ops.len());
    let mut changes = 0u64;
    for f in &ops {
        match f.op {
            FieldOp::Get => {
                if f.signed {
                    ctx.r.int(get_signed(buf, f.offset, f.bits));
                } else {
                    ctx.r.int(get_unsigned(buf, f.offset, f.bits) as i64);
                }
            }
            FieldOp::Set | FieldOp::Incrby => {
                let incr = f.op == FieldOp::Incrby;
                let (reply, old, new, failed) = if f.signed {
                    let old = get_signed(buf, f.offset, f.bits);
                    let (base, step) = if incr { (old, f.value) } else { (f.value, 0) };
                    let (over, limit) = signed_overflow(base, step, f.bits, f.overflow);
                    let new = if over { limit } else { base.wrapping_add(step) };
                    let reply = if incr { new } else { old };
                    (
                        reply,
                        old as u64,
                        new as u64,
                        over && f.overflow == Overflow::Fail,
                    )
                } else {
                    let old = get_unsigned(buf, f.offset, f.bits);
                    let (base, step) = if incr {
                        (old, f.value)
                    } else {
                        (f.value as u64, 0)
                    };
                    let (over, limit) = unsigned_overflow(base, step, f.bits, f.overflow);
                    let new = if over {
                        limit
                    } else {
                        base.wrapping_add(step as u64)
                    };
                    let reply = if incr { new as i64 } else { old as i64 };
                    (reply, old, new, over && f.overflow == Overflow::Fail)
                };
                if failed {
                    ctx.r.null();
                    continue;
                }
                ctx.r.int(reply);
                set_unsigned(buf, f.offset, f.bits, new);
                if created || old != new {
                    changes += 1;
                }
            }
        }
    }
    if changes > 0 {
        s.touch(key);
        let args: Vec<&[u8]> = a.iter().collect();
        s.log(&args);
        events.emit(ev::STRING, "setbit", key);
        drop(s);
        ctx.dirty(changes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bits_are_msb_first() {
        assert_eq!(bit_at(&[0b1000_0000], 0), 1);
        assert_eq!(bit_at(&[0b1000_0000], 1), 0);
        assert_eq!(bit_at(&[0, 1], 15), 1);
        assert_eq!(bit_at(&[0xff], 8), 0);
        let mut b = vec![0u8; 2];
        set_bit(&mut b, 9, 1);
        assert_eq!(b, vec![0, 0b0100_0000]);
        set_bit(&mut b, 9, 0);
        assert_eq!(b, vec![0, 0]);
    }

    #[test]
    fn popcount_by_words_equals_by_bytes() {
        let data: Vec<u8> = (0..1000u32)
            .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
            .collect();
        for len in [0, 1, 7, 8, 9, 63, 64, 65, 1000] {
            let want: u64 = data[..len].iter().map(|b| b.count_ones() as u64).sum();
            assert_eq!(popcount(&data[..len]), want, "len {len}");
        }
    }

    #[test]
    fn bitcount_ranges_in_bytes_and_bits() {
        let s = b"foobar";
        let all = resolve(s.len(), 0, -1, false).unwrap();
        assert_eq!(count_bits(s, &all), 26);
        assert_eq!(count_bits(s, &resolve(6, 1, 1, false).unwrap()), 6);
        assert_eq!(count_bits(s, &resolve(6, 5, 30, true).unwrap()), 17);
        assert_eq!(resolve(6, -1, -2, false), None);
        assert_eq!(resolve(0, 0, -1, false), None);
    }

    #[test]
    fn bitpos_finds_first_bits_and_padding() {
        let whole = |n| resolve(n, 0, -1, false).unwrap();
        assert_eq!(bitpos_in(&[0xff, 0xf0, 0], 0, &whole(3), false), 12);
        assert_eq!(bitpos_in(&[0xff, 0xff], 0, &whole(2), false), 16);
        assert_eq!(bitpos_in(&[0, 0], 1, &whole(2), false), -1);
        let r = resolve(3, 0, -1, false).unwrap();
        assert_eq!(bitpos_in(&[0xff, 0xff, 0xff], 0, &r, true), -1);
        assert_eq!(bitpos_in(&[0xff, 0xff, 0xff], 0, &r, false), 24);
        let r = resolve(3, 7, 15, true).unwrap();
        assert_eq!(bitpos_in(&[0x00, 0xff, 0x00], 1, &r, true), 8);
        assert_eq!(bitpos_in(&[0x01, 0xff, 0x00], 1, &r, true), 7);
    }

    #[test]
    fn bitfields_read_and_write_like_redis() {
        let mut p = vec![0u8; 2];
        set_unsigned(&mut p, 3, 5, 0b10110);
        assert_eq!(p, vec![0b0001_0110, 0]);
        assert_eq!(get_unsigned(&p, 3, 5), 22);
        assert_eq!(get_signed(&p, 3, 5), 22 - 32);
        assert_eq!(get_unsigned(&p, 60, 8), 0);
        assert_eq!(field_type(b"i64"), Some((true, 64)));
        assert_eq!(field_type(b"u64"), None);
        assert_eq!(field_type(b"u63"), Some((false, 63)));
        assert_eq!(field_type(b"I8"), None);
        assert_eq!(field_type(b"i0"), None);
        // u8: 250 + 10 wraps to 4, saturates at 255.
        assert_eq!(unsigned_overflow(250, 10, 8, Overflow::Wrap), (true, 4));
        assert_eq!(unsigned_overflow(250, 10, 8, Overflow::Sat), (true, 255));
        assert_eq!(unsigned_overflow(5, -10, 8, Overflow::Sat), (true, 0));
        assert!(!unsigned_overflow(5, 10, 8, Overflow::Sat).0);
        // i8: 120 + 10 wraps to -126, saturates at 127; -120 - 10 to -128.
        assert_eq!(signed_overflow(120, 10, 8, Overflow::Wrap), (true, -126));
        assert_eq!(signed_overflow(120, 10, 8, Overflow::Sat), (true, 127));
        assert_eq!(signed_overflow(-120, -10, 8, Overflow::Sat), (true, -128));
        assert_eq!(
            signed_overflow(i64::MAX, 1, 64, Overflow::Wrap),
            (true, i64::MIN)
        );
    }

    #[test]
    fn bitop_pads_shorter_sources() {
        let a = vec![0xf0, 0x0f];
        let b = vec![0xff];
        assert_eq!(combine(Op::And, &[a.clone(), b.clone()]), vec![0xf0, 0]);
        assert_eq!(combine(Op::Or, &[a.clone(), b.clone()]), vec![0xff, 0x0f]);
        assert_eq!(combine(Op::Xor, &[a.clone(), b]), vec![0x0f, 0x0f]);
        assert_eq!(combine(Op::Not, &[a]), vec![0x0f, 0xf0]);
        assert_eq!(combine(Op::And, &[vec![], vec![]]), Vec::<u8>::new());
    }
}
