//! A tiny HTTP endpoint for scrapers and HTTP probes: `GET /metrics` (Prometheus text
//! exposition), `GET /livez` and `GET /readyz` (200 `ok`, or 503 with the reason). The HTTP
//! side is `tiny_http`'s; what to answer comes from a [`Health`] implementation, so a host
//! (the supervisor, a test) decides how figures are gathered. [`FpmHealth`] is the one for a
//! config's FPM: one discovery and one [`crate::saturation::observe`] per request, the
//! probes' decisions from [`crate::probe`].

use crate::config::FpmConfig;
use crate::deadline::Deadline;
use crate::saturation::{self, StatusPolicy};

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// How often [`Endpoint::serve_until`] looks at its stop flag.
const STOP_POLL: Duration = Duration::from_millis(100);

/// The content type of the text exposition format.
pub const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// What the endpoint serves.
pub trait Health: Send + Sync {
    /// The exposition for `/metrics`, or why it could not be built.
    fn metrics(&self) -> Result<String, String>;
    /// `/livez`: `Ok` passes, `Err` says why not.
    fn live(&self) -> Result<(), String>;
    /// `/readyz`: `Ok` passes, `Err` says why not.
    fn ready(&self) -> Result<(), String>;
}

/// [`Health`] of a config's FPM, as `fpmctl metrics` and `fpmctl probe` see it.
#[derive(Debug, Clone)]
pub struct FpmHealth {
    /// The config.
    pub cfg: FpmConfig,
    /// `/readyz` fails when more connections than this wait in a pool's queue.
    pub max_queue: Option<u32>,
    /// The most one request may spend (on status pages; the rest does not wait).
    pub budget: Duration,
    /// The host's own series, added to `/metrics` (see [`crate::metrics::render_with`]).
    pub extra: prometheus::Registry,
}

impl FpmHealth {
    /// One look at the FPM: whether its master runs, and each pool's state.
    pub fn observe_pools(&self, policy: StatusPolicy) -> (bool, Vec<saturation::PoolState>) {
        let snap = crate::discovery::discover(&self.cfg);
        let pools = saturation::observe(&self.cfg, &snap, policy, Deadline::after(self.budget));
        (snap.master.is_some(), pools)
    }
}

impl Health for FpmHealth {
    fn metrics(&self) -> Result<String, String> {
        let (master, pools) = self.observe_pools(StatusPolicy::WhenIdle);
        let ready = crate::probe::readiness(master, &pools, self.max_queue).is_ok();
        crate::metrics::render_with(&pools, ready, &self.extra).map_err(|e| e.to_string())
    }

    fn live(&self) -> Result<(), String> {
        let (master, pools) = self.observe_pools(StatusPolicy::Never);
        crate::probe::liveness(master, &pools)
    }

    fn ready(&self) -> Result<(), String> {
        let (master, pools) = self.observe_pools(StatusPolicy::Never);
        crate::probe::readiness(master, &pools, self.max_queue)
    }
}

/// One answer: status, content type, body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// The HTTP status.
    pub status: u16,
    /// `Content-Type`.
    pub content_type: &'static str,
    /// The body.
    pub body: String,
}

/// The answer to `method` `url` (path and query), as data.
pub fn answer(health: &dyn Health, method: &str, url: &str) -> Answer {
    let path = url.split('?').next().unwrap_or("");
    let text = |status, body: String| Answer {
        status,
        content_type: "text/plain; charset=utf-8",
        body,
    };
    if method != "GET" && method != "HEAD" {
        return text(405, "only GET\n".into());
    }
    let probe = |r: Result<(), String>| match r {
        Ok(()) => text(200, "ok\n".into()),
        Err(why) => text(503, format!("{why}\n")),
    };
    match path {
        "/metrics" => match health.metrics() {
            Ok(body) => Answer {
                status: 200,
                content_type: METRICS_CONTENT_TYPE,
                body,
            },
            Err(why) => text(500, format!("{why}\n")),
        },
        "/livez" => probe(health.live()),
        "/readyz" => probe(health.ready()),
        _ => text(404, "not found: try /metrics, /livez or /readyz\n".into()),
    }
}

/// A bound HTTP listener.
pub struct Endpoint {
    server: tiny_http::Server,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("addr", &self.local_addr())
            .finish()
    }
}

impl Endpoint {
    /// Binds `addr` (port 0 picks a free port; see [`Endpoint::local_addr`]).
    pub fn bind(addr: SocketAddr) -> std::io::Result<Endpoint> {
        let server = tiny_http::Server::http(addr).map_err(std::io::Error::other)?;
        Ok(Endpoint { server })
    }

    /// The bound address.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.server.server_addr().to_ip()
    }

    /// Answers requests one at a time until `stop` is set.
    pub fn serve_until(&self, health: &dyn Health, stop: &AtomicBool) {
        while !stop.load(Ordering::Relaxed) {
            let request = match self.server.recv_timeout(STOP_POLL) {
                Ok(Some(r)) => r,
                Ok(None) => continue,
                Err(e) => {
                    tracing::warn!(error = %e, "HTTP endpoint: receiving a request failed");
                    continue;
                }
            };
            let a = answer(health, request.method().as_str(), request.url());
            let mut response = tiny_http::Response::from_string(a.body).with_status_code(a.status);
            if let Ok(h) = tiny_http::Header::from_bytes("Content-Type", a.content_type) {
                response.add_header(h);
            }
            if let Err(e) = request.respond(response) {
                tracing::debug!(error = %e, "HTTP endpoint: the client went away");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::sync::Arc;

    struct Fixed {
        ready: bool,
    }

    impl Health for Fixed {
        fn metrics(&self) -> Result<String, String> {
            Ok("# HELP fpmctl_ready r\n# TYPE fpmctl_ready gauge\nfpmctl_ready 1\n".into())
        }
        fn live(&self) -> Result<(), String> {
            Ok(())
        }
        fn ready(&self) -> Result<(), String> {
            if self.ready {
                Ok(())
            } else {
                Err("pool www is saturated".into())
            }
        }
    }

    fn get(addr: SocketAddr, path: &str) -> String {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    }

    #[test]
    fn serves_metrics_and_probes_over_http() {
        let ep = Arc::new(Endpoint::bind("127.0.0.1:0".parse().unwrap()).unwrap());
        let addr = ep.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let t = {
            let (ep, stop) = (ep.clone(), stop.clone());
            std::thread::spawn(move || ep.serve_until(&Fixed { ready: false }, &stop))
        };
        let m = get(addr, "/metrics");
        assert!(m.starts_with("HTTP/1.1 200"), "{m}");
        assert!(m.contains("text/plain; version=0.0.4"), "{m}");
        assert!(m.ends_with("fpmctl_ready 1\n"), "{m}");
        let l = get(addr, "/livez");
        assert!(l.starts_with("HTTP/1.1 200") && l.ends_with("ok\n"), "{l}");
        let r = get(addr, "/readyz");
        assert!(r.starts_with("HTTP/1.1 503"), "{r}");
        assert!(r.ends_with("pool www is saturated\n"), "{r}");
        assert!(get(addr, "/nope").starts_with("HTTP/1.1 404"));
        stop.store(true, Ordering::Relaxed);
        t.join().unwrap();
    }

    #[test]
    fn answers_are_data() {
        let h = Fixed { ready: true };
        assert_eq!(answer(&h, "GET", "/readyz?verbose").status, 200);
        assert_eq!(answer(&h, "POST", "/metrics").status, 405);
        assert_eq!(
            answer(&h, "GET", "/metrics").content_type,
            METRICS_CONTENT_TYPE
        );
    }
}
