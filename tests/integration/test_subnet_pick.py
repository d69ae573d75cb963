"""Daemons on one host picking a free subnet at once (util/hostlock.py, "subnets"): each waits for the host's
lock, so one finds the bridge another made meanwhile instead of the same pool."""

from __future__ import annotations

import fcntl
import ipaddress
import json
import os
import subprocess
import time
import uuid

import pytest

from dockyard.network import ipam, netlink
from dockyard.util import hostlock
from tests.conftest import DOCKER_CLI, flock_waiter, own_daemon

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (bridges, daemon)")


def test_a_picked_subnet_waits_for_the_host_lock_and_skips_a_bridge_made_meanwhile() -> None:
    dead = f"dypk{uuid.uuid4().hex[:8]}"
    with own_daemon("dy-pick-") as d:
        assert d.proc is not None
        fd = os.open(hostlock.path("subnets"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        create = None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)  # another daemon, between its pick and its bridge
            want = ipam.pick_subnet(ipaddress.IPv4Network(r) for r in netlink.host_routes())
            create = subprocess.Popen([DOCKER_CLI, "network", "create", "picked"], env=d.env,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            for _ in range(2400):  # until the daemon waits for the lock, or (the bug) did not
                if create.poll() is not None or flock_waiter(hostlock.path("subnets"), d.proc.pid):
                    break
                time.sleep(0.05)
            assert create.poll() is None, f"network create picked a subnet while another daemon held the lock: " \
                                          f"{create.communicate()}"
            assert flock_waiter(hostlock.path("subnets"), d.proc.pid), "the daemon never waited for the host's subnet lock"
            # What the other daemon makes: a bridge holding the subnet this one would have picked.
            subprocess.run(["ip", "link", "add", dead, "type", "bridge"], check=True)
            subprocess.run(["ip", "addr", "add", f"{want.network_address + 1}/{want.prefixlen}", "dev", dead],
                           check=True)
            subprocess.run(["ip", "link", "set", dead, "up"], check=True)
        finally:
            os.close(fd)
            if create is not None:
                out, err = create.communicate(timeout=120)
            subprocess.run(["ip", "link", "del", dead], capture_output=True)
        assert create.returncode == 0, err
        net = json.loads(d.docker("network", "inspect", "picked").stdout)[0]
        got = ipaddress.IPv4Network(net["IPAM"]["Config"][0]["Subnet"])
        assert not got.overlaps(want), f"picked {got}, the subnet of a bridge made while it waited"
