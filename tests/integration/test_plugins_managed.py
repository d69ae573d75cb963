"""Managed plugins through the real docker CLI: the test volume driver (tests/plugins/volume_plugin.py)
packaged as a plugin dir (config.json + rootfs/), `docker plugin create`, ls, inspect, set, enable (it
runs under runc and makes its socket in /run/docker/plugins inside), used by `volume create -d` and a
container (paths it answers with are inside its rootfs), then disable and rm."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Daemon, own_daemon
from tests.plugins.procs import make_plugin_dir

NAME = "dyk/dirvol"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def registry() -> Iterator[str]:
    """Our own registry server (`dockyard registry`), on loopback."""
    with tempfile.TemporaryDirectory(prefix="plugins-reg-", dir="/tmp") as tmp:
        port = _free_port()
        proc = subprocess.Popen([sys.executable, "-m", "dockyard.registry.server", "serve", "--addr",
                                 f"127.0.0.1:{port}", "--root", tmp], stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL)
        try:
            assert proc.stdout is not None and b"listening" in proc.stdout.readline()
            yield f"127.0.0.1:{port}"
        finally:
            proc.terminate()
            proc.wait(10)


@pytest.fixture(scope="module")
def daemon_and_dir(registry: str) -> Iterator[tuple[Daemon, Path]]:
    with tempfile.TemporaryDirectory(prefix="plugins-managed-", dir="/tmp") as tmp:
        args = ("--plugin-discovery-dir", str(Path(tmp) / "none"), "--plugin-retry-seconds", "1",
                "--insecure-registry", registry)
        with own_daemon("dy-pman-", *args) as d:
            d.args = args  # type: ignore[attr-defined]  # to start it again the same way
            yield d, make_plugin_dir(Path(tmp) / "dirvol")
            for name in d.docker("plugin", "ls", "--format", "{{.Name}}").stdout.decode().split():
                d.docker("plugin", "rm", "-f", name, check=False)


def _runc_state(d: Daemon, pid: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["runc", "--root", str(d.exec_root / "plugin-runc"), "state", pid],
                          capture_output=True, text=True)


def test_create_enable_use_disable_remove(daemon_and_dir: tuple[Daemon, Path]) -> None:
    d, pdir = daemon_and_dir
    d.docker("plugin", "create", NAME, str(pdir))
    info = json.loads(d.docker("plugin", "inspect", NAME).stdout)[0]
    pid = info["Id"]
    assert info["Name"] == f"{NAME}:latest" and info["Enabled"] is False
    assert info["Config"]["Entrypoint"][1] == "/plugin/volume_plugin.py"
    assert info["Config"]["Interface"]["Types"] == ["docker.volumedriver/1.0"]
    assert info["Settings"]["Env"] == ["DEBUG=0"]
    ls = d.docker("plugin", "ls").stdout.decode()
    assert f"{NAME}:latest" in ls and "false" in ls
    d.docker("plugin", "set", NAME, "DEBUG=1")
    assert json.loads(d.docker("plugin", "inspect", NAME).stdout)[0]["Settings"]["Env"] == ["DEBUG=1"]
    p = d.docker("plugin", "set", NAME, "NOPE=1", check=False)
    assert p.returncode != 0 and b"not found in the plugin configuration" in p.stderr

    d.docker("plugin", "enable", NAME)
    try:
        assert json.loads(d.docker("plugin", "inspect", NAME).stdout)[0]["Enabled"] is True
        assert json.loads(_runc_state(d, pid).stdout)["status"] == "running"
        p = d.docker("plugin", "enable", NAME, check=False)
        assert p.returncode != 0 and b"already enabled" in p.stderr
        p = d.docker("plugin", "set", NAME, "DEBUG=0", check=False)
        assert p.returncode != 0 and b"disable plugin before setting" in p.stderr
        # the volume driver at work, under its plugin name
        d.docker("volume", "create", "-d", NAME, "mv1")
        d.docker("run", "--rm", "-v", "mv1:/d", "busybox", "sh", "-c", "echo managed > /d/f")
        rootfs = d.data_root / "plugins" / pid / "rootfs"
        assert (rootfs / "data" / "volumes" / "mv1" / "f").read_text() == "managed\n"
        v = json.loads(d.docker("volume", "inspect", "mv1").stdout)[0]
        assert v["Driver"] == f"{NAME}:latest" and v["Mountpoint"] == str(rootfs / "data" / "volumes" / "mv1")
        p = d.docker("plugin", "rm", NAME, check=False)
        assert p.returncode != 0 and b"must be disabled before removing" in p.stderr
        d.docker("volume", "rm", "mv1")
    finally:
        d.docker("plugin", "disable", NAME)
    assert _runc_state(d, pid).returncode != 0  # the runc container is gone
    assert not (d.exec_root / "plugins" / pid).exists()
    p = d.docker("plugin", "disable", NAME, check=False)
    assert p.returncode != 0 and b"already disabled" in p.stderr
    d.docker("plugin", "rm", NAME)
    assert not (d.data_root / "plugins" / pid).exists()
    events = d.docker("events", "--since", "0", "--until", f"{time.time() + 1:.0f}", "--filter", "type=plugin",
                      "--format", "{{.Action}} {{.Actor.Attributes.name}}").stdout.decode().splitlines()
    assert [e for e in events if e.endswith(f"{NAME}:latest")] == [
        f"{a} {NAME}:latest" for a in ("create", "enable", "disable", "remove")]
    assert d.docker("plugin", "ls", "-q").stdout == b""
    p = d.docker("plugin", "inspect", NAME, check=False)
    assert p.returncode != 0 and b"not found" in p.stderr


def test_push_then_install_from_our_registry(daemon_and_dir: tuple[Daemon, Path], registry: str) -> None:
    d, pdir = daemon_and_dir
    remote = f"{registry}/dyk/dirvol"
    d.docker("plugin", "create", remote, str(pdir))
    out = d.docker("plugin", "push", remote).stdout.decode()
    assert "digest: sha256:" in out
    d.docker("plugin", "rm", remote)
    with d.api() as c:
        r = c.get("/plugins/privileges", params={"remote": remote})
        assert r.status_code == 200
        assert r.json() == [  # as moby's computePrivileges: any network type but "", null and bridge is one
            {"Name": "network", "Description": "permissions to access a network", "Value": ["none"]},
            {"Name": "mount", "Description": "host path to mount", "Value": ["/usr"]}]
        r = c.post("/plugins/pull", params={"remote": remote, "name": "dyk/ungranted"}, json=[])
        assert r.status_code == 400 and r.json()["message"] == "incorrect privileges"
    # the docker CLI: privileges granted, pulled, extracted, enabled
    d.docker("plugin", "install", "--grant-all-permissions", "--alias", "dyk/fromreg", remote)
    info = json.loads(d.docker("plugin", "inspect", "dyk/fromreg").stdout)[0]
    try:
        assert info["Enabled"] is True and info["PluginReference"] == remote
        assert info["Config"]["rootfs"]["diff_ids"][0].startswith("sha256:")
        d.docker("volume", "create", "-d", "dyk/fromreg", "rv1")
        d.docker("run", "--rm", "-v", "rv1:/d", "busybox", "sh", "-c", "echo pulled > /d/f")
        rootfs = d.data_root / "plugins" / info["Id"] / "rootfs"
        assert (rootfs / "data" / "volumes" / "rv1" / "f").read_text() == "pulled\n"
        d.docker("volume", "rm", "rv1")
        # upgrade: a v2 in the registry; the plugin must be disabled first; its settings stay
        cfg = json.loads((pdir / "config.json").read_text())
        (pdir / "config.json").write_text(json.dumps({**cfg, "description": "version 2"}))
        (pdir / "rootfs" / "plugin" / "VERSION").write_text("2\n")
        d.docker("plugin", "create", f"{remote}:v2", str(pdir))
        d.docker("plugin", "push", f"{remote}:v2")
        d.docker("plugin", "rm", f"{remote}:v2")
        p = d.docker("plugin", "upgrade", "--grant-all-permissions", "--skip-remote-check", "dyk/fromreg",
                     f"{remote}:v2", check=False)
        assert p.returncode != 0 and b"must be disabled before upgrading" in p.stderr
        d.docker("plugin", "disable", "dyk/fromreg")
        d.docker("plugin", "set", "dyk/fromreg", "DEBUG=1")
        d.docker("plugin", "upgrade", "--grant-all-permissions", "--skip-remote-check", "dyk/fromreg",
                 f"{remote}:v2")
        up = json.loads(d.docker("plugin", "inspect", "dyk/fromreg").stdout)[0]
        assert up["Id"] == info["Id"] and up["PluginReference"] == f"{remote}:v2"
        assert up["Config"]["Description"] == "version 2" and up["Settings"]["Env"] == ["DEBUG=1"]
        assert (rootfs / "plugin" / "VERSION").read_text() == "2\n"
        d.docker("plugin", "enable", "dyk/fromreg")
        d.docker("volume", "create", "-d", "dyk/fromreg", "rv2")
        d.docker("volume", "rm", "rv2")
    finally:
        d.docker("plugin", "rm", "-f", "dyk/fromreg")


def test_enabled_plugin_runs_again_after_a_daemon_restart(daemon_and_dir: tuple[Daemon, Path]) -> None:
    d, pdir = daemon_and_dir
    d.docker("plugin", "create", "dyk/restart", str(pdir))
    pid = json.loads(d.docker("plugin", "inspect", "dyk/restart").stdout)[0]["Id"]
    d.docker("plugin", "enable", "dyk/restart")
    try:
        d.docker("volume", "create", "-d", "dyk/restart", "kept")
        d.stop()  # the daemon stops its plugins...
        assert _runc_state(d, pid).returncode != 0
        d.start(*d.args)  # type: ignore[attr-defined]  # ...and runs the enabled ones again
        assert json.loads(_runc_state(d, pid).stdout)["status"] == "running"
        assert json.loads(d.docker("plugin", "inspect", "dyk/restart").stdout)[0]["Enabled"] is True
        d.docker("run", "--rm", "-v", "kept:/k", "busybox", "sh", "-c", "echo again > /k/f")
        rootfs = d.data_root / "plugins" / pid / "rootfs"
        assert (rootfs / "data" / "volumes" / "kept" / "f").read_text() == "again\n"
        d.docker("volume", "rm", "kept")
    finally:
        d.docker("plugin", "rm", "-f", "dyk/restart")


def test_propagated_mount_and_capabilities(daemon_and_dir: tuple[Daemon, Path]) -> None:
    """A plugin that mounts: its config asks CAP_SYS_ADMIN and PropagatedMount /data; the tmpfs it mounts
    there for a volume is seen by the host (under <plugin>/propagated-mount) and by containers."""
    d, pdir = daemon_and_dir
    tdir = make_plugin_dir(pdir.parent / "tmpfsvol", "tmpfsvol", tmpfs=True)
    d.docker("plugin", "create", "dyk/tmpfsvol", str(tdir))
    info = json.loads(d.docker("plugin", "inspect", "dyk/tmpfsvol").stdout)[0]
    assert info["Config"]["PropagatedMount"] == "/data"
    assert info["Config"]["Linux"]["Capabilities"] == ["CAP_SYS_ADMIN"]
    prop = d.data_root / "plugins" / info["Id"] / "propagated-mount"
    d.docker("plugin", "enable", "dyk/tmpfsvol")
    try:
        d.docker("volume", "create", "-d", "dyk/tmpfsvol", "tv")
        v = json.loads(d.docker("volume", "inspect", "tv").stdout)[0]
        assert v["Mountpoint"] == str(prop / "volumes" / "tv")
        a = d.docker("run", "-d", "-v", "tv:/t", "busybox", "sh", "-c", "echo in-tmpfs > /t/f; sleep 600"
                     ).stdout.decode().strip()
        try:
            mounts = [line.split() for line in Path("/proc/self/mountinfo").read_text().splitlines()]
            assert any(m[4] == str(prop / "volumes" / "tv") and "tmpfs" in m for m in mounts)
            assert d.docker("run", "--rm", "-v", "tv:/t", "busybox", "cat", "/t/f").stdout == b"in-tmpfs\n"
            assert (prop / "volumes" / "tv" / "f").read_text() == "in-tmpfs\n"
        finally:
            d.docker("rm", "-f", a)
        mounts = [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()]
        assert str(prop / "volumes" / "tv") not in mounts  # the plugin's last Unmount reached the host too
        assert not (prop / "volumes" / "tv" / "f").exists()  # it was only in the tmpfs
        d.docker("volume", "rm", "tv")
    finally:
        d.docker("plugin", "rm", "-f", "dyk/tmpfsvol")
    assert not any(str(prop) in line for line in Path("/proc/self/mountinfo").read_text().splitlines())


def test_dockyard_plugin_commands(daemon_and_dir: tuple[Daemon, Path], registry: str) -> None:
    """The same through our own CLI: create, ls, set, enable, inspect -f, disable, push, rm, install."""
    d, pdir = daemon_and_dir
    remote = f"{registry}/dyk/ours"
    assert d.dockyard("plugin", "create", remote, str(pdir)).stdout.decode().strip() == remote
    ls = d.dockyard("plugin", "ls").stdout.decode().splitlines()
    assert ls[0].split() == ["ID", "NAME", "DESCRIPTION", "ENABLED"] and f"{remote}:latest" in ls[1]
    d.dockyard("plugin", "set", remote, "DEBUG=1")
    d.dockyard("plugin", "enable", remote)
    fmt = "{{.Enabled}} {{index .Settings.Env 0}}"
    assert d.dockyard("plugin", "inspect", "-f", fmt, remote).stdout == b"true DEBUG=1\n"
    p = d.dockyard("plugin", "rm", remote, check=False)
    assert p.returncode != 0 and b"must be disabled before removing" in p.stderr
    d.dockyard("plugin", "disable", remote)
    assert b"digest: sha256:" in d.dockyard("plugin", "push", remote).stdout
    d.dockyard("plugin", "rm", remote)
    p = d.dockyard("plugin", "install", remote, check=False)  # no TTY to ask on: privileges not granted
    assert p.returncode != 0 and b"--grant-all-permissions" in p.stderr
    out = d.dockyard("plugin", "install", "--grant-all-permissions", "--alias", "dyk/again", remote, "DEBUG=1")
    assert b"Installed plugin" in out.stdout
    info = json.loads(d.dockyard("plugin", "inspect", "dyk/again").stdout)[0]
    assert info["Enabled"] is True and info["Settings"]["Env"] == ["DEBUG=1"]
    d.dockyard("plugin", "rm", "-f", "dyk/again")
    assert d.dockyard("plugin", "ls", "-q").stdout == b""
