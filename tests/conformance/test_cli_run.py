"""`run` through our CLI beside the docker CLI, against our daemon: what its quick path (the body
without msgspec, the output pumped on the main thread without stdin, _signal for the proxied signals)
must keep as docker's: the streams apart, the exit code, --rm, a signal forwarded to the container."""

from __future__ import annotations

import signal
import subprocess
import sys

import pytest

from tests.conftest import DOCKER_CLI, ROOT, Daemon

CLIS = {"docker": (DOCKER_CLI,), "dockyard": (sys.executable, "-m", "dockyard.cli.main")}


@pytest.mark.parametrize("cli", CLIS, ids=list(CLIS))
def test_run_rm_streams_and_exit_code(clean_daemon: Daemon, cli: str) -> None:
    d = clean_daemon
    p = subprocess.run([*CLIS[cli], "run", "--rm", "--name", f"rs-{cli}", "busybox", "sh", "-c",
                        "echo out; echo err >&2; echo é; exit 3"],
                       env=d.env, cwd=ROOT, capture_output=True, timeout=120)
    assert (p.returncode, p.stdout, p.stderr) == (3, "out\né\n".encode(), b"err\n"), p
    with d.api() as c:  # --rm: gone once run has returned
        assert c.get(f"/containers/rs-{cli}/json").status_code == 404


@pytest.mark.parametrize("cli", CLIS, ids=list(CLIS))
def test_run_forwards_a_signal_to_the_container(clean_daemon: Daemon, cli: str) -> None:
    d = clean_daemon
    script = "trap 'echo got-term; exit 7' TERM; echo ready; while true; do sleep 0.1; done"
    p = subprocess.Popen([*CLIS[cli], "run", "--rm", "busybox", "sh", "-c", script], env=d.env, cwd=ROOT,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert p.stdout is not None
        assert p.stdout.readline() == b"ready\n"
        p.send_signal(signal.SIGTERM)  # --sig-proxy (the default): a kill request, not the CLI's end
        out, err = p.communicate(timeout=60)
    finally:
        p.kill()
        p.wait()
    assert (p.returncode, out) == (7, b"got-term\n"), err


@pytest.mark.parametrize("cli", CLIS, ids=list(CLIS))
def test_run_detached_prints_the_id(clean_daemon: Daemon, cli: str) -> None:
    p = subprocess.run([*CLIS[cli], "run", "-d", "busybox", "true"], env=clean_daemon.env, cwd=ROOT,
                       capture_output=True, timeout=120)
    assert p.returncode == 0 and len(p.stdout.strip()) == 64 and p.stderr == b"", p


@pytest.mark.parametrize("cli", CLIS, ids=list(CLIS))
def test_an_argument_that_is_not_utf8_reaches_the_container_as_docker_sends_it(clean_daemon: Daemon,
                                                                              cli: str) -> None:
    """Go's JSON encoder makes each byte that is not UTF-8 U+FFFD; ours refused the run (125)."""
    p = subprocess.run([*CLIS[cli], "run", "--rm", "busybox", "echo", b"a\xffb".decode(errors="surrogateescape")],
                       env=clean_daemon.env, cwd=ROOT, capture_output=True, timeout=120)
    assert (p.returncode, p.stdout) == (0, "a\ufffdb\n".encode()), p
