"""The pure-Python reference relay for switchboard-bench: the same logic as
bench/node/ws-server.js (rooms in a dict, ``join`` answers ``room-info`` and
tells the others ``user-joined``, messages with ``to`` are forwarded with
``from`` added), on the ``websockets`` library. Prints
``listening on ws://HOST:PORT/ws``.

    python python/bench/ws_relay.py [--listen 127.0.0.1:0]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import signal
from typing import Dict

from websockets.asyncio.server import ServerConnection, serve

rooms: Dict[str, Dict[str, ServerConnection]] = {}
next_id = itertools.count()


async def handle(ws: ServerConnection) -> None:
    room_id = None
    user_id = None
    try:
        async for data in ws:
            try:
                msg = json.loads(data)
            except ValueError:
                continue
            if not isinstance(msg, dict):
                continue
            if msg.get("type") == "join":
                room_id = msg.get("roomId") or "default"
                user_id = msg.get("userId") or f"u{next(next_id)}"
                room = rooms.setdefault(room_id, {})
                joined = json.dumps({"type": "user-joined", "roomId": room_id, "userId": user_id})
                for peer in list(room.values()):
                    await peer.send(joined)
                await ws.send(json.dumps({"type": "room-info", "roomId": room_id, "users": list(room), "you": user_id}))
                room[user_id] = ws
            elif "to" in msg and room_id is not None:
                peer = rooms[room_id].get(msg["to"])
                if peer is not None:
                    msg["from"] = user_id
                    await peer.send(json.dumps(msg))
    except Exception:
        pass
    finally:
        if room_id is not None:
            room = rooms[room_id]
            room.pop(user_id, None)  # type: ignore[arg-type]
            left = json.dumps({"type": "user-left", "roomId": room_id, "userId": user_id, "reason": "closed"})
            for peer in list(room.values()):
                try:
                    await peer.send(left)
                except Exception:
                    pass
            if not room:
                rooms.pop(room_id, None)


async def main(listen: str) -> None:
    host, port = listen.rsplit(":", 1)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with serve(handle, host, int(port), compression=None, max_size=1 << 20) as server:
        sock = next(iter(server.sockets))
        h, p = sock.getsockname()[:2]
        print(f"listening on ws://{h}:{p}/ws", flush=True)
        await stop.wait()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--listen", default="127.0.0.1:0")
    asyncio.run(main(parser.parse_args().listen))
