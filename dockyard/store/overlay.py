"""Overlay mounts for container root filesystems (image layers below, the container's upper dir on top)."""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from pathlib import Path

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
MNT_DETACH = 2


def mount_overlay(lower_dirs: list[Path], upper: Path, work: Path, target: Path, empty_lower: Path) -> None:
    """Mount an overlay at target. lower_dirs come bottom-first (as images list layers)."""
    lowers = [str(p) for p in reversed(lower_dirs)] or [str(empty_lower)]
    if len(lowers) == 1 and upper is None:
        lowers.append(str(empty_lower))
    opts = f"lowerdir={':'.join(lowers)},upperdir={upper},workdir={work},index=off"
    target.mkdir(parents=True, exist_ok=True)
    if _libc.mount(b"overlay", str(target).encode(), b"overlay", 0, opts.encode()) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"mount overlay at {target}: {os.strerror(err)}")


def unmount(target: Path) -> None:
    """Lazy unmount; a target that is not mounted is fine."""
    if _libc.umount2(str(target).encode(), MNT_DETACH) != 0:
        err = ctypes.get_errno()
        if err not in (22, 2):  # EINVAL: not a mount point; ENOENT: gone
            raise OSError(err, f"umount {target}: {os.strerror(err)}")


def is_mounted(target: Path) -> bool:
    t = str(target)
    with open("/proc/self/mountinfo") as f:
        return any(line.split()[4] == t for line in f)
