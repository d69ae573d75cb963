"""Healthchecks run by the daemon itself (Docker's daemon/health.go): one asyncio task per running
container with a Healthcheck, each probe an exec under its own conmon. State.Health lives in the
containers table's `health` column so inspect, ps filters and compose's service_healthy see it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import TYPE_CHECKING, Any

from dockyard.errors import DockyardError, NotFound
from dockyard.util.ids import new_id
from dockyard.util.timefmt import rfc3339

if TYPE_CHECKING:
    from dockyard.services.containers import Container, ContainerService
    from dockyard.services.execs import ExecService
    from dockyard.wire.container import HealthConfig

log = logging.getLogger("dockyard.health")

NS = 1_000_000_000
DEFAULT_INTERVAL = 30.0
DEFAULT_TIMEOUT = 30.0
DEFAULT_START_INTERVAL = 5.0
DEFAULT_RETRIES = 3
MAX_LOG = 5
MAX_OUTPUT = 4096  # Docker truncates a probe's output to 4 KiB


def _secs(ns: int, default: float) -> float:
    return float(ns) / NS if ns else default


def probe_command(hc: HealthConfig | None) -> list[str] | None:
    """Docker's Test → argv; None when there is no (or a NONE) healthcheck."""
    test = list((hc.test if hc is not None else None) or [])
    if not test or test[0] == "NONE":
        return None
    if test[0] == "CMD":
        return test[1:] or None
    if test[0] == "CMD-SHELL":
        return ["/bin/sh", "-c", " ".join(test[1:])] if len(test) > 1 else None
    return test  # Docker treats an unknown first word as a plain command line


class HealthMonitor:
    """Hook it up with `containers.on_started.append(m.on_started)` / `on_exited.append(m.on_exited)`."""

    def __init__(self, containers: ContainerService, execs: ExecService) -> None:
        self.cs = containers
        self.execs = execs
        self.runtime = containers.runtime
        self._tasks: dict[str, asyncio.Task[None]] = {}

    # ------------------------------------------------------------------ hooks
    def on_started(self, c: Container) -> None:
        self._arm(c, fresh=True)

    def on_adopted(self, c: Container) -> None:
        self._arm(c, fresh=False)

    def _arm(self, c: Container, fresh: bool) -> None:
        self.stop(c.id)
        hc = c.config.healthcheck
        if hc is None or probe_command(hc) is None:
            if c.health is not None:
                self.cs.save(c.id, health="")
            return
        # A fresh start resets State.Health; a container re-adopted after a daemon restart keeps it.
        if fresh or c.health is None:
            self.cs.save(c.id, health={"Status": "starting", "FailingStreak": 0, "Log": []})
        self._tasks[c.id] = asyncio.get_running_loop().create_task(self._loop(c.id, hc, c.started_at))

    def on_exited(self, c: Container) -> None:
        self.stop(c.id)

    def stop(self, cid: str) -> None:
        t = self._tasks.pop(cid, None)
        if t is not None:
            t.cancel()

    def close(self) -> None:
        for cid in list(self._tasks):
            self.stop(cid)

    # ------------------------------------------------------------------ probing
    async def _loop(self, cid: str, hc: HealthConfig, started_at: float) -> None:
        interval = _secs(hc.interval, DEFAULT_INTERVAL)
        start_period = _secs(hc.start_period, 0.0)
        start_interval = _secs(hc.start_interval, DEFAULT_START_INTERVAL)
        try:
            while True:
                in_start = time.time() < started_at + start_period
                await asyncio.sleep(start_interval if in_start else interval)
                try:
                    c = self.cs.get(cid)
                except NotFound:
                    return
                if c.state == "paused":
                    continue  # Docker skips probes while paused
                if c.state != "running":
                    return
                await self.probe_once(cid, hc, started_at)
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - a monitor must never take the daemon down
            log.exception("health monitor of %s stopped", cid[:12])
        finally:
            if self._tasks.get(cid) is asyncio.current_task():
                self._tasks.pop(cid, None)

    async def probe_once(self, cid: str, hc: HealthConfig, started_at: float) -> dict[str, Any]:
        """Run one probe and fold its result into State.Health; returns the log entry."""
        argv = probe_command(hc) or ["true"]
        timeout = _secs(hc.timeout, DEFAULT_TIMEOUT)
        start = time.time()
        code, output = await self._run(cid, argv, timeout)
        entry = {"Start": rfc3339(start), "End": rfc3339(time.time()), "ExitCode": code, "Output": output}
        try:
            c = self.cs.get(cid)
        except NotFound:
            return entry
        if c.state not in ("running", "paused"):
            return entry
        h = dict(c.health or {"Status": "starting", "FailingStreak": 0, "Log": []})
        old = h.get("Status")
        h["Log"] = (list(h.get("Log") or []) + [entry])[-MAX_LOG:]
        retries = hc.retries or DEFAULT_RETRIES
        start_period = _secs(hc.start_period, 0.0)
        if code == 0:
            h["Status"], h["FailingStreak"] = "healthy", 0
        elif old == "starting" and start < started_at + start_period:
            pass  # failures during the start period do not count (Docker)
        else:
            h["FailingStreak"] = int(h.get("FailingStreak") or 0) + 1
            if h["FailingStreak"] >= retries:
                h["Status"] = "unhealthy"
        self.cs.save(cid, health=h)
        if h["Status"] != old:
            self.cs.emit(self.cs.get(cid), f"health_status: {h['Status']}")
        return entry

    async def _run(self, cid: str, argv: list[str], timeout: float) -> tuple[int, str]:
        """Exec argv in the container; (exit code, output). A probe past its timeout is killed: -1."""
        from dockyard.services.execs import Exec
        from dockyard.wire.container import ExecConfig

        e = Exec(new_id(), cid, ExecConfig(cmd=argv, attach_stdout=True, attach_stderr=True))
        try:
            proc = self.execs.process_spec(e, False)
            session = await self.runtime.exec_(cid, e.id, proc, tty=False, stdin=False, attach=True)
        except Exception as err:  # noqa: BLE001 - Docker records a failed probe start as exit -1
            return -1, err.message if isinstance(err, DockyardError) else str(err)
        out = bytearray()

        async def collect() -> None:
            if session.attach is None:
                return
            async for _stream, data in session.attach.frames():
                if len(out) < MAX_OUTPUT:
                    out.extend(data[: MAX_OUTPUT - len(out)])

        loop = asyncio.get_running_loop()
        reader = loop.create_task(collect())
        # One waiter task reads conmon's sync pipe; on timeout we kill the probe and let it finish.
        waiter = loop.create_task(session.wait())
        try:
            done, _ = await asyncio.wait({waiter}, timeout=timeout)
            if not done:
                self._kill(session.pid)
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(asyncio.shield(waiter), 10)
                return -1, f"Health check exceeded timeout ({_fmt(timeout)})"
            code = waiter.result()
            with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(asyncio.shield(reader), 2)
            return code, out.decode(errors="replace")
        finally:
            reader.cancel()
            with contextlib.suppress(Exception):
                session.cleanup()

    @staticmethod
    def _kill(pid: int) -> None:
        import os
        import signal

        if pid > 0:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def _fmt(seconds: float) -> str:
    """Go's time.Duration string for whole/fractional seconds ("1s", "1.5s", "500ms")."""
    if seconds < 1:
        return f"{int(seconds * 1000)}ms"
    return f"{seconds:g}s"
