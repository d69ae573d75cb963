"""Who may resolve which names: the embedded DNS's view of every endpoint, kept in memory.

A query reaches one of our per-network DNS servers (on the gateways); its source address tells which
container asks. The asker sees the names of every container on every network it shares with them
(name, aliases, short id, and `name.network`), plus its own legacy-link aliases on those networks,
and nothing of the networks it is not on. Pure and thread-safe: the network service updates it from
its worker threads while the DNS servers read it in the daemon's loop. Each update and each lookup
costs O(networks of one container), never O(containers on a network).
"""

from __future__ import annotations

import dataclasses
import ipaddress
import threading
from dataclasses import dataclass, field


@dataclass
class Endpoint:
    cid: str
    nid: str
    name: str  # the container's name, without "/"
    ips: list[str]  # its addresses on this network, v4 and v6
    aliases: list[str] = field(default_factory=list)  # network-scoped aliases and the short id
    links: dict[str, str] = field(default_factory=dict)  # link alias -> linked container's name
    internal: bool = False  # on an --internal network: no way out, not even for names


@dataclass
class Answer:
    ips: list[str]  # v4 and v6; the server picks by query type
    names: list[str] = field(default_factory=list)  # for PTR queries


class NameIndex:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_ip: dict[str, str] = {}  # address -> cid
        self._eps: dict[tuple[str, str], Endpoint] = {}  # (cid, nid) -> endpoint
        self._nets_of: dict[str, set[str]] = {}  # cid -> nids it has an endpoint on
        self._names: dict[tuple[str, str], dict[str, list[str]]] = {}  # (nid, name) -> {cid: ips}
        self._net_ids: dict[str, str] = {}  # network name (lower) -> nid
        self._upstreams: dict[str, list[str]] = {}  # cid -> its --dns servers

    # ---- updates --------------------------------------------------------------------------------
    def set_network(self, nid: str, name: str) -> None:
        with self._lock:
            self._net_ids[name.lower()] = nid

    def drop_network(self, nid: str) -> None:
        with self._lock:
            for k in [k for k, v in self._net_ids.items() if v == nid]:
                del self._net_ids[k]

    def set_endpoint(self, ep: Endpoint) -> None:
        with self._lock:
            self._drop_locked(ep.cid, ep.nid)
            self._eps[(ep.cid, ep.nid)] = ep
            self._nets_of.setdefault(ep.cid, set()).add(ep.nid)
            for ip in ep.ips:
                self._by_ip[_norm(ip)] = ep.cid
            for n in _names_of(ep):
                self._names.setdefault((ep.nid, n), {})[ep.cid] = ep.ips

    def drop_endpoint(self, cid: str, nid: str) -> None:
        with self._lock:
            self._drop_locked(cid, nid)

    def set_upstreams(self, cid: str, servers: list[str]) -> None:
        with self._lock:
            if servers:
                self._upstreams[cid] = list(servers)
            else:
                self._upstreams.pop(cid, None)

    def rename(self, cid: str, name: str) -> None:
        with self._lock:
            eps = [self._eps[(cid, nid)] for nid in self._nets_of.get(cid, ())]
        for ep in eps:
            self.set_endpoint(dataclasses.replace(ep, name=name))

    def _drop_locked(self, cid: str, nid: str) -> None:
        ep = self._eps.pop((cid, nid), None)
        if ep is None:
            return
        nets = self._nets_of.get(cid)
        if nets is not None:
            nets.discard(nid)
            if not nets:
                del self._nets_of[cid]
                self._upstreams.pop(cid, None)
        for ip in ep.ips:
            if self._by_ip.get(_norm(ip)) == cid:
                del self._by_ip[_norm(ip)]
        for n in _names_of(ep):
            owners = self._names.get((nid, n))
            if owners is not None:
                owners.pop(cid, None)
                if not owners:
                    del self._names[(nid, n)]

    # ---- queries --------------------------------------------------------------------------------
    def asker(self, src: str) -> str | None:
        with self._lock:
            return self._by_ip.get(_norm(src))

    def upstreams(self, cid: str) -> list[str]:
        with self._lock:
            return list(self._upstreams.get(cid, ()))

    def forwards(self, cid: str) -> bool:
        """Whether other names go upstream for `cid`: not when all its networks are internal (dockerd 25+
        does not forward for them either; 20.10 did)."""
        with self._lock:
            return any(not self._eps[(cid, nid)].internal for nid in self._nets_of.get(cid, ()))

    def resolve(self, cid: str, qname: str) -> Answer | None:
        """What `cid` gets for `qname` (lower case, no trailing dot); None when no network of its knows it."""
        with self._lock:
            nets = self._nets_of.get(cid, set())
            ips: list[str] = []
            for nid in sorted(nets):
                ips += self._lookup_locked(cid, nid, qname)
            # "name.network": the name on that network only (Docker resolves these too).
            head, dot, tail = qname.partition(".")
            while dot:
                on = self._net_ids.get(tail)
                if on is not None and on in nets:
                    ips += self._lookup_locked(cid, on, head)
                more_head, dot, tail = tail.partition(".")
                head = f"{head}.{more_head}"
            if not ips:
                return None
            return Answer(list(dict.fromkeys(ips)))

    def reverse(self, cid: str, ip: str) -> Answer | None:
        """PTR: the container owning `ip`, when it shares a network with the asker."""
        with self._lock:
            owner = self._by_ip.get(_norm(ip))
            if owner is None:
                return None
            shared = self._nets_of.get(cid, set()) & self._nets_of.get(owner, set())
            for nid in sorted(shared):
                ep = self._eps[(owner, nid)]
                if _norm(ip) in {_norm(i) for i in ep.ips}:
                    return Answer([], [ep.name])
            return None

    def _lookup_locked(self, cid: str, nid: str, name: str) -> list[str]:
        ips: list[str] = []
        for owner_ips in self._names.get((nid, name), {}).values():
            ips += owner_ips
        me = self._eps.get((cid, nid))
        target = me.links.get(name) if me is not None else None
        if target is not None:
            for owner_ips in self._names.get((nid, target.lower()), {}).values():
                ips += owner_ips
        return ips


def _names_of(ep: Endpoint) -> set[str]:
    return {n.lower() for n in [ep.name, *ep.aliases] if n}


def _norm(ip: str) -> str:
    try:
        return str(ipaddress.ip_address(ip.split("%")[0]))
    except ValueError:
        return ip


def reverse_name(qname: str) -> str | None:
    """The address a PTR name stands for ("4.3.2.1.in-addr.arpa" -> "1.2.3.4"), or None."""
    if qname.endswith(".in-addr.arpa"):
        parts = qname[: -len(".in-addr.arpa")].split(".")
        if len(parts) == 4:
            return ".".join(reversed(parts))
    if qname.endswith(".ip6.arpa"):
        nibbles = qname[: -len(".ip6.arpa")].split(".")
        if len(nibbles) == 32:
            h = "".join(reversed(nibbles))
            try:
                return str(ipaddress.IPv6Address(int(h, 16)))
            except ValueError:
                return None
    return None
