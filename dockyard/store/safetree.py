"""A directory tree we do not trust (an image rootfs, a container's live files), resolved and
walked by file descriptor only: the one safe tree walker of layer apply, cp, COPY/ADD, export,
commit and diff.

A path is never handed to the kernel whole. Each component is opened from its parent's fd with
O_NOFOLLOW; symlinks are resolved here as if the tree's top were `/` (an absolute target restarts
at the top, `..` never climbs above it); and what we act on is what fstat of the fd we hold says.
So neither a link an image placed in an intermediate component nor one a running container swaps
in while we read (CVE-2018-15664 class) can take us out of the tree. An entry that disappears
while we walk is skipped, as tar does.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
PATH_FLAGS = os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC
MAX_SYMLINKS = 40  # Linux's limit too
_CHUNK = 1 << 20
# A child that went away or changed kind between listing and opening: skipped, never followed.
_GONE = (errno.ENOENT, errno.ENOTDIR, errno.ELOOP)


def open_top(path: str | os.PathLike[str]) -> int:
    """An fd of the tree's top directory (a path of our own: the data root, a mount we made)."""
    return os.open(path, DIR_FLAGS)


def reopen(fd: int, flags: int) -> int:
    """The inode held by `fd` (often O_PATH) opened anew with `flags`: through its /proc magic
    link, which names that inode and is never a new lookup by name."""
    return os.open(f"/proc/self/fd/{fd}", flags | os.O_CLOEXEC)


def _open_or_make(dir_fd: int, name: str, flags: int, mkdir: Callable[[int, str], None] | None) -> int:
    """dir_fd/name opened with flags; when missing, made first by `mkdir(dir_fd, name)` if given."""
    try:
        return os.open(name, flags, dir_fd=dir_fd)
    except FileNotFoundError:
        if mkdir is None:
            raise
        mkdir(dir_fd, name)
        return os.open(name, flags, dir_fd=dir_fd)


def open_dir(dir_fd: int, parts: list[str], mkdir: Callable[[int, str], None] | None = None) -> int:
    """A directory fd of dir_fd/parts[0]/..., following no symlink at all (layer apply's rule: an
    entry never lands through a link). Missing components are made by `mkdir(parent_fd, name)`
    when given, else FileNotFoundError; a link or non-directory on the way raises ELOOP/ENOTDIR."""
    fd = os.dup(dir_fd)
    try:
        for p in parts:
            nfd = _open_or_make(fd, p, DIR_FLAGS, mkdir)
            os.close(fd)
            fd = nfd
    except BaseException:
        os.close(fd)
        raise
    return fd


@dataclass
class Resolved:
    """A path resolved in the tree: an O_PATH fd of the object, its clean path as seen from the
    top, and the tag `enter` gave when the path crossed into another tree (a mount), else None."""

    fd: int
    path: str
    tag: Any = None


Enter = Callable[[str], "tuple[int, Any] | None"]


def resolve(top_fd: int, path: str, *, follow_last: bool = True, mkdir: Callable[[int, str], None] | None = None,
            enter: Enter | None = None) -> Resolved:
    """Resolve `path` inside the tree as if its top were `/`.

    Symlinks are read and followed here (at most MAX_SYMLINKS), the last one only with
    `follow_last`. Missing components (the last one too) are made as directories with
    `mkdir(parent_fd, name)` when given.
    `enter(path)` may return (fd, tag) to continue in another tree at that path (a volume's
    source; the fd is taken over). Raises FileNotFoundError, NotADirectoryError or ELOOP."""
    stack: list[tuple[str, int, Any]] = [("", os.dup(top_fd), None)]
    queue = path.split("/")
    queue.reverse()  # popped from the end
    links = 0
    try:
        while queue:
            comp = queue.pop()
            if comp in ("", "."):
                continue
            if comp == "..":
                if len(stack) > 1:
                    os.close(stack.pop()[1])
                continue
            cur_fd = stack[-1][1]
            cpath = "/" + "/".join([s[0] for s in stack[1:]] + [comp])
            other = enter(cpath) if enter is not None else None
            if other is not None:
                stack.append((comp, other[0], other[1]))
                continue
            fd = _open_or_make(cur_fd, comp, PATH_FLAGS, mkdir)
            st = os.fstat(fd)
            if stat.S_ISLNK(st.st_mode) and (queue or follow_last):
                target = os.readlink("", dir_fd=fd)
                os.close(fd)
                links += 1
                if links > MAX_SYMLINKS:
                    raise OSError(errno.ELOOP, "too many levels of symbolic links", path)
                if target.startswith("/"):
                    while len(stack) > 1:
                        os.close(stack.pop()[1])
                queue.extend(reversed(target.split("/")))
                continue
            stack.append((comp, fd, stack[-1][2]))
        name_path = "/" + "/".join(s[0] for s in stack[1:])
        top = stack.pop()
        return Resolved(top[1], name_path, top[2])
    finally:
        for _, fd_, _t in stack:
            os.close(fd_)


def resolve_dir(top_fd: int, path: str, mkdir: Callable[[int, str], None] | None = None) -> int:
    """A readable directory fd of `path` resolved in the tree (symlinks followed inside it); with
    `mkdir`, missing directories are made."""
    r = resolve(top_fd, path, mkdir=mkdir)
    try:
        if not stat.S_ISDIR(os.fstat(r.fd).st_mode):
            raise NotADirectoryError(errno.ENOTDIR, "not a directory", path)
        return reopen(r.fd, os.O_RDONLY | os.O_DIRECTORY)
    finally:
        os.close(r.fd)


def read_file(top_fd: int, path: str, limit: int = 1 << 20) -> bytes:
    """Up to `limit` bytes of the regular file at `path` in the tree (symlinks resolved inside);
    OSError if it is missing or not a regular file."""
    r = resolve(top_fd, path)
    try:
        if not stat.S_ISREG(os.fstat(r.fd).st_mode):
            raise OSError(errno.EINVAL, "not a regular file", path)
        fd = reopen(r.fd, os.O_RDONLY)
    finally:
        os.close(r.fd)
    with os.fdopen(fd, "rb") as f:
        return f.read(limit)


# ---------------------------------------------------------------------------- walking


@dataclass
class Entry:
    """One object of the walk. `fd` is an O_PATH fd of it (a readable fd for a directory), `st` its
    fstat: the object we hold, whatever its name means by now. Both are valid until the walk goes on."""

    rel: str  # "a/b", from the walk's top
    name: str
    parent_fd: int
    fd: int
    st: os.stat_result

    def open(self) -> int:
        """A readable fd of this very file (a regular file or directory)."""
        return reopen(self.fd, os.O_RDONLY)

    def readlink(self) -> str:
        return os.readlink("", dir_fd=self.fd)

    def xattrs(self, prefixes: tuple[str, ...], opened: int | None = None) -> dict[str, bytes]:
        """Its xattrs whose names start with one of `prefixes` (regular files and directories);
        `opened` is a readable fd of it the caller holds already."""
        fd = self.fd if stat.S_ISDIR(self.st.st_mode) else opened if opened is not None else self.open()
        try:
            return {k: os.getxattr(fd, k) for k in os.listxattr(fd) if k.startswith(prefixes)}
        except OSError as e:
            if e.errno in (errno.ENOTSUP, errno.ENODATA):
                return {}
            raise
        finally:
            if fd not in (self.fd, opened):
                os.close(fd)


def _open_child(dir_fd: int, name: str) -> int | None:
    try:
        return os.open(name, PATH_FLAGS, dir_fd=dir_fd)
    except OSError as e:
        if e.errno in _GONE:
            return None
        raise


def walk(top_fd: int, enter: Callable[[str], int | None] | None = None) -> Iterator[Entry]:
    """Every object under the directory `top_fd`, names sorted, each directory before its contents
    (iteratively: a deep tree costs an fd per level, not Python stack). Symlinks are entries,
    never followed. `enter(rel)` may return an O_PATH fd to use in place of the child `rel` (a
    volume's source; it is taken over)."""
    stack: list[tuple[int, str, Iterator[str]]] = [(os.dup(top_fd), "", iter(sorted(os.listdir(top_fd))))]
    try:
        while stack:
            dfd, drel, names = stack[-1]
            name = next(names, None)
            if name is None:
                os.close(dfd)
                stack.pop()
                continue
            rel = f"{drel}/{name}" if drel else name
            fd = enter(rel) if enter is not None else None
            if fd is None:
                fd = _open_child(dfd, name)
                if fd is None:
                    continue  # removed (or swapped for a link) since the listing
            sub: int | None = None
            try:
                st = os.fstat(fd)
                if stat.S_ISDIR(st.st_mode):
                    sub = reopen(fd, os.O_RDONLY | os.O_DIRECTORY)
                    os.close(fd)
                    fd = sub
                yield Entry(rel, name, dfd, fd, st)
                if sub is not None:
                    try:
                        names_sub = iter(sorted(os.listdir(sub)))
                    except FileNotFoundError:  # removed while we held it
                        continue
                    stack.append((os.dup(sub), rel, names_sub))
            finally:
                os.close(fd)
    finally:
        for dfd, _, _ in stack:
            os.close(dfd)


class SizedReader:
    """Exactly `size` bytes of the file `fd`: zeros past an early end (it shrank while we read),
    nothing past `size` (it grew), so a tar header written from fstat stays true."""

    def __init__(self, fd: int, size: int) -> None:
        self.fd = fd
        self.left = size

    def read(self, n: int = -1) -> bytes:
        if n < 0 or n > self.left:
            n = self.left
        if n == 0:
            return b""
        data = os.read(self.fd, min(n, _CHUNK))
        if not data:
            data = bytes(min(n, _CHUNK))
        self.left -= len(data)
        return data
