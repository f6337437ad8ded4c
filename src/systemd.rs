//! systemd: deciding whether a master belongs to a unit (and so must be driven through
//! `systemctl`), running `systemctl`, and how a unit's FPM is restarted without losing a
//! request.
//!
//! A master in a unit is the unit's main process: a new master started beside it (the socket
//! hand-over) would run outside the unit's main PID, systemd would take the old main
//! process's exit for the service's end and, with `KillMode=control-group`, kill the rest.
//! So a unit's FPM is restarted by the unit itself: `systemctl reload` when the unit's
//! `ExecReload` is FPM's own `SIGUSR2` re-exec (which keeps the listening sockets and re-reads
//! the config and the binary), `systemctl restart` (stop, then start) otherwise.
//! [`plan_restart`] makes that choice from the unit's properties alone.

use crate::cli::{Cli, Command as CliCommand};
use crate::config::FpmConfig;
use crate::deadline::Deadline;
use crate::discovery::{self, Snapshot};
use crate::error::{Error, Result};
use crate::lock::ConfigLock;
use crate::procs;
use crate::ready::{self, PoolReady};
use crate::reexec;
use clap::Parser;
use std::path::Path;
use std::process::Command;
use std::time::Duration;
use tracing::{info, warn};

/// How to act on the running FPM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Control {
    /// Signal the processes directly.
    Direct,
    /// Go through `systemctl` on this unit.
    Unit(String),
}

/// True when systemd is the running init and `systemctl` can be called.
pub fn available() -> bool {
    Path::new("/run/systemd/system").is_dir()
}

/// Decides how to act on `snap`'s master: directly, or through its systemd unit; refuses
/// when the master belongs to a unit but systemd cannot be reached.
pub fn decide(snap: &Snapshot, no_systemd: bool) -> Result<Control> {
    let Some(master) = &snap.master else {
        return Ok(Control::Direct);
    };
    let Some(unit) = procs::systemd_unit(master.pid()) else {
        return Ok(Control::Direct);
    };
    if no_systemd {
        warn!(
            pid = master.pid(),
            unit = unit.as_str(),
            "master belongs to a systemd unit; acting directly as --no-systemd asks (systemd may restart it)"
        );
        return Ok(Control::Direct);
    }
    if available() {
        return Ok(Control::Unit(unit));
    }
    Err(Error::Systemd(format!(
        "master {} belongs to systemd unit {unit}, but systemd is not reachable here; use systemctl on {unit}, or pass --no-systemd to act on the processes directly",
        master.pid()
    )))
}

/// The distribution's unit for a config that is not running, when systemd runs here and the
/// unit file exists: `/etc/php/X.Y/fpm/php-fpm.conf` goes with `phpX.Y-fpm.service` (Debian,
/// Ubuntu). `None` otherwise, and always with `no_systemd`.
pub fn unit_for_config(config: &Path, no_systemd: bool) -> Option<String> {
    if no_systemd || !available() {
        return None;
    }
    let unit = unit_name_for(config)?;
    let installed = [
        "/etc/systemd/system",
        "/lib/systemd/system",
        "/usr/lib/systemd/system",
    ]
    .iter()
    .any(|dir| Path::new(dir).join(&unit).exists());
    installed.then_some(unit)
}

/// `phpX.Y-fpm.service` for `/etc/php/X.Y/fpm/php-fpm.conf`.
fn unit_name_for(config: &Path) -> Option<String> {
    let rest = config.strip_prefix("/etc/php").ok()?;
    let mut parts = rest.iter();
    let version = parts.next()?.to_str()?;
    (parts.next()? == "fpm" && parts.next()? == "php-fpm.conf" && parts.next().is_none())
        .then(|| format!("php{version}-fpm.service"))
}

/// Runs `systemctl ACTION UNIT`.
pub fn systemctl(action: &str, unit: &str) -> Result<()> {
    info!(action, unit, "systemctl");
    let out = Command::new("systemctl")
        .arg(action)
        .arg(unit)
        .output()
        .map_err(|e| Error::io(format!("running systemctl {action} {unit}"), e))?;
    if out.status.success() {
        return Ok(());
    }
    Err(Error::Systemd(format!(
        "systemctl {action} {unit} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    )))
}

/// What a restart needs to know of a unit, from `systemctl show`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UnitProps {
    /// `ActiveState`: `active`, `reloading`, `failed`, ...
    pub active_state: String,
    /// `CanReload`: the unit has a reload operation.
    pub can_reload: bool,
    /// The `argv[]` of each `ExecReload` command, in order.
    pub exec_reload: Vec<Vec<String>>,
}

/// The properties [`UnitProps`] holds, as `systemctl show -p` takes them.
const PROPS: &str = "ActiveState,CanReload,ExecReload";

impl UnitProps {
    /// Parses `systemctl show -p ActiveState,CanReload,ExecReload` output. An `ExecReload`
    /// line looks like `ExecReload={ path=/bin/kill ; argv[]=/bin/kill -USR2 $MAINPID ;
    /// ignore_errors=no ; ... }`, one line per command.
    pub fn parse(text: &str) -> UnitProps {
        let mut props = UnitProps::default();
        for line in text.lines() {
            let Some((key, value)) = line.split_once('=') else {
                continue;
            };
            match key {
                "ActiveState" => props.active_state = value.trim().to_string(),
                "CanReload" => props.can_reload = value.trim() == "yes",
                "ExecReload" => {
                    let argv = value
                        .split(" ; ")
                        .find_map(|field| field.trim().strip_prefix("argv[]="))
                        .map(|a| a.split_whitespace().map(str::to_string).collect::<Vec<_>>())
                        .unwrap_or_default();
                    if !argv.is_empty() {
                        props.exec_reload.push(argv);
                    }
                }
                _ => {}
            }
        }
        props
    }

    /// Asks systemd for `unit`'s properties.
    pub fn of(unit: &str) -> Result<UnitProps> {
        let out = Command::new("systemctl")
            .args(["show", "-p", PROPS, unit])
            .output()
            .map_err(|e| Error::io(format!("running systemctl show {unit}"), e))?;
        if !out.status.success() {
            return Err(Error::Systemd(format!(
                "systemctl show {unit} failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        Ok(UnitProps::parse(&String::from_utf8_lossy(&out.stdout)))
    }
}

/// How a unit's FPM is restarted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UnitRestart {
    /// `systemctl reload`: the unit's `ExecReload` re-executes FPM with `SIGUSR2`, which keeps
    /// the listening sockets, so no connection is refused.
    Reload(ReloadBy),
    /// `systemctl restart` (stop, then start: requests in flight or arriving meanwhile fail),
    /// and why.
    Restart(String),
}

/// What a unit's `ExecReload` runs to re-execute FPM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReloadBy {
    /// `kill -USR2 $MAINPID` (Debian's and Fedora's units): `systemctl reload` returns as
    /// soon as the signal is sent.
    Signal,
    /// `fpmctl --no-systemd ... reload` (packaging/systemd's drop-in): `systemctl reload`
    /// returns once fpmctl proved the re-executed FPM ready.
    Fpmctl,
}

impl UnitRestart {
    /// The `systemctl` verb.
    pub fn verb(&self) -> &'static str {
        match self {
            UnitRestart::Reload(_) => "reload",
            UnitRestart::Restart(_) => "restart",
        }
    }

    /// What it does to FPM, for one line of output.
    pub fn how(&self) -> String {
        match self {
            UnitRestart::Reload(_) => "USR2 re-exec, sockets kept".to_string(),
            UnitRestart::Restart(why) => format!("stop, then start: {why}"),
        }
    }
}

/// Chooses between `systemctl reload` and `systemctl restart` for `unit` from its properties:
/// reload only when the unit is active and every `ExecReload` command is known (FPM's
/// `SIGUSR2` re-exec, or fpmctl's `reload` or `check`) with at least one re-exec among them;
/// restart when `cold` asks for it or anything else holds, with the reason.
pub fn plan_restart(unit: &str, props: &UnitProps, cold: bool) -> UnitRestart {
    if cold {
        return UnitRestart::Restart("--cold".to_string());
    }
    if props.active_state != "active" {
        return UnitRestart::Restart(format!(
            "{unit} is {}, not active, so it cannot reload",
            if props.active_state.is_empty() {
                "in an unknown state"
            } else {
                props.active_state.as_str()
            }
        ));
    }
    if !props.can_reload {
        return UnitRestart::Restart(format!("{unit} has no ExecReload, so it cannot reload"));
    }
    let mut by = None;
    for argv in &props.exec_reload {
        match reload_step(argv) {
            Some(Step::Reexec(how)) => by = by.or(Some(how)),
            Some(Step::Check) => {}
            None => {
                return UnitRestart::Restart(format!(
                    "{unit}'s ExecReload `{}` is not known to re-execute FPM with its sockets kept",
                    argv.join(" ")
                ));
            }
        }
    }
    match by {
        Some(by) => UnitRestart::Reload(by),
        None => UnitRestart::Restart(format!(
            "{unit}'s reload does not re-execute FPM (no ExecReload sends SIGUSR2)"
        )),
    }
}

/// One `ExecReload` command, recognized.
enum Step {
    /// Re-executes FPM with its sockets kept.
    Reexec(ReloadBy),
    /// Only checks the config (fails the reload, changes nothing).
    Check,
}

fn reload_step(argv: &[String]) -> Option<Step> {
    let program = Path::new(argv.first()?).file_name()?.to_str()?;
    match program {
        "kill" => {
            let args: Vec<&str> = argv[1..].iter().map(String::as_str).collect();
            let usr2 = |s: &str| matches!(s, "USR2" | "SIGUSR2" | "12");
            let main_pid = |s: &str| matches!(s, "$MAINPID" | "${MAINPID}");
            let ok = match args.as_slice() {
                [sig, pid] => sig.strip_prefix('-').is_some_and(usr2) && main_pid(pid),
                ["-s" | "--signal", sig, pid] => usr2(sig) && main_pid(pid),
                _ => false,
            };
            ok.then_some(Step::Reexec(ReloadBy::Signal))
        }
        "fpmctl" => {
            // Without --no-systemd, fpmctl run by the unit's reload would ask systemd to
            // reload the very unit it is reloading.
            let cli = Cli::try_parse_from(argv).ok()?;
            match cli.command {
                CliCommand::Reload(_) if cli.global.no_systemd => {
                    Some(Step::Reexec(ReloadBy::Fpmctl))
                }
                CliCommand::Check(_) => Some(Step::Check),
                _ => None,
            }
        }
        _ => None,
    }
}

/// What [`restart_unit`] did.
#[derive(Debug, Clone)]
pub struct UnitRestarted {
    /// The unit.
    pub unit: String,
    /// reload or restart, and why.
    pub plan: UnitRestart,
    /// The master before.
    pub previous_master: Option<i32>,
    /// The master after (`None` when it was not looked for and not seen).
    pub master: Option<i32>,
    /// The pools proven ready (empty when readiness was not checked).
    pub pools: Vec<PoolReady>,
}

/// Restarts the FPM that `snap` found running in `unit` the way [`plan_restart`] chooses,
/// then (with `wait`) proves it ready within `ready_timeout` (plus FPM's drain for a reload).
/// `lock` (this config's) is let go before `systemctl reload`: the unit's `ExecReload` may be
/// fpmctl, which takes it.
pub fn restart_unit(
    cfg: &FpmConfig,
    unit: &str,
    snap: &Snapshot,
    cold: bool,
    wait: bool,
    ready_timeout: Duration,
    lock: ConfigLock,
) -> Result<UnitRestarted> {
    let props = UnitProps::of(unit)?;
    let plan = match &snap.master {
        Some(_) => plan_restart(unit, &props, cold),
        None => UnitRestart::Restart("no master runs to re-execute".to_string()),
    };
    info!(unit, action = plan.verb(), how = %plan.how(), "restarting through systemd");
    let previous_master = snap.master.as_ref().map(|m| m.pid());
    let mut done = UnitRestarted {
        unit: unit.to_string(),
        plan: plan.clone(),
        previous_master,
        master: None,
        pools: Vec::new(),
    };
    match (&plan, &snap.master) {
        (UnitRestart::Reload(_), Some(master)) => {
            reexec::warn_if_requests_die(cfg);
            // Armed before the reload, as `fpmctl reload` arms it: the same events prove
            // the re-exec whoever sends the signal.
            let old = reexec::old_workers(snap, master);
            let mut watch = reexec::Watch::arm(cfg, master, &old);
            drop(lock);
            let deadline = Deadline::after(ready::reload_limit(&cfg.global, ready_timeout));
            watch.pin_late_workers(cfg);
            if let Err(e) = systemctl("reload", unit) {
                // An ExecReload that is fpmctl's own reload fails when FPM dies in it: FPM is
                // down all the same, and the watch below says so (and the unit is started
                // again). With the master still there, the reload changed nothing.
                if !(wait && watch.master_exited()) {
                    return Err(e);
                }
                warn!(unit, error = %e, "systemctl reload failed and the master is gone");
            }
            if wait {
                match watch.wait(cfg, deadline) {
                    Ok(reloaded) => {
                        done.master = Some(reloaded.master);
                        done.pools = reloaded.pools;
                    }
                    // The master died in its re-exec (a binary gone or broken since it
                    // started, an address it cannot bind): the config passed php-fpm -t, so
                    // starting the unit again is what brings the site back.
                    Err(reexec::Failure::Died(why)) => {
                        let why = format!("{why} ({unit}; `journalctl -u {unit}` says why)");
                        warn!(unit, reason = %why, "FPM died in its reload; restarting the unit");
                        systemctl("restart", unit).map_err(|e| {
                            Error::FpmDied(format!(
                                "{why}; then `systemctl restart {unit}` failed too: {e}"
                            ))
                        })?;
                        done.plan = UnitRestart::Restart(format!("the reload failed: {why}"));
                        done.pools = ready::wait_ready(cfg, Deadline::after(ready_timeout))
                            .map_err(|e| {
                                Error::NotReady(format!(
                                    "{why}; {unit} was restarted, but FPM is not ready: {e}"
                                ))
                            })?;
                    }
                    Err(reexec::Failure::NotReady(why)) => {
                        return Err(Error::NotReady(format!(
                            "{unit} was reloaded, but FPM {} is not ready: {why}",
                            cfg.path.display()
                        )));
                    }
                }
            }
        }
        _ => {
            systemctl("restart", unit)?;
            drop(lock);
            if wait {
                done.pools = ready::wait_ready(cfg, Deadline::after(ready_timeout))?;
            }
        }
    }
    if done.master.is_none() {
        done.master = discovery::discover(cfg).master.map(|m| m.pid());
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn props(active: &str, can_reload: bool, exec_reload: &[&str]) -> UnitProps {
        UnitProps {
            active_state: active.to_string(),
            can_reload,
            exec_reload: exec_reload
                .iter()
                .map(|c| c.split_whitespace().map(str::to_string).collect())
                .collect(),
        }
    }

    const UNIT: &str = "php8.2-fpm.service";

    #[test]
    fn systemctl_show_output_is_parsed() {
        let text = "ExecReload={ path=/usr/bin/fpmctl ; argv[]=/usr/bin/fpmctl --no-systemd -c /etc/php/8.2/fpm/php-fpm.conf check ; ignore_errors=no ; start_time=[n/a] ; stop_time=[n/a] ; pid=0 ; code=(null) ; status=0/0 }\n\
            ExecReload={ path=/bin/kill ; argv[]=/bin/kill -s USR2 ${MAINPID} ; ignore_errors=yes ; start_time=[n/a] ; stop_time=[n/a] ; pid=0 ; code=(null) ; status=0/0 }\n\
            ActiveState=active\nCanReload=yes\n";
        let p = UnitProps::parse(text);
        assert_eq!(
            p,
            props(
                "active",
                true,
                &[
                    "/usr/bin/fpmctl --no-systemd -c /etc/php/8.2/fpm/php-fpm.conf check",
                    "/bin/kill -s USR2 ${MAINPID}"
                ]
            )
        );
        assert_eq!(
            UnitProps::parse("ActiveState=inactive\nCanReload=no\nExecReload=\n"),
            props("inactive", false, &[])
        );
        assert_eq!(UnitProps::parse("garbage\n"), UnitProps::default());
    }

    #[test]
    fn debians_and_fedoras_usr2_kill_reloads() {
        for cmd in [
            "/bin/kill -USR2 $MAINPID",
            "/usr/bin/kill -SIGUSR2 ${MAINPID}",
            "kill -12 $MAINPID",
            "/bin/kill -s USR2 $MAINPID",
            "/bin/kill --signal SIGUSR2 $MAINPID",
        ] {
            assert_eq!(
                plan_restart(UNIT, &props("active", true, &[cmd]), false),
                UnitRestart::Reload(ReloadBy::Signal),
                "{cmd}"
            );
        }
    }

    #[test]
    fn the_fpmctl_drop_in_reloads_and_a_check_before_the_signal_is_fine() {
        let drop_in = "/usr/bin/fpmctl --no-systemd -c /etc/php/8.2/fpm/php-fpm.conf reload";
        assert_eq!(
            plan_restart(UNIT, &props("active", true, &[drop_in]), false),
            UnitRestart::Reload(ReloadBy::Fpmctl)
        );
        let check = "/usr/bin/fpmctl -c /etc/php/8.2/fpm/php-fpm.conf check";
        assert_eq!(
            plan_restart(
                UNIT,
                &props("active", true, &[check, "/bin/kill -USR2 $MAINPID"]),
                false
            ),
            UnitRestart::Reload(ReloadBy::Signal)
        );
    }

    #[test]
    fn cold_asks_for_a_restart_whatever_the_unit_can() {
        let p = props("active", true, &["/bin/kill -USR2 $MAINPID"]);
        let plan = plan_restart(UNIT, &p, true);
        assert_eq!(plan, UnitRestart::Restart("--cold".into()));
        assert_eq!(plan.verb(), "restart");
        assert_eq!(plan.how(), "stop, then start: --cold");
        assert_eq!(
            plan_restart(UNIT, &p, false).how(),
            "USR2 re-exec, sockets kept"
        );
    }

    #[test]
    fn a_unit_that_cannot_reload_is_restarted_with_the_reason() {
        let reason = |p: UnitProps| match plan_restart(UNIT, &p, false) {
            UnitRestart::Restart(why) => why,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            reason(props("active", false, &[])),
            "php8.2-fpm.service has no ExecReload, so it cannot reload"
        );
        assert_eq!(
            reason(props("reloading", true, &["/bin/kill -USR2 $MAINPID"])),
            "php8.2-fpm.service is reloading, not active, so it cannot reload"
        );
        assert!(reason(props("", true, &["/bin/kill -USR2 $MAINPID"])).contains("unknown state"));
        // A reload by another signal, or a script fpmctl cannot judge.
        for cmd in [
            "/bin/kill -HUP $MAINPID",
            "/bin/kill -USR2 1234",
            "/bin/kill -USR2 $MAINPID extra",
            "/usr/local/bin/reload-php.sh",
            "/usr/bin/fpmctl -c /etc/php/8.2/fpm/php-fpm.conf restart",
        ] {
            assert_eq!(
                reason(props("active", true, &[cmd])),
                format!(
                    "php8.2-fpm.service's ExecReload `{cmd}` is not known to re-execute FPM with its sockets kept"
                )
            );
        }
        // fpmctl reload without --no-systemd would ask systemd to reload the unit reloading it.
        assert!(
            reason(props(
                "active",
                true,
                &["/usr/bin/fpmctl -c /etc/php/8.2/fpm/php-fpm.conf reload"]
            ))
            .contains("is not known")
        );
        // Checks alone re-execute nothing; a reload without a command (Type=notify-reload)
        // sends a signal FPM does not reload on.
        assert_eq!(
            reason(props(
                "active",
                true,
                &["/usr/bin/fpmctl --no-systemd check"]
            )),
            "php8.2-fpm.service's reload does not re-execute FPM (no ExecReload sends SIGUSR2)"
        );
        assert!(reason(props("active", true, &[])).contains("does not re-execute"));
    }

    #[test]
    fn debian_configs_map_to_their_units() {
        assert_eq!(
            unit_name_for(Path::new("/etc/php/8.2/fpm/php-fpm.conf")).as_deref(),
            Some("php8.2-fpm.service")
        );
        assert_eq!(
            unit_name_for(Path::new("/etc/php/8.2/cli/php-fpm.conf")),
            None
        );
        assert_eq!(unit_name_for(Path::new("/tmp/php-fpm.conf")), None);
        assert_eq!(
            unit_name_for(Path::new("/etc/php/8.2/fpm/pool.d/www.conf")),
            None
        );
    }
}
