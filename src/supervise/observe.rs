//! What the supervisor shows of itself: its own Prometheus series (restarts by reason,
//! crashes, restart durations, workers FPM terminated or saw crash), FPM's log read from its
//! stderr, and the HTTP endpoint (`--metrics-listen`, `--health-listen`) on its own threads.
//!
//! The machine decides what to count ([`Tally`] actions); this module only keeps the counts.
//! FPM's log lines are forwarded to the supervisor's stderr unchanged and parsed with
//! [`crate::doctor::fpm_log`]: a worker killed for `request_terminate_timeout` and a worker
//! that exited on a signal are counted as FPM reports them.

use super::machine::{RestartReason, Tally};
use crate::config::FpmConfig;
use crate::doctor::fpm_log::{self, FpmKind};
use crate::endpoint::{Endpoint, FpmHealth, Health};
use crate::error::{Error, Result};
use prometheus::{Histogram, HistogramOpts, IntCounter, IntCounterVec, Opts, Registry};
use std::io::{BufRead, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::thread::JoinHandle;
use tracing::{info, warn};

/// The most a scrape waits for a status page (below a 1 s scrape or probe timeout).
pub const STATUS_BUDGET: std::time::Duration = std::time::Duration::from_millis(800);

/// The supervisor's own series.
#[derive(Debug, Clone)]
pub struct Counters {
    /// The registry every series below is in ([`FpmHealth::extra`]).
    pub registry: Registry,
    restarts: IntCounterVec,
    crashes: IntCounter,
    restart_seconds: Histogram,
    terminated: IntCounter,
    crashed: IntCounter,
    /// The machine's own view: a master is serving.
    pub ready: Arc<AtomicBool>,
    /// The config the serving FPM runs (a restart may load a new one with other pools).
    pub config: Arc<RwLock<Option<FpmConfig>>>,
}

impl Counters {
    /// A registry with every series at zero.
    pub fn new() -> std::result::Result<Counters, prometheus::Error> {
        let registry = Registry::new();
        let restarts = IntCounterVec::new(
            Opts::new(
                "fpmctl_fpm_restarts_total",
                "FPM restarts begun by the supervisor, by reason.",
            ),
            &["reason"],
        )?;
        for r in RestartReason::ALL {
            restarts.with_label_values(&[r.as_str()]);
        }
        let crashes = IntCounter::new(
            "fpmctl_fpm_crashes_total",
            "Times the serving FPM master exited without being asked to.",
        )?;
        let restart_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "fpmctl_restart_duration_seconds",
                "Time from spawning a replacement FPM master to its readiness.",
            )
            .buckets(vec![0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0]),
        )?;
        let terminated = IntCounter::new(
            "fpmctl_worker_terminated_total",
            "Workers FPM killed because a request ran past request_terminate_timeout.",
        )?;
        let crashed = IntCounter::new(
            "fpmctl_worker_crashed_total",
            "Workers that exited on a signal FPM did not send (SIGSEGV, SIGBUS, ...).",
        )?;
        registry.register(Box::new(restarts.clone()))?;
        registry.register(Box::new(crashes.clone()))?;
        registry.register(Box::new(restart_seconds.clone()))?;
        registry.register(Box::new(terminated.clone()))?;
        registry.register(Box::new(crashed.clone()))?;
        Ok(Counters {
            registry,
            restarts,
            crashes,
            restart_seconds,
            terminated,
            crashed,
            ready: Arc::new(AtomicBool::new(false)),
            config: Arc::new(RwLock::new(None)),
        })
    }

    /// Counts what the machine asked to count.
    pub fn tally(&self, t: Tally) {
        match t {
            Tally::Restart(r) => self.restarts.with_label_values(&[r.as_str()]).inc(),
            Tally::Crash => self.crashes.inc(),
            Tally::RestartTook(d) => self.restart_seconds.observe(d.as_secs_f64()),
        }
    }

    /// Counts one line of FPM's log, if it says a worker was terminated or crashed.
    pub fn fpm_line(&self, line: &[u8]) {
        let Some(rec) = fpm_log::parse(line) else {
            return;
        };
        match rec.kind {
            FpmKind::Terminated { .. } => self.terminated.inc(),
            // SIGHUP, SIGINT, SIGQUIT, SIGKILL and SIGTERM are stops (FPM's own for a terminate
            // timeout, an idle timeout or a stop; the kernel's OOM killer); anything else is
            // the worker's own crash.
            FpmKind::Signal { signo, .. } if !matches!(signo, 1 | 2 | 3 | 9 | 15) => {
                self.crashed.inc()
            }
            _ => {}
        }
    }
}

/// Reads FPM's stderr until every holder closed it: each line goes to our stderr unchanged
/// (between the supervisor's own log lines, never inside one) and is counted. Runs on its
/// own thread per master.
pub fn forward_stderr(pipe: std::process::ChildStderr, counters: Counters) -> Result<()> {
    std::thread::Builder::new()
        .name("fpm-stderr".into())
        .spawn(move || {
            let mut reader = std::io::BufReader::new(pipe);
            let mut line = Vec::new();
            loop {
                line.clear();
                match reader.read_until(b'\n', &mut line) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        // Through the log's bounded queue: a stderr that does not keep up
                        // drops lines rather than stalling FPM on a full pipe.
                        let _ = crate::output::LossyStderr.write(&line);
                        counters.fpm_line(&line);
                    }
                }
            }
        })
        .map(drop)
        .map_err(|e| Error::io("starting the FPM log thread", e))
}

/// The supervisor's answers: FPM's figures as `fpmctl metrics` sees them, `fpmctl_ready` and
/// `/readyz` from the machine's own readiness.
struct Supervised {
    fpm: FpmHealth,
    ready: Arc<AtomicBool>,
    config: Arc<RwLock<Option<FpmConfig>>>,
}

impl Supervised {
    /// [`FpmHealth`] for the config FPM runs now.
    fn now(&self) -> FpmHealth {
        let mut h = self.fpm.clone();
        if let Ok(guard) = self.config.read()
            && let Some(cfg) = guard.as_ref()
        {
            h.cfg = cfg.clone();
        }
        h
    }
}

impl Health for Supervised {
    fn metrics(&self) -> std::result::Result<String, String> {
        let h = self.now();
        let pools = h.observe_pools(crate::saturation::StatusPolicy::WhenIdle).1;
        let ready = self.ready.load(Ordering::Relaxed);
        crate::metrics::render_with(&pools, ready, &h.extra).map_err(|e| e.to_string())
    }

    fn live(&self) -> std::result::Result<(), String> {
        self.now().live()
    }

    fn ready(&self) -> std::result::Result<(), String> {
        if !self.ready.load(Ordering::Relaxed) {
            return Err("FPM is not ready: starting, restarting or down".into());
        }
        self.now().ready()
    }
}

/// The endpoint threads; stopped by [`Endpoints::stop`].
#[derive(Debug, Default)]
pub struct Endpoints {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl Endpoints {
    /// Binds each distinct address (one endpoint serves both when they are equal) and serves
    /// it on its own thread.
    pub fn start(addrs: &[SocketAddr], fpm: FpmHealth, counters: &Counters) -> Result<Self> {
        let mut eps = Endpoints::default();
        let health = Arc::new(Supervised {
            fpm,
            ready: counters.ready.clone(),
            config: counters.config.clone(),
        });
        let mut seen = Vec::new();
        for addr in addrs {
            if seen.contains(addr) {
                continue;
            }
            seen.push(*addr);
            let ep = Endpoint::bind(*addr)
                .map_err(|e| Error::io(format!("listening on {addr} for HTTP"), e))?;
            info!(addr = %addr, "serving /metrics, /livez and /readyz");
            let (stop, health) = (eps.stop.clone(), health.clone());
            let t = std::thread::Builder::new()
                .name("endpoint".into())
                .spawn(move || ep.serve_until(health.as_ref(), &stop))
                .map_err(|e| Error::io("starting the HTTP endpoint thread", e))?;
            eps.threads.push(t);
        }
        Ok(eps)
    }

    /// Stops every endpoint and waits for its thread.
    pub fn stop(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in std::mem::take(&mut self.threads) {
            if t.join().is_err() {
                warn!("an HTTP endpoint thread panicked");
            }
        }
    }
}

impl Drop for Endpoints {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(c: &Counters) -> String {
        crate::metrics::render_with(&[], false, &c.registry).unwrap()
    }

    #[test]
    fn fpm_log_lines_count_terminated_and_crashed_workers() {
        let c = Counters::new().unwrap();
        c.fpm_line(b"[30-Nov-2026 07:40:01] WARNING: [pool tcp] child 4242, script '/x/slow.php' (request: \"GET /slow.php\") execution timed out (1.012 sec), terminating\n");
        c.fpm_line(b"[30-Nov-2026 07:40:01] WARNING: [pool tcp] child 4242 exited on signal 9 (SIGKILL) after 3.1 seconds from start\n");
        c.fpm_line(b"[30-Nov-2026 07:40:02] WARNING: [pool tcp] child 4243 exited on signal 11 (SIGSEGV - core dumped) after 0.2 seconds from start\n");
        c.fpm_line(b"[30-Nov-2026 07:40:02] NOTICE: [pool tcp] child 4244 started\n");
        let t = text(&c);
        assert!(t.contains("fpmctl_worker_terminated_total 1\n"), "{t}");
        assert!(t.contains("fpmctl_worker_crashed_total 1\n"), "{t}");
    }

    #[test]
    fn tallies_land_in_their_series() {
        let c = Counters::new().unwrap();
        c.tally(Tally::Crash);
        c.tally(Tally::Restart(RestartReason::Crash));
        c.tally(Tally::RestartTook(std::time::Duration::from_millis(300)));
        let t = text(&c);
        assert!(t.contains("fpmctl_fpm_crashes_total 1\n"), "{t}");
        assert!(
            t.contains("fpmctl_fpm_restarts_total{reason=\"crash\"} 1\n"),
            "{t}"
        );
        assert!(
            t.contains("fpmctl_fpm_restarts_total{reason=\"requested\"} 0\n"),
            "{t}"
        );
        assert!(
            t.contains("fpmctl_restart_duration_seconds_count 1\n"),
            "{t}"
        );
    }
}
