"""Which compressed blob each layer (diff_id) came from, and from which repositories.

dockerd keeps the same "v2 metadata": it lets push skip re-compressing a pulled layer, HEAD the
exact blob and cross-mount it from a repository of the same registry.
"""

from __future__ import annotations

from dataclasses import dataclass

from dockyard.store.db import Database

SCHEMA = ["""
CREATE TABLE distribution_layers (
  diff_id TEXT NOT NULL, digest TEXT NOT NULL, media_type TEXT NOT NULL, size INTEGER NOT NULL,
  registry TEXT NOT NULL, repository TEXT NOT NULL,
  PRIMARY KEY (diff_id, digest, registry, repository)
);
CREATE INDEX distribution_layers_diff ON distribution_layers(diff_id);
"""]


@dataclass(frozen=True)
class LayerSource:
    digest: str
    media_type: str
    size: int
    registry: str
    repository: str  # path in the registry, e.g. library/busybox


class LayerMap:
    def __init__(self, db: Database) -> None:
        self.db = db
        db.migrate("distribution", SCHEMA)

    def record(self, diff_id: str, digest: str, media_type: str, size: int, registry: str, repository: str) -> None:
        self.db.execute("INSERT OR IGNORE INTO distribution_layers VALUES (?,?,?,?,?,?)",
                        (diff_id, digest, media_type, size, registry, repository))

    def sources(self, diff_id: str) -> list[LayerSource]:
        rows = self.db.query("SELECT digest, media_type, size, registry, repository FROM distribution_layers "
                             "WHERE diff_id=?", (diff_id,))
        return [LayerSource(*tuple(r)) for r in rows]
