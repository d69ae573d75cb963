"""The real docker CLI's classic builder (DOCKER_BUILDKIT=0) against POST /build, served by our HTTP
server with the build and image routes only (RUN needs the container core; see test_build_daemon)."""

from __future__ import annotations

import asyncio
import io
import os
import shutil
import subprocess
import tarfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dockyard.api import build as build_api
from dockyard.api import images as images_api
from dockyard.api.server import Request, Response, Router, json_response, serve
from dockyard.builder.builder import Builder
from dockyard.services.events import EventBus
from dockyard.services.images import ImageService
from dockyard.store.content import ContentStore
from dockyard.store.db import Database
from dockyard.store.snapshots import Snapshotter
from tests.conftest import SHARED

DOCKER = shutil.which("docker") or "/usr/local/bin/docker"
pytestmark = pytest.mark.skipif(os.geteuid() != 0 or not os.path.exists(DOCKER), reason="needs root + docker CLI")
PREBUILT = SHARED / "images" / "prebuilt"


def layout_tar(layout: Path) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for p in sorted(layout.rglob("*")):
            if p.name != "fixture.json":
                tf.add(p, arcname=str(p.relative_to(layout)), recursive=False)
    return buf.getvalue()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    root = tmp_path_factory.mktemp("buildapi")
    db = Database(root / "dockyard.db")
    images = ImageService(db, ContentStore(root / "content"), Snapshotter(root / "overlay"), EventBus())
    asyncio.run(images.load(io.BytesIO(layout_tar(PREBUILT / "busybox"))))
    images.tag(images.all()[0].id, "busybox", "latest")
    builder = Builder(db, images, None, root / "build")
    router = Router()

    async def ping(req: Request) -> Response:
        return Response(200, {"API-Version": "1.47", "Content-Type": "text/plain"}, b"OK")

    async def version(req: Request) -> Response:
        return json_response({"Version": "28.0.0", "ApiVersion": "1.47", "MinAPIVersion": "1.24", "Os": "linux",
                              "Arch": "amd64"})

    router.add("GET", "/_ping", ping)
    router.add("HEAD", "/_ping", ping)
    router.add("GET", "/version", version)
    router.include(build_api.BuildRoutes(builder).routes())
    router.include(images_api.ImageRoutes(images, None).routes())
    sock = root / "d.sock"
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    holder: dict[str, Any] = {}

    def run() -> None:
        asyncio.set_event_loop(loop)
        holder["srv"] = loop.run_until_complete(serve(router, [f"unix://{sock}"], socket_group=None))
        ready.set()
        loop.run_forever()

    t = threading.Thread(target=run, daemon=True)
    t.start()
    ready.wait(10)
    env = {**os.environ, "DOCKER_HOST": f"unix://{sock}", "DOCKER_BUILDKIT": "0",
           "DOCKER_CONFIG": str(root / "cfg")}
    env.pop("DOCKER_CONTEXT", None)
    yield env, root
    asyncio.run_coroutine_threadsafe(holder["srv"].close(), loop).result(10)
    loop.call_soon_threadsafe(loop.stop)
    t.join(10)
    db.close()


def docker(env: dict[str, str], *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    p = subprocess.run([DOCKER, *args], env=env, capture_output=True, text=True, timeout=120)
    if check and p.returncode:
        raise AssertionError(f"docker {args} -> {p.returncode}\n{p.stdout}\n{p.stderr}")
    return p


def test_cli_classic_build(server: Any, tmp_path: Path) -> None:
    env, root = server
    (tmp_path / "Dockerfile").write_text(
        "FROM busybox AS src\nCOPY data.txt /d/\nFROM busybox\nLABEL a=b\n"
        "COPY --from=src /d/data.txt /data.txt\nCMD [\"cat\", \"/data.txt\"]\n")
    (tmp_path / "data.txt").write_text("payload\n")
    (tmp_path / "ignored.txt").write_text("nope\n")
    (tmp_path / ".dockerignore").write_text("ignored.txt\n")
    iid = tmp_path / "iid"
    t0 = time.monotonic()
    p = docker(env, "build", "-t", "app:1", "-t", "app:2", "--iidfile", str(iid), "--label", "x=y", str(tmp_path))
    cold = time.monotonic() - t0
    assert "Step 1/7 : FROM busybox AS src" in p.stdout and "Step 7/7 : LABEL x=y" in p.stdout, p.stdout  # --label is a step, as in dockerd
    assert "Successfully tagged app:1" in p.stdout and "Successfully tagged app:2" in p.stdout
    image_id = iid.read_text().strip()
    assert image_id.startswith("sha256:")
    t0 = time.monotonic()
    p2 = docker(env, "build", "-q", "-t", "app:1", "--label", "x=y", str(tmp_path))
    cached = time.monotonic() - t0
    assert p2.stdout.strip() == image_id
    print(f"CLI cold {cold:.3f}s cached {cached:.3f}s")
    labels = docker(env, "image", "inspect", "-f", "{{json .Config.Labels}}", "app:2").stdout
    assert '"x":"y"' in labels and '"a":"b"' in labels

    (tmp_path / "Dockerfile").write_text("FROM busybox\nCOPY ignored.txt /\n")
    bad = docker(env, "build", str(tmp_path), check=False)
    assert bad.returncode != 0 and "file not found in build context" in bad.stderr

    (tmp_path / "Dockerfile").write_text("FROM busybox\n\nBOGUS x\n")
    bad = docker(env, "build", str(tmp_path), check=False)
    assert "Dockerfile parse error line 3: unknown instruction: BOGUS" in bad.stderr
