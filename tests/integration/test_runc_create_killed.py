"""A `runc create` SIGKILLed once its init is set up: the chaos run (bench/chaos/chaos.py, which kills
runc and conmon processes at random moments) saw `docker build -q -t chaos-2-build100 -` (FROM busybox,
one RUN step) get no answer within 30 s.

runc create tells its init to go on, then writes its state.json and its pid file and exits. Killed in
between, it leaves the init alive, waiting on runc's exec fifo for a `runc start` nobody will send,
and holding the container's stderr, conmon's pipe. conmon 2.1.x, seeing its runtime fail, reads
that pipe for runc's error message before it reports the failure on its sync pipe, and the read
blocks as long as the init lives: the daemon waited for conmon's answer for 60 s (its last-resort
timeout), with the container's lock held, and the build (or `docker run`/`start`) with it.

The kill is timed by a wrapper runtime: it runs the real `runc create` to its end, removes what runc
would not have written yet had it been killed earlier (the pid file; with "state", its state.json too),
then waits to be SIGKILLed, as the chaos thread does."""

from __future__ import annotations

import asyncio
import glob
import os
import select
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import DOCKER_CLI, conmon_pids_for, own_daemon


def _wrapper(tmp_path: Path, drop_state: bool) -> Path:
    runc = shutil.which("runc") or "/usr/sbin/runc"
    wrapper = tmp_path / "held-runc"
    wrapper.write_text(
        "#!/bin/sh\n"
        "create= root= pidfile= prev= id=\n"
        'for a in "$@"; do\n'
        '  [ "$prev" = --root ] && root=$a; [ "$prev" = --pid-file ] && pidfile=$a\n'
        '  [ "$a" = create ] && create=1; prev=$a; id=$a\n'
        "done\n"
        f'if [ -z "$create" ] || [ -e {tmp_path}/once ]; then exec {runc} "$@"; fi\n'
        f"touch {tmp_path}/once\n"
        f'{runc} "$@" || exit $?\n'
        'rm -f "$pidfile"\n'
        + ('rm -f "$root/$id/state.json"\n' if drop_state else "")
        + f"echo $$ > {tmp_path}/create.pid\n"
        f"echo $id > {tmp_path}/cid\n"
        "exec >/dev/null 2>&1\n"  # the wrapper's own stdio is not what holds conmon's pipes
        f"mkfifo {tmp_path}/hold\n"
        f"touch {tmp_path}/ready\n"
        f"read x < {tmp_path}/hold\n")  # held in the shell itself, no child of its own, until killed
    wrapper.chmod(0o755)
    return wrapper


def _children(pid: int) -> list[int]:
    kids: list[int] = []
    for tid in os.listdir(f"/proc/{pid}/task"):
        kids += [int(k) for k in Path(f"/proc/{pid}/task/{tid}/children").read_text().split()]
    return kids


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def _cgroups_of(cid: str) -> list[str]:
    return glob.glob(f"/sys/fs/cgroup/*/*/{cid}") + glob.glob(f"/sys/fs/cgroup/*/{cid}")


def _end_stuck_init(init_fd: int) -> None:
    """Before the fix the stuck init (and so conmon) are the test's to end; -1: none was found."""
    if init_fd < 0:
        return
    try:
        signal.pidfd_send_signal(init_fd, signal.SIGKILL)
        select.select([init_fd], [], [], 10)
    except OSError:
        pass
    os.close(init_fd)


@pytest.mark.parametrize("killed_before", ["pid-file", "state"])
def test_a_build_whose_runc_create_is_killed_fails_at_once(tmp_path: Path, killed_before: str) -> None:
    wrapper = _wrapper(tmp_path, drop_state=killed_before == "state")
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_bytes(b"FROM busybox\nRUN echo built > /built\n")
    try:
        _build_with_create_killed(tmp_path, wrapper, dockerfile)
    finally:  # before the fix, a killed create's cgroups stayed: the host is left clean regardless
        cid_file = tmp_path / "cid"
        for c in _cgroups_of(cid_file.read_text().strip()) if cid_file.exists() else []:
            try:
                os.rmdir(c)
            except OSError:
                pass


def _build_with_create_killed(tmp_path: Path, wrapper: Path, dockerfile: Path) -> None:
    ready = tmp_path / "ready"
    with own_daemon("dy-createkill-", "--add-runtime", f"held={wrapper}", "--default-runtime", "held") as d:
        env = {**d.env, "DOCKER_BUILDKIT": "0"}
        init_fd = -1
        with open(dockerfile, "rb") as stdin:
            build = subprocess.Popen([DOCKER_CLI, "build", "-q", "-t", "killed-create", "-"], env=env,
                                     stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            for _ in range(1200):  # a wait for the event, not a timing assertion
                if ready.exists() or build.poll() is not None:
                    break
                time.sleep(0.05)
            assert ready.exists(), f"the step's runc create never ran: {build.communicate()}"
            cid = (tmp_path / "cid").read_text().strip()
            conmons = conmon_pids_for(d.base)
            assert len(conmons) == 1, conmons
            inits = [k for k in _children(conmons[0]) if _comm(k) == "runc:[2:INIT]"]
            assert len(inits) == 1, f"no runc init waiting for start under conmon: {_children(conmons[0])}"
            assert _cgroups_of(cid), "runc create made no cgroup: the test proves nothing"
            init_fd = os.pidfd_open(inits[0])
            os.kill(int((tmp_path / "create.pid").read_text()), signal.SIGKILL)  # as the chaos thread does
            try:
                out, err = build.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                build.kill()
                build.communicate()
                raise AssertionError("no answer within 30 s: the build waits for conmon, which waits for the "
                                     "init the killed runc create left") from None
            assert build.returncode != 0, f"the build succeeded with its runc create killed: {out!r}"
            assert b"runc create was killed" in err, err
            # The init is gone (its pidfd is readable once it has exited), and so is conmon.
            assert select.select([init_fd], [], [], 10)[0], "the init runc create left is still alive"
            for _ in range(100):
                if not conmon_pids_for(d.base):
                    break
                time.sleep(0.05)
            assert not conmon_pids_for(d.base), "conmon outlived the failed create"
            # Nothing of the step container is left: not the container, runc's state or its cgroups.
            assert not d.docker("ps", "-aq").stdout.strip(), "the step container was not removed"
            assert not (d.exec_root / "runtime" / "held" / cid).exists(), "runc's state dir is left"
            assert not _cgroups_of(cid), f"the step container's cgroups are left: {_cgroups_of(cid)}"
            # And the daemon goes on: the same build again (runc create not held this time) works.
            p = subprocess.run([DOCKER_CLI, "build", "-q", "-t", "killed-create", "-"], env=env,
                               input=dockerfile.read_bytes(), capture_output=True, timeout=120)
            assert p.returncode == 0, p
            assert d.docker("run", "--rm", "killed-create", "cat", "/built").stdout == b"built\n"
        finally:
            _end_stuck_init(init_fd)
            if build.poll() is None:
                build.kill()
                build.communicate()


def test_a_create_left_stuck_across_a_daemon_kill_is_cleared_at_the_restart(tmp_path: Path) -> None:
    """The daemon SIGKILLed while such a create was stuck (the chaos run killed it 52 times): conmon and
    the init outlive it, in a container the restart finds created, not running. runc create was killed
    before its state.json, so `runc delete --force` (recovery's cleanup) does not know the container:
    delete now kills what a dead runc create left, and the cgroups go."""
    wrapper = _wrapper(tmp_path, drop_state=True)
    args = ("--add-runtime", f"held={wrapper}", "--default-runtime", "held")
    init_fd = -1
    cid = ""
    try:
        with own_daemon("dy-createkill-", *args) as d:
            run = subprocess.Popen([DOCKER_CLI, "run", "-d", "--name", "stuck", "busybox", "true"], env=d.env,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            try:
                for _ in range(1200):  # a wait for the event, not a timing assertion
                    if (tmp_path / "ready").exists() or run.poll() is not None:
                        break
                    time.sleep(0.05)
                assert (tmp_path / "ready").exists(), f"runc create never ran: {run.communicate()}"
                cid = (tmp_path / "cid").read_text().strip()
                conmons = conmon_pids_for(d.base)
                assert len(conmons) == 1, conmons
                inits = [k for k in _children(conmons[0]) if _comm(k) == "runc:[2:INIT]"]
                assert len(inits) == 1, _children(conmons[0])
                init_fd = os.pidfd_open(inits[0])
                d.kill()  # the daemon first: nobody is waiting for this create any more
                os.kill(int((tmp_path / "create.pid").read_text()), signal.SIGKILL)
            finally:
                if run.poll() is None:
                    run.kill()
                run.communicate()
            d.start(*args)
            assert select.select([init_fd], [], [], 30)[0], "the init a killed runc create left outlived the restart"
            for _ in range(100):
                if not conmon_pids_for(d.base):
                    break
                time.sleep(0.05)
            assert not conmon_pids_for(d.base), "conmon, stuck on that init, outlived the restart"
            assert not _cgroups_of(cid), f"the container's cgroups are left: {_cgroups_of(cid)}"
            d.docker("rm", "stuck")
    finally:
        _end_stuck_init(init_fd)
        for c in _cgroups_of(cid) if cid else []:
            try:
                os.rmdir(c)
            except OSError:
                pass


def test_an_init_whose_create_just_finished_is_left_alone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The look for a dead create's leftovers (Monitor._kill_left_by_create) runs while conmon has not
    answered yet. A create that writes its pid file and exits between the look's reads leaves its init
    as conmon's only child, exactly as a killed one does, but its pid file says it finished: that init
    must live (it was killed when the pid file was read before the children: the start then failed
    with "cannot start a container that has stopped", seen once at load 27)."""
    from dockyard.runtime import monitor as mon

    # conmon, with the init as its child (named as runc names it)
    conmon = subprocess.Popen([sys.executable, "-c",
                               "import os, time\n"
                               "if os.fork() == 0:\n"
                               "    open('/proc/self/comm', 'w').write('runc:[2:INIT]')\n"
                               "time.sleep(60)\n"])
    try:
        for _ in range(200):
            kids = _children(conmon.pid)
            if kids and Path(f"/proc/{kids[0]}/comm").read_text().strip() == "runc:[2:INIT]":
                break
            time.sleep(0.05)
        else:
            raise AssertionError("no init child")
        init = kids[0]
        bundle = tmp_path / "bundle"
        bundle.mkdir()
        m = mon.Monitor(tmp_path / "exec")
        monkeypatch.setattr(m, "conmon_pid", lambda cid: conmon.pid)
        monkeypatch.setattr(m, "conmon_alive", lambda cid: True)
        monkeypatch.setattr(m, "_record", lambda cid: {"runtime": "runc"})
        real_children = mon.procfs.children

        def create_finishes_now(pid: int) -> list[int]:
            (bundle / "pidfile").write_text(str(init))  # runc create's last writes, then its exit
            return list(real_children(pid))

        monkeypatch.setattr(mon.procfs, "children", create_finishes_now)
        assert asyncio.run(m._kill_left_by_create("c1", bundle)) == []
        assert Path(f"/proc/{init}/comm").read_text().strip() == "runc:[2:INIT]"  # alive
    finally:
        for pid in _children(conmon.pid):
            os.kill(pid, signal.SIGKILL)
        conmon.kill()
        conmon.wait()
