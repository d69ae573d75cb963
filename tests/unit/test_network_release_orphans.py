"""NetworkService.release_orphans at the daemon's start: the network a removed container's background
release left (a kill -9 in between). One that fails is logged, not raised: the sweep runs inside the
daemon's recovery, which stops the daemon when it raises, at every start while the rows stay."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

from dockyard.services.networks import NetworkService


def test_an_orphan_whose_release_fails_does_not_stop_the_others_nor_the_daemon() -> None:
    forgotten: list[str] = []

    async def forget(cid: str) -> None:
        if cid == "bad":
            raise OSError(16, "Device or resource busy")
        forgotten.append(cid)

    def rows(_sql: str, *_args: Any) -> list[dict[str, str]]:
        return [{"cid": c} for c in ("alive", "bad", "gone1", "gone2")]

    svc = SimpleNamespace(_rows=rows, forget=forget)
    released = asyncio.run(NetworkService.release_orphans(svc, {"alive"}))  # type: ignore[arg-type]
    assert forgotten == ["gone1", "gone2"] and released == 2
