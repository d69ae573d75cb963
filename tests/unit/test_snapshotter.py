"""The snapshot lifecycle every Snapshotter passes (containerd's snapshots/testsuite in spirit):
prepare, mounts, view, commit, remove, usage, on the real kernel's overlay."""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from dockyard.store.overlay import is_mounted
from dockyard.store.snapshotter import OverlaySnapshotter, Snapshotter, mounted

pytestmark = pytest.mark.root

Make = Callable[[Path], Snapshotter]
IMPLEMENTATIONS: dict[str, Make] = {
    "overlay": lambda root: OverlaySnapshotter(root / "snaps", root / "empty"),
}


@pytest.fixture(params=sorted(IMPLEMENTATIONS))
def snap(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Snapshotter]:
    if os.geteuid() != 0:
        pytest.fail("snapshotter tests mount overlays: they need root")
    yield IMPLEMENTATIONS[request.param](tmp_path)
    leftover = [line.split()[4] for line in open("/proc/self/mountinfo") if str(tmp_path) in line.split()[4]]
    assert leftover == [], f"mounts left behind: {leftover}"


@pytest.fixture()
def parents(tmp_path: Path) -> list[Path]:
    """Two read-only layers, bottom first: the top one changes a file of the bottom one."""
    base, top = tmp_path / "l1", tmp_path / "l2"
    (base / "etc").mkdir(parents=True)
    (base / "etc" / "os").write_text("base\n")
    (base / "gone").write_text("x")
    (top / "etc").mkdir(parents=True)
    (top / "etc" / "os").write_text("top\n")
    return [base, top]


def test_prepare_shows_parents_top_layer_winning(snap: Snapshotter, parents: list[Path], tmp_path: Path) -> None:
    with mounted(snap.prepare("c1", parents), tmp_path / "m") as root:
        assert (root / "etc" / "os").read_text() == "top\n"
        assert (root / "gone").exists()


def test_changes_persist_across_mounts_and_leave_parents_alone(snap: Snapshotter, parents: list[Path],
                                                               tmp_path: Path) -> None:
    with mounted(snap.prepare("c1", parents), tmp_path / "m") as root:
        (root / "new").write_text("hello")
        (root / "gone").unlink()
    assert not is_mounted(tmp_path / "m")
    with mounted(snap.mounts("c1", parents), tmp_path / "m") as root:
        assert (root / "new").read_text() == "hello"
        assert not (root / "gone").exists()
    assert (parents[0] / "gone").exists() and not (parents[0] / "new").exists()


def test_prepare_again_keeps_changes(snap: Snapshotter, parents: list[Path], tmp_path: Path) -> None:
    with mounted(snap.prepare("c1", parents), tmp_path / "m") as root:
        (root / "kept").write_text("1")
    with mounted(snap.prepare("c1", parents), tmp_path / "m") as root:
        assert (root / "kept").read_text() == "1"


def test_keys_are_independent(snap: Snapshotter, parents: list[Path], tmp_path: Path) -> None:
    with mounted(snap.prepare("a", parents), tmp_path / "ma") as a, \
            mounted(snap.prepare("b", parents), tmp_path / "mb") as b:
        (a / "only-a").write_text("a")
        assert not (b / "only-a").exists()


def test_view_is_read_only(snap: Snapshotter, parents: list[Path], tmp_path: Path) -> None:
    with mounted(snap.view("v", parents), tmp_path / "m") as root:
        assert (root / "etc" / "os").read_text() == "top\n"
        with pytest.raises(OSError) as e:
            (root / "new").write_text("x")
        assert e.value.errno == errno.EROFS
    snap.remove("v")


@pytest.mark.parametrize("n", [0, 1])
def test_view_of_few_parents_mounts(snap: Snapshotter, parents: list[Path], tmp_path: Path, n: int) -> None:
    with mounted(snap.view("v", parents[:n]), tmp_path / "m") as root:
        assert sorted(os.listdir(root)) == (["etc", "gone"] if n else [])
    snap.remove("v")


def test_prepare_on_no_parents(snap: Snapshotter, tmp_path: Path) -> None:
    with mounted(snap.prepare("scratch", []), tmp_path / "m") as root:
        (root / "f").write_text("x")
    assert snap.usage("scratch") == 1


def test_commit_gives_the_changes_with_whiteouts(snap: Snapshotter, parents: list[Path], tmp_path: Path) -> None:
    with mounted(snap.prepare("c1", parents), tmp_path / "m") as root:
        (root / "new").write_text("hello")
        (root / "gone").unlink()
    done = snap.commit("c1")
    assert (done / "new").read_text() == "hello"
    st = (done / "gone").lstat()
    assert stat.S_ISCHR(st.st_mode) and st.st_rdev == 0  # overlay's whiteout
    assert not (done / "etc").exists()  # unchanged parent content is not in the layer
    dest = tmp_path / "layer"
    os.rename(done, dest)  # the layer store takes it by rename
    snap.remove("c1")
    assert (dest / "new").exists()


def test_usage_counts_changed_bytes(snap: Snapshotter, parents: list[Path], tmp_path: Path) -> None:
    assert snap.usage("c1") == 0
    with mounted(snap.prepare("c1", parents), tmp_path / "m") as root:
        (root / "a").write_bytes(b"x" * 1000)
        (root / "etc" / "os").write_text("changed\n")  # copied up
    assert snap.usage("c1") == 1000 + len("changed\n")


def test_remove_drops_changes_and_is_idempotent(snap: Snapshotter, parents: list[Path], tmp_path: Path) -> None:
    with mounted(snap.prepare("c1", parents), tmp_path / "m") as root:
        (root / "new").write_text("x")
    snap.remove("c1")
    snap.remove("c1")
    with mounted(snap.prepare("c1", parents), tmp_path / "m") as root:
        assert not (root / "new").exists()
    snap.remove("c1")


@pytest.mark.parametrize("key", ["", "a/b", "..", "."])
def test_keys_cannot_leave_the_root(snap: Snapshotter, key: str) -> None:
    with pytest.raises(ValueError):
        snap.prepare(key, [])
