"""Content-addressed blob store: `root/blobs/sha256/<hex>`, written via `root/ingest/` then renamed.

Bytes first: a blob appears under its digest only after its digest was verified, so a crash leaves
at most garbage in `ingest/`, never a wrong blob. A small blob is fsynced before it appears; a big one
(a layer) is not: a synced marker `root/unsynced/<hex>.<token>` holding the boot id appears first, and
the blob is synced later in the background (store/unsynced.py). A power loss in between can tear it,
so at the next start on another boot such a blob is hashed again and deleted if it no longer matches.
"""

from __future__ import annotations

import errno
import hashlib
import os
import secrets
import shutil
from pathlib import Path
from types import TracebackType
from typing import BinaryIO

from dockyard.errors import InvalidParameter, NotFound
from dockyard.oci.digest import hex_of, validate
from dockyard.store import unsynced
from dockyard.util.fs import fsync_dir

DEFER_SYNC_MIN = 1 << 20  # bytes: a smaller blob is fsynced before it appears (a marker would cost as much)


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
        dest = self._store.path(digest)
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

    def path(self, digest: str) -> Path:
        return self.root / "blobs" / "sha256" / hex_of(digest)

    def has(self, digest: str) -> bool:
        return self.path(digest).is_file()

    def size(self, digest: str) -> int:
        try:
            return self.path(digest).stat().st_size
        except FileNotFoundError:
            raise NotFound(f"blob {digest} not found") from None

    def write(self, data: bytes, expected: str | None = None) -> str:
        with self.ingest(expected) as w:
            w.write(data)
            return w.commit()

    def ingest(self, expected: str | None = None, *, hashed_by_writer: bool = False) -> Writer:
        return Writer(self, expected, hashed_by_writer)

    def open(self, digest: str) -> BinaryIO:
        try:
            return open(self.path(digest), "rb")  # noqa: SIM115 (caller closes)
        except FileNotFoundError:
            raise NotFound(f"blob {digest} not found") from None

    def delete(self, digest: str) -> None:
        self.path(digest).unlink(missing_ok=True)

    def digests(self) -> list[str]:
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
