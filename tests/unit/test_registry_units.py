"""Pure pieces of the registry code: platforms, progress lines, auth headers, name validation."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from dockyard.errors import NotFound
from dockyard.registry.client import platforms, progress
from dockyard.registry.client.auth import Credentials, load_docker_config, parse_challenge
from dockyard.registry.server.storage import NAME_RE, TAG_RE

INDEX = {"manifests": [
    {"digest": "sha256:a", "platform": {"os": "linux", "architecture": "amd64"}},
    {"digest": "sha256:b", "platform": {"os": "linux", "architecture": "arm64", "variant": "v8"}},
    {"digest": "sha256:c", "platform": {"os": "linux", "architecture": "arm", "variant": "v7"}},
    {"digest": "sha256:d", "platform": {"os": "linux", "architecture": "arm", "variant": "v6"}},
]}


@pytest.mark.parametrize("spec,digest", [("linux/amd64", "sha256:a"), ("linux/arm64", "sha256:b"),
                                         ("linux/arm64/v8", "sha256:b"), ("linux/arm/v7", "sha256:c"),
                                         ("linux/arm", "sha256:c"), ("linux/arm/v6", "sha256:d")])
def test_platform_select(spec: str, digest: str) -> None:
    assert platforms.select(INDEX, platforms.parse(spec))["digest"] == digest


def test_platform_missing() -> None:
    with pytest.raises(NotFound, match="no matching manifest for linux/s390x"):
        platforms.select(INDEX, platforms.parse("linux/s390x"))


def test_progress_lines() -> None:
    assert progress.human_size(1036648) == "1.037MB"
    ev = progress.detail("Downloading", "abc", 50, 100)
    assert ev["progressDetail"] == {"current": 50, "total": 100} and ev["progress"].startswith("[=" * 1)
    assert progress.error("boom") == {"errorDetail": {"message": "boom"}, "error": "boom"}


def test_challenge_and_config(tmp_path: Path) -> None:
    scheme, params = parse_challenge('Bearer realm="https://auth.docker.io/token",service="registry.docker.io"')
    assert scheme == "bearer" and params["service"] == "registry.docker.io"
    cfg = tmp_path / "config.json"
    cfg.write_text(json.dumps({"auths": {
        "https://index.docker.io/v1/": {"auth": base64.b64encode(b"hub:pw").decode()},
        "127.0.0.1:5000": {"auth": base64.b64encode(b"me:secret").decode()}}}))
    assert load_docker_config("docker.io", cfg) == Credentials("hub", "pw")
    assert load_docker_config("127.0.0.1:5000", cfg) == Credentials("me", "secret")
    assert not load_docker_config("other:1", cfg)


@pytest.mark.parametrize("name", ["..", "a/../b", "a//b", "/a", "A", "a/", ".a", "a/.."])
def test_bad_names(name: str) -> None:
    assert not NAME_RE.match(name)


@pytest.mark.parametrize("tag", ["..", ".x", "a/b", "-x", "x" * 129])
def test_bad_tags(tag: str) -> None:
    assert not TAG_RE.match(tag)
