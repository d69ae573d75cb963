"""Container wire types: the Engine API's ContainerConfig, HostConfig (with its Resources),
NetworkingConfig and their parts, as moby's api/types/container and network spell them. Checked
against moby's swagger v1.41..v1.47 by tests/unit/test_wire_swagger.py (a renamed or retyped field
fails it).

Decoded once, at the API (`create_request`, `update_request`) or from the store (`stored`): JSON
names matched case-insensitively as Go's encoding/json does (an exact spelling wins), unknown fields
ignored, a null read as Go's zero value (a missing field), a wrong type refused with Go's words
("json: cannot unmarshal string into Go struct field HostConfig.Memory of type int64").
Go pointers (`*int64`, `*bool`) are `X | None`; slices and maps are `None` when unset, as Go's nil.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Annotated, Any, TypeVar, Union, get_args, get_origin, get_type_hints

import msgspec
from msgspec import Meta, field

from dockyard.errors import InvalidParameter

Int64 = Annotated[int, Meta(ge=-(2**63), le=2**63 - 1)]
Int = Annotated[int, Meta(ge=-(2**63), le=2**63 - 1, extra={"go": "int"})]  # Go's int (64 bits here)
Strs = list[str] | None
StrMap = dict[str, str] | None


class Wire(msgspec.Struct, rename="pascal", kw_only=True, omit_defaults=True):
    """A struct of the Engine API: Go's field names (PascalCase unless said), defaults left out when
    encoded (what the store keeps; the API's views add Go's shapes back)."""

    def doc(self) -> dict[str, Any]:
        """The JSON document (Go's names; fields at their default left out)."""
        out: dict[str, Any] = msgspec.to_builtins(self)
        return out


# -- the parts ---------------------------------------------------------------------------------------


class PortBinding(Wire, omit_defaults=False):
    host_ip: str = field(default="", name="HostIp")
    host_port: str = ""


class RestartPolicy(Wire, omit_defaults=False):
    name: str = ""
    maximum_retry_count: Int = 0


class LogConfig(Wire, omit_defaults=False):
    type: str = ""
    config: StrMap = None


class DeviceMapping(Wire, omit_defaults=False):
    path_on_host: str = ""
    path_in_container: str = ""
    cgroup_permissions: str = ""


class DeviceRequest(Wire, omit_defaults=False):
    driver: str = ""
    count: Int = 0
    device_ids: Strs = field(default=None, name="DeviceIDs")
    capabilities: list[list[str]] | None = None
    options: StrMap = None


class WeightDevice(Wire, omit_defaults=False):
    path: str = ""
    weight: Int = 0


class ThrottleDevice(Wire, omit_defaults=False):
    path: str = ""
    rate: Int64 = 0


class Ulimit(Wire, omit_defaults=False):
    name: str = ""
    soft: Int64 = 0
    hard: Int64 = 0


class BindOptions(Wire):
    propagation: str = ""
    non_recursive: bool = False
    create_mountpoint: bool = False
    read_only_non_recursive: bool = False
    read_only_force_recursive: bool = False


class Driver(Wire):
    name: str = ""
    options: StrMap = None


class VolumeOptions(Wire):
    no_copy: bool = False
    labels: StrMap = None
    driver_config: Driver | None = None
    subpath: str = ""


class TmpfsOptions(Wire):
    size_bytes: Int64 = 0
    mode: Int64 = 0
    options: list[list[str]] | None = None


class Mount(Wire):
    type: str = ""
    source: str = ""
    target: str = ""
    read_only: bool = False
    consistency: str = ""
    bind_options: BindOptions | None = None
    volume_options: VolumeOptions | None = None
    tmpfs_options: TmpfsOptions | None = None


class HealthConfig(Wire):
    test: Strs = None
    interval: Int64 = 0
    timeout: Int64 = 0
    start_period: Int64 = 0
    start_interval: Int64 = 0
    retries: Int = 0


class EndpointIPAMConfig(Wire):
    ipv4_address: str = field(default="", name="IPv4Address")
    ipv6_address: str = field(default="", name="IPv6Address")
    link_local_ips: Strs = field(default=None, name="LinkLocalIPs")


class EndpointSettings(Wire):
    ipam_config: EndpointIPAMConfig | None = field(default=None, name="IPAMConfig")
    links: Strs = None
    aliases: Strs = None
    mac_address: str = ""
    driver_opts: StrMap = None
    network_id: str = field(default="", name="NetworkID")
    endpoint_id: str = field(default="", name="EndpointID")
    gateway: str = ""
    ip_address: str = field(default="", name="IPAddress")
    ip_prefix_len: Int = field(default=0, name="IPPrefixLen")
    ipv6_gateway: str = field(default="", name="IPv6Gateway")
    global_ipv6_address: str = field(default="", name="GlobalIPv6Address")
    global_ipv6_prefix_len: Int = field(default=0, name="GlobalIPv6PrefixLen")
    dns_names: Strs = field(default=None, name="DNSNames")


class NetworkingConfig(Wire):
    endpoints_config: dict[str, EndpointSettings] | None = None


# -- Resources, HostConfig, Config -------------------------------------------------------------------


class Resources(Wire):
    """moby's container.Resources: HostConfig's limits, also the body of `POST /containers/{id}/update`
    (with RestartPolicy, as UpdateConfig)."""

    cpu_shares: Int64 = 0
    memory: Int64 = 0
    nano_cpus: Int64 = 0
    cgroup_parent: str = ""
    blkio_weight: Int = 0
    blkio_weight_device: list[WeightDevice] | None = None
    blkio_device_read_bps: list[ThrottleDevice] | None = None
    blkio_device_write_bps: list[ThrottleDevice] | None = None
    blkio_device_read_iops: list[ThrottleDevice] | None = field(default=None, name="BlkioDeviceReadIOps")
    blkio_device_write_iops: list[ThrottleDevice] | None = field(default=None, name="BlkioDeviceWriteIOps")
    cpu_period: Int64 = 0
    cpu_quota: Int64 = 0
    cpu_realtime_period: Int64 = 0
    cpu_realtime_runtime: Int64 = 0
    cpuset_cpus: str = ""
    cpuset_mems: str = ""
    devices: list[DeviceMapping] | None = None
    device_cgroup_rules: Strs = None
    device_requests: list[DeviceRequest] | None = None
    kernel_memory: Int64 = 0
    kernel_memory_tcp: Int64 = field(default=0, name="KernelMemoryTCP")
    memory_reservation: Int64 = 0
    memory_swap: Int64 = 0
    memory_swappiness: Int64 | None = None
    oom_kill_disable: bool | None = None
    pids_limit: Int64 | None = None
    ulimits: list[Ulimit] | None = None
    cpu_count: Int64 = 0
    cpu_percent: Int64 = 0
    io_maximum_iops: Int64 = field(default=0, name="IOMaximumIOps")
    io_maximum_bandwidth: Int64 = field(default=0, name="IOMaximumBandwidth")
    init: bool | None = None  # HostConfig's in Go; the swagger lists it among the Resources


class UpdateConfig(Resources):
    """The body of `POST /containers/{id}/update`."""

    restart_policy: RestartPolicy | None = None


class HostConfig(Resources):
    """moby's container.HostConfig (Resources embedded, as in Go)."""

    binds: Strs = None
    container_id_file: str = field(default="", name="ContainerIDFile")
    log_config: LogConfig | None = None
    network_mode: str = ""
    port_bindings: dict[str, list[PortBinding] | None] | None = None
    restart_policy: RestartPolicy | None = None
    auto_remove: bool = False
    volume_driver: str = ""
    volumes_from: Strs = None
    console_size: list[int] | None = None
    annotations: StrMap = None
    cap_add: Strs = None
    cap_drop: Strs = None
    cgroupns_mode: str = ""
    dns: Strs = None
    dns_options: Strs = None
    dns_search: Strs = None
    extra_hosts: Strs = None
    group_add: Strs = None
    ipc_mode: str = ""
    cgroup: str = ""
    links: Strs = None
    oom_score_adj: Int = 0
    pid_mode: str = ""
    privileged: bool = False
    publish_all_ports: bool = False
    readonly_rootfs: bool = False
    security_opt: Strs = None
    storage_opt: StrMap = None
    tmpfs: StrMap = None
    uts_mode: str = field(default="", name="UTSMode")
    userns_mode: str = ""
    shm_size: Int64 = 0
    sysctls: StrMap = None
    runtime: str = ""
    isolation: str = ""
    mounts: list[Mount] | None = None
    masked_paths: Strs = None
    readonly_paths: Strs = None
    # Not the API's: the create request's NetworkingConfig, kept with the HostConfig in the store
    # (its JSON column) until the container's networks are joined. Never read from a request.
    networking: NetworkingConfig | None = field(default=None, name="_NetworkingConfig")


class Config(Wire, omit_defaults=False):
    """moby's container.Config (the swagger's ContainerConfig). Cmd and Entrypoint take a string
    too (Go's strslice); `create_request` makes it a list. Encoded whole (inspect's view leaves
    out Go's omitempty fields)."""

    hostname: str = ""
    domainname: str = ""
    user: str = ""
    attach_stdin: bool = False
    attach_stdout: bool = False
    attach_stderr: bool = False
    exposed_ports: dict[str, dict[str, Any]] | None = None
    tty: bool = False
    open_stdin: bool = False
    stdin_once: bool = False
    env: Strs = None
    cmd: list[str] | str | None = None
    healthcheck: HealthConfig | None = None
    args_escaped: bool = False
    image: str = ""
    volumes: dict[str, dict[str, Any]] | None = None
    working_dir: str = ""
    entrypoint: list[str] | str | None = None
    network_disabled: bool = False
    mac_address: str = ""
    on_build: Strs = None
    labels: StrMap = None
    stop_signal: str = ""
    stop_timeout: Int | None = None
    shell: Strs = None

    def command(self) -> list[str]:
        """Entrypoint then Cmd (both lists once decoded by create_request)."""
        return [*_strs(self.entrypoint), *_strs(self.cmd)]


class CreateRequest(Config):
    """The body of `POST /containers/create`: a Config with the HostConfig and NetworkingConfig."""

    host_config: HostConfig | None = None
    networking_config: NetworkingConfig | None = None


class ExecConfig(Wire, omit_defaults=False):
    """The body of `POST /containers/{id}/exec` (moby's container.ExecOptions, the swagger's ExecConfig)."""

    user: str = ""
    privileged: bool = False
    tty: bool = False
    console_size: list[int] | None = None
    attach_stdin: bool = False
    attach_stderr: bool = False
    attach_stdout: bool = False
    detach: bool = False
    detach_keys: str = ""
    env: Strs = None
    working_dir: str = ""
    cmd: Strs = None


class ExecStartConfig(Wire, omit_defaults=False):
    """The body of `POST /exec/{id}/start`."""

    detach: bool = False
    tty: bool = False
    console_size: list[int] | None = None


def _strs(v: list[str] | str | None) -> list[str]:
    return [v] if isinstance(v, str) else list(v or [])


# -- decoding ----------------------------------------------------------------------------------------

T = TypeVar("T", bound=Wire)

# How a document is folded onto a type before msgspec converts it: ("struct", {lower name: (name,
# plan)}, type), ("list", plan), ("dict", plan), or None for a leaf.
Plan = tuple[Any, ...] | None
_PLANS: dict[tuple[type, bool], Plan] = {}


def _plan_of(tp: Any, internal: bool) -> Plan:
    origin = get_origin(tp)
    if origin is Annotated:
        return _plan_of(get_args(tp)[0], internal)
    if origin is Union or type(tp).__name__ == "UnionType":
        plans = [p for p in (_plan_of(a, internal) for a in get_args(tp) if a is not type(None)) if p is not None]
        return plans[0] if plans else None
    if origin is list:
        sub = _plan_of(get_args(tp)[0], internal)
        return ("list", sub) if sub else None
    if origin is dict:
        sub = _plan_of(get_args(tp)[1], internal)
        return ("dict", sub) if sub else None
    if isinstance(tp, type) and issubclass(tp, Wire):
        return _struct_plan(tp, internal)
    return None


def _struct_plan(tp: type[Wire], internal: bool) -> Plan:
    key = (tp, internal)
    if key not in _PLANS:
        fields: dict[str, tuple[str, Plan]] = {}
        _PLANS[key] = ("struct", fields, tp)  # before the fields: types may nest
        hints = get_type_hints(tp, include_extras=True)
        for f in msgspec.structs.fields(tp):
            if f.encode_name.startswith("_") and not internal:
                continue
            fields[f.encode_name.lower()] = (f.encode_name, _plan_of(hints[f.name], internal))
    return _PLANS[key]


def _fold(value: Any, plan: Plan) -> Any:
    """Go's spelling for every known key (case-insensitive; an exact match wins), unknown keys and
    nulls left out (Go's zero value), so msgspec sees a document in the struct's own names."""
    if plan is None:
        return value
    kind = plan[0]
    if kind == "struct":
        if not isinstance(value, dict):
            return value
        fields = plan[1]
        out: dict[str, Any] = {}
        for key, v in value.items():
            if v is None:
                continue
            f = fields.get(key.lower()) if isinstance(key, str) else None
            if f is None:
                continue
            name, sub = f
            if name in out and key != name:
                continue  # the exact spelling was already there
            out[name] = _fold(v, sub) if sub is not None else v
        return out
    if kind == "list" and isinstance(value, list):
        return [_fold(x, plan[1]) for x in value]
    if kind == "dict" and isinstance(value, dict):
        # a null struct in a map or list is Go's nil pointer: read as the zero value
        return {k: _fold({} if x is None and plan[1] and plan[1][0] == "struct" else x, plan[1])
                for k, x in value.items()}
    return value


def convert(doc: Any, tp: type[T], where: str = "", *, internal: bool = False) -> T:
    """A decoded JSON document as `tp`, Go's way; InvalidParameter (400) in Go's words otherwise."""
    if doc is None:
        doc = {}
    if not isinstance(doc, dict):
        raise InvalidParameter(f"json: cannot unmarshal {_json_type(doc)} into Go value of type {where or _go_name(tp)}")
    folded = _fold(doc, _struct_plan(tp, internal))
    try:
        return msgspec.convert(folded, tp)
    except msgspec.ValidationError as e:
        raise InvalidParameter(_go_error(str(e), folded, tp, where or _go_name(tp))) from None


def create_request(doc: Any) -> CreateRequest:
    """`POST /containers/create`'s body: Cmd and Entrypoint as lists (a string is the shell form,
    split as Dockyard always has)."""
    import shlex

    req = convert(doc, CreateRequest, "ContainerCreateRequest")
    if isinstance(req.cmd, str):
        req.cmd = shlex.split(req.cmd)
    if isinstance(req.entrypoint, str):
        req.entrypoint = shlex.split(req.entrypoint)
    return req


def update_request(doc: Any) -> UpdateConfig:
    return convert(doc, UpdateConfig, "UpdateConfig")


def exec_request(doc: Any) -> ExecConfig:
    return convert(doc, ExecConfig, "ExecConfig")


def exec_start_request(doc: Any) -> ExecStartConfig:
    return convert(doc, ExecStartConfig, "ExecStartConfig")


def stored_doc(raw: str | bytes) -> Any:
    """A JSON document of the store (a container's network settings, mounts, health): msgspec, ~3x
    json.loads here; json.loads for what msgspec refuses (NaN, Infinity), as json.dumps may write them."""
    try:
        return msgspec.json.decode(raw)
    except msgspec.DecodeError:
        import json

        return json.loads(raw)


def stored(raw: str | bytes, tp: type[T]) -> T:
    """A struct from the store's JSON column, whatever version wrote it: straight when it decodes,
    else folded as a request is (nulls, old spellings), a field of a wrong type dropped."""
    try:
        return msgspec.json.decode(raw, type=tp)
    except msgspec.ValidationError:
        pass
    doc = _fold(msgspec.json.decode(raw), _struct_plan(tp, True))
    for _ in range(100):
        try:
            return msgspec.convert(doc, tp)
        except msgspec.ValidationError as e:
            if not _drop(doc, str(e)):
                return tp()
    return tp()


# -- Go's words for a wrong type ---------------------------------------------------------------------

_STEP = re.compile(r"\.(\w+)|\[(\d+)\]|\[\.\.\.\]")
_GOT = {"str": "string", "int": "number", "float": "number", "bool": "bool", "array": "array", "object": "object",
        "null": "null"}


def _json_type(v: Any) -> str:
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, int | float):
        return "number"
    names: dict[type, str] = {str: "string", list: "array", dict: "object"}
    return names.get(type(v), "value")


def _go_name(tp: Any) -> str:
    origin = get_origin(tp)
    if origin is Annotated:
        base, *meta = get_args(tp)
        go = next((m.extra.get("go") for m in meta if isinstance(m, Meta) and m.extra), None)
        return str(go) if go else _go_name(base)
    if origin is Union or type(tp).__name__ == "UnionType":
        args = [a for a in get_args(tp) if a is not type(None)]
        return "strslice.StrSlice" if str in args and len(args) > 1 else _go_name(args[0])
    if origin is list:
        return "[]" + _go_name(get_args(tp)[0])
    if origin is dict:
        return f"map[string]{_go_name(get_args(tp)[1])}"
    if tp is Any:
        return "struct {}"
    return {int: "int64", str: "string", bool: "bool", float: "float64"}.get(tp, getattr(tp, "__name__", str(tp)))


def _walk(path: str) -> list[str | int | None]:
    """`$.HostConfig.Ulimits[0].Soft` as steps: names, indexes, None for a map key msgspec hides."""
    steps: list[str | int | None] = []
    for m in _STEP.finditer(path):
        steps.append(m.group(1) if m.group(1) else int(m.group(2)) if m.group(2) else None)
    return steps


def _go_error(message: str, doc: Any, tp: type[Wire], where: str) -> str:
    text, _, path = message.partition(" - at `")
    steps = _walk(path.rstrip("`"))
    owner: Any = tp
    owner_name, field_name, field_type = where, "", Any
    value: Any = doc
    for i, step in enumerate(steps):
        if isinstance(step, str) and isinstance(owner, type) and issubclass(owner, Wire):
            by_name = {f.encode_name: f.name for f in msgspec.structs.fields(owner)}
            attr = by_name.get(step)
            if attr is None:
                break
            if i:
                owner_name = owner.__name__
            field_name, field_type = step, get_type_hints(owner, include_extras=True)[attr]
            owner = _struct_in(field_type)
        if isinstance(value, dict) and isinstance(step, str):
            value = value.get(step)
        elif isinstance(value, list) and isinstance(step, int) and step < len(value):
            value = value[step]
        else:
            value = None
    got = re.search(r"got `(\w+)`", text)
    kind = _GOT.get(got.group(1), got.group(1)) if got else _json_type(value)
    go_type = _go_name(field_type)
    if kind == "number" and isinstance(value, int | float) and not isinstance(value, bool) and "int" in go_type:
        kind = f"number {value}"
    elif "int" in go_type and isinstance(value, int | float) and not isinstance(value, bool):
        kind = f"number {value}"
    if not field_name:
        return f"json: cannot unmarshal {kind} into Go value of type {where}"
    return f"json: cannot unmarshal {kind} into Go struct field {owner_name}.{field_name} of type {go_type}"


def _struct_in(tp: Any) -> Any:
    """The struct a field's type holds (through Optional, list and dict), else None."""
    origin = get_origin(tp)
    if origin is Annotated:
        return _struct_in(get_args(tp)[0])
    if origin is Union or type(tp).__name__ == "UnionType" or origin in (list, dict):
        for a in get_args(tp):
            found = _struct_in(a)
            if found is not None:
                return found
        return None
    return tp if isinstance(tp, type) and issubclass(tp, Wire) else None


def _drop(doc: Any, message: str) -> bool:
    """Remove the value a ValidationError points at (a stored record's field of a wrong type)."""
    steps = _walk(message.partition(" - at `")[2].rstrip("`"))
    node = doc
    for step in steps[:-1]:
        if step is None or not isinstance(node, dict | list):
            return False
        try:
            node = node[step] if isinstance(node, dict) else node[int(step)]
        except (KeyError, IndexError, TypeError, ValueError):
            return False
    last = steps[-1] if steps else None
    if isinstance(node, dict) and isinstance(last, str) and last in node:
        del node[last]
        return True
    if isinstance(node, list) and isinstance(last, int) and not isinstance(last, bool) and last < len(node):
        del node[last]
        return True
    return False


ENCODER: Callable[[Any], bytes] = msgspec.json.Encoder().encode
