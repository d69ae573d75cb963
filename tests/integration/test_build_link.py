"""COPY --link (issue 14 item 2): the layer is made from the sources alone, so it holds nothing of
the base (a directory the base has with other metadata is a fresh one in the layer), and a new base
does not invalidate it: the same layer (same diff_id) is put on the new base without copying again.
Without --link the copy lands on the base: the layer carries the base's directory as it was."""

from __future__ import annotations

import io
import json
import os
import tarfile
from pathlib import Path

import pytest

from tests.conftest import Daemon

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")


def _build(d: Daemon, ctx: Path, tag: str, *args: str) -> str:
    return d.dockyard("build", "-t", tag, *args, str(ctx), timeout=300).stdout.decode()


def _top_layer(d: Daemon, ref: str) -> dict[str, tuple[int, int, int]]:
    """path -> (mode, uid, gid) of the entries in the image's top layer, from `save`."""
    data = d.dockyard("save", ref).stdout
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        manifest = json.load(tf.extractfile("manifest.json"))  # type: ignore[arg-type]
        blob = tf.extractfile(manifest[0]["Layers"][-1])
        assert blob is not None
        with tarfile.open(fileobj=io.BytesIO(blob.read())) as layer:
            return {m.name.rstrip("/"): (m.mode & 0o7777, m.uid, m.gid) for m in layer}


def test_copy_link_layer_is_independent_of_the_base(clean_daemon: Daemon, tmp_path: Path) -> None:
    d = clean_daemon
    bases = tmp_path / "bases"
    bases.mkdir()
    (bases / "Dockerfile").write_text("FROM busybox:latest\nARG N\nRUN mkdir -m 700 /data && chown 5:5 /data "
                                      "&& echo $N > /base\n")
    _build(d, bases, "linkbase:1", "--build-arg", "N=1")
    _build(d, bases, "linkbase:2", "--build-arg", "N=2")
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "f.txt").write_text("payload\n")
    (ctx / "Dockerfile").write_text("ARG BASE\nFROM $BASE\nCOPY --link f.txt /data/f.txt\n")
    (ctx / "Dockerfile.nolink").write_text("ARG BASE\nFROM $BASE\nCOPY f.txt /data/f.txt\n")
    try:
        _build(d, ctx, "linked:1", "--build-arg", "BASE=linkbase:1")
        first = _top_layer(d, "linked:1")
        # made from the source alone: /data is the layer's own (0755 root), not the base's 0700 5:5
        assert first == {"data": (0o755, 0, 0), "data/f.txt": (0o644, 0, 0)}
        plain = _build(d, ctx, "unlinked:1", "-f", str(ctx / "Dockerfile.nolink"), "--build-arg", "BASE=linkbase:1")
        assert "Using cache" not in plain
        assert _top_layer(d, "unlinked:1")["data"] == (0o700, 5, 5)
        # a new base: the --link layer is reused as it is, no copy made
        out = _build(d, ctx, "linked:2", "--build-arg", "BASE=linkbase:2")
        assert "Using linked layer" in out, out
        l1 = json.loads(d.dockyard("image", "inspect", "linked:1").stdout)[0]["RootFS"]["Layers"]
        l2 = json.loads(d.dockyard("image", "inspect", "linked:2").stdout)[0]["RootFS"]["Layers"]
        assert l1[-1] == l2[-1] and l1[:-1] != l2[:-1]
        run = d.dockyard("run", "--rm", "linked:2", "sh", "-c", "cat /base /data/f.txt").stdout.decode()
        assert run == "2\npayload\n"
        # the source changed: the layer is made again
        (ctx / "f.txt").write_text("other\n")
        again = _build(d, ctx, "linked:3", "--build-arg", "BASE=linkbase:2")
        assert "Using linked layer" not in again and "Using cache" not in again.split("COPY")[1]
    finally:
        d.dockyard("rmi", "-f", "linked:1", "linked:2", "linked:3", "unlinked:1", "linkbase:1", "linkbase:2",
                   check=False)
