"""Managed plugins through the real docker CLI: the test volume driver (tests/plugins/volume_plugin.py)
packaged as a plugin dir (config.json + rootfs/), `docker plugin create`, ls, inspect, set, enable (it
runs under runc and makes its socket in /run/docker/plugins inside), used by `volume create -d` and a
container (paths it answers with are inside its rootfs), then disable and rm."""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Daemon, own_daemon

PLUGINS = Path(__file__).resolve().parents[1] / "plugins"
NAME = "dyk/dirvol"


def make_plugin_dir(dest: Path) -> Path:
    """A plugin dir: the driver's scripts in rootfs/plugin; the host's /usr (its python) mounted read-only."""
    rootfs = dest / "rootfs"
    for d in ("plugin", "usr", "data", "run/docker/plugins", "tmp", "proc", "dev", "sys", "etc"):
        (rootfs / d).mkdir(parents=True, exist_ok=True)
    for link, target in (("bin", "usr/bin"), ("lib", "usr/lib"), ("lib64", "usr/lib64"), ("sbin", "usr/sbin")):
        (rootfs / link).symlink_to(target)
    for script in ("volume_plugin.py", "pluginhttp.py"):
        shutil.copy(PLUGINS / script, rootfs / "plugin" / script)
    (dest / "config.json").write_text(json.dumps({
        "description": "a local-directory volume driver (Dockyard's tests)",
        "documentation": "tests/plugins/volume_plugin.py",
        "entrypoint": ["/usr/bin/python3", "/plugin/volume_plugin.py", "--name", "dirvol",
                       "--socket", "/run/docker/plugins/dirvol.sock", "--root", "/data"],
        "network": {"type": "none"},
        "interface": {"types": ["docker.volumedriver/1.0"], "socket": "dirvol.sock"},
        "mounts": [{"name": "usr", "source": "/usr", "destination": "/usr", "type": "bind",
                    "options": ["rbind", "ro"], "settable": ["source"]}],
        "env": [{"name": "DEBUG", "settable": ["value"], "value": "0"}],
    }))
    return dest


@pytest.fixture(scope="module")
def daemon_and_dir() -> Iterator[tuple[Daemon, Path]]:
    with tempfile.TemporaryDirectory(prefix="plugins-managed-", dir="/tmp") as tmp:
        with own_daemon("dy-pman-", "--plugin-discovery-dir", str(Path(tmp) / "none"),
                        "--plugin-retry-seconds", "1") as d:
            yield d, make_plugin_dir(Path(tmp) / "dirvol")
            for p in json.loads(d.docker("plugin", "ls", "--format", "{{json .}}").stdout.decode().strip()
                                .replace("\n", ",").join("[]")):
                d.docker("plugin", "rm", "-f", p["Name"], check=False)


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
    assert d.docker("plugin", "ls", "-q").stdout == b""
    p = d.docker("plugin", "inspect", NAME, check=False)
    assert p.returncode != 0 and b"not found" in p.stderr


def test_install_from_a_registry_says_it_is_not_built(daemon_and_dir: tuple[Daemon, Path]) -> None:
    d, _ = daemon_and_dir
    p = d.docker("plugin", "install", "--grant-all-permissions", "127.0.0.1:1/x/y", check=False)
    assert p.returncode != 0 and b"not supported by Dockyard yet" in p.stderr
