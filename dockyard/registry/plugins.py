"""Managed plugins in a registry: the image format whose config is `application/vnd.docker.plugin.v1+json`
(a Docker v2 schema 2 manifest: the config, then the rootfs layers). Pull fetches the config and the
layers into the content store (the manager extracts them); push uploads them and the manifest."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

from dockyard.errors import InvalidParameter
from dockyard.oci import reference
from dockyard.oci.digest import sha256_digest
from dockyard.registry.client.auth import Credentials
from dockyard.registry.client.remote import DOCKER_MANIFEST, RegistryClient, Repository
from dockyard.store.content import ContentStore

PLUGIN_CONFIG = "application/vnd.docker.plugin.v1+json"
LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
MAX_CONFIG = 4 << 20


def _repo(client: RegistryClient, ref: reference.Reference, creds: Credentials, push: bool) -> Repository:
    return client.repository(client.endpoints(ref.domain, push=push)[0], ref.path, creds, push=push)


async def fetch_config(client: RegistryClient, remote: str, creds: Credentials,
                       content: ContentStore) -> tuple[bytes, list[dict[str, Any]], Repository]:
    """(config bytes, layer descriptors, repository) of the plugin at `remote`."""
    ref = reference.parse(remote)
    repo = _repo(client, ref, creds, push=False)
    data, _mt, _digest = await repo.get_manifest(ref.digest or ref.tag or "latest")
    try:
        doc = json.loads(data)
        cfg = doc["config"]
        digest, size = str(cfg["digest"]), int(cfg["size"])
        layers = [dict(x) for x in doc.get("layers") or []]
    except (ValueError, KeyError, TypeError) as e:
        raise InvalidParameter(f"invalid plugin manifest for {remote}: {e}") from None
    if cfg.get("mediaType") != PLUGIN_CONFIG:
        raise InvalidParameter(f"{remote} is not a plugin: its config is {cfg.get('mediaType')!r}, "
                               f"not {PLUGIN_CONFIG}")
    if size > MAX_CONFIG:
        raise InvalidParameter(f"plugin config of {remote} is over 4 MiB")
    await repo.fetch_blob(digest, size, content)
    with content.open(digest) as f:
        return f.read(), layers, repo


async def pull(client: RegistryClient, remote: str, creds: Credentials, content: ContentStore,
               out: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
    """Progress messages as dockerd streams them; `out` gets "config" (bytes) and "layers" (digests)."""
    cfg, layers, repo = await fetch_config(client, remote, creds, content)
    tag = reference.parse(remote).tag or "latest"
    yield {"status": f"Pulling from {reference.parse(remote).path}", "id": tag}
    sem = asyncio.Semaphore(3)

    async def one(desc: dict[str, Any]) -> None:
        async with sem:
            await repo.fetch_blob(str(desc["digest"]), int(desc["size"]), content)

    for desc in layers:
        yield {"status": "Pulling fs layer", "id": str(desc["digest"])[7:19]}
    await asyncio.gather(*(one(d) for d in layers))
    for desc in layers:
        yield {"status": "Download complete", "id": str(desc["digest"])[7:19]}
    out["config"], out["layers"] = cfg, [str(d["digest"]) for d in layers]
    yield {"status": f"Digest: {sha256_digest(cfg)}"}
    yield {"status": f"Status: Downloaded newer plugin for {remote}"}


async def push(client: RegistryClient, remote: str, creds: Credentials, content: ContentStore,
               config: bytes, layers: list[tuple[str, int]]) -> AsyncIterator[dict[str, Any]]:
    """Upload the layers (gzip tars already in the content store), the config and the manifest."""
    ref = reference.parse(remote)
    repo = _repo(client, ref, creds, push=True)
    cfg_digest = sha256_digest(config)
    if not content.has(cfg_digest):
        content.write(config, cfg_digest)
    tag = ref.tag or "latest"
    yield {"status": f"The push refers to repository [{ref.domain}/{ref.path}]"}
    for digest, size in [*layers, (cfg_digest, len(config))]:
        if not await repo.has_blob(digest):
            await repo.upload_blob(digest, content.path(digest), size)
        yield {"status": "Pushed", "id": digest[7:19]}
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": DOCKER_MANIFEST,
        "config": {"mediaType": PLUGIN_CONFIG, "digest": cfg_digest, "size": len(config)},
        "layers": [{"mediaType": LAYER_GZIP, "digest": d, "size": n} for d, n in layers],
    }, separators=(",", ":")).encode()
    digest = await repo.put_manifest(tag, manifest, DOCKER_MANIFEST)
    yield {"status": f"{tag}: digest: {digest} size: {len(manifest)}"}
