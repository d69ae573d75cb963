"""Distribution API client (httpx): endpoints, mirrors, insecure registries, manifests and blobs.

Every manifest and blob is verified against its digest before anyone sees it: blobs stream into the
content store's ingest writer, which refuses to commit on a mismatch.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import os
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urljoin

import httpx

from dockyard.errors import DockyardError, InvalidParameter, NotFound, Unauthorized, Unavailable
from dockyard.oci.reference import DEFAULT_DOMAIN
from dockyard.registry.client.auth import Credentials, RegistryAuth
from dockyard.store.content import ContentStore

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
INDEX_TYPES = (DOCKER_LIST, OCI_INDEX)
MANIFEST_TYPES = (DOCKER_MANIFEST, OCI_MANIFEST)
ACCEPT = ", ".join((OCI_INDEX, DOCKER_LIST, OCI_MANIFEST, DOCKER_MANIFEST))
MAX_MANIFEST = 4 * 1024 * 1024
HUB_ENDPOINT = "https://registry-1.docker.io"
_CHUNK = 1 << 20

Progress = Callable[[int], None]


class RegistryError(DockyardError):
    """A registry answered with an error; `status` follows Docker's mapping for the API."""

    status = 500


class RegistryUnauthorized(Unauthorized):
    """The registry said 401 on a pull or push: 500 at the Engine API, as dockerd answers (a 401 makes
    the docker CLI prompt for a login)."""

    status = 500


@dataclass
class RegistryOptions:
    mirrors: list[str] = field(default_factory=list)  # for docker.io names only, tried in order
    insecure: list[str] = field(default_factory=list)  # host[:port] or CIDR; 127.0.0.0/8 implicitly
    timeout: float = 60.0


@dataclass(frozen=True)
class Endpoint:
    url: str  # scheme://host[:port], no trailing slash
    mirror: bool = False
    insecure: bool = False  # may fall back to plain http


def _is_insecure(domain: str, insecure: list[str]) -> bool:
    host = domain.rsplit(":", 1)[0].strip("[]") if not domain.startswith("[") or "]:" in domain \
        else domain.strip("[]")
    if domain in insecure or host in insecure:
        return True
    nets = [ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128")]
    for entry in insecure:
        try:
            nets.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            pass
    try:
        addrs = [ipaddress.ip_address(host)]
    except ValueError:
        if host != "localhost":
            return False  # never resolve arbitrary names just to decide; localhost is loopback
        addrs = [ipaddress.ip_address(a[4][0]) for a in socket.getaddrinfo(host, None)]
    return any(a in n for a in addrs for n in nets)


class RegistryClient:
    def __init__(self, options: RegistryOptions | None = None, http: httpx.AsyncClient | None = None) -> None:
        self.options = options or RegistryOptions()
        self._http = http
        self._insecure_http: httpx.AsyncClient | None = None
        self._scheme: dict[str, str] = {}  # endpoint base -> the scheme that answered

    def _new_http(self, verify: bool) -> httpx.AsyncClient:
        limits = httpx.Limits(max_connections=32, max_keepalive_connections=16)
        return httpx.AsyncClient(timeout=self.options.timeout, limits=limits, verify=verify,
                                 follow_redirects=True, trust_env=False)

    def http(self, insecure: bool = False) -> httpx.AsyncClient:
        """The shared client; insecure registries get one that skips TLS verification."""
        if insecure:
            if self._insecure_http is None:
                self._insecure_http = self._new_http(False)
            return self._insecure_http
        if self._http is None:
            self._http = self._new_http(True)
        return self._http

    async def aclose(self) -> None:
        for c in (self._http, self._insecure_http):
            if c is not None:
                await c.aclose()
        self._http = self._insecure_http = None

    def endpoints(self, domain: str, push: bool = False) -> list[Endpoint]:
        out = []
        if domain == DEFAULT_DOMAIN and not push:
            for m in self.options.mirrors:
                m = m.rstrip("/")
                if "://" not in m:
                    m = "https://" + m
                host = m.split("://", 1)[1]
                out.append(Endpoint(m, mirror=True, insecure=_is_insecure(host, self.options.insecure)))
        if domain == DEFAULT_DOMAIN:
            out.append(Endpoint(HUB_ENDPOINT))
        else:
            out.append(Endpoint("https://" + domain, insecure=_is_insecure(domain, self.options.insecure)))
        return out

    def repository(self, endpoint: Endpoint, path: str, creds: Credentials, push: bool = False) -> Repository:
        scope = f"repository:{path}:{'pull,push' if push else 'pull'}"
        return Repository(self, endpoint, path, RegistryAuth(creds, scope))

    async def base_url(self, endpoint: Endpoint) -> str:
        """https, or for an insecure registry whichever of https/http answers /v2/ (docker's order)."""
        if endpoint.url in self._scheme:
            return self._scheme[endpoint.url]
        candidates = [endpoint.url]
        if endpoint.insecure and endpoint.url.startswith("https://"):
            candidates.append("http://" + endpoint.url[len("https://"):])
        last = ""
        for url in candidates:
            try:
                await self.http(endpoint.insecure).get(url + "/v2/", timeout=10 if len(candidates) > 1 else self.options.timeout)
            except (httpx.TransportError, OSError) as e:
                last = f"Get \"{url}/v2/\": {dial_error(url, e)}"  # dockerd reports the last one it tried
                continue
            self._scheme[endpoint.url] = url
            return url
        raise Unavailable(last)


def dial_error(url: str, e: BaseException) -> str:
    """A failed connection in Go's words, as dockerd reports it (not Python's `[Errno -2] ...`)."""
    import socket
    import ssl

    parts = httpx.URL(url)
    host = parts.host
    port = parts.port or (443 if parts.scheme == "https" else 80)
    addr = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    cause: BaseException | None = e
    while cause is not None:
        if isinstance(cause, socket.gaierror):
            return f"dial tcp: lookup {host}: no such host"
        if isinstance(cause, ConnectionRefusedError):
            return f"dial tcp {addr}: connect: connection refused"
        if isinstance(cause, ssl.SSLError):
            if "WRONG_VERSION_NUMBER" in str(cause) or "record layer failure" in str(cause):
                return "http: server gave HTTP response to HTTPS client"
            return f"tls: {cause.reason or cause}".lower()
        if isinstance(cause, (TimeoutError, httpx.TimeoutException)):
            return f"dial tcp {addr}: i/o timeout"
        if isinstance(cause, OSError) and cause.errno is not None and cause.strerror:
            return f"dial tcp {addr}: connect: {cause.strerror.lower()}"
        cause = cause.__cause__ or cause.__context__
    return str(e) or type(e).__name__


def _error_message(resp: httpx.Response) -> str:
    try:
        errs = resp.json().get("errors") or []
        if errs:
            e = errs[0]
            return f"{e.get('code', '').lower().replace('_', ' ')}: {e.get('message', '')}".strip(": ")
    except (ValueError, AttributeError):
        pass
    return f"unexpected status {resp.status_code}"


def _with_digest(location: str, digest: str) -> str:
    """The upload URL plus ?digest=: httpx's params= would drop the query the registry put in Location
    (distribution's _state), and the PUT would get 404 "blob upload invalid"."""
    return str(httpx.URL(location).copy_merge_params({"digest": digest}))


def _raise_for(resp: httpx.Response, what: str) -> None:
    if resp.status_code < 400:
        return
    msg = _error_message(resp)
    if resp.status_code == 401:
        raise RegistryUnauthorized(f"{what}: unauthorized: authentication required")
    if resp.status_code == 404:
        raise NotFound(f"{what}: {msg}")
    if resp.status_code in (400, 405, 413, 416):
        raise InvalidParameter(f"{what}: {msg}")
    raise RegistryError(f"{what}: {msg}")


class Repository:
    """One repository on one endpoint, with its own auth (and token cache)."""

    def __init__(self, client: RegistryClient, endpoint: Endpoint, path: str, auth: RegistryAuth) -> None:
        self.client = client
        self.endpoint = endpoint
        self.path = path
        self.auth = auth

    async def _url(self, suffix: str) -> str:
        return f"{await self.client.base_url(self.endpoint)}/v2/{self.path}/{suffix}"

    async def _request(self, method: str, url: str, **kw: Any) -> httpx.Response:
        return await self.client.http(self.endpoint.insecure).request(method, url, auth=self.auth, **kw)

    # ---- manifests ----
    async def get_manifest(self, reference: str) -> tuple[bytes, str, str]:
        """(bytes, media type, digest), verified: by digest against the reference, else the header."""
        url = await self._url(f"manifests/{reference}")
        async with self.client.http(self.endpoint.insecure).stream("GET", url, auth=self.auth, headers={"accept": ACCEPT}) as resp:
            if resp.status_code >= 400:
                await resp.aread()
                _raise_for(resp, f"manifest for {self.path}:{reference}" if ":" not in reference
                           else f"manifest for {self.path}@{reference}")
            data = bytearray()
            async for chunk in resp.aiter_bytes():
                data += chunk
                if len(data) > MAX_MANIFEST:
                    raise InvalidParameter(f"manifest for {self.path}:{reference} is over the 4 MiB limit")
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        expected = reference if reference.startswith("sha256:") else resp.headers.get("docker-content-digest")
        if expected and expected.startswith("sha256:") and expected != digest:
            raise InvalidParameter(f"manifest verification failed for digest {expected}")
        media_type = resp.headers.get("content-type", "").split(";")[0].strip()
        try:
            doc = json.loads(data)
        except ValueError:
            raise InvalidParameter(f"invalid manifest for {self.path}:{reference}") from None
        media_type = doc.get("mediaType") or media_type
        if media_type not in INDEX_TYPES + MANIFEST_TYPES:
            if "manifests" in doc and media_type in ("", "application/json"):
                media_type = OCI_INDEX
            elif "config" in doc and media_type in ("", "application/json"):
                media_type = OCI_MANIFEST
            else:
                raise InvalidParameter(f"unsupported manifest media type {media_type!r} for {self.path}")
        return bytes(data), media_type, digest

    async def referrers(self, digest: str, artifact_type: str | None = None) -> list[dict[str, Any]]:
        """Descriptors of the manifests whose subject is `digest`: the referrers API, or, where the
        registry has none (404), the spec's fallback index tagged sha256-<hex>; filtered by
        artifactType here when the registry did not say it filtered (OCI-Filters-Applied)."""
        resp = await self._request("GET", await self._url(f"referrers/{digest}"),
                                   params={"artifactType": artifact_type} if artifact_type else None,
                                   headers={"accept": OCI_INDEX})
        filtered = False
        if resp.status_code == 404:
            try:
                data, _, _ = await self.get_manifest(digest.replace(":", "-", 1))
            except NotFound:
                return []
            descs = json.loads(data).get("manifests") or []
        else:
            _raise_for(resp, f"referrers of {self.path}@{digest}")
            try:
                descs = resp.json().get("manifests") or []
            except (ValueError, AttributeError):
                raise InvalidParameter(f"referrers of {self.path}@{digest}: not an image index") from None
            filtered = "artifactType" in resp.headers.get("oci-filters-applied", "")
        if artifact_type and not filtered:
            descs = [d for d in descs if d.get("artifactType") == artifact_type]
        return [d for d in descs if isinstance(d, dict)]

    async def put_manifest(self, reference: str, data: bytes, media_type: str) -> str:
        resp = await self._request("PUT", await self._url(f"manifests/{reference}"), content=data,
                                    headers={"content-type": media_type})
        _raise_for(resp, f"put manifest {self.path}:{reference}")
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        got = resp.headers.get("docker-content-digest")
        if got and got != digest:
            raise RegistryError(f"registry returned digest {got}, expected {digest}")
        return digest

    async def put_referrer(self, digest: str, data: bytes, media_type: str, subject: str) -> None:
        """PUT a manifest whose `subject` is `subject` by its digest; a registry that did not answer
        OCI-Subject (no referrers API) gets the spec's fallback index tagged sha256-<hex> updated."""
        resp = await self._request("PUT", await self._url(f"manifests/{digest}"), content=data,
                                   headers={"content-type": media_type})
        _raise_for(resp, f"put manifest {self.path}@{digest}")
        if resp.headers.get("oci-subject"):
            return
        tag = subject.replace(":", "-", 1)
        try:
            index = json.loads((await self.get_manifest(tag))[0])
        except NotFound:
            index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []}
        descs = [d for d in index.get("manifests") or [] if d.get("digest") != digest]
        doc = json.loads(data)
        desc: dict[str, Any] = {"mediaType": media_type, "digest": digest, "size": len(data)}
        kind = doc.get("artifactType") or (doc.get("config") or {}).get("mediaType")
        if kind:
            desc["artifactType"] = kind
        if doc.get("annotations"):
            desc["annotations"] = doc["annotations"]
        index["manifests"] = [*descs, desc]
        await self.put_manifest(tag, json.dumps(index).encode(), OCI_INDEX)

    # ---- blobs ----
    async def fetch_blob(self, digest: str, size: int | None, store: ContentStore,
                         progress: Progress | None = None,
                         sink: Callable[[bytes], Awaitable[None]] | None = None) -> None:
        """Download into the content store (verified); a no-op when the store has it already.
        `sink` also gets each chunk as it arrives (pull extracts while downloading); the digest is
        only checked at the end, so the sink's consumer must wait for this to return."""
        if store.has(digest):
            return
        url = await self._url(f"blobs/{digest}")
        writer = store.ingest(digest)
        with writer:
            async with self.client.http(self.endpoint.insecure).stream("GET", url, auth=self.auth) as resp:
                if resp.status_code >= 400:
                    await resp.aread()
                    _raise_for(resp, f"blob {digest}")
                async for chunk in resp.aiter_raw(_CHUNK):
                    writer.write(chunk)
                    if size is not None and writer.size > size:
                        raise InvalidParameter(f"blob {digest} is larger than its descriptor says ({size})")
                    if sink:
                        await sink(chunk)
                    if progress:
                        progress(writer.size)
            if size is not None and writer.size != size:
                raise InvalidParameter(f"blob {digest}: got {writer.size} bytes, expected {size}")
            writer.commit()  # raises on digest mismatch; the ingest file is dropped

    async def has_blob(self, digest: str) -> bool:
        resp = await self._request("HEAD", await self._url(f"blobs/{digest}"))
        if resp.status_code == 404:
            return False
        _raise_for(resp, f"blob {digest}")
        return True

    async def mount_blob(self, digest: str, from_path: str) -> bool:
        resp = await self._request("POST", await self._url("blobs/uploads/"),
                                   params={"mount": digest, "from": from_path})
        if resp.status_code == 201:
            return True
        _raise_for(resp, "start blob upload")
        if resp.status_code == 202 and "location" in resp.headers:  # a fresh upload we do not need
            await self._request("DELETE", urljoin(str(resp.url), resp.headers["location"]))
        return False

    async def upload_blob(self, digest: str, path: str | os.PathLike[str], size: int,
                          progress: Progress | None = None, chunk_size: int = 0) -> None:
        """POST for a session, then one PUT with the body (monolithic) or PATCHes of chunk_size + PUT."""
        resp = await self._request("POST", await self._url("blobs/uploads/"))
        _raise_for(resp, "start blob upload")
        location = urljoin(str(resp.url), resp.headers["location"])
        sent = 0

        async def body(limit: int) -> AsyncIterator[bytes]:
            nonlocal sent
            with open(path, "rb") as f:
                f.seek(sent)
                left = limit
                while left > 0 and (chunk := f.read(min(_CHUNK, left))):
                    left -= len(chunk)
                    sent += len(chunk)
                    if progress:
                        progress(sent)
                    yield chunk

        if chunk_size and size > chunk_size:
            while sent < size:
                start, n = sent, min(chunk_size, size - sent)
                resp = await self._request("PATCH", location, content=body(n), headers={
                    "content-type": "application/octet-stream", "content-length": str(n),
                    "content-range": f"{start}-{start + n - 1}"})
                _raise_for(resp, f"upload blob {digest}")
                location = urljoin(str(resp.url), resp.headers["location"])
            resp = await self._request("PUT", _with_digest(location, digest), content=b"")
        else:
            resp = await self._request("PUT", _with_digest(location, digest), content=body(size),
                                       headers={"content-type": "application/octet-stream",
                                                "content-length": str(size)})
        _raise_for(resp, f"upload blob {digest}")
