"""`prune` for every object kind, and `system prune` over them, written once: ask, call the prune
endpoint, print what went (docker's headings) and the space reclaimed."""

from __future__ import annotations

import sys

from dockyard.cli.common import Ctx
from dockyard.cli.formatting import human_size

TYPE_CHECKING = False  # typing's, without importing typing (~3 ms of every command's start-up)
if TYPE_CHECKING:  # the client's import is paid by the command that prunes, not by every start
    from collections.abc import Callable
    from typing import Any

    from dockyard.client import APIClient

Filters = dict[str, list[str]] | None


def confirm(message: str, force: bool) -> bool:
    if force:
        return True
    sys.stdout.write(f"{message}\nAre you sure you want to continue? [y/N] ")
    sys.stdout.flush()
    answer = sys.stdin.readline().strip().lower()
    return answer in ("y", "yes")


class Kind:
    """One kind of object a prune removes (a plain class: dataclasses costs every command's start-up)."""

    def __init__(self, call: Callable[[APIClient, Filters], dict[str, Any]], deleted_key: str, heading: str,
                 counts_space: bool = True) -> None:
        self.call = call
        self.deleted_key = deleted_key  # the answer's list of what went
        self.heading = heading  # docker's line above that list
        self.counts_space = counts_space  # the answer has SpaceReclaimed (networks take none)

    def lines(self, result: dict[str, Any]) -> list[str]:
        out = []
        for item in result.get(self.deleted_key) or []:
            # images answer {"Untagged": ref} / {"Deleted": id}: docker prints them as `untagged: ref`
            out += [f"{k.lower()}: {v}" for k, v in item.items()] if isinstance(item, dict) else [str(item)]
        return out


CONTAINERS = Kind(lambda c, f: c.prune_containers(f), "ContainersDeleted", "Deleted Containers:")
IMAGES = Kind(lambda c, f: c.prune_images(f), "ImagesDeleted", "Deleted Images:")
NETWORKS = Kind(lambda c, f: c.prune_networks(f), "NetworksDeleted", "Deleted Networks:", counts_space=False)
VOLUMES = Kind(lambda c, f: c.prune_volumes(f), "VolumesDeleted", "Deleted Volumes:")


def build_cache(all_: bool) -> Kind:
    return Kind(lambda c, f: c.post("/build/prune", {"all": all_ or None}), "CachesDeleted",
                "Deleted build cache objects:")


def prune(ctx: Ctx, warning: str, force: bool, steps: list[tuple[Kind, Filters]]) -> int:
    """Ask (unless forced), prune each kind in order, print each list then one total."""
    if not confirm(warning, force):
        return 0
    total = 0
    for kind, filters in steps:
        result = kind.call(ctx.client, filters)
        if kind.counts_space:
            total += int(result.get("SpaceReclaimed") or 0)
        lines = kind.lines(result)
        if lines:
            print(kind.heading)
            print("\n".join(lines))
            print()
    if len(steps) > 1 or steps[0][0].counts_space:
        print(f"Total reclaimed space: {human_size(total)}")
    return 0
