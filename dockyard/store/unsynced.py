"""Big blobs and snapshots are published before their bytes reach the disk, each with a marker that
says which boot wrote it.

A daemon crash (kill -9) keeps the page cache: everything it wrote stays whole. Only a power loss or a
kernel crash, so a new boot, can leave a published blob or snapshot torn. Instead of an fsync per blob
and a syncfs per snapshot (a load, pull or build waiting for GBs to reach a disk shared with everyone;
dockerd syncs no layer data at all) the writer makes a tiny marker, synced, before it publishes: the
boot id. A background flush syncs the filesystem once writing has been quiet for a moment and then
drops the markers it covered. At daemon start a marker from another boot means the item may be torn:
its store verifies it (a blob: its digest) or drops it (a snapshot; the image service extracts it again
from its blob, or drops the images that need it).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import threading
import time
from pathlib import Path

from dockyard.util.fs import fsync_dir, syncfs

log = logging.getLogger("dockyard.store")

QUIET = float(os.environ.get("DOCKYARD_UNSYNCED_QUIET") or 2.0)  # s without a new marker before the flush
MAX_DELAY = 30.0  # s a marker waits at most (a steady stream of writes still gets flushed)
BOOT_ID_FILE = "/proc/sys/kernel/random/boot_id"


@functools.cache
def boot_id() -> str:
    try:
        return Path(BOOT_ID_FILE).read_text().strip()
    except OSError:
        return ""  # no /proc: every marker then counts as another boot's, so is checked at start


def mark(marker: Path) -> None:
    """Write the marker (this boot's id) and sync it and its directory: it must be on disk before the
    rename that publishes its item."""
    fd = os.open(marker, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
    try:
        os.write(fd, boot_id().encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    fsync_dir(marker.parent)


def this_boot(marker: Path) -> bool:
    """Whether the marker was written since the machine booted (its item's bytes are in the page cache
    at least); an unreadable or torn marker is another boot's."""
    try:
        return bool(boot_id()) and marker.read_text().strip() == boot_id()
    except OSError:
        return False


class _Flusher:
    """One thread: waits for the markers to stop coming for QUIET seconds, syncs their filesystems
    (one syncfs each) and deletes the markers registered before the sync started."""

    def __init__(self) -> None:
        self._cv = threading.Condition()
        self._pending: dict[Path, int] = {}  # marker -> generation registered in
        self._gen = 0
        self._last = self._first = 0.0
        self._thread: threading.Thread | None = None

    def defer(self, marker: Path) -> None:
        with self._cv:
            self._gen += 1
            now = time.monotonic()
            if not self._pending:
                self._first = now
            self._pending[marker] = self._gen
            self._last = now
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="unsynced-flush", daemon=True)
                self._thread.start()
            self._cv.notify()

    def _run(self) -> None:
        while True:
            with self._cv:
                while not self._pending:
                    self._cv.wait()
                while True:
                    now = time.monotonic()
                    due = min(self._last + QUIET, self._first + MAX_DELAY)
                    if now >= due:
                        break
                    self._cv.wait(due - now)
            try:
                self.flush()
            except OSError as e:  # the markers stay: checked at the next start if the machine went down
                log.warning("flushing unsynced blobs and snapshots: %s", e)
                time.sleep(MAX_DELAY)

    def flush(self) -> None:
        with self._cv:
            gen = self._gen
            markers = list(self._pending)
        devs: dict[int, Path] = {}
        for m in markers:
            with contextlib.suppress(OSError):
                devs.setdefault(os.stat(m.parent).st_dev, m.parent)
        for d in devs.values():
            syncfs(d)
        with self._cv:
            for m in markers:
                if self._pending.get(m, gen + 1) <= gen:  # (names are unique: never one registered since)
                    del self._pending[m]
                    with contextlib.suppress(OSError):
                        m.unlink()  # no sync needed: a marker that comes back costs a check, nothing more
            if self._pending:
                self._first = time.monotonic()


_flusher = _Flusher()


def defer(marker: Path) -> None:
    """The item behind this marker is published: sync it with the next flush, then drop the marker."""
    _flusher.defer(marker)


def flush() -> None:
    """Sync and drop every marker registered so far, now (daemon stop, tests)."""
    _flusher.flush()
