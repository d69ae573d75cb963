"""The one signal parser: what `docker kill -s`, `--stop-signal` and the API's `signal=` accept."""

from __future__ import annotations

import signal

from dockyard.errors import InvalidParameter


def parse_signal(sig: str | int) -> int:
    """`SIGTERM`, `TERM`, `term`, `15`, `SIGRTMIN+3` → the number; InvalidParameter otherwise."""
    if isinstance(sig, int):
        return sig
    s = str(sig).strip().upper()
    if s.isdigit():
        return int(s)
    if not s.startswith("SIG"):
        s = "SIG" + s
    if s.startswith("SIGRTMIN+") and s[9:].isdigit():
        return int(signal.SIGRTMIN) + int(s[9:])
    try:
        return int(signal.Signals[s])
    except KeyError:
        raise InvalidParameter(f"Invalid signal: {sig}") from None
