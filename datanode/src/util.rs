//! Small number formatting and parsing helpers shared by many commands.

/// Formats a double the way Redis replies with one (`%.17g`, with `inf`,
/// `-inf` and `nan`), writing into `buf` and returning the used prefix.
pub fn fmt_double(d: f64, buf: &mut [u8; 32]) -> &[u8] {
    use std::io::Write;
    let mut cur = std::io::Cursor::new(&mut buf[..]);
    if d.is_infinite() {
        let _ = cur.write_all(if d > 0.0 { b"inf" } else { b"-inf" });
    } else if d.is_nan() {
        // printf shows a NaN's sign; x86's 0/0 sets it.
        let _ = cur.write_all(if d.is_sign_negative() {
            b"-nan"
        } else {
            b"nan"
        });
    } else if d == d.trunc() && d.abs() < 1e15 && !(d == 0.0 && d.is_sign_negative()) {
        // Whole numbers (the common case for scores) print as integers
        // under %.17g too; skip the general formatter.
        let mut b = itoa::Buffer::new();
        let _ = cur.write_all(b.format(d as i64).as_bytes());
    } else {
        // `ryu`-style shortest repr differs from %.17g; emulate %.17g.
        let _ = write!(cur, "{}", G17(d));
    }
    let n = cur.position() as usize;
    &buf[..n]
}

struct G17(f64);

impl std::fmt::Display for G17 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&format_g(self.0, 17))
    }
}

/// C's `%.<prec>g` for finite values.
pub fn format_g(d: f64, prec: usize) -> String {
    if d == 0.0 {
        return if d.is_sign_negative() {
            "-0".into()
        } else {
            "0".into()
        };
    }
    let prec = prec.max(1);
    // Exponent as %e would print it after rounding to `prec` digits.
    let e_repr = format!("{:.*e}", prec - 1, d);
    let (mantissa, exp) = e_repr.split_once('e').unwrap_or((&e_repr, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if exp < -4 || exp >= prec as i32 {
        let m = trim_zeros(mantissa);
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{}e{}{:02}", m, sign, exp.abs())
    } else {
        let decimals = (prec as i32 - 1 - exp).max(0) as usize;
        let s = format!("{:.*}", decimals, d);
        trim_zeros(&s).to_string()
    }
}

fn trim_zeros(s: &str) -> &str {
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.')
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn g(d: f64) -> String {
        let mut b = [0u8; 32];
        String::from_utf8(fmt_double(d, &mut b).to_vec()).unwrap()
    }

    #[test]
    fn doubles_print_like_printf_g17() {
        assert_eq!(g(1.5), "1.5");
        assert_eq!(g(10.0), "10");
        assert_eq!(g(0.1), "0.10000000000000001");
        assert_eq!(g(1e20), "1e+20");
        assert_eq!(g(-2.5e-7), "-2.4999999999999999e-07");
        assert_eq!(g(f64::INFINITY), "inf");
        assert_eq!(g(f64::NEG_INFINITY), "-inf");
        assert_eq!(g(123456789.0), "123456789");
    }
}

/// Why an extended-precision increment failed.
#[derive(Debug, PartialEq, Eq)]
pub enum IncrFloatError {
    CurrentNotFloat,
    IncrNotFloat,
    IncrNotFinite,
    ResultNotFinite,
}

extern "C" {
    fn slotkv_ld_incr(
        cur: *const u8,
        curlen: usize,
        incr: *const u8,
        incrlen: usize,
        out: *mut u8,
        outlen: usize,
    ) -> i32;
}

/// `cur + incr` in `long double`, formatted as INCRBYFLOAT replies.
pub fn incr_float(cur: Option<&[u8]>, incr: &[u8]) -> Result<Vec<u8>, IncrFloatError> {
    let mut out = vec![0u8; 5 * 1024 + 64];
    let (cp, cl) = match cur {
        Some(c) => (c.as_ptr(), c.len()),
        None => (std::ptr::null(), 0),
    };
    // SAFETY: pointers and lengths describe live slices; `out` is writable
    // for its whole length and the C side never writes past `outlen`.
    let n = unsafe {
        slotkv_ld_incr(
            cp,
            cl,
            incr.as_ptr(),
            incr.len(),
            out.as_mut_ptr(),
            out.len(),
        )
    };
    match n {
        -1 => Err(IncrFloatError::CurrentNotFloat),
        -2 => Err(IncrFloatError::IncrNotFloat),
        -3 => Err(IncrFloatError::IncrNotFinite),
        n if n < 0 => Err(IncrFloatError::ResultNotFinite),
        n => {
            out.truncate(n as usize);
            Ok(out)
        }
    }
}

#[cfg(test)]
mod float_tests {
    use super::*;

    #[test]
    fn long_double_increments_match_redis() {
        assert_eq!(incr_float(Some(b"10.5"), b"0.1").unwrap(), b"10.6");
        assert_eq!(
            incr_float(Some(b"10.6"), b"1.5e3").unwrap(),
            b"1510.59999999999999998"
        );
        assert_eq!(incr_float(None, b"3").unwrap(), b"3");
        assert_eq!(
            incr_float(Some(b"abc"), b"1"),
            Err(IncrFloatError::CurrentNotFloat)
        );
        assert_eq!(
            incr_float(Some(b"1"), b" 1"),
            Err(IncrFloatError::IncrNotFloat)
        );
        assert_eq!(
            incr_float(Some(b"1"), b"inf"),
            Err(IncrFloatError::IncrNotFinite)
        );
    }
}

/// An I/O error as C's `strerror` words it ("No such file or directory"),
/// without Rust's " (os error N)" suffix.
pub fn strerror(e: &std::io::Error) -> String {
    let s = e.to_string();
    match s.rfind(" (os error ") {
        Some(i) => s[..i].to_string(),
        None => s,
    }
}

/// Appends `s` quoted and escaped as Redis's `sdscatrepr` writes it (MONITOR
/// lines, the Lua debugger's values): `\\`, `\"`, `\n`, `\r`, `\t`, `\a`,
/// `\b`, printable ASCII as it is, any other byte as `\xhh`.
pub fn push_repr(out: &mut Vec<u8>, s: &[u8]) {
    out.push(b'"');
    for &c in s {
        match c {
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'"' => out.extend_from_slice(b"\\\""),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            7 => out.extend_from_slice(b"\\a"),
            8 => out.extend_from_slice(b"\\b"),
            0x20..=0x7e => out.push(c),
            _ => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.extend_from_slice(&[
                    b'\\',
                    b'x',
                    HEX[usize::from(c >> 4)],
                    HEX[usize::from(c & 15)],
                ]);
            }
        }
    }
    out.push(b'"');
}
