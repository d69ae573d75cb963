"""`dockyard explain CONTAINER`: what the kernel holds for a container, section by section, with why.

Dockyard's own command (dockerd has no such endpoint): it reads GET /dockyard/containers/{id}/internals.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from dockyard.cli.common import CLIError, Command, Ctx


def setup_explain(p: argparse.ArgumentParser) -> None:
    p.add_argument("container")
    p.add_argument("--format", default="", help='"json" prints the raw JSON the daemon sent')


def cmd_explain(ctx: Ctx, args: argparse.Namespace) -> int:
    from dockyard.client import APIError

    try:
        info = ctx.client.get(f"/dockyard/containers/{args.container}/internals")
    except APIError as e:
        if e.status == 404 and "container" not in e.message.lower():
            raise CLIError("explain needs a Dockyard daemon (this one has no /dockyard/ endpoints)") from None
        raise
    if args.format == "json":
        print(json.dumps(info, indent=2))
    else:
        print(render(info), end="")
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


def _limit(name: str, value: Any) -> str:
    if value is None:
        return "unlimited"
    if name.startswith("memory"):
        return f"{value / 2**20:g} MiB ({value} bytes)"
    return str(value)


COMMANDS = [Command("explain", cmd_explain, setup_explain,
                    help="Show a container's namespaces, mounts, cgroups and network, and why (Dockyard only)")]
