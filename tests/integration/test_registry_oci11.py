"""OCI distribution 1.1 against a real `dockyard registry serve` over a socket.

The Go conformance suite (opencontainers/distribution-spec conformance/) cannot be built here: no Go
toolchain and no module cache offline. These tests follow its four workflows instead (pull, push,
content discovery, content management) with the status codes and headers spec.md v1.1.0 asks for,
and skopeo copies an artifact-bearing OCI layout in and out.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from dockyard.registry.server.gc import garbage_collect
from tests.conftest import SHARED, Daemon
from tests.integration.test_registry_server import _free_port, _start

PREBUILT = SHARED / "images" / "prebuilt"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
EMPTY = "application/vnd.oci.empty.v1+json"
ACCEPT = f"{OCI_INDEX}, {OCI_MANIFEST}, application/vnd.docker.distribution.manifest.v2+json"  # as pull asks


@pytest.fixture
def reg(tmp_path: Path) -> Iterator[tuple[httpx.Client, Path]]:
    proc, addr = _start(tmp_path / "reg")
    try:
        with httpx.Client(base_url=f"http://{addr}") as c:
            yield c, tmp_path / "reg"
    finally:
        proc.terminate()
        proc.wait(10)


def _sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _blob(c: httpx.Client, name: str, data: bytes) -> dict[str, Any]:
    r = c.post(f"/v2/{name}/blobs/uploads/", params={"digest": _sha(data)}, content=data)
    if r.status_code == 202:  # distribution 2.8 opens a session instead of taking the body (the spec allows it)
        loc = r.headers["location"]  # it carries a query of its own (_state)
        r = c.put(f"{loc}{'&' if '?' in loc else '?'}digest={_sha(data)}", content=data)
    assert r.status_code == 201, r.text
    return {"digest": _sha(data), "size": len(data)}


def _put(c: httpx.Client, name: str, ref: str, doc: dict[str, Any],
         media_type: str = OCI_MANIFEST) -> httpx.Response:
    return c.put(f"/v2/{name}/manifests/{ref}", content=json.dumps(doc).encode(),
                 headers={"content-type": media_type})


def _image(c: httpx.Client, name: str, tag: str, layer: bytes) -> tuple[str, int]:
    cfg = _blob(c, name, b'{"architecture":"amd64","os":"linux"}')
    lay = _blob(c, name, layer)
    r = _put(c, name, tag, {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **cfg},
                            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", **lay}]})
    assert r.status_code == 201, r.text
    return r.headers["docker-content-digest"], len(r.request.content)


def _artifact(c: httpx.Client, name: str, subject: tuple[str, int], payload: bytes,
              artifact_type: str | None, config_type: str = EMPTY,
              annotations: dict[str, str] | None = None) -> tuple[httpx.Response, dict[str, Any]]:
    cfg = _blob(c, name, b"{}")
    lay = _blob(c, name, payload)
    doc: dict[str, Any] = {
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": config_type, **cfg},
        "layers": [{"mediaType": "application/vnd.example.payload", **lay}],
        "subject": {"mediaType": OCI_MANIFEST, "digest": subject[0], "size": subject[1]}}
    if artifact_type:
        doc["artifactType"] = artifact_type
    if annotations:
        doc["annotations"] = annotations
    return _put(c, name, _sha(json.dumps(doc).encode()), doc), doc


def _code(r: httpx.Response) -> str:
    return str(r.json()["errors"][0]["code"])


def test_pull_reference_that_cannot_be_a_tag(reg: tuple[httpx.Client, Path]) -> None:
    c, _ = reg
    _image(c, "app", "v1", b"layer")
    for method in ("GET", "HEAD"):  # the conformance suite's three failures under v1.0.1
        r = c.request(method, "/v2/app/manifests/.INVALID_MANIFEST_NAME")
        assert r.status_code == 404
        if method == "GET":
            assert _code(r) == "MANIFEST_UNKNOWN"
    r = c.get("/v2/app/manifests/nosuchtag")
    assert r.status_code == 404 and _code(r) == "MANIFEST_UNKNOWN"
    r = c.put("/v2/app/manifests/.INVALID_MANIFEST_NAME", content=b"{}",
              headers={"content-type": OCI_MANIFEST})
    assert r.status_code == 400 and _code(r) == "TAG_INVALID"
    r = c.delete("/v2/app/manifests/.INVALID_MANIFEST_NAME")
    assert r.status_code == 400 and _code(r) == "TAG_INVALID"
    r = c.get(f"/v2/app/blobs/{_sha(b'never pushed')}")
    assert r.status_code == 404 and _code(r) == "BLOB_UNKNOWN"


def test_push_chunks_in_order_only(reg: tuple[httpx.Client, Path]) -> None:
    c, _ = reg
    data = b"0123456789abcdefghij"
    r = c.post("/v2/chunks/blobs/uploads/")
    assert r.status_code == 202
    loc = r.headers["location"]
    assert c.get(loc).status_code == 204
    r = c.patch(loc, content=data[:10], headers={"content-range": "0-9", "content-type": "application/octet-stream"})
    assert r.status_code == 202 and r.headers["range"] == "0-9"
    # the same chunk again (a retry) and a chunk past the end are out of order
    for rng in ("0-9", "11-19"):
        r = c.patch(loc, content=data[10:] if rng != "0-9" else data[:10], headers={"content-range": rng})
        assert r.status_code == 416 and r.headers["range"] == "0-9", rng
    # a range that does not span the body
    r = c.patch(loc, content=data[10:15], headers={"content-range": "10-19"})
    assert r.status_code == 416
    r = c.get(loc)
    assert r.status_code == 204 and r.headers["range"] == "0-9" and r.headers["location"] == loc
    r = c.patch(loc, content=data[10:15], headers={"content-range": "10-14"})
    assert r.status_code == 202 and r.headers["range"] == "0-14"
    r = c.put(loc, params={"digest": _sha(data)}, content=data[10:15], headers={"content-range": "10-14"})
    assert r.status_code == 416  # the final chunk, too, must start where the upload ends
    r = c.put(loc, params={"digest": _sha(data)}, content=data[15:], headers={"content-range": "15-19"})
    assert r.status_code == 201 and r.headers["location"] == f"/v2/chunks/blobs/{_sha(data)}"
    assert c.get(r.headers["location"]).content == data
    assert c.get(loc).status_code == 404  # the session is gone once the blob is made


def test_push_mount_across_repositories(reg: tuple[httpx.Client, Path]) -> None:
    c, _ = reg
    b = _blob(c, "src", b"shared layer")
    r = c.post("/v2/dst/blobs/uploads/", params={"mount": b["digest"], "from": "src"})
    assert r.status_code == 201 and r.headers["location"] == f"/v2/dst/blobs/{b['digest']}"
    assert c.get(f"/v2/dst/blobs/{b['digest']}").content == b"shared layer"
    # a blob the source does not hold: the registry opens an upload session instead
    r = c.post("/v2/dst/blobs/uploads/", params={"mount": _sha(b"absent"), "from": "src"})
    assert r.status_code == 202 and "/v2/dst/blobs/uploads/" in r.headers["location"]


def test_content_discovery_tags(reg: tuple[httpx.Client, Path]) -> None:
    c, _ = reg
    for t in ("a", "b", "c", "d", "e"):
        _image(c, "tags", t, b"layer")
    assert c.get("/v2/tags/tags/list").json() == {"name": "tags", "tags": ["a", "b", "c", "d", "e"]}
    r = c.get("/v2/tags/tags/list", params={"n": 2})
    assert r.json()["tags"] == ["a", "b"] and r.headers["link"] == '</v2/tags/tags/list?n=2&last=b>; rel="next"'
    r = c.get("/v2/tags/tags/list", params={"n": 2, "last": "d"})
    assert r.json()["tags"] == ["e"] and "link" not in r.headers  # the last page has no Link
    assert c.get("/v2/tags/tags/list", params={"n": 0}).json()["tags"] == []
    assert c.get("/v2/tags/tags/list", params={"last": "c"}).json()["tags"] == ["d", "e"]
    r = c.get("/v2/tags/tags/list", params={"n": "x"})
    assert r.status_code == 400 and _code(r) == "PAGINATION_NUMBER_INVALID"
    r = c.get("/v2/nosuchrepo/tags/list")
    assert r.status_code == 404 and _code(r) == "NAME_UNKNOWN"


def test_referrers(reg: tuple[httpx.Client, Path]) -> None:
    c, root = reg
    subject = _image(c, "app", "v1", b"image layer")
    sig, sig_doc = _artifact(c, "app", subject, b"signature", "application/vnd.example.signature",
                             annotations={"org.example.signed-by": "alice"})
    assert sig.status_code == 201, sig.text
    assert sig.headers["oci-subject"] == subject[0]
    # no artifactType: the referrers index names the config's media type instead
    sbom, _ = _artifact(c, "app", subject, b"sbom", None, config_type="application/vnd.example.sbom.config")
    assert sbom.status_code == 201 and sbom.headers["oci-subject"] == subject[0]
    # an index may have a subject too; without artifactType its descriptor carries none
    idx = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [],
           "subject": {"mediaType": OCI_MANIFEST, "digest": subject[0], "size": subject[1]}}
    r = _put(c, "app", _sha(json.dumps(idx).encode()), idx, OCI_INDEX)
    assert r.status_code == 201 and r.headers["oci-subject"] == subject[0]
    idx_digest = r.headers["docker-content-digest"]
    # the manifest comes back byte for byte: artifactType, subject, the empty config
    r = c.get(f"/v2/app/manifests/{sig.headers['docker-content-digest']}")
    assert r.status_code == 200 and r.content == sig.request.content
    assert r.headers["content-type"] == OCI_MANIFEST and json.loads(r.content) == sig_doc

    r = c.get(f"/v2/app/referrers/{subject[0]}")
    assert r.status_code == 200 and r.headers["content-type"] == OCI_INDEX
    body = r.json()
    assert body["schemaVersion"] == 2 and body["mediaType"] == OCI_INDEX
    by_digest = {d["digest"]: d for d in body["manifests"]}
    assert by_digest == {
        sig.headers["docker-content-digest"]: {
            "mediaType": OCI_MANIFEST, "digest": sig.headers["docker-content-digest"],
            "size": len(sig.request.content), "artifactType": "application/vnd.example.signature",
            "annotations": {"org.example.signed-by": "alice"}},
        sbom.headers["docker-content-digest"]: {
            "mediaType": OCI_MANIFEST, "digest": sbom.headers["docker-content-digest"],
            "size": len(sbom.request.content), "artifactType": "application/vnd.example.sbom.config"},
        idx_digest: {"mediaType": OCI_INDEX, "digest": idx_digest, "size": len(json.dumps(idx).encode())}}
    assert "oci-filters-applied" not in r.headers

    r = c.get(f"/v2/app/referrers/{subject[0]}", params={"artifactType": "application/vnd.example.signature"})
    assert r.status_code == 200 and r.headers["oci-filters-applied"] == "artifactType"
    assert [d["digest"] for d in r.json()["manifests"]] == [sig.headers["docker-content-digest"]]

    # a digest nothing refers to, and a repository that does not exist: an empty index, never 404
    for path in (f"/v2/app/referrers/{_sha(b'x')}", f"/v2/nosuchrepo/referrers/{subject[0]}"):
        r = c.get(path)
        assert r.status_code == 200 and r.json()["manifests"] == [], path
    r = c.get("/v2/app/referrers/sha256:nothex")
    assert r.status_code == 400 and _code(r) == "DIGEST_INVALID"
    # the subject need not exist (yet): pushed in any order, the referrer is listed
    ghost = (_sha(b"not pushed yet"), 10)
    r, _ = _artifact(c, "app", ghost, b"early", "application/vnd.example.signature")
    assert r.status_code == 201 and r.headers["oci-subject"] == ghost[0]
    assert len(c.get(f"/v2/app/referrers/{ghost[0]}").json()["manifests"]) == 1

    # garbage collection keeps untagged referrers of a kept subject, and what they point at
    removed = set(garbage_collect(root, delete_untagged=True))
    assert sig.headers["docker-content-digest"] not in removed and _sha(b"signature") not in removed
    assert c.get(f"/v2/app/blobs/{_sha(b'signature')}").content == b"signature"

    # deleting a referrer takes it out of its subject's index
    assert c.delete(f"/v2/app/manifests/{sbom.headers['docker-content-digest']}").status_code == 202
    left = {d["digest"] for d in c.get(f"/v2/app/referrers/{subject[0]}").json()["manifests"]}
    assert sbom.headers["docker-content-digest"] not in left and sig.headers["docker-content-digest"] in left


def test_referrer_with_a_malformed_subject_is_refused(reg: tuple[httpx.Client, Path]) -> None:
    c, _ = reg
    r, _ = _artifact(c, "app", ("sha256:short", 1), b"sig", "application/vnd.example.signature")
    assert r.status_code == 400 and _code(r) == "MANIFEST_INVALID"


def test_content_management_deletes(reg: tuple[httpx.Client, Path]) -> None:
    c, _ = reg
    digest, _ = _image(c, "app", "v1", b"to delete")
    _image(c, "app", "v2", b"to delete")
    assert c.delete("/v2/app/manifests/v2").status_code == 202  # a tag
    assert c.get("/v2/app/manifests/v2").status_code == 404
    assert c.get("/v2/app/tags/list").json()["tags"] == ["v1"]
    assert c.delete(f"/v2/app/manifests/{digest}").status_code == 202
    for method in ("GET", "HEAD"):
        assert c.request(method, f"/v2/app/manifests/{digest}").status_code == 404
    assert c.get("/v2/app/manifests/v1").status_code == 404  # its tags went with it
    r = c.delete(f"/v2/app/manifests/{digest}")
    assert r.status_code == 404 and _code(r) == "MANIFEST_UNKNOWN"
    layer = _sha(b"to delete")
    assert c.delete(f"/v2/app/blobs/{layer}").status_code == 202
    assert c.get(f"/v2/app/blobs/{layer}").status_code == 404
    r = c.delete(f"/v2/app/blobs/{layer}")
    assert r.status_code == 404 and _code(r) == "BLOB_UNKNOWN"


@pytest.mark.skipif(not shutil.which("skopeo"), reason="needs skopeo")
def test_skopeo_copies_an_artifact_and_its_subject(reg: tuple[httpx.Client, Path], tmp_path: Path) -> None:
    c, _ = reg
    addr = str(c.base_url).removeprefix("http://").rstrip("/")
    layout = tmp_path / "layout"
    shutil.copytree(PREBUILT / "busybox", layout)
    blobs = layout / "blobs" / "sha256"

    def put(data: bytes) -> str:
        (blobs / _sha(data).split(":")[1]).write_bytes(data)
        return _sha(data)

    index = json.loads((layout / "index.json").read_text())
    subj = index["manifests"][0]
    payload = json.dumps({"critical": {"image": {"docker-manifest-digest": subj["digest"]}}}).encode()
    man = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": "application/vnd.example.signature",
           "config": {"mediaType": EMPTY, "digest": put(b"{}"), "size": 2, "data": "e30="},
           "layers": [{"mediaType": "application/vnd.example.signature.payload+json", "digest": put(payload),
                       "size": len(payload)}],
           "subject": {"mediaType": subj["mediaType"], "digest": subj["digest"], "size": subj["size"]},
           "annotations": {"org.opencontainers.image.created": "2026-12-03T00:00:00Z"}}
    raw = json.dumps(man).encode()
    index["manifests"].append({"mediaType": OCI_MANIFEST, "digest": put(raw), "size": len(raw),
                               "annotations": {"org.opencontainers.image.ref.name": "sig"}})
    (layout / "index.json").write_text(json.dumps(index))
    for tag in ("latest", "sig"):
        subprocess.run(["skopeo", "copy", "--dest-tls-verify=false", f"oci:{layout}:{tag}",
                        f"docker://{addr}/app:{tag}"], check=True, capture_output=True)
    r = c.get(f"/v2/app/referrers/{subj['digest']}")
    assert r.json()["manifests"] == [{"mediaType": OCI_MANIFEST, "digest": _sha(raw), "size": len(raw),
                                      "artifactType": "application/vnd.example.signature",
                                      "annotations": man["annotations"]}]
    subprocess.run(["skopeo", "copy", "--src-tls-verify=false", f"docker://{addr}/app:sig",
                    f"oci:{tmp_path}/out:sig"], check=True, capture_output=True)
    out = json.loads((tmp_path / "out/index.json").read_text())["manifests"][0]["digest"]
    assert out == _sha(raw)  # the artifact came back byte for byte
    assert (tmp_path / "out/blobs/sha256" / _sha(payload).split(":")[1]).read_bytes() == payload


def test_image_referrers_through_the_engine(clean_daemon: Daemon, tmp_path: Path) -> None:
    """`dockyard image referrers` asks the daemon, which asks the registry (GET /distribution/.../referrers)."""
    d = clean_daemon
    proc, addr = _start(tmp_path / "reg")
    try:
        d.docker("tag", "busybox", f"{addr}/app:v1")
        d.dockyard("push", f"{addr}/app:v1")
        with httpx.Client(base_url=f"http://{addr}") as c:
            r = c.head("/v2/app/manifests/v1", headers={"accept": ACCEPT})
            subject = (r.headers["docker-content-digest"], int(r.headers["content-length"]))
            sig, _ = _artifact(c, "app", subject, b"sig", "application/vnd.example.signature",
                               annotations={"org.example.signed-by": "alice"})
            sbom, _ = _artifact(c, "app", subject, b"sbom", "application/spdx+json")
        sig_d, sbom_d = sig.headers["docker-content-digest"], sbom.headers["docker-content-digest"]
        out = d.dockyard("image", "referrers", "--no-trunc", f"{addr}/app:v1").stdout.decode().splitlines()
        assert out[0].split() == ["DIGEST", "ARTIFACT", "TYPE", "SIZE"]
        assert sorted(line.split()[:2] for line in out[1:]) == sorted(
            [[sig_d, "application/vnd.example.signature"], [sbom_d, "application/spdx+json"]])
        out = d.dockyard("image", "referrers", "-q", "--artifact-type", "application/spdx+json",
                         f"{addr}/app@{subject[0]}").stdout.decode().split()
        assert out == [sbom_d]
        fmt = d.dockyard("image", "referrers", "--format", "{{.Annotations}}", "--artifact-type",
                         "application/vnd.example.signature", f"{addr}/app:v1").stdout.decode().strip()
        assert fmt == "org.example.signed-by=alice"
        p = d.dockyard("image", "referrers", f"{addr}/app:nosuchtag", check=False)
        assert p.returncode == 1 and b"manifest unknown" in p.stderr, p.stderr
    finally:
        proc.terminate()
        proc.wait(10)


def test_image_referrers_falls_back_to_the_tag_schema(clean_daemon: Daemon, tmp_path: Path) -> None:
    """distribution 2.8 has no referrers API (404): clients keep an index tagged sha256-<hex> instead
    (spec.md's fallback), and `image referrers` reads that."""
    images = SHARED / "images"
    port = _free_port()
    subprocess.run([str(images / "serve-registry"), "--port", str(port), "--dir", str(tmp_path / "dist"),
                    "--prebuilt"], check=True, capture_output=True, timeout=300)
    addr = f"127.0.0.1:{port}"
    try:
        with httpx.Client(base_url=f"http://{addr}") as c:
            r = c.head("/v2/library/busybox/manifests/latest", headers={"accept": ACCEPT})
            subject = (r.headers["docker-content-digest"], int(r.headers["content-length"]))
            assert c.get(f"/v2/library/busybox/referrers/{subject[0]}").status_code == 404
            sig, _ = _artifact(c, "library/busybox", subject, b"sig", "application/vnd.example.signature")
            assert sig.status_code == 201, sig.text
            desc = {"mediaType": OCI_MANIFEST, "digest": sig.headers["docker-content-digest"],
                    "size": len(sig.request.content), "artifactType": "application/vnd.example.signature"}
            r = _put(c, "library/busybox", subject[0].replace(":", "-"),
                     {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [desc]}, OCI_INDEX)
            assert r.status_code == 201, r.text
        out = clean_daemon.dockyard("image", "referrers", "-q", f"{addr}/library/busybox:latest").stdout
        assert out.decode().split() == [desc["digest"]]
        out = clean_daemon.dockyard("image", "referrers", "-q", "--artifact-type", "application/x-other",
                                    f"{addr}/library/busybox:latest").stdout
        assert out == b""  # filtered on our side: this registry cannot
    finally:
        subprocess.run([str(images / "stop-registry"), "--port", str(port), "--dir", str(tmp_path / "dist")],
                       capture_output=True)


def _skopeo_busybox(addr: str, name: str) -> None:
    subprocess.run(["skopeo", "copy", "--dest-tls-verify=false", f"oci:{PREBUILT / 'busybox'}:latest",
                    f"docker://{addr}/{name}"], check=True, capture_output=True)


@pytest.mark.skipif(not shutil.which("skopeo"), reason="needs skopeo")
def test_push_with_referrers_copies_them_byte_for_byte(clean_daemon: Daemon, tmp_path: Path) -> None:
    """Pull from one registry, push to another with --with-referrers: the manifest keeps its digest and
    its referrers (and a referrer's referrer) arrive with the same digests and bytes; without the flag
    the target gets none."""
    d = clean_daemon
    pa, a = _start(tmp_path / "a")
    pb, b = _start(tmp_path / "b")
    try:
        _skopeo_busybox(a, "app:v1")
        with httpx.Client(base_url=f"http://{a}") as c:
            r = c.head("/v2/app/manifests/v1", headers={"accept": ACCEPT})
            subject = (r.headers["docker-content-digest"], int(r.headers["content-length"]))
            sig, _ = _artifact(c, "app", subject, b"sig", "application/vnd.example.signature",
                               annotations={"org.example.signed-by": "alice"})
            sbom, _ = _artifact(c, "app", subject, b"sbom", "application/spdx+json")
            sbom_d = sbom.headers["docker-content-digest"]
            sbom_sig, _ = _artifact(c, "app", (sbom_d, len(sbom.request.content)), b"sbom-sig",
                                    "application/vnd.example.signature")
            want = {r.headers["docker-content-digest"]: r.request.content for r in (sig, sbom, sbom_sig)}
            top = c.get(f"/v2/app/referrers/{subject[0]}").json()["manifests"]
        d.dockyard("pull", f"{a}/app:v1")
        d.docker("tag", f"{a}/app:v1", f"{b}/copy:v1")
        d.docker("tag", f"{a}/app:v1", f"{b}/plain:v1")
        out = d.dockyard("push", "--with-referrers", f"{b}/copy:v1").stdout.decode()
        assert sum(line.startswith("Referrer ") for line in out.splitlines()) == 3, out
        d.dockyard("push", f"{b}/plain:v1")
        with httpx.Client(base_url=f"http://{b}") as c:
            r = c.get("/v2/copy/manifests/v1", headers={"accept": ACCEPT})
            assert r.headers["docker-content-digest"] == subject[0]  # the manifest as pulled
            assert c.get(f"/v2/copy/referrers/{subject[0]}").json()["manifests"] == top
            assert [m["digest"] for m in c.get(f"/v2/copy/referrers/{sbom_d}").json()["manifests"]] == [
                sbom_sig.headers["docker-content-digest"]]
            for digest, raw in want.items():
                got = c.get(f"/v2/copy/manifests/{digest}", headers={"accept": OCI_MANIFEST})
                assert got.content == raw
                for blob in [json.loads(raw)["config"], *json.loads(raw)["layers"]]:
                    assert _sha(c.get(f"/v2/copy/blobs/{blob['digest']}").content) == blob["digest"]
            plain = c.head("/v2/plain/manifests/v1", headers={"accept": ACCEPT}).headers["docker-content-digest"]
            assert c.get(f"/v2/plain/referrers/{plain}").json()["manifests"] == []
        out = d.dockyard("image", "referrers", "-q", f"{b}/copy:v1").stdout.decode().split()
        assert sorted(out) == sorted(m["digest"] for m in top)
    finally:
        for ref in (f"{a}/app:v1", f"{b}/copy:v1", f"{b}/plain:v1"):
            d.docker("rmi", ref, check=False)
        for p in (pa, pb):
            p.terminate()
            p.wait(10)


def test_registry_gc_keeps_what_referrers_need(reg: tuple[httpx.Client, Path]) -> None:
    """`dockyard registry gc --delete-untagged`, dry run first: a chain of untagged referrers (a signature
    of an SBOM of the image) and their blobs stay while the image is tagged; an orphan blob and an
    untagged manifest go; the dry run names exactly what the run deletes; referrers of a deleted
    subject go with it."""
    import sys

    c, root = reg
    subject = _image(c, "app", "v1", b"layer")
    sbom, _ = _artifact(c, "app", subject, b"sbom-payload", "application/spdx+json")
    sbom_d = sbom.headers["docker-content-digest"]
    sbom_sig, _ = _artifact(c, "app", (sbom_d, len(sbom.request.content)), b"sbom-sig", "application/vnd.example.sig")
    old = _image(c, "app", "old", b"old layer")
    old_sig, _ = _artifact(c, "app", old, b"old-sig", "application/vnd.example.sig")
    assert c.delete("/v2/app/manifests/old").status_code == 202  # the tag goes: old is untagged now
    orphan = _blob(c, "app", b"nobody points here")["digest"]

    def gc(*flags: str) -> list[str]:
        out = subprocess.run([sys.executable, "-m", "dockyard.cli.main", "registry", "gc", "--root", str(root),
                              "--delete-untagged", *flags], check=True, capture_output=True).stdout.decode()
        return sorted(line.split()[-1] for line in out.splitlines())

    would = gc("--dry-run")
    assert orphan in would and _sha(b"old layer") in would and _sha(b"old-sig") in would
    kept = [subject[0], sbom_d, sbom_sig.headers["docker-content-digest"], _sha(b"layer"), _sha(b"sbom-payload"),
            _sha(b"sbom-sig"), _sha(b"{}")]
    assert not set(kept) & set(would), would
    assert gc() == would
    for digest in kept[1:3]:
        assert c.get(f"/v2/app/manifests/{digest}", headers={"accept": OCI_MANIFEST}).status_code == 200
    for digest in kept[3:]:
        assert c.get(f"/v2/app/blobs/{digest}").status_code == 200, digest
    for digest in (orphan, _sha(b"old-sig")):
        assert c.get(f"/v2/app/blobs/{digest}").status_code == 404
    assert c.get(f"/v2/app/manifests/{old_sig.headers['docker-content-digest']}",
                 headers={"accept": OCI_MANIFEST}).status_code == 404
    assert gc("--dry-run") == []


@pytest.mark.skipif(not shutil.which("skopeo"), reason="needs skopeo")
def test_push_with_referrers_to_a_registry_without_the_api(clean_daemon: Daemon, tmp_path: Path) -> None:
    """The target is distribution 2.8 (no referrers API, no OCI-Subject): the copied referrers are
    listed in the spec's fallback index tagged sha256-<hex>, which `image referrers` then reads."""
    d = clean_daemon
    images = SHARED / "images"
    pa, a = _start(tmp_path / "a")
    port = _free_port()
    subprocess.run([str(images / "serve-registry"), "--port", str(port), "--dir", str(tmp_path / "dist")],
                   check=True, capture_output=True, timeout=300)
    b = f"127.0.0.1:{port}"
    try:
        _skopeo_busybox(a, "app:v1")
        with httpx.Client(base_url=f"http://{a}") as c:
            r = c.head("/v2/app/manifests/v1", headers={"accept": ACCEPT})
            subject = (r.headers["docker-content-digest"], int(r.headers["content-length"]))
            sig, _ = _artifact(c, "app", subject, b"sig", "application/vnd.example.signature")
            sbom, _ = _artifact(c, "app", subject, b"sbom", "application/spdx+json")
        want = sorted(x.headers["docker-content-digest"] for x in (sig, sbom))
        d.dockyard("pull", f"{a}/app:v1")
        d.docker("tag", f"{a}/app:v1", f"{b}/copy:v1")
        d.dockyard("push", "--with-referrers", f"{b}/copy:v1")
        with httpx.Client(base_url=f"http://{b}") as c:
            assert c.get(f"/v2/copy/referrers/{subject[0]}").status_code == 404
            r = c.get(f"/v2/copy/manifests/{subject[0].replace(':', '-')}", headers={"accept": OCI_INDEX})
            assert sorted(m["digest"] for m in r.json()["manifests"]) == want
            for x in (sig, sbom):
                got = c.get(f"/v2/copy/manifests/{x.headers['docker-content-digest']}",
                            headers={"accept": OCI_MANIFEST})
                assert got.content == x.request.content
        out = d.dockyard("image", "referrers", "-q", f"{b}/copy:v1").stdout.decode().split()
        assert sorted(out) == want
    finally:
        for ref in (f"{a}/app:v1", f"{b}/copy:v1"):
            d.docker("rmi", ref, check=False)
        pa.terminate()
        pa.wait(10)
        subprocess.run([str(images / "stop-registry"), "--port", str(port), "--dir", str(tmp_path / "dist")],
                       capture_output=True)
