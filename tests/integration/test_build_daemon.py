"""Builds through the real daemon with the docker CLI's classic builder: RUN in real containers,
failing RUN cleanup, the cache across a daemon restart. Needs the container core (runc + conmon)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")


def build(daemon: Any, ctx: Path, *args: str, check: bool = True) -> Any:
    env = {"DOCKER_BUILDKIT": "0"}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        return daemon.docker("build", *args, str(ctx), check=check)
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def test_run_steps_cache_and_failure(daemon: Any, tmp_path: Path) -> None:
    (tmp_path / "Dockerfile").write_text(
        "FROM busybox AS a\nRUN echo from-a > /a\n"
        "FROM busybox AS b\nARG X=1\nRUN echo b$X > /b && rm -rf /tmp\n"
        "FROM busybox\nCOPY --from=a /a /\nCOPY --from=b /b /\nRUN cat /a /b\nCMD [\"cat\", \"/a\", \"/b\"]\n")
    p = build(daemon, tmp_path, "-t", "bt:1")
    out = p.stdout.decode()
    assert "from-a\nb1\n" in out and "Running in" in out and "Successfully tagged bt:1" in out
    assert daemon.docker("run", "--rm", "bt:1").stdout == b"from-a\nb1\n"
    hist = daemon.docker("history", "--no-trunc", "--format", "{{.CreatedBy}}", "bt:1").stdout.decode()
    assert "|1 X=1 /bin/sh -c echo b$X > /b" not in hist  # the b stage is not in the final image
    assert "/bin/sh -c cat /a /b" in hist
    p2 = build(daemon, tmp_path, "-t", "bt:1")
    assert p2.stdout.decode().count("Using cache") >= 6 and "Running in" not in p2.stdout.decode()
    daemon.stop()
    daemon.start()
    p3 = build(daemon, tmp_path, "-t", "bt:1")
    assert "Running in" not in p3.stdout.decode()  # the cache survives a restart

    before = daemon.docker("ps", "-aq").stdout
    (tmp_path / "Dockerfile").write_text("FROM busybox\nRUN echo oops && false\n")
    bad = build(daemon, tmp_path, check=False)
    assert bad.returncode != 0
    assert "The command '/bin/sh -c echo oops && false' returned a non-zero code: 1" in bad.stderr.decode()
    assert "oops" in bad.stdout.decode()
    assert daemon.docker("ps", "-aq").stdout == before
    mounts = Path("/proc/mounts").read_text()
    assert str(daemon.base) + "/run/containers" not in mounts


def _tree(root: Path) -> dict[str, tuple[object, ...]]:
    import hashlib
    import stat

    out: dict[str, tuple[object, ...]] = {}
    for p in sorted(root.rglob("*")):
        st = p.lstat()
        rel = str(p.relative_to(root))
        what: object = ""
        if stat.S_ISREG(st.st_mode):
            what = hashlib.sha256(p.read_bytes()).hexdigest()
        elif stat.S_ISLNK(st.st_mode):
            what = os.readlink(p)
        elif stat.S_ISCHR(st.st_mode):
            what = st.st_rdev
        elif stat.S_ISDIR(st.st_mode):
            what = os.getxattr(p, "trusted.overlay.opaque", follow_symlinks=False) \
                if "trusted.overlay.opaque" in os.listxattr(p, follow_symlinks=False) else b""
        out[rel] = (stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, what)
    return out


def test_run_layer_adopted_from_upper_matches_its_tar(daemon: Any, tmp_path: Path) -> None:
    """A RUN step's snapshot is the container's upper dir itself; it must equal its layer tar."""
    import json
    import tarfile

    from dockyard.store.layers import apply_layer

    (tmp_path / "Dockerfile").write_text(
        "FROM busybox\nRUN mkdir -p /x/y && echo hi > /x/y/f && ln -s f /x/y/l && chmod 4700 /x/y/f"
        " && chown 12:34 /x/y && rm /bin/ls && rm -rf /var && mkdir /var && echo new > /var/only\n")
    build(daemon, tmp_path, "--no-cache", "-t", "adopt:1")
    upper = Path(json.loads(daemon.docker("image", "inspect", "adopt:1").stdout)[0]["GraphDriver"]["Data"]["UpperDir"])
    save = tmp_path / "save"
    save.mkdir()
    tar = tmp_path / "img.tar"
    daemon.docker("save", "-o", str(tar), "adopt:1")
    with tarfile.open(tar) as tf:
        tf.extractall(save)
    layer = json.loads((save / "manifest.json").read_text())[0]["Layers"][-1]
    applied = tmp_path / "applied"
    applied.mkdir()
    with open(save / layer, "rb") as f:
        apply_layer(f, applied)
    got = _tree(upper)
    assert got == _tree(applied)
    assert got["bin/ls"][0] == 0o020000 and got["x/y/f"][1] == 0o4700 and got["x/y"][2:4] == (12, 34)
    assert got["var"][4] == b"y"  # the replaced /var is opaque
    run = daemon.docker("run", "--rm", "adopt:1", "sh", "-c", "cat /x/y/l; ls /var; test -e /bin/ls || echo gone")
    assert run.stdout == b"hi\nonly\ngone\n"
    daemon.docker("rmi", "adopt:1")


def test_run_steps_get_the_builds_host_options(daemon: Any, tmp_path: Path) -> None:
    # --ulimit, --shm-size and --add-host reach each RUN step's container (the build's HostConfig);
    # a ulimits parameter that is not a list of ulimits is refused with the request, in Go's words.
    (tmp_path / "Dockerfile").write_text(
        "FROM busybox\nRUN echo $(ulimit -Sn) $(ulimit -Hn) $(df -k /dev/shm | tail -1 | awk '{print $2}') "
        "$(grep -c h.example /etc/hosts) > /opts\nCMD [\"cat\", \"/opts\"]\n")
    build(daemon, tmp_path, "-t", "bopts:1", "--ulimit", "nofile=1000:2000", "--shm-size", "96m",
          "--add-host", "h.example:10.1.2.3")
    try:
        assert daemon.docker("run", "--rm", "bopts:1").stdout == b"1000 2000 98304 1\n"
    finally:
        daemon.docker("rmi", "bopts:1")
    with daemon.api() as c:
        r = c.post("/build", params={"ulimits": '[{"Name": "nofile", "Soft": "x"}]'}, content=b"")
        assert r.status_code == 400 and "cannot unmarshal string" in r.text, r.text
