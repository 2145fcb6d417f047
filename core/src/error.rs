//! The one error type of the crate, and the protocol error codes it maps to.

use std::fmt;

/// A protocol error code (PROTOCOL.md §4). Bindings map errors only through this.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorCode {
    /// A frame is not valid JSON (or MessagePack), or nests too deep.
    InvalidJson,
    /// A well-formed frame breaks the message rules: not an object, a missing
    /// or mistyped field, a duplicate key, a `resume` out of turn.
    InvalidMessage,
    /// The `type` is neither a protocol type nor one of the server's app types.
    UnknownType,
    /// Auth is on and the connection has not authenticated, or its token failed.
    Unauthorized,
    /// The identity or token does not allow the request (another `userId`,
    /// a room the token does not grant, too many rooms per session).
    Forbidden,
    /// A room-scoped message names a room the session is not in (or it is in none).
    NotInRoom,
    /// The `to` of a relayed message is not in the room (for host calls: no
    /// connected session carries that user).
    PeerNotFound,
    /// The room already holds its configured maximum of peers (`max_room_size`).
    RoomFull,
    /// The `userId` is already in that room on a connected session (or, for host
    /// calls, several connections carry it).
    UserIdTaken,
    /// The connection exceeded its message rate; the message was dropped.
    RateLimited,
    /// A message exceeds the size limit (a relayed one once `from` is added).
    MessageTooBig,
    /// A `resume` could not restore the session (unknown session or token, or a
    /// buffer that no longer covers `lastSeq + 1`); the client should join afresh.
    ResumeFailed,
    /// The server could not serve the request (an ended session, a cluster
    /// backplane that is unavailable).
    Internal,
}

impl ErrorCode {
    /// Every code, in PROTOCOL.md order (used by tests and bindings).
    pub const ALL: [ErrorCode; 13] = [
        ErrorCode::InvalidJson,
        ErrorCode::InvalidMessage,
        ErrorCode::UnknownType,
        ErrorCode::Unauthorized,
        ErrorCode::Forbidden,
        ErrorCode::NotInRoom,
        ErrorCode::PeerNotFound,
        ErrorCode::RoomFull,
        ErrorCode::UserIdTaken,
        ErrorCode::RateLimited,
        ErrorCode::MessageTooBig,
        ErrorCode::ResumeFailed,
        ErrorCode::Internal,
    ];

    /// The wire string, e.g. `"peer-not-found"`.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidJson => "invalid-json",
            ErrorCode::InvalidMessage => "invalid-message",
            ErrorCode::UnknownType => "unknown-type",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::NotInRoom => "not-in-room",
            ErrorCode::PeerNotFound => "peer-not-found",
            ErrorCode::RoomFull => "room-full",
            ErrorCode::UserIdTaken => "user-id-taken",
            ErrorCode::RateLimited => "rate-limited",
            ErrorCode::MessageTooBig => "message-too-big",
            ErrorCode::ResumeFailed => "resume-failed",
            ErrorCode::Internal => "internal",
        }
    }

    /// Parses a wire string back into a code.
    pub fn parse(s: &str) -> Option<ErrorCode> {
        ErrorCode::ALL.into_iter().find(|c| c.as_str() == s)
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Errors of the Switchboard API (server handle and client).
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The peer (server) answered with a protocol `error`.
    Protocol {
        /// The protocol error code (what `error.code` carries on the wire).
        code: ErrorCode,
        /// The human-readable explanation (`error.message`).
        message: String,
    },
    /// A configuration value is invalid (before any I/O).
    Config(String),
    /// Binding the listener or connecting failed.
    Io(std::io::Error),
    /// The WebSocket layer failed (handshake refused, connection lost, ...).
    WebSocket(String),
    /// The connection or the client/server is closed.
    Closed(String),
    /// A bounded queue is full; the message was not accepted.
    QueueFull(String),
    /// An operation did not complete in time.
    Timeout(String),
}

impl Error {
    /// Shorthand for a protocol error.
    pub fn protocol(code: ErrorCode, message: impl Into<String>) -> Self {
        Error::Protocol {
            code,
            message: message.into(),
        }
    }

    /// The stable code of this error: the protocol code for protocol errors,
    /// otherwise one of `config`, `io`, `websocket`, `closed`, `queue-full`, `timeout`.
    pub fn code(&self) -> &'static str {
        match self {
            Error::Protocol { code, .. } => code.as_str(),
            Error::Config(_) => "config",
            Error::Io(_) => "io",
            Error::WebSocket(_) => "websocket",
            Error::Closed(_) => "closed",
            Error::QueueFull(_) => "queue-full",
            Error::Timeout(_) => "timeout",
        }
    }

    /// The protocol error code, when this is a protocol error.
    pub fn protocol_code(&self) -> Option<ErrorCode> {
        match self {
            Error::Protocol { code, .. } => Some(*code),
            _ => None,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Protocol { code, message } => write!(f, "{code}: {message}"),
            Error::Config(m) => write!(f, "invalid configuration: {m}"),
            Error::Io(e) => write!(f, "i/o error: {e}"),
            Error::WebSocket(m) => write!(f, "websocket error: {m}"),
            Error::Closed(m) => write!(f, "closed: {m}"),
            Error::QueueFull(m) => write!(f, "queue full: {m}"),
            Error::Timeout(m) => write!(f, "timed out: {m}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io(e) => Some(e),
            _ => None,
        }
    }
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Error::Io(e)
    }
}

/// Result alias of the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip() {
        for c in ErrorCode::ALL {
            assert_eq!(ErrorCode::parse(c.as_str()), Some(c));
        }
        assert_eq!(ErrorCode::parse("nope"), None);
    }
}
