"""Route mode is an adapter of the core's connection kit: the per-IP limit is
keyed on the client address after trusted proxies (as on the server's own
port), refusals are counted in the metrics the app mounts, and a route-only
``Hub`` with ``redis_url`` is a cluster node."""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import tempfile
from typing import Any, Dict, List, Optional

import httpx
import pytest

import switchboard
from conftest import TIMEOUT, Uvicorn, make_app


async def upgrade(port: int, source: str, headers: Dict[str, str]) -> "tuple[int, Optional[asyncio.StreamWriter]]":
    """A raw WebSocket upgrade from `source` (a 127.0.0.N address) with extra
    headers: the HTTP status, and the open connection when it is 101."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind((source, 0))
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    reader, writer = await asyncio.open_connection(sock=sock)
    lines = [
        "GET /ws HTTP/1.1",
        f"Host: 127.0.0.1:{port}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
        "Sec-WebSocket-Version: 13",
    ] + [f"{k}: {v}" for k, v in headers.items()]
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
    await writer.drain()
    status_line = await asyncio.wait_for(reader.readline(), TIMEOUT)
    status = int(status_line.split()[1])
    if status != 101:
        writer.close()
        return status, None
    return status, writer


async def test_per_ip_limit_follows_trusted_proxies_and_refusals_are_counted() -> None:
    hub = switchboard.Hub(rate_limit_rps=0, max_conns_per_ip=1, trusted_proxies=["127.0.0.2"])
    async with Uvicorn(make_app(hub)) as web:
        held: List[asyncio.StreamWriter] = []
        # From the trusted proxy, each forwarded client has its own allowance.
        for client in ("198.51.100.1", "198.51.100.2"):
            status, w = await upgrade(web.port, "127.0.0.2", {"X-Forwarded-For": client})
            assert status == 101
            assert w is not None
            held.append(w)
        status, _ = await upgrade(web.port, "127.0.0.2", {"X-Forwarded-For": "198.51.100.1"})
        assert status == 429, "the same forwarded client, over its limit"
        # RFC 7239 `Forwarded` names the client too.
        status, _ = await upgrade(web.port, "127.0.0.2", {"Forwarded": 'for="198.51.100.2"'})
        assert status == 429
        # From an untrusted peer the header is ignored: keyed on the socket address.
        status, w = await upgrade(web.port, "127.0.0.3", {"X-Forwarded-For": "198.51.100.9"})
        assert status == 101 and w is not None
        held.append(w)
        status, _ = await upgrade(web.port, "127.0.0.3", {"X-Forwarded-For": "198.51.100.10"})
        assert status == 429, "a spoofed header from an untrusted peer does not help"
        async with httpx.AsyncClient() as http:
            metrics = (await http.get(f"http://127.0.0.1:{web.port}/metrics")).text
        assert 'switchboard_handshakes_refused_total{reason="per_ip"} 3' in metrics, metrics
        assert hub.connection_count == 3
        for w in held:
            w.close()


class RedisServer:
    """A real redis-server on a free port, in a temp dir."""

    def __init__(self) -> None:
        exe = shutil.which("redis-server")
        if exe is None:
            raise RuntimeError("redis-server is not installed (scripts/test-python.sh installs it)")
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        self.port = probe.getsockname()[1]
        probe.close()
        self.dir = tempfile.mkdtemp(prefix="sb-redis-")
        self.proc = subprocess.Popen(
            [exe, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", self.dir],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)
        shutil.rmtree(self.dir, ignore_errors=True)


async def test_route_only_hubs_with_redis_form_a_cluster() -> None:
    redis = RedisServer()
    try:
        options: Dict[str, Any] = dict(rate_limit_rps=0, max_conns_per_ip=0, redis_url=redis.url)
        hub_a, hub_b = switchboard.Hub(**options), switchboard.Hub(**options)
        async with Uvicorn(make_app(hub_a)) as web_a, Uvicorn(make_app(hub_b)) as web_b:
            alice = await switchboard.Client.connect(web_a.url(), user_id="alice")
            bob = await switchboard.Client.connect(web_b.url(), user_id="bob")
            be = bob.events()
            await alice.join("span")
            deadline = asyncio.get_running_loop().time() + TIMEOUT
            while True:
                # Until Redis is reached, the room may not span the nodes yet.
                info = await bob.join("span")
                if info["users"] == ["alice"] or asyncio.get_running_loop().time() > deadline:
                    break
                await bob.leave("span")
                await asyncio.sleep(0.2)
            assert info["users"] == ["alice"], "bob's node sees alice on the other node"
            await alice.send_offer("bob", {"sdp": "across nodes"})
            async for event in be:
                if event.type == "offer":
                    assert event.sender == "alice" and event.data["sdp"] == {"sdp": "across nodes"}
                    break
            async with httpx.AsyncClient() as http:
                metrics = (await http.get(f"http://127.0.0.1:{web_a.port}/metrics")).text
            assert "switchboard_cluster_redis_up 1" in metrics, metrics
            await alice.close()
            await bob.close()
    finally:
        redis.stop()


def test_listener_options_on_a_route_only_hub_are_a_config_error() -> None:
    for options in ({"tls_cert": "cert.pem", "tls_key": "key.pem"}, {"listen": "127.0.0.1:0"},
                    {"path": "/ws"}, {"demo": True}):
        with pytest.raises(switchboard.ConfigError) as refused:
            switchboard.Hub(**options)
        assert next(iter(options)) in str(refused.value)
    switchboard.Server(listen="127.0.0.1:0", path="/ws")  # a Server takes them
