"""Each example in python/examples, exercised as a user would: the FastAPI apps
under a real uvicorn server, the quickstart script as a process, the auth hook
server and the bot against real servers. Several are snippets of docs/PYTHON.md
(scripts/check-doc-snippets.py checks that the page shows them as written)."""

from __future__ import annotations

import asyncio
import importlib.util
import os
import subprocess
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


def test_quickstart_example() -> None:
    # The first snippet of docs/PYTHON.md, run as a user would run the script.
    run = subprocess.run(
        [sys.executable, str(EXAMPLES / "quickstart.py")], capture_output=True, text=True, timeout=60
    )
    assert run.returncode == 0, run.stdout + run.stderr
    lines = run.stdout.splitlines()
    assert lines[0].startswith("ws://127.0.0.1:") and lines[0].endswith("/ws"), lines
    assert lines[1] == "no offer: peer-not-found", lines
    assert any(line.startswith("room-info {") and "'roomId': 'room-1'" in line for line in lines), lines
    # The loop ended on the greeting that the user-joined handler sent.
    assert lines[-1].startswith("message {") and "'data': {'hi': 1}" in lines[-1], lines


async def test_auth_hook_example() -> None:
    example = load("auth_hook")
    server = await example.start("127.0.0.1:0")
    try:
        alice = await switchboard.Client.connect(server.url, token="token-alice")
        info = await alice.join("blue-standup")
        assert info["you"]["userId"] == "alice"
        with pytest.raises(switchboard.ForbiddenError):
            await alice.join("red-room")  # only her team's rooms
        await alice.close()
        with pytest.raises(switchboard.UnauthorizedError):
            await switchboard.Client.connect(server.url, token="token-mallory", max_reconnect_attempts=0)
    finally:
        await server.stop()


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
