"""A created runc container is started without a `runc start` process: the daemon reads runc's exec
fifo itself (runtime/monitor.py _start_by_fifo), and runc then sees the container running; the fifo
is waited on until the init writes it, and an init that dies meanwhile fails the start."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import threading
import time
from pathlib import Path

import pytest

from dockyard.runtime.monitor import _drain_fifo
from tests.conftest import Daemon

pytestmark = [pytest.mark.root, pytest.mark.skipif(os.geteuid() != 0, reason="needs root")]


def ops(d: Daemon, cid: str) -> list[str]:
    out = d.dockyard("trace", "--format", "json", cid).stdout.decode().splitlines()
    return [json.loads(x)["Op"] for x in out]


def test_a_start_needs_no_runc_start(clean_daemon: Daemon) -> None:
    d = clean_daemon
    assert d.docker("run", "--rm", "busybox", "echo", "hi").stdout == b"hi\n"
    cid = d.docker("run", "-d", "busybox", "sleep", "600").stdout.decode().strip()
    done = ops(d, cid)
    assert any(o.startswith("runc start's work: read ") for o in done), done
    assert not any(o.startswith("runc start ") for o in done), done  # no runc process
    root = d.exec_root / "runtime" / "runc"
    state = json.loads(subprocess.run(["runc", "--root", str(root), "state", cid], capture_output=True,
                                      check=True).stdout)
    assert state["status"] == "running"
    assert not (root / cid / "exec.fifo").exists()
    assert d.docker("exec", cid, "cat", "/proc/1/cmdline").stdout == b"sleep\x00600\x00"
    d.docker("rm", "-f", cid)


def _drain(fifo: Path, pidfd: int) -> bytes:
    async def go() -> bytes:
        fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            return await _drain_fifo(fd, pidfd)
        finally:
            os.close(fd)
    return asyncio.run(go())


def test_the_fifo_is_read_once_its_writer_has_come_and_gone(tmp_path: Path) -> None:
    fifo = tmp_path / "exec.fifo"
    os.mkfifo(fifo)
    holder = subprocess.Popen(["sleep", "600"])  # stands for the init, alive throughout
    pidfd = os.pidfd_open(holder.pid)

    def late_writer() -> None:  # opens the fifo only after the reader waits on it
        time.sleep(0.3)
        fd = os.open(fifo, os.O_WRONLY)
        os.write(fd, b"0")
        os.close(fd)

    t = threading.Thread(target=late_writer)
    t.start()
    try:
        assert _drain(fifo, pidfd) == b"0"  # not the empty read of a fifo no writer has opened yet
    finally:
        t.join()
        holder.kill()
        holder.wait()
        os.close(pidfd)


def test_an_init_that_dies_before_writing_ends_the_wait(tmp_path: Path) -> None:
    fifo = tmp_path / "exec.fifo"
    os.mkfifo(fifo)
    init = subprocess.Popen(["sleep", "0.3"])
    pidfd = os.pidfd_open(init.pid)
    try:
        assert _drain(fifo, pidfd) == b""
    finally:
        init.wait()
        os.close(pidfd)


def test_a_removal_leaves_no_dirs_behind(clean_daemon: Daemon) -> None:
    d = clean_daemon
    cid = d.docker("run", "-d", "busybox", "sleep", "600").stdout.decode().strip()
    dirs = [d.data_root / "containers" / cid, d.exec_root / "containers" / cid]
    assert all(p.is_dir() for p in dirs)
    d.docker("rm", "-f", cid)
    assert not any(p.exists() for p in dirs)  # gone from their places when rm answers
    for _ in range(200):  # and their files go from the trash just after
        if not [*(d.data_root / "trash").glob(f"{cid}-*"), *(d.exec_root / "trash").glob(f"{cid}-*")]:
            break
        time.sleep(0.05)
    else:
        raise AssertionError("the removed container's dirs stayed in the trash")
