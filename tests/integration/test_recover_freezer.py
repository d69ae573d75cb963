"""Recovery after `kill -9` reads a running container's pause from its freezer cgroup (no `runc state`
per container): a container runc paused behind the daemon's back is recorded paused after the restart,
and the others stay running and manageable."""

from __future__ import annotations

import json
import shutil
import subprocess

from conftest import Daemon, own_daemon


def _runc(d: Daemon, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([shutil.which("runc") or "runc", "--root", str(d.exec_root / "runtime" / "runc"), *args],
                          capture_output=True, text=True)


def test_kill9_recovery_sees_a_pause_made_behind_its_back() -> None:
    with own_daemon("dy-frz-") as d:
        ids = [d.docker("run", "-d", "busybox", "sleep", "600").stdout.decode().strip() for _ in range(3)]
        d.kill()
        assert _runc(d, "pause", ids[0]).returncode == 0  # the record still says running
        d.start()
        states = {cid: json.loads(d.docker("inspect", cid).stdout)[0]["State"]["Status"] for cid in ids}
        assert states == {ids[0]: "paused", ids[1]: "running", ids[2]: "running"}
        assert json.loads(_runc(d, "state", ids[1]).stdout)["status"] == "running"
        d.docker("unpause", ids[0])
        d.docker("exec", ids[1], "true")
        d.docker("exec", ids[0], "true")
