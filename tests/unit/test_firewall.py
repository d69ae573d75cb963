import shutil
import subprocess

import pytest

from dockyard.network import hostfiles
from dockyard.network.firewall import BridgeNet, PortMap, render

NETS = [BridgeNet("dockyard0", "172.18.0.0/16"), BridgeNet("br-abc", "10.9.0.0/24", internal=True),
        BridgeNet("br-def", "10.8.0.0/24")]
PORTS = [PortMap("tcp", "0.0.0.0", 8080, "172.18.0.2", 80), PortMap("udp", "127.0.0.1", 5353, "172.18.0.3", 53)]


def test_render_rules() -> None:
    text = render("dockyard_t", NETS, PORTS)
    assert text.startswith("add table ip dockyard_t\ndelete table ip dockyard_t\n")  # atomic replace
    assert "    tcp dport 8080 dnat to 172.18.0.2:80" in text
    assert "    ip daddr 127.0.0.1 udp dport 5353 dnat to 172.18.0.3:53" in text
    assert 'ip saddr 172.18.0.0/16 oifname != "dockyard0" masquerade' in text
    assert 'ip saddr 10.9.0.0/24 oifname != "br-abc" masquerade' not in text  # internal: no NAT out
    assert 'iifname "br-abc" oifname != "br-abc" drop' in text
    assert 'iifname "dockyard0" oifname { "br-abc", "br-def" } drop' in text


@pytest.mark.skipif(shutil.which("nft") is None, reason="needs nft")
def test_render_is_valid_nft() -> None:
    r = subprocess.run(["nft", "-c", "-f", "-"], input=render("dockyard_t", NETS, PORTS), text=True,
                       capture_output=True)
    assert r.returncode == 0 or "Operation not permitted" in r.stderr, r.stderr


def test_resolv_conf_default_bridge_and_embedded() -> None:
    host = hostfiles.parse_resolv("nameserver 127.0.0.53\nnameserver 10.0.0.2\nsearch example.com\n")
    assert hostfiles.resolv(host, [], [], [], None) == "nameserver 10.0.0.2\nsearch example.com\n"
    only_lo = hostfiles.parse_resolv("nameserver 127.0.0.53\n")
    assert hostfiles.resolv(only_lo, [], [], [], None).startswith("nameserver 8.8.8.8\n")
    assert hostfiles.resolv(host, [], [], [], "10.1.0.1") == (
        "nameserver 10.1.0.1\nsearch example.com\noptions ndots:0\n")


def test_hosts_file() -> None:
    text = hostfiles.hosts("abc", ["172.18.0.2"], ["db:10.0.0.5"])
    assert text.startswith("127.0.0.1\tlocalhost\n")
    assert text.endswith("10.0.0.5\tdb\n172.18.0.2\tabc\n")


def test_sync_appends_added_ports_and_replaces_otherwise(monkeypatch: pytest.MonkeyPatch) -> None:
    from dockyard.network import firewall

    ran: list[str] = []

    def run(script: str, echo: bool = False) -> str:
        ran.append(script)
        return ""
    monkeypatch.setattr(firewall, "_run", run)
    monkeypatch.setattr(firewall, "_applied", {})
    web = PortMap("tcp", "0.0.0.0", 8081, "172.18.0.4", 80)
    firewall.sync("t", NETS, PORTS)
    firewall.sync("t", NETS, [*PORTS, web])  # only an addition: no table replace on the run -p path
    firewall.sync("t", NETS, [web])  # a removal
    firewall.sync("t", NETS[:1], [web])  # a network change
    firewall.sync("t", NETS[:1], [web])  # no change: rebuilt (start-up repairs a table removed by hand)
    assert ran[1] == "add rule ip t ports tcp dport 8081 dnat to 172.18.0.4:80\n"
    assert [s.startswith("add table ip t\ndelete table ip t\n") for s in ran] == [True, False, True, True, True]
