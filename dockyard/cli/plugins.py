"""`dockyard plugin ...`: docker's plugin commands (managed plugins) over the Engine API's /plugins."""

from __future__ import annotations

import argparse
import io
import sys
import tarfile
from pathlib import Path
from typing import Any
from urllib.parse import quote

from dockyard.cli.common import CLIError, Command, Ctx, for_each, parse_filters, print_json

P = "plugin"
HEADERS = {"ID": "ID", "Name": "NAME", "Description": "DESCRIPTION", "Enabled": "ENABLED"}
TABLE = "table {{.ID}}\t{{.Name}}\t{{.Description}}\t{{.Enabled}}"


def _q(name: str) -> str:
    return quote(name, safe="/:")


def _auth(ref: str) -> dict[str, str]:
    from dockyard.cli.run import registry_auth
    from dockyard.client.api import auth_header

    return auth_header(registry_auth(ref)) or {"X-Registry-Auth": "e30="}


def cmd_ls(ctx: Ctx, args: argparse.Namespace) -> int:
    from dockyard.cli.formatting import write_rows

    plugins = ctx.client.get("/plugins", {"filters": _filters(args.filter)}) or []
    rows = [{"ID": p["Id"] if args.no_trunc else p["Id"][:12], "Name": p["Name"],
             "Description": p["Config"].get("Description", ""), "Enabled": str(p["Enabled"]).lower()}
            for p in plugins]
    if args.quiet:
        for r in rows:
            print(r["ID"])
        return 0
    write_rows(args.format, rows, HEADERS, TABLE)
    return 0


def _filters(values: list[str]) -> str | None:
    import json

    f = parse_filters(values)
    return json.dumps(f) if f else None


def setup_ls(p: argparse.ArgumentParser) -> None:
    p.add_argument("-q", "--quiet", action="store_true", help="Only display plugin IDs")
    p.add_argument("-f", "--filter", action="append", default=[], help="Provide filter values (e.g. 'enabled=true')")
    p.add_argument("--no-trunc", action="store_true", help="Don't truncate output")
    p.add_argument("--format", default="", help="Format output using a custom template: 'table', "
                   "'table TEMPLATE', 'json' or a Go template")


def cmd_inspect(ctx: Ctx, args: argparse.Namespace) -> int:
    from dockyard.client import APIError

    out: list[Any] = []
    failed = False
    for name in args.names:
        try:
            out.append(ctx.client.get(f"/plugins/{_q(name)}/json"))
        except APIError as e:
            failed = True
            print(f"Error response from daemon: {e.message}", file=sys.stderr)
    if args.format:
        from dockyard.cli.gotemplate import render

        for obj in out:
            print(render(args.format, obj))
    else:
        print_json(out)
    return 1 if failed else 0


def setup_inspect(p: argparse.ArgumentParser) -> None:
    p.add_argument("-f", "--format", default="", help="Format the output using the given Go template")
    p.add_argument("names", nargs="+", metavar="PLUGIN", help="Plugin names or IDs")


def cmd_enable(ctx: Ctx, args: argparse.Namespace) -> int:
    ctx.client.post(f"/plugins/{_q(args.name)}/enable", {"timeout": args.timeout})
    print(args.name)
    return 0


def setup_enable(p: argparse.ArgumentParser) -> None:
    p.add_argument("--timeout", type=int, default=30, help="HTTP client timeout (in seconds)")
    p.add_argument("name", metavar="PLUGIN", help="Plugin name")


def cmd_disable(ctx: Ctx, args: argparse.Namespace) -> int:
    ctx.client.post(f"/plugins/{_q(args.name)}/disable", {"force": "1" if args.force else None})
    print(args.name)
    return 0


def setup_force_name(p: argparse.ArgumentParser) -> None:
    p.add_argument("-f", "--force", action="store_true", help="Force the disable of an active plugin")
    p.add_argument("name", metavar="PLUGIN", help="Plugin name")


def cmd_rm(ctx: Ctx, args: argparse.Namespace) -> int:
    return for_each(args.names, lambda n: ctx.client.delete(f"/plugins/{_q(n)}", {"force": "1" if args.force else None}))


def setup_rm(p: argparse.ArgumentParser) -> None:
    p.add_argument("-f", "--force", action="store_true", help="Force the removal of an active plugin")
    p.add_argument("names", nargs="+", metavar="PLUGIN", help="Plugin names or IDs")


def cmd_set(ctx: Ctx, args: argparse.Namespace) -> int:
    ctx.client.post(f"/plugins/{_q(args.name)}/set", json_body=args.settings)
    return 0


def setup_set(p: argparse.ArgumentParser) -> None:
    p.add_argument("name", metavar="PLUGIN", help="Plugin name")
    p.add_argument("settings", nargs="+", metavar="KEY=VALUE", help="Settings to change")


def cmd_create(ctx: Ctx, args: argparse.Namespace) -> int:
    d = Path(args.plugin_dir)
    if not (d / "config.json").is_file():
        raise CLIError(f"config.json is missing in {d}")
    if not (d / "rootfs").is_dir():
        raise CLIError(f"rootfs is missing in {d}")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        tar.add(d / "config.json", "config.json")
        tar.add(d / "rootfs", "rootfs")
    ctx.client.post("/plugins/create", {"name": args.name}, data=buf.getvalue(),
                    headers={"Content-Type": "application/x-tar"})
    print(args.name)
    return 0


def setup_create(p: argparse.ArgumentParser) -> None:
    p.add_argument("--compress", action="store_true", help="Compress the context using gzip (ignored)")
    p.add_argument("name", metavar="PLUGIN", help="Plugin name")
    p.add_argument("plugin_dir", metavar="PLUGIN-DATA-DIR", help="Directory with config.json and rootfs")


def _granted(ctx: Ctx, remote: str, grant_all: bool) -> list[Any]:
    privs: list[Any] = ctx.client.request("GET", "/plugins/privileges", {"remote": remote},
                                          headers=_auth(remote)) or []
    if privs and not grant_all:
        print(f"Plugin \"{remote}\" is requesting the following privileges:")
        for p in privs:
            print(f" - {p['Name']}: {p.get('Value')}")
        if not sys.stdin.isatty():
            raise CLIError("the plugin's privileges were not granted (use --grant-all-permissions)")
        if input("Do you grant the above permissions? [y/N] ").strip().lower() not in ("y", "yes"):
            raise CLIError("plugin privileges have not been granted")
    return privs


def _stream(ctx: Ctx, method: str, path: str, params: dict[str, Any], body: Any, ref: str) -> None:
    with ctx.client.stream(method, path, params, json_body=body, headers=_auth(ref)) as s:
        for ev in s.json():
            if ev.get("error"):
                raise CLIError(str(ev["error"]))
            line = f"{ev['id']}: {ev['status']}" if ev.get("id") else ev.get("status", "")
            if line:
                print(line, flush=True)


def cmd_install(ctx: Ctx, args: argparse.Namespace) -> int:
    privs = _granted(ctx, args.remote, args.grant_all_permissions)
    name = args.alias or args.remote
    _stream(ctx, "POST", "/plugins/pull", {"remote": args.remote, "name": name}, privs, args.remote)
    if args.settings:
        ctx.client.post(f"/plugins/{_q(name)}/set", json_body=args.settings)
    if not args.disable:
        ctx.client.post(f"/plugins/{_q(name)}/enable", {"timeout": 0})
    print(f"Installed plugin {args.remote}")
    return 0


def setup_install(p: argparse.ArgumentParser) -> None:
    p.add_argument("--alias", help="Local name for plugin")
    p.add_argument("--disable", action="store_true", help="Do not enable the plugin on install")
    p.add_argument("--grant-all-permissions", action="store_true", help="Grant all permissions necessary to run")
    p.add_argument("remote", metavar="PLUGIN", help="The plugin to pull from a registry")
    p.add_argument("settings", nargs="*", metavar="KEY=VALUE", help="Settings to set at install")


def cmd_upgrade(ctx: Ctx, args: argparse.Namespace) -> int:
    remote = args.remote or ctx.client.get(f"/plugins/{_q(args.name)}/json").get("PluginReference") or args.name
    privs = _granted(ctx, remote, args.grant_all_permissions)
    _stream(ctx, "POST", f"/plugins/{_q(args.name)}/upgrade", {"remote": remote}, privs, remote)
    print(f"Upgraded plugin {args.name} to {remote}")
    return 0


def setup_upgrade(p: argparse.ArgumentParser) -> None:
    p.add_argument("--grant-all-permissions", action="store_true", help="Grant all permissions necessary to run")
    p.add_argument("--skip-remote-check", action="store_true", help="Do not check if specified remote plugin matches existing plugin image")
    p.add_argument("name", metavar="PLUGIN", help="Plugin name")
    p.add_argument("remote", nargs="?", metavar="REMOTE", help="The plugin to upgrade to (default: its reference)")


def cmd_push(ctx: Ctx, args: argparse.Namespace) -> int:
    _stream(ctx, "POST", f"/plugins/{_q(args.name)}/push", {}, None, args.name)
    return 0


def setup_push(p: argparse.ArgumentParser) -> None:
    p.add_argument("--disable-content-trust", action="store_true", help="Skip image signing (the default here)")
    p.add_argument("name", metavar="PLUGIN[:TAG]", help="Plugin name to push")


COMMANDS = [
    Command("create", cmd_create, setup_create, P, top=False,
            help="Create a plugin from a rootfs and configuration"),
    Command("disable", cmd_disable, setup_force_name, P, top=False, help="Disable a plugin"),
    Command("enable", cmd_enable, setup_enable, P, top=False, help="Enable a plugin"),
    Command("inspect", cmd_inspect, setup_inspect, P, top=False, help="Display detailed information on plugins"),
    Command("install", cmd_install, setup_install, P, top=False, help="Install a plugin"),
    Command("ls", cmd_ls, setup_ls, P, ["ls", "list"], top=False, help="List plugins"),
    Command("push", cmd_push, setup_push, P, top=False, help="Push a plugin to a registry"),
    Command("rm", cmd_rm, setup_rm, P, ["rm", "remove"], top=False, help="Remove plugins"),
    Command("set", cmd_set, setup_set, P, top=False, help="Change settings for a plugin"),
    Command("upgrade", cmd_upgrade, setup_upgrade, P, top=False, help="Upgrade an existing plugin"),
]
