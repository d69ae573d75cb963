"""Authorization plugins through the real docker CLI and `dockyard`: two plugins in order (one that
allows and logs, one that forbids --privileged and binds of the host's /, and withholds answers
naming a hidden label); a denial is a 403 with the plugin's message; a plugin gone is a clear error
and the daemon refuses to start without its plugins."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Daemon, own_daemon
from tests.plugins.procs import PluginProc, calls, running

DENIED = "authorization denied by plugin authz-strict"


@pytest.fixture(scope="module")
def setup() -> Iterator[tuple[Daemon, Path, PluginProc]]:
    with tempfile.TemporaryDirectory(prefix="plugins-authz-", dir="/tmp") as tmp:
        disc, log = Path(tmp) / "plugins", Path(tmp) / "calls.log"
        logger = PluginProc("authz_plugin.py", "authz-log", socket=disc / "authz-log.sock", log=log)
        strict = PluginProc("authz_plugin.py", "authz-strict", socket=disc / "authz-strict.sock", log=log,
                            extra=("--policy", "strict"))
        with running(logger, strict), own_daemon(
                "dy-authz-", "--plugin-discovery-dir", str(disc), "--plugin-retry-seconds", "1",
                "--authorization-plugin", "authz-log", "--authorization-plugin", "authz-strict") as d:
            yield d, log, strict


def test_privileged_and_root_binds_are_denied(setup: tuple[Daemon, Path, PluginProc]) -> None:
    d, _log, _ = setup
    assert d.docker("run", "--rm", "busybox", "echo", "allowed").stdout == b"allowed\n"
    with tempfile.TemporaryDirectory(prefix="plugins-authz-bind-", dir="/tmp") as ok:
        assert d.docker("run", "--rm", "-v", f"{ok}:/x", "busybox", "true").returncode == 0
    for args in (["--privileged"], ["-v", "/:/host"], ["--mount", "type=bind,src=/,dst=/host"]):
        p = d.docker("run", "--rm", *args, "busybox", "true", check=False)
        assert p.returncode != 0
        err = p.stderr.decode()
        assert DENIED in err, err
        assert ("privileged containers are forbidden here" if args == ["--privileged"]
                else "binding the host's / is forbidden here") in err
    p = d.dockyard("run", "--rm", "--privileged", "busybox", "true", check=False)
    assert p.returncode != 0 and DENIED in p.stderr.decode()
    with d.api() as c:
        r = c.post("/containers/create", json={"Image": "busybox", "HostConfig": {"Privileged": True}})
        assert r.status_code == 403
        assert r.json()["message"] == f"{DENIED}: privileged containers are forbidden here"
    # nothing was made by the denied requests
    assert d.docker("ps", "-aq").stdout == b""


def test_plugins_are_asked_in_order_request_then_response(setup: tuple[Daemon, Path, PluginProc]) -> None:
    d, log, _ = setup
    info = d.docker("info", "--format", "{{json .Plugins.Authorization}}").stdout
    assert json.loads(info) == ["authz-log", "authz-strict"]
    start = len(calls(log))
    d.docker("volume", "ls")
    seen = [(c["plugin"], c["path"]) for c in calls(log)[start:] if "/volumes" in c["body"]["RequestUri"]]
    assert seen == [("authz-log", "/AuthZPlugin.AuthZReq"), ("authz-strict", "/AuthZPlugin.AuthZReq"),
                    ("authz-log", "/AuthZPlugin.AuthZRes"), ("authz-strict", "/AuthZPlugin.AuthZRes")]
    res = [c["body"] for c in calls(log, "authz-log", "/AuthZPlugin.AuthZRes")][-1]
    assert res["RequestMethod"] == "GET" and res["ResponseStatusCode"] == 200
    assert "User-Agent" in res["RequestHeaders"]


def test_hijacked_and_streamed_calls_pass_through(setup: tuple[Daemon, Path, PluginProc]) -> None:
    """exec and attach (hijacked, JSON bodies read for AuthZReq first) and logs (streamed) still work."""
    d, log, _ = setup
    cid = d.docker("run", "-d", "busybox", "sh", "-c", "echo logged; sleep 600").stdout.decode().strip()
    try:
        assert d.docker("exec", cid, "echo", "via-exec").stdout == b"via-exec\n"
        assert d.docker("exec", "-i", cid, "cat", input=b"via-stdin").stdout == b"via-stdin"
        assert d.docker("logs", cid).stdout == b"logged\n"
        assert d.docker("run", "--rm", "-i", "busybox", "cat", input=b"attached").stdout == b"attached"
        starts = [c["body"] for c in calls(log, "authz-strict", "/AuthZPlugin.AuthZReq")
                  if "/exec/" in c["body"]["RequestUri"] and c["body"]["RequestUri"].endswith("/start")]
        assert starts and "RequestBody" in starts[-1]  # the exec start's JSON body was shown to the plugin
    finally:
        d.docker("rm", "-f", cid)


def test_response_denied_by_authzres(setup: tuple[Daemon, Path, PluginProc]) -> None:
    d, _log, _ = setup
    d.docker("create", "--name", "hidden", "--label", "authz.hide=1", "busybox", "true")
    try:
        p = d.docker("inspect", "hidden", check=False)
        assert p.returncode != 0
        assert f"{DENIED}: this answer names a hidden object" in p.stderr.decode()
    finally:
        d.docker("rm", "hidden")


def test_gone_plugin_then_back(setup: tuple[Daemon, Path, PluginProc]) -> None:
    d, _log, strict = setup
    strict.kill()
    try:
        p = d.docker("ps", check=False)
        assert p.returncode != 0
        err = p.stderr.decode()
        assert "plugin authz-strict failed with error" in err and "is not reachable" in err, err
    finally:
        strict.start()
    assert d.docker("ps").returncode == 0


def test_daemon_refuses_to_start_without_its_plugin() -> None:
    with tempfile.TemporaryDirectory(prefix="plugins-authz-none-", dir="/tmp") as tmp:
        Path(tmp, "daemon.json").write_text("{}")
        p = subprocess.run(
            [sys.executable, "-m", "dockyard.daemon.main", "-H", f"unix://{tmp}/d.sock", "--data-root",
             f"{tmp}/data", "--exec-root", f"{tmp}/run", "--config-file", f"{tmp}/daemon.json",
             "--plugin-discovery-dir", f"{tmp}/plugins", "--authorization-plugin", "absent"],
            capture_output=True, timeout=60, cwd=Path(__file__).resolve().parents[2])
        assert p.returncode != 0
        assert b'plugin "absent" not found' in p.stderr + p.stdout


def test_tls_users_are_named_to_the_plugin() -> None:
    """--tlsverify: the client certificate's CN is the User the plugin sees (UserAuthNMethod TLS); a
    plugin lets bob only read while alice may run containers (a shared daemon, several users)."""
    from tests.integration.test_remote import make_ca, make_cert

    with tempfile.TemporaryDirectory(prefix="plugins-authz-tls-", dir="/tmp") as tmp:
        t = Path(tmp)
        make_ca(t / "ca", "authz-test-ca")
        make_cert(t / "ca", t / "server", "server", "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth")
        for user in ("alice", "bob"):
            make_cert(t / "ca", t / user, user, "extendedKeyUsage=clientAuth")
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        log = t / "calls.log"
        readers = PluginProc("authz_plugin.py", "authz-readers", socket=t / "plugins" / "authz-readers.sock", log=log,
                             extra=("--policy", "readers"))
        srv = t / "server"
        with running(readers), own_daemon(
                "dy-authz-tls-", "-H", f"tcp://127.0.0.1:{port}", "--tlsverify", "--tlscacert", str(srv / "ca.pem"),
                "--tlscert", str(srv / "cert.pem"), "--tlskey", str(srv / "key.pem"),
                "--plugin-discovery-dir", str(t / "plugins"), "--authorization-plugin", "authz-readers") as d:
            def as_user(user: str, *args: str) -> subprocess.CompletedProcess[bytes]:
                env = {**d.env, "DOCKER_HOST": f"tcp://127.0.0.1:{port}", "DOCKER_TLS_VERIFY": "1",
                       "DOCKER_CERT_PATH": str(t / user)}
                return subprocess.run(["docker", *args], env=env, capture_output=True, timeout=120)

            assert as_user("alice", "run", "--rm", "busybox", "echo", "alice ran").stdout == b"alice ran\n"
            assert as_user("bob", "ps", "-a").returncode == 0
            p = as_user("bob", "run", "--rm", "busybox", "true")
            assert p.returncode != 0
            assert ("authorization denied by plugin authz-readers: user bob may only read (authenticated by TLS)"
                    in p.stderr.decode())
            seen = {(c["body"].get("User"), c["body"].get("UserAuthNMethod"))
                    for c in calls(log, "authz-readers", "/AuthZPlugin.AuthZReq")}
            assert ("alice", "TLS") in seen and ("bob", "TLS") in seen
            assert (None, None) in seen  # the unix socket's callers (the test's own setup) are nobody
