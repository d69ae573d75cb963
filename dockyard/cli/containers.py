"""Container commands that do not wire a terminal: ps, inspect, logs, stop, rm, cp, export, ..."""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import time

from dockyard.cli import prune
from dockyard.cli.common import CLIError, Command, Ctx, add_format, for_each, parse_filters, print_json
from dockyard.cli.formatting import (
    ago,
    bytes_size,
    display_ports,
    ellipsis,
    human_size,
    tabwrite,
    write_rows,
)
from dockyard.client import STDERR, APIError

TYPE_CHECKING = False  # typing's, without importing typing (~3 ms of every command's start-up)
if TYPE_CHECKING:
    from typing import Any

PS_HEADERS = {
    "ID": "CONTAINER ID", "Image": "IMAGE", "Command": "COMMAND", "CreatedAt": "CREATED AT",
    "RunningFor": "CREATED", "Ports": "PORTS", "State": "STATE", "Status": "STATUS", "Size": "SIZE",
    "Names": "NAMES", "Labels": "LABELS", "Mounts": "MOUNTS", "Networks": "NETWORKS",
    "LocalVolumes": "LOCAL VOLUMES", "Platform": "PLATFORM",
}
PS_TABLE = "table {{.ID}}\t{{.Image}}\t{{.Command}}\t{{.RunningFor}}\t{{.Status}}\t{{.Ports}}\t{{.Names}}"


def _ps_row(c: dict[str, Any], trunc: bool) -> dict[str, Any]:
    cid = c["Id"][:12] if trunc else c["Id"]
    image = c.get("Image", "")
    if trunc and image.startswith("sha256:"):
        image = image[7:19]
    command = c.get("Command", "")
    names = [n.lstrip("/") for n in c.get("Names") or []]
    if trunc:
        names = [n for n in names if "/" not in n][:1] or names[:1]
    created = c.get("Created", 0)
    size = ""
    if "SizeRw" in c or "SizeRootFs" in c:
        size = human_size(c.get("SizeRw") or 0)
        if c.get("SizeRootFs"):
            size += f" (virtual {human_size(c['SizeRootFs'])})"
    mounts = [m.get("Name") or m.get("Source", "") for m in c.get("Mounts") or []]
    networks = sorted((c.get("NetworkSettings") or {}).get("Networks") or {})
    labels = c.get("Labels") or {}
    return {
        "ID": cid, "Image": image,
        "Command": json.dumps(ellipsis(command, 20) if trunc else command, ensure_ascii=False),
        "CreatedAt": time.strftime("%Y-%m-%d %H:%M:%S %z %Z", time.localtime(created)),
        "RunningFor": ago(created), "Ports": display_ports(c.get("Ports") or []),
        "State": c.get("State", ""), "Status": c.get("Status", ""), "Size": size,
        "Names": ",".join(names), "Labels": ",".join(f"{k}={v}" for k, v in sorted(labels.items())),
        "Mounts": ",".join(mounts), "Networks": ",".join(networks),
        "LocalVolumes": str(sum(1 for m in c.get("Mounts") or [] if m.get("Driver") == "local")),
    }


def cmd_ps(ctx: Ctx, args: argparse.Namespace) -> int:
    limit = 1 if args.latest else (args.last if args.last and args.last > 0 else None)
    rows = ctx.client.containers(all=args.all or bool(limit), limit=limit, size=args.size,
                                 filters=parse_filters(args.filter))
    trunc = not args.no_trunc
    if args.quiet:
        for c in rows:
            print(c["Id"][:12] if trunc else c["Id"])
        return 0
    table = PS_TABLE + ("\t{{.Size}}" if args.size else "")
    write_rows(args.format, [_ps_row(c, trunc) for c in rows], PS_HEADERS, table)
    return 0


def setup_ps(p: argparse.ArgumentParser) -> None:
    p.add_argument("-a", "--all", action="store_true")
    p.add_argument("-q", "--quiet", action="store_true")
    p.add_argument("-n", "--last", type=int, default=-1)
    p.add_argument("-l", "--latest", action="store_true")
    p.add_argument("-f", "--filter", action="append", default=[])
    p.add_argument("--no-trunc", action="store_true")
    p.add_argument("-s", "--size", action="store_true")
    add_format(p)


# -- inspect ------------------------------------------------------------------
def _inspect_one(ctx: Ctx, ref: str, kind: str | None, size: bool) -> Any:
    client = ctx.client
    kinds = [kind] if kind else ["container", "image", "network", "volume"]
    for k in kinds:
        try:
            if k == "container":
                return client.inspect_container(ref, size=size)
            if k == "image":
                return client.inspect_image(ref)
            if k == "network":
                return client.inspect_network(ref)
            if k == "volume":
                return client.inspect_volume(ref)
        except APIError as e:
            if e.status not in (404, 400) or kind:  # docker names the kind only when guessing it
                raise CLIError(f"Error response from daemon: {e.message}", 1) from e
    raise CLIError(f"Error: No such object: {ref}", 1)


def inspect_objects(ctx: Ctx, refs: list[str], kind: str | None, fmt: str, size: bool = False) -> int:
    from dockyard.cli.gotemplate import Template, TemplateError

    found: list[Any] = []
    errors: list[str] = []
    for ref in refs:
        try:
            found.append(_inspect_one(ctx, ref, kind, size))
        except CLIError as e:
            errors.append(e.message)
    if fmt:
        src = fmt.replace("\\t", "\t").replace("\\n", "\n")
        try:
            tmpl = Template(src, strict=True)
            for obj in found:
                out = tmpl.render(obj)
                sys.stdout.write(out + "\n")
        except TemplateError as e:
            raise CLIError(f"template parsing error: {e}", 1) from e
    else:
        print_json(found)
    for msg in errors:
        print(msg, file=sys.stderr)
    return 1 if errors else 0


def cmd_inspect(ctx: Ctx, args: argparse.Namespace) -> int:
    return inspect_objects(ctx, args.names, args.type, args.format, getattr(args, "size", False))


def setup_inspect(p: argparse.ArgumentParser) -> None:
    p.add_argument("-f", "--format", default="")
    p.add_argument("--type", choices=["container", "image", "network", "volume"])
    p.add_argument("-s", "--size", action="store_true")
    p.add_argument("names", nargs="+")


def cmd_container_inspect(ctx: Ctx, args: argparse.Namespace) -> int:
    return inspect_objects(ctx, args.names, "container", args.format, args.size)


# -- logs ---------------------------------------------------------------------
def _time_arg(v: str | None) -> str | None:
    """--since/--until as the API's unix seconds; docker's words for a value that is neither."""
    if v is None:
        return None
    from dockyard.util.timefmt import parse_time_arg

    try:
        return f"{parse_time_arg(v):.9f}"
    except ValueError:
        raise CLIError(f'failed to parse value as time or duration: "{v}"', 1) from None


def cmd_logs(ctx: Ctx, args: argparse.Namespace) -> int:
    client = ctx.client
    info = client.inspect_container(args.container)
    tty = bool(info["Config"].get("Tty"))
    stream = client.logs(args.container, follow=args.follow, timestamps=args.timestamps,
                         tail=args.tail, since=_time_arg(args.since), until=_time_arg(args.until))
    out, err = sys.stdout.buffer, sys.stderr.buffer
    with stream:
        for kind, data in stream.frames(tty):
            target = err if kind == STDERR else out
            target.write(data)
            target.flush()
    return 0


def setup_logs(p: argparse.ArgumentParser) -> None:
    p.add_argument("-f", "--follow", action="store_true")
    p.add_argument("-n", "--tail", default="all")
    p.add_argument("--since")
    p.add_argument("--until")
    p.add_argument("-t", "--timestamps", action="store_true")
    p.add_argument("--details", action="store_true")
    p.add_argument("container")


# -- lifecycle ----------------------------------------------------------------
def cmd_stop(ctx: Ctx, args: argparse.Namespace) -> int:
    if not sys.stderr.isatty():
        return for_each(args.containers, lambda c: ctx.client.stop(c, args.time, args.signal))
    from dockyard.cli.stopwait import stop_explained

    # On a terminal a stop that takes a while says why (a PID 1 ignoring SIGTERM, typically).
    return for_each(args.containers, lambda c: stop_explained(
        lambda: ctx.client.stop(c, args.time, args.signal), lambda: ctx.client.inspect_container(c),
        args.signal, args.time, sys.stderr, c))


def cmd_restart(ctx: Ctx, args: argparse.Namespace) -> int:
    return for_each(args.containers, lambda c: ctx.client.restart(c, args.time, args.signal))


def setup_stop(p: argparse.ArgumentParser) -> None:
    p.add_argument("-t", "--time", "--timeout", type=int)
    p.add_argument("-s", "--signal")
    p.add_argument("containers", nargs="+")


def cmd_kill(ctx: Ctx, args: argparse.Namespace) -> int:
    return for_each(args.containers, lambda c: ctx.client.kill(c, args.signal))


def setup_kill(p: argparse.ArgumentParser) -> None:
    p.add_argument("-s", "--signal")
    p.add_argument("containers", nargs="+")


def cmd_rm(ctx: Ctx, args: argparse.Namespace) -> int:
    return for_each(args.containers,
                    lambda c: ctx.client.remove_container(c, force=args.force, v=args.volumes, link=args.link))


def setup_rm(p: argparse.ArgumentParser) -> None:
    p.add_argument("-f", "--force", action="store_true")
    p.add_argument("-v", "--volumes", action="store_true")
    p.add_argument("-l", "--link", action="store_true")
    p.add_argument("containers", nargs="+")


def _simple(method: str) -> Any:
    def run(ctx: Ctx, args: argparse.Namespace) -> int:
        return for_each(args.containers, lambda c: getattr(ctx.client, method)(c))

    return run


def setup_many(p: argparse.ArgumentParser) -> None:
    p.add_argument("containers", nargs="+")


def cmd_rename(ctx: Ctx, args: argparse.Namespace) -> int:
    ctx.client.rename(args.container, args.new_name)
    return 0


def setup_rename(p: argparse.ArgumentParser) -> None:
    p.add_argument("container")
    p.add_argument("new_name")


def cmd_wait(ctx: Ctx, args: argparse.Namespace) -> int:
    return for_each(args.containers, lambda c: print(ctx.client.wait(c).get("StatusCode", 0)), echo=False)


def cmd_diff(ctx: Ctx, args: argparse.Namespace) -> int:
    for ch in ctx.client.changes(args.container):
        print(f"{'CAD'[ch['Kind']]} {ch['Path']}")
    return 0


def setup_one(p: argparse.ArgumentParser) -> None:
    p.add_argument("container")


def _refuse_tty(output: str | None, what: str = "save image") -> None:
    if not output and sys.stdout.isatty():
        raise CLIError("cowardly refusing to save to a terminal. Use the -o flag or redirect", 1)
    if output:  # as docker, before asking the daemon for anything
        parent = os.path.dirname(os.path.abspath(output))
        if not os.path.isdir(parent):
            raise CLIError(f"failed to {what}: invalid output path: stat {parent}: no such file or directory", 1)


def copy_stream_to(stream: Any, output: str | None) -> None:
    """Write a streamed body to a file (atomically) or stdout."""
    if output:
        tmp = output + ".dockyard-tmp"
        with open(tmp, "wb") as f:
            for chunk in stream.chunks():
                f.write(chunk)
        os.replace(tmp, output)
    else:
        out = sys.stdout.buffer
        for chunk in stream.chunks():
            out.write(chunk)
        out.flush()


def cmd_export(ctx: Ctx, args: argparse.Namespace) -> int:
    _refuse_tty(args.output, "export container")
    with ctx.client.export(args.container) as s:
        copy_stream_to(s, args.output)
    return 0


def setup_export(p: argparse.ArgumentParser) -> None:
    p.add_argument("-o", "--output")
    p.add_argument("container")


# -- cp -----------------------------------------------------------------------
def _split_cp(arg: str) -> tuple[str | None, str]:
    if arg.startswith(("/", ".")) or ":" not in arg:
        return None, arg
    c, _, path = arg.partition(":")
    return c, path


def cmd_cp(ctx: Ctx, args: argparse.Namespace) -> int:
    src_c, src = _split_cp(args.src)
    dst_c, dst = _split_cp(args.dest)
    if (src_c is None) == (dst_c is None):
        raise CLIError("copying between containers is not supported" if src_c else
                       "must specify at least one container source", 1)
    client = ctx.client
    if src_c is not None:
        if args.follow_link:  # -L: copy what a symlink in the container points at
            target = client.stat_path(src_c, src).get("linkTarget")
            if target:
                src = target
        stream = client.get_archive(src_c, src)
        with stream:
            if dst == "-":
                copy_stream_to(stream, None)
                return 0
            data = io.BytesIO(b"".join(stream.chunks()))
        _extract_to(data, src, dst)
        if not args.quiet and sys.stderr.isatty():
            print(f"Successfully copied {human_size(len(data.getvalue()))} to {dst}", file=sys.stderr)
        return 0
    assert dst_c is not None
    if src == "-":
        client.put_archive(dst_c, dst, sys.stdin.buffer.read(), copy_uid_gid=args.archive)
        return 0
    if not os.path.lexists(src):
        raise CLIError(f'lstat {os.path.abspath(src)}: no such file or directory', 1)
    try:
        stat = client.stat_path(dst_c, dst)
        dst_is_dir = bool(stat.get("mode", 0) & (1 << 31))
    except APIError as e:
        if e.status != 404:
            raise
        dst_is_dir = False
    if dst_is_dir:
        target_dir, arcname = dst, os.path.basename(os.path.normpath(src))
    else:
        target_dir, arcname = os.path.dirname(dst.rstrip("/")) or "/", os.path.basename(dst.rstrip("/"))
    buf = io.BytesIO()
    import tarfile

    with tarfile.open(fileobj=buf, mode="w", dereference=args.follow_link) as tar:  # -L follows host links
        tar.add(src.rstrip("/") if src != "/" else src, arcname=arcname, recursive=True)
    client.put_archive(dst_c, target_dir, buf.getvalue(), copy_uid_gid=args.archive)  # -a: container's user
    if not args.quiet and sys.stderr.isatty():
        print(f"Successfully copied {human_size(len(buf.getvalue()))} to {dst_c}:{dst}", file=sys.stderr)
    return 0


def _extract_to(data: io.BytesIO, src: str, dst: str) -> None:
    """Untar a container archive at dst: into it if it is a dir, else under the new name."""
    src_base = os.path.basename(os.path.normpath(src)) or "/"
    into_dir = os.path.isdir(dst)
    import tarfile

    with tarfile.open(fileobj=data, mode="r:") as tar:
        members = tar.getmembers()
        if not into_dir:
            parent = os.path.dirname(os.path.abspath(dst))
            new = os.path.basename(os.path.abspath(dst))
            for m in members:
                head, _, rest = m.name.partition("/")
                if head == src_base or len(members) == 1:
                    m.name = new + ("/" + rest if rest else "")
            tar.extractall(parent, members=members, filter="tar")
        else:
            tar.extractall(dst, members=members, filter="tar")


def setup_cp(p: argparse.ArgumentParser) -> None:
    p.add_argument("-a", "--archive", action="store_true")
    p.add_argument("-L", "--follow-link", action="store_true")
    p.add_argument("-q", "--quiet", action="store_true")
    p.add_argument("src")
    p.add_argument("dest")


# -- top, stats, port, update, commit, prune -----------------------------------
def cmd_top(ctx: Ctx, args: argparse.Namespace) -> int:
    result = ctx.client.top(args.container, " ".join(args.ps_args) if args.ps_args else None)
    lines = ["\t".join(result.get("Titles") or [])]
    lines += ["\t".join(p) for p in result.get("Processes") or []]
    sys.stdout.write(tabwrite(lines, minwidth=20))  # docker top's tabwriter: minwidth 20, padding 3
    return 0


def setup_top(p: argparse.ArgumentParser) -> None:
    p.add_argument("container")
    p.add_argument("ps_args", nargs=argparse.REMAINDER)


STATS_HEADERS = {"Container": "CONTAINER ID", "ID": "CONTAINER ID", "Name": "NAME", "CPUPerc": "CPU %",
                 "MemUsage": "MEM USAGE / LIMIT", "MemPerc": "MEM %", "NetIO": "NET I/O",
                 "BlockIO": "BLOCK I/O", "PIDs": "PIDS"}
STATS_TABLE = ("table {{.ID}}\t{{.Name}}\t{{.CPUPerc}}\t{{.MemUsage}}\t{{.MemPerc}}\t{{.NetIO}}"
               "\t{{.BlockIO}}\t{{.PIDs}}")


def _stats_row(s: dict[str, Any]) -> dict[str, Any]:
    cpu, pre = s.get("cpu_stats") or {}, s.get("precpu_stats") or {}
    cpu_delta = (cpu.get("cpu_usage", {}).get("total_usage", 0)
                 - pre.get("cpu_usage", {}).get("total_usage", 0))
    sys_delta = cpu.get("system_cpu_usage", 0) - pre.get("system_cpu_usage", 0)
    ncpu = cpu.get("online_cpus") or len(cpu.get("cpu_usage", {}).get("percpu_usage") or []) or 1
    cpu_pct = cpu_delta / sys_delta * ncpu * 100 if sys_delta > 0 and cpu_delta > 0 else 0.0
    mem = s.get("memory_stats") or {}
    stats = mem.get("stats") or {}
    usage = mem.get("usage", 0) - stats.get("total_inactive_file", stats.get("inactive_file", 0))
    limit = mem.get("limit", 0)
    rx = sum(n.get("rx_bytes", 0) for n in (s.get("networks") or {}).values())
    tx = sum(n.get("tx_bytes", 0) for n in (s.get("networks") or {}).values())
    blk_r = blk_w = 0
    for e in (s.get("blkio_stats") or {}).get("io_service_bytes_recursive") or []:
        if e.get("op", "").lower() == "read":
            blk_r += e.get("value", 0)
        elif e.get("op", "").lower() == "write":
            blk_w += e.get("value", 0)
    return {
        "ID": s.get("id", "")[:12], "Container": s.get("id", "")[:12], "Name": s.get("name", "").lstrip("/"),
        "CPUPerc": f"{cpu_pct:.2f}%", "MemUsage": f"{bytes_size(usage)} / {bytes_size(limit)}",
        "MemPerc": f"{(usage / limit * 100 if limit else 0):.2f}%",
        "NetIO": f"{human_size(rx)} / {human_size(tx)}", "BlockIO": f"{human_size(blk_r)} / {human_size(blk_w)}",
        "PIDs": str((s.get("pids_stats") or {}).get("current", 0)),
    }


def cmd_stats(ctx: Ctx, args: argparse.Namespace) -> int:
    client = ctx.client
    listed = client.containers(all=args.all)  # also settles the API version before the threads below
    names = args.containers or [c["Id"] for c in listed]
    latest: dict[str, dict[str, Any]] = {}
    failed: list[APIError] = []

    def follow(name: str) -> None:
        # One stream per container, as docker's CLI: a one-shot sample takes the daemon a second
        # (two readings, for CPU %), so containers are never asked one after another.
        try:
            with client.stats(name, stream=not args.no_stream) as s:
                for frame in s.json():
                    latest[name] = frame
        except APIError as e:
            failed.append(e)

    import threading

    threads = [threading.Thread(target=follow, args=(n,), daemon=True) for n in names]
    for t in threads:
        t.start()
    if args.no_stream:
        for t in threads:
            t.join()
        if failed:
            raise failed[0]
        write_rows(args.format, [_stats_row(latest[n]) for n in names], STATS_HEADERS, STATS_TABLE)
        return 0
    while True:
        time.sleep(1)
        if failed and not latest:
            raise failed[0]
        sys.stdout.write("\x1b[2J\x1b[H")
        write_rows(args.format, [_stats_row(latest[n]) for n in names if n in latest], STATS_HEADERS, STATS_TABLE)
        sys.stdout.flush()


def setup_stats(p: argparse.ArgumentParser) -> None:
    p.add_argument("-a", "--all", action="store_true")
    p.add_argument("--no-stream", action="store_true")
    p.add_argument("--no-trunc", action="store_true")
    add_format(p)
    p.add_argument("containers", nargs="*")


def cmd_port(ctx: Ctx, args: argparse.Namespace) -> int:
    info = ctx.client.inspect_container(args.container)
    ports = (info.get("NetworkSettings") or {}).get("Ports") or {}
    want = args.port
    if want and "/" not in want:
        want += "/tcp"
    found = False
    for key in sorted(ports, key=lambda k: (int(k.split("/")[0]), k)):
        if want and key != want:
            continue
        for b in ports[key] or []:
            ip = b.get("HostIp", "")
            host = f"[{ip}]" if ":" in ip else ip
            print(f"{host}:{b['HostPort']}" if want else f"{key} -> {host}:{b['HostPort']}")
            found = True
    if want and not found:
        raise CLIError(f"Error: No public port '{want}' published for {args.container}", 1)
    return 0


def setup_port(p: argparse.ArgumentParser) -> None:
    p.add_argument("container")
    p.add_argument("port", nargs="?")


def cmd_update(ctx: Ctx, args: argparse.Namespace) -> int:
    from dockyard.cli.opts import parse_restart, ram_in_bytes
    from dockyard.wire.container import ENCODER, RestartPolicy, UpdateConfig

    upd = UpdateConfig()
    if args.memory:
        upd.memory = ram_in_bytes(args.memory)
    if args.memory_swap:
        upd.memory_swap = -1 if args.memory_swap == "-1" else ram_in_bytes(args.memory_swap)
    if args.memory_reservation:
        upd.memory_reservation = ram_in_bytes(args.memory_reservation)
    if args.cpus:
        upd.nano_cpus = int(float(args.cpus) * 1e9)
    for attr, val in (("cpu_shares", args.cpu_shares), ("cpuset_cpus", args.cpuset_cpus),
                      ("cpuset_mems", args.cpuset_mems), ("pids_limit", args.pids_limit)):
        if val is not None:
            setattr(upd, attr, val)
    if args.restart:
        policy = parse_restart(args.restart)
        upd.restart_policy = RestartPolicy(name=policy["Name"], maximum_retry_count=policy["MaximumRetryCount"])
    body = ENCODER(upd)

    def one(c: str) -> None:
        for w in ctx.client.update(c, body).get("Warnings") or []:
            print(f"WARNING: {w}", file=sys.stderr)

    return for_each(args.containers, one)


def setup_update(p: argparse.ArgumentParser) -> None:
    p.add_argument("-m", "--memory")
    p.add_argument("--memory-swap")
    p.add_argument("--memory-reservation")
    p.add_argument("--cpus")
    p.add_argument("-c", "--cpu-shares", type=int)
    p.add_argument("--cpuset-cpus")
    p.add_argument("--cpuset-mems")
    p.add_argument("--pids-limit", type=int)
    p.add_argument("--restart")
    p.add_argument("containers", nargs="+")


def cmd_commit(ctx: Ctx, args: argparse.Namespace) -> int:
    repo, tag = None, None
    if args.repository:
        from dockyard.cli.run import split_tag

        repo, tag = split_tag(args.repository)
    result = ctx.client.commit(args.container, repo, tag, args.message, args.author, args.change or None,
                               pause=args.pause)
    print(result["Id"])
    return 0


def setup_commit(p: argparse.ArgumentParser) -> None:
    p.add_argument("-a", "--author")
    p.add_argument("-c", "--change", action="append", default=[])
    p.add_argument("-m", "--message")
    p.add_argument("-p", "--pause", action="store_true", default=True)
    p.add_argument("container")
    p.add_argument("repository", nargs="?")


def cmd_container_prune(ctx: Ctx, args: argparse.Namespace) -> int:
    return prune.prune(ctx, "WARNING! This will remove all stopped containers.", args.force,
                       [(prune.CONTAINERS, parse_filters(args.filter))])


def setup_prune(p: argparse.ArgumentParser) -> None:
    p.add_argument("-f", "--force", action="store_true")
    p.add_argument("--filter", action="append", default=[])


def setup_container_inspect(p: argparse.ArgumentParser) -> None:
    p.add_argument("-f", "--format", default="")
    p.add_argument("-s", "--size", action="store_true")
    p.add_argument("names", nargs="+")


C = "container"
COMMANDS = [
    Command("ps", cmd_ps, setup_ps, C, ["ls", "ps", "list"], help="List containers"),
    Command("inspect", cmd_inspect, setup_inspect, help="Return low-level information on Docker objects"),
    Command("inspect", cmd_container_inspect, setup_container_inspect, C, top=False,
            help="Display detailed information on one or more containers"),
    Command("logs", cmd_logs, setup_logs, C, help="Fetch the logs of a container"),
    Command("stop", cmd_stop, setup_stop, C, help="Stop one or more running containers"),
    Command("restart", cmd_restart, setup_stop, C, help="Restart one or more containers"),
    Command("kill", cmd_kill, setup_kill, C, help="Kill one or more running containers"),
    Command("rm", cmd_rm, setup_rm, C, ["rm", "remove"], help="Remove one or more containers"),
    Command("pause", _simple("pause"), setup_many, C, help="Pause all processes within containers"),
    Command("unpause", _simple("unpause"), setup_many, C, help="Unpause all processes within containers"),
    Command("rename", cmd_rename, setup_rename, C, help="Rename a container"),
    Command("wait", cmd_wait, setup_many, C, help="Block until containers stop, then print exit codes"),
    Command("diff", cmd_diff, setup_one, C, help="Inspect changes to files on a container's filesystem"),
    Command("export", cmd_export, setup_export, C, help="Export a container's filesystem as a tar archive"),
    Command("cp", cmd_cp, setup_cp, C, help="Copy files between a container and the local filesystem"),
    Command("top", cmd_top, setup_top, C, help="Display the running processes of a container"),
    Command("stats", cmd_stats, setup_stats, C, help="Display container resource usage statistics"),
    Command("port", cmd_port, setup_port, C, help="List port mappings for the container"),
    Command("update", cmd_update, setup_update, C, help="Update configuration of containers"),
    Command("commit", cmd_commit, setup_commit, C, help="Create a new image from a container's changes"),
    Command("prune", cmd_container_prune, setup_prune, C, top=False, help="Remove all stopped containers"),
]
