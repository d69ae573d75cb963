"""`dockyard`: docker's command line, against any Engine API."""

from __future__ import annotations

import argparse
import os
import sys

from dockyard.cli.common import PROG, CLIError, Command, Ctx, daemon_error
from dockyard.cli.parsing import Parser, UsageError

TYPE_CHECKING = False  # typing's, without importing typing (~3 ms of every command's start-up)
if TYPE_CHECKING:
    from typing import Any

GROUPS = {
    "container": "Manage containers",
    "image": "Manage images",
    "network": "Manage networks",
    "volume": "Manage volumes",
    "plugin": "Manage plugins",
    "system": "Manage Docker",
    "context": "Manage contexts",
    "builder": "Manage builds",
    "pod": "Manage pods (containers sharing network, IPC and UTS namespaces)",
    "kube": "Generate Kubernetes YAML from containers, pods and compose projects, or play it",
    "rootless": "Run the daemon as an ordinary user (Dockyard only)",
    "trust": "Sign images and verify their signatures (cosign's format)",
}


_MODULES = ("run", "containers", "images", "objects", "system", "context", "build", "explain", "trace", "completion", "pods",
            "kube", "dashboard", "rootless", "plugins", "trust")
# The modules holding each top-level word's commands: a command imports only what it needs (start-up
# time). A word missing here still works, through every module (tests/unit/test_cli_parsing.py checks).
_WORD_MODULES: dict[str, tuple[str, ...]] = {
    **dict.fromkeys(("run", "create", "start", "attach", "exec"), ("run",)),
    **dict.fromkeys(("ps", "inspect", "logs", "stop", "restart", "kill", "rm", "pause", "unpause", "rename",
                     "wait", "diff", "export", "cp", "top", "stats", "port", "update", "commit"), ("containers",)),
    **dict.fromkeys(("images", "pull", "push", "tag", "rmi", "save", "load", "import", "history", "search"),
                    ("images",)),
    **dict.fromkeys(("version", "info", "events", "login", "logout"), ("system",)),
    "build": ("build",), "explain": ("explain",), "trace": ("trace",), "dashboard": ("dashboard",),
    "completion": ("completion",), "__complete": ("completion",),
    "container": ("run", "containers"), "image": ("images", "build"), "network": ("objects",),
    "volume": ("objects",), "system": ("system", "context"), "context": ("context",), "builder": ("build",),
    "daemon": (), "registry": (), "compose": (), "pod": ("pods",), "kube": ("kube",),
    "rootless": ("rootless",), "plugin": ("plugins",), "trust": ("trust",),
}


def all_commands(only: str | None = None) -> list[Command]:
    import importlib

    names = _WORD_MODULES.get(only, _MODULES) if only else _MODULES
    out: list[Command] = []
    for name in names:
        out += importlib.import_module(f"dockyard.cli.{name}").COMMANDS
    return out


def build_parser(only: str | None = None) -> Parser:
    """The parser; with `only`, just that top-level command's subtree (keeps startup short)."""
    parser = Parser(prog=PROG, description="A self-sufficient runtime for containers")
    parser.add_argument("-H", "--host", action="append", help="Daemon socket to connect to")
    parser.add_argument("-c", "--context", help="Name of the context to use to connect to the daemon")
    parser.add_argument("-l", "--log-level", default="info", help="Set the logging level")
    parser.add_argument("-D", "--debug", action="store_true", help="Enable debug mode")
    parser.add_argument("--config", help="Location of client config files")
    parser.add_argument("--tls", action="store_true", default=None, help="Use TLS; implied by --tlsverify")
    parser.add_argument("--tlsverify", action="store_true", default=None, help="Use TLS and verify the remote")
    parser.add_argument("--tlscacert", help="Trust certs signed only by this CA")
    parser.add_argument("--tlscert", help="Path to TLS certificate file")
    parser.add_argument("--tlskey", help="Path to TLS key file")
    parser.add_argument("-v", "--version", action="store_true", help="Print version information and quit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    groups: dict[str, argparse._SubParsersAction[Parser]] = {}
    for name, help_text in GROUPS.items():
        if only in (None, name):
            gp = sub.add_parser(name, help=help_text, description=help_text)
            groups[name] = gp.add_subparsers(dest="subcommand", metavar="COMMAND")
    if only in (None, "daemon"):
        dp = sub.add_parser("daemon", help="Run the dockyard daemon", description="Run the dockyard daemon",
                            add_help=False)
        dp.add_argument("args", nargs=argparse.REMAINDER)
        dp.set_defaults(func=_daemon)
    if only in (None, "registry"):
        rp = sub.add_parser("registry", help="Run or maintain a registry server of our own", add_help=False,
                            description="Run or maintain a registry server of our own")
        rp.add_argument("args", nargs=argparse.REMAINDER)
        rp.set_defaults(func=_registry)
    if only in (None, "compose"):
        cp = sub.add_parser("compose", help="Define and run multi-container applications", add_help=False,
                            description="Define and run multi-container applications")
        cp.add_argument("args", nargs=argparse.REMAINDER)
        cp.set_defaults(func=_compose)
    from dockyard.cli.common import EXPLAINED

    for cmd in all_commands(only):
        if cmd.top and only in (None, cmd.name):
            p = sub.add_parser(cmd.name, help=cmd.help, description=cmd.help, conflict_handler="resolve")
            if cmd.setup:
                cmd.setup(p)
            _explain_flag(p, (cmd.name, None) in EXPLAINED)
            p.set_defaults(func=cmd.func)
        if cmd.group and cmd.group in groups:
            names = cmd.group_names or [cmd.name]
            p = groups[cmd.group].add_parser(names[0], aliases=names[1:], help=cmd.help, description=cmd.help,
                                             conflict_handler="resolve")
            if cmd.setup:
                cmd.setup(p)
            _explain_flag(p, (cmd.group, names[0]) in EXPLAINED)
            p.set_defaults(func=cmd.func)
    return parser


def _explain_flag(p: argparse.ArgumentParser, wanted: bool) -> None:
    if wanted:
        p.add_argument("--explain", action="store_true",
                       help="Print each host change the daemon makes, as it happens, with why (Dockyard only)")


def _daemon(ctx: Ctx, args: argparse.Namespace) -> int | None:
    from dockyard.daemon.main import main as daemon_main  # type: ignore[import-not-found,unused-ignore]

    result: int | None = daemon_main(args.args)
    return result


def _registry(ctx: Ctx, args: argparse.Namespace) -> int | None:
    from dockyard.registry.server.main import main as registry_main

    return registry_main(args.args)


def _compose(ctx: Ctx, args: argparse.Namespace) -> int | None:
    from dockyard.compose.cli import main as compose_main

    if ctx.context and not ctx.host:
        os.environ["DOCKER_CONTEXT"] = ctx.context  # compose's client resolves the endpoint like ours
    return compose_main(args.args, ctx.host)


_GLOBAL_WITH_VALUE = {"-H", "--host", "-c", "--context", "-l", "--log-level", "--config", "--tlscacert",
                      "--tlscert", "--tlskey"}


def _command_word(argv: list[str]) -> str | None:
    i = 0
    while i < len(argv):
        a = argv[i]
        if a in _GLOBAL_WITH_VALUE:
            i += 2
            continue
        if a.startswith("-"):
            i += 1
            continue
        return a
    return None


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    word = _command_word(argv)
    if word in ("daemon", "registry", "compose", "__complete"):
        # Pass-through commands: argparse's REMAINDER refuses a first argument that looks like an
        # option (`dockyard daemon --host ...`), so hand everything after the word over untouched.
        parser = build_parser(word)
        i = argv.index(word)
        args = parser.parse_args(argv[:i + 1])
        args.args = argv[i + 1:]
        host = args.host[-1] if args.host else None
        _resume_gc()
        return int(args.func(Ctx(host, context=args.context), args) or 0)
    parser = build_parser(word if word in _WORD_MODULES else None)
    try:
        args = parser.parse_args(argv)
    except UsageError as e:
        print(e.message, file=sys.stderr)
        return e.code
    except SystemExit as e:  # --help
        return int(e.code or 0)
    host = args.host[-1] if args.host else None
    if args.config:
        os.environ["DOCKER_CONFIG"] = args.config  # contexts and credentials live there
    ctx = Ctx(host, tls=args.tls, context=args.context, tlsverify=args.tlsverify,
              tls_files=(args.tlscacert, args.tlscert, args.tlskey))
    if args.version:
        print("Docker version 0.1.0 (dockyard)")
        return 0
    func = getattr(args, "func", None)
    if func is None:  # a bare group (`dockyard image`) or nothing: its help, as docker
        command = getattr(args, "command", None)
        sub = parser._subcommands()
        target = sub.choices[command] if command and sub is not None else parser
        target.print_help()
        return 0
    from dockyard.client import APIError, ConnectError

    def quiet_thread_error(a: Any) -> None:  # a helper thread's failure: one line too, never a traceback
        if args.debug:
            sys.__excepthook__(a.exc_type, a.exc_value, a.exc_traceback)  # type: ignore[arg-type]
        elif a.exc_type is not SystemExit:
            print(f"{PROG}: unexpected error: {a.exc_value or a.exc_type.__name__} (run with -D for details)",
                  file=sys.stderr)

    import threading

    threading.excepthook = quiet_thread_error

    _resume_gc()
    explainer = None
    try:
        if getattr(args, "explain", False):
            from dockyard.cli.trace import Explainer

            explainer = Explainer(ctx)
            explainer.begin()
            ctx.trace_sync = explainer.sync
        code = func(ctx, args)
    except CLIError as e:
        if e.message:
            print(e.message, file=sys.stderr)
        code = e.code
    except APIError as e:
        print(daemon_error(e), file=sys.stderr)
        code = 1
    except ConnectError as e:
        print(str(e), file=sys.stderr)
        code = 1
    except KeyboardInterrupt:
        code = 130
    except BrokenPipeError:
        # Our reader went away (`dockyard ps | head`): quiet exit, as Go programs do.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        code = 1
    except OSError as e:  # a file the command was given: `open /nope: no such file or directory`
        from dockyard.cli.common import os_error

        print(os_error(e), file=sys.stderr)
        code = 1
    except Exception as e:  # noqa: BLE001 - a user never gets a Python traceback; -D shows it
        if args.debug:
            import traceback

            traceback.print_exc()
        print(f"{PROG}: unexpected error: {e or type(e).__name__} (run with -D for details)", file=sys.stderr)
        code = 1
    finally:
        if explainer is not None:
            explainer.end()
        if ctx._client is not None:
            ctx._client.close()
    return int(code or 0)


# Commands that people run most and that write only to stdout and stderr (run: its terminal and
# signal handlers are restored before main returns): they end with os._exit, without the
# interpreter's teardown (~3-4 ms of every run: freeing every module).
_QUICK = frozenset({"version", "ps", "images", "inspect", "logs", "info", "run"})
_gc_paused = False


def cli() -> None:
    """The process's entry (the `dockyard` script, `python -m dockyard.cli.main`): main(), with the
    cyclic garbage collector off while the modules load and the parser is built (they make tens of
    thousands of objects that live to the end; collecting them costs ~2 ms of every start), and for the
    _QUICK commands no teardown when nothing is left for it to do."""
    global _gc_paused
    import gc

    gc.disable()
    _gc_paused = True
    code = main()
    if _command_word(sys.argv[1:]) in _QUICK and _nothing_left():
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        except Exception:  # noqa: BLE001,S110 - a closed pipe: the ordinary exit, which knows what to say
            pass
        else:
            os._exit(code)
    sys.exit(code)


def _resume_gc() -> None:
    """After cli() paused the collector: the start-up's objects are made; collect what comes after."""
    global _gc_paused
    if _gc_paused:
        import gc

        gc.freeze()  # they live to the end: no collection needs to look at them again
        gc.enable()
        _gc_paused = False


def _nothing_left() -> bool:
    """Whether an ordinary exit would only free memory: no atexit function to run, no thread to join."""
    import atexit

    if atexit._ncallbacks():
        return False
    threading = sys.modules.get("threading")
    return threading is None or all(t.daemon or t is threading.main_thread() for t in threading.enumerate())


if __name__ == "__main__":
    cli()
