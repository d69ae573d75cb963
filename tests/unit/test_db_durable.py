"""store/db.py: a `durable=False` write (run state a reboot voids) is committed like any other, seen by
a new connection after the first is gone, and leaves the connection at synchronous=FULL for the next."""

from __future__ import annotations

import sqlite3
from pathlib import Path

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
