"""Network behaviours clients rely on, through the real docker CLI (and docker-compose 1.29.2), with the
real dockerd 20.10 as the reference: dual-stack networks, IPAM options, static and link-local
addresses, MAC addresses, --internal, networks declared at create, and legacy --link.

Containers run detached and are read with exec/logs; each subnet is a free /24 reserved for this run
(tests/subnets.py) and its v6 twin fd00:<its first three octets>::/64 (the host has fd00::/64), so no
two bridges on the host, this run's or another's, overlap.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import DOCKER_CLI, Daemon, own_daemon
from tests.subnets import free_subnet

COMPOSE = shutil.which("docker-compose")


@pytest.fixture(scope="module")
def compatd() -> Iterator[Daemon]:
    with own_daemon("dy-netcompat-") as d:
        yield d


@pytest.fixture()
def nd(compatd: Daemon) -> Iterator[Daemon]:
    yield compatd
    compatd.cleanup_containers()
    for net in compatd.docker("network", "ls", "--format", "{{.Name}}").stdout.decode().split():
        if net not in ("bridge", "host", "none"):
            compatd.docker("network", "rm", net, check=False)


def inspect(d: Daemon, name: str, kind: str = "container") -> dict:
    return json.loads(d.docker(kind, "inspect", name).stdout)[0]  # type: ignore[no-any-return]


def sh(d: Daemon, ctr: str, script: str) -> str:
    return d.docker("exec", ctr, "sh", "-c", script).stdout.decode()


def ref(host: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[bytes]:
    """The docker CLI against the real dockerd."""
    p = subprocess.run([DOCKER_CLI, "-H", host, *args], capture_output=True, timeout=120)
    if check and p.returncode != 0:
        raise AssertionError(f"docker {' '.join(args)}: {p.stderr!r}")
    return p


def subnet_pair() -> tuple[str, str]:
    """A free /24's prefix ("a.b.c") and the matching v6 prefix ("fd00:a:b:c")."""
    p = str(free_subnet().network_address).rsplit(".", 1)[0]
    return p, "fd00:" + p.replace(".", ":")


DUAL = ["--ipv6", "--gateway", "{p}.254", "--ip-range", "{p}.128/25", "--aux-address", "router={p}.5",
        "--label", "tier=back", "--ipam-opt", "foo=bar", "-o", "com.docker.network.driver.mtu=1400",
        "--attachable"]


def make_dual(run: object, v4: str, v6: str, name: str) -> None:
    p = v4.rsplit(".", 1)[0]
    run("network", "create", "--subnet", v4, "--subnet", v6, *[a.format(p=p) for a in DUAL], name)  # type: ignore[operator]


def test_dual_stack_network_as_dockerd(nd: Daemon, real_dockerd: str) -> None:
    (p, p6), (q, q6) = subnet_pair(), subnet_pair()  # ours, dockerd's
    make_dual(nd.docker, f"{p}.0/24", f"{p6}::/64", "dual")
    make_dual(lambda *a: ref(real_dockerd, *a), f"{q}.0/24", f"{q6}::/64", "dual")
    try:
        ours, theirs = inspect(nd, "dual", "network"), json.loads(ref(real_dockerd, "network", "inspect", "dual").stdout)[0]
        for key in ("EnableIPv6", "Internal", "Attachable", "Labels", "Options", "Driver", "Scope"):
            assert ours[key] == theirs[key], key
        assert ours["IPAM"]["Options"] == theirs["IPAM"]["Options"] == {"foo": "bar"}
        v4, v6 = ours["IPAM"]["Config"]
        assert v4 == {"Subnet": f"{p}.0/24", "IPRange": f"{p}.128/25", "Gateway": f"{p}.254",
                      "AuxiliaryAddresses": {"router": f"{p}.5"}}
        assert v6["Subnet"] == f"{p6}::/64"  # dockerd shows no v6 Gateway unless given; we show ::1

        opts = ["--network", "dual", "--network-alias", "db", "--link-local-ip", "169.254.8.8"]
        nd.docker("run", "-d", "--name", "c1", *opts, "--mac-address", "02:42:0a:e8:00:99", "--ip", f"{p}.200",
                  "--ip6", f"{p6}::99", "busybox", "sleep", "600")
        ref(real_dockerd, "run", "-d", "--name", "c1", *opts, "--ip", f"{q}.200", "--ip6", f"{q6}::99",
            "busybox", "sleep", "600")
        mine = inspect(nd, "c1")["NetworkSettings"]["Networks"]["dual"]
        ref_ep = json.loads(ref(real_dockerd, "inspect", "c1").stdout)[0]["NetworkSettings"]["Networks"]["dual"]
        assert set(mine) >= set(ref_ep)
        assert mine["IPAMConfig"] == {"IPv4Address": f"{p}.200", "IPv6Address": f"{p6}::99",
                                      "LinkLocalIPs": ["169.254.8.8"]}
        assert ref_ep["IPAMConfig"]["LinkLocalIPs"] == ["169.254.8.8"]
        for key in ("IPPrefixLen", "GlobalIPv6PrefixLen"):
            assert mine[key] == ref_ep[key], key
        assert (mine["IPAddress"], mine["GlobalIPv6Address"], mine["Gateway"], mine["IPv6Gateway"]) == \
            (f"{p}.200", f"{p6}::99", f"{p}.254", f"{p6}::1")
        assert "db" in mine["Aliases"]

        addrs = sh(nd, "c1", "ip addr show eth0; ip -6 route; cat /etc/hosts")
        for want in (f"inet {p}.200/24 brd {p}.255", "inet 169.254.8.8/16", f"inet6 {p6}::99/64",
                     "02:42:0a:e8:00:99", f"default via {p6}::1", "mtu 1400", f"{p6}::99\t"):
            assert want in addrs, (want, addrs)

        # A second container: the first free address of the range (the aux address is never handed out),
        # and the two talk over v6, by name too.
        nd.docker("run", "-d", "--name", "c2", "--network", "dual", "busybox", "sleep", "600")
        c2 = inspect(nd, "c2")["NetworkSettings"]["Networks"]["dual"]
        assert c2["IPAddress"] == f"{p}.129" and c2["GlobalIPv6Address"].startswith(f"{p6}::")
        assert "0% packet loss" in sh(nd, "c2", f"ping -6 -c1 -W5 {p6}::99")
        assert f"{p6}::99" in sh(nd, "c2", "nslookup -type=aaaa db")
        n = inspect(nd, "dual", "network")["Containers"][inspect(nd, "c1")["Id"]]
        assert n["IPv6Address"] == f"{p6}::99/64" and n["IPv4Address"] == f"{p}.200/24"
    finally:
        ref(real_dockerd, "rm", "-f", "c1", check=False)
        ref(real_dockerd, "network", "rm", "dual", check=False)


def test_pools_refused_as_dockerd_refuses_them(nd: Daemon) -> None:
    nd.docker("network", "create", "test 01")  # dockerd takes spaces (docker-py's suite relies on it)
    assert inspect(nd, "test 01", "network")["Name"] == "test 01"
    nd.docker("network", "rm", "test 01")
    p = nd.docker("network", "create", "../x", check=False)  # but no route could reach this one
    assert p.returncode != 0 and b"invalid network name" in p.stderr
    two = list(free_subnet(23).subnets())
    p = nd.docker("network", "create", "--subnet", str(two[0]), "--subnet", str(two[1]), "two", check=False)
    assert p.returncode != 0 and b"bridge driver doesn't support multiple subnets" in p.stderr
    p = nd.docker("network", "create", "--ipv6", "nov6pool", check=False)
    assert p.returncode != 0 and b"non-overlapping IPv6 address pool" in p.stderr
    # A v6 pool without --ipv6: kept in the IPAM config, but no container gets a v6 address.
    _, v6 = subnet_pair()
    nd.docker("network", "create", "--subnet", f"{v6}::/64", "v6off")
    net = inspect(nd, "v6off", "network")
    assert net["EnableIPv6"] is False and f"{v6}::/64" in [c["Subnet"] for c in net["IPAM"]["Config"]]
    nd.docker("run", "-d", "--name", "v4only", "--network", "v6off", "busybox", "sleep", "600")
    assert "inet6 fd00" not in sh(nd, "v4only", "ip addr show eth0")
    p = nd.docker("run", "-d", "--name", "bad6", "--network", "v6off", "--ip6", f"{v6}::9",
                  "busybox", "sleep", "600", check=False)
    assert p.returncode != 0


def test_internal_network_has_no_way_out(nd: Daemon) -> None:
    nd.docker("network", "create", "--internal", "--subnet", str(free_subnet()), "vault")
    assert inspect(nd, "vault", "network")["Internal"] is True
    nd.docker("run", "-d", "--name", "inside", "--network", "vault", "busybox", "sleep", "600")
    nd.docker("run", "-d", "--name", "peer", "--network", "vault", "busybox", "sleep", "600")
    assert "default" not in sh(nd, "inside", "ip route")
    host_net = nd.docker("run", "-d", "--name", "outside", "busybox", "sleep", "600")
    assert host_net.returncode == 0
    outside = inspect(nd, "outside")["NetworkSettings"]["IPAddress"]
    p = nd.docker("exec", "inside", "ping", "-c1", "-W2", outside, check=False)
    assert p.returncode != 0  # no route out
    assert "0% packet loss" in sh(nd, "inside", "ping -c1 -W5 peer")  # names on it still resolve
    # Other names are not forwarded: DNS is no way out either.
    p = nd.docker("exec", "inside", "nslookup", "example.com", check=False)
    assert p.returncode != 0 and b"Address: " not in p.stdout.split(b"Name:")[-1]


def test_networks_declared_at_create(nd: Daemon) -> None:
    nd.docker("network", "create", "one")
    subnet = free_subnet()
    ip = str(subnet.network_address + 9)
    nd.docker("network", "create", "--subnet", str(subnet), "two")
    nd.docker("create", "--name", "made", "--network", "one", "--network-alias", "a1", "busybox", "sleep", "600")
    nets = inspect(nd, "made")["NetworkSettings"]["Networks"]
    assert list(nets) == ["one"] and nets["one"]["Aliases"] == ["a1"] and nets["one"]["IPAddress"] == ""
    nd.docker("network", "connect", "--ip", ip, "--alias", "a2", "two", "made")
    with nd.api() as api:  # a MAC address at connect (API 1.44+; the CLI has no flag for it)
        assert api.get("/v1.47/networks/one", params={"scope": "local"}).status_code == 200
        assert api.get("/v1.47/networks/one", params={"scope": "swarm"}).status_code == 404  # as dockerd
        r = api.post("/v1.47/networks/two/disconnect", json={"Container": "made"})
        assert r.status_code == 200, r.text
        r = api.post("/v1.47/networks/two/connect", json={"Container": "made", "EndpointConfig": {
            "Aliases": ["a2"], "IPAMConfig": {"IPv4Address": ip}, "MacAddress": "02:42:0a:e8:07:09",
            "DriverOpts": {"x": "1"}}})
        assert r.status_code == 200, r.text
    nets = inspect(nd, "made")["NetworkSettings"]["Networks"]
    assert set(nets) == {"one", "two"} and nets["two"]["MacAddress"] == "02:42:0a:e8:07:09"
    assert nets["two"]["DriverOpts"] == {"x": "1"}
    nd.docker("start", "made")
    nets = inspect(nd, "made")["NetworkSettings"]["Networks"]
    assert nets["two"]["IPAddress"] == ip and nets["one"]["IPAddress"]
    out = sh(nd, "made", "ip addr")
    assert "02:42:0a:e8:07:09" in out and f"{ip}/24" in out
    with nd.api() as api:  # before API 1.45 dockerd listed the short id among the aliases; after, in DNSNames
        short = inspect(nd, "made")["Id"][:12]
        old = api.get("/v1.41/containers/made/json").json()["NetworkSettings"]["Networks"]
        new = api.get("/v1.47/containers/made/json").json()["NetworkSettings"]["Networks"]
        assert old["two"]["Aliases"] == ["a2", short] and new["two"]["Aliases"] == ["a2"]
        assert short in new["two"]["DNSNames"]
    # An unknown network: as with dockerd, the container is made and its start fails on it.
    nd.docker("create", "--name", "lost", "--network", "nope", "busybox")
    p = nd.docker("start", "lost", check=False)
    assert p.returncode != 0 and b"network nope not found" in p.stderr


def test_legacy_links_on_the_default_bridge(nd: Daemon) -> None:
    nd.docker("run", "-d", "--name", "lk1", "-e", "FOO=1", "--expose", "80", "--expose", "53/udp",
              "busybox", "sleep", "600")
    nd.docker("run", "-d", "--name", "lk2", "--link", "lk1:al", "busybox", "sleep", "600")
    ip = inspect(nd, "lk1")["NetworkSettings"]["IPAddress"]
    env = set(sh(nd, "lk2", "env").splitlines())
    # What dockerd 20.10 gives for the same two containers (its output, with our address).
    want = {f"AL_PORT=udp://{ip}:53", f"AL_PORT_53_UDP=udp://{ip}:53", f"AL_PORT_53_UDP_ADDR={ip}",
            "AL_PORT_53_UDP_PORT=53", "AL_PORT_53_UDP_PROTO=udp", f"AL_PORT_80_TCP=tcp://{ip}:80",
            f"AL_PORT_80_TCP_ADDR={ip}", "AL_PORT_80_TCP_PORT=80", "AL_PORT_80_TCP_PROTO=tcp",
            "AL_NAME=/lk2/al", "AL_ENV_FOO=1"}
    assert want <= env, want - env
    assert not [e for e in env if e.startswith(("AL_ENV_PATH", "AL_ENV_HOME"))]
    short = inspect(nd, "lk1")["Id"][:12]
    assert f"{ip}\tal {short} lk1" in sh(nd, "lk2", "cat /etc/hosts")
    assert inspect(nd, "lk2")["HostConfig"]["Links"] == ["/lk1:/lk2/al"]
    names = nd.docker("ps", "--no-trunc", "--filter", "name=lk1", "--format", "{{.Names}}").stdout.decode().strip()
    assert set(names.split(",")) == {"lk1", "lk2/al"}
    nd.docker("rm", "--link", "lk2/al")
    assert inspect(nd, "lk2")["HostConfig"]["Links"] is None
    assert nd.docker("ps", "--no-trunc", "--filter", "name=lk1", "--format", "{{.Names}}").stdout.decode().strip() \
        == "lk1"
    assert inspect(nd, "lk1")["State"]["Running"] and inspect(nd, "lk2")["State"]["Running"]
    p = nd.docker("create", "--link", "ghost:g", "busybox", check=False)
    assert p.returncode != 0 and b"could not get container for ghost: No such container: ghost" in p.stderr


DUAL_PROJECT = """
version: "2.4"
services:
  app:
    image: busybox
    command: ["sleep", "600"]
    networks:
      dual:
        ipv4_address: {p}.10
        ipv6_address: {p6}::10
        link_local_ips: [169.254.8.10]
        aliases: [application]
  peer:
    image: busybox
    command: ["sleep", "600"]
    networks: [dual]
networks:
  dual:
    enable_ipv6: true
    ipam:
      driver: default
      options: {foo: bar}
      config:
        - subnet: {p}.0/24
          gateway: {p}.1
          ip_range: {p}.128/25
          aux_addresses: {router: {p}.2}
        - subnet: {p6}::/64
          gateway: {p6}::1
"""


@pytest.mark.skipif(COMPOSE is None, reason="docker-compose (Debian package) is not installed")
def test_compose_dual_stack_static_and_link_local(nd: Daemon, tmp_path: Path) -> None:
    p, p6 = subnet_pair()
    (tmp_path / "docker-compose.yml").write_text(DUAL_PROJECT.replace("{p}", p).replace("{p6}", p6))
    env = {k: v for k, v in nd.env.items() if not k.startswith("COMPOSE_")}

    def compose(*args: str) -> None:
        p = subprocess.run([str(COMPOSE), "--ansi", "never", "-p", "ds", *args], cwd=tmp_path, env=env,
                           capture_output=True, text=True, timeout=180, stdin=subprocess.DEVNULL)
        assert p.returncode == 0, p.stdout + p.stderr

    compose("up", "-d")
    try:
        ep = inspect(nd, "ds_app_1")["NetworkSettings"]["Networks"]["ds_dual"]
        assert (ep["IPAddress"], ep["GlobalIPv6Address"]) == (f"{p}.10", f"{p6}::10")
        assert ep["IPAMConfig"]["LinkLocalIPs"] == ["169.254.8.10"]
        assert "inet 169.254.8.10/16" in sh(nd, "ds_app_1", "ip addr show eth0")
        peer = inspect(nd, "ds_peer_1")["NetworkSettings"]["Networks"]["ds_dual"]
        assert peer["IPAddress"] == f"{p}.129"
        assert f"{p6}::10" in sh(nd, "ds_peer_1", "nslookup -type=aaaa application")
        assert "0% packet loss" in sh(nd, "ds_peer_1", f"ping -6 -c1 -W5 {p6}::10")
        compose("up", "-d", "--force-recreate", "app")  # recreated with the same static addresses
        ep = inspect(nd, "ds_app_1")["NetworkSettings"]["Networks"]["ds_dual"]
        assert (ep["IPAddress"], ep["GlobalIPv6Address"]) == (f"{p}.10", f"{p6}::10")
    finally:
        compose("down", "-t", "1")
