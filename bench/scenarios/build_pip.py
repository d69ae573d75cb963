"""Issue 14's build benchmarks with real pip: source distributions that pip must build, from a
directory in the context, with no index and no network.

build-pip: `pip install -r requirements.txt` of 10 sdists (made here) on python:3-slim (the fixtures'),
with pip's cache on a cache mount; cold, then after one requirement is added (pip finds the 10 wheels it
built in its cache and builds one), and the same edit without the cache mount (all 11 built again).
Each sdist's build costs what building a small C extension would: its setup.py's build_py spends ~1 s of
CPU (PBKDF2, standing in for the compiler: the image has no gcc) making a module; installing a wheel is
cheap (`--no-compile`, a few small modules), as for a real compiled package, so the cache mount saves
what it is meant to save. dockerd: BuildKit (Debian's /usr/bin/docker 20.10, DOCKER_BUILDKIT=1) and, for
the Dockerfile without the mount, the classic builder (it refuses --mount); others: the docker CLI's
classic builder at the target's POST /build.

build-cache-from: the Dockerfile without the mount built and its cache exported to a registry (the
fixtures' distribution registry on loopback); then, on a store with only the base image (images
removed, builder cache pruned), built again from that cache: unchanged, and after app.py changes.
BuildKit (20.10 has no --cache-to) uses its inline cache: `--build-arg BUILDKIT_INLINE_CACHE=1`,
push, then `--cache-from IMAGE`. Dockyard: `dockyard build --cache-to/--cache-from type=registry`.
"""

from __future__ import annotations

import io
import shutil
import sys
import tarfile
import tempfile
import time
from pathlib import Path

from benchlib.core import REPO, Scenario, Target, median, scenario, timed_build

from scenarios.registry import IMAGE, fixtures

PACKAGES = 11  # 10 required, one added
MODULES = 4
BUILD_ROUNDS = 1_000_000  # PBKDF2 rounds in each sdist's build: ~1 s of CPU on this VM when idle
BASE = "python:3-slim"
RUN = "pip install -q --no-compile --no-index --find-links /sdists --no-build-isolation -r /requirements.txt"
WITH_MOUNT = (f"FROM {BASE}\nCOPY sdists/ /sdists/\nCOPY requirements.txt /requirements.txt\n"
              f"RUN --mount=type=cache,target=/root/.cache/pip {RUN}\nCOPY app.py /app.py\n")
WITHOUT_MOUNT = WITH_MOUNT.replace("--mount=type=cache,target=/root/.cache/pip ", "")
TAG = "dockyard-bench-pip:latest"


SETUP = """\
import hashlib
import os

from setuptools import setup
from setuptools.command.build_py import build_py


class BuildTable(build_py):
    \"\"\"Makes _table.py, spending the CPU a compiler would (the build a wheel cache saves).\"\"\"

    def run(self):
        super().run()
        digest = hashlib.pbkdf2_hmac("sha256", NAME.encode(), b"table", ROUNDS).hex()
        with open(os.path.join(self.build_lib, NAME, "_table.py"), "w") as f:
            f.write(f"DIGEST = {digest!r}\\n")


setup(name=NAME, version="1.0", packages=[NAME], cmdclass={"build_py": BuildTable})
"""


def _sdist(out: Path, name: str) -> None:
    """name-1.0.tar.gz: setup.py (with the costly build step), PKG-INFO and a package of a few modules."""
    files = {"setup.py": f"NAME = {name!r}\nROUNDS = {BUILD_ROUNDS}\n" + SETUP,
             "PKG-INFO": f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n", f"{name}/__init__.py": ""}
    for m in range(MODULES):
        files[f"{name}/mod{m}.py"] = "".join(
            f"def f{k}(x):\n    return [x * {k} + i for i in range({k % 17 + 3})]\n\n" for k in range(150))
    with tarfile.open(out / f"{name}-1.0.tar.gz", "w:gz") as tf:
        for path, text in files.items():
            data = text.encode()
            ti = tarfile.TarInfo(f"{name}-1.0/{path}")
            ti.size, ti.mode, ti.mtime = len(data), 0o644, 1700000000
            tf.addfile(ti, io.BytesIO(data))


def make_context() -> Path:
    ctx = Path(tempfile.mkdtemp(prefix="dockyard-bench-pip-"))
    (ctx / "sdists").mkdir()
    for i in range(PACKAGES):
        _sdist(ctx / "sdists", f"benchpkg{i}")
    (ctx / "app.py").write_text("print('app')\n")
    return ctx


def ensure_python(t: Target) -> None:
    if t.docker("image", "inspect", BASE, check=False).returncode == 0:
        return
    ref = f"{fixtures().addr}/{IMAGE}"
    t.docker("pull", ref)
    t.docker("tag", ref, BASE)


def _build(t: Target, ctx: Path, dockerfile: str, *extra: str, buildkit: bool | None = None,
           dockyard_cli: bool = False) -> float:
    (ctx / "Dockerfile").write_text(dockerfile)
    cli = [str(REPO / ".venv" / "bin" / "python"), "-m", "dockyard.cli.main"] if dockyard_cli else None
    return timed_build(t, ctx, *extra, tag=TAG, buildkit=buildkit, cli=cli)


def _reqs(ctx: Path, n: int, run: int = 0) -> None:
    """The first n packages; the comment makes each run's files new (the classic builder's cache is
    images, which `builder prune` leaves)."""
    (ctx / "requirements.txt").write_text(f"# run {run} {time.time()}\n" + "".join(f"benchpkg{i}\n" for i in range(n)))


@scenario
class BuildPip(Scenario):
    name = "build-pip"
    help = "pip install of 10 sdists with pip's cache on a cache mount: cold, one requirement added, no mount"
    order = 63

    def run(self, t: Target) -> dict[str, float]:
        ensure_python(t)
        ctx = make_context()
        cold, added, plain, classic = [], [], [], []
        try:
            for i in range(max(1, min(self.runs, 3))):
                t.docker("builder", "prune", "-af", check=False)  # cache mounts too: a cold start
                _reqs(ctx, PACKAGES - 1, i)
                cold.append(_build(t, ctx, WITH_MOUNT))
                _reqs(ctx, PACKAGES, i)
                added.append(_build(t, ctx, WITH_MOUNT))
                _reqs(ctx, PACKAGES - 1, i)
                _build(t, ctx, WITHOUT_MOUNT)  # its own build first, then the same edit
                _reqs(ctx, PACKAGES, i)
                plain.append(_build(t, ctx, WITHOUT_MOUNT))
                if t.name == "dockerd":  # the classic builder: no --mount, so only the plain Dockerfile
                    _reqs(ctx, PACKAGES - 1, i)
                    _build(t, ctx, WITHOUT_MOUNT, buildkit=False)
                    _reqs(ctx, PACKAGES, i)
                    classic.append(_build(t, ctx, WITHOUT_MOUNT, buildkit=False))
            out = {"cold, cache mount (s)": median(cold), "one requirement added, cache mount (s)": median(added),
                   "same edit, no cache mount (s)": median(plain)}
            out["cache mount speedup (x)"] = out["same edit, no cache mount (s)"] / \
                out["one requirement added, cache mount (s)"]
            if classic:
                out["same edit, classic builder (s)"] = median(classic)
            return out
        finally:
            t.docker("rmi", "-f", TAG, check=False)
            t.docker("builder", "prune", "-af", check=False)
            shutil.rmtree(ctx, ignore_errors=True)


def _empty_store(t: Target, *refs: str) -> None:
    """Only the base image left: the built images go, and the build cache."""
    t.docker("rmi", "-f", TAG, *refs, check=False)
    dangling = t.docker("images", "-aq", "--no-trunc", "-f", "dangling=true", check=False).stdout.split()
    if dangling:
        t.docker("rmi", "-f", *dangling, check=False)
    t.docker("builder", "prune", "-af", check=False)


@scenario
class BuildCacheFrom(Scenario):
    name = "build-cache-from"
    help = "--cache-from a registry on a store with only the base image: unchanged, and after an app.py edit"
    order = 64

    def run(self, t: Target) -> dict[str, float]:
        ensure_python(t)
        ctx = make_context()
        _reqs(ctx, PACKAGES - 1)
        reg = fixtures().addr
        buildkit = t.name == "dockerd"
        ref = f"{reg}/bench/pip-{t.name}:cache"
        same, edited, cold = [], [], []
        try:
            for i in range(max(1, min(self.runs, 3))):
                (ctx / "app.py").write_text(f"print('app {i}')\n")
                _empty_store(t, ref)
                if buildkit:  # its export is the push of the image that carries the inline cache
                    t0 = time.perf_counter()
                    _build(t, ctx, WITHOUT_MOUNT, "--build-arg", "BUILDKIT_INLINE_CACHE=1", "-t", ref)
                    t.docker("push", ref)
                    cold.append(time.perf_counter() - t0)
                    _empty_store(t, ref)
                    same.append(_build(t, ctx, WITHOUT_MOUNT, "--cache-from", ref))
                    _empty_store(t, ref)
                    (ctx / "app.py").write_text(f"print('app {i} edited')\n")
                    edited.append(_build(t, ctx, WITHOUT_MOUNT, "--cache-from", ref))
                else:
                    cold.append(_build(t, ctx, WITHOUT_MOUNT, "--cache-to", f"type=registry,ref={ref},mode=max",
                                       dockyard_cli=True))
                    _empty_store(t)
                    same.append(_build(t, ctx, WITHOUT_MOUNT, "--cache-from", f"type=registry,ref={ref}",
                                       dockyard_cli=True))
                    _empty_store(t)
                    (ctx / "app.py").write_text(f"print('app {i} edited')\n")
                    edited.append(_build(t, ctx, WITHOUT_MOUNT, "--cache-from", f"type=registry,ref={ref}",
                                         dockyard_cli=True))
            return {"cold build + cache export or push (s)": median(cold), "empty store, unchanged (s)": median(same),
                    "empty store, app.py edited (s)": median(edited)}
        finally:
            _empty_store(t, ref)
            shutil.rmtree(ctx, ignore_errors=True)


if __name__ == "__main__":  # make a context to look at: python bench/scenarios/build_pip.py
    print(make_context(), file=sys.stderr)
