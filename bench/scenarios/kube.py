"""Pods and kube play through podman's libpod REST paths (dockerd has none: the baseline is podman,
`bench/run --target podman=unix://... --target dockyard=unix://... -s pod -s kube-play`)."""

from __future__ import annotations

import json
import time

from benchlib.core import BenchError, Scenario, Target, ensure_busybox, median, scenario

# One file for both engines: a two-container Pod and a one-replica Deployment, /bin/sh by path (the
# peers' busybox image for podman has no PATH in its config).
MANIFEST = """
apiVersion: v1
kind: Pod
metadata: {name: bench-solo}
spec:
  containers:
  - {name: a, image: busybox:latest, command: [/bin/sh, -c, "trap 'exit 0' TERM; while true; do sleep 1 & wait; done"]}
  - {name: b, image: busybox:latest, command: [/bin/sh, -c, "trap 'exit 0' TERM; while true; do sleep 1 & wait; done"]}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: bench-web}
spec:
  replicas: 1
  selector: {matchLabels: {app: bench-web}}
  template:
    metadata: {labels: {app: bench-web}}
    spec:
      containers:
      - {name: w, image: busybox:latest, command: [/bin/sh, -c, "trap 'exit 0' TERM; while true; do sleep 1 & wait; done"]}
"""


class _Unix:
    """A few HTTP requests over a unix socket (stdlib only: bench/run runs outside the venv)."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __enter__(self) -> _Unix:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def request(self, method: str, path: str, params: dict[str, str] | None = None, body: bytes | None = None,
                headers: dict[str, str] | None = None) -> tuple[int, bytes]:
        import http.client
        import socket
        from urllib.parse import urlencode

        conn = http.client.HTTPConnection("d", timeout=300)
        sock = socket.socket(socket.AF_UNIX)
        sock.connect(self.path)
        conn.sock = sock
        try:
            conn.request(method, path + ("?" + urlencode(params) if params else ""), body=body,
                         headers=headers or {})
            r = conn.getresponse()
            return r.status, r.read()
        finally:
            conn.close()


def _client(t: Target) -> _Unix:
    if not t.host.startswith("unix://"):
        raise BenchError(f"{t.name}: a unix socket is needed")
    return _Unix(t.host.removeprefix("unix://"))


def _timed(c: _Unix, method: str, path: str, **kw: object) -> float:
    t0 = time.perf_counter()
    status, data = c.request(method, path, **kw)  # type: ignore[arg-type]
    ms = (time.perf_counter() - t0) * 1000
    if status >= 400:
        raise BenchError(f"{method} {path}: {status} {data[:500]!r}")
    return ms


@scenario
class PodLifecycle(Scenario):
    name = "pod"
    help = "libpod: pod create, start, stop, rm -f of an empty pod (infra only)"
    order = 45

    def run(self, t: Target) -> dict[str, float]:
        out: dict[str, list[float]] = {"create": [], "start": [], "stop": [], "rm": []}
        with _client(t) as c:
            if c.request("GET", "/v4.3.1/libpod/pods/json")[0] != 200:
                raise BenchError(f"{t.name}: no libpod pod API")
            for i in range(max(5, self.runs) + 1):
                name = f"bench-pod-{i}"
                steps = [_timed(c, "POST", "/v4.3.1/libpod/pods/create", body=json.dumps({"name": name}).encode(),
                                headers={"Content-Type": "application/json"}),
                         _timed(c, "POST", f"/v4.3.1/libpod/pods/{name}/start"),
                         _timed(c, "POST", f"/v4.3.1/libpod/pods/{name}/stop", params={"t": "1"}),
                         _timed(c, "DELETE", f"/v4.3.1/libpod/pods/{name}", params={"force": "true"})]
                if i:  # the first round makes the pause image and warms caches
                    for key, ms in zip(out, steps, strict=True):
                        out[key].append(ms)
        return {f"pod {k} (ms)": median(v) for k, v in out.items()}


@scenario
class KubePlay(Scenario):
    name = "kube-play"
    help = "POST /libpod/play/kube of a 2-container Pod + a Deployment, then DELETE (kube down)"
    order = 46

    def run(self, t: Target) -> dict[str, float]:
        ensure_busybox(t)
        plays: list[float] = []
        downs: list[float] = []
        hdr = {"Content-Type": "application/x-yaml"}
        with _client(t) as c:
            try:
                for i in range(max(3, self.runs // 2) + 1):
                    play = _timed(c, "POST", "/v4.3.1/libpod/play/kube", body=MANIFEST.encode(), headers=hdr)
                    down = _timed(c, "DELETE", "/v4.3.1/libpod/play/kube", body=MANIFEST.encode(), headers=hdr)
                    if i:
                        plays.append(play)
                        downs.append(down)
            finally:
                c.request("DELETE", "/v4.3.1/libpod/play/kube", body=MANIFEST.encode(), headers=hdr)
        return {"kube play, 2 pods / 3 containers (ms)": median(plays), "kube down (ms)": median(downs)}
