"""A FastAPI app that runs the Switchboard server on its own port, started and
stopped in the app's lifespan, reacting to room events in Python.

    pip install ./python fastapi uvicorn
    uvicorn fastapi_lifespan:app --app-dir python/examples --port 8000
    # signaling on ws://127.0.0.1:8765/ws (SIGNALING_LISTEN to change it)
"""

from __future__ import annotations

import contextlib
import logging
import os
from typing import Any, AsyncIterator, Dict, List

from fastapi import FastAPI, HTTPException

import switchboard

log = logging.getLogger("signaling")


@contextlib.asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    server = switchboard.Server(
        listen=os.environ.get("SIGNALING_LISTEN", "127.0.0.1:8765"),
        path="/ws",
        max_room_size=8,
    )

    @server.on("user-joined")
    async def joined(event: switchboard.Event) -> None:
        log.info("%s joined %s", event.user_id, event.room_id)
        # Greet the newcomer (a server message of any `type` reaches the client).
        await server.send(event.room_id or "", event.user_id or "", {"type": "message", "data": {"welcome": event.room_id}})

    @server.on("user-left")
    def left(event: switchboard.Event) -> None:
        log.info("%s left %s (%s)", event.user_id, event.room_id, event["reason"])

    async with server:
        app.state.signaling = server
        yield


app = FastAPI(lifespan=lifespan)


@app.get("/signaling")
def signaling_url() -> Dict[str, str]:
    return {"url": app.state.signaling.url}


@app.get("/rooms")
def rooms() -> List[Dict[str, Any]]:
    return [{"room": r.room_id, "peers": [p.user_id for p in r.peers]} for r in app.state.signaling.rooms()]


@app.post("/rooms/{room_id}/kick/{user_id}")
async def kick(room_id: str, user_id: str) -> Dict[str, bool]:
    try:
        await app.state.signaling.kick(room_id, user_id)
    except switchboard.SwitchboardError as e:
        raise HTTPException(status_code=404, detail=str(e))
    return {"kicked": True}
