"""Our registry server against real clients (skopeo, httpx speaking the distribution API)."""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import bcrypt
import httpx
import pytest

from dockyard.registry.server.gc import garbage_collect
from tests.conftest import SHARED

PREBUILT = SHARED / "images" / "prebuilt"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start(root: Path, *extra: str) -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "dockyard.registry.server", "serve", "--addr", f"127.0.0.1:{port}",
         "--root", str(root), *extra], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert proc.stdout is not None
    line = proc.stdout.readline().decode()  # printed once listening
    assert "listening" in line, line
    return proc, f"127.0.0.1:{port}"


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    proc, addr = _start(tmp_path / "reg")
    yield addr, tmp_path / "reg"
    proc.terminate()
    proc.wait(10)


def _sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _push_blob(c: httpx.Client, name: str, data: bytes) -> str:
    d = _sha(data)
    r = c.post(f"/v2/{name}/blobs/uploads/", params={"digest": d}, content=data)
    assert r.status_code == 201, r.text
    return d


def _push_image(c: httpx.Client, name: str, tag: str, layer: bytes = b"layer") -> tuple[str, bytes]:
    cfg = _push_blob(c, name, b'{"architecture":"amd64","os":"linux"}')
    lay = _push_blob(c, name, layer)
    man = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                      "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cfg,
                                 "size": 37},
                      "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": lay,
                                  "size": len(layer)}]}).encode()
    r = c.put(f"/v2/{name}/manifests/{tag}", content=man,
              headers={"content-type": "application/vnd.oci.image.manifest.v1+json"})
    assert r.status_code == 201, r.text
    return r.headers["docker-content-digest"], man


@pytest.mark.skipif(not shutil.which("skopeo"), reason="needs skopeo")
def test_skopeo_copy_in_and_out(registry: tuple[str, Path], tmp_path: Path) -> None:
    addr, _ = registry
    subprocess.run(["skopeo", "copy", "--dest-tls-verify=false", f"oci:{PREBUILT}/busybox:latest",
                    f"docker://{addr}/library/busybox:latest"], check=True, capture_output=True)
    subprocess.run(["skopeo", "copy", "--src-tls-verify=false", f"docker://{addr}/library/busybox:latest",
                    f"oci:{tmp_path}/out:latest"], check=True, capture_output=True)
    src = json.loads((PREBUILT / "busybox/index.json").read_text())["manifests"][0]["digest"]
    out = json.loads((tmp_path / "out/index.json").read_text())["manifests"][0]["digest"]
    assert src == out  # the manifest came back byte for byte


def test_base_blobs_ranges_and_errors(registry: tuple[str, Path]) -> None:
    addr, _ = registry
    with httpx.Client(base_url=f"http://{addr}") as c:
        r = c.get("/v2/")
        assert r.status_code == 200 and r.headers["docker-distribution-api-version"] == "registry/2.0"
        d = _push_blob(c, "a/b", b"0123456789")
        r = c.head(f"/v2/a/b/blobs/{d}")
        assert r.status_code == 200 and r.headers["content-length"] == "10"
        r = c.get(f"/v2/a/b/blobs/{d}", headers={"range": "bytes=2-4"})
        assert r.status_code == 206 and r.content == b"234"
        assert r.headers["content-range"] == "bytes 2-4/10"
        # a blob is only visible in the repositories it was pushed to or mounted into
        r = c.get(f"/v2/other/blobs/{d}")
        assert r.status_code == 404 and r.json()["errors"][0]["code"] == "BLOB_UNKNOWN"
        r = c.post("/v2/other/blobs/uploads/", params={"mount": d, "from": "a/b"})
        assert r.status_code == 201 and r.headers["docker-content-digest"] == d
        assert c.get(f"/v2/other/blobs/{d}").content == b"0123456789"
        # digest mismatch
        r = c.post("/v2/a/b/blobs/uploads/", params={"digest": _sha(b"x")}, content=b"y")
        assert r.status_code == 400 and r.json()["errors"][0]["code"] == "DIGEST_INVALID"
        assert c.head(f"/v2/a/b/blobs/{_sha(b'y')}").status_code == 404  # nothing partial left
        r = c.delete(f"/v2/a/b/blobs/{d}")
        assert r.status_code == 202
        assert c.head(f"/v2/a/b/blobs/{d}").status_code == 404


def test_chunked_upload(registry: tuple[str, Path]) -> None:
    addr, _ = registry
    with httpx.Client(base_url=f"http://{addr}") as c:
        r = c.post("/v2/chunky/blobs/uploads/")
        assert r.status_code == 202
        loc = r.headers["location"]
        r = c.patch(loc, content=b"hello ", headers={"content-range": "0-5"})
        assert r.status_code == 202 and r.headers["range"] == "0-5"
        loc = r.headers["location"]
        assert c.get(loc).headers["range"] == "0-5"
        r = c.patch(loc, content=b"bad", headers={"content-range": "0-2"})  # wrong offset
        assert r.status_code == 416
        r = c.put(loc, params={"digest": _sha(b"hello world")}, content=b"world")
        assert r.status_code == 201, r.text
        assert c.get(r.headers["location"]).content == b"hello world"
        r = c.post("/v2/chunky/blobs/uploads/")
        loc = r.headers["location"]
        assert c.delete(loc).status_code == 204
        assert c.get(loc).json()["errors"][0]["code"] == "BLOB_UPLOAD_UNKNOWN"


def test_manifests_tags_catalog(registry: tuple[str, Path]) -> None:
    addr, _ = registry
    with httpx.Client(base_url=f"http://{addr}") as c:
        digest, man = _push_image(c, "app", "v1")
        for t in ("v2", "v3", "v4"):
            _push_image(c, "app", t)
        r = c.get("/v2/app/manifests/v1")
        assert r.content == man and r.headers["content-type"] == "application/vnd.oci.image.manifest.v1+json"
        assert c.head(f"/v2/app/manifests/{digest}").headers["docker-content-digest"] == digest
        r = c.get("/v2/app/tags/list", params={"n": 2})
        assert r.json() == {"name": "app", "tags": ["v1", "v2"]}
        assert r.headers["link"] == '</v2/app/tags/list?n=2&last=v2>; rel="next"'
        assert c.get("/v2/app/tags/list", params={"n": 2, "last": "v2"}).json()["tags"] == ["v3", "v4"]
        index = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                            "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
                                           "digest": digest, "size": len(man),
                                           "platform": {"os": "linux", "architecture": "amd64"}}]})
        r = c.put("/v2/app/manifests/multi", content=index,
                  headers={"content-type": "application/vnd.oci.image.index.v1+json"})
        assert r.status_code == 201
        # references must exist
        bad = index.replace(digest, _sha(b"nope"))
        r = c.put("/v2/app/manifests/bad", content=bad,
                  headers={"content-type": "application/vnd.oci.image.index.v1+json"})
        assert r.status_code == 400 and r.json()["errors"][0]["code"] == "MANIFEST_BLOB_UNKNOWN"
        r = c.put("/v2/app/manifests/big", content=b" " * (4 * 1024 * 1024 + 1),
                  headers={"content-type": "application/vnd.oci.image.manifest.v1+json"})
        assert r.status_code == 413
        assert c.get("/v2/_catalog").json() == {"repositories": ["app"]}
        assert c.delete("/v2/app/manifests/v4").status_code == 202
        assert c.delete(f"/v2/app/manifests/{digest}").status_code == 202
        r = c.get("/v2/app/manifests/v1")
        assert r.status_code == 404 and r.json()["errors"][0]["code"] == "MANIFEST_UNKNOWN"


@pytest.mark.parametrize("path", [
    "/v2/../etc/blobs/sha256:" + "0" * 64, "/v2/a/..%2f..%2fx/tags/list", "/v2/A/tags/list",
    "/v2/a/manifests/..", "/v2/a/blobs/sha256:..%2f..", "/v2/a/blobs/uploads/..%2f..%2fblobs",
])
def test_path_tricks_refused(registry: tuple[str, Path], path: str) -> None:
    addr, _ = registry
    with httpx.Client(base_url=f"http://{addr}") as c:
        r = c.get(path)
        assert r.status_code in (400, 404)
        assert r.json()["errors"][0]["code"] in (
            "NAME_INVALID", "TAG_INVALID", "DIGEST_INVALID", "BLOB_UPLOAD_INVALID", "NOT_FOUND")


def test_basic_auth(tmp_path: Path) -> None:
    ht = tmp_path / "htpasswd"
    ht.write_text("alice:" + bcrypt.hashpw(b"s3cret", bcrypt.gensalt(4)).decode() + "\n")
    proc, addr = _start(tmp_path / "reg", "--htpasswd", str(ht))
    try:
        with httpx.Client(base_url=f"http://{addr}") as c:
            r = c.get("/v2/")
            assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Basic ")
            assert r.json()["errors"][0]["code"] == "UNAUTHORIZED"
            assert c.get("/v2/", auth=("alice", "wrong")).status_code == 401
            tok = base64.b64encode(b"alice:s3cret").decode()
            assert c.get("/v2/", headers={"authorization": f"Basic {tok}"}).status_code == 200
    finally:
        proc.terminate()
        proc.wait(10)


def test_garbage_collect(registry: tuple[str, Path]) -> None:
    addr, root = registry
    with httpx.Client(base_url=f"http://{addr}") as c:
        _push_image(c, "keep", "v1", b"kept layer")
        digest, _ = _push_image(c, "drop", "v1", b"dropped layer")
        orphan = _push_blob(c, "drop", b"orphan")
        assert c.delete(f"/v2/drop/manifests/{digest}").status_code == 202
    removed = set(garbage_collect(root))
    assert {orphan, _sha(b"dropped layer"), digest} <= removed
    assert _sha(b"kept layer") not in removed
    with httpx.Client(base_url=f"http://{addr}") as c:
        assert c.get("/v2/keep/manifests/v1").status_code == 200
        assert c.head(f"/v2/keep/blobs/{_sha(b'kept layer')}").status_code == 200
