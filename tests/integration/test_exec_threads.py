"""Long-lived execs hold no daemon thread (issue 20, item 3): conmon's sync pipe, which carries an exec's
exit code (and runc create's pid), is read as the event loop sees it readable. Read in a worker thread,
each attached exec held one of the default executor's cpu+4 threads for its whole life, and with that
many running, every start, stop and file write queued behind them."""

from __future__ import annotations

import os
import subprocess

from tests.conftest import DOCKER_CLI, Daemon


def test_many_running_execs_leave_the_daemon_working(clean_daemon: Daemon) -> None:
    d = clean_daemon
    cid = d.docker("run", "-d", "busybox", "sleep", "1000").stdout.decode().strip()
    n = (os.cpu_count() or 1) + 6  # more than the default executor's threads
    execs = [subprocess.Popen([DOCKER_CLI, "exec", cid, "sleep", "1000"], env=d.env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL) for _ in range(n)]
    try:
        top = ""
        for _ in range(600):  # all n execs are running before the check
            top = d.docker("top", cid).stdout.decode()
            if top.count("sleep 1000") == n + 1:
                break
        assert top.count("sleep 1000") == n + 1, top
        # A start needs the daemon's threads (mounts, the netns, bundle files): it completes.
        p = d.docker("run", "--rm", "busybox", "echo", "still here", timeout=90)
        assert p.stdout == b"still here\n"
    finally:
        d.docker("rm", "-f", cid)
        for e in execs:
            e.wait(60)
    assert all(e.returncode is not None for e in execs)
