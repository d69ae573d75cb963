"""Healthchecks, restart policies (also across a daemon crash), resource limits and OOM kills,
driven through the real docker CLI against our daemon."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable
from typing import Any

from tests.conftest import Daemon


def until(cond: Callable[[], bool], timeout: float = 60, why: Callable[[], str] = lambda: "") -> None:
    """Wait for cond; `why` says what the daemon saw, should it never come (a flake seen once under load)."""
    end = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < end, f"condition never became true {why()}"
        time.sleep(0.1)


def log_of(d: Daemon, name: str) -> str:
    """The container's State and the daemon's log lines naming it."""
    c = inspect(d, name)
    lines = [ln[:300] for ln in d.log.read_text().splitlines() if c["Id"][:12] in ln]
    return f"{name}: {c['State']}\n" + "\n".join(lines[-40:])


def inspect(d: Daemon, name: str) -> dict[str, Any]:
    return json.loads(d.docker("inspect", name).stdout)[0]  # type: ignore[no-any-return]


def health(d: Daemon, name: str) -> dict[str, Any]:
    return inspect(d, name)["State"].get("Health") or {}


def test_healthchecks(clean_daemon: Daemon) -> None:
    d = clean_daemon
    since = str(int(time.time()) - 1)
    d.docker("run", "-d", "--name", "ok", "--health-cmd", "echo fine", "--health-interval", "200ms",
             "busybox", "sleep", "1000")
    d.docker("run", "-d", "--name", "bad", "--health-cmd", "echo no >&2; exit 1", "--health-interval", "200ms",
             "--health-retries", "2", "busybox", "sleep", "1000")
    d.docker("run", "-d", "--name", "hang", "--health-cmd", "sleep 100", "--health-interval", "200ms",
             "--health-timeout", "300ms", "--health-retries", "1", "busybox", "sleep", "1000")
    d.docker("run", "-d", "--name", "none", "--no-healthcheck", "busybox", "sleep", "1000")
    until(lambda: health(d, "ok").get("Status") == "healthy")
    until(lambda: health(d, "bad").get("Status") == "unhealthy")
    until(lambda: health(d, "hang").get("Status") == "unhealthy")
    h = health(d, "ok")
    assert h["FailingStreak"] == 0 and h["Log"][-1]["ExitCode"] == 0 and h["Log"][-1]["Output"] == "fine\n"
    until(lambda: len(health(d, "ok")["Log"]) == 5)  # Docker keeps the last five probes
    h = health(d, "bad")
    assert h["FailingStreak"] >= 2 and h["Log"][-1]["Output"] == "no\n"
    h = health(d, "hang")
    assert h["Log"][-1]["ExitCode"] == -1 and "exceeded timeout" in h["Log"][-1]["Output"]
    assert "Health" not in inspect(d, "none")["State"]
    ps = d.docker("ps", "--format", "{{.Names}} {{.Status}}").stdout.decode()
    assert "ok Up" in ps and "(healthy)" in ps and "(unhealthy)" in ps
    assert d.docker("ps", "-q", "--filter", "health=healthy").stdout.split() == [inspect(d, "ok")["Id"][:12].encode()]
    ev = d.docker("events", "--since", since, "--until", str(int(time.time()) + 1), "--filter",
                  "event=health_status", "--format", "{{.Action}} {{.Actor.Attributes.name}}").stdout.decode()
    assert "health_status: healthy ok" in ev and "health_status: unhealthy bad" in ev
    # Stopping ends the monitor; a restart starts over at "starting".
    d.docker("stop", "-t", "0", "ok")
    d.docker("start", "ok")
    assert health(d, "ok")["Status"] in ("starting", "healthy")


def test_restart_policies(clean_daemon: Daemon) -> None:
    d = clean_daemon
    d.docker("run", "-d", "--name", "onf", "--restart", "on-failure:2", "busybox", "sh", "-c", "exit 3")
    until(lambda: inspect(d, "onf")["RestartCount"] == 2 and inspect(d, "onf")["State"]["Status"] == "exited")
    assert inspect(d, "onf")["State"]["ExitCode"] == 3
    d.docker("run", "-d", "--name", "zero", "--restart", "on-failure", "busybox", "true")
    d.docker("wait", "zero")
    assert inspect(d, "zero")["RestartCount"] == 0
    d.docker("run", "-d", "--name", "alw", "--restart", "always", "busybox", "sh", "-c", "exit 0")
    until(lambda: inspect(d, "alw")["RestartCount"] >= 3)
    p = d.docker("run", "-d", "--restart", "bogus", "busybox", "true", check=False)
    assert p.returncode != 0 and b"invalid restart policy" in p.stderr


def test_restart_across_daemon_crash(clean_daemon: Daemon) -> None:
    d = clean_daemon
    d.docker("run", "-d", "--name", "up", "--restart", "always", "busybox", "sleep", "1000")
    d.docker("run", "-d", "--name", "dies", "--restart", "always", "busybox", "sleep", "1000")
    d.docker("run", "-d", "--name", "unl", "--restart", "unless-stopped", "busybox", "sleep", "1000")
    d.docker("run", "-d", "--name", "stopped", "--restart", "always", "busybox", "sleep", "1000")
    d.docker("run", "-d", "--name", "unl-stopped", "--restart", "unless-stopped", "busybox", "sleep", "1000")
    d.docker("run", "-d", "--name", "hc", "--health-cmd", "true", "--health-interval", "200ms",
             "busybox", "sleep", "1000")
    d.docker("stop", "-t", "0", "stopped", "unl-stopped")
    until(lambda: bool(health(d, "hc").get("Log")))
    up_pid = inspect(d, "up")["State"]["Pid"]
    dies_pid = inspect(d, "dies")["State"]["Pid"]
    d.kill()  # SIGKILL, as a crash would; conmon keeps the containers
    subprocess.run(["kill", "-9", str(dies_pid)], check=True)  # this one dies while the daemon is down
    d.start()
    until(lambda: inspect(d, "dies")["State"]["Running"], why=lambda: log_of(d, "dies"))
    assert inspect(d, "up")["State"]["Pid"] == up_pid  # re-adopted, not restarted
    assert inspect(d, "unl")["State"]["Running"]
    # As dockerd (checked by hand: stop both, restart dockerd): "always" comes back even after a user's
    # stop, that is its difference from "unless-stopped", which stays down.
    until(lambda: inspect(d, "stopped")["State"]["Running"])
    assert inspect(d, "unl-stopped")["State"]["Status"] == "exited"
    # The health monitor is re-armed for the re-adopted container.
    last = health(d, "hc")["Log"][-1]["Start"]
    until(lambda: health(d, "hc")["Log"][-1]["Start"] != last)
    assert health(d, "hc")["Status"] == "healthy"


def test_resources_update_and_oom(clean_daemon: Daemon) -> None:
    d = clean_daemon
    d.docker("run", "-d", "--name", "lim", "--memory", "64m", "--memory-swap", "128m", "--cpus", "0.5",
             "--cpu-shares", "512", "--cpuset-cpus", "0", "--pids-limit", "50", "--ulimit", "nofile=1024:2048",
             "--oom-kill-disable", "--shm-size", "32m", "busybox", "sleep", "1000")
    cg = "/sys/fs/cgroup"
    read = (f"cat {cg}/memory/memory.limit_in_bytes {cg}/memory/memory.memsw.limit_in_bytes "
            f"{cg}/cpu/cpu.cfs_quota_us {cg}/cpu/cpu.shares {cg}/cpuset/cpuset.cpus {cg}/pids/pids.max; "
            f"grep oom_kill_disable {cg}/memory/memory.oom_control; "
            # The container's process: runc 1.1.5 `exec` races its own Go runtime over the exec's
            # soft NOFILE (dockerd's execs here show 2048 too), so --ulimit is read where it is exact.
            "awk '/Max open files/ {print $4; print $5}' /proc/1/limits; "
            "df -k /dev/shm | tail -1")
    out = d.docker("exec", "lim", "sh", "-c", read).stdout.decode().split("\n")
    assert out[:6] == [str(64 << 20), str(128 << 20), "50000", "512", "0", "50"], out
    assert out[6] == "oom_kill_disable 1" and out[7:9] == ["1024", "2048"]
    assert out[9].split()[1] == str(32 * 1024)
    d.docker("update", "--memory", "96m", "--memory-swap", "200m", "--cpus", "1", "--pids-limit", "60", "lim")
    out = d.docker("exec", "lim", "sh", "-c", f"cat {cg}/memory/memory.limit_in_bytes {cg}/cpu/cpu.cfs_quota_us "
                   f"{cg}/pids/pids.max").stdout.decode().split()
    assert out == [str(96 << 20), "100000", "60"]
    hc = inspect(d, "lim")["HostConfig"]
    assert hc["Memory"] == 96 << 20 and hc["NanoCpus"] == 1_000_000_000
    p = d.docker("run", "--rm", "-m", "4m", "busybox", "true", check=False)
    assert p.returncode != 0 and b"Minimum memory limit allowed is 6MB" in p.stderr
    hog = 'x=$(head -c 60000000 /dev/zero | tr "\\0" a); echo survived'
    p = d.docker("run", "--name", "oom", "-m", "8m", "--memory-swap", "8m", "busybox", "sh", "-c", hog, check=False)
    assert p.returncode == 137
    st = inspect(d, "oom")["State"]
    assert st["OOMKilled"] is True and st["ExitCode"] == 137
