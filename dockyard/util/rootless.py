"""Rootless mode's facts about the host and the user (issue 17): XDG paths, subordinate ids, whether
this process is in a user namespace, and the checks `dockyard rootless setup` reports.

Used by the daemon (a non-root `dockyard daemon` re-executes itself under RootlessKit: daemon/rootless.py),
the CLI (which socket to talk to) and the setup command. Reads files only; changes nothing."""

from __future__ import annotations

import os
import pwd
import shutil
import stat
from dataclasses import dataclass
from pathlib import Path

# Set by the daemon in its own child inside the user namespace (where euid is 0): rootless defaults apply.
ROOTLESS_ENV = "DOCKYARD_ROOTLESS"
# The host's net.ipv4.ip_unprivileged_port_start, read by the parent (the child's netns has its own).
PORT_START_ENV = "DOCKYARD_ROOTLESS_PORT_START"
# The user's host uid, for messages inside the namespace (where we are uid 0).
HOST_UID_ENV = "DOCKYARD_ROOTLESS_UID"
# The launcher's unix socket that binds host ports for the daemon (network/host_ports.py).
PORT_BROKER_ENV = "DOCKYARD_ROOTLESS_PORT_BROKER"

SUBID_COUNT = 65536


def in_user_namespace() -> bool:
    """True in any user namespace but the initial one (whose uid_map maps all 2^32 ids onto themselves)."""
    try:
        lines = Path("/proc/self/uid_map").read_text().split("\n")
    except OSError:
        return False
    first = lines[0].split()
    return not (len(first) == 3 and first == ["0", "0", "4294967295"])


def single_id_map() -> bool:
    """This user namespace maps one uid only (rootless without subordinate ids): files of other owners
    cannot exist here, so layers unpack with every owner squashed to root."""
    try:
        lines = [ln.split() for ln in Path("/proc/self/uid_map").read_text().splitlines() if ln.strip()]
    except OSError:
        return False
    return len(lines) == 1 and lines[0][2] == "1"


def is_rootless() -> bool:
    """This process is (or will become) a rootless daemon: an ordinary user, or our child in its userns."""
    return os.geteuid() != 0 or os.environ.get(ROOTLESS_ENV) == "1"


def runtime_dir(uid: int | None = None) -> Path | None:
    """$XDG_RUNTIME_DIR, else /run/user/UID when it exists and is the user's (pam_systemd makes it)."""
    uid = os.getuid() if uid is None else uid
    env = os.environ.get("XDG_RUNTIME_DIR")
    if env:
        return Path(env)
    p = Path(f"/run/user/{uid}")
    try:
        if p.is_dir() and p.stat().st_uid == uid:
            return p
    except OSError:
        pass
    return None


def _home() -> Path:
    return Path(os.environ.get("HOME") or pwd.getpwuid(os.getuid()).pw_dir)


@dataclass(frozen=True)
class RootlessPaths:
    """Docker's rootless defaults, with our names."""

    runtime: Path  # $XDG_RUNTIME_DIR
    socket: Path  # $XDG_RUNTIME_DIR/dockyard.sock
    exec_root: Path  # $XDG_RUNTIME_DIR/dockyard
    state_dir: Path  # $XDG_RUNTIME_DIR/dockyard-rootlesskit (RootlessKit's api.sock, child pid)
    data_root: Path  # $XDG_DATA_HOME/dockyard (~/.local/share/dockyard)
    config_file: Path  # $XDG_CONFIG_HOME/dockyard/daemon.json (~/.config/dockyard/daemon.json)


def paths() -> RootlessPaths:
    """The rootless paths of this user; ValueError naming the fix when there is no runtime dir."""
    rd = runtime_dir()
    if rd is None:
        raise ValueError("rootless mode needs a runtime directory: XDG_RUNTIME_DIR is not set and "
                         f"/run/user/{os.getuid()} does not exist (log in through a session that makes it, "
                         "or export XDG_RUNTIME_DIR=<a directory of yours, mode 0700>)")
    data = Path(os.environ.get("XDG_DATA_HOME") or _home() / ".local" / "share")
    conf = Path(os.environ.get("XDG_CONFIG_HOME") or _home() / ".config")
    return RootlessPaths(rd, rd / "dockyard.sock", rd / "dockyard", rd / "dockyard-rootlesskit",
                         data / "dockyard", conf / "dockyard" / "daemon.json")


def subid_ranges(kind: str, user: str | None = None, uid: int | None = None,
                 etc: Path = Path("/etc")) -> list[tuple[int, int]]:
    """(start, count) ranges of /etc/subuid (kind "uid") or /etc/subgid ("gid") for the user (by name or uid)."""
    uid = os.getuid() if uid is None else uid
    if user is None:
        try:
            user = pwd.getpwuid(uid).pw_name
        except KeyError:
            user = str(uid)
    out: list[tuple[int, int]] = []
    try:
        lines = (etc / f"sub{kind}").read_text().splitlines()
    except OSError:
        return out
    for line in lines:
        parts = line.strip().split(":")
        if len(parts) != 3 or parts[0] not in (user, str(uid)):
            continue
        try:
            out.append((int(parts[1]), int(parts[2])))
        except ValueError:
            continue
    return out


def free_subid_start(etc: Path = Path("/etc")) -> int:
    """A start for a new range of SUBID_COUNT ids after every range /etc/subuid and /etc/subgid hold."""
    end = 100000
    for kind in ("uid", "gid"):
        try:
            lines = (etc / f"sub{kind}").read_text().splitlines()
        except OSError:
            continue
        for line in lines:
            parts = line.strip().split(":")
            if len(parts) == 3 and parts[1].isdigit() and parts[2].isdigit():
                end = max(end, int(parts[1]) + int(parts[2]))
    return end


def unprivileged_port_start() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_unprivileged_port_start").read_text())
    except (OSError, ValueError):
        return 1024


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""  # a command, run with sudo where it says so
    required: bool = True  # False: rootless runs without it, with less


def _setid_or_caps(path: str) -> bool:
    try:
        st = os.stat(path)
    except OSError:
        return False
    if st.st_mode & stat.S_ISUID and st.st_uid == 0:
        return True
    try:  # Debian's uidmap gives file capabilities instead of setuid on some releases
        return bool(os.getxattr(path, "security.capability"))
    except OSError:
        return False


def checks(user: str | None = None) -> list[Check]:
    """What rootless mode needs, each with the fix when it is missing."""
    uid = os.getuid()
    if user is None:
        try:
            user = pwd.getpwuid(uid).pw_name
        except KeyError:
            user = str(uid)
    else:
        uid = pwd.getpwnam(user).pw_uid
    out: list[Check] = []
    apt: list[str] = []
    for binary, pkg in (("newuidmap", "uidmap"), ("newgidmap", "uidmap")):
        idmap = shutil.which(binary) or f"/usr/bin/{binary}"
        ok = _setid_or_caps(idmap)
        out.append(Check(binary, ok, idmap if ok else f"{binary} missing or not setuid root",
                         "" if ok else "sudo apt-get install -y uidmap"))
        if not ok and pkg not in apt:
            apt.append(pkg)
    for kind in ("uid", "gid"):
        ranges = subid_ranges(kind, user, uid)
        total = sum(c for _s, c in ranges)
        ok = total >= SUBID_COUNT
        start = free_subid_start()
        fix = "" if ok else (f"sudo usermod --add-sub{kind}s {start}-{start + SUBID_COUNT - 1} {user}")
        out.append(Check(f"/etc/sub{kind}", ok,
                         f"{user}: {', '.join(f'{s}+{c}' for s, c in ranges)} ({total} ids)" if ranges
                         else f"no subordinate {kind}s for {user}: containers would get one {kind} (root only)",
                         fix))
    max_ns = _read_int("/proc/sys/user/max_user_namespaces")
    out.append(Check("user.max_user_namespaces", max_ns is None or max_ns > 0, f"{max_ns}",
                     "sudo sysctl -w user.max_user_namespaces=28633" if max_ns == 0 else ""))
    clone = _read_int("/proc/sys/kernel/unprivileged_userns_clone")
    if clone is not None:
        out.append(Check("kernel.unprivileged_userns_clone", clone == 1, f"{clone}",
                         "" if clone == 1 else "sudo sysctl -w kernel.unprivileged_userns_clone=1"))
    aa = _read_int("/proc/sys/kernel/apparmor_restrict_unprivileged_userns")
    if aa is not None:
        out.append(Check("kernel.apparmor_restrict_unprivileged_userns", aa == 0, f"{aa}",
                         "" if aa == 0 else "sudo sysctl -w kernel.apparmor_restrict_unprivileged_userns=0"))
    for binary, pkg, why in (("rootlesskit", "rootlesskit", "makes the user, mount and network namespaces, "
                                                             "forwards published ports"),
                             ("slirp4netns", "slirp4netns", "the namespace's way out (user-mode TCP/IP)")):
        found = shutil.which(binary)
        out.append(Check(binary, found is not None, found or f"missing: {why}",
                         "" if found else f"sudo apt-get install -y {pkg}"))
    tun = os.access("/dev/net/tun", os.R_OK | os.W_OK) if uid == os.getuid() else _other_can_rw("/dev/net/tun")
    out.append(Check("/dev/net/tun", tun, "usable by the user" if tun else
                     "not usable by the user: slirp4netns needs it (Debian's udev default is mode 0666)",
                     "" if tun else "sudo chmod 0666 /dev/net/tun"))
    fuse = shutil.which("fuse-overlayfs")
    out.append(Check("fuse-overlayfs", fuse is not None, fuse or "missing (needed only on kernels that refuse "
                     "overlayfs in a user namespace, before 5.11)",
                     "" if fuse else "sudo apt-get install -y fuse-overlayfs", required=False))
    fuse_ok = os.access("/dev/fuse", os.R_OK | os.W_OK) if uid == os.getuid() else _other_can_rw("/dev/fuse")
    out.append(Check("/dev/fuse", fuse_ok, "usable by the user" if fuse_ok else
                     "not usable by the user: only the fuse-overlayfs fallback needs it (kernels before 5.11)",
                     "" if fuse_ok else "sudo chmod 0666 /dev/fuse", required=False))
    port = unprivileged_port_start()
    out.append(Check("net.ipv4.ip_unprivileged_port_start", True,
                     f"{port}: published host ports below it are refused",
                     "" if port < 1024 else "optional: sudo sysctl -w net.ipv4.ip_unprivileged_port_start=80",
                     required=False))
    return out


def _other_can_rw(path: str) -> bool:
    try:
        return (os.stat(path).st_mode & 0o006) == 0o006
    except OSError:
        return False


def _read_int(path: str) -> int | None:
    try:
        return int(Path(path).read_text().strip())
    except (OSError, ValueError):
        return None
