"""Progress messages in Docker's ndjson (jsonmessage) format, which the docker CLI draws bars from."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Awaitable
from typing import Any, TypeVar

T = TypeVar("T")


async def relay(queue: asyncio.Queue[T | None], work: Awaitable[None]) -> AsyncGenerator[T, None]:
    """What `work` puts on `queue`, as it comes, until the work ends; then its first failure, if any.
    A consumer that stops early cancels the work."""

    async def run() -> None:
        try:
            await work
        finally:
            queue.put_nowait(None)

    runner = asyncio.create_task(run())
    try:
        while (ev := await queue.get()) is not None:
            yield ev
        await runner  # re-raises the first failure
    finally:
        runner.cancel()


def human_size(n: float) -> str:
    """Docker's units.HumanSize: decimal units, 4 significant digits ("1.049MB")."""
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.4g}{unit}"
        n /= 1000
    return f"{n:.4g}TB"


def bar(current: int, total: int) -> str:
    if total <= 0:
        return f"{human_size(current):>8}"
    width = 50
    filled = min(width, int(width * current / total))
    arrow = "=" * filled + (">" if filled < width else "") + " " * max(width - filled - 1, 0)
    return f"[{arrow}] {human_size(current):>8}/{human_size(total)}"


def status(msg: str, id: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"status": msg}
    if id is not None:
        out["id"] = id
    return out


def layer(msg: str, id: str) -> dict[str, Any]:
    return {"status": msg, "progressDetail": {}, "id": id}


def detail(msg: str, id: str, current: int, total: int) -> dict[str, Any]:
    return {"status": msg, "progressDetail": {"current": current, "total": total},
            "progress": bar(current, total), "id": id}


def error(message: str) -> dict[str, Any]:
    return {"errorDetail": {"message": message}, "error": message}


def short(digest: str) -> str:
    return digest.split(":", 1)[-1][:12]
