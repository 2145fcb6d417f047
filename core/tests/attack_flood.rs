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

/// Sends `n` 60 KB messages to `to`; returns how many were acknowledged and
/// how many refused (`rate-limited`).
async fn flood(sender: &mut Ws, to: &str, n: u64) -> (u64, u64) {
    let blob = "f".repeat(60_000);
    for id in 0..n {
        sender
            .send(json!({"type":"message","to":to,"id":format!("{to}-{id}"),"data":blob}))
            .await;
    }
    let (mut acked, mut refused) = (0, 0);
    while acked + refused < n {
        let msg: Value = sender.recv().await;
        match msg["type"].as_str() {
            Some("ack") => acked += 1,
            Some("error") => {
                assert_eq!(msg["code"], "rate-limited", "{msg}");
                refused += 1;
            }
            _ => {}
        }
    }
    (acked, refused)
}

#[tokio::test]
async fn all_queues_together_stay_within_the_budget_and_readers_that_keep_up_go_on() {
    // A budget below half of one reader's queue (512 KiB), so the server-wide
    // bound is the one that holds.
    let server = Binary::start(&["--outbound-budget-bytes", "200000"]);
    let url = server.ws_url();
    let mut flooder = Ws::connect_from("127.0.0.21", &url).await;
    flooder
        .send(json!({"type":"join","roomId":"r","userId":"flooder"}))
        .await;
    flooder.recv_type("room-info").await;
    // Two readers that stop reading, and one that keeps up.
    let mut stalled = Vec::new();
    for (ip, user) in [("127.0.0.22", "s1"), ("127.0.0.23", "s2")] {
        let mut ws = Ws::connect_from(ip, &url).await;
        ws.send(json!({"type":"join","roomId":"r","userId":user}))
            .await;
        ws.recv_type("room-info").await;
        stalled.push(ws);
    }
    let mut reader = Ws::connect_from("127.0.0.24", &url).await;
    reader
        .send(json!({"type":"join","roomId":"r","userId":"reader"}))
        .await;
    reader.recv_type("room-info").await;

    // 8 MB at each stalled reader: past the kernel's buffers, then the queues.
    for user in ["s1", "s2"] {
        let (acked, refused) = flood(&mut flooder, user, 140).await;
        assert!(
            acked > 0 && refused > 0,
            "{user}: {acked} acked, {refused} refused"
        );
    }
    // Both queues together: the budget plus at most one message and 1/64 of
    // a queue each (without the budget they would hold ~1.1 MB).
    let queued = server.metric("switchboard_outbound_queued_bytes").await;
    assert!(queued > 200_000.0, "over the budget now: {queued}");
    assert!(queued < 400_000.0, "bounded by the budget: {queued}");
    // A reader that keeps up is not refused meanwhile, and nobody was closed.
    flooder
        .send(json!({"type":"message","to":"reader","id":"ok","data":"still flowing"}))
        .await;
    assert_eq!(flooder.recv_type("ack").await["id"], "ok");
    assert_eq!(reader.recv_type("message").await["data"], "still flowing");
    assert_eq!(
        server
            .metric("switchboard_slow_consumer_closes_total")
            .await,
        0.0
    );
}
