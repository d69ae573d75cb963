"""Layer blobs and snapshots published before their bytes are synced (store/unsynced.py): a daemon
crash keeps them (the page cache outlives it); a start on another boot (a power loss) checks them: a
whole blob stays, a snapshot is extracted again from its blob, an image whose layer blob was torn goes.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Daemon
from tests.conftest import own_daemon as daemon_of

BIG = 3 << 20  # above content.DEFER_SYNC_MIN: the layer's blob is published unsynced


@pytest.fixture(name="d")
def unsynced_daemon(monkeypatch: pytest.MonkeyPatch) -> Iterator[Daemon]:
    monkeypatch.setenv("DOCKYARD_UNSYNCED_QUIET", "600")  # markers stay until the test kills the daemon
    monkeypatch.setenv("DOCKER_BUILDKIT", "0")
    with daemon_of("dy-unsynced-") as d:
        yield d


def _markers(d: Daemon) -> tuple[list[Path], list[Path]]:
    return (sorted((d.data_root / "content" / "unsynced").iterdir()),
            sorted((d.data_root / "overlay").glob("*/unsynced-*")))


def _loaded(d: Daemon, tmp_path: Path) -> str:
    """busybox with a BIG random file on top, built, saved, removed and loaded again; the file's sha256."""
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    data = os.urandom(BIG)
    (ctx / "big").write_bytes(data)
    (ctx / "Dockerfile").write_text("FROM busybox\nCOPY big /big\n")
    d.docker("build", "-q", "-t", "big:1", str(ctx), timeout=300)
    d.docker("save", "-o", str(tmp_path / "big.tar"), "big:1")
    d.docker("rmi", "big:1")
    d.docker("load", "-i", str(tmp_path / "big.tar"))
    return hashlib.sha256(data).hexdigest()


def _runs(d: Daemon, want: str) -> None:
    out = d.docker("run", "--rm", "big:1", "sha256sum", "/big").stdout.decode().split()[0]
    assert out == want


def _rewrite(markers: list[Path], boot: str) -> None:
    for m in markers:
        m.write_text(boot)


def _wait_gone(d: Daemon) -> None:
    for _ in range(200):
        if _markers(d) == ([], []):
            return
        time.sleep(0.05)
    raise AssertionError(f"markers left: {_markers(d)}")


def test_a_crash_keeps_unsynced_layers_and_the_flush_drops_their_markers(
        d: Daemon, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    want = _loaded(d, tmp_path)
    blobs, snaps = _markers(d)
    assert blobs and snaps, "the load published its layer blob and snapshots unsynced"
    d.kill()
    monkeypatch.setenv("DOCKYARD_UNSYNCED_QUIET", "0.1")
    d.start()
    _runs(d, want)
    _wait_gone(d)  # this boot's: synced in the background after the start, then dropped


def _power_loss(d: Daemon, tmp_path: Path) -> tuple[str, list[Path], list[Path]]:
    """A load, then the daemon killed with its markers made another boot's: as after a power loss."""
    want = _loaded(d, tmp_path)
    blobs, snaps = _markers(d)
    assert blobs and snaps
    d.kill()
    _rewrite(blobs + snaps, "an-earlier-boot")
    return want, blobs, snaps


def test_after_a_power_loss_whole_layers_are_checked_and_kept(d: Daemon, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    want, blobs, snaps = _power_loss(d, tmp_path)
    strays = [m.parent / "fs" / "stray" for m in snaps]
    for s in strays:
        s.write_text("not of the layer")  # gone only if the snapshot was extracted again
    monkeypatch.setenv("DOCKYARD_UNSYNCED_QUIET", "0.1")
    d.start()
    assert not any(s.exists() for s in strays)
    _runs(d, want)
    d.docker("save", "-o", str(tmp_path / "again.tar"), "big:1")  # the layer blob is still there
    _wait_gone(d)


def test_after_a_power_loss_an_image_whose_layer_blob_was_torn_goes(d: Daemon, tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    want, blobs, snaps = _power_loss(d, tmp_path)
    torn = [d.data_root / "content" / "blobs" / "sha256" / m.name.partition(".")[0] for m in blobs]
    for b in torn:
        with open(b, "r+b") as f:
            f.truncate(BIG // 2)  # what a power loss before the writeback can leave
    monkeypatch.setenv("DOCKYARD_UNSYNCED_QUIET", "0.1")
    d.start()
    assert d.docker("image", "inspect", "big:1", check=False).returncode != 0
    assert not any(b.exists() for b in torn)
    assert d.docker("run", "--rm", "busybox", "true").returncode == 0  # the rest is untouched
    d.docker("load", "-i", str(tmp_path / "big.tar"))
    _runs(d, want)
