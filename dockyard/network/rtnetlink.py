"""The rtnetlink messages our networks send, packed by hand: nlmsghdr + ifinfomsg/ifaddrmsg/rtmsg +
rtattrs over a NETLINK_ROUTE socket of the calling thread's network namespace.

pyroute2 spent ~half of the daemon's CPU in a container start encoding and decoding these (a veth into
the netns, its addresses, the default route), and that CPU competed with runc create on two cores; the
same requests packed with struct cost tens of microseconds. Errors come back as OSError(errno), with the
kernel's extended-ack text when it gives one.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import struct
from collections.abc import Iterator
from dataclasses import dataclass

NETLINK_ROUTE = 0
_NETLINK_CAP_ACK, _NETLINK_EXT_ACK = 10, 11
_SOL_NETLINK = 270

# nlmsghdr types and flags
_NLMSG_ERROR, _NLMSG_DONE = 2, 3
_F_REQUEST, _F_MULTI, _F_ACK = 0x1, 0x2, 0x4
_F_DUMP = 0x300
_F_EXCL, _F_CREATE = 0x200, 0x400
_F_CAPPED, _F_ACK_TLVS = 0x100, 0x200
_NLMSGERR_ATTR_MSG = 1

RTM_NEWLINK, RTM_DELLINK, RTM_GETLINK = 16, 17, 18
RTM_NEWADDR, RTM_GETADDR = 20, 22
RTM_NEWROUTE, RTM_GETROUTE = 24, 26

IFF_UP = 0x1
IFLA_ADDRESS, IFLA_IFNAME, IFLA_MTU, IFLA_LINK, IFLA_MASTER = 1, 3, 4, 5, 10
IFLA_OPERSTATE, IFLA_LINKINFO, IFLA_NET_NS_FD = 16, 18, 28
IFLA_INFO_KIND, IFLA_INFO_DATA = 1, 2
VETH_INFO_PEER = 1
IFA_ADDRESS, IFA_LOCAL, IFA_BROADCAST = 1, 2, 4
IFA_F_NODAD = 0x02
RTA_DST, RTA_OIF, RTA_GATEWAY, RTA_TABLE = 1, 4, 5, 15
RT_TABLE_MAIN, RTPROT_STATIC, RT_SCOPE_UNIVERSE, RTN_UNICAST = 254, 4, 0, 1

OPERSTATES = ("UNKNOWN", "NOTPRESENT", "DOWN", "LOWERLAYERDOWN", "TESTING", "DORMANT", "UP")

_HDR = struct.Struct("=IHHII")  # nlmsghdr: len, type, flags, seq, pid
_IFINFO = struct.Struct("=BxHiII")  # ifinfomsg: family, type, index, flags, change
_IFADDR = struct.Struct("=BBBBi")  # ifaddrmsg: family, prefixlen, flags, scope, index
_RTMSG = struct.Struct("=BBBBBBBBI")  # rtmsg: family, dst_len, src_len, tos, table, protocol, scope, type, flags
_RTA = struct.Struct("=HH")  # rtattr: len, type
_ERR = struct.Struct("=i")


def attr(kind: int, data: bytes) -> bytes:
    """One rtattr, padded to 4 bytes."""
    n = _RTA.size + len(data)
    return _RTA.pack(n, kind) + data + b"\0" * (-n & 3)


def u32(kind: int, value: int) -> bytes:
    return attr(kind, struct.pack("=I", value))


def string(kind: int, value: str) -> bytes:
    return attr(kind, value.encode() + b"\0")


def attrs(buf: bytes, offset: int = 0) -> dict[int, bytes]:
    """The rtattrs from `offset` to the end of `buf`, by type (the nested flag bits masked off)."""
    out: dict[int, bytes] = {}
    end = len(buf)
    while offset + _RTA.size <= end:
        n, kind = _RTA.unpack_from(buf, offset)
        if n < _RTA.size:
            break
        out[kind & 0x3FFF] = buf[offset + _RTA.size:offset + n]
        offset += (n + 3) & ~3
    return out


def ifinfo(index: int = 0, flags: int = 0, change: int = 0, family: int = socket.AF_UNSPEC) -> bytes:
    return _IFINFO.pack(family, 0, index, flags, change)


def _ip(address: str) -> tuple[int, bytes]:
    ip = ipaddress.ip_address(address)
    return (socket.AF_INET6 if ip.version == 6 else socket.AF_INET), ip.packed


def _u32(data: bytes | None) -> int | None:
    return struct.unpack("=I", data[:4])[0] if data is not None else None


def _text(data: bytes | None) -> str | None:
    return data.split(b"\0", 1)[0].decode(errors="replace") if data is not None else None


@dataclass
class Link:
    index: int
    flags: int
    name: str | None = None
    kind: str | None = None
    state: str | None = None
    mac: str | None = None
    link: int | None = None  # IFLA_LINK: a veth's peer's ifindex (in its namespace)
    master: int | None = None


@dataclass
class Addr:
    family: int
    prefixlen: int
    index: int
    address: str | None = None


@dataclass
class Route:
    family: int
    dst_len: int
    table: int
    dst: str | None = None
    oif: int | None = None
    gateway: str | None = None


def _link(body: bytes) -> Link:
    _, _, index, flags, _ = _IFINFO.unpack_from(body)
    a = attrs(body, _IFINFO.size)
    kind = None
    if IFLA_LINKINFO in a:
        kind = _text(attrs(a[IFLA_LINKINFO]).get(IFLA_INFO_KIND))
    state = a.get(IFLA_OPERSTATE)
    mac = a.get(IFLA_ADDRESS)
    return Link(index, flags, _text(a.get(IFLA_IFNAME)), kind,
                OPERSTATES[state[0]] if state and state[0] < len(OPERSTATES) else None,
                ":".join(f"{b:02x}" for b in mac) if mac is not None else None,
                _u32(a.get(IFLA_LINK)), _u32(a.get(IFLA_MASTER)))


def _addr_text(family: int, data: bytes | None) -> str | None:
    return socket.inet_ntop(family, data) if data is not None else None


class Socket:
    """A NETLINK_ROUTE socket bound in the calling thread's network namespace (for good: a socket keeps
    the namespace it was made in). One request at a time."""

    def __init__(self) -> None:
        self._sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, NETLINK_ROUTE)
        try:
            self._sock.setsockopt(_SOL_NETLINK, _NETLINK_EXT_ACK, 1)  # the kernel's reason with an error
            self._sock.setsockopt(_SOL_NETLINK, _NETLINK_CAP_ACK, 1)  # errors without our request echoed
        except OSError:
            pass
        try:
            self._sock.bind((0, 0))
        except BaseException:  # the daemon lives long: a failed socket must not keep its fd
            self._sock.close()
            raise
        self._pid = self._sock.getsockname()[0]
        self._seq = 0

    def close(self) -> None:
        self._sock.close()

    def __enter__(self) -> Socket:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- transport ----------------------------------------------------------------------------------
    def _send(self, kind: int, flags: int, body: bytes) -> int:
        self._seq += 1
        self._sock.send(_HDR.pack(_HDR.size + len(body), kind, flags | _F_REQUEST, self._seq, 0) + body)
        return self._seq

    def _replies(self, seq: int) -> Iterator[tuple[int, bytes]]:
        """(type, payload) of the answers to request `seq` up to its ACK or DONE; an error raises."""
        while True:
            data = self._sock.recv(1 << 16)
            off = 0
            while off + _HDR.size <= len(data):
                n, kind, flags, mseq, _ = _HDR.unpack_from(data, off)
                if n < _HDR.size:
                    raise OSError(0, "netlink: malformed message")
                body = data[off + _HDR.size:off + n]
                off += (n + 3) & ~3
                if mseq != seq:
                    continue  # an answer to an earlier, abandoned request
                if kind == _NLMSG_ERROR:
                    err = -_ERR.unpack_from(body)[0]
                    if err == 0:
                        return
                    raise _error(err, body, flags)
                if kind == _NLMSG_DONE:
                    # A dump the kernel could not finish ends with its error here: not a shorter list.
                    if len(body) >= _ERR.size and (err := -_ERR.unpack_from(body)[0]) > 0:
                        raise OSError(err, os.strerror(err))
                    return
                yield kind, body
                if not flags & _F_MULTI:
                    return

    def request(self, kind: int, body: bytes, flags: int = 0) -> None:
        """Send one change and wait for the kernel's ACK."""
        for _ in self._replies(self._send(kind, flags | _F_ACK, body)):
            pass

    def _get(self, kind: int, body: bytes) -> list[bytes]:
        return [b for _, b in self._replies(self._send(kind, 0, body))]

    def _dump(self, kind: int, body: bytes) -> list[bytes]:
        return [b for _, b in self._replies(self._send(kind, _F_DUMP, body))]

    # ---- links --------------------------------------------------------------------------------------
    def link(self, index: int) -> Link:
        """One link by index; OSError(ENODEV) when there is none."""
        return _link(self._get(RTM_GETLINK, ifinfo(index))[0])

    def links(self) -> list[Link]:
        return [_link(b) for b in self._dump(RTM_GETLINK, ifinfo())]

    def add_link(self, name: str, kind: str, mtu: int | None = None) -> None:
        """`ip link add NAME [mtu MTU] type KIND` (EEXIST if it exists)."""
        body = ifinfo() + string(IFLA_IFNAME, name) + (u32(IFLA_MTU, mtu) if mtu else b"") + \
            attr(IFLA_LINKINFO, string(IFLA_INFO_KIND, kind))
        self.request(RTM_NEWLINK, body, _F_CREATE | _F_EXCL)

    def add_veth(self, name: str, mtu: int, master: int, peer: str, peer_mac: str, peer_netns_fd: int) -> None:
        """`ip link add NAME mtu MTU master MASTER up type veth peer PEER address MAC mtu MTU netns FD`,
        in one request: the peer is born in the container's namespace with its name and MAC (down)."""
        peer_msg = ifinfo() + string(IFLA_IFNAME, peer) + u32(IFLA_MTU, mtu) + \
            attr(IFLA_ADDRESS, bytes.fromhex(peer_mac.replace(":", ""))) + u32(IFLA_NET_NS_FD, peer_netns_fd)
        info = string(IFLA_INFO_KIND, "veth") + attr(IFLA_INFO_DATA, attr(VETH_INFO_PEER, peer_msg))
        body = ifinfo(flags=IFF_UP, change=IFF_UP) + string(IFLA_IFNAME, name) + u32(IFLA_MTU, mtu) + \
            u32(IFLA_MASTER, master) + attr(IFLA_LINKINFO, info)
        self.request(RTM_NEWLINK, body, _F_CREATE | _F_EXCL)

    def set_link(self, index: int, *, up: bool | None = None, name: str | None = None, mac: str | None = None,
                 mtu: int | None = None, master: int | None = None, netns_fd: int | None = None) -> None:
        """`ip link set` of the given properties (rename and MAC before the state, as the kernel applies them)."""
        body = ifinfo(index, IFF_UP if up else 0, IFF_UP if up is not None else 0)
        if name is not None:
            body += string(IFLA_IFNAME, name)
        if mac is not None:
            body += attr(IFLA_ADDRESS, bytes.fromhex(mac.replace(":", "")))
        if mtu is not None:
            body += u32(IFLA_MTU, mtu)
        if master is not None:
            body += u32(IFLA_MASTER, master)
        if netns_fd is not None:
            body += u32(IFLA_NET_NS_FD, netns_fd)
        self.request(RTM_NEWLINK, body)

    def del_link(self, index: int) -> None:
        self.request(RTM_DELLINK, ifinfo(index))

    # ---- addresses ----------------------------------------------------------------------------------
    def addrs(self, family: int = socket.AF_UNSPEC, index: int | None = None) -> list[Addr]:
        out = []
        for b in self._dump(RTM_GETADDR, _IFADDR.pack(family, 0, 0, 0, 0)):
            fam, plen, _, _, idx = _IFADDR.unpack_from(b)
            if (family and fam != family) or (index is not None and idx != index):
                continue
            a = attrs(b, _IFADDR.size)
            out.append(Addr(fam, plen, idx, _addr_text(fam, a.get(IFA_ADDRESS, a.get(IFA_LOCAL)))))
        return out

    def add_addr(self, index: int, address: str, prefixlen: int, broadcast: str | None = None,
                 flags: int = 0) -> None:
        """`ip addr add ADDRESS/PREFIXLEN [brd BROADCAST] dev INDEX` (EEXIST if it is there)."""
        family, packed = _ip(address)
        body = _IFADDR.pack(family, prefixlen, flags, RT_SCOPE_UNIVERSE, index) + attr(IFA_LOCAL, packed) + \
            attr(IFA_ADDRESS, packed)
        if broadcast:
            body += attr(IFA_BROADCAST, _ip(broadcast)[1])
        self.request(RTM_NEWADDR, body, _F_CREATE | _F_EXCL)

    # ---- routes -------------------------------------------------------------------------------------
    def routes(self, family: int = socket.AF_UNSPEC, table: int = RT_TABLE_MAIN) -> list[Route]:
        out = []
        for b in self._dump(RTM_GETROUTE, _RTMSG.pack(family, 0, 0, 0, 0, 0, 0, 0, 0)):
            fam, dst_len, _, _, tab, _, _, _, _ = _RTMSG.unpack_from(b)
            a = attrs(b, _RTMSG.size)
            tab = _u32(a.get(RTA_TABLE)) or tab
            if (family and fam != family) or tab != table:
                continue
            out.append(Route(fam, dst_len, tab, _addr_text(fam, a.get(RTA_DST)), _u32(a.get(RTA_OIF)),
                             _addr_text(fam, a.get(RTA_GATEWAY))))
        return out

    def add_route(self, dst: str, gateway: str | None = None, oif: int | None = None) -> None:
        """`ip route add DST (via GATEWAY | dev OIF) proto static` in the main table (EEXIST if there)."""
        net = ipaddress.ip_network(dst, strict=False)
        family = socket.AF_INET6 if net.version == 6 else socket.AF_INET
        body = _RTMSG.pack(family, net.prefixlen, 0, 0, RT_TABLE_MAIN, RTPROT_STATIC, RT_SCOPE_UNIVERSE,
                           RTN_UNICAST, 0)
        if net.prefixlen:
            body += attr(RTA_DST, net.network_address.packed)
        if gateway:
            body += attr(RTA_GATEWAY, _ip(gateway)[1])
        if oif:
            body += u32(RTA_OIF, oif)
        self.request(RTM_NEWROUTE, body, _F_CREATE | _F_EXCL)


def _error(err: int, body: bytes, flags: int) -> OSError:
    """OSError(err) with the kernel's extended-ack message, if it sent one."""
    text = os.strerror(err)
    if flags & _F_ACK_TLVS:
        orig_len = _HDR.unpack_from(body, _ERR.size)[0] if len(body) >= _ERR.size + _HDR.size else _HDR.size
        off = _ERR.size + (_HDR.size if flags & _F_CAPPED else orig_len)
        msg = _text(attrs(body, off).get(_NLMSGERR_ATTR_MSG))
        if msg:
            text += f" ({msg})"
    return OSError(err, text)
