"""store/db.py: a `durable=False` write (run state a reboot voids) is committed like any other, seen by
a new connection after the first is gone, and leaves the connection at synchronous=FULL for the next;
sync() makes such a write durable from a worker thread."""

from __future__ import annotations

import os
import sqlite3
import threading
from pathlib import Path

import pytest

from dockyard.store.db import Database


def test_relaxed_write_commits_and_restores_full_sync(tmp_path: Path) -> None:
    db = Database(tmp_path / "m.db")
    db.execute("CREATE TABLE t (k TEXT PRIMARY KEY, v TEXT)")
    db.execute("INSERT INTO t VALUES ('a', 'created')")
    db.execute("UPDATE t SET v='running' WHERE k='a'", durable=False)
    assert db.query_one("PRAGMA synchronous")[0] == 2  # FULL again
    try:
        with db.tx(durable=False) as c:
            c.execute("UPDATE t SET v='half' WHERE k='a'")
            raise RuntimeError("undo")
    except RuntimeError:
        pass
    assert db.query_one("PRAGMA synchronous")[0] == 2
    db.close()  # as a crashed daemon's would be: the WAL is on disk (page cache), not checkpointed
    other = sqlite3.connect(tmp_path / "m.db")
    assert other.execute("SELECT v FROM t").fetchall() == [("running",)]
    other.close()


def test_sync_fsyncs_the_wal_that_a_relaxed_commit_wrote(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """sync() is the fsync a FULL commit would have made at its end (the WAL's), in the caller's thread,
    without the connection's lock: a relaxed commit followed by it is as durable as a FULL one."""
    db = Database(tmp_path / "m.db")
    db.execute("CREATE TABLE t (k TEXT PRIMARY KEY)")
    db.execute("INSERT INTO t VALUES ('a')", durable=False)
    synced: list[str] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    with db._lock:  # held by another thread's transaction: sync does not wait for it
        done = threading.Thread(target=db.sync)
        done.start()
        done.join(5)
        assert not done.is_alive()
    assert synced == [str(tmp_path / "m.db-wal")]
    db.close()
