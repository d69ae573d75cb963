"""What a container is made of, read back from the kernel: namespaces, process credentials, mounts,
cgroups, network plumbing and firewall rules, each with a line saying why it is there.

Backs `GET /dockyard/containers/{id}/internals` and `dockyard explain`. Everything a running container
reports comes from /proc, /sys/fs/cgroup, netlink and nft; our records only name things (which layer
dir is which image layer, which mount is which volume). A stopped container reports its configuration.
"""

from __future__ import annotations

import ipaddress
import json
from typing import TYPE_CHECKING, Any

from dockyard.network import firewall, netlink
from dockyard.runtime import cgroups, procfs

if TYPE_CHECKING:
    from dockyard.services.containers import Container, ContainerService
    from dockyard.services.images import ImageService
    from dockyard.services.networks import NetworkService
    from dockyard.services.volumes import VolumeService
    from dockyard.wire.container import HostConfig

OWN_WHY = {
    "mnt": "its own mount table: the overlay root filesystem and only the mounts listed below",
    "uts": "its own hostname and domain name",
    "ipc": "its own System V IPC objects and POSIX message queues",
    "pid": "the container's processes see only each other; its first process is PID 1",
    "net": "its own interfaces, routes and ports, reached through a veth pair on a bridge",
    "cgroup": "/sys/fs/cgroup inside shows the container's own cgroup as the root",
    "user": "its own user ids, mapped to different ids on the host",
}
SHARED_WHY = {
    "mnt": "shares the host's mounts (unusual: nothing isolates its filesystem)",
    "uts": "shares the host's hostname (--uts host, or --network host)",
    "ipc": "shares the host's IPC objects (--ipc host)",
    "pid": "sees every process of the host (--pid host)",
    "net": "uses the host's interfaces and ports directly (--network host): no veth, no NAT",
    "cgroup": "shares the host's cgroup namespace: /proc/self/cgroup shows the full host path "
              "(Docker's default on cgroup v1)",
    "user": "root in the container is root on the host (Docker's default, no userns-remap): "
            "capabilities and seccomp are what hold it back",
}
MOUNT_WHY = {
    "proc": "a procfs of the container's own PID namespace",
    "sysfs": "the kernel's device tree; read-only unless --privileged",
    "devpts": "its own pseudo-terminals (a new devpts instance)",
    "mqueue": "POSIX message queues of its IPC namespace",
    "cgroup": "the cgroup tree, read-only; the container's own cgroup is its root",
    "cgroup2": "the cgroup tree, read-only; the container's own cgroup is its root",
}
LIMIT_WHY = {
    "memory": "above this the kernel reclaims, then OOM-kills a process in the cgroup (--memory)",
    "memory_swap": "memory plus swap allowed (--memory-swap)",
    "cpu_quota_us": "CPU time (µs) the cgroup may use per period (--cpus, --cpu-quota)",
    "cpu_period_us": "the accounting period for the quota (µs)",
    "cpu_shares": "relative CPU weight when CPUs are contended (--cpu-shares; 1024 = default)",
    "cpu_weight": "relative CPU weight when CPUs are contended (v2; 100 = default)",
    "pids": "fork() fails with EAGAIN beyond this many tasks (--pids-limit)",
    "cpuset_cpus": "the CPUs its processes may run on (--cpuset-cpus)",
    "cpuset_mems": "the memory nodes it may allocate from (--cpuset-mems)",
}
SECCOMP = {"0": "disabled", "1": "strict", "2": "filter"}


class InternalsService:
    def __init__(self, containers: ContainerService, images: ImageService, networks: NetworkService | None = None,
                 volumes: VolumeService | None = None) -> None:
        from dockyard.services.object_internals import ObjectInternals

        self.containers = containers
        self.networks = networks
        self.objects = ObjectInternals(containers, images, networks, volumes)

    def explain_network(self, ref: str) -> dict[str, Any]:
        return self.objects.network(ref)

    def explain_image(self, ref: str) -> dict[str, Any]:
        return self.objects.image(ref)

    def explain_volume(self, name: str) -> dict[str, Any]:
        return self.objects.volume(name)

    def explain(self, ref: str) -> dict[str, Any]:
        """Blocking (reads /proc, netlink, runs nft): call it in a thread."""
        c = self.containers.get(ref)
        pid = c.pid if c.running and c.pid and _alive(c.pid) else 0
        out: dict[str, Any] = {"Id": c.id, "Name": c.name, "State": c.state, "Running": bool(pid),
                               "Monitor": self._monitor(c)}
        if not pid:
            out["Note"] = ("not running: no process, so no namespaces, mounts, cgroup or veth exist; "
                           "what follows is the configuration they would be made from")
            out["Rootfs"] = self._rootfs(c, None)
            out["Mounts"] = [{"Target": m.get("Destination"), "Type": m.get("Type"), "Source": m.get("Source") or "",
                              "Options": "" if m.get("RW", True) else "ro", "Why": _record_why(m)}
                             for m in c.mounts or []]
            out["Mounts"] += [{"Target": t, "Type": "tmpfs", "Source": "tmpfs", "Options": o or "",
                               "Why": "tmpfs from --tmpfs: in memory, gone when the container stops"}
                              for t, o in (c.host_config.tmpfs or {}).items()]
            out["Cgroups"] = {"Configured": _configured_limits(c.host_config)}
            out["Network"] = {"Mode": _net_mode(c.host_config),
                              "Ports": c.host_config.doc().get("PortBindings") or {}}
            return out
        out["Process"] = _process(pid)
        out["Namespaces"] = _namespaces(pid)
        mounts = procfs.visible(procfs.mounts(pid))
        root = next((m for m in mounts if m.target == "/"), None)
        out["Rootfs"] = self._rootfs(c, root)
        out["Mounts"] = self._mounts(c, [m for m in mounts if m is not root])
        out["Cgroups"] = _cgroups(pid, c.host_config)
        out["Network"] = self._network(c, pid, out["Namespaces"])
        return out

    # ------------------------------------------------------------------ pieces
    def _monitor(self, c: Container) -> dict[str, Any]:
        rt = self.containers.runtime
        conmon = rt.conmon_pid(c.id) if c.running else None
        return {"ConmonPid": conmon, "ConmonAlive": bool(conmon) and rt.conmon_alive(c.id),
                "Runtime": c.runtime, "RuntimePath": self.containers.runtimes.get(c.runtime, c.runtime),
                "Why": "conmon holds the container's stdio and log and reports its exit, so the daemon "
                       "can restart without killing containers; the runtime (runc) set up the namespaces, "
                       "mounts and cgroup from the OCI bundle and then exec'd the process"}

    def _rootfs(self, c: Container, mount: procfs.Mount | None) -> dict[str, Any]:
        """The overlay at /: which lowerdir is which image layer, plus the init and writable layers."""
        init = str(self.containers.init_layer(c.id))
        known = self.containers.lower_dirs(c)  # bottom first
        rw = self.containers.snapshots.mounts(c.id, known)[0]  # what a mount would be, when none is
        img = self.containers.images.resolve(c.image_id)
        diff_ids = (img.config.get("rootfs") or {}).get("diff_ids") or []
        made_by = [h.get("created_by", "") for h in img.config.get("history") or [] if not h.get("empty_layer")]
        opts = dict(o.partition("=")[::2] for o in mount.super_options.split(",")) if mount else {}
        lowers = opts["lowerdir"].split(":") if "lowerdir" in opts else [str(d) for d in reversed(known)]
        layers = []
        for d in lowers:  # top first, as overlay lists them
            i = next((i for i, k in enumerate(known) if str(k) == d), None)
            if d == init:
                role, why = "init layer", "files every container gets (/.dockerenv, mount points), made at create"
            elif i is not None and i < len(diff_ids):
                role = f"image layer {i + 1}/{len(diff_ids)}"
                why = (made_by[i] if len(made_by) == len(diff_ids) else "") or diff_ids[i]
            else:
                role, why = "lower", ""
            layers.append({"Dir": d, "Role": role, "DiffID": diff_ids[i] if i is not None and i < len(diff_ids)
                           else "", "Why": why})
        return {"Mounted": mount is not None, "Type": mount.fstype if mount else "overlay",
                "Lower": layers, "Upper": opts.get("upperdir", rw.option("upperdir")),
                "Work": opts.get("workdir", rw.option("workdir")),
                "Why": "read-only image layers stacked under one writable dir: files the container changes "
                       "are copied up into Upper, so the image stays shared and untouched"}

    def _mounts(self, c: Container, mounts: list[procfs.Mount]) -> list[dict[str, Any]]:
        spec = _bundle_spec(self.containers.run_dir(c.id))
        masked = set((spec.get("linux") or {}).get("maskedPaths") or [])
        readonly = set((spec.get("linux") or {}).get("readonlyPaths") or [])
        records = {m.get("Destination"): m for m in c.mounts or []}
        tmpfs = set((c.host_config.tmpfs or {}).keys())
        out = []
        for m in mounts:
            if m.target in records:
                why = _record_why(records[m.target])
            elif m.target in tmpfs:
                why = "tmpfs from --tmpfs: in memory, gone when the container stops"
            elif m.target == "/sys/fs/cgroup":
                why = "the cgroup hierarchies, read-only: the container can read its usage, not change its limits"
            elif m.target in masked:
                why = "masked: hides host kernel information (/dev/null or an empty read-only tmpfs on top)"
            elif m.target in readonly:
                why = "read-only: kernel settings the container must not change"
            elif m.target in ("/etc/hosts", "/etc/hostname", "/etc/resolv.conf"):
                why = "written by the daemon from the network settings and bind-mounted in"
            elif m.target == "/dev":
                why = "a small /dev holding only the default device nodes"
            elif m.target == "/dev/shm":
                why = "shared memory of its IPC namespace, sized by --shm-size"
            else:
                why = MOUNT_WHY.get(m.fstype, "")
            out.append({"Target": m.target, "Type": m.fstype, "Source": m.source,
                        "Options": m.options, "Why": why})
        return out

    def _network(self, c: Container, pid: int, namespaces: list[dict[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {"Mode": _net_mode(c.host_config)}
        if any(n["Type"] == "net" and n["Shared"] for n in namespaces):
            out["Why"] = SHARED_WHY["net"]
            return out
        veths = [ln for ln in netlink.links(f"/proc/{pid}/ns/net") if ln["kind"] == "veth"]
        host = netlink.host_links_by_index(ln["peer_index"] for ln in veths if ln["peer_index"])
        ifaces, ips, bridges = [], [], set()
        for ln in veths:
            peer = host.get(ln["peer_index"]) or {}
            ifaces.append({"Container": ln["name"], "Addresses": ln["addresses"], "Mac": ln["mac"],
                           "Host": peer.get("name"), "Bridge": peer.get("master"),
                           "Why": "a veth pair is a virtual cable: one end is the container's "
                                  f"{ln['name']}, the other is plugged into the bridge on the host"})
            ips += [ipaddress.ip_interface(a) for a in ln["addresses"]]
            if peer.get("master"):
                bridges.add(peer["master"])
        gateways = {n.get("Gateway") for n in (c.network_settings.get("Networks") or {}).values()} - {"", None}
        out.update(Interfaces=ifaces, Gateways=sorted(gateways))
        if self.networks is not None:
            out["Table"] = f"ip {self.networks.table}"
            out["Rules"] = _rules_for(firewall.list_rules(self.networks.table), ips, bridges)
        return out


def _alive(pid: int) -> bool:
    try:
        procfs.status(pid)
        return True
    except OSError:
        return False


def _namespaces(pid: int) -> list[dict[str, Any]]:
    ref, host = procfs.host_namespaces()
    mine = procfs.namespace_inodes(pid)
    out = []
    for ns in procfs.NAMESPACES:
        shared = mine[ns] == host[ns]
        out.append({"Type": ns, "Inode": mine[ns], "HostInode": host[ns], "HostRef": ref, "Shared": shared,
                    "Why": SHARED_WHY[ns] if shared else OWN_WHY[ns]})
    return out


def _process(pid: int) -> dict[str, Any]:
    st = procfs.status(pid)
    nspid = st.get("NSpid", str(pid)).split()
    uid, gid = st.get("Uid", "").split(), st.get("Gid", "").split()
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        cmd = [a.decode(errors="replace") for a in f.read().split(b"\0") if a]
    ppid = int(st.get("PPid", "0"))
    return {
        "HostPid": pid, "ContainerPid": int(nspid[-1]), "Command": cmd,
        "Parent": {"Pid": ppid, "Name": procfs.comm(ppid)},
        "Uid": int(uid[1]) if len(uid) > 1 else None, "Gid": int(gid[1]) if len(gid) > 1 else None,
        "Groups": [int(g) for g in st.get("Groups", "").split()],
        "Capabilities": procfs.cap_names(st.get("CapEff", "0")),
        "BoundingSet": procfs.cap_names(st.get("CapBnd", "0")),
        "NoNewPrivs": st.get("NoNewPrivs") == "1",
        "Seccomp": SECCOMP.get(st.get("Seccomp", ""), st.get("Seccomp", "unknown")),
        "Why": {"Pid": "one process, two numbers: the host's PID namespace and the container's own",
                "Capabilities": "root's powers split into pieces; a container keeps only a few (Docker's 14 "
                                "defaults, changed by --cap-add/--cap-drop)",
                "NoNewPrivs": "when set, setuid binaries and file capabilities cannot raise privileges "
                              "(--security-opt no-new-privileges)",
                "Seccomp": "filter: a BPF program refuses system calls a container has no business making "
                           "(mount, kexec, bpf, ...)"},
    }


def _cgroups(pid: int, hc: HostConfig) -> dict[str, Any]:
    paths = procfs.cgroup_paths(pid)
    v2 = cgroups.is_v2()
    path = paths.get("" if v2 else "memory") or paths.get("pids") or ""
    limits = cgroups.limits(path)
    return {"Version": 2 if v2 else 1, "Paths": paths,
            "Limits": [{"Name": k, "Value": v, "Why": LIMIT_WHY.get(k, "")} for k, v in limits.items()],
            "Configured": _configured_limits(hc),
            "Why": "a cgroup groups the container's processes so the kernel can count and cap what they "
                   "use together; the runtime wrote the limits into these files at create"}


def _configured_limits(hc: HostConfig) -> dict[str, Any]:
    return {k: v for k, v in (("Memory", hc.memory), ("MemorySwap", hc.memory_swap), ("NanoCpus", hc.nano_cpus),
                              ("CpuQuota", hc.cpu_quota), ("CpuPeriod", hc.cpu_period), ("CpuShares", hc.cpu_shares),
                              ("PidsLimit", hc.pids_limit), ("CpusetCpus", hc.cpuset_cpus),
                              ("CpusetMems", hc.cpuset_mems)) if v}


def _net_mode(hc: HostConfig) -> str:
    mode = hc.network_mode or "default"
    return "bridge" if mode == "default" else mode


def _record_why(m: dict[str, Any]) -> str:
    kind = m.get("Type")
    if kind == "volume":
        return f"volume {m.get('Name', '')}: data kept by the daemon in {m.get('Source', '')}, outlives the container"
    if kind == "bind":
        return f"bind mount of the host's {m.get('Source', '')} (-v/--mount): the same files, seen from inside"
    if kind == "tmpfs":
        return "tmpfs: in memory, gone when the container stops"
    return ""


def _bundle_spec(run_dir: Any) -> dict[str, Any]:
    try:
        data: dict[str, Any] = json.loads((run_dir / "config.json").read_text())
        return data
    except (OSError, ValueError):
        return {}


def _rules_for(rules: list[tuple[str, str]], ips: list[Any], bridges: set[str]) -> list[dict[str, str]]:
    """The rules of our nft table that act on this container's traffic, each with why."""
    addrs = {str(i.ip) for i in ips}
    nets = {str(i.network) for i in ips}
    mine = [(ch, r) for ch, r in rules
            if any(f"dnat to {a}:" in r for a in addrs) or any(n in r.split() for n in nets)
            or any(f'"{b}"' in r or f" {b} " in f" {r} " for b in bridges)]
    if any("dnat to" in r for _, r in mine):  # the DNAT rules are reached through these jumps
        mine = [(ch, r) for ch, r in rules if "jump ports" in r] + mine
    return [{"Chain": ch, "Rule": r, "Why": _rule_why(ch, r)} for ch, r in mine]


def _rule_why(chain: str, rule: str) -> str:
    if "dnat to" in rule:
        return "published port (-p): connections to this host port are rewritten to the container's address"
    if "jump ports" in rule:
        where = "from outside" if chain == "prerouting" else "from the host itself"
        return f"packets {where} addressed to a local IP go through the published-port chain"
    if "127.0.0.0/8" in rule and "masquerade" in rule:
        return "a client on 127.0.0.1 cannot be answered on the bridge: its source becomes the bridge's address"
    if "ct status dnat" in rule and "masquerade" in rule:
        return "hairpin: a container reaching a published port on its own bridge gets replies via the host"
    if "masquerade" in rule:
        return "outbound NAT: traffic leaving the bridge takes the host's address, so replies find their way back"
    if "drop" in rule:
        return "isolation: no traffic between different networks"
    return ""
