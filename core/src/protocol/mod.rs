//! The wire protocol (PROTOCOL.md): message type names, close codes, parsing of
//! client frames into borrowed views, and building server frames without a JSON tree.

pub(crate) mod frame;
pub(crate) mod inbound;
pub mod json;
pub mod msgpack;
pub mod outbound;
pub mod url;

pub use frame::{Frame, ObjectWriter};
pub(crate) use inbound::MAX_ID_LEN;
pub use inbound::{
    parse_client_message, parse_client_message_with, AppTypes, ClientMessage, Entries, Key,
    MsgType, ParseError,
};

/// The JSON subprotocol name.
pub const SUBPROTOCOL_JSON: &str = "webrtc-signaling";

/// The MessagePack subprotocol: binary frames carrying the same messages.
pub const SUBPROTOCOL_MSGPACK: &str = "webrtc-signaling.msgpack";

/// A `Sec-WebSocket-Protocol` entry `bearer.<token>` carries the handshake
/// token (browsers can set no other header); the server never selects it.
pub const SUBPROTOCOL_TOKEN_PREFIX: &str = "bearer.";

/// WebSocket close codes of PROTOCOL.md §4.
pub mod close {
    /// Normal close: the client is done (also the client's own `close()`).
    pub const NORMAL: u16 = 1000;
    /// Going away: from the server when shutting down (after `draining`), from a
    /// browser when the tab closes.
    pub const GOING_AWAY: u16 = 1001;
    /// A WebSocket protocol violation (e.g. an unmasked client frame).
    pub const PROTOCOL_ERROR: u16 = 1002;
    /// A binary frame on the JSON subprotocol.
    pub const UNSUPPORTED_DATA: u16 = 1003;
    /// No close frame: the connection just ended (never sent on the wire).
    pub const ABNORMAL: u16 = 1006;
    /// Policy: a slow consumer (outbound queue full) or a sustained flood.
    pub const POLICY: u16 = 1008;
    /// A frame above the size limit.
    pub const TOO_BIG: u16 = 1009;
    /// The server failed handling a message (a panic); the connection is closed.
    pub const INTERNAL: u16 = 1011;
    /// From the client: it stopped hearing the server; the session stays resumable.
    pub const HEARTBEAT_TIMEOUT: u16 = 4000;
    /// The join the upgrade URL asked for was refused (the reason names the error code).
    pub const JOIN_REFUSED: u16 = 4400;
    /// Authentication failed, timed out, or the token expired.
    pub const UNAUTHORIZED: u16 = 4401;
    /// The host application kicked the user.
    pub const KICKED: u16 = 4403;
    /// The session was resumed or taken over on another connection.
    pub const REPLACED: u16 = 4409;
}

/// Why a peer left a room (`user-left.reason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LeaveReason {
    /// The peer sent `leave` (or the host took it out of the room).
    Leave,
    /// The peer's connection closed for good.
    Closed,
    /// The peer was away longer than the resume window.
    Timeout,
    /// The host application kicked the peer.
    Kicked,
    /// A new `join` with the same `userId` took the peer's place (an away holder,
    /// or with auth on a newer connection of the same user).
    Replaced,
    /// The peer was away and the server's away budget needed its place (the
    /// oldest away session of its IP, or server-wide, goes first).
    Evicted,
}

impl LeaveReason {
    /// The wire string.
    pub fn as_str(self) -> &'static str {
        match self {
            LeaveReason::Leave => "leave",
            LeaveReason::Closed => "closed",
            LeaveReason::Timeout => "timeout",
            LeaveReason::Kicked => "kicked",
            LeaveReason::Replaced => "replaced",
            LeaveReason::Evicted => "evicted",
        }
    }
}

/// Milliseconds since the Unix epoch, for `timestamp` fields.
pub fn now_millis() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
