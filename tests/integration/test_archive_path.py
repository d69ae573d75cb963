"""docker cp's container side against real directories, including CVE-2018-15664-style symlink attacks."""

from __future__ import annotations

import base64
import io
import json
import os
import tarfile
import threading
from pathlib import Path

import pytest

from dockyard.errors import Forbidden, InvalidParameter, NotFound
from dockyard.store.archive_path import get_archive, lookup_user, put_archive, stat_header, stat_path

HOST_SECRET = "host-secret-must-not-leak"


@pytest.fixture
def rootfs(tmp_path: Path) -> Path:
    r = tmp_path / "rootfs"
    (r / "etc").mkdir(parents=True)
    (r / "etc/passwd").write_text("root:x:0:0:root:/root:/bin/sh\napp:x:1000:1001::/home/app:/bin/sh\n")
    (r / "etc/group").write_text("root:x:0:\nstaff:x:50:\n")
    (r / "bin").mkdir()
    (r / "bin/busybox").write_bytes(b"\x7fELF" + b"x" * 5000)
    os.symlink("busybox", r / "bin/sh")
    os.symlink("/", r / "rootlink")
    os.symlink("/etc", r / "etclink")
    os.symlink("../../../../../etc", r / "bin/climb")
    (r / "tmp").mkdir()
    return r


def _tar(entries: list[tuple[str, str, bytes | str]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for kind, name, payload in entries:
            ti = tarfile.TarInfo(name)
            if kind == "file":
                data = payload if isinstance(payload, bytes) else payload.encode()
                ti.size = len(data)
                ti.mode = 0o644
                tf.addfile(ti, io.BytesIO(data))
            elif kind == "dir":
                ti.type = tarfile.DIRTYPE
                ti.mode = 0o755
                tf.addfile(ti)
            elif kind == "sym":
                ti.type = tarfile.SYMTYPE
                ti.linkname = str(payload)
                tf.addfile(ti)
            elif kind == "link":
                ti.type = tarfile.LNKTYPE
                ti.linkname = str(payload)
                tf.addfile(ti)
    return buf.getvalue()


def _read(rootfs: Path, path: str, mounts: list[dict] | None = None) -> dict[str, bytes]:
    data = b"".join(get_archive(rootfs, path, mounts))
    out: dict[str, bytes] = {}
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        for m in tf:
            f = tf.extractfile(m) if m.isreg() else None
            out[m.name] = f.read() if f else (b"->" + m.linkname.encode() if m.linkname else b"")
    return out


def test_stat_shapes(rootfs: Path) -> None:
    st = stat_path(rootfs, "/bin/sh")
    assert st["name"] == "sh" and st["linkTarget"] == "/bin/busybox"
    assert st["mode"] & (1 << 27)  # Go's ModeSymlink
    d = stat_path(rootfs, "/etc/")
    assert d["name"] == "etc" and d["mode"] & (1 << 31) and d["mode"] & 0o777 == 0o755
    assert stat_path(rootfs, "/etc/.")["name"] == "."
    assert stat_path(rootfs, "/rootlink")["linkTarget"] == "/"
    assert stat_path(rootfs, "/bin/climb")["linkTarget"] == "/etc"
    assert json.loads(base64.b64decode(stat_header(st)))["name"] == "sh"
    with pytest.raises(NotFound, match="Could not find the file /nope in container c1"):
        stat_path(rootfs, "/nope", ref="c1")


def test_get_names_like_docker(rootfs: Path) -> None:
    # (tarfile drops the trailing "/" of directory names when reading)
    assert set(_read(rootfs, "/etc")) == {"etc", "etc/passwd", "etc/group"}
    assert set(_read(rootfs, "/etc/.")) == {".", "./passwd", "./group"}
    assert _read(rootfs, "/bin/sh") == {"sh": b"->busybox"}  # the last element is not followed
    top = _read(rootfs, "/")
    assert "/etc/passwd" in top and "/bin/sh" in top


@pytest.mark.parametrize(
    "path",
    ["/etclink/passwd", "/rootlink/etc/passwd", "/../../../etc/passwd", "/bin/climb/passwd",
     "/rootlink/rootlink/../../etc/passwd", "/etclink/../../../../etc/passwd"],
)
def test_get_symlinks_stay_in_container(rootfs: Path, path: str) -> None:
    files = _read(rootfs, path)
    assert files == {"passwd": (rootfs / "etc/passwd").read_bytes()}


def test_get_symlink_dir_followed_with_trailing_slash(rootfs: Path) -> None:
    files = _read(rootfs, "/rootlink/")
    assert "rootlink/etc/passwd" in files and files["rootlink/etc/passwd"].startswith(b"root:x:0:0")
    assert not any(n.startswith("rootlink/proc") or n.startswith("rootlink/work") for n in files)


def test_symlink_loop_is_an_error(rootfs: Path) -> None:
    os.symlink("loop", rootfs / "loop")
    with pytest.raises(InvalidParameter):
        stat_path(rootfs, "/loop/x")


def test_put_roundtrip_and_ownership(rootfs: Path) -> None:
    data = _tar([("dir", "d", b""), ("file", "d/a.txt", "hello"), ("link", "d/b.txt", "d/a.txt"),
                 ("sym", "d/s", "/etc/passwd"), ("file", "e/deep/f", "missing parents")])
    put_archive(rootfs, "/tmp", iter([data[:700], data[700:]]))
    assert (rootfs / "tmp/d/a.txt").read_text() == "hello"
    assert os.stat(rootfs / "tmp/d/b.txt").st_ino == os.stat(rootfs / "tmp/d/a.txt").st_ino
    assert os.readlink(rootfs / "tmp/d/s") == "/etc/passwd"
    assert (rootfs / "tmp/e/deep/f").read_text() == "missing parents"
    assert _read(rootfs, "/tmp/d")["d/a.txt"] == b"hello"
    uid, gid = lookup_user(rootfs, "app")
    assert (uid, gid) == (1000, 1001) and lookup_user(rootfs, "app:staff") == (1000, 50)
    put_archive(rootfs, "/tmp", io.BytesIO(_tar([("file", "owned", "x")])), copy_uid_gid=True, chown=(uid, gid))
    st = os.stat(rootfs / "tmp/owned")
    assert (st.st_uid, st.st_gid) == (1000, 1001)


def test_put_errors(rootfs: Path) -> None:
    data = _tar([("file", "x", "y")])
    with pytest.raises(NotFound):
        put_archive(rootfs, "/nope", io.BytesIO(data))
    with pytest.raises(InvalidParameter, match="extraction point is not a directory"):
        put_archive(rootfs, "/etc/passwd", io.BytesIO(data))
    with pytest.raises(Forbidden, match="rootfs is marked read-only"):
        put_archive(rootfs, "/tmp", io.BytesIO(data), readonly_rootfs=True)
    (rootfs / "tmp/adir").mkdir()
    with pytest.raises(InvalidParameter, match="cannot overwrite directory"):
        put_archive(rootfs, "/tmp", io.BytesIO(_tar([("file", "adir", "z")])), no_overwrite_dir_non_dir=True)
    with pytest.raises(InvalidParameter, match="cannot overwrite non-directory"):
        put_archive(rootfs, "/etc", io.BytesIO(_tar([("dir", "passwd", b"")])), no_overwrite_dir_non_dir=True)
    put_archive(rootfs, "/tmp", io.BytesIO(_tar([("file", "adir", "z")])))  # allowed without the flag
    assert (rootfs / "tmp/adir").read_text() == "z"


def test_put_into_symlink_to_root_lands_in_container(rootfs: Path, tmp_path: Path) -> None:
    put_archive(rootfs, "/rootlink", io.BytesIO(_tar([("file", "dockyard-cve-test", HOST_SECRET)])))
    assert (rootfs / "dockyard-cve-test").read_text() == HOST_SECRET
    assert not Path("/dockyard-cve-test").exists()


def test_put_tar_symlink_then_file_through_it(rootfs: Path) -> None:
    # The classic: an entry makes x -> /etc (or ../../..), the next writes x/pwned through it.
    evil = _tar([("sym", "x", "/etc"), ("file", "x/dockyard-pwned", "p"),
                 ("sym", "y", "../../../../../../etc"), ("file", "y/dockyard-pwned2", "q")])
    put_archive(rootfs, "/tmp", io.BytesIO(evil))
    assert (rootfs / "etc/dockyard-pwned").read_text() == "p"
    assert (rootfs / "etc/dockyard-pwned2").read_text() == "q"
    assert not Path("/etc/dockyard-pwned").exists() and not Path("/etc/dockyard-pwned2").exists()


def test_put_refuses_dotdot_and_strips_absolute(rootfs: Path, tmp_path: Path) -> None:
    with pytest.raises(InvalidParameter, match="outside of the extraction point"):
        put_archive(rootfs, "/tmp", io.BytesIO(_tar([("file", "../../outside", "x")])))
    assert not (tmp_path / "outside").exists() and not (rootfs / "outside").exists()
    put_archive(rootfs, "/tmp", io.BytesIO(_tar([("file", "/abs", "x")])))
    assert (rootfs / "tmp/abs").read_text() == "x"
    with pytest.raises(InvalidParameter):
        put_archive(rootfs, "/tmp", io.BytesIO(_tar([("link", "hl", "../../../etc/shadow")])))


def test_mounts_are_mapped(rootfs: Path, tmp_path: Path) -> None:
    vol = tmp_path / "vol"
    vol.mkdir()
    (vol / "in-volume").write_text("v")
    os.symlink("/etc/passwd", vol / "pw")  # inside a volume, "/" is still the container root
    ro = tmp_path / "ro"
    ro.mkdir()
    (rootfs / "data").mkdir()
    mounts = [{"Type": "volume", "Source": str(vol), "Destination": "/data", "RW": True},
              {"Type": "bind", "Source": str(ro), "Destination": "/ro", "RW": False}]
    assert _read(rootfs, "/data/in-volume", mounts) == {"in-volume": b"v"}
    assert _read(rootfs, "/data/pw/", mounts)["pw"].startswith(b"root:x:0:0")
    assert "/data/in-volume" in _read(rootfs, "/", mounts)
    put_archive(rootfs, "/data", io.BytesIO(_tar([("file", "new", "n")])), mounts, readonly_rootfs=True)
    assert (vol / "new").read_text() == "n" and not (rootfs / "data/new").exists()
    put_archive(rootfs, "/", io.BytesIO(_tar([("file", "data/new2", "n2")])), mounts)
    assert (vol / "new2").read_text() == "n2"
    with pytest.raises(Forbidden, match="mounted volume is marked read-only"):
        put_archive(rootfs, "/ro", io.BytesIO(_tar([("file", "x", "x")])), mounts)


def test_symlink_swapped_during_get_never_leaks(rootfs: Path, tmp_path: Path) -> None:
    """A racer flips /tmp/sw between a real dir and a symlink to / while we read /tmp/sw/etc/passwd."""
    safe = rootfs / "tmp/safe"
    (safe / "etc").mkdir(parents=True)
    (safe / "etc/passwd").write_text("safe")
    host_dir = tmp_path / "hostside"
    (host_dir / "etc").mkdir(parents=True)
    (host_dir / "etc/passwd").write_text(HOST_SECRET)
    link = rootfs / "tmp/sw"
    stop = threading.Event()

    def racer() -> None:
        while not stop.is_set():
            for target in (str(host_dir), "safe", "/"):
                tmp = rootfs / "tmp/sw.new"
                try:
                    os.symlink(target, tmp)
                    os.replace(tmp, link)
                except FileExistsError:
                    pass

    t = threading.Thread(target=racer)
    t.start()
    try:
        for _ in range(300):
            try:
                files = _read(rootfs, "/tmp/sw/etc/passwd")
            except NotFound:
                continue
            assert HOST_SECRET.encode() not in files.get("passwd", b"")
    finally:
        stop.set()
        t.join()
