//! Faults of this group; see `main.rs`.

#[allow(unused_imports)]
use crate::common;

/// A non-root user is told what it could not see, never "free", "running" or "INVALID".
#[test]
fn f16_non_root_user_is_told_what_it_cannot_see() {
    let Some(sb) = crate::common::Sandbox::new() else {
        return;
    };
    let master = sb.start_fpm();
    const CANNOT: &str = "cannot inspect processes of other users: run as root";

    let status = sb.fpmctl_as("nobody", "nogroup", &["status"]);
    status.expect_code(4);
    assert!(status.stdout.contains(CANNOT), "{status}");
    assert!(!status.stdout.contains(": free"), "{status}");
    let json = sb.fpmctl_as("nobody", "nogroup", &["status", "--json"]);
    json.expect_code(4);
    let j = json.json();
    assert_eq!(j["state"], "unverified", "{json}");
    assert!(j["master"].is_null(), "{json}");
    assert!(
        j["listen"]
            .as_array()
            .unwrap()
            .iter()
            .all(|l| l["holders_known"] == false),
        "{json}"
    );

    let check = sb.fpmctl_as("nobody", "nogroup", &["check"]);
    assert_ne!(check.code, 6, "{check}");
    assert_ne!(check.code, 0, "{check}");
    assert!(!check.stdout.contains("INVALID"), "{check}");
    assert!(
        (check.stdout.clone() + &check.stderr).contains("run as root"),
        "{check}"
    );

    // Root still sees everything, and the master was never touched.
    sb.fpmctl(&["status"]).expect_code(0);
    assert!(crate::common::alive(master));
}
