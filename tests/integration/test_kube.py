"""`dockyard kube generate|play|down` (issue 18) against a daemon of our own, real containers.

No cluster is reachable here: the manifests are checked against the official schemas of the three
newest Kubernetes versions kubernetes-validate knows (strict: unknown fields fail), and the round
trip compose up → kube generate → kube play must answer the same requests.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from conftest import ROOT, SHARED, Daemon, own_daemon
from kubernetes_validate import utils as kv_utils

NEWEST = sorted({str(v) for v in kv_utils.all_versions()}, key=lambda v: tuple(map(int, v.split("."))))[-3:]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def validate_all(text: str) -> list[dict[str, Any]]:
    docs = [d for d in yaml.safe_load_all(text) if d]
    assert docs
    for d in docs:
        for v in NEWEST:
            kubernetes_validate.validate(d, v, strict=True)
    return docs


@pytest.fixture(scope="module")
def kd() -> Iterator[Daemon]:
    with own_daemon("dy-kube-") as d:
        yield d


def dy(d: Daemon, *args: str, input: bytes | None = None, check: bool = True) -> subprocess.CompletedProcess[bytes]:
    return d.dockyard(*args, input=input, check=check, timeout=180)


def get(port: int, path: str) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
        return bytes(r.read()).decode()


def wait_for(port: int, path: str, want: str) -> str:
    last = ""
    for _ in range(150):
        try:
            last = get(port, path)
            if want in last:
                return last
        except OSError as e:
            last = str(e)
        time.sleep(0.2)
    raise AssertionError(f"{path} on {port} never gave {want!r}; last: {last!r}")


def test_validator_rejects_a_bad_manifest() -> None:
    """The check the tests rely on can fail: a typo'd field and a wrong type are refused."""
    assert len(NEWEST) == 3
    with pytest.raises(kubernetes_validate.ValidationError):
        validate_all("apiVersion: v1\nkind: Pod\nmetadata: {name: x}\nspec: {containerz: []}\n")
    with pytest.raises(kubernetes_validate.ValidationError):
        validate_all("apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\n"
                     "spec: {replicas: two, selector: {}, template: {}}\n")


APP = """
services:
  db:
    image: redis:7
    volumes: [data:/data]
    mem_limit: 64m
    healthcheck: {test: ["CMD", "redis-cli", "ping"], interval: 1s, retries: 30}
  setup:
    image: busybox
    env_file: [setup.env]
    command: ["sh", "-c", "until printf 'SET greeting %s\\r\\n' \\"$$GREETING\\" | nc db 6379 | grep -q OK; do sleep 0.2; done"]
    depends_on:
      db: {condition: service_healthy}
  web:
    image: busybox
    command: ["sh", "-c", "mkdir -p /www/cgi-bin && cp /etc/app/page /www/index.html && cp /etc/app/cgi /www/cgi-bin/q && chmod +x /www/cgi-bin/q && exec httpd -f -p 80 -h /www"]
    ports: ["PORT:80"]
    environment: {WHO: web}
    cpus: 0.5
    configs: [{source: page, target: /etc/app/page}, {source: cgi, target: /etc/app/cgi}]
    secrets: [token]
    depends_on:
      db: {condition: service_healthy}
      setup: {condition: service_completed_successfully}
configs:
  page: {content: "<h1>shop</h1>"}
  cgi: {file: ./q.cgi}
secrets:
  token: {file: ./token.txt}
volumes:
  data: {}
"""

# web asks the redis db by its name, in redis' own protocol (busybox nc), for what setup stored
CGI = """#!/bin/sh
echo "Content-Type: text/plain"
echo
echo "db says: $(printf 'GET greeting\\r\\n' | nc db 6379 | sed -n 2p | tr -d '\\r')"
echo "token: $(cat /run/secrets/token)"
echo "who: $WHO"
"""

WANT = "db says: hello-from-db\ntoken: s3cret\nwho: web\n"


@pytest.fixture(scope="module")
def redis_image(kd: Daemon) -> str:
    """redis:7 from the image fixtures (../shared/images), through a registry of its own, stopped after."""
    images = SHARED / "images"
    port, store = free_port(), tempfile.mkdtemp(prefix="kube-reg-", dir="/tmp")
    subprocess.run([str(images / "serve-registry"), "--port", str(port), "--dir", store, "redis"], check=True,
                   capture_output=True, timeout=300)
    try:
        dy(kd, "pull", f"127.0.0.1:{port}/library/redis:7")
        dy(kd, "tag", f"127.0.0.1:{port}/library/redis:7", "redis:7")
        dy(kd, "rmi", f"127.0.0.1:{port}/library/redis:7")
    finally:
        subprocess.run([str(images / "stop-registry"), "--port", str(port), "--dir", store], capture_output=True)
        subprocess.run(["rm", "-rf", store])
    return "redis:7"


def compose(d: Daemon, project: str, workdir: Path, *args: str) -> None:
    env = {**os.environ, "DOCKER_HOST": d.host, "PYTHONPATH": str(ROOT)}
    env.pop("COMPOSE_PROJECT_NAME", None)
    p = subprocess.run([sys.executable, "-m", "dockyard.compose", "-p", project, *args], cwd=workdir, env=env,
                       capture_output=True, text=True, timeout=180)
    assert p.returncode == 0, f"compose {args} -> {p.returncode}\n{p.stdout}\n{p.stderr}"


def answers(port: int) -> tuple[str, str]:
    return wait_for(port, "/", "shop"), wait_for(port, "/cgi-bin/q", WANT)


def test_round_trip_compose_generate_play(kd: Daemon, redis_image: str) -> None:
    port = free_port()
    work = Path(tempfile.mkdtemp(prefix="kube-rt-", dir="/tmp"))
    project = "rt" + os.urandom(3).hex()
    (work / "compose.yaml").write_text(APP.replace("PORT", str(port)))
    (work / "q.cgi").write_text(CGI)
    (work / "token.txt").write_text("s3cret")
    (work / "setup.env").write_text("GREETING=hello-from-db\n")
    manifest = work / "app.yaml"
    try:
        compose(kd, project, work, "up", "-d")
        before = answers(port)
        assert before == ("<h1>shop</h1>", WANT)
        gen = dy(kd, "kube", "generate", "-p", project)
        docs = validate_all(gen.stdout.decode())
        kinds = sorted((d["kind"], d["metadata"]["name"]) for d in docs)
        assert kinds == [("ConfigMap", "cgi"), ("ConfigMap", "page"), ("ConfigMap", "setup-env"),
                         ("Deployment", "db"), ("Deployment", "web"), ("PersistentVolumeClaim", "data"),
                         ("Secret", "token"), ("Service", "db"), ("Service", "web"), ("Service", "web-public")]
        web = next(d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == "web")
        pod = web["spec"]["template"]["spec"]
        assert [c["name"] for c in pod["initContainers"]] == ["setup"]
        assert pod["containers"][0]["resources"] == {"limits": {"cpu": "500m"}}
        db = next(d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == "db")
        dbc = db["spec"]["template"]["spec"]["containers"][0]
        assert dbc["readinessProbe"]["exec"]["command"] == ["redis-cli", "ping"]
        assert dbc["resources"] == {"limits": {"memory": "64Mi"}}
        assert dbc["ports"] == [{"containerPort": 6379, "protocol": "TCP"}]  # the image's EXPOSE
        assert pod["initContainers"][0]["envFrom"] == [{"configMapRef": {"name": "setup-env"}}]
        public = next(d for d in docs if d["metadata"]["name"] == "web-public")
        assert public["spec"]["type"] == "LoadBalancer" and public["spec"]["ports"][0]["port"] == port
        notes = gen.stderr.decode()
        assert "db (service_healthy) not expressed" in notes and "written as their initContainer" in notes
        manifest.write_text(gen.stdout.decode())
        # with the compose files gone, the project is read from its containers (and says so)
        (work / "compose.yaml").rename(work / "gone.yaml")
        fallback = dy(kd, "kube", "generate", "-p", project)
        (work / "gone.yaml").rename(work / "compose.yaml")
        assert "generated from its containers" in fallback.stderr.decode()
        fb = validate_all(fallback.stdout.decode())
        assert sorted((d["kind"], d["metadata"]["name"]) for d in fb if d["kind"] == "Deployment") == [
            ("Deployment", "db"), ("Deployment", "setup"), ("Deployment", "web")]
        compose(kd, project, work, "down", "-v")
        with pytest.raises(OSError):
            get(port, "/")
        play = dy(kd, "kube", "play", str(manifest))
        assert play.stdout.decode().count("Pod:") == 2
        after = answers(port)
        assert after == before
        names = dy(kd, "pod", "ls", "--format", "{{.Name}} {{.Status}}").stdout.decode().split("\n")
        assert sorted(n for n in names if n) == ["db-pod-0 Running", "web-pod-0 Running"]
        # --replace plays it again over the running pods; without it, play refuses
        again = dy(kd, "kube", "play", str(manifest), check=False)
        assert again.returncode == 125 and b"pod db-pod-0 already exists" in again.stderr
        dy(kd, "kube", "play", "--replace", str(manifest))
        assert answers(port) == before
    finally:
        dy(kd, "kube", "down", str(manifest), check=False)
        try:
            compose(kd, project, work, "down", "-v")
        finally:
            subprocess.run(["rm", "-rf", str(work)])
    assert dy(kd, "ps", "-aq").stdout.strip() == b""
    assert dy(kd, "pod", "ls", "-q").stdout.strip() == b""
    assert b"data" not in dy(kd, "volume", "ls", "-q").stdout.split()
    assert b"dockyard-kube" not in dy(kd, "network", "ls", "--format", "{{.Name}}").stdout.split()


def test_generate_pod_and_container_reports_what_it_cannot_say(kd: Daemon) -> None:
    port = free_port()
    dy(kd, "pod", "create", "--name", "gp", "-p", f"{port}:8080")
    try:
        dy(kd, "create", "--pod", "gp", "--name", "gp-app", "-e", "MODE=x", "--memory", "32m",
           "--health-cmd", "true", "--health-interval", "2s", "busybox", "httpd", "-f", "-p", "8080")
        dy(kd, "create", "--name", "loner", "--privileged", "--network", "host", "-v", "/tmp:/host-tmp",
           "-v", "vol1:/v", "--expose", "7000", "busybox", "sleep", "1")
        p = dy(kd, "kube", "generate", "gp", "loner")
        docs = validate_all(p.stdout.decode())
        assert sorted((d["kind"], d["metadata"]["name"]) for d in docs) == [
            ("PersistentVolumeClaim", "vol1"), ("Pod", "gp"), ("Pod", "loner"), ("Service", "gp"),
            ("Service", "gp-public"), ("Service", "loner")]
        gp = next(d for d in docs if d["kind"] == "Pod" and d["metadata"]["name"] == "gp")
        c = gp["spec"]["containers"][0]
        assert c["name"] == "gp-app" and c["args"] == ["httpd", "-f", "-p", "8080"]
        assert {"name": "MODE", "value": "x"} in c["env"] and c["resources"] == {"limits": {"memory": "32Mi"}}
        assert c["readinessProbe"] == {"exec": {"command": ["/bin/sh", "-c", "true"]}, "periodSeconds": 2}
        assert gp["spec"]["hostname"] == "gp"
        pub = next(d for d in docs if d["metadata"]["name"] == "gp-public")
        assert pub["spec"]["ports"] == [{"name": f"{port}-tcp", "port": port, "targetPort": 8080, "protocol": "TCP"}]
        err = p.stderr.decode()
        assert "host bind /tmp:/host-tmp cannot be expressed" in err
        assert "network_mode: host cannot be expressed" in err
        assert "securityContext.privileged" in err
        dep = dy(kd, "kube", "generate", "--type", "deployment", "gp").stdout.decode()
        assert [d["kind"] for d in validate_all(dep)].count("Deployment") == 1
    finally:
        dy(kd, "pod", "rm", "-f", "gp", check=False)
        dy(kd, "rm", "-f", "-v", "loner", check=False)
        dy(kd, "volume", "rm", "vol1", check=False)


def test_play_refuses_what_it_cannot_run(kd: Daemon) -> None:
    job = "apiVersion: batch/v1\nkind: Job\nmetadata: {name: j}\nspec: {template: {spec: {containers: []}}}\n"
    p = dy(kd, "kube", "play", "-", input=job.encode(), check=False)
    assert p.returncode == 125 and b"unsupported kind 'Job' (document 1, j)" in p.stderr
    pod = ("apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  hostNetwork: true\n  containers:\n"
           "  - name: c\n    image: busybox\n    lifecycle: {preStop: {exec: {command: [x]}}}\n")
    p = dy(kd, "kube", "play", "-", input=pod.encode(), check=False)
    assert p.returncode == 125
    assert b"Pod p: spec.containers[0].lifecycle" in p.stderr and b"Pod p: spec.hostNetwork" in p.stderr
    assert dy(kd, "pod", "ls", "-q").stdout.strip() == b""


PLAY = """
apiVersion: v1
kind: ConfigMap
metadata: {name: settings}
data: {GREETING: hi, app.conf: "mode=play"}
---
apiVersion: v1
kind: Secret
metadata: {name: creds}
stringData: {password: pw1}
---
apiVersion: v1
kind: Pod
metadata: {name: solo, labels: {app: solo}}
spec:
  initContainers:
  - name: prep
    image: busybox
    command: [sh, -c, "echo prepared > /work/state"]
    volumeMounts: [{name: work, mountPath: /work}]
  containers:
  - name: main
    image: busybox
    command: [sh, -c]
    args: ["echo \\"$GREETING $PASS $(cat /etc/app/app.conf) $(cat /work/state)\\" > /www/index.html; exec httpd -f -p 8000 -h /www"]
    env:
    - {name: PASS, valueFrom: {secretKeyRef: {name: creds, key: password}}}
    envFrom: [{configMapRef: {name: settings}}]
    ports: [{containerPort: 8000, hostPort: HOSTPORT}]
    volumeMounts:
    - {name: conf, mountPath: /etc/app}
    - {name: work, mountPath: /work}
    - {name: www, mountPath: /www}
    readinessProbe: {tcpSocket: {port: 8000}, periodSeconds: 1}
    resources: {limits: {memory: 48Mi, cpu: 250m}}
  volumes:
  - {name: conf, configMap: {name: settings, items: [{key: app.conf, path: app.conf}]}}
  - {name: work, persistentVolumeClaim: {claimName: solo-work}}
  - {name: www, emptyDir: {}}
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: solo-work}
spec: {accessModes: [ReadWriteOnce], resources: {requests: {storage: 1Gi}}}
"""


def test_play_pod_with_init_configmap_secret_claim_probe(kd: Daemon) -> None:
    port = free_port()
    text = PLAY.replace("HOSTPORT", str(port))
    validate_all(text)
    try:
        dy(kd, "kube", "play", "-", input=text.encode())
        assert wait_for(port, "/", "hi") == "hi pw1 mode=play prepared\n"
        info = json.loads(dy(kd, "inspect", "solo-main").stdout)[0]
        assert info["HostConfig"]["Memory"] == 48 << 20 and info["HostConfig"]["NanoCpus"] == 250_000_000
        assert info["Config"]["Healthcheck"]["Test"] == ["CMD-SHELL", "nc -z localhost 8000"]
        assert "solo-work" in dy(kd, "volume", "ls", "-q").stdout.decode().split()
        assert dy(kd, "ps", "-a", "--format", "{{.Names}}").stdout.decode().split().count("solo-init-prep") == 0
    finally:
        down = dy(kd, "kube", "down", "-", input=text.encode())
    assert b"solo" in down.stdout
    assert dy(kd, "ps", "-aq").stdout.strip() == b""
    assert "solo-work" not in dy(kd, "volume", "ls", "-q").stdout.decode().split()


def test_generate_registry_pushes_and_pins_digests(kd: Daemon, tmp_path: Path) -> None:
    """--registry: the images go to REG (our `registry serve`) and the YAML names them by digest."""
    from test_registry_server import _start

    proc, reg = _start(tmp_path / "reg")
    try:
        dy(kd, "create", "--name", "pinme", "busybox", "sleep", "1")
        p = dy(kd, "kube", "generate", "--registry", reg, "pinme")
        docs = validate_all(p.stdout.decode())
        image = next(d for d in docs if d["kind"] == "Pod")["spec"]["containers"][0]["image"]
        repo, _, digest = image.partition("@")
        assert repo == f"{reg}/library/busybox" and digest.startswith("sha256:") and len(digest) == 71
        assert f"pushed as {reg}/library/busybox:latest" in p.stderr.decode()
        # the registry serves that digest, and the tag points at it
        req = urllib.request.Request(f"http://{reg}/v2/library/busybox/manifests/latest", method="HEAD", headers={
            "Accept": "application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json"})
        with urllib.request.urlopen(req, timeout=10) as r:
            assert r.headers["Docker-Content-Digest"] == digest
        # what the YAML names runs: the pinned reference pulls from REG (after the local copy goes)
        dy(kd, "rmi", f"{reg}/library/busybox:latest")
        pod = yaml.safe_dump({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "pinned"},
                              "spec": {"containers": [{"name": "c", "image": image, "command": ["sleep", "30"]}]}})
        dy(kd, "kube", "play", "-", input=pod.encode())
        assert dy(kd, "inspect", "--format", "{{.Config.Image}}", "pinned-c").stdout.decode().strip() == image
        dy(kd, "kube", "down", "-", input=pod.encode())
    finally:
        dy(kd, "rm", "-f", "pinme", check=False)
        dy(kd, "rmi", "-f", image if "image" in locals() else "none", check=False)
        proc.terminate()
        proc.wait(10)


def test_libpod_play_and_generate_paths(kd: Daemon) -> None:
    """podman's REST paths for play and generate, on our daemon (what podman --remote calls)."""
    port = free_port()
    text = PLAY.replace("HOSTPORT", str(port))
    with kd.api() as c:
        r = c.post("/v4.3.1/libpod/play/kube", content=text.encode(), headers={"Content-Type": "application/x-yaml"})
        assert r.status_code == 200, r.text
        try:
            rep = r.json()
            assert len(rep["Pods"]) == 1 and len(rep["Pods"][0]["Containers"]) == 1
            assert rep["Volumes"] == [{"Name": "solo-work"}]
            assert wait_for(port, "/", "hi") == "hi pw1 mode=play prepared\n"
            g = c.get("/v4.3.1/libpod/generate/kube", params={"names": "solo", "service": "true"})
            assert g.status_code == 200 and g.headers["content-type"] == "text/vnd.yaml"
            docs = validate_all(g.text)
            assert sorted(d["kind"] for d in docs) == ["PersistentVolumeClaim", "Pod", "Service", "Service"]
            g = c.get("/v4.3.1/libpod/generate/kube", params={"names": "solo"})
            assert "Service" not in [d["kind"] for d in validate_all(g.text)]
            bad = c.post("/v4.3.1/libpod/play/kube", content=b"kind: Job\nmetadata: {name: j}\n")
            assert bad.status_code == 400 and "unsupported kind 'Job'" in bad.json()["message"]
            assert c.get("/libpod/generate/kube", params={"names": "nope"}).status_code == 404
        finally:
            r = c.request("DELETE", "/v4.3.1/libpod/play/kube", content=text.encode())
        assert r.status_code == 200 and r.json()["RmReport"] == [{"Err": None, "Id": "solo"}]
        assert c.get("/libpod/pods/json").json() == []
