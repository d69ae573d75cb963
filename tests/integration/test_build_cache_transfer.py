"""A build cache that travels (issue 14 item 5): `dockyard build --cache-to` on one daemon, then
`--cache-from` on a second daemon whose store holds only busybox. The cached steps are not run again
(no step container is created for them), and their layers are the same blobs (same diff_ids, same
image ids); only what changed runs. Through our own registry server, and through a local OCI layout."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Daemon, own_daemon

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")

DOCKERFILE = """\
FROM busybox:latest
RUN echo one > /one
COPY a.txt /a.txt
RUN cat /a.txt /one > /copy-a
COPY b.txt /b.txt
RUN cat /b.txt > /copy-b
"""



@pytest.fixture
def second() -> Iterator[Daemon]:
    with own_daemon("dy-cache2-") as d:
        yield d


def _context(tmp: Path, b: str) -> Path:
    ctx = tmp / "ctx"
    ctx.mkdir(exist_ok=True)
    (ctx / "Dockerfile").write_text(DOCKERFILE)
    (ctx / "a.txt").write_text("a\n")
    (ctx / "b.txt").write_text(b)
    return ctx


def _layers(d: Daemon, ref: str) -> list[str]:
    out = d.dockyard("image", "inspect", ref).stdout
    return list(json.loads(out)[0]["RootFS"]["Layers"])


def _build(d: Daemon, ctx: Path, *args: str) -> str:
    return d.dockyard("build", "-t", "app", *args, str(ctx), timeout=300).stdout.decode()


def _ran(output: str) -> int:
    """Step containers the build created (each prints `---> Running in ID`)."""
    return output.count("---> Running in ")


def test_cache_from_registry_on_an_empty_store(daemon: Daemon, second: Daemon, registry: str, tmp_path: Path) -> None:
    ctx = _context(tmp_path, "b1\n")
    ref = f"{registry}/cache/app:buildcache"
    first = _build(daemon, ctx, "--no-cache", "--cache-to", f"type=registry,ref={ref},mode=max")
    assert _ran(first) == 3 and "exporting cache to" in first
    built = _layers(daemon, "app")
    # the same Dockerfile and context on an empty store: nothing runs, every layer comes from the cache
    same = _build(second, ctx, "--cache-from", f"type=registry,ref={ref}")
    assert _ran(same) == 0, same
    assert same.count("Using cache") == 5
    assert _layers(second, "app") == built
    assert second.dockyard("image", "inspect", "-f", "{{.Id}}", "app").stdout == \
        daemon.dockyard("image", "inspect", "-f", "{{.Id}}", "app").stdout
    # after a change to b.txt on a third store state: only the steps from COPY b.txt on run
    second.dockyard("rmi", "app")
    second.dockyard("builder", "prune", "-af")
    (ctx / "b.txt").write_text("b2\n")
    changed = _build(second, ctx, "--cache-from", f"type=registry,ref={ref}")
    assert _ran(changed) == 1, changed
    assert changed.count("Using cache") == 3
    now = _layers(second, "app")
    assert now[:-2] == built[:-2] and now[-2:] != built[-2:]
    out = second.dockyard("run", "--rm", "app", "cat", "/copy-a", "/copy-b").stdout.decode()
    assert out == "a\none\nb2\n"
    daemon.dockyard("rmi", "app")


def test_cache_to_local_dir(daemon: Daemon, second: Daemon, tmp_path: Path) -> None:
    ctx = _context(tmp_path, "local\n")
    dest = tmp_path / "cache-dir"
    first = _build(daemon, ctx, "--no-cache", "--cache-to", f"type=local,dest={dest}")
    assert _ran(first) == 3
    index = json.loads((dest / "index.json").read_text())
    manifest = json.loads((dest / "blobs" / "sha256" / index["manifests"][0]["digest"].split(":")[1]).read_text())
    assert manifest["config"]["mediaType"] == "application/vnd.buildkit.cacheconfig.v0"
    assert len(manifest["layers"]) == 5  # mode=min: the final image's steps, each with its own layer
    again = _build(second, ctx, "--cache-from", f"type=local,src={dest}")
    assert _ran(again) == 0, again
    assert _layers(second, "app") == _layers(daemon, "app")
    second.dockyard("rmi", "app")
    daemon.dockyard("rmi", "app")


def test_unreadable_cache_is_a_warning(daemon: Daemon, tmp_path: Path) -> None:
    ctx = _context(tmp_path, "w\n")
    out = _build(daemon, ctx, "--cache-from", f"type=local,src={tmp_path / 'nothing'}")
    assert "[Warning] failed to import cache" in out and "Successfully built" in out
    bad = daemon.dockyard("build", "--cache-to", "type=s3,bucket=x", str(ctx), check=False)
    assert bad.returncode != 0 and "unsupported cache type 's3'" in bad.stderr.decode()
    daemon.dockyard("rmi", "app")
