//! Reply encoding: commands write RESP straight into the connection's output
//! buffer, so a pipeline of replies becomes one contiguous write.

/// Which protocol the client negotiated (`HELLO 2|3`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Proto {
    #[default]
    Resp2,
    Resp3,
}

/// Appends RESP-encoded replies to a byte buffer.
pub struct Reply<'a> {
    pub out: &'a mut Vec<u8>,
    pub proto: Proto,
}

impl<'a> Reply<'a> {
    pub fn new(out: &'a mut Vec<u8>, proto: Proto) -> Self {
        Reply { out, proto }
    }

    pub fn is_resp3(&self) -> bool {
        self.proto == Proto::Resp3
    }

    fn header(&mut self, tag: u8, n: i64) {
        self.out.push(tag);
        let mut b = itoa::Buffer::new();
        self.out.extend_from_slice(b.format(n).as_bytes());
        self.out.extend_from_slice(b"\r\n");
    }

    /// `+OK`
    pub fn ok(&mut self) {
        self.out.extend_from_slice(b"+OK\r\n");
    }

    /// A simple string: `+text`. The text must not contain CR or LF.
    pub fn simple(&mut self, s: &str) {
        self.out.push(b'+');
        self.out.extend_from_slice(s.as_bytes());
        self.out.extend_from_slice(b"\r\n");
    }

    /// An error line. `msg` is the full text after the dash, e.g.
    /// `ERR syntax error` or `WRONGTYPE Operation ...`.
    pub fn error(&mut self, msg: &str) {
        self.error_bytes(msg.as_bytes())
    }

    /// An error line whose text may hold arbitrary bytes (echoed input).
    pub fn error_bytes(&mut self, msg: &[u8]) {
        self.out.push(b'-');
        // Redis replaces newlines in error strings with spaces so the
        // reply stays one line.
        for &c in msg {
            self.out
                .push(if c == b'\r' || c == b'\n' { b' ' } else { c });
        }
        self.out.extend_from_slice(b"\r\n");
    }

    pub fn int(&mut self, n: i64) {
        self.header(b':', n);
    }

    pub fn bulk(&mut self, b: &[u8]) {
        self.header(b'$', b.len() as i64);
        self.out.extend_from_slice(b);
        self.out.extend_from_slice(b"\r\n");
    }

    pub fn bulk_int(&mut self, n: i64) {
        let mut b = itoa::Buffer::new();
        self.bulk(b.format(n).as_bytes());
    }

    /// A double as Redis prints it: a bulk string in RESP2, `,` in RESP3.
    pub fn double(&mut self, d: f64) {
        let mut buf = [0u8; 32];
        let s = crate::util::fmt_double(d, &mut buf);
        if self.is_resp3() {
            self.out.push(b',');
            self.out.extend_from_slice(s);
            self.out.extend_from_slice(b"\r\n");
        } else {
            self.bulk(s);
        }
    }

    /// Null bulk (`$-1`) in RESP2, `_` in RESP3.
    pub fn null(&mut self) {
        if self.is_resp3() {
            self.out.extend_from_slice(b"_\r\n");
        } else {
            self.out.extend_from_slice(b"$-1\r\n");
        }
    }

    /// Null array (`*-1`) in RESP2, `_` in RESP3.
    pub fn null_array(&mut self) {
        if self.is_resp3() {
            self.out.extend_from_slice(b"_\r\n");
        } else {
            self.out.extend_from_slice(b"*-1\r\n");
        }
    }

    pub fn array(&mut self, n: usize) {
        self.header(b'*', n as i64);
    }

    /// A map of `n` key/value pairs: `%n` in RESP3, a flat array of 2n in RESP2.
    pub fn map(&mut self, n: usize) {
        if self.is_resp3() {
            self.header(b'%', n as i64);
        } else {
            self.header(b'*', 2 * n as i64);
        }
    }

    /// A set: `~n` in RESP3, an array in RESP2.
    pub fn set(&mut self, n: usize) {
        if self.is_resp3() {
            self.header(b'~', n as i64);
        } else {
            self.header(b'*', n as i64);
        }
    }

    /// A boolean: `#t`/`#f` in RESP3, `:1`/`:0` in RESP2.
    pub fn boolean(&mut self, v: bool) {
        if self.is_resp3() {
            self.out
                .extend_from_slice(if v { b"#t\r\n" } else { b"#f\r\n" });
        } else {
            self.int(v as i64);
        }
    }

    /// A verbatim string (`=len\r\ntxt:...`) in RESP3, a bulk string in RESP2.
    pub fn verbatim(&mut self, b: &[u8]) {
        if self.is_resp3() {
            self.header(b'=', b.len() as i64 + 4);
            self.out.extend_from_slice(b"txt:");
            self.out.extend_from_slice(b);
            self.out.extend_from_slice(b"\r\n");
        } else {
            self.bulk(b);
        }
    }

    /// A push frame header (`>n`) in RESP3, an array in RESP2.
    pub fn push(&mut self, n: usize) {
        if self.is_resp3() {
            self.header(b'>', n as i64);
        } else {
            self.header(b'*', n as i64);
        }
    }

    /// Raw, already encoded bytes.
    pub fn raw(&mut self, b: &[u8]) {
        self.out.extend_from_slice(b);
    }
}
