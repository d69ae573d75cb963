"""The daemon turns on cgroup2 favordynmods (fast cgroup moves for runc create and exec), unless told not to.

The switch is the host's: every daemon starting on it turns it on. Each reads and sets it holding the
host's "favordynmods" lock (util/hostlock.py; a daemon waits for it in a thread, not holding up its
start), and so do these tests while they need it to stay as they left it; what a daemon did is read
from its own log lines (the last says what the mount showed after its remount).
"""

from __future__ import annotations

import fcntl
import os
import tempfile
import time
from pathlib import Path

import pytest

from dockyard.runtime.cgroup_tuning import OPTION, cgroup2_mount, set_favordynmods
from dockyard.util import hostlock
from tests.conftest import Daemon, flock_waiter


def _favored() -> bool:
    m = cgroup2_mount()
    if m is None:
        pytest.skip("this host has no cgroup2 mount (v1 only): there is no favordynmods to set")
    return m.favored


def _tuning(d: Daemon, since: int = 0) -> list[str]:
    """The daemon's "cgroup tuning" log lines, from its `since`th on."""
    lines = [ln.split("cgroup tuning: ", 1)[1] for ln in d.log.read_text().splitlines() if "cgroup tuning: " in ln]
    return lines[since:]


def test_daemon_start_sets_favordynmods_and_the_flag_turns_it_off() -> None:
    was = _favored()
    base = Path(tempfile.mkdtemp(prefix="dy-cgt-", dir="/tmp"))
    d = Daemon(base)
    lock = os.open(hostlock.path(OPTION), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        d.start("--cgroup-favordynmods=false")
        assert _tuning(d) == ["none (--cgroup-favordynmods=false)"], "the daemon tuned the mount although told not to"
        d.stop()
        before = len(_tuning(d))
        # Started without the flag, it waits for the lock (in a thread: it answers meanwhile), then finds
        # the switch off (set so as the lock goes) and turns it on.
        fcntl.flock(lock, fcntl.LOCK_EX)  # no other daemon reads or sets it until released
        d.start()
        assert d.proc is not None
        for _ in range(2400):  # until its tuning thread waits for the lock, or (the bug) did not
            if len(_tuning(d, before)) > 1 or flock_waiter(hostlock.path(OPTION), d.proc.pid):
                break
            time.sleep(0.05)
        assert flock_waiter(hostlock.path(OPTION), d.proc.pid), f"the daemon did not wait for the lock: {_tuning(d, before)}"
        assert "off" in set_favordynmods(False, lock=False)
        fcntl.flock(lock, fcntl.LOCK_UN)
        for _ in range(2400):  # until the daemon says what it did
            if len(_tuning(d, before)) > 1:
                break
            time.sleep(0.05)
        assert _tuning(d, before)[1:] == [f"{cgroup2_mount().path}: {OPTION} on"], _tuning(d, before)  # type: ignore[union-attr]
        # Still runs containers with the option on (the mount was remounted, not replaced).
        d.load_busybox()
        assert d.docker("run", "--rm", "busybox", "echo", "ok").stdout.strip() == b"ok"
    finally:
        os.close(lock)
        d.teardown()
        set_favordynmods(was)


def test_remount_keeps_per_mount_options() -> None:
    m = cgroup2_mount()
    if m is None:
        pytest.skip("this host has no cgroup2 mount (v1 only)")
    with hostlock.held(OPTION):
        m = cgroup2_mount()
        assert m is not None
        was = m.favored
        try:
            assert set_favordynmods(not was, lock=False).endswith(f"{OPTION} {'off' if was else 'on'}")
            after = cgroup2_mount()
            assert after is not None and after.path == m.path and after.favored != was
            assert after.mount_opts == m.mount_opts
            assert [o for o in after.super_opts if o != OPTION] == [o for o in m.super_opts if o != OPTION]
        finally:
            set_favordynmods(was, lock=False)
