"""IP address management, pure: subnets, overlap checks and address allocation (state lives in the DB)."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from ipaddress import IPv4Address, IPv4Network

from dockyard.errors import Forbidden, InvalidParameter, Unavailable


def parse_subnet(text: str) -> IPv4Network:
    try:
        net = ipaddress.ip_network(text, strict=False)
    except ValueError as e:
        raise InvalidParameter(f"invalid subnet {text}: {e}") from None
    if not isinstance(net, IPv4Network):
        raise InvalidParameter(f"IPv6 subnets are not supported: {text}")
    return net


def parse_ip(text: str) -> IPv4Address:
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        raise InvalidParameter(f"invalid IP address: {text}") from None
    if not isinstance(ip, IPv4Address):
        raise InvalidParameter(f"IPv6 addresses are not supported: {text}")
    return ip


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


def check_overlap(subnet: IPv4Network, ours: Iterable[IPv4Network]) -> None:
    if any(subnet.overlaps(o) for o in ours):
        raise Forbidden("Pool overlaps with other one on this address space")


def validate(subnet: IPv4Network, gateway: str | None, ip_range: str | None) -> tuple[IPv4Address, IPv4Network | None]:
    """The gateway (first host by default) and the range, both checked to lie in the subnet."""
    if subnet.prefixlen > 30:
        raise InvalidParameter(f"subnet {subnet} is too small")
    gw = parse_ip(gateway) if gateway else subnet.network_address + 1
    if gw not in subnet:
        raise InvalidParameter(f"no matching subnet for gateway {gw}")
    rng = parse_subnet(ip_range) if ip_range else None
    if rng is not None and not rng.subnet_of(subnet):
        raise InvalidParameter(f"no matching subnet for range {ip_range}")
    return gw, rng


def allocate(subnet: IPv4Network, gateway: IPv4Address, used: Iterable[str | IPv4Address],
             ip_range: IPv4Network | None = None, preferred: str | None = None) -> IPv4Address:
    """A free host address: `preferred` if given (and free), else the first free one in the range."""
    busy = {IPv4Address(str(u)) for u in used} | {gateway}
    if preferred:
        ip = parse_ip(preferred)
        if ip not in subnet or ip in (subnet.network_address, subnet.broadcast_address):
            raise InvalidParameter(f"no configured subnet or ip-range contain the IP address {ip}")
        if ip in busy:
            raise Forbidden(f"Address already in use: {ip}")
        return ip
    pool = ip_range or subnet
    for ip in pool.hosts() if pool.prefixlen < 31 else pool:
        if ip not in busy and ip != subnet.broadcast_address and ip != subnet.network_address:
            return ip
    raise Unavailable(f"no available IPv4 addresses on this network's address pools: {subnet}")


def mac_for(ip: IPv4Address) -> str:
    """Docker's classic MAC derived from the IPv4 address: 02:42 + the four address bytes."""
    return "02:42:" + ":".join(f"{b:02x}" for b in ip.packed)
