"""The operator API and the admin page mounted in a FastAPI app (route mode):
``Hub.api`` answers as the binary does (docs/API.md)."""

from __future__ import annotations

import contextlib
import json
from typing import AsyncIterator

import httpx
import websockets
from fastapi import FastAPI, Request, Response, WebSocket

import switchboard
from conftest import Uvicorn, ws_recv

KEY = "python-api-key-0123456789"


def app_for(hub: switchboard.Hub) -> FastAPI:
    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with hub:
            yield

    app = FastAPI(lifespan=lifespan)

    @app.websocket("/ws")
    async def signaling(websocket: WebSocket) -> None:
        await hub.serve(websocket)

    @app.api_route("/api/v1/{rest:path}", methods=["GET", "POST"])
    async def api(request: Request) -> Response:
        # Bound what is read; the kit refuses anything over the message limit anyway.
        if int(request.headers.get("content-length") or 0) > 70_000:
            return Response(status_code=413)
        status, content_type, body = hub.api(
            request.method,
            request.url.path,
            request.url.query or None,
            request.headers.get("authorization"),
            await request.body(),
        )
        return Response(body, status_code=status, media_type=content_type)

    @app.get("/admin")
    @app.get("/admin.js")
    def admin(request: Request) -> Response:
        status, content_type, body = hub.endpoint(request.url.path) or (404, "text/plain", "")
        return Response(body, status_code=status, media_type=content_type)

    return app


async def test_the_api_in_route_mode() -> None:
    hub = switchboard.Hub(rate_limit_rps=0, api_key=KEY)
    async with Uvicorn(app_for(hub)) as web:
        base = f"http://127.0.0.1:{web.port}"
        auth = {"authorization": f"Bearer {KEY}"}
        async with websockets.connect(web.url("/ws")) as alice, httpx.AsyncClient() as http:
            await alice.send(json.dumps({"type": "join", "roomId": "ops", "userId": "alice"}))
            await ws_recv(alice, "room-info")
            assert (await http.get(f"{base}/api/v1/info")).status_code == 401
            info = (await http.get(f"{base}/api/v1/info", headers=auth)).json()
            assert info["connections"] == 1 and info["rooms"] == 1
            room = (await http.get(f"{base}/api/v1/rooms/ops", headers=auth)).json()
            assert [m["userId"] for m in room["members"]] == ["alice"]
            sent = await http.post(f"{base}/api/v1/rooms/ops/broadcast", headers=auth, content=b'{"type":"notice","n":7}')
            assert sent.json() == {"delivered": 1}
            assert (await ws_recv(alice, "notice"))["n"] == 7
            bad = await http.post(f"{base}/api/v1/rooms/ops/broadcast", headers=auth, content=b"[1]")
            assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid-message"
            assert (await http.get(f"{base}/admin")).status_code == 200
            kicked = await http.post(f"{base}/api/v1/rooms/ops/users/alice/kick", headers=auth)
            assert kicked.status_code == 200
            try:
                await alice.recv()
                await alice.recv()
            except websockets.exceptions.ConnectionClosed as closed:
                assert closed.rcvd is not None and closed.rcvd.code == 4403
            else:
                raise AssertionError("the kicked client was not closed")
