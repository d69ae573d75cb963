"""The builder against a real ImageService, overlay mounts and the build cache (no daemon, no RUN):
multi-stage COPY --from, cache hits, mtime-insensitivity, content change, --no-cache, errors."""

from __future__ import annotations

import asyncio
import io
import os
import tarfile
import time
from pathlib import Path
from typing import Any

import pytest

from dockyard.builder.builder import Builder, BuildOptions
from dockyard.errors import DockyardError
from dockyard.services.events import EventBus
from dockyard.services.images import ImageService
from dockyard.store.content import ContentStore
from dockyard.store.db import Database
from dockyard.store.snapshots import Snapshotter
from tests.conftest import SHARED

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")
PREBUILT = SHARED / "images" / "prebuilt"


def layout_tar(layout: Path) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for p in sorted(layout.rglob("*")):
            if p.name != "fixture.json":
                tf.add(p, arcname=str(p.relative_to(layout)), recursive=False)
    return buf.getvalue()


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Any:
    root = tmp_path_factory.mktemp("build")
    db = Database(root / "dockyard.db")
    images = ImageService(db, ContentStore(root / "content"), Snapshotter(root / "overlay"), EventBus())
    asyncio.run(images.load(io.BytesIO(layout_tar(PREBUILT / "busybox"))))
    busybox = images.all()[0].id
    images.tag(busybox, "busybox", "latest")
    builder = Builder(db, images, None, root / "build")
    yield images, builder, root
    db.close()


def ctx_tar(files: dict[str, bytes | str], mtime: float | None = None) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for name, data in files.items():
            b = data.encode() if isinstance(data, str) else data
            ti = tarfile.TarInfo(name)
            ti.size = len(b)
            ti.mode = 0o644
            ti.mtime = int(mtime or time.time())
            tf.addfile(ti, io.BytesIO(b))
    return buf.getvalue()


def build(builder: Builder, tar: bytes, **kw: Any) -> list[dict[str, Any]]:
    async def body() -> Any:
        for i in range(0, len(tar), 4096):
            yield tar[i:i + 4096]

    async def run() -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        try:
            async for m in builder.build(body(), BuildOptions(**kw)):
                out.append(m)
        except DockyardError as e:  # failed before any step: the API answers with an HTTP status
            assert not out and e.status in (400, 500)
            out.append({"errorDetail": {"message": e.message}, "error": e.message, "status": e.status})
        return out

    return asyncio.run(run())


def text(msgs: list[dict[str, Any]]) -> str:
    return "".join(m.get("stream", "") for m in msgs)


def final_id(msgs: list[dict[str, Any]]) -> str:
    ids = [m["aux"]["ID"] for m in msgs if "aux" in m]
    assert ids, msgs
    return str(ids[-1])


DOCKERFILE = """\
ARG BASE=busybox
FROM $BASE AS one
COPY a.txt /one/
LABEL stage=one
FROM busybox AS two
WORKDIR /srv
COPY b.txt .
FROM scratch AS unused
COPY a.txt /
FROM ${BASE}
ARG GREETING=hi
ENV MSG="$GREETING there" OTHER=${UNSET:-dflt}
COPY --from=one /one/a.txt /final/a.txt
COPY --from=two --chmod=600 /srv/b.txt /final/
COPY <<EOF /final/heredoc.txt
msg=$MSG
EOF
CMD ["cat", "/final/a.txt"]
"""


def files(root: Path, image_id: str, images: ImageService) -> dict[str, Path]:
    out = {}
    for d in images.layer_dirs(image_id):
        for p in d.rglob("*"):
            out["/" + str(p.relative_to(d))] = p
    return out


def test_multistage_cache_and_invalidation(env: Any) -> None:
    images, builder, root = env
    ctx = {"Dockerfile": DOCKERFILE, "a.txt": "A\n", "b.txt": "B\n"}
    t0 = time.monotonic()
    msgs = build(builder, ctx_tar(ctx), tags=["built:1"], buildargs={"GREETING": "hello"})
    cold = time.monotonic() - t0
    assert not any("error" in m for m in msgs), [m for m in msgs if "error" in m]
    out = text(msgs)
    assert "Step 1/" in out and "Successfully built" in out and "Successfully tagged built:1" in out
    assert "COPY a.txt /\n" not in out  # the unused stage is not built
    img = images.resolve("built:1")
    assert img.config["config"]["Env"][-2:] == ["MSG=hello there", "OTHER=dflt"]
    assert img.config["config"]["Cmd"] == ["cat", "/final/a.txt"]
    hist = img.config["history"]
    assert hist[-1]["empty_layer"] and "CMD" in hist[-1]["created_by"]
    fs = files(root, img.id, images)
    assert fs["/final/a.txt"].read_text() == "A\n"
    assert fs["/final/b.txt"].stat().st_mode & 0o777 == 0o600
    assert fs["/final/heredoc.txt"].read_text() == "msg=hello there\n"

    # unchanged rebuild, with every mtime touched: all from cache, same id
    t0 = time.monotonic()
    msgs2 = build(builder, ctx_tar(ctx, mtime=time.time() + 100), buildargs={"GREETING": "hello"})
    cached = time.monotonic() - t0
    print(f"cold {cold:.3f}s cached {cached:.3f}s")
    assert final_id(msgs2) == img.id
    assert "Using cache" in text(msgs2)

    # content change of b.txt: stage two's COPY and the final COPY --from=two rerun
    msgs3 = build(builder, ctx_tar({**ctx, "b.txt": "B2\n"}), buildargs={"GREETING": "hello"})
    new = final_id(msgs3)
    assert new != img.id
    assert files(root, new, images)["/final/b.txt"].read_text() == "B2\n"

    # rewritten in the same second with the same size (an identical tar header): still a change
    t = int(time.time())
    build(builder, ctx_tar({**ctx, "b.txt": "B3\n"}, mtime=t), buildargs={"GREETING": "hello"})
    msgs_r = build(builder, ctx_tar({**ctx, "b.txt": "B4\n"}, mtime=t), buildargs={"GREETING": "hello"})
    assert files(root, final_id(msgs_r), images)["/final/b.txt"].read_text() == "B4\n"

    # --no-cache builds anew
    msgs4 = build(builder, ctx_tar(ctx), nocache=True, buildargs={"GREETING": "hello"})
    assert "Using cache" not in text(msgs4) and final_id(msgs4) != img.id

    # the target stage only
    msgs5 = build(builder, ctx_tar(ctx), target="two")
    assert "COPY --from" not in text(msgs5)
    assert builder.cache.entries()
    assert not list((root / "build").glob("tmp-*"))


@pytest.mark.parametrize("dockerfile,extra,msg", [
    ("FROM busybox\nRUN true\nFOO bar\n", {}, "Dockerfile parse error line 3: unknown instruction: FOO"),
    ("FROM busybox\nCOPY ../etc/passwd /x\n", {}, "Forbidden path outside the build context: ../etc/passwd"),
    ("FROM busybox\nCOPY missing.txt /x\n", {}, "file not found in build context"),
    ("FROM busybox\nCOPY link /x\n", {"link": "symlink:/etc/passwd"}, "file not found in build context"),  # scoped
    ("FROM nosuchimage\n", {}, "pull access denied for nosuchimage"),
])
def test_errors(env: Any, dockerfile: str, extra: dict[str, str], msg: str) -> None:
    _, builder, root = env
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for name, data in {"Dockerfile": dockerfile, **extra}.items():
            ti = tarfile.TarInfo(name)
            if data.startswith("symlink:"):
                ti.type, ti.linkname = tarfile.SYMTYPE, data[8:]
                tf.addfile(ti)
            else:
                ti.size = len(data)
                tf.addfile(ti, io.BytesIO(data.encode()))
    msgs = build(builder, buf.getvalue())
    errs = [m for m in msgs if "error" in m]
    assert errs and msg in errs[0]["error"], msgs
    assert errs[0]["errorDetail"]["message"] == errs[0]["error"]
    assert not list((root / "build").glob("tmp-*"))


def test_add_tar_chown_wildcards(env: Any) -> None:
    images, builder, root = env
    inner = ctx_tar({"x/inside.txt": "in\n"})
    ctx = {"Dockerfile": "FROM busybox\nADD bundle.tar /opt/\nCOPY --chown=1000:2000 *.cfg /etc/app/\n"
                         "COPY dir/ /d\nONBUILD RUN true\nHEALTHCHECK --interval=5s CMD true\n",
           "bundle.tar": inner, "one.cfg": "1", "two.cfg": "2", "skip.txt": "s", "dir/sub/f": "f"}
    msgs = build(builder, ctx_tar(ctx))
    iid = final_id(msgs)
    fs = files(root, iid, images)
    assert fs["/opt/x/inside.txt"].read_text() == "in\n"
    st = fs["/etc/app/one.cfg"].stat()
    assert (st.st_uid, st.st_gid) == (1000, 2000) and "/etc/app/two.cfg" in fs and "/etc/app/skip.txt" not in fs
    assert fs["/d/sub/f"].read_text() == "f"
    cfg = images.get(iid).config["config"]
    assert cfg["OnBuild"] == ["RUN true"]
    assert cfg["Healthcheck"] == {"Test": ["CMD-SHELL", "true"], "Interval": 5_000_000_000}
