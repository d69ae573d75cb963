"""Pull and push with our distribution client against real registries (ours and distribution's)."""

from __future__ import annotations

import asyncio
import base64
import gzip
import hashlib
import io
import json
import shutil
import socket
import subprocess
import sys
import tarfile
from collections.abc import AsyncIterator, Iterable, Iterator
from pathlib import Path
from typing import Any

import bcrypt
import httpx
import pytest

from dockyard.errors import InvalidParameter, NotFound, Unauthorized
from dockyard.registry.client.auth import Credentials
from dockyard.registry.client.layermap import LayerMap
from dockyard.registry.client.pull import Puller
from dockyard.registry.client.push import Pusher
from dockyard.registry.client.remote import RegistryClient, RegistryOptions
from dockyard.store.content import ContentStore
from dockyard.store.db import Database
from dockyard.store.snapshots import Snapshotter
from tests.conftest import SHARED

IMAGES = SHARED / "images"
PREBUILT = IMAGES / "prebuilt"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start(root: Path, *extra: str) -> tuple[subprocess.Popen[bytes], str]:
    """Our registry server in a subprocess; returns once it prints that it listens."""
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "dockyard.registry.server", "serve", "--addr", f"127.0.0.1:{port}",
         "--root", str(root), *extra], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert proc.stdout is not None
    assert "listening" in proc.stdout.readline().decode()
    return proc, f"127.0.0.1:{port}"
pytestmark = pytest.mark.skipif(not shutil.which("skopeo"), reason="needs skopeo")


class FakeImages:
    """Stands in for the image service: records what the puller registers."""

    def __init__(self) -> None:
        self.registered: list[tuple[bytes, list[str], list[str]]] = []
        self.repo_digests: list[str] = []

    def register(self, config_bytes: bytes, layer_diff_ids: list[str], tags: Iterable[str] = (), *,
                 repo_digests: Iterable[str] = (), layer_blobs: Iterable[tuple[str, str, str, int]] = ()) -> None:
        self.registered.append((config_bytes, layer_diff_ids, list(tags)))
        self.repo_digests += repo_digests

    def resolve(self, ref_or_id: str) -> Any:
        raise NotFound(f"No such image: {ref_or_id}")

    def all(self) -> list[Any]:
        return []

    def layer_blob(self, diff_id: str) -> tuple[str, str, int]:
        raise NotFound(f"layer {diff_id} has no stored blob")  # as ImageService: the pusher gzips the snapshot


class Engine:
    def __init__(self, root: Path, mirrors: list[str] | None = None) -> None:
        self.client = RegistryClient(RegistryOptions(mirrors=mirrors or []))
        self.content = ContentStore(root / "content")
        self.snapshots = Snapshotter(root / "overlay")
        self.db = Database(root / "db")
        self.layermap = LayerMap(self.db)
        self.images = FakeImages()
        self.puller = Puller(self.client, self.content, self.snapshots, self.images, self.layermap)
        self.pusher = Pusher(self.client, self.content, self.snapshots, self.layermap)

    async def pull(self, image: str, **kw: Any) -> list[dict[str, Any]]:
        return [ev async for ev in self.puller.pull(image, **kw)]

    async def push(self, target: str, config: bytes, **kw: Any) -> list[dict[str, Any]]:
        return [ev async for ev in self.pusher.push(target, config, **kw)]

    async def close(self) -> None:
        await self.client.aclose()
        self.db.close()


def run(coro: Any) -> Any:
    return asyncio.run(coro)


@pytest.fixture
def ours(tmp_path: Path) -> Iterator[str]:
    proc, addr = _start(tmp_path / "reg")
    for name in ("busybox", "layered"):
        subprocess.run(["skopeo", "copy", "--dest-tls-verify=false", f"oci:{PREBUILT}/{name}:latest",
                        f"docker://{addr}/library/{name}:latest"], check=True, capture_output=True)
    yield addr
    proc.terminate()
    proc.wait(10)


@pytest.fixture(scope="module")
def fixture_registry() -> Iterator[tuple[str, bool]]:
    """distribution's registry with the fixture images; full set if built, else the prebuilt two."""
    cache = subprocess.run(["python3", str(IMAGES / "lib/oci_fixtures.py"), "path"], capture_output=True,
                           text=True).stdout.strip()
    full = (Path(cache) / "oci/busybox/index.json").exists() and (Path(cache) / "oci/nginx/index.json").exists()
    port = _free_port()
    args = [str(IMAGES / "serve-registry"), "--port", str(port)] + ([] if full else ["--prebuilt"])
    subprocess.run(args, check=True, capture_output=True, timeout=300)
    yield f"127.0.0.1:{port}", full
    subprocess.run([str(IMAGES / "stop-registry"), "--port", str(port)], capture_output=True)


def _statuses(events: list[dict[str, Any]]) -> list[str]:
    return [e.get("status", "") for e in events]


def test_pull_layered_then_up_to_date(ours: str, tmp_path: Path) -> None:
    async def go() -> None:
        eng = Engine(tmp_path)
        try:
            events = await eng.pull(f"{ours}/library/layered:latest")
            st = _statuses(events)
            assert st[0] == "Pulling from library/layered" and events[0]["id"] == "latest"
            assert st.count("Pull complete") == 3
            assert st[-2].startswith("Digest: sha256:")
            assert st[-1] == f"Status: Downloaded newer image for {ours}/library/layered:latest"
            cfg, diff_ids, tags = eng.images.registered[0]
            assert tags == [f"{ours}/library/layered:latest"] and len(diff_ids) == 3
            assert json.loads(cfg)["config"]["Cmd"] == ["/data/hello.sh"]
            assert eng.images.repo_digests == [f"{ours}/library/layered@{st[-2][len('Digest: '):]}"]
            again = _statuses(await eng.pull(f"{ours}/library/layered"))
            assert again.count("Already exists") == 3
            assert again[-1] == f"Status: Image is up to date for {ours}/library/layered:latest"
        finally:
            await eng.close()
    run(go())


def test_pull_refuses_corrupt_blob(ours: str, tmp_path: Path) -> None:
    reg = tmp_path / "reg"
    blobs = sorted((reg / "blobs/sha256").iterdir(), key=lambda p: p.stat().st_size)
    layer = blobs[-1]  # the biggest blob is the busybox layer
    data = bytearray(layer.read_bytes())
    data[len(data) // 2] ^= 0xFF
    layer.write_bytes(bytes(data))

    async def go() -> None:
        eng = Engine(tmp_path / "engine")
        try:
            with pytest.raises(InvalidParameter, match="digest mismatch"):
                await eng.pull(f"{ours}/library/busybox:latest")
            assert not eng.content.has("sha256:" + layer.name)
            assert eng.snapshots.list() == [] and eng.images.registered == []
            assert list((tmp_path / "engine/content/ingest").iterdir()) == []
        finally:
            await eng.close()
    run(go())


def _upload_layer_image(addr: str, repo: str, raw_tar: bytes, diff_id: str | None = None) -> None:
    """A one-layer image (gzip layer of `raw_tar`) whose config claims `diff_id` (default: the true one)."""
    layer = gzip.compress(raw_tar, mtime=0)
    diff_id = diff_id or "sha256:" + hashlib.sha256(raw_tar).hexdigest()
    config = json.dumps({"architecture": "amd64", "os": "linux", "config": {},
                         "rootfs": {"type": "layers", "diff_ids": [diff_id]}}).encode()

    def desc(mt: str, data: bytes) -> dict[str, Any]:
        return {"mediaType": mt, "digest": "sha256:" + hashlib.sha256(data).hexdigest(), "size": len(data)}
    manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
                           "config": desc("application/vnd.docker.container.image.v1+json", config),
                           "layers": [desc("application/vnd.docker.image.rootfs.diff.tar.gzip", layer)]}).encode()
    with httpx.Client(base_url=f"http://{addr}") as c:
        for data in (config, layer):
            r = c.post(f"/v2/{repo}/blobs/uploads/")
            r = c.put(r.headers["location"], params={"digest": desc("", data)["digest"]}, content=data)
            assert r.status_code == 201, r.text
        r = c.put(f"/v2/{repo}/manifests/1", content=manifest,
                  headers={"content-type": "application/vnd.docker.distribution.manifest.v2+json"})
        assert r.status_code == 201, r.text


def _tar(*members: tuple[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for name, data in members:
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            tf.addfile(ti, io.BytesIO(data))
    return buf.getvalue()


@pytest.mark.parametrize("case", ["wrong-diff-id", "evil-tar"])
def test_streamed_layer_that_fails_leaves_nothing(ours: str, tmp_path: Path, case: str) -> None:
    """A layer is extracted while it downloads; when its content is wrong (the blob digest is right)
    the pull fails with the reason and leaves no snapshot, temp dir or image."""
    big = hashlib.shake_256(case.encode()).digest(3 << 20)  # several chunks through the pipe
    if case == "wrong-diff-id":
        _upload_layer_image(ours, "bad/layer", _tar(("a.bin", big)), "sha256:" + "ab" * 32)
        match = "layer content does not match"
    else:
        _upload_layer_image(ours, "bad/layer", _tar(("a.bin", big), ("../escape", b"x"), ("b.bin", big)))
        match = "invalid layer"

    async def go() -> None:
        eng = Engine(tmp_path / "engine")
        try:
            with pytest.raises(InvalidParameter, match=match):
                await eng.pull(f"{ours}/bad/layer:1")
            assert eng.snapshots.list() == [] and eng.images.registered == []
            assert list((tmp_path / "engine/overlay").iterdir()) == []
            assert list((tmp_path / "engine/content/ingest").iterdir()) == []
        finally:
            await eng.close()
    run(go())
    assert not (tmp_path / "escape").exists() and not (tmp_path / "engine/escape").exists()


def test_push_skip_and_mount(ours: str, tmp_path: Path) -> None:
    async def go() -> None:
        eng = Engine(tmp_path / "engine")
        try:
            await eng.pull(f"{ours}/library/layered:latest")
            cfg = eng.images.registered[0][0]
            ev = await eng.push(f"{ours}/copy/layered:v1", cfg)
            st = _statuses(ev)
            assert st[0] == f"The push refers to repository [{ours}/copy/layered]"
            assert st.count("Mounted from library/layered") == 3
            assert st[-2].startswith("v1: digest: sha256:") and ev[-1]["aux"]["Tag"] == "v1"
            st2 = _statuses(await eng.push(f"{ours}/copy/layered:v2", cfg))
            assert st2.count("Layer already exists") == 3
        finally:
            await eng.close()
    run(go())
    out = subprocess.run(["skopeo", "inspect", "--tls-verify=false", f"docker://{ours}/copy/layered:v1"],
                         check=True, capture_output=True, text=True).stdout
    assert len(json.loads(out)["Layers"]) == 3


def test_push_uploads_to_empty_registry(ours: str, tmp_path: Path) -> None:
    proc, empty = _start(tmp_path / "empty")
    try:
        async def go() -> None:
            eng = Engine(tmp_path / "engine")
            try:
                await eng.pull(f"{ours}/library/busybox:latest")
                st = _statuses(await eng.push(f"{empty}/bb:latest", eng.images.registered[0][0]))
                assert "Pushed" in st and "Pushing" in st
            finally:
                await eng.close()
        run(go())
        subprocess.run(["skopeo", "copy", "--src-tls-verify=false", f"docker://{empty}/bb:latest",
                        f"oci:{tmp_path}/back:latest"], check=True, capture_output=True)
    finally:
        proc.terminate()
        proc.wait(10)


def test_basic_auth_pull(tmp_path: Path) -> None:
    ht = tmp_path / "htpasswd"
    ht.write_text("bob:" + bcrypt.hashpw(b"pw", bcrypt.gensalt(4)).decode() + "\n")
    proc, addr = _start(tmp_path / "reg", "--htpasswd", str(ht))
    try:
        subprocess.run(["skopeo", "copy", "--dest-tls-verify=false", "--dest-creds", "bob:pw",
                        f"oci:{PREBUILT}/busybox:latest", f"docker://{addr}/busybox:latest"],
                       check=True, capture_output=True)

        async def go() -> None:
            eng = Engine(tmp_path / "engine")
            try:
                with pytest.raises(Unauthorized):
                    await eng.pull(f"{addr}/busybox")
                st = _statuses(await eng.pull(f"{addr}/busybox", creds=Credentials("bob", "pw")))
                assert st[-1].startswith("Status: Downloaded newer image")
            finally:
                await eng.close()
        run(go())
    finally:
        proc.terminate()
        proc.wait(10)


def test_mirror_and_platform(fixture_registry: tuple[str, bool], tmp_path: Path) -> None:
    addr, full = fixture_registry

    async def go() -> None:
        eng = Engine(tmp_path, mirrors=[f"http://{addr}"])
        try:
            st = _statuses(await eng.pull("busybox"))
            assert st[0] == "Pulling from library/busybox"
            assert st[-1] == "Status: Downloaded newer image for busybox:latest"
            if full:
                await eng.pull("busybox", platform="linux/arm64")
                cfg = json.loads(eng.images.registered[-1][0])
                assert cfg["architecture"] == "arm64"
                await eng.pull(f"{addr}/library/busybox:oci-index", platform="linux/arm/v7")
                cfg = json.loads(eng.images.registered[-1][0])
                assert (cfg["architecture"], cfg.get("variant")) == ("arm", "v7")
        finally:
            await eng.close()
    run(go())


async def _collect(it: AsyncIterator[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e async for e in it]


def test_registry_auth_header_decoding() -> None:
    from dockyard.registry.client.auth import decode_registry_auth

    raw = json.dumps({"username": "u", "password": "p", "serveraddress": "x"}).encode()
    assert decode_registry_auth(base64.urlsafe_b64encode(raw).decode().rstrip("=")) == Credentials("u", "p")
    assert not decode_registry_auth("!!!")


def test_bearer_token_flow(ours: str, tmp_path: Path) -> None:
    """A token server plus a registry front that wants `Bearer <token>` (the Docker Hub flow)."""
    from dockyard.http.messages import Request, Response
    from dockyard.http.server import Server
    from dockyard.registry.server.handlers import Registry, registry_site

    seen_scopes: list[str] = []

    async def go() -> None:
        ports: dict[str, int] = {}

        async def token(req: Request) -> Response:
            if req.headers.get("authorization") != "Basic " + base64.b64encode(b"bob:pw").decode():
                return Response(401, {}, b"{}")
            seen_scopes.append(req.q("scope") or "")
            return Response(200, {"content-type": "application/json"}, b'{"token": "T0K"}')

        inner = Registry(tmp_path / "reg")

        async def front(req: Request) -> Response:
            if req.headers.get("authorization") != "Bearer T0K":
                realm = f"http://127.0.0.1:{ports['token']}/token"
                return Response(401, {"www-authenticate": f'Bearer realm="{realm}",service="test"'}, b"{}")
            return await inner(req)

        servers = {"token": Server(registry_site(token)), "front": Server(registry_site(front))}
        for name, srv in servers.items():
            await srv.listen_tcp("127.0.0.1", 0)
            ports[name] = srv.sockets[0].getsockname()[1]
        eng = Engine(tmp_path / "engine")
        try:
            target = f"127.0.0.1:{ports['front']}/library/busybox"
            with pytest.raises(Unauthorized):
                await eng.pull(target)
            st = _statuses(await eng.pull(target, creds=Credentials("bob", "pw")))
            assert st[-1].startswith("Status: Downloaded newer image")
        finally:
            await eng.close()
            for srv in servers.values():
                await srv.close()
    run(go())
    assert seen_scopes and seen_scopes[0] == "repository:library/busybox:pull"


def test_api_pull_push_and_distribution_inspect(ours: str, tmp_path: Path) -> None:
    """The Engine API handlers (api/distribution.py) over the Distribution facade."""
    from dockyard.api import distribution as api
    from dockyard.http.messages import Request
    from dockyard.http.routing import Router
    from dockyard.registry.service import Distribution

    async def body(resp: Any) -> list[dict[str, Any]]:
        return [json.loads(line) async for chunk in resp.body for line in chunk.decode().splitlines()]

    async def go() -> None:
        eng = Engine(tmp_path / "engine")
        dist = Distribution(eng.client, eng.content, eng.snapshots, eng.images, eng.layermap)
        router = Router()
        router.include(api.DistributionRoutes(dist).routes())
        try:
            with pytest.raises(NotFound, match="manifest unknown"):
                await api.pull_stream(Request("POST", "/images/create",
                                              query={"fromImage": [f"{ours}/library/busybox"], "tag": ["nope"]}),
                                      dist)
            resp = await api.pull_stream(Request("POST", "/images/create",
                                                 query={"fromImage": [f"{ours}/library/busybox"], "tag": ["latest"]}),
                                         dist)
            events = await body(resp)
            assert events[-1]["status"].startswith("Status: Downloaded newer image")
            handler, params = router.match("GET", f"/distribution/{ours}/library/busybox/json")
            info = json.loads((await handler(Request("GET", "/", params=params))).body)
            assert info["Platforms"] == [{"architecture": "amd64", "os": "linux"}]
            assert info["Descriptor"]["digest"] == events[-2]["status"].split()[-1]
        finally:
            await eng.close()
    run(go())
