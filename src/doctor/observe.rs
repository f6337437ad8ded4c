//! What the logs showed, tallied: for each kind of event and each upstream, pool or address,
//! how many, when (first, last, and how many in each second), and the first few lines as
//! evidence. This is the classifier's input; it grows with the number of distinct seconds
//! that saw events, never with the size of the logs.

use super::fpm_log::{FpmKind, FpmRecord};
use super::nginx_log::ErrorKind;
use super::time::Civil;
use std::collections::BTreeMap;

/// How many evidence lines each tally keeps.
pub const SAMPLES: usize = 3;
/// Longest evidence text kept, in bytes.
const SAMPLE_TEXT: usize = 400;

/// One quoted log line.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Evidence {
    /// The file it is in.
    pub file: String,
    /// Its 1-based line number.
    pub line: u64,
    /// The line (a multi-line record's newlines shown as `\n`, long lines cut).
    pub text: String,
}

impl Evidence {
    /// Evidence from a record's bytes: its first line (the one at `line`), cut when long.
    /// A multi-line record (a PHP message with its stack trace) is quoted by its first line.
    pub fn new(file: &str, line: u64, record: &[u8]) -> Evidence {
        let first = memchr::memchr(b'\n', record).map_or(record, |i| &record[..i]);
        let first = first.strip_suffix(b"\r").unwrap_or(first);
        let mut cut = first.len().min(SAMPLE_TEXT);
        // Cut on a character boundary.
        while cut < first.len() && cut > 0 && (first[cut] & 0xC0) == 0x80 {
            cut -= 1;
        }
        let mut text = String::from_utf8_lossy(&first[..cut]).into_owned();
        if cut < first.len() {
            text.push_str("...");
        }
        Evidence {
            file: file.to_string(),
            line,
            text,
        }
    }
}

/// Events of one kind at one target.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Tally {
    /// How many.
    pub count: u64,
    /// The first one's time.
    pub first: Civil,
    /// The last one's time.
    pub last: Civil,
    /// How many in each second.
    pub seconds: BTreeMap<Civil, u32>,
    /// The first few, quoted.
    pub samples: Vec<Evidence>,
    /// The largest number the lines carried (e.g. the `pm.max_children` FPM names).
    pub value: u64,
}

impl Tally {
    /// Counts one event; `evidence` is only called while samples are still wanted.
    pub fn add(&mut self, time: Civil, value: u64, evidence: impl FnOnce() -> Evidence) {
        if self.count == 0 || time < self.first {
            self.first = time;
        }
        if self.count == 0 || time > self.last {
            self.last = time;
        }
        self.count += 1;
        self.value = self.value.max(value);
        let slot = self.seconds.entry(time).or_insert(0);
        *slot = slot.saturating_add(1);
        if self.samples.len() < SAMPLES {
            self.samples.push(evidence());
        }
    }

    /// How many events fell within `window` seconds of `t`.
    pub fn near(&self, t: Civil, window: i64) -> u64 {
        self.seconds
            .range(t.saturating_sub(window)..=t.saturating_add(window))
            .map(|(_, n)| u64::from(*n))
            .sum()
    }

    /// Merges another tally of the same key.
    pub fn merge(&mut self, other: &Tally) {
        if other.count == 0 {
            return;
        }
        if self.count == 0 || other.first < self.first {
            self.first = other.first;
        }
        if self.count == 0 || other.last > self.last {
            self.last = other.last;
        }
        self.count += other.count;
        self.value = self.value.max(other.value);
        for (t, n) in &other.seconds {
            let slot = self.seconds.entry(*t).or_insert(0);
            *slot = slot.saturating_add(*n);
        }
        for e in &other.samples {
            if self.samples.len() < SAMPLES {
                self.samples.push(e.clone());
            }
        }
    }
}

/// FPM events, keyed without their borrowed text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FpmEvent {
    /// `server reached pm.max_children setting`.
    MaxChildren,
    /// `seems busy`.
    SeemsBusy,
    /// A worker exited on this signal.
    Signal(u32),
    /// A worker was killed for `request_terminate_timeout`.
    Terminated,
    /// FPM could not bind an address (the target is the address).
    BindFailed,
    /// FPM found the address in use by another FPM (the target is the address).
    AlreadyListening,
    /// FPM did not start.
    InitFailed,
    /// A PHP fatal error in a worker's stderr.
    PhpFatal,
    /// FPM was ready.
    Ready,
    /// FPM exited.
    Exiting,
}

/// Everything the logs showed.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Observations {
    /// nginx error log events by upstream (as nginx wrote it, e.g.
    /// `fastcgi://unix:/run/php.sock:`; empty when the line names none) and kind.
    pub nginx: BTreeMap<String, BTreeMap<ErrorKind, Tally>>,
    /// FPM log events by kind and pool (or address, for bind failures; empty for global lines).
    pub fpm: BTreeMap<(FpmEvent, String), Tally>,
    /// Access log lines by failed status.
    pub access: BTreeMap<u16, Tally>,
    /// Bytes read from logs.
    pub bytes: u64,
}

impl Observations {
    /// Counts one nginx error log event.
    pub fn add_nginx(
        &mut self,
        kind: ErrorKind,
        upstream: &[u8],
        time: Civil,
        evidence: impl FnOnce() -> Evidence,
    ) {
        // Look up by borrowed text first: the key is only allocated once per upstream.
        let up = String::from_utf8_lossy(upstream);
        let kinds = match self.nginx.get_mut(up.as_ref()) {
            Some(k) => k,
            None => self.nginx.entry(up.into_owned()).or_default(),
        };
        kinds.entry(kind).or_default().add(time, 0, evidence);
    }

    /// Counts one FPM log record.
    pub fn add_fpm(&mut self, rec: &FpmRecord<'_>, evidence: impl FnOnce() -> Evidence) {
        let pool = rec.pool.unwrap_or_default();
        let (event, target, value): (FpmEvent, &[u8], u64) = match &rec.kind {
            FpmKind::MaxChildren(n) => (FpmEvent::MaxChildren, pool, u64::from(*n)),
            FpmKind::SeemsBusy => (FpmEvent::SeemsBusy, pool, 0),
            FpmKind::Signal { signo, .. } => (FpmEvent::Signal(*signo), pool, 0),
            FpmKind::Terminated { .. } => (FpmEvent::Terminated, pool, 0),
            FpmKind::BindFailed { addr, .. } => (FpmEvent::BindFailed, addr, 0),
            FpmKind::AlreadyListening(addr) => (FpmEvent::AlreadyListening, addr, 0),
            FpmKind::InitFailed => (FpmEvent::InitFailed, b"", 0),
            FpmKind::PhpFatal(_) => (FpmEvent::PhpFatal, pool, 0),
            FpmKind::Ready => (FpmEvent::Ready, b"", 0),
            FpmKind::Exiting => (FpmEvent::Exiting, b"", 0),
        };
        let target = String::from_utf8_lossy(target).into_owned();
        self.fpm
            .entry((event, target))
            .or_default()
            .add(rec.time, value, evidence);
    }

    /// Counts one access log line with a failed status.
    pub fn add_access(&mut self, status: u16, time: Civil, evidence: impl FnOnce() -> Evidence) {
        self.access
            .entry(status)
            .or_default()
            .add(time, 0, evidence);
    }

    /// Adds everything `other` saw.
    pub fn merge(&mut self, other: &Observations) {
        for (up, kinds) in &other.nginx {
            let mine = self.nginx.entry(up.clone()).or_default();
            for (k, t) in kinds {
                mine.entry(*k).or_default().merge(t);
            }
        }
        for (k, t) in &other.fpm {
            self.fpm.entry(k.clone()).or_default().merge(t);
        }
        for (k, t) in &other.access {
            self.access.entry(*k).or_default().merge(t);
        }
        self.bytes += other.bytes;
    }

    /// Every nginx tally: kind, upstream, tally.
    pub fn nginx_tallies(&self) -> impl Iterator<Item = (ErrorKind, &str, &Tally)> {
        self.nginx
            .iter()
            .flat_map(|(up, kinds)| kinds.iter().map(move |(k, t)| (*k, up.as_str(), t)))
    }

    /// FPM tallies of one event kind.
    pub fn fpm_of(&self, event: FpmEvent) -> impl Iterator<Item = (&str, &Tally)> {
        self.fpm
            .iter()
            .filter(move |((e, _), _)| *e == event)
            .map(|((_, target), t)| (target.as_str(), t))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tally_keeps_few_samples_and_counts_per_second() {
        let mut t = Tally::default();
        for (i, time) in [10, 10, 11, 30, 9].into_iter().enumerate() {
            t.add(time, i as u64, || {
                Evidence::new("f", i as u64 + 1, b"x\ny\n")
            });
        }
        assert_eq!((t.count, t.first, t.last, t.value), (5, 9, 30, 4));
        assert_eq!(t.samples.len(), SAMPLES);
        assert_eq!(t.samples[0].text, "x");
        assert_eq!(t.near(10, 1), 4);
        assert_eq!(t.near(30, 0), 1);
        let mut u = Tally::default();
        u.merge(&t);
        u.merge(&t);
        assert_eq!((u.count, u.first, u.last), (10, 9, 30));
        assert_eq!(u.near(10, 0), 4);
    }
}
