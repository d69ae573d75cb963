"""A network's bridge keeps its MAC address while containers come and go.

A Linux bridge with no address set takes the lowest MAC among its ports. Before the fix every join or
leave of a container with a lower (random) veth MAC moved the gateway's MAC; the other containers kept
the old one in their ARP caches, so after a short-lived container left, their frames to the gateway went
to a MAC no port had: DNS lookups failed ("bad address") until the entry expired. Seen as name-lookup
flakes in docker-py's suite and ours under load (many containers starting and stopping). dockerd's
bridges have their MAC set (addr_assign_type 3) for the same reason.
"""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import Daemon


def _mac(bridge: str) -> tuple[str, str]:
    base = Path("/sys/class/net") / bridge
    return (base / "address").read_text().strip(), (base / "addr_assign_type").read_text().strip()


def test_gateway_mac_and_lookups_survive_containers_leaving(clean_daemon: Daemon) -> None:
    d = clean_daemon
    nid = d.docker("network", "create", "macpin").stdout.decode().strip()
    bridge = json.loads(d.docker("network", "inspect", "macpin").stdout)[0]["Options"].get(
        "com.docker.network.bridge.name") or f"br-{nid[:12]}"
    try:
        first, assigned = _mac(bridge)
        assert assigned == "3"  # set, as dockerd's bridges: not borrowed from a port
        d.docker("run", "-d", "--name", "macpin-api", "--network", "macpin", "busybox", "sleep", "600")
        # Each round: a short-lived container joins, a fresh one learns the gateway's MAC (ARP), the
        # short-lived one leaves; the fresh one must still reach the DNS server on the gateway. Before the
        # fix a third of the rounds failed (the MAC learnt was the leaver's whenever its veth's was lowest).
        for i in range(6):
            d.docker("run", "-d", "--name", f"macpin-c{i}", "--network", "macpin", "busybox", "sleep", "600")
            d.docker("run", "-d", "--name", f"macpin-a{i}", "--network", "macpin", "busybox", "sleep", "600")
            d.docker("exec", f"macpin-a{i}", "nslookup", "macpin-api")
            assert _mac(bridge)[0] == first
            d.docker("rm", "-f", f"macpin-c{i}")
            p = d.docker("exec", f"macpin-a{i}", "nslookup", "macpin-api", check=False)
            assert p.returncode == 0, (i, p.stdout, p.stderr)
            d.docker("rm", "-f", f"macpin-a{i}")
        assert _mac(bridge) == (first, "3")
    finally:
        d.cleanup_containers()
        d.docker("network", "rm", "macpin", check=False)
