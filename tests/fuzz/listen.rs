//! `listen` values: php-fpm's classification (a path, a port, `host:port`, `[v6]:port`).

use fpmctl::listen::{ListenAddr, TcpHost};
use proptest::prelude::*;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// `listen` values of every form, well-formed and not.
pub fn listen_value() -> impl Strategy<Value = String> {
    let port = prop_oneof![
        (1u32..=65535).prop_map(|p| p.to_string()),
        any::<u32>().prop_map(|p| p.to_string()),
        "[0-9a-z+-]{0,7}",
    ];
    let host = prop_oneof![
        any::<Ipv4Addr>().prop_map(|ip| ip.to_string()),
        any::<Ipv6Addr>().prop_map(|ip| format!("[{ip}]")),
        any::<Ipv6Addr>().prop_map(|ip| ip.to_string()),
        Just("localhost".to_string()),
        "[a-z.\\[\\]:]{0,12}",
        Just(String::new()),
    ];
    prop_oneof![
        (host, port.clone()).prop_map(|(h, p)| format!("{h}:{p}")),
        port,
        "/[a-z0-9/._ -]{0,30}",
        "[a-z0-9/._$-]{1,30}",
        "\\PC{0,30}",
        "[ \t]{0,2}[0-9:.\\[\\]a-f]{0,40}[ \t]{0,2}",
    ]
}

fn no_dns(addr: &ListenAddr) -> bool {
    !matches!(
        addr,
        ListenAddr::Tcp {
            host: TcpHost::Name(_),
            ..
        }
    )
}

proptest! {
    #![proptest_config(crate::config(8))]

    /// Any text parses or is refused with the value named; what parses prints as a value
    /// that parses back to the same address.
    #[test]
    fn listen_values_round_trip(value in prop_oneof![listen_value(), any::<String>()]) {
        match ListenAddr::parse(&value) {
            Ok(addr) => {
                let printed = addr.to_string();
                prop_assert_eq!(ListenAddr::parse(&printed).ok(), Some(addr.clone()), "printed as {}", printed);
                if no_dns(&addr) {
                    // No name lookups here: only what is answered from the value itself.
                    let _ = addr.fpm_sockets_key();
                    let _ = addr.connect_addrs();
                    let probe = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 9000);
                    let _ = addr.tcp_conflicts_with(&probe);
                }
            }
            Err(e) => {
                prop_assert_eq!(&e.value, &value);
                prop_assert!(!e.reason.is_empty());
            }
        }
    }
}
