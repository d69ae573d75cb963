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


# Each shell asked what follows `dockyard stop ` / `dockyard sto`: zsh with compadd standing in for its
# completion system (which needs a terminal), fish with its own `complete -C`.
ASK = {
    "zsh": ("compdef(){ :; }; compadd(){ shift 2; print -l -- \"${(@P)1}\"; }; source @script@; "
            "words=(dockyard @words@); CURRENT=@n@; _dockyard"),
    "fish": "source @script@; complete -C 'dockyard @line@'",
}


@pytest.mark.parametrize("shell", ["zsh", "fish"])
def test_zsh_and_fish_complete_from_the_daemon(clean_daemon: Daemon, tmp_path: Path, shell: str) -> None:
    d = clean_daemon
    d.docker("run", "-d", "--name", "compl-web", "busybox", "sleep", "300")
    complete(d, tmp_path, "ps")  # makes the shim
    script = tmp_path / f"completion.{shell}"
    script.write_text(subprocess.run([sys.executable, "-m", "dockyard.cli.main", "completion", shell],
                                     capture_output=True, text=True, cwd=ROOT, check=True).stdout)
    env = {**d.env, "PATH": f"{tmp_path / 'bin'}:/usr/bin:/bin"}
    for words, want in ((["sto"], ["stop"]), (["stop", ""], ["compl-web"])):
        program = (ASK[shell].replace("@script@", str(script))
                   .replace("@words@", " ".join(shlex.quote(w) for w in words))
                   .replace("@n@", str(len(words) + 1)).replace("@line@", " ".join(words)))
        argv = ["zsh", "-f", "-c", program] if shell == "zsh" else ["fish", "--no-config", "-c", program]
        out = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=60)
        assert out.returncode == 0, out.stderr
        assert [x.split("\t")[0] for x in out.stdout.splitlines() if x] == want, out


def test_bash_script_parses() -> None:
    p = subprocess.run([sys.executable, "-m", "dockyard.cli.main", "completion", "bash"], capture_output=True,
                       text=True, cwd=ROOT)
    assert p.returncode == 0 and "dockyard __complete" in p.stdout
    assert subprocess.run(["bash", "-n"], input=p.stdout, text=True).returncode == 0
