"""Commits of layers (build steps) hold the image store's GC lock shared: twenty build stages committing
at once overlap (their tars and fsyncs) instead of queueing behind one lock, while GC (delete, prune,
load, import: exclusive) still never runs between a commit's layer and the row that names it."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from dockyard.services import image_commit
from dockyard.services.events import EventBus
from dockyard.services.images import ImageService
from dockyard.store.content import ContentStore
from dockyard.store.db import Database
from dockyard.store.snapshots import Snapshotter
from dockyard.util.rwlock import SharedLock


def _images(root: Path) -> ImageService:
    return ImageService(Database(root / "dockyard.db"), ContentStore(root / "content"), Snapshotter(root / "overlay"),
                        EventBus())


def _upper(root: Path, name: str) -> Path:
    d = root / "overlay" / f"up-{name}"  # on the store's filesystem: adopted by rename
    d.mkdir(parents=True)
    (d / f"out-{name}").write_text(name)
    return d


def _until(cond: object, what: str) -> None:
    for _ in range(2000):
        if callable(cond) and cond():
            return
        time.sleep(0.005)
    raise AssertionError(f"never: {what}")


def test_two_commits_run_at_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    images = _images(tmp_path)
    both_in = threading.Barrier(2, timeout=30)  # passed only if both commits are in write_diff together
    real = image_commit.write_diff

    def write_diff(upper: Path, w: object) -> str:
        both_in.wait()
        return real(upper, w)  # type: ignore[arg-type]

    monkeypatch.setattr(image_commit, "write_diff", write_diff)
    got: dict[str, str] = {}
    errors: list[BaseException] = []

    def commit(name: str) -> None:
        try:
            got[name] = image_commit.commit_layer(images, _upper(tmp_path, name), None, {},
                                                  {"created_by": f"RUN {name}"}, adopt=True)
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=commit, args=(n,)) for n in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert got["a"] != got["b"]
    for name, image_id in got.items():
        img = images.get(image_id)
        assert img.config["history"][-1]["created_by"] == f"RUN {name}"
        assert (images.snapshots.path(img.chain_ids[-1]) / f"out-{name}").read_text() == name


def test_gc_waits_for_a_commit_in_progress_and_goes_before_new_ones(tmp_path: Path) -> None:
    lock = SharedLock()
    in_commit, commit_may_end = threading.Event(), threading.Event()
    order: list[str] = []

    def commit(name: str, hold: bool) -> None:
        with lock.shared():
            order.append(f"{name} in")
            if hold:
                in_commit.set()
                commit_may_end.wait(30)
            order.append(f"{name} out")

    def gc() -> None:
        with lock:
            order.append("gc")

    first = threading.Thread(target=commit, args=("first", True))
    first.start()
    in_commit.wait(30)
    g = threading.Thread(target=gc)
    g.start()
    _until(lambda: lock._waiting == 1, "gc waits")
    later = threading.Thread(target=commit, args=("later", False))  # comes after gc asked: waits for it
    later.start()
    assert order == ["first in"]
    commit_may_end.set()
    for t in (first, g, later):
        t.join(30)
    assert order == ["first in", "first out", "gc", "later in", "later out"]


def test_reentrancy() -> None:
    lock = SharedLock()
    with lock:  # an image load (exclusive) registers its images (shared)
        with lock.shared(), lock.shared(), lock:
            pass
    with lock.shared(), lock.shared():  # nested shared holds
        with pytest.raises(RuntimeError):
            lock.acquire()  # a shared holder upgrading would deadlock against another
    with lock:  # released fully by all of the above
        pass


def test_snapshot_meta_is_read_once_and_never_outlives_the_snapshot(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Registering reads every layer's meta.json: it is read from disk once, and a snapshot removed (by
    remove, or gone from disk) is not answered from memory."""
    images = _images(tmp_path)
    image_id = image_commit.commit_layer(images, _upper(tmp_path, "a"), None, {}, {"created_by": "RUN a"}, adopt=True)
    chain = images.get(image_id).chain_ids[-1]
    snaps = images.snapshots
    first = snaps.get(chain)
    assert first is not None
    reads: list[Path] = []
    real = Path.read_text

    def read_text(self: Path, *a: object, **k: object) -> str:
        reads.append(self)
        return real(self, *a, **k)  # type: ignore[arg-type]

    monkeypatch.setattr(Path, "read_text", read_text)
    assert snaps.get(chain) == first
    assert not reads
    meta = first.path.parent / "meta.json"
    moved = tmp_path / "meta.json.away"
    meta.rename(moved)  # gone from disk behind the store's back
    assert snaps.get(chain) is None
    moved.rename(meta)
    assert snaps.get(chain) == first
    snaps.remove(chain)
    assert snaps.get(chain) is None
