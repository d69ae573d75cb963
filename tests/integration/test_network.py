"""NetworkService against the real kernel: netns, veths, bridges, nft, published ports, DNS.

"Containers" here are bare network namespaces made by the service, with python3 servers run in
them through nsenter. Traffic stays on loopback and inside the namespaces the test made.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import secrets
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from dockyard.errors import DockyardError, Forbidden
from dockyard.network import firewall, netlink
from dockyard.services.events import EventBus
from dockyard.services.networks import NetworkService
from dockyard.store.db import Database
from tests.subnets import free_subnet

pytestmark = [pytest.mark.root, pytest.mark.skipif(os.geteuid() != 0, reason="needs root")]

SERVER = "import http.server,sys; http.server.test(HandlerClass=http.server.SimpleHTTPRequestHandler, port=int(sys.argv[1]), bind=sys.argv[2])"
FETCH = ("import urllib.request,sys; print(urllib.request.urlopen(sys.argv[1], timeout=5).status)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("0.0.0.0", 0))
        return int(s.getsockname()[1])


def links() -> set[str]:
    return set(os.listdir("/sys/class/net"))


MADE: list[str] = []  # every veth name the service picked (other daemons on the host make veths too)
_real_veth_name = netlink.veth_name


def _recording_veth_name() -> str:
    name = _real_veth_name()
    MADE.append(name)
    return name


netlink.veth_name = _recording_veth_name


def run(coro_fn: Callable[[NetworkService, Path], Awaitable[None]], tmp_path: Path, **kw: Any) -> None:
    """Run one test body against a fresh service, then check the host is as we found it."""
    MADE.clear()
    tag = secrets.token_hex(3)
    table = f"dyt_{tag}"
    made_nets: set[str] = set()

    async def main() -> None:
        db = Database(tmp_path / "dockyard.db")
        svc = NetworkService(db, tmp_path / "exec", EventBus(), bridge_name=f"dyt{tag}", table=table,
                             resolve_container=lambda ref: (ref, f"c{ref[:6]}", True), **kw)
        try:
            await svc.start()
            await coro_fn(svc, tmp_path)
        finally:
            made_nets.update(n["Id"][:12] for n in svc.list())
            await svc.teardown_all()
            db.close()

    try:
        asyncio.run(main())
    finally:
        leftover = links() & {*MADE, f"dyt{tag}"} | {n for n in links() if n.startswith("br-") and n[3:] in made_nets}
        assert not leftover, f"left behind: {leftover}"
        assert not firewall.table_exists(table)
        assert not any(f"dockyard:{table}" in line for line in
                       subprocess.run(["iptables", "-S"], capture_output=True, text=True).stdout.splitlines())
        assert str(tmp_path) not in Path("/proc/self/mountinfo").read_text()


async def attach(svc: NetworkService, cid: str, mode: str = "bridge", **kw: Any) -> Any:
    args: dict[str, Any] = dict(name=f"c{cid[:6]}", hostname=cid[:12], network_mode=mode, endpoints_config={},
                                port_bindings={}, exposed_ports={}, publish_all=False, dns=[], dns_search=[],
                                dns_options=[], extra_hosts=[], mac=None)
    args.update(kw)
    return await svc.attach(cid, **args)


@asynccontextmanager
async def serve_in(netns: Path, ip: str, port: int) -> AsyncIterator[None]:
    proc = await asyncio.create_subprocess_exec(
        "nsenter", f"--net={netns}", sys.executable, "-u", "-c", SERVER, str(port), ip,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)
    try:
        assert proc.stdout is not None
        await asyncio.wait_for(proc.stdout.readline(), 10)  # "Serving HTTP on ...": listening
        yield
    finally:
        proc.kill()
        await proc.wait()


async def fetch(url: str, netns: Path | None = None, resolv: Path | None = None) -> str:
    """GET url (from inside netns; with `resolv` bind-mounted as /etc/resolv.conf in a private
    mount namespace, so names go through the container's resolver config as they would in it)."""
    cmd = [sys.executable, "-c", FETCH, url]
    if resolv is not None:
        cmd = ["unshare", "-m", "--propagation", "private", "sh", "-c",
               'mount --bind "$0" /etc/resolv.conf && exec "$@"', str(resolv), *cmd]
    if netns is not None:
        cmd = ["nsenter", f"--net={netns}", *cmd]
    proc = await asyncio.create_subprocess_exec(*cmd, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 20)
    return (out or err).decode().strip()


def host_ip() -> str:
    """A non-loopback address of this host (the default route's source)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.connect(("192.0.2.1", 9))  # no packet is sent for a UDP connect
        return str(s.getsockname()[0])


def test_published_port_reachable_from_loopback_host_ip_and_other_container(tmp_path: Path) -> None:
    async def body(svc: NetworkService, _: Path) -> None:
        hp = free_port()
        a, b = secrets.token_hex(32), secrets.token_hex(32)
        ra = await attach(svc, a, port_bindings={"80/tcp": [{"HostIp": "", "HostPort": str(hp)}]},
                          exposed_ports={"80/tcp": {}})
        rb = await attach(svc, b)
        ip_a = ra.network_settings["IPAddress"]
        assert ra.network_settings["Ports"] == {"80/tcp": [{"HostIp": "0.0.0.0", "HostPort": str(hp)}]}
        assert ra.network_settings["Networks"]["bridge"]["IPAddress"] == ip_a
        assert f"{ip_a}\t{a[:12]}" in Path(ra.hosts_path).read_text()
        async with serve_in(ra.netns_path, ip_a, 80):
            assert await fetch(f"http://127.0.0.1:{hp}/") == "200"
            assert await fetch(f"http://{host_ip()}:{hp}/") == "200"
            gw = ra.network_settings["Gateway"]
            assert await fetch(f"http://{gw}:{hp}/", rb.netns_path) == "200"  # via the host: hairpin
            assert await fetch(f"http://{host_ip()}:{hp}/", ra.netns_path) == "200"  # to itself
            assert await fetch(f"http://{ip_a}:80/", rb.netns_path) == "200"  # same bridge, direct
        # The port is held: a second binding is refused with Docker's message.
        with pytest.raises(DockyardError, match="port is already allocated"):
            await attach(svc, secrets.token_hex(32), port_bindings={"80/tcp": [{"HostPort": str(hp)}]})
        await svc.detach(a)
        await svc.detach(b)
        assert not (tmp_path / "exec" / "netns" / a).exists()
        assert svc.settings(a)["Ports"] == {}

    run(body, tmp_path)


def test_port_in_use_by_another_program_and_ephemeral_udp(tmp_path: Path) -> None:
    async def body(svc: NetworkService, _: Path) -> None:
        with socket.socket() as busy:
            busy.bind(("0.0.0.0", 0))
            busy.listen()
            port = busy.getsockname()[1]
            cid = secrets.token_hex(32)
            with pytest.raises(DockyardError, match="address already in use"):
                await attach(svc, cid, port_bindings={"80/tcp": [{"HostPort": str(port)}]})
            assert not (tmp_path / "exec" / "netns" / cid).exists()  # nothing half-made
        r = await attach(svc, cid, port_bindings={"53/udp": [{}]}, exposed_ports={"53/udp": {}, "80/tcp": {}})
        ports = r.network_settings["Ports"]
        assert ports["80/tcp"] is None and int(ports["53/udp"][0]["HostPort"]) > 0
        assert "udp dport" in subprocess.run(["nft", "list", "table", "ip", svc.table],
                                             capture_output=True, text=True).stdout
        await svc.detach(cid)

    run(body, tmp_path)


def test_user_network_dns_isolation_and_errors(tmp_path: Path) -> None:
    # four /24s of a free /20: two networks, an overlapping half, a gateway outside its subnet
    s1, s2, s3, s4 = list(free_subnet(20).subnets(new_prefix=24))[:4]
    gw1, gw2 = str(s1.network_address + 1), str(s2.network_address + 1)

    async def body(svc: NetworkService, _: Path) -> None:
        n1 = await svc.create("dyt-net1", subnet=str(s1), labels={"t": "1"})
        n2 = await svc.create("dyt-net2", subnet=str(s2))
        with pytest.raises(DockyardError, match="already exists") as e:
            await svc.create("dyt-net1")
        assert e.value.status == 409
        with pytest.raises(Forbidden, match="Pool overlaps with other one on this address space"):
            await svc.create("dyt-net3", subnet=str(list(s1.subnets())[1]))
        with pytest.raises(DockyardError, match="no matching subnet for gateway"):
            await svc.create("dyt-net3", subnet=str(s3), gateway=str(s4.network_address + 1))
        a, b, c = (secrets.token_hex(32) for _ in range(3))
        ra = await attach(svc, a, "dyt-net1", endpoints_config={"dyt-net1": {"Aliases": ["web"]}})
        rb = await attach(svc, b, "dyt-net1")
        rc = await attach(svc, c, "dyt-net2")
        assert f"nameserver {gw1}" in Path(rb.resolv_path).read_text()
        ip_a = ra.network_settings["Networks"]["dyt-net1"]["IPAddress"]
        assert ipaddress.ip_address(ip_a) in s1
        for name in (f"c{a[:6]}", "web", a[:12]):
            assert await resolve_in(rb.netns_path, name, gw1) == ip_a
        assert await resolve_in(rc.netns_path, "web", gw2) == ""  # not on that network
        async with serve_in(ra.netns_path, ip_a, 80):
            assert await fetch("http://web:80/", rb.netns_path, rb.resolv_path) == "200"  # by name
            assert await fetch(f"http://c{a[:6]}:80/", rb.netns_path, rb.resolv_path) == "200"
            assert await fetch(f"http://{ip_a}:80/", rb.netns_path) == "200"
            assert "200" != await fetch(f"http://{ip_a}:80/", rc.netns_path)  # isolated networks
        with pytest.raises(Forbidden, match="has active endpoints"):
            await svc.remove("dyt-net1")
        with pytest.raises(Forbidden, match="already exists in network"):
            await svc.connect("dyt-net1", a)
        await svc.connect("dyt-net2", a, {"Aliases": ["api"]})
        assert ipaddress.ip_address(await resolve_in(rc.netns_path, "api", gw2)) in s2
        await svc.disconnect("dyt-net2", a)
        assert await resolve_in(rc.netns_path, "api", gw2) == ""
        assert svc.inspect(n1["Id"])["Containers"].keys() == {a, b}
        assert [n["Name"] for n in svc.list({"label": ["t=1"]})] == ["dyt-net1"]
        for cid in (a, b, c):
            await svc.forget(cid)
        assert sorted(await svc.prune()) == ["dyt-net1", "dyt-net2"]
        assert not os.path.exists(f"/sys/class/net/br-{n2['Id'][:12]}")

    run(body, tmp_path)


async def resolve_in(netns: Path, name: str, server: str) -> str:
    """Ask `server` for `name` from inside the netns with dnslib's client; '' when not found."""
    code = ("import sys; from dnslib import DNSRecord;"
            "r=DNSRecord.parse(DNSRecord.question(sys.argv[1]).send(sys.argv[2], 53, timeout=5));"
            "print(r.rr[0].rdata if r.rr else '')")
    proc = await asyncio.create_subprocess_exec("nsenter", f"--net={netns}", sys.executable, "-c", code, name,
                                                server, stdout=asyncio.subprocess.PIPE)
    out, _ = await asyncio.wait_for(proc.communicate(), 20)
    return out.decode().strip()


def test_rules_rebuilt_from_db_after_restart(tmp_path: Path) -> None:
    async def body(svc: NetworkService, root: Path) -> None:
        hp = free_port()
        cid = secrets.token_hex(32)
        r = await attach(svc, cid, port_bindings={"80/tcp": [{"HostPort": str(hp)}]})
        await svc.close()  # the daemon stops (or dies): rules are lost too, say
        firewall.delete_table(svc.table)
        again = NetworkService(svc.db, root / "exec", EventBus(), bridge_name=svc.bridge_name, table=svc.table)
        await again.start()
        try:
            async with serve_in(r.netns_path, r.network_settings["IPAddress"], 80):
                assert await fetch(f"http://127.0.0.1:{hp}/") == "200"
            assert again.settings(cid)["Ports"]["80/tcp"][0]["HostPort"] == str(hp)
            await again.detach(cid)
        finally:
            await again.close()

    run(body, tmp_path)


def test_none_and_host_sandboxes_do_not_queue_behind_the_networks_lock(tmp_path: Path) -> None:
    """Modes none and host share nothing with other containers: their attach and detach go on while
    another container's attach holds the networks lock (concurrent build steps queued behind each
    other's). A start cancelled while it waits for the lock leaves no namespace behind."""
    async def body(svc: NetworkService, _: Path) -> None:
        none, host, bridged = (secrets.token_hex(32) for _ in range(3))
        async with svc._lock:  # another container's attach, however long it takes
            r = await asyncio.wait_for(attach(svc, none, "none"), 60)
            assert r.netns_path is not None and r.netns_path.exists()
            assert netlink._holds_netns(r.netns_path)  # a namespace of its own is mounted there
            h = await asyncio.wait_for(attach(svc, host, "host"), 60)
            assert h.netns_path is None and h.hosts_path.exists()
            queued = asyncio.get_running_loop().create_task(attach(svc, bridged))
            netns = svc.exec_root / "netns" / bridged
            while not netlink._holds_netns(netns):  # made before the lock, then waits for it
                await asyncio.sleep(0.01)
            queued.cancel()
            with pytest.raises(asyncio.CancelledError):
                await queued
            assert not netns.exists()
            await asyncio.wait_for(svc.detach(none), 60)
            await asyncio.wait_for(svc.detach(host), 60)
        assert not r.netns_path.exists() and not svc.has_sandbox(none) and not svc.has_sandbox(host)

    run(body, tmp_path)


def test_a_disconnect_waits_for_the_veths_a_start_is_wiring(tmp_path: Path) -> None:
    """A start wires its veths outside the networks lock (attach(defer_plumbing=True), beside runc
    create). A disconnect meanwhile waits for that wiring and then undoes it: before, it released the
    endpoint and its address first, and the plumb then made a veth with them that no record named."""
    subnet = free_subnet(24)

    async def body(svc: NetworkService, _: Path) -> None:
        await svc.create("dyt-plumb", subnet=str(subnet))
        cid = secrets.token_hex(32)
        r = await attach(svc, cid, "dyt-plumb", defer_plumbing=True)
        assert r.plumb is not None
        disconnecting = asyncio.get_running_loop().create_task(svc.disconnect("dyt-plumb", cid))
        await asyncio.sleep(0.3)
        assert not disconnecting.done()  # waits for the start's wiring
        await asyncio.to_thread(r.plumb)
        await asyncio.wait_for(disconnecting, 30)
        inside = subprocess.run(["nsenter", f"--net={r.netns_path}", "ip", "-o", "link"], capture_output=True,
                                text=True, check=True).stdout
        assert [line.split(":")[1].strip() for line in inside.splitlines()] == ["lo"]
        assert not links() & set(MADE)  # the host end went with it
        assert svc.inspect("dyt-plumb")["Containers"] == {}
        await svc.forget(cid)
        await svc.remove("dyt-plumb")

    run(body, tmp_path)


def test_a_wiring_that_fails_says_why_in_the_answer_and_the_log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    """A trial CI's start failed with "failed to set up the network of container X: ..." and the reason was
    lost: an exception without text (an assertion) is named by its type, and the traceback is logged."""
    def broken(*_: Any, **__: Any) -> None:
        raise AssertionError

    async def body(svc: NetworkService, root: Path) -> None:
        monkeypatch.setattr(netlink, "add_veth", broken)
        cid = secrets.token_hex(32)
        with pytest.raises(DockyardError, match=r"failed to set up the network of container \w+: AssertionError"):
            await attach(svc, cid)
        assert any(r.exc_info and "network setup of" in r.getMessage() for r in caplog.records)
        assert not svc.has_sandbox(cid)

    run(body, tmp_path)
