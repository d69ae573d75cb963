"""store/safetree.py: paths resolved and trees walked by fd inside a root, never out of it."""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from dockyard.store import safetree


@pytest.fixture()
def tree(tmp_path: Path) -> Iterator[tuple[Path, int, Path]]:
    """root/ (the tree) and outside/ (the host) side by side; yields (root, its fd, outside)."""
    root, outside = tmp_path / "root", tmp_path / "outside"
    (root / "etc").mkdir(parents=True)
    (root / "etc/passwd").write_text("inside")
    outside.mkdir()
    (outside / "passwd").write_text("outside")
    fd = safetree.open_top(root)
    yield root, fd, outside
    os.close(fd)


def _target(fd: int) -> str:
    return os.readlink(f"/proc/self/fd/{fd}")


def test_links_resolve_inside_the_root(tree: tuple[Path, int, Path]) -> None:
    root, top, outside = tree
    os.symlink(str(outside), root / "abs")  # the host's path: means root/<that path>, which is missing
    os.symlink("/etc", root / "etc-abs")
    os.symlink("../../../../../../etc", root / "etc-rel")
    for p in ("etc-abs/passwd", "etc-rel/passwd", "/../../etc/passwd"):
        r = safetree.resolve(top, p)
        assert r.path == "/etc/passwd" and _target(r.fd) == str(root / "etc/passwd")
        os.close(r.fd)
    with pytest.raises(FileNotFoundError):
        safetree.resolve(top, "abs/passwd")
    assert safetree.read_file(top, "etc-rel/passwd") == b"inside"


def test_last_link_and_loops(tree: tuple[Path, int, Path]) -> None:
    root, top, _ = tree
    os.symlink("/etc/passwd", root / "pw")
    r = safetree.resolve(top, "pw", follow_last=False)
    assert r.path == "/pw" and _target(r.fd) == str(root / "pw")
    os.close(r.fd)
    os.symlink("loop", root / "loop")
    with pytest.raises(OSError) as e:
        safetree.resolve(top, "loop/x")
    assert e.value.errno == errno.ELOOP


def test_mkdir_makes_missing_dirs_inside(tree: tuple[Path, int, Path]) -> None:
    root, top, outside = tree
    os.symlink(str(outside), root / "out")
    fd = safetree.resolve_dir(top, "/out/a/b", lambda d, n: os.mkdir(n, 0o700, dir_fd=d))
    os.close(fd)
    assert (root / str(outside).lstrip("/") / "a/b").is_dir()
    assert sorted(os.listdir(outside)) == ["passwd"]


def test_open_dir_follows_no_link(tree: tuple[Path, int, Path]) -> None:
    root, top, outside = tree
    os.symlink(str(outside), root / "l")
    with pytest.raises(OSError) as e:
        safetree.open_dir(top, ["l"])
    assert e.value.errno in (errno.ELOOP, errno.ENOTDIR)
    fd = safetree.open_dir(top, ["etc"])
    assert _target(fd) == str(root / "etc")
    os.close(fd)


def test_walk_is_sorted_parents_first_and_never_follows(tree: tuple[Path, int, Path]) -> None:
    root, top, outside = tree
    os.symlink(str(outside), root / "etc/l")
    (root / "a/b").mkdir(parents=True)
    (root / "a/b/f").write_text("x")
    got = [(e.rel, e.name) for e in safetree.walk(top)]
    assert got == [("a", "a"), ("a/b", "b"), ("a/b/f", "f"), ("etc", "etc"), ("etc/l", "l"),
                   ("etc/passwd", "passwd")]
    assert [e.readlink() for e in safetree.walk(top) if e.rel == "etc/l"] == [str(outside)]


def test_walk_skips_what_goes_away_and_holds_what_it_opened(tree: tuple[Path, int, Path]) -> None:
    root, top, outside = tree
    for n in ("a", "b", "c"):
        (root / n).write_text(n)
    seen = []
    for e in safetree.walk(top):
        seen.append(e.rel)
        if e.rel == "a":
            os.unlink(root / "b")  # listed already, gone when its turn comes
        if e.rel == "c":
            # swapped for a link while we hold it: the fd still reads the file we opened
            os.rename(root / "c", root / "c.old")
            os.symlink(str(outside / "passwd"), root / "c")
            fd = e.open()
            assert os.read(fd, 100) == b"c"
            os.close(fd)
    assert seen == ["a", "c", "etc", "etc/passwd"]


def test_walk_enter_replaces_a_child(tree: tuple[Path, int, Path]) -> None:
    root, top, outside = tree
    (root / "vol").mkdir()
    got = [e.rel for e in safetree.walk(top, lambda rel: os.open(outside, os.O_PATH) if rel == "vol" else None)]
    assert "vol/passwd" in got


def test_sized_reader_pads_and_cuts(tmp_path: Path) -> None:
    p = tmp_path / "f"
    p.write_bytes(b"abc")
    fd = os.open(p, os.O_RDONLY)
    try:
        r = safetree.SizedReader(fd, 5)  # the header said 5: it shrank to 3
        assert r.read(10) == b"abc" and r.read(10) == b"\0\0" and r.read(1) == b""
        os.lseek(fd, 0, os.SEEK_SET)
        assert safetree.SizedReader(fd, 2).read() == b"ab"  # it grew: the header's size
    finally:
        os.close(fd)
