//! `fpmctl metrics`: the pools' load in Prometheus text format, printed or written
//! atomically for node_exporter's textfile collector (see [`crate::metrics`]).

use super::{Ctx, Outcome};
use crate::cli::MetricsArgs;
use crate::deadline::Deadline;
use crate::discovery;
use crate::error::{Error, Result};
use crate::metrics::{self, MetricsError};
use crate::probe;
use crate::saturation::{self, StatusPolicy};
use serde_json::json;
use std::time::Duration;

/// The most one run spends on status pages (each is also capped by
/// [`saturation::STATUS_PAGE_LIMIT`]).
const BUDGET: Duration = Duration::from_secs(5);

pub(super) fn run(ctx: &Ctx, a: &MetricsArgs) -> Result<Outcome> {
    ctx.warn_problems("reading metrics");
    let deadline = Deadline::after(BUDGET);
    let snap = discovery::discover(&ctx.cfg);
    let pools = saturation::observe(&ctx.cfg, &snap, StatusPolicy::WhenIdle, deadline);
    let ready = probe::readiness(snap.master.is_some(), &pools, None).is_ok();
    let text = metrics::render(&pools, ready).map_err(to_error)?;
    match &a.textfile {
        None => Ok(Outcome::ok(text, json!(null))),
        Some(path) => {
            metrics::write_textfile(path, &text).map_err(to_error)?;
            Ok(Outcome::ok(
                String::new(),
                json!({ "textfile": path, "pools": pools }),
            ))
        }
    }
}

fn to_error(e: MetricsError) -> Error {
    match e {
        MetricsError::Write { path, source } => Error::Io {
            context: format!("writing metrics to {path}"),
            source,
        },
        other => Error::Other(other.to_string()),
    }
}
