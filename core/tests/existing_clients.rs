//! Clients written the way the classic signaling servers' clients were written
//! (a plain WebSocket, no project library): rooms in the URL (`?room=` on `/`,
//! `/signaling/{roomId}/{userId}`), a reconnecting client that flushes queued
//! offers on open, app message types, a token as a subprotocol, MessagePack and
//! JSON peers calling each other; plus host-side room control.

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::*;
use futures_util::{SinkExt, StreamExt};
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use switchboard::{Event, JwtConfig, ServerHandle};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

fn base(server: &ServerHandle) -> String {
    format!("ws://{}", server.local_addr())
}

/// Connects to `path` on the server; returns the socket after `connected`.
async fn at(server: &ServerHandle, path: &str) -> Ws {
    Ws::connect(&format!("{}{path}", base(server))).await
}

#[tokio::test]
async fn room_in_the_query_on_the_root_path_joins_at_connect() {
    let server = start(builder().path("/ws,/")).await;
    let mut a = at(&server, "/?room=general&userId=a&displayName=Ann%20A").await;
    let info = a.recv().await;
    assert_eq!(info["type"], "room-info", "room-info right after connected");
    assert_eq!(info["roomId"], "general");
    assert_eq!(info["you"]["displayName"], "Ann A");
    let mut b = at(&server, "/?roomId=general&userId=b").await;
    let info = b.recv_type("room-info").await;
    assert_eq!(info["users"], json!(["a"]));
    assert_eq!(a.recv_type("user-joined").await["userId"], "b");
    // No `join` ever sent: chat straight away.
    b.send(json!({"type":"chat","content":"hi"})).await;
    let chat = a.recv_type("chat").await;
    assert_eq!(
        (chat["from"].as_str(), chat["content"].as_str()),
        (Some("b"), Some("hi"))
    );
    // The fixed path still works the classic way, and unknown paths stay 404.
    let _c = Ws::joined(&format!("{}/ws", base(&server)), "general", "c").await;
    for path in ["/nope", "/ws/x"] {
        let r = Ws::connect_with(&format!("{}{path}", base(&server)), &[]).await;
        assert_eq!(r.err(), Some(Refused::Status(404)), "{path}");
    }
}

#[tokio::test]
async fn template_path_client_whose_first_frame_is_an_offer() {
    let server = start(builder().path("/signaling/{roomId}/{userId}")).await;
    let mut alice = at(&server, "/signaling/r1/alice").await;
    alice.recv_type("room-info").await;
    let mut bob = at(&server, "/signaling/r1/bob").await;
    // Bob's first frame, sent before he read anything but `connected`.
    bob.send(json!({"type":"offer","to":"alice","sdp":{"type":"offer","sdp":"v=0"}}))
        .await;
    let offer = alice.recv_type("offer").await;
    assert_eq!(offer["from"], "bob");
    assert_eq!(offer["roomId"], "r1");
    assert_eq!(bob.recv().await["type"], "room-info");
    for path in [
        "/signaling/r1",
        "/signaling//bob",
        "/signaling/r1/bob/x",
        "/ws",
    ] {
        let r = Ws::connect_with(&format!("{}{path}", base(&server)), &[]).await;
        assert_eq!(r.err(), Some(Refused::Status(404)), "{path}");
    }
}

#[tokio::test]
async fn malformed_url_fields_are_400_and_bad_templates_are_config_errors() {
    let server = start(builder().path("/,/rooms/{roomId}")).await;
    let long = "x".repeat(300);
    for path in [
        "/?room=".to_owned(),
        format!("/?room={long}"),
        format!("/rooms/{long}"),
        format!("/?room=r&userId={long}"),
    ] {
        let r = Ws::connect_with(&format!("{}{path}", base(&server)), &[]).await;
        assert_eq!(r.err(), Some(Refused::Status(400)), "{path}");
    }
    let (_, metrics) = http_get(&server, "/metrics").await;
    assert!(metrics.contains("switchboard_handshakes_refused_total{reason=\"bad_url\"} 4"));
    for bad in ["/a/{room}", "/{roomId}/{roomId}", "ws", "/x/{userId}x"] {
        let e = builder().path(bad).build().unwrap_err();
        assert!(e.to_string().contains("path"), "{bad}: {e}");
    }
}

#[tokio::test]
async fn a_reconnecting_client_flushes_queued_offers_on_open() {
    let server = start(builder().path("/").resume_window(Duration::from_secs(20))).await;
    let mut alice = at(&server, "/?room=call&userId=alice").await;
    alice.recv_type("room-info").await;
    let bob = at(&server, "/?room=call&userId=bob").await;
    alice.recv_type("user-joined").await;
    bob.kill(); // a network cut: bob's session stays away
                // ReconnectingWebSocket: the queued offers go out the moment the socket opens.
    let url = format!("{}/?room=call&userId=bob", base(&server));
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    for i in 0..3 {
        let offer = json!({"type":"offer","to":"alice","sdp":{"n":i}});
        ws.send(Message::text(offer.to_string())).await.unwrap();
    }
    for i in 0..3 {
        let offer = alice.recv_type("offer").await;
        assert_eq!(
            (offer["from"].as_str(), &offer["sdp"]["n"]),
            (Some("bob"), &json!(i))
        );
    }
    let mut types = Vec::new();
    while types.len() < 2 {
        if let Some(Ok(Message::Text(t))) = ws.next().await {
            let v: Value = serde_json::from_str(t.as_str()).unwrap();
            types.push(v["type"].as_str().unwrap().to_owned());
        }
    }
    assert_eq!(types, ["connected", "room-info"], "no error for any offer");
}

#[tokio::test]
async fn a_url_joined_client_resumes_its_session() {
    let server = start(builder().path("/")).await;
    let mut alice = at(&server, "/?room=call&userId=alice").await;
    alice.recv_type("room-info").await;
    let mut bob = at(&server, "/?room=call&userId=bob").await;
    bob.recv_type("room-info").await;
    alice.recv_type("user-joined").await;
    let (session, token) = bob.session();
    bob.kill();
    alice
        .send(json!({"type":"message","to":"bob","data":"while away"}))
        .await;
    let mut back = at(&server, "/?room=call&userId=bob").await;
    back.send(json!({"type":"resume","sessionId":session,"resumeToken":token,"lastSeq":1}))
        .await;
    let resumed = back.recv().await;
    assert_eq!(resumed["type"], "resumed", "{resumed}");
    assert_eq!(back.recv().await["data"], "while away", "replayed");
    // Back in the room with its old session: nobody saw bob leave or join.
    back.send(json!({"type":"chat","content":"back"})).await;
    let next = alice.recv().await;
    assert_eq!(
        (next["type"].as_str(), next["from"].as_str()),
        (Some("chat"), Some("bob"))
    );
}

#[tokio::test]
async fn a_refused_url_join_is_an_error_then_close_4400() {
    let server = start(builder().path("/").max_room_size(1)).await;
    let mut a = at(&server, "/?room=tiny&userId=a").await;
    a.recv_type("room-info").await;
    let mut b = at(&server, "/?room=tiny&userId=b").await;
    let err = b.recv().await;
    assert_eq!(
        (err["type"].as_str(), err["code"].as_str()),
        (Some("error"), Some("room-full"))
    );
    assert_eq!(b.expect_close().await, 4400);
    a.expect_silence(Duration::from_millis(200)).await;
}

#[tokio::test]
async fn app_types_are_relayed_like_message() {
    let server = start(builder().app_types(["hangup", "hand-raise"])).await;
    let mut events = server.events();
    let url = server.url().to_owned();
    let mut a = Ws::joined(&url, "r", "a").await;
    let mut b = Ws::joined(&url, "r", "b").await;
    let mut c = Ws::joined(&url, "r", "c").await;
    a.recv_type("user-joined").await;
    a.recv_type("user-joined").await;
    b.recv_type("user-joined").await;
    a.send(json!({"type":"hangup","to":"b","id":"h1","from":"mallory","reason":"bye"}))
        .await;
    assert_eq!(a.recv().await, json!({"seq": 4, "type":"ack","id":"h1"}));
    let got = b.recv().await;
    assert_eq!(got["type"], "hangup");
    assert_eq!(
        (got["from"].as_str(), got["reason"].as_str()),
        (Some("a"), Some("bye"))
    );
    assert_eq!(got["roomId"], "r");
    // Without `to`: the rest of the room.
    c.send(json!({"type":"hand-raise"})).await;
    assert_eq!(a.recv().await["from"], "c");
    assert_eq!(b.recv().await["type"], "hand-raise");
    c.expect_silence(Duration::from_millis(100)).await;
    // Unlisted types keep `unknown-type`; nothing is delivered.
    assert_eq!(
        a.error_code(json!({"type":"mute","to":"b"})).await,
        "unknown-type"
    );
    b.expect_silence(Duration::from_millis(100)).await;
    let event = next_event(&mut events, "hangup").await;
    assert_eq!(event.to_json()["from"], "a");
    assert!(matches!(event, Event::App { .. }));
    // Bad names are config errors.
    assert!(builder().app_types(["offer"]).build().is_err());
    assert!(builder().app_types(["a b"]).build().is_err());
}

fn jwt(sub: &str, rooms: &[&str]) -> String {
    let exp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 600;
    encode(
        &Header::new(Algorithm::HS256),
        &json!({"sub": sub, "exp": exp, "rooms": rooms}),
        &EncodingKey::from_secret(b"subprotocol-secret"),
    )
    .unwrap()
}

/// A browser-style upgrade offering `protocols`; the selected one, or the status.
async fn with_protocols(url: &str, protocols: &str) -> Result<(Ws, Option<String>), u16> {
    let mut req = url.into_client_request().unwrap();
    req.headers_mut()
        .insert("sec-websocket-protocol", protocols.parse().unwrap());
    match tokio_tungstenite::connect_async(req).await {
        Ok((ws, resp)) => {
            let selected = resp
                .headers()
                .get("sec-websocket-protocol")
                .map(|v| v.to_str().unwrap().to_owned());
            let mut w = Ws {
                ws,
                connected: Value::Null,
            };
            w.connected = w.recv().await;
            Ok((w, selected))
        }
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => Err(r.status().as_u16()),
        Err(e) => panic!("{e}"),
    }
}

#[tokio::test]
async fn a_token_in_a_subprotocol_authenticates_and_bounds_url_rooms() {
    let server = start(
        builder()
            .path("/,/signaling/{roomId}")
            .jwt(JwtConfig::hs256("subprotocol-secret")),
    )
    .await;
    let token = jwt("alice", &["team-*"]);
    let offered = format!("webrtc-signaling, bearer.{token}");
    let url = format!("{}/signaling/team-red", base(&server));
    let (mut ws, selected) = with_protocols(&url, &offered).await.unwrap();
    assert_eq!(
        selected.as_deref(),
        Some("webrtc-signaling"),
        "never the token"
    );
    let info = ws.recv().await;
    assert_eq!(
        (info["type"].as_str(), info["you"]["userId"].as_str()),
        (Some("room-info"), Some("alice"))
    );
    // A URL room outside the token's grants: refused, nothing joined.
    let url = format!("{}/?room=lobby", base(&server));
    let (mut ws, _) = with_protocols(&url, &offered).await.unwrap();
    let err = ws.recv().await;
    assert_eq!(err["code"], "forbidden", "{err}");
    assert_eq!(ws.expect_close().await, 4400);
    assert!(server.peers("lobby").is_none());
    // A bad token in the subprotocol is a 401, like anywhere else.
    let bad = "webrtc-signaling, bearer.not-a-jwt";
    assert_eq!(with_protocols(&url, bad).await.err(), Some(401));
}

/// A raw MessagePack peer.
struct Packed(Ws);

impl Packed {
    async fn connect(url: &str) -> Packed {
        let mut req = url.into_client_request().unwrap();
        req.headers_mut().insert(
            "sec-websocket-protocol",
            "webrtc-signaling.msgpack".parse().unwrap(),
        );
        let (ws, resp) = tokio_tungstenite::connect_async(req).await.unwrap();
        assert_eq!(
            resp.headers()["sec-websocket-protocol"],
            "webrtc-signaling.msgpack"
        );
        let mut p = Packed(Ws {
            ws,
            connected: Value::Null,
        });
        assert_eq!(p.recv().await["type"], "connected");
        p
    }

    async fn send(&mut self, v: Value) {
        let bytes = rmp_serde::to_vec_named(&v).unwrap();
        self.0.ws.send(Message::binary(bytes)).await.unwrap();
    }

    async fn recv(&mut self) -> Value {
        loop {
            match tokio::time::timeout(WAIT, self.0.ws.next()).await.unwrap() {
                Some(Ok(Message::Binary(b))) => return rmp_serde::from_slice(&b).unwrap(),
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                other => panic!("expected a binary frame, got {other:?}"),
            }
        }
    }
}

#[tokio::test]
async fn messagepack_and_json_peers_call_each_other() {
    let server = start(builder()).await;
    let url = server.url().to_owned();
    let mut packed = Packed::connect(&url).await;
    packed
        .send(json!({"type":"join","roomId":"r","userId":"mp"}))
        .await;
    let info = packed.recv().await;
    assert_eq!(info["type"], "room-info", "{info}");
    let mut json_peer = Ws::joined(&url, "r", "js").await;
    assert_eq!(packed.recv().await["type"], "user-joined");
    let sdp = json!({"type":"offer","sdp":"v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\n"});
    packed
        .send(json!({"type":"offer","to":"js","sdp":sdp,"id":7}))
        .await;
    assert_eq!(packed.recv().await["type"], "ack");
    let offer = json_peer.recv_type("offer").await;
    assert_eq!((offer["from"].as_str(), &offer["sdp"]), (Some("mp"), &sdp));
    json_peer
        .send(json!({"type":"answer","to":"mp","sdp":{"n":1.5,"ok":true}}))
        .await;
    let answer = packed.recv().await;
    assert_eq!(answer["from"], "js");
    assert_eq!(answer["sdp"], json!({"n":1.5,"ok":true}));
    // Bad MessagePack is answered like bad JSON; the connection stays.
    packed
        .0
        .ws
        .send(Message::binary(vec![0xc1u8]))
        .await
        .unwrap();
    let err = packed.recv().await;
    assert_eq!(
        (err["type"].as_str(), err["code"].as_str()),
        (Some("error"), Some("invalid-json"))
    );
    packed.send(json!({"type":"ping","timestamp":5})).await;
    assert_eq!(packed.recv().await["type"], "pong");
    json_peer.expect_silence(Duration::from_millis(100)).await;
    // A binary frame on the JSON subprotocol still closes with 1003.
    json_peer
        .ws
        .send(Message::binary(vec![1u8, 2]))
        .await
        .unwrap();
    assert_eq!(json_peer.expect_close().await, 1003);
}

#[tokio::test]
async fn the_host_puts_users_into_rooms_and_takes_them_out() {
    let server = start(builder()).await;
    let url = server.url().to_owned();
    let mut a = Ws::joined(&url, "lobby", "a").await;
    let mut b = Ws::joined(&url, "lobby", "b").await;
    a.recv_type("user-joined").await;
    server.join("a", "stage").await.unwrap();
    let info = a.recv().await;
    assert_eq!(
        (info["type"].as_str(), info["roomId"].as_str()),
        (Some("room-info"), Some("stage"))
    );
    server.join("b", "stage").await.unwrap();
    assert_eq!(b.recv_type("room-info").await["users"], json!(["a"]));
    assert_eq!(a.recv_type("user-joined").await["roomId"], "stage");
    server.leave("a", "stage").await.unwrap();
    let left = b.recv_type("user-left").await;
    assert_eq!(
        (left["roomId"].as_str(), left["reason"].as_str()),
        (Some("stage"), Some("leave"))
    );
    assert_eq!(server.peers("stage").unwrap().len(), 1);
    let e = server.join("nobody", "stage").await.unwrap_err();
    assert_eq!(e.code(), "peer-not-found");
    let e = server.leave("a", "stage").await.unwrap_err();
    assert_eq!(e.code(), "peer-not-found");
}

#[tokio::test]
async fn the_rust_client_speaks_messagepack_and_app_types() {
    let server = start(builder().app_types(["mute"])).await;
    let url = server.url().to_owned();
    let packed = switchboard::Client::builder(&url)
        .user_id("mp")
        .encoding(switchboard::Encoding::MessagePack)
        .connect()
        .await
        .unwrap();
    let mut packed_events = packed.events();
    packed.join("r").await.unwrap();
    let mut json_peer = Ws::joined(&url, "r", "js").await;
    json_peer
        .send(json!({"type":"mute","to":"mp","track":"audio"}))
        .await;
    let mute = next_event(&mut packed_events, "mute").await;
    assert_eq!(mute.from(), Some("js"));
    assert_eq!(mute.to_json()["track"], "audio");
    packed
        .send_json(json!({"type":"mute","to":"js","track":"video"}))
        .await
        .unwrap();
    let got = json_peer.recv_type("mute").await;
    assert_eq!(
        (got["from"].as_str(), got["track"].as_str()),
        (Some("mp"), Some("video"))
    );
    packed
        .send_offer("js", json!({"type":"offer","sdp":"v=0"}))
        .await
        .unwrap();
    assert_eq!(json_peer.recv_type("offer").await["from"], "mp");
    packed.close().await;
}

#[tokio::test]
async fn host_join_resume_and_ambiguity_rules() {
    let server = start(builder().auth_tokens([("tok-a", "alice"), ("tok-b", "bob")])).await;
    let url = server.url().to_owned();
    let offered = "webrtc-signaling, bearer.tok-a";
    let (first, _) = with_protocols(&url, offered).await.unwrap();
    let (session, token) = first.session();
    first.kill();
    // A new connection, authenticated by its token, is put into a room by the host…
    let (mut fresh, _) = with_protocols(&url, offered).await.unwrap();
    server.join("alice", "lobby").await.unwrap();
    assert_eq!(fresh.recv().await["type"], "room-info");
    // …so it can no longer be swapped for the old session: no ghost is left.
    fresh
        .send(json!({"type":"resume","sessionId":session,"resumeToken":token,"lastSeq":0}))
        .await;
    assert_eq!(fresh.recv_type("error").await["code"], "invalid-message");
    assert_eq!(server.peers("lobby").unwrap().len(), 1);

    // Without auth a user id is unique per room only: an ambiguous host join is refused.
    let open = start(builder()).await;
    let u = open.url().to_owned();
    let _a1 = Ws::joined(&u, "r1", "alice").await;
    let _a2 = Ws::joined(&u, "r2", "alice").await;
    let e = open.join("alice", "r3").await.unwrap_err();
    assert_eq!(e.code(), "user-id-taken");
}

#[tokio::test]
async fn a_client_treats_a_refused_url_join_as_final() {
    let server = start(builder().path("/ws,/").max_room_size(1)).await;
    let _a = at(&server, "/?room=solo&userId=a").await;
    let client = switchboard::Client::builder(format!("{}/?room=solo&userId=b", base(&server)))
        .reconnect_backoff(Duration::from_millis(10), Duration::from_millis(20))
        .connect()
        .await
        .unwrap();
    let mut events = client.events();
    let closed = next_event(&mut events, "closed").await;
    assert_eq!(closed.to_json()["code"], 4400, "{closed:?}");
    assert!(client.is_closed(), "no reconnect loop");
}
