"""Each example in python/examples, exercised as a user would: the FastAPI apps
under a real uvicorn server, the bot against a real server."""

from __future__ import annotations

import asyncio
import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType

import httpx
import pytest
import websockets

import switchboard
from conftest import LOOSE, TIMEOUT, Uvicorn, eventually, next_event

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


async def test_fastapi_lifespan_example(monkeypatch) -> None:
    monkeypatch.setenv("SIGNALING_LISTEN", "127.0.0.1:0")
    example = load("fastapi_lifespan")
    async with Uvicorn(example.app) as web:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{web.port}") as http:
            url = (await http.get("/signaling")).json()["url"]
            assert url.startswith("ws://127.0.0.1:")
            c = await switchboard.Client.connect(url, user_id="ann")
            events = c.events()
            await c.join("demo")
            welcome = await next_event(events, "message")
            assert welcome["data"] == {"welcome": "demo"}
            assert (await http.get("/rooms")).json() == [{"room": "demo", "peers": ["ann"]}]
            r = await http.post("/rooms/demo/kick/ann")
            assert r.json() == {"kicked": True}
            assert (await next_event(events, "closed"))["code"] == 4403
            assert (await http.post("/rooms/demo/kick/ann")).status_code == 404
            await c.close()
    # The lifespan stopped the server: its port is closed.
    port = int(url.rsplit(":", 1)[1].split("/")[0])
    with pytest.raises(OSError):
        await asyncio.open_connection("127.0.0.1", port)


async def test_fastapi_route_example() -> None:
    example = load("fastapi_route")
    async with Uvicorn(example.app) as web:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{web.port}") as http:
            token = (await http.post("/login/zoe")).json()["token"]
            c = await switchboard.Client.connect(web.url("/ws"), token=token)
            info = await c.join("lobby")
            assert info["you"]["userId"] == "zoe"
            with pytest.raises(switchboard.ForbiddenError):
                await c.join("someone-elses-room")
            assert (await http.get("/lobby")).json() == {"peers": ["zoe"]}
            await c.close()
            with pytest.raises(websockets.InvalidStatus) as refused:
                await websockets.connect(web.url("/ws") + "?token=not-a-session")
            assert refused.value.response.status_code == 401
            metrics = await http.get("/metrics")
            assert metrics.headers["content-type"].startswith("application/openmetrics-text")
            assert 'switchboard_handshakes_refused_total{reason="unauthorized"} 1' in metrics.text


async def test_bot_example(server) -> None:
    example = load("bot")
    bot = asyncio.ensure_future(example.run_bot(server.url, "lobby"))
    try:
        await eventually(lambda: bool(server.peers("lobby")))
        user = await switchboard.Client.connect(server.url, user_id="uma")
        events = user.events()
        await user.join("lobby")
        await user.chat("!who")
        who = await next_event(events, "chat", **{"from": "bot"})
        assert who["content"] == "uma"
        await user.chat("bot: hello there")
        echo = await next_event(events, "chat", **{"from": "bot"})
        assert echo["content"] == "uma said: hello there"
        await user.chat("!time")
        t = await next_event(events, "chat", **{"from": "bot"})
        assert len(t["content"]) == 8 and t["content"].count(":") == 2
        await user.close()
    finally:
        bot.cancel()
        with pytest.raises(asyncio.CancelledError):
            await bot
