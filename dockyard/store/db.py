"""SQLite metadata: one file, WAL, FULL sync, foreign keys; each component owns its own schema.

A write of state that a reboot makes void anyway (a container's running/exited state, pid, its netns
and veths) may be `durable=False`: committed with synchronous=NORMAL, so without the WAL fsync (0.3-10
ms here, on the event loop's thread). It survives a daemon crash like any other (the WAL is in the
page cache); only a power loss may take it, and the next FULL commit syncs it along with its own.
A write that must be durable before its answer, but whose fsync must not hold the loop, is committed
the same way and then made durable by `sync()` in a worker thread (the create's INSERT).

Components call `db.migrate(component, [sql_v1, sql_v2, ...])` at start; applied versions are
recorded in `schema_versions`, so adding a migration at the end of a list is all an upgrade needs.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any


class Database:
    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        self._conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._conn.row_factory = sqlite3.Row
        self._lock = threading.RLock()
        for pragma in ("journal_mode=WAL", "synchronous=FULL", "foreign_keys=ON", "busy_timeout=5000"):
            self._conn.execute(f"PRAGMA {pragma}")
        self._conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_versions (component TEXT PRIMARY KEY, version INTEGER NOT NULL)"
        )

    def migrate(self, component: str, migrations: Sequence[str]) -> None:
        with self.tx() as c:
            row = c.execute("SELECT version FROM schema_versions WHERE component=?", (component,)).fetchone()
            have = row[0] if row else 0
            for i, sql in enumerate(migrations[have:], start=have + 1):
                _exec_script(c, sql)
                c.execute(
                    "INSERT INTO schema_versions(component, version) VALUES(?, ?) "
                    "ON CONFLICT(component) DO UPDATE SET version=excluded.version",
                    (component, i),
                )

    @contextmanager
    def tx(self, durable: bool = True) -> Iterator[sqlite3.Connection]:
        """One write transaction (BEGIN IMMEDIATE ... COMMIT, rolled back on error); see the module's
        note for `durable=False`."""
        with self._lock:
            if not durable:
                self._conn.execute("PRAGMA synchronous=NORMAL")
            try:
                self._conn.execute("BEGIN IMMEDIATE")
                try:
                    yield self._conn
                except BaseException:
                    self._conn.execute("ROLLBACK")
                    raise
                self._conn.execute("COMMIT")
            finally:
                if not durable:
                    self._conn.execute("PRAGMA synchronous=FULL")

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self._conn.execute(sql, params).fetchall()

    def query_one(self, sql: str, params: Sequence[Any] = ()) -> sqlite3.Row | None:
        with self._lock:
            row: sqlite3.Row | None = self._conn.execute(sql, params).fetchone()
            return row

    def version(self) -> tuple[int, int] | None:
        """A mark that moves with every write to the file: rows our connection inserted, updated or
        deleted (SQLite's total_changes, triggers' writes included; a rolled-back write moves it too) and
        commits by any other connection (`PRAGMA data_version`). Equal marks: nothing read in between
        can have changed. None inside an open transaction (a rollback could undo what a read saw)."""
        with self._lock:
            if self._conn.in_transaction:
                return None
            return self._conn.total_changes, self._conn.execute("PRAGMA data_version").fetchone()[0]

    def changes(self) -> int | None:
        """Rows our connection has inserted, updated or deleted so far (SQLite's total_changes, triggers'
        writes and rolled-back ones included): version()'s first half, without a query (~0.1 µs, not ~10).
        It does not see another connection's commits: a mark for what only the daemon writes (rows it
        keeps in memory while it runs). None inside an open transaction (a rollback could undo a read)."""
        conn = self._conn
        return None if conn.in_transaction else conn.total_changes

    def execute(self, sql: str, params: Sequence[Any] = (), durable: bool = True) -> int:
        """A single-statement write in its own transaction; returns rowcount."""
        with self.tx(durable) as c:
            return c.execute(sql, params).rowcount

    def sync(self) -> None:
        """Make every commit so far durable: the WAL's fsync, which is all a FULL commit adds to a NORMAL
        one in WAL mode (both sync the WAL before a checkpoint and the file after one). For a commit made
        with durable=False whose answer must wait for the disk: run it in a worker thread. It takes no
        lock (the fsync is the kernel's), so the loop's reads and writes go on meanwhile; what they
        commit before it ends is synced too. No WAL (moved into the file at a last close): the file's."""
        for path in (self.path + "-wal", self.path):
            try:
                fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            except FileNotFoundError:
                continue
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            return

    def close(self) -> None:
        with self._lock:
            self._conn.close()


def prefix_range(prefix: str) -> tuple[str, str]:
    """Bounds for `col >= ? AND col < ?`: the values that start with `prefix`, found through the column's
    index. `LIKE 'prefix%'` cannot use it (LIKE ignores case) and reads every row: `docker stats` of 500
    containers by short id made that 500 scans of 500 rows."""
    return prefix, prefix + "\U0010ffff"


def _exec_script(conn: sqlite3.Connection, script: str) -> None:
    # executescript() would COMMIT our transaction; run statements one by one instead (a piece ends a
    # statement only where SQLite says one is complete: a trigger's body holds semicolons).
    stmt = ""
    for piece in script.split(";"):
        stmt += piece + ";"
        if sqlite3.complete_statement(stmt):
            if stmt.strip(" \n\t;"):
                conn.execute(stmt)
            stmt = ""
    if stmt.strip(" \n\t;"):
        conn.execute(stmt)
