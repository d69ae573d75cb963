"""SIGUSR1: the daemon writes every thread's and every asyncio task's stack to its log, and goes on.

For a daemon that hangs (a request that never answers, issue 25): `kill -USR1 <pid>` shows where each
thread and each coroutine waits. Two parts: faulthandler's dump of all threads, written from the C
signal handler, so it comes even when the main thread is stuck inside a C call (a netlink or sqlite
call that never returns); then, when the main thread runs Python again, one log record with each
thread's stack under its name and each asyncio task's stack (what a stuck `await` waits on).
"""

from __future__ import annotations

import asyncio
import faulthandler
import gc
import io
import logging
import os
import signal
import sys
import threading
import traceback
from types import AsyncGeneratorType, FrameType

log = logging.getLogger("dockyard.daemon")


def install(loop: asyncio.AbstractEventLoop) -> None:
    me = os.getpid()

    def on_usr1(signum: int, _frame: object) -> None:
        if os.getpid() != me:  # a child a library forked: not ours to report
            return
        log.warning("SIGUSR1: the stacks of every thread and asyncio task follow\n%s", dump(loop))

    signal.signal(signal.SIGUSR1, on_usr1)
    faulthandler.register(signal.SIGUSR1, file=sys.stderr, all_threads=True, chain=True)


def dump(loop: asyncio.AbstractEventLoop) -> str:
    out = io.StringIO()
    names = {t.ident: t.name for t in threading.enumerate()}
    for ident, frame in sys._current_frames().items():
        out.write(f"--- thread {names.get(ident, '?')} ({ident}), most recent call last:\n")
        out.write("".join(traceback.format_stack(frame)))
    tasks = sorted(asyncio.all_tasks(loop), key=lambda t: t.get_name())
    out.write(f"--- {len(tasks)} asyncio tasks\n")
    for task in tasks:
        out.write(f"--- task {task.get_name()}, awaiting (outermost first):\n")
        for frame in _await_chain(task.get_coro()):
            out.write("".join(traceback.format_stack(frame, limit=1)))
    return out.getvalue()


def _await_chain(coro: object) -> list[FrameType]:
    """The frames of a suspended coroutine and of everything it awaits, down to the innermost one
    (Task.get_stack shows the outermost frame only)."""
    frames: list[FrameType] = []
    while coro is not None and len(frames) < 200:
        frame = getattr(coro, "cr_frame", None) or getattr(coro, "gi_frame", None) or getattr(coro, "ag_frame", None)
        if frame is not None:
            frames.append(frame)
        nxt = getattr(coro, "cr_await", None) or getattr(coro, "gi_yieldfrom", None) or getattr(coro, "ag_await", None)
        if nxt is not None and not any(hasattr(nxt, a) for a in ("cr_frame", "gi_frame", "ag_frame")):
            # `async for` awaits an asend object that has no attribute for its generator; the garbage
            # collector knows what it refers to
            nxt = next((r for r in gc.get_referents(nxt) if isinstance(r, AsyncGeneratorType)), nxt)
        coro = nxt
    return frames
