"""Docker's list filters as the services read them."""

from __future__ import annotations

from typing import Any

from dockyard.errors import InvalidParameter


def normalize_filters(raw: Any) -> dict[str, list[str]]:
    """Docker's filters arrive as {"k": ["v"]} or the legacy {"k": {"v": true}}; none is {}."""
    if not raw:
        return {}
    if not isinstance(raw, dict):
        raise InvalidParameter("invalid filter format")
    out: dict[str, list[str]] = {}
    for k, v in raw.items():
        if isinstance(v, dict):
            out[k] = [x for x, on in v.items() if on]
        elif isinstance(v, list):
            out[k] = [str(x) for x in v]
        else:
            out[k] = [str(v)]
    return out
