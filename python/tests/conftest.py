"""Shared fixtures: a started server with limits loose enough for tests, helpers
that wait for events with generous timeouts, a real uvicorn server on port 0,
and a TCP proxy that can cut connections."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from typing import Any, AsyncIterator, Awaitable, Callable, Dict, List, Optional

import pytest
from fastapi import FastAPI, Response, WebSocket

import switchboard

TIMEOUT = 10.0


async def next_event(stream: switchboard.EventStream, type: str, timeout: float = TIMEOUT, **match: Any) -> switchboard.Event:
    """The next event of ``type`` (whose data has the ``match`` fields)."""

    async def find() -> switchboard.Event:
        async for event in stream:
            if event.type == type and all(event.data.get(k) == v for k, v in match.items()):
                return event
        raise AssertionError(f"stream ended before a {type!r} event")

    return await asyncio.wait_for(find(), timeout)


async def eventually(check: Callable[[], bool], timeout: float = TIMEOUT) -> None:
    """Waits until ``check()`` is true (polling; for state without an event)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.01)


async def ws_recv(ws: Any, type: str, timeout: float = TIMEOUT) -> Dict[str, Any]:
    """The next JSON message of ``type`` on a plain ``websockets`` connection."""

    async def find() -> Dict[str, Any]:
        while True:
            msg = json.loads(await ws.recv())
            if msg.get("type") == type:
                return msg

    return await asyncio.wait_for(find(), timeout)


LOOSE = dict(listen="127.0.0.1:0", rate_limit_rps=0, max_conns_per_ip=0)


@pytest.fixture
async def server() -> AsyncIterator[switchboard.Server]:
    async with switchboard.Server(**LOOSE) as s:
        yield s


@pytest.fixture
async def clients(server: switchboard.Server) -> AsyncIterator[Callable[..., Awaitable[switchboard.Client]]]:
    """Connects clients to ``server`` and closes them at the end."""
    made: List[switchboard.Client] = []

    async def connect(user_id: str, url: Optional[str] = None, **options: Any) -> switchboard.Client:
        c = await switchboard.Client.connect(url or server.url, user_id=user_id, **options)
        made.append(c)
        return c

    yield connect
    for c in made:
        await c.close()


class Uvicorn:
    """A real uvicorn server for an ASGI app, on 127.0.0.1 and a free port."""

    def __init__(self, app: Any, **config: Any) -> None:
        import uvicorn

        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        # The kit resolves trusted proxies itself: uvicorn must not rewrite the peer.
        config.setdefault("proxy_headers", False)
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on", **config))
        self.task: Optional["asyncio.Task[None]"] = None

    async def __aenter__(self) -> "Uvicorn":
        self.task = asyncio.ensure_future(self.server.serve(sockets=[self.sock]))
        await eventually(lambda: self.server.started or (self.task is not None and self.task.done()))
        assert self.server.started, "uvicorn did not start"
        return self

    async def __aexit__(self, *exc: Any) -> None:
        self.server.should_exit = True
        assert self.task is not None
        await asyncio.wait_for(self.task, TIMEOUT)
        self.sock.close()

    def url(self, path: str = "/ws") -> str:
        return f"ws://127.0.0.1:{self.port}{path}"


class Proxy:
    """A TCP proxy on 127.0.0.1 whose connections can be cut (both sides reset)."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.pairs: List[tuple] = []
        self.server: Optional[asyncio.AbstractServer] = None
        self.connections = 0
        # `frozen`: client bytes are swallowed (written, never delivered);
        # `refusing`: new connections are dropped at once.
        self.frozen = False
        self.refusing = False

    async def __aenter__(self) -> "Proxy":
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: Any) -> None:
        self.cut()
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()

    @property
    def port(self) -> int:
        assert self.server is not None
        return self.server.sockets[0].getsockname()[1]

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.refusing:
            writer.transport.abort()
            return
        self.connections += 1
        up_r, up_w = await asyncio.open_connection("127.0.0.1", self.target_port)
        self.pairs.append((writer, up_w))

        async def pipe(r: asyncio.StreamReader, w: asyncio.StreamWriter, upstream: bool) -> None:
            try:
                while data := await r.read(65536):
                    if upstream and self.frozen:
                        continue
                    w.write(data)
                    await w.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                w.close()

        await asyncio.gather(pipe(reader, up_w, True), pipe(up_r, writer, False))

    def cut(self) -> None:
        """Drops every open connection without a close frame."""
        for a, b in self.pairs:
            for w in (a, b):
                w.transport.abort()
        self.pairs.clear()


def make_app(hub: switchboard.Hub) -> FastAPI:
    """A FastAPI app whose lifespan runs ``hub`` and whose ``/ws`` serves it; also
    ``GET /rooms`` (the app's own HTTP routes on the same port)."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with hub:
            yield

    app = FastAPI(lifespan=lifespan)

    @app.websocket("/ws")
    async def signaling(websocket: WebSocket) -> None:
        await hub.serve(websocket)

    @app.get("/rooms")
    def rooms() -> Any:
        return [r.room_id for r in hub.rooms()]

    @app.get("/metrics")
    def metrics() -> Response:
        status, content_type, body = hub.endpoint("/metrics") or (404, "text/plain", "")
        return Response(body, status_code=status, media_type=content_type)

    return app
