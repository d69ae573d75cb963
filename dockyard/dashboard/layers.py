"""Each layer of an image and the files it adds, changes and deletes, read from `GET /images/{name}/get`
(docker save's tar), so it works against dockerd too. Read in one pass (a streamed tar cannot seek):
every layer tar is listed as it goes by, and manifest.json gives their order. Kept per image id.
"""

from __future__ import annotations

import io
import json
import tarfile
from typing import Any

from dockyard.dashboard.engine import Engine

_cache: dict[str, list[dict[str, Any]]] = {}
MAX_FILES = 5000  # per layer: the page shows a tree, not an archive


def _list(fileobj: Any) -> list[tuple[str, int, str]] | None:
    """(path, size, kind) of a layer tar, or None when the blob is not a tar (config, manifest)."""
    try:
        with tarfile.open(fileobj=fileobj, mode="r|*") as t:
            out = []
            for m in t:
                kind = "dir" if m.isdir() else "link" if m.issym() or m.islnk() else "file"
                out.append((m.name.lstrip("./").rstrip("/") or ".", m.size, kind))
            return out
    except (tarfile.TarError, EOFError, OSError):
        return None


def image_layers(engine: Engine, ref: str) -> list[dict[str, Any]]:
    image = engine.call("GET", f"/images/{ref}/json")
    iid = image["Id"]
    if iid in _cache:
        return _cache[iid]
    listings: dict[str, list[tuple[str, int, str]]] = {}
    blobs: dict[str, Any] = {}
    with engine.stream("GET", f"/images/{iid}/get") as s:
        reader: Any = _Reader(s.chunks())
        outer = tarfile.open(fileobj=reader, mode="r|")
        for m in outer:
            if not m.isfile():
                continue
            f = outer.extractfile(m)
            if f is None:
                continue
            if m.size < 1 << 20:  # a config or a manifest (JSON), or a small layer
                raw = f.read()
                try:
                    blobs[m.name] = json.loads(raw)
                    continue
                except ValueError:
                    f = io.BytesIO(raw)
            listing = _list(f)
            if listing is not None:
                listings[m.name] = listing
    manifest = blobs.get("manifest.json") or [{}]
    config = blobs.get(manifest[0].get("Config", ""), {})
    paths = manifest[0].get("Layers") or []
    history = [h for h in config.get("history") or [] if not h.get("empty_layer")]
    diff_ids = (image.get("RootFS") or {}).get("Layers") or []
    seen: set[str] = set()
    layers = []
    for i, path in enumerate(paths):
        files: list[dict[str, Any]] = []
        for name, size, kind in listings.get(path, []):
            base = name.rsplit("/", 1)[-1]
            if base == ".wh..wh..opq":
                files.append({"path": name.rsplit("/", 1)[0], "size": 0, "kind": kind, "change": "opaque"})
                continue
            if base.startswith(".wh."):
                deleted = name[: len(name) - len(base)] + base[4:]
                files.append({"path": deleted, "size": 0, "kind": "file", "change": "deleted"})
                seen.discard(deleted)
                continue
            change = "changed" if name in seen and kind != "dir" else "added"
            if kind == "dir" and name in seen:
                continue  # a directory every layer repeats says nothing
            seen.add(name)
            files.append({"path": name, "size": size, "kind": kind, "change": change})
        layers.append({"Index": i + 1, "DiffID": diff_ids[i] if i < len(diff_ids) else "",
                       "CreatedBy": history[i].get("created_by", "") if i < len(history) else "",
                       "Size": sum(int(f["size"]) for f in files), "Count": len(files),
                       "Files": files[:MAX_FILES], "Truncated": len(files) > MAX_FILES})
    _cache[iid] = layers
    return layers


class _Reader:
    """A file object over the response's chunks (tarfile's stream mode reads, never seeks)."""

    def __init__(self, chunks: Any) -> None:
        self.chunks = iter(chunks)
        self.buf = b""

    def read(self, n: int = -1) -> bytes:
        while n < 0 or len(self.buf) < n:
            try:
                self.buf += next(self.chunks)
            except StopIteration:
                break
        if n < 0:
            out, self.buf = self.buf, b""
        else:
            out, self.buf = self.buf[:n], self.buf[n:]
        return out
