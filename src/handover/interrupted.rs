//! Retirements that never finished. [`super::retire`] SIGSTOPs the old master before it
//! tells its workers to finish; an fpmctl (or supervisor) killed after that step leaves the
//! old master stopped (`T` in `/proc/PID/stat`) beside the new one: it holds its sockets,
//! its exited workers stay unreaped, and a SIGCONT would make it serve again or run its exit
//! cleanup (unlinking the socket paths and the new master's pid file).
//!
//! [`half_retired`] recognises that state from a snapshot (as data); [`finish`] completes
//! the retirement, but only for a master that is still stopped and still this config's, and
//! only while another master of the config runs and holds every listening socket itself.
//! A stopped master that is the only one is never touched here: that is not a retirement.
//!
//! An fpmctl killed earlier, while it proved the new master ready, leaves two running
//! masters on the same listening sockets (the new one inherited them). [`doubled`] finds
//! them: the oldest master that holds every address keeps serving (it served before the
//! interrupted restart; the new one was never proven ready), and every other running master
//! whose listening sockets are all the serving one's is retired as a stopped one would be.
//! Without this, the next restart found two masters and fell back to a cold restart.
//! Only masters of the same user are paired: a program another user started from a worker
//! can run php-fpm's binary with a command line naming the config and hold its inherited
//! listening sockets, and root must never retire the real master in its favour.

use super::{Retired, retire};
use crate::config::FpmConfig;
use crate::deadline::Deadline;
use crate::discovery::{self, PidFile, Snapshot};
use crate::procs::{self, ProcId, ProcInfo};
use tracing::{info, warn};

/// A master of the config left stopped by an interrupted retirement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HalfRetired {
    /// The stopped master.
    pub master: ProcId,
    /// The running master that holds every listening socket of the config.
    pub serving: ProcId,
}

/// Masters of `snap` in state `T` (stopped by a signal; `t`, stopped by a debugger, is not
/// ours to judge) while another master of the config runs and holds every address.
pub fn half_retired(snap: &Snapshot) -> Vec<HalfRetired> {
    let masters: Vec<&ProcInfo> = snap
        .master
        .iter()
        .chain(snap.other_masters.iter())
        .collect();
    let Some(serving) = masters
        .iter()
        .find(|m| m.state != 'T' && !m.is_gone() && serves_all(snap, m))
    else {
        return Vec::new();
    };
    masters
        .iter()
        .filter(|m| m.state == 'T' && same_user(m, serving))
        .map(|m| HalfRetired {
            master: m.id,
            serving: serving.id,
        })
        .collect()
}

/// True when both processes are known to run as the same user. A program another user
/// started may run php-fpm's binary with a command line naming the config and hold its
/// listening sockets (programs started from a worker inherit them): it must never be the
/// master in whose favour a master is retired.
fn same_user(a: &ProcInfo, b: &ProcInfo) -> bool {
    a.uid.is_some() && a.uid == b.uid
}

/// True when `m` itself holds a listening socket on every address of the config, as seen
/// completely (an address whose holders are not all known proves nothing).
fn serves_all(snap: &Snapshot, m: &ProcInfo) -> bool {
    !snap.addresses.is_empty()
        && snap.addresses.iter().all(|a| {
            a.holders_known && !a.inodes.is_empty() && a.holders.iter().any(|h| h.proc.id == m.id)
        })
}

/// Running masters of `snap` beside the serving one, on its sockets: the second master of a
/// hand-over that was interrupted before it retired the first (`master` is the extra one).
/// The serving one is the oldest running master that holds every address; an extra one holds
/// at least one of the config's listening sockets and none the serving one does not.
pub fn doubled(snap: &Snapshot) -> Vec<HalfRetired> {
    let mut running: Vec<&ProcInfo> = snap
        .master
        .iter()
        .chain(snap.other_masters.iter())
        .filter(|m| m.state != 'T' && m.state != 't' && !m.is_gone())
        .collect();
    running.sort_by_key(|m| m.id.start_time);
    let Some(serving) = running.iter().find(|m| serves_all(snap, m)) else {
        return Vec::new();
    };
    let listening: Vec<u64> = snap
        .addresses
        .iter()
        .flat_map(|a| a.inodes.iter().copied())
        .collect();
    running
        .iter()
        .filter(|m| m.id != serving.id && same_user(m, serving))
        .filter(|m| {
            let held: Vec<u64> = m
                .sockets
                .iter()
                .copied()
                .filter(|i| listening.contains(i))
                .collect();
            !held.is_empty() && held.iter().all(|i| serving.sockets.contains(i))
        })
        .map(|m| HalfRetired {
            master: m.id,
            serving: serving.id,
        })
        .collect()
}

/// What [`finish`] did to one stopped (or doubled) master.
#[derive(Debug)]
pub struct Finished {
    /// The master retired and the one serving.
    pub found: HalfRetired,
    /// True for a running master beside the serving one ([`doubled`]), false for a stopped
    /// one ([`half_retired`]).
    pub doubled: bool,
    /// The retirement's outcome.
    pub result: crate::error::Result<Retired>,
}

impl Finished {
    /// One line for a command's output.
    pub fn line(&self) -> String {
        let HalfRetired { master, serving } = self.found;
        let left = if self.doubled {
            "left running beside it on its sockets by an interrupted restart"
        } else {
            "left stopped by an interrupted restart"
        };
        match &self.result {
            Ok(r) => format!(
                "finished retiring master {} ({left}; master {} serves): {} worker(s) finished their requests{}",
                master.pid,
                serving.pid,
                r.workers,
                if r.killed.is_empty() {
                    String::new()
                } else {
                    format!(", {} killed at the deadline", r.killed.len())
                }
            ),
            Err(e) => format!(
                "could not finish retiring master {} ({left}; master {} serves): {e}",
                master.pid, serving.pid
            ),
        }
    }
}

/// Finishes every retirement [`half_retired`] and [`doubled`] find in `snap`, a look at
/// `cfg`. Each master to retire is looked at again right before: still stopped (or still
/// running, for a doubled one), still this config's master, and the serving master still
/// alive and running; otherwise it is left alone. A pid file that names a master retired
/// here is pointed at the serving master. Busy workers have until `deadline` to finish their
/// requests.
pub fn finish(cfg: &FpmConfig, snap: &Snapshot, deadline: Deadline) -> Vec<Finished> {
    let found = half_retired(snap)
        .into_iter()
        .map(|h| (h, false))
        .chain(doubled(snap).into_iter().map(|h| (h, true)));
    let mut done = Vec::new();
    for (h, is_doubled) in found {
        let still_there = procs::read_same(h.master).is_some_and(|p| {
            (p.state == 'T') != is_doubled && p.state != 't' && discovery::is_master_of(&p, cfg)
        });
        let still_serving = procs::read_same(h.serving)
            .is_some_and(|p| p.state != 'T' && discovery::is_master_of(&p, cfg));
        if !still_there || !still_serving {
            info!(
                pid = h.master.pid,
                serving = h.serving.pid,
                "a master to retire changed since it was seen; left alone"
            );
            continue;
        }
        if is_doubled {
            warn!(
                pid = h.master.pid,
                serving = h.serving.pid,
                "master left running beside the serving one by an interrupted restart: retiring it"
            );
        } else {
            warn!(
                pid = h.master.pid,
                serving = h.serving.pid,
                "master left stopped by an interrupted restart: finishing its retirement"
            );
        }
        let result = retire(h.master, cfg, deadline);
        if result.is_ok() {
            repoint_pid_file(&snap.pid_file, h);
        }
        done.push(Finished {
            found: h,
            doubled: is_doubled,
            result,
        });
    }
    done
}

/// Writes the serving master's PID into a pid file that named the retired master (the new
/// master of an interrupted hand-over that failed: the old one serves and its pid file was
/// about to be restored). Never through a symlink; only a regular file is rewritten.
fn repoint_pid_file(pid_file: &PidFile, h: HalfRetired) {
    let (Some(path), Some(pid)) = (pid_file.path(), pid_file.pid()) else {
        return;
    };
    if pid != h.master.pid {
        return;
    }
    if super::write_pid_file(path, &format!("{}\n", h.serving.pid)) {
        info!(pid = h.serving.pid, path = %path.display(), "pid file names the serving master again");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::discovery::{Address, Holder, Role};
    use crate::listen::ListenAddr;

    fn master(pid: i32, state: char) -> ProcInfo {
        ProcInfo {
            id: ProcId {
                pid,
                start_time: 1000 + pid as u64,
            },
            ppid: 1,
            pgrp: pid,
            state,
            title: "php-fpm: master process (/etc/fpm.conf)".into(),
            uid: Some(0),
            ..ProcInfo::default()
        }
    }

    fn snap(master: ProcInfo, others: Vec<ProcInfo>, holders: &[&ProcInfo]) -> Snapshot {
        Snapshot {
            pid_file: PidFile::NotConfigured,
            master: Some(master),
            other_masters: others,
            workers: Vec::new(),
            orphans: Vec::new(),
            addresses: vec![Address {
                pool: "www".into(),
                addr: ListenAddr::parse("127.0.0.1:9000").unwrap(),
                inodes: vec![7],
                holders: holders
                    .iter()
                    .map(|p| Holder {
                        proc: (*p).clone(),
                        role: Role::Master,
                    })
                    .collect(),
                holders_known: true,
            }],
            lookalikes: Vec::new(),
        }
    }

    #[test]
    fn a_stopped_master_beside_one_that_serves_is_half_retired_whichever_the_pid_file_names() {
        let (old, new) = (master(10, 'T'), master(20, 'S'));
        let s = snap(new.clone(), vec![old.clone()], &[&old, &new]);
        let want = vec![HalfRetired {
            master: old.id,
            serving: new.id,
        }];
        assert_eq!(half_retired(&s), want);
        // The pid file may name the stopped one (a failed new master being retired).
        let s = snap(old.clone(), vec![new.clone()], &[&old, &new]);
        assert_eq!(half_retired(&s), want);
    }

    fn holding(mut p: ProcInfo, sockets: &[u64]) -> ProcInfo {
        p.sockets = sockets.to_vec();
        p
    }

    #[test]
    fn a_second_running_master_on_the_first_ones_sockets_is_doubled_and_the_oldest_serves() {
        // The new master (20) inherited socket 7 from the old one (10); it also holds a
        // socket that is no listening address (FPM's own pipes and sockets).
        let old = holding(master(10, 'S'), &[7]);
        let new = holding(master(20, 'S'), &[7, 99]);
        let want = vec![HalfRetired {
            master: new.id,
            serving: old.id,
        }];
        // Whichever the pid file names (the new master wrote it at its start).
        let s = snap(new.clone(), vec![old.clone()], &[&old, &new]);
        assert_eq!(doubled(&s), want);
        let s = snap(old.clone(), vec![new.clone()], &[&old, &new]);
        assert_eq!(doubled(&s), want);
        // Nothing stopped here: not a half-retired master.
        assert!(half_retired(&s).is_empty());
    }

    #[test]
    fn masters_that_do_not_share_the_serving_ones_sockets_are_not_doubled() {
        let old = holding(master(10, 'S'), &[7]);
        // Holds a listening socket the serving master does not: it is not a copy of it.
        let mut s = snap(
            old.clone(),
            vec![holding(master(20, 'S'), &[7, 8])],
            &[&old],
        );
        s.addresses[0].inodes = vec![7, 8];
        assert!(doubled(&s).is_empty());
        // Holds no listening socket of the config at all.
        let s = snap(old.clone(), vec![holding(master(20, 'S'), &[99])], &[&old]);
        assert!(doubled(&s).is_empty());
        // Alone.
        assert!(doubled(&snap(old.clone(), vec![], &[&old])).is_empty());
        // Holders that could not all be seen prove nothing.
        let new = holding(master(20, 'S'), &[7]);
        let mut s = snap(new.clone(), vec![old.clone()], &[&old, &new]);
        s.addresses[0].holders_known = false;
        assert!(doubled(&s).is_empty());
        // A stopped one is half-retired, not doubled; one stopped by a debugger is neither.
        let stopped = holding(master(20, 'T'), &[7]);
        let s = snap(old.clone(), vec![stopped.clone()], &[&old, &stopped]);
        assert!(doubled(&s).is_empty());
        let traced = holding(master(20, 't'), &[7]);
        let s = snap(old.clone(), vec![traced.clone()], &[&old, &traced]);
        assert!(doubled(&s).is_empty());
    }

    #[test]
    fn a_master_is_never_retired_in_favour_of_a_process_of_another_user_or_of_none_known() {
        // An older process of another user on the sockets, running the binary: the master
        // is neither doubled beside it nor, stopped, half-retired.
        let mut planted = holding(master(5, 'S'), &[7]);
        planted.uid = Some(33);
        let real = holding(master(20, 'S'), &[7]);
        let s = snap(real.clone(), vec![planted.clone()], &[&planted, &real]);
        assert!(doubled(&s).is_empty());
        let stopped = holding(master(20, 'T'), &[7]);
        let s = snap(
            stopped.clone(),
            vec![planted.clone()],
            &[&planted, &stopped],
        );
        assert!(half_retired(&s).is_empty());
        // Users not known: nothing is proven.
        let (mut old, mut new) = (
            holding(master(10, 'S'), &[7]),
            holding(master(20, 'S'), &[7]),
        );
        old.uid = None;
        new.uid = None;
        assert!(doubled(&snap(new.clone(), vec![old.clone()], &[&old, &new])).is_empty());
    }

    #[test]
    fn a_stopped_master_alone_or_beside_one_that_does_not_hold_the_sockets_is_left_alone() {
        let old = master(10, 'T');
        assert!(half_retired(&snap(old.clone(), vec![], &[&old])).is_empty());
        // Another master runs but the socket is only the stopped one's.
        let other = master(20, 'S');
        assert!(half_retired(&snap(old.clone(), vec![other.clone()], &[&old])).is_empty());
        // Two stopped masters: nobody serves.
        let also = master(30, 'T');
        assert!(half_retired(&snap(old.clone(), vec![also.clone()], &[&old, &also])).is_empty());
        // Stopped by a debugger ('t'): not a retirement.
        let traced = master(40, 't');
        assert!(
            half_retired(&snap(
                other.clone(),
                vec![traced.clone()],
                &[&other, &traced]
            ))
            .is_empty()
        );
        // Holders that could not all be seen prove nothing.
        let mut s = snap(other.clone(), vec![old.clone()], &[&old, &other]);
        s.addresses[0].holders_known = false;
        assert!(half_retired(&s).is_empty());
    }
}
