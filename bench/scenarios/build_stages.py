"""A 20-stage Dockerfile (issue 14): twenty independent stages, each a RUN writing a file, and a final
stage copying one file from each; built cold (--no-cache) and fully cached. On dockerd with BuildKit
(Debian's /usr/bin/docker 20.10, DOCKER_BUILDKIT=1, $BENCH_BUILDKIT_CLI), on other targets with the
docker CLI's classic builder at the target's POST /build; all with --network none."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from benchlib.core import Scenario, Target, ensure_busybox, median, scenario, timed_build

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

    def run(self, t: Target) -> dict[str, float]:
        ensure_busybox(t)
        ctx = Path(tempfile.mkdtemp(prefix="dockyard-bench-stages-"))
        (ctx / "Dockerfile").write_text(DOCKERFILE)
        n = max(1, self.runs)  # each cold build is ~1.5 s: the median of 3 swung 1.18-1.30x between runs
        try:
            cold = [timed_build(t, ctx, "--no-cache", tag=TAG, timeout=900) for _ in range(n)]
            cached = [timed_build(t, ctx, tag=TAG, timeout=900) for _ in range(n)]
            return {"cold (s)": median(cold), "cached (s)": median(cached)}
        finally:
            t.docker("rmi", "-f", TAG, check=False)
            t.docker("builder", "prune", "-af", check=False)
            shutil.rmtree(ctx, ignore_errors=True)
