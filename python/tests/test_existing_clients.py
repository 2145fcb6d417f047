"""Existing clients in route mode (FastAPI): a plain WebSocket client on
``/signaling/{room_id}/{user_id}`` whose first frame is an offer, the ``?room=``
chat client, app message types, a MessagePack client calling a JSON one, and
the host putting users into rooms and taking them out."""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any, AsyncIterator

import pytest
import websockets
from fastapi import FastAPI, WebSocket

import switchboard
from conftest import TIMEOUT, Uvicorn, next_event, ws_recv


def app_for(hub: switchboard.Hub) -> FastAPI:
    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with hub:
            yield

    app = FastAPI(lifespan=lifespan)

    # The FastAPI pattern: the room and the user in the path.
    @app.websocket("/signaling/{room_id}/{user_id}")
    async def signaling(websocket: WebSocket, room_id: str, user_id: str) -> None:
        await hub.serve(websocket)

    # The production Node pattern: the room in the query, on the root path.
    @app.websocket("/")
    async def root(websocket: WebSocket) -> None:
        await hub.serve(websocket)

    return app


async def test_rooms_from_the_path_and_the_query_with_app_types() -> None:
    hub = switchboard.Hub(rate_limit_rps=0, app_types=["hangup"])
    async with Uvicorn(app_for(hub)) as web:
        async with websockets.connect(web.url("/signaling/r1/alice")) as alice:
            assert (await ws_recv(alice, "room-info"))["roomId"] == "r1"
            async with websockets.connect(web.url("/signaling/r1/bob")) as bob:
                # Bob's first frame is an offer: he is in r1 before it is read.
                await bob.send(json.dumps({"type": "offer", "to": "alice", "sdp": {"type": "offer", "sdp": "v=0"}}))
                offer = await ws_recv(alice, "offer")
                assert offer["from"] == "bob" and offer["roomId"] == "r1"
                await bob.send(json.dumps({"type": "hangup", "to": "alice", "id": 1}))
                assert (await ws_recv(alice, "hangup"))["from"] == "bob"
                await bob.send(json.dumps({"type": "mute", "to": "alice"}))
                assert (await ws_recv(bob, "error"))["code"] == "unknown-type"
            async with websockets.connect(web.url("/?room=r1&userId=carol")) as carol:
                info = await ws_recv(carol, "room-info")
                assert info["users"] == ["alice"]
                await carol.send(json.dumps({"type": "chat", "content": "hi"}))
                chat = await ws_recv(alice, "chat")
                assert chat["from"] == "carol" and chat["content"] == "hi"
            with pytest.raises(websockets.exceptions.InvalidStatus) as refused:
                async with websockets.connect(web.url("/?room=")):
                    pass
            assert refused.value.response.status_code == 400


async def test_server_app_type_events_messagepack_and_host_room_control() -> None:
    async with switchboard.Server(listen="127.0.0.1:0", rate_limit_rps=0, app_types=["mute"]) as server:
        events = server.events()
        packed = await switchboard.Client.connect(server.url, user_id="mp", encoding="msgpack")
        await packed.join("r")
        async with websockets.connect(server.url, subprotocols=["webrtc-signaling"]) as raw:
            await raw.send(json.dumps({"type": "join", "roomId": "r", "userId": "js"}))
            await ws_recv(raw, "room-info")
            got: "asyncio.Future[switchboard.Event]" = asyncio.get_running_loop().create_future()
            packed.on("mute", lambda e: got.done() or got.set_result(e))
            await raw.send(json.dumps({"type": "mute", "to": "mp", "track": "audio"}))
            mute = await asyncio.wait_for(got, TIMEOUT)
            assert mute.type == "mute" and mute.sender == "js" and mute["track"] == "audio"
            relayed = await next_event(events, "mute")
            assert relayed["from"] == "js"
            await packed.send_offer("js", {"type": "offer", "sdp": "v=0"})
            assert (await ws_recv(raw, "offer"))["from"] == "mp"
            await packed.send_json({"type": "mute", "to": "js", "track": "video"})
            assert (await ws_recv(raw, "mute"))["track"] == "video"

            await server.join("js", "stage")
            assert (await ws_recv(raw, "room-info"))["roomId"] == "stage"
            await server.join("mp", "stage")
            assert (await ws_recv(raw, "user-joined"))["userId"] == "mp"
            await server.leave("mp", "stage")
            left = await ws_recv(raw, "user-left")
            assert left["roomId"] == "stage" and left["reason"] == "leave"
            with pytest.raises(switchboard.PeerNotFoundError):
                await server.join("ghost", "stage")
        await packed.close()
    with pytest.raises(ValueError):
        switchboard.Server(listen="127.0.0.1:0", app_types=["offer"])
    with pytest.raises(ValueError):
        await switchboard.Client.connect("ws://127.0.0.1:1/ws", encoding="cbor")
