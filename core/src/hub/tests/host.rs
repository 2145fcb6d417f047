//! Hub unit tests of the host's side: kick, send, events, drain, auth without
//! a transport, and remote members as a cluster announces them.

use super::*;

#[tokio::test]
async fn kick_closes_with_4403_and_tells_the_room() {
    let hub = hub_with(config());
    let mut a = Peer::joined(&hub, "r", "a");
    let b = Peer::joined(&hub, "r", "b");
    a.recv();
    hub.kick("r", "b").unwrap();
    assert_eq!(b.close_request().unwrap().code, close::KICKED);
    let left = a.recv();
    assert_eq!(left[0]["reason"], "kicked");
    assert_eq!(hub.kick("r", "b").unwrap_err().code(), "peer-not-found");
}

#[tokio::test]
async fn host_send_broadcast_rooms_and_drain() {
    let hub = hub_with(config());
    let mut a = Peer::joined(&hub, "r", "a");
    let mut b = Peer::joined(&hub, "r", "b");
    a.recv();
    hub.send("r", "a", &json!({"type":"notice","text":"hi","seq":1000}))
        .unwrap();
    let got = a.recv();
    assert_eq!(got[0]["type"], "notice");
    assert_ne!(got[0]["seq"], 1000, "the host can not forge seq");
    assert_eq!(hub.broadcast("r", &json!({"type":"notice"})).unwrap(), 2);
    assert_eq!(b.recv_types(), ["notice"]);
    assert_eq!(
        hub.send("r", "a", &json!({"no":"type"}))
            .unwrap_err()
            .code(),
        "invalid-message"
    );
    assert_eq!(
        hub.send("nope", "a", &json!({"type":"x"}))
            .unwrap_err()
            .code(),
        "not-in-room"
    );
    let rooms = hub.rooms();
    assert_eq!(rooms.len(), 1);
    assert_eq!(
        rooms[0]
            .peers
            .iter()
            .map(|p| p.user_id.as_str())
            .collect::<Vec<_>>(),
        ["a", "b"]
    );
    hub.drain();
    assert!(hub.is_draining());
    let d = a.recv();
    assert_eq!(d.last().unwrap()["type"], "draining");
    assert_eq!(d.last().unwrap()["retryAfterMs"], 5000);
    assert_eq!(a.close_request().unwrap().code, close::GOING_AWAY);
}

#[tokio::test]
async fn events_describe_what_happened() {
    let hub = hub_with(config());
    let mut events = hub.subscribe();
    let mut a = Peer::joined(&hub, "r", "a");
    let _b = Peer::joined(&hub, "r", "b");
    a.send(json!({"type":"offer","to":"b","sdp":"x"}));
    let mut kinds = Vec::new();
    while let Ok(e) = events.try_recv() {
        kinds.push(e.kind().to_owned());
        if let Event::Offer(f) = &e {
            assert_eq!(f["from"], "a");
            assert_eq!(f["to"], "b");
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
}

#[tokio::test]
async fn replies_before_resume_carry_no_seq_so_the_replay_is_not_shadowed() {
    let hub = hub_with(config());
    let mut a = Peer::joined(&hub, "r", "a");
    let b = Peer::joined(&hub, "r", "b");
    a.recv();
    let sess = hub.inner.sessions.get(&b.session_id()).unwrap();
    let mut b = b;
    b.finish(None);
    a.send(json!({"type":"message","to":"b","data":"missed"}));
    let mut b2 = Peer::new(&hub);
    b2.send(json!({"type":"ping","timestamp":1,"id":"p"}));
    b2.send(json!({"type":"resume","sessionId":&*sess.id,"resumeToken":sess.resume_token.to_string(),"lastSeq":0}));
    let got = b2.recv();
    let kinds: Vec<&str> = got.iter().map(|m| m["type"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["pong", "ack", "resumed", "room-info", "message"]);
    assert!(
        got[0].get("seq").is_none() && got[1].get("seq").is_none(),
        "connection-level replies"
    );
    assert_eq!(got[3]["seq"], 1);
    assert_eq!(got[4]["seq"], 2);
}

#[tokio::test]
async fn rate_limited_error_names_the_message_and_retransmits_cost_no_tokens() {
    let mut cfg = config();
    cfg.rate_limit_rps = 1;
    cfg.rate_limit_burst = 2;
    let hub = hub_with(cfg);
    let mut a = Peer::joined(&hub, "r", "a");
    let mut b = Peer::joined(&hub, "r", "b");
    a.recv();
    b.send(json!({"type":"message","to":"a","data":1,"id":1}));
    b.send(json!({"type":"message","to":"a","data":2,"id":2}));
    let got = b.recv();
    let e = got
        .iter()
        .find(|m| m["type"] == "error")
        .expect("rate limited");
    assert_eq!(
        (e["code"].as_str(), e["ref"].as_u64()),
        (Some("rate-limited"), Some(2))
    );
    // The retransmit of an accepted id is acknowledged without a token.
    b.send(json!({"type":"message","to":"a","data":1,"id":1}));
    assert_eq!(b.recv_types(), ["ack"]);
    assert_eq!(a.recv().len(), 1, "delivered once");
}

#[tokio::test]
async fn nothing_is_acted_on_after_a_kick() {
    let hub = hub_with(config());
    let mut b = Peer::joined(&hub, "r", "b");
    hub.kick("r", "b").unwrap();
    b.send(json!({"type":"join","roomId":"elsewhere"}));
    assert!(b.recv().is_empty());
    assert!(
        hub.rooms().is_empty(),
        "no room was created for a kicked session"
    );
    assert_eq!(
        hub.metrics()
            .rooms
            .load(std::sync::atomic::Ordering::Relaxed),
        0
    );
}

#[tokio::test]
async fn a_connection_admitted_during_a_drain_is_told_to_leave() {
    let hub = hub_with(config());
    hub.drain();
    hub.drain(); // idempotent
    let late = hub.connect(ConnectInfo::default());
    let mut batch = Vec::new();
    late.outbox().try_next(&mut batch);
    let kinds: Vec<Value> = batch
        .iter()
        .map(|f| serde_json::from_str::<Value>(f.as_str()).unwrap()["type"].clone())
        .collect();
    assert_eq!(kinds, ["connected", "draining"]);
    assert_eq!(
        late.outbox().close_request().unwrap().code,
        close::GOING_AWAY
    );
}

#[tokio::test]
async fn a_resumed_session_survives_its_old_connection_closing_cleanly() {
    let hub = hub_with(config());
    let mut a = Peer::joined(&hub, "r", "a");
    let mut b = Peer::joined(&hub, "r", "b");
    a.recv();
    let sess = hub.inner.sessions.get(&b.session_id()).unwrap();
    let mut b2 = Peer::new(&hub);
    b2.send(json!({"type":"resume","sessionId":&*sess.id,"resumeToken":sess.resume_token.to_string(),"lastSeq":1}));
    b.finish(Some(close::NORMAL));
    assert!(a.recv().is_empty(), "nobody leaves");
    assert!(!sess.lock().ended);
}

// ---- Authentication without a transport (the bindings' path) ----

fn with_tokens() -> Hub {
    hub_with(ServerConfig {
        auth: crate::auth::AuthConfig::Tokens([("t-alice".to_owned(), "alice".to_owned())].into()),
        auth_timeout: Duration::from_secs(5),
        ..config()
    })
}

/// A connection and what its outbox held right after `connect`, `connected` first.
fn connect_with(hub: &Hub, info: ConnectInfo) -> (Peer, Vec<Value>) {
    let conn = hub.connect(info);
    let outbox = conn.outbox().clone();
    let mut p = Peer {
        conn: Some(conn),
        outbox,
    };
    let mut first = p.recv();
    assert_eq!(first.remove(0)["type"], "connected");
    (p, first)
}

#[tokio::test(start_paused = true)]
async fn unverified_handshake_token_is_checked_by_the_hub() {
    let hub = with_tokens();
    let (mut good, _) = connect_with(
        &hub,
        ConnectInfo {
            token: Some("t-alice".into()),
            ..ConnectInfo::default()
        },
    );
    good.send(json!({"type":"join","roomId":"r"}));
    assert_eq!(good.recv()[0]["you"]["userId"], "alice");
    let (bad, first) = connect_with(
        &hub,
        ConnectInfo {
            token: Some("nope".into()),
            ..ConnectInfo::default()
        },
    );
    assert_eq!(first[0]["code"], "unauthorized");
    assert_eq!(bad.close_request().unwrap().code, close::UNAUTHORIZED);
    assert_eq!(hub.metrics().auth_failures("invalid"), 1);
}

#[tokio::test(start_paused = true)]
async fn hub_owns_the_auth_timeout_and_the_expiry() {
    let hub = with_tokens();
    // No credential: the hub closes with 4401 after auth_timeout, by itself.
    let (waiting, _) = connect_with(&hub, ConnectInfo::default());
    tokio::time::sleep(Duration::from_millis(4900)).await;
    assert!(waiting.close_request().is_none());
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(waiting.close_request().unwrap().code, close::UNAUTHORIZED);
    // A verified identity that expires: closed with 4401 at expiry, session ended.
    let identity = crate::auth::Identity::new("bob")
        .expires_at(std::time::SystemTime::now() + Duration::from_secs(60));
    let (mut bob, _) = connect_with(
        &hub,
        ConnectInfo {
            identity: Some(identity),
            ..ConnectInfo::default()
        },
    );
    bob.send(json!({"type":"join","roomId":"r"}));
    assert_eq!(bob.recv()[0]["type"], "room-info");
    let (mut carol, _) = connect_with(
        &hub,
        ConnectInfo {
            identity: Some(crate::auth::Identity::new("carol")),
            ..ConnectInfo::default()
        },
    );
    carol.send(json!({"type":"join","roomId":"r"}));
    carol.recv();
    tokio::time::sleep(Duration::from_secs(59)).await;
    assert!(bob.close_request().is_none());
    tokio::time::sleep(Duration::from_secs(2)).await;
    let req = bob.close_request().expect("closed at expiry");
    assert_eq!((req.code, req.fate), (close::UNAUTHORIZED, Fate::End));
    bob.conn.take().unwrap().finish(None);
    let left = carol.recv();
    assert_eq!(left.last().unwrap()["type"], "user-left");
    assert_eq!(left.last().unwrap()["reason"], "closed");
    assert!(carol.close_request().is_none(), "no expiry: never closed");
}

/// A peer on another node (what a cluster backplane announces).
fn remote(user: &str, session: &str, order: u64) -> RemoteMember {
    RemoteMember {
        user_id: user.into(),
        session_id: session.into(),
        node: "n2".into(),
        display_name: Some("Remote".into()),
        metadata: Some(r#"{"k":1}"#.into()),
        order,
        away: false,
    }
}

#[tokio::test]
async fn remote_members_appear_in_room_info_and_come_and_go_with_events() {
    let hub = hub_with(config());
    let mut a = Peer::joined(&hub, "r", "alice");
    // Announced twice (the second time as a hand-over): listed once, told once.
    hub.remote_joined("r", remote("bob", "s-bob", 5));
    hub.remote_joined("r", remote("bob", "s-bob", 5));
    let got = a.recv();
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(
        (got[0]["type"].as_str(), got[0]["userId"].as_str()),
        (Some("user-joined"), Some("bob"))
    );
    assert_eq!(got[0]["displayName"], "Remote");
    assert_eq!(got[0]["metadata"], json!({"k":1}));
    assert_eq!(hub.peers("r").unwrap().len(), 2);

    // A newcomer sees both, in join order; capacity counts the remote one.
    let mut c = Peer::new(&hub);
    c.send(json!({"type":"join","roomId":"r","userId":"carol"}));
    let info = c.recv().pop().unwrap();
    assert_eq!(info["users"], json!(["alice", "bob"]));
    assert_eq!(info["peers"][1]["userId"], "bob");
    // A user id held on another node is taken.
    let mut d = Peer::new(&hub);
    d.send(json!({"type":"join","roomId":"r","userId":"bob"}));
    assert_eq!(d.recv().pop().unwrap()["code"], "user-id-taken");

    hub.remote_left("r", "s-bob", LeaveReason::Timeout);
    let left = a.recv();
    assert_eq!(left.last().unwrap()["type"], "user-left");
    assert_eq!(left.last().unwrap()["reason"], "timeout");
    assert_eq!(hub.peers("r").unwrap().len(), 2, "alice and carol");

    // A room known only through remote members is listed, and goes with them.
    hub.remote_joined("far", remote("x", "s-x", 1));
    assert!(hub.rooms().iter().any(|r| r.room_id == "far"));
    hub.remote_left("far", "s-x", LeaveReason::Leave);
    assert!(hub.peers("far").is_none());
}

#[tokio::test]
async fn room_capacity_counts_remote_members() {
    let hub = hub_with(ServerConfig {
        max_room_size: 2,
        ..config()
    });
    let _a = Peer::joined(&hub, "r", "alice");
    hub.remote_joined("r", remote("bob", "s-bob", 5));
    let mut c = Peer::new(&hub);
    c.send(json!({"type":"join","roomId":"r","userId":"carol"}));
    assert_eq!(c.recv().pop().unwrap()["code"], "room-full");
}

#[tokio::test]
async fn relay_events_can_be_limited_to_some_kinds() {
    let hub = hub_with(config());
    let mut events = hub.subscribe();
    let mut a = Peer::joined(&hub, "r", "alice");
    let mut b = Peer::joined(&hub, "r", "bob");
    a.recv();
    let relayed_kinds = |events: &mut broadcast::Receiver<Event>| {
        let mut kinds = Vec::new();
        while let Ok(e) = events.try_recv() {
            if matches!(e.kind(), "offer" | "candidate" | "chat") {
                kinds.push(e.kind().to_owned());
            }
        }
        kinds
    };
    hub.set_relay_events(Some(&["offer"]));
    b.send(json!({"type":"candidate","to":"alice","candidate":null}));
    b.send(json!({"type":"offer","to":"alice","sdp":{}}));
    b.send(json!({"type":"chat","content":"hi"}));
    assert_eq!(relayed_kinds(&mut events), vec!["offer"]);
    // Muting an event never mutes the relay itself.
    assert_eq!(a.recv_types(), vec!["candidate", "offer", "chat"]);
    hub.set_relay_events(None);
    b.send(json!({"type":"candidate","to":"alice","candidate":null}));
    b.send(json!({"type":"chat","content":"hi"}));
    assert_eq!(relayed_kinds(&mut events), vec!["candidate", "chat"]);
}
