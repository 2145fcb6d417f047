"""FastAPI route mode under a real uvicorn server, with real WebSocket clients:
the protocol behaves as on the server's own port (join, relay, close codes,
admission), and a server can serve its port and a route over one hub."""

from __future__ import annotations

import asyncio
import json

import pytest
import websockets

import switchboard
from conftest import make_app, TIMEOUT, Uvicorn, eventually, next_event, ws_recv


async def test_route_mode_relays_between_rust_and_plain_clients() -> None:
    hub = switchboard.Hub(rate_limit_rps=0, max_conns_per_ip=0)
    joined: list = []
    hub.on("user-joined", lambda e: joined.append(e.user_id))
    async with Uvicorn(make_app(hub)) as web:
        alice = await switchboard.Client.connect(web.url(), user_id="alice")
        ae = alice.events()
        info = await alice.join("room")
        assert info["roomId"] == "room"
        async with websockets.connect(web.url(), subprotocols=["webrtc-signaling"]) as ws:
            assert ws.subprotocol == "webrtc-signaling"
            connected = await ws_recv(ws, "connected")
            assert connected["sessionId"] and connected["resumeToken"]
            await ws.send(json.dumps({"type": "join", "roomId": "room", "userId": "web", "id": 1}))
            assert (await ws_recv(ws, "room-info"))["users"] == ["alice"]
            assert (await ws_recv(ws, "ack"))["id"] == 1
            await next_event(ae, "user-joined", userId="web")

            await alice.send_offer("web", {"type": "offer", "sdp": "route"})
            offer = await ws_recv(ws, "offer")
            assert offer["from"] == "alice" and offer["seq"] >= 1

            await ws.send(json.dumps({"type": "candidate", "to": "alice", "candidate": {"c": 1}}))
            assert (await next_event(ae, "candidate"))["candidate"] == {"c": 1}

            await ws.send(json.dumps({"type": "offer", "to": "ghost", "sdp": {}, "id": "x"}))
            err = await ws_recv(ws, "error")
            assert err["code"] == "peer-not-found" and err["ref"] == "x"

            # The app's own HTTP routes share the port.
            import httpx

            async with httpx.AsyncClient() as http:
                r = await http.get(f"http://127.0.0.1:{web.port}/rooms")
                assert r.json() == ["room"]

            await hub.kick("room", "web")
            with pytest.raises(websockets.ConnectionClosed) as closed:
                while True:
                    await asyncio.wait_for(ws.recv(), TIMEOUT)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 4403
        left = await next_event(ae, "user-left", userId="web")
        assert left["reason"] == "kicked"
        await alice.close()
        await eventually(lambda: hub.connection_count == 0)
    assert "alice" in joined and "web" in joined
    assert not hub.running


async def test_route_mode_close_codes_and_limits() -> None:
    hub = switchboard.Hub(
        rate_limit_rps=0, max_message_bytes=1024, allowed_origins=["https://app.example"], max_conns_per_ip=2
    )
    async with Uvicorn(make_app(hub)) as web:
        # Too big: 1009, as on the server's own port.
        async with websockets.connect(web.url()) as ws:
            await ws_recv(ws, "connected")
            await ws.send(json.dumps({"type": "chat", "content": "x" * 2000}))
            with pytest.raises(websockets.ConnectionClosed) as closed:
                while True:
                    await asyncio.wait_for(ws.recv(), TIMEOUT)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009
        # Binary frame: 1003.
        async with websockets.connect(web.url()) as ws:
            await ws_recv(ws, "connected")
            await ws.send(b"\x00\x01")
            with pytest.raises(websockets.ConnectionClosed) as closed:
                while True:
                    await asyncio.wait_for(ws.recv(), TIMEOUT)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1003
        # A foreign origin is refused before the upgrade.
        with pytest.raises(websockets.InvalidStatus) as refused:
            await websockets.connect(web.url(), origin="https://evil.example")
        assert refused.value.response.status_code in (403,)
        # The allowed origin gets in; the per-IP limit (2) refuses the third.
        async with websockets.connect(web.url(), origin="https://app.example") as w1:
            async with websockets.connect(web.url()) as w2:
                await ws_recv(w1, "connected")
                await ws_recv(w2, "connected")
                with pytest.raises(websockets.InvalidStatus) as limited:
                    await websockets.connect(web.url())
                assert limited.value.response.status_code in (429, 403)


async def test_client_close_code_passes_through_and_cut_keeps_session() -> None:
    hub = switchboard.Hub(rate_limit_rps=0, max_conns_per_ip=0, resume_window=30)
    async with Uvicorn(make_app(hub)) as web:
        watcher = await switchboard.Client.connect(web.url(), user_id="watcher")
        we = watcher.events()
        await watcher.join("r")
        # A clean close (1000) ends membership at once: user-left "closed".
        async with websockets.connect(web.url()) as ws:
            await ws_recv(ws, "connected")
            await ws.send(json.dumps({"type": "join", "roomId": "r", "userId": "clean"}))
            await ws_recv(ws, "room-info")
        assert (await next_event(we, "user-left", userId="clean"))["reason"] == "closed"
        # A cut (no close frame) leaves the session away and resumable.
        ws = await websockets.connect(web.url())
        connected = await ws_recv(ws, "connected")
        await ws.send(json.dumps({"type": "join", "roomId": "r", "userId": "cut"}))
        await ws_recv(ws, "room-info")
        ws.transport.abort()
        await eventually(lambda: any(not p.connected for p in (hub.peers("r") or [])))
        await watcher.send_offer("cut", {"sdp": "while away"})  # buffered for the away peer
        async with websockets.connect(web.url()) as again:
            await ws_recv(again, "connected")
            await again.send(json.dumps({
                "type": "resume", "sessionId": connected["sessionId"],
                "resumeToken": connected["resumeToken"], "lastSeq": 1,
            }))
            resumed = await ws_recv(again, "resumed")
            assert resumed["replayed"] >= 1
            offer = await ws_recv(again, "offer")
            assert offer["sdp"] == {"sdp": "while away"} and offer["from"] == "watcher"
        await watcher.close()


async def test_server_port_and_route_share_one_hub(server) -> None:
    async with Uvicorn(make_app(server)) as web:  # the server's lifespan is a no-op here
        a = await switchboard.Client.connect(server.url, user_id="port-user")
        b = await switchboard.Client.connect(web.url(), user_id="route-user")
        be = b.events()
        await a.join("shared")
        info = await b.join("shared")
        assert info["users"] == ["port-user"]
        await a.send_offer("route-user", {"sdp": "across"})
        assert (await next_event(be, "offer")).sender == "port-user"
        await a.close()
        await b.close()


async def test_hub_stop_drains_route_connections() -> None:
    hub = switchboard.Hub(rate_limit_rps=0, max_conns_per_ip=0)
    app = make_app(hub)
    async with Uvicorn(app) as web:
        async with websockets.connect(web.url()) as ws:
            await ws_recv(ws, "connected")
            await hub.stop()
            assert (await ws_recv(ws, "draining"))["retryAfterMs"] > 0
            with pytest.raises(websockets.ConnectionClosed) as closed:
                while True:
                    await asyncio.wait_for(ws.recv(), TIMEOUT)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1001
        assert hub.connection_count == 0
        with pytest.raises(switchboard.ClosedError):
            hub.rooms()
        # A stopped hub refuses new WebSockets before the upgrade.
        with pytest.raises(websockets.InvalidStatus) as refused:
            await websockets.connect(web.url())
        assert refused.value.response.status_code in (503, 403)
