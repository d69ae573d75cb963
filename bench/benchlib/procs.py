"""Memory of a daemon: its process tree plus the per-container monitors it started.

Monitors (conmon, containerd-shim) daemonize, so they leave the daemon's tree; they are found by
the container ids on their command lines. Processes inside containers (another mount namespace)
are the workload, not the engine, and are not counted.
"""

from __future__ import annotations

import os
from collections.abc import Iterable


def _read(path: str) -> str:
    try:
        with open(path, "rb") as f:
            return f.read().decode("utf-8", "replace")
    except OSError:
        return ""


def _mntns(pid: int) -> str:
    try:
        return os.readlink(f"/proc/{pid}/ns/mnt")
    except OSError:
        return ""


def _rss_kib(pid: int) -> int:
    for line in _read(f"/proc/{pid}/status").splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def _processes() -> dict[int, tuple[int, str]]:
    """pid -> (ppid, cmdline)"""
    out = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        stat = _read(f"/proc/{d}/stat")
        if not stat:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        out[int(d)] = (ppid, _read(f"/proc/{d}/cmdline").replace("\0", " "))
    return out


def engine_pids(daemon_pid: int, container_ids: Iterable[str]) -> set[int]:
    procs = _processes()
    ns = _mntns(daemon_pid)
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in procs.items():
        children.setdefault(ppid, []).append(pid)
    found: set[int] = set()
    stack = [daemon_pid]
    while stack:
        p = stack.pop()
        if p in found or p not in procs:
            continue
        found.add(p)
        stack.extend(children.get(p, []))
    ids = [c for c in container_ids if len(c) >= 12]
    for pid, (_, cmd) in procs.items():
        if ids and any(c in cmd for c in ids):
            found.add(pid)
    return {p for p in found if _mntns(p) == ns}


def engine_rss_mib(daemon_pid: int, container_ids: Iterable[str]) -> float:
    return sum(_rss_kib(p) for p in engine_pids(daemon_pid, container_ids)) / 1024
