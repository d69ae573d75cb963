"""`dockyard trust keygen/sign/verify` against a real `dockyard registry serve`: signatures in cosign's
format on the wire (simple-signing payload, ECDSA P-256 in the layer annotation, tag sha256-<hex>.sig,
and an OCI 1.1 referrer). The judge of the signature bytes is the openssl CLI (another implementation
of ECDSA verify); no cosign verifier with keys installs here (sigstore-python verifies keyless only)."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import SHARED, Daemon
from tests.integration.test_registry_server import _start

ACCEPT = "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json"
PAYLOAD_TYPE = "application/vnd.dev.cosign.simplesigning.v1+json"
ANNOTATION = "dev.cosignproject.cosign/signature"

pytestmark = pytest.mark.skipif(not shutil.which("skopeo") or not shutil.which("openssl"),
                                reason="needs skopeo and openssl")


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[str]:
    proc, addr = _start(tmp_path / "reg")
    try:
        for tag in ("v1", "v2"):
            subprocess.run(["skopeo", "copy", "--dest-tls-verify=false", f"oci:{SHARED / 'images/prebuilt/busybox'}:latest",
                            f"docker://{addr}/app:{tag}"], check=True, capture_output=True)
        yield addr
    finally:
        proc.terminate()
        proc.wait(10)


def _digest(c: httpx.Client, ref: str) -> str:
    return str(c.head(f"/v2/app/manifests/{ref}", headers={"accept": ACCEPT}).headers["docker-content-digest"])


def _digest_v1(addr: str) -> str:
    with httpx.Client(base_url=f"http://{addr}") as c:
        return _digest(c, "v1")


def test_sign_and_verify_in_cosign_format(clean_daemon: Daemon, registry: str, tmp_path: Path) -> None:
    d, addr = clean_daemon, registry
    out = d.dockyard("trust", "keygen", "--output-key-prefix", str(tmp_path / "k")).stdout.decode()
    assert "Public key written to" in out
    assert (tmp_path / "k.key").stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "k.pub").read_bytes().startswith(b"-----BEGIN PUBLIC KEY-----")
    out = d.dockyard("trust", "sign", "--key", str(tmp_path / "k.key"), f"{addr}/app:v1").stdout.decode()
    with httpx.Client(base_url=f"http://{addr}") as c:
        digest = _digest(c, "v1")
        tag = digest.replace(":", "-") + ".sig"
        assert f"Pushing signature to: {addr}/app:{tag}" in out
        man = c.get(f"/v2/app/manifests/{tag}", headers={"accept": ACCEPT}).json()
        [layer] = man["layers"]
        assert layer["mediaType"] == PAYLOAD_TYPE
        payload = c.get(f"/v2/app/blobs/{layer['digest']}").content
        assert payload == json.dumps(  # cosign's payload, as Go's encoding/json writes it
            {"critical": {"identity": {"docker-reference": f"{addr}/app"},
                          "image": {"docker-manifest-digest": digest}, "type": "cosign container image signature"},
             "optional": None}, separators=(",", ":")).encode()
        (tmp_path / "payload").write_bytes(payload)
        (tmp_path / "sig").write_bytes(base64.b64decode(layer["annotations"][ANNOTATION]))
        # the judge: openssl checks the DER ECDSA-SHA256 signature with the PEM public key
        p = subprocess.run(["openssl", "dgst", "-sha256", "-verify", str(tmp_path / "k.pub"), "-signature",
                            str(tmp_path / "sig"), str(tmp_path / "payload")], capture_output=True)
        assert p.returncode == 0 and b"Verified OK" in p.stdout, p
        refs = c.get(f"/v2/app/referrers/{digest}").json()["manifests"]
        assert [r["artifactType"] for r in refs] == ["application/vnd.dev.cosign.artifact.sig.v1+json"]
    p = d.dockyard("trust", "verify", "--key", str(tmp_path / "k.pub"), f"{addr}/app:v1")
    assert json.loads(p.stdout)[0]["critical"]["image"]["docker-manifest-digest"] == digest
    assert b"verified against the specified public key" in p.stderr


def test_verify_refuses_other_keys_and_other_images(clean_daemon: Daemon, registry: str, tmp_path: Path) -> None:
    d, addr = clean_daemon, registry
    # a key made by openssl signs through dockyard; and a second key pair that never signed
    subprocess.run(f"openssl ecparam -genkey -name prime256v1 | openssl pkcs8 -topk8 -nocrypt -out {tmp_path}/o.key",
                   shell=True, check=True, capture_output=True)
    subprocess.run(["openssl", "ec", "-in", f"{tmp_path}/o.key", "-pubout", "-out", f"{tmp_path}/o.pub"],
                   check=True, capture_output=True)
    d.dockyard("trust", "keygen", "--output-key-prefix", str(tmp_path / "other"))
    d.dockyard("trust", "sign", "--key", f"{tmp_path}/o.key", f"{addr}/app:v1")
    d.dockyard("trust", "verify", "--key", f"{tmp_path}/o.pub", f"{addr}/app:v1")
    p = d.dockyard("trust", "verify", "--key", f"{tmp_path}/other.pub", f"{addr}/app:v1", check=False)
    assert p.returncode == 1 and b"Error: no matching signatures: invalid signature" in p.stderr, p.stderr
    # a second signature joins the first in the .sig manifest: both keys verify
    d.dockyard("trust", "sign", "--key", f"{tmp_path}/other.key", f"{addr}/app:v1")
    for k in ("o", "other"):
        d.dockyard("trust", "verify", "--key", f"{tmp_path}/{k}.pub", f"{addr}/app:v1")
    with httpx.Client(base_url=f"http://{addr}") as c:
        tag = _digest(c, "v1").replace(":", "-") + ".sig"
        assert len(c.get(f"/v2/app/manifests/{tag}", headers={"accept": ACCEPT}).json()["layers"]) == 2
        # another image (busybox's manifest with an annotation) given v1's signatures: signed payloads
        # name v1's digest, so they do not verify for it
        base = c.get("/v2/app/manifests/v1", headers={"accept": ACCEPT}).json()
        r = c.put("/v2/app/manifests/v3", content=json.dumps({**base, "annotations": {"x": "y"}}).encode(),
                  headers={"content-type": base["mediaType"]})
        assert r.status_code == 201, r.text
        other = r.headers["docker-content-digest"]
        sigman = c.get(f"/v2/app/manifests/{tag}", headers={"accept": ACCEPT})
        r = c.put(f"/v2/app/manifests/{other.replace(':', '-')}.sig", content=sigman.content,
                  headers={"content-type": sigman.headers["content-type"]})
        assert r.status_code == 201, r.text
    p = d.dockyard("trust", "verify", "--key", f"{tmp_path}/o.pub", f"{addr}/app:v3", check=False)
    assert p.returncode == 1 and f"the signature is for {_digest_v1(addr)}, not {other}".encode() in p.stderr, p.stderr
    p = d.dockyard("trust", "verify", "--key", f"{tmp_path}/o.pub", f"{addr}/app:nosuch", check=False)
    assert p.returncode == 1 and b"manifest unknown" in p.stderr, p.stderr
