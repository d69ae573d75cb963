"""ImageService against real fixtures: load (OCI layout, docker-archive), overlay view, save round
trip, evil archives, import, tag/delete/prune. No daemon needed."""

from __future__ import annotations

import asyncio
import io
import json
import os
import shutil
import subprocess
import tarfile
from pathlib import Path
from typing import Any

import pytest

from dockyard.errors import Conflict, InvalidParameter, NotFound
from dockyard.services.events import EventBus
from dockyard.services.images import ImageService
from dockyard.store.content import ContentStore
from dockyard.store.db import Database
from dockyard.store.snapshots import Snapshotter
from tests.conftest import SHARED

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")

PREBUILT = SHARED / "images" / "prebuilt"


def layout_tar(layout: Path) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for p in sorted(layout.rglob("*")):
            if p.name != "fixture.json":
                tf.add(p, arcname=str(p.relative_to(layout)), recursive=False)
    return buf.getvalue()


def new_service(root: Path) -> ImageService:
    root.mkdir(parents=True, exist_ok=True)
    return ImageService(Database(root / "dockyard.db"), ContentStore(root / "content"),
                        Snapshotter(root / "overlay"), EventBus())


def load(svc: ImageService, data: bytes) -> list[dict[str, Any]]:
    return asyncio.run(svc.load(io.BytesIO(data)))


def save(svc: ImageService, names: list[str]) -> bytes:
    async def run() -> bytes:
        out = b""
        async for chunk in await svc.save(names):
            out += chunk
        return out
    return asyncio.run(run())


@pytest.fixture
def svc(tmp_path: Path) -> ImageService:
    return new_service(tmp_path / "root")


def loaded(svc: ImageService, name: str) -> str:
    msgs = load(svc, layout_tar(PREBUILT / name))
    image_id = msgs[-1]["stream"].split("Loaded image ID: ")[1].strip()
    svc.tag(image_id, name, "latest")
    return image_id


def leftovers(root: Path) -> list[str]:
    return [p.name for p in (root / "content" / "ingest").iterdir()] + \
        [p.name for p in (root / "overlay").iterdir()] + [p.name for p in (root / "content/blobs/sha256").iterdir()]


def test_load_layered_and_merged_view(svc: ImageService, tmp_path: Path) -> None:
    loaded(svc, "layered")
    img = svc.resolve("layered")
    assert img.repo_tags == ["layered:latest"]
    dirs = svc.layer_dirs(img.id)
    assert len(dirs) == 3
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    lower = ":".join(str(d) for d in reversed(dirs))
    subprocess.run(["mount", "-t", "overlay", "overlay", "-o", f"lowerdir={lower}", str(mnt)], check=True)
    try:
        found = sorted(["/data"] + ["/" + str(p.relative_to(mnt)) for p in (mnt / "data").rglob("*")])
        assert not (mnt / "home").exists()
        assert (mnt / "data/keep.txt").read_text() == "v2\n"
        assert (mnt / "bin/busybox").exists()
    finally:
        subprocess.run(["umount", str(mnt)], check=True)
    expected = json.loads((PREBUILT / "layered/fixture.json").read_text())["expected_find_data"]
    assert found == sorted(expected)


def test_views_inspect_history_list(svc: ImageService) -> None:
    image_id = loaded(svc, "layered")
    ins = svc.inspect("layered:latest")
    assert ins["Id"] == image_id and ins["RepoTags"] == ["layered:latest"]
    assert ins["Config"]["Cmd"] == ["/data/hello.sh"] and ins["Config"]["WorkingDir"] == "/data"
    assert ins["RootFS"]["Type"] == "layers" and len(ins["RootFS"]["Layers"]) == 3
    assert ins["GraphDriver"]["Name"] == "overlay2" and ins["Created"].startswith("2025-01-01T00:00:00")
    assert ins["Metadata"]["LastTagTime"] != "0001-01-01T00:00:00Z"
    hist = svc.history(image_id[7:19])
    assert hist[0]["Id"] == image_id and hist[0]["Tags"] == ["layered:latest"]
    assert all(h["Id"] == "<missing>" for h in hist[1:])
    assert sum(h["Size"] for h in hist) == ins["Size"]
    assert [i["Id"] for i in svc.list({"reference": ["layer*"]})] == [image_id]
    assert svc.list({"reference": ["nope"]}) == []
    assert svc.list({"dangling": ["true"]}) == []
    assert svc.list({"label": ["fixture.purpose=layer semantics"]})[0]["Id"] == image_id
    for ref in ("layered", "docker.io/library/layered:latest", image_id, image_id[7:], image_id[7:10]):
        assert svc.resolve(ref).id == image_id
    with pytest.raises(NotFound, match="No such image: nope:latest"):
        svc.resolve("nope")


def test_skopeo_docker_archive_loads(svc: ImageService, tmp_path: Path) -> None:
    out = tmp_path / "x.tar"
    subprocess.run(["skopeo", "copy", "-q", f"oci:{PREBUILT / 'busybox'}:latest",
                    f"docker-archive:{out}:busybox:latest"], check=True)
    msgs = load(svc, out.read_bytes())
    assert msgs == [{"stream": "Loaded image: busybox:latest\n"}]
    assert svc.resolve("busybox").config["config"]["Cmd"] == ["sh"]


def test_save_load_round_trip(svc: ImageService, tmp_path: Path) -> None:
    bid = loaded(svc, "busybox")
    lid = loaded(svc, "layered")
    data = save(svc, ["busybox", "layered:latest"])
    names = tarfile.open(fileobj=io.BytesIO(data)).getnames()
    assert {"manifest.json", "index.json", "oci-layout"} <= set(names)
    other = new_service(tmp_path / "other")
    msgs = load(other, data)
    assert {"stream": "Loaded image: busybox:latest\n"} in msgs
    assert {"stream": "Loaded image: layered:latest\n"} in msgs
    assert other.resolve("busybox").id == bid and other.resolve("layered").id == lid
    assert other.inspect("layered")["RootFS"] == svc.inspect("layered")["RootFS"]
    # skopeo reads it too
    (tmp_path / "s.tar").write_bytes(data)
    r = subprocess.run(["skopeo", "inspect", f"docker-archive:{tmp_path / 's.tar'}:layered:latest"],
                       check=True, capture_output=True)
    assert json.loads(r.stdout)["Layers"]


def _docker_archive(layer: bytes) -> bytes:
    import hashlib
    diff_id = "sha256:" + hashlib.sha256(layer).hexdigest()
    config = json.dumps({"architecture": "amd64", "os": "linux", "config": {},
                         "rootfs": {"type": "layers", "diff_ids": [diff_id]}}).encode()
    manifest = json.dumps([{"Config": "c.json", "RepoTags": ["evil:latest"], "Layers": ["l/layer.tar"]}]).encode()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for name, data in (("manifest.json", manifest), ("c.json", config), ("l/layer.tar", layer)):
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            tf.addfile(ti, io.BytesIO(data))
    return buf.getvalue()


def _layer(entries: list[tuple[str, bytes, str]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for name, type_, link in entries:
            ti = tarfile.TarInfo(name)
            ti.type = type_
            ti.linkname = link
            if type_ == tarfile.CHRTYPE:
                ti.devmajor, ti.devminor = 1, 3
            tf.addfile(ti, io.BytesIO(b"") if type_ == tarfile.REGTYPE else None)
    return buf.getvalue()


@pytest.mark.parametrize("entries", [
    [("../x", tarfile.REGTYPE, "")],
    [("/abs", tarfile.REGTYPE, "")],
    [("l", tarfile.SYMTYPE, "/tmp"), ("l/x", tarfile.REGTYPE, "")],
    [("pw", tarfile.LNKTYPE, "/etc/passwd")],
    [("null", tarfile.CHRTYPE, "")],
], ids=["dotdot", "absolute", "through-symlink", "hardlink-out", "device"])
def test_evil_archives_register_nothing(svc: ImageService, tmp_path: Path, entries: list[Any]) -> None:
    with pytest.raises(InvalidParameter):
        load(svc, _docker_archive(_layer(entries)))
    assert svc.list() == []
    assert leftovers(tmp_path / "root") == []


def test_evil_outer_archive_names(svc: ImageService, tmp_path: Path) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        manifest = json.dumps([{"Config": "../../etc/passwd", "Layers": []}]).encode()
        ti = tarfile.TarInfo("manifest.json")
        ti.size = len(manifest)
        tf.addfile(ti, io.BytesIO(manifest))
    with pytest.raises(InvalidParameter):
        load(svc, buf.getvalue())
    with pytest.raises(InvalidParameter):
        load(svc, b"not a tar at all" * 100)
    assert leftovers(tmp_path / "root") == []


def test_tag_delete_and_conflicts(svc: ImageService, tmp_path: Path) -> None:
    image_id = loaded(svc, "busybox")
    svc.tag("busybox", "myrepo/bb", "v1")
    assert svc.delete("myrepo/bb:v1") == [{"Untagged": "myrepo/bb:v1"}]
    svc.tag("busybox", "other", "x")
    with pytest.raises(Conflict, match="referenced in multiple repositories"):
        svc.delete(image_id[7:19])
    users = [("c" * 64, False)]  # what the container service would answer: one stopped container
    svc.containers_using = lambda iid: list(users) if iid == image_id else []
    with pytest.raises(Conflict, match='unable to remove repository reference "other:x" \\(must force\\)'):
        svc.delete("busybox") and svc.delete("other:x")
    with pytest.raises(Conflict, match=r"\(must be forced\) - image is being used by stopped container cccccccccccc"):
        svc.delete(image_id[7:], force=False)
    users[0] = ("c" * 64, True)
    with pytest.raises(Conflict, match=r"\(cannot be forced\) - image is being used by running container"):
        svc.delete(image_id, force=True)
    users.clear()
    res = svc.delete(image_id, force=True)
    assert res[:2] == [{"Untagged": "other:x"}, {"Deleted": image_id}]  # busybox:latest went above
    assert svc.list() == []
    assert leftovers(tmp_path / "root") == []


def test_shared_layers_survive_delete_and_prune(svc: ImageService, tmp_path: Path) -> None:
    loaded(svc, "busybox")
    lid = loaded(svc, "layered")
    bottom = svc.layer_dirs("busybox")[0]
    svc.delete("layered")
    assert bottom.exists() and (bottom / "bin/busybox").exists()
    assert not any(p["Id"] == lid for p in svc.list())
    load(svc, layout_tar(PREBUILT / "layered"))  # dangling now
    assert [i["Id"] for i in svc.list({"dangling": ["true"]})] == [lid]
    res = svc.prune()
    assert res["ImagesDeleted"][0] == {"Deleted": lid} and res["SpaceReclaimed"] > 0
    assert bottom.exists()
    assert svc.prune({"dangling": ["false"]})["ImagesDeleted"]
    assert leftovers(tmp_path / "root") == []


def test_import_with_changes(svc: ImageService, tmp_path: Path) -> None:
    rootfs = tmp_path / "rootfs"
    (rootfs / "bin").mkdir(parents=True)
    (rootfs / "bin/hello").write_text("hi")
    tarball = tmp_path / "r.tar.gz"
    subprocess.run(["tar", "-C", str(rootfs), "-czf", str(tarball), "."], check=True)
    changes = ['CMD ["/bin/hello"]', "ENV A=1 B=two", "EXPOSE 80", "WORKDIR /bin", "LABEL x=y",
               "ENTRYPOINT /bin/sh -c", "VOLUME /data", "USER 1000", "STOPSIGNAL SIGKILL"]
    with open(tarball, "rb") as f:
        out = asyncio.run(svc.import_(f, "imp", "v1", changes, "my msg"))
    image_id = out[0]["status"]
    img = svc.resolve("imp:v1")
    assert img.id == image_id
    c = img.config["config"]
    assert c["Cmd"] == ["/bin/hello"] and c["Env"] == ["A=1", "B=two"] and c["ExposedPorts"] == {"80/tcp": {}}
    assert c["Entrypoint"] == ["/bin/sh", "-c", "/bin/sh -c"] and c["Volumes"] == {"/data": {}}
    assert c["WorkingDir"] == "/bin" and c["User"] == "1000" and c["StopSignal"] == "SIGKILL"
    assert svc.history("imp:v1")[0]["Comment"] == "my msg"
    assert (svc.layer_dirs(image_id)[0] / "bin/hello").read_text() == "hi"
    data = save(svc, ["imp:v1"])  # a compressed layer blob saves and reloads
    other = new_service(tmp_path / "o")
    assert load(other, data) == [{"stream": "Loaded image: imp:v1\n"}]
    shutil.rmtree(tmp_path / "o")


def test_startup_sweep_frees_unreferenced_blobs(svc: ImageService, tmp_path: Path) -> None:
    from dockyard.registry.client.layermap import LayerMap

    loaded(svc, "busybox")
    lid = loaded(svc, "layered")
    gone_diff = svc.inspect("layered")["RootFS"]["Layers"][-1]
    before = set(svc.content.digests())
    manifest = svc.content.write(b'{"schemaVersion": 2, "layers": []}')  # a pulled manifest: nothing names it
    pushed = svc.content.write(b"a layer gzipped for a push")  # recorded where it came from, for a layer
    LayerMap(svc.db).record(gone_diff, pushed, "application/vnd.docker.image.rootfs.diff.tar.gzip", 26, "", "")
    svc.delete("layered")
    assert svc.content.has(manifest) and svc.content.has(pushed)  # rmi cannot know about these
    svc.sweep()  # what the daemon runs at start
    assert not svc.content.has(manifest) and not svc.content.has(pushed)
    assert not svc.db.query("SELECT 1 FROM distribution_layers WHERE diff_id=?", (gone_diff,))
    # The image left keeps every blob it needs: it still saves and loads elsewhere.
    assert set(svc.content.digests()) <= before and svc.content.has(svc.resolve("busybox").id)
    other = new_service(tmp_path / "other")
    load(other, save(svc, ["busybox"]))
    assert other.resolve("busybox").id == svc.resolve("busybox").id
    assert lid not in {i["Id"] for i in svc.list()}
