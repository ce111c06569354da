//! LZF, the compression Redis applies to strings over 20 bytes in RDB
//! files and DUMP payloads (`rdbcompression yes`).
//!
//! The stream is a sequence of literal runs (a control byte below 32, then
//! that many plus one bytes) and back references (3 bits of length, 13 of
//! distance, an extra length byte when the 3 bits are all ones).
//!
//! The compressor follows liblzf 3.6 as Redis builds it (`HLOG` 16,
//! `VERY_FAST`, lzf_c.c) step for step: the same hash, the same match rules
//! and the same early give-ups when the output buffer may not suffice. So a
//! string compresses to the bytes redis-server writes, and DUMP payloads
//! and RDB files equal redis-server's. Our own code rather than a crate's:
//! the one crate available allocates and zeroes a 512 KB table per call,
//! which made saving a list (one call per 8 KB node) seven times slower
//! than redis-server.

use std::cell::RefCell;

use crate::memory::Scratch;

const HLOG: u32 = 16;
const HSIZE: usize = 1 << HLOG;
const MAX_LIT: usize = 1 << 5;
const MAX_OFF: usize = 1 << 13;
const MAX_REF: usize = (1 << 8) + (1 << 3);
/// The largest output kept between calls.
const KEPT_OUT_BYTES: usize = 64 * 1024;

/// Last position seen for each hash, as `base + position`. Entries below
/// the current call's `base` were written by earlier calls and count as
/// empty, so the table is never cleared between calls (a fresh table
/// each time is what liblzf's output assumes). Both buffers are outside
/// the used-memory count, as liblzf's table on Redis's stack: a save's
/// pool thread that exits must not take them out of `used_memory`.
struct Table {
    slots: Scratch<u32>,
    base: u32,
    /// Output scratch, kept between calls.
    out: Scratch<u8>,
}

thread_local! {
    static TABLE: RefCell<Table> = RefCell::new(Table {
        slots: Scratch::zeroed(HSIZE),
        base: 1,
        out: Scratch::zeroed(0),
    });
}

/// liblzf's hash (IDX) of three bytes, big-endian (it reads only these
/// 24 bits of its running value).
fn idx(h: u32) -> usize {
    ((h >> (24 - HLOG)).wrapping_sub(h.wrapping_mul(5)) as usize) & (HSIZE - 1)
}

/// Compresses `input` into at most `out_len` bytes, or None when liblzf
/// would give up (its checks are conservative: a result that would just
/// fit can be refused, as it is by redis-server). The caller then stores
/// the string as it is. The compressed bytes are lent to `f`, from a
/// buffer kept between calls.
pub fn compress<R>(input: &[u8], out_len: usize, f: impl FnOnce(&[u8]) -> R) -> Option<R> {
    let n = input.len();
    if n == 0 || out_len == 0 || n >= u32::MAX as usize / 2 {
        return None;
    }
    TABLE.with(|t| {
        let t = &mut *t.borrow_mut();
        if u64::from(t.base) + n as u64 >= u64::from(u32::MAX) {
            t.slots.fill(0);
            t.base = 1;
        }
        let base = t.base;
        t.base += n as u32;
        // liblzf may write two bytes past `out_len` before it gives up.
        // The kept buffer serves list nodes and ordinary values; a rare
        // huge one gets its own, so no thread holds on to its size.
        let mut own = Vec::new();
        let out: &mut [u8] = if out_len <= KEPT_OUT_BYTES {
            if t.out.len() < out_len + 2 {
                // Doubling, as a Vec grows, so rising sizes cost few copies.
                let want = (out_len + 2).max(2 * t.out.len()).min(KEPT_OUT_BYTES + 2);
                t.out = Scratch::zeroed(want);
            }
            &mut t.out
        } else {
            own.resize(out_len + 2, 0);
            &mut own
        };
        let slots: &mut [u32; HSIZE] = (&mut t.slots[..]).try_into().ok()?;
        let len = compress_with(input, out_len, slots, base, &mut out[..out_len + 2])?;
        Some(f(&out[..len]))
    })
}

/// The length of the match at `ip` with the earlier `r`, as liblzf counts
/// it: the first byte from the fourth on that differs, capped at `maxlen`
/// and at least three, except that with more than sixteen bytes left it
/// compares sixteen before it looks at the cap (so it may reach 19).
fn match_len(input: &[u8], r: usize, ip: usize, maxlen: usize) -> usize {
    let mut len = 3;
    if maxlen > 16 {
        let (a, b) = (&input[r..r + 19], &input[ip..ip + 19]);
        while len < 19 {
            if a[len] != b[len] {
                return len;
            }
            len += 1;
        }
    }
    while len < maxlen && input[r + len] == input[ip + len] {
        len += 1;
    }
    len
}

/// Adds a byte to the literal run being built, closing the run (its
/// header at `op - lit - 1`) and opening the next at 32 bytes.
#[inline(always)]
fn push_literal(out: &mut [u8], op: &mut usize, lit: &mut usize, b: u8) {
    out[*op] = b;
    *op += 1;
    *lit += 1;
    if *lit == MAX_LIT {
        out[*op - *lit - 1] = (*lit - 1) as u8;
        *lit = 0;
        *op += 1;
    }
}

/// liblzf's compressor over a fresh table (`slots` entries below `base`
/// count as empty), writing into `out` (`out_len` plus two bytes, the
/// most liblzf overruns its limit before it notices); the compressed
/// length, or None where liblzf gives up.
fn compress_with(
    input: &[u8],
    out_len: usize,
    slots: &mut [u32; HSIZE],
    base: u32,
    out: &mut [u8],
) -> Option<usize> {
    let n = input.len();
    // `op` is where the next byte goes; `out[op - lit - 1]` is the header
    // of the literal run being built, `lit` its length so far.
    let mut op = 1;
    let mut lit = 0usize;
    let mut ip = 0;
    // The three bytes at `ip`, big-endian (liblzf's FRST/NEXT; older bytes
    // shifted above them are left there, as the hash never reads them).
    let mut window = if n >= 2 {
        u32::from(input[0]) << 8 | u32::from(input[1])
    } else {
        0
    };
    while ip + 2 < n {
        let next3 = &input[ip..ip + 3];
        window = window << 8 | u32::from(next3[2]);
        let h = idx(window);
        let seen = slots[h];
        slots[h] = base + ip as u32;
        let r = seen.wrapping_sub(base) as usize;
        // liblzf never refers back to the first byte (`ref > in_data`).
        let found = seen > base && r < ip && ip - r - 1 < MAX_OFF && input[r..r + 3] == *next3;
        if !found {
            if op >= out_len {
                return None;
            }
            push_literal(out, &mut op, &mut lit, next3[0]);
            ip += 1;
            continue;
        }
        let maxlen = (n - ip - 2).min(MAX_REF);
        if op + 4 >= out_len && op - usize::from(lit == 0) + 4 >= out_len {
            return None;
        }
        // Close the literal run, or take back its header when it is empty.
        if lit == 0 {
            op -= 1;
        } else {
            out[op - lit - 1] = (lit - 1) as u8;
        }
        let len = match_len(input, r, ip, maxlen);
        let code = len - 2;
        let off = ip - r - 1;
        if code < 7 {
            out[op] = ((off >> 8) + (code << 5)) as u8;
            op += 1;
        } else {
            out[op] = ((off >> 8) + (7 << 5)) as u8;
            out[op + 1] = (code - 7) as u8;
            op += 2;
        }
        out[op] = off as u8;
        // Past the offset byte, and past the next run's header.
        op += 2;
        lit = 0;
        ip += len;
        if ip + 2 >= n {
            break;
        }
        // VERY_FAST: the two positions before the match's end are hashed.
        window = u32::from(input[ip - 2]) << 8 | u32::from(input[ip - 1]);
        for p in ip - 2..ip {
            window = (window << 8 | u32::from(input[p + 2])) & 0x00ff_ffff;
            slots[idx(window)] = base + p as u32;
        }
    }
    if op + 3 > out_len {
        return None;
    }
    while ip < n {
        push_literal(out, &mut op, &mut lit, input[ip]);
        ip += 1;
    }
    if lit == 0 {
        op -= 1;
    } else {
        out[op - lit - 1] = (lit - 1) as u8;
    }
    (op <= out_len).then_some(op)
}

/// Decompresses `input` into exactly `out_len` bytes; None if corrupt.
pub fn decompress(input: &[u8], out_len: usize) -> Option<Vec<u8>> {
    // The stated length comes from the payload: refuse what these bytes
    // cannot expand to (3 bytes of back reference give at most 264), and
    // grow towards it only as data actually decodes.
    if out_len > input.len().saturating_mul(MAX_REF / 3) {
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
            if let Some(c) = compress(&data, data.len(), <[u8]>::to_vec) {
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
        let c = compress(&data, data.len(), <[u8]>::to_vec).expect("compressible");
        assert!(c.len() * 3 < data.len(), "{} of {}", c.len(), data.len());
        assert_eq!(decompress(&c, data.len()), Some(data.clone()));
        // Long runs use the extra length byte and overlapping references.
        let run = vec![b'x'; 5000];
        let c = compress(&run, run.len(), <[u8]>::to_vec).expect("compressible");
        assert!(c.len() < 100);
        assert_eq!(decompress(&c, run.len()), Some(run));
        assert_eq!(compress(b"abcdefghij", 6, <[u8]>::to_vec), None);
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
