"""The compose subcommands other than up/down: ps, logs, lifecycle, exec, run, images, ..."""

from __future__ import annotations

import json
import os
import secrets
import signal
import sys
import threading
import time
from argparse import Namespace
from typing import TYPE_CHECKING, Any

import yaml

from dockyard.cli.formatting import ago, display_ports, human_size, tabwrite, write_rows
from dockyard.cli.stdio import pump, raw_terminal
from dockyard.client import APIClient, APIError
from dockyard.compose import state
from dockyard.compose.convert import L_SLUG, config_hash
from dockyard.compose.dryrun import client_like
from dockyard.compose.engine import Engine, UpOptions, say
from dockyard.compose.errors import ComposeError
from dockyard.compose.graph import order
from dockyard.compose.loader import Project
from dockyard.compose.logs import LogPrinter, label_for, start_followers

if TYPE_CHECKING:
    from dockyard.compose.watch import Watch

JSON = dict[str, Any]


def _selected(project: Project, names: list[str]) -> list[str]:
    for n in names:
        if n not in project.services:
            raise ComposeError(f"no such service: {n}")
    return names or list(project.services)


def _containers(client: APIClient, project: Project, names: list[str], all: bool = True) -> list[JSON]:
    return state.project_containers(client, project.name, _selected(project, names) if names else None, all=all)


def config(project: Project, args: Namespace) -> int:
    out = open(args.output, "w") if args.output else sys.stdout  # noqa: SIM115 - closed below
    try:
        if args.services:
            out.write("".join(f"{s}\n" for s in project.services))
        elif args.volumes:
            out.write("".join(f"{v}\n" for v in project.volumes))
        elif args.images:
            from dockyard.compose.convert import image_name

            out.write("".join(f"{image_name(project, n, s)}\n" for n, s in project.services.items()))
        elif args.profiles:
            found = {p for s in (*project.services.values(), *project.disabled.values()) for p in s.get("profiles") or []}
            out.write("".join(f"{p}\n" for p in sorted(found)))
        elif args.hash:
            names = list(project.services) if args.hash == "*" else args.hash.split(",")
            for n in names:
                if n not in project.services:
                    raise ComposeError(f"no such service: {n}")
                out.write(f"{n} {config_hash(project.services[n])}\n")
        elif not args.quiet:
            doc = project.to_dict()
            if args.format == "json":
                out.write(json.dumps(doc, indent=2) + "\n")
            else:
                out.write(yaml.safe_dump(doc, sort_keys=False, default_flow_style=False, allow_unicode=True))
    finally:
        if out is not sys.stdout:
            out.close()
    return 0


def _ps_row(c: JSON, project: str) -> JSON:
    state_ = c.get("State", "")
    health = ""
    status = c.get("Status", "")
    for h in ("healthy", "unhealthy", "starting"):
        if f"({h})" in status or f"(health: {h})" in status:
            health = h
    mounts = c.get("Mounts") or []
    created = time.strftime("%Y-%m-%d %H:%M:%S %z %Z", time.localtime(c.get("Created") or 0))
    return {"Command": c.get("Command", ""), "CreatedAt": created,
            "LocalVolumes": str(sum(1 for m in mounts if m.get("Driver") == "local")),
            "Mounts": ",".join(m.get("Name") or m.get("Source", "") for m in mounts),
            "Networks": ",".join(sorted((c.get("NetworkSettings") or {}).get("Networks") or {})),
            "Size": "0B",
            "ExitCode": _exit_code(status), "Health": health, "ID": c["Id"], "Image": c.get("Image"),
            "Labels": ",".join(f"{k}={v}" for k, v in sorted(c.get("Labels", {}).items())),
            "Name": state.name(c), "Names": state.name(c), "Project": project, "Ports": display_ports(c.get("Ports") or []),
            "Publishers": [{"URL": p.get("IP", ""), "TargetPort": p.get("PrivatePort"),
                            "PublishedPort": p.get("PublicPort", 0), "Protocol": p.get("Type")}
                           for p in c.get("Ports") or []],
            "RunningFor": ago(c.get("Created", time.time())), "Service": state.service_of(c),
            "State": state_, "Status": status}


def _exit_code(status: str) -> int:
    if status.startswith("Exited ("):
        try:
            return int(status[len("Exited ("):].split(")")[0])
        except ValueError:
            return 0
    return 0


def ps(client: APIClient, project: Project, args: Namespace) -> int:
    if args.services:
        ctrs = _containers(client, project, args.names, all=args.all)
        running = {state.service_of(c) for c in ctrs}
        for s in project.services:
            if s in running or args.all:
                print(s)
        return 0
    ctrs = _containers(client, project, args.names, all=args.all)
    statuses = list(args.status)
    for f in args.filter:
        key, _, value = f.partition("=")
        if key != "status":
            raise ComposeError(f"invalid filter '{key}'")  # v2 knows only status
        statuses.append(value)
    if statuses:
        ctrs = [c for c in ctrs if c.get("State") in statuses]
    if args.orphans == "false":
        ctrs = [c for c in ctrs if state.service_of(c) in project.services]
    if args.quiet:
        for c in ctrs:
            print(c["Id"])
        return 0
    rows = [_ps_row(c, project.name) for c in ctrs]
    if args.format == "json":
        for r in rows:
            print(json.dumps(r))
        return 0
    if args.format not in ("table", ""):  # a Go template, `table ...` included, as compose ps takes
        write_rows(args.format, rows, {k: k.upper() for r in rows[:1] for k in r}, args.format)
        return 0
    lines = ["NAME\tIMAGE\tCOMMAND\tSERVICE\tCREATED\tSTATUS\tPORTS"]
    for r in rows:
        cmd = r["Command"]
        cmd = '"' + (cmd[:20] + "…" if len(cmd) > 20 and not args.no_trunc else cmd) + '"'
        lines.append(f"{r['Name']}\t{r['Image']}\t{cmd}\t{r['Service']}\t{r['RunningFor']}\t{r['Status']}\t{r['Ports']}")
    sys.stdout.write(tabwrite(lines, minwidth=0))
    return 0


def _log_time(value: str | None) -> str | None:
    """--since/--until as the API takes them: "10m" (relative) or a timestamp, as docker logs."""
    if not value:
        return None
    from dockyard.util.timefmt import parse_time_arg

    try:
        return f"{parse_time_arg(value):.9f}"
    except ValueError:
        raise ComposeError(f"invalid value for --since/--until: {value!r}") from None


def logs(client: APIClient, project: Project, args: Namespace, host: str | None) -> int:
    ctrs = _containers(client, project, args.names, all=True)
    if args.index:
        ctrs = [c for c in ctrs if state.number(c) == args.index]
    printer = LogPrinter(colour=False if args.no_color else None, prefix=not args.no_log_prefix)
    threads = start_followers(host, ctrs, project.name, printer, follow=args.follow, tail=args.tail,
                              timestamps=args.timestamps, since=_log_time(args.since),
                              until=_log_time(args.until))
    try:
        for t in threads:
            while t.is_alive():
                t.join(0.2)
    except KeyboardInterrupt:
        return 130
    return 0


def lifecycle(client: APIClient, project: Project, args: Namespace) -> int:
    """start, stop, restart, kill, pause, unpause, rm: per container, in dependency order."""
    cmd = args.command
    names = _selected(project, args.names)
    ranked = order(project.services, names)
    if cmd in ("stop", "kill", "pause", "rm"):
        ranked = ranked[::-1]
    ranked = [s for s in ranked if s in names]
    engine = Engine(client, project)
    for s in ranked:
        svc = project.services[s]
        for c in state.project_containers(client, project.name, [s]):
            cname = state.name(c)
            st = c["State"]
            if cmd == "start" and st != "running":
                engine.wait_dependencies(s, svc)
                engine.start_container(c["Id"], cname, svc)
            elif cmd == "stop" and st in ("running", "paused", "restarting"):
                engine.stop_container(c["Id"], cname, svc if st == "running" else None, args.timeout)
            elif cmd == "restart":
                say("Container", cname, "Restarting")
                client.restart(c["Id"], engine._stop_timeout(svc, args.timeout))
                say("Container", cname, "Started")
            elif cmd == "kill" and st == "running":
                say("Container", cname, "Killing")
                client.kill(c["Id"], args.signal)
                say("Container", cname, "Killed")
            elif cmd == "pause" and st == "running":
                client.pause(c["Id"])
                say("Container", cname, "Paused")
            elif cmd == "unpause" and st == "paused":
                client.unpause(c["Id"])
                say("Container", cname, "Unpaused")
            elif cmd == "rm":
                if st == "running" and not args.stop:
                    continue
                if st == "running":
                    client.stop(c["Id"])
                client.remove_container(c["Id"], force=True, v=args.volumes)
                say("Container", cname, "Removed")
    return 0


def _pick(client: APIClient, project: Project, service: str, index: int) -> JSON:
    _selected(project, [service])
    for c in state.project_containers(client, project.name, [service], all=False):
        if state.number(c) == index:
            return c
    raise ComposeError(f"service \"{service}\" is not running")


def exec_(client: APIClient, project: Project, args: Namespace) -> int:
    ctr = _pick(client, project, args.service, args.index)
    tty = not args.no_tty and sys.stdin.isatty() and sys.stdout.isatty()
    interactive = args.interactive and not args.detach
    cfg: JSON = {"Cmd": args.cmd, "AttachStdin": interactive, "AttachStdout": not args.detach,
                 "AttachStderr": not args.detach, "Tty": tty, "Env": args.env or [],
                 "Privileged": args.privileged}
    if args.user:
        cfg["User"] = args.user
    if args.workdir:
        cfg["WorkingDir"] = args.workdir
    ex = client.exec_create(ctr["Id"], cfg)
    if args.detach:
        client.exec_start(ex["Id"], detach=True)
        return 0
    h = client.exec_start(ex["Id"], tty=tty)
    assert h is not None
    with raw_terminal(tty):
        pump(h, tty, send_stdin=interactive and not _stdin_closed(), detach_keys=b"")
    return int(client.exec_inspect(ex["Id"]).get("ExitCode") or 0)


def _stdin_closed() -> bool:
    try:
        os.fstat(0)
        return False
    except OSError:
        return True


def run(client: APIClient, project: Project, args: Namespace) -> int:
    name = args.service
    _selected(project, [name])
    svc = dict(project.services[name])
    engine = Engine(client, project)
    if not args.no_deps:
        deps = [d for d in order(project.services, [name]) if d != name]
        if deps:
            engine.up(UpOptions(services=deps))
    else:
        engine.ensure_networks(set(svc.get("networks") or {}))
    engine.ensure_image(name, svc, UpOptions(build=args.build, pull=args.pull))
    engine.ensure_networks(set(svc.get("networks") or {}))
    if args.remove_orphans:
        for c in engine.orphans():
            client.remove_container(c["Id"], force=True)
            say("Container", state.name(c), "Removed")
    if args.label:
        svc["labels"] = {**(svc.get("labels") or {}),
                         **{k: v for k, _, v in (item.partition("=") for item in args.label)}}
    for key, extra in (("cap_add", args.cap_add), ("cap_drop", args.cap_drop)):
        if extra:
            svc[key] = [*(svc.get(key) or []), *extra]
    engine.ensure_volumes({v["source"] for v in svc.get("volumes") or []
                           if v.get("type") == "volume" and v.get("source")})
    if args.cmd:
        svc["command"] = args.cmd
    if args.entrypoint is not None:
        svc["entrypoint"] = [args.entrypoint] if args.entrypoint else []
        if not args.cmd:
            svc.pop("command", None)
    if not args.service_ports:
        svc.pop("ports", None)
    if args.publish:
        from dockyard.compose.normalize import normalize_ports
        svc["ports"] = normalize_ports(args.publish, "--publish")
    if args.volume:
        from dockyard.compose.normalize import normalize_volumes
        svc["volumes"] = [*(svc.get("volumes") or []), *normalize_volumes(args.volume, "--volume",
                                                                          project.working_dir)]
    env = dict(svc.get("environment") or {})
    for e in args.env or []:
        k, sep, v = e.partition("=")
        env[k] = v if sep else os.environ.get(k)
    svc["environment"] = env
    for key, val in (("user", args.user), ("working_dir", args.workdir)):
        if val:
            svc[key] = val
    svc.pop("container_name", None)
    svc.pop("restart", None)
    tty = not args.no_tty and sys.stdin.isatty() and sys.stdout.isatty() and not args.detach
    svc["tty"] = tty
    svc["stdin_open"] = not args.detach and args.interactive
    slug = secrets.token_hex(32)  # v2's one-off identity: the name carries its first 12 characters
    cname = args.name or f"{project.name}-{name}-run-{slug[:12]}"
    cid = engine.create(name, svc, 1, oneoff=True, cname=cname, attach_stdin=None if args.detach else svc["stdin_open"],
                        labels={L_SLUG: slug},
                        use_aliases=args.use_aliases)
    if args.detach:
        client.start(cid)
        print(cname)
        return 0
    h = client.attach(cid, stdin=svc["stdin_open"], stdout=True, stderr=True)
    waiter = client.wait_stream(cid, "next-exit")
    try:
        client.start(cid)
        with raw_terminal(tty):
            pump(h, tty, send_stdin=svc["stdin_open"] and not _stdin_closed(), detach_keys=b"")
        code = int(json.loads(b"".join(waiter.chunks())).get("StatusCode", 0))
    finally:
        waiter.close()
        if args.rm:
            try:
                client.remove_container(cid, force=True)
            except APIError:
                pass
    return code


def images(client: APIClient, project: Project, args: Namespace) -> int:
    ctrs = _containers(client, project, args.names, all=True)
    rows = []
    seen: set[str] = set()
    for c in ctrs:
        if c["ImageID"] in seen:
            continue
        seen.add(c["ImageID"])
        try:
            img = client.inspect_image(c["ImageID"])
        except APIError:
            continue
        tags = img.get("RepoTags") or ["<none>:<none>"]
        repo, _, tag = tags[0].rpartition(":")
        rows.append((state.name(c), repo, tag, img["Id"], img.get("Size", 0), img.get("Created", "")))
    if args.quiet:
        for r in rows:
            print(r[3])
        return 0
    if args.format == "json":
        print(json.dumps([{"ID": r[3], "ContainerName": r[0], "Repository": r[1], "Tag": r[2],
                           "Size": r[4]} for r in rows]))
        return 0
    lines = ["CONTAINER\tREPOSITORY\tTAG\tIMAGE ID\tSIZE"]
    for r in rows:
        lines.append(f"{r[0]}\t{r[1]}\t{r[2]}\t{r[3].split(':')[-1][:12]}\t{human_size(r[4])}")
    sys.stdout.write(tabwrite(lines, minwidth=0))
    return 0


def top(client: APIClient, project: Project, args: Namespace) -> int:
    for c in _containers(client, project, args.names, all=False):
        t = client.top(c["Id"])
        print(state.name(c))
        lines = ["\t".join(t["Titles"])] + ["\t".join(p) for p in t.get("Processes") or []]
        sys.stdout.write(tabwrite(lines, minwidth=0) + "\n")
    return 0


def port(client: APIClient, project: Project, args: Namespace) -> int:
    c = _pick(client, project, args.service, args.index)
    ports = client.inspect_container(c["Id"])["NetworkSettings"].get("Ports") or {}
    for b in ports.get(f"{args.private_port}/{args.protocol}") or []:
        print(f"{b.get('HostIp') or '0.0.0.0'}:{b['HostPort']}")
        return 0
    raise ComposeError(f"no port {args.private_port}/{args.protocol} for container {state.name(c)}")


def pull(client: APIClient, project: Project, args: Namespace) -> int:
    engine = Engine(client, project)
    for s in _selected(project, args.names):
        svc = project.services[s]
        if svc.get("image"):
            try:
                engine.pull_service(s, svc)
            except (ComposeError, APIError) as e:
                if not (args.ignore_pull_failures or (svc.get("build") and args.ignore_buildable)):
                    raise
                print(f"WARN[0000] {e}", file=sys.stderr)
    return 0


def push(client: APIClient, project: Project, args: Namespace) -> int:
    for s in _selected(project, args.names):
        svc = project.services[s]
        if not svc.get("build") or not svc.get("image"):
            continue
        ref = str(svc["image"])
        say("Image", ref, "Pushing")
        repo, tag = ref, None
        if ":" in ref.rsplit("/", 1)[-1]:
            repo, tag = ref.rsplit(":", 1)
        for msg in client.push(repo, tag):
            if msg.get("error"):
                raise ComposeError(f"failed to push {ref}: {msg['error']}")
        say("Image", ref, "Pushed")
    return 0


def build(client: APIClient, project: Project, args: Namespace) -> int:
    engine = Engine(client, project)
    for s in _selected(project, args.names):
        svc = project.services[s]
        if svc.get("build"):
            engine.build_service(s, svc, no_cache=args.no_cache, pull=args.pull)
    return 0


def ls(client: APIClient, args: Namespace) -> int:
    rows = []
    for name, ctrs in sorted(state.projects(client, all=True).items()):
        counts: dict[str, int] = {}
        for c in ctrs:
            counts[c["State"]] = counts.get(c["State"], 0) + 1
        if not args.all and not counts.get("running"):
            continue
        status = ", ".join(f"{k}({v})" for k, v in sorted(counts.items()))
        files = ctrs[0]["Labels"].get("com.docker.compose.project.config_files", "")
        rows.append({"Name": name, "Status": status, "ConfigFiles": files})
    if args.quiet:
        for r in rows:
            print(r["Name"])
    elif args.format == "json":
        print(json.dumps(rows))
    else:
        lines = ["NAME\tSTATUS\tCONFIG FILES"] + [f"{r['Name']}\t{r['Status']}\t{r['ConfigFiles']}" for r in rows]
        sys.stdout.write(tabwrite(lines, minwidth=0))
    return 0


def _interrupt(signum: int, frame: object) -> None:
    signal.signal(signal.SIGINT, signal.default_int_handler)  # a second Ctrl-C forces (kill)
    raise KeyboardInterrupt


def _watch_thread(client: APIClient, project: Project, names: list[str],
                  on_recreate: Any = None) -> tuple[Watch, threading.Thread]:
    from dockyard.compose.watch import Watch

    w = Watch(client_like(client), project, names, on_recreate)
    ready = threading.Event()
    t = threading.Thread(target=w.run, args=(ready.set,), daemon=True)
    t.start()
    while not ready.wait(0.1):
        if not t.is_alive():
            break
    return w, t


def watch(client: APIClient, project: Project, host: str | None, args: Namespace) -> int:
    """`watch`: until Ctrl-C (the project stays up, as with Compose)."""
    from dockyard.compose.watch import Watch

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, _interrupt)
    w = Watch(client, project, args.names, prune=args.prune)
    try:
        w.run()
    except KeyboardInterrupt:
        w.stop()
    return 0


def attached(client: APIClient, project: Project, host: str | None, ids: list[str], args: Namespace) -> int:
    """`up` without -d: prefixed logs until every container exits or Ctrl-C, then stop the project."""
    ctrs = [client.inspect_container(i) for i in ids]
    for c in ctrs:
        c["Names"] = [c["Name"]]
    printer = LogPrinter(colour=False if args.no_color else None, prefix=not args.no_log_prefix)
    printer.plain("Attaching to " + ", ".join(label_for(c, project.name) for c in ctrs))
    threads = start_followers(host, ctrs, project.name, printer, follow=True, since=None)
    code = 0
    # Like compose (signal.Notify), SIGINT and SIGTERM stop the project even when the shell that
    # started us in the background set SIGINT to ignored.
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, _interrupt)
    watcher: Any = None  # a Watch with --watch
    if getattr(args, "watch", False):
        def recreated(new_ids: list[str]) -> None:  # follow the rebuilt service's new containers
            new = [client_for_thread.inspect_container(i) for i in new_ids]
            for c in new:
                c["Names"] = [c["Name"]]
            ctrs.extend(new)
            threads.extend(start_followers(host, new, project.name, printer, follow=True, since=None))

        client_for_thread = client_like(client)
        watcher, wthread = _watch_thread(client, project, args.names, recreated)
        threads.append(wthread)
    exit_from = getattr(args, "exit_code_from", None)
    abort = args.abort_on_container_exit or bool(exit_from)
    followers = dict(zip(threads, ctrs, strict=False))  # log follower -> its container (ends when it exits)
    try:
        exited: JSON | None = None
        while exited is None and any(t.is_alive() for t in threads):
            for t in list(threads):
                t.join(0.2)
                if abort and not t.is_alive() and t in followers:
                    exited = followers[t]
                    break
        done = [exited] if exited is not None else ctrs
        for c in done:
            st = client.inspect_container(c["Id"])["State"]
            printer.plain(f"{label_for(c, project.name)} exited with code {st.get('ExitCode', 0)}")
        if exited is not None:
            print("Aborting on container exit...", file=sys.stderr)
            code = int(client.inspect_container(exited["Id"])["State"].get("ExitCode") or 0)
    except KeyboardInterrupt:
        print("Gracefully stopping... (press Ctrl+C again to force)", file=sys.stderr)
        code = 130
    if watcher is not None:
        watcher.stop()
    engine = Engine(client, project)
    try:
        for c in ctrs[::-1]:
            svc = project.services.get(c["Config"]["Labels"].get("com.docker.compose.service", ""))
            try:
                if client.inspect_container(c["Id"])["State"].get("Running"):
                    engine.stop_container(c["Id"], c["Name"].lstrip("/"), svc, None)
            except (APIError, ComposeError):
                pass
    except KeyboardInterrupt:
        for c in ctrs:
            try:
                client.kill(c["Id"])
                say("Container", c["Name"].lstrip("/"), "Killed")
            except APIError:
                pass
    if exit_from and code != 130:
        # --exit-code-from: the status is that service's container's, whichever stopped first.
        for c in ctrs:
            if c["Config"]["Labels"].get("com.docker.compose.service") == exit_from:
                return int(client.inspect_container(c["Id"])["State"].get("ExitCode") or 0)
    return code


def version(args: Namespace) -> int:
    from dockyard.compose.convert import COMPOSE_VERSION

    if args.short:
        print(COMPOSE_VERSION)
    elif args.format == "json":
        print(json.dumps({"version": f"v{COMPOSE_VERSION}"}))
    else:
        print(f"Docker Compose version v{COMPOSE_VERSION} (dockyard)")
    return 0
