"""`docker commit`: a container's writable layer and config as a new image (image_commit.py
does the layer; the builder's steps use the same)."""

from __future__ import annotations

import asyncio
from typing import Any

from dockyard import trace
from dockyard.oci import reference
from dockyard.services.containers import Container, ContainerService
from dockyard.services.image_commit import commit_layer
from dockyard.services.images import ImageService


class ContainerCommitter:
    def __init__(self, containers: ContainerService, images: ImageService) -> None:
        self.cs = containers
        self.images = images
        self.runtime = containers.runtime

    async def commit(self, ref: str, *, repo: str, tag: str, comment: str, author: str, pause: bool,
                     changes: list[str], config: dict[str, Any]) -> dict[str, Any]:
        c = self.cs.get(ref)
        with trace.about(f"container:{c.id}"):
            return await self._commit(c, repo, tag, comment, author, pause, changes, config)

    async def _commit(self, c: Container, repo: str, tag: str, comment: str, author: str, pause: bool,
                      changes: list[str], config: dict[str, Any]) -> dict[str, Any]:
        # Recorded, as dockerd's commit pauses through containerPause: a crash meanwhile leaves a
        # record that recover() undoes, not a frozen container that says it runs.
        paused_here = pause and await self.cs.pause_for(c.id, "commit")
        try:
            image = await asyncio.to_thread(self._commit_sync, c, repo, tag, comment, author, changes, config)
        finally:
            if paused_here:
                await self.cs.unpause_for(c.id, "commit")
        self.cs.emit(c, "commit")
        return {"Id": image}

    def _commit_sync(self, c: Container, repo: str, tag: str, comment: str, author: str, changes: list[str],
                     override: dict[str, Any]) -> str:
        # One implementation for `docker commit` and the builder's steps.
        parent = self.images.get(c.image_id)
        base = {k: v for k, v in c.config.doc().items() if v is not None}
        cfg = {**(parent.config.get("config") or {}), **base, **(override or {})}
        cmd = c.config.cmd or []
        created_by = " ".join(cmd) if isinstance(cmd, list) else str(cmd)
        tags = [f"{repo}:{tag}" if tag else repo] if repo else []
        image = commit_layer(self.images, self.cs.snapshots.upper(c.id), c.image_id, cfg,
                             {"created_by": created_by}, tags, author=author, comment=comment,
                             changes=changes, container_id=c.id)
        for t in tags:
            self.images.events.emit("image", "tag", image, {"name": reference.parse(t).familiar})
        return image
