"""Pure helpers for containers: merging the image config into a create request, Docker's shapes."""

from __future__ import annotations

import os
import re
from typing import TYPE_CHECKING, Any

from dockyard.errors import InvalidParameter

if TYPE_CHECKING:
    from dockyard.wire.container import Config, CreateRequest, HostConfig, LogConfig, PortBinding, Resources

MIN_MEMORY = 6 * 1024 * 1024


def _env_key(entry: str) -> str:
    return entry.split("=", 1)[0]


def merge_env(image_env: list[str] | None, env: list[str] | None) -> list[str]:
    """Image env first, overridden key by key by the request's env (Docker's order)."""
    out: dict[str, str] = {}
    for entry in (image_env or []) + (env or []):
        out[_env_key(entry)] = entry
    return list(out.values())


def merge_config(req: CreateRequest, image_config: dict[str, Any]) -> Config:
    """The container's Config: the request's fields over the image's defaults."""
    from dockyard.wire.container import Config, HealthConfig, convert

    img = image_config.get("config") or image_config.get("Config") or {}
    cfg = Config(**{f: getattr(req, f) for f in Config.__struct_fields__})
    # the image's and the request's only, as dockerd keeps it (the runtime spec adds a default PATH)
    cfg.env = merge_env(img.get("Env"), cfg.env) or None
    # An explicit entrypoint drops the image's Cmd too (Docker's rule).
    if req.entrypoint is not None:
        if cfg.entrypoint in ([""], []):
            cfg.entrypoint = None
    else:
        cfg.entrypoint = img.get("Entrypoint")
        if cfg.cmd is None:
            cfg.cmd = img.get("Cmd")
    cfg.working_dir = cfg.working_dir or img.get("WorkingDir") or ""
    cfg.user = cfg.user or img.get("User") or ""
    cfg.stop_signal = cfg.stop_signal or img.get("StopSignal") or ""
    if cfg.healthcheck is None and img.get("Healthcheck"):
        cfg.healthcheck = convert(img["Healthcheck"], HealthConfig)
    cfg.labels = {**(img.get("Labels") or {}), **(cfg.labels or {})}
    cfg.exposed_ports = {**(img.get("ExposedPorts") or {}), **(cfg.exposed_ports or {})} or None
    cfg.volumes = {**(img.get("Volumes") or {}), **(cfg.volumes or {})} or None
    if cfg.on_build is None and img.get("OnBuild"):
        cfg.on_build = list(img["OnBuild"])
    wd = req.working_dir
    if wd and not wd.startswith("/"):  # dockerd's verifyContainerSettings: refused before anything is made
        raise InvalidParameter(f"the working directory '{wd}' is invalid, it needs to be an absolute path")
    if not cfg.command():
        raise InvalidParameter("no command specified")
    return cfg


INT64_MAX = 2**63 - 1  # every number in a HostConfig is a Go int64 to the docker CLI decoding it
_RESTART_NAMES = {"", "no", "always", "on-failure", "unless-stopped"}


def _port_ok(s: str) -> bool:
    lo, _, hi = s.partition("-")
    return lo.isdigit() and int(lo) <= 65535 and (not hi or (hi.isdigit() and int(lo) <= int(hi) <= 65535))


def _check_port_bindings(bindings: dict[str, list[PortBinding] | None]) -> None:
    """What dockerd refuses at create (so nothing is made), not at start."""
    import ipaddress

    for key, binds in bindings.items():
        port = key.partition("/")[0]
        if not _port_ok(port):
            raise InvalidParameter(f'invalid port specification: "{port}"')
        for b in binds or []:
            host_port = b.host_port
            if host_port and not _port_ok(host_port):
                raise InvalidParameter(f'invalid port specification: "{host_port}"')
            ip = b.host_ip
            try:
                if ip:
                    ipaddress.ip_address(ip.strip("[]"))
            except ValueError:
                raise InvalidParameter(f"invalid IP address: {ip}") from None


# HostConfig fields that need a cgroup of the container's own, with the docker CLI flag that sets each.
LIMIT_FLAGS = {
    "Memory": "--memory", "MemorySwap": "--memory-swap", "MemoryReservation": "--memory-reservation",
    "NanoCpus": "--cpus", "CpuShares": "--cpu-shares", "CpuPeriod": "--cpu-period", "CpuQuota": "--cpu-quota",
    "CpusetCpus": "--cpuset-cpus", "CpusetMems": "--cpuset-mems", "PidsLimit": "--pids-limit",
    "BlkioWeight": "--blkio-weight", "KernelMemory": "--kernel-memory", "OomKillDisable": "--oom-kill-disable",
    "CpuRealtimePeriod": "--cpu-rt-period", "CpuRealtimeRuntime": "--cpu-rt-runtime",
    "BlkioWeightDevice": "--blkio-weight-device", "BlkioDeviceReadBps": "--device-read-bps",
    "BlkioDeviceWriteBps": "--device-write-bps", "BlkioDeviceReadIOps": "--device-read-iops",
    "BlkioDeviceWriteIOps": "--device-write-iops", "DeviceCgroupRules": "--device-cgroup-rule",
    "CgroupParent": "--cgroup-parent",
}


# The cgroup v2 controller each of those needs (None: none a rootless daemon can have: device rules are
# eBPF programs, a cgroup parent is outside the delegated subtree).
LIMIT_CONTROLLER: dict[str, str | None] = {
    "Memory": "memory", "MemorySwap": "memory", "MemoryReservation": "memory", "KernelMemory": "memory",
    "OomKillDisable": "memory", "NanoCpus": "cpu", "CpuShares": "cpu", "CpuPeriod": "cpu", "CpuQuota": "cpu",
    "CpuRealtimePeriod": "cpu", "CpuRealtimeRuntime": "cpu", "CpusetCpus": "cpuset", "CpusetMems": "cpuset",
    "PidsLimit": "pids", "BlkioWeight": "io", "BlkioWeightDevice": "io", "BlkioDeviceReadBps": "io",
    "BlkioDeviceWriteBps": "io", "BlkioDeviceReadIOps": "io", "BlkioDeviceWriteIOps": "io",
    "DeviceCgroupRules": None, "CgroupParent": None,
}


def refuse_limits(hc: Resources | None, reason: str, controllers: frozenset[str] = frozenset()) -> None:
    """Rootless: a limit whose cgroup controller is not delegated (all of them without a delegated
    cgroup v2) is refused, never silently dropped."""
    doc = hc.doc() if hc is not None else {}
    asked = [flag for key, flag in LIMIT_FLAGS.items() if doc.get(key) not in (None, 0, -1, "", [], False)
             and LIMIT_CONTROLLER[key] not in controllers]
    if asked:
        raise InvalidParameter(f"rootless mode cannot apply {', '.join(asked)}: {reason}")


def validate_host_config(given: HostConfig | None, log_plugin: str | None = None) -> HostConfig:
    """Check the HostConfig fields we act on; fill Docker's defaults (on a copy)."""
    import msgspec

    from dockyard.wire.container import HostConfig, RestartPolicy

    hc = msgspec.structs.replace(given) if given is not None else HostConfig()
    rp = hc.restart_policy or RestartPolicy()
    name = rp.name
    if name not in _RESTART_NAMES:
        raise InvalidParameter(f"invalid restart policy: unknown policy '{name}'; use one of 'no', 'always', 'on-failure', or 'unless-stopped'")
    if name != "on-failure" and rp.maximum_retry_count:
        raise InvalidParameter("invalid restart policy: maximum retry count can only be used with 'on-failure'")
    if rp.maximum_retry_count < 0:
        raise InvalidParameter("invalid restart policy: maximum retry count cannot be negative")
    if name and name != "no" and hc.auto_remove:
        raise InvalidParameter("can't create 'AutoRemove' container with restart policy")
    hc.restart_policy = RestartPolicy(name=name, maximum_retry_count=rp.maximum_retry_count)
    mem = hc.memory
    if mem and mem < MIN_MEMORY:
        raise InvalidParameter("Minimum memory limit allowed is 6MB")
    swap = hc.memory_swap
    if swap > 0 and mem and swap < mem:
        raise InvalidParameter("Minimum memoryswap limit should be larger than memory limit, see usage")
    if swap > 0 and not mem:
        raise InvalidParameter("You should always set the Memory limit when using Memoryswap limit, see usage")
    if hc.memory_swappiness == -1:
        hc.memory_swappiness = None  # the CLI's "unset", which dockerd stores as null
    if hc.pids_limit is not None and hc.pids_limit <= 0:
        hc.pids_limit = None  # 0 and -1 are "unlimited": dockerd stores null
    if mem and not swap:
        # what dockerd stores (and applies): swap as much again; clamped where its int64 wraps negative
        hc.memory_swap = min(2 * mem, INT64_MAX)
    if not hc.security_opt and (hc.privileged or hc.ipc_mode == "host" or hc.pid_mode == "host"):
        hc.security_opt = ["label=disable"]  # dockerd's generateSecurityOpt (no SELinux labels here anyway)
    _check_port_bindings(hc.port_bindings or {})
    nano = hc.nano_cpus
    if nano and (hc.cpu_quota or hc.cpu_period):
        raise InvalidParameter("Conflicting options: Nano CPUs and CPU Period cannot both be set")
    ncpu = len(os.sched_getaffinity(0))  # Go's runtime.NumCPU, which dockerd counts
    if nano and not 10**7 <= nano <= ncpu * 10**9:
        raise InvalidParameter(f"Range of CPUs is from 0.01 to {ncpu:.2f}, as there are only {ncpu} CPUs available")
    userns = hc.userns_mode
    if userns not in ("", "host"):
        # dockerd takes "private" to mean its --userns-remap, which we do not have: say so rather than
        # run the container in the host's user namespace as if it had been honoured.
        raise InvalidParameter(f'invalid UsernsMode "{userns}": user namespace remapping is not supported '
                               '(only "host" or empty)')
    hc.network_mode = hc.network_mode or "default"
    iso = hc.isolation
    if iso not in ("", "default"):
        # dockerd 20.10 answers 500; later ones 400 (an invalid parameter), as here
        raise InvalidParameter(f"Invalid isolation: \"{iso}\" - linux only supports 'default'")
    hc.log_config = validate_log_config(hc.log_config, log_plugin)
    hc.shm_size = hc.shm_size or 64 * 1024 * 1024
    return hc


# Logging drivers: Dockyard's log (conmon's file, read back by `logs`) stands in for json-file and local;
# none keeps nothing. Options as moby validates them at create, per driver.
LOG_DRIVERS: dict[str, frozenset[str]] = {
    "json-file": frozenset({"max-file", "max-size", "compress", "labels", "labels-regex", "env", "env-regex", "tag"}),
    "local": frozenset({"max-file", "max-size", "compress"}),
    "none": frozenset(),
}
# Drivers dockerd has built in that ship logs elsewhere: refused rather than quietly kept in a file.
OTHER_DOCKER_LOG_DRIVERS = frozenset({"syslog", "journald", "gelf", "fluentd", "awslogs", "splunk", "etwlogs",
                                      "gcplogs", "logentries"})


def log_driver_of(hc: HostConfig | None) -> str:
    lc = hc.log_config if hc is not None else None
    return (lc.type if lc is not None else "") or "json-file"


def validate_log_config(lc: LogConfig | None, log_plugin: str | None = None) -> LogConfig:
    """HostConfig.LogConfig filled (json-file, the daemon default) and checked as dockerd does at create.
    `log_plugin`: the driver, already found to be a logging plugin (its options are its own to judge)."""
    from dockyard.wire.container import LogConfig

    kind = (lc.type if lc is not None else "") or "json-file"
    opts = (lc.config if lc is not None else None) or {}
    if log_plugin and kind == log_plugin:
        return LogConfig(type=kind, config=dict(opts))
    if kind in OTHER_DOCKER_LOG_DRIVERS:
        raise InvalidParameter(f"logging driver {kind!r} is not supported by Dockyard (json-file, local, none)")
    if kind not in LOG_DRIVERS:
        raise InvalidParameter(f'error looking up logging plugin {kind}: plugin "{kind}" not found')
    for key in opts:
        if kind != "none" and key not in LOG_DRIVERS[kind]:
            raise InvalidParameter(f"unknown log opt '{key}' for {kind} log driver" if kind == "json-file"
                                   else f"unknown log opt '{key}' for log driver {kind}")
    return LogConfig(type=kind, config=dict(opts))


_SIZE = re.compile(r"^(\d+(?:\.\d+)*) ?([kKmMgGtTpP])?[iI]?[bB]?$")


def log_max_size(lc: LogConfig | None) -> int | None:
    """The log-opt max-size in bytes (go-units RAMInBytes: binary multipliers), None when unset."""
    raw = ((lc.config if lc is not None else None) or {}).get("max-size")
    if not raw:
        return None
    m = _SIZE.match(str(raw))
    if not m:
        raise InvalidParameter(f"failed to initialize logging driver: invalid size: '{raw}'")
    return int(float(m.group(1)) * 1024 ** ("kmgtp".index(m.group(2).lower()) + 1 if m.group(2) else 0))


# Every HostConfig field dockerd 20.10 shows in inspect, in its order, with the value it fills when the
# request leaves the field out (moby's api/types/container.HostConfig as encoded by Go).
HOST_CONFIG_DEFAULTS: dict[str, Any] = {
    "Binds": None, "ContainerIDFile": "", "LogConfig": {"Type": "json-file", "Config": {}}, "NetworkMode": "default",
    "PortBindings": None, "RestartPolicy": {"Name": "", "MaximumRetryCount": 0}, "AutoRemove": False,
    "VolumeDriver": "", "VolumesFrom": None, "CapAdd": None, "CapDrop": None, "CgroupnsMode": "host", "Dns": None,
    "DnsOptions": None, "DnsSearch": None, "ExtraHosts": None, "GroupAdd": None, "IpcMode": "private", "Cgroup": "",
    "Links": None, "OomScoreAdj": 0, "PidMode": "", "Privileged": False, "PublishAllPorts": False,
    "ReadonlyRootfs": False, "SecurityOpt": None, "UTSMode": "", "UsernsMode": "", "ShmSize": 64 * 1024 * 1024,
    "ConsoleSize": [0, 0], "Isolation": "", "CpuShares": 0, "Memory": 0, "NanoCpus": 0, "CgroupParent": "",
    "BlkioWeight": 0, "BlkioWeightDevice": None, "BlkioDeviceReadBps": None, "BlkioDeviceWriteBps": None,
    "BlkioDeviceReadIOps": None, "BlkioDeviceWriteIOps": None, "CpuPeriod": 0, "CpuQuota": 0,
    "CpuRealtimePeriod": 0, "CpuRealtimeRuntime": 0, "CpusetCpus": "", "CpusetMems": "", "Devices": None,
    "DeviceCgroupRules": None, "DeviceRequests": None, "KernelMemory": 0, "KernelMemoryTCP": 0,
    "MemoryReservation": 0, "MemorySwap": 0, "MemorySwappiness": None, "OomKillDisable": False, "PidsLimit": None,
    "Ulimits": None, "CpuCount": 0, "CpuPercent": 0, "IOMaximumIOps": 0, "IOMaximumBandwidth": 0,
    "MaskedPaths": None, "ReadonlyPaths": None,
}


def host_config_view(hc: dict[str, Any], masked: list[str], readonly: list[str]) -> dict[str, Any]:
    """HostConfig as dockerd's inspect shows it: every field, defaults where the request had none,
    and the masked and read-only /proc and /sys paths the container really gets."""
    out = dict(HOST_CONFIG_DEFAULTS)
    out.update({k: v for k, v in hc.items() if not k.startswith("_")})
    if not out.get("IpcMode"):
        out["IpcMode"] = "private"
    if not out.get("CgroupnsMode"):
        out["CgroupnsMode"] = "host"
    if out.get("Privileged"):
        out["MaskedPaths"] = out["ReadonlyPaths"] = None
    else:
        if out["MaskedPaths"] is None:
            out["MaskedPaths"] = list(masked)
        if out["ReadonlyPaths"] is None:
            out["ReadonlyPaths"] = list(readonly)
    return out


# Config fields Go leaves out of inspect when empty (`omitempty` in moby's container.Config).
_CONFIG_OMITEMPTY = ("ExposedPorts", "Healthcheck", "ArgsEscaped", "NetworkDisabled", "MacAddress", "StopSignal",
                     "StopTimeout", "Shell")
_CONFIG_ORDER = ("Hostname", "Domainname", "User", "AttachStdin", "AttachStdout", "AttachStderr", "ExposedPorts",
                 "Tty", "OpenStdin", "StdinOnce", "Env", "Cmd", "Healthcheck", "ArgsEscaped", "Image", "Volumes",
                 "WorkingDir", "Entrypoint", "NetworkDisabled", "MacAddress", "OnBuild", "Labels", "StopSignal",
                 "StopTimeout", "Shell")


def config_view(cfg: dict[str, Any]) -> dict[str, Any]:
    """Config as dockerd's inspect shows it: Go's field order, empty omitempty fields left out."""
    out: dict[str, Any] = {}
    for key in _CONFIG_ORDER:
        v = cfg.get(key)
        if key in _CONFIG_OMITEMPTY and (v is None or v == "" or v is False or v == {} or v == []):
            continue
        out[key] = v
    out.update({k: v for k, v in cfg.items() if k not in out and k not in _CONFIG_OMITEMPTY})
    return out


def truthy(v: Any) -> bool:
    return bool(v)
