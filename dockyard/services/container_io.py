"""Container I/O and inspection: logs, attach, export, diff, cp, top, stats, update, commit, prune."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

from dockyard.errors import Conflict, DockyardError, InvalidParameter, NotSupported
from dockyard.runtime.logs import frame
from dockyard.services.attach import AttachHub
from dockyard.services.containers import Container, ContainerService
from dockyard.services.streams import AsyncByteReader, stream_from_thread
from dockyard.store import overlay
from dockyard.store.snapshotter import mounted
from dockyard.util.timefmt import parse_time_arg

log = logging.getLogger("dockyard.container_io")

HijackHandler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


class ContainerIO:
    def __init__(self, containers: ContainerService, images: Any, volumes: Any = None) -> None:
        self.cs = containers
        self.images = images
        self.volumes = volumes
        self.runtime = containers.runtime
        self.hubs: dict[str, AttachHub] = {}  # a running container's shared attach connection

    # ---------------------------------------------------------------- rootfs access
    @contextlib.contextmanager
    def mounted_rootfs(self, c: Container) -> Iterator[Path]:
        """The container's merged rootfs: the live mount, or a temporary one for a stopped container."""
        rootfs = self.cs.rootfs(c.id)
        if c.running and overlay.is_mounted(rootfs):
            yield rootfs
            return
        tmp = self.cs.run_dir(c.id) / f"view-{os.getpid()}-{time.monotonic_ns()}"
        with mounted(self.cs.snapshots.mounts(c.id, self.cs.lower_dirs(c)), tmp) as root:
            yield root

    # ---------------------------------------------------------------- logs
    def logs(self, cid: str, *, stdout: bool, stderr: bool, follow: bool, since: str | None,
             until: str | None, tail: str | None, timestamps: bool, raw: bool) -> AsyncIterator[bytes]:
        """The log as a stream; bad arguments and an unreadable log raise here, before any byte."""
        c = self.cs.get(cid)
        if self.cs.log_driver(c) == "none":
            raise NotSupported("configured logging driver does not support reading")
        try:
            since_ts = parse_time_arg(since) if since and since != "0" else None
            until_ts = parse_time_arg(until) if until and until != "0" else None
        except ValueError as e:
            raise InvalidParameter(f"invalid time value: {e}") from e
        ntail: int | None = None
        if tail and tail != "all":
            try:
                ntail = int(tail)
            except ValueError:
                raise InvalidParameter(f"invalid tail value: {tail}") from None
        return self._log_stream(c, stdout=stdout, stderr=stderr, since=since_ts or 0, until=until_ts or 0,
                                tail=-1 if ntail is None else ntail, timestamps=timestamps, follow=follow and c.running,
                                raw=raw)

    async def _log_stream(self, c: Container, *, stdout: bool, stderr: bool, since: float, until: float, tail: int,
                          timestamps: bool, follow: bool, raw: bool) -> AsyncIterator[bytes]:
        from dockyard.runtime import logs as rtlogs

        async for batch in rtlogs.read_log_batches(
            self.cs.log_path(c.id), stdout=stdout, stderr=stderr, since=since, until=until, tail=tail,
            timestamps=timestamps, follow=follow, stop=self.cs.live(c.id).exited,
        ):
            yield b"".join(data for _, _, data in batch) if raw else b"".join(frame(s, d) for s, _, d in batch)

    # ---------------------------------------------------------------- attach
    async def attach_handler(self, cid: str, *, stdin: bool, stdout: bool, stderr: bool, stream: bool,
                             logs: bool, detach_keys: str | None) -> HijackHandler:
        from dockyard.services.attach import make_attach_handler

        return await make_attach_handler(self, cid, stdin=stdin, stdout=stdout, stderr=stderr, stream=stream,
                                         logs=logs, detach_keys=detach_keys)

    async def resize(self, cid: str, h: int, w: int) -> None:
        c = self.cs.get(cid)
        if not c.running:
            raise Conflict(f"Container {c.id} is not running")
        if not c.config.get("Tty"):
            return  # Docker ignores resize without a TTY on containers
        self.runtime.resize(c.id, h, w)

    # ---------------------------------------------------------------- export / diff
    async def export(self, cid: str) -> AsyncIterator[bytes]:
        c = self.cs.get(cid)

        def produce(out: Any) -> None:
            from dockyard.store import layers

            # By fd, never by path: a running container may swap links in while we read.
            with self.mounted_rootfs(c) as root:
                layers.write_tree(root, out, layer=False)

        async for chunk in stream_from_thread(produce):
            yield chunk

    async def changes(self, cid: str) -> list[dict[str, Any]]:
        from dockyard.store import layers

        c = self.cs.get(cid)
        upper = self.cs.snapshots.upper(c.id)
        return await asyncio.to_thread(layers.changes, upper, self.cs.lower_dirs(c))

    # ---------------------------------------------------------------- cp (archive)
    async def archive_stat(self, cid: str, path: str) -> dict[str, Any]:
        from dockyard.store import archive_path

        c = self.cs.get(cid)

        def stat() -> dict[str, Any]:
            with self.mounted_rootfs(c) as root:
                return archive_path.stat_path(root, path, c.mounts, ref=cid)

        return await asyncio.to_thread(stat)

    async def get_archive(self, cid: str, path: str) -> AsyncIterator[bytes]:
        from dockyard.store import archive_path

        c = self.cs.get(cid)

        def produce(out: Any) -> None:
            with self.mounted_rootfs(c) as root:
                for chunk in archive_path.get_archive(root, path, c.mounts, ref=cid):
                    out.write(chunk)

        async for chunk in stream_from_thread(produce):
            yield chunk

    async def put_archive(self, cid: str, path: str, body: AsyncIterator[bytes], *,
                          no_overwrite_dir_non_dir: bool, copy_uid_gid: bool) -> None:
        from dockyard.store import archive_path

        c = self.cs.get(cid)
        reader: Any = AsyncByteReader(body, asyncio.get_running_loop())

        def put() -> None:
            with self.mounted_rootfs(c) as root:
                chown = archive_path.lookup_user(root, c.config.get("User") or "0", c.mounts) if copy_uid_gid else None
                archive_path.put_archive(root, path, reader, c.mounts, no_overwrite_dir_non_dir=no_overwrite_dir_non_dir,
                                         copy_uid_gid=copy_uid_gid, chown=chown,
                                         readonly_rootfs=bool(c.host_config.get("ReadonlyRootfs")), ref=cid)

        await asyncio.to_thread(put)
        self.cs.emit(c, "extract-to-dir")

    # ---------------------------------------------------------------- top / stats / update
    async def top(self, cid: str, ps_args: str) -> dict[str, Any]:
        c = self.cs.get(cid)
        if c.state == "restarting":
            raise Conflict(f"Container {c.id} is restarting, wait until the container is running")
        if not c.running:
            raise Conflict(f"Container {c.id} is not running")
        from dockyard.runtime import cgroups

        pids = set(await asyncio.to_thread(cgroups.pids, f"/dockyard/{c.id}"))
        args = ["ps"] + ps_args.split()
        proc = await asyncio.to_thread(subprocess.run, args, capture_output=True, text=True)
        if proc.returncode != 0:
            raise InvalidParameter(f"ps: {proc.stderr.strip()}")
        lines = proc.stdout.splitlines()
        titles = lines[0].split()
        try:
            pid_col = titles.index("PID")
        except ValueError:
            raise InvalidParameter("Couldn't find PID field in ps output") from None
        procs = []
        for line in lines[1:]:
            fields = line.split(None, len(titles) - 1)
            if len(fields) > pid_col and fields[pid_col].isdigit() and int(fields[pid_col]) in pids:
                procs.append(fields)
        return {"Titles": titles, "Processes": procs}

    async def stats(self, cid: str, stream: bool, one_shot: bool = False) -> AsyncIterator[dict[str, Any]]:
        from dockyard.services.stats import container_stats

        c = self.cs.get(cid)
        prev: dict[str, Any] | None = None
        # dockerd's stream=false without one-shot primes precpu_stats with a sample taken a second before.
        prime = not stream and not one_shot and c.has_process
        while True:
            c = self.cs.get(c.id)
            cur = await asyncio.to_thread(container_stats, c, prev)
            if prime:
                prime = False
            else:
                yield cur
                if not stream:
                    return
            prev = cur
            await asyncio.sleep(1.0)

    async def update(self, cid: str, body: dict[str, Any]) -> dict[str, Any]:
        from dockyard.services import container_config as cc

        c = self.cs.get(cid)
        hc = dict(c.host_config)
        resource_keys = ("Memory", "MemorySwap", "MemoryReservation", "NanoCpus", "CpuShares", "CpuPeriod",
                         "CpuQuota", "CpusetCpus", "CpusetMems", "PidsLimit", "BlkioWeight", "KernelMemory")
        for key in resource_keys:
            if key in body and body[key] is not None:
                hc[key] = body[key]
        if body.get("RestartPolicy"):
            hc["RestartPolicy"] = body["RestartPolicy"]
        hc = cc.validate_host_config(hc)
        if c.has_process:
            from dockyard.services.containers import resources_of

            await self.runtime.update(c.id, resources_of(hc))
        self.cs.save(c.id, host_config=hc)
        self.cs.emit(c, "update")
        return {"Warnings": []}

    # ---------------------------------------------------------------- commit / prune
    async def commit(self, ref: str, *, repo: str, tag: str, comment: str, author: str, pause: bool,
                     changes: list[str], config: dict[str, Any]) -> dict[str, Any]:
        c = self.cs.get(ref)
        paused_here = False
        if pause and c.state == "running":
            try:
                await self.runtime.pause(c.id)
                paused_here = True
            except DockyardError:  # it exited a moment ago (its exit not processed yet): nothing to pause
                pass
        try:
            image = await asyncio.to_thread(self._commit_sync, c, repo, tag, comment, author, changes, config)
        finally:
            if paused_here:
                await self.runtime.resume(c.id)
        self.cs.emit(c, "commit")
        return {"Id": image}

    def _commit_sync(self, c: Container, repo: str, tag: str, comment: str, author: str, changes: list[str],
                     override: dict[str, Any]) -> str:
        # One implementation for `docker commit` and the builder's steps.
        from dockyard.builder.commit import commit_layer
        from dockyard.oci import reference

        parent = self.images.get(c.image_id)
        base = {k: v for k, v in (c.config or {}).items() if v is not None}
        cfg = {**(parent.config.get("config") or {}), **base, **(override or {})}
        cmd = (c.config or {}).get("Cmd") or []
        created_by = " ".join(cmd) if isinstance(cmd, list) else str(cmd)
        tags = [f"{repo}:{tag}" if tag else repo] if repo else []
        image = commit_layer(self.images, self.cs.snapshots.upper(c.id), c.image_id, cfg,
                             {"created_by": created_by}, tags, author=author, comment=comment,
                             changes=changes, container_id=c.id)
        for t in tags:
            self.images.events.emit("image", "tag", image, {"name": reference.parse(t).familiar})
        return image

    async def prune(self, filters: dict[str, list[str]]) -> dict[str, Any]:
        until = filters.get("until")
        until_ts = parse_time_arg(until[0]) if until else None
        deleted, reclaimed = [], 0
        for c in self.cs.all():
            if c.running or c.state == "removing":
                continue
            if until_ts is not None and c.created >= until_ts:
                continue
            if not self.cs.matches(c, {k: v for k, v in filters.items() if k in ("label",)}):
                continue
            if filters.get("label!") and self.cs.matches(c, {"label": filters["label!"]}):
                continue  # Docker: `label!=k[=v]` keeps containers that have the label
            size = self.cs.snapshots.usage(c.id)
            try:
                await self.cs.remove(c.id)
            except Exception as e:  # noqa: BLE001
                log.warning("prune %s: %s", c.id[:12], e)
                continue
            deleted.append(c.id)
            reclaimed += size
        return {"ContainersDeleted": deleted or None, "SpaceReclaimed": reclaimed}

