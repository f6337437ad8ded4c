//! The command line: signal plans, durations, and whole argument vectors.

use clap::Parser;
use fpmctl::cli::Cli;
use fpmctl::stop::SignalPlan;
use proptest::prelude::*;

fn duration_text() -> impl Strategy<Value = String> {
    prop_oneof![
        (
            any::<u64>(),
            prop::sample::select(vec!["s", "ms", "m", "h", "d", "w", "y", "ns", "us", ""])
        )
            .prop_map(|(n, unit)| format!("{n}{unit}")),
        Just("9223372036854775807s".to_string()),
        Just("18446744073709551615s".to_string()),
        Just("584542046090y".to_string()),
        "[0-9]{1,30}[a-z]{0,3}( [0-9]{1,5}[a-z]{1,2}){0,3}",
        "[ -~]{0,12}",
    ]
}

fn plan_text() -> impl Strategy<Value = String> {
    let step = (
        prop::sample::select(vec![
            "QUIT", "TERM", "INT", "KILL", "SIGQUIT", "sigkill", "HUP", "",
        ]),
        duration_text(),
    )
        .prop_map(|(sig, d)| format!("{sig}:{d}"));
    prop_oneof![
        prop::collection::vec(step, 0..5).prop_map(|s| s.join(",")),
        "[A-Za-z:,0-9 ]{0,30}",
        any::<String>(),
    ]
}

proptest! {
    #![proptest_config(crate::config(4))]

    /// A plan parses or is refused; a parsed plan adds up its graces without overflowing
    /// and prints as a plan that parses back to itself.
    #[test]
    fn signal_plans_parse_sum_and_round_trip(text in plan_text()) {
        if let Ok(plan) = text.parse::<SignalPlan>() {
            prop_assert!(!plan.steps.is_empty());
            prop_assert!(plan.default_timeout() >= plan.total());
            let printed = plan.to_string();
            prop_assert_eq!(printed.parse::<SignalPlan>(), Ok(plan), "printed as {}", printed);
        }
    }

    /// Durations and plans on the command line are accepted or are usage errors.
    #[test]
    fn command_line_durations_never_panic(d in duration_text(), plan in plan_text()) {
        for args in [
            vec!["fpmctl", "stop", "--timeout", d.as_str()],
            vec!["fpmctl", "stop", "--signal-plan", plan.as_str()],
            vec!["fpmctl", "--lock-timeout", d.as_str(), "status"],
            vec!["fpmctl", "supervise", "--health-interval", d.as_str()],
        ] {
            if let Ok(cli) = Cli::try_parse_from(&args) {
                let _ = format!("{cli:?}");
            }
        }
    }
}

/// A command line from the words fpmctl knows, values of every kind, and junk.
fn argv() -> impl Strategy<Value = Vec<String>> {
    let word = prop_oneof![
        prop::sample::select(vec![
            "config",
            "status",
            "check",
            "stop",
            "start",
            "restart",
            "reload",
            "ping",
            "supervise",
            "ensure",
            "reopen-logs",
            "help",
            "--help",
            "-h",
            "--version",
            "-V",
            "--json",
            "--wait",
            "--timeout",
            "--stop-timeout",
            "--signal-plan",
            "--recover",
            "--lock-timeout",
            "--health-interval",
            "--drain-timeout",
            "-c",
            "--config",
            "--prefix",
            "--no-systemd",
            "--",
            "-",
            "-v",
            "-q",
            "=",
        ])
        .prop_map(str::to_string),
        duration_text(),
        plan_text(),
        "[-a-z=]{0,12}",
        any::<String>(),
    ];
    prop::collection::vec(word, 0..6).prop_map(|words| {
        let mut argv = vec!["fpmctl".to_string()];
        argv.extend(words);
        argv
    })
}

proptest! {
    #![proptest_config(crate::config(2))]

    /// Any command line parses or is a usage error (or help/version), never a panic.
    #[test]
    fn any_command_line_parses_or_is_a_usage_error(args in argv()) {
        if let Err(e) = Cli::try_parse_from(&args) {
            // Rendering the message must not panic either.
            let _ = e.render().to_string();
        }
    }
}
