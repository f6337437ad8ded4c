//! Rendering a diagnosis: readable text, and the JSON shape other tools rely on:
//! `{"findings": [{"cause", "severity", "count", "first_seen", "last_seen", "summary",
//! "evidence": [{"file", "line", "text"}], "fix"}], "notes": [...],
//! "not_checked": [{"address", "pool"}]}`.

use super::facts::{Diagnosis, Finding, Severity};
use super::time::{Civil, rfc3339};
use serde_json::{Value, json};

/// One finding as JSON. `offset` is the UTC offset of the logs' wall clock, in seconds.
pub fn finding_json(f: &Finding, now: Civil, offset: i64) -> Value {
    json!({
        "cause": f.cause,
        "severity": f.severity,
        "count": f.count,
        "first_seen": rfc3339(f.first.unwrap_or(now), offset),
        "last_seen": rfc3339(f.last.unwrap_or(now), offset),
        "summary": f.summary,
        "evidence": f.evidence,
        "fix": f.fix,
    })
}

/// The whole diagnosis as JSON.
pub fn to_json(d: &Diagnosis, now: Civil, offset: i64) -> Value {
    json!({
        "findings": d.findings.iter().map(|f| finding_json(f, now, offset)).collect::<Vec<_>>(),
        "notes": d.notes,
        "not_checked": d.not_checked,
    })
}

/// The line naming the addresses the live checks did not reach, when there are any.
pub fn not_checked_text(d: &Diagnosis) -> Option<String> {
    if d.not_checked.is_empty() {
        return None;
    }
    let list: Vec<String> = d
        .not_checked
        .iter()
        .map(|n| match &n.pool {
            Some(pool) => format!("pool {pool} ({})", n.address),
            None => n.address.clone(),
        })
        .collect();
    Some(format!(
        "not checked, time ran out (--timeout): {}; neither healthy nor down, run doctor again with a longer --timeout\n",
        list.join(", ")
    ))
}

/// Longest evidence line shown in text output.
const TEXT_EVIDENCE: usize = 240;

/// One finding as text, numbered.
pub fn finding_text(n: usize, f: &Finding, now: Civil, offset: i64) -> String {
    let mut out = String::new();
    let kind = match f.severity {
        Severity::Error => "cause",
        Severity::Warning => "warning",
    };
    let when = match (f.first, f.last) {
        (Some(a), Some(b)) if a != b => {
            format!("{} .. {}", rfc3339(a, offset), rfc3339(b, offset))
        }
        (Some(a), _) => rfc3339(a, offset),
        _ => rfc3339(now, offset),
    };
    let count = if f.severity == Severity::Warning {
        String::new()
    } else if f.failed > 0 {
        format!(
            ", {} failed request{}",
            f.failed,
            if f.failed == 1 { "" } else { "s" }
        )
    } else {
        format!(", {} event{}", f.count, if f.count == 1 { "" } else { "s" })
    };
    out.push_str(&format!("{n}. {} ({kind}{count}, {when})\n", f.cause));
    out.push_str(&format!("   {}\n", f.summary));
    for e in &f.evidence {
        let mut text: String = e.text.chars().take(TEXT_EVIDENCE).collect();
        if text.len() < e.text.len() {
            text.push_str("...");
        }
        if e.line > 0 {
            out.push_str(&format!("   > {}:{}: {text}\n", e.file, e.line));
        } else {
            out.push_str(&format!("   > {}: {text}\n", e.file));
        }
    }
    out.push_str(&format!("   fix: {}\n", f.fix));
    out
}

/// The whole diagnosis as text; `sources` is one line per log read.
pub fn to_text(d: &Diagnosis, sources: &[String], now: Civil, offset: i64) -> String {
    let causes = d
        .findings
        .iter()
        .filter(|f| f.severity == Severity::Error)
        .count();
    let warnings = d.findings.len() - causes;
    let mut out = match causes {
        0 => "No cause of failed requests found".to_string(),
        1 => "1 cause of failed requests found".to_string(),
        n => format!("{n} causes of failed requests found, most failed requests first"),
    };
    if warnings > 0 {
        out.push_str(&format!(
            " ({warnings} warning{})",
            if warnings == 1 { "" } else { "s" }
        ));
    }
    out.push_str(".\n");
    if let Some(line) = not_checked_text(d) {
        out.push_str(&line);
    }
    for s in sources {
        out.push_str(&format!("  read {s}\n"));
    }
    for (i, f) in d.findings.iter().enumerate() {
        out.push('\n');
        out.push_str(&finding_text(i + 1, f, now, offset));
    }
    if !d.notes.is_empty() {
        out.push_str("\nnotes:\n");
        for n in &d.notes {
            out.push_str(&format!("  - {n}\n"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::doctor::observe::Evidence;

    #[test]
    fn json_has_exactly_the_documented_shape() {
        let d = Diagnosis {
            findings: vec![Finding {
                cause: "socket-permission",
                severity: Severity::Error,
                count: 3,
                failed: 3,
                first: Some(0),
                last: Some(61),
                summary: "s".into(),
                evidence: vec![Evidence {
                    file: "/var/log/nginx/error.log".into(),
                    line: 7,
                    text: "t".into(),
                }],
                fix: "f".into(),
                subject: String::new(),
            }],
            notes: vec!["n".into()],
            not_checked: Vec::new(),
        };
        let v = to_json(&d, 0, 0);
        assert_eq!(
            v,
            json!({"findings": [{"cause": "socket-permission", "severity": "error", "count": 3,
                "first_seen": "1970-01-01T00:00:00Z", "last_seen": "1970-01-01T00:01:01Z",
                "summary": "s", "evidence": [{"file": "/var/log/nginx/error.log", "line": 7, "text": "t"}],
                "fix": "f"}], "notes": ["n"], "not_checked": []})
        );
        let text = to_text(&d, &[], 0, 0);
        assert!(
            text.starts_with("1 cause of failed requests found.\n"),
            "{text}"
        );
        assert!(
            text.contains("   > /var/log/nginx/error.log:7: t\n"),
            "{text}"
        );
        assert!(text.contains("   fix: f\n"), "{text}");
        assert!(!text.contains("not checked"), "{text}");
    }

    #[test]
    fn addresses_not_reached_are_named_as_not_checked() {
        let d = Diagnosis {
            not_checked: vec![
                crate::doctor::facts::NotChecked {
                    address: "127.0.0.1:9001".into(),
                    pool: Some("a".into()),
                },
                crate::doctor::facts::NotChecked {
                    address: "unix:/run/x.sock".into(),
                    pool: None,
                },
            ],
            ..Diagnosis::default()
        };
        let text = to_text(&d, &[], 0, 0);
        assert!(
            text.contains(
                "not checked, time ran out (--timeout): pool a (127.0.0.1:9001), unix:/run/x.sock;"
            ),
            "{text}"
        );
        assert_eq!(
            to_json(&d, 0, 0)["not_checked"],
            json!([{"address": "127.0.0.1:9001", "pool": "a"}, {"address": "unix:/run/x.sock", "pool": null}])
        );
    }
}
