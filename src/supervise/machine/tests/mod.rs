//! The machine driven with event sequences: no processes, no sleeps, time is data.
//! Starting, readiness, crashes and backoff, requested restarts and case 5 here; signals,
//! stopping, health and the rest in [`signals_stop_health`].

mod settled;
mod signals_stop_health;

use super::*;
use crate::supervise::policy::RestartPolicy;
use nix::sys::signal::Signal::{SIGKILL, SIGQUIT, SIGSTOP, SIGTERM};

const MS: u64 = 1;
const S: u64 = 1000 * MS;

fn settings() -> Settings {
    Settings {
        policy: RestartPolicy {
            max_restarts: 3,
            within: Duration::from_secs(60),
            base_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(1),
        },
        health_interval: Duration::from_secs(10),
        unhealthy_after: 2,
        ready_timeout: Duration::from_secs(30),
        notify_grace: Duration::from_secs(1),
        drain_timeout: Duration::from_secs(60),
        stop_plan: "QUIT:20s,TERM:5s,KILL:2s".parse().unwrap(),
        watchdog: None,
    }
}

fn id(pid: i32) -> ProcId {
    ProcId {
        pid,
        start_time: 1000 + pid as u64,
    }
}

/// A machine and a clock that only moves when a step says so.
struct Run {
    m: Machine,
    t0: Instant,
    now: Instant,
    log: Vec<(u64, Action)>,
}

impl Run {
    fn new(s: Settings) -> (Run, Vec<Action>) {
        let t0 = Instant::now();
        let (m, out) = Machine::start(s, t0);
        (
            Run {
                m,
                t0,
                now: t0,
                log: Vec::new(),
            },
            out,
        )
    }

    /// Feeds `ev` at `ms` after the start; returns its actions.
    fn at(&mut self, ms: u64, ev: Event) -> Vec<Action> {
        self.now = self.t0 + Duration::from_millis(ms);
        let out = self.m.on(ev, self.now);
        self.log.extend(out.iter().cloned().map(|a| (ms, a)));
        out
    }

    /// Feeds a table of `(ms, event)` steps; returns every action with its time.
    fn steps(&mut self, table: Vec<(u64, Event)>) -> Vec<Action> {
        let mut all = Vec::new();
        for (ms, ev) in table {
            all.extend(self.at(ms, ev));
        }
        all
    }

    fn wake_ms(&self) -> Option<u64> {
        self.m
            .next_wakeup()
            .and_then(|d| d.instant())
            .map(|i| i.saturating_duration_since(self.t0).as_millis() as u64)
    }
}

fn spawned(master: MasterNo, pid: i32) -> Event {
    Event::Spawned {
        master,
        id: id(pid),
        hung_after: None,
    }
}

fn ready(master: MasterNo) -> Event {
    Event::Notify {
        master,
        ready: true,
        status: Some("Ready to handle connections".into()),
    }
}

fn exited(master: MasterNo) -> Event {
    Event::MasterExited {
        master,
        how: "was killed by SIGKILL".into(),
    }
}

fn ctl(conn: ConnId, cmd: Command) -> Event {
    Event::Control { conn, cmd }
}

fn sig(master: MasterNo, pid: i32, signal: Signal) -> Action {
    Action::Signal {
        target: Target::Master {
            master,
            id: id(pid),
        },
        signal,
    }
}

fn wsig(master: MasterNo, pid: i32, signal: Signal) -> Action {
    Action::Signal {
        target: Target::Worker {
            master,
            id: id(pid),
        },
        signal,
    }
}

fn spawn_of(out: &[Action]) -> Vec<MasterNo> {
    out.iter()
        .filter_map(|a| match a {
            Action::Spawn { master, .. } => Some(*master),
            _ => None,
        })
        .collect()
}

fn replies(out: &[Action]) -> Vec<(ConnId, ExitCode)> {
    out.iter()
        .filter_map(|a| match a {
            Action::Reply {
                conn,
                answer: Answer::Done(code, _),
            } => Some((*conn, *code)),
            _ => None,
        })
        .collect()
}

fn exit_of(out: &[Action]) -> Option<ExitCode> {
    out.iter().find_map(|a| match a {
        Action::Exit(c) => Some(*c),
        _ => None,
    })
}

/// Master 1 (pid 100) ready and serving.
fn up() -> Run {
    let (mut r, out) = Run::new(settings());
    assert_eq!(
        out,
        vec![Action::Spawn {
            master: 1,
            why: Why::First
        }]
    );
    r.steps(vec![(0, spawned(1, 100)), (30, ready(1))]);
    assert_eq!(r.m.phase(), Phase::Serving);
    r
}

/// `up()` plus a requested restart whose replacement (master 2, pid 200) is starting.
fn replacing(conn: ConnId) -> Run {
    let mut r = up();
    let out = r.at(1000, ctl(conn, Command::Restart { ready_limit: None }));
    assert_eq!(out, vec![Action::LoadConfig]);
    let out = r.at(1010, Event::ConfigLoaded(Ok(())));
    assert_eq!(spawn_of(&out), vec![2]);
    r.at(1010, spawned(2, 200));
    assert_eq!(r.m.phase(), Phase::Replacing);
    r
}

/// Every master ever spawned minus every master reported exited.
fn unreaped(r: &Run) -> BTreeSet<MasterNo> {
    r.m.masters().keys().copied().collect()
}

// ---- first start and readiness ------------------------------------------------------------

#[test]
fn first_start_spawns_one_master_and_waits_for_it() {
    let (r, out) = Run::new(settings());
    assert_eq!(spawn_of(&out), vec![1]);
    assert_eq!(r.m.phase(), Phase::Starting);
    // Readiness probe at the notify grace, ready timeout later.
    assert_eq!(r.wake_ms(), Some(S));
}

#[test]
fn ready_from_fpm_notify_makes_it_serving_and_tells_systemd() {
    let (mut r, _) = Run::new(settings());
    r.at(0, spawned(1, 100));
    let out = r.at(26, ready(1));
    assert!(
        out.iter()
            .any(|a| matches!(a, Action::NotifySystemd(t) if t.starts_with("READY=1")))
    );
    assert!(out.contains(&Action::DropUnusedSockets));
    assert_eq!(r.m.status().master, Some(100));
    assert!(r.m.status().ready);
}

#[test]
fn a_status_message_without_ready_does_not_make_it_ready() {
    let (mut r, _) = Run::new(settings());
    r.at(0, spawned(1, 100));
    r.at(
        10,
        Event::Notify {
            master: 1,
            ready: false,
            status: Some("starting".into()),
        },
    );
    assert_eq!(r.m.phase(), Phase::Starting);
}

#[test]
fn without_notify_readiness_is_probed_with_growing_pauses() {
    let (mut r, _) = Run::new(settings());
    r.at(0, spawned(1, 100));
    // (when the probe is due, when the next one is due after it fails 5 ms later)
    let table: Vec<(u64, Option<u64>)> = vec![(S, Some(S + 55)), (S + 55, Some(S + 160))];
    let mut t = 0;
    for (probe_at, next) in table {
        let out = r.at(probe_at, Event::Timer);
        assert_eq!(
            out,
            vec![Action::Check {
                master: 1,
                purpose: Purpose::Ready
            }]
        );
        // No second probe while one is in flight.
        assert!(r.at(probe_at, Event::Timer).is_empty());
        t = probe_at + 5;
        r.at(
            t,
            Event::Checked {
                master: 1,
                purpose: Purpose::Ready,
                result: Err("pool www: 1 of 2 workers".into()),
                saturated: false,
            },
        );
        assert_eq!(r.wake_ms(), next);
    }
    let out = r.at(S + 160, Event::Timer);
    assert_eq!(out.len(), 1);
    let out = r.at(
        t + 210,
        Event::Checked {
            master: 1,
            purpose: Purpose::Ready,
            result: Ok(()),
            saturated: false,
        },
    );
    assert!(out.contains(&Action::DropUnusedSockets));
    assert_eq!(r.m.phase(), Phase::Serving);
}

#[test]
fn a_master_not_ready_in_time_is_killed_and_counted_as_a_crash() {
    let (mut r, _) = Run::new(settings());
    r.at(0, spawned(1, 100));
    let out = r.at(30 * S, Event::Timer);
    assert!(out.contains(&sig(1, 100, SIGKILL)));
    let out = r.at(30 * S + 5, exited(1));
    assert_eq!(spawn_of(&out), vec![2]);
}

#[test]
fn a_master_that_cannot_be_spawned_is_a_crash_with_backoff() {
    let (mut r, _) = Run::new(settings());
    let out = r.at(
        0,
        Event::SpawnFailed {
            master: 1,
            error: "ENOENT".into(),
        },
    );
    assert_eq!(spawn_of(&out), vec![2], "first crash restarts at once");
    let out = r.at(
        1,
        Event::SpawnFailed {
            master: 2,
            error: "ENOENT".into(),
        },
    );
    assert!(spawn_of(&out).is_empty());
    assert!(matches!(r.m.phase(), Phase::Backoff(_)));
    assert_eq!(r.wake_ms(), Some(101));
    assert!(unreaped(&r).is_empty());
}

// ---- crashes, backoff, crash loop -------------------------------------------------------

#[test]
fn a_crash_restores_the_socket_path_quits_orphans_and_restarts_at_once() {
    let mut r = up();
    let out = r.at(5 * S, exited(1));
    assert_eq!(out[0], Action::RestoreSocketPaths, "the path first");
    assert_eq!(spawn_of(&out), vec![2]);
    // The orphans keep serving until the new master is ready: only then are they looked
    // for, so they never compete with its start.
    assert!(!out.contains(&Action::ListWorkers { master: 1 }), "{out:?}");
    r.at(5 * S, spawned(2, 200));
    let out = r.at(5 * S + 20, ready(2));
    assert!(out.contains(&Action::ListWorkers { master: 1 }), "{out:?}");
    // READY=1 is relayed before the orphans are looked for (a /proc scan).
    let relay = out
        .iter()
        .position(|a| matches!(a, Action::NotifySystemd(t) if t.starts_with("READY=1")));
    let listing = out
        .iter()
        .position(|a| *a == Action::ListWorkers { master: 1 });
    assert!(relay < listing && relay.is_some(), "{out:?}");
    let out = r.at(
        5 * S,
        Event::WorkersOf {
            master: 1,
            workers: vec![id(101), id(102)],
        },
    );
    assert_eq!(out, vec![wsig(1, 101, SIGQUIT), wsig(1, 102, SIGQUIT)]);
    r.at(5 * S + 10, Event::ChildReaped { pid: 101 });
    r.at(5 * S + 20, Event::WorkerGone(id(102)));
    assert_eq!(r.m.tracked_workers().count(), 0);
}

#[test]
fn a_dead_master_whose_orphans_are_deferred_stays_referenced_for_the_driver() {
    // Regression: the driver forgot the dead master's PID before its orphans were listed.
    let mut r = up();
    r.at(S, exited(1));
    assert!(r.m.referenced().contains(&1));
    r.at(S, spawned(2, 200));
    r.at(S + 20, ready(2));
    assert!(r.m.referenced().contains(&1), "until its workers are known");
    r.at(
        S + 20,
        Event::WorkersOf {
            master: 1,
            workers: vec![],
        },
    );
    assert_eq!(r.m.referenced(), BTreeSet::from([2]));
}

#[test]
fn orphans_of_a_crash_waiting_for_the_new_master_get_the_stop_plan_on_stop() {
    let mut r = up();
    r.at(S, exited(1));
    let out = r.at(S + 5, Event::Signal(Sig::Term));
    assert!(out.contains(&Action::ListWorkers { master: 1 }), "{out:?}");
    let out = r.at(
        S + 5,
        Event::WorkersOf {
            master: 1,
            workers: vec![id(101)],
        },
    );
    assert_eq!(out, vec![wsig(1, 101, SIGQUIT)]);
}

#[test]
fn repeated_crashes_back_off_exponentially_then_give_up() {
    let mut r = up();
    // (time, master that crashes, spawn expected right away, backoff deadline expected)
    let table: Vec<(u64, MasterNo, bool, Option<u64>)> = vec![
        (S, 1, true, None),
        (2 * S, 2, false, Some(2 * S + 100)),
        (3 * S, 3, false, Some(3 * S + 200)),
    ];
    for (t, crashed, at_once, backoff) in table {
        if crashed > 1 {
            r.at(t - 500, spawned(crashed, 100 + crashed as i32));
        }
        let out = r.at(t, exited(crashed));
        assert_eq!(!spawn_of(&out).is_empty(), at_once, "at {t}");
        assert_eq!(r.wake_ms(), backoff.or(Some(t + S)), "at {t}");
        if let Some(b) = backoff {
            assert!(r.at(b - 1, Event::Timer).is_empty());
            let out = r.at(b, Event::Timer);
            assert_eq!(spawn_of(&out), vec![crashed + 1]);
        }
    }
    r.at(3 * S + 300, spawned(4, 104));
    let out = r.at(4 * S, exited(4));
    assert!(matches!(
        r.m.phase(),
        Phase::Stopping(Stopping {
            code: ExitCode::CrashLoop,
            ..
        })
    ));
    assert!(spawn_of(&out).is_empty());
    let out = r.at(4 * S, Event::NoChildren);
    assert_eq!(exit_of(&out), Some(ExitCode::CrashLoop));
}

#[test]
fn backoff_jitter_from_the_driver_lengthens_the_delay_by_at_most_a_quarter() {
    let mut r = up();
    r.m.set_jitter(0.999);
    r.at(S, exited(1));
    r.at(S, spawned(2, 200));
    r.at(2 * S, exited(2));
    let w = r.wake_ms().unwrap() - 2 * S;
    assert!((100..=125).contains(&w), "{w}");
}

#[test]
fn crashes_outside_the_window_do_not_add_up() {
    let mut r = up();
    let mut master = 1;
    for i in 0..6u64 {
        let t = (i + 1) * 100 * S;
        let out = r.at(t, exited(master));
        assert_eq!(
            spawn_of(&out),
            vec![master + 1],
            "crash {i} restarts at once"
        );
        master += 1;
        r.at(t + 10, spawned(master, 100 + master as i32));
        r.at(t + 20, ready(master));
    }
}

#[test]
fn a_restart_request_during_backoff_starts_fpm_now() {
    let mut r = up();
    r.at(S, exited(1));
    r.at(S, spawned(2, 200));
    r.at(2 * S, exited(2));
    assert!(matches!(r.m.phase(), Phase::Backoff(_)));
    assert_eq!(
        r.at(2 * S + 10, ctl(7, Command::Restart { ready_limit: None })),
        vec![Action::LoadConfig]
    );
    let out = r.at(2 * S + 20, Event::ConfigLoaded(Ok(())));
    assert_eq!(spawn_of(&out), vec![3]);
    r.at(2 * S + 20, spawned(3, 300));
    let out = r.at(2 * S + 50, ready(3));
    assert_eq!(replies(&out), vec![(7, ExitCode::Ok)]);
    // The backoff deadline no longer spawns anything.
    assert!(spawn_of(&r.at(3 * S, Event::Timer)).is_empty());
}

// ---- requested restarts -----------------------------------------------------------------

#[test]
fn a_restart_starts_the_new_master_beside_the_old_and_retires_the_old_without_cleanup() {
    let mut r = replacing(1);
    let out = r.at(1100, ready(2));
    assert_eq!(replies(&out), vec![(1, ExitCode::Ok)]);
    assert_eq!(out[0], sig(1, 100, SIGSTOP));
    assert_eq!(out[1], Action::ListWorkers { master: 1 });
    let out = r.at(
        1100,
        Event::WorkersOf {
            master: 1,
            workers: vec![id(101)],
        },
    );
    assert_eq!(out, vec![wsig(1, 101, SIGQUIT)]);
    assert!(!out.contains(&sig(1, 100, SIGKILL)));
    let out = r.at(5000, Event::WorkerGone(id(101)));
    assert_eq!(out, vec![sig(1, 100, SIGKILL)]);
    r.at(5001, exited(1));
    assert_eq!(unreaped(&r), BTreeSet::from([2]));
    assert_eq!(r.m.status().master, Some(200));
}

#[test]
fn a_retired_master_without_workers_is_killed_at_once() {
    let mut r = replacing(1);
    r.at(1100, ready(2));
    let out = r.at(
        1100,
        Event::WorkersOf {
            master: 1,
            workers: vec![],
        },
    );
    assert_eq!(out, vec![sig(1, 100, SIGKILL)]);
}

#[test]
fn restart_requests_during_a_restart_share_its_answer() {
    let mut r = replacing(1);
    assert!(
        r.at(1020, ctl(2, Command::Restart { ready_limit: None }))
            .is_empty()
    );
    assert!(r.at(1030, Event::Signal(Sig::Hup)).is_empty());
    let out = r.at(1100, ready(2));
    assert_eq!(replies(&out), vec![(1, ExitCode::Ok), (2, ExitCode::Ok)]);
}

#[test]
fn a_broken_config_keeps_the_running_fpm_and_says_why() {
    let mut r = up();
    r.at(S, ctl(3, Command::Restart { ready_limit: None }));
    let out = r.at(
        S,
        Event::ConfigLoaded(Err((ExitCode::ConfigInvalid, "php-fpm -t failed".into()))),
    );
    assert_eq!(replies(&out), vec![(3, ExitCode::ConfigInvalid)]);
    assert!(spawn_of(&out).is_empty());
    assert_eq!(r.m.phase(), Phase::Serving);
}

#[test]
fn a_crash_while_the_config_is_tested_restarts_at_once_and_the_verdict_starts_nothing_more() {
    // The config test runs beside the loop: other events come before its verdict.
    let mut r = up();
    let out = r.at(S, ctl(3, Command::Restart { ready_limit: None }));
    assert_eq!(out, vec![Action::LoadConfig]);
    let out = r.at(S + 10, exited(1));
    assert_eq!(
        spawn_of(&out),
        vec![2],
        "the crash restart does not wait for the test"
    );
    r.at(S + 20, spawned(2, 200));
    let out = r.at(S + 30, Event::ConfigLoaded(Ok(())));
    assert!(spawn_of(&out).is_empty(), "{out:?}");
    // The master the crash started answers the restart once ready.
    let out = r.at(S + 40, ready(2));
    assert_eq!(replies(&out), vec![(3, ExitCode::Ok)]);
    assert_eq!(r.m.phase(), Phase::Serving);
}

#[test]
fn a_stop_while_the_config_is_tested_ignores_the_verdict() {
    let mut r = up();
    r.at(S, ctl(3, Command::Restart { ready_limit: None }));
    let out = r.at(S + 10, Event::Signal(Sig::Term));
    assert!(out.contains(&sig(1, 100, SIGQUIT)), "{out:?}");
    let out = r.at(S + 20, Event::ConfigLoaded(Ok(())));
    assert!(spawn_of(&out).is_empty(), "{out:?}");
    assert!(matches!(r.m.phase(), Phase::Stopping(_)));
}

#[test]
fn a_replacement_that_dies_before_ready_keeps_the_old_master() {
    let mut r = replacing(4);
    let out = r.at(1200, exited(2));
    assert_eq!(replies(&out), vec![(4, ExitCode::FpmDied)]);
    assert!(!out.contains(&Action::RestoreSocketPaths));
    // The serving master keeps its config and its sockets' permissions.
    assert!(out.contains(&Action::RevertConfig));
    assert_eq!(r.m.phase(), Phase::Serving);
    assert_eq!(r.m.status().master, Some(100));
}

#[test]
fn a_replacement_that_cannot_be_spawned_reverts_the_config_and_one_that_serves_does_not() {
    let mut r = up();
    r.at(1000, ctl(4, Command::Restart { ready_limit: None }));
    let out = r.at(1010, Event::ConfigLoaded(Ok(())));
    assert_eq!(spawn_of(&out), vec![2]);
    let out = r.at(
        1010,
        Event::SpawnFailed {
            master: 2,
            error: "exec failed".into(),
        },
    );
    assert_eq!(replies(&out), vec![(4, ExitCode::FpmDied)]);
    assert!(out.contains(&Action::RevertConfig));
    // A replacement that takes over keeps its config.
    let mut r = replacing(5);
    let out = r.at(1100, ready(2));
    assert!(out.contains(&Action::DropUnusedSockets));
    assert!(!out.contains(&Action::RevertConfig));
}

#[test]
fn a_replacement_not_ready_in_time_is_killed_and_the_old_kept() {
    let mut r = replacing(4);
    let out = r.at(1010 + 30 * S, Event::Timer);
    assert!(out.contains(&sig(2, 200, SIGKILL)));
    assert_eq!(replies(&out), vec![(4, ExitCode::NotReady)]);
    assert!(out.contains(&Action::RevertConfig));
    assert_eq!(unreaped(&r), BTreeSet::from([1, 2]), "kept until reaped");
    r.at(1020 + 30 * S, exited(2));
    assert_eq!(unreaped(&r), BTreeSet::from([1]));
}

#[test]
fn retired_workers_get_term_then_kill_after_the_drain_timeout() {
    let mut r = replacing(1);
    r.at(1100, ready(2));
    r.at(
        1100,
        Event::WorkersOf {
            master: 1,
            workers: vec![id(101)],
        },
    );
    let signals = |out: Vec<Action>| -> Vec<Action> {
        out.into_iter()
            .filter(|a| matches!(a, Action::Signal { .. }))
            .collect()
    };
    let out = signals(r.at(1100 + 60 * S, Event::Timer));
    assert_eq!(out, vec![wsig(1, 101, SIGTERM)]);
    let out = signals(r.at(1100 + 65 * S, Event::Timer));
    assert_eq!(out, vec![wsig(1, 101, SIGKILL)]);
    assert!(signals(r.at(1100 + 99 * S, Event::Timer)).is_empty());
}

// ---- case 5: a crash during a requested restart ------------------------------------------

#[test]
fn case5_serving_master_crashes_while_its_replacement_starts_the_replacement_takes_over() {
    let mut r = replacing(9);
    let out = r.at(1050, exited(1));
    assert!(out.contains(&Action::RestoreSocketPaths));
    assert!(spawn_of(&out).is_empty(), "no second new master: {out:?}");
    assert_eq!(r.m.phase(), Phase::Starting);
    let out = r.at(1100, ready(2));
    assert_eq!(replies(&out), vec![(9, ExitCode::Ok)]);
    assert!(!out.contains(&sig(1, 100, SIGSTOP)));
    assert_eq!(unreaped(&r), BTreeSet::from([2]));
}

#[test]
fn case5_second_crash_in_the_window_backs_off_and_no_master_is_leaked_on_stop() {
    let mut r = replacing(9);
    r.at(1050, exited(1)); // first crash: replacement takes over
    let out = r.at(1060, exited(2)); // second crash within the window
    assert!(spawn_of(&out).is_empty());
    assert!(matches!(r.m.phase(), Phase::Backoff(_)));
    assert!(unreaped(&r).is_empty());
    // Stop during the backoff: nothing to stop, exit 0, waiter answered.
    let out = r.steps(vec![
        (1070, Event::Signal(Sig::Term)),
        (1071, Event::NoChildren),
    ]);
    assert_eq!(replies(&out), vec![(9, ExitCode::Ok)]);
    assert_eq!(exit_of(&out), Some(ExitCode::Ok));
    assert!(spawn_of(&r.at(5000, Event::Timer)).is_empty());
}

#[test]
fn case5_a_stop_while_both_masters_live_stops_both_and_exits_0() {
    let mut r = replacing(9);
    let out = r.at(1050, Event::Signal(Sig::Term));
    assert!(out.contains(&sig(1, 100, SIGQUIT)));
    assert!(out.contains(&sig(2, 200, SIGQUIT)));
    let out = r.steps(vec![
        (1100, exited(1)),
        (
            1100,
            Event::WorkersOf {
                master: 1,
                workers: vec![],
            },
        ),
        (1200, exited(2)),
        (
            1200,
            Event::WorkersOf {
                master: 2,
                workers: vec![],
            },
        ),
        (1200, Event::NoChildren),
    ]);
    assert_eq!(exit_of(&out), Some(ExitCode::Ok));
    assert_eq!(replies(&out), vec![(9, ExitCode::Ok)]);
    assert!(unreaped(&r).is_empty());
}

#[test]
fn case5_a_stop_with_a_retiring_master_kills_it_instead_of_quitting_it() {
    let mut r = replacing(1);
    r.at(1100, ready(2));
    r.at(
        1100,
        Event::WorkersOf {
            master: 1,
            workers: vec![id(101)],
        },
    );
    let out = r.at(2000, Event::Signal(Sig::Term));
    assert!(out.contains(&sig(1, 100, SIGKILL)), "{out:?}");
    assert!(out.contains(&sig(2, 200, SIGQUIT)));
    assert!(!out.contains(&wsig(1, 101, SIGQUIT)), "already had QUIT");
    // The exit waits for the retired worker too.
    let out = r.steps(vec![
        (2100, exited(1)),
        (2200, exited(2)),
        (2200, Event::NoChildren),
    ]);
    assert_eq!(exit_of(&out), None);
    let out = r.at(2300, Event::WorkerGone(id(101)));
    assert_eq!(exit_of(&out), Some(ExitCode::Ok));
}

#[test]
fn a_master_spawned_as_the_stop_begins_gets_the_stop_signal() {
    let (mut r, _) = Run::new(settings());
    let out = r.at(0, Event::Signal(Sig::Term));
    assert!(out.iter().all(|a| !matches!(
        a,
        Action::Signal {
            target: Target::Master { .. },
            ..
        }
    )));
    let out = r.at(1, spawned(1, 100));
    assert_eq!(out, vec![sig(1, 100, SIGQUIT)]);
    let out = r.steps(vec![(50, exited(1)), (50, Event::NoChildren)]);
    assert_eq!(exit_of(&out), Some(ExitCode::Ok));
}

// ---- what the supervisor counts -----------------------------------------------------------

fn tallies(out: &[Action]) -> Vec<Tally> {
    out.iter()
        .filter_map(|a| match a {
            Action::Tally(t) => Some(*t),
            _ => None,
        })
        .collect()
}

#[test]
fn the_first_start_counts_nothing_a_crash_counts_a_crash_and_a_crash_restart() {
    let (mut r, out) = Run::new(settings());
    assert!(tallies(&out).is_empty());
    r.at(0, spawned(1, 100));
    assert!(
        tallies(&r.at(30, ready(1))).is_empty(),
        "a first start is no restart"
    );
    let out = r.at(5 * S, exited(1));
    assert_eq!(
        tallies(&out),
        vec![Tally::Crash, Tally::Restart(RestartReason::Crash)]
    );
    r.at(5 * S, spawned(2, 200));
    let out = r.at(5 * S + 250, ready(2));
    assert_eq!(
        tallies(&out),
        vec![Tally::RestartTook(Duration::from_millis(250))]
    );
}

#[test]
fn a_requested_restart_counts_its_reason_and_how_long_the_replacement_took() {
    let mut r = replacing(1);
    assert_eq!(
        tallies(&r.log.iter().map(|(_, a)| a.clone()).collect::<Vec<_>>()),
        vec![Tally::Restart(RestartReason::Requested)]
    );
    let out = r.at(1100, ready(2));
    assert_eq!(
        tallies(&out),
        vec![Tally::RestartTook(Duration::from_millis(90))]
    );
    // Retiring the old master is no crash.
    let out = r.at(1200, exited(1));
    assert!(tallies(&out).is_empty(), "{out:?}");
}

#[test]
fn a_restart_by_signal_counts_as_a_reload() {
    let mut r = up();
    assert_eq!(r.at(S, Event::Signal(Sig::Hup)), vec![Action::LoadConfig]);
    let out = r.at(S + 10, Event::ConfigLoaded(Ok(())));
    assert_eq!(tallies(&out), vec![Tally::Restart(RestartReason::Reload)]);
}
