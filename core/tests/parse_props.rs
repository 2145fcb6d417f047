//! Property tests: arbitrary bytes and arbitrary JSON fed to the parser and to a
//! hub connection never panic, and every refusal is a protocol error code.

use std::sync::Arc;

use proptest::prelude::*;
use serde_json::{json, Value};
use switchboard::hub::{ConnectInfo, Hub, Next};
use switchboard::protocol::parse_client_message;
use switchboard::{ErrorCode, ServerConfig};

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        ".{0,12}".prop_map(Value::from),
        prop_oneof![
            Just("join"),
            Just("offer"),
            Just("answer"),
            Just("candidate"),
            Just("message"),
            Just("chat"),
            Just("leave"),
            Just("ping"),
            Just("ack"),
            Just("resume"),
            Just("auth"),
            Just("RESUME"),
            Just("ACK")
        ]
        .prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            prop::collection::btree_map(
                prop_oneof![
                    Just("type".to_owned()),
                    Just("roomId".to_owned()),
                    Just("to".to_owned()),
                    Just("id".to_owned()),
                    Just("seq".to_owned()),
                    Just("lastSeq".to_owned()),
                    Just("sdp".to_owned()),
                    Just("from".to_owned()),
                    Just("userId".to_owned()),
                    Just("data".to_owned()),
                    Just("content".to_owned()),
                    ".{0,6}"
                ],
                inner,
                0..6
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Every reply of a connection is a JSON object with a string `type`, and every
/// error carries a code from PROTOCOL.md §4.
fn check_replies(hub_frames: &[switchboard::protocol::Frame]) {
    for f in hub_frames {
        let v: Value = serde_json::from_str(f.as_str()).expect("the server only sends JSON");
        assert!(v["type"].is_string(), "{v}");
        if v["type"] == "error" {
            assert!(
                ErrorCode::parse(v["code"].as_str().unwrap()).is_some(),
                "{v}"
            );
        }
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        let text = String::from_utf8_lossy(&bytes);
        if let Err(e) = parse_client_message(&text) {
            prop_assert!(!e.message.is_empty());
            prop_assert!(matches!(e.code, ErrorCode::InvalidJson | ErrorCode::InvalidMessage | ErrorCode::UnknownType));
        }
    }

    #[test]
    fn arbitrary_json_through_a_connection(msgs in prop::collection::vec(arb_json(), 1..8)) {
        let rt = runtime();
        rt.block_on(async {
            let hub = Hub::new(Arc::new(ServerConfig { rate_limit_rps: 0, ..ServerConfig::default() }));
            let mut peer = hub.connect(ConnectInfo::default());
            peer.handle_text(&json!({"type":"join","roomId":"r","userId":"peer"}).to_string());
            let mut conn = hub.connect(ConnectInfo::default());
            for m in &msgs {
                conn.handle_text(&m.to_string());
            }
            let mut frames = Vec::new();
            while let Some(Next::Frames) = conn.outbox().try_next(&mut frames) {}
            check_replies(&frames);
            let mut seen = Vec::new();
            while let Some(Next::Frames) = peer.outbox().try_next(&mut seen) {}
            check_replies(&seen);
            // Whatever reached the peer was stamped by the server.
            for f in &seen {
                let v: Value = serde_json::from_str(f.as_str()).unwrap();
                if matches!(v["type"].as_str(), Some("offer" | "answer" | "candidate" | "message" | "chat")) {
                    prop_assert!(v["from"].is_string());
                    let top = switchboard::protocol::Entries::parse(f.as_str()).unwrap();
                    prop_assert_eq!(top.0.iter().filter(|(k, _)| k.0 == "from").count(), 1);
                }
            }
            conn.finish(None);
            peer.finish(Some(1000));
            Ok(())
        })?;
    }
}
