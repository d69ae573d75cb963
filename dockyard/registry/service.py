"""The distribution facade the API calls: pull, push, distribution inspect and login.

It takes raw `X-Registry-Auth` headers so the API layer needs no registry imports; the image
service is seen through `ImageStore` (services/images.py ImageService implements it).
"""

from __future__ import annotations

import asyncio
import base64
import builtins
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

from dockyard.errors import InvalidParameter, NotFound, Unauthorized
from dockyard.oci import cosign, reference
from dockyard.oci.digest import sha256_digest
from dockyard.registry import buildcache
from dockyard.registry.buildcache import CachedStep, CacheSource
from dockyard.registry.client import platforms, progress
from dockyard.registry.client.auth import Credentials, RegistryAuth, decode_registry_auth, load_docker_config
from dockyard.registry.client.layermap import LayerMap
from dockyard.registry.client.pull import Event, ImageRegistrar, Puller
from dockyard.registry.client.push import Pusher, copy_referrers
from dockyard.registry.client.remote import INDEX_TYPES, RegistryClient, Repository
from dockyard.store.content import ContentStore
from dockyard.store.snapshots import Snapshotter


class StoredImage(Protocol):
    @property
    def id(self) -> str: ...
    @property
    def config(self) -> dict[str, Any]: ...
    @property
    def repo_tags(self) -> builtins.list[str]: ...
    @property
    def repo_digests(self) -> builtins.list[str]: ...


class ImageStore(ImageRegistrar, Protocol):
    """What pull and push need from the image service."""

    def resolve(self, ref_or_id: str) -> StoredImage: ...
    def all(self) -> Sequence[StoredImage]: ...
    def layer_blob(self, diff_id: str) -> tuple[str, str, int]: ...
    def local_referrers(self, image_id: str) -> tuple[bytes, builtins.list[tuple[str, bytes]]]: ...


class Distribution:
    def __init__(self, client: RegistryClient, content: ContentStore, snapshots: Snapshotter, images: ImageStore,
                 layermap: LayerMap) -> None:
        self.client = client
        self.content = content
        self.images = images
        self.puller = Puller(client, content, snapshots, images, layermap)
        self.pusher = Pusher(client, content, snapshots, layermap, images.layer_blob)

    async def export_cache(self, spec: dict[str, str], steps: builtins.list[CachedStep],
                           auth_header: str | None) -> str:
        """`--cache-to`: the steps' images and layers to a registry or a local OCI layout; returns
        the cache manifest's digest."""
        if spec["type"] == "local":
            return await asyncio.to_thread(buildcache.export_local, Path(spec["dest"]), steps, self.pusher.blob_for,
                                           self.content)
        ref = reference.parse(spec["ref"])
        return await buildcache.export_registry(self.client, spec["ref"], self.credentials(auth_header, ref.domain),
                                                steps, self.pusher.blob_for, self.content)

    async def import_cache(self, spec: dict[str, str], auth_header: str | None) -> CacheSource:
        """`--cache-from`: read a cache manifest (layers are fetched later, as steps hit)."""
        if spec["type"] == "local":
            return await buildcache.import_local(Path(spec["src"]), self.content, spec.get("tag") or "latest")
        ref = reference.parse(spec["ref"])
        return await buildcache.import_registry(self.client, spec["ref"], self.credentials(auth_header, ref.domain),
                                                self.content)

    @staticmethod
    def credentials(auth_header: str | None, domain: str) -> Credentials:
        """X-Registry-Auth first (what the CLI sends), else the daemon user's ~/.docker/config.json."""
        creds = decode_registry_auth(auth_header)
        return creds if creds else load_docker_config(domain)

    def pull(self, image: str, tag: str | None, platform: str | None, auth_header: str | None) -> AsyncIterator[Event]:
        ref = reference.parse(image, default_tag=None)
        return self.puller.pull(image, tag, platform, self.credentials(auth_header, ref.domain))

    async def push(self, name: str, tag: str | None, auth_header: str | None,
                   with_referrers: bool = False) -> AsyncIterator[Event]:
        """`with_referrers` (Dockyard's): the manifest goes up as it was pulled, and the OCI 1.1
        referrers (signatures, SBOMs) of it in the registry it came from are copied along."""
        ref = reference.parse(name, default_tag=None)
        creds = self.credentials(auth_header, ref.domain)
        tags = [tag] if tag else self._tags_of(ref) or ["latest"]
        for t in tags:
            target = str(ref.with_tag(t))
            image = self.images.resolve(target)
            origin = self._origin(image) if with_referrers else None
            local: builtins.list[tuple[str, bytes]] = []
            if with_referrers and origin is None:  # loaded from an OCI layout with its referrers?
                manifest, local = await asyncio.to_thread(self.images.local_referrers, image.id)
                if manifest:
                    async for ev in self.pusher.push(target, self._config_bytes(image), creds, manifest):
                        yield ev
                    await self._push_local_referrers(ref, creds, sha256_digest(manifest), local)
                    for digest, _ in local:
                        yield progress.status(f"Referrer {digest}: pushed")
                    continue
                yield progress.status("No referrers to copy: the image's manifest as pulled is not here")
            src: Repository | None = None
            if origin is not None:
                src_ref = reference.parse(origin[2])
                src = self.client.repository(self.client.endpoints(src_ref.domain)[-1], src_ref.path,
                                             self.credentials(None, src_ref.domain))
                for la in json.loads(origin[0]).get("layers") or []:  # a layer that was here already
                    await src.fetch_blob(la["digest"], la.get("size"), self.content)  # was not fetched
            async for ev in self.pusher.push(target, self._config_bytes(image), creds,
                                             origin[0] if origin else None):
                yield ev
            if origin is not None and src is not None:
                dst = self.client.repository(self.client.endpoints(ref.domain, push=True)[0], ref.path, creds,
                                             push=True)
                async for ev in copy_referrers(src, dst, origin[1], self.content):
                    yield ev

    async def _push_local_referrers(self, ref: reference.Reference, creds: Credentials, subject: str,
                                    refs: builtins.list[tuple[str, bytes]]) -> None:
        dst = self.client.repository(self.client.endpoints(ref.domain, push=True)[0], ref.path, creds, push=True)
        for digest, raw in refs:
            doc = json.loads(raw)
            for d in [doc.get("config"), *(doc.get("layers") or [])]:
                if isinstance(d, dict) and d.get("digest") and not await dst.has_blob(d["digest"]):
                    await dst.upload_blob(d["digest"], self.content.path(d["digest"]), self.content.size(d["digest"]))
            await dst.put_referrer(digest, raw, doc.get("mediaType") or cosign.OCI_MANIFEST,
                                   (doc.get("subject") or {}).get("digest") or subject)

    def _origin(self, image: StoredImage) -> tuple[bytes, str, str] | None:
        """(manifest as pulled, its digest, `host/repo` it came from) of an image whose manifest is in
        the content store; of an index, the manifest of this image's config."""
        for rd in image.repo_digests:
            r = reference.parse(rd)
            if not r.digest or not self.content.has(r.digest):
                continue
            digest = r.digest
            doc = json.loads(self.content.path(digest).read_bytes())
            if "manifests" in doc:
                kids = [m["digest"] for m in doc["manifests"] if self.content.has(m.get("digest", ""))]
                kids = [k for k in kids if json.loads(self.content.path(k).read_bytes()).get("config", {})
                        .get("digest") == image.id]
                if not kids:
                    continue
                digest = kids[0]
                doc = json.loads(self.content.path(digest).read_bytes())
            if (doc.get("config") or {}).get("digest") == image.id:
                return self.content.path(digest).read_bytes(), digest, f"{r.domain}/{r.path}"
        return None

    # ------------------------------------------------------------ managed plugins (registry/plugins.py)

    async def plugin_config(self, remote: str, auth_header: str | None) -> bytes:
        from dockyard.registry import plugins

        creds = self.credentials(auth_header, reference.parse(remote).domain)
        return (await plugins.fetch_config(self.client, remote, creds, self.content))[0]

    def pull_plugin(self, remote: str, auth_header: str | None, out: dict[str, Any]) -> AsyncIterator[Event]:
        from dockyard.registry import plugins

        creds = self.credentials(auth_header, reference.parse(remote).domain)
        return plugins.pull(self.client, remote, creds, self.content, out)

    def push_plugin(self, remote: str, config: bytes, layers: builtins.list[tuple[str, int]],
                    auth_header: str | None) -> AsyncIterator[Event]:
        from dockyard.registry import plugins

        creds = self.credentials(auth_header, reference.parse(remote).domain)
        return plugins.push(self.client, remote, creds, self.content, config, layers)

    def _tags_of(self, ref: reference.Reference) -> list[str]:
        """`docker push --all-tags`: every local tag of the repository."""
        out = []
        for img in self.images.all():
            for t in img.repo_tags:
                r = reference.parse(t)
                if r.repository == ref.repository and r.tag:
                    out.append(r.tag)
        return sorted(out)

    def _config_bytes(self, image: StoredImage) -> bytes:
        """The config exactly as stored (its digest is the image id), else re-serialised."""
        if self.content.has(image.id):
            return self.content.path(image.id).read_bytes()
        return json.dumps(image.config, separators=(",", ":")).encode()

    async def _manifest(self, name: str, auth_header: str | None,
                        also: Callable[[Repository, str], Awaitable[Any]] | None = None,
                        ) -> tuple[Repository, bytes, str, str, Any]:
        """(repository, manifest, media type, digest, what `also(repository, digest)` read) from the first
        endpoint that answers: a mirror that fails falls through to the next, the last failure is raised."""
        ref = reference.parse(name)
        creds = self.credentials(auth_header, ref.domain)
        last: Exception | None = None
        for ep in self.client.endpoints(ref.domain):
            repo = self.client.repository(ep, ref.path, creds)
            try:
                data, media_type, digest = await repo.get_manifest(ref.digest or ref.tag or "latest")
                extra = await also(repo, digest) if also is not None else None
            except Exception as e:  # mirrors fall through to the next endpoint
                last = e
                continue
            return repo, data, media_type, digest, extra
        assert last is not None
        raise last

    async def inspect(self, name: str, auth_header: str | None) -> dict[str, Any]:
        """GET /distribution/{name}/json: the registry's descriptor and platforms."""
        repo, data, media_type, digest, _ = await self._manifest(name, auth_header)
        doc = json.loads(data)
        plats: list[dict[str, str]] = []
        if media_type in INDEX_TYPES:
            for m in doc.get("manifests") or []:
                p = m.get("platform") or {}
                if p.get("os") and p.get("architecture") != "unknown":
                    plats.append({k: p[k] for k in ("architecture", "os", "variant") if p.get(k)})
        else:
            await repo.fetch_blob(doc["config"]["digest"], doc["config"].get("size"), self.content)
            cfg = json.loads(self.content.path(doc["config"]["digest"]).read_bytes())
            p2 = platforms.Platform(cfg.get("os", ""), cfg.get("architecture", ""), cfg.get("variant", ""))
            plats.append({k: v for k, v in (("architecture", p2.architecture), ("os", p2.os),
                                            ("variant", p2.variant)) if v})
        return {"Descriptor": {"mediaType": media_type, "digest": digest, "size": len(data)},
                "Platforms": plats}

    async def referrers(self, name: str, artifact_type: str | None, auth_header: str | None) -> dict[str, Any]:
        """GET /distribution/{name}/referrers (Dockyard's, beside docker's /json): the subject's
        descriptor as the registry has it and the OCI 1.1 referrers (signatures, SBOMs) pointing at it."""

        async def referring(repo: Repository, digest: str) -> Any:
            return await repo.referrers(digest, artifact_type)

        _, data, media_type, digest, descs = await self._manifest(name, auth_header, referring)
        return {"Descriptor": {"mediaType": media_type, "digest": digest, "size": len(data)},
                "Referrers": descs}

    # ------------------------------------------------------------ signatures (cosign's format, oci/cosign.py)

    async def add_signature(self, name: str, payload: bytes, signature: str, auth_header: str | None) -> dict[str, Any]:
        """POST /distribution/{name}/signatures (Dockyard's): store a signature made by the client (the
        private key stays there) as cosign does: a layer of the manifest tagged sha256-<hex>.sig, kept
        with the signatures already there, and an OCI 1.1 referrer of the image."""
        _, data, media_type, digest, _ = await self._manifest(name, auth_header)
        try:
            signed = json.loads(payload)["critical"]["image"]["docker-manifest-digest"]
        except (ValueError, KeyError, TypeError):
            raise InvalidParameter("the payload is not a simple-signing payload") from None
        if signed != digest:
            raise InvalidParameter(f"the payload signs {signed}, but {name} is {digest}")
        ref = reference.parse(name)
        creds = self.credentials(auth_header, ref.domain)
        repo = self.client.repository(self.client.endpoints(ref.domain, push=True)[0], ref.path, creds, push=True)
        layer = cosign.layer(payload, signature)
        layers: list[dict[str, Any]] = []
        try:
            old, _, _ = await repo.get_manifest(cosign.sig_tag(digest))
            layers = [la for la in json.loads(old).get("layers") or [] if la != layer]
        except NotFound:
            pass
        layers.append(layer)
        await self._upload(repo, payload)
        config = cosign.config_blob([la["digest"] for la in layers])
        await self._upload(repo, config)
        man = {"schemaVersion": 2, "mediaType": cosign.OCI_MANIFEST,
               "config": {"mediaType": cosign.OCI_CONFIG, "size": len(config), "digest": sha256_digest(config)},
               "layers": layers}
        tagged = await repo.put_manifest(cosign.sig_tag(digest), json.dumps(man).encode(), cosign.OCI_MANIFEST)
        await self._upload(repo, b"{}")
        art = {"schemaVersion": 2, "mediaType": cosign.OCI_MANIFEST, "artifactType": cosign.ARTIFACT_TYPE,
               "config": {"mediaType": cosign.EMPTY, "size": 2, "digest": sha256_digest(b"{}")},
               "layers": [layer], "subject": {"mediaType": media_type, "digest": digest, "size": len(data)}}
        raw = json.dumps(art).encode()
        await repo.put_referrer(sha256_digest(raw), raw, cosign.OCI_MANIFEST, digest)
        return {"Digest": digest, "Tag": cosign.sig_tag(digest), "TagDigest": tagged, "Referrer": sha256_digest(raw)}

    async def _upload(self, repo: Repository, data: bytes) -> None:
        digest = sha256_digest(data)
        if await repo.has_blob(digest):
            return
        if not self.content.has(digest):
            self.content.write(data, digest)
        await repo.upload_blob(digest, self.content.path(digest), len(data))

    async def signatures(self, name: str, auth_header: str | None) -> dict[str, Any]:
        """GET /distribution/{name}/signatures (Dockyard's): the image's descriptor and the cosign
        signatures found for it (the sha256-<hex>.sig tag and cosign referrers), payloads in base64."""
        repo, data, media_type, digest, _ = await self._manifest(name, auth_header)
        sigs = await self._signatures(repo, digest)
        return {"Descriptor": {"mediaType": media_type, "digest": digest, "size": len(data)},
                "Signatures": [{"Payload": base64.b64encode(s.payload).decode(), "Signature": s.signature,
                                "Source": s.source} for s in sigs]}

    async def _signatures(self, repo: Repository, digest: str) -> builtins.list[cosign.Signature]:
        found: list[tuple[dict[str, Any], str]] = []
        try:
            raw, _, _ = await repo.get_manifest(cosign.sig_tag(digest))
            found.append((json.loads(raw), cosign.sig_tag(digest)))
        except NotFound:
            pass
        for desc in await repo.referrers(digest, cosign.ARTIFACT_TYPE):
            raw, _, d = await repo.get_manifest(desc["digest"])
            found.append((json.loads(raw), d))
        out: list[cosign.Signature] = []
        for man, source in found:
            blobs: dict[str, bytes] = {}
            for la in man.get("layers") or []:
                if la.get("mediaType") == cosign.PAYLOAD_TYPE and int(la.get("size") or 0) <= 1 << 20:
                    await repo.fetch_blob(la["digest"], la.get("size"), self.content)
                    blobs[la["digest"]] = self.content.path(la["digest"]).read_bytes()
            out += cosign.signatures_of(man, blobs, source)
        return out

    async def verify_image(self, image: StoredImage, public_pem: bytes) -> str:
        """`--verify-signatures`: the image must come from a registry (a RepoDigest) where a signature
        by the key over that digest is found; returns the digest verified, raises SignatureError."""
        if not image.repo_digests:
            raise cosign.SignatureError("it has no registry digest (it was built or loaded here), so no signature")
        why = ""
        for rd in image.repo_digests:
            r = reference.parse(rd)
            if not r.digest:
                continue
            try:
                repo, _, _, digest, _ = await self._manifest(rd, None)
                cosign.verify(await self._signatures(repo, digest), digest, public_pem)
                return digest
            except cosign.SignatureError as e:
                why = f"{rd}: {e}"
            except Exception as e:  # the registry cannot be asked: not verified
                why = f"{rd}: {e}"
        raise cosign.SignatureError(why or "no registry digest")

    async def search(self, term: str, limit: int, filters: dict[str, builtins.list[str]]) -> builtins.list[dict[str, Any]]:
        """GET /images/search: the registry's v1 search, as dockerd asks it; a registry without one (ours,
        most v2 registries) is asked for its catalog instead, its repositories matched by the term."""
        first, _, rest = term.partition("/")
        if rest and ("." in first or ":" in first or first == "localhost"):
            domain, query = first, rest
        else:
            domain, query = "docker.io", term
        ep = self.client.endpoints(domain)[-1]  # the registry itself, not a mirror
        base = await self.client.base_url(ep)
        http = self.client.http(ep.insecure)
        resp = await http.get(base + "/v1/search", params={"q": query, "n": limit})
        results: builtins.list[dict[str, Any]] = []
        if resp.status_code == 200:
            for r in resp.json().get("results") or []:
                results.append({"name": r.get("name", ""), "description": r.get("description") or "",
                                "star_count": int(r.get("star_count") or 0),
                                "is_official": bool(r.get("is_official")), "is_automated": bool(r.get("is_automated"))})
        else:
            resp = await http.get(base + "/v2/_catalog", params={"n": 1000})
            if resp.status_code >= 400:
                raise InvalidParameter(f'Get "{base}/v1/search": unexpected status {resp.status_code}')
            for repo in resp.json().get("repositories") or []:
                if query.lower() in repo.lower():
                    results.append({"name": repo if domain == "docker.io" else f"{domain}/{repo}", "description": "",
                                    "star_count": 0, "is_official": False, "is_automated": False})
        stars = max((int(v) for v in filters.get("stars", []) if v.isdigit()), default=0)
        for key in ("is-official", "is-automated"):
            for v in filters.get(key, []):
                want = v.lower() == "true"
                results = [r for r in results if r[key.replace("-", "_")] == want]
        return [r for r in results if r["star_count"] >= stars][:limit]

    async def login(self, body: dict[str, Any]) -> dict[str, Any]:
        """POST /auth: check the credentials against the registry's /v2/ (Basic or token flow)."""
        server = (body.get("serveraddress") or "").strip() or "docker.io"
        domain = server.split("://", 1)[-1].split("/", 1)[0]
        if domain in ("index.docker.io", "registry-1.docker.io"):
            domain = "docker.io"
        creds = Credentials(body.get("username") or "", body.get("password") or "",
                            body.get("identitytoken") or "")
        if not creds:
            raise InvalidParameter("username is empty")
        ep = self.client.endpoints(domain, push=True)[0]
        base = await self.client.base_url(ep)
        auth = RegistryAuth(creds, "")
        resp = await self.client.http(ep.insecure).get(base + "/v2/", auth=auth)
        if resp.status_code == 401:
            raise Unauthorized(f'Get "{base}/v2/": unauthorized: incorrect username or password')
        if resp.status_code >= 400:
            raise InvalidParameter(f'Get "{base}/v2/": unexpected status {resp.status_code}')
        return {"Status": "Login Succeeded", "IdentityToken": ""}

