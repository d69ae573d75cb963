"""Subnets for tests that need given ones (a --subnet, an --ip, a gateway): free on the host, and held
against every other test run on it until this process ends.

A fixed literal collides with the same test run by another checkout at the same time (two bridges
with one gateway address: "Address already in use" for the second DNS server) and with whatever other
daemons have made. Reservations are files in one host-wide directory, named for the subnet and holding
the reserving pid; one whose process is gone is free again. The pool is one no daemon picks from
(Docker's defaults are 172.17-31/16 and 192.168/16; the chaos harness takes 10.180-199).
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import os
import random
import subprocess
from ipaddress import IPv4Network
from pathlib import Path

POOL = IPv4Network("10.104.0.0/13")
RESERVATIONS = Path("/run/dockyard-test-subnets")


def _host_networks() -> list[IPv4Network]:
    """Every IPv4 route's destination and interface address on the host (all tables)."""
    nets = []
    routes = subprocess.run(["ip", "-4", "-o", "route", "show", "table", "all"], capture_output=True, text=True).stdout
    addrs = subprocess.run(["ip", "-4", "-o", "addr", "show"], capture_output=True, text=True).stdout
    # a route's destination is its first word, or its second after a type ("local", "broadcast", ...)
    words = [w for ln in routes.splitlines() for w in ln.split()[:2]]
    words += [ln.split()[3] for ln in addrs.splitlines() if len(ln.split()) > 3]
    for w in words:
        with contextlib.suppress(ValueError):
            nets.append(ipaddress.ip_network(w, strict=False))
    return [n for n in nets if isinstance(n, IPv4Network) and n.prefixlen > 0]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _held() -> list[IPv4Network]:
    """Live reservations (stale ones are removed): call with the lock held."""
    held = []
    for f in RESERVATIONS.glob("*_*"):
        try:
            net = IPv4Network(f.name.replace("_", "/"))
            pid = int(f.read_text().strip() or 0)
        except (ValueError, OSError):
            continue
        if _alive(pid):
            held.append(net)
        else:
            f.unlink(missing_ok=True)
    return held


def free_subnet(prefixlen: int = 24) -> IPv4Network:
    """A random subnet of POOL overlapping no host route or address and no other run's reservation,
    reserved for this process. Carve related subnets out of one bigger reservation."""
    RESERVATIONS.mkdir(mode=0o755, exist_ok=True)
    with open(RESERVATIONS / ".lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        taken = [(int(t.network_address), int(t.broadcast_address)) for t in _host_networks() + _held()]
        size = 1 << (32 - prefixlen)
        starts = range(int(POOL.network_address), int(POOL.broadcast_address) + 1, size)
        candidates = [a for a in starts if not any(lo < a + size and a <= hi for lo, hi in taken)]
        if not candidates:
            raise RuntimeError(f"no free /{prefixlen} left in {POOL} on this host")
        net = IPv4Network((random.choice(candidates), prefixlen))
        (RESERVATIONS / str(net).replace("/", "_")).write_text(str(os.getpid()))
        return net


def release_subnets() -> None:
    """Drop this process's reservations (at the end of the run)."""
    if not RESERVATIONS.is_dir():
        return
    with open(RESERVATIONS / ".lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        for f in RESERVATIONS.glob("*_*"):
            with contextlib.suppress(OSError, ValueError):
                if int(f.read_text().strip()) == os.getpid():
                    f.unlink()
