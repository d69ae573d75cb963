"""OCI 1.1 referrers: the descriptor a manifest with a `subject` gets in its subject's referrers index.

The index itself is answered by `GET /v2/<name>/referrers/<digest>` (see server.Registry.get_referrers);
the descriptors are kept under the repository by storage.RegistryStorage at PUT time.
"""

from __future__ import annotations

from typing import Any

from dockyard.registry.server.storage import StorageError, check_digest

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
EMPTY_CONFIG = "application/vnd.oci.empty.v1+json"
INDEX_TYPES = {"application/vnd.docker.distribution.manifest.list.v2+json", OCI_INDEX}


def subject_of(doc: dict[str, Any]) -> str | None:
    """The subject digest of a manifest or index, None without one; a malformed subject is refused."""
    subject = doc.get("subject")
    if subject is None:
        return None
    if not isinstance(subject, dict) or not isinstance(subject.get("digest"), str):
        raise StorageError("MANIFEST_INVALID", "manifest invalid", 400, "subject must be a descriptor")
    try:
        return check_digest(subject["digest"])
    except StorageError:
        raise StorageError("MANIFEST_INVALID", "manifest invalid", 400,
                           {"subject": subject["digest"]}) from None


def descriptor(doc: dict[str, Any], media_type: str, digest: str, size: int) -> dict[str, Any]:
    """The spec's rule: artifactType if set, else (image manifests only) the config's media type."""
    desc: dict[str, Any] = {"mediaType": media_type, "digest": digest, "size": size}
    art = doc.get("artifactType")
    if not art and media_type not in INDEX_TYPES and isinstance(doc.get("config"), dict):
        art = doc["config"].get("mediaType")
    if art:
        desc["artifactType"] = art
    if doc.get("annotations"):
        desc["annotations"] = doc["annotations"]
    return desc


def index(descs: list[dict[str, Any]]) -> dict[str, Any]:
    return {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": descs}
