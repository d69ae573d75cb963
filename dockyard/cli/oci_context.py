"""`--build-context NAME=oci-layout:///PATH[:TAG][@sha256:DIGEST]`: an image from an OCI image layout on
the client, as buildx reads one (the digest, else the manifest whose ref name annotation is TAG,
"latest" by default, else the index's only manifest). buildx hands BuildKit the layout as a content
store over its session; here the chosen image (its manifests, config and layers only, no name) is
loaded into the daemon's store over the API (`POST /images/load`) and used as `docker-image://ID`,
so a remote daemon gets it too; after the build it is removed again unless the daemon had it before or
the build's images stand on it."""

from __future__ import annotations

import io
import json
import tarfile
import tempfile
from pathlib import Path
from typing import Any

from dockyard.cli.common import CLIError

PREFIX = "oci-layout://"
_REF_NAME = "org.opencontainers.image.ref.name"
_MANIFEST_TYPES = ("application/vnd.oci.image.index.v1+json", "application/vnd.docker.distribution.manifest.list.v2+json",
                   "application/vnd.oci.image.manifest.v1+json", "application/vnd.docker.distribution.manifest.v2+json")


def parse(value: str) -> tuple[Path, str, str]:
    """(layout dir, tag, digest or "") of an oci-layout:// value; as buildx, the path ends at its first ':'."""
    rest = value.removeprefix(PREFIX)
    rest, _, digest = rest.partition("@")
    path, has_tag, tag = rest.partition(":")
    return Path(path), tag if has_tag else "latest", digest


def _blob(layout: Path, digest: str) -> Path:
    algo, _, hexpart = digest.partition(":")
    if algo != "sha256" or len(hexpart) != 64 or not all(c in "0123456789abcdef" for c in hexpart):
        raise CLIError(f"invalid digest {digest}")
    return layout / "blobs" / "sha256" / hexpart


def resolve(layout: Path, tag: str, digest: str) -> dict[str, Any]:
    """The descriptor the value names in the layout's index.json."""
    try:
        index = json.loads((layout / "index.json").read_text())
        manifests = [m for m in index.get("manifests") or [] if isinstance(m, dict)]
    except (OSError, ValueError, AttributeError) as e:
        raise CLIError(f"invalid store at {layout}: {e}") from None
    if digest:
        for m in manifests:
            if m.get("digest") == digest:
                return m
        path = _blob(layout, digest)
        try:
            media_type = json.loads(path.read_bytes()).get("mediaType") or _MANIFEST_TYPES[2]
        except (OSError, ValueError, AttributeError):
            raise CLIError(f"{digest}: not found in {layout}") from None
        return {"mediaType": media_type, "digest": digest, "size": path.stat().st_size}
    named = [m for m in manifests if (m.get("annotations") or {}).get(_REF_NAME) == tag]
    if named:
        return named[0]
    if len(manifests) == 1:
        return manifests[0]
    raise CLIError("failed to resolve digest")


def _reachable(layout: Path, desc: dict[str, Any], out: list[str], depth: int = 0) -> None:
    """The digests of the blobs under `desc` that the layout holds (an index may list platforms it lacks)."""
    digest = str(desc.get("digest"))
    if depth > 5 or digest in out or not _blob(layout, digest).is_file():
        return
    out.append(digest)
    if desc.get("mediaType") not in _MANIFEST_TYPES:
        return
    try:
        doc = json.loads(_blob(layout, digest).read_bytes())
    except ValueError:
        return
    if isinstance(doc, dict):
        for child in [*(doc.get("manifests") or []), doc.get("config"), *(doc.get("layers") or [])]:
            if isinstance(child, dict):
                _reachable(layout, child, out, depth + 1)


def load(client: Any, value: str) -> tuple[str, bool]:
    """Load the layout's chosen image into the daemon: (its image id, whether the daemon had it before)."""
    layout, tag, digest = parse(value)
    if not (layout / "index.json").is_file():
        raise CLIError(f"invalid store at {layout}: no index.json")
    desc = {k: v for k, v in resolve(layout, tag, digest).items() if k != "annotations"}  # no name: no tag
    blobs: list[str] = []
    _reachable(layout, desc, blobs)
    with tempfile.TemporaryFile(prefix="dockyard-oci-context-") as tmp:
        with tarfile.open(fileobj=tmp, mode="w") as tf:
            for name, data in (("oci-layout", b'{"imageLayoutVersion":"1.0.0"}'),
                               ("index.json", json.dumps({"schemaVersion": 2, "manifests": [desc]}).encode())):
                ti = tarfile.TarInfo(name)
                ti.size = len(data)
                tf.addfile(ti, io.BytesIO(data))
            for d in blobs:
                tf.add(str(_blob(layout, d)), arcname=f"blobs/sha256/{d.split(':', 1)[1]}")
        tmp.seek(0)
        had = {str(i.get("Id")) for i in client.images(all=True)}
        image_id = ""
        with client.load(iter(lambda: tmp.read(1 << 20), b"")) as s:
            for ev in s.json():
                if ev.get("error"):
                    raise CLIError(f"failed to load {value}: {ev['error']}")
                text = str(ev.get("stream", ""))
                if text.startswith("Loaded image ID: "):
                    image_id = text.removeprefix("Loaded image ID: ").strip()
    if not image_id:
        raise CLIError(f"failed to load {value}: no image in it")
    return image_id, image_id in had


def unload(client: Any, image_id: str) -> None:
    """After the build: the loaded image goes again unless the build's images stand on it (then it is
    their parent, hidden from `images` as intermediate images are), as BuildKit keeps no image of it."""
    from dockyard.client import APIError

    try:
        client.remove_image(image_id)
    except APIError:
        pass  # a conflict: a step image of this build has it as parent
