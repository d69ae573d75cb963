"""Registry storage: content-addressed blobs plus per-repository links, tags and uploads.

Layout under the root (a subset of distribution's, flattened):
  blobs/sha256/<hex>                           the bytes (layers, configs and manifests alike),
                                               same layout as the engine's content store
  uploads/<uuid>                               an upload in progress
  repositories/<name>/_layers/<hex>            the blob is part of this repository
  repositories/<name>/_manifests/revisions/<hex>   a manifest of this repository (content: media type)
  repositories/<name>/_manifests/tags/<tag>    the tag (content: manifest digest)
  repositories/<name>/_manifests/referrers/<subject hex>/<hex>   a manifest whose `subject` is that
                                               digest (content: its descriptor in the referrers index)
Every name, tag, digest and upload id is validated by a strict regex before it touches a path.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import uuid
from pathlib import Path
from typing import Any, BinaryIO

from dockyard.store.content import ContentStore
from dockyard.util.fs import atomic_write, fsync_dir

NAME_RE = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|[-]*)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|[-]*)[a-z0-9]+)*)*$")
TAG_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
DIGEST_RE = re.compile(r"^sha256:[a-f0-9]{64}$")
UUID_RE = re.compile(r"^[a-f0-9]{32}$")


class StorageError(Exception):
    def __init__(self, code: str, message: str, status: int = 400, detail: object = None) -> None:
        super().__init__(message)
        self.code, self.message, self.status, self.detail = code, message, status, detail


def check_name(name: str) -> str:
    if len(name) > 255 or not NAME_RE.match(name):
        raise StorageError("NAME_INVALID", "invalid repository name", 400, {"name": name})
    return name


def check_digest(digest: str) -> str:
    if not DIGEST_RE.match(digest):
        raise StorageError("DIGEST_INVALID", "provided digest did not match uploaded content", 400,
                           {"digest": digest})
    return digest


def check_tag(tag: str) -> str:
    if not TAG_RE.match(tag):
        raise StorageError("TAG_INVALID", "manifest tag did not match URI", 400, {"tag": tag})
    return tag


class Upload:
    """An upload session; the running hash lives in memory and is rebuilt after a restart."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.hasher = hashlib.sha256()
        self.size = 0
        if path.exists():
            with open(path, "rb") as f:
                while chunk := f.read(1 << 20):
                    self.hasher.update(chunk)
                    self.size += len(chunk)


class RegistryStorage:
    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        for d in ("blobs/sha256", "uploads", "repositories"):
            (self.root / d).mkdir(parents=True, exist_ok=True)
        self._uploads: dict[str, Upload] = {}
        # Blob bytes live in the engine's content store code (same layout, same crash safety).
        self.content = ContentStore(self.root)

    # ---- blobs (global) ----
    def blob_path(self, digest: str) -> Path:
        return self.content.path(check_digest(digest))

    def has_blob(self, digest: str) -> bool:
        return self.content.has(check_digest(digest))

    def open_blob(self, digest: str) -> BinaryIO:
        return self.content.open(check_digest(digest))

    def put_bytes(self, data: bytes) -> str:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        return digest if self.content.has(digest) else self.content.write(data, digest)

    def digests(self) -> list[str]:
        return self.content.digests()

    def delete_blob(self, digest: str) -> None:
        self.content.delete(check_digest(digest))

    # ---- repositories ----
    def _repo(self, name: str) -> Path:
        return self.root / "repositories" / check_name(name)

    def repo_exists(self, name: str) -> bool:
        return self._repo(name).is_dir()

    def link_blob(self, name: str, digest: str) -> None:
        p = self._repo(name) / "_layers" / check_digest(digest).split(":", 1)[1]
        p.parent.mkdir(parents=True, exist_ok=True)
        p.touch()

    def repo_has_blob(self, name: str, digest: str) -> bool:
        link = self._repo(name) / "_layers" / check_digest(digest).split(":", 1)[1]
        rev = self._repo(name) / "_manifests" / "revisions" / digest.split(":", 1)[1]
        return (link.exists() or rev.exists()) and self.has_blob(digest)

    def unlink_blob(self, name: str, digest: str) -> bool:
        link = self._repo(name) / "_layers" / check_digest(digest).split(":", 1)[1]
        try:
            link.unlink()
            return True
        except FileNotFoundError:
            return False

    # ---- uploads ----
    def start_upload(self) -> str:
        uid = uuid.uuid4().hex
        p = self.root / "uploads" / uid
        p.touch()
        self._uploads[uid] = Upload(p)
        return uid

    def upload(self, uid: str) -> Upload:
        if not UUID_RE.match(uid):
            raise StorageError("BLOB_UPLOAD_INVALID", "blob upload invalid", 404)
        up = self._uploads.get(uid)
        if up is None:
            p = self.root / "uploads" / uid
            if not p.exists():
                raise StorageError("BLOB_UPLOAD_UNKNOWN", "blob upload unknown to registry", 404)
            up = self._uploads[uid] = Upload(p)
        return up

    def append(self, up: Upload, chunk: bytes, f: BinaryIO) -> None:
        f.write(chunk)
        up.hasher.update(chunk)
        up.size += len(chunk)

    def finish_upload(self, uid: str, name: str, digest: str) -> None:
        """Verify and move the upload into the blob store; the upload is dropped either way."""
        up = self.upload(uid)
        try:
            actual = "sha256:" + up.hasher.hexdigest()
            if actual != check_digest(digest):
                raise StorageError("DIGEST_INVALID", "provided digest did not match uploaded content", 400,
                                   {"digest": digest})
            with open(up.path, "rb+") as f:
                os.fsync(f.fileno())
            dest = self.blob_path(digest)
            os.replace(up.path, dest)
            fsync_dir(dest.parent)
            self.link_blob(name, digest)
        finally:
            self.cancel_upload(uid)

    def cancel_upload(self, uid: str) -> None:
        self._uploads.pop(uid, None)
        if UUID_RE.match(uid):
            (self.root / "uploads" / uid).unlink(missing_ok=True)

    # ---- manifests and tags ----
    def put_manifest(self, name: str, digest: str, media_type: str, tag: str | None) -> None:
        d = self._repo(name) / "_manifests"
        (d / "revisions").mkdir(parents=True, exist_ok=True)
        atomic_write(d / "revisions" / check_digest(digest).split(":", 1)[1], media_type.encode())
        if tag is not None:
            (d / "tags").mkdir(parents=True, exist_ok=True)
            atomic_write(d / "tags" / check_tag(tag), digest.encode())

    def manifest_media_type(self, name: str, digest: str) -> str | None:
        p = self._repo(name) / "_manifests" / "revisions" / check_digest(digest).split(":", 1)[1]
        try:
            return p.read_text()
        except FileNotFoundError:
            return None

    def resolve_tag(self, name: str, tag: str) -> str | None:
        try:
            return (self._repo(name) / "_manifests" / "tags" / check_tag(tag)).read_text().strip()
        except FileNotFoundError:
            return None

    def tags(self, name: str) -> list[str]:
        d = self._repo(name) / "_manifests" / "tags"
        return sorted(p.name for p in d.iterdir()) if d.is_dir() else []

    def delete_tag(self, name: str, tag: str) -> bool:
        try:
            (self._repo(name) / "_manifests" / "tags" / check_tag(tag)).unlink()
            return True
        except FileNotFoundError:
            return False

    def delete_manifest(self, name: str, digest: str) -> bool:
        """Remove the revision and every tag pointing at it (distribution's semantics)."""
        rev = self._repo(name) / "_manifests" / "revisions" / check_digest(digest).split(":", 1)[1]
        if not rev.exists():
            return False
        for tag in self.tags(name):
            if self.resolve_tag(name, tag) == digest:
                self.delete_tag(name, tag)
        subject = self.manifest_subject(digest)
        if subject is not None:  # it leaves its subject's referrers index too
            (self._referrers_dir(name, subject) / digest.split(":", 1)[1]).unlink(missing_ok=True)
        rev.unlink()
        return True

    def manifest_subject(self, digest: str) -> str | None:
        try:
            doc = json.loads(self.blob_path(digest).read_bytes())
        except (OSError, ValueError):
            return None
        subject = doc.get("subject") if isinstance(doc, dict) else None
        d = subject.get("digest") if isinstance(subject, dict) else None
        return d if isinstance(d, str) and DIGEST_RE.match(d) else None

    # ---- referrers (OCI 1.1) ----
    def _referrers_dir(self, name: str, subject: str) -> Path:
        return self._repo(name) / "_manifests" / "referrers" / check_digest(subject).split(":", 1)[1]

    def add_referrer(self, name: str, subject: str, desc: dict[str, Any]) -> None:
        d = self._referrers_dir(name, subject)
        d.mkdir(parents=True, exist_ok=True)
        atomic_write(d / check_digest(desc["digest"]).split(":", 1)[1], json.dumps(desc).encode())

    def referrers(self, name: str, subject: str) -> list[dict[str, Any]]:
        """Descriptors of the manifests whose subject is `subject`, in digest order."""
        d = self._referrers_dir(name, subject)
        if not d.is_dir():
            return []
        out = []
        for p in sorted(d.iterdir()):
            if p.name.startswith("."):
                continue  # atomic_write's temporary file
            try:
                out.append(json.loads(p.read_bytes()))
            except (OSError, ValueError):
                continue  # one being replaced right now
        return out

    def revisions(self, name: str) -> list[str]:
        d = self._repo(name) / "_manifests" / "revisions"
        return sorted("sha256:" + p.name for p in d.iterdir() if DIGEST_RE.match("sha256:" + p.name)) \
            if d.is_dir() else []

    def repositories(self) -> list[str]:
        base = self.root / "repositories"
        out = []
        for dirpath, dirnames, _ in os.walk(base):
            if "_manifests" in dirnames:
                out.append(os.path.relpath(dirpath, base))
            dirnames[:] = [d for d in dirnames if not d.startswith("_")]
        return sorted(out)
