"""The content store's writer: blobs land under their digest only once it is known to be theirs."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from dockyard.oci.digest import hex_of
from dockyard.store import unsynced
from dockyard.store.content import DEFER_SYNC_MIN, ContentStore
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


def test_a_big_blob_is_published_unsynced_with_a_marker_that_the_flush_drops(tmp_path: Path) -> None:
    store = ContentStore(tmp_path / "content")
    small = store.write(b"config")
    big = store.write(b"x" * DEFER_SYNC_MIN)
    markers = list((tmp_path / "content" / "unsynced").iterdir())
    assert [m.name.partition(".")[0] for m in markers] == [hex_of(big)], "only the big one waits for a sync"
    assert markers[0].read_text() == unsynced.boot_id()
    unsynced.flush()
    assert not markers[0].exists()
    assert store.has(small) and store.has(big)


def test_at_a_start_on_another_boot_unsynced_blobs_are_hashed_again(tmp_path: Path) -> None:
    store = ContentStore(tmp_path / "content")
    whole = store.write(b"a" * DEFER_SYNC_MIN)
    torn = store.write(b"b" * DEFER_SYNC_MIN)
    mine = store.write(b"c" * DEFER_SYNC_MIN)
    for m in (tmp_path / "content" / "unsynced").iterdir():
        if not m.name.startswith(hex_of(mine)):
            m.write_text("an-earlier-boot")  # as if the machine went down before the flush
    with open(store.path(torn), "r+b") as f:
        f.truncate(100)
    assert store.check_unsynced() == [torn]
    assert store.has(whole) and not store.has(torn) and store.has(mine)
    left = list((tmp_path / "content" / "unsynced").iterdir())
    assert [m.name.partition(".")[0] for m in left] == [hex_of(mine)], "this boot's waits for the flush"
    unsynced.flush()
