"""Read what the kernel says about a process: its namespaces, credentials and mounts (/proc/<pid>/...).

Read-only and blocking; services call these in `asyncio.to_thread`. Used by `dockyard explain` and `docker stats`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from dockyard.runtime.spec import ALL_CAPS

NAMESPACES = ("mnt", "uts", "ipc", "pid", "net", "cgroup", "user")


def namespace_inodes(pid: int | str) -> dict[str, int | None]:
    """{"mnt": inode, ...}: two processes share a namespace exactly when these numbers are equal."""
    out: dict[str, int | None] = {}
    for ns in NAMESPACES:
        try:
            out[ns] = os.stat(f"/proc/{pid}/ns/{ns}").st_ino
        except OSError:
            out[ns] = None
    return out


def host_namespaces() -> tuple[str, dict[str, int | None]]:
    """The namespaces to call "the host's": PID 1's, or the daemon's own where PID 1 is hidden from
    us (a sandbox's init); runc makes a container's namespaces from the daemon's, so both answer."""
    for ref in ("1", "self"):
        inodes = namespace_inodes(ref)
        if all(inodes.values()):
            return f"/proc/{ref}", inodes
    return "/proc/self", inodes


def status(pid: int) -> dict[str, str]:
    """/proc/<pid>/status as a dict of its "Key:\tvalue" lines."""
    out: dict[str, str] = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            out[key] = value.strip()
    return out


def cap_names(hex_mask: str) -> list[str]:
    """A capability mask as /proc prints it (CapEff: 00000000a80425fb) → names in kernel order."""
    mask = int(hex_mask or "0", 16)
    return [c for i, c in enumerate(ALL_CAPS) if mask >> i & 1]


def comm(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return ""


def children(pid: int) -> list[int]:
    """The process's children (of each of its threads: one that forked, or the one a subreaper's
    orphans were given to), from /proc/<pid>/task/*/children; [] when it is gone."""
    kids: list[int] = []
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return kids
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                kids += [int(k) for k in f.read().split()]
        except (OSError, ValueError):
            continue
    return kids


@dataclass
class Mount:
    target: str  # as the process sees it (relative to its root)
    fstype: str
    source: str
    options: str  # per-mount options (ro, nosuid, ...)
    super_options: str  # the filesystem's own (overlay's lowerdir=..., tmpfs size=...)
    root: str  # the part of the source filesystem mounted here (a bind's origin)
    mount_id: int = 0
    parent_id: int = 0


def _unescape(s: str) -> str:
    # mountinfo octal-escapes space, tab, newline and backslash.
    for code, ch in (("\\040", " "), ("\\011", "\t"), ("\\012", "\n"), ("\\134", "\\")):
        s = s.replace(code, ch)
    return s


def mounts(pid: int) -> list[Mount]:
    """The process's mount table, in mount order (see proc(5), /proc/pid/mountinfo)."""
    out = []
    with open(f"/proc/{pid}/mountinfo") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            fields, rest = left.split(), right.split()
            out.append(Mount(target=_unescape(fields[4]), fstype=rest[0], source=_unescape(rest[1]),
                             options=fields[5], super_options=rest[2] if len(rest) > 2 else "",
                             root=_unescape(fields[3]), mount_id=int(fields[0]), parent_id=int(fields[1])))
    return out


def visible(mounts: list[Mount]) -> list[Mount]:
    """Drop what the process cannot see: a mount with a later one stacked on the same target
    (runc remounts read-only paths that way), and whatever hangs below a dropped one."""
    hidden: set[int] = set()
    by_id = {m.mount_id: m for m in mounts}
    for i, m in enumerate(mounts):
        parent = by_id.get(m.parent_id)
        if any(later.target == m.target for later in mounts[i + 1:]) or (
                m.parent_id in hidden and parent is not None and parent.target != m.target):
            hidden.add(m.mount_id)
    return [m for m in mounts if m.mount_id not in hidden]


def cgroup_paths(pid: int) -> dict[str, str]:
    """{"memory": "/dockyard/<id>", ...} from /proc/<pid>/cgroup; cgroup v2's single hierarchy is ""."""
    out: dict[str, str] = {}
    with open(f"/proc/{pid}/cgroup") as f:
        for line in f:
            _, controllers, path = line.rstrip("\n").split(":", 2)
            for c in controllers.split(",") if controllers else [""]:
                out[c] = path
    return out


def net_dev(pid: int) -> dict[str, dict[str, int]]:
    """Per-interface counters in the process's network namespace (/proc/<pid>/net/dev), loopback left out."""
    nets: dict[str, dict[str, int]] = {}
    try:  # os.open/os.read, not pathlib: read once per `docker stats` sample (500 at once for the CLI's)
        fd = os.open(f"/proc/{pid}/net/dev", os.O_RDONLY | os.O_CLOEXEC)
        try:
            chunks = []
            while chunk := os.read(fd, 1 << 16):
                chunks.append(chunk)
        finally:
            os.close(fd)
    except OSError:
        return nets
    lines = b"".join(chunks).decode().splitlines()[2:]
    for line in lines:
        name, _, rest = line.partition(":")
        name = name.strip()
        if name == "lo":
            continue
        v = [int(x) for x in rest.split()]
        nets[name] = {"rx_bytes": v[0], "rx_packets": v[1], "rx_errors": v[2], "rx_dropped": v[3],
                      "tx_bytes": v[8], "tx_packets": v[9], "tx_errors": v[10], "tx_dropped": v[11]}
    return nets


class _Kept:
    """A host-wide /proc file kept open and read again with pread(2) at offset 0 (the kernel writes it
    afresh for a read from offset 0): stats read /proc/stat and /proc/meminfo up to every 5 ms while
    `docker stats` of 500 containers is answered, and opening (and a text wrapper) was most of a read."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.fd: int | None = None

    def first_line(self) -> bytes:
        if self.fd is None:
            self.fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
        return os.pread(self.fd, 4096, 0).partition(b"\n")[0]


_STAT, _MEMINFO = _Kept("/proc/stat"), _Kept("/proc/meminfo")
_TICK_NS = 1_000_000_000 // os.sysconf("SC_CLK_TCK")


def system_cpu_ns() -> int:
    """The host's total CPU time (the first line of /proc/stat), in nanoseconds."""
    return sum(int(x) for x in _STAT.first_line().split()[1:8]) * _TICK_NS


def mem_total() -> int:
    try:
        return int(_MEMINFO.first_line().split()[1]) * 1024
    except OSError:
        return 0
