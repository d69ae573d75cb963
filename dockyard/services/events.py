"""The engine's event bus: every service emits here, `/events` subscribes (with a short history)."""

from __future__ import annotations

import asyncio
import time
import weakref
from collections import deque
from collections.abc import AsyncIterator
from typing import Any

Event = dict[str, Any]


class EventBus:
    def __init__(self, history: int = 256) -> None:  # dockerd's eventsLimit: `events --since` reaches as far
        self._history: deque[Event] = deque(maxlen=history)
        # weak: a subscription whose reader never started (its client went before the body) goes with it
        self._subscribers: weakref.WeakSet[asyncio.Queue[Event]] = weakref.WeakSet()
        self._loop: asyncio.AbstractEventLoop | None = None

    def bind_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    def emit(self, type_: str, action: str, actor_id: str, attributes: dict[str, str] | None = None) -> Event:
        """Record an event in Docker's shape. Safe to call from worker threads."""
        now = time.time_ns()
        ev: Event = {
            "Type": type_,
            "Action": action,
            "Actor": {"ID": actor_id, "Attributes": dict(attributes or {})},
            "scope": "local",
            "time": now // 1_000_000_000,
            "timeNano": now,
        }
        if type_ == "container":  # legacy fields the docker CLI still reads
            ev.update(status=action, id=actor_id, **{"from": ev["Actor"]["Attributes"].get("image", "")})
        elif type_ == "image":
            ev.update(status=action, id=actor_id)
        loop = self._loop
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if loop is not None and running is not loop:
            loop.call_soon_threadsafe(self._publish, ev)
        else:
            self._publish(ev)
        return ev

    def _publish(self, ev: Event) -> None:
        self._history.append(ev)
        for q in list(self._subscribers):
            q.put_nowait(ev)

    def subscribe(self, since: float | None = None, until: float | None = None) -> AsyncIterator[Event]:
        """Past events from `since`, then live ones until `until` (unix seconds) or forever. Subscribed at
        the call, not at the first read: the events API subscribes before its response headers go, so a
        client that has them and then acts sees its own events (as dockerd's does)."""
        q: asyncio.Queue[Event] = asyncio.Queue()
        self._subscribers.add(q)
        return self._read(q, since, until)

    async def _read(self, q: asyncio.Queue[Event], since: float | None, until: float | None) -> AsyncIterator[Event]:
        try:
            if since is not None:
                for ev in list(self._history):
                    if ev["timeNano"] >= since * 1e9 and (until is None or ev["timeNano"] <= until * 1e9):
                        yield ev
            if until is not None and until <= time.time():
                return
            while True:
                timeout = None if until is None else max(0.0, until - time.time())
                try:
                    ev = await asyncio.wait_for(q.get(), timeout)
                except TimeoutError:
                    return
                if since is not None and ev["timeNano"] < since * 1e9:
                    continue
                yield ev
        finally:
            self._subscribers.discard(q)
