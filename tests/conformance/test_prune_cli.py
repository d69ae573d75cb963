"""Our CLI's prunes (cli/prune.py) print what the docker CLI prints, against the same daemon:
the same headings, lists, blank lines and totals, for each kind and for `system prune`."""

from __future__ import annotations

import re

import pytest

from tests.conftest import Daemon


def shape(out: bytes) -> list[str]:
    """Lines with ids and sizes made neutral (the two runs remove different objects)."""
    text = re.sub(rb"[0-9a-f]{64}", b"<id>", out)
    text = re.sub(rb"sha256:<id>", b"<id>", text)
    text = re.sub(rb"(Total reclaimed space: ).*", rb"\1<size>", text)
    return text.decode().splitlines()


def make_garbage(d: Daemon) -> None:
    """The same names each round: the round before pruned them all."""
    d.docker("run", "--name", "stopped", "busybox", "true")
    d.docker("network", "create", "prunable")
    d.docker("run", "-v", "/anon", "--name", "with-anon", "busybox", "true")  # an anonymous volume
    d.docker("rm", "with-anon")
    d.docker("run", "--name", "committed", "busybox", "sh", "-c", "date > /f")
    d.docker("commit", "committed")  # a dangling image
    d.docker("rm", "committed")


@pytest.mark.parametrize("argv", [
    ["container", "prune", "-f"], ["image", "prune", "-f"], ["network", "prune", "-f"], ["volume", "prune", "-f"],
    ["system", "prune", "-f"],
])
def test_prune_prints_as_docker(clean_daemon: Daemon, argv: list[str]) -> None:
    d = clean_daemon
    outs = []
    for cli in (d.docker, d.dockyard):
        make_garbage(d)
        outs.append(shape(cli(*argv).stdout))
        d.docker("system", "prune", "-f", "--volumes")  # whatever this kind left, for the next round
    assert outs[1] == outs[0]
    assert any(line.startswith("Deleted") for line in outs[0])


def test_empty_prunes_and_the_question(clean_daemon: Daemon) -> None:
    d = clean_daemon
    d.docker("system", "prune", "-f")
    for argv in (["container", "prune", "-f"], ["network", "prune", "-f"], ["builder", "prune", "-f"]):
        assert shape(d.dockyard(*argv).stdout) == shape(d.docker(*argv).stdout), argv
    asked = d.dockyard("container", "prune", input=b"n\n").stdout.decode()
    assert asked == "WARNING! This will remove all stopped containers.\nAre you sure you want to continue? [y/N] "
