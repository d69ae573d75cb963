"""Wrong commands, as a learner types them: no Python traceback ever, docker's message shapes and exit codes.

Each mistake goes through the real docker CLI against the real dockerd (the reference) and through
`dockyard` against the same dockerd: same exit code, same first line of stderr (ours says "dockyard"
where docker says "docker"). Then `dockyard` and the docker CLI against our daemon: no traceback and the
reference's exit code. Mistakes that docker refuses before creating anything leave no container behind.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import DOCKER_CLI, ROOT, Daemon

DOCKYARD = [sys.executable, "-m", "dockyard.cli.main"]

# (arguments, what to compare: "first" stderr line, "last" line, or "code" only (the daemons' words differ))
CORPUS: list[tuple[list[str], str]] = [
    (["pul", "busybox"], "first"),
    (["run", "--detatch", "busybox"], "first"),
    (["ps", "--al"], "first"),
    (["--bogus", "ps"], "first"),
    (["image", "pul"], "first"),
    (["container", "lss"], "first"),
    (["run"], "first"),
    (["logs"], "first"),
    (["logs", "a", "b"], "first"),
    (["stop"], "first"),
    (["rename", "a"], "first"),
    (["network", "create"], "first"),
    (["volume", "create", "a", "b"], "first"),
    (["run", "-e"], "first"),
    (["run", "--memory", "abc", "busybox"], "first"),
    (["run", "--cpus", "abc", "busybox"], "first"),
    (["run", "--ulimit", "nofile=abc", "busybox"], "first"),
    (["run", "--mount", "type=bind", "busybox"], "first"),
    (["ps", "-n", "x"], "first"),
    (["run", "-p", "99999:80", "busybox"], "first"),
    (["run", "-p", "127.0.0.999:80:80", "busybox"], "first"),
    (["run", "-p", "80:abc", "busybox"], "first"),
    (["run", "--env-file", "/nope", "busybox"], "first"),
    (["exec", "--env-file", "/nope", "nosuch-xyz", "true"], "code"),
    (["load", "-i", "/nonexist.tar"], "first"),
    (["import", "/nonexist.tar"], "first"),
    (["save", "busybox", "-o", "/nonexist/dir/x.tar"], "first"),
    (["export", "-o", "/nonexist/x.tar", "nosuch-xyz"], "first"),
    (["inspect", "nosuch-xyz"], "first"),
    (["container", "inspect", "nosuch-xyz"], "first"),
    (["rm", "nosuch-xyz"], "first"),
    (["stop", "nosuch-xyz"], "first"),
    (["start", "nosuch-xyz"], "first"),
    (["logs", "nosuch-xyz"], "first"),
    (["exec", "nosuch-xyz", "true"], "first"),
    (["top", "nosuch-xyz"], "first"),
    (["port", "nosuch-xyz"], "first"),
    (["cp", "nosuch-xyz:/a", "/tmp/x"], "first"),
    (["network", "rm", "nosuch-net"], "code"),
    (["volume", "rm", "nosuch-vol"], "code"),
    (["image", "inspect", "nosuch-img"], "code"),
    (["rmi", "nosuch-img"], "first"),
    (["tag", "nosuch-img", "x"], "first"),
    (["history", "nosuch-img"], "first"),
    (["events", "--since", "bogus", "--until", "1"], "first"),
    (["build", "/nonexist-dir"], "last"),
    (["ps", "--format", "{{.Bogus}}", "-a"], "code"),
    (["run", "--network", "none", "busybox", "nosuchcmd"], "code"),
    (["run", "--network", "none", "busybox", "/etc"], "code"),
    (["-H", "unix:///nonexistent.sock", "ps"], "first"),
    (["-H", "tcp://127.0.0.1:1", "ps"], "first"),
    (["--tlsverify", "--tlscacert", "/nonexist.pem", "-H", "tcp://127.0.0.1:1", "ps"], "first"),
    (["-H", "bogus://x", "ps"], "first"),
    (["--context", "nosuchctx", "ps"], "first"),
    (["pull", "127.0.0.1:1/nothing"], "first"),
]


def _id(case: tuple[list[str], str]) -> str:
    return " ".join(case[0])[:60]


def run(cli: list[str], host: str, args: list[str], config: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DOCKER_HOST": host, "DOCKER_CONFIG": str(config), "DOCKER_BUILDKIT": "0"}
    env.pop("DOCKER_CONTEXT", None)
    return subprocess.run([*cli, *args], env=env, capture_output=True, text=True, timeout=120, cwd=ROOT)


def lines(p: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in p.stderr.replace("dockyard", "docker").splitlines() if line.strip()]


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("docker-config")


@pytest.mark.parametrize("case", CORPUS, ids=_id)
def test_mistake_against_dockerd(real_dockerd: str, config: Path, case: tuple[list[str], str]) -> None:
    args, compare = case
    ref = run([DOCKER_CLI], real_dockerd, args, config)
    ours = run(DOCKYARD, real_dockerd, args, config)
    assert "Traceback" not in ours.stderr + ours.stdout
    assert ours.returncode == ref.returncode, (ref.stderr, ours.stderr)
    assert ref.returncode in (1, 125, 126, 127)
    if compare == "first":
        assert lines(ours)[:1] == lines(ref)[:1]
    elif compare == "last":
        assert lines(ours)[-1:] == lines(ref)[-1:]


@pytest.mark.parametrize("case", CORPUS, ids=_id)
def test_mistake_against_ours(clean_daemon: Daemon, real_dockerd: str, config: Path,
                              case: tuple[list[str], str]) -> None:
    args, _ = case
    ref = run([DOCKER_CLI], real_dockerd, args, config)
    for cli in (DOCKYARD, [DOCKER_CLI]):
        p = run(cli, clean_daemon.host, args, config)
        assert "Traceback" not in p.stderr + p.stdout, p.stderr
        assert p.returncode == ref.returncode, (cli[-1], ref.stderr, p.stderr)


@pytest.mark.parametrize("cli", ["docker", "dockyard"])
@pytest.mark.parametrize("args", [["-p", "99999:80"], ["-p", "127.0.0.999:80:80"], ["-w", "relative"],
                                  ["--cpus", "64"], ["--env-file", "/nope"], ["--memory", "abc"]],
                         ids=lambda a: " ".join(a))
def test_refused_before_anything_is_created(clean_daemon: Daemon, cli: str, args: list[str]) -> None:
    """What docker refuses, in the CLI or at create, leaves no Created container behind."""
    d = clean_daemon
    before = d.docker("ps", "-aq").stdout
    p = d.docker("run", *args, "busybox", "true", check=False) if cli == "docker" else \
        d.dockyard("run", *args, "busybox", "true", check=False)
    assert p.returncode == 125, p.stderr
    assert d.docker("ps", "-aq").stdout == before


@pytest.mark.parametrize("cli", ["docker", "dockyard"])
def test_exec_it_with_piped_stdin(clean_daemon: Daemon, cli: str) -> None:
    """`echo ... | exec -it` says docker's words and leaves no shell behind (it used to hang)."""
    d = clean_daemon
    d.docker("run", "-d", "--name", "srv", "busybox", "sleep", "300")
    run_cli = d.docker if cli == "docker" else d.dockyard
    p = run_cli("exec", "-it", "srv", "sh", input=b"echo hi\n", check=False, timeout=60)
    assert (p.returncode, p.stderr.strip()) == (1, b"the input device is not a TTY")
    assert d.docker("top", "srv").stdout.count(b"\n") == 2  # the header and sleep: no shell
