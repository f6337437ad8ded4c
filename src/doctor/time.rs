//! Timestamps in the formats nginx and php-fpm write, and RFC 3339 output.
//!
//! Both daemons write their error logs in the host's local time without a zone. A [`Civil`]
//! time is that wall-clock reading as seconds since 1970-01-01 00:00:00 *of the wall clock*;
//! the access log's `+0000` offset is applied to reach the same scale. Converting to a real
//! instant needs the host's UTC offset at that time, which the caller supplies (see
//! [`local_offset`]), so everything here is pure.

/// A wall-clock time in seconds since 1970-01-01 00:00:00 of that same clock.
pub type Civil = i64;

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let m = m as i64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date of a day number from [`days_from_civil`].
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn num(b: &[u8]) -> Option<u32> {
    if b.is_empty() || b.len() > 4 {
        return None;
    }
    let mut n = 0u32;
    for &c in b {
        if !c.is_ascii_digit() {
            return None;
        }
        n = n * 10 + u32::from(c - b'0');
    }
    Some(n)
}

fn month(b: &[u8]) -> Option<u32> {
    const NAMES: [&[u8; 3]; 12] = [
        b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov",
        b"Dec",
    ];
    NAMES.iter().position(|n| n[..] == *b).map(|i| i as u32 + 1)
}

fn assemble(y: u32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> Option<Civil> {
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || s > 60 {
        return None;
    }
    Some(days_from_civil(i64::from(y), mo, d) * 86_400 + i64::from(h * 3600 + mi * 60 + s))
}

fn hms(b: &[u8]) -> Option<(u32, u32, u32)> {
    if b.len() != 8 || b[2] != b':' || b[5] != b':' {
        return None;
    }
    Some((num(&b[0..2])?, num(&b[3..5])?, num(&b[6..8])?))
}

/// nginx's error log: `2026/11/30 05:46:43` (the first 19 bytes of a line).
pub fn parse_nginx_error(b: &[u8]) -> Option<Civil> {
    let b = b.get(..19)?;
    if b[4] != b'/' || b[7] != b'/' || b[10] != b' ' {
        return None;
    }
    let (h, mi, s) = hms(&b[11..19])?;
    assemble(num(&b[0..4])?, num(&b[5..7])?, num(&b[8..10])?, h, mi, s)
}

/// php-fpm's error log: `30-Nov-2026 05:47:07` (inside the leading brackets).
pub fn parse_fpm(b: &[u8]) -> Option<Civil> {
    let b = b.get(..20)?;
    if b[2] != b'-' || b[6] != b'-' || b[11] != b' ' {
        return None;
    }
    let (h, mi, s) = hms(&b[12..20])?;
    assemble(num(&b[7..11])?, month(&b[3..6])?, num(&b[0..2])?, h, mi, s)
}

/// nginx's access log `$time_local`: `30/Nov/2026:05:46:43 +0000`. Returns the wall-clock
/// time as written (the offset is the server's own, so it is the same clock as its error log).
pub fn parse_access(b: &[u8]) -> Option<Civil> {
    let b = b.get(..20)?;
    if b[2] != b'/' || b[6] != b'/' || b[11] != b':' {
        return None;
    }
    let (h, mi, s) = hms(&b[12..20])?;
    assemble(num(&b[7..11])?, month(&b[3..6])?, num(&b[0..2])?, h, mi, s)
}

/// A wall-clock time as RFC 3339 with the given UTC offset in seconds.
pub fn rfc3339(t: Civil, offset: i64) -> String {
    let days = t.div_euclid(86_400);
    let secs = t.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    let zone = if offset == 0 {
        "Z".to_string()
    } else {
        let sign = if offset < 0 { '-' } else { '+' };
        let a = offset.abs();
        format!("{sign}{:02}:{:02}", a / 3600, (a % 3600) / 60)
    };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}{zone}",
        secs / 3600,
        (secs % 3600) / 60,
        secs % 60
    )
}

/// Parses `--since`: a duration back from `now` (`90m`, `2h`, `1d`) or a timestamp
/// (`2026-11-30T05:00:00Z`, `2026-11-30T05:00:00+01:00`, `2026-11-30 05:00:00` in local
/// time, or a bare date). `now` is the current wall-clock time; `offset` the local UTC
/// offset in seconds. The result is on the wall-clock scale of the logs.
pub fn parse_since(s: &str, now: Civil, offset: i64) -> Result<Civil, String> {
    let s = s.trim();
    if let Ok(d) = humantime::parse_duration(s) {
        let secs = i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
        return Ok(now.saturating_sub(secs));
    }
    let b = s.as_bytes();
    let bad = || {
        format!(
            "'{s}' is neither a duration like 2h nor a timestamp like 2026-11-30T05:00:00Z or '2026-11-30 05:00:00'"
        )
    };
    if b.len() < 10 || b[4] != b'-' || b[7] != b'-' {
        return Err(bad());
    }
    let (y, mo, d) = (
        num(&b[0..4]).ok_or_else(bad)?,
        num(&b[5..7]).ok_or_else(bad)?,
        num(&b[8..10]).ok_or_else(bad)?,
    );
    if b.len() == 10 {
        return assemble(y, mo, d, 0, 0, 0).ok_or_else(bad);
    }
    if b.len() < 19 || !(b[10] == b'T' || b[10] == b' ') {
        return Err(bad());
    }
    let (h, mi, sec) = hms(&b[11..19]).ok_or_else(bad)?;
    let t = assemble(y, mo, d, h, mi, sec).ok_or_else(bad)?;
    let mut rest = &b[19..];
    if let Some(r) = rest.strip_prefix(b".") {
        let digits = r.iter().take_while(|c| c.is_ascii_digit()).count();
        rest = &r[digits..];
    }
    match rest {
        [] => Ok(t),
        [b'Z'] | [b'z'] => Ok(t + offset),
        [sign @ (b'+' | b'-'), zone @ ..] if zone.len() == 5 && zone[2] == b':' => {
            let z = i64::from(num(&zone[0..2]).ok_or_else(bad)? * 3600)
                + i64::from(num(&zone[3..5]).ok_or_else(bad)? * 60);
            let utc = if *sign == b'+' { t - z } else { t + z };
            Ok(utc + offset)
        }
        _ => Err(bad()),
    }
}

/// The host's UTC offset in seconds at the UTC instant `unix` (0 when it cannot be known).
pub fn local_offset(unix: i64) -> i64 {
    let t: libc::time_t = unix as libc::time_t;
    // SAFETY: an all-zero `tm` is valid; localtime_r writes into it and reads only `t`.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    // SAFETY: both pointers are valid for the duration of the call.
    let ok = unsafe { !libc::localtime_r(&t, &mut tm).is_null() };
    if ok { tm.tm_gmtoff } else { 0 }
}

/// The current UTC time in seconds since the epoch.
pub fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_round_trip() {
        for z in [-800_000, -1, 0, 1, 20_000, 20_787, 2_000_000] {
            let (y, m, d) = civil_from_days(z);
            assert_eq!(days_from_civil(y, m, d), z);
        }
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
    }

    #[test]
    fn the_three_log_formats_agree() {
        let a = parse_nginx_error(b"2026/11/30 05:46:43 [crit]").unwrap();
        let b = parse_fpm(b"30-Nov-2026 05:46:43] WARNING").unwrap();
        let c = parse_access(b"30/Nov/2026:05:46:43 +0000]").unwrap();
        assert_eq!(a, b);
        assert_eq!(a, c);
        assert_eq!(rfc3339(a, 0), "2026-11-30T05:46:43Z");
        assert_eq!(rfc3339(a, 3600), "2026-11-30T05:46:43+01:00");
        assert_eq!(rfc3339(a, -16_200), "2026-11-30T05:46:43-04:30");
    }

    #[test]
    fn rejects_what_is_not_a_timestamp() {
        assert_eq!(parse_nginx_error(b"2026/13/30 05:46:43"), None);
        assert_eq!(parse_nginx_error(b"Stack trace:"), None);
        assert_eq!(parse_fpm(b"30-Foo-2026 05:46:43"), None);
        assert_eq!(parse_access(b"30/Nov/2026:5:46:43 +0000"), None);
    }

    #[test]
    fn since_takes_durations_and_timestamps() {
        let now = parse_nginx_error(b"2026/11/30 06:00:00").unwrap();
        assert_eq!(parse_since("1h", now, 0), Ok(now - 3600));
        assert_eq!(parse_since("2026-11-30 05:00:00", now, 0), Ok(now - 3600));
        assert_eq!(parse_since("2026-11-30T05:00:00Z", now, 0), Ok(now - 3600));
        // 05:00 UTC is 06:00 on a clock one hour ahead.
        assert_eq!(parse_since("2026-11-30T05:00:00Z", now, 3600), Ok(now));
        assert_eq!(
            parse_since("2026-11-30T06:00:00+01:00", now, 0),
            Ok(now - 3600)
        );
        assert_eq!(parse_since("2026-11-30", now, 0), Ok(now - 6 * 3600));
        assert!(parse_since("yesterday", now, 0).is_err());
        assert!(parse_since("2026-11-30T05:00", now, 0).is_err());
    }
}
