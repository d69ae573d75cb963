"""An exec created for attaching has its conmon spawned at create and held (services/execs.py): it must
never run before start, and a held monitor nobody starts goes away (after the TTL, or with its container)."""

from __future__ import annotations

import contextlib
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


def listening_socket_paths(pid: int) -> list[str]:
    """Paths of the unix sockets process `pid` holds (its fds' inodes looked up in /proc/net/unix)."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        with contextlib.suppress(OSError):
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    with open("/proc/net/unix") as f:
        rows = [ln.split() for ln in f.readlines()[1:]]
    return [r[7] for r in rows if len(r) >= 8 and r[6] in inodes]


def test_a_dropped_tty_exec_leaves_no_console_socket(clean_daemon: Daemon) -> None:
    """A held TTY exec's conmon has bound its console socket (`conmon-term.XXXXXX`, in its $TMPDIR)
    and waits: dropping it (SIGKILL; here by starting it detached) used to leave the socket in /tmp."""
    d = clean_daemon
    d.docker("run", "-d", "--name", "ttyheld", "busybox", "sleep", "1000")
    with d.api() as c:
        r = c.post("/containers/ttyheld/exec", json={"Cmd": ["true"], "Tty": True, "AttachStdout": True})
        assert r.status_code == 201, r.text
        eid = str(r.json()["Id"])
    # The conmon holding the socket, looked for in one pass: a conmon seen once may be gone at the next
    # look (its start forks: the parent exits), which a look-then-index raced (CI, session 6).
    held: list[tuple[int, str]] = []

    def console_held() -> bool:
        for mon in monitors_of(eid):
            with contextlib.suppress(OSError):
                held.extend((mon, p) for p in listening_socket_paths(mon) if "conmon-term" in p)
        return bool(held)

    until(console_held)
    pid = held[0][0]
    socks = [p for _, p in held]
    with d.api() as c:  # started detached: the held one is dropped
        assert c.post(f"/exec/{eid}/start", json={"Detach": True}).status_code == 200
    until(lambda: pid not in monitors_of(eid))
    left = [p for p in socks if os.path.exists(p)]
    for p in left:  # before the fix: in /tmp, ours to remove
        os.unlink(p)
    assert not left, f"the dropped exec's console socket outlived its conmon: {left}"


def test_a_held_exec_writes_no_pid_or_exit_file_and_is_still_dropped(clean_daemon: Daemon) -> None:
    """An exec's conmon runs without --conmon-pidfile and --exit-dir (each a create, a write and a
    rename on the way to the exec's start or its answer): its exit code comes on the sync pipe, and a
    held one is found for its drop by its attach socket's peer."""
    d = clean_daemon
    d.docker("run", "-d", "--name", "nofiles", "busybox", "sleep", "1000")
    eid = create_exec(d, "nofiles", "touch /ran")
    until(lambda: bool(monitors_of(eid)))
    exec_dir = d.exec_root / "execs" / eid
    assert (exec_dir / "attach").exists()  # held: conmon listens
    assert not (exec_dir / "conmon.pid").exists() and not (exec_dir / "exits").exists()
    with d.api() as c:  # started detached: the held one is dropped (killed, not run), one runs
        assert c.post(f"/exec/{eid}/start", json={"Detach": True}).status_code == 200
    until(lambda: not monitors_of(eid))
    until(lambda: d.docker("exec", "nofiles", "ls", "/ran", check=False).returncode == 0)
    # Exit codes still come back.
    assert d.docker("exec", "nofiles", "sh", "-c", "exit 3", check=False).returncode == 3
