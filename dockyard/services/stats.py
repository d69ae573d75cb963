"""`docker stats` documents from cgroup files (v1 or v2) and the container's /proc/<pid>/net/dev."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from dockyard.util.timefmt import ZERO_TIME, rfc3339

CG = Path("/sys/fs/cgroup")

# memory.stat keys dockerd reports on cgroup v1 (containerd's metrics); others are left out as there.
_V1_MEMORY_KEYS = frozenset(
    f"{prefix}{k}" for prefix in ("", "total_") for k in (
        "active_anon", "active_file", "cache", "dirty", "inactive_anon", "inactive_file", "mapped_file",
        "pgfault", "pgmajfault", "pgpgin", "pgpgout", "rss", "rss_huge", "unevictable", "writeback")
) | {"hierarchical_memory_limit", "hierarchical_memsw_limit"}
_BLKIO_KEYS = ("io_service_bytes_recursive", "io_serviced_recursive", "io_queue_recursive",
               "io_service_time_recursive", "io_wait_time_recursive", "io_merged_recursive", "io_time_recursive",
               "sectors_recursive")


def _read_int(p: Path, default: int = 0) -> int:
    try:
        s = p.read_text().strip()
    except OSError:
        return default
    if s == "max":
        return default
    try:
        return int(s.split()[0])
    except (ValueError, IndexError):
        return default


def _kv(p: Path) -> dict[str, int]:
    out: dict[str, int] = {}
    try:
        for line in p.read_text().splitlines():
            parts = line.split()
            if len(parts) == 2 and parts[1].lstrip("-").isdigit():
                out[parts[0]] = int(parts[1])
    except OSError:
        pass
    return out


def cgroup_v2() -> bool:
    return (CG / "cgroup.controllers").exists()


def _system_cpu_ns() -> int:
    with open("/proc/stat") as f:
        fields = f.readline().split()[1:8]
    ticks = sum(int(x) for x in fields)
    return ticks * (1_000_000_000 // os.sysconf("SC_CLK_TCK"))


def _net(pid: int) -> dict[str, Any]:
    nets: dict[str, Any] = {}
    if not pid:
        return nets
    try:
        lines = Path(f"/proc/{pid}/net/dev").read_text().splitlines()[2:]
    except OSError:
        return nets
    for line in lines:
        name, _, rest = line.partition(":")
        name = name.strip()
        if name == "lo":
            continue
        v = [int(x) for x in rest.split()]
        nets[name] = {"rx_bytes": v[0], "rx_packets": v[1], "rx_errors": v[2], "rx_dropped": v[3],
                      "tx_bytes": v[8], "tx_packets": v[9], "tx_errors": v[10], "tx_dropped": v[11]}
    return nets


def container_stats(runtime: Any, c: Any, prev: dict[str, Any] | None) -> dict[str, Any]:
    cg = f"dockyard/{c.id}"
    running = c.state in ("running", "paused")
    ncpu = os.cpu_count() or 1
    mem: dict[str, Any] = {}
    cpu_total = 0
    percpu: list[int] = []
    pids = pids_limit = 0
    user_ns = kernel_ns = 0
    throttling = {"periods": 0, "throttled_periods": 0, "throttled_time": 0}
    blk: list[dict[str, Any]] = []
    v2 = cgroup_v2()
    if running and v2:
        base = CG / cg
        stat = _kv(base / "memory.stat")
        mem = {"usage": _read_int(base / "memory.current"), "limit": _read_int(base / "memory.max", _mem_total()),
               "stats": stat}
        cpu = _kv(base / "cpu.stat")
        cpu_total = cpu.get("usage_usec", 0) * 1000
        user_ns, kernel_ns = cpu.get("user_usec", 0) * 1000, cpu.get("system_usec", 0) * 1000
        throttling = {"periods": cpu.get("nr_periods", 0), "throttled_periods": cpu.get("nr_throttled", 0),
                      "throttled_time": cpu.get("throttled_usec", 0) * 1000}
        pids = _read_int(base / "pids.current")
        pids_limit = _read_int(base / "pids.max")
        for line in _lines(base / "io.stat"):
            parts = line.split()
            major, minor = (parts[0].split(":") + ["0"])[:2]
            kv = dict(p.split("=", 1) for p in parts[1:] if "=" in p)
            for op, key in (("read", "rbytes"), ("write", "wbytes")):
                blk.append({"major": int(major), "minor": int(minor), "op": op, "value": int(kv.get(key, 0))})
    elif running:
        mbase = CG / "memory" / cg
        stat = _kv(mbase / "memory.stat")
        limit = _read_int(mbase / "memory.limit_in_bytes")
        if limit >= 1 << 62:
            limit = _mem_total()
        mem = {"usage": _read_int(mbase / "memory.usage_in_bytes"), "max_usage": _read_int(mbase / "memory.max_usage_in_bytes"),
               "limit": limit, "stats": {k: v for k, v in stat.items() if k in _V1_MEMORY_KEYS},
               "failcnt": _read_int(mbase / "memory.failcnt")}
        cpu_total = _read_int(CG / "cpuacct" / cg / "cpuacct.usage")
        # cpuacct.stat counts USER_HZ ticks; dockerd reports nanoseconds.
        tick_ns = 1_000_000_000 // os.sysconf("SC_CLK_TCK")
        acct = _kv(CG / "cpuacct" / cg / "cpuacct.stat")
        user_ns, kernel_ns = acct.get("user", 0) * tick_ns, acct.get("system", 0) * tick_ns
        cfs = _kv(CG / "cpu" / cg / "cpu.stat")
        throttling = {"periods": cfs.get("nr_periods", 0), "throttled_periods": cfs.get("nr_throttled", 0),
                      "throttled_time": cfs.get("throttled_time", 0)}
        try:
            percpu = [int(x) for x in (CG / "cpuacct" / cg / "cpuacct.usage_percpu").read_text().split()]
        except OSError:
            percpu = []
        pids = _read_int(CG / "pids" / cg / "pids.current")
        pids_limit = _read_int(CG / "pids" / cg / "pids.max")
        for line in _lines(CG / "blkio" / cg / "blkio.throttle.io_service_bytes"):
            parts = line.split()
            if len(parts) == 3 and ":" in parts[0]:
                major, minor = parts[0].split(":")
                blk.append({"major": int(major), "minor": int(minor), "op": parts[1].lower(), "value": int(parts[2])})
    now = time.time()
    # Field presence follows dockerd's Go types: omitempty fields are left out when zero.
    cpu_stats: dict[str, Any] = {
        "cpu_usage": {"total_usage": cpu_total, "usage_in_kernelmode": kernel_ns, "usage_in_usermode": user_ns},
        "throttling_data": throttling,
    }
    if percpu:
        cpu_stats["cpu_usage"]["percpu_usage"] = percpu
    if running:
        cpu_stats["system_cpu_usage"] = _system_cpu_ns()
        cpu_stats["online_cpus"] = ncpu
    empty_cpu = {"cpu_usage": {"total_usage": 0, "usage_in_kernelmode": 0, "usage_in_usermode": 0},
                 "throttling_data": {"periods": 0, "throttled_periods": 0, "throttled_time": 0}}
    # dockerd: every blkio list is empty (not null) for a running container on v1; on v2 only the bytes one.
    blkio: dict[str, Any] = dict.fromkeys(_BLKIO_KEYS)
    if running:
        blkio["io_service_bytes_recursive"] = blk if blk or not v2 else None
        if not v2:
            blkio.update({k: [] for k in _BLKIO_KEYS[1:]})
    pids_stats = {k: v for k, v in (("current", pids), ("limit", pids_limit)) if v}
    out: dict[str, Any] = {
        "name": "/" + c.name,
        "id": c.id,
        "read": rfc3339(now) if running else ZERO_TIME,
        "preread": (prev or {}).get("read", ZERO_TIME),
        "pids_stats": pids_stats if running else {},
        "blkio_stats": blkio,
        "num_procs": 0,
        "storage_stats": {},
        "cpu_stats": cpu_stats,
        "precpu_stats": (prev or {}).get("cpu_stats", empty_cpu),
        "memory_stats": {k: v for k, v in mem.items() if v},
    }
    nets = _net(c.pid) if running else {}
    if nets:
        out["networks"] = nets
    return out


def _lines(p: Path) -> list[str]:
    try:
        return p.read_text().splitlines()
    except OSError:
        return []


def _mem_total() -> int:
    try:
        with open("/proc/meminfo") as f:
            return int(f.readline().split()[1]) * 1024
    except OSError:
        return 0
