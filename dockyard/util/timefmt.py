"""Docker's time formats: RFC 3339 with nanoseconds, and the zero time."""

from __future__ import annotations

import time

ZERO_TIME = "0001-01-01T00:00:00Z"


def rfc3339(ts: float | None = None) -> str:
    """A unix time (seconds, float) as Docker prints it: 2024-01-02T03:04:05.123456789Z."""
    global _second
    if ts is None:
        ts = time.time()
    ns = int(round(ts * 1e9))
    sec, frac = divmod(ns, 1_000_000_000)
    if _second[0] != sec:  # formatted once a second (stats: two stamps per document, 500 documents at once)
        # time's, not datetime's: no import statement at run time (the CLI's tables need only human_duration),
        # and none in a stats answer (each costs microseconds: 500 answers at once)
        _second = (sec, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec)))
    return f"{_second[1]}.{frac:09d}Z"


_second: tuple[int, str] = (-1 << 64, "")


def parse_rfc3339(s: str) -> float:
    """Inverse of rfc3339 (tolerates fewer fraction digits and offsets)."""
    if s.startswith("0001-01-01"):
        return 0.0
    s = s.strip()
    main, _, rest = s.partition(".")
    frac = ""
    tz = "Z"
    if rest:
        digits = ""
        for i, ch in enumerate(rest):
            if ch.isdigit():
                digits += ch
            else:
                tz = rest[i:]
                break
        frac = digits
    elif main.endswith("Z"):
        main = main[:-1]
    elif len(main) > 19:
        main, tz = main[:19], main[19:]
    if tz in ("Z", ""):
        tz = "+00:00"
    from datetime import datetime

    dt = datetime.fromisoformat(main + tz)
    return dt.timestamp() + (float("0." + frac) if frac else 0.0)


def parse_time_arg(s: str) -> float:
    """`--since`/`--until` values: unix seconds (with fraction), RFC 3339, or a duration like 10m."""
    s = s.strip()
    units = {"s": 1, "m": 60, "h": 3600}
    if s and s[-1] in units and s[:-1].replace(".", "", 1).isdigit():
        return time.time() - float(s[:-1]) * units[s[-1]]
    try:
        return float(s)
    except ValueError:
        return parse_rfc3339(s)


def human_duration_left(seconds: float) -> float:
    """How long human_duration(seconds) surely reads the same, as seconds grow: to the next whole second
    under a minute, else to the next whole minute (every text from a minute on changes at a minute's
    boundary: minutes, and hours rounded at the half hour, days, weeks... counted from them)."""
    s = int(seconds)
    return (s + 1 - seconds) if s < 60 else ((s // 60 + 1) * 60 - seconds)


def human_duration(seconds: float) -> str:
    """go-units HumanDuration."""
    s = int(seconds)
    if s < 1:
        return "Less than a second"
    if s == 1:
        return "1 second"
    if s < 60:
        return f"{s} seconds"
    minutes = s // 60
    if minutes == 1:
        return "About a minute"
    if minutes < 60:
        return f"{minutes} minutes"
    hours = round(seconds / 3600)
    if hours == 1:
        return "About an hour"
    if hours < 48:
        return f"{hours} hours"
    if hours < 24 * 7 * 2:
        return f"{hours // 24} days"
    if hours < 24 * 30 * 2:
        return f"{hours // 24 // 7} weeks"
    if hours < 24 * 365 * 2:
        return f"{hours // 24 // 30} months"
    return f"{int(seconds / 3600) // 24 // 365} years"
