"""Pods (issue 18): `dockyard pod ...` and `--pod` against a daemon of our own, real containers.

A pod's infra container (catatonit -P) holds the network, IPC and UTS namespaces and the published
ports; members reach each other on localhost and share the hostname; pods survive a daemon restart.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Iterator

import pytest
from conftest import ROOT, Daemon, own_daemon


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def pd() -> Iterator[Daemon]:
    with own_daemon("dy-pods-") as d:
        yield d


def out(d: Daemon, *args: str) -> str:
    return d.dockyard(*args).stdout.decode()


def http_get(port: int, path: str = "/") -> bytes:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as r:
        return bytes(r.read())


def wait_http(port: int, path: str = "/") -> bytes:
    import time

    last: Exception | None = None
    for _ in range(100):
        try:
            return http_get(port, path)
        except OSError as e:
            last = e
            time.sleep(0.1)
    raise AssertionError(f"port {port} never answered: {last}")


NS = "for n in ipc uts net; do readlink /proc/self/ns/$n; done"
HTTPD = "mkdir -p /www && echo from-$(hostname) > /www/i && echo web-up && exec httpd -f -p 80 -h /www"


def test_pod_shares_namespaces_and_ports(pd: Daemon) -> None:
    port = free_port()
    pod_id = out(pd, "pod", "create", "--name", "shop", "-p", f"127.0.0.1:{port}:80").strip()
    try:
        out(pd, "run", "-d", "--pod", "shop", "--name", "shop-web", "busybox", "sh", "-c", HTTPD)
        # localhost reaches the sibling; the hostname is the pod's
        got = out(pd, "run", "--rm", "--pod", "shop", "busybox", "sh", "-c",
                  "for i in $(seq 50); do wget -qO- http://localhost:80/i && break; sleep 0.1; done; hostname")
        assert got.split() == ["from-shop", "shop"]
        # the published port is the pod's (held by the infra)
        assert wait_http(port, "/i") == b"from-shop\n"
        # one IPC, UTS and network namespace for every member and the infra
        ns = out(pd, "run", "--rm", "--pod", "shop", "busybox", "sh", "-c",
                 NS).split()
        web = out(pd, "exec", "shop-web", "sh", "-c",
                  NS).split()
        host = out(pd, "run", "--rm", "busybox", "sh", "-c",
                   NS).split()
        assert ns == web
        # POSIX shared memory too: /dev/shm is the infra's for every member (a file one writes, another reads)
        out(pd, "exec", "shop-web", "sh", "-c", "echo shared > /dev/shm/seg")
        assert out(pd, "run", "--rm", "--pod", "shop", "busybox", "cat", "/dev/shm/seg") == "shared\n"
        assert pd.dockyard("run", "--rm", "busybox", "cat", "/dev/shm/seg", check=False).returncode == 1
        assert all(a != b for a, b in zip(ns, host, strict=True))
        info = json.loads(out(pd, "pod", "inspect", "shop"))
        assert info["Id"] == pod_id and info["State"] == "Running" and info["Hostname"] == "shop"
        assert info["SharedNamespaces"] == ["ipc", "net", "uts"]
        names = {c["Name"] for c in info["Containers"]}
        assert "shop-web" in names and f"{pod_id[:12]}-infra" in names
        assert info["InfraConfig"]["PortBindings"] == {"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": str(port)}]}
        ls = out(pd, "pod", "ls", "--format", "{{.Name}} {{.Status}} {{.NumContainers}}").split()
        assert ls == ["shop", "Running", "2"]
        assert out(pd, "pod", "logs", "--names", "shop").splitlines() == ["shop-web web-up"]
        # -f follows every member until they stop
        follow = subprocess.Popen([sys.executable, "-m", "dockyard.cli.main", "pod", "logs", "-f", "shop"],
                                  env=pd.env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            assert follow.stdout is not None
            first = follow.stdout.readline().decode()
            assert first.split()[1] == "web-up" and info["Containers"][1]["Id"].startswith(first.split()[0])
            out(pd, "exec", "shop-web", "sh", "-c", "echo late > /proc/1/fd/1")
            assert follow.stdout.readline().decode().split()[1] == "late"
            out(pd, "stop", "shop-web")
            assert follow.wait(30) == 0
        finally:
            follow.kill()
            follow.wait()
        out(pd, "start", "shop-web")
        # a member may not bring its own ports or network: podman's words
        p = pd.dockyard("create", "--pod", "shop", "-p", "81:81", "busybox", check=False)
        assert p.returncode == 125 and b"network cannot be configured when it is shared with a pod" in p.stderr
        out(pd, "pod", "stop", "shop")
        assert out(pd, "pod", "ls", "--format", "{{.Status}}").strip() == "Exited"
        with pytest.raises(OSError):
            http_get(port, "/i")
        # starting a member starts the infra first
        out(pd, "start", "shop-web")
        assert wait_http(port, "/i") == b"from-shop\n"
        out(pd, "pod", "start", "shop")
        # rm refuses running members without -f
        p = pd.dockyard("pod", "rm", "shop", check=False)
        assert p.returncode == 1 and b"running or paused containers cannot be removed without force" in p.stderr
    finally:
        pd.dockyard("pod", "rm", "-f", "shop", check=False)
    assert out(pd, "ps", "-aq").strip() == ""
    assert out(pd, "pod", "ls", "-q").strip() == ""
    p = pd.dockyard("pod", "inspect", "shop", check=False)
    assert p.returncode == 1 and b"no such pod" in p.stderr


def test_libpod_paths(pd: Daemon) -> None:
    """podman's REST paths, with its version prefix, as podman's clients send them."""
    with pd.api() as c:
        r = c.post("/v4.3.1/libpod/pods/create", json={"name": "api-pod", "labels": {"tier": "x"},
                                                      "portmappings": [{"container_port": 8080}]})
        assert r.status_code == 201, r.text
        pid = r.json()["Id"]
        try:
            assert c.get("/v4.3.1/libpod/pods/api-pod/exists").status_code == 204
            assert c.get("/v4.3.1/libpod/pods/nope/exists").status_code == 404
            lst = c.get("/v4.3.1/libpod/pods/json", params={"filters": json.dumps({"label": ["tier=x"]})}).json()
            assert [p["Id"] for p in lst] == [pid] and lst[0]["Status"] == "Created"
            assert c.get("/libpod/pods/json", params={"filters": json.dumps({"label": ["tier=y"]})}).json() == []
            r = c.post(f"/v4.3.1/libpod/pods/{pid[:12]}/start")
            assert r.status_code == 200 and r.json() == {"Errs": None, "Id": pid}
            assert c.post("/v4.3.1/libpod/pods/api-pod/start").status_code == 304
            assert c.get("/v4.3.1/libpod/pods/api-pod/json").json()["State"] == "Running"
            assert c.post("/v4.3.1/libpod/pods/create", json={"name": "api-pod"}).status_code == 409
            assert c.post("/v4.3.1/libpod/pods/create", json={"name": "p2", "share": "pid"}).status_code == 400
        finally:
            r = c.delete("/v4.3.1/libpod/pods/api-pod", params={"force": "true"})
        assert r.status_code == 200 and r.json()["Id"] == pid and len(r.json()["RemovedCtrs"]) == 1


def test_pods_survive_daemon_restart(pd: Daemon) -> None:
    port = free_port()
    out(pd, "pod", "create", "--name", "keep", "-p", f"127.0.0.1:{port}:80")
    try:
        out(pd, "run", "-d", "--pod", "keep", "--name", "keep-web", "busybox", "sh", "-c", HTTPD)
        assert wait_http(port, "/i") == b"from-keep\n"
        pd.kill()  # a crash: the containers live on under conmon
        pd.start()
        assert out(pd, "pod", "ls", "--format", "{{.Name}} {{.Status}} {{.NumContainers}}").split() == \
            ["keep", "Running", "2"]
        assert http_get(port, "/i") == b"from-keep\n"
        pd.stop()
        pd.start()
        out(pd, "pod", "stop", "keep")
        out(pd, "pod", "start", "keep")
        assert wait_http(port, "/i") == b"from-keep\n"
    finally:
        pd.dockyard("pod", "rm", "-f", "keep", check=False)
    assert out(pd, "ps", "-aq").strip() == ""
