"""Shared CLI plumbing: the command table, the client context, error reporting like docker's."""

from __future__ import annotations

import argparse
import json
import sys

TYPE_CHECKING = False  # typing's, without importing typing (~3 ms of every command's start-up)
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable
    from typing import Any

    from dockyard.client import APIClient

PROG = "dockyard"  # in usage lines, hints and error prefixes, where docker says "docker"


class CLIError(Exception):
    """Print `message` on stderr and exit with `code`."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


class Ctx:
    """The client side of one command: where the daemon is, and the client once made.

    A plain class, not a dataclass: dataclasses pulls in inspect, which costs every command's start-up."""

    def __init__(self, host: str | None, tls: bool | None = None, _client: APIClient | None = None,
                 context: str | None = None, tlsverify: bool | None = None,
                 tls_files: tuple[str | None, str | None, str | None] = (None, None, None),
                 resolved_context: str = "default", trace_sync: Callable[[], None] | None = None) -> None:
        self.host = host
        self.tls = tls
        self._client = _client
        self.context = context  # --context
        self.tlsverify = tlsverify
        self.tls_files = tls_files  # --tlscacert/--tlscert/--tlskey
        self.resolved_context = resolved_context  # the context the client connected through (for version/info)
        self.trace_sync = trace_sync  # --explain: prints every step made so far

    def sync_trace(self) -> None:
        """With --explain, let the steps so far print before the command's own output starts."""
        if self.trace_sync is not None:
            self.trace_sync()

    @property
    def client(self) -> APIClient:
        if self._client is None:
            from dockyard.client import APIClient
            from dockyard.client.contexts import ContextError, resolve

            try:
                ep = resolve(self.context, [self.host] if self.host else None, tls=self.tls,
                             tlsverify=self.tlsverify, tlscacert=self.tls_files[0], tlscert=self.tls_files[1],
                             tlskey=self.tls_files[2])
                ssl_ctx = ep.tls.ssl_context() if ep.tls else False
                self.resolved_context = ep.context
            except (ContextError, OSError, ValueError) as e:
                raise CLIError(f"Failed to initialize: unable to resolve docker endpoint: {e}") from None
            try:
                self._client = APIClient(ep.host, tls=ssl_ctx)
            except ValueError as e:
                raise CLIError(f"Failed to initialize: unable to resolve docker endpoint: {e}") from None
        return self._client


if TYPE_CHECKING:
    Handler = Callable[[Ctx, argparse.Namespace], int | None]


class Command:
    """One docker command: `name` at top level (if top) and under `group` (with aliases)."""

    def __init__(self, name: str, func: Handler, setup: Callable[[argparse.ArgumentParser], None] | None = None,
                 group: str | None = None, group_names: list[str] | None = None, top: bool = True,
                 help: str = "") -> None:
        self.name = name
        self.func = func
        self.setup = setup
        self.group = group
        self.group_names = group_names or []
        self.top = top
        self.help = help


# Commands that take --explain (main.py adds the flag and runs them under trace.Explainer). Here, not in
# trace.py: building the parser must not import trace's HTTP and threading machinery.
EXPLAINED = {("run", None), ("create", None), ("start", None), ("exec", None), ("stop", None), ("rm", None),
             ("restart", None), ("kill", None), ("pause", None), ("unpause", None), ("pull", None),
             ("build", None), ("load", None), ("commit", None), ("rmi", None),
             ("container", "run"), ("container", "create"), ("container", "start"), ("container", "exec"),
             ("container", "stop"), ("container", "rm"), ("container", "restart"), ("container", "kill"),
             ("container", "pause"), ("container", "commit"), ("image", "pull"), ("image", "build"),
             ("image", "load"), ("image", "rm"), ("network", "connect"), ("network", "disconnect"),
             ("network", "create"), ("network", "rm"), ("volume", "create"), ("volume", "rm"),
             ("update", None), ("container", "update"), ("container", "unpause"), ("container", "prune"),
             ("image", "prune"), ("network", "prune"), ("volume", "prune"), ("system", "prune")}


def os_error(e: OSError, op: str = "open") -> str:
    """An OSError in Go's words, as docker prints it: `open /nope: no such file or directory`."""
    why = (e.strerror or str(e)).lower()
    return f"{op} {e.filename}: {why}" if e.filename else why


def daemon_error(e: Exception) -> str:
    from dockyard.client import APIError

    if isinstance(e, APIError):
        return f"Error response from daemon: {e.message}"
    return str(e)


def for_each(items: Iterable[str], fn: Callable[[str], Any], echo: bool = True) -> int:
    """Run fn per item like docker's multi-object commands: print each success, report each failure."""
    from dockyard.client import APIError

    failed = False
    for item in items:
        try:
            fn(item)
            if echo:
                print(item, flush=True)
        except APIError as e:
            failed = True
            print(daemon_error(e), file=sys.stderr, flush=True)
    return 1 if failed else 0


def parse_filters(values: list[str] | None) -> dict[str, list[str]] | None:
    if not values:
        return None
    out: dict[str, list[str]] = {}
    for v in values:
        if "=" not in v:
            raise CLIError("bad format of filter (expected name=value)")
        k, _, val = v.partition("=")
        out.setdefault(k.strip().lower(), []).append(val)
    return out


def print_json(obj: Any) -> None:
    """docker's indented JSON (4 spaces, no HTML escaping)."""
    sys.stdout.write(json.dumps(obj, indent=4, ensure_ascii=False) + "\n")


def add_format(p: argparse.ArgumentParser) -> None:
    p.add_argument("--format", default="")
