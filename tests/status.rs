//! `fpmctl status`, `config` and `check` against a real php-fpm.

mod common;
use common::Sandbox;
use std::process::Command;

fn pids(v: &serde_json::Value) -> Vec<i64> {
    let mut out: Vec<i64> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_i64().unwrap())
        .collect();
    out.sort_unstable();
    out
}

#[test]
fn status_of_a_running_fpm_names_master_workers_and_holders() {
    let Some(sb) = Sandbox::new() else { return };
    let master = sb.start_fpm();
    let run = sb.fpmctl(&["status", "--json"]);
    run.expect_code(0);
    let j = run.json();
    assert_eq!(j["state"], "running", "{run}");
    assert_eq!(j["master"]["pid"], master, "{run}");
    let pools = j["pools"].as_array().unwrap();
    assert_eq!(pools.len(), 2);
    for pool in pools {
        let expected = pool["expected_workers"].as_u64().unwrap();
        assert_eq!(expected, 2, "{run}");
        assert_eq!(pool["workers"].as_array().unwrap().len(), 2, "{run}");
    }
    let tcp = j["listen"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["address"] == sb.tcp_addr())
        .unwrap_or_else(|| panic!("no listen entry for {}:\n{run}", sb.tcp_addr()));
    assert!(pids(&tcp["holders"]).contains(&(master as i64)), "{run}");
    assert_eq!(j["orphans"].as_array().unwrap().len(), 0);

    let human = sb.fpmctl(&["status"]);
    human.expect_code(0);
    assert!(
        human.stdout.contains(&format!("master    {master}")),
        "{human}"
    );
    assert!(human.stdout.contains("workers 2/2"), "{human}");
}

#[test]
fn status_of_a_stopped_fpm_is_lsb_3() {
    let Some(sb) = Sandbox::new() else { return };
    let run = sb.fpmctl(&["status", "--json"]);
    run.expect_code(3);
    assert_eq!(run.json()["state"], "stopped");
    assert!(run.json()["master"].is_null());
}

/// The master is SIGKILLed; its workers live on holding the port.
#[test]
fn status_after_master_sigkill_names_every_orphan_and_what_it_holds() {
    let Some(sb) = Sandbox::new() else { return };
    sb.start_fpm();
    let mut orphans: Vec<i64> = sb.kill_master_hard().iter().map(|p| *p as i64).collect();
    orphans.sort_unstable();
    let run = sb.fpmctl(&["status", "--json"]);
    run.expect_code(1);
    let j = run.json();
    assert_eq!(j["state"], "orphans", "{run}");
    assert_eq!(pids(&j["orphans"]), orphans, "{run}");
    assert_eq!(j["pid_file"]["stale"], true, "{run}");
    for l in j["listen"].as_array().unwrap() {
        let holders = pids(&l["holders"]);
        assert!(
            !holders.is_empty(),
            "{} has no holder:\n{run}",
            l["address"]
        );
        for h in &holders {
            assert!(
                orphans.contains(h),
                "holder {h} of {} is not an orphan:\n{run}",
                l["address"]
            );
        }
    }
    let human = sb.fpmctl(&["status"]);
    for o in &orphans {
        assert!(human.stdout.contains(&format!("orphan    {o}")), "{human}");
    }
    assert!(human.stdout.contains(&sb.tcp_addr()), "{human}");
}

#[test]
fn a_pid_file_naming_an_unrelated_process_is_stale_and_that_process_is_not_fpm() {
    let Some(sb) = Sandbox::new() else { return };
    let sleep = sb.spawn(Command::new("sleep").arg("300"));
    std::fs::write(&sb.pid_file, format!("{sleep}\n")).unwrap();
    let run = sb.fpmctl(&["status", "--json"]);
    run.expect_code(1);
    let j = run.json();
    assert_eq!(j["state"], "stale-pid-file", "{run}");
    assert!(j["master"].is_null(), "{run}");
    assert_eq!(j["pid_file"]["pid"], sleep, "{run}");
    assert!(
        j["pid_file"]["reason"].as_str().unwrap().contains("sleep"),
        "{run}"
    );
    assert!(fpmctl::procs::read(sleep as i32).is_some_and(|p| !p.is_gone()));
}

#[test]
fn a_pid_file_naming_a_dead_pid_is_stale() {
    let Some(sb) = Sandbox::new() else { return };
    let mut child = Command::new("true").spawn().unwrap();
    let dead = child.id();
    child.wait().unwrap();
    std::fs::write(&sb.pid_file, format!("{dead}\n")).unwrap();
    let run = sb.fpmctl(&["status", "--json"]);
    run.expect_code(1);
    assert_eq!(run.json()["state"], "stale-pid-file", "{run}");
}

#[test]
fn a_foreign_listener_on_the_port_is_reported_as_not_fpm() {
    let Some(sb) = Sandbox::new() else { return };
    // This test process itself holds the pool's port.
    let _held = std::net::TcpListener::bind(sb.tcp_addr()).unwrap();
    let run = sb.fpmctl(&["status", "--json"]);
    run.expect_code(3);
    let me = std::process::id() as i64;
    let l = run.json()["listen"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["address"] == sb.tcp_addr())
        .cloned()
        .unwrap();
    // Other test threads may be forking right now; their children briefly share the fd too.
    assert!(pids(&l["holders"]).contains(&me), "{run}");
    for h in l["holder_details"].as_array().unwrap() {
        assert_eq!(h["role"], "foreign", "{run}");
    }
    let human = sb.fpmctl(&["status"]);
    assert!(human.stdout.contains("NOT this FPM"), "{human}");
}

#[test]
fn config_json_has_the_stable_keys_and_fpm_defaults() {
    let Some(sb) = Sandbox::new() else { return };
    let run = sb.fpmctl(&["config", "--json"]);
    run.expect_code(0);
    let j = run.json();
    assert_eq!(j["pid_file"], sb.pid_file.display().to_string());
    assert_eq!(j["process_control_timeout_ms"], 10_000);
    let tcp = &j["pools"][0];
    assert_eq!(tcp["name"], "tcp");
    assert_eq!(tcp["listen"], sb.tcp_addr());
    assert_eq!(tcp["pm"], "static");
    assert_eq!(tcp["max_children"], 2);
    assert_eq!(tcp["expected_workers"], 2);
    assert_eq!(tcp["ping_path"], "/ping");
    assert_eq!(tcp["ping_response"], "pong");
    assert_eq!(tcp["status_path"], "/status");
    assert_eq!(tcp["user"], "nobody");
    assert_eq!(tcp["request_terminate_timeout_ms"], 0);
    for key in [
        "group",
        "listen_owner",
        "listen_group",
        "listen_mode",
        "start_servers",
    ] {
        assert!(tcp.get(key).is_some(), "missing key {key}: {run}");
    }
    let sock = &j["pools"][1];
    assert_eq!(sock["listen"], sb.sock.display().to_string());
    assert_eq!(sock["listen_mode"], "0666");
    assert_eq!(sock["expected_workers"], 2);

    let human = sb.fpmctl(&["config"]);
    human.expect_code(0);
    assert!(
        human.stdout.contains("[tcp]") && human.stdout.contains("pm = static"),
        "{human}"
    );
}

#[test]
fn check_passes_a_valid_config() {
    let Some(sb) = Sandbox::new() else { return };
    let run = sb.fpmctl(&["check"]);
    run.expect_code(0);
    assert!(run.stdout.contains("valid"), "{run}");
}

#[test]
fn check_shows_fpms_own_error_for_an_invalid_config() {
    let Some(sb) = Sandbox::new() else { return };
    let text = sb.config_text().replace(
        "pm.max_children = 2",
        "pm.max_children = 2\nuser = no-such-user-xyz",
    );
    sb.write_config(&text);
    let run = sb.fpmctl(&["check", "--json"]);
    run.expect_code(6);
    let j = run.json();
    assert_eq!(j["valid"], false);
    let msgs = j["fpm_test"]["messages"].to_string();
    assert!(msgs.contains("no-such-user-xyz"), "{run}");
}

#[test]
fn check_finds_two_pools_on_one_address() {
    let Some(sb) = Sandbox::new() else { return };
    let text = format!(
        "{}\n[dup]\nuser = nobody\ngroup = nogroup\nlisten = {}\npm = static\npm.max_children = 1\n",
        sb.config_text(),
        sb.port
    );
    sb.write_config(&text);
    let run = sb.fpmctl(&["check"]);
    run.expect_code(6);
    assert!(run.stdout.contains("both listen on"), "{run}");
}

#[test]
fn check_finds_missing_socket_and_pid_directories() {
    let Some(sb) = Sandbox::new() else { return };
    let d = sb.path().display().to_string();
    let text = sb
        .config_text()
        .replace(
            &format!("listen = {d}/fpm.sock"),
            &format!("listen = {d}/nope/fpm.sock"),
        )
        .replace(
            &format!("pid = {d}/fpm.pid"),
            &format!("pid = {d}/gone/fpm.pid"),
        );
    sb.write_config(&text);
    let run = sb.fpmctl(&["check"]);
    run.expect_code(6);
    assert!(
        run.stdout
            .contains(&format!("socket directory {d}/nope does not exist")),
        "{run}"
    );
    assert!(
        run.stdout
            .contains(&format!("pid file directory {d}/gone does not exist")),
        "{run}"
    );
}

#[test]
fn a_missing_config_is_exit_4_and_names_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.conf");
    let run = common::run_fpmctl(
        &["-c".into(), missing.display().to_string(), "status".into()],
        dir.path(),
        &[],
    );
    run.expect_code(4);
    assert!(run.stderr.contains(&missing.display().to_string()), "{run}");
    assert_eq!(
        run.stderr.lines().filter(|l| l.contains("error")).count(),
        1,
        "{run}"
    );
}

#[test]
fn a_missing_fpm_binary_is_exit_5_and_names_the_path() {
    let Some(sb) = Sandbox::new() else { return };
    let missing = sb.path().join("no-php-fpm");
    let run = sb.fpmctl(&["--fpm-bin", missing.to_str().unwrap(), "check"]);
    run.expect_code(5);
    assert!(run.stderr.contains(missing.to_str().unwrap()), "{run}");
}
