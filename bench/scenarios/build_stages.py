"""A 20-stage Dockerfile (issue 14): twenty independent stages, each a RUN writing a file, and a final
stage copying one file from each; built cold (--no-cache) and fully cached. On dockerd with BuildKit
(Debian's /usr/bin/docker 20.10, DOCKER_BUILDKIT=1, $BENCH_BUILDKIT_CLI), on other targets with the
docker CLI's classic builder at the target's POST /build; all with --network none."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from benchlib.core import BenchError, Scenario, Target, ensure_busybox, median, scenario

STAGES = 20
DOCKERFILE = "".join(f"FROM busybox AS s{i}\nRUN head -c 200000 /dev/urandom | md5sum > /out{i}\n"
                     for i in range(STAGES)) + "FROM busybox\n" + "".join(
    f"COPY --from=s{i} /out{i} /outs/\n" for i in range(STAGES)) + 'CMD ["ls", "/outs"]\n'
TAG = "dockyard-bench-stages:latest"


@scenario
class BuildStages(Scenario):
    name = "build-stages"
    help = "20-stage Dockerfile: cold and cached (ours classic endpoint vs BuildKit)"
    order = 62

    def _build(self, t: Target, ctx: Path, *extra: str) -> float:
        buildkit = t.name == "dockerd"
        cli = os.environ.get("BENCH_BUILDKIT_CLI", "/usr/bin/docker") if buildkit else t.cli
        env = dict(t.env(), DOCKER_BUILDKIT="1" if buildkit else "0")
        args = [cli, "build", "--network", "none", *(["--progress=plain"] if buildkit else []), "-t", TAG, *extra,
                str(ctx)]
        t0 = time.perf_counter()
        r = subprocess.run(args, env=env, capture_output=True, text=True, timeout=900)
        took = time.perf_counter() - t0
        if r.returncode != 0:
            raise BenchError(f"{t.name}: {' '.join(args)} failed: {r.stderr[-2000:]}")
        return took

    def run(self, t: Target) -> dict[str, float]:
        ensure_busybox(t)
        ctx = Path(tempfile.mkdtemp(prefix="dockyard-bench-stages-"))
        (ctx / "Dockerfile").write_text(DOCKERFILE)
        n = max(1, min(self.runs, 3))
        try:
            cold = [self._build(t, ctx, "--no-cache") for _ in range(n)]
            cached = [self._build(t, ctx) for _ in range(n)]
            return {"cold (s)": median(cold), "cached (s)": median(cached)}
        finally:
            t.docker("rmi", "-f", TAG, check=False)
            t.docker("builder", "prune", "-af", check=False)
            shutil.rmtree(ctx, ignore_errors=True)
