"""dockyard.bootstrap's pure parts: deterministic layer tars, diff layers, docker-archive layout."""

from __future__ import annotations

import io
import json
import os
import shutil
import tarfile
from pathlib import Path

from dockyard.bootstrap.archive import write_docker_archive
from dockyard.bootstrap.tarlayer import diff_entries, tree_entries, write_layer

EPOCH = 1735689600


def _tree(root: Path) -> None:
    (root / "etc").mkdir(parents=True)
    (root / "etc/hosts").write_text("127.0.0.1 localhost\n")
    (root / "etc/gone").write_text("x")
    (root / "bin").mkdir()
    (root / "bin/sh").write_text("#!sh\n")
    os.link(root / "bin/sh", root / "bin/ash")
    os.symlink("/bin/sh", root / "bin/bash")
    (root / "dev").mkdir()
    (root / "dev/null-ish").write_text("")  # /dev's children never go into a layer


def _layer(entries) -> tuple[str, bytes]:  # type: ignore[no-untyped-def]
    buf = io.BytesIO()
    diff_id, size = write_layer(entries, buf)
    assert size == len(buf.getvalue())
    return diff_id, buf.getvalue()


def test_full_layer_is_deterministic_and_sorted(tmp_path: Path) -> None:
    _tree(tmp_path / "a")
    shutil.copytree(tmp_path / "a", tmp_path / "b", symlinks=True)
    d1, data = _layer(tree_entries(tmp_path / "a", EPOCH))
    d2, _ = _layer(tree_entries(tmp_path / "a", EPOCH))
    assert d1 == d2
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        members = tf.getmembers()
    names = [m.name for m in members]
    assert names == ["bin", "bin/ash", "bin/bash", "bin/sh", "dev", "etc", "etc/gone", "etc/hosts"]
    by = {m.name: m for m in members}
    assert by["bin/sh"].islnk() and by["bin/sh"].linkname == "bin/ash"  # second name of the inode
    assert by["bin/bash"].issym() and by["bin/bash"].linkname == "/bin/sh"
    assert all(m.mtime <= EPOCH and m.uname == "" and m.gname == "" for m in members)


def test_diff_layer_has_changes_and_whiteouts(tmp_path: Path) -> None:
    base, new = tmp_path / "base", tmp_path / "new"
    _tree(base)
    shutil.copytree(base, new, symlinks=True, copy_function=shutil.copy2)
    # copytree gives new mtimes to directories; align them so only real changes show
    for d in ("", "etc", "bin", "dev"):
        st = os.stat(base / d)
        os.utime(new / d, ns=(st.st_atime_ns, st.st_mtime_ns))
    (new / "etc/gone").unlink()
    (new / "etc/nginx").mkdir()
    (new / "etc/nginx/default.conf").write_text("server {}\n")
    _, data = _layer(diff_entries(new, base, EPOCH))
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        names = tf.getnames()
    assert "etc/.wh.gone" in names
    assert "etc/nginx" in names and "etc/nginx/default.conf" in names
    assert "etc/hosts" not in names and "bin/sh" not in names


def test_docker_archive_layout(tmp_path: Path) -> None:
    _tree(tmp_path / "root")
    layer = tmp_path / "layer.tar"
    with open(layer, "wb") as f:
        diff_id, _ = write_layer(tree_entries(tmp_path / "root", EPOCH), f)
    config = {"architecture": "amd64", "os": "linux", "config": {"Cmd": ["sh"]},
              "rootfs": {"type": "layers", "diff_ids": [diff_id]}, "history": [{"created_by": "x"}]}
    out = tmp_path / "img.tar"
    image_id = write_docker_archive(out, config, [layer], ["busybox:latest"], EPOCH)
    with tarfile.open(out) as tf:
        manifest = json.load(tf.extractfile("manifest.json"))  # type: ignore[arg-type]
        cfg = json.load(tf.extractfile(manifest[0]["Config"]))  # type: ignore[arg-type]
        index = json.load(tf.extractfile("index.json"))  # type: ignore[arg-type]
        names = tf.getnames()
    assert manifest[0]["RepoTags"] == ["busybox:latest"]
    assert manifest[0]["Config"] == "blobs/sha256/" + image_id.split(":")[1]
    assert manifest[0]["Layers"] == ["blobs/sha256/" + diff_id.split(":")[1]]
    assert cfg["rootfs"]["diff_ids"] == [diff_id]
    assert index["manifests"][0]["annotations"]["io.containerd.image.name"] == "docker.io/library/busybox:latest"
    assert "oci-layout" in names and names == sorted(names)
