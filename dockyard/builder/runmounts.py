"""What `RUN --mount` needs on the host: cache mounts that outlive builds (in the data root, never in
a layer), the build's secrets on a private tmpfs, and copies for `rw` binds whose changes are thrown
away. The builder turns them into the RUN container's HostConfig.Mounts."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dockyard.store import overlay
from dockyard.store.snapshotter import Mount as FsMount


@dataclass
class CacheMounts:
    """Cache mounts by id, under `<data-root>/build/cache-mounts/<sha256(id)>/data` with a `meta.json`
    beside (id, the target and command that made it, when last used: `system df` shows them)."""

    root: Path
    in_use: dict[str, int] = field(default_factory=dict)
    locks: dict[str, asyncio.Lock] = field(default_factory=dict)

    def _dir(self, cid: str) -> Path:
        return self.root / hashlib.sha256(cid.encode()).hexdigest()[:32]

    def acquire(self, cid: str, sharing: str, mode: int, uid: int, gid: int, target: str,
                cmd: str) -> tuple[str, Path, bool]:
        """(key, the cache dir for `cid`, whether it was just made); `private` while another step uses
        it: a fresh one of its own."""
        key = cid
        if sharing == "private" and self.in_use.get(cid):
            n = 1
            while self.in_use.get(f"{cid}#{n}"):
                n += 1
            key = f"{cid}#{n}"
        self.in_use[key] = self.in_use.get(key, 0) + 1
        d = self._dir(key)
        data = d / "data"
        fresh = not data.is_dir()
        if fresh:
            d.mkdir(parents=True, exist_ok=True, mode=0o700)
            data.mkdir(exist_ok=True)
            os.chown(data, uid, gid)
            os.chmod(data, mode)
            meta = {"id": cid, "target": target, "cmd": cmd, "created": time.time()}
        else:
            meta = self._meta(d)
        meta["last_used"] = time.time()
        (d / "meta.json").write_text(json.dumps(meta))
        return key, data, fresh

    def release(self, key: str) -> None:
        self.in_use[key] -= 1
        if not self.in_use[key]:
            del self.in_use[key]

    def lock(self, cid: str) -> asyncio.Lock:
        return self.locks.setdefault(cid, asyncio.Lock())

    @staticmethod
    def _meta(d: Path) -> dict[str, Any]:
        try:
            m = json.loads((d / "meta.json").read_text())
            return m if isinstance(m, dict) else {}
        except (OSError, ValueError):
            return {}

    def entries(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        if not self.root.is_dir():
            return out
        for d in sorted(self.root.iterdir()):
            meta = self._meta(d)
            out.append({"dir": d, "key": d.name, "size": _du(d / "data"), "in_use": self._busy(d), **meta})
        return out

    def _busy(self, d: Path) -> bool:
        return any(self._dir(k) == d for k in self.in_use)

    def prune(self) -> tuple[list[str], int]:
        """Remove every cache mount no build is using: (their keys, bytes freed)."""
        keys, freed = [], 0
        for e in self.entries():
            if e["in_use"]:
                continue
            keys.append(e["key"])
            freed += e["size"]
            shutil.rmtree(e["dir"], ignore_errors=True)
        return keys, freed


def _du(path: Path) -> int:
    total = 0
    for dirpath, dirs, files in os.walk(path):
        for name in dirs + files:
            with contextlib.suppress(OSError):
                st = os.lstat(os.path.join(dirpath, name))
                total += st.st_blocks * 512
    return total


class SecretFiles:
    """The build's secrets as files on a tmpfs of their own (mode 0700, root's): the bytes never
    touch the disk, and go with the build's work dir."""

    def __init__(self, where: Path) -> None:
        self.dir = where
        self.mounted = False
        self.n = 0

    def write(self, data: bytes, mode: int, uid: int, gid: int) -> Path:
        if not self.mounted:
            self.dir.mkdir(mode=0o700, exist_ok=True)
            FsMount("tmpfs", "tmpfs", ("mode=0700", "size=64m")).mount(self.dir)
            self.mounted = True
        self.n += 1
        p = self.dir / f"s{self.n}"
        fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, data)
            os.fchown(fd, uid, gid)
            os.fchmod(fd, mode)
        finally:
            os.close(fd)
        return p

    def close(self) -> None:
        if self.mounted:
            overlay.unmount(self.dir)
            self.mounted = False
