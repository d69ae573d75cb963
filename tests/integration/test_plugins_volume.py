"""Volume plugins through the real docker CLI: a local-directory volume driver (tests/plugins/
volume_plugin.py, a real process on a real socket) makes, mounts and removes the volumes;
`volume create -d`, `-v vol:/path`, `--volume-driver`, `--mount ...,volume-driver=,volume-opt=`;
one Mount per container (ID = the container) matched by one Unmount at its exit; inspect shows the
driver's Status; the plugin's errors and a missing plugin are worded as dockerd's."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Daemon, own_daemon
from tests.plugins.procs import PluginProc, calls, running


@pytest.fixture(scope="module")
def setup() -> Iterator[tuple[Daemon, Path, Path]]:
    with tempfile.TemporaryDirectory(prefix="plugins-vol-", dir="/tmp") as tmp:
        disc, log, root = Path(tmp) / "plugins", Path(tmp) / "calls.log", Path(tmp) / "vols"
        drv = PluginProc("volume_plugin.py", "dirvol", socket=disc / "dirvol.sock", log=log,
                         extra=("--root", str(root), "--global", "--path-only"))
        args = ("--plugin-discovery-dir", str(disc), "--plugin-retry-seconds", "1")
        with running(drv), own_daemon("dy-pvol-", *args) as d:
            d.args = args  # type: ignore[attr-defined]  # to start it again the same way
            yield d, log, root
            d.cleanup_containers()
            for name in d.docker("volume", "ls", "-q").stdout.decode().split():
                d.docker("volume", "rm", "-f", name, check=False)


def _inspect(d: Daemon, name: str) -> dict[str, Any]:
    out: dict[str, Any] = json.loads(d.docker("volume", "inspect", name).stdout)[0]
    return out


def _balanced(log: Path) -> None:
    """Every Mount was matched by one Unmount with the same ID."""
    mounts = sorted((c["body"]["Name"], c["body"]["ID"]) for c in calls(log, "dirvol", "/VolumeDriver.Mount"))
    unmounts = sorted((c["body"]["Name"], c["body"]["ID"]) for c in calls(log, "dirvol", "/VolumeDriver.Unmount"))
    assert mounts == unmounts


def test_create_inspect_use_and_remove(setup: tuple[Daemon, Path, Path]) -> None:
    d, log, root = setup
    d.docker("volume", "create", "-d", "dirvol", "-o", "size=1m", "--label", "k=v", "pv1")
    assert calls(log, "dirvol", "/VolumeDriver.Create")[-1]["body"] == {"Name": "pv1", "Opts": {"size": "1m"}}
    v = _inspect(d, "pv1")
    assert v["Driver"] == "dirvol" and v["Labels"] == {"k": "v"} and v["Options"] == {"size": "1m"}
    assert v["Mountpoint"] == str(root / "volumes" / "pv1")
    assert v["Status"] == {"mounts": 0, "opts": {"size": "1m"}}
    assert v["Scope"] == "global"  # the driver's Capabilities
    assert calls(log, "dirvol", "/VolumeDriver.Path")[-1]["body"] == {"Name": "pv1"}  # Get gave no Mountpoint
    assert "dirvol    pv1" in d.docker("volume", "ls").stdout.decode()
    assert json.loads(d.docker("info", "--format", "{{json .Plugins.Volume}}").stdout) == ["local", "dirvol"]
    cid = d.docker("run", "-d", "-v", "pv1:/data", "busybox", "sh", "-c", "echo hi > /data/f").stdout.decode().strip()
    d.docker("wait", cid)
    assert (root / "volumes" / "pv1" / "f").read_text() == "hi\n"
    mount = calls(log, "dirvol", "/VolumeDriver.Mount")[-1]["body"]
    assert mount == {"Name": "pv1", "ID": cid}
    assert calls(log, "dirvol", "/VolumeDriver.Unmount")[-1]["body"] == {"Name": "pv1", "ID": cid}
    m = json.loads(d.docker("inspect", cid).stdout)[0]["Mounts"][0]
    assert m["Type"] == "volume" and m["Driver"] == "dirvol" and m["Source"] == str(root / "volumes" / "pv1")
    p = d.docker("volume", "rm", "pv1", check=False)
    assert p.returncode != 0 and b"volume is in use" in p.stderr
    d.docker("rm", cid)
    d.docker("volume", "rm", "pv1")
    assert calls(log, "dirvol", "/VolumeDriver.Remove")[-1]["body"] == {"Name": "pv1"}
    assert not (root / "volumes" / "pv1").exists()
    assert b"pv1" not in d.docker("volume", "ls", "-q").stdout
    _balanced(log)


def test_mounts_are_counted_per_container(setup: tuple[Daemon, Path, Path]) -> None:
    d, log, _root = setup
    d.docker("volume", "create", "-d", "dirvol", "shared")
    a = d.docker("run", "-d", "-v", "shared:/s", "busybox", "sleep", "600").stdout.decode().strip()
    b = d.docker("run", "-d", "-v", "shared:/s", "busybox", "sleep", "600").stdout.decode().strip()
    try:
        assert _inspect(d, "shared")["Status"]["mounts"] == 2
        d.docker("exec", a, "sh", "-c", "echo from-a > /s/x")
        assert d.docker("exec", b, "cat", "/s/x").stdout == b"from-a\n"
        d.docker("stop", "-t", "0", a)
        assert _inspect(d, "shared")["Status"]["mounts"] == 1  # b still has it
        d.docker("start", a)  # mounted again for a
        assert _inspect(d, "shared")["Status"]["mounts"] == 2
    finally:
        d.docker("rm", "-f", a, b)
    assert _inspect(d, "shared")["Status"]["mounts"] == 0
    d.docker("volume", "rm", "shared")
    _balanced(log)


def test_mount_pairing_survives_a_daemon_restart(setup: tuple[Daemon, Path, Path]) -> None:
    d, log, _root = setup
    d.docker("volume", "create", "-d", "dirvol", "across")
    cid = d.docker("run", "-d", "-v", "across:/a", "busybox", "sleep", "600").stdout.decode().strip()
    try:
        d.stop()
        d.start(*d.args)  # type: ignore[attr-defined]
        assert json.loads(d.docker("inspect", cid).stdout)[0]["State"]["Running"] is True
        assert _inspect(d, "across")["Status"]["mounts"] == 1
        d.docker("stop", "-t", "0", cid)  # the exit after the restart still unmounts with the same ID
        assert calls(log, "dirvol", "/VolumeDriver.Unmount")[-1]["body"] == {"Name": "across", "ID": cid}
        assert _inspect(d, "across")["Status"]["mounts"] == 0
    finally:
        d.docker("rm", "-f", cid)
    d.docker("volume", "rm", "across")
    _balanced(log)


def test_mount_flag_volume_driver_and_copy_up(setup: tuple[Daemon, Path, Path]) -> None:
    d, log, root = setup
    d.docker("run", "--rm", "--mount", "type=volume,src=pv2,dst=/d,volume-driver=dirvol,volume-opt=color=blue",
             "busybox", "sh", "-c", "echo m > /d/f")
    assert calls(log, "dirvol", "/VolumeDriver.Create")[-1]["body"] == {"Name": "pv2", "Opts": {"color": "blue"}}
    assert (root / "volumes" / "pv2" / "f").read_text() == "m\n"
    d.docker("run", "--rm", "--volume-driver", "dirvol", "-v", "pv3:/etc", "busybox", "true")
    assert _inspect(d, "pv3")["Driver"] == "dirvol"
    assert (root / "volumes" / "pv3" / "passwd").exists()  # the image's /etc copied up into the new volume
    out = d.dockyard("volume", "inspect", "pv3").stdout
    assert json.loads(out)[0]["Status"] == {"mounts": 0, "opts": {}}
    d.docker("volume", "rm", "pv2", "pv3")
    _balanced(log)


def test_errors(setup: tuple[Daemon, Path, Path]) -> None:
    d, _log, _root = setup
    p = d.docker("volume", "create", "-d", "dirvol", "-o", "fail=disk on fire", "bad", check=False)
    assert p.returncode != 0
    assert "create bad: VolumeDriver.Create: disk on fire" in p.stderr.decode()
    assert b"bad" not in d.docker("volume", "ls", "-q").stdout
    p = d.docker("volume", "create", "-d", "nosuch", "x", check=False)
    assert p.returncode != 0
    assert 'create x: error looking up volume plugin nosuch: plugin "nosuch" not found' in p.stderr.decode()
    # a 404, as dockerd's (the docker CLI takes any 404 at create for a missing image and pulls: asked directly)
    with d.api() as c:
        r = c.post("/containers/create", json={"Image": "busybox", "HostConfig": {"Mounts": [
            {"Type": "volume", "Source": "yy", "Target": "/y", "VolumeOptions": {"DriverConfig": {"Name": "nosuch"}}}]}})
        assert r.status_code == 404
        assert r.json()["message"] == 'create yy: error looking up volume plugin nosuch: plugin "nosuch" not found'
    assert d.docker("ps", "-aq").stdout == b""
