"""Single-node swarm mode through the real docker CLI, with the real dockerd 20.10 as the reference:
`swarm init`, /info's Swarm block, nodes, overlay networks (swarm scope, attachable, ingress), containers
on an attachable overlay network, the errors on the way, `swarm leave --force`; and that the swarm and
its networks survive a daemon restart as dockerd's do.

Each daemon's swarm listens (ListenAddr) on a loopback port of its own; the reference dockerd's leave
leaves its docker_gwbridge behind, which the fixture removes.
"""

from __future__ import annotations

import json
import re
import socket
import subprocess
from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import DOCKER_CLI, Daemon, own_daemon


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Cli:
    """The docker CLI against one daemon."""

    def __init__(self, host: str) -> None:
        self.host = host

    def __call__(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        p = subprocess.run([DOCKER_CLI, "-H", self.host, *args], capture_output=True, text=True, timeout=120)
        if check and p.returncode != 0:
            raise AssertionError(f"docker {' '.join(args)} on {self.host}: {p.stderr!r}")
        return p

    def init(self) -> subprocess.CompletedProcess[str]:
        return self("swarm", "init", "--advertise-addr", "127.0.0.1", "--listen-addr", f"127.0.0.1:{_free_port()}")

    def leave(self) -> None:
        self("rm", "-f", *self("ps", "-aq").stdout.split(), check=False)
        self("swarm", "leave", "--force", check=False)


@pytest.fixture(scope="module")
def swarmd() -> Iterator[Daemon]:
    with own_daemon("dy-swarm-") as d:
        yield d


@pytest.fixture()
def pair(swarmd: Daemon, real_dockerd: str) -> Iterator[tuple[Cli, Cli]]:
    ours, ref = Cli(swarmd.host), Cli(real_dockerd)
    yield ours, ref
    for cli in (ours, ref):
        cli.leave()
        for net in cli("network", "ls", "--filter", "type=custom", "-q").stdout.split():
            cli("network", "rm", net, check=False)
    ref("network", "rm", "docker_gwbridge", check=False)  # dockerd keeps it after leave


def _masked(text: str) -> str:
    """IDs, tokens and swarm ports differ between any two swarms."""
    text = re.sub(r"SWMTKN-1-[0-9a-z]{50}-[0-9a-z]{25}", "SWMTKN", text)
    text = re.sub(r"127\.0\.0\.1:\d+", "127.0.0.1:PORT", text)
    text = re.sub(r"\b[0-9a-f]{64}\b", "ID", text)
    return re.sub(r"\b[0-9a-z]{25}\b", "ID", text)


def _both(ours: Cli, ref: Cli, *args: str) -> tuple[tuple[int, str, str], tuple[int, str, str]]:
    a, b = ours(*args, check=False), ref(*args, check=False)
    return ((a.returncode, _masked(a.stdout), _masked(a.stderr)), (b.returncode, _masked(_no_gw(b.stdout)),
                                                                    _masked(b.stderr)))


def _no_gw(text: str) -> str:
    """dockerd's swarm init also makes docker_gwbridge, the local bridge its overlay containers reach out
    by; here an overlay network is a bridge with its own way out, and there is none."""
    return "".join(line for line in text.splitlines(keepends=True) if "docker_gwbridge" not in line)


def _same(ours: Cli, ref: Cli, *args: str) -> tuple[int, str, str]:
    mine, theirs = _both(ours, ref, *args)
    assert mine == theirs, args
    return mine


SWARM_INFO = "{{.Swarm.LocalNodeState}} {{.Swarm.ControlAvailable}} {{.Swarm.NodeAddr}} {{.Swarm.Nodes}} " \
             "{{.Swarm.Managers}} {{len .Swarm.RemoteManagers}} {{.Swarm.Error}}"
NET = "{{.Name}} {{.Driver}} {{.Scope}} {{.Attachable}} {{.Ingress}} {{.Internal}} {{json .Labels}} " \
      "{{json .IPAM.Options}} {{json .Containers}} {{len .IPAM.Config}} {{.ConfigOnly}}"


def test_init_inspect_and_leave_as_dockerd(pair: tuple[Cli, Cli]) -> None:
    ours, ref = pair
    _same(ours, ref, "info", "-f", "{{json .Swarm}}")
    _same(ours, ref, "swarm", "leave", "--force")  # not in a swarm: the same error
    a, b = ours.init(), ref.init()
    assert _masked(a.stdout) == _masked(b.stdout)
    assert "is now a manager" in a.stdout and "docker swarm join --token SWMTKN" in _masked(a.stdout)
    _same(ours, ref, "info", "-f", SWARM_INFO)
    _same(ours, ref, "swarm", "init")  # already part of a swarm
    _same(ours, ref, "swarm", "leave")  # the last manager: --force needed
    _same(ours, ref, "node", "ls", "--format", "{{.Self}} {{.Status}} {{.Availability}} {{.ManagerStatus}}")
    _same(ours, ref, "node", "inspect", "self", "-f",
          "{{.Spec.Role}} {{.Spec.Availability}} {{.Status.State}} {{.Status.Addr}} {{.ManagerStatus.Leader}} "
          "{{.ManagerStatus.Reachability}} {{.Description.Hostname}} {{.Description.Platform.OS}}")
    _same(ours, ref, "swarm", "join-token", "worker", "-q")
    _same(ours, ref, "swarm", "join-token", "--rotate", "manager", "-q")
    _same(ours, ref, "swarm", "inspect", "-f", "{{.Spec.Name}} {{json .Spec.Raft}} {{json .Spec.Dispatcher}} "
          "{{json .Spec.Orchestration}} {{.DataPathPort}} {{.SubnetSize}}")
    _same(ours, ref, "swarm", "update", "--task-history-limit", "3")
    _same(ours, ref, "swarm", "inspect", "-f", "{{json .Spec.Orchestration}}")
    _same(ours, ref, "swarm", "unlock-key", "-q")  # no autolock: an empty key, as dockerd prints it
    _same(ours, ref, "network", "ls", "--filter", "scope=swarm", "--format", "{{.Name}} {{.Driver}} {{.Scope}}")
    # the ingress network's members: dockerd's routing-mesh sandbox (no services here, so no mesh)
    _same(ours, ref, "network", "inspect", "ingress", "-f", NET.replace("{{json .Containers}}", ""))
    assert json.loads(ours("network", "inspect", "ingress").stdout)[0]["IPAM"]["Config"][0]["Subnet"].startswith("10.")
    _same(ours, ref, "secret", "ls", "-q")
    _same(ours, ref, "service", "ls", "-q")
    a2 = ours("service", "create", "--name", "web", "busybox", "sleep", "60", check=False)
    assert a2.returncode != 0 and "runs no services" in a2.stderr  # refused with why, in Docker's shape
    assert a2.stderr.startswith("Error response from daemon: ")
    _same(ours, ref, "swarm", "leave", "--force")
    _same(ours, ref, "info", "-f", "{{json .Swarm}}")
    _same(ours, ref, "network", "ls", "--filter", "scope=swarm", "-q")


def test_overlay_networks_as_dockerd(pair: tuple[Cli, Cli]) -> None:
    ours, ref = pair
    _same(ours, ref, "network", "create", "-d", "overlay", "ov-before")  # not a manager yet
    _same(ours, ref, "network", "create", "--scope", "swarm", "br-before")
    ours.init()
    ref.init()
    for args in (["-d", "overlay", "--attachable", "ov-att"], ["-d", "overlay", "ov-plain"],
                 ["-d", "overlay", "--internal", "--label", "a=b", "-o", "x=y", "ov-int"],
                 ["--scope", "local", "loc"]):
        _same(ours, ref, "network", "create", *args)
    for name in ("ov-att", "ov-plain", "ov-int", "loc"):
        _same(ours, ref, "network", "inspect", name, "-f", NET)
        _same(ours, ref, "network", "inspect", name, "-f", "{{json .Options}}")
    _same(ours, ref, "network", "create", "-d", "overlay", "--scope", "local", "ov-down")
    _same(ours, ref, "network", "create", "--ingress", "br-ingress")
    _same(ours, ref, "network", "create", "-d", "overlay", "--ingress", "ov-ingress2")  # ingress exists
    _same(ours, ref, "network", "ls", "--filter", "scope=swarm", "--format", "{{.Name}} {{.Driver}} {{.Scope}}")
    _same(ours, ref, "network", "ls", "--filter", "scope=local", "--filter", "type=custom", "--format", "{{.Name}}")
    # docker-py's checks: ?scope= finds a network only in its own scope
    for name, scope in (("ov-att", "swarm"), ("ov-att", "local"), ("loc", "local"), ("loc", "global")):
        codes = []
        for cli in (ours, ref):
            with httpx.Client(transport=httpx.HTTPTransport(uds=cli.host.removeprefix("unix://")),
                              base_url="http://d/v1.41", timeout=60) as c:
                codes.append(c.get(f"/networks/{name}", params={"scope": scope}).status_code)
        assert codes[0] == codes[1] == (200 if scope == ("swarm" if name == "ov-att" else "local") else 404)
    # the ingress network may be removed and made again
    _same(ours, ref, "network", "rm", "ingress")
    _same(ours, ref, "network", "create", "-d", "overlay", "--ingress", "ingress2")
    _same(ours, ref, "network", "inspect", "ingress2", "-f", NET.replace("{{json .Containers}}", ""))

    # containers: on an attachable network they run and resolve each other; on another they may not
    for cli in (ours, ref):
        cli("run", "-d", "--name", "srv", "--network", "ov-att", "-p", "127.0.0.1::80", "busybox", "sleep", "300")
    _same(ours, ref, "run", "--rm", "--network", "ov-att", "busybox", "sh", "-c",
          "nslookup srv >/dev/null && ping -c1 -W5 srv >/dev/null && echo reached")
    _same(ours, ref, "run", "--rm", "--network", "ov-plain", "busybox", "true")
    _same(ours, ref, "network", "rm", "ingress2")
    _same(ours, ref, "network", "create", "-d", "overlay", "--ingress", "ingress3")
    _same(ours, ref, "network", "create", "-d", "overlay", "unused-ov")
    # prune takes unused swarm networks too, never the ingress network (dockerd: "has to be explicitly
    # invoked by user") nor one a container is on
    mine, theirs = _both(ours, ref, "network", "prune", "-f")  # the same networks; dockerd's order is its store's
    assert sorted(mine[1].splitlines()) == sorted(theirs[1].splitlines()) and mine[0] == theirs[0] == 0
    _same(ours, ref, "network", "ls", "--filter", "scope=swarm", "--format", "{{.Name}}")
    # leaving the swarm takes its networks, and the containers on them lose those
    _same(ours, ref, "swarm", "leave", "--force")
    _same(ours, ref, "inspect", "srv", "-f", "{{.State.Running}} {{len .NetworkSettings.Networks}} "
          "{{json .NetworkSettings.Ports}}")
    _same(ours, ref, "port", "srv")  # the published port went with the network
    _same(ours, ref, "network", "ls", "--filter", "type=custom", "--format", "{{.Name}} {{.Driver}} {{.Scope}}")


def test_swarm_and_its_networks_survive_a_restart(swarmd: Daemon) -> None:
    cli = Cli(swarmd.host)
    try:
        cli.init()
        node = cli("info", "-f", "{{.Swarm.NodeID}}").stdout.strip()
        cli("network", "create", "-d", "overlay", "--attachable", "keep")
        cli("run", "-d", "--name", "stay", "--network", "keep", "busybox", "sleep", "300")
        swarmd.stop()
        swarmd.start()
        assert cli("info", "-f", "{{.Swarm.NodeID}} {{.Swarm.LocalNodeState}}").stdout.split() == [node, "active"]
        assert cli("node", "ls", "-q").stdout.split() == [node]
        assert cli("network", "inspect", "keep", "-f", "{{.Driver}} {{.Scope}}").stdout.split() == ["overlay", "swarm"]
        out = cli("run", "--rm", "--network", "keep", "busybox", "sh", "-c", "ping -c1 -W5 stay >/dev/null && echo ok")
        assert out.stdout.strip() == "ok"
        cli("network", "create", "-d", "overlay", "--attachable", "after")  # a manager still
    finally:
        cli.leave()
    assert cli("info", "-f", "{{.Swarm.LocalNodeState}}").stdout.strip() == "inactive"
    assert "keep" not in cli("network", "ls", "--format", "{{.Name}}").stdout.split()
