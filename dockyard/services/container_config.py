"""Pure helpers for containers: merging the image config into a create request, Docker's shapes."""

from __future__ import annotations

import shlex
from typing import Any

from dockyard.errors import InvalidParameter

# Fields of Config the Engine API accepts; anything else in a create body is ignored, as Docker does.
CONFIG_KEYS = (
    "Hostname", "Domainname", "User", "AttachStdin", "AttachStdout", "AttachStderr", "ExposedPorts",
    "Tty", "OpenStdin", "StdinOnce", "Env", "Cmd", "Healthcheck", "ArgsEscaped", "Image", "Volumes",
    "WorkingDir", "Entrypoint", "NetworkDisabled", "MacAddress", "OnBuild", "Labels", "StopSignal",
    "StopTimeout", "Shell",
)

MIN_MEMORY = 6 * 1024 * 1024


def _env_key(entry: str) -> str:
    return entry.split("=", 1)[0]


def merge_env(image_env: list[str] | None, env: list[str] | None) -> list[str]:
    """Image env first, overridden key by key by the request's env (Docker's order)."""
    out: dict[str, str] = {}
    for entry in (image_env or []) + (env or []):
        out[_env_key(entry)] = entry
    return list(out.values())


def merge_config(body: dict[str, Any], image_config: dict[str, Any]) -> dict[str, Any]:
    """The container's Config: the request's fields over the image's defaults."""
    img = image_config.get("config") or image_config.get("Config") or {}
    cfg: dict[str, Any] = {k: body.get(k) for k in CONFIG_KEYS if k in body}
    for key in ("Env", "Cmd", "Entrypoint"):
        if cfg.get(key) is not None and not isinstance(cfg[key], list):
            if isinstance(cfg[key], str):
                cfg[key] = [cfg[key]] if key == "Env" else shlex.split(cfg[key])
            else:
                raise InvalidParameter(f"json: cannot unmarshal {type(cfg[key]).__name__} into Go struct field Config.{key} of type []string")
    cfg["Env"] = merge_env(img.get("Env"), cfg.get("Env"))
    if not any(e.startswith("PATH=") for e in cfg["Env"]):
        cfg["Env"].insert(0, "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
    # An explicit entrypoint drops the image's Cmd too (Docker's rule).
    if body.get("Entrypoint") is not None:
        if cfg.get("Entrypoint") == [""] or cfg.get("Entrypoint") == []:
            cfg["Entrypoint"] = None
        if cfg.get("Cmd") is None:
            cfg["Cmd"] = None
    else:
        cfg["Entrypoint"] = img.get("Entrypoint")
        if cfg.get("Cmd") is None:
            cfg["Cmd"] = img.get("Cmd")
    for key in ("WorkingDir", "User", "StopSignal"):
        if not cfg.get(key):
            cfg[key] = img.get(key) or ""
    if "Healthcheck" not in cfg and img.get("Healthcheck"):
        cfg["Healthcheck"] = img["Healthcheck"]
    labels = dict(img.get("Labels") or {})
    labels.update(cfg.get("Labels") or {})
    cfg["Labels"] = labels
    ports = dict(img.get("ExposedPorts") or {})
    ports.update(cfg.get("ExposedPorts") or {})
    cfg["ExposedPorts"] = ports or None
    vols = dict(img.get("Volumes") or {})
    vols.update(cfg.get("Volumes") or {})
    cfg["Volumes"] = vols or None
    if img.get("OnBuild"):
        cfg.setdefault("OnBuild", img["OnBuild"])
    for key, default in (("Hostname", ""), ("Domainname", ""), ("AttachStdin", False), ("AttachStdout", False),
                         ("AttachStderr", False), ("Tty", False), ("OpenStdin", False), ("StdinOnce", False)):
        cfg.setdefault(key, default)
        if cfg[key] is None:
            cfg[key] = default
    cfg["Image"] = body.get("Image", "")
    if not (cfg.get("Entrypoint") or cfg.get("Cmd")):
        raise InvalidParameter("no command specified")
    return cfg


def command_of(cfg: dict[str, Any]) -> list[str]:
    return list(cfg.get("Entrypoint") or []) + list(cfg.get("Cmd") or [])


_RESTART_NAMES = {"", "no", "always", "on-failure", "unless-stopped"}


def validate_host_config(hc: dict[str, Any]) -> dict[str, Any]:
    """Check the HostConfig fields we act on; fill Docker's defaults."""
    hc = dict(hc or {})
    rp = hc.get("RestartPolicy") or {}
    name = rp.get("Name", "") or ""
    if name not in _RESTART_NAMES:
        raise InvalidParameter(f"invalid restart policy: unknown policy '{name}'; use one of 'no', 'always', 'on-failure', or 'unless-stopped'")
    if name != "on-failure" and rp.get("MaximumRetryCount"):
        raise InvalidParameter("invalid restart policy: maximum retry count can only be used with 'on-failure'")
    if rp.get("MaximumRetryCount", 0) and rp["MaximumRetryCount"] < 0:
        raise InvalidParameter("invalid restart policy: maximum retry count cannot be negative")
    if name and name != "no" and hc.get("AutoRemove"):
        raise InvalidParameter("can't create 'AutoRemove' container with restart policy")
    hc["RestartPolicy"] = {"Name": name or "no", "MaximumRetryCount": rp.get("MaximumRetryCount", 0) or 0}
    mem = hc.get("Memory") or 0
    if mem and mem < MIN_MEMORY:
        raise InvalidParameter("Minimum memory limit allowed is 6MB")
    swap = hc.get("MemorySwap") or 0
    if swap > 0 and mem and swap < mem:
        raise InvalidParameter("Minimum memoryswap limit should be larger than memory limit, see usage")
    if swap > 0 and not mem:
        raise InvalidParameter("You should always set the Memory limit when using Memoryswap limit, see usage")
    nano = hc.get("NanoCpus") or 0
    if nano and (hc.get("CpuQuota") or hc.get("CpuPeriod")):
        raise InvalidParameter("Conflicting options: Nano CPUs and CPU Period cannot both be set")
    hc.setdefault("NetworkMode", "default")
    if not hc.get("NetworkMode"):
        hc["NetworkMode"] = "default"
    hc.setdefault("LogConfig", {"Type": "json-file", "Config": {}})
    hc.setdefault("Binds", None)
    hc.setdefault("PortBindings", {})
    if hc["PortBindings"] is None:
        hc["PortBindings"] = {}
    hc.setdefault("Runtime", "")
    hc.setdefault("ShmSize", 64 * 1024 * 1024)
    if not hc.get("ShmSize"):
        hc["ShmSize"] = 64 * 1024 * 1024
    return hc


def truthy(v: Any) -> bool:
    return bool(v)
