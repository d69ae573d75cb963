"""Our rtnetlink messages (network/rtnetlink.py) and netlink.py built on them, against the real kernel:
every link is made inside network namespaces the test creates (never on the host's interfaces) and goes
with them."""

from __future__ import annotations

import errno
import os
import socket
import struct
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from dockyard.network import netlink, rtnetlink

pytestmark = [pytest.mark.root, pytest.mark.skipif(os.geteuid() != 0, reason="needs root")]


def test_attrs_pad_to_four_bytes_and_parse_back() -> None:
    buf = rtnetlink.string(rtnetlink.IFLA_IFNAME, "eth0") + rtnetlink.u32(rtnetlink.IFLA_MTU, 1400) + \
        rtnetlink.attr(rtnetlink.IFLA_LINKINFO, rtnetlink.string(rtnetlink.IFLA_INFO_KIND, "veth"))
    assert len(buf) % 4 == 0
    a = rtnetlink.attrs(buf)
    assert a[rtnetlink.IFLA_IFNAME] == b"eth0\0" and int.from_bytes(a[rtnetlink.IFLA_MTU], "little") == 1400
    assert rtnetlink.attrs(a[rtnetlink.IFLA_LINKINFO])[rtnetlink.IFLA_INFO_KIND] == b"veth\0"


def test_a_dump_the_kernel_ends_with_an_error_raises_it() -> None:
    """The kernel ends a dump it could not finish (EMSGSIZE: an entry too large for its buffer) with the
    error in NLMSG_DONE's payload: the caller gets it, not a list cut short."""

    class Replies:
        def __init__(self) -> None:
            self.seq = 0

        def send(self, data: bytes) -> None:
            self.seq = struct.unpack_from("=IHHII", data)[3]

        def recv(self, _size: int) -> bytes:
            link = rtnetlink.ifinfo(1) + rtnetlink.string(rtnetlink.IFLA_IFNAME, "lo")
            part = struct.pack("=IHHII", 16 + len(link), rtnetlink.RTM_NEWLINK, 0x2, self.seq, 0) + link
            done = struct.pack("=IHHII", 20, 3, 0x2, self.seq, 0) + struct.pack("=i", -errno.EMSGSIZE)
            return part + done

        def close(self) -> None:
            pass

    with rtnetlink.Socket() as nl:
        real, nl._sock = nl._sock, Replies()  # type: ignore[assignment]
        try:
            with pytest.raises(OSError) as e:
                nl.links()
            assert e.value.errno == errno.EMSGSIZE
        finally:
            nl._sock = real


@pytest.fixture
def netns(tmp_path: Path) -> Iterator[Callable[[str], Path]]:
    """Makes named network namespaces under tmp_path; all removed (with their links) at the end."""
    made: list[Path] = []

    def make(name: str) -> Path:
        p = tmp_path / "netns" / name
        netlink.create_netns(p)
        made.append(p)
        return p

    yield make
    for p in made:
        netlink.delete_netns(p)
    netlink.unmount_dir(tmp_path / "netns")


def run_in(path: Path, fn: Callable[[], Any]) -> Any:
    out: list[Any] = []
    netlink._in_netns(lambda: out.append(fn()), str(path))
    return out[0]


def ip(path: Path, *args: str) -> str:
    """iproute2's view, from inside the namespace (the bind mount is ours, not under /run/netns)."""
    return subprocess.run(["nsenter", f"--net={path}", "ip", *args], check=True, capture_output=True,
                          text=True).stdout


def test_bridge_veth_addresses_routes_as_iproute2_sees_them(netns: Callable[[str], Path]) -> None:
    host, ctr = netns("host"), netns("ctr")

    def wire() -> None:
        netlink.ensure_bridge("brt0", "10.200.0.1", 24, mtu=1400, address6="fd00:200::1")
        netlink.ensure_bridge("brt0", "10.200.0.1", 24, mtu=1400, address6="fd00:200::1")  # idempotent
        netlink.add_veth("vetht0", "brt0", str(ctr), "eth0", [("10.200.0.2", 24), ("fd00:200::2", 64)],
                         ["10.200.0.1", "fd00:200::1"], "02:42:0a:c8:00:02", 1400)

    run_in(host, wire)
    assert "inet 10.200.0.1/24 scope global brt0" in ip(host, "-4", "addr", "show", "brt0")
    assert "fd00:200::1/64" in ip(host, "-6", "addr", "show", "brt0")
    veth = ip(host, "-d", "link", "show", "vetht0")
    assert "master brt0" in veth and "mtu 1400" in veth and ",UP" in veth
    eth0 = ip(ctr, "-d", "addr", "show", "eth0")
    assert "link/ether 02:42:0a:c8:00:02" in eth0 and "mtu 1400" in eth0 and ",UP" in eth0
    assert "inet 10.200.0.2/24 brd 10.200.0.255" in eth0 and "inet6 fd00:200::2/64 scope global nodad" in eth0
    assert "default via 10.200.0.1 dev eth0 proto static" in ip(ctr, "-4", "route")
    assert "default via fd00:200::1 dev eth0 proto static" in ip(ctr, "-6", "route")

    # The reads: links inside the netns and their host ends.
    inside = {ln["name"]: ln for ln in netlink.links(str(ctr))}
    assert inside["eth0"]["kind"] == "veth" and inside["eth0"]["mac"] == "02:42:0a:c8:00:02"
    assert inside["eth0"]["addresses"] == ["10.200.0.2/24"] and inside["lo"]["state"] == "UNKNOWN"
    peers = run_in(host, lambda: netlink.host_links_by_index([inside["eth0"]["peer_index"], 99999]))
    assert peers == {inside["eth0"]["peer_index"]: {"name": "vetht0", "master": "brt0"}}
    assert ("10.200.0.0/24", "brt0") in run_in(host, netlink.host_routes_by_link)

    # Default routes: one left alone (EEXIST), one put back after it went.
    netlink.ensure_default_routes(str(ctr), ["10.200.0.1"])
    subprocess.run(["nsenter", f"--net={ctr}", "ip", "-6", "route", "del", "default"], check=True)
    netlink.ensure_default_routes(str(ctr), ["10.200.0.1", "fd00:200::1"])
    assert "default via fd00:200::1" in ip(ctr, "-6", "route")

    # Errors map to OSError(errno): a second veth of the same name, and a link gone twice.
    def again() -> None:
        netlink.add_veth("vetht0", "brt0", str(ctr), "eth1", [], [], "02:42:0a:c8:00:03", 1400)

    with pytest.raises(OSError) as e:
        run_in(host, again)
    assert e.value.errno == errno.EEXIST
    run_in(host, lambda: netlink.delete_link("vetht0"))
    assert "eth0" not in {ln["name"] for ln in netlink.links(str(ctr))}  # the pair went together
    run_in(host, lambda: netlink.delete_link("vetht0"))  # gone: nothing to do

    def missing() -> None:
        with rtnetlink.Socket() as nl:
            nl.del_link(2**30)

    with pytest.raises(OSError) as e:
        run_in(host, missing)
    assert e.value.errno == errno.ENODEV


def test_unreachable_gateway_is_an_oserror_with_the_kernels_reason(netns: Callable[[str], Path]) -> None:
    def route() -> None:
        with rtnetlink.Socket() as nl:
            nl.add_route("0.0.0.0/0", gateway="10.201.0.1")

    with pytest.raises(OSError) as e:
        run_in(netns("solo"), route)
    assert e.value.errno == errno.ENETUNREACH


def test_adopted_link_is_renamed_and_addressed(netns: Callable[[str], Path]) -> None:
    host, ctr = netns("host"), netns("ctr")

    def make() -> None:
        with rtnetlink.Socket() as nl:
            nl.request(rtnetlink.RTM_NEWLINK, rtnetlink.ifinfo() + rtnetlink.string(rtnetlink.IFLA_IFNAME, "plg0")
                       + rtnetlink.attr(rtnetlink.IFLA_LINKINFO, rtnetlink.string(rtnetlink.IFLA_INFO_KIND, "veth")),
                       0x600)
            nl.set_link(socket.if_nametoindex("plg0"), up=True)
        netlink.adopt_link("plg0", str(ctr), "eth0", [("10.202.0.2", 24)], ["10.202.0.1"], "02:42:0a:ca:00:02",
                           1450, routes=[("10.203.0.0/16", None), ("10.204.0.0/16", "10.202.0.9")])

    run_in(host, make)
    eth0 = ip(ctr, "addr", "show", "eth0")
    assert "02:42:0a:ca:00:02" in eth0 and "mtu 1450" in eth0 and "10.202.0.2/24" in eth0
    routes = ip(ctr, "route")
    assert "10.203.0.0/16 dev eth0" in routes and "10.204.0.0/16 via 10.202.0.9" in routes
    assert "default via 10.202.0.1" in routes
