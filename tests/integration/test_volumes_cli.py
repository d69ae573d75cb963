"""Volumes, mounts and cp end to end: the real docker CLI against our daemon."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any as Daemon  # the conftest fixture object


def test_volume_cli_and_data_outlives_containers(clean_daemon: Daemon) -> None:
    d = clean_daemon
    d.load_busybox()
    d.docker("volume", "create", "--label", "k=v", "cli-vol")
    info = json.loads(d.docker("volume", "inspect", "cli-vol").stdout)[0]
    assert info["Name"] == "cli-vol" and info["Labels"] == {"k": "v"} and info["Scope"] == "local"
    assert "cli-vol" in d.docker("volume", "ls", "-q").stdout.decode().split()
    d.docker("run", "--rm", "-v", "cli-vol:/data", "busybox", "sh", "-c", "echo persisted > /data/f")
    out = d.docker("run", "--rm", "--read-only", "-v", "cli-vol:/data:ro", "busybox", "cat", "/data/f").stdout
    assert out == b"persisted\n"
    d.docker("create", "--name", "holder", "-v", "cli-vol:/data", "busybox", "true")
    p = d.docker("volume", "rm", "cli-vol", check=False)
    assert p.returncode != 0 and b"volume is in use" in p.stderr
    d.docker("rm", "holder")
    d.docker("volume", "rm", "cli-vol")


def test_mounts_in_inspect_and_bind_errors(clean_daemon: Daemon) -> None:
    d = clean_daemon
    d.load_busybox()
    with tempfile.TemporaryDirectory() as host:
        d.docker("create", "--name", "m1", "-v", f"{host}:/h:ro", "-v", "/anon",
                 "--mount", "type=tmpfs,dst=/t", "busybox", "true")
        mounts = {m["Destination"]: m for m in json.loads(d.docker("inspect", "m1").stdout)[0]["Mounts"]}
        assert mounts["/h"]["Type"] == "bind" and mounts["/h"]["RW"] is False
        assert mounts["/anon"]["Type"] == "volume" and mounts["/t"]["Type"] == "tmpfs"
        anon = mounts["/anon"]["Name"]
        d.docker("rm", "-v", "m1")
        assert anon not in d.docker("volume", "ls", "-q").stdout.decode()
    p = d.docker("run", "--rm", "--mount", "type=bind,src=/nonexistent-dockyard,dst=/x", "busybox", "true",
                 check=False)
    assert p.returncode != 0 and b"bind source path does not exist: /nonexistent-dockyard" in p.stderr


def test_cp_both_ways_and_symlink_escape(clean_daemon: Daemon) -> None:
    d = clean_daemon
    d.load_busybox()
    d.docker("run", "-d", "--name", "cp1", "busybox", "sh", "-c",
             "ln -s / /rootlink; ln -s /etc /etclink; echo inside > /file; sleep 300")
    try:
        with tempfile.TemporaryDirectory() as tmp:
            src = Path(tmp) / "in.txt"
            src.write_text("from host")
            d.docker("exec", "cp1", "true")
            d.docker("cp", str(src), "cp1:/tmp/in.txt")
            assert d.docker("exec", "cp1", "cat", "/tmp/in.txt").stdout == b"from host"
            d.docker("cp", "cp1:/etclink/passwd", f"{tmp}/pw")
            assert (Path(tmp) / "pw").read_text() != Path("/etc/passwd").read_text()
            d.docker("cp", str(src), "cp1:/rootlink/escaped.txt")
            assert not os.path.exists("/escaped.txt")
            assert d.docker("exec", "cp1", "cat", "/escaped.txt").stdout == b"from host"
    finally:
        d.docker("rm", "-f", "cp1")
