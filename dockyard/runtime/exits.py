"""Watch conmon's exit directory: yields a container id when its exit file appears.

inotify wakes the watcher the moment conmon renames an exit file into place (`docker run` waits on
it); a slow poll stays as the fallback. Files already present at start are reported first
(containers that died while the daemon was down).
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path

_IN_CLOSE_WRITE, _IN_MOVED_TO, _IN_CREATE = 0x8, 0x80, 0x100
_IN_NONBLOCK, _IN_CLOEXEC = os.O_NONBLOCK, os.O_CLOEXEC


def _inotify(path: Path) -> int | None:
    """An inotify fd watching `path` for new files, or None where inotify is unavailable."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        fd = libc.inotify_init1(_IN_NONBLOCK | _IN_CLOEXEC)
        if fd < 0:
            return None
        if libc.inotify_add_watch(fd, str(path).encode(), _IN_CLOSE_WRITE | _IN_MOVED_TO | _IN_CREATE) < 0:
            os.close(fd)
            return None
        return int(fd)
    except (OSError, AttributeError):
        return None


class ExitWatcher:
    def __init__(self, exit_dir: str | os.PathLike[str], interval: float = 1.0) -> None:
        self.exit_dir = Path(exit_dir)
        self.interval = interval
        # name -> (inode, ctime): a re-created file is reported again even when the inode is reused
        self._seen: dict[str, tuple[int, int]] = {}
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
                st = e.stat()
                if st.st_size == 0:
                    continue  # conmon writes atomically (g_file_set_contents), but be safe
            except FileNotFoundError:
                continue
            key = (st.st_ino, st.st_ctime_ns)
            if self._seen.get(e.name) != key:
                self._seen[e.name] = key
                new.append(e.name)
        for gone in set(self._seen) - present:
            del self._seen[gone]
        return sorted(new)

    async def __aiter__(self) -> AsyncIterator[str]:
        loop = asyncio.get_running_loop()
        self.exit_dir.mkdir(parents=True, exist_ok=True)
        wake = asyncio.Event()
        fd = _inotify(self.exit_dir)
        interval = self.interval if fd is not None else 0.05

        def on_event() -> None:
            try:
                while os.read(fd, 65536):  # type: ignore[arg-type]
                    pass
            except BlockingIOError:
                pass
            wake.set()

        if fd is not None:
            loop.add_reader(fd, on_event)
        try:
            while not self._stopped.is_set():
                wake.clear()
                for cid in self._scan():
                    yield cid
                stop = loop.create_task(self._stopped.wait())
                woken = loop.create_task(wake.wait())
                await asyncio.wait({stop, woken}, timeout=interval, return_when=asyncio.FIRST_COMPLETED)
                stop.cancel()
                woken.cancel()
        finally:
            if fd is not None:
                loop.remove_reader(fd)
                os.close(fd)

    async def run(self, callback: Callable[[str], object]) -> None:
        """Call `callback(cid)` (sync or async) for every exit until stop()."""
        async for cid in self:
            res = callback(cid)
            if asyncio.iscoroutine(res):
                await res
