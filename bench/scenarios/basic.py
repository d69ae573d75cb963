"""The first scenarios: container start latency, many containers, ps, daemon memory, logs."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

from benchlib.core import Scenario, Target, ensure_busybox, median, repeat, scenario
from benchlib.procs import engine_rss_mib

LABEL = "dockyard.bench=1"


@contextlib.contextmanager
def containers(t: Target) -> Iterator[list[str]]:
    """Collects ids of containers a scenario creates and force-removes them afterwards."""
    ids: list[str] = []
    try:
        yield ids
    finally:
        for i in range(0, len(ids), 25):
            t.docker("rm", "-f", *ids[i:i + 25], check=False)


@scenario
class IdleMemory(Scenario):
    name = "rss-idle"
    help = "daemon RSS (process tree + monitors) with no containers"
    order = 0

    def run(self, t: Target) -> dict[str, float]:
        if t.pid is None:
            return {}
        running = t.docker("ps", "-q", "--no-trunc").stdout.split()
        return {"RSS idle (MiB)": engine_rss_mib(t.pid, running)}


@scenario
class RunRm(Scenario):
    name = "run-rm"
    help = "docker run --rm busybox true"
    order = 10

    def run(self, t: Target) -> dict[str, float]:
        ensure_busybox(t)
        times = repeat(self.runs, lambda: t.timed("run", "--rm", "--label", LABEL, "busybox", "true"))
        return {"run --rm busybox true (ms)": median(times)}


@scenario
class Fifty(Scenario):
    name = "fifty"
    help = "50 x run -d busybox sleep 1000; ps and RSS with 50 running"
    order = 20
    count = 50

    def run(self, t: Target) -> dict[str, float]:
        ensure_busybox(t)
        out: dict[str, float] = {}
        with containers(t) as ids:
            times = []
            for _ in range(self.count):
                t0 = time.perf_counter()
                r = t.docker("run", "-d", "--label", LABEL, "busybox", "sleep", "1000")
                times.append((time.perf_counter() - t0) * 1000)
                ids.append(r.stdout.strip())
            out[f"run -d sleep, each of {self.count} (ms)"] = median(times)
            out[f"run -d x{self.count} total (s)"] = sum(times) / 1000
            out[f"ps with {self.count} running (ms)"] = median(repeat(self.runs, lambda: t.timed("ps")))
            if t.pid is not None:
                out[f"RSS with {self.count} running (MiB)"] = engine_rss_mib(t.pid, ids)
        return out


@scenario
class Logs(Scenario):
    name = "logs-100k"
    help = "docker logs of a container that printed 100k lines"
    order = 30
    lines = 100_000

    def run(self, t: Target) -> dict[str, float]:
        ensure_busybox(t)
        with containers(t) as ids:
            r = t.docker("run", "-d", "--label", LABEL, "busybox", "seq", "1", str(self.lines))
            cid = r.stdout.strip()
            ids.append(cid)
            t.docker("wait", cid)
            got = t.docker("logs", cid).stdout.count("\n")
            if got != self.lines:
                return {f"logs {self.lines} lines: WRONG line count {got}": float("nan")}
            times = repeat(max(3, self.runs // 2), lambda: t.timed("logs", cid, discard_output=True))
            return {f"logs of {self.lines // 1000}k lines (ms)": median(times)}


@scenario
class RunRmChurn(Scenario):
    name = "rss-churn"
    help = "daemon RSS after 100 and after 1,000 `run --rm busybox true` (issue 21: no growth per cycle)"
    order = 90  # last among the basics: it leaves the daemon warm
    cycles = (100, 1000)

    def run(self, t: Target) -> dict[str, float]:
        if t.pid is None:
            return {}
        ensure_busybox(t)
        out: dict[str, float] = {}
        done = 0
        for mark in self.cycles:
            while done < mark:
                t.docker("run", "--rm", "--label", LABEL, "busybox", "true")
                done += 1
            out[f"RSS after {mark} run --rm (MiB)"] = engine_rss_mib(t.pid, [])
        first, last = self.cycles[0], self.cycles[-1]
        out[f"RSS growth {first} -> {last} (MiB)"] = out[f"RSS after {last} run --rm (MiB)"] - out[
            f"RSS after {first} run --rm (MiB)"]
        return out
