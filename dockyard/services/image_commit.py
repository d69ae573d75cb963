"""Turn a writable layer (a committed snapshot's dir) plus a config into a registered image.

Used by the builder for every step (metadata-only steps pass `upper=None`: the image gets a
history entry with `empty_layer` and no new diff) and usable by `docker commit`.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

from dockyard import trace
from dockyard.dockerfile.dispatch import apply_changes
from dockyard.services.images import Image, ImageService, host_arch
from dockyard.store.layers import write_diff
from dockyard.store.snapshots import chain_ids
from dockyard.util.timefmt import rfc3339

MT_LAYER_TAR = "application/vnd.oci.image.layer.v1.tar"


def base_config(parent: Image | None, platform: tuple[str, str] | None = None) -> dict[str, Any]:
    """The image config document a step starts from: the parent's, or an empty one for scratch."""
    if parent is not None:
        copy: dict[str, Any] = json.loads(json.dumps(parent.config))
        return copy
    os_, arch = platform or ("linux", host_arch())
    return {"architecture": arch, "os": os_, "config": {}, "rootfs": {"type": "layers", "diff_ids": []},
            "history": []}


def _content_size(root: Path) -> int:
    """Bytes of regular file content (what a snapshot records as its size)."""
    total = 0
    for dirpath, _dirs, files in os.walk(root):
        for f in files:
            st = os.lstat(os.path.join(dirpath, f))
            if stat.S_ISREG(st.st_mode):
                total += st.st_size
    return total


class _Count:
    """A sink that keeps only the number of bytes written to it."""

    size = 0

    def write(self, b: bytes) -> int:
        self.size += len(b)
        return len(b)


def _store_diff(images: ImageService, upper: Path) -> tuple[str, str, str, int]:
    """The tar of `upper` written into the content store: (diff_id, its digest, media type, size)."""
    with trace.step("snapshot", f"tar the changes in {upper} into a layer blob",
                    "a layer is an OCI tar of what changed (deletions as whiteouts); its sha256 is the "
                    "diff_id the image config lists") as s, \
            images.content.ingest(hashed_by_writer=True) as w:
        diff_id = write_diff(upper, w)  # type: ignore[arg-type]  # it needs only write()
        s.result = f"{w.commit(diff_id)} ({w.size} bytes)"
    return diff_id, diff_id, MT_LAYER_TAR, w.size


def commit_layer(images: ImageService, upper: Path | None, parent_image_id: str | None, config: dict[str, Any],
                 history: dict[str, Any], tags: list[str] | tuple[str, ...] = (), *, author: str = "",
                 comment: str = "", changes: list[str] | None = None, container_id: str = "",
                 platform: tuple[str, str] | None = None, adopt: bool = False, layer: str | None = None) -> str:
    """Register an image = parent + (the diff of `upper`, if given); returns its id ("sha256:...").

    `config` is the new container config (the image's `config` field); `changes` (`--change`
    lines) are applied on top. With `adopt`, `upper` (no longer mounted, on the data root's
    filesystem) becomes the layer's snapshot by rename rather than by extracting the tar again.
    `layer`: instead of `upper`, a layer already in the content store (its diff_id) put on this parent
    (COPY --link's layer reused on another base: extracted again on the new chain, not made again). `history` gets `created`, and `empty_layer` when `upper` is None.
    Blocking: call from a worker thread.
    """
    parent = images.get(parent_image_id) if parent_image_id else None
    doc = base_config(parent, platform)
    parent_diffs: list[str] = list(parent.diff_ids) if parent is not None else []
    # no GC of the parent's layers between our snapshot and the row that references it; other commits
    # (twenty build stages') go on meanwhile
    with images.gc_lock.shared():
        diff_ids = parent_diffs
        blobs: list[tuple[str, str, str, int]] = []
        derived: list[tuple[str, str, int]] = []
        if layer is not None:
            diff_ids = [*parent_diffs, layer]
            chains = chain_ids(diff_ids)
            digest, mt, size = images.layer_blob(layer)
            images.snapshots.ensure(chains[-1], chains[-2] if len(chains) > 1 else None,
                                    lambda: images.content.open(digest))
            blobs = [(layer, digest, mt, size)]
        elif upper is not None and adopt:
            # The step's upper dir becomes the snapshot as it is; its layer tar is only hashed here (for
            # the diff_id), not stored: the content store makes it from the snapshot when something first
            # reads it (push, save, cache export), checked against this digest (ImageService.derive_blob).
            with trace.step("snapshot", f"hash the tar of the changes in {upper} (not stored)",
                            "a layer is an OCI tar of what changed (deletions as whiteouts); its sha256 is the "
                            "diff_id the image config lists; the tar itself is made when first needed") as s:
                sink = _Count()
                diff_id = write_diff(upper, sink)  # type: ignore[arg-type]  # it needs only write()
                s.result = f"{diff_id} ({sink.size} bytes)"
            diff_ids = [*parent_diffs, diff_id]
            chains = chain_ids(diff_ids)
            parent_chain = chains[-2] if len(chains) > 1 else None
            adopted = images.snapshots.adopt(chains[-1], parent_chain, diff_id, upper, _content_size(upper))
            if adopted or (not images.has_layer_blob(diff_id) and not upper.is_dir()):
                # (the latter: a concurrent commit of the same layer on the same parent adopted its own upper)
                blobs = [(diff_id, diff_id, MT_LAYER_TAR, sink.size)]
                derived = [(diff_id, chains[-1], sink.size)]
            elif not images.has_layer_blob(diff_id):
                # The chain was there already, extracted from another tar: store this one's now.
                blobs = [_store_diff(images, upper)]
        elif upper is not None:
            diff_id, *_ = blob = _store_diff(images, upper)
            diff_ids = [*parent_diffs, diff_id]
            chains = chain_ids(diff_ids)
            images.snapshots.ensure(chains[-1], chains[-2] if len(chains) > 1 else None,
                                    lambda: images.content.open(diff_id))
            blobs = [blob]
        now = rfc3339()
        cfg = dict(config)
        if changes:
            cfg = apply_changes(cfg, changes)
        doc["config"] = {k: v for k, v in cfg.items() if v is not None}
        # dockerd's record of the container the layer came from (shown as ContainerConfig to API < 1.45):
        # its config, with the step as Cmd. docker-compose 1.x reads its Volumes on a recreate.
        doc["container_config"] = {**doc["config"], "Cmd": ["/bin/sh", "-c", history["created_by"]]} \
            if history.get("created_by") else dict(doc["config"])
        doc["created"] = now
        if container_id:
            doc["container"] = container_id
        if author:
            doc["author"] = author
        if comment:
            doc["comment"] = comment
        hist = {"created": now, **history}
        if author:
            hist.setdefault("author", author)
        if comment:
            hist.setdefault("comment", comment)
        if upper is None and layer is None:
            hist["empty_layer"] = True
        doc["history"] = [*(doc.get("history") or []), hist]
        doc["rootfs"] = {"type": "layers", "diff_ids": diff_ids}
        body = json.dumps(doc, separators=(",", ":")).encode()
        img = images.register(body, diff_ids, list(tags), parent=parent.id if parent else "", layer_blobs=blobs,
                              derived_blobs=derived)
    return str(img.id)
