from ipaddress import IPv4Address, IPv4Network

import pytest

from dockyard.errors import DockyardError, Forbidden, InvalidParameter
from dockyard.network import ipam


def test_pick_subnet_skips_taken_pools() -> None:
    taken = [IPv4Network("172.17.0.0/16"), IPv4Network("172.18.5.0/24")]
    assert ipam.pick_subnet(taken) == IPv4Network("172.19.0.0/16")


def test_overlap_is_docker_error() -> None:
    with pytest.raises(Forbidden, match="Pool overlaps with other one on this address space"):
        ipam.check_overlap(IPv4Network("10.1.0.0/16"), [IPv4Network("10.1.2.0/24")])
    ipam.check_overlap(IPv4Network("10.2.0.0/16"), [IPv4Network("10.1.2.0/24")])


def test_validate_gateway_and_range() -> None:
    net = ipam.parse_subnet("10.5.0.0/24")
    assert ipam.validate(net, None, None) == (IPv4Address("10.5.0.1"), None)
    with pytest.raises(InvalidParameter, match="no matching subnet for gateway"):
        ipam.validate(net, "10.6.0.1", None)
    with pytest.raises(InvalidParameter):
        ipam.validate(net, None, "10.6.0.0/28")
    with pytest.raises(InvalidParameter):
        ipam.parse_subnet("not-a-subnet")


def test_allocate_first_free_in_range_and_preferred() -> None:
    net, gw = IPv4Network("10.5.0.0/24"), IPv4Address("10.5.0.1")
    assert ipam.allocate(net, gw, []) == IPv4Address("10.5.0.2")
    assert ipam.allocate(net, gw, ["10.5.0.2"]) == IPv4Address("10.5.0.3")
    assert ipam.allocate(net, gw, [], IPv4Network("10.5.0.128/25")) == IPv4Address("10.5.0.129")
    assert ipam.allocate(net, gw, [], preferred="10.5.0.77") == IPv4Address("10.5.0.77")
    with pytest.raises(Forbidden, match="Address already in use"):
        ipam.allocate(net, gw, ["10.5.0.77"], preferred="10.5.0.77")
    with pytest.raises(DockyardError, match="no available IPv4 addresses"):
        ipam.allocate(IPv4Network("10.5.0.0/30"), IPv4Address("10.5.0.1"), ["10.5.0.2"])


def test_mac_from_ip() -> None:
    assert ipam.mac_for(IPv4Address("172.17.0.2")) == "02:42:ac:11:00:02"


def test_pool_hands_out_the_lowest_free_address_without_rescanning() -> None:
    net, gw = IPv4Network("10.5.0.0/29"), IPv4Address("10.5.0.1")
    pool = ipam.Pool(net, gw, None, ["10.5.0.3"])
    assert [str(pool.take()) for _ in range(3)] == ["10.5.0.2", "10.5.0.4", "10.5.0.5"]
    pool.give("10.5.0.2")
    assert str(pool.take()) == "10.5.0.2"  # a freed address is the lowest again
    assert str(pool.take()) == "10.5.0.6"
    with pytest.raises(DockyardError, match="no available IPv4 addresses"):
        pool.take()  # .7 is the broadcast address
    with pytest.raises(Forbidden, match="Address already in use"):
        pool.take("10.5.0.4")
    # A range: nothing outside it, even after an address below it is freed.
    ranged = ipam.Pool(IPv4Network("10.6.0.0/24"), IPv4Address("10.6.0.1"), IPv4Network("10.6.0.128/25"), [])
    assert str(ranged.take("10.6.0.9")) == "10.6.0.9" and str(ranged.take()) == "10.6.0.129"
    ranged.give("10.6.0.9")
    assert str(ranged.take()) == "10.6.0.130"
    v6 = ipam.Pool(ipam.parse_subnet("fd00:5::/64"), ipam.parse_ip("fd00:5::1"), None, [])
    assert str(v6.take()) == "fd00:5::2" and str(v6.take("fd00:5::99")) == "fd00:5::99"
