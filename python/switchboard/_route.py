"""Route mode: one Starlette/FastAPI WebSocket served by the connection kit of
the core, so the app's own port, middleware and dependencies apply. This file
only moves bytes: the request facts (socket peer, path and query, every header)
go to the kit, which answers admit or refuse (origin 403, per-IP 429 keyed on
the client address after trusted proxies, capacity or draining 503, handshake
token 401) and selects the subprotocol; a receive loop feeds text frames in, a
send loop drains the connection's bounded outbox; close codes pass both ways.

Trusted proxies: the kit reads ``X-Forwarded-For``/``Forwarded`` itself, from
the peers listed in ``trusted_proxies``. Run the ASGI server without its own
proxy-header rewriting (uvicorn ``proxy_headers=False`` / ``--no-proxy-headers``),
so that the kit sees the real socket peer.

Liveness: an ASGI app can not send WebSocket pings; the ASGI server does (uvicorn
``--ws-ping-interval``/``--ws-ping-timeout``, 20 s each by default) and reports a
dead peer as a disconnect, which leaves the session resumable like a network cut.
A write that takes longer than the heartbeat timeout (a client that reads
nothing) drops the connection the same way."""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Optional, Union

from . import _native

log = logging.getLogger("switchboard")

# How long to wait for the client's answer to our close frame.
CLOSE_GRACE = 2.0
# Disconnect codes treated as "no close frame" (the session stays resumable).
# ASGI servers report a lost TCP connection as 1005 (uvicorn, hypercorn) or 1006,
# and their own shutdown as 1012; a close frame without a status code is also
# 1005, indistinguishable here, so route mode treats it as a lost connection too.
# Clients that leave for good close with 1000 or 1001 (all Switchboard clients
# do) or send `leave`.
_NO_CLOSE_FRAME = {1005, 1006, 1012}


async def deny(websocket: Any, status: int, headers: "list[tuple[str, str]]") -> None:
    extensions = websocket.scope.get("extensions") or {}
    if "websocket.http.response" in extensions and hasattr(websocket, "send_denial_response"):
        from starlette.responses import PlainTextResponse

        await websocket.send_denial_response(
            PlainTextResponse("connection refused\n", status_code=status, headers=dict(headers))
        )
    else:
        # Without the denial extension an ASGI server answers a close before
        # accept with 403.
        await websocket.close(code=1008)


def _path_fields(scope: Any) -> "Optional[tuple[Optional[str], Optional[str]]]":
    """The room and user the app's router read from the path
    (``/signaling/{room_id}/{user_id}``, or ``{roomId}``/``{userId}``)."""
    params = scope.get("path_params") or {}
    room = params.get("room_id", params.get("roomId"))
    user = params.get("user_id", params.get("userId"))
    if room is None and user is None:
        return None
    return (None if room is None else str(room), None if user is None else str(user))


def _facts(scope: Any) -> "tuple[Optional[str], str, list[tuple[str, str]]]":
    """The socket peer, the target (path and query) and every header."""
    client = scope.get("client")
    peer = client[0] if client else None
    path = scope.get("raw_path") or scope.get("path", "/").encode("latin-1")
    if isinstance(path, bytes):
        path = path.decode("latin-1")
    query = scope.get("query_string") or b""
    target = path + ("?" + query.decode("latin-1") if query else "")
    headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in scope.get("headers", [])]
    return peer, target, headers


async def serve(hub: _native.NativeHub, write_timeout: float, websocket: Any) -> None:
    peer, target, headers = _facts(websocket.scope)
    status, extra, conn = await _native.open_route(hub, peer, target, headers, _path_fields(websocket.scope))
    if conn is None:
        await deny(websocket, status, extra if isinstance(extra, list) else [])
        return
    try:
        await websocket.accept(subprotocol=extra if isinstance(extra, str) else None)
    except BaseException:
        conn.finish(None)
        raise

    async def receive() -> Optional[int]:
        """Reads until the client closes; the close code, or None without one."""
        while True:
            try:
                message = await websocket.receive()
            except Exception:
                return None
            kind = message.get("type")
            if kind == "websocket.receive":
                text = message.get("text")
                if text is not None:
                    conn.handle_text(text)
                elif message.get("bytes") is not None:
                    # MessagePack on its subprotocol; a 1003 close on JSON.
                    conn.handle_bytes(message["bytes"])
            elif kind == "websocket.disconnect":
                code = message.get("code", 1005)
                return None if code in _NO_CLOSE_FRAME else int(code)

    async def send() -> None:
        """Writes the outbox in batches until the hub asks for a close."""
        while True:
            item = await conn.next_batch()
            if isinstance(item, list):
                await asyncio.wait_for(_write_all(websocket, item), write_timeout)
            else:
                code, reason = item
                await websocket.close(code=code, reason=reason)
                return

    receiving = asyncio.ensure_future(receive())
    sending = asyncio.ensure_future(send())
    client_close: Optional[int] = None
    try:
        await asyncio.wait({receiving, sending}, return_when=asyncio.FIRST_COMPLETED)
        if receiving.done():
            # The client closed (or vanished) first.
            client_close = receiving.result()
        else:
            # We closed (or a write failed or got stuck): give the client a moment
            # to answer the close frame, then let go.
            if not sending.cancelled() and sending.exception() is not None:
                log.debug("route-mode write failed: %r", sending.exception())
            try:
                await asyncio.wait_for(asyncio.shield(receiving), CLOSE_GRACE)
            except (asyncio.TimeoutError, Exception):
                pass
    finally:
        for task in (receiving, sending):
            if not task.done():
                task.cancel()
        await asyncio.gather(receiving, sending, return_exceptions=True)
        conn.finish(client_close)


async def _write_all(websocket: Any, frames: "list[Union[str, bytes]]") -> None:
    for frame in frames:
        if isinstance(frame, bytes):
            await websocket.send_bytes(frame)
        else:
            await websocket.send_text(frame)
