"""network and volume commands."""

from __future__ import annotations

import argparse
from typing import Any

from dockyard.cli import prune
from dockyard.cli.common import Command, Ctx, add_format, for_each, parse_filters
from dockyard.cli.containers import inspect_objects
from dockyard.cli.formatting import write_rows

NET_HEADERS = {"ID": "NETWORK ID", "Name": "NAME", "Driver": "DRIVER", "Scope": "SCOPE", "IPv6": "IPV6",
               "Internal": "INTERNAL", "Labels": "LABELS", "CreatedAt": "CREATED AT"}
NET_TABLE = "table {{.ID}}\t{{.Name}}\t{{.Driver}}\t{{.Scope}}"


def _kv(values: list[str]) -> dict[str, str]:
    return dict((v.split("=", 1) + [""])[:2] for v in values)  # type: ignore[misc]


def cmd_network_create(ctx: Ctx, args: argparse.Namespace) -> int:
    ipam_cfg: list[dict[str, Any]] = []
    for i, subnet in enumerate(args.subnet):
        entry: dict[str, Any] = {"Subnet": subnet}
        if i < len(args.gateway):
            entry["Gateway"] = args.gateway[i]
        if i < len(args.ip_range):
            entry["IPRange"] = args.ip_range[i]
        ipam_cfg.append(entry)
    body: dict[str, Any] = {
        "Name": args.name, "Driver": args.driver, "Internal": args.internal, "Attachable": args.attachable,
        "EnableIPv6": args.ipv6, "Options": _kv(args.opt), "Labels": _kv(args.label), "CheckDuplicate": True,
        "IPAM": {"Driver": args.ipam_driver, "Config": ipam_cfg, "Options": {}},
    }
    print(ctx.client.create_network(body)["Id"])
    return 0


def setup_network_create(p: argparse.ArgumentParser) -> None:
    p.add_argument("-d", "--driver", default="bridge")
    p.add_argument("--subnet", action="append", default=[])
    p.add_argument("--gateway", action="append", default=[])
    p.add_argument("--ip-range", action="append", default=[])
    p.add_argument("--ipam-driver", default="default")
    p.add_argument("--internal", action="store_true")
    p.add_argument("--attachable", action="store_true")
    p.add_argument("--ipv6", action="store_true")
    p.add_argument("-o", "--opt", action="append", default=[])
    p.add_argument("--label", action="append", default=[])
    p.add_argument("name")


def cmd_network_ls(ctx: Ctx, args: argparse.Namespace) -> int:
    nets = sorted(ctx.client.networks(parse_filters(args.filter)), key=lambda n: n["Name"])
    rows = [{"ID": n["Id"] if args.no_trunc else n["Id"][:12], "Name": n["Name"], "Driver": n.get("Driver", ""),
             "Scope": n.get("Scope", ""), "IPv6": str(n.get("EnableIPv6", False)).lower(),
             "Internal": str(n.get("Internal", False)).lower(),
             "Labels": ",".join(f"{k}={v}" for k, v in (n.get("Labels") or {}).items()),
             "CreatedAt": n.get("Created", "")} for n in nets]
    if args.quiet:
        for r in rows:
            print(r["ID"])
        return 0
    write_rows(args.format, rows, NET_HEADERS, NET_TABLE)
    return 0


def setup_ls(p: argparse.ArgumentParser) -> None:
    p.add_argument("-q", "--quiet", action="store_true")
    p.add_argument("-f", "--filter", action="append", default=[])
    p.add_argument("--no-trunc", action="store_true", help="Do not truncate the output")
    add_format(p)


def cmd_network_inspect(ctx: Ctx, args: argparse.Namespace) -> int:
    return inspect_objects(ctx, args.names, "network", args.format)


def cmd_volume_inspect(ctx: Ctx, args: argparse.Namespace) -> int:
    return inspect_objects(ctx, args.names, "volume", args.format)


def setup_inspect(p: argparse.ArgumentParser) -> None:
    p.add_argument("-f", "--format", default="")
    p.add_argument("-v", "--verbose", action="store_true", help="Verbose output for diagnostics")
    p.add_argument("names", nargs="+")


def cmd_network_rm(ctx: Ctx, args: argparse.Namespace) -> int:
    return for_each(args.names, ctx.client.remove_network)


def setup_names(p: argparse.ArgumentParser) -> None:
    p.add_argument("-f", "--force", action="store_true")
    p.add_argument("names", nargs="+")


def cmd_network_connect(ctx: Ctx, args: argparse.Namespace) -> int:
    ep: dict[str, Any] = {}
    if args.alias:
        ep["Aliases"] = args.alias
    if args.ip or args.ip6:
        ep["IPAMConfig"] = {k: v for k, v in (("IPv4Address", args.ip), ("IPv6Address", args.ip6)) if v}
    ctx.client.connect_network(args.network, args.container, ep)
    return 0


def setup_network_connect(p: argparse.ArgumentParser) -> None:
    p.add_argument("--alias", action="append", default=[])
    p.add_argument("--ip")
    p.add_argument("--ip6")
    p.add_argument("network")
    p.add_argument("container")


def cmd_network_disconnect(ctx: Ctx, args: argparse.Namespace) -> int:
    ctx.client.disconnect_network(args.network, args.container, args.force)
    return 0


def setup_network_disconnect(p: argparse.ArgumentParser) -> None:
    p.add_argument("-f", "--force", action="store_true")
    p.add_argument("network")
    p.add_argument("container")


def cmd_network_prune(ctx: Ctx, args: argparse.Namespace) -> int:
    return prune.prune(ctx, "WARNING! This will remove all custom networks not used by at least one container.",
                       args.force, [(prune.NETWORKS, parse_filters(args.filter))])


def setup_prune(p: argparse.ArgumentParser) -> None:
    p.add_argument("-f", "--force", action="store_true")
    p.add_argument("-a", "--all", action="store_true", help="Remove all unused objects, not just anonymous ones")
    p.add_argument("--filter", action="append", default=[])


VOL_HEADERS = {"Name": "VOLUME NAME", "Driver": "DRIVER", "Scope": "SCOPE", "Mountpoint": "MOUNTPOINT",
               "Labels": "LABELS", "Links": "LINKS", "Size": "SIZE"}
VOL_TABLE = "table {{.Driver}}\t{{.Name}}"


def cmd_volume_create(ctx: Ctx, args: argparse.Namespace) -> int:
    name = args.name or args.name_opt or ""
    v = ctx.client.create_volume({"Name": name, "Driver": args.driver, "DriverOpts": _kv(args.opt),
                                  "Labels": _kv(args.label)})
    print(v["Name"])
    return 0


def setup_volume_create(p: argparse.ArgumentParser) -> None:
    p.add_argument("-d", "--driver", default="local")
    p.add_argument("-o", "--opt", action="append", default=[])
    p.add_argument("--label", action="append", default=[])
    p.add_argument("--name", dest="name_opt", help="Specify volume name")
    p.add_argument("name", nargs="?")


def cmd_volume_ls(ctx: Ctx, args: argparse.Namespace) -> int:
    vols = sorted(ctx.client.volumes(parse_filters(args.filter)).get("Volumes") or [], key=lambda v: v["Name"])
    rows = [{"Name": v["Name"], "Driver": v.get("Driver", ""), "Scope": v.get("Scope", ""),
             "Mountpoint": v.get("Mountpoint", ""),
             "Labels": ",".join(f"{k}={x}" for k, x in (v.get("Labels") or {}).items()),
             "Links": "N/A", "Size": "N/A"} for v in vols]
    if args.quiet:
        for r in rows:
            print(r["Name"])
        return 0
    write_rows(args.format, rows, VOL_HEADERS, VOL_TABLE)
    return 0


def cmd_volume_rm(ctx: Ctx, args: argparse.Namespace) -> int:
    return for_each(args.names, lambda n: ctx.client.remove_volume(n, args.force))


def cmd_volume_prune(ctx: Ctx, args: argparse.Namespace) -> int:
    filters = parse_filters(args.filter) or {}
    if args.all:
        filters["all"] = ["true"]
    return prune.prune(ctx, "WARNING! This will remove anonymous local volumes not used by at least one container.",
                       args.force, [(prune.VOLUMES, filters or None)])


N, V = "network", "volume"
COMMANDS = [
    Command("create", cmd_network_create, setup_network_create, N, top=False, help="Create a network"),
    Command("ls", cmd_network_ls, setup_ls, N, ["ls", "list"], top=False, help="List networks"),
    Command("inspect", cmd_network_inspect, setup_inspect, N, top=False, help="Display network details"),
    Command("rm", cmd_network_rm, setup_names, N, ["rm", "remove"], top=False, help="Remove networks"),
    Command("connect", cmd_network_connect, setup_network_connect, N, top=False, help="Connect a container"),
    Command("disconnect", cmd_network_disconnect, setup_network_disconnect, N, top=False,
            help="Disconnect a container"),
    Command("prune", cmd_network_prune, setup_prune, N, top=False, help="Remove all unused networks"),
    Command("create", cmd_volume_create, setup_volume_create, V, top=False, help="Create a volume"),
    Command("ls", cmd_volume_ls, setup_ls, V, ["ls", "list"], top=False, help="List volumes"),
    Command("inspect", cmd_volume_inspect, setup_inspect, V, top=False, help="Display volume details"),
    Command("rm", cmd_volume_rm, setup_names, V, ["rm", "remove"], top=False, help="Remove volumes"),
    Command("prune", cmd_volume_prune, setup_prune, V, top=False, help="Remove unused local volumes"),
]
