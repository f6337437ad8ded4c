//! Times in the formats doctor reads and writes, as seconds since the epoch, for checking its
//! `first_seen`/`last_seen` against the log lines it quotes. Log times are read as UTC: the
//! incident harness runs nginx and FPM with `TZ=UTC`, and the tests run doctor so too.

/// Days from 1970-01-01 to the civil date (proleptic Gregorian).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn epoch(y: i64, mo: i64, d: i64, h: i64, mi: i64, s: i64) -> i64 {
    days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + s
}

fn num(s: &str) -> Option<i64> {
    (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
        .then(|| s.parse().ok())
        .flatten()
}

fn month(name: &str) -> Option<i64> {
    const NAMES: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    NAMES.iter().position(|n| *n == name).map(|i| i as i64 + 1)
}

/// `HH:MM:SS` at the start of `s`.
fn hms(s: &str) -> Option<(i64, i64, i64)> {
    let s = s.get(..8)?;
    let mut it = s.split(':');
    let (h, m, sec) = (it.next()?, it.next()?, it.next()?);
    Some((num(h)?, num(m)?, num(sec)?))
}

/// An RFC 3339 time (`2026-11-30T05:50:01.25+01:00`), to the second.
pub fn rfc3339(s: &str) -> Option<i64> {
    let (y, mo, d) = (num(s.get(0..4)?)?, num(s.get(5..7)?)?, num(s.get(8..10)?)?);
    let (h, mi, sec) = hms(s.get(11..)?)?;
    let mut rest = s.get(19..)?;
    if let Some(frac) = rest.strip_prefix('.') {
        rest = frac.trim_start_matches(|c: char| c.is_ascii_digit());
    }
    let offset = match rest {
        "Z" | "z" => 0,
        _ => {
            let sign = match rest.get(..1)? {
                "+" => 1,
                "-" => -1,
                _ => return None,
            };
            let (oh, om) = (num(rest.get(1..3)?)?, num(rest.get(4..6)?)?);
            (rest.len() == 6).then_some(())?;
            sign * (oh * 3600 + om * 60)
        }
    };
    Some(epoch(y, mo, d, h, mi, sec) - offset)
}

/// The time a log line was written: nginx's error log (`2026/11/30 05:54:08 [error] ...`),
/// FPM's log (`[30-Nov-2026 05:54:08] WARNING: ...`) or nginx's access log
/// (`... [30/Nov/2026:05:54:19 +0000] "GET ...`). `None` for any other line (a config line).
pub fn of_line(line: &str) -> Option<i64> {
    if let (Some(y), Some(mo), Some(d)) = (
        line.get(0..4).and_then(num),
        line.get(5..7).and_then(num),
        line.get(8..10).and_then(num),
    ) && line.get(4..5) == Some("/")
    {
        let (h, mi, s) = hms(line.get(11..)?)?;
        return Some(epoch(y, mo, d, h, mi, s));
    }
    if let Some(rest) = line.strip_prefix('[') {
        // FPM: [30-Nov-2026 05:54:08]
        let (d, mon, y) = (rest.get(0..2)?, rest.get(3..6)?, rest.get(7..11)?);
        let (h, mi, s) = hms(rest.get(12..)?)?;
        return Some(epoch(num(y)?, month(mon)?, num(d)?, h, mi, s));
    }
    // Access log: [30/Nov/2026:05:54:19 +0000]
    let open = line.find(" [")? + 2;
    let t = line.get(open..)?;
    let (d, mon, y) = (t.get(0..2)?, t.get(3..6)?, t.get(7..11)?);
    let (h, mi, s) = hms(t.get(12..)?)?;
    let z = t.get(21..26)?;
    let sign = if z.starts_with('-') { -1 } else { 1 };
    let offset = sign * (num(z.get(1..3)?)? * 3600 + num(z.get(3..5)?)? * 60);
    Some(epoch(num(y)?, month(mon)?, num(d)?, h, mi, s) - offset)
}
