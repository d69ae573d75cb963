"""Cache mounts' bookkeeping: one dir per id, `private` gets its own while the id is in use, prune
leaves a cache a build is using."""

from __future__ import annotations

import os
from pathlib import Path

from dockyard.builder.runmounts import CacheMounts


def test_shared_private_and_prune(tmp_path: Path) -> None:
    cm = CacheMounts(tmp_path / "cm")
    k1, d1, fresh = cm.acquire("pip", "shared", 0o700, 7, 8, "/root/.cache", "pip install")
    assert fresh and oct(os.stat(d1).st_mode & 0o7777) == "0o700" and (os.stat(d1).st_uid, os.stat(d1).st_gid) == (7, 8)
    k2, d2, fresh2 = cm.acquire("pip", "shared", 0o755, 0, 0, "/root/.cache", "x")
    assert d2 == d1 and not fresh2
    k3, d3, _ = cm.acquire("pip", "private", 0o755, 0, 0, "/root/.cache", "x")
    assert d3 != d1  # in use: a private step gets a cache of its own
    (d1 / "wheel").write_bytes(b"x" * 10000)
    for k in (k2, k3):
        cm.release(k)
    assert cm.prune()[0] == [d3.parent.name]  # the first is still held
    cm.release(k1)
    entries = {e["id"]: e for e in cm.entries()}
    assert entries["pip"]["size"] >= 10000 and entries["pip"]["target"] == "/root/.cache"
    keys, freed = cm.prune()
    assert keys == [d1.parent.name] and freed >= 10000 and not any((tmp_path / "cm").iterdir())
