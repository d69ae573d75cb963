"""Resolve a Docker `--user` value against the container's own /etc/passwd and /etc/group.

Files are read by fd inside the rootfs (store/safetree.py: symlinks followed as if the rootfs were /),
so neither a hostile image nor a running container can make us read host files.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from dockyard.errors import InvalidParameter
from dockyard.store import safetree
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
    # By fd (safetree): a running container swapping /etc for a link cannot make us read the host's.
    try:
        top = safetree.open_top(root)
    except OSError:
        return []
    try:
        text = safetree.read_file(top, path, 16 << 20).decode("utf-8", "replace")
    except OSError:
        return []
    finally:
        os.close(top)
    return [line.split(":") for line in text.splitlines() if line.strip() and not line.startswith("#")]


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
