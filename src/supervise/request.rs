//! What a control request asks the supervisor to do, with its options: a pure decision,
//! tested as data. An option the supervisor cannot honour is refused (exit 2), never dropped.

use super::control::Request;
use crate::stop::SignalPlan;
use std::time::Duration;

/// What a control request asks for, with its options; `Err` refuses an option the
/// supervisor cannot honour (exit 2), so none is ever dropped silently.
#[derive(Debug, PartialEq)]
pub enum Action {
    /// `restart` or `reload`: a new FPM, ready within `ready_limit` (else `--ready-timeout`).
    Restart { ready_limit: Option<Duration> },
    /// `stop`: with this plan (else the supervisor's) and overall limit (else the plan's).
    Stop {
        plan: Option<SignalPlan>,
        limit: Option<Duration>,
    },
    /// `status`.
    Status,
}

/// The action `req` asks for; `Err` is the usage error to answer with (exit 2).
pub fn control_action(req: &Request) -> std::result::Result<Action, String> {
    let timeout = req.timeout_ms.map(Duration::from_millis);
    let refuse = |what: &str, why: &str| Err(format!("{} {what}: {why}", req.cmd));
    match req.cmd.as_str() {
        "restart" | "reload" => {
            if req.signal_plan.is_some() || req.stop_timeout_ms.is_some() {
                return refuse(
                    "--signal-plan/--stop-timeout",
                    "the supervisor starts the new FPM beside the old one and retires the old one without a signal plan (its --drain-timeout bounds that)",
                );
            }
            if req.no_ready_wait {
                return refuse(
                    "--no-ready-wait",
                    "the supervisor answers once the new FPM is proven ready",
                );
            }
            if req.cold {
                return refuse(
                    "--cold",
                    "the supervisor holds the sockets and never closes them; stop and start the supervisor for a cold restart",
                );
            }
            Ok(Action::Restart {
                ready_limit: timeout,
            })
        }
        "stop" => {
            if req.stop_timeout_ms.is_some() || req.no_ready_wait || req.cold {
                return refuse("options", "only --timeout and --signal-plan apply to stop");
            }
            let plan = req
                .signal_plan
                .as_deref()
                .map(str::parse::<SignalPlan>)
                .transpose()?;
            Ok(Action::Stop {
                plan,
                limit: timeout,
            })
        }
        "status" => {
            if *req != Request::new("status") {
                return refuse("options", "status takes none");
            }
            Ok(Action::Status)
        }
        // Never echoed: the request is the client's, its text may be anything.
        _ => Err("unknown control command (restart, reload, stop or status)".to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwarded_options_are_honoured_or_refused() {
        let req = |cmd: &str| Request::new(cmd);
        assert_eq!(
            control_action(&Request {
                timeout_ms: Some(20_000),
                ..req("restart")
            }),
            Ok(Action::Restart {
                ready_limit: Some(Duration::from_secs(20))
            })
        );
        assert!(
            control_action(&Request {
                signal_plan: Some("QUIT:1s".into()),
                ..req("reload")
            })
            .unwrap_err()
            .contains("--signal-plan")
        );
        assert!(
            control_action(&Request {
                no_ready_wait: true,
                ..req("restart")
            })
            .is_err()
        );
        assert!(
            control_action(&Request {
                cold: true,
                ..req("restart")
            })
            .unwrap_err()
            .contains("--cold")
        );
        assert_eq!(
            control_action(&Request {
                signal_plan: Some("QUIT:1s".into()),
                timeout_ms: Some(0),
                ..req("stop")
            }),
            Ok(Action::Stop {
                plan: Some("QUIT:1s".parse().unwrap()),
                limit: Some(Duration::ZERO)
            })
        );
        assert!(
            control_action(&Request {
                signal_plan: Some("HUP:1s".into()),
                ..req("stop")
            })
            .is_err()
        );
        assert_eq!(control_action(&req("status")), Ok(Action::Status));
        assert!(
            control_action(&Request {
                timeout_ms: Some(1),
                ..req("status")
            })
            .is_err()
        );
        assert!(control_action(&req("explode")).is_err());
    }
}
