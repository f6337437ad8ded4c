//! What comes back: the CGI response in `FCGI_STDOUT` (headers, `Status:`, body) and FPM's
//! status page JSON.

use super::*;

pub(super) struct Cgi {
    pub(super) status: u16,
    pub(super) headers: Vec<(String, String)>,
    pub(super) body: Vec<u8>,
}

/// Splits CGI output at the first empty line (`\r\n\r\n`, `\n\n` or a mix), parses the
/// headers and takes the status from `Status:`.
pub(super) fn parse_cgi(stdout: &[u8]) -> Result<Cgi, String> {
    let mut headers: Vec<(String, String)> = Vec::new();
    let mut pos = 0;
    let body_start = loop {
        let Some(nl) = stdout[pos..].iter().position(|&b| b == b'\n') else {
            return Err(if stdout.is_empty() {
                "the response has no CGI headers (stdout is empty)".to_string()
            } else {
                format!(
                    "the response has no end of CGI headers: {}",
                    excerpt(&stdout[..stdout.len().min(EXCERPT_CHARS)])
                )
            });
        };
        let line = &stdout[pos..pos + nl];
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        pos += nl + 1;
        if line.is_empty() {
            break pos;
        }
        let text = String::from_utf8_lossy(line);
        if text.starts_with([' ', '\t']) {
            // An obsolete folded continuation line.
            match headers.last_mut() {
                Some((_, value)) => {
                    value.push(' ');
                    value.push_str(text.trim());
                    continue;
                }
                None => return Err(format!("malformed CGI header line: {}", excerpt(line))),
            }
        }
        match text.split_once(':') {
            Some((name, value))
                if !name.is_empty() && name.bytes().all(|b| b.is_ascii_graphic()) =>
            {
                headers.push((name.to_string(), value.trim().to_string()));
            }
            _ => return Err(format!("malformed CGI header line: {}", excerpt(line))),
        }
    };
    let status = match headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("status"))
    {
        None => 200,
        // The code is the first word and exactly three digits: `Status: 2000` is not 200.
        Some((_, value)) => value
            .split_whitespace()
            .next()
            .filter(|code| code.len() == 3 && code.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|code| code.parse::<u16>().ok())
            .filter(|code| (100..=999).contains(code))
            .ok_or_else(|| format!("bad CGI Status header: {}", excerpt(value.as_bytes())))?,
    };
    Ok(Cgi {
        status,
        headers,
        body: stdout[body_start..].to_vec(),
    })
}

// ---------------------------------------------------------------------------------------
// Status JSON

/// Parses FPM's `?json` status page: strictly, then repaired, then just its scalar
/// top-level fields.
pub(super) fn parse_status_json(body: &[u8]) -> Result<serde_json::Value, String> {
    let text = String::from_utf8_lossy(body);
    if let Ok(value) = serde_json::from_str::<serde_json::Value>(&text) {
        return if value.is_object() {
            Ok(value)
        } else {
            Err(format!(
                "the status page is JSON but not an object: {}",
                excerpt(body)
            ))
        };
    }
    if let Ok(value @ serde_json::Value::Object(_)) =
        serde_json::from_str::<serde_json::Value>(&repair_json(&text))
    {
        return Ok(value);
    }
    let fields = scalar_fields(&text);
    if fields.is_empty() {
        return Err(format!("the status page is not JSON: {}", excerpt(body)));
    }
    Ok(serde_json::Value::Object(fields))
}

/// Escapes what FPM leaves raw inside strings: a `"` not followed by `,` `:` `}` `]` or the
/// end, a backslash that starts no valid escape, and control characters.
pub(super) fn repair_json(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len() + 16);
    let mut in_string = false;
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        i += 1;
        if !in_string {
            in_string = c == '"';
            out.push(c);
            continue;
        }
        match c {
            '\\' => match chars.get(i) {
                Some(&e @ ('"' | '\\' | '/' | 'b' | 'f' | 'n' | 'r' | 't')) => {
                    out.push('\\');
                    out.push(e);
                    i += 1;
                }
                Some('u')
                    if chars
                        .get(i + 1..i + 5)
                        .is_some_and(|h| h.iter().all(char::is_ascii_hexdigit)) =>
                {
                    out.push('\\');
                    out.extend(&chars[i..i + 5]);
                    i += 5;
                }
                _ => out.push_str("\\\\"),
            },
            '"' => {
                let next = chars[i..].iter().find(|c| !c.is_whitespace());
                if matches!(next, None | Some(',' | ':' | '}' | ']')) {
                    in_string = false;
                    out.push('"');
                } else {
                    out.push_str("\\\"");
                }
            }
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

/// The leading `"key": scalar` members of a JSON object, read leniently; stops at the first
/// nested value (FPM's process list comes last) or at anything it cannot follow.
pub(super) fn scalar_fields(text: &str) -> serde_json::Map<String, serde_json::Value> {
    use serde_json::Value;
    let mut fields = serde_json::Map::new();
    let Some(mut rest) = text.trim_start().strip_prefix('{') else {
        return fields;
    };
    while let Some(r) = rest.trim_start().strip_prefix('"') {
        let Some(end) = r.find('"') else { break };
        let key = &r[..end];
        let Some(r) = r[end + 1..].trim_start().strip_prefix(':') else {
            break;
        };
        let r = r.trim_start();
        let (value, r) = if let Some(s) = r.strip_prefix('"') {
            // The string ends at the first quote that a member separator follows.
            let close = s.match_indices('"').map(|(i, _)| i).find(|&i| {
                let after = s[i + 1..].trim_start();
                after.is_empty() || after.starts_with([',', '}'])
            });
            let Some(close) = close else { break };
            let raw = &s[..close];
            let value = serde_json::from_str::<String>(&format!("\"{raw}\""))
                .unwrap_or_else(|_| raw.to_string());
            (Value::String(value), &s[close + 1..])
        } else {
            let end = r.find([',', '}']).unwrap_or(r.len());
            match serde_json::from_str::<Value>(r[..end].trim()) {
                Ok(v) if !v.is_array() && !v.is_object() => (v, &r[end..]),
                _ => break,
            }
        };
        fields.insert(key.to_string(), value);
        match r.trim_start().strip_prefix(',') {
            Some(r) => rest = r,
            None => break,
        }
    }
    fields
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cgi_headers_split_at_crlf_or_lf_blank_lines() {
        let cgi = parse_cgi(
            b"Status: 201 Created\r\nX-A: 1\r\nContent-type: text/plain\r\n\r\nbody\r\n\r\nmore",
        )
        .unwrap();
        assert_eq!(cgi.status, 201);
        assert_eq!(cgi.headers[1], ("X-A".into(), "1".into()));
        assert_eq!(cgi.body, b"body\r\n\r\nmore");
        let cgi = parse_cgi(b"Content-Type: text/plain\n\npong").unwrap();
        assert_eq!((cgi.status, cgi.body.as_slice()), (200, &b"pong"[..]));
        let cgi = parse_cgi(b"A: 1\r\nB: 2\n\n").unwrap();
        assert_eq!(cgi.headers.len(), 2);
        assert!(cgi.body.is_empty());
        let cgi = parse_cgi(b"X-Long: a\r\n  b\r\n\r\n").unwrap();
        assert_eq!(cgi.headers[0].1, "a b");
    }

    #[test]
    fn broken_cgi_output_is_an_error_not_a_guess() {
        assert!(parse_cgi(b"").is_err());
        assert!(parse_cgi(b"Content-Type: text/plain\r\n").is_err());
        assert!(parse_cgi(b"no colon here\r\n\r\n").is_err());
        assert!(parse_cgi(b"Status: abc\r\n\r\n").is_err());
        assert!(parse_cgi(b"Status: 42\r\n\r\n").is_err());
    }

    #[test]
    fn a_status_header_of_four_digits_is_refused_not_cut_to_three() {
        assert!(parse_cgi(b"Status: 2000 OK\r\n\r\n").is_err());
        assert!(parse_cgi(b"Status: 200OK\r\n\r\n").is_err());
        assert_eq!(parse_cgi(b"Status: 404\r\n\r\n").unwrap().status, 404);
        assert_eq!(parse_cgi(b"Status: 503 Busy\r\n\r\n").unwrap().status, 503);
    }

    #[test]
    fn status_json_is_parsed_strictly_when_valid() {
        let v =
            parse_status_json(br#"{"pool":"www","process manager":"static","active processes":1}"#)
                .unwrap();
        assert_eq!(v["pool"], "www");
        assert_eq!(v["active processes"], 1);
        assert!(parse_status_json(b"[1,2]").is_err());
        assert!(parse_status_json(b"File not found.").is_err());
    }

    #[test]
    fn status_json_with_raw_quotes_and_backslashes_is_repaired() {
        let body = "{\"pool\":\"www\",\"active processes\":1, \"processes\":[{\"pid\":7,\
            \"request uri\":\"/a\"b\\c?q=\"x\"\",\"user\":\"-\",\"script\":\"/srv/x\ty.php\"}]}";
        let v = parse_status_json(body.as_bytes()).unwrap();
        assert_eq!(v["pool"], "www");
        assert_eq!(v["processes"][0]["pid"], 7);
        assert_eq!(v["processes"][0]["request uri"], "/a\"b\\c?q=\"x\"");
        assert_eq!(v["processes"][0]["script"], "/srv/x\ty.php");
    }

    #[test]
    fn hopeless_status_json_falls_back_to_the_scalar_fields() {
        // A value with `",` inside defeats the repair; the top-level fields still come back.
        let body = r#"{"pool":"www","process manager":"dynamic","start time":1700000000,"active processes":2,"idle processes":1, "processes":[{"pid":7,"request uri":"/a","b":"c"#;
        let v = parse_status_json(body.as_bytes()).unwrap();
        assert_eq!(v["pool"], "www");
        assert_eq!(v["process manager"], "dynamic");
        assert_eq!(v["active processes"], 2);
        assert_eq!(v["idle processes"], 1);
        assert!(v.get("processes").is_none());
    }

    #[test]
    fn status_json_parsing_never_panics_on_garbage() {
        let valid = r#"{"pool":"w\"w","n":1,"processes":[{"pid":1,"request uri":"/x\u0041"}]}"#;
        for end in 0..=valid.len() {
            let _ = parse_status_json(&valid.as_bytes()[..end]);
        }
        let mut seed = 0x2545_f491_u32;
        for _ in 0..2000 {
            let junk: Vec<u8> = (0..(seed % 64))
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 17;
                    seed ^= seed << 5;
                    b"{}[]\":,\\u0aZ \t\x01\xff"[(seed % 16) as usize]
                })
                .collect();
            let _ = parse_status_json(&junk);
        }
    }
}
