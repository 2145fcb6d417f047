"""``Client``: the core client (reconnect with backoff, heartbeat, resume,
exactly-once delivery while the server's buffer holds) in asyncio.

Every send queues the message at once and returns an awaitable of its reply
(the server's ``ack``, or its ``error`` as a typed exception). Awaiting is
optional; cancelling the await stops waiting and does not un-send."""

from __future__ import annotations

import asyncio
import datetime
from typing import Any, Awaitable, Callable, Dict, List, Mapping, Optional, Union, overload

from . import _native
from ._auth import TokenProvider
from ._events import EventStream, H, Handler, Handlers

Seconds = Union[float, int, datetime.timedelta]
Json = Any

# Every event but the server-only `disconnected`, and `pong`/`ack`, which the
# client consumes itself.
CLIENT_EVENTS = [k for k in _native.EVENT_TYPES if k not in ("disconnected", "pong", "ack")]

_UNSET: Any = object()


class Client:
    """A signaling client. Create it with ``await Client.connect(url, ...)``."""

    def __init__(self, native: _native.NativeClient) -> None:
        self._native = native
        self._handlers = Handlers("client", CLIENT_EVENTS)
        self._handlers.attach(native.subscribe)

    @classmethod
    async def connect(
        cls,
        url: str,
        *,
        user_id: Optional[str] = None,
        token: Optional[str] = None,
        token_provider: Optional[TokenProvider] = None,
        display_name: Optional[str] = None,
        metadata: Json = None,
        subprotocol: Optional[str] = _UNSET,
        encoding: Optional[str] = None,
        reconnect_base: Optional[Seconds] = None,
        reconnect_max: Optional[Seconds] = None,
        max_reconnect_attempts: Optional[int] = None,
        stable_after: Optional[Seconds] = None,
        heartbeat_interval: Optional[Seconds] = None,
        heartbeat_timeout: Optional[Seconds] = None,
        connect_timeout: Optional[Seconds] = None,
        queue_max_messages: Optional[int] = None,
        queue_max_bytes: Optional[int] = None,
        max_in_flight: Optional[int] = None,
        max_message_bytes: Optional[int] = None,
        event_capacity: Optional[int] = None,
    ) -> "Client":
        """Connects and resolves once the server's ``connected`` arrived. The
        first attempt is not retried (its error is raised: ``TransportError``,
        ``RequestTimeoutError``, ``UnauthorizedError``); later losses reconnect
        in the background (``max_reconnect_attempts``: None = forever)."""
        options: Dict[str, Any] = {
            k: v
            for k, v in locals().items()
            if k not in ("cls", "url", "subprotocol", "__class__") and v is not None
        }
        if subprotocol is not _UNSET:
            options["subprotocol"] = subprotocol
        loop = asyncio.get_running_loop()
        native = await _native.connect_client(url, loop, **options)
        return cls(native)

    # -- rooms ----------------------------------------------------------------

    def join(self, room_id: str) -> "Awaitable[Dict[str, Json]]":
        """Joins a room; resolves with the ``room-info`` message (a dict)."""
        return self._native.join(room_id)

    def leave(self, room_id: str) -> "Awaitable[None]":
        return self._native.leave(room_id)

    def leave_all(self) -> "Awaitable[None]":
        return self._native.leave_all()

    # -- signaling ------------------------------------------------------------

    def send_offer(self, to: str, sdp: Json) -> "Awaitable[None]":
        return self._native.send_offer(to, sdp)

    def send_answer(self, to: str, sdp: Json) -> "Awaitable[None]":
        return self._native.send_answer(to, sdp)

    def send_candidate(self, to: str, candidate: Json) -> "Awaitable[None]":
        return self._native.send_candidate(to, candidate)

    def send(self, data: Json, to: Optional[str] = None) -> "Awaitable[None]":
        """Application data (``message``) to ``to``, or to every other peer."""
        return self._native.send(data, to)

    def chat(self, content: str) -> "Awaitable[None]":
        """A ``chat`` to the whole room, sender included."""
        return self._native.chat(content)

    def send_json(self, message: Mapping[str, Json]) -> "Awaitable[Optional[Dict[str, Json]]]":
        """Any client message as a dict with its ``type`` (e.g. with an explicit
        ``roomId``); resolves with the ``room-info`` for a join, else None."""
        return self._native.send_json(message)

    # -- events ---------------------------------------------------------------

    @overload
    def on(self, type: str, handler: None = None) -> Callable[[H], H]: ...
    @overload
    def on(self, type: str, handler: H) -> H: ...

    def on(self, type: str, handler: Optional[H] = None) -> Any:
        """Registers a handler (sync or async) for an event type; exceptions are
        logged. Handlers see events from the moment they are registered."""
        return self._handlers.on(type, handler)

    def off(self, type: str, handler: Optional[Handler] = None) -> None:
        self._handlers.off(type, handler)

    def events(self) -> EventStream:
        """An async iterator of the client's events. The first call gets every
        event since connect; later calls, events from then on. Ends after
        ``closed``."""
        return EventStream(self._native.subscribe())

    # -- state ----------------------------------------------------------------

    @property
    def session_id(self) -> Optional[str]:
        return self._native.session_id

    @property
    def connected(self) -> bool:
        """Whether a session is established right now."""
        return self._native.is_connected

    @property
    def closed(self) -> bool:
        return self._native.is_closed

    @property
    def pending(self) -> int:
        """Messages queued or awaiting their acknowledgement."""
        return self._native.pending

    def rooms(self) -> List[str]:
        """Rooms the client is in."""
        return self._native.rooms()

    async def close(self) -> None:
        """Closes for good: flushes what is queued (up to 1 s), closes with 1000,
        fails pending replies with ``ClosedError``. Idempotent."""
        await self._native.close()
        await self._handlers.stop(1.0)

    async def __aenter__(self) -> "Client":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()
