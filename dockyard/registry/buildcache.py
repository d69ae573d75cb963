"""A build cache that travels: `--cache-to` / `--cache-from` `type=registry,ref=...` and `type=local`.

The format is BuildKit's cache manifest in its `image-manifest=true` form: an OCI image manifest
whose config (media type `application/vnd.buildkit.cacheconfig.v0`) maps cache keys to layers, and
whose `layers` are the layer blobs. That form (rather than BuildKit's older index form, whose
`manifests` list layer blobs) is what every registry accepts, ours and distribution's included, and a
local export is the same manifest in an OCI image layout (`index.json`, `blobs/sha256/...`), as
BuildKit's `type=local`.

The config keeps BuildKit's `layers` (`blob`, `parent`) and `records` (`digest` = the step's cache
key, `layers`) and adds what the classic builder needs to rebuild its step images exactly:
`images` (image id -> the config bytes, its parent image and its own layer). An image made again
from those bytes has the same id, so the next step's key (which names its parent image) matches too.
The keys are Dockyard's (BuildKit's LLB digests differ), so the two builders do not share entries.
Base images are not in the cache: `FROM` pulls them from their own registry.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dockyard.errors import InvalidParameter, NotFound
from dockyard.oci import reference
from dockyard.oci.digest import sha256_digest
from dockyard.registry.client.auth import Credentials
from dockyard.registry.client.remote import OCI_MANIFEST, RegistryClient, Repository
from dockyard.store.content import ContentStore
from dockyard.store.snapshots import chain_ids

CACHE_CONFIG = "application/vnd.buildkit.cacheconfig.v0"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
MAX_CONFIG = 16 << 20


@dataclass
class CachedStep:
    """One build step's result, as the cache carries it."""

    key: str  # the builder's cache key
    image_id: str
    parent: str  # parent image id, "" for scratch
    config: bytes  # the image config, byte for byte (sha256 of it is image_id)
    layer: str | None  # diff_id of the layer this step added, None for a metadata step
    created_by: str = ""


@dataclass
class CacheLayer:
    diff_id: str
    digest: str
    media_type: str
    size: int


# (diff_id, chain id) -> (blob digest, media type, size) of a blob in the content store holding that layer
BlobFor = Callable[[str, str], tuple[str, str, int]]


def document(steps: list[CachedStep], blobs: dict[str, CacheLayer]) -> tuple[bytes, bytes]:
    """(cache config, manifest) for `steps`; `blobs` has each step layer's blob."""
    order = list(dict.fromkeys(s.layer for s in steps if s.layer))
    index = {d: i for i, d in enumerate(order)}
    by_image = {s.image_id: s for s in steps}

    def parent_layer(s: CachedStep) -> int:
        p = by_image.get(s.parent)
        while p is not None and p.layer is None:
            p = by_image.get(p.parent)
        return index[p.layer] if p is not None and p.layer else -1

    layer_parent = {s.layer: parent_layer(s) for s in steps if s.layer}
    cfg: dict[str, Any] = {
        "layers": [{"blob": blobs[d].digest, "parent": layer_parent[d]} for d in order],
        "records": [{"digest": "sha256:" + s.key, "layers": [{"layer": index[s.layer]}] if s.layer else [],
                     "image": s.image_id} for s in steps],
        "images": {s.image_id: {"config": s.config.decode(), "parent": s.parent,
                                "layer": index[s.layer] if s.layer else -1, "created_by": s.created_by}
                   for s in steps},
    }
    cfg_bytes = json.dumps(cfg, separators=(",", ":")).encode()
    manifest = {
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": CACHE_CONFIG, "digest": sha256_digest(cfg_bytes), "size": len(cfg_bytes)},
        "layers": [{"mediaType": blobs[d].media_type, "digest": blobs[d].digest, "size": blobs[d].size,
                    "annotations": {"containerd.io/uncompressed": d}} for d in order],
    }
    return cfg_bytes, json.dumps(manifest, indent=2).encode()


def parse(manifest_bytes: bytes, cfg_bytes: bytes) -> tuple[dict[str, CachedStep], dict[str, CacheLayer]]:
    """(cache key -> step, diff_id -> layer) from a cache manifest and its config."""
    try:
        manifest = json.loads(manifest_bytes)
        cfg = json.loads(cfg_bytes)
        descs = manifest["layers"]
        layers = [CacheLayer(d["annotations"]["containerd.io/uncompressed"], d["digest"], d["mediaType"],
                             int(d["size"])) for d in descs]
        by_blob = {la.digest: la for la in layers}
        order = [by_blob[entry["blob"]] for entry in cfg["layers"]]
        steps: dict[str, CachedStep] = {}
        for rec in cfg["records"]:
            img = cfg["images"][rec["image"]]
            key = str(rec["digest"]).removeprefix("sha256:")
            config = str(img["config"]).encode()
            if sha256_digest(config) != rec["image"]:
                raise InvalidParameter(f"cache record {key[:12]}: its image config is not {rec['image']}")
            li = int(img["layer"])
            steps[key] = CachedStep(key, rec["image"], str(img["parent"]), config,
                                    order[li].diff_id if li >= 0 else None, str(img.get("created_by", "")))
    except (ValueError, KeyError, TypeError, IndexError, AttributeError) as e:
        raise InvalidParameter(f"invalid cache manifest: {type(e).__name__}: {e}") from None
    return steps, {la.diff_id: la for la in layers}


@dataclass
class CacheSource:
    """An imported cache: its steps, and how to get a layer's blob into the content store."""

    name: str
    steps: dict[str, CachedStep]
    layers: dict[str, CacheLayer]
    repo: Repository | None = None  # type=registry
    src_dir: Path | None = None  # type=local

    async def fetch(self, diff_id: str, content: ContentStore) -> str:
        la = self.layers[diff_id]
        if content.has(la.digest):
            return la.digest
        if self.repo is not None:
            await self.repo.fetch_blob(la.digest, la.size, content)
        else:
            assert self.src_dir is not None
            await asyncio.to_thread(_copy_in, _blob_path(self.src_dir, la.digest), la.digest, content)
        return la.digest


def _blob_path(root: Path, digest: str) -> Path:
    algo, _, hexd = digest.partition(":")
    if algo != "sha256" or len(hexd) != 64 or not all(c in "0123456789abcdef" for c in hexd):
        raise InvalidParameter(f"invalid digest {digest!r}")
    return root / "blobs" / algo / hexd


def _copy_in(path: Path, digest: str, content: ContentStore) -> None:
    with open(path, "rb") as f, content.ingest(digest) as w:
        while chunk := f.read(1 << 20):
            w.write(chunk)
        w.commit()  # checks the digest


def parse_spec(spec: str) -> dict[str, str]:
    """`type=registry,ref=R,mode=max` (or a bare `R`, the registry type) as a dict."""
    if "=" not in spec.split(",")[0]:
        return {"type": "registry", "ref": spec}
    out: dict[str, str] = {}
    for part in spec.split(","):
        k, eq, v = part.partition("=")
        if not eq:
            raise InvalidParameter(f"invalid cache option {part!r} in {spec!r}")
        out[k.strip().lower()] = v.strip()
    kind = out.get("type", "")
    if kind == "registry" and not out.get("ref"):
        raise InvalidParameter(f"cache {spec!r}: type=registry needs ref=")
    if kind == "local" and not (out.get("dest") or out.get("src")):
        raise InvalidParameter(f"cache {spec!r}: type=local needs dest= (export) or src= (import)")
    if kind not in ("registry", "local"):
        raise InvalidParameter(f"unsupported cache type {kind!r} (registry or local)")
    return out


def _repo(client: RegistryClient, ref: reference.Reference, creds: Credentials, push: bool) -> Repository:
    return client.repository(client.endpoints(ref.domain, push=push)[0], ref.path, creds, push=push)


async def export_registry(client: RegistryClient, ref_s: str, creds: Credentials, steps: list[CachedStep],
                          blob_for: BlobFor, content: ContentStore) -> str:
    """Push the steps' layers, the cache config and the manifest to `ref` (tag `latest` if none);
    returns the manifest's digest."""
    ref = reference.parse(ref_s)
    repo = _repo(client, ref, creds, push=True)
    blobs = await asyncio.to_thread(_blobs, steps, blob_for)
    cfg_bytes, manifest = document(steps, blobs)
    cfg_digest = sha256_digest(cfg_bytes)
    if not content.has(cfg_digest):
        content.write(cfg_bytes, cfg_digest)
    sem = asyncio.Semaphore(4)

    async def up(digest: str, size: int) -> None:
        async with sem:
            if not await repo.has_blob(digest):
                await repo.upload_blob(digest, content.path(digest), size)

    await asyncio.gather(*(up(b.digest, b.size) for b in blobs.values()), up(cfg_digest, len(cfg_bytes)))
    return await repo.put_manifest(ref.tag or "latest", manifest, OCI_MANIFEST)


async def import_registry(client: RegistryClient, ref_s: str, creds: Credentials,
                          content: ContentStore) -> CacheSource:
    ref = reference.parse(ref_s)
    repo = _repo(client, ref, creds, push=False)
    data, _mt, _digest = await repo.get_manifest(ref.digest or ref.tag or "latest")
    cfg_bytes = await _config(data, lambda d, n: repo.fetch_blob(d, n, content), content)
    steps, layers = parse(data, cfg_bytes)
    return CacheSource(ref_s, steps, layers, repo=repo)


async def _config(manifest: bytes, fetch: Callable[[str, int], Any], content: ContentStore) -> bytes:
    try:
        desc = json.loads(manifest)["config"]
        digest, size = str(desc["digest"]), int(desc["size"])
        if desc.get("mediaType") != CACHE_CONFIG:
            raise InvalidParameter(f"not a build cache: its config is {desc.get('mediaType')!r}")
    except (ValueError, KeyError, TypeError) as e:
        raise InvalidParameter(f"invalid cache manifest: {e}") from None
    if size > MAX_CONFIG:
        raise InvalidParameter("cache config over 16 MiB")
    await fetch(digest, size)
    with content.open(digest) as f:
        return f.read()


def _blobs(steps: list[CachedStep], blob_for: BlobFor) -> dict[str, CacheLayer]:
    out = {}
    for s in steps:
        if s.layer and s.layer not in out:
            digest, mt, size = blob_for(s.layer, chain_ids(json.loads(s.config)["rootfs"]["diff_ids"])[-1])
            out[s.layer] = CacheLayer(s.layer, digest, mt, size)
    return out


def export_local(dest: Path, steps: list[CachedStep], blob_for: BlobFor, content: ContentStore) -> str:
    """The cache as an OCI image layout in `dest` (blobs kept from earlier exports stay)."""
    blobs = _blobs(steps, blob_for)
    cfg_bytes, manifest = document(steps, blobs)
    bdir = dest / "blobs" / "sha256"
    bdir.mkdir(parents=True, exist_ok=True)

    def put(digest: str, src: Path | None, data: bytes | None = None) -> None:
        target = _blob_path(dest, digest)
        if target.exists():
            return
        tmp = target.with_name(target.name + ".tmp")
        if data is not None:
            tmp.write_bytes(data)
        else:
            assert src is not None
            shutil.copyfile(src, tmp)
        os.replace(tmp, target)

    for b in blobs.values():
        put(b.digest, content.path(b.digest))
    put(sha256_digest(cfg_bytes), None, cfg_bytes)
    m_digest = sha256_digest(manifest)
    put(m_digest, None, manifest)
    (dest / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    index = {"schemaVersion": 2, "mediaType": OCI_INDEX,
             "manifests": [{"mediaType": OCI_MANIFEST, "digest": m_digest, "size": len(manifest),
                            "annotations": {"org.opencontainers.image.ref.name": "latest"}}]}
    tmp = dest / "index.json.tmp"
    tmp.write_text(json.dumps(index, indent=2))
    os.replace(tmp, dest / "index.json")
    return m_digest


async def import_local(src: Path, content: ContentStore, tag: str = "latest") -> CacheSource:
    try:
        index = json.loads((src / "index.json").read_text())
    except FileNotFoundError:
        raise NotFound(f"no cache at {src}: {src / 'index.json'} does not exist") from None
    except ValueError as e:
        raise InvalidParameter(f"invalid {src / 'index.json'}: {e}") from None
    descs = [m for m in index.get("manifests") or []
             if (m.get("annotations") or {}).get("org.opencontainers.image.ref.name", "latest") == tag]
    if not descs:
        raise NotFound(f"no cache tagged {tag!r} in {src}")
    data = _blob_path(src, descs[-1]["digest"]).read_bytes()
    if sha256_digest(data) != descs[-1]["digest"]:
        raise InvalidParameter(f"cache manifest {descs[-1]['digest']} does not match its digest")

    async def fetch(digest: str, _size: int) -> None:
        if not content.has(digest):
            await asyncio.to_thread(_copy_in, _blob_path(src, digest), digest, content)

    cfg_bytes = await _config(data, fetch, content)
    steps, layers = parse(data, cfg_bytes)
    return CacheSource(str(src), steps, layers, src_dir=src)
