//! The fixes (and a few summaries) the classifier proposes: the directive, the file and the
//! value to set, computed from the configurations where they allow it.

use super::facts::PoolFacts;
use super::nginx_facts::Pass;
use super::observe::Evidence;

pub(super) fn permission_summary(
    shown: &str,
    user: Option<&str>,
    pool: Option<&PoolFacts>,
) -> String {
    let who = user.map_or_else(String::new, |u| format!(" (user {u})"));
    let mut s = format!("nginx's workers{who} may not connect to {shown}: permission denied");
    if let Some(p) = pool {
        s.push_str(&format!(
            "; pool {} sets listen.owner = {}, listen.group = {}, listen.mode = {}",
            p.name,
            p.owner.as_deref().unwrap_or("(unset: FPM's user)"),
            p.group.as_deref().unwrap_or("(unset)"),
            p.mode.as_deref().unwrap_or("0660 (default)")
        ));
    }
    s
}

pub(super) fn permission_fix(user: Option<&str>, pool: Option<&PoolFacts>, shown: &str) -> String {
    let file = pool.map_or_else(
        || format!("the pool that listens on {shown}"),
        |p| p.file.display().to_string(),
    );
    match user {
        Some(user) => format!(
            "listen.owner = {user} and listen.group = {user} (listen.mode = 0660) in {file} because nginx runs as {user}"
        ),
        None => format!(
            "listen.owner and listen.group = the user nginx's workers run as (its `user` directive; pass --nginx-conf to have it named), listen.mode = 0660, in {file}"
        ),
    }
}

pub(super) fn backlog_fix(pool: Option<&PoolFacts>, somaxconn: Option<u32>) -> String {
    let now = somaxconn.map_or(String::new(), |s| format!(" (now {s})"));
    match pool {
        Some(p) => {
            let backlog = if p.backlog > 0 {
                p.backlog.to_string()
            } else {
                "-1, the kernel's maximum".to_string()
            };
            format!(
                "pm.max_children = {} in {} (now {}) so the queue drains, and listen.backlog = 1024 there (now {backlog}) with sysctl net.core.somaxconn >= 1024{now}",
                p.max_children * 2,
                p.file.display(),
                p.max_children
            )
        }
        None => format!(
            "raise pm.max_children and listen.backlog in the pool, and sysctl net.core.somaxconn{now}"
        ),
    }
}

/// Where a setting unset at `pass` may hide: the includes in scope that could not be read.
pub(super) fn unread(pass: Option<&Pass>) -> Option<String> {
    let p = pass?;
    let list: Vec<String> = p
        .unread_includes
        .iter()
        .map(|u| format!("{} (included at {})", u.value, u.at))
        .collect();
    (!list.is_empty()).then(|| list.join(", "))
}

/// nginx's `fastcgi_read_timeout` where `pass` stands, as the summary says it.
pub(super) fn read_timeout_text(pass: Option<&Pass>) -> String {
    match (pass.and_then(|p| p.read_timeout.as_ref()), unread(pass)) {
        (Some(t), _) => format!("{}s", t.value.as_secs()),
        (None, Some(files)) => {
            format!("unknown: it may be set in {files}, which could not be read")
        }
        (None, None) => "60s (the default)".to_string(),
    }
}

pub(super) fn timeout_fix(pass: Option<&Pass>, pool: Option<&PoolFacts>) -> String {
    let cur = pass.and_then(|p| p.read_timeout.as_ref());
    let hidden = if cur.is_none() { unread(pass) } else { None };
    let now_secs = cur.map_or(60, |t| t.value.as_secs());
    let term = pool
        .map(|p| p.terminate_timeout.as_secs())
        .filter(|s| *s > 0);
    let want = term.map_or((now_secs * 2).max(60), |t| t.max(now_secs * 2));
    let mut s = match (cur, &hidden) {
        (Some(t), _) => format!(
            "fastcgi_read_timeout {want}s; at {} (now {now_secs}s), above the slowest script",
            t.at
        ),
        (None, Some(files)) => format!(
            "fastcgi_read_timeout above the slowest script, where it is set: probably {files}{}",
            pass.map(|p| format!(", or in the location at {}", p.at))
                .unwrap_or_default()
        ),
        (None, None) => format!(
            "fastcgi_read_timeout {want}s;{} (now {now_secs}s, the default), above the slowest script",
            pass.map(|p| format!(" in the location at {}", p.at))
                .unwrap_or_default()
        ),
    };
    if let Some(p) = pool {
        s.push_str(&format!(
            ", and request_terminate_timeout = {want}s in {} so FPM stops what nginx gave up on",
            p.file.display()
        ));
    }
    s
}

pub(super) fn header_fix(pass: Option<&Pass>) -> String {
    let cur = pass.and_then(|p| p.buffer_size.as_ref());
    let now = cur.map_or(4096, |b| b.value);
    let want = (now * 4).max(32 * 1024);
    if cur.is_none()
        && let Some(files) = unread(pass)
    {
        return format!(
            "fastcgi_buffer_size {}k; and fastcgi_buffers 16 {}k; where they are set: probably {files}{} (their value there is unknown)",
            want / 1024,
            want / 1024,
            pass.map(|p| format!(", or in the location at {}", p.at))
                .unwrap_or_default()
        );
    }
    let at = cur
        .map(|b| b.at.clone())
        .or_else(|| pass.map(|p| p.at.clone()));
    format!(
        "fastcgi_buffer_size {}k;{} (now {}k{}) and fastcgi_buffers 16 {}k;",
        want / 1024,
        at.map(|a| format!(" at {a}")).unwrap_or_default(),
        (now / 1024).max(1),
        if cur.is_none() {
            ", the default on most hosts"
        } else {
            ""
        },
        want / 1024
    )
}

/// `fix the error at FILE:LINE` from PHP's message.
pub(super) fn fatal_fix(samples: &[Evidence]) -> String {
    for e in samples {
        let t = &e.text;
        if let Some(i) = t.find("PHP Fatal error:") {
            let msg = &t[i..];
            // "... in /path/x.php:12" or "... in /path/x.php on line 12"
            if let Some(j) = msg.find(" in /") {
                let rest = &msg[j + 4..];
                let end = rest.find(['\\', '"', ' ']).unwrap_or(rest.len());
                let mut place = rest[..end].to_string();
                if let Some(l) = rest[end..].strip_prefix(" on line ") {
                    let n: String = l.chars().take_while(|c| c.is_ascii_digit()).collect();
                    place = format!("{place}:{n}");
                }
                let what = msg["PHP Fatal error:".len()..j].trim();
                return format!("fix the PHP error at {place}: {what}");
            }
        }
    }
    "fix the PHP errors quoted in the evidence (FastCGI stderr)".to_string()
}
