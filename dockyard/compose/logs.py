"""Multiplexed, prefixed container logs (`web-1  | line`), one reader thread per container."""

from __future__ import annotations

import sys
import threading
from typing import Any, TextIO

from dockyard.client import APIClient, APIError, ConnectError
from dockyard.compose import state

# Compose's rotation of ANSI colours for the prefixes.
COLOURS = ["36", "33", "32", "35", "34", "96", "93", "92", "95", "94"]


class LogPrinter:
    def __init__(self, out: TextIO | None = None, colour: bool | None = None, prefix: bool = True) -> None:
        self.out = out or sys.stdout
        self.colour = self.out.isatty() if colour is None else colour
        self.prefix = prefix
        self.lock = threading.Lock()
        self.width = 0
        self.colours: dict[str, str] = {}

    def register(self, label: str) -> None:
        self.width = max(self.width, len(label))
        if label not in self.colours:
            self.colours[label] = COLOURS[len(self.colours) % len(COLOURS)]

    def plain(self, text: str) -> None:
        with self.lock:
            self.out.write(text + "\n")
            self.out.flush()

    def line(self, label: str, text: str) -> None:
        if not self.prefix:
            head = ""
        elif self.colour:
            head = f"\x1b[{self.colours.get(label, '0')}m{label.ljust(self.width)}  | \x1b[0m"
        else:
            head = f"{label.ljust(self.width)}  | "
        with self.lock:
            self.out.write(head + text + "\n")
            self.out.flush()


def label_for(ctr: dict[str, Any], project: str) -> str:
    name = state.name(ctr)
    return name[len(project) + 1:] if name.startswith(project + "-") else name


def follow(client_host: str | None, ctr: dict[str, Any], label: str, printer: LogPrinter,
           follow: bool = True, tail: str | None = None, timestamps: bool = False,
           since: str | None = None, until: str | None = None) -> None:
    """Read one container's log to its end (or forever with follow), printing whole lines."""
    client = APIClient(client_host)  # a connection per thread: the stream holds its socket
    tty = bool(ctr.get("Config", {}).get("Tty")) if "Config" in ctr else False
    if "Config" not in ctr:
        try:
            tty = bool(client.inspect_container(ctr["Id"])["Config"].get("Tty"))
        except APIError:
            return
    try:
        with client.logs(ctr["Id"], follow=follow, tail=tail, timestamps=timestamps, since=since,
                         until=until) as s:
            buf = b""
            for _, data in s.frames(tty):
                buf += data
                while b"\n" in buf:
                    ln, buf = buf.split(b"\n", 1)
                    printer.line(label, ln.decode(errors="replace").rstrip("\r"))
            if buf:
                printer.line(label, buf.decode(errors="replace"))
    except (APIError, ConnectError, OSError):
        return
    finally:
        client.close()


def start_followers(host: str | None, ctrs: list[dict[str, Any]], project: str, printer: LogPrinter,
                    **kw: Any) -> list[threading.Thread]:
    for c in ctrs:
        printer.register(label_for(c, project))
    threads = []
    for c in ctrs:
        t = threading.Thread(target=follow, args=(host, c, label_for(c, project), printer), kwargs=kw,
                             daemon=True)
        t.start()
        threads.append(t)
    return threads
