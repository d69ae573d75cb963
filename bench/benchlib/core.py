"""Targets, scenarios and the scenario registry.

A scenario is a class registered with @scenario; it gets a Target (a name, a DOCKER_HOST and the
daemon's pid) and returns {metric: value}. Metrics are named with their unit ("ms", "s", "MiB"),
so the report can print them. Scenarios clean up what they create, even when they fail.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


@dataclass
class Target:
    name: str
    host: str  # DOCKER_HOST value, e.g. unix:///run/dockyard.sock
    pid: int | None = None  # daemon pid, for memory figures (None: not measured)
    cli: str = field(default_factory=lambda: os.environ.get("BENCH_CLI") or shutil.which("docker") or "docker")

    def env(self) -> dict[str, str]:
        return dict(os.environ, DOCKER_HOST=self.host)

    def docker(self, *args: str, check: bool = True, timeout: float = 300,
               stdout: int | None = subprocess.PIPE) -> subprocess.CompletedProcess[str]:
        """Run the docker CLI against this target."""
        r = subprocess.run([self.cli, *args], env=self.env(), stdout=stdout, stderr=subprocess.PIPE,
                           text=True, timeout=timeout)
        if check and r.returncode != 0:
            raise BenchError(f"{self.name}: docker {' '.join(args)} failed ({r.returncode}): {r.stderr.strip()}")
        return r

    def timed(self, *args: str, discard_output: bool = False) -> float:
        """Wall time of one CLI call in milliseconds (the client is part of what a user waits for)."""
        t0 = time.perf_counter()
        self.docker(*args, stdout=subprocess.DEVNULL if discard_output else subprocess.PIPE)
        return (time.perf_counter() - t0) * 1000


class BenchError(RuntimeError):
    pass


class Scenario:
    """Subclass, set `name` and `help`, implement run(); register with @scenario."""

    name = ""
    help = ""
    order = 100  # lower runs first (idle memory must be measured before anything runs)

    def __init__(self, runs: int) -> None:
        self.runs = runs  # repetitions of timed steps (scenarios may use fewer or more)

    def run(self, target: Target) -> dict[str, float]:
        raise NotImplementedError


REGISTRY: dict[str, type[Scenario]] = {}


def scenario(cls: type[Scenario]) -> type[Scenario]:
    if not cls.name or cls.name in REGISTRY:
        raise ValueError(f"scenario name missing or taken: {cls.name!r}")
    REGISTRY[cls.name] = cls
    return cls


def median(xs: Sequence[float]) -> float:
    return statistics.median(xs)


def repeat(n: int, fn: Callable[[], float], warmup: int = 1) -> list[float]:
    for _ in range(warmup):
        fn()
    return [fn() for _ in range(n)]


def ensure_busybox(t: Target) -> None:
    """busybox:latest must exist on every target; load our bootstrap build where missing."""
    if t.docker("image", "inspect", "busybox:latest", check=False).returncode == 0:
        return
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    py = os.path.join(root, ".venv", "bin", "python")
    tar = subprocess.run([py, "-m", "dockyard.bootstrap", "busybox"], cwd=root, check=True,
                         stdout=subprocess.PIPE, text=True).stdout.strip()
    t.docker("load", "-i", tar)


def buildkit_cli() -> str:
    """BuildKit's client: Debian's docker 20.10 (its classic builder refuses --mount), $BENCH_BUILDKIT_CLI."""
    return os.environ.get("BENCH_BUILDKIT_CLI", "/usr/bin/docker")


def timed_build(t: Target, ctx: Path, *extra: str, tag: str, buildkit: bool | None = None,
                cli: Sequence[str] | None = None, network_none: bool = True, timeout: float = 1800) -> float:
    """Wall seconds of one `docker build` of ctx (its Dockerfile) at t. BuildKit (buildkit_cli(),
    DOCKER_BUILDKIT=1) on dockerd unless buildkit says otherwise; the target's classic endpoint for the
    rest. cli replaces the client (e.g. `dockyard build`). A failed build is a BenchError."""
    if buildkit is None:
        buildkit = t.name == "dockerd"
    client = list(cli) if cli else [buildkit_cli() if buildkit else t.cli]
    env = dict(t.env(), DOCKER_BUILDKIT="1" if buildkit else "0")
    args = [*client, "build", *(["--network", "none"] if network_none else []),
            *(["--progress=plain"] if buildkit else []), "-t", tag, *extra, str(ctx)]
    t0 = time.perf_counter()
    r = subprocess.run(args, env=env, capture_output=True, text=True, timeout=timeout,
                       cwd=REPO)
    took = time.perf_counter() - t0
    if r.returncode != 0:
        raise BenchError(f"{t.name}: {' '.join(args)} failed: {(r.stdout + r.stderr)[-2000:]}")
    return took
