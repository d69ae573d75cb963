"""Image archives: read docker-archive / OCI-layout tars (`docker load`), write them (`docker save`).

Reading works on an uncompressed tar file on disk by random access: members are never extracted
to the filesystem, so names in an evil archive cannot touch anything (symlinks between members,
as legacy `docker save` writes for shared layers, are resolved inside the archive's name space).
Writing produces the tar on the fly: headers and blob bytes chunk by chunk, nothing buffered whole.
"""

from __future__ import annotations

import io
import json
import os
import posixpath
import tarfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import IO, Any

from dockyard.errors import InvalidParameter
from dockyard.oci import reference
from dockyard.oci.digest import hex_of, is_digest, sha256_digest

MT_OCI_INDEX = "application/vnd.oci.image.index.v1+json"
MT_OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
MT_DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
MT_DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
MT_LAYER_TAR = "application/vnd.oci.image.layer.v1.tar"
MT_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
MT_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
_INDEX_TYPES = {MT_OCI_INDEX, MT_DOCKER_LIST}
_MAX_JSON = 16 << 20

Opener = Callable[[], IO[bytes]]


@dataclass
class ArchiveImage:
    config: bytes
    layers: list[tuple[Opener, str | None]]  # (open the blob, its digest when the archive states it)
    tags: list[str] = field(default_factory=list)  # normalized references
    manifest: bytes = b""  # an OCI layout's manifest of the image, as in the archive
    # OCI 1.1 referrers of that manifest in the layout (and theirs): (digest, manifest, its blobs' openers)
    referrers: list[Referrer] = field(default_factory=list)


@dataclass
class Referrer:
    digest: str
    manifest: bytes
    blobs: list[tuple[str, int, Opener]]  # (digest, size, open)


def _untar_error(e: BaseException) -> InvalidParameter:
    """dockerd's words (its untar helper's exit and Go's archive/tar error)."""
    why = "unexpected EOF" if any(w in str(e) for w in ("truncated", "empty", "EOF", "end of")) \
        else "archive/tar: invalid tar header"
    return InvalidParameter(f"Error processing tar file(exit status 1): {why}")


class _Window(io.RawIOBase):
    """One member's bytes through a file descriptor of its own, so that several threads can read
    layers of one archive at once (a TarFile's extractfile shares the TarFile's file position)."""

    def __init__(self, path: str, offset: int, size: int) -> None:
        self._fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        self._pos, self._end = offset, offset + size

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        n = min(len(b), self._end - self._pos)
        if n <= 0:
            return 0
        got = os.preadv(self._fd, [memoryview(b)[:n]], self._pos)
        if got == 0:
            raise tarfile.ReadError("unexpected end of data")
        self._pos += got
        return got

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        super().close()


class MemberOpener:
    """Opens one member of an archive (an Opener); `span` is (archive path, offset, size) of its bytes
    when they lie in one piece (not sparse), for a copy by the kernel instead of through reads."""

    def __init__(self, reader: ArchiveReader, name: str) -> None:
        self._reader, self._name = reader, name
        m = reader._member(name)  # fails early on a missing blob
        self.span = None if m.issparse() else (reader._path, m.offset_data, m.size)

    def __call__(self) -> IO[bytes]:
        return self._reader.open(self._name)


class ArchiveReader:
    """Index of an uncompressed image tar on disk."""

    def __init__(self, path: str) -> None:
        self._path = path
        try:
            self._tf = tarfile.open(path, "r:")
        except tarfile.TarError as e:
            raise _untar_error(e) from e
        self._members: dict[str, tarfile.TarInfo] = {}
        try:
            members = self._tf.getmembers()  # a truncated archive fails here
        except (tarfile.TarError, EOFError) as e:
            self._tf.close()
            raise _untar_error(e) from e
        for m in members:
            name = posixpath.normpath("/" + m.name).lstrip("/")
            self._members[name] = m

    def close(self) -> None:
        self._tf.close()

    def _member(self, name: str) -> tarfile.TarInfo:
        cur = posixpath.normpath("/" + name).lstrip("/")
        for _ in range(16):
            m = self._members.get(cur)
            if m is None:
                raise InvalidParameter(f"invalid archive: missing file {name!r}")
            if m.issym():
                cur = posixpath.normpath("/" + posixpath.join(posixpath.dirname(cur), m.linkname)).lstrip("/")
                continue
            if m.islnk():
                cur = posixpath.normpath("/" + m.linkname).lstrip("/")
                continue
            if not m.isreg():
                raise InvalidParameter(f"invalid archive: {name!r} is not a regular file")
            return m
        raise InvalidParameter(f"invalid archive: too many links at {name!r}")

    def has(self, name: str) -> bool:
        return posixpath.normpath("/" + name).lstrip("/") in self._members

    def open(self, name: str) -> IO[bytes]:
        m = self._member(name)
        if not m.issparse():  # safe to call from several threads at once
            return io.BufferedReader(_Window(self._path, m.offset_data, m.size), 1 << 20)
        f = self._tf.extractfile(m)
        assert f is not None
        return f

    def opener(self, name: str) -> MemberOpener:
        return MemberOpener(self, name)

    def read_json(self, name: str) -> Any:
        m = self._member(name)
        if m.size > _MAX_JSON:
            raise InvalidParameter(f"invalid archive: {name!r} too large")
        try:
            return json.loads(self.open(name).read())
        except ValueError as e:
            raise InvalidParameter(f"invalid archive: {name!r}: {e}") from e

    def read_blob(self, digest: str) -> bytes:
        name = "blobs/sha256/" + hex_of(digest)
        m = self._member(name)
        if m.size > _MAX_JSON:
            raise InvalidParameter(f"invalid archive: {name!r} too large")
        data = self.open(name).read()
        if sha256_digest(data) != digest:
            raise InvalidParameter(f"invalid archive: digest mismatch for {digest}")
        return data

    def images(self, arch: str = "amd64") -> list[ArchiveImage]:
        if self.has("manifest.json"):
            imgs = self._docker_images()
            if self.has("index.json"):  # ours and docker 25+'s: referrers live in the OCI side
                self._attach_referrers(imgs)
            return imgs
        if self.has("index.json"):
            return self._oci_images(arch)
        raise InvalidParameter("invalid archive: no manifest.json or index.json (not a docker-archive or OCI layout)")

    def _docker_images(self) -> list[ArchiveImage]:
        manifest = self.read_json("manifest.json")
        if not isinstance(manifest, list):
            raise InvalidParameter("invalid archive: manifest.json is not a list")
        out = []
        for entry in manifest:
            if not isinstance(entry, dict) or not isinstance(entry.get("Config"), str):
                raise InvalidParameter("invalid archive: bad manifest.json entry")
            config = self.open(entry["Config"]).read(_MAX_JSON)
            layers: list[tuple[Opener, str | None]] = []
            for name in entry.get("Layers") or []:
                if not isinstance(name, str):
                    raise InvalidParameter("invalid archive: bad layer name")
                stated = "sha256:" + name.split("/")[-1] if name.startswith("blobs/sha256/") else None
                layers.append((self.opener(name), stated if stated and is_digest(stated) else None))
            tags = [str(reference.parse(t)) for t in entry.get("RepoTags") or []]
            out.append(ArchiveImage(config, layers, tags))
        return out

    def _oci_images(self, arch: str) -> list[ArchiveImage]:
        index = _obj(self.read_json("index.json"), "index.json")
        out = []
        artifacts: dict[str, list[tuple[str, bytes, dict[str, Any]]]] = {}  # subject -> referrers
        descs = []
        for desc in _list(index.get("manifests"), "index.json manifests"):
            doc = self._artifact(_obj(desc, "descriptor"))
            if doc is None:
                descs.append(desc)
                continue
            raw, parsed = doc
            artifacts.setdefault(str(parsed["subject"].get("digest")), []).append((_digest(desc), raw, parsed))
        for desc in descs:
            img = self._oci_descriptor(desc, arch, depth=0)
            if img is None:
                continue
            ann = desc.get("annotations") or {}
            name = ann.get("io.containerd.image.name") or ann.get("org.opencontainers.image.ref.name") or ""
            if name and ("/" in name or ":" in name):  # a bare "latest" names no repository
                try:
                    img.tags.append(str(reference.parse(name)))
                except InvalidParameter:
                    pass
            if img.manifest:
                img.referrers = self._referrers_of(sha256_digest(img.manifest), artifacts, 0)
            out.append(img)
        return out

    def _attach_referrers(self, imgs: list[ArchiveImage]) -> None:
        try:
            index = _obj(self.read_json("index.json"), "index.json")
            artifacts: dict[str, list[tuple[str, bytes, dict[str, Any]]]] = {}
            mans = []
            for desc in _list(index.get("manifests"), "index.json manifests"):
                if (doc := self._artifact(_obj(desc, "descriptor"))) is not None:
                    artifacts.setdefault(str(doc[1]["subject"].get("digest")), []).append((_digest(desc), *doc))
                elif desc.get("mediaType") == MT_OCI_MANIFEST:
                    mans.append(self.read_blob(_digest(desc)))
            if not artifacts:
                return
            by_config = {sha256_digest(i.config): i for i in imgs}
            for raw in mans:
                img = by_config.get(str((json.loads(raw).get("config") or {}).get("digest")))
                if img is not None and not img.referrers:
                    img.manifest = raw
                    img.referrers = self._referrers_of(sha256_digest(raw), artifacts, 0)
        except (InvalidParameter, ValueError, AttributeError):
            return  # a docker-archive's index.json is optional: the images load without referrers

    def _artifact(self, desc: dict[str, Any]) -> tuple[bytes, dict[str, Any]] | None:
        """A manifest with a `subject` (signature, SBOM) listed in index.json: not an image to load."""
        if desc.get("mediaType") not in (MT_OCI_MANIFEST, None) or int(desc.get("size") or 0) > _MAX_JSON:
            return None
        raw = self.read_blob(_digest(desc))
        try:
            doc = json.loads(raw)
        except ValueError:
            return None
        if isinstance(doc, dict) and isinstance(doc.get("subject"), dict):
            return raw, doc
        return None

    def _referrers_of(self, subject: str, artifacts: dict[str, list[tuple[str, bytes, dict[str, Any]]]],
                      depth: int) -> list[Referrer]:
        out: list[Referrer] = []
        if depth > 3:
            return out
        for digest, raw, doc in artifacts.get(subject, []):
            blobs: list[tuple[str, int, Opener]] = []
            for d in [doc.get("config"), *(doc.get("layers") or [])]:
                if isinstance(d, dict) and d.get("digest"):
                    name = "blobs/sha256/" + hex_of(_digest(d))
                    if self.has(name):
                        blobs.append((str(d["digest"]), self._member(name).size, self.opener(name)))
            out.append(Referrer(digest, raw, blobs))
            out += self._referrers_of(digest, artifacts, depth + 1)
        return out

    def _oci_descriptor(self, desc: dict[str, Any], arch: str, depth: int) -> ArchiveImage | None:
        if depth > 4:
            raise InvalidParameter("invalid archive: index nesting too deep")
        desc = _obj(desc, "descriptor")
        try:
            doc = _obj(json.loads(self.read_blob(_digest(desc))), f"blob {desc['digest']}")
        except ValueError as e:
            raise InvalidParameter(f"invalid archive: blob {desc['digest']}: {e}") from e
        mt = desc.get("mediaType") or doc.get("mediaType")
        if mt in _INDEX_TYPES or "manifests" in doc:
            chosen = None
            for d in _list(doc.get("manifests"), "index manifests"):
                p = _obj(_obj(d, "descriptor").get("platform") or {}, "platform")
                if p.get("os", "linux") == "linux" and p.get("architecture", arch) == arch:
                    chosen = d
                    break
            if chosen is None:
                return None
            return self._oci_descriptor(chosen, arch, depth + 1)
        config = self.read_blob(_digest(_obj(doc.get("config"), "manifest config")))
        layers: list[tuple[Opener, str | None]] = []
        for layer in _list(doc.get("layers"), "manifest layers"):
            digest = _digest(_obj(layer, "layer descriptor"))
            layers.append((self.opener("blobs/sha256/" + hex_of(digest)), digest))
        return ArchiveImage(config, layers, manifest=self.read_blob(_digest(desc)))


def _obj(v: Any, what: str) -> dict[str, Any]:
    """`v` when it is a JSON object; the archive is refused otherwise."""
    if not isinstance(v, dict):
        raise InvalidParameter(f"invalid archive: {what} is not a JSON object")
    return v


def _list(v: Any, what: str) -> list[Any]:
    if v is None:
        return []
    if not isinstance(v, list):
        raise InvalidParameter(f"invalid archive: {what} is not a list")
    return v


def _digest(desc: dict[str, Any]) -> str:
    d = desc.get("digest")
    if not isinstance(d, str) or not is_digest(d):
        raise InvalidParameter(f"invalid archive: bad digest {d!r} in a descriptor")
    return d


# ---------------------------------------------------------------------------- writing


@dataclass
class SaveImage:
    config: bytes
    config_digest: str
    layers: list[tuple[str, str, int, Opener]]  # (blob digest, media type, size, open)
    tags: list[str]  # normalized references
    manifest: bytes = b""  # the manifest as loaded, written as is when it has referrers (their subject)
    referrers: list[Referrer] = field(default_factory=list)


def _header(name: str, size: int, dir_: bool = False) -> bytes:
    ti = tarfile.TarInfo(name)
    ti.size = 0 if dir_ else size
    ti.type = tarfile.DIRTYPE if dir_ else tarfile.REGTYPE
    ti.mode = 0o755 if dir_ else 0o644
    ti.mtime = 0
    return ti.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")


def _pad(size: int) -> bytes:
    return b"\0" * (-size % tarfile.BLOCKSIZE)


def _file(name: str, data: bytes) -> Iterator[bytes]:
    yield _header(name, len(data)) + data + _pad(len(data))


def _stream(name: str, size: int, opener: Opener, chunk: int = 1 << 20) -> Iterator[bytes]:
    yield _header(name, size)
    n = 0
    with opener() as f:
        while n < size:
            data = f.read(min(chunk, size - n))
            if not data:
                raise InvalidParameter(f"blob for {name} is shorter than recorded")
            n += len(data)
            yield data
    yield _pad(size)


def write_archive(images: list[SaveImage]) -> Iterator[bytes]:
    """A docker-archive that is also an OCI layout (as docker 25+ writes): manifest.json for
    `docker load` of any dockerd version, index.json + oci-layout for OCI tools."""
    yield _header("blobs/", 0, True)
    yield _header("blobs/sha256/", 0, True)
    written: set[str] = set()
    index_manifests: list[dict[str, Any]] = []
    docker_manifest: list[dict[str, Any]] = []
    for img in images:
        if img.config_digest not in written:
            written.add(img.config_digest)
            yield from _file("blobs/sha256/" + hex_of(img.config_digest), img.config)
        for digest, _mt, size, opener in img.layers:
            if digest not in written:
                written.add(digest)
                yield from _stream("blobs/sha256/" + hex_of(digest), size, opener)
        manifest = {
            "schemaVersion": 2,
            "mediaType": MT_OCI_MANIFEST,
            "config": {"mediaType": MT_OCI_CONFIG, "digest": img.config_digest, "size": len(img.config)},
            "layers": [{"mediaType": mt, "digest": d, "size": s} for d, mt, s, _ in img.layers],
        }
        mbytes = img.manifest or json.dumps(manifest, separators=(",", ":")).encode()
        mdigest = sha256_digest(mbytes)
        if mdigest not in written:
            written.add(mdigest)
            yield from _file("blobs/sha256/" + hex_of(mdigest), mbytes)
        desc = {"mediaType": MT_OCI_MANIFEST, "digest": mdigest, "size": len(mbytes)}
        refs = [reference.parse(t) for t in img.tags]
        if not refs:
            index_manifests.append(desc)
        for r in refs:
            ann = {"io.containerd.image.name": str(r), "org.opencontainers.image.ref.name": r.tag or ""}
            index_manifests.append({**desc, "annotations": ann})
        for ref in img.referrers:  # listed in index.json, as skopeo and oras write them
            for digest, size, opener in ref.blobs:
                if digest not in written:
                    written.add(digest)
                    yield from _stream("blobs/sha256/" + hex_of(digest), size, opener)
            if ref.digest not in written:
                written.add(ref.digest)
                yield from _file("blobs/sha256/" + hex_of(ref.digest), ref.manifest)
                rdoc = json.loads(ref.manifest)
                rdesc: dict[str, Any] = {"mediaType": rdoc.get("mediaType") or MT_OCI_MANIFEST, "digest": ref.digest,
                                         "size": len(ref.manifest)}
                kind = rdoc.get("artifactType") or (rdoc.get("config") or {}).get("mediaType")
                if kind:
                    rdesc["artifactType"] = kind
                index_manifests.append(rdesc)
        docker_manifest.append({
            "Config": "blobs/sha256/" + hex_of(img.config_digest),
            "RepoTags": [r.familiar for r in refs] or None,
            "Layers": ["blobs/sha256/" + hex_of(d) for d, _, _, _ in img.layers],
        })
    index = {"schemaVersion": 2, "mediaType": MT_OCI_INDEX, "manifests": index_manifests}
    yield from _file("index.json", json.dumps(index).encode())
    yield from _file("manifest.json", json.dumps(docker_manifest).encode())
    yield from _file("oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
    yield b"\0" * (tarfile.BLOCKSIZE * 2)
