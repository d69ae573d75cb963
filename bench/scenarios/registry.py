"""Registry scenarios: pull of a multi-layer image after rmi, and push of it to an empty registry.

Both daemons talk to the same registries (the real distribution registry from
shared/images/serve-registry, on loopback) through the same docker CLI. The image is python:3-slim
from the fixtures: 2 gzip layers, 49 MiB compressed, ~150 MiB unpacked (debian base + python).
A fixture registry is started once per bench process; each push goes to a fresh, empty registry.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time

from benchlib.core import BenchError, Scenario, Target, median, scenario

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
IMAGES = os.environ.get("BENCH_IMAGES", os.path.join(os.path.dirname(REPO), "shared", "images"))
IMAGE = "library/python:3-slim"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class _Registry:
    """A distribution registry on 127.0.0.1 with its own storage dir, stopped at exit."""

    def __init__(self, *args: str) -> None:
        self.port = _free_port()
        self.dir = tempfile.mkdtemp(prefix="dy-bench-reg-")
        r = subprocess.run([os.path.join(IMAGES, "serve-registry"), "--port", str(self.port), "--dir", self.dir,
                            *args], capture_output=True, text=True)
        if r.returncode != 0:
            shutil.rmtree(self.dir, ignore_errors=True)
            raise BenchError(f"serve-registry failed: {r.stderr.strip()[-400:]}")
        atexit.register(self.stop)

    @property
    def addr(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stop(self) -> None:
        if os.path.isdir(self.dir):
            subprocess.run([os.path.join(IMAGES, "stop-registry"), "--port", str(self.port), "--dir", self.dir],
                           capture_output=True)
            shutil.rmtree(self.dir, ignore_errors=True)


_fixtures: _Registry | None = None


def fixtures() -> _Registry:
    global _fixtures
    if _fixtures is None:
        _fixtures = _Registry()  # builds the fixture images if the cache is cold (idempotent)
    return _fixtures


def _pull(t: Target, ref: str) -> float:
    """One cold pull: the image goes first by id (every tag of it: a tag from an earlier run's registry
    port would keep its layers), then is pulled, and the output must show a download."""
    image = t.docker("image", "inspect", "-f", "{{.Id}}", ref, check=False).stdout.strip()
    if image:
        t.docker("rmi", "-f", image, check=False)
    t0 = time.perf_counter()
    out = t.docker("pull", ref).stdout
    ms = (time.perf_counter() - t0) * 1000
    if "Already exists" in out or "Downloaded newer image" not in out:
        raise BenchError(f"{t.name}: {ref} was not pulled cold (its layers are still present after rmi)")
    return ms


def _evict_sharers(t: Target, ref: str) -> None:
    """Remove every image with a layer of ref (redis from the compose scenario shares Debian's base),
    ref included, so every timed pull is a cold one."""
    def layers(image: str) -> set[str]:
        r = t.docker("image", "inspect", "-f", "{{json .RootFS.Layers}}", image, check=False)
        return set(json.loads(r.stdout or "[]") or []) if r.returncode == 0 else set()

    mine = layers(ref)
    for image in set(t.docker("images", "-aq", "--no-trunc").stdout.split()):
        if layers(image) & mine:
            t.docker("rmi", "-f", image, check=False)


@scenario
class Pull(Scenario):
    name = "pull"
    help = "docker pull of python:3-slim (2 layers, 49 MiB gz) from a local registry, after rmi"
    order = 60

    def run(self, t: Target) -> dict[str, float]:
        ref = f"{fixtures().addr}/{IMAGE}"
        t.docker("pull", ref)  # warm-up (page cache of the registry's blobs)
        _evict_sharers(t, ref)
        times = [_pull(t, ref) for _ in range(max(3, self.runs // 2))]
        return {"pull python:3-slim after rmi (ms)": median(times)}


@scenario
class Push(Scenario):
    name = "push"
    help = "docker push of python:3-slim to an empty local registry"
    order = 61

    def run(self, t: Target) -> dict[str, float]:
        src = f"{fixtures().addr}/{IMAGE}"
        if t.docker("image", "inspect", src, check=False).returncode != 0:
            t.docker("pull", "-q", src)
        times = []
        for _ in range(1 + max(3, self.runs // 2)):  # the first is a warm-up
            reg = _Registry("--no-build", "--no-push")
            dst = f"{reg.addr}/bench/python:1"
            try:
                t.docker("tag", src, dst)
                times.append(t.timed("push", dst))
            finally:
                t.docker("rmi", dst, check=False)
                reg.stop()
        return {"push python:3-slim to empty registry (ms)": median(times[1:])}
