"""Layer apply/diff/changes on real directories (root: chown, mknod of whiteouts, trusted xattrs)."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import stat
import tarfile
from pathlib import Path

import pytest
import zstandard

from dockyard.errors import InvalidParameter
from dockyard.store.layers import apply_layer, changes, write_diff

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")


def make_tar(entries: list[tuple[tarfile.TarInfo, bytes | None]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for ti, data in entries:
            if data is not None:
                ti.size = len(data)
            tf.addfile(ti, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def ti(name: str, type_: bytes = tarfile.REGTYPE, **kw: object) -> tarfile.TarInfo:
    t = tarfile.TarInfo(name)
    t.type = type_
    t.mode = 0o755 if type_ == tarfile.DIRTYPE else 0o644
    t.mtime = 1_700_000_000
    for k, v in kw.items():
        setattr(t, k, v)
    return t


def test_apply_basic_entries_and_diff_id(tmp_path: Path) -> None:
    long = "d" * 70 + "/" + "f" * 90 + ".txt"
    data = make_tar([
        (ti("etc", tarfile.DIRTYPE), None),
        (ti("etc/passwd"), b"root:x:0:0\n"),
        (ti("etc/owned", mode=0o4750, uid=1000, gid=1001), b"x"),
        (ti("etc/hl", tarfile.LNKTYPE, linkname="etc/passwd"), None),
        (ti("etc/sl", tarfile.SYMTYPE, linkname="/nonexistent/target"), None),
        (ti("etc/fifo", tarfile.FIFOTYPE), None),
        (ti(long), b"long"),
        (ti("ünï.txt"), b"u"),
    ])
    dest = tmp_path / "d"
    dest.mkdir()
    info = apply_layer(io.BytesIO(data), dest)
    assert info.diff_id == "sha256:" + hashlib.sha256(data).hexdigest()
    assert (dest / "etc/passwd").read_bytes() == b"root:x:0:0\n"
    st = os.stat(dest / "etc/owned")
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (1000, 1001, 0o4750)
    assert os.stat(dest / "etc/hl").st_ino == os.stat(dest / "etc/passwd").st_ino
    assert os.readlink(dest / "etc/sl") == "/nonexistent/target"
    assert stat.S_ISFIFO(os.lstat(dest / "etc/fifo").st_mode)
    assert (dest / long).read_bytes() == b"long"
    assert (dest / "ünï.txt").exists()
    assert int(os.stat(dest / "etc").st_mtime) == 1_700_000_000


@pytest.mark.parametrize("compress", ["gzip", "zstd"])
def test_compressed_layers_have_the_uncompressed_diff_id(tmp_path: Path, compress: str) -> None:
    data = make_tar([(ti("a"), b"hello")])
    packed = gzip.compress(data) if compress == "gzip" else zstandard.ZstdCompressor().compress(data)
    info = apply_layer(io.BytesIO(packed), tmp_path)
    assert info.diff_id == "sha256:" + hashlib.sha256(data).hexdigest()
    assert (tmp_path / "a").read_bytes() == b"hello"


def test_whiteouts_become_overlay_whiteouts(tmp_path: Path) -> None:
    data = make_tar([
        (ti("dir", tarfile.DIRTYPE), None),
        (ti("dir/.wh..wh..opq"), b""),
        (ti("dir/new"), b"n"),
        (ti(".wh.home"), b""),
    ])
    apply_layer(io.BytesIO(data), tmp_path)
    st = os.lstat(tmp_path / "home")
    assert stat.S_ISCHR(st.st_mode) and st.st_rdev == os.makedev(0, 0)
    assert os.getxattr(tmp_path / "dir", "trusted.overlay.opaque") == b"y"
    assert not (tmp_path / "dir/.wh..wh..opq").exists()


EVIL = {
    "dotdot": [(ti("../escaped"), b"x")],
    "nested-dotdot": [(ti("a", tarfile.DIRTYPE), None), (ti("a/../../escaped"), b"x")],
    "absolute": [(ti("/escaped"), b"x")],
    "symlink-then-write": [(ti("link", tarfile.SYMTYPE, linkname="{outside}"), None), (ti("link/escaped"), b"x")],
    "symlink-relative": [(ti("link", tarfile.SYMTYPE, linkname="../outside"), None), (ti("link/escaped"), b"x")],
    "hardlink-absolute": [(ti("pw", tarfile.LNKTYPE, linkname="/etc/passwd"), None)],
    "hardlink-dotdot": [(ti("pw", tarfile.LNKTYPE, linkname="../outside/secret"), None)],
    "hardlink-through-symlink": [(ti("l", tarfile.SYMTYPE, linkname="{outside}"), None),
                                 (ti("pw", tarfile.LNKTYPE, linkname="l/secret"), None)],
    "char-device": [(ti("null", tarfile.CHRTYPE, devmajor=1, devminor=3), None)],
    "block-device": [(ti("sda", tarfile.BLKTYPE, devmajor=8, devminor=0), None)],
}


@pytest.mark.parametrize("case", sorted(EVIL))
def test_evil_entries_are_refused(tmp_path: Path, case: str) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_text("s")
    dest = tmp_path / "dest"
    dest.mkdir()
    entries = []
    for t, d in EVIL[case]:
        t.linkname = t.linkname.replace("{outside}", str(outside))
        entries.append((t, d))
    with pytest.raises(InvalidParameter):
        apply_layer(io.BytesIO(make_tar(entries)), dest)
    assert sorted(os.listdir(outside)) == ["secret"]
    assert os.stat(outside / "secret").st_nlink == 1
    assert not (tmp_path / "escaped").exists()


def test_write_diff_round_trip_and_changes(tmp_path: Path) -> None:
    lower = tmp_path / "lower"
    (lower / "etc").mkdir(parents=True)
    (lower / "etc/old").write_text("o")
    (lower / "gone").write_text("g")
    (lower / "opq").mkdir()
    (lower / "opq/hidden").write_text("h")
    upper = tmp_path / "upper"
    (upper / "etc").mkdir(parents=True)
    (upper / "etc/old").write_text("changed")
    (upper / "etc/new").write_text("n")
    os.link(upper / "etc/new", upper / "etc/new-link")
    os.mknod(upper / "gone", stat.S_IFCHR, os.makedev(0, 0))
    (upper / "opq").mkdir()
    os.setxattr(upper / "opq", "trusted.overlay.opaque", b"y")
    (upper / "opq/fresh").write_text("f")

    buf = io.BytesIO()
    diff_id = write_diff(upper, buf)
    assert diff_id == "sha256:" + hashlib.sha256(buf.getvalue()).hexdigest()
    names = tarfile.open(fileobj=io.BytesIO(buf.getvalue())).getnames()
    assert names == ["etc", "etc/new", "etc/new-link", "etc/old", ".wh.gone", "opq", "opq/.wh..wh..opq",
                     "opq/fresh"]
    buf2 = io.BytesIO()
    assert write_diff(upper, buf2) == diff_id  # deterministic

    again = tmp_path / "again"
    again.mkdir()
    assert apply_layer(io.BytesIO(buf.getvalue()), again).diff_id == diff_id
    assert os.stat(again / "etc/new").st_ino == os.stat(again / "etc/new-link").st_ino
    assert os.lstat(again / "gone").st_rdev == os.makedev(0, 0)
    assert os.getxattr(again / "opq", "trusted.overlay.opaque") == b"y"

    got = {c["Path"]: c["Kind"] for c in changes(upper, [lower])}
    assert got == {"/etc": 0, "/etc/new": 1, "/etc/new-link": 1, "/etc/old": 0, "/gone": 2, "/opq": 0,
                   "/opq/fresh": 1}
