"""The OCI Distribution (Docker Registry HTTP API v2) endpoints of our registry server: routing,
basic auth, blobs, uploads, manifests, tags, catalog, referrers; served by `dockyard/http`
through `registry_site`."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
import os
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import bcrypt

from dockyard.http.messages import PayloadTooLarge, Request, Response
from dockyard.http.server import Limits, Site, nofile_connections
from dockyard.registry.server import referrers
from dockyard.registry.server.storage import (
    RegistryStorage,
    StorageError,
    check_digest,
    check_name,
    check_tag,
)

log = logging.getLogger(__name__)

MAX_MANIFEST = 4 * 1024 * 1024
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
MANIFEST_TYPES = {DOCKER_MANIFEST, DOCKER_LIST, OCI_MANIFEST, OCI_INDEX}
INDEX_TYPES = {DOCKER_LIST, OCI_INDEX}
API_HEADER = {"docker-distribution-api-version": "registry/2.0"}

_ROUTES: list[tuple[str, re.Pattern[str]]] = [
    ("base", re.compile(r"^/v2/?$")),
    ("catalog", re.compile(r"^/v2/_catalog$")),
    ("tags", re.compile(r"^/v2/(?P<name>.+)/tags/list$")),
    ("manifest", re.compile(r"^/v2/(?P<name>.+)/manifests/(?P<ref>[^/]+)$")),
    ("uploads", re.compile(r"^/v2/(?P<name>.+)/blobs/uploads/?$")),
    ("upload", re.compile(r"^/v2/(?P<name>.+)/blobs/uploads/(?P<uuid>[^/]+)$")),
    ("blob", re.compile(r"^/v2/(?P<name>.+)/blobs/(?P<digest>[^/]+)$")),
    ("referrers", re.compile(r"^/v2/(?P<name>.+)/referrers/(?P<digest>[^/]+)$")),
]


def error(code: str, message: str, status: int, detail: object = None,
          headers: dict[str, str] | None = None) -> Response:
    body = json.dumps({"errors": [{"code": code, "message": message, "detail": detail}]}).encode()
    return Response(status, {"content-type": "application/json", **API_HEADER, **(headers or {})}, body)


def site_error(status: int, message: str) -> Response:
    """An error the HTTP server meets (a bad head or body, a crash) in the registry's words."""
    return error("UNKNOWN", message, status)


def registry_site(handle: Callable[[Request], Awaitable[Response]], limits: Limits | None = None) -> Site:
    """A registry (or anything answering as one) on the HTTP server: no Docker headers, registry
    errors, the registry's limits (idle connections closed, request bodies drained whole)."""
    return Site(handle, site_error, limits=limits or Limits(header_timeout=30.0, idle_timeout=120.0,
                                                              max_connections=nofile_connections(),
                                                              drain_limit=None), log=log)


def load_htpasswd(path: str | os.PathLike[str]) -> dict[str, bytes]:
    users = {}
    for line in Path(path).read_text().splitlines():
        if ":" in line and not line.startswith("#"):
            user, h = line.strip().split(":", 1)
            if not h.startswith(("$2y$", "$2b$", "$2a$")):
                raise ValueError(f"htpasswd: only bcrypt entries are supported (user {user})")
            users[user] = h.encode()
    return users


class Registry:
    def __init__(self, root: str | os.PathLike[str], htpasswd: dict[str, bytes] | None = None,
                 realm: str = "Registry Realm") -> None:
        self.storage = RegistryStorage(root)
        self.users = htpasswd
        self.realm = realm
        self._verified: set[bytes] = set()  # sha256 of good "user:pass": bcrypt costs ~50-200 ms

    # ---- dispatch ----
    async def __call__(self, req: Request) -> Response:
        if self.users is not None and not await self._authorized(req):
            return error("UNAUTHORIZED", "authentication required", 401, None,
                         {"www-authenticate": f'Basic realm="{self.realm}"'})
        kind, m = next(((k, mm) for k, rx in _ROUTES if (mm := rx.match(req.path))), ("", None))
        if m is None:
            return error("NOT_FOUND", "not found", 404)
        handler: Callable[..., Awaitable[Response]] | None = getattr(
            self, f"{req.method.lower()}_{kind}", None)
        if req.method == "HEAD" and handler is None:
            handler = getattr(self, f"get_{kind}", None)
        if handler is None:
            return error("UNSUPPORTED", "The operation is unsupported.", 405)
        try:
            params = m.groupdict()
            if "name" in params:
                check_name(params["name"])
            return await handler(req, **params)
        except StorageError as e:
            return error(e.code, e.message, e.status, e.detail)

    async def _authorized(self, req: Request) -> bool:
        auth = req.headers.get("authorization", "")
        if not auth.lower().startswith("basic "):
            return False
        try:
            raw = base64.b64decode(auth[6:].strip(), validate=True)
            user, pw = raw.decode().split(":", 1)
        except (ValueError, UnicodeDecodeError):
            return False
        key = hashlib.sha256(raw).digest()
        if key in self._verified:
            return True
        assert self.users is not None
        h = self.users.get(user)
        if h is None or not await asyncio.to_thread(bcrypt.checkpw, pw.encode(), h):
            return False
        self._verified.add(key)
        return True

    # ---- base, catalog, tags ----
    async def get_base(self, req: Request) -> Response:
        return Response(200, {"content-type": "application/json", **API_HEADER}, b"{}")

    def _paginate(self, req: Request, items: list[str], base: str) -> tuple[list[str], dict[str, str]]:
        last = req.q("last")
        if last:
            items = [i for i in items if i > last]
        n_raw = req.q("n")
        headers: dict[str, str] = {}
        if n_raw is not None:
            try:
                n = int(n_raw)
            except ValueError:
                raise StorageError("PAGINATION_NUMBER_INVALID", "invalid number of results requested",
                                   400, {"n": n_raw}) from None
            if n < 0:
                raise StorageError("PAGINATION_NUMBER_INVALID", "invalid number of results requested", 400)
            if len(items) > n:
                items = items[:n]
                if items:
                    headers["link"] = f'<{base}?n={n}&last={items[-1]}>; rel="next"'
        return items, headers

    async def get_catalog(self, req: Request) -> Response:
        repos, headers = self._paginate(req, self.storage.repositories(), "/v2/_catalog")
        return self._json({"repositories": repos}, headers)

    async def get_tags(self, req: Request, name: str) -> Response:
        if not self.storage.repo_exists(name):
            return error("NAME_UNKNOWN", "repository name not known to registry", 404, {"name": name})
        tags, headers = self._paginate(req, self.storage.tags(name), f"/v2/{name}/tags/list")
        return self._json({"name": name, "tags": tags}, headers)

    def _json(self, obj: object, headers: dict[str, str] | None = None) -> Response:
        return Response(200, {"content-type": "application/json", **API_HEADER, **(headers or {})},
                            json.dumps(obj).encode())

    # ---- blobs ----
    async def get_blob(self, req: Request, name: str, digest: str) -> Response:
        check_digest(digest)
        if not self.storage.repo_has_blob(name, digest):
            return error("BLOB_UNKNOWN", "blob unknown to registry", 404, {"digest": digest})
        path = self.storage.blob_path(digest)
        size = path.stat().st_size
        headers = {"content-type": "application/octet-stream", "docker-content-digest": digest,
                   "accept-ranges": "bytes", "etag": f'"{digest}"',
                   "cache-control": "max-age=31536000", **API_HEADER}
        start, end, status = 0, size - 1, 200
        rng = req.headers.get("range")
        if rng and req.method == "GET":
            m = re.fullmatch(r"bytes=(\d*)-(\d*)", rng.strip())
            if not m or (not m.group(1) and not m.group(2)):
                return error("RANGE_INVALID", "invalid range", 416, None, {"content-range": f"bytes */{size}"})
            if m.group(1):
                start = int(m.group(1))
                end = min(int(m.group(2)), size - 1) if m.group(2) else size - 1
            else:  # suffix range: the last N bytes
                start = max(size - int(m.group(2)), 0)
            if start >= size or end < start:
                return error("RANGE_INVALID", "requested range not satisfiable", 416, None,
                             {"content-range": f"bytes */{size}"})
            status = 206
            headers["content-range"] = f"bytes {start}-{end}/{size}"
        headers["content-length"] = str(end - start + 1)
        if req.method == "HEAD":
            return Response(status, headers, b"")
        return Response(status, headers, _file_chunks(path, start, end - start + 1))

    async def delete_blob(self, req: Request, name: str, digest: str) -> Response:
        check_digest(digest)
        if not self.storage.unlink_blob(name, digest):
            return error("BLOB_UNKNOWN", "blob unknown to registry", 404, {"digest": digest})
        return Response(202, {"docker-content-digest": digest, **API_HEADER})

    # ---- uploads ----
    def _upload_headers(self, name: str, uid: str, size: int) -> dict[str, str]:
        return {"location": f"/v2/{name}/blobs/uploads/{uid}", "docker-upload-uuid": uid,
                "range": f"0-{max(size - 1, 0)}", **API_HEADER}

    def _created(self, name: str, digest: str) -> Response:
        return Response(201, {"location": f"/v2/{name}/blobs/{digest}", "docker-content-digest": digest,
                                  **API_HEADER})

    async def post_uploads(self, req: Request, name: str) -> Response:
        mount, src = req.q("mount"), req.q("from")
        if mount and src:
            check_digest(mount)
            check_name(src)
            if self.storage.repo_has_blob(src, mount):
                self.storage.link_blob(name, mount)
                return self._created(name, mount)
        uid = self.storage.start_upload()
        digest = req.q("digest")
        if digest is not None:  # monolithic upload in one POST
            check_digest(digest)
            await self._receive(req, uid)
            self.storage.finish_upload(uid, name, digest)
            return self._created(name, digest)
        return Response(202, {**self._upload_headers(name, uid, 0), "content-length": "0"})

    async def _receive(self, req: Request, uid: str) -> None:
        up = self.storage.upload(uid)
        with open(up.path, "ab") as f:
            async for chunk in req.stream():
                self.storage.append(up, chunk, f)

    def _range_refused(self, req: Request, name: str, uuid: str) -> Response | None:
        """A chunk's Content-Range must start where the upload ends and span its Content-Length:
        anything else (a retried or out-of-order chunk) is 416 with the upload's current Range."""
        cr = req.headers.get("content-range")
        if not cr:
            return None
        up = self.storage.upload(uuid)
        m = re.fullmatch(r"(?:bytes )?(\d+)-(\d+)", cr.strip())
        length = req.headers.get("content-length")
        if (not m or int(m.group(1)) != up.size or int(m.group(2)) < int(m.group(1))
                or (length is not None and length.isdigit()
                    and int(length) != int(m.group(2)) - int(m.group(1)) + 1)):
            return error("BLOB_UPLOAD_INVALID", "blob upload invalid", 416, {"content-range": cr},
                         self._upload_headers(name, uuid, up.size))
        return None

    async def patch_upload(self, req: Request, name: str, uuid: str) -> Response:
        up = self.storage.upload(uuid)
        refused = self._range_refused(req, name, uuid)
        if refused is not None:
            return refused
        await self._receive(req, uuid)
        return Response(202, self._upload_headers(name, uuid, up.size))

    async def put_upload(self, req: Request, name: str, uuid: str) -> Response:
        digest = req.q("digest")
        if not digest:
            return error("DIGEST_INVALID", "provided digest did not match uploaded content", 400)
        check_digest(digest)
        refused = self._range_refused(req, name, uuid)  # the final chunk may come with the PUT
        if refused is not None:
            return refused
        await self._receive(req, uuid)
        self.storage.finish_upload(uuid, name, digest)
        return self._created(name, digest)

    async def get_upload(self, req: Request, name: str, uuid: str) -> Response:
        up = self.storage.upload(uuid)
        return Response(204, self._upload_headers(name, uuid, up.size))

    async def delete_upload(self, req: Request, name: str, uuid: str) -> Response:
        self.storage.upload(uuid)
        self.storage.cancel_upload(uuid)
        return Response(204, dict(API_HEADER))

    # ---- manifests ----
    def _resolve(self, name: str, ref: str) -> str | None:
        if ref.startswith("sha256:"):
            check_digest(ref)
            return ref if self.storage.manifest_media_type(name, ref) is not None else None
        return self.storage.resolve_tag(name, check_tag(ref))

    async def get_manifest(self, req: Request, name: str, ref: str) -> Response:
        try:
            digest = self._resolve(name, ref)
        except StorageError:  # no manifest can have that name: the spec wants 404 here, not 400
            digest = None
        media_type = self.storage.manifest_media_type(name, digest) if digest else None
        if digest is None or media_type is None or not self.storage.has_blob(digest):
            return error("MANIFEST_UNKNOWN", "manifest unknown", 404, {"name": name, "reference": ref})
        data = self.storage.blob_path(digest).read_bytes()
        headers = {"content-type": media_type, "docker-content-digest": digest, "etag": f'"{digest}"',
                   "content-length": str(len(data)), **API_HEADER}
        return Response(200, headers, b"" if req.method == "HEAD" else data)

    async def put_manifest(self, req: Request, name: str, ref: str) -> Response:
        try:
            data = await req.body(limit=MAX_MANIFEST)
        except PayloadTooLarge:
            return error("MANIFEST_INVALID", "manifest too big: the limit is 4 MiB", 413)
        if ref.startswith("sha256:"):  # the reference is judged before the body
            check_digest(ref)
        else:
            check_tag(ref)
        try:
            doc = json.loads(data)
            if not isinstance(doc, dict):
                raise ValueError("not an object")
        except ValueError as e:
            return error("MANIFEST_INVALID", "manifest invalid", 400, str(e))
        media_type: str = req.headers.get("content-type", "").split(";")[0].strip() or doc.get("mediaType") or ""
        if doc.get("mediaType") and doc["mediaType"] != media_type and media_type in MANIFEST_TYPES:
            return error("MANIFEST_INVALID", "manifest invalid", 400, "mediaType does not match Content-Type")
        if media_type not in MANIFEST_TYPES:
            media_type = doc.get("mediaType") or ""
            if media_type not in MANIFEST_TYPES:
                return error("MANIFEST_INVALID", "manifest invalid", 400,
                             f"unsupported manifest media type {media_type!r}")
        missing = self._missing_refs(name, media_type, doc)
        if missing is not None:
            return error(*missing)
        subject = referrers.subject_of(doc)  # need not exist (yet): the spec accepts it either way
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        tag = None
        if ref.startswith("sha256:"):
            if check_digest(ref) != digest:
                return error("DIGEST_INVALID", "provided digest did not match uploaded content", 400,
                             {"digest": ref})
        else:
            tag = check_tag(ref)
        await asyncio.to_thread(self.storage.put_bytes, data)
        self.storage.put_manifest(name, digest, media_type, tag)
        headers = {"location": f"/v2/{name}/manifests/{digest}", "docker-content-digest": digest,
                   **API_HEADER}
        if subject is not None:
            self.storage.add_referrer(name, subject, referrers.descriptor(doc, media_type, digest, len(data)))
            headers["oci-subject"] = subject
        return Response(201, headers)

    def _missing_refs(self, name: str, media_type: str, doc: dict[str, Any]) -> tuple[str, str, int, object] | None:
        try:
            if media_type in INDEX_TYPES:
                for m in doc.get("manifests") or []:
                    d = check_digest(m["digest"])
                    if self.storage.manifest_media_type(name, d) is None:
                        return ("MANIFEST_BLOB_UNKNOWN", "blob unknown to registry", 400, {"digest": d})
                return None
            descs = [doc["config"], *(doc.get("layers") or [])]
            for desc in descs:
                if desc.get("urls"):  # foreign (non-distributable) layers live elsewhere
                    continue
                d = check_digest(desc["digest"])
                if not self.storage.repo_has_blob(name, d):
                    return ("MANIFEST_BLOB_UNKNOWN", "blob unknown to registry", 400, {"digest": d})
        except (KeyError, TypeError, AttributeError) as e:
            return ("MANIFEST_INVALID", "manifest invalid", 400, f"missing field {e}")
        return None

    async def get_referrers(self, req: Request, name: str, digest: str) -> Response:
        """An image index of the manifests whose subject is `digest`; empty (not 404) when none."""
        check_digest(digest)
        descs = self.storage.referrers(name, digest) if self.storage.repo_exists(name) else []
        headers = {"content-type": referrers.OCI_INDEX, **API_HEADER}
        wanted = req.q("artifactType")
        if wanted:
            descs = [d for d in descs if d.get("artifactType") == wanted]
            headers["oci-filters-applied"] = "artifactType"
        return Response(200, headers, json.dumps(referrers.index(descs)).encode())

    async def delete_manifest(self, req: Request, name: str, ref: str) -> Response:
        if ref.startswith("sha256:"):
            ok = self.storage.delete_manifest(name, check_digest(ref))
        else:
            ok = self.storage.delete_tag(name, check_tag(ref))
        if not ok:
            return error("MANIFEST_UNKNOWN", "manifest unknown", 404, {"name": name, "reference": ref})
        return Response(202, dict(API_HEADER))


async def _file_chunks(path: Path, start: int, length: int) -> AsyncIterator[bytes]:
    f = await asyncio.to_thread(open, path, "rb")
    try:
        f.seek(start)
        while length > 0:
            chunk = await asyncio.to_thread(f.read, min(length, 1 << 20))
            if not chunk:
                break
            length -= len(chunk)
            yield chunk
    finally:
        f.close()
