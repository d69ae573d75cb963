"""Crash safety: containers outlive the daemon (SIGKILL or SIGTERM), one daemon per root, reboots."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ROOT, Daemon


@pytest.fixture()
def own_daemon() -> Iterator[Daemon]:
    d = Daemon(Path(tempfile.mkdtemp(prefix="dy-restart-", dir="/tmp")))
    d.start()
    try:
        d.load_busybox()
        yield d
    finally:
        if d.proc is None:
            try:
                d.start()
            except RuntimeError:
                pass
        d.teardown()


def _pid(d: Daemon, name: str) -> int:
    return int(d.docker("inspect", "-f", "{{.State.Pid}}", name).stdout)


def _wait_for(pred, what: str, tries: int = 200) -> None:  # type: ignore[no-untyped-def]
    for _ in range(tries):
        if pred():
            return
        time.sleep(0.05)
    raise AssertionError(f"never happened: {what}")


def _status(d: Daemon, name: str) -> str:
    return d.docker("ps", "-a", "--filter", f"name=^{name}$", "--format", "{{.Status}}").stdout.decode().strip()


@pytest.mark.parametrize("how", ["kill", "stop"])
def test_containers_survive_daemon_restart(own_daemon: Daemon, how: str) -> None:
    d = own_daemon
    d.docker("run", "-d", "--name", "long", "busybox", "sh", "-c",
             "i=0; while true; do echo tick$i; i=$((i+1)); sleep 0.2; done")
    d.docker("run", "-d", "--name", "short", "busybox", "sh", "-c", "sleep 2; exit 5")
    pid = _pid(d, "long")
    getattr(d, how)()
    time.sleep(3)  # "short" exits while no daemon is there to see it
    d.start()

    assert _pid(d, "long") == pid
    assert _status(d, "long").startswith("Up")
    assert _status(d, "short").startswith("Exited (5)")
    assert d.docker("wait", "short").stdout.strip() == b"5"
    assert json.loads(d.docker("inspect", "short").stdout)[0]["State"]["ExitCode"] == 5

    logs = d.docker("logs", "long").stdout.decode().splitlines()
    assert logs and logs[0] == "tick0"
    # logs -f follows output written after the restart.
    f = subprocess.Popen(["docker", "logs", "-f", "--tail", "0", "long"], env=d.env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert f.stdout is not None
        line = f.stdout.readline().decode()
        assert line.startswith("tick")
        assert int(line[4:]) >= len(logs) - 1
    finally:
        f.kill()
        f.wait()

    # A container started after the restart works, and exits are still noticed.
    out = d.docker("run", "--rm", "busybox", "sh", "-c", "echo after; exit 3", check=False)
    assert out.returncode == 3 and out.stdout == b"after\n"

    w = subprocess.Popen(["docker", "wait", "long"], env=d.env, stdout=subprocess.PIPE)
    d.docker("stop", "-t", "1", "long")
    assert w.communicate(timeout=30)[0].strip() == b"137"
    assert _status(d, "long").startswith("Exited (137)")
    d.docker("rm", "long", "short")
    assert d.docker("ps", "-aq").stdout == b""


def test_one_daemon_per_root(own_daemon: Daemon) -> None:
    d = own_daemon
    p = subprocess.run([sys.executable, "-m", "dockyard.daemon.main", "-H", f"unix://{d.base}/other.sock",
                        "--data-root", str(d.data_root), "--exec-root", str(d.base / "run2"),
                        "--config-file", str(d.base / "daemon.json")],
                       capture_output=True, cwd=ROOT, timeout=60)
    assert p.returncode == 1
    assert b"another dockyard daemon is already running" in p.stderr
    assert d.docker("version").returncode == 0


def test_two_daemons_side_by_side(own_daemon: Daemon) -> None:
    other = Daemon(Path(tempfile.mkdtemp(prefix="dy-restart2-", dir="/tmp")))
    other.start()
    try:
        other.load_busybox()
        own_daemon.docker("run", "-d", "--name", "a", "busybox", "sleep", "1000")
        other.docker("run", "-d", "--name", "a", "busybox", "sleep", "1000")
        assert own_daemon.docker("ps", "--format", "{{.Names}}").stdout == b"a\n"
        assert other.docker("ps", "--format", "{{.Names}}").stdout == b"a\n"
        assert _pid(own_daemon, "a") != _pid(other, "a")
        assert other.docker("run", "--rm", "busybox", "echo", "ok").stdout == b"ok\n"
    finally:
        other.teardown()
    assert own_daemon.docker("ps", "--format", "{{.Names}}").stdout == b"a\n"


def test_reboot_marks_running_containers_exited(own_daemon: Daemon) -> None:
    d = own_daemon
    cid = d.docker("run", "-d", "--name", "r", "busybox", "sleep", "1000").stdout.decode().strip()
    pid = _pid(d, "r")
    rootfs = d.exec_root / "containers" / cid / "rootfs"
    d.kill()
    # A reboot leaves no processes and no mounts; simulate that, then change the boot id.
    subprocess.run(["kill", "-9", str(pid)], check=True)
    db = sqlite3.connect(d.data_root / "dockyard.db")
    db.execute("UPDATE containers SET boot_id='an-earlier-boot' WHERE id=?", (cid,))
    db.commit()
    db.close()
    d.start()
    st = json.loads(d.docker("inspect", "r").stdout)[0]["State"]
    assert st["Running"] is False and st["Status"] == "exited" and st["Pid"] == 0
    assert not rootfs.is_mount()
    assert d.docker("start", "r").returncode == 0
    assert _status(d, "r").startswith("Up")
