"""The build API as clients use it, on our daemon and on the real dockerd (classic builder) with the
same calls: labels, cache_from, extra hosts, null build args, shm size, a Dockerfile outside the
context, .dockerignore (docker-py's, the docker CLI's and our CLI's side), stderr, and errors."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import docker
import docker.errors
import pytest

from tests.conftest import DOCKER_CLI, ROOT, Daemon, Engines


def stream(c: docker.APIClient, **kw: Any) -> list[dict[str, Any]]:
    return list(c.build(decode=True, rm=True, **kw))


def run_out(c: docker.APIClient, image: str, cmd: list[str]) -> bytes:
    cid = c.create_container(image, cmd)["Id"]
    try:
        c.start(cid)
        c.wait(cid)
        return bytes(c.logs(cid))
    finally:
        c.remove_container(cid, force=True)


def df(text: str) -> io.BytesIO:
    return io.BytesIO(text.encode())


def test_labels_on_a_scratch_image(engines: Engines) -> None:
    def run(c: docker.APIClient) -> Any:
        t = engines.tag(c)
        stream(c, fileobj=df("FROM scratch"), tag=t, labels={"test": "OK", "b": "2"})
        return c.inspect_image(t)["Config"]["Labels"]

    ours, ref = engines.both(run)
    assert ours == ref == {"test": "OK", "b": "2"}


def test_cache_from(engines: Engines) -> None:
    text = "FROM busybox\nENV FOO=bar\nRUN touch baz\nRUN touch bax\n"

    def run(c: docker.APIClient) -> tuple[int, int]:
        first = engines.tag(c)
        stream(c, fileobj=df(text), tag=first)
        hits = []
        for source in ([first], [f"nosuch-{uuid.uuid4().hex[:8]}"]):
            out = stream(c, fileobj=df(text), tag=engines.tag(c), cache_from=source)
            hits.append(sum("Using cache" in m.get("stream", "") for m in out))
        return hits[0], hits[1]

    ours, ref = engines.both(run)
    assert ours == ref == (3, 0)


def test_extra_hosts_null_build_args_and_shm_size(engines: Engines) -> None:
    text = ("FROM busybox\nARG GIVEN\nARG NULLED=from-the-dockerfile\n"
            "RUN grep -h test /etc/hosts > /hosts; echo $GIVEN $NULLED > /args; "
            "df -k /dev/shm | tail -1 | awk '{print $2}' > /shm\n")

    def run(c: docker.APIClient) -> bytes:
        t = engines.tag(c)
        out = stream(c, fileobj=df(text), tag=t, extra_hosts={"a.test": "127.0.0.3", "b.test": "127.0.0.4"},
                     buildargs={"GIVEN": "yes", "NULLED": None}, shmsize=128 * 1024 * 1024)
        assert not [m for m in out if "error" in m], out
        return run_out(c, t, ["cat", "/hosts", "/args", "/shm"])

    ours, ref = engines.both(run)
    assert ours == ref == b"127.0.0.3\ta.test\n127.0.0.4\tb.test\nyes from-the-dockerfile\n131072\n"


def test_stderr_of_a_step_in_red(engines: Engines) -> None:
    def run(c: docker.APIClient) -> list[str]:
        out = stream(c, fileobj=df('FROM busybox\nRUN echo out; echo err >&2\n'), nocache=True)
        # stdout and stderr are two pipes: their order is not fixed on either engine
        return sorted(m["stream"] for m in out if m.get("stream", "").strip() in ("out", "\x1b[91merr\n\x1b[0m"))

    ours, ref = engines.both(run)
    assert ours == ref == ["\x1b[91merr\n\x1b[0m", "out\n"]


@pytest.mark.parametrize(("dockerfile", "status"), [("", 400), (None, 500), ("FROM busybox\nBOGUS x\n", 400)],
                         ids=["empty", "missing", "parse-error"])
def test_errors_before_the_first_step_are_http_errors(engines: Engines, dockerfile: str | None,
                                                      status: int) -> None:
    import tarfile

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        if dockerfile is not None:
            info = tarfile.TarInfo("Dockerfile")
            info.size = len(dockerfile)
            tf.addfile(info, io.BytesIO(dockerfile.encode()))

    def run(c: docker.APIClient) -> int:
        with pytest.raises(docker.errors.APIError) as e:
            stream(c, fileobj=io.BytesIO(buf.getvalue()), custom_context=True)
        return e.value.response.status_code

    ours, ref = engines.both(run)
    assert ours == ref == status


def test_a_failing_step_is_an_error_in_the_stream(engines: Engines) -> None:
    def run(c: docker.APIClient) -> Any:
        return [m["error"] for m in stream(c, fileobj=df("FROM busybox\nRUN exit 3\n")) if "error" in m]

    ours, ref = engines.both(run)
    assert ours == ref == ["The command '/bin/sh -c exit 3' returned a non-zero code: 3"]


def test_dockerfile_outside_the_context_is_not_in_the_image(engines: Engines, tmp_path: Path) -> None:
    ctx, elsewhere = tmp_path / "ctx", tmp_path / "elsewhere"
    ctx.mkdir()
    elsewhere.mkdir()
    (ctx / "file.txt").write_text("hello")
    (ctx / ".dockerignore").write_text(".dockerignore\n")
    (elsewhere / "Dockerfile").write_text("FROM busybox\nCOPY . /src\n")

    def run(c: docker.APIClient) -> bytes:
        t = engines.tag(c)
        stream(c, path=str(ctx), dockerfile=str(elsewhere / "Dockerfile"), tag=t)
        return run_out(c, t, ["ls", "-a", "/src"])

    ours, ref = engines.both(run)
    assert ours == ref == b".\n..\nfile.txt\n"


# A context exercising .dockerignore: exceptions, `**`, `*` within a segment, directories, spaces,
# comments, and the Dockerfile and .dockerignore excluded themselves.
IGNORE = """# a comment
*.log
!keep.log
**/tmp
docs
!docs/README.md
 spaced
build/**/*.o
a?c
Dockerfile
.dockerignore
"""
FILES = ["app.py", "x.log", "keep.log", "sub/y.log", "tmp/t", "sub/tmp/t", "sub/deeper/tmp/t", "docs/a.md",
         "docs/README.md", "spaced", "build/x.o", "build/x/y/z.o", "build/keep.c", "abc", "abbc", "sub/abc"]


def make_context(root: Path) -> None:
    for f in FILES:
        (root / f).parent.mkdir(parents=True, exist_ok=True)
        (root / f).write_text(f)
    (root / ".dockerignore").write_text(IGNORE)
    (root / "Dockerfile").write_text("FROM busybox\nCOPY . /ctx\n")


def test_dockerignore_through_docker_py(engines: Engines, tmp_path: Path) -> None:
    make_context(tmp_path)

    def run(c: docker.APIClient) -> list[bytes]:
        t = engines.tag(c)
        stream(c, path=str(tmp_path), tag=t)
        return sorted(run_out(c, t, ["find", "/ctx", "-type", "f"]).split())

    ours, ref = engines.both(run)
    assert ours == ref
    assert b"/ctx/keep.log" in ours and b"/ctx/Dockerfile" not in ours and b"/ctx/build/keep.c" in ours


def test_dockerignore_through_the_clis(daemon: Daemon, real_dockerd: str, tmp_path: Path) -> None:
    """The real docker CLI on dockerd (the reference), the docker CLI on ours (the daemon's part) and
    our CLI on ours (the client's part): the same files in the image."""
    make_context(tmp_path)
    tag = f"dy-bp-{uuid.uuid4().hex[:10]}"
    results = []
    for cli, host in (([DOCKER_CLI], real_dockerd), ([DOCKER_CLI], daemon.host),
                      ([sys.executable, "-m", "dockyard.cli.main"], daemon.host)):
        env = {**os.environ, "DOCKER_HOST": host, "DOCKER_BUILDKIT": "0"}
        env.pop("DOCKER_CONTEXT", None)
        try:
            b = subprocess.run([*cli, "build", "-q", "-t", tag, str(tmp_path)], env=env, capture_output=True,
                               timeout=300, cwd=ROOT)
            assert b.returncode == 0, b.stderr
            r = subprocess.run([*cli, "run", "--rm", tag, "find", "/ctx", "-type", "f"], env=env,
                               capture_output=True, timeout=120, cwd=ROOT)
            assert r.returncode == 0, r.stderr
            results.append(sorted(r.stdout.split()))
        finally:
            subprocess.run([*cli, "rmi", "-f", tag], env=env, capture_output=True, timeout=120, cwd=ROOT)
    assert results[0] == results[1] == results[2]
    assert b"/ctx/docs/README.md" in results[0] and b"/ctx/docs/a.md" not in results[0]
