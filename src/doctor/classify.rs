//! From what was observed to named causes: a pure function over the tallied log events, the
//! facts of both configurations and what the live system showed.
//!
//! A cause is only named with evidence. Events that look alike in nginx's log alone (a
//! connection reset can be a terminated worker, a crashed worker or a protocol mismatch) are
//! told apart by FPM's log at the same time in the pool on that address, and by the
//! configurations; a reset nothing explains is a note, not a guess.

use super::facts::{
    Diagnosis, Finding, FpmFacts, LiveFacts, NotChecked, PoolFacts, ProbeResult, Severity,
};
use super::fixes::{
    backlog_fix, fatal_fix, header_fix, permission_fix, permission_summary, timeout_fix,
};
use super::lints;
use super::nginx_facts::{NginxFacts, Protocol, Target, parse_target};
use super::nginx_log::ErrorKind;
use super::observe::{Evidence, FpmEvent, Observations, SAMPLES, Tally};
use super::time::Civil;
use crate::listen::ListenAddr;
use std::collections::BTreeMap;

mod live_rules;
use live_rules::live_findings;

/// How far apart (seconds) an nginx event and an FPM event may be to be the same incident.
pub const WINDOW: i64 = 2;

/// Everything the classifier looks at.
#[derive(Debug, Clone, Copy)]
pub struct Input<'a> {
    /// The logs.
    pub obs: &'a Observations,
    /// nginx's configuration, when read.
    pub nginx: Option<&'a NginxFacts>,
    /// FPM's configuration, when read.
    pub fpm: Option<&'a FpmFacts>,
    /// The live system (empty offline).
    pub live: &'a LiveFacts,
    /// The current wall-clock time, for findings from the live system.
    pub now: Civil,
}

/// Findings under construction, keyed by cause and target so that nginx's and FPM's
/// evidence of one incident end up in one finding.
#[derive(Default)]
struct Acc {
    by_key: BTreeMap<(&'static str, String), Finding>,
    notes: Vec<String>,
}

impl Acc {
    fn add(
        &mut self,
        cause: &'static str,
        target: &str,
        tally: &Tally,
        failed: u64,
        summary: impl FnOnce() -> String,
        fix: impl FnOnce() -> String,
    ) {
        if tally.count == 0 {
            return;
        }
        let f = self
            .by_key
            .entry((cause, target.to_string()))
            .or_insert_with(|| Finding {
                cause,
                severity: Severity::Error,
                count: 0,
                failed: 0,
                first: None,
                last: None,
                summary: summary(),
                evidence: Vec::new(),
                fix: fix(),
                subject: target.to_string(),
            });
        f.count += tally.count;
        f.failed += failed;
        f.first = Some(f.first.map_or(tally.first, |t| t.min(tally.first)));
        f.last = Some(f.last.map_or(tally.last, |t| t.max(tally.last)));
        for e in &tally.samples {
            if f.evidence.len() < SAMPLES {
                f.evidence.push(e.clone());
            }
        }
    }
}

impl Acc {
    /// Adds what the live system showed: `proof` joins the summary of an existing finding
    /// (evidence quotes only lines of files); a new finding quotes `quote`, the config line
    /// where the fix goes, when it is known.
    #[allow(clippy::too_many_arguments)]
    fn add_live(
        &mut self,
        cause: &'static str,
        target: &str,
        now: Civil,
        proof: String,
        quote: Option<Evidence>,
        summary: impl FnOnce() -> String,
        fix: impl FnOnce() -> String,
    ) {
        if !self.by_key.contains_key(&(cause, target.to_string())) {
            let mut t = Tally::default();
            t.add(now, 0, || Evidence {
                file: String::new(),
                line: 0,
                text: String::new(),
            });
            t.samples = quote.into_iter().collect();
            self.add(cause, target, &t, 0, summary, fix);
        }
        if let Some(f) = self.by_key.get_mut(&(cause, target.to_string())) {
            f.summary.push_str(&format!("; now: {proof}"));
        }
    }
}

fn upstream_target(up: &str) -> Option<(Protocol, ListenAddr)> {
    let protocol = if up.starts_with("http") {
        Protocol::Http
    } else {
        Protocol::FastCgi
    };
    match parse_target(up, &[]) {
        Target::Addr(a) => Some((protocol, a)),
        _ => None,
    }
}

/// nginx's spelling of an address for `fastcgi_pass`.
pub fn nginx_addr(a: &ListenAddr) -> String {
    match a {
        ListenAddr::Unix(p) => format!("unix:{}", p.display()),
        ListenAddr::Tcp {
            host: crate::listen::TcpHost::Any,
            port,
        } => format!("127.0.0.1:{port}"),
        other => other.to_string(),
    }
}

fn errno_text(errno: i32) -> String {
    std::io::Error::from_raw_os_error(errno)
        .to_string()
        .split(" (os error")
        .next()
        .unwrap_or_default()
        .to_string()
}

/// The path of the first request quoted in `samples` (`request: "GET /a/b?x HTTP/1.1"`).
fn request_path(samples: &[Evidence]) -> Option<&str> {
    samples.iter().find_map(|e| {
        let r = &e.text[e.text.find(", request: \"")? + 12..];
        let target = r.split(' ').nth(1)?;
        Some(target.split('?').next().unwrap_or(target))
    })
}

/// The pass directive that served the requests of `tally` on `addr` with `protocol`: among
/// those naming the address, the one whose location nginx picks for the quoted request.
fn pass_to<'n>(
    nginx: Option<&'n NginxFacts>,
    addr: &ListenAddr,
    protocol: Protocol,
    tally: &Tally,
) -> Option<&'n super::nginx_facts::Pass> {
    let candidates: Vec<&super::nginx_facts::Pass> = nginx?
        .passes
        .iter()
        .filter(|p| p.protocol == protocol)
        .filter(|p| match &p.target {
            Target::Addr(a) => super::facts::same_address(a, addr),
            Target::Upstream(_, servers) => {
                servers.iter().any(|s| super::facts::same_address(s, addr))
            }
            _ => false,
        })
        .collect();
    super::nginx_facts::pass_for_path(&candidates, request_path(&tally.samples))
}

/// Classifies. Pure: the same input gives the same diagnosis.
pub fn classify(input: &Input<'_>) -> Diagnosis {
    let mut acc = Acc::default();
    // nginx's worker user, when its config is known (never guessed).
    let nginx_user: Option<String> = input.nginx.map(|n| n.worker_user().to_string());
    let nginx_user = nginx_user.as_deref();
    let pools = input.fpm.map(|f| f.pools.as_slice()).unwrap_or_default();
    let pool_for = |a: &ListenAddr| input.fpm.and_then(|f| f.pool_for(a));
    let obs = input.obs;

    // Addresses FPM failed to bind, with the time of the first failure.
    let mut bind_failed: Vec<(ListenAddr, Civil)> = Vec::new();
    for ev in [FpmEvent::BindFailed, FpmEvent::AlreadyListening] {
        for (addr, t) in obs.fpm_of(ev) {
            if let Ok(a) = ListenAddr::parse(addr) {
                bind_failed.push((a, t.first));
            }
        }
    }

    for (kind, up, tally) in obs.nginx_tallies() {
        let target = upstream_target(up);
        let addr = target.as_ref().map(|t| &t.1);
        let pool = addr.and_then(pool_for);
        let shown = addr.map_or_else(|| up.to_string(), nginx_addr);
        let protocol = target.as_ref().map_or(Protocol::FastCgi, |t| t.0);
        let pass = addr.and_then(|a| pass_to(input.nginx, a, protocol, tally));
        match kind {
            ErrorKind::ConnectFailed(13) => acc.add(
                "socket-permission",
                &shown,
                tally,
                tally.count,
                || permission_summary(&shown, nginx_user, pool),
                || permission_fix(nginx_user, pool, &shown),
            ),
            ErrorKind::ConnectFailed(errno @ (2 | 111)) => {
                let why = errno_text(errno);
                if let Some(a) = addr
                    && bind_failed.iter().any(|(b, _)| super::facts::same_address(a, b))
                {
                    acc.add("fpm-bind-failed", &a.to_string(), tally, tally.count, String::new, String::new);
                } else if pool.is_some() || pools.is_empty() {
                    acc.add(
                        "fpm-not-running",
                        &shown,
                        tally,
                        tally.count,
                        || format!("nothing listens on {shown} ({why}): FPM was not running{}", pool.map(|p| format!(" (pool {})", p.name)).unwrap_or_default()),
                        || match input.fpm {
                            Some(f) => format!("start FPM: fpmctl start -c {} (and read its log for why it stopped)", f.config.display()),
                            None => format!("start the FPM that listens on {shown}, or point fastcgi_pass at where FPM listens"),
                        },
                    );
                } else {
                    let listens: Vec<String> = pools.iter().map(|p| format!("{} (pool {})", nginx_addr(&p.listen), p.name)).collect();
                    acc.add(
                        "listen-mismatch",
                        &shown,
                        tally,
                        tally.count,
                        || format!("nginx passes to {shown} ({why}), but no FPM pool listens there; FPM listens on {}", listens.join(", ")),
                        || {
                            let want = pools.first().map(|p| nginx_addr(&p.listen)).unwrap_or_default();
                            match pass {
                                Some(p) => format!("fastcgi_pass {want}; at {} (or set listen in the pool's file to {shown})", p.at),
                                None => format!("fastcgi_pass {want}; in nginx's config (or set listen in the pool's file to {shown})"),
                            }
                        },
                    );
                }
            }
            ErrorKind::ConnectFailed(11) => acc.add(
                "backlog-full",
                &shown,
                tally,
                tally.count,
                || format!("the accept queue of {shown} was full (EAGAIN): every worker was busy and the backlog overflowed"),
                || backlog_fix(pool, input.live.somaxconn),
            ),
            ErrorKind::ConnectFailed(_) | ErrorKind::NoLiveUpstreams => {}
            ErrorKind::ConnectTimedOut | ErrorKind::ReadTimedOut => {
                let saturated = pool.is_some_and(|p| {
                    obs.fpm.get(&(FpmEvent::MaxChildren, p.name.clone())).is_some_and(|t| t.count > 0)
                });
                acc.add(
                    "upstream-timeout",
                    &shown,
                    tally,
                    tally.count,
                    || {
                        let limit = super::fixes::read_timeout_text(pass);
                        let mut s = format!("requests to {shown} ran longer than nginx waits (fastcgi_read_timeout {limit}): 504");
                        if saturated {
                            s.push_str("; the pool was also at pm.max_children, so requests queued");
                        }
                        s
                    },
                    || timeout_fix(pass, pool),
                );
            }
            ErrorKind::Reset | ErrorKind::PrematureClose => {
                if target.as_ref().is_some_and(|t| t.0 == Protocol::Http) {
                    acc.add(
                        "protocol-mismatch",
                        &shown,
                        tally,
                        tally.count,
                        || format!("nginx speaks HTTP (proxy_pass) to {shown}{}, which speaks FastCGI", pool.map(|p| format!(", FPM pool {}", p.name)).unwrap_or_default()),
                        || format!("replace proxy_pass with fastcgi_pass {shown}; plus include fastcgi_params; and fastcgi_param SCRIPT_FILENAME $document_root$fastcgi_script_name;{}", pass.map(|p| format!(" at {}", p.at)).unwrap_or_default()),
                    );
                    continue;
                }
                split_resets(&mut acc, input, tally, &shown, pool);
            }
            ErrorKind::BadProtocol => {
                acc.add(
                    "protocol-mismatch",
                    &shown,
                    tally,
                    tally.count,
                    || format!("what answers on {shown} does not speak FastCGI (it is not FPM)"),
                    || {
                        let at = pass.map(|p| format!(" at {}", p.at)).unwrap_or_default();
                        match pools.first() {
                            Some(p) => format!("fastcgi_pass {};{at} (where FPM pool {} listens), or proxy_pass if {shown} is an HTTP server", nginx_addr(&p.listen), p.name),
                            None => format!("point fastcgi_pass{at} at FPM's listen address, or use proxy_pass if {shown} is an HTTP server"),
                        }
                    },
                );
            }
            ErrorKind::ScriptUnknown => {
                acc.add(
                    "script-not-found",
                    &shown,
                    tally,
                    tally.count,
                    || {
                        let root = pass.and_then(|p| p.root.as_ref()).map(|r| format!(" under root {} ({})", r.value, r.at)).unwrap_or_default();
                        format!("FPM found no script at the SCRIPT_FILENAME nginx sent{root}: \"Primary script unknown\"")
                    },
                    || match pass.and_then(|p| p.script_filename.as_ref()) {
                        Some(sf) => format!("fastcgi_param SCRIPT_FILENAME $document_root$fastcgi_script_name; at {} (now {}), with root pointing at the PHP files", sf.at, sf.value),
                        None => format!("fastcgi_param SCRIPT_FILENAME $document_root$fastcgi_script_name;{} and a root that holds the PHP files", pass.map(|p| format!(" in the location at {}", p.at)).unwrap_or_default()),
                    },
                );
            }
            ErrorKind::TooBigHeader => {
                acc.add(
                    "header-too-big",
                    &shown,
                    tally,
                    tally.count,
                    || format!("the response headers from {shown} did not fit fastcgi_buffer_size"),
                    || header_fix(pass),
                );
            }
            ErrorKind::PhpFatal => acc.add(
                "php-fatal",
                pool.map_or(shown.as_str(), |p| p.name.as_str()),
                tally,
                tally.count,
                || format!("PHP fatal errors in scripts behind {shown} (500)"),
                || fatal_fix(&tally.samples),
            ),
        }
    }

    fpm_only(&mut acc, input, &bind_failed);
    fpm_exit_evidence(&mut acc, obs);
    live_findings(&mut acc, input, nginx_user);

    // A finding's count is the requests that failed of it; FPM's events only count where
    // nginx's log shows no failed request (a pool at pm.max_children, crashes nobody saw).
    let mut findings: Vec<Finding> = acc
        .by_key
        .into_values()
        .map(|mut f| {
            if f.failed > 0 {
                f.count = f.failed;
            }
            f
        })
        .collect();
    findings.extend(lints::lints(input).into_iter().map(|mut l| {
        l.first = Some(input.now);
        l.last = Some(input.now);
        l
    }));
    findings.sort_by(|a, b| {
        (
            a.severity,
            std::cmp::Reverse(a.failed),
            std::cmp::Reverse(a.count),
            a.cause,
        )
            .cmp(&(
                b.severity,
                std::cmp::Reverse(b.failed),
                std::cmp::Reverse(b.count),
                b.cause,
            ))
    });
    // A lint about an address that a cause already names says nothing new.
    let named: Vec<(&'static str, String)> = findings
        .iter()
        .map(|f| (f.cause, f.subject.clone()))
        .collect();
    findings.retain(|f| {
        let twin = match f.cause {
            "lint-listen-mismatch" => "listen-mismatch",
            "lint-proxy-pass-to-fpm" => "protocol-mismatch",
            _ => return true,
        };
        !named.iter().any(|(c, s)| *c == twin && *s == f.subject)
    });
    let mut notes = acc.notes;
    notes.extend(access_notes(input.obs, &findings));
    if let Some(n) = input.nginx {
        notes.extend(n.notes.iter().cloned());
        for p in &n.passes {
            if let Target::Variable(v) = &p.target {
                notes.push(format!(
                    "{} {v} at {}: an address built from variables is not checkable",
                    if p.protocol == Protocol::FastCgi {
                        "fastcgi_pass"
                    } else {
                        "proxy_pass"
                    },
                    p.at
                ));
            }
        }
    }
    let not_checked = input
        .live
        .probes
        .iter()
        .filter(|p| p.result == ProbeResult::NotChecked)
        .map(|p| NotChecked {
            address: nginx_addr(&p.addr),
            pool: pool_for(&p.addr).map(|f| f.name.clone()),
        })
        .collect();
    Diagnosis {
        findings,
        notes,
        not_checked,
    }
}

/// What the access log counted, and whether the findings account for it.
fn access_notes(obs: &Observations, findings: &[Finding]) -> Vec<String> {
    if obs.access.is_empty() {
        return Vec::new();
    }
    let counts: Vec<String> = obs
        .access
        .iter()
        .map(|(s, t)| format!("{} x {s}", t.count))
        .collect();
    let total: u64 = obs
        .access
        .iter()
        .filter(|(s, _)| matches!(**s, 500 | 502 | 504))
        .map(|(_, t)| t.count)
        .sum();
    let explained: u64 = findings.iter().map(|f| f.failed).sum();
    let mut out = vec![format!("access log: {}", counts.join(", "))];
    if total > explained {
        out.push(format!(
            "{} of the access log's 500/502/504 answers have no explanation in the error logs read (is nginx's error_log level above error, or another error log in use?)",
            total - explained
        ));
    }
    out
}

/// Resets: each second's resets go to a terminated worker or a crash FPM logged in that
/// pool within [`WINDOW`] seconds; the rest is a note.
fn split_resets(
    acc: &mut Acc,
    input: &Input<'_>,
    tally: &Tally,
    shown: &str,
    pool: Option<&PoolFacts>,
) {
    let obs = input.obs;
    let in_pool = |name: &str| pool.is_none_or(|p| p.name == name);
    let terminated: Vec<&Tally> = obs
        .fpm_of(FpmEvent::Terminated)
        .filter(|(n, _)| in_pool(n))
        .map(|(_, t)| t)
        .collect();
    let crashed: Vec<&Tally> = obs
        .fpm
        .iter()
        .filter(|((e, n), _)| matches!(e, FpmEvent::Signal(s) if is_crash_signal(*s)) && in_pool(n))
        .map(|(_, t)| t)
        .collect();
    let mut term = Tally::default();
    let mut crash = Tally::default();
    let mut unexplained = 0u64;
    for (&t, &n) in &tally.seconds {
        let bucket = if terminated.iter().any(|x| x.near(t, WINDOW) > 0) {
            &mut term
        } else if crashed.iter().any(|x| x.near(t, WINDOW) > 0) {
            &mut crash
        } else {
            unexplained += u64::from(n);
            continue;
        };
        for _ in 0..n {
            bucket.add(t, 0, || Evidence {
                file: String::new(),
                line: 0,
                text: String::new(),
            });
        }
    }
    // Evidence: nginx's own lines for this upstream, FPM's lines follow from its tallies.
    for (bucket, cause) in [
        (&mut term, "worker-terminated"),
        (&mut crash, "worker-crashed"),
    ] {
        if bucket.count == 0 {
            continue;
        }
        bucket.samples = tally.samples.iter().take(2).cloned().collect();
        let key = pool.map_or_else(String::new, |p| p.name.clone());
        let failed = bucket.count;
        acc.add(cause, &key, bucket, failed, String::new, String::new);
    }
    if unexplained > 0 {
        acc.notes.push(format!(
            "{unexplained} connection resets from {shown} that FPM's log does not explain (pass --fpm-log, or look for workers killed by the OOM killer)"
        ));
    }
}

/// FPM's own line saying it exited, quoted beside nginx's failures when it came before them.
fn fpm_exit_evidence(acc: &mut Acc, obs: &Observations) {
    let exits: Vec<(Civil, &Evidence)> = obs
        .fpm_of(FpmEvent::Exiting)
        .flat_map(|(_, t)| t.samples.iter())
        .filter_map(|e| {
            let t = e.text.strip_prefix('[')?;
            Some((super::time::parse_fpm(t.as_bytes())?, e))
        })
        .collect();
    let readies: Vec<Civil> = obs
        .fpm_of(FpmEvent::Ready)
        .flat_map(|(_, t)| t.seconds.keys().copied())
        .collect();
    for ((cause, _), f) in acc.by_key.iter_mut() {
        if *cause != "fpm-not-running" {
            continue;
        }
        let Some(first) = f.first else { continue };
        // The last exit before the failures, with no start between them.
        let Some((t, e)) = exits
            .iter()
            .filter(|(t, _)| *t <= first + WINDOW)
            .max_by_key(|(t, _)| *t)
        else {
            continue;
        };
        if readies.iter().any(|r| r > t && *r <= first) {
            continue;
        }
        if f.evidence.len() >= SAMPLES {
            f.evidence.pop();
        }
        f.evidence.push((*e).clone());
        f.first = Some(first.min(*t));
        f.summary.push_str("; FPM's log shows it exiting before");
    }
}

/// Signals that mean a worker crashed (not SIGTERM/SIGQUIT, which FPM itself sends).
pub fn is_crash_signal(signo: u32) -> bool {
    matches!(signo, 4 | 5 | 6 | 7 | 8 | 9 | 11 | 31)
}

fn signal_name(signo: u32) -> String {
    nix::sys::signal::Signal::try_from(signo as i32)
        .map_or_else(|_| format!("signal {signo}"), |s| s.as_str().to_string())
}

/// Causes FPM's log shows on its own, and the summaries and fixes of findings that nginx's
/// log started (terminated, crashed, bind failures).
fn fpm_only(acc: &mut Acc, input: &Input<'_>, bind_failed: &[(ListenAddr, Civil)]) {
    let obs = input.obs;
    let fpm = input.fpm;
    let pool_file = |name: &str| {
        fpm.and_then(|f| f.pool(name)).map_or_else(
            || format!("the file of pool {name}"),
            |p| p.file.display().to_string(),
        )
    };
    for (name, t) in obs.fpm_of(FpmEvent::MaxChildren) {
        let n = t.value.max(1);
        acc.add(
            "max-children-reached",
            name,
            t,
            0,
            || format!("pool {name} used all {n} workers (pm.max_children): requests queued and slowed down"),
            || max_children_fix(n, name, &pool_file(name), input.live),
        );
    }
    for (name, t) in obs.fpm_of(FpmEvent::PhpFatal) {
        acc.add(
            "php-fatal",
            name,
            t,
            0,
            || format!("PHP fatal errors in pool {} (500)", show_pool(name)),
            || fatal_fix(&t.samples),
        );
    }
    for (name, t) in obs.fpm_of(FpmEvent::Terminated) {
        acc.add("worker-terminated", name, t, 0, String::new, String::new);
    }
    for ((ev, name), t) in &obs.fpm {
        if let FpmEvent::Signal(s) = ev
            && is_crash_signal(*s)
        {
            acc.add("worker-crashed", name, t, 0, String::new, String::new);
        }
    }
    for ev in [FpmEvent::BindFailed, FpmEvent::AlreadyListening] {
        for (addr, t) in obs.fpm_of(ev) {
            let key = ListenAddr::parse(addr).map_or_else(|_| addr.to_string(), |a| a.to_string());
            acc.add("fpm-bind-failed", &key, t, 0, String::new, String::new);
        }
    }
    let _ = bind_failed;
    // Fill in summaries and fixes now that every piece of evidence is in.
    let term_secs = |name: &str| {
        fpm.and_then(|f| f.pool(name))
            .map(|p| p.terminate_timeout.as_secs())
    };
    for ((cause, key), f) in acc.by_key.iter_mut() {
        match *cause {
            "worker-terminated" if f.summary.is_empty() => {
                let limit = term_secs(key)
                    .filter(|s| *s > 0)
                    .map(|s| format!(" ({s}s)"))
                    .unwrap_or_default();
                f.summary = format!(
                    "FPM killed workers of pool {} that ran past request_terminate_timeout{limit}; nginx saw the connection reset",
                    show_pool(key)
                );
                f.fix = format!(
                    "request_terminate_timeout in {} above the slowest script{limit}, kept at or below nginx's fastcgi_read_timeout; or make the script faster",
                    pool_file(key)
                );
            }
            "worker-crashed" if f.summary.is_empty() => {
                let sigs: Vec<String> = obs
                    .fpm
                    .iter()
                    .filter(|((e, n), _)| {
                        n == key && matches!(e, FpmEvent::Signal(s) if is_crash_signal(*s))
                    })
                    .map(|((e, _), _)| match e {
                        FpmEvent::Signal(s) => signal_name(*s),
                        _ => String::new(),
                    })
                    .collect();
                f.summary = format!(
                    "workers of pool {} died on {}; the requests they served failed",
                    show_pool(key),
                    if sigs.is_empty() {
                        "a signal".to_string()
                    } else {
                        sigs.join(", ")
                    }
                );
                f.fix = format!(
                    "find the crashing extension or code: rlimit_core = unlimited in {} and read the core dump with gdb; disable recently added extensions",
                    pool_file(key)
                );
            }
            "fpm-bind-failed" if f.summary.is_empty() => {
                let holder = ListenAddr::parse(key).ok().and_then(|a| {
                    input
                        .live
                        .holders
                        .iter()
                        .find(|h| super::facts::same_address(&h.addr, &a))
                });
                let held = holder
                    .filter(|h| !h.holders.is_empty())
                    .map(|h| format!(", held by {}", h.holders.join("; ")))
                    .unwrap_or_default();
                f.summary =
                    format!("FPM could not bind {key} because another process holds it{held}");
                f.fix = match (holder, fpm) {
                    (Some(h), Some(c)) if h.own => format!(
                        "this config's FPM already runs and holds {key}: a second php-fpm with the same addresses cannot start; use fpmctl restart -c {c} or fpmctl reload -c {c} instead of starting another",
                        c = c.config.display()
                    ),
                    (Some(h), Some(c)) if h.orphans_only => format!(
                        "orphaned workers of a dead master hold {key}: fpmctl stop -c {c} (stops orphans too), then fpmctl start -c {c}",
                        c = c.config.display()
                    ),
                    (Some(h), _) if !h.holders.is_empty() => format!(
                        "stop the holder of {key} ({}) or move listen in the pool's file to a free address",
                        h.holders.join("; ")
                    ),
                    _ => format!(
                        "find the holder of {key} (ss -ltnp / ss -lxp); if it is FPM workers left by a dead master, fpmctl stop ends them"
                    ),
                };
            }
            _ => {}
        }
    }
}

/// `pm.max_children` raised to twice `n`, or to what memory holds when the live system
/// showed the workers' size.
fn max_children_fix(n: u64, pool: &str, file: &str, live: &LiveFacts) -> String {
    let rss = live
        .worker_rss_kib
        .iter()
        .find(|(p, _)| p == pool)
        .map(|x| x.1);
    match (rss, live.mem_total_kib) {
        (Some(rss), Some(total)) if rss > 0 => {
            // Four fifths of memory for this pool's workers at most.
            let fits = (total * 4 / 5 / rss).max(1);
            let want = (n * 2).min(fits);
            if want <= n {
                format!(
                    "workers of pool {pool} use about {} MiB each and {n} of them already fill the host's memory: add memory or make the scripts faster, rather than raising pm.max_children in {file}",
                    rss / 1024
                )
            } else {
                format!(
                    "pm.max_children = {want} in {file} (now {n}; workers use about {} MiB each, {} MiB of memory)",
                    rss / 1024,
                    total / 1024
                )
            }
        }
        _ => format!(
            "pm.max_children = {} in {file} (now {n}; check that memory holds that many workers)",
            n * 2
        ),
    }
}

fn show_pool(key: &str) -> &str {
    if key.is_empty() { "(unknown)" } else { key }
}

#[cfg(test)]
#[path = "classify_tests.rs"]
mod tests;
