"""Compose: `up -d` and `down` of a 5-service project with healthcheck dependencies and a volume.

Each daemon is driven by its own compose: `dockyard compose` on our daemon, docker-compose 1.29.2
(the Python one) on dockerd ($BENCH_COMPOSE_<TARGET> overrides, e.g. BENCH_COMPOSE_DOCKERD).
Images: busybox:latest and redis:7 must exist on the target; missing ones are pulled from the fixture
registry ($BENCH_REGISTRY=127.0.0.1:PORT, else ../shared/images/serve-registry is started on
$BENCH_REGISTRY_PORT, default 5391, and stopped again).
"""

from __future__ import annotations

import os
import secrets
import shlex
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from benchlib.core import BenchError, Scenario, Target, ensure_busybox, median, scenario

REPO = Path(__file__).resolve().parents[2]
IMAGES = Path(os.environ.get("BENCH_IMAGES", REPO.parent / "shared" / "images"))

# busybox services trap TERM so `down` measures the engine, not a 10 s stop timeout.
PROJECT = """
services:
  redis:
    image: redis:7
    volumes: [data:/data]
    healthcheck: {test: ["CMD", "redis-cli", "ping"], interval: 200ms, timeout: 2s, retries: 100}
  db:
    image: busybox:latest
    command: ["sh", "-c", "trap 'exit 0' TERM; touch /tmp/ready; while true; do sleep 1 & wait; done"]
    healthcheck: {test: ["CMD", "test", "-f", "/tmp/ready"], interval: 200ms, timeout: 2s, retries: 100}
  api:
    image: busybox:latest
    command: ["sh", "-c", "trap 'exit 0' TERM; while true; do sleep 1 & wait; done"]
    depends_on:
      redis: {condition: service_healthy}
      db: {condition: service_healthy}
  web:
    image: busybox:latest
    command: ["sh", "-c", "trap 'exit 0' TERM; mkdir -p /www; httpd -p 80 -h /www; while true; do sleep 1 & wait; done"]
    ports: ["80"]
    depends_on: [api]
  worker:
    image: busybox:latest
    command: ["sh", "-c", "trap 'exit 0' TERM; while true; do sleep 1 & wait; done"]
    volumes: [data:/data]
    depends_on:
      redis: {condition: service_healthy}
volumes:
  data: {}
"""


def compose_cmd(t: Target) -> list[str]:
    override = os.environ.get(f"BENCH_COMPOSE_{t.name.upper()}")
    if override:
        return shlex.split(override)
    if t.name == "dockyard":
        return [str(REPO / ".venv" / "bin" / "dockyard"), "compose"]
    exe = shutil.which("docker-compose")
    if not exe:
        raise BenchError("docker-compose (Debian package docker-compose) is not installed")
    return [exe]


def ensure_images(t: Target) -> None:
    missing = [r for r in ("busybox:latest", "redis:7")
               if t.docker("image", "inspect", r, check=False).returncode != 0]
    if not missing:
        return
    reg, started = os.environ.get("BENCH_REGISTRY"), False
    port = os.environ.get("BENCH_REGISTRY_PORT", "5391")
    if not reg:
        subprocess.run([str(IMAGES / "serve-registry"), "--port", port], check=True, capture_output=True)
        reg, started = f"127.0.0.1:{port}", True
    try:
        for ref in missing:
            t.docker("pull", f"{reg}/{ref}")
            t.docker("tag", f"{reg}/{ref}", ref)
            t.docker("rmi", f"{reg}/{ref}", check=False)
    finally:
        if started:
            subprocess.run([str(IMAGES / "stop-registry"), "--port", port], check=False, capture_output=True)


@scenario
class ComposeUpDown(Scenario):
    name = "compose"
    help = "compose up -d / down of 5 services (healthcheck deps, a volume); each daemon with its compose"
    order = 40

    def run(self, t: Target) -> dict[str, float]:
        ensure_images(t)
        cmd = compose_cmd(t)
        work = Path(tempfile.mkdtemp(prefix="bench-compose-"))
        (work / "compose.yaml").write_text(PROJECT)
        env = {**t.env(), "COMPOSE_PROJECT_NAME": "bench" + secrets.token_hex(3)}
        env.pop("PYTHONDONTWRITEBYTECODE", None)  # an installed compose runs from .pyc files

        def run(*args: str) -> float:
            t0 = time.perf_counter()
            r = subprocess.run([*cmd, *args], cwd=work, env=env, capture_output=True, text=True, timeout=300)
            ms = (time.perf_counter() - t0) * 1000
            if r.returncode != 0:
                raise BenchError(f"{t.name}: compose {' '.join(args)} failed ({r.returncode}): {r.stderr[-2000:]}")
            return ms

        ups: list[float] = []
        downs: list[float] = []
        try:
            for i in range(max(3, self.runs // 2) + 1):
                up = run("up", "-d")
                down = run("down", "-v", "-t", "5")
                if i:  # the first round warms caches
                    ups.append(up)
                    downs.append(down)
        finally:
            subprocess.run([*cmd, "down", "-v", "-t", "1"], cwd=work, env=env, capture_output=True, timeout=300)
            shutil.rmtree(work, ignore_errors=True)
        return {"compose up -d, 5 services (ms)": median(ups), "compose down -v (ms)": median(downs)}


WATCH_PROJECT = """
services:
  app:
    image: busybox:latest
    command: ["sh", "-c", "trap 'exit 0' TERM; while true; do sleep 1 & wait; done"]
    develop:
      watch:
        - {action: sync, path: ./src, target: /app}
"""


@scenario
class ComposeWatchSync(Scenario):
    name = "compose-watch"
    help = "compose watch: edit one file on the host -> new content readable in the container (sync)"
    order = 41

    def run(self, t: Target) -> dict[str, float]:
        import io
        import tarfile

        from dockyard.client import APIClient

        ensure_busybox(t)
        # Only `dockyard compose` has watch here (docker-compose 1.29 has none): the figure is ours on each engine.
        cmd = [str(REPO / ".venv" / "bin" / "python"), "-m", "dockyard.compose"]
        work = Path(tempfile.mkdtemp(prefix="bench-watch-"))
        (work / "compose.yaml").write_text(WATCH_PROJECT)
        (work / "src").mkdir()
        (work / "src" / "page.txt").write_text("0")
        name = "benchw" + secrets.token_hex(3)
        env = {**t.env(), "COMPOSE_PROJECT_NAME": name, "PYTHONPATH": str(REPO)}
        proc = subprocess.Popen([*cmd, "watch"], cwd=work, env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True)
        client = APIClient(t.host)
        times: list[float] = []
        try:
            assert proc.stderr is not None
            for line in proc.stderr:
                if "Watch enabled" in line:
                    break
            else:
                raise BenchError(f"{t.name}: compose watch ended before watching")
            cid = client.containers(filters={"label": [f"com.docker.compose.project={name}"]})[0]["Id"]

            def read() -> bytes:
                with client.get_archive(cid, "/app/page.txt") as s:
                    data = b"".join(s.chunks())
                with tarfile.open(fileobj=io.BytesIO(data)) as tf:
                    f = tf.extractfile(tf.getmembers()[0])
                    return f.read() if f else b""

            for i in range(1, max(10, self.runs) + 1):
                want = f"edit {i}".encode()
                t0 = time.perf_counter()
                (work / "src" / "page.txt").write_bytes(want)
                while True:
                    try:
                        if read() == want:
                            break
                    except Exception:  # noqa: BLE001 - not there yet (first sync)
                        pass
                    if time.perf_counter() - t0 > 10:
                        raise BenchError(f"{t.name}: edit {i} not visible after 10 s")
                times.append((time.perf_counter() - t0) * 1000)
                time.sleep(0.2)
        finally:
            client.close()
            proc.terminate()
            proc.wait(30)
            subprocess.run([*cmd, "down", "-t", "1"], cwd=work, env=env, capture_output=True, timeout=300)
            shutil.rmtree(work, ignore_errors=True)
        return {"compose watch sync, edit to visible (ms)": median(times),
                "compose watch sync, worst of runs (ms)": max(times)}


def _svc(name: str, deps: str = "", health: bool = False) -> str:
    out = (f"  {name}:\n    image: busybox:latest\n"
           f"    command: [\"sh\", \"-c\", \"trap 'exit 0' TERM; touch /tmp/ready; while true; do sleep 1 & wait; done\"]\n")
    if health:
        out += "    healthcheck: {test: [\"CMD\", \"test\", \"-f\", \"/tmp/ready\"], interval: 200ms, timeout: 2s, retries: 100}\n"
    if deps:
        out += f"    depends_on: {deps}\n"
    return out


# Ten services on three dependency levels: two healthchecked stores, then four that wait for them to
# be healthy, then four front ones; a named volume and a second network.
PROJECT10 = "services:\n" + "".join([
    _svc("db", health=True), _svc("cache", health=True),
    _svc("api", "{db: {condition: service_healthy}, cache: {condition: service_healthy}}"),
    _svc("worker1", "{cache: {condition: service_healthy}}"), _svc("worker2", "{cache: {condition: service_healthy}}"),
    _svc("cron", "{db: {condition: service_healthy}}"),
    _svc("web", "[api]"), _svc("admin", "[api]"), _svc("proxy", "[api]"), _svc("metrics", "[worker1, worker2]"),
]) + "    volumes: [data:/data]\nvolumes:\n  data: {}\n"


@scenario
class ComposeTen(Scenario):
    name = "compose10"
    help = "up -d / down -v of 10 services on 3 dependency levels: dockyard compose and docker-compose 1.29.2"
    order = 42

    def run(self, t: Target) -> dict[str, float]:
        ensure_busybox(t)
        clients = {"dockyard compose": [str(REPO / ".venv" / "bin" / "python"), "-m", "dockyard.compose"]}
        if shutil.which("docker-compose"):
            clients["docker-compose 1.29.2"] = [str(shutil.which("docker-compose"))]
        work = Path(tempfile.mkdtemp(prefix="bench-compose10-"))
        (work / "compose.yaml").write_text(PROJECT10)
        names = {label: "bench10" + secrets.token_hex(3) for label in clients}
        ups: dict[str, list[float]] = {label: [] for label in clients}
        downs: dict[str, list[float]] = {label: [] for label in clients}

        def run(label: str, *args: str, check: bool = True) -> float:
            env = {**t.env(), "COMPOSE_PROJECT_NAME": names[label], "PYTHONPATH": str(REPO)}
            env.pop("PYTHONDONTWRITEBYTECODE", None)  # an installed compose runs from .pyc files
            t0 = time.perf_counter()
            r = subprocess.run([*clients[label], *args], cwd=work, env=env, capture_output=True, text=True,
                               timeout=300)
            if check and r.returncode != 0:
                raise BenchError(f"{t.name}: {label} {' '.join(args)} failed: {r.stderr[-2000:]}")
            return (time.perf_counter() - t0) * 1000

        out: dict[str, float] = {}
        try:
            # Rounds alternate the two clients, so both see the same machine load.
            for i in range(max(3, self.runs // 2) + 1):
                for label in clients:
                    up, down = run(label, "up", "-d"), run(label, "down", "-v", "-t", "5")
                    if i:  # the first round warms caches
                        ups[label].append(up)
                        downs[label].append(down)
            for label in clients:
                out[f"{label}: up -d, 10 services (ms)"] = median(ups[label])
                out[f"{label}: down -v (ms)"] = median(downs[label])
        finally:
            for label in clients:
                run(label, "down", "-v", "-t", "1", check=False)
            shutil.rmtree(work, ignore_errors=True)
        return out
