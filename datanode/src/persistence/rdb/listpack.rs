//! Redis's listpack: the packed form Redis 7 gives list nodes and small
//! hashes and sorted sets in RDB files and DUMP payloads.
//!
//! Layout: total bytes (u32 LE), element count (u16 LE, 65535 = "count
//! them"), entries, 0xFF. An entry is an encoding byte (with the value or
//! string length folded in), the data, then its own size written backwards
//! so the list can be walked from either end.

use super::object::DecodeError::{self, Corrupt, Truncated};
use crate::keyspace::plist::{backlen_is, backlen_size, push_backlen};

const HEADER: usize = 6;
const END: u8 = 0xFF;

/// A listpack around a body of entries already encoded (a packed list
/// chunk holds exactly that).
pub fn wrap(out: &mut Vec<u8>, body: &[u8], count: usize) {
    let total = (HEADER + body.len() + 1) as u32;
    out.extend_from_slice(&total.to_le_bytes());
    out.extend_from_slice(&(count.min(65535) as u16).to_le_bytes());
    out.extend_from_slice(body);
    out.push(END);
}

/// Appends an element as Redis's lpAppend does: an integer in canonical
/// form takes the integer encoding, anything else a string one.
pub fn push_element(body: &mut Vec<u8>, s: &[u8]) {
    let size = crate::keyspace::stream::push_str(body, s);
    push_backlen(body, size);
}

/// Appends an integer element.
pub fn push_int_element(body: &mut Vec<u8>, v: i64) {
    let size = crate::keyspace::stream::push_int(body, v);
    push_backlen(body, size);
}

/// Calls `f` with every element of a listpack, integers formatted as Redis
/// formats them; returns how many there were. Nothing is allocated per
/// element.
pub fn for_each(lp: &[u8], mut f: impl FnMut(&[u8])) -> Result<usize, DecodeError> {
    if lp.len() < HEADER + 1 {
        return Err(Corrupt("listpack"));
    }
    let total = u32::from_le_bytes([lp[0], lp[1], lp[2], lp[3]]) as usize;
    if total != lp.len() {
        return Err(Corrupt("listpack size"));
    }
    let get = |from: usize, n: usize| lp.get(from..from + n).ok_or(Corrupt("listpack"));
    let mut ib = itoa::Buffer::new();
    let mut p = HEADER;
    let mut n = 0;
    loop {
        let e = *lp.get(p).ok_or(Corrupt("listpack"))?;
        if e == END {
            break;
        }
        let (int, data, size): (Option<i64>, &[u8], usize) = if e & 0x80 == 0 {
            (Some((e & 0x7f) as i64), &[], 1)
        } else if e & 0xC0 == 0x80 {
            let len = (e & 0x3f) as usize;
            (None, get(p + 1, len)?, 1 + len)
        } else if e & 0xE0 == 0xC0 {
            let raw = (((e & 0x1f) as u16) << 8) | get(p + 1, 1)?[0] as u16;
            // 13-bit two's complement.
            (Some((((raw << 3) as i16) >> 3) as i64), &[], 2)
        } else if e & 0xF0 == 0xE0 {
            let len = (((e & 0x0f) as usize) << 8) | get(p + 1, 1)?[0] as usize;
            (None, get(p + 2, len)?, 2 + len)
        } else {
            let fixed = |k: usize| -> Result<[u8; 8], DecodeError> {
                let mut w = [0u8; 8];
                w[..k].copy_from_slice(get(p + 1, k)?);
                Ok(w)
            };
            match e {
                0xF0 => {
                    let len = u32::from_le_bytes(get(p + 1, 4)?.try_into().map_err(|_| Truncated)?)
                        as usize;
                    (None, get(p + 5, len)?, 5 + len)
                }
                0xF1 => {
                    let w = fixed(2)?;
                    (Some(i16::from_le_bytes([w[0], w[1]]) as i64), &[], 3)
                }
                0xF2 => {
                    let w = fixed(3)?;
                    // Sign-extend the 24-bit value.
                    (
                        Some((i32::from_le_bytes([0, w[0], w[1], w[2]]) >> 8) as i64),
                        &[],
                        4,
                    )
                }
                0xF3 => {
                    let w = fixed(4)?;
                    (
                        Some(i32::from_le_bytes([w[0], w[1], w[2], w[3]]) as i64),
                        &[],
                        5,
                    )
                }
                0xF4 => (Some(i64::from_le_bytes(fixed(8)?)), &[], 9),
                _ => return Err(Corrupt("listpack entry")),
            }
        };
        // The size written backwards must be this entry's, or walking
        // the listpack from its tail reads something else.
        if !backlen_is(lp, p + size, size) {
            return Err(Corrupt("listpack entry"));
        }
        match int {
            Some(v) => f(ib.format(v).as_bytes()),
            None => f(data),
        }
        n += 1;
        p += size + backlen_size(size);
    }
    let count = u16::from_le_bytes([lp[4], lp[5]]);
    if p + 1 != lp.len() || (count != u16::MAX && count as usize != n) {
        return Err(Corrupt("listpack end"));
    }
    Ok(n)
}

/// Every element of a listpack, copied out.
pub fn entries(lp: &[u8]) -> Result<Vec<Vec<u8>>, DecodeError> {
    let mut out = Vec::new();
    for_each(lp, |e| out.push(e.to_vec()))?;
    Ok(out)
}

/// Redis's encoder, integers included, as a reference the decoder is
/// tested against (the data path writes packed list chunks with [`wrap`]).
#[cfg(test)]
mod encoder {
    use super::{END, HEADER};
    use crate::keyspace::plist::{push_backlen, push_str_header};

    /// The integer a listpack would store `e` as: only canonical decimal forms,
    /// so the bytes read back are the bytes written.
    pub fn as_int(e: &[u8]) -> Option<i64> {
        if e.is_empty() || e.len() > 20 {
            return None;
        }
        let v = crate::resp::parse_i64(e)?;
        (itoa::Buffer::new().format(v).as_bytes() == e).then_some(v)
    }

    /// Builds a listpack one element at a time.
    pub struct Writer {
        buf: Vec<u8>,
        count: usize,
    }

    impl Writer {
        pub fn new() -> Self {
            Writer {
                buf: vec![0; HEADER],
                count: 0,
            }
        }

        pub fn push(&mut self, e: &[u8]) {
            let start = self.buf.len();
            let b = &mut self.buf;
            if let Some(v) = as_int(e) {
                match v {
                    0..=127 => b.push(v as u8),
                    -4096..=4095 => {
                        let u = (v as u16) & 0x1fff;
                        b.push(0xC0 | (u >> 8) as u8);
                        b.push(u as u8);
                    }
                    -32768..=32767 => {
                        b.push(0xF1);
                        b.extend_from_slice(&(v as i16).to_le_bytes());
                    }
                    -8388608..=8388607 => {
                        b.push(0xF2);
                        b.extend_from_slice(&(v as i32).to_le_bytes()[..3]);
                    }
                    _ if i32::try_from(v).is_ok() => {
                        b.push(0xF3);
                        b.extend_from_slice(&(v as i32).to_le_bytes());
                    }
                    _ => {
                        b.push(0xF4);
                        b.extend_from_slice(&v.to_le_bytes());
                    }
                }
            } else {
                push_str_header(b, e.len());
                b.extend_from_slice(e);
            }
            let size = self.buf.len() - start;
            push_backlen(&mut self.buf, size);
            self.count += 1;
        }

        /// Closes the listpack and returns its bytes; [`Writer::reset`] then
        /// starts a new one in the same buffer.
        pub fn finish(&mut self) -> &[u8] {
            self.buf.push(END);
            let total = self.buf.len() as u32;
            self.buf[..4].copy_from_slice(&total.to_le_bytes());
            let count = self.count.min(65535) as u16;
            self.buf[4..6].copy_from_slice(&count.to_le_bytes());
            &self.buf
        }
    }
}

#[cfg(test)]
mod tests {
    use super::encoder::Writer;
    use super::*;
    use crate::keyspace::plist::push_backlen;
    use proptest::prelude::*;

    #[test]
    fn backlen_matches_redis_layout() {
        let cases: &[(usize, &[u8])] = &[
            (5, &[5]),
            (127, &[127]),
            (128, &[1, 128]),
            (16382, &[127, 0xFE]),
            (16383, &[0, 0xFF, 0xFF]),
        ];
        for (size, want) in cases {
            let mut v = Vec::new();
            push_backlen(&mut v, *size);
            assert_eq!(&v, want, "size {size}");
        }
    }

    #[test]
    fn encodes_integers_and_strings_as_redis_does() {
        let mut w = Writer::new();
        for e in [&b"7"[..], b"-1", b"1000", b"70000", b"x", b"007"] {
            w.push(e);
        }
        let lp = w.finish().to_vec();
        // 7 as a 7-bit uint; -1 as 13-bit; 1000 as 13-bit; 70000 as
        // 24-bit; "x" and "007" (not canonical) as strings.
        let body: &[u8] = &[
            0x07, 1, 0xDF, 0xFF, 2, 0xC3, 0xE8, 2, 0xF2, 0x70, 0x11, 0x01, 4, 0x81, b'x', 2, 0x83,
            b'0', b'0', b'7', 4, 0xFF,
        ];
        assert_eq!(&lp[6..], body);
        assert_eq!(
            u32::from_le_bytes(lp[..4].try_into().unwrap()) as usize,
            lp.len()
        );
        assert_eq!(u16::from_le_bytes([lp[4], lp[5]]), 6);
    }

    proptest! {
        #[test]
        fn round_trips(items in proptest::collection::vec(
            prop_oneof![
                any::<i64>().prop_map(|v| v.to_string().into_bytes()),
                proptest::collection::vec(any::<u8>(), 0..5000),
            ], 0..40)) {
            let mut w = Writer::new();
            for e in &items {
                w.push(e);
            }
            let lp = w.finish().to_vec();
            prop_assert_eq!(entries(&lp).unwrap(), items);
        }

        #[test]
        fn garbage_never_panics(b in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = for_each(&b, |_| {});
        }
    }
}
