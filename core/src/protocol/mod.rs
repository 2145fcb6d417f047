//! The wire protocol (PROTOCOL.md): message type names, close codes, parsing of
//! client frames into borrowed views, and building server frames without a JSON tree.

pub(crate) mod frame;
pub(crate) mod inbound;
pub mod outbound;

pub use frame::{Frame, ObjectWriter};
pub use inbound::{parse_client_message, ClientMessage, Entries, Key, MsgType, ParseError};

/// The JSON subprotocol name.
pub const SUBPROTOCOL_JSON: &str = "webrtc-signaling";

/// WebSocket close codes of PROTOCOL.md §4.
pub mod close {
    pub const NORMAL: u16 = 1000;
    pub const GOING_AWAY: u16 = 1001;
    pub const PROTOCOL_ERROR: u16 = 1002;
    pub const UNSUPPORTED_DATA: u16 = 1003;
    pub const ABNORMAL: u16 = 1006;
    pub const POLICY: u16 = 1008;
    pub const TOO_BIG: u16 = 1009;
    pub const INTERNAL: u16 = 1011;
    pub const HEARTBEAT_TIMEOUT: u16 = 4000;
    pub const UNAUTHORIZED: u16 = 4401;
    pub const KICKED: u16 = 4403;
    pub const REPLACED: u16 = 4409;
}

/// Why a peer left a room (`user-left.reason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LeaveReason {
    Leave,
    Closed,
    Timeout,
    Kicked,
    Replaced,
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
