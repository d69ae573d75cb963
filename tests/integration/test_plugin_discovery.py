"""Plugin discovery and activation (dockyard/plugins) against real plugin processes on real sockets:
a socket in the dir, NAME/NAME.sock, a .spec file naming a socket elsewhere, a .json spec naming a
tcp address; activation's Implements; a plugin gone (dead socket, removed socket) is a clear error
after the retries, and one that comes back is activated again."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from dockyard.errors import DockyardError, NotFound
from dockyard.plugins.client import PluginGone
from dockyard.plugins.discovery import PluginStore
from tests.plugins.procs import PluginProc, calls, running


@pytest.fixture()
def root() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="plugins-disc-", dir="/tmp") as d:
        yield Path(d)


def test_discovery_by_socket_spec_and_json(root: Path) -> None:
    disc, elsewhere, log = root / "disc", root / "elsewhere", root / "calls.log"
    disc.mkdir()
    a = PluginProc("authz_plugin.py", "flat", socket=disc / "flat.sock", log=log)
    b = PluginProc("authz_plugin.py", "nested", socket=disc / "nested" / "nested.sock", log=log)
    c = PluginProc("volume_plugin.py", "byspec", socket=elsewhere / "v.sock", log=log,
                   extra=("--root", str(root / "vols")))
    t = PluginProc("authz_plugin.py", "bytcp", tcp=True, log=log)
    with running(a, b, c, t):
        (disc / "byspec.spec").write_text(f"unix://{elsewhere / 'v.sock'}\n")
        (disc / "bytcp").mkdir()
        (disc / "bytcp" / "bytcp.json").write_text(json.dumps({"Name": "bytcp", "Addr": f"tcp://127.0.0.1:{t.port}"}))
        store = PluginStore([disc], [disc], retry_seconds=0.5)
        assert sorted(store.scan()) == ["byspec", "bytcp", "flat", "nested"]
        assert store.get("flat", "authz").addr == f"unix://{disc / 'flat.sock'}"
        assert store.get("nested", "authz").implements == ["authz"]
        assert store.get("byspec", "VolumeDriver").addr == f"unix://{elsewhere / 'v.sock'}"
        assert store.get("bytcp", "authz").addr == f"tcp://127.0.0.1:{t.port}"
        assert [p.name for p in store.all("VolumeDriver")] == ["byspec"]
        # one Activate per plugin: the answer is kept
        store.get("flat")
        assert len(calls(log, "flat", "/Plugin.Activate")) == 1
        with pytest.raises(NotFound, match='plugin "nosuch" not found'):
            store.get("nosuch")
        with pytest.raises(NotFound, match="does not implement VolumeDriver"):
            store.get("flat", "VolumeDriver")


def test_gone_plugin_is_a_clear_error_and_comes_back(root: Path) -> None:
    sock, log = root / "p" / "auth.sock", root / "calls.log"
    p = PluginProc("authz_plugin.py", "auth", socket=sock, log=log)
    with running(p):
        store = PluginStore([root / "p"], [], retry_seconds=0.5)
        assert store.call("auth", "authz", "AuthZPlugin.AuthZReq", {"RequestMethod": "GET"})["Allow"] is True
        p.kill()  # crashed: the socket file stays, nobody listens
        assert sock.exists()
        with pytest.raises(PluginGone) as e:
            store.call("auth", "authz", "AuthZPlugin.AuthZReq", {})
        assert f'plugin "auth" is not reachable at unix://{sock}' in e.value.message
        assert "Connection refused" in e.value.message and "retried" in e.value.message
        p.start()  # back: found and activated again
        assert store.call("auth", "authz", "AuthZPlugin.AuthZReq", {})["Allow"] is True
        assert len(calls(log, "auth", "/Plugin.Activate")) == 2
        p.stop()  # stopped cleanly: its socket is gone too
        with pytest.raises(DockyardError, match='plugin "auth"'):
            store.call("auth", "authz", "AuthZPlugin.AuthZReq", {})
