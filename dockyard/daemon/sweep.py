"""Startup sweep: the disk after a crash holds bytes no metadata names; remove them last.

Writers put bytes first and metadata second, so after a crash the only inconsistency is
garbage (half-written blobs, half-extracted layers, bundles of containers whose row is
gone, rootfs mounts of containers that no longer run). Runs after recovery, before the API
serves, so nothing is in flight.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from dockyard.services.containers import trash_dir
from dockyard.store import overlay

if TYPE_CHECKING:
    from dockyard.daemon.wiring import Engine

log = logging.getLogger("dockyard.daemon")


async def startup_sweep(engine: Engine) -> dict[str, int]:
    """Returns counts of what was removed (for the log and tests)."""
    out = {"bundles": 0, "container_dirs": 0, "trash": 0, "mounts": 0, "networks": 0, "netns": 0, "build_tmp": 0}
    try:
        await asyncio.to_thread(engine.images.sweep)
    except Exception as e:  # noqa: BLE001 - a failed sweep must not keep the daemon down
        log.warning("image store sweep: %s", e)
    containers = engine.containers
    rows = {c.id: c for c in containers.all()}
    for sub, key in ((containers.exec_root / "containers", "bundles"),
                     (containers.data_root / "containers", "container_dirs")):
        for d in _subdirs(sub):
            if d.name in rows:
                continue
            if key == "bundles":
                try:
                    await engine.runtime.delete(d.name, force=True)
                except Exception as e:  # noqa: BLE001
                    log.debug("runtime delete of orphan %s: %s", d.name[:12], e)
            if not await asyncio.to_thread(_unmount_all_under, d):
                log.warning("orphan %s still has mounts; left in place", d)
                continue
            await asyncio.to_thread(shutil.rmtree, d, True)
            out[key] += 1
    for root in (containers.data_root, containers.exec_root):  # dirs of removed containers a crash left
        for d in _subdirs(trash_dir(root)):
            if await asyncio.to_thread(_unmount_all_under, d):
                await asyncio.to_thread(shutil.rmtree, d, True)
                out["trash"] += 1
    if engine.networks is not None:
        # The network a removed container's release (in the background, after the answer) had not ended.
        out["networks"] = await engine.networks.release_orphans(rows)
        # A netns of a container that no longer exists (a removal or a start a crash cut short).
        from dockyard.network import netlink

        for f in _entries(engine.networks.exec_root / "netns"):
            if f.name not in rows:
                await asyncio.to_thread(netlink.delete_netns, f)
                out["netns"] += 1
    for c in rows.values():
        if c.state in ("running", "paused"):
            continue
        rootfs = containers.rootfs(c.id)
        if await asyncio.to_thread(overlay.is_mounted, rootfs):
            await asyncio.to_thread(overlay.unmount, rootfs)
            out["mounts"] += 1
    if engine.builder is not None:
        for d in engine.builder.root.glob("tmp-*"):
            await asyncio.to_thread(shutil.rmtree, d, True)
            out["build_tmp"] += 1
    if any(out.values()):
        log.info("startup sweep removed %s", out)
    return out


def _entries(p: Path) -> list[Path]:
    try:
        return list(p.iterdir())
    except FileNotFoundError:
        return []


def _subdirs(p: Path) -> list[Path]:
    return [d for d in _entries(p) if d.is_dir() and not d.is_symlink()]


def _unmount_all_under(d: Path) -> bool:
    """Unmount every mount at or below d (deepest first); True when none is left."""
    prefix = str(d)
    for m in sorted(_mounts_under(prefix), key=len, reverse=True):
        try:
            overlay.unmount(Path(m))
        except OSError as e:
            log.warning("umount %s: %s", m, e)
    return not _mounts_under(prefix)


def _mounts_under(prefix: str) -> list[str]:
    with open("/proc/self/mountinfo") as f:
        pts = [line.split()[4] for line in f]
    return [m for m in pts if m == prefix or m.startswith(prefix + "/")]
