//! php-fpm's stderr: `fpm_messages` (its ERROR, ALERT and WARNING lines) and
//! `BuildDirs::from_dump` (the compiled-in directories read from a `-tt` dump).

use fpmctl::config::BuildDirs;
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

/// `-tt` output for the probe config, with the given directories and noise around them.
fn dump(prefix: &str, state: &str, noise: &[String]) -> String {
    let mut lines: Vec<String> = noise.to_vec();
    let at = noise.len() / 2;
    lines.insert(
        at,
        format!("[30-Nov-2026 05:00:00] NOTICE: \tpid = {state}/fpmctl-probe.pid"),
    );
    lines.push(format!(
        "[30-Nov-2026 05:00:00] NOTICE: \tlisten = {prefix}/fpmctl-probe.sock"
    ));
    lines.join("\n")
}

proptest! {
    #![proptest_config(crate::config(4))]

    /// Any stderr: directories or nothing; what comes back is absolute.
    #[test]
    fn build_dirs_from_any_dump(text in prop_oneof![
        any::<String>(),
        prop::collection::vec(
            ("(\\[[^\n]{0,10}\\] )?NOTICE: \t", prop::sample::select(vec!["pid", "listen", "user"]), " = ", "[^\n]{0,30}(fpmctl-probe\\.(pid|sock))?")
                .prop_map(|(a, b, c, d)| format!("{a}{b}{c}{d}")),
            0..6,
        ).prop_map(|l| l.join("\n")),
    ]) {
        if let Some(dirs) = BuildDirs::from_dump(&text) {
            prop_assert!(dirs.prefix.is_absolute());
            prop_assert!(dirs.localstatedir.is_absolute());
        }
    }

    /// The directories php-fpm prints come back as they were.
    #[test]
    fn build_dirs_round_trip(
        prefix in "(/[a-z0-9._ -]{1,10}){1,3}",
        state in "(/[a-z0-9._ -]{1,10}){1,3}",
        noise in prop::collection::vec("[^\n]{0,40}", 0..6),
    ) {
        let noise: Vec<String> = noise.into_iter().filter(|l| !l.contains("NOTICE: \t")).collect();
        let dirs = BuildDirs::from_dump(&dump(&prefix, &state, &noise));
        prop_assert_eq!(dirs, Some(BuildDirs { prefix: prefix.into(), localstatedir: state.into() }));
    }
}
