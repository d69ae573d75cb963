"""Pumping a hijacked attach/exec stream to the terminal: raw mode, resizes, detach keys, stdin EOF."""

from __future__ import annotations

import contextlib
import os
import select
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any

from dockyard.client import STDERR, Hijacked
from dockyard.util import detachkeys


def parse_detach_keys(spec: str | None) -> bytes:
    """docker's detach key syntax (util/detachkeys): comma-separated `ctrl-<x>` or single characters."""
    try:
        return detachkeys.parse(spec)
    except ValueError:
        raise ValueError(f"Invalid escape keys ({spec}) provided") from None


@contextlib.contextmanager
def raw_terminal(enabled: bool) -> Iterator[None]:
    if not enabled or not os.isatty(0):
        yield
        return
    import termios
    import tty

    saved = termios.tcgetattr(0)
    try:
        tty.setraw(0, termios.TCSANOW)  # TCSAFLUSH would drop input typed before start
        yield
    finally:
        termios.tcsetattr(0, termios.TCSADRAIN, saved)


def terminal_size() -> tuple[int, int] | None:
    for fd in (1, 0, 2):
        try:
            size = os.get_terminal_size(fd)
            return size.lines, size.columns
        except OSError:
            continue
    return None


@contextlib.contextmanager
def resize_on_winch(resize: Callable[[int, int], None] | None) -> Iterator[None]:
    """Send the terminal size now and on each SIGWINCH (as docker's CLI does)."""
    if resize is None or terminal_size() is None:
        yield
        return

    def send(*_: Any) -> None:
        size = terminal_size()
        if size:
            with contextlib.suppress(Exception):
                resize(*size)

    send()
    old = signal.signal(signal.SIGWINCH, send)
    try:
        yield
    finally:
        signal.signal(signal.SIGWINCH, old)


def pump(
    h: Hijacked,
    tty: bool,
    send_stdin: bool,
    detach_keys: bytes = b"\x10\x11",
    tail: bytearray | None = None,
) -> bool:
    """Copy output to stdout/stderr and stdin to the socket until the output ends.

    Returns True when the user detached with the detach keys. `tail` gets the output's last bytes (for
    a hint about what went wrong).
    """
    detached = threading.Event()
    done = threading.Event()

    def output() -> None:
        out, err = sys.stdout.buffer, sys.stderr.buffer
        try:
            for kind, data in h.frames(tty):
                target = err if kind == STDERR else out
                target.write(data)
                target.flush()
                if tail is not None:
                    tail.extend(data)
                    del tail[:-256]
        except OSError:
            pass
        finally:
            done.set()

    def input_loop() -> None:
        keys = detachkeys.Matcher(detach_keys if tty else b"")
        try:
            while not done.is_set():
                readable, _, _ = select.select([0], [], [], 0.2)
                if not readable:
                    continue
                data = os.read(0, 32768)
                if not data:
                    break
                passed = keys.feed(data)
                if passed is None:
                    detached.set()
                    done.set()
                    return
                data = passed
                if data:
                    h.send(data)
        except OSError:
            pass
        # stdin ended: half-close so the process sees EOF but output keeps flowing.
        h.close_write()

    out_thread = threading.Thread(target=output, daemon=True)
    out_thread.start()
    if send_stdin:
        threading.Thread(target=input_loop, daemon=True).start()
    while not done.wait(0.2):  # a timed wait lets SIGWINCH handlers run
        pass
    if detached.is_set():
        h.close()
        return True
    out_thread.join()
    h.close()
    return False
