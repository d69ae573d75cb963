"""An exec created for attaching has its conmon spawned at create and held (services/execs.py): it must
never run before start, and a held monitor nobody starts goes away (after the TTL, or with its container)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

from dockyard.services.execs import PREPARED_TTL
from tests.conftest import Daemon


def monitors_of(exec_id: str) -> list[int]:
    out = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if cmd and cmd[0].endswith(b"conmon") and exec_id.encode() in b" ".join(cmd):
            out.append(int(pid))
    return out


def until(cond: Callable[[], bool], timeout: float = 30) -> None:
    end = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < end, "condition never became true"
        time.sleep(0.1)


def create_exec(d: Daemon, ctr: str, script: str) -> str:
    with d.api() as c:
        r = c.post(f"/containers/{ctr}/exec", json={"Cmd": ["sh", "-c", script], "AttachStdout": True})
        assert r.status_code == 201, r.text
        return str(r.json()["Id"])


def test_held_exec_never_runs_unstarted_and_expires(clean_daemon: Daemon) -> None:
    d = clean_daemon
    d.docker("run", "-d", "--name", "held", "busybox", "sleep", "1000")
    eid = create_exec(d, "held", "touch /ran")
    until(lambda: bool(monitors_of(eid)))  # spawned at create, held
    until(lambda: not monitors_of(eid), timeout=PREPARED_TTL + 20)  # dropped, not run
    assert d.docker("exec", "held", "ls", "/ran", check=False).returncode != 0
    # A late start still works: it spawns afresh.
    with d.api() as c:
        assert c.post(f"/exec/{eid}/start", json={"Detach": True}).status_code == 200
    until(lambda: d.docker("exec", "held", "ls", "/ran", check=False).returncode == 0)


def test_held_exec_goes_with_its_container(clean_daemon: Daemon) -> None:
    d = clean_daemon
    d.docker("run", "-d", "--name", "gone", "busybox", "sleep", "1000")
    eid = create_exec(d, "gone", "sleep 1000")
    until(lambda: bool(monitors_of(eid)))
    d.docker("rm", "-f", "gone")
    until(lambda: not monitors_of(eid))
    with d.api() as c:
        assert c.get(f"/exec/{eid}/json").status_code == 404  # the record went with the container


def test_started_with_another_tty_mode_runs_once(clean_daemon: Daemon) -> None:
    d = clean_daemon
    d.docker("run", "-d", "--name", "mode", "busybox", "sleep", "1000")
    eid = create_exec(d, "mode", "echo x >> /count")
    until(lambda: bool(monitors_of(eid)))
    with d.api() as c:  # prepared without a TTY, started detached: the held one is dropped, one runs
        assert c.post(f"/exec/{eid}/start", json={"Detach": True}).status_code == 200
    until(lambda: d.docker("exec", "mode", "cat", "/count", check=False).stdout == b"x\n")
    until(lambda: not monitors_of(eid))
    assert d.docker("exec", "mode", "cat", "/count").stdout == b"x\n"
