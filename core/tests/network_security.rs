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

/// The client IP the server settled on for the next connection (its `connected`
/// event), after connecting with these headers.
async fn seen_ip(
    server: &switchboard::ServerHandle,
    headers: &[(&str, &str)],
) -> Result<(String, Ws), Refused> {
    use futures_util::StreamExt;
    let mut events = server.events();
    let ws = Ws::connect_with(server.url(), headers).await?;
    loop {
        let e = tokio::time::timeout(WAIT, events.next())
            .await
            .expect("an event")
            .expect("events go on");
        if e.kind() == "connected" {
            let ip = e.fields().unwrap()["ip"].as_str().unwrap().to_owned();
            return Ok((ip, ws));
        }
    }
}

#[tokio::test]
async fn forwarding_headers_from_an_untrusted_peer_are_ignored() {
    // The test client (127.0.0.1) is not a trusted proxy here.
    let server = start(
        builder()
            .trusted_proxies(["10.0.0.0/8"])
            .max_conns_per_ip(1),
    )
    .await;
    let (ip, _a) = seen_ip(
        &server,
        &[
            ("x-forwarded-for", "203.0.113.7"),
            ("x-real-ip", "203.0.113.8"),
        ],
    )
    .await
    .unwrap();
    assert_eq!(ip, "127.0.0.1", "spoofed headers are not believed");
    // Nor can they dodge the per-IP limit.
    let second = Ws::connect_with(server.url(), &[("x-forwarded-for", "198.51.100.1")]).await;
    assert_eq!(second.err(), Some(Refused::Status(429)));
}

#[tokio::test]
async fn forwarding_headers_from_a_trusted_proxy_give_the_client_ip() {
    let server = start(
        builder()
            .trusted_proxies(["127.0.0.1/32"])
            .max_conns_per_ip(1),
    )
    .await;
    let (ip, _a) = seen_ip(&server, &[("x-forwarded-for", "203.0.113.7")])
        .await
        .unwrap();
    assert_eq!(ip, "203.0.113.7");
    // The client forged the left entry; the proxy appended what it saw.
    let (ip, _b) = seen_ip(
        &server,
        &[("x-forwarded-for", "198.51.100.99, 203.0.113.9")],
    )
    .await
    .unwrap();
    assert_eq!(ip, "203.0.113.9");
    let (ip, _c) = seen_ip(&server, &[("x-real-ip", "203.0.113.10")])
        .await
        .unwrap();
    assert_eq!(ip, "203.0.113.10");
    // The per-IP limit applies to the client behind the proxy, not the proxy.
    let again = Ws::connect_with(server.url(), &[("x-forwarded-for", "203.0.113.7")]).await;
    assert_eq!(again.err(), Some(Refused::Status(429)));
}

#[tokio::test]
async fn bad_proxy_lists_fail_at_build() {
    assert!(builder().trusted_proxies(["10.0.0.0/33"]).build().is_err());
    assert!(builder().trusted_proxies(["proxy.local"]).build().is_err());
}
