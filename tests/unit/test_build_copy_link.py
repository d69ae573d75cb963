"""COPY from the build context hard-links the context's files into the step's upper dir where the
copy would make them identical (bctx.Linker): the layer it commits is the very tar a copy gives."""

from __future__ import annotations

import io
import os
import stat
from pathlib import Path

import pytest

from dockyard.builder import context as bctx
from dockyard.store.layers import write_diff
from dockyard.store.snapshotter import OverlaySnapshotter, mounted

pytestmark = pytest.mark.root


def _context(ctx: Path) -> None:
    (ctx / "src" / "sub").mkdir(parents=True)
    (ctx / "src" / "big.bin").write_bytes(os.urandom(300_000))
    (ctx / "src" / "sub" / "s.sh").write_text("#!/bin/sh\n")
    os.chmod(ctx / "src" / "sub" / "s.sh", 0o4755)
    (ctx / "src" / "tagged").write_text("x")
    os.setxattr(ctx / "src" / "tagged", "user.k", b"v")
    (ctx / "src" / "trusted").write_text("t")
    os.setxattr(ctx / "src" / "trusted", "trusted.k", b"v")  # a copy drops it: so it is copied
    (ctx / "src" / "theirs").write_text("owned by 1000")
    os.chown(ctx / "src" / "theirs", 1000, 1000)
    (ctx / "src" / "one").write_text("two names")
    os.link(ctx / "src" / "one", ctx / "src" / "other")  # the second name is copied, as before
    os.symlink("big.bin", ctx / "src" / "ln")
    (ctx / "file.txt").write_text("f\n")
    for p in [ctx, *ctx.rglob("*")]:
        os.utime(p, (1_600_000_000, 1_600_000_000), follow_symlinks=False)


def _copy(tmp: Path, ctx: Path, name: str, lower: Path, linked: bool, **kw: object) -> tuple[Path, int]:
    snaps = OverlaySnapshotter(tmp / name, tmp / "empty")
    (tmp / "empty").mkdir(exist_ok=True)
    mounts = snaps.prepare("step", [lower])
    with mounted(mounts, tmp / name / "merged") as root:
        linker = bctx.Linker(root, snaps.upper("step"), ctx) if linked else None
        try:
            bctx.copy_into([ctx / "src"], root, "/opt/app/", "/", linker=linker, **kw)  # type: ignore[arg-type]
            bctx.copy_into([ctx / "file.txt"], root, "/etc/file.txt", "/", linker=linker, **kw)  # type: ignore[arg-type]
        finally:
            if linker is not None:
                linker.close()
    upper = snaps.commit("step")
    for p in [upper, *upper.rglob("*")]:  # dirs and links made now: their mtimes are the clock's
        if p.is_symlink() or p.is_dir():
            os.utime(p, (1_700_000_000, 1_700_000_000), follow_symlinks=False)
    return upper, linker.count if linker is not None else 0


def _diff_id(upper: Path) -> str:
    return write_diff(upper, io.BytesIO())  # type: ignore[arg-type]


@pytest.mark.parametrize("kw", [{}, {"mode": bctx.parse_chmod("755")}, {"uid": 1000, "gid": 1000}])
def test_linked_copy_makes_the_same_layer(tmp_path: Path, kw: dict[str, object]) -> None:
    if os.geteuid() != 0:
        pytest.fail("mounts an overlay: needs root")
    ctx = tmp_path / "build" / "context"
    ctx.mkdir(parents=True)
    _context(ctx)
    lower = tmp_path / "lower"
    (lower / "etc").mkdir(parents=True)
    (lower / "etc" / "file.txt").write_text("the base's\n")  # replaced by the copy
    (lower / "opt").mkdir()
    copied, _ = _copy(tmp_path, ctx, "a", lower, False, **kw)
    linked, n = _copy(tmp_path, ctx, "b", lower, True, **kw)
    assert _diff_id(linked) == _diff_id(copied)
    app = linked / "opt" / "app"
    shares = {p.name for p in app.rglob("*") if p.is_file() and not p.is_symlink()
              and os.stat(p).st_ino == os.stat(ctx / "src" / p.relative_to(app)).st_ino}
    if kw.get("mode"):
        assert n == 0 and shares == set()  # --chmod 755 changes s.sh and big.bin: never the shared inode
    elif kw.get("uid"):
        assert shares == {"theirs"}
    else:
        assert shares == {"big.bin", "s.sh", "tagged", "one"}
        assert os.stat(linked / "etc" / "file.txt").st_ino == os.stat(ctx / "file.txt").st_ino
        assert n == 5
    assert not [p for p in linked.rglob(".dockyard-link-*")]
    st = os.stat(ctx / "src" / "sub" / "s.sh")  # the context's files are as they were
    assert stat.S_IMODE(st.st_mode) == 0o4755 and st.st_uid == 0
    assert os.stat(ctx / "src" / "theirs").st_uid == 1000
