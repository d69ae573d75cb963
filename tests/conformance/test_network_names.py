"""Names across networks, through the real docker CLI and docker-compose 1.29.2 against our daemon.

A container resolves the names and aliases of every container on every network it shares with them,
follows connect/disconnect at once, never answers for a network it is not on, and hands other names to
its upstream servers. The upstream here is a small DNS server this test runs on 127.0.0.2:53 (given to
the containers with --dns), so no query leaves the host and the test sees what was forwarded.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from dnslib import QTYPE, RCODE, RR, A, DNSRecord

from tests.conftest import Daemon, own_daemon

UPSTREAM = "127.0.0.2"
COMPOSE = shutil.which("docker-compose")


class Upstream:
    """A DNS server on 127.0.0.2:53 that knows one name and records every question it gets."""

    def __init__(self) -> None:
        import socket

        self.asked: list[str] = []
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((UPSTREAM, 53))
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                data, addr = self.sock.recvfrom(4096)
            except OSError:
                return
            req = DNSRecord.parse(data)
            name = str(req.q.qname).rstrip(".")
            self.asked.append(name)
            reply = req.reply()
            if name == "outside.test" and req.q.qtype == QTYPE.A:
                reply.add_answer(RR(req.q.qname, QTYPE.A, rdata=A("10.123.45.67"), ttl=60))
            else:
                reply.header.rcode = RCODE.NXDOMAIN
            self.sock.sendto(reply.pack(), addr)

    def close(self) -> None:
        self.sock.close()


@pytest.fixture(scope="module")
def upstream() -> Iterator[Upstream]:
    u = Upstream()
    yield u
    u.close()


@pytest.fixture(scope="module")
def namesd() -> Iterator[Daemon]:
    with own_daemon("dy-names-") as d:
        yield d


@pytest.fixture()
def nd(namesd: Daemon) -> Iterator[Daemon]:
    yield namesd
    if namesd.proc is None:
        namesd.start()
    namesd.cleanup_containers()
    for net in namesd.docker("network", "ls", "--format", "{{.Name}}").stdout.decode().split():
        if net not in ("bridge", "host", "none"):
            namesd.docker("network", "rm", net, check=False)


def lookup(d: Daemon, ctr: str, name: str) -> list[str]:
    """The IPv4 addresses `ctr` gets for `name` (nslookup through its own resolv.conf)."""
    p = d.docker("exec", ctr, "nslookup", "-type=a", name, check=False)
    out = p.stdout.decode()
    answers = out.split("Name:", 1)[1] if "Name:" in out else ""
    return [line.split()[-1] for line in answers.splitlines() if line.startswith("Address")]


def ip_on(d: Daemon, ctr: str, net: str) -> str:
    nets = json.loads(d.docker("inspect", ctr).stdout)[0]["NetworkSettings"]["Networks"]
    return str(nets[net]["IPAddress"])


def sleeper(d: Daemon, name: str, *opts: str) -> None:
    d.docker("run", "-d", "--name", name, "--dns", UPSTREAM, *opts, "busybox", "sleep", "600")


def test_names_of_every_shared_network_and_none_other(nd: Daemon, upstream: Upstream) -> None:
    nd.docker("network", "create", "fe")
    nd.docker("network", "create", "be")
    sleeper(nd, "db", "--network", "be", "--network-alias", "database")
    sleeper(nd, "front", "--network", "fe")
    # web: on fe and be, connected to be before it starts (what compose does).
    nd.docker("create", "--name", "web", "--dns", UPSTREAM, "--network", "fe", "busybox", "sleep", "600")
    nd.docker("network", "connect", "--alias", "app", "be", "web")
    nd.docker("start", "web")

    db, web_fe, web_be = ip_on(nd, "db", "be"), ip_on(nd, "web", "fe"), ip_on(nd, "web", "be")
    assert lookup(nd, "web", "db") == [db]
    assert lookup(nd, "web", "database") == [db]
    assert lookup(nd, "web", "db.be") == [db]  # name.network, as Docker answers
    assert lookup(nd, "web", "front") == [ip_on(nd, "front", "fe")]
    assert lookup(nd, "db", "web") == [web_be]  # each asker gets the address on the network it shares
    assert lookup(nd, "db", "app") == [web_be]
    assert lookup(nd, "front", "web") == [web_fe]
    assert lookup(nd, "front", "app") == []  # be's alias of web: front is not on be

    # front is not on be: db is not ours to answer for it, so it goes upstream (and is not found there).
    upstream.asked.clear()
    assert lookup(nd, "front", "db") == []
    assert lookup(nd, "front", "db.be") == []
    assert {"db", "db.be"} <= set(upstream.asked)
    assert lookup(nd, "front", "outside.test") == ["10.123.45.67"]  # other names: the --dns server

    # connect and disconnect take effect at once.
    nd.docker("network", "connect", "be", "front")
    assert lookup(nd, "front", "db") == [db]
    nd.docker("network", "disconnect", "be", "front")
    assert lookup(nd, "front", "db") == []
    nd.docker("network", "disconnect", "be", "web")
    assert lookup(nd, "web", "db") == []
    # web leaves fe, the network its resolv.conf's server is on: it moves to be's, with the route.
    nd.docker("network", "connect", "be", "web")
    nd.docker("network", "disconnect", "fe", "web")
    be_gw = json.loads(nd.docker("network", "inspect", "be").stdout)[0]["IPAM"]["Config"][0]["Gateway"]
    assert f"nameserver {be_gw}" in nd.docker("exec", "web", "cat", "/etc/resolv.conf").stdout.decode()
    assert f"default via {be_gw}" in nd.docker("exec", "web", "ip", "route").stdout.decode()
    assert lookup(nd, "web", "db") == [db]
    assert lookup(nd, "web", "front") == []


def test_renames_links_and_restart(nd: Daemon, upstream: Upstream) -> None:
    nd.docker("network", "create", "app")
    sleeper(nd, "svc", "--network", "app")
    # --link on a user network: a name only the linking container resolves.
    sleeper(nd, "client", "--network", "app", "--link", "svc:backend")
    sleeper(nd, "other", "--network", "app")
    svc = ip_on(nd, "svc", "app")
    assert lookup(nd, "client", "backend") == [svc]
    assert lookup(nd, "other", "backend") == []
    short = json.loads(nd.docker("inspect", "svc").stdout)[0]["Id"][:12]
    assert lookup(nd, "other", short) == [svc]  # the short id, as dockerd adds it

    # The names are rebuilt from the daemon's records when it comes back after a crash.
    nd.kill()
    nd.start()
    assert lookup(nd, "other", "svc") == [svc]
    assert lookup(nd, "client", "backend") == [svc]
    assert lookup(nd, "other", "client") == [ip_on(nd, "client", "app")]
    assert lookup(nd, "other", "outside.test") == ["10.123.45.67"]  # still its --dns server upstream
    ptr = nd.docker("exec", "other", "nslookup", svc).stdout.decode()
    assert "name = svc" in ptr or "svc" in ptr.split("Name:")[-1], ptr  # PTR for a shared network's member

    nd.docker("rename", "svc", "svc2")
    assert lookup(nd, "other", "svc2") == [svc]
    assert lookup(nd, "other", "svc") == []


FRONT_BACK = """
version: "3.7"
services:
  web:
    image: busybox
    command: ["sleep", "600"]
    dns: [127.0.0.2]
    networks: [front, back]
  db:
    image: busybox
    command: ["sleep", "600"]
    dns: [127.0.0.2]
    networks:
      back:
        aliases: [postgres]
  edge:
    image: busybox
    command: ["sleep", "600"]
    dns: [127.0.0.2]
    networks: [front]
networks:
  front: {}
  back: {}
"""


@pytest.mark.skipif(COMPOSE is None, reason="docker-compose (Debian package) is not installed")
def test_compose_front_and_back_networks(nd: Daemon, upstream: Upstream, tmp_path: Path) -> None:
    (tmp_path / "docker-compose.yml").write_text(FRONT_BACK)
    env = {k: v for k, v in nd.env.items() if not k.startswith("COMPOSE_")}

    def compose(*args: str) -> None:
        p = subprocess.run([str(COMPOSE), "--ansi", "never", "-p", "fb", *args], cwd=tmp_path, env=env,
                           capture_output=True, text=True, timeout=180, stdin=subprocess.DEVNULL)
        assert p.returncode == 0, p.stdout + p.stderr

    compose("up", "-d")
    try:
        db = ip_on(nd, "fb_db_1", "fb_back")
        assert lookup(nd, "fb_web_1", "db") == [db]
        assert lookup(nd, "fb_web_1", "postgres") == [db]
        assert lookup(nd, "fb_web_1", "edge") == [ip_on(nd, "fb_edge_1", "fb_front")]
        assert lookup(nd, "fb_db_1", "web") == [ip_on(nd, "fb_web_1", "fb_back")]
        assert lookup(nd, "fb_edge_1", "db") == []  # edge is on front only
        assert lookup(nd, "fb_edge_1", "web") == [ip_on(nd, "fb_web_1", "fb_front")]
    finally:
        compose("down", "-t", "1")
