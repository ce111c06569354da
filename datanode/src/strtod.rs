//! C's `strtod` as glibc reads numbers, which is what Redis's float
//! arguments go through: leading white space, a sign, decimal digits with
//! an optional exponent, hexadecimal digits (`0x1.8p3`), `inf`,
//! `infinity` and `nan` in any case. Redis then applies its own checks on
//! top (see `command::parse_float` and the sorted-set range parser).

/// What `strtod` made of the start of a string.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Parsed {
    pub value: f64,
    /// Bytes read; 0 when no number starts the string (the value is 0).
    pub used: usize,
    /// `errno == ERANGE`: a finite number too large (the value is ±inf) or
    /// so small it became 0 or a subnormal.
    pub range: bool,
}

fn is_c_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

/// What C's number parsers skip first: blanks, then one optional sign.
/// Returns where the digits start and whether the sign was `-`.
pub fn blanks_and_sign(s: &[u8]) -> (usize, bool) {
    let mut i = 0;
    while i < s.len() && is_c_space(s[i]) {
        i += 1;
    }
    match s.get(i) {
        Some(b'-') => (i + 1, true),
        Some(b'+') => (i + 1, false),
        _ => (i, false),
    }
}

fn starts_with_ic(s: &[u8], word: &[u8]) -> bool {
    s.len() >= word.len() && s[..word.len()].eq_ignore_ascii_case(word)
}

/// Reads a number from the start of `s` as C's `strtod` does. A NUL ends
/// the string, as it would in C.
pub fn strtod(s: &[u8]) -> Parsed {
    let s = match s.iter().position(|&b| b == 0) {
        Some(z) => &s[..z],
        None => s,
    };
    let none = Parsed {
        value: 0.0,
        used: 0,
        range: false,
    };
    let (i, neg) = blanks_and_sign(s);
    let sign = |v: f64| if neg { -v } else { v };
    let rest = &s[i..];
    if starts_with_ic(rest, b"inf") {
        let n = if starts_with_ic(rest, b"infinity") {
            8
        } else {
            3
        };
        return Parsed {
            value: sign(f64::INFINITY),
            used: i + n,
            range: false,
        };
    }
    if starts_with_ic(rest, b"nan") {
        let mut n = 3;
        // "nan(chars)": letters, digits and underscores in parentheses.
        if rest.get(3) == Some(&b'(') {
            let close = rest[4..]
                .iter()
                .position(|&b| !(b.is_ascii_alphanumeric() || b == b'_'));
            if let Some(k) = close {
                if rest[4 + k] == b')' {
                    n = 4 + k + 1;
                }
            }
        }
        return Parsed {
            value: sign(f64::NAN),
            used: i + n,
            range: false,
        };
    }
    if rest.len() >= 2
        && rest[0] == b'0'
        && (rest[1] | 0x20) == b'x'
        && (rest.get(2).is_some_and(u8::is_ascii_hexdigit)
            || (rest.get(2) == Some(&b'.') && rest.get(3).is_some_and(u8::is_ascii_hexdigit)))
    {
        let (v, n, range) = hex(&rest[2..]);
        return Parsed {
            value: sign(v),
            used: i + 2 + n,
            range,
        };
    }
    // Decimal: digits, an optional point and digits (one digit at least),
    // then an exponent only when digits follow its sign.
    let mut j = 0;
    let mut digits = 0;
    let mut nonzero = false;
    while j < rest.len() && rest[j].is_ascii_digit() {
        nonzero |= rest[j] != b'0';
        j += 1;
        digits += 1;
    }
    if rest.get(j) == Some(&b'.') {
        j += 1;
        while j < rest.len() && rest[j].is_ascii_digit() {
            nonzero |= rest[j] != b'0';
            j += 1;
            digits += 1;
        }
    }
    if digits == 0 {
        return none;
    }
    if j < rest.len() && (rest[j] | 0x20) == b'e' {
        let mut k = j + 1;
        if k < rest.len() && (rest[k] == b'+' || rest[k] == b'-') {
            k += 1;
        }
        if k < rest.len() && rest[k].is_ascii_digit() {
            while k < rest.len() && rest[k].is_ascii_digit() {
                k += 1;
            }
            j = k;
        }
    }
    // The text is ASCII digits, point and exponent: Rust's parser rounds
    // it correctly, as glibc does.
    let text = std::str::from_utf8(&rest[..j]).unwrap_or("0");
    let v: f64 = text.parse().unwrap_or(0.0);
    let range = (v.is_infinite()) || (nonzero && (v == 0.0 || v.is_subnormal()));
    Parsed {
        value: sign(v),
        used: i + j,
        range,
    }
}

/// The hexadecimal part after "0x": (value, bytes read, ERANGE).
fn hex(s: &[u8]) -> (f64, usize, bool) {
    // Up to 16 significant hex digits are kept; any further nonzero digit
    // only matters as a sticky bit for rounding.
    let mut mant: u64 = 0;
    let mut kept = 0;
    let mut sticky = false;
    let mut exp: i64 = 0;
    let mut i = 0;
    let mut seen_point = false;
    while i < s.len() {
        let c = s[i];
        if c == b'.' && !seen_point {
            seen_point = true;
            i += 1;
            continue;
        }
        let Some(d) = (c as char).to_digit(16) else {
            break;
        };
        if mant == 0 && d == 0 {
            if seen_point {
                exp -= 4;
            }
        } else if kept < 16 {
            mant = mant << 4 | u64::from(d);
            kept += 1;
            if seen_point {
                exp -= 4;
            }
        } else {
            sticky |= d != 0;
            if !seen_point {
                exp += 4;
            }
        }
        i += 1;
    }
    // A binary exponent, when digits follow "p" and its sign.
    if i < s.len() && (s[i] | 0x20) == b'p' {
        let mut k = i + 1;
        let eneg = match s.get(k) {
            Some(b'-') => {
                k += 1;
                true
            }
            Some(b'+') => {
                k += 1;
                false
            }
            _ => false,
        };
        if k < s.len() && s[k].is_ascii_digit() {
            let mut e: i64 = 0;
            while k < s.len() && s[k].is_ascii_digit() {
                e = (e * 10 + i64::from(s[k] - b'0')).min(1 << 20);
                k += 1;
            }
            exp += if eneg { -e } else { e };
            i = k;
        }
    }
    if mant == 0 {
        return (0.0, i, false);
    }
    // Round the mantissa to 53 bits (to nearest, ties to even).
    let bits = 64 - mant.leading_zeros() as i64;
    if bits > 53 {
        let drop = (bits - 53) as u32;
        let half = 1u64 << (drop - 1);
        let low = mant & ((1u64 << drop) - 1);
        mant >>= drop;
        exp += i64::from(drop);
        if low > half || (low == half && (sticky || mant & 1 == 1)) {
            mant += 1;
        }
    }
    // Scaled in two steps so that neither power of two overflows alone.
    let e = exp.clamp(-2200, 2200) as i32;
    let v = mant as f64 * 2f64.powi(e / 2) * 2f64.powi(e - e / 2);
    let range = v.is_infinite() || v == 0.0 || v.is_subnormal();
    (v, i, range)
}

/// A whole string read as a double, as Redis's `string2d`: strtod must
/// read every byte, the string may not be empty or start with white space,
/// and neither NaN nor a number out of range (±HUGE_VAL, or underflow to
/// zero) is taken.
pub fn string2d(a: &[u8]) -> Option<f64> {
    if a.is_empty() || a[0].is_ascii_whitespace() || a[0] == 0x0b {
        return None;
    }
    let p = strtod(a);
    let out_of_range = p.range && (p.value.is_infinite() || p.value == 0.0);
    (p.used == a.len() && !p.value.is_nan() && !out_of_range).then_some(p.value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> (f64, usize, bool) {
        let r = strtod(s.as_bytes());
        (r.value, r.used, r.range)
    }

    #[test]
    fn reads_what_glibc_reads() {
        assert_eq!(p("1.5"), (1.5, 3, false));
        assert_eq!(p("  -2e3x"), (-2000.0, 6, false));
        assert_eq!(p("1e"), (1.0, 1, false));
        assert_eq!(p("1e+"), (1.0, 1, false));
        assert_eq!(p(".5"), (0.5, 2, false));
        assert_eq!(p("5."), (5.0, 2, false));
        assert_eq!(p("."), (0.0, 0, false));
        assert_eq!(p(""), (0.0, 0, false));
        assert_eq!(p("-"), (0.0, 0, false));
        assert_eq!(p("0x10"), (16.0, 4, false));
        assert_eq!(p("0x1.8p1"), (3.0, 7, false));
        assert_eq!(p("0X.8"), (0.5, 4, false));
        assert_eq!(p("0x"), (0.0, 1, false));
        assert_eq!(p("0xg"), (0.0, 1, false));
        assert_eq!(p("0x1p-2"), (0.25, 6, false));
        assert_eq!(p("INF"), (f64::INFINITY, 3, false));
        assert_eq!(p("-Infinity"), (f64::NEG_INFINITY, 9, false));
        assert_eq!(p("infinit"), (f64::INFINITY, 3, false));
        assert!(p("nan").0.is_nan());
        assert_eq!(p("nan(12ab)").1, 9);
        assert_eq!(p("nan(").1, 3);
        assert_eq!(p("1e400"), (f64::INFINITY, 5, true));
        assert_eq!(p("1e-400"), (0.0, 6, true));
        assert_eq!(p("0e-400"), (0.0, 6, false));
        assert!(p("1e-310").2);
        assert_eq!(p("1\0"), (1.0, 1, false));
        assert_eq!(p("0x1fffffffffffff"), (9007199254740991.0, 16, false));
        assert_eq!(p("0x20000000000001"), (9007199254740992.0, 16, false));
        assert_eq!(p("0x20000000000003"), (9007199254740996.0, 16, false));
    }
}
