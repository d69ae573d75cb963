"""Fifty clients follow one container's log while it writes 100,000 lines: each gets every line, in order
(issue 20, item 3). Half follow with the real `docker logs -f`, half through the API (`follow=1`)."""

from __future__ import annotations

import os
import subprocess
import threading
import time
from pathlib import Path

import pytest

from tests.conftest import DOCKER_CLI, Daemon

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (runs containers)")

FOLLOWERS = 50
LINES = 100_000
# It says it is ready, waits until the test has seen every follower read that line, then writes.
SCRIPT = f"echo ready; while [ ! -e /go ]; do sleep 0.05; done; seq 1 {LINES}"


def _demux(data: bytes) -> bytes:
    """stdout of a multiplexed log stream (8-byte frame headers)."""
    out, i = bytearray(), 0
    while i + 8 <= len(data):
        n = int.from_bytes(data[i + 4:i + 8], "big")
        if data[i] == 1:
            out += data[i + 8:i + 8 + n]
        i += 8 + n
    assert i == len(data), "a frame was cut short"
    return bytes(out)


def test_fifty_followers_get_every_line_in_order(clean_daemon: Daemon, tmp_path: Path) -> None:
    d = clean_daemon
    cid = d.docker("run", "-d", "--network", "none", "busybox", "sh", "-c", SCRIPT).stdout.decode().strip()
    want = b"ready\n" + b"".join(b"%d\n" % i for i in range(1, LINES + 1))
    outs = [tmp_path / f"follower-{i}.out" for i in range(FOLLOWERS)]
    procs: list[subprocess.Popen[bytes]] = []
    threads: list[threading.Thread] = []
    errors: list[BaseException] = []
    try:
        for i, out in enumerate(outs):
            if i % 2 == 0:  # the docker CLI
                with open(out, "wb") as f:
                    procs.append(subprocess.Popen([DOCKER_CLI, "logs", "-f", cid], env=d.env, stdout=f,
                                                  stderr=subprocess.DEVNULL))
            else:  # the API, written to the file as it arrives
                def follow(out: Path = out) -> None:
                    try:
                        with d.api() as c, c.stream("GET", f"/containers/{cid}/logs",
                                                    params={"follow": "1", "stdout": "1", "stderr": "1"},
                                                    timeout=None) as r, open(out, "wb") as f:
                            assert r.status_code == 200
                            for chunk in r.iter_raw():
                                f.write(chunk)
                                f.flush()
                    except BaseException as e:  # noqa: BLE001 - reported by the test thread
                        errors.append(e)
                threads.append(threading.Thread(target=follow, daemon=True))
                threads[-1].start()

        def seen_ready(out: Path, api: bool) -> bool:
            data = out.read_bytes() if out.exists() else b""
            return (len(data) >= 14 and data[8:14] == b"ready\n") if api else data.startswith(b"ready\n")
        deadline = time.monotonic() + 120
        while not all(seen_ready(o, i % 2 == 1) for i, o in enumerate(outs)):
            assert time.monotonic() < deadline, "not every follower got the first line"
            assert not errors, errors
            time.sleep(0.1)
        # Every follower is attached and following; only now does the container write its lines.
        d.docker("exec", cid, "touch", "/go")
        assert d.docker("wait", cid, timeout=300).stdout.strip() == b"0"
        for p in procs:
            assert p.wait(300) == 0
        for t in threads:
            t.join(300)
            assert not t.is_alive(), "an API follower did not end when the container exited"
        assert not errors, errors
        for i, out in enumerate(outs):
            got = out.read_bytes()
            if i % 2 == 1:
                got = _demux(got)
            if got != want:
                lines, wanted = got.split(b"\n"), want.split(b"\n")
                first = next((n for n, (a, b) in enumerate(zip(lines, wanted, strict=False)) if a != b), min(len(lines), len(wanted)))
                raise AssertionError(f"follower {i} ({'API' if i % 2 else 'CLI'}): {len(lines) - 1} lines of "
                                     f"{LINES + 1}, first difference at line {first}")
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        d.docker("rm", "-f", cid, check=False)
