"""NetworkService: Docker's networks on Linux bridges — IPAM in the DB, a netns and veth per
container, published ports and isolation as nftables rules, a DNS server per user network.

Kernel state (bridges, veths, netns, rules) is derived from the DB and rebuilt by `start()`.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import functools
import ipaddress
import json
import logging
import os
import re
import socket
import time
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dockyard import trace
from dockyard.errors import (
    Conflict,
    DockyardError,
    Forbidden,
    InvalidParameter,
    NotFound,
    SystemError_,
    Unavailable,
)
from dockyard.network import firewall, hostfiles, ipam, netlink, ports
from dockyard.network.dns import DnsServer
from dockyard.network.names import Endpoint, NameIndex
from dockyard.plugins.discovery import PluginStore
from dockyard.services.events import EventBus
from dockyard.store.db import Database, prefix_range
from dockyard.util import hostlock
from dockyard.util.ids import new_id, swarm_id
from dockyard.util.timefmt import rfc3339

log = logging.getLogger(__name__)
NETWORK_DRIVER = "NetworkDriver"
# dockerd takes any non-empty name; a "/" makes a network that no path reaches (`network rm ../x` finds
# no route), so only those (and control characters) are refused. Spaces are fine ("test 01").
NAME_BAD = re.compile(r"[/\x00-\x1f\x7f]")
NAME_MAX = 255

SCHEMA_V1 = """
CREATE TABLE networks (
  id TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE, driver TEXT NOT NULL, bridge TEXT NOT NULL DEFAULT '',
  subnet TEXT NOT NULL DEFAULT '', gateway TEXT NOT NULL DEFAULT '', ip_range TEXT NOT NULL DEFAULT '',
  internal INTEGER NOT NULL DEFAULT 0, attachable INTEGER NOT NULL DEFAULT 0, builtin INTEGER NOT NULL DEFAULT 0,
  labels TEXT NOT NULL DEFAULT '{}', options TEXT NOT NULL DEFAULT '{}', created REAL NOT NULL);
CREATE TABLE net_links (
  cid TEXT NOT NULL, network_id TEXT NOT NULL REFERENCES networks(id) ON DELETE CASCADE,
  aliases TEXT NOT NULL DEFAULT '[]', ipv4 TEXT NOT NULL DEFAULT '', PRIMARY KEY (cid, network_id));
CREATE TABLE net_endpoints (
  cid TEXT NOT NULL, network_id TEXT NOT NULL REFERENCES networks(id), endpoint_id TEXT NOT NULL,
  name TEXT NOT NULL, ip TEXT NOT NULL, mac TEXT NOT NULL, veth TEXT NOT NULL, ifname TEXT NOT NULL,
  PRIMARY KEY (cid, network_id));
CREATE TABLE net_sandboxes (
  cid TEXT PRIMARY KEY, name TEXT NOT NULL, mode TEXT NOT NULL, netns TEXT NOT NULL DEFAULT '',
  sandbox_id TEXT NOT NULL, ports TEXT NOT NULL DEFAULT '[]', exposed TEXT NOT NULL DEFAULT '[]',
  files TEXT NOT NULL DEFAULT '{}')
"""
# IPv6 and the rest of Docker's IPAM (auxiliary addresses, options); the endpoint settings as given at
# create or connect (IPAMConfig, Links, DriverOpts, MacAddress); each endpoint's v6 and link-local addresses.
SCHEMA_V2 = """
ALTER TABLE networks ADD COLUMN ipv6 INTEGER NOT NULL DEFAULT 0;
ALTER TABLE networks ADD COLUMN subnet6 TEXT NOT NULL DEFAULT '';
ALTER TABLE networks ADD COLUMN gateway6 TEXT NOT NULL DEFAULT '';
ALTER TABLE networks ADD COLUMN ip_range6 TEXT NOT NULL DEFAULT '';
ALTER TABLE networks ADD COLUMN ipam TEXT NOT NULL DEFAULT '';
ALTER TABLE net_links ADD COLUMN config TEXT NOT NULL DEFAULT '{}';
ALTER TABLE net_endpoints ADD COLUMN ip6 TEXT NOT NULL DEFAULT '';
ALTER TABLE net_endpoints ADD COLUMN link_local TEXT NOT NULL DEFAULT '[]';
CREATE INDEX net_endpoints_by_network ON net_endpoints(network_id)
"""

# Swarm mode (services/swarm.py): swarm-scoped networks (driver overlay, or a bridge made with scope swarm)
# and the ingress network. On one node an overlay network is a local bridge like any other: what differs is
# its scope, its id (swarmkit's), its pool (10.0.0.0/8 in /24s, as swarmkit's default) and that containers
# join it only when it is attachable. The ingress network is a record only: no service can use it here.
SCHEMA_V3 = """
ALTER TABLE networks ADD COLUMN scope TEXT NOT NULL DEFAULT 'local';
ALTER TABLE networks ADD COLUMN ingress INTEGER NOT NULL DEFAULT 0
"""
BRIDGED = "driver IN ('bridge','overlay') AND bridge!=''"  # networks with a Linux bridge of ours underneath
VNI_BASE = 4096  # swarmkit's first VXLAN id: the ingress network gets it at init


def default_swarm_pools() -> builtins.list[ipaddress.IPv4Network]:
    """Swarmkit's default address pool: 10.0.0.0/8 in /24s."""
    return builtins.list(ipaddress.IPv4Network("10.0.0.0/8").subnets(new_prefix=24))


NOT_MANAGER = ('This node is not a swarm manager. Use "docker swarm init" or "docker swarm join" to '
               "connect this node to swarm and try again.")

ResolveContainer = Callable[[str], tuple[str, str, bool]]  # ref → (cid, name, running)


@dataclass
class AttachResult:
    netns_path: Path | None
    hosts_path: Path
    resolv_path: Path
    hostname_path: Path
    network_settings: dict[str, Any] = field(default_factory=dict)
    # With attach(defer_plumbing=True): wires the veths (blocking; run it in a thread before the
    # container's process starts). Addresses, files and firewall rules are already in place.
    plumb: Callable[[], None] | None = None


def _run_all(fns: builtins.list[Callable[[], None]]) -> None:
    for fn in fns:
        fn()


class NetworkService:
    def __init__(self, db: Database, exec_root: Path, events: EventBus, bridge_name: str = "dockyard0",
                 bip: str | None = None, table: str = "dockyard", mtu: int = 1500,
                 resolve_container: ResolveContainer | None = None,
                 host_resolv_conf: Path = Path("/etc/resolv.conf"), plugins: PluginStore | None = None) -> None:
        """`bip` None: keep the stored default-bridge subnet, or pick the first of Docker's pools
        that overlaps no host route (so several daemons and dockerd can share a host)."""
        self.db, self.exec_root, self.events = db, Path(exec_root), events
        self.bridge_name, self.bip, self.table, self.mtu = bridge_name, bip, table, mtu
        self.resolve_container = resolve_container
        self.host_resolv_conf = host_resolv_conf
        self.plugins = plugins  # network drivers other than bridge and overlay (the remote driver protocol)
        self._lock = asyncio.Lock()
        self._dns: dict[str, DnsServer] = {}
        self._held: dict[str, list[socket.socket]] = {}
        # Starts whose veths are being wired outside the lock (attach(defer_plumbing=True)): a connect or
        # disconnect of that container waits for it, else a disconnect could release the endpoint and its
        # address before the plumb makes the veth with them.
        self._plumbing: dict[str, asyncio.Event] = {}
        # Containers whose network is being released in the background (detach/forget with wait=False):
        # a removal answers before the kernel's 20-50 ms of deleting the veths and the netns. Their rows and
        # addresses stay until the veths are gone, so no address is on two interfaces at once; what needs
        # the release done waits for it (_settled): an attach that finds an address taken, connect and
        # disconnect of that container, network rm, the daemon's stop.
        self._releasing: dict[str, asyncio.Task[None]] = {}
        self.names = NameIndex()  # what the embedded DNS answers, per asking container
        self._pools: dict[tuple[str, int], ipam.Pool] = {}  # (network id, 4|6) -> addresses in use
        self.swarm_active: Callable[[], bool] = lambda: False  # set by the swarm service
        self.swarm_pools: Callable[[], builtins.list[ipaddress.IPv4Network]] = default_swarm_pools
        # Called with a container's id after `network connect/disconnect` changed its networks (the
        # container service keeps a running container's settings, which the list shows, in its row).
        self.on_container_networks: builtins.list[Callable[[str], None]] = []
        db.migrate("networks", [SCHEMA_V1, SCHEMA_V2, SCHEMA_V3])

    def set_container_resolver(self, resolve: ResolveContainer) -> None:
        """Wiring injects the container service's lookup after both exist."""
        self.resolve_container = resolve

    # ---- lifecycle ------------------------------------------------------------------------------
    async def start(self) -> None:
        async with self._lock:
            netlink.set_sysctl("net/ipv4/ip_forward", "1")
            async with hostlock.held_async("subnets"):  # the default bridge's subnet, or a moved one, may be picked
                await asyncio.to_thread(self._ensure_builtins)
                await asyncio.to_thread(self._move_shadowed_user_networks)
                for net in self._rows(f"SELECT * FROM networks WHERE {BRIDGED}"):
                    await asyncio.to_thread(self._ensure_bridge, net)
            for sb in self._rows("SELECT * FROM net_sandboxes"):
                if sb["netns"] and sb["mode"] not in ("host",) and not sb["mode"].startswith("container:") \
                        and not Path(sb["netns"]).exists():
                    await asyncio.to_thread(self._detach_sync, sb["cid"])  # its netns died with a reboot
                    continue
                self._rehold(sb)
            await asyncio.to_thread(self._sync_firewall)
            for net in self._rows(f"SELECT * FROM networks WHERE {BRIDGED} AND builtin=0"):
                self.names.set_network(net["id"], net["name"])
                await self._start_dns(net)
            for ep in self._rows("SELECT cid, network_id FROM net_endpoints"):
                self._index(ep["cid"], ep["network_id"])
            for sb in self._rows("SELECT cid, files FROM net_sandboxes WHERE files LIKE '%\"dns\"%'"):
                self.names.set_upstreams(sb["cid"], json.loads(sb["files"]).get("dns") or [])

    async def close(self) -> None:
        for nid in list(self._dns):
            await self._stop_dns(nid)
        for socks in self._held.values():
            for s in socks:
                s.close()
        self._held.clear()

    async def shutdown(self) -> None:
        """Daemon stop. With no container attached, remove our bridges, table and netns mount too, so
        a stopped daemon leaves the host as it found it; `start()` rebuilds them all from the DB.
        With containers still running (they outlive the daemon), keep everything they use."""
        await self._settled(None)  # the releases under way end first (a kill -9 leaves them to the next start)
        if self.db.query_one("SELECT 1 FROM net_sandboxes"):
            await self.close()
        else:
            await self.teardown_all()

    async def teardown_all(self) -> None:
        await self._settled(None)
        await self.close()
        async with self._lock:
            for sb in self._rows("SELECT cid FROM net_sandboxes"):
                await asyncio.to_thread(self._detach_sync, sb["cid"], False)
            for net in self._rows(f"SELECT * FROM networks WHERE {BRIDGED}"):
                await asyncio.to_thread(netlink.delete_link, net["bridge"])
            await asyncio.to_thread(firewall.delete_table, self.table)
            await asyncio.to_thread(firewall.remove_forward_accept, self.table)
            await asyncio.to_thread(netlink.unmount_dir, self.exec_root / "netns")

    # ---- containers -----------------------------------------------------------------------------
    async def attach(self, cid: str, name: str, hostname: str, network_mode: str, endpoints_config: dict[str, Any],
                     port_bindings: dict[str, Any], exposed_ports: dict[str, Any], publish_all: bool, dns: builtins.list[str],
                     dns_search: builtins.list[str], dns_options: builtins.list[str], extra_hosts: builtins.list[str], mac: str | None,
                     domainname: str = "", defer_plumbing: bool = False,
                     link_hosts: builtins.list[tuple[str, builtins.list[str]]] | None = None) -> AttachResult:
        """Give the container its network. defer_plumbing: leave the veths to result.plumb, so the caller
        can wire them while the runtime creates the container (which needs only the netns to exist)."""
        attach = functools.partial(self._attach, cid, name, hostname, network_mode, endpoints_config, port_bindings,
                                   exposed_ports, publish_all, dns, dns_search, dns_options, extra_hosts, mac,
                                   domainname, defer_plumbing, link_hosts)
        await self._settled({cid})
        try:
            return await attach()
        except (Forbidden, Unavailable):
            if not self._releasing:
                raise
            # The address asked for, or the last free one, may be a removed container's whose release is
            # under way: free once its veth is gone (as at once after dockerd's rm). Attach again then
            # (after those under way now: later ones, under a stream of removals, are not waited for).
            await self._settled(set(self._releasing))
            return await attach()

    async def _attach(self, cid: str, name: str, hostname: str, network_mode: str, endpoints_config: dict[str, Any],
                      port_bindings: dict[str, Any], exposed_ports: dict[str, Any], publish_all: bool,
                      dns: builtins.list[str], dns_search: builtins.list[str], dns_options: builtins.list[str],
                      extra_hosts: builtins.list[str], mac: str | None, domainname: str, defer_plumbing: bool,
                      link_hosts: builtins.list[tuple[str, builtins.list[str]]] | None) -> AttachResult:
        mode = network_mode or "default"
        netns = self.exec_root / "netns" / cid
        fresh = not self.has_sandbox(cid)
        made = None
        if fresh and mode != "host" and not mode.startswith("container:"):
            # The container's own namespace is made before the lock: it shares nothing, and under the
            # lock concurrent starts queued behind each other's (20 build stages: up to 3 s each).
            # _attach_sync finds it made.
            made = asyncio.ensure_future(asyncio.to_thread(netlink.create_netns, netns))
        try:
            if made is not None:
                await asyncio.shield(made)
            async with self._lock_for(mode if fresh else ""):
                if self.db.query_one("SELECT 1 FROM net_sandboxes WHERE cid=?", (cid,)):
                    await asyncio.to_thread(self._detach_sync, cid)  # left over from a crash
                try:
                    res = await asyncio.to_thread(
                        self._attach_sync, cid, name, hostname, mode, endpoints_config or {},
                        port_bindings or {}, exposed_ports or {}, publish_all, dns or [], dns_search or [],
                        dns_options or [], extra_hosts or [], mac, domainname, link_hosts or [])
                    if res.plumb is not None and not defer_plumbing:
                        await asyncio.to_thread(res.plumb)
                        res.plumb = None
                    elif res.plumb is not None:
                        res.plumb = self._tracked_plumb(cid, res.plumb)
                    self._emit_membership(cid, "connect")  # dockerd's `network connect` at each start
                    return res
                except BaseException:
                    await asyncio.to_thread(self._detach_sync, cid)
                    raise
        except BaseException:
            if made is not None:  # failed or cancelled before its row: nobody else drops the namespace
                await asyncio.wait([made])  # a cancelled wait: the thread still makes it
                if not self.has_sandbox(cid):
                    await asyncio.to_thread(netlink.delete_netns, netns)
            raise

    def _tracked_plumb(self, cid: str, plumb: Callable[[], None]) -> Callable[[], None]:
        """`plumb`, known to be under way (registered now, under the lock) until it has run or the
        container's network is released (a start that failed before it)."""
        loop = asyncio.get_running_loop()
        done = self._plumbing[cid] = asyncio.Event()

        def finished() -> None:
            done.set()
            if self._plumbing.get(cid) is done:
                del self._plumbing[cid]

        def tracked() -> None:
            try:
                plumb()
            finally:
                loop.call_soon_threadsafe(finished)

        return tracked

    async def _plumbed(self, cid: str) -> None:
        """Wait for a start's veth wiring of cid to end (called under the lock, which it does not need)."""
        pending = self._plumbing.get(cid)
        if pending is not None:
            await pending.wait()

    def _lock_for(self, mode: str) -> contextlib.AbstractAsyncContextManager[Any]:
        """The networks lock, except for a sandbox of mode none or host: it shares nothing with other
        containers (no address, port, firewall rule or DNS name), so its rows and files need only the
        container's own lock, which orders its starts, exits and removal (the caller holds it)."""
        return contextlib.nullcontext() if mode in ("none", "host") else self._lock

    async def detach(self, cid: str, wait: bool = True) -> None:
        """Release the container's network: veths, netns, then addresses, rules and rows. wait=False: in
        the background if it can be (deferrable), the caller answering meanwhile."""
        if not wait and self.deferrable(cid):
            self._later(cid, lambda: self._detach_now(cid))
            return
        await self._settled({cid})
        await self._detach_now(cid)

    def deferrable(self, cid: str) -> bool:
        """The container's network may be released after its removal has answered: it holds no host port
        (the client may publish the same one next, or bind it itself, at once) and no plugin's endpoint
        (the plugin hears Leave before the answer, as from dockerd). An address it holds is waited for by
        the attach that wants it."""
        if self._held.get(cid):
            return False
        sb = self.db.query_one("SELECT ports FROM net_sandboxes WHERE cid=?", (cid,))
        if sb is not None and sb["ports"] != "[]":
            return False
        return not any(_is_plugin(ep) for ep in self._rows(
            "SELECT n.driver FROM net_endpoints e JOIN networks n ON n.id=e.network_id WHERE e.cid=?", (cid,)))

    def _later(self, cid: str, release: Callable[[], Awaitable[None]], gone: bool = False) -> None:
        """Run `release` of cid in the background, after any still under way for it. Its DNS names go now:
        a container of the same name may start at once. `gone`: the container is removed, and its trace
        records (the release's, made after the removal dropped the rest) go once it ends."""
        for ep in self._rows("SELECT network_id FROM net_endpoints WHERE cid=?", (cid,)):
            self.names.drop_endpoint(cid, ep["network_id"])
        before = self._releasing.get(cid)

        async def run() -> None:
            if before is not None:
                await asyncio.wait([before])
            try:
                with trace.about(f"container:{cid}"):
                    await release()
            finally:
                if gone:
                    trace.drop(f"container:{cid}")

        task = asyncio.get_running_loop().create_task(run())
        self._releasing[cid] = task

        def done(t: asyncio.Task[None]) -> None:
            if self._releasing.get(cid) is t:
                del self._releasing[cid]
            if not t.cancelled() and t.exception() is not None:
                log.warning("network release of %s: %s", cid[:12], t.exception())

        task.add_done_callback(done)

    async def _settled(self, cids: Collection[str] | None) -> None:
        """Wait for the background releases of `cids` (None: all) to end. Not under the lock: they take it."""
        while pending := [t for cid, t in self._releasing.items() if cids is None or cid in cids]:
            await asyncio.wait(pending)  # a cancelled waiter leaves them running

    async def _detach_now(self, cid: str) -> None:
        pending = self._plumbing.pop(cid, None)
        if pending is not None:  # a failed start releases a plumb it never ran (one it ran has ended)
            pending.set()
        if cid not in self._held and not self.has_sandbox(cid) and \
                self.db.query_one("SELECT 1 FROM net_endpoints WHERE cid=?", (cid,)) is None:
            if self.netns_left(cid):  # made by a start a crash cut short before its row was written
                await asyncio.to_thread(netlink.delete_netns, self.exec_root / "netns" / cid)
            return  # released already (a removal after the exit's cleanup)
        # The container's own veths and netns go first, outside the lock: they are nobody else's, and
        # the kernel's 10-30 ms for them need not hold up every other container's start and stop.
        # The records, addresses and rules then go under the lock (the veths gone, so an address
        # handed out again is on no other interface).
        await asyncio.to_thread(self._unwire, cid)
        sb = self.db.query_one("SELECT mode FROM net_sandboxes WHERE cid=?", (cid,))
        async with self._lock_for(sb["mode"] if sb is not None else ""):
            self._emit_membership(cid, "disconnect")
            await asyncio.to_thread(self._detach_sync, cid)

    def _unwire(self, cid: str) -> None:
        eps = self._rows("SELECT e.veth, n.driver FROM net_endpoints e JOIN networks n ON n.id=e.network_id "
                         "WHERE e.cid=?", (cid,))
        for ep in eps:
            if ep["veth"] and not _is_plugin(ep):
                netlink.delete_link(ep["veth"])  # deleting one end removes the pair
        if any(_is_plugin(ep) for ep in eps):
            return  # a plugin is told (Leave) before the netns with its interface goes
        sb = self.db.query_one("SELECT netns, mode FROM net_sandboxes WHERE cid=?", (cid,))
        if sb is not None and sb["netns"] and not sb["mode"].startswith("container:"):
            netlink.delete_netns(Path(sb["netns"]))

    def _emit_membership(self, cid: str, action: str) -> None:
        for ep in self._rows("SELECT network_id FROM net_endpoints WHERE cid=?", (cid,)):
            net = self.db.query_one("SELECT * FROM networks WHERE id=?", (ep["network_id"],))
            if net is not None:
                self.events.emit("network", action, net["id"], {"container": cid, "name": net["name"],
                                                                "type": net["driver"]})

    async def forget(self, cid: str, wait: bool = True) -> None:
        """At container removal: drop its network memberships too (wait=False: as detach's)."""
        if not wait and self.deferrable(cid):
            self._later(cid, lambda: self._forget_now(cid), gone=True)
            return
        await self._settled({cid})
        await self._forget_now(cid)

    async def _forget_now(self, cid: str) -> None:
        await self._detach_now(cid)
        # Without the fsync (it held the database's lock for 5-20 ms after each `run --rm`'s answer): memberships
        # a power loss kept are those of a row `removing` (recover finishes it) or gone (release_orphans).
        await asyncio.to_thread(self.db.execute, "DELETE FROM net_links WHERE cid=?", (cid,), durable=False)

    async def release_orphans(self, live: Collection[str]) -> int:
        """At start, after recovery: the network of containers whose rows are gone. A daemon killed while
        a removed container's release ran in the background left its veth, netns, address and rows."""
        orphans = {r["cid"] for r in self._rows("SELECT cid FROM net_sandboxes UNION SELECT cid FROM net_endpoints "
                                                "UNION SELECT cid FROM net_links")} - set(live)
        released = 0
        for cid in sorted(orphans):
            log.info("container %s is gone: releasing the network its removal left", cid[:12])
            try:
                with trace.about(f"container:{cid}"):
                    await self.forget(cid)
                released += 1
            except Exception as e:  # noqa: BLE001 - one that fails must not keep the daemon down at every start
                log.warning("network release of removed container %s: %s", cid[:12], e)
            trace.drop(f"container:{cid}")
        return released

    async def reconcile(self, cid: str) -> None:
        """A running container re-adopted after a crash. An endpoint whose veth is not on the host is
        what a `network connect` the crash cut short (row written, veth not yet made) or a disconnect
        (veth gone, row not yet) left, or a veth someone deleted: inspect would show an address the
        container does not have. Drop it (address, DNS name, membership), so the records say what the
        kernel has and a new connect works; a membership with no endpoint at all goes the same way."""
        async with self._lock:
            for ep in self._rows("SELECT * FROM net_endpoints WHERE cid=?", (cid,)):
                if not ep["veth"] or netlink.link_exists(ep["veth"]):
                    continue
                log.warning("container %s: its endpoint on network %s has no veth (%s) on the host: dropped",
                            cid[:12], ep["network_id"][:12], ep["veth"])
                await asyncio.to_thread(self._unplug, ep)
                self.db.execute("DELETE FROM net_links WHERE cid=? AND network_id=?", (cid, ep["network_id"]))
            if self.db.query_one("SELECT 1 FROM net_sandboxes WHERE cid=? AND mode NOT IN ('host', 'none') "
                                 "AND mode NOT LIKE 'container:%'", (cid,)):
                for link in self._rows("SELECT l.network_id FROM net_links l JOIN networks n ON n.id=l.network_id "
                                       "WHERE l.cid=? AND n.driver NOT IN ('host', 'null') AND NOT EXISTS "
                                       "(SELECT 1 FROM net_endpoints e WHERE e.cid=l.cid AND "
                                       "e.network_id=l.network_id)", (cid,)):
                    log.warning("container %s: on network %s without an endpoint: dropped", cid[:12],
                                link["network_id"][:12])
                    self.db.execute("DELETE FROM net_links WHERE cid=? AND network_id=?", (cid, link["network_id"]))

    def has_sandbox(self, cid: str) -> bool:
        return self.db.query_one("SELECT 1 FROM net_sandboxes WHERE cid=?", (cid,)) is not None

    def netns_left(self, cid: str) -> bool:
        """The container's own netns file is there. attach makes it before the sandbox row (outside
        the networks lock), so a daemon killed in between leaves one that no row names (chaos seed 2601:
        a restart policy's start cut short)."""
        return os.path.lexists(self.exec_root / "netns" / cid)

    def settings(self, cid: str) -> dict[str, Any]:
        sb = self.db.query_one("SELECT * FROM net_sandboxes WHERE cid=?", (cid,))
        eps = {r["network_id"]: r for r in self._rows("SELECT * FROM net_endpoints WHERE cid=?", (cid,))}
        links = self._rows("SELECT l.*, n.name AS nname FROM net_links l JOIN networks n ON n.id=l.network_id "
                           "WHERE l.cid=? ORDER BY n.name", (cid,))
        nets: dict[str, Any] = {}
        top: dict[str, Any] = {"EndpointID": "", "Gateway": "", "IPAddress": "", "IPPrefixLen": 0, "MacAddress": "",
                               "GlobalIPv6Address": "", "GlobalIPv6PrefixLen": 0, "IPv6Gateway": ""}
        bridge = ""
        for link in links:
            net = self._net_row(link["network_id"])
            ep = eps.get(link["network_id"])
            ec = json.loads(link["config"] or "{}")
            aliases = json.loads(link["aliases"]) or None
            ipam_cfg = {k: v for k, v in (ec.get("IPAMConfig") or {}).items() if v}
            if link["ipv4"]:
                ipam_cfg.setdefault("IPv4Address", link["ipv4"])
            entry = {
                "IPAMConfig": ipam_cfg or None,
                "Links": ec.get("Links") or None, "Aliases": aliases,
                "MacAddress": ep["mac"] if ep else (ec.get("MacAddress") or ""),
                "DriverOpts": ec.get("DriverOpts") or None,
                "GwPriority": 0, "NetworkID": net["id"], "EndpointID": ep["endpoint_id"] if ep else "",
                "Gateway": net["gateway"] if ep and net["gateway"] else "",
                "IPAddress": ep["ip"] if ep else "",
                "IPPrefixLen": _prefixlen(net["subnet"]) if ep and net["subnet"] else 0,
                "IPv6Gateway": net["gateway6"] if ep and ep["ip6"] else "",
                "GlobalIPv6Address": ep["ip6"] if ep else "",
                "GlobalIPv6PrefixLen": _prefixlen(net["subnet6"]) if ep and ep["ip6"] else 0,
                "DNSNames": self._dns_names(net, link["cid"], ep["name"], aliases or []) if ep else None,
            }
            nets[net["name"]] = entry
            if ep and net["name"] == "bridge":  # Docker fills the legacy top-level fields for it only
                top = {k: entry[k] for k in top}
                bridge = net["bridge"]
        port_map: dict[str, Any] = {}
        if sb is not None:
            for key in json.loads(sb["exposed"]):
                port_map.setdefault(key, None)
            for p in json.loads(sb["ports"]):
                port_map[p["key"]] = (port_map.get(p["key"]) or []) + [
                    {"HostIp": p["host_ip"] or "0.0.0.0", "HostPort": str(p["host_port"])}]
        return {
            "Bridge": bridge, "SandboxID": sb["sandbox_id"] if sb else "",
            "SandboxKey": sb["netns"] if sb else "", "HairpinMode": False,
            "LinkLocalIPv6Address": "", "LinkLocalIPv6PrefixLen": 0, "Ports": port_map,
            "SecondaryIPAddresses": None, "SecondaryIPv6Addresses": None, **top, "Networks": nets,
        }

    def endpoints(self, nid: str) -> builtins.list[Any]:
        """The network's endpoints as stored: cid, name, ip, mac, veth (the host end), ifname."""
        return self._rows("SELECT * FROM net_endpoints WHERE network_id=?", (nid,))

    def ports(self, cid: str) -> builtins.list[dict[str, Any]]:
        """Published ports in the API's container-list shape: [{IP, PrivatePort, PublicPort, Type}]."""
        sb = self.db.query_one("SELECT ports, exposed FROM net_sandboxes WHERE cid=?", (cid,))
        if sb is None:
            return []
        out = [{"IP": p["host_ip"] or "0.0.0.0", "PrivatePort": p["port"], "PublicPort": p["host_port"],
                "Type": p["proto"]} for p in json.loads(sb["ports"])]
        bound = {p["key"] for p in json.loads(sb["ports"])}
        for key in json.loads(sb["exposed"]):
            if key not in bound:
                port, proto = ports.split_port_key(key)
                out.append({"PrivatePort": port, "Type": proto})
        return out

    # ---- /networks API --------------------------------------------------------------------------
    async def create(self, name: str, driver: str = "bridge", subnet: str | None = None,
                     gateway: str | None = None, ip_range: str | None = None, internal: bool = False,
                     attachable: bool = False, labels: dict[str, Any] | None = None, options: dict[str, Any] | None = None,
                     ipam_driver: str = "default", enable_ipv6: bool = False,
                     ipam_configs: builtins.list[dict[str, Any]] | None = None,
                     ipam_options: dict[str, Any] | None = None, scope: str = "",
                     ingress: bool = False) -> dict[str, Any]:
        """`ipam_configs`: the request's IPAM.Config ([{Subnet, IPRange, Gateway, AuxiliaryAddresses}]):
        at most one IPv4 and one IPv6 pool, as Docker's bridge driver allows. `subnet`, `gateway` and
        `ip_range` are a one-pool shorthand. `scope` "swarm" (or driver overlay) and `ingress` need an
        active swarm; dockerd's checks and words, in its order."""
        if not name:
            raise InvalidParameter("network name must not be empty")  # swagger: Name is required
        if len(name) > NAME_MAX or NAME_BAD.search(name):
            raise InvalidParameter(f'invalid network name "{name[:NAME_MAX]}": no "/" or control characters, '
                                   f"at most {NAME_MAX} characters")
        driver = driver or "bridge"
        if driver in ("host", "null", "none"):
            raise Forbidden(f"only one instance of \"{driver}\" network is allowed")
        plugin = driver not in ("bridge", "overlay")
        if plugin:
            if self.plugins is None:
                raise NotFound(f"plugin \"{driver}\" not found")
            driver = (await asyncio.to_thread(self.plugins.get, driver, NETWORK_DRIVER)).name
        if ingress and driver != "overlay":
            raise Forbidden("Ingress network can only be global scope network")
        if driver == "overlay" and scope == "local":
            raise Forbidden("cannot downgrade network scope for overlay networks")
        if scope == "swarm" and driver != "overlay" and not self.swarm_active():
            raise Forbidden("cannot create a swarm scoped network when swarm is not active")
        if driver == "overlay" and not self.swarm_active():
            raise SystemError_(NOT_MANAGER)  # dockerd 20.10 answers 500 here (503 on /swarm)
        swarm = driver == "overlay" or scope == "swarm"
        if ipam_driver not in ("", "default"):
            raise NotFound(f"plugin \"{ipam_driver}\" not found")
        configs = builtins.list(ipam_configs or [])
        if subnet or gateway or ip_range:
            configs.append({"Subnet": subnet or "", "Gateway": gateway or "", "IPRange": ip_range or ""})
        pools: dict[int, tuple[ipam.IPNet, dict[str, Any]]] = {}
        for cfg in configs:
            if not isinstance(cfg, dict) or not all(isinstance(cfg.get(k) or "", str)
                                                     for k in ("Subnet", "Gateway", "IPRange")):
                raise InvalidParameter("invalid IPAM config: Subnet, Gateway and IPRange are strings")
            aux = cfg.get("AuxiliaryAddresses") or {}
            if not isinstance(aux, dict) or not all(isinstance(v, str) for v in aux.values()):
                raise InvalidParameter("invalid IPAM config: AuxiliaryAddresses maps names to addresses")
            if not cfg.get("Subnet"):
                if cfg.get("Gateway") or cfg.get("IPRange"):
                    raise InvalidParameter("ipam config without a subnet")
                continue
            net = ipam.parse_subnet(cfg["Subnet"])
            if net.version in pools:
                raise Forbidden("bridge driver doesn't support multiple subnets")
            pools[net.version] = (net, cfg)
        if enable_ipv6 and 6 not in pools:  # dockerd 20.10 has no default v6 pools either
            raise Unavailable("could not find an available, non-overlapping IPv6 address pool among the defaults "
                              "to assign to the network")
        async with self._lock, contextlib.AsyncExitStack() as picking:
            if self.db.query_one("SELECT 1 FROM networks WHERE name=?", (name,)):
                raise Conflict(f"network with name {name} already exists")
            held = self.db.query_one("SELECT id FROM networks WHERE ingress=1")
            if ingress and held is not None:
                raise Conflict(f"rpc error: code = AlreadyExists desc = ingress network ({held['id']}) is already present")
            ours = [ipaddress.ip_network(r["subnet"]) for r in self._rows("SELECT subnet FROM networks WHERE subnet!=''")]
            ours += [ipaddress.ip_network(r["subnet6"]) for r in self._rows("SELECT subnet6 FROM networks WHERE subnet6!=''")]
            if 4 in pools:
                net4 = pools[4][0]
                ipam.check_overlap(net4, ours)
            else:  # held until the bridge is up: no other daemon picks the same subnet meanwhile
                await picking.enter_async_context(hostlock.held_async("subnets"))
                host = [ipaddress.ip_network(r) for r in await asyncio.to_thread(netlink.host_routes)]
                net4 = ipam.pick_subnet(ours + host, self.swarm_pools() if swarm else None)  # type: ignore[arg-type]
            cfg4 = pools.get(4, (net4, {}))[1]
            gw, rng = ipam.validate(net4, cfg4.get("Gateway") or None, cfg4.get("IPRange") or None,
                                    cfg4.get("AuxiliaryAddresses"))
            report = [_pool_json(net4, gw, rng, cfg4.get("AuxiliaryAddresses"))]
            net6, gw6, rng6 = "", "", ""
            if 6 in pools:
                n6, cfg6 = pools[6]
                ipam.check_overlap(n6, ours)
                g6, r6 = ipam.validate(n6, cfg6.get("Gateway") or None, cfg6.get("IPRange") or None,
                                       cfg6.get("AuxiliaryAddresses"))
                net6, gw6, rng6 = str(n6), str(g6), str(r6) if r6 else ""
                report.append(_pool_json(n6, g6, r6, cfg6.get("AuxiliaryAddresses")))
            nid = swarm_id() if swarm else new_id()
            options = dict(options or {})
            if driver == "overlay":
                options = {"com.docker.network.driver.overlay.vxlanid_list": str(self._free_vni()), **options}
            bridge = options.get("com.docker.network.bridge.name") or f"br-{nid[:12]}"
            if ingress or plugin:
                bridge = ""  # a record only (no service runs here), or the plugin's business
            if len(bridge) > 15:
                raise InvalidParameter(f"bridge name {bridge} is longer than 15 characters")
            if bridge and self.db.query_one("SELECT 1 FROM networks WHERE bridge=?", (bridge,)):
                raise Conflict(f"bridge name {bridge} is already in use by another network")
            self.db.execute(
                "INSERT INTO networks(id, name, driver, bridge, subnet, gateway, ip_range, internal, attachable,"
                " labels, options, created, ipv6, subnet6, gateway6, ip_range6, ipam, scope, ingress)"
                " VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (nid, name, driver, bridge, str(net4), str(gw), str(rng) if rng else "", int(internal),
                 int(attachable), json.dumps(labels or {}), json.dumps(options), time.time(), int(enable_ipv6),
                 net6, gw6, rng6, json.dumps({"Config": report, "Options": ipam_options, "Picked": 4 not in pools}),
                 "swarm" if swarm else "local", int(ingress)))
            row = self._net_row(nid)
            try:
                if enable_ipv6 and not plugin:
                    netlink.set_sysctl("net/ipv6/conf/all/forwarding", "1")  # as dockerd does for --ipv6
                with trace.about(f"network:{nid}"):
                    if plugin:  # the plugin makes the network; no bridge, nft rules or DNS server of ours
                        await asyncio.to_thread(self._plugin_create, row, report, options, enable_ipv6)
                        self.names.set_network(nid, name)
                    elif bridge:
                        await asyncio.to_thread(self._ensure_bridge, row)
                        await picking.aclose()  # its route now shows the subnet taken
                        await asyncio.to_thread(self._sync_firewall)
                        self.names.set_network(nid, name)
                        await self._start_dns(row)
            except BaseException:
                await self._drop_network(row, plugin_created=False)
                raise
        self.events.emit("network", "create", nid, {"name": name, "type": driver})
        return {"Id": nid, "Warning": ""}

    def _free_vni(self) -> int:
        used = {int(v) for r in self._rows("SELECT options FROM networks WHERE driver='overlay'")
                if (v := json.loads(r["options"]).get("com.docker.network.driver.overlay.vxlanid_list", "")).isdigit()}
        return next(v for v in range(VNI_BASE, VNI_BASE + len(used) + 1) if v not in used)

    async def drop_swarm_networks(self) -> builtins.list[str]:
        """Swarm leave: every swarm-scoped network goes, and the containers on them leave them first, as
        with dockerd (a running container keeps its other networks)."""
        dropped: builtins.list[str] = []
        await self._settled(None)
        async with self._lock:
            for net in self._rows("SELECT * FROM networks WHERE scope='swarm' ORDER BY created"):
                with trace.about(f"network:{net['id']}"):
                    members = self._rows("SELECT * FROM net_endpoints WHERE network_id=?", (net["id"],))
                    for ep in members:
                        await asyncio.to_thread(self._unplug, ep)
                    self.db.execute("DELETE FROM net_links WHERE network_id=?", (net["id"],))
                    for ep in members:
                        sb = self.db.query_one("SELECT * FROM net_sandboxes WHERE cid=?", (ep["cid"],))
                        if sb is not None and sb["netns"]:
                            await asyncio.to_thread(self._unpublish, sb, ep["ip"])
                            await asyncio.to_thread(self._after_leave, sb)
                        self.events.emit("network", "disconnect", net["id"],
                                         {"container": ep["cid"], "name": net["name"], "type": net["driver"]})
                    await self._drop_network(net)
                trace.drop(f"network:{net['id']}")
                self.events.emit("network", "destroy", net["id"], {"name": net["name"], "type": net["driver"]})
                dropped.append(net["name"])
        return dropped

    def _unpublish(self, sb: Any, ip: str) -> None:
        """The ports a container published through an endpoint that is gone go with it, host ports
        released (dockerd's inspect shows no Ports after a swarm leave took its only network)."""
        maps = json.loads(sb["ports"])
        gone = [p for p in maps if p["ip"] == ip]
        if not gone:
            return
        kinds = {"tcp": socket.SOCK_STREAM, "udp": socket.SOCK_DGRAM}
        freed = {(kinds.get(p["proto"]), p["host_port"]) for p in gone}
        kept_socks = []
        for sock in self._held.get(sb["cid"], []):
            if (sock.type, sock.getsockname()[1]) in freed:
                sock.close()
            else:
                kept_socks.append(sock)
        self._held[sb["cid"]] = kept_socks
        kept = [p for p in maps if p["ip"] != ip]
        exposed = json.loads(sb["exposed"]) if kept or self.db.query_one(
            "SELECT 1 FROM net_endpoints WHERE cid=?", (sb["cid"],)) else []
        self.db.execute("UPDATE net_sandboxes SET ports=?, exposed=? WHERE cid=?",
                        (json.dumps(kept), json.dumps(exposed), sb["cid"]), durable=False)
        self._sync_firewall()

    async def remove(self, ref: str) -> None:
        net = self.resolve(ref)
        if net["builtin"]:
            raise Forbidden(f"{net['name']} is a pre-defined network and cannot be removed")
        await self._settled({r["cid"] for r in self._rows("SELECT cid FROM net_endpoints WHERE network_id=?",
                                                          (net["id"],))})
        async with self._lock:
            users = [r["name"].lstrip("/") for r in self._rows(
                "SELECT s.name FROM net_endpoints e JOIN net_sandboxes s ON s.cid=e.cid WHERE e.network_id=? "
                "ORDER BY s.name", (net["id"],))]
            if net["scope"] == "swarm" and users:
                raise InvalidParameter(f"rpc error: code = FailedPrecondition desc = network {net['id']} is in use "
                                       f"by container {users[0]}")
            if users or self.db.query_one("SELECT 1 FROM net_endpoints WHERE network_id=?", (net["id"],)):
                # dockerd's words, then who uses it (beyond dockerd: what to stop or disconnect)
                raise Forbidden(f"error while removing network: network {net['name']} id {net['id']} "
                                "has active endpoints" + (f" (used by {', '.join(users)})" if users else ""))
            with trace.about(f"network:{net['id']}"):
                await self._drop_network(net)
        trace.drop(f"network:{net['id']}")
        self.events.emit("network", "destroy", net["id"], {"name": net["name"], "type": net["driver"]})

    def list(self, filters: dict[str, list[str]] | None = None) -> builtins.list[dict[str, Any]]:
        out = []
        for net in self._rows("SELECT * FROM networks ORDER BY created"):
            if _matches(net, filters or {}, self._in_use(net["id"])):
                out.append(self._network_json(net, containers=False))
        return out

    def inspect(self, ref: str) -> dict[str, Any]:
        return self._network_json(self.resolve(ref), containers=True)

    async def prune(self, filters: dict[str, builtins.list[str]] | None = None) -> builtins.list[str]:
        deleted = []
        # the ingress network goes only when asked for by name, as with dockerd
        for net in self._rows("SELECT * FROM networks WHERE builtin=0 AND ingress=0 ORDER BY created"):
            if self._in_use(net["id"]) or not _matches(net, filters or {}, False, prune=True):
                continue
            with contextlib.suppress(DockyardError):
                await self.remove(net["id"])
                deleted.append(net["name"])
        return deleted

    async def connect(self, net_ref: str, container_ref: str, endpoint_config: dict[str, Any] | None = None) -> None:
        net = self.resolve(net_ref)
        if net["driver"] in ("host", "null"):
            raise Forbidden("container cannot be disconnected from host network or connected to host network")
        cid, name, running = self._container(container_ref)
        ec = endpoint_config or {}
        await self._settled({cid})
        async with self._lock:
            await self._plumbed(cid)
            sb = self.db.query_one("SELECT * FROM net_sandboxes WHERE cid=?", (cid,))
            modes = {r["network_id"] for r in self._rows(
                "SELECT l.network_id FROM net_links l JOIN networks n ON n.id=l.network_id "
                "WHERE l.cid=? AND n.driver IN ('host', 'null')", (cid,))}
            if (sb is not None and (sb["mode"] in ("host", "none") or sb["mode"].startswith("container:"))) or modes:
                raise Forbidden("container sharing network namespace with another container or host "
                                "cannot be connected to any other network")
            if self.db.query_one("SELECT 1 FROM net_links WHERE cid=? AND network_id=?", (cid, net["id"])):
                raise Forbidden(f"endpoint with name {name} already exists in network {net['name']}")
            self._link(cid, net, ec)
            if running and sb is not None:
                try:
                    taken = {r["ifname"] for r in self._rows("SELECT ifname FROM net_endpoints WHERE cid=?", (cid,))}
                    ifname = next(f"eth{i}" for i in range(len(taken) + 1) if f"eth{i}" not in taken)
                    wiring: builtins.list[Callable[[], None]] = []
                    await asyncio.to_thread(self._plug, cid, name, net, sb["netns"], ifname, None, wiring)
                    with trace.about(f"container:{cid}"):
                        await asyncio.to_thread(_run_all, wiring)
                except BaseException:
                    self.db.execute("DELETE FROM net_links WHERE cid=? AND network_id=?", (cid, net["id"]))
                    raise
                await asyncio.to_thread(self._fix_resolv, sb)
            self._networks_changed(cid)
        self.events.emit("network", "connect", net["id"], {"container": cid, "name": net["name"], "type": net["driver"]})

    async def disconnect(self, net_ref: str, container_ref: str, force: bool = False) -> None:
        net = self.resolve(net_ref)
        cid, name, _running = self._container(container_ref)
        await self._settled({cid})
        async with self._lock:
            await self._plumbed(cid)
            linked = self.db.query_one("SELECT 1 FROM net_links WHERE cid=? AND network_id=?", (cid, net["id"]))
            ep = self.db.query_one("SELECT * FROM net_endpoints WHERE cid=? AND network_id=?", (cid, net["id"]))
            if not linked and ep is None:
                raise Forbidden(f"container {cid} is not connected to network {net['name']}")
            if ep is not None:
                with trace.about(f"container:{cid}"):
                    await asyncio.to_thread(self._unplug, ep)
            self.db.execute("DELETE FROM net_links WHERE cid=? AND network_id=?", (cid, net["id"]))
            sb = self.db.query_one("SELECT * FROM net_sandboxes WHERE cid=?", (cid,))
            if ep is not None and sb is not None and sb["netns"]:
                await asyncio.to_thread(self._after_leave, sb)
            self._networks_changed(cid)
        self.events.emit("network", "disconnect", net["id"], {"container": cid, "name": net["name"], "type": net["driver"]})

    def _networks_changed(self, cid: str) -> None:
        for fn in self.on_container_networks:
            try:
                fn(cid)
            except Exception:  # noqa: BLE001 - the connect or disconnect itself is done
                log.exception("after the networks of %s changed", cid[:12])

    def _after_leave(self, sb: Any) -> None:
        """A network left a running container: the default routes and the name server its resolv.conf
        names may have gone with it; take them from the networks it is still on (as dockerd moves the
        default gateway)."""
        gws: builtins.list[str] = []
        for ep in self._rows("SELECT e.ip6, n.gateway, n.gateway6, n.internal FROM net_endpoints e JOIN networks n "
                             "ON n.id=e.network_id WHERE e.cid=? ORDER BY e.rowid", (sb["cid"],)):
            if not ep["internal"]:
                gws += [ep["gateway"]] + ([ep["gateway6"]] if ep["ip6"] else [])
        if gws:
            try:
                netlink.ensure_default_routes(sb["netns"], gws)
            except Exception as e:  # noqa: BLE001 - the container keeps its other networks
                log.warning("default route for %s: %s", sb["cid"][:12], e)
        self._fix_resolv(sb)

    def _fix_resolv(self, sb: Any) -> None:
        """Point a running container's resolv.conf at a DNS server of a user network it is on (any of
        them answers for all its networks). Written in place: the file is bind-mounted into it."""
        files = json.loads(sb["files"] or "{}")
        path = Path(files.get("resolv.conf", ""))
        if not path.is_file():
            return
        current = hostfiles.parse_resolv(_read(path))
        mine = [r["gateway"] for r in self._rows(
            "SELECT n.gateway FROM net_endpoints e JOIN networks n ON n.id=e.network_id "
            "WHERE e.cid=? AND n.builtin=0 ORDER BY e.rowid", (sb["cid"],))]
        if mine and mine[0] in current.nameservers:
            return
        ours = {r["gateway"] for r in self._rows("SELECT gateway FROM networks WHERE builtin=0")}
        if not mine and not ours & set(current.nameservers):
            return  # on no user network, and never was: the host's resolvers stay
        if mine:
            text = hostfiles.resolv(current, [], [], [], mine[0])
        else:  # left its last user network: back to what the default bridge gets
            host = hostfiles.parse_resolv(_read(self.host_resolv_conf))
            text = hostfiles.resolv(host, files.get("dns") or [], current.search, [
                o for o in current.options if o != "ndots:0"])
        with open(path, "w") as f:
            f.write(text)

    def resolve(self, ref: str) -> Any:
        """A network by full id, name, or unique id prefix (Docker's order)."""
        row = self.db.query_one("SELECT * FROM networks WHERE id=?", (ref,)) or \
            self.db.query_one("SELECT * FROM networks WHERE name=?", (ref,))
        if row is not None:
            return row
        if ref:
            rows = self._rows("SELECT * FROM networks WHERE id >= ? AND id < ?", prefix_range(ref.lower()))
            if len(rows) == 1:
                return rows[0]
            if len(rows) > 1:
                raise InvalidParameter(f"network {ref} is ambiguous ({len(rows)} matches found based on ID prefix)")
        raise NotFound(f"network {ref} not found")

    # ---- internals: attach/detach ---------------------------------------------------------------
    def _attach_sync(self, cid: str, name: str, hostname: str, mode: str, endpoints_config: dict[str, Any],
                     port_bindings: dict[str, Any], exposed_ports: dict[str, Any], publish_all: bool, dns: builtins.list[str],
                     dns_search: builtins.list[str], dns_options: builtins.list[str], extra_hosts: builtins.list[str], mac: str | None,
                     domainname: str, link_hosts: builtins.list[tuple[str, builtins.list[str]]]) -> AttachResult:
        files = self.exec_root / "containers" / cid
        files.mkdir(parents=True, exist_ok=True)
        paths = {k: str(files / k) for k in ("hosts", "resolv.conf", "hostname")}
        host_rc = hostfiles.parse_resolv(_read(self.host_resolv_conf))
        sandbox_id = new_id()
        if mode == "default":
            mode = "bridge"
        if mode.startswith("container:"):
            other, _, _ = self._container(mode.split(":", 1)[1])
            osb = self.db.query_one("SELECT * FROM net_sandboxes WHERE cid=?", (other,))
            if osb is None:
                raise Conflict(f"cannot join network namespace of a non running container: {other}")
            ofiles = json.loads(osb["files"])
            self._save_sandbox(cid, name, f"container:{other}", osb["netns"], sandbox_id, [], [], ofiles)
            return AttachResult(Path(osb["netns"]) if osb["netns"] else None, Path(ofiles["hosts"]),
                                Path(ofiles["resolv.conf"]), Path(ofiles["hostname"]), self.settings(cid))
        _write_runtime(paths["hostname"], f"{hostname}\n".encode())
        if mode == "host":
            _write_runtime(paths["hosts"], _read(Path("/etc/hosts")).encode())
            _write_runtime(paths["resolv.conf"], _read(self.host_resolv_conf).encode())
            self._link(cid, self._net_row_by_name("host"), {})
            self._save_sandbox(cid, name, "host", "", sandbox_id, [], [], paths)
            return AttachResult(None, Path(paths["hosts"]), Path(paths["resolv.conf"]),
                                Path(paths["hostname"]), self.settings(cid))
        netns_path = self.exec_root / "netns" / cid
        # The sandbox row goes in first so a failure half-way is cleaned up by detach.
        self._save_sandbox(cid, name, mode, str(netns_path), sandbox_id, [], [], paths)
        netlink.create_netns(netns_path)
        ips: builtins.list[tuple[str, str]] = []  # (v4, v6) per network, the primary first
        wiring: builtins.list[Callable[[], None]] = []
        embedded: str | None = None
        if mode == "none":
            self._link(cid, self._net_row_by_name("none"), {})
        else:
            self._check_endpoints(mode, endpoints_config)
            nets = self._declared(cid)
            if not nets:  # made before networks were declared at create, or disconnected from all
                self._declare_sync(cid, mode, endpoints_config, [])
                nets = self._declared(cid)
            primary = next((n for n in nets if mode in (n["name"], n["id"])), None)
            if primary is not None:  # the network mode's network has eth0, the default route and the ports
                nets.remove(primary)
                nets.insert(0, primary)
            for i, net in enumerate(nets):
                ips.append(self._plug(cid, name, net, str(netns_path), f"eth{i}", mac if i == 0 else None, wiring))
            embedded = next((n["gateway"] for n in nets if not n["builtin"] and not _is_plugin(n)), None)
            maps, exposed = self._publish(cid, ips[0][0], port_bindings, exposed_ports, publish_all, name)
            self.db.execute("UPDATE net_sandboxes SET ports=?, exposed=? WHERE cid=?",
                            (json.dumps(maps), json.dumps(exposed), cid), durable=False)
            if maps:
                self._sync_firewall()
        if dns:
            self.db.execute("UPDATE net_sandboxes SET files=? WHERE cid=?", (json.dumps({**paths, "dns": dns}), cid), durable=False)
            self.names.set_upstreams(cid, dns)
        own = [ip for ip in (ips[0] if ips else ()) if ip]
        _write_runtime(paths["hosts"], hostfiles.hosts(hostname, own, extra_hosts, domainname, link_hosts).encode())
        _write_runtime(paths["resolv.conf"],
                       hostfiles.resolv(host_rc, dns, dns_search, dns_options, embedded).encode())
        return AttachResult(netns_path, Path(paths["hosts"]), Path(paths["resolv.conf"]),
                            Path(paths["hostname"]), self.settings(cid),
                            plumb=functools.partial(_run_all, wiring) if wiring else None)

    def _publish(self, cid: str, ip: str, port_bindings: dict[str, Any], exposed_ports: dict[str, Any], publish_all: bool,
                 name: str) -> tuple[builtins.list[dict[str, Any]], builtins.list[str]]:
        """Reserve host ports and return the mappings ({key, proto, host_ip, host_port, ip, port})."""
        wanted: dict[str, list[dict[str, Any]]] = {k: builtins.list(v or [{}]) for k, v in port_bindings.items()}
        if publish_all:
            for key in exposed_ports:
                wanted.setdefault(key, [{}])
        maps: builtins.list[dict[str, Any]] = []
        held = self._held.setdefault(cid, [])
        for key, binds in wanted.items():
            try:
                port, proto = ports.split_port_key(key)
            except ValueError as e:
                raise InvalidParameter(str(e)) from None
            if proto == "sctp":
                raise InvalidParameter("sctp ports are not supported by dockyard")
            for b in binds:
                host_ip = (b or {}).get("HostIp") or "0.0.0.0"
                if ":" in host_ip:
                    continue  # IPv6 host addresses: not supported, as with --ipv6=false
                try:
                    candidates = ports.parse_host_ports(str((b or {}).get("HostPort") or ""))
                except ValueError as e:
                    raise InvalidParameter(str(e)) from None
                sock, err = None, ""
                for hp in candidates:
                    holder = self._allocated(proto, host_ip, hp) if hp else None
                    if holder is not None:
                        # dockerd's words, then which container has it (beyond dockerd: the learner's question)
                        err = (f"Bind for {host_ip}:{hp} failed: port is already allocated "
                               f"(container {holder.lstrip('/')} publishes it)")
                        continue
                    try:
                        sock = ports.reserve(proto, host_ip, hp, (str(self.exec_root / "netns" / cid), ip, int(port)))
                        break
                    except ports.PortInUse:
                        err = (f"failed to bind host port for {host_ip}:{hp}:{ip}:{port}/{proto}: "
                               "address already in use")
                if sock is None:
                    ep = self.db.query_one("SELECT endpoint_id FROM net_endpoints WHERE cid=?", (cid,))
                    raise SystemError_(f"driver failed programming external connectivity on endpoint {name} "
                                       f"({ep['endpoint_id'] if ep else ''}): {err}")
                held.append(sock)
                maps.append({"key": f"{port}/{proto}", "proto": proto, "host_ip": host_ip,
                             "host_port": sock.getsockname()[1], "ip": ip, "port": port})
                # Recorded at once so a second binding in the same request sees it as allocated.
                self.db.execute("UPDATE net_sandboxes SET ports=? WHERE cid=?", (json.dumps(maps), cid), durable=False)
        exposed = sorted(set(exposed_ports) | set(port_bindings))
        return maps, exposed

    def _allocated(self, proto: str, host_ip: str, port: int) -> str | None:
        """The name of the container holding the host port, if one does."""
        for sb in self._rows("SELECT name, ports FROM net_sandboxes"):
            for p in json.loads(sb["ports"]):
                if p["proto"] == proto and p["host_port"] == port and (
                        p["host_ip"] == host_ip or "0.0.0.0" in (p["host_ip"], host_ip)):
                    return str(sb["name"])
        return None

    def _plug(self, cid: str, name: str, net: Any, netns_path: str, ifname: str, mac: str | None,
              wiring: builtins.list[Callable[[], None]]) -> tuple[str, str]:
        """Allocate addresses on `net` (now) and add to `wiring` what puts a veth into the netns; returns
        the (v4, v6) addresses (v6 "" on a v4-only network)."""
        if net["scope"] == "swarm" and not (net["attachable"] and net["bridge"]):  # at start and at connect
            raise SystemError_(f"Could not attach to network {net['name']}: rpc error: code = PermissionDenied "
                               f"desc = network {net['name']} not manually attachable")
        link = self.db.query_one("SELECT * FROM net_links WHERE cid=? AND network_id=?", (cid, net["id"]))
        ec = json.loads(link["config"] or "{}") if link else {}
        want = ec.get("IPAMConfig") or {}
        subnet = ipaddress.ip_network(net["subnet"])
        gw = ipaddress.ip_address(net["gateway"])
        veth = "" if _is_plugin(net) else netlink.veth_name()
        if want.get("IPv6Address") and not (net["ipv6"] and net["subnet6"]):
            raise InvalidParameter(f"invalid endpoint settings: network {net['name']} does not have IPv6 "
                                   "enabled, so an IPv6 address cannot be given")
        pool = self._pool(net, 4)
        ip = pool.take((link["ipv4"] if link else "") or want.get("IPv4Address"))
        ip6 = ""
        try:
            if net["ipv6"] and net["subnet6"]:
                ip6 = str(self._pool(net, 6).take(want.get("IPv6Address")))
            local = builtins.list(want.get("LinkLocalIPs") or [])
            mac = mac or ec.get("MacAddress") or ipam.mac_for(ip)
            eid = new_id()
            self.db.execute("INSERT INTO net_endpoints(cid, network_id, endpoint_id, name, ip, mac, veth, ifname, ip6,"
                            " link_local) VALUES(?,?,?,?,?,?,?,?,?,?)",
                            (cid, net["id"], eid, name, str(ip), mac, veth, ifname, ip6, json.dumps(local)), durable=False)
        except BaseException:
            self._release(net["id"], str(ip), ip6)
            raise
        self._index(cid, net["id"])
        addrs = [(str(ip), subnet.prefixlen)]
        if ip6:
            addrs.append((ip6, _prefixlen(net["subnet6"])))
        addrs += [(a, 64 if ":" in a else 16) for a in local]
        gateways = [] if net["internal"] else [str(gw)] + ([net["gateway6"]] if ip6 else [])
        mtu = int(json.loads(net["options"]).get("com.docker.network.driver.mtu") or self.mtu)

        def wire() -> None:
            try:
                if _is_plugin(net):
                    self._plugin_wire(cid, net, eid, netns_path, ifname, str(ip), ip6, mac, ifname == "eth0")
                else:
                    netlink.add_veth(veth, net["bridge"], netns_path, ifname, addrs, gateways, mac, mtu)
            except Exception as e:
                # The whole story in the log (the client's report of a 500 may be cut short).
                log.warning("network setup of %s on %s failed", cid[:12], net["name"], exc_info=True)
                if veth:
                    netlink.delete_link(veth)
                else:
                    self._plugin_unplug(net, {"endpoint_id": eid})
                self.db.execute("DELETE FROM net_endpoints WHERE cid=? AND network_id=?", (cid, net["id"]), durable=False)
                self.names.drop_endpoint(cid, net["id"])
                self._release(net["id"], str(ip), ip6)
                raise SystemError_(f"failed to set up the network of container {cid[:12]}: "
                                   f"{str(e) or type(e).__name__}") from e

        wiring.append(wire)
        return str(ip), ip6

    def _unplug(self, ep: Any) -> None:
        self.names.drop_endpoint(ep["cid"], ep["network_id"])
        net = self.db.query_one("SELECT * FROM networks WHERE id=?", (ep["network_id"],))
        if net is not None and _is_plugin(net):
            self._plugin_unplug(net, ep)  # Leave, DeleteEndpoint: the plugin removes its interface
        elif ep["veth"]:
            netlink.delete_link(ep["veth"])  # deleting one end removes the pair
        self.db.execute("DELETE FROM net_endpoints WHERE cid=? AND network_id=?", (ep["cid"], ep["network_id"]), durable=False)
        self._release(ep["network_id"], ep["ip"], ep["ip6"])

    def _pool(self, net: Any, version: int) -> ipam.Pool:
        """The network's addresses in use (read from the DB once, then kept up to date by plug and unplug)."""
        pool = self._pools.get((net["id"], version))
        if pool is None:
            col = "ip" if version == 4 else "ip6"
            used = [r[0] for r in self._rows(f"SELECT {col} FROM net_endpoints WHERE network_id=? AND {col}!=''",
                                             (net["id"],))]
            sub, gw, rng = (net["subnet"], net["gateway"], net["ip_range"]) if version == 4 else \
                (net["subnet6"], net["gateway6"], net["ip_range6"])
            subnet = ipaddress.ip_network(sub)
            aux = [a for a in _aux_addresses(net) if ipaddress.ip_address(a) in subnet]
            pool = ipam.Pool(subnet, ipaddress.ip_address(gw), ipaddress.ip_network(rng) if rng else None,
                             used + aux)
            self._pools[(net["id"], version)] = pool
        return pool

    def _release(self, nid: str, ip: str, ip6: str) -> None:
        for version, addr in ((4, ip), (6, ip6)):
            pool = self._pools.get((nid, version))
            if pool is not None and addr:
                pool.give(addr)

    def _index(self, cid: str, nid: str) -> None:
        """(Re)write what the embedded DNS knows of `cid` on `nid`: user networks only (the default bridge
        resolves no names, as in Docker)."""
        row = self.db.query_one(
            "SELECT e.name, e.ip, e.ip6, l.aliases, l.config, n.builtin, n.internal FROM net_endpoints e "
            "JOIN networks n ON n.id=e.network_id LEFT JOIN net_links l ON l.cid=e.cid AND l.network_id=e.network_id "
            "WHERE e.cid=? AND e.network_id=?", (cid, nid))
        if row is None or row["builtin"]:
            return
        links: dict[str, str] = {}
        for spec in (json.loads(row["config"] or "{}").get("Links") or []):
            target, _, alias = str(spec).partition(":")
            links[(alias or target).lstrip("/").lower()] = target.lstrip("/")
        self.names.set_endpoint(Endpoint(cid, nid, row["name"], [ip for ip in (row["ip"], row["ip6"]) if ip],
                                         [*json.loads(row["aliases"] or "[]"), cid[:12]], links,
                                         bool(row["internal"])))

    def rename(self, cid: str, name: str) -> None:
        """A container's new name, for inspect and for the names it answers to."""
        self.db.execute("UPDATE net_endpoints SET name=? WHERE cid=?", (name, cid))
        self.db.execute("UPDATE net_sandboxes SET name=? WHERE cid=?", (name, cid))
        self.names.rename(cid, name)

    def _detach_sync(self, cid: str, sync_rules: bool = True) -> None:
        for s in self._held.pop(cid, []):
            s.close()
        sb = self.db.query_one("SELECT * FROM net_sandboxes WHERE cid=?", (cid,))
        try:
            for ep in self._rows("SELECT * FROM net_endpoints WHERE cid=?", (cid,)):
                self._unplug(ep)
        finally:
            # The netns goes even when a row could not be deleted (a full disk): with it go the veths
            # still in it; the rows left are dropped by the next attach (or start's recovery).
            if sb is not None and sb["netns"] and not sb["mode"].startswith("container:"):
                netlink.delete_netns(Path(sb["netns"]))
        if sb is None:
            return
        had_ports = sb["ports"] != "[]"
        self.db.execute("DELETE FROM net_sandboxes WHERE cid=?", (cid,), durable=False)
        if had_ports and sync_rules:
            self._sync_firewall()

    def _save_sandbox(self, cid: str, name: str, mode: str, netns: str, sandbox_id: str,
                      maps: builtins.list[Any], exposed: builtins.list[Any], files: dict[str, Any]) -> None:
        self.db.execute("INSERT OR REPLACE INTO net_sandboxes(cid, name, mode, netns, sandbox_id, ports, exposed,"
                        " files) VALUES(?,?,?,?,?,?,?,?)",
                        (cid, name, mode, netns, sandbox_id, json.dumps(maps), json.dumps(exposed),
                         json.dumps(files)), durable=False)

    def _link(self, cid: str, net: Any, ec: dict[str, Any], durable: bool = True) -> None:
        ec = ec if isinstance(ec, dict) else {}
        aliases = builtins.list(ec.get("Aliases") or [])
        want = ec.get("IPAMConfig") or {}
        if not isinstance(want, dict):
            raise InvalidParameter("invalid IPAMConfig")
        ipv4 = want.get("IPv4Address") or ""
        for key in ("IPv4Address", "IPv6Address"):
            if want.get(key):
                ipam.parse_ip(want[key])
        for addr in want.get("LinkLocalIPs") or []:
            if not ipam.parse_ip(addr).is_link_local:
                raise InvalidParameter(f"invalid link-local IP address: {addr}")
        if net["builtin"] and (ipv4 or want.get("IPv6Address")):
            raise InvalidParameter("user specified IP address is supported on user defined networks only")
        if net["builtin"] and aliases:
            raise InvalidParameter("network-scoped alias is supported only for containers in user defined networks")
        config = {k: ec[k] for k in ("IPAMConfig", "Links", "DriverOpts", "MacAddress") if ec.get(k)}
        self.db.execute("INSERT OR REPLACE INTO net_links(cid, network_id, aliases, ipv4, config) VALUES(?,?,?,?,?)",
                        (cid, net["id"], json.dumps(aliases), ipv4, json.dumps(config)), durable=durable)

    async def declare(self, cid: str, network_mode: str, endpoints_config: dict[str, Any] | None,
                      links: builtins.list[str] | None = None, durable: bool = True) -> None:
        """At container create: the networks it will join, with their endpoint settings, so inspect shows
        them at once and start finds them. A network that does not exist (yet) is left out: as with
        dockerd, start fails on it (404 "network x not found"), not create. durable=False: written without
        the fsync, for a caller whose own durable commit follows (store/db.py: it syncs these too)."""
        async with self._lock_for(network_mode):
            await asyncio.to_thread(self._declare_sync, cid, network_mode, endpoints_config or {}, links or [], durable)

    def _declare_sync(self, cid: str, mode: str, endpoints_config: dict[str, Any], links: builtins.list[str],
                      durable: bool = True) -> None:
        mode = "bridge" if mode in ("", "default") else mode
        if mode.startswith("container:"):
            return
        if mode in ("host", "none"):
            self._link(cid, self._net_row_by_name(mode), {}, durable)
            return
        primary = self._find(mode)
        if primary is None:
            return
        configs = {("bridge" if k == "default" else k): v for k, v in endpoints_config.items()}
        ec = next((configs.pop(k) for k in (mode, primary["name"], primary["id"]) if k in configs), None)
        ec = dict(ec or {})
        if links and not primary["builtin"]:  # --link on a user network: a per-container DNS alias
            ec["Links"] = [*(ec.get("Links") or []), *links]
        extra = [(net, v) for net, v in ((self._find(k), v) for k, v in configs.items()) if net is not None]
        self._link(cid, primary, ec, durable)
        for net, cfg in extra:
            if net["driver"] in ("host", "null"):
                raise InvalidParameter(f"container cannot be connected to network {net['name']} "
                                       f"of driver {net['driver']} with others")
            self._link(cid, net, cfg or {}, durable)

    def _find(self, ref: str) -> Any:
        try:
            return self.resolve(ref)
        except NotFound:
            return None

    def _check_endpoints(self, mode: str, endpoints_config: dict[str, Any]) -> None:
        """At start, as dockerd: the network mode's network must exist, and so must every network of
        the create's EndpointsConfig, unless it is a lone entry (older clients' way to give the mode's
        settings; dockerd ignores one naming no network)."""
        self.resolve(mode)
        keys = [k for k in endpoints_config if k not in ("default", mode)]
        if len(endpoints_config) > 1:
            for key in keys:
                self.resolve(key)

    def _declared(self, cid: str) -> builtins.list[Any]:
        """The bridge networks a container is to join, in the order they were given."""
        return builtins.list(self._rows("SELECT n.* FROM net_links l JOIN networks n ON n.id=l.network_id "
                                        "WHERE l.cid=? AND n.driver NOT IN ('host', 'null') ORDER BY l.rowid",
                                        (cid,)))

    def _rehold(self, sb: Any) -> None:
        for p in json.loads(sb["ports"]):
            try:
                self._held.setdefault(sb["cid"], []).append(ports.reserve(p["proto"], p["host_ip"], p["host_port"]))
            except OSError as e:
                log.warning("cannot re-reserve %s:%s for %s: %s", p["host_ip"], p["host_port"], sb["cid"][:12], e)

    # ---- internals: networks --------------------------------------------------------------------
    def _ensure_builtins(self) -> None:
        row = self.db.query_one("SELECT * FROM networks WHERE name='bridge'")
        if self.bip:
            iface = ipam.parse_subnet(self.bip)
            gw, subnet = self.bip.split("/")[0], str(iface)
        elif row is not None and not self._stored_bridge_shadowed(row):
            gw, subnet = row["gateway"], row["subnet"]
        else:
            taken = [ipaddress.IPv4Network(r["subnet"]) for r in self._rows("SELECT subnet FROM networks WHERE subnet!=''")]
            taken += [ipaddress.IPv4Network(r) for r in netlink.host_routes()]
            net = ipam.pick_subnet(taken)
            gw, subnet = str(net.network_address + 1), str(net)
        opts = {"com.docker.network.bridge.default_bridge": "true", "com.docker.network.bridge.enable_icc": "true",
                "com.docker.network.bridge.enable_ip_masquerade": "true",
                "com.docker.network.bridge.host_binding_ipv4": "0.0.0.0",
                "com.docker.network.bridge.name": self.bridge_name, "com.docker.network.driver.mtu": str(self.mtu)}
        if row is None:
            self.db.execute("INSERT INTO networks(id, name, driver, bridge, subnet, gateway, builtin, options, created)"
                            " VALUES(?,?,?,?,?,?,1,?,?)", (new_id(), "bridge", "bridge", self.bridge_name, subnet, gw,
                                                           json.dumps(opts), time.time()))
        else:
            self.db.execute("UPDATE networks SET bridge=?, subnet=?, gateway=?, options=? WHERE id=?",
                            (self.bridge_name, subnet, gw, json.dumps(opts), row["id"]))
        for name, driver in (("host", "host"), ("none", "null")):
            if not self.db.query_one("SELECT 1 FROM networks WHERE name=?", (name,)):
                self.db.execute("INSERT INTO networks(id, name, driver, builtin, created) VALUES(?,?,?,1,?)",
                                (new_id(), name, driver, time.time()))

    def _stored_bridge_shadowed(self, row: Any) -> bool:
        """True when another interface now routes the default bridge's stored subnet, and the bridge
        may move. Seen here: a dockerd started meanwhile took the same subnet for docker0 and stopped,
        leaving docker0 down with its route; our bridge's route then lost to it and published ports
        answered nothing. With containers still attached the subnet stays (they hold addresses in it):
        the log names the interface in the way."""
        mine = {r["bridge"] for r in self._rows("SELECT bridge FROM networks WHERE bridge!=''")}
        stored = ipaddress.IPv4Network(row["subnet"])
        other = [(dst, dev) for dst, dev in netlink.host_routes_by_link()
                 if dev not in mine and ipaddress.IPv4Network(dst).overlaps(stored)]
        if not other:
            return False
        dst, dev = other[0]
        if self.db.query_one("SELECT 1 FROM net_endpoints WHERE network_id=?", (row["id"],)):
            log.error("the default bridge's subnet %s overlaps %s (a route of %s); its containers keep their "
                      "addresses, but traffic for them may go to %s: remove that interface or its address",
                      stored, dst, dev or "another interface", dev or "it")
            return False
        log.warning("the default bridge's stored subnet %s overlaps %s (a route of %s): picking another",
                    stored, dst, dev or "another interface")
        netlink.delete_link(row["bridge"])  # a bridge left by a killed daemon keeps the old address
        return True

    # ------------------------------------------------------------ network plugins (remote driver)

    def _plugin_call(self, net: Any, method: str, body: dict[str, Any]) -> dict[str, Any]:
        assert self.plugins is not None
        try:
            return dict(self.plugins.call(net["driver"], NETWORK_DRIVER, f"{NETWORK_DRIVER}.{method}", body))
        except DockyardError as e:
            raise type(e)(f"{NETWORK_DRIVER}.{method}: {e.message}") from None

    def _plugin_create(self, net: Any, report: builtins.list[dict[str, Any]], options: dict[str, Any],
                       ipv6: bool) -> None:
        """NetworkDriver.CreateNetwork with the pools our IPAM gave (the default IPAM driver's)."""
        def data(p: dict[str, Any]) -> dict[str, Any]:
            plen = p["Subnet"].split("/")[1]
            return {"AddressSpace": "LocalDefault", "Pool": p["Subnet"], "Gateway": f"{p['Gateway']}/{plen}",
                    "AuxAddresses": {k: f"{v}/{plen}" for k, v in (p.get("AuxiliaryAddresses") or {}).items()}}

        v4 = [data(p) for p in report if ":" not in p["Subnet"]]
        v6 = [data(p) for p in report if ":" in p["Subnet"]]
        with trace.step("network", f"POST /NetworkDriver.CreateNetwork {{NetworkID: {net['id'][:12]}}} to plugin "
                        f"{net['driver']}", f"network driver {net['driver']} is a plugin: it makes the network"):
            self._plugin_call(net, "CreateNetwork", {
                "NetworkID": net["id"], "IPv4Data": v4, "IPv6Data": v6,
                "Options": {"com.docker.network.enable_ipv6": ipv6, "com.docker.network.generic": options}})

    def _plugin_wire(self, cid: str, net: Any, eid: str, netns_path: str, ifname: str, ip: str, ip6: str,
                     mac: str, primary: bool) -> None:
        """CreateEndpoint, Join, then the plugin's interface (SrcName) into the netns as `ifname`."""
        plen = _prefixlen(net["subnet"])
        iface = {"Address": f"{ip}/{plen}", "AddressIPv6": f"{ip6}/{_prefixlen(net['subnet6'])}" if ip6 else "",
                 "MacAddress": mac}
        got = self._plugin_call(net, "CreateEndpoint", {"NetworkID": net["id"], "EndpointID": eid,
                                                        "Interface": iface, "Options": {}})
        given = got.get("Interface") or {}
        if given.get("MacAddress"):
            mac = given["MacAddress"]
        joined = self._plugin_call(net, "Join", {"NetworkID": net["id"], "EndpointID": eid,
                                                 "SandboxKey": netns_path, "Options": {}})
        src = (joined.get("InterfaceName") or {}).get("SrcName") or ""
        if not src:
            raise SystemError_(f"network plugin {net['driver']}: Join gave no InterfaceName.SrcName")
        addrs = [(ip, plen)] + ([(ip6, _prefixlen(net["subnet6"]))] if ip6 else [])
        gateways = [] if net["internal"] or not primary or joined.get("DisableGatewayService") else \
            [str(joined.get("Gateway") or net["gateway"])] + ([str(joined["GatewayIPv6"])]
                                                               if ip6 and joined.get("GatewayIPv6") else [])
        routes = []
        for r in joined.get("StaticRoutes") or []:  # RouteType 1: on the link (CONNECTED), else via NextHop
            if not isinstance(r, dict) or not r.get("Destination"):
                raise SystemError_(f"network plugin {net['driver']}: invalid static route {r!r}")
            routes.append((str(r["Destination"]), None if r.get("RouteType") == 1 else str(r.get("NextHop") or "")))
        netlink.adopt_link(src, netns_path, ifname, addrs, gateways, mac, self.mtu, routes)

    def _plugin_unplug(self, net: Any, ep: Any) -> None:
        for method in ("Leave", "DeleteEndpoint"):
            try:
                self._plugin_call(net, method, {"NetworkID": net["id"], "EndpointID": ep["endpoint_id"]})
            except DockyardError as e:
                log.warning("network plugin %s: %s", net["driver"], e.message)

    def _move_shadowed_user_networks(self) -> None:
        """At start, as `_stored_bridge_shadowed` does for the default bridge: a user network's stored
        subnet that another interface now routes (a bridge another engine left behind, a VPN) would send
        its containers' traffic there. Moved to a free subnet when the daemon picked it and nothing holds
        or asked for an address in it; else kept, and the log names the interface in the way."""
        nets = self._rows(f"SELECT * FROM networks WHERE {BRIDGED} AND builtin=0 AND subnet!=''")
        if not nets:
            return
        mine = {r["bridge"] for r in self._rows("SELECT bridge FROM networks WHERE bridge!=''")}
        routes = netlink.host_routes_by_link()
        foreign = [(ipaddress.IPv4Network(dst), dev) for dst, dev in routes if dev not in mine]
        for net in nets:
            stored = ipaddress.IPv4Network(net["subnet"])
            dst, dev = next(((d, v) for d, v in foreign if d.overlaps(stored)), (None, ""))
            if dst is None:
                continue
            doc = json.loads(net["ipam"]) if net["ipam"] else {}
            held = self.db.query_one("SELECT 1 FROM net_endpoints WHERE network_id=?", (net["id"],))
            asked = self.db.query_one("SELECT 1 FROM net_links WHERE network_id=? AND ipv4!=''", (net["id"],))
            if held or asked or not doc.get("Picked"):
                why = ("its containers hold addresses in it" if held else "containers asked for addresses in it"
                       if asked else "it was given at create")
                log.error("network %s: its subnet %s overlaps %s, a route of %s; the subnet stays (%s), but "
                          "traffic for it may go to %s: remove that interface or its address, or recreate the "
                          "network", net["name"], stored, dst, dev or "another interface", why, dev or "it")
                continue
            taken = [ipaddress.IPv4Network(r["subnet"]) for r in self._rows(
                "SELECT subnet FROM networks WHERE subnet!='' AND id!=?", (net["id"],))]
            taken += [ipaddress.IPv4Network(r) for r in netlink.host_routes()]
            new = ipam.pick_subnet(taken, self.swarm_pools() if net["scope"] == "swarm" else None)
            gw = new.network_address + 1
            log.warning("network %s: its stored subnet %s overlaps %s, a route of %s: moved to %s", net["name"],
                        stored, dst, dev or "another interface", new)
            netlink.delete_link(net["bridge"])  # a bridge left by a killed daemon keeps the old address
            doc["Config"] = [_pool_json(new, gw, None, None)] + [
                c for c in doc.get("Config") or [] if ":" in str(c.get("Subnet", ""))]
            self.db.execute("UPDATE networks SET subnet=?, gateway=?, ip_range='', ipam=? WHERE id=?",
                            (str(new), str(gw), json.dumps(doc), net["id"]))

    def _ensure_bridge(self, net: Any) -> None:
        opts = json.loads(net["options"])
        mtu = int(opts.get("com.docker.network.driver.mtu") or self.mtu)
        v6 = bool(net["ipv6"] and net["gateway6"])
        netlink.ensure_bridge(net["bridge"], net["gateway"], _prefixlen(net["subnet"]), mtu,
                              net["gateway6"] if v6 else None, _prefixlen(net["subnet6"]) if v6 else 64)
        firewall.ensure_forward_accept(self.table, net["bridge"])

    async def _drop_network(self, net: Any, plugin_created: bool = True) -> None:
        self.names.drop_network(net["id"])
        self._pools.pop((net["id"], 4), None)
        self._pools.pop((net["id"], 6), None)
        await self._stop_dns(net["id"])
        if _is_plugin(net) and plugin_created:
            await asyncio.to_thread(self._plugin_call, net, "DeleteNetwork", {"NetworkID": net["id"]})
        if net["bridge"]:
            await asyncio.to_thread(netlink.delete_link, net["bridge"])
            await asyncio.to_thread(firewall.remove_forward_accept, self.table, net["bridge"])
        self.db.execute("DELETE FROM networks WHERE id=?", (net["id"],))
        await asyncio.to_thread(self._sync_firewall)

    def _sync_firewall(self) -> None:
        nets = [firewall.BridgeNet(r["bridge"], r["subnet"], bool(r["internal"]), r["subnet6"] if r["ipv6"] else "")
                for r in self._rows(f"SELECT * FROM networks WHERE {BRIDGED} ORDER BY created")]
        maps = [firewall.PortMap(p["proto"], p["host_ip"], p["host_port"], p["ip"], p["port"])
                for sb in self._rows("SELECT ports FROM net_sandboxes") for p in json.loads(sb["ports"])]
        firewall.sync(self.table, nets, maps)

    async def _start_dns(self, net: Any) -> None:
        server = DnsServer(net["gateway"], self.names,
                           lambda: hostfiles.parse_resolv(_read(self.host_resolv_conf)).nameservers)
        try:
            await server.start()
        except OSError as e:  # a name-less network is still usable
            log.warning("DNS server for network %s on %s: %s", net["name"], net["gateway"], e)
            return
        self._dns[net["id"]] = server

    async def _stop_dns(self, nid: str) -> None:
        server = self._dns.pop(nid, None)
        if server is not None:
            await server.close()

    def _dns_names(self, net: Any, cid: str, name: str, aliases: builtins.list[str]) -> builtins.list[str] | None:
        if net["builtin"]:
            return None
        return builtins.list(dict.fromkeys([name, *aliases, cid[:12]]))

    def _network_json(self, net: Any, containers: bool) -> dict[str, Any]:
        stored = json.loads(net["ipam"]) if net["ipam"] else None
        cfg: builtins.list[dict[str, Any]] = []
        if stored is not None:
            cfg = stored["Config"]
        elif net["subnet"]:
            c = {"Subnet": net["subnet"], "Gateway": net["gateway"]}
            if net["ip_range"]:
                c["IPRange"] = net["ip_range"]
            cfg.append(c)
        options = stored["Options"] if stored is not None else (None if net["builtin"] else {})
        swarm = net["scope"] == "swarm"
        unused = swarm and not net["ingress"] and not self._in_use(net["id"])
        if swarm and not options:
            options = None  # dockerd shows a swarm network's empty IPAM options as null
        members: dict[str, Any] = {}
        if containers:
            plen = _prefixlen(net["subnet"]) if net["subnet"] else 0
            plen6 = _prefixlen(net["subnet6"]) if net["subnet6"] else 0
            for ep in self._rows("SELECT * FROM net_endpoints WHERE network_id=?", (net["id"],)):
                if ep["cid"] in self._releasing:
                    continue  # removed: its release is under way
                members[ep["cid"]] = {"Name": ep["name"], "EndpointID": ep["endpoint_id"], "MacAddress": ep["mac"],
                                      "IPv4Address": f"{ep['ip']}/{plen}",
                                      "IPv6Address": f"{ep['ip6']}/{plen6}" if ep["ip6"] else ""}
            if net["driver"] in ("host", "null"):
                for sb in self._rows("SELECT * FROM net_sandboxes WHERE mode=?",
                                     ("host" if net["driver"] == "host" else "none",)):
                    members[sb["cid"]] = {"Name": sb["name"], "EndpointID": "", "MacAddress": "",
                                          "IPv4Address": "", "IPv6Address": ""}
        return {
            "Name": net["name"], "Id": net["id"], "Created": rfc3339(net["created"]), "Scope": net["scope"],
            "Driver": net["driver"], "EnableIPv4": True, "EnableIPv6": bool(net["ipv6"]),
            "IPAM": {"Driver": "default", "Options": options, "Config": cfg},
            "Internal": bool(net["internal"]), "Attachable": bool(net["attachable"]), "Ingress": bool(net["ingress"]),
            "ConfigFrom": {"Network": ""}, "ConfigOnly": False,
            # dockerd shows null for a swarm network not instantiated on this node (no container of it here
            # yet); the ingress network always is (its routing-mesh sandbox, which Dockyard has not)
            "Containers": members or (None if unused else members),
            "Options": json.loads(net["options"]), "Labels": json.loads(net["labels"]) or (None if unused else {}),
        }

    def _in_use(self, nid: str) -> bool:
        """A container is on the network (one removed, whose release is under way, is not)."""
        if not self._releasing:
            return self.db.query_one("SELECT 1 FROM net_endpoints WHERE network_id=?", (nid,)) is not None
        return any(r["cid"] not in self._releasing
                   for r in self._rows("SELECT cid FROM net_endpoints WHERE network_id=?", (nid,)))

    def _container(self, ref: str) -> tuple[str, str, bool]:
        if self.resolve_container is None:
            return ref, ref, False
        return self.resolve_container(ref)

    def _net_row(self, nid: str) -> Any:
        row = self.db.query_one("SELECT * FROM networks WHERE id=?", (nid,))
        if row is None:
            raise NotFound(f"network {nid} not found")
        return row

    def _net_row_by_name(self, name: str) -> Any:
        row = self.db.query_one("SELECT * FROM networks WHERE name=?", (name,))
        if row is None:
            raise NotFound(f"network {name} not found")
        return row

    def _rows(self, sql: str, params: tuple[Any, ...] = ()) -> builtins.list[Any]:
        return self.db.query(sql, params)


def _prefixlen(subnet: str) -> int:
    return ipaddress.ip_network(subnet).prefixlen


def _pool_json(subnet: Any, gateway: Any, ip_range: Any, aux: dict[str, Any] | None) -> dict[str, Any]:
    """One IPAM.Config entry as inspect shows it."""
    out: dict[str, Any] = {"Subnet": str(subnet)}
    if ip_range is not None:
        out["IPRange"] = str(ip_range)
    out["Gateway"] = str(gateway)
    if aux:
        out["AuxiliaryAddresses"] = dict(aux)
    return out


def _aux_addresses(net: Any) -> builtins.list[str]:
    """Addresses the network's IPAM config reserves (never given to a container)."""
    stored = json.loads(net["ipam"]) if net["ipam"] else {}
    return [a for c in stored.get("Config") or [] for a in (c.get("AuxiliaryAddresses") or {}).values()]


_FILE_WHY = {"hosts": "bind-mounted on /etc/hosts: the container's own name and address (--add-host adds more)",
             "resolv.conf": "bind-mounted on /etc/resolv.conf: the host's resolvers, or the network's DNS "
                            "server on its gateway (--dns changes it)",
             "hostname": "bind-mounted on /etc/hostname (--hostname, default: the short container id)"}


def _write_runtime(path: str, data: bytes) -> None:
    """Replace a per-start file (hosts, resolv.conf, hostname) whole. No fsync: they live under
    the exec root and are rebuilt at every start, so durability would only cost start latency."""
    tmp = f"{path}.tmp"
    with trace.step("file", f"write {path}", _FILE_WHY.get(os.path.basename(path), "")) as s:
        with open(tmp, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
        s.result = f"{len(data)} bytes"


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


def _matches(net: Any, filters: dict[str, list[str]], in_use: bool, prune: bool = False) -> bool:
    labels = json.loads(net["labels"])
    for key, values in filters.items():
        if not values:
            continue
        if key == "label" and not all(_label_ok(labels, v) for v in values):
            return False
        if key == "label!" and any(_label_ok(labels, v) for v in values):
            return False
        if key == "name" and not any(v in net["name"] for v in values):
            return False
        if key == "id" and not any(net["id"].startswith(v) for v in values):
            return False
        if key == "driver" and net["driver"] not in values:
            return False
        if key == "scope" and net["scope"] not in values:
            return False
        if key == "type":
            kind = "builtin" if net["builtin"] else "custom"
            if kind not in values:
                return False
        if key == "dangling":
            want = values[0].lower() in ("1", "true")
            if want != (not in_use and not net["builtin"]):
                return False
        if key == "until":
            from dockyard.util.timefmt import parse_time_arg
            if net["created"] > parse_time_arg(values[0]):
                return False
    return True


def _label_ok(labels: dict[str, str], spec: str) -> bool:
    k, eq, v = spec.partition("=")
    return k in labels and (not eq or labels[k] == v)


__all__ = ["AttachResult", "NetworkService"]


def _is_plugin(net: Any) -> bool:
    """A network made by a network plugin (any driver but the built-in bridge, overlay, host and null)."""
    return net["driver"] not in ("bridge", "overlay", "host", "null")
