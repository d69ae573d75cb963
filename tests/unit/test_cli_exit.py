"""The CLI process's own entry (cli()): the collector paused while the modules load, back on for the
command itself; the quick read-only commands end with os._exit once their output is flushed, the rest
(and any run with an atexit function or a thread still going) the ordinary way, with the same codes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

PROBE = """
import gc, os, sys
import dockyard.cli.main as m
def fake_exit(code):
    print("os._exit", code, gc.isenabled(), flush=True)
    sys.exit(code)
os._exit = fake_exit
sys.argv = ["dockyard", "-H", "unix://" + sys.argv[1], *sys.argv[2:]]
m.cli()
"""


def run_cli(tmp_path: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "DOCKER_CONFIG": str(tmp_path)}
    env.pop("DOCKER_HOST", None)
    return subprocess.run([sys.executable, "-c", PROBE, str(tmp_path / "none.sock"), *argv], env=env,
                          capture_output=True, text=True, cwd=tmp_path, timeout=60)


def test_quick_commands_exit_at_once_with_their_code_and_output(tmp_path: Path) -> None:
    out = run_cli(tmp_path, "version")
    assert out.returncode == 1, out
    assert out.stdout.startswith("Client:\n") and " Context:" in out.stdout, out
    assert out.stdout.endswith("os._exit 1 True\n"), out  # the collector was back on for the command
    assert "Cannot connect to the Docker daemon" in out.stderr, out
    for argv in (["ps"], ["run", "--rm", "busybox", "true"]):
        out = run_cli(tmp_path, *argv)
        assert (out.returncode, out.stdout) == (1, "os._exit 1 True\n"), (argv, out)


def test_other_commands_exit_the_ordinary_way(tmp_path: Path) -> None:
    out = run_cli(tmp_path, "rm", "x")
    assert (out.returncode, out.stdout) == (1, ""), out
    assert "Cannot connect to the Docker daemon" in out.stderr, out
    out = run_cli(tmp_path, "ps", "--bogus")  # a usage error: the same code, either way
    assert out.returncode == 125 and out.stderr.startswith("unknown flag: --bogus"), out


LEFT = """
import atexit, threading
from dockyard.cli.main import _nothing_left
print(_nothing_left())
threading.Thread(target=threading.Event().wait, daemon=True).start()
print(_nothing_left())  # a daemon thread: the ordinary exit would not wait for it either
stop = threading.Event()
t = threading.Thread(target=stop.wait)
t.start()
print(_nothing_left())
stop.set()
t.join()
atexit.register(print, "bye")
print(_nothing_left())
"""


def test_nothing_left_sees_threads_and_atexit() -> None:
    out = subprocess.run([sys.executable, "-c", LEFT], env={**os.environ, "PYTHONPATH": str(ROOT)},
                         capture_output=True, text=True, timeout=60)
    assert out.stdout.split() == ["True", "True", "False", "False", "bye"], out
