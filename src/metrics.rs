//! The Prometheus text exposition of the pools' state ([`crate::saturation`]), with the names
//! of hipages' php-fpm_exporter so existing dashboards and alerts keep working, plus
//! `fpmctl_ready` and `fpmctl_pool_saturated`.
//!
//! The `prometheus` crate's `TextEncoder` writes the classic text format and keeps a
//! counter's name as given; the exporter's counters (`phpfpm_accepted_connections`,
//! `phpfpm_max_children_reached`, ...) carry no `_total` suffix, which an OpenMetrics encoder
//! would append. Each exposition is built in a fresh registry from one observation.
//!
//! Where the figures come from: the queue from the kernel, worker counts from `/proc`
//! ([`crate::saturation`]); the counters only FPM keeps (accepted connections, max children
//! reached, slow requests, max active processes, max listen queue) from the status page, and
//! only when it answered: a series that cannot be known is left out rather than reported as 0.
//! `phpfpm_up` is 1 while the master runs and the pool's socket listens, saturated or not.

use crate::saturation::{Health, PoolState};
use prometheus::{IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder};
use std::io::Write;
use std::path::Path;

/// Why the exposition could not be built or written.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    /// The registry refused a metric (a bug: names and labels are constants).
    #[error("building metrics: {0}")]
    Build(#[from] prometheus::Error),
    /// Writing the textfile failed.
    #[error("{path}: {source}")]
    Write {
        /// The file or its directory.
        path: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

const LABELS: &[&str] = &["pool", "scrape_uri"];

fn gauge(reg: &Registry, name: &str, help: &str) -> Result<IntGaugeVec, MetricsError> {
    let g = IntGaugeVec::new(Opts::new(name, help), LABELS)?;
    reg.register(Box::new(g.clone()))?;
    Ok(g)
}

fn counter(reg: &Registry, name: &str, help: &str) -> Result<IntCounterVec, MetricsError> {
    let c = IntCounterVec::new(Opts::new(name, help), LABELS)?;
    reg.register(Box::new(c.clone()))?;
    Ok(c)
}

fn clamp(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// The exposition for `pools`, with `fpmctl_ready` set to `ready`.
pub fn render(pools: &[PoolState], ready: bool) -> Result<String, MetricsError> {
    render_with(pools, ready, &Registry::new())
}

/// [`render`] plus every metric of `extra`: a host's own series (a supervisor's restart
/// counters and histograms) in the same exposition. A name in `extra` that is also one of
/// the pools' is refused.
pub fn render_with(
    pools: &[PoolState],
    ready: bool,
    extra: &Registry,
) -> Result<String, MetricsError> {
    let mut families = pool_registry(pools, ready)?.gather();
    for family in extra.gather() {
        if families.iter().any(|f| f.name() == family.name()) {
            return Err(MetricsError::Build(prometheus::Error::AlreadyReg));
        }
        families.push(family);
    }
    families.sort_by(|a, b| a.name().cmp(b.name()));
    Ok(TextEncoder::new().encode_to_string(&families)?)
}

fn pool_registry(pools: &[PoolState], ready: bool) -> Result<Registry, MetricsError> {
    let reg = Registry::new();
    let up = gauge(
        &reg,
        "phpfpm_up",
        "Whether the pool serves: its master runs and its socket listens (1 also when saturated).",
    )?;
    let accepted = counter(
        &reg,
        "phpfpm_accepted_connections",
        "The number of requests accepted by the pool (from the status page).",
    )?;
    let listen_queue = gauge(
        &reg,
        "phpfpm_listen_queue",
        "Connections waiting in the pool's accept queue (from the kernel).",
    )?;
    let max_listen_queue = counter(
        &reg,
        "phpfpm_max_listen_queue",
        "The most connections the accept queue held since FPM started (from the status page).",
    )?;
    let queue_len = gauge(
        &reg,
        "phpfpm_listen_queue_length",
        "The size of the pool's accept queue (from the kernel).",
    )?;
    let idle = gauge(
        &reg,
        "phpfpm_idle_processes",
        "Workers waiting in accept for a request (from /proc).",
    )?;
    let active = gauge(
        &reg,
        "phpfpm_active_processes",
        "Workers serving a request (from /proc).",
    )?;
    let total = gauge(
        &reg,
        "phpfpm_total_processes",
        "Workers of the pool (from /proc).",
    )?;
    let max_active = counter(
        &reg,
        "phpfpm_max_active_processes",
        "The most workers active at once since FPM started (from the status page).",
    )?;
    let max_children = counter(
        &reg,
        "phpfpm_max_children_reached",
        "How often the pool reached pm.max_children since FPM started (from the status page).",
    )?;
    let slow = counter(
        &reg,
        "phpfpm_slow_requests",
        "Requests that exceeded request_slowlog_timeout since FPM started (from the status page).",
    )?;
    let saturated = gauge(
        &reg,
        "fpmctl_pool_saturated",
        "Whether every worker of the pool is busy or connections wait in its accept queue.",
    )?;
    let ready_gauge = IntGauge::new(
        "fpmctl_ready",
        "Whether FPM is ready: the master runs and every pool listens and has a worker.",
    )?;
    reg.register(Box::new(ready_gauge.clone()))?;
    ready_gauge.set(i64::from(ready));

    for p in pools {
        let labels = [p.pool.as_str(), p.scrape_uri.as_str()];
        up.with_label_values(&labels)
            .set(i64::from(p.health != Health::Down));
        saturated
            .with_label_values(&labels)
            .set(i64::from(p.health == Health::Saturated));
        total
            .with_label_values(&labels)
            .set(i64::from(p.workers.total));
        active
            .with_label_values(&labels)
            .set(i64::from(p.workers.busy));
        idle.with_label_values(&labels)
            .set(i64::from(p.workers.idle));
        if let Some(q) = p.queue {
            listen_queue
                .with_label_values(&labels)
                .set(i64::from(q.waiting));
            queue_len.with_label_values(&labels).set(i64::from(q.limit));
        }
        if let Some(s) = &p.status_page {
            let set = |c: &IntCounterVec, v: u64| c.with_label_values(&labels).inc_by(v);
            set(&accepted, s.accepted_conn);
            set(&max_listen_queue, s.max_listen_queue);
            set(&max_active, s.max_active_processes);
            set(&max_children, s.max_children_reached);
            set(&slow, s.slow_requests);
            if p.queue.is_none() {
                listen_queue
                    .with_label_values(&labels)
                    .set(clamp(s.listen_queue));
                queue_len
                    .with_label_values(&labels)
                    .set(clamp(s.listen_queue_len));
            }
        }
    }
    Ok(reg)
}

/// Writes `text` to `path` atomically for node_exporter's textfile collector: a temporary
/// file in the same directory, mode 0644 (the collector runs as another user), synced, then
/// renamed over `path`. A reader sees the old file or the new one, never a part.
pub fn write_textfile(path: &Path, text: &str) -> Result<(), MetricsError> {
    use std::os::unix::fs::PermissionsExt;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let err = |p: &Path| {
        let p = p.display().to_string();
        move |source| MetricsError::Write { path: p, source }
    };
    let mut tmp = tempfile::Builder::new()
        .prefix(".fpmctl-metrics-")
        .suffix(".tmp")
        .tempfile_in(dir)
        .map_err(err(dir))?;
    tmp.as_file()
        .set_permissions(std::fs::Permissions::from_mode(0o644))
        .map_err(err(tmp.path()))?;
    tmp.write_all(text.as_bytes()).map_err(err(tmp.path()))?;
    tmp.as_file().sync_all().map_err(err(tmp.path()))?;
    tmp.persist(path).map_err(|e| MetricsError::Write {
        path: path.display().to_string(),
        source: e.error,
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::saturation::{Queue, StatusPage, Workers};

    fn pool(name: &str, busy: u32, idle: u32, waiting: u32, page: bool) -> PoolState {
        PoolState {
            pool: name.into(),
            listen: "127.0.0.1:9000".into(),
            scrape_uri: "tcp://127.0.0.1:9000/status".into(),
            pm: "static",
            max_children: busy + idle,
            workers: Workers {
                total: busy + idle,
                busy,
                idle,
                unknown: 0,
            },
            queue: Some(Queue {
                waiting,
                limit: 511,
            }),
            queue_unknown: false,
            status_page: page.then(|| StatusPage {
                uri: "tcp://127.0.0.1:9000/status".into(),
                accepted_conn: 12,
                listen_queue: 0,
                max_listen_queue: 3,
                listen_queue_len: 511,
                idle_processes: 1,
                active_processes: 1,
                total_processes: 2,
                max_active_processes: 2,
                max_children_reached: 4,
                slow_requests: 1,
            }),
            status_page_note: None,
            health: if waiting > 0 || idle == 0 {
                Health::Saturated
            } else {
                Health::Ok
            },
        }
    }

    #[test]
    fn names_help_and_types_are_the_exporters() {
        let text = render(&[pool("www", 1, 1, 0, true)], true).unwrap();
        for (name, kind) in [
            ("phpfpm_up", "gauge"),
            ("phpfpm_accepted_connections", "counter"),
            ("phpfpm_listen_queue", "gauge"),
            ("phpfpm_max_listen_queue", "counter"),
            ("phpfpm_listen_queue_length", "gauge"),
            ("phpfpm_idle_processes", "gauge"),
            ("phpfpm_active_processes", "gauge"),
            ("phpfpm_total_processes", "gauge"),
            ("phpfpm_max_active_processes", "counter"),
            ("phpfpm_max_children_reached", "counter"),
            ("phpfpm_slow_requests", "counter"),
            ("fpmctl_ready", "gauge"),
        ] {
            assert!(
                text.contains(&format!("# TYPE {name} {kind}\n")),
                "{name} {kind}:\n{text}"
            );
            assert!(text.contains(&format!("# HELP {name} ")), "{name}:\n{text}");
        }
        // No counter got a `_total` suffix appended.
        assert!(
            !text.contains("_total{") && !text.contains("_total "),
            "{text}"
        );
        assert!(text.contains(
            "phpfpm_max_children_reached{pool=\"www\",scrape_uri=\"tcp://127.0.0.1:9000/status\"} 4\n"
        ));
        assert!(text.contains("fpmctl_ready 1\n"));
    }

    #[test]
    fn without_a_status_page_only_what_is_known_is_exposed() {
        let text = render(&[pool("www", 2, 0, 5, false)], false).unwrap();
        assert!(text.contains("phpfpm_listen_queue{pool=\"www\""));
        assert!(text.contains("} 5\n"));
        assert!(
            text.contains("phpfpm_up{pool=\"www\",scrape_uri=\"tcp://127.0.0.1:9000/status\"} 1\n")
        );
        assert!(text.contains(
            "phpfpm_active_processes{pool=\"www\",scrape_uri=\"tcp://127.0.0.1:9000/status\"} 2\n"
        ));
        assert!(!text.contains("phpfpm_accepted_connections{"), "{text}");
        assert!(!text.contains("phpfpm_max_children_reached{"), "{text}");
        assert!(text.contains("fpmctl_ready 0\n"));
    }

    #[test]
    fn a_hosts_own_series_join_the_exposition() {
        let extra = Registry::new();
        let restarts = IntCounterVec::new(
            Opts::new("fpmctl_fpm_restarts_total", "FPM restarts by reason."),
            &["reason"],
        )
        .unwrap();
        extra.register(Box::new(restarts.clone())).unwrap();
        restarts.with_label_values(&["crash"]).inc();
        let took = prometheus::Histogram::with_opts(prometheus::HistogramOpts::new(
            "fpmctl_restart_duration_seconds",
            "How long restarts took.",
        ))
        .unwrap();
        extra.register(Box::new(took.clone())).unwrap();
        took.observe(0.25);
        let text = render_with(&[pool("www", 1, 1, 0, true)], true, &extra).unwrap();
        assert!(
            text.contains("# TYPE fpmctl_fpm_restarts_total counter\n"),
            "{text}"
        );
        assert!(
            text.contains("fpmctl_fpm_restarts_total{reason=\"crash\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("# TYPE fpmctl_restart_duration_seconds histogram\n"),
            "{text}"
        );
        assert!(
            text.contains("fpmctl_restart_duration_seconds_count 1\n"),
            "{text}"
        );
        assert!(text.contains("phpfpm_up{pool=\"www\""), "{text}");
        // A name the pools already use is refused, not written twice.
        let clash = Registry::new();
        clash
            .register(Box::new(IntGauge::new("phpfpm_up", "x").unwrap()))
            .unwrap();
        assert!(render_with(&[pool("www", 1, 1, 0, true)], true, &clash).is_err());
    }

    #[test]
    fn the_textfile_is_replaced_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fpm.prom");
        write_textfile(&path, "a 1\n").unwrap();
        write_textfile(&path, "a 2\n").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "a 2\n");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o644);
        // Nothing else is left in the directory.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        let missing = dir.path().join("no/such/dir/fpm.prom");
        let err = write_textfile(&missing, "x").unwrap_err().to_string();
        assert!(err.contains("no/such/dir"), "{err}");
    }
}
