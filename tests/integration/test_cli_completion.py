"""`dockyard completion bash` in a real bash against a real daemon: commands, flags, and names of
containers, images, networks and volumes asked from the daemon."""

from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT, Daemon


def complete(d: Daemon, tmp_path: Path, *words: str) -> list[str]:
    """What bash offers after `dockyard WORDS` (the last word is the one being typed)."""
    shim = tmp_path / "bin" / "dockyard"
    if not shim.exists():
        shim.parent.mkdir()
        shim.write_text(f"#!/bin/sh\ncd {shlex.quote(str(ROOT))} && exec {shlex.quote(sys.executable)} "
                        "-m dockyard.cli.main \"$@\"\n")
        shim.chmod(0o755)
    script = subprocess.run([str(shim), "completion", "bash"], capture_output=True, text=True, check=True).stdout
    line = ("dockyard", *words)
    program = (f"{script}\nCOMP_WORDS=({' '.join(shlex.quote(w) for w in line)}); COMP_CWORD={len(line) - 1}; "
               "_dockyard; printf '%s\\n' \"${COMPREPLY[@]}\"")
    env = {**d.env, "PATH": f"{shim.parent}:/usr/bin:/bin"}
    out = subprocess.run(["bash", "--norc", "-c", program], capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode == 0, out.stderr
    return [x for x in out.stdout.splitlines() if x]


def test_bash_completes_from_the_daemon(clean_daemon: Daemon, tmp_path: Path) -> None:
    d = clean_daemon
    d.docker("run", "-d", "--name", "compl-web", "busybox", "sleep", "300")
    d.docker("network", "create", "compl-net")
    d.docker("volume", "create", "compl-vol")
    try:
        assert complete(d, tmp_path, "sto") == ["stop"]
        assert complete(d, tmp_path, "stop", "") == ["compl-web"]
        assert complete(d, tmp_path, "container", "logs", "compl") == ["compl-web"]
        assert complete(d, tmp_path, "ps", "--a") == ["--all"]
        assert complete(d, tmp_path, "run", "-d", "busy") == ["busybox:latest"]
        assert complete(d, tmp_path, "network", "rm", "compl") == ["compl-net"]
        assert complete(d, tmp_path, "network", "connect", "compl-net", "compl") == ["compl-web"]
        assert complete(d, tmp_path, "volume", "inspect", "compl") == ["compl-vol"]
        assert "prune" in complete(d, tmp_path, "image", "")
    finally:
        d.docker("network", "rm", "compl-net")
        d.docker("volume", "rm", "compl-vol", check=False)


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_completion_scripts(shell: str) -> None:
    p = subprocess.run([sys.executable, "-m", "dockyard.cli.main", "completion", shell], capture_output=True,
                       text=True, cwd=ROOT)
    assert p.returncode == 0 and "dockyard __complete" in p.stdout
    if shell == "bash":
        assert subprocess.run(["bash", "-n"], input=p.stdout, text=True).returncode == 0  # it parses
