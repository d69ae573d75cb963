"""`kube play` beside podman 4.3's (issue 18, item 4): the same manifests, played by podman's service
(`POST /libpod/play/kube`, started by ../shared/peers/start-podman) and by `dockyard kube play`, give
the same pods, the same container names, the same published ports and the same answers on them.
Runs when podman is installed (start-podman installs it)."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import SHARED, Daemon, own_daemon

pytestmark = pytest.mark.skipif(not shutil.which("podman"), reason="podman is not installed (start-podman installs it)")

PORTS = (28941, 28942)  # fixed: the file must be the same for both engines; each engine plays in turn

MANIFESTS = f"""
apiVersion: v1
kind: ConfigMap
metadata: {{name: settings}}
data: {{GREETING: hello}}
---
apiVersion: v1
kind: Pod
metadata: {{name: solo, labels: {{app: solo}}}}
spec:
  containers:
  - name: main
    image: busybox
    command: [/bin/sh, -c]
    args: ["mkdir -p /www; echo \\"$GREETING $WHO $(hostname)\\" > /www/index.html; exec httpd -f -p 8000 -h /www"]
    env: [{{name: WHO, value: solo}}]
    envFrom: [{{configMapRef: {{name: settings}}}}]
    ports: [{{containerPort: 8000, hostPort: {PORTS[0]}}}]
  - name: side
    image: busybox
    command: [/bin/sh, -c, "sleep 1000"]
---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: web, labels: {{app: web}}}}
spec:
  replicas: 1
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
      containers:
      - name: httpd
        image: busybox
        command: [/bin/sh, -c, "mkdir -p /w; echo deployed > /w/index.html; exec httpd -f -p 80 -h /w"]
        ports: [{{containerPort: 80, hostPort: {PORTS[1]}}}]
"""


def answers() -> list[str]:
    out = []
    for port in PORTS:
        last = ""
        for _ in range(100):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as r:
                    last = r.read().decode()
                    break
            except OSError as e:
                last = f"error: {e}"
                time.sleep(0.2)
        out.append(last)
    return out


def shape(pods: list[dict[str, Any]], containers: list[dict[str, Any]], infra: set[str]) -> dict[str, Any]:
    """What the play made, engine-neutral: pod names, member names, published ports."""
    names = sorted(p["Name"] for p in pods)
    members = sorted(c["Names"][0].lstrip("/") for c in containers if c["Id"] not in infra)
    # podman lists the pod's ports on every member too, dockerd-style `container:` members show none here
    ports = sorted({(p.get("PublicPort"), p.get("PrivatePort")) for c in containers for p in c.get("Ports") or []
                    if p.get("PublicPort")})
    return {"pods": names, "containers": members, "ports": ports}


def _remove_cni_chains() -> None:
    """CNI's plugins leave their base chains (firewall: CNI-FORWARD/CNI-ADMIN; portmap: CNI-HOSTPORT-*)
    behind; remove them unless another podman runs (its containers may need them)."""
    others = subprocess.run(["pgrep", "-f", "podman.* system service"], capture_output=True, text=True).stdout.split()
    if others:
        return
    rules = [
        ("filter", ["-D", "FORWARD", "-m", "comment", "--comment", "CNI firewall plugin rules", "-j", "CNI-FORWARD"]),
        ("nat", ["-D", "PREROUTING", "-m", "addrtype", "--dst-type", "LOCAL", "-j", "CNI-HOSTPORT-DNAT"]),
        ("nat", ["-D", "OUTPUT", "-m", "addrtype", "--dst-type", "LOCAL", "-j", "CNI-HOSTPORT-DNAT"]),
        ("nat", ["-D", "POSTROUTING", "-m", "comment", "--comment", "CNI portfwd requiring masquerade", "-j",
                 "CNI-HOSTPORT-MASQ"]),
    ]
    for table, rule in rules:
        subprocess.run(["iptables", "-t", table, *rule], capture_output=True)
    for table, chains in (("filter", ["CNI-FORWARD", "CNI-ADMIN"]),
                          ("nat", ["CNI-HOSTPORT-DNAT", "CNI-HOSTPORT-MASQ", "CNI-HOSTPORT-SETMARK"])):
        for chain in chains:
            subprocess.run(["iptables", "-t", table, "-F", chain], capture_output=True)
        for chain in chains:
            subprocess.run(["iptables", "-t", table, "-X", chain], capture_output=True)


@pytest.fixture(scope="module")
def podman() -> Iterator[str]:
    state = tempfile.mkdtemp(prefix="kube-podman-", dir="/tmp")
    env = dict(os.environ)
    if not any(Path(d, "netavark").exists() for d in ("/usr/libexec/podman", "/usr/lib/podman")):
        env["PODMAN_EXTRA_ARGS"] = "--network-backend cni"  # this VM has CNI's plugins, not netavark
    peers = SHARED / "peers"
    p = subprocess.run([str(peers / "start-podman"), state], env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    host = p.stdout.strip().splitlines()[-1]
    try:
        yield host
    finally:
        subprocess.run([str(peers / "stop-podman"), "--rm-all", state], env=env, capture_output=True, timeout=120)
        with open("/proc/self/mountinfo") as f:
            mounts = [line.split()[4] for line in f if line.split()[4].startswith(state)]
        for m in sorted(mounts, key=len, reverse=True):
            subprocess.run(["umount", "-l", m], capture_output=True)
        net = Path(state) / "networks" / "podman-default-kube-network.conflist"
        if net.exists():
            import json

            bridge = json.loads(net.read_text())["plugins"][0].get("bridge")
            if bridge:
                subprocess.run(["ip", "link", "del", bridge], capture_output=True)
        _remove_cni_chains()
        shutil.rmtree(state, ignore_errors=True)
        for suffix in (".log", ".pid", ".sock"):
            Path(state + suffix).unlink(missing_ok=True)


@pytest.fixture(scope="module")
def ours() -> Iterator[Daemon]:
    with own_daemon("dy-kpm-") as d:
        yield d


def test_kube_play_matches_podman(podman: str, ours: Daemon) -> None:
    sock = podman.removeprefix("unix://")
    with httpx.Client(transport=httpx.HTTPTransport(uds=sock), base_url="http://d", timeout=120) as c:
        r = c.post("/v4.3.1/libpod/play/kube", content=MANIFESTS.encode(), headers={"Content-Type": "application/x-yaml"})
        assert r.status_code == 200, r.text
        report = r.json()
        assert not any(p.get("ContainerErrors") for p in report["Pods"]), report
        try:
            podman_answers = answers()
            pods = c.get("/v4.3.1/libpod/pods/json").json()
            infra = {p["InfraId"] for p in pods}
            podman_shape = shape(pods, c.get("/containers/json").json(), infra)
        finally:
            r = c.request("DELETE", "/v4.3.1/libpod/play/kube", content=MANIFESTS.encode(),
                          headers={"Content-Type": "application/x-yaml"})
            assert r.status_code == 200, r.text
    try:
        ours.dockyard("kube", "play", "-", input=MANIFESTS.encode())
        our_answers = answers()
        with ours.api() as c:
            pods = c.get("/libpod/pods/json").json()
            infra = {p["InfraId"] for p in pods}
            our_shape = shape(pods, c.get("/containers/json").json(), infra)
    finally:
        ours.dockyard("kube", "down", "-", input=MANIFESTS.encode())
    assert our_shape == podman_shape
    assert our_answers == podman_answers
    assert our_answers == ["hello solo solo\n", "deployed\n"]
    # the same REST call a podman client makes, on our daemon: same report shape, same result
    with ours.api() as c:
        r = c.post("/v4.3.1/libpod/play/kube", content=MANIFESTS.encode(), headers={"Content-Type": "application/x-yaml"})
        assert r.status_code == 200, r.text
        try:
            ours_report = r.json()
            assert set(ours_report) == set(report)
            assert sorted(len(p["Containers"]) for p in ours_report["Pods"]) == \
                sorted(len(p["Containers"]) for p in report["Pods"])
            assert set(ours_report["Pods"][0]) == set(report["Pods"][0])
            assert answers() == podman_answers
        finally:
            r = c.request("DELETE", "/v4.3.1/libpod/play/kube", content=MANIFESTS.encode(),
                          headers={"Content-Type": "application/x-yaml"})
        assert r.status_code == 200, r.text
        assert sorted(x["Id"] for x in r.json()["RmReport"]) == ["solo", "web-pod-0"]
        assert c.get("/libpod/pods/json").json() == []
