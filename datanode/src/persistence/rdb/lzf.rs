//! LZF, the compression Redis applies to strings over 20 bytes in RDB
//! files and DUMP payloads (`rdbcompression yes`).
//!
//! The stream is a sequence of literal runs (a control byte below 32, then
//! that many plus one bytes) and back references (3 bits of length, 13 of
//! distance, an extra length byte when the 3 bits are all ones).
//!
//! Our own compressor rather than a crate's: the one crate available
//! allocates and zeroes a 512 KB table per call, which made saving a list
//! (one call per 8 KB node) seven times slower than redis-server.

use std::cell::RefCell;

const HASH_BITS: u32 = 14;
const MAX_LITERAL: usize = 32;
const MAX_DISTANCE: usize = 1 << 13;
const MAX_MATCH: usize = (1 << 8) + (1 << 3);

const TABLE_LEN: usize = 1 << HASH_BITS;

thread_local! {
    /// Last position seen for each 3-byte hash. Never cleared: a stale
    /// entry is only a candidate, checked against the bytes before use.
    static TABLE: RefCell<Box<[u32; TABLE_LEN]>> = RefCell::new(Box::new([0; TABLE_LEN]));
}

/// The three bytes at `at` (the caller guarantees four are readable).
fn load3(input: &[u8], at: usize) -> u32 {
    let w: [u8; 4] = input[at..at + 4].try_into().unwrap_or_default();
    u32::from_le_bytes(w) & 0x00ff_ffff
}

fn hash3(v: u32) -> usize {
    (v.wrapping_mul(2_654_435_761) >> (32 - HASH_BITS)) as usize & (TABLE_LEN - 1)
}

/// How many leading bytes `a` and `b` share (at most `b.len()`), eight
/// bytes at a time.
fn common_prefix(a: &[u8], b: &[u8]) -> usize {
    let mut i = 0;
    while i + 8 <= b.len() {
        let x = u64::from_le_bytes(a[i..i + 8].try_into().unwrap_or_default())
            ^ u64::from_le_bytes(b[i..i + 8].try_into().unwrap_or_default());
        if x != 0 {
            return i + (x.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    while i < b.len() && a[i] == b[i] {
        i += 1;
    }
    i
}

fn push_literals(out: &mut Vec<u8>, mut lit: &[u8]) {
    while !lit.is_empty() {
        let n = lit.len().min(MAX_LITERAL);
        out.push((n - 1) as u8);
        out.extend_from_slice(&lit[..n]);
        lit = &lit[n..];
    }
}

/// Compresses `input`, or None when the result would exceed `limit` bytes
/// (the caller then stores the string as it is).
pub fn compress(input: &[u8], limit: usize) -> Option<Vec<u8>> {
    let n = input.len();
    if n < 4 || n > u32::MAX as usize {
        return None;
    }
    let mut out = Vec::with_capacity(limit.min(n));
    TABLE.with(|t| {
        let table = &mut *t.borrow_mut();
        let mut ip = 0;
        let mut lit_start = 0;
        while ip + 4 <= n {
            let v = load3(input, ip);
            let h = hash3(v);
            let cand = table[h] as usize;
            table[h] = ip as u32;
            if cand < ip && ip - cand <= MAX_DISTANCE && load3(input, cand) == v {
                let max = MAX_MATCH.min(n - ip);
                let len = 3 + common_prefix(&input[cand + 3..], &input[ip + 3..ip + max]);
                push_literals(&mut out, &input[lit_start..ip]);
                let dist = ip - cand - 1;
                let code = len - 2;
                if code < 7 {
                    out.push(((code << 5) | (dist >> 8)) as u8);
                } else {
                    out.push(((7 << 5) | (dist >> 8)) as u8);
                    out.push((code - 7) as u8);
                }
                out.push(dist as u8);
                if out.len() > limit {
                    return None;
                }
                // Index the tail of the match so the next one can start
                // inside it.
                let end = ip + len;
                for p in end.saturating_sub(2).max(ip + 1)..end {
                    if p + 4 <= n {
                        table[hash3(load3(input, p))] = p as u32;
                    }
                }
                ip = end;
                lit_start = ip;
            } else {
                ip += 1;
            }
        }
        push_literals(&mut out, &input[lit_start..]);
        (out.len() <= limit).then_some(out)
    })
}

/// Decompresses `input` into exactly `out_len` bytes; None if corrupt.
pub fn decompress(input: &[u8], out_len: usize) -> Option<Vec<u8>> {
    // The stated length comes from the payload: refuse what these bytes
    // cannot expand to (3 bytes of back reference give at most 264), and
    // grow towards it only as data actually decodes.
    if out_len > input.len().saturating_mul(MAX_MATCH / 3) {
        return None;
    }
    let mut out: Vec<u8> = Vec::with_capacity(out_len.min(input.len().saturating_mul(4) + 64));
    let mut i = 0;
    while i < input.len() {
        let ctrl = input[i] as usize;
        i += 1;
        if ctrl < 32 {
            // A run of ctrl + 1 literal bytes.
            let n = ctrl + 1;
            let lit = input.get(i..i + n)?;
            if out.len() + n > out_len {
                return None;
            }
            out.extend_from_slice(lit);
            i += n;
        } else {
            // A back reference.
            let mut len = ctrl >> 5;
            if len == 7 {
                len += *input.get(i)? as usize;
                i += 1;
            }
            let back = ((ctrl & 0x1f) << 8) + *input.get(i)? as usize + 1;
            i += 1;
            let start = out.len().checked_sub(back)?;
            let n = len + 2;
            if out.len() + n > out_len {
                return None;
            }
            if back >= n {
                out.extend_from_within(start..start + n);
            } else {
                // Byte by byte: the reference overlaps what it produces.
                for k in 0..n {
                    let b = out[start + k];
                    out.push(b);
                }
            }
        }
    }
    (out.len() == out_len).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn compress_round_trips(
            data in proptest::collection::vec(prop_oneof![Just(b'a'), Just(b'b'), any::<u8>()], 0..3000)
        ) {
            if let Some(c) = compress(&data, data.len()) {
                prop_assert!(c.len() <= data.len());
                prop_assert_eq!(decompress(&c, data.len()), Some(data));
            }
        }
    }

    #[test]
    fn repetitive_data_compresses_well() {
        let data: Vec<u8> = (0..10_000)
            .flat_map(|i| format!("element:{i:012}").into_bytes())
            .collect();
        let c = compress(&data, data.len()).expect("compressible");
        assert!(c.len() * 3 < data.len(), "{} of {}", c.len(), data.len());
        assert_eq!(decompress(&c, data.len()), Some(data.clone()));
        // Long runs use the extra length byte and overlapping references.
        let run = vec![b'x'; 5000];
        let c = compress(&run, run.len()).expect("compressible");
        assert!(c.len() < 100);
        assert_eq!(decompress(&c, run.len()), Some(run));
        assert_eq!(compress(b"abcdefghij", 6), None);
    }

    #[test]
    fn impossible_lengths_are_refused_without_allocating_them() {
        // A payload found by the fuzzer: a few bytes claiming an output of
        // exabytes aborted the process on allocation.
        assert_eq!(
            decompress(&[0x00, b'a', 0xE0, 0xFF, 0x00], usize::MAX / 2),
            None
        );
        assert_eq!(decompress(&[0x00, b'a'], 1 << 40), None);
    }

    #[test]
    fn literals_and_overlapping_references() {
        // "aaaaaaaaaa": literal 'a', then a reference of length 9 back 1.
        let data = [0x00, b'a', (7 << 5), 9 - 2 - 7, 0x00];
        assert_eq!(decompress(&data, 10).as_deref(), Some(&b"aaaaaaaaaa"[..]));
        assert_eq!(decompress(&data, 11), None);
        assert_eq!(decompress(&[0x05, b'a'], 6), None);
        assert_eq!(decompress(&[0x20, 0x05], 3), None);
    }
}
