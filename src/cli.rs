//! The command line: clap definitions (raw arguments) and their validation into the values
//! commands use (durations, signal plans). `main` calls [`Cli::parse_from_env`] and
//! [`crate::commands::run`].

use crate::exit::ExitCode;
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;
use std::sync::LazyLock;
use std::time::Duration;

static AFTER_HELP: LazyLock<String> = LazyLock::new(ExitCode::table);

/// What `--version` prints after the name: the package version and, in a build from the
/// project's git checkout, the short revision, e.g. `0.1.0 (abc1234)` (set by build.rs).
pub const VERSION: &str = env!("FPMCTL_VERSION");

/// fpmctl: safely stop, start, restart, reload, check and supervise PHP-FPM.
#[derive(Debug, Parser)]
#[command(name = "fpmctl", version = VERSION, about, after_help = AFTER_HELP.as_str())]
pub struct Cli {
    /// Options every command takes.
    #[command(flatten)]
    pub global: GlobalArgs,
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// Options every command takes.
#[derive(Debug, Args, Clone)]
pub struct GlobalArgs {
    /// The FPM main config (default: auto-detect /etc/php/*/fpm/php-fpm.conf,
    /// /etc/php-fpm.conf, /usr/local/etc/php-fpm.conf).
    #[arg(
        short = 'c',
        long = "config",
        visible_alias = "fpm-config",
        global = true,
        value_name = "PATH"
    )]
    pub config: Option<PathBuf>,
    /// Pick /etc/php/VERSION/fpm/php-fpm.conf when several PHP versions are installed.
    #[arg(long, global = true, value_name = "VERSION")]
    pub php_version: Option<String>,
    /// The php-fpm binary (default: the one that goes with the config).
    #[arg(long, global = true, value_name = "PATH")]
    pub fpm_bin: Option<PathBuf>,
    /// FPM's prefix, as `php-fpm -p`: relative include, pid, error_log, listen and log paths
    /// are resolved under it, and php-fpm is run with `-p DIR` (default: the binary's
    /// compiled-in prefix, /usr/local in the Docker official images).
    #[arg(short = 'p', long, global = true, value_name = "DIR")]
    pub prefix: Option<PathBuf>,
    /// More log output (-v debug, -vv trace).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// Only warnings and errors on stderr.
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// Log format on stderr.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,
    /// How long a mutating command waits for another fpmctl on the same config.
    #[arg(long, value_parser = parse_duration, default_value = "60s", global = true, value_name = "DURATION")]
    pub lock_timeout: Duration,
    /// Fail at once (exit 9) when another fpmctl holds the lock for this config.
    #[arg(long, global = true)]
    pub no_wait: bool,
    /// Act on the processes directly even when the master belongs to a systemd unit.
    #[arg(long, global = true)]
    pub no_systemd: bool,
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// One readable line per event.
    Text,
    /// One JSON object per event.
    Json,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print the effective FPM configuration (defaults filled in, includes resolved).
    Config(JsonArg),
    /// Show the master, workers per pool, listen addresses and their holders, orphans.
    /// Exit codes follow LSB: 0 running, 1 dead but pid file or orphans remain, 3 not running,
    /// 4 unknown (config unreadable, or a master that cannot be proven to be this FPM).
    Status(JsonArg),
    /// Test the config with php-fpm -t and check what needs no running FPM.
    Check(JsonArg),
    /// Stop FPM with a signal plan; return when every process of this config (orphans too) is
    /// gone and every listen address is free.
    Stop(StopArgs),
    /// Start FPM and wait until every pool has its workers and answers over FastCGI.
    Start(StartArgs),
    /// Test the config, stop (as `stop`), then start (as `start`); exit 0 only when ready.
    Restart(RestartArgs),
    /// Test the config, send SIGUSR2, and prove the master re-executed and is ready.
    Reload(ReloadArgs),
    /// FastCGI ping of each pool (and its status page when pm.status_path is set).
    Ping(PingArgs),
    /// Run FPM in the foreground and keep it alive: restart it on crash (with backoff and a
    /// crash-loop limit), restart it on request or when unhealthy without dropping a request.
    /// For systemd (Type=notify), container entrypoints, runit/s6.
    Supervise(SuperviseArgs),
    /// For cron: exit 0, printing nothing, when FPM runs and is ready; start it when it does
    /// not run (orphans stopped first) and say what was wrong; report a running but unready
    /// FPM (exit 10) without restarting it unless --restart-unready. Never waits for the lock.
    Ensure(EnsureArgs),
    /// For logrotate's postrotate: SIGUSR1 to the verified master, then prove FPM re-opened
    /// its error log (exit 3 when FPM is not running; nothing else is ever signalled).
    ReopenLogs(ReopenLogsArgs),
    /// Name the cause of nginx's 502/504/500 answers from nginx's and FPM's logs, both
    /// configs and (unless --offline) the live system, with the fix. Exit codes: 0 no cause
    /// found (warnings alone: 0), 1 at least one cause found, 2 usage, 4 a config or log
    /// named on the command line is unreadable.
    Doctor(DoctorArgs),
    /// Print the pools' load in Prometheus text format (names of hipages' php-fpm_exporter,
    /// plus fpmctl_ready): queue from the kernel, busy and idle workers from /proc, counters
    /// from the status page when it answers. With --textfile, write it atomically instead.
    Metrics(MetricsArgs),
    /// A probe for Kubernetes and other orchestrators: exit 0 when it passes, 1 when not,
    /// within --timeout whatever FPM does. Sends nothing through a pool's workers.
    Probe(ProbeArgs),
    /// Write man pages or shell completions from these definitions (for packagers).
    #[command(hide = true, subcommand)]
    Generate(GenerateArgs),
}

/// Options of `metrics`.
#[derive(Debug, Args, Clone)]
pub struct MetricsArgs {
    /// Write to this file (a temporary file in its directory, renamed over it) for
    /// node_exporter's textfile collector, instead of printing.
    #[arg(long, value_name = "PATH")]
    pub textfile: Option<PathBuf>,
}

/// Options of `probe`.
#[derive(Debug, Args, Clone)]
pub struct ProbeArgs {
    /// liveness: the master runs and every pool listens; readiness: also every pool has a
    /// worker and its queue is within --max-queue (else not full); startup: readiness,
    /// waited for until --timeout.
    #[arg(value_enum)]
    pub kind: crate::probe::Kind,
    /// The whole probe (config, discovery, checks) answers within this; below Kubernetes'
    /// default probe timeout of 1s.
    #[arg(long, value_parser = parse_positive_duration, default_value = "900ms", value_name = "DURATION")]
    pub timeout: Duration,
    /// Readiness fails when more connections than this wait in a pool's accept queue.
    #[arg(long, value_name = "N")]
    pub max_queue: Option<u32>,
    /// Machine-readable output on stdout.
    #[arg(long)]
    pub json: bool,
}

/// What `generate` writes.
#[derive(Debug, Subcommand, Clone)]
pub enum GenerateArgs {
    /// Man pages: fpmctl(1) and fpmctl-COMMAND(1) for each command, written into DIR.
    Man {
        /// The directory to write the pages into (created if missing).
        #[arg(value_name = "DIR")]
        dir: PathBuf,
    },
    /// A completion script for SHELL, on stdout.
    Completions {
        /// The shell.
        #[arg(value_enum, value_name = "SHELL")]
        shell: clap_complete::Shell,
    },
}

/// `--json`.
#[derive(Debug, Args, Clone, Copy)]
pub struct JsonArg {
    /// Machine-readable output on stdout.
    #[arg(long)]
    pub json: bool,
}

/// Options of `stop`.
#[derive(Debug, Args, Clone)]
pub struct StopArgs {
    /// Overall limit for the stop; the plan is cut short when it is reached [default: the
    /// plan's total plus 3s, 30s for the default plan].
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    pub timeout: Option<Duration>,
    /// Signals and grace periods, tried in order until everything is gone [default:
    /// QUIT:20s,TERM:5s,KILL:2s, the QUIT grace raised to process_control_timeout + 2s when
    /// that is longer, so FPM's own graceful stop is never cut short].
    #[arg(long, value_parser = parse_plan, value_name = "PLAN")]
    pub signal_plan: Option<SignalPlan>,
    /// Machine-readable output on stdout.
    #[arg(long)]
    pub json: bool,
}

/// Whether and how long to wait for readiness after starting FPM.
#[derive(Debug, Args, Clone)]
pub struct ReadyWaitArgs {
    /// Wait until FPM is proven ready (the default; accepted for scripts that pass it).
    #[arg(long)]
    pub wait: bool,
    /// Return as soon as php-fpm has started, without proving readiness.
    #[arg(long, conflicts_with = "wait")]
    pub no_ready_wait: bool,
    /// How long to wait for readiness [default: 10s; through a supervisor, its
    /// --ready-timeout].
    #[arg(long, value_parser = parse_positive_duration, value_name = "DURATION")]
    pub timeout: Option<Duration>,
}

impl ReadyWaitArgs {
    /// The readiness limit when fpmctl itself starts FPM.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

    /// True unless `--no-ready-wait`.
    pub fn waits(&self) -> bool {
        !self.no_ready_wait
    }

    /// `--timeout`, or the default.
    pub fn timeout(&self) -> Duration {
        self.timeout.unwrap_or(Self::DEFAULT_TIMEOUT)
    }
}

/// Options of `start`.
#[derive(Debug, Args, Clone)]
pub struct StartArgs {
    /// Readiness.
    #[command(flatten)]
    pub ready: ReadyWaitArgs,
    /// Machine-readable output on stdout.
    #[arg(long)]
    pub json: bool,
}

/// Options of `restart`.
#[derive(Debug, Args, Clone)]
pub struct RestartArgs {
    /// Readiness after starting.
    #[command(flatten)]
    pub ready: ReadyWaitArgs,
    /// Overall limit for the stop phase [default: the plan's total plus 3s].
    #[arg(long, value_parser = parse_positive_duration, value_name = "DURATION")]
    pub stop_timeout: Option<Duration>,
    /// Signals and grace periods for the stop phase [default: as for `stop`].
    #[arg(long, value_parser = parse_plan, value_name = "PLAN")]
    pub signal_plan: Option<SignalPlan>,
    /// Stop the running FPM, then start the new one (requests arriving in between fail).
    /// Without it, the new master takes over the running one's sockets and the old one is
    /// retired once the new one is ready (falling back to this when the kernel refuses). For a
    /// master in a systemd unit: `systemctl restart` instead of `systemctl reload`.
    #[arg(long)]
    pub cold: bool,
    /// Machine-readable output on stdout.
    #[arg(long)]
    pub json: bool,
}

/// Options of `reload`.
#[derive(Debug, Args, Clone)]
pub struct ReloadArgs {
    /// How long the re-executed master may take to be ready once its old workers are gone.
    /// fpmctl waits this long on top of FPM's own drain (process_control_timeout + 2s, the
    /// time FPM lets requests in flight finish), so a slow but successful reload succeeds.
    /// [default: 30s; through a supervisor, its --ready-timeout]
    #[arg(long, value_parser = parse_positive_duration, value_name = "DURATION")]
    pub timeout: Option<Duration>,
    /// If FPM died during the reload (or was not running), start it again.
    #[arg(long)]
    pub recover: bool,
    /// Machine-readable output on stdout.
    #[arg(long)]
    pub json: bool,
}

impl ReloadArgs {
    /// How long the re-executed master may take to be ready when fpmctl reloads FPM itself.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

    /// `--timeout`, or the default.
    pub fn timeout(&self) -> Duration {
        self.timeout.unwrap_or(Self::DEFAULT_TIMEOUT)
    }
}

/// Options of `ping`.
#[derive(Debug, Args, Clone)]
pub struct PingArgs {
    /// Only this pool.
    #[arg(long, value_name = "NAME")]
    pub pool: Option<String>,
    /// Per-request limit.
    #[arg(long, value_parser = parse_positive_duration, default_value = "3s", value_name = "DURATION")]
    pub timeout: Duration,
    /// Machine-readable output on stdout.
    #[arg(long)]
    pub json: bool,
}

/// Options of `supervise`.
#[derive(Debug, Args, Clone)]
pub struct SuperviseArgs {
    /// More crashes than this within --within is a crash loop (exit 13); 0 gives up at the
    /// first crash.
    #[arg(long, default_value_t = 5, value_name = "N")]
    pub max_restarts: u32,
    /// The crash-loop window.
    #[arg(long, value_parser = parse_positive_duration, default_value = "60s", value_name = "DURATION")]
    pub within: Duration,
    /// How often each pool is pinged over FastCGI.
    #[arg(long, value_parser = parse_positive_duration, default_value = "10s", value_name = "DURATION")]
    pub health_interval: Duration,
    /// Limit of one health ping.
    #[arg(long, value_parser = parse_positive_duration, default_value = "3s", value_name = "DURATION")]
    pub health_timeout: Duration,
    /// Consecutive failed health checks that trigger a restart (at least 1).
    #[arg(long, default_value_t = 3, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub unhealthy_after: u32,
    /// How long a new FPM may take to become ready.
    #[arg(long, value_parser = parse_positive_duration, default_value = "30s", value_name = "DURATION")]
    pub ready_timeout: Duration,
    /// How long the workers of a replaced FPM may take to finish their requests.
    #[arg(long, value_parser = parse_positive_duration, default_value = "60s", value_name = "DURATION")]
    pub drain_timeout: Duration,
    /// How FPM is stopped when the supervisor is told to stop; a second signal skips QUIT
    /// [default: as for `stop`].
    #[arg(long, value_parser = parse_plan, value_name = "PLAN")]
    pub signal_plan: Option<SignalPlan>,
    /// Serve Prometheus metrics on `/metrics` at this address (e.g. 127.0.0.1:9253).
    #[arg(long, value_name = "ADDR")]
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// Serve HTTP probes on `/livez` and `/readyz` at this address (the same endpoint as
    /// `--metrics-listen` when equal).
    #[arg(long, value_name = "ADDR")]
    pub health_listen: Option<std::net::SocketAddr>,
}

/// Options of `doctor`.
#[derive(Debug, Args, Clone)]
pub struct DoctorArgs {
    /// nginx's main config [default: `nginx -T` when nginx is installed, else
    /// /etc/nginx/nginx.conf with its includes].
    #[arg(long, value_name = "PATH")]
    pub nginx_conf: Option<PathBuf>,
    /// nginx's error log (repeatable) [default: the error_log files nginx's config names].
    #[arg(long = "nginx-error-log", value_name = "PATH")]
    pub nginx_error_log: Vec<PathBuf>,
    /// nginx's access log (repeatable) [default: the access_log files nginx's config names].
    #[arg(long = "nginx-access-log", value_name = "PATH")]
    pub nginx_access_log: Vec<PathBuf>,
    /// FPM's error log (repeatable) [default: the config's error_log].
    #[arg(long = "fpm-log", value_name = "PATH")]
    pub fpm_log: Vec<PathBuf>,
    /// Only events since then: a duration back from now (90m, 2h, 1d) or a timestamp
    /// (2026-11-30T05:00:00Z, '2026-11-30 05:00:00' local). Rotated logs (.1, .gz) are read
    /// when it reaches back into them [default: every line of the logs].
    #[arg(long, value_parser = parse_since, value_name = "DURATION|TIMESTAMP")]
    pub since: Option<String>,
    /// Use only the files given: touch no process or socket, run no nginx -T (for logs
    /// copied from another host).
    #[arg(long)]
    pub offline: bool,
    /// Keep reading the logs and print each new finding as it appears (one JSON object per
    /// line with --json).
    #[arg(long)]
    pub follow: bool,
    /// Overall limit for the live checks (connecting to every pool's address as nginx's
    /// user): an address not reached by then is reported as not checked, and with no cause
    /// found the exit code is 8.
    #[arg(long, value_parser = parse_positive_duration, default_value = "10s", value_name = "DURATION")]
    pub timeout: Duration,
    /// Machine-readable output on stdout.
    #[arg(long)]
    pub json: bool,
}

/// Options of `ensure`.
#[derive(Debug, Args, Clone)]
pub struct EnsureArgs {
    /// How long a running FPM may take to answer before it counts as not ready, and how long
    /// a started one may take to become ready.
    #[arg(long, value_parser = parse_positive_duration, default_value = "10s", value_name = "DURATION")]
    pub timeout: Duration,
    /// Restart (as `restart`) a running FPM that is not ready, instead of only reporting it.
    #[arg(long)]
    pub restart_unready: bool,
    /// Machine-readable output on stdout (printed also when nothing was done).
    #[arg(long)]
    pub json: bool,
}

/// Options of `reopen-logs`.
#[derive(Debug, Args, Clone)]
pub struct ReopenLogsArgs {
    /// How long to wait for FPM to confirm the reopen in its error log.
    #[arg(long, value_parser = parse_positive_duration, default_value = "5s", value_name = "DURATION")]
    pub timeout: Duration,
    /// Machine-readable output on stdout.
    #[arg(long)]
    pub json: bool,
}

fn parse_since(s: &str) -> Result<String, String> {
    crate::doctor::time::parse_since(s, 0, 0).map(|_| s.to_string())
}

pub use crate::stop::SignalPlan;

/// Any duration up to [`crate::deadline::LONGEST`]; zero allowed (`--timeout 0` for `stop`,
/// `--lock-timeout 0`).
fn parse_duration(s: &str) -> Result<Duration, String> {
    crate::deadline::parse_duration(s)
}

/// A duration that must be more than zero: an interval, a per-request limit, a readiness
/// limit, where zero would spin or could never succeed.
fn parse_positive_duration(s: &str) -> Result<Duration, String> {
    let d = parse_duration(s)?;
    if d.is_zero() {
        return Err(format!("'{s}': must be more than zero"));
    }
    Ok(d)
}

fn parse_plan(s: &str) -> Result<SignalPlan, String> {
    s.parse()
}

impl Cli {
    /// Parses `std::env::args`.
    pub fn parse_from_env() -> Cli {
        Cli::parse()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_is_refused_where_it_makes_no_sense_and_huge_everywhere() {
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
        assert!(
            parse_positive_duration("0s")
                .unwrap_err()
                .contains("more than zero")
        );
        assert_eq!(parse_positive_duration("10s"), Ok(Duration::from_secs(10)));
        assert!(parse_duration("9223372036854775807s").is_err());
        assert!(parse_positive_duration("9223372036854775807s").is_err());
    }

    #[test]
    fn every_flag_validates_at_parse_time() {
        let parse = |args: &[&str]| {
            Cli::try_parse_from(std::iter::once("fpmctl").chain(args.iter().copied()))
                .map(|_| ())
                .map_err(|e| e.kind())
        };
        assert!(parse(&["supervise"]).is_ok());
        assert!(parse(&["stop", "--timeout", "0s"]).is_ok());
        for bad in [
            &["supervise", "--health-interval", "0s"][..],
            &["supervise", "--health-timeout", "0s"],
            &["supervise", "--ready-timeout", "0s"],
            &["supervise", "--drain-timeout", "0s"],
            &["supervise", "--within", "0s"],
            &["supervise", "--unhealthy-after", "0"],
            &["ping", "--timeout", "0s"],
            &["start", "--timeout", "0s"],
            &["restart", "--stop-timeout", "0s"],
            &["reload", "--timeout", "0s"],
            &["ensure", "--timeout", "0s"],
            &["reopen-logs", "--timeout", "0s"],
            &["--lock-timeout", "9223372036854775807s", "status"],
            &["stop", "--signal-plan", "QUIT:9223372036854775807s"],
        ] {
            assert!(parse(bad).is_err(), "{bad:?} was accepted");
        }
    }
}
