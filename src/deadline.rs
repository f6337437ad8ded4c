//! One deadline type for every timeout in fpmctl.
//!
//! A [`Deadline`] is a point in time on the monotonic clock, or *never*. It is built from a
//! duration with saturating arithmetic: `Instant + Duration` panics on overflow, and a user
//! can ask for `--timeout 9223372036854775807s`; here such a duration is simply "never".
//! Every wait in the code takes a `Deadline`, so a step's budget is computed once and
//! passed down, never re-derived from a fresh `Instant::now()`.

use std::time::{Duration, Instant};

/// The longest duration fpmctl accepts from the command line or a signal plan: a week. A
/// longer one is a typo (`--timeout 9223372036854775807s`) and is refused as a usage error.
pub const LONGEST: Duration = Duration::from_secs(7 * 24 * 3600);

/// Parses a duration given from outside (`10s`, `1m30s`), refusing one longer than
/// [`LONGEST`]; the error is one line naming the value.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s.trim())
        .map_err(|e| format!("'{s}' is not a duration like 10s or 1m30s: {e}"))?;
    if d > LONGEST {
        return Err(format!(
            "'{s}' is longer than {}, the longest duration fpmctl accepts",
            humantime::format_duration(LONGEST)
        ));
    }
    Ok(d)
}

/// A point in monotonic time by which something must happen, or never.
/// It is deliberately not `Ord`: `Option<Instant>` would sort "never" first. Use
/// [`Deadline::min`] and [`Deadline::expired_at`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Deadline {
    /// `None` is "never".
    at: Option<Instant>,
}

impl Deadline {
    /// A deadline that never expires.
    pub const NEVER: Deadline = Deadline { at: None };

    /// `d` from now; saturates to [`Deadline::NEVER`] when the sum does not fit.
    pub fn after(d: Duration) -> Deadline {
        Deadline::after_from(Instant::now(), d)
    }

    /// `d` after `start`; saturates to [`Deadline::NEVER`].
    pub fn after_from(start: Instant, d: Duration) -> Deadline {
        Deadline {
            at: start.checked_add(d),
        }
    }

    /// A deadline at `at`.
    pub fn at(at: Instant) -> Deadline {
        Deadline { at: Some(at) }
    }

    /// The instant, or `None` for never.
    pub fn instant(self) -> Option<Instant> {
        self.at
    }

    /// Whether this deadline never expires.
    pub fn is_never(self) -> bool {
        self.at.is_none()
    }

    /// Time left from now: zero once expired, [`Duration::MAX`] for never.
    pub fn remaining(self) -> Duration {
        self.remaining_from(Instant::now())
    }

    /// Time left from `now`.
    pub fn remaining_from(self, now: Instant) -> Duration {
        match self.at {
            Some(at) => at.saturating_duration_since(now),
            None => Duration::MAX,
        }
    }

    /// Whether the deadline has passed.
    pub fn expired(self) -> bool {
        self.expired_at(Instant::now())
    }

    /// Whether the deadline has passed at `now`.
    pub fn expired_at(self, now: Instant) -> bool {
        self.at.is_some_and(|at| now >= at)
    }

    /// This deadline pushed `d` later (saturating; never stays never).
    pub fn extended(self, d: Duration) -> Deadline {
        match self.at {
            Some(at) => Deadline::after_from(at, d),
            None => Deadline::NEVER,
        }
    }

    /// The earlier of two deadlines.
    pub fn min(self, other: Deadline) -> Deadline {
        match (self.at, other.at) {
            (Some(a), Some(b)) => Deadline::at(a.min(b)),
            (Some(_), None) => self,
            _ => other,
        }
    }

    /// The earlier of this deadline and `d` from now: a slice of a larger budget.
    pub fn slice(self, d: Duration) -> Deadline {
        self.min(Deadline::after(d))
    }

    /// Time left, capped at `cap`: for a `poll(2)` or `recv` timeout that must stay finite.
    pub fn remaining_capped(self, cap: Duration) -> Duration {
        self.remaining().min(cap)
    }

    /// Time left in whole milliseconds for `poll(2)`, rounded up so a wait never ends a
    /// hair early, saturated to `i32::MAX`; `-1` (wait forever) for never.
    pub fn poll_millis(self) -> i32 {
        if self.at.is_none() {
            return -1;
        }
        let left = self.remaining();
        let ms = left.as_millis() + u128::from(!left.subsec_nanos().is_multiple_of(1_000_000));
        i32::try_from(ms).unwrap_or(i32::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outside_durations_are_bounded() {
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("7d"), Ok(LONGEST));
        assert!(parse_duration("8d").unwrap_err().contains("longest"));
        assert!(
            parse_duration("9223372036854775807s")
                .unwrap_err()
                .contains("9223372036854775807s")
        );
        assert!(
            parse_duration("soon")
                .unwrap_err()
                .contains("not a duration")
        );
    }

    #[test]
    fn huge_durations_saturate_to_never() {
        let d = Deadline::after(Duration::from_secs(u64::MAX));
        assert!(d.is_never());
        assert!(!d.expired());
        assert_eq!(d.remaining(), Duration::MAX);
        assert_eq!(d.poll_millis(), -1);
        assert_eq!(
            d.remaining_capped(Duration::from_secs(1)),
            Duration::from_secs(1)
        );
    }

    #[test]
    fn min_prefers_a_real_instant_over_never() {
        let soon = Deadline::after(Duration::from_secs(1));
        assert_eq!(soon.min(Deadline::NEVER), soon);
        assert_eq!(Deadline::NEVER.min(soon), soon);
        let later = Deadline::after(Duration::from_secs(100));
        assert_eq!(later.min(soon), soon);
    }

    #[test]
    fn expiry_and_remaining_are_saturating() {
        let start = Instant::now();
        let d = Deadline::after_from(start, Duration::from_millis(10));
        assert!(!d.expired_at(start));
        assert_eq!(d.remaining_from(start), Duration::from_millis(10));
        let later = Deadline::after_from(start, Duration::from_millis(20))
            .instant()
            .unwrap();
        assert!(d.expired_at(later));
        assert_eq!(d.remaining_from(later), Duration::ZERO);
    }

    #[test]
    fn poll_millis_rounds_up_and_clamps() {
        let d = Deadline::after(Duration::from_secs(10 * 365 * 24 * 3600));
        assert_eq!(d.poll_millis(), i32::MAX);
        let past = Deadline::at(Instant::now());
        assert_eq!(past.poll_millis(), 0);
    }
}
