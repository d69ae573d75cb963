"""Image references: `nginx` -> docker.io/library/nginx:latest, `host:5000/a/b@sha256:...`."""

from __future__ import annotations

import re
from dataclasses import dataclass

from dockyard.errors import InvalidParameter

DEFAULT_DOMAIN = "docker.io"
LEGACY_DOMAINS = {"index.docker.io", "registry-1.docker.io"}
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|[-]*)[a-z0-9]+)*"
_PATH_RE = re.compile(rf"^{_COMPONENT}(?:/{_COMPONENT})*$")
_TAG_RE = re.compile(r"^[\w][\w.-]{0,127}$")
_DOMAIN_RE = re.compile(r"^(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)(?:\.[a-zA-Z0-9-]+)*(?::[0-9]+)?$|^\[[0-9a-fA-F:]+\](?::[0-9]+)?$")
_DIGEST_RE = re.compile(r"^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-fA-F0-9]{32,}$")


@dataclass(frozen=True)
class Reference:
    domain: str
    path: str  # e.g. library/nginx
    tag: str | None = None
    digest: str | None = None

    @property
    def repository(self) -> str:
        """Full name: docker.io/library/nginx."""
        return f"{self.domain}/{self.path}"

    @property
    def familiar_name(self) -> str:
        """Docker's short form: nginx, user/app, localhost:5000/app."""
        if self.domain == DEFAULT_DOMAIN:
            if self.path.startswith("library/") and self.path.count("/") == 1:
                return self.path[len("library/"):]
            return self.path
        return self.repository

    def __str__(self) -> str:
        s = self.repository
        if self.tag:
            s += ":" + self.tag
        if self.digest:
            s += "@" + self.digest
        return s

    @property
    def familiar(self) -> str:
        """`nginx:latest`, as `docker images` prints RepoTags."""
        s = self.familiar_name
        if self.tag:
            s += ":" + self.tag
        if self.digest:
            s += "@" + self.digest
        return s

    def with_tag(self, tag: str) -> Reference:
        return Reference(self.domain, self.path, tag, None)


def parse(ref: str, default_tag: str | None = "latest") -> Reference:
    """Parse and normalise a reference the way Docker does; raises InvalidParameter."""
    if not ref or ref != ref.strip():
        raise InvalidParameter(f"invalid reference format: {ref!r}")
    name, digest = ref, None
    if "@" in ref:
        name, digest = ref.split("@", 1)
        if not _DIGEST_RE.match(digest):
            raise InvalidParameter(f"invalid reference format: {ref}")
    tag = None
    last = name.rsplit("/", 1)[-1]
    if ":" in last:
        name, tag = name.rsplit(":", 1)
        if not _TAG_RE.match(tag):
            raise InvalidParameter(f"invalid reference format: {ref}")
    if "/" in name:
        first, rest = name.split("/", 1)
        if "." in first or ":" in first or first == "localhost" or first.startswith("["):
            domain, path = first, rest
        else:
            domain, path = DEFAULT_DOMAIN, name
    else:
        domain, path = DEFAULT_DOMAIN, name
    if domain in LEGACY_DOMAINS:
        domain = DEFAULT_DOMAIN
    if not _DOMAIN_RE.match(domain):
        raise InvalidParameter(f"invalid reference format: {ref}")
    if path != path.lower():
        raise InvalidParameter(f"invalid reference format: repository name ({path}) must be lowercase")
    if not _PATH_RE.match(path) or len(path) > 255:
        raise InvalidParameter(f"invalid reference format: {ref}")
    if domain == DEFAULT_DOMAIN and "/" not in path:
        path = "library/" + path
    if tag is None and digest is None:
        tag = default_tag
    return Reference(domain, path, tag, digest)
