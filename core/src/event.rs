//! The one `Event` enum: its serde `type` is the protocol's message type, which is
//! the event name in every language. Used by the server handle and the client.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The fields of a protocol message, without its `type`.
pub type Fields = Map<String, Value>;

/// An event delivered to the application.
///
/// Protocol messages carry their fields as sent on the wire (`roomId`, `userId`,
/// `from`, …). On a server they describe what happened on the server (a peer joined,
/// an offer was relayed); on a client they are the messages the server sent.
/// The remaining variants are client connection-state events.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(
    tag = "type",
    rename_all = "kebab-case",
    rename_all_fields = "camelCase"
)]
#[non_exhaustive]
pub enum Event {
    /// A connection was established (`clientId`, `sessionId`, and on a server `ip`).
    Connected(Fields),
    /// A connection ended (server side: `clientId`, `sessionId`, `code`).
    Disconnected(Fields),
    /// Client: the answer to a `join` (`roomId`, `users`, `peers`, `you`).
    RoomInfo(Fields),
    /// A peer entered a room (`roomId`, `userId`, `displayName`?, `metadata`?, `polite`).
    UserJoined(Fields),
    /// A peer left a room (`roomId`, `userId`, `reason`).
    UserLeft(Fields),
    /// A relayed SDP offer (`from`, `to`, `sdp`, `roomId`).
    Offer(Fields),
    /// A relayed SDP answer (`from`, `to`, `sdp`, `roomId`).
    Answer(Fields),
    /// A relayed ICE candidate (`from`, `to`, `candidate`, `roomId`).
    Candidate(Fields),
    /// A relayed application message (`from`, `data`, `to`?, `roomId`).
    Message(Fields),
    /// A room-wide chat line (`roomId`, `from`, `content`, `timestamp`).
    Chat(Fields),
    /// Client: the answer to a `ping` (its `timestamp`, else the server's time).
    Pong(Fields),
    /// Client: the server accepted the message with this `id`.
    Ack(Fields),
    /// A session was resumed (`sessionId`, `replayed`).
    Resumed(Fields),
    /// Client: the server is shutting down; reconnect after a random delay up to
    /// `retryAfterMs`.
    Draining(Fields),
    /// Client: the server refused a message (`code`, `message`, `ref`?).
    Error(Fields),
    /// A message of one of the application's own types (`app_types`), named
    /// by `kind` (its `type`). Serialized by [`Event::to_json`] only.
    #[serde(skip)]
    App {
        /// The message's `type`, one of the configured app types.
        kind: String,
        /// The message's other fields, as relayed (with `from` and `roomId`).
        fields: Fields,
    },
    /// Client: a connection attempt starts.
    Connecting {
        /// 0 for the first connect, else the reconnect attempt's number.
        attempt: u32,
    },
    /// Client: the WebSocket is open (before `connected`/`resumed`).
    Open,
    /// Client: the connection was lost; the next attempt starts after `delay_ms`.
    Reconnecting {
        /// The coming attempt's number since the last stable connection, from 1.
        attempt: u32,
        /// Milliseconds until that attempt (the backoff, or a drain's jittered hint).
        delay_ms: u64,
    },
    /// Client: the session could not be resumed; these rooms were joined afresh,
    /// so peer connections should be renegotiated.
    Rejoined {
        /// The ids of the rooms joined again.
        rooms: Vec<String>,
    },
    /// Client: reconnection gave up after `attempts` attempts.
    ReconnectFailed {
        /// How many reconnect attempts were made (the configured maximum).
        attempts: u32,
    },
    /// Client: closed for good (by `close()`, a terminal close code, or giving up).
    Closed {
        /// The close code that ended the client, if any (1000 after `close()`).
        code: Option<u16>,
        /// Why the client closed, for humans.
        reason: String,
    },
}

/// Every event name but the app types' (what [`Event::kind`] returns), in
/// declaration order: the names bindings subscribe by.
pub const EVENT_NAMES: [&str; 21] = [
    "connected",
    "disconnected",
    "room-info",
    "user-joined",
    "user-left",
    "offer",
    "answer",
    "candidate",
    "message",
    "chat",
    "pong",
    "ack",
    "resumed",
    "draining",
    "error",
    "connecting",
    "open",
    "reconnecting",
    "rejoined",
    "reconnect-failed",
    "closed",
];

impl Event {
    /// The event name: the protocol `type` string (`"user-joined"`, …).
    pub fn kind(&self) -> &str {
        match self {
            Event::App { kind, .. } => kind,
            Event::Connected(_) => "connected",
            Event::Disconnected(_) => "disconnected",
            Event::RoomInfo(_) => "room-info",
            Event::UserJoined(_) => "user-joined",
            Event::UserLeft(_) => "user-left",
            Event::Offer(_) => "offer",
            Event::Answer(_) => "answer",
            Event::Candidate(_) => "candidate",
            Event::Message(_) => "message",
            Event::Chat(_) => "chat",
            Event::Pong(_) => "pong",
            Event::Ack(_) => "ack",
            Event::Resumed(_) => "resumed",
            Event::Draining(_) => "draining",
            Event::Error(_) => "error",
            Event::Connecting { .. } => "connecting",
            Event::Open => "open",
            Event::Reconnecting { .. } => "reconnecting",
            Event::Rejoined { .. } => "rejoined",
            Event::ReconnectFailed { .. } => "reconnect-failed",
            Event::Closed { .. } => "closed",
        }
    }

    /// Builds a protocol-message event from a parsed server message (with `type`).
    /// A type the protocol does not define is an app type ([`Event::App`]).
    /// Returns `None` without a string `type` or for a non-object.
    pub fn from_message(value: Value) -> Option<Event> {
        let Value::Object(mut fields) = value else {
            return None;
        };
        let kind = match fields.remove("type") {
            Some(Value::String(s)) => s,
            _ => return None,
        };
        Some(match kind.as_str() {
            "connected" => Event::Connected(fields),
            "room-info" => Event::RoomInfo(fields),
            "user-joined" => Event::UserJoined(fields),
            "user-left" => Event::UserLeft(fields),
            "offer" => Event::Offer(fields),
            "answer" => Event::Answer(fields),
            "candidate" => Event::Candidate(fields),
            "message" => Event::Message(fields),
            "chat" => Event::Chat(fields),
            "pong" => Event::Pong(fields),
            "ack" => Event::Ack(fields),
            "resumed" => Event::Resumed(fields),
            "draining" => Event::Draining(fields),
            "error" => Event::Error(fields),
            // The server relays no other types than the app types it was given.
            "" => return None,
            _ => Event::App { kind, fields },
        })
    }

    /// The message fields of a protocol-message event.
    pub fn fields(&self) -> Option<&Fields> {
        match self {
            Event::Connected(f)
            | Event::Disconnected(f)
            | Event::RoomInfo(f)
            | Event::UserJoined(f)
            | Event::UserLeft(f)
            | Event::Offer(f)
            | Event::Answer(f)
            | Event::Candidate(f)
            | Event::Message(f)
            | Event::Chat(f)
            | Event::Pong(f)
            | Event::Ack(f)
            | Event::Resumed(f)
            | Event::Draining(f)
            | Event::Error(f)
            | Event::App { fields: f, .. } => Some(f),
            _ => None,
        }
    }

    /// A string field of a protocol-message event.
    pub fn str_field(&self, name: &str) -> Option<&str> {
        self.fields()?.get(name)?.as_str()
    }

    /// `roomId`, when present.
    pub fn room_id(&self) -> Option<&str> {
        self.str_field("roomId")
    }

    /// `userId`, when present.
    pub fn user_id(&self) -> Option<&str> {
        self.str_field("userId")
    }

    /// `from`, when present.
    pub fn from(&self) -> Option<&str> {
        self.str_field("from")
    }

    /// The event as one JSON object with its `type`.
    pub fn to_json(&self) -> Value {
        if let Event::App { kind, fields } = self {
            let mut all = Map::with_capacity(fields.len() + 1);
            all.insert("type".into(), Value::String(kind.clone()));
            all.extend(fields.iter().map(|(k, v)| (k.clone(), v.clone())));
            return Value::Object(all);
        }
        serde_json::to_value(self).unwrap_or(Value::Null)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn serde_type_is_the_protocol_name() {
        let e = Event::from_message(
            json!({"type":"user-joined","roomId":"r","userId":"a","polite":false}),
        )
        .unwrap();
        assert_eq!(e.kind(), "user-joined");
        assert_eq!(e.room_id(), Some("r"));
        let v = e.to_json();
        assert_eq!(v["type"], "user-joined");
        assert_eq!(serde_json::from_value::<Event>(v).unwrap(), e);
        let r = Event::Reconnecting {
            attempt: 2,
            delay_ms: 1500,
        }
        .to_json();
        assert_eq!(r, json!({"type":"reconnecting","attempt":2,"delayMs":1500}));
        assert_eq!(
            Event::ReconnectFailed { attempts: 3 }.kind(),
            "reconnect-failed"
        );
        let app = Event::from_message(json!({"type":"hangup","from":"a"})).unwrap();
        assert_eq!((app.kind(), app.from()), ("hangup", Some("a")));
        assert_eq!(app.to_json(), json!({"type":"hangup","from":"a"}));
        assert!(Event::from_message(json!({"type":7})).is_none());
    }
}
