"""version, info, events, system df/prune, login, logout."""

from __future__ import annotations

import argparse
import json
import os
import sys

from dockyard.cli import prune
from dockyard.cli.common import CLIError, Command, Ctx, add_format, parse_filters
from dockyard.cli.formatting import human_size, write_rows
from dockyard.client import APIError, ConnectError

TYPE_CHECKING = False  # typing's, without importing typing (~3 ms of every command's start-up)
if TYPE_CHECKING:
    from typing import Any

CLIENT_VERSION = "0.1.0"


def cmd_version(ctx: Ctx, args: argparse.Namespace) -> int:
    from dockyard.client.base import MAX_API_VERSION
    from dockyard.util.buildinfo import build_time, git_commit

    client_info = {"Version": CLIENT_VERSION, "ApiVersion": MAX_API_VERSION, "Os": sys.platform,
                   # os.uname and sys.version give what platform.machine/python_version do, without
                   # importing platform (~2 ms of `version`)
                   "Arch": {"x86_64": "amd64", "aarch64": "arm64"}.get(os.uname().machine, os.uname().machine),
                   "GoVersion": f"python{sys.version.split()[0]}", "GitCommit": git_commit(),
                   "BuildTime": build_time()}
    server: dict[str, Any] | None = None
    error = None
    try:
        server = ctx.client.version()
        client_info["ApiVersion"] = ctx.client.api_version
    except (APIError, ConnectError) as e:
        error = e
    if args.format:
        from dockyard.cli.gotemplate import Template

        print(Template(args.format).render({"Client": client_info, "Server": server}))
    else:
        print(f"Client:\n Version:           {client_info['Version']}\n API version:       "
              f"{client_info['ApiVersion']}\n Go version:        {client_info['GoVersion']}\n"
              f" Git commit:        {client_info['GitCommit']}\n Built:             {client_info['BuildTime']}\n"
              f" OS/Arch:           {client_info['Os']}/{client_info['Arch']}\n"
              f" Context:           {ctx.resolved_context}")
        if server:
            print(f"\nServer: {server.get('Platform', {}).get('Name', '')}".rstrip())
            print(f" Engine:\n  Version:          {server.get('Version')}\n  API version:      "
                  f"{server.get('ApiVersion')} (minimum version {server.get('MinAPIVersion', '')})\n"
                  f"  Go version:       {server.get('GoVersion', '')}\n  Git commit:       "
                  f"{server.get('GitCommit', '')}\n  Built:            {server.get('BuildTime', '')}\n"
                  f"  OS/Arch:          {server.get('Os')}/{server.get('Arch')}\n"
                  f"  Experimental:     {str(server.get('Experimental', False)).lower()}")
            for comp in server.get("Components") or []:
                if comp.get("Name") != "Engine":
                    print(f" {comp['Name']}:\n  Version:          {comp.get('Version', '')}")
                    if (comp.get("Details") or {}).get("GitCommit"):
                        print(f"  GitCommit:        {comp['Details']['GitCommit']}")
    if error:
        raise CLIError(str(error) if isinstance(error, ConnectError) else f"Error response from daemon: {error}")
    return 0


def setup_version(p: argparse.ArgumentParser) -> None:
    p.add_argument("-f", "--format", default="")


def cmd_info(ctx: Ctx, args: argparse.Namespace) -> int:
    info = ctx.client.info()
    if args.format:
        from dockyard.cli.gotemplate import Template

        print(Template(args.format.replace("\\n", "\n")).render(info))
        return 0
    lines = [
        "Client:", f" Version:    {CLIENT_VERSION}", f" Context:    {ctx.resolved_context}", "",
        "Server:",
        f" Containers: {info.get('Containers', 0)}",
        f"  Running: {info.get('ContainersRunning', 0)}",
        f"  Paused: {info.get('ContainersPaused', 0)}",
        f"  Stopped: {info.get('ContainersStopped', 0)}",
        f" Images: {info.get('Images', 0)}",
        f" Server Version: {info.get('ServerVersion', '')}",
        f" Storage Driver: {info.get('Driver', '')}",
        f" Logging Driver: {info.get('LoggingDriver', '')}",
        f" Cgroup Driver: {info.get('CgroupDriver', '')}",
        f" Cgroup Version: {info.get('CgroupVersion', '')}",
        f" Runtimes: {' '.join(sorted(info.get('Runtimes') or {}))}",
        f" Default Runtime: {info.get('DefaultRuntime', '')}",
        f" Kernel Version: {info.get('KernelVersion', '')}",
        f" Operating System: {info.get('OperatingSystem', '')}",
        f" OSType: {info.get('OSType', '')}",
        f" Architecture: {info.get('Architecture', '')}",
        f" CPUs: {info.get('NCPU', 0)}",
        f" Total Memory: {_gib(info.get('MemTotal', 0))}",
        f" Name: {info.get('Name', '')}",
        f" ID: {info.get('ID', '')}",
        f" Docker Root Dir: {info.get('DockerRootDir', '')}",
        f" Debug Mode: {str(info.get('Debug', False)).lower()}",
        f" Experimental: {str(info.get('ExperimentalBuild', False)).lower()}",
        f" Live Restore Enabled: {str(info.get('LiveRestoreEnabled', False)).lower()}",
    ]
    print("\n".join(lines))
    for w in info.get("Warnings") or []:
        print(w, file=sys.stderr)
    return 0


def _gib(n: int) -> str:
    from dockyard.cli.formatting import bytes_size

    return bytes_size(n)


def cmd_events(ctx: Ctx, args: argparse.Namespace) -> int:
    from dockyard.cli.containers import _time_arg

    since, until = _time_arg(args.since or None), _time_arg(args.until or None)
    tmpl = None
    if args.format and args.format != "json":
        from dockyard.cli.gotemplate import Template

        tmpl = Template(args.format.replace("\\t", "\t").replace("\\n", "\n"))
    for ev in ctx.client.events(since, until, parse_filters(args.filter)):
        if args.format == "json":
            print(json.dumps(ev, separators=(",", ":")), flush=True)
        elif tmpl:
            print(tmpl.render(ev), flush=True)
        else:
            print(_event_line(ev), flush=True)
    return 0


def _event_line(ev: dict[str, Any]) -> str:
    """docker's default line: 2024-01-02T03:04:05.123456789Z container start <id> (image=..., name=...)"""
    import time

    ns = ev.get("timeNano") or int(ev.get("time", 0)) * 1_000_000_000
    sec, frac = divmod(int(ns), 1_000_000_000)
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(sec)) + f".{frac:09d}" + time.strftime("%z")
    stamp = stamp[:-2] + ":" + stamp[-2:]
    actor = ev.get("Actor") or {}
    attrs = actor.get("Attributes") or {}
    line = f"{stamp} {ev.get('Type', '')} {ev.get('Action', '')} {actor.get('ID', '')}"
    if attrs:
        line += " (" + ", ".join(f"{k}={v}" for k, v in sorted(attrs.items())) + ")"
    return line


def setup_events(p: argparse.ArgumentParser) -> None:
    p.add_argument("--since")
    p.add_argument("--until")
    p.add_argument("-f", "--filter", action="append", default=[])
    add_format(p)


def cmd_df(ctx: Ctx, args: argparse.Namespace) -> int:
    df = ctx.client.df()
    images = df.get("Images") or []
    ctrs = df.get("Containers") or []
    vols = df.get("Volumes") or []
    cache = df.get("BuildCache") or []
    active_images = sum(1 for i in images if i.get("Containers", 0) > 0)
    img_size = df.get("LayersSize") or sum(i.get("Size", 0) for i in images)
    # RECLAIMABLE as docker's formatter works it out: what removing the unused would free, and its share
    used = sum(i.get("Size", 0) - max(i.get("SharedSize", 0), 0) for i in images if i.get("Containers", 0) > 0)
    ctr_size = sum(max(c.get("SizeRw", 0) or 0, 0) for c in ctrs)
    ctr_free = sum(max(c.get("SizeRw", 0) or 0, 0) for c in ctrs if c.get("State") not in ("running", "paused"))
    vol_sizes = [(v.get("UsageData") or {}) for v in vols]
    vol_size = sum(u.get("Size", 0) for u in vol_sizes if u.get("Size", -1) != -1)
    vol_free = sum(u.get("Size", 0) for u in vol_sizes if u.get("Size", -1) != -1 and u.get("RefCount", 0) == 0)
    cache_free = sum(c.get("Size", 0) for c in cache if not c.get("InUse") and not c.get("Shared"))
    rows = [
        {"Type": "Images", "TotalCount": str(len(images)), "Active": str(active_images),
         "Size": _hs(img_size), "Reclaimable": _share(img_size - used, img_size)},
        {"Type": "Containers", "TotalCount": str(len(ctrs)),
         "Active": str(sum(1 for c in ctrs if c.get("State") == "running")),
         "Size": _hs(ctr_size), "Reclaimable": _share(ctr_free, ctr_size)},
        {"Type": "Local Volumes", "TotalCount": str(len(vols)),
         "Active": str(sum(1 for v in vols if (v.get("UsageData") or {}).get("RefCount", 0) > 0)),
         "Size": _hs(vol_size), "Reclaimable": _share(vol_free, vol_size)},
        {"Type": "Build Cache", "TotalCount": str(len(cache)),
         "Active": str(sum(1 for c in cache if c.get("InUse"))),
         "Size": _hs(sum(c.get("Size", 0) for c in cache)), "Reclaimable": _hs(cache_free)},
    ]
    headers = {"Type": "TYPE", "TotalCount": "TOTAL", "Active": "ACTIVE", "Size": "SIZE",
               "Reclaimable": "RECLAIMABLE"}
    write_rows(args.format, rows, headers,
               "table {{.Type}}\t{{.TotalCount}}\t{{.Active}}\t{{.Size}}\t{{.Reclaimable}}")
    return 0


def _hs(size: float) -> str:
    return human_size(size, 4)  # system df uses go-units HumanSize: four significant digits


def _share(part: int, total: int) -> str:
    """docker's `1.2MB (40%)`; the size alone when there is nothing at all."""
    return f"{_hs(part)} ({part * 100 // total}%)" if total > 0 else _hs(part)


def setup_df(p: argparse.ArgumentParser) -> None:
    p.add_argument("-v", "--verbose", action="store_true")
    add_format(p)


def cmd_system_prune(ctx: Ctx, args: argparse.Namespace) -> int:
    what = ["all stopped containers", "all networks not used by at least one container"]
    if args.volumes:
        what.append("all anonymous volumes not used by at least one container")
    what.append("all images without at least one container associated to them" if args.all
                else "all dangling images")
    msg = "WARNING! This will remove:\n" + "\n".join(f"  - {w}" for w in what)
    filters = parse_filters(args.filter)
    images = {**(filters or {}), "dangling": ["false" if args.all else "true"]}
    steps = [(prune.CONTAINERS, filters), (prune.NETWORKS, filters)]
    steps += [(prune.VOLUMES, filters)] if args.volumes else []
    return prune.prune(ctx, msg, args.force, [*steps, (prune.IMAGES, images)])


def setup_system_prune(p: argparse.ArgumentParser) -> None:
    p.add_argument("-a", "--all", action="store_true")
    p.add_argument("-f", "--force", action="store_true")
    p.add_argument("--volumes", action="store_true")
    p.add_argument("--filter", action="append", default=[])


def cmd_login(ctx: Ctx, args: argparse.Namespace) -> int:
    from dockyard.cli.auth import normalize_server, store_auth

    server = normalize_server(args.server)
    username = args.username or input("Username: ")
    if args.password_stdin:
        password = sys.stdin.read().rstrip("\n")
    else:
        import getpass

        password = args.password or getpass.getpass("Password: ")
    if args.password:
        print("WARNING! Using --password via the CLI is insecure. Use --password-stdin.", file=sys.stderr)
    result = ctx.client.login({"username": username, "password": password, "serveraddress": server})
    store_auth(server, username, password)
    print(result.get("Status") or "Login Succeeded")
    return 0


def setup_login(p: argparse.ArgumentParser) -> None:
    p.add_argument("-u", "--username")
    p.add_argument("-p", "--password")
    p.add_argument("--password-stdin", action="store_true")
    p.add_argument("server", nargs="?")


def cmd_logout(ctx: Ctx, args: argparse.Namespace) -> int:
    from dockyard.cli.auth import normalize_server, remove_auth

    server = normalize_server(args.server)
    if remove_auth(server):
        print(f"Removing login credentials for {server}")
    else:
        print(f"Not logged in to {server}")
    return 0


def setup_logout(p: argparse.ArgumentParser) -> None:
    p.add_argument("server", nargs="?")


S = "system"
COMMANDS = [
    Command("version", cmd_version, setup_version, help="Show the Docker version information"),
    Command("info", cmd_info, setup_version, S, help="Display system-wide information"),
    Command("events", cmd_events, setup_events, S, help="Get real time events from the server"),
    Command("df", cmd_df, setup_df, S, top=False, help="Show docker disk usage"),
    Command("prune", cmd_system_prune, setup_system_prune, S, top=False, help="Remove unused data"),
    Command("login", cmd_login, setup_login, help="Authenticate to a registry"),
    Command("logout", cmd_logout, setup_logout, help="Log out from a registry"),
]
