"""RUN --mount=type=cache (issue 14): a dependency install whose per-package builds land in a cache
mount, built cold and after one requirement is added; and the same Dockerfile without the cache
mount, after the same edit (everything is built again).

Each "package" is a stand-in for an sdist pip must build: ~0.3 s of CPU (md5 of random bytes),
written to the cache under its name; no network (every build runs with --network none). On dockerd
the builds use BuildKit (Debian's /usr/bin/docker 20.10 with DOCKER_BUILDKIT=1, $BENCH_BUILDKIT_CLI:
its classic builder refuses --mount); on other targets the docker CLI's classic builder at the
target's POST /build. The ratio column then compares ours with BuildKit.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from benchlib.core import (
    BenchError,
    Scenario,
    Target,
    buildkit_cli,
    ensure_busybox,
    median,
    scenario,
    timed_build,
)

INSTALL = (
    "for r in $(cat /reqs.txt); do "
    "if [ ! -f {cache}/$r ]; then i=0; while [ $i -lt 12 ]; do head -c 1000000 /dev/urandom | md5sum >/dev/null; "
    "i=$((i+1)); done; echo built $r > {cache}/$r; fi; cp {cache}/$r /installed-$r; done")
WITH_MOUNT = ("FROM busybox\nCOPY reqs.txt /reqs.txt\n"
              "RUN --mount=type=cache,target=/root/.cache/pkgs " + INSTALL.format(cache="/root/.cache/pkgs") + "\n")
WITHOUT_MOUNT = ("FROM busybox\nCOPY reqs.txt /reqs.txt\nRUN mkdir -p /tmp/pkgs && "
                 + INSTALL.format(cache="/tmp/pkgs") + " && rm -rf /tmp/pkgs\n")
TAG = "dockyard-bench-mounts:latest"
PACKAGES = 10


@scenario
class BuildMounts(Scenario):
    name = "build-mounts"
    help = "RUN --mount=type=cache: cold, one requirement added, and without the cache mount (vs BuildKit)"
    order = 61

    def _build(self, t: Target, ctx: Path, dockerfile: str) -> float:
        (ctx / "Dockerfile").write_text(dockerfile)
        return timed_build(t, ctx, tag=TAG, timeout=900)

    def run(self, t: Target) -> dict[str, float]:
        ensure_busybox(t)
        if t.name == "dockerd" and not shutil.which(buildkit_cli()):
            raise BenchError("BuildKit's CLI (/usr/bin/docker 20.10) is needed on the dockerd side")
        ctx = Path(tempfile.mkdtemp(prefix="dockyard-bench-mounts-"))
        cold, added, plain = [], [], []
        try:
            for i in range(max(1, min(self.runs, 3))):
                t.docker("builder", "prune", "-af", check=False)  # cache mounts too: a cold start
                reqs = [f"pkg{i}-{n}" for n in range(PACKAGES)]
                (ctx / "reqs.txt").write_text("\n".join(reqs) + "\n")
                cold.append(self._build(t, ctx, WITH_MOUNT))
                (ctx / "reqs.txt").write_text("\n".join([*reqs, f"pkg{i}-new"]) + "\n")
                added.append(self._build(t, ctx, WITH_MOUNT))
                self._build(t, ctx, WITHOUT_MOUNT)  # its own cold build first, then the same edit
                (ctx / "reqs.txt").write_text("\n".join([*reqs, f"pkg{i}-new2"]) + "\n")
                plain.append(self._build(t, ctx, WITHOUT_MOUNT))
            out = {"cold (s)": median(cold), "one requirement added (s)": median(added),
                   "same edit, no cache mount (s)": median(plain)}
            out["cache mount speedup (x)"] = out["same edit, no cache mount (s)"] / out["one requirement added (s)"]
            return out
        finally:
            t.docker("rmi", "-f", TAG, check=False)
            t.docker("builder", "prune", "-af", check=False)
            shutil.rmtree(ctx, ignore_errors=True)
