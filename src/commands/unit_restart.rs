//! What `restart` says after restarting a master that runs in a systemd unit (the choice and
//! the work are [`crate::systemd::restart_unit`]'s).

use super::start;
use super::{Ctx, Outcome};
use crate::lifecycle::Launch;
use crate::systemd::{UnitRestart, UnitRestarted};
use serde_json::json;

/// One line that says what was done (`systemctl reload` or `restart`, and why), then the
/// master and its pools as `start` reports them.
pub(super) fn outcome(ctx: &Ctx, done: &UnitRestarted, launch: &Launch) -> Outcome {
    let verb = match done.plan {
        UnitRestart::Reload(_) => "re-executed",
        UnitRestart::Restart(_) => "restarted",
    };
    let mut out = start::outcome(ctx, launch, verb);
    let line = format!(
        "restarted through systemd: systemctl {} {} ({})",
        done.plan.verb(),
        done.unit,
        done.plan.how()
    );
    out.text = format!("{line}\n{}", out.text);
    out.json = json!({
        "mode": format!("systemd-{}", done.plan.verb()),
        "unit": done.unit,
        "systemctl": done.plan.verb(),
        "done": line,
        "cold_reason": match &done.plan {
            UnitRestart::Restart(why) => Some(why),
            UnitRestart::Reload(_) => None,
        },
        "previous_master": done.previous_master,
        "start": out.json,
        "elapsed_ms": launch.elapsed.as_millis() as u64,
    });
    out
}
