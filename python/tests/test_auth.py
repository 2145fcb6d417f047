"""Authentication from Python: the ``authenticate`` hook (allow, deny, timeout,
exception; async and sync) on the server's own port and in route mode, the
``auth`` message, static tokens and JWT."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
import time
from typing import List, Optional

import pytest
import websockets

import switchboard
from conftest import make_app, LOOSE, TIMEOUT, Uvicorn, next_event, ws_recv


class Hook:
    """An async hook: token "good-*" → that user, "slow" never answers in time,
    "boom" raises, anything else is refused. Records every request."""

    def __init__(self) -> None:
        self.requests: List[switchboard.AuthRequest] = []
        self.cancelled = asyncio.Event()

    async def __call__(self, request: switchboard.AuthRequest) -> Optional[switchboard.Identity]:
        self.requests.append(request)
        token = request.token or ""
        if token == "slow":
            try:
                await asyncio.sleep(60)
            except asyncio.CancelledError:
                self.cancelled.set()
                raise
        if token == "boom":
            raise RuntimeError("hook bug")
        if token.startswith("good-"):
            return switchboard.Identity(
                user_id=token[5:], rooms=["team-*"], metadata={"plan": "pro"}
            )
        return None


async def test_hook_allows_denies_and_times_out(caplog) -> None:
    hook = Hook()
    async with switchboard.Server(**LOOSE, authenticate=hook, auth_timeout=0.5) as server:
        # Allow: the identity's user id, room patterns and metadata apply.
        alice = await switchboard.Client.connect(server.url, token="good-alice")
        info = await alice.join("team-red")
        assert info["you"]["userId"] == "alice"
        [peer] = server.peers("team-red")
        assert peer.user_id == "alice" and peer.metadata == {"plan": "pro"}
        with pytest.raises(switchboard.ForbiddenError):
            await alice.join("other-room")  # outside the identity's rooms
        req = hook.requests[0]
        assert req.token == "good-alice" and req.ip == "127.0.0.1" and req.path == "/ws"
        await alice.close()

        # Deny: HTTP 401 before the upgrade.
        with pytest.raises(switchboard.UnauthorizedError) as denied:
            await switchboard.Client.connect(server.url, token="bad", max_reconnect_attempts=0)
        assert denied.value.code == "unauthorized"
        with pytest.raises(websockets.InvalidStatus) as raw:
            await websockets.connect(server.url + "?token=bad")
        assert raw.value.response.status_code == 401

        # Timeout: refused after auth_timeout, and the hook's task is cancelled.
        started = time.monotonic()
        with pytest.raises(switchboard.UnauthorizedError):
            await switchboard.Client.connect(server.url, token="slow", max_reconnect_attempts=0)
        assert time.monotonic() - started < 5
        await asyncio.wait_for(hook.cancelled.wait(), TIMEOUT)

        # An exception in the hook refuses and is logged; the server goes on.
        with caplog.at_level(logging.ERROR, logger="switchboard"):
            with pytest.raises(switchboard.UnauthorizedError):
                await switchboard.Client.connect(server.url, token="boom", max_reconnect_attempts=0)
        assert any("hook bug" in (r.exc_text or "") for r in caplog.records)
        ok = await switchboard.Client.connect(server.url, token="good-bob")
        await ok.join("team-blue")
        await ok.close()


async def test_auth_message_after_connect_and_4401() -> None:
    def sync_hook(request: switchboard.AuthRequest) -> Optional[switchboard.Identity]:
        return switchboard.Identity("carol") if request.token == "letmein" else None

    async with switchboard.Server(**LOOSE, authenticate=sync_hook, auth_timeout=2) as server:
        async with websockets.connect(server.url) as ws:
            await ws_recv(ws, "connected")
            await ws.send(json.dumps({"type": "auth", "token": "letmein", "id": 1}))
            assert (await ws_recv(ws, "ack"))["id"] == 1
            await ws.send(json.dumps({"type": "join", "roomId": "r"}))
            assert (await ws_recv(ws, "room-info"))["you"]["userId"] == "carol"
        async with websockets.connect(server.url) as ws:
            await ws_recv(ws, "connected")
            await ws.send(json.dumps({"type": "auth", "token": "nope"}))
            with pytest.raises(websockets.ConnectionClosed) as closed:
                while True:
                    await asyncio.wait_for(ws.recv(), TIMEOUT)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 4401


async def test_hook_in_route_mode() -> None:
    hook = Hook()
    hub = switchboard.Hub(rate_limit_rps=0, max_conns_per_ip=0, authenticate=hook, auth_timeout=0.5)
    async with Uvicorn(make_app(hub)) as web:
        alice = await switchboard.Client.connect(web.url(), token="good-alice")
        assert (await alice.join("team-1"))["you"]["userId"] == "alice"
        assert hook.requests[0].path == "/ws" and hook.requests[0].token == "good-alice"
        await alice.close()
        with pytest.raises(websockets.InvalidStatus) as denied:
            await websockets.connect(web.url() + "?token=bad")
        assert denied.value.response.status_code == 401
        with pytest.raises(switchboard.UnauthorizedError):
            await switchboard.Client.connect(web.url(), token="slow", max_reconnect_attempts=0)
        await asyncio.wait_for(hook.cancelled.wait(), TIMEOUT)
        async with websockets.connect(
            web.url(), additional_headers={"Authorization": "Bearer good-dave"}
        ) as ws:
            await ws_recv(ws, "connected")
            await ws.send(json.dumps({"type": "join", "roomId": "team-2", "userId": "mallory"}))
            assert (await ws_recv(ws, "error"))["code"] == "forbidden"


async def test_static_tokens_and_jwt() -> None:
    async with switchboard.Server(**LOOSE, auth_tokens={"s3cret": "erin"}) as server:
        c = await switchboard.Client.connect(server.url, token="s3cret")
        assert (await c.join("r"))["you"]["userId"] == "erin"
        await c.close()
        with pytest.raises(switchboard.UnauthorizedError):
            await switchboard.Client.connect(server.url, token="wrong", max_reconnect_attempts=0)

    secret = b"jwt-secret"
    async with switchboard.Server(**LOOSE, jwt_secret=secret, jwt_audience="signal") as server:
        good = hs256({"sub": "frank", "aud": "signal", "exp": int(time.time()) + 60}, secret)
        c = await switchboard.Client.connect(server.url, token=good)
        assert (await c.join("r"))["you"]["userId"] == "frank"
        await c.close()
        expired = hs256({"sub": "frank", "aud": "signal", "exp": int(time.time()) - 3600}, secret)
        wrong_aud = hs256({"sub": "frank", "aud": "other", "exp": int(time.time()) + 60}, secret)
        for token in (expired, wrong_aud, hs256({"sub": "x", "exp": 9999999999}, b"other-key")):
            with pytest.raises(switchboard.UnauthorizedError):
                await switchboard.Client.connect(server.url, token=token, max_reconnect_attempts=0)


async def test_documented_token() -> None:
    # The token docs/DEPLOYMENT.md mints: alice, for an hour, rooms team-* only.
    SECRET = b"the server's --jwt-secret, 32+ random bytes"
    token = hs256({"sub": "alice", "exp": int(time.time()) + 3600,
                   "aud": "switchboard", "rooms": ["team-*"]}, SECRET)
    async with switchboard.Server(**LOOSE, jwt_secret=SECRET, jwt_audience="switchboard") as server:
        c = await switchboard.Client.connect(server.url, token=token)
        assert (await c.join("team-red"))["you"]["userId"] == "alice"
        with pytest.raises(switchboard.ForbiddenError):
            await c.join("lobby")
        await c.close()


def hs256(claims: dict, key: bytes) -> str:
    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    head = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = b64(json.dumps(claims).encode())
    sig = hmac.new(key, f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{b64(sig)}"
