"""Layer tars <-> directories: safe apply (OCI whiteouts -> overlay whiteouts), diff, changes.

Every path in an untrusted tar is resolved component by component from an open directory fd with
O_NOFOLLOW, so no entry can reach outside `dest` through `..`, an absolute name, a symlink made by an
earlier entry, or a hard link; device nodes are refused (char 0:0 is an overlay whiteout, allowed).
"""

from __future__ import annotations

import bz2
import errno
import gzip
import hashlib
import io
import lzma
import os
import shutil
import stat
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, BinaryIO

import zstandard

from dockyard.errors import InvalidParameter

WHITEOUT_PREFIX = ".wh."
OPAQUE_MARKER = ".wh..wh..opq"
OPAQUE_XATTR = "trusted.overlay.opaque"
# xattrs a layer may carry; trusted.* (overlay metadata) must never come from an image.
_ALLOWED_XATTR_PREFIXES = ("user.", "security.capability")
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_CHUNK = 1 << 20


@dataclass(frozen=True)
class LayerInfo:
    diff_id: str  # sha256 of the uncompressed tar
    size: int  # bytes of regular file content


class _Prefixed(io.RawIOBase):
    """A reader that first replays bytes already peeked from `f`."""

    def __init__(self, prefix: bytes, f: IO[bytes]) -> None:
        self._prefix = prefix
        self._f = f

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        if self._prefix:
            n = min(len(b), len(self._prefix))
            b[:n] = self._prefix[:n]
            self._prefix = self._prefix[n:]
            return n
        data = self._f.read(len(b))
        b[: len(data)] = data
        return len(data)


def decompressed(f: IO[bytes]) -> IO[bytes]:
    """The uncompressed stream of `f`: gzip, zstd, xz, bzip2 or plain, detected by magic."""
    head = b""
    while len(head) < 6:
        chunk = f.read(6 - len(head))
        if not chunk:
            break
        head += chunk
    raw = io.BufferedReader(_Prefixed(head, f), _CHUNK)
    if head.startswith(b"\x1f\x8b"):
        return gzip.GzipFile(fileobj=raw, mode="rb")  # type: ignore[return-value]
    if head.startswith(b"\x28\xb5\x2f\xfd"):
        return zstandard.ZstdDecompressor().stream_reader(raw, read_across_frames=True)  # type: ignore[return-value]
    if head.startswith(b"\xfd7zXZ\x00"):
        return lzma.LZMAFile(raw)
    if head.startswith(b"BZh"):
        return bz2.BZ2File(raw)
    return raw


class _HashingReader(io.RawIOBase):
    def __init__(self, f: IO[bytes]) -> None:
        self._f = f
        self.hash = hashlib.sha256()

    def readable(self) -> bool:
        return True

    def read(self, n: int | None = -1) -> bytes:
        data = self._f.read(-1 if n is None else n)
        self.hash.update(data)
        return data

    def readinto(self, b: Any) -> int:
        data = self.read(len(b))
        b[: len(data)] = data
        return len(data)


class _HashingWriter(io.RawIOBase):
    def __init__(self, f: IO[bytes]) -> None:
        self._f = f
        self.hash = hashlib.sha256()

    def writable(self) -> bool:
        return True

    def write(self, b: Any) -> int:
        data = bytes(b)
        self._f.write(data)
        self.hash.update(data)
        return len(data)


def split_path(name: str) -> list[str]:
    """Archive name -> components; refuses absolute names and `..`."""
    if name.startswith("/"):
        raise InvalidParameter(f"invalid layer: refusing absolute path {name!r}")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise InvalidParameter(f"invalid layer: refusing path with '..' component {name!r}")
    return parts


def open_dir(root_fd: int, parts: list[str], create: bool, what: str) -> int:
    """Open root/parts[0]/... as a directory fd without following any symlink."""
    fd = os.dup(root_fd)
    try:
        for p in parts:
            try:
                nfd = os.open(p, _DIR_FLAGS, dir_fd=fd)
            except FileNotFoundError:
                if not create:
                    raise InvalidParameter(f"invalid layer: {what!r}: {'/'.join(parts)} does not exist") from None
                os.mkdir(p, 0o755, dir_fd=fd)
                nfd = os.open(p, _DIR_FLAGS, dir_fd=fd)
            except OSError as e:
                if e.errno in (errno.ELOOP, errno.ENOTDIR):
                    raise InvalidParameter(
                        f"invalid layer: refusing to write {what!r} through symlink or non-directory {p!r}"
                    ) from None
                raise
            os.close(fd)
            fd = nfd
    except BaseException:
        os.close(fd)
        raise
    return fd


def _lstat_at(dfd: int, name: str) -> os.stat_result | None:
    try:
        return os.stat(name, dir_fd=dfd, follow_symlinks=False)
    except FileNotFoundError:
        return None


def _remove_at(dfd: int, name: str, keep_dir: bool = False) -> bool:
    """Remove an existing entry; returns True when it is a directory that was kept."""
    st = _lstat_at(dfd, name)
    if st is None:
        return False
    if stat.S_ISDIR(st.st_mode):
        if keep_dir:
            return True
        shutil.rmtree(name, dir_fd=dfd)
    else:
        os.unlink(name, dir_fd=dfd)
    return False


def _xattrs(m: tarfile.TarInfo) -> dict[str, bytes]:
    out = {}
    for k, v in m.pax_headers.items():
        if k.startswith("SCHILY.xattr."):
            name = k[len("SCHILY.xattr."):]
            if name.startswith(_ALLOWED_XATTR_PREFIXES):
                out[name] = v.encode("utf-8", "surrogateescape")
    return out


def _set_xattrs(fd: int, xattrs: dict[str, bytes]) -> None:
    for k, v in xattrs.items():
        try:
            os.setxattr(fd, k, v)
        except OSError as e:
            if e.errno not in (errno.ENOTSUP, errno.EPERM):
                raise


def _ns(m: tarfile.TarInfo) -> int:
    return int(m.mtime * 1_000_000_000)


class _Applier:
    def __init__(self, tf: tarfile.TarFile, root_fd: int) -> None:
        self.tf = tf
        self.root_fd = root_fd
        self.size = 0
        self.dir_times: list[tuple[list[str], int]] = []

    def entry(self, m: tarfile.TarInfo) -> None:
        parts = split_path(m.name)
        if not parts:  # "./": the root itself
            if m.isdir():
                os.fchown(self.root_fd, m.uid, m.gid)
                os.fchmod(self.root_fd, m.mode & 0o7777)
                self.dir_times.append(([], _ns(m)))
            return
        base = parts[-1]
        pfd = open_dir(self.root_fd, parts[:-1], True, m.name)
        try:
            if base == OPAQUE_MARKER:
                os.setxattr(pfd, OPAQUE_XATTR, b"y")
            elif base.startswith(WHITEOUT_PREFIX):
                target = base[len(WHITEOUT_PREFIX):]
                if target in ("", ".", ".."):
                    raise InvalidParameter(f"invalid layer: bad whiteout {m.name!r}")
                _remove_at(pfd, target)
                os.mknod(target, stat.S_IFCHR, os.makedev(0, 0), dir_fd=pfd)
            else:
                self._node(m, pfd, parts, base)
        finally:
            os.close(pfd)

    def _node(self, m: tarfile.TarInfo, pfd: int, parts: list[str], base: str) -> None:
        if m.isblk() or (m.ischr() and (m.devmajor, m.devminor) != (0, 0)):
            raise InvalidParameter(f"invalid layer: refusing device node {m.name!r}")
        if not (m.isreg() or m.isdir() or m.issym() or m.islnk() or m.isfifo() or m.ischr()):
            return  # unknown entry types are skipped, as Docker does
        kept_dir = _remove_at(pfd, base, keep_dir=m.isdir())
        if m.isdir():
            if not kept_dir:
                os.mkdir(base, 0o700, dir_fd=pfd)
            fd = os.open(base, _DIR_FLAGS, dir_fd=pfd)
            try:
                self._attrs(fd, m)
            finally:
                os.close(fd)
            self.dir_times.append((parts, _ns(m)))
        elif m.isreg():
            fd = os.open(base, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=pfd)
            with os.fdopen(fd, "wb", closefd=True) as out:
                src = self.tf.extractfile(m)
                assert src is not None
                shutil.copyfileobj(src, out, _CHUNK)
                out.flush()
                self._attrs(out.fileno(), m)
                os.utime(out.fileno(), ns=(_ns(m), _ns(m)))
            self.size += m.size
        elif m.issym():
            os.symlink(m.linkname, base, dir_fd=pfd)
            os.chown(base, m.uid, m.gid, dir_fd=pfd, follow_symlinks=False)
            os.utime(base, ns=(_ns(m), _ns(m)), dir_fd=pfd, follow_symlinks=False)
        elif m.islnk():
            tparts = split_path(m.linkname)
            if not tparts:
                raise InvalidParameter(f"invalid layer: bad hard link target for {m.name!r}")
            tfd = open_dir(self.root_fd, tparts[:-1], False, m.linkname)
            try:
                st = _lstat_at(tfd, tparts[-1])
                if st is None or stat.S_ISDIR(st.st_mode):
                    raise InvalidParameter(
                        f"invalid layer: hard link {m.name!r} to missing or invalid target {m.linkname!r}"
                    )
                os.link(tparts[-1], base, src_dir_fd=tfd, dst_dir_fd=pfd, follow_symlinks=False)
            finally:
                os.close(tfd)
        elif m.isfifo() or m.ischr():  # ischr here is always the 0:0 whiteout device
            if m.isfifo():
                os.mkfifo(base, 0o600, dir_fd=pfd)
            else:
                os.mknod(base, stat.S_IFCHR, os.makedev(0, 0), dir_fd=pfd)
            os.chown(base, m.uid, m.gid, dir_fd=pfd, follow_symlinks=False)
            os.chmod(base, m.mode & 0o7777, dir_fd=pfd)
            os.utime(base, ns=(_ns(m), _ns(m)), dir_fd=pfd, follow_symlinks=False)

    def _attrs(self, fd: int, m: tarfile.TarInfo) -> None:
        os.fchown(fd, m.uid, m.gid)
        os.fchmod(fd, m.mode & 0o7777)  # after chown, which clears setuid bits
        _set_xattrs(fd, _xattrs(m))

    def finish(self) -> None:
        # Directory mtimes last, deepest first: creating children changed them.
        for parts, ns in sorted(self.dir_times, key=lambda t: -len(t[0])):
            try:
                fd = open_dir(self.root_fd, parts, False, "/".join(parts))
            except InvalidParameter:
                continue  # removed or replaced by a later entry
            try:
                os.utime(fd, ns=(ns, ns))
            finally:
                os.close(fd)


def apply_layer(fileobj: IO[bytes], dest: Path) -> LayerInfo:
    """Extract a (gzip/zstd/plain) layer tar into the directory `dest`; returns its diff_id."""
    h = _HashingReader(decompressed(fileobj))
    root_fd = os.open(dest, _DIR_FLAGS)
    try:
        try:
            with tarfile.open(fileobj=h, mode="r|", errorlevel=2) as tf:  # type: ignore[call-overload]
                ap = _Applier(tf, root_fd)
                for m in tf:
                    ap.entry(m)
        except (tarfile.TarError, EOFError, zstandard.ZstdError, lzma.LZMAError, gzip.BadGzipFile) as e:
            raise InvalidParameter(f"invalid layer tar: {e}") from e
        while h.read(_CHUNK):  # the diff_id covers the whole stream, padding included
            pass
        ap.finish()
    finally:
        os.close(root_fd)
    return LayerInfo("sha256:" + h.hash.hexdigest(), ap.size)


# ---------------------------------------------------------------------------- upper dir -> tar


def _is_whiteout(st: os.stat_result) -> bool:
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == os.makedev(0, 0)


def _is_opaque(path: str) -> bool:
    try:
        return os.getxattr(path, OPAQUE_XATTR, follow_symlinks=False) == b"y"
    except OSError:
        return False


def _walk(root: str, rel: str = "") -> Iterator[tuple[str, str, os.stat_result]]:
    """(relative path, absolute path, lstat) in sorted order, parents before children."""
    with os.scandir(os.path.join(root, rel) if rel else root) as it:
        entries = sorted(it, key=lambda e: e.name)
    for e in entries:
        r = f"{rel}/{e.name}" if rel else e.name
        st = e.stat(follow_symlinks=False)
        yield r, e.path, st
        if stat.S_ISDIR(st.st_mode):
            yield from _walk(root, r)


def write_diff(upper: Path, out: BinaryIO) -> str:
    """Write the overlay upper dir as an OCI layer tar (whiteouts as `.wh.` files); returns diff_id."""
    hw = _HashingWriter(out)
    root = str(upper)
    with tarfile.open(fileobj=hw, mode="w|", format=tarfile.PAX_FORMAT) as tf:  # type: ignore[call-overload]
        for rel, path, st in _walk(root):
            if _is_whiteout(st):
                d, _, name = rel.rpartition("/")
                ti = tarfile.TarInfo((d + "/" if d else "") + WHITEOUT_PREFIX + name)
                ti.mtime = int(st.st_mtime)
                tf.addfile(ti)
                continue
            ti = tf.gettarinfo(path, rel)
            ti.uname = ti.gname = ""
            pax: dict[str, str] = {}
            if stat.S_ISDIR(st.st_mode) or stat.S_ISREG(st.st_mode):
                for k in os.listxattr(path, follow_symlinks=False):
                    if k.startswith(_ALLOWED_XATTR_PREFIXES):
                        val = os.getxattr(path, k, follow_symlinks=False)
                        pax["SCHILY.xattr." + k] = val.decode("utf-8", "surrogateescape")
            ti.pax_headers = pax
            if ti.isreg():
                with open(path, "rb") as f:
                    tf.addfile(ti, f)
            else:
                tf.addfile(ti)
            if stat.S_ISDIR(st.st_mode) and _is_opaque(path):
                op = tarfile.TarInfo(rel + "/" + OPAQUE_MARKER)
                op.mtime = int(st.st_mtime)
                tf.addfile(op)
    return "sha256:" + hw.hash.hexdigest()


def _lookup(lower: Path, rel: str) -> bool | None:
    """True if lower/rel exists, False if whited out there, None if absent (resolved without
    following symlinks out of `lower`)."""
    parts = rel.split("/")
    try:
        root_fd = os.open(lower, _DIR_FLAGS)
    except OSError:
        return None
    try:
        fd = open_dir(root_fd, parts[:-1], False, rel)
    except (InvalidParameter, OSError):
        return None
    finally:
        os.close(root_fd)
    try:
        st = _lstat_at(fd, parts[-1])
        return None if st is None else not _is_whiteout(st)
    finally:
        os.close(fd)


def _in_lowers(lowers_top_first: list[Path], rel: str) -> bool:
    for lo in lowers_top_first:
        found = _lookup(lo, rel)
        if found is not None:
            return found
    return False


def changes(upper: Path, lowers: list[Path] | None = None) -> list[dict[str, Any]]:
    """`docker diff` entries for an overlay upper dir: Kind 0 modified, 1 added, 2 deleted.

    `lowers` are the image's layer dirs bottom first (as ImageService.layer_dirs returns them)."""
    top_first = list(reversed(lowers or []))
    out: list[dict[str, Any]] = []
    for rel, _path, st in _walk(str(upper)):
        if _is_whiteout(st):
            kind = 2
        elif _in_lowers(top_first, rel):
            kind = 0
        else:
            kind = 1
        out.append({"Path": "/" + rel, "Kind": kind})
    return out
