"""Watch conmon's exit directory: yields a container id when its exit file appears.

inotify wakes the watcher the moment conmon renames an exit file into place (`docker run` waits on
it); a slow poll stays as the fallback. Files already present at start are reported first
(containers that died while the daemon was down).

conmon writes `<id>.XXXXXX` and renames it to `<id>` (g_file_set_contents): six events, of which only
the last names an exit file. The events' names say which file to look at; the directory is scanned
whole only at start, at the poll and when the kernel's queue overflowed. Before, each event woke a
scan of it: three scans per exit, the first while conmon was still writing, on the way to `run`'s answer.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import os
import struct
from collections.abc import AsyncIterator, Callable
from pathlib import Path

_IN_CLOSE_WRITE, _IN_MOVED_TO, _IN_CREATE, _IN_Q_OVERFLOW = 0x8, 0x80, 0x100, 0x4000
_EVENT = struct.Struct("iIII")  # struct inotify_event: wd, mask, cookie, len; then len bytes of name
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
        self._stopped = False
        self._wake = asyncio.Event()

    def forget(self, cid: str) -> None:
        """Call after finalizing a container whose exit file you removed (or will reuse)."""
        self._seen.pop(cid, None)

    def stop(self) -> None:
        self._stopped = True
        self._wake.set()

    @staticmethod
    def _is_exit_file(name: str) -> bool:
        return not name.startswith(".") and "." not in name  # not conmon's `<id>.XXXXXX` being written

    def _new(self, name: str, st: os.stat_result) -> bool:
        """Whether the file is one not reported yet (a re-created one is new again)."""
        if st.st_size == 0:
            return False  # conmon writes atomically (g_file_set_contents), but be safe
        key = (st.st_ino, st.st_ctime_ns)
        if self._seen.get(name) == key:
            return False
        self._seen[name] = key
        return True

    def _scan(self) -> list[str]:
        new: list[str] = []
        present: set[str] = set()
        try:
            entries = list(os.scandir(self.exit_dir))
        except FileNotFoundError:
            return new
        for e in entries:
            if not self._is_exit_file(e.name):
                continue
            present.add(e.name)
            try:
                st = e.stat()
            except FileNotFoundError:
                continue
            if self._new(e.name, st):
                new.append(e.name)
        for gone in set(self._seen) - present:
            del self._seen[gone]
        return sorted(new)

    def _check(self, names: set[str]) -> list[str]:
        """Those of the named files (from inotify's events) that are new exit files."""
        new: list[str] = []
        for name in sorted(names):
            try:
                st = os.stat(self.exit_dir / name)
            except OSError:  # gone again (removed with its container)
                self._seen.pop(name, None)
                continue
            if self._new(name, st):
                new.append(name)
        return new

    async def __aiter__(self) -> AsyncIterator[str]:
        loop = asyncio.get_running_loop()
        self.exit_dir.mkdir(parents=True, exist_ok=True)
        wake = self._wake
        fd = _inotify(self.exit_dir)
        interval = self.interval if fd is not None else 0.05
        named: set[str] = set()  # files the events named since the last look
        scan = True  # the whole directory: at start, at the poll, after an overflow

        def on_event() -> None:
            nonlocal scan
            try:
                while data := os.read(fd, 65536):  # type: ignore[arg-type]
                    at = 0
                    while at + _EVENT.size <= len(data):
                        _wd, mask, _cookie, size = _EVENT.unpack_from(data, at)
                        name = data[at + _EVENT.size:at + _EVENT.size + size].rstrip(b"\0").decode(errors="replace")
                        at += _EVENT.size + size
                        if mask & _IN_Q_OVERFLOW:
                            scan = True
                        elif name and self._is_exit_file(name):
                            named.add(name)
            except BlockingIOError:
                pass
            if scan or named:
                wake.set()

        if fd is not None:
            loop.add_reader(fd, on_event)
        try:
            while not self._stopped:
                wake.clear()
                if scan:
                    scan = False
                    named.clear()
                    new = self._scan()
                else:
                    new = self._check(named)
                    named.clear()
                for cid in new:
                    yield cid
                if self._stopped or wake.is_set():
                    continue
                try:
                    async with asyncio.timeout(interval):
                        await wake.wait()
                except TimeoutError:
                    scan = True
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
