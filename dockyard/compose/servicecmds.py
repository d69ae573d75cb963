"""Compose v2's commands on a service's containers: cp, attach, export, commit, stats, wait, events,
scale, volumes. The per-container work is the docker CLI's own (dockyard.cli), given the container."""

from __future__ import annotations

import json
import sys
import threading
import time
from argparse import Namespace
from datetime import UTC, datetime
from typing import Any

from dockyard.cli.common import CLIError, Ctx
from dockyard.cli.formatting import write_rows
from dockyard.client import APIClient, APIError
from dockyard.compose import state
from dockyard.compose.convert import L_ONEOFF, L_PROJECT, L_SERVICE
from dockyard.compose.dryrun import client_like
from dockyard.compose.engine import Engine, UpOptions
from dockyard.compose.errors import ComposeError
from dockyard.compose.loader import Project

JSON = dict[str, Any]


def _ctx(client: APIClient) -> Ctx:
    return Ctx(host=client.host.url, _client=client)


def _service(project: Project, name: str) -> None:
    if project.services and name not in project.services:
        raise ComposeError(f"no such service: {name}")


def containers_of(client: APIClient, project: Project, service: str, index: int | None = None,
                  all: bool = True) -> list[JSON]:
    _service(project, service)
    ctrs = state.project_containers(client, project.name, [service], all=all)
    if index:
        ctrs = [c for c in ctrs if state.number(c) == index]
    if not ctrs:
        if index:
            raise ComposeError(f"service \"{service}\" is not running container #{index}")
        raise ComposeError(f"no container found for service \"{service}\"")
    return ctrs


def _run_cli(fn: Any, client: APIClient, args: Namespace) -> int:
    try:
        return int(fn(_ctx(client), args) or 0)
    except CLIError as e:
        raise ComposeError(str(e)) from None


def cp(client: APIClient, project: Project, args: Namespace) -> int:
    from dockyard.cli.containers import cmd_cp

    def split(arg: str) -> tuple[str | None, str]:
        if arg.startswith(("/", ".")) or ":" not in arg:
            return None, arg
        s, _, path = arg.partition(":")
        return s, path

    src_s, src = split(args.source)
    dst_s, dst = split(args.destination)
    if (src_s is None) == (dst_s is None):
        raise ComposeError("copying between services is not supported" if src_s else
                           "unknown copy direction")
    service = src_s or dst_s
    assert service is not None
    ctrs = containers_of(client, project, service, args.index)
    if src_s is not None:
        ctrs = ctrs[:1]  # from a service: its first container (or the one --index names)
    for c in ctrs:
        ns = Namespace(src=f"{c['Id']}:{src}" if src_s else src, dest=f"{c['Id']}:{dst}" if dst_s else dst,
                       archive=args.archive, follow_link=args.follow_link, quiet=True)
        _run_cli(cmd_cp, client, ns)
        if sys.stderr.isatty():
            print(f" Container {state.name(c)}  Copied", file=sys.stderr)
    return 0


def attach(client: APIClient, project: Project, args: Namespace) -> int:
    from dockyard.cli.run import cmd_attach

    c = containers_of(client, project, args.service, args.index or 1, all=False)[0]
    return _run_cli(cmd_attach, client, Namespace(container=c["Id"], no_stdin=args.no_stdin,
                                                 sig_proxy=args.sig_proxy, detach_keys=args.detach_keys))


def export(client: APIClient, project: Project, args: Namespace) -> int:
    from dockyard.cli.containers import cmd_export

    c = containers_of(client, project, args.service, args.index or 1)[0]
    return _run_cli(cmd_export, client, Namespace(container=c["Id"], output=args.output))


def commit(client: APIClient, project: Project, args: Namespace) -> int:
    from dockyard.cli.containers import cmd_commit

    c = containers_of(client, project, args.service, args.index or 1)[0]
    return _run_cli(cmd_commit, client, Namespace(container=c["Id"], repository=args.repository,
                                                 author=args.author, change=args.change, message=args.message,
                                                 pause=args.pause))


def stats(client: APIClient, project: Project, args: Namespace) -> int:
    from dockyard.cli.containers import cmd_stats

    names = [args.service] if args.service else []
    for n in names:
        _service(project, n)
    ctrs = state.project_containers(client, project.name, names or None, all=args.all)
    if not ctrs:
        return 0
    return _run_cli(cmd_stats, client, Namespace(all=args.all, no_stream=args.no_stream, no_trunc=args.no_trunc,
                                                format=args.format, containers=[c["Id"] for c in ctrs]))


def wait(client: APIClient, project: Project, args: Namespace) -> int:
    """Block until the first container of the services stops; exit with its code (Compose v2)."""
    ctrs = [c for s in args.names for c in containers_of(client, project, s)]
    done: list[int] = []
    cond = threading.Condition()

    def one(cid: str) -> None:
        w = client_like(client)
        try:
            code = int(w.wait(cid).get("StatusCode", 0))
        except APIError:
            code = 1
        finally:
            w.close()
        with cond:
            done.append(code)
            cond.notify()

    for c in ctrs:
        threading.Thread(target=one, args=(c["Id"],), daemon=True).start()
    with cond:
        while not done:
            cond.wait()
        code = done[0]
    if args.down_project:
        Engine(client, project).down()
    return code


def scale(client: APIClient, project: Project, args: Namespace) -> int:
    counts: dict[str, int] = {}
    for item in args.pairs:
        name, _, n = item.partition("=")
        if name not in project.services:
            raise ComposeError(f"service \"{name}\" not found")
        try:
            counts[name] = int(n)
        except ValueError:
            raise ComposeError(f"invalid scale {item!r}: expected SERVICE=REPLICAS") from None
    Engine(client, project).up(UpOptions(services=list(counts), scale=counts, no_deps=args.no_deps))
    return 0


def _stamp(ns: int) -> datetime:
    return datetime.fromtimestamp(ns / 1e9, tz=UTC).astimezone()


def _go_time(ns: int) -> str:
    """Go's time.Time JSON form (RFC 3339 with nanoseconds, trailing zeros cut)."""
    t = _stamp(ns)
    frac = f"{ns % 1_000_000_000:09d}".rstrip("0")
    off = t.strftime("%z")
    zone = "Z" if off == "+0000" else f"{off[:3]}:{off[3:]}"
    return t.strftime("%Y-%m-%dT%H:%M:%S") + (f".{frac}" if frac else "") + zone


def events(client: APIClient, project: Project, args: Namespace) -> int:
    for n in args.names:
        _service(project, n)
    for ev in client.events(args.since, args.until, {"type": ["container"],
                                                     "label": [f"{L_PROJECT}={project.name}"]}):
        if ev.get("Type") != "container":
            continue
        actor = ev.get("Actor") or {}
        attrs = dict(actor.get("Attributes") or {})
        if attrs.get(L_ONEOFF) == "True":
            continue
        service = attrs.get(L_SERVICE, "")
        if args.names and service not in args.names:
            continue
        attrs = {k: v for k, v in attrs.items() if not k.startswith("com.docker.compose.")}
        ns = int(ev.get("timeNano") or int(ev.get("time", time.time())) * 1_000_000_000)
        if args.json:
            line = json.dumps({"action": ev.get("Action", ""), "attributes": attrs, "id": actor.get("ID", ""),
                               "service": service, "time": _go_time(ns), "type": "container"},
                              separators=(",", ":"))
        else:
            line = (f"{_stamp(ns).strftime('%Y-%m-%d %H:%M:%S.%f')} container {ev.get('Action', '')} "
                    f"{actor.get('ID', '')} ({', '.join(f'{k}={v}' for k, v in attrs.items())})\n")
        print(line, flush=True)
    return 0


VOLUME_HEADERS = {"Driver": "DRIVER", "Name": "VOLUME NAME", "Scope": "SCOPE", "Mountpoint": "MOUNTPOINT",
                  "Labels": "LABELS"}


def volumes(client: APIClient, project: Project, args: Namespace) -> int:
    for n in args.names:
        _service(project, n)
    vols = client.volumes(filters={"label": [f"{L_PROJECT}={project.name}"]}).get("Volumes") or []
    if args.names:
        used = {m.get("Name") for c in state.project_containers(client, project.name, args.names)
                for m in c.get("Mounts") or [] if m.get("Type") == "volume"}
        vols = [v for v in vols if v["Name"] in used]
    if args.quiet:
        for v in vols:
            print(v["Name"])
        return 0
    rows = [{**v, "Labels": ",".join(f"{k}={val}" for k, val in sorted((v.get("Labels") or {}).items()))}
            for v in vols]
    write_rows(args.format, rows, VOLUME_HEADERS, "table {{.Driver}}\t{{.Name}}")
    return 0
