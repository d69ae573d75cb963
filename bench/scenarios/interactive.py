"""Interactive paths: `docker exec true` latency and streaming throughput (logs, attach)."""

from __future__ import annotations

import subprocess
import time

from benchlib.core import Scenario, Target, ensure_busybox, median, repeat, scenario

from scenarios.basic import LABEL, containers

MIB = 1024 * 1024


@scenario
class ExecTrue(Scenario):
    name = "exec"
    help = "docker exec <running> true (median of 20)"
    order = 40

    def run(self, t: Target) -> dict[str, float]:
        ensure_busybox(t)
        with containers(t) as ids:
            ids.append(t.docker("run", "-d", "--label", LABEL, "busybox", "sleep", "1000").stdout.strip())
            times = repeat(max(20, self.runs), lambda: t.timed("exec", ids[0], "true"))
            return {"exec true (ms)": median(times)}


@scenario
class StreamThroughput(Scenario):
    name = "stream"
    help = "MB/s of `docker logs` (64 MiB written by a container) and of `docker run` attached stdout"
    order = 45
    mib = 64

    def _read_all(self, t: Target, *args: str) -> tuple[float, int]:
        """Seconds and bytes of stdout of one CLI call (read through a pipe, discarded)."""
        t0 = time.perf_counter()
        p = subprocess.Popen([t.cli, *args], env=t.env(), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        assert p.stdout is not None
        n = 0
        while chunk := p.stdout.read(1 << 20):
            n += len(chunk)
        p.wait()
        return time.perf_counter() - t0, n

    def run(self, t: Target) -> dict[str, float]:
        ensure_busybox(t)
        size = self.mib * MIB
        # 1 KiB lines: what logs carry typically is line-oriented output.
        gen = f"yes $(head -c 1023 /dev/zero | tr '\\0' x) | head -c {size}"
        out: dict[str, float] = {}
        with containers(t) as ids:
            cid = t.docker("run", "-d", "--label", LABEL, "busybox", "sh", "-c", gen).stdout.strip()
            ids.append(cid)
            t.docker("wait", cid)
            rates = []
            for _ in range(3):
                secs, n = self._read_all(t, "logs", cid)
                if n != size:
                    return {f"logs {self.mib} MiB: WRONG byte count {n}": float("nan")}
                rates.append(n / MIB / secs)
            out[f"logs {self.mib} MiB (MB/s)"] = median(rates)
            rates = []
            for _ in range(3):
                secs, n = self._read_all(t, "run", "--rm", "--label", LABEL, "busybox", "sh", "-c", gen)
                if n != size:
                    return {**out, f"attach {self.mib} MiB: WRONG byte count {n}": float("nan")}
                rates.append(n / MIB / secs)
            out[f"run attached stdout {self.mib} MiB (MB/s)"] = median(rates)
        return out
