//! The `fpmctl` binary: parse arguments, set up logging, run, map the result to an exit code.

use fpmctl::cli::{Cli, LogFormat};
use fpmctl::commands;
use std::io::Write;

fn main() -> std::process::ExitCode {
    let cli = Cli::parse_from_env();
    init_logging(&cli);
    let json = commands::wants_json(&cli);
    let code = match commands::run(&cli) {
        Ok(outcome) => {
            let text = if json {
                format!("{:#}\n", outcome.json)
            } else {
                outcome.text
            };
            print(&text);
            outcome.code
        }
        Err(err) => {
            let code = err.exit_code();
            if json {
                let doc = serde_json::json!({ "error": err.to_string(), "exit_code": code.code() });
                print(&format!("{doc:#}\n"));
            }
            eprintln!("fpmctl: error: {err}");
            code
        }
    };
    code.into()
}

/// Writes to stdout; a closed pipe (`fpmctl status | head -1`) is not an error.
fn print(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes());
    let _ = out.flush();
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
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
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
