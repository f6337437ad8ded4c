//! Listen addresses: parsing php-fpm's `listen` values and finding which kernel sockets
//! occupy an address (from `/proc/net/tcp`, `/proc/net/tcp6` and `/proc/net/unix`).
//!
//! Matching sockets to processes is [`crate::procs`]' job; this module only answers
//! "which listening socket inodes stand on this address".

mod bound;
mod netlink;
mod queues;

pub use bound::{BoundFile, unix_bound_file};
pub use queues::{AcceptQueue, QueueAddr, accept_queues};

/// The sock_diag reply decoder, for the fuzz tests; not part of the API.
#[doc(hidden)]
pub use netlink::parse_messages as parse_sock_diag_datagram;

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};

/// The longest unix socket path the kernel takes (`sun_path` is 108 bytes with its NUL);
/// a longer `listen` path is silently truncated by php-fpm, which then binds another path.
pub const SUN_PATH_MAX: usize = 107;

/// The host part of a TCP listen address.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum TcpHost {
    /// A bare port: php-fpm binds `[::]` (dual stack) and falls back to `0.0.0.0`.
    Any,
    /// A literal address (`127.0.0.1`, `[::1]`, `[::]`, `0.0.0.0`).
    Ip(IpAddr),
    /// A host name, resolved (IPv4) when used, as php-fpm does.
    Name(String),
}

/// A pool's `listen` (or `pm.status_listen`) address.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ListenAddr {
    /// A unix socket path.
    Unix(PathBuf),
    /// A TCP address.
    Tcp {
        /// Host part.
        host: TcpHost,
        /// Port.
        port: u16,
    },
}

/// Why a `listen` value could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid listen address '{value}': {reason}")]
pub struct ListenParseError {
    /// The value as written.
    pub value: String,
    /// What is wrong with it.
    pub reason: String,
}

impl ListenAddr {
    /// Parses a `listen` value the way php-fpm classifies it: anything with a `:` or made of
    /// digits only is TCP, everything else is a unix socket path.
    pub fn parse(value: &str) -> Result<ListenAddr, ListenParseError> {
        let err = |reason: &str| ListenParseError {
            value: value.to_string(),
            reason: reason.to_string(),
        };
        let v = value.trim();
        if v.is_empty() {
            return Err(err("empty"));
        }
        if v.bytes().all(|b| b.is_ascii_digit()) {
            let port = parse_port(v).ok_or_else(|| err("port must be 1-65535"))?;
            return Ok(ListenAddr::Tcp {
                host: TcpHost::Any,
                port,
            });
        }
        if let Some(idx) = v.rfind(':') {
            let (host, port) = (&v[..idx], &v[idx + 1..]);
            let port = parse_port(port).ok_or_else(|| err("port must be 1-65535"))?;
            let host = if let Some(inner) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']'))
            {
                let ip: Ipv6Addr = inner.parse().map_err(|_| err("bad IPv6 address"))?;
                TcpHost::Ip(IpAddr::V6(ip))
            } else if host.is_empty() {
                return Err(err("missing host before ':'"));
            } else if let Ok(ip) = host.parse::<Ipv4Addr>() {
                TcpHost::Ip(IpAddr::V4(ip))
            } else if host.contains(':') {
                return Err(err(
                    "an IPv6 address must be written in brackets, like [::1]:9000",
                ));
            } else {
                TcpHost::Name(host.to_string())
            };
            return Ok(ListenAddr::Tcp { host, port });
        }
        Ok(ListenAddr::Unix(crate::lossless::to_path(v)))
    }

    /// The unix socket path, if this is one.
    pub fn unix_path(&self) -> Option<&Path> {
        match self {
            ListenAddr::Unix(p) => Some(p),
            ListenAddr::Tcp { .. } => None,
        }
    }

    /// The concrete socket addresses a client connects to (for `Any`, loopback).
    pub fn connect_addrs(&self) -> std::io::Result<Vec<SocketAddr>> {
        match self {
            ListenAddr::Unix(_) => Ok(Vec::new()),
            ListenAddr::Tcp { host, port } => match host {
                TcpHost::Any => Ok(vec![
                    SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), *port),
                    SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), *port),
                ]),
                TcpHost::Ip(ip) if ip.is_unspecified() => {
                    let lo = match ip {
                        IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
                        IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
                    };
                    Ok(vec![SocketAddr::new(lo, *port)])
                }
                TcpHost::Ip(ip) => Ok(vec![SocketAddr::new(*ip, *port)]),
                TcpHost::Name(name) => Ok((name.as_str(), *port)
                    .to_socket_addrs()?
                    .filter(|a| a.is_ipv4())
                    .collect()),
            },
        }
    }

    /// The key php-fpm 8.2 uses for this address in `FPM_SOCKETS`, as it logs it in
    /// `using inherited socket fd=N, "KEY"`: the unix path; `a.b.c.d:port` for IPv4 (a host
    /// name resolved to IPv4); the IPv6 address without brackets then `:port`; `:::port` for a
    /// bare port (bound on `::`). `None` when a host name does not resolve.
    pub fn fpm_sockets_key(&self) -> Option<String> {
        match self {
            // Losslessly: FPM compares the path byte for byte (`HeldSockets::env_value`).
            ListenAddr::Unix(p) => Some(crate::lossless::decode(
                std::os::unix::ffi::OsStrExt::as_bytes(p.as_os_str()),
            )),
            ListenAddr::Tcp { host, port } => match host {
                TcpHost::Any => Some(format!(":::{port}")),
                TcpHost::Ip(ip) => Some(format!("{ip}:{port}")),
                TcpHost::Name(_) => self
                    .connect_addrs()
                    .ok()?
                    .first()
                    .map(|a| format!("{}:{port}", a.ip())),
            },
        }
    }

    /// True when a listening socket bound at `local` stands on this address: the same port
    /// and either the same IP or a wildcard on either side (the kernel refuses the bind then).
    pub fn tcp_conflicts_with(&self, local: &SocketAddr) -> bool {
        let ListenAddr::Tcp { host, port } = self else {
            return false;
        };
        if local.port() != *port {
            return false;
        }
        let other = local.ip();
        let other = match other {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(other),
            IpAddr::V4(_) => other,
        };
        if other.is_unspecified() {
            return true;
        }
        match host {
            TcpHost::Any => true,
            TcpHost::Ip(ip) => ip.is_unspecified() || *ip == other,
            TcpHost::Name(_) => match self.connect_addrs() {
                Ok(addrs) => addrs.iter().any(|a| a.ip() == other),
                Err(_) => false,
            },
        }
    }
}

fn parse_port(s: &str) -> Option<u16> {
    match s.parse::<u32>() {
        Ok(p) if (1..=65535).contains(&p) => Some(p as u16),
        _ => None,
    }
}

impl fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ListenAddr::Unix(p) => write!(f, "{}", p.display()),
            ListenAddr::Tcp { host, port } => match host {
                TcpHost::Any => write!(f, "{port}"),
                TcpHost::Ip(IpAddr::V4(ip)) => write!(f, "{ip}:{port}"),
                TcpHost::Ip(IpAddr::V6(ip)) => write!(f, "[{ip}]:{port}"),
                TcpHost::Name(n) => write!(f, "{n}:{port}"),
            },
        }
    }
}

/// Inodes of the listening sockets that stand on `addr` in this network namespace.
pub fn listening_inodes(addr: &ListenAddr) -> std::io::Result<Vec<u64>> {
    let mut out = Vec::new();
    match addr {
        ListenAddr::Unix(path) => {
            for entry in read_unix_listeners()? {
                if entry.0 == *path {
                    out.push(entry.1);
                }
            }
        }
        ListenAddr::Tcp { .. } => {
            for (local, inode) in read_tcp_listeners()? {
                if addr.tcp_conflicts_with(&local) {
                    out.push(inode);
                }
            }
        }
    }
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

/// Every TCP socket in LISTEN state: local address and inode. Asks the kernel through
/// sock_diag netlink for LISTEN sockets only; falls back to `/proc/net/tcp{,6}`.
pub fn read_tcp_listeners() -> std::io::Result<Vec<(SocketAddr, u64)>> {
    match netlink::tcp_listeners() {
        Ok(list) => Ok(list),
        Err(_) => read_proc_tcp_listeners(),
    }
}

/// [`read_tcp_listeners`] from `/proc/net/tcp` and `/proc/net/tcp6`.
pub fn read_proc_tcp_listeners() -> std::io::Result<Vec<(SocketAddr, u64)>> {
    let mut out = Vec::new();
    for (file, v6) in [("/proc/net/tcp", false), ("/proc/net/tcp6", true)] {
        let text = match std::fs::read_to_string(file) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        out.extend(parse_proc_net_tcp(&text, v6));
    }
    Ok(out)
}

/// Parses `/proc/net/tcp{,6}` text, keeping LISTEN (state 0A) rows.
pub fn parse_proc_net_tcp(text: &str, v6: bool) -> Vec<(SocketAddr, u64)> {
    let mut out = Vec::new();
    for line in text.lines().skip(1) {
        let cols: Vec<&str> = line.split_whitespace().collect();
        if cols.len() < 10 || cols[3] != "0A" {
            continue;
        }
        let Some((ip_hex, port_hex)) = cols[1].split_once(':') else {
            continue;
        };
        let Ok(port) = u16::from_str_radix(port_hex, 16) else {
            continue;
        };
        let Ok(inode) = cols[9].parse::<u64>() else {
            continue;
        };
        let ip = if v6 {
            match decode_v6(ip_hex) {
                Some(ip) => IpAddr::V6(ip),
                None => continue,
            }
        } else {
            match u32::from_str_radix(ip_hex, 16) {
                // The kernel prints the network-order address as a host-endian u32.
                Ok(n) => IpAddr::V4(Ipv4Addr::from(n.to_ne_bytes())),
                Err(_) => continue,
            }
        };
        out.push((SocketAddr::new(ip, port), inode));
    }
    out
}

fn decode_v6(hex: &str) -> Option<Ipv6Addr> {
    if hex.len() != 32 {
        return None;
    }
    let mut bytes = [0u8; 16];
    // Four host-endian 32-bit words.
    for word in 0..4 {
        // `get`: a multi-byte character would make a byte range fall inside it.
        let w = u32::from_str_radix(hex.get(word * 8..word * 8 + 8)?, 16).ok()?;
        bytes[word * 4..word * 4 + 4].copy_from_slice(&w.to_ne_bytes());
    }
    Some(Ipv6Addr::from(bytes))
}

/// One non-blocking connect to the unix socket at `path`: `Ok` when accepted, `EAGAIN` when it
/// would wait in a full backlog, `ECONNREFUSED` when nobody listens, `ENAMETOOLONG` for a path
/// too long for a socket address. Never blocks.
pub fn connect_unix_now(path: &Path) -> nix::Result<()> {
    use nix::sys::socket::{AddressFamily, SockFlag, SockType, UnixAddr, connect, socket};
    use std::os::fd::AsRawFd;
    let addr = UnixAddr::new(path)?;
    let fd = socket(
        AddressFamily::Unix,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
        None,
    )?;
    connect(fd.as_raw_fd(), &addr)
}

/// Whether something listens on the unix socket file at `path`, asked the only way that
/// does not depend on how the path was spelt when the socket was bound (the kernel's socket
/// table names a socket by the path text given to `bind`): [`connect_unix_now`].
/// `Some(false)` when the connection is refused or there is no such file, `Some(true)` when
/// it is accepted or waits in a full backlog, `None` when it cannot be told (no permission).
pub fn unix_path_listened(path: &Path) -> Option<bool> {
    use nix::errno::Errno;
    match connect_unix_now(path) {
        Ok(()) | Err(Errno::EAGAIN) | Err(Errno::EINPROGRESS) => Some(true),
        Err(Errno::ECONNREFUSED) | Err(Errno::ENOENT) => Some(false),
        Err(_) => None,
    }
}

/// Every listening unix stream socket bound to a path: path and inode.
pub fn read_unix_listeners() -> std::io::Result<Vec<(PathBuf, u64)>> {
    // Paths may be any bytes: read losslessly, so one that is not UTF-8 neither fails the
    // whole read nor loses its bytes.
    let bytes = std::fs::read("/proc/net/unix")?;
    Ok(parse_proc_net_unix(&crate::lossless::decode(&bytes)))
}

/// Parses `/proc/net/unix` text, keeping listening sockets that have a path.
pub fn parse_proc_net_unix(text: &str) -> Vec<(PathBuf, u64)> {
    const SO_ACCEPTCON: u32 = 0x0001_0000;
    let mut out = Vec::new();
    for line in text.lines().skip(1) {
        let cols: Vec<&str> = line.split_whitespace().collect();
        if cols.len() < 8 {
            continue;
        }
        let Ok(flags) = u32::from_str_radix(cols[3], 16) else {
            continue;
        };
        if flags & SO_ACCEPTCON == 0 {
            continue;
        }
        let Ok(inode) = cols[6].parse::<u64>() else {
            continue;
        };
        // The path is the rest of the line (it may contain spaces); abstract names start with '@'.
        let path = cols[7..].join(" ");
        if path.starts_with('/') {
            out.push((crate::lossless::to_path(&path), inode));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_proc_net_tcp6_address_with_a_multibyte_character_is_skipped() {
        // 32 bytes, but the 'é' straddles the first 8-byte word.
        let text = "header\n   0: 0000000\u{e9}00000000000000000000000:0050 00000000:0000 0A \
                    00000000:00000000 00:00000000 00000000 0 0 4242 1\n";
        assert_eq!(parse_proc_net_tcp(text, true), Vec::new());
    }

    #[test]
    fn parses_the_forms_php_fpm_accepts() {
        assert_eq!(
            ListenAddr::parse("9000").unwrap(),
            ListenAddr::Tcp {
                host: TcpHost::Any,
                port: 9000
            }
        );
        assert_eq!(
            ListenAddr::parse("127.0.0.1:9000").unwrap(),
            ListenAddr::Tcp {
                host: TcpHost::Ip("127.0.0.1".parse().unwrap()),
                port: 9000
            }
        );
        assert_eq!(
            ListenAddr::parse("[::]:9000").unwrap(),
            ListenAddr::Tcp {
                host: TcpHost::Ip("::".parse().unwrap()),
                port: 9000
            }
        );
        assert_eq!(
            ListenAddr::parse("localhost:9000").unwrap(),
            ListenAddr::Tcp {
                host: TcpHost::Name("localhost".into()),
                port: 9000
            }
        );
        assert_eq!(
            ListenAddr::parse("/run/php/php8.2-fpm.sock").unwrap(),
            ListenAddr::Unix("/run/php/php8.2-fpm.sock".into())
        );
        assert!(ListenAddr::parse("127.0.0.1:0").is_err());
        assert!(ListenAddr::parse("70000").is_err());
        assert!(ListenAddr::parse("::1:9000").is_err());
    }

    #[test]
    fn fpm_sockets_keys_match_what_php_fpm_logs() {
        let key = |s: &str| ListenAddr::parse(s).unwrap().fpm_sockets_key().unwrap();
        assert_eq!(key("127.0.0.1:29871"), "127.0.0.1:29871");
        assert_eq!(key("29872"), ":::29872");
        assert_eq!(key("[::1]:29873"), "::1:29873");
        assert_eq!(key("localhost:29874"), "127.0.0.1:29874");
        assert_eq!(key("/tmp/s.sock"), "/tmp/s.sock");
    }

    #[test]
    fn display_round_trips() {
        for v in [
            "9000",
            "127.0.0.1:9000",
            "[::]:9000",
            "[::1]:9001",
            "/tmp/a.sock",
        ] {
            assert_eq!(ListenAddr::parse(v).unwrap().to_string(), v);
        }
    }

    #[test]
    fn wildcards_conflict_with_specific_addresses() {
        let lo = ListenAddr::parse("127.0.0.1:9000").unwrap();
        assert!(lo.tcp_conflicts_with(&"127.0.0.1:9000".parse().unwrap()));
        assert!(lo.tcp_conflicts_with(&"0.0.0.0:9000".parse().unwrap()));
        assert!(lo.tcp_conflicts_with(&"[::]:9000".parse().unwrap()));
        assert!(!lo.tcp_conflicts_with(&"127.0.0.2:9000".parse().unwrap()));
        assert!(!lo.tcp_conflicts_with(&"127.0.0.1:9001".parse().unwrap()));
        let any = ListenAddr::parse("9000").unwrap();
        assert!(any.tcp_conflicts_with(&"127.0.0.5:9000".parse().unwrap()));
    }

    #[test]
    fn parses_proc_net_tcp() {
        let text = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n   0: 0100007F:4A38 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 12345 1 0000000000000000 100 0 0 10 0\n   1: 0100007F:4A38 0100007F:D2F0 01 00000000:00000000 00:00000000 00000000     0        0 999 1 0000000000000000 100 0 0 10 0\n";
        let rows = parse_proc_net_tcp(text, false);
        assert_eq!(rows, vec![("127.0.0.1:19000".parse().unwrap(), 12345)]);
        let text6 = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n   0: 00000000000000000000000001000000:2328 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 777 1 0000000000000000 100 0 0 10 0\n";
        let rows = parse_proc_net_tcp(text6, true);
        assert_eq!(rows, vec![("[::1]:9000".parse().unwrap(), 777)]);
    }

    #[test]
    fn parses_proc_net_unix() {
        let text = "Num       RefCount Protocol Flags    Type St Inode Path\n0000000000000000: 00000002 00000000 00010000 0001 01 4242 /tmp/x y.sock\n0000000000000000: 00000002 00000000 00000000 0001 03 4343 /tmp/conn.sock\n0000000000000000: 00000002 00000000 00010000 0001 01 4444 @abstract\n";
        assert_eq!(
            parse_proc_net_unix(text),
            vec![(PathBuf::from("/tmp/x y.sock"), 4242)]
        );
    }
}
