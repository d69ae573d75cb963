"""The real docker CLI (v28) against our daemon: published ports, networks, DNS and network options.

Web servers are busybox `httpd` inside containers; every request goes to loopback, the host's own
address or a container address on a bridge this daemon made. The module runs its own daemon so it
can check at the end that nothing network-related is left on the host.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest

from tests.conftest import Daemon, own_daemon
from tests.subnets import free_subnet

WEB = "mkdir -p /www && echo hello-$(hostname) > /www/index.html && exec httpd -f -p 80 -h /www"


@pytest.fixture(scope="module")
def netd() -> Iterator[Daemon]:
    with own_daemon("dy-net-") as d:
        yield d
        _assert_no_leaks(d)


@pytest.fixture()
def nd(netd: Daemon) -> Iterator[Daemon]:
    yield netd
    if netd.proc is None:  # a crash test that failed half way
        netd.start()
    netd.cleanup_containers()
    for net in netd.docker("network", "ls", "--format", "{{.Name}}").stdout.decode().split():
        if net not in ("bridge", "host", "none"):
            netd.docker("network", "rm", net, check=False)


# ---- helpers ------------------------------------------------------------------------------------

def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("0.0.0.0", 0))
        return int(s.getsockname()[1])


def host_ip() -> str:
    """The host's address on its default route (not loopback)."""
    out = subprocess.run(["ip", "-j", "route", "get", "192.0.2.123"], capture_output=True, text=True).stdout
    src = json.loads(out)[0].get("prefsrc")
    if not src:
        pytest.skip("no non-loopback host address")
    return str(src)


def get(url: str, tries: int = 100) -> str:
    """GET with retries while the server inside the container starts."""
    last: Exception | None = None
    for _ in range(tries):
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                return r.read().decode()
        except (urllib.error.URLError, ConnectionError, OSError) as e:
            last = e
            time.sleep(0.05)
    raise AssertionError(f"GET {url}: {last}")


def refused(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=3):
            return False
    except OSError:
        return True


def web(d: Daemon, name: str, *opts: str) -> str:
    return d.docker("run", "-d", "--name", name, *opts, "busybox", "sh", "-c", WEB).stdout.decode().strip()


def inspect(d: Daemon, name: str, kind: str = "container") -> dict:
    return json.loads(d.docker(kind, "inspect", name).stdout)[0]  # type: ignore[no-any-return]


def sh(d: Daemon, *args: str, check: bool = True) -> subprocess.CompletedProcess[bytes]:
    """A throwaway busybox container running a shell snippet."""
    return d.docker("run", "--rm", *args[:-1], "busybox", "sh", "-c", args[-1], check=check)


def bridge_of(d: Daemon, net: str = "bridge") -> str:
    n = inspect(d, net, "network")
    return str(n["Options"].get("com.docker.network.bridge.name") or "br-" + n["Id"][:12])


def _links_on(bridge: str) -> list[str]:
    out = subprocess.run(["ip", "-j", "link", "show", "master", bridge], capture_output=True, text=True)
    return [link["ifname"] for link in json.loads(out.stdout or "[]")] if out.returncode == 0 else []


def _assert_no_leaks(d: Daemon) -> None:
    """With every container and network gone, then the daemon stopped: no veth, netns, bridge,
    nft table or mount of this daemon remains."""
    from dockyard.daemon.config import DaemonConfig
    from dockyard.daemon.wiring import instance_id

    d.cleanup_containers()
    bridge = bridge_of(d)
    netns_dir = d.exec_root / "netns"
    # A removed container's veth and netns go just after its removal has answered (in the background).
    deadline = time.monotonic() + 10
    while (_links_on(bridge) or (netns_dir.exists() and list(netns_dir.iterdir()))) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _links_on(bridge) == []
    assert not netns_dir.exists() or list(netns_dir.iterdir()) == []
    iid = instance_id(DaemonConfig(data_root=d.data_root))
    table = f"dockyard_{iid}"
    rules = subprocess.run(["nft", "list", "chain", "ip", table, "ports"], capture_output=True, text=True).stdout
    assert "dnat" not in rules
    d.stop()
    assert subprocess.run(["ip", "link", "show", bridge], capture_output=True).returncode != 0
    assert subprocess.run(["nft", "list", "table", "ip", table], capture_output=True).returncode != 0
    with open("/proc/self/mountinfo") as f:
        assert [m for m in (line.split()[4] for line in f) if m.startswith(str(d.base))] == []


# ---- published ports ----------------------------------------------------------------------------

def test_publish_loopback_host_address_and_hairpin(nd: Daemon) -> None:
    port = free_port()
    web(nd, "web1", "-p", f"{port}:80")
    assert get(f"http://127.0.0.1:{port}/").startswith("hello-")
    assert get(f"http://{host_ip()}:{port}/").startswith("hello-")
    # Hairpin: another container on the same bridge reaching the published port.
    p = sh(nd, f"wget -qO- http://{host_ip()}:{port}/")
    assert p.stdout.startswith(b"hello-")

    assert nd.docker("port", "web1").stdout.decode().splitlines()[0] == f"80/tcp -> 0.0.0.0:{port}"
    assert nd.docker("port", "web1", "80").stdout.decode().splitlines()[0] == f"0.0.0.0:{port}"
    ps = nd.docker("ps", "--filter", "name=web1", "--format", "{{.Ports}}").stdout.decode().strip()
    assert ps == f"0.0.0.0:{port}->80/tcp"
    ns = inspect(nd, "web1")["NetworkSettings"]
    assert ns["Ports"] == {"80/tcp": [{"HostIp": "0.0.0.0", "HostPort": str(port)}]}
    assert ns["IPAddress"] and ns["IPAddress"] == ns["Networks"]["bridge"]["IPAddress"]
    assert ns["Gateway"] and ns["MacAddress"]
    # The container's own address answers too (the host routes to the bridge).
    assert get(f"http://{ns['IPAddress']}:80/").startswith("hello-")


def test_publish_on_one_host_address(nd: Daemon) -> None:
    port = free_port()
    web(nd, "web2", "-p", f"127.0.0.1:{port}:80")
    assert get(f"http://127.0.0.1:{port}/").startswith("hello-")
    assert refused(host_ip(), port)
    assert nd.docker("port", "web2", "80/tcp").stdout.decode().strip() == f"127.0.0.1:{port}"


def test_publish_udp(nd: Daemon) -> None:
    # busybox has no UDP server, so a Python one listens inside the container's netns (via nsenter).
    port = free_port(socket.SOCK_DGRAM)
    nd.docker("run", "-d", "--name", "udp", "-p", f"{port}:80/udp", "busybox", "sleep", "300")
    assert nd.docker("port", "udp").stdout.decode().strip() == f"80/udp -> 0.0.0.0:{port}"
    pid = inspect(nd, "udp")["State"]["Pid"]
    server = ("import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(('0.0.0.0', 80));"
              "print('ready', flush=True); print(s.recvfrom(100)[0].decode(), flush=True)")
    with subprocess.Popen(["nsenter", f"--net=/proc/{pid}/ns/net", sys.executable, "-c", server],
                          stdout=subprocess.PIPE, text=True) as srv:
        try:
            assert srv.stdout is not None and srv.stdout.readline().strip() == "ready"
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                s.sendto(b"ping-udp", ("127.0.0.1", port))
            assert srv.stdout.readline().strip() == "ping-udp"
        finally:
            srv.kill()


def test_publish_ephemeral_and_publish_all(nd: Daemon) -> None:
    web(nd, "eph", "-p", "80")
    line = nd.docker("port", "eph", "80").stdout.decode().splitlines()[0]
    hostport = int(line.rsplit(":", 1)[1])
    assert hostport > 0
    assert get(f"http://127.0.0.1:{hostport}/").startswith("hello-")

    # -P publishes what the image EXPOSEs.
    nd.docker("create", "--name", "tmp", "busybox", "true")
    nd.docker("commit", "--change", "EXPOSE 80", "tmp", "busybox-web:exposed")
    try:
        nd.docker("run", "-d", "--name", "all", "-P", "busybox-web:exposed", "sh", "-c", WEB)
        ports = inspect(nd, "all")["NetworkSettings"]["Ports"]
        assert list(ports) == ["80/tcp"]
        assert get(f"http://127.0.0.1:{ports['80/tcp'][0]['HostPort']}/").startswith("hello-")
    finally:
        nd.docker("rm", "-f", "all", check=False)
        nd.docker("rmi", "busybox-web:exposed", check=False)


def test_host_port_in_use_fails_at_start(nd: Daemon) -> None:
    with socket.socket() as holder:
        holder.bind(("0.0.0.0", 0))
        holder.listen()
        port = holder.getsockname()[1]
        p = nd.docker("run", "-d", "--name", "clash", "-p", f"{port}:80", "busybox", "sleep", "60", check=False)
        assert p.returncode != 0
        assert b"address already in use" in p.stderr, p.stderr
        assert inspect(nd, "clash")["State"]["Running"] is False
    # Allocated by another container: docker's own message.
    port = free_port()
    web(nd, "first", "-p", f"{port}:80")
    p = nd.docker("run", "-d", "--name", "second", "-p", f"{port}:80", "busybox", "sleep", "60", check=False)
    assert p.returncode != 0
    assert b"port is already allocated" in p.stderr or b"address already in use" in p.stderr, p.stderr


# ---- user networks ------------------------------------------------------------------------------

def test_network_lifecycle(nd: Daemon) -> None:
    subnet = free_subnet()
    prefix = str(subnet.network_address)[:-1]  # "a.b.c."
    nid = nd.docker("network", "create", "--subnet", str(subnet), "--label", "t=1", "n1").stdout.decode().strip()
    assert len(nid) == 64
    ls = nd.docker("network", "ls", "--format", "{{.Name}} {{.Driver}}").stdout.decode().splitlines()
    assert {"bridge bridge", "host host", "none null", "n1 bridge"} <= set(ls)
    n = inspect(nd, "n1", "network")
    assert n["Id"] == nid and n["Driver"] == "bridge" and n["Labels"] == {"t": "1"}
    assert n["IPAM"]["Config"][0]["Subnet"] == str(subnet)

    nd.docker("run", "-d", "--name", "c1", "busybox", "sleep", "300")
    nd.docker("network", "connect", "--alias", "svc", "n1", "c1")
    nets = inspect(nd, "c1")["NetworkSettings"]["Networks"]
    assert set(nets) == {"bridge", "n1"}
    assert nets["n1"]["IPAddress"].startswith(prefix)
    assert "svc" in (nets["n1"]["Aliases"] or [])
    assert prefix.encode() in nd.docker("exec", "c1", "ip", "-4", "addr").stdout
    assert "c1" in [c["Name"] for c in inspect(nd, "n1", "network")["Containers"].values()]

    p = nd.docker("network", "rm", "n1", check=False)
    assert p.returncode != 0 and b"active endpoints" in p.stderr
    nd.docker("network", "disconnect", "n1", "c1")
    assert set(inspect(nd, "c1")["NetworkSettings"]["Networks"]) == {"bridge"}
    assert prefix.encode() not in nd.docker("exec", "c1", "ip", "-4", "addr").stdout
    nd.docker("network", "rm", "n1")
    assert nd.docker("network", "inspect", "n1", check=False).returncode != 0

    nd.docker("network", "create", "unused")
    pruned = nd.docker("network", "prune", "-f").stdout.decode()
    assert "unused" in pruned
    assert b"unused" not in nd.docker("network", "ls").stdout


def test_overlapping_subnets_error(nd: Daemon) -> None:
    outer = free_subnet(20)
    nd.docker("network", "create", "--subnet", str(outer), "ov1")
    p = nd.docker("network", "create", "--subnet", str(list(outer.subnets(new_prefix=24))[5]), "ov2", check=False)
    assert p.returncode != 0
    assert b"overlaps" in p.stderr, p.stderr


def test_names_and_aliases_on_a_user_network(nd: Daemon) -> None:
    nd.docker("network", "create", "app")
    web(nd, "api", "--network", "app", "--network-alias", "backend")
    for target in ("api", "backend"):
        p = sh(nd, "--network", "app", f"wget -qO- http://{target}/")
        assert p.stdout.startswith(b"hello-"), (target, p)
    ip = inspect(nd, "api")["NetworkSettings"]["Networks"]["app"]["IPAddress"]
    assert ip.encode() in sh(nd, "--network", "app", "nslookup api").stdout
    assert sh(nd, "--network", "app", "ping -c1 -W5 backend").returncode == 0
    # The embedded DNS server: Docker's sits at 127.0.0.11; ours listens on the network's gateway.
    gw = inspect(nd, "app", "network")["IPAM"]["Config"][0]["Gateway"]
    resolv = sh(nd, "--network", "app", "cat /etc/resolv.conf").stdout.decode()
    assert f"nameserver {gw}" in resolv or "nameserver 127.0.0.11" in resolv


def test_default_bridge_has_no_name_resolution(nd: Daemon) -> None:
    web(nd, "plain")
    p = sh(nd, "ping -c1 -W2 plain", check=False)
    assert p.returncode != 0
    ip = inspect(nd, "plain")["NetworkSettings"]["IPAddress"]
    assert sh(nd, f"wget -qO- http://{ip}/").stdout.startswith(b"hello-")


# ---- network modes and options ------------------------------------------------------------------

def test_network_host_none_and_container(nd: Daemon) -> None:
    host_links = sh(nd, "--network", "host", "ip -o link").stdout.decode()
    assert "lo" in host_links and len(host_links.splitlines()) > 1
    assert sh(nd, "--network", "host", "hostname").stdout.decode().strip() == socket.gethostname()

    none = sh(nd, "--network", "none", "ip -o link").stdout.decode().splitlines()
    assert len(none) == 1 and ": lo:" in none[0]

    web(nd, "box")
    p = sh(nd, "--network", "container:box", "wget -qO- http://127.0.0.1/")
    assert p.stdout.startswith(b"hello-")
    ip = inspect(nd, "box")["NetworkSettings"]["IPAddress"]
    assert ip.encode() in sh(nd, "--network", "container:box", "ip -4 addr").stdout


def test_dns_add_host_hostname_ip_mac(nd: Daemon) -> None:
    subnet = free_subnet()
    ip = str(subnet.network_address + 77)
    mac = "02:42:" + ":".join(f"{int(o):02x}" for o in ip.split("."))
    nd.docker("network", "create", "--subnet", str(subnet), "opts")
    p = sh(nd, "--network", "opts", "--ip", ip, "--mac-address", mac,
           "--hostname", "myhost", "--add-host", "db.local:10.1.2.3", "--dns", "10.9.9.9",
           "hostname; cat /etc/hosts; cat /etc/resolv.conf; ip addr show eth0")
    out = p.stdout.decode()
    assert out.splitlines()[0] == "myhost"
    assert "10.1.2.3\tdb.local" in out or "10.1.2.3 db.local" in out
    assert ip in out and mac in out
    # --dns on a user network: the embedded server answers (and forwards to 10.9.9.9).
    gw = inspect(nd, "opts", "network")["IPAM"]["Config"][0]["Gateway"]
    assert f"nameserver {gw}" in out or "nameserver 127.0.0.11" in out, out
    p = sh(nd, "--dns", "10.9.9.9", "--dns-search", "example.test", "cat /etc/resolv.conf")
    assert b"nameserver 10.9.9.9" in p.stdout and b"search example.test" in p.stdout
    # --ip outside the subnet: an error, not a container.
    p = nd.docker("run", "--rm", "--network", "opts", "--ip", "10.99.0.5", "busybox", "true", check=False)
    assert p.returncode != 0


# ---- the daemon crashes with a published port in use --------------------------------------------

def test_daemon_crash_keeps_published_port(nd: Daemon) -> None:
    port = free_port()
    web(nd, "survivor", "-p", f"{port}:80")
    before = get(f"http://127.0.0.1:{port}/")
    nd.kill()
    assert get(f"http://127.0.0.1:{port}/") == before  # the DNAT rule is kernel state
    nd.start()
    assert inspect(nd, "survivor")["State"]["Running"] is True
    assert get(f"http://127.0.0.1:{port}/") == before
    assert nd.docker("port", "survivor").stdout.decode().splitlines()[0] == f"80/tcp -> 0.0.0.0:{port}"
    # The port is still held: nobody else gets it.
    p = nd.docker("run", "-d", "--name", "thief", "-p", f"{port}:80", "busybox", "sleep", "60", check=False)
    assert p.returncode != 0
    nd.docker("stop", "survivor")
    assert refused("127.0.0.1", port)
    nd.docker("rm", "survivor")
    assert _links_on(bridge_of(nd)) == []
