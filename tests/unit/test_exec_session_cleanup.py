"""An exec's dir is removed off the event loop (runtime/monitor.py, ExecSession.cleanup): its rm -rf took
4-15 ms at load, on the loop, right as the docker CLI asked for the exec's exit code."""

from __future__ import annotations

import asyncio
import os
import shutil
import threading
from pathlib import Path
from typing import Any

import pytest

from dockyard.runtime.monitor import ExecSession


def test_cleanup_removes_the_exec_dir_in_a_worker_thread(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    exec_dir = tmp_path / "execs" / "e1"
    (exec_dir / "exits").mkdir(parents=True)
    (exec_dir / "process.json").write_text("{}")
    r, w = os.pipe()
    os.close(w)
    ran_on: list[str] = []
    real_rmtree = shutil.rmtree

    def rmtree(path: Any, *a: Any, **k: Any) -> None:
        ran_on.append(threading.current_thread().name)
        real_rmtree(path, *a, **k)

    monkeypatch.setattr(shutil, "rmtree", rmtree)

    async def main() -> None:
        ExecSession("e1", 1, None, r, exec_dir).cleanup()
        loop = asyncio.get_running_loop()
        while exec_dir.exists():
            await asyncio.sleep(0.01)
        await loop.shutdown_default_executor()

    asyncio.run(main())
    assert not exec_dir.exists()
    assert ran_on and threading.main_thread().name not in ran_on
    # Without a loop (a synchronous caller) it is removed at once.
    exec_dir.mkdir()
    r, w = os.pipe()
    os.close(w)
    ExecSession("e2", 1, None, r, exec_dir).cleanup()
    assert not exec_dir.exists()
