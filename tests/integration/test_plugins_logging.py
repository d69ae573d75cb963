"""Logging plugins through the real docker CLI: --log-driver NAME of a plugin (tests/plugins/
log_plugin.py, a real process on a real socket) gets StartLogging with a FIFO and the container's
lines as protobuf LogEntry frames (decoded by the plugin's own reader), StopLogging at exit;
`docker logs` comes from the plugin's ReadLogs when it can read, from the local copy otherwise."""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dockyard.plugins.logentry import FrameReader, LogEntry, encode
from tests.conftest import Daemon, own_daemon
from tests.plugins.procs import PluginProc, calls, running


def test_logentry_wire_format() -> None:
    # protobuf's encoding of LogEntry{source: "stdout", time_nano: 300, line: "hi", partial: true}, by hand:
    # field 1 (0x0a) len 6; field 2 varint (0x10) 300 = ac 02; field 3 (0x1a) len 2; field 4 (0x20) 1
    msg = b"\x0a\x06stdout\x10\xac\x02\x1a\x02hi\x20\x01"
    assert encode(LogEntry("stdout", 300, b"hi", True)) == len(msg).to_bytes(4, "big") + msg
    frames = encode(LogEntry("stderr", 1, b"")) + encode(LogEntry("stdout", 2**62, b"x" * 200))
    r = FrameReader()
    got = [*r.feed(frames[:7]), *r.feed(frames[7:])]
    assert got == [LogEntry("stderr", 1, b""), LogEntry("stdout", 2**62, b"x" * 200)]


@pytest.fixture(scope="module")
def setup() -> Iterator[tuple[Daemon, Path, Path]]:
    with tempfile.TemporaryDirectory(prefix="plugins-log-", dir="/tmp") as tmp:
        disc, log, root = Path(tmp) / "plugins", Path(tmp) / "calls.log", Path(tmp) / "logs"
        reader = PluginProc("log_plugin.py", "shiplog", socket=disc / "shiplog.sock", log=log,
                            extra=("--root", str(root)))
        blind = PluginProc("log_plugin.py", "blindlog", socket=disc / "blindlog.sock", log=log,
                           extra=("--root", str(root), "--no-read"))
        with running(reader, blind), own_daemon("dy-plog-", "--plugin-discovery-dir", str(disc),
                                                "--plugin-retry-seconds", "1") as d:
            yield d, log, root


def _stopped(log: Path, plugin: str, n: int) -> None:
    """Wait for the n-th StopLogging (the daemon ships the last lines after the container exits)."""
    for _ in range(300):
        if len(calls(log, plugin, "/LogDriver.StopLogging")) >= n:
            return
        time.sleep(0.05)
    raise AssertionError(f"{plugin}: no StopLogging #{n}")


def _kept(root: Path, cid: str) -> list[dict[str, Any]]:
    return [json.loads(x) for x in (root / f"{cid}.jsonl").read_text().splitlines()]


def test_lines_go_to_the_plugin_and_logs_come_back(setup: tuple[Daemon, Path, Path]) -> None:
    d, log, root = setup
    before = len(calls(log, "shiplog", "/LogDriver.StopLogging"))
    p = d.docker("run", "--name", "shipped", "--log-driver", "shiplog", "--log-opt", "tag=t1", "busybox", "sh", "-c",
                 "echo out; echo err >&2; printf partial")
    cid = d.docker("inspect", "-f", "{{.Id}}", "shipped").stdout.decode().strip()
    try:
        assert p.stdout == b"out\npartial"
        _stopped(log, "shiplog", before + 1)
        start = calls(log, "shiplog", "/LogDriver.StartLogging")[-1]["body"]
        stop = calls(log, "shiplog", "/LogDriver.StopLogging")[-1]["body"]
        assert start["File"] == stop["File"] and start["Info"]["ContainerID"] == cid
        info = start["Info"]
        assert info["ContainerName"] == "/shipped" and info["Config"] == {"tag": "t1"}
        assert info["ContainerEntrypoint"] == "sh" and info["ContainerImageName"] == "busybox"
        kept = _kept(root, cid)
        assert sorted((e["source"], e["line"], e["partial"]) for e in kept) == [
            ("stderr", "err", False), ("stdout", "out", False), ("stdout", "partial", True)]
        assert all(e["time_nano"] > 1_600_000_000 * 10**9 for e in kept)
        lc = json.loads(d.docker("inspect", cid).stdout)[0]["HostConfig"]["LogConfig"]
        assert lc == {"Type": "shiplog", "Config": {"tag": "t1"}}
        # `docker logs` is the plugin's ReadLogs: a line only the plugin holds shows up
        with open(root / f"{cid}.jsonl", "a") as f:
            f.write(json.dumps({"source": "stdout", "time_nano": kept[-1]["time_nano"] + 1,
                                "line": "only-in-the-plugin", "partial": False}) + "\n")
        out = d.docker("logs", "shipped")
        assert b"only-in-the-plugin\n" in out.stdout and out.stderr == b"err\n"
        assert calls(log, "shiplog", "/LogDriver.ReadLogs")[-1]["body"]["Config"]["Tail"] == -1
        assert d.docker("logs", "--tail", "1", "shipped").stdout == b"only-in-the-plugin\n"
        assert b"only-in-the-plugin" in d.dockyard("logs", "shipped").stdout
        # started again: only the new run's lines go to the plugin
        d.docker("start", "-a", "shipped")
        _stopped(log, "shiplog", before + 2)
        # The lines are in the fifo before StopLogging (dockerd's order too: StopLogging, then the stream
        # closes), but the plugin's reader thread may write the last one after answering it (CI, session 6).
        deadline = time.monotonic() + 10
        while len(_kept(root, cid)) < 4 + 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(_kept(root, cid)) == 4 + 3
    finally:
        d.docker("rm", "-f", "shipped")


def test_plugin_that_cannot_read_falls_back_to_the_local_copy(setup: tuple[Daemon, Path, Path]) -> None:
    d, log, root = setup
    before = len(calls(log, "blindlog", "/LogDriver.StopLogging"))
    d.docker("run", "--name", "blind", "--log-driver", "blindlog", "busybox", "echo", "kept-locally")
    try:
        _stopped(log, "blindlog", before + 1)
        cid = d.docker("inspect", "-f", "{{.Id}}", "blind").stdout.decode().strip()
        assert [e["line"] for e in _kept(root, cid)] == ["kept-locally"]
        assert d.docker("logs", "blind").stdout == b"kept-locally\n"
        assert not calls(log, "blindlog", "/LogDriver.ReadLogs")
    finally:
        d.docker("rm", "-f", "blind")


def test_unknown_log_driver(setup: tuple[Daemon, Path, Path]) -> None:
    d, _log, _root = setup
    p = d.docker("run", "--rm", "--log-driver", "nosuch", "busybox", "true", check=False)
    assert p.returncode != 0
    assert 'error looking up logging plugin nosuch: plugin "nosuch" not found' in p.stderr.decode()
