"""`dockyard build --output`: the built image's filesystem (its layers flattened, whiteouts applied),
not an image: `type=local,dest=DIR` writes it into DIR, `type=tar,dest=FILE|-` as one tar. As
BuildKit's local and tar exporters. Read from the daemon's `docker save` stream of the image."""

from __future__ import annotations

import contextlib
import json
import os
import posixpath
import shutil
import sys
import tarfile
import tempfile
from collections.abc import Iterator
from typing import IO, Any

from dockyard.cli.common import CLIError


def parse_output(value: str) -> dict[str, str]:
    """`type=local,dest=DIR`, `type=tar,dest=FILE`, or docker's shorthands `DIR` and `-` (tar to stdout)."""
    if "=" not in value:
        return {"type": "tar", "dest": "-"} if value == "-" else {"type": "local", "dest": value}
    spec = dict(f.partition("=")[::2] for f in value.split(","))
    kind = spec.get("type", "local")
    if kind not in ("local", "tar"):
        raise CLIError(f"output type {kind!r} is not supported: local and tar are")
    if not spec.get("dest"):
        if kind == "tar":
            spec["dest"] = "-"
        else:
            raise CLIError("dest is required for local output")
    spec["type"] = kind
    return spec


def _clean(name: str) -> str:
    return posixpath.normpath("/" + name).lstrip("/")


def _flatten(outer: tarfile.TarFile) -> Iterator[tuple[tarfile.TarInfo, tarfile.TarFile]]:
    """The image's entries, top layer winning, whiteouts applied; each with the layer tar it is in."""
    f = outer.extractfile("manifest.json")
    if f is None:
        raise CLIError("the daemon's image archive has no manifest.json")
    manifest = json.load(f)
    entries: dict[str, tuple[tarfile.TarInfo, tarfile.TarFile]] = {}

    def drop_below(path: str) -> None:
        prefix = path + "/" if path else ""
        for k in [k for k in entries if k.startswith(prefix)]:
            del entries[k]

    for layer in manifest[0]["Layers"]:
        lf = outer.extractfile(layer)
        if lf is None:
            raise CLIError(f"the daemon's image archive lacks {layer}")
        lt = tarfile.open(fileobj=lf)
        for m in lt:
            name = _clean(m.name)
            if not name:
                continue
            parent, base = posixpath.split(name)
            if base == ".wh..wh..opq":
                drop_below(parent)
                continue
            if base.startswith(".wh."):
                gone = posixpath.join(parent, base[4:])
                entries.pop(gone, None)
                drop_below(gone)
                continue
            old = entries.get(name)
            if old is not None and old[0].isdir() and not m.isdir():
                drop_below(name)
            m.name = name
            entries[name] = (m, lt)
    for name in sorted(entries):
        yield entries[name]


def _write_tar(outer: tarfile.TarFile, out: IO[bytes]) -> None:
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tw:
        for m, lt in _flatten(outer):
            if m.islnk():
                m.linkname = _clean(m.linkname)
            tw.addfile(m, lt.extractfile(m) if m.isfile() else None)


def _extract(outer: tarfile.TarFile, dest: str) -> None:
    """Into `dest`: no entry lands through a link the image holds (a link is written as a link, and
    nothing below one is written), nor outside `dest`."""
    os.makedirs(dest, exist_ok=True)
    links: set[str] = set()
    dirs: list[tarfile.TarInfo] = []
    for m, lt in _flatten(outer):
        parts = m.name.split("/")
        if any("/".join(parts[:i]) in links for i in range(1, len(parts))) or ".." in parts:
            continue
        if m.issym():
            links.add(m.name)
        path = os.path.join(dest, m.name)
        if os.path.lexists(path) and not (m.isdir() and os.path.isdir(path) and not os.path.islink(path)):
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path)
            else:
                os.unlink(path)
        if m.isdir():
            os.makedirs(path, 0o700, exist_ok=True)
            dirs.append(m)  # modes and times after the files below them are written
            continue
        if m.islnk():
            target = os.path.join(dest, _clean(m.linkname))
            with contextlib.suppress(OSError):
                os.link(target, path, follow_symlinks=False)
            continue
        lt.extract(m, dest, set_attrs=True, numeric_owner=True, filter="fully_trusted")
    for m in reversed(dirs):
        path = os.path.join(dest, m.name)
        with contextlib.suppress(OSError):
            os.chown(path, m.uid, m.gid, follow_symlinks=False)
            os.chmod(path, m.mode)
            os.utime(path, (m.mtime, m.mtime))


def export(client: Any, image_id: str, spec: dict[str, str]) -> None:
    with tempfile.TemporaryFile(prefix="dockyard-output-") as tmp:
        with client.save([image_id]) as s:
            for chunk in s.chunks():
                tmp.write(chunk)
        tmp.seek(0)
        with tarfile.open(fileobj=tmp) as outer:
            if spec["type"] == "local":
                _extract(outer, spec["dest"])
            elif spec["dest"] == "-":
                _write_tar(outer, sys.stdout.buffer)
                sys.stdout.buffer.flush()
            else:
                with open(spec["dest"], "wb") as out:
                    _write_tar(outer, out)
