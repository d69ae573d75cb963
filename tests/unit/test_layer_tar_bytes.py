"""write_tree's bytes are the ones tarfile's stream mode wrote before (a built layer's diff_id, and so
every built image's id, stays what it was; and the tar made later from a snapshot is the one hashed)."""

from __future__ import annotations

import hashlib
import io
import os
import stat
import tarfile
from pathlib import Path

from dockyard.store import layers, safetree
from dockyard.store.layers import write_diff, write_tree


def _reference(root: Path, out: io.BytesIO, layer: bool = True) -> None:
    """write_tree as it was (tarfile "w|", data through SizedReader)."""
    top = safetree.open_top(root)
    hardlinks: dict[tuple[int, int], str] = {}
    try:
        with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tf:
            for e in safetree.walk(top):
                st = e.st
                if layer and layers._is_whiteout(st):
                    d, _, name = e.rel.rpartition("/")
                    wh = tarfile.TarInfo((d + "/" if d else "") + layers.WHITEOUT_PREFIX + name)
                    wh.mtime = int(st.st_mtime)
                    tf.addfile(wh)
                    continue
                ti = layers.tar_header(e, hardlinks)
                if ti is None:
                    continue
                fd = e.open() if stat.S_ISREG(st.st_mode) else None
                try:
                    pax: dict[str, str] = {}
                    if stat.S_ISDIR(st.st_mode) or fd is not None:
                        for k, val in e.xattrs(layers._ALLOWED_XATTR_PREFIXES, fd).items():
                            if not k.startswith(layers._OVERLAY_XATTR_PREFIXES):
                                pax["SCHILY.xattr." + k] = val.decode("utf-8", "surrogateescape")
                    ti.pax_headers = pax
                    tf.addfile(ti, safetree.SizedReader(fd, ti.size) if fd is not None and ti.isreg() else None)
                finally:
                    if fd is not None:
                        os.close(fd)
                if layer and stat.S_ISDIR(st.st_mode) and layers._is_opaque(e.fd):
                    op = tarfile.TarInfo(e.rel + "/" + layers.OPAQUE_MARKER)
                    op.mtime = int(st.st_mtime)
                    tf.addfile(op)
    finally:
        os.close(top)


def _tree(root: Path) -> None:
    (root / "d" / "e").mkdir(parents=True)
    (root / "big").write_bytes(os.urandom((3 << 20) + 123))  # several chunks, not a block multiple
    (root / "exact").write_bytes(b"x" * (1 << 20))  # exactly one chunk, a block multiple
    (root / "empty").write_bytes(b"")
    (root / "d" / "small").write_text("small\n")
    os.link(root / "d" / "small", root / "d" / "e" / "small-link")
    os.symlink("../big", root / "d" / "to-big")
    os.mkfifo(root / "d" / "fifo")
    os.setxattr(root / "d" / "small", "user.k", b"v")
    os.setxattr(root / "d", "user.dir", b"1")
    os.mknod(root / "gone", stat.S_IFCHR, os.makedev(0, 0))  # a whiteout
    os.setxattr(root / "d" / "e", layers.OPAQUE_XATTR, b"y")
    os.utime(root / "big", ns=(1_700_000_000_123_456_789, 1_700_000_000_123_456_789))


def test_the_layer_tar_is_byte_for_byte_what_tarfile_wrote(tmp_path: Path) -> None:
    _tree(tmp_path / "t")
    for layer in (True, False):
        ref = io.BytesIO()
        _reference(tmp_path / "t", ref, layer)
        out = io.BytesIO()
        digest = write_tree(tmp_path / "t", out, layer=layer)  # type: ignore[arg-type]
        assert out.getvalue() == ref.getvalue()
        assert digest == "sha256:" + hashlib.sha256(ref.getvalue()).hexdigest()


def test_hashing_alone_gives_the_digest_of_the_bytes(tmp_path: Path) -> None:
    _tree(tmp_path / "t")

    class Count:
        size = 0

        def write(self, b: bytes) -> int:
            self.size += len(b)
            return len(b)

    c = Count()
    out = io.BytesIO()
    assert write_diff(tmp_path / "t", c) == write_diff(tmp_path / "t", out)  # type: ignore[arg-type]
    assert c.size == len(out.getvalue())
