//! Server integration tests over real sockets: every message type, the error and
//! close codes a client can trigger, resume, takeover, limits, drain.

mod common;

use std::time::Duration;

use common::*;
use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;

#[tokio::test]
async fn classic_client_message_set_works_unchanged() {
    let server = start(builder()).await;
    let url = server.url();
    // A client of the widely copied `ws` example: no subprotocol, no ids, no acks,
    // and it ignores `connected`, `seq` and other extra fields.
    let mut a = Ws::connect(url).await;
    let mut b = Ws::connect(url).await;
    a.send(json!({"type":"join","roomId":"room1","userId":"alice"}))
        .await;
    assert_eq!(a.recv().await["type"], "room-info");
    b.send(json!({"type":"join","roomId":"room1","userId":"bob"}))
        .await;
    let info = b.recv().await;
    assert_eq!(info["type"], "room-info");
    assert_eq!(info["users"], json!(["alice"]));
    let joined = a.recv().await;
    assert_eq!(
        (joined["type"].as_str(), joined["userId"].as_str()),
        (Some("user-joined"), Some("bob"))
    );
    b.send(json!({"type":"offer","to":"alice","roomId":"room1","sdp":{"type":"offer","sdp":"v=0\r\n"}})).await;
    let offer = a.recv().await;
    assert_eq!(offer["type"], "offer");
    assert_eq!(offer["from"], "bob");
    assert_eq!(offer["to"], "alice");
    assert_eq!(offer["sdp"]["sdp"], "v=0\r\n");
    a.send(json!({"type":"answer","to":"bob","roomId":"room1","sdp":{"type":"answer","sdp":"v=0\r\n"}})).await;
    assert_eq!(b.recv().await["from"], "alice");
    a.send(json!({"type":"candidate","to":"bob","roomId":"room1","candidate":{"candidate":"candidate:1 1 udp 1 1.2.3.4 5 typ host","sdpMid":"0"}})).await;
    let c = b.recv().await;
    assert_eq!(c["type"], "candidate");
    assert_eq!(c["candidate"]["sdpMid"], "0");
    b.send(json!({"type":"leave","roomId":"room1"})).await;
    let left = a.recv().await;
    assert_user_left(&left, "bob", "leave");
}

#[tokio::test]
async fn subprotocol_is_selected_when_offered() {
    let server = start(builder()).await;
    let mut req = tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(
        server.url(),
    )
    .unwrap();
    req.headers_mut().insert(
        "sec-websocket-protocol",
        "foo, webrtc-signaling".parse().unwrap(),
    );
    let (_ws, resp) = tokio_tungstenite::connect_async(req).await.unwrap();
    assert_eq!(
        resp.headers().get("sec-websocket-protocol").unwrap(),
        "webrtc-signaling"
    );
    let (_ws, resp) = tokio_tungstenite::connect_async(server.url())
        .await
        .unwrap();
    assert!(resp.headers().get("sec-websocket-protocol").is_none());
}

#[tokio::test]
async fn every_message_type_over_the_wire() {
    let server = start(builder()).await;
    let url = server.url();
    let mut a = Ws::joined(url, "r", "a").await;
    let mut b = Ws::joined(url, "r", "b").await;
    let joined = a.recv_type("user-joined").await;
    assert_eq!(joined["polite"], false);
    // message to one peer and to the room, chat, ping, id → ack, cumulative ack
    a.send(json!({"type":"message","to":"b","data":{"x":1},"id":"m1"}))
        .await;
    assert_eq!(a.recv().await, json!({"seq": 3, "type":"ack","id":"m1"}));
    let m = b.recv().await;
    assert_eq!(
        (m["type"].as_str(), m["from"].as_str(), &m["data"]),
        (Some("message"), Some("a"), &json!({"x":1}))
    );
    b.send(json!({"type":"message","data":"all"})).await;
    assert_eq!(a.recv().await["data"], "all");
    a.send(json!({"type":"chat","content":"hi"})).await;
    for w in [&mut a, &mut b] {
        let c = w.recv().await;
        assert_eq!(
            (
                c["type"].as_str(),
                c["content"].as_str(),
                c["from"].as_str()
            ),
            (Some("chat"), Some("hi"), Some("a"))
        );
        assert!(c["timestamp"].is_u64());
    }
    a.send(json!({"type":"ping","timestamp":42})).await;
    let pong = a.recv().await;
    assert_eq!(
        (pong["type"].as_str(), pong["timestamp"].as_u64()),
        (Some("pong"), Some(42))
    );
    let seq = pong["seq"].as_u64().unwrap();
    a.send(json!({"type":"ack","seq":seq})).await;
    a.send(json!({"type":"ACK","seq":seq})).await;
    a.expect_silence(Duration::from_millis(100)).await;
    assert_eq!(server.rooms()[0].peers.len(), 2);
}

#[tokio::test]
async fn client_triggerable_error_codes() {
    let server = start(builder().max_room_size(2).max_message_bytes(1024)).await;
    let url = server.url();
    let mut a = Ws::joined(url, "r", "alice").await;
    let _b = Ws::joined(url, "r", "bob").await;
    let mut c = Ws::connect(url).await;
    c.send_raw("{oops").await;
    let e = c.recv().await;
    assert_eq!(
        (e["type"].as_str(), e["code"].as_str()),
        (Some("error"), Some("invalid-json"))
    );
    assert!(
        e["message"].as_str().unwrap().len() > 5,
        "a sentence for a person"
    );
    assert_eq!(c.error_code(json!({"roomId":"r"})).await, "invalid-message");
    assert_eq!(
        c.error_code(json!({"type":"teleport"})).await,
        "unknown-type"
    );
    assert_eq!(
        c.error_code(json!({"type":"chat","content":"x"})).await,
        "not-in-room"
    );
    assert_eq!(
        c.error_code(json!({"type":"join","roomId":"r","userId":"carol"}))
            .await,
        "room-full"
    );
    assert_eq!(
        c.error_code(json!({"type":"join","roomId":"r","userId":"alice"}))
            .await,
        "user-id-taken"
    );
    assert_eq!(
        a.error_code(json!({"type":"offer","to":"zed","sdp":"x"}))
            .await,
        "peer-not-found"
    );
    assert_eq!(
        a.error_code(json!({"type":"join","roomId":"r2","userId":"mallory"}))
            .await,
        "forbidden"
    );
    assert_eq!(
        a.error_code(json!({"type":"message","to":"bob","data":"x".repeat(980)}))
            .await,
        "message-too-big"
    );
    let mut d = Ws::connect(url).await;
    d.send(json!({"type":"resume","sessionId":"x","resumeToken":"y","lastSeq":0,"id":9}))
        .await;
    let e = d.recv().await;
    assert_eq!(
        (e["code"].as_str(), e["ref"].as_u64()),
        (Some("resume-failed"), Some(9))
    );
    assert_eq!(
        c.error_code(json!({"type":"resume","sessionId":"x","resumeToken":"y","lastSeq":0}))
            .await,
        "invalid-message",
        "resume must be a connection's first message"
    );
    // Errors never close the connection.
    c.send(json!({"type":"ping"})).await;
    assert_eq!(c.recv().await["type"], "pong");
}

#[tokio::test]
async fn rate_limit_then_recovery() {
    let server = start(builder().rate_limit_burst(5).rate_limit_rps(10)).await;
    let mut a = Ws::connect(server.url()).await;
    for _ in 0..12 {
        a.send(json!({"type":"ping"})).await;
    }
    let mut pongs = 0;
    let mut limited = 0;
    loop {
        match tokio::time::timeout(Duration::from_millis(300), a.recv()).await {
            Ok(m) if m["type"] == "pong" => pongs += 1,
            Ok(m) if m["code"] == "rate-limited" => limited += 1,
            Ok(m) => panic!("unexpected {m}"),
            Err(_) => break,
        }
    }
    assert!(
        (5..=8).contains(&pongs),
        "burst of 5 (+ refill), got {pongs}"
    );
    assert_eq!(
        limited, 1,
        "one rate-limited error per second, not one per message"
    );
    tokio::time::sleep(Duration::from_millis(600)).await;
    a.send(json!({"type":"ping"})).await;
    assert_eq!(
        a.recv().await["type"],
        "pong",
        "recovered after the bucket refilled"
    );
}

#[tokio::test]
async fn sustained_flood_is_closed_with_1008() {
    let server = start(builder().rate_limit_burst(5).rate_limit_rps(2)).await;
    let mut a = Ws::connect(server.url()).await;
    // 60 msgs/s (30× the limit) for up to 8 s: closed after ~5 s.
    let started = std::time::Instant::now();
    let code = loop {
        if a.ws
            .send(Message::text(r#"{"type":"ping"}"#))
            .await
            .is_err()
        {
            break a.expect_close().await;
        }
        if let Ok(Some(Ok(Message::Close(f)))) =
            tokio::time::timeout(Duration::from_millis(16), a.ws.next()).await
        {
            break f.map(|f| u16::from(f.code)).unwrap_or(1005);
        }
        assert!(
            started.elapsed() < Duration::from_secs(8),
            "flood never closed"
        );
    };
    assert_eq!(code, 1008);
    assert!(started.elapsed() >= Duration::from_secs(4));
}

#[tokio::test]
async fn size_limit_closes_with_1009_and_binary_with_1003() {
    let server = start(builder().max_message_bytes(1024)).await;
    let mut a = Ws::joined(server.url(), "r", "a").await;
    let mut b = Ws::joined(server.url(), "r", "b").await;
    a.recv_type("user-joined").await;
    b.send_raw(&format!(
        r#"{{"type":"message","data":"{}"}}"#,
        "x".repeat(2000)
    ))
    .await;
    assert_eq!(b.expect_close().await, 1009);
    // Nothing of that message reached the room; b left (its connection was closed for a violation).
    let left = a.recv().await;
    assert_user_left(&left, "b", "closed");
    let mut c = Ws::connect(server.url()).await;
    c.ws.send(Message::binary(vec![1u8, 2, 3])).await.unwrap();
    assert_eq!(c.expect_close().await, 1003);
}

#[tokio::test]
async fn protocol_error_closes_with_1002() {
    let server = start(builder()).await;
    let mut s = tokio::net::TcpStream::connect(server.local_addr())
        .await
        .unwrap();
    s.write_all(b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n").await.unwrap();
    // An unmasked client frame is a protocol error.
    s.write_all(&[0x81, 0x02, b'{', b'}']).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let mut got = Vec::new();
    let _ = tokio::time::timeout(WAIT, async {
        loop {
            let n = s.read(&mut buf).await.unwrap_or(0);
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
        }
    })
    .await;
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 101"), "{text}");
    // The last frame is a close (0x88) with code 1002.
    let close_at = got
        .windows(2)
        .rposition(|w| w[0] == 0x88)
        .expect("a close frame");
    assert_eq!(
        u16::from_be_bytes([got[close_at + 2], got[close_at + 3]]),
        1002
    );
}

#[tokio::test]
async fn resume_after_a_killed_tcp_connection_replays_in_order() {
    let server = start(builder()).await;
    let url = server.url();
    let mut a = Ws::joined(url, "r", "a").await;
    let b = Ws::joined(url, "r", "b").await;
    a.recv_type("user-joined").await;
    let (sid, token) = b.session();
    b.kill();
    // Messages sent while b is away are accepted (acked) and buffered.
    for i in 0..20 {
        a.send(json!({"type":"message","to":"b","data":i,"id":i}))
            .await;
        assert_eq!(a.recv().await["type"], "ack");
    }
    let mut b2 = Ws::connect(url).await;
    b2.send(json!({"type":"resume","sessionId":sid,"resumeToken":token,"lastSeq":1}))
        .await;
    let resumed = b2.recv().await;
    assert_eq!(
        (resumed["type"].as_str(), resumed["replayed"].as_u64()),
        (Some("resumed"), Some(20))
    );
    assert!(resumed.get("seq").is_none());
    for i in 0..20u64 {
        let m = b2.recv().await;
        assert_eq!(
            (m["data"].as_u64(), m["seq"].as_u64()),
            (Some(i), Some(i + 2))
        );
    }
    // Nobody was told anything, and b is live again.
    a.expect_silence(Duration::from_millis(200)).await;
    b2.send(json!({"type":"message","to":"a","data":"back"}))
        .await;
    assert_eq!(a.recv().await["data"], "back");
}

#[tokio::test]
async fn resume_takes_over_a_live_connection_with_4409() {
    let server = start(builder()).await;
    let mut b = Ws::joined(server.url(), "r", "b").await;
    let (sid, token) = b.session();
    let mut b2 = Ws::connect(server.url()).await;
    b2.send(json!({"type":"resume","sessionId":sid,"resumeToken":token,"lastSeq":1}))
        .await;
    assert_eq!(b2.recv().await["type"], "resumed");
    assert_eq!(b.expect_close().await, 4409);
    assert!(server.peers("r").unwrap()[0].connected);
}

#[tokio::test]
async fn away_session_times_out_with_user_left_timeout() {
    let server = start(builder().resume_window(Duration::from_millis(300))).await;
    let mut a = Ws::joined(server.url(), "r", "a").await;
    let b = Ws::joined(server.url(), "r", "b").await;
    a.recv_type("user-joined").await;
    b.kill();
    a.expect_silence(Duration::from_millis(150)).await;
    let left = a.recv().await;
    assert_user_left(&left, "b", "timeout");
}

#[tokio::test]
async fn rejoin_after_a_blip_replaces_the_old_session() {
    let server = start(builder()).await;
    let mut a = Ws::joined(server.url(), "r", "a").await;
    let b = Ws::joined(server.url(), "r", "b").await;
    a.recv_type("user-joined").await;
    b.kill();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let _b2 = Ws::joined(server.url(), "r", "b").await;
    let left = a.recv().await;
    assert_user_left(&left, "b", "replaced");
    let joined = a.recv().await;
    assert_eq!(
        (joined["type"].as_str(), joined["userId"].as_str()),
        (Some("user-joined"), Some("b"))
    );
}

#[tokio::test]
async fn clean_close_1000_and_1001_end_membership_at_once() {
    let server = start(builder()).await;
    let mut a = Ws::joined(server.url(), "r", "a").await;
    for (user, code) in [("b", 1000), ("c", 1001)] {
        let w = Ws::joined(server.url(), "r", user).await;
        a.recv_type("user-joined").await;
        w.close(code).await;
        let left = a.recv().await;
        assert_user_left(&left, user, "closed");
    }
    // 4000 (the client stopped hearing us) keeps the session for a resume.
    let w = Ws::joined(server.url(), "r", "d").await;
    a.recv_type("user-joined").await;
    w.close(4000).await;
    a.expect_silence(Duration::from_millis(200)).await;
}

#[tokio::test]
async fn kick_closes_with_4403() {
    let server = start(builder()).await;
    let mut a = Ws::joined(server.url(), "r", "a").await;
    let mut b = Ws::joined(server.url(), "r", "b").await;
    a.recv_type("user-joined").await;
    server.kick("r", "b").await.unwrap();
    assert_eq!(b.expect_close().await, 4403);
    assert_eq!(a.recv().await["reason"], "kicked");
}

#[tokio::test]
async fn heartbeat_drops_a_silent_client_and_keeps_its_session() {
    let server = start(
        builder()
            .heartbeat_interval(Duration::from_millis(150))
            .heartbeat_timeout(Duration::from_millis(150))
            .resume_window(Duration::from_secs(30)),
    )
    .await;
    let mut a = Ws::joined(server.url(), "r", "a").await;
    // b stops reading: tungstenite answers pings only while polled, so b goes silent.
    let b = Ws::joined(server.url(), "r", "b").await;
    a.recv_type("user-joined").await;
    let mut ping_seen = false;
    for _ in 0..10 {
        if let Ok(Some(Ok(Message::Ping(_)))) =
            tokio::time::timeout(Duration::from_millis(200), a.ws.next()).await
        {
            ping_seen = true;
            break;
        }
    }
    assert!(ping_seen, "the server pings");
    let deadline = std::time::Instant::now() + Duration::from_secs(3);
    while server
        .peers("r")
        .unwrap()
        .iter()
        .any(|p| p.user_id == "b" && p.connected)
    {
        assert!(
            std::time::Instant::now() < deadline,
            "silent client never dropped"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Away, not gone: nobody was told.
    assert_eq!(server.peers("r").unwrap().len(), 2);
    drop(b);
}

#[tokio::test]
async fn a_reader_that_stops_reading_is_ended_as_a_slow_consumer() {
    let (_server, _a, mut b) = slow_consumer_flooded().await;
    b.expect_slow_consumer_end().await;
}

#[tokio::test]
async fn admission_origin_per_ip_and_global_limits() {
    let server = start(
        builder()
            .allowed_origins(["https://app.example"])
            .max_conns_per_ip(2),
    )
    .await;
    let url = server.url();
    assert_eq!(
        Ws::connect_with(url, &[("origin", "https://evil.example")])
            .await
            .err(),
        Some(Refused::Status(403))
    );
    let _a = Ws::connect_with(url, &[("origin", "https://app.example")])
        .await
        .expect("allowed origin");
    let _b = Ws::connect(url).await; // no Origin header: not a browser
    assert_eq!(
        Ws::connect_with(url, &[]).await.err(),
        Some(Refused::Status(429))
    );
    drop(_a);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let _c = Ws::connect_with(url, &[])
        .await
        .expect("a freed slot is reusable");

    let server = start(builder().max_conns(1)).await;
    let _x = Ws::connect(server.url()).await;
    assert_eq!(
        Ws::connect_with(server.url(), &[]).await.err(),
        Some(Refused::Status(503))
    );
}

#[tokio::test]
async fn plain_http_endpoints() {
    let server = start(builder()).await;
    let _a = Ws::joined(server.url(), "r", "a").await;
    let (status, body) = http_get(&server, "/health").await;
    assert_eq!(status, 200);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v, json!({"status":"ok","connections":1,"rooms":1}));
    assert_eq!(http_get(&server, "/ready").await.0, 200);
    let (status, metrics) = http_get(&server, "/metrics").await;
    assert_eq!(status, 200);
    assert!(
        metrics.contains("# TYPE switchboard_connections gauge\nswitchboard_connections 1\n"),
        "{metrics}"
    );
    assert!(metrics.contains("switchboard_joins_total 1\n"));
    assert!(metrics.contains("switchboard_messages_received_total 1\n"));
    assert_eq!(http_get(&server, "/nothing-here").await.0, 404);
    assert_eq!(http_get(&server, "/ws").await.0, 426);
}

#[tokio::test]
async fn drain_sends_draining_then_1001_and_refuses_newcomers() {
    let server = start(builder().drain_retry_after(Duration::from_millis(1500))).await;
    let mut a = Ws::joined(server.url(), "r", "a").await;
    let handle = server.clone();
    let drained = tokio::spawn(async move { handle.shutdown().await });
    let d = a.recv_type("draining").await;
    assert_eq!(d["retryAfterMs"], 1500);
    assert_eq!(http_get(&server, "/ready").await.0, 503);
    let (status, body) = http_get(&server, "/health").await;
    assert_eq!((status, body.contains("draining")), (503, true));
    assert_eq!(
        Ws::connect_with(server.url(), &[]).await.err(),
        Some(Refused::Status(503))
    );
    assert_eq!(a.expect_close().await, 1001);
    tokio::time::timeout(WAIT, drained)
        .await
        .expect("drain completes once all closed")
        .unwrap();
    assert_eq!(server.connection_count(), 0);
}

#[tokio::test]
async fn drain_timeout_cuts_clients_that_never_close() {
    let server = start(builder().drain_timeout(Duration::from_millis(300))).await;
    // This client never reads, so it never answers the close.
    let _a = Ws::joined(server.url(), "r", "a").await;
    let started = std::time::Instant::now();
    tokio::time::timeout(WAIT, server.shutdown())
        .await
        .expect("shutdown is bounded");
    // Cut at the drain timeout, not after the close handshake's 2 s grace.
    assert!(started.elapsed() < Duration::from_millis(1500));
}

#[tokio::test]
async fn drain_timeout_cuts_sockets_still_in_their_request_phase() {
    let server = start(
        builder()
            .drain_timeout(Duration::from_millis(300))
            .handshake_timeout(Duration::from_secs(30)),
    )
    .await;
    // Connected, but never sends its request: only the cut can end it in time.
    shutdown_cuts_a_silent_socket(server).await;
}

#[tokio::test]
async fn server_events_stream() {
    let server = start(builder()).await;
    let mut events = server.events();
    let mut a = Ws::joined(server.url(), "r", "a").await;
    let _b = Ws::joined(server.url(), "r", "b").await;
    a.send(json!({"type":"offer","to":"b","sdp":"x"})).await;
    let mut kinds = Vec::new();
    while kinds.len() < 5 {
        let e = tokio::time::timeout(WAIT, events.next())
            .await
            .unwrap()
            .unwrap();
        kinds.push(e.kind().to_owned());
        if e.kind() == "offer" {
            assert_eq!(e.from(), Some("a"));
        }
    }
    assert_eq!(
        kinds,
        [
            "connected",
            "user-joined",
            "connected",
            "user-joined",
            "offer"
        ]
    );
    server
        .send("r", "b", json!({"type":"notice","text":"hello"}))
        .await
        .unwrap();
    assert_eq!(
        server
            .broadcast("r", json!({"type":"notice"}))
            .await
            .unwrap(),
        2
    );
}

#[tokio::test]
async fn a_client_that_takes_no_frames_is_dropped_after_the_heartbeat_timeout() {
    // A big outbound queue so the slow-consumer bound is not what ends it: the
    // bounded write is.
    let server = start(
        builder()
            .heartbeat_timeout(Duration::from_millis(300))
            .outbound_queue_bytes(256 << 20)
            .max_message_bytes(64 * 1024),
    )
    .await;
    let mut a = Ws::joined(server.url(), "r", "a").await;
    let b = Ws::joined(server.url(), "r", "b").await;
    a.recv_type("user-joined").await;
    let big = "w".repeat(60_000);
    let started = std::time::Instant::now();
    let mut dropped = false;
    for _ in 0..2000 {
        a.send(json!({"type":"message","to":"b","data":big})).await;
        if server
            .peers("r")
            .unwrap()
            .iter()
            .any(|p| p.user_id == "b" && !p.connected)
        {
            dropped = true;
            break;
        }
        if started.elapsed() > Duration::from_secs(10) {
            break;
        }
    }
    if !dropped {
        let deadline = std::time::Instant::now() + Duration::from_secs(3);
        while !server
            .peers("r")
            .unwrap()
            .iter()
            .any(|p| p.user_id == "b" && !p.connected)
        {
            assert!(
                std::time::Instant::now() < deadline,
                "the stuck writer never gave up"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    // Away, not gone: the session can still resume.
    assert_eq!(server.peers("r").unwrap().len(), 2);
    drop(b);
}
