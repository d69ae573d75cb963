"""`kube generate --registry REG`: push every image the manifests name to REG and pin it by digest,
so the YAML applies unchanged to any cluster that can pull from REG."""

from __future__ import annotations

from typing import Any

from dockyard.client import APIClient, APIError
from dockyard.oci import reference


def _containers(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for d in docs:
        spec = d.get("spec") or {}
        if d.get("kind") == "Deployment":
            spec = (spec.get("template") or {}).get("spec") or {}
        elif d.get("kind") != "Pod":
            continue
        out += list(spec.get("initContainers") or []) + list(spec.get("containers") or [])
    return out


def target_ref(image: str, registry: str) -> str:
    """`busybox` → `REG/library/busybox:latest`; `127.0.0.1:5000/x/y:1` → `REG/x/y:1`."""
    ref = reference.parse(image)
    return f"{registry.rstrip('/')}/{ref.path}:{ref.tag or 'latest'}"


def push_and_pin(client: APIClient, docs: list[dict[str, Any]], registry: str) -> list[str]:
    notes: list[str] = []
    pinned: dict[str, str] = {}
    for c in _containers(docs):
        image = c.get("image") or ""
        if not image:
            continue
        if image not in pinned:
            target = target_ref(image, registry)
            repo, _, tag = target.rpartition(":")
            client.tag(image, repo, tag)
            digest = ""
            for msg in client.push(repo, tag):
                if msg.get("error") or msg.get("errorDetail"):
                    raise APIError(500, f"push of {target} failed: {msg.get('error') or msg['errorDetail']}")
                aux = msg.get("aux") or {}
                digest = aux.get("Digest") or digest
            if not digest:
                try:
                    info = client.inspect_image(target)
                    digest = next((d.split("@", 1)[1] for d in info.get("RepoDigests") or []
                                   if d.startswith(repo + "@")), "")
                except APIError:
                    pass
            if not digest:
                raise APIError(500, f"push of {target} gave no digest")
            pinned[image] = f"{repo}@{digest}"
            notes.append(f"image {image}: pushed as {target}, pinned as {pinned[image]}")
        c["image"] = pinned[image]
    return notes
