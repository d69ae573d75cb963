"""`run`/`create` flags → the Engine API's create body, as docker's CLI builds it: the daemon's
own wire structs (dockyard/wire: CreateRequest, HostConfig, ...), encoded as JSON. The structs (and
msgspec) are imported when a command builds one, not at the CLI's start."""

from __future__ import annotations

import argparse
import os
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dockyard.wire.container import (
        CreateRequest,
        DeviceMapping,
        HealthConfig,
        Mount,
        PortBinding,
        RestartPolicy,
        Ulimit,
    )

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


def parse_ports(specs: list[str]) -> tuple[JSON, dict[str, list[PortBinding] | None]]:
    """-p [ip:][hostPort:]containerPort[/proto] → (ExposedPorts, PortBindings)."""
    from dockyard.wire.container import PortBinding

    exposed: JSON = {}
    bindings: dict[str, list[PortBinding] | None] = {}
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
            bindings.setdefault(key, []).append(PortBinding(host_ip=ip, host_port=hp))  # type: ignore[union-attr]
    return exposed, bindings


def parse_mount(spec: str) -> Mount:
    """--mount type=bind,source=/a,target=/b,readonly (CSV key=value)."""
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
    return convert(m, Mount)


def parse_device(spec: str) -> DeviceMapping:
    from dockyard.wire.container import DeviceMapping

    parts = spec.split(":")
    host = parts[0]
    ctr = parts[1] if len(parts) > 1 and parts[1].startswith("/") else host
    perms = parts[-1] if len(parts) > 1 and not parts[-1].startswith("/") else "rwm"
    return DeviceMapping(path_on_host=host, path_in_container=ctr, cgroup_permissions=perms)


def parse_restart(s: str) -> RestartPolicy:
    from dockyard.wire.container import RestartPolicy

    name, _, count = s.partition(":")
    if name not in ("no", "always", "on-failure", "unless-stopped"):
        raise OptError(f"invalid restart policy '{s}'")
    return RestartPolicy(name=name, maximum_retry_count=int(count) if count else 0)


def parse_ulimit(s: str) -> Ulimit:
    from dockyard.wire.container import Ulimit

    name, eq, val = s.partition("=")
    if not eq:
        raise OptError(f"invalid ulimit argument: {s}")
    soft, _, hard = val.partition(":")
    return Ulimit(name=name, soft=_go_int(soft), hard=_go_int(hard or soft))


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


def build_create_body(a: argparse.Namespace) -> tuple[CreateRequest, str | None]:
    """Returns (create request, container name); send `encode(request)`."""
    from dockyard.wire.container import (
        CreateRequest,
        EndpointIPAMConfig,
        EndpointSettings,
        HostConfig,
        LogConfig,
        NetworkingConfig,
    )

    req = CreateRequest(
        image=a.image, tty=a.tty, open_stdin=a.interactive, stdin_once=a.interactive, attach_stdin=a.interactive,
        attach_stdout=True, attach_stderr=True, env=parse_env(a.env, a.env_file),
        labels=parse_labels(a.label, a.label_file),
    )
    if getattr(a, "detach", False):
        req.attach_stdout = req.attach_stderr = req.attach_stdin = req.stdin_once = False
    elif a.attach:
        want = {x.lower() for x in a.attach}
        req.attach_stdin, req.attach_stdout, req.attach_stderr = "stdin" in want, "stdout" in want, "stderr" in want
    if a.command:
        req.cmd = a.command
    if a.entrypoint is not None:
        req.entrypoint = [a.entrypoint] if a.entrypoint else [""]
    for attr, val in (("working_dir", a.workdir), ("user", a.user), ("hostname", a.hostname),
                      ("domainname", a.domainname), ("stop_signal", a.stop_signal),
                      ("stop_timeout", a.stop_timeout), ("mac_address", a.mac_address)):
        if val is not None:
            setattr(req, attr, val)
    exposed, bindings = parse_ports(a.publish)
    for e in a.expose:
        proto = "tcp"
        if "/" in e:
            e, proto = e.split("/", 1)
        for p in _port_range(e):
            exposed[f"{p}/{proto}"] = {}
    if exposed:
        req.exposed_ports = exposed
    hc = HostConfig(
        binds=[], port_bindings=bindings, publish_all_ports=a.publish_all, privileged=a.privileged,
        readonly_rootfs=a.read_only, cap_add=a.cap_add or None, cap_drop=a.cap_drop or None,
        security_opt=a.security_opt or None, dns=a.dns, dns_search=a.dns_search, dns_options=a.dns_option,
        extra_hosts=a.add_host or None, volumes_from=a.volumes_from or None, links=a.link or None,
        group_add=a.group_add or None, devices=[parse_device(d) for d in a.device],
        ulimits=[parse_ulimit(u) for u in a.ulimit] or None, auto_remove=bool(getattr(a, "rm", False)),
        init=True if a.init else None,
    )
    volumes: JSON = {}
    for v in a.volume:
        parts = v.split(":")
        if len(parts) == 1 or (len(parts) == 2 and parts[1] in ("ro", "rw")):
            volumes[parts[0]] = {}  # anonymous volume
        else:
            hc.binds.append(v)  # type: ignore[union-attr]
    if volumes:
        req.volumes = volumes
    if a.mount:
        hc.mounts = [parse_mount(m) for m in a.mount]
    if a.tmpfs:
        hc.tmpfs = {t.split(":", 1)[0]: (t.split(":", 1)[1] if ":" in t else "") for t in a.tmpfs}
    for attr, val in (("runtime", a.runtime), ("cpuset_cpus", a.cpuset_cpus), ("cpuset_mems", a.cpuset_mems),
                      ("cpu_shares", a.cpu_shares), ("pids_limit", a.pids_limit), ("ipc_mode", a.ipc),
                      ("pid_mode", a.pid), ("uts_mode", a.uts), ("userns_mode", a.userns),
                      ("cgroupns_mode", a.cgroupns), ("cgroup_parent", a.cgroup_parent),
                      ("isolation", a.isolation)):
        if val is not None:
            setattr(hc, attr, val)
    if a.oom_kill_disable:
        hc.oom_kill_disable = True
    if a.memory:
        hc.memory = ram_in_bytes(a.memory)
    if a.memory_swap:
        hc.memory_swap = -1 if a.memory_swap == "-1" else ram_in_bytes(a.memory_swap)
    if a.memory_reservation:
        hc.memory_reservation = ram_in_bytes(a.memory_reservation)
    if a.shm_size:
        hc.shm_size = ram_in_bytes(a.shm_size)
    if a.cpus:
        hc.nano_cpus = int(parse_cpus(a.cpus) * 1e9)
    hc.restart_policy = parse_restart(a.restart or "no")  # the docker CLI always sends one
    if a.sysctl:
        hc.sysctls = dict(s.split("=", 1) for s in a.sysctl)
    if a.log_driver or a.log_opt:
        hc.log_config = LogConfig(type=a.log_driver or "", config=dict(o.split("=", 1) for o in a.log_opt))
    if getattr(a, "rm", False) and a.restart and a.restart != "no":
        raise OptError("Conflicting options: --restart and --rm")
    req.healthcheck = _healthcheck(a)
    if a.network:
        hc.network_mode = a.network
    req.host_config = hc
    if a.network and (a.network_alias or a.ip or a.ip6):
        ep = EndpointSettings(aliases=a.network_alias or None)
        if a.ip or a.ip6:
            ep.ipam_config = EndpointIPAMConfig(ipv4_address=a.ip or "", ipv6_address=a.ip6 or "")
        req.networking_config = NetworkingConfig(endpoints_config={a.network: ep})
    return req, a.name


def encode(req: CreateRequest) -> bytes:
    """The create body: Go's field names; a HostConfig's unset fields left out (the daemon reads
    them as Go's zero values)."""
    from dockyard.wire.container import ENCODER

    return ENCODER(req)


def _healthcheck(a: argparse.Namespace) -> HealthConfig | None:
    from dockyard.wire.container import HealthConfig

    if a.no_healthcheck:
        return HealthConfig(test=["NONE"])
    h = HealthConfig()
    if a.health_cmd:
        h.test = ["CMD-SHELL", a.health_cmd]
    for attr, val in (("interval", a.health_interval), ("timeout", a.health_timeout),
                      ("start_period", a.health_start_period), ("start_interval", a.health_start_interval)):
        if val:
            setattr(h, attr, go_duration(val))
    if a.health_retries is not None:
        h.retries = a.health_retries
    return h if h != HealthConfig() else None
