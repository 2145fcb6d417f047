"""Events in asyncio: ``EventStream`` (an async iterator over a native feed, woken
once per batch) and ``Handlers`` (the ``@on(type)`` registry and its dispatcher,
shared by the server, the hub and the client).

Bounds: each stream queues at most its feed's capacity (the server's
``event_buffer`` or the client's ``event_capacity``) in Rust; a consumer that
falls further behind loses the oldest events (logged, counted in ``missed``).
At most ``MAX_PENDING_HANDLERS`` async handler calls run at once; past that the
dispatcher waits for one to finish, so the feed's bound applies."""

from __future__ import annotations

import asyncio
import re
import inspect
import logging
from collections import deque
from typing import (
    Any,
    Awaitable,
    Callable,
    Deque,
    Dict,
    List,
    Optional,
    Set,
    TypeVar,
    Union,
)

from . import _native
from ._native import Event

log = logging.getLogger("switchboard")

Handler = Callable[[Event], Union[None, Awaitable[None]]]
H = TypeVar("H", bound=Handler)

MAX_PENDING_HANDLERS = 1024


class EventStream:
    """An async iterator of :class:`Event` objects. Ends when its source stops
    (server stopped, client closed) or after :meth:`close`."""

    def __init__(self, feed: _native.EventFeed) -> None:
        self._feed: Optional[_native.EventFeed] = feed
        self._buf: Deque[Event] = deque()
        self._ready = asyncio.Event()
        feed.start(asyncio.get_running_loop(), self._ready.set)

    def __aiter__(self) -> "EventStream":
        return self

    async def __anext__(self) -> Event:
        if not self._buf:
            batch = await self.next_batch()
            if batch is None:
                raise StopAsyncIteration
            self._buf.extend(batch)
        return self._buf.popleft()

    async def next_batch(self) -> Optional[List[Event]]:
        """Every event queued so far (waits for at least one); ``None`` at the end."""
        if self._buf:
            batch = list(self._buf)
            self._buf.clear()
            return batch
        while True:
            feed = self._feed
            if feed is None:
                return None
            self._ready.clear()
            drained = feed.drain()
            if drained is None:
                self.close()
                return None
            if drained:
                return drained
            await self._ready.wait()

    @property
    def missed(self) -> int:
        """Events this stream lost by falling behind."""
        return self._feed.missed if self._feed is not None else 0

    def close(self) -> None:
        """Stops the stream (idempotent); iteration then ends."""
        feed, self._feed = self._feed, None
        if feed is not None:
            feed.close()
        self._ready.set()

    async def aclose(self) -> None:
        self.close()

    async def __aenter__(self) -> "EventStream":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        self.close()

    def __del__(self) -> None:
        feed = getattr(self, "_feed", None)
        if feed is not None:
            feed.close()


_APP_TYPE = re.compile(r"[A-Za-z0-9._:-]{1,64}")


def is_app_type(name: str) -> bool:
    """Whether ``name`` can be one of the server's app types (``app_types``): a
    name the protocol does not define, and not a misspelling of one
    (``user_joined`` for ``user-joined``)."""
    if not isinstance(name, str) or not _APP_TYPE.fullmatch(name):
        return False
    return name.lower().replace("_", "-") not in _native.EVENT_TYPES


class Handlers:
    """``@on(type)`` handlers of one object, and the task that dispatches to them."""

    def __init__(self, owner: str, allowed: List[str]) -> None:
        self._owner = owner
        self._allowed = allowed
        self._handlers: Dict[str, List[Handler]] = {}
        self._subscribe: Optional[Callable[[int], _native.EventFeed]] = None
        self._feed: Optional[_native.EventFeed] = None
        self._task: Optional["asyncio.Task[None]"] = None
        self._calls: Set["asyncio.Task[Any]"] = set()

    def on(self, type: str, handler: Optional[H] = None) -> Union[H, Callable[[H], H]]:
        if type not in self._allowed and not is_app_type(type):
            raise ValueError(
                f"{self._owner} has no event {type!r}; its events are: {', '.join(self._allowed)}"
            )

        def register(h: H) -> H:
            if not callable(h):
                raise TypeError("an event handler must be callable")
            self._handlers.setdefault(type, []).append(h)
            self._update()
            return h

        return register(handler) if handler is not None else register

    def off(self, type: str, handler: Optional[Handler] = None) -> None:
        """Removes one handler of ``type`` (or all of them)."""
        if handler is None:
            self._handlers.pop(type, None)
        else:
            hs = self._handlers.get(type, [])
            if handler in hs:
                hs.remove(handler)
            if not hs:
                self._handlers.pop(type, None)
        self._update()

    def _mask(self) -> int:
        return _native.kinds_mask(list(self._handlers)) if self._handlers else 0

    def _update(self) -> None:
        if self._feed is not None:
            self._feed.set_mask(self._mask())
        elif self._subscribe is not None and self._handlers:
            self._start_feed()

    def attach(self, subscribe: Callable[[int], _native.EventFeed]) -> None:
        """The owner started: dispatch from its events. The feed exists only while
        handlers do, so an object without handlers pays nothing for events."""
        self._subscribe = subscribe
        if self._handlers:
            self._start_feed()

    def _start_feed(self) -> None:
        assert self._subscribe is not None
        self._feed = self._subscribe(self._mask())
        stream = EventStream(self._feed)
        self._task = asyncio.get_running_loop().create_task(self._run(stream))

    async def _run(self, stream: EventStream) -> None:
        while True:
            batch = await stream.next_batch()
            if batch is None:
                return
            for event in batch:
                for handler in tuple(self._handlers.get(event.type, ())):
                    await self._call(handler, event)

    async def _call(self, handler: Handler, event: Event) -> None:
        try:
            result = handler(event)
        except Exception:
            log.exception("%s handler for %r raised", self._owner, event.type)
            return
        if inspect.isawaitable(result):
            while len(self._calls) >= MAX_PENDING_HANDLERS:
                await asyncio.wait(self._calls, return_when=asyncio.FIRST_COMPLETED)
            task = asyncio.ensure_future(self._guard(result, event.type))
            self._calls.add(task)
            task.add_done_callback(self._calls.discard)

    async def _guard(self, awaitable: Awaitable[Any], type: str) -> None:
        try:
            await awaitable
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("%s handler for %r raised", self._owner, type)

    async def stop(self, timeout: float) -> None:
        """After the source ended: lets the dispatcher finish the queued events and
        the running handlers finish (up to ``timeout`` s, then cancels them)."""
        self._subscribe = None
        task, self._task = self._task, None
        if task is not None:
            try:
                await asyncio.wait_for(task, timeout)
            except asyncio.TimeoutError:
                pass
        feed, self._feed = self._feed, None
        if feed is not None:
            feed.close()
        calls = set(self._calls)
        if calls:
            _, pending = await asyncio.wait(calls, timeout=timeout)
            for t in pending:
                t.cancel()
            if pending:
                await asyncio.wait(pending)

