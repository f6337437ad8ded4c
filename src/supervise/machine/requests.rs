//! Signals, control requests, restarts, config loads and check results.

use super::*;

impl Machine {
    pub(super) fn on_signal(&mut self, sig: Sig, now: Instant, out: &mut Vec<Action>) {
        match sig {
            Sig::Term | Sig::Int | Sig::Quit => {
                if let Phase::Stopping(s) = self.phase {
                    self.skip_graceful(s, now, out);
                } else {
                    info!(
                        signal = sig.name(),
                        "stopping FPM gracefully; a second signal stops it fast"
                    );
                    self.begin_stop(ExitCode::Ok, now, out);
                }
            }
            Sig::Hup | Sig::Usr2 => {
                info!(
                    signal = sig.name(),
                    reason = RestartReason::Reload.as_str(),
                    "restart requested by signal"
                );
                self.request_restart(None, RestartReason::Reload, out);
            }
            Sig::Usr1 => {
                for (g, m) in &self.masters {
                    if matches!(m.role, Role::Serving | Role::Starting | Role::Replacement)
                        && let Some(id) = m.id
                    {
                        out.push(signal_master(*g, id, Signal::SIGUSR1));
                    }
                }
            }
        }
    }

    pub(super) fn on_control(
        &mut self,
        conn: ConnId,
        cmd: Command,
        now: Instant,
        out: &mut Vec<Action>,
    ) {
        match cmd {
            Command::Restart { ready_limit } => {
                if ready_limit.is_some() && !self.loading && self.find(Role::Replacement).is_none()
                {
                    self.ready_limit = ready_limit;
                }
                self.request_restart(Some(conn), RestartReason::Requested, out)
            }
            Command::Stop { plan, limit } => {
                self.waiting.push(conn);
                if !matches!(self.phase, Phase::Stopping(_)) {
                    if let Some(plan) = plan {
                        self.settings.stop_plan = plan;
                    }
                    self.begin_stop(ExitCode::Ok, now, out);
                    if let (Phase::Stopping(s), Some(limit)) = (&mut self.phase, limit) {
                        s.limit = Deadline::after_from(now, limit);
                    }
                }
            }
            Command::Status => out.push(Action::Reply {
                conn,
                answer: Answer::Status(self.status()),
            }),
        }
    }

    /// A replacement beside the serving master (config reloaded and tested first).
    pub(super) fn request_restart(
        &mut self,
        conn: Option<ConnId>,
        reason: RestartReason,
        out: &mut Vec<Action>,
    ) {
        if matches!(self.phase, Phase::Stopping(_)) {
            if let Some(c) = conn {
                out.push(reply(c, ExitCode::Failure, "the supervisor is stopping"));
            }
            return;
        }
        if let Some(c) = conn {
            self.waiting.push(c);
        }
        if self.loading || self.find(Role::Replacement).is_some() {
            return; // the restart in progress answers everyone
        }
        if self.phase == Phase::Starting {
            return; // the starting master answers everyone once ready
        }
        self.loading = true;
        self.restart_reason = reason;
        out.push(Action::LoadConfig);
    }

    pub(super) fn on_config_loaded(
        &mut self,
        result: Result<(), (ExitCode, String)>,
        now: Instant,
        out: &mut Vec<Action>,
    ) {
        if !std::mem::take(&mut self.loading) || matches!(self.phase, Phase::Stopping(_)) {
            return;
        }
        if let Err((code, why)) = result {
            error!(reason = %why, "not restarting");
            self.answer_waiting(
                code,
                &format!("not restarted, the running FPM was kept: {why}"),
                out,
            );
            return;
        }
        out.push(Action::NotifySystemd(
            "RELOADING=1\nSTATUS=restarting FPM".into(),
        ));
        self.restarts += 1;
        out.push(Action::Tally(Tally::Restart(self.restart_reason)));
        if self.serving().is_some() {
            self.spawn(Role::Replacement, Why::Requested, now, out);
            self.phase = Phase::Replacing;
        } else if self.find(Role::Starting).is_none() {
            // Down (backoff after a crash): the operator asked, so start now.
            self.spawn(Role::Starting, Why::Requested, now, out);
            self.phase = Phase::Starting;
        }
    }

    pub(super) fn on_checked(
        &mut self,
        master: MasterNo,
        purpose: Purpose,
        result: Result<(), String>,
        saturated: bool,
        now: Instant,
        out: &mut Vec<Action>,
    ) {
        let Some(m) = self.masters.get_mut(&master) else {
            return;
        };
        m.check_in_flight = false;
        match purpose {
            Purpose::Ready => {
                if !matches!(m.role, Role::Starting | Role::Replacement) || m.killed {
                    return;
                }
                match result {
                    Ok(()) => self.on_ready(master, "probe", now, out),
                    Err(why) => {
                        debug!(master, reason = %why, "not ready yet");
                        m.probe_at = Some(Deadline::after_from(now, m.probe_backoff));
                        m.probe_backoff = (m.probe_backoff * 2).min(MAX_PROBE_BACKOFF);
                    }
                }
            }
            Purpose::Health => {
                if m.role != Role::Serving || self.phase != Phase::Serving {
                    return;
                }
                self.health_at = Some(Deadline::after_from(now, self.settings.health_interval));
                match result {
                    Ok(()) => {
                        self.saturated = false;
                        self.health.on_check(true);
                    }
                    Err(why) if saturated || is_saturated(m.status.as_deref()) => {
                        // Every worker is busy with a live request: saturated, not hung.
                        self.saturated = true;
                        warn!(master, reason = %why, status = m.status.as_deref().unwrap_or(""),
                            "pool saturated: every worker busy; not restarting");
                    }
                    Err(why) => {
                        self.saturated = false;
                        warn!(master, reason = %why, failures = self.health.failures() + 1,
                            "health check failed");
                        if self.health.on_check(false) {
                            warn!(
                                failures = self.settings.unhealthy_after,
                                "FPM is unhealthy: restarting it"
                            );
                            self.request_restart(None, RestartReason::Unhealthy, out);
                        }
                    }
                }
            }
        }
    }
}
