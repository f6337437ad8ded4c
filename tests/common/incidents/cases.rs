//! The incident cases: one function per case of [`super::CASES`], each provoking its
//! incident with real requests and saying what doctor must find.

use super::super::load;
use super::{CAUSES, Expected, Incident, NGINX_USER, REQUEST_LIMIT};
use std::time::Duration;

// ---------------------------------------------------------------------------------------
// Config pieces

/// The Debian pool's process manager settings.
const PM_DEBIAN: &str = "pm = dynamic\npm.max_children = 5\npm.start_servers = 2\n\
                         pm.min_spare_servers = 1\npm.max_spare_servers = 3\n";

/// A pool `[www]` on the Debian socket path, owned by www-data, with `extra` lines.
fn www_pool(d: &str, pm: &str, extra: &str) -> String {
    format!(
        "[www]\nuser = www-data\ngroup = www-data\n\nlisten = {d}/run/php8.2-fpm.sock\n\
         listen.owner = www-data\nlisten.group = www-data\nlisten.mode = 0660\n\n{pm}{extra}"
    )
}

/// A pool `[www]` on a loopback TCP address.
fn tcp_pool(addr: &str, pm: &str, extra: &str) -> String {
    format!(
        "[www]\nuser = www-data\ngroup = www-data\n\nlisten = {addr}\n\
         listen.allowed_clients = 127.0.0.1\n\n{pm}{extra}"
    )
}

/// nginx's main config: `http_inner` goes inside `http {}` after the common lines.
fn nginx_main(d: &str, http_inner: &str) -> String {
    format!(
        "user {NGINX_USER};\nworker_processes 1;\ndaemon off;\npid {d}/nginx/nginx.pid;\n\
         error_log {d}/nginx/error.log;\n\n\
         events {{\n    worker_connections 512;\n}}\n\n\
         http {{\n    access_log {d}/nginx/access.log;\n\
         \x20   client_body_temp_path {d}/nginx/client_body;\n\
         \x20   proxy_temp_path {d}/nginx/proxy;\n\
         \x20   fastcgi_temp_path {d}/nginx/fastcgi;\n\
         \x20   uwsgi_temp_path {d}/nginx/uwsgi;\n\
         \x20   scgi_temp_path {d}/nginx/scgi;\n\n{http_inner}}}\n"
    )
}

/// A server block listening on `port` with document root `root` and `body` inside.
fn server(port: u16, root: &str, body: &str) -> String {
    format!(
        "    server {{\n        listen 127.0.0.1:{port};\n        server_name localhost;\n\
         \x20       root {root};\n        index index.php;\n\n{body}    }}\n"
    )
}

/// The usual PHP location: every `.php` to `pass` (a `fastcgi_pass` address), `extra` lines
/// inside.
fn php_location(pass: &str, extra: &str) -> String {
    format!(
        "        location ~ \\.php$ {{\n            include fastcgi_params;\n\
         \x20           fastcgi_param SCRIPT_FILENAME $document_root$fastcgi_script_name;\n\
         \x20           fastcgi_pass {pass};\n{extra}        }}\n"
    )
}

/// A whole nginx config with one server whose `.php` go to `pass`.
fn nginx_simple(d: &str, port: u16, pass: &str, extra: &str) -> String {
    nginx_main(
        d,
        &server(port, &format!("{d}/www"), &php_location(pass, extra)),
    )
}

// ---------------------------------------------------------------------------------------
// The cases

fn sock_pass(d: &str) -> String {
    format!("unix:{d}/run/php8.2-fpm.sock")
}

/// A Debian-like site with normal traffic: nothing to find.
pub(super) fn healthy() -> Incident {
    let mut inc = Incident::new("healthy");
    let d = inc.d();
    inc.pool("www.conf", &www_pool(&d, PM_DEBIAN, ""));
    inc.start_fpm(2);
    inc.start_nginx(|d, port| nginx_simple(d, port, &sock_pass(d), ""));
    inc.expect_status("/hello.php", 20, 200);
    inc.expect_status("/slow.php?s=1", 1, 200);
    let all = inc.burst("/hello.php", 5);
    assert!(all.iter().all(|r| matches!(r, Ok((200, _)))), "{all:?}");
    inc.how = "FPM on the Debian socket, nginx as www-data; 26 requests, all answered 200.".into();
    inc.expected = Expected {
        first_cause: None,
        causes: vec![],
        not_causes: CAUSES.iter().map(|s| s.to_string()).collect(),
        fix_contains: None,
        notes_contain: vec![],
        counts: Default::default(),
        mentions: vec![],
        lints: vec![],
    };
    inc
}

pub(super) fn fpm_not_running() -> Incident {
    let mut inc = Incident::new("fpm-not-running");
    let d = inc.d();
    inc.pool("www.conf", &www_pool(&d, PM_DEBIAN, ""));
    let master = inc.start_fpm(2);
    inc.start_nginx(|d, port| nginx_simple(d, port, &sock_pass(d), ""));
    inc.expect_status("/hello.php", 5, 200);
    // Stopped as `systemctl stop` would (graceful); FPM removes its socket on exit.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(master),
        nix::sys::signal::SIGQUIT,
    )
    .unwrap();
    inc.sb.wait_for(Duration::from_secs(10), "FPM to exit", || {
        (!super::super::alive(master)).then_some(())
    });
    inc.expect_status("/hello.php", 10, 502);
    inc.wait_nginx("(2: No such file or directory)");
    inc.how = "Served 5 requests, then FPM was stopped (SIGQUIT to the master: it exits and \
               removes its socket); 10 more requests got 502, nginx logs `connect() ... \
               (2: No such file or directory)`."
        .into();
    inc.expected = Expected::cause(
        "fpm-not-running",
        &[],
        &["listen-mismatch", "socket-permission", "fpm-bind-failed"],
        "start",
    )
    .count("fpm-not-running", 10);
    inc
}

pub(super) fn socket_permission() -> Incident {
    let mut inc = Incident::new("socket-permission");
    let d = inc.d();
    // The socket's owner is not nginx's user.
    let pool = www_pool(&d, PM_DEBIAN, "").replace(
        "listen.owner = www-data\nlisten.group = www-data",
        "listen.owner = nobody\nlisten.group = nogroup",
    );
    inc.pool("www.conf", &pool);
    inc.start_fpm(2);
    inc.start_nginx(|d, port| nginx_simple(d, port, &sock_pass(d), ""));
    inc.expect_status("/hello.php", 10, 502);
    inc.wait_nginx("(13: Permission denied)");
    inc.how = "The pool's socket has `listen.owner = nobody`, `listen.group = nogroup`, \
               `listen.mode = 0660` while nginx's workers run as www-data: 10 requests, \
               all 502 with `connect() ... (13: Permission denied)`."
        .into();
    inc.expected = Expected::cause(
        "socket-permission",
        &[],
        &["fpm-not-running", "listen-mismatch"],
        "listen.owner = www-data",
    )
    .count("socket-permission", 10);
    inc
}

pub(super) fn listen_mismatch() -> Incident {
    let mut inc = Incident::new("listen-mismatch");
    let d = inc.d();
    inc.pool("www.conf", &www_pool(&d, PM_DEBIAN, ""));
    inc.start_fpm(2);
    // The site still points at the old PHP version's socket after an upgrade.
    inc.start_nginx(|d, port| nginx_simple(d, port, &format!("unix:{d}/run/php8.1-fpm.sock"), ""));
    inc.expect_status("/hello.php", 10, 502);
    inc.wait_nginx("(2: No such file or directory)");
    inc.how = "FPM listens on run/php8.2-fpm.sock, nginx's `fastcgi_pass` still names \
               run/php8.1-fpm.sock (a PHP upgrade): 10 requests, all 502 with `connect() ... \
               (2: No such file or directory)` while FPM runs."
        .into();
    inc.expected = Expected::cause(
        "listen-mismatch",
        &[],
        &["fpm-not-running", "socket-permission"],
        "php8.2-fpm.sock",
    )
    .count("listen-mismatch", 10);
    inc
}

pub(super) fn backlog_full() -> Incident {
    let mut inc = Incident::new("backlog-full");
    let d = inc.d();
    let pm = "pm = static\npm.max_children = 1\n";
    inc.pool("www.conf", &www_pool(&d, pm, "listen.backlog = 1\n"));
    inc.start_fpm(1);
    inc.start_nginx(|d, port| nginx_simple(d, port, &sock_pass(d), ""));
    inc.expect_status("/hello.php", 3, 200);
    // The only worker is busy with a slow request; a burst overflows the accept queue,
    // and nginx's non-blocking connect() gets EAGAIN. Repeat (bounded) until it did.
    let mut failed = 0;
    for _ in 0..5 {
        let addr = inc.addr();
        let occupant = std::thread::spawn(move || load::get(addr, "/slow.php?s=2", REQUEST_LIMIT));
        std::thread::sleep(Duration::from_millis(300));
        failed += inc
            .burst("/hello.php", 12)
            .iter()
            .filter(|r| matches!(r, Ok((502, _))))
            .count();
        let _ = occupant.join();
        if inc
            .nginx_error_log()
            .contains("(11: Resource temporarily unavailable)")
        {
            break;
        }
    }
    assert!(failed > 0, "no request failed\n{}", inc.logs());
    inc.wait_nginx("(11: Resource temporarily unavailable)");
    inc.how = "`pm = static` with one child and `listen.backlog = 1`: while a 2-second \
               request keeps the only worker busy, a burst of 12 requests overflows the \
               socket's accept queue; nginx logs `connect() ... (11: Resource temporarily \
               unavailable)` and answers 502."
        .into();
    inc.expected = Expected::cause(
        "backlog-full",
        &[],
        &[
            "fpm-not-running",
            "socket-permission",
            "listen-mismatch",
            "max-children-reached",
        ],
        "listen.backlog",
    )
    .count("backlog-full", failed as u64);
    inc
}

pub(super) fn max_children_reached() -> Incident {
    let mut inc = Incident::new("max-children-reached");
    let d = inc.d();
    let pm = "pm = dynamic\npm.max_children = 2\npm.start_servers = 1\n\
              pm.min_spare_servers = 1\npm.max_spare_servers = 1\n";
    inc.pool("www.conf", &www_pool(&d, pm, ""));
    inc.start_fpm(1);
    inc.start_nginx(|d, port| nginx_simple(d, port, &sock_pass(d), ""));
    inc.expect_status("/hello.php", 3, 200);
    // Slow requests at once: FPM's once-a-second maintenance forks up to the limit, then
    // warns; the rest only queue (nginx sees nothing wrong).
    for _ in 0..3 {
        let all = inc.burst("/slow.php?s=2", 4);
        assert!(
            all.iter().all(|r| matches!(r, Ok((200, _)))),
            "{all:?}\n{}",
            inc.logs()
        );
        if inc.sb.error_log().contains("reached pm.max_children") {
            break;
        }
    }
    inc.wait_log("fpm.log", "server reached pm.max_children setting");
    inc.how = "`pm = dynamic` with `pm.max_children = 2` and 4 concurrent 2-second requests: \
               FPM logs `server reached pm.max_children setting (2)`; the requests queue and \
               are all answered 200, so nginx's error log stays empty."
        .into();
    inc.expected = Expected::cause(
        "max-children-reached",
        &[],
        &["backlog-full", "upstream-timeout", "fpm-not-running"],
        "pm.max_children",
    );
    inc
}

pub(super) fn worker_terminated() -> Incident {
    let mut inc = Incident::new("worker-terminated");
    let d = inc.d();
    inc.pool(
        "www.conf",
        &www_pool(&d, PM_DEBIAN, "request_terminate_timeout = 1s\n"),
    );
    inc.start_fpm(2);
    inc.start_nginx(|d, port| nginx_simple(d, port, &sock_pass(d), ""));
    inc.expect_status("/hello.php", 3, 200);
    let all = inc.burst("/slow.php?s=5", 2);
    assert!(
        all.iter().all(|r| matches!(r, Ok((502, _)))),
        "{all:?}\n{}",
        inc.logs()
    );
    inc.wait_log("fpm.log", "execution timed out");
    inc.wait_log("fpm.log", "exited on signal 15");
    inc.how = "`request_terminate_timeout = 1s` and two 5-second requests: FPM logs \
               `execution timed out ... terminating` and kills the workers (SIGTERM); nginx \
               answers 502."
        .into();
    inc.expected = Expected::cause(
        "worker-terminated",
        &[],
        &[
            "worker-crashed",
            "upstream-timeout",
            "protocol-mismatch",
            "fpm-not-running",
        ],
        "request_terminate_timeout",
    )
    .count("worker-terminated", 2);
    inc
}

pub(super) fn worker_crashed() -> Incident {
    let mut inc = Incident::new("worker-crashed");
    let d = inc.d();
    inc.pool("www.conf", &www_pool(&d, PM_DEBIAN, ""));
    inc.start_fpm(2);
    inc.start_nginx(|d, port| nginx_simple(d, port, &sock_pass(d), ""));
    inc.expect_status("/hello.php", 5, 200);
    inc.expect_status("/crash.php", 3, 502);
    inc.wait_log("fpm.log", "exited on signal 11");
    inc.how = "crash.php sends its own worker SIGSEGV (`posix_kill(getmypid(), 11)`), as a \
               crashing extension would: 3 requests, all 502; FPM logs `exited on signal 11 \
               (SIGSEGV)`."
        .into();
    inc.expected = Expected::cause(
        "worker-crashed",
        &[],
        &[
            "worker-terminated",
            "protocol-mismatch",
            "upstream-timeout",
            "fpm-not-running",
        ],
        "rlimit_core",
    )
    .count("worker-crashed", 3);
    inc
}

pub(super) fn upstream_timeout() -> Incident {
    let mut inc = Incident::new("upstream-timeout");
    let d = inc.d();
    inc.pool("www.conf", &www_pool(&d, PM_DEBIAN, ""));
    inc.start_fpm(2);
    inc.start_nginx(|d, port| {
        nginx_simple(
            d,
            port,
            &sock_pass(d),
            "            fastcgi_read_timeout 1s;\n",
        )
    });
    inc.expect_status("/hello.php", 3, 200);
    let all = inc.burst("/slow.php?s=3", 2);
    assert!(
        all.iter().all(|r| matches!(r, Ok((504, _)))),
        "{all:?}\n{}",
        inc.logs()
    );
    inc.wait_nginx("upstream timed out");
    inc.how = "nginx's `fastcgi_read_timeout 1s` and two 3-second requests: 504, nginx logs \
               `upstream timed out (110: Connection timed out)`."
        .into();
    inc.expected = Expected::cause(
        "upstream-timeout",
        &[],
        &["worker-terminated", "worker-crashed", "fpm-not-running"],
        "fastcgi_read_timeout",
    )
    .count("upstream-timeout", 2);
    inc
}

pub(super) fn protocol_mismatch() -> Incident {
    let mut inc = Incident::new("protocol-mismatch");
    let addr = inc.sb.tcp_addr();
    inc.pool("www.conf", &tcp_pool(&addr, PM_DEBIAN, ""));
    inc.start_fpm(2);
    // HTTP spoken to FPM's FastCGI port.
    inc.start_nginx(|d, port| {
        let loc = format!(
            "        location ~ \\.php$ {{\n            proxy_pass http://{addr};\n        }}\n"
        );
        nginx_main(d, &server(port, &format!("{d}/www"), &loc))
    });
    inc.expect_status("/hello.php", 5, 502);
    inc.how = format!(
        "nginx sends `.php` with `proxy_pass http://{addr}` (HTTP) to the pool's FastCGI \
         port: 5 requests, all 502."
    )
    .replace(&inc.sb.port.to_string(), "PORT");
    inc.expected = Expected::cause(
        "protocol-mismatch",
        &[],
        &[
            "worker-terminated",
            "worker-crashed",
            "fpm-not-running",
            "listen-mismatch",
        ],
        "fastcgi_pass",
    )
    .count("protocol-mismatch", 5);
    inc
}

pub(super) fn protocol_mismatch_fastcgi_to_http() -> Incident {
    let mut inc = Incident::new("protocol-mismatch-fastcgi-to-http");
    let addr = inc.sb.tcp_addr();
    inc.pool("www.conf", &tcp_pool(&addr, PM_DEBIAN, ""));
    inc.start_fpm(2);
    // FastCGI sent to an HTTP server (a second server of the same nginx, on its own port).
    inc.start_nginx(|d, port| {
        let app_port = super::super::free_port();
        let app = format!(
            "    server {{\n        listen 127.0.0.1:{app_port};\n        server_name app;\n\
             \x20       return 200 \"app\\n\";\n    }}\n\n"
        );
        let site = server(
            port,
            &format!("{d}/www"),
            &php_location(&format!("127.0.0.1:{app_port}"), ""),
        );
        nginx_main(d, &format!("{app}{site}"))
    });
    inc.expect_status("/hello.php", 5, 502);
    inc.wait_nginx("upstream sent unsupported FastCGI protocol version");
    inc.how = "nginx's `fastcgi_pass` names a port where an HTTP server answers (not FPM, \
               which listens on another port): 5 requests, all 502, nginx logs `upstream sent \
               unsupported FastCGI protocol version: 72`."
        .into();
    inc.expected = Expected::cause(
        "protocol-mismatch",
        &[],
        &["worker-terminated", "worker-crashed", "fpm-not-running"],
        "fastcgi_pass",
    )
    .count("protocol-mismatch", 5);
    inc
}

pub(super) fn script_not_found() -> Incident {
    let mut inc = Incident::new("script-not-found");
    let d = inc.d();
    inc.pool("www.conf", &www_pool(&d, PM_DEBIAN, ""));
    inc.start_fpm(2);
    // The scripts are in www/, the site's root names public/.
    inc.start_nginx(|d, port| {
        nginx_main(
            d,
            &server(
                port,
                &format!("{d}/public"),
                &php_location(&sock_pass(d), ""),
            ),
        )
    });
    inc.expect_status("/hello.php", 6, 404);
    inc.wait_nginx("Primary script unknown");
    inc.how = "nginx's `root` names public/ while the scripts are in www/, so \
               SCRIPT_FILENAME ($document_root$fastcgi_script_name) names no file: 6 \
               requests, all 404 `File not found.`, nginx logs `FastCGI sent in stderr: \
               \"Primary script unknown\"`."
        .into();
    inc.expected = Expected::cause(
        "script-not-found",
        &[],
        &["fpm-not-running", "php-fatal", "listen-mismatch"],
        "SCRIPT_FILENAME",
    )
    .count("script-not-found", 6);
    inc
}

pub(super) fn header_too_big() -> Incident {
    let mut inc = Incident::new("header-too-big");
    let d = inc.d();
    inc.pool("www.conf", &www_pool(&d, PM_DEBIAN, ""));
    inc.start_fpm(2);
    inc.start_nginx(|d, port| {
        nginx_simple(
            d,
            port,
            &sock_pass(d),
            "            fastcgi_buffer_size 1k;\n",
        )
    });
    inc.expect_status("/hello.php", 3, 200);
    inc.expect_status("/bigheader.php", 4, 502);
    inc.wait_nginx("upstream sent too big header");
    inc.how = "bigheader.php sends a 4.8 KB response header, nginx has \
               `fastcgi_buffer_size 1k`: 4 requests, all 502, nginx logs `upstream sent too \
               big header`."
        .into();
    inc.expected = Expected::cause(
        "header-too-big",
        &[],
        &["protocol-mismatch", "worker-crashed", "fpm-not-running"],
        "fastcgi_buffer_size",
    )
    .count("header-too-big", 4);
    inc
}

/// Pool lines that make PHP's errors go to FastCGI's stderr (nginx's log), as Debian's
/// php.ini does, whatever the local php.ini says.
const ERRORS_TO_STDERR: &str =
    "php_admin_flag[log_errors] = on\nphp_admin_flag[display_errors] = off\n";

pub(super) fn php_fatal() -> Incident {
    let mut inc = Incident::new("php-fatal");
    let d = inc.d();
    inc.pool("www.conf", &www_pool(&d, PM_DEBIAN, ERRORS_TO_STDERR));
    inc.start_fpm(2);
    inc.start_nginx(|d, port| nginx_simple(d, port, &sock_pass(d), ""));
    inc.expect_status("/hello.php", 3, 200);
    inc.expect_status("/fatal.php", 3, 500);
    inc.wait_nginx("PHP Fatal error");
    inc.how = "fatal.php calls a function that does not exist: 3 requests, all 500, nginx logs \
               `FastCGI sent in stderr: \"PHP message: PHP Fatal error: Uncaught Error: Call \
               to undefined function ...\"`."
        .into();
    inc.expected = Expected::cause(
        "php-fatal",
        &[],
        &["script-not-found", "worker-crashed", "fpm-not-running"],
        "fatal.php",
    )
    .count("php-fatal", 3);
    inc
}

/// A restart killed the master hard; its orphaned workers still hold the port, so
/// the new FPM cannot bind it. Live, the orphans keep holding it; the recording goes on to
/// the end of the seed: the orphans die and nginx finds nothing listening.
pub(super) fn fpm_bind_failed() -> Incident {
    let mut inc = Incident::new("fpm-bind-failed");
    let addr = inc.sb.tcp_addr();
    inc.pool("www.conf", &tcp_pool(&addr, PM_DEBIAN, ""));
    inc.start_fpm(2);
    inc.start_nginx(|d, port| nginx_simple(d, port, &addr, ""));
    inc.expect_status("/hello.php", 5, 200);
    let orphans = inc.sb.kill_master_hard();
    let out = inc.run_fpm();
    assert!(
        !out.status.success(),
        "a second FPM started while orphans hold {addr}\n{}",
        inc.logs()
    );
    inc.wait_log("fpm.log", "unable to bind listening socket");
    inc.holders = orphans;
    inc.after_live = Some(|inc: &mut Incident| {
        for pid in &inc.holders {
            if let Some(p) = fpmctl::procs::read(*pid) {
                let _ = fpmctl::signals::send_verified(p.id, nix::sys::signal::SIGKILL, |_| true);
            }
        }
        inc.sb
            .wait_for(Duration::from_secs(10), "the orphans to die", || {
                inc.holders
                    .iter()
                    .all(|p| !super::super::alive(*p))
                    .then_some(())
            });
        inc.expect_status("/hello.php", 8, 502);
        inc.wait_nginx("(111: Connection refused)");
        inc.expected.counts.insert("fpm-bind-failed".into(), 8);
    });
    inc.how = "A restart that starts FPM before the old workers are gone. FPM on a TCP port served 5 requests; its master was killed with \
               SIGKILL (its workers live on as orphans holding the port) and FPM was started \
               again: its log shows `unable to bind listening socket ... Address already in \
               use (98)`. Then the orphans were killed: 8 requests, all 502 with `connect() \
               failed (111: Connection refused)`. (The live test keeps the orphans alive and \
               expects doctor to name them.)"
        .into();
    inc.expected = Expected::cause(
        "fpm-bind-failed",
        &[],
        &["listen-mismatch", "socket-permission"],
        &addr,
    );
    inc
}

pub(super) fn several_causes() -> Incident {
    let mut inc = Incident::new("several-causes");
    let d = inc.d();
    let addr = inc.sb.tcp_addr();
    let app = format!(
        "[app]\nuser = www-data\ngroup = www-data\n\nlisten = {d}/run/app.sock\n\
         listen.owner = nobody\nlisten.group = nogroup\nlisten.mode = 0660\n\n{PM_DEBIAN}"
    );
    let api = tcp_pool(&addr, PM_DEBIAN, ERRORS_TO_STDERR).replace("[www]", "[api]");
    inc.pool("app.conf", &app);
    inc.pool("api.conf", &api);
    inc.start_fpm(4);
    inc.start_nginx(|d, port| {
        let app_loc = format!(
            "        location ^~ /app/ {{\n            include fastcgi_params;\n\
             \x20           fastcgi_param SCRIPT_FILENAME $document_root/hello.php;\n\
             \x20           fastcgi_pass unix:{d}/run/app.sock;\n        }}\n\n"
        );
        let api_loc = php_location(&addr, "            fastcgi_read_timeout 1s;\n");
        nginx_main(
            d,
            &server(port, &format!("{d}/www"), &format!("{app_loc}{api_loc}")),
        )
    });
    inc.expect_status("/hello.php", 3, 200);
    inc.expect_status("/app/", 8, 502);
    inc.expect_status("/fatal.php", 3, 500);
    let all = inc.burst("/slow.php?s=3", 2);
    assert!(
        all.iter().all(|r| matches!(r, Ok((504, _)))),
        "{all:?}\n{}",
        inc.logs()
    );
    inc.wait_nginx("(13: Permission denied)");
    inc.wait_nginx("PHP Fatal error");
    inc.wait_nginx("upstream timed out");
    inc.how = "Two pools: [app] on a socket owned nobody:nogroup 0660 (nginx runs as \
               www-data), [api] on TCP behind `fastcgi_read_timeout 1s`. 8 requests to /app/ \
               got 502 (13: Permission denied), 3 to fatal.php got 500 (PHP Fatal error), 2 \
               3-second requests got 504 (upstream timed out)."
        .into();
    inc.expected = Expected::cause(
        "socket-permission",
        &["php-fatal", "upstream-timeout"],
        &[
            "fpm-not-running",
            "listen-mismatch",
            "worker-crashed",
            "worker-terminated",
        ],
        "listen.owner = www-data",
    )
    .count("socket-permission", 8)
    .count("php-fatal", 3)
    .count("upstream-timeout", 2);
    inc
}

pub(super) fn missing_includes() -> Incident {
    let mut inc = Incident::new("missing-includes");
    let d = inc.d();
    inc.pool("www.conf", &www_pool(&d, PM_DEBIAN, ""));
    inc.start_fpm(2);
    for sub in ["nginx/conf.d", "nginx/snippets"] {
        std::fs::create_dir_all(inc.sb.path().join(sub)).unwrap();
    }
    std::fs::write(
        inc.sb.path().join("nginx/snippets/php-timeouts.conf"),
        "fastcgi_read_timeout 1s;\n",
    )
    .unwrap();
    inc.start_nginx(|d, port| {
        let loc = php_location(
            &sock_pass(d),
            "            include snippets/php-timeouts.conf;\n",
        );
        std::fs::write(
            format!("{d}/nginx/conf.d/site.conf"),
            server(port, &format!("{d}/www"), &loc),
        )
        .unwrap();
        nginx_main(d, "    include conf.d/*.conf;\n")
    });
    inc.expect_status("/hello.php", 3, 200);
    let all = inc.burst("/slow.php?s=3", 2);
    assert!(
        all.iter().all(|r| matches!(r, Ok((504, _)))),
        "{all:?}\n{}",
        inc.logs()
    );
    inc.wait_nginx("upstream timed out");
    inc.omit = vec!["nginx/snippets/php-timeouts.conf"];
    inc.how = "nginx.conf includes conf.d/*.conf; the site there includes \
               snippets/php-timeouts.conf (`fastcgi_read_timeout 1s`), which the corpus leaves \
               out, as when logs and configs are copied from another host. Two 3-second \
               requests got 504 (upstream timed out)."
        .into();
    inc.expected = Expected::cause(
        "upstream-timeout",
        &[],
        &["worker-terminated", "fpm-not-running"],
        "fastcgi_read_timeout",
    )
    .count("upstream-timeout", 2);
    inc.expected.notes_contain = vec!["php-timeouts.conf".into()];
    // The timeout in force is set in the include: doctor must send the reader there, not
    // report nginx's default as if the site had none.
    inc.expected.mentions = vec!["php-timeouts.conf".into()];
    inc
}

/// Like `fpm_not_running`, on a TCP pool: nginx's connect() is refused.
pub(super) fn fpm_not_running_tcp() -> Incident {
    let mut inc = Incident::new("fpm-not-running-tcp");
    let addr = inc.sb.tcp_addr();
    inc.pool("www.conf", &tcp_pool(&addr, PM_DEBIAN, ""));
    let master = inc.start_fpm(2);
    inc.start_nginx(|d, port| nginx_simple(d, port, &addr, ""));
    inc.expect_status("/hello.php", 5, 200);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(master),
        nix::sys::signal::SIGQUIT,
    )
    .unwrap();
    inc.sb.wait_for(Duration::from_secs(10), "FPM to exit", || {
        (!super::super::alive(master)).then_some(())
    });
    inc.expect_status("/hello.php", 7, 502);
    inc.wait_nginx("(111: Connection refused)");
    inc.how = "FPM on a TCP port served 5 requests, then was stopped (SIGQUIT to the master); \
               7 more requests got 502, nginx logs `connect() failed (111: Connection \
               refused)`."
        .into();
    inc.expected = Expected::cause(
        "fpm-not-running",
        &[],
        &["listen-mismatch", "fpm-bind-failed", "protocol-mismatch"],
        "start",
    )
    .count("fpm-not-running", 7);
    inc
}

/// `pm = ondemand` reaches its limit at accept time, and FPM words the warning differently.
pub(super) fn max_children_reached_ondemand() -> Incident {
    let mut inc = Incident::new("max-children-reached-ondemand");
    let d = inc.d();
    let pm = "pm = ondemand\npm.max_children = 2\npm.process_idle_timeout = 10s\n";
    inc.pool("www.conf", &www_pool(&d, pm, ""));
    inc.start_fpm(0);
    inc.start_nginx(|d, port| nginx_simple(d, port, &sock_pass(d), ""));
    inc.expect_status("/hello.php", 3, 200);
    // The master forks on accept events it re-arms once a second: requests long enough to
    // keep both children busy across a tick make the next accept find the limit reached.
    // Whether a tick finds both children busy is up to the scheduler: try a bounded few times.
    for _ in 0..8 {
        let all = inc.burst("/slow.php?s=2", 6);
        assert!(
            all.iter().all(|r| matches!(r, Ok((200, _)))),
            "{all:?}\n{}",
            inc.logs()
        );
        if inc.sb.error_log().contains("reached max_children setting") {
            break;
        }
    }
    inc.wait_log("fpm.log", "reached max_children setting");
    inc.how = "`pm = ondemand` with `pm.max_children = 2` and 5 concurrent 2-second requests: \
               FPM logs `server reached max_children setting (2)` (ondemand's wording, without \
               `pm.`); the requests queue and are all answered 200."
        .into();
    inc.expected = Expected::cause(
        "max-children-reached",
        &[],
        &["backlog-full", "upstream-timeout", "fpm-not-running"],
        "pm.max_children",
    );
    inc
}

/// A site that serves every request, with configs that will hurt one day: lints, no cause.
pub(super) fn lints_only() -> Incident {
    let mut inc = Incident::new("lints-only");
    let d = inc.d();
    // Debian's stock php-fpm.conf leaves process_control_timeout at 0.
    let global = std::fs::read_to_string(&inc.sb.conf).unwrap();
    inc.sb
        .write_config(&global.replace("process_control_timeout = 10s\n", ""));
    // FPM lets a script run for two minutes, nginx gives up after its default 60s.
    inc.pool(
        "www.conf",
        &www_pool(&d, PM_DEBIAN, "request_terminate_timeout = 120s\n"),
    );
    inc.start_fpm(2);
    inc.start_nginx(|d, port| nginx_simple(d, port, &sock_pass(d), ""));
    inc.expect_status("/hello.php", 10, 200);
    inc.expect_status("/slow.php?s=1", 1, 200);
    inc.how = "No `process_control_timeout` (0, Debian's default) and `request_terminate_timeout \
               = 120s` behind nginx's default `fastcgi_read_timeout` (60s); 11 requests, all \
               200. Doctor must warn about both (lints) and name no cause."
        .into();
    inc.expected = Expected {
        first_cause: None,
        causes: vec![],
        not_causes: CAUSES.iter().map(|s| s.to_string()).collect(),
        fix_contains: None,
        notes_contain: vec![],
        counts: Default::default(),
        mentions: vec![],
        lints: vec![
            "lint-process-control-timeout".into(),
            "lint-terminate-exceeds-read-timeout".into(),
        ],
    };
    inc
}
