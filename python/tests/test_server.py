"""The server from Python: start/stop, events for join/leave/offer routing between
Python clients and a plain ``websockets`` client, handler decorators, send,
broadcast, kick, rooms and peers."""

from __future__ import annotations

import asyncio
import json
import logging

import pytest
import websockets

import switchboard
from conftest import LOOSE, TIMEOUT, eventually, next_event, ws_recv


async def test_start_stop_both_ways() -> None:
    server = await switchboard.Server.start(listen="127.0.0.1:0", path="/signal")
    assert server.url.startswith("ws://127.0.0.1:") and server.url.endswith("/signal")
    host, port = server.address
    assert host == "127.0.0.1" and server.url == f"ws://127.0.0.1:{port}/signal"
    assert server.running
    await server.stop()
    await server.stop()  # idempotent
    assert not server.running
    with pytest.raises(switchboard.ClosedError):
        server.rooms()
    # The port is free again: nothing listens there any more.
    with pytest.raises(OSError):
        await asyncio.open_connection("127.0.0.1", port)

    async with switchboard.Server(listen="127.0.0.1:0") as s2:
        async with websockets.connect(s2.url) as ws:
            assert (await ws_recv(ws, "connected"))["sessionId"]
    assert not s2.running


async def test_join_leave_offer_between_python_clients(server, clients) -> None:
    events = server.events()
    alice = await clients("alice")
    bob = await clients("bob")
    bob_events = bob.events()

    info = await alice.join("room-1")
    assert info["type"] == "room-info" and info["roomId"] == "room-1" and info["users"] == []
    joined = await next_event(events, "user-joined", userId="alice")
    assert joined.room_id == "room-1" and joined.user_id == "alice"

    info = await bob.join("room-1")
    assert info["users"] == ["alice"]
    await next_event(events, "user-joined", userId="bob")

    await alice.send_offer("bob", {"type": "offer", "sdp": "v=0 alice"})
    offer = await next_event(bob_events, "offer")
    assert offer.sender == "alice" and offer["sdp"] == {"type": "offer", "sdp": "v=0 alice"}
    server_offer = await next_event(events, "offer")
    assert server_offer["from"] == "alice" and server_offer["to"] == "bob"

    await bob.send_answer("alice", {"type": "answer", "sdp": "v=0 bob"})
    await bob.send_candidate("alice", {"candidate": "candidate:1", "sdpMid": "0"})
    await next_event(events, "answer", **{"from": "bob"})
    await next_event(events, "candidate", **{"from": "bob"})

    assert [p.user_id for p in server.peers("room-1")] == ["alice", "bob"]
    await alice.leave("room-1")
    left = await next_event(events, "user-left", userId="alice")
    assert left["reason"] == "leave"
    left_b = await next_event(bob_events, "user-left")
    assert left_b.user_id == "alice"
    assert [p.user_id for p in server.peers("room-1")] == ["bob"]
    events.close()


async def test_python_client_and_plain_websockets_client(server, clients) -> None:
    alice = await clients("alice")
    alice_events = alice.events()
    await alice.join("mixed")
    async with websockets.connect(server.url, subprotocols=["webrtc-signaling"]) as ws:
        assert ws.subprotocol == "webrtc-signaling"
        await ws_recv(ws, "connected")
        await ws.send(json.dumps({"type": "join", "roomId": "mixed", "userId": "web"}))
        info = await ws_recv(ws, "room-info")
        assert info["users"] == ["alice"]
        await next_event(alice_events, "user-joined", userId="web")

        await alice.send_offer("web", {"type": "offer", "sdp": "x"})
        offer = await ws_recv(ws, "offer")
        assert offer["from"] == "alice" and offer["sdp"]["sdp"] == "x"

        await ws.send(json.dumps({"type": "answer", "to": "alice", "sdp": {"type": "answer", "sdp": "y"}}))
        answer = await next_event(alice_events, "answer")
        assert answer.sender == "web" and answer["sdp"]["sdp"] == "y"

        await ws.send(json.dumps({"type": "chat", "content": "hi all"}))
        chat = await next_event(alice_events, "chat")
        assert chat["content"] == "hi all" and chat.sender == "web"
    left = await next_event(alice_events, "user-left", userId="web")
    assert left["reason"] == "closed"


async def test_decorators_sync_and_async(server, clients) -> None:
    seen: list = []
    async_done = asyncio.Event()

    @server.on("user-joined")
    def on_joined(event: switchboard.Event) -> None:
        seen.append(("sync", event.user_id))

    @server.on("user-joined")
    async def on_joined_async(event: switchboard.Event) -> None:
        await asyncio.sleep(0)
        seen.append(("async", event.user_id))
        async_done.set()

    def on_chat(event: switchboard.Event) -> None:
        seen.append(("chat", event["content"]))

    assert server.on("chat", on_chat) is on_chat  # direct registration

    c = await clients("carol")
    await c.join("deco")
    await asyncio.wait_for(async_done.wait(), TIMEOUT)
    await c.chat("hello")
    await eventually(lambda: ("chat", "hello") in seen)
    assert ("sync", "carol") in seen and ("async", "carol") in seen

    server.off("chat", on_chat)
    await c.chat("unseen")
    await c.chat("marker")  # the sync user-joined handler is still there; chat has none
    await asyncio.sleep(0.2)
    assert ("chat", "unseen") not in seen

    with pytest.raises(ValueError):
        server.on("user_joined")  # a typo: the names are the protocol's


async def test_handler_exceptions_are_logged_and_do_not_stop_anything(server, clients, caplog) -> None:
    calls: list = []

    @server.on("user-joined")
    def broken(event: switchboard.Event) -> None:
        calls.append("sync")
        raise RuntimeError("sync handler bug")

    @server.on("user-joined")
    async def broken_async(event: switchboard.Event) -> None:
        calls.append("async")
        raise RuntimeError("async handler bug")

    with caplog.at_level(logging.ERROR, logger="switchboard"):
        a = await clients("a")
        await a.join("r")
        await eventually(lambda: calls.count("async") == 1)
        b = await clients("b")
        await b.join("r")
        await eventually(lambda: calls.count("async") == 2)
        await eventually(lambda: sum("handler bug" in r.exc_text for r in caplog.records if r.exc_text) >= 4)
    assert calls.count("sync") == 2
    # The server still relays.
    events = b.events()
    await a.send_offer("b", {"sdp": "still alive"})
    assert (await next_event(events, "offer"))["sdp"]["sdp"] == "still alive"


async def test_send_broadcast_kick(server, clients) -> None:
    alice = await clients("alice")
    bob = await clients("bob")
    ae, be = alice.events(), bob.events()
    await alice.join("r")
    await bob.join("r")

    await server.send("r", "alice", {"type": "message", "data": {"text": "just you"}})
    assert (await next_event(ae, "message"))["data"] == {"text": "just you"}

    n = await server.broadcast("r", {"type": "message", "data": {"all": True}})
    assert n == 2
    # Bob's first message is the broadcast: the unicast went to Alice only.
    assert (await next_event(be, "message"))["data"] == {"all": True}
    assert (await next_event(ae, "message"))["data"] == {"all": True}

    server_events = server.events()
    await server.kick("r", "bob")
    left = await next_event(server_events, "user-left", userId="bob")
    assert left["reason"] == "kicked"
    closed = await next_event(be, "closed")
    assert closed["code"] == 4403
    assert [p.user_id for p in server.peers("r")] == ["alice"]

    with pytest.raises(switchboard.PeerNotFoundError) as e:
        await server.kick("r", "nobody")
    assert e.value.code == "peer-not-found"
    with pytest.raises(switchboard.NotInRoomError):
        await server.send("no-such-room", "alice", {"type": "x"})
    with pytest.raises(switchboard.InvalidMessageError):
        await server.broadcast("r", {"no": "type"})
    with pytest.raises(TypeError):
        await server.broadcast("r", {"type": "x", "bad": object()})


async def test_rooms_and_peers(server, clients) -> None:
    assert server.rooms() == []
    assert server.peers("none") is None
    a = await clients("a", display_name="Alice", metadata={"role": "host"})
    await a.join("r2")
    await a.join("r1")
    rooms = server.rooms()
    assert [r.room_id for r in rooms] == ["r1", "r2"]
    peer = rooms[0].peers[0]
    assert peer.user_id == "a" and peer.display_name == "Alice" and peer.metadata == {"role": "host"}
    assert peer.connected and peer.session_id == a.session_id


async def test_stop_drains_clients_and_ends_streams(clients, server) -> None:
    a = await clients("a")
    ae = a.events()
    await a.join("r")
    se = server.events()
    await server.stop()
    draining = await next_event(ae, "draining")
    assert draining["retryAfterMs"] > 0
    # The server's stream ends after the drain.
    rest = [e async for e in se]
    assert all(isinstance(e, switchboard.Event) for e in rest)


async def test_bad_options_raise_config_errors() -> None:
    with pytest.raises(switchboard.ConfigError):
        switchboard.Server(path="no-slash")
    with pytest.raises(switchboard.ConfigError):
        switchboard.Server(tls_cert="cert.pem")  # without tls_key
    with pytest.raises(switchboard.ConfigError):
        switchboard.Server(auth_tokens={"t": "u"}, jwt_secret="s")
    with pytest.raises(switchboard.ConfigError):
        switchboard.Server(heartbeat_interval=-1)
    with pytest.raises(TypeError):
        switchboard.Server(heartbeat_interval="soon")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        switchboard.Server(**{"no_such_option": 1})  # type: ignore[arg-type]
    err = switchboard.ConfigError("x")
    assert isinstance(err, ValueError) and err.code == "config"
    with pytest.raises(switchboard.TransportError):
        # The address is taken.
        async with switchboard.Server(**LOOSE) as s:
            await switchboard.Server.start(listen=f"127.0.0.1:{s.address[1]}")


async def test_slow_event_reader_loses_the_oldest_not_the_server(clients) -> None:
    """Every event queue is bounded: a reader that does not keep up loses the
    oldest events (counted in ``missed``) and nothing else slows down."""
    async with switchboard.Server(**LOOSE, event_buffer=8) as server:
        stream = server.events()
        a = await switchboard.Client.connect(server.url, user_id="a")
        b = await switchboard.Client.connect(server.url, user_id="b")
        be = b.events()
        await a.join("r")
        await b.join("r")
        for i in range(100):
            await a.send_candidate("b", {"n": i})
        # The peer got all of them, in order, whatever the slow reader does.
        got = [(await next_event(be, "candidate"))["candidate"]["n"] for _ in range(100)]
        assert got == list(range(100))
        await asyncio.sleep(0.2)  # let the feed fill up past its bound
        batch = await stream.next_batch()
        assert batch is not None and len(batch) <= 8
        assert batch[-1]["candidate"] == {"n": 99}  # the newest are kept
        assert stream.missed >= 100 + 4 - len(batch)  # and every loss is counted
        await a.close()
        await b.close()


async def test_server_relays_while_the_event_loop_is_blocked(server, tmp_path) -> None:
    """The Rust server needs neither the GIL nor the event loop to relay: two
    clients in another process exchange offers while this loop is stuck (the
    client counts the round trips in a file that this test reads afterwards)."""
    import subprocess
    import sys
    import time

    server.on("offer", lambda e: None)  # a handler: events queue for the loop
    progress = tmp_path / "progress"
    script = f"""
import asyncio, json, websockets
async def main():
    async with websockets.connect({server.url!r}) as a, websockets.connect({server.url!r}) as b:
        for ws, user in ((a, "a"), (b, "b")):
            await ws.send(json.dumps({{"type": "join", "roomId": "r", "userId": user}}))
            # b must be in the room before a's first offer, or that offer is refused.
            while json.loads(await ws.recv()).get("type") != "room-info":
                pass
        for i in range(50):
            await a.send(json.dumps({{"type": "offer", "to": "b", "sdp": {{"n": i}}}}))
            while json.loads(await b.recv()).get("type") != "offer":
                pass
            open({str(progress)!r}, "w").write(str(i + 1))
        print("done")
asyncio.run(main())
"""
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    # Block the loop (and hold the GIL) until 10 round trips went through, at most 30 s.
    deadline = time.monotonic() + 30
    spins = 0
    relayed = 0
    while proc.poll() is None and time.monotonic() < deadline and relayed < 10:
        spins += 1
        sum(range(1000))  # pure Python: holds the GIL, never yields to the loop
        if spins % 200 == 0 and progress.exists():
            relayed = int(progress.read_text() or 0)
    if progress.exists():
        relayed = max(relayed, int(progress.read_text() or 0))
    assert relayed >= 10, f"only {relayed} offers relayed while the loop was blocked"
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0 and out.strip() == "done"
    assert spins > 0


async def test_demo_and_browser_client_options() -> None:
    import httpx

    async with httpx.AsyncClient() as http:
        async with switchboard.Server(listen="127.0.0.1:0") as plain:
            base = plain.url.rsplit("/", 1)[0].replace("ws://", "http://")
            assert (await http.get(f"{base}/switchboard.js")).status_code == 404
            health = (await http.get(f"{base}/health")).json()
            assert health["status"] == "ok"
        async with switchboard.Server(listen="127.0.0.1:0", serve_client=True) as s:
            base = s.url.rsplit("/", 1)[0].replace("ws://", "http://")
            js = await http.get(f"{base}/switchboard.js")
            assert js.status_code == 200 and "javascript" in js.headers["content-type"]
            assert (await http.get(f"{base}/")).status_code == 404
        async with switchboard.Server(listen="127.0.0.1:0", demo=True) as s:
            base = s.url.rsplit("/", 1)[0].replace("ws://", "http://")
            page = await http.get(f"{base}/")
            assert page.status_code == 200 and "<html" in page.text.lower()
