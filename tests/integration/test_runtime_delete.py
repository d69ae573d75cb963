"""A stopped container's runtime state goes without a `runc delete` process when nothing of it is left
(its cgroups rmdir'd, runc's state dir removed: runtime/monitor.py _delete_stopped), and through runc
delete --force when something is: a process that outlived the init (--pid host) is killed and its
cgroups go either way."""

from __future__ import annotations

import glob
import json
import subprocess
import time

from tests.conftest import Daemon


def cgroups_of(cid: str) -> list[str]:
    return glob.glob(f"/sys/fs/cgroup/*/*/{cid}") + glob.glob(f"/sys/fs/cgroup/*/{cid}")


def ops(d: Daemon, cid: str) -> list[str]:
    out = d.dockyard("trace", "--format", "json", cid).stdout.decode().splitlines()
    return [json.loads(x)["Op"] for x in out]


def settled(d: Daemon, cid: str) -> None:
    d.docker("wait", cid)
    for _ in range(200):  # the exit's cleanup runs after the wait answers
        if not cgroups_of(cid) and any("umount2" in o and "/netns/" in o for o in ops(d, cid)):
            return
        time.sleep(0.05)


def test_a_stopped_container_needs_no_runc_delete(clean_daemon: Daemon) -> None:
    d = clean_daemon
    cid = d.docker("run", "-d", "busybox", "true").stdout.decode().strip()
    settled(d, cid)
    assert cgroups_of(cid) == []
    done = ops(d, cid)
    assert any(o.startswith("runc delete's work: rmdir ") for o in done), done
    assert not any(o.startswith("runc delete ") for o in done), done  # no runc process
    assert not glob.glob(str(d.exec_root / "runtime" / "*" / cid))  # runc's state dir
    d.docker("start", cid)  # and runc makes it again as if it had deleted it itself
    settled(d, cid)
    d.docker("rm", cid)


def test_a_process_left_after_the_init_goes_through_runc(clean_daemon: Daemon) -> None:
    d = clean_daemon
    cid = d.docker("run", "-d", "--pid", "host", "busybox", "sh", "-c", "sleep 4242 & exit 0").stdout.decode().strip()
    settled(d, cid)
    assert cgroups_of(cid) == []
    assert any(o.startswith("runc delete --force") for o in ops(d, cid))
    left = subprocess.run(["pgrep", "-f", "sleep 4242"], capture_output=True, text=True).stdout.split()
    assert left == []
    d.docker("rm", cid)
