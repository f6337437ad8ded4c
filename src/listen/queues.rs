//! Accept queues of listening sockets, from the kernel through `NETLINK_SOCK_DIAG`: for a
//! socket in LISTEN state the kernel reports the connections waiting to be accepted and the
//! queue's limit (the effective backlog). Works for unix sockets too, where FPM's status page
//! always says 0.

use super::netlink::{TCP_LISTEN, attributes, dump, inet_listen_request};
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;

const INET_DIAG_MSG_LEN: usize = 72;
const UNIX_DIAG_MSG_LEN: usize = 16;
const UDIAG_SHOW_NAME: u32 = 0x01;
const UDIAG_SHOW_RQLEN: u32 = 0x10;
const UNIX_DIAG_NAME: u16 = 0;
const UNIX_DIAG_RQLEN: u16 = 4;

/// Where a listening socket stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueueAddr {
    /// A TCP address.
    Tcp(SocketAddr),
    /// A unix socket path (abstract names start with `@`).
    Unix(PathBuf),
}

/// One listening socket's accept queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcceptQueue {
    /// The address.
    pub addr: QueueAddr,
    /// Connections waiting to be accepted.
    pub waiting: u32,
    /// The queue's limit.
    pub limit: u32,
}

/// Accept queues of every listening TCP and unix socket in this network namespace.
pub fn accept_queues() -> io::Result<Vec<AcceptQueue>> {
    let mut out = Vec::new();
    for family in [libc::AF_INET as u8, libc::AF_INET6 as u8] {
        dump(&inet_listen_request(family), |m| {
            if let Some(q) = parse_inet(m) {
                out.push(q);
            }
        })?;
    }
    let mut req = Vec::with_capacity(24);
    req.extend_from_slice(&[libc::AF_UNIX as u8, 0, 0, 0]);
    req.extend_from_slice(&(1u32 << TCP_LISTEN).to_ne_bytes());
    req.extend_from_slice(&0u32.to_ne_bytes()); // inode: any
    req.extend_from_slice(&(UDIAG_SHOW_NAME | UDIAG_SHOW_RQLEN).to_ne_bytes());
    req.extend_from_slice(&[0xff; 8]); // cookie: none
    dump(&req, |m| {
        if let Some(q) = parse_unix(m) {
            out.push(q);
        }
    })?;
    Ok(out)
}

fn parse_inet(m: &[u8]) -> Option<AcceptQueue> {
    if m.len() < INET_DIAG_MSG_LEN {
        return None;
    }
    let port = u16::from_be_bytes([m[4], m[5]]);
    let src = &m[8..24];
    let ip = if m[0] == libc::AF_INET as u8 {
        IpAddr::V4(Ipv4Addr::new(src[0], src[1], src[2], src[3]))
    } else {
        let bytes: [u8; 16] = src.try_into().ok()?;
        IpAddr::V6(Ipv6Addr::from(bytes))
    };
    let waiting = u32::from_ne_bytes(m[56..60].try_into().ok()?);
    let limit = u32::from_ne_bytes(m[60..64].try_into().ok()?);
    Some(AcceptQueue {
        addr: QueueAddr::Tcp(SocketAddr::new(ip, port)),
        waiting,
        limit,
    })
}

fn parse_unix(m: &[u8]) -> Option<AcceptQueue> {
    let mut name = None;
    let mut queue = None;
    for (kind, payload) in attributes(m.get(UNIX_DIAG_MSG_LEN..)?) {
        match kind {
            UNIX_DIAG_NAME => {
                let bytes = match payload.split_first() {
                    Some((0, rest)) => [b"@".as_slice(), rest].concat(),
                    _ => payload
                        .split(|b| *b == 0)
                        .next()
                        .unwrap_or_default()
                        .to_vec(),
                };
                name = Some(PathBuf::from(String::from_utf8_lossy(&bytes).into_owned()));
            }
            UNIX_DIAG_RQLEN if payload.len() >= 8 => {
                queue = Some((
                    u32::from_ne_bytes(payload[0..4].try_into().ok()?),
                    u32::from_ne_bytes(payload[4..8].try_into().ok()?),
                ));
            }
            _ => {}
        }
    }
    let (waiting, limit) = queue?;
    Some(AcceptQueue {
        addr: QueueAddr::Unix(name?),
        waiting,
        limit,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sees_waiting_connections_on_tcp_and_unix_listeners() {
        let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let taddr = tcp.local_addr().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("q.sock");
        let unix = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let _c1 = std::net::TcpStream::connect(taddr).unwrap();
        let _c2 = std::os::unix::net::UnixStream::connect(&path).unwrap();
        let _c3 = std::os::unix::net::UnixStream::connect(&path).unwrap();
        let all = accept_queues().unwrap();
        let t = all
            .iter()
            .find(|q| q.addr == QueueAddr::Tcp(taddr))
            .expect("the TCP listener");
        assert_eq!(t.waiting, 1);
        assert!(t.limit > 0);
        let u = all
            .iter()
            .find(|q| q.addr == QueueAddr::Unix(path.clone()))
            .expect("the unix listener");
        assert_eq!(u.waiting, 2);
        assert!(u.limit > 0);
        drop((tcp, unix));
    }
}
