//! Text for bytes that may not be UTF-8 (Linux paths may hold any byte but `/` and NUL),
//! without losing a byte, and the lossy form that goes into JSON.
//!
//! fpmctl reads configs and process titles as text. [`decode`] keeps valid UTF-8 as it is
//! and turns each byte of an invalid sequence into one code point of the last 256 of the
//! Supplementary Private Use Area-B (U+10FF00 + byte), which [`to_path`] turns back into
//! that byte. So a config in `/srv/caf\xe9/` names the same file after a round trip, and a
//! master's title names its config byte for byte. (A config that uses those private code
//! points itself would be misread; none is known to.)
//!
//! JSON strings must be UTF-8: [`json_path`] encodes a path lossily (U+FFFD for each bad
//! sequence) and [`lossy_note`] says so in the document.

use std::ffi::OsString;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

/// The first of the 256 code points that stand for single bytes.
const BASE: u32 = 0x10_FF00;

/// `bytes` as text: valid UTF-8 unchanged, every other byte as U+10FF00 + byte.
pub fn decode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        out.push_str(chunk.valid());
        for &b in chunk.invalid() {
            out.extend(char::from_u32(BASE + u32::from(b)));
        }
    }
    out
}

/// The bytes [`decode`] read, back from its text.
pub fn to_bytes(text: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len());
    for c in text.chars() {
        match u32::from(c)
            .checked_sub(BASE)
            .and_then(|b| u8::try_from(b).ok())
        {
            Some(b) => out.push(b),
            None => out.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes()),
        }
    }
    out
}

/// A path from text read with [`decode`], byte for byte.
pub fn to_path(text: &str) -> PathBuf {
    PathBuf::from(OsString::from_vec(to_bytes(text)))
}

/// Text read with [`decode`], for a person: bytes that are not UTF-8 as U+FFFD.
pub fn display(text: &str) -> String {
    String::from_utf8_lossy(&to_bytes(text)).into_owned()
}

/// A path as a JSON string: lossy (U+FFFD) where it is not UTF-8, never an error.
pub fn json_path(path: &Path) -> serde_json::Value {
    serde_json::Value::String(path.to_string_lossy().into_owned())
}

/// [`json_path`] of an optional path; `null` for none.
pub fn json_opt_path(path: Option<&Path>) -> serde_json::Value {
    path.map(json_path).unwrap_or(serde_json::Value::Null)
}

/// Adds `"lossy_paths"` to a JSON object: whether any of `paths` is not UTF-8 and was
/// therefore encoded with U+FFFD (then also a `"note"` saying so).
pub fn lossy_note<'a>(json: &mut serde_json::Value, paths: impl IntoIterator<Item = &'a Path>) {
    let lossy = paths
        .into_iter()
        .any(|p| std::str::from_utf8(p.as_os_str().as_bytes()).is_err());
    json["lossy_paths"] = lossy.into();
    if lossy {
        json["note"] =
            "some paths are not UTF-8; in this JSON their invalid bytes are shown as U+FFFD".into();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_byte_survives_a_round_trip() {
        let all: Vec<u8> = (0..=255u8).collect();
        assert_eq!(to_bytes(&decode(&all)), all);
        let path = b"/tmp/fpm-\xff-dir/caf\xc3\xa9/php-fpm.conf";
        let text = decode(path);
        assert!(text.starts_with("/tmp/fpm-"));
        assert!(text.ends_with("caf\u{e9}/php-fpm.conf"));
        assert_eq!(to_path(&text).as_os_str().as_bytes(), path);
        assert_eq!(
            display(&text),
            "/tmp/fpm-\u{fffd}-dir/caf\u{e9}/php-fpm.conf"
        );
    }

    #[test]
    fn valid_utf8_is_unchanged() {
        assert_eq!(decode("pool www ünï".as_bytes()), "pool www ünï");
        assert_eq!(to_path("/etc/php.conf"), PathBuf::from("/etc/php.conf"));
    }

    #[test]
    fn json_says_when_a_path_was_encoded_lossily() {
        let bad = to_path(&decode(b"/tmp/\xff/x.conf"));
        let mut doc = serde_json::json!({ "config": json_path(&bad) });
        assert_eq!(doc["config"], "/tmp/\u{fffd}/x.conf");
        lossy_note(&mut doc, [bad.as_path()]);
        assert_eq!(doc["lossy_paths"], true);
        assert!(doc["note"].is_string());
        let mut ok = serde_json::json!({});
        lossy_note(&mut ok, [Path::new("/etc/x.conf")]);
        assert_eq!(ok["lossy_paths"], false);
        assert!(ok.get("note").is_none());
    }
}
