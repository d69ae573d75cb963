"""The container-filesystem side of `docker cp`: stat, GET and PUT of paths inside a container.

Every path is resolved *inside* the container, as if its rootfs were `/` (CVE-2018-15664 class),
and trees are read by fd, with store/safetree.py: the kernel never follows a link for us, so a
symlink swapped during the operation cannot redirect us to the host. Volumes and binds live only in the container's mount namespace;
the walk switches to their host source when it reaches a mount's destination.
"""

from __future__ import annotations

import base64
import errno
import json
import os
import posixpath
import stat
import tarfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from dockyard.errors import Forbidden, InvalidParameter, NotFound, SystemError_
from dockyard.store import safetree
from dockyard.store.layers import TAR_ERRORS, HoleBudget, write_sparse
from dockyard.util.timefmt import rfc3339

_CHUNK = 1 << 20


@dataclass
class Node:
    """A resolved object: an O_PATH fd, its container path and the mount it lies in (None = rootfs)."""

    fd: int
    cpath: str
    mount: dict[str, Any] | None = None


@dataclass
class ContainerFS:
    """The container's view of its files: rootfs plus the Mounts of inspect (Destination → Source)."""

    rootfs: Path
    mounts: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._by_dest = {
            clean_abs(m["Destination"]): m for m in self.mounts if m.get("Source")
        }

    def mount_at(self, cpath: str) -> dict[str, Any] | None:
        return self._by_dest.get(cpath)

    def walk(self, path: str, follow_last: bool = True, create_dirs: bool = False) -> Node:
        """Resolve `path` in the container (safetree.resolve, switching to a mount's source at its
        destination). Raises FileNotFoundError/NotADirectoryError/OSError(ELOOP)."""
        top = safetree.open_top(self.rootfs)
        try:
            r = safetree.resolve(top, path, follow_last=follow_last, mkdir=_mkdir if create_dirs else None,
                                 enter=self._enter)
        finally:
            os.close(top)
        return Node(r.fd, r.path, r.tag)

    def _enter(self, cpath: str) -> tuple[int, Any] | None:
        mnt = self.mount_at(cpath)
        return None if mnt is None else (os.open(mnt["Source"], os.O_PATH | os.O_CLOEXEC), mnt)

    def resolve_lenient(self, path: str) -> str:
        """The container path `path` resolves to; missing tails are joined lexically (like Docker)."""
        comps = [c for c in path.split("/") if c not in ("", ".")]
        for i in range(len(comps), -1, -1):
            head = "/" + "/".join(comps[:i])
            try:
                node = self.walk(head, follow_last=True)
            except OSError:
                continue
            os.close(node.fd)
            return posixpath.normpath(posixpath.join(node.cpath, *comps[i:]))
        return "/"

    def walk_parent(self, path: str, create_dirs: bool = False) -> tuple[Node, str]:
        """The directory holding `path`'s last component (resolved), and that component's name."""
        clean = clean_abs(path)
        parent, name = posixpath.split(clean)
        node = self.walk(parent, follow_last=True, create_dirs=create_dirs)
        if not stat.S_ISDIR(os.fstat(node.fd).st_mode):
            os.close(node.fd)
            raise NotADirectoryError(errno.ENOTDIR, "not a directory", parent)
        return node, name


def _mkdir(dir_fd: int, name: str) -> None:
    os.mkdir(name, 0o755, dir_fd=dir_fd)


def clean_abs(path: str) -> str:
    """`path` as a clean absolute path (POSIX normpath keeps a leading "//"; we don't)."""
    return "/" + posixpath.normpath("/" + path).lstrip("/")


def _go_base(path: str) -> str:
    """Go's filepath.Base: the last element, trailing slashes dropped; "/" for the root."""
    stripped = path.rstrip("/")
    if not stripped:
        return "/"
    return stripped.rsplit("/", 1)[-1]


def _abs_path(path: str) -> str:
    """Docker's absPath: joined onto "/", cleaned, with a trailing "/" or "/." preserved."""
    clean = clean_abs(path)
    if clean == "/":
        return "/"
    if path.endswith("/."):
        return clean + "/."
    if path.endswith("/"):
        return clean + "/"
    return clean


def go_file_mode(st_mode: int) -> int:
    """A POSIX st_mode as Go's os.FileMode bits (what the docker CLI decodes)."""
    m = st_mode & 0o777
    if stat.S_ISDIR(st_mode):
        m |= 1 << 31
    elif stat.S_ISLNK(st_mode):
        m |= 1 << 27
    elif stat.S_ISBLK(st_mode):
        m |= 1 << 26
    elif stat.S_ISCHR(st_mode):
        m |= (1 << 26) | (1 << 21)
    elif stat.S_ISFIFO(st_mode):
        m |= 1 << 25
    elif stat.S_ISSOCK(st_mode):
        m |= 1 << 24
    if st_mode & stat.S_ISUID:
        m |= 1 << 23
    if st_mode & stat.S_ISGID:
        m |= 1 << 22
    if st_mode & stat.S_ISVTX:
        m |= 1 << 20
    return m


def _not_found(path: str, ref: str) -> NotFound:
    return NotFound(f"Could not find the file {path} in container {ref}".rstrip())


def _go_time(ts: float) -> str:
    """Go's RFC3339Nano (trailing zeros of the fraction dropped), as the docker CLI receives it."""
    s = rfc3339(ts)
    main, frac = s[:-1].split(".")
    frac = frac.rstrip("0")
    return f"{main}.{frac}Z" if frac else f"{main}Z"


def _open_source(fs: ContainerFS, path: str, ref: str) -> Node:
    """Docker's ResolvePath: the directory part is followed, the last element is not."""
    abs_path = _abs_path(path)
    try:
        return fs.walk(abs_path, follow_last=False)
    except (FileNotFoundError, NotADirectoryError) as e:
        raise _not_found(path, ref) from e
    except OSError as e:
        raise InvalidParameter(f"{path}: {e.strerror}") from e


def stat_path(
    rootfs: Path, path: str, mounts: list[dict[str, Any]] | None = None, ref: str = ""
) -> dict[str, Any]:
    """The container path stat Docker sends in X-Docker-Container-Path-Stat (decoded)."""
    fs = ContainerFS(Path(rootfs), mounts or [])
    node = _open_source(fs, path, ref)
    try:
        st = os.fstat(node.fd)
    finally:
        os.close(node.fd)
    link = fs.resolve_lenient(_abs_path(path)) if stat.S_ISLNK(st.st_mode) else ""
    return {
        "name": _go_base(_abs_path(path)),
        "size": st.st_size,
        "mode": go_file_mode(st.st_mode),
        "mtime": _go_time(st.st_mtime),
        "linkTarget": link,
    }


def stat_header(st: dict[str, Any]) -> str:
    """The header value: base64 of the JSON."""
    return base64.b64encode(json.dumps(st).encode()).decode()


# ---------------------------------------------------------------- GET


def _pad(n: int) -> bytes:
    return b"\0" * ((512 - n % 512) % 512)


_reopen = safetree.reopen


def _tarinfo(name: str, st: os.stat_result) -> tarfile.TarInfo:
    ti = tarfile.TarInfo(name)
    ti.mode = stat.S_IMODE(st.st_mode)
    ti.uid, ti.gid = st.st_uid, st.st_gid
    ti.mtime = int(st.st_mtime)
    ti.uname = ti.gname = ""
    return ti


class _TarWriter:
    def __init__(self, fs: ContainerFS) -> None:
        self.fs = fs
        self.links: dict[tuple[int, int], str] = {}

    def header(self, ti: tarfile.TarInfo) -> bytes:
        return ti.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")

    def tree(self, fd: int, arcname: str, cpath: str) -> Iterator[bytes]:
        """The object held as O_PATH `fd` and, for a directory, its contents (safetree.walk; a
        mount's destination is read from its source)."""
        st = os.fstat(fd)
        if not stat.S_ISDIR(st.st_mode):
            yield from self.entry(fd, st, arcname)
            return
        top = arcname.rstrip("/") + "/"
        yield from self.entry(fd, st, top)
        dfd = _reopen(fd, os.O_RDONLY | os.O_DIRECTORY)

        def enter(rel: str) -> int | None:
            mnt = self.fs.mount_at(posixpath.join(cpath, rel))
            return os.open(mnt["Source"], os.O_PATH | os.O_CLOEXEC) if mnt else None

        try:
            for e in safetree.walk(dfd, enter):
                yield from self.entry(e.fd, e.st, top + e.rel)
        finally:
            os.close(dfd)

    def entry(self, fd: int, st: os.stat_result, arcname: str) -> Iterator[bytes]:
        """One object's header (and data), from the fd held and its fstat."""
        ti = _tarinfo(arcname, st)
        mode = st.st_mode
        if stat.S_ISDIR(mode):
            ti.type = tarfile.DIRTYPE
            ti.name = arcname.rstrip("/") + "/"
            yield self.header(ti)
            return
        if stat.S_ISLNK(mode):
            ti.type = tarfile.SYMTYPE
            ti.linkname = os.readlink("", dir_fd=fd)
            yield self.header(ti)
            return
        if stat.S_ISREG(mode):
            key = (st.st_dev, st.st_ino)
            if st.st_nlink > 1 and key in self.links:
                ti.type = tarfile.LNKTYPE
                ti.linkname = self.links[key]
                yield self.header(ti)
                return
            if st.st_nlink > 1:
                self.links[key] = arcname
            rfd = _reopen(fd, os.O_RDONLY)
            try:
                ti.size = st.st_size
                yield self.header(ti)
                src = safetree.SizedReader(rfd, st.st_size)
                while chunk := src.read(_CHUNK):
                    yield chunk
                yield _pad(st.st_size)
            finally:
                os.close(rfd)
            return
        if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
            ti.type = tarfile.CHRTYPE if stat.S_ISCHR(mode) else tarfile.BLKTYPE
            ti.devmajor, ti.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
            yield self.header(ti)
        elif stat.S_ISFIFO(mode):
            ti.type = tarfile.FIFOTYPE
            yield self.header(ti)
        # sockets are skipped, as tar does


def get_archive(
    rootfs: Path, path: str, mounts: list[dict[str, Any]] | None = None, ref: str = ""
) -> Iterator[bytes]:
    """The tar byte stream of `path`; the root entry is named after the requested path's base.

    Errors (NotFound, ...) are raised by this call, before the first byte, so the API can answer
    properly; the stream holds an fd of the resolved object, so later renames can't redirect it.
    """
    fs = ContainerFS(Path(rootfs), mounts or [])
    node = _open_source(fs, path, ref)
    base = _go_base(_abs_path(path))

    def stream() -> Iterator[bytes]:
        try:
            yield from _TarWriter(fs).tree(node.fd, base, node.cpath)
            yield b"\0" * 1024
        finally:
            os.close(node.fd)

    return stream()


# ---------------------------------------------------------------- PUT


class _IterReader:
    """A file-like `read(n)` over an iterable of byte chunks (for streaming request bodies)."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._it = iter(chunks)
        self._buf = b""

    def read(self, n: int = -1) -> bytes:
        while n < 0 or len(self._buf) < n:
            try:
                self._buf += next(self._it)
            except StopIteration:
                break
        if n < 0:
            out, self._buf = self._buf, b""
        else:
            out, self._buf = self._buf[:n], self._buf[n:]
        return out


def _remove_at(dir_fd: int, name: str) -> None:
    """rm -rf of `name` inside dir_fd, never following symlinks."""
    try:
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):
        sub = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=dir_fd)
        try:
            for child in os.listdir(sub):
                _remove_at(sub, child)
        finally:
            os.close(sub)
        os.rmdir(name, dir_fd=dir_fd)
    else:
        os.unlink(name, dir_fd=dir_fd)


def _check_writable(node: Node, readonly_rootfs: bool) -> None:
    if node.mount is not None:
        if not node.mount.get("RW", True):
            raise Forbidden("mounted volume is marked read-only")
    elif readonly_rootfs:
        raise Forbidden("container rootfs is marked read-only")


def _clean_member(name: str) -> str | None:
    """The member's path relative to the extraction dir; None for the dir itself; refuses escapes."""
    rel = posixpath.normpath(name.lstrip("/")) if name.strip("/") else "."
    if rel == ".." or rel.startswith("../"):
        raise InvalidParameter(f'"{name}" is outside of the extraction point')
    return None if rel == "." else rel


def put_archive(
    rootfs: Path,
    path: str,
    tar_stream: IO[bytes] | Iterable[bytes],
    mounts: list[dict[str, Any]] | None = None,
    *,
    no_overwrite_dir_non_dir: bool = False,
    copy_uid_gid: bool = False,
    readonly_rootfs: bool = False,
    chown: tuple[int, int] | None = None,
    ref: str = "",
) -> None:
    """Extract a (possibly compressed) tar into the container directory `path`.

    Ownership: the tar's uid/gid as Docker keeps them; with `copy_uid_gid` every entry gets the
    container user's ids: pass them as `chown` (see `lookup_user`), else the tar's are kept.
    `readonly_rootfs` (HostConfig.ReadonlyRootfs) refuses writes outside RW mounts with 403.
    """
    fs = ContainerFS(Path(rootfs), mounts or [])
    dest_abs = clean_abs(path)
    try:
        dest = fs.walk(dest_abs, follow_last=True)
    except (FileNotFoundError, NotADirectoryError) as e:
        raise _not_found(path, ref) from e
    try:
        if not stat.S_ISDIR(os.fstat(dest.fd).st_mode):
            raise InvalidParameter("extraction point is not a directory")
        _check_writable(dest, readonly_rootfs)
        dest_cpath = dest.cpath
    finally:
        os.close(dest.fd)
    owner = chown if copy_uid_gid else None
    fileobj: Any = tar_stream if hasattr(tar_stream, "read") else _IterReader(tar_stream)
    dir_times: list[tuple[str, float]] = []
    try:
        tf = tarfile.open(fileobj=fileobj, mode="r|*")
    except TAR_ERRORS as e:
        raise InvalidParameter(f"invalid tar archive: {e}") from e
    holes = HoleBudget()
    with tf:
        try:
            for m in tf:
                rel = _clean_member(m.name)
                if rel is None:
                    continue
                _extract_member(fs, tf, m, dest_cpath, rel, no_overwrite_dir_non_dir, owner, readonly_rootfs, holes)
                if m.isdir():
                    dir_times.append((posixpath.join(dest_cpath, rel), m.mtime))
        except TAR_ERRORS as e:  # truncated or corrupt: what came before it stays, as with dockerd
            raise InvalidParameter(f"invalid tar archive: {e}") from e
    for cpath, mtime in reversed(dir_times):  # after the contents, or writing them bumps mtime
        try:
            node = fs.walk(cpath, follow_last=False)
        except OSError:
            continue
        try:
            os.utime(f"/proc/self/fd/{node.fd}", (mtime, mtime))
        finally:
            os.close(node.fd)


def _extract_member(
    fs: ContainerFS,
    tf: tarfile.TarFile,
    m: tarfile.TarInfo,
    dest_cpath: str,
    rel: str,
    no_overwrite: bool,
    owner: tuple[int, int] | None,
    readonly_rootfs: bool,
    holes: HoleBudget,
) -> None:
    cpath = posixpath.join(dest_cpath, rel)
    parent, name = fs.walk_parent(cpath, create_dirs=True)
    pfd = parent.fd
    try:
        _check_writable(parent, readonly_rootfs)
        if fs.mount_at(cpath) is not None:
            if m.isdir():
                return  # a mount point: its contents come through the mount, the dir itself stays
            # a file bound over (a file volume, /etc/hostname): dockerd's unlink fails the same way
            raise SystemError_(f"Error processing tar file: unlinkat {cpath}: device or resource busy")
        try:
            old = os.stat(name, dir_fd=pfd, follow_symlinks=False)
        except FileNotFoundError:
            old = None
        if old is not None:
            old_dir = stat.S_ISDIR(old.st_mode)
            if no_overwrite and old_dir and not m.isdir():
                raise InvalidParameter(f'cannot overwrite directory "{cpath}" with non-directory "{rel}"')
            if no_overwrite and not old_dir and m.isdir():
                raise InvalidParameter(f'cannot overwrite non-directory "{cpath}" with directory "{rel}"')
            if not (old_dir and m.isdir()):
                _remove_at(pfd, name)
        uid, gid = owner if owner else (m.uid, m.gid)
        if m.isdir():
            if old is None or not stat.S_ISDIR(old.st_mode):
                os.mkdir(name, 0o700, dir_fd=pfd)
        elif m.isreg():
            fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600, dir_fd=pfd)
            try:
                if m.issparse():
                    write_sparse(tf, m, fd, holes)
                else:
                    src = tf.extractfile(m)
                    assert src is not None
                    while chunk := src.read(_CHUNK):
                        view = memoryview(chunk)
                        while view:
                            view = view[os.write(fd, view):]
            finally:
                os.close(fd)
        elif m.issym():
            os.symlink(m.linkname, name, dir_fd=pfd)  # stored, never followed by us
        elif m.islnk():
            target_rel = _clean_member(m.linkname)
            if target_rel is None:
                raise InvalidParameter(f"invalid hardlink {m.linkname!r}")
            tparent, tname = fs.walk_parent(posixpath.join(dest_cpath, target_rel))
            try:
                os.link(tname, name, src_dir_fd=tparent.fd, dst_dir_fd=pfd, follow_symlinks=False)
            finally:
                os.close(tparent.fd)
            return
        elif m.ischr() or m.isblk() or m.isfifo():
            kind = stat.S_IFCHR if m.ischr() else stat.S_IFBLK if m.isblk() else stat.S_IFIFO
            os.mknod(name, kind | 0o600, os.makedev(m.devmajor, m.devminor), dir_fd=pfd)
        else:
            return  # unknown types are skipped
        os.chown(name, uid, gid, dir_fd=pfd, follow_symlinks=False)
        if not m.issym():
            # chmod after chown: chown clears setuid bits
            os.chmod(name, m.mode & 0o7777, dir_fd=pfd)
            if not m.isdir():
                os.utime(name, (m.mtime, m.mtime), dir_fd=pfd, follow_symlinks=False)
        else:
            os.utime(name, (m.mtime, m.mtime), dir_fd=pfd, follow_symlinks=False)
    finally:
        os.close(pfd)


def lookup_user(rootfs: Path, user: str, mounts: list[dict[str, Any]] | None = None) -> tuple[int, int]:
    """uid/gid of a Config.User ("name", "uid", "name:group", "uid:gid") from the container's files."""
    fs = ContainerFS(Path(rootfs), mounts or [])

    def table(path: str) -> list[list[str]]:
        try:
            node = fs.walk(path)
        except OSError:
            return []
        try:
            fd = _reopen(node.fd, os.O_RDONLY)
        finally:
            os.close(node.fd)
        with os.fdopen(fd, "rb") as f:
            text = f.read(1 << 20).decode(errors="replace")
        return [ln.split(":") for ln in text.splitlines() if ln and not ln.startswith("#")]

    u, _, g = (user or "0").partition(":")
    uid = gid = 0
    if u.isdigit():
        uid = int(u)
        for row in table("/etc/passwd"):
            if len(row) > 3 and row[2] == u:
                gid = int(row[3])
    else:
        for row in table("/etc/passwd"):
            if len(row) > 3 and row[0] == u:
                uid, gid = int(row[2]), int(row[3])
                break
        else:
            raise NotFound(f"unable to find user {u}: no matching entries in passwd file")
    if g:
        if g.isdigit():
            gid = int(g)
        else:
            for row in table("/etc/group"):
                if len(row) > 2 and row[0] == g:
                    gid = int(row[2])
                    break
            else:
                raise NotFound(f"unable to find group {g}: no matching entries in group file")
    return uid, gid
