"""The trace seam: every host change, recorded by the adapter call that made it, with the kernel's answer.

Adapters (store, runtime, network) wrap each change in `step(area, op, why)`; a change seen only
afterwards (runc wrote a cgroup file, we read it back) is `seen(area, op, result, why)`. Services name
the object the work is for with `about("container:<id>")` (a contextvar: it follows `to_thread` and
tasks) and `drop()` its records when the object goes. Records live in one bounded ring per object;
with nobody watching, a record costs a clock read, a small object and a deque append.

`DOCKYARD_TRACE=off` in the daemon's environment compiles tracing out (the bench's baseline).
"""

from __future__ import annotations

import asyncio
import contextvars
import itertools
import os
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

ENABLED = os.environ.get("DOCKYARD_TRACE", "on").lower() not in ("off", "0", "no", "false")
RING = 256  # records kept per object (a container's run --rm makes ~25)
TOTAL = 16_384  # records kept in all (~10 MiB at most): the least recently traced objects go first
QUEUE = 10_000  # records a slow watcher may fall behind before it misses some

_object: contextvars.ContextVar[str] = contextvars.ContextVar("trace_object", default="daemon")
_session: contextvars.ContextVar[str] = contextvars.ContextVar("trace_session", default="")


class Step:
    """One host change. Adapters set `result` (the kernel's answer) and may add `detail` lines."""

    __slots__ = ("seq", "time", "start", "dur_ms", "obj", "area", "op", "why", "result", "detail", "ok", "session",
                 "_t0")

    def __init__(self, area: str, op: str, why: str, detail: list[str] | None = None) -> None:
        self.area, self.op, self.why = area, op, why
        self.detail: list[str] = detail or []
        self.result = "ok"
        self.ok = True
        self.dur_ms: float | None = None
        self.obj = _object.get()
        self.session = _session.get()
        self.seq = 0
        self.time = 0.0  # when it was recorded (its end)
        self.start = 0.0  # when it began (steps overlap: runc create runs while the veths are wired)
        self._t0 = 0.0

    def __enter__(self) -> Step:
        self.start = time.time()
        self._t0 = time.perf_counter()
        return self

    def __exit__(self, etype: Any, exc: BaseException | None, tb: Any) -> None:
        self.dur_ms = (time.perf_counter() - self._t0) * 1000
        if exc is not None:
            self.ok = False
            self.result = f"failed: {exc}"
        _emit(self)

    def to_json(self) -> dict[str, Any]:
        kind, _, oid = self.obj.partition(":")
        out: dict[str, Any] = {
            "Seq": self.seq, "Time": self.time, "Start": self.start or self.time,
            "DurationMs": None if self.dur_ms is None else round(self.dur_ms, 3),
            "Object": self.obj, "Kind": kind, "ID": oid, "Area": self.area, "Op": self.op,
            "Result": self.result, "OK": self.ok, "Why": self.why}
        if self.detail:
            out["Detail"] = self.detail
        if self.session:
            out["Session"] = self.session
        return out


class _Off(Step):
    """What step() hands out with tracing compiled out: accepts the same attributes, records nothing."""

    def __init__(self) -> None:  # no fields: nothing is ever read from it
        pass

    def __enter__(self) -> Step:
        return self

    def __exit__(self, etype: Any, exc: BaseException | None, tb: Any) -> None:
        return None

    def __setattr__(self, name: str, value: Any) -> None:
        pass


_OFF = _Off()
OFF: Step = _OFF  # a context manager that records nothing (for calls that change nothing)


def step(area: str, op: str, why: str = "", detail: list[str] | None = None) -> Step:
    """`with trace.step("mount", "mount overlay on ...", "why") as s: ...; s.result = "..."`.
    A raised exception is recorded as the result and goes on."""
    return Step(area, op, why, detail) if ENABLED else _OFF


def seen(area: str, op: str, result: str, why: str = "", detail: list[str] | None = None) -> None:
    """A change made by someone else (runc, the kernel), recorded as we read it back."""
    if ENABLED:
        s = Step(area, op, why, detail)
        s.result = result
        _emit(s)


@contextmanager
def about(obj: str) -> Iterator[None]:
    """Steps inside are about `obj` ("container:<id>", "network:<id>", "image:<ref>", "volume:<name>")."""
    token = _object.set(obj)
    try:
        yield
    finally:
        _object.reset(token)


def set_session(session: str) -> None:
    """The API marks a request's steps with the client's X-Dockyard-Trace token (in the request's task)."""
    _session.set(session)


def current() -> str:
    return _object.get()


# ---------------------------------------------------------------- rings and watchers
_lock = threading.Lock()
_seq = itertools.count(1)
_rings: OrderedDict[str, deque[Step]] = OrderedDict()
_total = 0  # records in all rings
_watchers: list[Watcher] = []


def _emit(s: Step) -> None:
    s.time = time.time()
    with _lock:
        s.seq = next(_seq)
        global _total
        ring = _rings.get(s.obj)
        if ring is None:
            ring = _rings[s.obj] = deque(maxlen=RING)
        else:
            _rings.move_to_end(s.obj)
        if len(ring) < RING:
            _total += 1
        ring.append(s)
        while _total > TOTAL and len(_rings) > 1:
            _total -= len(_rings.popitem(last=False)[1])
        watchers = list(_watchers) if _watchers else ()
    for w in watchers:
        w.offer(s)


def drop(obj: str) -> None:
    """Forget an object's records (it is gone). Watchers already streaming it keep what they got."""
    global _total
    with _lock:
        _total -= len(_rings.pop(obj, ()))


def records(match: str = "") -> list[Step]:
    """Records kept, oldest first, of the objects whose key or id starts with `match` (all when "")."""
    with _lock:
        rings = [r for k, r in _rings.items() if not match or matches(k, match)]
        out = [s for r in rings for s in r]
    out.sort(key=lambda s: s.seq)
    return out


def matches(obj: str, match: str) -> bool:
    """`match` names an object: its key ("container:ab12...") or its id, or a prefix of either."""
    return obj.startswith(match) or obj.partition(":")[2].startswith(match)


class Watcher:
    """Live records for one reader, in order, on its event loop."""

    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.queue: asyncio.Queue[Step | None] = asyncio.Queue()
        self.missed = 0
        self.session = ""  # the name a reader's marks are posted under

    def offer(self, s: Step) -> None:
        if self.queue.qsize() >= QUEUE:
            self.missed += 1
            return
        try:
            self.loop.call_soon_threadsafe(self.queue.put_nowait, s)
        except RuntimeError:  # its loop is closed
            pass

    def mark(self) -> None:
        """A None in order after every record emitted so far (a reader's sync point)."""
        self.loop.call_soon_threadsafe(self.queue.put_nowait, None)

    def close(self) -> None:
        with _lock:
            if self in _watchers:
                _watchers.remove(self)


def watch() -> Watcher:
    """Start receiving records (call on the loop that reads them; close() when done)."""
    w = Watcher()
    with _lock:
        _watchers.append(w)
    return w


def watchers() -> list[Watcher]:
    with _lock:
        return list(_watchers)
