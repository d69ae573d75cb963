"""Fakes of the adapters below the services (services/seams.py), for unit tests of the state
machines above them. Each keeps the real one's contract: `FakeRuntime` reports an exit the way
conmon's exit file and the exit watcher do (exit_code, then ContainerService.finalize_exit).
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dockyard.errors import Conflict
from dockyard.store.snapshotter import Mount


@dataclass
class FakeProcess:
    pid: int
    running: bool = False
    paused: bool = False
    exit_code: int | None = None
    signals: list[int] = field(default_factory=list)
    deleted: bool = False


class FakeRuntime:
    """A runtime whose processes do what the test says: exit with a code, ignore some signals.

    `on_exit` is what the daemon's exit watcher would call (ContainerService.finalize_exit)."""

    def __init__(self, exit_dir: Path) -> None:
        self.exit_dir = exit_dir
        self.procs: dict[str, FakeProcess] = {}
        self.ignored: set[int] = set()  # signals the processes survive (as PID 1 without a handler)
        self.fail_create: Exception | None = None
        self.exit_on_start: int | None = None  # the process exits at once with this code
        self.on_exit: Callable[[str], Awaitable[None]] | None = None
        self.deleted: list[str] = []
        self._next_pid = 1000
        # Hooks a test sets to hold a call where a real runtime takes its time (runc pause, runc delete).
        self.pause_gate: asyncio.Event | None = None
        self.delete_gate: asyncio.Event | None = None
        self.delete_entered = asyncio.Event()
        # Real processes standing for conmon (pidfd-watched by the service); none by default.
        self.conmon_pids: dict[str, int] = {}

    # -- what a test does to a process
    def exit(self, cid: str, code: int) -> None:
        """The process ends by itself with `code`; the watcher notices on the next loop turn."""
        p = self.procs[cid]
        p.running, p.exit_code = False, code
        if self.on_exit is not None:
            asyncio.get_running_loop().create_task(self.on_exit(cid))

    # -- ContainerRuntime
    async def create(self, cid: str, bundle_dir: str | os.PathLike[str], runtime: str = "runc",
                     log_path: str | None = None, tty: bool = False, stdin: bool = False,
                     log_max: int | None = None, leave_stdin_open: bool = False, timeout: float = 60,
                     spec: dict[str, Any] | None = None) -> int:
        if self.fail_create is not None:
            raise self.fail_create
        assert (Path(bundle_dir) / "config.json").is_file(), "create without an OCI bundle"
        self._next_pid += 1
        self.procs[cid] = FakeProcess(self._next_pid)
        return self._next_pid

    async def start(self, cid: str) -> None:
        self.procs[cid].running = True
        if self.exit_on_start is not None:
            self.exit(cid, self.exit_on_start)

    async def kill(self, cid: str, sig: int | str = signal.SIGTERM, all_: bool = False) -> None:
        p = self.procs.get(cid)
        if p is None or not p.running:
            raise Conflict(f"container {cid} is not running")
        signum = int(sig)
        p.signals.append(signum)
        if signum not in self.ignored or signum == signal.SIGKILL:
            self.exit(cid, 128 + signum)

    async def pause(self, cid: str) -> None:
        if self.pause_gate is not None:
            await self.pause_gate.wait()
        self.procs[cid].paused = True

    async def resume(self, cid: str) -> None:
        self.procs[cid].paused = False

    async def state(self, cid: str) -> dict[str, Any] | None:
        p = self.procs.get(cid)
        if p is None:
            return None
        status = "paused" if p.paused else "running" if p.running else "stopped" if p.exit_code is not None else "created"
        return {"id": cid, "pid": p.pid, "status": status}

    async def update(self, cid: str, res: Any) -> None:
        pass

    async def delete(self, cid: str, force: bool = False) -> None:
        self.delete_entered.set()
        if self.delete_gate is not None:
            await self.delete_gate.wait()
        self.deleted.append(cid)
        p = self.procs.get(cid)
        if p is not None:  # as runc delete with conmon's exit file: the exit status goes with it
            p.exit_code, p.deleted = None, True

    async def attach(self, cid: str) -> Any:
        raise NotImplementedError("attach is tested on the real runtime (tests/integration)")

    def resize(self, cid: str, height: int, width: int) -> None:
        pass

    def exit_code(self, cid: str) -> int | None:
        p = self.procs.get(cid)
        return None if p is None else p.exit_code

    def oom_killed(self, cid: str) -> bool:
        return False

    def conmon_pid(self, cid: str) -> int | None:
        return self.conmon_pids.get(cid)

    def conmon_alive(self, cid: str) -> bool:
        p = self.procs.get(cid)
        return p is not None and p.exit_code is None and not p.deleted

    async def exec_(self, cid: str, exec_id: str, process: dict[str, Any], tty: bool = False,
                    stdin: bool = False, attach: bool = True, timeout: float = 60, hold: bool = False) -> Any:
        raise NotImplementedError("exec is tested on the real runtime (tests/integration)")


@dataclass
class FakeImage:
    id: str
    config: dict[str, Any]


class FakeImages:
    """One image, `busybox`, with no layers."""

    def __init__(self) -> None:
        self.image = FakeImage("sha256:" + "b" * 64, {"config": {"Cmd": ["sh"], "Env": ["PATH=/bin"]}})

    def resolve(self, ref_or_id: str) -> FakeImage:
        from dockyard.errors import NotFound

        if ref_or_id not in ("busybox", self.image.id):
            raise NotFound(f"No such image: {ref_or_id}")
        return self.image

    def layer_dirs(self, image_id: str) -> list[Path]:
        return []


class FakeSnapshotter:
    """Writable layers as plain dirs, never mounted (the real one is tested in test_snapshotter.py)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def upper(self, key: str) -> Path:
        return self.root / key / "upper"

    def prepare(self, key: str, parents: Any) -> list[Mount]:
        self.upper(key).mkdir(parents=True, exist_ok=True)
        return []

    def view(self, key: str, parents: Any) -> list[Mount]:
        return []

    def mounts(self, key: str, parents: Any) -> list[Mount]:
        return []

    def commit(self, key: str) -> Path:
        return self.upper(key)

    def remove(self, key: str) -> None:
        import shutil

        shutil.rmtree(self.root / key, ignore_errors=True)

    def usage(self, key: str) -> int:
        return 0
