"""Authentication types (``AuthRequest``, ``Identity``) and the loop-side runners
that the native hooks schedule with ``call_soon_threadsafe``: they call the
user's function (sync or async) under a timeout and answer the core. A refusal,
an exception or a timeout denies; the exception is logged."""

from __future__ import annotations

import asyncio
import datetime
import inspect
import logging
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, List, Optional, Union

log = logging.getLogger("switchboard")


@dataclass(frozen=True)
class AuthRequest:
    """What the server knows when it asks who a connection is."""

    token: Optional[str]
    """The token (``?token=``, ``Authorization: Bearer``, or an ``auth`` message)."""
    origin: Optional[str]
    """The browser ``Origin`` header."""
    ip: Optional[str]
    """The client IP (after trusted-proxy resolution)."""
    path: str
    """The request path, without the query string."""


@dataclass(frozen=True)
class Identity:
    """Who a connection is: returned by ``authenticate`` to admit it."""

    user_id: str
    """The userId the connection speaks as (a ``join`` as anyone else is ``forbidden``)."""
    rooms: Optional[List[str]] = None
    """Rooms it may join: exact ids or ``prefix*`` patterns; ``None`` = any."""
    metadata: Any = None
    """JSON data shown as the peer's ``metadata`` unless its join sets one."""
    expires_at: Optional[Union[datetime.datetime, float]] = None
    """When the credential expires (a datetime or a Unix timestamp)."""


AuthHook = Callable[[AuthRequest], Union[Optional[Identity], Awaitable[Optional[Identity]]]]
TokenProvider = Callable[[], Union[str, Awaitable[str]]]

# Hook calls in flight, so the loop keeps a reference to each task.
_tasks: "set[asyncio.Task[None]]" = set()


def _spawn(coro: Awaitable[None]) -> None:
    task = asyncio.ensure_future(coro)
    _tasks.add(task)
    task.add_done_callback(_tasks.discard)


def run_hook(func: AuthHook, request: "tuple[Any, ...]", timeout: float, reply: Callable[[Any], None]) -> None:
    """Runs on the loop: answers ``reply`` with the hook's Identity or None."""

    async def run() -> None:
        result: Any = None
        try:
            req = AuthRequest(*request)
            result = func(req)
            if inspect.isawaitable(result):
                result = await asyncio.wait_for(result, timeout)
            if result is not None and not isinstance(result, Identity):
                log.error("authenticate() must return an Identity or None, not %r", type(result))
                result = None
        except asyncio.TimeoutError:
            log.warning("authenticate() took longer than %.3f s: connection refused", timeout)
            result = None
        except Exception:
            log.exception("authenticate() raised: connection refused")
            result = None
        try:
            reply(result)
        except Exception:
            log.exception("authenticate() returned an unusable Identity: connection refused")

    _spawn(run())


def run_token_provider(func: TokenProvider, reply: Callable[..., None]) -> None:
    """Runs on the loop: answers ``reply`` with the provider's token, or an error."""

    async def run() -> None:
        try:
            token = func()
            if inspect.isawaitable(token):
                token = await token
            if not isinstance(token, str):
                raise TypeError(f"token_provider() must return str, not {type(token).__name__}")
            reply(token)
        except Exception as e:
            log.exception("token_provider() failed")
            reply(None, repr(e))

    _spawn(run())
