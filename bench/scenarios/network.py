"""Networking: time from `run -d -p` to the first HTTP 200, and requests/s through a published port.

The server is nginx:latest (our offline bootstrap build, loaded where missing) so the figure is the
data path's, not busybox httpd's fork per request. Load comes from `wrk` (Debian's package,
installed with apt when missing), bounded in time and connections, to loopback and to the host's
own address only. Works against any Engine API target (podman's compat API included: the image is
loaded with `docker load` like on the others).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request

from benchlib.core import BenchError, Scenario, Target, median, scenario

from scenarios.basic import LABEL, containers

WRK_SECONDS = 5
WRK_ARGS = ["-t", "2", "-c", "32", "-d", f"{WRK_SECONDS}s"]
WRK_REPS = 3


def ensure_nginx(t: Target) -> None:
    if t.docker("image", "inspect", "nginx:latest", check=False).returncode == 0:
        return
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    py = os.path.join(root, ".venv", "bin", "python")
    tar = subprocess.run([py, "-m", "dockyard.bootstrap", "nginx"], cwd=root, check=True,
                         stdout=subprocess.PIPE, text=True).stdout.strip()
    t.docker("load", "-i", tar)


def ensure_wrk() -> str:
    path = shutil.which("wrk")
    if path is None:
        subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", "wrk"],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                       env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))
        path = shutil.which("wrk")
    if path is None:
        raise BenchError("wrk is not installed and apt could not install it")
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("0.0.0.0", 0))
        return int(s.getsockname()[1])


def host_ip() -> str | None:
    out = subprocess.run(["ip", "-j", "route", "get", "192.0.2.123"], capture_output=True, text=True).stdout
    try:
        return json.loads(out)[0].get("prefsrc")  # type: ignore[no-any-return]
    except (ValueError, IndexError):
        return None


def wait_200(url: str, limit: float = 30) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.005)
    raise BenchError(f"no HTTP 200 from {url} within {limit:.0f}s")


def wrk_rps(wrk: str, url: str) -> float:
    r = subprocess.run([wrk, *WRK_ARGS, url], capture_output=True, text=True, timeout=WRK_SECONDS + 30)
    for line in r.stdout.splitlines():
        if line.startswith("Requests/sec:"):
            return float(line.split()[1])
    raise BenchError(f"wrk gave no Requests/sec: {r.stdout[-300:]} {r.stderr[-300:]}")


@scenario
class Network(Scenario):
    name = "network"
    help = f"run -d -p to first HTTP 200; nginx requests/s via a published port (wrk {' '.join(WRK_ARGS)})"
    order = 50

    def run(self, t: Target) -> dict[str, float]:
        ensure_nginx(t)
        wrk = ensure_wrk()
        out: dict[str, float] = {}
        with containers(t) as ids:
            firsts = []
            for _ in range(max(3, self.runs // 2)):
                port = free_port()
                t0 = time.perf_counter()
                cid = t.docker("run", "-d", "--label", LABEL, "-p", f"{port}:80", "nginx:latest").stdout.strip()
                wait_200(f"http://127.0.0.1:{port}/")
                firsts.append((time.perf_counter() - t0) * 1000)
                ids.append(cid)
                t.docker("rm", "-f", cid)
                ids.remove(cid)
            out["run -d -p to first HTTP 200 (ms)"] = median(firsts)

            port = free_port()
            cid = t.docker("run", "-d", "--label", LABEL, "-p", f"{port}:80", "nginx:latest").stdout.strip()
            ids.append(cid)
            wait_200(f"http://127.0.0.1:{port}/")
            urls = {"HTTP req/s via 127.0.0.1:port": f"http://127.0.0.1:{port}/"}
            hip = host_ip()
            if hip:
                urls["HTTP req/s via host-ip:port"] = f"http://{hip}:{port}/"
            ip = t.docker("inspect", "-f", "{{.NetworkSettings.IPAddress}}", cid).stdout.strip()
            if ip:
                urls["HTTP req/s to container IP (no NAT)"] = f"http://{ip}:80/"
            # One wrk run swings by ±30% on a shared machine: median of WRK_REPS, paths interleaved
            # so a burst of outside load does not land on one path only.
            rps: dict[str, list[float]] = {m: [] for m in urls}
            for _ in range(min(WRK_REPS, self.runs)):
                for metric, url in urls.items():
                    rps[metric].append(wrk_rps(wrk, url))
            out.update({m: median(v) for m, v in rps.items()})
        return out


CROWD = 100


@scenario
class Crowd(Scenario):
    name = "network-crowd"
    help = f"{CROWD} x run -d on one user network: is the {CROWD}th run as fast as the first? name lookups"
    order = 55

    def run(self, t: Target) -> dict[str, float]:
        net = f"bench-crowd-{os.getpid()}"
        t.docker("network", "create", net)
        try:
            with containers(t) as ids:
                times = []
                for i in range(CROWD):
                    t0 = time.perf_counter()
                    ids.append(t.docker("run", "-d", "--label", LABEL, "--network", net, "--name", f"{net}-{i}",
                                        "busybox", "sleep", "1000").stdout.strip())
                    times.append((time.perf_counter() - t0) * 1000)
                out = {"run -d, first 10 on the network (ms)": median(times[:10]),
                       f"run -d, last 10 of {CROWD} on the network (ms)": median(times[-10:])}
                # 200 lookups of the other containers' names, from one of them (one exec: the loop runs inside).
                script = " ; ".join(f"nslookup {net}-{i} >/dev/null" for i in range(0, CROWD, CROWD // 20)) * 10
                t0 = time.perf_counter()
                t.docker("exec", ids[0], "sh", "-c", script)
                out["name lookup inside a container, each of 200 (ms)"] = (time.perf_counter() - t0) * 1000 / 200
                return out
        finally:
            t.docker("network", "rm", net, check=False)
