"""One lock for every Dockyard daemon on the host, held from reading the host's routes to pick a free
subnet until the bridge holding it is up (its route then shows the subnet taken).

Without it two daemons picking at once both found the same default pool free: two bridges with one
gateway address, and the second network's DNS server could not bind ("Address already in use"). Seen
with several test runs on one host, and in CI (docker-py's daemon makes networks while pytest's do).
A subnet given by the user is not picked: no lock. A daemon that cannot open the file (rootless: its
bridges live in its own network namespace) picks alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

LOCK_PATH = Path("/run/dockyard-subnets.lock")


def _open() -> int | None:
    try:
        return os.open(LOCK_PATH, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError:
        return None


@contextlib.contextmanager
def held() -> Iterator[None]:
    """The lock, blocking this thread until it is ours (for code already off the event loop)."""
    fd = _open()
    try:
        if fd is not None:
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        if fd is not None:
            os.close(fd)  # the last close of the file drops the lock


@contextlib.asynccontextmanager
async def held_async() -> AsyncIterator[None]:
    """The lock, waited for in a worker thread."""
    fd = _open()
    try:
        if fd is not None:
            await asyncio.to_thread(fcntl.flock, fd, fcntl.LOCK_EX)
        yield
    finally:
        if fd is not None:
            os.close(fd)
