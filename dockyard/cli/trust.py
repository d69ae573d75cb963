"""`trust keygen/sign/verify`: image signatures in cosign's format (oci/cosign.py). The private key
stays in this process: the daemon is sent the payload and its signature to store in the registry."""

from __future__ import annotations

import argparse
import base64
import json
import os
import sys
from pathlib import Path

from dockyard.cli.common import CLIError, Command, Ctx
from dockyard.oci import cosign, reference


def _read(path: str, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as e:
        raise CLIError(f"reading {what} {path}: {e.strerror}") from None


def _password(env: str) -> bytes | None:
    pw = os.environ.get(env)
    return pw.encode() if pw else None


def cmd_keygen(ctx: Ctx, args: argparse.Namespace) -> int:
    priv, pub = cosign.keygen()
    key, pubfile = Path(f"{args.output_key_prefix}.key"), Path(f"{args.output_key_prefix}.pub")
    for f in (key, pubfile):
        if f.exists() and not args.force:
            raise CLIError(f"{f} already exists (--force to overwrite)")
    fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as w:
        w.write(priv)
    pubfile.write_bytes(pub)
    print(f"Private key written to {key}")
    print(f"Public key written to {pubfile}")
    return 0


def setup_keygen(p: argparse.ArgumentParser) -> None:
    p.add_argument("--output-key-prefix", default="cosign", help="Write PREFIX.key and PREFIX.pub (default cosign)")
    p.add_argument("-f", "--force", action="store_true", help="Overwrite existing key files")


def _docker_reference(image: str) -> str:
    ref = reference.parse(image)
    return f"{ref.domain}/{ref.path}" if ref.domain != "docker.io" else f"index.docker.io/{ref.path}"


def cmd_sign(ctx: Ctx, args: argparse.Namespace) -> int:
    from dockyard.cli.run import registry_auth

    key = _read(args.key, "the private key")
    auth = registry_auth(args.image)
    digest = str(ctx.client.signatures(args.image, auth=auth)["Descriptor"]["digest"])
    payload = cosign.payload(_docker_reference(args.image), digest)
    try:
        sig = cosign.sign(payload, key, _password("COSIGN_PASSWORD"))
    except cosign.SignatureError as e:
        raise CLIError(str(e)) from None
    res = ctx.client.add_signature(args.image, payload, sig, auth=auth)
    ref = reference.parse(args.image)
    print(f"Pushing signature to: {ref.domain}/{ref.path}:{res['Tag']}")
    return 0


def setup_sign(p: argparse.ArgumentParser) -> None:
    p.add_argument("--key", required=True, help="The private key (PEM, PKCS#8; COSIGN_PASSWORD if encrypted)")
    p.add_argument("image")


def cmd_verify(ctx: Ctx, args: argparse.Namespace) -> int:
    from dockyard.cli.run import registry_auth

    pub = _read(args.key, "the public key")
    res = ctx.client.signatures(args.image, auth=registry_auth(args.image))
    digest = str(res["Descriptor"]["digest"])
    sigs = [cosign.Signature(base64.b64decode(s["Payload"]), s["Signature"], s.get("Source", ""))
            for s in res.get("Signatures") or []]
    try:
        good = cosign.verify(sigs, digest, pub)
    except cosign.SignatureError as e:
        print(f"Error: no matching signatures: {e}", file=sys.stderr)
        return 1
    print(f"\nVerification for {args.image} --", file=sys.stderr)
    print("The following checks were performed on each of these signatures:", file=sys.stderr)
    print("  - The cosign claims were validated", file=sys.stderr)
    print("  - The signatures were verified against the specified public key", file=sys.stderr)
    print(json.dumps(good))
    return 0


def setup_verify(p: argparse.ArgumentParser) -> None:
    p.add_argument("--key", required=True, help="The public key (PEM)")
    p.add_argument("image")


TRUST = "trust"
COMMANDS = [
    Command("keygen", cmd_keygen, setup_keygen, TRUST, top=False, help="Generate an ECDSA P-256 key pair (cosign's)"),
    Command("sign", cmd_sign, setup_sign, TRUST, top=False, help="Sign an image in its registry (cosign's format)"),
    Command("verify", cmd_verify, setup_verify, TRUST, top=False, help="Verify an image's signatures with a public key"),
]
