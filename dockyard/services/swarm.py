"""Swarm mode on one node: `swarm init` makes this node the manager (and only member) of a swarm,
so swarm-scoped networks exist here: overlay networks (local bridges underneath, see services/networks.py),
attachable ones that plain containers join, and the ingress network.

What there is: the cluster and node objects in dockerd's shape (/swarm, /info's Swarm block, /nodes),
join tokens in swarmkit's format, `swarm update` with its version check, leave (which removes the swarm
networks, as dockerd's does), and all of it kept in the DB across a daemon restart, as dockerd keeps its
raft state. What there is not: services, tasks, secrets and configs (create answers 501 with why), a
certificate authority (TLSInfo stays empty), autolock, and a listener on the swarm port: no other node can
join this swarm, and this node joins none.
"""

from __future__ import annotations

import asyncio
import builtins
import ipaddress
import json
import os
import secrets
import socket
from typing import Any

from dockyard.errors import Conflict, InvalidParameter, NotFound, NotSupported, SystemError_, Unavailable
from dockyard.runtime import procfs
from dockyard.services.networks import NOT_MANAGER, NetworkService
from dockyard.store.db import Database
from dockyard.util.ids import swarm_id
from dockyard.util.timefmt import rfc3339

SCHEMA_V1 = "CREATE TABLE swarm (id INTEGER PRIMARY KEY CHECK (id = 1), cluster TEXT NOT NULL, node TEXT NOT NULL)"

NOT_IN_SWARM = "This node is not part of a swarm"
ALREADY_IN_SWARM = ('This node is already part of a swarm. Use "docker swarm leave" to leave this swarm and '
                    "join another one.")
LAST_MANAGER = ("You are attempting to leave the swarm on a node that is participating as a manager. Removing "
                "the last manager erases all current state of the swarm. Use `--force` to ignore this message. ")
OUT_OF_SEQUENCE = "rpc error: code = Unknown desc = update out of sequence"
DEFAULT_PORT = 2377


def default_spec() -> dict[str, Any]:
    """The cluster spec `docker swarm init` gets from dockerd 20.10 when it gives none."""
    return {"Name": "default", "Labels": {}, "Orchestration": {"TaskHistoryRetentionLimit": 5},
            "Raft": {"SnapshotInterval": 10000, "KeepOldSnapshots": 0, "LogEntriesForSlowFollowers": 500,
                     "ElectionTick": 10, "HeartbeatTick": 1},
            "Dispatcher": {"HeartbeatPeriod": 5000000000}, "CAConfig": {"NodeCertExpiry": 7776000000000000},
            "TaskDefaults": {}, "EncryptionConfig": {"AutoLockManagers": False}}


def _merge(base: dict[str, Any], given: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in given.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _secret(n: int) -> str:
    """`n` base-36 digits, as swarmkit's join token parts."""
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    return "".join(secrets.choice(digits) for _ in range(n))


def _token() -> str:
    return f"SWMTKN-1-{_secret(50)}-{_secret(25)}"


def _addr(text: str, what: str, default_port: int) -> tuple[str, int]:
    """"ip", "ip:port" or ":port" -> (ip, port); dockerd's words for an empty one."""
    if not text:
        raise InvalidParameter(f'invalid {what} "{text}": invalid empty address')
    host, sep, port = text.rpartition(":")
    if not sep or "]" in port:
        host, port = text, ""
    host = host.strip("[]")
    try:
        if host:
            ipaddress.ip_address(host)
        return host, int(port) if port else default_port
    except ValueError:
        raise InvalidParameter(f'invalid {what} "{text}": Dockyard takes an IP address with an optional port '
                               "here, not an interface name") from None


def _outbound_address() -> str:
    """The address this host would send from by default (no packet leaves: a UDP connect only routes)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.1", 9))  # TEST-NET-1: never answered, only routed
            return str(s.getsockname()[0])
        except OSError:
            return "127.0.0.1"


class SwarmService:
    def __init__(self, db: Database, networks: NetworkService, engine_version: str) -> None:
        self.db, self.networks, self.engine_version = db, networks, engine_version
        db.migrate("swarm", [SCHEMA_V1])
        self._lock = asyncio.Lock()
        self._cluster: dict[str, Any] | None = None
        self._node: dict[str, Any] | None = None
        row = db.query_one("SELECT cluster, node FROM swarm WHERE id=1")
        if row is not None:
            self._cluster, self._node = json.loads(row["cluster"]), json.loads(row["node"])
        networks.swarm_active = self.active
        networks.swarm_pools = self._pools

    # ---- state ------------------------------------------------------------------------------------
    def active(self) -> bool:
        return self._cluster is not None

    def _save(self) -> None:
        assert self._cluster is not None and self._node is not None
        self.db.execute("INSERT OR REPLACE INTO swarm(id, cluster, node) VALUES(1, ?, ?)",
                        (json.dumps(self._cluster), json.dumps(self._node)))

    def _pools(self) -> builtins.list[ipaddress.IPv4Network]:
        pools = (self._cluster or {}).get("DefaultAddrPool") or ["10.0.0.0/8"]
        size = int((self._cluster or {}).get("SubnetSize") or 24)
        out: builtins.list[ipaddress.IPv4Network] = []
        for p in pools:
            net = ipaddress.ip_network(p)
            if isinstance(net, ipaddress.IPv4Network):
                out += net.subnets(new_prefix=max(size, net.prefixlen))
        return out

    def _need_manager(self) -> tuple[dict[str, Any], dict[str, Any]]:
        if self._cluster is None or self._node is None:
            raise Unavailable(NOT_MANAGER)
        return self._cluster, self._node

    # ---- /swarm -----------------------------------------------------------------------------------
    def inspect(self) -> dict[str, Any]:
        cluster, _ = self._need_manager()
        return dict(cluster)

    def info(self) -> dict[str, Any]:
        """/info's Swarm block."""
        if self._cluster is None or self._node is None:
            return {"NodeID": "", "NodeAddr": "", "LocalNodeState": "inactive", "ControlAvailable": False,
                    "Error": "", "RemoteManagers": None}
        node, cluster = self._node, self._cluster
        return {"NodeID": node["ID"], "NodeAddr": node["Status"]["Addr"], "LocalNodeState": "active",
                "ControlAvailable": True, "Error": "",
                "RemoteManagers": [{"NodeID": node["ID"], "Addr": node["ManagerStatus"]["Addr"]}],
                "Nodes": 1, "Managers": 1, "Cluster": {k: v for k, v in cluster.items() if k != "JoinTokens"}}

    async def init(self, body: dict[str, Any]) -> str:
        listen_host, listen_port = _addr(str(body.get("ListenAddr") or ""), "ListenAddr", DEFAULT_PORT)
        async with self._lock:
            if self._cluster is not None:
                raise Unavailable(ALREADY_IN_SWARM)
            spec = _merge(default_spec(), body.get("Spec") or {})
            if body.get("AutoLockManagers") or spec["EncryptionConfig"].get("AutoLockManagers"):
                raise NotSupported("autolock is not supported by Dockyard's swarm mode: it keeps no raft log "
                                   "or keys to lock")
            given = str(body.get("AdvertiseAddr") or "")
            adv_host, adv_port = _addr(given, "AdvertiseAddr", listen_port) if given else ("", listen_port)
            adv_host = adv_host or (listen_host if listen_host not in ("", "0.0.0.0", "::") else _outbound_address())
            pools = body.get("DefaultAddrPool") or None
            for p in pools or []:
                try:
                    ipaddress.IPv4Network(p)
                except ValueError as e:
                    raise InvalidParameter(f"invalid default address pool {p}: {e}") from None
            now = rfc3339()
            self._cluster = {
                "ID": swarm_id(), "Version": {"Index": 10}, "CreatedAt": now, "UpdatedAt": now, "Spec": spec,
                "TLSInfo": {},  # no certificate authority: no node can join
                "RootRotationInProgress": False, "DefaultAddrPool": pools,
                "SubnetSize": int(body.get("SubnetSize") or 24), "DataPathPort": int(body.get("DataPathPort") or 4789),
                "JoinTokens": {"Worker": _token(), "Manager": _token()},
            }
            self._node = {
                "ID": swarm_id(), "Version": {"Index": 9}, "CreatedAt": now, "UpdatedAt": now,
                "Spec": {"Labels": {}, "Role": "manager", "Availability": str(body.get("Availability") or "active")},
                "Description": self._description(),
                "Status": {"State": "ready", "Addr": adv_host},
                "ManagerStatus": {"Leader": True, "Reachability": "reachable", "Addr": f"{adv_host}:{adv_port}"},
            }
            self._save()
            try:  # as dockerd: the ingress network comes with the swarm (it may be removed)
                await self.networks.create("ingress", driver="overlay", ingress=True, scope="swarm")
            except Conflict:
                pass  # a network of that name exists already: the swarm goes on without one
            except BaseException:
                self.db.execute("DELETE FROM swarm WHERE id=1")  # no half-made swarm
                self._cluster = self._node = None
                raise
            return str(self._node["ID"])

    def _description(self) -> dict[str, Any]:
        mem = procfs.mem_total()
        plugins = [{"Type": "Log", "Name": n} for n in ("json-file", "local")]
        plugins += [{"Type": "Network", "Name": n} for n in ("bridge", "host", "null", "overlay")]
        plugins += [{"Type": "Volume", "Name": "local"}]
        return {"Hostname": os.uname().nodename,
                "Platform": {"Architecture": os.uname().machine, "OS": "linux"},
                "Resources": {"NanoCPUs": (os.cpu_count() or 1) * 1_000_000_000, "MemoryBytes": mem},
                "Engine": {"EngineVersion": self.engine_version, "Plugins": plugins}}

    async def join(self, body: dict[str, Any]) -> None:
        _addr(str(body.get("ListenAddr") or ""), "ListenAddr", DEFAULT_PORT)
        if self._cluster is not None:
            raise Unavailable(ALREADY_IN_SWARM)
        raise NotSupported("joining a swarm is not supported by Dockyard: its swarm mode is a single node "
                           "(`docker swarm init` makes one)")

    async def leave(self, force: bool) -> None:
        async with self._lock:
            if self._cluster is None:
                raise Unavailable(NOT_IN_SWARM)
            if not force:
                raise Unavailable(LAST_MANAGER)
            await self.networks.drop_swarm_networks()  # first: a crash half-way leaves a swarm, not orphans
            self.db.execute("DELETE FROM swarm WHERE id=1")
            self._cluster = self._node = None

    def update(self, version: str, body: dict[str, Any], rotate_worker: bool, rotate_manager: bool) -> None:
        cluster, _ = self._need_manager()
        if int(version) != cluster["Version"]["Index"]:
            raise SystemError_(OUT_OF_SEQUENCE)
        spec = _merge(default_spec(), body)
        if spec["EncryptionConfig"].get("AutoLockManagers"):
            raise NotSupported("autolock is not supported by Dockyard's swarm mode: it keeps no raft log or keys "
                               "to lock")
        cluster["Spec"] = spec
        if rotate_worker:
            cluster["JoinTokens"]["Worker"] = _token()
        if rotate_manager:
            cluster["JoinTokens"]["Manager"] = _token()
        cluster["Version"]["Index"] += 1
        cluster["UpdatedAt"] = rfc3339()
        self._save()

    def unlock_key(self) -> dict[str, Any]:
        self._need_manager()
        return {"UnlockKey": ""}

    # ---- /nodes -----------------------------------------------------------------------------------
    def nodes(self, filters: dict[str, builtins.list[str]]) -> builtins.list[dict[str, Any]]:
        _, node = self._need_manager()
        for key, values in filters.items():
            if key not in ("id", "label", "membership", "name", "node.label", "role"):
                raise InvalidParameter(f"invalid filter '{key}'")
            if not values:
                continue
            labels = node["Spec"]["Labels"] if key == "node.label" else {}
            ok = {"id": any(node["ID"].startswith(v) for v in values),
                  "name": any(node["Description"]["Hostname"].startswith(v) for v in values),
                  "role": "manager" in values, "membership": "accepted" in values,
                  "label": not values, "node.label": all(
                      (v.partition("=")[0] in labels and (not v.partition("=")[1] or labels[v.partition("=")[0]] ==
                                                          v.partition("=")[2])) for v in values)}[key]
            if not ok:
                return []
        return [self._node_json(node)]

    def _node_json(self, node: dict[str, Any]) -> dict[str, Any]:
        out = dict(node)
        out["Description"] = self._description()  # the engine as it is now (memory, version)
        return out

    def node(self, ref: str) -> dict[str, Any]:
        _, node = self._need_manager()
        if ref and (node["ID"].startswith(ref) or ref == node["Description"]["Hostname"]):
            return self._node_json(node)
        raise NotFound(f"node {ref} not found")

    def update_node(self, ref: str, version: str, spec: dict[str, Any]) -> None:
        self.node(ref)
        _, node = self._need_manager()
        if int(version) != node["Version"]["Index"]:
            raise SystemError_(OUT_OF_SEQUENCE)
        if spec.get("Role", "manager") != "manager":
            raise InvalidParameter("rpc error: code = FailedPrecondition desc = attempting to demote the last "
                                   "manager of the swarm")
        availability = spec.get("Availability") or "active"
        if availability not in ("active", "pause", "drain"):
            raise InvalidParameter(f"invalid Availability {availability!r}")
        node["Spec"] = {"Labels": spec.get("Labels") or {}, "Role": "manager", "Availability": availability,
                        **({"Name": spec["Name"]} if spec.get("Name") else {})}
        node["Version"]["Index"] += 1
        node["UpdatedAt"] = rfc3339()
        self._save()

    def remove_node(self, ref: str, force: bool) -> None:
        node = self.node(ref)
        raise InvalidParameter(f"rpc error: code = FailedPrecondition desc = node {node['ID']} is a cluster manager "
                               "and is a member of the raft cluster. It must be demoted to worker before removal")


__all__ = ["NOT_IN_SWARM", "SwarmService"]
