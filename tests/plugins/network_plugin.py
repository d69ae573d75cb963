"""A test network driver (NetworkDriver.*, the remote driver protocol): each network is a Linux
bridge of its own (`pn<id>`, the gateway address on it, iptables FORWARD accepts for it); Join makes a
veth pair with one end on that bridge and hands the other (SrcName) to the daemon, which moves it
into the container's netns. Needs root, as a real network driver does.
"""

from __future__ import annotations

import subprocess
import threading
from typing import Any

import pluginhttp


def sh(*args: str, check: bool = True) -> None:
    p = subprocess.run(args, capture_output=True, text=True)
    if check and p.returncode != 0:
        raise RuntimeError(f"{' '.join(args)}: {p.stderr.strip()}")


def main() -> None:
    a = pluginhttp.args("test network driver")
    lock = threading.Lock()
    nets: dict[str, dict[str, str]] = {}
    eps: dict[str, str] = {}  # endpoint id -> host-side veth

    def bridge(nid: str) -> str:
        return "pn" + nid[:10]

    def create_network(b: Any) -> dict[str, Any]:
        nid = b["NetworkID"]
        gw = b["IPv4Data"][0]["Gateway"]  # "172.x.0.1/16"
        br = bridge(nid)
        with lock:
            sh("ip", "link", "add", br, "type", "bridge")
            sh("ip", "addr", "add", gw, "dev", br)
            sh("ip", "link", "set", br, "up")
            for d in ("-i", "-o"):
                sh("iptables", "-I", "FORWARD", d, br, "-j", "ACCEPT")
            nets[nid] = {"bridge": br, "gateway": gw.split("/")[0]}
        return {}

    def delete_network(b: Any) -> dict[str, Any]:
        with lock:
            n = nets.pop(b["NetworkID"], None)
            br = n["bridge"] if n else bridge(b["NetworkID"])
            sh("ip", "link", "del", br, check=False)
            for d in ("-i", "-o"):
                sh("iptables", "-D", "FORWARD", d, br, "-j", "ACCEPT", check=False)
        return {}

    def join(b: Any) -> dict[str, Any]:
        eid, n = b["EndpointID"], nets[b["NetworkID"]]
        host, peer = "vh" + eid[:10], "vc" + eid[:10]
        with lock:
            sh("ip", "link", "add", host, "type", "veth", "peer", "name", peer)
            sh("ip", "link", "set", host, "master", n["bridge"], "up")
            eps[eid] = host
        return {"InterfaceName": {"SrcName": peer, "DstPrefix": "eth"}, "Gateway": n["gateway"],
                "StaticRoutes": [{"Destination": "10.254.1.0/24", "RouteType": 0, "NextHop": n["gateway"]},
                                 {"Destination": "10.254.2.0/24", "RouteType": 1}]}

    def leave(b: Any) -> dict[str, Any]:
        with lock:
            host = eps.pop(b["EndpointID"], "")
            if host:
                sh("ip", "link", "del", host, check=False)
        return {}

    handlers = {
        "/NetworkDriver.GetCapabilities": lambda _b: {"Scope": "local", "ConnectivityScope": "local"},
        "/NetworkDriver.CreateNetwork": create_network,
        "/NetworkDriver.DeleteNetwork": delete_network,
        "/NetworkDriver.CreateEndpoint": lambda _b: {"Interface": {}},
        "/NetworkDriver.DeleteEndpoint": lambda _b: {},
        "/NetworkDriver.EndpointOperInfo": lambda _b: {"Value": {}},
        "/NetworkDriver.Join": join,
        "/NetworkDriver.Leave": leave,
        "/NetworkDriver.DiscoverNew": lambda _b: {},
        "/NetworkDriver.DiscoverDelete": lambda _b: {},
        "/NetworkDriver.ProgramExternalConnectivity": lambda _b: {},
        "/NetworkDriver.RevokeExternalConnectivity": lambda _b: {},
    }
    pluginhttp.serve(a, ["NetworkDriver"], handlers)


if __name__ == "__main__":
    main()
