//! HyperLogLog values in Redis's string layout, so a value written by
//! redis-server counts the same here and the other way round.
//!
//! A 16-byte header (`HYLL`, encoding, 3 unused bytes, the cached
//! cardinality little-endian with bit 63 meaning "stale") followed by
//! 16384 six-bit registers, either packed (dense, 12288 bytes) or
//! run-length coded (sparse: ZERO `00xxxxxx`, XZERO `01xxxxxx yyyyyyyy`,
//! VAL `1vvvvvxx`). The sparse edits follow Redis's exact steps (split the
//! opcode, then merge neighbouring VALs over a window of five) because the
//! bytes are visible to GET and DUMP.

pub const HDR: usize = 16;
const P: u32 = 14;
const Q: usize = 64 - P as usize;
pub const REGISTERS: usize = 1 << P;
const REGISTER_MAX: u8 = 63;
pub const DENSE_SIZE: usize = HDR + (REGISTERS * 6).div_ceil(8);
const DENSE: u8 = 0;
const SPARSE: u8 = 1;
const VAL_MAX_VALUE: u8 = 32;
const VAL_MAX_LEN: usize = 4;
const ZERO_MAX_LEN: usize = 64;
const XZERO_MAX_LEN: usize = 16384;
const ALPHA_INF: f64 = 0.721_347_520_444_481_7;

/// The value's registers do not add up (a corrupt sparse body).
#[derive(Debug, PartialEq, Eq)]
pub struct Corrupt;

/// A fresh, empty HLL: sparse, one XZERO covering every register, a valid
/// cached cardinality of 0.
pub fn new() -> Vec<u8> {
    let mut v = Vec::with_capacity(HDR + 2);
    v.extend_from_slice(b"HYLL");
    v.extend_from_slice(&[SPARSE, 0, 0, 0]);
    v.extend_from_slice(&[0; 8]);
    let mut left = REGISTERS;
    while left > 0 {
        let n = left.min(XZERO_MAX_LEN);
        v.extend_from_slice(&xzero_op(n));
        left -= n;
    }
    v
}

/// Whether a string passes Redis's HLL check (magic, encoding, and the
/// exact size of a dense value); the sparse body is checked when read.
pub fn is_valid(v: &[u8]) -> bool {
    v.len() >= HDR
        && &v[..4] == b"HYLL"
        && v[4] <= SPARSE
        && (v[4] != DENSE || v.len() == DENSE_SIZE)
}

pub fn is_sparse(v: &[u8]) -> bool {
    v[4] == SPARSE
}

/// The cached cardinality, when it is not stale.
pub fn cached(v: &[u8]) -> Option<u64> {
    if v[15] & 0x80 != 0 {
        return None;
    }
    let mut b = [0u8; 8];
    b.copy_from_slice(&v[8..16]);
    Some(u64::from_le_bytes(b))
}

pub fn store_cache(v: &mut [u8], card: u64) {
    v[8..16].copy_from_slice(&card.to_le_bytes());
}

pub fn invalidate(v: &mut [u8]) {
    v[15] |= 0x80;
}

/// MurmurHash64A as Redis uses it (little-endian reads on every host).
pub fn murmur64a(key: &[u8], seed: u64) -> u64 {
    const M: u64 = 0xc6a4_a793_5bd1_e995;
    const R: u32 = 47;
    let mut h = seed ^ (key.len() as u64).wrapping_mul(M);
    let mut chunks = key.chunks_exact(8);
    for c in &mut chunks {
        let mut k = u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h ^= k;
        h = h.wrapping_mul(M);
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        for (i, b) in rest.iter().enumerate() {
            h ^= (*b as u64) << (8 * i);
        }
        h = h.wrapping_mul(M);
    }
    h ^= h >> R;
    h = h.wrapping_mul(M);
    h ^= h >> R;
    h
}

/// The register an element lands in and the length of its `0…01` run.
fn pattern(ele: &[u8]) -> (usize, u8) {
    let hash = murmur64a(ele, 0xadc8_3b19);
    let index = (hash as usize) & (REGISTERS - 1);
    let rest = (hash >> P) | (1u64 << Q);
    (index, rest.trailing_zeros() as u8 + 1)
}

// ---- dense registers: 6 bits each, least significant bits first ----

pub fn dense_get(regs: &[u8], i: usize) -> u8 {
    let byte = i * 6 / 8;
    let fb = (i * 6) & 7;
    let b0 = regs[byte] as u32;
    let b1 = regs.get(byte + 1).copied().unwrap_or(0) as u32;
    (((b0 >> fb) | (b1 << (8 - fb))) & REGISTER_MAX as u32) as u8
}

fn dense_put(regs: &mut [u8], i: usize, val: u8) {
    let byte = i * 6 / 8;
    let fb = (i * 6) & 7;
    let v = val as u32;
    regs[byte] &= !((REGISTER_MAX as u32) << fb) as u8;
    regs[byte] |= (v << fb) as u8;
    // The last register ends inside its first byte.
    if let Some(b) = regs.get_mut(byte + 1) {
        *b &= !((REGISTER_MAX as u32) >> (8 - fb)) as u8;
        *b |= (v >> (8 - fb)) as u8;
    }
}

/// Raises a dense register to `count`; true when it changed.
fn dense_set(regs: &mut [u8], i: usize, count: u8) -> bool {
    if count > dense_get(regs, i) {
        dense_put(regs, i, count);
        true
    } else {
        false
    }
}

fn dense_histogram(regs: &[u8], h: &mut [u32; 64]) {
    // Four registers in every three bytes.
    for c in regs[..REGISTERS * 6 / 8].chunks_exact(3) {
        let (a, b, d) = (c[0], c[1], c[2]);
        h[(a & 63) as usize] += 1;
        h[((a >> 6 | b << 2) & 63) as usize] += 1;
        h[((b >> 4 | d << 4) & 63) as usize] += 1;
        h[(d >> 2) as usize] += 1;
    }
}

// ---- sparse opcodes ----

fn is_zero(b: u8) -> bool {
    b & 0xc0 == 0
}
fn is_xzero(b: u8) -> bool {
    b & 0xc0 == 0x40
}
fn is_val(b: u8) -> bool {
    b & 0x80 != 0
}
fn zero_len(b: u8) -> usize {
    (b & 0x3f) as usize + 1
}
/// An XZERO's length; a truncated one reads a 0 second byte, as the NUL
/// after Redis's string does.
fn xzero_len(v: &[u8], p: usize) -> usize {
    ((((v[p] & 0x3f) as usize) << 8) | v.get(p + 1).copied().unwrap_or(0) as usize) + 1
}
fn val_value(b: u8) -> u8 {
    ((b >> 2) & 0x1f) + 1
}
fn val_len(b: u8) -> usize {
    (b & 3) as usize + 1
}
fn val_op(val: u8, len: usize) -> u8 {
    0x80 | ((val - 1) << 2) | (len - 1) as u8
}
fn xzero_op(len: usize) -> [u8; 2] {
    let l = len - 1;
    [(l >> 8) as u8 | 0x40, (l & 0xff) as u8]
}

/// A run of zero registers: ZERO up to 64, XZERO beyond.
fn push_zeros(seq: &mut Vec<u8>, len: usize) {
    if len > ZERO_MAX_LEN {
        seq.extend_from_slice(&xzero_op(len));
    } else {
        seq.push((len - 1) as u8);
    }
}

/// Every VAL run of a sparse body: (first register, run length, value).
/// The runs must cover the registers exactly: a run past the last one is
/// corrupt (Redis 7.0.15 as Debian patches it for CVE-2025-32023 stops
/// there rather than ignoring the excess).
fn sparse_runs(body: &[u8], mut f: impl FnMut(usize, usize, u8)) -> Result<(), Corrupt> {
    let mut idx = 0usize;
    let mut p = 0usize;
    while p < body.len() {
        let b = body[p];
        let (len, step) = if is_zero(b) {
            (zero_len(b), 1)
        } else if is_xzero(b) {
            (xzero_len(body, p), 2)
        } else {
            (val_len(b), 1)
        };
        if idx + len > REGISTERS {
            return Err(Corrupt);
        }
        if is_val(b) {
            f(idx, len, val_value(b));
        }
        idx += len;
        p += step;
    }
    if idx == REGISTERS {
        Ok(())
    } else {
        Err(Corrupt)
    }
}

/// Rewrites a sparse value as dense (the header, cache included, kept).
pub fn to_dense(v: &mut Vec<u8>) -> Result<(), Corrupt> {
    if v[4] == DENSE {
        return Ok(());
    }
    let mut d = vec![0u8; DENSE_SIZE];
    d[..HDR].copy_from_slice(&v[..HDR]);
    d[4] = DENSE;
    sparse_runs(&v[HDR..], |first, len, val| {
        for i in first..first + len {
            dense_put(&mut d[HDR..], i, val);
        }
    })?;
    *v = d;
    Ok(())
}

/// Raises register `index` to `count` in a sparse value, promoting it to
/// dense when the value does not fit VAL or the value would outgrow
/// `sparse_max` bytes. Ok(true) when a register changed.
fn sparse_set(
    v: &mut Vec<u8>,
    index: usize,
    count: u8,
    sparse_max: usize,
) -> Result<bool, Corrupt> {
    if count > VAL_MAX_VALUE {
        return promote(v, index, count);
    }
    // Step 1: the opcode covering `index`.
    let end = v.len();
    let mut p = HDR;
    let mut first = 0usize;
    let mut prev: Option<usize> = None;
    let mut span = 0usize;
    while p < end {
        let b = v[p];
        let oplen;
        if is_zero(b) {
            span = zero_len(b);
            oplen = 1;
        } else if is_val(b) {
            span = val_len(b);
            oplen = 1;
        } else {
            span = xzero_len(v, p);
            oplen = 2;
        }
        if index < first + span {
            break;
        }
        prev = Some(p);
        p += oplen;
        first += span;
    }
    if span == 0 || p >= end {
        return Err(Corrupt);
    }
    let op = v[p];
    let oldlen = if is_xzero(op) { 2 } else { 1 };
    // Step 2: the trivial cases edit one byte.
    let runlen = span;
    let trivial = if is_val(op) {
        if val_value(op) >= count {
            return Ok(false);
        }
        runlen == 1
    } else {
        is_zero(op) && runlen == 1
    };
    if trivial {
        v[p] = val_op(count, 1);
    } else {
        // The general case splits the opcode in up to three.
        let last = first + span - 1;
        let mut seq: Vec<u8> = Vec::with_capacity(5);
        if is_val(op) {
            let cur = val_value(op);
            if index != first {
                seq.push(val_op(cur, index - first));
            }
            seq.push(val_op(count, 1));
            if index != last {
                seq.push(val_op(cur, last - index));
            }
        } else {
            if index != first {
                push_zeros(&mut seq, index - first);
            }
            seq.push(val_op(count, 1));
            if index != last {
                push_zeros(&mut seq, last - index);
            }
        }
        // Step 3: put the sequence in place of the opcode.
        let delta = seq.len() as isize - oldlen as isize;
        if delta > 0 && end + delta as usize > sparse_max {
            return promote(v, index, count);
        }
        let new_len = (end as isize + delta) as usize;
        let tail_from = (p + oldlen).min(end);
        v.splice(p..tail_from, seq);
        // An XZERO cut short at the end counted a byte it lacked.
        v.truncate(new_len);
    }
    // Step 4: merge equal neighbouring VALs, five opcodes from the one
    // before the edit.
    let mut p = prev.unwrap_or(HDR);
    let mut scan = 5;
    while p < v.len() {
        if scan == 0 {
            break;
        }
        scan -= 1;
        let b = v[p];
        if is_xzero(b) {
            p += 2;
            continue;
        }
        if is_zero(b) {
            p += 1;
            continue;
        }
        if p + 1 < v.len() && is_val(v[p + 1]) {
            let (v1, v2) = (val_value(b), val_value(v[p + 1]));
            let len = val_len(b) + val_len(v[p + 1]);
            if v1 == v2 && len <= VAL_MAX_LEN {
                v[p + 1] = val_op(v1, len);
                v.remove(p);
                continue;
            }
        }
        p += 1;
    }
    invalidate(v);
    Ok(true)
}

fn promote(v: &mut Vec<u8>, index: usize, count: u8) -> Result<bool, Corrupt> {
    to_dense(v)?;
    dense_set(&mut v[HDR..], index, count);
    Ok(true)
}

/// Raises one register in either encoding.
pub fn set(v: &mut Vec<u8>, index: usize, count: u8, sparse_max: usize) -> Result<bool, Corrupt> {
    match v[4] {
        DENSE => Ok(dense_set(&mut v[HDR..], index, count)),
        SPARSE => sparse_set(v, index, count, sparse_max),
        _ => Err(Corrupt),
    }
}

/// Adds one element; Ok(true) when a register grew.
pub fn add(v: &mut Vec<u8>, ele: &[u8], sparse_max: usize) -> Result<bool, Corrupt> {
    let (index, count) = pattern(ele);
    set(v, index, count, sparse_max)
}

/// Adds one element to a dense value; true when a register grew.
pub fn add_dense(v: &mut [u8], ele: &[u8]) -> bool {
    let (index, count) = pattern(ele);
    dense_set(&mut v[HDR..], index, count)
}

/// Raises `max[i]` to each register of `v` (PFCOUNT of many, PFMERGE).
pub fn merge_into(max: &mut [u8; REGISTERS], v: &[u8]) -> Result<(), Corrupt> {
    if v[4] == DENSE {
        for (i, m) in max.iter_mut().enumerate() {
            *m = (*m).max(dense_get(&v[HDR..], i));
        }
        Ok(())
    } else {
        sparse_runs(&v[HDR..], |first, len, val| {
            for m in &mut max[first..first + len] {
                *m = (*m).max(val);
            }
        })
    }
}

/// The estimated cardinality of a value (ignoring its cache).
pub fn count(v: &[u8]) -> Result<u64, Corrupt> {
    let mut h = [0u32; 64];
    if v[4] == DENSE {
        dense_histogram(&v[HDR..], &mut h);
    } else {
        // Unlike a merge, counting reads every opcode and only then checks
        // the total, so an overlong VAL is counted rather than cut.
        let body = &v[HDR..];
        let (mut idx, mut p) = (0usize, 0usize);
        while p < body.len() {
            let b = body[p];
            let (n, r, step) = if is_zero(b) {
                (zero_len(b), 0, 1)
            } else if is_xzero(b) {
                (xzero_len(body, p), 0, 2)
            } else {
                (val_len(b), val_value(b) as usize, 1)
            };
            idx += n;
            h[r] = h[r].wrapping_add(n as u32);
            p += step;
        }
        if idx != REGISTERS {
            return Err(Corrupt);
        }
    }
    Ok(estimate(&h))
}

/// The cardinality of plain byte registers (the union PFCOUNT builds).
pub fn count_registers(regs: &[u8; REGISTERS]) -> u64 {
    let mut h = [0u32; 64];
    for &r in regs.iter() {
        h[(r & 63) as usize] += 1;
    }
    estimate(&h)
}

/// Ertl's estimator ("New cardinality estimation algorithms for
/// HyperLogLog sketches"), as Redis 7.0 computes it.
fn estimate(h: &[u32; 64]) -> u64 {
    let m = REGISTERS as f64;
    let mut z = m * tau((m - h[Q + 1] as f64) / m);
    for j in (1..=Q).rev() {
        z += h[j] as f64;
        z *= 0.5;
    }
    z += m * sigma(h[0] as f64 / m);
    (ALPHA_INF * m * m / z).round() as u64
}

fn sigma(mut x: f64) -> f64 {
    if x == 1.0 {
        return f64::INFINITY;
    }
    let mut y = 1.0;
    let mut z = x;
    loop {
        x *= x;
        let prev = z;
        z += x * y;
        y += y;
        if prev == z {
            return z;
        }
    }
}

fn tau(mut x: f64) -> f64 {
    if x == 0.0 || x == 1.0 {
        return 0.0;
    }
    let mut y = 1.0;
    let mut z = 1.0 - x;
    loop {
        x = x.sqrt();
        let prev = z;
        y *= 0.5;
        z -= (1.0 - x) * (1.0 - x) * y;
        if prev == z {
            return z / 3.0;
        }
    }
}

/// Every register, as PFDEBUG GETREG lists them (the value must be dense).
pub fn registers(v: &[u8]) -> impl Iterator<Item = u8> + '_ {
    (0..REGISTERS).map(move |i| dense_get(&v[HDR..], i))
}

/// PFDEBUG DECODE's text for a sparse value: `z:N`, `Z:N`, `v:V,N`.
pub fn decode(v: &[u8]) -> String {
    use std::fmt::Write;
    let body = &v[HDR..];
    let mut s = String::new();
    let mut p = 0;
    while p < body.len() {
        let b = body[p];
        if is_zero(b) {
            let _ = write!(s, "z:{} ", zero_len(b));
            p += 1;
        } else if is_xzero(b) {
            let _ = write!(s, "Z:{} ", xzero_len(body, p));
            p += 2;
        } else {
            let _ = write!(s, "v:{},{} ", val_value(b), val_len(b));
            p += 1;
        }
    }
    s.truncate(s.trim_end_matches(' ').len());
    s
}

/// PFSELFTEST: register packing round-trips, and sparse and dense values
/// fed the same elements agree and stay within six standard errors.
/// Returns Redis's TESTFAILED message on failure.
pub fn self_test(sparse_max: usize, rng: &mut impl FnMut() -> u64) -> Result<(), String> {
    let mut regs = vec![0u8; DENSE_SIZE - HDR];
    let mut want = vec![0u8; REGISTERS];
    for _ in 0..1000 {
        for (i, w) in want.iter_mut().enumerate() {
            let r = (rng() as u8) & REGISTER_MAX;
            *w = r;
            dense_put(&mut regs, i, r);
        }
        for (i, &w) in want.iter().enumerate() {
            let got = dense_get(&regs, i);
            if got != w {
                return Err(format!(
                    "TESTFAILED Register {i} should be {w} but is {got}"
                ));
            }
        }
    }
    let mut dense = new();
    to_dense(&mut dense).map_err(|_| "TESTFAILED dense conversion".to_string())?;
    dense[HDR..].fill(0);
    let mut sparse = new();
    let relerr = 1.04 / (REGISTERS as f64).sqrt();
    let mut checkpoint: u64 = 1;
    let seed = rng();
    for j in 1..=10_000_000u64 {
        let ele = (j ^ seed).to_le_bytes();
        let (index, c) = pattern(&ele);
        dense_set(&mut dense[HDR..], index, c);
        set(&mut sparse, index, c, sparse_max).map_err(|_| "TESTFAILED corrupt".to_string())?;
        if j != checkpoint {
            continue;
        }
        if (j as usize) < sparse_max / 2 && !is_sparse(&sparse) {
            return Err("TESTFAILED sparse encoding not used".into());
        }
        let d = count(&dense).map_err(|_| "TESTFAILED corrupt".to_string())?;
        if Ok(d) != count(&sparse) {
            return Err("TESTFAILED dense/sparse disagree".into());
        }
        let abserr = (checkpoint as i64 - d as i64).unsigned_abs();
        let maxerr = if j == 10 {
            1
        } else {
            (relerr * 6.0 * checkpoint as f64).ceil() as u64
        };
        if abserr > maxerr {
            return Err(format!(
                "TESTFAILED Too big error. card:{checkpoint} abserr:{abserr}"
            ));
        }
        checkpoint *= 10;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_value_is_redis_s_empty_sparse_hll() {
        let v = new();
        assert_eq!(v.len(), 18);
        assert_eq!(&v[HDR..], &[0x7f, 0xff]);
        assert_eq!(cached(&v), Some(0));
        assert_eq!(count(&v), Ok(0));
        assert_eq!(decode(&v), "Z:16384");
    }

    #[test]
    fn dense_registers_round_trip_without_touching_neighbours() {
        let mut regs = vec![0u8; DENSE_SIZE - HDR];
        for i in 0..REGISTERS {
            dense_put(&mut regs, i, (i % 64) as u8);
        }
        for i in 0..REGISTERS {
            assert_eq!(dense_get(&regs, i), (i % 64) as u8);
        }
        let mut h = [0u32; 64];
        dense_histogram(&regs, &mut h);
        assert!(h.iter().all(|&n| n == 256));
    }

    #[test]
    fn sparse_and_dense_count_the_same() {
        let mut s = new();
        let mut d = new();
        to_dense(&mut d).unwrap();
        for i in 0..20_000u32 {
            let e = i.to_string();
            add(&mut s, e.as_bytes(), 1 << 20).unwrap();
            add(&mut d, e.as_bytes(), 1 << 20).unwrap();
            if i % 997 == 0 {
                assert_eq!(count(&s), count(&d));
            }
        }
        let c = count(&d).unwrap();
        assert!((19_000..21_000).contains(&c), "{c}");
    }

    #[test]
    fn a_sparse_value_outgrowing_the_limit_becomes_dense() {
        let mut v = new();
        let mut i = 0u32;
        while is_sparse(&v) {
            assert!(v.len() <= 3000);
            add(&mut v, &i.to_le_bytes(), 3000).unwrap();
            i += 1;
        }
        assert_eq!(v.len(), DENSE_SIZE);
    }

    #[test]
    fn a_short_sparse_body_is_corrupt() {
        let mut v = new();
        v.truncate(HDR + 1);
        v.push(0x00);
        assert_eq!(count(&v), Err(Corrupt));
        assert_eq!(add(&mut v, b"x", 3000).map(|_| ()), Err(Corrupt));
    }
}
