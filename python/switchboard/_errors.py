"""Typed exceptions: ``SwitchboardError`` and one subclass per protocol error code
(PROTOCOL.md section 4), plus configuration, transport, closed, queue and timeout
errors. The native module raises them through :func:`from_code`."""

from __future__ import annotations

from typing import Dict, Optional, Type


class SwitchboardError(Exception):
    """Base of every Switchboard error. ``code`` is the stable error code."""

    code: str = "switchboard"

    def __init__(self, message: str = "", code: Optional[str] = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code

    def __str__(self) -> str:
        return f"{self.code}: {self.message}" if self.message else self.code


class ProtocolError(SwitchboardError):
    """The server answered with a protocol ``error`` (``code`` is its code)."""

    code = "protocol"


class InvalidJsonError(ProtocolError):
    code = "invalid-json"


class InvalidMessageError(ProtocolError):
    code = "invalid-message"


class UnknownTypeError(ProtocolError):
    code = "unknown-type"


class UnauthorizedError(ProtocolError):
    code = "unauthorized"


class ForbiddenError(ProtocolError):
    code = "forbidden"


class NotInRoomError(ProtocolError):
    code = "not-in-room"


class PeerNotFoundError(ProtocolError):
    code = "peer-not-found"


class RoomFullError(ProtocolError):
    code = "room-full"


class UserIdTakenError(ProtocolError):
    code = "user-id-taken"


class RateLimitedError(ProtocolError):
    code = "rate-limited"


class MessageTooBigError(ProtocolError):
    code = "message-too-big"


class ResumeFailedError(ProtocolError):
    code = "resume-failed"


class InternalError(ProtocolError):
    code = "internal"


class ConfigError(SwitchboardError, ValueError):
    """An option is invalid (raised before any I/O)."""

    code = "config"


class TransportError(SwitchboardError, ConnectionError):
    """Connecting or binding failed, or the WebSocket layer failed (``code`` is
    ``io`` or ``websocket``)."""

    code = "io"


class ClosedError(SwitchboardError):
    """The client or server is closed."""

    code = "closed"


class QueueFullError(SwitchboardError):
    """A bounded queue is full; the message was not queued."""

    code = "queue-full"


class RequestTimeoutError(SwitchboardError, TimeoutError):
    """An operation did not complete in time."""

    code = "timeout"


PROTOCOL_ERRORS: Dict[str, Type[ProtocolError]] = {
    cls.code: cls
    for cls in (
        InvalidJsonError,
        InvalidMessageError,
        UnknownTypeError,
        UnauthorizedError,
        ForbiddenError,
        NotInRoomError,
        PeerNotFoundError,
        RoomFullError,
        UserIdTakenError,
        RateLimitedError,
        MessageTooBigError,
        ResumeFailedError,
        InternalError,
    )
}

_OTHER: Dict[str, Type[SwitchboardError]] = {
    "config": ConfigError,
    "io": TransportError,
    "websocket": TransportError,
    "closed": ClosedError,
    "queue-full": QueueFullError,
    "timeout": RequestTimeoutError,
}


def from_code(code: str, message: str) -> SwitchboardError:
    """The exception for an error code (an unknown code gives the base class)."""
    cls = PROTOCOL_ERRORS.get(code) or _OTHER.get(code)
    if cls is None:
        return SwitchboardError(message, code)
    return cls(message, code)
