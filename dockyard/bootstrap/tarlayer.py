"""Deterministic layer tars from directory trees: full layers and diff layers with whiteouts.

Entries are sorted, owners numeric with empty names, mtimes clamped to an epoch and the format
is PAX, so the same tree always gives the same bytes (and the same diff_id).
"""

from __future__ import annotations

import hashlib
import os
import stat
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

# Children of these directories are never put in a layer: the runtime provides them.
SKIP_CHILDREN = frozenset({"dev", "proc", "sys"})

Entry = tuple[tarfile.TarInfo, Path | None]


class _Hashing:
    """Write-through file wrapper that hashes and counts the bytes."""

    def __init__(self, f: BinaryIO) -> None:
        self.f, self.h, self.n = f, hashlib.sha256(), 0

    def write(self, b: bytes) -> int:
        self.h.update(b)
        self.n += len(b)
        return self.f.write(b)

    def tell(self) -> int:
        return self.n

    def flush(self) -> None:
        self.f.flush()


class _Infos:
    """Turns paths under root into TarInfos, remembering hard links already emitted."""

    def __init__(self, root: Path, epoch: int) -> None:
        self.root, self.epoch = root, epoch
        self.links: dict[tuple[int, int], str] = {}

    def info(self, rel: str, st: os.stat_result) -> Entry | None:
        path = self.root / rel
        ti = tarfile.TarInfo(rel)
        ti.mode = stat.S_IMODE(st.st_mode)
        ti.uid, ti.gid, ti.uname, ti.gname = st.st_uid, st.st_gid, "", ""
        ti.mtime = min(int(st.st_mtime), self.epoch)
        m = st.st_mode
        if stat.S_ISREG(m):
            key = (st.st_dev, st.st_ino)
            if st.st_nlink > 1 and key in self.links:
                ti.type, ti.linkname = tarfile.LNKTYPE, self.links[key]
                return ti, None
            if st.st_nlink > 1:
                self.links[key] = rel
            ti.type, ti.size = tarfile.REGTYPE, st.st_size
        elif stat.S_ISDIR(m):
            ti.type = tarfile.DIRTYPE
        elif stat.S_ISLNK(m):
            ti.type, ti.linkname = tarfile.SYMTYPE, os.readlink(path)
        elif stat.S_ISCHR(m) or stat.S_ISBLK(m):
            ti.type = tarfile.CHRTYPE if stat.S_ISCHR(m) else tarfile.BLKTYPE
            ti.devmajor, ti.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
        elif stat.S_ISFIFO(m):
            ti.type = tarfile.FIFOTYPE
        else:
            return None  # sockets have no tar form
        if not stat.S_ISLNK(m):
            caps = _capability(path)
            if caps is not None:  # file capabilities (e.g. ping) must survive the layer
                ti.pax_headers = {"SCHILY.xattr.security.capability": caps}
        return ti, (path if ti.type == tarfile.REGTYPE else None)

    def whiteout(self, rel: str) -> Entry:
        d, n = os.path.split(rel)
        ti = tarfile.TarInfo(os.path.join(d, ".wh." + n))
        ti.mode, ti.mtime, ti.uname, ti.gname = 0o644, self.epoch, "", ""
        return ti, None


def _capability(path: Path) -> str | None:
    try:
        val = os.getxattr(path, "security.capability", follow_symlinks=False)
    except OSError:
        return None
    return val.decode("utf-8", "surrogateescape")


def _walk_all(infos: _Infos, rel: str) -> Iterator[Entry]:
    base = infos.root / rel if rel else infos.root
    for name in sorted(os.listdir(base)):
        r = f"{rel}/{name}" if rel else name
        st = os.lstat(infos.root / r)
        e = infos.info(r, st)
        if e is None:
            continue
        yield e
        if stat.S_ISDIR(st.st_mode) and r not in SKIP_CHILDREN:
            yield from _walk_all(infos, r)


def tree_entries(root: Path, epoch: int) -> Iterator[Entry]:
    """Every entry of a directory tree (a full layer), sorted."""
    yield from _walk_all(_Infos(root, epoch), "")


def _same(a: os.stat_result, b: os.stat_result) -> bool:
    if (a.st_mode, a.st_uid, a.st_gid) != (b.st_mode, b.st_uid, b.st_gid):
        return False
    if stat.S_ISREG(a.st_mode):
        return a.st_size == b.st_size and a.st_mtime_ns == b.st_mtime_ns
    if stat.S_ISDIR(a.st_mode):
        return a.st_mtime_ns == b.st_mtime_ns
    if stat.S_ISCHR(a.st_mode) or stat.S_ISBLK(a.st_mode):
        return a.st_rdev == b.st_rdev
    return True


def diff_entries(new: Path, base: Path, epoch: int) -> Iterator[Entry]:
    """Entries of a layer turning `base` into `new`: changed and added paths, `.wh.` for removed ones.

    Relies on the new tree being a `cp -a` of base, so untouched files keep their mtimes.
    """
    infos = _Infos(new, epoch)

    def walk(rel: str) -> Iterator[Entry]:
        ndir, bdir = (new / rel, base / rel) if rel else (new, base)
        names = set(os.listdir(ndir))
        gone = set(os.listdir(bdir)) - names
        for name in sorted(names | gone):
            r = f"{rel}/{name}" if rel else name
            if name in gone:
                yield infos.whiteout(r)
                continue
            nst = os.lstat(new / r)
            try:
                bst: os.stat_result | None = os.lstat(base / r)
            except FileNotFoundError:
                bst = None
            isdir = stat.S_ISDIR(nst.st_mode)
            if bst is None or stat.S_IFMT(bst.st_mode) != stat.S_IFMT(nst.st_mode):
                e = infos.info(r, nst)
                if e is not None:
                    yield e
                    if isdir and r not in SKIP_CHILDREN:
                        yield from _walk_all(infos, r)
                continue
            link_changed = stat.S_ISLNK(nst.st_mode) and os.readlink(new / r) != os.readlink(base / r)
            if not _same(nst, bst) or link_changed:
                e = infos.info(r, nst)
                if e is not None:
                    yield e
            if isdir and r not in SKIP_CHILDREN:
                yield from walk(r)

    yield from walk("")


def write_layer(entries: Iterator[Entry], out: BinaryIO) -> tuple[str, int]:
    """Write an uncompressed PAX tar of the entries; return (diff_id, size)."""
    hw = _Hashing(out)
    with tarfile.open(fileobj=hw, mode="w", format=tarfile.PAX_FORMAT) as tf:  # type: ignore[call-overload]
        for ti, path in entries:
            if path is None:
                tf.addfile(ti)
            else:
                with open(path, "rb") as f:
                    tf.addfile(ti, f)
    return "sha256:" + hw.h.hexdigest(), hw.n
