"""Parity host: Python route mode, a FastAPI app under uvicorn that serves the
hub at the config's `path` (`await hub.serve(websocket)`) and the kit's
`/metrics` (HOSTS.md). Run with the test venv's Python."""

import asyncio
import contextlib
import json
import os
import signal
import socket
import sys
from typing import Any, AsyncIterator, Dict

import uvicorn
from fastapi import FastAPI, Response, WebSocket

import switchboard

SECONDS = {"heartbeat_interval_ms": "heartbeat_interval", "heartbeat_timeout_ms": "heartbeat_timeout",
           "resume_window_ms": "resume_window", "drain_timeout_ms": "drain_timeout"}
PLAIN = {"max_message_bytes", "max_conns", "max_conns_per_ip", "max_room_size", "max_rooms_per_session",
         "rate_limit_burst", "rate_limit_rps", "allowed_origins", "trusted_proxies", "auth_tokens", "redis_url",
         "app_types"}


def options(config: Dict[str, Any]) -> Dict[str, Any]:
    out: Dict[str, Any] = {}
    for key, value in config.items():
        if key == "path":
            continue
        if key in SECONDS:
            out[SECONDS[key]] = value / 1000
        elif key in PLAIN:
            out[key] = value
        else:
            sys.exit(f"python route host: unknown config key {key!r}")
    return out


async def main() -> None:
    config = json.load(open(os.environ["SWITCHBOARD_PARITY_CONFIG"]))
    path = config.get("path", "/ws")
    hub = switchboard.Hub(**options(config))

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with hub:
            yield

    app = FastAPI(lifespan=lifespan)

    async def signaling(websocket: WebSocket) -> None:
        await hub.serve(websocket)

    # Every entry of the path list is a route; Starlette reads `{roomId}` /
    # `{userId}` segments as path parameters, which route mode hands the kit.
    entries = [p.strip() for p in path.split(",")]
    for entry in entries:
        app.add_api_websocket_route(entry, signaling)

    @app.get("/metrics")
    def metrics() -> Response:
        status, content_type, body = hub.endpoint("/metrics") or (404, "text/plain", "")
        return Response(body, status_code=status, media_type=content_type)

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", proxy_headers=False, lifespan="on"))
    # The host handles SIGTERM itself (uvicorn would re-raise it after shutdown).
    server.capture_signals = contextlib.nullcontext  # type: ignore[method-assign]
    loop = asyncio.get_running_loop()
    # SIGTERM: drain the hub first (clients get `draining` and 1001), then stop uvicorn.
    async def stop() -> None:
        await hub.stop()
        server.should_exit = True
    loop.add_signal_handler(signal.SIGTERM, lambda: asyncio.ensure_future(stop()))
    task = asyncio.ensure_future(server.serve(sockets=[sock]))
    while not server.started:
        await asyncio.sleep(0.02)
    first = next((p for p in entries if "{" not in p), "/")
    print(f"listening on ws://127.0.0.1:{sock.getsockname()[1]}{first}", flush=True)
    await task


asyncio.run(main())
