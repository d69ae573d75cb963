"""The classic builder: a context tar + Dockerfile -> images, with Docker's JSON progress stream.

Each stage is a chain of images, one per step (metadata steps add a history entry with
`empty_layer`); every step is looked up in the build cache first. RUN runs in a real container
via ContainerService; COPY/ADD write into a fresh upper dir over the parent's layers. Stages the
target needs run as concurrent tasks, each waiting only on the stages it reads from.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import json
import logging
import os
import posixpath
import re
import secrets
import shutil
import stat
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dockyard import trace
from dockyard.builder import context as bctx
from dockyard.builder.cache import BuildCache, cache_key
from dockyard.builder.ctxindex import ContextIndex, HashMemo, hash_mixed
from dockyard.builder.runmounts import CacheMounts, SecretFiles
from dockyard.builder.session import BuildSession, Sessions
from dockyard.builder.sshsocket import AgentSocket, AgentSource, local_agent
from dockyard.dockerfile.dispatch import DEFAULT_SHELL, DISPATCH, ConfigState
from dockyard.dockerfile.mounts import Mount, check_run_flags, run_mounts
from dockyard.dockerfile.parser import (
    PROXY_ARGS,
    Dockerfile,
    Instruction,
    ParseError,
    Stage,
    expand_word,
    fields,
    parse,
)
from dockyard.errors import DockyardError, NotFound, describe
from dockyard.runtime.logs import STDERR, read_log_batches
from dockyard.services.containers import ContainerService
from dockyard.services.image_commit import commit_layer
from dockyard.services.images import Image, ImageService
from dockyard.store import overlay, safetree
from dockyard.store.db import Database
from dockyard.store.snapshots import chain_ids
from dockyard.store.snapshotter import OverlaySnapshotter, driver, mounted
from dockyard.util import gitref
from dockyard.util.dockerignore import PatternMatcher, build_files_to_drop
from dockyard.util.fs import mark_topdir
from dockyard.util.paths import resolve_in_root

if TYPE_CHECKING:  # the registry client (httpx) is imported only by builds that use a cache import/export
    from dockyard.registry.buildcache import CachedStep, CacheSource
    from dockyard.registry.service import Distribution
    from dockyard.wire.container import HostConfig
    from dockyard.wire.container import Mount as WireMount

log = logging.getLogger("dockyard.builder")
_STAGE: contextvars.ContextVar[int | None] = contextvars.ContextVar("dockyard_build_stage", default=None)


class BuildError(Exception):
    """A failed build. `status`: the HTTP status dockerd answers with when it fails before any
    step has run (reading the context or the Dockerfile); later it is an error in the stream."""

    def __init__(self, message: str, code: int = 1, status: int = 400) -> None:
        super().__init__(message)
        self.message, self.code, self.status = message, code, status


@dataclass
class BuildOptions:
    dockerfile: str = "Dockerfile"
    tags: list[str] = field(default_factory=list)
    target: str = ""
    nocache: bool = False
    pull: bool = False
    labels: dict[str, str] = field(default_factory=dict)
    buildargs: dict[str, str | None] = field(default_factory=dict)
    networkmode: str = ""
    quiet: bool = False
    platform: str = ""
    rm: bool = True
    forcerm: bool = False
    auth: str | None = None
    cachefrom: list[str] = field(default_factory=list)  # when set, only their layers are cache hits
    # `type=registry,ref=R` / `type=local,src=DIR` entries of cachefrom are cache imports instead;
    # cache_to: `--cache-to` specs (`type=registry,ref=R[,mode=min|max]`, `type=local,dest=DIR`)
    cache_to: list[str] = field(default_factory=list)
    explain_cache: bool = False  # a cache miss says which input changed (`--progress plain`, `--explain`)
    # the HostConfig of every RUN step's container (extrahosts, shmsize, memory, cpu... of the API)
    run_host_config: HostConfig | None = None
    # `--secret id=...`: their bytes, for RUN --mount=type=secret only (kept out of reprs and logs)
    secrets: dict[str, bytes] = field(default_factory=dict, repr=False)
    # `--build-context NAME=...`: "docker-image://REF", or "dir" (its files came in the context tar
    # under NAMED_DIR/NAME/)
    contexts: dict[str, str] = field(default_factory=dict)
    no_cache_filter: list[str] = field(default_factory=list)  # stages whose steps never take the cache
    # `--ssh ID=SOCKET`: agent sockets on the daemon's host (a local client's), for RUN --mount=type=ssh
    ssh: dict[str, str] = field(default_factory=dict)
    session: str = ""  # the client's build session (X-Dockyard-Build-Session): its ssh agents, from any host
    remote: str = ""  # the API's `remote`: a git URL (`#ref:subdir`) the daemon clones as the context


NAMED_DIR = ".dockyard-contexts"
_IMAGE_ID = re.compile(r"sha256:[0-9a-f]{64}")


@dataclass
class _State:
    image_id: str | None
    config: dict[str, Any]
    args: dict[str, str]  # ARGs in scope (name -> value)
    cmd_set: bool = False
    pos: str = ""  # the step's place (Dockerfile:stage:instruction): where an earlier build of it is found
    base: str = ""  # the stage's FROM: its image id and as written
    base_ref: str = ""


def _short(image_id: str) -> str:
    return image_id.removeprefix("sha256:")[:12]


class Builder:
    def __init__(self, db: Database, images: ImageService, containers: ContainerService | None, root: Path,
                 pull: Callable[[str, str | None, str | None, str | None], AsyncIterator[Any]] | None = None,
                 distribution: Callable[[], Distribution] | None = None) -> None:
        self.images = images
        self.distribution = distribution  # --cache-to/--cache-from's registry and local caches
        self.containers = containers
        self.root = root
        self.pull_fn = pull
        self.cache = BuildCache(db)
        self.hash_memo = HashMemo()  # context files' sha256 by tar header, across builds
        # (source image, COPY --from sources, flags) -> (hash, kind): an image id names fixed content
        self.from_memo: dict[tuple[str, tuple[str, ...], str], tuple[str, str]] = {}
        root.mkdir(parents=True, exist_ok=True)
        mark_topdir(root)  # each build's context dir in a fresh block group (see util.fs.mark_topdir)
        self.cache_mounts = CacheMounts(root / "cache-mounts")
        self.sessions = Sessions()
        for d in root.glob("tmp-*"):  # leftovers of a build interrupted by a crash
            for m in ("merged", "secrets"):
                with contextlib.suppress(OSError):
                    overlay.unmount(d / m)
            shutil.rmtree(d, ignore_errors=True)

    # ---------------------------------------------------------------- entry
    async def build(self, body: AsyncIterator[bytes], opts: BuildOptions) -> AsyncIterator[dict[str, Any]]:
        """Run a build, yielding Docker's progress messages; errors become `error`/`errorDetail`."""
        q: asyncio.Queue[dict[str, Any] | DockyardError | None] = asyncio.Queue()
        work = self.root / f"tmp-{secrets.token_hex(8)}"
        work.mkdir()
        emitted = False

        def emit(item: dict[str, Any]) -> None:
            nonlocal emitted
            emitted = True
            q.put_nowait(item)

        run = _Run(self, opts, work, emit)
        if opts.remote:
            body = _git_context(opts.remote, work)

        async def main() -> None:
            err: dict[str, Any] | DockyardError | None = None
            try:
                await run.spool(body)
                await run.go()
            except BuildError as e:
                err = {"errorDetail": {"message": e.message, "code": e.code}, "error": e.message}
                if not emitted:  # nothing sent yet: dockerd answers with an HTTP status instead
                    err = DockyardError(e.message)
                    err.status = e.status
            except DockyardError as e:
                err = e if not emitted else {"errorDetail": {"message": e.message}, "error": e.message}
            except Exception as e:  # noqa: BLE001 - the client must see every failure
                log.exception("build failed")
                err = {"errorDetail": {"message": describe(e)}, "error": describe(e)}
            finally:
                if run.index is not None and run.index.extractor is not None:
                    with contextlib.suppress(Exception):  # nothing may still write into `work` below
                        await asyncio.to_thread(run.index.extracted)
                await run.removed()
                with contextlib.suppress(Exception):
                    await asyncio.to_thread(self.cache.touch, run.hits)
                with contextlib.suppress(Exception):
                    run.secret_files.close()
                await asyncio.to_thread(shutil.rmtree, work, True)
                if err is not None:  # after the cleanup: a client that exits on it finds nothing left
                    q.put_nowait(err)
                q.put_nowait(None)

        task = asyncio.get_running_loop().create_task(main())
        try:
            while (item := await q.get()) is not None:
                if isinstance(item, DockyardError):
                    raise item
                yield item
        finally:
            if not task.done():
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task

    async def session(self, sid: str, ssh_ids: set[str], reader: asyncio.StreamReader,
                      writer: asyncio.StreamWriter) -> None:
        """A client's build session connection (dockyard/util/buildsession.py), served until it closes."""
        await self.sessions.hold(sid, ssh_ids, reader, writer)

    # ---------------------------------------------------------------- cache admin
    def _own_size(self, image_id: str) -> int:
        """Bytes the cached step added: its image's size minus its parent's."""
        try:
            img = self.images.get(image_id)
            parent = self.images.get(img.parent).size if img.parent else 0
        except NotFound:
            return 0
        return max(0, int(img.size) - int(parent))

    def prune(self, all_: bool = True) -> dict[str, Any]:
        """Forget every cache entry and remove the step images nothing else holds (untagged, no
        children, no containers): what the classic builder's cache costs on disk."""
        entries = self.cache.entries()
        sizes = {e["image_id"]: self._own_size(e["image_id"]) for e in entries}
        self.cache.delete([e["key"] for e in entries])
        deleted: set[str] = set()
        progress = True
        while progress:  # children first: a parent frees up once its children are gone
            progress = False
            for iid in sizes:
                if iid in deleted:
                    continue
                try:
                    if self.images.get(iid).repo_tags:
                        continue
                    recs = self.images.delete(iid)
                except DockyardError:
                    continue
                deleted.update(r["Deleted"] for r in recs if "Deleted" in r)
                progress = True
        mount_keys, mount_bytes = self.cache_mounts.prune()
        return {"CachesDeleted": [e["key"] for e in entries] + mount_keys or None,
                "SpaceReclaimed": sum(sizes[i] for i in deleted if i in sizes) + mount_bytes}

    def disk_usage(self) -> list[dict[str, Any]]:
        from dockyard.util.timefmt import rfc3339

        return [{"ID": e["key"][:25], "Parents": [e["parent"]] if e["parent"] else None, "Type": "regular",
                 "Description": e["created_by"], "InUse": False, "Shared": False,
                 "Size": self._own_size(e["image_id"]), "CreatedAt": rfc3339(e["created"]),
                 "LastUsedAt": rfc3339(e["last_used"]), "UsageCount": 1} for e in self.cache.entries()] + [
            # RUN --mount=type=cache dirs, as BuildKit lists them
            {"ID": m["key"][:25], "Parents": None, "Type": "exec.cachemount",
             "Description": f"cached mount {m.get('target', '')} from exec {m.get('cmd', '')}",
             "InUse": m["in_use"], "Shared": False, "Size": m["size"],
             "CreatedAt": rfc3339(m.get("created", 0)), "LastUsedAt": rfc3339(m.get("last_used", 0)),
             "UsageCount": 1} for m in self.cache_mounts.entries()]


class _Run:
    """One build: its context dir, parsed Dockerfile, stage tasks and step counter."""

    def __init__(self, b: Builder, opts: BuildOptions, work: Path, emit: Callable[[dict[str, Any]], None]) -> None:
        self.b, self.opts, self.work, self._emit = b, opts, work, emit
        self.ctx = work / "context"
        self.snapshots = OverlaySnapshotter(work, work / "empty")  # COPY steps' layers and --from views
        self.index: ContextIndex | None = None
        self._ctx_ready = False
        self._ctx_lock = asyncio.Lock()
        self.stage_results: dict[int, asyncio.Future[str | None]] = {}
        self.step: dict[int, int] = {}  # stage index -> its last step number
        self.total = 0
        # Stages run concurrently, but the client reads them in order, as from dockerd's sequential
        # builder: the first unfinished stage streams live, later ones buffer until it is done.
        self.order: list[int] = []
        self.live = 0  # position in `order` of the stage that streams live
        self.buffers: dict[int, list[str]] = {}
        self.finished: set[int] = set()
        self.df: Dockerfile | None = None
        self.meta: dict[str, str] = {}
        self.used_buildargs: set[str] = set()
        self.hits: list[str] = []  # cache keys used, touched in one commit at the end
        self.cache_sources: set[str] | None = None  # --cache-from images and their ancestors
        self.dropped: list[str] = []  # the Dockerfile and .dockerignore, when .dockerignore excludes them
        self.secret_files = SecretFiles(work / "secrets")
        self.session: BuildSession | None = None  # opts.session's, found at the first ssh mount
        self._fetch_lock = asyncio.Lock()  # git and http(s) named contexts, fetched once
        self.removals: list[asyncio.Task[Any]] = []  # step containers being removed
        self.steps: dict[str, tuple[str, str]] = {}  # cache key -> (image id, created_by): what --cache-to sends
        self.imports: list[CacheSource] = []  # --cache-from type=registry|local
        self._materialize_lock = asyncio.Lock()
        self.fresh: set[str] = set()  # images this build made (not taken from a cache)
        self._inputs: dict[str, tuple[str, str, dict[str, Any]]] = {}  # key -> (pos, parent, inputs) until put
        self._files_for: dict[str, Callable[[], dict[str, str] | None]] = {}  # a COPY's files, by its key

    async def removed(self) -> None:
        """Wait for the step containers' removals (errors logged: a leftover is not the build's failure)."""
        while self.removals:
            batch, self.removals = self.removals, []
            for r in await asyncio.shield(asyncio.gather(*batch, return_exceptions=True)):
                if isinstance(r, BaseException):
                    log.warning("removing a step container: %s", describe(r) if isinstance(r, Exception) else r)

    def out(self, text: str) -> None:
        if self.opts.quiet:
            return
        st = _STAGE.get()
        if st is None or not self.order or self.order[self.live] == st:
            self._emit({"stream": text})
        else:
            self.buffers.setdefault(st, []).append(text)

    def _flush(self, st: int) -> None:
        for text in self.buffers.pop(st, []):
            self._emit({"stream": text})

    def _stage_done(self, st: int, failed: bool) -> None:
        self.finished.add(st)
        if failed:  # show what led to the failure now: earlier stages' output, then this one's
            for i in self.order[self.live:self.order.index(st) + 1]:
                self._flush(i)
            self.live = self.order.index(st)
            return
        while self.live < len(self.order) and self.order[self.live] in self.finished:
            self.live += 1
            if self.live < len(self.order):
                self._flush(self.order[self.live])

    async def spool(self, body: AsyncIterator[bytes]) -> None:
        """Spool the context tar to disk, indexing it on the way (a worker thread does both)."""
        # extracted as it arrives: a spool written, read back and extracted cost a second write of every
        # byte (the dearest part of a big build here: the kernel filling fresh page-cache pages)
        idx = self.index = ContextIndex(self.work / "context.tar", self.b.hash_memo,
                                        {self.opts.dockerfile or "Dockerfile", ".dockerignore"},
                                        extract_to=self.ctx)
        try:
            async for chunk in body:
                if not idx.put_nowait(chunk):  # the worker is behind: wait, never buffer it all
                    await asyncio.to_thread(idx.put, chunk)
        finally:
            if not idx.put_nowait(None):
                await asyncio.to_thread(idx.put, None)
            await asyncio.to_thread(idx.join)

    async def ensure_context(self) -> None:
        """Extract the spooled context, once, for the first step that needs its files on disk."""
        async with self._ctx_lock:
            if self._ctx_ready:
                return
            assert self.index is not None
            try:
                if self.index.extractor is not None:
                    await asyncio.to_thread(self.index.extracted)
                else:
                    await asyncio.to_thread(bctx.extract_context, self.index.tar_path, self.ctx)
            except DockyardError as e:
                raise BuildError(f"failed to read the build context: {e.message}") from None
            for name in self.dropped:
                with contextlib.suppress(OSError):
                    resolve_in_root(self.ctx, name).unlink()
            named = self.ctx / NAMED_DIR
            if self.opts.contexts and named.is_dir() and not named.is_symlink():
                named.rename(self.work / "contexts")  # out of the main context: COPY . never sees them
            self._ctx_ready = True

    # ---------------------------------------------------------------- plan
    async def go(self) -> None:
        name = self.opts.dockerfile or "Dockerfile"
        text = self.index.file_bytes(name) if self.index is not None else None
        if text is None:
            await self.ensure_context()
            path = resolve_in_root(self.ctx, name)
            if not path.is_file():
                raise BuildError(f"Cannot locate specified Dockerfile: {name}", status=500)
            text = path.read_bytes()
        if not text:
            raise BuildError(f"the Dockerfile ({name}) cannot be empty")
        try:
            df = self.df = parse(text)
        except ParseError as e:
            raise BuildError(e.message) from None
        await self._drop_build_files(name)
        await self._import_caches()
        if self.index is not None and any(v == "dir" for v in self.opts.contexts.values()):
            self.index.usable = False  # its names include the named contexts' files: only the disk tells
        # ARG before FROM: usable in FROM lines; build args override their defaults.
        self.meta = {"TARGETOS": "linux", "TARGETARCH": _arch(), "TARGETPLATFORM": f"linux/{_arch()}",
                     "BUILDOS": "linux", "BUILDARCH": _arch(), "BUILDPLATFORM": f"linux/{_arch()}"}
        for inst in df.meta_args:
            for k, v in self._arg_pairs(inst, self.meta):
                self.meta[k] = self._buildarg(k, v)
        target = len(df.stages) - 1
        if self.opts.target:
            ti = df.stage_index(self.opts.target)
            if ti is None or not df.stages[ti].name:
                raise BuildError(f"failed to reach build target {self.opts.target} in Dockerfile")
            target = ti
        needed = self._needed(df, target)
        self.order = needed
        # dockerd's classic builder counts the ARGs before FROM as steps and shows them first
        self.total = len(df.meta_args)
        for i in needed:
            self.step[i] = self.total
            self.total += 1 + len(df.stages[i].instructions)
        self.total += len(self.opts.labels)
        for n, inst in enumerate(df.meta_args, 1):
            self.out(f"Step {n}/{self.total} : {_display(inst)}\n")
        loop = asyncio.get_running_loop()
        for i in needed:
            self.stage_results[i] = loop.create_future()
        tasks = [loop.create_task(self._stage_task(df.stages[i])) for i in needed]
        try:
            await asyncio.gather(*tasks)
        except BaseException:
            for t2 in tasks:
                t2.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise
        self.order = []  # everything after the stages streams live
        await self.removed()
        final = self.stage_results[target].result()
        if final is None and not self.opts.labels:  # FROM scratch alone; with labels, they make the image
            raise BuildError("No image was generated. Is your Dockerfile empty?")
        # --label: like dockerd, one LABEL step per key appended to the target stage
        step = self.total - len(self.opts.labels)
        for k, v in sorted(self.opts.labels.items()):
            step += 1
            self.out(f"Step {step}/{self.total} : LABEL {k}={v}\n")
            cfg = dict(self.b.images.get(final).config.get("config") or {}) if final else {}
            cfg["Labels"] = {**(cfg.get("Labels") or {}), k: v}
            st = _State(final, cfg, {})
            await self._commit_meta(st, f"/bin/sh -c #(nop)  LABEL {k}={v}")
            assert st.image_id is not None
            final = st.image_id
        assert final is not None
        unused = [k for k in self.opts.buildargs if k not in self.used_buildargs and k not in PROXY_ARGS]
        if unused:
            self.out(f"[Warning] One or more build-args {sorted(unused)} were not consumed\n")
        await self._export_caches(final)
        self._emit({"aux": {"ID": final}})
        if self.opts.quiet:
            self._emit({"stream": final + "\n"})
        self.out(f"Successfully built {_short(final)}\n")
        for t in self.opts.tags:
            await asyncio.to_thread(self._tag, final, t)
            from dockyard.oci import reference

            self.out(f"Successfully tagged {reference.parse(t).familiar}\n")

    async def _drop_build_files(self, dockerfile: str) -> None:
        """As dockerd's classic builder, once the Dockerfile is read: the Dockerfile and .dockerignore
        leave the context if .dockerignore's patterns exclude them (clients always send both)."""
        if self.index is not None and self.index.usable:
            ignore = self.index.file_bytes(".dockerignore")
        else:
            await self.ensure_context()
            path = self.ctx / ".dockerignore"
            ignore = path.read_bytes() if path.is_file() and not path.is_symlink() else None
        rel = posixpath.normpath("/" + dockerfile).lstrip("/")
        drop = build_files_to_drop(ignore.decode(errors="replace") if ignore is not None else None, rel)
        for name in drop:
            if self.index is not None:
                self.index.remove(name)
            if self._ctx_ready:
                with contextlib.suppress(OSError):
                    resolve_in_root(self.ctx, name).unlink()
        self.dropped = drop

    def _tag(self, image_id: str, t: str) -> None:
        from dockyard.oci import reference

        ref = reference.parse(t)
        self.b.images.tag(image_id, ref.repository, ref.tag or "latest")

    def _needed(self, df: Dockerfile, target: int) -> list[int]:
        seen: set[int] = set()

        def visit(i: int) -> None:
            if i in seen:
                return
            seen.add(i)
            for dep in self._deps(df, df.stages[i]):
                visit(dep)

        visit(target)
        return sorted(seen)

    def _deps(self, df: Dockerfile, st: Stage) -> list[int]:
        out = []
        base = expand_word(st.base, self.meta, df.escape, st.line)
        d = df.stage_index(base) if not base.isdigit() and base not in self.opts.contexts else None
        if d is not None and d < st.index:
            out.append(d)
        for inst in st.instructions:
            frm = inst.flags.get("from") if inst.cmd in ("copy", "add") else None
            if inst.cmd == "run" and inst.multi.get("mount"):
                try:
                    froms = [m.from_ for m in run_mounts(inst, lambda v: expand_word(v, self.meta, df.escape))]
                except ParseError:  # the stage's own ARGs may be missing here: the step itself reports it
                    froms = []
                for f in froms:
                    d = df.stage_index(f) if f and f not in self.opts.contexts else None
                    if d is not None:
                        if d >= st.index:
                            raise BuildError(f"invalid from flag value {f}: refers to current or later stage")
                        out.append(d)
            if frm:
                frm_x = expand_word(frm, self.meta, df.escape, inst.line)
                d = df.stage_index(frm_x) if frm_x not in self.opts.contexts else None
                if d is not None:
                    if d >= st.index:
                        raise BuildError(f"invalid from flag value {frm}: refers to current or later stage")
                    out.append(d)
        return out

    def _buildarg(self, name: str, default: str | None) -> str:
        if name in self.opts.buildargs and self.opts.buildargs[name] is not None:
            self.used_buildargs.add(name)
            return str(self.opts.buildargs[name])
        if name in self.opts.buildargs:  # given as null: the ARG's own default, as dockerd
            self.used_buildargs.add(name)
        return default or ""

    def _arg_pairs(self, inst: Instruction, env: dict[str, str]) -> list[tuple[str, str | None]]:
        out: list[tuple[str, str | None]] = []
        assert self.df is not None
        for w in inst.rest.split():
            k, eq, v = w.partition("=")
            out.append((k, expand_word(v, env, self.df.escape, inst.line) if eq else None))
        return out

    # ---------------------------------------------------------------- stages
    async def _stage_task(self, st: Stage) -> None:
        _STAGE.set(st.index)
        fut = self.stage_results[st.index]
        try:
            image_id = await self._run_stage(st)
        except BaseException as e:
            if not fut.done():
                fut.set_exception(e)
                fut.exception()  # mark retrieved: the gather reports it
            if not isinstance(e, asyncio.CancelledError):
                self._stage_done(st.index, failed=True)
            raise
        fut.set_result(image_id)
        self._stage_done(st.index, failed=False)

    def _next_step(self, inst_text: str) -> None:
        st = _STAGE.get()
        assert st is not None
        self.step[st] += 1
        self.out(f"Step {self.step[st]}/{self.total} : {inst_text}\n")

    async def _run_stage(self, st: Stage) -> str | None:
        assert self.df is not None
        df = self.df
        base = expand_word(st.base, self.meta, df.escape, st.line)
        self._next_step(_display_text(st.original) if st.original else
                        f"FROM {base}" + (f" AS {st.name}" if st.name else ""))
        dep = df.stage_index(base)
        image_id: str | None
        named = self.opts.contexts.get(base)
        files_of = ""  # a files context (dir, git, http) FROM names: its files are the stage's rootfs
        if named is not None:  # a named context replaces an image or stage of that name, as BuildKit's
            if named.startswith("docker-image://"):
                image_id = await self._base_image(named.removeprefix("docker-image://"), st.platform)
            else:
                image_id, files_of = None, base
        elif base.lower() == "scratch":
            image_id = None
            self.out(" ---> \n")
        elif dep is not None and dep < st.index:
            image_id = await self.stage_results[dep]
        else:
            image_id = await self._base_image(base, st.platform)
        if image_id is not None:
            self.out(f" ---> {_short(image_id)}\n")
        config: dict[str, Any] = {}
        if image_id is not None:
            config = dict(self.b.images.get(image_id).config.get("config") or {})
        state = _State(image_id, config, {}, base=image_id or "", base_ref=base)
        where = f"{self.opts.dockerfile or 'Dockerfile'}:{st.name or st.index}"
        if files_of:  # as BuildKit: no image config, one layer holding the context's files
            state.pos = f"{where}:from"
            await self._copy(state, Instruction("copy", "/ /", st.line, f"COPY --from={files_of} / /",
                                                flags={"from": files_of}), self._env(state))
        triggers = list(config.get("OnBuild") or [])
        if triggers:
            config["OnBuild"] = None
            self.out(f"# Executing {len(triggers)} build trigger{'s' if len(triggers) > 1 else ''}\n")
            for n, trig in enumerate(triggers):
                inst = parse("FROM scratch\n" + trig).stages[0].instructions[0]
                state.pos = f"{where}:onbuild{n}"
                await self._step(state, inst, announce=False)
        for n, inst in enumerate(st.instructions):
            self._next_step(_display(inst))
            state.pos = f"{where}:{n}"
            await self._step(state, inst)
        return state.image_id

    async def _base_image(self, ref: str, platform: str | None) -> str:
        try:
            # an image id (an oci-layout:// context the CLI loaded) is never pulled
            if self.opts.pull and self.b.pull_fn is not None and not _IMAGE_ID.fullmatch(ref):
                raise NotFound("pull requested")
            return str(self.b.images.resolve(ref).id)
        except NotFound:
            if self.b.pull_fn is None:
                raise BuildError(f"pull access denied for {ref}, repository does not exist or may require "
                                 "'docker login'") from None
        from dockyard.oci import reference

        r = reference.parse(ref)
        async for ev in self.b.pull_fn(r.repository, r.tag or r.digest, platform or self.opts.platform or None,
                                      self.opts.auth):
            if isinstance(ev, dict) and ev.get("error"):
                raise BuildError(str(ev["error"]))
            if isinstance(ev, dict) and ev.get("status") and not ev.get("progressDetail") and not self.opts.quiet:
                # the pull's own lines, as dockerd relays them ("3-slim: Pulling from library/python")
                self.out(f"{ev['id']}: {ev['status']}\n" if ev.get("id") else f"{ev['status']}\n")
        return str(self.b.images.resolve(ref).id)

    # ---------------------------------------------------------------- steps
    def _env(self, state: _State) -> dict[str, str]:
        """What `$VAR` sees: ARGs in scope, overridden by ENV."""
        env = dict(state.args)
        for e in state.config.get("Env") or []:
            k, _, v = e.partition("=")
            env[k] = v
        return env

    async def _step(self, state: _State, inst: Instruction, announce: bool = True) -> None:
        assert self.df is not None
        esc = self.df.escape
        env = self._env(state)
        c = inst.cmd
        cfg = state.config
        if c in ("run",):
            await self._run(state, inst, env)
            return
        if c in ("copy", "add"):
            await self._copy(state, inst, env)
            return
        if c == "arg":
            for k, v in self._arg_pairs(inst, env):
                if v is None and k in self.meta:
                    v = self.meta[k]
                state.args[k] = self._buildarg(k, v)
            text = "ARG " + inst.rest
        elif c in DISPATCH:
            cst = ConfigState(cfg, env, esc, state.cmd_set)
            text = DISPATCH[c](cst, inst)
            state.cmd_set = cst.cmd_set
        else:
            raise BuildError(f"unknown instruction: {c.upper()}")
        created_by = "/bin/sh -c #(nop)  " + text
        await self._commit_meta(state, created_by, author=inst.rest if c == "maintainer" else "")

    async def _commit_meta(self, state: _State, created_by: str, author: str = "") -> None:
        key = cache_key(state.image_id, created_by + json.dumps(state.config, sort_keys=True))
        if await self._cached(state, key, {"inst": created_by.removeprefix("/bin/sh -c #(nop)  ")}):
            return
        new = await asyncio.to_thread(commit_layer, self.b.images, None, state.image_id, state.config,
                                      {"created_by": created_by}, author=author)
        await self._put(key, new, state.image_id, created_by)
        state.image_id = new
        self.out(f" ---> {_short(new)}\n")

    def _cache_allowed(self) -> bool:
        if self.opts.nocache:
            return False
        st = _STAGE.get()
        return not (self.opts.no_cache_filter and self.df is not None and st is not None and
                    self.df.stages[st].name in {n.lower() for n in self.opts.no_cache_filter})

    async def _cached(self, state: _State, key: str, inputs: dict[str, Any] | None = None) -> bool:
        if inputs is not None:
            self._inputs[key] = (state.pos, state.image_id or "", inputs)
        files = self._files_for.pop(key, None)
        if not self._cache_allowed():
            if files is not None and inputs is not None:
                inputs["files"] = await asyncio.to_thread(files)
            return False
        hit = self.b.cache.get(key, self._exists)
        if hit is None and self.imports:
            hit = await self._imported(key)
        elif hit is not None and self.classic_cachefrom and not self._from_cache_sources(hit):
            return False
        if hit is None:
            if files is not None and inputs is not None:
                inputs["files"] = await asyncio.to_thread(files)
            if self.opts.explain_cache and inputs is not None:
                self.out(f" ---> Cache miss: {await asyncio.to_thread(self._miss_reason, state, key, inputs)}\n")
            return False
        self.hits.append(key)
        if self.opts.cache_to and key not in self.steps:
            row = self.b.cache.db.query_one("SELECT created_by FROM build_cache WHERE key=?", (key,))
            self.steps[key] = (hit, str(row["created_by"]) if row else "")
        state.image_id = hit
        self.out(" ---> Using cache\n")
        self.out(f" ---> {_short(hit)}\n")
        return True

    def _from_cache_sources(self, image_id: str) -> bool:
        """With --cache-from, dockerd takes a cached step only if it is one of those images or an
        ancestor of one (images that are not there are ignored: then nothing is a hit)."""
        if self.cache_sources is None:
            self.cache_sources = set()
            for ref in self.classic_cachefrom:
                img: Image | None
                try:
                    img = self.b.images.resolve(ref)
                except DockyardError:
                    continue
                while img is not None and img.id not in self.cache_sources:
                    self.cache_sources.add(img.id)
                    try:
                        img = self.b.images.get(img.parent) if img.parent else None
                    except DockyardError:
                        img = None
        return image_id in self.cache_sources

    async def _put(self, key: str, image_id: str, parent: str | None, created_by: str, fresh: bool = True) -> None:
        """Record a step's result (and its inputs) in one transaction, off the event loop: with FULL
        sync each commit waits for the disk, and twenty stages' steps would queue on the loop."""
        self.steps[key] = (image_id, created_by)
        if fresh:
            self.fresh.add(image_id)
        await asyncio.to_thread(self.b.cache.put, key, image_id, parent, created_by, self._inputs.pop(key, None))

    # ---------------------------------------------------------------- why a step missed the cache
    def _source_digests(self, frm: Any, srcs: list[str]) -> dict[str, str] | None:
        """The COPY sources' files and their digests, from the context index (None if not known)."""
        idx = self.index
        if frm or idx is None or not idx.usable:
            return None
        names: list[str] = []
        for src in srcs:
            found = idx.sources(src)
            if found is None:
                return None
            names += found
        return idx.file_digests(names)

    def _miss_reason(self, state: _State, key: str, inputs: dict[str, Any]) -> str:
        """Which input of the step differs from the nearest earlier build of it: the instruction, a
        file of the context, a build arg, the base image or the step before it."""
        cache = self.b.cache
        parent = state.image_id or ""
        if self.opts.cachefrom and self.classic_cachefrom and cache.has(key):
            return "the cached result is not from the --cache-from images"
        if cache.inputs("key", key):
            return "its cached result was removed (pruned, or its image deleted)"
        same_parent = cache.inputs("parent", parent)
        if same_parent:
            ranked = sorted(same_parent, key=lambda r: (r[1] != state.pos, r[3].get("inst") != inputs.get("inst")))
            return _diff_inputs(ranked[0][3], inputs) or \
                "its config changed (ENV, WORKDIR, USER or another setting above it)"
        at_pos = cache.inputs("pos", state.pos)
        if parent and parent in self.fresh:
            why = "the step before it was rebuilt (its parent layer is new)" if parent != state.base else \
                f"the stage it starts from ({state.base_ref}) was rebuilt"
            also = _diff_inputs(at_pos[0][3], inputs) if at_pos else ""
            return why + (f"; and {also}" if also else "")
        earlier = [r for r in at_pos if r[3].get("inst") == inputs.get("inst")]
        if earlier:
            old_parent = earlier[0][2]
            if parent == state.base:
                return (f"the base image changed: {state.base_ref} is {_short(parent)} now, the cache has this step "
                        f"on {_short(old_parent) if old_parent else 'scratch'}")
            return (f"its parent layer changed: {_short(parent) if parent else 'scratch'} now, "
                    f"{_short(old_parent) if old_parent else 'scratch'} in the cache")
        return "no earlier build of this step in the cache"

    # ---------------------------------------------------------------- --cache-from / --cache-to
    @property
    def classic_cachefrom(self) -> list[str]:
        """--cache-from images (dockerd's classic meaning); `type=...` entries are cache imports."""
        return [c for c in self.opts.cachefrom if not c.startswith("type=")]

    def _dist(self) -> Distribution:
        if self.b.distribution is None:
            raise BuildError("--cache-to/--cache-from need the distribution service (this builder has none)")
        return self.b.distribution()

    async def _import_caches(self) -> None:
        specs = [c for c in self.opts.cachefrom if c.startswith("type=")]
        if not specs and not self.opts.cache_to:
            return
        from dockyard.registry.buildcache import parse_spec

        try:
            parsed = [parse_spec(c) for c in specs]
            for c in self.opts.cache_to:
                if parse_spec(c).get("type") == "local" and not parse_spec(c).get("dest"):
                    raise DockyardError(f"cache {c!r}: type=local needs dest= to export")
            for spec in parsed:
                if spec["type"] == "local" and not spec.get("src"):
                    raise DockyardError(f"cache {spec}: type=local needs src= to import")
        except DockyardError as e:
            raise BuildError(e.message) from None
        for spec in parsed:
            name = spec.get("ref") or spec.get("src", "")
            self.out(f"importing cache manifest from {name}\n")
            try:
                self.imports.append(await self._dist().import_cache(spec, self.opts.auth))
            except DockyardError as e:  # as BuildKit: a cache that cannot be read is a warning, not a failure
                self.out(f"[Warning] failed to import cache {name}: {e.message}\n")

    async def _imported(self, key: str) -> str | None:
        """A step found in an imported cache: its image made here from the cached config and layer
        (and its parents first), so it has the same id as where it was built."""
        for src in self.imports:
            step = src.steps.get(key)
            if step is None:
                continue
            async with self._materialize_lock:
                if await self._materialize(src, step):
                    await self._put(key, step.image_id, step.parent or None, step.created_by, fresh=False)
                    return step.image_id
        return None

    async def _materialize(self, src: CacheSource, step: CachedStep) -> bool:
        if self._exists(step.image_id):
            return True
        if step.parent and not self._exists(step.parent):
            parent = next((s for s in src.steps.values() if s.image_id == step.parent), None)
            if parent is None or not await self._materialize(src, parent):
                return False
        images = self.b.images
        diff_ids = list(json.loads(step.config)["rootfs"]["diff_ids"])
        digest = await src.fetch(step.layer, images.content) if step.layer else ""

        def register() -> None:
            blobs = []
            if step.layer:
                chains = chain_ids(diff_ids)
                la = src.layers[step.layer]
                with images.gc_lock.shared():
                    images.snapshots.ensure(chains[-1], chains[-2] if len(chains) > 1 else None,
                                            lambda: images.content.open(digest))
                blobs = [(step.layer, digest, la.media_type, la.size)]
            images.register(step.config, diff_ids, parent=step.parent, layer_blobs=blobs)

        try:
            await asyncio.to_thread(register)
        except DockyardError as e:
            self.out(f"[Warning] cached step {step.key[:12]} from {src.name} not used: {e.message}\n")
            return False
        return True

    async def _export_caches(self, final: str) -> None:
        if not self.opts.cache_to:
            return
        chain: set[str] = set()
        img: str | None = final
        while img and img not in chain:
            chain.add(img)
            try:
                img = self.b.images.get(img).parent or None
            except NotFound:
                break
        from dockyard.registry.buildcache import parse_spec

        for c in self.opts.cache_to:
            try:
                spec = parse_spec(c)
            except DockyardError as e:
                raise BuildError(e.message) from None
            mode = spec.get("mode", "min")
            if mode not in ("min", "max"):
                raise BuildError(f"invalid cache mode {mode!r} (min or max)")
            name = spec.get("ref") or spec.get("dest", "")
            t0 = time.monotonic()
            steps = await asyncio.to_thread(self._cached_steps, chain if mode == "min" else None)
            try:
                digest = await self._dist().export_cache(spec, steps, self.opts.auth)
            except DockyardError as e:
                raise BuildError(f"failed to export cache to {name}: {e.message}") from None
            self.out(f"exporting cache to {name}: {len(steps)} steps, manifest {digest} "
                     f"({time.monotonic() - t0:.1f}s)\n")

    def _cached_steps(self, only: set[str] | None) -> list[CachedStep]:
        from dockyard.registry.buildcache import CachedStep

        out = []
        for key, (image_id, created_by) in self.steps.items():
            if only is not None and image_id not in only:
                continue
            img = self.b.images.get(image_id)
            parent = self.b.images.get(img.parent) if img.parent else None
            own = img.diff_ids[-1] if len(img.diff_ids) > len(parent.diff_ids if parent else []) else None
            with self.b.images.content.open(image_id) as f:
                config = f.read()
            out.append(CachedStep(key, image_id, img.parent, config, own, created_by))
        return out

    def _exists(self, image_id: str) -> bool:
        try:
            self.b.images.get(image_id)
            return True
        except NotFound:
            return False

    # ---------------------------------------------------------------- RUN
    def _run_env(self, state: _State) -> tuple[list[str], list[str]]:
        """(env for the container, the `|N k=v` build args shown in history and keyed in the cache)."""
        shown = []
        env_keys = {e.partition("=")[0] for e in state.config.get("Env") or []}
        for k, v in state.args.items():
            if k not in env_keys:
                shown.append(f"{k}={v}")
        proxies = [f"{k}={v}" for k, v in self.opts.buildargs.items() if k in PROXY_ARGS and v is not None
                   and k not in state.args]
        return list(state.config.get("Env") or []) + shown + proxies, shown

    async def _run(self, state: _State, inst: Instruction, env: dict[str, str]) -> None:
        assert self.df is not None
        esc = self.df.escape
        try:
            check_run_flags(inst)
            mounts = run_mounts(inst, lambda v: expand_word(v, env, esc, inst.line))
        except ParseError as e:
            raise BuildError(e.message) from None
        if inst.flags.get("security") == "insecure":
            raise BuildError("security.insecure is not allowed")
        wd = state.config.get("WorkingDir") or "/"
        for m in mounts:  # a relative target is below the working dir, as BuildKit's
            if m.target and not m.target.startswith("/"):
                m.target = posixpath.join(wd, m.target)
        shell = list(state.config.get("Shell") or DEFAULT_SHELL)
        ja = inst.json_args
        if ja is not None:
            cmd = ja
        elif inst.heredocs and inst.rest.strip().startswith("<<") and len(inst.heredocs) == 1:
            cmd = [*shell, inst.heredocs[0].content]
        elif inst.heredocs:
            body = inst.rest + "\n" + "".join(h.content + h.name + "\n" for h in inst.heredocs)
            cmd = [*shell, body]
        else:
            cmd = [*shell, inst.rest]
        run_env, shown = self._run_env(state)
        created_by = (f"|{len(shown)} {' '.join(shown)} " if shown else "") + " ".join(cmd)
        net = inst.flags.get("network")
        # Mounts and --network are part of the step (BuildKit's LLB holds them); without them the
        # key is the classic builder's, so older cache entries still hit.
        extra = ""
        if mounts or net:
            extra = json.dumps([net or "", *[await self._mount_key(m) for m in mounts]])
        key = cache_key(state.image_id, "RUN " + created_by + json.dumps(state.config, sort_keys=True) + extra)
        if await self._cached(state, key, {"inst": _display(inst), "args": shown, "extra": extra}):
            return
        if state.image_id is None:
            raise BuildError(f"The command '{' '.join(cmd)}' returned a non-zero code: 127")
        netmode = net if net and net != "default" else self.opts.networkmode or "default"
        async with contextlib.AsyncExitStack() as mstack:
            host_mounts, secret_env = await self._prepare_mounts(mstack, mounts, " ".join(cmd))
            new = await self._run_container(state, inst, cmd, run_env, host_mounts, netmode, created_by, mounts,
                                            secret_env)
        await self._put(key, new, state.image_id, created_by)
        state.image_id = new
        self.out(f" ---> {_short(new)}\n")

    async def _run_container(self, state: _State, inst: Instruction, cmd: list[str], run_env: list[str],
                             host_mounts: list[WireMount], netmode: str, created_by: str,
                             mounts: list[Mount], secret_env: list[str]) -> str:
        assert state.image_id is not None
        cs = self.b.containers
        if cs is None:
            raise BuildError("RUN needs the container service (this builder was made without one)")
        import msgspec

        from dockyard.wire.container import CreateRequest, HostConfig

        hc = msgspec.structs.replace(self.opts.run_host_config or HostConfig(), network_mode=netmode,
                                     mounts=host_mounts or None)
        spec = CreateRequest(image=state.image_id, cmd=cmd, entrypoint=[], env=run_env,
                             working_dir=state.config.get("WorkingDir") or "", user=state.config.get("User") or "",
                             labels={}, host_config=hc)
        created = await cs.create(spec, verify=False)  # its own step images are unsigned
        cid = created["Id"]
        self.out(f" ---> Running in {cid[:12]}\n")
        try:
            # secrets as variables: given to this start only, never in the stored container config
            cs.live(cid).transient_env = secret_env
            await cs.start(cid)
            # The step's output as it comes, through the one k8s-file reader; it drains what is left
            # and ends once the container's exit is recorded.
            pump = asyncio.get_running_loop().create_task(self._pump_log(cs.log_path(cid), cs.live(cid).exited))
            try:
                res = await cs.wait(cid)
            except BaseException:
                pump.cancel()
                raise
            await pump
            code = int(res.get("StatusCode", 1))
            if code != 0:
                raise BuildError(f"The command '{' '.join(cmd)}' returned a non-zero code: {code}", code)
            # The exited container's upper dir becomes the layer's snapshot as it is (renamed, not
            # extracted again from the layer tar); the container is removed without it.
            with trace.about(f"container:{cid}"):  # the step's commit is told with its container
                await asyncio.to_thread(overlay.unmount, cs.rootfs(cid))
                upper = await asyncio.to_thread(cs.snapshots.commit, cid)
                if mounts:
                    await asyncio.to_thread(self._drop_file_stubs, upper, state.image_id, mounts)
                new = await asyncio.to_thread(commit_layer, self.b.images, upper, state.image_id, state.config,
                                              {"created_by": created_by}, container_id=cid, adopt=True)
        finally:
            # off the stage's path: the next step need not wait for the container's files and row to go
            # (the build waits for every removal before it reports its result, and on failure)
            self.removals.append(asyncio.get_running_loop().create_task(cs.remove(cid, force=True)))
        self.out(f"Removing intermediate container {cid[:12]}\n")
        return str(new)

    # ---------------------------------------------------------------- RUN --mount
    async def _bind_source(self, m: Mount, stack: contextlib.AsyncExitStack | None) -> tuple[str, Path | None]:
        """(what the bind reads, for the cache key; its host path when `stack` is given)."""
        assert self.df is not None
        src = m.source or "/"
        if not m.from_:
            if stack is None:
                known = await asyncio.to_thread(self._known_hash, None, None, [src], [], "") \
                    if src not in ("/", ".", "") else None
                if known is not None:
                    return "context:" + known[0], None
            await self.ensure_context()
            try:
                path = resolve_in_root(self.ctx, src)
            except DockyardError as e:
                raise BuildError(e.message) from None
            if not path.exists():
                raise BuildError(f"failed to compute cache key: \"{posixpath.normpath('/' + src)}\" not found")
            if stack is None:
                return "context:" + await asyncio.to_thread(bctx.hash_sources, [path], ""), None
            return "context", path
        named = await self._named_dir(m.from_)
        if named is not None:
            path = resolve_in_root(named, src)
            if not path.exists():
                raise BuildError(f"failed to compute cache key: \"{posixpath.normpath('/' + src)}\" not found")
            if stack is None:
                return f"named:{m.from_}:" + await asyncio.to_thread(bctx.hash_sources, [path], ""), None
            return "named", path
        image = await self._from_image(m.from_)
        if stack is None:
            return f"image:{image}:{src}", None
        if image is None:
            raise BuildError(f"failed to compute cache key: \"{posixpath.normpath('/' + src)}\" not found")
        root = stack.enter_context(self._mounted(image))
        path = resolve_in_root(root, src)
        if not path.exists():
            raise BuildError(f"failed to compute cache key: \"{posixpath.normpath('/' + src)}\" not found")
        return "image", path

    async def _mount_key(self, m: Mount) -> str:
        """A mount as the step's cache key sees it: a bind by its content, never a secret's bytes."""
        if m.type == "bind":
            what, _ = await self._bind_source(m, None)
            return f"bind:{m.target}:{m.readonly}:{what}"
        return json.dumps([m.type, m.target, m.id, m.sharing, m.readonly, m.mode, m.uid, m.gid, m.size, m.env,
                           m.required])

    async def _prepare_mounts(self, stack: contextlib.AsyncExitStack, mounts: list[Mount],
                              cmd: str) -> tuple[list[WireMount], list[str]]:
        """HostConfig.Mounts for the RUN container, and the secrets given as variables."""
        from dockyard.wire.container import Mount as WireMount
        from dockyard.wire.container import TmpfsOptions

        out: list[WireMount] = []
        env: list[str] = []
        cm = self.b.cache_mounts
        for m in mounts:
            if m.type == "bind":
                _, path = await self._bind_source(m, stack)
                assert path is not None
                if not m.readonly:  # writes go to a throwaway copy
                    copy = self.work / f"rw-{secrets.token_hex(4)}"
                    if path.is_dir():
                        await asyncio.to_thread(shutil.copytree, path, copy, symlinks=True)
                    else:
                        await asyncio.to_thread(shutil.copy2, path, copy)
                    stack.callback(shutil.rmtree if path.is_dir() else Path.unlink, copy)
                    path = copy
                out.append(WireMount(type="bind", source=str(path), target=m.target, read_only=m.readonly))
            elif m.type == "cache":
                if m.sharing == "locked":
                    lock = cm.lock(m.id)
                    await lock.acquire()
                    stack.callback(lock.release)
                key, data, fresh = cm.acquire(m.id, m.sharing, m.mode if m.mode is not None else 0o755,
                                              m.uid or 0, m.gid or 0, m.target, cmd)
                stack.callback(cm.release, key)
                if fresh and m.from_:  # a new cache starts as `source` of the stage, image or named context
                    seed = Mount(type="bind", from_=m.from_, source=m.source or "/", target=m.target)
                    async with contextlib.AsyncExitStack() as seed_stack:
                        _, src_path = await self._bind_source(seed, seed_stack)
                        assert src_path is not None
                        if src_path.is_dir():
                            await asyncio.to_thread(shutil.copytree, src_path, data, symlinks=True,
                                                    dirs_exist_ok=True)
                out.append(WireMount(type="bind", source=str(data), target=m.target, read_only=m.readonly))
            elif m.type == "tmpfs":
                out.append(WireMount(type="tmpfs", target=m.target, tmpfs_options=TmpfsOptions(size_bytes=m.size or 0)))
            elif m.type == "secret":
                data_b = self.opts.secrets.get(m.id)
                if data_b is None:
                    if m.required:
                        raise BuildError(f"secret {m.id}: not found")
                    continue
                if m.env:
                    env.append(f"{m.env}={data_b.decode('utf-8', 'replace')}")
                if m.target:
                    p = await asyncio.to_thread(self.secret_files.write, data_b,
                                                m.mode if m.mode is not None else 0o400, m.uid or 0, m.gid or 0)
                    out.append(WireMount(type="bind", source=str(p), target=m.target, read_only=True))
            elif m.type == "ssh":
                source = await self._agent_source(m.id)
                if source is None:
                    if m.required:
                        raise BuildError(f"no SSH key \"{m.id}\" forwarded from the client")
                    continue
                agent = AgentSocket(self.work)
                stack.push_async_callback(agent.close)
                await agent.start(source, m.mode if m.mode is not None else 0o600, m.uid or 0, m.gid or 0)
                out.append(WireMount(type="bind", source=str(agent.path), target=m.target))
                if not any(e.startswith("SSH_AUTH_SOCK=") for e in env):
                    env.append(f"SSH_AUTH_SOCK={m.target}")  # as BuildKit: the first ssh mount's
        return out, env

    async def _agent_source(self, ssh_id: str) -> AgentSource | None:
        """Where the step's connections to agent `ssh_id` go: the client's session, else a socket path
        the header gave; None when the client forwarded no such agent."""
        if self.opts.session:
            if self.session is None:
                self.session = await self.b.sessions.get(self.opts.session)
                if self.session is None:
                    raise BuildError(f"no active session for {self.opts.session}: context deadline exceeded")
            s = self.session
            if ssh_id in s.ssh_ids:
                return lambda r, w: s.serve(ssh_id, r, w)
        path = self.opts.ssh.get(ssh_id)
        if path is None:
            return None
        try:
            is_sock = stat.S_ISSOCK(os.stat(path).st_mode)
        except OSError:
            is_sock = False
        if not is_sock:
            raise BuildError(f"ssh {ssh_id}: {path} is not an agent socket on the daemon's host")
        return local_agent(path)

    def _drop_file_stubs(self, upper: Path, image_id: str | None, mounts: list[Mount]) -> None:
        """The empty files made as mount points for file mounts (secrets, file binds, agent sockets) go, as
        BuildKit leaves none; directory mount points stay, as BuildKit's do. Walked by fd with no
        link followed: the step's container wrote this tree."""
        layers = self.b.images.layer_dirs(image_id) if image_id else []
        for m in mounts:
            if m.type not in ("secret", "bind", "ssh") or not m.target:
                continue
            parts = [p for p in posixpath.normpath(m.target).split("/") if p]
            if not parts or any(os.path.lexists(Path(ld, *parts)) for ld in layers):
                continue
            top = safetree.open_top(upper)
            try:
                dfd = safetree.open_dir(top, parts[:-1])
            except OSError:
                continue
            finally:
                os.close(top)
            try:
                st = os.stat(parts[-1], dir_fd=dfd, follow_symlinks=False)
                if stat.S_ISREG(st.st_mode) and st.st_size == 0:
                    os.unlink(parts[-1], dir_fd=dfd)
            except OSError:
                pass
            finally:
                os.close(dfd)

    async def _pump_log(self, path: Path, exited: asyncio.Event) -> None:
        """Forward the log's lines as `stream` messages until the container has exited."""
        async for batch in read_log_batches(path, follow=True, stop=exited):
            for stream, _ts, data in batch:
                text = data.decode("utf-8", "replace")
                # dockerd's classic builder shows a step's stderr in red (its NewStderrWriter)
                self.out(f"\x1b[91m{text}\x1b[0m" if stream == STDERR else text)

    # ---------------------------------------------------------------- COPY / ADD
    async def _copy(self, state: _State, inst: Instruction, env: dict[str, str]) -> None:
        assert self.df is not None
        esc = self.df.escape
        c = inst.cmd
        args = [expand_word(a, env, esc, inst.line) for a in fields(inst)]
        dest = args[-1] if args else ""
        srcs = args[:-1]
        heredoc_files: list[Path] = []
        if inst.heredocs:
            hd_dir = self.work / f"heredoc-{secrets.token_hex(4)}"
            hd_dir.mkdir()
            names = {h.name for h in inst.heredocs}
            for h in inst.heredocs:
                p = hd_dir / h.name
                p.write_text(expand_word('"' + h.content.replace('"', '\\"') + '"', env, esc, inst.line)
                             if h.expand else h.content)
                p.chmod(0o644)
                heredoc_files.append(p)
            srcs = [s for s in srcs if not any(s.lstrip("<-'\"").rstrip("'\"") == n for n in names)]
            dest = args[-1]
        frm = inst.flags.get("from")
        chown = inst.flags.get("chown")
        chmod = inst.flags.get("chmod")
        mode: bctx.Chmod | None = None
        if chmod:
            try:
                mode = bctx.parse_chmod(expand_word(chmod, env, esc, inst.line))
            except DockyardError:
                raise BuildError(f"invalid chmod parameter: {chmod}") from None
        excludes = [expand_word(x, env, esc, inst.line) for x in inst.multi.get("exclude", [])]
        try:
            exclude = PatternMatcher.of(excludes).matches if excludes else None
        except ValueError as e:
            raise BuildError(f"Dockerfile parse error line {inst.line}: {e}") from None
        parents = _flag_on(inst, "parents")
        link = _flag_on(inst, "link")  # the layer is made from the sources alone, reusable on any base
        # ADD of a URL: downloaded (mode 0600, never unpacked), its digest checked against --checksum
        # ADD of a git URL (`#ref:subdir`): keyed by the commit the ref names, cloned only on a miss
        gits = [u for u in srcs if c == "add" and gitref.is_git_url(u)]
        keep_git = _flag_on(inst, "keep-git-dir")
        srcs = [u for u in srcs if u not in gits]
        git_refs: list[tuple[gitref.GitRef, str]] = []
        try:
            for u in gits:
                ref = gitref.parse(u)
                git_refs.append((ref, await asyncio.to_thread(gitref.resolve, ref)))
        except gitref.GitError as e:
            raise BuildError(f"ADD failed: {e}") from None
        urls = [u for u in srcs if c == "add" and u.startswith(("http://", "https://"))]
        checksum = inst.flags.get("checksum")
        if checksum is not None and (not urls or len(srcs) != 1):
            raise BuildError("checksum can't be specified for non-HTTP(S) sources")
        url_files = [await self._download(u, checksum) for u in urls]
        srcs = [u for u in srcs if u not in urls]
        src_image: str | None = None
        named_dir: Path | None = None
        if frm:
            frm_x = expand_word(frm, env, esc, inst.line)
            named_dir = await self._named_dir(frm_x)
            if named_dir is None:
                src_image = await self._from_image(frm_x)
        extra = f"{chown}|{chmod}|{src_image}"
        if named_dir is not None:
            extra += f"|named:{frm}"
        if link:  # a --link layer differs from the same copy made on the base
            extra += "|link"
        if excludes or parents:  # only then: older keys stay the same
            extra += json.dumps([excludes, parents and srcs])
        if git_refs:
            extra += "|git:" + json.dumps([[r.remote, sha, r.subdir, keep_git] for r, sha in git_refs])
        if url_files:
            extra += "|url:" + json.dumps([str(await asyncio.to_thread(bctx.hash_sources, [f])) for f in url_files])
        rels: dict[Path, str] = {}  # --parents: each source's path below the context (or its `/./` pivot)
        with contextlib.ExitStack() as stack:
            src_root: Path | None = None
            sources: list[Path] = []

            async def on_disk() -> list[Path]:
                """The sources as paths: the stage's image mounted, or the extracted context."""
                nonlocal src_root
                if named_dir is not None:
                    src_root = named_dir
                elif frm:
                    src_root = stack.enter_context(self._mounted(src_image)) if src_image else None
                else:
                    await self.ensure_context()
                    src_root = self.ctx
                try:
                    if src_root is None:
                        raise BuildError(f"{c.upper()} failed: stage has no files")
                    found: list[Path] = []
                    for s in srcs:
                        got = await asyncio.to_thread(bctx.context_sources, src_root, s)
                        if parents:
                            pivot = s.split("/./")[0] if "/./" in s else ""
                            base = os.path.realpath(resolve_in_root(src_root, pivot)) if pivot else \
                                os.path.realpath(src_root)
                            for p in got:
                                rels[p] = os.path.relpath(os.path.realpath(p.parent), base) + "/" + p.name
                        found += got
                    return found
                except DockyardError as e:
                    raise BuildError(e.message.replace("COPY failed", f"{c.upper()} failed")) from None

            # The cache key first, from what is known without touching the disk: the context
            # index, or an earlier hash of the same paths in the same (immutable) image.
            heredoc_files += url_files
            known = await asyncio.to_thread(self._known_hash, src_image, frm, srcs, heredoc_files, extra)
            if known is None:
                sources = await on_disk() + heredoc_files
                chash = await asyncio.to_thread(bctx.hash_sources, sources, extra)
                kind = "dir" if len(sources) == 1 and sources[0].is_dir() else \
                    "file" if len(sources) == 1 else "multi"
                if frm and src_image:
                    if len(self.b.from_memo) > 4096:
                        self.b.from_memo.clear()
                    self.b.from_memo[(src_image, tuple(srcs), extra)] = (chash, kind)
            else:
                chash, kind = known
            created_by = f"/bin/sh -c #(nop) {c.upper()} {kind}:{chash} in {dest} "
            key = cache_key(state.image_id, created_by + json.dumps(state.config, sort_keys=True), chash)
            inputs: dict[str, Any] = {"inst": _display(inst), "hash": chash, "from": src_image or frm or "",
                                      "extra": extra}
            self._files_for[key] = lambda: self._source_digests(frm, srcs)  # walked on a miss only
            if await self._cached(state, key, inputs):
                return
            owner: tuple[int, int] | None = None
            link_key = ""
            if link:
                # BuildKit's --link: the layer depends on the sources, the destination and the owner
                # (names resolved in the base), never on the base's files: a new base reuses it.
                owner = (0, 0)
                if chown:
                    with self._mounted(state.image_id) as base_root:
                        owner = await asyncio.to_thread(bctx.parse_chown, base_root, chown)
                wd0 = state.config.get("WorkingDir") or "/"
                link_key = cache_key(None, f"link {created_by} wd={wd0} owner={owner[0]}:{owner[1]}", chash)
                if await self._reuse_link(state, link_key, created_by, key):
                    return
            if known is not None:
                sources = await on_disk() + heredoc_files
            for ref, _sha in git_refs:
                try:
                    tree, _commit = await asyncio.to_thread(gitref.checkout, ref, self.work / f"git-{secrets.token_hex(4)}",
                                                            keep_git)
                except gitref.GitError as e:
                    raise BuildError(f"ADD failed: {e}") from None
                sources.append(tree)
            step = f"step-{secrets.token_hex(4)}"
            with self._mounted(None if link else state.image_id, writable=step) as root:
                def do() -> None:
                    uid, gid = owner if owner is not None else bctx.parse_chown(root, chown) if chown else (0, 0)
                    wd = state.config.get("WorkingDir") or "/"
                    local = [p for p in sources if p not in url_files]
                    # the context's files go into the layer by hard link where they can: their bytes
                    # were written once, by the context's extraction (see bctx.Linker)
                    linker = bctx.Linker(root, self.snapshots.upper(step), self.ctx) \
                        if src_root == self.ctx and local and driver() == "overlay" else None
                    try:
                        if parents:
                            for p in local:
                                rel = posixpath.normpath(rels.get(p, p.name))
                                into = rel if p.is_dir() and not p.is_symlink() else posixpath.dirname(rel)
                                bctx.copy_into([p], root, posixpath.join(dest, into) + "/", wd, uid=uid, gid=gid,
                                               mode=mode, extract_tars=(c == "add"), exclude=exclude, linker=linker)
                        elif local:
                            bctx.copy_into(local, root, dest, wd, uid=uid, gid=gid, mode=mode,
                                           extract_tars=(c == "add"), exclude=exclude, linker=linker)
                    finally:
                        if linker is not None:
                            linker.close()
                    if url_files:
                        bctx.copy_into(url_files, root, dest if len(sources) == 1 else dest.rstrip("/") + "/", wd,
                                       uid=uid, gid=gid, mode=mode)
                try:
                    await asyncio.to_thread(do)
                except DockyardError as e:
                    raise BuildError(e.message) from None
                except OSError as e:
                    raise BuildError(f"{c.upper()} failed: {e}") from None
            upper = await asyncio.to_thread(self.snapshots.commit, step)
            new = await asyncio.to_thread(commit_layer, self.b.images, upper, state.image_id, state.config,
                                          {"created_by": created_by}, adopt=True)
            await asyncio.to_thread(self.snapshots.remove, step)
            if link_key:
                self.b.cache.put_link(link_key, self.b.images.get(new).diff_ids[-1])
        await self._put(key, new, state.image_id, created_by)
        state.image_id = new
        self.out(f" ---> {_short(new)}\n")

    async def _reuse_link(self, state: _State, link_key: str, created_by: str, key: str) -> bool:
        """A COPY --link layer made before (on any base) put on this one: extracted from its blob on
        the new chain, not copied again."""
        if not self._cache_allowed():
            return False
        diff_id = self.b.cache.get_link(link_key)
        if diff_id is None:
            return False
        try:
            new = await asyncio.to_thread(commit_layer, self.b.images, None, state.image_id, state.config,
                                          {"created_by": created_by}, layer=diff_id)
        except NotFound:  # its blob went with the images that held it
            return False
        await self._put(key, new, state.image_id, created_by, fresh=False)
        state.image_id = new
        self.out(f" ---> Using linked layer {diff_id.removeprefix('sha256:')[:12]} (made on another base)\n")
        self.out(f" ---> {_short(new)}\n")
        return True

    async def _from_image(self, name: str) -> str | None:
        """`--from=NAME`'s image: a named docker-image:// context, a stage, or an image reference."""
        assert self.df is not None
        named = self.opts.contexts.get(name)
        if named is not None and named.startswith("docker-image://"):
            return await self._base_image(named.removeprefix("docker-image://"), None)
        d = self.df.stage_index(name)
        return await self.stage_results[d] if d is not None else await self._base_image(name, None)

    async def _named_dir(self, name: str) -> Path | None:
        """A `--build-context NAME=...`'s files, or None for an image context or no context of that name:
        a directory's (extracted with the context), a git URL's checkout, or an http(s) URL's file."""
        kind = self.opts.contexts.get(name)
        if kind is None or kind.startswith("docker-image://"):
            return None
        if kind == "dir":
            await self.ensure_context()
            d = self.work / "contexts" / name
            if not d.is_dir():
                d.mkdir(parents=True)  # an empty directory sends no files
            return d
        async with self._fetch_lock:  # fetched once, at the first step that uses it
            d = self.work / "remote-contexts" / name
            if not d.is_dir():
                await self._fetch_context(kind, d)
            return d

    async def _fetch_context(self, url: str, dest: Path) -> None:
        """As BuildKit's named contexts: a git URL (`#ref:subdir`) is its checkout without .git; any other
        http(s) URL is one file named `context` (mode 0600), never unpacked."""
        tmp = dest.with_name(dest.name + ".tmp")
        tmp.mkdir(parents=True)
        if gitref.is_git_url(url):
            def clone() -> None:
                try:
                    ref = gitref.parse(url)
                    gitref.resolve(ref)  # a missing ref in the words ADD's use: "failed to resolve REF in URL"
                    tree, _commit = gitref.checkout(ref, tmp / "repo")
                except gitref.GitError as e:
                    raise BuildError(f"failed to load build context {dest.name}: {e}") from None
                tree.rename(dest)
                shutil.rmtree(tmp, ignore_errors=True)

            await asyncio.to_thread(clone)
            return
        f = await self._download(url, None, name="context")
        f.rename(tmp / "context")
        shutil.rmtree(f.parent, ignore_errors=True)
        tmp.rename(dest)

    async def _download(self, url: str, checksum: str | None, name: str = "") -> Path:
        """ADD's URL source as a file of its own (mode 0600, as dockerd's), checked against --checksum;
        named as the URL's path ends, unless `name` is given (a named context's, which fails in BuildKit's
        words rather than the classic builder's)."""
        import hashlib
        from urllib.parse import urlsplit

        import httpx

        name = name or posixpath.basename(urlsplit(url).path)
        if name in ("", ".", "/"):
            raise BuildError(f"cannot determine filename from url: {url}")
        algo = want = ""
        if checksum is not None:
            algo, _, want = checksum.partition(":")
            if algo not in ("sha256", "sha384", "sha512") or not want:
                raise BuildError(f"invalid checksum digest format: {checksum}")
        d = self.work / f"url-{secrets.token_hex(4)}"
        d.mkdir()
        path = d / name

        def fetch() -> str:
            h = hashlib.new(algo or "sha256")
            with httpx.stream("GET", url, follow_redirects=True, timeout=60) as r:
                if r.status_code >= 400 and name:
                    raise BuildError(f"failed to load cache key: invalid response status {r.status_code}")
                if r.status_code >= 400:
                    raise BuildError(f"failed to GET {url} with status {r.status_code} {r.reason_phrase}: "
                                     f"{r.read()[:200].decode(errors='replace')}")
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with open(fd, "wb") as f:
                    for chunk in r.iter_bytes(1 << 20):
                        h.update(chunk)
                        f.write(chunk)
                if name:  # BuildKit's http source: the mtime is Last-Modified, else the epoch
                    from email.utils import parsedate_to_datetime

                    try:
                        mtime = parsedate_to_datetime(r.headers.get("last-modified", "")).timestamp()
                    except (TypeError, ValueError):
                        mtime = 0.0
                    os.utime(path, (mtime, mtime))
            return h.hexdigest()

        try:
            got = await asyncio.to_thread(fetch)
        except httpx.HTTPError as e:
            raise BuildError(f"failed to GET {url}: {e}") from None
        if checksum is not None and got != want:
            raise BuildError(f"digest mismatch {checksum}: {algo}:{got}")
        return path

    def _known_hash(self, src_image: str | None, frm: Any, srcs: list[str], heredocs: list[Path],
                    extra: str) -> tuple[str, str] | None:
        """(hash, kind) of the COPY sources without extracting or mounting anything, if possible."""
        if frm:
            return self.b.from_memo.get((src_image or "", tuple(srcs), extra)) if src_image else None
        idx = self.index
        if idx is None or not idx.usable:
            return None
        names: list[str] = []
        for s in srcs:
            found = idx.sources(s)
            if found is None:
                return None
            names += found
        n = len(names) + len(heredocs)
        kind = "dir" if n == 1 and names and idx.is_dir(names[0]) else "file" if n == 1 else "multi"
        return hash_mixed(idx, names, heredocs, extra), kind

    @contextlib.contextmanager
    def _mounted(self, image_id: str | None, writable: str | None = None) -> Iterator[Path]:
        """The image's layers mounted: a read-only view, or the writable snapshot `writable`
        (left for the caller to commit)."""
        layers = self.b.images.layer_dirs(image_id) if image_id else []
        key = writable or f"view-{secrets.token_hex(4)}"
        mounts = self.snapshots.prepare(key, layers) if writable else self.snapshots.view(key, layers)
        try:
            with mounted(mounts, self.work / key / "merged") as root:
                yield root
        finally:
            if not writable:
                self.snapshots.remove(key)


def _diff_inputs(old: dict[str, Any], new: dict[str, Any]) -> str:
    """What differs between two records of a step, in a few words ("" if nothing they record)."""
    if old.get("inst") != new.get("inst"):
        return f"the instruction changed (the cache has: {old.get('inst')})"
    if old.get("args") != new.get("args"):
        was = dict(a.partition("=")[::2] for a in old.get("args") or [])
        now = dict(a.partition("=")[::2] for a in new.get("args") or [])
        diffs = [f"{k}={now.get(k, '')!r} (was {was[k]!r})" if k in was and k in now else
                 f"{k} {'added' if k in now else 'removed'}" for k in sorted(set(was) | set(now))
                 if was.get(k) != now.get(k)]
        return "build arg " + ", ".join(diffs)
    if old.get("from") != new.get("from"):
        return f"the --from source changed: {new.get('from')} (the cache has {old.get('from')})"
    of, nf = old.get("files"), new.get("files")
    if isinstance(of, dict) and isinstance(nf, dict) and of != nf:
        changed = sorted(p for p in nf if p in of and of[p] != nf[p] and not nf[p].startswith("dir"))
        added = sorted(p for p in nf if p not in of)
        removed = sorted(p for p in of if p not in nf)
        parts = []
        for label, names in (("changed", changed), ("added", added), ("removed", removed)):
            if names:
                more = f" and {len(names) - 3} more" if len(names) > 3 else ""
                parts.append(f"{label}: {', '.join(names[:3])}{more}")
        if not parts:
            parts = ["a directory's mode changed"]
        return "files of the context " + "; ".join(parts)
    if old.get("hash") != new.get("hash"):
        return "its sources changed (content, mode or owner)"
    if old.get("extra") != new.get("extra"):
        return "its flags or mounts changed (--chown, --chmod, --mount, --network, ...)"
    return ""


async def _git_context(url: str, work: Path) -> AsyncIterator[bytes]:
    """A git URL's checkout (`#ref:subdir`, no .git) as a context tar, as dockerd's remote git contexts
    (its .dockerignore decides only whether the Dockerfile and itself stay, as for dockerd)."""
    import tarfile

    def make() -> Path:
        try:
            tree, _commit = gitref.checkout(gitref.parse(url), work / "remote")
        except gitref.GitError as e:
            raise BuildError(f"unable to prepare context: {e}", status=500) from None
        tar = work / "remote.tar"
        with tarfile.open(tar, "w", format=tarfile.PAX_FORMAT) as tf:
            for dirpath, dirnames, filenames in os.walk(tree):
                dirnames.sort()
                for name in [*dirnames, *sorted(filenames)]:
                    full = os.path.join(dirpath, name)
                    ti = tf.gettarinfo(full, arcname=os.path.relpath(full, tree))
                    ti.uid = ti.gid = 0
                    ti.uname = ti.gname = ""
                    if ti.isreg():
                        with open(full, "rb") as f:
                            tf.addfile(ti, f)
                    else:
                        tf.addfile(ti)
        shutil.rmtree(work / "remote", ignore_errors=True)
        return tar

    tar = await asyncio.to_thread(make)
    with open(tar, "rb") as f:
        while chunk := await asyncio.to_thread(f.read, 1 << 20):
            yield chunk


def _flag_on(inst: Instruction, name: str) -> bool:
    """A boolean flag: bare (`--link`) is true, else `=true|false`, in BuildKit's words otherwise."""
    if name not in inst.flags:
        return False
    v = inst.flags[name]
    if v is None or v.lower() == "true":
        return True
    if v.lower() == "false":
        return False
    raise BuildError(f"Dockerfile parse error line {inst.line}: expecting boolean value for flag {name}, not: {v}")


def _display(inst: Instruction) -> str:
    return _display_text(inst.original)


def _display_text(original: str) -> str:
    word, _, rest = original.partition(" ")
    return f"{word.upper()} {rest.strip()}".strip()


def _arch() -> str:
    from dockyard.services.images import host_arch

    return host_arch()




