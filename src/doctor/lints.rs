//! Problems the configurations show without any log evidence: reported as warnings with
//! `lint-*` ids, never as one of the causes.

use super::classify::{Input, nginx_addr};
use super::facts::{Finding, Severity, same_address};
use super::nginx_facts::{Protocol, Target};
use crate::listen::ListenAddr;
use std::time::Duration;

/// nginx's default `fastcgi_read_timeout`.
const NGINX_READ_TIMEOUT: Duration = Duration::from_secs(60);

fn lint(cause: &'static str, subject: String, summary: String, fix: String) -> Finding {
    Finding {
        cause,
        severity: Severity::Warning,
        count: 0,
        failed: 0,
        first: None,
        last: None,
        summary,
        evidence: Vec::new(),
        fix,
        subject,
    }
}

/// Every lint that applies.
pub fn lints(input: &Input<'_>) -> Vec<Finding> {
    let mut out = Vec::new();
    let Some(fpm) = input.fpm else {
        return out;
    };
    if fpm.process_control_timeout.is_zero() {
        out.push(lint(
            "lint-process-control-timeout",
            String::new(),
            "process_control_timeout = 0: a reload or graceful stop kills requests in flight at once".into(),
            format!("process_control_timeout = 10s in {}", fpm.config.display()),
        ));
    }
    if let Some(somaxconn) = input.live.somaxconn {
        for p in &fpm.pools {
            if p.backlog > 0 && p.backlog as u32 > somaxconn {
                out.push(lint(
                    "lint-backlog-above-somaxconn",
                    p.name.clone(),
                    format!(
                        "pool {}: listen.backlog = {} but the kernel caps it at net.core.somaxconn = {somaxconn}",
                        p.name, p.backlog
                    ),
                    format!("sysctl net.core.somaxconn={} (or listen.backlog = {somaxconn} in {})", p.backlog, p.file.display()),
                ));
            }
        }
    }
    if let Some(total) = input.live.mem_total_kib {
        let need: u64 = fpm
            .pools
            .iter()
            .filter_map(|p| {
                let rss = input
                    .live
                    .worker_rss_kib
                    .iter()
                    .find(|(n, _)| *n == p.name)?
                    .1;
                Some(u64::from(p.max_children) * rss)
            })
            .sum();
        if need > total {
            for p in &fpm.pools {
                let Some(rss) = input
                    .live
                    .worker_rss_kib
                    .iter()
                    .find(|(n, _)| *n == p.name)
                    .map(|x| x.1)
                else {
                    continue;
                };
                // Leave a fifth of memory to everything else; share the rest by pool.
                let share = total * 4 / 5 * (u64::from(p.max_children) * rss) / need.max(1);
                out.push(lint(
                    "lint-max-children-memory",
                    p.name.clone(),
                    format!(
                        "pools at pm.max_children would need {} MiB (pool {}: {} workers of about {} MiB) but the host has {} MiB",
                        need / 1024,
                        p.name,
                        p.max_children,
                        rss / 1024,
                        total / 1024
                    ),
                    format!("pm.max_children = {} in {} (now {})", (share / rss.max(1)).max(1), p.file.display(), p.max_children),
                ));
            }
        }
    }
    let Some(nginx) = input.nginx else {
        return out;
    };
    let mut seen_unknown: Vec<ListenAddr> = Vec::new();
    for pass in &nginx.passes {
        let addrs: Vec<&ListenAddr> = match &pass.target {
            Target::Addr(a) => vec![a],
            Target::Upstream(_, servers) => servers.iter().collect(),
            _ => continue,
        };
        for a in addrs {
            match fpm.pool_for(a) {
                Some(pool) if pass.protocol == Protocol::FastCgi => {
                    let read = pass
                        .read_timeout
                        .as_ref()
                        .map_or(NGINX_READ_TIMEOUT, |t| t.value);
                    let term = pool.terminate_timeout;
                    if !term.is_zero() && term > read {
                        out.push(lint(
                            "lint-terminate-exceeds-read-timeout",
                            pool.name.clone(),
                            format!(
                                "pool {}: request_terminate_timeout ({}s) is longer than nginx's fastcgi_read_timeout ({}s{}): workers go on for clients that already got a 504",
                                pool.name,
                                term.as_secs(),
                                read.as_secs(),
                                pass.read_timeout.as_ref().map(|t| format!(" at {}", t.at)).unwrap_or_default()
                            ),
                            format!("request_terminate_timeout = {}s in {}", read.as_secs(), pool.file.display()),
                        ));
                    }
                }
                Some(pool) => out.push(lint(
                    "lint-proxy-pass-to-fpm",
                    nginx_addr(a),
                    format!(
                        "proxy_pass at {} speaks HTTP to {} (FPM pool {}), which speaks FastCGI",
                        pass.at,
                        nginx_addr(a),
                        pool.name
                    ),
                    format!(
                        "fastcgi_pass {}; with include fastcgi_params; at {}",
                        nginx_addr(a),
                        pass.at
                    ),
                )),
                None if pass.protocol == Protocol::FastCgi
                    && !fpm.pools.is_empty()
                    && !seen_unknown.iter().any(|s| same_address(s, a)) =>
                {
                    seen_unknown.push(a.clone());
                    let listens: Vec<String> =
                        fpm.pools.iter().map(|p| nginx_addr(&p.listen)).collect();
                    out.push(lint(
                        "lint-listen-mismatch",
                        nginx_addr(a),
                        format!(
                            "fastcgi_pass {} at {} names an address no pool of {} listens on ({})",
                            nginx_addr(a),
                            pass.at,
                            fpm.config.display(),
                            listens.join(", ")
                        ),
                        format!(
                            "fastcgi_pass {}; at {}, if that is the FPM meant",
                            listens.first().cloned().unwrap_or_default(),
                            pass.at
                        ),
                    ));
                }
                None => {}
            }
        }
    }
    out
}
