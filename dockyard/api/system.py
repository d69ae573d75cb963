"""System endpoints: /_ping, /version, /info, /events, /system/df."""

from __future__ import annotations

import asyncio
import functools
import os
import platform
from collections.abc import AsyncIterator
from typing import Any

from dockyard.api.backends import SystemBackend
from dockyard.api.server import (
    API_VERSION,
    MIN_API_VERSION,
    Request,
    Response,
    Route,
    aclose,
    json_response,
    ndjson_stream,
)
from dockyard.errors import InvalidParameter
from dockyard.util.buildinfo import build_time, git_commit
from dockyard.util.timefmt import parse_time_arg, rfc3339

VERSION = "0.1.0"


class SystemRoutes:
    """/_ping, /version, /info, /events and /system/df over the SystemBackend."""

    def __init__(self, system: SystemBackend) -> None:
        self.system = system

    async def ping(self, req: Request) -> Response:
        headers = {"Content-Type": "text/plain; charset=utf-8", "Cache-Control": "no-cache, no-store, must-revalidate",
                   "Pragma": "no-cache", "Builder-Version": "1",
                   "Swarm": "active/manager" if self.system.swarm_info().get("ControlAvailable") else "inactive"}
        return Response(200, headers, b"" if req.method == "HEAD" else b"OK")

    async def get_version(self, req: Request) -> Response:
        return json_response(version_info())

    async def get_info(self, req: Request) -> Response:
        return json_response(info(self.system))

    async def get_events(self, req: Request) -> Response:
        since = req.q("since")
        until = req.q("until")
        filters = req.qjson("filters") or {}
        if not isinstance(filters, dict):
            raise InvalidParameter("invalid filters")
        try:
            s = parse_time_arg(since) if since else None
            u = parse_time_arg(until) if until else None
        except ValueError as e:
            raise InvalidParameter(f"invalid time: {e}") from e

        events = self.system.subscribe(s, u)  # now, before the headers go

        async def gen() -> AsyncIterator[dict[str, Any]]:
            try:
                async for ev in events:
                    if event_matches(ev, filters):
                        yield ev
            finally:
                await aclose(events)

        return ndjson_stream(gen())

    async def system_df(self, req: Request) -> Response:
        return json_response(await asyncio.to_thread(self.system.disk_usage))

    def routes(self) -> list[Route]:
        return [
            ("GET", "/_ping", self.ping),
            ("HEAD", "/_ping", self.ping),
            ("GET", "/version", self.get_version),
            ("GET", "/info", self.get_info),
            ("GET", "/events", self.get_events),
            ("GET", "/system/df", self.system_df),
        ]


def version_info() -> dict[str, Any]:
    u = os.uname()
    runc = _tool_version("runc")
    return {
        "Platform": {"Name": "Dockyard Engine"},
        "Components": [
            {"Name": "Engine", "Version": VERSION, "Details": {
                "ApiVersion": API_VERSION, "MinAPIVersion": MIN_API_VERSION, "GitCommit": git_commit(),
                "GoVersion": "python" + platform.python_version(), "Os": "linux", "Arch": _arch(),
                "KernelVersion": u.release, "BuildTime": build_time()}},
            *({"Name": name, "Version": v, "Details": {"GitCommit": commit}}
              for name, (v, commit) in (("runc", runc), ("conmon", _tool_version("conmon"))) if v),
        ],
        "Version": VERSION,
        "ApiVersion": API_VERSION,
        "MinAPIVersion": MIN_API_VERSION,
        "GitCommit": git_commit(),
        "GoVersion": "python" + platform.python_version(),
        "Os": "linux",
        "Arch": _arch(),
        "KernelVersion": u.release,
        "BuildTime": build_time(),
    }


@functools.cache
def _tool_version(tool: str) -> tuple[str, str]:
    """(version, commit) from `runc --version` / `conmon --version`, as dockerd shows runc's."""
    import subprocess

    try:
        out = subprocess.run([tool, "--version"], capture_output=True, text=True, timeout=5).stdout
    except (OSError, subprocess.TimeoutExpired):
        return "", ""
    version = commit = ""
    for line in out.splitlines():
        if line.startswith(f"{tool} version "):
            version = line.split(" version ", 1)[1].strip()
        elif line.startswith("commit:"):
            commit = line.split(":", 1)[1].strip()
    return version, commit


def daemon_id(data_root: str) -> str:
    """A dockerd-style engine ID (12 groups of 4 base32 characters), steady for a data root."""
    import base64
    import hashlib

    b32 = base64.b32encode(hashlib.sha256(data_root.encode()).digest()).decode()[:48]
    return ":".join(b32[i:i + 4] for i in range(0, 48, 4))


def _arch() -> str:
    m = os.uname().machine
    return {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm"}.get(m, m)


def info(system: SystemBackend) -> dict[str, Any]:
    n = system.counts()
    u = os.uname()
    mem = 0
    try:
        with open("/proc/meminfo") as f:
            mem = int(f.readline().split()[1]) * 1024
    except OSError:
        pass
    v2 = os.path.exists("/sys/fs/cgroup/cgroup.controllers")
    ctl = system.limit_controllers  # None: all (rootful); rootless: those delegated to the user

    def has(controller: str) -> bool:
        return ctl is None or controller in ctl

    security = ["name=seccomp,profile=builtin"] + (["name=rootless"] if system.rootless else [])
    warnings = None
    if system.limits_refused is not None:
        without = "without cgroups" if not ctl else "with limits of some controllers refused"
        warnings = [f"WARNING: Running in rootless-mode {without}: {system.limits_refused}"]
    return {
        "ID": daemon_id(system.data_root.as_posix()),
        "Containers": n["containers"],
        "ContainersRunning": n["running"],
        "ContainersPaused": n["paused"],
        "ContainersStopped": n["containers"] - n["running"] - n["paused"],
        "Images": n["images"],
        "Driver": system.storage_driver,
        "DriverStatus": [["Backing Filesystem", "extfs"], ["Supports d_type", "true"]],
        "Plugins": system.plugins_info(),
        "MemoryLimit": has("memory"), "SwapLimit": has("memory"), "KernelMemory": False,
        "CpuCfsPeriod": has("cpu"), "CpuCfsQuota": has("cpu"), "CPUShares": has("cpu"), "CPUSet": has("cpuset"),
        "PidsLimit": has("pids"), "IPv4Forwarding": True, "BridgeNfIptables": True,
        "BridgeNfIp6tables": True, "Debug": system.debug, "NFd": len(os.listdir("/proc/self/fd")),
        "OomKillDisable": True, "NGoroutines": 0, "SystemTime": rfc3339(), "LoggingDriver": "json-file",
        "CgroupDriver": "cgroupfs" if ctl is None or ctl else "none", "CgroupVersion": "2" if v2 else "1", "NEventsListener": 0,
        "KernelVersion": u.release, "OperatingSystem": _os_name(), "OSVersion": "", "OSType": "linux",
        "Architecture": u.machine, "IndexServerAddress": "https://index.docker.io/v1/",
        "RegistryConfig": {"IndexConfigs": {}, "InsecureRegistryCIDRs": ["127.0.0.0/8"],
                           "Mirrors": list(system.registry_mirrors)},
        "NCPU": os.cpu_count() or 1, "MemTotal": mem, "DockerRootDir": str(system.data_root),
        "HttpProxy": "", "HttpsProxy": "", "NoProxy": "", "Name": u.nodename, "Labels": [],
        "ExperimentalBuild": False, "ServerVersion": VERSION,
        "Runtimes": {name: {"path": p} for name, p in system.runtimes.items()},
        "DefaultRuntime": system.default_runtime, "Swarm": system.swarm_info(),
        "LiveRestoreEnabled": True, "Isolation": "", "InitBinary": "catatonit", "SecurityOptions": security,
        "RuncCommit": {"ID": _tool_version("runc")[1], "Expected": _tool_version("runc")[1]},
        "ContainerdCommit": {"ID": "", "Expected": ""},
        "InitCommit": {"ID": "", "Expected": ""},
        "Warnings": warnings,
    }


def _os_name() -> str:
    try:
        for line in open("/etc/os-release"):
            if line.startswith("PRETTY_NAME="):
                return line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return "Linux"


def event_matches(ev: dict[str, Any], filters: dict[str, Any]) -> bool:
    """Docker's event filters: type, event/action, container, image, label, network, volume."""
    actor = ev.get("Actor", {})
    attrs = actor.get("Attributes", {})
    for key, raw in filters.items():
        values = list(raw.keys()) if isinstance(raw, dict) else list(raw)
        if not values:
            continue
        if key == "type" and ev["Type"] not in values:
            return False
        if key in ("event", "action") and not any(ev["Action"] == v or ev["Action"].startswith(v + ":") for v in values):
            return False
        if key in ("container", "image", "network", "volume"):
            if ev["Type"] != key and not (key == "image" and ev["Type"] == "container"):
                return False
            if key == "image" and ev["Type"] == "container":
                if attrs.get("image") not in values:
                    return False
            elif not any(actor.get("ID", "").startswith(v) or attrs.get("name") == v for v in values):
                return False
        if key == "label":
            for v in values:
                k, eq, val = v.partition("=")
                if k not in attrs or (eq and attrs[k] != val):
                    return False
    return True
