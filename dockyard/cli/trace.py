"""`dockyard trace CTR` and `--explain`: the host changes the daemon made, step by step, with why.

Both read Dockyard's own `GET /dockyard/trace` (JSON lines). `--explain` sends its requests with an
`X-Dockyard-Trace` token and follows that session: the steps its own requests caused and every later
step on the objects they touched (the exit and removal of a `run --rm` container). Steps go to stderr,
so the command's own output stays as docker prints it.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import re
import secrets
import socket
import sys
import threading
import time
from typing import IO, Any

from dockyard.cli import common
from dockyard.cli.common import CLIError, Command, Ctx

_HEX = re.compile(r"\b([0-9a-f]{12})[0-9a-f]{52}\b")
_COLORS = {"mount": "35", "netns": "34", "link": "34", "addr": "34", "route": "34", "nft": "33",
           "iptables": "33", "socket": "33", "cgroup": "36", "runtime": "32", "file": "37", "snapshot": "35", "volume": "35"}


class Renderer:
    """Records as a terminal reads them: one group per object, one line per step with its duration, the
    kernel's answer and why under it (each why said once: the second container's veth needs no new
    reason). Colour only on a TTY."""

    def __init__(self, out: IO[str], color: bool | None = None) -> None:
        self.out = out
        self.color = out.isatty() if color is None else color
        self.last_obj = ""
        self.said: set[str] = set()

    def _c(self, code: str, text: str) -> str:
        return f"\x1b[{code}m{text}\x1b[0m" if self.color else text

    def record(self, r: dict[str, Any]) -> None:
        lines = []
        if r["Object"] != self.last_obj:
            self.last_obj = r["Object"]
            lines.append(self._c("1", f"── {r['Kind']} {_short(r['ID'])}"))
        began = r.get("Start") or r["Time"]  # printed in the order they ended, stamped when they began
        stamp = time.strftime("%H:%M:%S", time.localtime(began)) + f".{int(began * 1000) % 1000:03d}"
        dur = f"{r['DurationMs']:8.2f}ms" if r.get("DurationMs") is not None else "      seen"
        area = self._c(_COLORS.get(r["Area"], "0"), f"{r['Area']:<8}")
        lines.append(f"  {stamp} {dur} {area} {_short(r['Op'])}")
        pad = " " * 34
        for d in r.get("Detail") or []:
            lines.append(f"{pad}{self._c('2', '· ' + _short(d))}")
        result = _short(r["Result"])
        lines.append(f"{pad}→ {self._c('32' if r['OK'] else '31', result)}")
        if r.get("Why") and r["Why"] not in self.said:
            self.said.add(r["Why"])
            lines.append(f"{pad}{self._c('2', 'why: ' + r['Why'])}")
        self.out.write("\n".join(lines) + "\n")
        self.out.flush()


def _short(text: str) -> str:
    """Full ids shortened to 12 characters, as docker prints them (display only)."""
    return _HEX.sub(r"\1", text)


class Explainer:
    """Follows this command's trace session on a thread while the command runs."""

    def __init__(self, ctx: Ctx, out: IO[str] | None = None, fmt: str = "") -> None:
        self.client = ctx.client
        self.session = secrets.token_hex(8)
        self.out = out or sys.stderr
        self.renderer = Renderer(self.out)
        self.fmt = fmt
        self.lock = threading.Lock()
        self.marks = threading.Semaphore(0)
        self.thread: threading.Thread | None = None
        self.stream: Any = None
        self.available = True

    def begin(self) -> None:
        from dockyard.client import APIError

        self.client.api_version  # noqa: B018 - negotiate now, not on the reader's thread
        try:
            self.stream = self.client.stream("GET", "/dockyard/trace", {"session": self.session, "mark": self.session,
                                                                       "follow": "1"})
        except APIError as e:
            if e.status != 404:
                raise
            self.available = False
            print("--explain: this daemon has no trace (not a Dockyard daemon); running without it", file=self.out)
            return
        self.client.extra_headers["X-Dockyard-Trace"] = self.session
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        try:
            for r in self.stream.json():
                if r.get("Mark"):
                    self.marks.release()
                    continue
                with self.lock:
                    if self.fmt == "json":
                        self.out.write(json.dumps(r) + "\n")
                        self.out.flush()
                    else:
                        self.renderer.record(r)
        except (OSError, ValueError, http.client.HTTPException):
            pass  # the stream was shut down (end()) or the daemon went away
        finally:
            self.marks.release()  # a stream that ended wakes any sync

    def sync(self, timeout: float = 10) -> None:
        """Return once every step made so far is printed (the daemon marks the stream)."""
        if not self.available or self.thread is None:
            return
        try:
            self.client.post("/dockyard/trace/mark", {"mark": self.session})
        except Exception:  # noqa: BLE001 - explaining must never fail the command
            return
        self.marks.acquire(timeout=timeout)

    def end(self) -> None:
        self.sync()
        self.client.extra_headers.pop("X-Dockyard-Trace", None)
        if self.stream is not None:
            # The reader thread sits in a read on this socket, holding the response's buffer lock:
            # shut the socket down first (the read returns), else close() waits for that lock forever.
            sock = getattr(self.stream.conn, "sock", None)
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
            if self.thread is not None:
                self.thread.join(5)
            self.stream.close()


def setup_trace(p: argparse.ArgumentParser) -> None:
    p.add_argument("object", help="a container, network or volume (name or id), or an object key "
                                   "as the trace names it (image:busybox:latest)")
    p.add_argument("-f", "--follow", action="store_true", help="keep printing steps as they happen")
    p.add_argument("--format", default="", help='"json": one JSON record per line, as the daemon sends them')


def cmd_trace(ctx: Ctx, args: argparse.Namespace) -> int:
    from dockyard.client import APIError
    from dockyard.client.base import q

    client = ctx.client
    obj = args.object
    # A container, network or volume by name or id; anything else is matched as given ("image:...").
    for kind, path, key in (("container", "/containers/{}/json", "Id"), ("network", "/networks/{}", "Id"),
                            ("volume", "/volumes/{}", "Name")):
        try:
            obj = f"{kind}:" + client.get(path.format(q(args.object)))[key]
            break
        except APIError as e:
            if e.status not in (400, 404):
                raise
    try:
        stream = client.stream("GET", "/dockyard/trace", {"object": obj, "follow": "1" if args.follow else None})
    except APIError as e:
        if e.status == 404:
            raise CLIError("trace needs a Dockyard daemon (this one has no /dockyard/ endpoints)") from None
        raise
    renderer = Renderer(sys.stdout)
    try:
        for r in stream.json():
            if args.format == "json":
                print(json.dumps(r), flush=True)
            elif not r.get("Mark"):
                renderer.record(r)
    except KeyboardInterrupt:
        return 130
    finally:
        stream.close()
    return 0


EXPLAINED = common.EXPLAINED  # the commands taking --explain (kept light, in cli/common.py)

COMMANDS = [Command("trace", cmd_trace, setup_trace,
                    help="Show the host changes the daemon made for a container, step by step (Dockyard only)")]
