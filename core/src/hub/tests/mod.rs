//! Hub unit tests: every protocol rule, driven without sockets.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use super::*;
use crate::protocol::close;

mod host;
mod sessions;

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
