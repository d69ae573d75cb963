"""Issue 21, the filesystem side: each test mounts an attack through the real docker CLI (or the
API) against our daemon and checks it fails. Races run long enough to have caught the bug before
the fix (docs/STATUS.md, "Security (issue 21)", says how often they did).

Busybox has no renameat2, so the racer (tests/data/racer.c) is built static with gcc at test time
and `docker cp`'d into the container.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ROOT, Daemon, static_binary

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (real containers)")

SECRET = "HOSTSECRET"
SECRET_DATA = b"the host's own bytes, 4d1c0f"


@pytest.fixture(scope="module")
def racer(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return static_binary("racer", tmp_path_factory.mktemp("racer"))


@pytest.fixture()
def host_dir() -> Iterator[Path]:
    """A host directory an attack aims at: it holds SECRET and must end up as it started."""
    d = Path(tempfile.mkdtemp(prefix="secfs-host-", dir="/tmp"))
    (d / SECRET).write_bytes(SECRET_DATA)
    os.chmod(d, 0o700)
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


def build(d: Daemon, ctx: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[bytes]:
    env = {**d.env, "DOCKER_BUILDKIT": "0"}
    p = subprocess.run(["docker", "build", *args, str(ctx)], env=env, capture_output=True, timeout=300)
    if check and p.returncode != 0:
        raise AssertionError(f"build failed: {p.stdout.decode()[-2000:]}\n{p.stderr.decode()[-2000:]}")
    return p


# -- 1. COPY through links the image holds ---------------------------------------------------------

@pytest.mark.parametrize("link", ["absolute", "relative", "base-image"])
def test_copy_never_writes_through_the_images_links(clean_daemon: Daemon, tmp_path: Path, host_dir: Path,
                                                    link: str) -> None:
    d = clean_daemon
    target = str(host_dir) if link != "relative" else "../" * 20 + str(host_dir).lstrip("/")
    tag = f"secfs-copy-{uuid.uuid4().hex[:8]}"
    ctx = tmp_path / "ctx"
    (ctx / "src/sub").mkdir(parents=True)
    (ctx / "src/sub/evil").write_text("pwned")
    os.chmod(ctx / "src/sub", 0o777)
    setup = f"RUN mkdir /app && ln -s {target} /app/sub\n"
    try:
        if link == "base-image":  # a hostile base image is enough: the Dockerfile only copies
            base = tmp_path / "base"
            base.mkdir()
            (base / "Dockerfile").write_text("FROM busybox\n" + setup)
            build(d, base, "-t", tag + "-base")
            (ctx / "Dockerfile").write_text(f"FROM {tag}-base\nCOPY src/ /app/\n")
        else:
            (ctx / "Dockerfile").write_text("FROM busybox\n" + setup + "COPY src/ /app/\n")
        build(d, ctx, "-t", tag)
        assert sorted(os.listdir(host_dir)) == [SECRET], "COPY wrote onto the host"
        assert os.stat(host_dir).st_mode & 0o777 == 0o700, "COPY chmod'ed a host directory"
        # As dockerd's copy does: the link in the way is replaced by the directory copied.
        out = d.docker("run", "--rm", tag, "sh", "-c", "test -L /app/sub || cat /app/sub/evil").stdout
        assert out == b"pwned"
    finally:
        d.docker("rmi", "-f", tag, tag + "-base", check=False)


# -- 2. export and commit while the container swaps links in ---------------------------------------

class Racing:
    """A running container exchanging /x/dN (a directory holding its own SECRET file) with /x/lN
    (a link to `host`) in a loop, and creating and unlinking files in /zchurn (walked after /x)."""

    PAIRS = 20

    def __init__(self, d: Daemon, racer: Path, host: Path) -> None:
        self.d = d
        self.name = f"racing-{uuid.uuid4().hex[:8]}"
        d.docker("run", "-d", "--name", self.name, "busybox", "sleep", "600")
        d.docker("cp", str(racer), f"{self.name}:/racer")
        d.docker("exec", self.name, "mkdir", "/x", "/zchurn")
        d.docker("exec", "-d", self.name, "/racer", "swap", "/x", str(self.PAIRS), str(host), SECRET)
        d.docker("exec", "-d", self.name, "/racer", "churn", "/zchurn")
        deadline = time.monotonic() + 60
        want = f"l{self.PAIRS - 1}"
        while want not in d.docker("exec", self.name, "ls", "/x").stdout.decode().split():
            assert time.monotonic() < deadline, "the racer did not start"
            time.sleep(0.1)


def _tar_problem(data: bytes) -> str | None:
    """Why `data` is not a whole tar (every member's data readable), or None."""
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tf:
            for m in tf:
                if m.isreg():
                    f = tf.extractfile(m)
                    assert f is not None
                    if len(f.read()) != m.size:
                        return f"{m.name}: short"
    except (tarfile.TarError, EOFError, OSError) as e:
        return str(e)
    return None


def _names(data: bytes) -> list[str]:
    """The member names of a tar, as far as it can be read."""
    names: list[str] = []
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r|") as tf:
            for m in tf:
                names.append(m.name)
    except (tarfile.TarError, EOFError, OSError):
        pass
    return names


def _leaked(data: bytes) -> bool:
    """Whether the host's file got into a tar (by its bytes: the container's files of that name,
    under either name of a pair, hold none)."""
    return SECRET_DATA in data


EXPORTS = 30


def test_export_reads_by_fd_while_links_are_swapped(clean_daemon: Daemon, racer: Path, host_dir: Path) -> None:
    d = clean_daemon
    r = Racing(d, racer, host_dir)
    leaked = broken = 0
    for _ in range(EXPORTS):
        p = d.docker("export", r.name, check=False)
        broken += p.returncode != 0 or _tar_problem(p.stdout) is not None
        leaked += _leaked(p.stdout)  # a broken stream counts too, up to where it broke
    assert (leaked, broken) == (0, 0), f"of {EXPORTS} exports {leaked} held the host's files, {broken} broke"


COMMITS = 20


def _last_layer(d: Daemon, image: str) -> bytes:
    saved = d.docker("save", image).stdout
    with tarfile.open(fileobj=io.BytesIO(saved)) as outer:
        f = outer.extractfile("manifest.json")
        assert f is not None
        blob = outer.extractfile(json.loads(f.read())[0]["Layers"][-1])
        assert blob is not None
        return blob.read()


def test_commit_without_pause_reads_by_fd(clean_daemon: Daemon, racer: Path, host_dir: Path) -> None:
    d = clean_daemon
    r = Racing(d, racer, host_dir)
    leaked = broken = 0
    tag = f"secfs-commit-{uuid.uuid4().hex[:8]}"
    try:
        for i in range(COMMITS):
            p = d.docker("commit", "-p=false", r.name, f"{tag}:{i}", check=False)
            if p.returncode != 0:
                broken += 1
                continue
            layer = _last_layer(d, f"{tag}:{i}")
            leaked += _leaked(layer)
            assert "x/d0" in _names(layer)
            d.docker("rmi", f"{tag}:{i}")
    finally:
        for i in range(COMMITS):
            d.docker("rmi", "-f", f"{tag}:{i}", check=False)
    assert (leaked, broken) == (0, 0), f"of {COMMITS} commits {leaked} held the host's files, {broken} failed"


def test_commit_keeps_a_socket_out(clean_daemon: Daemon) -> None:
    """A unix socket in the container's upper dir is left out of the layer, as tar does (it used to
    fail the commit)."""
    d = clean_daemon
    name = f"sock-{uuid.uuid4().hex[:8]}"
    d.docker("run", "-d", "--name", name, "busybox", "sleep", "600")
    d.docker("exec", name, "mkdir", "/s")
    # busybox cannot listen on a unix socket; bind one in the container's upper dir from here
    cid = d.docker("inspect", "-f", "{{.Id}}", name).stdout.decode().strip()
    upper = next(d.data_root.rglob(f"{cid}/upper"))
    s = socket.socket(socket.AF_UNIX)
    dfd = os.open(upper / "s", os.O_RDONLY | os.O_DIRECTORY)
    try:
        s.bind(f"/proc/self/fd/{dfd}/sock")  # the full path is longer than sun_path
    finally:
        os.close(dfd)
    try:
        d.docker("commit", name, "secfs-sock:1")
        assert "s/sock" not in _names(_last_layer(d, "secfs-sock:1"))
    finally:
        s.close()
        d.docker("rmi", "-f", "secfs-sock:1", check=False)


# -- 3. a loaded archive claiming another image's layer --------------------------------------------

def _saved_layers(d: Daemon, image: str) -> list[str]:
    """sha256 of each layer blob `docker save` sends."""
    saved = d.docker("save", image).stdout
    with tarfile.open(fileobj=io.BytesIO(saved)) as tf:
        f = tf.extractfile("manifest.json")
        assert f is not None
        out = []
        for name in json.loads(f.read())[0]["Layers"]:
            b = tf.extractfile(name)
            assert b is not None
            out.append(hashlib.sha256(b.read()).hexdigest())
        return out


def _tar_bytes(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for name, data in files.items():
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            ti.mode = 0o755
            tf.addfile(ti, io.BytesIO(data))
    return buf.getvalue()


def poison_archive(diff_id: str, below: str) -> bytes:
    """A docker-archive whose config claims the layer `diff_id` but whose layer holds an evil
    bin/busybox; its blob digest sorts before `below`, the real blob's (the first row wins)."""
    for n in range(100_000):
        layer = _tar_bytes({"bin/busybox": b"#!/bin/sh\necho evil " + str(n).encode() + b"\n"})
        if hashlib.sha256(layer).hexdigest() < below:
            break
    config = json.dumps({"architecture": "amd64", "os": "linux", "config": {},
                         "rootfs": {"type": "layers", "diff_ids": [diff_id]}}).encode()
    ldigest = hashlib.sha256(layer).hexdigest()
    manifest = json.dumps([{"Config": "config.json", "RepoTags": ["secfs-poison:latest"],
                            "Layers": [f"blobs/sha256/{ldigest}"]}]).encode()
    return _tar_bytes({"config.json": config, f"blobs/sha256/{ldigest}": layer, "manifest.json": manifest})


def test_load_cannot_claim_another_images_layer(clean_daemon: Daemon) -> None:
    d = clean_daemon
    diff_id = json.loads(d.docker("inspect", "busybox").stdout)[0]["RootFS"]["Layers"][0]
    before = _saved_layers(d, "busybox")
    p = d.docker("load", input=poison_archive(diff_id, before[0]), check=False)
    try:
        assert _saved_layers(d, "busybox") == before, "busybox's saved layer is the archive's"
        # dockerd 20.10 loads it and maps it onto its own busybox layer (it never checks a layer it
        # has); we refuse, in the words dockerd uses when it does check.
        assert p.returncode != 0
        assert f'invalid diffID for layer 0: expected "{diff_id}", got "sha256:' in p.stderr.decode()
    finally:
        d.docker("rmi", "-f", "secfs-poison", check=False)


# -- 4. malformed and sparse archives ---------------------------------------------------------------

OCI_LAYOUT = b'{"imageLayoutVersion":"1.0.0"}'
MALFORMED = {
    "not-a-tar": b"not a tar at all\n" * 100,
    "truncated": _tar_bytes({"a": b"x" * 5000, "b": b"y" * 3000})[:2560],
    "gzip-garbage": b"\x1f\x8b\x08\x00" + bytes(6) + b"garbage" * 50,
    # load only: an archive whose index or manifest is not what it says
    "index-not-an-object": _tar_bytes({"index.json": b"[]", "oci-layout": OCI_LAYOUT}),
    "index-bad-digest": _tar_bytes({"index.json": b'{"manifests": [{"digest": 5}]}', "oci-layout": OCI_LAYOUT}),
    "manifest-not-a-list": _tar_bytes({"manifest.json": b'{"Config": 1}'}),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_archives_answer_400(clean_daemon: Daemon, case: str) -> None:
    """A clear message, never Python's words or a 500. load answers as dockerd 20.10 does, 200 with
    the error in the stream (docker-py raises ImageLoadError on it); import and PUT archive answer
    400, the client's fault, where dockerd says 500 ("Error processing tar file(exit status 1): ...")."""
    d = clean_daemon
    body = MALFORMED[case]
    tar = {"Content-Type": "application/x-tar"}
    with d.api() as c:
        cid = c.post("/containers/create", json={"Image": "busybox", "Cmd": ["true"]}).json()["Id"]
        try:
            answers = {"load": c.post("/images/load", content=body, headers=tar)}
            if not case.startswith(("index", "manifest")):
                answers["import"] = c.post("/images/create", params={"fromSrc": "-", "repo": "secfs-bad"},
                                           content=body, headers=tar)
                answers["put"] = c.put(f"/containers/{cid}/archive", params={"path": "/tmp"}, content=body,
                                       headers=tar)
        finally:
            c.delete(f"/containers/{cid}", params={"force": "1"})
    load = answers.pop("load")
    assert load.status_code == 200, load.text
    msg = json.loads(load.text.strip().splitlines()[-1])["errorDetail"]["message"]
    assert msg.startswith(("invalid ", "Error processing tar file(exit status 1): ")), msg
    for what, r in answers.items():
        assert r.status_code == 400, f"{what}: {r.status_code} {r.text}"
        assert r.json()["message"].startswith("invalid "), f"{what}: {r.text}"


def _sparse_tar(tmp: Path, name: str, size: int) -> bytes:
    """A GNU tar (a few KB) of a `size`-byte file that is all hole but b"data" at 100,000,000."""
    f = tmp / name
    with open(f, "wb") as out:
        out.truncate(size)
        out.seek(100_000_000)
        out.write(b"data")
    subprocess.run(["tar", "--sparse", "-cf", str(tmp / "s.tar"), "-C", str(tmp), name], check=True)
    f.unlink()
    return (tmp / "s.tar").read_bytes()


def _assert_sparse(p: Path, size: int) -> None:
    st = p.stat()
    assert st.st_size == size
    assert st.st_blocks * 512 < 1 << 20, f"{st.st_blocks * 512} bytes of real blocks for {size} of holes"
    with open(p, "rb") as f:
        f.seek(100_000_000 - 2)
        assert f.read(8) == b"\0\0data\0\0"


def test_sparse_members_keep_their_holes(clean_daemon: Daemon, tmp_path: Path) -> None:
    d = clean_daemon
    name, size = f"sparse-{uuid.uuid4().hex[:8]}", 512 << 20
    body = _sparse_tar(tmp_path, name, size)
    assert len(body) < 64 << 10
    ctr = d.docker("create", "busybox", "true").stdout.decode().strip()
    try:
        d.docker("import", "-", "secfs-sparse", input=body)
        _assert_sparse(next((d.data_root / "overlay").glob(f"*/fs/{name}")), size)
        d.docker("cp", "-", f"{ctr}:/tmp", input=body)
        _assert_sparse(d.data_root / "containers" / ctr / "upper/tmp" / name, size)
    finally:
        d.docker("rm", "-f", ctr, check=False)
        d.docker("rmi", "-f", "secfs-sparse", check=False)


def test_sparse_expansion_is_capped(clean_daemon: Daemon, tmp_path: Path) -> None:
    """A 10 KB tar holding a 2 GiB sparse file: refused beyond 1 GiB of holes (store/layers.py
    MAX_HOLES says why); dockerd writes all 2 GiB out."""
    d = clean_daemon
    body = _sparse_tar(tmp_path, "big", 2 << 30)
    ctr = d.docker("create", "busybox", "true").stdout.decode().strip()
    try:
        p = d.docker("import", "-", "secfs-sparse-big", input=body, check=False)
        assert p.returncode != 0 and b"archive too sparse" in p.stderr, p.stderr
        p = d.docker("cp", "-", f"{ctr}:/tmp", input=body, check=False)
        assert p.returncode != 0 and b"archive too sparse" in p.stderr, p.stderr
        assert not (d.data_root / "containers" / ctr / "upper/tmp/big").exists() or \
            (d.data_root / "containers" / ctr / "upper/tmp/big").stat().st_blocks * 512 < 1 << 20
    finally:
        d.docker("rm", "-f", ctr, check=False)
        d.docker("rmi", "-f", "secfs-sparse-big", check=False)


# -- 5. cp of the files the runtime binds in ---------------------------------------------------------

def _cp_out(d: Daemon, src: str) -> bytes:
    with tarfile.open(fileobj=io.BytesIO(d.docker("cp", src, "-").stdout)) as tf:
        m = tf.next()
        assert m is not None
        f = tf.extractfile(m)
        assert f is not None
        return f.read()


def test_cp_reads_the_etc_files_the_container_sees(clean_daemon: Daemon, tmp_path: Path) -> None:
    d = clean_daemon
    name = f"hn-{uuid.uuid4().hex[:8]}"
    d.docker("run", "-d", "--name", name, "--hostname", "secfs-host", "busybox", "sleep", "300")
    seen = {f: d.docker("exec", name, "cat", f).stdout for f in ("/etc/hostname", "/etc/hosts", "/etc/resolv.conf")}
    assert seen["/etc/hostname"] == b"secfs-host\n"
    for f, data in seen.items():
        assert _cp_out(d, f"{name}:{f}") == data, f
    d.docker("stop", "-t", "0", name)
    assert _cp_out(d, f"{name}:/etc/hostname") == b"secfs-host\n"  # dockerd: the same once stopped
    d.docker("start", name)
    (tmp_path / "hostname").write_text("other\n")
    p = d.docker("cp", str(tmp_path / "hostname"), f"{name}:/etc/hostname", check=False)
    assert p.returncode != 0 and b"unlinkat /etc/hostname: device or resource busy" in p.stderr  # as dockerd
    assert d.docker("exec", name, "cat", "/etc/hostname").stdout == b"secfs-host\n"


def _registry_put(base: str, repo: str, blobs: list[bytes], manifests: dict[str, bytes]) -> None:
    import httpx

    with httpx.Client(base_url=f"http://{base}", timeout=60) as c:
        for blob in blobs:
            loc = c.post(f"/v2/{repo}/blobs/uploads/").headers["Location"]
            digest = "sha256:" + hashlib.sha256(blob).hexdigest()
            r = c.put(loc, params={"digest": digest}, content=blob,
                      headers={"Content-Type": "application/octet-stream"})
            assert r.status_code == 201, r.text
        for tag, m in manifests.items():
            r = c.put(f"/v2/{repo}/manifests/{tag}", content=m,
                      headers={"Content-Type": "application/vnd.docker.distribution.manifest.v2+json"})
            assert r.status_code == 201, r.text


def test_pull_cannot_claim_another_images_layer(clean_daemon: Daemon, tmp_path: Path) -> None:
    """A registry serves evil:a (a layer of its own, pulled for real) and evil:b, whose config claims
    busybox's diff_id for that same blob. Pulling b fetches nothing (the layer is here), so nothing
    ties the blob to busybox's layer: recording the pair made `save busybox` send the attacker's."""
    d = clean_daemon
    diff_id = json.loads(d.docker("inspect", "busybox").stdout)[0]["RootFS"]["Layers"][0]
    before = _saved_layers(d, "busybox")
    for n in range(100_000):
        raw = _tar_bytes({"bin/busybox": b"#!/bin/sh\necho evil " + str(n).encode() + b"\n"})
        gz = gzip.compress(raw, mtime=0)
        if hashlib.sha256(gz).hexdigest() < before[0]:
            break
    own_diff = "sha256:" + hashlib.sha256(raw).hexdigest()

    def image(diff: str) -> tuple[bytes, bytes]:
        config = json.dumps({"architecture": "amd64", "os": "linux", "config": {},
                             "rootfs": {"type": "layers", "diff_ids": [diff]}}).encode()
        manifest = json.dumps({
            "schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
            "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "size": len(config),
                       "digest": "sha256:" + hashlib.sha256(config).hexdigest()},
            "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "size": len(gz),
                        "digest": "sha256:" + hashlib.sha256(gz).hexdigest()}]}).encode()
        return config, manifest

    (cfg_a, man_a), (cfg_b, man_b) = image(own_diff), image(diff_id)
    port = _free_port()
    reg = subprocess.Popen([sys.executable, "-m", "dockyard.registry.server", "serve", "--addr", f"127.0.0.1:{port}",
                            "--root", str(tmp_path / "reg")], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                           cwd=ROOT)
    try:
        assert reg.stdout is not None and "listening" in reg.stdout.readline().decode()
        addr = f"127.0.0.1:{port}"
        _registry_put(addr, "evil", [gz, cfg_a, cfg_b], {"a": man_a, "b": man_b})
        d.docker("pull", f"{addr}/evil:a")
        d.docker("pull", f"{addr}/evil:b")
        assert _saved_layers(d, "busybox") == before, "busybox's saved layer is the registry's"
    finally:
        reg.terminate()
        reg.wait(10)
        d.docker("rmi", "-f", f"127.0.0.1:{port}/evil:a", f"127.0.0.1:{port}/evil:b", check=False)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
