"""Push: blobs the registry has are skipped (HEAD), blobs of another repository on the same registry
are cross-mounted, the rest are uploaded in parallel; then the config and the manifest."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from dockyard.errors import InvalidParameter, NotFound
from dockyard.oci import reference
from dockyard.oci.digest import sha256_digest
from dockyard.registry.client import progress
from dockyard.registry.client.auth import Credentials
from dockyard.registry.client.layermap import LayerMap, LayerSource
from dockyard.registry.client.remote import DOCKER_MANIFEST, OCI_MANIFEST, RegistryClient, Repository
from dockyard.store.content import ContentStore
from dockyard.store.layers import write_diff
from dockyard.store.snapshots import Snapshotter, chain_ids

Event = dict[str, Any]
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
DOCKER_LAYER = {"gzip": "application/vnd.docker.image.rootfs.diff.tar.gzip",
                "none": "application/vnd.docker.image.rootfs.diff.tar"}
OCI_LAYER = {"gzip": "application/vnd.oci.image.layer.v1.tar+gzip", "zstd": "application/vnd.oci.image.layer.v1.tar+zstd",
             "none": "application/vnd.oci.image.layer.v1.tar"}
CHUNKED_ABOVE = 256 * 1024 * 1024  # bigger blobs go up in PATCH chunks (resumable by registries)


def compression(media_type: str) -> str:
    return "zstd" if "zstd" in media_type else "gzip" if "gzip" in media_type else "none"


@dataclass
class PushLayer:
    diff_id: str
    source: LayerSource  # the compressed blob, in our content store


class Pusher:
    def __init__(self, client: RegistryClient, content: ContentStore, snapshots: Snapshotter,
                 layermap: LayerMap, layer_blob: Callable[[str], tuple[str, str, int]] | None = None,
                 concurrency: int = 4) -> None:
        self.client = client
        self.layer_blob = layer_blob  # ImageService.layer_blob: blobs of loaded/built images
        self.content = content
        self.snapshots = snapshots
        self.layermap = layermap
        self.concurrency = concurrency

    def blob_for(self, diff_id: str, chain: str) -> tuple[str, str, int]:
        """(digest, media type, size) of a stored blob of the layer (made from its snapshot if none).
        Blocking."""
        src = self._blob_for(diff_id, chain)
        return src.digest, src.media_type, src.size

    def _blob_for(self, diff_id: str, chain: str) -> LayerSource:
        """A blob for the layer, on disk: one we pulled or built (a built layer's tar is made here, in
        this worker thread, if not stored yet: not later on the event loop), else gzip the snapshot."""
        for src in self.layermap.sources(diff_id):
            if self.content.has(src.digest):
                self.content.materialize(src.digest)
                return src
        if self.layer_blob is not None:
            try:
                digest, media_type, size = self.layer_blob(diff_id)
                self.content.materialize(digest)
                return LayerSource(digest, media_type, size, "", "")
            except NotFound:
                pass
        fs = self.snapshots.path(chain)
        if not fs.is_dir():
            raise InvalidParameter(f"layer {diff_id} does not exist")
        with self.content.ingest() as w:
            with gzip.GzipFile(fileobj=w, mode="wb", mtime=0, compresslevel=6) as gz:  # type: ignore[call-overload]
                got = write_diff(fs, gz)
            if got != diff_id:
                raise InvalidParameter(f"layer {diff_id} cannot be reproduced from its snapshot (got {got})")
            digest = w.commit()
        src = LayerSource(digest, DOCKER_LAYER["gzip"], self.content.size(digest), "", "")
        self.layermap.record(diff_id, digest, src.media_type, src.size, "", "")
        return src

    async def push(self, target: str, config_bytes: bytes, creds: Credentials | None = None,
                   original: bytes | None = None) -> AsyncIterator[Event]:
        """Push one image (its config JSON) as `target` (`host/repo:tag`). Yields Docker's events.
        `original`: the manifest as pulled (its layer blobs in the content store), pushed byte for byte
        so that its digest, which referrers name as their subject, stays the same."""
        ref = reference.parse(target)
        if not ref.tag:
            raise InvalidParameter("push needs a tag")
        config = json.loads(config_bytes)
        diff_ids = list((config.get("rootfs") or {}).get("diff_ids") or [])
        chains = chain_ids(diff_ids)
        yield progress.status(f"The push refers to repository [{ref.repository if ref.domain != 'docker.io' else 'docker.io/' + ref.path}]")
        endpoint = self.client.endpoints(ref.domain, push=True)[0]
        repo = self.client.repository(endpoint, ref.path, creds or Credentials(), push=True)
        if original is not None:
            descs = json.loads(original)["layers"]
            layers = [PushLayer(d, LayerSource(desc["digest"], desc.get("mediaType", ""), int(desc["size"]), "", ""))
                      for d, desc in zip(diff_ids, descs, strict=True)]
        else:
            layers = [PushLayer(d, await asyncio.to_thread(self._blob_for, d, c))
                      for d, c in zip(diff_ids, chains, strict=True)]
        queue: asyncio.Queue[Event | None] = asyncio.Queue()
        for layer in reversed(layers):  # docker lists top layer first
            queue.put_nowait(progress.layer("Preparing", progress.short(layer.diff_id)))
        sem = asyncio.Semaphore(self.concurrency)

        async def one(layer: PushLayer) -> None:
            lid, src = progress.short(layer.diff_id), layer.source
            async with sem:
                if await repo.has_blob(src.digest):
                    queue.put_nowait(progress.layer("Layer already exists", lid))
                    return
                if src.registry == ref.domain and src.repository and src.repository != ref.path:
                    if await repo.mount_blob(src.digest, src.repository):
                        queue.put_nowait(progress.layer(f"Mounted from {src.repository}", lid))
                        self.layermap.record(layer.diff_id, src.digest, src.media_type, src.size, ref.domain, ref.path)
                        return
                step = max(src.size // 100, 512 * 1024)
                last = [0]

                def on_progress(n: int) -> None:
                    if n - last[0] >= step or n == src.size:
                        last[0] = n
                        queue.put_nowait(progress.detail("Pushing", lid, n, src.size))
                await repo.upload_blob(src.digest, self.content.path(src.digest), src.size, on_progress,
                                       chunk_size=CHUNKED_ABOVE)
                self.layermap.record(layer.diff_id, src.digest, src.media_type, src.size, ref.domain, ref.path)
                queue.put_nowait(progress.layer("Pushed", lid))

        async def push_layers() -> None:
            await asyncio.gather(*(one(layer) for layer in layers))

        async with contextlib.aclosing(progress.relay(queue, push_layers())) as events:  # closed with us, so the work is cancelled
            async for ev in events:
                yield ev
        manifest, media_type = await self._config_and_manifest(repo, config_bytes, layers)
        if original is not None:
            manifest, media_type = original, json.loads(original).get("mediaType") or OCI_MANIFEST
        digest = await repo.put_manifest(ref.tag, manifest, media_type)
        yield progress.status(f"{ref.tag}: digest: {digest} size: {len(manifest)}")
        yield {"progressDetail": {}, "aux": {"Tag": ref.tag, "Digest": digest, "Size": len(manifest)}}

    async def _config_and_manifest(self, repo: Repository, config_bytes: bytes,
                                   layers: list[PushLayer]) -> tuple[bytes, str]:
        oci = any(compression(la.source.media_type) == "zstd" or ".oci." in la.source.media_type for la in layers)
        cfg_digest = sha256_digest(config_bytes)
        if not self.content.has(cfg_digest):
            self.content.write(config_bytes, cfg_digest)
        if not await repo.has_blob(cfg_digest):
            await repo.upload_blob(cfg_digest, self.content.path(cfg_digest), len(config_bytes))
        table = OCI_LAYER if oci else DOCKER_LAYER
        doc = {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST if oci else DOCKER_MANIFEST,
            "config": {"mediaType": OCI_CONFIG if oci else DOCKER_CONFIG, "size": len(config_bytes),
                       "digest": cfg_digest},
            "layers": [{"mediaType": table.get(compression(la.source.media_type), table["gzip"]),
                        "size": la.source.size, "digest": la.source.digest} for la in layers],
        }
        # Docker's own formatting (3-space indent) so our manifests look like dockerd's.
        data = json.dumps(doc, indent=3).encode()
        return data, str(doc["mediaType"])


async def copy_referrers(src: Repository, dst: Repository, subject: str, content: ContentStore,
                         depth: int = 3) -> AsyncIterator[Event]:
    """Copy the OCI 1.1 referrers of `subject` (signatures, SBOMs; and theirs, `depth` levels) from `src`
    to `dst` byte for byte: same manifests, same blobs, so the same digests."""
    for desc in await src.referrers(subject):
        data, media_type, digest = await src.get_manifest(desc["digest"])
        doc = json.loads(data)
        blobs = [d for d in [doc.get("config"), *(doc.get("layers") or doc.get("blobs") or [])]
                 if isinstance(d, dict) and d.get("digest")]
        for b in blobs:
            if await dst.has_blob(b["digest"]):
                continue
            if src.endpoint == dst.endpoint and await dst.mount_blob(b["digest"], src.path):
                continue
            await src.fetch_blob(b["digest"], b.get("size"), content)
            await dst.upload_blob(b["digest"], content.path(b["digest"]), content.size(b["digest"]))
        await dst.put_referrer(digest, data, media_type, subject)
        yield progress.status(f"Referrer {digest} ({desc.get('artifactType') or 'unknown type'}): pushed")
        if depth > 1:
            async for ev in copy_referrers(src, dst, digest, content, depth - 1):
                yield ev
