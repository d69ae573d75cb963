"""Content digests (`sha256:<hex>`), validated so they can never carry a path."""

from __future__ import annotations

import hashlib
import re

from dockyard.errors import InvalidParameter

_DIGEST_RE = re.compile(r"^sha256:[a-f0-9]{64}$")


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def validate(digest: str) -> str:
    """Return the digest if it is a well-formed sha256 digest, else raise."""
    if not _DIGEST_RE.match(digest):
        raise InvalidParameter(f"invalid digest {digest!r}")
    return digest


def hex_of(digest: str) -> str:
    return validate(digest).split(":", 1)[1]


def is_digest(s: str) -> bool:
    return bool(_DIGEST_RE.match(s))
