//! The control socket's JSON: one request line from a client, one reply line from the
//! supervisor. Either side may be someone else.

use fpmctl::supervise::control::{Reply, Request, parse_reply, parse_request};
use proptest::prelude::*;

fn json_value() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        any::<String>().prop_map(serde_json::Value::from),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::from),
            prop::collection::btree_map(any::<String>(), inner, 0..4)
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(crate::config(4))]

    #[test]
    fn any_line_parses_or_is_refused(line in prop_oneof![
        any::<String>(),
        r#"\{"cmd": ?"[a-z\\"]{0,10}"(, ?"[a-z]{1,5}": ?[0-9]{1,3})?\}?"#,
        r#"\{"code": ?-?[0-9]{1,12}, ?"text": ?"[^"]{0,10}", ?"json": ?(null|\{\}|\[1,2\]|"x")\}"#,
    ]) {
        let _ = parse_request(&line);
        let _ = parse_reply(&line);
    }

    #[test]
    fn requests_and_replies_round_trip(
        cmd in any::<String>(),
        timeout_ms in proptest::option::of(any::<u64>()),
        signal_plan in proptest::option::of(any::<String>()),
        no_ready_wait in any::<bool>(),
        code in any::<i32>(),
        text in any::<String>(),
        json in json_value(),
        error in proptest::option::of(any::<String>()),
    ) {
        let req = Request { timeout_ms, signal_plan, no_ready_wait, ..Request::new(&cmd) };
        let line = serde_json::to_string(&req).expect("serialises");
        prop_assert_eq!(parse_request(&line).expect("parses"), req);
        let reply = Reply { code, text, json, error };
        let line = serde_json::to_string(&reply).expect("serialises");
        prop_assert_eq!(parse_reply(&line).expect("parses"), reply);
    }
}
