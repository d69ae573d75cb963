"""`docker stats` documents in dockerd's shape, from a cgroup sample (runtime/cgroups.sample) and
the container's network counters (runtime/procfs.net_dev)."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any, NamedTuple

from dockyard.runtime import cgroups, procfs
from dockyard.util.timefmt import ZERO_TIME, rfc3339

# memory.stat keys dockerd reports on cgroup v1 (containerd's metrics); others are left out as there.
_V1_MEMORY_KEYS = frozenset(
    f"{prefix}{k}" for prefix in ("", "total_") for k in (
        "active_anon", "active_file", "cache", "dirty", "inactive_anon", "inactive_file", "mapped_file",
        "pgfault", "pgmajfault", "pgpgin", "pgpgout", "rss", "rss_huge", "unevictable", "writeback")
) | {"hierarchical_memory_limit", "hierarchical_memsw_limit"}
_BLKIO_KEYS = ("io_service_bytes_recursive", "io_serviced_recursive", "io_queue_recursive",
               "io_service_time_recursive", "io_wait_time_recursive", "io_merged_recursive", "io_time_recursive",
               "sectors_recursive")


class Subject(NamedTuple):
    """What a stats document needs of its container (ContainerService.brief)."""

    id: str
    name: str
    state: str
    pid: int

    @property
    def has_process(self) -> bool:
        return self.state in ("running", "paused")


@dataclass
class Host:
    """The host's figures a stats document carries beside the container's own."""

    at: float  # time.monotonic() when read
    system_cpu_ns: int  # /proc/stat's first line
    online_cpus: int
    mem_total: int | None = None  # /proc/meminfo, read when a document first needs it (no memory limit)


SHARE_S = 0.005
_host: Host | None = None
_clock = time.monotonic  # tests move it


def host() -> Host:
    """The host's CPU time and online CPUs, read once for every sample taken within SHARE_S of each other,
    as dockerd's collector reads them once per tick for all its containers. The kernel writes all of
    /proc/stat (a line per CPU and per interrupt) to answer its first line: ~60 µs a read, and `docker stats`
    of 500 containers took 1,000 samples in a few hundred ms. 5 ms adds no error beyond /proc/stat's own
    10 ms ticks to the CPU % computed from two samples (0.2 s or 1 s apart)."""
    global _host
    now = _clock()
    if _host is None or now - _host.at > SHARE_S:
        _host = Host(now, procfs.system_cpu_ns(), os.cpu_count() or 1)
    return _host


def _memory(s: cgroups.Sample, h: Host) -> dict[str, Any]:
    if s.memory_limit is not None:
        limit = s.memory_limit
    else:  # unlimited: the host's
        if h.mem_total is None:
            h.mem_total = procfs.mem_total()
        limit = h.mem_total
    if s.v2:
        return {"usage": s.memory_usage or 0, "limit": limit, "stats": s.memory_stat}
    return {"usage": s.memory_usage or 0, "max_usage": s.memory_max_usage or 0, "limit": limit,
            "stats": {k: v for k, v in s.memory_stat.items() if k in _V1_MEMORY_KEYS},
            "failcnt": s.memory_failcnt or 0}


def container_stats(c: Subject, prev: dict[str, Any] | None, cgroup_path: str | None = None,
                    cpu_only: bool = False) -> dict[str, Any]:
    """cgroup_path: the container's (ContainerService.cgroup_path), "" when it has none of its own;
    cpu_only: a document with only `read` and `cpu_stats` right (a stream=false answer's precpu sample)."""
    running = c.has_process
    path = f"/dockyard/{c.id}" if cgroup_path is None else cgroup_path
    s = cgroups.sample(path, cpu_only=cpu_only) if running and path else cgroups.Sample(cgroups.is_v2())
    now = time.time()
    # Field presence follows dockerd's Go types: omitempty fields are left out when zero.
    cpu_stats: dict[str, Any] = {
        "cpu_usage": {"total_usage": s.cpu_total_ns, "usage_in_kernelmode": s.cpu_system_ns,
                      "usage_in_usermode": s.cpu_user_ns},
        "throttling_data": {"periods": s.cfs_periods, "throttled_periods": s.cfs_throttled_periods,
                            "throttled_time": s.cfs_throttled_ns},
    }
    if s.percpu_ns:
        cpu_stats["cpu_usage"]["percpu_usage"] = s.percpu_ns
    h = host() if running else None
    if h is not None:
        cpu_stats["system_cpu_usage"] = h.system_cpu_ns
        cpu_stats["online_cpus"] = h.online_cpus
    if cpu_only:
        return {"read": rfc3339(now) if running else ZERO_TIME, "cpu_stats": cpu_stats}
    empty_cpu = {"cpu_usage": {"total_usage": 0, "usage_in_kernelmode": 0, "usage_in_usermode": 0},
                 "throttling_data": {"periods": 0, "throttled_periods": 0, "throttled_time": 0}}
    # dockerd: every blkio list is empty (not null) for a running container on v1; on v2 only the bytes one.
    blkio: dict[str, Any] = dict.fromkeys(_BLKIO_KEYS)
    if running:
        blk = [{"major": ma, "minor": mi, "op": op, "value": v} for ma, mi, op, v in s.io_bytes]
        blkio["io_service_bytes_recursive"] = blk if blk or not s.v2 else None
        if not s.v2:
            blkio.update({k: [] for k in _BLKIO_KEYS[1:]})
    pids_stats = {k: v for k, v in (("current", s.pids_current), ("limit", s.pids_limit)) if v}
    mem = _memory(s, h) if h is not None else {}
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
    nets = procfs.net_dev(c.pid) if running and c.pid else {}
    if nets:
        out["networks"] = nets
    return out
