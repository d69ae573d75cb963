"""Registries through the daemon with the real docker CLI: pull through a mirror, --platform, direct
pulls, push into our own registry server (from our daemon and from the real dockerd), skopeo reading
it back, login with an htpasswd (bcrypt) registry, and bad registries (corrupt blob, dying server, 401).

The fixture registry is the real distribution registry (`shared/images/serve-registry`) on loopback.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import http.server
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import bcrypt
import httpx
import pytest

from tests.conftest import DOCKER_CLI, ROOT, SHARED, Daemon, own_daemon

IMAGES = SHARED / "images"
PEERS = SHARED / "peers"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_v2(port: int, proc: subprocess.Popen[bytes] | None = None, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"registry exited with {proc.returncode}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/v2/", timeout=2).status_code in (200, 401):
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"registry on :{port} did not answer /v2/")


class OurRegistry:
    """`dockyard registry serve` in a subprocess with its own storage root."""

    def __init__(self, *extra: str) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="dy-regsrv-"))
        self.port = free_port()
        self.addr = f"127.0.0.1:{self.port}"
        self.log = open(self.root.parent / (self.root.name + ".log"), "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "dockyard.cli.main", "registry", "serve", "--addr", self.addr,
             "--root", str(self.root / "data"), *extra], cwd=ROOT, stdout=self.log, stderr=subprocess.STDOUT)
        wait_v2(self.port, self.proc)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()
        Path(self.log.name).unlink(missing_ok=True)
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture(scope="module")
def fixture_registry() -> Iterator[int]:
    cache = subprocess.run(["python3", str(IMAGES / "lib" / "oci_fixtures.py"), "path"], capture_output=True,
                           text=True, check=True).stdout.strip()
    if not (Path(cache) / "oci" / "nginx" / "fixture.json").exists():
        subprocess.run([str(IMAGES / "build")], check=True, capture_output=True)  # idempotent
    port = free_port()
    storage = tempfile.mkdtemp(prefix="dy-fixreg-")
    subprocess.run([str(IMAGES / "serve-registry"), "--port", str(port), "--dir", storage], check=True,
                   capture_output=True)
    try:
        yield port
    finally:
        subprocess.run([str(IMAGES / "stop-registry"), "--port", str(port), "--dir", storage], capture_output=True)
        shutil.rmtree(storage, ignore_errors=True)


@pytest.fixture(scope="module")
def mirror_daemon(fixture_registry: int) -> Iterator[Daemon]:
    with own_daemon("dy-regcli-", "--registry-mirror", f"http://127.0.0.1:{fixture_registry}", busybox=False) as d:
        yield d


@pytest.fixture(scope="module")
def our_registry() -> Iterator[OurRegistry]:
    r = OurRegistry()
    try:
        yield r
    finally:
        r.stop()


@pytest.fixture(scope="module")
def busybox(mirror_daemon: Daemon) -> str:
    """busybox:latest (linux/amd64), pulled through the mirror."""
    mirror_daemon.docker("pull", "-q", "busybox")
    return "busybox:latest"


def inspect(d: Daemon, ref: str) -> dict:  # type: ignore[type-arg]
    return json.loads(d.docker("image", "inspect", ref).stdout)[0]  # type: ignore[no-any-return]


def registry_digest(port: int, repo: str, tag: str) -> str:
    accept = ", ".join(["application/vnd.docker.distribution.manifest.list.v2+json",
                        "application/vnd.oci.image.index.v1+json",
                        "application/vnd.docker.distribution.manifest.v2+json",
                        "application/vnd.oci.image.manifest.v1+json"])
    r = httpx.head(f"http://127.0.0.1:{port}/v2/{repo}/manifests/{tag}", headers={"accept": accept})
    assert r.status_code == 200, r
    return r.headers["docker-content-digest"]


# --------------------------------------------------------------------------- pull through the mirror


def test_run_missing_image_pulls_it_through_the_mirror(mirror_daemon: Daemon) -> None:
    mirror_daemon.docker("rmi", "-f", "nginx", check=False)
    p = mirror_daemon.docker("run", "--rm", "nginx", "nginx", "-v")
    err = p.stderr.decode()
    assert "Unable to find image 'nginx:latest' locally" in err
    assert "nginx version: nginx/" in err  # nginx -v prints on stderr
    assert "Status: Downloaded newer image for nginx:latest" in err


def test_pull_nginx_images_repodigests_and_up_to_date(mirror_daemon: Daemon, fixture_registry: int) -> None:
    d = mirror_daemon
    d.docker("rmi", "-f", "nginx", check=False)
    out = d.docker("pull", "nginx").stdout.decode()
    assert "latest: Pulling from library/nginx" in out
    assert "Pull complete" in out
    assert "Status: Downloaded newer image for nginx:latest" in out
    assert out.rstrip().endswith("docker.io/library/nginx:latest")
    want = registry_digest(fixture_registry, "library/nginx", "latest")
    assert f"Digest: {want}" in out
    info = inspect(d, "nginx")
    assert info["RepoTags"] == ["nginx:latest"]
    assert info["RepoDigests"] == [f"nginx@{want}"]
    assert info["Config"]["Cmd"] == ["nginx", "-g", "daemon off;"]
    assert len(info["RootFS"]["Layers"]) == 2
    listing = d.docker("images", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}").stdout.decode().split("\n")
    assert f"nginx:latest {info['Id'][7:19]}" in listing
    again = d.docker("pull", "nginx").stdout.decode()
    assert "Status: Image is up to date for nginx:latest" in again
    assert "Pull complete" not in again


def test_pull_platform_arm64(mirror_daemon: Daemon) -> None:
    d = mirror_daemon
    d.docker("pull", "--platform", "linux/arm64", "busybox:1.35")
    try:
        info = inspect(d, "busybox:1.35")
        assert (info["Os"], info["Architecture"]) == ("linux", "arm64")
        assert info.get("Variant", "v8") == "v8"
    finally:
        d.docker("rmi", "busybox:1.35", check=False)


def test_pull_direct_from_registry(mirror_daemon: Daemon, fixture_registry: int) -> None:
    ref = f"127.0.0.1:{fixture_registry}/library/redis:latest"
    out = mirror_daemon.docker("pull", ref).stdout.decode()
    assert f"Status: Downloaded newer image for {ref}" in out
    info = inspect(mirror_daemon, ref)
    want = registry_digest(fixture_registry, "library/redis", "latest")
    assert info["RepoTags"] == [ref]
    assert info["RepoDigests"] == [f"127.0.0.1:{fixture_registry}/library/redis@{want}"]
    assert info["Config"]["Entrypoint"] == ["docker-entrypoint.sh"]
    mirror_daemon.docker("rmi", ref)


def test_pull_unknown_tag_is_a_clear_error(mirror_daemon: Daemon, fixture_registry: int) -> None:
    ref = f"127.0.0.1:{fixture_registry}/library/busybox:no-such-tag"
    p = mirror_daemon.docker("pull", ref, check=False)
    assert p.returncode != 0
    assert f"manifest for {ref} not found: manifest unknown".encode() in p.stderr


# --------------------------------------------------------------------------- our registry server


def test_push_to_our_registry_then_pull_back_and_skopeo(mirror_daemon: Daemon, busybox: str,
                                                        our_registry: OurRegistry) -> None:
    d, ref = mirror_daemon, f"{our_registry.addr}/mine:1"
    d.docker("tag", busybox, ref)
    out = d.docker("push", ref).stdout.decode()
    assert "Pushed" in out
    digest = next(w for w in out.split() if w.startswith("sha256:"))
    image_id = inspect(d, ref)["Id"]
    d.docker("rmi", ref)
    assert d.docker("image", "inspect", ref, check=False).returncode != 0
    d.docker("pull", ref)
    info = inspect(d, ref)
    assert info["Id"] == image_id
    assert f"{our_registry.addr}/mine@{digest}" in info["RepoDigests"]
    sk = subprocess.run(["skopeo", "inspect", "--tls-verify=false", f"docker://{ref}"], capture_output=True,
                        text=True, timeout=60)
    assert sk.returncode == 0, sk.stderr
    meta = json.loads(sk.stdout)
    assert meta["Digest"] == digest
    assert meta["Architecture"] == "amd64"
    # a second push finds every blob there already
    again = d.docker("push", ref).stdout.decode()
    assert "Layer already exists" in again
    d.docker("rmi", ref)


@pytest.fixture(scope="module")
def real_dockerd() -> Iterator[dict[str, str]]:
    state = "/tmp/peer/regtest-dockerd"
    p = subprocess.run([str(PEERS / "start-dockerd"), state], capture_output=True, text=True, env=dict(
        os.environ, DOCKERD_EXTRA_ARGS="--exec-root /tmp/peer/regtest-exec --bridge=none --iptables=false"))
    if p.returncode != 0:
        pytest.fail(f"real dockerd unavailable: {p.stderr[-500:]}")
    cfg = tempfile.mkdtemp(prefix="dy-regtest-cfg-")
    try:
        yield dict(os.environ, DOCKER_HOST=p.stdout.strip().splitlines()[-1], DOCKER_CONFIG=cfg)
    finally:
        subprocess.run([str(PEERS / "stop-dockerd"), state], capture_output=True)
        shutil.rmtree(cfg, ignore_errors=True)
        shutil.rmtree(state, ignore_errors=True)
        shutil.rmtree("/tmp/peer/regtest-exec", ignore_errors=True)
        for leftover in (state + "d.log", state + ".pid", state + ".sock"):
            Path(leftover).unlink(missing_ok=True)


def test_real_dockerd_pushes_into_our_registry(real_dockerd: dict[str, str], our_registry: OurRegistry,
                                               mirror_daemon: Daemon) -> None:
    def docker(*args: str) -> str:
        p = subprocess.run([DOCKER_CLI, *args], env=real_dockerd, capture_output=True, text=True, timeout=120)
        assert p.returncode == 0, (args, p.stdout, p.stderr)
        return p.stdout

    ref = f"{our_registry.addr}/from-dockerd:1"
    docker("tag", "busybox:latest", ref)
    out = docker("push", ref)
    digest = next(w for w in out.split() if w.startswith("sha256:"))
    image_id = json.loads(docker("image", "inspect", ref))[0]["Id"]
    docker("rmi", ref)
    docker("pull", ref)
    assert json.loads(docker("image", "inspect", ref))[0]["Id"] == image_id
    docker("rmi", ref)
    # and our daemon reads what dockerd pushed
    mirror_daemon.docker("pull", ref)
    info = inspect(mirror_daemon, ref)
    assert info["Id"] == image_id
    assert f"{our_registry.addr}/from-dockerd@{digest}" in info["RepoDigests"]
    mirror_daemon.docker("rmi", ref)


# --------------------------------------------------------------------------- auth


@pytest.fixture(scope="module")
def auth_registry() -> Iterator[OurRegistry]:
    htpasswd = Path(tempfile.mkdtemp(prefix="dy-htpasswd-")) / "htpasswd"
    htpasswd.write_text("alice:" + bcrypt.hashpw(b"s3cret", bcrypt.gensalt(rounds=5)).decode() + "\n")
    r = OurRegistry("--htpasswd", str(htpasswd))
    try:
        yield r
    finally:
        r.stop()
        shutil.rmtree(htpasswd.parent, ignore_errors=True)


def test_login_logout_and_push_with_auth(mirror_daemon: Daemon, busybox: str, auth_registry: OurRegistry) -> None:
    d, ref = mirror_daemon, f"{auth_registry.addr}/private/bb:1"
    config = Path(d.env["DOCKER_CONFIG"]) / "config.json"
    d.docker("tag", busybox, ref)
    try:
        denied = d.docker("push", ref, check=False, input=b"")
        assert denied.returncode != 0
        assert b"unauthorized" in denied.stderr or b"no basic auth credentials" in denied.stderr
        bad = d.dockyard("login", "-u", "alice", "-p", "wrong", auth_registry.addr, check=False)
        assert bad.returncode != 0 and b"unauthorized" in bad.stdout + bad.stderr
        # our CLI writes docker's config.json format
        assert b"Login Succeeded" in d.dockyard("login", "-u", "alice", "--password-stdin", auth_registry.addr,
                                                input=b"s3cret\n").stdout
        entry = json.loads(config.read_text())["auths"][auth_registry.addr]
        assert base64.b64decode(entry["auth"]) == b"alice:s3cret"
        d.dockyard("logout", auth_registry.addr)
        assert auth_registry.addr not in json.loads(config.read_text()).get("auths", {})
        # the docker CLI's login (through our /auth), then an authenticated push and pull
        assert b"Login Succeeded" in d.docker("login", "-u", "alice", "--password-stdin", auth_registry.addr,
                                              input=b"s3cret").stdout
        assert auth_registry.addr in json.loads(config.read_text())["auths"]
        assert "Pushed" in d.docker("push", ref).stdout.decode()
        d.docker("rmi", ref)
        d.docker("pull", ref)
        d.docker("logout", auth_registry.addr)
        d.docker("rmi", ref)
        # 401 without credentials (the CLI then offers a login prompt: stdin is empty)
        denied = d.docker("pull", ref, check=False, input=b"")
        assert denied.returncode != 0
        assert b"unauthorized" in denied.stderr or b"no basic auth credentials" in denied.stderr
        assert d.docker("image", "inspect", ref, check=False).returncode != 0
    finally:
        d.docker("rmi", ref, check=False)
        d.docker("logout", auth_registry.addr, check=False)


# --------------------------------------------------------------------------- bad registries


def make_image(seed: bytes, size: int = 256 * 1024) -> tuple[dict[str, bytes], bytes]:
    """A one-layer image with incompressible content: ({digest: blob}, manifest bytes)."""
    content = hashlib.shake_256(seed).digest(size)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        ti = tarfile.TarInfo("payload.bin")
        ti.size, ti.mode, ti.mtime = len(content), 0o644, 1_700_000_000
        tf.addfile(ti, io.BytesIO(content))
    raw = buf.getvalue()
    layer = gzip.compress(raw, mtime=0)
    config = json.dumps({"architecture": "amd64", "os": "linux", "config": {"Cmd": ["sh"]},
                         "rootfs": {"type": "layers", "diff_ids": ["sha256:" + hashlib.sha256(raw).hexdigest()]},
                         "history": [{"created_by": "test"}]}).encode()

    def desc(mt: str, data: bytes) -> dict[str, object]:
        return {"mediaType": mt, "digest": "sha256:" + hashlib.sha256(data).hexdigest(), "size": len(data)}
    manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
                           "config": desc("application/vnd.docker.container.image.v1+json", config),
                           "layers": [desc("application/vnd.docker.image.rootfs.diff.tar.gzip", layer)]}).encode()
    blobs = {"sha256:" + hashlib.sha256(b).hexdigest(): b for b in (config, layer)}
    return blobs, manifest


def upload(addr: str, repo: str, tag: str, blobs: dict[str, bytes], manifest: bytes) -> None:
    with httpx.Client(base_url=f"http://{addr}") as c:
        for digest, data in blobs.items():
            r = c.post(f"/v2/{repo}/blobs/uploads/")
            assert r.status_code == 202, r.text
            r = c.put(r.headers["location"], params={"digest": digest}, content=data)
            assert r.status_code == 201, r.text
        r = c.put(f"/v2/{repo}/manifests/{tag}", content=manifest,
                  headers={"content-type": "application/vnd.docker.distribution.manifest.v2+json"})
        assert r.status_code == 201, r.text


def test_corrupt_blob_in_registry_is_refused(mirror_daemon: Daemon, our_registry: OurRegistry) -> None:
    d, ref = mirror_daemon, f"{our_registry.addr}/corrupt:1"
    blobs, manifest = make_image(b"corrupt")
    upload(our_registry.addr, "corrupt", "1", blobs, manifest)
    layer_digest = json.loads(manifest)["layers"][0]["digest"]
    stored = our_registry.root / "data" / "blobs" / "sha256" / layer_digest[7:]
    assert stored.is_file()
    data = bytearray(stored.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, different bytes
    stored.write_bytes(bytes(data))
    p = d.docker("pull", ref, check=False)
    assert p.returncode != 0
    err = p.stderr.decode()
    assert "digest" in err and layer_digest[7:19] in err or "verification failed" in err, err
    assert d.docker("image", "inspect", ref, check=False).returncode != 0
    assert ref not in d.docker("images", "--format", "{{.Repository}}:{{.Tag}}").stdout.decode()
    # the registry is repaired: the retry pulls the image whole
    stored.write_bytes(blobs[layer_digest])
    d.docker("pull", ref)
    assert inspect(d, ref)["RootFS"]["Layers"]
    d.docker("rmi", ref)


class DyingRegistry(http.server.ThreadingHTTPServer):
    """Serves one image; while `die` is set, blob GETs send half the body and drop the connection."""

    def __init__(self, blobs: dict[str, bytes], manifest: bytes) -> None:
        self.blobs, self.manifest, self.die = blobs, manifest, True
        super().__init__(("127.0.0.1", 0), _DyingHandler)
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)
        self.thread.start()

    @property
    def addr(self) -> str:
        return f"127.0.0.1:{self.server_address[1]}"

    def stop(self) -> None:
        self.shutdown()
        self.server_close()


class _DyingHandler(http.server.BaseHTTPRequestHandler):
    server: DyingRegistry
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: object) -> None:
        pass

    def do_HEAD(self) -> None:
        self.do_GET(head=True)

    def do_GET(self, head: bool = False) -> None:
        srv, path = self.server, self.path.split("?")[0]
        if path == "/v2/":
            body, mt = b"{}", "application/json"
        elif path.startswith("/v2/dying/manifests/"):
            body, mt = srv.manifest, "application/vnd.docker.distribution.manifest.v2+json"
        elif path.startswith("/v2/dying/blobs/") and path.rsplit("/", 1)[1] in srv.blobs:
            body, mt = srv.blobs[path.rsplit("/", 1)[1]], "application/octet-stream"
        else:
            self.send_response(404)
            self.send_header("content-length", "0")
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("content-type", mt)
        self.send_header("content-length", str(len(body)))
        self.send_header("docker-content-digest", "sha256:" + hashlib.sha256(body).hexdigest())
        self.end_headers()
        if head:
            return
        if srv.die and "/blobs/" in path and len(body) > 4096:
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        self.wfile.write(body)


def test_registry_dying_mid_pull_leaves_nothing_and_retry_works(mirror_daemon: Daemon) -> None:
    d = mirror_daemon
    blobs, manifest = make_image(b"dying", 2 * 1024 * 1024)
    srv = DyingRegistry(blobs, manifest)
    ref = f"{srv.addr}/dying:1"
    try:
        p = d.docker("pull", ref, check=False)
        assert p.returncode != 0
        assert p.stderr.strip(), "a failed pull must say why"
        assert d.docker("image", "inspect", ref, check=False).returncode != 0
        ingest = d.data_root / "content" / "ingest"
        assert not [f for f in ingest.iterdir() if f.is_file()], "partial blob left in ingest/"
        srv.die = False
        d.docker("pull", ref)
        assert inspect(d, ref)["Config"]["Cmd"] == ["sh"]
    finally:
        srv.stop()
        d.docker("rmi", ref, check=False)
