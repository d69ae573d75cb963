"""The cgroup2 `favordynmods` switch: cheap cgroup migrations for every runc create and exec.

Moving a process into a cgroup (runc writes its pid to `cgroup.procs` for create and for each
exec) takes the kernel's global cgroup_threadgroup_rwsem for writing. By default that percpu
rwsem must wait for an RCU grace period first: 7-14 ms here, on every container start and every
`docker exec`. With `favordynmods` (Linux 6.0+, on a cgroup2 mount, global in effect) readers
(fork and exit) take a slightly slower path and writers skip the wait: a migration drops to
~0.1 ms. The kernel documents it for exactly this: hosts that create and move tasks often.
Like dockerd's `ip_forward`, the daemon sets it at start and leaves it set. The switch is one for
the host: whoever reads or sets it holds the host's "favordynmods" lock (util/hostlock.py).
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from dockyard.util import hostlock

OPTION = "favordynmods"


@dataclass(frozen=True)
class Cgroup2Mount:
    path: str
    mount_opts: list[str]  # per-mount (rw, nosuid, relatime...)
    super_opts: list[str]  # the cgroup2 superblock's (nsdelegate, favordynmods...)

    @property
    def favored(self) -> bool:
        return OPTION in self.super_opts


def cgroup2_mount(mountinfo: Path = Path("/proc/self/mountinfo")) -> Cgroup2Mount | None:
    """The first cgroup2 mount (/sys/fs/cgroup on v2 hosts, /sys/fs/cgroup/unified on hybrid ones)."""
    for line in mountinfo.read_text().splitlines():
        head, sep, tail = line.partition(" - ")
        fields, rest = head.split(), tail.split()
        if sep and len(rest) >= 3 and rest[0] == "cgroup2":
            return Cgroup2Mount(fields[4], fields[5].split(","), rest[2].split(","))
    return None


def set_favordynmods(on: bool = True, lock: bool = True) -> str:
    """Turn the option on (or off); returns what happened, for the daemon's log. Without `lock` the
    caller holds the host's lock already."""
    if lock:
        with hostlock.held(OPTION):
            return set_favordynmods(on, lock=False)
    m = cgroup2_mount()
    if m is None:
        return "no cgroup2 mount: cgroup migrations stay slow (v1-only host)"
    if m.favored == on:
        return f"{m.path}: {OPTION} already {'on' if on else 'off'}"
    supers = [o for o in m.super_opts if o not in ("rw", "ro", OPTION)] + ([OPTION] if on else [])
    # `--options-mode ignore`: mount(8) would otherwise merge the current options back in, and a
    # cgroup2 remount applies the superblock flags it is given, all of them.
    opts = ",".join(["remount", *m.mount_opts, *supers])
    r = subprocess.run(["mount", "--options-mode", "ignore", "-o", opts, m.path], capture_output=True, text=True)
    if r.returncode != 0:
        return f"{m.path}: cannot set {OPTION} (Linux 6.0+ has it): {r.stderr.strip()}"
    after = cgroup2_mount()
    if after is None or after.favored != on:  # what the log says is what the mount shows
        return f"{m.path}: the remount left {OPTION} {'off' if on else 'on'}"
    return f"{m.path}: {OPTION} {'on' if on else 'off'}"
