"""Git URLs in builds (issue 14): `ADD git://...#ref:subdir DEST` (keyed by the commit the ref names:
a new commit on the branch is a miss, the same commit a hit; no .git unless --keep-git-dir), and a git
URL as the build context, from `dockyard build URL` (cloned by the CLI, as the docker CLI does) and
from the API's `remote` (cloned by the daemon, as dockerd). The repository is served by a real
`git daemon` on loopback."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Daemon

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")


def _git(cwd: Path, *args: str) -> str:
    env = {**os.environ, "GIT_CONFIG_GLOBAL": "/dev/null", "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}
    return subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True).stdout


@pytest.fixture
def repo(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """(git://127.0.0.1:PORT/repo.git, the working copy that pushes to it)."""
    served = tmp_path / "served"
    served.mkdir()
    _git(served, "init", "-q", "--bare", "-b", "main", "repo.git")
    work = tmp_path / "work"
    work.mkdir()
    _git(work, "init", "-q", "-b", "main")
    (work / "app").mkdir()
    (work / "app" / "Dockerfile").write_text("FROM busybox:latest\nCOPY hello.txt /hello.txt\n")
    (work / "app" / "hello.txt").write_text("v1\n")
    (work / "top.txt").write_text("top\n")
    _git(work, "add", "-A")
    _git(work, "commit", "-qm", "one")
    _git(work, "tag", "v1")
    _git(work, "push", "-q", str(served / "repo.git"), "main", "v1")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(["git", "daemon", "--reuseaddr", "--export-all", f"--base-path={served}",
                             "--listen=127.0.0.1", f"--port={port}", str(served)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        yield f"git://127.0.0.1:{port}/repo.git", work
    finally:
        proc.terminate()
        proc.wait(10)


def _cat(d: Daemon, image: str, *paths: str) -> str:
    return d.dockyard("run", "--rm", image, "sh", "-c", " ".join(["cat", *paths])).stdout.decode()


def test_add_git_url(clean_daemon: Daemon, repo: tuple[str, Path], tmp_path: Path) -> None:
    d = clean_daemon
    url, work = repo
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(f"FROM busybox:latest\nADD {url}#main:app /src\n"
                                    f"ADD --keep-git-dir=true {url}#v1 /full\n")
    try:
        d.dockyard("build", "-t", "gitadd", str(ctx))
        assert _cat(d, "gitadd", "/src/hello.txt", "/full/top.txt") == "v1\ntop\n"
        listing = d.dockyard("run", "--rm", "gitadd", "ls", "-a", "/src", "/full").stdout.decode()
        assert "Dockerfile" in listing and listing.count(".git") == 1  # only --keep-git-dir keeps it
        again = d.dockyard("build", "-t", "gitadd", str(ctx)).stdout.decode()
        assert again.count("Using cache") == 2
        # a new commit on main: that ADD misses and gets it; the tag's stays cached
        (work / "app" / "hello.txt").write_text("v2\n")
        _git(work, "commit", "-qam", "two")
        served = url.rsplit("/", 1)[1]
        _git(work, "push", "-q", str(tmp_path / "served" / served), "main")
        third = d.dockyard("build", "-t", "gitadd", str(ctx)).stdout.decode()
        assert third.count("Using cache") == 0, third  # the first ADD changed, so the second's parent did
        assert _cat(d, "gitadd", "/src/hello.txt") == "v2\n"
        bad = d.dockyard("build", str(ctx.parent / "ctx"), "-f", "-", check=False,
                         input=f"FROM busybox:latest\nADD {url}#nosuchref /x\n".encode())
        assert bad.returncode != 0 and "failed to resolve nosuchref" in bad.stderr.decode()
    finally:
        d.dockyard("rmi", "-f", "gitadd", check=False)


def test_git_url_as_context(clean_daemon: Daemon, repo: tuple[str, Path]) -> None:
    d = clean_daemon
    url, _work = repo
    try:
        out = d.dockyard("build", "-t", "gitctx", f"{url}#v1:app").stdout.decode()
        assert "Successfully tagged gitctx:latest" in out
        assert _cat(d, "gitctx", "/hello.txt") == "v1\n"
        # the API's remote, cloned by the daemon (docker-py's build(path=URL))
        with d.api() as c:
            r = c.post("/build", params={"remote": f"{url}#v1:app", "t": "gitctx-remote"})
            assert r.status_code == 200 and "Successfully built" in r.text, r.text
            r = c.post("/build", params={"remote": f"{url}#v1:nodir"})
            assert r.status_code == 500 and "subdirectory nodir not found" in r.text, r.text
        assert _cat(d, "gitctx-remote", "/hello.txt") == "v1\n"
    finally:
        d.dockyard("rmi", "-f", "gitctx", "gitctx-remote", check=False)
