"""Image signatures in cosign's format on the wire (key-based, no transparency log).

A signature is an ECDSA P-256 / SHA-256 signature (ASN.1 DER, base64) over a "simple signing"
payload naming the image's manifest digest; it travels as a layer of an OCI manifest, the payload
being the layer's blob and the signature its `dev.cosignproject.cosign/signature` annotation. That
manifest is tagged `sha256-<hex>.sig` in the image's repository (cosign's classic place) and also
pushed as an OCI 1.1 referrer of the image (artifactType `application/vnd.dev.cosign.artifact.sig.v1+json`).
Keys are PEM: the public key PKIX `PUBLIC KEY` (as cosign.pub), the private key PKCS#8.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass
from typing import Any

PAYLOAD_TYPE = "application/vnd.dev.cosign.simplesigning.v1+json"
SIGNATURE_ANNOTATION = "dev.cosignproject.cosign/signature"
ARTIFACT_TYPE = "application/vnd.dev.cosign.artifact.sig.v1+json"
SIGNATURE_TYPE = "cosign container image signature"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
EMPTY = "application/vnd.oci.empty.v1+json"


class SignatureError(Exception):
    """A signature that does not verify, or a key that cannot be used."""


def _sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def sig_tag(digest: str) -> str:
    """`sha256:abc` -> `sha256-abc.sig`, cosign's tag for an image's signatures."""
    return digest.replace(":", "-", 1) + ".sig"


def payload(docker_reference: str, digest: str) -> bytes:
    """The simple-signing payload cosign signs (same keys, same order)."""
    doc = {"critical": {"identity": {"docker-reference": docker_reference},
                        "image": {"docker-manifest-digest": digest}, "type": SIGNATURE_TYPE},
           "optional": None}
    return json.dumps(doc, separators=(",", ":")).encode()


def keygen() -> tuple[bytes, bytes]:
    """(private key PEM (PKCS#8, unencrypted), public key PEM): ECDSA P-256, as cosign's."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    priv = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())
    pub = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return priv, pub


def sign(data: bytes, private_pem: bytes, password: bytes | None = None) -> str:
    """Base64 of the DER ECDSA-SHA256 signature of `data`."""
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    try:
        key = serialization.load_pem_private_key(private_pem, password)
    except (ValueError, TypeError) as e:
        raise SignatureError(f"cannot read the private key: {e}") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise SignatureError("the private key is not an ECDSA key")
    return base64.b64encode(key.sign(data, ec.ECDSA(hashes.SHA256()))).decode()


def verify_signature(data: bytes, signature_b64: str, public_pem: bytes) -> None:
    """Raises SignatureError unless `signature_b64` is the key's signature of `data`."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    try:
        key = serialization.load_pem_public_key(public_pem)
    except ValueError as e:
        raise SignatureError(f"cannot read the public key: {e}") from None
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise SignatureError("the public key is not an ECDSA key")
    try:
        key.verify(base64.b64decode(signature_b64, validate=True), data, ec.ECDSA(hashes.SHA256()))
    except (InvalidSignature, ValueError):
        raise SignatureError("invalid signature when validating ASN.1 encoded signature") from None


@dataclass
class Signature:
    payload: bytes
    signature: str  # base64
    source: str  # where it was found: the .sig tag or a referrer digest


def verify(sigs: list[Signature], digest: str, public_pem: bytes) -> list[dict[str, Any]]:
    """The payloads (parsed) of the signatures that the key made over a payload naming `digest`;
    raises SignatureError saying why when none does."""
    good: list[dict[str, Any]] = []
    bad_sig, why = "no signatures found", ""  # a key's signature over the wrong claims says more
    for s in sigs:
        try:
            verify_signature(s.payload, s.signature, public_pem)
        except SignatureError as e:
            bad_sig = str(e)
            continue
        try:
            doc = json.loads(s.payload)
            crit = doc["critical"]
            got, kind = crit["image"]["docker-manifest-digest"], crit["type"]
        except (ValueError, KeyError, TypeError):
            why = "the signed payload is not a simple-signing payload"
            continue
        if kind != SIGNATURE_TYPE:
            why = f"the signed payload's type is {kind!r}"
        elif got != digest:
            why = f"the signature is for {got}, not {digest}"
        else:
            good.append(doc)
    if not good:
        raise SignatureError(why or bad_sig)
    return good


def config_blob(payload_digests: list[str]) -> bytes:
    """The image config cosign puts in its signature manifests."""
    doc = {"architecture": "", "created": "0001-01-01T00:00:00Z", "history": [{"created": "0001-01-01T00:00:00Z"}],
           "os": "", "rootfs": {"type": "layers", "diff_ids": payload_digests}, "config": {}}
    return json.dumps(doc, separators=(",", ":")).encode()


def layer(data: bytes, signature_b64: str) -> dict[str, Any]:
    return {"mediaType": PAYLOAD_TYPE, "size": len(data), "digest": _sha(data),
            "annotations": {SIGNATURE_ANNOTATION: signature_b64}}


def signatures_of(manifest: dict[str, Any], blobs: dict[str, bytes], source: str) -> list[Signature]:
    """The signatures a cosign manifest carries (`blobs`: the payloads by digest)."""
    out = []
    for la in manifest.get("layers") or []:
        sig = (la.get("annotations") or {}).get(SIGNATURE_ANNOTATION)
        if la.get("mediaType") == PAYLOAD_TYPE and sig and la.get("digest") in blobs:
            out.append(Signature(blobs[la["digest"]], sig, source))
    return out
