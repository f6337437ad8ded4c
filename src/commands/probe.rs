//! `fpmctl probe liveness|readiness|startup`: exit 0 or 1 within `--timeout`, config
//! loading and discovery included. The work runs under [`crate::probe::bounded`]: when the
//! deadline passes first, the probe fails with "no answer" and exits at once.
//!
//! Only the kernel (accept queues, listening sockets) and `/proc` are asked, never a pool's
//! worker, so a probe neither waits behind busy workers nor writes to the access log.

use super::{Ctx, Outcome};
use crate::cli::{GlobalArgs, ProbeArgs};
use crate::deadline::Deadline;
use crate::discovery;
use crate::error::Result;
use crate::exit::ExitCode;
use crate::probe::{self, Kind, Verdict};
use crate::saturation::{self, PoolState, StatusPolicy};
use serde_json::json;
use std::time::{Duration, Instant};

/// Pause between readiness attempts of a startup probe.
const STARTUP_PAUSE: Duration = Duration::from_millis(50);

/// What the probe found.
struct Found {
    verdict: Verdict,
    pools: Vec<PoolState>,
}

pub(super) fn run(global: &GlobalArgs, a: &ProbeArgs) -> Result<Outcome> {
    let started = Instant::now();
    let deadline = Deadline::after_from(started, a.timeout);
    let (global, args) = (global.clone(), a.clone());
    let found = probe::bounded(deadline, move |deadline| check(&global, &args, deadline));
    let elapsed = started.elapsed();
    let (verdict, pools) = match found {
        Some(f) => (f.verdict, f.pools),
        None => (
            Err(format!(
                "no answer within {} (config, discovery or the kernel did not answer in time)",
                humantime::format_duration(a.timeout)
            )),
            Vec::new(),
        ),
    };
    tracing::debug!(
        probe = a.kind.as_str(),
        ok = verdict.is_ok(),
        reason = verdict.as_ref().err().map(String::as_str),
        duration_ms = elapsed.as_millis() as u64,
        "probe answered"
    );
    let json = json!({
        "probe": a.kind.as_str(),
        "ok": verdict.is_ok(),
        "reason": verdict.as_ref().err(),
        "elapsed_ms": elapsed.as_millis() as u64,
        "timeout_ms": a.timeout.as_millis() as u64,
        "pools": pools,
    });
    Ok(match verdict {
        Ok(()) => Outcome::ok(format!("{}: ok\n", a.kind.as_str()), json),
        Err(why) => Outcome {
            code: ExitCode::Failure,
            text: String::new(),
            json,
            error: Some(format!("{} probe failed: {why}", a.kind.as_str())),
        },
    })
}

fn check(global: &GlobalArgs, a: &ProbeArgs, deadline: Deadline) -> Found {
    let ctx = match Ctx::load(global) {
        Ok(ctx) => ctx,
        Err(e) => {
            return Found {
                verdict: Err(e.to_string()),
                pools: Vec::new(),
            };
        }
    };
    loop {
        let snap = discovery::discover(&ctx.cfg);
        let pools = saturation::observe(&ctx.cfg, &snap, StatusPolicy::Never, deadline);
        let master = snap.master.is_some();
        let verdict = match a.kind {
            Kind::Liveness => probe::liveness(master, &pools),
            Kind::Readiness | Kind::Startup => probe::readiness(master, &pools, a.max_queue),
        };
        let again =
            a.kind == Kind::Startup && verdict.is_err() && deadline.remaining() > STARTUP_PAUSE;
        if !again {
            return Found { verdict, pools };
        }
        std::thread::sleep(STARTUP_PAUSE);
    }
}
