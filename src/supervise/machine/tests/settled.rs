//! When the machine is settled (nothing under way), the moment the driver gives back the
//! pages start-up and the last event touched.

use super::*;

#[test]
fn a_starting_master_is_not_settled_a_serving_one_is() {
    let (mut r, _) = Run::new(settings());
    assert!(!r.m.settled());
    r.at(0, spawned(1, 100));
    assert!(!r.m.settled());
    r.at(30, ready(1));
    assert!(r.m.settled());
}

#[test]
fn a_health_check_in_flight_is_not_settled_until_its_result() {
    let mut r = up();
    let out = r.at(10 * S + 30, Event::Timer);
    assert_eq!(
        out,
        vec![Action::Check {
            master: 1,
            purpose: Purpose::Health
        }]
    );
    assert!(!r.m.settled());
    r.at(
        10 * S + 40,
        Event::Checked {
            master: 1,
            purpose: Purpose::Health,
            result: Ok(()),
            saturated: false,
        },
    );
    assert!(r.m.settled());
}

#[test]
fn a_restart_settles_only_when_the_old_master_and_its_workers_are_gone() {
    let mut r = replacing(1);
    assert!(!r.m.settled());
    r.at(1100, ready(2));
    assert!(!r.m.settled(), "the old master's workers are being listed");
    r.at(
        1100,
        Event::WorkersOf {
            master: 1,
            workers: vec![id(101)],
        },
    );
    assert!(!r.m.settled(), "a worker of the old master finishes");
    r.at(5000, Event::WorkerGone(id(101)));
    assert!(!r.m.settled(), "the old master is not reaped yet");
    let out = r.at(5001, exited(1));
    // Anything the old master's exit left behind is looked for once more.
    assert_eq!(out, vec![Action::ListWorkers { master: 1 }]);
    assert!(!r.m.settled());
    r.at(
        5002,
        Event::WorkersOf {
            master: 1,
            workers: vec![],
        },
    );
    assert!(r.m.settled());
}

#[test]
fn after_a_crash_it_settles_once_the_new_master_serves_and_the_orphans_are_gone() {
    let mut r = up();
    r.at(5 * S, exited(1));
    assert!(!r.m.settled());
    r.at(5 * S, spawned(2, 200));
    r.at(5 * S + 20, ready(2));
    assert!(!r.m.settled(), "the orphans are being listed");
    r.at(
        5 * S + 30,
        Event::WorkersOf {
            master: 1,
            workers: vec![id(101)],
        },
    );
    assert!(!r.m.settled(), "an orphan finishes its request");
    r.at(5 * S + 40, Event::WorkerGone(id(101)));
    assert!(r.m.settled());
}

#[test]
fn a_stopping_machine_is_never_settled() {
    let mut r = up();
    r.at(S, Event::Signal(Sig::Term));
    assert!(!r.m.settled());
}

#[test]
fn timers_health_results_and_the_serving_masters_heartbeat_are_idle_work() {
    let (mut r, _) = Run::new(settings());
    r.at(0, spawned(1, 100));
    // READY=1 of a starting master is no heartbeat.
    assert!(!r.m.is_idle_work(&ready(1)));
    r.at(30, ready(1));
    assert!(r.m.is_idle_work(&Event::Timer));
    // FPM repeats READY=1 with each STATUS= while it serves.
    assert!(r.m.is_idle_work(&ready(1)));
    let checked = |purpose| Event::Checked {
        master: 1,
        purpose,
        result: Ok(()),
        saturated: false,
    };
    assert!(r.m.is_idle_work(&checked(Purpose::Health)));
    assert!(!r.m.is_idle_work(&checked(Purpose::Ready)));
    assert!(!r.m.is_idle_work(&ctl(1, Command::Status)));
    assert!(!r.m.is_idle_work(&exited(1)));
    // A master the machine does not know is no heartbeat either.
    assert!(!r.m.is_idle_work(&ready(7)));
}
