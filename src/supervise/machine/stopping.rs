//! Stopping: the signal plan applied to masters, tracked workers and leftovers, the second
//! signal that skips the graceful step, and the exit once FPM is gone.

use super::*;

impl Machine {
    pub(super) fn begin_stop(&mut self, code: ExitCode, now: Instant, out: &mut Vec<Action>) {
        if matches!(self.phase, Phase::Stopping(_)) {
            return;
        }
        out.push(Action::NotifySystemd(
            "STOPPING=1\nSTATUS=stopping FPM".into(),
        ));
        self.ready_limit = None;
        self.release_orphans(out);
        self.loading = false;
        self.health_at = None;
        self.phase = Phase::Stopping(Stopping {
            code,
            limit: Deadline::NEVER,
            step: 0,
            deadline: Deadline::NEVER,
        });
        self.apply_step(0, now, out);
    }

    pub(super) fn step_signal(&self, step: usize) -> Signal {
        self.settings
            .stop_plan
            .steps
            .get(step)
            .map(|s| s.signal)
            .unwrap_or(Signal::SIGKILL)
    }

    /// Applies step `step` of the stop plan to every master, tracked worker and leftover.
    pub(super) fn apply_step(&mut self, step: usize, now: Instant, out: &mut Vec<Action>) {
        let Phase::Stopping(mut s) = self.phase else {
            return;
        };
        let plan = &self.settings.stop_plan.steps;
        let last = plan.len().saturating_sub(1);
        let step = step.min(last);
        let signal = self.step_signal(step);
        let grace = plan.get(step).map(|s| s.grace).unwrap_or(Duration::ZERO);
        for (g, m) in self.masters.iter_mut() {
            let Some(id) = m.id else { continue };
            // A retired master is stopped and its workers already had SIGQUIT: it only ever
            // gets SIGKILL, so it never runs the cleanup that unlinks the socket path.
            let sig = if m.role == Role::Retiring {
                Signal::SIGKILL
            } else {
                signal
            };
            if m.role == Role::Retiring && m.killed {
                continue;
            }
            m.killed |= sig == Signal::SIGKILL;
            info!(pid = id.pid, signal = sig.as_str(), "stopping FPM master");
            out.push(signal_master(*g, id, sig));
        }
        for (g, d) in &self.drains {
            if step == 0 && signal == Signal::SIGQUIT {
                continue; // they had SIGQUIT already
            }
            for w in &d.workers {
                out.push(Action::Signal {
                    target: Target::Worker { master: *g, id: *w },
                    signal,
                });
            }
        }
        if !self.no_children {
            out.push(Action::Signal {
                target: Target::Leftovers,
                signal,
            });
        }
        s.step = step;
        s.deadline = Deadline::after_from(
            now,
            if step == last {
                grace.saturating_add(FINAL_GRACE)
            } else {
                grace
            },
        );
        self.phase = Phase::Stopping(s);
    }

    /// A second stop request: skip the graceful step (SIGQUIT), never the forceful ones.
    pub(super) fn skip_graceful(&mut self, s: Stopping, now: Instant, out: &mut Vec<Action>) {
        let fast = self
            .settings
            .stop_plan
            .steps
            .iter()
            .position(|st| st.signal != Signal::SIGQUIT)
            .unwrap_or(0);
        if s.step < fast {
            warn!("second stop signal: stopping FPM fast");
            self.apply_step(fast, now, out);
        }
    }

    pub(super) fn check_stopped(&mut self, now: Instant, out: &mut Vec<Action>) {
        let Phase::Stopping(s) = self.phase else {
            return;
        };
        let fpm_gone = self.masters.is_empty() && self.drains.is_empty();
        let last = self.settings.stop_plan.steps.len().saturating_sub(1);
        let exhausted = (s.step >= last && s.deadline.expired_at(now)) || s.limit.expired_at(now);
        let code = if fpm_gone && (self.no_children || exhausted) {
            if !self.no_children {
                warn!("processes left behind by PHP requests survived the stop plan");
            }
            s.code
        } else if exhausted {
            error!(
                masters = self.masters.len(),
                workers = self.tracked_workers().count(),
                "FPM processes still alive after the whole stop plan; exiting anyway"
            );
            ExitCode::Timeout
        } else {
            return;
        };
        let text = match code {
            ExitCode::Ok => "FPM stopped; supervisor exiting".to_string(),
            ExitCode::Timeout => format!(
                "FPM processes were still alive after the signal plan {} (or the stop's --timeout); supervisor exiting",
                self.settings.stop_plan
            ),
            other => format!("supervisor exiting: {}", other.meaning()),
        };
        self.answer_waiting(code, &text, out);
        self.phase = Phase::Exited(code);
        out.push(Action::Exit(code));
    }
}
