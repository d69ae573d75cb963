"""The content store's writer: blobs land under their digest only once it is known to be theirs."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from dockyard.store.content import ContentStore
from dockyard.store.layers import write_diff


def test_a_layer_hashed_by_write_diff_is_stored_under_its_diff_id(tmp_path: Path) -> None:
    upper = tmp_path / "upper"
    (upper / "etc").mkdir(parents=True)
    (upper / "etc" / "motd").write_bytes(b"hello\n" * 1000)
    store = ContentStore(tmp_path / "content")
    with store.ingest(hashed_by_writer=True) as w:
        diff_id = write_diff(upper, w)  # type: ignore[arg-type]  # it needs only write()
        assert w.commit(diff_id) == diff_id
    assert "sha256:" + hashlib.sha256(store.path(diff_id).read_bytes()).hexdigest() == diff_id
    assert not list((tmp_path / "content" / "ingest").iterdir())


def test_a_writer_that_hashes_itself_takes_no_digest(tmp_path: Path) -> None:
    store = ContentStore(tmp_path / "content")
    with store.ingest() as w:
        w.write(b"x")
        with pytest.raises(AssertionError):
            w.commit("sha256:" + "0" * 64)
        assert w.commit() == "sha256:" + hashlib.sha256(b"x").hexdigest()
