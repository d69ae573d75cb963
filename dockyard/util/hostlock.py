"""Locks shared by every Dockyard daemon (and the test suite) on one host, for the host-global things
two daemons must not do at once: flock(2) on `/run/dockyard-<name>.lock`.

- "subnets": held from reading the host's routes to pick a free subnet until the bridge holding it is
  up (its route then shows the subnet taken). Without it two daemons picking at once both found the
  same default pool free: two bridges with one gateway address, and the second network's DNS server
  could not bind. A subnet given by the user is not picked: no lock.
- "favordynmods": around reading and remounting the cgroup2 superblock's option (runtime/cgroup_tuning).

A daemon that cannot open the file (rootless: its bridges live in its own network namespace, and it
tunes no cgroup) goes on alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path


def path(name: str) -> Path:
    return Path(f"/run/dockyard-{name}.lock")


def _open(name: str) -> int | None:
    try:
        return os.open(path(name), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError:
        return None


@contextlib.contextmanager
def held(name: str) -> Iterator[None]:
    """The lock, blocking this thread until it is ours (for code already off the event loop)."""
    fd = _open(name)
    try:
        if fd is not None:
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        if fd is not None:
            os.close(fd)  # the last close of the file drops the lock


@contextlib.asynccontextmanager
async def held_async(name: str) -> AsyncIterator[None]:
    """The lock, waited for in a worker thread."""
    fd = _open(name)
    try:
        if fd is not None:
            await asyncio.to_thread(fcntl.flock, fd, fcntl.LOCK_EX)
        yield
    finally:
        if fd is not None:
            os.close(fd)
