"""Network plugins (the remote driver protocol) through the real docker CLI: `network create -d` a
test driver (tests/plugins/network_plugin.py, a real process on a real socket, which makes a bridge
of its own); containers join through the plugin's interface (CreateEndpoint, Join: its SrcName moved
into the netns as eth0 with the address our IPAM gave), reach each other over it, and leave (Leave,
DeleteEndpoint) at exit; the network's removal is the plugin's DeleteNetwork."""

from __future__ import annotations

import json
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Daemon, own_daemon
from tests.plugins.procs import PluginProc, calls, running


@pytest.fixture(scope="module")
def setup() -> Iterator[tuple[Daemon, Path]]:
    with tempfile.TemporaryDirectory(prefix="plugins-net-", dir="/tmp") as tmp:
        disc, log = Path(tmp) / "plugins", Path(tmp) / "calls.log"
        drv = PluginProc("network_plugin.py", "netplug", socket=disc / "netplug.sock", log=log)
        with running(drv), own_daemon("dy-pnet-", "--plugin-discovery-dir", str(disc),
                                      "--plugin-retry-seconds", "1") as d:
            yield d, log


def test_containers_on_a_plugin_network(setup: tuple[Daemon, Path]) -> None:
    d, log = setup
    nid = d.docker("network", "create", "-d", "netplug", "pnet").stdout.decode().strip()
    bridge = "pn" + nid[:10]
    try:
        created = calls(log, "netplug", "/NetworkDriver.CreateNetwork")[-1]["body"]
        assert created["NetworkID"] == nid
        pool = created["IPv4Data"][0]
        net = json.loads(d.docker("network", "inspect", "pnet").stdout)[0]
        assert net["Driver"] == "netplug" and net["IPAM"]["Config"][0]["Subnet"] == pool["Pool"]
        assert pool["Gateway"].split("/")[0] == net["IPAM"]["Config"][0]["Gateway"]
        assert subprocess.run(["ip", "link", "show", bridge], capture_output=True).returncode == 0
        a = d.docker("run", "-d", "--name", "pa", "--network", "pnet", "busybox", "sleep", "600").stdout.decode().strip()
        ip = json.loads(d.docker("inspect", a).stdout)[0]["NetworkSettings"]["Networks"]["pnet"]["IPAddress"]
        eid = json.loads(d.docker("inspect", a).stdout)[0]["NetworkSettings"]["Networks"]["pnet"]["EndpointID"]
        join = calls(log, "netplug", "/NetworkDriver.Join")[-1]["body"]
        assert join["EndpointID"] == eid and join["SandboxKey"].endswith(a)
        ce = calls(log, "netplug", "/NetworkDriver.CreateEndpoint")[-1]["body"]
        assert ce["Interface"]["Address"].split("/")[0] == ip
        # eth0 in the container is the plugin's veth, on the plugin's bridge
        out = d.docker("exec", a, "ip", "-o", "-4", "addr", "show", "eth0").stdout.decode()
        assert f"inet {ip}/" in out
        gw = pool["Gateway"].split("/")[0]
        routes = d.docker("exec", a, "ip", "route").stdout.decode()
        assert routes.startswith(f"default via {gw}")
        assert f"10.254.1.0/24 via {gw} dev eth0" in routes and "10.254.2.0/24 dev eth0" in routes  # StaticRoutes
        p = d.docker("run", "--rm", "--network", "pnet", "busybox", "ping", "-c", "1", "-W", "5", ip)
        assert b"1 packets received" in p.stdout
        p = d.docker("network", "rm", "pnet", check=False)
        assert p.returncode != 0 and b"active endpoints" in p.stderr
        d.docker("rm", "-f", a)
        left = [c["body"]["EndpointID"] for c in calls(log, "netplug", "/NetworkDriver.Leave")]
        deleted = [c["body"]["EndpointID"] for c in calls(log, "netplug", "/NetworkDriver.DeleteEndpoint")]
        assert eid in left and eid in deleted
        joined = [c["body"]["EndpointID"] for c in calls(log, "netplug", "/NetworkDriver.Join")]
        assert sorted(joined) == sorted(left)  # the --rm pinger left too
    finally:
        d.cleanup_containers()
        d.docker("network", "rm", "pnet", check=False)
    assert calls(log, "netplug", "/NetworkDriver.DeleteNetwork")[-1]["body"] == {"NetworkID": nid}
    assert subprocess.run(["ip", "link", "show", bridge], capture_output=True).returncode != 0


def test_unknown_network_driver(setup: tuple[Daemon, Path]) -> None:
    d, _log = setup
    p = d.docker("network", "create", "-d", "nosuch", "xnet", check=False)
    assert p.returncode != 0 and b'plugin "nosuch" not found' in p.stderr
