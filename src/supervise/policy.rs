//! The supervisor's decisions as pure functions of time and events, so they are tested as
//! data: when to restart after a crash (exponential backoff with jitter), when to give up (a
//! crash loop), and when failed health checks mean a restart.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Crash-restart policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RestartPolicy {
    /// More crashes than this within `within` is a crash loop.
    pub max_restarts: u32,
    /// The crash-loop window.
    pub within: Duration,
    /// Delay before the second restart in a window; doubles with each further crash.
    pub base_backoff: Duration,
    /// Upper bound of the delay.
    pub max_backoff: Duration,
}

impl Default for RestartPolicy {
    fn default() -> Self {
        RestartPolicy {
            max_restarts: 5,
            within: Duration::from_secs(60),
            base_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(10),
        }
    }
}

/// What to do after a crash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrashDecision {
    /// Start FPM again after this delay.
    Restart {
        /// The delay (zero for a first crash).
        after: Duration,
        /// Crashes within the window, this one included.
        crashes: u32,
    },
    /// Too many crashes: stop and exit non-zero.
    GiveUp {
        /// Crashes within the window.
        crashes: u32,
    },
}

/// Remembers recent crashes.
#[derive(Debug, Clone)]
pub struct CrashTracker {
    policy: RestartPolicy,
    crashes: VecDeque<Instant>,
}

impl CrashTracker {
    /// A tracker with no crashes yet.
    pub fn new(policy: RestartPolicy) -> Self {
        CrashTracker {
            policy,
            crashes: VecDeque::new(),
        }
    }

    /// Records a crash at `now`; `jitter` in `[0, 1)` spreads delays by up to +25%.
    pub fn on_crash(&mut self, now: Instant, jitter: f64) -> CrashDecision {
        self.crashes.push_back(now);
        while let Some(first) = self.crashes.front() {
            if now.duration_since(*first) > self.policy.within {
                self.crashes.pop_front();
            } else {
                break;
            }
        }
        let crashes = self.crashes.len() as u32;
        if crashes > self.policy.max_restarts {
            return CrashDecision::GiveUp { crashes };
        }
        if crashes <= 1 {
            return CrashDecision::Restart {
                after: Duration::ZERO,
                crashes,
            };
        }
        let exp = (crashes - 2).min(20);
        let base = self
            .policy
            .base_backoff
            .saturating_mul(1u32 << exp)
            .min(self.policy.max_backoff);
        let spread = base.mul_f64(0.25 * jitter.clamp(0.0, 1.0));
        CrashDecision::Restart {
            after: (base + spread).min(self.policy.max_backoff),
            crashes,
        }
    }
}

/// Counts consecutive failed health checks.
#[derive(Debug, Clone)]
pub struct HealthTracker {
    unhealthy_after: u32,
    failures: u32,
}

impl HealthTracker {
    /// Restart after `unhealthy_after` consecutive failures (at least 1).
    pub fn new(unhealthy_after: u32) -> Self {
        HealthTracker {
            unhealthy_after: unhealthy_after.max(1),
            failures: 0,
        }
    }

    /// Records one check; true when FPM must be restarted now.
    pub fn on_check(&mut self, healthy: bool) -> bool {
        if healthy {
            self.failures = 0;
            return false;
        }
        self.failures += 1;
        if self.failures >= self.unhealthy_after {
            self.failures = 0;
            return true;
        }
        false
    }

    /// Consecutive failures so far.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// Forgets failures (after a restart).
    pub fn reset(&mut self) {
        self.failures = 0;
    }
}

/// A cheap jitter source in `[0, 1)` (no crate needed for this).
pub fn jitter() -> f64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let mixed =
        (u64::from(nanos) ^ u64::from(std::process::id())).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    (mixed >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `secs` after `t0`, without `Instant + Duration` (which panics on overflow).
    fn at(t0: Instant, secs: u64) -> Instant {
        crate::deadline::Deadline::after_from(t0, Duration::from_secs(secs))
            .instant()
            .unwrap_or(t0)
    }

    fn policy() -> RestartPolicy {
        RestartPolicy {
            max_restarts: 3,
            within: Duration::from_secs(60),
            base_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(1),
        }
    }

    #[test]
    fn first_crash_restarts_at_once_then_backs_off_exponentially() {
        let mut t = CrashTracker::new(policy());
        let t0 = Instant::now();
        let d = |c: CrashDecision| match c {
            CrashDecision::Restart { after, .. } => after,
            other => panic!("{other:?}"),
        };
        assert_eq!(d(t.on_crash(t0, 0.0)), Duration::ZERO);
        assert_eq!(d(t.on_crash(at(t0, 1), 0.0)), Duration::from_millis(100));
        assert_eq!(d(t.on_crash(at(t0, 2), 0.0)), Duration::from_millis(200));
        assert_eq!(
            t.on_crash(at(t0, 3), 0.0),
            CrashDecision::GiveUp { crashes: 4 }
        );
    }

    #[test]
    fn crashes_outside_the_window_are_forgotten() {
        let mut t = CrashTracker::new(policy());
        let t0 = Instant::now();
        for i in 0..3 {
            t.on_crash(at(t0, i), 0.0);
        }
        let later = at(t0, 200);
        assert_eq!(
            t.on_crash(later, 0.0),
            CrashDecision::Restart {
                after: Duration::ZERO,
                crashes: 1
            }
        );
    }

    #[test]
    fn jitter_adds_at_most_a_quarter_and_the_cap_holds() {
        let mut t = CrashTracker::new(RestartPolicy {
            max_restarts: 100,
            ..policy()
        });
        let t0 = Instant::now();
        t.on_crash(t0, 0.0);
        match t.on_crash(t0, 0.999) {
            CrashDecision::Restart { after, .. } => {
                assert!(after >= Duration::from_millis(100) && after <= Duration::from_millis(125))
            }
            other => panic!("{other:?}"),
        }
        for _ in 0..20 {
            t.on_crash(t0, 0.999);
        }
        match t.on_crash(t0, 0.999) {
            CrashDecision::Restart { after, .. } => assert_eq!(after, Duration::from_secs(1)),
            other => panic!("{other:?}"),
        }
        let j = jitter();
        assert!((0.0..1.0).contains(&j));
    }

    #[test]
    fn health_restarts_after_n_consecutive_failures_only() {
        let mut h = HealthTracker::new(3);
        assert!(!h.on_check(false));
        assert!(!h.on_check(false));
        assert!(!h.on_check(true));
        assert!(!h.on_check(false));
        assert!(!h.on_check(false));
        assert!(h.on_check(false));
        assert_eq!(h.failures(), 0);
    }
}
