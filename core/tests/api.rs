//! The operator HTTP API against the real binary: every endpoint, standalone
//! and on a two-node cluster over a real Redis; every bad input gets its
//! status and code and changes nothing; every response matches the OpenAPI
//! document the server serves (`api_document.rs`), and every `curl` line of
//! docs/API.md runs (there too).

mod common;

use std::time::Duration;

use common::binary::{Binary, KEY};
use common::redis::Redis;
use common::Ws;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The error code of an `{"error":{"code","message"}}` body.
fn code(v: &Value) -> &str {
    v["error"]["code"].as_str().unwrap_or("<no error code>")
}

#[tokio::test]
async fn every_endpoint_and_every_bad_input_standalone() {
    let sb = Binary::start(&["--api-key", KEY]);
    let mut alice = Ws::joined(&sb.ws_url(), "ops", "alice").await;
    let mut bob = Ws::joined(&sb.ws_url(), "ops", "bob").await;
    alice.recv_type("user-joined").await;

    let info = sb.get("/api/v1/info").await;
    assert_eq!(
        (info["connections"].as_u64(), info["rooms"].as_u64()),
        (Some(2), Some(1))
    );
    assert_eq!(info["version"], env!("CARGO_PKG_VERSION"));
    assert!(info["node"].is_null());
    let rooms = sb.get("/api/v1/rooms").await;
    assert_eq!(
        rooms,
        json!({"rooms": [{"roomId": "ops", "members": 2}], "next": null})
    );
    let room = sb.get("/api/v1/rooms/ops").await;
    let users: Vec<&str> = room["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["userId"].as_str().unwrap())
        .collect();
    assert_eq!(users, ["alice", "bob"]);
    assert_eq!(room["members"][0]["connected"], true);

    // Bad input: a clear status and code each, and nothing reaches anyone.
    for (method, path, key, body, status, want) in [
        ("GET", "/api/v1/info", None, None, 401, "unauthorized"),
        (
            "GET",
            "/api/v1/info",
            Some("wrong-key-0123456789"),
            None,
            401,
            "unauthorized",
        ),
        (
            "GET",
            "/api/v1/info",
            Some("eyJhbGciOiJIUzI1NiJ9.e30.sig"),
            None,
            401,
            "unauthorized",
        ),
        (
            "GET",
            "/api/v1/rooms/nowhere",
            Some(KEY),
            None,
            404,
            "not-in-room",
        ),
        (
            "GET",
            "/api/v1/rooms?limit=0",
            Some(KEY),
            None,
            400,
            "invalid-message",
        ),
        (
            "POST",
            "/api/v1/rooms/ops/broadcast",
            Some(KEY),
            Some("{not json"),
            400,
            "invalid-json",
        ),
        (
            "POST",
            "/api/v1/rooms/ops/broadcast",
            Some(KEY),
            Some("[1,2]"),
            400,
            "invalid-message",
        ),
        (
            "POST",
            "/api/v1/rooms/ops/users/bob/send",
            Some(KEY),
            Some(r#"{"data":1}"#),
            400,
            "invalid-message",
        ),
        (
            "POST",
            "/api/v1/rooms/ops/users/nobody/send",
            Some(KEY),
            Some(r#"{"type":"x"}"#),
            404,
            "peer-not-found",
        ),
        (
            "POST",
            "/api/v1/rooms/nowhere/broadcast",
            Some(KEY),
            Some(r#"{"type":"x"}"#),
            404,
            "not-in-room",
        ),
        (
            "POST",
            "/api/v1/rooms/ops/users/nobody/kick",
            Some(KEY),
            None,
            404,
            "peer-not-found",
        ),
        (
            "GET",
            "/api/v1/rooms/ops/broadcast",
            Some(KEY),
            None,
            405,
            "method-not-allowed",
        ),
        (
            "POST",
            "/api/v1/info",
            Some(KEY),
            None,
            405,
            "method-not-allowed",
        ),
        ("GET", "/api/v1/nothing", Some(KEY), None, 404, "not-found"),
    ] {
        let (got, v) = sb.call(method, path, key, body).await;
        assert_eq!((got, code(&v)), (status, want), "{method} {path}: {v}");
    }
    // Without the key, a request's announced body is never waited for.
    let mut raw = TcpStream::connect(&sb.addr).await.unwrap();
    raw.write_all(
        b"POST /api/v1/rooms/ops/broadcast HTTP/1.1\r\nHost: x\r\nContent-Length: 60000\r\n\r\n",
    )
    .await
    .unwrap();
    let mut head = [0u8; 12];
    tokio::time::timeout(Duration::from_secs(2), raw.read_exact(&mut head))
        .await
        .expect("answered at once")
        .unwrap();
    assert_eq!(&head[9..12], b"401");
    let huge = json!({"type": "x", "data": "y".repeat(70_000)}).to_string();
    let (got, v) = sb
        .call(
            "POST",
            "/api/v1/rooms/ops/broadcast",
            Some(KEY),
            Some(&huge),
        )
        .await;
    assert_eq!((got, code(&v)), (413, "message-too-big"));
    alice.expect_silence(Duration::from_millis(200)).await;
    bob.expect_silence(Duration::from_millis(10)).await;

    // Send, broadcast, kick.
    let (got, v) = sb
        .post(
            "/api/v1/rooms/ops/users/bob/send",
            json!({"type": "notice", "text": "hi bob"}),
        )
        .await;
    assert_eq!((got, &v), (200, &json!({"delivered": 1})));
    assert_eq!(bob.recv().await["text"], "hi bob");
    let (got, v) = sb
        .post(
            "/api/v1/rooms/ops/broadcast",
            json!({"type": "notice", "text": "all"}),
        )
        .await;
    assert_eq!((got, &v), (200, &json!({"delivered": 2})));
    assert_eq!(alice.recv().await["text"], "all");
    assert_eq!(bob.recv().await["text"], "all");
    let (got, _) = sb
        .call(
            "POST",
            "/api/v1/rooms/ops/users/alice/kick",
            Some(KEY),
            None,
        )
        .await;
    assert_eq!(got, 200);
    assert_eq!(alice.expect_close().await, 4403);
    common::assert_user_left(&bob.recv().await, "alice", "kicked");
    let room = sb.get("/api/v1/rooms/ops").await;
    assert_eq!(room["members"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn rooms_are_paged_and_the_api_is_off_without_a_key() {
    let sb = Binary::start(&["--api-key", KEY]);
    let mut held = Vec::new();
    for r in ["a", "b", "c"] {
        held.push(Ws::joined(&sb.ws_url(), r, "u").await);
    }
    let page = sb.get("/api/v1/rooms?limit=2").await;
    assert_eq!(page["rooms"].as_array().unwrap().len(), 2);
    assert_eq!(page["next"], "b");
    let rest = sb.get("/api/v1/rooms?limit=2&after=b").await;
    assert_eq!(
        rest,
        json!({"rooms": [{"roomId": "c", "members": 1}], "next": null})
    );
    let snapshot = sb.get("/api/v1/snapshot").await;
    assert_eq!(snapshot["roomsTotal"], 3);
    assert_eq!(snapshot["rooms"][0]["members"][0]["userId"], "u");

    let off = Binary::start(&[]);
    let (status, v) = off.call("GET", "/api/v1/info", Some(KEY), None).await;
    assert_eq!((status, code(&v)), (404, "not-found"));
    let (status, _) = off.call("GET", "/admin", None, None).await;
    assert_eq!(status, 404, "no admin page without the API");
    let (status, page) = sb.call("GET", "/admin", None, None).await;
    assert_eq!(status, 200);
    assert!(page.as_str().unwrap().contains("/admin.js"));
    // A key too short to be one is a config error.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(["--listen", "127.0.0.1:0", "--api-key", "short"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[tokio::test]
async fn the_whole_cluster_from_any_node() {
    let redis = Redis::start();
    let (a, b) = Binary::cluster_pair(&redis).await;
    let (mut alice, mut bob) = common::binary::span(&a, &b, "span").await;

    // Both nodes list both members, each on its own node.
    for node in [&a, &b] {
        let room = node.get("/api/v1/rooms/span").await;
        let members = room["members"].as_array().unwrap();
        assert_eq!(members.len(), 2, "{room}");
        assert_ne!(members[0]["node"], members[1]["node"], "{room}");
        assert!(members.iter().all(|m| m["node"].is_string()));
    }
    // Node lists: both nodes, seen from each (after a heartbeat or two).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (ia, ib) = (a.get("/api/v1/info").await, b.get("/api/v1/info").await);
        if ia["nodes"].as_array().map(Vec::len) == Some(2)
            && ib["nodes"].as_array().map(Vec::len) == Some(2)
        {
            assert_ne!(ia["node"], ib["node"]);
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "nodes never listed: {ia} {ib}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Send to a peer on the other node; broadcast from the other side.
    let (status, _) = a
        .post(
            "/api/v1/rooms/span/users/bob/send",
            json!({"type": "notice", "n": 1}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(bob.recv_type("notice").await["n"], 1);
    let (status, v) = b
        .post(
            "/api/v1/rooms/span/broadcast",
            json!({"type": "notice", "n": 2}),
        )
        .await;
    assert_eq!((status, &v), (200, &json!({"delivered": 2})));
    assert_eq!(alice.recv_type("notice").await["n"], 2);
    assert_eq!(bob.recv_type("notice").await["n"], 2);
    // Kick a peer of node B from node A.
    let (status, _) = a
        .call("POST", "/api/v1/rooms/span/users/bob/kick", Some(KEY), None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(bob.expect_close().await, 4403);
    common::assert_user_left(&alice.recv_type("user-left").await, "bob", "kicked");
    drop(redis);
}
