//! What the doctor needs to know from nginx's configuration: the user its workers run as,
//! its log files, its `upstream` blocks, and every `fastcgi_pass`/`proxy_pass` with the
//! settings in force at that place (`fastcgi_read_timeout`, `fastcgi_buffer_size`, ...,
//! inherited from enclosing blocks as nginx does).

use super::nginx_conf::{Directive, NginxConf, walk};
use crate::listen::ListenAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A value and where it was set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct At<T> {
    /// The value.
    pub value: T,
    /// `file:line`.
    pub at: String,
}

/// Where a pass directive sends requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A literal address.
    Addr(ListenAddr),
    /// An `upstream` block's servers (those with a literal address).
    Upstream(String, Vec<ListenAddr>),
    /// A name that is neither an address nor an upstream block (nginx resolves it by DNS).
    Host(String),
    /// An address built from variables: not checkable without a request.
    Variable(String),
}

/// The protocol a pass directive speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// `fastcgi_pass`.
    FastCgi,
    /// `proxy_pass`.
    Http,
}

/// One `fastcgi_pass` or `proxy_pass` and the settings in force where it stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pass {
    /// Which directive.
    pub protocol: Protocol,
    /// Its argument as written.
    pub raw: String,
    /// Where it sends requests.
    pub target: Target,
    /// `file:line` of the directive.
    pub at: String,
    /// The enclosing `location`'s arguments (empty outside one).
    pub location: String,
    /// `fastcgi_read_timeout` (nginx default 60s).
    pub read_timeout: Option<At<Duration>>,
    /// `fastcgi_buffer_size` in bytes (nginx default: one memory page, 4k or 8k).
    pub buffer_size: Option<At<u64>>,
    /// `fastcgi_param SCRIPT_FILENAME`.
    pub script_filename: Option<At<String>>,
    /// `root`.
    pub root: Option<At<String>>,
    /// Includes in scope that could not be read (the file, and where it was included): a
    /// setting above that is unset here may be set there.
    pub unread_includes: Vec<At<String>>,
}

/// The facts of one nginx configuration.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NginxFacts {
    /// The main file.
    pub main: PathBuf,
    /// `user` (nginx runs workers as `nobody` when it is absent and it starts as root).
    pub user: Option<At<String>>,
    /// `error_log` files (not `stderr`, `syslog:` or `memory:`).
    pub error_logs: Vec<PathBuf>,
    /// `access_log` files (not `off` or `syslog:`).
    pub access_logs: Vec<PathBuf>,
    /// Every pass directive.
    pub passes: Vec<Pass>,
    /// Notes from reading (missing includes, syntax).
    pub notes: Vec<String>,
}

impl NginxFacts {
    /// The user nginx's workers run as.
    pub fn worker_user(&self) -> &str {
        self.user.as_ref().map_or("nobody", |u| u.value.as_str())
    }
}

/// Parses an nginx size (`4k`, `16K`, `1m`, `512`).
pub fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let (num, mult) = match s.as_bytes().last()? {
        b'k' | b'K' => (&s[..s.len() - 1], 1024),
        b'm' | b'M' => (&s[..s.len() - 1], 1024 * 1024),
        b'g' | b'G' => (&s[..s.len() - 1], 1024 * 1024 * 1024),
        _ => (s, 1),
    };
    num.parse::<u64>().ok()?.checked_mul(mult)
}

/// Parses an nginx time (`60s`, `5m`, `1h 30m`, `300` meaning seconds, `500ms`).
pub fn parse_time(s: &str) -> Option<Duration> {
    let s = s.trim();
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        return s.parse::<u64>().ok().map(Duration::from_secs);
    }
    humantime::parse_duration(s).ok()
}

/// Parses the address of a `fastcgi_pass`/`proxy_pass`/`server` argument.
pub fn parse_target(raw: &str, upstreams: &[(String, Vec<ListenAddr>)]) -> Target {
    if raw.contains('$') {
        return Target::Variable(raw.to_string());
    }
    let mut s = raw;
    for scheme in ["http://", "https://", "fastcgi://"] {
        if let Some(r) = s.strip_prefix(scheme) {
            s = r;
        }
    }
    if let Some(path) = s.strip_prefix("unix:") {
        // proxy_pass http://unix:/path:/uri; ends the path at the next ':'.
        let path = path.split(':').next().unwrap_or(path);
        return Target::Addr(ListenAddr::Unix(PathBuf::from(path)));
    }
    let hostport = s.split('/').next().unwrap_or(s);
    if let Some((_, servers)) = upstreams.iter().find(|(n, _)| n == hostport) {
        return Target::Upstream(hostport.to_string(), servers.clone());
    }
    if hostport.contains(':') {
        if let Ok(a) = ListenAddr::parse(hostport) {
            return Target::Addr(a);
        }
    } else if let Ok(a) = ListenAddr::parse(&format!("{hostport}:80")) {
        // nginx's default port for a bare host; only an address when the host is an IP.
        if matches!(
            &a,
            ListenAddr::Tcp {
                host: crate::listen::TcpHost::Ip(_),
                ..
            }
        ) {
            return Target::Addr(a);
        }
    }
    Target::Host(hostport.to_string())
}

fn at(d: &Directive) -> String {
    d.at()
}

fn resolve_path(prefix: &Path, p: &str) -> PathBuf {
    if Path::new(p).is_absolute() {
        PathBuf::from(p)
    } else {
        prefix.join(p)
    }
}

/// How well a `location` (its arguments joined by a space) matches a request path, the
/// way nginx picks one: `Exact` beats everything, then the longest prefix if it is `^~`,
/// then the first matching regex, then the longest prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LocationMatch {
    /// `location = /path`.
    Exact,
    /// A prefix of this length; `true` for `^~`.
    Prefix(usize, bool),
    /// `~` or `~*`.
    Regex,
}

/// Whether `location` matches `path`; `None` when it does not (or its regex is not one
/// Rust's regex engine accepts).
pub fn location_match(location: &str, path: &str) -> Option<LocationMatch> {
    let (modifier, pattern) = match location.split_once(' ') {
        Some((m @ ("=" | "~" | "~*" | "^~"), p)) => (m, p),
        _ => ("", location),
    };
    match modifier {
        "=" => (path == pattern).then_some(LocationMatch::Exact),
        "~" | "~*" => {
            let re = regex::RegexBuilder::new(pattern)
                .case_insensitive(modifier == "~*")
                .size_limit(1 << 20)
                .build()
                .ok()?;
            re.is_match(path).then_some(LocationMatch::Regex)
        }
        m => path
            .starts_with(pattern)
            .then_some(LocationMatch::Prefix(pattern.len(), m == "^~")),
    }
}

/// The pass among `passes` that serves `path`, as nginx chooses its location; the first
/// one when no location matches or no path is known.
pub fn pass_for_path<'a>(passes: &[&'a Pass], path: Option<&str>) -> Option<&'a Pass> {
    let Some(path) = path else {
        return passes.first().copied();
    };
    let matches: Vec<(&Pass, LocationMatch)> = passes
        .iter()
        .filter_map(|p| location_match(&p.location, path).map(|m| (*p, m)))
        .collect();
    if let Some((p, _)) = matches.iter().find(|(_, m)| *m == LocationMatch::Exact) {
        return Some(p);
    }
    let longest = matches
        .iter()
        .filter_map(|(p, m)| match m {
            LocationMatch::Prefix(n, stop) => Some((*n, *stop, *p)),
            _ => None,
        })
        .max_by_key(|(n, _, _)| *n);
    if let Some((_, true, p)) = longest {
        return Some(p);
    }
    if let Some((p, _)) = matches.iter().find(|(_, m)| *m == LocationMatch::Regex) {
        return Some(p);
    }
    longest
        .map(|(_, _, p)| p)
        .or_else(|| passes.first().copied())
}

/// Extracts the facts from a read configuration. Relative log paths resolve against
/// `prefix` (nginx's `-p`, by default its compiled-in prefix).
pub fn facts(conf: &NginxConf, prefix: &Path) -> NginxFacts {
    let mut f = NginxFacts {
        main: conf.main.clone(),
        notes: conf.notes.clone(),
        ..NginxFacts::default()
    };
    // Upstream blocks first: passes may name them before they are defined.
    let mut upstreams: Vec<(String, Vec<ListenAddr>)> = Vec::new();
    walk(&conf.directives, |_, d| {
        if d.name == "upstream"
            && let (Some(name), Some(children)) = (d.args.first(), &d.block)
        {
            let servers = children
                .iter()
                .filter(|c| c.name == "server")
                .filter_map(|c| c.args.first())
                .filter_map(|a| match parse_target(a, &[]) {
                    Target::Addr(addr) => Some(addr),
                    _ => None,
                })
                .collect();
            upstreams.push((name.clone(), servers));
        }
    });
    walk(&conf.directives, |stack, d| {
        let first = || d.args.first().cloned().unwrap_or_default();
        match d.name.as_str() {
            "user" if stack.is_empty() => {
                f.user = Some(At {
                    value: first(),
                    at: at(d),
                });
            }
            "error_log" => {
                let v = first();
                if !(v == "stderr" || v.starts_with("syslog:") || v.starts_with("memory:")) {
                    f.error_logs.push(resolve_path(prefix, &v));
                }
            }
            "access_log" => {
                let v = first();
                if !(v == "off" || v.starts_with("syslog:") || v.contains('$')) {
                    f.access_logs.push(resolve_path(prefix, &v));
                }
            }
            "fastcgi_pass" | "proxy_pass" => {
                let raw = first();
                let protocol = if d.name == "fastcgi_pass" {
                    Protocol::FastCgi
                } else {
                    Protocol::Http
                };
                let location = stack
                    .iter()
                    .rev()
                    .find(|b| b.name == "location")
                    .map(|b| b.args.join(" "))
                    .unwrap_or_default();
                f.passes.push(Pass {
                    protocol,
                    target: parse_target(&raw, &upstreams),
                    raw,
                    at: at(d),
                    location,
                    read_timeout: inherited(stack, d, "fastcgi_read_timeout", |a| {
                        a.first().and_then(|v| parse_time(v))
                    }),
                    buffer_size: inherited(stack, d, "fastcgi_buffer_size", |a| {
                        a.first().and_then(|v| parse_size(v))
                    }),
                    script_filename: inherited(stack, d, "fastcgi_param", |a| {
                        (a.first().map(String::as_str) == Some("SCRIPT_FILENAME"))
                            .then(|| a.get(1).cloned())
                            .flatten()
                    }),
                    root: inherited(stack, d, "root", |a| a.first().cloned()),
                    unread_includes: stack
                        .iter()
                        .filter_map(|b| b.block.as_ref())
                        .flatten()
                        .filter(|c| c.name == super::nginx_conf::UNREAD_INCLUDE)
                        .map(|c| At {
                            value: c.args.first().cloned().unwrap_or_default(),
                            at: c.at(),
                        })
                        .collect(),
                });
            }
            _ => {}
        }
    });
    f.error_logs.dedup();
    f.access_logs.sort();
    f.access_logs.dedup();
    f
}

/// The innermost setting of `name` in force at `d`: among `d`'s siblings, then in each
/// enclosing block outwards.
fn inherited<T>(
    stack: &[&Directive],
    d: &Directive,
    name: &str,
    value: impl Fn(&[String]) -> Option<T>,
) -> Option<At<T>> {
    for block in stack.iter().rev() {
        let Some(children) = &block.block else {
            continue;
        };
        // Only the block that holds `d` (or holds a block holding it) counts; siblings of
        // an enclosing block apply to everything inside it, as nginx merges them.
        let found = children
            .iter()
            .filter(|c| c.name == name && c.block.is_none())
            .filter_map(|c| value(&c.args).map(|v| (v, c.at())))
            .last();
        if let Some((value, at)) = found {
            return Some(At { value, at });
        }
    }
    let _ = d;
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::doctor::nginx_conf::{NginxConf, parse_text};

    fn facts_of(text: &str) -> NginxFacts {
        let (directives, notes) = parse_text(Path::new("/etc/nginx/nginx.conf"), text);
        let conf = NginxConf {
            main: PathBuf::from("/etc/nginx/nginx.conf"),
            directives,
            notes,
        };
        facts(&conf, Path::new("/usr/share/nginx"))
    }

    #[test]
    fn passes_upstreams_variables_and_inherited_settings() {
        let f = facts_of(
            "user www-data;\nerror_log logs/error.log warn;\nhttp {\n  fastcgi_read_timeout 5m;\n  access_log /var/log/nginx/access.log combined;\n  upstream php { server unix:/run/php/a.sock; server 127.0.0.1:9001 weight=2; }\n  server {\n    root /srv/www;\n    location ~ \\.php$ {\n      fastcgi_buffer_size 16k;\n      fastcgi_param SCRIPT_FILENAME $document_root$fastcgi_script_name;\n      fastcgi_pass php;\n    }\n    location /api { fastcgi_read_timeout 10; fastcgi_pass $backend; }\n    location /h { proxy_pass http://127.0.0.1:9000/x; }\n    location /u { fastcgi_pass unix:/run/php/b.sock; }\n  }\n}\n",
        );
        assert_eq!(f.worker_user(), "www-data");
        assert_eq!(
            f.error_logs,
            [PathBuf::from("/usr/share/nginx/logs/error.log")]
        );
        assert_eq!(f.access_logs, [PathBuf::from("/var/log/nginx/access.log")]);
        assert_eq!(f.passes.len(), 4);
        let php = &f.passes[0];
        assert_eq!(php.location, "~ \\.php$");
        assert_eq!(php.at, "/etc/nginx/nginx.conf:12");
        match &php.target {
            Target::Upstream(name, servers) => {
                assert_eq!(name, "php");
                assert_eq!(
                    servers,
                    &[
                        ListenAddr::parse("/run/php/a.sock").unwrap(),
                        ListenAddr::parse("127.0.0.1:9001").unwrap()
                    ]
                );
            }
            t => panic!("{t:?}"),
        }
        assert_eq!(
            php.read_timeout.as_ref().unwrap().value,
            Duration::from_secs(300)
        );
        assert_eq!(php.buffer_size.as_ref().unwrap().value, 16 * 1024);
        assert_eq!(php.root.as_ref().unwrap().value, "/srv/www");
        assert!(php.script_filename.is_some());
        let api = &f.passes[1];
        assert_eq!(api.target, Target::Variable("$backend".into()));
        assert_eq!(
            api.read_timeout.as_ref().unwrap().value,
            Duration::from_secs(10)
        );
        assert_eq!(api.buffer_size, None);
        let h = &f.passes[2];
        assert_eq!(h.protocol, Protocol::Http);
        assert_eq!(
            h.target,
            Target::Addr(ListenAddr::parse("127.0.0.1:9000").unwrap())
        );
        assert_eq!(
            f.passes[3].target,
            Target::Addr(ListenAddr::parse("/run/php/b.sock").unwrap())
        );
    }

    #[test]
    fn no_user_means_nobody_and_odd_logs_are_skipped() {
        let f = facts_of("error_log stderr;\nhttp { access_log off; access_log syslog:server=x; }");
        assert_eq!(f.worker_user(), "nobody");
        assert!(f.error_logs.is_empty() && f.access_logs.is_empty());
    }

    #[test]
    fn picks_the_location_nginx_would() {
        let f = facts_of(
            "http { server {\n location / { fastcgi_pass 127.0.0.1:1; }\n location /api/ { fastcgi_pass 127.0.0.1:1; }\n location ~ \\.php$ { fastcgi_pass 127.0.0.1:1; }\n location ^~ /static/ { fastcgi_pass 127.0.0.1:1; }\n location = /exact { fastcgi_pass 127.0.0.1:1; }\n} }",
        );
        let passes: Vec<&Pass> = f.passes.iter().collect();
        let line = |p: Option<&str>| pass_for_path(&passes, p).map(|p| p.at.clone()).unwrap();
        assert_eq!(line(Some("/x")), "/etc/nginx/nginx.conf:2");
        assert_eq!(line(Some("/api/v1")), "/etc/nginx/nginx.conf:3");
        assert_eq!(line(Some("/api/v1.php")), "/etc/nginx/nginx.conf:4");
        assert_eq!(line(Some("/static/a.php")), "/etc/nginx/nginx.conf:5");
        assert_eq!(line(Some("/exact")), "/etc/nginx/nginx.conf:6");
        assert_eq!(line(None), "/etc/nginx/nginx.conf:2");
        assert_eq!(
            location_match("~* \\.PHP$", "/a.php"),
            Some(LocationMatch::Regex)
        );
        assert_eq!(location_match("~ (", "/a"), None);
    }

    #[test]
    fn a_pass_knows_the_includes_in_scope_that_could_not_be_read() {
        let dir = tempfile::tempdir().unwrap();
        let main = dir.path().join("nginx.conf");
        std::fs::write(
            &main,
            "http {\n  include gone-http.conf;\n  server {\n    location / {\n      fastcgi_pass 127.0.0.1:9000;\n      include gone.conf;\n    }\n  }\n  server { location / { fastcgi_pass 127.0.0.1:9001; } }\n}\n",
        )
        .unwrap();
        let conf =
            crate::doctor::nginx_conf::read(&main, &crate::doctor::nginx_conf::Source::Files)
                .unwrap();
        let f = facts(&conf, dir.path());
        let files = |i: usize| -> Vec<String> {
            f.passes[i]
                .unread_includes
                .iter()
                .map(|u| u.value.clone())
                .collect()
        };
        let d = dir.path().display();
        assert_eq!(
            files(0),
            [format!("{d}/gone-http.conf"), format!("{d}/gone.conf")]
        );
        assert_eq!(files(1), [format!("{d}/gone-http.conf")]);
        assert_eq!(
            f.passes[0].unread_includes[1].at,
            format!("{d}/nginx.conf:6")
        );
    }

    #[test]
    fn sizes_times_and_targets() {
        assert_eq!(parse_size("4k"), Some(4096));
        assert_eq!(parse_size("1M"), Some(1 << 20));
        assert_eq!(parse_size("x"), None);
        assert_eq!(parse_time("300"), Some(Duration::from_secs(300)));
        assert_eq!(parse_time("1m"), Some(Duration::from_secs(60)));
        assert_eq!(
            parse_target("backend.local:9000/x", &[]),
            Target::Addr(ListenAddr::parse("backend.local:9000").unwrap())
        );
        assert_eq!(parse_target("backend", &[]), Target::Host("backend".into()));
        assert_eq!(
            parse_target("http://unix:/run/a.sock:/uri", &[]),
            Target::Addr(ListenAddr::Unix("/run/a.sock".into()))
        );
        assert_eq!(
            parse_target("http://127.0.0.1", &[]),
            Target::Addr(ListenAddr::parse("127.0.0.1:80").unwrap())
        );
    }
}
