"""runtime/cgroups.sample on made-up cgroup trees (v2 and v1), as the kernel lays them out."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from dockyard.runtime import cgroups


def write(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)


def test_v2(tmp_path: Path) -> None:
    write(tmp_path, {
        "cgroup.controllers": "cpu memory pids io\n",
        "dockyard/c1/memory.current": "4096\n", "dockyard/c1/memory.max": "max\n",
        "dockyard/c1/memory.stat": "anon 1024\nfile 2048\n",
        "dockyard/c1/cpu.stat": "usage_usec 30\nuser_usec 20\nsystem_usec 10\nnr_periods 5\nnr_throttled 2\n"
                                "throttled_usec 7\n",
        "dockyard/c1/pids.current": "3\n", "dockyard/c1/pids.max": "100\n",
        "dockyard/c1/io.stat": "8:0 rbytes=512 wbytes=1024 rios=1 wios=2\n",
    })
    s = cgroups.sample("/dockyard/c1", tmp_path)
    assert s.v2 and (s.memory_usage, s.memory_limit) == (4096, None)  # "max": unlimited
    assert s.memory_stat == {"anon": 1024, "file": 2048}
    assert (s.cpu_total_ns, s.cpu_user_ns, s.cpu_system_ns) == (30_000, 20_000, 10_000)
    assert (s.cfs_periods, s.cfs_throttled_periods, s.cfs_throttled_ns) == (5, 2, 7_000)
    assert (s.pids_current, s.pids_limit) == (3, 100)
    assert s.io_bytes == [(8, 0, "read", 512), (8, 0, "write", 1024)]
    cpu = cgroups.sample("/dockyard/c1", tmp_path, cpu_only=True)  # a stats answer's precpu: cpu.stat alone
    assert (cpu.cpu_total_ns, cpu.cfs_throttled_ns, cpu.memory_usage, cpu.pids_current) == (30_000, 7_000, None, None)


def test_v1(tmp_path: Path) -> None:
    tick = 1_000_000_000 // os.sysconf("SC_CLK_TCK")
    write(tmp_path, {
        "memory/dockyard/c1/memory.usage_in_bytes": "4096\n",
        "memory/dockyard/c1/memory.limit_in_bytes": "9223372036854771712\n",  # v1's "no limit"
        "memory/dockyard/c1/memory.max_usage_in_bytes": "8192\n", "memory/dockyard/c1/memory.failcnt": "1\n",
        "memory/dockyard/c1/memory.stat": "rss 100\ncache 200\n",
        "cpu,cpuacct/dockyard/c1/cpuacct.usage": "999\n",
        "cpu,cpuacct/dockyard/c1/cpuacct.stat": "user 3\nsystem 1\n",
        "cpu,cpuacct/dockyard/c1/cpuacct.usage_percpu": "500 499\n",
        "cpu,cpuacct/dockyard/c1/cpu.stat": "nr_periods 4\nnr_throttled 1\nthrottled_time 77\n",
        "pids/dockyard/c1/pids.current": "2\n", "pids/dockyard/c1/pids.max": "max\n",
        "blkio/dockyard/c1/blkio.throttle.io_service_bytes": "8:0 Read 10\n8:0 Write 20\nTotal 30\n",
    })
    s = cgroups.sample("/dockyard/c1", tmp_path)
    assert not s.v2 and (s.memory_usage, s.memory_limit, s.memory_max_usage, s.memory_failcnt) == (4096, None, 8192, 1)
    assert (s.cpu_total_ns, s.cpu_user_ns, s.cpu_system_ns, s.percpu_ns) == (999, 3 * tick, tick, [500, 499])
    assert (s.cfs_periods, s.cfs_throttled_periods, s.cfs_throttled_ns) == (4, 1, 77)
    assert (s.pids_current, s.pids_limit) == (2, None)
    assert s.io_bytes == [(8, 0, "read", 10), (8, 0, "write", 20)]
    cpu = cgroups.sample("/dockyard/c1", tmp_path, cpu_only=True)
    assert (cpu.cpu_total_ns, cpu.percpu_ns, cpu.cfs_periods) == (s.cpu_total_ns, s.percpu_ns, s.cfs_periods)
    assert (cpu.memory_usage, cpu.memory_stat, cpu.pids_current, cpu.io_bytes) == (None, {}, None, [])


def test_a_gone_cgroup_reads_as_nothing(tmp_path: Path) -> None:
    write(tmp_path, {"cgroup.controllers": "cpu\n"})
    s = cgroups.sample("/dockyard/gone", tmp_path)
    assert (s.memory_usage, s.pids_current, s.cpu_total_ns, s.io_bytes) == (None, None, 0, [])


def test_a_second_sample_opens_no_file_and_reads_what_is_there_now(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path, {"cgroup.controllers": "cpu\n", "dockyard/c2/memory.current": "4096\n",
                     "dockyard/c2/cpu.stat": "usage_usec 30\n"})
    assert cgroups.sample("/dockyard/c2", tmp_path).memory_usage == 4096
    (tmp_path / "dockyard/c2/memory.current").write_text("8192\n")  # the same file, as the kernel's are
    opened: list[str] = []
    real_open = os.open
    monkeypatch.setattr(os, "open", lambda p, *a, **k: opened.append(str(p)) or real_open(p, *a, **k))
    s = cgroups.sample("/dockyard/c2", tmp_path)
    assert (s.memory_usage, s.cpu_total_ns) == (8192, 30_000)
    assert [p for p in opened if "c2" in p and "memory.current" in p] == []  # kept open from the first sample
    monkeypatch.undo()
    cgroups.forget("c2")  # what the runtime's delete does: the files go before the cgroup
    assert "dockyard/c2" not in cgroups._open.by_group


def test_past_the_cap_files_are_opened_per_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path, {"cgroup.controllers": "cpu\n", "dockyard/c3/memory.current": "1\n"})
    monkeypatch.setattr(cgroups._open, "cap", cgroups._open.count)  # full
    assert cgroups.sample("/dockyard/c3", tmp_path).memory_usage == 1
    assert "dockyard/c3" not in cgroups._open.by_group


def test_a_cgroup_a_killed_process_is_still_leaving_is_removed_once_it_has_left() -> None:
    """runc delete --force SIGKILLs a process that outlived the init but cannot wait for it; at load it
    was still in the cgroup when runc's rmdir retries ended, and the dirs stayed for good. The daemon now
    tries a busy dir again (runtime/monitor.py _rmdir_cgroups_left). A real cgroup, a real process."""
    import secrets
    import signal
    import subprocess
    import threading

    from dockyard.runtime.cgroups import ROOT, is_v2, rmdir_until_gone

    d = (ROOT if is_v2() else ROOT / "pids") / f"dockyard-test-{secrets.token_hex(4)}"
    d.mkdir()
    p = subprocess.Popen(["sleep", "60"])
    try:
        (d / "cgroup.procs").write_text(str(p.pid))
        assert rmdir_until_gone([d], 0.0) == [d]  # busy: one try (what the daemon did) leaves it
        threading.Timer(0.3, p.send_signal, (signal.SIGKILL,)).start()
        threading.Timer(0.35, p.wait).start()  # reaped, as conmon reaps what it holds
        assert rmdir_until_gone([d], 5.0) == []
        assert not d.exists()
    finally:
        p.kill()
        p.wait()
        if d.exists():
            d.rmdir()
