"""The init layer (store/initlayer.py) is made once per image top layer and shared by its containers
through their `init` symlink: what one container changes stays in its own upper dir, `diff` still sees
the init layer's files as there before (modified, not added), and the shared layer goes with its layer."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.conftest import Daemon

pytestmark = [pytest.mark.root, pytest.mark.skipif(os.geteuid() != 0, reason="needs root")]


def _init_of(d: Daemon, name: str) -> Path:
    cid = d.docker("inspect", "-f", "{{.Id}}", name).stdout.decode().strip()
    return d.data_root / "containers" / cid / "init"


def test_containers_of_an_image_share_one_init_layer(clean_daemon: Daemon) -> None:
    d = clean_daemon
    d.docker("run", "--name", "ia", "busybox", "sh", "-c", "echo mine > /.dockerenv")
    d.docker("create", "--name", "ib", "busybox", "cat", "/.dockerenv")
    a, b = _init_of(d, "ia"), _init_of(d, "ib")
    assert a.is_symlink() and os.readlink(a) == os.readlink(b)
    shared = Path(os.readlink(a))
    assert (shared / ".dockerenv").stat().st_size == 0  # a's write went to its upper dir
    d.docker("start", "-a", "ib")
    assert d.docker("logs", "ib").stdout == b""
    # /.dockerenv is in a lower layer (the symlinked one): changed, not added.
    assert "C /.dockerenv" in d.docker("diff", "ia").stdout.decode().splitlines()
    d.docker("rm", "ia", "ib")
    assert shared.is_dir()  # the image's, not theirs

    # An image of its own (a new top layer): its init layer goes when the image does.
    d.docker("run", "--name", "ic", "busybox", "touch", "/made")
    d.docker("commit", "ic", "initshared:1")
    d.docker("rm", "ic")
    d.docker("run", "--name", "ie", "initshared:1", "true")
    own = Path(os.readlink(_init_of(d, "ie")))
    assert own != shared and (own / ".dockerenv").is_file()
    d.docker("rm", "ie")
    d.docker("rmi", "initshared:1")
    assert not own.exists() and not own.parent.exists()


def test_a_shared_init_layer_gone_with_its_snapshot_is_made_again(clean_daemon: Daemon) -> None:
    """A snapshot published but not synced before a power loss is dropped and extracted again at the next
    start (store/unsynced.py); its shared init layer went with it, and the containers' symlinks dangled."""
    d = clean_daemon
    d.docker("create", "--name", "ig", "busybox", "cat", "/.dockerenv")
    shared = Path(os.readlink(_init_of(d, "ig")))
    shutil.rmtree(shared)
    assert d.docker("start", "-a", "ig").returncode == 0
    assert (shared / ".dockerenv").is_file()
    d.docker("rm", "ig")
