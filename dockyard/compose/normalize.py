"""Short forms to long forms for one service (ports, volumes, environment, depends_on, ...).

The result is what `config` prints and what the converter and the config hash read.
"""

from __future__ import annotations

import os
import re
import shlex
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from dockyard.compose.errors import ComposeError
from dockyard.compose.interpolate import parse_dotenv

Service = dict[str, Any]

_DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_UNITS_NS = {"ns": 1, "us": 1_000, "µs": 1_000, "ms": 1_000_000, "s": 10**9, "m": 60 * 10**9, "h": 3600 * 10**9}
_SIZE = re.compile(r"^(\d+(?:\.\d+)?)\s*([kmgtp]?)(i?b)?$", re.I)


def parse_duration(value: Any, where: str) -> int:
    """Go duration ("1m30s", "500ms", "10s") → nanoseconds; a bare number means seconds."""
    if isinstance(value, int | float):
        return int(value * 10**9)
    text = str(value).strip()
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return int(float(text) * 10**9)
    pos, total = 0, 0.0
    for m in _DURATION.finditer(text):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _UNITS_NS[m.group(2)]
        pos = m.end()
    if pos != len(text) or not text:
        raise ComposeError(f"{where}: invalid duration {text!r}")
    return int(total)


def format_duration(ns: int) -> str:
    """Nanoseconds → Go's time.Duration.String() ("1m30s", "500ms")."""
    if ns == 0:
        return "0s"
    if ns < 10**9:
        for unit, size in (("ms", 10**6), ("µs", 10**3)):
            if ns >= size:
                return f"{ns / size:g}{unit}"
        return f"{ns}ns"
    h, rest = divmod(ns, 3600 * 10**9)
    m, rest = divmod(rest, 60 * 10**9)
    s = f"{rest / 10**9:g}s"
    return (f"{h}h" if h else "") + (f"{m}m" if h or m else "") + s


def parse_size(value: Any, where: str) -> int:
    """"512m", "1g", "1.5GB", 1048576 → bytes (binary multiples, as docker's units package)."""
    if isinstance(value, int):
        return value
    m = _SIZE.match(str(value).strip())
    if not m:
        raise ComposeError(f"{where}: invalid size {value!r}")
    mult = 1024 ** " kmgtp".index((m.group(2) or " ").lower())
    return int(float(m.group(1)) * mult)


def to_int(value: Any, where: str) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ComposeError(f"{where}: invalid integer {value!r}") from None


def _split_cmd(value: Any) -> list[str] | None:
    if value is None:
        return None
    if isinstance(value, str):
        return shlex.split(value)
    return [str(v) for v in value]


def _kv_list(value: Any, where: str, env: Mapping[str, str] | None) -> dict[str, str | None]:
    """environment / labels / args: list of K=V (bare K reads the environment) or mapping."""
    out: dict[str, str | None] = {}
    if isinstance(value, dict):
        for k, v in value.items():
            out[str(k)] = None if v is None else _scalar(v)
        return out
    for item in value or []:
        k, sep, v = str(item).partition("=")
        if sep:
            out[k] = v
        else:
            out[k] = env.get(k) if env is not None else None
    return out


def _scalar(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def _port_range(text: str, where: str) -> list[int]:
    lo, _, hi = text.partition("-")
    try:
        a, b = int(lo), int(hi or lo)
    except ValueError:
        raise ComposeError(f"{where}: invalid port {text!r}") from None
    return list(range(a, b + 1))


def normalize_ports(value: list[Any], where: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for i, item in enumerate(value):
        w = f"{where}[{i}]"
        if isinstance(item, dict):
            p = {"mode": item.get("mode", "ingress"), "target": to_int(item.get("target"), f"{w}.target"),
                 "protocol": item.get("protocol", "tcp")}
            if item.get("published") is not None:
                p["published"] = str(item["published"])
            if item.get("host_ip"):
                p["host_ip"] = item["host_ip"]
            out.append(p)
            continue
        text = str(item)
        proto = "tcp"
        if "/" in text:
            text, proto = text.rsplit("/", 1)
        host_ip = ""
        if text.startswith("["):  # [::1]:8080:80
            end = text.index("]")
            host_ip, text = text[1:end], text[end + 2:]
        parts = text.split(":")
        if len(parts) == 3:
            host_ip, published, target = parts
        elif len(parts) == 2:
            published, target = parts
        elif len(parts) == 1:
            published, target = "", parts[0]
        else:
            raise ComposeError(f"{w}: invalid port {item!r}")
        targets = _port_range(target, w)
        pubs = _port_range(published, w) if published else []
        if pubs and len(pubs) != len(targets) and len(pubs) != 1:
            raise ComposeError(f"{w}: port ranges don't match in {item!r}")
        for j, t in enumerate(targets):
            p = {"mode": "ingress", "target": t, "protocol": proto}
            if pubs:
                p["published"] = str(pubs[j] if len(pubs) == len(targets) else pubs[0])
            if host_ip:
                p["host_ip"] = host_ip
            out.append(p)
    return out


def _is_path(src: str) -> bool:
    return src.startswith((".", "/", "~")) or (len(src) > 1 and src[1] == ":")


def resolve_path(src: str, base: Path) -> str:
    src = os.path.expanduser(src)
    return str((base / src).resolve()) if not os.path.isabs(src) else os.path.normpath(src)


def normalize_volumes(value: list[Any], where: str, base: Path) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for i, item in enumerate(value):
        w = f"{where}[{i}]"
        if isinstance(item, dict):
            v = dict(item)
            if v.get("type") == "bind" and v.get("source"):
                v["source"] = resolve_path(str(v["source"]), base)
                v.setdefault("bind", {"create_host_path": True})
            out.append(v)
            continue
        parts = str(item).split(":")
        if len(parts) == 1:
            out.append({"type": "volume", "target": parts[0]})
            continue
        if len(parts) > 3:
            raise ComposeError(f"{w}: invalid volume specification {item!r}")
        src, target = parts[0], parts[1]
        mode = parts[2] if len(parts) == 3 else ""
        if not target.startswith("/"):
            raise ComposeError(f"{w}: invalid volume specification {item!r}: target must be absolute")
        v = {"type": "bind" if _is_path(src) else "volume", "source": src, "target": target}
        opts = mode.split(",") if mode else []
        if "ro" in opts:
            v["read_only"] = True
        if v["type"] == "bind":
            v["source"] = resolve_path(src, base)
            v["bind"] = {"create_host_path": True}
            sel = [o for o in opts if o in ("z", "Z")]
            if sel:
                v["bind"]["selinux"] = sel[0]
        else:
            v["volume"] = {} if "nocopy" not in opts else {"nocopy": True}
            if not v["volume"]:
                del v["volume"]
        out.append(v)
    return out


def parse_raw_env(path: Path) -> dict[str, str | None]:
    """env_file `format: raw`: KEY=VALUE lines taken literally (no quotes, no interpolation)."""
    out: dict[str, str | None] = {}
    for line in path.read_text().splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        k, sep, v = line.partition("=")
        out[k.strip()] = v if sep else None
    return out


def normalize_depends_on(value: Any) -> dict[str, dict[str, Any]]:
    if isinstance(value, list):
        return {str(s): {"condition": "service_started", "required": True} for s in value}
    out = {}
    for name, spec in (value or {}).items():
        spec = dict(spec or {})
        spec.setdefault("condition", "service_started")
        spec.setdefault("required", True)
        out[str(name)] = spec
    return out


def normalize_healthcheck(hc: dict[str, Any], where: str) -> dict[str, Any]:
    hc = dict(hc)
    if isinstance(hc.get("test"), str):
        hc["test"] = ["CMD-SHELL", hc["test"]]
    for key in ("interval", "timeout", "start_period", "start_interval"):
        if key in hc:
            hc[key] = format_duration(parse_duration(hc[key], f"{where}.{key}"))
    return hc


def normalize_service(name: str, svc: Service, base: Path, env: Mapping[str, str], filename: str) -> Service:
    """One service of one file, before merging (relative paths resolve against `base`)."""
    where = f"{filename}: services.{name}"
    s: Service = dict(svc)
    build = s.get("build")
    if isinstance(build, str):
        build = {"context": build}
    if isinstance(build, dict):
        build = dict(build)
        build["context"] = resolve_path(str(build.get("context", ".")), base)
        build.setdefault("dockerfile", "Dockerfile")
        if "args" in build:
            build["args"] = _kv_list(build["args"], f"{where}.build.args", env)
        s["build"] = build
    for key in ("command", "entrypoint"):
        if key in s:
            s[key] = _split_cmd(s[key])
    env_files = s.pop("env_file", None)
    environment: dict[str, str | None] = {}
    if env_files:
        for ef in [env_files] if isinstance(env_files, str | dict) else env_files:
            path = ef["path"] if isinstance(ef, dict) else ef
            required = ef.get("required", True) if isinstance(ef, dict) else True
            p = Path(resolve_path(str(path), base))
            if not p.exists():
                if required:
                    raise ComposeError(f"{where}.env_file: env file {p} not found")
                continue
            if isinstance(ef, dict) and ef.get("format") == "raw":
                environment.update(parse_raw_env(p))
            elif isinstance(ef, dict) and ef.get("format") not in (None, "", "dotenv"):
                raise ComposeError(f"{where}.env_file: unsupported env_file format {ef['format']!r}")
            else:
                environment.update(parse_dotenv(p, env))
    if "environment" in s:
        environment.update(_kv_list(s["environment"], f"{where}.environment", env))
    if environment or "environment" in s:
        s["environment"] = environment
    if "labels" in s:
        s["labels"] = _kv_list(s["labels"], f"{where}.labels", None)
    if "ports" in s:
        s["ports"] = normalize_ports(s["ports"], f"{where}.ports")
    if "expose" in s:
        s["expose"] = [str(p) for p in s["expose"]]
    if "volumes" in s:
        s["volumes"] = normalize_volumes(s["volumes"], f"{where}.volumes", base)
    if "depends_on" in s:
        s["depends_on"] = normalize_depends_on(s["depends_on"])
    if isinstance(s.get("networks"), list):
        s["networks"] = {str(n): None for n in s["networks"]}
    if "healthcheck" in s:
        s["healthcheck"] = normalize_healthcheck(s["healthcheck"], f"{where}.healthcheck")
    for key in ("mem_limit", "mem_reservation", "memswap_limit", "shm_size"):
        if key in s:
            s[key] = parse_size(s[key], f"{where}.{key}")
    if "stop_grace_period" in s:
        s["stop_grace_period"] = format_duration(parse_duration(s["stop_grace_period"],
                                                                f"{where}.stop_grace_period"))
    if isinstance(s.get("extra_hosts"), dict):
        s["extra_hosts"] = [f"{h}={ip}" for h, ip in s["extra_hosts"].items()]
    for key in ("dns", "dns_search", "tmpfs"):
        if isinstance(s.get(key), str):
            s[key] = [s[key]]
    if "cpus" in s:
        try:
            s["cpus"] = float(s["cpus"])
        except ValueError:
            raise ComposeError(f"{where}.cpus: invalid number {s['cpus']!r}") from None
    if "scale" in s:
        s["scale"] = to_int(s["scale"], f"{where}.scale")
    develop = s.get("develop")
    if isinstance(develop, dict) and develop.get("watch"):
        s["develop"] = {**develop, "watch": [{**w, "path": resolve_path(str(w["path"]), base)}
                                             for w in develop["watch"]]}
    deploy = s.get("deploy")
    if isinstance(deploy, dict) and deploy.get("replicas") is not None:
        deploy["replicas"] = to_int(deploy["replicas"], f"{where}.deploy.replicas")
    res = deploy.get("resources") if isinstance(deploy, dict) else None
    if isinstance(res, dict):
        for part in ("limits", "reservations"):
            r = res.get(part) or {}
            if "memory" in r:
                r["memory"] = parse_size(r["memory"], f"{where}.deploy.resources.{part}.memory")
            if "cpus" in r:
                r["cpus"] = float(r["cpus"])
    return s
