"""What a project has on the daemon, found by Compose's labels (the only state compose keeps)."""

from __future__ import annotations

import io
import json
import os
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from dockyard.client import APIClient, APIError
from dockyard.compose.convert import L_NUMBER, L_ONEOFF, L_PROJECT, L_SERVICE

JSON = dict[str, Any]


def project_containers(client: APIClient, project: str, services: list[str] | None = None,
                       all: bool = True, oneoff: bool | None = False) -> list[JSON]:
    """Containers of the project (sorted by service, then number); oneoff None means both kinds."""
    labels = [f"{L_PROJECT}={project}"]
    if oneoff is not None:
        labels.append(f"{L_ONEOFF}={'True' if oneoff else 'False'}")
    found = client.containers(all=all, filters={"label": labels})
    if services:
        found = [c for c in found if c["Labels"].get(L_SERVICE) in services]
    return sorted(found, key=lambda c: (c["Labels"].get(L_SERVICE, ""), number(c), name(c)))


def number(ctr: JSON) -> int:
    try:
        return int(ctr["Labels"].get(L_NUMBER, "0"))
    except ValueError:
        return 0


def name(ctr: JSON) -> str:
    names = ctr.get("Names") or [ctr.get("Name", "")]
    return str(names[0]).lstrip("/")


def service_of(ctr: JSON) -> str:
    return str(ctr["Labels"].get(L_SERVICE, ""))


def projects(client: APIClient, all: bool = False) -> dict[str, list[JSON]]:
    out: dict[str, list[JSON]] = {}
    for c in client.containers(all=all, filters={"label": [L_PROJECT]}):
        out.setdefault(c["Labels"][L_PROJECT], []).append(c)
    return out


def image_exists(client: APIClient, ref: str) -> bool:
    try:
        client.inspect_image(ref)
        return True
    except APIError as e:
        if e.not_found:
            return False
        raise


def _context_tar(context: Path, dockerfile: str, inline: str | None = None) -> bytes:
    """The build context as a tar, minus what .dockerignore excludes (the Dockerfile always goes);
    `inline` (dockerfile_inline) is added as the file `dockerfile`."""
    from dockyard.util.dockerignore import PatternMatcher, read_patterns

    ignore = context / ".dockerignore"
    spec = PatternMatcher.of(read_patterns(ignore.read_text(errors="replace"))) if ignore.exists() else None
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for root, dirs, files in os.walk(context):
            dirs.sort()
            for entry in sorted(files) + dirs:
                full = Path(root) / entry
                rel = str(full.relative_to(context))
                if spec and spec.matches(rel) and rel not in (dockerfile, ".dockerignore"):
                    continue  # both always go, as docker sends them (the daemon drops them if excluded)
                if inline is not None and rel == dockerfile:
                    continue
                tf.add(full, arcname=rel, recursive=False)
        if inline is not None:
            data = inline.encode()
            ti = tarfile.TarInfo(dockerfile)
            ti.size, ti.mode, ti.mtime = len(data), 0o644, int(time.time())
            tf.addfile(ti, io.BytesIO(data))
    return buf.getvalue()


def build(client: APIClient, tag: str, build_cfg: JSON, labels: dict[str, str] | None = None,
          no_cache: bool = False, pull: bool = False) -> Iterator[JSON]:
    """POST /build with a tar context (classic builder: no BuildKit session needed)."""
    context = Path(build_cfg["context"])
    inline = build_cfg.get("dockerfile_inline")
    # Compose names an inline Dockerfile so it cannot clash with a file of the context.
    dockerfile = ".dockyard-inline.Dockerfile" if inline is not None else str(build_cfg.get("dockerfile", "Dockerfile"))
    params: dict[str, Any] = {
        "t": tag, "dockerfile": dockerfile, "rm": True, "forcerm": True,
        "buildargs": json.dumps({k: v for k, v in (build_cfg.get("args") or {}).items() if v is not None})
        if build_cfg.get("args") else None,
        "target": build_cfg.get("target"), "labels": json.dumps(labels) if labels else None,
        "nocache": no_cache or None, "pull": pull or None, "networkmode": build_cfg.get("network"),
    }
    data = _context_tar(context, dockerfile, None if inline is None else str(inline))
    with client.stream("POST", "/build", params, data=data, headers={"Content-Type": "application/x-tar"}) as s:
        yield from s.json()
