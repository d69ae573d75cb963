"""Per-layer snapshot dirs: `root/<chainid-hex[:24]>/fs`, one per layer chain id.

Names are short because overlay's lowerdir mount option must fit in a page. A layer is extracted
into a temp dir and renamed into place, so a snapshot dir that exists is complete. Its bytes are not
synced first: a synced marker `unsynced-<token>` (the boot id) goes in with it and the background flush
syncs it later (store/unsynced.py); at a start on another boot a snapshot still marked is dropped
(`check_unsynced`) and the image service extracts it again from its blob. There are no refcounts: the
image service removes a snapshot when no image references its chain id.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from dockyard import trace
from dockyard.errors import InvalidParameter
from dockyard.oci.digest import hex_of, validate
from dockyard.store import unsynced
from dockyard.store.layers import LayerInfo, apply_layer
from dockyard.util.fs import mark_topdir

Opener = Callable[[], IO[bytes]]


def chain_id(parent_chain_id: str | None, diff_id: str) -> str:
    """OCI ChainID: the first layer's is its diff_id, then sha256(parent + " " + diff_id)."""
    validate(diff_id)
    if not parent_chain_id:
        return diff_id
    return "sha256:" + hashlib.sha256(f"{validate(parent_chain_id)} {diff_id}".encode()).hexdigest()


def chain_ids(diff_ids: list[str]) -> list[str]:
    out: list[str] = []
    for d in diff_ids:
        out.append(chain_id(out[-1] if out else None, d))
    return out


@dataclass(frozen=True)
class Snapshot:
    chain_id: str
    parent: str | None
    diff_id: str
    size: int
    path: Path  # the `fs` dir


class Snapshotter:
    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        mark_topdir(self.root)  # each layer dir in a fresh block group (see mark_topdir)
        # meta.json as read (a snapshot's never changes while it exists): registering an image reads every
        # layer's, so a build's last stage with 20 steps would read and parse ~200 of them
        self._meta: dict[str, Snapshot] = {}

    def _dir(self, chain: str) -> Path:
        return self.root / hex_of(chain)[:24]

    def path(self, chain: str) -> Path:
        return self._dir(chain) / "fs"

    def exists(self, chain: str) -> bool:
        return (self._dir(chain) / "meta.json").is_file()

    def get(self, chain: str) -> Snapshot | None:
        known = self._meta.get(chain)
        if known is not None:
            if os.path.isfile(os.path.join(known.path.parent, "meta.json")):  # still there (one stat)
                return known
            self._meta.pop(chain, None)
        try:
            meta = json.loads((self._dir(chain) / "meta.json").read_text())
        except FileNotFoundError:
            return None
        snap = Snapshot(meta["chain_id"], meta["parent"], meta["diff_id"], meta["size"], self.path(chain))
        if snap.chain_id == chain:
            self._meta[chain] = snap
        return snap

    def apply(self, parent_chain_id: str | None, opener: Opener) -> Snapshot:
        """Extract a layer on top of `parent_chain_id`; the chain id comes from the content."""
        return self._apply(parent_chain_id, opener)[0]

    def _apply(self, parent_chain_id: str | None, opener: Opener, expect: str | None = None,
               before_commit: Callable[[], object] | None = None) -> tuple[Snapshot, bool]:
        created = False
        tmp = self.root / f"tmp-{secrets.token_hex(8)}"
        step = trace.step("snapshot", f"extract layer{' ' + expect if expect else ''} into {tmp}/fs, "
                          f"then rename to {self.root}/<chain>", "a layer is unpacked once into its own directory; "
                          "every image and container with this layer chain shares it as an overlay lowerdir")
        step.__enter__()
        try:
            # In the try: on a full disk `tmp` can be made and `fs` in it not (each takes a block), and tmp stayed.
            (tmp / "fs").mkdir(parents=True)
            with opener() as f:
                info: LayerInfo = apply_layer(f, tmp / "fs")
            chain = chain_id(parent_chain_id, info.diff_id)
            if expect is not None and chain != expect:
                raise InvalidParameter(f"layer content does not match: expected chain {expect}, got {chain}")
            if before_commit is not None:
                before_commit()  # raises to drop the extracted dir (e.g. the blob digest was wrong)
            meta = {"chain_id": chain, "parent": parent_chain_id, "diff_id": info.diff_id, "size": info.size}
            if self.exists(chain):
                shutil.rmtree(tmp)
            else:
                created = self._publish(tmp, chain, meta)
        except BaseException as e:
            step.__exit__(type(e), e, None)
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        snap = self.get(chain)
        assert snap is not None
        step.result = (f"{'new snapshot' if created else 'already there, extracted copy dropped'}: {snap.path} "
                       f"(diff {info.diff_id}, {info.size} bytes)")
        step.__exit__(None, None, None)
        return snap, created

    def _publish(self, tmp: Path, chain: str, meta: Mapping[str, object]) -> bool:
        """Rename a finished `tmp` (with `fs`) into place as `chain`, marked unsynced; False (and tmp
        removed) when a concurrent apply of the same layer won."""
        (tmp / "meta.json").write_text(json.dumps(meta, indent=1, sort_keys=True))
        marker = f"unsynced-{secrets.token_hex(4)}"
        unsynced.mark(tmp / marker)  # synced with tmp's entries (meta.json, fs) before the rename
        shutil.rmtree(self._dir(chain), ignore_errors=True)  # a partial leftover
        try:
            os.rename(tmp, self._dir(chain))
        except OSError:
            if not self.exists(chain):  # else a concurrent apply of the same layer won
                raise
            shutil.rmtree(tmp)
            return False
        unsynced.defer(self._dir(chain) / marker)
        return True

    def check_unsynced(self) -> list[str]:
        """At daemon start: drop the snapshots another boot published and never synced (a power loss
        may have torn their files); returns their dir names (a chain id's first 24 hex digits). This
        boot's wait for the background flush."""
        dropped = []
        for d in self.root.iterdir():
            if d.name.startswith("tmp-"):
                continue
            for marker in d.glob("unsynced-*"):
                if unsynced.this_boot(marker):
                    unsynced.defer(marker)
                    continue
                self._meta.clear()
                tmp = self.root / f"tmp-rm-{secrets.token_hex(8)}"
                os.rename(d, tmp)
                shutil.rmtree(tmp, ignore_errors=True)
                dropped.append(d.name)
                break
        return dropped

    def ensure(self, chain: str, parent_chain_id: str | None, opener: Opener,
               before_commit: Callable[[], object] | None = None) -> bool:
        """Make sure the snapshot for `chain` exists, extracting the layer from `opener()` if
        missing; the extracted content must produce exactly `chain` (verifies the diff_id) and
        `before_commit()` must return, else nothing is left behind.

        True when this call extracted, so verified, the content; False when the snapshot was there
        already and `opener` was not read: then nothing ties its bytes to `chain`, and a caller
        must not record them as that layer's blob (a loaded archive could otherwise claim another
        image's layer)."""
        validate(chain)
        if self.exists(chain):
            return False
        return self._apply(parent_chain_id, opener, chain, before_commit)[0].chain_id == chain

    def adopt(self, chain: str, parent_chain_id: str | None, diff_id: str, fs_dir: Path, size: int) -> bool:
        """Take a finished layer dir (an overlay upper whose tar produced `diff_id`) as the snapshot
        for `chain` by renaming it, instead of extracting the tar again. `fs_dir` must be on this
        filesystem. True when it became the snapshot; False when the snapshot existed already (then
        `fs_dir` is left alone, or, if a concurrent apply of the same chain won the rename, removed)."""
        validate(chain)
        if chain_id(parent_chain_id, diff_id) != chain:
            raise InvalidParameter(f"adopt: {diff_id} on {parent_chain_id} is not chain {chain}")
        if self.exists(chain):
            return False
        tmp = self.root / f"tmp-{secrets.token_hex(8)}"
        tmp.mkdir()
        trace.seen("snapshot", f"rename {fs_dir} -> {self.path(chain)}", f"chain {chain}, {size} bytes",
                   "a finished writable layer (a build step's or commit's upper dir) becomes a read-only layer "
                   "as it is, without being tarred and extracted again")
        try:
            os.rename(fs_dir, tmp / "fs")
            return self._publish(tmp, chain, {"chain_id": chain, "parent": parent_chain_id, "diff_id": diff_id,
                                              "size": size})
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise

    def dirs(self, chains: list[str]) -> list[Path]:
        return [self.path(c) for c in chains]

    def remove(self, chain: str) -> None:
        self._meta.pop(chain, None)
        d = self._dir(chain)
        if d.exists():
            with trace.step("snapshot", f"rm -rf {d}", "no image uses this layer chain any more"):
                tmp = self.root / f"tmp-rm-{secrets.token_hex(8)}"
                os.rename(d, tmp)  # atomic: the snapshot vanishes whole, then the bytes go
                shutil.rmtree(tmp, ignore_errors=True)

    def list(self) -> list[str]:
        out = []
        for d in self.root.iterdir():
            if not d.name.startswith("tmp-") and (d / "meta.json").is_file():
                out.append(json.loads((d / "meta.json").read_text())["chain_id"])
        return out

    def sweep_tmp(self) -> None:
        """Remove half-extracted dirs (at daemon start)."""
        for d in self.root.glob("tmp-*"):
            shutil.rmtree(d, ignore_errors=True)
