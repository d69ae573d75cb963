"""docker-compose 1.29.2 (the Python one, Debian's `docker-compose`, on docker-py) against our daemon.

It is a real Engine API client with its own expectations (labels, filters, network and volume
shapes, image inspect's ContainerConfig when recreating), so it checks those seams end to end.
"""

from __future__ import annotations

import json
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Daemon

COMPOSE = shutil.which("docker-compose")
pytestmark = pytest.mark.skipif(COMPOSE is None, reason="docker-compose (Debian package) is not installed")

APP = """
version: "3.7"
services:
  web:
    image: busybox
    command: ["sh", "-c", "echo web ${GREETING:-hello}; echo page > /www/index.html; exec httpd -f -p 80 -h /www"]
    stop_grace_period: 1s
    volumes: [www:/www]
    networks:
      default:
        aliases: [frontend]
  worker:
    image: busybox
    command: ["sh", "-c", "trap 'exit 0' TERM; while true; do sleep 1; done"]
    volumes: [www:/data]
    depends_on: [web]
    labels: {tier: back}
volumes:
  www: {}
"""


class Compose:
    def __init__(self, daemon: Daemon, directory: Path) -> None:
        self.daemon = daemon
        self.dir = directory
        self.name = "dc" + secrets.token_hex(4)

    def __call__(self, *args: str, check: bool = True, env: dict[str, str] | None = None
                 ) -> subprocess.CompletedProcess[str]:
        full_env = {**self.daemon.env, **(env or {})}
        for k in ("COMPOSE_PROJECT_NAME", "COMPOSE_FILE", "COMPOSE_API_VERSION"):
            full_env.pop(k, None)
        p = subprocess.run([str(COMPOSE), "--ansi", "never", "-p", self.name, *args], cwd=self.dir, env=full_env,
                           capture_output=True, text=True, timeout=180, stdin=subprocess.DEVNULL)
        if check and p.returncode != 0:
            raise AssertionError(f"docker-compose {' '.join(args)} -> {p.returncode}\n{p.stdout}\n{p.stderr}")
        return p

    def containers(self, all: bool = True) -> dict[str, dict[str, object]]:
        """name -> inspect, of this project's containers (through the docker CLI, not compose)."""
        args = ["ps", "-q", "--filter", f"label=com.docker.compose.project={self.name}"]
        ids = self.daemon.docker(*args, *(["-a"] if all else [])).stdout.decode().split()
        if not ids:
            return {}
        out = json.loads(self.daemon.docker("inspect", *ids).stdout)
        return {c["Name"].lstrip("/"): c for c in out}


@pytest.fixture()
def compose(daemon: Daemon, tmp_path: Path) -> Iterator[Compose]:
    (tmp_path / "docker-compose.yml").write_text(APP)
    c = Compose(daemon, tmp_path)
    try:
        yield c
    finally:
        c("down", "-v", "--remove-orphans", "-t", "1", check=False)


def test_docker_compose_lifecycle(compose: Compose) -> None:
    n = compose.name
    compose("up", "-d")
    ctrs = compose.containers()
    assert set(ctrs) == {f"{n}_web_1", f"{n}_worker_1"}
    worker = ctrs[f"{n}_worker_1"]
    labels = worker["Config"]["Labels"]  # type: ignore[index]
    assert labels["tier"] == "back" and labels["com.docker.compose.service"] == "worker"
    assert all(c["State"]["Running"] for c in ctrs.values())  # type: ignore[index]

    ps = compose("ps").stdout
    assert f"{n}_web_1" in ps and f"{n}_worker_1" in ps and "Up" in ps
    assert set(compose("ps", "-q").stdout.split()) == {c["Id"] for c in ctrs.values()}
    assert compose("ps", "--services").stdout.split() == ["web", "worker"]

    assert "web hello" in compose("logs", "--no-color", "web").stdout

    # service name and alias resolve on the project network; the named volume is shared
    out = compose("exec", "-T", "worker", "sh", "-c", "wget -qO- http://web/ && wget -qO- http://frontend/ && ls /data")
    assert out.stdout.split() == ["page", "page", "index.html"]

    run = compose("run", "--rm", "-T", "-e", "X=42", "worker", "sh", "-c", "echo run $X; exit 3", check=False)
    assert run.returncode == 3 and "run 42" in run.stdout
    assert len(compose.containers()) == 2  # the one-off container is gone

    compose("up", "-d", "--scale", "worker=3")
    assert sorted(c for c in compose.containers(all=False) if "_worker_" in c) == \
        [f"{n}_worker_{i}" for i in (1, 2, 3)]
    compose("up", "-d", "--scale", "worker=1")
    assert sorted(compose.containers()) == [f"{n}_web_1", f"{n}_worker_1"]

    # a changed service is recreated (this reads the image's ContainerConfig), the other is kept
    before = {k: v["Id"] for k, v in compose.containers().items()}
    compose("up", "-d", env={"GREETING": "changed"})
    after = {k: v["Id"] for k, v in compose.containers().items()}
    assert after[f"{n}_worker_1"] == before[f"{n}_worker_1"] and after[f"{n}_web_1"] != before[f"{n}_web_1"]
    assert "web changed" in compose("logs", "--no-color", "web").stdout

    compose("stop", "-t", "1", "worker")
    assert not compose.containers()[f"{n}_worker_1"]["State"]["Running"]  # type: ignore[index]
    compose("start", "worker")
    compose("restart", "-t", "1", "web")
    compose("pause", "web")
    assert compose.containers()[f"{n}_web_1"]["State"]["Paused"]  # type: ignore[index]
    compose("unpause", "web")
    assert "httpd" in compose("top", "web").stdout
    compose("kill", "worker")
    assert compose.containers()[f"{n}_worker_1"]["State"]["ExitCode"] == 137  # type: ignore[index]

    compose("down", "-v", "-t", "1")
    assert compose.containers() == {}
    assert n not in compose.daemon.docker("network", "ls").stdout.decode()
    assert n not in compose.daemon.docker("volume", "ls").stdout.decode()


def test_docker_compose_volume_persists(compose: Compose) -> None:
    compose("up", "-d", "worker")
    compose("exec", "-T", "worker", "sh", "-c", "echo kept > /data/kept")
    compose("down", "-t", "1")
    assert compose.containers() == {}
    compose("up", "-d", "worker")
    assert compose("exec", "-T", "worker", "cat", "/data/kept").stdout.strip() == "kept"



def test_docker_compose_recreate_keeps_the_image_volumes(daemon: Daemon, tmp_path: Path) -> None:
    """A volume the image declares (anonymous, no name in the compose file) keeps its data when
    compose recreates the container: compose reads the image's ContainerConfig.Volumes and the old
    container's Mounts, and hands the same volume to the new one, as on dockerd."""
    import io

    import docker

    tag = "dc-imgvol-" + secrets.token_hex(4)
    api = docker.APIClient(base_url=daemon.host, timeout=120)
    list(api.build(fileobj=io.BytesIO(b"FROM busybox\nVOLUME /data\n"), tag=tag, rm=True))
    (tmp_path / "docker-compose.yml").write_text(
        f'version: "3.7"\nservices:\n  db:\n    image: {tag}\n    environment: ["V=${{V:-1}}"]\n'
        '    command: ["sh", "-c", "trap \'exit 0\' TERM; while true; do sleep 1; done"]\n')
    c = Compose(daemon, tmp_path)
    try:
        c("up", "-d")
        c("exec", "-T", "db", "sh", "-c", "echo kept > /data/f")
        before = c.containers()[f"{c.name}_db_1"]
        c("up", "-d", env={"V": "2"})  # a changed environment: recreated
        after = c.containers()[f"{c.name}_db_1"]
        assert after["Id"] != before["Id"]
        assert [m["Name"] for m in after["Mounts"]] == [m["Name"] for m in before["Mounts"]]  # type: ignore[index]
        assert c("exec", "-T", "db", "cat", "/data/f").stdout.strip() == "kept"
    finally:
        c("down", "-v", "-t", "1", check=False)
        api.remove_image(tag, force=True)
        api.close()
