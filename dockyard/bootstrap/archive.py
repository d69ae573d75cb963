"""docker-archive writer: the tarball `docker save` makes and `docker load` reads.

Written the way Docker 25+ writes it, which is at once a docker-archive (manifest.json,
repositories) and an OCI layout (oci-layout, index.json, blobs/sha256/...), so both old loaders
(dockerd 20.10) and OCI tools (skopeo `oci-archive:`) accept it.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
from pathlib import Path
from typing import Any

MT_CONFIG = "application/vnd.oci.image.config.v1+json"
MT_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_LAYER = "application/vnd.oci.image.layer.v1.tar"


def _canonical(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def _ti(name: str, size: int, epoch: int, mode: int = 0o644) -> tarfile.TarInfo:
    ti = tarfile.TarInfo(name)
    ti.size, ti.mode, ti.mtime, ti.uname, ti.gname = size, mode, epoch, "", ""
    return ti


def write_docker_archive(out: Path, config: dict[str, Any], layers: list[Path], tags: list[str],
                         epoch: int = 0) -> str:
    """Write the image (config + uncompressed layer tars, bottom first) to `out`; return the image id.

    The layer files' sha256 must equal config["rootfs"]["diff_ids"] (checked here).
    """
    config_bytes = _canonical(config)
    config_hex = hashlib.sha256(config_bytes).hexdigest()
    diff_ids = config["rootfs"]["diff_ids"]
    if len(diff_ids) != len(layers):
        raise ValueError("one layer file per diff_id")
    layer_descs = []
    for path, diff_id in zip(layers, diff_ids, strict=True):
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        if "sha256:" + h.hexdigest() != diff_id:
            raise ValueError(f"{path} does not match {diff_id}")
        layer_descs.append({"mediaType": MT_LAYER, "digest": diff_id, "size": path.stat().st_size})
    manifest = {"schemaVersion": 2, "mediaType": MT_MANIFEST,
                "config": {"mediaType": MT_CONFIG, "digest": "sha256:" + config_hex, "size": len(config_bytes)},
                "layers": layer_descs}
    manifest_bytes = _canonical(manifest)
    manifest_hex = hashlib.sha256(manifest_bytes).hexdigest()
    index = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
             "manifests": [{"mediaType": MT_MANIFEST, "digest": "sha256:" + manifest_hex,
                            "size": len(manifest_bytes),
                            "annotations": {"io.containerd.image.name": _full_name(t),
                                            "org.opencontainers.image.ref.name": t.rsplit(":", 1)[1]}}
                           for t in tags]}
    docker_manifest = [{"Config": f"blobs/sha256/{config_hex}", "RepoTags": tags,
                        "Layers": [f"blobs/sha256/{d.split(':')[1]}" for d in diff_ids]}]
    repositories: dict[str, dict[str, str]] = {}
    top = diff_ids[-1].split(":")[1]
    for t in tags:
        repo, tag = t.rsplit(":", 1)
        repositories.setdefault(repo, {})[tag] = top

    small = {
        "blobs/sha256/" + config_hex: config_bytes,
        "blobs/sha256/" + manifest_hex: manifest_bytes,
        "index.json": _canonical(index),
        "manifest.json": _canonical(docker_manifest),
        "oci-layout": b'{"imageLayoutVersion":"1.0.0"}',
        "repositories": _canonical(repositories),
    }
    tmp = out.with_name(f".{out.name}.tmp{os.getpid()}")
    with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as tf:
        for d in ("blobs", "blobs/sha256"):
            ti = _ti(d, 0, epoch, 0o755)
            ti.type = tarfile.DIRTYPE
            tf.addfile(ti)
        entries: list[tuple[str, bytes | Path]] = [(n, b) for n, b in small.items()]
        entries += [(f"blobs/sha256/{d.split(':')[1]}", p) for d, p in zip(diff_ids, layers, strict=True)]
        seen = set()
        for name, src in sorted(entries, key=lambda e: e[0]):
            if name in seen:  # two identical layers share one blob
                continue
            seen.add(name)
            if isinstance(src, bytes):
                tf.addfile(_ti(name, len(src), epoch), io.BytesIO(src))
            else:
                with open(src, "rb") as f:
                    tf.addfile(_ti(name, src.stat().st_size, epoch), f)
    os.replace(tmp, out)
    return "sha256:" + config_hex


def _full_name(tag: str) -> str:
    repo, t = tag.rsplit(":", 1)
    if "/" not in repo:
        repo = "library/" + repo
    if "." not in repo.split("/")[0] and ":" not in repo.split("/")[0] and repo.split("/")[0] != "localhost":
        repo = "docker.io/" + repo
    return f"{repo}:{t}"
