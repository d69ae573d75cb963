"""A create declares the container's networks beside making its dirs, and before its row (one fsync
for both: services/containers.py create). A declaration that fails leaves nothing: no row, no dir,
no membership, the name free."""

from __future__ import annotations

import json
import os
import sqlite3
import time

import pytest

from tests.conftest import Daemon

pytestmark = [pytest.mark.root, pytest.mark.skipif(os.geteuid() != 0, reason="needs root")]


def _memberships(d: Daemon, cid: str = "") -> list[str]:
    con = sqlite3.connect(d.data_root / "dockyard.db")
    try:
        rows = con.execute("SELECT cid FROM net_links" + (" WHERE cid=?" if cid else ""), (cid,) if cid else ())
        return [r[0] for r in rows]
    finally:
        con.close()


def _container_dirs(d: Daemon) -> set[str]:
    return {p.name for p in (d.data_root / "containers").iterdir() if p.is_dir() and len(p.name) == 64}


def test_a_create_whose_network_declaration_fails_leaves_nothing(clean_daemon: Daemon) -> None:
    d = clean_daemon
    dirs, links = _container_dirs(d), sorted(_memberships(d))
    # dockerd's 400: an address of one's choosing is for user-defined networks only
    r = d.docker("create", "--name", "declfail", "--ip", "172.17.0.77", "busybox", check=False)
    assert r.returncode != 0
    assert b"user specified IP address is supported on user defined networks only" in r.stderr, r.stderr
    assert d.docker("ps", "-aq", "--filter", "name=declfail").stdout.strip() == b""
    assert _container_dirs(d) == dirs
    # none added (an earlier test's container may still be losing its own: that goes after its removal)
    assert set(_memberships(d)) <= set(links)
    cid = d.docker("create", "--name", "declfail", "busybox").stdout.decode().strip()  # the name is free
    networks = json.loads(d.docker("inspect", cid).stdout)[0]["NetworkSettings"]["Networks"]
    assert list(networks) == ["bridge"]  # declared at create: inspect shows it before any start
    assert _memberships(d, cid) == [cid]
    d.docker("rm", cid)
    # The memberships go after the removal's answer, with its network's release (as `network rm` waits
    # for it: services/networks.py _settled); the database is read directly here, so wait for it.
    deadline = time.monotonic() + 30
    while _memberships(d, cid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _memberships(d, cid) == []
    assert cid not in _container_dirs(d)
