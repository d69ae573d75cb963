"""The streamed context index gives the same COPY cache hashes as the extracted context."""

from __future__ import annotations

import io
import os
import tarfile
import time
from pathlib import Path

import pytest

from dockyard.builder import context as bctx
from dockyard.builder.ctxindex import ContextIndex, HashMemo, hash_mixed


def _tree(root: Path) -> None:
    (root / "Dockerfile").write_text("FROM scratch\n")
    (root / "data" / "deep" / "er").mkdir(parents=True)
    (root / "data" / "a.bin").write_bytes(os.urandom(3000))
    (root / "data" / "deep" / "b.txt").write_text("b\n")
    (root / "data" / "deep" / "er" / "c.sh").write_text("#!/bin/sh\n")
    os.chmod(root / "data" / "deep" / "er" / "c.sh", 0o4755)
    os.symlink("a.bin", root / "data" / "link")
    os.symlink("deep", root / "data" / "dirlink")
    (root / "data" / "empty").mkdir(mode=0o700)
    os.chmod(root / "data" / "empty", 0o700)
    (root / "src").mkdir()
    for i in range(5):
        (root / "src" / f"m{i}.txt").write_text(f"m{i}\n")
    (root / "src" / "x.py").write_text("x\n")
    os.symlink("src", root / "srclink")


def _tar(root: Path, with_root: bool) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        if with_root:
            tf.add(root, ".", recursive=False)
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames.sort()
            for n in sorted(dirnames + filenames):
                p = Path(dirpath) / n
                tf.add(p, str(p.relative_to(root)), recursive=False)
    return buf.getvalue()


def _index(tmp: Path, data: bytes, memo: HashMemo | None = None) -> ContextIndex:
    idx = ContextIndex(tmp / f"ctx-{time.monotonic_ns()}.tar", memo or HashMemo(), keep={"Dockerfile"})
    for i in range(0, len(data), 7000):  # odd chunk sizes, like a socket's
        idx.put(data[i:i + 7000])
    idx.put(None)
    idx.join()
    return idx


@pytest.mark.parametrize("with_root", [False, True])
def test_index_hash_equals_extracted(tmp_path: Path, with_root: bool) -> None:
    src = tmp_path / "src-ctx"
    src.mkdir()
    _tree(src)
    data = _tar(src, with_root)
    idx = _index(tmp_path, data)
    assert idx.usable
    assert idx.tar_path.read_bytes() == data  # spooled whole
    assert idx.file_bytes("./Dockerfile") == b"FROM scratch\n"
    ctx = tmp_path / "context"
    bctx.extract_context(idx.tar_path, ctx)
    for spec in [".", "data", "data/", "./src/*.txt", "data/deep/er/c.sh", "src/m?.txt", "d*/deep"]:
        names = idx.sources(spec)
        assert names is not None, spec
        paths = bctx.context_sources(ctx, spec)
        assert [ctx / n if n else ctx for n in names] == paths
        assert hash_mixed(idx, names, [], "x") == bctx.hash_sources(paths, "x"), spec


def test_index_defers_what_it_does_not_model(tmp_path: Path) -> None:
    src = tmp_path / "src-ctx"
    src.mkdir()
    _tree(src)
    idx = _index(tmp_path, _tar(src, False))
    for spec in ["srclink/x.py", "data/link", "data/dirlink/b.txt", "missing", "nope*", "../x", "*"]:
        assert idx.sources(spec) is None, spec
    assert idx.sources("data/*") is None  # a match is a symlink: the extraction resolves it


def _set_mtimes(root: Path, t: float) -> None:
    for p in root.rglob("*"):
        os.utime(p, (t, t), follow_symlinks=False)


def test_memo_skips_rehash_and_content_change_misses(tmp_path: Path) -> None:
    src = tmp_path / "src-ctx"
    src.mkdir()
    _tree(src)
    _set_mtimes(src, time.time() - 100)
    memo = HashMemo()
    h1 = hash_mixed(idx := _index(tmp_path, _tar(src, False), memo), idx.sources("src") or [], [], "")
    assert len(memo._d) > 5
    _set_mtimes(src, time.time() - 50)
    n = len(memo._d)
    h2 = hash_mixed(idx := _index(tmp_path, _tar(src, False), memo), idx.sources("src") or [], [], "")
    assert h2 == h1 and len(memo._d) > n  # a touch is not a change
    (src / "src" / "m3.txt").write_text("changed\n")
    h3 = hash_mixed(idx := _index(tmp_path, _tar(src, False), memo), idx.sources("src") or [], [], "")
    assert h3 != h1


def test_memo_never_trusts_a_racy_header(tmp_path: Path) -> None:
    """Rewritten within the same second, same size: the tar header is identical, the content not."""
    src = tmp_path / "src-ctx"
    src.mkdir()
    _tree(src)
    memo = HashMemo()
    now = int(time.time())
    f = src / "src" / "m3.txt"
    f.write_text("aaa\n")
    os.utime(f, (now, now))
    h1 = hash_mixed(idx := _index(tmp_path, _tar(src, False), memo), idx.sources("src") or [], [], "")
    f.write_text("bbb\n")
    os.utime(f, (now, now))
    h2 = hash_mixed(idx := _index(tmp_path, _tar(src, False), memo), idx.sources("src") or [], [], "")
    assert h1 != h2


def test_bad_or_empty_context_is_left_to_the_extraction(tmp_path: Path) -> None:
    assert not _index(tmp_path, b"").usable
    assert not _index(tmp_path, b"not a tar at all" * 100).usable
    whiteout = io.BytesIO()
    with tarfile.open(fileobj=whiteout, mode="w") as tf:
        tf.addfile(tarfile.TarInfo(".wh.x"), io.BytesIO(b""))
    assert not _index(tmp_path, whiteout.getvalue()).usable


def test_spool_failure_is_reported_and_never_blocks_the_producer(tmp_path: Path) -> None:
    idx = ContextIndex(tmp_path / "missing-dir" / "ctx.tar", HashMemo())
    for _ in range(200):  # more than the queue holds: the worker must keep taking them
        idx.put(b"x" * 512)
    idx.put(None)
    with pytest.raises(FileNotFoundError):
        idx.join()


def _walk_state(root: Path) -> dict[str, tuple[int, int, bytes | str]]:
    out: dict[str, tuple[int, int, bytes | str]] = {}
    for p in sorted(root.rglob("*")):
        st = os.lstat(p)
        body: bytes | str = os.readlink(p) if p.is_symlink() else p.read_bytes() if p.is_file() else b""
        out[str(p.relative_to(root))] = (st.st_mode, int(st.st_mtime), body)
    return out


@pytest.mark.parametrize("with_root", [False, True])
def test_extract_as_it_arrives_equals_spool_and_extract(tmp_path: Path, with_root: bool) -> None:
    src = tmp_path / "src-ctx"
    src.mkdir()
    _tree(src)
    data = _tar(src, with_root)
    spooled = _index(tmp_path, data)
    ctx_a = tmp_path / "a"
    bctx.extract_context(spooled.tar_path, ctx_a)
    ctx_b = tmp_path / "b"
    idx = ContextIndex(tmp_path / "never.tar", HashMemo(), keep={"Dockerfile"}, extract_to=ctx_b)
    for i in range(0, len(data), 7000):
        idx.put(data[i:i + 7000])
    idx.put(None)
    idx.join()
    idx.extracted()
    assert not (tmp_path / "never.tar").exists()  # nothing spooled
    assert idx.usable and idx.file_bytes("Dockerfile") == b"FROM scratch\n"
    assert _walk_state(ctx_b) == _walk_state(ctx_a)
    assert os.stat(ctx_b).st_mode == os.stat(ctx_a).st_mode
    names = idx.sources("data")
    assert names is not None
    assert hash_mixed(idx, names, [], "") == bctx.hash_sources([ctx_b / "data"], "")


def _extract_only(tmp: Path, data: bytes, name: str) -> ContextIndex:
    idx = ContextIndex(tmp / "never.tar", HashMemo(), extract_to=tmp / name)
    for i in range(0, len(data), 4096):
        idx.put(data[i:i + 4096])
    idx.put(None)
    idx.join()
    return idx


def test_extract_as_it_arrives_takes_a_tar_without_its_end(tmp_path: Path) -> None:
    """docker's CLI (`build -f- DIR`) stops right after the last file's data: no padding, no end blocks."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tf:
        ti = tarfile.TarInfo("f.txt")
        ti.size = 5
        tf.addfile(ti, io.BytesIO(b"hello"))
    cut = buf.getvalue()[:512 + 5]
    idx = _extract_only(tmp_path, cut, "c")
    idx.extracted()
    assert (tmp_path / "c" / "f.txt").read_bytes() == b"hello"
    empty = _extract_only(tmp_path, b"", "e")
    empty.extracted()
    assert list((tmp_path / "e").iterdir()) == []


def test_extract_as_it_arrives_reports_a_bad_tar_and_never_blocks(tmp_path: Path) -> None:
    from dockyard.errors import InvalidParameter

    dev = io.BytesIO()
    with tarfile.open(fileobj=dev, mode="w") as tf:
        ti = tarfile.TarInfo("../escape")
        tf.addfile(ti, io.BytesIO(b""))
    # the bad entry first, then far more than the queues hold: the feeder must never wait for ever
    idx = _extract_only(tmp_path, dev.getvalue()[:512] + b"\0" * (64 << 20), "bad")
    with pytest.raises(InvalidParameter):
        idx.extracted()
    assert not (tmp_path / "escape").exists()
