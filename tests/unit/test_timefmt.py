"""util/timefmt: Docker's RFC 3339 stamps."""

from __future__ import annotations

import random
from datetime import UTC, datetime

from dockyard.util.timefmt import parse_rfc3339, rfc3339


def test_rfc3339_is_the_utc_time_with_nanoseconds_as_datetime_writes_it() -> None:
    rng = random.Random(3339)
    for ts in [0.0, 1.5, 86399.999999999, 1796397705.123456789] + [rng.uniform(0, 4e9) for _ in range(2000)]:
        ns = int(round(ts * 1e9))
        sec, frac = divmod(ns, 1_000_000_000)
        want = f"{datetime.fromtimestamp(sec, UTC).strftime('%Y-%m-%dT%H:%M:%S')}.{frac:09d}Z"
        assert rfc3339(ts) == want
        assert abs(parse_rfc3339(want) - sec - frac / 1e9) < 1e-6
