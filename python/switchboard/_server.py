"""``Server`` (the Rust server on its own port) and ``Hub`` (the same hub without
a listener, served from a FastAPI/Starlette route with ``await hub.serve(ws)``).
Both take every option of the Rust ``ServerBuilder``; a server can serve routes
too, sharing rooms between its port and the app's."""

from __future__ import annotations

import asyncio
import datetime
import os
from dataclasses import dataclass
from typing import (
    Any,
    Callable,
    Dict,
    List,
    Mapping,
    Optional,
    Sequence,
    Type,
    TypeVar,
    Union,
    overload,
)

from . import _native, _route
from ._auth import AuthHook
from ._errors import ClosedError, ConfigError
from ._events import EventStream, H, Handler, Handlers

Seconds = Union[float, int, datetime.timedelta]
Json = Any
T = TypeVar("T", bound="Hub")

SERVER_EVENTS = [
    "connected",
    "disconnected",
    "user-joined",
    "user-left",
    "offer",
    "answer",
    "candidate",
    "message",
    "chat",
    "resumed",
]


@dataclass(frozen=True)
class PeerInfo:
    """One peer of a room."""

    user_id: str
    session_id: str
    display_name: Optional[str]
    metadata: Json
    connected: bool
    """False while its connection is lost and the session may still resume."""


@dataclass(frozen=True)
class RoomInfo:
    """A room and its peers, in join order."""

    room_id: str
    peers: List[PeerInfo]


def _peer(p: Dict[str, Any]) -> PeerInfo:
    return PeerInfo(
        user_id=p["userId"],
        session_id=p["sessionId"],
        display_name=p.get("displayName"),
        metadata=p.get("metadata"),
        connected=p["connected"],
    )


class Hub:
    """A signaling hub without a listener of its own: serve it from a route of
    your web framework with :meth:`serve`. ``Server`` adds a listener.

    Options (keyword-only, all optional; durations in seconds or ``timedelta``)
    are those of the Rust ``ServerBuilder`` and the ``switchboard`` CLI; see the
    README's Python section."""

    _kind = "hub"

    def __init__(
        self,
        *,
        listen: Optional[str] = None,
        path: Optional[str] = None,
        max_message_bytes: Optional[int] = None,
        max_conns: Optional[int] = None,
        max_conns_per_ip: Optional[int] = None,
        max_pending_per_ip: Optional[int] = None,
        max_pending: Optional[int] = None,
        conn_rate_per_ip: Optional[int] = None,
        conn_burst_per_ip: Optional[int] = None,
        ipv6_prefix: Optional[int] = None,
        max_room_size: Optional[int] = None,
        max_rooms_per_session: Optional[int] = None,
        max_metadata_bytes: Optional[int] = None,
        max_away_per_ip: Optional[int] = None,
        max_away_per_user: Optional[int] = None,
        max_away_sessions: Optional[int] = None,
        away_replay_budget_bytes: Optional[int] = None,
        rate_limit_burst: Optional[int] = None,
        rate_limit_rps: Optional[int] = None,
        heartbeat_interval: Optional[Seconds] = None,
        heartbeat_timeout: Optional[Seconds] = None,
        resume_window: Optional[Seconds] = None,
        replay_buffer_messages: Optional[int] = None,
        replay_buffer_bytes: Optional[int] = None,
        outbound_queue_bytes: Optional[int] = None,
        outbound_budget_bytes: Optional[int] = None,
        allowed_origins: Optional[Sequence[str]] = None,
        handshake_timeout: Optional[Seconds] = None,
        http_write_timeout: Optional[Seconds] = None,
        drain_timeout: Optional[Seconds] = None,
        drain_retry_after: Optional[Seconds] = None,
        event_buffer: Optional[int] = None,
        auth_tokens: Optional[Mapping[str, str]] = None,
        jwt_secret: Optional[Union[str, bytes]] = None,
        jwt_public_key: Optional[Union[str, bytes, "os.PathLike[str]"]] = None,
        jwt_audience: Optional[str] = None,
        jwt_issuer: Optional[str] = None,
        jwt_leeway: Optional[Seconds] = None,
        authenticate: Optional[AuthHook] = None,
        auth_timeout: Optional[Seconds] = None,
        tls_cert: Optional[Union[str, "os.PathLike[str]"]] = None,
        tls_key: Optional[Union[str, "os.PathLike[str]"]] = None,
        trusted_proxies: Optional[Sequence[str]] = None,
        turn_secret: Optional[str] = None,
        turn_urls: Optional[Sequence[str]] = None,
        turn_ttl: Optional[Seconds] = None,
        redis_url: Optional[str] = None,
        redis_ca_cert: Optional[Union[str, "os.PathLike[str]"]] = None,
        demo: Optional[bool] = None,
        serve_client: Optional[bool] = None,
        app_types: Optional[Sequence[str]] = None,
        api_key: Optional[str] = None,
    ) -> None:
        given = {k: v for k, v in locals().items() if k not in ("self", "__class__") and v is not None}
        if self._kind == "hub":
            # Options of a listener: a route-only hub can not honour them.
            listener_only = ("listen", "path", "demo", "serve_client", "tls_cert", "tls_key", "max_pending_per_ip",
                             "max_pending", "http_write_timeout")
            unusable = [k for k in listener_only if k in given]
            if unusable:
                raise ConfigError(
                    f"{', '.join(unusable)}: a Hub has no listener of its own (the app's route and"
                    " server decide these); use Server for its own port"
                )
        if isinstance(given.get("auth_tokens"), Mapping):
            given["auth_tokens"] = dict(given["auth_tokens"])
        for name in ("allowed_origins", "trusted_proxies", "turn_urls", "app_types"):
            if name in given and not isinstance(given[name], str):
                given[name] = list(given[name])
        self._options = _native.ServerOptions(**given)
        self._native: Optional[_native.NativeHub] = None
        self._handlers = Handlers(self._kind, SERVER_EVENTS)
        self._stopping: Optional["asyncio.Future[None]"] = None

    # -- lifecycle ------------------------------------------------------------

    async def _start(self: T) -> T:
        if self._native is not None:
            return self
        loop = asyncio.get_running_loop()
        self._native = await self._create(loop)
        self._handlers.attach(self._native.subscribe)
        return self

    async def _create(self, loop: asyncio.AbstractEventLoop) -> _native.NativeHub:
        return _native.create_hub(self._options, loop)

    @classmethod
    async def start(cls: Type[T], **options: Any) -> T:
        """Creates and starts one (same options as the constructor)."""
        return await cls(**options)._start()

    async def __aenter__(self: T) -> T:
        return await self._start()

    async def __aexit__(self, *exc: Any) -> None:
        await self.stop()

    async def stop(self) -> None:
        """Graceful drain: every client gets ``draining`` and a 1001 close (up to
        ``drain_timeout``), handlers finish, event streams end. Idempotent."""
        if self._native is None:
            return
        if self._stopping is None:
            self._stopping = asyncio.ensure_future(self._stop())
        await asyncio.shield(self._stopping)

    async def _stop(self) -> None:
        assert self._native is not None
        await self._native.shutdown()
        await self._handlers.stop(self._options.drain_timeout)

    def _hub(self) -> _native.NativeHub:
        if self._native is None:
            raise ClosedError(f"the {self._kind} is not started (use `await {type(self).__name__}.start(...)` or `async with`)", "closed")
        if self._stopping is not None:
            raise ClosedError(f"the {self._kind} is stopped", "closed")
        return self._native

    @property
    def running(self) -> bool:
        """True between start and stop."""
        return self._native is not None and self._stopping is None

    # -- events ---------------------------------------------------------------

    @overload
    def on(self, type: str, handler: None = None) -> Callable[[H], H]: ...
    @overload
    def on(self, type: str, handler: H) -> H: ...

    def on(self, type: str, handler: Optional[H] = None) -> Any:
        """Registers a handler (sync or async) for an event type, as a decorator
        or directly. Handlers run on the event loop; an exception is logged and
        never stops the server. Async handlers run concurrently as tasks."""
        return self._handlers.on(type, handler)

    def off(self, type: str, handler: Optional[Handler] = None) -> None:
        """Removes one handler of ``type``, or all of them."""
        self._handlers.off(type, handler)

    def events(self) -> EventStream:
        """A new async iterator of every server event from now on (bounded by
        ``event_buffer``; a reader that falls behind loses the oldest)."""
        return EventStream(self._hub().subscribe())

    # -- actions --------------------------------------------------------------

    async def send(self, room_id: str, user_id: str, message: Mapping[str, Json]) -> None:
        """Sends a message (a dict with a string ``type``) to one peer of a room.
        Raises ``NotInRoomError``/``PeerNotFoundError``/``InvalidMessageError``."""
        await self._hub().send(room_id, user_id, message)

    async def broadcast(self, room_id: str, message: Mapping[str, Json]) -> int:
        """Sends a message to every peer of a room; returns how many got it."""
        return await self._hub().broadcast(room_id, message)

    async def kick(self, room_id: str, user_id: str) -> None:
        """Removes a peer: the others get ``user-left`` (``kicked``), its
        connection closes with 4403."""
        await self._hub().kick(room_id, user_id)

    async def join(self, user_id: str, room_id: str) -> None:
        """Puts a connected user into a room, as if it had sent ``join``
        (``room-info`` to it, ``user-joined`` to the others). Raises
        ``PeerNotFoundError`` when no connection carries ``user_id``, and the
        join's own errors (``RoomFullError``, ``UserIdTakenError``, …)."""
        await self._hub().join(user_id, room_id)

    async def leave(self, user_id: str, room_id: str) -> None:
        """Takes a user out of a room (the others get ``user-left`` with
        ``leave``); its connection stays open."""
        await self._hub().leave(user_id, room_id)

    def rooms(self) -> List[RoomInfo]:
        """Every room with its peers."""
        return [
            RoomInfo(room_id=r["roomId"], peers=[_peer(p) for p in r["peers"]])
            for r in self._hub().rooms()
        ]

    def peers(self, room_id: str) -> Optional[List[PeerInfo]]:
        """The peers of a room, or None when the room does not exist."""
        peers = self._hub().peers(room_id)
        return None if peers is None else [_peer(p) for p in peers]

    @property
    def connection_count(self) -> int:
        """Open WebSocket connections (own port and routes)."""
        return self._native.connection_count() if self._native is not None else 0

    def endpoint(self, path: str) -> Optional["tuple[int, str, str]"]:
        """The core's plain HTTP endpoints for the app to mount: ``/metrics``
        (OpenMetrics, refused handshakes counted), ``/health``, ``/ready``.
        Returns ``(status, content_type, body)``, or ``None`` for another path."""
        return self._hub().endpoint(path)

    def api(
        self,
        method: str,
        path: str,
        query: Optional[str] = None,
        authorization: Optional[str] = None,
        body: bytes = b"",
    ) -> "tuple[int, str, str]":
        """The operator API (``/api/v1/…``, docs/API.md; on with ``api_key``) for
        the app to mount: pass the request's method, path, query string,
        ``Authorization`` header and body; returns ``(status, content_type, body)``.
        The admin page comes from :meth:`endpoint` (``/admin``, ``/admin.js``)."""
        return self._hub().api(method, path, query, authorization, body)

    async def serve(self, websocket: Any) -> None:
        """Serves one Starlette/FastAPI WebSocket (not yet accepted) until it
        closes: ``@app.websocket("/ws") async def ws(w): await hub.serve(w)``."""
        if not self.running:
            # Before start or after stop, as while draining: 503, no WebSocket.
            await _route.deny(websocket, 503, [])
            return
        await _route.serve(self._hub(), self._options.heartbeat_timeout, websocket)


class Server(Hub):
    """The Switchboard server on its own port (``listen``, ``path``), plus
    everything a :class:`Hub` does.

    ``server = await Server.start(listen="127.0.0.1:0")`` or
    ``async with Server(listen=...) as server:``."""

    _kind = "server"

    async def _create(self, loop: asyncio.AbstractEventLoop) -> _native.NativeHub:
        return await _native.start_server(self._options, loop)

    @property
    def url(self) -> str:
        """``ws://HOST:PORT/PATH`` of the listener."""
        url = self._hub_any().url
        assert url is not None
        return url

    @property
    def address(self) -> "tuple[str, int]":
        """The bound ``(host, port)``."""
        addr = self._hub_any().address
        assert addr is not None
        return addr

    def _hub_any(self) -> _native.NativeHub:
        if self._native is None:
            raise ClosedError("the server is not started", "closed")
        return self._native
