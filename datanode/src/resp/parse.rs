//! Request parsing. A request is either a RESP multibulk (`*N\r\n$len\r\n…`)
//! or an inline line as typed into telnet. Multibulk arguments are returned
//! as byte ranges into the read buffer, so parsing copies nothing.

use std::ops::Range;

/// Longest inline request, or length line, accepted before a newline.
pub const INLINE_MAX: usize = 64 * 1024;

/// Limits that apply to one connection's requests.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub max_bulk_len: i64,
    /// Before AUTH, Redis refuses large requests outright.
    pub authenticated: bool,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_bulk_len: 512 * 1024 * 1024,
            authenticated: true,
        }
    }
}

/// A protocol violation: the message goes to the client after `-ERR `, then
/// the connection is closed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Protocol error: {0}")]
pub struct ProtocolError(pub String);

fn perr(msg: impl Into<String>) -> ProtocolError {
    ProtocolError(msg.into())
}

/// Where a parsed request's arguments live.
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed {
    /// `consumed` bytes were used; `args` index into the read buffer.
    Multibulk { consumed: usize },
    /// An inline request: `args` index into the caller's scratch buffer,
    /// which holds the unquoted arguments.
    Inline { consumed: usize },
    /// A blank line or `*0`/`*-1`: nothing to run.
    Empty { consumed: usize },
}

/// Parses one request from the start of `buf`.
///
/// Returns `Ok(None)` when more bytes are needed. On success `ranges` holds
/// one range per argument (into `buf` for multibulk, into `scratch` for
/// inline requests).
pub fn parse_request(
    buf: &[u8],
    limits: &Limits,
    ranges: &mut Vec<Range<usize>>,
    scratch: &mut Vec<u8>,
) -> Result<Option<Parsed>, ProtocolError> {
    ranges.clear();
    match buf.first() {
        None => Ok(None),
        Some(b'*') => parse_multibulk(buf, limits, ranges),
        Some(_) => parse_inline(buf, ranges, scratch),
    }
}

/// Finds `\r\n` starting at `from`; returns the index of `\r`.
fn find_crlf(buf: &[u8], from: usize) -> Option<usize> {
    let mut i = from;
    while let Some(off) = memchr::memchr(b'\r', &buf[i..]) {
        let at = i + off;
        if at + 1 >= buf.len() {
            return None;
        }
        if buf[at + 1] == b'\n' {
            return Some(at);
        }
        i = at + 1;
    }
    None
}

/// Parses a decimal i64 the way Redis's `string2ll` does: optional `-`, no
/// `+`, no leading zeros (except "0"), no spaces.
pub fn parse_i64(s: &[u8]) -> Option<i64> {
    if s.is_empty() || s.len() > 20 {
        return None;
    }
    if s.len() == 1 && s[0] == b'0' {
        return Some(0);
    }
    let (neg, digits) = if s[0] == b'-' {
        (true, &s[1..])
    } else {
        (false, s)
    };
    if digits.is_empty() || digits[0] == b'0' {
        return None;
    }
    let mut v: u64 = 0;
    for &c in digits {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?.checked_add((c - b'0') as u64)?;
    }
    if neg {
        if v > i64::MAX as u64 + 1 {
            None
        } else {
            Some((v as i64).wrapping_neg())
        }
    } else if v > i64::MAX as u64 {
        None
    } else {
        Some(v as i64)
    }
}

fn parse_multibulk(
    buf: &[u8],
    limits: &Limits,
    ranges: &mut Vec<Range<usize>>,
) -> Result<Option<Parsed>, ProtocolError> {
    let Some(eol) = find_crlf(buf, 1) else {
        if buf.len() > INLINE_MAX {
            return Err(perr("too big mbulk count string"));
        }
        return Ok(None);
    };
    let count = match parse_i64(&buf[1..eol]) {
        Some(n) if n <= i32::MAX as i64 => n,
        _ => return Err(perr("invalid multibulk length")),
    };
    if count > 10 && !limits.authenticated {
        return Err(perr("unauthenticated multibulk length"));
    }
    let mut pos = eol + 2;
    if count <= 0 {
        return Ok(Some(Parsed::Empty { consumed: pos }));
    }
    // Reserve only what the bytes present could justify: a header that
    // announces a million arguments must not allocate for them up front.
    ranges.reserve((count as usize).min(1024));
    for _ in 0..count {
        if pos >= buf.len() {
            return Ok(None);
        }
        if buf[pos] != b'$' {
            return Err(perr(format!(
                "expected '$', got '{}'",
                char::from(buf[pos])
            )));
        }
        let Some(eol) = find_crlf(buf, pos + 1) else {
            if buf.len() - pos > INLINE_MAX {
                return Err(perr("too big bulk count string"));
            }
            return Ok(None);
        };
        let len = match parse_i64(&buf[pos + 1..eol]) {
            Some(n) if n >= 0 && n <= limits.max_bulk_len => n as usize,
            _ => return Err(perr("invalid bulk length")),
        };
        if len > 16384 && !limits.authenticated {
            return Err(perr("unauthenticated bulk length"));
        }
        let start = eol + 2;
        let end = start + len;
        if buf.len() < end + 2 {
            return Ok(None);
        }
        // Redis does not check the two bytes after the payload; it skips them.
        ranges.push(start..end);
        pos = end + 2;
    }
    Ok(Some(Parsed::Multibulk { consumed: pos }))
}

/// An argument from this size on is read into a buffer of its exact size,
/// as Redis reads one (its PROTO_MBULK_BIG_ARG).
pub const BIG_ARG: usize = 32 * 1024;

/// Where an incomplete request stands, as Redis's reader would have it.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Pending {
    /// Bytes Redis would already have taken out of its query buffer: the
    /// count line, whole arguments, and the length line of the argument
    /// being read (CLIENT LIST's qbuf counts only the rest).
    pub taken: usize,
    /// When that argument is big: the bytes the request needs up to its
    /// end, for a read buffer of exactly that size.
    pub need: Option<usize>,
}

/// Looks at the incomplete request at the start of `buf` (one that
/// `parse_request` answered `Ok(None)`); malformed input counts as not
/// taken, the parser reports it once it is complete.
pub fn pending_request(buf: &[u8]) -> Pending {
    let mut p = Pending::default();
    if buf.first() != Some(&b'*') {
        return p;
    }
    let Some(eol) = find_crlf(buf, 1) else {
        return p;
    };
    let count = parse_i64(&buf[1..eol]).unwrap_or(0);
    let mut pos = eol + 2;
    for _ in 0..count {
        p.taken = pos;
        if buf.get(pos) != Some(&b'$') {
            return p;
        }
        let Some(eol) = find_crlf(buf, pos + 1) else {
            return p;
        };
        let Some(len) = parse_i64(&buf[pos + 1..eol]).and_then(|n| usize::try_from(n).ok()) else {
            return p;
        };
        let start = eol + 2;
        let end = start.saturating_add(len).saturating_add(2);
        if buf.len() < end {
            p.taken = start;
            p.need = (len >= BIG_ARG).then_some(end);
            return p;
        }
        pos = end;
    }
    p.taken = pos.min(buf.len());
    p
}

fn parse_inline(
    buf: &[u8],
    ranges: &mut Vec<Range<usize>>,
    scratch: &mut Vec<u8>,
) -> Result<Option<Parsed>, ProtocolError> {
    // Redis looks for the newline with strchr, which stops at a NUL byte:
    // a NUL before the newline leaves the request incomplete.
    let nl = memchr::memchr2(b'\n', 0, buf).filter(|&i| buf[i] == b'\n');
    let Some(nl) = nl else {
        if buf.len() > INLINE_MAX {
            return Err(perr("too big inline request"));
        }
        return Ok(None);
    };
    let mut line = &buf[..nl];
    if line.last() == Some(&b'\r') {
        line = &line[..line.len() - 1];
    }
    scratch.clear();
    if !split_args(line, scratch, ranges) {
        return Err(perr("unbalanced quotes in request"));
    }
    let consumed = nl + 1;
    if ranges.is_empty() {
        Ok(Some(Parsed::Empty { consumed }))
    } else {
        Ok(Some(Parsed::Inline { consumed }))
    }
}

fn hex_val(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// Splits a line into arguments with the quoting rules of redis-cli and
/// redis.conf: whitespace separates, `"…"` understands backslash escapes
/// (`\n \r \t \b \a \xHH`), `'…'` only `\'`. A closing quote must be followed
/// by whitespace or the end. Unquoted arguments go to `out` and their ranges
/// to `ranges`. Returns false on unbalanced quotes.
pub fn split_args(line: &[u8], out: &mut Vec<u8>, ranges: &mut Vec<Range<usize>>) -> bool {
    // The C original stops at a NUL byte; so do we.
    let line = match memchr::memchr(0, line) {
        Some(z) => &line[..z],
        None => line,
    };
    let is_space = |c: u8| matches!(c, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r');
    let mut i = 0;
    let n = line.len();
    loop {
        while i < n && is_space(line[i]) {
            i += 1;
        }
        if i >= n {
            return true;
        }
        let start = out.len();
        let mut in_dq = false;
        let mut in_sq = false;
        loop {
            if in_dq {
                if i >= n {
                    return false;
                }
                let c = line[i];
                if c == b'\\'
                    && i + 3 < n
                    && line[i + 1] == b'x'
                    && hex_val(line[i + 2]).is_some()
                    && hex_val(line[i + 3]).is_some()
                {
                    let h = hex_val(line[i + 2]).unwrap_or(0);
                    let l = hex_val(line[i + 3]).unwrap_or(0);
                    out.push(h * 16 + l);
                    i += 3;
                } else if c == b'\\' && i + 1 < n {
                    i += 1;
                    out.push(match line[i] {
                        b'n' => b'\n',
                        b'r' => b'\r',
                        b't' => b'\t',
                        b'b' => 8,
                        b'a' => 7,
                        o => o,
                    });
                } else if c == b'"' {
                    if i + 1 < n && !is_space(line[i + 1]) {
                        return false;
                    }
                    i += 1;
                    break;
                } else {
                    out.push(c);
                }
            } else if in_sq {
                if i >= n {
                    return false;
                }
                let c = line[i];
                if c == b'\\' && i + 1 < n && line[i + 1] == b'\'' {
                    i += 1;
                    out.push(b'\'');
                } else if c == b'\'' {
                    if i + 1 < n && !is_space(line[i + 1]) {
                        return false;
                    }
                    i += 1;
                    break;
                } else {
                    out.push(c);
                }
            } else {
                if i >= n {
                    break;
                }
                match line[i] {
                    b' ' | b'\n' | b'\r' | b'\t' => break,
                    b'"' => in_dq = true,
                    b'\'' => in_sq = true,
                    c => out.push(c),
                }
            }
            i += 1;
        }
        ranges.push(start..out.len());
    }
}

/// Encodes a command as a RESP multibulk (used for the AOF and tests).
pub fn encode_command<A: AsRef<[u8]>>(args: &[A], out: &mut Vec<u8>) {
    encode_command_iter(args.len(), args.iter().map(|a| a.as_ref()), out)
}

/// [`encode_command`] from an iterator of `n` arguments.
pub fn encode_command_iter<'a>(n: usize, args: impl Iterator<Item = &'a [u8]>, out: &mut Vec<u8>) {
    let mut b = itoa::Buffer::new();
    out.push(b'*');
    out.extend_from_slice(b.format(n).as_bytes());
    out.extend_from_slice(b"\r\n");
    for a in args {
        out.push(b'$');
        out.extend_from_slice(b.format(a.len()).as_bytes());
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    type Parsed1 = Option<(Parsed, Vec<Vec<u8>>)>;

    fn parse(buf: &[u8]) -> Result<Parsed1, ProtocolError> {
        let mut ranges = Vec::new();
        let mut scratch = Vec::new();
        let r = parse_request(buf, &Limits::default(), &mut ranges, &mut scratch)?;
        Ok(r.map(|p| {
            let base: &[u8] = match p {
                Parsed::Inline { .. } => &scratch,
                _ => buf,
            };
            let args = ranges.iter().map(|r| base[r.clone()].to_vec()).collect();
            (p, args)
        }))
    }

    #[test]
    fn multibulk_and_partial() {
        let full = b"*2\r\n$3\r\nGET\r\n$3\r\nfoo\r\n";
        let (p, args) = parse(full).unwrap().unwrap();
        assert_eq!(
            p,
            Parsed::Multibulk {
                consumed: full.len()
            }
        );
        assert_eq!(args, vec![b"GET".to_vec(), b"foo".to_vec()]);
        for cut in 0..full.len() {
            assert_eq!(parse(&full[..cut]).unwrap(), None, "cut at {cut}");
        }
    }

    #[test]
    fn inline_with_quotes() {
        let (p, args) = parse(b"set \"a b\" 'c\\'d' \"\\x41\\n\"\r\n")
            .unwrap()
            .unwrap();
        assert!(matches!(p, Parsed::Inline { .. }));
        assert_eq!(
            args,
            vec![
                b"set".to_vec(),
                b"a b".to_vec(),
                b"c'd".to_vec(),
                b"A\n".to_vec()
            ]
        );
        assert!(parse(b"set \"abc\r\n").is_err());
        assert!(matches!(
            parse(b"\r\n").unwrap(),
            Some((Parsed::Empty { consumed: 2 }, _))
        ));
    }

    #[test]
    fn protocol_errors() {
        assert_eq!(
            parse(b"*abc\r\n").unwrap_err().0,
            "invalid multibulk length"
        );
        assert_eq!(
            parse(b"*1\r\n$-1\r\n").unwrap_err().0,
            "invalid bulk length"
        );
        assert_eq!(
            parse(b"*1\r\n+foo\r\n").unwrap_err().0,
            "expected '$', got '+'"
        );
        assert_eq!(
            parse(b"*1\r\n$2147483648\r\n").unwrap_err().0,
            "invalid bulk length"
        );
        // Redis 7.0 accepts counts up to INT_MAX (arguments are only
        // allocated as they arrive).
        assert_eq!(parse(b"*1048577\r\n").unwrap(), None);
        assert_eq!(
            parse(b"*2147483648\r\n").unwrap_err().0,
            "invalid multibulk length"
        );
        let long = vec![b'a'; INLINE_MAX + 1];
        assert_eq!(parse(&long).unwrap_err().0, "too big inline request");
    }

    #[test]
    fn parses_integers_like_redis() {
        assert_eq!(parse_i64(b"0"), Some(0));
        assert_eq!(parse_i64(b"-9223372036854775808"), Some(i64::MIN));
        assert_eq!(parse_i64(b"9223372036854775808"), None);
        assert_eq!(parse_i64(b"01"), None);
        assert_eq!(parse_i64(b"+1"), None);
        assert_eq!(parse_i64(b"-0"), None);
        assert_eq!(parse_i64(b" 1"), None);
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(buf in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = parse(&buf);
        }

        #[test]
        fn arbitrary_star_prefixed_never_panic(tail in proptest::collection::vec(any::<u8>(), 0..256)) {
            let mut buf = b"*".to_vec();
            buf.extend(tail);
            let _ = parse(&buf);
        }

        #[test]
        fn encode_parse_round_trip(args in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 1..8)) {
            let mut buf = Vec::new();
            encode_command(&args, &mut buf);
            let (p, parsed) = parse(&buf).unwrap().unwrap();
            prop_assert_eq!(p, Parsed::Multibulk { consumed: buf.len() });
            prop_assert_eq!(parsed, args);
        }
    }

    #[test]
    fn a_pending_request_is_taken_as_redis_reads_it() {
        let pend = |b: &[u8]| pending_request(b);
        assert_eq!(pend(b"GET k"), Pending::default());
        assert_eq!(pend(b"*2\r"), Pending::default());
        assert_eq!(
            pend(b"*2\r\n$3\r"),
            Pending {
                taken: 4,
                need: None
            }
        );
        assert_eq!(
            pend(b"*2\r\n$3\r\nGET\r\n$5\r\nab"),
            Pending {
                taken: 17,
                need: None
            }
        );
        let big = format!("*1\r\n${}\r\nvvvv", BIG_ARG);
        let head = big.len() - 4;
        assert_eq!(
            pend(big.as_bytes()),
            Pending {
                taken: head,
                need: Some(head + BIG_ARG + 2)
            }
        );
    }
}
