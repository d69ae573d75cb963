"""Build context and COPY/ADD file work: spool + extract the context tar, find sources safely,
hash them for the cache (content, mode, link targets; never mtimes), copy them into a rootfs.

The image's tree is written by file descriptor only (store/safetree.py): no link the image
holds, in the destination or below it, can lead a copy out onto the host.
"""

from __future__ import annotations

import contextlib
import errno
import fnmatch
import hashlib
import os
import posixpath
import secrets
import shutil
import stat
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dockyard.errors import InvalidParameter
from dockyard.store import safetree
from dockyard.store.layers import apply_layer
from dockyard.util.paths import resolve_in_root

# COPY --chmod: the new permission bits from (the source's mode, whether it is a directory).
Chmod = Callable[[int, bool], int]
# COPY --exclude: whether a source path (relative to what the source names) stays out.
Exclude = Callable[[str], bool]

_WHO = {"u": 0o4700, "g": 0o2070, "o": 0o1007}


def parse_chmod(spec: str) -> Chmod:
    """`--chmod` as octal (`755`) or symbolic (`u+x,g-w,o=r`, `a+X`), as chmod(1) applies them."""
    if spec and all(c in "01234567" for c in spec):
        n = int(spec, 8)
        if n > 0o7777:
            raise InvalidParameter(f"invalid chmod parameter: {spec}")
        # BuildKit applies it as a Go FileMode: setuid, setgid and sticky bits written this way are lost
        return lambda _m, _d: n & 0o777
    clauses = []
    for clause in spec.split(","):
        i = 0
        who = 0
        while i < len(clause) and clause[i] in "ugoa":
            who |= 0o7777 if clause[i] == "a" else _WHO[clause[i]]
            i += 1
        ops = []
        while i < len(clause) and clause[i] in "+-=":
            op = clause[i]
            i += 1
            perms = ""
            while i < len(clause) and clause[i] in "rwxXstugo":
                perms += clause[i]
                i += 1
            ops.append((op, perms))
        if not ops or i != len(clause):
            raise InvalidParameter(f"invalid chmod parameter: {spec}")
        clauses.append((who, ops))

    def apply(mode: int, is_dir: bool) -> int:
        m = stat.S_IMODE(mode)
        for who, ops in clauses:
            mask = who or 0o7777  # no `who`: all (umask ignored, as BuildKit's)
            for op, perms in ops:
                bits = 0
                for c in perms:
                    if c in "ugo":  # copy another class's current bits
                        shift = {"u": 6, "g": 3, "o": 0}[c]
                        v = (m >> shift) & 7
                        bits |= v << 6 | v << 3 | v
                    else:
                        bits |= {"r": 0o444, "w": 0o222, "x": 0o111, "s": 0o6000, "t": 0o1000,
                                 "X": 0o111 if is_dir or m & 0o111 else 0}[c]
                bits &= mask
                if op == "+":
                    m |= bits
                elif op == "-":
                    m &= ~bits
                else:
                    m = (m & ~(mask & 0o7777 if who else 0o7777)) | bits
        return m

    return apply


# xattrs a copy keeps (shutil.copy2 kept them all; trusted.* are overlay's own).
_COPIED_XATTRS = ("user.", "security.capability")


def extract_context(tar_path: Path, dest: Path) -> None:
    """The context tar (maybe compressed) into `dest`; refuses escapes and device nodes."""
    dest.mkdir(parents=True, exist_ok=True)
    os.chmod(dest, 0o755)  # not the umask's: the root's mode is hashed (a "./" entry overrides it)
    if tar_path.stat().st_size == 0:
        return
    _end_plain_tar(tar_path)
    with open(tar_path, "rb") as f:
        apply_layer(f, dest)


def _end_plain_tar(path: Path) -> None:
    """Pad a plain tar and add end blocks. docker's CLI (`build -f- DIR`) sends a context that stops
    right after the last file's data, with neither; Go's tar reader takes it, so we do too. Zero
    blocks after a proper end change nothing."""
    with open(path, "r+b") as f:
        if f.read(512)[257:262] != b"ustar":
            return  # compressed (or not a tar at all: the extraction says so)
        size = f.seek(0, os.SEEK_END)
        f.write(b"\0" * (-size % 512 + 1024))


def context_sources(ctx: Path, src: str) -> list[Path]:
    """Context paths matching `src` (wildcards allowed); must stay inside the context."""
    norm = posixpath.normpath("/" + src.lstrip("/")) if not src.startswith("..") else src
    rel = posixpath.normpath(src)
    if rel == ".." or rel.startswith("../"):
        raise InvalidParameter(f"Forbidden path outside the build context: {src} ()")
    rel = norm.lstrip("/")
    if not any(c in rel for c in "*?["):
        p = resolve_in_root(ctx, rel)
        if not os.path.lexists(p):
            raise InvalidParameter("COPY failed: file not found in build context or excluded by .dockerignore: "
                                   f"stat {src}: file does not exist")
        _inside(ctx, p, src)
        return [p]
    out: list[Path] = []
    pat = rel.split("/")

    def match(d: Path, i: int) -> None:
        for name in sorted(os.listdir(d)):
            if fnmatch.fnmatchcase(name, pat[i]):
                p = d / name
                if i == len(pat) - 1:
                    out.append(p)
                elif p.is_dir() and not p.is_symlink():
                    match(p, i + 1)

    match(ctx, 0)
    if not out:
        raise InvalidParameter("COPY failed: no source files were specified" if src == "*" else
                               "COPY failed: file not found in build context or excluded by .dockerignore: "
                               f"stat {src}: file does not exist")
    for p in out:
        _inside(ctx, p, src)
    return sorted(set(out))


def _inside(root: Path, p: Path, src: str) -> None:
    real = os.path.realpath(p) if not os.path.islink(p) else os.path.realpath(p.parent)
    base = os.path.realpath(root)
    if real != base and not real.startswith(base + "/"):
        raise InvalidParameter(f"Forbidden path outside the build context: {src} ()")


def hash_sources(paths: list[Path], extra: str = "") -> str:
    """A content hash of the sources: names, modes, link targets and each file's sha256 (not
    mtimes or owners, which COPY replaces anyway). `ctxindex` computes the same from the tar."""
    h = hashlib.sha256(extra.encode())
    for top in paths:
        feed_path(h, top)
    return h.hexdigest()


def feed_path(h: Any, top: Path) -> None:
    """One source (a tree, walked in a fixed order) into the running hash `h`."""
    h.update(b"\0top\0" + top.name.encode())
    for p in _walk(top):
        st = os.lstat(p)
        rel = os.path.relpath(p, top)
        h.update(f"\0{rel}\0{stat.S_IMODE(st.st_mode):o}\0{stat.S_IFMT(st.st_mode):o}\0".encode())
        if stat.S_ISLNK(st.st_mode):
            h.update(os.readlink(p).encode())
        elif stat.S_ISREG(st.st_mode):
            fh = hashlib.sha256()
            with open(p, "rb") as f:
                while chunk := f.read(1 << 20):
                    fh.update(chunk)
            h.update(fh.digest())


def _walk(top: Path) -> list[Path]:
    if top.is_symlink() or not top.is_dir():
        return [top]
    out = [top]
    for dirpath, dirnames, filenames in os.walk(top):
        dirnames.sort()
        for n in sorted(filenames + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]):
            out.append(Path(dirpath) / n)
        for d in dirnames:
            if not os.path.islink(os.path.join(dirpath, d)):
                out.append(Path(dirpath) / d)
    return out


class Linker:
    """COPY without writing the bytes again: a regular file of the build's own context whose owner,
    mode and xattrs already are what the copy would give it is hard-linked into the step's overlay
    upper dir, in place of the empty file overlay has just made for it there, instead of being copied.

    Safe because nothing writes those inodes afterwards: the context is the daemon's own (extracted for
    this build, only ever bound read-only into a step, unlinked with the build's dir), a layer's
    snapshot is a read-only lowerdir, and a container's change to such a file is a copy-up. A source
    inode is linked once per step (a second name of it is copied, as before: a layer tar would
    otherwise hold a hard link entry). Anything unexpected falls back to the copy."""

    def __init__(self, root: Path, upper: Path, sources_under: Path) -> None:
        self.root = os.path.realpath(root)  # the mounted tree the copy resolves its destinations in
        self.under = os.path.realpath(sources_under)
        self.upper_top = safetree.open_top(upper)
        self.dev = os.fstat(self.upper_top).st_dev
        self.dirs: dict[str, int] = {}  # relative dir -> an fd of it in the upper dir (-1: none)
        self.linked: set[tuple[int, int]] = set()
        self.count = 0

    def allows(self, src: Path) -> bool:
        """Whether `src` (a source COPY names) lies in the context."""
        real = os.path.realpath(src.parent) + "/" + src.name
        return real == self.under or real.startswith(self.under + "/")

    def close(self) -> None:
        for fd in self.dirs.values():
            if fd >= 0:
                os.close(fd)
        self.dirs.clear()
        os.close(self.upper_top)

    def _upper_dir(self, dir_fd: int) -> int:
        path = os.readlink(f"/proc/self/fd/{dir_fd}")
        if path != self.root and not path.startswith(self.root + "/"):
            return -1
        rel = path[len(self.root):].strip("/")
        fd = self.dirs.get(rel)
        if fd is None:
            try:
                fd = safetree.open_dir(self.upper_top, rel.split("/") if rel else [])
            except OSError:
                fd = -1
            self.dirs[rel] = fd
        return fd

    def link(self, sfd: int, st: os.stat_result, dir_fd: int, name: str, made_fd: int, uid: int, gid: int,
             mode: Chmod | None) -> bool:
        """Put the source `sfd` (fstat `st`) as `name` in `dir_fd`, where `made_fd` is the empty file
        just made there through the mount; False (nothing changed) when it must be copied."""
        key = (st.st_dev, st.st_ino)
        if (st.st_dev != self.dev or (st.st_uid, st.st_gid) != (uid, gid) or key in self.linked
                or (mode is not None and mode(st.st_mode, False) != stat.S_IMODE(st.st_mode))
                or any(not k.startswith(_COPIED_XATTRS) for k in os.listxattr(sfd))):
            return False
        udir = self._upper_dir(dir_fd)
        if udir < 0:
            return False
        try:  # the upper dir's entry must be the very file the mount made
            if os.stat(name, dir_fd=udir, follow_symlinks=False).st_ino != os.fstat(made_fd).st_ino:
                return False
        except OSError:
            return False
        tmp = f".dockyard-link-{secrets.token_hex(6)}"
        try:
            os.link(f"/proc/self/fd/{sfd}", tmp, dst_dir_fd=udir, follow_symlinks=True)  # the inode we checked
        except OSError:
            return False
        try:
            os.rename(tmp, name, src_dir_fd=udir, dst_dir_fd=udir)
        except OSError:
            with contextlib.suppress(OSError):
                os.unlink(tmp, dir_fd=udir)
            return False
        self.linked.add(key)
        self.count += 1
        return True


def copy_into(sources: list[Path], root: Path, dest: str, workdir: str, *, uid: int = 0, gid: int = 0,
              mode: Chmod | None = None, extract_tars: bool = False, exclude: Exclude | None = None,
              linker: Linker | None = None) -> None:
    """COPY/ADD semantics: a directory's contents are copied; several sources or a trailing '/'
    make `dest` a directory; a local tar is unpacked for ADD.

    The image's tree is written by fd only (safetree): `dest` is resolved inside `root` (its links
    followed as if `root` were `/`), and below it nothing is followed: a link the image placed where
    the copy puts a directory is replaced by that directory, as dockerd's tar copy does, so no
    link (absolute, `../..`, or from a hostile base image) can lead the copy onto the host."""
    dest_is_dir = dest.endswith("/") or dest in (".", "..") or dest.endswith(("/.", "/..")) or len(sources) > 1
    if not dest.startswith("/"):
        dest = posixpath.join(workdir or "/", dest)

    def mkdir(dir_fd: int, name: str) -> None:
        os.mkdir(name, 0o755, dir_fd=dir_fd)
        os.chown(name, uid, gid, dir_fd=dir_fd, follow_symlinks=False)

    top = safetree.open_top(root)
    try:
        found = _lookup(top, dest)
        target_path = found[0] if found else posixpath.normpath(dest)
        target_is_dir = found is not None and found[1]
        if not dest_is_dir and target_is_dir:
            dest_is_dir = True
        if len(sources) > 1 and found is not None and not target_is_dir:
            raise InvalidParameter("When using COPY with more than one source file, the destination must be a "
                                   "directory and end with a /")
        for src in sources:
            if exclude is not None and exclude(src.name):
                continue
            into_dir = (src.is_dir() and not src.is_symlink()) or (extract_tars and _is_tar(src)) or dest_is_dir
            parent, name = (target_path, src.name) if into_dir else posixpath.split(target_path)
            dfd = safetree.resolve_dir(top, parent, mkdir)
            lk = linker if linker is not None and linker.allows(src) else None
            try:
                if src.is_dir() and not src.is_symlink():
                    _copy_tree(src, dfd, uid, gid, mode, exclude, lk)
                elif extract_tars and _is_tar(src):
                    with open(src, "rb") as f:
                        apply_layer(f, dfd)
                else:
                    _copy_one(src, dfd, name, uid, gid, mode, lk)
            finally:
                os.close(dfd)
    except NotADirectoryError as e:
        raise InvalidParameter(f"failed to copy files: {e.filename}: not a directory") from None
    finally:
        os.close(top)


def _lookup(top: int, path: str) -> tuple[str, bool] | None:
    """(the path `path` resolves to in the tree, whether it is a directory), or None if missing."""
    try:
        r = safetree.resolve(top, path)
    except FileNotFoundError:
        return None
    try:
        return r.path, stat.S_ISDIR(os.fstat(r.fd).st_mode)
    finally:
        os.close(r.fd)


def _remove(dir_fd: int, name: str) -> None:
    """Whatever is at `name` (a directory with its contents), never following a link."""
    try:
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):
        shutil.rmtree(name, dir_fd=dir_fd)
    else:
        os.unlink(name, dir_fd=dir_fd)


def _copy_one(src: Path, dir_fd: int, name: str, uid: int, gid: int, mode: Chmod | None,
              linker: Linker | None = None) -> None:
    """The context file or link `src` as `name` in `dir_fd`, replacing what is there."""
    _remove(dir_fd, name)
    if src.is_symlink():
        os.symlink(os.readlink(src), name, dir_fd=dir_fd)
        os.chown(name, uid, gid, dir_fd=dir_fd, follow_symlinks=False)
        return
    sfd = os.open(src, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        _write_copy(sfd, os.fstat(sfd), dir_fd, name, uid, gid, mode, linker)
    finally:
        os.close(sfd)


def _write_copy(sfd: int, st: os.stat_result, dir_fd: int, name: str, uid: int, gid: int,
                mode: Chmod | None, linker: Linker | None = None) -> None:
    dfd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=dir_fd)
    try:
        if linker is not None and linker.link(sfd, st, dir_fd, name, dfd, uid, gid, mode):
            return
        _copy_data(sfd, dfd, st.st_size)
        _set_attrs(dfd, sfd, st, uid, gid, mode)
    finally:
        os.close(dfd)


def _copy_data(sfd: int, dfd: int, size: int) -> None:
    left = size
    try:
        while left > 0:
            n = os.copy_file_range(sfd, dfd, min(left, 1 << 30))
            if n == 0:
                return  # it shrank
            left -= n
        return
    except OSError as e:
        if e.errno not in (errno.EXDEV, errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
            raise
    # Across filesystems (the context on ext4, the step's rootfs an overlay mount: EXDEV above) sendfile
    # still copies inside the kernel: one copy of each page, none through Python.
    try:
        while left > 0:
            n = os.sendfile(dfd, sfd, size - left, min(left, 1 << 30))
            if n == 0:
                return
            left -= n
        return
    except OSError as e:
        if e.errno not in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
            raise
    os.lseek(sfd, size - left, os.SEEK_SET)
    while left > 0 and (chunk := os.read(sfd, min(left, 1 << 20))):
        view = memoryview(chunk)
        while view:
            view = view[os.write(dfd, view):]
        left -= len(chunk)


def _set_attrs(dfd: int, sfd: int, st: os.stat_result, uid: int, gid: int, mode: Chmod | None) -> None:
    os.fchown(dfd, uid, gid)  # before chmod: chown clears setuid bits
    os.fchmod(dfd, mode(st.st_mode, stat.S_ISDIR(st.st_mode)) if mode is not None else stat.S_IMODE(st.st_mode))
    for k in os.listxattr(sfd):
        if k.startswith(_COPIED_XATTRS):
            with contextlib.suppress(OSError):
                os.setxattr(dfd, k, os.getxattr(sfd, k))
    os.utime(dfd, ns=(st.st_atime_ns, st.st_mtime_ns))


def _copy_tree(src: Path, dst_fd: int, uid: int, gid: int, mode: Chmod | None,
               exclude: Exclude | None = None, linker: Linker | None = None) -> None:
    """The contents of the directory `src` into the directory `dst_fd`, both walked by fd."""
    sfd = safetree.open_top(src)
    stack: list[tuple[str, int]] = [("", os.dup(dst_fd))]  # destination dirs down to the current entry
    skipped: list[str] = []  # excluded directories: nothing below them is copied
    try:
        for e in safetree.walk(sfd):
            if exclude is not None:
                if any(e.rel.startswith(d + "/") for d in skipped):
                    continue
                if exclude(e.rel):
                    if stat.S_ISDIR(e.st.st_mode):
                        skipped.append(e.rel)
                    continue
            parent = e.rel.rpartition("/")[0]
            while stack[-1][0] != parent:
                os.close(stack.pop()[1])
            pfd = stack[-1][1]
            if stat.S_ISDIR(e.st.st_mode):
                try:
                    os.mkdir(e.name, 0o700, dir_fd=pfd)
                except FileExistsError:
                    st = os.stat(e.name, dir_fd=pfd, follow_symlinks=False)
                    if not stat.S_ISDIR(st.st_mode):  # a file or a link: replaced, never followed
                        os.unlink(e.name, dir_fd=pfd)
                        os.mkdir(e.name, 0o700, dir_fd=pfd)
                dfd = safetree.open_dir(pfd, [e.name])
                stack.append((e.rel, dfd))
                _set_attrs(dfd, e.fd, e.st, uid, gid, mode)
            elif stat.S_ISLNK(e.st.st_mode):
                _remove(pfd, e.name)
                os.symlink(e.readlink(), e.name, dir_fd=pfd)
                os.chown(e.name, uid, gid, dir_fd=pfd, follow_symlinks=False)
            elif stat.S_ISREG(e.st.st_mode):
                _remove(pfd, e.name)
                rfd = e.open()
                try:
                    _write_copy(rfd, e.st, pfd, e.name, uid, gid, mode, linker)
                finally:
                    os.close(rfd)
    finally:
        for _, fd in stack:
            os.close(fd)
        os.close(sfd)


def _is_tar(p: Path) -> bool:
    try:
        return tarfile.is_tarfile(p)
    except OSError:
        return False


def _read_etc(root: Path, path: str) -> str:
    top = safetree.open_top(root)
    try:
        return safetree.read_file(top, path, 16 << 20).decode("utf-8", "replace")
    finally:
        os.close(top)


def lookup_id(root: Path, name: str, db: str) -> int:
    """A user or group name to its id via the image's /etc/passwd or /etc/group."""
    if name.isdigit():
        return int(name)
    try:
        text = _read_etc(root, f"/etc/{db}")
    except OSError:
        text = ""
    for line in text.splitlines():
        f = line.split(":")
        if len(f) > 2 and f[0] == name:
            return int(f[2])
    what = "user" if db == "passwd" else "group"
    raise InvalidParameter(f"unable to convert uid/gid chown string to host mapping: can't find {what} {name}")


def parse_chown(root: Path, spec: str) -> tuple[int, int]:
    user, _, group = spec.partition(":")
    uid = lookup_id(root, user, "passwd")
    gid = lookup_id(root, group, "group") if group else uid if user.isdigit() else _primary_gid(root, user)
    return uid, gid


def _primary_gid(root: Path, user: str) -> int:
    try:
        text = _read_etc(root, "/etc/passwd")
    except OSError:
        return 0
    for line in text.splitlines():
        f = line.split(":")
        if len(f) > 3 and f[0] == user:
            return int(f[3])
    return 0
