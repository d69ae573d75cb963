"""Why a `stop` waits: said on a terminal when the container has not stopped after a moment.

The usual surprise is a PID 1 without a handler for SIGTERM: inside its PID namespace the kernel drops
signals PID 1 does not handle, so nothing happens until the timeout's SIGKILL. On a local daemon the
container's PID 1 is readable in /proc (SigCgt), so we can say which case it is.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from typing import Any, TextIO

NOTICE_AFTER = 2.0  # seconds: a stop quicker than this needs no explaining


def caught_signals(pid: int) -> set[int] | None:
    """Signals the process has handlers for (its SigCgt mask), or None when /proc cannot tell us."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("SigCgt:"):
                    mask = int(line.split()[1], 16)
                    return {n for n in range(1, 65) if mask & (1 << (n - 1))}
    except (OSError, ValueError):
        return None
    return None


def _comm(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return "?"


def why_waiting(info: dict[str, Any], signal_name: str | None, timeout: int | None, waited: float) -> str:
    """One line: the signal sent, what PID 1 does with it, when SIGKILL comes."""
    name = (signal_name or info.get("Config", {}).get("StopSignal") or "SIGTERM").upper()
    if not name.startswith("SIG") and not name.isdigit():
        name = "SIG" + name
    limit = timeout if timeout is not None else info.get("Config", {}).get("StopTimeout")
    limit = 10 if limit is None else int(limit)
    pid = int((info.get("State") or {}).get("Pid") or 0)
    try:
        num = int(name) if name.isdigit() else int(signal.Signals[name])
    except KeyError:
        num = 0
    caught = caught_signals(pid) if pid else None
    if caught is None or not num:
        what = "waiting for the container to exit"
    elif num in caught:
        what = f"its PID 1 ({_comm(pid)}) handles it and is still shutting down"
    else:
        what = (f"its PID 1 ({_comm(pid)}) has no handler for it, and a PID 1 ignores signals it does not "
                "handle (use --init, or handle the signal, or exec the program as PID 1 with a handler)")
    left = max(0, round(limit - waited))
    kill = f"SIGKILL in {left} s" if limit >= 0 else "no timeout: it waits until the container exits"
    return f"{name} sent; {what}; {kill}"


def stop_explained(stop: Callable[[], Any], inspect: Callable[[], dict[str, Any]], signal_name: str | None,
                   timeout: int | None, err: TextIO, name: str) -> Any:
    """Run `stop`; if it is still going after NOTICE_AFTER seconds, say why on `err` (a terminal)."""
    done = threading.Event()
    result: dict[str, Any] = {}

    def run() -> None:
        try:
            result["value"] = stop()
        except BaseException as e:  # noqa: BLE001 - re-raised in the caller's thread
            result["error"] = e
        finally:
            done.set()

    threading.Thread(target=run, daemon=True).start()
    if not done.wait(NOTICE_AFTER):
        try:
            err.write(f"Waiting for {name} to stop: {why_waiting(inspect(), signal_name, timeout, NOTICE_AFTER)}\n")
            err.flush()
        except Exception:  # noqa: BLE001 - an explanation that fails must not fail the stop
            pass
        done.wait()
    if "error" in result:
        raise result["error"]
    return result.get("value")
