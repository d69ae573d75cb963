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


def _variant(c: httpx.Client, tag: str, marker: str) -> None:
    """Another image in the registry: busybox's layers under a config of its own (so its own image id)."""
    base = c.get("/v2/app/manifests/v1", headers={"accept": ACCEPT}).json()
    config = json.loads(c.get(f"/v2/app/blobs/{base['config']['digest']}").content)
    config.setdefault("config", {})["Labels"] = {"variant": marker}
    raw = json.dumps(config).encode()
    digest = "sha256:" + __import__("hashlib").sha256(raw).hexdigest()
    assert c.post("/v2/app/blobs/uploads/", params={"digest": digest}, content=raw).status_code == 201
    base["config"] = {**base["config"], "digest": digest, "size": len(raw)}
    r = c.put(f"/v2/app/manifests/{tag}", content=json.dumps(base).encode(), headers={"content-type": base["mediaType"]})
    assert r.status_code == 201, r.text


def test_daemon_verify_signatures_refuses_unsigned_images(registry: str, tmp_path: Path) -> None:
    """`dockyard daemon --verify-signatures KEY`: run works for an image its registry holds a signature of
    by KEY; create of an unsigned one, one signed by another key, or a local one is refused, naming the
    image and why."""
    from tests.conftest import own_daemon

    addr = registry
    for k in ("k", "other"):
        subprocess.run([__import__("sys").executable, "-m", "dockyard.cli.main", "trust", "keygen",
                        "--output-key-prefix", str(tmp_path / k)], check=True, capture_output=True)
    with httpx.Client(base_url=f"http://{addr}") as c:
        _variant(c, "unsigned", "u")
        _variant(c, "forged", "f")
    with own_daemon("dy-vsig-", "--verify-signatures", str(tmp_path / "k.pub")) as d:
        for tag in ("v1", "unsigned", "forged"):
            d.dockyard("pull", f"{addr}/app:{tag}")
        d.dockyard("trust", "sign", "--key", str(tmp_path / "k.key"), f"{addr}/app:v1")
        d.dockyard("trust", "sign", "--key", str(tmp_path / "other.key"), f"{addr}/app:forged")
        out = d.docker("run", "--rm", f"{addr}/app:v1", "echo", "signed").stdout
        assert out == b"signed\n"
        for tag, why in (("unsigned", b"no signatures found"), ("forged", b"invalid signature")):
            p = d.docker("create", f"{addr}/app:{tag}", check=False)
            assert p.returncode != 0, p
            assert f'image "{addr}/app:{tag}"'.encode() in p.stderr and b"is refused" in p.stderr, p.stderr
            assert why in p.stderr, p.stderr
        # busybox here is v1's very image (same id): allowed; an imported image has no registry digest
        assert d.docker("run", "--rm", "busybox", "true").returncode == 0
        tar = subprocess.run(["tar", "-c", "-C", str(SHARED / "images/prebuilt/busybox"), "oci-layout"],
                             check=True, capture_output=True).stdout
        d.docker("import", "-", "local/imported:1", input=tar)
        p = d.docker("create", "local/imported:1", "true", check=False)
        assert p.returncode != 0 and b'image "local/imported:1"' in p.stderr, p.stderr
        assert b"no registry digest" in p.stderr, p.stderr
        # the engine's own containers are not gated: a build's RUN steps work from the signed base,
        # but the built image itself has no signature
        d.dockyard("build", "-t", "local/built:1", "-", input=f"FROM {addr}/app:v1\nRUN touch /built\nRUN test -e /built\n".encode())
        p = d.docker("create", "local/built:1", "true", check=False)
        assert p.returncode != 0 and b"no registry digest" in p.stderr, p.stderr
        assert d.docker("ps", "-aq").stdout == b""  # nothing was created
