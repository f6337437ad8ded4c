//! Listening TCP sockets straight from the kernel through `NETLINK_SOCK_DIAG`, filtered to the
//! LISTEN state by the kernel itself. `/proc/net/tcp` lists every socket (a busy host has tens
//! of thousands in TIME_WAIT) and costs tens of milliseconds to produce and parse; this asks
//! only for the few that listen.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

const SOCK_DIAG_BY_FAMILY: u16 = 20;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
pub(super) const TCP_LISTEN: u32 = 10;
const NLMSG_HDRLEN: usize = 16;
/// `struct inet_diag_msg`: family, state, timer, retrans, a 48-byte socket id, then
/// expires, rqueue, wqueue, uid, inode.
const DIAG_MSG_LEN: usize = 72;

/// Every TCP socket in LISTEN state (IPv4 and IPv6): local address and inode.
pub fn tcp_listeners() -> io::Result<Vec<(SocketAddr, u64)>> {
    let mut out = Vec::new();
    for family in [libc::AF_INET as u8, libc::AF_INET6 as u8] {
        dump(&inet_listen_request(family), |m| {
            if let Some(entry) = parse_diag_msg(m) {
                out.push(entry);
            }
        })?;
    }
    Ok(out)
}

/// An `inet_diag_req_v2` for the TCP sockets of `family` in LISTEN state: family, protocol,
/// ext, pad, states, then a 48-byte socket id matching any.
pub(super) fn inet_listen_request(family: u8) -> Vec<u8> {
    let mut req = Vec::with_capacity(56);
    req.extend_from_slice(&[family, libc::IPPROTO_TCP as u8, 0, 0]);
    req.extend_from_slice(&(1u32 << TCP_LISTEN).to_ne_bytes());
    req.extend_from_slice(&[0u8; 48]);
    req
}

/// Sends one `SOCK_DIAG_BY_FAMILY` dump request (`request` is the family's request struct,
/// without the netlink header) and hands each reply message's payload to `each`.
pub(super) fn dump(request: &[u8], each: impl FnMut(&[u8])) -> io::Result<()> {
    query(request, true, each)
}

/// [`dump`], or with `dump` false a request for one socket (named in `request`), answered
/// by one datagram: its message, or an error.
pub(super) fn query(request: &[u8], dump: bool, mut each: impl FnMut(&[u8])) -> io::Result<()> {
    // SAFETY: socket(2) with constant arguments; the result is checked.
    let raw = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
            libc::NETLINK_SOCK_DIAG,
        )
    };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor nobody else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };

    let mut msg = Vec::with_capacity(NLMSG_HDRLEN + request.len());
    msg.extend_from_slice(&((NLMSG_HDRLEN + request.len()) as u32).to_ne_bytes());
    msg.extend_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    let flags = if dump {
        libc::NLM_F_REQUEST | libc::NLM_F_DUMP
    } else {
        libc::NLM_F_REQUEST
    };
    msg.extend_from_slice(&(flags as u16).to_ne_bytes());
    msg.extend_from_slice(&1u32.to_ne_bytes()); // sequence
    msg.extend_from_slice(&0u32.to_ne_bytes()); // port id: the kernel
    msg.extend_from_slice(request);

    // SAFETY: a zeroed sockaddr_nl is valid; the kernel is the destination (pid 0).
    let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    addr.nl_family = libc::AF_NETLINK as u16;
    // SAFETY: buffer and address are valid for the lengths given.
    let sent = unsafe {
        libc::sendto(
            fd.as_raw_fd(),
            msg.as_ptr().cast(),
            msg.len(),
            0,
            (&raw const addr).cast(),
            std::mem::size_of::<libc::sockaddr_nl>() as u32,
        )
    };
    if sent < 0 {
        return Err(io::Error::last_os_error());
    }

    let mut buf = vec![0u8; 32 * 1024];
    loop {
        // SAFETY: recv into a buffer we own, of the length given.
        let n = unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if n == 0 || parse_datagram(&buf[..n as usize], &mut each)? || !dump {
            return Ok(());
        }
    }
}

/// The attributes (`struct nlattr`: length, type, payload, padded to 4 bytes) that follow a
/// sock_diag message's fixed part, as (type, payload); a truncated one ends the list.
pub(super) fn attributes(mut attrs: &[u8]) -> Vec<(u16, &[u8])> {
    let mut out = Vec::new();
    while attrs.len() >= 4 {
        let len = u16::from_ne_bytes([attrs[0], attrs[1]]) as usize;
        let kind = u16::from_ne_bytes([attrs[2], attrs[3]]);
        if len < 4 || len > attrs.len() {
            break;
        }
        out.push((kind, &attrs[4..len]));
        attrs = attrs.get((len + 3) & !3..).unwrap_or(&[]);
    }
    out
}

/// Parses one datagram of netlink messages into `out`; true when the dump is complete.
pub fn parse_messages(data: &[u8], out: &mut Vec<(SocketAddr, u64)>) -> io::Result<bool> {
    parse_datagram(data, &mut |m: &[u8]| {
        if let Some(entry) = parse_diag_msg(m) {
            out.push(entry);
        }
    })
}

/// Walks one datagram of netlink messages, handing each `SOCK_DIAG_BY_FAMILY` payload to
/// `each`; true when the dump is complete.
fn parse_datagram(mut data: &[u8], each: &mut impl FnMut(&[u8])) -> io::Result<bool> {
    while data.len() >= NLMSG_HDRLEN {
        // The loop condition makes these slices 4 and 2 bytes long: the conversions cannot
        // fail.
        let len = u32::from_ne_bytes(data[0..4].try_into().expect("4 bytes")) as usize;
        let kind = u16::from_ne_bytes(data[4..6].try_into().expect("2 bytes"));
        if len < NLMSG_HDRLEN || len > data.len() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "truncated netlink message",
            ));
        }
        match kind {
            NLMSG_DONE => return Ok(true),
            NLMSG_ERROR => {
                let code = data
                    .get(NLMSG_HDRLEN..NLMSG_HDRLEN + 4)
                    // `get` gave exactly 4 bytes.
                    .map(|b| i32::from_ne_bytes(b.try_into().expect("4 bytes")))
                    .unwrap_or(-libc::EIO);
                // The kernel sends a negative errno; anything else (0 is an ACK, which a
                // dump never gets; i32::MIN does not negate) is reported as EIO.
                let errno = code.checked_neg().filter(|&e| e > 0).unwrap_or(libc::EIO);
                return Err(io::Error::from_raw_os_error(errno));
            }
            SOCK_DIAG_BY_FAMILY => each(&data[NLMSG_HDRLEN..len]),
            _ => {}
        }
        let aligned = (len + 3) & !3;
        data = data.get(aligned..).unwrap_or(&[]);
    }
    Ok(false)
}

/// One `inet_diag_msg`: the local address (network byte order in the id) and the inode.
fn parse_diag_msg(m: &[u8]) -> Option<(SocketAddr, u64)> {
    if m.len() < DIAG_MSG_LEN {
        return None;
    }
    let family = m[0];
    let port = u16::from_be_bytes([m[4], m[5]]);
    let src = &m[8..24];
    let ip = if family == libc::AF_INET as u8 {
        IpAddr::V4(Ipv4Addr::new(src[0], src[1], src[2], src[3]))
    } else {
        let bytes: [u8; 16] = src.try_into().ok()?;
        IpAddr::V6(Ipv6Addr::from(bytes))
    };
    let inode = u32::from_ne_bytes(m[68..72].try_into().ok()?);
    Some((SocketAddr::new(ip, port), u64::from(inode)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agrees_with_proc_net_tcp_on_listening_sockets() {
        let v4 = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let v6 = std::net::TcpListener::bind("[::1]:0").ok();
        let got = tcp_listeners().unwrap();
        let want = super::super::read_proc_tcp_listeners().unwrap();
        let mut a: Vec<_> = got.clone();
        let mut b: Vec<_> = want.clone();
        a.sort();
        b.sort();
        // Other tests open and close listeners concurrently: compare ours only.
        for l in std::iter::once(&v4).chain(v6.iter()) {
            let addr = l.local_addr().unwrap();
            let in_a = a.iter().find(|(s, _)| *s == addr).map(|x| x.1);
            let in_b = b.iter().find(|(s, _)| *s == addr).map(|x| x.1);
            assert!(in_a.is_some(), "netlink misses {addr}");
            assert_eq!(in_a, in_b, "inode of {addr}");
        }
    }

    #[test]
    fn an_error_message_becomes_an_os_error() {
        let mut msg = Vec::new();
        msg.extend_from_slice(&20u32.to_ne_bytes());
        msg.extend_from_slice(&NLMSG_ERROR.to_ne_bytes());
        msg.extend_from_slice(&0u16.to_ne_bytes());
        msg.extend_from_slice(&[0u8; 8]);
        msg.extend_from_slice(&(-libc::EPERM).to_ne_bytes());
        let mut out = Vec::new();
        let err = parse_messages(&msg, &mut out).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EPERM));
    }

    #[test]
    fn an_error_code_of_i32_min_does_not_overflow() {
        for code in [i32::MIN, 0, 5] {
            let mut msg = Vec::new();
            msg.extend_from_slice(&20u32.to_ne_bytes());
            msg.extend_from_slice(&NLMSG_ERROR.to_ne_bytes());
            msg.extend_from_slice(&[0u8; 10]);
            msg.extend_from_slice(&code.to_ne_bytes());
            let err = parse_messages(&msg, &mut Vec::new()).unwrap_err();
            assert_eq!(err.raw_os_error(), Some(libc::EIO), "code {code}");
        }
    }
}
