"""A container's init layer: what Docker puts between the image and the container's own changes.

/.dockerenv (programs test for it to know they run in a container), and empty mount points for
what the runtime mounts at start (/etc/hosts, /etc/hostname, /etc/resolv.conf, /proc, /sys,
/dev/...). With them in a read-only layer of their own, the container's upper dir stays free of
them: `diff` and `commit` show only what the container itself changed, and `export` has
/.dockerenv, as with dockerd. Only what the image lacks is made, so an image's own /etc/hosts is
not hidden (moby's setupInitLayer does the same).

The layer depends only on the image's layers and is read-only under every container, so one is made
per top layer, beside it in the layer store (it goes with that layer), and a container's `init` is a
symlink to it: a dozen mkdirs and file creations at every create, ~2-4 ms of CPU on the way to the
start (ext4, loaded), became one symlink.
"""

from __future__ import annotations

import os
import secrets
import shutil
import stat
from pathlib import Path

from dockyard import trace

DIRS = ("dev", "dev/pts", "dev/shm", "proc", "sys", "etc")
FILES = (".dockerenv", "etc/hosts", "etc/hostname", "etc/resolv.conf", "dev/console")
LINKS = {"etc/mtab": "/proc/mounts"}


def _image_stat(layer_dirs: list[Path], rel: str) -> os.stat_result | None:
    """The image's (layers bottom-first) entry at rel: the topmost layer naming it decides.
    A whiteout there (overlay's 0/0 char device) means the image removed it."""
    for layer in reversed(layer_dirs):
        try:
            st = (layer / rel).lstat()
        except (FileNotFoundError, NotADirectoryError):
            continue
        return None if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0 else st
    return None


def _dir(dest: Path, layer_dirs: list[Path], rel: str) -> None:
    # A directory in this layer hides the attributes of the image's: copy them over.
    st = _image_stat(layer_dirs, rel)
    (dest / rel).mkdir(exist_ok=True)
    if st is not None and stat.S_ISDIR(st.st_mode):
        os.chmod(dest / rel, stat.S_IMODE(st.st_mode))
        os.lchown(dest / rel, st.st_uid, st.st_gid)
    else:
        os.chmod(dest / rel, 0o755)


def make(dest: Path, layer_dirs: list[Path]) -> None:
    """Fill dest (a new directory) with the init layer for an image made of layer_dirs."""
    with trace.step("file", f"mkdir {dest} (init layer)",
                    "/.dockerenv and empty mount points in a layer of their own, so diff and commit show only "
                    "the container's changes") as s:
        dest.mkdir(parents=True, exist_ok=True)
        for d in DIRS:
            _dir(dest, layer_dirs, d)
        made = []
        for f in FILES:
            if f == ".dockerenv" or _image_stat(layer_dirs, f) is None:
                mode = 0o755 if f == ".dockerenv" else 0o644
                (dest / f).touch()
                os.chmod(dest / f, mode)
                made.append(f)
        for link, target in LINKS.items():
            if _image_stat(layer_dirs, link) is None:
                os.symlink(target, dest / link)
                made.append(f"{link} -> {target}")
        s.result = f"made {' '.join(made)}"


def link(dest: Path, layer_dirs: list[Path]) -> None:
    """The container's init layer at dest: a symlink to its image's shared one (made if it is not there
    yet), or a layer of its own for an image without layers."""
    if not layer_dirs:
        make(dest, layer_dirs)
        return
    shared = ensure_shared(layer_dirs)
    with trace.step("file", f"ln -s {shared} {dest} (init layer)",
                    "/.dockerenv and empty mount points in a layer of their own, shared by the image's "
                    "containers, so diff and commit show only the container's changes"):
        os.symlink(shared, dest)


def ensure_shared(layer_dirs: list[Path]) -> Path:
    """The shared init layer of an image made of layer_dirs (not empty), made if it is not there: at the
    first create, or again after its layer's snapshot was dropped and extracted anew (a power loss)."""
    shared = layer_dirs[-1].parent / "init"
    if not shared.is_dir():
        # Made aside and renamed in: a concurrent create sees none or a whole one (the loser's goes).
        tmp = shared.with_name(f"init-tmp-{secrets.token_hex(4)}")
        try:
            make(tmp, layer_dirs)
            os.rename(tmp, shared)
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)
            if not shared.is_dir():
                raise
    return shared
