"""Unmounting and finding mounts (store/snapshotter.py says what to mount)."""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from pathlib import Path

from dockyard import trace

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
MNT_DETACH = 2


def unmount(target: Path) -> None:
    """Lazy unmount; a target that is not mounted is fine."""
    if _libc.umount2(str(target).encode(), MNT_DETACH) != 0:
        err = ctypes.get_errno()
        if err not in (22, 2):  # EINVAL: not a mount point; ENOENT: gone
            raise OSError(err, f"umount {target}: {os.strerror(err)}")
        return  # nothing was mounted: no change to record
    trace.seen("mount", f"umount2 {target} MNT_DETACH", "umount2(2) = 0",
               "the root filesystem goes with the process; the layers stay for the next start")


def is_mounted(target: Path) -> bool:
    t = str(target)
    with open("/proc/self/mountinfo") as f:
        return any(line.split()[4] == t for line in f)
