"""`run`/`create` flags → the Engine API's create body, as docker's CLI builds it: a plain JSON
document with Go's field names, laid out as the daemon's wire structs (dockyard/wire/container.py:
CreateRequest, HostConfig, ...) encode one, without importing them: msgspec, the structs and what
they import are ~12 ms of every `run`'s start-up (issue 20). tests/unit/test_cli_create_body.py
checks the layout against the structs (a field added there and not here fails it)."""

from __future__ import annotations

import argparse
import os
import re

TYPE_CHECKING = False  # typing's, without importing typing (~3 ms of every `run`'s start-up)
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    JSON = dict[str, Any]


class OptError(Exception):
    pass


def checked(parse: Callable[[str], object]) -> Callable[[str], str]:
    """An argparse type that validates a flag's value with `parse` and keeps the string: a bad value is
    a flag error (docker: `invalid argument "abc" for "-m, --memory" flag: invalid size: 'abc'`)."""

    def check(value: str) -> str:
        try:
            parse(value)
        except OptError as e:
            raise argparse.ArgumentTypeError(str(e)) from None
        return value

    check.__name__ = parse.__name__
    return check


def parse_cpus(s: str) -> float:
    try:
        return float(s)
    except ValueError:
        raise OptError(f"failed to parse {s} as a rational number") from None


def _go_int(s: str) -> int:
    try:
        return int(s)
    except ValueError:
        raise OptError(f'strconv.ParseInt: parsing "{s}": invalid syntax') from None


def add_container_flags(p: argparse.ArgumentParser) -> None:
    a = p.add_argument
    a("-i", "--interactive", action="store_true")
    a("-t", "--tty", action="store_true")
    a("--name")
    a("-e", "--env", action="append", default=[])
    a("--env-file", action="append", default=[])
    a("-w", "--workdir")
    a("-u", "--user")
    a("--entrypoint")
    a("-h", "--hostname")
    a("--domainname")
    a("-l", "--label", action="append", default=[])
    a("--label-file", action="append", default=[])
    a("--init", action="store_true")
    a("--runtime")
    a("--stop-signal")
    a("--stop-timeout", type=int)
    a("-p", "--publish", action="append", default=[])
    a("-P", "--publish-all", action="store_true")
    a("--expose", action="append", default=[])
    a("--network", "--net")
    a("--network-alias", "--net-alias", action="append", default=[])
    a("--ip")
    a("--ip6")
    a("--mac-address")
    a("--dns", action="append", default=[])
    a("--dns-search", action="append", default=[])
    a("--dns-option", action="append", default=[])
    a("--add-host", action="append", default=[])
    a("-v", "--volume", action="append", default=[])
    a("--volumes-from", action="append", default=[])
    a("--mount", action="append", default=[], type=checked(parse_mount))
    a("--tmpfs", action="append", default=[])
    a("--read-only", action="store_true")
    a("--cap-add", action="append", default=[])
    a("--cap-drop", action="append", default=[])
    a("--privileged", action="store_true")
    a("--security-opt", action="append", default=[])
    a("--restart")
    a("-m", "--memory", type=checked(ram_in_bytes))
    a("--memory-swap", type=checked(lambda v: v == "-1" or ram_in_bytes(v)))
    a("--memory-reservation", type=checked(ram_in_bytes))
    a("--cpus", type=checked(parse_cpus))
    a("-c", "--cpu-shares", type=int)
    a("--cpuset-cpus")
    a("--cpuset-mems")
    a("--pids-limit", type=int)
    a("--ulimit", action="append", default=[], type=checked(parse_ulimit))
    a("--shm-size", type=checked(ram_in_bytes))
    a("--health-cmd")
    a("--health-interval")
    a("--health-timeout")
    a("--health-retries", type=int)
    a("--health-start-period")
    a("--health-start-interval")
    a("--no-healthcheck", action="store_true")
    a("--platform")
    a("--pod", help="Run the container in an existing pod (Dockyard's pods, podman's flag)")
    a("--pull", default="missing", choices=["always", "missing", "never"])
    a("--log-driver")
    a("--log-opt", action="append", default=[])
    a("--device", action="append", default=[])
    a("--group-add", action="append", default=[])
    a("--ipc")
    a("--pid")
    a("--uts")
    a("--userns")
    a("--cgroupns")
    a("--cgroup-parent")
    a("--sysctl", action="append", default=[])
    a("--oom-kill-disable", action="store_true")
    a("--isolation")
    a("--link", action="append", default=[])
    a("--attach", "-a", action="append", default=[])
    a("-q", "--quiet", action="store_true")
    a("image")
    a("command", nargs=argparse.REMAINDER)


_UNIT = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}


def ram_in_bytes(s: str) -> int:
    """go-units RAMInBytes: 512m, 1g, 1.5GB, 1024 (binary multiples)."""
    m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([kmgtpKMGTP]?)(?:[iI]?[bB])?", s.strip())
    if not m:
        raise OptError(f"invalid size: '{s}'")
    return int(float(m.group(1)) * _UNIT[m.group(2).lower()])


def go_duration(s: str) -> int:
    """A Go duration (1m30s, 500ms, 10s) in nanoseconds."""
    units = {"ns": 1, "us": 1000, "µs": 1000, "ms": 10**6, "s": 10**9, "m": 60 * 10**9, "h": 3600 * 10**9}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)", s)
    if not parts or "".join(n + u for n, u in parts) != s:
        raise OptError(f'time: invalid duration "{s}"')
    return int(sum(float(n) * units[u] for n, u in parts))


def parse_env_file(path: str) -> list[str]:
    out = []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            if "=" in line:
                out.append(line)
            elif line in os.environ:
                out.append(f"{line}={os.environ[line]}")
    return out


def parse_env(values: list[str], files: list[str]) -> list[str]:
    env: list[str] = []
    for f in files:
        env += parse_env_file(f)
    for v in values:
        if "=" in v:
            env.append(v)
        elif v in os.environ:
            env.append(f"{v}={os.environ[v]}")
    return env


def _port_range(s: str) -> list[str]:
    if "-" in s:
        lo, hi = s.split("-", 1)
        return [str(p) for p in range(int(lo), int(hi) + 1)]
    return [s]


def _valid_port_range(s: str) -> bool:
    """docker's nat.ParsePortRange: a port, or lo-hi with lo <= hi, each 0..65535."""
    lo, _, hi = s.partition("-")
    if not lo.isdigit() or (hi and not hi.isdigit()):
        return False
    return int(lo) <= 65535 and (not hi or int(lo) <= int(hi) <= 65535)


def parse_ports(specs: list[str]) -> tuple[JSON, dict[str, list[JSON]]]:
    """-p [ip:][hostPort:]containerPort[/proto] → (ExposedPorts, PortBindings)."""
    exposed: JSON = {}
    bindings: dict[str, list[JSON]] = {}
    for spec in specs:
        proto = "tcp"
        if "/" in spec:
            spec, proto = spec.rsplit("/", 1)
        ip, host = "", ""
        if spec.startswith("["):
            end = spec.index("]")
            ip, spec = spec[1:end], spec[end + 2 :]
        parts = spec.split(":") if not ip else [""] + spec.split(":")
        if len(parts) == 1:
            ctr = parts[0]
        elif len(parts) == 2:
            host, ctr = parts
        elif len(parts) == 3:
            ip, host, ctr = (ip or parts[0]), parts[1], parts[2]
        else:
            raise OptError(f"invalid port format: '{spec}'")
        if ip:
            import ipaddress

            try:
                ipaddress.ip_address(ip)
            except ValueError:
                raise OptError(f"invalid IP address: {ip}") from None
        if not _valid_port_range(ctr):
            raise OptError(f"invalid containerPort: {ctr}")
        if host and not _valid_port_range(host):
            raise OptError(f"invalid hostPort: {host}")
        ctr_ports = _port_range(ctr)
        host_ports = _port_range(host) if host else [""] * len(ctr_ports)
        if len(host_ports) != len(ctr_ports):
            if len(host_ports) > 1:
                raise OptError("invalid ranges specified for container and host Ports")
            host_ports = [host] * len(ctr_ports)
        for cp, hp in zip(ctr_ports, host_ports, strict=True):
            if not cp.isdigit():
                raise OptError(f"invalid containerPort: {cp}")
            key = f"{cp}/{proto}"
            exposed[key] = {}
            bindings.setdefault(key, []).append({"HostIp": ip, "HostPort": hp})
    return exposed, bindings


def parse_mount(spec: str) -> JSON:
    """--mount type=bind,source=/a,target=/b,readonly (CSV key=value): the Mount as the daemon's struct
    checks and encodes it (msgspec is imported for it, only when a command has a --mount)."""
    from dockyard.wire.container import Mount, convert

    m: JSON = {"Type": "volume"}
    for field in spec.split(","):
        k, _, v = field.partition("=")
        k = k.strip().lower()
        if k == "type":
            m["Type"] = v
        elif k in ("source", "src"):
            m["Source"] = v
        elif k in ("target", "destination", "dst"):
            m["Target"] = v
        elif k in ("readonly", "ro"):
            m["ReadOnly"] = v.lower() not in ("0", "false") if v else True
        elif k == "bind-propagation":
            m.setdefault("BindOptions", {})["Propagation"] = v
        elif k == "volume-driver":
            m.setdefault("VolumeOptions", {}).setdefault("DriverConfig", {})["Name"] = v
        elif k == "volume-nocopy":
            m.setdefault("VolumeOptions", {})["NoCopy"] = v.lower() not in ("0", "false") if v else True
        elif k == "tmpfs-size":
            m.setdefault("TmpfsOptions", {})["SizeBytes"] = ram_in_bytes(v)
        elif k == "tmpfs-mode":
            m.setdefault("TmpfsOptions", {})["Mode"] = int(v, 8)
        elif k == "consistency":
            m["Consistency"] = v
        else:
            raise OptError(f"invalid field '{k}' must be a key=value pair")
    if "Target" not in m:
        raise OptError("target is required")
    return convert(m, Mount).doc()


def parse_device(spec: str) -> JSON:
    parts = spec.split(":")
    host = parts[0]
    ctr = parts[1] if len(parts) > 1 and parts[1].startswith("/") else host
    perms = parts[-1] if len(parts) > 1 and not parts[-1].startswith("/") else "rwm"
    return {"PathOnHost": host, "PathInContainer": ctr, "CgroupPermissions": perms}


def parse_restart(s: str) -> JSON:
    name, _, count = s.partition(":")
    if name not in ("no", "always", "on-failure", "unless-stopped"):
        raise OptError(f"invalid restart policy '{s}'")
    return {"Name": name, "MaximumRetryCount": int(count) if count else 0}


def parse_ulimit(s: str) -> JSON:
    name, eq, val = s.partition("=")
    if not eq:
        raise OptError(f"invalid ulimit argument: {s}")
    soft, _, hard = val.partition(":")
    return {"Name": name, "Soft": _go_int(soft), "Hard": _go_int(hard or soft)}


def parse_labels(values: list[str], files: list[str]) -> JSON:
    labels: JSON = {}
    for f in files:
        for line in parse_env_file(f):
            k, _, v = line.partition("=")
            labels[k] = v
    for v in values:
        k, _, val = v.partition("=")
        labels[k] = val
    return labels


# The wire structs' fields in their order, with their defaults (tests/unit/test_cli_create_body.py
# compares them with the structs'). A Config is encoded whole; a HostConfig, a HealthConfig and a
# network endpoint leave out the fields at their default (the daemon reads them as Go's zero values).
CONFIG: tuple[tuple[str, Any], ...] = (
    ("Hostname", ""), ("Domainname", ""), ("User", ""), ("AttachStdin", False), ("AttachStdout", False),
    ("AttachStderr", False), ("ExposedPorts", None), ("Tty", False), ("OpenStdin", False), ("StdinOnce", False),
    ("Env", None), ("Cmd", None), ("Healthcheck", None), ("ArgsEscaped", False), ("Image", ""), ("Volumes", None),
    ("WorkingDir", ""), ("Entrypoint", None), ("NetworkDisabled", False), ("MacAddress", ""), ("OnBuild", None),
    ("Labels", None), ("StopSignal", ""), ("StopTimeout", None), ("Shell", None), ("HostConfig", None),
    ("NetworkingConfig", None))
HOST_CONFIG: tuple[tuple[str, Any], ...] = (
    ("CpuShares", 0), ("Memory", 0), ("NanoCpus", 0), ("CgroupParent", ""), ("BlkioWeight", 0),
    ("BlkioWeightDevice", None), ("BlkioDeviceReadBps", None), ("BlkioDeviceWriteBps", None),
    ("BlkioDeviceReadIOps", None), ("BlkioDeviceWriteIOps", None), ("CpuPeriod", 0), ("CpuQuota", 0),
    ("CpuRealtimePeriod", 0), ("CpuRealtimeRuntime", 0), ("CpusetCpus", ""), ("CpusetMems", ""), ("Devices", None),
    ("DeviceCgroupRules", None), ("DeviceRequests", None), ("KernelMemory", 0), ("KernelMemoryTCP", 0),
    ("MemoryReservation", 0), ("MemorySwap", 0), ("MemorySwappiness", None), ("OomKillDisable", None),
    ("PidsLimit", None), ("Ulimits", None), ("CpuCount", 0), ("CpuPercent", 0), ("IOMaximumIOps", 0),
    ("IOMaximumBandwidth", 0), ("Init", None), ("Binds", None), ("ContainerIDFile", ""), ("LogConfig", None),
    ("NetworkMode", ""), ("PortBindings", None), ("RestartPolicy", None), ("AutoRemove", False),
    ("VolumeDriver", ""), ("VolumesFrom", None), ("ConsoleSize", None), ("Annotations", None), ("CapAdd", None),
    ("CapDrop", None), ("CgroupnsMode", ""), ("Dns", None), ("DnsOptions", None), ("DnsSearch", None),
    ("ExtraHosts", None), ("GroupAdd", None), ("IpcMode", ""), ("Cgroup", ""), ("Links", None), ("OomScoreAdj", 0),
    ("PidMode", ""), ("Privileged", False), ("PublishAllPorts", False), ("ReadonlyRootfs", False),
    ("SecurityOpt", None), ("StorageOpt", None), ("Tmpfs", None), ("UTSMode", ""), ("UsernsMode", ""),
    ("ShmSize", 0), ("Sysctls", None), ("Runtime", ""), ("Isolation", ""), ("Mounts", None), ("MaskedPaths", None),
    ("ReadonlyPaths", None))
HEALTH_CONFIG: tuple[tuple[str, Any], ...] = (
    ("Test", None), ("Interval", 0), ("Timeout", 0), ("StartPeriod", 0), ("StartInterval", 0), ("Retries", 0))
ENDPOINT: tuple[tuple[str, Any], ...] = (("IPAMConfig", None), ("Links", None), ("Aliases", None))
ENDPOINT_IPAM: tuple[tuple[str, Any], ...] = (("IPv4Address", ""), ("IPv6Address", ""), ("LinkLocalIPs", None))


def _set_only(fields: tuple[tuple[str, Any], ...], values: JSON) -> JSON:
    """`values` in the struct's field order, those at their default left out (msgspec's omit_defaults)."""
    return {k: values[k] for k, default in fields if k in values and values[k] != default}


def build_create_body(a: argparse.Namespace) -> tuple[JSON, str | None]:
    """Returns (create body, container name); send `encode(body)`."""
    req: JSON = dict(CONFIG)
    req.update(Image=a.image, Tty=a.tty, OpenStdin=a.interactive, StdinOnce=a.interactive,
               AttachStdin=a.interactive, AttachStdout=True, AttachStderr=True, Env=parse_env(a.env, a.env_file),
               Labels=parse_labels(a.label, a.label_file))
    if getattr(a, "detach", False):
        req["AttachStdout"] = req["AttachStderr"] = req["AttachStdin"] = req["StdinOnce"] = False
    elif a.attach:
        want = {x.lower() for x in a.attach}
        req["AttachStdin"], req["AttachStdout"], req["AttachStderr"] = "stdin" in want, "stdout" in want, "stderr" in want
    if a.command:
        req["Cmd"] = a.command
    if a.entrypoint is not None:
        req["Entrypoint"] = [a.entrypoint] if a.entrypoint else [""]
    for key, val in (("WorkingDir", a.workdir), ("User", a.user), ("Hostname", a.hostname),
                     ("Domainname", a.domainname), ("StopSignal", a.stop_signal),
                     ("StopTimeout", a.stop_timeout), ("MacAddress", a.mac_address)):
        if val is not None:
            req[key] = val
    exposed, bindings = parse_ports(a.publish)
    for e in a.expose:
        proto = "tcp"
        if "/" in e:
            e, proto = e.split("/", 1)
        for p in _port_range(e):
            exposed[f"{p}/{proto}"] = {}
    if exposed:
        req["ExposedPorts"] = exposed
    binds: list[str] = []
    hc: JSON = {
        "Binds": binds, "PortBindings": bindings, "PublishAllPorts": a.publish_all, "Privileged": a.privileged,
        "ReadonlyRootfs": a.read_only, "CapAdd": a.cap_add or None, "CapDrop": a.cap_drop or None,
        "SecurityOpt": a.security_opt or None, "Dns": a.dns, "DnsSearch": a.dns_search, "DnsOptions": a.dns_option,
        "ExtraHosts": a.add_host or None, "VolumesFrom": a.volumes_from or None, "Links": a.link or None,
        "GroupAdd": a.group_add or None, "Devices": [parse_device(d) for d in a.device],
        "Ulimits": [parse_ulimit(u) for u in a.ulimit] or None, "AutoRemove": bool(getattr(a, "rm", False)),
        "Init": True if a.init else None,
    }
    volumes: JSON = {}
    for v in a.volume:
        parts = v.split(":")
        if len(parts) == 1 or (len(parts) == 2 and parts[1] in ("ro", "rw")):
            volumes[parts[0]] = {}  # anonymous volume
        else:
            binds.append(v)
    if volumes:
        req["Volumes"] = volumes
    if a.mount:
        hc["Mounts"] = [parse_mount(m) for m in a.mount]
    if a.tmpfs:
        hc["Tmpfs"] = {t.split(":", 1)[0]: (t.split(":", 1)[1] if ":" in t else "") for t in a.tmpfs}
    for key, val in (("Runtime", a.runtime), ("CpusetCpus", a.cpuset_cpus), ("CpusetMems", a.cpuset_mems),
                     ("CpuShares", a.cpu_shares), ("PidsLimit", a.pids_limit), ("IpcMode", a.ipc),
                     ("PidMode", a.pid), ("UTSMode", a.uts), ("UsernsMode", a.userns),
                     ("CgroupnsMode", a.cgroupns), ("CgroupParent", a.cgroup_parent),
                     ("Isolation", a.isolation)):
        if val is not None:
            hc[key] = val
    if a.oom_kill_disable:
        hc["OomKillDisable"] = True
    if a.memory:
        hc["Memory"] = ram_in_bytes(a.memory)
    if a.memory_swap:
        hc["MemorySwap"] = -1 if a.memory_swap == "-1" else ram_in_bytes(a.memory_swap)
    if a.memory_reservation:
        hc["MemoryReservation"] = ram_in_bytes(a.memory_reservation)
    if a.shm_size:
        hc["ShmSize"] = ram_in_bytes(a.shm_size)
    if a.cpus:
        hc["NanoCpus"] = int(parse_cpus(a.cpus) * 1e9)
    hc["RestartPolicy"] = parse_restart(a.restart or "no")  # the docker CLI always sends one
    if a.sysctl:
        hc["Sysctls"] = dict(s.split("=", 1) for s in a.sysctl)
    if a.log_driver or a.log_opt:
        hc["LogConfig"] = {"Type": a.log_driver or "", "Config": dict(o.split("=", 1) for o in a.log_opt)}
    if getattr(a, "rm", False) and a.restart and a.restart != "no":
        raise OptError("Conflicting options: --restart and --rm")
    req["Healthcheck"] = _healthcheck(a)
    if a.network:
        hc["NetworkMode"] = a.network
    req["HostConfig"] = _set_only(HOST_CONFIG, hc)
    if a.network and (a.network_alias or a.ip or a.ip6):
        ep: JSON = {"Aliases": a.network_alias or None}
        if a.ip or a.ip6:
            ep["IPAMConfig"] = _set_only(ENDPOINT_IPAM, {"IPv4Address": a.ip or "", "IPv6Address": a.ip6 or ""})
        req["NetworkingConfig"] = {"EndpointsConfig": {a.network: _set_only(ENDPOINT, ep)}}
    return req, a.name


def encode(body: JSON) -> bytes:
    """The create body as msgspec encodes the structs: compact, UTF-8 (json's C encoder: msgspec and
    the structs are not imported for it). Bytes of an argument that are not UTF-8 (Python keeps them as
    lone surrogates) become U+FFFD, as Go's encoder makes them in docker's body."""
    import json

    text = json.dumps(body, ensure_ascii=False, separators=(",", ":"))
    try:
        return text.encode()
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace").encode()


def _healthcheck(a: argparse.Namespace) -> JSON | None:
    if a.no_healthcheck:
        return {"Test": ["NONE"]}
    h: JSON = {}
    if a.health_cmd:
        h["Test"] = ["CMD-SHELL", a.health_cmd]
    for key, val in (("Interval", a.health_interval), ("Timeout", a.health_timeout),
                     ("StartPeriod", a.health_start_period), ("StartInterval", a.health_start_interval)):
        if val:
            h[key] = go_duration(val)
    if a.health_retries is not None:
        h["Retries"] = a.health_retries
    return _set_only(HEALTH_CONFIG, h) or None
