"""A container's filesystem as clients see it: export, diff, and `cp` (archive stat, get, put).

A stopped container's rootfs is mounted for the call from its snapshot (store/snapshotter.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

from dockyard.services.containers import Container, ContainerService
from dockyard.services.streams import AsyncByteReader, stream_from_thread
from dockyard.store import overlay
from dockyard.store.snapshotter import mounted

_NETWORK_FILES = ("/etc/hostname", "/etc/hosts", "/etc/resolv.conf")


class ContainerFiles:
    def __init__(self, containers: ContainerService) -> None:
        self.cs = containers

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
    def _cp_mounts(self, c: Container) -> list[dict[str, Any]]:
        """The mounts `cp` sees, as dockerd's: the container's volumes and binds, and the
        /etc/hostname, /etc/hosts and /etc/resolv.conf the runtime binds over the image's (taken
        from the bundle the container last ran with; before its first start there are none)."""
        mounts = list(c.mounts)
        dests = {m.get("Destination") for m in mounts}
        try:
            spec = json.loads((self.cs.run_dir(c.id) / "config.json").read_text())
        except (OSError, ValueError):
            return mounts
        for m in spec.get("mounts") or []:
            dest = m.get("destination")
            if dest in _NETWORK_FILES and dest not in dests and os.path.isfile(m.get("source") or ""):
                mounts.append({"Type": "bind", "Source": m["source"], "Destination": dest, "RW": True})
        return mounts

    async def archive_stat(self, cid: str, path: str) -> dict[str, Any]:
        from dockyard.store import archive_path

        c = self.cs.get(cid)

        def stat() -> dict[str, Any]:
            with self.mounted_rootfs(c) as root:
                return archive_path.stat_path(root, path, self._cp_mounts(c), ref=cid)

        return await asyncio.to_thread(stat)

    async def get_archive(self, cid: str, path: str) -> AsyncIterator[bytes]:
        from dockyard.store import archive_path

        c = self.cs.get(cid)

        def produce(out: Any) -> None:
            with self.mounted_rootfs(c) as root:
                for chunk in archive_path.get_archive(root, path, self._cp_mounts(c), ref=cid):
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
                mounts = self._cp_mounts(c)
                chown = archive_path.lookup_user(root, c.config.user or "0", mounts) if copy_uid_gid else None
                archive_path.put_archive(root, path, reader, mounts, no_overwrite_dir_non_dir=no_overwrite_dir_non_dir,
                                         copy_uid_gid=copy_uid_gid, chown=chown,
                                         readonly_rootfs=c.host_config.readonly_rootfs, ref=cid)

        await asyncio.to_thread(put)
        self.cs.emit(c, "extract-to-dir")
