"""run, create, start, attach, exec: the commands that wire a terminal to a container."""

from __future__ import annotations

import _signal
import argparse
import json
import os
import sys
import threading

from dockyard.cli.common import PROG, CLIError, Command, Ctx, os_error
from dockyard.cli.opts import OptError, add_container_flags, build_create_body, encode
from dockyard.cli.stdio import parse_detach_keys, pump, raw_terminal, resize_on_winch
from dockyard.client import APIClient, APIError

TYPE_CHECKING = False  # typing's, without importing typing (~3 ms of every `run`'s start-up)
if TYPE_CHECKING:
    from typing import Any


def _run_error(e: APIError, cmd: str) -> CLIError:
    """docker's run/create failure: prefixed message, a hint line, and 125/126/127."""
    msg = e.message
    code = 125
    if "executable file not found" in msg or "no such file or directory" in msg:
        code = 127
    elif "permission denied" in msg or "cannot execute" in msg or "not a directory" in msg.lower():
        code = 126
    return CLIError(f"{PROG}: Error response from daemon: {msg}\n\nRun '{PROG} {cmd} --help' for more information",
                    code)


def print_pull_progress(events: Any, out: Any = None) -> None:
    """docker's pull progress on stderr: bars on a terminal, one line per status change elsewhere."""
    from dockyard.cli.progress import ProgressError, show

    try:
        show(events, out or sys.stderr)
    except ProgressError as e:
        raise APIError(500, str(e)) from None


def pull_image(client: APIClient, image: str, platform: str | None = None, quiet: bool = False) -> None:
    name, tag = split_tag(image)
    events = client.pull(name, tag or ("latest" if "@" not in image else None), platform=platform,
                         auth=registry_auth(image))
    print_pull_progress(events, out=open(os.devnull, "w") if quiet else sys.stderr)


def split_tag(image: str) -> tuple[str, str | None]:
    if "@" in image:
        return image, None
    name, _, tag = image.rpartition(":")
    if name and "/" not in tag:
        return name, tag
    return image, None


def registry_auth(image: str) -> dict[str, str] | None:
    from dockyard.cli.auth import auth_for_image

    return auth_for_image(image)


def create_container(ctx: Ctx, args: argparse.Namespace, cmd: str) -> str:
    try:
        req, name = build_create_body(args)
        body = encode(req)
    except (OptError, ValueError, OSError) as e:
        why = os_error(e) if isinstance(e, OSError) else str(e)
        raise CLIError(f"{PROG}: {why}\n\nRun '{PROG} {cmd} --help' for more information", 125) from e
    client = ctx.client
    if args.pull == "always":
        try:
            pull_image(client, args.image, args.platform, args.quiet)
        except APIError as e:
            raise _run_error(e, cmd) from e
    try:
        result = client.create_container(body, name=name, platform=args.platform, pod=args.pod)
    except APIError as e:
        if e.status != 404 or "image" not in e.message.lower() or args.pull == "never":
            raise _run_error(e, cmd) from e
        print(f"Unable to find image '{_full_ref(args.image)}' locally", file=sys.stderr, flush=True)
        try:
            pull_image(client, args.image, args.platform, args.quiet)
            result = client.create_container(body, name=name, platform=args.platform, pod=args.pod)
        except APIError as e2:
            raise _run_error(e2, cmd) from e2
    for w in result.get("Warnings") or []:
        print(f"WARNING: {w}", file=sys.stderr)
    cid: str = result["Id"]
    return cid


def _full_ref(image: str) -> str:
    if "@" in image or ":" in image.rsplit("/", 1)[-1]:
        return image
    return image + ":latest"


def cmd_create(ctx: Ctx, args: argparse.Namespace) -> int:
    print(create_container(ctx, args, "create"))
    return 0


def cmd_run(ctx: Ctx, args: argparse.Namespace) -> int:
    if args.tty and not args.detach and args.interactive and not os.isatty(0):
        raise CLIError("the input device is not a TTY", 1)
    cid = create_container(ctx, args, "run")
    client = ctx.client
    if args.detach:
        try:
            client.start(cid)
        except APIError as e:
            raise _run_error(e, "run") from e
        print(cid)
        return 0
    attach_stdout = not args.attach or "stdout" in {x.lower() for x in args.attach}
    attach_stderr = not args.attach or "stderr" in {x.lower() for x in args.attach}
    # docker's CLI sends the wait beside the attach, and both before start, so an --rm container cannot
    # vanish unseen: the wait's answer (the daemon watches from then on) is read before the start.
    pending = client.wait_sent(cid, "removed" if args.rm else "next-exit")
    try:
        h = client.attach(cid, stdin=args.interactive, stdout=attach_stdout, stderr=attach_stderr,
                          detach_keys=args.detach_keys)
    except BaseException:
        pending.close()
        raise
    try:
        waiter = pending.stream()
    except BaseException:
        h.close()
        raise
    try:
        client.start(cid)
    except APIError as e:
        h.close()
        waiter.close()
        if args.rm:
            try:
                client.remove_container(cid, force=True)
            except APIError:
                pass
        raise _run_error(e, "run") from e
    ctx.sync_trace()
    detach_keys = parse_detach_keys(args.detach_keys)
    resize = (lambda hh, ww: client.resize(cid, hh, ww)) if args.tty else None
    sig_proxy = not args.tty and str(args.sig_proxy).lower() not in ("false", "0")
    tail = bytearray()
    with raw_terminal(args.tty and args.interactive), resize_on_winch(resize), \
            proxy_signals(client, cid, sig_proxy):
        detached = pump(h, args.tty, args.interactive, detach_keys, tail=tail)
    if detached:
        waiter.close()
        return 0
    status = json.loads(b"".join(waiter.chunks()) or b"{}")
    waiter.close()
    if status.get("Error") and status["Error"].get("Message"):
        print(f"{PROG}: Error response from daemon: {status['Error']['Message']}", file=sys.stderr)
        return 125
    if b"exec format error" in tail:
        hint = exec_format_hint(client, args.image)
        if hint:
            print(f"{PROG}: {hint}", file=sys.stderr)
    return int(status.get("StatusCode", 0))


def exec_format_hint(client: APIClient, image: str) -> str:
    """Why exec failed, beyond docker's words: the image's platform against the daemon host's."""
    try:
        img = client.inspect_image(image)
        host = client.version()
    except APIError:
        return ""
    return format_hint(image, f"{img.get('Os', 'linux')}/{img.get('Architecture', '')}",
                       f"{host.get('Os', 'linux')}/{host.get('Arch', '')}")


def format_hint(image: str, image_platform: str, host_platform: str) -> str:
    if image_platform != host_platform:
        return (f"exec format error: the image {image} is for {image_platform}, and this host runs "
                f"{host_platform} (pull the {host_platform} variant: --platform {host_platform})")
    return (f"exec format error: the image {image} and this host are both {host_platform}: the file run is not "
            "a program for it (a script needs a #! line)")


# What docker's --sig-proxy forwards: everything a user or supervisor would send (not SIGCHLD/SIGPIPE...),
# by number, with the name the kill request gives.
_PROXIED = {getattr(_signal, name): name
            for name in ("SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT", "SIGUSR1", "SIGUSR2", "SIGALRM")}


class proxy_signals:  # noqa: N801 - used as a function, `with proxy_signals(client, cid):`
    """Forward the signals this process gets to the container (Ctrl-C stops `run` by stopping the
    container, as with docker). The kill request goes out on a thread: a signal handler must not
    re-enter the HTTP client the main thread may be in the middle of. _signal, not signal: signal's
    enums cost ~1 ms of every run's start-up."""

    def __init__(self, client: APIClient, cid: str, enabled: bool = True) -> None:
        self.client = client
        self.cid = cid
        self.enabled = enabled and threading.current_thread() is threading.main_thread()
        self.previous: dict[int, Any] = {}

    def forward(self, signum: int, _frame: Any) -> None:
        threading.Thread(target=_kill_quietly, args=(self.client, self.cid, _PROXIED[signum]), daemon=True).start()

    def __enter__(self) -> None:
        if self.enabled:
            for sig in _PROXIED:
                self.previous[sig] = _signal.signal(sig, self.forward)

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self.previous.items():
            _signal.signal(sig, handler)
        self.previous.clear()


def _kill_quietly(client: APIClient, cid: str, name: str) -> None:
    try:
        client.kill(cid, name)
    except Exception:  # the container may have exited meanwhile; nothing to forward to
        pass


def setup_run(p: argparse.ArgumentParser) -> None:
    p.add_argument("-d", "--detach", action="store_true")
    p.add_argument("--rm", action="store_true")
    p.add_argument("--detach-keys")
    p.add_argument("--sig-proxy", default="true")
    add_container_flags(p)


def setup_create(p: argparse.ArgumentParser) -> None:
    p.add_argument("--rm", action="store_true")
    add_container_flags(p)


def cmd_start(ctx: Ctx, args: argparse.Namespace) -> int:
    client = ctx.client
    if not (args.attach or args.interactive):
        failed = 0
        for c in args.containers:
            try:
                client.start(c)
                print(c)
            except APIError as e:
                print(f"Error response from daemon: {e.message}", file=sys.stderr)
                failed = 1
        if failed:
            raise CLIError("Error: failed to start containers: " + ", ".join(args.containers), 1)
        return 0
    if len(args.containers) > 1:
        raise CLIError("you cannot start and attach multiple containers at once", 1)
    cid = args.containers[0]
    info = client.inspect_container(cid)
    tty = bool(info["Config"].get("Tty"))
    stdin = args.interactive and bool(info["Config"].get("OpenStdin"))
    h = client.attach(cid, stdin=stdin, detach_keys=args.detach_keys)
    waiter = client.wait_stream(cid, "next-exit")
    client.start(cid)
    ctx.sync_trace()
    resize = (lambda hh, ww: client.resize(cid, hh, ww)) if tty else None
    with raw_terminal(tty and stdin), resize_on_winch(resize):
        detached = pump(h, tty, stdin, parse_detach_keys(args.detach_keys))
    if detached:
        waiter.close()
        return 0
    status = json.loads(b"".join(waiter.chunks()) or b"{}")
    waiter.close()
    return int(status.get("StatusCode", 0))


def setup_start(p: argparse.ArgumentParser) -> None:
    p.add_argument("-a", "--attach", action="store_true")
    p.add_argument("-i", "--interactive", action="store_true")
    p.add_argument("--detach-keys")
    p.add_argument("containers", nargs="+")


def cmd_attach(ctx: Ctx, args: argparse.Namespace) -> int:
    client = ctx.client
    info = client.inspect_container(args.container)
    if not info["State"].get("Running"):
        raise CLIError("You cannot attach to a stopped container, start it first", 1)
    tty = bool(info["Config"].get("Tty"))
    stdin = not args.no_stdin and bool(info["Config"].get("OpenStdin"))
    h = client.attach(args.container, stdin=stdin, detach_keys=args.detach_keys)
    resize = (lambda hh, ww: client.resize(args.container, hh, ww)) if tty else None
    with raw_terminal(tty and stdin), resize_on_winch(resize):
        detached = pump(h, tty, stdin, parse_detach_keys(args.detach_keys))
    if detached:
        raise CLIError("read escape sequence", 1)  # docker's attach reports a detach as an error
    return int(client.wait(args.container).get("StatusCode", 0))


def setup_attach(p: argparse.ArgumentParser) -> None:
    p.add_argument("--no-stdin", action="store_true")
    p.add_argument("--sig-proxy", default="true")
    p.add_argument("--detach-keys")
    p.add_argument("container")


def cmd_exec(ctx: Ctx, args: argparse.Namespace) -> int:
    if not args.command:
        raise CLIError(f"{PROG} exec requires at least 2 arguments", 1)
    if args.tty and args.interactive and not args.detach and not os.isatty(0):
        raise CLIError("the input device is not a TTY", 1)  # as run -it: checked before the exec is made
    client = ctx.client
    from dockyard.cli.opts import parse_env

    config: dict[str, Any] = {
        "AttachStdin": args.interactive and not args.detach,
        "AttachStdout": not args.detach,
        "AttachStderr": not args.detach,
        "Tty": args.tty,
        "Cmd": args.command,
        "Env": parse_env(args.env, args.env_file) or None,
        "Privileged": args.privileged,
    }
    if args.workdir:
        config["WorkingDir"] = args.workdir
    if args.user:
        config["User"] = args.user
    if args.detach_keys:
        config["DetachKeys"] = args.detach_keys
    exec_id = client.exec_create(args.container, config)["Id"]
    if args.detach:
        client.exec_start(exec_id, detach=True)
        return 0
    h = client.exec_start(exec_id, tty=args.tty)
    assert h is not None
    ctx.sync_trace()
    resize = (lambda hh, ww: client.exec_resize(exec_id, hh, ww)) if args.tty else None
    with raw_terminal(args.tty and args.interactive), resize_on_winch(resize):
        pump(h, args.tty, args.interactive, parse_detach_keys(args.detach_keys))
    result = client.exec_inspect(exec_id)
    code = result.get("ExitCode")
    return int(code) if code is not None else 126


def setup_exec(p: argparse.ArgumentParser) -> None:
    p.add_argument("-i", "--interactive", action="store_true")
    p.add_argument("-t", "--tty", action="store_true")
    p.add_argument("-d", "--detach", action="store_true")
    p.add_argument("-e", "--env", action="append", default=[])
    p.add_argument("--env-file", action="append", default=[])
    p.add_argument("-w", "--workdir")
    p.add_argument("-u", "--user")
    p.add_argument("--privileged", action="store_true")
    p.add_argument("--detach-keys")
    p.add_argument("container")
    p.add_argument("command", nargs=argparse.REMAINDER)


COMMANDS = [
    Command("run", cmd_run, setup_run, "container", help="Create and run a new container from an image"),
    Command("create", cmd_create, setup_create, "container", help="Create a new container"),
    Command("start", cmd_start, setup_start, "container", help="Start one or more stopped containers"),
    Command("attach", cmd_attach, setup_attach, "container", help="Attach to a running container"),
    Command("exec", cmd_exec, setup_exec, "container", help="Execute a command in a running container"),
]
