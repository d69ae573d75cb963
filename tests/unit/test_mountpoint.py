"""util/mountpoint.is_mountpoint (one statx) agrees with the mount table it replaced a scan of."""

from __future__ import annotations

import ctypes
import os
from pathlib import Path

import pytest

from dockyard.util.mountpoint import in_mountinfo, is_mountpoint


def test_agrees_with_the_mount_table_on_every_mount_point_and_beside_them() -> None:
    with open("/proc/self/mountinfo") as f:
        points = {p for p in (line.split()[4] for line in f) if "\\" not in p}  # octal escapes: not paths as written
    near = {os.path.dirname(p) for p in points} | {p.rstrip("/") + "/not-there" for p in points}
    for p in sorted(points | near):  # the table read once: in_mountinfo per path would read it thousands of times
        assert is_mountpoint(p) == (p in points), p


@pytest.mark.skipif(os.geteuid() != 0, reason="mounts a tmpfs")
def test_a_mount_made_and_undone(tmp_path: Path) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    d = tmp_path / "m"
    d.mkdir()
    assert not is_mountpoint(d)
    assert libc.mount(b"none", str(d).encode(), b"tmpfs", 0, b"size=1m") == 0, os.strerror(ctypes.get_errno())
    try:
        assert is_mountpoint(d) and in_mountinfo(d)
        (d / "sub").mkdir()
        assert not is_mountpoint(d / "sub")
    finally:
        libc.umount2(str(d).encode(), 2)
    assert not is_mountpoint(d)
