//! Sockets: the stream a client connection runs on (TCP or a unix
//! socket), and the node's own outgoing TCP connections (to its master, to
//! other nodes on the cluster bus), made from `bind-source-addr` when it is
//! set, as Redis makes them.

use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{lookup_host, TcpSocket, TcpStream, UnixStream};

/// Listens on `addr` (`ip:port`, `[ip6]:port`) as Redis's listening
/// sockets do: SO_REUSEADDR, and an IPv6 socket for IPv6 only, so `*` and
/// `::*` can share a port; marked with `mark` (SO_MARK, for the host's
/// routing and filtering rules) when it is not 0, as `socket-mark-id`
/// marks them. Returns a non-blocking socket for tokio.
pub fn listen_tcp(addr: &str, backlog: i32, mark: u32) -> io::Result<tokio::net::TcpListener> {
    use socket2::{Domain, Socket, Type};
    let mut last = None;
    for a in std::net::ToSocketAddrs::to_socket_addrs(addr)? {
        let attempt = (|| {
            let sock = Socket::new(Domain::for_address(a), Type::STREAM, None)?;
            sock.set_reuse_address(true)?;
            if a.is_ipv6() {
                sock.set_only_v6(true)?;
            }
            sock.bind(&a.into())?;
            sock.listen(backlog)?;
            sock.set_nonblocking(true)?;
            if mark != 0 {
                // Setting a mark takes CAP_NET_ADMIN; without it Redis
                // listens unmarked and says nothing, and so do we.
                #[cfg(any(target_os = "linux", target_os = "android"))]
                let _ = sock.set_mark(mark);
            }
            tokio::net::TcpListener::from_std(sock.into())
        })();
        match attempt {
            Ok(l) => return Ok(l),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| {
        io::Error::new(
            io::ErrorKind::AddrNotAvailable,
            format!("{addr}: no address"),
        )
    }))
}

/// Connects to `host:port`, from the address `source` when it is not
/// empty (any local port).
pub async fn connect(host: &str, port: u16, source: &str) -> std::io::Result<TcpStream> {
    if source.is_empty() {
        return TcpStream::connect((host, port)).await;
    }
    let from: std::net::IpAddr = source.parse().map_err(|_| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("bind-source-addr {source} is not an address"),
        )
    })?;
    let mut last = None;
    for to in lookup_host((host, port)).await? {
        if to.is_ipv4() != from.is_ipv4() {
            continue;
        }
        let sock = if to.is_ipv4() {
            TcpSocket::new_v4()?
        } else {
            TcpSocket::new_v6()?
        };
        sock.bind(std::net::SocketAddr::new(from, 0))?;
        match sock.connect(to).await {
            Ok(s) => return Ok(s),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::AddrNotAvailable,
            format!("no address of {host} reachable from {source}"),
        )
    }))
}

/// The socket a client connection runs on: TCP, or the `unixsocket`
/// listener's. One type, so the connection loop, a replica's stream and a
/// slot import read and write either the same way.
pub enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

/// Calls the same method on whichever socket `$s` holds.
macro_rules! either {
    ($s:expr, $x:ident => $e:expr) => {
        match $s {
            Stream::Tcp($x) => $e,
            Stream::Unix($x) => $e,
        }
    };
}

impl Stream {
    pub fn try_write(&self, buf: &[u8]) -> io::Result<usize> {
        either!(self, s => s.try_write(buf))
    }

    pub fn try_read_buf<B: bytes::BufMut>(&self, buf: &mut B) -> io::Result<usize> {
        either!(self, s => s.try_read_buf(buf))
    }

    pub async fn readable(&self) -> io::Result<()> {
        either!(self, s => s.readable().await)
    }

    pub async fn writable(&self) -> io::Result<()> {
        either!(self, s => s.writable().await)
    }

    /// The peer's address as Redis names it: its IP, or `/unixsocket`.
    pub fn peer_ip(&self) -> io::Result<String> {
        match self {
            Stream::Tcp(s) => Ok(s.peer_addr()?.ip().to_string()),
            Stream::Unix(_) => Ok("/unixsocket".into()),
        }
    }

    /// Borrowed halves, to read and write at once.
    pub fn split(&mut self) -> (ReadHalf<'_>, WriteHalf<'_>) {
        match self {
            Stream::Tcp(s) => {
                let (r, w) = s.split();
                (ReadHalf::Tcp(r), WriteHalf::Tcp(w))
            }
            Stream::Unix(s) => {
                let (r, w) = s.split();
                (ReadHalf::Unix(r), WriteHalf::Unix(w))
            }
        }
    }
}

impl AsFd for Stream {
    fn as_fd(&self) -> BorrowedFd<'_> {
        either!(self, s => s.as_fd())
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        either!(self.get_mut(), s => Pin::new(s).poll_read(cx, buf))
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        either!(self.get_mut(), s => Pin::new(s).poll_write(cx, buf))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        either!(self.get_mut(), s => Pin::new(s).poll_flush(cx))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        either!(self.get_mut(), s => Pin::new(s).poll_shutdown(cx))
    }
}

/// The reading half of a [`Stream`].
pub enum ReadHalf<'a> {
    Tcp(tokio::net::tcp::ReadHalf<'a>),
    Unix(tokio::net::unix::ReadHalf<'a>),
}

/// The writing half of a [`Stream`].
pub enum WriteHalf<'a> {
    Tcp(tokio::net::tcp::WriteHalf<'a>),
    Unix(tokio::net::unix::WriteHalf<'a>),
}

impl WriteHalf<'_> {
    /// Sets TCP_NODELAY on the socket (a Unix socket has no Nagle).
    pub fn set_nodelay(&self, on: bool) -> io::Result<()> {
        match self {
            WriteHalf::Tcp(s) => s.as_ref().set_nodelay(on),
            WriteHalf::Unix(_) => Ok(()),
        }
    }
}

impl AsyncRead for ReadHalf<'_> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ReadHalf::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            ReadHalf::Unix(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for WriteHalf<'_> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            WriteHalf::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            WriteHalf::Unix(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            WriteHalf::Tcp(s) => Pin::new(s).poll_flush(cx),
            WriteHalf::Unix(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            WriteHalf::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            WriteHalf::Unix(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}
