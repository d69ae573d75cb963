"""Resource limits for a rootless daemon (issue 17 item 5): the cgroup v2 subtree systemd delegates to a user.

On a cgroup v2 host, systemd's `user@.service` (Delegate=) hands the user a subtree that the user owns;
`Delegate=` names which controllers come with it (Docker's rootless guide: `cpu cpuset io memory pids`).
A daemon run from there (`systemctl --user`, `systemd-run --user`) is in a cgroup of that subtree, owned
by the user, which is uid 0 inside our user namespace. The daemon then:
  - reads its own cgroup from /proc/self/cgroup and the controllers that cgroup offers from its
    `cgroup.controllers` (those the parent enables for it; on a delegated subtree, the Delegate= list);
  - moves every process of that cgroup (itself, RootlessKit, slirp4netns) into a leaf `daemon` child, since
    cgroup v2 lets a cgroup hand controllers to children only when it holds no process itself;
  - enables the offered controllers in the cgroup's `cgroup.subtree_control`;
  - gives runc `linux.cgroupsPath` = that cgroup + `/<container id>`, where runc writes memory.max,
    cpu.max, pids.max ... as for a rootful container (the directory is the user's, so runc may).
A limit of a controller that is not delegated is refused at create and update naming the controller and
the fix; on cgroup v1 (or a cgroup not the user's) every limit is, with why. Never silently dropped.

`decide` only reads (unit-tested against a made-up tree); `prepare` writes."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

ROOT = Path("/sys/fs/cgroup")
# The controllers a container's limits use (io: blkio flags; devices are eBPF on v2: not for a user).
WANTED = ("cpu", "cpuset", "io", "memory", "pids")
LEAF = "daemon"  # where the daemon's own processes go, so its cgroup may delegate to containers
DROP_IN = ("/etc/systemd/system/user@.service.d/delegate.conf with [Service] Delegate=cpu cpuset io memory pids, "
           "then systemctl daemon-reload and a new login of the user")


# Refused even with every controller delegated.
NOT_FOR_USERS = ("device cgroup rules (eBPF programs: root's) and a cgroup parent (outside the user's "
                 "delegated cgroup) are not for rootless mode")


@dataclass(frozen=True)
class Delegation:
    """What a rootless daemon may limit. parent: the cgroup (from the v2 root) containers' cgroups go
    under, "" when none; controllers: those enabled for them; refused: why the others are not ("" if none)."""

    parent: str
    controllers: frozenset[str]
    refused: str  # never "" in rootless mode: NOT_FOR_USERS at least


def own_cgroup(proc_cgroup: str) -> str | None:
    """The v2 path in /proc/PID/cgroup's text ("0::/user.slice/..."), None when there is none."""
    for line in proc_cgroup.splitlines():
        if line.startswith("0::"):
            return line[3:].strip() or "/"
    return None


def decide(root: Path = ROOT, proc_cgroup: str | None = None, uid: int | None = None) -> Delegation:
    """Read the host's cgroups and say what a rootless daemon (uid `uid` inside its namespace, i.e. the
    user) can limit. Changes nothing."""
    if proc_cgroup is None:
        proc_cgroup = Path("/proc/self/cgroup").read_text()
    uid = os.geteuid() if uid is None else uid
    if not (root / "cgroup.controllers").exists():
        hybrid = " (a hybrid host: its v2 mount has no controllers)" if (root / "unified").is_dir() else ""
        return Delegation("", frozenset(), f"this host runs cgroup v1{hybrid}, whose controllers cannot be handed "
                          "to an ordinary user; limits need cgroup v2 delegated by systemd (user@.service with "
                          "Delegate=yes), or the rootful daemon")
    own = own_cgroup(proc_cgroup)
    if own is None:
        return Delegation("", frozenset(), "this process is in no cgroup v2 (no 0:: line in /proc/self/cgroup)")
    d = root / own.lstrip("/")
    try:
        owner = d.stat().st_uid
    except OSError as e:
        return Delegation("", frozenset(), f"cannot read this process's cgroup {own}: {e.strerror}")
    if own == "/" or owner != uid:
        return Delegation("", frozenset(), f"this daemon's cgroup {own} is not delegated to the user (it belongs "
                          "to another owner): start it as a systemd user service (systemctl --user, or "
                          "systemd-run --user -p Delegate=yes dockyard daemon), under user@.service's delegation")
    try:
        offered = set((d / "cgroup.controllers").read_text().split())
    except OSError as e:
        return Delegation("", frozenset(), f"cannot read {d / 'cgroup.controllers'}: {e.strerror}")
    have = frozenset(c for c in WANTED if c in offered)
    missing = [c for c in WANTED if c not in have]
    refused = NOT_FOR_USERS
    if missing:
        refused = (f"the {' '.join(missing)} controller{'s are' if len(missing) > 1 else ' is'} not delegated to "
                   f"this user (its cgroup {own} offers: {' '.join(sorted(offered)) or 'none'}); add "
                   f"{DROP_IN}. {NOT_FOR_USERS}")
    return Delegation(own.rstrip("/"), have, refused)


def prepare(deleg: Delegation, root: Path = ROOT) -> Delegation:
    """Make the delegated cgroup able to hand its controllers to containers: its processes into the
    `daemon` leaf, the controllers enabled in its subtree_control. Returns what holds after it: on a
    failure, no limits, with why."""
    if not deleg.parent:
        return deleg
    d = root / deleg.parent.lstrip("/")
    try:
        leaf = d / LEAF
        leaf.mkdir(exist_ok=True)
        # Each pid moved alone: one that exits meanwhile (ESRCH) must not stop the others.
        for pid in (d / "cgroup.procs").read_text().split():
            try:
                (leaf / "cgroup.procs").write_text(pid)
            except ProcessLookupError:
                pass
        if deleg.controllers:
            (d / "cgroup.subtree_control").write_text(" ".join(f"+{c}" for c in sorted(deleg.controllers)))
    except OSError as e:
        return Delegation("", frozenset(), f"could not prepare the delegated cgroup {deleg.parent} for "
                          f"containers: {e.strerror or e}")
    return deleg
