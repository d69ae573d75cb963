"""Paths inside a root filesystem, resolved the way the container will see them."""

from __future__ import annotations

import os
from pathlib import Path

from dockyard.errors import InvalidParameter


def resolve_in_root(root: str | os.PathLike[str], path: str, follow_last: bool = True) -> Path:
    """`path` (absolute, as the container or image sees it) as a host path under `root`.

    Symlinks are followed as if `root` were `/`, so neither `..` nor an absolute link climbs out.
    With follow_last=False a final symlink is returned itself (COPY onto a link replaces it).
    """
    root = Path(root)
    parts = [p for p in path.split("/") if p not in ("", ".")]
    cur: list[str] = []
    hops = 0
    while parts:
        name = parts.pop(0)
        if name == "..":
            if cur:
                cur.pop()
            continue
        host = root.joinpath(*cur, name)
        if os.path.islink(host) and (parts or follow_last):
            hops += 1
            if hops > 40:
                raise InvalidParameter(f"too many levels of symbolic links: {path}")
            target = os.readlink(host)
            if target.startswith("/"):
                cur = []
            parts = [p for p in target.split("/") if p not in ("", ".")] + parts
            continue
        cur.append(name)
    return root.joinpath(*cur)
