"""IP address management, pure: subnets, overlap checks and address allocation (state lives in the DB)."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network

from dockyard.errors import Forbidden, InvalidParameter, Unavailable

IPNet = IPv4Network | IPv6Network
IPAddr = IPv4Address | IPv6Address


def parse_subnet(text: str) -> IPNet:
    try:
        return ipaddress.ip_network(text, strict=False)
    except ValueError as e:
        raise InvalidParameter(f"invalid subnet {text}: {e}") from None


def parse_ip(text: str) -> IPAddr:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        raise InvalidParameter(f"invalid IP address: {text}") from None


def default_pools() -> list[IPv4Network]:
    """Docker's default address pools: 172.17-31.0.0/16, then 192.168.0.0/16 in /20 pieces."""
    pools = [IPv4Network(f"172.{i}.0.0/16") for i in range(17, 32)]
    pools += list(IPv4Network("192.168.0.0/16").subnets(new_prefix=20))
    return pools


def pick_subnet(taken: Iterable[IPv4Network], pools: list[IPv4Network] | None = None) -> IPv4Network:
    """First default pool overlapping nothing in `taken` (our networks and the host's routes)."""
    taken = list(taken)
    for pool in pools or default_pools():
        if not any(pool.overlaps(t) for t in taken):
            return pool
    raise Unavailable("could not find an available, non-overlapping IPv4 address pool among the defaults to assign to the network")


def check_overlap(subnet: IPNet, ours: Iterable[IPNet]) -> None:
    if any(subnet.version == o.version and subnet.overlaps(o) for o in ours):
        raise Forbidden("Pool overlaps with other one on this address space")


def validate(subnet: IPNet, gateway: str | None, ip_range: str | None,
             aux: dict[str, str] | None = None) -> tuple[IPAddr, IPNet | None]:
    """The gateway (first host by default) and the range, both checked to lie in the subnet, as are
    the auxiliary addresses (which the allocator then never hands out)."""
    if subnet.prefixlen > subnet.max_prefixlen - 2:
        raise InvalidParameter(f"subnet {subnet} is too small")
    gw = parse_ip(gateway) if gateway else subnet.network_address + 1
    if gw not in subnet:
        raise InvalidParameter(f"no matching subnet for gateway {gw}")
    rng = parse_subnet(ip_range) if ip_range else None
    if rng is not None and (rng.version != subnet.version or not rng.subnet_of(subnet)):  # type: ignore[arg-type]
        raise InvalidParameter(f"no matching subnet for range {ip_range}")
    for name, addr in (aux or {}).items():
        if parse_ip(addr) not in subnet:
            raise InvalidParameter(f"no matching subnet for aux-address {name}={addr}")
    return gw, rng


def allocate(subnet: IPNet, gateway: IPAddr, used: Iterable[str | IPAddr],
             ip_range: IPNet | None = None, preferred: str | None = None) -> IPAddr:
    """A free host address: `preferred` if given (and free), else the first free one in the range.
    `used` holds the addresses taken on the network (endpoints and auxiliary addresses)."""
    busy = {ipaddress.ip_address(str(u)) for u in used} | {gateway}
    last = subnet.broadcast_address if subnet.version == 4 else None  # v6 has no broadcast address
    if preferred:
        ip = parse_ip(preferred)
        if ip not in subnet or ip in (subnet.network_address, last):
            raise InvalidParameter(f"no configured subnet or ip-range contain the IP address {ip}")
        if ip in busy:
            raise Forbidden(f"Address already in use: {ip}")
        return ip
    pool = ip_range or subnet
    skip = {subnet.network_address, last}
    if pool.version == 4 and pool.prefixlen < 31:
        skip |= {pool.network_address, pool.broadcast_address}
    ip = pool.network_address
    end = pool.broadcast_address
    while ip <= end:  # type: ignore[operator]  # first free: a handful of steps past the busy ones, even in a /64
        if ip not in busy and ip not in skip:
            return ip
        ip += 1
    raise Unavailable(f"no available IPv{subnet.version} addresses on this network's address pools: {subnet}")


def mac_for(ip: IPAddr) -> str:
    """Docker's classic MAC derived from the IPv4 address: 02:42 + the four address bytes."""
    return "02:42:" + ":".join(f"{b:02x}" for b in ip.packed)


class Pool:
    """One network's addresses of one family, kept in memory: the ones in use and a cursor below which
    none is free, so a container's address costs O(1) however many share the network (a scan of the
    network's endpoints per start would make n starts O(n²)). Hands out the lowest free address, as
    `allocate` does."""

    def __init__(self, subnet: IPNet, gateway: IPAddr, ip_range: IPNet | None, used: Iterable[str]) -> None:
        self.subnet, self.gateway, self.range = subnet, gateway, ip_range
        self.busy = {ipaddress.ip_address(u) for u in used} | {gateway}
        pool = ip_range or subnet
        self.skip = {subnet.network_address, subnet.broadcast_address if subnet.version == 4 else None}
        if pool.version == 4 and pool.prefixlen < 31:
            self.skip |= {pool.network_address, pool.broadcast_address}
        self.cursor: IPAddr = pool.network_address

    def take(self, preferred: str | None = None) -> IPAddr:
        if preferred:
            ip = parse_ip(preferred)
            last = self.subnet.broadcast_address if self.subnet.version == 4 else None
            if ip not in self.subnet or ip in (self.subnet.network_address, last):
                raise InvalidParameter(f"no configured subnet or ip-range contain the IP address {ip}")
            if ip in self.busy:
                raise Forbidden(f"Address already in use: {ip}")
            self.busy.add(ip)
            return ip
        pool = self.range or self.subnet
        end = pool.broadcast_address
        ip = max(self.cursor, pool.network_address)
        while ip <= end:  # type: ignore[operator]
            if ip not in self.busy and ip not in self.skip:
                self.busy.add(ip)
                self.cursor = ip + 1
                return ip
            ip += 1
        self.cursor = ip
        raise Unavailable(f"no available IPv{self.subnet.version} addresses on this network's address pools: "
                          f"{self.subnet}")

    def give(self, address: str) -> None:
        ip = ipaddress.ip_address(address)
        self.busy.discard(ip)
        if ip < self.cursor:  # type: ignore[operator]
            self.cursor = ip
