"""`context create|ls|use|show|inspect|rm|export|import|update` and `system dial-stdio`."""

from __future__ import annotations

import argparse
import os
import socket
import sys
import threading
from pathlib import Path

from dockyard.cli.common import CLIError, Command, Ctx, print_json
from dockyard.cli.formatting import write_rows
from dockyard.client.contexts import (
    DEFAULT,
    TLS_FILES,
    Context,
    ContextError,
    ContextStore,
    TLSOptions,
    resolve_context_name,
)

_DOCKER_KEYS = {"host", "ca", "cert", "key", "skip-tls-verify", "from"}


def _store(ctx: Ctx) -> ContextStore:
    return ContextStore()


def _fail(e: ContextError) -> CLIError:
    return CLIError(str(e))


def _parse_docker_opt(spec: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in filter(None, spec.split(",")):
        k, eq, v = item.partition("=")
        k = k.strip().lower()
        if not eq or k not in _DOCKER_KEYS:
            raise CLIError(f"unable to create docker endpoint config: unrecognized config key: {k}")
        out[k] = v
    return out


def _read_pem(path: str, what: str) -> bytes:
    try:
        data = Path(path).expanduser().read_bytes()
    except OSError as e:
        raise CLIError(f"unable to create docker endpoint config: open {path}: {(e.strerror or str(e)).lower()}") from None
    if b"-----BEGIN" not in data:
        raise CLIError("unable to create docker endpoint config: invalid docker endpoint options: "
                       f"failed to retrieve context tls info: {what} seems invalid")
    return data


def _endpoint_from(opts: dict[str, str], base: Context | None, name: str) -> Context:
    """A context from --docker options, starting from another context's endpoint (--from or current)."""
    c = Context(name, base.host if base else "", skip_tls_verify=base.skip_tls_verify if base else False,
                tls=dict(base.tls) if base else {})
    if "host" in opts:
        c.host = opts["host"]
        c.tls = {}
    for key, fname in (("ca", "ca.pem"), ("cert", "cert.pem"), ("key", "key.pem")):
        if opts.get(key):
            c.tls[fname] = _read_pem(opts[key], fname)
    if "skip-tls-verify" in opts:
        c.skip_tls_verify = opts["skip-tls-verify"].lower() in ("1", "true", "t", "yes")
    if not c.host:
        raise CLIError("unable to create docker endpoint config: no host specified")
    if c.tls:
        try:
            TLSOptions(True, c.tls.get("ca.pem"), c.tls.get("cert.pem"), c.tls.get("key.pem")).ssl_context()
        except Exception as e:  # noqa: BLE001 - any failure here means unusable material
            raise CLIError(f"unable to create docker endpoint config: invalid TLS material: {e}") from None
    return c


def _current_base(ctx: Ctx, store: ContextStore) -> Context:
    name = resolve_context_name(ctx.context, [ctx.host] if ctx.host else None, store)
    base = store.get(name)
    if name == DEFAULT and ctx.host:
        base.host = ctx.host
    return base


def cmd_create(ctx: Ctx, args: argparse.Namespace) -> int:
    store = _store(ctx)
    opts = _parse_docker_opt(args.docker or "")
    try:
        src = args.from_ or opts.pop("from", None)
        base = store.get(src) if src else _current_base(ctx, store)
        new = _endpoint_from(opts, base, args.name)
        new.description = args.description or ""
        store.create(new)
    except ContextError as e:
        raise _fail(e) from None
    print(args.name)
    print(f'Successfully created context "{args.name}"', file=sys.stderr)
    return 0


def setup_create(p: argparse.ArgumentParser) -> None:
    p.add_argument("--description", default="")
    p.add_argument("--docker", default="", help="set the docker endpoint: host=...,ca=...,cert=...,key=...")
    p.add_argument("--from", dest="from_", help="create context from a named context")
    p.add_argument("name")


def cmd_update(ctx: Ctx, args: argparse.Namespace) -> int:
    store = _store(ctx)
    try:
        if args.name == DEFAULT:
            raise ContextError('context "default" cannot be updated')
        old = store.get(args.name)
        new = _endpoint_from(_parse_docker_opt(args.docker or ""), old, args.name)
        new.description = old.description if args.description is None else args.description
        new.metadata = old.metadata
        store.save(new)
    except ContextError as e:
        raise _fail(e) from None
    print(args.name)
    print(f'Successfully updated context "{args.name}"', file=sys.stderr)
    return 0


def setup_update(p: argparse.ArgumentParser) -> None:
    p.add_argument("--description", default=None)
    p.add_argument("--docker", default="")
    p.add_argument("name")


def _current_name(ctx: Ctx, store: ContextStore) -> str:
    try:
        return resolve_context_name(ctx.context, [ctx.host] if ctx.host else None, store)
    except ContextError as e:
        raise _fail(e) from None


def cmd_ls(ctx: Ctx, args: argparse.Namespace) -> int:
    store = _store(ctx)
    current = _current_name(ctx, store)
    rows = []
    for c in store.list():
        host = c.host
        if c.name == DEFAULT and ctx.host and current == DEFAULT:
            host = ctx.host
        rows.append({"Current": c.name == current, "Description": c.description, "DockerEndpoint": host,
                     "Error": "", "Name": c.name})
    if args.quiet:
        for r in rows:
            print(r["Name"])
        return 0
    headers = {"Name": "NAME", "Current": "", "Description": "DESCRIPTION", "DockerEndpoint": "DOCKER ENDPOINT",
               "Error": "ERROR"}
    write_rows(args.format, rows, headers,
               "table {{.Name}}{{if .Current}} *{{end}}\t{{.Description}}\t{{.DockerEndpoint}}\t{{.Error}}")
    return 0


def setup_ls(p: argparse.ArgumentParser) -> None:
    p.add_argument("-q", "--quiet", action="store_true")
    p.add_argument("--format", default="")


def cmd_use(ctx: Ctx, args: argparse.Namespace) -> int:
    store = _store(ctx)
    if not store.exists(args.name):
        raise CLIError(f'context "{args.name}" does not exist')
    store.set_current(args.name)
    print(args.name)
    print(f'Current context is now "{args.name}"', file=sys.stderr)
    if os.environ.get("DOCKER_HOST") and args.name != DEFAULT:
        print("Warning: DOCKER_HOST environment variable overrides the active context. To use "
              f'"{args.name}", either set the global --context flag, or unset DOCKER_HOST environment variable.',
              file=sys.stderr)
    return 0


def setup_name(p: argparse.ArgumentParser) -> None:
    p.add_argument("name")


def cmd_show(ctx: Ctx, args: argparse.Namespace) -> int:
    print(_current_name(ctx, _store(ctx)))
    return 0


def cmd_inspect(ctx: Ctx, args: argparse.Namespace) -> int:
    store = _store(ctx)
    names = args.names or [_current_name(ctx, store)]
    docs, failed = [], False
    for name in names:
        try:
            docs.append(store.inspect(name))
        except ContextError as e:
            failed = True
            print(str(e), file=sys.stderr)
    if args.format:
        from dockyard.cli.formatting import render_each

        render_each(args.format, docs)
    else:
        print_json(docs)
    return 1 if failed else 0


def setup_inspect(p: argparse.ArgumentParser) -> None:
    p.add_argument("-f", "--format", default="")
    p.add_argument("names", nargs="*")


def cmd_rm(ctx: Ctx, args: argparse.Namespace) -> int:
    store = _store(ctx)
    failed = False
    for name in args.names:
        try:
            store.remove(name, force=args.force)
            print(name)
        except ContextError as e:
            failed = True
            print(str(e), file=sys.stderr)
    return 1 if failed else 0


def setup_rm(p: argparse.ArgumentParser) -> None:
    p.add_argument("-f", "--force", action="store_true")
    p.add_argument("names", nargs="+")


def cmd_export(ctx: Ctx, args: argparse.Namespace) -> int:
    try:
        data = _store(ctx).export(args.name)
    except ContextError as e:
        raise _fail(e) from None
    dest = args.file or f"{args.name}.dockercontext"
    if dest == "-":
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
        return 0
    try:
        fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise CLIError(f"open {dest}: file exists") from None
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    print(f'Written file "{dest}"', file=sys.stderr)
    return 0


def setup_export(p: argparse.ArgumentParser) -> None:
    p.add_argument("name")
    p.add_argument("file", nargs="?")


def cmd_import(ctx: Ctx, args: argparse.Namespace) -> int:
    try:
        data = sys.stdin.buffer.read() if args.file == "-" else Path(args.file).read_bytes()
        _store(ctx).import_(args.name, data)
    except ContextError as e:
        raise _fail(e) from None
    except OSError as e:
        raise CLIError(f"open {args.file}: {(e.strerror or str(e)).lower()}") from None
    print(args.name)
    print(f'Successfully imported context "{args.name}"', file=sys.stderr)
    return 0


def setup_import(p: argparse.ArgumentParser) -> None:
    p.add_argument("name")
    p.add_argument("file")


# -- system dial-stdio: the far end of an ssh:// connection ----------------------------


def cmd_dial_stdio(ctx: Ctx, args: argparse.Namespace) -> int:
    """Join stdin/stdout to the daemon socket, passing half-closes both ways (docker's dial-stdio)."""
    from dockyard.client.transport import open_socket

    client = ctx.client
    try:
        sock = open_socket(client.host, client.tls)
    except OSError as e:
        raise CLIError(f"failed to dial {client.host.url}: {e}") from None

    def stdin_to_sock() -> None:
        try:
            while data := os.read(0, 65536):
                sock.sendall(data)
            sock.shutdown(socket.SHUT_WR)  # the client finished sending (e.g. attach stdin closed)
        except OSError:
            pass

    threading.Thread(target=stdin_to_sock, daemon=True).start()
    try:
        while data := sock.recv(65536):
            view = memoryview(data)
            while view:
                view = view[os.write(1, view):]
    except OSError:
        pass
    # The daemon is done: end our stdout so ssh forwards EOF, and exit (as docker does) even if stdin is open.
    os.close(1)
    sock.close()
    return 0


G = "context"
COMMANDS = [
    Command("create", cmd_create, setup_create, G, top=False, help="Create a context"),
    Command("update", cmd_update, setup_update, G, top=False, help="Update a context"),
    Command("ls", cmd_ls, setup_ls, G, ["ls", "list"], top=False, help="List contexts"),
    Command("use", cmd_use, setup_name, G, top=False, help="Set the current docker context"),
    Command("show", cmd_show, None, G, top=False, help="Print the name of the current context"),
    Command("inspect", cmd_inspect, setup_inspect, G, top=False, help="Display detailed information on contexts"),
    Command("rm", cmd_rm, setup_rm, G, ["rm", "remove"], top=False, help="Remove one or more contexts"),
    Command("export", cmd_export, setup_export, G, top=False, help="Export a context to a tar archive"),
    Command("import", cmd_import, setup_import, G, top=False, help="Import a context from a tar archive"),
    Command("dial-stdio", cmd_dial_stdio, None, "system", top=False,
            help="Proxy the stdio stream to the daemon connection"),
]

__all__ = ["COMMANDS", "TLS_FILES"]
