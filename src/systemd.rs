//! systemd: deciding whether a master belongs to a unit (and so must be driven through
//! `systemctl`), running `systemctl`, and the `sd_notify` protocol.

use crate::discovery::Snapshot;
use crate::error::{Error, Result};
use crate::procs;
use std::path::Path;
use std::process::Command;
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

#[cfg(test)]
mod tests {
    use super::*;

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
