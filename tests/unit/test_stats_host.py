"""services/stats: the host's figures (/proc/stat's CPU time, online CPUs, memory) are read once for all
the samples taken within SHARE_S, as dockerd's collector reads them once per tick (`docker stats` of 500
containers takes 1,000 samples at once)."""

from __future__ import annotations

import os
import time

import pytest

from dockyard.services import stats


def test_samples_close_together_share_one_reading_of_the_host(monkeypatch: pytest.MonkeyPatch) -> None:
    reads = {"stat": 0, "cpus": 0, "mem": 0}

    def system_cpu_ns() -> int:
        reads["stat"] += 1
        return 1_000_000 * reads["stat"]

    def cpu_count() -> int:
        reads["cpus"] += 1
        return 2

    def mem_total() -> int:
        reads["mem"] += 1
        return 1 << 30

    now = [100.0]
    monkeypatch.setattr(stats.procfs, "system_cpu_ns", system_cpu_ns)
    monkeypatch.setattr(stats.procfs, "mem_total", mem_total)
    monkeypatch.setattr(stats.os, "cpu_count", cpu_count)
    monkeypatch.setattr(stats, "_clock", lambda: now[0])
    monkeypatch.setattr(stats, "_host", None)
    c = stats.Subject("c" * 64, "x", "running", 0)  # no such cgroup: zero counters, no memory limit
    path = "/dockyard-no-such-parent/x"
    first = stats.container_stats(c, None, path, cpu_only=True)
    now[0] += stats.SHARE_S / 2
    second = stats.container_stats(c, first, path)
    assert reads == {"stat": 1, "cpus": 1, "mem": 1}
    assert second["cpu_stats"]["system_cpu_usage"] == first["cpu_stats"]["system_cpu_usage"] == 1_000_000
    assert second["cpu_stats"]["online_cpus"] == 2 and second["memory_stats"]["limit"] == 1 << 30
    now[0] += stats.SHARE_S * 2  # later: read afresh
    third = stats.container_stats(c, second, path)
    assert reads == {"stat": 2, "cpus": 2, "mem": 2}
    assert third["cpu_stats"]["system_cpu_usage"] == 2_000_000
    assert third["precpu_stats"] == second["cpu_stats"]


def test_a_stopped_container_reads_nothing_of_the_host(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(stats.procfs, "system_cpu_ns", lambda: pytest.fail("read /proc/stat"))
    monkeypatch.setattr(stats, "_host", None)
    doc = stats.container_stats(stats.Subject("c" * 64, "x", "exited", 0), None, "/dockyard/x")
    assert "system_cpu_usage" not in doc["cpu_stats"] and doc["memory_stats"] == {}


def test_proc_stat_and_meminfo_stay_open_and_read_afresh() -> None:
    from dockyard.runtime import procfs

    def fresh() -> int:
        with open("/proc/stat") as f:
            return sum(int(x) for x in f.readline().split()[1:8]) * (1_000_000_000 // os.sysconf("SC_CLK_TCK"))

    first = procfs.system_cpu_ns()
    fd = procfs._STAT.fd
    end = time.monotonic() + 0.1
    while time.monotonic() < end:  # the host's CPU time moves: ours at least
        pass
    later = procfs.system_cpu_ns()
    assert procfs._STAT.fd == fd is not None and later > first and later <= fresh()
    with open("/proc/meminfo") as f:
        assert procfs.mem_total() == int(f.readline().split()[1]) * 1024
    assert procfs._MEMINFO.fd is not None
