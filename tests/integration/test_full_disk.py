"""A full disk: a clear error, nothing lost, nothing half-made left behind, and the daemon keeps serving.

The daemon's --data-root is a small ext4 image on a loop device (ext4: overlay upper dirs need d_type
and trusted xattrs). Filler files made with fallocate set how much room each test has.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import shutil
import socket
import sqlite3
import subprocess
import tarfile
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import SHARED, Daemon

IMAGES = SHARED / "images"
MiB = 1 << 20
FS_SIZE = 160 * MiB  # busybox plus an unpacked debian (74 MiB) once the filler is gone
DEBIAN = "library/debian:bookworm-slim"
# What a client must never see: Python's exception text instead of Docker's message.
PYTHONISMS = ("Traceback", "[Errno", "OperationalError", "sqlite3", "Exception")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _mounted(path: Path) -> bool:
    with open("/proc/self/mountinfo") as f:
        return any(line.split()[4] == str(path) for line in f)


@pytest.fixture(scope="module")
def disk_daemon() -> Iterator[Daemon]:
    if os.geteuid() != 0:
        pytest.fail("needs root (loop devices, mounts, containers)")
    scratch = Path(tempfile.mkdtemp(prefix="dy-fullimg-", dir="/tmp"))  # the image file lives off the small fs
    img = scratch / "disk.img"
    d = Daemon(Path(tempfile.mkdtemp(prefix="dy-full-", dir="/tmp")))
    try:
        with open(img, "wb") as f:
            f.truncate(FS_SIZE)
        # -m 0: no blocks reserved for root (the daemon is root, so they would only blur "full").
        subprocess.run(["mkfs.ext4", "-q", "-F", "-m", "0", str(img)], check=True, capture_output=True)
        d.data_root.mkdir()
        # -o loop attaches the device with autoclear: it goes away with the last unmount.
        subprocess.run(["mount", "-o", "loop", str(img), str(d.data_root)], check=True, capture_output=True)
        # In daemon.json, so the tests' restarts keep it.
        (d.base / "daemon.json").write_text(json.dumps({"runtimes": {"fill-at-start": {
            "path": str(_fill_at_start_runtime(d))}}}))
        d.start()
        d.load_busybox()
        yield d
    finally:
        try:
            d.teardown()  # stops the daemon, unmounts everything under its base (the loop fs too)
        finally:
            if _mounted(d.data_root):
                subprocess.run(["umount", "-l", str(d.data_root)], capture_output=True)
            loops = subprocess.run(["losetup", "-j", str(img), "-O", "NAME", "-n"], capture_output=True,
                                   text=True).stdout.split()
            for dev in loops:
                subprocess.run(["losetup", "-d", dev], capture_output=True)
            shutil.rmtree(d.base, ignore_errors=True)
            shutil.rmtree(scratch, ignore_errors=True)


@pytest.fixture(scope="module")
def registry() -> Iterator[int]:
    cache = subprocess.run(["python3", str(IMAGES / "lib" / "oci_fixtures.py"), "path"], capture_output=True,
                           text=True, check=True).stdout.strip()
    if not (Path(cache) / "oci" / "debian" / "fixture.json").exists():
        subprocess.run([str(IMAGES / "build"), "debian"], check=True, capture_output=True)  # cached after once
    port = _free_port()
    storage = tempfile.mkdtemp(prefix="dy-fullreg-")
    try:
        subprocess.run([str(IMAGES / "serve-registry"), "--port", str(port), "--dir", storage, "--no-build",
                        "debian"], check=True, capture_output=True)
        yield port
    finally:
        subprocess.run([str(IMAGES / "stop-registry"), "--port", str(port), "--dir", storage], capture_output=True)
        shutil.rmtree(storage, ignore_errors=True)


def _avail(d: Daemon) -> int:
    st = os.statvfs(d.data_root)
    return st.f_bavail * st.f_frsize


def _fill_at_start_runtime(d: Daemon) -> Path:
    """runc, but `start` first fills the data root to its last block (when the marker file is there)
    after truncating the DB's WAL: the daemon's next DB write, recording the start, finds no room."""
    fill = d.base / "fill.py"
    fill.write_text(f"""import os, sqlite3
con = sqlite3.connect({str(d.data_root / "dockyard.db")!r})
con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
con.close()
with open({str(d.data_root / "filler-at-start")!r}, "wb") as f:
    st = os.statvfs(f.name)
    os.posix_fallocate(f.fileno(), 0, max(st.f_bavail * st.f_frsize - (1 << 20), 4096))
    off = os.fstat(f.fileno()).st_size
    try:
        while True:
            os.posix_fallocate(f.fileno(), off, 4096)
            off += 4096
    except OSError:
        pass
""")
    wrapper = d.base / "fill-at-start-runc"
    wrapper.write_text(f'#!/bin/sh\nif [ -e {d.base}/fill-marker ]; then for a in "$@"; do\n'
                       f'  if [ "$a" = start ]; then rm -f {d.base}/fill-marker; python3 {fill}; fi\ndone; fi\n'
                       'exec runc "$@"\n')
    wrapper.chmod(0o755)
    return wrapper


@contextlib.contextmanager
def filler(d: Daemon, leave: int) -> Iterator[Path]:
    """A file taking all but `leave` bytes of the data root's filesystem (0: every last block)."""
    path = d.data_root / f"filler-{os.urandom(4).hex()}"
    try:
        with open(path, "wb") as f:
            want = _avail(d) - max(leave, MiB)  # a MiB at least for the extent tree's own blocks
            if want > 0:
                os.posix_fallocate(f.fileno(), 0, want)
            if leave == 0:  # metadata blocks come and go: take what is left in small steps
                off = max(want, 0)
                with contextlib.suppress(OSError):
                    while True:
                        os.posix_fallocate(f.fileno(), off, 4096)
                        off += 4096
        yield path
    finally:
        path.unlink(missing_ok=True)


@contextlib.contextmanager
def room_for(d: Daemon, nbytes: int) -> Iterator[None]:
    """A full filesystem but for `nbytes`: a file that size is made, the rest filled, then it goes."""
    slack = d.data_root / "slack"
    with open(slack, "wb") as f:
        os.posix_fallocate(f.fileno(), 0, nbytes)
    try:
        with filler(d, 0):
            slack.unlink()
            os.sync()  # ext4 reuses freed blocks only once the journal committed their release
            yield
    finally:
        slack.unlink(missing_ok=True)


def _leftovers(d: Daemon) -> list[str]:
    """Half-made things a failed operation must not leave: ingest files, load dirs, temp snapshot and build dirs."""
    out = [str(p) for p in (d.data_root / "content" / "ingest").iterdir()]
    out += [str(p) for p in (d.data_root / "overlay").glob("tmp-*")]
    out += [str(p) for p in (d.data_root / "build").glob("tmp-*")]  # a build's context and step dirs
    return out


def _snapshots(d: Daemon) -> set[str]:
    return {p.name for p in (d.data_root / "overlay").iterdir() if not p.name.startswith("tmp-")}


def _blobs(d: Daemon) -> set[str]:
    return {p.name for p in (d.data_root / "content" / "blobs" / "sha256").iterdir()}


def _image_tags(d: Daemon) -> set[str]:
    out = d.docker("images", "--format", "{{.Repository}}:{{.Tag}}").stdout.decode().split()
    return set(out)


def _container_dirs(d: Daemon) -> set[str]:
    root = d.data_root / "containers"
    return {p.name for p in root.iterdir()} if root.exists() else set()


def _container_ids(d: Daemon) -> set[str]:
    return set(d.docker("ps", "-a", "-q", "--no-trunc").stdout.decode().split())


def _mounts_under(d: Daemon) -> list[str]:
    """Mounts under the daemon's roots: a container's rootfs, its netns, a build step's merged dir."""
    with open("/proc/self/mountinfo") as f:
        mounts = [line.split()[4] for line in f]
    keep = (str(d.data_root), str(d.exec_root / "netns"))  # the netns dir is bound once, at the first container
    return [m for m in mounts if m.startswith(f"{d.base}/") and m not in keep]


def _no_pythonisms(text: str) -> None:
    for word in PYTHONISMS:
        assert word not in text, f"Python internals in a client message: {text!r}"


def _daemon_fine(d: Daemon) -> None:
    assert "busybox:latest" in _image_tags(d)
    assert d.docker("run", "--rm", "busybox", "echo", "alive").stdout == b"alive\n"


def _big_image_tar(size: int) -> bytes:
    """A `docker save` archive of one image whose only layer holds `size` incompressible bytes."""
    payload = os.urandom(size)
    layer = io.BytesIO()
    with tarfile.open(fileobj=layer, mode="w") as tf:
        ti = tarfile.TarInfo("big.bin")
        ti.size = size
        ti.mode = 0o644
        tf.addfile(ti, io.BytesIO(payload))
    layer_bytes = layer.getvalue()
    diff_id = "sha256:" + hashlib.sha256(layer_bytes).hexdigest()
    config = json.dumps({
        "architecture": "amd64", "os": "linux", "config": {"Cmd": ["/big.bin"]},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{"created_by": "test: incompressible payload"}],
    }).encode()
    config_name = hashlib.sha256(config).hexdigest() + ".json"
    manifest = json.dumps([{"Config": config_name, "RepoTags": ["big:latest"],
                            "Layers": [f"{diff_id[7:]}/layer.tar"]}]).encode()
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tf:
        for name, data in ((f"{diff_id[7:]}/layer.tar", layer_bytes), (config_name, config),
                           ("manifest.json", manifest)):
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            tf.addfile(ti, io.BytesIO(data))
    return out.getvalue()


# ---------------------------------------------------------------------------------------------- load


@pytest.mark.parametrize("leave", [12 * MiB, 40 * MiB], ids=["upload-does-not-fit", "layer-does-not-fit"])
def test_load_bigger_than_free_space(disk_daemon: Daemon, tmp_path: Path, leave: int) -> None:
    """12 MiB free: the upload itself does not fit; 40 MiB: it does, its blob and unpacked layer do not."""
    d = disk_daemon
    archive = tmp_path / "big.tar"
    archive.write_bytes(_big_image_tar(32 * MiB))
    snaps, blobs = _snapshots(d), _blobs(d)
    with filler(d, leave):
        p = d.docker("load", "-i", str(archive), check=False)
        err = p.stderr.decode()
        assert p.returncode != 0, p
        assert "no space left on device" in err.lower(), err
        _no_pythonisms(err)
        assert "big:latest" not in _image_tags(d)
        assert _leftovers(d) == []
        assert _snapshots(d) == snaps and _blobs(d) == blobs
        _daemon_fine(d)
    # With room again the same archive loads.
    d.docker("load", "-i", str(archive))
    d.docker("rmi", "big:latest")


# ---------------------------------------------------------------------------------------------- pull


@pytest.mark.parametrize("leave", [0, 8 * MiB, 40 * MiB],
                         ids=["nothing-fits", "download-does-not-fit", "unpack-does-not-fit"])
def test_pull_that_does_not_fit(disk_daemon: Daemon, registry: int, leave: int) -> None:
    """No room: the first blob (the manifest) fails at its flush, and its ingest file must go all the
    same (a chaos run's disk fill left three: the writer's close raised ENOSPC again, before the
    unlink); 8 MiB free: the 27 MiB layer's download stops half-way; 40 MiB: the download fits, its
    74 MiB unpacked do not."""
    d = disk_daemon
    ref = f"127.0.0.1:{registry}/{DEBIAN}"
    snaps, blobs = _snapshots(d), _blobs(d)
    with filler(d, leave):
        p = d.docker("pull", ref, check=False)
        err = p.stderr.decode() + p.stdout.decode()
        assert p.returncode != 0, p
        assert "no space left on device" in err.lower(), err
        _no_pythonisms(p.stderr.decode())
        assert ref not in _image_tags(d)
        assert _leftovers(d) == []
        assert _snapshots(d) == snaps, "a failed pull left snapshots"
        # Only manifests may stay (small; the next start's sweep takes them): not the layer's 27 MiB.
        left = {b: (d.data_root / "content" / "blobs" / "sha256" / b).stat().st_size for b in _blobs(d) - blobs}
        assert sum(left.values()) < 64 * 1024, f"a failed pull left blobs: {left}"
        if leave:  # with no room at all no container starts: the pull and run below check it after
            _daemon_fine(d)
    d.docker("pull", ref)
    assert d.docker("run", "--rm", ref, "cat", "/etc/debian_version").stdout.startswith(b"12.")
    d.docker("rmi", ref)


# ---------------------------------------------------------------------------------------------- containers


def test_container_fills_its_writable_layer(disk_daemon: Daemon) -> None:
    d = disk_daemon
    with filler(d, 16 * MiB):
        p = d.docker("run", "--name", "hog", "busybox", "dd", "if=/dev/zero", "of=/big", "bs=1M", check=False)
        assert p.returncode == 1, p
        assert b"No space left on device" in p.stderr, p
        # The daemon's own state still works on a full disk.
        assert d.docker("ps", "-a", "--filter", "name=^hog$", "--format", "{{.Status}}").stdout.startswith(
            b"Exited (1)")
        state = json.loads(d.docker("inspect", "hog").stdout)[0]["State"]
        assert state["Status"] == "exited" and state["ExitCode"] == 1
        with filler(d, 0):
            before = _container_ids(d)
            p = d.docker("create", "busybox", "true", check=False)
            err = p.stderr.decode()
            if p.returncode != 0:
                assert "no space left on device" in err.lower(), err
                _no_pythonisms(err)
                assert _container_ids(d) == before
                assert _container_dirs(d) == before
            else:  # it found room after all: then it is a whole container
                d.docker("rm", p.stdout.decode().strip())
        d.docker("rm", "hog")
        assert d.docker("run", "--rm", "busybox", "true").returncode == 0
    assert _container_dirs(d) == _container_ids(d) == set()


# ---------------------------------------------------------------------------------------------- build


def test_build_step_fills_disk(disk_daemon: Daemon, tmp_path: Path) -> None:
    d = disk_daemon
    (tmp_path / "Dockerfile").write_text("FROM busybox\nRUN dd if=/dev/zero of=/big bs=1M\n")
    snaps = _snapshots(d)
    env = {**d.env, "DOCKER_BUILDKIT": "0"}
    with filler(d, 16 * MiB):
        p = subprocess.run(["docker", "build", "-t", "full:test", str(tmp_path)], env=env, capture_output=True,
                           timeout=120)
        out = (p.stdout + p.stderr).decode()
        assert p.returncode != 0, out
        assert "No space left on device" in out, out
        assert "returned a non-zero code: 1" in out, out
        _no_pythonisms(p.stderr.decode())
        assert "full:test" not in _image_tags(d)
        assert _container_ids(d) == set() and _container_dirs(d) == set()
        assert _mounts_under(d) == []
        assert _snapshots(d) == snaps and _leftovers(d) == []
        _daemon_fine(d)


# ---------------------------------------------------------------------------------------------- sqlite


def _truncate_wal(d: Daemon) -> None:
    """Checkpoint and truncate the WAL, so the daemon's next DB write has to grow the file."""
    con = sqlite3.connect(d.data_root / "dockyard.db")
    try:
        con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        con.close()


def test_database_write_on_full_disk(disk_daemon: Daemon) -> None:
    d = disk_daemon
    with d.api() as c:
        _truncate_wal(d)
        with filler(d, 0):
            failures: list[str] = []
            for method, path, kw in (
                ("POST", "/images/busybox:latest/tag", {"params": {"repo": "full", "tag": "tagged"}}),
                ("POST", "/containers/create", {"params": {"name": "nospace"}, "json": {"Image": "busybox"}}),
                ("POST", "/volumes/create", {"json": {"Name": "nospace"}}),
                ("POST", "/networks/create", {"json": {"Name": "nospace"}}),
            ):
                r = c.request(method, path, **kw)
                if r.status_code < 300:
                    continue  # it found room (a page free in the WAL): fine, cleaned up below
                body = r.json()
                failures.append(body["message"])
                assert r.status_code == 500, (path, r.status_code, body)
                assert "no space left on device" in body["message"].lower(), (path, body)
                _no_pythonisms(body["message"])
            assert failures, "nothing failed on a full disk?"
            # Reads still work while full.
            assert c.get("/images/json").status_code == 200
            assert c.get("/containers/json", params={"all": "1"}).status_code == 200
        # Space back: writes work again (the daemon is not stuck in a failed transaction).
        r = c.post("/images/busybox:latest/tag", params={"repo": "full", "tag": "after"})
        assert r.status_code == 201, r.text
        assert _container_dirs(d) == _container_ids(d)
    d.stop()
    d.start()
    assert _container_dirs(d) == _container_ids(d)
    for ref in ("full:after", "full:tagged"):
        d.docker("rmi", ref, check=False)
    for name in ("nospace",):
        d.docker("rm", "-f", name, check=False)
        d.docker("volume", "rm", name, check=False)
        d.docker("network", "rm", name, check=False)
    _daemon_fine(d)


@pytest.mark.parametrize("blocks", [1, 2, 3, 6, 12])
def test_create_with_almost_no_room(disk_daemon: Daemon, blocks: int) -> None:
    """Room for a few blocks: a create fails at some step (a dir, the init layer, the DB row) or fits.
    Either way the container is whole or gone: no dir without a row, no row without its dirs."""
    d = disk_daemon
    with d.api() as c:
        _truncate_wal(d)  # so the row needs new blocks too
        with room_for(d, blocks * 4096):
            r = c.post("/containers/create", params={"name": f"tight{blocks}"}, json={"Image": "busybox"})
            if r.status_code != 201:
                assert r.status_code == 500, r.text
                assert "no space left on device" in r.json()["message"], r.text
                _no_pythonisms(r.json()["message"])
            assert _container_dirs(d) == _container_ids(d)
        if r.status_code == 201:
            assert c.delete(f"/containers/{r.json()['Id']}").status_code == 204
    assert _container_dirs(d) == _container_ids(d) == set()


def test_start_whose_state_write_fails(disk_daemon: Daemon) -> None:
    """The disk fills between the runtime's start and the DB write that records it (the chaos run's
    fill did so): the start fails with a clear error and the process does not run on, unknown to the
    daemon, with its veth on the bridge (before the fix: runc said running, the daemon created)."""
    d = disk_daemon
    cid = d.docker("create", "--runtime", "fill-at-start", "busybox", "sleep", "600").stdout.decode().strip()
    from dockyard.daemon.config import DaemonConfig
    from dockyard.daemon.wiring import instance_id

    bridge = f"dy{instance_id(DaemonConfig(data_root=d.data_root))}"[:15]
    try:
        (d.base / "fill-marker").touch()
        p = d.docker("start", cid, check=False)
        assert (d.data_root / "filler-at-start").exists(), "the runtime wrapper did not fill the disk"
        (d.data_root / "filler-at-start").unlink()
        err = p.stderr.decode()
        if p.returncode == 0:
            pytest.skip("the state write found room after all (a free page in the DB)")
        assert "no space left on device" in err.lower(), err
        _no_pythonisms(err)
        listed = subprocess.run(["runc", "--root", str(d.exec_root / "runtime" / "fill-at-start"), "list", "-q"],
                                capture_output=True, text=True).stdout.split()
        assert cid not in listed, "the process runs on, under a container the daemon does not call running"
        state = json.loads(d.docker("inspect", cid).stdout)[0]["State"]
        assert not state["Running"], state
        assert not (d.exec_root / "netns" / cid).exists(), "its netns is left"
        links = subprocess.run(["ip", "-o", "link", "show", "master", bridge], capture_output=True, text=True).stdout
        assert "veth" not in links, f"a veth is left on the bridge: {links}"
        assert d.docker("start", cid, check=False).returncode == 0  # with room, it starts
    finally:
        (d.data_root / "filler-at-start").unlink(missing_ok=True)
        (d.base / "fill-marker").unlink(missing_ok=True)
        d.docker("rm", "-f", cid, check=False)
    assert _container_dirs(d) == _container_ids(d) == set()
