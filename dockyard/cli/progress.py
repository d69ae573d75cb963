"""The daemon's JSON progress messages shown as docker shows them (its jsonmessage display).

On a terminal each layer keeps one line, redrawn in place: `a3ed95caeb02: Downloading [====>   ] 12.3MB/48.1MB`.
Elsewhere one plain line per status change, without the per-chunk progress.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import IO, Any


class ProgressError(Exception):
    """An error message in the stream (the operation failed part way)."""


def show(events: Iterable[dict[str, Any]], out: IO[str], tty: bool | None = None, quiet: bool = False) -> str:
    """Print the messages; returns the last status line. Raises ProgressError on an error message."""
    if tty is None:
        tty = out.isatty()
    rows: dict[str, int] = {}  # a layer's line, counted from the top of what we printed
    printed = 0
    last = ""
    for ev in events:
        if ev.get("error") or ev.get("errorDetail"):
            raise ProgressError(ev.get("error") or (ev.get("errorDetail") or {}).get("message") or "failed")
        if ev.get("stream"):  # a build's output, as it comes (maybe part of a line): written as is
            last = ev["stream"].rstrip("\n") or last
            if not quiet:
                out.write(ev["stream"])
                out.flush()
                rows.clear()  # as docker: lines we cannot count end the redrawing of earlier ones
                printed = 0
            continue
        status = ev.get("status") or ""
        ident = ev.get("id") or ""
        if status:
            last = status.rstrip("\n")
        if quiet or not (status or ident):
            continue
        if not tty:
            if ev.get("progressDetail") and ev.get("progress"):
                continue  # per-chunk progress: only a terminal can redraw it
            out.write(f"{ident}: {status}\n" if ident else status if status.endswith("\n") else status + "\n")
            out.flush()
            continue
        line = f"{ident}: {status} {ev.get('progress') or ''}".rstrip() if ident else status.rstrip("\n")
        if ident and ident in rows:
            up = printed - rows[ident]
            out.write(f"\x1b[{up}A\r\x1b[2K{line}\r\x1b[{up}B")  # up to its line, rewrite, back down
        else:
            if ident:
                rows[ident] = printed
            out.write(line + "\n")
            printed += 1
        out.flush()
    return last
