//! The classifier's rules for what the live system shows: a probe refused for nginx's user,
//! a stopped FPM where nginx sends requests, a fastcgi_pass that refuses while FPM runs
//! elsewhere, a full accept queue.

use super::{Acc, Input, nginx_addr};
use crate::doctor::facts::{PoolFacts, ProbeResult};
use crate::doctor::fixes::{backlog_fix, permission_fix, permission_summary};
use crate::doctor::nginx_facts::{Protocol, Target};
use crate::doctor::observe::Evidence;
use crate::listen::ListenAddr;

/// The pool's section header in its file: where a pool's fix goes.
fn pool_quote(p: &PoolFacts) -> Evidence {
    Evidence {
        file: p.file.display().to_string(),
        line: p.line as u64,
        text: format!("[{}]", p.name),
    }
}

/// True when nginx passes FastCGI to `addr`, or nginx's config is unknown (then every
/// pool counts): a stopped FPM nobody sends requests to fails none.
fn nginx_uses(input: &Input<'_>, addr: &ListenAddr) -> bool {
    input.nginx.is_none_or(|n| {
        n.passes.iter().any(|p| {
            p.protocol == Protocol::FastCgi
                && match &p.target {
                    Target::Addr(a) => crate::doctor::facts::same_address(a, addr),
                    Target::Upstream(_, servers) => servers
                        .iter()
                        .any(|s| crate::doctor::facts::same_address(s, addr)),
                    _ => false,
                }
        })
    })
}

/// Findings the live system proves without any log line.
pub(super) fn live_findings(acc: &mut Acc, input: &Input<'_>, nginx_user: Option<&str>) {
    let pool_for = |a: &ListenAddr| input.fpm.and_then(|f| f.pool_for(a));
    for p in &input.live.probes {
        let shown = nginx_addr(&p.addr);
        let pool = pool_for(&p.addr);
        let key = ("socket-permission", shown.clone());
        if p.result == ProbeResult::Connected
            && let Some(f) = acc.by_key.get_mut(&key)
        {
            f.summary.push_str(&format!(
                "; now: connect() as {} succeeds, so it was fixed after the last failure",
                p.user
            ));
            continue;
        }
        let ProbeResult::Failed(errno, text) = &p.result else {
            continue;
        };
        // The pool's file already says what the fix would: the socket kept its old owner
        // (a reload re-uses the listening socket; only a restart re-creates it).
        if *errno == 13
            && let Some(pool) = pool
            && let Some(nginx_user) = nginx_user
            && (pool.owner.as_deref() == Some(nginx_user)
                || pool.group.as_deref() == Some(nginx_user))
            && let Some(f) = acc.by_key.get_mut(&key)
        {
            f.fix = match input.fpm {
                Some(c) => format!(
                    "{} already names {nginx_user}, but the socket kept its old owner (a reload re-uses it): fpmctl restart -c {}",
                    pool.file.display(),
                    c.config.display()
                ),
                None => format!(
                    "{} already names {nginx_user}, but the socket kept its old owner: restart FPM",
                    pool.file.display()
                ),
            };
        }
        let perms = p
            .socket_perms
            .as_ref()
            .map(|s| format!(" (socket {s})"))
            .unwrap_or_default();
        let ev = format!("connect() as {} to {shown} fails: {text}{perms}", p.user);
        match errno {
            13 => acc.add_live(
                "socket-permission",
                &shown,
                input.now,
                ev,
                pool.map(pool_quote),
                || permission_summary(&shown, nginx_user, pool),
                || permission_fix(nginx_user, pool, &shown),
            ),
            2 | 111
                if input.live.fpm_running == Some(false)
                    && pool.is_some()
                    && nginx_uses(input, &p.addr) =>
            {
                acc.add_live(
                    "fpm-not-running",
                    &shown,
                    input.now,
                    ev,
                    pool.map(pool_quote),
                    || format!("nothing listens on {shown} and no FPM master of this config runs"),
                    || {
                        input.fpm.map_or_else(
                            || "start FPM".to_string(),
                            |f| format!("start FPM: fpmctl start -c {}", f.config.display()),
                        )
                    },
                )
            }
            2 | 111 if input.live.fpm_running == Some(true) && pool.is_none() => {
                let Some(pass) = input.nginx.and_then(|n| {
                    n.passes.iter().find(|x| {
                        x.protocol == Protocol::FastCgi
                            && matches!(&x.target, Target::Addr(a) if crate::doctor::facts::same_address(a, &p.addr))
                    })
                }) else {
                    continue;
                };
                let pools = input.fpm.map(|f| f.pools.as_slice()).unwrap_or_default();
                let Some(want) = pools.first().map(|x| nginx_addr(&x.listen)) else {
                    continue;
                };
                let quote = pass.at.rsplit_once(':').and_then(|(file, line)| {
                    Some(Evidence {
                        file: file.to_string(),
                        line: line.parse().ok()?,
                        text: pass.raw.clone(),
                    })
                });
                let listens: Vec<String> = pools
                    .iter()
                    .map(|x| format!("{} (pool {})", nginx_addr(&x.listen), x.name))
                    .collect();
                acc.add_live(
                    "listen-mismatch",
                    &shown,
                    input.now,
                    ev,
                    quote,
                    || {
                        format!(
                            "nginx passes to {shown}, but no FPM pool listens there; FPM runs and listens on {}",
                            listens.join(", ")
                        )
                    },
                    || format!("fastcgi_pass {want}; at {} (or set listen in the pool's file to {shown})", pass.at),
                );
            }
            _ => {}
        }
    }
    for q in &input.live.queues {
        if q.limit > 0 && q.waiting >= q.limit {
            let shown = nginx_addr(&q.addr);
            let pool = pool_for(&q.addr);
            let ev = format!(
                "the accept queue of {shown} holds {} connections, its limit",
                q.waiting
            );
            acc.add_live(
                "backlog-full",
                &shown,
                input.now,
                ev,
                pool.map(pool_quote),
                || format!("the accept queue of {shown} is full now: every worker is busy"),
                || backlog_fix(pool, input.live.somaxconn),
            );
        }
    }
}
