"""What our networks need of the kernel: bridges, veth pairs, netns, sysctls (rtnetlink.py's messages).

All calls block (netlink round trips); services run them in `asyncio.to_thread`.
"""

from __future__ import annotations

import contextvars
import ctypes
import errno
import fcntl
import ipaddress
import os
import secrets
import socket
import struct
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from dockyard import trace
from dockyard.network.rtnetlink import IFA_F_NODAD, Socket
from dockyard.util.mountpoint import is_mountpoint

_libc = ctypes.CDLL(None, use_errno=True)
_CLONE_NEWNET = 0x40000000
_MS_BIND = 0x1000
_MS_REC = 0x4000
_MS_SHARED = 1 << 20
_NET_ADDR_SET = "3"  # /sys/class/net/X/addr_assign_type of an address set by hand (NET_ADDR_SET)


def _ifindex(name: str) -> int | None:
    """The index of link `name` in this thread's network namespace (where a netlink Socket binds too):
    one ioctl, where pyroute2's lookup (a netlink get and the whole link message parsed) took ~1 ms of
    CPU, four times in every start and once in every stop."""
    try:
        return socket.if_nametoindex(name)
    except OSError:
        return None


def link_exists(name: str) -> bool:
    """In this network namespace: one ioctl, not a netlink request (the restart asks it for every
    running container's veth)."""
    try:
        socket.if_nametoindex(name)
    except OSError:
        return False
    return True


def ensure_bridge(name: str, address: str, prefixlen: int, mtu: int = 1500,
                  address6: str | None = None, prefixlen6: int = 64) -> None:
    """Bridge `name` up with `address/prefixlen` (and the IPv6 gateway address when given; created or
    fixed up; idempotent)."""
    with Socket() as nl:
        idx = _ifindex(name)
        if idx is None:
            with trace.step("link", f"ip link add {name} type bridge mtu {mtu}",
                            "the network's switch: every container on it plugs a veth into it") as s:
                try:
                    nl.add_link(name, "bridge", mtu=mtu)
                except OSError as e:
                    if e.errno != errno.EEXIST:
                        raise
                idx = _ifindex(name)
                assert idx is not None
                s.result = f"ifindex {idx}"
        _pin_mac(nl, idx, name)
        have = {(a.address, a.prefixlen) for a in nl.addrs(socket.AF_INET, idx)}
        if (address, prefixlen) not in have:
            with trace.step("addr", f"ip addr add {address}/{prefixlen} dev {name}",
                            "the gateway: containers route through this address (and reach DNS on it)") as s:
                nl.add_addr(idx, address, prefixlen)
                s.result = "addresses now " + " ".join(
                    f"{a.address}/{a.prefixlen}" for a in nl.addrs(socket.AF_INET, idx))
        if address6:
            set_sysctl(f"net/ipv6/conf/{name}/disable_ipv6", "0")
            have6 = {(a.address, a.prefixlen) for a in nl.addrs(socket.AF_INET6, idx)}
            if (address6, prefixlen6) not in have6:
                with trace.step("addr", f"ip addr add {address6}/{prefixlen6} dev {name} nodad",
                                "the IPv6 gateway of a dual-stack network"):
                    _add_addr(nl, idx, address6, prefixlen6)
        nl.set_link(idx, up=True)
    set_sysctl(f"net/ipv4/conf/{name}/route_localnet", "1")  # lets DNATed 127.x reach containers


def _pin_mac(nl: Socket, idx: int, name: str) -> None:
    """Give the bridge its MAC address for good. A bridge with none set takes the lowest MAC among its
    ports, so it changes whenever a container with a lower one joins or leaves; the containers keep the
    old one in their ARP caches, and their frames to the gateway (DNS, the way out) go to a MAC no port
    has any more: lost until the entry expires, tens of seconds ("bad address" under churn). libnetwork
    sets one at creation for the same reason. Pinning the current address keeps those caches right."""
    try:
        assign = Path(f"/sys/class/net/{name}/addr_assign_type").read_text().strip()
    except OSError:
        return
    if assign == _NET_ADDR_SET:
        return
    mac = nl.link(idx).mac
    with trace.step("link", f"ip link set {name} address {mac}",
                    "pin the bridge's MAC: else it follows the lowest MAC of its ports and containers' ARP "
                    "entries for the gateway go stale when one leaves"):
        nl.set_link(idx, mac=mac)


def _add_addr(nl: Socket, idx: int, address: str, prefixlen: int) -> None:
    try:
        if ":" in address:  # no duplicate address detection: the address is usable at once, as in Docker
            nl.add_addr(idx, address, prefixlen, flags=IFA_F_NODAD)
        else:  # with its broadcast address, as dockerd sets it
            brd = ipaddress.ip_interface(f"{address}/{prefixlen}").network.broadcast_address
            nl.add_addr(idx, address, prefixlen, broadcast=str(brd))
    except OSError as e:
        if e.errno != errno.EEXIST:
            raise


def delete_link(name: str) -> None:
    idx = _ifindex(name)
    if idx is not None:
        with trace.step("link", f"ip link del {name}", "a veth goes with its pair (and a bridge with its network)") as s, \
                Socket() as nl:
            try:
                nl.del_link(idx)
            except OSError as e:
                if e.errno != errno.ENODEV:
                    raise
                s.result = "already gone (ENODEV)"


def veth_name() -> str:
    return "veth" + secrets.token_hex(4)[:7]


def add_veth(host_name: str, bridge: str, netns_path: str, ifname: str, addresses: list[tuple[str, int]],
             gateways: list[str], mac: str, mtu: int = 1500) -> None:
    """A veth pair: `host_name` on `bridge`, the peer as `ifname` inside the netns with `addresses`
    ([(address, prefixlen)], v4 and v6) and a default route via each of `gateways` the netns lacks."""
    br = _ifindex(bridge)
    if br is None:
        raise RuntimeError(f"bridge {bridge} is missing")
    with trace.step("link", f"ip link add {host_name} mtu {mtu} master {bridge} up type veth peer {ifname} "
                    f"address {mac} mtu {mtu} netns {netns_path}",
                    "a virtual cable: one end on the bridge, the other inside the container's netns") as s:
        # One request: the peer is born in the netns with its name and MAC, the host end on the bridge.
        fd = os.open(netns_path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            with Socket() as nl:
                nl.add_veth(host_name, mtu, br, ifname, mac, fd)
        finally:
            os.close(fd)
        if trace.ENABLED:
            s.result = f"{host_name} ifindex {_ifindex(host_name)} on {bridge}"
    # Hairpin lets a container reach itself through its own published port.
    _write(f"/sys/class/net/{host_name}/brport/hairpin_mode", "1")
    _configure_in_netns(netns_path, ifname, addresses, gateways)


def adopt_link(src_name: str, netns_path: str, ifname: str, addresses: list[tuple[str, int]],
               gateways: list[str], mac: str, mtu: int = 1500,
               routes: list[tuple[str, str | None]] | None = None) -> None:
    """A link someone else made (a network plugin's Join: `SrcName`) moved into the netns and set up
    there as `ifname`, as for our own veths."""
    idx = _ifindex(src_name)
    if idx is None:
        raise RuntimeError(f"the network plugin's interface {src_name} does not exist")
    with trace.step("link", f"ip link set {src_name} netns {netns_path}",
                    "the network plugin made this interface: it goes into the container's netns") as s:
        fd = os.open(netns_path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            with Socket() as nl:
                nl.set_link(idx, netns_fd=fd)
        finally:
            os.close(fd)
        s.result = f"{src_name} moved"
    _configure_in_netns(netns_path, ifname, addresses, gateways, routes or [], rename=(src_name, mac, mtu))


def _configure_in_netns(netns_path: str, ifname: str, addresses: list[tuple[str, int]], gateways: list[str],
                        routes: list[tuple[str, str | None]] | None = None,
                        rename: tuple[str, str, int] | None = None) -> None:
    """`routes`: (destination, next hop) more, a next hop None meaning on the link itself. `rename`:
    (the link's name in the netns, MAC, MTU) for a link that arrives under another name."""
    def configure() -> None:
        with Socket() as nl:  # opened inside the netns, so bound to it
            idx = _ifindex(rename[0] if rename else ifname)
            assert idx is not None
            shown = " ".join(f"{a}/{p}" for a, p in addresses)
            op = f"ip link set {rename[0]} name {ifname} address {rename[1]}; " if rename else ""
            with trace.step("addr", f"(in netns) {op}ip addr add {shown} dev {ifname}; ip link set {ifname} up",
                            "the container's end of the cable, with the addresses IPAM gave it") as s:
                if rename:
                    nl.set_link(idx, name=ifname, mac=rename[1], mtu=rename[2])
                for address, prefixlen in addresses:
                    _add_addr(nl, idx, address, prefixlen)
                nl.set_link(idx, up=True)
                if trace.ENABLED:
                    got = [f"{a.address}/{a.prefixlen}" for a in nl.addrs(index=idx)]
                    s.result = f"{ifname} ifindex {idx}: {' '.join(got)}"
            _lo_up()
            for dst, hop in routes or []:
                with trace.step("route", f"(in netns) ip route add {dst} " + (f"via {hop}" if hop else f"dev {ifname}"),
                                "a static route the network plugin asked for at Join"):
                    if hop:
                        nl.add_route(dst, gateway=hop)
                    else:
                        nl.add_route(dst, oif=idx)
            _default_routes(nl, gateways)

    _in_netns(configure, netns_path)


def _default_routes(nl: Socket, gateways: list[str]) -> None:
    for gw in gateways:
        with trace.step("route", f"(in netns) ip route add default via {gw}",
                        "the container's traffic to anywhere else goes to the bridge's address") as s:
            try:
                nl.add_route("::/0" if ":" in gw else "0.0.0.0/0", gateway=gw)
            except OSError as e:
                if e.errno != errno.EEXIST:  # a second network: keep the first default route
                    raise
                s.result = "kept the first network's default route (EEXIST)"


def ensure_default_routes(netns_path: str, gateways: list[str]) -> None:
    """After a network left: a default route via each of `gateways` whose family has none left."""
    def fix() -> None:
        with Socket() as nl:
            have = {r.family for r in nl.routes() if r.dst_len == 0}
            _default_routes(nl, [g for g in gateways if (socket.AF_INET6 if ":" in g else socket.AF_INET) not in have])

    _in_netns(fix, netns_path)


def create_netns(path: Path) -> None:
    """A new network namespace bind-mounted at `path` (iproute2's way; lo brought up)."""
    if _holds_netns(path):
        return
    if path.exists():
        path.unlink()
    _share_dir(path.parent)
    os.close(os.open(path, os.O_RDONLY | os.O_CREAT | os.O_EXCL, 0))

    with trace.step("netns", f"unshare(CLONE_NEWNET); mount --bind /proc/thread-self/ns/net {path}; ip link set lo up",
                    "the container's own network stack (interfaces, routes, ports); the bind mount keeps it "
                    "alive with no process in it") as s:
        try:
            _in_netns(_lo_up, str(path), create=True)
        except BaseException:
            delete_netns(path)
            raise
        if trace.ENABLED:
            s.result = f"net namespace inode {os.stat(path).st_ino}"


_SIOCGIFFLAGS, _SIOCSIFFLAGS, _IFF_UP = 0x8913, 0x8914, 0x1


def _lo_up() -> None:
    """`ip link set lo up` in this thread's netns as ifconfig does it: two ioctls on a socket. pyroute2's
    IPRoute (a netlink socket, a link lookup, its message encoding) took 1-7 ms of every start before
    runc create could begin."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        flags = struct.unpack("16sH14x", fcntl.ioctl(s, _SIOCGIFFLAGS, struct.pack("16sH14x", b"lo", 0)))[1]
        fcntl.ioctl(s, _SIOCSIFFLAGS, struct.pack("16sH14x", b"lo", flags | _IFF_UP))


def _share_dir(d: Path) -> None:
    """Make the netns directory a shared mount (iproute2's way), so unmounts reach copies of it."""
    d.mkdir(parents=True, exist_ok=True)
    target = str(d).encode()
    if _libc.mount(b"", target, b"none", _MS_SHARED | _MS_REC, None) == 0:
        return
    if _libc.mount(target, target, b"none", _MS_BIND | _MS_REC, None) != 0:
        raise _oserror(f"mount {d}")
    if _libc.mount(b"", target, b"none", _MS_SHARED | _MS_REC, None) != 0:
        raise _oserror(f"share {d}")


def _in_netns(fn: Callable[[], None], path: str, create: bool = False) -> None:
    """Run `fn` in a short-lived thread that has entered the netns at `path` (or a new one it
    bind-mounts there). Namespaces are per thread, so the daemon is untouched and nothing forks
    (pyroute2's netns support forks a child of the whole daemon for each call)."""
    error: list[BaseException] = []

    def body() -> None:
        own = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        try:
            if create:
                if _libc.unshare(_CLONE_NEWNET) != 0:
                    raise _oserror("unshare(CLONE_NEWNET)")
            else:
                fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
                try:
                    if _libc.setns(fd, _CLONE_NEWNET) != 0:
                        raise _oserror(f"setns {path}")
                finally:
                    os.close(fd)
            try:
                if create and _libc.mount(b"/proc/thread-self/ns/net", path.encode(), b"none", _MS_BIND,
                                          None) != 0:
                    raise _oserror(f"bind netns to {path}")
                fn()
            finally:
                # Back home before the thread ends; the bind mount keeps the new netns alive.
                if _libc.setns(own, _CLONE_NEWNET) != 0:
                    raise _oserror("setns back to the daemon's netns")
        except BaseException as e:  # noqa: BLE001 - handed to the caller
            error.append(e)
        finally:
            os.close(own)

    # The thread runs in a copy of our context, so its trace records name the same object.
    t = threading.Thread(target=contextvars.copy_context().run, args=(body,), name="netns", daemon=True)
    t.start()
    t.join()
    if error:
        raise error[0]


def _oserror(what: str) -> OSError:
    err = ctypes.get_errno()
    return OSError(err, f"{what}: {os.strerror(err)}")


def delete_netns(path: Path) -> None:
    if not path.exists():
        return
    with trace.step("netns", f"umount2 {path} MNT_DETACH; unlink {path}",
                    "the last reference to the network namespace: the kernel frees it and its interfaces") as s:
        if _holds_netns(path):
            s.result = f"umount2(2) = {_libc.umount2(str(path).encode(), 2)}"  # MNT_DETACH
        path.unlink(missing_ok=True)


def unmount_dir(path: Path) -> None:
    """Undo the shared self-bind-mount that netns creation puts on the netns directory."""
    while _is_mountpoint(path):
        if _libc.umount2(str(path).encode(), 2) != 0:  # MNT_DETACH
            break


def _holds_netns(path: Path) -> bool:
    """A namespace bind-mounted at `path`: its file is nsfs's, another device than its directory's.
    Not from mountinfo: with a thousand mounts on the host one read took 30-170 ms while concurrent
    starts mounted their rootfs, and create/delete ran it under the networks lock."""
    try:
        return os.stat(path).st_dev != os.stat(path.parent).st_dev
    except FileNotFoundError:
        return False


def _is_mountpoint(path: Path) -> bool:
    return is_mountpoint(path)


def set_sysctl(key: str, value: str) -> None:
    _write(f"/proc/sys/{key}", value)


def _write(path: str, value: str) -> None:
    try:
        with open(path, "w") as f:
            f.write(value)
    except OSError:
        pass  # best effort: read-only /proc/sys in some sandboxes


def host_routes() -> list[str]:
    """Destinations of the host's IPv4 routes (CIDR), to keep new subnets clear of them."""
    return [dst for dst, _ in host_routes_by_link()]


def host_routes_by_link() -> list[tuple[str, str]]:
    """(destination CIDR, interface name) of the host's IPv4 routes in the main table; a route of a
    link that is down ("linkdown") is listed too: it still catches the subnet's traffic."""
    with Socket() as nl:
        routes = [(f"{r.dst}/{r.dst_len}", r.oif) for r in nl.routes(socket.AF_INET) if r.dst and r.dst_len > 0]
        # The names of the routes' links only, not a dump of every link: a host with 500 containers has
        # 500 veths (none of which a main-table route names).
        names: dict[int, str] = {}
        for oif in {o for _, o in routes if o}:
            try:
                names[oif] = nl.link(oif).name or ""
            except OSError:
                names[oif] = ""
    return [(dst, names.get(oif, "") if oif else "") for dst, oif in routes]


def links(netns_path: str | None = None) -> list[dict[str, Any]]:
    """The interfaces of the host (None) or of the netns at `netns_path` (a bind mount or
    /proc/<pid>/ns/net): [{"index", "name", "kind", "state", "mac", "peer_index", "master", "addresses"}].
    A veth's peer_index is its other end's ifindex, in the other namespace."""
    out: list[dict[str, Any]] = []

    def read() -> None:
        with Socket() as nl:
            addrs: dict[int, list[str]] = {}
            for a in nl.addrs(socket.AF_INET):
                addrs.setdefault(a.index, []).append(f"{a.address}/{a.prefixlen}")
            dump = nl.links()
            names = {ln.index: ln.name for ln in dump}
            for ln in dump:
                out.append({"index": ln.index, "name": ln.name, "kind": ln.kind, "state": ln.state, "mac": ln.mac,
                            "peer_index": ln.link, "master": names.get(ln.master) if ln.master else None,
                            "addresses": addrs.get(ln.index, [])})

    if netns_path is None:
        read()
    else:
        _in_netns(read, netns_path)
    return out


def host_links_by_index(indexes: Iterable[int]) -> dict[int, dict[str, Any]]:
    """{index: {"name", "master"}} of the host's links with these ifindexes (absent ones left out):
    one RTM_GETLINK each, and one for each master, instead of a dump of every link on the host."""
    out: dict[int, dict[str, Any]] = {}
    masters: dict[int, str | None] = {}
    with Socket() as nl:
        for i in set(indexes):
            try:
                ln = nl.link(i)
            except OSError:
                continue
            m = ln.master
            if m and m not in masters:
                try:
                    masters[m] = nl.link(m).name
                except OSError:
                    masters[m] = None
            out[i] = {"name": ln.name, "master": masters.get(m) if m else None}
    return out
