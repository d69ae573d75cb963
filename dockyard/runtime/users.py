"""Resolve a Docker `--user` value against the container's own /etc/passwd and /etc/group.

Files are opened inside the rootfs with every path component resolved under the rootfs
(symlinks are followed as if the rootfs were /), so a hostile image can't make us read host files.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from dockyard.errors import InvalidParameter
from dockyard.util.paths import resolve_in_root

__all__ = ["ExecUser", "resolve_in_root", "resolve_user"]


@dataclass
class ExecUser:
    uid: int
    gid: int
    additional_gids: list[int] = field(default_factory=list)
    home: str = "/"
    name: str | None = None


def _read_db(root: str | os.PathLike[str], path: str) -> list[list[str]]:
    host = resolve_in_root(root, path)
    try:
        # O_NOFOLLOW: the last component was resolved above; refuse a race-swapped symlink.
        fd = os.open(host, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return []
    with os.fdopen(fd, "r", encoding="utf-8", errors="replace") as f:
        return [line.rstrip("\n").split(":") for line in f if line.strip() and not line.startswith("#")]


def resolve_user(root: str | os.PathLike[str], spec: str | None) -> ExecUser:
    """Docker's semantics: `""` → root; `name|uid[:group|gid]`; numeric ids need no passwd entry;
    supplementary groups are the /etc/group entries listing the user's name."""
    spec = spec or ""
    user_part, _, group_part = spec.partition(":")
    user_part = user_part or "0"
    passwd = _read_db(root, "/etc/passwd")
    groups = _read_db(root, "/etc/group")

    entry = None
    for row in passwd:
        if len(row) >= 7 and (row[0] == user_part or (user_part.isdigit() and row[2] == user_part)):
            entry = row
            break
    if entry is not None:
        uid, gid, home, name = int(entry[2]), int(entry[3]), entry[5] or "/", entry[0]
    elif user_part.isdigit():
        uid, gid, home, name = int(user_part), 0, "/", None
    else:
        raise InvalidParameter(f"unable to find user {user_part}: no matching entries in passwd file")

    if group_part:
        if group_part.isdigit():
            gid = int(group_part)
        else:
            for row in groups:
                if len(row) >= 3 and row[0] == group_part:
                    gid = int(row[2])
                    break
            else:
                raise InvalidParameter(f"unable to find group {group_part}: no matching entries in group file")

    extra: list[int] = []
    if name is not None and not group_part:
        for row in groups:
            if len(row) >= 4 and name in row[3].split(",") and row[2].isdigit():
                g = int(row[2])
                if g != gid and g not in extra:
                    extra.append(g)
    return ExecUser(uid=uid, gid=gid, additional_gids=extra, home=home, name=name)
