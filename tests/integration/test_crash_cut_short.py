"""What a daemon crash in the middle of an operation leaves, found by the chaos harness
(bench/chaos/chaos.py, issue 25) and reproduced here one at a time."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

from tests.conftest import DOCKER_CLI, Daemon, conmon_pids_for, own_daemon


def _wait_for(path: Path, proc: subprocess.Popen[bytes]) -> None:
    for _ in range(1200):
        if path.exists():
            return
        if proc.poll() is not None and proc.returncode == 0:
            raise AssertionError(f"docker run ended first: {proc.communicate()}")
        time.sleep(0.05)
    raise AssertionError(f"{path} never appeared")


def test_a_start_cut_short_by_a_crash_leaves_no_network_behind(tmp_path: Path) -> None:
    """SIGKILL while `docker run` is between the network (netns, veth, address: made) and the runtime
    (runc create: held back by a wrapper): after the restart the container does not run, so its netns,
    its veth on the bridge and any runtime state go (the chaos run found one veth and netns per kill)."""
    runc = shutil.which("runc") or "/usr/sbin/runc"
    marker, go, done = tmp_path / "creating", tmp_path / "go", tmp_path / "created"
    wrapper = tmp_path / "held-runc"
    wrapper.write_text(f'#!/bin/sh\nfor a in "$@"; do if [ "$a" = create ]; then touch {marker}\n'
                       f'  while [ ! -e {go} ]; do sleep 0.05; done; fi; done\n{runc} "$@"; s=$?\n'
                       f'for a in "$@"; do [ "$a" = create ] && touch {done}; done\nexit $s\n')
    wrapper.chmod(0o755)
    runtime = ("--add-runtime", f"held={wrapper}")
    with own_daemon("dy-cutstart-", *runtime) as d:
        run = subprocess.Popen([DOCKER_CLI, "run", "-d", "--name", "cut", "--runtime", "held", "busybox",
                                "sleep", "300"], env=d.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            _wait_for(marker, run)
            cid = d.docker("inspect", "-f", "{{.Id}}", "cut").stdout.decode().strip()
            netns = d.exec_root / "netns" / cid
            assert netns.exists(), "the start had not made the network yet: the test proves nothing"
            d.kill()
        finally:
            go.touch()
            run.communicate(timeout=60)
        _wait_for(done, run)  # conmon outlived the daemon: its runc create ends before the restart
        d.start(*runtime)
        assert d.docker("inspect", "-f", "{{.State.Running}}", "cut").stdout.decode().strip() == "false"
        assert not netns.exists(), "the cut start's netns is still there"
        bridge = json.loads(d.docker("network", "inspect", "bridge").stdout)[0]["Options"][
            "com.docker.network.bridge.name"]
        veths = subprocess.run(["ip", "-o", "link", "show", "master", bridge], capture_output=True,
                               text=True).stdout
        assert "veth" not in veths, f"the cut start's veth is still on {bridge}: {veths}"
        listed = subprocess.run([runc, "--root", str(d.exec_root / "runtime" / "held"), "list", "-q"],
                                capture_output=True, text=True).stdout.split()
        assert cid not in listed, "runc still has the cut start's container:\n" + "\n".join(
            ln[:300] for ln in d.log.read_text().splitlines() if cid[:12] in ln)
        # And it starts again as any stopped container.
        d.docker("start", "cut")
        assert d.docker("inspect", "-f", "{{.State.Running}}", "cut").stdout.decode().strip() == "true"


def test_an_endpoint_without_its_veth_is_dropped_at_the_restart() -> None:
    """The chaos run found a running container that inspect showed on a network (an address, an
    endpoint) with no veth for it in the kernel, after a kill landed in `network connect` (row written,
    veth not made) or disconnect (veth gone, row not). The same state made on purpose: the veth is
    deleted by hand and the daemon SIGKILLed. After the restart the records say what the kernel has,
    and connecting again works."""
    with own_daemon("dy-cutconn-") as d:
        d.docker("network", "create", "cutnet")
        d.docker("run", "-d", "--name", "cc", "busybox", "sleep", "300")
        d.docker("network", "connect", "cutnet", "cc")
        net = json.loads(d.docker("network", "inspect", "cutnet").stdout)[0]
        bridge = f"br-{net['Id'][:12]}"
        links = subprocess.run(["ip", "-o", "link", "show", "master", bridge], capture_output=True,
                               text=True).stdout
        veths = [ln.split(": ")[1].split("@")[0] for ln in links.splitlines() if ": veth" in ln]
        assert len(veths) == 1, links
        subprocess.run(["ip", "link", "del", veths[0]], check=True)
        d.kill()
        d.start()
        nets = json.loads(d.docker("inspect", "-f", "{{json .NetworkSettings.Networks}}", "cc").stdout)
        assert "cutnet" not in nets, f"inspect still shows an endpoint the kernel does not have: {nets}"
        assert "bridge" in nets
        d.docker("network", "connect", "cutnet", "cc")
        addr = d.docker("exec", "cc", "ip", "-o", "-4", "addr", "show", "eth1").stdout.decode()
        ip = json.loads(d.docker("inspect", "-f", "{{json .NetworkSettings.Networks}}", "cc").stdout)["cutnet"][
            "IPAddress"]
        assert ip and ip in addr, (ip, addr)


def test_a_container_whose_conmon_is_killed_is_finalized() -> None:
    """The chaos run found containers shown running long after their conmon was SIGKILLed (nobody
    left to record the exit; only a daemon restart noticed). The daemon now watches each conmon: the
    container is finalized as a restart would (stopped, exit 255 without an exit file)."""
    with own_daemon("dy-conmonkill-") as d:
        d.docker("run", "-d", "--name", "cm", "busybox", "sleep", "300")
        cid = d.docker("inspect", "-f", "{{.Id}}", "cm").stdout.decode().strip()
        pids = [p for p in conmon_pids_for(d.base)
                if cid.encode() in Path(f"/proc/{p}/cmdline").read_bytes()]
        assert len(pids) == 1, pids
        os.kill(pids[0], signal.SIGKILL)
        state = ""
        for _ in range(600):  # a wait for the event, not a timing assertion
            state = d.docker("inspect", "-f", "{{.State.Status}}", "cm").stdout.decode().strip()
            if state != "running":
                break
            time.sleep(0.1)
        assert state == "exited", f"still {state} with its conmon dead"
        listed = subprocess.run(["runc", "--root", str(d.exec_root / "runtime" / "runc"), "list", "-q"],
                                capture_output=True, text=True).stdout.split()
        assert cid not in listed, "the runtime still has the container"
        d.docker("start", "cm")  # and it starts again
        assert d.docker("inspect", "-f", "{{.State.Status}}", "cm").stdout.decode().strip() == "running"


def test_a_rootfs_view_a_crash_left_mounted_goes_with_the_container() -> None:
    """The chaos run (seed 12) found, after every container was removed, mounts left under the run
    dirs of removed containers: `view-PID-N` (the temporary rootfs view of a cp or export of a stopped
    container) and `create-view`, mounted when a kill landed in the operation. The leftover made here
    directly (a tmpfs at such a path, as timing a kill into a cp is not reliable): `docker rm` must
    unmount it."""
    with own_daemon("dy-viewleft-") as d:
        cid = d.docker("create", "--name", "vv", "busybox", "true").stdout.decode().strip()
        view = d.exec_root / "containers" / cid / "view-1-2"
        view.mkdir(parents=True)
        subprocess.run(["mount", "-t", "tmpfs", "chaos-view", str(view)], check=True)
        try:
            d.docker("rm", "vv")
            with open("/proc/self/mountinfo") as f:
                left = [ln.split()[4] for ln in f if ln.split()[4].startswith(str(d.exec_root / "containers" / cid))]
            assert not left, f"mounts left under the removed container's run dir: {left}"
        finally:
            subprocess.run(["umount", "-l", str(view)], capture_output=True)


def test_a_tty_create_whose_conmon_is_killed_leaves_no_console_socket(tmp_path: Path) -> None:
    """conmon binds a TTY container's console socket (`conmon-term.XXXXXX`) in $TMPDIR and unlinks it
    only once runc has passed it the pty: a conmon SIGKILLed in between used to leave the socket in
    /tmp. The kill is timed by a wrapper that holds `runc create` with the socket bound and records
    the path runc was given; after the failed run the path must be gone."""
    runc = shutil.which("runc") or "/usr/sbin/runc"
    marker, go, args = tmp_path / "creating", tmp_path / "go", tmp_path / "args"
    wrapper = tmp_path / "held-runc"
    wrapper.write_text(f'#!/bin/sh\nfor a in "$@"; do if [ "$a" = create ]; then printf "%s\\n" "$@" > {args}\n'
                       f'  touch {marker}; while [ ! -e {go} ]; do sleep 0.05; done; fi; done\nexec {runc} "$@"\n')
    wrapper.chmod(0o755)
    with own_daemon("dy-termsock-", "--add-runtime", f"held={wrapper}") as d:
        run = subprocess.Popen([DOCKER_CLI, "run", "-dt", "--name", "tt", "--runtime", "held", "busybox",
                                "sleep", "300"], env=d.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            _wait_for(marker, run)
            argv = args.read_text().splitlines()
            sock = Path(argv[argv.index("--console-socket") + 1])
            cid = argv[-1]
            assert sock.is_socket(), f"runc was given {sock}, which is not a bound socket"
            pids = [p for p in conmon_pids_for(d.base) if cid.encode() in Path(f"/proc/{p}/cmdline").read_bytes()]
            assert len(pids) == 1, pids
            os.kill(pids[0], signal.SIGKILL)
        finally:
            go.touch()
            out, err = run.communicate(timeout=120)
        assert run.returncode != 0, f"the run succeeded with its conmon killed: {out!r}"
        left = sock.exists() or sock.is_socket()
        sock.unlink(missing_ok=True)  # before the fix: in /tmp, ours to remove
        assert not left, f"conmon's console socket {sock} outlived it"


def _held_policy_runtime(tmp_path: Path) -> tuple[Path, Path, Path, Path, Path]:
    """A runc wrapper that, once `hold` exists, holds every `create` (`creating` touched) until `go`
    exists, and touches `created` when that runc has ended; and a dir for the container's /w."""
    runc = shutil.which("runc") or "/usr/sbin/runc"
    hold, marker, go, done, w = (tmp_path / n for n in ("hold", "creating", "go", "created", "w"))
    w.mkdir()
    wrapper = tmp_path / "held-runc"
    wrapper.write_text(f'#!/bin/sh\nheld=""\nfor a in "$@"; do if [ "$a" = create ] && [ -e {hold} ]; then held=1\n'
                       f'  touch {marker}; while [ ! -e {go} ]; do sleep 0.05; done; fi; done\n{runc} "$@"; s=$?\n'
                       f'[ -n "$held" ] && touch {done}\nexit $s\n')
    wrapper.chmod(0o755)
    return wrapper, hold, marker, go, done


# The first run exits (3) when /w/exit appears; the policy's start of it then runs `sleep 300`.
_EXITS_ONCE = "[ -e /w/ran ] && exec sleep 300; touch /w/ran; while [ ! -e /w/exit ]; do sleep 0.1; done; exit 3"


def _start_a_policy_restart(d: Daemon, tmp_path: Path, policy: str, hold: Path, marker: Path) -> str:
    """Run `pr` under `policy`, make it exit, and return once the policy's start of it is held in
    runc create (its netns and veth made, it is recorded "restarting")."""
    w = tmp_path / "w"
    cid = d.docker("run", "-d", "--name", "pr", "--restart", policy, "--runtime", "held", "-v", f"{w}:/w",
                   "busybox", "sh", "-c", _EXITS_ONCE).stdout.decode().strip()
    for _ in range(600):
        if (w / "ran").exists():
            break
        time.sleep(0.05)
    hold.touch()
    (w / "exit").touch()
    for _ in range(1200):
        if marker.exists():
            break
        time.sleep(0.05)
    assert marker.exists(), "the policy's start never reached runc create"
    assert d.docker("inspect", "-f", "{{.State.Status}}", "pr").stdout.decode().strip() == "restarting"
    time.sleep(0.5)  # the veth is wired while runc create runs
    return cid


def _left_behind(d: Daemon, cid: str) -> list[str]:
    bridge = json.loads(d.docker("network", "inspect", "bridge").stdout)[0]["Options"][
        "com.docker.network.bridge.name"]
    veths = subprocess.run(["ip", "-o", "link", "show", "master", bridge], capture_output=True, text=True).stdout
    left = [f"a veth on {bridge}: {veths}"] if "veth" in veths else []
    if (d.exec_root / "netns" / cid).exists():
        left.append("its netns")
    listed = subprocess.run(["runc", "--root", str(d.exec_root / "runtime" / "held"), "list"],
                            capture_output=True, text=True).stdout
    if cid in listed:
        left.append(f"a runc container: {listed}")
    return left


def test_a_policy_start_that_stop_ends_leaves_no_network_behind(tmp_path: Path) -> None:
    """`docker stop` cancelled a restart policy's pending restart even when its start was under way:
    the cancellation landed in the start's await of runc create, the start's undo (for exceptions
    only) never ran, and the container was recorded exited with its netns, its veth on the bridge,
    its address and a runc container in "created" kept (the chaos run's one veth more on the bridge
    than running endpoints). A start is now never cut short: stop waits for it, then stops what it
    started."""
    wrapper, hold, marker, go, _ = _held_policy_runtime(tmp_path)
    with own_daemon("dy-policystop-", "--add-runtime", f"held={wrapper}") as d:
        cid = _start_a_policy_restart(d, tmp_path, "always", hold, marker)
        stop = subprocess.Popen([DOCKER_CLI, "stop", "-t", "1", "pr"], env=d.env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)
        try:
            time.sleep(1)
        finally:
            go.touch()
            out, err = stop.communicate(timeout=120)
        assert stop.returncode == 0, err
        time.sleep(1)  # a restart the stop failed to end would be under way by now
        assert d.docker("inspect", "-f", "{{.State.Status}}", "pr").stdout.decode().strip() == "exited"
        left = _left_behind(d, cid)
        assert not left, f"the stopped container keeps: {left}"
        d.docker("start", "pr")  # and it starts again as any stopped container
        assert d.docker("inspect", "-f", "{{.State.Status}}", "pr").stdout.decode().strip() == "running"


def test_a_policy_start_cut_short_by_a_crash_leaves_no_network_behind(tmp_path: Path) -> None:
    """A daemon SIGKILLed during a restart policy's start: the container is recorded "restarting"
    (running only once started), and recovery marked it exited without releasing what the start had
    made (netns, veth, address, runc container). An on-failure container is not restarted at boot, so
    nothing else ever released them."""
    wrapper, hold, marker, go, done = _held_policy_runtime(tmp_path)
    runtime = ("--add-runtime", f"held={wrapper}")
    with own_daemon("dy-policycrash-", *runtime) as d:
        cid = _start_a_policy_restart(d, tmp_path, "on-failure", hold, marker)
        d.kill()
        go.touch()
        for _ in range(1200):  # conmon outlived the daemon: its runc create ends before the restart
            if done.exists():
                break
            time.sleep(0.05)
        d.start(*runtime)
        assert d.docker("inspect", "-f", "{{.State.Status}}", "pr").stdout.decode().strip() == "exited"
        left = _left_behind(d, cid)
        assert not left, f"the exited container keeps: {left}"
