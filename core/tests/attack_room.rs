//! Room poisoning against the real binary on its defaults: members from
//! several attacking addresses join one room with the largest metadata allowed,
//! so that a full `room-info` would be bigger than half a newcomer's queue.
//! The newcomer still joins: its `room-info` is trimmed (no displayName or
//! metadata, `peersTrimmed`), it is not closed, and it talks normally.

mod common;

use common::binary::Binary;
use common::Ws;
use serde_json::{json, Value};

#[tokio::test]
async fn large_member_metadata_can_not_make_a_room_unjoinable() {
    let server = Binary::with_flags(&[]);
    let url = server.ws_url();
    // 8 addresses × 17 members × ~4 KB of metadata: ~550 KB of peers, more
    // than half the default 1 MiB queue.
    let blob = "p".repeat(4000);
    let mut members = Vec::new();
    for ip in 13..21 {
        for n in 0..17 {
            let mut ws = Ws::connect_from(&format!("127.0.0.{ip}"), &url).await;
            let user = format!("m{ip}-{n}");
            ws.send(json!({"type":"join","roomId":"big","userId":user,"metadata":{"blob":blob}}))
                .await;
            ws.recv_type("room-info").await;
            members.push(ws);
        }
    }
    let mut newcomer = Ws::connect_from("127.0.0.30", &url).await;
    newcomer
        .send(json!({"type":"join","roomId":"big","userId":"newcomer"}))
        .await;
    let info: Value = newcomer.recv_type("room-info").await;
    assert_eq!(info["peersTrimmed"], true);
    let peers = info["peers"].as_array().unwrap();
    assert_eq!(peers.len(), 136, "every member listed");
    assert!(peers.iter().all(|p| p.get("metadata").is_none()));
    assert!(info.to_string().len() <= 512 * 1024);
    // The newcomer is in and talks; a member hears it.
    newcomer
        .send(json!({"type":"message","to":"m13-0","data":"hello"}))
        .await;
    loop {
        let v: Value = members[0].recv().await;
        if v["type"] == "message" {
            assert_eq!(
                (v["from"].as_str(), v["data"].as_str()),
                (Some("newcomer"), Some("hello"))
            );
            break;
        }
    }
}
