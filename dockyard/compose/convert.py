"""A normalised service → an Engine API container create body, plus Compose's labels and config hash."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from dockyard.compose import secretfiles
from dockyard.compose.loader import Project
from dockyard.compose.normalize import Service, parse_duration

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


def _healthcheck(hc: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if "test" in hc:
        out["Test"] = hc["test"]
    for key, api in (("interval", "Interval"), ("timeout", "Timeout"), ("start_period", "StartPeriod"),
                     ("start_interval", "StartInterval")):
        if key in hc:
            out[api] = parse_duration(hc[key], key)
    if "retries" in hc:
        out["Retries"] = int(hc["retries"])
    return out


def _mounts(project: Project, svc: Service) -> tuple[list[str], list[dict[str, Any]]]:
    binds: list[str] = []
    mounts: list[dict[str, Any]] = []
    for v in svc.get("volumes") or []:
        ro = bool(v.get("read_only"))
        if v["type"] == "bind":
            # Binds (not Mounts) so a missing host path is created, as compose does on old APIs.
            binds.append(f"{v['source']}:{v['target']}" + (":ro" if ro else ""))
        elif v["type"] == "volume":
            src = v.get("source")
            m: dict[str, Any] = {"Type": "volume", "Target": v["target"], "ReadOnly": ro}
            if src:
                m["Source"] = project.volumes[src]["name"]
            if (v.get("volume") or {}).get("nocopy"):
                m["VolumeOptions"] = {"NoCopy": True}
            mounts.append(m)
        elif v["type"] == "tmpfs":
            m = {"Type": "tmpfs", "Target": v["target"]}
            size = (v.get("tmpfs") or {}).get("size")
            if size:
                m["TmpfsOptions"] = {"SizeBytes": int(size)}
            mounts.append(m)
    return binds, mounts


def _ports(svc: Service) -> tuple[dict[str, Any], dict[str, list[dict[str, str]]]]:
    exposed: dict[str, Any] = {}
    bindings: dict[str, list[dict[str, str]]] = {}
    for p in svc.get("ports") or []:
        key = f"{p['target']}/{p.get('protocol', 'tcp')}"
        exposed[key] = {}
        bindings.setdefault(key, []).append({"HostIp": p.get("host_ip", ""), "HostPort": p.get("published", "")})
    for e in svc.get("expose") or []:
        exposed[e if "/" in e else f"{e}/tcp"] = {}
    return exposed, bindings


def _restart(policy: str | None) -> dict[str, Any]:
    if not policy or policy == "no":
        return {"Name": "no"}
    name, _, count = policy.partition(":")
    return {"Name": name, "MaximumRetryCount": int(count or 0)}


def _resources(svc: Service, hc: dict[str, Any]) -> None:
    """deploy.resources outside swarm, as Compose applies them (service-level keys win)."""
    res = (svc.get("deploy") or {}).get("resources") or {}
    lim, rsv = res.get("limits") or {}, res.get("reservations") or {}
    if lim.get("memory") and not svc.get("mem_limit"):
        hc["Memory"] = int(lim["memory"])
    if lim.get("cpus") and not svc.get("cpus"):
        hc["NanoCpus"] = int(float(lim["cpus"]) * 1e9)
    if lim.get("pids") and not svc.get("pids_limit"):
        hc["PidsLimit"] = int(lim["pids"])
    if rsv.get("memory") and not svc.get("mem_reservation"):
        hc["MemoryReservation"] = int(rsv["memory"])
    if svc.get("mem_reservation"):
        hc["MemoryReservation"] = int(svc["mem_reservation"])


def device_requests(svc: Service) -> list[dict[str, Any]]:
    """`gpus:` and deploy.resources.reservations.devices as the API's DeviceRequests."""
    out: list[dict[str, Any]] = []
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
        req: dict[str, Any] = {"Driver": d.get("driver", ""),
                               "Count": -1 if count == "all" or (count is None and not d.get("device_ids"))
                               else int(count or 0),
                               "DeviceIDs": d.get("device_ids"), "Capabilities": [list(d.get("capabilities") or [])],
                               "Options": d.get("options") or {}}
        out.append({k: v for k, v in req.items() if v is not None})
    return out


def wants_gpu(svc: Service) -> bool:
    return any("gpu" in caps for r in device_requests(svc) for caps in r.get("Capabilities") or [])


def _deploy_restart(svc: Service) -> dict[str, Any]:
    """deploy.restart_policy, which Compose applies when `restart` is not set."""
    rp = (svc.get("deploy") or {}).get("restart_policy") or {}
    cond = rp.get("condition")
    if cond in ("any", "always"):
        return {"Name": "always"}
    if cond == "on-failure":
        return {"Name": "on-failure", "MaximumRetryCount": int(rp.get("max_attempts") or 0)}
    return {"Name": "no"}


def network_mode(project: Project, svc: Service, resolve_service: Any = None) -> str:
    mode = svc.get("network_mode")
    if mode:
        if mode.startswith("service:") and resolve_service:
            return f"container:{resolve_service(mode.split(':', 1)[1])}"
        return str(mode)
    first = next(iter(svc.get("networks") or {"default": None}))
    return str(project.networks[first]["name"])


def endpoint(project: Project, name: str, svc: Service, net: str, cname: str,
             use_aliases: bool = True) -> dict[str, Any]:
    """v2's aliases: the container's name, then (not for `run` without --use-aliases) the service's
    name and its configured aliases."""
    cfg = (svc.get("networks") or {}).get(net) or {}
    ep: dict[str, Any] = {"Aliases": [cname, name, *cfg.get("aliases", [])] if use_aliases else [cname]}
    ipam = {}
    if cfg.get("ipv4_address"):
        ipam["IPv4Address"] = cfg["ipv4_address"]
    if cfg.get("ipv6_address"):
        ipam["IPv6Address"] = cfg["ipv6_address"]
    if ipam:
        ep["IPAMConfig"] = ipam
    return ep


def create_body(project: Project, name: str, svc: Service, number: int, oneoff: bool = False,
                resolve_service: Any = None, cname: str | None = None,
                use_aliases: bool | None = None) -> dict[str, Any]:
    cname = cname or container_name(project, name, number, svc)
    env = [f"{k}={v}" if v is not None else k for k, v in (svc.get("environment") or {}).items()
           if v is not None]
    binds, mounts = _mounts(project, svc)
    binds += secretfiles.resolve(project, name, svc)[0]
    exposed, bindings = _ports(svc)
    mode = network_mode(project, svc, resolve_service)
    hc: dict[str, Any] = {
        "Binds": binds or None, "Mounts": mounts or None, "PortBindings": bindings or None,
        "RestartPolicy": _restart(svc.get("restart")) if svc.get("restart") else _deploy_restart(svc), "NetworkMode": mode,
        "CapAdd": svc.get("cap_add"), "CapDrop": svc.get("cap_drop"),
        "ReadonlyRootfs": bool(svc.get("read_only")), "Privileged": bool(svc.get("privileged")),
        "Init": svc.get("init"), "ExtraHosts": [h.replace("=", ":", 1) for h in svc.get("extra_hosts") or []]
        or None, "Dns": svc.get("dns"), "DnsSearch": svc.get("dns_search"),
        "SecurityOpt": svc.get("security_opt"), "Sysctls": _sysctls(svc.get("sysctls")), "PidMode": svc.get("pid"),
        "IpcMode": svc.get("ipc"), "ShmSize": svc.get("shm_size"),
        # YAML reads `1000` and `1024` as numbers; the API's GroupAdd and Sysctls are strings (as compose sends)
        "GroupAdd": [str(g) for g in svc["group_add"]] if svc.get("group_add") else None,
    }
    _resources(svc, hc)
    if svc.get("tmpfs"):
        hc["Tmpfs"] = {t.split(":", 1)[0]: (t.split(":", 1)[1] if ":" in t else "") for t in svc["tmpfs"]}
    if svc.get("mem_limit"):
        hc["Memory"] = svc["mem_limit"]
    if svc.get("cpus"):
        hc["NanoCpus"] = int(svc["cpus"] * 1e9)
    if svc.get("pids_limit"):
        hc["PidsLimit"] = int(svc["pids_limit"])
    requests = device_requests(svc)
    if requests:
        hc["DeviceRequests"] = requests
    if svc.get("ulimits"):
        hc["Ulimits"] = [{"Name": k, "Soft": v, "Hard": v} if isinstance(v, int)
                         else {"Name": k, "Soft": v["soft"], "Hard": v["hard"]} for k, v in svc["ulimits"].items()]
    if svc.get("volumes_from"):
        hc["VolumesFrom"] = svc["volumes_from"]
    body: dict[str, Any] = {
        "Image": image_name(project, name, svc), "Env": env, "Cmd": svc.get("command"),
        "Entrypoint": svc.get("entrypoint"), "Labels": service_labels(project, name, svc, number, oneoff),
        "Hostname": svc.get("hostname"), "Domainname": svc.get("domainname"),
        "WorkingDir": svc.get("working_dir"), "User": svc.get("user"),
        "Tty": bool(svc.get("tty")), "OpenStdin": bool(svc.get("stdin_open")),
        "AttachStdin": False, "AttachStdout": True, "AttachStderr": True,
        "StopSignal": svc.get("stop_signal"), "ExposedPorts": exposed or None,
        "HostConfig": {k: v for k, v in hc.items() if v is not None},
    }
    if svc.get("stop_grace_period"):
        body["StopTimeout"] = parse_duration(svc["stop_grace_period"], "stop_grace_period") // 10**9
    if svc.get("healthcheck"):
        body["Healthcheck"] = _healthcheck(svc["healthcheck"])
    if not svc.get("network_mode"):
        first = next(iter(svc["networks"]))
        aliases = not oneoff if use_aliases is None else use_aliases
        body["NetworkingConfig"] = {"EndpointsConfig": {mode: endpoint(project, name, svc, first, cname,
                                                                        use_aliases=aliases)}}
    return {k: v for k, v in body.items() if v is not None}
