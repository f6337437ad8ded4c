//! `fpmctl supervise`: hands the loaded config to [`crate::supervise`].

use super::{Ctx, Outcome};
use crate::cli::SuperviseArgs;
use crate::error::{Error, Result};
use crate::exit::ExitCode;
use crate::supervise::{self, Options, policy::RestartPolicy};
use serde_json::json;

pub(super) fn run(ctx: &Ctx, args: &SuperviseArgs) -> Result<Outcome> {
    let fpm = ctx.fpm()?;
    // Held for the supervisor's lifetime: no other fpmctl acts on this FPM behind its back;
    // they talk to it through the control socket instead.
    let _lock = ctx.lock()?;
    let opts = Options {
        policy: RestartPolicy {
            max_restarts: args.max_restarts,
            within: args.within,
            ..RestartPolicy::default()
        },
        health_interval: args.health_interval,
        health_timeout: args.health_timeout,
        unhealthy_after: args.unhealthy_after,
        ready_timeout: args.ready_timeout,
        drain_timeout: args.drain_timeout,
        stop_plan: args
            .signal_plan
            .clone()
            .unwrap_or_else(|| crate::stop::SignalPlan::for_config(&ctx.cfg)),
        listen: args
            .metrics_listen
            .iter()
            .chain(args.health_listen.iter())
            .copied()
            .collect(),
        release_pages: std::env::var_os("FPMCTL_RELEASE_PAGES").is_none_or(|v| v != "0"),
    };
    let code = supervise::run(ctx.cfg.clone(), fpm, opts)?;
    match code {
        ExitCode::CrashLoop => {
            return Err(Error::CrashLoop(format!(
                "FPM {} crashed more than {} times within {}; the supervisor gave up",
                ctx.cfg.path.display(),
                args.max_restarts,
                humantime::format_duration(args.within)
            )));
        }
        ExitCode::Timeout => {
            return Err(Error::Timeout(
                "FPM processes were still alive after the whole stop plan".into(),
            ));
        }
        _ => {}
    }
    Ok(Outcome {
        code,
        text: String::new(),
        json: json!({ "exit_code": code.code() }),
        error: None,
    })
}
