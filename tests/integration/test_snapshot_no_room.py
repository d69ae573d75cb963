"""A layer extraction that fails for room before it has begun leaves no temporary dir behind.

A real filesystem with no room: a tmpfs whose inodes are used up but one, so the extraction's own
dir can be made and the `fs` dir inside it cannot (ENOSPC from the kernel, as on a full ext4 where
each new dir takes a block). A trial CI's full-disk tests found such a `overlay/tmp-*` left."""

from __future__ import annotations

import errno
import io
import subprocess
import tarfile
from pathlib import Path

import pytest

from dockyard.store.snapshots import Snapshotter


def _layer() -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tf:
        ti = tarfile.TarInfo("hello.txt")
        ti.size = 5
        tf.addfile(ti, io.BytesIO(b"hello"))
    return out.getvalue()


def test_an_extraction_whose_dirs_do_not_fit_leaves_no_temporary_dir(tmp_path: Path) -> None:
    mnt = tmp_path / "small"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m,nr_inodes=64", "tmpfs", str(mnt)], check=True)
    try:
        snaps = Snapshotter(mnt / "overlay")
        fill = mnt / "fill"
        fill.mkdir()
        n = 0
        while True:  # use up every inode
            try:
                (fill / str(n)).touch()
            except OSError as e:
                assert e.errno == errno.ENOSPC
                break
            n += 1
        (fill / "0").unlink()  # one left: the extraction's dir takes it, its `fs` dir finds none
        layer = _layer()
        with pytest.raises(OSError) as failed:
            snaps.apply(None, lambda: io.BytesIO(layer))
        assert failed.value.errno == errno.ENOSPC
        assert sorted(p.name for p in (mnt / "overlay").iterdir()) == []
        for i in range(1, 9):
            (fill / str(i)).unlink()
        snap = snaps.apply(None, lambda: io.BytesIO(layer))  # with room it goes through
        assert (snap.path / "hello.txt").read_bytes() == b"hello"
    finally:
        subprocess.run(["umount", str(mnt)], check=True)
