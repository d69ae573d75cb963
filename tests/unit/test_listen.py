"""api/listen.py: dockerd's -H rules (moby opts/hosts.go and its tests), plus what we refuse beyond them."""

from __future__ import annotations

import re

import pytest

from dockyard.api.listen import parse_listen_address
from dockyard.errors import InvalidParameter


@pytest.mark.parametrize(("addr", "shown", "loopback"), [
    ("tcp://0.0.0.0:5555", "tcp://0.0.0.0:5555", False),
    ("tcp://127.0.0.1:5555", "tcp://127.0.0.1:5555", True),
    ("tcp://[::1]:5555", "tcp://[::1]:5555", True),
    ("tcp://[::1]", "tcp://[::1]:2375", True),
    ("tcp://:5555", "tcp://localhost:5555", True),  # dockerd's DefaultHTTPHost
    ("tcp://", "tcp://localhost:2375", True),
    ("localhost:5555", "tcp://localhost:5555", True),  # no scheme: tcp
    ("0.0.0.1:5555", "tcp://0.0.0.1:5555", False),
    ("tcp://docker.com:5555", "tcp://docker.com:5555", False),
    ("tcp://127.0.0.1.nip.io:5555", "tcp://127.0.0.1.nip.io:5555", False),  # a name, not 127.*
    ("tcp://127.1:5555", "tcp://127.1:5555", False),  # inet_aton spelling: a name to us, so not loopback
    ("unix:///run/x.sock", "unix:///run/x.sock", True),
    ("unix://", "unix:///run/dockyard.sock", True),
])
def test_valid(addr: str, shown: str, loopback: bool) -> None:
    a = parse_listen_address(addr)
    assert (a.display(), a.loopback) == (shown, loopback)


@pytest.mark.parametrize(("addr", "why"), [
    ("TCP://0.0.0.0:5555", "unsupported proto 'TCP'"),  # case-sensitive, as dockerd
    ("udp://127.0.0.1:5555", "unsupported proto 'udp'"),
    ("tcp://127.0.0.1@0.0.0.0:5555", "should not contain user information"),  # Go's url.Parse drops it
    ("tcp://0.0.0.0:5555/", "should not contain a path element"),
    ("tcp://0.0.0.0:5555?x=1", "should not contain a query or fragment"),
    ("tcp://0.0.0.0:port", "invalid port: port"),
    ("tcp://0.0.0.0:65536", "invalid port: 65536"),
    ("tcp://::1:5555", "too many colons"),
    ("tcp://a b:5555", "invalid character in host name"),
    ("unix://tcp://127.0.0.1", "invalid unix address: tcp://127.0.0.1"),
    ("", "unsupported proto ''"),
])
def test_refused(addr: str, why: str) -> None:
    with pytest.raises(InvalidParameter, match="^" + re.escape(f"invalid bind address ({addr.strip()}):")) as e:
        parse_listen_address(addr)
    assert why in str(e.value.message)


def test_tls_changes_only_the_default_port() -> None:
    assert parse_listen_address("tcp://10.0.0.1").port_for(tls=True) == 2376
    assert parse_listen_address("tcp://10.0.0.1:4000").port_for(tls=True) == 4000
