"""runtime/monitor.py delete: runc delete's own work for a stopped container (the rmdir of its cgroups,
~10 under cgroup v1, each waiting for the kernel's global cgroup_mutex: 13-28 ms at load 11) runs in a
worker thread, so the loop answers meanwhile; delete still returns only once it is done, the cgroups
and runc's state gone, and its record last (a daemon killed before finds it and deletes again)."""

from __future__ import annotations

import asyncio
import json
import os
import threading
from pathlib import Path

import pytest

from dockyard.runtime.monitor import Monitor


def test_the_cgroups_go_in_a_worker_thread_and_delete_waits_for_them(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    m = Monitor(tmp_path / "run")
    cid = "c" * 64
    groups = [tmp_path / "cg" / ctl / "dockyard" / cid for ctl in ("cpu", "memory", "pids")]
    for g in groups:
        g.mkdir(parents=True)
    m.record_dir.mkdir(parents=True, exist_ok=True)
    (m.record_dir / f"{cid}.json").write_text(json.dumps({"runtime": "runc"}))
    state_dir = m.runtime_root("runc") / cid
    state_dir.mkdir(parents=True)
    (state_dir / "state.json").write_text(json.dumps(
        {"init_process_pid": 0, "cgroup_paths": {g.parts[-3]: str(g) for g in groups}}))

    release, left = threading.Event(), threading.Event()
    on_loop_thread: list[bool] = []
    real_rmdir = os.rmdir

    def rmdir(path: str | os.PathLike[str]) -> None:
        if Path(path) in groups:
            on_loop_thread.append(threading.current_thread() is threading.main_thread())
            release.wait(3)  # on the loop's thread nothing lets it go: it ends at the timeout
        real_rmdir(path)
        left.set()

    monkeypatch.setattr(os, "rmdir", rmdir)

    async def main() -> None:
        deleting = asyncio.ensure_future(m.delete(cid))
        await asyncio.sleep(0.05)  # the loop runs meanwhile
        assert not left.is_set(), "the loop answered nothing while the cgroups were removed"
        assert not deleting.done() and (m.record_dir / f"{cid}.json").exists()
        release.set()
        await deleting
        assert on_loop_thread == [False] * len(groups)
        assert not any(g.exists() for g in groups) and not state_dir.exists()
        assert not (m.record_dir / f"{cid}.json").exists()

    asyncio.run(main())
