"""Dockerfile builds: a multi-stage Dockerfile (two independent stages and a final one, RUN steps
and a 20 MB COPY) built cold (--no-cache), fully cached, after touching every mtime and after
editing one file.

Metrics `classic: ...` are the docker CLI's classic builder (DOCKER_BUILDKIT=0) on every target.
Metrics `vs BuildKit: ...` are, on the dockerd target, the same builds with BuildKit
(`DOCKER_BUILDKIT=1` with Debian's /usr/bin/docker 20.10, $BENCH_BUILDKIT_CLI) and, on every
other target, its classic figures again, so the ratio column compares them with BuildKit.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path

from benchlib.core import Scenario, Target, buildkit_cli, ensure_busybox, median, scenario, timed_build

DOCKERFILE = """\
FROM busybox AS deps
RUN mkdir /deps && for i in $(seq 1 200); do echo "dep $i" > /deps/f$i; done
RUN echo deps done
FROM busybox AS tools
RUN head -c 4000000 /dev/urandom > /tool.bin
RUN echo tools done
FROM busybox
COPY --from=deps /deps /deps
COPY --from=tools /tool.bin /usr/local/bin/tool.bin
COPY data /data
COPY src /src
RUN ls /data | wc -l && cat /src/main.txt
CMD ["cat", "/src/main.txt"]
"""
TAG = "dockyard-bench-build:latest"


def make_context(root: Path) -> None:
    (root / "Dockerfile").write_text(DOCKERFILE)
    (root / "data").mkdir()
    for i in range(20):  # 20 x 1 MiB of incompressible data
        (root / "data" / f"blob{i:02}.bin").write_bytes(os.urandom(1 << 20))
    (root / "src").mkdir()
    (root / "src" / "main.txt").write_text("v0\n")
    for i in range(50):
        (root / "src" / f"mod{i}.txt").write_text(f"module {i}\n")


@scenario
class Build(Scenario):
    name = "build"
    help = "multi-stage docker build: cold, cached, mtime touch, one-file edit (classic and BuildKit)"
    order = 60

    def _build(self, t: Target, ctx: Path, buildkit: bool, *extra: str) -> float:
        return timed_build(t, ctx, *extra, tag=TAG, buildkit=buildkit, network_none=False, timeout=900)

    def _series(self, t: Target, ctx: Path, buildkit: bool) -> dict[str, float]:
        n = max(1, min(self.runs, 3))
        cold = [self._build(t, ctx, buildkit, "--no-cache") for _ in range(n)]
        cached = [self._build(t, ctx, buildkit) for _ in range(n)]
        touched = []
        for _ in range(n):
            now = time.time() + 1
            for p in ctx.rglob("*"):
                os.utime(p, (now, now))
            touched.append(self._build(t, ctx, buildkit))
        edited = []
        for i in range(n):
            (ctx / "src" / "main.txt").write_text(f"v{time.time_ns()}-{i}\n")
            edited.append(self._build(t, ctx, buildkit))
        return {"cold (s)": median(cold), "cached (s)": median(cached), "mtime touch (s)": median(touched),
                "one file edited (s)": median(edited)}

    def run(self, t: Target) -> dict[str, float]:
        ensure_busybox(t)
        ctx = Path(tempfile.mkdtemp(prefix="dockyard-bench-build-"))
        try:
            make_context(ctx)
            classic = self._series(t, ctx, buildkit=False)
            out = {f"classic: {k}": v for k, v in classic.items()}
            if t.name == "dockerd":
                if shutil.which(buildkit_cli()):
                    out.update({f"vs BuildKit: {k}": v for k, v in self._series(t, ctx, buildkit=True).items()})
            else:
                out.update({f"vs BuildKit: {k}": v for k, v in classic.items()})
            return out
        finally:
            t.docker("rmi", "-f", TAG, check=False)
            t.docker("builder", "prune", "-af", check=False)
            shutil.rmtree(ctx, ignore_errors=True)
