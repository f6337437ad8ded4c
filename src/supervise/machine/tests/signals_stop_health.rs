//! Signals (case 10), idle wakeups (11), health and saturation (3), leftovers (13), one
//! deadline type (12), forwarded options, taking over from a dead supervisor (6).

use super::*;
use nix::sys::signal::Signal::{SIGKILL, SIGQUIT, SIGSTOP, SIGTERM, SIGUSR1};

// ---- case 10: signals --------------------------------------------------------------------

#[test]
fn case10_term_int_and_quit_all_stop_gracefully_first() {
    for s in [Sig::Term, Sig::Int, Sig::Quit] {
        let mut r = up();
        let out = r.at(S, Event::Signal(s));
        assert_eq!(
            out,
            vec![
                Action::NotifySystemd("STOPPING=1\nSTATUS=stopping FPM".into()),
                sig(1, 100, SIGQUIT),
                Action::Signal {
                    target: Target::Leftovers,
                    signal: SIGQUIT
                },
            ],
            "{s:?}"
        );
    }
}

#[test]
fn case10_the_plan_escalates_quit_term_kill_at_each_grace() {
    let mut r = up();
    r.at(S, Event::Signal(Sig::Term));
    assert_eq!(r.wake_ms(), Some(21 * S));
    let out = r.at(21 * S, Event::Timer);
    assert!(out.contains(&sig(1, 100, SIGTERM)));
    let out = r.at(26 * S, Event::Timer);
    assert!(out.contains(&sig(1, 100, SIGKILL)));
    assert!(out.contains(&Action::Signal {
        target: Target::Leftovers,
        signal: SIGKILL
    }));
    // Still not reaped after the last grace plus the final wait: Timeout.
    let out = r.at(33 * S, Event::Timer);
    assert_eq!(exit_of(&out), Some(ExitCode::Timeout));
}

#[test]
fn case10_a_second_stop_signal_skips_quit_but_not_term() {
    for second in [Sig::Term, Sig::Int, Sig::Quit] {
        let mut r = up();
        r.at(S, Event::Signal(Sig::Term));
        let out = r.at(S + 10, Event::Signal(second));
        assert!(out.contains(&sig(1, 100, SIGTERM)), "{second:?}: {out:?}");
        assert!(!out.contains(&sig(1, 100, SIGKILL)));
        // A third does not jump further.
        assert!(r.at(S + 20, Event::Signal(second)).is_empty());
    }
}

#[test]
fn case10_hup_and_usr2_restart_and_are_never_forwarded() {
    for s in [Sig::Hup, Sig::Usr2] {
        let mut r = up();
        let out = r.at(S, Event::Signal(s));
        assert_eq!(out, vec![Action::LoadConfig], "{s:?}");
    }
}

#[test]
fn case10_usr1_is_forwarded_to_live_masters_to_reopen_logs() {
    let mut r = replacing(1);
    let out = r.at(1050, Event::Signal(Sig::Usr1));
    assert_eq!(out, vec![sig(1, 100, SIGUSR1), sig(2, 200, SIGUSR1)]);
    assert_eq!(r.m.phase(), Phase::Replacing, "USR1 changes nothing else");
}

#[test]
fn case10_a_stop_over_the_control_socket_answers_when_fpm_is_gone() {
    let mut r = up();
    let out = r.at(
        S,
        ctl(
            5,
            Command::Stop {
                plan: None,
                limit: None,
            },
        ),
    );
    assert!(replies(&out).is_empty());
    let out = r.steps(vec![(2 * S, exited(1)), (2 * S, Event::NoChildren)]);
    assert_eq!(replies(&out), vec![(5, ExitCode::Ok)]);
    assert_eq!(exit_of(&out), Some(ExitCode::Ok));
    // Nothing more happens after the exit, and late requests are refused.
    assert_eq!(
        replies(&r.at(3 * S, ctl(6, Command::Restart { ready_limit: None }))),
        vec![(6, ExitCode::Failure)]
    );
    assert_eq!(r.m.next_wakeup(), None);
}

#[test]
fn a_restart_request_while_stopping_is_refused() {
    let mut r = up();
    r.at(S, Event::Signal(Sig::Term));
    let out = r.at(S + 1, ctl(2, Command::Restart { ready_limit: None }));
    assert_eq!(replies(&out), vec![(2, ExitCode::Failure)]);
}

#[test]
fn no_restart_after_a_crash_while_stopping() {
    let mut r = up();
    r.at(S, Event::Signal(Sig::Term));
    let out = r.at(S + 5, exited(1));
    assert!(spawn_of(&out).is_empty());
    assert!(!out.contains(&Action::RestoreSocketPaths));
}

// ---- case 11: idle wakeups --------------------------------------------------------------

#[test]
fn case11_idle_wakes_only_for_the_health_interval() {
    let mut r = up();
    assert_eq!(r.wake_ms(), Some(30 + 10 * S));
    let out = r.at(30 + 10 * S, Event::Timer);
    assert_eq!(
        out,
        vec![Action::Check {
            master: 1,
            purpose: Purpose::Health
        }]
    );
    // While the check runs nothing is due.
    assert_eq!(r.wake_ms(), None);
    r.at(
        40 + 10 * S,
        Event::Checked {
            master: 1,
            purpose: Purpose::Health,
            result: Ok(()),
            saturated: false,
        },
    );
    assert_eq!(r.wake_ms(), Some(40 + 20 * S));
}

#[test]
fn case11_the_watchdog_adds_its_half_interval_and_pings_only_while_healthy() {
    let mut s = settings();
    s.watchdog = Some(Duration::from_secs(4));
    let (mut r, _) = Run::new(s);
    r.steps(vec![(0, spawned(1, 100)), (30, ready(1))]);
    assert_eq!(r.wake_ms(), Some(2 * S));
    let out = r.at(2 * S, Event::Timer);
    assert_eq!(out, vec![Action::NotifySystemd("WATCHDOG=1".into())]);
    assert_eq!(r.wake_ms(), Some(4 * S));
}

#[test]
fn a_silent_master_is_restarted_after_its_hung_limit() {
    let (mut r, _) = Run::new(settings());
    r.at(
        0,
        Event::Spawned {
            master: 1,
            id: id(100),
            hung_after: Some(Duration::from_secs(30)),
        },
    );
    r.at(30, ready(1));
    r.at(
        5 * S,
        Event::Notify {
            master: 1,
            ready: true,
            status: Some("Processes active: 0, idle: 2".into()),
        },
    );
    assert_eq!(r.wake_ms(), Some(30 + 10 * S), "health first");
    let out = r.at(35 * S, Event::Timer);
    assert!(out.contains(&Action::LoadConfig), "{out:?}");
}

// ---- health: busy is not hung ------------------------------------------------------------

fn health(r: &mut Run, t: u64, ok: bool) -> Vec<Action> {
    let mut out = r.at(t, Event::Timer);
    out.extend(r.at(
        t + 1,
        Event::Checked {
            master: 1,
            purpose: Purpose::Health,
            result: if ok {
                Ok(())
            } else {
                Err("ping timed out".into())
            },
            saturated: false,
        },
    ));
    out
}

#[test]
fn consecutive_failed_health_checks_restart_fpm() {
    let mut r = up();
    assert!(!health(&mut r, 30 + 10 * S, false).contains(&Action::LoadConfig));
    assert!(health(&mut r, 31 + 20 * S, false).contains(&Action::LoadConfig));
}

#[test]
fn a_passing_check_resets_the_failure_count() {
    let mut r = up();
    health(&mut r, 30 + 10 * S, false);
    health(&mut r, 31 + 20 * S, true);
    assert!(!health(&mut r, 32 + 30 * S, false).contains(&Action::LoadConfig));
}

#[test]
fn case3_a_saturated_pool_is_reported_and_never_restarted() {
    let mut r = up();
    r.at(
        S,
        Event::Notify {
            master: 1,
            ready: true,
            status: Some("Processes active: 5, idle: 0, Requests: 40, slow: 0".into()),
        },
    );
    for i in 1..=5 {
        let out = health(&mut r, 30 + i * 10 * S + i, false);
        assert!(!out.contains(&Action::LoadConfig), "check {i}");
    }
    assert!(r.m.status().saturated);
}

#[test]
fn a_failed_check_with_a_full_accept_queue_is_saturation_not_a_restart() {
    let mut r = up();
    for i in 1..=4u64 {
        let t = 30 + i * 10 * S + i;
        r.at(t, Event::Timer);
        let out = r.at(
            t + 1,
            Event::Checked {
                master: 1,
                purpose: Purpose::Health,
                result: Err("pool tcp: timed out".into()),
                saturated: true,
            },
        );
        assert!(!out.contains(&Action::LoadConfig), "check {i}");
    }
    assert!(r.m.status().saturated);
}

#[test]
fn saturation_is_read_from_fpms_status_line() {
    let table = [
        (Some("Processes active: 5, idle: 0, Requests: 1"), true),
        (Some("Processes active: 4, idle: 1, Requests: 1"), false),
        (Some("Processes active: 0, idle: 10"), false),
        (Some("Ready to handle connections"), false),
        (None, false),
    ];
    for (status, want) in table {
        assert_eq!(is_saturated(status), want, "{status:?}");
    }
}

#[test]
fn status_lines_from_the_serving_master_reach_systemd() {
    let mut r = up();
    let out = r.at(
        S,
        Event::Notify {
            master: 1,
            ready: true,
            status: Some("Processes active: 0, idle: 2".into()),
        },
    );
    assert_eq!(
        out,
        vec![Action::NotifySystemd(
            "STATUS=Processes active: 0, idle: 2".into()
        )]
    );
    assert_eq!(
        r.m.status().fpm_status.as_deref(),
        Some("Processes active: 0, idle: 2")
    );
}

#[test]
fn no_health_checks_during_a_restart() {
    let mut r = replacing(1);
    let out = r.at(30 + 10 * S, Event::Timer);
    assert!(!out.iter().any(|a| matches!(
        a,
        Action::Check {
            purpose: Purpose::Health,
            ..
        }
    )));
}

// ---- case 13: what PHP requests leave behind --------------------------------------------

#[test]
fn case13_leftovers_get_every_step_of_the_plan_and_fpm_decides_the_code() {
    let mut r = up();
    let out = r.at(S, Event::Signal(Sig::Term));
    assert!(out.contains(&Action::Signal {
        target: Target::Leftovers,
        signal: SIGQUIT
    }));
    // FPM stops cleanly, a leftover lingers: no exit yet, no busy wait (next wakeup is the
    // step deadline).
    let out = r.at(2 * S, exited(1));
    assert_eq!(exit_of(&out), None);
    assert_eq!(r.wake_ms(), Some(21 * S));
    let out = r.at(21 * S, Event::Timer);
    assert!(out.contains(&Action::Signal {
        target: Target::Leftovers,
        signal: SIGTERM
    }));
    let out = r.steps(vec![
        (21 * S + 3, Event::ChildReaped { pid: 555 }),
        (21 * S + 3, Event::NoChildren),
    ]);
    assert_eq!(
        exit_of(&out),
        Some(ExitCode::Ok),
        "FPM itself stopped cleanly"
    );
}

#[test]
fn case13_leftovers_that_outlive_the_plan_do_not_make_a_clean_fpm_stop_fail() {
    let mut r = up();
    r.at(S, Event::Signal(Sig::Term));
    r.at(2 * S, exited(1));
    r.at(21 * S, Event::Timer);
    r.at(26 * S, Event::Timer);
    let out = r.at(33 * S, Event::Timer);
    assert_eq!(exit_of(&out), Some(ExitCode::Ok));
}

#[test]
fn case13_a_reaped_leftover_while_running_changes_nothing() {
    let mut r = up();
    let out = r.at(S, Event::ChildReaped { pid: 4242 });
    assert!(out.is_empty());
    assert_eq!(r.m.phase(), Phase::Serving);
}

// ---- case 12: one deadline type ---------------------------------------------------------

#[test]
fn case12_huge_durations_saturate_to_never_instead_of_panicking() {
    let mut s = settings();
    s.drain_timeout = Duration::MAX;
    s.ready_timeout = Duration::MAX;
    s.health_interval = Duration::MAX;
    s.notify_grace = Duration::MAX;
    s.stop_plan = "QUIT:18446744073709551615s"
        .parse()
        .unwrap_or_else(|_| settings().stop_plan);
    let (mut r, _) = Run::new(s);
    r.steps(vec![(0, spawned(1, 100)), (30, ready(1))]);
    assert_eq!(r.m.next_wakeup(), None);
    r.at(S, Event::Signal(Sig::Term));
    r.at(2 * S, exited(1));
    let out = r.at(2 * S, Event::NoChildren);
    assert_eq!(exit_of(&out), Some(ExitCode::Ok));
}

// ---- status and bookkeeping --------------------------------------------------------------

#[test]
fn status_is_answered_at_once_in_every_phase() {
    let mut r = replacing(1);
    let out = r.at(1050, ctl(8, Command::Status));
    match &out[..] {
        [
            Action::Reply {
                conn: 8,
                answer: Answer::Status(v),
            },
        ] => {
            assert_eq!(v.master, Some(100));
            assert!(v.ready);
            assert_eq!(v.restarts, 1);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn events_about_unknown_masters_are_ignored() {
    let mut r = up();
    assert!(r.at(S, exited(77)).is_empty());
    assert!(r.at(S, ready(77)).is_empty());
    assert!(r.at(S, Event::WorkerGone(id(5))).is_empty());
    assert_eq!(r.m.phase(), Phase::Serving);
}

#[test]
fn master_gen_maps_a_pid_to_the_master_that_has_it() {
    let r = replacing(1);
    assert_eq!(r.m.master_gen(100), Some(1));
    assert_eq!(r.m.master_gen(200), Some(2));
    assert_eq!(r.m.master_gen(300), None);
}

#[test]
fn every_spawned_master_is_kept_until_reported_exited_over_a_long_random_walk() {
    // A fixed pseudo-random walk over restarts, crashes, readiness and exits: whatever
    // happens, a master leaves the machine only through MasterExited or SpawnFailed.
    let mut r = up();
    let mut live: BTreeSet<MasterNo> = BTreeSet::from([1]);
    let mut seed: u64 = 0x2545_F491_4F6C_DD1D;
    let mut t = S;
    for _ in 0..400 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        t += 50 + seed % 3000;
        let gens: Vec<MasterNo> = r.m.masters().keys().copied().collect();
        let pick = gens.get((seed >> 8) as usize % gens.len().max(1)).copied();
        let ev = match (seed >> 20) % 6 {
            0 => ctl(seed, Command::Restart { ready_limit: None }),
            1 => Event::ConfigLoaded(Ok(())),
            2 => match pick {
                Some(g) => ready(g),
                None => Event::Timer,
            },
            3 => match pick {
                Some(g) => exited(g),
                None => Event::Timer,
            },
            4 => Event::Timer,
            _ => match pick {
                Some(g) => Event::WorkersOf {
                    master: g,
                    workers: vec![],
                },
                None => Event::Timer,
            },
        };
        if let Event::MasterExited { master, .. } = &ev {
            live.remove(master);
        }
        let out = r.at(t, ev);
        for g in spawn_of(&out) {
            live.insert(g);
            r.at(t, spawned(g, 1000 + g as i32));
        }
        assert_eq!(unreaped(&r), live);
        if matches!(r.m.phase(), Phase::Stopping(_) | Phase::Exited(_)) {
            break;
        }
    }
}

// ---- forwarded options -------------------------------------------------------------------

#[test]
fn a_forwarded_restart_timeout_is_the_new_masters_readiness_limit() {
    let mut r = up();
    r.at(
        S,
        ctl(
            1,
            Command::Restart {
                ready_limit: Some(Duration::from_secs(2)),
            },
        ),
    );
    r.at(S, Event::ConfigLoaded(Ok(())));
    r.at(S, spawned(2, 200));
    let out = r.at(3 * S, Event::Timer);
    assert!(out.contains(&sig(2, 200, SIGKILL)), "{out:?}");
    assert_eq!(replies(&out), vec![(1, ExitCode::NotReady)]);
    // The next restart has the configured limit again.
    r.at(4 * S, exited(2));
    r.at(5 * S, ctl(2, Command::Restart { ready_limit: None }));
    r.at(5 * S, Event::ConfigLoaded(Ok(())));
    r.at(5 * S, spawned(3, 300));
    assert!(!r.at(8 * S, Event::Timer).contains(&sig(3, 300, SIGKILL)));
}

#[test]
fn a_forwarded_stop_plan_and_timeout_are_honoured_and_the_timeout_names_the_plan() {
    let mut r = up();
    let out = r.at(
        S,
        ctl(
            1,
            Command::Stop {
                plan: Some("TERM:10s".parse().unwrap()),
                limit: Some(Duration::from_secs(3)),
            },
        ),
    );
    assert!(out.contains(&sig(1, 100, SIGTERM)), "{out:?}");
    assert_eq!(r.wake_ms(), Some(4 * S));
    let out = r.at(4 * S, Event::Timer);
    assert_eq!(exit_of(&out), Some(ExitCode::Timeout));
    match &out[..] {
        [
            Action::Reply {
                answer: Answer::Done(ExitCode::Timeout, text),
                ..
            },
            ..,
        ] => {
            assert!(text.contains("TERM:10s"), "{text}")
        }
        other => panic!("{other:?}"),
    }
}

// ---- case 6: taking over from a dead supervisor -----------------------------------------

#[test]
fn case6_an_adopted_master_is_replaced_beside_it_and_retired_once_the_new_one_is_ready() {
    let t0 = Instant::now();
    let (mut m, out) = Machine::adopt(settings(), id(50), t0);
    assert_eq!(
        out,
        vec![
            Action::Spawn {
                master: 2,
                why: Why::Adopted
            },
            Action::Tally(Tally::Restart(RestartReason::Takeover))
        ]
    );
    assert_eq!(m.phase(), Phase::Replacing);
    assert_eq!(m.master_gen(50), Some(1));
    m.on(spawned(2, 200), t0);
    let out = m.on(ready(2), t0 + Duration::from_millis(30));
    assert_eq!(out[0], sig(1, 50, SIGSTOP));
    assert!(out.contains(&Action::ListWorkers { master: 1 }));
    let out = m.on(
        Event::WorkersOf {
            master: 1,
            workers: vec![],
        },
        t0 + Duration::from_millis(30),
    );
    assert_eq!(out, vec![sig(1, 50, SIGKILL)]);
    m.on(exited(1), t0 + Duration::from_millis(40));
    assert_eq!(m.masters().keys().copied().collect::<Vec<_>>(), vec![2]);
}

#[test]
fn case6_a_stop_while_taking_over_stops_both_masters() {
    let t0 = Instant::now();
    let (mut m, _) = Machine::adopt(settings(), id(50), t0);
    m.on(spawned(2, 200), t0);
    let out = m.on(Event::Signal(Sig::Term), t0);
    assert!(out.contains(&sig(1, 50, SIGQUIT)));
    assert!(out.contains(&sig(2, 200, SIGQUIT)));
}

#[test]
fn a_restart_after_failed_health_checks_counts_as_unhealthy() {
    let mut r = up();
    health(&mut r, 30 + 10 * S, false);
    assert!(health(&mut r, 31 + 20 * S, false).contains(&Action::LoadConfig));
    let out = r.at(32 + 20 * S, Event::ConfigLoaded(Ok(())));
    assert!(
        out.contains(&Action::Tally(Tally::Restart(RestartReason::Unhealthy))),
        "{out:?}"
    );
}
