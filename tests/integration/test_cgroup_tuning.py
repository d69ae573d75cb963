"""The daemon turns on cgroup2 favordynmods (fast cgroup moves for runc create and exec), unless told not to."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

from dockyard.runtime.cgroup_tuning import cgroup2_mount, set_favordynmods
from tests.conftest import Daemon


def _favored() -> bool:
    m = cgroup2_mount()
    if m is None:
        pytest.skip("this host has no cgroup2 mount (v1 only): there is no favordynmods to set")
    return m.favored


def test_daemon_start_sets_favordynmods_and_the_flag_turns_it_off() -> None:
    was = _favored()
    base = Path(tempfile.mkdtemp(prefix="dy-cgt-", dir="/tmp"))
    d = Daemon(base)
    try:
        assert "off" in set_favordynmods(False)
        assert not _favored()
        d.start("--cgroup-favordynmods=false")
        assert not _favored(), "the daemon changed the mount although told not to"
        d.stop()
        d.start()
        assert _favored()
        assert "favordynmods on" in d.log.read_text()
        # Still runs containers with the option on (the mount was remounted, not replaced).
        d.load_busybox()
        assert d.docker("run", "--rm", "busybox", "echo", "ok").stdout.strip() == b"ok"
    finally:
        d.teardown()
        set_favordynmods(was)


def test_remount_keeps_per_mount_options() -> None:
    m = cgroup2_mount()
    if m is None:
        pytest.skip("this host has no cgroup2 mount (v1 only)")
    was = m.favored
    try:
        set_favordynmods(not was)
        after = cgroup2_mount()
        assert after is not None and after.path == m.path
        assert after.mount_opts == m.mount_opts
        assert [o for o in after.super_opts if o != "favordynmods"] == [o for o in m.super_opts if o != "favordynmods"]
    finally:
        set_favordynmods(was)
