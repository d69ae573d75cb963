"""Content-addressed blob store: `root/blobs/sha256/<hex>`, written via `root/ingest/` then renamed.

Bytes first: a blob appears under its digest only after its digest was verified, so a crash leaves
at most garbage in `ingest/`, never a wrong blob. A small blob is fsynced before it appears; a big one
(a layer) is not: a synced marker `root/unsynced/<hex>.<token>` holding the boot id appears first, and
the blob is synced later in the background (store/unsynced.py). A power loss in between can tear it,
so at the next start on another boot such a blob is hashed again and deleted if it no longer matches.

A blob can also be *derived*: its owner (the image service, for a built layer) says how to make it
(`derive`: its size and a function writing its bytes, e.g. the tar of a snapshot dir) instead of the
bytes being written at once. Such a blob counts as present (`has`, `size`) and is made, checked
against its digest and stored the first time it is read (`open`, `path`): every reader goes through
`materialize`. Made like any other blob (ingest, verify, rename), so a crash leaves no half-made one.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import secrets
import shutil
import threading
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import BinaryIO

from dockyard.errors import DockyardError, InvalidParameter, NotFound
from dockyard.oci.digest import hex_of, validate
from dockyard.store import unsynced
from dockyard.util.fs import fsync_dir

log = logging.getLogger("dockyard.store")

DEFER_SYNC_MIN = 1 << 20  # bytes: a smaller blob is fsynced before it appears (a marker would cost as much)

# How to make a blob not stored yet: (its size, a function writing its bytes to a writer and returning
# their sha256 digest), or None when it cannot be made (then it is not here).
Derivation = tuple[int, Callable[["Writer"], str]]


class BlobMismatch(DockyardError):
    """A derived blob came out other than the digest it was recorded under: nothing was stored."""


class Writer:
    """An in-progress blob: `.write(chunk)` then `.commit()`; discarded if never committed."""

    def __init__(self, store: ContentStore, expected: str | None, hashed_by_writer: bool = False) -> None:
        self._store = store
        self._expected = validate(expected) if expected else None
        self.tmp = store.root / "ingest" / secrets.token_hex(16)
        self._f: BinaryIO | None = open(self.tmp, "xb")  # noqa: SIM115 (closed in commit/abort)
        # None: whoever writes hashes every byte it writes here and hands commit() that digest
        # (write_tree does, for a built layer's diff_id): the same bytes are not hashed twice.
        self._hash = None if hashed_by_writer else hashlib.sha256()
        self.size = 0
        self.digest: str | None = None

    def write(self, chunk: bytes) -> None:
        assert self._f is not None, "writer is closed"
        self._f.write(chunk)
        if self._hash is not None:
            self._hash.update(chunk)
        self.size += len(chunk)

    def copy_range(self, path: str, offset: int, size: int) -> None:
        """Append `size` bytes of the file `path` from `offset`, copied inside the kernel
        (copy_file_range: no reads into Python, no second hash). Only for a writer opened with
        hashed_by_writer: whoever calls it hashed those bytes already."""
        assert self._f is not None and self._hash is None, "copy_range goes with hashed_by_writer"
        self._f.flush()
        src = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            left = size
            while left:
                n = os.copy_file_range(src, self._f.fileno(), left, offset + size - left)
                if n == 0:
                    raise OSError(errno.EIO, f"{path}: {left} bytes short")
                left -= n
        finally:
            os.close(src)
        self.size += size

    def commit(self, hashed: str | None = None) -> str:
        """Move the bytes in under their digest; `hashed` is the writer's own digest of them (and
        only that: a writer opened with hashed_by_writer)."""
        assert self._f is not None, "writer is closed"
        assert (hashed is None) == (self._hash is not None), "commit(hashed) goes with hashed_by_writer"
        self._f.flush()
        deferred = self.size >= DEFER_SYNC_MIN
        if not deferred:
            os.fsync(self._f.fileno())
        self._f.close()
        self._f = None
        digest = "sha256:" + self._hash.hexdigest() if self._hash is not None else validate(hashed or "")
        if self._expected and digest != self._expected:
            self.tmp.unlink(missing_ok=True)
            raise InvalidParameter(f"digest mismatch: expected {self._expected}, got {digest}")
        dest = self._store.file(digest)
        if deferred:
            marker = self._store.root / "unsynced" / f"{hex_of(digest)}.{secrets.token_hex(4)}"
            try:
                unsynced.mark(marker)
            except BaseException:
                self.tmp.unlink(missing_ok=True)
                marker.unlink(missing_ok=True)
                raise
            os.replace(self.tmp, dest)
            unsynced.defer(marker)
        else:
            os.replace(self.tmp, dest)
            fsync_dir(dest.parent)
        self.digest = digest
        return digest

    def abort(self) -> None:
        try:
            if self._f is not None:
                f, self._f = self._f, None
                f.close()  # flushes what is buffered: on a full disk that raises ENOSPC again
        finally:
            self.tmp.unlink(missing_ok=True)

    def __enter__(self) -> Writer:
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        if self.digest is None:
            try:
                self.abort()
            except OSError:
                if et is None:
                    raise  # else the error that brought us here is the one to report


class ContentStore:
    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        (self.root / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
        (self.root / "ingest").mkdir(parents=True, exist_ok=True)
        (self.root / "unsynced").mkdir(parents=True, exist_ok=True)
        # The owner's answer for a digest with no file: how to make it (see Derivation), or None.
        self.derive: Callable[[str], Derivation | None] = lambda digest: None
        self._locks: dict[str, threading.Lock] = {}  # per digest: one materialization at a time, delete waits
        self._locks_guard = threading.Lock()

    def file(self, digest: str) -> Path:
        """Where the blob's file is (or would be); no derived blob is made."""
        return self.root / "blobs" / "sha256" / hex_of(digest)

    def path(self, digest: str) -> Path:
        """The blob's file, made first if it is a derived one not made yet (blocking: from a thread)."""
        return self.materialize(digest)

    def has(self, digest: str) -> bool:
        return self.file(digest).is_file() or self.derive(digest) is not None

    def stored(self, digest: str) -> bool:
        """Whether the blob's bytes are on disk (not only derivable)."""
        return self.file(digest).is_file()

    def size(self, digest: str) -> int:
        try:
            return self.file(digest).stat().st_size
        except FileNotFoundError:
            d = self.derive(digest)
            if d is None:
                raise NotFound(f"blob {digest} not found") from None
            return d[0]

    def write(self, data: bytes, expected: str | None = None) -> str:
        with self.ingest(expected) as w:
            w.write(data)
            return w.commit()

    def ingest(self, expected: str | None = None, *, hashed_by_writer: bool = False) -> Writer:
        return Writer(self, expected, hashed_by_writer)

    def open(self, digest: str) -> BinaryIO:
        try:
            return open(self.materialize(digest), "rb")  # noqa: SIM115 (caller closes)
        except FileNotFoundError:
            raise NotFound(f"blob {digest} not found") from None

    def _lock(self, digest: str) -> threading.Lock:
        with self._locks_guard:
            return self._locks.setdefault(hex_of(digest), threading.Lock())

    def materialize(self, digest: str) -> Path:
        """The blob's file; a derived blob not made yet is made now: written through ingest/, its
        digest and size checked, then renamed in (unsynced, as any big blob). A mismatch (the source
        changed) raises BlobMismatch and stores nothing. Concurrent readers wait for one maker."""
        p = self.file(digest)
        if p.is_file():
            return p
        with self._lock(digest):
            if p.is_file():
                return p
            d = self.derive(digest)
            if d is None:
                return p  # absent: the caller's open or stat says so
            size, make = d
            with self.ingest(hashed_by_writer=True) as w:
                got = make(w)
                if got != digest or w.size != size:
                    log.error("blob %s made again came out as %s (%d bytes, %d expected): not stored",
                              digest, got, w.size, size)
                    raise BlobMismatch(f"blob {digest} could not be made again from its source: it came out as "
                                       f"{got} ({w.size} bytes, {size} expected); its layer changed since it was made")
                w.commit(got)
        return p

    def delete(self, digest: str) -> None:
        with self._lock(digest):  # not while it is being made: a late rename would leave it behind
            self.file(digest).unlink(missing_ok=True)

    def digests(self) -> list[str]:
        """The blobs stored (derived ones not made are not among them)."""
        return ["sha256:" + p.name for p in (self.root / "blobs" / "sha256").iterdir()]

    def check_unsynced(self) -> list[str]:
        """At daemon start: blobs published unsynced by another boot are hashed again; those that no
        longer match their digest (or are gone) are deleted and returned. This boot's wait for the
        background flush."""
        dropped = []
        for marker in sorted((self.root / "unsynced").iterdir()):
            hex_ = marker.name.partition(".")[0]
            digest = "sha256:" + hex_
            if unsynced.this_boot(marker):
                unsynced.defer(marker)
                continue
            p = self.root / "blobs" / "sha256" / hex_
            ok = False
            try:
                with open(p, "rb") as f:
                    h = hashlib.sha256()
                    while chunk := f.read(1 << 20):
                        h.update(chunk)
                    ok = h.hexdigest() == hex_
                    if ok:
                        os.fsync(f.fileno())  # read back whole: now make sure it stays so
            except FileNotFoundError:
                pass
            if not ok:
                p.unlink(missing_ok=True)
                fsync_dir(p.parent)
                dropped.append(digest)
            marker.unlink(missing_ok=True)
        return dropped

    def sweep_ingest(self) -> None:
        """Drop half-written blobs (at daemon start; nothing is ingesting then)."""
        for p in (self.root / "ingest").iterdir():
            if p.is_dir():  # image load unpacks into ingest/load-*
                shutil.rmtree(p, ignore_errors=True)
            else:
                p.unlink(missing_ok=True)
