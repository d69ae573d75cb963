"""A removal's row DELETE is committed without the fsync (services/containers.py, `_remove_files`).
A daemon killed right after the answer must not bring the container back (the commit is in the WAL,
in the page cache, which a process's death keeps); after a power loss, a row whose dirs' renames
reached the disk but whose DELETE did not is removed at the start, not shown broken."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
from collections.abc import Iterator

import pytest

from tests.conftest import Daemon
from tests.conftest import own_daemon as daemon_of


@pytest.fixture(name="own_daemon")
def restartable_daemon() -> Iterator[Daemon]:
    with daemon_of("dy-unsynced-") as d:
        yield d


def _names(d: Daemon) -> list[str]:
    return d.docker("ps", "-a", "--format", "{{.Names}}").stdout.decode().split()


def test_a_removed_container_stays_gone_after_a_daemon_kill(own_daemon: Daemon) -> None:
    d = own_daemon
    d.docker("run", "--rm", "--name", "rmd", "busybox", "true")  # answered once removed
    cid = d.docker("create", "--name", "rmed", "busybox", "true").stdout.decode().strip()
    d.docker("rm", "rmed")
    d.kill()  # at once: nothing after the answers synced the WAL
    d.start()
    assert _names(d) == []
    assert d.docker("inspect", "rmed", check=False).returncode != 0
    assert not (d.data_root / "containers" / cid).exists()
    # The names are free again.
    d.docker("run", "--rm", "--name", "rmd", "busybox", "true")
    d.docker("create", "--name", "rmed", "busybox", "true")


def test_a_row_whose_dirs_went_to_the_trash_is_removed_at_the_start(own_daemon: Daemon) -> None:
    d = own_daemon
    half = d.docker("create", "--name", "half", "busybox", "true").stdout.decode().strip()
    rebooted = d.docker("run", "-d", "--name", "rebooted", "busybox", "sleep", "1000").stdout.decode().strip()
    kept = d.docker("create", "--name", "kept", "busybox", "true").stdout.decode().strip()
    pid = int(d.docker("inspect", "-f", "{{.State.Pid}}", "rebooted").stdout)
    d.kill()
    # What a power loss can leave: the renames of a removal's dirs into the trash on disk, its row's
    # `removing` and DELETE not; for "rebooted", a reboot too (no process, no mounts, another boot id).
    subprocess.run(["kill", "-9", str(pid)], check=True)
    subprocess.run(["umount", "-l", str(d.exec_root / "containers" / rebooted / "rootfs")], check=False)
    db = sqlite3.connect(d.data_root / "dockyard.db")
    db.execute("UPDATE containers SET boot_id='an-earlier-boot' WHERE id=?", (rebooted,))
    db.commit()
    db.close()
    trash = d.data_root / "trash"
    trash.mkdir(exist_ok=True)
    for cid in (half, rebooted):
        os.rename(d.data_root / "containers" / cid, trash / f"{cid}-0123abcd")
    d.start()
    assert _names(d) == ["kept"]
    assert json.loads(d.docker("inspect", "kept").stdout)[0]["Id"] == kept
    assert not any(trash.iterdir())
    assert not (d.exec_root / "containers" / rebooted).exists()
    assert not (d.exec_root / "netns" / rebooted).exists()
    # The names are free, and the one left runs.
    d.docker("run", "--rm", "--name", "half", "busybox", "true")
    d.docker("run", "--rm", "--name", "rebooted", "busybox", "true")
    assert d.docker("start", "-a", "kept").returncode == 0
