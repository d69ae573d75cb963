"""`search` against our own registry (these machines cannot reach Docker Hub): the daemon asks the
registry's v1 search as dockerd does, and a registry without one for its catalog; both CLIs print
docker's table."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Daemon


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "dockyard.registry.server", "serve", "--addr", f"127.0.0.1:{port}",
                             "--root", str(tmp_path / "reg")], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert proc.stdout is not None and "listening" in proc.stdout.readline().decode()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)


def test_search_our_registry(clean_daemon: Daemon, registry: str) -> None:
    d = clean_daemon
    for name in ("busybox-one", "tools/busybox-two", "other"):
        d.docker("tag", "busybox", f"{registry}/{name}")
        d.docker("push", f"{registry}/{name}")
        d.docker("rmi", f"{registry}/{name}")
    for cli in (d.docker, d.dockyard):
        out = cli("search", f"{registry}/busybox").stdout.decode().splitlines()
        assert out[0].split() == ["NAME", "DESCRIPTION", "STARS", "OFFICIAL"]
        assert sorted(line.split()[0] for line in out[1:]) == [f"{registry}/busybox-one",
                                                               f"{registry}/tools/busybox-two"]
        limited = cli("search", "--limit", "1", "--format", "{{.Name}}", f"{registry}/busybox").stdout
        assert len(limited.splitlines()) == 1
    p = d.dockyard("search", "127.0.0.1:1/x", check=False)
    assert p.returncode == 1 and b"dial tcp 127.0.0.1:1: connect: connection refused" in p.stderr, p.stderr
