"""The fast extraction paths keep the safety rules: cached directory fds never outlive a replaced
directory, create-first still replaces repeated names, modes and owners come out exact."""

from __future__ import annotations

import gzip
import io
import os
import stat
import tarfile
from pathlib import Path

import pytest

from dockyard.errors import InvalidParameter
from dockyard.store.layers import apply_layer
from tests.unit.test_layers import make_tar, ti

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")


def test_dir_replaced_by_symlink_then_write_is_refused(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    dest = tmp_path / "dest"
    dest.mkdir()
    data = make_tar([
        (ti("a", tarfile.DIRTYPE), None),
        (ti("a/b", tarfile.DIRTYPE), None),
        (ti("a/b/x"), b"x"),  # a and a/b are now cached directory fds
        (ti("a", tarfile.SYMTYPE, linkname=str(outside)), None),  # replaces the dir
        (ti("a/b/escaped"), b"y"),
    ])
    with pytest.raises(InvalidParameter):
        apply_layer(io.BytesIO(data), dest)
    assert os.listdir(outside) == []


def test_repeated_names_modes_owners_and_whiteout_of_cached_dir(tmp_path: Path) -> None:
    data = make_tar([
        (ti("d", tarfile.DIRTYPE, mode=0o2775, gid=50), None),
        (ti("d/f", mode=0o644), b"one"),
        (ti("d/f", mode=0o4755, uid=7, gid=8), b"two"),  # same name again: replaced
        (ti("d/l", tarfile.SYMTYPE, linkname="f"), None),
        (ti("d/l", mode=0o600), b"now a file"),
        (ti("e", tarfile.DIRTYPE), None),
        (ti("e/sub", tarfile.DIRTYPE), None),
        (ti(".wh.e"), None),  # whiteout of a directory whose fds are cached
        (ti("e", tarfile.DIRTYPE, mode=0o700), None),
        (ti("e/new"), b"n"),
    ])
    dest = tmp_path / "d0"
    dest.mkdir()
    apply_layer(io.BytesIO(gzip.compress(data)), dest)
    st = os.stat(dest / "d/f")
    assert (dest / "d/f").read_bytes() == b"two"
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (7, 8, 0o4755)
    assert stat.S_IMODE(os.stat(dest / "d").st_mode) == 0o2775 and os.stat(dest / "d").st_gid == 50
    assert (dest / "d/l").read_bytes() == b"now a file" and not (dest / "d/l").is_symlink()
    assert stat.S_IMODE(os.stat(dest / "d/l").st_mode) == 0o600
    assert sorted(os.listdir(dest / "e")) == ["new"]
    assert stat.S_IMODE(os.stat(dest / "e").st_mode) == 0o700


def test_truncated_gzip_is_invalid(tmp_path: Path) -> None:
    blob = gzip.compress(make_tar([(ti("big"), os.urandom(300_000))]))
    with pytest.raises(InvalidParameter):
        apply_layer(io.BytesIO(blob[: len(blob) // 2]), tmp_path)
