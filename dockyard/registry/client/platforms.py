"""Platforms (`linux/arm64/v8`) and picking one manifest out of a manifest list / OCI index."""

from __future__ import annotations

import platform as _platform
from dataclasses import dataclass
from typing import Any

from dockyard.errors import InvalidParameter, NotFound

_ARCH = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64", "armv7l": "arm",
         "armv6l": "arm", "i386": "386", "i686": "386", "ppc64le": "ppc64le", "s390x": "s390x",
         "riscv64": "riscv64"}


@dataclass(frozen=True)
class Platform:
    os: str
    architecture: str
    variant: str = ""

    def __str__(self) -> str:
        return "/".join(p for p in (self.os, self.architecture, self.variant) if p)


def normalize(p: Platform) -> Platform:
    arch, variant = p.architecture.lower(), p.variant.lower()
    arch = {"x86_64": "amd64", "x86-64": "amd64", "aarch64": "arm64", "armhf": "arm", "armel": "arm"}.get(
        arch, arch)
    if arch == "arm64" and variant in ("", "v8"):
        variant = ""  # arm64 means arm64/v8
    if arch == "arm" and variant == "" and p.architecture.lower() in ("arm", "armhf"):
        variant = "v7"
    if arch == "amd64" and variant == "v1":
        variant = ""
    return Platform(p.os.lower(), arch, variant)


def parse(spec: str | None) -> Platform:
    """`linux/arm64`, `linux/arm/v7`, `amd64` (os defaults to linux); empty -> the host's."""
    if not spec:
        return host()
    parts = spec.strip().split("/")
    if len(parts) == 1:
        parts = ["linux", parts[0]]
    if len(parts) > 3 or not all(parts):
        raise InvalidParameter(f'"{spec}": unknown operating system or architecture: invalid argument')
    return normalize(Platform(parts[0], parts[1], parts[2] if len(parts) == 3 else ""))


def host() -> Platform:
    machine = _platform.machine()
    arch = _ARCH.get(machine, machine)
    variant = "v7" if machine == "armv7l" else "v6" if machine == "armv6l" else ""
    return Platform("linux", arch, variant)


def of_descriptor(desc: dict[str, Any]) -> Platform | None:
    p = desc.get("platform")
    if not isinstance(p, dict):
        return None
    return normalize(Platform(p.get("os", ""), p.get("architecture", ""), p.get("variant", "")))


def select(index: dict[str, Any], want: Platform) -> dict[str, Any]:
    """The best manifest descriptor for `want`: exact variant first, then any variant if none asked."""
    want = normalize(want)
    candidates = []
    for desc in index.get("manifests") or []:
        p = of_descriptor(desc)
        if p is None or p.os != want.os or p.architecture != want.architecture:
            continue
        if want.variant and p.variant != want.variant:
            continue
        candidates.append((0 if p.variant == want.variant else 1, desc))
    if not candidates:
        raise NotFound(f"no matching manifest for {want} in the manifest list entries")
    best: dict[str, Any] = min(candidates, key=lambda c: c[0])[1]
    return best
