"""Read a container's cgroup stats and remove its cgroup dirs (cgroupfs driver, v1 or v2).

cgroups_path is runc's `linux.cgroupsPath` for the cgroupfs driver, e.g. `/dockyard/<id>`.
"""

from __future__ import annotations

import functools
import os
import resource
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path("/sys/fs/cgroup")
V1_CONTROLLERS = ("memory", "pids", "cpu", "cpuacct", "cpuset", "blkio", "freezer", "devices",
                  "net_cls", "net_prio", "perf_event", "hugetlb", "rdma", "misc", "cpu,cpuacct",
                  "net_cls,net_prio", "systemd", "unified")


@functools.cache
def is_v2(root: Path = ROOT) -> bool:
    """Asked on every stats sample: a host's cgroup version does not change while it runs."""
    return (root / "cgroup.controllers").exists()


def _read(p: Path | str) -> str | None:
    # os.open/os.read, not pathlib: Path's own work was about half of each read's cost. (Stats samples
    # read through _OpenFiles instead.)
    try:
        fd = os.open(p, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        return os.read(fd, 1 << 16).decode().strip()
    except OSError:
        return None
    finally:
        os.close(fd)


def _int(p: Path | str) -> int | None:
    """The file's number; None when it is missing, "max" or not a number."""
    try:
        fd = os.open(p, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        return int(os.read(fd, 64))  # int() takes the bytes and their newline as they are
    except (OSError, ValueError):
        return None
    finally:
        os.close(fd)


def _kv(p: Path | str) -> dict[str, int]:
    """A flat-keyed file ("key value" lines: cpu.stat, memory.stat); lines whose value is no number left out."""
    return _parse_kv(_read(p))


def _parse_kv(text: str | None) -> dict[str, int]:
    if not text:
        return {}
    words = text.split()
    lines = text.count("\n") + 1
    if len(words) == 2 * lines and text.count(" ") == lines:  # "key value" lines, as the kernel writes them:
        try:  # in one go (memory.stat has ~40 of them)
            return dict(zip(words[::2], map(int, words[1::2]), strict=True))
        except ValueError:
            pass
    out: dict[str, int] = {}
    for line in text.splitlines():
        k, _, v = line.partition(" ")
        try:
            out[k] = int(v)
        except ValueError:
            pass
    return out


def dirs(cgroups_path: str, root: Path = ROOT) -> list[Path]:
    rel = cgroups_path.strip("/")
    if is_v2(root):
        return [root / rel]
    out = []
    for entry in sorted(root.iterdir()) if root.exists() else []:
        d = entry / rel
        if d.is_dir() and not entry.is_symlink():
            out.append(d)
    return out



def rmdir_until_gone(dirs: list[Path], budget: float) -> list[Path]:
    """rmdir each of `dirs`, again while one is busy (EBUSY: a killed process still leaving it), for up
    to `budget` seconds. Returns those still there. Blocks: call it in a worker thread."""
    deadline = time.monotonic() + budget
    delay = 0.01
    left = list(dirs)
    while True:
        busy = []
        for d in left:
            try:
                d.rmdir()
            except FileNotFoundError:
                pass
            except OSError:
                busy.append(d)
        left = busy
        if not left or time.monotonic() >= deadline:
            return left
        time.sleep(min(delay, max(0.0, deadline - time.monotonic())))
        delay = min(delay * 2, 0.2)

@dataclass
class Sample:
    """One reading of a container's cgroup counters (v1 or v2). None: unlimited or not reported."""

    v2: bool
    memory_usage: int | None = None
    memory_limit: int | None = None
    memory_max_usage: int | None = None  # v1 only
    memory_failcnt: int | None = None  # v1 only
    memory_stat: dict[str, int] = field(default_factory=dict)
    cpu_total_ns: int = 0
    cpu_user_ns: int = 0
    cpu_system_ns: int = 0
    percpu_ns: list[int] = field(default_factory=list)  # v1 only
    cfs_periods: int = 0
    cfs_throttled_periods: int = 0
    cfs_throttled_ns: int = 0
    pids_current: int | None = None
    pids_limit: int | None = None
    io_bytes: list[tuple[int, int, str, int]] = field(default_factory=list)  # (major, minor, op, bytes)


class _OpenFiles:
    """The stats files of each container's cgroup, kept open and read again with pread(2) at offset 0 (the
    kernel writes a cgroup file afresh for each read from offset 0). Opening one is most of what reading it
    costs: ~15 of the ~20 µs (path walk, kernfs's open and release), and `docker stats` of 500 containers
    reads 16 of them each. Kept up to a share of RLIMIT_NOFILE (the rest is left to connections); past it
    a file is opened and closed per read as before. A removed cgroup's file reads ENODEV: it is closed and
    opened again (the container may have started anew); runtime deletes close a container's (forget)."""

    def __init__(self) -> None:
        self.by_group: dict[str, dict[str, int]] = {}  # cgroups path -> {file path: fd}
        self.count = 0
        self.cap: int | None = None  # set at first use (after the daemon raised its soft limit)

    def read(self, group: str, path: str, size: int) -> bytes | None:
        files = self.by_group.get(group)
        if files is not None and (fd := files.get(path)) is not None:
            try:
                return os.pread(fd, size, 0)
            except OSError:
                del files[path]
                self.count -= 1
                os.close(fd)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            return None
        try:
            data = os.pread(fd, size, 0)
        except OSError:
            os.close(fd)
            return None
        if self.cap is None:
            self.cap = _open_files_cap()
        if self.count < self.cap:
            self.by_group.setdefault(group, {})[path] = fd
            self.count += 1
        else:
            os.close(fd)
        return data

    def forget(self, name: str) -> None:
        """Close the files of every cgroup path whose last part is `name` (a container id)."""
        for group in [g for g in self.by_group if g.rpartition("/")[2] == name]:
            for fd in self.by_group.pop(group).values():
                os.close(fd)
                self.count -= 1


def _open_files_cap() -> int:
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return 8192 if soft == resource.RLIM_INFINITY else min(8192, soft // 3)


_open = _OpenFiles()


def forget(name: str) -> None:
    """Close the stats files kept open for the container (before its cgroups are removed)."""
    _open.forget(name)


def sample(cgroups_path: str, root: Path = ROOT, cpu_only: bool = False) -> Sample:
    """Read the container's memory, cpu, pids and io counters (the one reader `docker stats` uses).
    cpu_only: the cpu counters alone (what a stats answer's precpu_stats needs: 4 files, not 14)."""
    rel = cgroups_path.strip("/")

    def text(p: str) -> str | None:
        data = _open.read(rel, p, 1 << 16)
        return None if data is None else data.decode().strip()

    def num(p: str) -> int | None:
        data = _open.read(rel, p, 64)
        try:
            return None if data is None else int(data)  # int() takes the bytes and their newline as they are
        except ValueError:  # "max"
            return None

    def kv(p: str) -> dict[str, int]:
        return _parse_kv(text(p))

    if is_v2(root) and cpu_only:
        cpu = kv(f"{root}/{rel}/cpu.stat")
        return Sample(True, cpu_total_ns=cpu.get("usage_usec", 0) * 1000, cpu_user_ns=cpu.get("user_usec", 0) * 1000,
                      cpu_system_ns=cpu.get("system_usec", 0) * 1000, cfs_periods=cpu.get("nr_periods", 0),
                      cfs_throttled_periods=cpu.get("nr_throttled", 0),
                      cfs_throttled_ns=cpu.get("throttled_usec", 0) * 1000)
    if is_v2(root):
        d = f"{root}/{rel}"
        cpu = kv(f"{d}/cpu.stat")
        io: list[tuple[int, int, str, int]] = []
        for line in (text(f"{d}/io.stat") or "").splitlines():
            parts = line.split()
            major, minor = (parts[0].split(":") + ["0"])[:2]
            kvs = dict(p.split("=", 1) for p in parts[1:] if "=" in p)
            for op, key in (("read", "rbytes"), ("write", "wbytes")):
                io.append((int(major), int(minor), op, int(kvs.get(key, 0))))
        return Sample(
            True, memory_usage=num(f"{d}/memory.current"), memory_limit=num(f"{d}/memory.max"),
            memory_stat=kv(f"{d}/memory.stat"), cpu_total_ns=cpu.get("usage_usec", 0) * 1000,
            cpu_user_ns=cpu.get("user_usec", 0) * 1000, cpu_system_ns=cpu.get("system_usec", 0) * 1000,
            cfs_periods=cpu.get("nr_periods", 0), cfs_throttled_periods=cpu.get("nr_throttled", 0),
            cfs_throttled_ns=cpu.get("throttled_usec", 0) * 1000,
            pids_current=num(f"{d}/pids.current"), pids_limit=num(f"{d}/pids.max"), io_bytes=io)
    mem = f"{root}/memory/{rel}"
    acct_ctl, cfs_ctl = _v1_cpu_controllers(root)
    acct, cfs_dir = f"{root}/{acct_ctl}/{rel}", f"{root}/{cfs_ctl}/{rel}"
    st = kv(f"{acct}/cpuacct.stat")
    cfs = kv(f"{cfs_dir}/cpu.stat")
    if cpu_only:
        return Sample(
            False, cpu_total_ns=num(f"{acct}/cpuacct.usage") or 0, cpu_user_ns=st.get("user", 0) * _TICK_NS,
            cpu_system_ns=st.get("system", 0) * _TICK_NS,
            percpu_ns=[int(x) for x in (text(f"{acct}/cpuacct.usage_percpu") or "").split()],
            cfs_periods=cfs.get("nr_periods", 0), cfs_throttled_periods=cfs.get("nr_throttled", 0),
            cfs_throttled_ns=cfs.get("throttled_time", 0))
    io = []
    for line in (text(f"{root}/blkio/{rel}/blkio.throttle.io_service_bytes") or "").splitlines():
        parts = line.split()
        if len(parts) == 3 and ":" in parts[0]:
            major, minor = parts[0].split(":")
            io.append((int(major), int(minor), parts[1].lower(), int(parts[2])))
    return Sample(
        False, memory_usage=num(f"{mem}/memory.usage_in_bytes"),
        memory_limit=_unlimited_v1(num(f"{mem}/memory.limit_in_bytes")),
        memory_max_usage=num(f"{mem}/memory.max_usage_in_bytes"), memory_failcnt=num(f"{mem}/memory.failcnt"),
        memory_stat=kv(f"{mem}/memory.stat"), cpu_total_ns=num(f"{acct}/cpuacct.usage") or 0,
        cpu_user_ns=st.get("user", 0) * _TICK_NS, cpu_system_ns=st.get("system", 0) * _TICK_NS,
        percpu_ns=[int(x) for x in (text(f"{acct}/cpuacct.usage_percpu") or "").split()],
        cfs_periods=cfs.get("nr_periods", 0), cfs_throttled_periods=cfs.get("nr_throttled", 0),
        cfs_throttled_ns=cfs.get("throttled_time", 0),
        pids_current=num(f"{root}/pids/{rel}/pids.current"), pids_limit=num(f"{root}/pids/{rel}/pids.max"),
        io_bytes=io)


_TICK_NS = 1_000_000_000 // (os.sysconf("SC_CLK_TCK") or 100)  # cpuacct.stat counts USER_HZ ticks


@functools.cache
def _v1_cpu_controllers(root: Path) -> tuple[str, str]:
    """Where v1 mounts cpuacct and cpu: their own dirs, or only the joint `cpu,cpuacct` (asked once)."""
    return ("cpuacct" if (root / "cpuacct").exists() else "cpu,cpuacct",
            "cpu" if (root / "cpu").exists() else "cpu,cpuacct")


def frozen(cgroups_path: str, root: Path = ROOT) -> bool | None:
    """Whether the container's cgroup is frozen (paused), read from the freezer's file: what `runc state`
    reports as "paused", without a runc process. None: no such cgroup here (ask runc)."""
    rel = cgroups_path.strip("/")
    if not rel:
        return None
    if is_v2(root):
        v = _read(root / rel / "cgroup.freeze")
        return None if v is None else v == "1"
    v = _read(root / "freezer" / rel / "freezer.state")
    return None if v is None else v != "THAWED"


def pids(cgroups_path: str, root: Path = ROOT) -> list[int]:
    rel = cgroups_path.strip("/")
    base = root / rel if is_v2(root) else root / "pids" / rel
    return [int(x) for x in (_read(base / "cgroup.procs") or "").split()]


def remove(cgroups_path: str, root: Path = ROOT) -> list[Path]:
    """rmdir the container's cgroup in every hierarchy (deepest first), then its parent if now
    empty (rmdir fails harmlessly while other containers use it). Returns what is left."""
    left: list[Path] = []
    for d in dirs(cgroups_path, root):
        for sub in sorted((p for p in d.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
            try:
                sub.rmdir()
            except OSError:
                pass
        try:
            d.rmdir()
        except FileNotFoundError:
            pass
        except OSError:
            left.append(d)
            continue
        try:
            d.parent.rmdir()
        except OSError:
            pass
    return left


def oom_killed(cgroups_path: str, root: Path = ROOT) -> bool:
    """Whether the kernel OOM-killed a process in this cgroup (read before the cgroup is removed)."""
    rel = cgroups_path.strip("/")
    if is_v2(root):
        return _kv(root / rel / "memory.events").get("oom_kill", 0) > 0
    return _kv(root / "memory" / rel / "memory.oom_control").get("oom_kill", 0) > 0


def limits(cgroups_path: str, root: Path = ROOT) -> dict[str, Any]:
    """The limits in force, read back from the cgroup files (None = unlimited or unknown):
    {"memory", "memory_swap", "cpu_quota_us", "cpu_period_us", "cpu_shares", "pids", "cpuset_cpus", "cpuset_mems"}."""
    rel = cgroups_path.strip("/")
    if is_v2(root):
        d = root / rel
        quota, _, period = (_read(d / "cpu.max") or "").partition(" ")
        return {"memory": _int(d / "memory.max"), "memory_swap": _int(d / "memory.swap.max"),
                "cpu_quota_us": int(quota) if quota.isdigit() else None,
                "cpu_period_us": int(period) if period.isdigit() else None,
                "cpu_weight": _int(d / "cpu.weight"), "pids": _int(d / "pids.max"),
                "cpuset_cpus": _read(d / "cpuset.cpus.effective"), "cpuset_mems": _read(d / "cpuset.mems.effective")}
    cpu = root / "cpu" / rel
    if not cpu.exists():
        cpu = root / "cpu,cpuacct" / rel
    quota_us = _int(cpu / "cpu.cfs_quota_us")
    return {"memory": _unlimited_v1(_int(root / "memory" / rel / "memory.limit_in_bytes")),
            "memory_swap": _unlimited_v1(_int(root / "memory" / rel / "memory.memsw.limit_in_bytes")),
            "cpu_quota_us": quota_us if quota_us is not None and quota_us > 0 else None,  # -1: no quota
            "cpu_period_us": _int(cpu / "cpu.cfs_period_us"), "cpu_shares": _int(cpu / "cpu.shares"),
            "pids": _int(root / "pids" / rel / "pids.max"),
            "cpuset_cpus": _read(root / "cpuset" / rel / "cpuset.cpus"),
            "cpuset_mems": _read(root / "cpuset" / rel / "cpuset.mems")}


def _unlimited_v1(v: int | None) -> int | None:
    # v1 spells "no limit" as the largest page-aligned value (9223372036854771712).
    return None if v is None or v >= 1 << 62 else v
