//! What a command ended with: one typed [`Outcome`] for every command, run directly or
//! through the supervisor's control socket.
//!
//! A command returns `Result<Outcome>`; [`Outcome::from_result`] turns an error into an
//! outcome with the code [`Error::exit_code`] gives it, the one mapping from errors to the
//! exit table. The supervisor answers with the same type (serialized), and a forwarded
//! command returns the supervisor's outcome as is, its exit code included.

use crate::error::Error;
use crate::exit::ExitCode;
use serde_json::json;

/// What a command produced.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// The exit code.
    pub code: ExitCode,
    /// Human-readable result for stdout.
    pub text: String,
    /// Machine-readable result for `--json`.
    pub json: serde_json::Value,
    /// The error, for stderr (`fpmctl: error: ...`); `None` when the command succeeded.
    pub error: Option<String>,
}

impl Outcome {
    /// A successful outcome.
    pub fn ok(text: impl Into<String>, json: serde_json::Value) -> Outcome {
        Outcome {
            code: ExitCode::Ok,
            text: text.into(),
            json,
            error: None,
        }
    }

    /// A failure with `code` and a message for stderr.
    pub fn failure(code: ExitCode, message: impl Into<String>) -> Outcome {
        let message = message.into();
        Outcome {
            code,
            text: String::new(),
            json: json!({ "error": message, "exit_code": code.code() }),
            error: Some(message),
        }
    }

    /// The outcome of an error: its code from [`Error::exit_code`].
    pub fn from_error(err: &Error) -> Outcome {
        Outcome::failure(err.exit_code(), err.to_string())
    }

    /// A command's result as one outcome.
    pub fn from_result(result: Result<Outcome, Error>) -> Outcome {
        result.unwrap_or_else(|e| Outcome::from_error(&e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_keeps_its_own_exit_code() {
        let cases = [
            (Error::Usage("x".into()), 2),
            (
                Error::AddressInUse {
                    address: "127.0.0.1:9000".into(),
                    pool: "www".into(),
                    pid: 1,
                    program: "nc".into(),
                },
                7,
            ),
            (Error::Timeout("x".into()), 8),
            (
                Error::LauncherCutOff {
                    detail: "x".into(),
                    daemon: None,
                },
                8,
            ),
            (Error::Locked("x".into()), 9),
            (Error::Systemd("x".into()), 11),
            (Error::Interrupted("x".into()), 14),
        ];
        for (err, code) in cases {
            let out = Outcome::from_result(Err(err));
            assert_eq!(out.code.code(), code, "{out:?}");
            assert_eq!(out.json["exit_code"], code);
            assert!(out.error.is_some());
        }
        let ok = Outcome::from_result(Ok(Outcome::ok("fine\n", json!({}))));
        assert_eq!(ok.code, ExitCode::Ok);
        assert!(ok.error.is_none());
    }
}
