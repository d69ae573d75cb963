"""`dockyard explain` / GET /dockyard/containers/{id}/internals against real containers: what it
reports must be what /proc, the cgroup files, `ip link` and nft say."""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import Daemon

pytestmark = [pytest.mark.root, pytest.mark.skipif(os.geteuid() != 0, reason="needs root")]

NAMESPACES = ("mnt", "uts", "ipc", "pid", "net", "cgroup", "user")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def ns_inode(pid: int | str, ns: str) -> int:
    return os.stat(f"/proc/{pid}/ns/{ns}").st_ino


def explain(d: Daemon, ref: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(d.dockyard("explain", "--format", "json", ref).stdout)
    return data


@pytest.fixture
def volume(clean_daemon: Daemon) -> Iterator[str]:
    name = "explain-" + secrets.token_hex(4)
    clean_daemon.docker("volume", "create", name)
    yield name
    clean_daemon.cleanup_containers()
    clean_daemon.docker("volume", "rm", "-f", name)


def test_explain_running_container_matches_the_kernel(clean_daemon: Daemon, volume: str) -> None:
    d, port = clean_daemon, free_port()
    cid = d.docker("run", "-d", "-p", f"127.0.0.1:{port}:80", "--memory", "64m", "--pids-limit", "50",
                   "-v", f"{volume}:/data", "--tmpfs", "/scratch", "busybox", "sleep", "300").stdout.decode().strip()
    info = explain(d, cid)
    assert info["Running"] and info["Id"] == cid
    pid = info["Process"]["HostPid"]
    assert pid == json.loads(d.docker("inspect", cid).stdout)[0]["State"]["Pid"]

    # Namespaces: own vs shared exactly as the inode numbers in /proc say (the daemon runs in ours).
    for ns in info["Namespaces"]:
        assert ns["Inode"] == ns_inode(pid, ns["Type"])
        assert ns["Shared"] == (ns_inode(pid, ns["Type"]) == ns_inode("self", ns["Type"])), ns
        assert ns["Why"]
    by_type = {n["Type"]: n for n in info["Namespaces"]}
    assert set(by_type) == set(NAMESPACES)
    assert not by_type["pid"]["Shared"] and not by_type["net"]["Shared"] and not by_type["mnt"]["Shared"]

    proc = info["Process"]
    assert proc["ContainerPid"] == 1 and proc["Command"] == ["sleep", "300"]
    assert "CAP_CHOWN" in proc["Capabilities"] and "CAP_SYS_ADMIN" not in proc["Capabilities"]
    assert proc["Seccomp"] == "filter"
    assert info["Monitor"]["ConmonPid"] == proc["Parent"]["Pid"] and proc["Parent"]["Name"] == "conmon"

    # Root filesystem: the overlay, with the image's layer and the init layer named.
    roles = [layer["Role"] for layer in info["Rootfs"]["Lower"]]
    assert info["Rootfs"]["Mounted"] and roles[0] == "init layer" and roles[-1].startswith("image layer 1/")
    assert info["Rootfs"]["Upper"].endswith(f"{cid}/upper")

    mounts = {m["Target"]: m for m in info["Mounts"]}
    assert volume in mounts["/data"]["Why"]
    assert mounts["/scratch"]["Type"] == "tmpfs" and "--tmpfs" in mounts["/scratch"]["Why"]
    assert mounts["/proc"]["Type"] == "proc" and "masked" in mounts["/proc/keys"]["Why"]

    limits = {lim["Name"]: lim["Value"] for lim in info["Cgroups"]["Limits"]}
    assert limits["memory"] == 64 * 1024 * 1024 and limits["pids"] == 50
    assert all(cid in path for path in info["Cgroups"]["Paths"].values())

    net = info["Network"]
    (eth0,) = net["Interfaces"]
    ip = eth0["Addresses"][0].split("/")[0]
    assert eth0["Container"] == "eth0" and eth0["Bridge"]
    assert subprocess.run(["ip", "link", "show", eth0["Host"]], capture_output=True).returncode == 0
    dnat = [r for r in net["Rules"] if f"dport {port} dnat to {ip}:80" in r["Rule"]]
    assert dnat and dnat[0]["Chain"] == "ports" and "-p" in dnat[0]["Why"]
    assert any("masquerade" in r["Rule"] for r in net["Rules"])

    text = d.dockyard("explain", cid).stdout.decode()
    for heading in ("NAMESPACES", "PROCESS", "ROOT FILESYSTEM", "MOUNTS", "CGROUPS (v", "NETWORK (bridge)"):
        assert heading in text
    assert f"dnat to {ip}:80" in text and "why:" in text


def test_explain_host_network_shares_the_net_namespace(clean_daemon: Daemon) -> None:
    cid = clean_daemon.docker("run", "-d", "--network", "host", "busybox", "sleep", "300").stdout.decode().strip()
    info = explain(clean_daemon, cid)
    net_ns = next(n for n in info["Namespaces"] if n["Type"] == "net")
    assert net_ns["Shared"] and net_ns["Inode"] == ns_inode("self", "net")
    assert info["Network"]["Mode"] == "host" and "Interfaces" not in info["Network"]


def test_explain_stopped_container_answers_from_its_config(clean_daemon: Daemon) -> None:
    d = clean_daemon
    cid = d.docker("create", "--memory", "32m", "--tmpfs", "/scratch", "-p", "127.0.0.1::80",
                   "busybox", "true").stdout.decode().strip()
    info = explain(d, cid)
    assert not info["Running"] and "not running" in info["Note"]
    assert "Process" not in info and info["Cgroups"]["Configured"]["Memory"] == 32 * 1024 * 1024
    assert any(m["Target"] == "/scratch" for m in info["Mounts"])
    assert not info["Rootfs"]["Mounted"]
    assert "not running" in d.dockyard("explain", cid).stdout.decode()


def test_explain_unknown_container_is_an_error(clean_daemon: Daemon) -> None:
    p = clean_daemon.dockyard("explain", "no-such-container-here", check=False)
    assert p.returncode != 0 and b"No such container" in p.stderr


def test_explain_network_image_and_volume_read_back_the_host(clean_daemon: Daemon, volume: str) -> None:
    d = clean_daemon
    net = "explain-net-" + secrets.token_hex(3)
    d.docker("network", "create", net)
    try:
        cid = d.docker("run", "-d", "--network", net, "-v", f"{volume}:/data:ro", "busybox",
                       "sleep", "300").stdout.decode().strip()
        info = json.loads(d.dockyard("explain", "--format", "json", net).stdout)
        assert info["Kind"] == "network" and info["Bridge"]["Exists"]
        br = info["Bridge"]["Name"]
        assert subprocess.run(["ip", "link", "show", br], capture_output=True).returncode == 0
        assert f"{info['Gateway']}/{info['Subnet'].split('/')[1]}" in info["Bridge"]["Addresses"]
        assert info["DNS"]["Listening"]["udp"] and info["DNS"]["Address"] == f"{info['Gateway']}:53"
        (member,) = info["Members"]
        ct = json.loads(d.docker("inspect", cid).stdout)[0]
        assert member["ContainerId"] == cid and member["Address"] == ct["NetworkSettings"]["Networks"][net]["IPAddress"]
        master = subprocess.run(["ip", "-o", "link", "show", member["Host"]], capture_output=True, text=True).stdout
        assert f"master {br}" in master
        assert any(info["Subnet"] in r["Rule"] and "masquerade" in r["Rule"] for r in info["Rules"])
        assert "BRIDGE" in d.dockyard("explain", net).stdout.decode()

        img = json.loads(d.dockyard("explain", "--format", "json", "--type", "image", "busybox").stdout)
        assert img["Kind"] == "image" and img["Layers"] and all(layer["Exists"] for layer in img["Layers"])
        c_info = explain(d, cid)
        image_dirs = [x["Dir"] for x in c_info["Rootfs"]["Lower"] if x["Role"].startswith("image layer")]
        assert [layer["Dir"] for layer in img["Layers"]] == list(reversed(image_dirs))  # bottom first vs top first
        assert ct["Name"].lstrip("/") in img["Containers"]
        shared = f"explain-shared-{secrets.token_hex(3)}:v1"  # an image on busybox's layers, named by its tag
        d.docker("commit", cid, shared)
        try:
            img = json.loads(d.dockyard("explain", "--format", "json", "--type", "image", "busybox").stdout)
            assert all(any(shared in name for name in layer["SharedWith"]) for layer in img["Layers"])
        finally:
            d.docker("rmi", shared)

        vol = json.loads(d.dockyard("explain", "--format", "json", volume).stdout)
        assert vol["Kind"] == "volume" and vol["Exists"] and not vol["Mounted"]
        (user,) = vol["Users"]
        assert user["Id"] == cid and user["Destination"] == "/data" and user["RW"] is False
        assert any(m["Target"] == "/data" and vol["Name"] in m["Why"] for m in c_info["Mounts"])
        assert "USED BY" in d.dockyard("explain", "--type", "volume", volume).stdout.decode()
    finally:
        d.cleanup_containers()
        d.docker("network", "rm", net)
