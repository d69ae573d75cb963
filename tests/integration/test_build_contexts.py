"""`--build-context NAME=SOURCE` beyond directories and docker-image:// (issue 14), with BuildKit's
semantics (its dockerui named contexts; 20.10's BuildKit has no named contexts to compare with): a git
URL is its checkout (`#ref:subdir`, no .git; a real `git daemon` on loopback), any other http(s) URL is
one file named `context` of mode 0600, never unpacked (a loopback HTTP server), and an OCI image layout
on the client is an image (by tag, digest, or the only manifest)."""

from __future__ import annotations

import http.server
import io
import json
import os
import shutil
import tarfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import PREBUILT, Daemon
from tests.integration.test_build_git import repo  # noqa: F401 - the fixture

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")


def _run(d: Daemon, image: str, script: str) -> str:
    return d.dockyard("run", "--rm", image, "sh", "-c", script).stdout.decode()


def test_git_context(clean_daemon: Daemon, repo: tuple[str, Path], tmp_path: Path) -> None:  # noqa: F811
    d = clean_daemon
    url, _work = repo
    (tmp_path / "Dockerfile").write_text(
        "FROM busybox:latest\nCOPY --from=src hello.txt /h\n"
        "RUN --mount=from=src,target=/m cat /m/Dockerfile > /df && ls -a /m > /mls\n"
        "COPY --from=whole top.txt /top\n")
    try:
        d.dockyard("build", "--build-context", f"src={url}#v1:app", "--build-context", f"whole={url}",
                   "-t", "ctxgit", str(tmp_path))
        assert _run(d, "ctxgit", "cat /h /df /top; cat /mls") == \
            "v1\nFROM busybox:latest\nCOPY hello.txt /hello.txt\ntop\n.\n..\nDockerfile\nhello.txt\n"
        bad = d.dockyard("build", "--build-context", f"src={url}#nosuchref", str(tmp_path), check=False)
        assert bad.returncode != 0 and "failed to resolve nosuchref" in bad.stderr.decode(), bad.stderr
    finally:
        d.dockyard("rmi", "-f", "ctxgit", check=False)


@pytest.fixture
def web(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """(http://127.0.0.1:PORT, the directory it serves)."""
    root = tmp_path / "www"
    root.mkdir()

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a: object, **kw: object) -> None:
            super().__init__(*a, directory=str(root), **kw)  # type: ignore[arg-type]

        def log_message(self, *args: object) -> None:
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        yield f"http://127.0.0.1:{srv.server_address[1]}", root
    finally:
        srv.shutdown()
        srv.server_close()
        t.join(10)


def test_http_context(clean_daemon: Daemon, web: tuple[str, Path], tmp_path: Path) -> None:
    d = clean_daemon
    base, root = web
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        ti = tarfile.TarInfo("inside.txt")
        ti.size = 3
        tf.addfile(ti, io.BytesIO(b"in\n"))
    (root / "files.tar").write_bytes(buf.getvalue())
    (root / "notes.txt").write_text("plain\n")
    os.utime(root / "notes.txt", (1500000000, 1500000000))  # served as Last-Modified, kept as the mtime
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(
        "FROM busybox:latest\nCOPY --from=tarball / /t/\nCOPY --from=note context /n\n"
        "RUN --mount=from=note,target=/m cat /m/context > /viamount\n")
    try:
        d.dockyard("build", "--build-context", f"tarball={base}/files.tar", "--build-context",
                   f"note={base}/notes.txt", "-t", "ctxhttp", str(ctx))
        out = _run(d, "ctxhttp", "ls /t; stat -c '%a %s' /t/context; stat -c '%a %s %Y' /n; cat /n /viamount")
        assert out == f"context\n600 {len(buf.getvalue())}\n600 6 1500000000\nplain\nplain\n", out
        bad = d.dockyard("build", "--build-context", f"tarball={base}/files.tar", "--build-context",
                         f"note={base}/missing", str(ctx), check=False)
        assert bad.returncode != 0 and "failed to load cache key: invalid response status 404" in bad.stderr.decode()
        bad = d.dockyard("build", "--build-context", "note=ftp://example.invalid/x", str(ctx), check=False)
        assert bad.returncode != 0 and "unsupported context source ftp for note" in bad.stderr.decode()
    finally:
        d.dockyard("rmi", "-f", "ctxhttp", check=False)


def _layout(tmp_path: Path) -> tuple[Path, str]:
    """The fixtures' `layered` image as `latest` and busybox as `bb`, in one OCI layout; (dir, layered's digest)."""
    lay = tmp_path / "layout"
    shutil.copytree(PREBUILT / "layered", lay, ignore=shutil.ignore_patterns("fixture.json"))
    for blob in (PREBUILT / "busybox" / "blobs" / "sha256").iterdir():
        shutil.copy(blob, lay / "blobs" / "sha256" / blob.name)
    index = json.loads((lay / "index.json").read_text())
    bb = json.loads((PREBUILT / "busybox" / "index.json").read_text())["manifests"][0]
    bb["annotations"] = {"org.opencontainers.image.ref.name": "bb"}
    index["manifests"].append(bb)
    (lay / "index.json").write_text(json.dumps(index))
    return lay, index["manifests"][0]["digest"]


def test_oci_layout_context(clean_daemon: Daemon, tmp_path: Path) -> None:
    d = clean_daemon
    lay, digest = _layout(tmp_path)
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text("FROM base\nRUN echo \"$FIXTURE\" > /fixture\nCOPY --from=bb /bin/busybox /bb\n")
    before = set(d.docker("images", "-a", "-q", "--no-trunc").stdout.decode().split())
    manifest = json.loads((lay / "blobs" / "sha256" / digest.split(":")[1]).read_text())
    layered_id = manifest["config"]["digest"]
    assert layered_id not in before
    copy_only = tmp_path / "copy-only"
    copy_only.mkdir()
    (copy_only / "Dockerfile").write_text("FROM busybox:latest\nCOPY --from=lay /data /data\n")
    try:
        # used by COPY alone: the loaded image goes again after the build (BuildKit keeps no image of it)
        d.dockyard("build", "--build-context", f"lay=oci-layout://{lay}", "-t", "ctxoci", str(copy_only))
        assert _run(d, "ctxoci", "/data/hello.sh") == "hello from layered: v2\n"
        assert layered_id not in d.docker("images", "-a", "-q", "--no-trunc").stdout.decode().split()
        for spec in (f"oci-layout://{lay}", f"oci-layout://{lay}:latest", f"oci-layout://{lay}@{digest}"):
            d.dockyard("build", "--pull", "--build-context", f"base={spec}", "--build-context",
                       f"bb=oci-layout://{lay}:bb", "-t", "ctxoci", str(ctx))
            assert _run(d, "ctxoci", "cat /fixture; /data/hello.sh; test -x /bb && echo bb") == \
                "layered\nhello from layered: v2\nbb\n"
        tags = d.docker("images", "--format", "{{.Repository}}:{{.Tag}}").stdout.decode().split()
        assert not any(t.startswith("layered") for t in tags)  # loaded by id, named nowhere
        # FROM it: it stays as the parent of the build's steps, hidden as intermediate images are
        assert layered_id not in d.docker("images", "-q", "--no-trunc").stdout.decode().split()
        bad = d.dockyard("build", "--build-context", f"base=oci-layout://{lay}:nope", str(ctx), check=False)
        assert bad.returncode != 0 and "failed to resolve digest" in bad.stderr.decode(), bad.stderr
        bad = d.dockyard("build", "--build-context", f"base=oci-layout://{tmp_path}/none", str(ctx), check=False)
        assert bad.returncode != 0 and f"invalid store at {tmp_path}/none" in bad.stderr.decode(), bad.stderr
    finally:
        d.dockyard("rmi", "-f", "ctxoci", check=False)
        after = set(d.docker("images", "-a", "-q", "--no-trunc").stdout.decode().split())
        for image in after - before:
            d.docker("rmi", "-f", image, check=False)


def test_from_a_files_context(clean_daemon: Daemon, web: tuple[str, Path], tmp_path: Path) -> None:
    """`FROM NAME` of a directory or URL context: its files are the stage's root filesystem, as BuildKit's."""
    d = clean_daemon
    base, root = web
    (root / "notes.txt").write_text("plain\n")
    files = tmp_path / "files"
    (files / "sub").mkdir(parents=True)
    (files / "sub" / "a.txt").write_text("a\n")
    (files / "skip.txt").write_text("x\n")
    (files / ".dockerignore").write_text("skip.txt\n")
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text("FROM files AS fromdir\nFROM note AS fromhttp\nFROM busybox:latest\n"
                                    "COPY --from=fromdir / /d/\nCOPY --from=fromhttp / /h/\n")
    try:
        d.dockyard("build", "--build-context", f"files={files}", "--build-context", f"note={base}/notes.txt",
                   "-t", "ctxfrom", str(ctx))
        assert _run(d, "ctxfrom", "find /d /h | sort; cat /d/sub/a.txt") == \
            "/d\n/d/.dockerignore\n/d/sub\n/d/sub/a.txt\n/h\n/h/context\na\n"
    finally:
        d.dockyard("rmi", "-f", "ctxfrom", check=False)
