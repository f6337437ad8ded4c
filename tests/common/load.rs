//! A small HTTP load generator: plain blocking `TcpStream`s, one HTTP/1.1 `Connection: close`
//! GET per connection, so every request opens a new connection through nginx (as a browser
//! behind a restart would) and a failure is attributed to exactly one request.
//!
//! A run is always bounded three ways: a stop flag, a hard maximum duration and a maximum
//! request count.

use std::collections::BTreeMap;
use std::fmt;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Requests of one run, across all its threads, at most.
pub const MAX_REQUESTS: u64 = 2_000_000;
/// Limit of one load request (connect, send, read the whole answer).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How many failure descriptions a report keeps.
const KEEP_ERRORS: usize = 10;

/// Which of a run's three bounds ended a load thread.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// Someone set the stop flag.
    StopFlag,
    /// The run's maximum duration passed.
    MaxDuration,
    /// [`MAX_REQUESTS`] (or the run's own maximum) were sent.
    MaxRequests,
}

/// What a load run saw.
#[derive(Debug, Clone, Default)]
pub struct LoadReport {
    /// Requests answered with a 2xx status.
    pub ok_2xx: u64,
    /// Requests answered with any other status (nginx's 502 when FPM is gone).
    pub non_2xx: u64,
    /// Requests that got no HTTP answer: connect, write or read failures, timeouts.
    pub errors: u64,
    /// Every status seen, with its count.
    pub statuses: BTreeMap<u16, u64>,
    /// The first few failures (non-2xx or errors), each with the time since the run began.
    pub first_errors: Vec<String>,
    /// How long the run took.
    pub elapsed: Duration,
    /// Why each load thread stopped sending, one entry per thread.
    pub ended_by: Vec<End>,
    /// How long each request took (connect to the end of the answer, or to its failure), in
    /// microseconds, in no particular order.
    pub latencies_us: Vec<u32>,
    /// Failures as they were noted, with the time since the run began (first few per thread).
    noted: Vec<(Duration, String)>,
}

impl LoadReport {
    /// Every request sent.
    pub fn requests(&self) -> u64 {
        self.ok_2xx + self.non_2xx + self.errors
    }

    /// Requests that did not get a 2xx answer.
    pub fn failed(&self) -> u64 {
        self.non_2xx + self.errors
    }

    /// The `q` quantile (0.0 to 1.0, nearest rank) of the request latencies; zero without
    /// requests.
    pub fn latency_quantile(&self, q: f64) -> Duration {
        let mut v = self.latencies_us.clone();
        v.sort_unstable();
        if v.is_empty() {
            return Duration::ZERO;
        }
        let rank = ((q.clamp(0.0, 1.0) * v.len() as f64).ceil() as usize).clamp(1, v.len());
        Duration::from_micros(u64::from(v[rank - 1]))
    }

    /// Requests that took longer than `limit`.
    pub fn slower_than(&self, limit: Duration) -> usize {
        let limit = u32::try_from(limit.as_micros()).unwrap_or(u32::MAX);
        self.latencies_us.iter().filter(|us| **us > limit).count()
    }

    /// Counts one request's outcome.
    fn count(&mut self, at: Duration, outcome: Result<(u16, String), String>) {
        match outcome {
            Ok((status, body)) => {
                *self.statuses.entry(status).or_default() += 1;
                if (200..300).contains(&status) {
                    self.ok_2xx += 1;
                } else {
                    self.non_2xx += 1;
                    self.note_failure(at, format!("status {status}: {}", summary(&body)));
                }
            }
            Err(e) => {
                self.errors += 1;
                self.note_failure(at, e);
            }
        }
    }

    fn note_failure(&mut self, at: Duration, what: String) {
        if self.noted.len() < KEEP_ERRORS {
            self.noted.push((at, what));
        }
    }

    fn merge(&mut self, other: LoadReport) {
        self.ok_2xx += other.ok_2xx;
        self.non_2xx += other.non_2xx;
        self.errors += other.errors;
        for (status, n) in other.statuses {
            *self.statuses.entry(status).or_default() += n;
        }
        self.noted.extend(other.noted);
        self.ended_by.extend(other.ended_by);
        self.latencies_us.extend(other.latencies_us);
    }
}

impl fmt::Display for LoadReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} requests in {:.2}s: {} 2xx, {} non-2xx, {} errors; statuses {:?}; ended by {:?}",
            self.requests(),
            self.elapsed.as_secs_f64(),
            self.ok_2xx,
            self.non_2xx,
            self.errors,
            self.statuses,
            self.ended_by
        )?;
        for e in &self.first_errors {
            write!(f, "\n  {e}")?;
        }
        Ok(())
    }
}

/// A load: how many client threads, how each paces itself, and its hard limits.
#[derive(Debug, Clone)]
pub struct Load {
    /// Client threads, each with one request in flight at a time.
    pub threads: usize,
    /// Pause of each thread after each request (zero: back to back).
    pub pause: Duration,
    /// The run ends after this long even when nobody sets the stop flag.
    pub max_duration: Duration,
    /// The run ends after this many requests (all threads together).
    pub max_requests: u64,
}

impl Load {
    /// `threads` clients back to back, for at most `max_duration` and [`MAX_REQUESTS`].
    pub fn new(threads: usize, max_duration: Duration) -> Load {
        Load {
            threads,
            pause: Duration::ZERO,
            max_duration,
            max_requests: MAX_REQUESTS,
        }
    }

    /// Each thread pauses this long after each request.
    pub fn pause(mut self, pause: Duration) -> Load {
        self.pause = pause;
        self
    }

    /// Sends GET `path` to `addr` until `stop` is set or a limit is reached.
    pub fn run(&self, addr: SocketAddr, path: &str, stop: Arc<AtomicBool>) -> LoadReport {
        let began = Instant::now();
        let deadline = fpmctl::deadline::Deadline::after_from(began, self.max_duration);
        let sent = Arc::new(AtomicU64::new(0));
        let handles: Vec<_> = (0..self.threads.max(1))
            .map(|i| {
                let stop = Arc::clone(&stop);
                let sent = Arc::clone(&sent);
                let path = path.to_string();
                let (pause, max_requests) = (self.pause, self.max_requests);
                std::thread::Builder::new()
                    .name(format!("load-{i}"))
                    .spawn(move || {
                        let mut rep = LoadReport::default();
                        let end = loop {
                            if stop.load(Ordering::Relaxed) {
                                break End::StopFlag;
                            }
                            if deadline.expired() {
                                break End::MaxDuration;
                            }
                            if sent.fetch_add(1, Ordering::Relaxed) >= max_requests {
                                break End::MaxRequests;
                            }
                            let at = began.elapsed();
                            let outcome = get(addr, &path, REQUEST_TIMEOUT);
                            let took = began.elapsed().saturating_sub(at);
                            rep.latencies_us
                                .push(u32::try_from(took.as_micros()).unwrap_or(u32::MAX));
                            rep.count(at, outcome);
                            if !pause.is_zero() {
                                std::thread::sleep(pause);
                            }
                        };
                        rep.ended_by.push(end);
                        rep
                    })
                    .expect("spawning a load thread")
            })
            .collect();
        let mut total = LoadReport::default();
        for h in handles {
            total.merge(h.join().expect("a load thread panicked"));
        }
        // Each thread kept its own first failures: keep the earliest of all of them.
        let mut noted = std::mem::take(&mut total.noted);
        noted.sort_by_key(|(at, _)| *at);
        total.first_errors = noted
            .into_iter()
            .take(KEEP_ERRORS)
            .map(|(at, what)| format!("{:.3}s: {what}", at.as_secs_f64()))
            .collect();
        total.elapsed = began.elapsed();
        total
    }

    /// [`Load::run`] in a background thread; set `stop` and join the handle for the report.
    pub fn spawn(
        &self,
        addr: SocketAddr,
        path: &str,
        stop: Arc<AtomicBool>,
    ) -> std::thread::JoinHandle<LoadReport> {
        let (load, path) = (self.clone(), path.to_string());
        std::thread::spawn(move || load.run(addr, &path, stop))
    }
}

/// Runs `threads` clients, each sending GET `path` to `addr` back to back, until `stop` is
/// set, `max_duration` has passed or [`MAX_REQUESTS`] were sent, whichever comes first.
pub fn run(
    addr: SocketAddr,
    path: &str,
    threads: usize,
    stop: Arc<AtomicBool>,
    max_duration: Duration,
) -> LoadReport {
    Load::new(threads, max_duration).run(addr, path, stop)
}

/// [`run`] in a background thread; set `stop` and join the handle for the report.
pub fn spawn(
    addr: SocketAddr,
    path: &str,
    threads: usize,
    stop: Arc<AtomicBool>,
    max_duration: Duration,
) -> std::thread::JoinHandle<LoadReport> {
    Load::new(threads, max_duration).spawn(addr, path, stop)
}

/// One GET over a new connection: the status and the (de-chunked) body, or why there is none.
/// `timeout` bounds the whole exchange.
pub fn get(addr: SocketAddr, path: &str, timeout: Duration) -> Result<(u16, String), String> {
    let deadline = Instant::now() + timeout;
    let left = || {
        deadline
            .checked_duration_since(Instant::now())
            .filter(|d| !d.is_zero())
            .ok_or_else(|| format!("GET {path}: timed out after {timeout:?}"))
    };
    let mut stream = TcpStream::connect_timeout(&addr, left()?)
        .map_err(|e| format!("GET {path}: connect: {e}"))?;
    stream
        .set_write_timeout(Some(left()?))
        .map_err(|e| format!("GET {path}: {e}"))?;
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: fpmctl-load\r\nConnection: close\r\n\r\n"
    );
    stream
        .write_all(req.as_bytes())
        .map_err(|e| format!("GET {path}: write: {e}"))?;
    let mut raw = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        stream
            .set_read_timeout(Some(left()?))
            .map_err(|e| format!("GET {path}: {e}"))?;
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => {
                return Err(format!("GET {path}: read after {} bytes: {e}", raw.len()));
            }
        }
    }
    parse_response(&raw).map_err(|e| format!("GET {path}: {e}"))
}

/// A body on one short line: nginx's error pages by their title, anything else cut short.
fn summary(body: &str) -> String {
    if let Some(start) = body.find("<title>") {
        let rest = &body[start + 7..];
        if let Some(end) = rest.find("</title>") {
            return rest[..end].to_string();
        }
    }
    let flat = body.split_whitespace().collect::<Vec<_>>().join(" ");
    flat.chars().take(80).collect()
}

/// Splits a complete `Connection: close` response into status and body.
fn parse_response(raw: &[u8]) -> Result<(u16, String), String> {
    let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Err(format!(
            "no complete response header in {} bytes",
            raw.len()
        ));
    };
    let head = String::from_utf8_lossy(&raw[..end]);
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .filter(|_| status_line.starts_with("HTTP/1."))
        .ok_or_else(|| format!("bad status line {status_line:?}"))?;
    let chunked = lines.any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("transfer-encoding:") && l.contains("chunked")
    });
    let body = &raw[end + 4..];
    let body = if chunked {
        dechunk(body)?
    } else {
        body.to_vec()
    };
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

fn dechunk(mut data: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    loop {
        let Some(eol) = data.windows(2).position(|w| w == b"\r\n") else {
            return Err("truncated chunked body".into());
        };
        let size_text = String::from_utf8_lossy(&data[..eol]);
        let size_text = size_text.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_text, 16)
            .map_err(|_| format!("bad chunk size {size_text:?}"))?;
        data = &data[eol + 2..];
        if size == 0 {
            return Ok(out);
        }
        if data.len() < size + 2 {
            return Err("truncated chunk".into());
        }
        out.extend_from_slice(&data[..size]);
        data = &data[size + 2..];
    }
}
