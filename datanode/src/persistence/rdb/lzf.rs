//! LZF decompression, for strings Redis stores compressed in RDB files and
//! DUMP payloads. (We write strings uncompressed.)

/// Decompresses `input` into exactly `out_len` bytes; None if corrupt.
pub fn decompress(input: &[u8], out_len: usize) -> Option<Vec<u8>> {
    let mut out: Vec<u8> = Vec::with_capacity(out_len);
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
            // Byte by byte: the reference may overlap what it produces.
            for k in 0..n {
                let b = out[start + k];
                out.push(b);
            }
        }
    }
    (out.len() == out_len).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

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
