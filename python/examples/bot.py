"""A bot that joins a room and answers chat: `!time` with the time, `!who` with
the peers it knows, anything else addressed to it (`bot: ...`) with an echo.

    python python/examples/bot.py ws://127.0.0.1:8765/ws lobby
"""

from __future__ import annotations

import asyncio
import sys
import time
from typing import Set

import switchboard


async def run_bot(url: str, room: str, name: str = "bot") -> None:
    """Runs until cancelled or the client closes for good."""
    async with await switchboard.Client.connect(url, user_id=name, display_name="Helper bot") as client:
        peers: Set[str] = set((await client.join(room))["users"])
        async for event in client.events():
            if event.type == "user-joined":
                peers.add(event.user_id or "")
            elif event.type == "user-left":
                peers.discard(event.user_id or "")
            elif event.type == "chat" and event.sender != name:
                text = str(event.get("content", ""))
                if text == "!time":
                    await client.chat(time.strftime("%H:%M:%S"))
                elif text == "!who":
                    await client.chat(", ".join(sorted(peers)) or "nobody")
                elif text.startswith(f"{name}:"):
                    await client.chat(f"{event.sender} said: {text[len(name) + 1:].strip()}")
            elif event.type == "closed":
                return


if __name__ == "__main__":
    url = sys.argv[1] if len(sys.argv) > 1 else "ws://127.0.0.1:8765/ws"
    room = sys.argv[2] if len(sys.argv) > 2 else "lobby"
    try:
        asyncio.run(run_bot(url, room))
    except KeyboardInterrupt:
        pass
