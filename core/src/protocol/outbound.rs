//! Every server→client message of PROTOCOL.md §3, built in this one place, as
//! text (no JSON tree): the hub, the cluster and the kit call these builders and
//! never write a message's fields themselves.

use super::json::Raw;

use std::borrow::Cow;

use super::frame::{
    fit_replay_frame, push_json_str, push_u64, replay_frame_capacity, ObjectWriter,
};
use super::inbound::{ClientMessage, MsgType};
use super::{now_millis, LeaveReason};

/// A peer as `user-joined`, `room-info.peers` and `room-info.you` show it.
#[derive(Debug, Clone, Copy)]
pub struct Peer<'a> {
    /// The peer's `userId`.
    pub user_id: &'a str,
    /// The peer's `displayName`, when it gave one.
    pub display_name: Option<&'a str>,
    /// Raw JSON text of the peer's metadata.
    pub metadata: Option<&'a str>,
}

impl Peer<'_> {
    fn write(&self, w: &mut ObjectWriter) {
        w.str("userId", self.user_id)
            .opt_str("displayName", self.display_name)
            .opt_raw("metadata", self.metadata);
    }
}

/// `connected`: the first message of every connection.
pub fn connected(
    client_id: &str,
    session_id: &str,
    resume_token: &str,
    heartbeat_ms: u64,
) -> String {
    let mut w = ObjectWriter::typed("connected", 192);
    w.str("clientId", client_id)
        .str("sessionId", session_id)
        .str("resumeToken", resume_token)
        .u64("heartbeatMs", heartbeat_ms)
        .u64("timestamp", now_millis());
    w.finish()
}

/// `error` with the protocol's `code`, and `ref` = the refused message's `id`.
pub fn error(code: &str, message: &str, reference: Option<Raw<'_>>) -> String {
    let mut w = ObjectWriter::typed("error", 96 + message.len());
    w.str("code", code).str("message", message);
    if let Some(r) = reference {
        w.raw_value("ref", r);
    }
    w.finish()
}

/// `ack` of a message's `id`.
pub fn ack(id: Raw<'_>) -> String {
    let mut w = ObjectWriter::typed("ack", 48);
    w.raw_value("id", id);
    w.finish()
}

/// `pong`, echoing the `ping`'s timestamp (or now).
pub fn pong(timestamp: Option<Raw<'_>>) -> String {
    let mut w = ObjectWriter::typed("pong", 48);
    match timestamp {
        Some(t) => w.raw_value("timestamp", t),
        None => w.u64("timestamp", now_millis()),
    };
    w.finish()
}

/// `draining`, with the suggested reconnect delay bound.
pub fn draining(retry_after_ms: u64) -> String {
    let mut w = ObjectWriter::typed("draining", 48);
    w.u64("retryAfterMs", retry_after_ms);
    w.finish()
}

/// `resumed`, before the replayed frames.
pub fn resumed(session_id: &str, replayed: usize) -> String {
    let mut w = ObjectWriter::typed("resumed", 96);
    w.str("sessionId", session_id)
        .u64("replayed", replayed as u64);
    w.finish()
}

/// `user-left`.
pub fn user_left(room_id: &str, user_id: &str, reason: LeaveReason) -> String {
    let mut w = ObjectWriter::typed("user-left", 96);
    w.str("roomId", room_id)
        .str("userId", user_id)
        .str("reason", reason.as_str());
    w.finish()
}

/// `user-joined`; `polite` is the receiver's role toward the newcomer.
pub fn user_joined(room_id: &str, peer: Peer<'_>, polite: bool) -> String {
    let mut w = ObjectWriter::typed("user-joined", 128);
    w.str("roomId", room_id);
    peer.write(&mut w);
    w.bool("polite", polite);
    w.finish()
}

/// `room-info` for `you`: `peers` in join order, each with the newcomer's
/// `polite` role toward it; `ice_servers` (TURN credentials) when configured.
///
/// It never exceeds `limit` bytes (the hub passes half a connection's queue),
/// so a newcomer can always join however much the members carry: past the
/// limit the peers lose `displayName` and `metadata` (`"peersTrimmed":true`;
/// `user-joined` and the host API still carry them), and past it again the
/// list keeps the earliest joiners (`"peersOmitted":N`, the number left out).
pub fn room_info(
    room_id: &str,
    peers: &[(Peer<'_>, bool)],
    you: Peer<'_>,
    ice_servers: Option<&serde_json::Value>,
    limit: usize,
) -> String {
    let full = room_info_of(room_id, peers, you, ice_servers, None);
    if full.len() <= limit {
        return full;
    }
    let bare: Vec<(Peer<'_>, bool)> = peers
        .iter()
        .map(|(p, polite)| {
            let p = Peer {
                user_id: p.user_id,
                display_name: None,
                metadata: None,
            };
            (p, *polite)
        })
        .collect();
    let mut keep = bare.len();
    loop {
        let omitted = bare.len() - keep;
        let body = room_info_of(room_id, &bare[..keep], you, ice_servers, Some(omitted));
        if body.len() <= limit || keep == 0 {
            return body;
        }
        // Drop as many peers as the excess needs at their average size.
        let per_peer = (body.len() / keep).max(1);
        keep = keep.saturating_sub((body.len() - limit).div_ceil(per_peer).max(1));
    }
}

/// `room-info` as is (`trimmed: None`), or trimmed with this many peers omitted.
fn room_info_of(
    room_id: &str,
    peers: &[(Peer<'_>, bool)],
    you: Peer<'_>,
    ice_servers: Option<&serde_json::Value>,
    trimmed: Option<usize>,
) -> String {
    let mut w = ObjectWriter::typed("room-info", 128 + peers.len() * 96);
    w.str("roomId", room_id);
    let users: Vec<&str> = peers.iter().map(|(p, _)| p.user_id).collect();
    let mut list = String::from("[");
    for (i, (peer, polite)) in peers.iter().enumerate() {
        if i > 0 {
            list.push(',');
        }
        let mut p = ObjectWriter::with_capacity(96);
        peer.write(&mut p);
        p.bool("polite", *polite);
        list.push_str(&p.finish());
    }
    list.push(']');
    w.serialize("users", &users);
    w.raw("peers", &list);
    let mut y = ObjectWriter::with_capacity(96);
    you.write(&mut y);
    w.raw("you", &y.finish());
    if let Some(servers) = ice_servers {
        w.serialize("iceServers", servers);
    }
    if let Some(omitted) = trimmed {
        w.bool("peersTrimmed", true);
        if omitted > 0 {
            w.u64("peersOmitted", omitted as u64);
        }
    }
    w.finish()
}

/// The forwarded copy of a client message: its fields in order, without the
/// client's own `from`/`seq`/`id` (every duplicate of them), plus the stamped
/// `from` (and `roomId` when the client left it out; a fresh `timestamp` on chat).
pub fn forward(msg: &ClientMessage<'_>, seq: Option<u64>, from: &str, room_id: &str) -> String {
    let len: usize = msg
        .entries
        .0
        .iter()
        .map(|(k, v)| k.0.len() + v.get().len() + 4)
        .sum();
    // Written directly rather than through `ObjectWriter`: this runs for every
    // relayed message, and the client's keys need no escaping check.
    let estimate = len + from.len() + room_id.len() + 96;
    let mut out = String::with_capacity(match seq {
        Some(_) => replay_frame_capacity(estimate),
        None => estimate,
    });
    out.push('{');
    if let Some(seq) = seq {
        out.push_str("\"seq\":");
        push_u64(&mut out, seq);
        out.push(',');
    }
    out.push_str("\"type\":");
    match msg.kind {
        MsgType::App => push_json_str(&mut out, &msg.type_name),
        // The canonical names need no escaping.
        kind => {
            out.push('"');
            out.push_str(kind.as_str());
            out.push('"');
        }
    }
    let is_chat = msg.kind == MsgType::Chat;
    for (k, v) in &msg.entries.0 {
        match &*k.0 {
            "type" | "from" | "seq" | "id" => {}
            "timestamp" if is_chat => {}
            _ => {
                out.push(',');
                match &k.0 {
                    // The scanner hands a key over borrowed only when it had
                    // no escape, and JSON strings hold no raw `"` or control
                    // characters: it goes out as it came in.
                    Cow::Borrowed(key) => {
                        out.push('"');
                        out.push_str(key);
                        out.push('"');
                    }
                    Cow::Owned(key) => push_json_str(&mut out, key),
                }
                out.push(':');
                out.push_str(v.get());
            }
        }
    }
    if msg.room_id.is_none() {
        out.push_str(",\"roomId\":");
        push_json_str(&mut out, room_id);
    }
    if is_chat {
        out.push_str(",\"timestamp\":");
        push_u64(&mut out, now_millis());
    }
    out.push_str(",\"from\":");
    push_json_str(&mut out, from);
    out.push('}');
    if seq.is_some() {
        fit_replay_frame(&mut out);
    }
    out
}

/// A message the host application sends (`send`/`broadcast`): its fields as
/// given, without a `seq` of its own (the receiving session stamps one).
pub fn from_host(fields: &serde_json::Map<String, serde_json::Value>) -> String {
    let mut w = ObjectWriter::with_capacity(128);
    for (k, v) in fields {
        if k != "seq" {
            w.serialize(k, v);
        }
    }
    w.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn parse(s: &str) -> Value {
        serde_json::from_str(s).expect("valid JSON")
    }

    #[test]
    fn a_forwarded_copy_with_a_seq_is_in_a_replay_size_class() {
        use crate::protocol::frame::REPLAY_FRAME_ALIGN;
        use crate::protocol::inbound::parse_client_message;
        let text = r#"{"type":"candidate","to":"bob","candidate":{"candidate":"c"}}"#;
        let msg = parse_client_message(text).unwrap();
        let kept = forward(&msg, Some(3), "alice", "r1");
        assert_eq!(
            kept.capacity(),
            REPLAY_FRAME_ALIGN,
            "the estimate is given back"
        );
        assert_eq!(parse(&kept)["seq"], 3);
        // Without a seq it is a body to stamp per receiver, never kept itself.
        let body = forward(&msg, None, "alice", "r1");
        assert!(body.capacity() < REPLAY_FRAME_ALIGN);
        assert_eq!(parse(&body)["from"], "alice");
    }

    #[test]
    fn messages_have_the_protocol_shapes() {
        let id = Raw::parse("7").unwrap();
        assert_eq!(
            parse(&error("room-full", "full \"x\"", Some(id))),
            json!({"type": "error", "code": "room-full", "message": "full \"x\"", "ref": 7})
        );
        assert_eq!(parse(&ack(id)), json!({"type": "ack", "id": 7}));
        assert_eq!(
            parse(&draining(5000)),
            json!({"type": "draining", "retryAfterMs": 5000})
        );
        let alice = Peer {
            user_id: "alice",
            display_name: Some("Alice"),
            metadata: Some(r#"{"a":1}"#),
        };
        let bob = Peer {
            user_id: "bob",
            display_name: None,
            metadata: None,
        };
        assert_eq!(
            parse(&user_joined("r", alice, false)),
            json!({"type": "user-joined", "roomId": "r", "userId": "alice",
                   "displayName": "Alice", "metadata": {"a": 1}, "polite": false})
        );
        let ice = json!([{"urls": ["turn:x"]}]);
        assert_eq!(
            parse(&room_info(
                "r",
                &[(alice, true)],
                bob,
                Some(&ice),
                usize::MAX
            )),
            json!({"type": "room-info", "roomId": "r", "users": ["alice"],
                   "peers": [{"userId": "alice", "displayName": "Alice",
                              "metadata": {"a": 1}, "polite": true}],
                   "you": {"userId": "bob"}, "iceServers": ice})
        );
        assert_eq!(
            parse(&user_left("r", "bob", LeaveReason::Kicked)),
            json!({"type": "user-left", "roomId": "r", "userId": "bob", "reason": "kicked"})
        );
    }

    #[test]
    fn room_info_is_trimmed_then_cut_to_its_limit() {
        let meta = format!(r#"{{"blob":"{}"}}"#, "m".repeat(1000));
        let ids: Vec<String> = (0..100).map(|i| format!("user-{i:03}")).collect();
        let peers: Vec<(Peer<'_>, bool)> = ids
            .iter()
            .map(|id| {
                let p = Peer {
                    user_id: id,
                    display_name: Some("A Name"),
                    metadata: Some(&meta),
                };
                (p, true)
            })
            .collect();
        let you = Peer {
            user_id: "me",
            display_name: None,
            metadata: Some(r#"{"mine":1}"#),
        };
        let full = room_info("r", &peers, you, None, usize::MAX);
        assert!(full.len() > 100_000);
        // Within 20 KB: every peer, without displayName and metadata.
        let trimmed = parse(&room_info("r", &peers, you, None, 20_000));
        assert_eq!(trimmed["peersTrimmed"], true);
        assert_eq!(trimmed["peers"].as_array().unwrap().len(), 100);
        assert!(trimmed.get("peersOmitted").is_none());
        assert_eq!(
            trimmed["peers"][0],
            json!({"userId": "user-000", "polite": true})
        );
        assert_eq!(trimmed["you"]["metadata"], json!({"mine": 1}));
        // Within 2 KB: the earliest joiners, and how many were left out.
        let cut = room_info("r", &peers, you, None, 2_000);
        assert!(cut.len() <= 2_000, "{} bytes", cut.len());
        let cut = parse(&cut);
        let kept = cut["peers"].as_array().unwrap().len();
        assert!(kept > 10, "{kept} kept");
        assert_eq!(cut["peersOmitted"], 100 - kept as u64);
        assert_eq!(cut["users"].as_array().unwrap().len(), kept);
        assert_eq!(cut["peers"][0]["userId"], "user-000");
    }
}
