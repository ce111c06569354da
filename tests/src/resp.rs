//! A raw RESP client: sends commands, returns each reply's exact bytes and
//! a parsed tree for comparisons that ignore order.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Reply {
    /// A scalar: its type byte and payload (`+OK` → ('+', "OK")).
    Scalar(u8, Vec<u8>),
    /// An aggregate: type byte and elements (maps flattened).
    Agg(u8, Vec<Reply>),
}

pub struct Conn {
    s: Sock,
    buf: Vec<u8>,
}

/// A TCP connection, or one on the server's unix socket.
enum Sock {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Sock {
    fn set_read_timeout(&self, d: Option<Duration>) -> std::io::Result<()> {
        match self {
            Sock::Tcp(s) => s.set_read_timeout(d),
            Sock::Unix(s) => s.set_read_timeout(d),
        }
    }

    fn set_write_timeout(&self, d: Option<Duration>) -> std::io::Result<()> {
        match self {
            Sock::Tcp(s) => s.set_write_timeout(d),
            Sock::Unix(s) => s.set_write_timeout(d),
        }
    }
}

impl Read for Sock {
    fn read(&mut self, b: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Sock::Tcp(s) => s.read(b),
            Sock::Unix(s) => s.read(b),
        }
    }
}

impl Write for Sock {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        match self {
            Sock::Tcp(s) => s.write(b),
            Sock::Unix(s) => s.write(b),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

pub struct Raw {
    pub raw: Vec<u8>,
    pub tree: Reply,
}

/// Encodes a command as a RESP multibulk.
pub fn encode<A: AsRef<[u8]>>(args: &[A]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        let a = a.as_ref();
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// Splits a redis-cli style line: whitespace separated, `"…"` with
/// backslash escapes (\n \r \t \" \\ \xHH), `'…'` verbatim.
pub fn split_line(line: &str) -> Option<Vec<Vec<u8>>> {
    let b = line.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        while i < b.len() && b[i].is_ascii_whitespace() {
            i += 1;
        }
        if i >= b.len() {
            break;
        }
        let mut cur = Vec::new();
        if b[i] == b'"' {
            i += 1;
            loop {
                let c = *b.get(i)?;
                if c == b'"' {
                    i += 1;
                    break;
                }
                if c == b'\\' {
                    let n = *b.get(i + 1)?;
                    match n {
                        b'n' => cur.push(b'\n'),
                        b'r' => cur.push(b'\r'),
                        b't' => cur.push(b'\t'),
                        b'x' => {
                            let h = std::str::from_utf8(b.get(i + 2..i + 4)?).ok()?;
                            cur.push(u8::from_str_radix(h, 16).ok()?);
                            i += 2;
                        }
                        o => cur.push(o),
                    }
                    i += 2;
                } else {
                    cur.push(c);
                    i += 1;
                }
            }
        } else if b[i] == b'\'' {
            i += 1;
            loop {
                let c = *b.get(i)?;
                i += 1;
                if c == b'\'' {
                    break;
                }
                cur.push(c);
            }
        } else {
            while i < b.len() && !b[i].is_ascii_whitespace() {
                cur.push(b[i]);
                i += 1;
            }
        }
        out.push(cur);
    }
    Some(out)
}

impl Conn {
    pub fn connect(port: u16) -> std::io::Result<Conn> {
        Self::connect_to("127.0.0.1", port)
    }

    /// A connection to another loopback address (127.0.0.2 …).
    pub fn connect_to(ip: &str, port: u16) -> std::io::Result<Conn> {
        let s = TcpStream::connect((ip, port))?;
        s.set_read_timeout(Some(Duration::from_secs(10)))?;
        s.set_nodelay(true)?;
        Ok(Conn {
            s: Sock::Tcp(s),
            buf: Vec::new(),
        })
    }

    /// A connection on a server's unix socket.
    pub fn connect_unix(path: &std::path::Path) -> std::io::Result<Conn> {
        let s = UnixStream::connect(path)?;
        s.set_read_timeout(Some(Duration::from_secs(10)))?;
        Ok(Conn {
            s: Sock::Unix(s),
            buf: Vec::new(),
        })
    }

    pub fn set_timeout(&mut self, d: Duration) {
        let _ = self.s.set_read_timeout(Some(d));
    }

    /// Bounds a blocking send (a server that stops reading is then an
    /// error instead of a hang).
    pub fn set_write_timeout(&mut self, d: Duration) {
        let _ = self.s.set_write_timeout(Some(d));
    }

    pub fn send_raw(&mut self, b: &[u8]) -> std::io::Result<()> {
        self.s.write_all(b)
    }

    pub fn cmd<A: AsRef<[u8]>>(&mut self, args: &[A]) -> std::io::Result<Raw> {
        self.send_raw(&encode(args))?;
        self.read_reply()
    }

    /// One field of `INFO <section>`; panics when it is missing.
    pub fn info_field(&mut self, section: &str, field: &str) -> String {
        self.info_field_opt(section, field)
            .unwrap_or_else(|| panic!("no {field} in INFO {section}"))
    }

    /// One field of `INFO <section>`, if INFO shows it now.
    pub fn info_field_opt(&mut self, section: &str, field: &str) -> Option<String> {
        let t = self.text(&["INFO", section]);
        t.split("\r\n")
            .find_map(|l| l.strip_prefix(&format!("{field}:")))
            .map(str::to_string)
    }

    /// A command's reply as text (for short assertions).
    pub fn text<A: AsRef<[u8]>>(&mut self, args: &[A]) -> String {
        let r = self.cmd(args).expect("reply");
        String::from_utf8_lossy(&r.raw).into_owned()
    }

    /// Reads exactly one reply.
    pub fn read_reply(&mut self) -> std::io::Result<Raw> {
        loop {
            if let Some((tree, used)) = parse(&self.buf) {
                let raw = self.buf.drain(..used).collect();
                return Ok(Raw { raw, tree });
            }
            let mut chunk = [0u8; 16384];
            let n = self.s.read(&mut chunk)?;
            if n == 0 {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "connection closed",
                ));
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// Reads whatever arrives until the server closes the connection or
    /// nothing more comes for `idle`; returns (bytes, closed).
    pub fn drain(&mut self, idle: Duration) -> (Vec<u8>, bool) {
        let _ = self.s.set_read_timeout(Some(idle));
        let mut got = std::mem::take(&mut self.buf);
        let mut chunk = [0u8; 16384];
        loop {
            match self.s.read(&mut chunk) {
                Ok(0) => return (got, true),
                Ok(n) => got.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return (got, true),
                Err(_) => return (got, false),
            }
        }
    }

    /// True when the server has closed the connection (reads EOF within
    /// the timeout) — after any pending replies are consumed.
    pub fn is_closed(&mut self) -> bool {
        let _ = self.s.set_read_timeout(Some(Duration::from_secs(3)));
        let mut chunk = [0u8; 1024];
        loop {
            match self.s.read(&mut chunk) {
                Ok(0) => return true,
                Ok(_) => continue,
                Err(e) => return e.kind() == std::io::ErrorKind::ConnectionReset,
            }
        }
    }
}

fn line(b: &[u8], from: usize) -> Option<(&[u8], usize)> {
    let mut i = from;
    while i + 1 < b.len() {
        if b[i] == b'\r' && b[i + 1] == b'\n' {
            return Some((&b[from..i], i + 2));
        }
        i += 1;
    }
    None
}

/// Parses one reply from `b`; returns it and the bytes used.
pub fn parse(b: &[u8]) -> Option<(Reply, usize)> {
    parse_at(b, 0)
}

fn parse_at(b: &[u8], at: usize) -> Option<(Reply, usize)> {
    let t = *b.get(at)?;
    let (l, next) = line(b, at + 1)?;
    match t {
        b'+' | b'-' | b':' | b'_' | b',' | b'#' | b'(' => {
            Some((Reply::Scalar(t, l.to_vec()), next))
        }
        b'$' | b'=' | b'!' => {
            let n: i64 = std::str::from_utf8(l).ok()?.parse().ok()?;
            if n < 0 {
                return Some((Reply::Scalar(t, b"<nil>".to_vec()), next));
            }
            let end = next + n as usize;
            if b.len() < end + 2 {
                return None;
            }
            Some((Reply::Scalar(t, b[next..end].to_vec()), end + 2))
        }
        b'*' | b'~' | b'>' | b'%' | b'|' => {
            let n: i64 = std::str::from_utf8(l).ok()?.parse().ok()?;
            if n < 0 {
                return Some((Reply::Agg(t, vec![]), next));
            }
            let count = if t == b'%' || t == b'|' { 2 * n } else { n } as usize;
            let mut items = Vec::with_capacity(count);
            let mut pos = next;
            for _ in 0..count {
                let (r, p) = parse_at(b, pos)?;
                items.push(r);
                pos = p;
            }
            Some((Reply::Agg(t, items), pos))
        }
        _ => Some((Reply::Scalar(b'?', l.to_vec()), next)),
    }
}

/// Escapes bytes for failure messages.
pub fn show(b: &[u8]) -> String {
    b.iter()
        .flat_map(|&c| std::ascii::escape_default(c))
        .map(char::from)
        .collect()
}
