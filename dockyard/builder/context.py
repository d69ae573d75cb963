"""Build context and COPY/ADD file work: spool + extract the context tar, find sources safely,
hash them for the cache (content, mode, link targets; never mtimes), copy them into a rootfs.

Every path inside an image rootfs is resolved with `resolve_in_root`, which follows symlinks as
if `root` were `/`: an image's absolute symlink can never lead a copy out onto the host.
"""

from __future__ import annotations

import fnmatch
import hashlib
import os
import posixpath
import shutil
import stat
import tarfile
from pathlib import Path
from typing import Any

from dockyard.errors import InvalidParameter
from dockyard.store.layers import apply_layer
from dockyard.util.paths import resolve_in_root


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


def _chown(path: Path, uid: int, gid: int) -> None:
    os.lchown(path, uid, gid)


def copy_into(sources: list[Path], root: Path, dest: str, workdir: str, *, uid: int = 0, gid: int = 0,
              mode: int | None = None, extract_tars: bool = False) -> None:
    """COPY/ADD semantics: a directory's contents are copied; several sources or a trailing '/'
    make `dest` a directory; a local tar is unpacked for ADD."""
    dest_is_dir = dest.endswith("/") or dest in (".", "..") or dest.endswith(("/.", "/..")) or len(sources) > 1
    if not dest.startswith("/"):
        dest = posixpath.join(workdir or "/", dest)
    target = resolve_in_root(root, dest)
    if not dest_is_dir and target.is_dir():
        dest_is_dir = True
    if len(sources) > 1 and target.exists() and not target.is_dir():
        raise InvalidParameter("When using COPY with more than one source file, the destination must be a "
                               "directory and end with a /")
    for src in sources:
        if src.is_dir() and not src.is_symlink():
            _mkdirs(root, target, uid, gid)
            _copy_tree(src, target, uid, gid, mode)
        elif extract_tars and _is_tar(src):
            _mkdirs(root, target, uid, gid)
            with open(src, "rb") as f:
                apply_layer(f, target)
        else:
            out = target / src.name if dest_is_dir else target
            _mkdirs(root, out.parent, uid, gid)
            _copy_one(src, out, uid, gid, mode)


def _mkdirs(root: Path, d: Path, uid: int, gid: int) -> None:
    missing = []
    p = d
    while not p.exists() and p != root:
        missing.append(p)
        p = p.parent
    for m in reversed(missing):
        m.mkdir(mode=0o755)
        _chown(m, uid, gid)


def _copy_one(src: Path, out: Path, uid: int, gid: int, mode: int | None) -> None:
    if out.is_dir() and not out.is_symlink():
        out = out / src.name
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        out.unlink()
    if src.is_symlink():
        os.symlink(os.readlink(src), out)
    else:
        shutil.copy2(src, out, follow_symlinks=False)
        if mode is not None:
            os.chmod(out, mode)
    _chown(out, uid, gid)


def _copy_tree(src: Path, dst: Path, uid: int, gid: int, mode: int | None) -> None:
    for dirpath, dirnames, filenames in os.walk(src):
        rel = os.path.relpath(dirpath, src)
        d = dst if rel == "." else dst / rel
        if rel != ".":
            if not d.is_dir():
                if d.exists() or d.is_symlink():
                    d.unlink()
                d.mkdir()
            shutil.copystat(dirpath, d)
            if mode is not None:
                os.chmod(d, mode)
            _chown(d, uid, gid)
        for n in filenames + [x for x in dirnames if os.path.islink(os.path.join(dirpath, x))]:
            _copy_one(Path(dirpath) / n, d / n, uid, gid, mode)
        dirnames[:] = [x for x in dirnames if not os.path.islink(os.path.join(dirpath, x))]


def _is_tar(p: Path) -> bool:
    try:
        return tarfile.is_tarfile(p)
    except OSError:
        return False


def lookup_id(root: Path, name: str, db: str) -> int:
    """A user or group name to its id via the image's /etc/passwd or /etc/group."""
    if name.isdigit():
        return int(name)
    try:
        text = resolve_in_root(root, f"/etc/{db}").read_text()
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
        text = resolve_in_root(root, "/etc/passwd").read_text()
    except OSError:
        return 0
    for line in text.splitlines():
        f = line.split(":")
        if len(f) > 3 and f[0] == user:
            return int(f[3])
    return 0
