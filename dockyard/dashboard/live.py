"""What every open page watches, read once and fanned out: the container list, the running containers'
stats and the engine's events. Started by the first subscriber, stopped a little after the last leaves,
so five tabs cost the daemon what one costs.

Stats are one-shot requests from one poller thread, each container every max(2 s, n/10 s): at most ten
a second to the daemon whatever the number of containers (a stats stream per container costs the daemon
a sample a second each: 50 containers took ~8 % of a core; see bench/dashboard).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import threading
import time
from typing import Any

from dockyard.client import APIError, ConnectError, Stream
from dockyard.dashboard.engine import Engine, interrupt

Message = tuple[str, Any]
HISTORY = 60  # stats samples kept per container: a new tab draws its sparklines at once
RATE = 10.0  # one-shot stats requests a second at most, whatever the number of containers
MIN_PERIOD = 2.0  # seconds between two samples of one container, at least


def stats_sample(s: dict[str, Any], prev: dict[str, Any] | None = None) -> dict[str, Any]:
    """CPU % and memory as `docker stats` computes them: CPU from two frames (this one and `prev`, the
    previous one-shot frame; else the frame's own precpu_stats)."""
    cpu = s.get("cpu_stats") or {}
    pre = (prev or {}).get("cpu_stats") or s.get("precpu_stats") or {}
    cpu_delta = (cpu.get("cpu_usage") or {}).get("total_usage", 0) - (pre.get("cpu_usage") or {}).get("total_usage", 0)
    sys_delta = (cpu.get("system_cpu_usage") or 0) - (pre.get("system_cpu_usage") or 0)
    ncpu = cpu.get("online_cpus") or len((cpu.get("cpu_usage") or {}).get("percpu_usage") or []) or 1
    if not pre.get("system_cpu_usage"):
        cpu_delta = 0  # a first one-shot frame: nothing to compare with yet
    pct = cpu_delta / sys_delta * ncpu * 100 if sys_delta > 0 and cpu_delta > 0 else 0.0
    mem = s.get("memory_stats") or {}
    st = mem.get("stats") or {}
    used = (mem.get("usage") or 0) - st.get("inactive_file", st.get("total_inactive_file", 0))
    return {"cpu": round(pct, 2), "mem": max(used, 0), "limit": mem.get("limit") or 0}


class _Watcher:
    """A thread reading one stream; stop() wakes it."""

    def __init__(self, target: Any, *args: Any) -> None:
        self.stream: Stream | None = None
        self.stopped = False
        self.thread = threading.Thread(target=target, args=(self, *args), daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.stopped = True
        if self.stream is not None:
            interrupt(self.stream)


class Live:
    def __init__(self, engine: Engine, linger: float = 5.0) -> None:
        self.engine = engine
        self.linger = linger
        self.subs: set[asyncio.Queue[Message]] = set()
        self.containers: list[dict[str, Any]] = []
        self.history: dict[str, collections.deque[dict[str, Any]]] = {}
        self.events: collections.deque[dict[str, Any]] = collections.deque(maxlen=200)
        self._running: list[str] = []
        self._poller: threading.Thread | None = None
        self._wake = threading.Event()
        self._events: _Watcher | None = None
        self._fresh: dict[str, dict[str, Any]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._refresh_due = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self.running = False

    # -- subscribers -------------------------------------------------------------------------
    async def subscribe(self) -> asyncio.Queue[Message]:
        q: asyncio.Queue[Message] = asyncio.Queue(maxsize=2000)
        self.subs.add(q)
        if not self.running:
            await self._start()
        q.put_nowait(("containers", self.containers))
        q.put_nowait(("history", {cid: list(h) for cid, h in self.history.items()}))
        q.put_nowait(("backlog", list(self.events)))
        return q

    def unsubscribe(self, q: asyncio.Queue[Message]) -> None:
        self.subs.discard(q)
        if not self.subs:
            self._spawn(self._stop_later())

    def _broadcast(self, kind: str, data: Any) -> None:
        for q in list(self.subs):
            with contextlib.suppress(asyncio.QueueFull):  # a tab that stopped reading misses updates
                q.put_nowait((kind, data))

    def _spawn(self, coro: Any) -> None:
        t = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(t)
        t.add_done_callback(self._tasks.discard)

    # -- life ---------------------------------------------------------------------------------
    async def _start(self) -> None:
        self.running = True
        self._loop = asyncio.get_running_loop()
        self._events = _Watcher(self._read_events)
        await self._refresh()
        self._wake = threading.Event()  # one per start: a poller from before a quick restart still stops
        self._poller = threading.Thread(target=self._poll_stats, args=(self._wake,), daemon=True)
        self._poller.start()
        self._spawn(self._flush_stats())

    async def _stop_later(self) -> None:
        await asyncio.sleep(self.linger)
        if not self.subs and self.running:
            self.stop()

    def stop(self) -> None:
        self.running = False
        if self._events is not None:
            self._events.stop()
            self._events = None
        self._wake.set()

    # -- the container list ---------------------------------------------------------------
    async def _refresh(self) -> None:
        try:
            self.containers = await asyncio.to_thread(self.engine.call, "GET", "/containers/json", {"all": 1})
        except (APIError, ConnectError, OSError):
            return
        self._broadcast("containers", self.containers)
        self._running = [c["Id"] for c in self.containers if c.get("State") == "running"]
        for cid in list(self.history):
            if not any(c["Id"] == cid for c in self.containers):
                del self.history[cid]

    async def _refresh_soon(self) -> None:
        if self._refresh_due:
            return
        self._refresh_due = True
        await asyncio.sleep(0.05)  # a `compose up` is a burst of events: one list for all of them
        self._refresh_due = False
        await self._refresh()

    def _on_event(self, ev: dict[str, Any]) -> None:
        self.events.append(ev)
        self._broadcast("event", ev)
        if ev.get("Type") == "container" and self.running:
            self._spawn(self._refresh_soon())

    # -- stream readers (threads) ----------------------------------------------------------
    def _read_events(self, w: _Watcher) -> None:
        assert self._loop is not None
        loop = self._loop
        while not w.stopped:
            try:
                w.stream = self.engine.stream("GET", "/events")
                if w.stopped:
                    break
                for ev in w.stream.json():
                    loop.call_soon_threadsafe(self._on_event, ev)
            except (APIError, ConnectError, OSError, ValueError):
                pass
            finally:
                if w.stream is not None:
                    interrupt(w.stream)
            if not w.stopped:
                threading.Event().wait(1.0)  # the daemon restarted: reconnect

    def _poll_stats(self, wake: threading.Event) -> None:
        """One-shot stats of each running container in turn, spread over the period."""
        last: dict[str, dict[str, Any]] = {}
        while not wake.is_set():
            ids = list(self._running)
            if not ids:
                if wake.wait(1.0):
                    return
                continue
            gap = max(MIN_PERIOD, len(ids) / RATE) / len(ids)
            for cid in ids:
                t0 = time.monotonic()
                try:
                    s = self.engine.call("GET", f"/containers/{cid}/stats", {"stream": 0, "one-shot": 1})
                except (APIError, ConnectError, OSError, ValueError):
                    s = None
                if isinstance(s, dict) and (s.get("memory_stats") or s.get("cpu_stats")):
                    self._fresh[cid] = stats_sample(s, last.get(cid))
                    last[cid] = s
                if wake.wait(max(0.0, gap - (time.monotonic() - t0))):
                    return
            for cid in set(last) - set(self._running):
                del last[cid]

    async def _flush_stats(self) -> None:
        ticks = 0
        while self.running:
            await asyncio.sleep(1.0)
            ticks += 1
            if ticks % 15 == 0:
                self._spawn(self._refresh())  # "Up 5 minutes" and health move on without events
            fresh, self._fresh = self._fresh, {}
            if fresh:
                for cid, sample in fresh.items():
                    self.history.setdefault(cid, collections.deque(maxlen=HISTORY)).append(sample)
                self._broadcast("stats", fresh)
