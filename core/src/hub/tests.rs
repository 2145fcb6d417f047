//! Hub unit tests: every protocol rule, driven without sockets.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use super::*;
use crate::protocol::close;

fn config() -> ServerConfig {
    ServerConfig {
        rate_limit_rps: 0,
        ..ServerConfig::default()
    }
}

fn hub_with(cfg: ServerConfig) -> Hub {
    Hub::new(Arc::new(cfg))
}

struct Peer {
    conn: Option<Connection>,
    outbox: Arc<Outbox>,
}

impl Peer {
    fn new(hub: &Hub) -> Peer {
        let conn = hub.connect(ConnectInfo::default());
        let outbox = conn.outbox().clone();
        let mut p = Peer {
            conn: Some(conn),
            outbox,
        };
        let first = p.recv();
        assert_eq!(first[0]["type"], "connected");
        assert!(first[0].get("seq").is_none(), "connected carries no seq");
        p
    }

    fn joined(hub: &Hub, room: &str, user: &str) -> Peer {
        let mut p = Peer::new(hub);
        p.send(json!({"type":"join","roomId":room,"userId":user}));
        let got = p.recv();
        assert_eq!(got.last().unwrap()["type"], "room-info", "{got:?}");
        p
    }

    fn send(&mut self, v: Value) {
        self.raw(&v.to_string());
    }

    fn raw(&mut self, text: &str) {
        self.conn
            .as_mut()
            .expect("connection open")
            .handle_text(text);
    }

    fn recv(&mut self) -> Vec<Value> {
        let mut batch = Vec::new();
        while let Some(Next::Frames) = self.outbox.try_next(&mut batch) {}
        batch
            .iter()
            .map(|f| serde_json::from_str(f.as_str()).unwrap())
            .collect()
    }

    fn recv_types(&mut self) -> Vec<String> {
        self.recv()
            .iter()
            .map(|v| v["type"].as_str().unwrap().to_owned())
            .collect()
    }

    fn close_request(&self) -> Option<CloseRequest> {
        self.outbox.close_request()
    }

    fn session_id(&self) -> String {
        self.conn.as_ref().unwrap().session_id().to_string()
    }

    fn finish(&mut self, client_close: Option<u16>) {
        self.conn.take().unwrap().finish(client_close);
    }

    /// Sends `v`; the code of the `error` it got, if any.
    fn error_code_or_none(&mut self, v: Value) -> Option<String> {
        self.send(v);
        let got = self.recv();
        let e = got.iter().find(|m| m["type"] == "error")?;
        Some(e["code"].as_str().unwrap().to_owned())
    }

    fn error_code(&mut self, v: Value) -> String {
        self.send(v);
        let got = self.recv();
        let e = got
            .iter()
            .find(|m| m["type"] == "error")
            .unwrap_or_else(|| panic!("no error in {got:?}"));
        e["code"].as_str().unwrap().to_owned()
    }
}

#[tokio::test]
async fn join_tells_room_info_and_user_joined_with_polite_roles() {
    let hub = hub_with(config());
    let mut a = Peer::joined(&hub, "r", "alice");
    let mut b = Peer::new(&hub);
    b.send(
        json!({"type":"join","roomId":"r","userId":"bob","displayName":"Bob","metadata":{"x":1}}),
    );
    let info = b.recv();
    assert_eq!(info[0]["type"], "room-info");
    assert_eq!(info[0]["users"], json!(["alice"]));
    assert_eq!(info[0]["peers"][0]["userId"], "alice");
    assert_eq!(
        info[0]["peers"][0]["polite"], true,
        "the later joiner is polite"
    );
    assert_eq!(info[0]["you"]["userId"], "bob");
    let joined = a.recv();
    assert_eq!(joined[0]["type"], "user-joined");
    assert_eq!(joined[0]["userId"], "bob");
    assert_eq!(joined[0]["displayName"], "Bob");
    assert_eq!(joined[0]["metadata"], json!({"x":1}));
    assert_eq!(joined[0]["polite"], false);
    assert!(joined[0]["seq"].as_u64().unwrap() >= 2);
    // Joining again answers room-info and tells nobody.
    b.send(json!({"type":"join","roomId":"r"}));
    assert_eq!(b.recv_types(), ["room-info"]);
    assert!(a.recv().is_empty());
    assert_eq!(hub.peers("r").unwrap().len(), 2);
}

#[tokio::test]
async fn server_assigns_a_uuid_without_user_id() {
    let hub = hub_with(config());
    let mut p = Peer::new(&hub);
    p.send(json!({"type":"join","roomId":"r"}));
    let info = p.recv();
    let id = info[0]["you"]["userId"].as_str().unwrap();
    assert_eq!(id.len(), 36);
    assert_eq!(&id[14..15], "4");
}

#[tokio::test]
async fn relay_stamps_from_strips_spoofing_and_acks() {
    let hub = hub_with(config());
    let mut a = Peer::joined(&hub, "r", "alice");
    let mut b = Peer::joined(&hub, "r", "bob");
    a.recv();
    b.raw(r#"{"type":"offer","to":"alice","from":"mallory","sdp":{"type":"offer","sdp":"v=0"},"from":"eve","extra":[1],"id":"m1","seq":99}"#);
    let got = a.recv();
    assert_eq!(got.len(), 1);
    let m = &got[0];
    assert_eq!(m["type"], "offer");
    assert_eq!(m["from"], "bob");
    assert_eq!(m["sdp"]["sdp"], "v=0");
    assert_eq!(m["extra"], json!([1]), "unknown fields are preserved");
    assert_eq!(m["roomId"], "r");
    assert!(m.get("id").is_none());
    assert_ne!(m["seq"], 99);
    let raw = a.outbox.clone();
    drop(raw);
    let acks = b.recv();
    assert_eq!(
        acks,
        vec![json!({"seq": acks[0]["seq"], "type":"ack","id":"m1"})]
    );
    // The frame text itself has exactly one `from`.
    b.raw(r#"{"type":"candidate","to":"alice","candidate":null,"from":"x"}"#);
    let mut batch = Vec::new();
    a.outbox.try_next(&mut batch);
    assert_eq!(batch[0].as_str().matches("\"from\"").count(), 1);
}

#[tokio::test]
async fn duplicate_ids_are_acknowledged_but_delivered_once() {
    let hub = hub_with(config());
    let mut a = Peer::joined(&hub, "r", "alice");
    let mut b = Peer::joined(&hub, "r", "bob");
    a.recv();
    for _ in 0..3 {
        b.send(json!({"type":"message","to":"alice","data":"hi","id":7}));
    }
    assert_eq!(a.recv().len(), 1);
    assert_eq!(b.recv_types(), ["ack", "ack", "ack"]);
}

#[tokio::test]
async fn message_to_room_chat_and_ping() {
    let hub = hub_with(config());
    let mut a = Peer::joined(&hub, "r", "a");
    let mut b = Peer::joined(&hub, "r", "b");
    let mut c = Peer::joined(&hub, "r", "c");
    a.recv();
    b.recv();
    a.send(json!({"type":"message","data":{"k":1}}));
    assert!(a.recv().is_empty(), "a room message skips the sender");
    assert_eq!(b.recv()[0]["data"], json!({"k":1}));
    assert_eq!(c.recv()[0]["from"], "a");
    a.send(json!({"type":"chat","content":"hello","timestamp":1}));
    for p in [&mut a, &mut b, &mut c] {
        let m = p.recv();
        assert_eq!(m[0]["type"], "chat");
        assert_eq!(m[0]["content"], "hello");
        assert_eq!(m[0]["from"], "a");
        assert!(
            m[0]["timestamp"].as_u64().unwrap() > 1,
            "the server stamps the time"
        );
    }
    a.send(json!({"type":"ping","timestamp":12345}));
    let pong = a.recv();
    assert_eq!(pong[0]["type"], "pong");
    assert_eq!(pong[0]["timestamp"], 12345);
}

#[tokio::test]
async fn seq_increases_by_one_per_server_message() {
    let hub = hub_with(config());
    let mut a = Peer::joined(&hub, "r", "a");
    for _ in 0..5 {
        a.send(json!({"type":"ping"}));
    }
    let seqs: Vec<u64> = a
        .recv()
        .iter()
        .map(|m| m["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, [2, 3, 4, 5, 6]);
}

#[tokio::test]
async fn every_client_triggerable_error_code() {
    let mut cfg = config();
    cfg.max_room_size = 2;
    let hub = hub_with(cfg);
    let mut a = Peer::joined(&hub, "r", "alice");
    let _b = Peer::joined(&hub, "r", "bob");
    let mut c = Peer::new(&hub);
    c.raw("{not json");
    assert_eq!(c.recv()[0]["code"], "invalid-json");
    assert_eq!(c.error_code(json!([1])), "invalid-message");
    assert_eq!(c.error_code(json!({"type":"fly","id":"x"})), "unknown-type");
    assert_eq!(
        c.error_code(json!({"type":"offer","to":"alice","sdp":"x"})),
        "not-in-room"
    );
    assert_eq!(
        c.error_code(json!({"type":"join","roomId":"r","userId":"carol"})),
        "room-full"
    );
    // Joining another room as alice works (uniqueness is per room)…
    c.send(json!({"type":"join","roomId":"r2","userId":"alice"}));
    assert_eq!(c.recv_types(), ["room-info"]);
    // …but alice is connected in "r", so c can not take that identity there.
    let mut d = Peer::new(&hub);
    assert_eq!(
        d.error_code(json!({"type":"join","roomId":"r","userId":"alice"})),
        "user-id-taken"
    );
    let mut e = Peer::joined(&hub, "r3", "erin");
    assert_eq!(
        e.error_code(json!({"type":"join","roomId":"r4","userId":"someone-else"})),
        "forbidden"
    );
    assert_eq!(
        a.error_code(json!({"type":"offer","to":"nobody","sdp":"x"})),
        "peer-not-found"
    );
    assert_eq!(
        a.error_code(json!({"type":"leave","roomId":"elsewhere"})),
        "not-in-room"
    );
    assert_eq!(
        c.error_code(json!({"type":"resume","sessionId":"nope","resumeToken":"t","lastSeq":0})),
        "invalid-message",
        "resume after a join is refused"
    );
    let mut f = Peer::new(&hub);
    assert_eq!(
        f.error_code(json!({"type":"resume","sessionId":"nope","resumeToken":"t","lastSeq":0})),
        "resume-failed"
    );
    let mut g = Peer::new(&hub);
    let mut h = Peer::joined(&hub, "r5", "alice");
    let _ = h.recv();
    assert_eq!(
        g.error_code(json!({"type":"join","roomId":"r5","userId":"alice"})),
        "user-id-taken"
    );
    // A message that only fits before `from` is stamped is refused, not relayed.
    let mut small = config();
    small.max_message_bytes = 256;
    small.outbound_queue_bytes = 1 << 20;
    let hub2 = hub_with(small);
    let mut x = Peer::joined(&hub2, "r", "a-rather-long-user-name-to-grow-the-frame");
    let mut y = Peer::joined(&hub2, "r", "y");
    x.recv();
    let original = json!({"type":"message","to":"y","data":"p".repeat(200)});
    assert!(original.to_string().len() <= 256);
    assert_eq!(x.error_code(original), "message-too-big");
    assert!(y.recv().is_empty());
    assert_eq!(
        hub2.broadcast("r", &json!({"type":"n","d":"x".repeat(300)}))
            .unwrap_err()
            .code(),
        "message-too-big"
    );
    // The error names the message it answers.
    a.send(json!({"type":"offer","to":"nobody","sdp":"x","id":"q1"}));
    assert_eq!(a.recv()[0]["ref"], "q1");
}

#[tokio::test]
async fn several_rooms_need_room_id() {
    let hub = hub_with(config());
    let mut a = Peer::joined(&hub, "r1", "a");
    a.send(json!({"type":"join","roomId":"r2"}));
    a.recv();
    assert_eq!(
        a.error_code(json!({"type":"chat","content":"x"})),
        "invalid-message"
    );
    a.send(json!({"type":"chat","roomId":"r2","content":"x"}));
    assert_eq!(a.recv()[0]["roomId"], "r2");
    let mut cfg = config();
    cfg.max_rooms_per_session = 1;
    let hub = hub_with(cfg);
    let mut b = Peer::joined(&hub, "r1", "b");
    assert_eq!(
        b.error_code(json!({"type":"join","roomId":"r2"})),
        "forbidden"
    );
}

#[tokio::test]
async fn rate_limit_errors_once_per_second_and_acks_still_flow() {
    let mut cfg = config();
    cfg.rate_limit_rps = 1;
    cfg.rate_limit_burst = 3;
    let hub = hub_with(cfg);
    let mut a = Peer::new(&hub);
    for _ in 0..10 {
        a.send(json!({"type":"ping"}));
    }
    let got = a.recv();
    assert_eq!(got.iter().filter(|m| m["type"] == "pong").count(), 3);
    let errors: Vec<_> = got.iter().filter(|m| m["type"] == "error").collect();
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0]["code"], "rate-limited");
    a.send(json!({"type":"ack","seq":2}));
    assert!(
        a.recv().is_empty(),
        "an ack is never rate limited nor answered"
    );
    assert!(a.close_request().is_none());
}

#[tokio::test]
async fn leave_and_clean_close_end_membership_at_once() {
    let hub = hub_with(config());
    let mut a = Peer::joined(&hub, "r", "a");
    let mut b = Peer::joined(&hub, "r", "b");
    let mut c = Peer::joined(&hub, "r", "c");
    a.recv();
    a.recv();
    b.recv();
    b.send(json!({"type":"leave"}));
    let left = a.recv();
    assert_eq!(
        (
            left[0]["type"].as_str(),
            left[0]["userId"].as_str(),
            left[0]["reason"].as_str()
        ),
        (Some("user-left"), Some("b"), Some("leave"))
    );
    c.recv();
    c.finish(Some(close::GOING_AWAY));
    let left = a.recv();
    assert_eq!(left[0]["reason"], "closed");
    a.finish(Some(close::NORMAL));
    assert!(hub.rooms().is_empty(), "an empty room is removed");
    assert_eq!(
        hub.metrics()
            .rooms
            .load(std::sync::atomic::Ordering::Relaxed),
        0
    );
}

#[tokio::test(start_paused = true)]
async fn lost_connection_is_away_then_times_out() {
    let hub = hub_with(config());
    let mut a = Peer::joined(&hub, "r", "a");
    let mut b = Peer::joined(&hub, "r", "b");
    a.recv();
    b.finish(None);
    tokio::time::sleep(Duration::from_secs(19)).await;
    assert!(
        a.recv().is_empty(),
        "nobody is told during the resume window"
    );
    assert!(!hub.peers("r").unwrap()[1].connected);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let left = a.recv();
    assert_eq!(left[0]["type"], "user-left");
    assert_eq!(left[0]["reason"], "timeout");
    // 4000 from the client (it stopped hearing us) is also "away".
    let mut c = Peer::joined(&hub, "r", "c");
    a.recv();
    c.finish(Some(close::HEARTBEAT_TIMEOUT));
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(a.recv().is_empty());
}

#[tokio::test(start_paused = true)]
async fn resume_replays_missed_messages_in_order_with_original_seq() {
    let hub = hub_with(config());
    let mut a = Peer::joined(&hub, "r", "a");
    let mut b = Peer::joined(&hub, "r", "b");
    a.recv();
    let (sid, token) = {
        let st = hub.inner.sessions.get(&b.session_id()).unwrap();
        (st.id.to_string(), st.resume_token.to_string())
    };
    // b saw seq 1 (room-info); then the line drops.
    b.finish(None);
    for i in 0..5 {
        a.send(json!({"type":"message","to":"b","data":i,"id":i}));
    }
    assert_eq!(
        a.recv_types(),
        ["ack"; 5],
        "messages to an away peer are accepted"
    );
    tokio::time::sleep(Duration::from_secs(5)).await;
    let mut b2 = Peer::new(&hub);
    b2.send(json!({"type":"resume","sessionId":sid,"resumeToken":token,"lastSeq":1}));
    let got = b2.recv();
    assert_eq!(got[0]["type"], "resumed");
    assert_eq!(got[0]["replayed"], 5);
    let data: Vec<i64> = got[1..]
        .iter()
        .map(|m| m["data"].as_i64().unwrap())
        .collect();
    assert_eq!(data, [0, 1, 2, 3, 4]);
    let seqs: Vec<u64> = got[1..]
        .iter()
        .map(|m| m["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, [2, 3, 4, 5, 6]);
    assert_eq!(b2.session_id(), sid);
    // Live again, and nobody was told anything.
    a.send(json!({"type":"message","to":"b","data":"live"}));
    assert_eq!(b2.recv()[0]["seq"], 7);
    assert!(a.recv().is_empty());
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert!(a.recv().is_empty(), "the resume cancelled the timeout");
    assert_eq!(hub.peers("r").unwrap().len(), 2);
}

#[tokio::test]
async fn resume_of_an_attached_session_takes_it_over_with_4409() {
    let hub = hub_with(config());
    let b = Peer::joined(&hub, "r", "b");
    let sess = hub.inner.sessions.get(&b.session_id()).unwrap();
    let mut b2 = Peer::new(&hub);
    b2.send(json!({"type":"resume","sessionId":&*sess.id,"resumeToken":&*sess.resume_token,"lastSeq":1}));
    assert_eq!(b2.recv_types(), ["resumed"]);
    let req = b.close_request().expect("old connection closed");
    assert_eq!(req.code, close::REPLACED);
    assert_eq!(req.fate, Fate::Detached);
    let mut b = b;
    b.finish(None);
    assert_eq!(
        hub.peers("r").unwrap().len(),
        1,
        "the old connection ending does not end the session"
    );
    assert!(hub.peers("r").unwrap()[0].connected);
}

#[tokio::test]
async fn replay_overflow_fails_resume_never_a_gap() {
    let mut cfg = config();
    cfg.replay_buffer_messages = 4;
    let hub = hub_with(cfg);
    let mut a = Peer::joined(&hub, "r", "a");
    let mut b = Peer::joined(&hub, "r", "b");
    a.recv();
    let sess = hub.inner.sessions.get(&b.session_id()).unwrap();
    b.finish(None);
    for i in 0..10 {
        a.send(json!({"type":"message","to":"b","data":i}));
    }
    let mut b2 = Peer::new(&hub);
    assert_eq!(
        b2.error_code(json!({"type":"resume","sessionId":&*sess.id,"resumeToken":&*sess.resume_token,"lastSeq":1})),
        "resume-failed"
    );
    let mut b3 = Peer::new(&hub);
    b3.send(json!({"type":"resume","sessionId":&*sess.id,"resumeToken":&*sess.resume_token,"lastSeq":7}));
    let got = b3.recv();
    assert_eq!(got[0]["type"], "resumed");
    assert_eq!(got.len(), 5, "seq 8..=11 are replayed");
}

#[tokio::test]
async fn cumulative_ack_frees_the_buffer() {
    let hub = hub_with(config());
    let mut a = Peer::joined(&hub, "r", "a");
    for _ in 0..4 {
        a.send(json!({"type":"ping"}));
    }
    a.recv();
    a.send(json!({"type":"ack","seq":3}));
    let sess = hub.inner.sessions.get(&a.session_id()).unwrap();
    assert_eq!(sess.lock().buffered().0, 2);
    assert!(sess.lock().replay_after(2).is_none());
}

#[tokio::test]
async fn rejoin_of_an_away_identity_replaces_it() {
    let hub = hub_with(config());
    let mut a = Peer::joined(&hub, "r", "a");
    let mut b = Peer::joined(&hub, "r", "b");
    a.recv();
    b.finish(None);
    let mut b2 = Peer::new(&hub);
    b2.send(json!({"type":"join","roomId":"r","userId":"b"}));
    let info = b2.recv();
    assert_eq!(info[0]["type"], "room-info");
    assert_eq!(info[0]["users"], json!(["a"]));
    let seen = a.recv();
    assert_eq!(seen[0]["type"], "user-left");
    assert_eq!(seen[0]["reason"], "replaced");
    assert_eq!(seen[1]["type"], "user-joined");
    assert_eq!(seen[1]["userId"], "b");
    assert_eq!(hub.peers("r").unwrap().len(), 2);
}

#[tokio::test]
async fn slow_consumer_is_closed_and_can_resume() {
    let mut cfg = config();
    cfg.max_message_bytes = 1024;
    cfg.replay_buffer_bytes = 3000;
    cfg.outbound_queue_bytes = 4096;
    // The stall time of a queue over half full.
    cfg.heartbeat_timeout = std::time::Duration::from_millis(30);
    cfg.validate().unwrap();
    let hub = hub_with(cfg);
    let mut a = Peer::joined(&hub, "r", "a");
    let b = Peer::joined(&hub, "r", "b");
    a.recv();
    let message = |i: usize| json!({"type":"message","to":"b","data":format!("{i:0>64}")});
    // b reads nothing: past half its queue, a is refused (the sender pays)...
    let mut accepted = 0;
    loop {
        let code = a.error_code_or_none(message(accepted));
        if code.as_deref() == Some("rate-limited") {
            break;
        }
        assert_eq!(code, None);
        accepted += 1;
    }
    assert!(
        b.close_request().is_none(),
        "b keeps its connection for now"
    );
    // ...until b's queue has not moved for the stall time: then b is closed as
    // a slow consumer, and what a sends waits in b's replay buffer.
    std::thread::sleep(std::time::Duration::from_millis(40));
    for i in 0..20 {
        a.send(message(1000 + i));
    }
    let req = b.close_request().expect("closed as slow consumer");
    assert_eq!((req.code, req.fate), (close::POLICY, Fate::Away));
    let sess = hub.inner.sessions.get(&b.session_id()).unwrap();
    let mut b = b;
    b.finish(None);
    assert!(sess.lock().is_away());
    let resume = |last: u64| json!({"type":"resume","sessionId":&*sess.id,"resumeToken":&*sess.resume_token,"lastSeq":last});
    // The replay buffer (3000 B) no longer covers seq 2: refused, never a gap.
    let mut b2 = Peer::new(&hub);
    assert_eq!(b2.error_code(resume(1)), "resume-failed");
    // The last ten come back in order, the 20 sent after the close among them.
    let newest = 2 + accepted as u64 + 20 - 1;
    let mut b3 = Peer::new(&hub);
    b3.send(resume(newest - 10));
    let got = b3.recv();
    assert_eq!(got[0]["type"], "resumed");
    let seqs: Vec<u64> = got[1..]
        .iter()
        .map(|m| m["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, (newest - 9..=newest).collect::<Vec<u64>>());
    assert_eq!(got.last().unwrap()["data"], format!("{:0>64}", 1019));
}

#[tokio::test]
async fn a_room_broadcast_waits_for_a_busy_receiver_all_or_nothing() {
    let mut cfg = config();
    cfg.max_message_bytes = 1024;
    cfg.replay_buffer_bytes = 3000;
    cfg.outbound_queue_bytes = 4096;
    cfg.validate().unwrap();
    let hub = hub_with(cfg);
    let mut a = Peer::joined(&hub, "r", "a");
    let b = Peer::joined(&hub, "r", "b");
    let mut c = Peer::joined(&hub, "r", "c");
    a.recv();
    c.recv();
    let mut accepted = 0;
    let refusal = loop {
        a.send(json!({"type":"message","id":accepted,"data":format!("{accepted:0>64}")}));
        let got = a.recv();
        if let Some(e) = got.iter().find(|m| m["type"] == "error") {
            break e.clone();
        }
        accepted += 1;
        // c reads along; b does not.
        assert_eq!(c.recv().len(), 1);
    };
    assert_eq!(refusal["code"], "rate-limited");
    assert!(
        refusal["message"]
            .as_str()
            .unwrap()
            .contains("not sent: b "),
        "{refusal}"
    );
    assert!(
        c.recv().is_empty(),
        "nothing of the refused broadcast reached c"
    );
    assert!(b.close_request().is_none());
    assert!(accepted > 5);
}

#[test]
fn config_rejects_a_replay_that_could_not_be_queued() {
    let cfg = ServerConfig {
        replay_buffer_bytes: 1 << 20,
        outbound_queue_bytes: 1 << 20,
        ..ServerConfig::default()
    };
    assert_eq!(cfg.validate().unwrap_err().code(), "config");
    ServerConfig::default().validate().unwrap();
}

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
    b2.send(json!({"type":"resume","sessionId":&*sess.id,"resumeToken":&*sess.resume_token,"lastSeq":0}));
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
    b2.send(json!({"type":"resume","sessionId":&*sess.id,"resumeToken":&*sess.resume_token,"lastSeq":1}));
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
