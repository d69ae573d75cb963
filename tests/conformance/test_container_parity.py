"""Container behaviours clients rely on, each run on our daemon and on the real dockerd with the same
docker-py calls: kill, update, log config, isolation, and the HostConfig that inspect shows."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import docker
import docker.errors
import pytest

from tests.conftest import Daemon, Engines


def outcome(fn: Callable[[], Any]) -> tuple[str, Any]:
    try:
        return "ok", fn()
    except docker.errors.APIError as e:
        return "error", (e.response.status_code if e.response is not None else None, e.explanation)


def test_kill_returns_once_the_container_is_dead(engines: Engines) -> None:
    def run(c: docker.APIClient) -> tuple[Any, ...]:
        cid = engines.create(c, command=["sleep", "600"])
        c.start(cid)
        c.kill(cid)  # SIGKILL; no wait of ours between this and the inspect
        st = c.inspect_container(cid)["State"]
        return st["Status"], st["Running"], st["ExitCode"]

    ours, ref = engines.both(run)
    assert ours == ref == ("exited", False, 137)


def test_kill_with_another_signal_does_not_wait(engines: Engines) -> None:
    def run(c: docker.APIClient) -> tuple[Any, ...]:
        cid = engines.create(c, command=["sh", "-c", "trap 'echo usr1' USR1; while :; do sleep 0.1; done"])
        c.start(cid)
        c.kill(cid, "SIGUSR1")
        return c.inspect_container(cid)["State"]["Running"],

    ours, ref = engines.both(run)
    assert ours == ref == (True,)


UPDATE = {"cpu_shares": 512, "cpu_quota": 50000, "cpu_period": 100000, "cpuset_cpus": "0", "mem_limit": "64m",
          "memswap_limit": "128m"}
UPDATED_FIELDS = ("CpuShares", "CpuQuota", "CpuPeriod", "CpusetCpus", "Memory", "MemorySwap")


def test_update_resources_of_a_running_container(engines: Engines, daemon: Daemon) -> None:
    def run(c: docker.APIClient) -> tuple[Any, ...]:
        cid = engines.create(c, command=["sleep", "600"])
        c.start(cid)
        c.update_container(cid, **UPDATE)
        hc = c.inspect_container(cid)["HostConfig"]
        return cid, tuple(hc[k] for k in UPDATED_FIELDS)

    (cid, ours), (_, ref) = engines.both(run)
    assert ours == ref == (512, 50000, 100000, "0", 64 << 20, 128 << 20)
    # and the kernel holds them: the container's own view of its cgroup
    out = engines.ours.exec_start(engines.ours.exec_create(cid, ["sh", "-c", (
        "cat /sys/fs/cgroup/cpu.max 2>/dev/null || "
        "echo $(cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us) $(cat /sys/fs/cgroup/cpu/cpu.cfs_period_us)")]))
    assert out.split() == [b"50000", b"100000"]


def test_update_keeps_the_limits_the_body_leaves_at_zero(engines: Engines) -> None:
    """The docker CLI's update body carries every limit, zero where no flag was given: dockerd replaces
    only the non-zero ones (the memory limit set at create stays)."""
    def run(c: docker.APIClient) -> tuple[Any, ...]:
        cid = engines.create(c, command=["true"], host_config=c.create_host_config(mem_limit="64m", cpu_shares=512))
        body = {"Memory": 0, "MemorySwap": 0, "MemoryReservation": 0, "NanoCpus": 0, "CpuShares": 256,
                "CpuPeriod": 0, "CpuQuota": 0, "CpusetCpus": "", "CpusetMems": "", "BlkioWeight": 0,
                "PidsLimit": None, "RestartPolicy": {"Name": "", "MaximumRetryCount": 0}}
        c._raise_for_status(c._post_json(c._url("/containers/{0}/update", cid), data=body))
        hc = c.inspect_container(cid)["HostConfig"]
        return hc["Memory"], hc["MemorySwap"], hc["CpuShares"], hc["RestartPolicy"]["Name"]

    ours, ref = engines.both(run)
    assert ours == ref and ours[:3] == (64 << 20, 128 << 20, 256)


def test_log_config_defaults_to_json_file(engines: Engines) -> None:
    def run(c: docker.APIClient) -> Any:
        cid = engines.create(c, host_config=c.create_host_config(log_config=docker.types.LogConfig(type=None)))
        return c.inspect_container(cid)["HostConfig"]["LogConfig"]

    ours, ref = engines.both(run)
    assert ours == ref == {"Type": "json-file", "Config": {}}


@pytest.mark.parametrize("log_config", [
    {"Type": "asdf-no-such-driver", "Config": {}},
    {"Type": "json-file", "Config": {"bogus": "1"}},
    {"Type": "local", "Config": {"bogus": "1"}},
    {"Type": "json-file", "Config": {"max-size": "1m", "max-file": "2"}},
    {"Type": "none", "Config": {}},
])
def test_log_config_checked_at_create(engines: Engines, log_config: dict[str, Any]) -> None:
    def run(c: docker.APIClient) -> tuple[str, Any]:
        def create() -> Any:
            cid = engines.create(c, host_config={**c.create_host_config(), "LogConfig": log_config})
            return c.inspect_container(cid)["HostConfig"]["LogConfig"]
        return outcome(create)

    ours, ref = engines.both(run)
    assert ours == ref


def test_log_driver_none_keeps_no_log(engines: Engines) -> None:
    def run(c: docker.APIClient) -> tuple[Any, ...]:
        cid = engines.create(c, command=["echo", "hi"],
                             host_config=c.create_host_config(log_config=docker.types.LogConfig(type="none")))
        c.start(cid)
        c.wait(cid)
        return c.inspect_container(cid)["LogPath"], outcome(lambda: c.logs(cid))

    ours, ref = engines.both(run)
    assert ours == ref == ("", ("error", (501, "configured logging driver does not support reading")))


def test_log_opt_max_size_rotates(engines: Engines, daemon: Daemon) -> None:
    c = engines.ours
    cid = engines.create(c, command=["sh", "-c", "i=0; while [ $i -lt 3000 ]; do echo line-$i; i=$((i+1)); done"],
                         host_config=c.create_host_config(log_config=docker.types.LogConfig(
                             type="json-file", config={"max-size": "10k"})))
    c.start(cid)
    assert c.wait(cid)["StatusCode"] == 0
    logs = c.logs(cid).split()
    assert logs and logs[-1] == b"line-2999" and len(logs) < 3000


@pytest.mark.parametrize("isolation", ["hyperv", "process", "default", ""])
def test_isolation(engines: Engines, isolation: str) -> None:
    def run(c: docker.APIClient) -> tuple[str, Any]:
        def create() -> Any:
            cid = engines.create(c, host_config={**c.create_host_config(), "Isolation": isolation})
            return c.inspect_container(cid)["HostConfig"]["Isolation"]
        kind, val = outcome(create)
        return (kind, val[1]) if kind == "error" else (kind, val)  # dockerd 20.10 says 500; later ones 400

    ours, ref = engines.both(run)
    assert ours == ref


# Paths and names differ between any two daemons; MaskedPaths is checked on its own below.
_VARYING = {"MaskedPaths", "Runtime"}


@pytest.mark.parametrize("host_config", [
    {},
    {"privileged": True},
    {"pid_mode": "host", "ipc_mode": "host"},
    {"cap_add": ["NET_ADMIN"], "read_only": True, "shm_size": "128m", "restart_policy": {"Name": "always"}},
    {"mem_limit": "32m", "cpu_shares": 100, "dns": ["127.0.0.9"], "extra_hosts": {"a": "127.0.0.2"},
     "ulimits": [docker.types.Ulimit(name="nofile", soft=100, hard=200)], "port_bindings": {80: None}},
    {"cpu_rt_period": 1000, "cpu_rt_runtime": 500},  # docker-py spells them CPURealtime*: Go matches any case
], ids=["empty", "privileged", "host-namespaces", "caps-ro-shm-restart", "limits-dns-hosts-ulimits-ports", "cpu-rt"])
def test_host_config_in_inspect_as_dockerd(engines: Engines, host_config: dict[str, Any]) -> None:
    def run(c: docker.APIClient) -> dict[str, Any]:
        cid = engines.create(c, host_config=c.create_host_config(**host_config))
        return dict(c.inspect_container(cid)["HostConfig"])

    ours, ref = engines.both(run)
    assert {k: v for k, v in ours.items() if k not in _VARYING} == {k: v for k, v in ref.items() if k not in _VARYING}
    if host_config.get("privileged"):
        assert ours["MaskedPaths"] is None and ref["MaskedPaths"] is None
    else:
        assert set(ref["MaskedPaths"]) <= set(ours["MaskedPaths"])


def test_docker_cli_create_inspects_as_on_dockerd(daemon: Daemon, real_dockerd: str) -> None:
    """What the real docker CLI sends for a typical `docker create` (it fills MemorySwappiness -1,
    PidsLimit 0, a restart policy...) reads back from inspect as from dockerd."""
    import json
    import os
    import subprocess

    from tests.conftest import DOCKER_CLI

    out = []
    for host in (daemon.host, real_dockerd):
        env = {**os.environ, "DOCKER_HOST": host}
        env.pop("DOCKER_CONTEXT", None)
        name = f"dy-cli-{uuid.uuid4().hex[:8]}"
        subprocess.run([DOCKER_CLI, "create", "--name", name, "-e", "A=1", "--memory", "64m", "--restart",
                        "on-failure:2", "--cap-add", "NET_ADMIN", "--tmpfs", "/t", "--log-opt", "max-size=1m",
                        "busybox", "true"], env=env, check=True, capture_output=True, timeout=120)
        try:
            doc = json.loads(subprocess.run([DOCKER_CLI, "inspect", name], env=env, check=True, capture_output=True,
                                            timeout=120).stdout)[0]
        finally:
            subprocess.run([DOCKER_CLI, "rm", "-f", name], env=env, capture_output=True, timeout=120)
        hc = {k: v for k, v in doc["HostConfig"].items() if k not in _VARYING}
        assert "A=1" in doc["Config"]["Env"]
        out.append(hc)
    assert out[0] == out[1]


def test_config_in_inspect_as_dockerd(engines: Engines) -> None:
    name = f"dy-cfg-{uuid.uuid4().hex[:8]}"

    def run(c: docker.APIClient) -> list[str]:
        cid = engines.create(c, command=["true"], name=name + ("-ours" if c is engines.ours else "-ref"))
        return list(c.inspect_container(cid)["Config"])

    ours, ref = engines.both(run)
    assert ours == ref  # the same keys in the same order (Go's omitempty fields left out)


def test_logs_keep_output_without_a_final_newline(engines: Engines) -> None:
    def run(c: docker.APIClient) -> tuple[bytes, bytes, bytes]:
        cid = engines.create(c, command=["sh", "-c", "echo one; printf two"])
        c.start(cid)
        c.wait(cid)
        return c.logs(cid), c.logs(cid, tail=1), b"".join(c.logs(cid, stream=True, follow=True))

    ours, ref = engines.both(run)
    assert ours == ref == (b"one\ntwo", b"two", b"one\ntwo")


def test_put_archive_into_a_volume_of_a_created_container(engines: Engines) -> None:
    import io
    import tarfile

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        data = b"Deaf To All But The Song"
        info = tarfile.TarInfo("song.txt")
        info.size = len(data)
        tf.addfile(info, io.BytesIO(data))

    def run(c: docker.APIClient) -> bytes:
        cid = engines.create(c, command=["cat", "/vol1/song.txt"], volumes=["/vol1"])
        assert c.put_archive(cid, "/vol1", buf.getvalue())
        c.start(cid)
        c.wait(cid)
        return bytes(c.logs(cid))

    ours, ref = engines.both(run)
    assert ours == ref == b"Deaf To All But The Song"


def test_volume_subpath_with_the_docker_cli(daemon: Daemon) -> None:
    """API 1.45's VolumeOptions.Subpath (dockerd 20.10 predates it: the v28 CLI against ours only)."""
    vol = f"dy-sub-{uuid.uuid4().hex[:8]}"
    daemon.docker("volume", "create", vol)
    try:
        daemon.docker("run", "--rm", "-v", f"{vol}:/v", "busybox", "sh", "-c",
                      "mkdir -p /v/sub && echo inside > /v/sub/f && ln -s /etc /v/out")
        r = daemon.docker("run", "--rm", "--mount", f"type=volume,src={vol},dst=/x,volume-subpath=sub,readonly",
                          "busybox", "sh", "-c", "ls /x; cat /x/f; touch /x/g 2>/dev/null || echo read-only")
        assert r.stdout == b"f\ninside\nread-only\n"
        for bad in ("../sub", "/sub", "out"):  # outside the volume, absolute, a symlink out of it
            r = daemon.docker("run", "--rm", "--mount", f"type=volume,src={vol},dst=/x,volume-subpath={bad}",
                              "busybox", "true", check=False)
            assert r.returncode != 0, bad
            assert b"subpath" in r.stderr, r.stderr
    finally:
        daemon.docker("volume", "rm", "-f", vol, check=False)
