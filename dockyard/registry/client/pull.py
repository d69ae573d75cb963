"""Pull: resolve a reference on a registry (mirrors first), pick the platform, download layers in
parallel and extract each while its bytes arrive, in any order (dockerd downloads 3 at a time, then
extracts one layer after another, each only once fully downloaded).

Crash/retry safety: blobs land in the content store only once verified, snapshots only once fully
extracted, and the image is registered last, so a failed pull leaves no half image and a retry
reuses every finished blob and snapshot (but for the blobs of a pull the disk had no room for).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import contextvars
import fcntl
import functools
import json
import os
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

import httpx

from dockyard import trace
from dockyard.errors import DockyardError, InvalidParameter, NotFound, Unavailable, out_of_space
from dockyard.oci import reference
from dockyard.registry.client import platforms, progress
from dockyard.registry.client.auth import Credentials
from dockyard.registry.client.layermap import LayerMap
from dockyard.registry.client.remote import INDEX_TYPES, RegistryClient, Repository, dial_error
from dockyard.store.content import ContentStore
from dockyard.store.snapshots import Snapshotter, chain_ids

Event = dict[str, Any]


class ImageRegistrar(Protocol):
    """What the image service offers the puller (services/images.py ImageService.register)."""

    def register(self, config_bytes: bytes, layer_diff_ids: list[str], tags: Iterable[str] = (), *,
                 repo_digests: Iterable[str] = (), layer_blobs: Iterable[tuple[str, str, str, int]] = ()) -> Any: ...


@dataclass
class Resolved:
    repo: Repository
    ref: reference.Reference
    digest: str  # what `Digest:` prints: the index digest when the tag names an index
    manifest: dict[str, Any]
    manifest_digest: str  # the platform's manifest


class _DownloadFailed(Exception):
    """Tells an extractor that its layer's download failed, so it drops what it made."""


_POOL: concurrent.futures.ThreadPoolExecutor | None = None


def _extractors() -> concurrent.futures.ThreadPoolExecutor:
    """Own threads for extraction: a many-layer pull must not fill the loop's default executor."""
    global _POOL
    if _POOL is None:
        _POOL = concurrent.futures.ThreadPoolExecutor(8, thread_name_prefix="layer-apply")
    return _POOL


async def _writable(loop: asyncio.AbstractEventLoop, fd: int) -> None:
    """Wait until the pipe `fd` takes more bytes (or its reader is gone)."""
    fut: asyncio.Future[None] = loop.create_future()

    def ready() -> None:
        if not fut.done():
            fut.set_result(None)
    loop.add_writer(fd, ready)
    try:
        await fut
    finally:
        loop.remove_writer(fd)


class Puller:
    def __init__(self, client: RegistryClient, content: ContentStore, snapshots: Snapshotter,
                 images: ImageRegistrar, layermap: LayerMap | None = None, concurrency: int = 6) -> None:
        self.client = client
        self.content = content
        self.snapshots = snapshots
        self.images = images
        self.layermap = layermap
        self.concurrency = concurrency

    async def resolve(self, ref: reference.Reference, platform: str | None, creds: Credentials) -> Resolved:
        want = platforms.parse(platform)
        last: Exception | None = None
        wanted = ref.digest or ref.tag or "latest"
        for ep in self.client.endpoints(ref.domain):
            repo = self.client.repository(ep, ref.path, creds)
            try:
                data, media_type, digest = await repo.get_manifest(wanted)
            except (Unavailable, httpx.TransportError, NotFound, DockyardError) as e:
                last = e
                if ep.mirror:  # docker falls back from a mirror to the registry on any error
                    continue
                break
            top = digest
            doc = json.loads(data)
            if not self.content.has(digest):
                self.content.write(data, digest)
            if media_type in INDEX_TYPES:
                desc = platforms.select(doc, want)
                data, media_type, digest = await repo.get_manifest(desc["digest"])
                if digest != desc["digest"]:
                    raise InvalidParameter(f"manifest verification failed for digest {desc['digest']}")
                doc = json.loads(data)
                if not self.content.has(digest):
                    self.content.write(data, digest)
            return Resolved(repo, ref, top, doc, digest)
        if isinstance(last, NotFound):
            raise NotFound(f"manifest for {ref.familiar} not found: manifest unknown: manifest unknown")
        if isinstance(last, DockyardError):
            raise last
        why = dial_error(ep.url, last) if isinstance(last, httpx.TransportError) else str(last)
        raise Unavailable(f"error pulling {ref.familiar}: {why}")

    async def pull(self, image: str, tag: str | None = None, platform: str | None = None,
                   creds: Credentials | None = None) -> AsyncIterator[Event]:
        """Yield Docker progress events. Errors before the first event raise (the API answers with a
        status code); later ones raise too, and the API turns them into an errorDetail line."""
        if tag and not image.count("@"):
            if tag.startswith("sha256:"):
                image = f"{image}@{tag}"
            else:
                image = f"{image}:{tag}"
        ref = reference.parse(image)
        res = await self.resolve(ref, platform, creds or Credentials())
        yield progress.status(f"Pulling from {ref.path}", ref.tag or ref.digest)
        outcome: dict[str, bool] = {}
        async for ev in self._fetch(res, platform, outcome):
            yield ev
        yield progress.status(f"Digest: {res.digest}")
        verb = "Downloaded newer image for" if outcome.get("downloaded") else "Image is up to date for"
        yield progress.status(f"Status: {verb} {ref.familiar}")

    async def _stream(self, repo: Repository, digest: str, size: int, chain: str, parent: str | None,
                      on_progress: Callable[[int], None], on_downloaded: Callable[[], None]) -> bool:
        """Download a layer blob into the content store and extract it in the same pass: the
        chunks also go down a pipe to an extractor thread. The snapshot is renamed into place only
        once the diff_id (extractor) and the blob digest (download) are both right; else its temp
        dir is removed and the pull fails. True when the blob was extracted, so checked against
        its diff_id (False: the snapshot appeared meanwhile)."""
        loop = asyncio.get_running_loop()
        r, w = os.pipe()
        with contextlib.suppress(OSError):  # fewer wake-ups than the 64 KiB default
            fcntl.fcntl(w, fcntl.F_SETPIPE_SZ, 1 << 20)
        os.set_blocking(w, False)
        rfile = os.fdopen(r, "rb")
        verified: concurrent.futures.Future[None] = concurrent.futures.Future()

        def extract() -> bool:
            try:
                return self.snapshots.ensure(chain, parent, lambda: rfile, verified.result)
            finally:
                rfile.close()  # the writer then gets EPIPE if it is still going

        # In a copy of our context: the extraction's trace records name the image being pulled.
        ext = loop.run_in_executor(_extractors(), contextvars.copy_context().run, extract)
        piping = True

        async def sink(chunk: bytes) -> None:
            nonlocal piping
            view = memoryview(chunk)
            while piping and view:
                try:
                    view = view[os.write(w, view):]
                except BlockingIOError:
                    await _writable(loop, w)
                except BrokenPipeError:
                    # The extractor stopped (a bad layer, or the snapshot exists): the download
                    # goes on, as a wrong digest is the error to report when it is one.
                    piping = False

        try:
            try:
                await repo.fetch_blob(digest, size or None, self.content, on_progress, sink)
            finally:
                os.close(w)
            on_downloaded()
        except BaseException:
            verified.set_exception(_DownloadFailed())
            await asyncio.wait([ext])  # its temp dir is gone when this returns
            if not ext.cancelled():
                ext.exception()  # retrieved (not logged): the download's error is the one to report
            raise
        verified.set_result(None)
        return await ext

    async def _fetch(self, res: Resolved, platform: str | None, outcome: dict[str, bool]) -> AsyncIterator[Event]:
        """_fetch_all; when that fails for want of space, the blobs it downloaded go again at once:
        a retry cannot succeed without the room, and the next daemon start's sweep is too late."""
        m = res.manifest
        descs = [m.get("config"), *(m.get("layers") or [])] if isinstance(m, dict) else []
        fresh = [d["digest"] for d in descs if isinstance(d, dict) and isinstance(d.get("digest"), str)
                 and not self.content.has(d["digest"])]
        try:
            async for ev in self._fetch_all(res, platform, outcome):
                yield ev
        except BaseException as e:
            if out_of_space(e):
                self._drop_unregistered(fresh, m)
            raise

    def _drop_unregistered(self, blobs: list[str], manifest: dict[str, Any]) -> None:
        """Delete these blobs unless an image may use them: a layer blob stays when its snapshot
        exists (another pull may have registered it), the config while every layer's snapshot does."""
        chains: dict[str, str] = {}
        with contextlib.suppress(Exception):
            config = json.loads(self.content.path(manifest["config"]["digest"]).read_bytes())
            diff_ids = list(config["rootfs"]["diff_ids"])
            chains = dict(zip((desc["digest"] for desc in manifest["layers"]), chain_ids(diff_ids), strict=True))
        whole = bool(chains) and all(self.snapshots.exists(c) for c in chains.values())
        for digest in blobs:
            chain = chains.get(digest)
            keep = self.snapshots.exists(chain) if chain else whole
            if not keep:
                with contextlib.suppress(Exception):
                    self.content.delete(digest)

    async def _fetch_all(self, res: Resolved, platform: str | None, outcome: dict[str, bool]
                         ) -> AsyncIterator[Event]:
        m = res.manifest
        try:
            cfg_desc, layers = m["config"], list(m.get("layers") or [])
        except (KeyError, TypeError):
            raise InvalidParameter("invalid manifest: no config") from None
        await res.repo.fetch_blob(cfg_desc["digest"], cfg_desc.get("size"), self.content)
        config_bytes = self.content.path(cfg_desc["digest"]).read_bytes()
        config = json.loads(config_bytes)
        if platform:
            got = platforms.normalize(platforms.Platform(config.get("os", ""), config.get("architecture", ""),
                                                         config.get("variant", "")))
            want = platforms.parse(platform)
            if (got.os, got.architecture) != (want.os, want.architecture):
                raise InvalidParameter(f"image with reference {res.ref.familiar} was found but does not match "
                                       f"the specified platform: wanted {want}, actual: {got}")
        diff_ids = list((config.get("rootfs") or {}).get("diff_ids") or [])
        if len(diff_ids) != len(layers):
            raise InvalidParameter("invalid image: layer count in manifest and config differ")
        chains = chain_ids(diff_ids)
        queue: asyncio.Queue[Event | None] = asyncio.Queue()
        need = [not self.snapshots.exists(c) for c in chains]
        outcome["downloaded"] = any(need)
        for i, desc in enumerate(layers):
            queue.put_nowait(progress.layer("Pulling fs layer" if need[i] else "Already exists",
                                            progress.short(desc["digest"])))
        sem = asyncio.Semaphore(self.concurrency)

        # Each layer has its own snapshot dir (whiteouts stay in it until overlay merges them), so
        # layers extract independently and in any order; the chain ids come from the config. A
        # layer is extracted from the bytes as they arrive (see _stream); file creation is kernel
        # time, which the threads overlap.
        checked = [False] * len(layers)  # the blob was extracted here, so it is this diff_id's

        async def fetch_layer(i: int) -> None:
            desc = layers[i]
            lid, digest, size = progress.short(desc["digest"]), desc["digest"], int(desc.get("size") or 0)
            parent = chains[i - 1] if i else None
            async with sem:
                if self.content.has(digest):
                    queue.put_nowait(progress.layer("Download complete", lid))
                    queue.put_nowait(progress.detail("Extracting", lid, 0, size))
                    checked[i] = await asyncio.get_running_loop().run_in_executor(
                        _extractors(), contextvars.copy_context().run, self.snapshots.ensure, chains[i], parent,
                        functools.partial(self.content.open, digest))
                else:
                    step = max(size // 100, 256 * 1024)
                    last = [0]

                    def on_progress(n: int) -> None:
                        if n - last[0] >= step or n == size:
                            last[0] = n
                            queue.put_nowait(progress.detail("Downloading", lid, n, size))
                    def on_downloaded() -> None:  # the extraction is under way already
                        for ev in (progress.layer("Verifying Checksum", lid), progress.layer("Download complete", lid),
                                   progress.detail("Extracting", lid, 0, size)):
                            queue.put_nowait(ev)
                    queue.put_nowait(progress.detail("Downloading", lid, 0, size))
                    checked[i] = await self._stream(res.repo, digest, size, chains[i], parent, on_progress,
                                                    on_downloaded)
                queue.put_nowait(progress.detail("Extracting", lid, size, size))
                queue.put_nowait(progress.layer("Pull complete", lid))

        async def fetch_layers() -> None:
            with trace.about(f"image:{res.ref.familiar}"):  # each task keeps a copy of this context
                extracts = [asyncio.create_task(fetch_layer(i)) for i in range(len(layers)) if need[i]]
            try:
                await asyncio.gather(*extracts)
            finally:  # a failure stops the others; they leave no snapshot (temp dirs are removed)
                for t in extracts:
                    t.cancel()
                await asyncio.gather(*extracts, return_exceptions=True)
            # Only pairs this pull checked: a layer that was here already was not fetched, and a
            # manifest naming some other blob for it must not become where that layer comes from.
            blobs = [(d, desc["digest"], desc.get("mediaType", ""), int(desc.get("size") or 0))
                     for desc, d, ok in zip(layers, diff_ids, checked, strict=True) if ok]
            if self.layermap is not None:
                for diff_id, digest, media_type, size in blobs:
                    self.layermap.record(diff_id, digest, media_type, size, res.ref.domain, res.ref.path)
            tags = [str(res.ref)] if res.ref.tag and not res.ref.digest else []
            # One transaction in the image service: tags, RepoDigest and layer blobs appear together.
            await asyncio.to_thread(self.images.register, config_bytes, diff_ids, tags,
                                    repo_digests=[f"{res.ref.repository}@{res.digest}"], layer_blobs=blobs)

        async with contextlib.aclosing(progress.relay(queue, fetch_layers())) as events:  # closed with us, so the work is cancelled
            async for ev in events:
                yield ev
