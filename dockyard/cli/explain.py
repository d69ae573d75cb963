"""`dockyard explain CONTAINER`: what the kernel holds for a container, section by section, with why.

Dockyard's own command (dockerd has no such endpoint): it reads GET /dockyard/containers/{id}/internals.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from dockyard.cli.common import CLIError, Command, Ctx

KINDS = ("container", "network", "volume", "image")  # tried in this order without --type (as docker inspect)


def setup_explain(p: argparse.ArgumentParser) -> None:
    p.add_argument("container", metavar="OBJECT", help="a container, network, volume or image")
    p.add_argument("--type", choices=KINDS, help="which kind of object (default: the first that matches)")
    p.add_argument("--format", default="", help='"json" prints the raw JSON the daemon sent')


def cmd_explain(ctx: Ctx, args: argparse.Namespace) -> int:
    from dockyard.client import APIError
    from dockyard.client.base import q

    last: APIError | None = None
    for kind in [args.type] if args.type else KINDS:
        try:
            info = ctx.client.get(f"/dockyard/{kind}s/{q(args.container)}/internals")
            break
        except APIError as e:
            if e.status != 404:
                raise
            if e.message == "page not found":
                raise CLIError("explain needs a Dockyard daemon (this one has no /dockyard/ endpoints)") from None
            last = last or e
    else:
        assert last is not None
        raise last  # the first kind's answer ("No such container: x")
    if args.format == "json":
        print(json.dumps(info, indent=2))
    else:
        print(RENDER.get(info.get("Kind", "container"), render)(info), end="")
    return 0


def render(info: dict[str, Any]) -> str:
    out: list[str] = []

    def section(title: str) -> None:
        out.append(f"\n{title}")

    def row(label: str, value: Any, why: str = "") -> None:
        out.append(f"  {label:<14}{value}")
        if why:
            out.append(f"  {'':<14}  why: {why}")

    out.append(f"Container {info['Name']} ({info['Id'][:12]}): {info['State']}")
    if info.get("Note"):
        out.append(f"  {info['Note']}")

    mon = info["Monitor"]
    section("MONITOR")
    row("conmon", f"pid {mon['ConmonPid']}" + ("" if mon["ConmonAlive"] else " (not running)")
        if mon["ConmonPid"] else "none (the container is not running)")
    row("runtime", f"{mon['Runtime']} ({mon['RuntimePath']})", mon["Why"])

    if "Process" in info:
        p, why = info["Process"], info["Process"]["Why"]
        section("PROCESS")
        row("pid", f"{p['HostPid']} on the host, {p['ContainerPid']} inside", why["Pid"])
        row("parent", f"{p['Parent']['Pid']} ({p['Parent']['Name']})")
        row("command", " ".join(p["Command"]))
        row("user", f"uid {p['Uid']} gid {p['Gid']} groups {','.join(map(str, p['Groups'])) or '-'}")
        caps = [c.removeprefix("CAP_").lower() for c in p["Capabilities"]]
        row("capabilities", f"{len(caps)}: {' '.join(caps)}", why["Capabilities"])
        row("no_new_privs", "yes" if p["NoNewPrivs"] else "no", why["NoNewPrivs"])
        row("seccomp", p["Seccomp"], why["Seccomp"])

    if "Namespaces" in info:
        section(f"NAMESPACES (inode in the container; shared = same inode as {info['Namespaces'][0]['HostRef']}/ns)")
        for n in info["Namespaces"]:
            state = "shared" if n["Shared"] else "own"
            out.append(f"  {n['Type']:<7}{state:<7}{n['Inode']:<12}{n['Why']}")

    fs = info["Rootfs"]
    section(f"ROOT FILESYSTEM ({fs['Type']}{'' if fs['Mounted'] else ', not mounted'})")
    row("upper", fs["Upper"], "the container's writable layer")
    row("work", fs["Work"], "overlay's scratch dir for atomic copy-ups")
    for layer in fs["Lower"]:  # top first
        row("lower", f"{layer['Role']}: {layer['Dir']}", layer["Why"])
    out.append(f"  why: {fs['Why']}")

    section("MOUNTS (what the container sees, in mount order)")
    last_why = ""
    for m in info["Mounts"]:
        out.append(f"  {m['Target']:<28}{m['Type']:<9}{m['Source']:<12}{m['Options']}")
        if m["Why"] and m["Why"] != last_why:  # said once for a run of alike mounts (cgroup controllers)
            out.append(f"  {'':<28}  why: {m['Why']}")
        last_why = m["Why"]

    cg = info["Cgroups"]
    section(f"CGROUPS (v{cg['Version']})" if "Version" in cg else "CGROUPS (none while stopped)")
    paths = cg.get("Paths", {})
    if len(set(paths.values())) == 1:
        row("path", f"{next(iter(paths.values()))} (in every hierarchy)")
    else:
        for controller, path in sorted(paths.items()):
            row(controller or "unified", path)
    for lim in cg.get("Limits", []):
        row(lim["Name"], _limit(lim["Name"], lim["Value"]), lim["Why"])
    if cg.get("Configured"):
        row("configured", " ".join(f"{k}={v}" for k, v in cg["Configured"].items()))
    if cg.get("Why"):
        out.append(f"  why: {cg['Why']}")

    net = info["Network"]
    section(f"NETWORK ({net['Mode']})")
    if net.get("Why"):
        out.append(f"  {net['Why']}")
    for port, binds in (net.get("Ports") or {}).items():
        row("publish", f"{port} <- " + ", ".join(f"{b.get('HostIp') or '0.0.0.0'}:{b.get('HostPort')}"
                                                   for b in binds or []), "DNAT rules made at start")
    for i in net.get("Interfaces", []):
        row(i["Container"], f"{' '.join(i['Addresses'])} <-> host {i['Host']} on bridge {i['Bridge']}", i["Why"])
    if net.get("Gateways"):
        row("gateway", " ".join(net["Gateways"]), "the bridge's address: the container's default route")
    if net.get("Rules"):
        out.append(f"  nft table {net['Table']}, the rules that touch this container:")
        for r in net["Rules"]:
            out.append(f"    [{r['Chain']}] {r['Rule']}")
            if r["Why"]:
                out.append(f"      why: {r['Why']}")
    return "\n".join(out) + "\n"


def render_network(info: dict[str, Any]) -> str:
    out = [f"Network {info['Name']} ({info['Id'][:12]}): driver {info['Driver']}"]
    if "Bridge" not in info:
        out.append(f"  why: {info.get('Why', '')}")
        return "\n".join(out) + "\n"
    br = info["Bridge"]
    out += ["", "BRIDGE", f"  {br['Name']:<17}{'state ' + str(br['State']) if br['Exists'] else 'missing!'} "
            f"{' '.join(br['Addresses'])}", f"  {'':<14}  why: {br['Why']}",
            f"  {'subnet':<14}{info['Subnet']} (gateway {info['Gateway']})", f"  {'':<14}  why: {info['SubnetWhy']}"]
    dns = info["DNS"]
    out += ["", "DNS"]
    if "Address" in dns:
        on = [k for k, v in dns["Listening"].items() if v]
        out.append(f"  {dns['Address']:<22}{'listening on ' + '+'.join(on) if on else 'not listening'}")
    out.append(f"  why: {dns['Why']}")
    out += ["", "MEMBERS (veths plugged into the bridge)"]
    for m in info["Members"] or []:
        who = f"{m['Container']} {m['Address']}" if m["Container"] else "-"
        out.append(f"  {m['Host']:<14}{str(m['State']):<8}{who}")
    if not info["Members"]:
        out.append("  none: no running container is on this network")
    out += ["", f"RULES (nft table {info['Table']}, those that act on this network)"]
    for r in info["Rules"]:
        out.append(f"  [{r['Chain']}] {r['Rule']}")
        if r["Why"]:
            out.append(f"    why: {r['Why']}")
    return "\n".join(out) + "\n"


def render_image(info: dict[str, Any]) -> str:
    out = [f"Image {', '.join(info['Tags']) or '<none>'} ({info['Id'][7:19]})", "", "LAYERS (bottom to top)"]
    for layer in info["Layers"]:
        out.append(f"  {layer['Index']:>2}. {layer['Dir']}{'' if layer['Exists'] else ' (missing!)'}")
        if layer["CreatedBy"]:
            out.append(f"      made by: {layer['CreatedBy'][:160]}")
        out.append(f"      diff {layer['DiffID'][:19]}  chain {layer['ChainID'][:19]}  {layer['Size']} bytes")
        if layer["SharedWith"]:
            out.append(f"      shared with: {', '.join(layer['SharedWith'])}")
    out.append(f"  why: {info['Layers'][0]['Why']}" if info["Layers"] else "  no layers")
    out += ["", f"CONTAINERS using it: {', '.join(info['Containers']) or 'none'}", f"  why: {info['Why']}"]
    return "\n".join(out) + "\n"


def render_volume(info: dict[str, Any]) -> str:
    out = [f"Volume {info['Name']} (driver {info['Driver']})", "",
           f"  {'directory':<12}{info['Directory']}{'' if info['Exists'] else ' (missing!)'}"
           + (f"  uid {info['Uid']} gid {info['Gid']} mode {info['Mode']}" if "Uid" in info else ""),
           f"  {'options':<12}{info['Options'] or 'none'}",
           f"  {'mounted':<12}{'yes' if info['Mounted'] else 'no'}", f"  {'':<12}  why: {info['MountedWhy']}",
           "", "USED BY"]
    for u in info["Users"]:
        out.append(f"  {u['Container']:<24}at {u['Destination']} ({'rw' if u['RW'] else 'ro'})"
                   f"{'' if u['Running'] else ', not running'}")
    if not info["Users"]:
        out.append("  no container")
    out.append(f"  why: {info['Why']}")
    return "\n".join(out) + "\n"


RENDER = {"network": render_network, "image": render_image, "volume": render_volume}


def _limit(name: str, value: Any) -> str:
    if value is None:
        return "unlimited"
    if name.startswith("memory"):
        return f"{value / 2**20:g} MiB ({value} bytes)"
    return str(value)


COMMANDS = [Command("explain", cmd_explain, setup_explain,
                    help="Show what the kernel holds for a container, network, volume or image, and why "
                         "(Dockyard only)")]
