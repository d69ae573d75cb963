"""Watch conmon's exit directory: yields a container id when its exit file appears.

A ~50 ms poll of one directory is cheap and needs no inotify plumbing; files already present
at start are reported first (containers that died while the daemon was down).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path


class ExitWatcher:
    def __init__(self, exit_dir: str | os.PathLike[str], interval: float = 0.05) -> None:
        self.exit_dir = Path(exit_dir)
        self.interval = interval
        self._seen: dict[str, int] = {}  # name -> inode, so a re-created file is reported again
        self._stopped = asyncio.Event()

    def forget(self, cid: str) -> None:
        """Call after finalizing a container whose exit file you removed (or will reuse)."""
        self._seen.pop(cid, None)

    def stop(self) -> None:
        self._stopped.set()

    def _scan(self) -> list[str]:
        new: list[str] = []
        present: set[str] = set()
        try:
            entries = list(os.scandir(self.exit_dir))
        except FileNotFoundError:
            return new
        for e in entries:
            if e.name.startswith("."):
                continue
            present.add(e.name)
            try:
                ino = e.inode()
                if e.stat().st_size == 0:
                    continue  # conmon writes atomically (g_file_set_contents), but be safe
            except FileNotFoundError:
                continue
            if self._seen.get(e.name) != ino:
                self._seen[e.name] = ino
                new.append(e.name)
        for gone in set(self._seen) - present:
            del self._seen[gone]
        return sorted(new)

    async def __aiter__(self) -> AsyncIterator[str]:
        while not self._stopped.is_set():
            for cid in self._scan():
                yield cid
            try:
                await asyncio.wait_for(self._stopped.wait(), self.interval)
            except TimeoutError:
                pass

    async def run(self, callback: Callable[[str], object]) -> None:
        """Call `callback(cid)` (sync or async) for every exit until stop()."""
        async for cid in self:
            res = callback(cid)
            if asyncio.iscoroutine(res):
                await res
