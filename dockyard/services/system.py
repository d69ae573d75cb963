"""Engine-wide facts: what /info counts and what `system df` adds up, over the other services."""

from __future__ import annotations

import builtins
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from dockyard.services.containers import ContainerService
from dockyard.services.events import EventBus
from dockyard.services.images import ImageService
from dockyard.services.volumes import VolumeService


def _no_swarm() -> dict[str, Any]:
    return {"NodeID": "", "NodeAddr": "", "LocalNodeState": "inactive", "ControlAvailable": False, "Error": "",
            "RemoteManagers": None}


class SystemService:
    def __init__(self, containers: ContainerService, images: ImageService, volumes: VolumeService | None,
                 events: EventBus, *, data_root: Path, debug: bool = False,
                 registry_mirrors: builtins.list[str] | None = None,
                 build_cache: Callable[[], builtins.list[dict[str, Any]]] | None = None) -> None:
        self.containers = containers
        self.images = images
        self.volumes = volumes
        self.events = events
        self.data_root = data_root
        self.debug = debug
        self.registry_mirrors = list(registry_mirrors or [])
        self.build_cache = build_cache  # the builder's disk usage (the builder sits above services)
        self.rootless = False
        self.swarm_info: Callable[[], dict[str, Any]] = _no_swarm  # /info's Swarm block (wiring sets it)
        self.plugins_info: Callable[[], dict[str, Any]] = _builtin_plugins  # /info's Plugins (wiring sets it)
        self.storage_driver = "overlay2"  # rootless: "fuse-overlayfs" where the kernel's overlay is refused

    @property
    def limits_refused(self) -> str | None:
        return self.containers.limits_refused

    @property
    def limit_controllers(self) -> frozenset[str] | None:
        """The cgroup controllers limits may use; None: all (rootful)."""
        return self.containers.limit_controllers if self.containers.limits_refused is not None else None

    @property
    def runtimes(self) -> dict[str, str]:
        return self.containers.runtimes

    @property
    def default_runtime(self) -> str:
        return self.containers.default_runtime

    def subscribe(self, since: float | None = None, until: float | None = None) -> AsyncIterator[dict[str, Any]]:
        return self.events.subscribe(since, until)

    def counts(self) -> dict[str, int]:
        cs = self.containers.all()
        try:
            nimages = len(self.images.all())  # dockerd counts intermediate images too
        except Exception:  # noqa: BLE001 - /info must answer even with a broken image row
            nimages = 0
        return {"containers": len(cs), "running": sum(1 for c in cs if c.state == "running"),
                "paused": sum(1 for c in cs if c.state == "paused"), "images": nimages}

    def disk_usage(self) -> dict[str, Any]:
        """GET /system/df in Docker's shape: layers counted once (LayersSize), per-image SharedSize and
        container counts, container SizeRw/SizeRootFs, volume UsageData, the build cache."""
        containers = self.containers.list(all_=True, size=True)
        per_image: dict[str, int] = {}
        for c in containers:
            per_image[c["ImageID"]] = per_image.get(c["ImageID"], 0) + 1
        every = self.images.all()
        layer_size: dict[str, int] = {}
        users: dict[str, int] = {}  # chain id -> how many images hold it
        for img in every:
            for chain, size in zip(img.chain_ids, img.layer_sizes, strict=False):
                layer_size[chain] = int(size)  # the layer's own (diff) size
                users[chain] = users.get(chain, 0) + 1
        by_id = {img.id: img for img in every}
        images = self.images.list()
        for row in images:
            held = by_id.get(row["Id"])
            row["Containers"] = per_image.get(row["Id"], 0)
            row["SharedSize"] = sum(layer_size[ch] for ch in (held.chain_ids if held else []) if users.get(ch, 0) > 1)
        for c in containers:
            base = by_id.get(c["ImageID"])
            c["SizeRootFs"] = c.get("SizeRw", 0) + (int(base.size) if base else 0)
        return {
            "LayersSize": sum(layer_size.values()),
            "Images": images,
            "Containers": containers,
            "Volumes": self.volumes.usage() if self.volumes is not None else [],
            "BuildCache": self.build_cache() if self.build_cache is not None else [],
        }


def _builtin_plugins() -> dict[str, Any]:
    return {"Volume": ["local"], "Network": ["bridge", "host", "null", "overlay"], "Authorization": None,
            "Log": ["json-file", "local"]}
