"""Builds through the real daemon with the docker CLI's classic builder: RUN in real containers,
failing RUN cleanup, the cache across a daemon restart. Needs the container core (runc + conmon)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")


def build(daemon: Any, ctx: Path, *args: str, check: bool = True) -> Any:
    env = {"DOCKER_BUILDKIT": "0"}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        return daemon.docker("build", *args, str(ctx), check=check)
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def test_run_steps_cache_and_failure(daemon: Any, tmp_path: Path) -> None:
    (tmp_path / "Dockerfile").write_text(
        "FROM busybox AS a\nRUN echo from-a > /a\n"
        "FROM busybox AS b\nARG X=1\nRUN echo b$X > /b && rm -rf /tmp\n"
        "FROM busybox\nCOPY --from=a /a /\nCOPY --from=b /b /\nRUN cat /a /b\nCMD [\"cat\", \"/a\", \"/b\"]\n")
    p = build(daemon, tmp_path, "-t", "bt:1")
    out = p.stdout.decode()
    assert "from-a\nb1\n" in out and "Running in" in out and "Successfully tagged bt:1" in out
    assert daemon.docker("run", "--rm", "bt:1").stdout == b"from-a\nb1\n"
    hist = daemon.docker("history", "--no-trunc", "--format", "{{.CreatedBy}}", "bt:1").stdout.decode()
    assert "|1 X=1 /bin/sh -c echo b$X > /b" not in hist  # the b stage is not in the final image
    assert "/bin/sh -c cat /a /b" in hist
    p2 = build(daemon, tmp_path, "-t", "bt:1")
    assert p2.stdout.decode().count("Using cache") >= 6 and "Running in" not in p2.stdout.decode()
    daemon.stop()
    daemon.start()
    p3 = build(daemon, tmp_path, "-t", "bt:1")
    assert "Running in" not in p3.stdout.decode()  # the cache survives a restart

    before = daemon.docker("ps", "-aq").stdout
    (tmp_path / "Dockerfile").write_text("FROM busybox\nRUN echo oops && false\n")
    bad = build(daemon, tmp_path, check=False)
    assert bad.returncode != 0
    assert "The command '/bin/sh -c echo oops && false' returned a non-zero code: 1" in bad.stderr.decode()
    assert "oops" in bad.stdout.decode()
    assert daemon.docker("ps", "-aq").stdout == before
    mounts = Path("/proc/mounts").read_text()
    assert str(daemon.base) + "/run/containers" not in mounts
