"""A stored default-bridge subnet that another interface now routes (issue 25's docker0 case).

Seen on these machines: a daemon kept its stored subnet across a restart while, in between, a real
dockerd took the same subnet for docker0 and stopped, leaving docker0 down with its route. Two routes
for one subnet: published ports sent their traffic to the dead bridge and answered nothing.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import subprocess
import time
import urllib.request
import uuid

import pytest

from tests.conftest import Daemon, own_daemon
from tests.subnets import free_subnet

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (bridges, daemon)")


def bridge_subnet(d: Daemon) -> str:
    with d.api() as c:
        return str(c.get("/networks/bridge").json()["IPAM"]["Config"][0]["Subnet"])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_subnet_shadowed_by_a_dead_bridge_moves_and_ports_answer() -> None:
    dead = f"dysh{uuid.uuid4().hex[:8]}"
    with own_daemon("dy-shadow-") as d:
        stored = ipaddress.IPv4Network(bridge_subnet(d))
        d.stop()  # no containers: the daemon takes its bridge down with it
        try:
            # What a dockerd leaves behind: docker0 up with no ports left (no carrier: "linkdown"),
            # holding the subnet's gateway address and so its route.
            subprocess.run(["ip", "link", "add", dead, "type", "bridge"], check=True)
            subprocess.run(["ip", "link", "set", dead, "up"], check=True)
            subprocess.run(["ip", "addr", "add", f"{stored.network_address + 1}/{stored.prefixlen}", "dev", dead],
                           check=True)
            assert dead in subprocess.run(["ip", "route", "show", str(stored)], capture_output=True,
                                          text=True).stdout
            d.start()
            now = ipaddress.IPv4Network(bridge_subnet(d))
            assert not now.overlaps(stored), (now, stored)
            assert dead in d.log.read_text()  # the log names the interface in the way
            port = free_port()
            d.docker("run", "-d", "--name", "shadow-web", "-p", f"127.0.0.1:{port}:80", "busybox", "sh", "-c",
                     "echo through > /tmp/index.html && exec httpd -f -p 80 -h /tmp")
            body, deadline = "", time.monotonic() + 60
            while time.monotonic() < deadline:
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=3) as r:
                        body = r.read().decode()
                    break
                except OSError:
                    time.sleep(0.2)
            assert body == "through\n"
        finally:
            subprocess.run(["ip", "link", "del", dead], capture_output=True)


def _net_subnet(d: Daemon, name: str) -> ipaddress.IPv4Network:
    with d.api() as c:
        return ipaddress.IPv4Network(c.get(f"/networks/{name}").json()["IPAM"]["Config"][0]["Subnet"])


def test_user_networks_shadowed_by_dead_bridges_move_or_are_named() -> None:
    """The same for user networks: one whose subnet the daemon picked moves; one whose subnet was given
    at create stays (it is the user's), and the log names the interface in the way."""
    dead = [f"dysh{uuid.uuid4().hex[:8]}" for _ in range(2)]
    with own_daemon("dy-shadow-") as d:
        d.docker("network", "create", "picked")
        d.docker("network", "create", "--subnet", str(free_subnet()), "given")
        picked, given = _net_subnet(d, "picked"), _net_subnet(d, "given")
        d.stop()
        try:
            for dev, net in zip(dead, (picked, given), strict=True):
                subprocess.run(["ip", "link", "add", dev, "type", "bridge"], check=True)
                subprocess.run(["ip", "link", "set", dev, "up"], check=True)
                subprocess.run(["ip", "addr", "add", f"{net.network_address + 1}/{net.prefixlen}", "dev", dev],
                               check=True)
            d.start()
            moved = _net_subnet(d, "picked")
            assert not moved.overlaps(picked), (moved, picked)
            assert _net_subnet(d, "given") == given
            log = d.log.read_text()
            assert dead[0] in log and f"moved to {moved}" in log
            assert dead[1] in log and "the subnet stays (it was given at create)" in log
            out = d.docker("run", "--rm", "--network", "picked", "busybox", "ip", "-4", "-o", "addr", "show", "eth0")
            addr = out.stdout.decode().split()[3]
            assert ipaddress.IPv4Interface(addr).ip in moved
        finally:
            for dev in dead:
                subprocess.run(["ip", "link", "del", dev], capture_output=True)
