//! The `fpmctl` binary: parse arguments, set up logging, run, print the outcome, exit with
//! its code.

use fpmctl::cli::{Cli, LogFormat};
use fpmctl::output::{self, LossyStderr};
use fpmctl::{Outcome, commands};

fn main() -> std::process::ExitCode {
    let cli = Cli::parse_from_env();
    init_logging(&cli);
    let json = commands::wants_json(&cli);
    let out = Outcome::from_result(commands::run(&cli));
    // The log first (bounded: a stderr nobody reads must not keep fpmctl from exiting).
    output::flush_log(std::time::Duration::from_secs(1));
    if json {
        output::print(&format!("{:#}\n", out.json));
    } else {
        output::print(&out.text);
    }
    if let Some(err) = &out.error {
        output::eprint(&format!("fpmctl: error: {err}\n"));
    }
    out.code.into()
}

fn init_logging(cli: &Cli) {
    use tracing_subscriber::EnvFilter;
    let g = &cli.global;
    let level = if g.quiet {
        "warn"
    } else {
        match g.verbose {
            0 => "info",
            1 => "debug",
            _ => "trace",
        }
    };
    let filter = EnvFilter::try_from_env("FPMCTL_LOG")
        .unwrap_or_else(|_| EnvFilter::new(format!("fpmctl={level},warn")));
    // A log line that cannot be written (closed pipe, hung-up terminal) is dropped, never an
    // error: logging must not abort a lifecycle step.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(LossyStderr)
        .log_internal_errors(false)
        .with_target(false);
    match g.log_format {
        LogFormat::Json => builder.json().with_current_span(false).init(),
        LogFormat::Text => builder
            .with_timer(Elapsed(std::time::Instant::now()))
            .with_ansi(false)
            .compact()
            .init(),
    }
}

/// Seconds since fpmctl started, to the millisecond: the timing of each step.
struct Elapsed(std::time::Instant);

impl tracing_subscriber::fmt::time::FormatTime for Elapsed {
    fn format_time(&self, w: &mut tracing_subscriber::fmt::format::Writer<'_>) -> std::fmt::Result {
        write!(w, "{:>7.3}s", self.0.elapsed().as_secs_f64())
    }
}
