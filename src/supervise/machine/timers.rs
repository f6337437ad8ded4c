//! What happens when time passes: backoff expiry, readiness deadlines and probes, health
//! checks, a silent master, drain escalation, watchdog pings.

use super::*;

impl Machine {
    pub(super) fn on_time(&mut self, now: Instant, out: &mut Vec<Action>) {
        if let Phase::Stopping(s) = self.phase {
            if s.deadline.expired_at(now) && s.step + 1 < self.settings.stop_plan.steps.len() {
                self.apply_step(s.step + 1, now, out);
            }
            return;
        }
        if let Phase::Backoff(at) = self.phase
            && at.expired_at(now)
        {
            self.spawn(Role::Starting, Why::Crash, now, out);
            self.phase = Phase::Starting;
        }
        let mut to_kill = Vec::new();
        let mut checks = Vec::new();
        let mut hung = false;
        for (g, m) in self.masters.iter_mut() {
            if matches!(m.role, Role::Starting | Role::Replacement) && !m.killed {
                if Deadline::after_from(m.started, m.ready_timeout).expired_at(now) {
                    to_kill.push(*g);
                } else if !m.check_in_flight
                    && m.id.is_some()
                    && m.probe_at.is_some_and(|p| p.expired_at(now))
                {
                    m.check_in_flight = true;
                    m.probe_at = None;
                    checks.push((*g, Purpose::Ready));
                }
            }
            if m.role == Role::Serving
                && let Some(d) = hung_deadline_of(m)
                && d.expired_at(now)
            {
                warn!(
                    master = *g,
                    silent_s = now
                        .saturating_duration_since(m.last_notify.or(m.ready_at).unwrap_or(now))
                        .as_secs(),
                    "FPM master sent no status: treating it as hung"
                );
                m.last_notify = Some(now);
                hung = true;
            }
        }
        for g in to_kill {
            self.not_ready_in_time(g, out);
        }
        for (master, purpose) in checks {
            out.push(Action::Check { master, purpose });
        }
        if hung {
            self.request_restart(None, RestartReason::Unhealthy, out);
        }
        if let Some(h) = self.health_at
            && h.expired_at(now)
            && self.phase == Phase::Serving
            && let Some(g) = self.serving()
            && let Some(m) = self.masters.get_mut(&g)
        {
            self.health_at = None;
            if !m.check_in_flight {
                m.check_in_flight = true;
                out.push(Action::Check {
                    master: g,
                    purpose: Purpose::Health,
                });
            }
        }
        self.drain_deadlines(now, out);
        if let (Some(w), Some(at)) = (self.settings.watchdog, self.watchdog_at)
            && at.expired_at(now)
        {
            self.watchdog_at = Some(Deadline::after_from(now, w / 2));
            if self.serving().is_some() && self.health.failures() == 0 {
                out.push(Action::NotifySystemd("WATCHDOG=1".into()));
            }
        }
    }

    pub(super) fn not_ready_in_time(&mut self, master: MasterNo, out: &mut Vec<Action>) {
        let Some(m) = self.masters.get_mut(&master) else {
            return;
        };
        m.killed = true;
        let replacement = m.role == Role::Replacement;
        m.role = if replacement {
            Role::Abandoned
        } else {
            Role::Starting
        };
        let pid = m.id.map(|id| id.pid).unwrap_or(0);
        let ready_timeout_ms = m.ready_timeout.as_millis() as u64;
        error!(
            pid,
            ready_timeout_ms, "FPM master not ready in time; killing it"
        );
        if let Some(id) = m.id {
            out.push(signal_master(master, id, Signal::SIGKILL));
        }
        if replacement {
            self.phase = Phase::Serving;
            out.push(Action::RevertConfig);
            self.answer_waiting(
                ExitCode::NotReady,
                &format!(
                    "the new FPM master {pid} was not ready in time; the running FPM was kept"
                ),
                out,
            );
        }
        // A starting master killed here is reaped as a crash (backoff, crash loop).
    }

    pub(super) fn drain_deadlines(&mut self, now: Instant, out: &mut Vec<Action>) {
        for (g, d) in self.drains.iter_mut() {
            if !d.deadline.expired_at(now) || d.escalated >= 2 {
                continue;
            }
            let signal = if d.escalated == 0 {
                Signal::SIGTERM
            } else {
                Signal::SIGKILL
            };
            warn!(
                master = *g,
                workers = d.workers.len(),
                signal = signal.as_str(),
                "workers still busy after the drain timeout"
            );
            for w in &d.workers {
                out.push(Action::Signal {
                    target: Target::Worker { master: *g, id: *w },
                    signal,
                });
            }
            d.escalated += 1;
            d.deadline = if d.escalated >= 2 {
                Deadline::NEVER
            } else {
                Deadline::after_from(now, DRAIN_ESCALATION)
            };
        }
    }
}
