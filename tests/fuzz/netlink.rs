//! The sock_diag netlink reply decoder: a datagram of `nlmsghdr`-framed messages.

use fpmctl::listen::parse_sock_diag_datagram;
use proptest::prelude::*;
use std::net::{IpAddr, SocketAddr};

const SOCK_DIAG_BY_FAMILY: u16 = 20;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;

/// One message; `len_field` overrides the true length when set (a lying header).
#[derive(Debug, Clone)]
struct Msg {
    kind: u16,
    payload: Vec<u8>,
    len_field: Option<u32>,
}

impl Msg {
    fn encode(&self, out: &mut Vec<u8>) {
        let len = self.len_field.unwrap_or(16 + self.payload.len() as u32);
        out.extend_from_slice(&len.to_ne_bytes());
        out.extend_from_slice(&self.kind.to_ne_bytes());
        out.extend_from_slice(&[0u8; 10]);
        out.extend_from_slice(&self.payload);
        // Netlink aligns each message to 4 bytes.
        while !out.len().is_multiple_of(4) {
            out.push(0);
        }
    }
}

/// An `inet_diag_msg` for a listening socket, as the kernel sends it.
fn diag_msg(addr: SocketAddr, inode: u32) -> Vec<u8> {
    let mut m = vec![0u8; 72];
    m[0] = match addr.ip() {
        IpAddr::V4(_) => libc::AF_INET as u8,
        IpAddr::V6(_) => libc::AF_INET6 as u8,
    };
    m[1] = 10;
    m[4..6].copy_from_slice(&addr.port().to_be_bytes());
    match addr.ip() {
        IpAddr::V4(ip) => m[8..12].copy_from_slice(&ip.octets()),
        IpAddr::V6(ip) => m[8..24].copy_from_slice(&ip.octets()),
    }
    m[68..72].copy_from_slice(&inode.to_ne_bytes());
    m
}

fn message() -> impl Strategy<Value = Msg> {
    let kind = prop_oneof![
        Just(SOCK_DIAG_BY_FAMILY),
        Just(NLMSG_ERROR),
        Just(NLMSG_DONE),
        any::<u16>()
    ];
    let payload = prop_oneof![
        (any::<SocketAddr>(), any::<u32>()).prop_map(|(a, i)| diag_msg(a, i)),
        prop::collection::vec(any::<u8>(), 0..100),
        // An error code, including the ones that do not negate.
        prop_oneof![Just(i32::MIN), Just(0), any::<i32>()].prop_map(|c| c.to_ne_bytes().to_vec()),
    ];
    let len_field = prop::option::weighted(
        0.2,
        prop_oneof![Just(0u32), Just(15), Just(u32::MAX), any::<u32>()],
    );
    (kind, payload, len_field).prop_map(|(kind, payload, len_field)| Msg {
        kind,
        payload,
        len_field,
    })
}

proptest! {
    #![proptest_config(crate::config(8))]

    /// Any datagram: an error, or entries no more numerous than the messages that fit.
    #[test]
    fn any_datagram_decodes_or_fails(
        data in prop_oneof![
            prop::collection::vec(any::<u8>(), 0..400),
            prop::collection::vec(message(), 0..6).prop_map(|msgs| {
                let mut out = Vec::new();
                for m in &msgs {
                    m.encode(&mut out);
                }
                out
            }),
        ],
        cut in any::<prop::sample::Index>(),
    ) {
        let data = &data[..cut.index(data.len() + 1)];
        let mut out = Vec::new();
        let (_, largest) = crate::alloc::largest_allocation(|| parse_sock_diag_datagram(data, &mut out));
        prop_assert!(out.len() <= data.len() / 16);
        prop_assert!(largest <= 4096 + 8 * data.len(), "{} bytes allocated for {}", largest, data.len());
    }

    /// Listening sockets encoded as the kernel sends them decode to the same list.
    #[test]
    fn encoded_listeners_round_trip(listeners in prop::collection::vec((any::<SocketAddr>(), any::<u32>()), 0..8)) {
        let mut data = Vec::new();
        for (addr, inode) in &listeners {
            Msg { kind: SOCK_DIAG_BY_FAMILY, payload: diag_msg(*addr, *inode), len_field: None }.encode(&mut data);
        }
        Msg { kind: NLMSG_DONE, payload: vec![0; 4], len_field: None }.encode(&mut data);
        let mut out = Vec::new();
        prop_assert!(parse_sock_diag_datagram(&data, &mut out).expect("well-formed"));
        // The kernel's socket id carries no flow info or scope id.
        let want: Vec<(SocketAddr, u64)> = listeners
            .iter()
            .map(|(a, i)| (SocketAddr::new(a.ip(), a.port()), u64::from(*i)))
            .collect();
        prop_assert_eq!(out, want);
    }
}
