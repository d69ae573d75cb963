"""Type checks of request bodies, where dockerd's typed JSON decoding would refuse a value.

Services assume `HostConfig` is an object, `CapAdd` a list of strings...; a body that says otherwise
must get dockerd's 400 ("json: cannot unmarshal ...") rather than a 500 from deep inside a service.
`null` is always fine (Go decodes it to the zero value).
"""

from __future__ import annotations

from typing import Any

from dockyard.errors import InvalidParameter

STRS = "[]string"
_GO = {dict: "object", list: "array", str: "string", int: "number", bool: "bool", float: "number"}
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1

# field -> expected: a Python type, a tuple of accepted types, STRS (list of strings), or a nested table
HOST_CONFIG: dict[str, Any] = {
    **dict.fromkeys(("Binds", "CapAdd", "CapDrop", "SecurityOpt", "Dns", "DnsOptions", "DnsSearch", "ExtraHosts",
                     "GroupAdd", "Links", "VolumesFrom", "MaskedPaths", "ReadonlyPaths", "DeviceCgroupRules"), STRS),
    **dict.fromkeys(("Devices", "Mounts", "Ulimits", "BlkioWeightDevice", "DeviceRequests"), list),
    **dict.fromkeys(("PortBindings", "RestartPolicy", "LogConfig", "Sysctls", "Tmpfs", "StorageOpt"), dict),
    **dict.fromkeys(("Privileged", "ReadonlyRootfs", "PublishAllPorts", "AutoRemove", "OomKillDisable"), bool),
    **dict.fromkeys(("NetworkMode", "IpcMode", "PidMode", "UTSMode", "UsernsMode", "CgroupnsMode", "Runtime",
                     "CpusetCpus", "CpusetMems", "CgroupParent", "VolumeDriver", "Isolation", "Cgroup"), str),
    **dict.fromkeys(("Memory", "MemorySwap", "MemoryReservation", "NanoCpus", "CpuShares", "CpuPeriod", "CpuQuota",
                     "CpuRealtimePeriod", "CpuRealtimeRuntime", "ShmSize", "PidsLimit", "BlkioWeight",
                     "OomScoreAdj", "KernelMemory", "MemorySwappiness"), int),
    "Init": bool,
    "ConsoleSize": list,
}

CREATE: dict[str, Any] = {
    **dict.fromkeys(("Image", "User", "WorkingDir", "Hostname", "Domainname", "StopSignal", "MacAddress"), str),
    **dict.fromkeys(("Env", "Shell", "OnBuild"), STRS),
    **dict.fromkeys(("Cmd", "Entrypoint"), (str, STRS)),  # a string is the shell form
    **dict.fromkeys(("Labels", "ExposedPorts", "Volumes", "Healthcheck", "NetworkingConfig"), dict),
    **dict.fromkeys(("Tty", "OpenStdin", "StdinOnce", "AttachStdin", "AttachStdout", "AttachStderr",
                     "NetworkDisabled", "ArgsEscaped"), bool),
    "StopTimeout": int,
    "HostConfig": HOST_CONFIG,
}


def _ok(value: Any, want: Any) -> bool:
    if isinstance(want, tuple):
        return any(_ok(value, w) for w in want)
    if want == STRS:
        return isinstance(value, list) and all(isinstance(v, str) for v in value)
    if isinstance(want, dict):
        return isinstance(value, dict)
    if want is int:  # Go's int64: a number beyond it or with a fraction is refused as it decodes
        if isinstance(value, bool) or not isinstance(value, int | float):
            return False
        return (isinstance(value, int) or value.is_integer()) and _INT64_MIN <= value <= _INT64_MAX
    return isinstance(value, want)


def _number(value: int | float) -> str:
    return str(int(value)) if isinstance(value, int) or value.is_integer() else repr(value)


def _name(want: Any) -> str:
    if isinstance(want, tuple):
        return " or ".join(_name(w) for w in want)
    if want == STRS or isinstance(want, dict):
        return "[]string" if want == STRS else "object"
    return _GO.get(want, str(want))


def check(body: dict[str, Any], table: dict[str, Any], where: str) -> None:
    """Raise InvalidParameter (400) when a known field of body has the wrong JSON type."""
    for key, want in table.items():
        value = body.get(key)
        if value is None:
            continue
        if not _ok(value, want):
            got = _GO.get(type(value), type(value).__name__)
            if want is int and got == "number":  # dockerd: "cannot unmarshal number 1180591620717411303424 ..."
                raise InvalidParameter(f"json: cannot unmarshal number {_number(value)} into Go struct field "
                                       f"{where}.{key} of type int64")
            raise InvalidParameter(f"json: cannot unmarshal {got} into Go struct field {where}.{key} of type {_name(want)}")
        if isinstance(want, dict):
            check(value, want, key)


# moby's container.Config and HostConfig field names: Go's decoder matches JSON keys to them case-
# insensitively, and clients rely on it (docker-py sends CPURealtimePeriod for CpuRealtimePeriod).
CONFIG_FIELDS = ("Hostname", "Domainname", "User", "AttachStdin", "AttachStdout", "AttachStderr", "ExposedPorts",
                 "Tty", "OpenStdin", "StdinOnce", "Env", "Cmd", "Healthcheck", "ArgsEscaped", "Image", "Volumes",
                 "WorkingDir", "Entrypoint", "NetworkDisabled", "MacAddress", "OnBuild", "Labels", "StopSignal",
                 "StopTimeout", "Shell", "HostConfig", "NetworkingConfig")
HOST_CONFIG_FIELDS = (
    "Binds", "ContainerIDFile", "LogConfig", "NetworkMode", "PortBindings", "RestartPolicy", "AutoRemove",
    "VolumeDriver", "VolumesFrom", "ConsoleSize", "Annotations", "CapAdd", "CapDrop", "CgroupnsMode", "Dns",
    "DnsOptions", "DnsSearch", "ExtraHosts", "GroupAdd", "IpcMode", "Cgroup", "Links", "OomScoreAdj", "PidMode",
    "Privileged", "PublishAllPorts", "ReadonlyRootfs", "SecurityOpt", "StorageOpt", "Tmpfs", "UTSMode", "UsernsMode",
    "ShmSize", "Sysctls", "Runtime", "Isolation", "CpuShares", "Memory", "NanoCpus", "CgroupParent", "BlkioWeight",
    "BlkioWeightDevice", "BlkioDeviceReadBps", "BlkioDeviceWriteBps", "BlkioDeviceReadIOps", "BlkioDeviceWriteIOps",
    "CpuPeriod", "CpuQuota", "CpuRealtimePeriod", "CpuRealtimeRuntime", "CpusetCpus", "CpusetMems", "Devices",
    "DeviceCgroupRules", "DeviceRequests", "KernelMemory", "KernelMemoryTCP", "MemoryReservation", "MemorySwap",
    "MemorySwappiness", "OomKillDisable", "PidsLimit", "Ulimits", "CpuCount", "CpuPercent", "IOMaximumIOps",
    "IOMaximumBandwidth", "Mounts", "MaskedPaths", "ReadonlyPaths", "Init")


def create_body(body: dict[str, Any]) -> dict[str, Any]:
    """A container create body with Go's spelling of every known field."""
    out = go_names(body, CONFIG_FIELDS)
    if isinstance(out.get("HostConfig"), dict):
        out["HostConfig"] = go_names(out["HostConfig"], HOST_CONFIG_FIELDS)
    return out


EXEC_CONFIG = ("User", "Privileged", "Tty", "ConsoleSize", "AttachStdin", "AttachStderr", "AttachStdout", "Detach",
               "DetachKeys", "Env", "WorkingDir", "Cmd")
EXEC_START = ("Detach", "Tty", "ConsoleSize")


def go_names(body: dict[str, Any], fields: tuple[str, ...]) -> dict[str, Any]:
    """Keys spelled as Go's encoding/json matches them: case-insensitively (docker-py sends the exec's
    `detachKeys` so), an exact match winning over a folded one."""
    canon = {f.lower(): f for f in fields}
    out: dict[str, Any] = {}
    for key, value in body.items():
        name = canon.get(key.lower(), key) if key not in fields else key
        if name in out and key != name:
            continue  # the exact spelling was already there
        out[name] = value
    return out
