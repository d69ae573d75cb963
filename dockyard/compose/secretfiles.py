"""Secrets and configs without swarm, as Compose does: file-based ones are bind-mounted read-only;
inline ones (`environment:`, `content:`) are copied into the container before it starts."""

from __future__ import annotations

import io
import os
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dockyard.compose.errors import ComposeError
from dockyard.compose.loader import Project
from dockyard.compose.normalize import Service


@dataclass
class Inline:
    target: str  # absolute path in the container
    content: bytes
    mode: int
    uid: int
    gid: int


def _refs(svc: Service, kind: str) -> list[dict[str, Any]]:
    return [{"source": r} if isinstance(r, str) else dict(r) for r in svc.get(kind) or []]


def _target(kind: str, ref: dict[str, Any]) -> str:
    target = str(ref.get("target") or ref["source"])
    if kind == "secrets":
        # A relative target (or a bare name) lives under /run/secrets.
        return target if target.startswith("/") else f"/run/secrets/{target}"
    return target if target.startswith("/") else f"/{target}"


def resolve(project: Project, name: str, svc: Service) -> tuple[list[str], list[Inline]]:
    """Binds ("src:dst:ro") for file-based secrets/configs, and the inline ones to copy in."""
    binds: list[str] = []
    inline: list[Inline] = []
    for kind, defs in (("secrets", project.secrets), ("configs", project.configs)):
        for i, ref in enumerate(_refs(svc, kind)):
            src = ref.get("source")
            where = f"services.{name}.{kind}[{i}]"
            if not src or src not in defs:
                raise ComposeError(f"{where}: service {name!r} refers to undefined {kind[:-1]} {src}: "
                                   "invalid compose project")
            d = defs[src] or {}
            target = _target(kind, ref)
            if d.get("external"):
                raise ComposeError(f"{where}: external {kind} need swarm; use a file: source")
            if d.get("file"):
                path = Path(str(d["file"]))
                if not path.is_absolute():
                    path = project.working_dir / path
                if not path.exists():
                    raise ComposeError(f"{where}: {kind[:-1]} file {path} not found")
                binds.append(f"{path.resolve()}:{target}:ro")
                continue
            if "environment" in d:
                value = project.environment.get(str(d["environment"]), os.environ.get(str(d["environment"])))
                if value is None:
                    raise ComposeError(f"{where}: environment variable {d['environment']} is not set")
                content = value.encode()
            elif "content" in d:
                content = str(d["content"]).encode()
            else:
                raise ComposeError(f"{where}: {kind[:-1]} {src} has neither file, environment nor content")
            mode = ref.get("mode", 0o444)
            inline.append(Inline(target, content, int(str(mode), 8) if isinstance(mode, str) else int(mode),
                                 int(ref.get("uid", 0)), int(ref.get("gid", 0))))
    return binds, inline


def archive(items: list[Inline]) -> bytes:
    """A tar (paths relative to /) with the inline secrets, for PUT /containers/{id}/archive?path=/."""
    buf = io.BytesIO()
    now = time.time()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        dirs: set[str] = set()
        for it in items:
            parts = it.target.strip("/").split("/")
            for n in range(1, len(parts)):
                d = "/".join(parts[:n])
                if d not in dirs:
                    dirs.add(d)
                    ti = tarfile.TarInfo(d)
                    ti.type, ti.mode, ti.mtime = tarfile.DIRTYPE, 0o755, now
                    tar.addfile(ti)
            ti = tarfile.TarInfo("/".join(parts))
            ti.size, ti.mode, ti.uid, ti.gid, ti.mtime = len(it.content), it.mode, it.uid, it.gid, now
            tar.addfile(ti, io.BytesIO(it.content))
    return buf.getvalue()
