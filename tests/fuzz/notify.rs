//! The notify datagrams FPM sends (`READY=1`, `STATUS=...`, `MAINPID=...`).

use fpmctl::notify::Message;
use proptest::prelude::*;

proptest! {
    #![proptest_config(crate::config(8))]

    #[test]
    fn any_datagram_parses(text in prop_oneof![
        any::<String>(),
        prop::collection::vec(
            prop_oneof!["READY=[0-9]{0,2}", "STATUS=[^\n]{0,30}", "MAINPID=[ 0-9a-z-]{0,22}", "[A-Z_]{0,8}=?[^\n]{0,10}"],
            0..6,
        ).prop_map(|l| l.join("\n")),
    ], sender in any::<Option<i32>>()) {
        let m = Message::parse(&text, sender);
        prop_assert_eq!(m.sender, sender);
        if let Some(status) = &m.status {
            prop_assert!(!status.contains('\n'));
        }
    }

    /// What FPM sends parses back to what was meant.
    #[test]
    fn messages_round_trip(
        ready in any::<bool>(),
        status in prop::option::of("[^\r\n]{0,40}"),
        main_pid in prop::option::of(any::<i32>()),
    ) {
        let mut lines = Vec::new();
        if ready {
            lines.push("READY=1".to_string());
        }
        if let Some(s) = &status {
            lines.push(format!("STATUS={s}"));
        }
        if let Some(p) = main_pid {
            lines.push(format!("MAINPID={p}"));
        }
        let m = Message::parse(&lines.join("\n"), Some(7));
        prop_assert_eq!(m, Message { sender: Some(7), ready, status, main_pid });
    }
}
