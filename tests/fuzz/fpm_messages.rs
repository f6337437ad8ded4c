//! `fpm_messages`: FPM's ERROR, ALERT and WARNING lines picked out of its stderr.

use fpmctl::fpm::fpm_messages;
use proptest::prelude::*;

proptest! {
    #![proptest_config(crate::config(8))]

    #[test]
    fn only_problem_lines_come_out_one_line_each(text in prop_oneof![
        any::<String>(),
        prop::collection::vec(
            (
                prop_oneof![Just("[30-Nov-2026 05:00:00] ".to_string()), "\\[[^\n\\]]{0,10}\\]? ?", Just(String::new())],
                prop::sample::select(vec!["ERROR: ", "ALERT: ", "WARNING: ", "NOTICE: ", "DEBUG: ", ""]),
                "[^\n]{0,40}",
            ).prop_map(|(date, level, msg)| format!("{date}{level}{msg}")),
            0..8,
        ).prop_map(|l| l.join("\n")),
    ]) {
        let n = text.lines().count();
        let found = fpm_messages(&text);
        prop_assert!(found.len() <= n);
        for m in found {
            prop_assert!(!m.contains('\n'));
            prop_assert!(m.starts_with("ERROR:") || m.starts_with("ALERT:") || m.starts_with("WARNING:"), "{}", m);
        }
    }
}
