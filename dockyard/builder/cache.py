"""The build cache: (parent image, canonical step, source content hash) -> image id, in SQLite."""

from __future__ import annotations

import hashlib
import json
import time
from typing import Any

from dockyard.store.db import Database

KEEP_INPUTS = 4  # records of what a step was made from, per Dockerfile position

SCHEMA = [
    """
    CREATE TABLE build_cache (
        key TEXT PRIMARY KEY, image_id TEXT NOT NULL, parent TEXT NOT NULL, created_by TEXT NOT NULL,
        created REAL NOT NULL, last_used REAL NOT NULL
    )
    """,
    # COPY --link: a layer made from its sources alone, by a key that names no parent image
    "CREATE TABLE build_links (key TEXT PRIMARY KEY, diff_id TEXT NOT NULL, created REAL NOT NULL)",
    # What each step was made from (instruction, files, args...): a later miss says which one changed
    """
    CREATE TABLE build_inputs (key TEXT PRIMARY KEY, pos TEXT NOT NULL, parent TEXT NOT NULL,
                               inputs TEXT NOT NULL, created REAL NOT NULL);
    CREATE INDEX build_inputs_parent ON build_inputs(parent);
    CREATE INDEX build_inputs_pos ON build_inputs(pos);
    """,
]


def cache_key(parent: str | None, step: str, content_hash: str = "") -> str:
    return hashlib.sha256(json.dumps([parent or "scratch", step, content_hash]).encode()).hexdigest()


class BuildCache:
    def __init__(self, db: Database) -> None:
        self.db = db
        db.migrate("build_cache", SCHEMA)

    def get(self, key: str, exists: Any) -> str | None:
        """The cached image id, if the image still exists (`exists(id) -> bool`). Read only:
        the caller records the hits with `touch` (one commit per build, not one per step)."""
        row = self.db.query_one("SELECT image_id FROM build_cache WHERE key=?", (key,))
        if row is None:
            return None
        if not exists(row["image_id"]):
            self.db.execute("DELETE FROM build_cache WHERE key=?", (key,))
            return None
        return str(row["image_id"])

    def touch(self, keys: list[str]) -> None:
        """Mark entries used now (what `system df` shows as LastUsedAt)."""
        if not keys:
            return
        now = time.time()
        with self.db.tx() as c:
            for k in keys:
                c.execute("UPDATE build_cache SET last_used=? WHERE key=?", (now, k))

    def put(self, key: str, image_id: str, parent: str | None, created_by: str,
            inputs: tuple[str, str, dict[str, Any]] | None = None) -> None:
        """An entry, and with `inputs` (pos, parent, inputs) what it was made from, in one transaction.
        Not durable (no WAL fsync, one less per build step): a power loss may take it, which costs a
        cache miss; it cannot outlive the image row written (durably) before it, and `get` checks that."""
        now = time.time()
        with self.db.tx(durable=False) as c:
            c.execute("INSERT OR REPLACE INTO build_cache VALUES(?,?,?,?,?,?)",
                      (key, image_id, parent or "", created_by, now, now))
            if inputs is not None:
                c.execute("INSERT OR REPLACE INTO build_inputs VALUES(?,?,?,?,?)",
                          (key, inputs[0], inputs[1] or "", json.dumps(inputs[2], sort_keys=True), now))
                # a few records per place in a Dockerfile are enough to explain a miss: older ones go
                c.execute("DELETE FROM build_inputs WHERE pos=? AND key NOT IN (SELECT key FROM build_inputs "
                          "WHERE pos=? ORDER BY created DESC LIMIT ?)", (inputs[0], inputs[0], KEEP_INPUTS))

    def get_link(self, key: str) -> str | None:
        row = self.db.query_one("SELECT diff_id FROM build_links WHERE key=?", (key,))
        return str(row["diff_id"]) if row else None

    def put_link(self, key: str, diff_id: str) -> None:
        self.db.execute("INSERT OR REPLACE INTO build_links VALUES(?,?,?)", (key, diff_id, time.time()))

    def inputs(self, where: str, value: str, limit: int = 20) -> list[tuple[str, str, str, dict[str, Any]]]:
        """(key, pos, parent, inputs) of the steps recorded with this `parent`, `pos` or `key`, newest first."""
        assert where in ("parent", "pos", "key")
        rows = self.db.query(f"SELECT key, pos, parent, inputs FROM build_inputs WHERE {where}=? "  # noqa: S608
                             "ORDER BY created DESC LIMIT ?", (value, limit))
        return [(r["key"], r["pos"], r["parent"], json.loads(r["inputs"])) for r in rows]

    def has(self, key: str) -> bool:
        return self.db.query_one("SELECT 1 FROM build_cache WHERE key=?", (key,)) is not None

    def entries(self) -> list[dict[str, Any]]:
        return [dict(r) for r in self.db.query("SELECT * FROM build_cache ORDER BY created")]

    def delete(self, keys: list[str]) -> None:
        with self.db.tx() as c:
            for k in keys:
                c.execute("DELETE FROM build_cache WHERE key=?", (k,))
            c.execute("DELETE FROM build_links")
            c.execute("DELETE FROM build_inputs")
