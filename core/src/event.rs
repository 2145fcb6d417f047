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
    RoomInfo(Fields),
    UserJoined(Fields),
    UserLeft(Fields),
    Offer(Fields),
    Answer(Fields),
    Candidate(Fields),
    Message(Fields),
    Chat(Fields),
    Pong(Fields),
    Ack(Fields),
    /// A session was resumed (`sessionId`, `replayed`).
    Resumed(Fields),
    Draining(Fields),
    Error(Fields),
    /// Client: a connection attempt starts.
    Connecting {
        attempt: u32,
    },
    /// Client: the WebSocket is open (before `connected`/`resumed`).
    Open,
    /// Client: the connection was lost; the next attempt starts after `delay_ms`.
    Reconnecting {
        attempt: u32,
        delay_ms: u64,
    },
    /// Client: the session could not be resumed; these rooms were joined afresh,
    /// so peer connections should be renegotiated.
    Rejoined {
        rooms: Vec<String>,
    },
    /// Client: reconnection gave up after `attempts` attempts.
    ReconnectFailed {
        attempts: u32,
    },
    /// Client: closed for good (by `close()`, a terminal close code, or giving up).
    Closed {
        code: Option<u16>,
        reason: String,
    },
}

impl Event {
    /// The event name: the protocol `type` string (`"user-joined"`, …).
    pub fn kind(&self) -> &'static str {
        match self {
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
    /// Returns `None` for an unknown `type` or a non-object.
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
            _ => return None,
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
            | Event::Error(f) => Some(f),
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
        assert!(Event::from_message(json!({"type":"bogus"})).is_none());
    }
}
