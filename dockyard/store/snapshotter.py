"""Writable snapshots over read-only layers: the lifecycle containerd's Snapshotter gives
(prepare, view, mounts, commit, remove), so containers, the builder, `commit` and `explain`
never join "upper" and "work" by hand.

An active snapshot `key` is `root/<key>/{upper,work}`; its parents are the read-only layer dirs
below it, bottom first (an image's layers from `store/snapshots.py`, then a container's init
layer). Unlike containerd's, a parent is a directory rather than a committed key: committed
layers live in the layer store (`store/snapshots.Snapshotter`), which takes a committed
snapshot's upper dir by rename (`adopt`). A snapshot's user gets `Mount`s and mounts them where
it likes; only the snapshotter knows the layout under `root`.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import os
import shutil
import subprocess
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from dockyard import trace
from dockyard.errors import NotFound
from dockyard.store.layers import OVERLAY_USERXATTR

# In a user namespace (rootless) overlay keeps its metadata in user.overlay.* xattrs (store/layers.py).
_USERXATTR: tuple[str, ...] = ("userxattr",) if OVERLAY_USERXATTR else ()
# "overlay" (the kernel's) or "fuse-overlayfs": rootless on a kernel that refuses overlayfs in a user
# namespace (before 5.11), or when asked (DOCKYARD_ROOTLESS_OVERLAY=fuse-overlayfs); set at daemon start.
_DRIVER = ["overlay"]
_FUSE_OPTIONS = ("lowerdir", "upperdir", "workdir")


def use_fuse_overlayfs() -> None:
    _DRIVER[0] = "fuse-overlayfs"


def driver() -> str:
    return _DRIVER[0]


def probe_overlay(scratch: Path) -> str | None:
    """None when the kernel's overlayfs mounts here (in this user namespace), else why not."""
    for part in ("l1", "l2", "u", "w", "m"):
        (scratch / part).mkdir(parents=True, exist_ok=True)
    opts = f"lowerdir={scratch / 'l1'}:{scratch / 'l2'},upperdir={scratch / 'u'},workdir={scratch / 'w'}"
    opts += ",userxattr" if _USERXATTR else ""
    try:
        if _libc.mount(b"overlay", str(scratch / "m").encode(), b"overlay", 0, opts.encode()) != 0:
            return os.strerror(ctypes.get_errno())
        _libc.umount2(str(scratch / "m").encode(), 2)
        return None
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


@dataclass(frozen=True)
class Mount:
    """One mount, as containerd's mount.Mount: enough to mount it, and to read its parts back."""

    type: str
    source: str
    options: tuple[str, ...]

    def option(self, name: str) -> str | None:
        for o in self.options:
            k, eq, v = o.partition("=")
            if k == name and eq:
                return v
        return None

    def mount(self, target: Path) -> None:
        target.mkdir(parents=True, exist_ok=True)
        opts = ",".join(self.options)
        lowers = (self.option("lowerdir") or "").split(":")
        with trace.step("mount", f"mount -t {self.type} {self.source} {target} -o {opts}",
                        "the root filesystem: read-only layers (lowerdir, top first) under a writable upperdir"
                        if self.option("upperdir") else "a read-only view of the layers (no upperdir)",
                        [f"lowerdir {d}" for d in lowers if d]) as s:
            if self.type == "fuse-overlayfs":  # a FUSE daemon of its own, left running until the unmount
                fopts = ",".join(o for o in self.options if o.partition("=")[0] in _FUSE_OPTIONS)
                p = subprocess.run([shutil.which("fuse-overlayfs") or "fuse-overlayfs", "-o", fopts, str(target)],
                                   capture_output=True, text=True)
                if p.returncode != 0:
                    raise OSError(errno.EIO, f"fuse-overlayfs at {target}: {p.stderr.strip()}")
                s.result = "fuse-overlayfs: mounted"
                return
            if _libc.mount(self.source.encode(), str(target).encode(), self.type.encode(), 0, opts.encode()) != 0:
                err = ctypes.get_errno()
                raise OSError(err, f"mount {self.type} at {target}: {os.strerror(err)}")
            s.result = "mount(2) = 0"


def mount_all(mounts: Sequence[Mount], target: Path) -> None:
    for m in mounts:
        m.mount(target)


class Snapshotter(Protocol):
    """What containers and the builder need from a writable-layer store; `tests/unit/
    test_snapshotter.py` is the suite any implementation passes."""

    def prepare(self, key: str, parents: Sequence[Path]) -> list[Mount]:
        """A writable snapshot on top of `parents` (bottom first); preparing a key that exists
        keeps its changes."""
        ...

    def view(self, key: str, parents: Sequence[Path]) -> list[Mount]:
        """A read-only snapshot of `parents`: nothing written through it can persist."""
        ...

    def mounts(self, key: str, parents: Sequence[Path]) -> list[Mount]:
        """The mounts of a prepared snapshot (mounting them fails when `key` was never prepared)."""
        ...

    def commit(self, key: str) -> Path:
        """End a writable snapshot: its changes as one finished directory (overlay whiteouts
        included) that the caller consumes, by rename, into the layer store. Nothing may have
        it mounted any more."""
        ...

    def remove(self, key: str) -> None:
        """Drop the snapshot and its changes; a key already gone is fine."""
        ...

    def upper(self, key: str) -> Path:
        """The directory holding the snapshot's changes (read it, for diffs and sizes)."""
        ...

    def usage(self, key: str) -> int:
        """Bytes the snapshot's changes take (Docker's SizeRw)."""
        ...


class OverlaySnapshotter:
    """Active snapshots as overlay upper/work dirs under `root`."""

    def __init__(self, root: Path, empty_dir: Path) -> None:
        self.root = root
        self.empty_dir = empty_dir  # overlay needs a lowerdir; an image with no layers gets this one
        self.empty_dir.mkdir(parents=True, exist_ok=True)

    def _dir(self, key: str) -> Path:
        if not key or "/" in key or key in (".", ".."):
            raise ValueError(f"invalid snapshot key {key!r}")
        return self.root / key

    def upper(self, key: str) -> Path:
        return self._dir(key) / "upper"

    def prepare(self, key: str, parents: Sequence[Path]) -> list[Mount]:
        d = self._dir(key)
        with trace.step("file", f"mkdir {d}/upper {d}/work", "a writable snapshot: its changes go to upper "
                        "(overlay's upperdir), work is overlay's scratch dir for atomic copy-ups"):
            (d / "upper").mkdir(parents=True, exist_ok=True)
            (d / "work").mkdir(exist_ok=True)
        return self.mounts(key, parents)

    def view(self, key: str, parents: Sequence[Path]) -> list[Mount]:
        # Without upperdir overlay is read-only, and wants two lowers at least.
        d = self._dir(key)
        d.mkdir(parents=True, exist_ok=True)
        lowers = [str(p) for p in reversed(parents)]
        if _DRIVER[0] == "fuse-overlayfs":  # it has no read-only mode: a scratch upper, dropped with the view
            (d / "view-upper").mkdir(exist_ok=True)
            (d / "view-work").mkdir(exist_ok=True)
            return [Mount("fuse-overlayfs", "fuse-overlayfs", (f"lowerdir={':'.join(lowers or [str(self.empty_dir)])}",
                                                               f"upperdir={d / 'view-upper'}",
                                                               f"workdir={d / 'view-work'}"))]
        while len(lowers) < 2:
            pad = d / f"empty{len(lowers)}"
            pad.mkdir(exist_ok=True)
            lowers.append(str(pad))
        return [Mount("overlay", "overlay", (f"lowerdir={':'.join(lowers)}", "index=off", *_USERXATTR))]

    def mounts(self, key: str, parents: Sequence[Path]) -> list[Mount]:
        d = self._dir(key)
        lowers = [str(p) for p in reversed(parents)] or [str(self.empty_dir)]
        return [Mount(_DRIVER[0], _DRIVER[0], (f"lowerdir={':'.join(lowers)}", f"upperdir={d / 'upper'}",
                                             f"workdir={d / 'work'}", "index=off", *_USERXATTR))]

    def commit(self, key: str) -> Path:
        d = self._dir(key)
        if not (d / "upper").is_dir():
            raise NotFound(f"snapshot {key} does not exist")
        with trace.step("file", f"rm -rf {d}/work (commit {d}/upper)",
                        "the writable layer is finished: its upper dir becomes a layer, overlay's scratch goes"):
            shutil.rmtree(d / "work", ignore_errors=True)  # overlay's scratch; holds nothing of the layer
        return d / "upper"

    def remove(self, key: str) -> None:
        d = self._dir(key)
        if (d / "upper").exists():
            with trace.step("file", f"rm -rf {d}/upper {d}/work", "the snapshot's changes go with it"):
                for part in ("upper", "work"):
                    shutil.rmtree(d / part, ignore_errors=True)
        for pad in d.glob("empty*"):
            with contextlib.suppress(OSError):
                pad.rmdir()
        for part in ("view-upper", "view-work"):  # fuse-overlayfs views' scratch
            shutil.rmtree(d / part, ignore_errors=True)
        with contextlib.suppress(OSError):
            d.rmdir()  # only when nothing else (a container's log, init layer) shares the dir

    def usage(self, key: str) -> int:
        total = 0
        for root, _d, files in os.walk(self.upper(key)):
            for f in files:
                with contextlib.suppress(OSError):
                    total += os.lstat(os.path.join(root, f)).st_size
        return total


@contextlib.contextmanager
def mounted(mounts: Sequence[Mount], target: Path) -> Iterator[Path]:
    """Mount at target for the block's length; the target dir goes too when it was made here."""
    from dockyard.store.overlay import unmount

    made = not target.exists()
    mount_all(mounts, target)
    try:
        yield target
    finally:
        unmount(target)
        if made:
            with contextlib.suppress(OSError):
                target.rmdir()
