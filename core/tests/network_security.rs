//! Over real sockets: TURN credentials in `room-info`, trusted-proxy headers,
//! and TLS (`wss://`) with a certificate made at test time.

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use common::*;
use hmac::{Hmac, Mac};
use serde_json::json;

#[tokio::test]
async fn room_info_carries_turn_rest_credentials() {
    let secret = "coturn-shared-secret";
    let server = start(builder().turn(
        secret,
        [
            "stun:stun.example.org:3478",
            "turn:turn.example.org:3478?transport=udp",
            "turns:turn.example.org:5349",
        ],
        Duration::from_secs(600),
    ))
    .await;
    let mut a = Ws::connect(server.url()).await;
    a.send(json!({"type":"join","roomId":"r","userId":"alice"}))
        .await;
    let info = a.recv_type("room-info").await;
    let servers = info["iceServers"].as_array().expect("iceServers").clone();
    assert_eq!(servers.len(), 2, "{info}");
    assert_eq!(servers[0], json!({"urls":["stun:stun.example.org:3478"]}));
    let turn = &servers[1];
    assert_eq!(
        turn["urls"],
        json!([
            "turn:turn.example.org:3478?transport=udp",
            "turns:turn.example.org:5349"
        ])
    );
    // username = expiry:userId, expiry = now + ttl (Unix seconds).
    let username = turn["username"].as_str().unwrap();
    let (expiry, user) = username.split_once(':').unwrap();
    assert_eq!(user, "alice");
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let expiry: u64 = expiry.parse().unwrap();
    assert!(
        (now + 590..=now + 601).contains(&expiry),
        "{expiry} vs {now}"
    );
    // credential = base64(HMAC-SHA1(secret, username)), what coturn checks.
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(username.as_bytes());
    let want = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    assert_eq!(turn["credential"], want.as_str());

    // Without TURN configured there is no iceServers field.
    let plain = start(builder()).await;
    let mut b = Ws::connect(plain.url()).await;
    b.send(json!({"type":"join","roomId":"r","userId":"bob"}))
        .await;
    assert!(b.recv_type("room-info").await.get("iceServers").is_none());
}
