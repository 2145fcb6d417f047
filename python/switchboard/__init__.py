"""Switchboard: WebRTC signaling done once in Rust, for asyncio.

``Server`` runs the signaling server on its own port; ``Hub`` is the same hub
served from a FastAPI/Starlette WebSocket route (``await hub.serve(websocket)``);
``Client`` joins rooms and survives the network (reconnect, resume). Event names
are the protocol's ``type`` strings (``user-joined``, ``offer``, ...)."""

from ._errors import (
    ClosedError,
    ConfigError,
    ForbiddenError,
    InternalError,
    InvalidJsonError,
    InvalidMessageError,
    MessageTooBigError,
    NotInRoomError,
    PeerNotFoundError,
    ProtocolError,
    QueueFullError,
    RateLimitedError,
    RequestTimeoutError,
    ResumeFailedError,
    RoomFullError,
    SwitchboardError,
    TransportError,
    UnauthorizedError,
    UnknownTypeError,
    UserIdTakenError,
)
from ._auth import AuthRequest, Identity
from ._native import Event, __version__
from ._events import EventStream
from ._server import Hub, PeerInfo, RoomInfo, Server
from ._client import Client

__all__ = [
    "AuthRequest",
    "Client",
    "ClosedError",
    "ConfigError",
    "Event",
    "EventStream",
    "ForbiddenError",
    "Hub",
    "Identity",
    "InternalError",
    "InvalidJsonError",
    "InvalidMessageError",
    "MessageTooBigError",
    "NotInRoomError",
    "PeerInfo",
    "PeerNotFoundError",
    "ProtocolError",
    "QueueFullError",
    "RateLimitedError",
    "RequestTimeoutError",
    "ResumeFailedError",
    "RoomFullError",
    "Server",
    "SwitchboardError",
    "TransportError",
    "UnauthorizedError",
    "UnknownTypeError",
    "UserIdTakenError",
    "__version__",
]
