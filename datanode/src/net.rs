//! Outgoing TCP connections of the node itself (to its master, to other
//! nodes on the cluster bus), made from `bind-source-addr` when it is set,
//! as Redis makes them.

use tokio::net::{lookup_host, TcpSocket, TcpStream};

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
