"""A server whose own logic admits users: the ``authenticate`` hook of
docs/PYTHON.md (shown there as written). A token is looked up asynchronously
in the app's sessions; a user may join only their team's rooms; an unknown or
missing token is refused (HTTP 401). Run by python/tests/test_examples.py.

    pip install ./python
    python python/examples/auth_hook.py       # ws://0.0.0.0:8765/ws?token=token-alice
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Optional

import switchboard


@dataclass
class User:
    name: str
    team: str


class Sessions:
    """The app's sessions: token -> user (a real app would ask its database)."""

    def __init__(self) -> None:
        self.users = {"token-alice": User("alice", "blue"), "token-bob": User("bob", "red")}

    async def lookup(self, token: Optional[str]) -> Optional[User]:
        await asyncio.sleep(0.001)  # a database round trip
        return self.users.get(token or "")


sessions = Sessions()


async def authenticate(request: switchboard.AuthRequest) -> switchboard.Identity | None:
    user = await sessions.lookup(request.token)          # your own logic
    return switchboard.Identity(user.name, rooms=[f"{user.team}-*"]) if user else None


async def start(listen: str = "0.0.0.0:8765") -> switchboard.Server:
    return await switchboard.Server.start(listen=listen, authenticate=authenticate)


async def main() -> None:
    server = await start()
    print(f"listening on {server.url}")
    try:
        await asyncio.Event().wait()  # until Ctrl-C
    finally:
        await server.stop()


if __name__ == "__main__":
    asyncio.run(main())
