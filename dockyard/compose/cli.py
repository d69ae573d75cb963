"""`dockyard compose ...`: argument parsing and dispatch. Entry point: main(argv, host)."""

from __future__ import annotations

import argparse
import os
import sys

from dockyard.client import APIClient, APIError, ConnectError
from dockyard.compose import commands, engine
from dockyard.compose.engine import Engine, UpOptions
from dockyard.compose.errors import ComposeError
from dockyard.compose.loader import Options, Project, load


class _Skipped:
    """Stands in for the parsers of commands other than the one given (building all ~40 costs
    ~50 ms of every invocation)."""

    def add_argument(self, *args: object, **kw: object) -> None:
        pass


_VALUE_OPTS = {"-f", "--file", "-p", "--project-name", "--project-directory", "--env-file", "--profile",
               "--ansi", "--progress"}


def _command_of(argv: list[str]) -> str | None:
    """The subcommand word, skipping the global options (None: let the full parser decide)."""
    skip = False
    for a in argv:
        if skip:
            skip = False
        elif a in _VALUE_OPTS:
            skip = True
        elif a in ("-h", "--help"):
            return None
        elif not a.startswith("-"):
            return a
    return None


def _parser(only: str | None = None, built: list[str] | None = None) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="dockyard compose", description="Define and run multi-container applications")
    p.add_argument("-f", "--file", action="append", default=[], dest="files")
    p.add_argument("-p", "--project-name", dest="project_name")
    p.add_argument("--project-directory")
    p.add_argument("--env-file", action="append", default=[], dest="env_files")
    p.add_argument("--profile", action="append", default=[], dest="profiles")
    p.add_argument("--ansi", default="auto")
    p.add_argument("--progress", default="auto")
    p.add_argument("--dry-run", action="store_true")
    sub = p.add_subparsers(dest="command", required=True)

    def cmd(name: str, names: bool = True, **kw: object) -> argparse.ArgumentParser:
        if only is not None and name != only:
            return _Skipped()  # type: ignore[return-value]
        if built is not None:
            built.append(name)
        sp = sub.add_parser(name, **kw)  # type: ignore[arg-type]
        if names:
            sp.add_argument("names", nargs="*", metavar="SERVICE")
        return sp

    c = cmd("config", names=False)
    c.add_argument("--services", action="store_true")
    c.add_argument("--volumes", action="store_true")
    c.add_argument("--hash")
    c.add_argument("-q", "--quiet", action="store_true")
    c.add_argument("--format", default="yaml", choices=["yaml", "json"])
    c.add_argument("--images", action="store_true")
    c.add_argument("--profiles", action="store_true")
    c.add_argument("-o", "--output")

    cr = cmd("create")
    cr.add_argument("--build", action="store_true")
    cr.add_argument("--no-build", action="store_true")
    cr.add_argument("--force-recreate", action="store_true")
    cr.add_argument("--no-recreate", action="store_true")
    cr.add_argument("--remove-orphans", action="store_true")
    cr.add_argument("--pull", default="missing")
    cr.add_argument("--scale", action="append", default=[])
    cr.add_argument("-y", "--yes", action="store_true")

    ev = cmd("events")
    ev.add_argument("--json", action="store_true")
    ev.add_argument("--since")
    ev.add_argument("--until")

    cpp = cmd("cp", names=False)
    cpp.add_argument("--index", type=int, default=0)
    cpp.add_argument("--all", action="store_true")
    cpp.add_argument("-a", "--archive", action="store_true")
    cpp.add_argument("-L", "--follow-link", action="store_true")
    cpp.add_argument("source")
    cpp.add_argument("destination")

    wt = cmd("wait")
    wt.add_argument("--down-project", action="store_true")

    sc = cmd("scale", names=False)
    sc.add_argument("--no-deps", action="store_true")
    sc.add_argument("pairs", nargs="+", metavar="SERVICE=REPLICAS")

    at = cmd("attach", names=False)
    at.add_argument("--index", type=int, default=0)
    at.add_argument("--no-stdin", action="store_true")
    at.add_argument("--sig-proxy", default="true")
    at.add_argument("--detach-keys")
    at.add_argument("service")

    st = cmd("stats", names=False)
    st.add_argument("-a", "--all", action="store_true")
    st.add_argument("--no-stream", action="store_true")
    st.add_argument("--no-trunc", action="store_true")
    st.add_argument("--format", default="")
    st.add_argument("service", nargs="?")

    xp = cmd("export", names=False)
    xp.add_argument("--index", type=int, default=0)
    xp.add_argument("-o", "--output")
    xp.add_argument("service")

    cm = cmd("commit", names=False)
    cm.add_argument("--index", type=int, default=0)
    cm.add_argument("-a", "--author")
    cm.add_argument("-c", "--change", action="append", default=[])
    cm.add_argument("-m", "--message")
    cm.add_argument("-p", "--pause", action="store_true", default=True)
    cm.add_argument("service")
    cm.add_argument("repository", nargs="?")

    vo = cmd("volumes")
    vo.add_argument("-q", "--quiet", action="store_true")
    vo.add_argument("--format", default="table")

    u = cmd("up")
    u.add_argument("-d", "--detach", action="store_true")
    u.add_argument("--build", action="store_true")
    u.add_argument("--no-build", action="store_true")
    u.add_argument("--force-recreate", action="store_true")
    u.add_argument("--no-recreate", action="store_true")
    u.add_argument("--no-deps", action="store_true")
    u.add_argument("--no-start", action="store_true")
    u.add_argument("--scale", action="append", default=[])
    u.add_argument("--remove-orphans", action="store_true")
    u.add_argument("--wait", action="store_true")
    u.add_argument("--wait-timeout", type=int)
    u.add_argument("-y", "--yes", action="store_true")
    u.add_argument("--pull", default="missing")
    u.add_argument("-t", "--timeout", type=int)
    u.add_argument("--abort-on-container-exit", action="store_true")
    u.add_argument("--exit-code-from")
    u.add_argument("--no-color", action="store_true")
    u.add_argument("--no-log-prefix", action="store_true")
    u.add_argument("-w", "--watch", action="store_true")

    w = cmd("watch")
    w.add_argument("--no-up", action="store_true")
    w.add_argument("--prune", action="store_true")
    w.add_argument("--quiet", action="store_true")

    d = cmd("down", names=False)
    d.add_argument("-v", "--volumes", action="store_true")
    d.add_argument("--rmi", choices=["local", "all"])
    d.add_argument("--remove-orphans", action="store_true")
    d.add_argument("-t", "--timeout", type=int)

    ps = cmd("ps")
    ps.add_argument("-a", "--all", action="store_true")
    ps.add_argument("-q", "--quiet", action="store_true")
    ps.add_argument("--services", action="store_true")
    ps.add_argument("--format", default="table")
    ps.add_argument("--status", action="append", default=[])
    ps.add_argument("--filter", action="append", default=[])
    ps.add_argument("--no-trunc", action="store_true")
    ps.add_argument("--orphans", default="true")

    lg = cmd("logs")
    lg.add_argument("-f", "--follow", action="store_true")
    lg.add_argument("-n", "--tail")
    lg.add_argument("-t", "--timestamps", action="store_true")
    lg.add_argument("--since")
    lg.add_argument("--no-color", action="store_true")
    lg.add_argument("--no-log-prefix", action="store_true")
    lg.add_argument("--until")
    lg.add_argument("--index", type=int, default=0)

    for name in ("start", "stop", "restart", "kill", "pause", "unpause", "rm"):
        lc = cmd(name)
        lc.add_argument("-t", "--timeout", type=int)
        lc.add_argument("-s", "--signal" if name == "kill" else "--stop",
                        **({"default": "SIGKILL"} if name == "kill" else {"action": "store_true"}))  # type: ignore[arg-type]
        if name == "rm":
            lc.add_argument("-f", "--force", action="store_true")
            lc.add_argument("-v", "--volumes", action="store_true")

    ex = cmd("exec", names=False)
    ex.add_argument("-d", "--detach", action="store_true")
    ex.add_argument("-T", "--no-TTY", dest="no_tty", action="store_true")
    ex.add_argument("-i", "--interactive", action="store_true", default=True)
    ex.add_argument("-e", "--env", action="append")
    ex.add_argument("-u", "--user")
    ex.add_argument("-w", "--workdir")
    ex.add_argument("--privileged", action="store_true")
    ex.add_argument("--index", type=int, default=1)
    ex.add_argument("service")
    ex.add_argument("cmd", nargs=argparse.REMAINDER)

    r = cmd("run", names=False)
    r.add_argument("-d", "--detach", action="store_true")
    r.add_argument("--rm", action="store_true")
    r.add_argument("-T", "--no-TTY", dest="no_tty", action="store_true")
    r.add_argument("-i", "--interactive", action="store_true", default=True)
    r.add_argument("-e", "--env", action="append")
    r.add_argument("-u", "--user")
    r.add_argument("-w", "--workdir")
    r.add_argument("-p", "--publish", action="append")
    r.add_argument("-v", "--volume", action="append")
    r.add_argument("--name")
    r.add_argument("--entrypoint")
    r.add_argument("--no-deps", action="store_true")
    r.add_argument("--service-ports", action="store_true")
    r.add_argument("--use-aliases", action="store_true")
    r.add_argument("-l", "--label", action="append", default=[])
    r.add_argument("--cap-add", action="append", default=[])
    r.add_argument("--cap-drop", action="append", default=[])
    r.add_argument("--build", action="store_true")
    r.add_argument("--pull", default="missing")
    r.add_argument("--quiet-pull", action="store_true")
    r.add_argument("--remove-orphans", action="store_true")
    r.add_argument("service")
    r.add_argument("cmd", nargs=argparse.REMAINDER)

    pl = cmd("pull")
    pl.add_argument("--ignore-pull-failures", action="store_true")
    pl.add_argument("--ignore-buildable", action="store_true")
    pl.add_argument("-q", "--quiet", action="store_true")
    cmd("push")
    b = cmd("build")
    b.add_argument("--no-cache", action="store_true")
    b.add_argument("--pull", action="store_true")
    im = cmd("images")
    im.add_argument("-q", "--quiet", action="store_true")
    im.add_argument("--format", default="table")
    cmd("top")
    po = cmd("port", names=False)
    po.add_argument("--protocol", default="tcp")
    po.add_argument("--index", type=int, default=1)
    po.add_argument("service")
    po.add_argument("private_port")
    ls = cmd("ls", names=False)
    ls.add_argument("-a", "--all", action="store_true")
    ls.add_argument("-q", "--quiet", action="store_true")
    ls.add_argument("--format", default="table")
    ls.add_argument("--filter", action="append", default=[])
    v = cmd("version", names=False)
    v.add_argument("--short", action="store_true")
    v.add_argument("-f", "--format", default="pretty")
    return p


def _project(args: argparse.Namespace) -> Project:
    return load(Options(files=args.files, project_name=args.project_name,
                        project_directory=args.project_directory, env_files=args.env_files,
                        profiles=args.profiles))


def _scale(items: list[str]) -> dict[str, int]:
    out = {}
    for item in items:
        name, _, n = item.partition("=")
        try:
            out[name] = int(n)
        except ValueError:
            raise ComposeError(f"invalid --scale {item!r}: expected SERVICE=NUM") from None
    return out


def _dispatch(args: argparse.Namespace, host: str | None) -> int:
    if args.command == "version":
        return commands.version(args)
    if args.dry_run:
        from dockyard.compose.dryrun import DryRunClient

        client: APIClient = DryRunClient(host)
        engine.PREFIX = "DRY-RUN MODE - "
    else:
        client = APIClient(host)
    try:
        if args.command == "ls":
            return commands.ls(client, args)
        if args.command in _BY_LABELS and not _has_files(args):
            project = _project_from_labels(args)
        else:
            project = _project(args)
        if args.command == "config":
            return commands.config(project, args)
        if args.command in ("up", "create"):
            create = args.command == "create"
            opts = UpOptions(services=args.names, force_recreate=args.force_recreate,
                             no_recreate=args.no_recreate, no_deps=not create and args.no_deps,
                             no_start=create or args.no_start, scale=_scale(args.scale),
                             remove_orphans=args.remove_orphans, build=args.build, no_build=args.no_build,
                             pull=args.pull, wait=not create and args.wait, timeout=None if create else args.timeout,
                             wait_timeout=None if create else args.wait_timeout)
            if create:
                Engine(client, project).up(opts)
                return 0
            for s in opts.scale:
                if s not in project.services:
                    raise ComposeError(f"no such service: {s}")
            if args.watch and args.detach:
                raise ComposeError("cannot use --watch with --detach")
            if args.exit_code_from and args.exit_code_from not in project.services:
                raise ComposeError(f"no such service: {args.exit_code_from}")
            if args.detach and (args.abort_on_container_exit or args.exit_code_from):
                raise ComposeError("--abort-on-container-exit and --detach are incompatible")
            ids = Engine(client, project).up(opts)
            if args.detach or args.no_start or args.wait:  # --wait implies --detach (Compose v2)
                return 0
            return commands.attached(client, project, host, ids, args)
        if args.command == "watch":
            if not args.no_up:
                Engine(client, project).up(UpOptions(services=args.names))
            return commands.watch(client, project, host, args)
        if args.command == "down":
            Engine(client, project).down(args.volumes, args.rmi, args.remove_orphans, args.timeout)
            return 0
        if args.command == "ps":
            return commands.ps(client, project, args)
        if args.command == "logs":
            return commands.logs(client, project, args, host)
        if args.command in ("start", "stop", "restart", "kill", "pause", "unpause", "rm"):
            return commands.lifecycle(client, project, args)
        from dockyard.compose import servicecmds  # v2's newer commands: imported when used

        handler = {"exec": commands.exec_, "run": commands.run, "images": commands.images,
                   "top": commands.top, "port": commands.port, "pull": commands.pull,
                   "push": commands.push, "build": commands.build, "cp": servicecmds.cp,
                   "attach": servicecmds.attach, "export": servicecmds.export, "commit": servicecmds.commit,
                   "stats": servicecmds.stats, "wait": servicecmds.wait, "scale": servicecmds.scale,
                   "events": servicecmds.events, "volumes": servicecmds.volumes}[args.command]
        return handler(client, project, args)
    finally:
        client.close()


# Commands that work from the containers' labels alone (`-p NAME` and no compose file), as v2's.
_BY_LABELS = ("down", "ps", "logs", "stop", "kill", "rm", "top", "images", "start", "restart", "pause", "unpause",
              "events", "volumes", "stats", "cp", "attach", "export", "commit", "wait", "port", "exec")


def _has_files(args: argparse.Namespace) -> bool:
    if args.files or os.environ.get("COMPOSE_FILE"):
        return True
    try:
        _project(args)
        return True
    except ComposeError as e:
        if "no configuration file provided" in str(e) and args.project_name:
            return False
        raise


def _project_from_labels(args: argparse.Namespace) -> Project:
    """`-p NAME down` without a compose file: the project as its containers' labels describe it."""
    from pathlib import Path

    return Project(args.project_name, Path.cwd(), [], {}, {}, {}, {}, {}, {})


def main(argv: list[str], host: str | None) -> int:
    only = _command_of(argv)
    built: list[str] = []
    parser = _parser(only, built)
    if only is not None and only not in built:
        parser = _parser()  # an unknown command: the full parser names the valid ones
    args = parser.parse_args(argv)
    if args.command in ("exec", "run") and args.cmd and args.cmd[0] == "--":
        args.cmd = args.cmd[1:]
    try:
        return _dispatch(args, host)
    except ComposeError as e:
        print(str(e), file=sys.stderr)
        return 1
    except APIError as e:
        print(f"Error response from daemon: {e.message}", file=sys.stderr)
        return 1
    except ConnectError as e:
        print(str(e), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:], None))
