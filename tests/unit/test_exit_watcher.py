"""The exit watcher over a real directory and real inotify: conmon's way of writing an exit file
(`<id>.XXXXXX`, then a rename to `<id>`) reports the container once, and its temporary file never."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from dockyard.runtime.exits import ExitWatcher

CID = "ab" * 32


def _conmon_write(exit_dir: Path, cid: str, text: str, rename: bool = True) -> None:
    tmp = exit_dir / f"{cid}.Y7AZZ3"  # g_file_set_contents' temporary name
    tmp.write_text(text)
    if rename:
        os.rename(tmp, exit_dir / cid)


async def _until(seen: list[str], n: int) -> None:
    async with asyncio.timeout(5):
        while len(seen) < n:
            await asyncio.sleep(0.005)


def test_conmon_exit_files_are_reported_once_and_its_temporary_files_never(tmp_path: Path) -> None:
    async def go() -> list[str]:
        (tmp_path / "old").write_text("9")  # a container that died while the daemon was down
        watcher = ExitWatcher(tmp_path, interval=0.05)  # polls too: a temporary file left is seen by a scan
        seen: list[str] = []

        async def watch() -> None:
            async for cid in watcher:
                seen.append(cid)

        task = asyncio.create_task(watch())
        await _until(seen, 1)
        _conmon_write(tmp_path, "cd" * 32, "1", rename=False)  # a write cut short: not an exit
        _conmon_write(tmp_path, CID, "0")
        await _until(seen, 2)
        await asyncio.sleep(0.2)  # a few polls: nothing more
        (tmp_path / CID).unlink()  # removed with its container; its next run exits again
        await asyncio.sleep(0.1)
        _conmon_write(tmp_path, CID, "137")
        await _until(seen, 3)
        await asyncio.sleep(0.2)
        watcher.stop()
        await task
        return seen

    assert asyncio.run(go()) == ["old", CID, CID]


def test_stop_ends_a_watcher_waiting_for_events(tmp_path: Path) -> None:
    async def go() -> None:
        watcher = ExitWatcher(tmp_path, interval=60)
        task = asyncio.create_task(watcher.run(lambda cid: None))
        await asyncio.sleep(0.05)
        watcher.stop()
        async with asyncio.timeout(2):
            await task

    asyncio.run(go())
