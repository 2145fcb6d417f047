//! Fuzzing harness shared by the `cargo fuzz` targets (libFuzzer, nightly) and the
//! stable, seeded random-mutation test in `core/tests/fuzz_harness.rs`, which
//! includes this file as a module.
//!
//! - [`parse_message`]: the client frame parser and the handshake token parser
//!   never panic, and what they accept is consistent.
//! - [`hub_messages`]: a hub (auth off, static tokens, or an asynchronous hook)
//!   driven by several connections through the transport-free API, the way a
//!   binding drives it. After every step every queued frame is a JSON object with
//!   a string `type`, `seq` goes up by exactly 1 per connection, rooms list
//!   unique users, and gauges stay non-negative. At the end, once every
//!   connection is gone and the resume window has passed, nothing is left: no
//!   room, session, connection or away session (no leak).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use switchboard::hub::{ConnectInfo, Connection, Hub, Next};
use switchboard::protocol::url::{url_join, UpgradePaths};
use switchboard::protocol::{msgpack, parse_client_message};
use switchboard::{AuthConfig, AuthRequest, Identity, ServerConfig};

/// The parsers on arbitrary input.
pub fn parse_message(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    if let Ok(msg) = parse_client_message(&text) {
        // Accepted frames are JSON objects with a known type. Numbers beyond the
        // f64 range are valid JSON (RFC 8259) and forwarded verbatim, though
        // serde_json's `Value` refuses them: a known, documented exception.
        let v: Value = match serde_json::from_str(&text) {
            Ok(v) => v,
            Err(e) if e.to_string().starts_with("number out of range") => return,
            Err(e) => panic!("an accepted frame is not valid JSON ({e}): {text}"),
        };
        assert!(v.is_object());
        assert_eq!(
            v["type"]
                .as_str()
                .map(|t| t.eq_ignore_ascii_case(msg.kind.as_str())),
            Some(true),
            "type {:?} for {text}",
            msg.kind
        );
    }
    // The token parser (query string, Authorization header).
    let mut mid = text.len() / 2;
    while !text.is_char_boundary(mid) {
        mid -= 1;
    }
    let (query, header) = text.split_at(mid);
    let protocols = [header.to_owned()];
    if let Some(t) = switchboard::auth::token_from_request(Some(query), Some(header), &protocols) {
        assert!(!t.is_empty());
    }
    // The URL parts: a path matched against templates, and the query's join.
    let paths = UpgradePaths::parse("/ws,/,/signaling/{roomId}/{userId}").expect("a valid list");
    if let Ok(Some(join)) = url_join(paths.matches(query).unwrap_or_default(), Some(header)) {
        assert!(!join.room_id.is_empty() && join.room_id.len() <= 256);
    }
    // MessagePack frames become JSON text the hub can parse (or are refused);
    // JSON the server accepted survives the trip to MessagePack and back.
    if let Ok(json) = msgpack::decode(data) {
        if let Err(e) = serde_json::from_str::<Value>(&json) {
            assert!(
                e.to_string().contains("recursion limit"),
                "decoded MessagePack is not JSON ({e}): {json}"
            );
        }
        let _ = parse_client_message(&json);
    }
    if parse_client_message(&text).is_ok() {
        let back = msgpack::decode(&msgpack::encode(&text)).expect("our own encoding decodes");
        if let (Ok(a), Ok(b)) = (
            serde_json::from_str::<Value>(&text),
            serde_json::from_str::<Value>(&back),
        ) {
            assert_eq!(a, b, "the MessagePack round trip changed {text}");
        }
    }
}

/// The auth modes a hub run can use (first input byte).
fn config(mode: u8) -> ServerConfig {
    let auth = match mode % 3 {
        0 => AuthConfig::Off,
        1 => AuthConfig::Tokens(
            [("t-alice", "alice"), ("t-bob", "bob"), ("t-carol", "carol")]
                .into_iter()
                .map(|(t, u)| (t.to_owned(), u.to_owned()))
                .collect(),
        ),
        _ => AuthConfig::Hook(Arc::new(|req: AuthRequest| async move {
            // Asynchronous like a real host check: frames arriving meanwhile queue.
            tokio::task::yield_now().await;
            let user = req.token?.strip_prefix("t-")?.to_owned();
            (user.len() <= 16).then(|| Identity::new(user).with_rooms(["r*"]))
        })),
    };
    ServerConfig {
        rate_limit_rps: 0,
        max_room_size: 3,
        max_rooms_per_session: 3,
        replay_buffer_messages: 16,
        replay_buffer_bytes: 8 * 1024,
        outbound_queue_bytes: 64 * 1024,
        max_message_bytes: 4 * 1024,
        auth,
        auth_timeout: Duration::from_secs(5),
        ..ServerConfig::default()
    }
}

const CONNS: usize = 4;

/// One client slot: its connection and what the test saw on it.
#[derive(Default)]
struct Slot {
    conn: Option<Connection>,
    /// `sessionId`, `resumeToken` from `connected`, and the last `seq` seen.
    session: Option<(String, String)>,
    last_seq: Option<u64>,
}

/// A message built from a template, so the fuzzer reaches deep states without
/// having to discover the JSON grammar first.
fn template(op: u8, arg: u8, slots: &[Slot]) -> String {
    let room = format!("r{}", arg % 3);
    let user = ["alice", "bob", "carol", "dave"][usize::from(arg) % 4];
    let other = &slots[usize::from(arg) % CONNS];
    let v = match op % 12 {
        0 => json!({"type":"join","roomId":room,"userId":user,"id":arg}),
        1 => json!({"type":"join","roomId":room}),
        2 => json!({"type":"offer","to":user,"sdp":{"type":"offer","sdp":"v=0"},"roomId":room}),
        3 => json!({"type":"candidate","to":user,"candidate":{"c":arg}}),
        4 => json!({"type":"message","data":[arg],"id":format!("m{arg}")}),
        5 => json!({"type":"chat","content":"hi","roomId":room}),
        6 => json!({"type":"leave"}),
        7 => json!({"type":"ack","seq": u64::from(arg)}),
        8 => json!({"type":"auth","token":format!("t-{user}"),"id":arg}),
        9 => json!({"type":"auth","token":"bad"}),
        10 => match &other.session {
            Some((s, t)) => json!({"type":"resume","sessionId":s,"resumeToken":t,
                                   "lastSeq": other.last_seq.unwrap_or(0).saturating_sub(u64::from(arg % 4))}),
            None => json!({"type":"ping","timestamp":arg}),
        },
        _ => json!({"type":"leave","roomId":room}),
    };
    v.to_string()
}

/// Drains one outbox and checks every frame; `true` when the connection asked to close.
fn drain(slot: &mut Slot) -> bool {
    let Some(conn) = &slot.conn else {
        return false;
    };
    let outbox = conn.outbox().clone();
    let mut batch = Vec::new();
    let mut closing = false;
    while let Some(next) = outbox.try_next(&mut batch) {
        if let Next::Close(_) = next {
            closing = true;
            break;
        }
    }
    for frame in &batch {
        let v: Value = serde_json::from_str(frame.as_str()).expect("frames are JSON");
        let ty = v["type"].as_str().expect("frames have a string type");
        if ty == "connected" {
            slot.session = Some((
                v["sessionId"].as_str().unwrap().to_owned(),
                v["resumeToken"].as_str().unwrap().to_owned(),
            ));
        }
        if let Some(seq) = v.get("seq") {
            let seq = seq.as_u64().expect("seq is a positive integer");
            assert!(seq >= 1);
            if let Some(last) = slot.last_seq {
                assert_eq!(seq, last + 1, "seq goes up by 1 on a connection: {frame}");
            }
            slot.last_seq = Some(seq);
        }
    }
    closing
}

fn check_hub(hub: &Hub) {
    for room in hub.rooms() {
        assert!(!room.peers.is_empty(), "no empty room is listed");
        let mut users: Vec<&str> = room.peers.iter().map(|p| p.user_id.as_str()).collect();
        users.sort_unstable();
        users.dedup();
        assert_eq!(
            users.len(),
            room.peers.len(),
            "user ids are unique in a room"
        );
    }
    let m = hub.metrics();
    for g in [&m.connections, &m.sessions, &m.sessions_away, &m.rooms] {
        assert!(g.load(Ordering::Relaxed) >= 0);
    }
}

fn connect(hub: &Hub, slot: &mut Slot, token: Option<String>) {
    *slot = Slot {
        conn: Some(hub.connect(ConnectInfo {
            token,
            path: "/ws".into(),
            ..ConnectInfo::default()
        })),
        ..Slot::default()
    };
}

/// Runs one input against a fresh hub (see the module docs).
pub fn hub_messages(data: &[u8]) {
    let Some((&mode, ops)) = data.split_first() else {
        return;
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("a runtime");
    rt.block_on(async move {
        let hub = Hub::new(Arc::new(config(mode)));
        let mut slots: Vec<Slot> = (0..CONNS).map(|_| Slot::default()).collect();
        let mut steps = 0;
        // Ops: [selector, arg, ...payload up to 0xFF].
        let mut rest = ops;
        while let [sel, arg, tail @ ..] = rest {
            steps += 1;
            if steps > 256 {
                break;
            }
            let end = tail.iter().position(|b| *b == 0xFF).unwrap_or(tail.len());
            let payload = &tail[..end];
            rest = tail.get(end + 1..).unwrap_or(&[]);
            let i = usize::from(*sel) % CONNS;
            match (sel / 4) % 8 {
                // Raw frame text.
                0 => {
                    if let Some(c) = &mut slots[i].conn {
                        c.handle_text(&String::from_utf8_lossy(payload));
                    }
                }
                // A templated message.
                1..=4 => {
                    let text = template(*arg, payload.first().copied().unwrap_or(0), &slots);
                    if let Some(c) = &mut slots[i].conn {
                        c.handle_text(&text);
                    }
                }
                // (Re)connect, with or without a handshake token.
                5 => {
                    let token = match arg % 3 {
                        0 => None,
                        1 => Some(format!(
                            "t-{}",
                            ["alice", "bob", "carol"][usize::from(*arg / 3) % 3]
                        )),
                        _ => Some(String::from_utf8_lossy(payload).into_owned()),
                    };
                    connect(&hub, &mut slots[i], token);
                }
                // End the connection: clean close, network cut, or 4000.
                6 => {
                    if let Some(c) = slots[i].conn.take() {
                        c.finish(match arg % 3 {
                            0 => Some(1000),
                            1 => None,
                            _ => Some(4000),
                        });
                    }
                }
                // Host actions and time passing.
                _ => match arg % 4 {
                    0 => {
                        let _ = hub.kick(
                            &format!("r{}", arg % 3),
                            ["alice", "bob", "carol"][usize::from(*arg) % 3],
                        );
                    }
                    1 => {
                        let _ = hub
                            .broadcast(&format!("r{}", arg % 3), &json!({"type":"notice","n":arg}));
                    }
                    2 => tokio::time::sleep(Duration::from_millis(u64::from(*arg) * 40)).await,
                    _ => {
                        let _ = hub.send("r0", "alice", &json!({"type":"x"}));
                    }
                },
            }
            // Let hook answers and timers run, then check every outbox.
            for _ in 0..3 {
                tokio::task::yield_now().await;
            }
            for slot in &mut slots {
                if drain(slot) {
                    // The server asked to close: the transport would end it.
                    if let Some(c) = slot.conn.take() {
                        c.finish(None);
                    }
                }
            }
            check_hub(&hub);
        }
        // Everything ends; after the resume window nothing may be left.
        for slot in &mut slots {
            if let Some(c) = slot.conn.take() {
                c.finish(None);
            }
        }
        let window = hub.config().resume_window + Duration::from_secs(1);
        tokio::time::sleep(window).await;
        for _ in 0..3 {
            tokio::task::yield_now().await;
        }
        let m = hub.metrics();
        assert!(hub.rooms().is_empty(), "rooms left: {:?}", hub.rooms());
        assert_eq!(m.rooms.load(Ordering::Relaxed), 0, "room gauge");
        assert_eq!(m.sessions.load(Ordering::Relaxed), 0, "sessions leaked");
        assert_eq!(m.sessions_away.load(Ordering::Relaxed), 0, "away gauge");
        assert_eq!(
            m.connections.load(Ordering::Relaxed),
            0,
            "connections gauge"
        );
    });
}
