"""docker-py against our daemon and the real dockerd: the same calls on both, results compared (issue 3).

Each test runs one scenario on both engines and asserts the observable results are equal: output bytes,
demuxed streams, exit codes, stats keys and types, top rows, pause states and errors, restart policies.
Values that differ by nature (ids, pids, timestamps, byte counts) are compared by shape.
The real dockerd runs with --bridge=none, so every container here uses network_mode="none".
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from typing import Any

import docker
import docker.errors
import pytest

from tests.conftest import Engines

BB = "busybox"
# First run exits 1, the policy restart then stays up: one deterministic restart.
ONCE = "if [ -f /once ]; then trap 'exit 7' INT; trap 'exit 9' USR2; sleep 300 & wait; exit 0; fi; touch /once; echo first; exit 1"


ENGINES_API_VERSION = None  # the engines fixture's clients negotiate, as docker-py does by default


def kwargs(e: Engines, kw: dict[str, Any]) -> dict[str, Any]:
    """Containers without a network (the reference dockerd has no bridge), labelled for removal."""
    return {"network_mode": "none", "labels": e.labels, **kw}


@pytest.fixture(params=["dockyard", "dockerd"])
def client(request: pytest.FixtureRequest, engines: Engines) -> tuple[docker.DockerClient, Engines]:
    """One engine at a time, for scenarios checked against Docker's documented behaviour on both."""
    return engines.clients[request.param], engines


def run(e: Engines, c: docker.DockerClient, cmd: str | list[str], **kw: Any) -> Any:
    return c.containers.run(BB, cmd, detach=True, **kwargs(e, kw))


def create(e: Engines, c: docker.DockerClient, cmd: str | list[str], **kw: Any) -> Any:
    return c.containers.create(BB, cmd, **kwargs(e, kw))


def shape(x: Any) -> Any:
    """Keys and value types, recursively (a list by its first element's shape)."""
    if isinstance(x, dict):
        return {k: shape(v) for k, v in x.items()}
    if isinstance(x, list):
        return [shape(x[0])] if x else []
    return type(x).__name__


def fold(frames: Any) -> tuple[bytes, bytes]:
    """Demuxed (stdout, stderr) frames joined per stream: the two pipes' interleaving is a race."""
    out, err = b"", b""
    for o, e in frames:
        out += o or b""
        err += e or b""
    return out, err


def api_error(fn: Callable[[], Any], cid: str) -> tuple[int, str]:
    with pytest.raises(docker.errors.APIError) as ei:
        fn()
    msg = str(ei.value.explanation)
    return ei.value.response.status_code, msg.replace(cid, "<id>") if cid else msg


def until(cond: Callable[[], bool], what: str, limit: float = 60) -> None:
    """Poll until cond holds; the limit only bounds a failure."""
    deadline = time.monotonic() + limit
    while not cond():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.05)


def read_all(sock: socket.socket) -> bytes:
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


# --- attach ----------------------------------------------------------------


def test_attach_stream_with_logs(engines: Engines) -> None:
    def scenario(c: docker.DockerClient) -> Any:
        ctr = run(engines, c, ["sh", "-c", "echo out; echo err >&2; until [ -f /go ]; do sleep 0.05; done; "
                                           "echo late; exit 4"])
        until(lambda: sorted(ctr.logs().splitlines()) == [b"err", b"out"], "the first lines in the log")
        live = ctr.attach(stream=True, logs=False)  # attached once this returns
        replay = ctr.attach(stream=True, logs=True)
        ctr.exec_run(["touch", "/go"])
        return b"".join(live), b"".join(replay), ctr.wait(timeout=60)["StatusCode"], ctr.logs(stdout=False)

    ours, ref = engines.both_docker(scenario)
    assert (ours[0], ours[2:]) == (ref[0], ref[2:]) == (b"late\n", (4, b"err\n"))
    # The log replay: stdout and stderr lines in the order the two pipes were read, then the live tail.
    # docker-py reads the 101 response's headers through http.client's buffer and the stream from the raw
    # socket under it, so whatever reached it with the headers is lost, on any server: the replay's first
    # lines may be missing (seen in a CI at load; dockerd 20.10 also races its own log reader). Here only
    # what docker-py shows is compared; that our attach joins replay and stream with no line lost or
    # repeated is tested on a raw socket (test_interactive.py::test_attach_logs_and_stream_join_without_
    # loss_or_repeat).
    for got in (ours[1], ref[1]):
        lines = got.splitlines()
        assert got.endswith(b"late\n") and set(lines) <= {b"err", b"late", b"out"} and len(lines) == len(set(lines))


def test_attach_before_start_demux(engines: Engines) -> None:
    def scenario(c: docker.DockerClient) -> Any:
        ctr = create(engines, c, ["sh", "-c", "echo out; echo err >&2; echo more; exit 2"])
        frames = ctr.attach(stream=True, logs=True, demux=True)
        ctr.start()
        return fold(frames), ctr.wait(timeout=60)["StatusCode"]

    ours, ref = engines.both_docker(scenario)
    assert ours == ref == ((b"out\nmore\n", b"err\n"), 2)


@pytest.mark.parametrize("tty", [False, True])
def test_attach_socket_stdin_half_close(engines: Engines, tty: bool) -> None:
    """stdin through the hijacked socket; shutting down our write side is EOF for the container."""

    def scenario(c: docker.DockerClient) -> Any:
        ctr = create(engines, c, ["sh", "-c", "cat; echo done >&2"], stdin_open=True, tty=tty)
        sock = ctr.attach_socket(params={"stdin": 1, "stdout": 1, "stderr": 1, "stream": 1})
        raw = sock._sock
        try:
            ctr.start()
            # A TTY has no half-close to see: its EOF is ^D at the start of a line.
            raw.sendall(b"hello\n\x04" if tty else b"hello\n")
            if not tty:
                raw.shutdown(socket.SHUT_WR)
            data = read_all(raw)
        finally:
            sock.close()
        return data, ctr.wait(timeout=60)["StatusCode"], ctr.logs()

    ours, ref = engines.both_docker(scenario)
    assert ours == ref
    if tty:
        assert ours[0] == b"hello\r\nhello\r\ndone\r\n"
    else:  # 8-byte multiplexed frames: stdout (1) then stderr (2)
        assert ours[0] == b"\x01\0\0\0\0\0\0\x06hello\n\x02\0\0\0\0\0\0\x05done\n"


# --- exec ------------------------------------------------------------------


def test_exec_run_stream_demux(engines: Engines) -> None:
    script = "echo a; echo b >&2; echo c; exit 3"

    def scenario(c: docker.DockerClient) -> Any:
        ctr = run(engines, c, ["sleep", "300"])
        streamed = ctr.exec_run(["sh", "-c", script], stream=True, demux=True)
        frames = fold(streamed.output)
        whole = ctr.exec_run(["sh", "-c", script], demux=True)
        plain = ctr.exec_run(["sh", "-c", script])
        tty = ctr.exec_run(["sh", "-c", script], tty=True, demux=True)
        env = ctr.exec_run(["sh", "-c", "echo $FOO $(pwd) $(id -u)"], environment={"FOO": "bar"}, workdir="/tmp",
                           user="nobody")
        # Not demuxed, stdout and stderr interleave as the pipes are read (a race on dockerd too).
        return (streamed.exit_code, frames, tuple(whole), (plain.exit_code, sorted(plain.output.splitlines())),
                tuple(tty), tuple(env))

    ours, ref = engines.both_docker(scenario)
    assert ours == ref
    assert ours[0] is None and ours[1] == (b"a\nc\n", b"b\n") and ours[2] == (3, (b"a\nc\n", b"b\n"))


def test_exec_into_paused_container(engines: Engines) -> None:
    def scenario(c: docker.DockerClient) -> Any:
        ctr = run(engines, c, ["sleep", "300"])
        ctr.pause()
        return api_error(lambda: ctr.exec_run("true"), ctr.id)

    ours, ref = engines.both_docker(scenario)
    assert ours == ref == (409, "Container <id> is paused, unpause the container before exec")


# --- stats -----------------------------------------------------------------


def test_stats_shape(engines: Engines) -> None:
    """The keys and types `docker stats` reads, for each way of asking."""

    def scenario(c: docker.DockerClient) -> Any:
        ctr = run(engines, c, ["sh", "-c", "echo x > /tmp/f; exec sleep 300"])
        until(lambda: c.api.top(ctr.id)["Processes"][0][-1] == "sleep 300", "sleep to run")
        primed = ctr.stats(stream=False)  # dockerd takes two samples: precpu_stats is filled
        one_shot = ctr.stats(stream=False, one_shot=True)
        gen = ctr.stats(stream=True, decode=True)
        first, second = next(gen), next(gen)
        gen.close()
        ctr.stop(timeout=0)
        stopped = ctr.stats(stream=False)
        return primed, one_shot, first, second, stopped

    ours, ref = engines.both_docker(scenario)
    for r, o in zip(ref, ours, strict=True):
        assert shape(o) == shape(r)
    primed, one_shot, first, second, stopped = ours
    for s in (primed, second):
        assert s["precpu_stats"]["cpu_usage"]["total_usage"] > 0 and s["preread"] != "0001-01-01T00:00:00Z"
        assert s["cpu_stats"]["cpu_usage"]["total_usage"] >= s["precpu_stats"]["cpu_usage"]["total_usage"]
        assert s["cpu_stats"]["system_cpu_usage"] > s["precpu_stats"]["system_cpu_usage"]
    for s in (primed, one_shot, first, second):
        mem = s["memory_stats"]
        assert 0 < mem["usage"] <= mem["limit"] and s["pids_stats"]["current"] == 1
        assert "networks" not in s  # network none: dockerd leaves the key out
    assert one_shot["preread"] == first["preread"] == "0001-01-01T00:00:00Z"
    assert stopped["read"] == "0001-01-01T00:00:00Z" and stopped["memory_stats"] == {}


# --- top -------------------------------------------------------------------


def test_top(engines: Engines) -> None:
    def scenario(c: docker.DockerClient) -> Any:
        ctr = run(engines, c, ["sh", "-c", "sleep 301 & exec sleep 300"])
        until(lambda: sorted(p[-1] for p in ctr.top()["Processes"]) == ["sleep 300", "sleep 301"], "both sleeps")
        out = []
        for args in (None, "aux", "-o pid,comm"):
            t = ctr.top() if args is None else ctr.top(ps_args=args)
            # Pids and times differ by nature: compare each row's command and width.
            out.append((t["Titles"], sorted((row[-1], len(row)) for row in t["Processes"])))
        ctr.pause()
        out.append(ctr.top()["Titles"])  # top works on a paused container
        ctr.stop(timeout=0)
        out.append(api_error(ctr.top, ctr.id))
        return out

    ours, ref = engines.both_docker(scenario)
    assert ours == ref
    assert ours[0][0] == ["UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"]


# --- pause -----------------------------------------------------------------


def test_pause_unpause(engines: Engines) -> None:
    def scenario(c: docker.DockerClient) -> Any:
        ctr = run(engines, c, ["sleep", "300"])
        seen = []
        ctr.pause()
        ctr.reload()
        st = ctr.attrs["State"]
        seen.append((ctr.status, st["Status"], st["Paused"], st["Running"]))
        seen.append(c.api.containers(filters={"id": ctr.id})[0]["Status"].endswith("(Paused)"))
        seen.append([x.id == ctr.id for x in c.containers.list(filters={"status": "paused", "id": ctr.id})])
        seen.append(api_error(ctr.pause, ctr.id))
        ctr.unpause()
        ctr.reload()
        seen.append((ctr.status, ctr.attrs["State"]["Paused"]))
        seen.append(api_error(ctr.unpause, ctr.id))
        ctr.pause()
        ctr.stop(timeout=1)  # stopping a paused container works (SIGKILL after the grace period)
        ctr.reload()
        seen.append((ctr.status, ctr.attrs["State"]["Paused"]))
        seen.append(api_error(ctr.pause, ctr.id))
        return seen

    ours, ref = engines.both_docker(scenario)
    assert ours == ref
    assert ours[0] == ("paused", "paused", True, True)
    assert ours[3] == (409, "Container <id> is already paused")


# --- restart policies --------------------------------------------------------


def state_of(ctr: Any) -> tuple[str, bool, bool, int, int]:
    ctr.reload()
    st = ctr.attrs["State"]
    return st["Status"], st["Running"], st["Restarting"], st["ExitCode"], ctr.attrs["RestartCount"]


def until_state(ctr: Any, pred: Callable[[tuple[str, bool, bool, int, int]], bool], what: str) -> None:
    """Poll until one reading of (Status, Running, Restarting, ExitCode, RestartCount) satisfies pred."""
    until(lambda: pred(state_of(ctr)), what)


def sleeping(ctr: Any) -> None:
    until(lambda: "sleep 300" in [p[-1] for p in ctr.top()["Processes"]], "sleep 300 to run")


def test_on_failure_max_retries_and_delay(engines: Engines) -> None:
    """on-failure:3 with a failing command: 3 restarts, each after Docker's doubling delay (100 ms first)."""

    def scenario(c: docker.DockerClient) -> Any:
        since = time.time() - 1
        ctr = run(engines, c, ["sh", "-c", "echo x; exit 3"],
                  restart_policy={"Name": "on-failure", "MaximumRetryCount": 3})
        # Restarting is set at the exit itself, so "exited" with 3 restarts is final.
        until_state(ctr, lambda st: st[0] == "exited" and st[4] == 3, "three restarts")
        evs = list(c.events(since=since, until=time.time() + 0.5, decode=True, filters={"container": ctr.id}))
        actions = [e["Action"] for e in evs]
        gaps, died = [], None
        for ev in evs:  # from each die to the policy's next start
            if ev["Action"] == "die":
                died = ev["timeNano"]
            elif ev["Action"] == "start" and died is not None:
                gaps.append((ev["timeNano"] - died) / 1e9)
        return state_of(ctr), ctr.logs(), actions, gaps, ctr.attrs["HostConfig"]["RestartPolicy"]

    ours, ref = engines.both_docker(scenario)
    assert ours[:3] == ref[:3] and ours[4] == ref[4]
    assert ours[0] == ("exited", False, False, 3, 3) and ours[1] == b"x\n" * 4
    assert ours[2] == ["create", "start"] + ["die", "start"] * 3 + ["die"]
    for gaps in (ref[3], ours[3]):  # lower bounds only: a slow machine can only make them longer
        assert [g >= 0.1 * 2 ** i * 0.9 for i, g in enumerate(gaps)] == [True] * 3, gaps


def errors_while_restarting(ctr: Any) -> list[tuple[int, str]]:
    """top, pause, attach and exec during a restart delay.

    Taken in a delay of 1.6 s or more, and again if the restart came in between."""
    while True:
        until_state(ctr, lambda st: st[0] == "restarting" and st[4] >= 5, "a long restart delay")
        count = state_of(ctr)[4]
        errors = [api_error(f, ctr.id) for f in (ctr.top, ctr.pause, lambda: ctr.attach(stream=True),
                                                 lambda: ctr.exec_run("true"))]
        if state_of(ctr)[0] == "restarting" and state_of(ctr)[4] == count:
            return errors


def test_always_restarting_state_then_stop(engines: Engines) -> None:
    def scenario(c: docker.DockerClient) -> Any:
        ctr = run(engines, c, ["sh", "-c", "exit 1"], restart_policy={"Name": "always"})
        # Most of its time is spent in the restart delay: Status "restarting", Running and no Pid.
        until_state(ctr, lambda st: st[0] == "restarting" and st[4] >= 1, "restarting state")
        # The reading that matched (until_state reloads): a second reload could catch dockerd's next run
        # under load (its first restart delays are 100-400 ms).
        st = ctr.attrs["State"]
        seen = [(st["Running"], st["Restarting"], st["Pid"], st["ExitCode"], st["Paused"])]
        seen.append(ctr.wait(timeout=60)["StatusCode"])  # waiting on a restarting container returns its exit code
        seen.append(errors_while_restarting(ctr))
        ctr.stop(timeout=1)
        status, running, restarting, code, count = state_of(ctr)
        seen.append((status, running, restarting, code, count >= 1))
        return seen

    ours, ref = engines.both_docker(scenario)
    assert ours == ref
    assert ours[0] == (True, True, 0, 1, False) and ours[3][:4] == ("exited", False, False, 1)
    assert ours[2][0] == (409, "Container <id> is restarting, wait until the container is running")


@pytest.mark.parametrize("policy", ["always", "unless-stopped"])
def test_restart_after_exit_then_user_stop_and_start(engines: Engines, policy: str) -> None:
    def scenario(c: docker.DockerClient) -> Any:
        ctr = run(engines, c, ["sh", "-c", ONCE], restart_policy={"Name": policy})
        until_state(ctr, lambda st: st[0] == "running" and st[4] == 1, "one restart")
        sleeping(ctr)  # its traps are set
        seen = [state_of(ctr), ctr.logs()]
        ctr.stop(timeout=1)  # the user's stop: no restart after it
        seen.append(state_of(ctr))
        ctr.start()  # a user's start resets the count
        seen.append(state_of(ctr))
        ctr.kill()  # SIGKILL ends the policy too
        seen.append((ctr.wait(timeout=60)["StatusCode"], state_of(ctr)))
        return seen

    ours, ref = engines.both_docker(scenario)
    assert ours == ref
    assert ours[0] == ("running", True, False, 0, 1) and ours[1] == b"first\n"
    assert ours[2] == ("exited", False, False, 137, 1) and ours[3] == ("running", True, False, 0, 0)


@pytest.mark.parametrize("policy", ["always", "unless-stopped"])
def test_kill_with_other_signal(engines: Engines, policy: str) -> None:
    """With a StopSignal set, a kill by another signal leaves "always" in force; unless-stopped counts it
    as a manual stop. The StopSignal itself ends either."""

    def scenario(c: docker.DockerClient) -> Any:
        ctr = run(engines, c, ["sh", "-c", ONCE], restart_policy={"Name": policy}, stop_signal="SIGUSR2")
        until_state(ctr, lambda st: st[0] == "running" and st[4] == 1, "one restart")
        sleeping(ctr)  # its traps are set
        ctr.kill(signal="SIGINT")  # the trap exits 7
        if policy == "always":
            until_state(ctr, lambda st: st[0] == "running" and st[4] == 2, "second restart")
            sleeping(ctr)
        else:
            ctr.wait(timeout=60)
        seen = [state_of(ctr)]
        if policy == "always":
            ctr.kill(signal="SIGUSR2")  # its trap exits 9
            seen.append((ctr.wait(timeout=60)["StatusCode"], state_of(ctr)))
        return seen

    ours, ref = engines.both_docker(scenario)
    assert ours == ref
    if policy == "always":
        assert ours == [("running", True, False, 0, 2), (9, ("exited", False, False, 9, 2))]
    else:
        assert ours == [("exited", False, False, 7, 1)]


def test_restart_policy_per_engine(client: tuple[docker.DockerClient, Engines]) -> None:
    """on-failure:2 with a failing command ends exited with RestartCount 2, on each engine."""
    c, e = client
    ctr = run(e, c, ["sh", "-c", "exit 5"], restart_policy={"Name": "on-failure", "MaximumRetryCount": 2})
    until_state(ctr, lambda st: st[0] == "exited" and st[4] == 2, "two restarts")
    assert state_of(ctr) == ("exited", False, False, 5, 2)
    assert ctr.attrs["HostConfig"]["RestartPolicy"] == {"Name": "on-failure", "MaximumRetryCount": 2}
    status, message = api_error(lambda: c.containers.run(BB, "true", detach=True, **kwargs(
        e, {"restart_policy": {"Name": "sometimes"}})), "")
    assert status == 400 and message.startswith("invalid restart policy")
