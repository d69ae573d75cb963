"""Data in and out through the real docker CLI: commit, export/import, save/load both ways with the
real dockerd, system df, and the prunes. A private daemon: `system prune -a` must not hit others."""

from __future__ import annotations

import io
import json
import os
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import DOCKER_CLI, Daemon, own_daemon


@pytest.fixture(scope="module")
def d() -> Iterator[Daemon]:
    with own_daemon("dy-storage-") as dm:
        yield dm


@pytest.fixture()
def dd(d: Daemon) -> Iterator[Daemon]:
    yield d
    d.cleanup_containers()


@pytest.fixture(scope="module")
def dockerd(real_dockerd: str) -> dict[str, str]:
    """Env for the docker CLI pointed at the session's private real dockerd (tests/conftest.py)."""
    cenv = {**os.environ, "DOCKER_HOST": real_dockerd}
    cenv.pop("DOCKER_CONTEXT", None)
    return cenv


def real(env: dict[str, str], *args: str, **kw: object) -> subprocess.CompletedProcess[bytes]:
    p = subprocess.run([DOCKER_CLI, *args], env={**env, "DOCKER_BUILDKIT": "0"}, capture_output=True,
                       timeout=300, **kw)  # type: ignore[call-overload]
    assert p.returncode == 0, f"dockerd: docker {' '.join(args)}: {p.stderr!r}"
    return p


def _cfg(d: Daemon, ref: str) -> dict:  # type: ignore[type-arg]
    return json.loads(d.docker("image", "inspect", ref).stdout)[0]


def test_commit_with_changes_message_author(dd: Daemon) -> None:
    dd.docker("run", "-d", "--name", "src", "-l", "from=ctr", "busybox", "sh", "-c",
              "echo hello > /hi; rm /etc/group; sleep 1000")
    for _ in range(100):
        if dd.docker("exec", "src", "test", "-f", "/hi", check=False).returncode == 0:
            break
        time.sleep(0.05)
    out = dd.docker("commit", "-m", "my message", "-a", "Me <me@example.com>",
                    "--change", "ENV FOO=bar", "--change", 'CMD ["cat", "/hi"]', "--change", "LABEL a=b",
                    "--change", "EXPOSE 8080", "--change", "WORKDIR /tmp", "--change", "USER 1000",
                    "src", "committed:1").stdout.decode().strip()
    assert out.startswith("sha256:")
    img = _cfg(dd, "committed:1")
    assert img["Id"] == out
    assert img["Comment"] == "my message" and img["Author"] == "Me <me@example.com>"
    c = img["Config"]
    assert "FOO=bar" in c["Env"] and c["Cmd"] == ["cat", "/hi"] and c["WorkingDir"] == "/tmp"
    assert c["Labels"] == {"a": "b", "from": "ctr"} and "8080/tcp" in c["ExposedPorts"] and c["User"] == "1000"
    assert len(img["RootFS"]["Layers"]) == len(_cfg(dd, "busybox")["RootFS"]["Layers"]) + 1
    assert dd.docker("run", "--rm", "committed:1").stdout == b"hello\n"
    # The deletion is a whiteout in the new layer.
    assert dd.docker("run", "--rm", "committed:1", "test", "-e", "/etc/group", check=False).returncode == 1
    hist = dd.docker("history", "--no-trunc", "--format", "{{.CreatedBy}}|{{.Comment}}", "committed:1").stdout
    assert hist.decode().splitlines()[0].endswith("|my message")


def test_commit_pause_keeps_container_running(dd: Daemon) -> None:
    dd.docker("run", "-d", "--name", "busy", "busybox", "sh", "-c",
              "i=0; while true; do echo $i > /c.tmp; mv /c.tmp /count; i=$((i+1)); sleep 0.05; done")
    for _ in range(100):  # the first write (renames keep /count whole at any instant)
        if dd.docker("exec", "busy", "test", "-f", "/count", check=False).returncode == 0:
            break
        time.sleep(0.05)
    for pause in ("--pause=true", "--pause=false"):
        iid = dd.docker("commit", pause, "busy").stdout.decode().strip()
        n = dd.docker("run", "--rm", iid, "cat", "/count").stdout.strip()
        assert n.isdigit()
        st = json.loads(dd.docker("inspect", "busy").stdout)[0]["State"]
        assert st["Status"] == "running" and not st["Paused"]
        assert dd.docker("rmi", iid).returncode == 0
    # A commit of an exited container works too (nothing to pause).
    dd.docker("run", "--name", "done", "busybox", "sh", "-c", "echo x > /x")
    iid = dd.docker("commit", "done").stdout.decode().strip()
    assert dd.docker("run", "--rm", iid, "cat", "/x").stdout == b"x\n"
    dd.docker("rmi", iid)


def test_export_import_round_trip(dd: Daemon) -> None:
    dd.docker("run", "--name", "exp", "busybox", "sh", "-c", "mkdir -p /data && echo payload > /data/f")
    tar_bytes = dd.docker("export", "exp").stdout
    names = tarfile.open(fileobj=io.BytesIO(tar_bytes)).getnames()
    assert "data/f" in names and "bin/sh" in [n.lstrip("./") for n in names] or "bin/busybox" in names
    # From stdin, with --change and -m.
    iid = dd.docker("import", "-c", 'CMD ["cat", "/data/f"]', "-m", "imported here", "-", "imported:1",
                    input=tar_bytes).stdout.decode().strip()
    img = _cfg(dd, "imported:1")
    assert img["Id"] == iid and img["Comment"] == "imported here" and len(img["RootFS"]["Layers"]) == 1
    assert dd.docker("run", "--rm", "imported:1").stdout == b"payload\n"
    # From a file; Docker's default comment.
    with tempfile.NamedTemporaryFile(suffix=".tar") as f:
        f.write(tar_bytes)
        f.flush()
        dd.docker("import", f.name, "imported:2")
    assert _cfg(dd, "imported:2")["Comment"] == "Imported from -"
    assert dd.docker("run", "--rm", "imported:2", "cat", "/data/f").stdout == b"payload\n"
    dd.docker("rmi", "imported:1", "imported:2")


def test_save_by_dockerd_loads_into_ours(dd: Daemon, dockerd: dict[str, str], tmp_path: Path) -> None:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(
        "FROM busybox\nRUN echo one > /one\nRUN echo two > /two && rm -f /etc/group\n"
        'CMD ["sh", "-c", "cat /one /two; test -e /etc/group || echo nogroup"]\n')
    real(dockerd, "build", "-q", "--network", "none", "-t", "dy-two:layers", str(ctx))
    want = real(dockerd, "run", "--rm", "dy-two:layers").stdout
    assert want == b"one\ntwo\nnogroup\n"
    real(dockerd, "tag", "busybox:latest", "dy-peer-busybox:latest")
    tar = tmp_path / "from-dockerd.tar"
    real(dockerd, "save", "-o", str(tar), "dy-peer-busybox:latest", "dy-two:layers")
    ids = {r: real(dockerd, "image", "inspect", "-f", "{{.Id}}", r).stdout.strip()
           for r in ("dy-peer-busybox:latest", "dy-two:layers")}
    out = dd.docker("load", "-i", str(tar)).stdout.decode()
    assert "Loaded image: dy-two:layers" in out and "Loaded image: dy-peer-busybox:latest" in out
    for ref, iid in ids.items():
        assert _cfg(dd, ref)["Id"].encode() == iid  # same config, same id
    assert dd.docker("run", "--rm", "dy-two:layers").stdout == want
    assert dd.docker("run", "--rm", "dy-peer-busybox", "echo", "ok").stdout == b"ok\n"
    dd.docker("rmi", "dy-two:layers", "dy-peer-busybox:latest")
    real(dockerd, "rmi", "dy-two:layers", "dy-peer-busybox:latest")


def test_save_by_ours_loads_into_dockerd(dd: Daemon, dockerd: dict[str, str], tmp_path: Path) -> None:
    dd.docker("run", "--name", "mk", "busybox", "sh", "-c", "echo ours > /ours; rm /etc/passwd")
    dd.docker("commit", "--change", 'CMD ["sh", "-c", "cat /ours; test -e /etc/passwd || echo nopasswd"]',
              "mk", "dy-ours:v1")
    tar = tmp_path / "from-ours.tar"
    dd.docker("save", "-o", str(tar), "dy-ours:v1")
    iid = _cfg(dd, "dy-ours:v1")["Id"]
    assert "Loaded image: dy-ours:v1" in real(dockerd, "load", "-i", str(tar)).stdout.decode()
    assert real(dockerd, "image", "inspect", "-f", "{{.Id}}", "dy-ours:v1").stdout.decode().strip() == iid
    assert real(dockerd, "run", "--rm", "dy-ours:v1").stdout == b"ours\nnopasswd\n"
    # And a save through stdout (`docker save img > file`), loaded from stdin.
    data = dd.docker("save", "dy-ours:v1").stdout
    real(dockerd, "rmi", "dy-ours:v1")
    real(dockerd, "load", input=data)
    assert real(dockerd, "run", "--rm", "dy-ours:v1").stdout == b"ours\nnopasswd\n"
    real(dockerd, "rmi", "dy-ours:v1")
    dd.docker("rmi", "dy-ours:v1")


def test_system_df(dd: Daemon, tmp_path: Path) -> None:
    dd.docker("volume", "create", "dfvol")
    dd.docker("run", "--name", "dfc", "-v", "dfvol:/data", "busybox", "sh", "-c",
              "head -c 100000 /dev/zero > /data/f; head -c 5000 /dev/zero > /rw")
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text("FROM busybox\nRUN echo cached > /c\n")
    subprocess.run([DOCKER_CLI, "build", "-q", "-t", "dfbuilt", str(ctx)], env={**dd.env, "DOCKER_BUILDKIT": "0"},
                   check=True, capture_output=True, timeout=120)
    with dd.api() as c:
        df = c.get("/system/df").json()
    bb = next(i for i in df["Images"] if "busybox:latest" in i["RepoTags"])
    built = next(i for i in df["Images"] if "dfbuilt:latest" in i["RepoTags"])
    assert bb["Containers"] == 1 and built["Containers"] == 0
    assert bb["SharedSize"] == bb["Size"] > 0  # its one layer is also dfbuilt's
    assert built["SharedSize"] == bb["Size"] < built["Size"]
    assert df["LayersSize"] >= built["Size"]
    ctr = next(x for x in df["Containers"] if x["Names"] == ["/dfc"])
    assert ctr["SizeRw"] >= 5000 and ctr["SizeRootFs"] >= ctr["SizeRw"] + bb["Size"]
    vol = next(v for v in df["Volumes"] if v["Name"] == "dfvol")
    assert vol["UsageData"] == {"Size": 100000, "RefCount": 1}
    assert df["BuildCache"] and all({"ID", "Type", "Size", "InUse", "Shared"} <= set(b) for b in df["BuildCache"])
    # The CLI renders both forms.
    summary = dd.docker("system", "df", "--format", "{{json .}}").stdout.decode().splitlines()
    rows = {json.loads(x)["Type"]: json.loads(x) for x in summary}
    assert set(rows) == {"Images", "Containers", "Local Volumes", "Build Cache"}
    assert rows["Containers"]["TotalCount"] == "1" and rows["Local Volumes"]["TotalCount"] == "1"
    verbose = dd.docker("system", "df", "-v").stdout.decode()
    assert "dfvol" in verbose and "dfc" in verbose and "dfbuilt" in verbose
    dd.docker("rm", "dfc")
    dd.docker("volume", "rm", "dfvol")
    dd.docker("rmi", "dfbuilt")


def test_container_prune_filters(dd: Daemon) -> None:
    dd.docker("run", "--name", "p-keep", "-l", "keep=1", "busybox", "true")
    dd.docker("run", "--name", "p-drop", "-l", "tier=x", "busybox", "true")
    dd.docker("run", "-d", "--name", "p-running", "busybox", "sleep", "1000")
    out = dd.docker("container", "prune", "-f", "--filter", "label!=keep").stdout.decode()
    assert "Deleted Containers:" in out
    names = set(dd.docker("ps", "-a", "--format", "{{.Names}}").stdout.decode().split())
    assert names == {"p-keep", "p-running"}
    dd.docker("container", "prune", "-f", "--filter", "until=1h")  # all are newer: none go
    assert set(dd.docker("ps", "-a", "--format", "{{.Names}}").stdout.decode().split()) == names
    dd.docker("container", "prune", "-f", "--filter", "label=keep=1")
    assert dd.docker("ps", "-a", "--format", "{{.Names}}").stdout.decode().split() == ["p-running"]


def test_image_prune_filters(dd: Daemon) -> None:
    dd.docker("run", "--name", "ip", "busybox", "sh", "-c", "echo 1 > /f")
    a = dd.docker("commit", "--change", "LABEL k=a", "ip", "ip-a").stdout.decode().strip()
    b = dd.docker("commit", "--change", "LABEL k=b", "ip", "ip-b").stdout.decode().strip()
    dang = dd.docker("commit", "--change", "LABEL k=d", "ip").stdout.decode().strip()
    out = dd.docker("image", "prune", "-f").stdout.decode()
    assert f"deleted: {dang}" in out
    assert dd.docker("image", "inspect", dang, check=False).returncode != 0
    dd.docker("image", "prune", "-a", "-f", "--filter", "until=1h")  # all are newer: none go
    assert dd.docker("image", "inspect", a, b).returncode == 0
    out = dd.docker("image", "prune", "-a", "-f", "--filter", "label=k=a").stdout.decode()
    assert "untagged: ip-a:latest" in out and f"deleted: {a}" in out
    assert dd.docker("image", "inspect", b).returncode == 0
    dd.docker("image", "prune", "-a", "-f", "--filter", "label!=k=b")
    assert dd.docker("image", "inspect", b).returncode == 0  # spared by label!
    assert dd.docker("image", "inspect", "busybox").returncode == 0  # a container uses it
    dd.docker("rm", "ip")
    dd.docker("rmi", "ip-b")


def test_system_prune(dd: Daemon, tmp_path: Path) -> None:
    dd.docker("network", "create", "sp-net")
    dd.docker("volume", "create", "sp-vol")
    dd.docker("run", "--name", "sp-dead", "-v", "sp-vol:/v", "busybox", "true")
    dd.docker("run", "-d", "--name", "sp-live", "busybox", "sleep", "1000")
    dd.docker("run", "--name", "sp-anon", "-v", "/anon", "busybox", "true")
    dd.docker("commit", "sp-dead", "sp-unused:1")
    (tmp_path / "Dockerfile").write_text("FROM busybox\nRUN echo x > /x\n")
    subprocess.run([DOCKER_CLI, "build", "-q", "-t", "sp-built", str(tmp_path)],
                   env={**dd.env, "DOCKER_BUILDKIT": "0"}, check=True, capture_output=True, timeout=120)
    dd.docker("rmi", "sp-built")
    out = dd.docker("system", "prune", "-f").stdout.decode()
    assert "Deleted Containers:" in out and "Deleted Networks:" in out and "sp-net" in out
    assert dd.docker("volume", "inspect", "sp-vol").returncode == 0  # named volumes stay without --volumes
    assert dd.docker("ps", "-a", "--format", "{{.Names}}").stdout == b"sp-live\n"
    dd.docker("system", "prune", "-a", "-f", "--volumes", "--filter", "label!=nothing")
    # Only what a running container uses stays (`--volumes` prunes anonymous volumes only, like Docker).
    imgs = dd.docker("images", "--format", "{{.Repository}}:{{.Tag}}").stdout.decode().split()
    assert imgs == ["busybox:latest"], imgs
    assert dd.docker("volume", "ls", "-q").stdout == b"sp-vol\n"  # the anonymous one went
    with dd.api() as c:
        assert not c.get("/system/df").json()["BuildCache"]
    dd.docker("volume", "rm", "sp-vol")
    dd.docker("rm", "-f", "sp-live")
