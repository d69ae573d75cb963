"""Unmounting and finding mounts (store/snapshotter.py says what to mount)."""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from pathlib import Path

from dockyard import trace
from dockyard.util.mountpoint import is_mountpoint

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


def unmount_under(base: Path) -> None:
    """Every mount at or below `base` (what a crash left of a temporary view). Our views are mounted at
    `base`'s entries, and a lazy unmount takes whatever is mounted below one with it: one statx each,
    not a read of /proc/self/mountinfo (long on a busy host) for every container removed."""
    try:
        entries = [e.path for e in os.scandir(base) if e.is_dir(follow_symlinks=False)]
    except (FileNotFoundError, NotADirectoryError):
        return
    for p in entries:
        if is_mountpoint(p):
            unmount(Path(p))


def mount_shm(target: Path, size: int) -> None:
    """A tmpfs on the host for a shareable /dev/shm (a pod's infra, docker's --ipc shareable)."""
    if is_mounted(target):
        return
    target.mkdir(parents=True, exist_ok=True)
    opts = f"mode=1777,size={size}"
    with trace.step("mount", f"mount -t tmpfs shm {target} -o nosuid,nodev,noexec,{opts}",
                    "IpcMode shareable: /dev/shm on the host, so containers joining this IPC namespace share it") as s:
        flags = 0x2 | 0x4 | 0x8  # MS_NOSUID | MS_NODEV | MS_NOEXEC
        if _libc.mount(b"shm", str(target).encode(), b"tmpfs", flags, opts.encode()) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"mount tmpfs at {target}: {os.strerror(err)}")
        s.result = "mount(2) = 0"


def is_mounted(target: Path) -> bool:
    return is_mountpoint(target)
