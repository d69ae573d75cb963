"""A cache miss says which input changed (issue 22, item 5): with `dockyard build --progress plain`
(or `--explain`) each step that misses the cache names what differs from the earlier build of it:
a file of the context, a build arg, the instruction, the base image, or the step before it. The
default output stays dockerd's classic one."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.conftest import Daemon

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")

DOCKERFILE = """\
ARG BASE=busybox:latest
FROM $BASE
ARG V=1
RUN echo $V > /v
COPY app/ /app/
RUN {ls} /app > /list
"""


def _misses(d: Daemon, ctx: Path, *args: str) -> list[str]:
    out = d.dockyard("build", "--progress", "plain", "-t", "missy", *args, str(ctx), timeout=300).stdout.decode()
    return [line.split("Cache miss: ", 1)[1] for line in out.splitlines() if "Cache miss: " in line]


def test_cache_miss_names_the_changed_input(clean_daemon: Daemon, tmp_path: Path) -> None:
    d = clean_daemon
    ctx = tmp_path / "ctx"
    (ctx / "app").mkdir(parents=True)
    (ctx / "app" / "main.py").write_text("print(1)\n")
    (ctx / "app" / "util.py").write_text("x = 1\n")
    (ctx / "Dockerfile").write_text(DOCKERFILE.format(ls="ls"))
    base = tmp_path / "base"
    base.mkdir()
    (base / "Dockerfile").write_text("FROM busybox:latest\nLABEL variant=2\n")
    try:
        d.dockyard("build", "-t", "missbase", str(base))
        first = _misses(d, ctx)
        assert len(first) == 4  # ARG, RUN, COPY, RUN
        assert _misses(d, ctx) == []  # all cached: nothing to explain
        # a file of the context
        (ctx / "app" / "main.py").write_text("print(2)\n")
        (ctx / "app" / "new.py").write_text("")
        got = _misses(d, ctx)
        assert got == ["files of the context changed: app/main.py; added: app/new.py",
                       "the step before it was rebuilt (its parent layer is new)"], got
        # a build arg
        got = _misses(d, ctx, "--build-arg", "V=2")
        assert got[0] == "build arg V='2' (was '1')", got
        # the instruction
        (ctx / "Dockerfile").write_text(DOCKERFILE.format(ls="ls -a"))
        got = _misses(d, ctx, "--build-arg", "V=2")
        assert got == ["the instruction changed (the cache has: RUN ls /app > /list)"], got
        # the base image
        got = _misses(d, ctx, "--build-arg", "V=2", "--build-arg", "BASE=missbase")
        assert got[0].startswith("the base image changed: missbase is "), got
        # the default output is dockerd's: no explanations
        (ctx / "app" / "util.py").write_text("x = 2\n")
        out = d.dockyard("build", "-t", "missy", str(ctx)).stdout.decode()
        assert "Cache miss" not in out and "Using cache" in out
        # --explain turns them on too
        (ctx / "app" / "util.py").write_text("x = 3\n")
        out = d.dockyard("build", "--explain", "-t", "missy", str(ctx)).stdout.decode()
        assert "Cache miss: files of the context changed: app/util.py" in out, out
    finally:
        d.dockyard("rmi", "-f", "missy", "missbase", check=False)
