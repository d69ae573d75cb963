"""The real docker CLI (under a pty where a terminal is involved) and docker-py against our daemon:
run -it, attach/detach, exec -it, resize, stdin half-close, pause, stats, top, signals, --init."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import select
import signal
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Callable, Iterator

import pytest

from tests.conftest import DOCKER_CLI, ROOT, Daemon

DOCKYARD_CLI = (sys.executable, "-m", "dockyard.cli.main")


class Pty:
    """The docker CLI on a pseudo-terminal of a given size, as a person would run it."""

    def __init__(self, d: Daemon, *args: str, rows: int = 24, cols: int = 80,
                 cli: tuple[str, ...] = (DOCKER_CLI,)) -> None:
        self.pid, self.fd = pty.fork()
        if self.pid == 0:  # child: the CLI, on a terminal already at its size when it starts
            fcntl.ioctl(0, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
            os.chdir(ROOT)
            os.execve(cli[0], [*cli, *args], d.env)
        self.buf = b""

    def resize(self, rows: int, cols: int) -> None:
        """Resize the window as a terminal emulator does: the kernel then sends SIGWINCH to the
        terminal's foreground process group, the CLI (pty.fork made it session leader on this pty)."""
        fcntl.ioctl(self.fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))

    def winch(self) -> None:
        os.kill(self.pid, signal.SIGWINCH)

    def follow_resizes(self, *sizes: tuple[int, int]) -> None:
        """Resize the window and check that `stty size` in the shell follows (the CLI forwards SIGWINCH
        to /resize). The CLI watches SIGWINCH only once start (for exec: the hijack) has returned and its
        first resize is done, but the shell, given its console size at create, can answer before that:
        a resize in that window is lost, against dockerd as well. So the first resize is re-signalled
        until it shows; every later one gets the kernel's single SIGWINCH."""
        for i, (rows, cols) in enumerate(sizes):
            self.resize(rows, cols)
            # The line editor redraws on SIGWINCH and tends to eat what is typed meanwhile: retype often.
            self.type_until(b"stty size", f"\n{rows} {cols}\r".encode(), tries=30, every=1,
                            before=self.winch if i == 0 else None)

    def _answer(self, chunk: bytes) -> None:
        # busybox's line editor asks the terminal for the cursor position (DSR) and eats input
        # until it gets a reply: answer as a terminal would.
        for _ in range(chunk.count(b"\x1b[6n")):
            os.write(self.fd, b"\x1b[1;5R")

    def type_until(self, line: bytes, marker: bytes, tries: int = 10, every: float = 3,
                   before: Callable[[], None] | None = None) -> bytes:
        """Type a shell command until its output shows `marker`. busybox's line editor may eat
        keystrokes that race its terminal query (DSR) around a prompt; retyping is what a person does."""
        for _ in range(tries):
            if before is not None:
                before()
            self.send(line + b"\r")
            try:
                return self.expect(marker, timeout=every)
            except AssertionError:
                continue
        raise AssertionError(f"{marker!r} never appeared after typing {line!r}: {self.buf!r}")

    def send(self, data: bytes) -> None:
        os.write(self.fd, data)

    def expect(self, needle: bytes, timeout: float = 30) -> bytes:
        """Read until needle appears (the deadline only bounds a hang; it asserts nothing about speed)."""
        end = time.monotonic() + timeout
        while needle not in self.buf and time.monotonic() < end:
            r, _, _ = select.select([self.fd], [], [], 0.2)
            if r:
                try:
                    chunk = os.read(self.fd, 4096)
                except OSError:
                    break
                if not chunk:
                    break
                self._answer(chunk)
                self.buf += chunk
        assert needle in self.buf, f"{needle!r} not in {self.buf!r}"
        i = self.buf.index(needle) + len(needle)
        seen, self.buf = self.buf[:i], self.buf[i:]
        return seen

    def type_exit(self, line: bytes, tries: int = 10) -> int:
        """Type a command that ends the CLI (retyped if the line editor ate it); the CLI's exit code."""
        for _ in range(tries):
            self.send(line + b"\r")
            code = self.wait(timeout=3, kill=False)
            if code is not None:
                return code
        return self.wait()  # type: ignore[return-value]

    def wait(self, timeout: float = 30, kill: bool = True) -> int | None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            with_status = os.waitpid(self.pid, os.WNOHANG)
            if with_status[0]:
                os.close(self.fd)
                return os.waitstatus_to_exitcode(with_status[1])
            # keep draining so the CLI never blocks on a full pty
            r, _, _ = select.select([self.fd], [], [], 0.1)
            if r:
                try:
                    chunk = os.read(self.fd, 4096)
                    self._answer(chunk)
                    self.buf += chunk
                except OSError:
                    pass
        if not kill:
            return None
        os.kill(self.pid, signal.SIGKILL)
        os.waitpid(self.pid, 0)
        raise AssertionError(f"docker CLI did not exit; output {self.buf!r}")


def until(cond: Callable[[], bool], timeout: float = 30) -> None:
    end = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < end, "condition never became true"
        time.sleep(0.1)


def state(d: Daemon, name: str) -> dict:  # type: ignore[type-arg]
    return json.loads(d.docker("inspect", "-f", "{{json .State}}", name).stdout)


# ---------------------------------------------------------------- terminals
@pytest.mark.parametrize("cli", [(DOCKER_CLI,), DOCKYARD_CLI], ids=["docker", "dockyard"])
def test_run_it_shell_resize_and_exit_code(clean_daemon: Daemon, cli: tuple[str, ...]) -> None:
    p = Pty(clean_daemon, "run", "-it", "--rm", "busybox", "sh", rows=30, cols=100, cli=cli)
    p.type_until(b"stty size", b"30 100")
    p.follow_resizes((40, 120), (50, 130), (20, 60))
    p.type_until(b"echo h''i", b"hi\r\n")
    assert p.type_exit(b"exit 3") == 3


def test_attach_and_detach_keeps_running(clean_daemon: Daemon) -> None:
    # A plain read loop: no line editor whose terminal queries nobody answered while detached.
    loop = "while read l; do echo got-$l; done"
    clean_daemon.docker("run", "-dit", "--name", "att", "busybox", "sh", "-c", loop)
    p = Pty(clean_daemon, "attach", "att", rows=25, cols=90)
    p.send(b"ab\r")
    p.expect(b"got-ab\r\n")
    p.send(b"\x10\x11")  # ctrl-p ctrl-q
    p.expect(b"read escape sequence")
    p.wait()
    assert state(clean_daemon, "att")["Running"] is True
    p = Pty(clean_daemon, "attach", "--detach-keys", "ctrl-a,x", "att")
    p.send(b"cd\r")
    p.expect(b"got-cd\r\n")
    p.send(b"\x01x")
    p.expect(b"read escape sequence")
    p.wait()
    assert state(clean_daemon, "att")["Running"] is True


@pytest.mark.parametrize("cli", [(DOCKER_CLI,), DOCKYARD_CLI], ids=["docker", "dockyard"])
def test_reattach_after_detach_keeps_stdin(clean_daemon: Daemon, cli: tuple[str, ...]) -> None:
    """`run -it`, Ctrl-P Ctrl-Q, `attach`: what is typed reaches the shell (the detach must not close
    the container's stdin; StdinOnce closes it only at the client's stdin EOF, never with a TTY)."""
    log_start = clean_daemon.log.stat().st_size
    p = Pty(clean_daemon, "run", "-it", "--name", "det", "busybox", "sh", cli=cli)
    p.type_until(b"echo o''ne", b"one\r\n")
    p.send(b"\x10\x11")
    assert p.wait() == 0  # run detaches quietly; attach says "read escape sequence" and exits 1
    assert state(clean_daemon, "det")["Running"] is True
    p = Pty(clean_daemon, "attach", "det", cli=cli)
    p.type_until(b"echo t''wo", b"two\r\n")
    p.send(b"\x10\x11")
    p.expect(b"read escape sequence")
    assert p.wait() == 1
    p = Pty(clean_daemon, "attach", "det", cli=cli)
    p.type_until(b"echo tw''o", b"two\r\n")
    assert p.type_exit(b"exit 5") == 5
    p = Pty(clean_daemon, "start", "-ai", "det", cli=cli)  # a restart gets a fresh connection
    p.type_until(b"echo th''ree", b"three\r\n")
    assert p.type_exit(b"exit 6") == 6
    with open(clean_daemon.log, "rb") as f:  # clients that left (detached) leave no asyncio noise
        f.seek(log_start)
        assert b"Task exception was never retrieved" not in f.read()


def test_attach_follows_terminal_resizes(clean_daemon: Daemon) -> None:
    clean_daemon.docker("run", "-dit", "--name", "attr", "busybox", "sh")
    p = Pty(clean_daemon, "attach", "attr", rows=25, cols=90)
    p.type_until(b"stty size", b"25 90")  # attach sizes the container's tty to the attaching terminal
    p.follow_resizes((40, 120), (22, 70))
    p.send(b"\x10\x11")  # ctrl-p ctrl-q: detach, the shell keeps running
    p.expect(b"read escape sequence")
    p.wait()
    assert state(clean_daemon, "attr")["Running"] is True


def test_exec_it(clean_daemon: Daemon) -> None:
    clean_daemon.docker("run", "-d", "--name", "ex", "busybox", "sleep", "1000")
    p = Pty(clean_daemon, "exec", "-it", "-e", "FOO=bar", "-w", "/tmp", "ex", "sh", rows=33, cols=77)
    p.type_until(b"stty size; echo $FOO-$(pwd)", b"bar-/tmp")
    p.type_until(b"stty size", b"33 77")
    p.follow_resizes((40, 120), (50, 130), (20, 60))
    assert p.type_exit(b"exit 4") == 4


def test_stdin_pipe_half_close(clean_daemon: Daemon) -> None:
    p = clean_daemon.docker("run", "-i", "--rm", "busybox", "cat", input=b"hi\n")
    assert p.stdout == b"hi\n"
    p = clean_daemon.docker("run", "-i", "--rm", "busybox", "wc", "-c", input=b"x" * 100_000)
    assert p.stdout.strip() == b"100000"


def test_exec_detached_and_inspect(clean_daemon: Daemon) -> None:
    clean_daemon.docker("run", "-d", "--name", "exd", "busybox", "sleep", "1000")
    clean_daemon.docker("exec", "-d", "exd", "sh", "-c", "echo done > /tmp/flag")
    until(lambda: clean_daemon.docker("exec", "exd", "cat", "/tmp/flag", check=False).stdout == b"done\n")
    p = clean_daemon.docker("exec", "-u", "nobody", "exd", "id", "-u")
    assert p.stdout.strip() == b"65534"


# ---------------------------------------------------------------- observation and signals
def test_pause_unpause_and_exec_conflict(clean_daemon: Daemon) -> None:
    clean_daemon.docker("run", "-d", "--name", "pz", "busybox", "sleep", "1000")
    clean_daemon.docker("pause", "pz")
    st = state(clean_daemon, "pz")
    assert st["Paused"] is True and st["Status"] == "paused"
    p = clean_daemon.docker("exec", "pz", "true", check=False)
    assert p.returncode != 0 and b"is paused" in p.stderr
    with clean_daemon.api() as c:
        r = c.post("/containers/pz/exec", json={"Cmd": ["true"]})
        assert r.status_code == 409
    clean_daemon.docker("unpause", "pz")
    assert state(clean_daemon, "pz")["Paused"] is False
    clean_daemon.docker("exec", "pz", "true")


def test_stats_and_top(clean_daemon: Daemon) -> None:
    clean_daemon.docker("run", "-d", "--name", "st", "-m", "64m", "busybox", "sleep", "1000")
    out = clean_daemon.docker("stats", "--no-stream", "st").stdout.decode()
    head, row = out.splitlines()[:2]
    for col in ("CPU %", "MEM USAGE / LIMIT", "NET I/O", "BLOCK I/O", "PIDS"):
        assert col in head
    assert "/ 64MiB" in row and row.split()[-1] == "1"
    doc = json.loads(clean_daemon.docker("stats", "--no-stream", "--format", "{{json .}}", "st").stdout)
    assert doc["MemUsage"].endswith("64MiB") and doc["PIDs"] == "1"
    top = clean_daemon.docker("top", "st", "-o", "pid,comm").stdout.decode().splitlines()
    assert top[0].split() == ["PID", "COMMAND"] and top[1].split()[1] == "sleep"


def test_our_stats_table_live_and_once(clean_daemon: Daemon) -> None:
    d = clean_daemon
    d.docker("run", "-d", "--name", "st1", "-m", "64m", "busybox", "sleep", "1000")
    d.docker("run", "-d", "--name", "st2", "--pids-limit", "10", "busybox", "sh", "-c", "sleep 1000 & sleep 1000 & wait")
    rows = d.dockyard("stats", "--no-stream", "st1", "st2").stdout.decode().splitlines()
    assert "MEM USAGE / LIMIT" in rows[0] and [r.split()[1] for r in rows[1:]] == ["st1", "st2"]
    assert "/ 64MiB" in rows[1] and rows[1].split()[-1] == "1" and rows[2].split()[-1] == "3"
    # Live: the table is redrawn every second, each container followed by its own stream.
    live = subprocess.Popen([sys.executable, "-m", "dockyard.cli.main", "stats", "st1", "st2"], env=d.env,
                            stdout=subprocess.PIPE)
    assert live.stdout is not None
    seen = b""
    while seen.count(b"\x1b[2J") < 3:  # three redraws
        chunk = live.stdout.read1(4096)
        assert chunk, "dockyard stats ended"
        seen += chunk
    live.kill()
    live.wait()
    last = seen.split(b"\x1b[2J\x1b[H")[-2].decode().splitlines()  # the last redraw known to be whole
    assert [r.split()[1] for r in last[1:3]] == ["st1", "st2"]
    missing = d.dockyard("stats", "--no-stream", "nonexist", check=False)
    assert missing.returncode == 1 and b"No such container: nonexist" in missing.stderr


def test_kill_signal_stop_signal_and_timeout(clean_daemon: Daemon) -> None:
    trap = "trap 'echo got-$0' USR1; trap 'echo term' TERM; while true; do sleep 0.1; done"
    clean_daemon.docker("run", "-d", "--name", "sg", "--stop-signal", "USR1", "--stop-timeout", "1",
                        "busybox", "sh", "-c", trap)
    clean_daemon.docker("kill", "-s", "TERM", "sg")
    until(lambda: b"term" in clean_daemon.docker("logs", "sg").stdout)
    assert state(clean_daemon, "sg")["Running"] is True  # the trap kept it alive
    clean_daemon.docker("stop", "sg")  # USR1 is trapped too: SIGKILL after the 1 s stop timeout
    assert b"got-" in clean_daemon.docker("logs", "sg").stdout
    assert state(clean_daemon, "sg")["ExitCode"] == 137


def test_init_reaps_zombies(clean_daemon: Daemon) -> None:
    # The orphan's parent exits at once; only a reaping PID 1 (catatonit) keeps it from staying a zombie.
    script = "sh -c 'sleep 0.2 & exit 0'; exec sleep 1000"

    def procs(name: str) -> list[str]:
        out = clean_daemon.docker("exec", name, "ps", "-o", "stat,args").stdout.decode().splitlines()[1:]
        return [line.strip() for line in out if not line.strip().endswith("ps -o stat,args")]

    clean_daemon.docker("run", "-d", "--name", "noinit", "busybox", "sh", "-c", script)
    until(lambda: "Z    [sleep]" in procs("noinit"))  # sleep as PID 1 never reaps
    clean_daemon.docker("run", "-d", "--name", "in", "--init", "busybox", "sh", "-c", script)
    until(lambda: not any(p.endswith(" sleep 0.2") for p in procs("in")))
    ps = procs("in")
    assert len(ps) == 2 and "docker-init" in ps[0] and ps[1] == "S    sleep 1000", ps


# ---------------------------------------------------------------- docker-py
@pytest.fixture()
def dclient(clean_daemon: Daemon) -> Iterator[object]:
    docker = pytest.importorskip("docker")
    c = docker.DockerClient(base_url=clean_daemon.host)
    yield c
    c.close()


def test_docker_py_exec_stats_top_pause_attach(dclient) -> None:  # type: ignore[no-untyped-def]
    import docker

    ct = dclient.containers.run("busybox", "sleep 1000", detach=True)
    res = ct.exec_run("sh -c 'echo o; echo e >&2; exit 5'", demux=True)
    assert res.exit_code == 5 and res.output == (b"o\n", b"e\n")
    # Output before docker-py has read the response headers can land in http.client's buffer and
    # be lost by docker-py (it reads the raw socket after): only later output is asserted here.
    chunks = list(ct.exec_run("sh -c 'sleep 0.3; echo o; sleep 0.2; echo e >&2'", stream=True, demux=True).output)
    assert (b"o\n", None) in chunks and (None, b"e\n") in chunks
    s = ct.stats(stream=False)
    assert {"read", "cpu_stats", "precpu_stats", "memory_stats", "blkio_stats", "pids_stats"} <= set(s)
    assert s["memory_stats"]["usage"] > 0 and s["pids_stats"]["current"] == 1
    assert "eth0" in s["networks"]
    top = ct.top(ps_args="-o pid,comm")
    assert top["Titles"] == ["PID", "COMMAND"] and top["Processes"][0][1] == "sleep"
    ct.pause()
    ct.reload()
    assert ct.status == "paused" and ct.attrs["State"]["Paused"] is True
    with pytest.raises(docker.errors.APIError) as ei:
        ct.exec_run("true")
    assert ei.value.status_code == 409
    ct.unpause()
    # Attached before start, as for exec above: output that reaches docker-py with the response
    # headers is lost in http.client's buffer (it reads the raw socket after); the join of the log
    # and the live output of a running container is test_attach_logs_and_stream_join_..._repeat's.
    ct2 = dclient.containers.create("busybox", "sh -c 'for i in 1 2 3; do echo $i; sleep 0.1; done'")
    out = ct2.attach(stream=True, logs=True)
    ct2.start()
    assert b"".join(out) == b"1\n2\n3\n"
    with pytest.raises(docker.errors.APIError) as ei:
        dclient.containers.run("busybox", "true", mem_limit="4m")
    assert ei.value.status_code == 400 and "Minimum memory limit allowed is 6MB" in str(ei.value)


def _attach_lines(d: Daemon, name: str, want: int) -> list[int]:
    """POST /containers/NAME/attach?logs=1&stream=1 on a raw socket (no client buffer to lose bytes
    in), the frames' stdout read until `want` lines came; the numbers on those lines."""
    import socket

    with socket.socket(socket.AF_UNIX) as s:
        s.connect(str(d.sock))
        s.sendall(f"POST /containers/{name}/attach?logs=1&stream=1&stdout=1&stderr=1 HTTP/1.1\r\n"
                  "Host: d\r\nConnection: Upgrade\r\nUpgrade: tcp\r\nContent-Length: 0\r\n\r\n".encode())
        buf = b""
        while b"\r\n\r\n" not in buf:
            buf += s.recv(65536)
        head, buf = buf.split(b"\r\n\r\n", 1)
        assert head.startswith(b"HTTP/1.1 101"), head
        out = b""
        while out.count(b"\n") < want:
            while len(buf) >= 8 and len(buf) >= 8 + struct.unpack(">I", buf[4:8])[0]:
                n = struct.unpack(">I", buf[4:8])[0]
                assert buf[0] == 1, buf[:8]
                out, buf = out + buf[8:8 + n], buf[8 + n:]
            data = s.recv(65536)
            assert data, out
            buf += data
    return [int(x) for x in out.split(b"\n")[:want]]


def test_attach_logs_and_stream_join_without_loss_or_repeat(clean_daemon: Daemon) -> None:
    # attach?logs=1&stream=1 on a container writing all along: the logged lines then the live ones
    # must be one gapless sequence, every time (a replay then the live stream lost or repeated the
    # lines written in between; dockerd's attach loses them).
    d = clean_daemon
    d.docker("run", "-d", "--name", "ticker", "busybox", "sh", "-c",
             "i=0; while :; do echo $i; i=$((i+1)); usleep 3000; done")
    try:
        for _ in range(6):
            logged = len(d.docker("logs", "ticker").stdout.splitlines())
            nums = _attach_lines(d, "ticker", logged + 150)  # well past where the log ended
            assert nums == list(range(len(nums))), [
                (a, b) for a, b in zip(nums, nums[1:], strict=False) if b != a + 1]
    finally:
        d.docker("rm", "-f", "ticker")


def test_resize_needs_tty(clean_daemon: Daemon) -> None:
    clean_daemon.docker("run", "-d", "--name", "rz", "busybox", "sleep", "1000")
    with clean_daemon.api() as c:
        # dockerd ignores a container resize without a TTY, and refuses one for such an exec.
        assert c.post("/containers/rz/resize", params={"h": 10, "w": 10}).status_code == 200
        ex = c.post("/containers/rz/exec", json={"Cmd": ["true"]}).json()["Id"]
        assert c.post(f"/exec/{ex}/resize", params={"h": 10, "w": 10}).status_code >= 400
