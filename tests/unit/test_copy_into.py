"""builder/context.copy_into on a made-up image tree: COPY/ADD semantics, written by fd only."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from dockyard.builder.context import copy_into, parse_chmod

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="COPY sets owners (needs root)")


@pytest.fixture()
def tree(tmp_path: Path) -> tuple[Path, Path, Path]:
    """(context, image root, a host dir beside them)."""
    ctx, root, host = tmp_path / "ctx", tmp_path / "root", tmp_path / "host"
    for d in (ctx, root, host):
        d.mkdir()
    return ctx, root, host


def test_links_below_the_destination_are_replaced_never_followed(tree: tuple[Path, Path, Path]) -> None:
    ctx, root, host = tree
    (ctx / "src/a/b").mkdir(parents=True)
    (ctx / "src/a/b/f").write_text("x")
    (ctx / "src/file").write_text("y")
    (root / "app").mkdir()
    os.symlink(str(host), root / "app/a")  # a directory's place
    os.symlink("../" * 10 + str(host).lstrip("/"), root / "app/file")  # a file's place
    copy_into([ctx / "src"], root, "/app/", "/")
    assert os.listdir(host) == []
    assert (root / "app/a/b/f").read_text() == "x" and not (root / "app/a").is_symlink()
    assert (root / "app/file").read_text() == "y" and not (root / "app/file").is_symlink()


def test_the_destination_path_follows_links_inside_the_root(tree: tuple[Path, Path, Path]) -> None:
    ctx, root, host = tree
    (ctx / "f").write_text("z")
    (root / "real").mkdir()
    os.symlink(str(host), root / "abs")  # means root/<host path>: made there, not on the host
    os.symlink("/real", root / "dest")
    copy_into([ctx / "f"], root, "/dest/", "/")
    copy_into([ctx / "f"], root, "/abs/sub/", "/", uid=7, gid=8)
    assert (root / "real/f").read_text() == "z"
    assert os.listdir(host) == []
    made = root / str(host).lstrip("/") / "sub"
    assert (made / "f").read_text() == "z"
    assert (made.stat().st_uid, made.stat().st_gid) == (7, 8)  # directories COPY makes are the owner's


def test_modes_owner_and_setuid_are_kept(tree: tuple[Path, Path, Path]) -> None:
    ctx, root, _ = tree
    (ctx / "tool").write_text("#!/bin/sh\n")
    os.chmod(ctx / "tool", 0o4755)
    copy_into([ctx / "tool"], root, "/usr/bin/tool", "/", uid=5, gid=6)
    st = (root / "usr/bin/tool").stat()
    assert stat.S_IMODE(st.st_mode) == 0o4755 and (st.st_uid, st.st_gid) == (5, 6)
    copy_into([ctx / "tool"], root, "/usr/bin/tool2", "/", mode=parse_chmod("700"))
    assert stat.S_IMODE((root / "usr/bin/tool2").stat().st_mode) == 0o700
