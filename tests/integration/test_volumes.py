"""VolumeService and resolve_mounts on real directories and real mounts (tmpfs, bind)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dockyard.errors import Conflict, InvalidParameter, NotFound
from dockyard.services.events import EventBus
from dockyard.services.volumes import ANON_LABEL, VolumeService, _mounted
from dockyard.store.db import Database
from dockyard.store.mounts import anonymous_volume_name, resolve_mounts
from dockyard.wire.container import HostConfig, convert

pytestmark = pytest.mark.root


def _resolve(vs: VolumeService, cid: str, hc: dict[str, Any], image: dict[str, Any], rootfs: Path,
             lookup: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """resolve_mounts for a HostConfig and an image config written as the API's JSON."""
    return resolve_mounts(vs, cid, convert(hc, HostConfig), image.get("Volumes"), rootfs, lookup)


@pytest.fixture
def vs(tmp_path: Path) -> Iterator[VolumeService]:
    db = Database(tmp_path / "d.db")
    svc = VolumeService(db, tmp_path / "root", EventBus())
    yield svc
    svc.unmount_all()
    db.close()
    with open("/proc/self/mountinfo") as f:
        assert str(tmp_path) not in f.read(), "test leaked a mount"


@pytest.fixture
def rootfs(tmp_path: Path) -> Path:
    r = tmp_path / "rootfs"
    (r / "var/lib/app/sub").mkdir(parents=True)
    (r / "var/lib/app/seed.txt").write_text("from image")
    (r / "var/lib/app/sub/deep").write_text("deep")
    os.symlink("seed.txt", r / "var/lib/app/link")
    os.chown(r / "var/lib/app", 1234, 5678)
    os.chmod(r / "var/lib/app", 0o750)
    (r / "etc").mkdir()
    os.symlink("/etc", r / "var/lib/escape")  # image VOLUME through a symlink: stays in the rootfs
    (r / "etc/conf").write_text("c")
    return r


def _no_lookup(ref: str) -> list[dict[str, Any]]:
    raise NotFound(f"No such container: {ref}")


def test_create_inspect_list_remove(vs: VolumeService) -> None:
    v = vs.create("data1", labels={"a": "b"})
    assert v["Name"] == "data1" and v["Driver"] == "local" and v["Scope"] == "local"
    assert v["Labels"] == {"a": "b"} and v["Options"] is None
    assert Path(v["Mountpoint"]).is_dir() and v["Mountpoint"].endswith("/volumes/data1/_data")
    assert vs.create("data1") == v  # existing name: returned as is
    anon = vs.create(None)
    assert len(anon["Name"]) == 64 and anon["Labels"] == {ANON_LABEL: ""}
    assert {x["Name"] for x in vs.list()["Volumes"]} == {"data1", anon["Name"]}
    assert [x["Name"] for x in vs.list({"label": ["a=b"]})["Volumes"]] == ["data1"]
    assert [x["Name"] for x in vs.list({"name": ["ata"]})["Volumes"]] == ["data1"]
    vs.acquire("data1", "c1")
    assert [x["Name"] for x in vs.list({"dangling": ["true"]})["Volumes"]] == [anon["Name"]]
    assert [x["Name"] for x in vs.list({"dangling": {"false": True}})["Volumes"]] == ["data1"]
    with pytest.raises(InvalidParameter, match="invalid filter 'foo'"):
        vs.list({"foo": ["x"]})
    with pytest.raises(Conflict, match=r"remove data1: volume is in use - \[c1\]"):
        vs.remove("data1", force=True)
    assert (Path(v["Mountpoint"])).is_dir()  # no data lost
    vs.release_container("c1")
    vs.remove("data1")
    with pytest.raises(NotFound, match="get data1: no such volume"):
        vs.inspect("data1")
    vs.remove("data1", force=True)  # -f of a missing volume is fine
    assert not Path(v["Mountpoint"]).exists()


@pytest.mark.parametrize(
    ("name", "msg"),
    [("a", "create a: volume name is too short, names should be at least two alphanumeric characters"),
     ("a$b", 'create a$b: "a$b" includes invalid characters for a local volume name, only '
             '"[a-zA-Z0-9][a-zA-Z0-9_.-]" are allowed. If you intended to pass a host directory, use absolute path')],
)
def test_bad_names(vs: VolumeService, name: str, msg: str) -> None:
    with pytest.raises(InvalidParameter) as e:
        vs.create(name)
    assert e.value.message == msg


def test_bad_options(vs: VolumeService) -> None:
    with pytest.raises(InvalidParameter, match='create x1: invalid option: "foo"'):
        vs.create("x1", driver_opts={"foo": "bar"})


def test_prune_anonymous_by_default(vs: VolumeService) -> None:
    named = vs.create("keepme")
    anon = vs.create(None)
    used = vs.create(None)
    vs.acquire(used["Name"], "c9")
    (Path(anon["Mountpoint"]) / "f").write_bytes(b"x" * 100)
    r = vs.prune()
    assert r == {"VolumesDeleted": [anon["Name"]], "SpaceReclaimed": 100}
    r = vs.prune({"all": ["true"], "label!": ["keep"]})
    assert r["VolumesDeleted"] == ["keepme"] and not Path(named["Mountpoint"]).exists()
    vs.release_container("c9", remove_anonymous=True)
    assert not vs.exists(used["Name"])


def test_tmpfs_and_bind_option_volumes_mount_on_use(vs: VolumeService, tmp_path: Path) -> None:
    t = vs.create("tmpv", driver_opts={"type": "tmpfs", "device": "tmpfs", "o": "size=1m"})
    assert t["Options"] == {"type": "tmpfs", "device": "tmpfs", "o": "size=1m"}
    host = tmp_path / "hostdir"
    host.mkdir()
    (host / "precious").write_text("keep")
    vs.create("bindv", driver_opts={"type": "none", "device": str(host), "o": "bind"})
    vs.acquire("tmpv", "c1")
    vs.acquire("bindv", "c1")
    p = vs.mount_path("tmpv")
    assert _mounted(p)
    assert (vs.mount_path("bindv") / "precious").read_text() == "keep"
    vs.release_container("c1")
    assert not _mounted(p) and not _mounted(vs.mount_path.__self__.root / "bindv/_data")  # type: ignore[attr-defined]
    vs.mount_path("bindv")
    vs.remove("bindv")  # unmounts first: removing the volume never deletes the host's files
    assert (host / "precious").read_text() == "keep"
    vs.remove("tmpv")


def test_resolve_mounts_all_kinds(vs: VolumeService, rootfs: Path, tmp_path: Path) -> None:
    hostdir = tmp_path / "created-by-v"
    existing = tmp_path / "existing"
    existing.mkdir()
    hc = {
        "Binds": ["named:/var/lib/app", f"{hostdir}:/h:ro", "/anon"],
        "Mounts": [{"Type": "bind", "Source": str(existing), "Target": "/m", "BindOptions": {"Propagation": "rslave"}},
                   {"Type": "tmpfs", "Target": "/scratch", "TmpfsOptions": {"SizeBytes": 1 << 20}},
                   {"Type": "volume", "Target": "/nocopy", "Source": "nc",
                    "VolumeOptions": {"NoCopy": True}}],
        "Tmpfs": {"/run": "size=64k,mode=755"},
    }
    image = {"Volumes": {"/var/lib/escape": {}, "/run": {}, "/h": {}}}
    oci, docker = _resolve(vs, "cid1", hc, image, rootfs, _no_lookup)
    assert hostdir.is_dir()  # -v of a missing host path creates it
    by_dst = {m["Destination"]: m for m in docker}
    assert set(by_dst) == {"/var/lib/app", "/h", "/anon", "/m", "/scratch", "/nocopy", "/var/lib/escape"}
    assert by_dst["/var/lib/app"] == {
        "Type": "volume", "Name": "named", "Source": vs.inspect("named")["Mountpoint"], "Destination": "/var/lib/app",
        "Driver": "local", "Mode": "z", "RW": True, "Propagation": ""}
    assert by_dst["/h"] == {"Type": "bind", "Source": str(hostdir), "Destination": "/h", "Mode": "ro", "RW": False,
                            "Propagation": "rprivate"}
    assert by_dst["/anon"]["Name"] == anonymous_volume_name("cid1", "/anon")
    assert by_dst["/scratch"] == {"Type": "tmpfs", "Source": "", "Destination": "/scratch", "Mode": "", "RW": True,
                                  "Propagation": ""}
    # copy-up kept content, owners, modes and symlinks
    data = Path(by_dst["/var/lib/app"]["Source"])
    assert (data / "seed.txt").read_text() == "from image" and (data / "sub/deep").read_text() == "deep"
    assert os.readlink(data / "link") == "seed.txt"
    st = os.stat(data)
    assert (st.st_uid, st.st_gid, st.st_mode & 0o777) == (1234, 5678, 0o750)
    # an image VOLUME behind a symlink to /etc is the container's /etc, never the host's
    esc = Path(by_dst["/var/lib/escape"]["Source"])
    assert (esc / "conf").read_text() == "c" and not (esc / "passwd").exists()
    assert not any(Path(by_dst["/nocopy"]["Source"]).iterdir())
    o = {m["destination"]: m for m in oci}
    assert o["/h"]["options"] == ["rbind", "rprivate", "ro"] and o["/m"]["options"] == ["rbind", "rslave", "rw"]
    assert o["/run"] == {"destination": "/run", "type": "tmpfs", "source": "tmpfs",
                         "options": ["noexec", "nosuid", "nodev", "size=64k", "mode=755", "rprivate"]}
    assert "size=1024k" in o["/scratch"]["options"]
    # again (a restart): same volumes, existing data untouched
    (data / "seed.txt").write_text("changed")
    _oci2, docker2 = _resolve(vs, "cid1", hc, image, rootfs, _no_lookup)
    assert sorted(m.get("Name", "") for m in docker2) == sorted(m.get("Name", "") for m in docker)
    assert (data / "seed.txt").read_text() == "changed"
    with pytest.raises(Conflict):
        vs.remove("named")
    # --volumes-from, read-only
    oci3, docker3 = _resolve(vs, "cid2", {"VolumesFrom": ["cid1:ro"]}, {}, rootfs,
                                   lambda ref: docker if ref == "cid1" else _no_lookup(ref))
    d3 = {m["Destination"]: m for m in docker3}
    assert d3["/var/lib/app"]["Name"] == "named" and d3["/var/lib/app"]["RW"] is False and "/scratch" not in d3
    vs.release_container("cid1", remove_anonymous=True)
    assert vs.exists(by_dst["/anon"]["Name"])  # still used by cid2
    vs.release_container("cid2", remove_anonymous=True)
    assert not vs.exists(by_dst["/anon"]["Name"]) and vs.exists("named")


def test_resolve_mounts_errors(vs: VolumeService, rootfs: Path) -> None:
    with pytest.raises(InvalidParameter, match="bind source path does not exist: /nonexistent-dockyard"):
        _resolve(vs, "c", {"Mounts": [{"Type": "bind", "Source": "/nonexistent-dockyard", "Target": "/x"}]},
                       {}, rootfs, _no_lookup)
    assert not os.path.exists("/nonexistent-dockyard")
    with pytest.raises(InvalidParameter, match="Duplicate mount point: /x"):
        _resolve(vs, "c", {"Binds": ["a1:/x", "b1:/x"]}, {}, rootfs, _no_lookup)
    with pytest.raises(InvalidParameter, match="includes invalid characters"):
        _resolve(vs, "c", {"Binds": ["rel/dir:/x"]}, {}, rootfs, _no_lookup)
    with pytest.raises(NotFound):
        _resolve(vs, "c", {"VolumesFrom": ["ghost"]}, {}, rootfs, _no_lookup)


def test_tmpfs_volume_data_visible_through_mount(vs: VolumeService, rootfs: Path) -> None:
    vs.create("tv", driver_opts={"type": "tmpfs", "device": "tmpfs", "o": "size=2m"})
    _oci, docker = _resolve(vs, "c5", {"Binds": ["tv:/var/lib/app"]}, {}, rootfs, _no_lookup)
    src = Path(docker[0]["Source"])
    assert _mounted(src) and (src / "seed.txt").read_text() == "from image"
    out = subprocess.run(["findmnt", "-n", "-o", "FSTYPE", str(src)], capture_output=True, text=True).stdout
    assert out.strip() == "tmpfs"
    vs.release_container("c5")
    assert not _mounted(src)
