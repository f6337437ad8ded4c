//! The control connections of the supervisor's loop: accepted up to the limit, read without
//! blocking against each one's deadline, turned into [`Event::Control`] (a refused peer and a
//! bad request get their answer here), and the replies the machine's answers become.

use super::Driver;
use crate::deadline::Deadline;
use crate::exit::ExitCode;
use crate::outcome::Outcome;
use crate::supervise::control::{self, Conn, ReadOutcome};
use crate::supervise::machine::{self, Command as Cmd, ConnId, Event};
use crate::supervise::request;
use serde_json::json;
use tracing::{info, warn};

impl Driver {
    /// Accepts waiting connections while fewer than [`control::MAX_CONNECTIONS`] are open.
    pub(super) fn accept_control(&mut self) {
        while self.conns.len() + self.waiting.len() < control::MAX_CONNECTIONS {
            let stream = match self.control.accept() {
                Ok((s, _)) => s,
                Err(_) => return,
            };
            // A refused peer is still read (bounded like any other) so it gets its answer
            // instead of a broken pipe.
            let allowed = control::peer_allowed(&stream);
            match Conn::new(stream) {
                Ok(c) => {
                    let id = self.next_conn;
                    self.next_conn += 1;
                    if !allowed {
                        self.refused.insert(id);
                    }
                    self.conns
                        .insert(id, (c, Deadline::after(control::REQUEST_DEADLINE)));
                }
                Err(e) => warn!(error = %e, "control connection"),
            }
        }
    }

    /// Reads every open connection without blocking; a complete request becomes an event, a
    /// silent client past its deadline is closed.
    pub(super) fn read_control(&mut self) {
        let ids: Vec<ConnId> = self.conns.keys().copied().collect();
        for id in ids {
            let Some((conn, deadline)) = self.conns.get_mut(&id) else {
                continue;
            };
            let outcome = conn.read();
            let expired = deadline.expired();
            match outcome {
                ReadOutcome::Pending if !expired => continue,
                ReadOutcome::Pending => {
                    info!(conn = id, "control client sent no request in time: closed");
                    self.conns.remove(&id);
                    self.refused.remove(&id);
                }
                ReadOutcome::Closed => {
                    self.conns.remove(&id);
                    self.refused.remove(&id);
                }
                _ if self.refused.remove(&id) => {
                    warn!("refused a control connection from a user that is neither root nor ours");
                    let msg = format!(
                        "refused: only root or uid {} may control this supervisor",
                        nix::unistd::geteuid()
                    );
                    if let Some((c, _)) = self.conns.remove(&id) {
                        control::write_reply(c.stream, &reply_of(ExitCode::Failure, &msg));
                    }
                }
                ReadOutcome::Bad(msg) => {
                    if let Some((c, _)) = self.conns.remove(&id) {
                        warn!(conn = id, reason = %msg, "bad control request");
                        control::write_reply(c.stream, &reply_of(ExitCode::Usage, &msg));
                    }
                }
                ReadOutcome::Request(req) => {
                    let Some((c, _)) = self.conns.remove(&id) else {
                        continue;
                    };
                    let cmd = match request::control_action(&req) {
                        Ok(request::Action::Restart { ready_limit }) => {
                            Cmd::Restart { ready_limit }
                        }
                        Ok(request::Action::Stop { plan, limit }) => Cmd::Stop { plan, limit },
                        Ok(request::Action::Status) => Cmd::Status,
                        Err(msg) => {
                            control::write_reply(c.stream, &reply_of(ExitCode::Usage, &msg));
                            continue;
                        }
                    };
                    info!(conn = id, command = req.cmd.as_str(), "control request");
                    self.waiting.insert(id, c.stream);
                    self.queue.push_back(Event::Control { conn: id, cmd });
                }
            }
        }
    }

    /// The answer to `status`: what the machine says, and the sockets held.
    pub(super) fn status_reply(&self, v: &machine::StatusView) -> control::Reply {
        let me = std::process::id();
        let text = match (v.master, v.ready) {
            (Some(pid), true) => format!(
                "supervised by fpmctl {me}: master {pid} ready, {} restart(s){}{}\n",
                v.restarts,
                v.fpm_status
                    .as_ref()
                    .map(|s| format!(", FPM says: {s}"))
                    .unwrap_or_default(),
                if v.saturated {
                    ", saturated: every worker busy"
                } else {
                    ""
                }
            ),
            (Some(pid), false) => format!("supervised by fpmctl {me}: master {pid} starting\n"),
            (None, _) => format!("supervised by fpmctl {me}: FPM is down, restart pending\n"),
        };
        let code = if v.ready {
            ExitCode::Ok
        } else {
            ExitCode::NotReady
        };
        control::Reply::from(&Outcome {
            code,
            text,
            error: None,
            json: json!({
                "supervisor_pid": me,
                "master": v.master,
                "ready": v.ready,
                "restarts": v.restarts,
                "fpm_status": v.fpm_status,
                "saturated": v.saturated,
                "sockets": self.sockets.list.iter().map(|h| h.addr.to_string()).collect::<Vec<_>>(),
            }),
        })
    }
}

/// The reply for an outcome the supervisor reached: its [`Outcome`], serialized.
pub(super) fn reply_of(code: ExitCode, text: &str) -> control::Reply {
    let out = if code == ExitCode::Ok {
        Outcome::ok(
            format!("{text}\n"),
            json!({ "code": code.code(), "message": text }),
        )
    } else {
        Outcome::failure(code, text)
    };
    control::Reply::from(&out)
}
