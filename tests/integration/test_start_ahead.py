"""A start's work begun at create (services/container_ahead.py): the rootfs mount, the netns, the bundle
and `conmon -> runc create` run while the client's round trips go on, and the start uses them. What
must hold: it is invisible before the start (created, Pid 0, no address), a change before the start is
honoured (the speculation is dropped or its spec differs), and a create with no start leaves nothing
(after the timeout, a removal, the daemon's stop or a kill -9 and restart)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Daemon, own_daemon

pytestmark = [pytest.mark.root, pytest.mark.skipif(os.geteuid() != 0, reason="needs root")]


@pytest.fixture(autouse=True)
def _ahead_on(monkeypatch: pytest.MonkeyPatch) -> None:
    """It is off unless the daemon's environment turns it on (container_ahead.MODE)."""
    monkeypatch.setenv("DOCKYARD_START_AHEAD", "on")


def _eventually(pred: Any, what: str, timeout: float = 15) -> None:
    end = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < end, f"not within {timeout} s: {what}"
        time.sleep(0.02)


def _conmons(cid: str) -> list[int]:
    """conmon processes of the container (by their -c argument)."""
    out = []
    for p in Path("/proc").iterdir():
        if not p.name.isdigit():
            continue
        try:
            argv = (p / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv and argv[0].endswith(b"conmon") and cid.encode() in argv:
            out.append(int(p.name))
    return out


def _mounted(path: Path) -> bool:
    with open("/proc/self/mountinfo") as f:
        return any(line.split()[4] == str(path) for line in f)


def _ahead_made(d: Daemon, cid: str) -> None:
    """Until the create made ahead has answered (runc's pid file in the bundle)."""
    _eventually(lambda: (d.exec_root / "containers" / cid / "pidfile").exists(), "runc create ahead")


def _nothing_left(d: Daemon, cid: str) -> None:
    bundle = d.exec_root / "containers" / cid
    # a removed running container's network goes after the removal has answered (test_teardown.py)
    _eventually(lambda: not (d.exec_root / "netns" / cid).exists(), "the netns released")
    assert _conmons(cid) == []
    assert not (d.exec_root / "runtime" / "runc" / cid).exists(), "runc's state"
    assert not (d.exec_root / "netns" / cid).exists(), "the netns"
    assert not (d.exec_root / "exits" / cid).exists(), "an exit file"
    assert not (d.exec_root / "monitor" / f"{cid}.json").exists(), "the monitor's record"
    assert not _mounted(bundle / "rootfs"), "the rootfs mount"
    assert not bundle.exists() or list(bundle.iterdir()) == [], f"bundle files: {list(bundle.iterdir())}"


def _inspect(d: Daemon, cid: str) -> dict[str, Any]:
    out: dict[str, Any] = json.loads(d.docker("inspect", cid).stdout)[0]
    return out


def test_created_is_created_until_its_start() -> None:
    with own_daemon("dy-ahead-") as d:
        since = str(time.time() - 1)
        cid = d.docker("create", "busybox", "sh", "-c", "hostname; grep -c . /etc/hosts").stdout.decode().strip()
        _ahead_made(d, cid)
        assert _conmons(cid), "the create made ahead runs under its conmon"
        st = _inspect(d, cid)
        assert st["State"]["Status"] == "created" and st["State"]["Pid"] == 0
        assert st["State"]["StartedAt"].startswith("0001-")
        assert all(not n["IPAddress"] for n in st["NetworkSettings"]["Networks"].values())
        assert d.docker("ps", "-q").stdout.strip() == b""
        events = d.docker("events", "--since", since, "--until", str(time.time()), "--format",
                          "{{.Type}} {{.Action}}", "--filter", f"container={cid}").stdout.decode().split("\n")
        assert [e for e in events if e] == ["container create"]
        out = d.docker("start", "-a", cid).stdout.decode().split()
        assert out[0] == cid[:12] and int(out[1]) >= 7  # the hosts file with its own address line
        assert _inspect(d, cid)["State"]["ExitCode"] == 0


def test_changes_before_the_start_are_honoured() -> None:
    with own_daemon("dy-ahead-") as d:
        d.docker("network", "create", "ahead-net")
        cid = d.docker("create", "--name", "one", "busybox", "sh", "-c",
                       "cat /hello; ip -o -4 addr | grep -c 'eth[01]'; sleep 600").stdout.decode().strip()
        _ahead_made(d, cid)
        d.docker("rename", "one", "two")
        d.docker("update", "--memory", "64m", "--memory-swap", "128m", "two")
        d.docker("network", "connect", "ahead-net", "two")
        d.docker("cp", "-", "two:/", input=_tar("hello", b"put before the start\n"))
        d.docker("start", "two")
        v1, v2 = Path(f"/sys/fs/cgroup/memory/dockyard/{cid}/memory.limit_in_bytes"), \
            Path(f"/sys/fs/cgroup/dockyard/{cid}/memory.max")
        assert (v1 if v1.exists() else v2).read_text().strip() == str(64 << 20)
        _eventually(lambda: d.docker("logs", "two").stdout.decode().splitlines() == ["put before the start", "2"],
                    "the file put and both networks")
        d.docker("rm", "-f", "two")
        d.docker("network", "rm", "ahead-net")
        _nothing_left(d, cid)


def test_a_change_racing_the_start_leaves_the_new_run_running() -> None:
    """The dropped runc container's conmon writes an exit file as it goes: not taken for the new run's."""
    with own_daemon("dy-ahead-") as d:
        for _ in range(3):
            cid = d.docker("create", "busybox", "sleep", "600").stdout.decode().strip()
            _ahead_made(d, cid)
            d.docker("update", "--cpu-shares", "512", cid)
            d.docker("start", cid)
            time.sleep(0.5)
            st = _inspect(d, cid)["State"]
            assert st["Status"] == "running" and st["Pid"] > 0, st
            assert len(_conmons(cid)) == 1
            d.docker("rm", "-f", cid)
            _nothing_left(d, cid)


def test_create_without_start_leaves_nothing() -> None:
    with own_daemon("dy-ahead-") as d:
        timed_out = d.docker("create", "busybox", "echo", "late").stdout.decode().strip()
        removed = d.docker("create", "busybox", "true").stdout.decode().strip()
        _ahead_made(d, timed_out)
        _ahead_made(d, removed)
        d.docker("rm", removed)
        _nothing_left(d, removed)
        _eventually(lambda: not _conmons(timed_out) and not (d.exec_root / "netns" / timed_out).exists(),
                    "the timeout's drop")
        time.sleep(0.2)
        _nothing_left(d, timed_out)
        assert _inspect(d, timed_out)["State"]["Status"] == "created"
        assert d.docker("start", "-a", timed_out).stdout == b"late\n"  # the start does it all itself


def test_daemon_stop_and_kill_leave_nothing() -> None:
    with own_daemon("dy-ahead-") as d:
        stopped = d.docker("create", "busybox", "echo", "after stop").stdout.decode().strip()
        _ahead_made(d, stopped)
        d.stop()
        _nothing_left(d, stopped)
        d.start()
        killed = d.docker("create", "busybox", "echo", "after kill").stdout.decode().strip()
        _ahead_made(d, killed)
        d.kill()
        assert _conmons(killed), "conmon outlives the daemon"
        d.start()
        _nothing_left(d, killed)
        assert _inspect(d, killed)["State"]["Status"] == "created"
        assert d.docker("start", "-a", killed).stdout == b"after kill\n"
        assert d.docker("start", "-a", stopped).stdout == b"after stop\n"


def _tar(name: str, data: bytes) -> bytes:
    import io
    import tarfile

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        info.mode = 0o644
        t.addfile(info, io.BytesIO(data))
    return buf.getvalue()
