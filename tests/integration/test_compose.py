"""`dockyard compose` end to end against an Engine API: ours (`daemon` fixture) and the real dockerd.

The dockerd variant uses the `real_dockerd` fixture: a private dockerd, or DOCKYARD_TEST_DOCKERD's.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]

APP = """
services:
  db:
    image: busybox
    command: sh -c "echo db up; touch /data/ready; exec sleep 1000"
    volumes: [shared:/data]
    stop_grace_period: 1s
    healthcheck:
      test: ["CMD", "test", "-f", "/data/ready"]
      interval: 1s
      retries: 60
  web:
    image: busybox
    command: ["sh", "-c", "echo web $${GREETING}; echo page > /www/index.html; exec httpd -f -p 80 -h /www"]
    environment:
      GREETING: ${GREETING:-hello}
    volumes: [shared:/data, www:/www]
    depends_on:
      db: {condition: service_healthy}
  worker:
    image: busybox
    command: ["sh", "-c", "trap 'exit 0' TERM; while true; do sleep 1; done"]
    volumes: [shared:/data]
    depends_on: [web]
volumes:
  shared: {}
  www: {}
"""


@pytest.fixture(params=["dockyard", "dockerd"])
def host(request: pytest.FixtureRequest) -> str:
    """Both engines: ours, and the real dockerd (a private one, or DOCKYARD_TEST_DOCKERD's)."""
    if request.param == "dockerd":
        return str(request.getfixturevalue("real_dockerd"))
    return str(request.getfixturevalue("daemon").host)


class Compose:
    def __init__(self, host: str, directory: Path) -> None:
        self.host = host
        self.dir = directory
        self.name = "cz" + secrets.token_hex(4)

    def __call__(self, *args: str, check: bool = True, env: dict[str, str] | None = None,
                 input: bytes | None = None) -> subprocess.CompletedProcess[str]:
        # PYTHONPATH: the checkout under test, not whichever one the venv's editable install points at.
        full_env = {**os.environ, "DOCKER_HOST": self.host, "PYTHONPATH": str(ROOT), **(env or {})}
        full_env.pop("COMPOSE_PROJECT_NAME", None)
        p = subprocess.run([sys.executable, "-m", "dockyard.compose", "-p", self.name, *args], cwd=self.dir,
                           env=full_env, capture_output=True, text=True, timeout=180, input=input)
        if check and p.returncode != 0:
            raise AssertionError(f"compose {' '.join(args)} -> {p.returncode}\n{p.stdout}\n{p.stderr}")
        return p

    def ps(self, *args: str) -> list[dict[str, str]]:
        out = self("ps", "--format", "json", *args).stdout
        return [json.loads(line) for line in out.splitlines() if line.strip()]

    def ids(self) -> dict[str, str]:
        return {c["Name"]: c["ID"] for c in self.ps("-a")}


@pytest.fixture()
def compose(host: str, tmp_path: Path) -> Iterator[Compose]:
    (tmp_path / "compose.yaml").write_text(APP)
    c = Compose(host, tmp_path)
    try:
        yield c
    finally:
        c("down", "-v", "--rmi", "local", "--remove-orphans", "-t", "1", check=False)  # built images too


def test_project_lifecycle(compose: Compose) -> None:
    compose("up", "-d")
    rows = {r["Service"]: r for r in compose.ps()}
    assert set(rows) == {"db", "web", "worker"}
    assert all(r["State"] == "running" for r in rows.values())
    assert rows["db"]["Health"] == "healthy"  # web waited for it (service_healthy)
    assert rows["web"]["Name"] == f"{compose.name}-web-1"

    logs = compose("logs", "--no-color", "web", "db").stdout
    assert "web-1  | web hello" in logs.replace("  ", "  ") or "web-1 " in logs
    assert "db up" in logs and "web hello" in logs

    # Services reach each other by name on the project network; the named volume is shared.
    out = compose("exec", "-T", "worker", "sh", "-c", "wget -qO- http://web/ && ls /data").stdout
    assert "page" in out and "ready" in out

    run = compose("run", "--rm", "-T", "-e", "X=42", "worker", "sh", "-c", "echo run $X; exit 3", check=False)
    assert run.returncode == 3 and "run 42" in run.stdout
    assert len(compose.ps("-a")) == 3  # the one-off container is gone

    compose("up", "-d", "--scale", "worker=3")
    names = sorted(r["Name"] for r in compose.ps() if r["Service"] == "worker")
    assert names == [f"{compose.name}-worker-{i}" for i in (1, 2, 3)]
    compose("up", "-d", "--scale", "worker=1")
    assert [r["Name"] for r in compose.ps() if r["Service"] == "worker"] == [f"{compose.name}-worker-1"]

    compose("stop", "worker")
    assert {r["Service"] for r in compose.ps()} == {"db", "web"}
    compose("start", "worker")
    assert {r["Service"] for r in compose.ps()} == {"db", "web", "worker"}

    compose("down", "-v", "-t", "1")
    assert compose.ps("-a") == []
    import docker

    client = docker.DockerClient(base_url=compose.host)
    try:
        assert not client.volumes.list(filters={"label": f"com.docker.compose.project={compose.name}"})
        assert not client.networks.list(names=[f"{compose.name}_default"])
    finally:
        client.close()


def test_convergence(compose: Compose) -> None:
    compose("up", "-d")
    before = compose.ids()
    second = compose("up", "-d")
    assert "Recreate" not in second.stderr and "Creat" not in second.stderr
    assert compose.ids() == before

    changed = compose("up", "-d", env={"GREETING": "changed"})
    after = compose.ids()
    recreated = {n for n in before if after.get(n) != before[n]}
    assert recreated == {f"{compose.name}-web-1"}, changed.stderr
    assert "web changed" in compose("logs", "web").stdout

    compose("up", "-d", "--force-recreate", "--no-deps", "worker", env={"GREETING": "changed"})
    again = compose.ids()
    assert {n for n in after if again[n] != after[n]} == {f"{compose.name}-worker-1"}


def test_bad_input_starts_nothing(compose: Compose) -> None:
    (compose.dir / "compose.yaml").write_text(
        "services:\n  a: {image: busybox, depends_on: [b]}\n  b: {image: busybox, depends_on: [a]}\n")
    p = compose("up", "-d", check=False)
    assert p.returncode == 1 and "dependency cycle detected" in p.stderr
    (compose.dir / "compose.yaml").write_text("services:\n  a:\n    image: ${IMG:?needs IMG}\n")
    p = compose("up", "-d", check=False)
    assert p.returncode == 1 and "services.a.image" in p.stderr and "compose.yaml" in p.stderr
    (compose.dir / "compose.yaml").write_text("services:\n  a: {image: busybox, restart: [1]}\n")
    p = compose("up", "-d", check=False)
    assert p.returncode == 1 and "services.a.restart" in p.stderr
    (compose.dir / "compose.yaml").write_text("services: {}\n")
    assert compose.ps("-a") == []


EXTRAS = """
services:
  db:
    image: busybox
    command: ["sh", "-c", "echo db $${V}; trap 'exit 0' TERM; while true; do sleep 1 & wait; done"]
    environment: {V: "${V:-1}"}
  app:
    build:
      context: .
      dockerfile_inline: "FROM busybox\\nRUN echo inline > /built\\n"
      network: none  # RUN needs no network (a peer dockerd may run without docker0)
    command: ["sh", "-c", "echo app start; trap 'exit 0' TERM; while true; do sleep 1 & wait; done"]
    depends_on:
      db: {condition: service_started, restart: true}
    secrets: [pw, {source: tok, target: token, mode: 0400}]
    configs: [{source: conf, target: /etc/app.conf}, inline]
secrets:
  pw: {file: ./pw.txt}
  tok: {environment: TOKEN}
configs:
  conf: {file: app.conf}
  inline: {content: "hello inline"}
"""


def test_secrets_configs_inline_build_and_dependency_restart(compose: Compose) -> None:
    (compose.dir / "compose.yaml").write_text(EXTRAS)
    (compose.dir / "pw.txt").write_text("s3cret")
    (compose.dir / "app.conf").write_text("key=val")
    compose("up", "-d", env={"TOKEN": "tk"})
    out = compose("exec", "-T", "app", "sh", "-c",
                  "cat /built /run/secrets/pw; echo; cat /run/secrets/token; echo; cat /etc/app.conf; echo;"
                  " cat /inline; echo; stat -c %a /run/secrets/token; echo x > /run/secrets/pw || echo ro").stdout
    assert out.split()[:7] == ["inline", "s3cret", "tk", "key=val", "hello", "inline", "400"] and "ro" in out
    assert (compose.dir / "pw.txt").read_text() == "s3cret"  # mounted read-only

    # db changes: it is recreated, and app (depends_on db with restart: true) restarts, not recreated.
    app_id = compose.ids()[f"{compose.name}-app-1"]
    compose("up", "-d", env={"TOKEN": "tk", "V": "2"})
    assert compose.ids()[f"{compose.name}-app-1"] == app_id
    assert compose("logs", "--no-color", "app").stdout.count("app start") == 2


def test_attached_up_stops_on_sigint(compose: Compose) -> None:
    import signal

    (compose.dir / "compose.yaml").write_text(
        "services:\n  a:\n    image: busybox\n"
        "    command: [sh, -c, \"echo a up; trap 'exit 0' TERM; while true; do sleep 1 & wait; done\"]\n")
    env = {**os.environ, "DOCKER_HOST": compose.host, "PYTHONPATH": str(ROOT)}
    env.pop("COMPOSE_PROJECT_NAME", None)
    p = subprocess.Popen([sys.executable, "-m", "dockyard.compose", "-p", compose.name, "up", "--no-color"],
                         cwd=compose.dir, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert p.stdout is not None
        for line in p.stdout:  # wait for the container's own output to come through the log prefix
            if "a up" in line:
                break
        p.send_signal(signal.SIGINT)
        rest = p.communicate(timeout=60)[0]
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert p.returncode == 130 and "Gracefully stopping" in rest
    assert [r["State"] for r in compose.ps("-a")] == ["exited"]


WATCHED = """
services:
  app:
    build:
      context: .
      dockerfile_inline: "FROM busybox\\nCOPY version /version\\n"
      network: none
    command: ["sh", "-c", "trap 'exit 0' TERM; while true; do sleep 1 & wait; done"]
    develop:
      watch:
        - {action: sync, path: ./src, target: /app, ignore: ["*.tmp"], initial_sync: true}
        - {action: rebuild, path: ./version}
"""


class Watcher:
    """`compose watch` in the background; its stderr lines are collected as they come."""

    def __init__(self, compose: Compose) -> None:
        import threading

        env = {**os.environ, "DOCKER_HOST": compose.host, "PYTHONPATH": str(ROOT)}
        env.pop("COMPOSE_PROJECT_NAME", None)
        self.proc = subprocess.Popen([sys.executable, "-m", "dockyard.compose", "-p", compose.name, "watch"],
                                     cwd=compose.dir, env=env, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, text=True)
        self.lines: list[str] = []
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line)

    def until(self, pred: Any, what: str) -> None:
        import time

        deadline = time.monotonic() + 120
        while not pred():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"never saw {what}:\n{''.join(self.lines)}")
            time.sleep(0.05)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(30)
        self.thread.join(10)


def test_watch_sync_and_rebuild(compose: Compose) -> None:
    d = compose.dir
    (d / "compose.yaml").write_text(WATCHED)
    (d / "version").write_text("v1")
    (d / "src" / "sub").mkdir(parents=True)
    (d / "src" / "a.txt").write_text("one")
    (d / "src" / "sub" / "b.txt").write_text("deep")
    (d / "src" / "local.txt").write_text("never synced")
    (d / ".dockerignore").write_text("src/local.txt\n")
    w = Watcher(compose)

    def cat(path: str) -> str:
        return compose("exec", "-T", "app", "sh", "-c", f"cat {path} 2>/dev/null || echo MISSING").stdout.strip()

    try:
        w.until(lambda: any("Watch enabled" in ln for ln in w.lines), "Watch enabled")
        # initial_sync copied the tree, minus what .dockerignore excludes.
        assert cat("/app/a.txt") == "one" and cat("/app/sub/b.txt") == "deep"
        assert cat("/app/local.txt") == "MISSING"

        (d / "src" / "a.txt").write_text("two")
        (d / "src" / "x.tmp").write_text("ignored")
        (d / "src" / "new").mkdir()
        (d / "src" / "new" / "c.txt").write_text("fresh")
        (d / "src" / "sub" / "b.txt").unlink()
        w.until(lambda: cat("/app/a.txt") == "two" and cat("/app/new/c.txt") == "fresh"
                and cat("/app/sub/b.txt") == "MISSING", "the sync")
        assert cat("/app/x.tmp") == "MISSING"

        before = compose.ids()[f"{compose.name}-app-1"]
        (d / "version").write_text("v2")
        (d / "version").write_text("v3")  # one rebuild for both writes (debounced)
        w.until(lambda: any("successfully built" in ln for ln in w.lines), "the rebuild")
        assert compose.ids()[f"{compose.name}-app-1"] != before
        assert cat("/version") == "v3"
        assert sum("Rebuilding service" in ln for ln in w.lines) == 1
    finally:
        w.stop()


V2 = """
services:
  web:
    image: busybox
    command: ["sh", "-c", "trap 'exit 0' TERM; while true; do sleep 1 & wait; done"]
    volumes: [data:/data]
    healthcheck: {test: ["CMD", "true"], interval: 1s}
  job:
    image: busybox
    command: ["sh", "-c", "sleep 1; exit 3"]
    profiles: [jobs]
volumes:
  data: {}
"""


def test_v2_commands(compose: Compose) -> None:
    import tarfile

    (compose.dir / "compose.yaml").write_text(V2)
    dry = compose("--dry-run", "up", "-d")
    assert "DRY-RUN MODE - " in dry.stderr and compose.ps("-a") == []

    compose("create")
    assert [r["State"] for r in compose.ps("-a")] == ["created"]
    compose("up", "--wait", "--wait-timeout", "60")  # --wait implies -d; healthy when it returns
    assert compose.ps()[0]["Health"] == "healthy"

    import threading
    import time

    since = str(int(time.time()) - 1)  # the events from here on, even those before it subscribes
    events = subprocess.Popen([sys.executable, "-m", "dockyard.compose", "-p", compose.name, "events", "--json",
                               "--since", since],
                              cwd=compose.dir, env={**os.environ, "DOCKER_HOST": compose.host,
                                                    "PYTHONPATH": str(ROOT)},
                              stdout=subprocess.PIPE, text=True)
    stopper = threading.Timer(120, events.kill)  # no start event: the loop below ends, the test fails
    stopper.start()
    try:
        compose("scale", "web=2")
        assert sorted(r["Name"] for r in compose.ps()) == [f"{compose.name}-web-1", f"{compose.name}-web-2"]
        assert events.stdout is not None
        for line in events.stdout:
            ev = json.loads(line)
            if ev["action"] == "start":
                break
        else:
            raise AssertionError("no start event")
        assert ev["service"] == "web" and ev["type"] == "container" and len(ev["id"]) == 64
        assert not any(k.startswith("com.docker.compose") for k in ev["attributes"])
    finally:
        stopper.cancel()
        events.kill()
        events.wait()

    (compose.dir / "in.txt").write_text("copied in")
    compose("cp", "in.txt", "web:/data/in.txt")  # into every container of the service
    compose("cp", "--index", "2", "web:/data/in.txt", str(compose.dir / "out.txt"))
    assert (compose.dir / "out.txt").read_text() == "copied in"

    assert compose("volumes", "-q").stdout.split() == [f"{compose.name}_data"]
    compose("export", "web", "-o", str(compose.dir / "web.tar"))
    with tarfile.open(compose.dir / "web.tar") as tf:
        assert "bin/busybox" in tf.getnames()
    image = f"{compose.name}-snap:1"
    assert compose("commit", "web", image).stdout.startswith("sha256:")
    # --dry-run on commands that would change something: nothing changes.
    compose("--dry-run", "exec", "-T", "web", "touch", "/data/dry")
    compose("--dry-run", "run", "--rm", "-T", "web", "touch", "/data/dry")
    compose("--dry-run", "stop")
    compose("--dry-run", "cp", "in.txt", "web:/data/dry")
    assert "dry" not in compose("exec", "-T", "web", "ls", "/data").stdout
    assert [r["State"] for r in compose.ps("-a")] == ["running", "running"]
    stats = compose("stats", "--no-stream", "--format", "json").stdout.splitlines()
    assert len(stats) == 2 and all("CPUPerc" in json.loads(s) for s in stats)

    cfg = json.loads(compose("config", "--format", "json").stdout)
    assert set(cfg["services"]) == {"web"} and cfg["name"] == compose.name
    assert compose("config", "--hash", "web").stdout.split()[0] == "web"
    listed = json.loads(compose("ls", "--format", "json").stdout)
    assert any(p["Name"] == compose.name and p["Status"] == "running(2)" for p in listed)

    compose("--profile", "jobs", "up", "-d", "job")
    assert compose("--profile", "jobs", "wait", "job", check=False).returncode == 3
    import docker

    client = docker.DockerClient(base_url=compose.host)
    try:
        client.images.remove(image)
    finally:
        client.close()


HOOKS = """
services:
  app:
    image: busybox
    command: ["sh", "-c", "trap 'exit 0' TERM; while true; do sleep 1 & wait; done"]
    volumes: [hooks:/hooks]
    post_start: [{command: "echo started > /hooks/post"}]
    pre_stop: [{command: ["sh", "-c", "echo stopping-$$X > /hooks/pre"], environment: {X: "1"}}]
  optional:
    image: busybox
    command: ["sh", "-c", "exit 1"]
  main:
    image: busybox
    command: ["sh", "-c", "trap 'exit 0' TERM; while true; do sleep 1 & wait; done"]
    depends_on:
      optional: {condition: service_completed_successfully, required: false}
      app: {condition: service_started}
volumes:
  hooks: {}
"""


def test_hooks_optional_dependency_and_gpu_refusal(compose: Compose) -> None:
    (compose.dir / "compose.yaml").write_text(HOOKS)
    up = compose("up", "-d")
    assert "optional dependency \"optional\" failed" in up.stderr
    assert {r["Service"] for r in compose.ps()} == {"app", "main"}
    assert compose("exec", "-T", "app", "cat", "/hooks/post").stdout.strip() == "started"
    compose("stop", "-t", "5", "app")
    out = compose("run", "--rm", "-T", "--no-deps", "app", "cat", "/hooks/pre").stdout
    assert out.strip() == "stopping-1"

    (compose.dir / "compose.yaml").write_text("services:\n  ml: {image: busybox, gpus: all}\n")
    p = compose("up", "-d", "--remove-orphans", check=False)
    assert p.returncode == 1 and "requests a GPU" in p.stderr and "has none" in p.stderr
    assert not [r for r in compose.ps("-a") if r["Service"] == "ml"]


def test_up_exit_code_from(compose: Compose) -> None:
    (compose.dir / "compose.yaml").write_text(
        "services:\n  app:\n    image: busybox\n"
        "    command: [sh, -c, \"trap 'exit 0' TERM; while true; do sleep 1 & wait; done\"]\n"
        "  tests:\n    image: busybox\n    command: [sh, -c, 'echo testing; sleep 1; exit 5']\n"
        "    depends_on: [app]\n")
    p = compose("up", "--no-color", "--exit-code-from", "tests", check=False)
    assert p.returncode == 5, p.stderr
    assert "testing" in p.stdout and "exited with code 5" in p.stdout
    assert {r["Service"]: r["State"] for r in compose.ps("-a")} == {"app": "exited", "tests": "exited"}


def test_attach_follows_until_exit(compose: Compose) -> None:
    (compose.dir / "compose.yaml").write_text(
        "services:\n  t:\n    image: busybox\n"
        "    command: [sh, -c, 'while [ ! -f /tmp/stop ]; do echo tick; sleep 0.2; done; exit 4']\n")
    compose("up", "-d")
    env = {**os.environ, "DOCKER_HOST": compose.host, "PYTHONPATH": str(ROOT)}
    p = subprocess.Popen([sys.executable, "-m", "dockyard.compose", "-p", compose.name, "attach", "--no-stdin", "t"],
                         cwd=compose.dir, env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout is not None
        assert "tick" in p.stdout.readline()  # attached: the container's output comes through
        compose("exec", "-T", "t", "touch", "/tmp/stop")
        p.stdout.read()
        assert p.wait(60) == 4  # attach ends with the container, with its status
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
