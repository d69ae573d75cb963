"""Build a complete OCI runtime spec (config.json) with Docker's defaults.

Input is a plain dataclass the container service fills from the container's config and host
config; output is the dict runc reads. Nothing here touches the kernel except reading the
rootfs's /etc/passwd, /etc/group, the host's /dev (for --privileged) and our own rlimits.
"""

from __future__ import annotations

import os
import resource
import stat
from dataclasses import dataclass, field
from typing import Any

from dockyard.errors import InvalidParameter
from dockyard.runtime import seccomp
from dockyard.runtime.users import _read_db, resolve_user
from dockyard.util import rootless
from dockyard.wire.container import DeviceMapping, Ulimit

# Rootless without subordinate ids (one uid and gid mapped): no gid 5 for devpts, no other group.
_ONE_ID = rootless.in_user_namespace() and rootless.single_id_map()

# Capability numbers 0..40, the kernel's order.
ALL_CAPS: tuple[str, ...] = tuple("CAP_" + c for c in """
CHOWN DAC_OVERRIDE DAC_READ_SEARCH FOWNER FSETID KILL SETGID SETUID SETPCAP LINUX_IMMUTABLE
NET_BIND_SERVICE NET_BROADCAST NET_ADMIN NET_RAW IPC_LOCK IPC_OWNER SYS_MODULE SYS_RAWIO SYS_CHROOT
SYS_PTRACE SYS_PACCT SYS_ADMIN SYS_BOOT SYS_NICE SYS_RESOURCE SYS_TIME SYS_TTY_CONFIG MKNOD LEASE
AUDIT_WRITE AUDIT_CONTROL SETFCAP MAC_OVERRIDE MAC_ADMIN SYSLOG WAKE_ALARM BLOCK_SUSPEND AUDIT_READ
PERFMON BPF CHECKPOINT_RESTORE""".split())

DEFAULT_CAPS: tuple[str, ...] = tuple("CAP_" + c for c in """
CHOWN DAC_OVERRIDE FSETID FOWNER MKNOD NET_RAW SETGID SETUID SETFCAP SETPCAP NET_BIND_SERVICE
SYS_CHROOT KILL AUDIT_WRITE""".split())

MASKED_PATHS: tuple[str, ...] = (
    "/proc/asound", "/proc/acpi", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
    "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi",
    "/sys/firmware", "/sys/devices/virtual/powercap",
)
READONLY_PATHS: tuple[str, ...] = (
    "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger",
)

DEFAULT_PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
DEFAULT_SHM_SIZE = 64 * 1024 * 1024
INIT_PATH = "/sbin/docker-init"
INIT_HOST_BINARY = "/usr/bin/catatonit"

# Device cgroup rules Docker allows for unprivileged containers (after "deny all").
_ALLOWED_DEVICES: tuple[tuple[str, int | None, int | None, str], ...] = (
    ("c", None, None, "m"), ("b", None, None, "m"),
    ("c", 1, 3, "rwm"), ("c", 1, 8, "rwm"), ("c", 1, 7, "rwm"), ("c", 5, 0, "rwm"),
    ("c", 1, 5, "rwm"), ("c", 1, 9, "rwm"), ("c", 5, 1, "rwm"), ("c", 136, None, "rwm"),
    ("c", 5, 2, "rwm"), ("c", 10, 200, "rwm"),
)

RLIMITS = {
    "core": "RLIMIT_CORE", "cpu": "RLIMIT_CPU", "data": "RLIMIT_DATA", "fsize": "RLIMIT_FSIZE",
    "locks": "RLIMIT_LOCKS", "memlock": "RLIMIT_MEMLOCK", "msgqueue": "RLIMIT_MSGQUEUE",
    "nice": "RLIMIT_NICE", "nofile": "RLIMIT_NOFILE", "nproc": "RLIMIT_NPROC", "rss": "RLIMIT_RSS",
    "rtprio": "RLIMIT_RTPRIO", "rttime": "RLIMIT_RTTIME", "sigpending": "RLIMIT_SIGPENDING",
    "stack": "RLIMIT_STACK", "as": "RLIMIT_AS",
}


@dataclass
class Resources:
    memory: int = 0  # bytes; 0 = unlimited
    memory_swap: int = 0  # memory+swap; -1 = unlimited swap
    memory_reservation: int = 0
    cpu_shares: int = 0
    cpu_quota: int = 0
    cpu_period: int = 0
    cpuset_cpus: str = ""
    cpuset_mems: str = ""
    pids_limit: int = 0  # <= 0 = unlimited
    oom_kill_disable: bool = False
    blkio_weight: int = 0


@dataclass
class SpecInput:
    rootfs: str
    args: list[str]
    env: list[str] = field(default_factory=list)
    cwd: str = "/"
    user: str = ""
    hostname: str = ""
    domainname: str = ""
    tty: bool = False
    stdin: bool = False
    readonly_rootfs: bool = False
    cap_add: list[str] = field(default_factory=list)
    cap_drop: list[str] = field(default_factory=list)
    privileged: bool = False
    security_opt: list[str] = field(default_factory=list)
    masked_paths: list[str] | None = None  # None = Docker's list
    readonly_paths: list[str] | None = None
    mounts: list[dict[str, Any]] = field(default_factory=list)  # extra OCI mounts (binds, tmpfs, volumes)
    netns: str | None = None  # None = new netns; "host" = share the host's; else a netns path
    ipc_host: bool = False
    pid_host: bool = False
    ipc_path: str | None = None  # join this IPC namespace (a pod's infra: /proc/<pid>/ns/ipc)
    uts_path: str | None = None  # join this UTS namespace (a pod's infra: one hostname for the pod)
    shm_path: str | None = None  # bind this as /dev/shm (the IPC owner's, as docker's --ipc container:X)
    hosts_path: str | None = None
    hostname_path: str | None = None
    resolv_conf_path: str | None = None
    shm_size: int = DEFAULT_SHM_SIZE
    ulimits: list[Ulimit] = field(default_factory=list)
    cgroups_path: str = ""
    resources: Resources = field(default_factory=Resources)
    init: bool = False
    init_binary: str = INIT_HOST_BINARY
    sysctls: dict[str, str] = field(default_factory=dict)
    devices: list[DeviceMapping] = field(default_factory=list)
    annotations: dict[str, str] = field(default_factory=dict)
    oom_score_adj: int = 0
    group_add: list[str] = field(default_factory=list)  # --group-add: names (container's /etc/group) or gids


def normalize_cap(name: str) -> str:
    up = name.strip().upper()
    if up == "ALL":
        return up
    if not up.startswith("CAP_"):
        up = "CAP_" + up
    if up not in ALL_CAPS:
        raise InvalidParameter(f"invalid capability: {name}")  # matches Docker's wording
    return up


def own_bounding_caps() -> tuple[str, ...]:
    """The capabilities we hold ourselves: runc cannot grant one missing from our bounding set
    (e.g. when the daemon itself runs in a restricted container), so "all" means all of these."""
    try:
        with open("/proc/self/status") as f:
            mask = next(int(line.split()[1], 16) for line in f if line.startswith("CapBnd:"))
    except (OSError, StopIteration, ValueError):
        return ALL_CAPS
    return tuple(c for i, c in enumerate(ALL_CAPS) if mask >> i & 1)


def capabilities(inp: SpecInput) -> list[str]:
    """Docker's rule: start from the defaults (all caps if privileged), add then drop; ALL works for both."""
    if inp.privileged:
        return list(own_bounding_caps())
    adds = [normalize_cap(c) for c in inp.cap_add]
    drops = [normalize_cap(c) for c in inp.cap_drop]
    caps = list(own_bounding_caps()) if "ALL" in adds else list(DEFAULT_CAPS)
    if "ALL" in drops:
        caps = []
    caps = [c for c in caps if c not in drops]
    for c in adds:
        if c != "ALL" and c not in caps:
            caps.append(c)
    return [c for c in ALL_CAPS if c in caps]  # stable kernel order


def _security_opts(opts: list[str]) -> tuple[bool, str | None]:
    """→ (no_new_privileges, seccomp) where seccomp is None (default), "unconfined" or a file path."""
    nnp, sec = False, None
    for opt in opts:
        key, sep, val = opt.partition("=")
        if not sep:
            key, sep, val = opt.partition(":")
        if key == "no-new-privileges":
            nnp = val.lower() in ("", "true", "1")
        elif key == "seccomp":
            sec = val
        elif key in ("apparmor", "label", "systempaths"):
            continue  # no AppArmor/SELinux here; systempaths handled by the caller via masked_paths
        else:
            raise InvalidParameter(f"Invalid --security-opt: {opt!r}")
    return nnp, sec


def _group_add(rootfs: str, names: list[str]) -> list[int]:
    """--group-add values → gids: numbers as is, names looked up in the container's /etc/group."""
    out: list[int] = []
    groups = _read_db(rootfs, "/etc/group") if any(not n.isdigit() for n in names) else []
    for n in names:
        if n.isdigit():
            gid = int(n)
        else:
            row = next((r for r in groups if len(r) >= 3 and r[0] == n and r[2].isdigit()), None)
            if row is None:
                raise InvalidParameter(f"Unable to find group {n}: no matching entries in group file")
            gid = int(row[2])
        if gid not in out:
            out.append(gid)
    return out


def _rlimits(ulimits: list[Ulimit]) -> list[dict[str, Any]]:
    """Never above our own hard limit: runc can't raise it without CAP_SYS_RESOURCE."""
    out: dict[str, dict[str, Any]] = {}
    nofile_hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    nofile_cap = 1048576 if nofile_hard == resource.RLIM_INFINITY else min(nofile_hard, 1048576)
    out["RLIMIT_NOFILE"] = {"type": "RLIMIT_NOFILE", "soft": nofile_cap, "hard": nofile_cap}
    for u in ulimits:
        name = u.name.lower()
        if name not in RLIMITS:
            raise InvalidParameter(f"invalid ulimit type: {name}")
        typ = RLIMITS[name]
        cur_hard = resource.getrlimit(getattr(resource, typ))[1]
        soft, hard = u.soft, u.hard
        if soft > hard:
            raise InvalidParameter(f"ulimit soft limit must be less than or equal to hard limit: {soft} > {hard}")
        if cur_hard != resource.RLIM_INFINITY:
            hard, soft = min(hard, cur_hard), min(soft, cur_hard)
        out[typ] = {"type": typ, "soft": soft, "hard": hard}
    return list(out.values())


def _dev_mounts(shm_size: int) -> list[dict[str, Any]]:
    return [
        {"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
         "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
        {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
         "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", *([] if _ONE_ID else ["gid=5"])]},
        {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]},
        {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
         "options": ["ro", "nosuid", "noexec", "nodev"]},
        {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
         "options": ["nosuid", "noexec", "nodev", "mode=1777", f"size={shm_size}"]},
    ]


def host_devices() -> list[dict[str, Any]]:
    """Every device node under the host's /dev, as OCI `linux.devices` (for --privileged)."""
    out: list[dict[str, Any]] = []
    skip = {"/dev/pts", "/dev/shm", "/dev/mqueue", "/dev/console"}
    for dirpath, dirnames, filenames in os.walk("/dev"):
        dirnames[:] = [d for d in dirnames if os.path.join(dirpath, d) not in skip and not d.startswith(".")]
        for name in filenames:
            p = os.path.join(dirpath, name)
            if p in skip:
                continue
            try:
                st = os.lstat(p)
            except OSError:
                continue
            if not (stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode)):
                continue
            out.append({
                "path": p, "type": "c" if stat.S_ISCHR(st.st_mode) else "b",
                "major": os.major(st.st_rdev), "minor": os.minor(st.st_rdev),
                "fileMode": stat.S_IMODE(st.st_mode), "uid": st.st_uid, "gid": st.st_gid,
            })
    return out


def _user_devices(devs: list[DeviceMapping]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """`--device /dev/x[:/dev/y[:rwm]]` → (linux.devices, cgroup allow rules)."""
    nodes, rules = [], []
    for d in devs:
        src = d.path_on_host
        dst = d.path_in_container or src
        perms = d.cgroup_permissions or "rwm"
        try:
            st = os.stat(src)
        except OSError as e:
            raise InvalidParameter(f"error gathering device information while adding custom device \"{src}\": {e.strerror}") from e
        if not (stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode)):
            raise InvalidParameter(f"error gathering device information while adding custom device \"{src}\": not a device node")
        typ = "c" if stat.S_ISCHR(st.st_mode) else "b"
        major, minor = os.major(st.st_rdev), os.minor(st.st_rdev)
        nodes.append({"path": dst, "type": typ, "major": major, "minor": minor,
                      "fileMode": stat.S_IMODE(st.st_mode), "uid": 0, "gid": 0})
        rules.append({"allow": True, "type": typ, "major": major, "minor": minor, "access": perms})
    return nodes, rules


def _given(**fields: Any) -> dict[str, Any]:
    """The fields that are set (not 0, "", None or False), in order: one OCI resource block."""
    return {k: v for k, v in fields.items() if v}


def linux_resources(r: Resources) -> dict[str, Any]:
    """The OCI `linux.resources` for r (also what `runc update -r` reads)."""
    res: dict[str, Any] = {}
    # Docker: swap defaults to the same amount again (runc: int64)
    swap = r.memory_swap or (min(r.memory * 2, 2**63 - 1) if r.memory else 0)
    if mem := _given(limit=r.memory, reservation=r.memory_reservation, swap=swap,
                     disableOOMKiller=bool(r.oom_kill_disable)):
        res["memory"] = mem
    if cpu := _given(shares=r.cpu_shares, quota=r.cpu_quota, period=r.cpu_period, cpus=r.cpuset_cpus,
                     mems=r.cpuset_mems):
        res["cpu"] = cpu
    if r.pids_limit > 0:
        res["pids"] = {"limit": r.pids_limit}
    if r.blkio_weight:
        res["blockIO"] = {"weight": r.blkio_weight}
    return res


def _env(inp: SpecInput, home: str) -> list[str]:
    env = list(inp.env)
    keys = {e.partition("=")[0] for e in env}
    if "PATH" not in keys:
        env.insert(0, DEFAULT_PATH_ENV)
    if inp.hostname and "HOSTNAME" not in keys:
        env.append(f"HOSTNAME={inp.hostname}")
    if "HOME" not in keys:
        env.append(f"HOME={home}")
    if inp.tty and "TERM" not in keys:
        env.append("TERM=xterm")
    return env


def _ns(kind: str, path: str | None) -> dict[str, Any]:
    return {"type": kind, "path": path} if path else {"type": kind}


def build_spec(inp: SpecInput) -> dict[str, Any]:
    if not inp.args:
        raise InvalidParameter("no command specified")
    user = resolve_user(inp.rootfs, inp.user)
    for gid in _group_add(inp.rootfs, inp.group_add):
        if gid not in user.additional_gids:
            user.additional_gids.append(gid)
    caps = capabilities(inp)
    nnp, sec = _security_opts(inp.security_opt)
    args = list(inp.args)
    mounts = _dev_mounts(inp.shm_size)
    if inp.shm_path:
        mounts = [m for m in mounts if m["destination"] != "/dev/shm"]
        mounts.append({"destination": "/dev/shm", "type": "bind", "source": inp.shm_path,
                       "options": ["rbind", "rprivate", "nosuid", "noexec", "nodev"]})
    if inp.privileged:
        for m in mounts:
            if m["destination"] in ("/sys", "/sys/fs/cgroup"):
                m["options"] = [o for o in m["options"] if o != "ro"] + ["rw"]
    if inp.init:
        args = [INIT_PATH, "--", *args]
        mounts.append({"destination": INIT_PATH, "type": "bind", "source": inp.init_binary,
                       "options": ["bind", "ro"]})
    for dest, src in (("/etc/resolv.conf", inp.resolv_conf_path), ("/etc/hostname", inp.hostname_path),
                      ("/etc/hosts", inp.hosts_path)):
        if src:
            mounts.append({"destination": dest, "type": "bind", "source": src, "options": ["rbind", "rprivate"]})
    user_dests = {m["destination"] for m in inp.mounts}
    mounts = [m for m in mounts if m["destination"] not in user_dests] + list(inp.mounts)

    process: dict[str, Any] = {
        "terminal": inp.tty,
        "user": {"uid": user.uid, "gid": user.gid, **({"additionalGids": user.additional_gids}
                                                       if user.additional_gids and not _ONE_ID else {})},
        "args": args,
        "env": _env(inp, user.home),
        "cwd": inp.cwd or "/",
        "capabilities": {"bounding": caps, "effective": caps, "permitted": caps},
        "rlimits": _rlimits(inp.ulimits),
        "noNewPrivileges": nnp,
        "oomScoreAdj": inp.oom_score_adj,
    }

    namespaces: list[dict[str, Any]] = [{"type": "mount"}, _ns("uts", inp.uts_path)]
    if not inp.pid_host:
        namespaces.append({"type": "pid"})
    if not inp.ipc_host:
        namespaces.append(_ns("ipc", inp.ipc_path))
    if inp.netns is None:
        namespaces.append({"type": "network"})
    elif inp.netns != "host":
        namespaces.append({"type": "network", "path": inp.netns})
    if inp.netns == "host":
        namespaces = [n for n in namespaces if n["type"] != "uts"]  # Docker shares the host's UTS too

    dev_nodes, dev_rules = _user_devices(inp.devices)
    if inp.privileged:
        dev_nodes = host_devices() + dev_nodes
        cgroup_devices = [{"allow": True, "access": "rwm"}]
    else:
        cgroup_devices = [{"allow": False, "access": "rwm"}]
        for typ, major, minor, access in _ALLOWED_DEVICES:
            rule: dict[str, Any] = {"allow": True, "type": typ, "access": access}
            if major is not None:
                rule["major"] = major
            if minor is not None:
                rule["minor"] = minor
            cgroup_devices.append(rule)
        cgroup_devices += dev_rules

    resources = linux_resources(inp.resources)
    resources["devices"] = cgroup_devices
    linux: dict[str, Any] = {
        "namespaces": namespaces,
        "devices": dev_nodes,
        "resources": resources,
        "sysctl": dict(inp.sysctls),
    }
    if inp.cgroups_path:
        linux["cgroupsPath"] = inp.cgroups_path
    if not inp.privileged:
        linux["maskedPaths"] = list(MASKED_PATHS if inp.masked_paths is None else inp.masked_paths)
        linux["readonlyPaths"] = list(READONLY_PATHS if inp.readonly_paths is None else inp.readonly_paths)
        if any(m["destination"] == "/sys/fs/cgroup" and "ro" in m.get("options", []) for m in mounts):
            # runc 1.1 leaves the cgroup v1 tmpfs holding the controllers writable; Docker's is read-only
            linux["readonlyPaths"].append("/sys/fs/cgroup")
        if sec is None:
            linux["seccomp"] = seccomp.default_profile(caps)
        elif sec != "unconfined":
            # Like dockerd: the value is the profile itself (the CLI reads the file). Never open a
            # daemon-side path a remote client names.
            linux["seccomp"] = seccomp.load_profile(sec)

    spec: dict[str, Any] = {
        "ociVersion": "1.0.2-dev",
        "process": process,
        "root": {"path": inp.rootfs, "readonly": inp.readonly_rootfs},
        "mounts": mounts,
        "linux": linux,
        "annotations": dict(inp.annotations),
    }
    if inp.netns != "host":
        spec["hostname"] = inp.hostname
        if inp.domainname:
            spec["domainname"] = inp.domainname
    return spec
