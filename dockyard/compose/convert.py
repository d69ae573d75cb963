"""A normalised service → an Engine API container create request (the wire structs the CLI and the
daemon use; `encode` gives the body), plus Compose's labels and config hash."""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING, Any

from dockyard.compose import secretfiles
from dockyard.compose.loader import Project
from dockyard.compose.normalize import Service, parse_duration

if TYPE_CHECKING:  # the structs (msgspec) are imported when a container is made, not at compose's start
    from dockyard.wire.container import (
        CreateRequest,
        DeviceRequest,
        EndpointSettings,
        HealthConfig,
        HostConfig,
        Mount,
        PortBinding,
        RestartPolicy,
    )

COMPOSE_VERSION = "2.29.7"  # what we write in com.docker.compose.version (the Compose we mimic)

L_PROJECT = "com.docker.compose.project"
L_SERVICE = "com.docker.compose.service"
L_NUMBER = "com.docker.compose.container-number"
L_ONEOFF = "com.docker.compose.oneoff"
L_HASH = "com.docker.compose.config-hash"
L_VERSION = "com.docker.compose.version"
L_DEPENDS = "com.docker.compose.depends_on"
L_WORKDIR = "com.docker.compose.project.working_dir"
L_FILES = "com.docker.compose.project.config_files"
L_IMAGE = "com.docker.compose.image"
L_NETWORK = "com.docker.compose.network"
L_VOLUME = "com.docker.compose.volume"
L_ENV_FILE = "com.docker.compose.project.environment_file"
L_REPLACE = "com.docker.compose.replace"
L_SLUG = "com.docker.compose.slug"

# Keys that do not change the container itself (scaling, building, profile selection).
_HASH_EXCLUDED = {"scale", "deploy", "build", "pull_policy", "profiles", "depends_on", "develop"}


def config_hash(svc: Service) -> str:
    canon = {k: v for k, v in svc.items() if k not in _HASH_EXCLUDED}
    if isinstance(svc.get("deploy"), dict):
        canon["deploy"] = {k: v for k, v in svc["deploy"].items() if k != "replicas"}
    data = json.dumps(canon, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(data.encode()).hexdigest()


def image_name(project: Project, name: str, svc: Service) -> str:
    return str(svc.get("image") or f"{project.name}-{name}")


def container_name(project: Project, name: str, number: int, svc: Service) -> str:
    return str(svc.get("container_name") or f"{project.name}-{name}-{number}")


def service_labels(project: Project, name: str, svc: Service, number: int, oneoff: bool = False) -> dict[str, str]:
    labels = {k: str(v or "") for k, v in (svc.get("labels") or {}).items()}
    deps = ",".join(f"{d}:{c.get('condition', 'service_started')}:{str(c.get('restart', False)).lower()}"
                    for d, c in (svc.get("depends_on") or {}).items())
    labels.update({
        L_PROJECT: project.name, L_SERVICE: name, L_NUMBER: str(number),
        L_ONEOFF: "True" if oneoff else "False", L_HASH: config_hash(svc),
        L_VERSION: COMPOSE_VERSION, L_DEPENDS: deps, L_WORKDIR: str(project.working_dir),
        L_FILES: ",".join(str(f) for f in project.config_files), L_IMAGE: image_name(project, name, svc),
    })
    if project.env_files:
        labels[L_ENV_FILE] = ",".join(str(f) for f in project.env_files)
    return labels


def _sysctls(value: Any) -> dict[str, str] | None:
    """compose's sysctls, a map or a list of key=value, as the API's map of strings."""
    if not value:
        return None
    if isinstance(value, dict):
        return {str(k): str(v) for k, v in value.items()}
    return {k: v for k, _, v in (str(kv).partition("=") for kv in value)}


def _healthcheck(hc: dict[str, Any]) -> HealthConfig:
    from dockyard.wire.container import HealthConfig

    out = HealthConfig(test=hc.get("test"))
    for key, attr in (("interval", "interval"), ("timeout", "timeout"), ("start_period", "start_period"),
                      ("start_interval", "start_interval")):
        if key in hc:
            setattr(out, attr, parse_duration(hc[key], key))
    if "retries" in hc:
        out.retries = int(hc["retries"])
    return out


def _mounts(project: Project, svc: Service) -> tuple[list[str], list[Mount]]:
    from dockyard.wire.container import Mount, TmpfsOptions, VolumeOptions

    binds: list[str] = []
    mounts: list[Mount] = []
    for v in svc.get("volumes") or []:
        ro = bool(v.get("read_only"))
        if v["type"] == "bind":
            # Binds (not Mounts) so a missing host path is created, as compose does on old APIs.
            binds.append(f"{v['source']}:{v['target']}" + (":ro" if ro else ""))
        elif v["type"] == "volume":
            src = v.get("source")
            m = Mount(type="volume", target=v["target"], read_only=ro)
            if src:
                m.source = project.volumes[src]["name"]
            if (v.get("volume") or {}).get("nocopy"):
                m.volume_options = VolumeOptions(no_copy=True)
            mounts.append(m)
        elif v["type"] == "tmpfs":
            m = Mount(type="tmpfs", target=v["target"])
            size = (v.get("tmpfs") or {}).get("size")
            if size:
                m.tmpfs_options = TmpfsOptions(size_bytes=int(size))
            mounts.append(m)
    return binds, mounts


def _ports(svc: Service) -> tuple[dict[str, Any], dict[str, list[PortBinding] | None]]:
    from dockyard.wire.container import PortBinding

    exposed: dict[str, Any] = {}
    bindings: dict[str, list[PortBinding] | None] = {}
    for p in svc.get("ports") or []:
        key = f"{p['target']}/{p.get('protocol', 'tcp')}"
        exposed[key] = {}
        bound = bindings.setdefault(key, [])
        assert bound is not None
        bound.append(PortBinding(host_ip=p.get("host_ip", ""), host_port=p.get("published", "")))
    for e in svc.get("expose") or []:
        exposed[e if "/" in e else f"{e}/tcp"] = {}
    return exposed, bindings


def _restart(policy: str | None) -> RestartPolicy:
    from dockyard.wire.container import RestartPolicy

    if not policy or policy == "no":
        return RestartPolicy(name="no")
    name, _, count = policy.partition(":")
    return RestartPolicy(name=name, maximum_retry_count=int(count or 0))


def _resources(svc: Service, hc: HostConfig) -> None:
    """deploy.resources outside swarm, as Compose applies them (service-level keys win)."""
    res = (svc.get("deploy") or {}).get("resources") or {}
    lim, rsv = res.get("limits") or {}, res.get("reservations") or {}
    if lim.get("memory") and not svc.get("mem_limit"):
        hc.memory = int(lim["memory"])
    if lim.get("cpus") and not svc.get("cpus"):
        hc.nano_cpus = int(float(lim["cpus"]) * 1e9)
    if lim.get("pids") and not svc.get("pids_limit"):
        hc.pids_limit = int(lim["pids"])
    if rsv.get("memory") and not svc.get("mem_reservation"):
        hc.memory_reservation = int(rsv["memory"])
    if svc.get("mem_reservation"):
        hc.memory_reservation = int(svc["mem_reservation"])


def device_requests(svc: Service) -> list[DeviceRequest]:
    """`gpus:` and deploy.resources.reservations.devices as the API's DeviceRequests."""
    from dockyard.wire.container import DeviceRequest

    out: list[DeviceRequest] = []
    gpus = svc.get("gpus")
    items: list[dict[str, Any]] = []
    if gpus == "all":
        items.append({"count": "all", "capabilities": ["gpu"]})
    elif isinstance(gpus, list):
        items += [{"capabilities": ["gpu"], **g} for g in gpus]
    res = ((svc.get("deploy") or {}).get("resources") or {}).get("reservations") or {}
    items += list(res.get("devices") or [])
    for d in items:
        count = d.get("count")
        out.append(DeviceRequest(
            driver=d.get("driver", ""),
            count=-1 if count == "all" or (count is None and not d.get("device_ids")) else int(count or 0),
            device_ids=d.get("device_ids"), capabilities=[list(d.get("capabilities") or [])],
            options=d.get("options") or {}))
    return out


def wants_gpu(svc: Service) -> bool:
    return any("gpu" in caps for r in device_requests(svc) for caps in r.capabilities or [])


def _deploy_restart(svc: Service) -> RestartPolicy:
    """deploy.restart_policy, which Compose applies when `restart` is not set."""
    from dockyard.wire.container import RestartPolicy

    rp = (svc.get("deploy") or {}).get("restart_policy") or {}
    cond = rp.get("condition")
    if cond in ("any", "always"):
        return RestartPolicy(name="always")
    if cond == "on-failure":
        return RestartPolicy(name="on-failure", maximum_retry_count=int(rp.get("max_attempts") or 0))
    return RestartPolicy(name="no")


def network_mode(project: Project, svc: Service, resolve_service: Any = None) -> str:
    mode = svc.get("network_mode")
    if mode:
        if mode.startswith("service:") and resolve_service:
            return f"container:{resolve_service(mode.split(':', 1)[1])}"
        return str(mode)
    first = next(iter(svc.get("networks") or {"default": None}))
    return str(project.networks[first]["name"])


def endpoint(project: Project, name: str, svc: Service, net: str, cname: str,
             use_aliases: bool = True) -> EndpointSettings:
    """v2's aliases: the container's name, then (not for `run` without --use-aliases) the service's
    name and its configured aliases."""
    from dockyard.wire.container import EndpointIPAMConfig, EndpointSettings

    cfg = (svc.get("networks") or {}).get(net) or {}
    ep = EndpointSettings(aliases=[cname, name, *cfg.get("aliases", [])] if use_aliases else [cname])
    if cfg.get("ipv4_address") or cfg.get("ipv6_address"):
        ep.ipam_config = EndpointIPAMConfig(ipv4_address=cfg.get("ipv4_address") or "",
                                            ipv6_address=cfg.get("ipv6_address") or "")
    return ep


def create_body(project: Project, name: str, svc: Service, number: int, oneoff: bool = False,
                resolve_service: Any = None, cname: str | None = None,
                use_aliases: bool | None = None) -> CreateRequest:
    """The create request (send `encode(request)`)."""
    from dockyard.wire.container import CreateRequest, HostConfig, NetworkingConfig, Ulimit

    cname = cname or container_name(project, name, number, svc)
    env = [f"{k}={v}" for k, v in (svc.get("environment") or {}).items() if v is not None]
    binds, mounts = _mounts(project, svc)
    binds += secretfiles.resolve(project, name, svc)[0]
    exposed, bindings = _ports(svc)
    mode = network_mode(project, svc, resolve_service)
    hc = HostConfig(
        binds=binds or None, mounts=mounts or None, port_bindings=bindings or None,
        restart_policy=_restart(svc.get("restart")) if svc.get("restart") else _deploy_restart(svc), network_mode=mode,
        cap_add=svc.get("cap_add"), cap_drop=svc.get("cap_drop"),
        readonly_rootfs=bool(svc.get("read_only")), privileged=bool(svc.get("privileged")),
        init=svc.get("init"), extra_hosts=[h.replace("=", ":", 1) for h in svc.get("extra_hosts") or []] or None,
        dns=svc.get("dns"), dns_search=svc.get("dns_search"),
        security_opt=svc.get("security_opt"), sysctls=_sysctls(svc.get("sysctls")), pid_mode=svc.get("pid") or "",
        ipc_mode=svc.get("ipc") or "", shm_size=svc.get("shm_size") or 0,
        # YAML reads `1000` and `1024` as numbers; the API's GroupAdd and Sysctls are strings (as compose sends)
        group_add=[str(g) for g in svc["group_add"]] if svc.get("group_add") else None,
    )
    _resources(svc, hc)
    if svc.get("tmpfs"):
        hc.tmpfs = {t.split(":", 1)[0]: (t.split(":", 1)[1] if ":" in t else "") for t in svc["tmpfs"]}
    if svc.get("mem_limit"):
        hc.memory = svc["mem_limit"]
    if svc.get("cpus"):
        hc.nano_cpus = int(svc["cpus"] * 1e9)
    if svc.get("pids_limit"):
        hc.pids_limit = int(svc["pids_limit"])
    hc.device_requests = device_requests(svc) or None
    if svc.get("ulimits"):
        hc.ulimits = [Ulimit(name=k, soft=v, hard=v) if isinstance(v, int) else Ulimit(name=k, soft=v["soft"], hard=v["hard"])
                      for k, v in svc["ulimits"].items()]
    if svc.get("volumes_from"):
        hc.volumes_from = svc["volumes_from"]
    req = CreateRequest(
        image=image_name(project, name, svc), env=env, cmd=svc.get("command"),
        entrypoint=svc.get("entrypoint"), labels=service_labels(project, name, svc, number, oneoff),
        hostname=svc.get("hostname") or "", domainname=svc.get("domainname") or "",
        working_dir=svc.get("working_dir") or "", user=svc.get("user") or "",
        tty=bool(svc.get("tty")), open_stdin=bool(svc.get("stdin_open")),
        attach_stdin=False, attach_stdout=True, attach_stderr=True,
        stop_signal=svc.get("stop_signal") or "", exposed_ports=exposed or None, host_config=hc,
    )
    if svc.get("stop_grace_period"):
        req.stop_timeout = parse_duration(svc["stop_grace_period"], "stop_grace_period") // 10**9
    if svc.get("healthcheck"):
        req.healthcheck = _healthcheck(svc["healthcheck"])
    if not svc.get("network_mode"):
        first = next(iter(svc["networks"]))
        aliases = not oneoff if use_aliases is None else use_aliases
        req.networking_config = NetworkingConfig(endpoints_config={mode: endpoint(project, name, svc, first, cname,
                                                                                   use_aliases=aliases)})
    return req


def encode(req: CreateRequest) -> bytes:
    """The create body: Go's field names, a HostConfig's unset fields left out (Go's zero values)."""
    from dockyard.wire.container import ENCODER

    return ENCODER(req)
