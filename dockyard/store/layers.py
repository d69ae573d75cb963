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
import queue
import shutil
import stat
import tarfile
import threading
import zlib
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, BinaryIO

import zstandard

from dockyard.errors import InvalidParameter
from dockyard.store import safetree
from dockyard.util import rootless

try:  # ISA-L inflates gzip ~2.3x faster than zlib; optional, zlib is the fallback
    from isal import igzip as _igzip
    from isal import isal_zlib as _isal_zlib
    _GzipFile: Any = _igzip.IGzipFile
    _DECOMPRESS_ERRORS: tuple[type[BaseException], ...] = (zlib.error, _isal_zlib.error, _igzip.BadGzipFile)  # type: ignore[assignment]
except ImportError:  # pragma: no cover
    _GzipFile = gzip.GzipFile
    _DECOMPRESS_ERRORS = (zlib.error,)

WHITEOUT_PREFIX = ".wh."
OPAQUE_MARKER = ".wh..wh..opq"
# In a user namespace (rootless, issue 17) trusted.* cannot be written: overlay is mounted with
# `userxattr` there and reads its metadata from user.overlay.* instead (store/snapshotter.py).
OVERLAY_USERXATTR = rootless.in_user_namespace()
# Rootless without subordinate ids (one uid mapped): every owner becomes root, the only one there is.
SQUASH_OWNERS = OVERLAY_USERXATTR and rootless.single_id_map()
OPAQUE_XATTR = "user.overlay.opaque" if OVERLAY_USERXATTR else "trusted.overlay.opaque"
FUSE_OPAQUE_XATTR = "user.fuseoverlayfs.opaque"  # what fuse-overlayfs writes in upper dirs (it reads both)
# xattrs a layer may carry; overlay's own metadata (trusted.overlay.*, user.overlay.* under userxattr)
# must never come from an image, nor go into one.
_ALLOWED_XATTR_PREFIXES = ("user.", "security.capability")
_OVERLAY_XATTR_PREFIXES = ("user.overlay.", "trusted.overlay.", "user.fuseoverlayfs.")
_DIR_FLAGS = safetree.DIR_FLAGS
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
        return _GzipFile(fileobj=raw, mode="rb")  # type: ignore[no-any-return]
    if head.startswith(b"\x28\xb5\x2f\xfd"):
        return zstandard.ZstdDecompressor().stream_reader(raw, read_across_frames=True)
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
    """Hands each write on as it is (no copy: `f` and the hash use it at once) and hashes it."""

    def __init__(self, f: IO[bytes]) -> None:
        self._f = f
        self.hash = hashlib.sha256()
        self.n = 0

    def writable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.n

    def write(self, b: Any) -> int:
        self._f.write(b)
        self.hash.update(b)
        n = memoryview(b).nbytes
        self.n += n
        return n


class _Pipe(io.RawIOBase):
    """The decompressed layer, produced (inflated and hashed for the diff_id) by a helper thread.

    zlib/ISA-L/zstd and sha256 release the GIL, so inflating overlaps with the tar parsing and file
    writing here. Forward-only but seekable (tell, skip ahead), so tarfile reads it in random-access
    mode, without the copying of its stream mode, and file data goes from the chunks to os.write.
    """

    _DEPTH = 8  # chunks in flight

    def __init__(self, f: IO[bytes], hashed: bool = True) -> None:
        self.hash = hashlib.sha256()
        self._hashed = hashed
        self._q: queue.Queue[memoryview | BaseException | None] = queue.Queue(self._DEPTH)
        self._stop = threading.Event()
        self._buf = memoryview(b"")
        self._pos = 0  # offset of the stream at self._buf[0:]
        self._eof = False
        self._thread = threading.Thread(target=self._produce, args=(f,), name="layer-inflate", daemon=True)
        self._thread.start()

    def _produce(self, f: IO[bytes]) -> None:
        item: memoryview | BaseException | None
        try:
            src = decompressed(f)
            while not self._stop.is_set():
                chunk = src.read(_CHUNK)
                if not chunk:
                    break
                if self._hashed:
                    self.hash.update(chunk)
                self._put(memoryview(chunk))
            item = None
        except BaseException as e:  # handed to the reader, which raises it
            item = e
        self._put(item)

    def _put(self, item: memoryview | BaseException | None) -> None:
        while not self._stop.is_set():
            try:
                self._q.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def _fill(self) -> bool:
        """Make self._buf non-empty; False at the end of the stream."""
        while not self._buf:
            if self._eof:
                return False
            item = self._q.get()
            if item is None:
                self._eof = True
                return False
            if isinstance(item, BaseException):
                self._eof = True
                raise item
            self._buf = item
        return True

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, pos: int, whence: int = 0) -> int:
        if whence == 1:
            pos += self._pos
        if whence == 2 or pos < self._pos:
            raise tarfile.ReadError("layer stream cannot seek backwards")
        self.skip(pos - self._pos)
        return self._pos

    def skip(self, n: int) -> None:
        while n > 0 and self._fill():
            k = min(n, len(self._buf))
            self._buf = self._buf[k:]
            self._pos += k
            n -= k

    def read(self, n: int | None = -1) -> bytes:
        if n is None or n < 0:
            parts = []
            while self._fill():
                parts.append(bytes(self._buf))
                self._pos += len(self._buf)
                self._buf = memoryview(b"")
            return b"".join(parts)
        out = bytearray()
        while len(out) < n and self._fill():
            k = min(n - len(out), len(self._buf))
            out += self._buf[:k]
            self._buf = self._buf[k:]
            self._pos += k
        return bytes(out)

    def readinto(self, b: Any) -> int:
        data = self.read(len(b))
        b[: len(data)] = data
        return len(data)

    def copy_to(self, fd: int, n: int) -> int:
        """Write the next n bytes to fd straight from the chunks; returns how many there were."""
        done = 0
        while done < n and self._fill():
            k = min(n - done, len(self._buf))
            view = self._buf[:k]
            while view:
                view = view[os.write(fd, view):]
            self._buf = self._buf[k:]
            self._pos += k
            done += k
        return done

    def drain(self) -> None:
        """Read to the end: the diff_id covers the whole stream, end-of-archive padding included."""
        while self._fill():
            self._pos += len(self._buf)
            self._buf = memoryview(b"")

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        super().close()


def split_path(name: str) -> list[str]:
    """Archive name -> components; refuses absolute names and `..`."""
    if name.startswith("/"):
        raise InvalidParameter(f"invalid layer: refusing absolute path {name!r}")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise InvalidParameter(f"invalid layer: refusing path with '..' component {name!r}")
    return parts


def open_dir(root_fd: int, parts: list[str], create: bool, what: str) -> int:
    """Open root/parts[0]/... as a directory fd without following any symlink (safetree.open_dir)."""
    try:
        return safetree.open_dir(root_fd, parts, _mkdir if create else None)
    except FileNotFoundError:
        raise InvalidParameter(f"invalid layer: {what!r}: {'/'.join(parts)} does not exist") from None
    except OSError as e:
        if e.errno in (errno.ELOOP, errno.ENOTDIR):
            raise InvalidParameter(
                f"invalid layer: refusing to write {what!r} through symlink or non-directory in {'/'.join(parts)!r}"
            ) from None
        raise


def _mkdir(dir_fd: int, name: str) -> None:
    os.mkdir(name, 0o755, dir_fd=dir_fd)


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
            if name.startswith(_ALLOWED_XATTR_PREFIXES) and not name.startswith(_OVERLAY_XATTR_PREFIXES):
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


class _DirCache:
    """Open directory fds by path, so each entry costs one open instead of one per component.

    Dirs are opened the same safe way (O_NOFOLLOW from the root). A cached fd names a directory
    inode, so anything that removes a directory (a whiteout, a replaced entry) clears the cache:
    later entries then resolve the path afresh and cannot land in an unlinked dir."""

    LIMIT = 128

    def __init__(self, root_fd: int) -> None:
        self.root_fd = root_fd
        self.fds: OrderedDict[tuple[str, ...], int] = OrderedDict()

    def get(self, parts: list[str], create: bool, what: str) -> int:
        """A borrowed fd (valid until the next trim() or clear())."""
        key = tuple(parts)
        if not key:
            return self.root_fd
        fd = self.fds.get(key)
        if fd is not None:
            self.fds.move_to_end(key)
            return fd
        k = len(key) - 1
        while k > 0 and key[:k] not in self.fds:
            k -= 1
        fd = self.fds[key[:k]] if k > 0 else self.root_fd
        for i in range(k, len(key)):
            nfd = open_dir(fd, [key[i]], create, what)
            self.fds[key[: i + 1]] = nfd
            fd = nfd
        return fd

    def trim(self) -> None:
        while len(self.fds) > self.LIMIT:
            os.close(self.fds.popitem(last=False)[1])

    def clear(self) -> None:
        for fd in self.fds.values():
            os.close(fd)
        self.fds.clear()


# The holes one archive may make (a sparse member's size beyond the data it carries). A hole costs no
# disk here, but export, save, commit and cp write it out in full (neither our tars nor dockerd's
# carry sparse maps), so a 10 KB layer claiming terabytes would become that much disk and traffic
# later; dockerd writes every hole out as zeros at once. Real images hold kilobytes of sparse files
# (lastlog, faillog; a lastlog grown by a huge uid is the known accident); 1 GiB is far beyond that.
MAX_HOLES = 1 << 30


class HoleBudget:
    def __init__(self, limit: int = MAX_HOLES) -> None:
        self.left = limit

    def take(self, m: tarfile.TarInfo, holes: int) -> None:
        self.left -= holes
        if self.left < 0:
            raise InvalidParameter(f"archive too sparse: {m.name!r} and the sparse files before it leave "
                                   f"more than {MAX_HOLES >> 30} GiB of holes")


def write_sparse(tf: tarfile.TarFile, m: tarfile.TarInfo, fd: int, budget: HoleBudget) -> None:
    """A sparse member's data regions written where they belong and the holes left as holes
    (tarfile's reader would hand us zeros to write)."""
    regions: list[tuple[int, int]] = list(m.sparse or [])  # type: ignore[arg-type]  # typeshed says bytes
    budget.take(m, m.size - sum(size for _, size in regions))
    src = tf.fileobj
    assert src is not None
    pos = m.offset_data
    for offset, size in regions:
        src.seek(pos)
        os.lseek(fd, offset, os.SEEK_SET)
        left = size
        while left > 0:
            chunk = src.read(min(left, _CHUNK))
            if not chunk:
                raise tarfile.ReadError("unexpected end of data")
            view = memoryview(chunk)
            while view:
                view = view[os.write(fd, view):]
            left -= len(chunk)
        pos += size
    os.ftruncate(fd, m.size)


class _Applier:
    def __init__(self, tf: tarfile.TarFile, root_fd: int, pipe: _Pipe | None = None) -> None:
        self.tf = tf
        self.root_fd = root_fd
        self.pipe = pipe
        self.dirs = _DirCache(root_fd)
        self.size = 0
        self.holes = HoleBudget()
        self.dir_times: list[tuple[list[str], int]] = []

    def _remove(self, dfd: int, name: str, keep_dir: bool = False) -> bool:
        st = _lstat_at(dfd, name)
        if st is not None and stat.S_ISDIR(st.st_mode) and not keep_dir:
            self.dirs.clear()  # may hold fds of dirs under the one going away
        return _remove_at(dfd, name, keep_dir)

    def entry(self, m: tarfile.TarInfo) -> None:
        parts = split_path(m.name)
        if not parts:  # "./": the root itself
            if m.isdir():
                os.fchown(self.root_fd, m.uid, m.gid)
                os.fchmod(self.root_fd, m.mode & 0o7777)
                self.dir_times.append(([], _ns(m)))
            return
        base = parts[-1]
        self.dirs.trim()
        pfd = self.dirs.get(parts[:-1], True, m.name)
        if base == OPAQUE_MARKER:
            os.setxattr(pfd, OPAQUE_XATTR, b"y")
        elif base.startswith(WHITEOUT_PREFIX):
            target = base[len(WHITEOUT_PREFIX):]
            if target in ("", ".", ".."):
                raise InvalidParameter(f"invalid layer: bad whiteout {m.name!r}")
            self._remove(pfd, target)
            os.mknod(target, stat.S_IFCHR, os.makedev(0, 0), dir_fd=pfd)
        else:
            self._node(m, pfd, parts, base)

    def _node(self, m: tarfile.TarInfo, pfd: int, parts: list[str], base: str) -> None:
        if m.isblk() or (m.ischr() and (m.devmajor, m.devminor) != (0, 0)):
            raise InvalidParameter(f"invalid layer: refusing device node {m.name!r}")
        if not (m.isreg() or m.isdir() or m.issym() or m.islnk() or m.isfifo() or m.ischr()):
            return  # unknown entry types are skipped, as Docker does
        # Create first: snapshot dirs start empty, so the name is almost always free; only on
        # EEXIST (a name repeated in the tar) is the old entry removed (a directory is kept).
        try:
            self._create(m, pfd, parts, base, False)
        except FileExistsError:
            self._create(m, pfd, parts, base, self._remove(pfd, base, keep_dir=m.isdir()))

    def _create(self, m: tarfile.TarInfo, pfd: int, parts: list[str], base: str, kept_dir: bool) -> None:
        if m.isdir():
            if not kept_dir:
                os.mkdir(base, m.mode & 0o777, dir_fd=pfd)  # umask applies; _attrs fixes the rest
            self._attrs(self.dirs.get(parts, False, m.name), m)
            self.dir_times.append((parts, _ns(m)))
        elif m.isreg():
            # Created with its mode less the umask (never setuid before the chown), in a private dir.
            fd = os.open(base, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                         m.mode & 0o777, dir_fd=pfd)
            try:
                self._write(fd, m)
                self._attrs(fd, m)
                os.utime(fd, ns=(_ns(m), _ns(m)))
            finally:
                os.close(fd)
            self.size += m.size
        elif m.issym():
            os.symlink(m.linkname, base, dir_fd=pfd)
            lst = os.stat(base, dir_fd=pfd, follow_symlinks=False)
            if (lst.st_uid, lst.st_gid) != (m.uid, m.gid):
                os.chown(base, m.uid, m.gid, dir_fd=pfd, follow_symlinks=False)
            os.utime(base, ns=(_ns(m), _ns(m)), dir_fd=pfd, follow_symlinks=False)
        elif m.islnk():
            tparts = split_path(m.linkname)
            if not tparts:
                raise InvalidParameter(f"invalid layer: bad hard link target for {m.name!r}")
            tfd = self.dirs.get(tparts[:-1], False, m.linkname)
            st = _lstat_at(tfd, tparts[-1])
            if st is None or stat.S_ISDIR(st.st_mode):
                raise InvalidParameter(
                    f"invalid layer: hard link {m.name!r} to missing or invalid target {m.linkname!r}"
                )
            os.link(tparts[-1], base, src_dir_fd=tfd, dst_dir_fd=pfd, follow_symlinks=False)
        elif m.isfifo() or m.ischr():  # ischr here is always the 0:0 whiteout device
            if m.isfifo():
                os.mkfifo(base, 0o600, dir_fd=pfd)
            else:
                os.mknod(base, stat.S_IFCHR, os.makedev(0, 0), dir_fd=pfd)
            os.chown(base, m.uid, m.gid, dir_fd=pfd, follow_symlinks=False)
            os.chmod(base, m.mode & 0o7777, dir_fd=pfd)
            os.utime(base, ns=(_ns(m), _ns(m)), dir_fd=pfd, follow_symlinks=False)

    def _write(self, fd: int, m: tarfile.TarInfo) -> None:
        if m.issparse():
            write_sparse(self.tf, m, fd, self.holes)
            return
        if self.pipe is not None and self.pipe.tell() == m.offset_data:
            if self.pipe.copy_to(fd, m.size) != m.size:
                raise tarfile.ReadError("unexpected end of data")
            return
        src = self.tf.extractfile(m)
        assert src is not None
        while chunk := src.read(_CHUNK):
            view = memoryview(chunk)
            while view:
                view = view[os.write(fd, view):]

    def _attrs(self, fd: int, m: tarfile.TarInfo) -> None:
        # Each chown/chmod is a journalled inode update; most entries are created with the right
        # owner (root) and mode already (see _create), which one fstat (no journal) tells.
        st = os.fstat(fd)
        chowned = (st.st_uid, st.st_gid) != (m.uid, m.gid)
        if chowned:
            os.fchown(fd, m.uid, m.gid)
        if chowned or stat.S_IMODE(st.st_mode) != m.mode & 0o7777:
            os.fchmod(fd, m.mode & 0o7777)  # after chown, which clears setuid bits
        if m.pax_headers:
            _set_xattrs(fd, _xattrs(m))

    def finish(self) -> None:
        # Directory mtimes last, deepest first: creating children changed them.
        self.dirs.clear()
        for parts, ns in sorted(self.dir_times, key=lambda t: -len(t[0])):
            self.dirs.trim()
            try:
                fd = self.dirs.get(parts, False, "/".join(parts))
            except InvalidParameter:
                continue  # removed or replaced by a later entry
            os.utime(fd, ns=(ns, ns))
        self.dirs.clear()


# What a malformed or truncated (compressed) tar raises while it is read: the client's fault (400).
TAR_ERRORS: tuple[type[BaseException], ...] = (
    tarfile.TarError, EOFError, zstandard.ZstdError, lzma.LZMAError, gzip.BadGzipFile, *_DECOMPRESS_ERRORS)


def apply_layer(fileobj: IO[bytes], dest: Path | int, *, hashed: bool = True) -> LayerInfo:
    """Extract a (gzip/zstd/plain) layer tar into the directory `dest` (a path of ours, or a
    directory fd resolved safely in an image's tree); returns its diff_id (with `hashed` False,
    e.g. for a build context whose hash nobody needs, the stream is not hashed and diff_id is "")."""
    pipe = _Pipe(fileobj, hashed)
    root_fd = os.dup(dest) if isinstance(dest, int) else safetree.open_top(dest)
    ap: _Applier | None = None
    try:
        try:
            # Random-access mode over the forward-only pipe (see _Pipe); the members list it keeps
            # is small next to the layer.
            with tarfile.open(fileobj=pipe, mode="r:", errorlevel=2) as tf:
                ap = _Applier(tf, root_fd, pipe)
                for m in tf:
                    if SQUASH_OWNERS:
                        m.uid = m.gid = 0
                    ap.entry(m)
            pipe.drain()
        except TAR_ERRORS as e:
            raise InvalidParameter(f"invalid layer tar: {e}") from e
        ap.finish()
    finally:
        if ap is not None:
            ap.dirs.clear()
        pipe.close()
        os.close(root_fd)
    return LayerInfo("sha256:" + pipe.hash.hexdigest() if hashed else "", ap.size)


def diff_id_of(fileobj: IO[bytes]) -> str:
    """The diff_id of a (compressed or plain) layer blob without extracting it: the sha256 of
    its uncompressed stream."""
    h = hashlib.sha256()
    try:
        src = decompressed(fileobj)
        while chunk := src.read(_CHUNK):
            h.update(chunk)
    except TAR_ERRORS as e:
        raise InvalidParameter(f"invalid layer tar: {e}") from e
    return "sha256:" + h.hexdigest()


# ---------------------------------------------------------------------------- upper dir -> tar


def _is_whiteout(st: os.stat_result) -> bool:
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == os.makedev(0, 0)


def _is_opaque(dir_fd: int) -> bool:
    for name in (OPAQUE_XATTR, FUSE_OPAQUE_XATTR) if OVERLAY_USERXATTR else (OPAQUE_XATTR,):
        try:
            if os.getxattr(dir_fd, name) == b"y":
                return True
        except OSError:
            pass
    return False


def tar_header(e: safetree.Entry, hardlinks: dict[tuple[int, int], str]) -> tarfile.TarInfo | None:
    """The tar header of a walked entry, from the fstat of the fd held (the fields TarFile.gettarinfo
    takes from a path, so layer tars stay byte for byte as before); a second name of a regular
    file becomes a hard link to the first (`hardlinks` remembers them). None for a socket."""
    st = e.st
    mode = st.st_mode
    ti = tarfile.TarInfo(e.rel)
    if stat.S_ISREG(mode):
        key = (st.st_ino, st.st_dev)
        if st.st_nlink > 1 and key in hardlinks:
            ti.type, ti.linkname = tarfile.LNKTYPE, hardlinks[key]
        else:
            ti.type, ti.size = tarfile.REGTYPE, st.st_size
            if st.st_nlink > 1:
                hardlinks[key] = e.rel
    elif stat.S_ISDIR(mode):
        ti.type = tarfile.DIRTYPE
    elif stat.S_ISFIFO(mode):
        ti.type = tarfile.FIFOTYPE
    elif stat.S_ISLNK(mode):
        ti.type, ti.linkname = tarfile.SYMTYPE, e.readlink()
    elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        ti.type = tarfile.CHRTYPE if stat.S_ISCHR(mode) else tarfile.BLKTYPE
        ti.devmajor, ti.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
    else:
        return None
    ti.mode = mode
    ti.uid, ti.gid = st.st_uid, st.st_gid
    ti.mtime = st.st_mtime  # a float, as gettarinfo sets it
    return ti


def write_tree(root: Path, out: BinaryIO, *, layer: bool = True) -> str:
    """Write the tree at `root` as a tar; returns the tar's sha256. With `layer` (an overlay upper
    dir), whiteout devices and opaque dirs become OCI `.wh.` entries.

    Read by fd (safetree.walk): a link swapped in by a running container is an entry, never a way
    out; a file removed meanwhile is left out, one that shrinks is padded to its header's size."""
    hw = _HashingWriter(out)
    # Headers are small writes, buffered to 1 MiB; file data goes from one 1 MiB buffer straight through
    # (tarfile's stream mode re-chunked every byte into 10 KiB records, read 16 KiB at a time: a few
    # Python copies of each byte, ~5x the sha256's CPU). The bytes are what that mode wrote.
    buffered = io.BufferedWriter(hw, _CHUNK)
    chunk = bytearray(_CHUNK)
    top = safetree.open_top(root)
    hardlinks: dict[tuple[int, int], str] = {}
    try:
        with tarfile.open(fileobj=buffered, mode="w:", format=tarfile.PAX_FORMAT) as tf:
            for e in safetree.walk(top):
                st = e.st
                if layer and _is_whiteout(st):
                    d, _, name = e.rel.rpartition("/")
                    wh = tarfile.TarInfo((d + "/" if d else "") + WHITEOUT_PREFIX + name)
                    wh.mtime = int(st.st_mtime)
                    tf.addfile(wh)
                    continue
                ti = tar_header(e, hardlinks)
                if ti is None:
                    continue  # sockets, as tar does
                fd = e.open() if stat.S_ISREG(st.st_mode) else None  # one open for xattrs and data
                try:
                    pax: dict[str, str] = {}
                    if stat.S_ISDIR(st.st_mode) or fd is not None:
                        for k, val in e.xattrs(_ALLOWED_XATTR_PREFIXES, fd).items():
                            if k.startswith(_OVERLAY_XATTR_PREFIXES):
                                continue
                            pax["SCHILY.xattr." + k] = val.decode("utf-8", "surrogateescape")
                    ti.pax_headers = pax
                    tf.addfile(ti)  # the header only
                    if fd is not None and ti.isreg() and ti.size:
                        _write_data(fd, ti.size, buffered, chunk)
                        tf.offset += -(-ti.size // tarfile.BLOCKSIZE) * tarfile.BLOCKSIZE
                finally:
                    if fd is not None:
                        os.close(fd)
                if layer and stat.S_ISDIR(st.st_mode) and _is_opaque(e.fd):
                    op = tarfile.TarInfo(e.rel + "/" + OPAQUE_MARKER)
                    op.mtime = int(st.st_mtime)
                    tf.addfile(op)
        buffered.flush()
    finally:
        os.close(top)
    return "sha256:" + hw.hash.hexdigest()


def _write_data(fd: int, size: int, out: io.BufferedIOBase, chunk: bytearray) -> None:
    """Exactly `size` bytes of the file `fd` (zeros past an early end: it shrank while we read; nothing
    past `size`: it grew; so the header written from fstat stays true), padded to the tar block."""
    view = memoryview(chunk)
    left = size
    while left:
        n = os.readv(fd, [view[:min(left, _CHUNK)]])
        if n == 0:
            zeros = min(left, _CHUNK)
            view[:zeros] = bytes(zeros)
            n = zeros
        out.write(view[:n])
        left -= n
    if size % tarfile.BLOCKSIZE:
        out.write(tarfile.NUL * (tarfile.BLOCKSIZE - size % tarfile.BLOCKSIZE))


def write_diff(upper: Path, out: BinaryIO) -> str:
    """Write the overlay upper dir as an OCI layer tar (whiteouts as `.wh.` files); returns diff_id."""
    return write_tree(upper, out, layer=True)


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
    top = safetree.open_top(upper)
    try:
        for e in safetree.walk(top):
            if _is_whiteout(e.st):
                kind = 2
            elif _in_lowers(top_first, e.rel):
                kind = 0
            else:
                kind = 1
            out.append({"Path": "/" + e.rel, "Kind": kind})
    finally:
        os.close(top)
    return out
