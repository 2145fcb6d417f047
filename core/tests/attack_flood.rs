//! One sender flooding one reader, against the real binary: the sender pays.
//! While the reader's queue is over half full the sender's messages are
//! refused (`rate-limited`, nothing delivered), the reader keeps its
//! connection, and every message the server acknowledged reaches the reader in
//! order once it reads again: nothing is lost silently on either side.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::binary::Binary;
use common::Ws;
use futures_util::StreamExt;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

#[tokio::test]
async fn a_flooding_sender_is_refused_and_the_reader_keeps_its_connection() {
    // Defaults but for the message rate (the flood is the point here).
    let server = Binary::start(&[]);
    let url = server.ws_url();
    let mut reader = Ws::connect_from("127.0.0.12", &url).await;
    reader
        .send(json!({"type":"join","roomId":"r","userId":"reader"}))
        .await;
    reader.recv_type("room-info").await;
    let mut flooder = Ws::connect_from("127.0.0.11", &url).await;
    flooder
        .send(json!({"type":"join","roomId":"r","userId":"flooder"}))
        .await;
    flooder.recv_type("room-info").await;
    reader.recv_type("user-joined").await;

    // 200 messages of 60 KB (12 MB) while the reader reads nothing: more than
    // the kernel's buffers and the reader's 1 MiB queue together.
    let blob = "f".repeat(60_000);
    let sent = 200u64;
    for id in 0..sent {
        flooder
            .send(json!({"type":"message","to":"reader","id":id,"data":{"n":id,"blob":blob}}))
            .await;
    }
    let (mut acked, mut refused) = (HashSet::new(), 0);
    while (acked.len() as u64) + refused < sent {
        let msg: Value = flooder.recv().await;
        match msg["type"].as_str() {
            Some("ack") => {
                acked.insert(msg["id"].as_u64().unwrap());
            }
            Some("error") => {
                assert_eq!(msg["code"], "rate-limited", "{msg}");
                refused += 1;
            }
            _ => {}
        }
    }
    assert!(refused > 0, "the flood went past half the reader's queue");
    assert!(!acked.is_empty());

    // Well within the stall time (the heartbeat timeout, 10 s): the reader
    // reads everything now, still connected, and gets exactly the acked ones.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut got = Vec::new();
    while got.len() < acked.len() {
        match tokio::time::timeout(Duration::from_secs(10), reader.ws.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => {
                let v: Value = serde_json::from_str(&t).unwrap();
                if v["type"] == "message" {
                    got.push(v["data"]["n"].as_u64().unwrap());
                }
            }
            Ok(Some(Ok(Message::Close(c)))) => panic!("the reader was closed: {c:?}"),
            Ok(Some(Ok(_))) => {}
            other => panic!("reading: {other:?} after {} of {}", got.len(), acked.len()),
        }
    }
    let mut in_order = got.clone();
    in_order.sort_unstable();
    assert_eq!(got, in_order, "in order");
    assert_eq!(
        got.into_iter().collect::<HashSet<_>>(),
        acked,
        "exactly the acked ones"
    );
    // And it is still in the room, talking.
    reader
        .send(json!({"type":"message","to":"flooder","data":"still here"}))
        .await;
    loop {
        let v: Value = flooder.recv().await;
        if v["type"] == "message" {
            assert_eq!(v["data"], "still here");
            break;
        }
    }
}
