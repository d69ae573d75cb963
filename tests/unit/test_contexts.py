"""Context store (docker's layout), endpoint resolution order, host parsing; cross-checked with the real CLI."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from dockyard.client.contexts import Context, ContextError, ContextStore, resolve
from dockyard.client.ssh import SSHTarget
from dockyard.client.transport import parse_host

DOCKER = shutil.which("docker") or "/usr/local/bin/docker"
PEM = b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"


@pytest.fixture()
def cfg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for k in ("DOCKER_HOST", "DOCKER_CONTEXT", "DOCKER_TLS_VERIFY", "DOCKER_CERT_PATH", "DOCKER_TLS"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    return tmp_path


def test_layout_matches_docker(cfg: Path) -> None:
    store = ContextStore()
    store.create(Context("foo", "tcp://10.0.0.1:2376", "desc", tls={"ca.pem": PEM}))
    h = hashlib.sha256(b"foo").hexdigest()
    meta = json.loads((cfg / "contexts" / "meta" / h / "meta.json").read_text())
    assert meta == {"Name": "foo", "Metadata": {"Description": "desc"},
                    "Endpoints": {"docker": {"Host": "tcp://10.0.0.1:2376", "SkipTLSVerify": False}}}
    assert (cfg / "contexts" / "tls" / h / "docker" / "ca.pem").read_bytes() == PEM
    store.set_current("foo")
    assert json.loads((cfg / "config.json").read_text())["currentContext"] == "foo"
    with pytest.raises(ContextError, match="in use"):
        store.remove("foo")
    store.remove("foo", force=True)
    assert store.current() == "default" and not (cfg / "contexts" / "meta" / h).exists()


def test_names_validated(cfg: Path) -> None:
    for bad in ("default", "bad name", "-x", "a"):
        with pytest.raises(ContextError):
            ContextStore().create(Context(bad, "tcp://h:1"))


def test_resolution_order(cfg: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = ContextStore()
    store.create(Context("ca", "tcp://a:1"))
    store.create(Context("cb", "tcp://b:1"))
    store.set_current("ca")
    assert resolve().host == "tcp://a:1"
    monkeypatch.setenv("DOCKER_CONTEXT", "cb")
    assert resolve().host == "tcp://b:1"
    monkeypatch.setenv("DOCKER_HOST", "unix:///x.sock")  # DOCKER_HOST means the default context
    assert resolve().context == "default" and resolve().host == "unix:///x.sock"
    assert resolve("ca").host == "tcp://a:1"  # --context wins
    assert resolve(None, ["tcp://h:2"]).host == "tcp://h:2"
    with pytest.raises(ContextError, match="conflicting options"):
        resolve("ca", ["tcp://h:2"])


def test_tls_env(cfg: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    certs = cfg / "certs"
    certs.mkdir()
    (certs / "ca.pem").write_bytes(PEM)
    monkeypatch.setenv("DOCKER_TLS_VERIFY", "1")
    monkeypatch.setenv("DOCKER_CERT_PATH", str(certs))
    ep = resolve(None, ["tcp://h"])
    assert ep.tls is not None and ep.tls.verify and ep.tls.ca == PEM and ep.tls.cert is None
    assert Context("x", "tcp://h", skip_tls_verify=True).tls_options() is not None
    assert Context("x", "tcp://h").tls_options() is None


def test_parse_host_ports() -> None:
    assert parse_host("tcp://h", tls=True).port == 2376
    assert parse_host("tcp://h").port == 2375
    assert parse_host("tcp://h:9").port == 9
    assert parse_host("tcp://[::1]").address == "::1"
    assert parse_host("ssh://u@h:2200").scheme == "ssh"
    with pytest.raises(ValueError):
        parse_host("ftp://h")


def test_ssh_command() -> None:
    t = SSHTarget.parse("ssh://me@example:2200")
    assert t.command()[-5:] == ["--", "example", "dockyard", "system", "dial-stdio"]
    assert ["-l", "me"] == t.command()[t.command().index("-l"):][:2]
    assert ["-p", "2200"] == t.command()[t.command().index("-p"):][:2]
    with pytest.raises(ValueError):
        SSHTarget.parse("ssh://u:pw@h")


@pytest.mark.skipif(not os.path.exists(DOCKER), reason="no docker CLI")
def test_export_import_with_real_cli(cfg: Path) -> None:
    env = {**os.environ, "DOCKER_CONFIG": str(cfg)}
    store = ContextStore()
    store.create(Context("ours", "ssh://root@h", "mine", skip_tls_verify=True))
    (cfg / "ours.tar").write_bytes(store.export("ours"))
    subprocess.run([DOCKER, "context", "import", "viadocker", str(cfg / "ours.tar")], env=env, check=True,
                   capture_output=True)
    assert store.get("viadocker").host == "ssh://root@h"
    # docker's export lacks the tar end blocks; ours must still read it
    theirs = subprocess.run([DOCKER, "context", "export", "viadocker", "-"], env=env, check=True,
                            capture_output=True).stdout
    store.import_("back", theirs)
    back = store.get("back")
    assert (back.host, back.description, back.skip_tls_verify) == ("ssh://root@h", "mine", True)
