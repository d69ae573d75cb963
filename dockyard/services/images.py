"""ImageService: image metadata (tags, digests, layers), resolution, and load/save/import/commit.

Bytes first, metadata last: blobs are verified into the content store and layers extracted into
snapshots before `register` writes any row; a failed load removes the snapshots and blobs it made
that no image references. Deleting an image removes snapshots and blobs no other image uses.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import contextvars
import fnmatch
import functools
import hashlib
import json
import logging
import platform
import secrets
import shutil
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from dockyard import trace
from dockyard.dockerfile.dispatch import apply_changes
from dockyard.errors import Conflict, InvalidParameter, NotFound, no_such_image
from dockyard.oci import reference
from dockyard.oci.digest import hex_of, sha256_digest, validate
from dockyard.services.events import EventBus
from dockyard.store import archive
from dockyard.store.content import BlobMismatch, ContentStore, Derivation
from dockyard.store.db import Database, prefix_range
from dockyard.store.layers import TAR_ERRORS, decompressed, diff_id_of, write_diff
from dockyard.store.snapshots import Snapshotter, chain_ids
from dockyard.util.filters import normalize_filters
from dockyard.util.rwlock import SharedLock
from dockyard.util.timefmt import ZERO_TIME, parse_rfc3339, parse_time_arg, rfc3339

log = logging.getLogger("dockyard.images")

SCHEMA = [
    """
    CREATE TABLE images (
        id TEXT PRIMARY KEY, config BLOB NOT NULL, created REAL NOT NULL, size INTEGER NOT NULL,
        parent TEXT NOT NULL DEFAULT ''
    );
    CREATE TABLE image_layers (
        image_id TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE, idx INTEGER NOT NULL,
        chain_id TEXT NOT NULL, diff_id TEXT NOT NULL, size INTEGER NOT NULL, PRIMARY KEY (image_id, idx)
    );
    CREATE INDEX image_layers_chain ON image_layers(chain_id);
    CREATE TABLE tags (
        name TEXT PRIMARY KEY, image_id TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE,
        tagged REAL NOT NULL DEFAULT 0
    );
    CREATE TABLE digests (name TEXT PRIMARY KEY, image_id TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE);
    CREATE TABLE snapshots (chain_id TEXT PRIMARY KEY, parent TEXT, diff_id TEXT NOT NULL, size INTEGER NOT NULL);
    CREATE TABLE layer_blobs (
        diff_id TEXT NOT NULL, digest TEXT NOT NULL, media_type TEXT NOT NULL, size INTEGER NOT NULL,
        PRIMARY KEY (diff_id, digest)
    )
    """,
    # OCI 1.1 referrers (signatures, SBOMs) that came with an image in a loaded OCI layout: `manifest` is
    # the image's manifest as loaded (their subject), kept with them in the content store for save.
    """
    CREATE TABLE image_referrers (
        image_id TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE, manifest TEXT NOT NULL,
        idx INTEGER NOT NULL, digest TEXT NOT NULL, PRIMARY KEY (image_id, manifest, idx)
    )
    """,
    # An image's tags and digests by its id (every image row read asks): without them each read scanned
    # both tables, and listing I images took I scans of I rows (1,000 images: 282 ms -> 10 ms of queries).
    """
    CREATE INDEX tags_image ON tags(image_id);
    CREATE INDEX digests_image ON digests(image_id)
    """,
    # A built layer's tar is not stored at its commit: this says which snapshot (an adopted upper dir whose
    # tar was hashed to `digest`, `size` bytes) it is made from when first read (derive_blob).
    """
    CREATE TABLE derived_blobs (
        digest TEXT NOT NULL, chain_id TEXT NOT NULL, size INTEGER NOT NULL, PRIMARY KEY (digest, chain_id)
    );
    CREATE INDEX derived_blobs_chain ON derived_blobs(chain_id)
    """,
]

LOAD_THREADS = 4  # layers of one image loaded at once (each holds ~2 MiB of buffers)
_GOARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "i686": "386", "ppc64le": "ppc64le",
           "s390x": "s390x", "riscv64": "riscv64"}
_EMPTY_CONFIG: dict[str, Any] = {
    "Hostname": "", "Domainname": "", "User": "", "AttachStdin": False, "AttachStdout": False,
    "AttachStderr": False, "Tty": False, "OpenStdin": False, "StdinOnce": False, "Env": None, "Cmd": None,
    "Image": "", "Volumes": None, "WorkingDir": "", "Entrypoint": None, "OnBuild": None, "Labels": None,
}


def host_arch() -> str:
    m = platform.machine()
    return _GOARCH.get(m, m)


def short_id(image_id: str) -> str:
    return image_id.split(":", 1)[-1][:12]


@dataclass
class Image:
    id: str  # sha256:<hex of the config>
    config: dict[str, Any]  # the image config document
    repo_tags: list[str]  # familiar: busybox:latest
    repo_digests: list[str]  # familiar: busybox@sha256:...
    created: float
    size: int
    parent: str = ""
    chain_ids: list[str] = field(default_factory=list)
    diff_ids: list[str] = field(default_factory=list)
    layer_sizes: list[int] = field(default_factory=list)
    last_tag_time: float = 0.0

    @property
    def labels(self) -> dict[str, str]:
        return (self.config.get("config") or {}).get("Labels") or {}


def _media_type_of(head: bytes) -> str:
    if head.startswith(b"\x1f\x8b"):
        return archive.MT_LAYER_GZIP
    if head.startswith(b"\x28\xb5\x2f\xfd"):
        return archive.MT_LAYER_ZSTD
    return archive.MT_LAYER_TAR


def _plain_tar(head: bytes) -> bool:
    """Whether a layer starting with these bytes is an uncompressed tar (as `decompressed` sees it)."""
    return _media_type_of(head) == archive.MT_LAYER_TAR and not head.startswith((b"BZh", b"\xfd7zXZ"))


def _label_match(labels: dict[str, str], wanted: list[str]) -> bool:
    for w in wanted:
        k, eq, v = w.partition("=")
        if k not in labels or (eq and labels[k] != v):
            return False
    return True


class ImageService:
    def __init__(self, db: Database, content: ContentStore, snapshots: Snapshotter, events: EventBus) -> None:
        self.db = db
        self.content = content
        self.snapshots = snapshots
        self.events = events
        self.tmp_root = content.root / "ingest"
        self._lock = SharedLock()  # GC (delete, prune, load, import) exclusive; commits shared (gc_lock)
        # The containers made from an image, as (id, running): the container service owns that table
        # and the wiring connects its `using_image` here (none without one).
        self.containers_using: Callable[[str], list[tuple[str, bool]]] = lambda image_id: []
        db.migrate("images", SCHEMA)
        content.derive = self.derive_blob

    def derive_blob(self, digest: str) -> Derivation | None:
        """How to make a built layer's blob not stored yet: the tar of a snapshot adopted from the upper
        dir it was hashed from (store/content.py makes it, checks it against `digest`, keeps it)."""
        for r in self.db.query("SELECT chain_id, size FROM derived_blobs WHERE digest=?", (digest,)):
            if self.snapshots.exists(r["chain_id"]):
                return int(r["size"]), functools.partial(write_diff, self.snapshots.path(r["chain_id"]))
        return None

    # ------------------------------------------------------------------ lookup
    def _row_to_image(self, row: Any) -> Image:
        iid = row["id"]
        tags = self.db.query("SELECT name, tagged FROM tags WHERE image_id=? ORDER BY name", (iid,))
        digs = self.db.query("SELECT name FROM digests WHERE image_id=? ORDER BY name", (iid,))
        layers = self.db.query(
            "SELECT chain_id, diff_id, size FROM image_layers WHERE image_id=? ORDER BY idx", (iid,))
        return Image(
            id=iid, config=json.loads(row["config"]),
            repo_tags=[reference.parse(t["name"]).familiar for t in tags],
            repo_digests=[reference.parse(d["name"]).familiar for d in digs],
            created=row["created"], size=row["size"], parent=row["parent"],
            chain_ids=[r["chain_id"] for r in layers], diff_ids=[r["diff_id"] for r in layers],
            layer_sizes=[r["size"] for r in layers],
            last_tag_time=max((t["tagged"] for t in tags), default=0.0),
        )

    def get(self, image_id: str) -> Image:
        row = self.db.query_one("SELECT * FROM images WHERE id=?", (image_id,))
        if row is None:
            raise no_such_image(image_id)
        return self._row_to_image(row)

    def _lookup(self, ref_or_id: str) -> tuple[str, str | None]:
        """(image id, the normalized name when `ref_or_id` named a tag or digest reference)."""
        s = ref_or_id.strip()
        if not s:
            raise no_such_image(ref_or_id)
        bare = s[len("sha256:"):] if s.startswith("sha256:") else s
        if len(bare) == 64 and all(c in "0123456789abcdef" for c in bare):
            if self.db.query_one("SELECT 1 FROM images WHERE id=?", ("sha256:" + bare,)):
                return "sha256:" + bare, None
        try:
            ref = reference.parse(s)
        except InvalidParameter:
            ref = None
        if ref is not None and not s.startswith("sha256:"):
            if ref.digest:
                row = self.db.query_one("SELECT image_id FROM digests WHERE name=?",
                                        (f"{ref.repository}@{ref.digest}",))
            else:
                row = self.db.query_one("SELECT image_id FROM tags WHERE name=?", (str(ref),))
            if row is not None:
                return row["image_id"], str(ref) if not ref.digest else f"{ref.repository}@{ref.digest}"
        if bare and all(c in "0123456789abcdef" for c in bare):
            rows = self.db.query("SELECT id FROM images WHERE id >= ? AND id < ? LIMIT 2", prefix_range(f"sha256:{bare}"))
            if len(rows) == 1:
                return rows[0]["id"], None
        # Docker names the normalized reference: "No such image: nope:latest"
        raise no_such_image(ref.familiar if ref is not None and not s.startswith("sha256:") else ref_or_id)

    def resolve(self, ref_or_id: str) -> Image:
        return self.get(self._lookup(ref_or_id)[0])

    def layer_dirs(self, image_id: str) -> list[Path]:
        """Extracted layer dirs, bottom first (overlay's lowerdir wants them reversed). The chain ids
        alone: the whole Image (four queries, its config parsed, its references) was ~0.8 ms of CPU
        twice a `run`, at its create and its start."""
        rows = self.db.query("SELECT chain_id FROM image_layers WHERE image_id=? ORDER BY idx",
                             (self._lookup(image_id)[0],))
        return self.snapshots.dirs([r["chain_id"] for r in rows])

    def sharing_layer(self, chain_id: str, but: str) -> list[str]:
        """Ids of the images other than `but` whose layers include this chain."""
        return [r["image_id"] for r in self.db.query(
            "SELECT DISTINCT image_id FROM image_layers WHERE chain_id=? AND image_id!=?", (chain_id, but))]

    def display_name(self, image_id: str) -> str:
        """The image's first tag by name, else its short id."""
        row = self.db.query_one("SELECT name FROM tags WHERE image_id=? ORDER BY name", (image_id,))
        return str(row["name"]) if row else image_id[:19]

    def check_platform(self, ref: str, wanted: str) -> None:
        img = self.resolve(ref)
        os_, _, arch = wanted.partition("/")
        arch = arch.split("/")[0]
        got_os, got_arch = img.config.get("os", "linux"), img.config.get("architecture", "")
        if (os_ and os_ != got_os) or (arch and arch != got_arch):
            raise NotFound(f"image with reference {ref} was found but does not match the specified platform: "
                           f"wanted {wanted}, actual: {got_os}/{got_arch}")

    # ------------------------------------------------------------------ register
    def register(self, config_bytes: bytes, layer_diff_ids: list[str], tags: Iterable[str] = (), *,
                 repo_digests: Iterable[str] = (), parent: str = "",
                 layer_blobs: Iterable[tuple[str, str, str, int]] = (),
                 derived_blobs: Iterable[tuple[str, str, int]] = ()) -> Image:
        """Record an image whose layers already exist as snapshots. `tags` are references
        (normalized or familiar); `layer_blobs` are (diff_id, blob digest, media type, size);
        `derived_blobs` (digest, chain id, size): blobs to be made from that snapshot when read."""
        try:
            cfg = json.loads(config_bytes)
            diff_ids = list(cfg["rootfs"]["diff_ids"])
        except (ValueError, KeyError, TypeError):
            raise InvalidParameter("invalid image config: no rootfs.diff_ids") from None
        if diff_ids != list(layer_diff_ids):
            raise InvalidParameter("invalid image: config diff_ids do not match the layers")
        chains = chain_ids(diff_ids)
        snaps = [self.snapshots.get(c) for c in chains]
        for chain, snap in zip(chains, snaps, strict=True):
            if snap is None:
                raise InvalidParameter(f"layer {chain} is not extracted")
        image_id = self.content.write(config_bytes)
        created = parse_rfc3339(cfg["created"]) if isinstance(cfg.get("created"), str) else time.time()
        size = sum(s.size for s in snaps if s)
        now = time.time()
        with self._lock.shared(), self.db.tx() as c:  # registers run at once; GC, exclusive, waits
            c.execute("INSERT OR IGNORE INTO images(id, config, created, size, parent) VALUES(?,?,?,?,?)",
                      (image_id, config_bytes, created, size, parent))
            c.execute("DELETE FROM image_layers WHERE image_id=?", (image_id,))
            for i, (chain, s) in enumerate(zip(chains, snaps, strict=True)):
                assert s is not None
                c.execute("INSERT INTO image_layers VALUES(?,?,?,?,?)", (image_id, i, chain, s.diff_id, s.size))
                c.execute("INSERT OR IGNORE INTO snapshots VALUES(?,?,?,?)", (chain, s.parent, s.diff_id, s.size))
            for diff_id, digest, mt, bsize in layer_blobs:
                c.execute("INSERT OR IGNORE INTO layer_blobs VALUES(?,?,?,?)", (diff_id, digest, mt, bsize))
            for digest, chain, bsize in derived_blobs:
                c.execute("INSERT OR IGNORE INTO derived_blobs VALUES(?,?,?)", (digest, chain, bsize))
            for t in tags:
                ref = reference.parse(t)
                if ref.digest:
                    c.execute("INSERT OR REPLACE INTO digests VALUES(?,?)",
                              (f"{ref.repository}@{ref.digest}", image_id))
                else:
                    c.execute("INSERT OR REPLACE INTO tags VALUES(?,?,?)", (str(ref), image_id, now))
            for d in repo_digests:
                ref = reference.parse(d)
                c.execute("INSERT OR REPLACE INTO digests VALUES(?,?)", (f"{ref.repository}@{ref.digest}", image_id))
        return self.get(image_id)

    def add_repo_digest(self, image_id: str, name: str) -> None:
        ref = reference.parse(name)
        if not ref.digest:
            raise InvalidParameter(f"not a digest reference: {name}")
        self.db.execute("INSERT OR REPLACE INTO digests VALUES(?,?)", (f"{ref.repository}@{ref.digest}", image_id))

    @property
    def gc_lock(self) -> SharedLock:
        """Held shared (`with images.gc_lock.shared():`) from writing a layer to registering the image
        that names it: no GC in between, while other commits go on."""
        return self._lock

    def record_layer_blob(self, diff_id: str, digest: str, media_type: str, size: int) -> None:
        """Remember which stored blob holds a layer (so save/push can send it)."""
        self.db.execute("INSERT OR IGNORE INTO layer_blobs VALUES(?,?,?,?)",
                        (validate(diff_id), validate(digest), media_type, size))

    def has_layer_blob(self, diff_id: str) -> bool:
        """Whether the layer has a blob (stored, or made from its snapshot when read)."""
        try:
            self.layer_blob(diff_id)
            return True
        except NotFound:
            return False

    def layer_blob(self, diff_id: str) -> tuple[str, str, int]:
        """(digest, media type, size) of a blob for the layer: stored, or derived (made when first read
        through the content store's open/path)."""
        for r in self.db.query("SELECT digest, media_type, size FROM layer_blobs WHERE diff_id=?", (diff_id,)):
            if self.content.has(r["digest"]):
                return r["digest"], r["media_type"], r["size"]
        if self.content.has(diff_id):
            return diff_id, archive.MT_LAYER_TAR, self.content.size(diff_id)
        raise NotFound(f"layer {diff_id} has no stored blob")

    # ------------------------------------------------------------------ tag / delete / prune
    def tag(self, ref_or_id: str, repo: str, tag: str | None = None) -> None:
        img = self.resolve(ref_or_id)
        if not repo:
            raise InvalidParameter("repository name must have at least one component")
        target = reference.parse(f"{repo}:{tag}" if tag else repo)
        if target.digest:
            raise InvalidParameter("refusing to create a tag with a digest reference")
        self.db.execute("INSERT OR REPLACE INTO tags VALUES(?,?,?)", (str(target), img.id, time.time()))
        self.events.emit("image", "tag", img.id, {"name": target.familiar})

    def _refs(self, image_id: str) -> list[str]:
        tags = [r["name"] for r in self.db.query("SELECT name FROM tags WHERE image_id=?", (image_id,))]
        digs = [r["name"] for r in self.db.query("SELECT name FROM digests WHERE image_id=?", (image_id,))]
        return tags + digs

    def _remove_ref(self, name: str, image_id: str, records: list[dict[str, str]]) -> None:
        table = "digests" if "@" in name else "tags"
        self.db.execute(f"DELETE FROM {table} WHERE name=?", (name,))
        familiar = reference.parse(name).familiar
        records.append({"Untagged": familiar})
        self.events.emit("image", "untag", image_id, {"name": familiar})

    def _conflict(self, img: Image, force: bool, multi_repo: bool = False) -> Conflict | None:
        """Docker's checks in its order: children, running (hard), multiple repos, stopped (soft)."""
        if self.db.query("SELECT id FROM images WHERE parent=?", (img.id,)):
            return Conflict(f"conflict: unable to delete {short_id(img.id)} (cannot be forced) - "
                            "image has dependent child images")
        users = self.containers_using(img.id)
        for cid, running in users:
            if running:
                return Conflict(f"conflict: unable to delete {short_id(img.id)} (cannot be forced) - "
                                f"image is being used by running container {cid[:12]}")
        if not force and multi_repo:
            return Conflict(f"conflict: unable to delete {short_id(img.id)} (must be forced) - "
                            "image is referenced in multiple repositories")
        if not force and users:
            return Conflict(f"conflict: unable to delete {short_id(img.id)} (must be forced) - "
                            f"image is being used by stopped container {users[0][0][:12]}")
        return None

    def delete(self, ref_or_id: str, force: bool = False, noprune: bool = False) -> list[dict[str, str]]:
        with self._lock:
            return self._delete(ref_or_id, force, noprune, [0])

    def _delete(self, ref_or_id: str, force: bool, noprune: bool, reclaimed: list[int]) -> list[dict[str, str]]:
        image_id, named = self._lookup(ref_or_id)
        img = self.get(image_id)
        records: list[dict[str, str]] = []
        refs = self._refs(image_id)
        repos = {reference.parse(r).repository for r in refs}
        single = len(repos) <= 1 and sum("@" not in r for r in refs) <= 1
        if named is not None:
            users = self.containers_using(image_id)
            if not force and single and users:
                raise Conflict(f'conflict: unable to remove repository reference "{ref_or_id}" (must force) - '
                               f"container {users[0][0][:12]} is using its referenced image {short_id(image_id)}")
            self._remove_ref(named, image_id, records)
            left = self._refs(image_id)
            removed_repo = reference.parse(named).repository
            if "@" not in named and not any("@" not in r and reference.parse(r).repository == removed_repo
                                            for r in left):
                for r in left:  # digest refs of a repository whose last tag went go too
                    if "@" in r and reference.parse(r).repository == removed_repo:
                        self._remove_ref(r, image_id, records)
            if self._refs(image_id):
                return records
            if self._conflict(img, force) is not None:
                return records  # the image stays, now dangling, as Docker does
        else:
            err = self._conflict(img, force, multi_repo=not single)
            if err is not None:
                raise err
            for r in refs:
                self._remove_ref(r, image_id, records)
        self._remove_image(img, records, reclaimed)
        if not noprune and img.parent:
            try:
                parent = self.get(img.parent)
            except NotFound:
                return records
            if not self._refs(parent.id) and self._conflict(parent, False) is None:
                records += self._delete(parent.id, False, False, reclaimed)
        return records

    def _remove_image(self, img: Image, records: list[dict[str, str]], reclaimed: list[int]) -> None:
        in_use = bool(self.containers_using(img.id))  # forced delete: the container still needs its layers
        with self.db.tx() as c:
            c.execute("DELETE FROM tags WHERE image_id=?", (img.id,))
            c.execute("DELETE FROM digests WHERE image_id=?", (img.id,))
            c.execute("DELETE FROM image_layers WHERE image_id=?", (img.id,))
            c.execute("DELETE FROM images WHERE id=?", (img.id,))
        records.append({"Deleted": img.id})
        self.events.emit("image", "delete", img.id, {"name": img.id})
        if in_use:
            return
        with trace.about(f"image:{img.id}"):
            self._gc(img.chain_ids, img.diff_ids, [img.id], records, reclaimed)
        trace.drop(f"image:{img.id}")

    def _gc(self, chains: list[str], diff_ids: list[str], config_ids: list[str],
            records: list[dict[str, str]] | None, reclaimed: list[int]) -> None:
        """Remove snapshots, layer blobs and config blobs that no remaining image references."""
        for chain in reversed(chains):
            if self.db.query_one("SELECT 1 FROM image_layers WHERE chain_id=?", (chain,)):
                continue
            snap = self.snapshots.get(chain)
            self._keep_derived(chain)
            self.snapshots.remove(chain)
            self.db.execute("DELETE FROM snapshots WHERE chain_id=?", (chain,))
            self.db.execute("DELETE FROM derived_blobs WHERE chain_id=?", (chain,))
            if snap is not None:
                reclaimed[0] += snap.size
                if records is not None:
                    records.append({"Deleted": chain})
        for diff_id in set(diff_ids):
            if self.db.query_one("SELECT 1 FROM image_layers WHERE diff_id=?", (diff_id,)):
                continue
            for r in self.db.query("SELECT digest FROM layer_blobs WHERE diff_id=?", (diff_id,)):
                self.content.delete(r["digest"])
            self.db.execute("DELETE FROM layer_blobs WHERE diff_id=?", (diff_id,))
            self.db.execute("DELETE FROM derived_blobs WHERE digest=?", (diff_id,))
            self.content.delete(diff_id)
        for cid in config_ids:
            if not self.db.query_one("SELECT 1 FROM images WHERE id=?", (cid,)):
                self.content.delete(cid)

    def _keep_derived(self, chain: str) -> None:
        """Before a snapshot goes: a blob made from it and not yet stored, of a layer another image still
        has (on another chain, extracted from that blob or adopted by a commit whose row is not in yet),
        with no other snapshot to make it from, is made now."""
        for r in self.db.query("SELECT digest FROM derived_blobs WHERE chain_id=?", (chain,)):
            digest = r["digest"]
            if self.content.stored(digest) or not self.db.query_one(
                    "SELECT 1 FROM image_layers WHERE diff_id=? AND chain_id!=?", (digest, chain)):
                continue
            if any(self.snapshots.exists(o["chain_id"]) for o in self.db.query(
                    "SELECT chain_id FROM derived_blobs WHERE digest=? AND chain_id!=?", (digest, chain))):
                continue  # another snapshot it can still be made from (derive_blob might pick this one)
            try:
                self.content.materialize(digest)
            except (BlobMismatch, OSError) as e:
                log.warning("layer %s: its blob could not be made before its snapshot %s went: %s", digest, chain, e)

    def prune(self, filters: Any = None) -> dict[str, Any]:
        f = normalize_filters(filters)
        all_images = f.get("dangling", ["true"])[-1].lower() in ("false", "0")
        until = parse_time_arg(f["until"][0]) if f.get("until") else None
        deleted: list[dict[str, str]] = []
        reclaimed = [0]
        with self._lock:
            for row in self.db.query("SELECT id FROM images ORDER BY created DESC"):
                try:
                    img = self.get(row["id"])
                except NotFound:
                    continue  # removed as a parent of an earlier one
                refs = self._refs(img.id)
                if (refs and not all_images) or self.containers_using(img.id):
                    continue
                if until is not None and img.created >= until:
                    continue
                if f.get("label") and not _label_match(img.labels, f["label"]):
                    continue
                if f.get("label!") and any(_label_match(img.labels, [lab]) for lab in f["label!"]):
                    continue
                try:
                    if refs:
                        for r in refs:
                            if self.db.query_one("SELECT 1 FROM images WHERE id=?", (img.id,)):
                                deleted += self._delete(r, False, False, reclaimed)
                    else:
                        deleted += self._delete(img.id, False, False, reclaimed)
                except (Conflict, NotFound):
                    continue
        if deleted:
            self.events.emit("image", "prune", "", {"reclaimed": str(reclaimed[0])})
        return {"ImagesDeleted": deleted or None, "SpaceReclaimed": reclaimed[0]}

    # ------------------------------------------------------------------ views
    def all(self) -> list[Image]:
        return [self._row_to_image(r) for r in self.db.query("SELECT * FROM images ORDER BY created DESC")]

    def list_images(self, filters: Any = None, all: bool = False, digests: bool = False) -> list[dict[str, Any]]:
        f = normalize_filters(filters)
        images = self.all()
        parents = {i.parent for i in images if i.parent}
        before = self.resolve(f["before"][0]).created if f.get("before") else None
        since = self.resolve(f["since"][0]).created if f.get("since") else None
        out = []
        for img in images:
            tags = img.repo_tags
            if not all and not tags and img.id in parents:
                continue
            if "dangling" in f:
                want = f["dangling"][-1].lower() in ("true", "1")
                if want != (not tags):
                    continue
            if f.get("label") and not _label_match(img.labels, f["label"]):
                continue
            if before is not None and img.created >= before:
                continue
            if since is not None and img.created <= since:
                continue
            if f.get("reference"):
                tags = [t for t in tags if any(_ref_match(t, p) for p in f["reference"])]
                if not tags:
                    continue
            out.append({
                "Containers": -1, "Created": int(img.created), "Id": img.id, "Labels": img.labels or None,
                "ParentId": img.parent, "RepoDigests": img.repo_digests, "RepoTags": tags,
                "SharedSize": -1, "Size": img.size,
            })
        return out

    def inspect(self, ref_or_id: str) -> dict[str, Any]:
        img = self.resolve(ref_or_id)
        cfg = img.config
        dirs = [str(p) for p in self.snapshots.dirs(img.chain_ids)]
        gd: dict[str, str] = {}
        if dirs:
            gd["UpperDir"] = dirs[-1]
            if len(dirs) > 1:
                gd["LowerDir"] = ":".join(reversed(dirs[:-1]))
        created = cfg.get("created")
        out: dict[str, Any] = {
            "Id": img.id, "RepoTags": img.repo_tags, "RepoDigests": img.repo_digests, "Parent": img.parent,
            "Comment": cfg.get("comment", ""),
            "Created": rfc3339(parse_rfc3339(created)) if isinstance(created, str) else ZERO_TIME,
            "DockerVersion": cfg.get("docker_version", ""), "Author": cfg.get("author", ""),
            "Config": {**_EMPTY_CONFIG, **(cfg.get("config") or {})},
            "Architecture": cfg.get("architecture", ""), "Os": cfg.get("os", ""), "Size": img.size,
            "GraphDriver": {"Data": gd, "Name": "overlay2"},
            "RootFS": {"Type": "layers", "Layers": img.diff_ids},
            "Metadata": {"LastTagTime": rfc3339(img.last_tag_time) if img.last_tag_time else ZERO_TIME},
        }
        if cfg.get("variant"):
            out["Variant"] = cfg["variant"]
        if cfg.get("os.version"):
            out["OsVersion"] = cfg["os.version"]
        return out

    def container_config(self, ref_or_id: str) -> tuple[str, dict[str, Any]]:
        """(container, container_config) as the image config records them (the legacy fields that
        API < 1.45 shows as Container and ContainerConfig); ("", {}) when it has none."""
        cfg = self.resolve(ref_or_id).config
        cc = cfg.get("container_config")
        return str(cfg.get("container") or ""), dict(cc) if isinstance(cc, dict) else {}

    def history(self, ref_or_id: str) -> list[dict[str, Any]]:
        img = self.resolve(ref_or_id)
        items: list[dict[str, Any]] = []
        layer = 0
        for h in img.config.get("history") or []:
            size = 0
            if not h.get("empty_layer"):
                if layer < len(img.layer_sizes):
                    size = img.layer_sizes[layer]
                layer += 1
            created = h.get("created")
            items.insert(0, {
                "Id": "<missing>", "Created": int(parse_rfc3339(created)) if isinstance(created, str) else 0,
                "CreatedBy": h.get("created_by", ""), "Tags": None, "Size": size, "Comment": h.get("comment", ""),
            })
        cur: Image | None = img
        for item in items:
            if cur is None:
                break
            item["Id"] = cur.id
            item["Tags"] = cur.repo_tags or None
            try:
                cur = self.get(cur.parent) if cur.parent else None
            except NotFound:
                cur = None
        return items

    # ------------------------------------------------------------------ load / save / import
    def _tmpdir(self) -> Path:
        d = self.tmp_root / f"load-{secrets.token_hex(8)}"
        d.mkdir(parents=True)
        return d

    async def _spool(self, stream: AsyncIterator[bytes] | IO[bytes], path: Path) -> None:
        """Write a request body to disk (never whole in memory)."""
        with open(path, "wb") as out:
            if isinstance(stream, AsyncIterator):
                async for chunk in stream:
                    out.write(chunk)
            else:
                await asyncio.to_thread(shutil.copyfileobj, stream, out, 1 << 20)

    async def load(self, stream: AsyncIterator[bytes] | IO[bytes], quiet: bool = False) -> list[dict[str, Any]]:
        """`docker load`: returns Docker's messages ({"stream": "Loaded image: x\\n"})."""
        tmp = self._tmpdir()
        try:
            await self._spool(stream, tmp / "upload")
            return await asyncio.to_thread(self._load_sync, tmp)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def _load_sync(self, tmp: Path) -> list[dict[str, Any]]:
        try:
            return self._load_archive(tmp)
        except TAR_ERRORS as e:  # a truncated or corrupt archive (or blob in it): the client's fault
            raise InvalidParameter(f"invalid archive: {e or type(e).__name__}") from e

    def _load_archive(self, tmp: Path) -> list[dict[str, Any]]:
        upload = tmp / "upload"
        with open(upload, "rb") as f:
            head = f.read(6)
        if _media_type_of(head) != archive.MT_LAYER_TAR or head.startswith((b"BZh", b"\xfd7zXZ")):
            with open(upload, "rb") as src, open(tmp / "archive.tar", "wb") as dst:
                shutil.copyfileobj(decompressed(src), dst, 1 << 20)
            upload.unlink()
            upload = tmp / "archive.tar"
        reader = archive.ArchiveReader(str(upload))
        new_chains: list[str] = []
        new_blobs: list[str] = []
        try:
            with self._lock:
                prepared = []
                images = reader.images(host_arch())
                for ai in images:
                    with trace.about(f"image:sha256:{hashlib.sha256(ai.config).hexdigest()}"):
                        prepared.append(self._prepare(ai, new_chains, new_blobs))
                messages: list[dict[str, Any]] = []
                for (config, diff_ids, tags, blobs), ai in zip(prepared, images, strict=True):
                    olds = {t: self.db.query_one("SELECT image_id FROM tags WHERE name=?", (t,)) for t in tags}
                    img = self.register(config, diff_ids, tags, layer_blobs=blobs)
                    if ai.referrers:
                        self._keep_referrers(img.id, ai, new_blobs)
                    for t in tags:
                        old = olds[t]
                        if old is not None and old["image_id"] != img.id:
                            messages.append({"stream": f"The image {reference.parse(t).familiar} already exists, "
                                                       f"renaming the old one with ID {old['image_id']} "
                                                       "to empty string\n"})
                        messages.append({"stream": f"Loaded image: {reference.parse(t).familiar}\n"})
                        self.events.emit("image", "tag", img.id, {"name": reference.parse(t).familiar})
                    if not tags:
                        messages.append({"stream": f"Loaded image ID: {img.id}\n"})
                    self.events.emit("image", "load", img.id, {"name": img.id})
                return messages
        except BaseException:
            self._gc(list(reversed(new_chains)), [], [], None, [0])
            for d in new_blobs:
                if not self.db.query_one("SELECT 1 FROM layer_blobs WHERE digest=?", (d,)) and \
                        not self.db.query_one("SELECT 1 FROM images WHERE id=?", (d,)):
                    self.content.delete(d)
            raise
        finally:
            reader.close()

    def _prepare(self, ai: archive.ArchiveImage, new_chains: list[str], new_blobs: list[str]
                 ) -> tuple[bytes, list[str], list[str], list[tuple[str, str, str, int]]]:
        try:
            cfg = json.loads(ai.config)
            diff_ids = [validate(d) for d in cfg["rootfs"]["diff_ids"]]
        except (ValueError, KeyError, TypeError):
            raise InvalidParameter("invalid archive: image config has no rootfs.diff_ids") from None
        if len(diff_ids) != len(ai.layers):
            raise InvalidParameter("invalid archive: layer count in manifest and config differ")
        chains = chain_ids(diff_ids)
        blobs: list[tuple[str, str, str, int]] = []
        made_blob: dict[int, str] = {}  # what each layer's worker added, for the caller to undo on failure
        made_chain: dict[int, str] = {}

        def one(i: int) -> tuple[str, bytes]:
            """Layer i's blob into the content store, then its snapshot (a snapshot needs only its own
            layer, not its parent's, so layers go in parallel)."""
            opener, stated = ai.layers[i]
            existed = bool(stated) and self.content.has(stated or "")
            span = getattr(opener, "span", None)
            if span is not None and not existed and not self.snapshots.exists(chains[i]):
                with opener() as src:
                    head = src.read(6)
                if _plain_tar(head):
                    # Uncompressed: its digest is its diff_id, which the extraction hashes and checks;
                    # so the blob is not hashed again, nor read back: the kernel copies it.
                    with self.content.ingest(stated, hashed_by_writer=True) as w:
                        def blob() -> None:
                            w.copy_range(*span)
                            w.commit(diff_ids[i])

                        extracted = self.snapshots.ensure(chains[i], chains[i - 1] if i else None, opener, blob)
                    if extracted and w.digest:
                        made_blob[i] = w.digest
                        made_chain[i] = chains[i]
                        return w.digest, head
                    # else the snapshot appeared meanwhile (another load): only the blob is left to store
            with opener() as src, self.content.ingest(stated) as w:
                head = b""
                while chunk := src.read(1 << 20):
                    head = head or chunk[:6]
                    w.write(chunk)
                digest = w.commit()
            if not existed:
                made_blob[i] = digest
            if self.snapshots.ensure(chains[i], chains[i - 1] if i else None, self._opener(digest)):
                made_chain[i] = chains[i]
            return digest, head

        # In parallel: a layer's work is mostly outside the GIL (sha256, inflating, file writes), so
        # a big image's layers use every CPU instead of going one after another.
        with concurrent.futures.ThreadPoolExecutor(min(LOAD_THREADS, max(1, len(ai.layers))),
                                                   thread_name_prefix="layer-load") as pool:
            futures = [pool.submit(contextvars.copy_context().run, one, i) for i in range(len(ai.layers))]
        new_blobs.extend(made_blob[i] for i in sorted(made_blob))
        new_chains.extend(made_chain[i] for i in sorted(made_chain))  # undone top first on failure, as before
        done = [f.result() for f in futures]  # all have finished: this raises the first error
        for i, (digest, head) in enumerate(done):
            if i in made_chain:
                pass
            elif not self._known_blob(diff_ids[i], digest):
                # The layer is here already, so nothing was extracted or checked: hash the blob,
                # or an archive could claim another image's diff_id and have its own bytes saved
                # and pushed as that layer.
                with self.content.open(digest) as f:
                    got = diff_id_of(f)
                if got != diff_ids[i]:  # dockerd's words when it checks (it skips a known layer)
                    raise InvalidParameter(f'invalid diffID for layer {i}: expected "{diff_ids[i]}", got "{got}"')
            blobs.append((diff_ids[i], digest, _media_type_of(head), self.content.size(digest)))
        return ai.config, diff_ids, ai.tags, blobs

    def _keep_referrers(self, image_id: str, ai: archive.ArchiveImage, new_blobs: list[str]) -> None:
        """Store a loaded image's manifest and its referrers (manifests and blobs, byte for byte)."""
        subject = sha256_digest(ai.manifest)
        for digest, data in [(subject, ai.manifest), *((r.digest, r.manifest) for r in ai.referrers)]:
            if not self.content.has(digest):
                self.content.write(data, digest)
                new_blobs.append(digest)
        for r in ai.referrers:
            for digest, _size, opener in r.blobs:
                if not self.content.has(digest):
                    with opener() as src, self.content.ingest(digest) as w:
                        shutil.copyfileobj(src, w, 1 << 20)
                        w.commit()
                    new_blobs.append(digest)
        self.db.execute("DELETE FROM image_referrers WHERE image_id=? AND manifest=?", (image_id, subject))
        for i, r in enumerate(ai.referrers):
            self.db.execute("INSERT INTO image_referrers VALUES (?,?,?,?)", (image_id, subject, i, r.digest))

    def local_referrers(self, image_id: str) -> tuple[bytes, list[tuple[str, bytes]]]:
        """(manifest as loaded, [(digest, referrer manifest)]) of an image loaded with OCI 1.1 referrers
        (their blobs are in the content store); (b"", []) for others."""
        img = self.get(image_id)
        layers = [self.layer_blob(d)[0] for d in img.diff_ids]
        manifest, refs = self._saved_referrers(img, layers)
        return manifest, [(r.digest, r.manifest) for r in refs]

    def _saved_referrers(self, img: Image, layer_digests: list[str]) -> tuple[bytes, list[archive.Referrer]]:
        """The manifest as loaded and its referrers, for save; none if the layers differ from it now."""
        rows = self.db.query("SELECT manifest, digest FROM image_referrers WHERE image_id=? ORDER BY manifest, idx",
                             (img.id,))
        if not rows or not self.content.has(rows[0]["manifest"]):
            return b"", []
        manifest = self.content.path(rows[0]["manifest"]).read_bytes()
        if [la.get("digest") for la in json.loads(manifest).get("layers") or []] != layer_digests:
            return b"", []
        refs = []
        for r in rows:
            if r["manifest"] != rows[0]["manifest"] or not self.content.has(r["digest"]):
                continue
            raw = self.content.path(r["digest"]).read_bytes()
            doc = json.loads(raw)
            blobs = [(d["digest"], self.content.size(d["digest"]), self._opener(d["digest"]))
                     for d in [doc.get("config"), *(doc.get("layers") or [])]
                     if isinstance(d, dict) and self.content.has(d.get("digest", ""))]
            refs.append(archive.Referrer(r["digest"], raw, blobs))
        return manifest, refs

    def _known_blob(self, diff_id: str, digest: str) -> bool:
        """Whether `digest` is a blob recorded (so checked) for the layer `diff_id`."""
        return digest == diff_id or self.db.query_one(
            "SELECT 1 FROM layer_blobs WHERE diff_id=? AND digest=?", (diff_id, digest)) is not None

    def _opener(self, digest: str) -> archive.Opener:
        return lambda: self.content.open(digest)

    def _save_list(self, names: list[str]) -> list[archive.SaveImage]:
        by_id: dict[str, tuple[Image, list[str]]] = {}
        for name in names:
            image_id, named = self._lookup(name)
            img = self.get(image_id)
            entry = by_id.setdefault(image_id, (img, []))
            if named and "@" not in named:
                entry[1].append(named)
            elif named is None and ":" not in name.split("/")[-1] and not name.startswith("sha256:"):
                pass  # an id: saved without tags, as Docker does
            if named and ":" not in name.split("/")[-1] and "@" not in name:
                # `docker save busybox` saves every tag of the repository
                repo = reference.parse(named).repository
                for r in self.db.query("SELECT name, image_id FROM tags WHERE name LIKE ?", (repo + ":%",)):
                    e = by_id.setdefault(r["image_id"], (self.get(r["image_id"]), []))
                    if r["name"] not in e[1]:
                        e[1].append(r["name"])
        out = []
        for img, tags in by_id.values():
            layers: list[tuple[str, str, int, archive.Opener]] = []
            for diff_id in img.diff_ids:
                digest, mt, size = self.layer_blob(diff_id)
                self.content.materialize(digest)  # a built layer's tar made now: a failure is told before any byte
                layers.append((digest, mt, size, self._opener(digest)))
            config = self.content.path(img.id).read_bytes() if self.content.has(img.id) else \
                self.db.query_one("SELECT config FROM images WHERE id=?", (img.id,))["config"]  # type: ignore[index]
            manifest, refs = self._saved_referrers(img, [la[0] for la in layers])
            out.append(archive.SaveImage(bytes(config), img.id, layers, tags, manifest, refs))
        return out

    async def save(self, names: list[str]) -> AsyncIterator[bytes]:
        """`docker save`: resolves every name first (errors before any byte), then streams."""
        if not names:
            raise InvalidParameter("no images given")
        images = await asyncio.to_thread(self._save_list, names)
        for img in images:
            self.events.emit("image", "save", img.config_digest, {"name": img.config_digest})
        return _threaded(_coalesce(archive.write_archive(images)))

    async def import_(self, stream: AsyncIterator[bytes] | IO[bytes], repo: str = "", tag: str = "",
                      changes: list[str] | None = None, message: str = "") -> list[dict[str, Any]]:
        """`docker import`: a rootfs tar (maybe compressed) becomes a one-layer image."""
        tmp = self._tmpdir()
        try:
            await self._spool(stream, tmp / "upload")
            image_id = await asyncio.to_thread(self._import_sync, tmp / "upload", repo, tag, changes or [], message)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return [{"status": image_id}]

    def _import_sync(self, upload: Path, repo: str, tag: str, changes: list[str], message: str) -> str:
        tags = [f"{repo}:{tag}" if tag else repo] if repo else []
        for t in tags:
            reference.parse(t)  # a bad name fails before any work
        with self._lock:
            with open(upload, "rb") as src, self.content.ingest() as w:
                head = src.read(6)
                w.write(head)
                shutil.copyfileobj(src, w, 1 << 20)
                blob = w.commit()
            try:
                snap = self.snapshots.apply(None, lambda: self.content.open(blob))
            except BaseException:
                self.content.delete(blob)
                raise
            now = rfc3339()
            cfg: dict[str, Any] = {
                "architecture": host_arch(), "os": "linux", "created": now,
                "config": apply_changes({}, changes),
                "rootfs": {"type": "layers", "diff_ids": [snap.diff_id]},
                "history": [{"created": now, "comment": message or "Imported from -"}],
            }
            if message:
                cfg["comment"] = message
            config = json.dumps(cfg, separators=(",", ":")).encode()
            img = self.register(config, [snap.diff_id], tags,
                                layer_blobs=[(snap.diff_id, blob, _media_type_of(head), self.content.size(blob))])
        self.events.emit("image", "import", img.id, {"name": img.id})
        return img.id

    def sweep(self) -> None:
        """At daemon start: drop temp dirs and snapshots no image row references."""
        self.content.sweep_ingest()
        self.snapshots.sweep_tmp()
        self._check_unsynced()
        known = {r["chain_id"] for r in self.db.query("SELECT chain_id FROM image_layers")}
        for chain in self.snapshots.list():
            if chain not in known:
                self.snapshots.remove(chain)
        self._sweep_blobs()

    def _check_unsynced(self) -> None:
        """After a power loss (a start on another boot): blobs and snapshots published but not yet
        synced then are checked (store/unsynced.py). A dropped snapshot is extracted again from its
        layer's blob; an image whose layer cannot be (its blob is gone or was torn too) is dropped,
        so nothing refers to a layer that is not whole."""
        blobs = self.content.check_unsynced()
        snaps = set(self.snapshots.check_unsynced())
        if not blobs and not snaps:
            return
        log.warning("start after a power loss: %d unsynced blobs and %d snapshots were torn or unchecked, dropped",
                    len(blobs), len(snaps))
        rows = self.db.query("SELECT image_id, idx, chain_id, diff_id FROM image_layers ORDER BY image_id, idx")
        by_image: dict[str, list[tuple[str, str]]] = {}
        for r in rows:
            by_image.setdefault(r["image_id"], []).append((r["chain_id"], r["diff_id"]))
        torn = {r["diff_id"] for d in blobs for r in self.db.query("SELECT diff_id FROM layer_blobs WHERE digest=?", (d,))}
        torn |= set(blobs)  # an uncompressed layer's blob is its diff_id
        lost: set[str] = set()
        for layers in by_image.values():
            for i, (chain, diff_id) in enumerate(layers):
                if chain in lost:
                    continue
                if diff_id in torn and not self.has_layer_blob(diff_id):  # save and push need it
                    lost.add(chain)
                elif hex_of(chain)[:24] in snaps and not self.snapshots.exists(chain) and \
                        not self._extract_again(chain, layers[i - 1][0] if i else None, diff_id):
                    lost.add(chain)
        for image_id, layers in by_image.items():
            if any(chain in lost for chain, _ in layers):
                log.warning("image %s dropped: a layer of it was not whole after a power loss", image_id)
                with self.db.tx() as c:
                    for table, col in (("tags", "image_id"), ("digests", "image_id"), ("image_layers", "image_id"),
                                       ("images", "id")):
                        c.execute(f"DELETE FROM {table} WHERE {col}=?", (image_id,))  # noqa: S608 - fixed names

    def _extract_again(self, chain: str, parent: str | None, diff_id: str) -> bool:
        candidates = [r["digest"] for r in self.db.query("SELECT digest FROM layer_blobs WHERE diff_id=?", (diff_id,))]
        for digest in [*candidates, diff_id]:
            if not self.content.has(digest):
                continue
            try:
                self.snapshots.ensure(chain, parent, self._opener(digest))
                return True
            except (InvalidParameter, OSError) as e:  # a bad tar is an InvalidParameter
                log.warning("layer %s: extracting %s again: %s", chain, digest, e)
        return False

    def _sweep_blobs(self) -> int:
        """Mark and sweep the content store (at start: no pull, load or push is in flight then).

        rmi frees an image's layers and config at once; what it cannot know about is left here:
        pulled manifests, compressed blobs made for a push, blobs of an interrupted pull or load."""
        # derived blobs of snapshots gone (sweep removed those no image uses; a power loss may drop others)
        for r in self.db.query("SELECT DISTINCT chain_id FROM derived_blobs"):
            if not self.snapshots.exists(r["chain_id"]):
                self.db.execute("DELETE FROM derived_blobs WHERE chain_id=?", (r["chain_id"],))
        live = {r["diff_id"] for r in self.db.query("SELECT DISTINCT diff_id FROM image_layers")}
        keep = {r["id"] for r in self.db.query("SELECT id FROM images")} | live
        keep |= {r["digest"] for r in self.db.query("SELECT diff_id, digest FROM layer_blobs") if r["diff_id"] in live}
        keep |= {r["name"].rpartition("@")[2] for r in self.db.query("SELECT name FROM digests")}
        for r in self.db.query("SELECT manifest, digest FROM image_referrers"):  # loaded with their image
            keep |= {r["manifest"], r["digest"]}
            if self.content.has(r["digest"]):
                with contextlib.suppress(ValueError, AttributeError):
                    doc = json.loads(self.content.path(r["digest"]).read_bytes())
                    keep |= {d["digest"] for d in [doc.get("config"), *(doc.get("layers") or [])]
                             if isinstance(d, dict) and isinstance(d.get("digest"), str)}
        if self.db.query_one("SELECT 1 FROM sqlite_master WHERE type='table' AND name='distribution_layers'"):
            rows = self.db.query("SELECT diff_id, digest FROM distribution_layers")
            keep |= {r["digest"] for r in rows if r["diff_id"] in live}
            for gone in {r["diff_id"] for r in rows} - live:  # where a layer came from, for a layer we no longer have
                self.db.execute("DELETE FROM distribution_layers WHERE diff_id=?", (gone,))
        removed = 0
        for digest in self.content.digests():
            if digest not in keep:
                self.content.delete(digest)
                removed += 1
        if removed:
            log.info("content sweep: removed %d unreferenced blobs", removed)
        return removed

    list = list_images  # the contract's name; defined last so `list` stays the builtin above


def _ref_match(familiar_tag: str, pattern: str) -> bool:
    name = familiar_tag.rsplit(":", 1)[0] if ":" in familiar_tag.rsplit("/", 1)[-1] else familiar_tag
    return fnmatch.fnmatchcase(familiar_tag, pattern) or fnmatch.fnmatchcase(name, pattern)


def _coalesce(it: Iterator[bytes], size: int = 1 << 20) -> Iterator[bytes]:
    buf: list[bytes] = []
    n = 0
    for chunk in it:
        buf.append(chunk)
        n += len(chunk)
        if n >= size:
            yield b"".join(buf)
            buf, n = [], 0
    if buf:
        yield b"".join(buf)


async def _threaded(it: Iterator[bytes]) -> AsyncIterator[bytes]:
    """Drive a blocking iterator from a worker thread, one chunk at a time."""
    while True:
        chunk = await asyncio.to_thread(next, it, None)
        if chunk is None:
            return
        yield chunk
