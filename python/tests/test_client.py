"""The client: reconnect and resume through a real connection cut (a TCP proxy
that drops both sides), client handlers, and cancellation of awaitables."""

from __future__ import annotations

import asyncio

import pytest

import switchboard
from conftest import LOOSE, TIMEOUT, Proxy, eventually, next_event


async def test_reconnect_and_resume_through_a_cut(server) -> None:
    async with Proxy(server.address[1]) as proxy:
        url = f"ws://127.0.0.1:{proxy.port}/ws"
        alice = await switchboard.Client.connect(url, user_id="alice", reconnect_base=0.05, reconnect_max=0.2)
        bob = await switchboard.Client.connect(server.url, user_id="bob")
        ae = alice.events()
        server_events = server.events()
        await alice.join("r")
        await bob.join("r")
        await next_event(ae, "user-joined", userId="bob")
        session = alice.session_id

        proxy.cut()
        await next_event(ae, "reconnecting")
        # Sent while alice is away: buffered by the server, replayed on resume.
        for i in range(5):
            await bob.send_candidate("alice", {"n": i})
        # And alice's own sends while offline wait in her outbox.
        offline_send = asyncio.ensure_future(alice.chat("sent while offline"))

        resumed = await next_event(ae, "resumed")
        assert resumed["sessionId"] == session and alice.session_id == session
        got = [(await next_event(ae, "candidate"))["candidate"]["n"] for _ in range(5)]
        assert got == [0, 1, 2, 3, 4]  # all of them, once, in order
        await asyncio.wait_for(offline_send, TIMEOUT)
        await next_event(server_events, "resumed", sessionId=session)
        # Nobody saw alice leave: the session survived the cut.
        assert [p.user_id for p in server.peers("r")] == ["alice", "bob"]
        assert proxy.connections == 2
        await alice.close()
        await bob.close()


async def test_resume_failed_fails_the_lost_messages() -> None:
    """A message written on a session the server then forgets (its resume window
    passed) fails with ResumeFailedError; the client rejoins its rooms."""
    async with switchboard.Server(**LOOSE, resume_window=0.2) as server:
        async with Proxy(server.address[1]) as proxy:
            url = f"ws://127.0.0.1:{proxy.port}/ws"
            c = await switchboard.Client.connect(url, user_id="lost", reconnect_base=0.05, reconnect_max=0.1)
            events = c.events()
            server_events = server.events()
            await c.join("r")
            proxy.frozen = True  # the chat is written, the server never reads it
            lost = asyncio.ensure_future(c.chat("into the void"))
            await asyncio.sleep(0.2)
            proxy.refusing = True
            proxy.cut()
            left = await next_event(server_events, "user-left", userId="lost")
            assert left["reason"] == "timeout"
            proxy.frozen = proxy.refusing = False
            with pytest.raises(switchboard.ResumeFailedError) as e:
                await asyncio.wait_for(lost, TIMEOUT)
            assert e.value.code == "resume-failed"
            rejoined = await next_event(events, "rejoined")
            assert rejoined["rooms"] == ["r"]
            assert [p.user_id for p in server.peers("r")] == ["lost"]
            await c.close()


async def test_client_handlers_sync_and_async(server, clients) -> None:
    a = await clients("a")
    b = await clients("b")
    offers: list = []
    done = asyncio.Event()

    @b.on("offer")
    def on_offer(event: switchboard.Event) -> None:
        offers.append(event["sdp"])

    @b.on("chat")
    async def on_chat(event: switchboard.Event) -> None:
        await b.chat(f"echo: {event['content']}") if event.sender != "b" else done.set()

    await a.join("r")
    await b.join("r")
    ae = a.events()
    await a.send_offer("b", {"sdp": 1})
    await a.chat("ping")
    echo = await next_event(ae, "chat", **{"from": "b"})
    assert echo["content"] == "echo: ping"
    await asyncio.wait_for(done.wait(), TIMEOUT)
    assert offers == [{"sdp": 1}]


async def test_client_closed_event_and_state(server, clients) -> None:
    c = await clients("c")
    events = c.events()
    assert c.connected and not c.closed and c.rooms() == []
    await c.join("x")
    assert c.rooms() == ["x"] and c.pending == 0
    await c.close()
    assert c.closed and not c.connected
    kinds = [e.type async for e in events]  # ends after `closed`
    assert kinds[0] == "connecting" and kinds[-1] == "closed"


async def test_cancelling_connect_cancels_the_rust_work() -> None:
    """A cancelled ``connect`` drops the Rust future: the half-open connection is
    closed at once, long before the connect timeout."""
    accepted = asyncio.Event()
    gone = asyncio.Event()

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.set()
        await reader.read()  # returns at EOF: the client let go
        gone.set()
        writer.close()

    srv = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = srv.sockets[0].getsockname()[1]
    try:
        task = asyncio.ensure_future(
            switchboard.Client.connect(f"ws://127.0.0.1:{port}/ws", connect_timeout=60)
        )
        await asyncio.wait_for(accepted.wait(), TIMEOUT)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await asyncio.wait_for(gone.wait(), 5)
    finally:
        srv.close()
        await srv.wait_closed()


async def test_cancelling_a_reply_keeps_the_message(server, clients) -> None:
    """Cancelling the await of a send stops waiting; the message still goes out
    (the core client's contract)."""
    a = await clients("a")
    b = await clients("b")
    be = b.events()
    await a.join("r")
    await b.join("r")
    reply = asyncio.ensure_future(a.send_offer("b", {"sdp": "kept"}))
    reply.cancel()
    with pytest.raises(asyncio.CancelledError):
        await reply
    assert (await next_event(be, "offer"))["sdp"] == {"sdp": "kept"}


async def test_token_provider_is_asked_on_connect(server) -> None:
    asked: list = []

    async def provider() -> str:
        asked.append(1)
        return "t0ken"

    c = await switchboard.Client.connect(server.url, user_id="tp", token_provider=provider)
    try:
        await eventually(lambda: len(asked) >= 1)
        assert c.connected
    finally:
        await c.close()
