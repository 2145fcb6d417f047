//! The away-session budget against the real binary on its defaults: one IP
//! joins and drops its TCP connections without a close frame, over and over,
//! while legitimate clients from other loopback addresses use the same room.
//! The attacker's oldest away sessions go (`user-left`, reason `evicted`); the
//! bystanders' sessions, live or away, are untouched and resume with replay.

mod common;

use common::binary::Binary;
use common::{Ws, WAIT};
use serde_json::{json, Value};

async fn join(ws: &mut Ws, room: &str, user: &str) {
    ws.send(json!({"type":"join","roomId":room,"userId":user}))
        .await;
    ws.recv_type("room-info").await;
}

#[tokio::test]
async fn an_ip_dropping_connections_pays_with_its_own_oldest_away_sessions() {
    // Defaults, but for the message rate (the bystander's broadcasts are many).
    let server = Binary::start(&[]);
    let url = server.ws_url();

    // A bystander who will be away during the attack, and one who stays.
    let mut away_friend = Ws::connect_from("127.0.0.9", &url).await;
    join(&mut away_friend, "r", "friend").await;
    let (session, token) = away_friend.session();
    let mut host = Ws::connect_from("127.0.0.10", &url).await;
    join(&mut host, "r", "host").await;
    away_friend.kill();

    // 40 joins from one IP, each dropped without a close frame (the per-IP cap
    // of away sessions is 32 by default).
    for i in 0..40 {
        let mut ws = Ws::connect_from("127.0.0.8", &url).await;
        join(&mut ws, "r", &format!("bot{i}")).await;
        ws.kill();
    }
    // The host sees 8 bots evicted, the oldest first; nobody else.
    let mut evicted = Vec::new();
    let deadline = tokio::time::Instant::now() + WAIT;
    while evicted.len() < 8 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "evictions: {evicted:?}"
        );
        let msg: Value = host.recv().await;
        if msg["type"] == "user-left" {
            assert_eq!(msg["reason"], "evicted", "{msg}");
            evicted.push(msg["userId"].as_str().unwrap().to_owned());
        }
    }
    let expected: Vec<String> = (0..8).map(|i| format!("bot{i}")).collect();
    assert_eq!(evicted, expected);

    assert_eq!(
        server.metric("switchboard_sessions_evicted_total").await,
        8.0
    );
    // 32 bots and the friend are away.
    assert_eq!(server.metric("switchboard_sessions_away").await, 33.0);
    assert!(server.metric("switchboard_away_replay_bytes").await > 0.0);

    // The host keeps relaying; the friend resumes and gets what it missed.
    host.send(json!({"type":"message","to":"friend","data":{"n":1}}))
        .await;
    let mut back = Ws::connect_from("127.0.0.9", &url).await;
    back.send(json!({"type":"resume","sessionId":session,"resumeToken":token,"lastSeq":2}))
        .await;
    back.recv_type("resumed").await;
    let missed = back.recv_type("message").await;
    assert_eq!(missed["from"], "host");
    assert_eq!(missed["data"]["n"], 1);
}

#[tokio::test]
async fn away_replay_bytes_draw_from_one_budget_and_the_oldest_away_session_goes() {
    let server = common::start(
        common::builder()
            .away_replay_budget_bytes(8 * 1024)
            .max_away_per_ip(0),
    )
    .await;
    let url = server.url().to_owned();
    let mut host = Ws::joined(&url, "r", "host").await;
    for user in ["old", "new"] {
        let ws = Ws::joined(&url, "r", user).await;
        host.recv_type("user-joined").await;
        ws.kill();
    }
    // 1 KiB messages to the room fill the away sessions' buffers: past 8 KiB
    // together, the oldest away session ends; the newer one stays.
    let blob = "x".repeat(1024);
    let mut left = None;
    for _ in 0..16 {
        host.send(json!({"type":"chat","content":blob})).await;
        if let Ok(Some(Ok(tokio_tungstenite::tungstenite::Message::Text(t)))) =
            tokio::time::timeout(
                std::time::Duration::from_millis(50),
                futures_util::StreamExt::next(&mut host.ws),
            )
            .await
        {
            let v: Value = serde_json::from_str(&t).unwrap();
            if v["type"] == "user-left" {
                left = Some(v);
                break;
            }
        }
    }
    let left = left.expect("an away session was evicted");
    assert_eq!(
        (left["userId"].as_str(), left["reason"].as_str()),
        (Some("old"), Some("evicted"))
    );
    let peers = server.hub().peers("r").expect("the room");
    let users: Vec<&str> = peers.iter().map(|p| p.user_id.as_str()).collect();
    assert_eq!(users, ["host", "new"]);
    assert!(
        server
            .hub()
            .metrics()
            .sessions_evicted
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 1
    );
}

#[tokio::test]
async fn an_authenticated_user_dropping_connections_from_many_ips_pays_per_user() {
    // Static tokens; the per-user cap is 8 by default, the per-IP cap 32.
    let server = Binary::start(&["--auth-tokens", "tok-m:mallory,tok-h:host"]);
    let url = server.ws_url();
    let mut host = Ws::connect_from("127.0.0.30", &format!("{url}?token=tok-h")).await;
    join(&mut host, "r0", "host").await;
    // Mallory joins 10 rooms, each from another IP, each dropped at once.
    for i in 0..10 {
        let from = format!("127.0.0.{}", 40 + i);
        let mut ws = Ws::connect_from(&from, &format!("{url}?token=tok-m")).await;
        join(&mut ws, &format!("r{i}"), "mallory").await;
        ws.kill();
    }
    // No IP is over its cap, the user is: mallory's 2 oldest go — in room
    // r0 first, where the host sees it.
    let left = host.recv_type("user-left").await;
    assert_eq!(
        (left["userId"].as_str(), left["reason"].as_str()),
        (Some("mallory"), Some("evicted"))
    );
    let deadline = tokio::time::Instant::now() + WAIT;
    while server.metric("switchboard_sessions_evicted_total").await < 2.0 {
        assert!(tokio::time::Instant::now() < deadline, "two evictions");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(
        server.metric("switchboard_sessions_evicted_total").await,
        2.0
    );
    assert_eq!(server.metric("switchboard_sessions_away").await, 8.0);
    // The host is untouched and still in its room.
    host.send(json!({"type":"leave","roomId":"r0"})).await;
    host.send(json!({"type":"join","roomId":"r0"})).await;
    assert_eq!(host.recv_type("room-info").await["users"], json!([]));
}
