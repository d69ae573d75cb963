"""conmon's log at an exit: no fsync before the exit file (dockerd's json-file never syncs a log; conmon's
sync was a journal commit on every exit with output, 1-20 ms of each `run` and `exec` here), and an exec
has no log file at all (its output goes to its attach socket only)."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import Daemon
from tests.integration.test_exec_prepared import create_exec, monitors_of, until


def cmdline(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")


def first_cmdline(name: str) -> list[str]:
    """The argv of a conmon naming `name` that is still there when read ([] if none)."""
    for pid in monitors_of(name):
        try:
            return cmdline(pid)
        except OSError:  # exited since the scan (the parent of conmon's daemonizing fork)
            continue
    return []


def test_monitors_do_not_sync_logs_and_an_exec_writes_none(clean_daemon: Daemon) -> None:
    d = clean_daemon
    cid = d.docker("run", "-d", "--name", "logsync", "busybox", "sh", "-c", "echo up; sleep 1000").stdout.decode().strip()
    ctr = first_cmdline(cid)
    assert ctr, "no conmon for the container"
    assert "--no-sync-log" in ctr
    eid = create_exec(d, "logsync", "echo from-exec")
    found: list[list[str]] = []
    # held, with its log already opened if it has one; the cmdline read in the same scan that found it (a
    # second scan raced conmon's daemonizing fork once in a trial CI: the pid found had exited)

    def held() -> bool:
        found.append(first_cmdline(eid))
        return bool(found[-1])

    until(held)
    args = found[-1]
    assert "--no-sync-log" in args
    assert "k8s-file:/dev/null" in args
    assert not (d.exec_root / "execs" / eid / "exec.log").exists()
    # The output still reaches the client, and the container's log is as before.
    assert d.docker("exec", "logsync", "sh", "-c", "echo out; echo err >&2").stdout == b"out\n"
    assert d.docker("logs", "logsync").stdout == b"up\n"
