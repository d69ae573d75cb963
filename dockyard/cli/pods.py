"""`dockyard pod ...`: podman's pod commands over the libpod pod paths."""

from __future__ import annotations

import argparse
import sys
import threading
import time
from typing import Any

from dockyard.cli.common import CLIError, Command, Ctx, for_each, parse_filters, print_json
from dockyard.cli.formatting import write_rows

POD_HEADERS = {"ID": "POD ID", "Name": "NAME", "Status": "STATUS", "Created": "CREATED",
               "InfraID": "INFRA ID", "NumContainers": "# OF CONTAINERS", "Labels": "LABELS",
               "Networks": "NETWORKS"}
POD_TABLE = "table {{.ID}}\t{{.Name}}\t{{.Status}}\t{{.Created}}\t{{.InfraID}}\t{{.NumContainers}}"


def parse_publish(values: list[str]) -> list[dict[str, Any]]:
    """`-p [ip:][host:]container[/proto]` → podman's portmappings."""
    out: list[dict[str, Any]] = []
    for v in values:
        spec, _, proto = v.partition("/")
        parts = spec.rsplit(":", 2) if spec.count(":") <= 2 else [spec]
        ip, host, ctr = ("", "", parts[-1])
        if len(parts) == 2:
            host = parts[0]
        elif len(parts) == 3:
            ip, host = parts[0], parts[1]
        if not ctr.isdigit() or (host and not host.isdigit()):
            raise CLIError(f"invalid port mapping {v!r}: want [ip:][hostPort:]containerPort[/protocol]", 125)
        out.append({"container_port": int(ctr), "host_port": int(host) if host else 0, "host_ip": ip,
                    "protocol": proto or "tcp"})
    return out


def cmd_pod_create(ctx: Ctx, args: argparse.Namespace) -> int:
    spec: dict[str, Any] = {
        "name": args.name or args.pod_name, "hostname": args.hostname,
        "labels": dict((lb.split("=", 1) + [""])[:2] for lb in args.label),
        "portmappings": parse_publish(args.publish),
    }
    if args.share:
        spec["share"] = [s for s in args.share.split(",") if s]
    if args.network == "host":
        spec["netns"] = {"nsmode": "host"}
    elif args.network:
        spec["Networks"] = {n: {"aliases": args.network_alias} for n in args.network.split(",")}
    print(ctx.client.create_pod({k: v for k, v in spec.items() if v not in (None, "")})["Id"])
    return 0


def setup_pod_create(p: argparse.ArgumentParser) -> None:
    p.add_argument("--name", help="Assign a name to the pod")
    p.add_argument("-p", "--publish", action="append", default=[], help="Publish a port of the pod")
    p.add_argument("--network", "--net", help="Network(s) the pod joins (comma-separated), or host")
    p.add_argument("--network-alias", action="append", default=[], help="DNS alias of the pod on its networks")
    p.add_argument("--hostname", help="The pod's hostname (default: its name)")
    p.add_argument("-l", "--label", action="append", default=[], help="Set metadata on the pod")
    p.add_argument("--share", help="Namespaces shared by the pod's containers (of ipc,net,uts)")
    p.add_argument("pod_name", nargs="?")


def _rows(pods: list[dict[str, Any]], no_trunc: bool) -> list[dict[str, Any]]:
    from dockyard.util.timefmt import human_duration, parse_rfc3339

    rows = []
    for p in pods:
        try:
            created = human_duration(time.time() - parse_rfc3339(p["Created"])) + " ago"
        except Exception:  # noqa: BLE001 - a foreign daemon's odd time: show it as given
            created = p["Created"]
        rows.append({
            "ID": p["Id"] if no_trunc else p["Id"][:12], "Name": p["Name"], "Status": p["Status"],
            "Created": created, "InfraID": (p.get("InfraId") or "")[: None if no_trunc else 12],
            "NumContainers": len(p.get("Containers") or []),
            "Labels": ",".join(f"{k}={v}" for k, v in (p.get("Labels") or {}).items()),
            "Networks": ",".join(p.get("Networks") or []),
        })
    return rows


def cmd_pod_ls(ctx: Ctx, args: argparse.Namespace) -> int:
    rows = _rows(ctx.client.pods(parse_filters(args.filter)), args.no_trunc)
    if args.quiet:
        for r in rows:
            print(r["ID"])
        return 0
    write_rows(args.format, rows, POD_HEADERS, POD_TABLE)
    return 0


def setup_pod_ls(p: argparse.ArgumentParser) -> None:
    p.add_argument("-q", "--quiet", action="store_true", help="Only display pod IDs")
    p.add_argument("-f", "--filter", action="append", default=[], help="Filter output (name, id, label, status)")
    p.add_argument("--no-trunc", action="store_true", help="Do not truncate the output")
    p.add_argument("--format", default="", help="Format the output using a Go template")


def cmd_pod_inspect(ctx: Ctx, args: argparse.Namespace) -> int:
    from dockyard.client import APIError

    found, failed = [], False
    for name in args.pods:
        try:
            found.append(ctx.client.inspect_pod(name))
        except APIError as e:
            print(f"Error: {e.message}", file=sys.stderr)
            failed = True
    if args.format:
        from dockyard.cli.gotemplate import Template

        tmpl = Template(args.format.replace("\\t", "\t").replace("\\n", "\n"), strict=True)
        for obj in found:
            sys.stdout.write(tmpl.render(obj) + "\n")
    else:
        print_json(found[0] if len(found) == 1 else found)
    return 1 if failed else 0


def setup_pod_inspect(p: argparse.ArgumentParser) -> None:
    p.add_argument("-f", "--format", default="", help="Format the output using a Go template")
    p.add_argument("pods", nargs="+")


def _report(result: dict[str, Any] | None, name: str) -> None:
    errs = (result or {}).get("Errs") or []
    if errs:
        raise CLIError("Error: " + "; ".join(str(e) for e in errs), 125)


def cmd_pod_start(ctx: Ctx, args: argparse.Namespace) -> int:
    return for_each(args.pods, lambda n: _report(ctx.client.start_pod(n), n))


def cmd_pod_stop(ctx: Ctx, args: argparse.Namespace) -> int:
    return for_each(args.pods, lambda n: _report(ctx.client.stop_pod(n, args.time), n))


def cmd_pod_rm(ctx: Ctx, args: argparse.Namespace) -> int:
    return for_each(args.pods, lambda n: ctx.client.remove_pod(n, args.force))


def setup_pods(p: argparse.ArgumentParser) -> None:
    p.add_argument("pods", nargs="+")


def setup_pod_stop(p: argparse.ArgumentParser) -> None:
    p.add_argument("-t", "--time", type=int, help="Seconds to wait before killing the containers")
    setup_pods(p)


def setup_pod_rm(p: argparse.ArgumentParser) -> None:
    p.add_argument("-f", "--force", action="store_true", help="Stop running containers and remove them")
    setup_pods(p)


def cmd_pod_logs(ctx: Ctx, args: argparse.Namespace) -> int:
    """Every member's log, each line prefixed with its container (podman's `pod logs`)."""
    pod = ctx.client.inspect_pod(args.pod)
    members = [c for c in pod.get("Containers") or [] if c["Id"] != pod.get("InfraContainerID")]
    if args.container:
        members = [c for c in members if args.container in (c["Name"], c["Id"]) or c["Id"].startswith(args.container)]
        if not members:
            raise CLIError(f"Error: container {args.container} is not in pod {args.pod}", 125)
    lock = threading.Lock()

    def pump(c: dict[str, Any]) -> None:
        client = Ctx(ctx.host, tls=ctx.tls, context=ctx.context, tlsverify=ctx.tlsverify,
                     tls_files=ctx.tls_files).client if args.follow else ctx.client
        info = client.inspect_container(c["Id"])
        tty = bool(info["Config"].get("Tty"))
        label = (c["Name"] if args.names else c["Id"][:12]).encode()
        stream = client.logs(c["Id"], follow=args.follow, timestamps=args.timestamps, tail=args.tail,
                             since=args.since, until=None)
        pending = b""
        with stream:
            for kind, data in stream.frames(tty):
                pending += data
                *lines, pending = pending.split(b"\n")
                with lock:
                    target = sys.stderr.buffer if kind == 2 else sys.stdout.buffer
                    for line in lines:
                        target.write(label + b" " + line + b"\n")
                    target.flush()
        if pending:
            with lock:
                sys.stdout.buffer.write(label + b" " + pending + b"\n")
                sys.stdout.buffer.flush()

    if not args.follow:
        for c in members:
            pump(c)
        return 0
    threads = [threading.Thread(target=pump, args=(c,), daemon=True) for c in members]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return 0


def setup_pod_logs(p: argparse.ArgumentParser) -> None:
    p.add_argument("-c", "--container", help="Only this container's log")
    p.add_argument("-f", "--follow", action="store_true", help="Follow log output")
    p.add_argument("-n", "--names", action="store_true", help="Prefix lines with container names, not ids")
    p.add_argument("--tail", default="all", help="Number of lines to show from the end of each log")
    p.add_argument("--since", help="Show logs since a timestamp or relative time (e.g. 42m)")
    p.add_argument("-t", "--timestamps", action="store_true", help="Show timestamps")
    p.add_argument("pod")


P = "pod"
COMMANDS = [
    Command("create", cmd_pod_create, setup_pod_create, P, top=False, help="Create a new empty pod"),
    Command("ls", cmd_pod_ls, setup_pod_ls, P, ["ls", "ps", "list"], top=False, help="List pods"),
    Command("inspect", cmd_pod_inspect, setup_pod_inspect, P, top=False, help="Display a pod's configuration"),
    Command("start", cmd_pod_start, setup_pods, P, top=False, help="Start one or more pods"),
    Command("stop", cmd_pod_stop, setup_pod_stop, P, top=False, help="Stop one or more pods"),
    Command("rm", cmd_pod_rm, setup_pod_rm, P, ["rm", "remove"], top=False, help="Remove one or more pods"),
    Command("logs", cmd_pod_logs, setup_pod_logs, P, top=False, help="Fetch the logs of a pod's containers"),
]
