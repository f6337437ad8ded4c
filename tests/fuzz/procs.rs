//! `/proc` text: `stat` (through procfs, as `procs` reads it), `cmdline` titles, `cgroup`
//! lines, `/proc/net/tcp{,6}` and `/proc/net/unix`.

use fpmctl::listen::{parse_proc_net_tcp, parse_proc_net_unix};
use fpmctl::procs::{title_from_cmdline, unit_from_cgroup};
use procfs::FromRead;
use proptest::prelude::*;

/// A `/proc/PID/stat` line: `comm` may hold anything but NUL (spaces, parentheses,
/// newlines), the numbers may be out of range.
fn stat_line() -> impl Strategy<Value = Vec<u8>> {
    (
        any::<i32>(),
        "[^\0]{0,16}",
        prop::sample::select(vec!['R', 'S', 'D', 'Z', 'T', 't', 'X', 'x', 'I', '?']),
        prop::collection::vec(
            prop_oneof![
                any::<i64>().prop_map(|n| n.to_string()),
                any::<u64>().prop_map(|n| n.to_string()),
                "[0-9a-z-]{0,4}",
            ],
            0..55,
        ),
    )
        .prop_map(|(pid, comm, state, fields)| {
            format!("{pid} ({comm}) {state} {}\n", fields.join(" ")).into_bytes()
        })
}

/// Hex as the kernel prints addresses, sometimes with a multi-byte character put in
/// without changing the byte length.
fn kernel_hex(bytes: usize) -> impl Strategy<Value = String> {
    (
        prop::collection::vec(prop::sample::select(b"0123456789ABCDEF".to_vec()), bytes),
        prop::option::weighted(0.3, any::<prop::sample::Index>()),
    )
        .prop_map(move |(digits, multibyte)| {
            let mut s: String = digits.into_iter().map(char::from).collect();
            if let Some(at) = multibyte
                && bytes >= 2
            {
                let at = at.index(bytes - 1);
                s.replace_range(at..at + 2, "é");
            }
            s
        })
}

fn tcp_line(v6: bool) -> impl Strategy<Value = String> {
    (
        kernel_hex(if v6 { 32 } else { 8 }),
        prop_oneof![kernel_hex(4), "[0-9A-Fa-fx+-]{0,6}"],
        prop_oneof![Just("0A".to_string()), "[0-9A-F]{2}"],
        prop_oneof![any::<u64>().prop_map(|n| n.to_string()), "[0-9a-z-]{0,22}"],
        0usize..14,
    )
        .prop_map(|(ip, port, state, inode, cols)| {
            let mut fields = vec![
                "0:".to_string(),
                format!("{ip}:{port}"),
                "00000000:0000".into(),
                state,
                "00000000:00000000".into(),
                "00:00000000".into(),
                "00000000".into(),
                "0".into(),
                "0".into(),
                inode,
                "1".into(),
                "0000000000000000".into(),
            ];
            fields.truncate(cols);
            fields.join(" ")
        })
}

fn unix_line() -> impl Strategy<Value = String> {
    (
        prop_oneof![Just("00010000".to_string()), "[0-9A-Fa-f]{0,9}"],
        prop_oneof![any::<u64>().prop_map(|n| n.to_string()), "[0-9a-z]{0,5}"],
        prop_oneof![
            "/[ -~]{0,30}",
            "@[a-z]{0,8}",
            "\\PC{0,10}",
            Just(String::new())
        ],
    )
        .prop_map(|(flags, inode, path)| {
            format!("0000000000000000: 00000002 00000000 {flags} 0001 01 {inode} {path}")
        })
}

fn table(lines: Vec<String>) -> String {
    let mut text = "header\n".to_string();
    for l in lines {
        text.push_str(&l);
        text.push('\n');
    }
    text
}

proptest! {
    #![proptest_config(crate::config(4))]

    /// Only lines of the kernel's shape, `PID (COMM) ...`: procfs finds `comm` between the
    /// first `(` and the last `)`, and panics on text where the last `)` comes before the
    /// first `(` (e.g. `)(`), which the kernel cannot write since it prints `PID (` first.
    #[test]
    fn stat_lines_never_panic(line in stat_line()) {
        if let Ok(stat) = procfs::process::Stat::from_read(line.as_slice()) {
            let _ = stat.state;
        }
    }

    /// A title is one trimmed line without NULs, whatever the process wrote.
    #[test]
    fn cmdline_titles_are_one_trimmed_line(raw in prop_oneof![
        prop::collection::vec(any::<u8>(), 0..300),
        "php-fpm: (master process|pool [a-z]{1,8}) \\([ -~]{0,30}\\)\0{0,20}".prop_map(String::into_bytes),
    ]) {
        let title = title_from_cmdline(&raw);
        prop_assert!(!title.contains('\0'));
        prop_assert_eq!(title.trim(), title.as_str());
    }

    /// A unit is a `.service` name, never a path.
    #[test]
    fn cgroup_lines_give_a_unit_name_or_none(text in prop_oneof![
        any::<String>(),
        prop::collection::vec(
            ("[0-9]{0,2}", "[a-z,=]{0,12}", prop::collection::vec(
                prop_oneof!["[a-z0-9@.:-]{0,12}", "[a-z0-9@-]{1,12}\\.service", "user@[0-9]{1,4}\\.service"],
                0..5,
            )).prop_map(|(id, ctl, parts)| format!("{id}:{ctl}:/{}", parts.join("/"))),
            0..4,
        ).prop_map(|lines| lines.join("\n")),
    ]) {
        if let Some(unit) = unit_from_cgroup(&text) {
            prop_assert!(unit.ends_with(".service"), "{}", unit);
            prop_assert!(!unit.contains('/') && !unit.starts_with("user@"), "{}", unit);
        }
    }

    #[test]
    fn proc_net_tcp_never_panics(
        v4 in prop::collection::vec(tcp_line(false), 0..6),
        v6 in prop::collection::vec(tcp_line(true), 0..6),
        junk in any::<String>(),
    ) {
        let n4 = v4.len();
        let n6 = v6.len();
        prop_assert!(parse_proc_net_tcp(&table(v4), false).len() <= n4);
        prop_assert!(parse_proc_net_tcp(&table(v6), true).len() <= n6);
        let _ = parse_proc_net_tcp(&junk, false);
        let _ = parse_proc_net_tcp(&junk, true);
    }

    #[test]
    fn proc_net_unix_keeps_only_listening_paths(
        lines in prop::collection::vec(unix_line(), 0..8),
        junk in any::<String>(),
    ) {
        for (path, _) in parse_proc_net_unix(&table(lines)) {
            prop_assert!(path.starts_with("/"));
        }
        let _ = parse_proc_net_unix(&junk);
    }
}
