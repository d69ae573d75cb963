"""`docker load` of an OCI layout carrying OCI 1.1 referrers (a signature, and a signature of that), and
`docker save` of the image: the manifest keeps its digest and the referrers come back byte for byte,
listed in index.json as skopeo and oras write them."""

from __future__ import annotations

import hashlib
import json
import shutil
import tarfile
from pathlib import Path
from typing import Any

from tests.conftest import SHARED, Daemon

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
EMPTY = "application/vnd.oci.empty.v1+json"


def _sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _layout(tmp: Path) -> tuple[Path, dict[str, Any], list[bytes]]:
    """busybox under a config of its own (so an image of its own), a signature of it, and one of that."""
    layout = tmp / "layout"
    shutil.copytree(SHARED / "images/prebuilt/busybox", layout)
    blobs = layout / "blobs/sha256"

    def put(data: bytes) -> str:
        (blobs / _sha(data).split(":")[1]).write_bytes(data)
        return _sha(data)

    index = json.loads((layout / "index.json").read_text())
    base = json.loads((blobs / index["manifests"][0]["digest"].split(":")[1]).read_bytes())
    config = json.loads((blobs / base["config"]["digest"].split(":")[1]).read_bytes())
    config.setdefault("config", {})["Labels"] = {"test": "save-load-referrers"}
    raw_cfg = json.dumps(config).encode()
    base["config"] = {**base["config"], "digest": put(raw_cfg), "size": len(raw_cfg)}
    raw = json.dumps(base).encode()
    subject = {"mediaType": OCI_MANIFEST, "digest": put(raw), "size": len(raw)}
    arts: list[bytes] = []
    for payload, of in ((b"signature", subject), (b"signature of the signature", None)):
        subj = of or {"mediaType": OCI_MANIFEST, "digest": _sha(arts[-1]), "size": len(arts[-1])}
        man = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": "application/vnd.example.sig",
               "config": {"mediaType": EMPTY, "digest": put(b"{}"), "size": 2},
               "layers": [{"mediaType": "application/vnd.example.sig.payload", "digest": put(payload),
                           "size": len(payload)}],
               "subject": subj}
        arts.append(json.dumps(man).encode())
        put(arts[-1])
    index["manifests"] = [
        {**subject, "annotations": {"io.containerd.image.name": "example.com/signed:v1",
                                    "org.opencontainers.image.ref.name": "v1"}},
        *({"mediaType": OCI_MANIFEST, "digest": _sha(a), "size": len(a)} for a in arts)]
    (layout / "index.json").write_text(json.dumps(index))
    return layout, subject, arts


def test_save_and_load_keep_referrers(clean_daemon: Daemon, tmp_path: Path) -> None:
    d = clean_daemon
    layout, subject, arts = _layout(tmp_path)
    with tarfile.open(tmp_path / "in.tar", "w") as tf:
        for p in sorted(layout.rglob("*")):
            tf.add(p, str(p.relative_to(layout)), recursive=False)
    try:
        out = d.docker("load", "-i", str(tmp_path / "in.tar")).stdout.decode()
        assert "Loaded image: example.com/signed:v1" in out, out  # the artifacts are no images of their own
        d.docker("save", "-o", str(tmp_path / "out.tar"), "example.com/signed:v1")
        with tarfile.open(tmp_path / "out.tar") as tf:
            index = json.loads(tf.extractfile("index.json").read())  # type: ignore[union-attr]
            digests = [m["digest"] for m in index["manifests"]]
            assert digests == [subject["digest"], *(_sha(a) for a in arts)], index
            assert [m.get("artifactType") for m in index["manifests"][1:]] == ["application/vnd.example.sig"] * 2
            for a in arts:
                assert tf.extractfile("blobs/sha256/" + _sha(a).split(":")[1]).read() == a  # type: ignore[union-attr]
                for blob in [json.loads(a)["config"], *json.loads(a)["layers"]]:
                    got = tf.extractfile("blobs/sha256/" + blob["digest"].split(":")[1]).read()  # type: ignore[union-attr]
                    assert _sha(got) == blob["digest"]
            man = tf.extractfile("blobs/sha256/" + subject["digest"].split(":")[1]).read()  # type: ignore[union-attr]
            assert _sha(man) == subject["digest"]
        # the saved archive loads again (after the image is gone) with its referrers
        d.docker("rmi", "example.com/signed:v1")
        d.docker("load", "-i", str(tmp_path / "out.tar"))
        d.docker("save", "-o", str(tmp_path / "again.tar"), "example.com/signed:v1")
        with tarfile.open(tmp_path / "again.tar") as tf:
            index = json.loads(tf.extractfile("index.json").read())  # type: ignore[union-attr]
            assert [m["digest"] for m in index["manifests"]] == digests
    finally:
        d.docker("rmi", "example.com/signed:v1", check=False)


def test_referrers_survive_the_daemons_content_sweep(tmp_path: Path) -> None:
    """The content store is swept at start: the loaded manifest and referrers are kept while their image is."""
    from tests.conftest import own_daemon

    layout, subject, arts = _layout(tmp_path)
    with tarfile.open(tmp_path / "in.tar", "w") as tf:
        for p in sorted(layout.rglob("*")):
            tf.add(p, str(p.relative_to(layout)), recursive=False)
    with own_daemon("dy-refs-", busybox=False) as d:
        d.docker("load", "-i", str(tmp_path / "in.tar"))
        d.stop()
        d.start()
        d.docker("save", "-o", str(tmp_path / "out.tar"), "example.com/signed:v1")
        with tarfile.open(tmp_path / "out.tar") as tf:
            index = json.loads(tf.extractfile("index.json").read())  # type: ignore[union-attr]
        assert [m["digest"] for m in index["manifests"]] == [subject["digest"], *(_sha(a) for a in arts)]


def test_push_with_referrers_of_a_loaded_image(clean_daemon: Daemon, tmp_path: Path) -> None:
    """An image loaded from an OCI layout with referrers: `push --with-referrers` sends the manifest as
    loaded and the referrers (from the content store) to the registry, same digests."""
    import httpx

    from tests.integration.test_registry_server import _start

    d = clean_daemon
    layout, subject, arts = _layout(tmp_path)
    with tarfile.open(tmp_path / "in.tar", "w") as tf:
        for p in sorted(layout.rglob("*")):
            tf.add(p, str(p.relative_to(layout)), recursive=False)
    proc, addr = _start(tmp_path / "reg")
    try:
        d.docker("load", "-i", str(tmp_path / "in.tar"))
        d.docker("tag", "example.com/signed:v1", f"{addr}/signed:v1")
        d.dockyard("push", "--with-referrers", f"{addr}/signed:v1")
        with httpx.Client(base_url=f"http://{addr}") as c:
            r = c.head("/v2/signed/manifests/v1", headers={"accept": OCI_MANIFEST})
            assert r.headers["docker-content-digest"] == subject["digest"]
            assert [m["digest"] for m in c.get(f"/v2/signed/referrers/{subject['digest']}").json()["manifests"]] \
                == [_sha(arts[0])]
            assert [m["digest"] for m in c.get(f"/v2/signed/referrers/{_sha(arts[0])}").json()["manifests"]] \
                == [_sha(arts[1])]
            for a in arts:
                assert c.get(f"/v2/signed/manifests/{_sha(a)}", headers={"accept": OCI_MANIFEST}).content == a
                for blob in json.loads(a)["layers"]:
                    assert _sha(c.get(f"/v2/signed/blobs/{blob['digest']}").content) == blob["digest"]
    finally:
        for ref in ("example.com/signed:v1", f"{addr}/signed:v1"):
            d.docker("rmi", ref, check=False)
        proc.terminate()
        proc.wait(10)
