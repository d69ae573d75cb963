"""A container's own network namespace has its loopback up (the daemon makes the netns: network/netlink.py
create_netns), on a bridge network and with --network none alike."""

from __future__ import annotations

import os

import pytest

from tests.conftest import Daemon

pytestmark = [pytest.mark.root, pytest.mark.skipif(os.geteuid() != 0, reason="needs root")]


@pytest.mark.parametrize("network", ["bridge", "none"])
def test_loopback_is_up(clean_daemon: Daemon, network: str) -> None:
    out = clean_daemon.docker("run", "--rm", "--network", network, "busybox", "sh", "-c",
                              "cat /sys/class/net/lo/flags; ping -c1 -W2 127.0.0.1 >/dev/null && echo pong")
    flags, pong = out.stdout.decode().split()
    assert int(flags, 16) & 0x1, flags  # IFF_UP
    assert pong == "pong"
