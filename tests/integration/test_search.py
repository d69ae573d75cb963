"""`search` against our own registry (these machines cannot reach Docker Hub): the daemon asks the
registry's v1 search as dockerd does, and a registry without one for its catalog; both CLIs print
docker's table."""

from __future__ import annotations

from tests.conftest import Daemon


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
