"""Trace lines for `runc create`: what the runtime was handed (from the spec it read) and what the
kernel holds once it returns (the new process's namespaces and capabilities, the cgroup files runc
wrote). The read-back is the kernel's answer; the spec lines only say what was asked."""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any

from dockyard import trace
from dockyard.runtime import cgroups
from dockyard.runtime.procfs import NAMESPACES, cap_names, namespace_inodes
from dockyard.runtime.spec import DEFAULT_CAPS

OCI_NS = {"mount": "mnt", "network": "net"}  # the spec's names → /proc/<pid>/ns names

# (spec section, key) → (v1 controller, v1 file, v2 file, the flag that asks for it)
LIMIT_FILES: tuple[tuple[str, str, str, str, str, str], ...] = (
    ("memory", "limit", "memory", "memory.limit_in_bytes", "memory.max", "--memory"),
    ("memory", "swap", "memory", "memory.memsw.limit_in_bytes", "memory.swap.max", "--memory-swap (default: twice --memory)"),
    ("memory", "reservation", "memory", "memory.soft_limit_in_bytes", "memory.low", "--memory-reservation"),
    ("pids", "limit", "pids", "pids.max", "pids.max", "--pids-limit"),
    ("cpu", "quota", "cpu", "cpu.cfs_quota_us", "cpu.max", "--cpus / --cpu-quota"),
    ("cpu", "period", "cpu", "cpu.cfs_period_us", "cpu.max", "--cpus / --cpu-period"),
    ("cpu", "shares", "cpu", "cpu.shares", "cpu.weight", "--cpu-shares"),
    ("cpu", "cpus", "cpuset", "cpuset.cpus", "cpuset.cpus", "--cpuset-cpus"),
    ("cpu", "mems", "cpuset", "cpuset.mems", "cpuset.mems", "--cpuset-mems"),
)


def asked(spec: dict[str, Any]) -> list[str]:
    """The spec as runc reads it, one line per kind of isolation."""
    linux = spec.get("linux") or {}
    proc = spec.get("process") or {}
    out = []
    ns = [n["type"] + (f"={n['path']}" if n.get("path") else "") for n in linux.get("namespaces") or []]
    out.append("namespaces: " + " ".join(ns))
    caps = list((proc.get("capabilities") or {}).get("bounding") or [])
    added = [c for c in caps if c not in DEFAULT_CAPS]
    dropped = [c for c in DEFAULT_CAPS if c not in caps]
    out.append(f"capabilities: {len(caps)} ({_short(caps)})" + (f"; dropped {_short(dropped)}" if dropped else "")
               + (f"; added {_short(added)}" if added else ""))
    sec = linux.get("seccomp")
    if sec:
        rules = sum(len(s.get("names") or []) for s in sec.get("syscalls") or [])
        out.append(f"seccomp: default {sec.get('defaultAction')}, {rules} syscalls allowed by rule")
    else:
        out.append("seccomp: none (unconfined or --privileged)")
    root = spec.get("root") or {}
    out.append(f"rootfs: {root.get('path')} (pivot_root){' read-only' if root.get('readonly') else ''}")
    user = proc.get("user") or {}
    out.append(f"process: uid {user.get('uid')} gid {user.get('gid')} args {proc.get('args')}"
               + (" no_new_privs" if proc.get("noNewPrivileges") else ""))
    for m in spec.get("mounts") or []:
        if m.get("type") == "bind" or m.get("destination") in ("/dev/shm",):
            out.append(f"mount: {m.get('source')} -> {m.get('destination')} ({','.join(m.get('options') or [])})")
    res = {k: v for k, v in (linux.get("resources") or {}).items() if k != "devices"}
    if res:
        out.append(f"resources: {res}")
    if linux.get("cgroupsPath"):
        out.append(f"cgroup: {linux['cgroupsPath']}")
    return out


def observe(pid: int, spec: dict[str, Any]) -> str:
    """Read back the process runc made (waiting in runc init for `start`): its own namespaces and the
    capabilities it holds (call `limits` after, for the cgroup files)."""
    try:
        host = _own_namespaces()
        own = [n for n in NAMESPACES if (ino := _inode(pid, n)) and ino != host[n]]
        with open(f"/proc/{pid}/status") as f:
            st = dict(line.rstrip("\n").split(":\t", 1) for line in f if ":\t" in line)
        with open(f"/proc/{pid}/cgroup") as f:  # "N:controllers:/path" per hierarchy (one "0::/path" on v2)
            groups = {line.rstrip("\n").split(":", 2)[2] for line in f if line.count(":") >= 2}
    except OSError as e:
        return f"pid {pid} (gone before read-back: {e.strerror})"
    caps = cap_names(st.get("CapBnd", "0"))
    want = (spec.get("linux") or {}).get("cgroupsPath") or ""
    cg = " ".join(sorted(groups)) if len(groups) > 1 or want not in groups else want
    result = (f"pid {pid}; own namespaces: {' '.join(own)}; CapBnd: {_short(caps)}; "
              f"Seccomp: {st.get('Seccomp', '?')} ({st.get('Seccomp_filters', '0')} filters); cgroup {cg}")
    return result


def limits(spec: dict[str, Any]) -> None:
    """One record per cgroup limit the spec asked for, as the file now reads (runc wrote it)."""
    linux = spec.get("linux") or {}
    res = linux.get("resources") or {}
    path = (linux.get("cgroupsPath") or "").strip("/")
    if not path or ":" in path:
        return
    v2 = _is_v2()
    for section, key, ctl, v1file, v2file, flag in LIMIT_FILES:
        value = (res.get(section) or {}).get(key)
        if value in (None, 0, ""):
            continue
        f = cgroups.ROOT / path / v2file if v2 else cgroups.ROOT / ctl / path / v1file
        got = _read(f)
        trace.seen("cgroup", f"write {f} = {value}", f"reads back {got}",
                   f"{flag} (spec linux.resources.{section}.{key}); runc wrote it before the process runs")


@functools.cache
def _own_namespaces() -> dict[str, int | None]:
    """The daemon's own namespaces (read once: they do not change under a running daemon)."""
    return namespace_inodes("self")


@functools.cache
def _is_v2() -> bool:
    return cgroups.is_v2()


def _inode(pid: int, ns: str) -> int | None:
    try:
        return os.stat(f"/proc/{pid}/ns/{ns}").st_ino
    except OSError:  # that namespace type is not in this kernel
        return None


def _read(p: Path) -> str:
    try:
        return p.read_text().strip()
    except OSError as e:
        return f"unreadable: {os.strerror(e.errno or 0)}"


def _short(caps: list[str]) -> str:
    return " ".join(c.removeprefix("CAP_").lower() for c in caps) or "none"
