"""Behaviours a learner sees, on our daemon beside the real dockerd: COMMAND quoting, no ports on exited
containers, /v1.99/ refused, info and version fields, top's columns, RECLAIMABLE, network events."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.conftest import DOCKER_CLI, ROOT, Daemon


def docker(host: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DOCKER_HOST": host}
    p = subprocess.run([DOCKER_CLI, *args], env=env, capture_output=True, text=True, timeout=120)
    assert not check or p.returncode == 0, p.stderr
    return p


def dockyard(host: str, *args: str) -> str:
    env = {**os.environ, "DOCKER_HOST": host}
    p = subprocess.run([sys.executable, "-m", "dockyard.cli.main", *args], env=env, capture_output=True, text=True,
                       timeout=120, cwd=ROOT)
    assert p.returncode == 0, p.stderr
    return p.stdout


def test_command_quoting_and_top_like_dockerd(clean_daemon: Daemon, real_dockerd: str) -> None:
    outs = []
    for host in (clean_daemon.host, real_dockerd):
        docker(host, "run", "-d", "--network", "none", "--name", "quoting", "busybox", "sh", "-c",
               'echo "a b"; sleep 300')
        try:
            outs.append((docker(host, "ps", "--no-trunc", "--filter", "name=quoting", "--format",
                                "{{.Command}}").stdout,
                         docker(host, "top", "quoting", "-o", "pid,comm").stdout.splitlines()[0]))
            if host == clean_daemon.host:
                assert dockyard(host, "top", "quoting", "-o", "pid,comm").splitlines()[0] == outs[-1][1]
        finally:
            docker(host, "rm", "-f", "quoting")
    assert outs[0] == outs[1] == ('"sh -c \'echo \\"a b\\"; sleep 300\'"\n', "PID" + " " * 17 + "COMMAND")


def test_exited_containers_list_no_ports(clean_daemon: Daemon) -> None:
    d = clean_daemon
    d.docker("run", "--name", "porty", "-p", "127.0.0.1::80", "busybox", "true")
    for out in (d.docker("ps", "-a", "--format", "[{{.Ports}}]").stdout.decode(),
                dockyard(d.host, "ps", "-a", "--format", "[{{.Ports}}]")):
        assert out == "[]\n"
    assert json.loads(d.docker("inspect", "-f", "{{json .NetworkSettings.Ports}}", "porty").stdout) == {}


def test_too_new_api_version_is_refused(clean_daemon: Daemon, real_dockerd: str) -> None:
    for host in (clean_daemon.host, real_dockerd):
        with httpx.Client(transport=httpx.HTTPTransport(uds=host.removeprefix("unix://"))) as c:
            r = c.get("http://d/v1.99/version")
        assert r.status_code == 400 and "client version 1.99 is too new" in r.json()["message"]


def test_info_and_version_fields(clean_daemon: Daemon) -> None:
    info = json.loads(clean_daemon.docker("info", "--format", "{{json .}}").stdout)
    assert re.fullmatch(r"([A-Z2-7]{4}:){11}[A-Z2-7]{4}", info["ID"]), info["ID"]
    assert info["LoggingDriver"] == "json-file" and info["DockerRootDir"] == str(clean_daemon.data_root)
    version = json.loads(clean_daemon.docker("version", "--format", "{{json .Server}}").stdout)
    assert all(version[k] for k in ("GitCommit", "GoVersion", "BuildTime")), version
    assert "runc" in [c["Name"] for c in version["Components"]]
    text = dockyard(clean_daemon.host, "version")
    assert not re.search(r"(Git commit|Built|Go version):\s*\n", text), text


def test_system_df_reclaimable_as_docker(clean_daemon: Daemon) -> None:
    ref = clean_daemon.docker("system", "df").stdout.decode()
    assert dockyard(clean_daemon.host, "system", "df") == ref
    assert " - " not in ref and "RECLAIMABLE" in ref


def test_network_events(clean_daemon: Daemon) -> None:
    d = clean_daemon
    since = str(int(time.time()))
    d.docker("network", "create", "evnet")
    try:
        d.docker("run", "--rm", "--network", "evnet", "busybox", "true")
    finally:
        d.docker("network", "rm", "evnet")
    out = d.docker("events", "--since", since, "--until", str(int(time.time()) + 1), "--filter", "type=network",
                   "--filter", "network=evnet",  # not a previous test's container joining bridge that second
                   "--format", "{{.Action}} {{.Actor.Attributes.name}}").stdout.decode().splitlines()
    assert out == ["create evnet", "connect evnet", "disconnect evnet", "destroy evnet"]


def test_errors_name_the_container_in_the_way(clean_daemon: Daemon) -> None:
    """Beyond dockerd, after its words: a port conflict names the container holding the port, and
    `network rm` of a network in use names the containers on it."""
    d = clean_daemon
    d.docker("run", "-d", "--name", "holder", "-p", "127.0.0.1:18093:80", "busybox", "sleep", "300")
    for cli in (d.docker, d.dockyard):
        p = cli("run", "-d", "-p", "127.0.0.1:18093:80", "busybox", "sleep", "300", check=False)
        assert p.returncode == 125
        assert b"Bind for 127.0.0.1:18093 failed: port is already allocated (container holder publishes it)" \
            in p.stderr, p.stderr
    d.docker("network", "create", "busy-net")
    try:
        d.docker("run", "-d", "--name", "user1", "--network", "busy-net", "busybox", "sleep", "300")
        for cli in (d.docker, d.dockyard):
            p = cli("network", "rm", "busy-net", check=False)
            assert p.returncode == 1 and b"has active endpoints (used by user1)" in p.stderr, p.stderr
    finally:
        d.docker("rm", "-f", "user1")
        d.docker("network", "rm", "busy-net")


def test_a_long_stop_says_why_it_waits(clean_daemon: Daemon) -> None:
    """On a terminal, a stop still going after a moment says why: a PID 1 without a SIGTERM handler
    ignores it (so SIGKILL comes at the timeout), or one with a handler is still shutting down."""
    d = clean_daemon
    d.docker("run", "-d", "--name", "deaf", "busybox", "sleep", "300")
    d.docker("run", "-d", "--name", "polite", "busybox", "sh", "-c",
             "trap 'sleep 3; exit 0' TERM; while true; do sleep 0.1; done")
    cmd = f"cd {ROOT} && {sys.executable} -m dockyard.cli.main stop -t 4"
    for name, words in (("deaf", "its PID 1 (sleep) has no handler for it"),
                        ("polite", "its PID 1 (sh) handles it and is still shutting down")):
        p = subprocess.run(["script", "-qec", f"{cmd} {name}", "/dev/null"], env=d.env, capture_output=True,
                           text=True, timeout=60)
        assert p.returncode == 0, p.stdout
        assert f"Waiting for {name} to stop: SIGTERM sent; {words}" in p.stdout, p.stdout
    p = subprocess.run([sys.executable, "-m", "dockyard.cli.main", "stop", "-t", "1", "deaf"], env=d.env, cwd=ROOT,
                       capture_output=True, text=True, timeout=60)
    assert p.stderr == ""  # not on a terminal: docker's plain output


def test_exec_format_error_explained(clean_daemon: Daemon, tmp_path: Path) -> None:
    """Beyond docker, after its words: `exec format error` says the image's platform and the host's."""
    d = clean_daemon
    (tmp_path / "Dockerfile").write_text("FROM busybox\nRUN printf 'echo hi\\n' > /s && chmod +x /s\n")
    subprocess.run([DOCKER_CLI, "build", "-q", "-t", "noshebang", str(tmp_path)], env={**d.env, "DOCKER_BUILDKIT": "0"},
                   check=True, capture_output=True, timeout=300)
    p = d.dockyard("run", "--rm", "noshebang", "/s", check=False)
    assert p.returncode == d.docker("run", "--rm", "noshebang", "/s", check=False).returncode == 1
    assert b"exec format error" in p.stderr
    assert b"the image noshebang and this host are both linux/" in p.stderr and b"#! line" in p.stderr, p.stderr
    from dockyard.cli.run import format_hint

    assert "is for linux/arm64, and this host runs linux/amd64" in format_hint("x", "linux/arm64", "linux/amd64")


def test_host_config_complete_for_containers_made_by_dockyard(clean_daemon: Daemon) -> None:
    """`inspect -f '{{.HostConfig.Memory}}'` works on what `dockyard run` made: the same keys as docker's."""
    d = clean_daemon
    d.dockyard("run", "-d", "--name", "by-dockyard", "busybox", "sleep", "300")
    d.docker("run", "-d", "--name", "by-docker", "busybox", "sleep", "300")
    keys = [set(json.loads(d.docker("inspect", "-f", "{{json .HostConfig}}", n).stdout)) for n in
            ("by-dockyard", "by-docker")]
    assert keys[0] == keys[1]
    for cli in (d.docker, d.dockyard):
        assert cli("inspect", "-f", "{{.HostConfig.Memory}} {{.HostConfig.CpuShares}}", "by-dockyard").stdout == b"0 0\n"
