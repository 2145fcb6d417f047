"""Route mode: the signaling hub served from the app's own WebSocket route, on
the app's port, authenticated by the app's own logic (here a session table).

    pip install ./python fastapi uvicorn
    uvicorn fastapi_route:app --app-dir python/examples --port 8000 --no-proxy-headers
    # clients connect to ws://127.0.0.1:8000/ws?token=SESSION
"""

from __future__ import annotations

import contextlib
import secrets
from typing import AsyncIterator, Dict, Optional

from fastapi import FastAPI, Response, WebSocket

import switchboard

# The app's own sessions: token -> user name (a real app would use its database).
SESSIONS: Dict[str, str] = {}


async def authenticate(request: switchboard.AuthRequest) -> Optional[switchboard.Identity]:
    user = SESSIONS.get(request.token or "")
    if user is None:
        return None  # 401 before the upgrade
    return switchboard.Identity(user_id=user, rooms=[f"{user}-*", "lobby"])


hub = switchboard.Hub(authenticate=authenticate, auth_timeout=2.0)


@contextlib.asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    async with hub:
        yield


app = FastAPI(lifespan=lifespan)


@app.websocket("/ws")
async def signaling(websocket: WebSocket) -> None:
    await hub.serve(websocket)


@app.get("/metrics")
def metrics() -> Response:
    status, content_type, body = hub.endpoint("/metrics") or (404, "text/plain", "")
    return Response(body, status_code=status, media_type=content_type)


@app.post("/login/{user}")
def login(user: str) -> Dict[str, str]:
    token = secrets.token_urlsafe(16)
    SESSIONS[token] = user
    return {"token": token}


@app.get("/lobby")
def lobby() -> Dict[str, object]:
    peers = hub.peers("lobby") or []
    return {"peers": [p.user_id for p in peers]}
