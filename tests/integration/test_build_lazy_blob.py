"""A build step's layer tar is not written at its commit: only hashed (the diff_id). The content store
makes it from the step's snapshot the first time something reads it (save, push, cache export), checks
it against that digest, and keeps it. Real daemon, real runc, our registry server, the docker CLI.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import DOCKER_CLI, Daemon
from tests.conftest import own_daemon as daemon_of


@pytest.fixture(name="d")
def lazy_daemon(monkeypatch: pytest.MonkeyPatch) -> Iterator[Daemon]:
    monkeypatch.setenv("DOCKER_BUILDKIT", "0")
    with daemon_of("dy-lazyblob-") as d:
        yield d


def _context(tmp_path: Path, big: int = 3 << 20) -> Path:
    """Files of every kind a layer tar holds: a big one, a hard-linked pair, a symlink, an xattr, dirs."""
    ctx = tmp_path / "ctx"
    (ctx / "data" / "sub" / "deeper").mkdir(parents=True)
    (ctx / "data" / "big").write_bytes(os.urandom(big))
    (ctx / "data" / "sub" / "a").write_text("a\n")
    os.link(ctx / "data" / "sub" / "a", ctx / "data" / "sub" / "a-link")
    (ctx / "data" / "sub" / "deeper" / "x").write_text("x" * 5000)
    os.symlink("sub/a", ctx / "data" / "to-a")
    os.setxattr(ctx / "data" / "sub" / "a", "user.note", b"kept")
    (ctx / "Dockerfile").write_text(
        "FROM busybox\n"
        "COPY data /data/\n"
        "COPY data/sub /copied/\n"
        # a RUN layer: a deletion (whiteout), a dir made again (opaque), a file changed (copy-up)
        "RUN rm /data/to-a && rm -rf /data/sub/deeper && mkdir /data/sub/deeper && echo new > /data/sub/deeper/n"
        " && echo more >> /data/sub/a\n")
    return ctx


def _blob(d: Daemon, digest: str) -> Path:
    return d.data_root / "content" / "blobs" / "sha256" / digest.partition(":")[2]


def _built(d: Daemon, tmp_path: Path, tag: str = "lazy:1", big: int = 3 << 20) -> tuple[str, list[str]]:
    """(image id, diff_ids of the layers the build made)."""
    base = json.loads(d.docker("image", "inspect", "busybox").stdout)[0]["RootFS"]["Layers"]
    d.docker("build", "--no-cache", "-q", "-t", tag, str(_context(tmp_path, big)), timeout=300)
    info = json.loads(d.docker("image", "inspect", tag).stdout)[0]
    layers = info["RootFS"]["Layers"]
    assert layers[:len(base)] == base
    return info["Id"], layers[len(base):]


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return "sha256:" + h.hexdigest()


def _saved_layers(archive: Path) -> list[str]:
    """The sha256 of each layer file in a `docker save` archive, in the manifest's order."""
    with tarfile.open(archive) as tf:
        manifest = json.load(tf.extractfile("manifest.json"))  # type: ignore[arg-type]
        out = []
        for name in manifest[0]["Layers"]:
            f = tf.extractfile(name)
            assert f is not None
            out.append("sha256:" + hashlib.file_digest(f, "sha256").hexdigest())
        return out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(name="registry")
def our_registry(tmp_path: Path) -> Iterator[str]:
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "dockyard.registry.server", "serve", "--addr", f"127.0.0.1:{port}",
                             "--root", str(tmp_path / "reg")], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        assert proc.stdout is not None and "listening" in proc.stdout.readline().decode()
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)


def test_a_built_layer_is_made_when_first_read_and_saved_and_pushed_as_its_diff_id(
        d: Daemon, tmp_path: Path, registry: str) -> None:
    image_id, built = _built(d, tmp_path)
    assert len(built) == 3
    assert not any(_blob(d, b).exists() for b in built), "the build stored no layer tar"
    d.docker("history", "lazy:1")
    assert not any(_blob(d, b).exists() for b in built), "inspect and history need no layer tar"

    # save: every layer's tar made from its snapshot, byte for byte the one hashed at the commit
    d.docker("save", "-o", str(tmp_path / "lazy.tar"), "lazy:1")
    assert _saved_layers(tmp_path / "lazy.tar")[-3:] == built
    for b in built:
        assert _sha256(_blob(d, b)) == b, "made, checked and kept"
    assert list((d.data_root / "content" / "ingest").iterdir()) == []

    # push: the same blobs (uncompressed, as before); pulled back, the same image
    ref = f"{registry}/lazy/img:1"
    d.docker("tag", "lazy:1", ref)
    d.docker("push", ref, timeout=300)
    manifest = httpx.get(f"http://{registry}/v2/lazy/img/manifests/1", headers={
        "Accept": "application/vnd.docker.distribution.manifest.v2+json"}).json()
    assert [la["digest"] for la in manifest["layers"]][-3:] == built
    d.docker("rmi", "lazy:1", ref)
    assert not any(_blob(d, b).exists() for b in built)
    d.docker("pull", ref, timeout=300)
    assert json.loads(d.docker("image", "inspect", ref).stdout)[0]["Id"] == image_id
    assert d.docker("run", "--rm", ref, "cat", "/data/sub/a").stdout == b"a\nmore\n"


def test_a_built_image_pushed_before_its_save_is_the_same(d: Daemon, tmp_path: Path, registry: str) -> None:
    """Push first (the push makes the tars, in its worker thread), then save: same digests."""
    _, built = _built(d, tmp_path)
    ref = f"{registry}/lazy/first:1"
    d.docker("tag", "lazy:1", ref)
    d.docker("push", ref, timeout=300)
    for b in built:
        assert _sha256(_blob(d, b)) == b
    d.docker("save", "-o", str(tmp_path / "lazy.tar"), "lazy:1")
    assert _saved_layers(tmp_path / "lazy.tar")[-3:] == built


def test_a_snapshot_changed_since_its_commit_gives_a_clear_error_and_no_blob(d: Daemon, tmp_path: Path) -> None:
    _, built = _built(d, tmp_path)
    top = Path(json.loads(d.docker("image", "inspect", "lazy:1").stdout)[0]["GraphDriver"]["Data"]["UpperDir"])
    with open(top / "data" / "sub" / "a", "ab") as f:  # what no one may do: write into a snapshot
        f.write(b"changed\n")
    p = d.docker("save", "-o", str(tmp_path / "bad.tar"), "lazy:1", check=False)
    assert p.returncode != 0
    assert b"could not be made again from its source" in p.stderr, p.stderr
    assert not _blob(d, built[-1]).exists(), "nothing published"
    assert list((d.data_root / "content" / "ingest").iterdir()) == []


def test_a_daemon_killed_while_it_makes_a_blob_leaves_no_half_made_one(d: Daemon, tmp_path: Path) -> None:
    big = 128 << 20  # long enough to be caught in the middle
    _, built = _built(d, tmp_path, big=big)
    ingest = d.data_root / "content" / "ingest"
    save = subprocess.Popen([DOCKER_CLI, "save", "-o", str(tmp_path / "cut.tar"), "lazy:1"], env=d.env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        partial = 0
        while time.monotonic() < deadline and not partial:
            sizes = [p.stat().st_size for p in ingest.iterdir()]
            partial = max(sizes, default=0)
            if not partial:
                time.sleep(0.002)
        assert partial, "the save never began making the blob"
        d.kill()
        assert 0 < partial < big, "caught in the middle"
    finally:
        save.wait(30)
    assert not any(_blob(d, b).exists() for b in built[:1]), "the blob being made was not published"
    d.start()
    assert list(ingest.iterdir()) == [], "the half-made blob was swept at the start"
    assert not _blob(d, built[0]).exists()
    d.docker("save", "-o", str(tmp_path / "whole.tar"), "lazy:1", timeout=300)
    assert _saved_layers(tmp_path / "whole.tar")[-3:] == built
    assert _sha256(_blob(d, built[0])) == built[0]


def test_after_a_power_loss_a_built_image_whose_snapshot_was_not_synced_goes(
        d: Daemon, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Its snapshot may be torn and there is no stored tar to extract it again from: the image goes
    (session 8's rule); busybox, synced long before, stays."""
    d.stop()
    monkeypatch.setenv("DOCKYARD_UNSYNCED_QUIET", "600")  # the markers stay until the kill
    d.start()
    _built(d, tmp_path)
    snaps = sorted((d.data_root / "overlay").glob("*/unsynced-*"))
    assert snaps
    d.kill()
    for m in snaps:
        m.write_text("an-earlier-boot")
    monkeypatch.setenv("DOCKYARD_UNSYNCED_QUIET", "0.1")
    d.start()
    assert d.docker("image", "inspect", "lazy:1", check=False).returncode != 0
    assert d.docker("run", "--rm", "busybox", "true").returncode == 0


def test_a_built_layer_made_then_torn_by_a_power_loss_is_made_again(
        d: Daemon, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Its snapshot was synced, its stored tar was not and is torn: the tar goes, the image stays and its
    tar is made again from the snapshot when read."""
    _, built = _built(d, tmp_path)
    d.docker("save", "-o", str(tmp_path / "first.tar"), "lazy:1")
    blob = _blob(d, built[0])
    d.stop()  # the flush at the stop syncs everything and drops the markers
    marker = d.data_root / "content" / "unsynced" / f"{blob.name}.torn"
    marker.write_text("an-earlier-boot")
    with open(blob, "r+b") as f:
        f.truncate(1 << 20)
    d.start()
    assert not blob.exists()
    d.docker("save", "-o", str(tmp_path / "again.tar"), "lazy:1")
    assert _saved_layers(tmp_path / "again.tar")[-3:] == built
    assert _sha256(blob) == built[0]
