"""Every exception class is reachable, with its ``.code``: protocol errors through
the real server (client replies and host calls), the rest through real failures
(closed port, silent server, full queue, closed client)."""

from __future__ import annotations

import asyncio
import json

import pytest
import websockets

import switchboard
from switchboard import _errors
from conftest import LOOSE, TIMEOUT, eventually, next_event, ws_recv


def test_every_protocol_code_has_its_class() -> None:
    codes = [
        "invalid-json", "invalid-message", "unknown-type", "unauthorized", "forbidden",
        "not-in-room", "peer-not-found", "room-full", "user-id-taken", "rate-limited",
        "message-too-big", "resume-failed", "internal",
    ]
    assert sorted(_errors.PROTOCOL_ERRORS) == sorted(codes)
    for code in codes:
        err = _errors.from_code(code, "why")
        assert isinstance(err, switchboard.ProtocolError) and isinstance(err, switchboard.SwitchboardError)
        assert err.code == code and err.message == "why" and type(err).code == code
        # Exported under its name from the package.
        assert getattr(switchboard, type(err).__name__) is type(err)
    assert isinstance(_errors.from_code("io", "x"), switchboard.TransportError)
    assert isinstance(_errors.from_code("websocket", "x"), ConnectionError)
    assert isinstance(_errors.from_code("timeout", "x"), TimeoutError)
    assert type(_errors.from_code("something-new", "x")) is switchboard.SwitchboardError


async def test_protocol_errors_from_the_server(clients) -> None:
    a = await clients("a")
    with pytest.raises(switchboard.NotInRoomError) as e:
        await a.send_offer("b", {"sdp": "x"})
    assert e.value.code == "not-in-room" and "join" in e.value.message
    await a.join("r")
    with pytest.raises(switchboard.PeerNotFoundError):
        await a.send_offer("ghost", {"sdp": "x"})
    with pytest.raises(switchboard.InvalidMessageError):
        await a.send_json({"type": "join"})  # no roomId
    with pytest.raises(switchboard.MessageTooBigError):
        await a.send({"blob": "x" * 70_000})
    twin = await clients("a")
    with pytest.raises(switchboard.UserIdTakenError):
        await twin.join("r")


async def test_forbidden_and_room_full() -> None:
    async with switchboard.Server(**LOOSE, max_rooms_per_session=1, max_room_size=1) as server:
        a = await switchboard.Client.connect(server.url, user_id="a")
        b = await switchboard.Client.connect(server.url, user_id="b")
        try:
            await a.join("one")
            with pytest.raises(switchboard.ForbiddenError):
                await a.join("two")
            with pytest.raises(switchboard.RoomFullError) as e:
                await b.join("one")
            assert e.value.code == "room-full"
        finally:
            await a.close()
            await b.close()


async def test_wire_level_error_codes(server) -> None:
    """Codes a well-behaved client never provokes, checked on the wire."""
    async with websockets.connect(server.url) as ws:
        await ws_recv(ws, "connected")
        await ws.send("{not json")
        assert (await ws_recv(ws, "error"))["code"] == "invalid-json"
        await ws.send(json.dumps({"type": "teleport", "id": 7}))
        err = await ws_recv(ws, "error")
        assert err["code"] == "unknown-type" and err["ref"] == 7
    async with switchboard.Server(listen="127.0.0.1:0", rate_limit_rps=1, rate_limit_burst=2) as limited:
        async with websockets.connect(limited.url) as ws:
            await ws_recv(ws, "connected")
            for _ in range(5):
                await ws.send(json.dumps({"type": "ping"}))
            assert (await ws_recv(ws, "error"))["code"] == "rate-limited"


async def test_transport_error_on_a_closed_port() -> None:
    sock_server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = sock_server.sockets[0].getsockname()[1]
    sock_server.close()
    await sock_server.wait_closed()
    with pytest.raises(switchboard.TransportError) as e:
        await switchboard.Client.connect(f"ws://127.0.0.1:{port}/ws", user_id="x")
    assert e.value.code in ("io", "websocket")
    assert isinstance(e.value, ConnectionError)


async def test_timeout_error_on_a_silent_server() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # never answers the upgrade
        writer.close()

    srv = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = srv.sockets[0].getsockname()[1]
    try:
        with pytest.raises(switchboard.RequestTimeoutError) as e:
            await switchboard.Client.connect(f"ws://127.0.0.1:{port}/ws", connect_timeout=0.3)
        assert e.value.code == "timeout"
    finally:
        srv.close()
        await srv.wait_closed()


async def test_config_error_from_the_client() -> None:
    with pytest.raises(switchboard.ConfigError):
        await switchboard.Client.connect("http://127.0.0.1:1/ws")
    with pytest.raises(switchboard.ConfigError):
        await switchboard.Client.connect("ws://127.0.0.1:1/ws", max_in_flight=0)
    with pytest.raises(TypeError):
        await switchboard.Client.connect("ws://127.0.0.1:1/ws", metadata={"bad": {1, 2}})


async def test_closed_and_queue_full() -> None:
    server = await switchboard.Server.start(**LOOSE)
    c = await switchboard.Client.connect(
        server.url, user_id="q", queue_max_messages=2, reconnect_base=30, reconnect_max=30
    )
    await c.join("r")
    await server.stop()
    await eventually(lambda: not c.connected)
    # Offline: the outbox takes two messages, the third is refused at once.
    first = asyncio.ensure_future(c.chat("one"))
    second = asyncio.ensure_future(c.chat("two"))
    with pytest.raises(switchboard.QueueFullError) as e:
        await c.chat("three")
    assert e.value.code == "queue-full"
    await c.close()
    for pending in (first, second):
        with pytest.raises(switchboard.ClosedError):
            await pending
    with pytest.raises(switchboard.ClosedError) as closed:
        await c.join("r")
    assert closed.value.code == "closed"
