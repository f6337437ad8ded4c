//! What can be known about a config before php-fpm runs it, without binding anything: two
//! pools on one address, a unix socket path longer than the kernel allows, a socket or pid
//! file directory that does not exist. `check`, `start`, `restart` and the lifecycle refuse
//! a config with such a problem before touching FPM.

use super::FpmConfig;
use crate::listen::{ListenAddr, TcpHost};

/// Problems (fail the check) and warnings (do not) found without running FPM: two pools on
/// one address, a unix socket path longer than the kernel allows, a missing socket or pid
/// file directory.
pub fn static_checks(cfg: &FpmConfig) -> (Vec<String>, Vec<String>) {
    let mut problems = Vec::new();
    let mut warnings = Vec::new();
    let addrs: Vec<(&str, &ListenAddr, String)> = cfg
        .pools
        .iter()
        .flat_map(|p| {
            let mut v = vec![(
                p.name.as_str(),
                &p.listen,
                format!("{} listen", p.listen_at),
            )];
            if let Some(s) = &p.status_listen {
                v.push((
                    p.name.as_str(),
                    s,
                    format!("{} pm.status_listen", p.defined_at),
                ));
            }
            v
        })
        .collect();
    for (i, (pa, a, wa)) in addrs.iter().enumerate() {
        for (pb, b, wb) in &addrs[i + 1..] {
            if same_address(a, b) {
                problems.push(format!(
                    "pools {pa} ({wa}) and {pb} ({wb}) both listen on {a}; the second bind fails"
                ));
            }
        }
        if let ListenAddr::Unix(path) = a
            && path.as_os_str().len() > crate::listen::SUN_PATH_MAX
        {
            problems.push(format!(
                "pool {pa} ({wa}): the socket path {} is {} bytes, longer than the kernel's limit of {} (FPM would bind a truncated path)",
                path.display(),
                path.as_os_str().len(),
                crate::listen::SUN_PATH_MAX
            ));
        }
        if let ListenAddr::Unix(path) = a
            && let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
            && !dir.is_dir()
        {
            problems.push(format!(
                "pool {pa} ({wa}): socket directory {} does not exist",
                dir.display()
            ));
        }
    }
    if let Some(pid) = &cfg.global.pid_file
        && let Some(dir) = pid.parent().filter(|d| !d.as_os_str().is_empty())
        && !dir.is_dir()
    {
        problems.push(format!(
            "pid file directory {} does not exist ({})",
            dir.display(),
            cfg.path.display()
        ));
    }
    if cfg.global.process_control_timeout.is_zero() {
        warnings.push(
            "process_control_timeout = 0: a graceful stop or reload cannot wait for requests in flight (FPM escalates at once); set it, e.g. 10s".to_string(),
        );
    }
    (problems, warnings)
}

fn same_address(a: &ListenAddr, b: &ListenAddr) -> bool {
    match (a, b) {
        (ListenAddr::Unix(x), ListenAddr::Unix(y)) => x == y,
        (ListenAddr::Tcp { port: pa, host: ha }, ListenAddr::Tcp { port: pb, host: hb }) => {
            let wild = |h: &TcpHost| match h {
                TcpHost::Any => true,
                TcpHost::Ip(ip) => ip.is_unspecified(),
                TcpHost::Name(_) => false,
            };
            pa == pb && (ha == hb || wild(ha) || wild(hb))
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_and_equal_addresses_collide() {
        let p = |s: &str| ListenAddr::parse(s).unwrap();
        assert!(same_address(&p("9000"), &p("127.0.0.1:9000")));
        assert!(same_address(&p("[::]:9000"), &p("127.0.0.1:9000")));
        assert!(same_address(&p("/tmp/a.sock"), &p("/tmp/a.sock")));
        assert!(!same_address(&p("127.0.0.1:9000"), &p("127.0.0.2:9000")));
        assert!(!same_address(&p("/tmp/a.sock"), &p("/tmp/b.sock")));
        assert!(!same_address(&p("9000"), &p("9001")));
    }

    #[test]
    fn a_socket_path_past_the_kernel_limit_is_a_problem_naming_the_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("php-fpm.conf");
        let sock = |len: usize| {
            let name = "s".repeat(len - dir.path().as_os_str().len() - 1);
            dir.path().join(name)
        };
        for (len, bad) in [(107, false), (108, true)] {
            std::fs::write(
                &path,
                format!(
                    "[www]\nlisten = {}\npm = static\npm.max_children = 1\n",
                    sock(len).display()
                ),
            )
            .unwrap();
            let cfg = crate::config::load(&path).unwrap();
            let (problems, _) = static_checks(&cfg);
            assert_eq!(problems.len(), usize::from(bad), "{problems:?}");
            if bad {
                // The line of the `listen` directive.
                assert!(problems[0].contains(&format!("{}:2 listen", path.display())));
                assert!(problems[0].contains("108 bytes"), "{problems:?}");
            }
        }
    }
}
