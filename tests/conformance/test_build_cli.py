"""`DOCKER_BUILDKIT=0 docker build` (the real CLI's classic builder) against our daemon: multi-stage
builds, streamed RUN output, failures that leave nothing behind, the cache, the CLI's flags,
`docker history`, `builder prune` / `system df`, `docker commit`, and FROM pulled through a mirror."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT, SHARED, Daemon, own_daemon

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")

MULTI = """\
FROM busybox AS a
ARG X=1
RUN echo a$X > /a.txt && echo ran-a-$X
FROM busybox AS b
RUN echo b > /b.txt
FROM busybox
COPY --from=a /a.txt /
COPY --from=b /b.txt /
COPY app /app
RUN echo listing && ls /app
CMD ["cat", "/a.txt", "/b.txt", "/app/one.txt"]
"""


def build(d: Daemon, ctx: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[bytes]:
    env = {**d.env, "DOCKER_BUILDKIT": "0"}
    p = subprocess.run(["docker", "build", *args, str(ctx)], env=env, capture_output=True, timeout=300)
    if check and p.returncode != 0:
        raise AssertionError(f"docker build -> {p.returncode}\n{p.stdout.decode()}\n{p.stderr.decode()}")
    return p


def out(p: subprocess.CompletedProcess[bytes]) -> str:
    return p.stdout.decode()


@pytest.fixture()
def ctx(tmp_path: Path) -> Path:
    (tmp_path / "Dockerfile").write_text(MULTI)
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "one.txt").write_text("one\n")
    (tmp_path / "app" / "two.txt").write_text("two\n")
    (tmp_path / "secret.log").write_text("nope\n")
    (tmp_path / ".dockerignore").write_text("*.log\n")
    return tmp_path


def test_multistage_runs_and_history(clean_daemon: Daemon, ctx: Path) -> None:
    d = clean_daemon
    iid = ctx.parent / "iid"
    p = build(d, ctx, "--no-cache", "-t", "bc:1", "-t", "bc:2", "--build-arg", "X=7", "--label", "who=me",
              "--iidfile", str(iid))
    o = out(p)
    # stages stream in order even though a and b run concurrently
    steps = [int(n) for n in re.findall(r"^Step (\d+)/12 :", o, re.M)]
    assert steps == list(range(1, 13)), o
    assert "ran-a-7\n" in o and "listing\none.txt\ntwo.txt\n" in o and "Running in" in o
    assert "Successfully tagged bc:1" in o and "Successfully tagged bc:2" in o
    image_id = iid.read_text().strip()
    assert image_id.startswith("sha256:") and f"Successfully built {image_id[7:19]}" in o
    assert d.docker("run", "--rm", "bc:2").stdout == b"a7\nb\none\n"
    insp = json.loads(d.docker("inspect", "bc:1").stdout)[0]
    assert insp["Id"] == image_id and insp["Config"]["Labels"] == {"who": "me"}
    assert insp["Config"]["Cmd"] == ["cat", "/a.txt", "/b.txt", "/app/one.txt"]
    assert d.docker("run", "--rm", "bc:1", "ls", "/").stdout.decode().split().count("secret.log") == 0
    rows = [r.split("\t") for r in d.docker("history", "--no-trunc", "--format",
                                            "{{.ID}}\t{{.CreatedBy}}\t{{.Size}}", "bc:1").stdout.decode().splitlines()]
    assert rows[0][0] == image_id and rows[0][1] == "/bin/sh -c #(nop)  LABEL who=me" and rows[0][2] == "0B"
    assert rows[1][1] == '/bin/sh -c #(nop)  CMD ["cat" "/a.txt" "/b.txt" "/app/one.txt"]' or \
        rows[1][1].startswith("/bin/sh -c #(nop)  CMD [")
    assert rows[2][1] == "/bin/sh -c echo listing && ls /app" and rows[2][2] == "0B"
    assert re.fullmatch(r"/bin/sh -c #\(nop\) COPY dir:[0-9a-f]{64} in /app ", rows[3][1]) and rows[3][2] == "8B"
    assert re.fullmatch(r"/bin/sh -c #\(nop\) COPY file:[0-9a-f]{64} in / ", rows[4][1])
    assert rows[-1][0] == "<missing>"  # the base image's lower layers, as dockerd shows them
    assert all(r[0].startswith("sha256:") for r in rows[:-1])
    # the a stage's RUN (with its build arg) is in the a stage's image, not the final one
    assert not any("X=7" in r[1] for r in rows)


def test_cache_hits_touch_edit_nocache(clean_daemon: Daemon, ctx: Path) -> None:
    d = clean_daemon
    first = out(build(d, ctx, "-t", "bcache"))
    again = out(build(d, ctx, "-t", "bcache"))
    assert again.count("Using cache") == 8 and "Running in" not in again
    assert again.splitlines()[-2] == first.splitlines()[-2]  # Successfully built <same id>
    os.utime(ctx / "app" / "one.txt", (1, 1))  # mtimes are not part of the key
    touched = out(build(d, ctx, "-t", "bcache"))
    assert touched.count("Using cache") == 8
    (ctx / "app" / "one.txt").write_text("edited\n")
    edited = out(build(d, ctx, "-t", "bcache"))
    # stages a (ARG, RUN) and b (RUN), and the two COPY --from, still hit; COPY app and on rerun
    assert edited.count("Using cache") == 5, edited
    tail = edited[edited.index("COPY app /app"):]
    assert "Using cache" not in tail and "Running in" in tail
    assert d.docker("run", "--rm", "bcache").stdout.endswith(b"edited\n")
    nocache = out(build(d, ctx, "--no-cache", "-t", "bcache"))
    assert "Using cache" not in nocache and nocache.count("Running in") == 3


def test_flags_target_quiet_file(clean_daemon: Daemon, ctx: Path) -> None:
    d = clean_daemon
    (ctx / "other.Dockerfile").write_text("FROM busybox\nARG MSG=dflt\nRUN echo \"$MSG\" > /msg\n")
    q = build(d, ctx, "-q", "-f", str(ctx / "other.Dockerfile"), "--build-arg", "MSG=hello there", "-t", "bq")
    assert re.fullmatch(rb"sha256:[0-9a-f]{64}\n", q.stdout), q.stdout
    assert d.docker("run", "--rm", "bq", "cat", "/msg").stdout == b"hello there\n"
    t = out(build(d, ctx, "--target", "b", "-t", "btarget"))
    assert "Step 1/2 : FROM busybox AS b" in t and "ran-a" not in t and "Step 3" not in t
    assert d.docker("run", "--rm", "btarget", "cat", "/b.txt").stdout == b"b\n"
    bad = build(d, ctx, "--target", "nope", check=False)
    assert bad.returncode != 0 and "failed to reach build target nope in Dockerfile" in bad.stderr.decode()


def test_failing_run_leaves_nothing(clean_daemon: Daemon, tmp_path: Path) -> None:
    d = clean_daemon
    (tmp_path / "Dockerfile").write_text("FROM busybox\nRUN echo before > /f\nRUN echo oops && exit 3\n")
    snaps = sorted(p.name for p in (d.data_root / "overlay").iterdir())
    ctrs = d.docker("ps", "-aq").stdout
    p = build(d, tmp_path, check=False)
    assert p.returncode == 3  # the CLI exits with the step's code (errorDetail.code)
    assert "The command '/bin/sh -c echo oops && exit 3' returned a non-zero code: 3" in p.stderr.decode()
    assert "oops\n" in out(p)
    assert d.docker("ps", "-aq").stdout == ctrs
    # only the successful first RUN's layer may stay (it is cached); nothing half-made
    new = sorted(p.name for p in (d.data_root / "overlay").iterdir() if p.name not in snaps)
    assert len(new) <= 1 and not any(n.startswith("tmp-") for n in new), new
    assert not list((d.data_root / "build").glob("tmp-*"))
    assert str(d.base) + "/run/containers" not in Path("/proc/mounts").read_text()


def test_prune_and_system_df(clean_daemon: Daemon, tmp_path: Path) -> None:
    d = clean_daemon
    (tmp_path / "Dockerfile").write_text("FROM busybox\nRUN head -c 4096 /dev/zero > /z\n")
    build(d, tmp_path, "--no-cache")
    df = d.docker("system", "df").stdout.decode()
    line = next(x for x in df.splitlines() if x.startswith("Build Cache"))
    assert line.split()[2] != "0", df
    pr = d.docker("builder", "prune", "-f").stdout.decode()
    assert "Total reclaimed space:" in pr and "Total reclaimed space: 0B" not in pr
    df2 = d.docker("system", "df").stdout.decode()
    assert next(x for x in df2.splitlines() if x.startswith("Build Cache")).split()[2] == "0"
    again = out(build(d, tmp_path))
    assert "Using cache" not in again


def test_commit_with_changes(clean_daemon: Daemon) -> None:
    d = clean_daemon
    d.docker("run", "--name", "bcommit", "busybox", "sh", "-c", "echo hi > /f")
    d.docker("commit", "--change", 'CMD ["cat", "/f"]', "-m", "msg", "-a", "me", "bcommit", "bcommitted:1")
    insp = json.loads(d.docker("inspect", "bcommitted:1").stdout)[0]
    assert insp["Config"]["Cmd"] == ["cat", "/f"] and insp["Author"] == "me" and insp["Comment"] == "msg"
    assert d.docker("run", "--rm", "bcommitted:1").stdout == b"hi\n"
    top = d.docker("history", "--format", "{{.CreatedBy}}|{{.Comment}}", "bcommitted:1").stdout.decode()
    assert top.splitlines()[0] == "sh -c echo hi > /f|msg"
    d.docker("commit", "--change", 'CMD ["x"]', "bcommit", "bcx")
    assert json.loads(d.docker("inspect", "bcx").stdout)[0]["Config"]["Cmd"] == ["x"]


def test_cache_survives_restart(clean_daemon: Daemon, ctx: Path) -> None:
    d = clean_daemon
    build(d, ctx, "-t", "brestart")
    d.stop()
    d.start()
    again = out(build(d, ctx, "-t", "brestart"))
    assert again.count("Using cache") == 8 and "Running in" not in again


# ------------------------------------------------------------------ FROM through a registry mirror
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def mirror_daemon() -> Iterator[Daemon]:
    serve = SHARED / "images" / "serve-registry"
    if not serve.exists():
        pytest.skip("no fixture registry")
    port = _free_port()
    subprocess.run([str(serve), "--port", str(port)], check=True, capture_output=True, timeout=600)
    try:
        with own_daemon("dy-", "--registry-mirror", f"http://127.0.0.1:{port}", busybox=False) as d:
            yield d
    finally:
        subprocess.run([str(SHARED / "images" / "stop-registry"), "--port", str(port)], capture_output=True)


def test_from_missing_image_pulls_through_mirror(mirror_daemon: Any, tmp_path: Path) -> None:
    d = mirror_daemon
    (tmp_path / "Dockerfile").write_text("FROM python:3-slim\nRUN python3 -c 'print(1)'\n")
    o = out(build(d, tmp_path, "-t", "bpy"))
    assert "3-slim: Pulling from library/python" in o and "Status: Downloaded newer image for python:3-slim" in o
    assert "Running in" in o and "\n1\n" in o
    assert d.docker("run", "--rm", "bpy", "python3", "-c", "print(6*7)").stdout == b"42\n"


# ------------------------------------------------------------------ our own CLI: dockyard build
def test_dockyard_build(clean_daemon: Daemon, ctx: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    d = clean_daemon
    (ctx / ".dockerignore").write_text("*.log\n**/two.txt\n!app/keep.log\n")
    (ctx / "app" / "keep.log").write_text("kept\n")
    (ctx / "app" / "drop.log").write_text("dropped\n")  # `*.log` is anchored at the root: this one stays
    iid = tmp_path_factory.mktemp("iid") / "id"
    p = d.dockyard("build", "-t", "dyb:1", "-t", "dyb:2", "--build-arg", "X=9", "--label", "k=v",
                   "--iidfile", str(iid), str(ctx))
    o = p.stdout.decode()
    assert o.startswith("Sending build context to Docker daemon  ")
    assert "Step 1/12 : FROM busybox AS a" in o and "ran-a-9" in o and "Successfully tagged dyb:2" in o
    listing = o[o.index("listing\n"):].split("Removing")[0].split()
    assert listing == ["listing", "drop.log", "keep.log", "one.txt"]
    assert d.docker("run", "--rm", "dyb:1", "ls", "/").stdout.split().count(b"secret.log") == 0
    image_id = iid.read_text()
    assert json.loads(d.docker("inspect", "dyb:2").stdout)[0]["Id"] == image_id
    q = d.dockyard("build", "-q", str(ctx))
    assert re.fullmatch(rb"sha256:[0-9a-f]{64}\n", q.stdout), q.stdout
    outside = tmp_path_factory.mktemp("df") / "Bad.Dockerfile"
    outside.write_text("FROM busybox\nRUN echo failing && exit 5\n")
    bad = d.dockyard("build", "-f", str(outside), str(ctx), check=False)
    assert bad.returncode == 5 and "failing" in bad.stdout.decode()
    assert "The command '/bin/sh -c echo failing && exit 5' returned a non-zero code: 5" in bad.stderr.decode()
    assert d.dockyard("builder", "prune", "-f").stdout.decode().rstrip().splitlines()[-1].startswith(
        "Total reclaimed space:")


def test_args_before_from_are_steps(clean_daemon: Daemon, tmp_path: Path) -> None:
    """dockerd 20.10's classic builder (checked by hand) counts the ARGs before FROM as steps, shows
    them first with no output, and shows FROM lines as written (unexpanded)."""
    (tmp_path / "Dockerfile").write_text("ARG V=1\nARG BASE=busybox\nFROM $BASE AS one\nARG V\nLABEL v=$V\n"
                                         "FROM ${BASE}\nCOPY --from=one /bin/true /t\n")
    o = out(build(clean_daemon, tmp_path, "--build-arg", "V=7", "-t", "argsteps"))
    assert re.findall(r"^Step .*$", o, re.M) == [
        "Step 1/7 : ARG V=1", "Step 2/7 : ARG BASE=busybox", "Step 3/7 : FROM $BASE AS one", "Step 4/7 : ARG V",
        "Step 5/7 : LABEL v=$V", "Step 6/7 : FROM ${BASE}", "Step 7/7 : COPY --from=one /bin/true /t"]
    assert o.split("Step 2/7")[0].count("--->") == 0
    clean_daemon.docker("rmi", "argsteps")


@pytest.mark.parametrize("cli", ["docker", "dockyard"])
def test_builds_from_stdin(clean_daemon: Daemon, tmp_path: Path, cli: str) -> None:
    """`build -f- DIR` (the Dockerfile on stdin, the context from DIR: docker's CLI sends that tar without
    padding or end blocks), `build - < Dockerfile` (no context) and `build - < ctx.tar`; a unix socket in
    the context is skipped, as docker skips it."""
    d = clean_daemon
    env = {**d.env, "DOCKER_BUILDKIT": "0"}
    argv = ["docker"] if cli == "docker" else [sys.executable, "-m", "dockyard.cli.main"]
    (tmp_path / "f.txt").write_text("from-context\n")
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(tmp_path / "app.sock"))
    dockerfile = b"FROM busybox\nCOPY f.txt /f.txt\nRUN cat /f.txt\n"
    (tmp_path / "Dockerfile").write_text("FROM busybox\nRUN echo not-this-one\n")  # -f- takes precedence

    def run(*args: str, input: bytes) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run([*argv, "build", *args], input=input, env=env, capture_output=True, timeout=300,
                              cwd=ROOT)

    try:
        p = run("-t", f"stdin-{cli}:f", "-f-", str(tmp_path), input=dockerfile)
        assert p.returncode == 0 and b"from-context" in p.stdout and b"not-this-one" not in p.stdout, p
        p = run("-t", f"stdin-{cli}:df", "-", input=b"FROM busybox\nRUN echo no-context\n")
        assert p.returncode == 0 and b"no-context" in p.stdout, p
        tar = subprocess.run(["tar", "-C", str(tmp_path), "-cf", "-", "--exclude", "app.sock", "."],
                             capture_output=True, check=True).stdout
        p = run("-t", f"stdin-{cli}:tar", "-", input=tar)
        assert p.returncode == 0 and b"not-this-one" in p.stdout, p
    finally:
        listener.close()
    for tag in ("f", "df", "tar"):
        d.docker("rmi", f"stdin-{cli}:{tag}")
