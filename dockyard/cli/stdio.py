"""Pumping a hijacked attach/exec stream to the terminal: raw mode, resizes, detach keys, stdin EOF.

Plain context-manager classes and _signal, not contextlib and signal: each is ~1 ms of every `run`'s
start-up (issue 20; signal builds its enums at import)."""

from __future__ import annotations

import _signal
import os
import select
import sys
import threading

from dockyard.client import STDERR, Hijacked
from dockyard.util import detachkeys

TYPE_CHECKING = False  # typing's, without importing typing (~3 ms of every `run`'s start-up)
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any


def parse_detach_keys(spec: str | None) -> bytes:
    """docker's detach key syntax (util/detachkeys): comma-separated `ctrl-<x>` or single characters."""
    try:
        return detachkeys.parse(spec)
    except ValueError:
        raise ValueError(f"Invalid escape keys ({spec}) provided") from None


class raw_terminal:  # noqa: N801 - used as a function, `with raw_terminal(tty):`
    """The terminal on stdin in raw mode for the block (when `enabled` and stdin is one)."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.saved: list[Any] | None = None

    def __enter__(self) -> None:
        if not self.enabled or not os.isatty(0):
            return
        import termios
        import tty

        self.saved = termios.tcgetattr(0)
        tty.setraw(0, termios.TCSANOW)  # TCSAFLUSH would drop input typed before start

    def __exit__(self, *exc: object) -> None:
        if self.saved is not None:
            import termios

            termios.tcsetattr(0, termios.TCSADRAIN, self.saved)
            self.saved = None


def terminal_size() -> tuple[int, int] | None:
    for fd in (1, 0, 2):
        try:
            size = os.get_terminal_size(fd)
            return size.lines, size.columns
        except OSError:
            continue
    return None


class resize_on_winch:  # noqa: N801 - used as a function, `with resize_on_winch(fn):`
    """Send the terminal size now and on each SIGWINCH (as docker's CLI does)."""

    def __init__(self, resize: Callable[[int, int], None] | None) -> None:
        self.resize = resize
        self.old: Any = None
        self.installed = False

    def send(self, *_: Any) -> None:
        size = terminal_size()
        if size and self.resize is not None:
            try:
                self.resize(*size)
            except Exception:  # noqa: BLE001,S110 - a resize that fails (the container gone) changes nothing
                pass

    def __enter__(self) -> None:
        if self.resize is None or terminal_size() is None:
            return
        self.send()
        self.old = _signal.signal(_signal.SIGWINCH, self.send)
        self.installed = True

    def __exit__(self, *exc: object) -> None:
        if self.installed:
            _signal.signal(_signal.SIGWINCH, self.old)
            self.installed = False


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

    if not send_stdin:
        # Nothing to read meanwhile: the output in this thread (no thread to start and hand over to; a
        # signal's handler runs between its reads, as in the timed wait below).
        output()
        h.close()
        return False
    out_thread = threading.Thread(target=output, daemon=True)
    out_thread.start()
    threading.Thread(target=input_loop, daemon=True).start()
    while not done.wait(0.2):  # a timed wait lets SIGWINCH handlers run
        pass
    if detached.is_set():
        h.close()
        return True
    out_thread.join()
    h.close()
    return False
